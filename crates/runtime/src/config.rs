//! The runtime configurator: from concrete shapes to the kernel's domain, its
//! broadcast pattern, the per-port strides, and the argument block values.
//!
//! An elementwise kernel walks a 2-D domain `[M rows, W elements]`; dims above those
//! form the parallel domain `P` that the executor splits over threads. The
//! configurator first collapses trailing dims on which every port agrees
//! (OptimizeDomain), so that `W` is as long as the layouts allow, then computes:
//! - the broadcast pattern (which inputs are broadcast along `W`): it selects the kernel;
//! - per port and per domain dim, the byte stride (0 where the port is broadcast);
//! - per port, the outer increment: the bytes to add after a row, given that the
//!   kernel's main loop already advanced unbroadcast ports by `floor(W / lanes)` vectors.

use snipjit_ir::broadcast_concrete;

use crate::RuntimeError;

/// The configured domain of one call of a subgraph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Domain {
    /// Collapsed domain, outermost first; the last two are `[M, W]` (padded with 1s).
    pub dims: Vec<usize>,
    /// Per input: broadcast along the innermost dim.
    pub bcast_inner: Vec<bool>,
    /// Per port (inputs then outputs), per collapsed dim: stride in elements (0 if broadcast).
    pub strides: Vec<Vec<usize>>,
}

impl Domain {
    /// Elements per row.
    pub fn w(&self) -> usize {
        self.dims[self.dims.len() - 1]
    }

    /// Rows per parallel index.
    pub fn m(&self) -> usize {
        self.dims[self.dims.len() - 2]
    }

    /// Parallel dims (everything above `[M, W]`).
    pub fn parallel(&self) -> &[usize] {
        &self.dims[..self.dims.len() - 2]
    }

    /// Total number of output elements.
    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }

    /// The outer increment in bytes of every port for `lanes`-wide vectors, every port
    /// holding elements of `elem` bytes (see [`Domain::port_outer_increments`]).
    pub fn outer_increments(&self, lanes: usize, elem: usize) -> Vec<i64> {
        self.port_outer_increments(lanes, &vec![elem; self.strides.len()])
    }

    /// The outer increment in bytes of every port (inputs, then outputs) for
    /// `lanes`-wide vectors, port `p` holding elements of `sizes[p]` bytes: the row
    /// stride minus what the kernel's main loop already advanced
    /// (`floor(W / lanes) * lanes * size`, nothing for an inner-broadcast input).
    pub fn port_outer_increments(&self, lanes: usize, sizes: &[usize]) -> Vec<i64> {
        let w = self.w();
        let rank = self.dims.len();
        let n_in = self.bcast_inner.len();
        self.strides
            .iter()
            .zip(sizes)
            .enumerate()
            .map(|(p, (s, &elem))| {
                let incremented = p >= n_in || !self.bcast_inner[p];
                let advanced = if incremented {
                    (w / lanes) * lanes * elem
                } else {
                    0
                };
                (s[rank - 2] * elem) as i64 - advanced as i64
            })
            .collect()
    }
}

/// Configures the domain for inputs of shapes `inputs` and outputs of shape `out`.
///
/// Every output must have the full broadcast shape; an input that does not broadcast
/// to it is an error.
pub fn configure(inputs: &[&[usize]], outputs: &[&[usize]]) -> Result<Domain, RuntimeError> {
    let mut full: Vec<usize> = outputs.first().map(|o| o.to_vec()).unwrap_or_default();
    for i in inputs {
        full = broadcast_concrete(&full, i).ok_or_else(|| {
            RuntimeError::Shape(format!("input shape {i:?} does not broadcast to {full:?}"))
        })?;
    }
    for o in outputs {
        if *o != full.as_slice() {
            return Err(RuntimeError::Shape(format!(
                "output shape {o:?} differs from the domain {full:?}; the kernel writes full-domain outputs only"
            )));
        }
    }
    let rank = full.len();
    // Per port, dims padded to the domain rank.
    let padded: Vec<Vec<usize>> = inputs
        .iter()
        .chain(outputs)
        .map(|s| {
            let mut p = vec![1; rank - s.len()];
            p.extend_from_slice(s);
            p
        })
        .collect();
    // Collapse runs of dims: dims i-1 and i merge when every port is either full on
    // both or broadcast on both (size-1 dims of the domain are dropped first).
    let mut groups: Vec<Vec<usize>> = vec![];
    for d in 0..rank {
        if full[d] == 1 {
            continue;
        }
        let state = |p: &Vec<usize>| p[d] == full[d];
        let merge = groups.last().is_some_and(|g| {
            let prev = *g.last().expect("groups are non-empty");
            padded.iter().all(|p| state(p) == (p[prev] == full[prev]))
        });
        if merge {
            groups.last_mut().expect("checked").push(d);
        } else {
            groups.push(vec![d]);
        }
    }
    let mut dims: Vec<usize> = groups
        .iter()
        .map(|g| g.iter().map(|&d| full[d]).product())
        .collect();
    let mut full_in: Vec<Vec<bool>> = padded
        .iter()
        .map(|p| groups.iter().map(|g| p[g[0]] == full[g[0]]).collect())
        .collect();
    while dims.len() < 2 {
        dims.insert(0, 1);
        for f in &mut full_in {
            f.insert(0, true);
        }
    }
    // A zero-size domain keeps its rank; nothing runs.
    let strides = full_in
        .iter()
        .map(|f| {
            let mut s = vec![0; dims.len()];
            let mut acc = 1usize;
            for d in (0..dims.len()).rev() {
                if f[d] {
                    s[d] = acc;
                    acc = acc.saturating_mul(dims[d]);
                }
            }
            s
        })
        .collect();
    let w = dims[dims.len() - 1];
    let bcast_inner = full_in[..inputs.len()]
        .iter()
        .map(|f| !f[dims.len() - 1] && w > 1)
        .collect();
    Ok(Domain {
        dims,
        bcast_inner,
        strides,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_collapses_to_one_row() {
        let d = configure(&[&[3, 5, 7], &[3, 5, 7]], &[&[3, 5, 7]]).unwrap();
        assert_eq!(d.dims, vec![1, 105]);
        assert_eq!(d.bcast_inner, vec![false, false]);
        assert_eq!(d.strides[0][1], 1);
    }

    #[test]
    fn row_broadcast_keeps_two_dims() {
        // The worked example of DESIGN.md: y[N, C] = relu(x[N, C] + b[1, C]).
        let d = configure(&[&[3, 37], &[1, 37]], &[&[3, 37]]).unwrap();
        assert_eq!(d.dims, vec![3, 37]);
        assert_eq!(d.bcast_inner, vec![false, false]);
        assert_eq!(d.strides[1], vec![0, 1]);
        // 16 lanes: the main loop advances x, b, y by 2 vectors = 128 bytes per row.
        assert_eq!(d.outer_increments(16, 4), vec![148 - 128, -128, 148 - 128]);
    }

    #[test]
    fn column_broadcast_is_inner_broadcast() {
        let d = configure(&[&[4, 10], &[4, 1]], &[&[4, 10]]).unwrap();
        assert_eq!(d.dims, vec![4, 10]);
        assert_eq!(d.bcast_inner, vec![false, true]);
        assert_eq!(d.strides[1], vec![1, 0]);
        assert_eq!(d.outer_increments(8, 4), vec![40 - 32, 4, 40 - 32]);
    }

    #[test]
    fn increments_follow_each_ports_element_size() {
        // x: u8[4, 10], b: f32[4, 1] (inner broadcast), y: bf16[4, 10]; 8 lanes: the
        // main loop advances x by 8 bytes and y by 16 per row.
        let d = configure(&[&[4, 10], &[4, 1]], &[&[4, 10]]).unwrap();
        assert_eq!(
            d.port_outer_increments(8, &[1, 4, 2]),
            vec![10 - 8, 4, 20 - 16]
        );
        // Row broadcast: b[1, 10] of bool returns to its row start.
        let d = configure(&[&[3, 10], &[1, 10]], &[&[3, 10]]).unwrap();
        assert_eq!(
            d.port_outer_increments(4, &[2, 1, 4]),
            vec![20 - 16, -8, 40 - 32]
        );
    }

    #[test]
    fn scalar_input_and_middle_broadcast() {
        let d = configure(&[&[2, 3, 4, 5], &[], &[2, 1, 4, 5]], &[&[2, 3, 4, 5]]).unwrap();
        // dims: [2][3][4*5]; the scalar is broadcast everywhere.
        assert_eq!(d.dims, vec![2, 3, 20]);
        assert_eq!(d.bcast_inner, vec![false, true, false]);
        assert_eq!(d.strides[2], vec![20, 0, 1]);
        assert_eq!(d.strides[0], vec![60, 20, 1]);
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert!(configure(&[&[3, 4], &[5]], &[&[3, 4]]).is_err());
        assert!(configure(&[&[3, 4]], &[&[3, 1]]).is_err());
    }

    #[test]
    fn zero_size_domain() {
        let d = configure(&[&[0, 4]], &[&[0, 4]]).unwrap();
        assert_eq!(d.numel(), 0);
    }
}
