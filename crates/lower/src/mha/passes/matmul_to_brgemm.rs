//! MatMulToBrgemm: each MatMul becomes a Brgemm expression over whole tensors.
//!
//! `C[.., M, N] = A[.., M, K] · B` where B is `[.., K, N]` (row-major) or, for
//! `transpose_b`, `[.., N, K]` (the brgemm reads B^T rows). Operands are dense views
//! of their values (strides from the values' shapes); M, N, K are the whole dims.
//! ```text
//! before: %scores: f32[B, 12, S, L] = matmul %q.t, %k.t transpose_b
//! after:  %scores: f32[B, 12, S, L] = brgemm a=%q.t{rs=64, cs=1} b=%k.t{rs=64, cs=1} trans
//!             c=%scores{rs=L, cs=1} m=S n=L k=64 beta=0
//! ```
//! Holds after: no MatMul remains.

use crate::LowerError;
use crate::mha::ir::{BLayout, Beta, Brgemm, Extent, MhaIr, Op};
use crate::mha::{MhaPass, MhaTarget};

#[derive(Debug)]
pub struct MatMulToBrgemm;

impl MhaPass for MatMulToBrgemm {
    fn name(&self) -> &'static str {
        "matmul_to_brgemm"
    }

    fn run(&self, ir: &mut MhaIr, _target: &MhaTarget) -> Result<(), LowerError> {
        for i in 0..ir.exprs.len() {
            let Op::MatMul { a, b, transpose_b } = ir.exprs[i].op else {
                continue;
            };
            let c = ir.exprs[i].out.expect("a MatMul defines its output");
            let r = ir.value(c).shape.len();
            for v in [a, b, c] {
                let val = ir.value(v);
                if val.shape.len() != r || val.dtype != "f32" {
                    return Err(LowerError::Pass {
                        pass: self.name(),
                        reason: format!(
                            "'{}' is {}[{} dims], the MatMul needs f32 of rank {r}",
                            val.name,
                            val.dtype,
                            val.shape.len()
                        ),
                    });
                }
            }
            let (sa, sb) = (&ir.value(a).shape, &ir.value(b).shape);
            let m = sa[r - 2].clone();
            let k = sa[r - 1].clone();
            let n = if transpose_b {
                sb[r - 2].clone()
            } else {
                sb[r - 1].clone()
            };
            let brgemm = Brgemm {
                a: ir.dense(a),
                b: ir.dense(b),
                b_layout: if transpose_b {
                    BLayout::Transposed
                } else {
                    BLayout::RowMajor
                },
                c: ir.dense(c),
                m: Extent::Full(m),
                n: Extent::Full(n),
                k: Extent::Full(k),
                beta: Beta::Zero,
            };
            ir.exprs[i].op = Op::Brgemm(Box::new(brgemm));
        }
        Ok(())
    }
}
