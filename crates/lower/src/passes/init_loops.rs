//! InitLoops: fills the loop manager: per loop, the ports whose pointers move with
//! it, with their symbolic pointer increments and finalization offsets.
//!
//! A port moves with a loop if a load or store inside the loop touches it. It is
//! `fixed` (never moved by the loop) when broadcast along the loop's dim: an inner
//! broadcast input in a loop over dim 0. Every other port moves, in elements of its
//! own dtype (the configurator and the code scale by its element size):
//! - increment per iteration: `step` elements along dim 0, which is contiguous for
//!   every port that moves along it (a compile-time constant, an immediate in the
//!   hot loop); `step * stride<d>` along an outer dim `d`;
//! - finalization offset: `-span<d>`, back to where the loop started (later passes
//!   fold or drop it).
//!
//! After: `loop L0: dim=1 step=1 main ports=[in0 inc=stride1 fin=-span1, ...]`,
//!        `loop L1: dim=0 step=16 main ports=[in0 inc=16 fin=-span0, in1(fixed), ...]`.

use crate::lir::{ExprKind, Lir, LoopInfo, LoopPort, Offset, Port, Quantity};
use crate::{LowerError, Pass, Target};

#[derive(Debug)]
pub struct InitLoops;

impl Pass for InitLoops {
    fn name(&self) -> &'static str {
        "init_loops"
    }

    fn run(&self, lir: &mut Lir, _: &Target) -> Result<(), LowerError> {
        for l in &mut lir.loops {
            l.ports.clear();
        }
        for e in &lir.exprs {
            let port = match e.kind {
                ExprKind::Load { input } | ExprKind::BroadcastLoad { input } => Port::Input(input),
                ExprKind::Store { output } => Port::Output(output),
                _ => continue,
            };
            for &l in &e.loops {
                let info = &mut lir.loops[l.0 as usize];
                let incremented = match port {
                    Port::Input(i) if info.dim == 0 => !lir.inputs[i].bcast_inner,
                    _ => true,
                };
                if info.port(port).is_none() {
                    info.ports.push(moves(info, port, incremented));
                }
            }
        }
        for l in &mut lir.loops {
            l.ports.sort_by_key(|p| p.port);
        }
        Ok(())
    }
}

/// The entry of `port` in `info`, with the moves of a loop that walks its whole dim.
pub(crate) fn moves(info: &LoopInfo, port: Port, incremented: bool) -> LoopPort {
    let mut lp = LoopPort::new(port, incremented);
    if incremented {
        let step = i64::try_from(info.step).unwrap_or(i64::MAX);
        lp.increment = if info.dim == 0 {
            Offset::constant(step)
        } else {
            Offset::term(step, Quantity::Stride(info.dim))
        };
        lp.finalization = Offset::term(-1, Quantity::Span(info.dim));
    }
    lp
}
