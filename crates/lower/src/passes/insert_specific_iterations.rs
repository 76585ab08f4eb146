//! InsertSpecificIterations: gives every vector loop a tail copy for the last
//! `work % step` elements.
//!
//! Before: `LoopBegin L1 ; body ; LoopEnd L1` (L1 main, step 16)
//! After:  `LoopBegin L1 ; body ; LoopEnd L1 ; LoopBegin L2 ; body' ; LoopEnd L2`
//!         with L2 a `tail` loop: its loads and stores are masked to the remainder.
//! Holds after: the tail body is the main body with fresh SSA values in the same
//! locations (both bodies run one after the other, so registers stay valid).
//! Pointer moves: the main loop keeps its increments (full steps); the tail's one
//! step moves a port by `tail<d>/<step>`; the finalization offsets move to the tail,
//! the last iteration of the row, so `main + tail + fin` still returns each pointer
//! where the loop found it:
//!   before: `L1 ... in0 inc=16 fin=-span0`
//!   after:  `L1 ... in0 inc=16` and `L2 ... tail ... in0 inc=tail0/16 fin=-span0`

use std::collections::HashMap;

use crate::lir::{Expr, ExprKind, Lir, LoopInfo, LoopKind, LoopPort, Offset, Quantity};
use crate::{LowerError, Pass, Target};

#[derive(Debug)]
pub struct InsertSpecificIterations;

impl Pass for InsertSpecificIterations {
    fn name(&self) -> &'static str {
        "insert_specific_iterations"
    }

    fn run(&self, lir: &mut Lir, _: &Target) -> Result<(), LowerError> {
        let mut i = 0;
        while i < lir.exprs.len() {
            let ExprKind::LoopBegin(l) = lir.exprs[i].kind else {
                i += 1;
                continue;
            };
            let info = lir.loop_info(l).clone();
            if info.step == 1 || info.kind == LoopKind::Tail {
                i += 1;
                continue;
            }
            let end = (i..lir.exprs.len())
                .find(|&j| lir.exprs[j].kind == ExprKind::LoopEnd(l))
                .ok_or_else(|| LowerError::Pass {
                    pass: self.name(),
                    reason: format!("LoopBegin L{} has no end", l.0),
                })?;
            let tail_ports = info
                .ports
                .iter()
                .map(|p| LoopPort {
                    increment: if p.increment.is_zero() {
                        Offset::zero()
                    } else {
                        Offset::term(
                            1,
                            Quantity::Tail {
                                dim: info.dim,
                                step: info.step,
                            },
                        )
                    },
                    ..p.clone()
                })
                .collect();
            for p in &mut lir.loops[l.0 as usize].ports {
                p.finalization = Offset::zero();
            }
            let tail = lir.new_loop(LoopInfo {
                kind: LoopKind::Tail,
                ports: tail_ports,
                ..info
            });
            let mut rename = HashMap::new();
            let mut copy: Vec<Expr> = Vec::with_capacity(end - i + 1);
            for e in &lir.exprs[i..=end] {
                let mut c = e.clone();
                for x in c.loops.iter_mut().filter(|x| **x == l) {
                    *x = tail;
                }
                c.kind = match c.kind {
                    ExprKind::LoopBegin(x) if x == l => ExprKind::LoopBegin(tail),
                    ExprKind::LoopEnd(x) if x == l => ExprKind::LoopEnd(tail),
                    k => k,
                };
                copy.push(c);
            }
            for c in &mut copy {
                if let Some(o) = c.out {
                    let n = lir.new_value();
                    // Before AssignRegisters there is no location table to extend.
                    if !lir.locations.is_empty() {
                        let loc = lir.locations.get(o.0 as usize).copied().flatten();
                        lir.locations.resize(lir.num_values as usize, None);
                        lir.locations[n.0 as usize] = loc;
                    }
                    rename.insert(o, n);
                    c.out = Some(n);
                }
            }
            // Values defined before the loop keep their names; the body's own are renamed.
            for c in &mut copy {
                for v in c.ins.iter_mut() {
                    if let Some(&n) = rename.get(v) {
                        *v = n;
                    }
                }
            }
            let at = end + 1;
            let len = copy.len();
            lir.exprs.splice(at..at, copy);
            i = at + len;
        }
        if !lir.locations.is_empty() {
            lir.locations.resize(lir.num_values as usize, None);
        }
        Ok(())
    }
}
