//! InitLoops: records, per loop, the ports whose pointers move with it.
//!
//! A port moves with a loop if a load or store inside the loop touches it. In the
//! inner loop its pointer is incremented by one vector per step unless the port is
//! broadcast along the inner dim; outer-loop moves are shape-dependent and come from
//! the runtime argument block.
//! After: `loop L1: dim=0 step=16 main ports=[in0, in1(fixed), out0]`.

use crate::lir::{ExprKind, Lir, Port};
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
                if !info.ports.iter().any(|(p, _)| *p == port) {
                    info.ports.push((port, incremented));
                }
            }
        }
        for l in &mut lir.loops {
            l.ports.sort_by_key(|(p, _)| *p);
        }
        Ok(())
    }
}
