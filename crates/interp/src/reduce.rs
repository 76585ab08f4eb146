//! Reductions and softmax.

use snipjit_ir::{ReduceKind, Tensor};

use crate::OpError;
use crate::index::{Strided, checked_numel, dense_strides, norm_axis};
use crate::num::{Num, fmax, fmin, from_f64s, from_i64s, lift};

/// Reduces `x` over `axes` (empty: all axes), keeping size-1 dims if `keep_dims`.
///
/// Floats accumulate in f64 (NaN propagates through Max and Min); ints in wrapping i64.
/// Over zero elements: Sum 0, Prod 1, Mean NaN, Max -inf, Min +inf for floats; for ints
/// Max, Min and Mean are an error.
pub(crate) fn reduce(
    kind: ReduceKind,
    axes: &[i64],
    keep_dims: bool,
    x: &Tensor,
) -> Result<Tensor, OpError> {
    let rank = x.shape.len();
    let mut reduced = vec![axes.is_empty(); rank];
    for &a in axes {
        let a = norm_axis(a, rank)?;
        if std::mem::replace(&mut reduced[a], true) {
            return Err(OpError::Shape(format!("axis {a} listed twice")));
        }
    }
    // Output index of each input element: the input walked with the output's strides,
    // 0 on the reduced axes.
    let kept: Vec<usize> = (0..rank)
        .map(|d| if reduced[d] { 1 } else { x.shape[d] })
        .collect();
    let out_n = checked_numel(&kept, x.dtype())?;
    let kept_strides = dense_strides(&kept);
    let strides = (0..rank)
        .map(|d| if reduced[d] { 0 } else { kept_strides[d] })
        .collect();
    let targets = || Strided::new(&x.shape, strides);
    // Elements folded into each output element.
    let count: usize = (0..rank)
        .filter(|&d| reduced[d])
        .map(|d| x.shape[d])
        .product();
    let shape: Vec<usize> = (0..rank)
        .filter(|&d| keep_dims || !reduced[d])
        .map(|d| kept[d])
        .collect();
    let dtype = x.dtype();
    let data = match lift(&x.data) {
        Num::F(v) => {
            let (init, f): (f64, fn(f64, f64) -> f64) = match kind {
                ReduceKind::Max => (f64::NEG_INFINITY, fmax),
                ReduceKind::Min => (f64::INFINITY, fmin),
                ReduceKind::Sum | ReduceKind::Mean => (0.0, |a, b| a + b),
                ReduceKind::Prod => (1.0, |a, b| a * b),
            };
            let mut acc = vec![init; out_n];
            for (o, &e) in targets().zip(&v) {
                acc[o] = f(acc[o], e);
            }
            if kind == ReduceKind::Mean {
                // 0 / 0 is NaN for an empty reduction, as numpy gives.
                acc.iter_mut().for_each(|s| *s /= count as f64);
            }
            from_f64s(dtype, acc.into_iter())
        }
        Num::I(v) => {
            if count == 0 && out_n > 0 && kind != ReduceKind::Sum && kind != ReduceKind::Prod {
                return Err(OpError::EmptyReduction {
                    what: kind.name(),
                    dtype,
                });
            }
            let (init, f): (i64, fn(i64, i64) -> i64) = match kind {
                ReduceKind::Max => (i64::MIN, i64::max),
                ReduceKind::Min => (i64::MAX, i64::min),
                ReduceKind::Sum | ReduceKind::Mean => (0, i64::wrapping_add),
                ReduceKind::Prod => (1, i64::wrapping_mul),
            };
            let mut acc = vec![init; out_n];
            for (o, &e) in targets().zip(&v) {
                acc[o] = f(acc[o], e);
            }
            if kind == ReduceKind::Mean {
                // Integer mean truncates toward zero; count > 0 was checked above.
                acc.iter_mut().for_each(|s| *s /= count as i64);
            }
            from_i64s(dtype, acc.into_iter())
        }
        Num::B(_) => {
            return Err(OpError::UnsupportedDType {
                dtype,
                what: kind.name(),
            });
        }
    };
    Ok(Tensor { shape, data })
}

/// Softmax over `axis`: `exp(x - max) / sum(exp(x - max))`, in f64.
///
/// A row holding NaN gives NaN; a row of all `-inf` gives NaN (0/0), as numpy does.
pub(crate) fn softmax(axis: i64, x: &Tensor) -> Result<Tensor, OpError> {
    let axis = norm_axis(axis, x.shape.len())?;
    let Num::F(v) = lift(&x.data) else {
        return Err(OpError::UnsupportedDType {
            dtype: x.dtype(),
            what: "Softmax",
        });
    };
    if x.numel() == 0 {
        return Ok(x.clone());
    }
    let len = x.shape[axis];
    let inner: usize = x.shape[axis + 1..].iter().product();
    let outer: usize = x.shape[..axis].iter().product();
    let mut out = vec![0.0f64; v.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| (o * len + k) * inner + i;
            let max = (0..len).fold(f64::NEG_INFINITY, |m, k| fmax(m, v[at(k)]));
            let mut sum = 0.0;
            for k in 0..len {
                let e = (v[at(k)] - max).exp();
                out[at(k)] = e;
                sum += e;
            }
            for k in 0..len {
                out[at(k)] /= sum;
            }
        }
    }
    Ok(Tensor {
        shape: x.shape.clone(),
        data: from_f64s(x.dtype(), out.into_iter()),
    })
}
