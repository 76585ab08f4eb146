//! OptimizeLoopSingleEvaluation: a loop that runs at most once needs no increments
//! and no back edge.
//!
//! Such a loop is a tail (one masked step by construction of
//! InsertSpecificIterations) or a loop whose static work amount is at most its step.
//! Its increments are folded into its finalization offsets, with the number of times
//! it runs: a tail's increments are multiples of `tail<d>/<step>`, which is 0 when
//! the tail does not run, so they fold as they are; a static loop runs
//! `work / step` (0 or 1) times. The loop is marked `once`; the code generator emits
//! no back edge and no per-iteration pointer moves for it.
//!
//! Before: `loop L2: dim=0 step=16 tail ports=[in0 inc=tail0/16 fin=-span0]`
//! After:  `loop L2: dim=0 step=16 tail once ports=[in0 fin=-main0/16]`
//! (`-span0 + tail0/16` is `-main0/16`: what the main loop advanced.)

use crate::lir::{Lir, LoopKind, Offset};
use crate::{LowerError, Pass, Target};

#[derive(Debug)]
pub struct OptimizeLoopSingleEvaluation;

impl Pass for OptimizeLoopSingleEvaluation {
    fn name(&self) -> &'static str {
        "optimize_loop_single_evaluation"
    }

    fn run(&self, lir: &mut Lir, _: &Target) -> Result<(), LowerError> {
        for l in &mut lir.loops {
            if l.once {
                continue;
            }
            let runs: i64 = match (l.kind, l.work) {
                // A tail's increments vanish when it does not run (the verifier holds
                // them to multiples of tail<d>/<step>), so folding them once is exact.
                (LoopKind::Tail, _) => 1,
                (LoopKind::Main, Some(w)) if w <= l.step && l.step > 0 => (w / l.step) as i64,
                _ => continue,
            };
            for p in &mut l.ports {
                let inc = std::mem::replace(&mut p.increment, Offset::zero());
                p.finalization = p.finalization.plus(&inc.times(runs));
            }
            l.once = true;
        }
        Ok(())
    }
}
