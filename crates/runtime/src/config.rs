//! The runtime configurator: from concrete shapes to the kernel's domain, its
//! broadcast pattern, the per-port strides, and the argument block values.
//!
//! An elementwise kernel walks a 2-D domain `[M rows, W elements]`; dims above those
//! form the parallel domain `P` that the executor splits over threads. The
//! configurator first collapses trailing dims on which every port agrees
//! (OptimizeDomain), so that `W` is as long as the layouts allow, then computes:
//! - the broadcast pattern (which inputs are broadcast along `W`): it selects the kernel;
//! - per port and per domain dim, the stride in elements (0 where the port is broadcast);
//! - the runtime argument block of a kernel ([`Domain::runtime_args`]): the kernel's
//!   linear IR says which pointer moves depend on the shape, symbolically
//!   ([`snipjit_lower::lir::Offset`]); the configurator evaluates each for this
//!   domain, in bytes. For the elementwise pipeline that is one value per port, the
//!   outer loop's increment `stride1 - main0/LANES`: the row stride minus what the
//!   main loop already advanced (CleanupLoopOffsets folded it so).

use snipjit_ir::broadcast_concrete;
use snipjit_lower::Lir;
use snipjit_lower::lir::Port;

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

    /// Work amount per kernel dim, innermost first: `[W, M]`.
    pub fn kernel_work(&self) -> [usize; 2] {
        [self.w(), self.m()]
    }

    /// Strides (elements) of port `q` (inputs, then outputs) per kernel dim,
    /// innermost first.
    pub fn kernel_strides(&self, q: usize) -> Option<[usize; 2]> {
        let s = self.strides.get(q)?;
        Some([s[s.len() - 1], s[s.len() - 2]])
    }

    /// The runtime argument block of the kernel `lir` for this domain: every slot of
    /// `lir.rt_slots()` (the pointer moves that depend on the shape), evaluated for
    /// the domain's work amounts and the port's strides, times the port's element
    /// size. The kernel must have been lowered for this domain's broadcast pattern:
    /// a port that moves along the inner dim must be contiguous there.
    pub fn runtime_args(&self, lir: &Lir) -> Result<Vec<i64>, RuntimeError> {
        let n_in = lir.inputs.len();
        if n_in != self.bcast_inner.len() || n_in + lir.outputs.len() != self.strides.len() {
            return Err(RuntimeError::Shape(format!(
                "the kernel has {} inputs and {} outputs, the domain {} ports",
                n_in,
                lir.outputs.len(),
                self.strides.len()
            )));
        }
        let index = |p: Port| match p {
            Port::Input(i) => i,
            Port::Output(o) => n_in + o,
        };
        // An empty domain runs nothing (and a zero-length row has no stride to check).
        let loops = if self.numel() == 0 {
            &[][..]
        } else {
            &lir.loops[..]
        };
        // The kernel moves a port along the row exactly when it is not broadcast
        // there (a row of one element has nothing to move over).
        for l in loops.iter().filter(|l| l.dim == 0) {
            for p in &l.ports {
                let q = index(p.port);
                let stride = self.kernel_strides(q).map_or(1, |s| s[0]);
                let fits = if p.incremented {
                    stride == 1
                } else {
                    stride == 0 || self.w() <= 1
                };
                if !fits {
                    return Err(RuntimeError::Shape(format!(
                        "port {q} is {} along the inner dim, but the kernel {} it there: \
                         the kernel was compiled for another broadcast pattern",
                        if stride == 0 {
                            "broadcast"
                        } else {
                            "not broadcast"
                        },
                        if p.incremented {
                            "moves"
                        } else {
                            "does not move"
                        },
                    )));
                }
            }
        }
        let work = self.kernel_work();
        lir.rt_slots()
            .iter()
            .map(|slot| {
                let q = index(slot.port);
                let strides = self
                    .kernel_strides(q)
                    .ok_or_else(|| RuntimeError::Shape(format!("port {q} is not in the domain")))?;
                let size = lir.port_info(slot.port).map_or(0, |p| p.dtype.size()) as i64;
                slot.offset
                    .eval(&work, &strides)
                    .and_then(|v| v.checked_mul(size))
                    .ok_or_else(|| {
                        RuntimeError::Shape(format!(
                            "the pointer move {} of port {q} in loop L{} cannot be evaluated \
                             for the domain {:?} (a dim the kernel does not walk, or an overflow)",
                            slot.offset, slot.loop_id.0, self.dims
                        ))
                    })
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

    /// The final linear IR of `sg` (a `.sg` graph) lowered for `isa` and the inner
    /// broadcast pattern `bcast`.
    fn lowered(sg: &str, bcast: &[bool], isa: snipjit_x64::Isa) -> Lir {
        let g = snipjit_ir::text::parse(sg, "t.sg").unwrap();
        let target = snipjit_x64::codegen::target(isa);
        snipjit_lower::lower(&g, bcast, &target, &mut |_, _| {}).unwrap()
    }

    const BIAS: &str = "graph bias(x: f32[N, C], b: f32[?, ?]) {\n  \
        s: f32[?, ?] = Add(x, b)\n  y: f32[?, ?] = Relu(s)\n  return y\n}\n";

    #[test]
    fn row_broadcast_keeps_two_dims() {
        // The worked example of DESIGN.md: y[N, C] = relu(x[N, C] + b[1, C]).
        let d = configure(&[&[3, 37], &[1, 37]], &[&[3, 37]]).unwrap();
        assert_eq!(d.dims, vec![3, 37]);
        assert_eq!(d.bcast_inner, vec![false, false]);
        assert_eq!(d.strides[1], vec![0, 1]);
        // 16 lanes: the main loop advances x, b, y by 2 vectors = 128 bytes per row;
        // after the row x and y move on to the next row (148 bytes from its start),
        // b returns to its row start.
        let lir = lowered(BIAS, &d.bcast_inner, snipjit_x64::Isa::Avx512);
        assert_eq!(
            d.runtime_args(&lir).unwrap(),
            vec![148 - 128, -128, 148 - 128]
        );
        // 8 lanes: 4 vectors, the same 128 bytes.
        let lir = lowered(BIAS, &d.bcast_inner, snipjit_x64::Isa::Avx2);
        assert_eq!(
            d.runtime_args(&lir).unwrap(),
            vec![148 - 128, -128, 148 - 128]
        );
    }

    #[test]
    fn column_broadcast_is_inner_broadcast() {
        let d = configure(&[&[4, 10], &[4, 1]], &[&[4, 10]]).unwrap();
        assert_eq!(d.dims, vec![4, 10]);
        assert_eq!(d.bcast_inner, vec![false, true]);
        assert_eq!(d.strides[1], vec![1, 0]);
        // 8 lanes: one vector (32 bytes) per row for x and y; b is never moved along
        // the row and steps one element per row.
        let lir = lowered(BIAS, &d.bcast_inner, snipjit_x64::Isa::Avx2);
        assert_eq!(d.runtime_args(&lir).unwrap(), vec![40 - 32, 4, 40 - 32]);
        // The kernel of another pattern does not fit the domain, either way.
        let other = lowered(BIAS, &[false, false], snipjit_x64::Isa::Avx2);
        assert!(d.runtime_args(&other).is_err());
        let full = configure(&[&[4, 10], &[4, 10]], &[&[4, 10]]).unwrap();
        assert!(full.runtime_args(&lir).is_err());
    }

    #[test]
    fn increments_follow_each_ports_element_size() {
        // x: u8[4, 10], b: f32[4, 1] (inner broadcast), y: bf16[4, 10]; 8 lanes: the
        // main loop advances x by 8 bytes and y by 16 per row.
        let sg = "graph narrow(x: u8[N, C], b: f32[?, ?]) {\n  \
            xf: f32[N, C] = Convert(x, to=f32)\n  s: f32[?, ?] = Add(xf, b)\n  \
            y: bf16[?, ?] = Convert(s, to=bf16)\n  return y\n}\n";
        let d = configure(&[&[4, 10], &[4, 1]], &[&[4, 10]]).unwrap();
        let lir = lowered(sg, &d.bcast_inner, snipjit_x64::Isa::Avx2);
        assert_eq!(d.runtime_args(&lir).unwrap(), vec![10 - 8, 4, 20 - 16]);
        // Row broadcast: b[1, 10] returns to its row start (-8 f32 = -32 bytes).
        let d = configure(&[&[3, 10], &[1, 10]], &[&[3, 10]]).unwrap();
        let lir = lowered(sg, &d.bcast_inner, snipjit_x64::Isa::Avx2);
        assert_eq!(d.runtime_args(&lir).unwrap(), vec![10 - 8, -32, 20 - 16]);
        // AVX-512, 16 lanes and a row of 10: no full vector, nothing to take back.
        let lir = lowered(sg, &d.bcast_inner, snipjit_x64::Isa::Avx512);
        assert_eq!(d.runtime_args(&lir).unwrap(), vec![10, 0, 20]);
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
        // A zero-length row: b[3, 1] is broadcast along it, yet the pattern says
        // full (a row of 0 is no broadcast); nothing runs, the block still evaluates.
        let d = configure(&[&[3, 0], &[3, 1]], &[&[3, 0]]).unwrap();
        assert_eq!(d.bcast_inner, vec![false, false]);
        let lir = lowered(BIAS, &d.bcast_inner, snipjit_x64::Isa::Avx2);
        assert_eq!(d.runtime_args(&lir).unwrap(), vec![0, 4, 0]);
    }
}
