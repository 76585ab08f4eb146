//! FuseTransposeBrgemm: Transposes around a brgemm become strides; nothing is copied.
//!
//! - An operand A or B read from `%t = transpose %x perm` reads `%x` through the
//!   composed permutation. For B, a view whose rows are contiguous in `%x` (K given as
//!   K^T, say) flips the layout between `trans` and `rowmajor` and swaps the view's
//!   last two axes, so every fused operand has a unit column stride.
//! - A brgemm output whose only user is `%y = transpose %c perm` is written through
//!   the inverse permutation straight into `%y`.
//! - Transposes left without users are removed.
//! ```text
//! before: %q.t = transpose %q perm=[0, 2, 1, 3]
//!         %scores = brgemm a=%q.t{rs=64, cs=1} ...
//! after:  %scores = brgemm a=%q<0,2,1,3>{rs=768, cs=1} ...
//! ```
//! Holds after: no Transpose feeds or follows a brgemm, unless it would put the
//! operand's innermost axis off its column (such a pattern is refused later).

use crate::LowerError;
use crate::mha::ir::{BLayout, MhaIr, Op};
use crate::mha::{MhaPass, MhaTarget};

#[derive(Debug)]
pub struct FuseTransposeBrgemm;

fn inverse(p: &[usize]) -> Vec<usize> {
    let mut inv = vec![0; p.len()];
    for (j, &i) in p.iter().enumerate() {
        inv[i] = j;
    }
    inv
}

impl MhaPass for FuseTransposeBrgemm {
    fn name(&self) -> &'static str {
        "fuse_transpose_brgemm"
    }

    fn run(&self, ir: &mut MhaIr, _target: &MhaTarget) -> Result<(), LowerError> {
        // Outputs first: a brgemm whose result is only transposed.
        let mut i = 0;
        while i < ir.exprs.len() {
            i += 1;
            let Op::Brgemm(b) = &ir.exprs[i - 1].op else {
                continue;
            };
            let c = b.c.value;
            let [u] = ir.users(c)[..] else { continue };
            let Op::Transpose { perm, .. } = &ir.exprs[u].op else {
                continue;
            };
            let inv = inverse(perm);
            if inv.last() != Some(&(inv.len() - 1)) {
                continue;
            }
            let t = ir.exprs[u].out.expect("a Transpose defines its output");
            let op = ir.operand(t, inv);
            let Op::Brgemm(b) = &mut ir.exprs[i - 1].op else {
                unreachable!("matched above")
            };
            b.c = op;
            ir.exprs[i - 1].out = Some(t);
            ir.exprs.remove(u);
        }
        // Inputs A and B.
        for i in 0..ir.exprs.len() {
            let Op::Brgemm(b) = &ir.exprs[i].op else {
                continue;
            };
            let r = b.a.perm.len();
            for which in [0, 1] {
                let Op::Brgemm(b) = &ir.exprs[i].op else {
                    unreachable!("matched above")
                };
                let opnd = if which == 0 { &b.a } else { &b.b };
                let Some(p) = ir.producer(opnd.value) else {
                    continue;
                };
                let Op::Transpose { src, perm } = &ir.exprs[p].op else {
                    continue;
                };
                let composed: Vec<usize> = opnd.perm.iter().map(|&i| perm[i]).collect();
                let mut layout = b.b_layout;
                let view = if composed[r - 1] == r - 1 {
                    composed
                } else if which == 1 && composed[r - 2] == r - 1 {
                    layout = match layout {
                        BLayout::Transposed => BLayout::RowMajor,
                        BLayout::RowMajor => BLayout::Transposed,
                        BLayout::Packed => continue,
                    };
                    let mut v = composed;
                    v.swap(r - 1, r - 2);
                    v
                } else {
                    continue;
                };
                let new = ir.operand(*src, view);
                let Op::Brgemm(b) = &mut ir.exprs[i].op else {
                    unreachable!("matched above")
                };
                if which == 0 {
                    b.a = new;
                } else {
                    b.b = new;
                    b.b_layout = layout;
                }
            }
        }
        // Transposes nothing reads any more.
        let mut i = 0;
        while i < ir.exprs.len() {
            let e = &ir.exprs[i];
            if let (Op::Transpose { .. }, Some(out)) = (&e.op, e.out)
                && ir.users(out).is_empty()
            {
                ir.exprs.remove(i);
            } else {
                i += 1;
            }
        }
        Ok(())
    }
}
