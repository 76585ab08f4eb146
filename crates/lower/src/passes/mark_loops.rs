//! MarkLoops: creates the kernel's loop nest and marks every expression with it.
//!
//! Elementwise kernels walk a 2-D domain: an outer loop over rows (dim 1, step 1) and
//! an inner loop over the contiguous dim (dim 0, step = vector lanes). Dims above
//! those two form the parallel domain that the executor splits over threads.
//! Before: expressions with no loops.
//! After:  `loop L0: dim=1 step=1`, `loop L1: dim=0 step=16`, every expression `@[L0,L1]`.

use crate::lir::{Lir, LoopInfo, LoopKind};
use crate::{LowerError, Pass, Target};

#[derive(Debug)]
pub struct MarkLoops;

impl Pass for MarkLoops {
    fn name(&self) -> &'static str {
        "mark_loops"
    }

    fn run(&self, lir: &mut Lir, target: &Target) -> Result<(), LowerError> {
        if !lir.loops.is_empty() {
            return Err(LowerError::Pass {
                pass: self.name(),
                reason: "loops are already marked".into(),
            });
        }
        let outer = lir.new_loop(LoopInfo::new(1, 1, LoopKind::Main));
        let inner = lir.new_loop(LoopInfo::new(0, target.lanes, LoopKind::Main));
        for e in &mut lir.exprs {
            e.loops = [outer, inner].into_iter().collect();
        }
        Ok(())
    }
}
