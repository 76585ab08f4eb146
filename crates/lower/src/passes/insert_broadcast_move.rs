//! InsertBroadcastMove: loads of inputs broadcast along the inner dim read one element
//! and broadcast it to every lane.
//!
//! Before: `%1 = Load in1` (in1 is [N, 1], the domain [N, C])
//! After:  `%1 = BroadcastLoad in1`
//! Holds after: no vector Load reads a port marked `bcast_inner`.

use crate::lir::{ExprKind, Lir};
use crate::{LowerError, Pass, Target};

#[derive(Debug)]
pub struct InsertBroadcastMove;

impl Pass for InsertBroadcastMove {
    fn name(&self) -> &'static str {
        "insert_broadcast_move"
    }

    fn run(&self, lir: &mut Lir, _: &Target) -> Result<(), LowerError> {
        for e in &mut lir.exprs {
            if let ExprKind::Load { input } = e.kind
                && lir.inputs[input].bcast_inner
            {
                e.kind = ExprKind::BroadcastLoad { input };
            }
        }
        Ok(())
    }
}
