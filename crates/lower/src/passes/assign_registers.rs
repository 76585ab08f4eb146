//! AssignRegisters: liveness analysis and linear-scan allocation of vector registers.
//!
//! Each value's live interval runs from its definition to its last use; a value defined
//! outside a loop and used inside it stays live until the loop's end (the back edge
//! reads it again). The emitters' scratch needs are met by reserving the top registers;
//! a store to a port narrower than 32 bits needs one more to narrow the value into
//! (`lir::store_scratch`).
//! When values outnumber registers, the value whose interval ends last is spilled to a
//! stack slot, and four registers are kept as spill temporaries.
//! After: every value has a `Location`, printed as `%3:r5` or `%3:s0`.
//! Checked by: `verify` replays the allocation (no live value's register is overwritten).

use crate::lir::{ExprKind, Lir, Location, PhysReg, store_scratch};
use crate::{LowerError, Pass, Target};

#[derive(Debug)]
pub struct AssignRegisters;

/// Registers kept free to reload spilled values (three inputs and one output).
pub const SPILL_TEMPS: usize = 4;

impl Pass for AssignRegisters {
    fn name(&self) -> &'static str {
        "assign_registers"
    }

    fn run(&self, lir: &mut Lir, target: &Target) -> Result<(), LowerError> {
        let scratch = lir
            .exprs
            .iter()
            .map(|e| {
                let narrow = match e.kind {
                    ExprKind::Store { output } => lir
                        .outputs
                        .get(output)
                        .map_or(0, |p| store_scratch(p.dtype)),
                    _ => 0,
                };
                (target.scratch)(&e.kind).max(narrow)
            })
            .max()
            .unwrap_or(0);
        let intervals = live_intervals(lir)?;
        for spill_temps in [0, SPILL_TEMPS] {
            let usable = target
                .vregs
                .checked_sub(scratch + spill_temps)
                .filter(|&n| n >= 1)
                .ok_or_else(|| LowerError::Pass {
                    pass: "assign_registers",
                    reason: format!(
                        "{} registers cannot cover {scratch} scratch and {spill_temps} spill temporaries",
                        target.vregs
                    ),
                })?;
            let (locs, slots) = linear_scan(lir.num_values as usize, &intervals, usable);
            if slots == 0 || spill_temps > 0 {
                lir.locations = locs;
                lir.spill_slots = slots;
                lir.scratch_regs = (usable..usable + scratch).map(|r| r as PhysReg).collect();
                lir.spill_temps = if slots > 0 {
                    let t = usable + scratch;
                    (t..t + spill_temps).map(|r| r as PhysReg).collect()
                } else {
                    vec![]
                };
                return Ok(());
            }
        }
        unreachable!("the second round always returns")
    }
}

/// `[start, end]` expression indices per value (None for unused ids).
fn live_intervals(lir: &Lir) -> Result<Vec<Option<(usize, usize)>>, LowerError> {
    let mut iv: Vec<Option<(usize, usize)>> = vec![None; lir.num_values as usize];
    for (i, e) in lir.exprs.iter().enumerate() {
        for v in &e.ins {
            let slot = iv[v.0 as usize].as_mut().ok_or_else(|| LowerError::Pass {
                pass: "assign_registers",
                reason: format!("%{} is used before it is defined", v.0),
            })?;
            slot.1 = i;
        }
        if let Some(o) = e.out {
            iv[o.0 as usize] = Some((i, i));
        }
    }
    // Loop extension: live-in values of a loop stay live through its end.
    let mut begins = vec![];
    for (i, e) in lir.exprs.iter().enumerate() {
        match e.kind {
            ExprKind::LoopBegin(_) => begins.push(i),
            ExprKind::LoopEnd(_) => {
                let b = begins.pop().ok_or_else(|| LowerError::Pass {
                    pass: "assign_registers",
                    reason: "unbalanced loop end".into(),
                })?;
                for (s, end) in iv.iter_mut().flatten() {
                    if *s < b && *end > b && *end < i {
                        *end = i;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(iv)
}

fn linear_scan(
    n: usize,
    intervals: &[Option<(usize, usize)>],
    usable: usize,
) -> (Vec<Option<Location>>, u32) {
    let mut order: Vec<usize> = (0..n).filter(|&v| intervals[v].is_some()).collect();
    order.sort_by_key(|&v| (intervals[v].expect("filtered").0, v));
    let mut locs = vec![None; n];
    let mut free: Vec<PhysReg> = (0..usable as PhysReg).rev().collect();
    let mut active: Vec<usize> = vec![]; // values holding registers
    let mut slots = 0u32;
    for v in order {
        let (start, end) = intervals[v].expect("filtered");
        active.retain(|&a| {
            let keep = intervals[a].expect("active").1 >= start;
            if !keep && let Some(Location::Reg(r)) = locs[a] {
                free.push(r);
            }
            keep
        });
        free.sort_unstable_by(|a, b| b.cmp(a));
        if let Some(r) = free.pop() {
            locs[v] = Some(Location::Reg(r));
            active.push(v);
            continue;
        }
        // Spill whichever of the active values and v ends last.
        let victim = active
            .iter()
            .copied()
            .max_by_key(|&a| (intervals[a].expect("active").1, a))
            .filter(|&a| intervals[a].expect("active").1 > end);
        match victim {
            Some(a) => {
                locs[v] = locs[a];
                locs[a] = Some(Location::Spill(slots));
                active.retain(|&x| x != a);
                active.push(v);
            }
            None => locs[v] = Some(Location::Spill(slots)),
        }
        slots += 1;
    }
    (locs, slots)
}
