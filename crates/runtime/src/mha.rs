//! [`MhaKernel`]: runs an attention (`mha`) subgraph on JIT code.
//!
//! One compilation serves every batch, head count and sequence length: ONE JIT kernel
//! ([`MhaFused`]) for the pattern's K layout, scale and mask, whose entry point runs
//! the whole flash loop of a work item (Q·K^T brgemm, online-softmax block, P·V
//! brgemm, finish, and the per-head packing of K, as subroutines of one code buffer).
//! A call derives B, H, S, L from the input shapes and the pattern's permutations:
//! every Transpose of the pattern becomes a stride (a leading dimension, or the output
//! row stride), nothing is copied.
//!
//! # Loop nest (flash-style: never more than a block of the S × L scores)
//! ```text
//! parallel for (batch index, row block of m_blk Q rows):          Rust: one work item,
//!                                                                 one JIT call
//!     [first item of this head in the thread: pack K^T into kbuf]
//!     for n0 in (0..L).step_by(n_blk):                             JIT from here on
//!         S_blk[rows × n]  = Q[rows × D] · K[n0.., D]^T            (packed panels)
//!         S_blk = p = exp(mask(scale(S_blk)) - m);  m, l updated;
//!         acc *= alpha
//!         acc[rows × Dv] (+)= S_blk · V[n0.., Dv]
//!     out[rows × Dv] = acc / l   (any output row stride)
//! ```
//! Rust computes the item's base pointers and fills one [`MhaFusedArgs`] per item.
//!
//! # Scratch (per thread, sized per call)
//! The lowering (`snipjit_lower::mha`, run at compile time) chooses the blocking and
//! allocates the buffers: `m_blk × n_blk` scores (the probabilities overwrite them in
//! place), `m_blk × Dv` accumulator, `m_blk` maxima and sums at fixed offsets, then
//! the packed K of one head (`L × D` floats, L rounded up to the brgemm panel), whose
//! size the configurator evaluates per shape ([`MhaKernel::scratch_for`]). A
//! thread-local buffer, grown to the largest call seen and reused.
//!
//! # Threads
//! Work items are (batch index, row block) pairs, cut into contiguous chunks: one per
//! thread for a small call, up to 16 per thread for a large one (one per ~200 us of
//! work), whole heads each when the heads allow. The executor hands chunks out in order
//! to whichever thread is free ([`Executor::for_each_index`]), so a worker that wakes
//! up late or runs on a busier core takes fewer; a thread packs each K head once per
//! call even across chunks (it remembers the call and head its scratch holds). The
//! results are the same bit for bit for any thread count (every row is computed the
//! same way whichever thread runs it). When there are fewer items than threads, the
//! row blocks shrink (to a multiple of the brgemm's 6-row tile) so every thread has
//! work. A call of less than `MIN_PARALLEL_FLOPS` (~20 µs of work) runs on the
//! calling thread: waking the pool costs more than it saves there.
//!
//! # Numerics
//! Against the interpreter (which evaluates each op of the body in f64 and rounds to
//! f32), results differ by the f32 accumulation order of the matmuls, the kernel's
//! `exp` (a few ULPs), the running rescale, and a scale on Q being applied to the
//! scores instead (`(q·c)·k` vs `(q·k)·c`, equal in exact arithmetic). Rows whose
//! scores are all `-inf` give NaN, as the interpreter's softmax does.

use snipjit_ir::{DType, Graph, Shape, Tensor, TensorData};
use snipjit_tokenize::mha::{MhaMask, MhaPattern, ScaleOp, analyze_mha};
use snipjit_x64::{
    AttnMask, AttnScale, Isa, KLayout, Kernel, MhaFused, MhaFusedArgs, MhaFusedOptions,
};

use snipjit_lower::mha::{LayoutFormula, MhaPlan, MhaTarget, lower_mha};

use crate::scratch::ScratchBuf;
use crate::{Executor, RuntimeError};

/// Block sizes of the flash loop: Q rows per work item and score columns per block
/// (`n_blk` a multiple of the brgemm panel width: 64 columns on AVX-512, 16 on AVX2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MhaBlocking {
    pub m_blk: usize,
    pub n_blk: usize,
}

impl Default for MhaBlocking {
    /// 48 × 128: the score block (24 KiB) stays in L1 between the steps that touch
    /// it; see docs/mha.md for the measurements.
    fn default() -> MhaBlocking {
        MhaBlocking {
            m_blk: 48,
            n_blk: 128,
        }
    }
}

/// Matmul FLOPs below which a call runs on the calling thread: ~20 µs of work on one
/// core. Measured on `examples/mha.sg` (12 heads, D = 64, two threads): at S = 16
/// (0.8 MFLOP, ~15 µs) the pool's hand-off ate the whole gain (best two-thread time
/// 14.0 µs against 14.6 µs on one, medians worse), at S = 32 (3.1 MFLOP) two threads
/// already cut the time from ~41 to ~27 µs.
const MIN_PARALLEL_FLOPS: usize = 2_000_000;

/// A declared body input.
#[derive(Clone, Debug)]
struct InputDecl {
    name: String,
    dtype: DType,
    shape: Shape,
}

/// A compiled attention subgraph. `Send + Sync`: one instance serves any number of
/// threads and shapes at once.
#[derive(Debug)]
pub struct MhaKernel {
    pattern: MhaPattern,
    inputs: Vec<InputDecl>,
    isa: Isa,
    fused: MhaFused,
    /// The lowering's plan: its BrgemmBlocking chose the block sizes
    /// ([`MhaKernel::blocking`]), its AllocateBuffers places the scratch buffers
    /// ([`MhaKernel::scratch_for`]).
    lowered: MhaPlan,
    /// `lowered`'s scratch layout as formulas of the input shapes, with the
    /// positions of the kernel's regions in it (scores, acc, max, sum, kpack).
    layout: (LayoutFormula, [usize; 5]),
}

/// Canonical strides of one operand (elements): per batch dim (0 where it
/// broadcasts), its row dim (S or L) and its last dim.
#[derive(Clone, Debug, Default)]
struct Strides {
    batch: Vec<usize>,
    row: usize,
    col: usize,
}

/// The concrete configuration of one call.
#[derive(Debug)]
struct CallPlan {
    batch: Vec<usize>,
    s: usize,
    l: usize,
    d: usize,
    dv: usize,
    q: Strides,
    k: Strides,
    v: Strides,
    out: Strides,
    out_shape: Vec<usize>,
    /// Mask strides (row = S-dim stride) and whether the column broadcasts.
    mask: Option<(Strides, bool)>,
}

fn dense_strides(shape: &[usize]) -> Vec<usize> {
    let mut st = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        st[i] = st[i + 1] * shape[i + 1];
    }
    st
}

/// The largest element offset + 1 that `dims` with `strides` reach (0 if empty).
fn extent(dims: &[usize], strides: &[usize]) -> Option<usize> {
    if dims.contains(&0) {
        return Some(0);
    }
    dims.iter()
        .zip(strides)
        .try_fold(1usize, |a, (&d, &s)| a.checked_add((d - 1).checked_mul(s)?))
}

thread_local! {
    /// Each thread's scratchpad, grown to the largest call seen and reused: a call
    /// on small shapes would otherwise spend a noticeable part of its time
    /// allocating and zeroing it. Mapped for huge pages ([`crate::scratch`]).
    static SCRATCH: std::cell::RefCell<ScratchBuf> = const { std::cell::RefCell::new(ScratchBuf::new()) };
}

/// Runs `f` on this thread's scratchpad of at least `len` floats (a fresh one if it
/// is in use, which the kernels never cause, or if it cannot be mapped).
///
/// The scratch is mapped for at least `reserve` floats (and twice its old size, in 2
/// MiB steps, see [`ScratchBuf`]) and touched only up to `len`: a call faults in at
/// most the pages of its own layout beyond what earlier calls used (with huge pages,
/// none below 2 MiB once one call or the warm-up touched it), and no call remaps
/// below `reserve`.
///
/// `f` also learns whether the buffer is the thread's own (`true`), which outlives the
/// call, or a temporary one.
fn with_scratch<R>(len: usize, reserve: usize, f: impl FnOnce(&mut [f32], bool) -> R) -> R {
    SCRATCH.with(|cell| {
        let mut own = cell.try_borrow_mut().ok();
        match own.as_mut().and_then(|s| s.get(len, reserve)) {
            Some(buf) => f(buf, true),
            None => f(&mut vec![0.0; len], false),
        }
    })
}

thread_local! {
    /// The call (an id from [`CALL_ID`]) and K offset whose packing this thread's
    /// scratch holds, so that a thread that takes several chunks of one call packs
    /// each head once.
    static PACKED: std::cell::Cell<Option<(u64, usize)>> = const { std::cell::Cell::new(None) };
}

/// Ids of attention calls, for [`PACKED`]: no two calls share one.
static CALL_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How a parallel call's work items (batch index major, row block minor) are cut
/// into the chunks the executor hands out ([`Executor::for_each_index`]): one per
/// [`Chunks::FLOPS`] of work, at least one and at most [`Chunks::MAX_PER_THREAD`] per
/// thread, so that on a large call a thread that starts late (a parked worker waking
/// up) or runs slower (a core shared with other work) takes fewer, while a small
/// call is not slowed by handing out many (each costs cross-core atomics: 12 chunks
/// instead of 2 made S = 64 on two threads 10 % slower). Chunks are whole heads, so
/// that each packs its K heads once: at most one chunk per head. With fewer heads
/// than threads, one chunk per thread cuts through heads (and a thread remembers
/// which head its scratch holds across chunks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Chunks {
    items: usize,
    row_blocks: usize,
    /// Batch indices (heads) per chunk; 0 when chunks cut through heads.
    heads: usize,
    count: usize,
}

impl Chunks {
    /// At most this many chunks per thread.
    const MAX_PER_THREAD: usize = 16;
    /// Work per chunk: ~200 us on one core.
    const FLOPS: usize = 20_000_000;

    /// `flops`: the whole call's.
    fn new(nbatch: usize, row_blocks: usize, threads: usize, flops: usize) -> Chunks {
        let items = nbatch * row_blocks;
        let target = (flops / Self::FLOPS)
            .clamp(threads, Self::MAX_PER_THREAD * threads)
            .min(items)
            .max(1);
        // Whole heads (at most one chunk per head: cutting through heads made more
        // packing and cost 1.5-3 % at S = 256-1024 on two threads), unless that
        // leaves a thread without a chunk.
        let heads = nbatch.div_ceil(target.min(nbatch));
        if nbatch.div_ceil(heads) >= threads.min(items) {
            Chunks {
                items,
                row_blocks,
                heads,
                count: nbatch.div_ceil(heads),
            }
        } else {
            Chunks {
                items,
                row_blocks,
                heads: 0,
                count: threads.min(items),
            }
        }
    }

    fn range(&self, c: usize) -> std::ops::Range<usize> {
        if self.heads > 0 {
            let per = self.heads * self.row_blocks;
            c * per..((c + 1) * per).min(self.items)
        } else {
            c * self.items / self.count..(c + 1) * self.items / self.count
        }
    }
}

/// The K length up to which a thread's scratch is made ahead of its first call, at
/// compile time for the compiling thread ([`MhaKernel::compile_with`]) and at start
/// for pool workers ([`warm_worker_scratch`]).
const WARM_L: usize = 512;

/// The largest scratch (floats) made ahead at compile time: 256 KiB (BERT's at
/// [`WARM_L`] is 42 Ki floats; a head size of 256 would need 150 Ki).
const WARM_MAX_FLOATS: usize = 64 << 10;

/// Floats of scratch a pool worker faults in when it starts
/// ([`warm_worker_scratch`]): the regions of a 48 × 128 blocking at head size 64
/// (~9.4 Ki floats) plus a packed K of [`WARM_L`] keys (32 Ki), rounded up: 192 KiB.
const WORKER_WARM_FLOATS: usize = 48 << 10;

/// Makes this thread's scratch for a typical attention call (BERT's head size at the
/// default blocking), reserved for [`SCRATCH_RESERVE_L`] keys: pool workers call it
/// when they start, in parallel with the caller's compilation, so that their first
/// attention call does not fault in those pages. A call with larger regions faults in
/// only the difference.
pub(crate) fn warm_worker_scratch() {
    // The reserve of the BERT layout: the warm part plus a packed K of 1024 keys.
    let reserve = WORKER_WARM_FLOATS + SCRATCH_RESERVE_L * 64;
    with_scratch(WORKER_WARM_FLOATS, reserve, |_, _| ());
}

/// Raw base addresses shared by the worker threads.
#[derive(Clone, Copy)]
struct Ptrs {
    q: *const f32,
    k: *const f32,
    v: *const f32,
    mask: *const u8,
    out: *mut f32,
}

// SAFETY: the pointers are only dereferenced by the kernels, inside the extents checked
// in `MhaKernel::run_into`, while the caller's borrows of the tensors are alive; each
// work item writes a disjoint part of the output.
unsafe impl Send for Ptrs {}
unsafe impl Sync for Ptrs {}

impl Ptrs {
    fn get(&self) -> Ptrs {
        *self
    }
}

impl MhaKernel {
    /// Reads `body` (an `mha` subgraph body) with [`analyze_mha`] and compiles it.
    pub fn from_body(body: &Graph, isa: Isa) -> Result<MhaKernel, RuntimeError> {
        let pattern = analyze_mha(body).map_err(|e| RuntimeError::Mha(e.to_string()))?;
        MhaKernel::compile(&pattern, body, isa)
    }

    /// Compiles the kernels of `pattern` (read from `body`, whose parameters give the
    /// inputs' dtypes and declared shapes) for `isa`, with the default blocking.
    pub fn compile(
        pattern: &MhaPattern,
        body: &Graph,
        isa: Isa,
    ) -> Result<MhaKernel, RuntimeError> {
        MhaKernel::compile_with(pattern, body, isa, MhaBlocking::default())
    }

    /// [`MhaKernel::compile`] with explicit block sizes (`m_blk` >= 1, `n_blk` >= 1).
    pub fn compile_with(
        pattern: &MhaPattern,
        body: &Graph,
        isa: Isa,
        blocking: MhaBlocking,
    ) -> Result<MhaKernel, RuntimeError> {
        let err = |s: String| RuntimeError::Mha(s);
        if blocking.m_blk == 0 || blocking.n_blk == 0 {
            return Err(err(format!("block sizes {blocking:?} must be positive")));
        }
        if !(3..=4).contains(&pattern.rank) {
            return Err(err(format!("rank {} is not 3 or 4", pattern.rank)));
        }
        let inputs: Vec<InputDecl> = body
            .inputs
            .iter()
            .map(|&p| {
                let o = &body.node(p).outputs[0];
                InputDecl {
                    name: o.name.clone(),
                    dtype: o.ty.dtype,
                    shape: o.ty.shape.clone(),
                }
            })
            .collect();
        let r = pattern.rank;
        for (what, op) in [("Q", &pattern.q), ("K", &pattern.k), ("V", &pattern.v)] {
            let decl = inputs.get(op.input).ok_or_else(|| {
                err(format!(
                    "{what} reads input {} of {}",
                    op.input,
                    inputs.len()
                ))
            })?;
            if decl.dtype != DType::F32 {
                return Err(err(format!("{what} is {}, not f32", decl.dtype)));
            }
            let mut sorted = op.perm.clone();
            sorted.sort_unstable();
            if decl.shape.rank() != r || sorted != (0..r).collect::<Vec<_>>() {
                return Err(err(format!(
                    "{what}: rank or permutation does not fit rank {r}"
                )));
            }
        }
        let mut sorted = pattern.output.perm.clone();
        sorted.sort_unstable();
        if sorted != (0..r).collect::<Vec<_>>() || pattern.output.perm[r - 1] != r - 1 {
            return Err(err(format!("output permutation {:?}", pattern.output.perm)));
        }
        if pattern.q.perm[r - 1] != r - 1 || pattern.v.perm[r - 1] != r - 1 {
            return Err(err("Q or V does not keep the head dim innermost".into()));
        }
        let k_rowmajor = pattern.k_pretransposed();
        if !k_rowmajor && pattern.k.perm[r - 1] != r - 1 {
            return Err(err(format!("K layout {:?}", pattern.k.perm)));
        }
        let mask = match &pattern.mask {
            None => AttnMask::None,
            Some(m) => {
                let (want, kind) = match m {
                    MhaMask::Additive { .. } => (DType::F32, AttnMask::Additive),
                    MhaMask::Boolean {
                        fill, keep_when, ..
                    } => (
                        DType::Bool,
                        AttnMask::Boolean {
                            fill: *fill,
                            keep_when: *keep_when,
                        },
                    ),
                };
                let decl = inputs
                    .get(m.input())
                    .ok_or_else(|| err("the mask is not a body input".into()))?;
                if decl.dtype != want {
                    return Err(err(format!("mask is {}, not {want}", decl.dtype)));
                }
                if decl.shape.rank() > r {
                    return Err(err("mask rank exceeds the scores' rank".into()));
                }
                kind
            }
        };
        // A scale on Q is applied to the scores: equal in exact arithmetic.
        let scale = pattern.scale.map(|s| match s.op {
            ScaleOp::Mul => AttnScale::Mul(s.value),
            ScaleOp::Div => AttnScale::Div(s.value),
        });
        let k_layout = if k_rowmajor {
            KLayout::RowMajor
        } else {
            KLayout::Transposed
        };
        let fused = MhaFused::compile(MhaFusedOptions::new(isa, k_layout, scale, mask))?;
        if !blocking.n_blk.is_multiple_of(fused.n_block()) {
            return Err(err(format!(
                "n_blk = {} is not a multiple of the {}-column K panels",
                blocking.n_blk,
                fused.n_block()
            )));
        }
        let target = MhaTarget {
            m_blk: blocking.m_blk,
            n_blk: blocking.n_blk,
            panel: fused.n_block(),
            ..match isa {
                Isa::Avx512 => MhaTarget::AVX512,
                Isa::Avx2 => MhaTarget::AVX2,
            }
        };
        let lowered = lower_mha(pattern, &target).map_err(|e| err(e.to_string()))?;
        let formula = lowered
            .layout_formula()
            .map_err(|e| err(format!("scratch layout: {e}")))?;
        let mut regions = [0; 5];
        for (r, name) in regions.iter_mut().zip(SCRATCH_REGIONS) {
            *r = formula
                .index(name)
                .ok_or_else(|| err(format!("scratch layout: the plan has no buffer @{name}")))?;
        }
        let kernel = MhaKernel {
            pattern: pattern.clone(),
            inputs,
            isa,
            fused,
            lowered,
            layout: (formula, regions),
        };
        kernel.warm_scratch();
        Ok(kernel)
    }

    /// Makes the calling thread's scratch now, for K lengths up to [`WARM_L`] (the
    /// regions at full blocking and the packed K of `WARM_L` keys: 46 pages at D = 64,
    /// 1.5-5 us each on a VM), so that first calls on this thread, usually the
    /// compiling one, fault in no scratch page up to that length; a call at a larger
    /// one faults in only its packed K's growth. Only a thread's first compile pays
    /// it. Above [`WARM_MAX_FLOATS`] (large head sizes) only the smallest shapes'
    /// scratch is made. Best effort: shapes the plan rejects make nothing.
    fn warm_scratch(&self) {
        // K lengths up to WARM_L, or only the smallest shapes when that would exceed
        // WARM_MAX_FLOATS (large head sizes).
        for l in [WARM_L, 1] {
            let shapes: Vec<Vec<usize>> = self
                .inputs
                .iter()
                .map(|decl| decl.shape.concrete(|_| l))
                .collect();
            let refs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
            let Ok(plan) = self.plan_shapes(&refs) else {
                return;
            };
            let Ok(layout) = self.scratch_for(&refs, self.fused.kbuf_len(plan.l, plan.d)) else {
                return;
            };
            if layout.total <= WARM_MAX_FLOATS {
                with_scratch(
                    layout.total,
                    self.scratch_reserve(&plan, &layout),
                    |_, _| (),
                );
                return;
            }
        }
    }

    /// Floats a thread's scratch is first reserved for: this call's layout with the
    /// packed K of up to [`SCRATCH_RESERVE_L`] keys, so that calls at new sequence
    /// lengths up to it do not reallocate.
    fn scratch_reserve(&self, plan: &CallPlan, layout: &ScratchLayout) -> usize {
        layout.total
            + self
                .fused
                .kbuf_len(plan.l.max(SCRATCH_RESERVE_L), plan.d)
                .saturating_sub(self.fused.kbuf_len(plan.l, plan.d))
    }

    /// The pattern it was compiled from.
    pub fn pattern(&self) -> &MhaPattern {
        &self.pattern
    }

    /// The target ISA.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// The block sizes in effect (the lowering's BrgemmBlocking).
    pub fn blocking(&self) -> MhaBlocking {
        let b = self.lowered.blocking();
        MhaBlocking {
            m_blk: b.m_blk,
            n_blk: b.n_blk,
        }
    }

    /// Kernel compilations: always 1 (every shape shares the one kernel).
    pub fn compilations(&self) -> usize {
        1
    }

    /// The fused kernel every work item runs.
    pub fn fused(&self) -> &MhaFused {
        &self.fused
    }

    /// The fused kernel's code (for disassembly).
    pub fn kernel(&self) -> &Kernel {
        self.fused.kernel()
    }

    /// Matmul FLOPs of a call on these input shapes (`2·S·L·(D + Dv)` per batch
    /// index), or `None` if the shapes do not fit.
    pub fn flops(&self, shapes: &[&[usize]]) -> Option<u64> {
        let p = self.plan_shapes(shapes).ok()?;
        let nb: usize = p.batch.iter().product();
        Some(2 * (nb * p.s * p.l * (p.d + p.dv)) as u64)
    }

    /// Runs the subgraph; returns its one output.
    pub fn run(&self, inputs: &[&Tensor], exec: &Executor) -> Result<Vec<Tensor>, RuntimeError> {
        let mut outs = vec![];
        self.run_into(inputs, &mut outs, exec)?;
        Ok(outs)
    }

    /// The canonical view of operand `input` through `perm`: shape and strides.
    fn canon(shape: &[usize], perm: &[usize]) -> (Vec<usize>, Vec<usize>) {
        let st = dense_strides(shape);
        (
            perm.iter().map(|&p| shape[p]).collect(),
            perm.iter().map(|&p| st[p]).collect(),
        )
    }

    fn plan_shapes(&self, shapes: &[&[usize]]) -> Result<CallPlan, RuntimeError> {
        let p = &self.pattern;
        let r = p.rank;
        let nb = r - 2;
        let shape_err = |s: String| RuntimeError::Shape(format!("mha: {s}"));
        if shapes.len() != self.inputs.len() {
            return Err(shape_err(format!(
                "takes {} inputs, got {}",
                self.inputs.len(),
                shapes.len()
            )));
        }
        for (i, (s, decl)) in shapes.iter().zip(&self.inputs).enumerate() {
            if !decl.shape.matches(s) {
                return Err(RuntimeError::Input {
                    index: i,
                    name: decl.name.clone(),
                    reason: format!("shape {s:?} does not match {}", decl.shape),
                });
            }
        }
        let (qs, qst) = Self::canon(shapes[p.q.input], &p.q.perm);
        let (ks, kst) = Self::canon(shapes[p.k.input], &p.k.perm);
        let (vs, vst) = Self::canon(shapes[p.v.input], &p.v.perm);
        let (s, d) = (qs[r - 2], qs[r - 1]);
        let (l, dv) = (ks[r - 2], vs[r - 1]);
        if ks[r - 1] != d || vs[r - 2] != l || d != p.head_size || dv != p.v_head_size {
            return Err(shape_err(format!(
                "Q {qs:?}, K {ks:?}, V {vs:?} do not form an attention block with D = {}, Dv = {}",
                p.head_size, p.v_head_size
            )));
        }
        // Batch dims: numpy broadcast of Q, K, V and the mask.
        let mut batch = vec![1usize; nb];
        let mut bcast = |dims: &[usize], what: &str| -> Result<(), RuntimeError> {
            for (b, &x) in batch.iter_mut().zip(dims) {
                if *b == 1 {
                    *b = x;
                } else if x != 1 && x != *b {
                    return Err(shape_err(format!(
                        "{what} batch dims {dims:?} do not broadcast"
                    )));
                }
            }
            Ok(())
        };
        bcast(&qs[..nb], "Q")?;
        bcast(&ks[..nb], "K")?;
        bcast(&vs[..nb], "V")?;
        let mask_full: Option<(Vec<usize>, Vec<usize>)> = match &p.mask {
            None => None,
            Some(m) => {
                let ms = shapes[m.input()];
                if ms.len() > r {
                    return Err(shape_err(format!("mask {ms:?} has rank above {r}")));
                }
                let st = dense_strides(ms);
                let pad = r - ms.len();
                let dims: Vec<usize> = (0..r)
                    .map(|i| if i < pad { 1 } else { ms[i - pad] })
                    .collect();
                let strides: Vec<usize> = (0..r)
                    .map(|i| if i < pad { 0 } else { st[i - pad] })
                    .collect();
                bcast(&dims[..nb], "mask")?;
                for (i, want) in [(r - 2, s), (r - 1, l)] {
                    if dims[i] != 1 && dims[i] != want {
                        return Err(shape_err(format!(
                            "mask {ms:?} does not broadcast into [.., {s}, {l}]"
                        )));
                    }
                }
                Some((dims, strides))
            }
        };
        let batch_strides = |dims: &[usize], st: &[usize]| -> Vec<usize> {
            (0..nb)
                .map(|i| if dims[i] == 1 { 0 } else { st[i] })
                .collect()
        };
        let op = |dims: &[usize], st: &[usize]| Strides {
            batch: batch_strides(dims, st),
            row: st[r - 2],
            col: st[r - 1],
        };
        let (q, k, v) = (op(&qs, &qst), op(&ks, &kst), op(&vs, &vst));
        if q.col != 1 || v.col != 1 {
            return Err(shape_err(
                "Q or V is not contiguous along its head dim".into(),
            ));
        }
        let k_layout = self.fused.options().k_layout;
        if (k_layout == KLayout::Transposed && k.col != 1)
            || (k_layout == KLayout::RowMajor && k.row != 1)
        {
            return Err(shape_err(
                "K's layout does not match the compiled brgemm".into(),
            ));
        }
        // Output: out = transpose(o, perm), o = [batch.., S, Dv] dense in out's order.
        let o_canon: Vec<usize> = batch.iter().copied().chain([s, dv]).collect();
        let operm = &p.output.perm;
        let out_shape: Vec<usize> = operm.iter().map(|&i| o_canon[i]).collect();
        let out_st = dense_strides(&out_shape);
        let mut o_st = vec![0; r];
        for (j, &i) in operm.iter().enumerate() {
            o_st[i] = out_st[j];
        }
        let out = Strides {
            batch: (0..nb).map(|i| o_st[i]).collect(),
            row: o_st[r - 2],
            col: o_st[r - 1],
        };
        let mask = mask_full.map(|(dims, st)| {
            let row = if dims[r - 2] == 1 { 0 } else { st[r - 2] };
            (
                Strides {
                    batch: batch_strides(&dims, &st),
                    row,
                    col: 1,
                },
                dims[r - 1] == 1 && l != 1,
            )
        });
        Ok(CallPlan {
            batch,
            s,
            l,
            d,
            dv,
            q,
            k,
            v,
            out,
            out_shape,
            mask,
        })
    }

    /// Like [`MhaKernel::run`], writing into `outputs` (a tensor of the output's shape
    /// and dtype is overwritten in place; anything else is replaced).
    pub fn run_into(
        &self,
        inputs: &[&Tensor],
        outputs: &mut Vec<Tensor>,
        exec: &Executor,
    ) -> Result<(), RuntimeError> {
        if !self.isa.is_supported() {
            return Err(snipjit_x64::X64Error::IsaUnsupported { isa: self.isa }.into());
        }
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape.as_slice()).collect();
        let plan = self.plan_shapes(&shapes)?;
        for (i, (t, decl)) in inputs.iter().zip(&self.inputs).enumerate() {
            let numel = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            if t.dtype() != decl.dtype || numel != Some(t.data.len()) {
                return Err(RuntimeError::Input {
                    index: i,
                    name: decl.name.clone(),
                    reason: format!(
                        "{} tensor of shape {:?} where {} is declared",
                        t.dtype(),
                        t.shape,
                        decl.dtype
                    ),
                });
            }
        }
        let p = &self.pattern;
        let f32s = |i: usize| -> Result<&[f32], RuntimeError> {
            match &inputs[i].data {
                TensorData::F32(v) => Ok(v),
                _ => Err(RuntimeError::Mha(format!("input {i} is not f32"))),
            }
        };
        let (q, k, v) = (f32s(p.q.input)?, f32s(p.k.input)?, f32s(p.v.input)?);
        let (mask_ptr, mask_len, elem) = match &p.mask {
            None => (std::ptr::null::<u8>(), 0, 0),
            Some(m) => match &inputs[m.input()].data {
                TensorData::F32(x) => (x.as_ptr().cast::<u8>(), x.len(), 4),
                TensorData::Bool(x) => (x.as_ptr().cast::<u8>(), x.len(), 1),
                other => {
                    return Err(RuntimeError::Mha(format!(
                        "mask of dtype {}",
                        other.dtype()
                    )));
                }
            },
        };
        // Every offset the kernels reach, checked against the buffers.
        let nbd = plan.batch.len();
        let check = |what: &str, st: &Strides, rows: usize, cols: usize, len: usize| {
            let mut dims = plan.batch.clone();
            dims.extend([rows, cols]);
            let mut strides = st.batch.clone();
            strides.extend([st.row, st.col]);
            match extent(&dims, &strides) {
                Some(e) if e <= len => Ok(()),
                _ => Err(RuntimeError::Mha(format!(
                    "{what} extent exceeds its buffer"
                ))),
            }
        };
        check("Q", &plan.q, plan.s, plan.d, q.len())?;
        check("K", &plan.k, plan.l, plan.d, k.len())?;
        check("V", &plan.v, plan.l, plan.dv, v.len())?;
        if let Some((ms, bc)) = &plan.mask {
            let cols = if *bc { 1 } else { plan.l };
            check("mask", ms, plan.s, cols, mask_len)?;
        }
        let out_numel: usize = plan.out_shape.iter().product();
        let reusable = outputs.first().is_some_and(|t| {
            t.shape == plan.out_shape
                && matches!(&t.data, TensorData::F32(x) if x.len() == out_numel)
        });
        if !reusable {
            outputs.clear();
            outputs.push(Tensor {
                shape: plan.out_shape.clone(),
                data: TensorData::F32(vec![0.0; out_numel]),
            });
        }
        outputs.truncate(1);
        let TensorData::F32(out) = &mut outputs[0].data else {
            unreachable!("the output was made f32 above");
        };
        check("output", &plan.out, plan.s, plan.dv, out.len())?;
        let nbatch: usize = plan.batch.iter().product();
        if nbatch == 0 || plan.s == 0 {
            return Ok(());
        }
        if plan.l == 0 {
            // softmax over nothing, times an empty V: every output element is 0.
            out.fill(0.0);
            return Ok(());
        }
        let fits = |x: usize| x <= (i32::MAX as usize) / 4;
        let ldk = match self.fused.options().k_layout {
            KLayout::Transposed => plan.k.row,
            KLayout::RowMajor => plan.k.col,
        };
        if !fits(ldk.saturating_mul(self.fused.n_block()))
            || !fits(plan.q.row)
            || !fits(plan.v.row)
            || !fits(plan.out.row)
        {
            return Err(RuntimeError::Mha(
                "a row stride is beyond the kernels' 32-bit offsets".into(),
            ));
        }
        let ptrs = Ptrs {
            q: q.as_ptr(),
            k: k.as_ptr(),
            v: v.as_ptr(),
            mask: mask_ptr,
            out: out.as_mut_ptr(),
        };
        // A call too small to pay for waking the pool runs on this thread.
        let flops = 2 * nbatch * plan.s * plan.l * (plan.d + plan.dv);
        let threads = if flops < MIN_PARALLEL_FLOPS {
            1
        } else {
            exec.threads()
        };
        // Row blocks: shrink them when the batch alone cannot feed every thread.
        let blocking = self.blocking();
        let mut m_blk = blocking.m_blk.min(plan.s);
        if nbatch * plan.s.div_ceil(m_blk) < threads && plan.s > 6 {
            let per_batch = threads.div_ceil(nbatch);
            m_blk = plan
                .s
                .div_ceil(per_batch)
                .next_multiple_of(6)
                .clamp(6, m_blk);
        }
        let row_blocks = plan.s.div_ceil(m_blk);
        let items = nbatch * row_blocks;
        // Score columns per block: no wider than L rounded up to a K panel (the
        // kernel needs a multiple of the panel width).
        let n_blk = blocking
            .n_blk
            .min(plan.l.next_multiple_of(self.fused.n_block()));
        let plan = &plan;
        let layout = self.scratch_for(&shapes, self.fused.kbuf_len(plan.l, plan.d))?;
        let (ldk, mrow, mbc) = (
            ldk as i64,
            plan.mask
                .as_ref()
                .map_or(0, |(ms, _)| (ms.row * elem) as i64),
            plan.mask.as_ref().map_or(0, |(_, bc)| i64::from(*bc)),
        );
        let reserve = self.scratch_reserve(plan, &layout);
        let call = CALL_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let work = |range: std::ops::Range<usize>| {
            // Captures the whole (Sync) struct, not its raw-pointer fields.
            let ptrs = ptrs.get();
            with_scratch(layout.total, reserve, |buf: &mut [f32], own: bool| {
                let skip = buf.as_ptr().align_offset(64).min(SCRATCH_ALIGN_SLACK);
                let base = buf[skip..].as_mut_ptr();
                // SAFETY: every region lies within `layout.total - SCRATCH_ALIGN_SLACK`
                // floats after `skip`.
                let (sb, acc, mm, ll, kb) = unsafe {
                    (
                        base.add(layout.scores),
                        base.add(layout.acc),
                        base.add(layout.m),
                        base.add(layout.lsum),
                        base.add(layout.kbuf),
                    )
                };
                // The K head packed in kbuf: one of this call's, packed by an earlier
                // chunk on this thread into its own scratch, or none yet.
                let mut packed: Option<usize> = match PACKED.get() {
                    Some((c, ok)) if own && c == call => Some(ok),
                    _ => None,
                };
                for it in range {
                    let (bi, rb) = (it / row_blocks, it % row_blocks);
                    let (s0, rows) = (rb * m_blk, m_blk.min(plan.s - rb * m_blk));
                    let (mut oq, mut ok, mut ov, mut oo, mut om) = (0, 0, 0, 0, 0);
                    let mut rem = bi;
                    for dd in (0..nbd).rev() {
                        let x = rem % plan.batch[dd];
                        rem /= plan.batch[dd];
                        oq += x * plan.q.batch[dd];
                        ok += x * plan.k.batch[dd];
                        ov += x * plan.v.batch[dd];
                        oo += x * plan.out.batch[dd];
                        if let Some((ms, _)) = &plan.mask {
                            om += x * ms.batch[dd];
                        }
                    }
                    // Items of one head are consecutive in a chunk: pack K on the first
                    // (heads sharing a K by a broadcast batch dim share the packing).
                    let pack = packed != Some(ok);
                    packed = Some(ok);
                    // SAFETY (pointer arithmetic and the call): offsets are within the
                    // extents checked above (batch index < batch dims, rows
                    // s0..s0+rows < S); the scratch regions are disjoint, sized by
                    // the lowering for up to m_blk rows, and private to this thread; kbuf
                    // holds the packing of K at `ok` unless `pack`; n_blk is a multiple
                    // of the panel width (checked in `compile_with`); output rows of
                    // distinct items are disjoint.
                    unsafe {
                        let mask = match &plan.mask {
                            None => std::ptr::null(),
                            Some((ms, _)) => ptrs.mask.add((om + s0 * ms.row) * elem),
                        };
                        self.fused.call(&MhaFusedArgs {
                            q: ptrs.q.add(oq + s0 * plan.q.row),
                            k: ptrs.k.add(ok),
                            v: ptrs.v.add(ov),
                            mask,
                            out: ptrs.out.add(oo + s0 * plan.out.row),
                            rows: rows as i64,
                            l: plan.l as i64,
                            d: plan.d as i64,
                            dv: plan.dv as i64,
                            n_blk: n_blk as i64,
                            ldq: plan.q.row as i64,
                            ldk,
                            ldv: plan.v.row as i64,
                            ldo: plan.out.row as i64,
                            mask_row_stride: mrow,
                            mask_col_bcast: mbc,
                            scores: sb,
                            acc,
                            m: mm,
                            lsum: ll,
                            kbuf: kb,
                            pack: i64::from(pack),
                        });
                    }
                }
                if own {
                    PACKED.set(packed.map(|ok| (call, ok)));
                }
            });
        };
        if threads == 1 {
            work(0..items);
        } else {
            let chunks = Chunks::new(nbatch, row_blocks, threads, flops);
            exec.for_each_index(chunks.count, &|c| work(chunks.range(c)));
        }
        Ok(())
    }
}

/// The K length a thread's scratch is first sized for (its packed K: 256 KiB at
/// D = 64): calls at any S up to it reuse the scratch without growing it.
const SCRATCH_RESERVE_L: usize = 1024;

/// The plan's buffers the kernel uses, in [`ScratchLayout`]'s order.
const SCRATCH_REGIONS: [&str; 5] = ["scores", "acc", "max", "sum", "kpack"];

/// Floats of slack at the start of the scratch buffer, to align it to 64 bytes.
const SCRATCH_ALIGN_SLACK: usize = 15;

/// Where one thread's scratch regions lie: float offsets from a 64-byte aligned base,
/// and the floats to allocate (with the alignment slack). Read off the lowering's
/// buffer allocation ([`MhaKernel::scratch_for`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScratchLayout {
    /// `m_blk × n_blk` scores, overwritten in place by the probabilities (row stride
    /// `n_blk`).
    pub scores: usize,
    /// `m_blk × Dv` accumulator.
    pub acc: usize,
    /// `m_blk` running maxima.
    pub m: usize,
    /// `m_blk` running sums.
    pub lsum: usize,
    /// The packed K of one head ([`MhaFused::kbuf_len`] floats).
    pub kbuf: usize,
    /// Floats to allocate.
    pub total: usize,
}

impl MhaKernel {
    /// The lowering's plan (its IR, blocking and buffer allocation).
    pub fn lowered(&self) -> &MhaPlan {
        &self.lowered
    }

    /// The scratch layout for inputs of `shapes`: the lowering's AllocateBuffers
    /// offsets for the plan's full blocking (a call with smaller row or column blocks
    /// fits in it), evaluated from formulas folded at compile time
    /// ([`MhaPlan::layout_formula`]; well under a microsecond). Errors if the plan
    /// and the compiled kernel disagree: a buffer misaligned, or smaller than the
    /// kernel needs (`kbuf_len` floats of packed K).
    pub fn scratch_for(
        &self,
        shapes: &[&[usize]],
        kbuf_len: usize,
    ) -> Result<ScratchLayout, RuntimeError> {
        let err = |s: String| RuntimeError::Mha(format!("scratch layout: {s}"));
        let (formula, idx) = &self.layout;
        let vals = formula.eval(shapes).map_err(|e| err(e.to_string()))?;
        let b = self.blocking();
        let need = [
            b.m_blk * b.n_blk,
            b.m_blk * self.pattern.v_head_size,
            b.m_blk,
            b.m_blk,
            kbuf_len,
        ];
        let mut off = [0; 5];
        for (((o, &i), floats), name) in off.iter_mut().zip(idx).zip(need).zip(SCRATCH_REGIONS) {
            let (at, bytes) = vals.buffers[i];
            if at % 64 != 0 || bytes / 4 < floats {
                return Err(err(format!(
                    "@{name} at byte {at} holds {bytes} bytes, the kernel needs {floats} floats"
                )));
            }
            *o = at / 4;
        }
        Ok(ScratchLayout {
            scores: off[0],
            acc: off[1],
            m: off[2],
            lsum: off[3],
            kbuf: off[4],
            total: vals.total.div_ceil(4) + SCRATCH_ALIGN_SLACK + 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Chunks;

    /// The chunks cover every item once, in order; whole heads when the heads divide
    /// evenly; one per thread for a small call, more for a large one.
    #[test]
    fn chunks_cover_items_in_whole_heads_when_they_can() {
        for threads in [2, 3, 4, 8] {
            for nbatch in [1, 2, 3, 5, 12, 96, 1000] {
                for row_blocks in [1, 2, 7, 43] {
                    for flops in [1_000_000, 200_000_000, 100_000_000_000] {
                        let c = Chunks::new(nbatch, row_blocks, threads, flops);
                        let items = nbatch * row_blocks;
                        let mut next = 0;
                        for i in 0..c.count {
                            let r = c.range(i);
                            assert_eq!(r.start, next, "{c:?}: chunk {i}");
                            assert!(!r.is_empty(), "{c:?}: chunk {i} empty");
                            if c.heads > 0 {
                                assert_eq!(r.start % row_blocks, 0, "{c:?}: chunk {i}");
                            }
                            next = r.end;
                        }
                        assert_eq!(next, items, "{c:?}");
                        assert!(c.count <= Chunks::MAX_PER_THREAD * threads, "{c:?}");
                        if nbatch >= threads {
                            assert!(c.heads > 0 || nbatch < 2 * threads, "{c:?}");
                        }
                        // Every thread has a chunk; a small call makes no more.
                        assert!(c.count >= threads.min(items), "{c:?}");
                        if flops == 1_000_000 {
                            assert_eq!(c.count, threads.min(items), "{c:?}");
                        }
                        if flops == 100_000_000_000 && nbatch >= 2 * threads {
                            assert!(c.count > threads, "{c:?}");
                        }
                    }
                }
            }
        }
    }
}
