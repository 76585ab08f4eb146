//! CleanupLoopOffsets: removes finalization offsets the kernel would add for nothing.
//!
//! - A loop whose `LoopEnd` is directly followed by the `LoopEnd` of its enclosing
//!   loop: its finalization offset of a port is added once per iteration of the
//!   enclosing loop, right before the enclosing loop's increment of the same port,
//!   so it is folded into that increment (when the enclosing loop moves the port).
//! - A loop at the top level: a port that no load or store touches after the loop
//!   needs no finalization offset (its pointer is never read again).
//!
//! Offsets that become zero are no longer printed and emit no code.
//!
//! Before: `L0 ... in0 inc=stride1 fin=-span1` enclosing `L2 tail once ... in0 fin=-main0/16`
//!         with `LoopEnd L2 ; LoopEnd L0` at the end of the kernel
//! After:  `L0 ... in0 inc=stride1 - main0/16` and `L2 tail once ... in0`
//! (per row, the kernel adds the row stride minus what the main loop advanced).

use crate::lir::{ExprKind, Lir, Offset, Port};
use crate::{LowerError, Pass, Target};

#[derive(Debug)]
pub struct CleanupLoopOffsets;

impl Pass for CleanupLoopOffsets {
    fn name(&self) -> &'static str {
        "cleanup_loop_offsets"
    }

    fn run(&self, lir: &mut Lir, _: &Target) -> Result<(), LowerError> {
        let err = |reason: String| LowerError::Pass {
            pass: self.name(),
            reason,
        };
        for i in 0..lir.exprs.len() {
            let ExprKind::LoopEnd(l) = lir.exprs[i].kind else {
                continue;
            };
            let li = l.0 as usize;
            if li >= lir.loops.len() {
                return Err(err(format!("LoopEnd of an unknown loop L{}", l.0)));
            }
            match lir.exprs.get(i + 1).map(|e| &e.kind) {
                Some(&ExprKind::LoopEnd(parent)) if parent != l => {
                    let pi = parent.0 as usize;
                    if pi >= lir.loops.len() {
                        return Err(err(format!("LoopEnd of an unknown loop L{}", parent.0)));
                    }
                    for k in 0..lir.loops[li].ports.len() {
                        let lp = &lir.loops[li].ports[k];
                        if lp.finalization.is_zero() {
                            continue;
                        }
                        let (port, fin) = (lp.port, lp.finalization.clone());
                        let Some(pp) = lir.loops[pi]
                            .ports
                            .iter_mut()
                            .find(|p| p.port == port && p.incremented)
                        else {
                            continue;
                        };
                        pp.increment = pp.increment.plus(&fin);
                        lir.loops[li].ports[k].finalization = Offset::zero();
                    }
                }
                _ if lir.exprs[i].loops.len() <= 1 => {
                    let rest = &lir.exprs[i + 1..];
                    for lp in &mut lir.loops[li].ports {
                        if !rest.iter().any(|e| touches(&e.kind, lp.port)) {
                            lp.finalization = Offset::zero();
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Whether an expression of kind `k` loads or stores `port`.
fn touches(k: &ExprKind, port: Port) -> bool {
    match *k {
        ExprKind::Load { input } | ExprKind::BroadcastLoad { input } => port == Port::Input(input),
        ExprKind::Store { output } => port == Port::Output(output),
        _ => false,
    }
}
