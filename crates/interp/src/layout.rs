//! Data-movement ops: Transpose, Reshape, Broadcast, Unsqueeze, Squeeze, Concat,
//! ShapeOf and Gather. None of them computes on element values, so they work on every
//! dtype by copying elements.

use snipjit_ir::{DType, Tensor, TensorData};

use crate::OpError;
use crate::index::{Strided, broadcast_pair, checked_numel, dense_strides, norm_axis};

/// The elements of `data` at `offsets`, in order.
fn take(data: &TensorData, offsets: impl Iterator<Item = usize>) -> TensorData {
    macro_rules! go {
        ($($v:ident),*) => {
            match data {
                $(TensorData::$v(x) => TensorData::$v(offsets.map(|i| x[i]).collect()),)*
            }
        };
    }
    go!(F32, BF16, F16, I8, U8, I32, I64, Bool)
}

/// Appends `src[range]` to `dst` (same dtype, checked by the caller).
fn extend(dst: &mut TensorData, src: &TensorData, range: std::ops::Range<usize>) {
    macro_rules! go {
        ($($v:ident),*) => {
            match (dst, src) {
                $((TensorData::$v(d), TensorData::$v(s)) => d.extend_from_slice(&s[range]),)*
                _ => unreachable!("extend: dtypes checked equal"),
            }
        };
    }
    go!(F32, BF16, F16, I8, U8, I32, I64, Bool)
}

/// An empty buffer of `dtype` with room for `n` elements.
fn with_capacity(dtype: DType, n: usize) -> TensorData {
    match dtype {
        DType::F32 => TensorData::F32(Vec::with_capacity(n)),
        DType::BF16 => TensorData::BF16(Vec::with_capacity(n)),
        DType::F16 => TensorData::F16(Vec::with_capacity(n)),
        DType::I8 => TensorData::I8(Vec::with_capacity(n)),
        DType::U8 => TensorData::U8(Vec::with_capacity(n)),
        DType::I32 => TensorData::I32(Vec::with_capacity(n)),
        DType::I64 => TensorData::I64(Vec::with_capacity(n)),
        DType::Bool => TensorData::Bool(Vec::with_capacity(n)),
    }
}

/// Output dim `i` is input dim `perm[i]`.
pub(crate) fn transpose(x: &Tensor, perm: &[usize]) -> Result<Tensor, OpError> {
    let rank = x.shape.len();
    let mut seen = vec![false; rank];
    let valid = perm.len() == rank
        && perm
            .iter()
            .all(|&p| p < rank && !std::mem::replace(&mut seen[p], true));
    if !valid {
        return Err(OpError::Shape(format!(
            "perm {perm:?} is not a permutation of 0..{rank}"
        )));
    }
    let in_strides = dense_strides(&x.shape);
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
    let strides = perm.iter().map(|&p| in_strides[p]).collect();
    let data = take(&x.data, Strided::new(&shape, strides));
    Ok(Tensor { shape, data })
}

/// Reads a shape input: an `i64[r]` tensor.
fn shape_input(t: &Tensor, what: &'static str) -> Result<Vec<i64>, OpError> {
    match &t.data {
        TensorData::I64(v) if t.shape.len() == 1 => Ok(v.clone()),
        TensorData::I64(_) => Err(OpError::Shape(format!(
            "{what} shape input must be 1-D, got shape {:?}",
            t.shape
        ))),
        _ => Err(OpError::UnsupportedDType {
            dtype: t.dtype(),
            what,
        }),
    }
}

/// ONNX Reshape: 0 copies the input dim at that position (unless `allow_zero`, where it
/// is a zero-size dim), -1 is inferred from the element count.
pub(crate) fn reshape(x: &Tensor, target: &Tensor, allow_zero: bool) -> Result<Tensor, OpError> {
    let target = shape_input(target, "Reshape shape")?;
    let bad =
        |why: String| OpError::Shape(format!("cannot reshape {:?} to {target:?}: {why}", x.shape));
    let mut shape = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, &v) in target.iter().enumerate() {
        shape.push(match v {
            -1 => {
                if infer_at.replace(i).is_some() {
                    return Err(bad("more than one -1".into()));
                }
                1
            }
            0 if !allow_zero => *x
                .shape
                .get(i)
                .ok_or_else(|| bad(format!("0 at position {i} copies a missing input dim")))?,
            v if v < 0 => return Err(bad(format!("invalid dim {v}"))),
            v => usize::try_from(v).map_err(|_| bad(format!("dim {v} too large")))?,
        });
    }
    let known = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad("element count overflows".into()))?;
    if let Some(at) = infer_at {
        if known == 0 {
            return Err(bad("-1 cannot be inferred next to a zero-size dim".into()));
        }
        if !x.numel().is_multiple_of(known) {
            return Err(bad(format!(
                "{} elements do not divide into {known}",
                x.numel()
            )));
        }
        shape[at] = x.numel() / known;
    } else if known != x.numel() {
        return Err(bad(format!("{} elements, target has {known}", x.numel())));
    }
    Ok(Tensor {
        shape,
        data: x.data.clone(),
    })
}

/// ONNX Expand: bidirectional numpy broadcast of `x` with the target shape.
pub(crate) fn broadcast(x: &Tensor, target: &Tensor) -> Result<Tensor, OpError> {
    let target = shape_input(target, "Broadcast shape")?;
    let target = target
        .iter()
        .map(|&v| {
            usize::try_from(v)
                .map_err(|_| OpError::Shape(format!("negative dim {v} in Broadcast shape")))
        })
        .collect::<Result<Vec<usize>, OpError>>()?;
    let shape = broadcast_pair(&x.shape, &target)?;
    checked_numel(&shape, x.dtype())?;
    let data = take(&x.data, Strided::broadcast(&x.shape, &shape));
    Ok(Tensor { shape, data })
}

/// Inserts size-1 dims at `axes` (positions in the output).
pub(crate) fn unsqueeze(x: &Tensor, axes: &[i64]) -> Result<Tensor, OpError> {
    let out_rank = x.shape.len() + axes.len();
    let mut is_new = vec![false; out_rank];
    for &a in axes {
        let a = norm_axis(a, out_rank)?;
        if std::mem::replace(&mut is_new[a], true) {
            return Err(OpError::Shape(format!("axis {a} listed twice")));
        }
    }
    let mut src = x.shape.iter();
    let shape = is_new
        .iter()
        .map(|&new| {
            if new {
                1
            } else {
                *src.next().expect("one source dim per kept axis")
            }
        })
        .collect();
    Ok(Tensor {
        shape,
        data: x.data.clone(),
    })
}

/// Removes the size-1 dims at `axes` (empty: every size-1 dim).
pub(crate) fn squeeze(x: &Tensor, axes: &[i64]) -> Result<Tensor, OpError> {
    let rank = x.shape.len();
    let mut drop: Vec<bool> = x.shape.iter().map(|&d| axes.is_empty() && d == 1).collect();
    for &a in axes {
        let a = norm_axis(a, rank)?;
        if x.shape[a] != 1 {
            return Err(OpError::Shape(format!(
                "cannot squeeze axis {a} of size {} in {:?}",
                x.shape[a], x.shape
            )));
        }
        drop[a] = true;
    }
    let shape = (0..rank)
        .filter(|&d| !drop[d])
        .map(|d| x.shape[d])
        .collect();
    Ok(Tensor {
        shape,
        data: x.data.clone(),
    })
}

/// Concatenation along `axis`.
pub(crate) fn concat(xs: &[&Tensor], axis: i64) -> Result<Tensor, OpError> {
    let first = xs
        .first()
        .ok_or_else(|| OpError::Shape("Concat needs at least one input".into()))?;
    let rank = first.shape.len();
    let axis = norm_axis(axis, rank)?;
    let mut shape = first.shape.clone();
    shape[axis] = 0;
    for x in xs {
        if x.dtype() != first.dtype() {
            return Err(OpError::DTypeMismatch {
                a: first.dtype(),
                b: x.dtype(),
            });
        }
        let same_dims =
            x.shape.len() == rank && (0..rank).all(|d| d == axis || x.shape[d] == first.shape[d]);
        if !same_dims {
            return Err(OpError::Shape(format!(
                "Concat inputs {:?} and {:?} differ outside axis {axis}",
                first.shape, x.shape
            )));
        }
        shape[axis] = shape[axis]
            .checked_add(x.shape[axis])
            .ok_or_else(|| OpError::TooLarge {
                dtype: first.dtype(),
                shape: shape.clone(),
            })?;
    }
    let n = checked_numel(&shape, first.dtype())?;
    if n == 0 {
        return Ok(Tensor::zeros(first.dtype(), &shape));
    }
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let mut data = with_capacity(first.dtype(), n);
    for o in 0..outer {
        for x in xs {
            let chunk = x.shape[axis] * inner;
            extend(&mut data, &x.data, o * chunk..(o + 1) * chunk);
        }
    }
    Ok(Tensor { shape, data })
}

/// The shape of `x` as `i64[rank]`.
pub(crate) fn shape_of(x: &Tensor) -> Result<Tensor, OpError> {
    let dims = x
        .shape
        .iter()
        .map(|&d| i64::try_from(d).map_err(|_| OpError::Shape(format!("dim {d} exceeds i64"))))
        .collect::<Result<Vec<i64>, OpError>>()?;
    Ok(Tensor {
        shape: vec![dims.len()],
        data: TensorData::I64(dims),
    })
}

/// ONNX Gather along `axis`: output shape `data[..axis] + indices + data[axis+1..]`;
/// negative indices count from the end; an index out of range is an error.
pub(crate) fn gather(data: &Tensor, indices: &Tensor, axis: i64) -> Result<Tensor, OpError> {
    let axis = norm_axis(axis, data.shape.len())?;
    let raw: Vec<i64> = match &indices.data {
        TensorData::I64(v) => v.clone(),
        TensorData::I32(v) => v.iter().map(|&i| i64::from(i)).collect(),
        _ => {
            return Err(OpError::UnsupportedDType {
                dtype: indices.dtype(),
                what: "Gather indices",
            });
        }
    };
    let size = data.shape[axis];
    let rows = raw
        .iter()
        .map(|&i| {
            let j = if i < 0 {
                i.checked_add(size as i64)
            } else {
                Some(i)
            };
            match j {
                Some(j) if (0..size as i64).contains(&j) => Ok(j as usize),
                _ => Err(OpError::IndexOutOfRange {
                    index: i,
                    axis,
                    size,
                }),
            }
        })
        .collect::<Result<Vec<usize>, OpError>>()?;
    let shape: Vec<usize> = data.shape[..axis]
        .iter()
        .chain(&indices.shape)
        .chain(&data.shape[axis + 1..])
        .copied()
        .collect();
    if checked_numel(&shape, data.dtype())? == 0 {
        return Ok(Tensor::zeros(data.dtype(), &shape));
    }
    let outer: usize = data.shape[..axis].iter().product();
    let inner: usize = data.shape[axis + 1..].iter().product();
    let offsets = (0..outer).flat_map(|o| {
        rows.iter()
            .flat_map(move |&r| (0..inner).map(move |i| (o * size + r) * inner + i))
    });
    Ok(Tensor {
        shape,
        data: take(&data.data, offsets),
    })
}
