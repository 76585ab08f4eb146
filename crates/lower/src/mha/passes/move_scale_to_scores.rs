//! MoveScaleToScores: a scale on Q becomes a scale on the scores.
//!
//! `(q * c) · k^T = (q · k^T) * c` in exact arithmetic (the f32 results differ by
//! rounding only). On the scores the scale folds into the online softmax, and the
//! Transpose of Q becomes adjacent to the MatMul, so FuseTransposeBrgemm can absorb it.
//! ```text
//! before: %q.scaled = scale %q.t mul(0.125); %scores = matmul %q.scaled, %k.t transpose_b
//! after:  %scores = matmul %q.t, %k.t transpose_b; %scores.scaled = scale %scores mul(0.125)
//! ```
//! Holds after: no Scale reads anything but a MatMul's output.

use crate::LowerError;
use crate::mha::ir::{Expr, MhaIr, Op, ValueKind};
use crate::mha::{MhaPass, MhaTarget};

#[derive(Debug)]
pub struct MoveScaleToScores;

impl MhaPass for MoveScaleToScores {
    fn name(&self) -> &'static str {
        "move_scale_to_scores"
    }

    fn run(&self, ir: &mut MhaIr, _target: &MhaTarget) -> Result<(), LowerError> {
        loop {
            // A Scale whose only user is a MatMul reading it as A.
            let found = ir.exprs.iter().enumerate().find_map(|(i, e)| {
                let (Op::Scale { src, scale }, Some(out)) = (&e.op, e.out) else {
                    return None;
                };
                let [u] = ir.users(out)[..] else { return None };
                match ir.exprs[u].op {
                    Op::MatMul { a, .. } if a == out => Some((i, *src, *scale, out, u)),
                    _ => None,
                }
            });
            let Some((i, src, scale, out, mm)) = found else {
                return Ok(());
            };
            let scores = ir.exprs[mm].out.expect("a MatMul defines its output");
            if ir
                .users(scores)
                .iter()
                .any(|&u| matches!(ir.exprs[u].op, Op::Scale { .. }))
            {
                return Err(LowerError::Pass {
                    pass: self.name(),
                    reason: format!("'{}' is scaled twice", ir.value(scores).name),
                });
            }
            ir.replace_uses(out, src);
            let scores_val = ir.value(scores).clone();
            let scaled = ir.add_value(
                &format!("{}.scaled", scores_val.name),
                ValueKind::Temp,
                scores_val.dtype,
                scores_val.shape,
            );
            ir.replace_uses(scores, scaled);
            ir.exprs.insert(
                mm + 1,
                Expr {
                    out: Some(scaled),
                    op: Op::Scale { src: scores, scale },
                },
            );
            ir.exprs.remove(i);
        }
    }
}
