//! The attention IR verifier, run after every pass: loops balanced and nested,
//! values (buffers included) declared and written before they are read, operand
//! views that are permutations of their values' dims, and, once buffers are
//! allocated, no two buffers live at the same time overlapping in the scratchpad
//! (checked by evaluating the symbolic offsets for several sample shapes).

use std::collections::BTreeSet;

use super::ir::{MhaIr, Op, ValueId, ValueKind};
use super::sym::DimValues;
use super::{SCRATCH_ALIGN, blocking_values};
use crate::LowerError;

fn fail(expr: usize, reason: String) -> LowerError {
    LowerError::MhaVerify { expr, reason }
}

/// Checks `ir`; the error names the first offending expression.
pub fn verify(ir: &MhaIr) -> Result<(), LowerError> {
    let name = |v: ValueId| ir.value(v).name.clone();
    let mut stack = vec![];
    let mut opened = vec![false; ir.loops.len()];
    let mut written = vec![false; ir.values.len()];
    let mut declared = vec![false; ir.values.len()];
    for (i, e) in ir.exprs.iter().enumerate() {
        match e.op {
            Op::LoopBegin(l) => {
                let slot = opened
                    .get_mut(l.0 as usize)
                    .ok_or_else(|| fail(i, format!("loop {} is not in the loop table", l.0)))?;
                if std::mem::replace(slot, true) {
                    return Err(fail(i, format!("loop {} opened twice", ir.lp(l).name)));
                }
                stack.push(l);
            }
            // The guard pops the innermost open loop whether or not it matches.
            Op::LoopEnd(l) if stack.pop() != Some(l) => {
                return Err(fail(
                    i,
                    format!("end of loop {} does not close the innermost open loop", l.0),
                ));
            }
            _ => {}
        }
        for v in ir.reads(e) {
            let val = ir.value(v);
            if val.is_buffer() && !declared[v.0 as usize] {
                return Err(fail(
                    i,
                    format!("buffer '{}' is used before its declaration", val.name),
                ));
            }
            if !written[v.0 as usize] {
                return Err(fail(
                    i,
                    format!("'{}' is read before it is defined", val.name),
                ));
            }
        }
        if e.op == Op::Buffer {
            let v = e
                .out
                .ok_or_else(|| fail(i, "a buffer declaration without a buffer".into()))?;
            if !ir.value(v).is_buffer() {
                return Err(fail(
                    i,
                    format!("'{}' is declared as a buffer but is a tensor", name(v)),
                ));
            }
            if std::mem::replace(&mut declared[v.0 as usize], true) {
                return Err(fail(i, format!("buffer '{}' declared twice", name(v))));
            }
            continue;
        }
        if let Op::Parameter(k) = e.op
            && e.out
                .is_none_or(|v| ir.value(v).kind != ValueKind::Input(k))
        {
            return Err(fail(i, format!("parameter {k} does not define input {k}")));
        }
        for v in ir.writes(e) {
            let val = ir.value(v);
            if val.is_buffer() && !declared[v.0 as usize] {
                return Err(fail(
                    i,
                    format!("buffer '{}' is written before its declaration", val.name),
                ));
            }
            if matches!(val.kind, ValueKind::Input(_)) && !matches!(e.op, Op::Parameter(_)) {
                return Err(fail(i, format!("input '{}' is written", val.name)));
            }
            written[v.0 as usize] = true;
        }
        let mut e2 = e.clone();
        for o in MhaIr::operands_mut(&mut e2) {
            if o.packed {
                continue;
            }
            let rank = ir.value(o.value).shape.len();
            let mut p = o.perm.clone();
            p.sort_unstable();
            if p != (0..rank).collect::<Vec<_>>() {
                return Err(fail(
                    i,
                    format!(
                        "operand '{}' has view {:?} of a rank-{rank} value",
                        name(o.value),
                        o.perm
                    ),
                ));
            }
        }
    }
    if let Some(l) = stack.pop() {
        return Err(fail(
            ir.exprs.len(),
            format!("loop {} is never closed", ir.lp(l).name),
        ));
    }
    if let Some(l) = opened.iter().position(|o| !o) {
        return Err(fail(
            ir.exprs.len(),
            format!(
                "loop {} is in the table but not in the IR",
                ir.loops[l].name
            ),
        ));
    }
    if ir.scratch.is_some() {
        verify_allocation(ir)?;
    }
    Ok(())
}

/// Sample values for every dynamic dim, to check symbolic offsets numerically.
fn samples(ir: &MhaIr) -> Result<Vec<DimValues>, LowerError> {
    let mut vars = BTreeSet::new();
    for v in &ir.values {
        v.shape.iter().for_each(|s| s.vars(&mut vars));
    }
    let blocking = ir
        .blocking
        .ok_or_else(|| fail(0, "buffers are allocated without a blocking".into()))?;
    Ok([1i64, 5, 1000]
        .iter()
        .map(|&x| {
            let mut d = blocking_values(&blocking);
            for v in &vars {
                if d.get(v).is_err() {
                    d.set(v, x);
                }
            }
            d
        })
        .collect())
}

fn verify_allocation(ir: &MhaIr) -> Result<(), LowerError> {
    let plan = ir.scratch.as_ref().expect("checked by the caller");
    let n = ir.exprs.len();
    let bufs: Vec<(ValueId, &super::ir::Alloc)> = ir
        .values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| match &v.kind {
            ValueKind::Buffer(Some(a)) => Some((ValueId(i as u32), a)),
            ValueKind::Buffer(None) => None,
            _ => None,
        })
        .collect();
    if let Some(v) = ir.values.iter().find(|v| v.kind == ValueKind::Buffer(None)) {
        return Err(fail(n, format!("buffer '{}' has no allocation", v.name)));
    }
    let root = |v: ValueId, a: &super::ir::Alloc| a.in_place_of.unwrap_or(v);
    for d in samples(ir)? {
        let total = plan.total.eval(&d)?;
        let mut placed = vec![];
        for &(v, a) in &bufs {
            let r = root(v, a);
            let ra = bufs
                .iter()
                .find(|(x, _)| *x == r)
                .map(|(_, a)| *a)
                .unwrap_or(a);
            let off = ra.offset.eval(&d)?;
            let size = ir.value(v).bytes().eval(&d)?;
            if off % SCRATCH_ALIGN as i64 != 0 || off + size > total {
                return Err(fail(
                    n,
                    format!(
                        "buffer '{}' at {off}+{size} is misaligned or past the scratch total {total}",
                        ir.value(v).name
                    ),
                ));
            }
            placed.push((v, r, a.live, off, off + size));
        }
        for (i, x) in placed.iter().enumerate() {
            for y in &placed[i + 1..] {
                let live = x.2.0 <= y.2.1 && y.2.0 <= x.2.1;
                let mem = x.3 < y.4 && y.3 < x.4;
                if live && mem && x.1 != y.1 {
                    return Err(fail(
                        n,
                        format!(
                            "buffers '{}' and '{}' are live at once and overlap in the scratchpad",
                            ir.value(x.0).name,
                            ir.value(y.0).name
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}
