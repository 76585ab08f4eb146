//! Shape arithmetic and the strided index walk behind broadcasting and transposes.

use snipjit_ir::{DType, Tensor};

use crate::{MAX_TENSOR_BYTES, OpError};

/// The element count of `shape`, checking that a `dtype` tensor of it may be allocated.
///
/// The product of the nonzero dims must fit in `usize` even when a zero dim makes the
/// tensor empty, so that every partial product taken by the ops is safe too.
pub(crate) fn checked_numel(shape: &[usize], dtype: DType) -> Result<usize, OpError> {
    let too_large = || OpError::TooLarge {
        dtype,
        shape: shape.to_vec(),
    };
    shape
        .iter()
        .filter(|&&d| d != 0)
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(too_large)?;
    let n: usize = shape.iter().product();
    match n.checked_mul(dtype.size()) {
        Some(bytes) if bytes <= MAX_TENSOR_BYTES => Ok(n),
        _ => Err(too_large()),
    }
}

/// Checks that an input tensor is well formed: its shape's element count (see
/// [`checked_numel`]) is the number of elements it holds.
pub(crate) fn check_tensor(t: &Tensor) -> Result<(), OpError> {
    let n = checked_numel(&t.shape, t.dtype())?;
    if n == t.numel() {
        Ok(())
    } else {
        Err(OpError::Shape(format!(
            "a tensor of shape {:?} holds {} elements",
            t.shape,
            t.numel()
        )))
    }
}

/// Row-major strides (in elements) of a dense tensor of `shape`.
pub(crate) fn dense_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; shape.len()];
    let mut s = 1usize;
    for i in (0..shape.len()).rev() {
        strides[i] = s;
        s = s.saturating_mul(shape[i]);
    }
    strides
}

/// Strides that read a dense tensor of shape `input` as if it had shape `out`
/// (numpy broadcasting: `input` is right-aligned; its size-1 and missing dims get stride 0).
/// The caller has checked that `input` broadcasts to `out`.
pub(crate) fn broadcast_strides(input: &[usize], out: &[usize]) -> Vec<usize> {
    let dense = dense_strides(input);
    let lead = out.len() - input.len();
    (0..out.len())
        .map(|i| match i.checked_sub(lead) {
            Some(j) if input[j] != 1 => dense[j],
            _ => 0,
        })
        .collect()
}

/// numpy broadcast of two concrete shapes, as an error when they are incompatible.
pub(crate) fn broadcast_pair(a: &[usize], b: &[usize]) -> Result<Vec<usize>, OpError> {
    snipjit_ir::broadcast_concrete(a, b).ok_or_else(|| OpError::Broadcast {
        a: a.to_vec(),
        b: b.to_vec(),
    })
}

/// Normalizes a possibly negative `axis` against `rank`.
pub(crate) fn norm_axis(axis: i64, rank: usize) -> Result<usize, OpError> {
    snipjit_ir::infer::norm_axis(axis, rank).map_err(OpError::Shape)
}

/// Walks the offsets `sum(idx[d] * strides[d])` for every index `idx` of `dims` in
/// row-major order: an odometer over the output with the input's strides.
#[derive(Debug)]
pub(crate) struct Strided {
    dims: Vec<usize>,
    strides: Vec<usize>,
    idx: Vec<usize>,
    offset: usize,
    left: usize,
}

impl Strided {
    /// `dims` must have a non-overflowing element count (checked by the caller).
    pub(crate) fn new(dims: &[usize], strides: Vec<usize>) -> Strided {
        debug_assert_eq!(dims.len(), strides.len());
        Strided {
            dims: dims.to_vec(),
            strides,
            idx: vec![0; dims.len()],
            offset: 0,
            left: dims.iter().product(),
        }
    }

    /// The offsets of a dense `input` broadcast to `out`.
    pub(crate) fn broadcast(input: &[usize], out: &[usize]) -> Strided {
        Strided::new(out, broadcast_strides(input, out))
    }
}

impl Iterator for Strided {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let current = self.offset;
        if self.left > 0 {
            for d in (0..self.dims.len()).rev() {
                self.idx[d] += 1;
                self.offset += self.strides[d];
                if self.idx[d] < self.dims[d] {
                    break;
                }
                self.offset -= self.strides[d] * self.dims[d];
                self.idx[d] = 0;
            }
        }
        Some(current)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Strided {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_walks_dense_broadcast_and_transposed() {
        let dense: Vec<usize> = Strided::new(&[2, 3], vec![3, 1]).collect();
        assert_eq!(dense, vec![0, 1, 2, 3, 4, 5]);
        let bcast: Vec<usize> = Strided::broadcast(&[3], &[2, 3]).collect();
        assert_eq!(bcast, vec![0, 1, 2, 0, 1, 2]);
        let col: Vec<usize> = Strided::broadcast(&[2, 1], &[2, 3]).collect();
        assert_eq!(col, vec![0, 0, 0, 1, 1, 1]);
        // Transpose of a 2x3: output [3, 2] reads input strides [1, 3].
        let t: Vec<usize> = Strided::new(&[3, 2], vec![1, 3]).collect();
        assert_eq!(t, vec![0, 3, 1, 4, 2, 5]);
        assert_eq!(Strided::new(&[], vec![]).collect::<Vec<_>>(), vec![0]);
        assert_eq!(Strided::new(&[2, 0, 3], vec![0, 0, 0]).count(), 0);
    }

    #[test]
    fn numel_limits() {
        assert_eq!(checked_numel(&[2, 3], DType::F32), Ok(6));
        assert_eq!(checked_numel(&[], DType::F32), Ok(1));
        assert_eq!(checked_numel(&[0, usize::MAX], DType::F32), Ok(0));
        assert!(checked_numel(&[1 << 40, 0, 1 << 40], DType::F32).is_err());
        assert_eq!(checked_numel(&[1 << 20, 0, 1 << 20], DType::F32), Ok(0));
        assert!(checked_numel(&[usize::MAX, 2], DType::U8).is_err());
        assert!(checked_numel(&[1 << 20, 1 << 20, 1 << 20], DType::U8).is_err());
        assert!(checked_numel(&[1 << 33], DType::F32).is_err());
    }
}
