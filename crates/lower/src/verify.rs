//! The linear-IR verifier, run after every pass.
//!
//! Checks SSA (one definition per value, definitions before uses), loop brackets
//! (balanced, each loop opened once, expressions inside exactly their marked loops),
//! the loop manager (every port entry names a port a load or store inside the loop
//! touches, once; a fixed port has no increment; a tail moves by multiples of its
//! own tail step; a single-evaluation loop runs at most once and has no increments,
//! so no back edge), and, once registers are assigned, replays the allocation: no
//! expression overwrites a register whose value is still to be read, including
//! across loop back edges.

use std::collections::HashMap;

use crate::LowerError;
use crate::lir::{ExprKind, Lir, Location, LoopId, LoopKind, Port, Quantity, register_repr};

/// Verifies `lir`; the error names the expression index and the reason.
pub fn verify(lir: &Lir) -> Result<(), LowerError> {
    let err = |i: usize, reason: String| LowerError::Verify { expr: i, reason };
    let n = lir.num_values as usize;
    let mut def = vec![None; n];
    let mut last_use = vec![None; n];
    let mut open: Vec<LoopId> = vec![];
    let mut seen_loops = vec![false; lir.loops.len()];
    let bracketed = lir.exprs.iter().any(|e| e.kind.is_loop_marker());
    for (k, p) in lir.inputs.iter().chain(&lir.outputs).enumerate() {
        if register_repr(p.dtype).is_none() {
            return Err(err(
                0,
                format!(
                    "port '{}' ({}) has dtype {}, which the JIT cannot load or store",
                    p.name,
                    if k < lir.inputs.len() {
                        "input"
                    } else {
                        "output"
                    },
                    p.dtype
                ),
            ));
        }
    }
    for (i, e) in lir.exprs.iter().enumerate() {
        for v in &e.ins {
            let vi = v.0 as usize;
            if vi >= n || def[vi].is_none() {
                return Err(err(i, format!("%{} is used before its definition", v.0)));
            }
            last_use[vi] = Some(i);
        }
        if let Some(o) = e.out {
            let oi = o.0 as usize;
            if oi >= n {
                return Err(err(i, format!("%{} is out of range", o.0)));
            }
            if def[oi].replace(i).is_some() {
                return Err(err(i, format!("%{} is defined twice", o.0)));
            }
        }
        let arity = match e.kind {
            ExprKind::Parameter(_) | ExprKind::Load { .. } | ExprKind::BroadcastLoad { .. } => 0,
            ExprKind::Scalar(_) | ExprKind::LoopBegin(_) | ExprKind::LoopEnd(_) => 0,
            ExprKind::Result(_) | ExprKind::Store { .. } => 1,
            ExprKind::Unary(_) | ExprKind::PowStatic(_) | ExprKind::Convert { .. } => 1,
            ExprKind::Binary(_) => 2,
            ExprKind::Select | ExprKind::Fma => 3,
        };
        if e.ins.len() != arity {
            return Err(err(
                i,
                format!(
                    "{} takes {arity} inputs, has {}",
                    e.kind.name(),
                    e.ins.len()
                ),
            ));
        }
        let defines = !matches!(
            e.kind,
            ExprKind::Result(_)
                | ExprKind::Store { .. }
                | ExprKind::LoopBegin(_)
                | ExprKind::LoopEnd(_)
        );
        if defines != e.out.is_some() {
            return Err(err(
                i,
                format!(
                    "{} must {}define a value",
                    e.kind.name(),
                    if defines { "" } else { "not " }
                ),
            ));
        }
        for l in &e.loops {
            if l.0 as usize >= lir.loops.len() {
                return Err(err(i, format!("unknown loop L{}", l.0)));
            }
        }
        match e.kind {
            ExprKind::LoopBegin(l) => {
                let li = l.0 as usize;
                if li >= lir.loops.len() || std::mem::replace(&mut seen_loops[li], true) {
                    return Err(err(i, format!("loop L{} is opened twice or unknown", l.0)));
                }
                open.push(l);
            }
            ExprKind::LoopEnd(l) => {
                if open.pop() != Some(l) {
                    return Err(err(
                        i,
                        format!("LoopEnd L{} does not close the innermost open loop", l.0),
                    ));
                }
            }
            _ => {
                if bracketed && e.loops.as_slice() != open.as_slice() {
                    return Err(err(
                        i,
                        format!("expression is marked {:?} but sits in {:?}", e.loops, open),
                    ));
                }
            }
        }
        for &input in match &e.kind {
            ExprKind::Load { input }
            | ExprKind::BroadcastLoad { input }
            | ExprKind::Parameter(input) => std::slice::from_ref(input),
            _ => &[],
        } {
            if input >= lir.inputs.len() {
                return Err(err(i, format!("input in{input} does not exist")));
            }
        }
        if let ExprKind::Store { output } | ExprKind::Result(output) = e.kind
            && output >= lir.outputs.len()
        {
            return Err(err(i, format!("output out{output} does not exist")));
        }
        if let ExprKind::Convert { from, to } = e.kind {
            for d in [from, to] {
                if register_repr(d).is_none() {
                    return Err(err(
                        i,
                        format!("Convert of {d} values: the JIT holds no {d} in registers"),
                    ));
                }
            }
        }
    }
    if let Some(l) = open.last() {
        return Err(err(
            lir.exprs.len(),
            format!("loop L{} is never closed", l.0),
        ));
    }
    check_loops(lir)?;
    if !lir.locations.is_empty() {
        check_allocation(lir, &def)?;
    }
    Ok(())
}

/// The loop manager's invariants (the error names the loop's first expression, or
/// 0 for a loop that marks none).
fn check_loops(lir: &Lir) -> Result<(), LowerError> {
    for (li, l) in lir.loops.iter().enumerate() {
        let id = LoopId(li as u32);
        let first = lir.exprs.iter().position(|e| e.loops.contains(&id));
        let err = |reason: String| LowerError::Verify {
            expr: first.unwrap_or(0),
            reason: format!("loop L{li}: {reason}"),
        };
        if l.step == 0 {
            return Err(err("step 0".into()));
        }
        for (k, p) in l.ports.iter().enumerate() {
            let name = match p.port {
                Port::Input(i) => format!("in{i}"),
                Port::Output(o) => format!("out{o}"),
            };
            if lir.port_info(p.port).is_none() {
                return Err(err(format!("port {name} does not exist")));
            }
            if l.ports[..k].iter().any(|q| q.port == p.port) {
                return Err(err(format!("port {name} is listed twice")));
            }
            let touched = lir.exprs.iter().any(|e| {
                e.loops.contains(&id)
                    && match e.kind {
                        ExprKind::Load { input } | ExprKind::BroadcastLoad { input } => {
                            p.port == Port::Input(input)
                        }
                        ExprKind::Store { output } => p.port == Port::Output(output),
                        _ => false,
                    }
            });
            if !touched {
                return Err(err(format!(
                    "port {name} is listed, but no load or store inside the loop touches it"
                )));
            }
            if !p.incremented && !p.increment.is_zero() {
                return Err(err(format!(
                    "port {name} is fixed (broadcast along dim {}) but has increment {}",
                    l.dim, p.increment
                )));
            }
            let tail_step = Quantity::Tail {
                dim: l.dim,
                step: l.step,
            };
            if l.kind == LoopKind::Tail
                && !(p.increment.constant == 0
                    && p.increment.terms.iter().all(|&(_, q)| q == tail_step))
            {
                return Err(err(format!(
                    "tail increment {} of port {name} is not a multiple of {tail_step} \
                     (it must vanish when the tail does not run)",
                    p.increment
                )));
            }
            if l.once && !p.increment.is_zero() {
                return Err(err(format!(
                    "runs once (no back edge) but increments port {name} by {}",
                    p.increment
                )));
            }
        }
        if l.once && l.kind != LoopKind::Tail && l.work.is_none_or(|w| w > l.step) {
            return Err(err(format!(
                "is marked once, but is no tail and its work amount ({}) may exceed its step {}",
                l.work.map_or("dynamic".into(), |w| w.to_string()),
                l.step
            )));
        }
    }
    Ok(())
}

/// Replays register assignment: walks the expressions keeping, per location, the value
/// it holds; every use must find its value there. At each LoopEnd, values live into the
/// loop (defined before it and used inside it) must still be in place.
fn check_allocation(lir: &Lir, def: &[Option<usize>]) -> Result<(), LowerError> {
    let err = |i: usize, reason: String| LowerError::Verify { expr: i, reason };
    let mut holds: HashMap<Location, u32> = HashMap::new();
    let mut begins: Vec<usize> = vec![];
    for (i, e) in lir.exprs.iter().enumerate() {
        for v in &e.ins {
            let loc = lir
                .locations
                .get(v.0 as usize)
                .copied()
                .flatten()
                .ok_or_else(|| err(i, format!("%{} has no location", v.0)))?;
            if holds.get(&loc) != Some(&v.0) {
                return Err(err(i, format!("%{} is not in {loc:?} when read", v.0)));
            }
        }
        if let Some(o) = e.out {
            let loc = lir
                .locations
                .get(o.0 as usize)
                .copied()
                .flatten()
                .ok_or_else(|| err(i, format!("%{} has no location", o.0)))?;
            if let Location::Reg(r) = loc
                && lir.scratch_regs.contains(&r)
            {
                return Err(err(
                    i,
                    format!("%{} is assigned scratch register r{r}", o.0),
                ));
            }
            // The emitters reload spilled operands into the spill temporaries.
            if let Location::Reg(r) = loc
                && lir.spill_temps.contains(&r)
            {
                return Err(err(i, format!("%{} is assigned spill temporary r{r}", o.0)));
            }
            holds.insert(loc, o.0);
        }
        match e.kind {
            ExprKind::LoopBegin(_) => begins.push(i),
            ExprKind::LoopEnd(_) => {
                let b = begins.pop().unwrap_or(0);
                // Values defined before the loop and read inside must survive the back edge.
                for e2 in &lir.exprs[b..i] {
                    for v in &e2.ins {
                        if def[v.0 as usize].is_some_and(|d| d < b) {
                            let loc = lir.locations[v.0 as usize].expect("checked above");
                            if holds.get(&loc) != Some(&v.0) {
                                return Err(err(
                                    i,
                                    format!(
                                        "%{} is overwritten inside the loop that reads it",
                                        v.0
                                    ),
                                ));
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}
