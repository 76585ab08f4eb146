//! MatMul with numpy semantics: 1-D operands, broadcast batch dims, transpose flags.

use snipjit_ir::Tensor;

use crate::OpError;
use crate::index::{Strided, broadcast_pair, broadcast_strides, checked_numel};
use crate::num::{Num, from_f64s, from_i64s, lift};

/// One operand seen as a batch of matrices: element `(r, c)` of matrix `batch` is at
/// `batch_offset + r * row_stride + c * col_stride`.
#[derive(Debug)]
struct Operand {
    batch: Vec<usize>,
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

/// Views `shape` as matrices. A 1-D operand is a row vector `[1, K]` for `a` (`is_a`)
/// and a column vector `[K, 1]` for `b`; the transpose flag is ignored for it.
fn operand(shape: &[usize], transpose: bool, is_a: bool) -> Result<Operand, OpError> {
    match shape.len() {
        0 => Err(OpError::Shape("MatMul inputs must have rank >= 1".into())),
        1 => {
            let k = shape[0];
            Ok(if is_a {
                Operand {
                    batch: vec![],
                    rows: 1,
                    cols: k,
                    row_stride: 0,
                    col_stride: 1,
                }
            } else {
                Operand {
                    batch: vec![],
                    rows: k,
                    cols: 1,
                    row_stride: 1,
                    col_stride: 0,
                }
            })
        }
        r => {
            let (r0, c0) = (shape[r - 2], shape[r - 1]);
            let batch = shape[..r - 2].to_vec();
            Ok(if transpose {
                Operand {
                    batch,
                    rows: c0,
                    cols: r0,
                    row_stride: 1,
                    col_stride: c0,
                }
            } else {
                Operand {
                    batch,
                    rows: r0,
                    cols: c0,
                    row_stride: c0,
                    col_stride: 1,
                }
            })
        }
    }
}

/// `a @ b` after transposing the last two dims of an input whose flag is set.
pub(crate) fn matmul(a: &Tensor, b: &Tensor, ta: bool, tb: bool) -> Result<Tensor, OpError> {
    if a.dtype() != b.dtype() {
        return Err(OpError::DTypeMismatch {
            a: a.dtype(),
            b: b.dtype(),
        });
    }
    let dtype = a.dtype();
    let oa = operand(&a.shape, ta, true)?;
    let ob = operand(&b.shape, tb, false)?;
    if oa.cols != ob.rows {
        return Err(OpError::Shape(format!(
            "MatMul inner dims differ: {:?}{} has K = {}, {:?}{} has K = {}",
            a.shape,
            if ta { "^T" } else { "" },
            oa.cols,
            b.shape,
            if tb { "^T" } else { "" },
            ob.rows
        )));
    }
    let batch = broadcast_pair(&oa.batch, &ob.batch)?;
    let (m, k, n) = (oa.rows, oa.cols, ob.cols);
    let mut shape = batch.clone();
    if a.shape.len() > 1 {
        shape.push(m);
    }
    if b.shape.len() > 1 {
        shape.push(n);
    }
    if checked_numel(&shape, dtype)? == 0 {
        return Ok(Tensor::zeros(dtype, &shape));
    }
    // Offsets of each batch's matrix: batch strides of the dense input are scaled by
    // the matrix size, and broadcast (0) where the batch dim is 1 or missing.
    let matrix_a = a.shape.iter().rev().take(2).product::<usize>();
    let matrix_b = b.shape.iter().rev().take(2).product::<usize>();
    let bases = |op: &Operand, matrix: usize| {
        let strides = broadcast_strides(&op.batch, &batch)
            .into_iter()
            .map(|s| s * matrix)
            .collect();
        Strided::new(&batch, strides)
    };
    let batches = || bases(&oa, matrix_a).zip(bases(&ob, matrix_b));
    let at_a = |base: usize, i: usize, p: usize| base + i * oa.row_stride + p * oa.col_stride;
    let at_b = |base: usize, p: usize, j: usize| base + p * ob.row_stride + j * ob.col_stride;
    let data = match (lift(&a.data), lift(&b.data)) {
        (Num::F(x), Num::F(y)) => {
            let mut out = Vec::with_capacity(shape.iter().product());
            for (ba, bb) in batches() {
                for i in 0..m {
                    for j in 0..n {
                        let s =
                            (0..k).fold(0.0f64, |s, p| s + x[at_a(ba, i, p)] * y[at_b(bb, p, j)]);
                        out.push(s);
                    }
                }
            }
            from_f64s(dtype, out.into_iter())
        }
        (Num::I(x), Num::I(y)) => {
            let mut out = Vec::with_capacity(shape.iter().product());
            for (ba, bb) in batches() {
                for i in 0..m {
                    for j in 0..n {
                        let s = (0..k).fold(0i64, |s, p| {
                            s.wrapping_add(x[at_a(ba, i, p)].wrapping_mul(y[at_b(bb, p, j)]))
                        });
                        out.push(s);
                    }
                }
            }
            from_i64s(dtype, out.into_iter())
        }
        _ => {
            return Err(OpError::UnsupportedDType {
                dtype,
                what: "MatMul",
            });
        }
    };
    Ok(Tensor { shape, data })
}
