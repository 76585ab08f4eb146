//! ExtractLoopInvariants: hoists expressions whose value is the same in every iteration.
//!
//! Invariant: scalars, broadcast loads of inputs that hold one element (rank 0 or all
//! dims statically 1), and pure ops whose inputs are all invariant.
//! Before: `%1 = Scalar 0.5 @[L0,L1] ; %2 = Add %0, %1 @[L0,L1]`
//! After:  `%1 = Scalar 0.5` first, outside every loop; `%2` unchanged.
//! Holds after: hoisted expressions precede all loop-marked ones, in their old order.

use crate::lir::{ExprKind, Lir};
use crate::{LowerError, Pass, Target};

#[derive(Debug)]
pub struct ExtractLoopInvariants;

impl Pass for ExtractLoopInvariants {
    fn name(&self) -> &'static str {
        "extract_loop_invariants"
    }

    fn run(&self, lir: &mut Lir, _: &Target) -> Result<(), LowerError> {
        let mut invariant = vec![false; lir.num_values as usize];
        let mut hoisted = vec![];
        let mut rest = vec![];
        for mut e in std::mem::take(&mut lir.exprs) {
            let inv = match &e.kind {
                ExprKind::Scalar(_) => true,
                ExprKind::BroadcastLoad { input } => {
                    lir.inputs[*input].shape.dims().iter().all(|d| d.is_one())
                }
                ExprKind::Load { .. }
                | ExprKind::Store { .. }
                | ExprKind::Parameter(_)
                | ExprKind::Result(_)
                | ExprKind::LoopBegin(_)
                | ExprKind::LoopEnd(_) => false,
                _ => e.ins.iter().all(|v| invariant[v.0 as usize]),
            };
            if inv {
                if let Some(o) = e.out {
                    invariant[o.0 as usize] = true;
                }
                e.loops.clear();
                hoisted.push(e);
            } else {
                rest.push(e);
            }
        }
        hoisted.extend(rest);
        lir.exprs = hoisted;
        Ok(())
    }
}
