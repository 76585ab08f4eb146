//! Brgemm: the project's own register-blocked f32 matmul micro-kernel,
//! `C[M×N] (+)= A[M×K] · B`, shape-agnostic in M, N and K.
//!
//! One kernel is compiled per (ISA, B layout, blocking); every shape, leading dimension
//! and the accumulate flag are read at run time from a [`BrgemmArgs`] block, so the
//! code bytes never depend on a shape.
//!
//! # Loop structure
//! ```text
//! for n0 in (0..N).step_by(N_blk):            N_blk = nr vectors (64 columns on AVX-512)
//!     nb = min(N - n0, N_blk)
//!     [Transposed B: repack the panel B^T[n0..n0+nb, 0..K] into scratch as K×N_blk]
//!     pick the width variant: full (nb == N_blk), or v = ceil(nb / lanes) vectors with
//!         the last one masked (k1 on AVX-512, ymm15 + vmaskmovps on AVX2)
//!     for m0 in (0..M).step_by(mr): tile(min(mr, M - m0) rows)   (tails: a compiled
//!                                                                  tile per row count)
//! tile: accumulators = C (accumulate) or 0; for k: load nvec B vectors, broadcast one A
//!       element per row, nvec FMAs per row; K unrolled by `k_unroll`; store C.
//! ```
//! The B panel (K × N_blk) stays in L1/L2 while every row block of A streams past it.
//!
//! # B layouts
//! - [`BLayout::RowMajor`]: B is K×N row-major (`ldb >= N`), read in place (P·V).
//! - [`BLayout::Transposed`]: B is given as B^T, N×K row-major (`ldb >= K`), e.g. the K
//!   matrix of Q·K^T. Each panel of N_blk rows of B^T is repacked into a contiguous
//!   K×N_blk scratch buffer, then the row-major tile code runs on it. The repack
//!   transposes lanes×lanes blocks in registers (unpack + block shuffles, see
//!   `transpose_plan`), a row group cut by the panel end with its missing rows zero;
//!   K remainders use masked `vgatherdps` with an index vector `j * ldb`. It reads
//!   each element of B once per call (~0.3 cycles per element), amortized over all M
//!   rows. Measured alternatives: gathering everything ran Q·K^T at half the peak; a
//!   dot-product form (vectors along K, one horizontal reduction per C element) costs
//!   more shuffles at head size 64.
//! - [`BLayout::Packed`]: B packed beforehand by a [`BPacker`] (the same repack or a
//!   copy, into `ceil(N / N_blk)` consecutive K×N_blk panels), so a B reused across
//!   calls is repacked once.
//!
//! # Register roles
//! | register | role |
//! |---|---|
//! | `rdi` | `*const BrgemmArgs` (read for M, K, flags whenever needed) |
//! | `rdx` | constant-pool base (tail-mask table, iota) |
//! | `rsi` | rows of M remaining in the current panel |
//! | `r8`, `r9` | current A row block, current C row block |
//! | `r10`, `r12` | current B panel (in place or the scratch), its row stride in bytes |
//! | `rbx`, `rbp` | `lda`, `ldc` in bytes |
//! | `rax`, `r13`, `rcx` | A row pointers of rows 0, 3, 6 of the tile (rows r+1, r+2 via `lda` index) |
//! | `r14`, `r15` | B pointer at the current k, k remaining |
//! | `r11` | temporary; C row pointer of row 3 at tile edges |
//! | `[rsp]`, `[rsp+8]`, `[rsp+16]`, `[rsp+24]`, `[rsp+32]` | N remaining, C panel column, B panel source, B panel step, repack destination |
//!
//! During a repack (before the m loop of each panel) `rcx rsi r8..r15` are free: row
//! bases of the transposed block, source and destination pointers, counters.
//!
//! | vector registers (AVX-512, 6×4) | role |
//! |---|---|
//! | `zmm0..zmm23` | accumulators, row-major in the tile |
//! | `zmm24..zmm27` | B vectors of the current k |
//! | `zmm28`, `zmm29` | broadcast A elements (alternating) |
//! | `k1` | N-tail mask of the last vector; `k2..k5`, `k7` repack row masks |
//! | all 32 | the 16×16 transpose of the repack (rows in zmm0..15, temporaries zmm16..31) |
//!
//! On AVX2 (6×2): 12 accumulators, 2 B vectors, 1 broadcast register, `ymm15` the N-tail
//! mask.

// dynasm!'s dynamic register arguments expand to `.into()` calls.
#![allow(clippy::useless_conversion)]

use std::mem::{offset_of, size_of};

use dynasmrt::{DynamicLabel, DynasmApi, DynasmLabelApi, dynasm};
use iced_x86::{Code, Instruction, MemoryOperand, Register};

use crate::asm::{enc_err, iced_mem};
use crate::{Gpr, Isa, Kernel, Mem, VReg, VecAsm, X64Error};

/// The argument block a brgemm kernel (and a [`BPacker`]) reads. Leading dimensions are
/// in elements (f32).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct BrgemmArgs {
    /// A, M×K row-major with row stride `lda`.
    pub a: *const f32,
    /// B: K×N row-major (stride `ldb`); for [`BLayout::Transposed`] B^T as N×K
    /// row-major (stride `ldb`); for [`BLayout::Packed`] the packed panels.
    pub b: *const f32,
    /// C, M×N row-major with row stride `ldc`.
    pub c: *mut f32,
    /// [`Brgemm::scratch_len`] floats, used by the transposed layout only (a
    /// [`BPacker`] writes its panels here); 64-byte alignment helps but is not required.
    pub scratch: *mut f32,
    /// Rows of A and C.
    pub m: i64,
    /// Columns of B and C.
    pub n: i64,
    /// The reduction length.
    pub k: i64,
    /// Row stride of A (elements).
    pub lda: i64,
    /// Row stride of B, or of B^T for [`BLayout::Transposed`] (elements).
    pub ldb: i64,
    /// Row stride of C (elements).
    pub ldc: i64,
    /// Nonzero: `C += A·B`; zero: `C = A·B` (C is not read).
    pub accumulate: i64,
    /// Null, or `M` floats: row `i` of the result is multiplied by `row_scale[i]`
    /// before it is stored (`C = s·(A·B)`, or `s·(C + A·B)` when accumulating). The
    /// fused attention kernel writes its output this way, `P·V · (1/l)`.
    pub row_scale: *const f32,
}

const OFF_A: i32 = offset_of!(BrgemmArgs, a) as i32;
const OFF_B: i32 = offset_of!(BrgemmArgs, b) as i32;
const OFF_C: i32 = offset_of!(BrgemmArgs, c) as i32;
const OFF_SCRATCH: i32 = offset_of!(BrgemmArgs, scratch) as i32;
const OFF_M: i32 = offset_of!(BrgemmArgs, m) as i32;
const OFF_N: i32 = offset_of!(BrgemmArgs, n) as i32;
const OFF_K: i32 = offset_of!(BrgemmArgs, k) as i32;
const OFF_LDA: i32 = offset_of!(BrgemmArgs, lda) as i32;
const OFF_LDB: i32 = offset_of!(BrgemmArgs, ldb) as i32;
const OFF_LDC: i32 = offset_of!(BrgemmArgs, ldc) as i32;
const OFF_ACC: i32 = offset_of!(BrgemmArgs, accumulate) as i32;
const OFF_RSCALE: i32 = offset_of!(BrgemmArgs, row_scale) as i32;

const _: () = {
    assert!(size_of::<BrgemmArgs>() == 96);
    assert!(OFF_A == 0 && OFF_B == 8 && OFF_C == 16 && OFF_SCRATCH == 24);
    assert!(OFF_M == 32 && OFF_N == 40 && OFF_K == 48);
    assert!(OFF_LDA == 56 && OFF_LDB == 64 && OFF_LDC == 72 && OFF_ACC == 80);
    assert!(OFF_RSCALE == 88);
};

/// The entry point of a brgemm kernel.
pub type BrgemmFn = unsafe extern "sysv64" fn(args: *const BrgemmArgs);

/// How B is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BLayout {
    /// B is K×N row-major, `ldb >= N` (e.g. V in P·V).
    RowMajor,
    /// B is given transposed: B^T is N×K row-major, `ldb >= K` (e.g. K in Q·K^T).
    Transposed,
    /// B already packed by a [`BPacker`] of the same ISA and blocking: panels of
    /// `n_block()` columns, panel p a contiguous K×`n_block()` block at float offset
    /// `p * K * n_block()` ([`BPacker::packed_len`] floats in all). `ldb` is ignored.
    /// Packing once and reusing the panels across calls (K^T of one attention head
    /// against every Q block) takes the repack out of the per-call cost.
    Packed,
}

/// Register blocking of the micro-kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Blocking {
    /// Rows of the register tile (1..=9).
    pub mr: usize,
    /// Vectors per tile row (1..=4): the panel width is `nr * lanes` columns.
    pub nr: usize,
    /// K steps per iteration of the unrolled loop (1..=8).
    pub k_unroll: usize,
}

impl Blocking {
    /// The measured default: 6×4 zmm on AVX-512 (24 accumulators), 6×2 ymm on AVX2
    /// (12 accumulators); K unrolled by 4. See docs/brgemm.md for the measurements.
    pub fn default_for(isa: Isa) -> Blocking {
        match isa {
            Isa::Avx512 => Blocking {
                mr: 6,
                nr: 4,
                k_unroll: 2,
            },
            Isa::Avx2 => Blocking {
                mr: 6,
                nr: 2,
                k_unroll: 4,
            },
        }
    }

    /// Vector registers the tile needs besides one broadcast register:
    /// accumulators plus B vectors.
    fn regs(self) -> usize {
        self.mr * self.nr + self.nr
    }

    /// Registers the tile code may use: all 32 zmm, or ymm0..14 (ymm15 is the mask).
    fn avail(isa: Isa) -> usize {
        match isa {
            Isa::Avx512 => 32,
            Isa::Avx2 => 15,
        }
    }

    pub(crate) fn validate(self, isa: Isa) -> Result<(), X64Error> {
        let bad = |reason: String| X64Error::Unsupported {
            op: "brgemm".into(),
            isa,
            reason,
        };
        if !(1..=9).contains(&self.mr) {
            return Err(bad(format!("mr = {} is outside 1..=9", self.mr)));
        }
        if !(1..=4).contains(&self.nr) {
            return Err(bad(format!("nr = {} is outside 1..=4", self.nr)));
        }
        if !(1..=8).contains(&self.k_unroll) {
            return Err(bad(format!(
                "k_unroll = {} is outside 1..=8",
                self.k_unroll
            )));
        }
        if self.regs() + 1 > Self::avail(isa) {
            return Err(bad(format!(
                "a {}x{} tile needs {} vector registers, {} are available",
                self.mr,
                self.nr,
                self.regs() + 1,
                Self::avail(isa)
            )));
        }
        Ok(())
    }
}

/// Compile-time options of a brgemm kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BrgemmOptions {
    /// Target ISA.
    pub isa: Isa,
    /// How B is stored.
    pub b_layout: BLayout,
    /// Register blocking; `None` takes [`Blocking::default_for`].
    pub blocking: Option<Blocking>,
}

impl BrgemmOptions {
    /// Options with the default blocking.
    pub fn new(isa: Isa, b_layout: BLayout) -> BrgemmOptions {
        BrgemmOptions {
            isa,
            b_layout,
            blocking: None,
        }
    }
}

/// A concrete call shape for [`Brgemm::run`]. Leading dimensions are in elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BrgemmShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub lda: usize,
    /// Row stride of B (K×N) or of B^T (N×K) for [`BLayout::Transposed`].
    pub ldb: usize,
    pub ldc: usize,
    /// `C += A·B` instead of `C = A·B`.
    pub accumulate: bool,
}

impl BrgemmShape {
    /// Dense operands (`lda = K`, `ldc = N`, `ldb = N` or `K` by layout), `C = A·B`.
    pub fn dense(m: usize, n: usize, k: usize, layout: BLayout) -> BrgemmShape {
        BrgemmShape {
            m,
            n,
            k,
            lda: k,
            ldb: match layout {
                BLayout::RowMajor | BLayout::Packed => n,
                BLayout::Transposed => k,
            },
            ldc: n,
            accumulate: false,
        }
    }

    /// The argument block of a call of this shape on the given buffers.
    pub fn args(&self, a: *const f32, b: *const f32, c: *mut f32, scratch: *mut f32) -> BrgemmArgs {
        BrgemmArgs {
            a,
            b,
            c,
            scratch,
            m: self.m as i64,
            n: self.n as i64,
            k: self.k as i64,
            lda: self.lda as i64,
            ldb: self.ldb as i64,
            ldc: self.ldc as i64,
            accumulate: i64::from(self.accumulate),
            row_scale: std::ptr::null(),
        }
    }
}

/// A compiled brgemm kernel. `Send + Sync`: the code is read-only and keeps no state,
/// so any number of threads may run it at once (each with its own scratch).
#[derive(Debug)]
pub struct Brgemm {
    kernel: Kernel,
    opts: BrgemmOptions,
    blocking: Blocking,
}

impl Brgemm {
    /// Compiles the kernel. Encoding does not need the CPU to support `opts.isa`;
    /// running does.
    pub fn compile(opts: BrgemmOptions) -> Result<Brgemm, X64Error> {
        let blocking = opts
            .blocking
            .unwrap_or_else(|| Blocking::default_for(opts.isa));
        blocking.validate(opts.isa)?;
        let mut a = VecAsm::new(opts.isa, Gpr::Rdx)?;
        emit_brgemm_fn(&mut a, opts.b_layout, blocking)?;
        let kernel = a.finalize()?;
        Ok(Brgemm {
            kernel,
            opts,
            blocking,
        })
    }

    /// The options it was compiled with.
    pub fn options(&self) -> BrgemmOptions {
        self.opts
    }

    /// The blocking in effect.
    pub fn blocking(&self) -> Blocking {
        self.blocking
    }

    /// The compiled code (for disassembly and decode-back tests).
    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    /// Columns per N panel: `nr * lanes`.
    pub fn n_block(&self) -> usize {
        self.blocking.nr * self.opts.isa.lanes()
    }

    /// Floats of scratch a call with reduction length `k` needs: `k * n_block()` for
    /// the transposed layout, 0 otherwise.
    pub fn scratch_len(&self, k: usize) -> usize {
        match self.opts.b_layout {
            BLayout::RowMajor | BLayout::Packed => 0,
            BLayout::Transposed => k.saturating_mul(self.n_block()),
        }
    }

    /// Checks `shape` against the slices and runs the kernel. Errors (never panics) on
    /// an unsupported CPU, a leading dimension below its row length, a slice shorter
    /// than the shape needs, or sizes beyond what the kernel addresses.
    pub fn run(&self, a: &[f32], b: &[f32], c: &mut [f32], s: BrgemmShape) -> Result<(), X64Error> {
        self.run_impl(a, b, c, s, None)
    }

    /// [`Brgemm::run`] with every row `i` of the result multiplied by `scale[i]`
    /// before it is stored (`scale` has at least `M` floats).
    pub fn run_row_scaled(
        &self,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
        s: BrgemmShape,
        scale: &[f32],
    ) -> Result<(), X64Error> {
        if scale.len() < s.m {
            return Err(X64Error::Args(format!(
                "brgemm {}x{}x{}: row scale has {} floats, needs {}",
                s.m,
                s.n,
                s.k,
                scale.len(),
                s.m
            )));
        }
        self.run_impl(a, b, c, s, Some(scale))
    }

    fn run_impl(
        &self,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
        s: BrgemmShape,
        scale: Option<&[f32]>,
    ) -> Result<(), X64Error> {
        let isa = self.opts.isa;
        if !isa.is_supported() {
            return Err(X64Error::IsaUnsupported { isa });
        }
        let err = |why: String| X64Error::Args(format!("brgemm {}x{}x{}: {why}", s.m, s.n, s.k));
        let (b_rows, b_cols) = match self.opts.b_layout {
            BLayout::RowMajor => (s.k, s.n),
            BLayout::Transposed => (s.n, s.k),
            // One row of K * N_blk per panel; ldb plays no part.
            BLayout::Packed => (
                s.n.div_ceil(self.n_block()),
                s.k.saturating_mul(self.n_block()),
            ),
        };
        let ldb = match self.opts.b_layout {
            BLayout::Packed => b_cols,
            _ => s.ldb,
        };
        if s.lda < s.k || ldb < b_cols || s.ldc < s.n {
            return Err(err(format!(
                "leading dimensions lda={} ldb={} ldc={} are below their row lengths",
                s.lda, s.ldb, s.ldc
            )));
        }
        let need = |rows: usize, cols: usize, ld: usize| -> Option<usize> {
            if rows == 0 || cols == 0 {
                Some(0)
            } else {
                (rows - 1).checked_mul(ld)?.checked_add(cols)
            }
        };
        let checks = [
            ("A", need(s.m, s.k, s.lda), a.len()),
            ("B", need(b_rows, b_cols, ldb), b.len()),
            ("C", need(s.m, s.n, s.ldc), c.len()),
        ];
        for (name, need, have) in checks {
            match need {
                Some(n) if n <= have => {}
                Some(n) => return Err(err(format!("{name} has {have} elements, needs {n}"))),
                None => return Err(err(format!("{name} size overflows"))),
            }
        }
        let fits = |v: usize| {
            i64::try_from(v)
                .ok()
                .and_then(|v| v.checked_mul(4))
                .is_some()
        };
        if ![s.m, s.n, s.k, s.lda, ldb, s.ldc].into_iter().all(fits) {
            return Err(err("a size exceeds the kernel's 64-bit byte offsets".into()));
        }
        if self.opts.b_layout == BLayout::Transposed
            && s.ldb.saturating_mul(self.n_block() - 1) > i32::MAX as usize
        {
            return Err(err(format!(
                "ldb = {} is too large for the repack's 32-bit gather indices",
                s.ldb
            )));
        }
        if s.m == 0 || s.n == 0 {
            return Ok(());
        }
        let mut scratch = vec![0f32; self.scratch_len(s.k)];
        let mut args = s.args(a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), scratch.as_mut_ptr());
        if let Some(scale) = scale {
            args.row_scale = scale.as_ptr();
        }
        // SAFETY: the CPU supports the ISA; every element the kernel touches lies inside
        // the checked slices (rows < m, columns < n, k < K, tails masked, the row scale
        // at m floats), and the scratch has scratch_len(k) floats.
        unsafe { self.call(&args) };
        Ok(())
    }

    /// Runs the kernel on raw pointers.
    ///
    /// # Safety
    /// The CPU must support the kernel's ISA. For the given `m, n, k` and leading
    /// dimensions, A must be readable at `(m-1)*lda + k` floats, B at `(k-1)*ldb + n`
    /// (row-major) or `(n-1)*ldb + k` (transposed), C readable (if accumulating) and
    /// writable at `(m-1)*ldc + n`; `row_scale` null or readable at `m` floats; the
    /// transposed layout needs
    /// [`Brgemm::scratch_len`]`(k)` writable scratch floats, not aliasing A, B or C,
    /// and `ldb * (n_block() - 1) <= i32::MAX`. Negative or zero m, n make the call a
    /// no-op; k <= 0 gives `C = 0` (or leaves C as it is when accumulating).
    pub unsafe fn call(&self, args: &BrgemmArgs) {
        // SAFETY: the entry point has the BrgemmFn ABI (emitted by Gen::emit) and the
        // kernel outlives the call; the caller vouches for the pointers.
        unsafe {
            let f: BrgemmFn = std::mem::transmute(self.kernel.entry_ptr());
            f(args);
        }
    }
}

/// Packs B into the [`BLayout::Packed`] panels a [`Brgemm`] of the same ISA and
/// blocking reads: from a row-major B (copy, columns past N zero-filled) or from B^T
/// (the in-register transpose of the transposed kernel). `Send + Sync`.
#[derive(Debug)]
pub struct BPacker {
    kernel: Kernel,
    isa: Isa,
    source: BLayout,
    blocking: Blocking,
}

impl BPacker {
    /// A packer from `source` (row-major or transposed) for kernels of `isa` with
    /// `blocking` (`None`: [`Blocking::default_for`]).
    pub fn compile(
        isa: Isa,
        source: BLayout,
        blocking: Option<Blocking>,
    ) -> Result<BPacker, X64Error> {
        if source == BLayout::Packed {
            return Err(X64Error::Unsupported {
                op: "brgemm pack".into(),
                isa,
                reason: "the source must be row-major or transposed".into(),
            });
        }
        let blocking = blocking.unwrap_or_else(|| Blocking::default_for(isa));
        blocking.validate(isa)?;
        let mut a = VecAsm::new(isa, Gpr::Rdx)?;
        emit_pack_fn(&mut a, source, blocking)?;
        let kernel = a.finalize()?;
        Ok(BPacker {
            kernel,
            isa,
            source,
            blocking,
        })
    }

    /// A packer whose panels match `kern` (same ISA and blocking).
    pub fn for_kernel(kern: &Brgemm, source: BLayout) -> Result<BPacker, X64Error> {
        BPacker::compile(kern.opts.isa, source, Some(kern.blocking))
    }

    /// The source layout.
    pub fn source(&self) -> BLayout {
        self.source
    }

    /// The compiled code.
    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    /// Columns per panel.
    pub fn n_block(&self) -> usize {
        self.blocking.nr * self.isa.lanes()
    }

    /// Floats of the packed B of an N-column, K-row matrix.
    /// Saturates at `usize::MAX` (which no slice can have) instead of overflowing.
    pub fn packed_len(&self, n: usize, k: usize) -> usize {
        n.div_ceil(self.n_block())
            .saturating_mul(k)
            .saturating_mul(self.n_block())
    }

    /// Packs B (K×N with row stride `ldb`, or B^T as N×K with row stride `ldb`) into
    /// `packed`, which needs [`BPacker::packed_len`] floats. Errors, never panics, on
    /// short slices, `ldb` below the row length or an unsupported CPU.
    pub fn pack(
        &self,
        b: &[f32],
        n: usize,
        k: usize,
        ldb: usize,
        packed: &mut [f32],
    ) -> Result<(), X64Error> {
        if !self.isa.is_supported() {
            return Err(X64Error::IsaUnsupported { isa: self.isa });
        }
        let err = |why: String| X64Error::Args(format!("brgemm pack N={n} K={k}: {why}"));
        let (rows, cols) = match self.source {
            BLayout::Transposed => (n, k),
            _ => (k, n),
        };
        if ldb < cols {
            return Err(err(format!("ldb = {ldb} is below the row length {cols}")));
        }
        let need = if rows == 0 || cols == 0 {
            Some(0)
        } else {
            (rows - 1)
                .checked_mul(ldb)
                .and_then(|x| x.checked_add(cols))
        };
        match need {
            Some(need) if need <= b.len() => {}
            _ => return Err(err(format!("B has {} elements, too few", b.len()))),
        }
        let plen = self.packed_len(n, k);
        if packed.len() < plen {
            return Err(err(format!(
                "packed has {} floats, needs {plen}",
                packed.len()
            )));
        }
        let fits = |v: usize| {
            i64::try_from(v)
                .ok()
                .and_then(|v| v.checked_mul(4))
                .is_some()
        };
        if ![n, k, ldb, plen].into_iter().all(fits)
            || (self.source == BLayout::Transposed
                && ldb.saturating_mul(self.n_block() - 1) > i32::MAX as usize)
        {
            return Err(err("sizes exceed the packer's offsets".into()));
        }
        if n == 0 || k == 0 {
            return Ok(());
        }
        let args = BrgemmArgs {
            a: std::ptr::null(),
            b: b.as_ptr(),
            c: std::ptr::null_mut(),
            scratch: packed.as_mut_ptr(),
            m: 0,
            n: n as i64,
            k: k as i64,
            lda: 0,
            ldb: ldb as i64,
            ldc: 0,
            accumulate: 0,
            row_scale: std::ptr::null(),
        };
        // SAFETY: the ISA is supported, B is readable over the checked extent and
        // `packed` holds packed_len(n, k) floats.
        unsafe { self.call(&args) };
        Ok(())
    }

    /// Runs the packer on raw pointers: reads `b`, `n`, `k`, `ldb`, writes the panels to
    /// `scratch`.
    ///
    /// # Safety
    /// The CPU supports the ISA; B is readable as [`BPacker::pack`] checks; `scratch`
    /// is writable for [`BPacker::packed_len`]`(n, k)` floats and does not alias B;
    /// for a transposed source `ldb * (n_block() - 1) <= i32::MAX`.
    pub unsafe fn call(&self, args: &BrgemmArgs) {
        // SAFETY: the entry point has the BrgemmFn ABI (Gen::emit_pack); the caller
        // vouches for the pointers.
        unsafe {
            let f: BrgemmFn = std::mem::transmute(self.kernel.entry_ptr());
            f(args);
        }
    }
}

// ----- code generation ---------------------------------------------------------------

const A0: Gpr = Gpr::Rax;
const A3: Gpr = Gpr::R13;
const A6: Gpr = Gpr::Rcx;
const C3: Gpr = Gpr::R11;
const C6: Gpr = Gpr::R13;
const LDA: Gpr = Gpr::Rbx;
const LDC: Gpr = Gpr::Rbp;
const BK: Gpr = Gpr::R14;
const C_ROW: Gpr = Gpr::R9;

/// Stack slots (bytes from rsp).
const S_NREM: i32 = 0;
const S_CCOL: i32 = 8;
const S_BSRC: i32 = 16;
const S_BSTEP: i32 = 24;
const S_PDST: i32 = 32;
const FRAME: i32 = 48;

/// A tile width variant: `nvec` vectors per row, the last one masked or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Width {
    nvec: usize,
    masked: bool,
}

/// The code generator of one brgemm or packer function. It writes into a borrowed
/// [`VecAsm`] (whose constant pool is reached through `rdx`), so a caller can place the
/// function inside a larger kernel (the fused attention kernel calls it as a
/// subroutine) or finalize it on its own.
struct Gen<'a> {
    a: &'a mut VecAsm,
    isa: Isa,
    layout: BLayout,
    bl: Blocking,
}

/// Emits a brgemm function (the [`BrgemmFn`] ABI: `rdi` = `*const BrgemmArgs`, SysV
/// callee-saved registers preserved, ends in `ret`) at the current offset of `a`.
/// `a` must reach its constant pool through `rdx`; `bl` must be validated.
pub(crate) fn emit_brgemm_fn(
    a: &mut VecAsm,
    layout: BLayout,
    bl: Blocking,
) -> Result<(), X64Error> {
    Gen::new(a, layout, bl)?.emit_fn()
}

/// Emits a packer function (same ABI as [`emit_brgemm_fn`]; reads `b, n, k, ldb`,
/// writes the panels to `scratch`) at the current offset of `a`.
pub(crate) fn emit_pack_fn(a: &mut VecAsm, source: BLayout, bl: Blocking) -> Result<(), X64Error> {
    Gen::new(a, source, bl)?.emit_pack_fn()
}

impl<'a> Gen<'a> {
    fn new(a: &'a mut VecAsm, layout: BLayout, bl: Blocking) -> Result<Gen<'a>, X64Error> {
        if a.consts_gpr() != Gpr::Rdx {
            return Err(X64Error::BadRegister {
                op: "brgemm".into(),
                reason: "the brgemm code reaches its constants through rdx".into(),
            });
        }
        let isa = a.isa();
        Ok(Gen { a, isa, layout, bl })
    }

    fn nblk(&self) -> i32 {
        (self.bl.nr * self.isa.lanes()) as i32
    }

    fn v(&self, n: usize) -> Register {
        self.a.vr(VReg(n as u8))
    }

    fn acc(&self, r: usize, j: usize) -> usize {
        r * self.bl.nr + j
    }

    fn breg(&self, j: usize) -> usize {
        self.bl.mr * self.bl.nr + j
    }

    fn bcast_reg(&self, r: usize) -> usize {
        let first = self.bl.regs();
        let count = (Blocking::avail(self.isa) - first).min(2);
        first + r % count
    }

    // ----- vector instructions (all through iced) -----

    fn vload(&mut self, dst: usize, mem: Mem, masked: bool) -> Result<(), X64Error> {
        let d = self.v(dst);
        let ins = match (self.isa, masked) {
            (Isa::Avx512, false) => {
                Instruction::with2(Code::EVEX_Vmovups_zmm_k1z_zmmm512, d, iced_mem(mem))
            }
            (Isa::Avx512, true) => {
                let mut i =
                    Instruction::with2(Code::EVEX_Vmovups_zmm_k1z_zmmm512, d, iced_mem(mem))
                        .map_err(|e| enc_err("vmovups{k1}{z}", e))?;
                i.set_op_mask(Register::K1);
                i.set_zeroing_masking(true);
                Ok(i)
            }
            (Isa::Avx2, false) => {
                Instruction::with2(Code::VEX_Vmovups_ymm_ymmm256, d, iced_mem(mem))
            }
            (Isa::Avx2, true) => Instruction::with3(
                Code::VEX_Vmaskmovps_ymm_ymm_m256,
                d,
                Register::YMM15,
                iced_mem(mem),
            ),
        };
        self.a.enc(ins, "brgemm load")
    }

    fn vstore(&mut self, mem: Mem, src: usize, masked: bool) -> Result<(), X64Error> {
        let s = self.v(src);
        let ins = match (self.isa, masked) {
            (Isa::Avx512, false) => {
                Instruction::with2(Code::EVEX_Vmovups_zmmm512_k1z_zmm, iced_mem(mem), s)
            }
            (Isa::Avx512, true) => {
                let mut i =
                    Instruction::with2(Code::EVEX_Vmovups_zmmm512_k1z_zmm, iced_mem(mem), s)
                        .map_err(|e| enc_err("vmovups{k1}", e))?;
                i.set_op_mask(Register::K1);
                Ok(i)
            }
            (Isa::Avx2, false) => {
                Instruction::with2(Code::VEX_Vmovups_ymmm256_ymm, iced_mem(mem), s)
            }
            (Isa::Avx2, true) => Instruction::with3(
                Code::VEX_Vmaskmovps_m256_ymm_ymm,
                iced_mem(mem),
                Register::YMM15,
                s,
            ),
        };
        self.a.enc(ins, "brgemm store")
    }

    fn vzero(&mut self, d: usize) -> Result<(), X64Error> {
        let r = self.v(d);
        let code = match self.isa {
            Isa::Avx512 => Code::EVEX_Vxorps_zmm_k1z_zmm_zmmm512b32,
            Isa::Avx2 => Code::VEX_Vxorps_ymm_ymm_ymmm256,
        };
        self.a.enc(Instruction::with3(code, r, r, r), "vxorps")
    }

    fn vbcast(&mut self, dst: usize, mem: Mem) -> Result<(), X64Error> {
        let code = match self.isa {
            Isa::Avx512 => Code::EVEX_Vbroadcastss_zmm_k1z_xmmm32,
            Isa::Avx2 => Code::VEX_Vbroadcastss_ymm_m32,
        };
        let d = self.v(dst);
        self.a
            .enc(Instruction::with2(code, d, iced_mem(mem)), "vbroadcastss")
    }

    /// `acc = b * t + acc`.
    fn vfma(&mut self, acc: usize, b: usize, t: usize) -> Result<(), X64Error> {
        let code = match self.isa {
            Isa::Avx512 => Code::EVEX_Vfmadd231ps_zmm_k1z_zmm_zmmm512b32_er,
            Isa::Avx2 => Code::VEX_Vfmadd231ps_ymm_ymm_ymmm256,
        };
        let (a, b, t) = (self.v(acc), self.v(b), self.v(t));
        self.a.enc(Instruction::with3(code, a, b, t), "vfmadd231ps")
    }

    /// `acc *= t`.
    fn vmul(&mut self, acc: usize, t: usize) -> Result<(), X64Error> {
        let code = match self.isa {
            Isa::Avx512 => Code::EVEX_Vmulps_zmm_k1z_zmm_zmmm512b32_er,
            Isa::Avx2 => Code::VEX_Vmulps_ymm_ymm_ymmm256,
        };
        let (a, t) = (self.v(acc), self.v(t));
        self.a.enc(Instruction::with3(code, a, a, t), "vmulps")
    }

    // ----- addressing -----

    /// Row `r` of a tile whose rows 0, 3, 6 start at `bases` and are `ld` apart.
    fn row(bases: [Gpr; 3], ld: Gpr, r: usize, disp: i32) -> Mem {
        let base = bases[r / 3];
        match r % 3 {
            0 => Mem::new(base, disp),
            s => Mem::indexed(base, ld, s as u8, disp),
        }
    }

    /// `dst = src + 3 * ld`.
    fn plus3(&mut self, dst: Gpr, src: Gpr, ld: Gpr) {
        dynasm!(self.a.ops()
            ; .arch x64
            ; lea Rq(dst.num()), [Rq(src.num()) + Rq(ld.num()) * 2]
            ; add Rq(dst.num()), Rq(ld.num())
        );
    }

    fn c_bases(&mut self, rows: usize) {
        if rows > 3 {
            self.plus3(C3, C_ROW, LDC);
        }
        if rows > 6 {
            self.plus3(C6, C3, LDC);
        }
    }

    // ----- the kernel -----

    fn emit_fn(mut self) -> Result<(), X64Error> {
        let nblk = self.nblk();
        let frame = self
            .a
            .prologue(&[Gpr::Rbx, Gpr::Rbp, Gpr::R12, Gpr::R13, Gpr::R14, Gpr::R15]);
        let exit = self.a.new_label();
        let n_loop = self.a.new_label();
        let n_next = self.a.new_label();
        let widths: Vec<Width> = std::iter::once(Width {
            nvec: self.bl.nr,
            masked: false,
        })
        .chain((1..=self.bl.nr).map(|nvec| Width { nvec, masked: true }))
        .collect();
        let m_loops: Vec<DynamicLabel> = widths.iter().map(|_| self.a.new_label()).collect();

        dynasm!(self.a.ops()
            ; .arch x64
            ; sub rsp, FRAME
            ; mov rax, [rdi + OFF_M]
            ; test rax, rax
            ; jle =>exit
            ; mov rax, [rdi + OFF_N]
            ; test rax, rax
            ; jle =>exit
            ; mov [rsp + S_NREM], rax
            ; mov rax, [rdi + OFF_C]
            ; mov [rsp + S_CCOL], rax
            ; mov rax, [rdi + OFF_B]
            ; mov [rsp + S_BSRC], rax
            ; mov rbx, [rdi + OFF_LDA]
            ; shl rbx, 2
            ; mov rbp, [rdi + OFF_LDC]
            ; shl rbp, 2
        );
        match self.layout {
            BLayout::RowMajor => {
                dynasm!(self.a.ops() ; .arch x64 ; mov QWORD [rsp + S_BSTEP], nblk * 4)
            }
            BLayout::Transposed => dynasm!(self.a.ops()
                ; .arch x64
                ; mov rax, [rdi + OFF_LDB]
                ; imul rax, rax, nblk * 4
                ; mov [rsp + S_BSTEP], rax
                ; mov rax, [rdi + OFF_SCRATCH]
                ; mov [rsp + S_PDST], rax
            ),
            BLayout::Packed => dynasm!(self.a.ops()
                ; .arch x64
                ; mov rax, [rdi + OFF_K]
                ; imul rax, rax, nblk * 4
                ; mov [rsp + S_BSTEP], rax
            ),
        }
        self.a.bind(n_loop);
        // rax = nb = min(N remaining, N_blk)
        dynasm!(self.a.ops()
            ; .arch x64
            ; mov rax, [rsp + S_NREM]
            ; mov r11d, nblk
            ; cmp rax, r11
            ; cmovg rax, r11
        );
        match self.layout {
            BLayout::RowMajor => dynasm!(self.a.ops()
                ; .arch x64
                ; mov r10, [rsp + S_BSRC]
                ; mov r12, [rdi + OFF_LDB]
                ; shl r12, 2
            ),
            BLayout::Transposed => {
                self.repack()?;
                dynasm!(self.a.ops()
                    ; .arch x64
                    ; mov r10, [rdi + OFF_SCRATCH]
                    ; mov r12d, nblk * 4
                );
            }
            BLayout::Packed => dynasm!(self.a.ops()
                ; .arch x64
                ; mov r10, [rsp + S_BSRC]
                ; mov r12d, nblk * 4
            ),
        }
        dynasm!(self.a.ops()
            ; .arch x64
            ; mov r8, [rdi + OFF_A]
            ; mov r9, [rsp + S_CCOL]
            ; mov rsi, [rdi + OFF_M]
            ; cmp rax, nblk
            ; je =>m_loops[0]
        );
        // Partial panel: rcx = vectors - 1, r11 = lanes active in the last vector.
        let shift = self.isa.lanes().trailing_zeros() as i8;
        dynasm!(self.a.ops()
            ; .arch x64
            ; lea rcx, [rax - 1]
            ; shr rcx, shift
            ; mov r11, rcx
            ; shl r11, shift
            ; neg r11
            ; add r11, rax
        );
        self.a.set_tail_mask(Gpr::R11)?;
        // m_loops[v] handles v masked vectors; the last one is the fall-back jump.
        for (v, &label) in m_loops.iter().enumerate().take(self.bl.nr).skip(1) {
            dynasm!(self.a.ops() ; .arch x64 ; cmp rcx, (v - 1) as i32 ; je =>label);
        }
        dynasm!(self.a.ops() ; .arch x64 ; jmp =>m_loops[self.bl.nr]);

        dynasm!(self.a.ops()
            ; .arch x64
            ; =>n_next
            ; sub QWORD [rsp + S_NREM], nblk
            ; jle =>exit
            ; add QWORD [rsp + S_CCOL], nblk * 4
            ; mov rax, [rsp + S_BSTEP]
            ; add [rsp + S_BSRC], rax
            ; jmp =>n_loop
        );

        for (w, &label) in widths.iter().zip(&m_loops) {
            self.m_loop(*w, label, n_next)?;
        }

        self.a.bind(exit);
        dynasm!(self.a.ops() ; .arch x64 ; add rsp, FRAME);
        self.a.epilogue(&frame);
        Ok(())
    }

    /// Moves the A and C row pointers (`r8`, `r9`) `rows` rows down (strides in
    /// bytes in `rbx`, `rbp`).
    fn advance_rows(&mut self, rows: usize) {
        dynasm!(self.a.ops()
            ; .arch x64
            ; imul r11, rbx, rows as i32
            ; add r8, r11
            ; imul r11, rbp, rows as i32
            ; add r9, r11
        );
    }

    /// Row blocks of one panel width; falls through to `n_next` when M is done.
    fn m_loop(
        &mut self,
        w: Width,
        top: DynamicLabel,
        n_next: DynamicLabel,
    ) -> Result<(), X64Error> {
        let mr = self.bl.mr;
        let tail = self.a.new_label();
        self.a.bind(top);
        dynasm!(self.a.ops()
            ; .arch x64
            ; cmp rsi, mr as i32
            ; jl =>tail
        );
        self.tile(mr, w)?;
        self.advance_rows(mr);
        dynasm!(self.a.ops()
            ; .arch x64
            ; sub rsi, mr as i32
            ; jmp =>top
            ; =>tail
        );
        // The M tail (< mr rows) as tiles of the powers of two in it: 5 = 4 + 1 rows.
        // Fewer tile variants keep the code (and its emission time) small; the tail
        // runs once per panel.
        let mut p = 1usize << (usize::BITS - 1 - (mr - 1).max(1).leading_zeros());
        while p >= 1 {
            if p < mr {
                let skip = self.a.new_label();
                dynasm!(self.a.ops() ; .arch x64 ; test rsi, p as i32 ; jz =>skip);
                self.tile(p, w)?;
                self.advance_rows(p);
                // Clears bit p: the smaller tail tiles still test their own bits, and
                // M - rsi stays the next tile's first row (for the row scale).
                dynasm!(self.a.ops() ; .arch x64 ; sub rsi, p as i32);
                self.a.bind(skip);
            }
            p /= 2;
        }
        dynasm!(self.a.ops() ; .arch x64 ; jmp =>n_next);
        Ok(())
    }

    /// One register tile of `rows` rows at (r8, r9) against the panel at r10.
    fn tile(&mut self, rows: usize, w: Width) -> Result<(), X64Error> {
        let lanes_bytes = self.isa.vec_bytes() as i32;
        let cb = [C_ROW, C3, C6];
        let zero = self.a.new_label();
        let init_done = self.a.new_label();
        self.c_bases(rows);
        dynasm!(self.a.ops()
            ; .arch x64
            ; cmp QWORD [rdi + OFF_ACC], 0
            ; je =>zero
        );
        for r in 0..rows {
            for j in 0..w.nvec {
                let m = Self::row(cb, LDC, r, j as i32 * lanes_bytes);
                let last = w.masked && j + 1 == w.nvec;
                self.vload(self.acc(r, j), m, last)?;
            }
        }
        dynasm!(self.a.ops() ; .arch x64 ; jmp =>init_done ; =>zero);
        for r in 0..rows {
            for j in 0..w.nvec {
                self.vzero(self.acc(r, j))?;
            }
        }
        self.a.bind(init_done);
        dynasm!(self.a.ops() ; .arch x64 ; mov rax, r8 ; mov r14, r10 ; mov r15, [rdi + OFF_K]);
        if rows > 3 {
            self.plus3(A3, A0, LDA);
        }
        if rows > 6 {
            self.plus3(A6, A3, LDA);
        }
        let u = self.bl.k_unroll;
        let main = self.a.new_label();
        let rem = self.a.new_label();
        let rem_loop = self.a.new_label();
        let done = self.a.new_label();
        if u > 1 {
            dynasm!(self.a.ops() ; .arch x64 ; cmp r15, u as i32 ; jl =>rem);
            self.a.bind(main);
            for s in 0..u {
                self.k_step(rows, w, s as i32 * 4)?;
            }
            self.advance_a(rows, u as i32 * 4);
            dynasm!(self.a.ops()
                ; .arch x64
                ; sub r15, u as i32
                ; cmp r15, u as i32
                ; jge =>main
            );
        }
        self.a.bind(rem);
        dynasm!(self.a.ops() ; .arch x64 ; test r15, r15 ; jle =>done ; =>rem_loop);
        self.k_step(rows, w, 0)?;
        self.advance_a(rows, 4);
        dynasm!(self.a.ops() ; .arch x64 ; dec r15 ; jnz =>rem_loop ; =>done);
        self.row_scale(rows, w)?;
        self.c_bases(rows);
        for r in 0..rows {
            for j in 0..w.nvec {
                let m = Self::row(cb, LDC, r, j as i32 * lanes_bytes);
                let last = w.masked && j + 1 == w.nvec;
                self.vstore(m, self.acc(r, j), last)?;
            }
        }
        Ok(())
    }

    /// With a row scale: multiplies the tile's accumulator rows by `row_scale[i]`,
    /// `i` = `M - rsi` + row. Uses r15 and rax (free after the K loop).
    fn row_scale(&mut self, rows: usize, w: Width) -> Result<(), X64Error> {
        let skip = self.a.new_label();
        dynasm!(self.a.ops()
            ; .arch x64
            ; mov r15, [rdi + OFF_RSCALE]
            ; test r15, r15
            ; jz =>skip
            ; mov rax, [rdi + OFF_M]
            ; sub rax, rsi
            ; lea r15, [r15 + rax * 4]
        );
        for r in 0..rows {
            let t = self.bcast_reg(r);
            self.vbcast(t, Mem::new(Gpr::R15, 4 * r as i32))?;
            for j in 0..w.nvec {
                self.vmul(self.acc(r, j), t)?;
            }
        }
        self.a.bind(skip);
        Ok(())
    }

    fn advance_a(&mut self, rows: usize, bytes: i32) {
        let bases = [A0, A3, A6];
        for &b in bases.iter().take(rows.div_ceil(3)) {
            dynasm!(self.a.ops() ; .arch x64 ; add Rq(b.num()), bytes);
        }
    }

    /// One k: load the B vectors at r14, broadcast A(r, k) and FMA; r14 += ldb.
    fn k_step(&mut self, rows: usize, w: Width, a_disp: i32) -> Result<(), X64Error> {
        let lanes_bytes = self.isa.vec_bytes() as i32;
        for j in 0..w.nvec {
            let last = w.masked && j + 1 == w.nvec;
            self.vload(self.breg(j), Mem::new(BK, j as i32 * lanes_bytes), last)?;
        }
        for r in 0..rows {
            let t = self.bcast_reg(r);
            self.vbcast(t, Self::row([A0, A3, A6], LDA, r, a_disp))?;
            for j in 0..w.nvec {
                self.vfma(self.acc(r, j), self.breg(j), t)?;
            }
        }
        dynasm!(self.a.ops() ; .arch x64 ; add r14, r12);
        Ok(())
    }

    /// AVX-512: `k2..` = the panel's `rax` (= nb) columns (or B^T rows) split into
    /// 16-bit groups: group v gets bits `16v..16v+16` of `(1 << nb) - 1`.
    fn group_masks(&mut self) -> Result<(), X64Error> {
        dynasm!(self.a.ops() ; .arch x64 ; mov r11, -1);
        self.a.enc(
            Instruction::with3(
                Code::VEX_Bzhi_r64_rm64_r64,
                Register::R11,
                Register::R11,
                Register::RAX,
            ),
            "bzhi",
        )?;
        for v in 0..self.bl.nr {
            dynasm!(self.a.ops() ; .arch x64 ; mov rcx, r11 ; shr rcx, (16 * v) as i8);
            self.a.enc(
                Instruction::with2(
                    Code::VEX_Kmovw_kr_r32,
                    Register::K2 + v as u32,
                    Register::ECX,
                ),
                "kmovw",
            )?;
        }
        Ok(())
    }

    /// Packing a row-major B: copies the panel of `rax` (= nb) columns at
    /// `[rsp + S_BSRC]` (row stride ldb) to `[rsp + S_PDST]` as K×N_blk, columns past nb
    /// zero-filled. Keeps rax.
    fn copy_panel(&mut self) -> Result<(), X64Error> {
        let nr = self.bl.nr;
        let nblk = self.nblk();
        let vb = self.isa.vec_bytes() as i32;
        let end = self.a.new_label();
        let top = self.a.new_label();
        dynasm!(self.a.ops() ; .arch x64 ; cmp QWORD [rdi + OFF_K], 0 ; jle =>end);
        match self.isa {
            Isa::Avx512 => self.group_masks()?,
            Isa::Avx2 => {
                // ymm(8 + v) = column 8v + j < nb.
                let iota: Vec<u8> = (0..64u32).flat_map(|i| i.to_le_bytes()).collect();
                let iota = self.a.const_table(&iota, 64)?;
                let t = self.v(12);
                self.vbroadcast_gpr(t, Register::EAX)?;
                for v in 0..nr {
                    let m = Mem::new(iota.base, iota.disp + v as i32 * vb);
                    let d = self.v(8 + v);
                    self.a.enc(
                        Instruction::with3(Code::VEX_Vpcmpgtd_ymm_ymm_ymmm256, d, t, iced_mem(m)),
                        "vpcmpgtd",
                    )?;
                }
            }
        }
        dynasm!(self.a.ops()
            ; .arch x64
            ; mov r14, [rsp + S_BSRC]
            ; mov r13, [rsp + S_PDST]
            ; mov r15, [rdi + OFF_K]
            ; mov r12, [rdi + OFF_LDB]
            ; shl r12, 2
            ; =>top
        );
        for v in 0..nr {
            let (d, mem) = (self.v(v), iced_mem(Mem::new(Gpr::R14, v as i32 * vb)));
            let ins = match self.isa {
                Isa::Avx512 => {
                    let mut i = Instruction::with2(Code::EVEX_Vmovups_zmm_k1z_zmmm512, d, mem)
                        .map_err(|e| enc_err("vmovups{k}{z}", e))?;
                    i.set_op_mask(Register::K2 + v as u32);
                    i.set_zeroing_masking(true);
                    Ok(i)
                }
                Isa::Avx2 => {
                    Instruction::with3(Code::VEX_Vmaskmovps_ymm_ymm_m256, d, self.v(8 + v), mem)
                }
            };
            self.a.enc(ins, "pack load")?;
            self.vstore(Mem::new(Gpr::R13, v as i32 * vb), v, false)?;
        }
        dynasm!(self.a.ops()
            ; .arch x64
            ; add r14, r12
            ; add r13, nblk * 4
            ; dec r15
            ; jnz =>top
            ; =>end
        );
        Ok(())
    }

    /// The packer: every panel of B (row-major or transposed source) into
    /// `[scratch + p * K * N_blk]`, no compute.
    fn emit_pack_fn(mut self) -> Result<(), X64Error> {
        let nblk = self.nblk();
        let frame = self
            .a
            .prologue(&[Gpr::Rbx, Gpr::Rbp, Gpr::R12, Gpr::R13, Gpr::R14, Gpr::R15]);
        let exit = self.a.new_label();
        let n_loop = self.a.new_label();
        dynasm!(self.a.ops()
            ; .arch x64
            ; sub rsp, FRAME
            ; mov rax, [rdi + OFF_N]
            ; test rax, rax
            ; jle =>exit
            ; mov [rsp + S_NREM], rax
            ; mov rax, [rdi + OFF_B]
            ; mov [rsp + S_BSRC], rax
            ; mov rax, [rdi + OFF_SCRATCH]
            ; mov [rsp + S_PDST], rax
        );
        match self.layout {
            BLayout::Transposed => dynasm!(self.a.ops()
                ; .arch x64
                ; mov rax, [rdi + OFF_LDB]
                ; imul rax, rax, nblk * 4
                ; mov [rsp + S_BSTEP], rax
            ),
            _ => dynasm!(self.a.ops() ; .arch x64 ; mov QWORD [rsp + S_BSTEP], nblk * 4),
        }
        dynasm!(self.a.ops()
            ; .arch x64
            ; =>n_loop
            ; mov rax, [rsp + S_NREM]
            ; mov r11d, nblk
            ; cmp rax, r11
            ; cmovg rax, r11
        );
        match self.layout {
            BLayout::Transposed => self.repack()?,
            _ => self.copy_panel()?,
        }
        dynasm!(self.a.ops()
            ; .arch x64
            ; mov rax, [rdi + OFF_K]
            ; imul rax, rax, nblk * 4
            ; add [rsp + S_PDST], rax
            ; sub QWORD [rsp + S_NREM], nblk
            ; jle =>exit
            ; mov rax, [rsp + S_BSTEP]
            ; add [rsp + S_BSRC], rax
            ; jmp =>n_loop
            ; =>exit
            ; add rsp, FRAME
        );
        self.a.epilogue(&frame);
        Ok(())
    }

    /// Transposed B: repacks the panel of `rax` (= nb) rows of B^T at `[rsp + S_BSRC]`
    /// into the scratch as K×N_blk (scratch row k holds B^T[n0 + j, k] at column j).
    /// Each group of `lanes` rows is transposed in registers, `lanes`×`lanes` at a
    /// time (`transpose_plan`; a group cut by the panel's end with its missing rows
    /// zero); the K remainder of a group goes through masked `vgatherdps`. Keeps rax;
    /// clobbers every other GPR the m loop sets up afterwards.
    fn repack(&mut self) -> Result<(), X64Error> {
        let nr = self.bl.nr;
        let lanes = self.isa.lanes() as i32;
        let end = self.a.new_label();
        dynasm!(self.a.ops() ; .arch x64 ; cmp QWORD [rdi + OFF_K], 0 ; jle =>end);
        if self.isa == Isa::Avx512 {
            self.group_masks()?;
        }
        for v in 0..nr {
            let (partial, remainder, next) =
                (self.a.new_label(), self.a.new_label(), self.a.new_label());
            dynasm!(self.a.ops()
                ; .arch x64
                ; cmp rax, lanes * v as i32
                ; jle =>next
                ; cmp rax, lanes * (v as i32 + 1)
                ; jl =>partial
            );
            self.transpose_chunks_rows(v, false)?;
            dynasm!(self.a.ops() ; .arch x64 ; jmp =>remainder ; =>partial);
            // A group cut by the panel end (fewer than `lanes` rows of B^T, e.g. the
            // last keys of an L that is not a multiple of 16): the same register
            // transpose with the missing rows zero (gathering every k cost ~0.5 us per
            // head at D = 64).
            self.transpose_chunks_rows(v, true)?;
            // Either way, gathers (masked to the group's rows) for the K remainder.
            self.a.bind(remainder);
            dynasm!(self.a.ops()
                ; .arch x64
                ; test QWORD [rdi + OFF_K], lanes - 1
                ; jz =>next
            );
            self.gather_loop(v, true)?;
            self.a.bind(next);
        }
        self.a.bind(end);
        Ok(())
    }

    /// Transposes the full K chunks of row group `v` (rows `lanes*v ..` of the panel)
    /// into the scratch.
    ///
    /// `partial`: the group has only `rax - lanes * v` (1..lanes) rows; the others are
    /// transposed as zeros and never read.
    fn transpose_chunks_rows(&mut self, v: usize, partial: bool) -> Result<(), X64Error> {
        let lanes = self.isa.lanes();
        let nblk = self.nblk();
        let vb = self.isa.vec_bytes() as i32;
        let (plan, out) = cached_transpose_plan(self.isa)?;
        // Row bases of rows 0, 3, 6, 9, 12, 15 of the group; rows 3b+1, 3b+2 via ldb.
        let bases = [Gpr::R11, Gpr::Rcx, Gpr::Rsi, Gpr::R8, Gpr::R9, Gpr::R10];
        let nbases = lanes.div_ceil(3);
        dynasm!(self.a.ops()
            ; .arch x64
            ; mov r12, [rdi + OFF_LDB]
            ; shl r12, 2
            ; mov r11, r12
            ; imul r11, r11, (lanes * v) as i32
            ; add r11, [rsp + S_BSRC]
            ; mov r13, [rsp + S_PDST]
            ; add r13, v as i32 * vb
            ; mov r15, [rdi + OFF_K]
            ; sar r15, lanes.trailing_zeros() as i8
        );
        for w in bases.windows(2).take(nbases - 1) {
            self.plus3(w[1], w[0], Gpr::R12);
        }
        let top = self.a.new_label();
        let done = self.a.new_label();
        if partial {
            // r14 = rows of the group.
            let first_row = -((lanes * v) as i32);
            dynasm!(self.a.ops() ; .arch x64 ; lea r14, [rax + first_row]);
        }
        dynasm!(self.a.ops() ; .arch x64 ; test r15, r15 ; jz =>done ; =>top);
        if partial {
            let loaded = self.a.new_label();
            for i in 1..lanes {
                self.vzero(i)?;
            }
            for i in 0..lanes {
                if i > 0 {
                    dynasm!(self.a.ops() ; .arch x64 ; cmp r14, i as i32 ; jle =>loaded);
                }
                let m = Self::row6(bases, Gpr::R12, i);
                self.vload(i, m, false)?;
            }
            self.a.bind(loaded);
        } else {
            for i in 0..lanes {
                let m = Self::row6(bases, Gpr::R12, i);
                self.vload(i, m, false)?;
            }
        }
        for &(op, d, a, b) in &plan {
            self.shuffle(op, d, a, b)?;
        }
        for (j, &reg) in out.iter().enumerate() {
            self.vstore(Mem::new(Gpr::R13, j as i32 * nblk * 4), reg, false)?;
        }
        for &b in bases.iter().take(nbases) {
            dynasm!(self.a.ops() ; .arch x64 ; add Rq(b.num()), vb);
        }
        dynasm!(self.a.ops()
            ; .arch x64
            ; add r13, lanes as i32 * nblk * 4
            ; dec r15
            ; jnz =>top
            ; =>done
        );
        Ok(())
    }

    /// Row `i` (0..16) of a group whose rows 0, 3, 6, .. start at `bases`.
    fn row6(bases: [Gpr; 6], ld: Gpr, i: usize) -> Mem {
        match i % 3 {
            0 => Mem::new(bases[i / 3], 0),
            s => Mem::indexed(bases[i / 3], ld, s as u8, 0),
        }
    }

    /// Gathers row group `v` for k in `k0..K` (k0 = 0, or the first k past the full
    /// chunks when `after_chunks`), rows masked to the panel.
    fn gather_loop(&mut self, v: usize, after_chunks: bool) -> Result<(), X64Error> {
        let lanes = self.isa.lanes() as i32;
        let nblk = self.nblk();
        let vb = self.isa.vec_bytes() as i32;
        let iota: Vec<u8> = (0..64u32).flat_map(|i| i.to_le_bytes()).collect();
        let iota = self.a.const_table(&iota, 64)?;
        dynasm!(self.a.ops()
            ; .arch x64
            ; mov rcx, [rdi + OFF_LDB]
            ; mov r14, rcx
            ; imul r14, r14, lanes * v as i32 * 4
            ; add r14, [rsp + S_BSRC]
            ; mov r13, [rsp + S_PDST]
            ; add r13, v as i32 * vb
            ; mov r15, [rdi + OFF_K]
        );
        if after_chunks {
            dynasm!(self.a.ops()
                ; .arch x64
                ; mov r11, r15
                ; and r11, -lanes
                ; sub r15, r11
                ; lea r14, [r14 + r11 * 4]
                ; imul r11, r11, nblk * 4
                ; add r13, r11
            );
        }
        // v0: destination, v1: index vector j * ldb, v2: ldb broadcast (then nb on AVX2),
        // v3: AVX2 row mask, v4: its copy (the gather clears its mask).
        let (d, idx, t, mask, copy) = (self.v(0), self.v(1), self.v(2), self.v(3), self.v(4));
        let mulld = match self.isa {
            Isa::Avx512 => {
                self.a.enc(
                    Instruction::with2(Code::EVEX_Vpbroadcastd_zmm_k1z_r32, t, Register::ECX),
                    "vpbroadcastd",
                )?;
                Code::EVEX_Vpmulld_zmm_k1z_zmm_zmmm512b32
            }
            Isa::Avx2 => {
                self.vbroadcast_gpr(t, Register::ECX)?;
                Code::VEX_Vpmulld_ymm_ymm_ymmm256
            }
        };
        self.a
            .enc(Instruction::with3(mulld, idx, t, iced_mem(iota)), "vpmulld")?;
        if self.isa == Isa::Avx2 {
            self.vbroadcast_gpr(t, Register::EAX)?;
            let m = Mem::new(iota.base, iota.disp + v as i32 * vb);
            self.a.enc(
                Instruction::with3(Code::VEX_Vpcmpgtd_ymm_ymm_ymmm256, mask, t, iced_mem(m)),
                "vpcmpgtd",
            )?;
        }
        let top = self.a.new_label();
        let done = self.a.new_label();
        dynasm!(self.a.ops() ; .arch x64 ; test r15, r15 ; jle =>done ; =>top);
        self.vzero(0)?;
        let mem = MemoryOperand::new(Register::R14, idx, 4, 0, 1, false, Register::None);
        match self.isa {
            Isa::Avx512 => {
                self.a.enc(
                    Instruction::with2(
                        Code::VEX_Kmovw_kr_km16,
                        Register::K7,
                        Register::K2 + v as u32,
                    ),
                    "kmovw",
                )?;
                let mut g = Instruction::with2(Code::EVEX_Vgatherdps_zmm_k1_vm32z, d, mem)
                    .map_err(|e| enc_err("vgatherdps", e))?;
                g.set_op_mask(Register::K7);
                self.a.enc(Ok(g), "vgatherdps")?;
            }
            Isa::Avx2 => {
                self.a.enc(
                    Instruction::with2(Code::VEX_Vmovaps_ymm_ymmm256, copy, mask),
                    "vmovaps",
                )?;
                self.a.enc(
                    Instruction::with3(Code::VEX_Vgatherdps_ymm_vm32y_ymm, d, mem, copy),
                    "vgatherdps",
                )?;
            }
        }
        self.vstore(Mem::new(Gpr::R13, 0), 0, false)?;
        dynasm!(self.a.ops()
            ; .arch x64
            ; add r14, 4
            ; add r13, nblk * 4
            ; dec r15
            ; jnz =>top
            ; =>done
        );
        Ok(())
    }

    /// AVX2: every lane of `dst` = the 32-bit GPR `src`.
    fn vbroadcast_gpr(&mut self, dst: Register, src: Register) -> Result<(), X64Error> {
        let x = Register::XMM0 + (dst.number() as u32);
        self.a.enc(
            Instruction::with2(Code::VEX_Vmovd_xmm_rm32, x, src),
            "vmovd",
        )?;
        self.a.enc(
            Instruction::with2(Code::VEX_Vpbroadcastd_ymm_xmmm32, dst, x),
            "vpbroadcastd",
        )
    }

    fn shuffle(&mut self, op: Shuf, d: usize, a: usize, b: usize) -> Result<(), X64Error> {
        let (d, a, b) = (self.v(d), self.v(a), self.v(b));
        let z = self.isa == Isa::Avx512;
        let ins = match op {
            Shuf::LoPs if z => {
                Instruction::with3(Code::EVEX_Vunpcklps_zmm_k1z_zmm_zmmm512b32, d, a, b)
            }
            Shuf::HiPs if z => {
                Instruction::with3(Code::EVEX_Vunpckhps_zmm_k1z_zmm_zmmm512b32, d, a, b)
            }
            Shuf::LoPd if z => {
                Instruction::with3(Code::EVEX_Vunpcklpd_zmm_k1z_zmm_zmmm512b64, d, a, b)
            }
            Shuf::HiPd if z => {
                Instruction::with3(Code::EVEX_Vunpckhpd_zmm_k1z_zmm_zmmm512b64, d, a, b)
            }
            Shuf::LoPs => Instruction::with3(Code::VEX_Vunpcklps_ymm_ymm_ymmm256, d, a, b),
            Shuf::HiPs => Instruction::with3(Code::VEX_Vunpckhps_ymm_ymm_ymmm256, d, a, b),
            Shuf::LoPd => Instruction::with3(Code::VEX_Vunpcklpd_ymm_ymm_ymmm256, d, a, b),
            Shuf::HiPd => Instruction::with3(Code::VEX_Vunpckhpd_ymm_ymm_ymmm256, d, a, b),
            Shuf::Blocks(imm) if z => Instruction::with4(
                Code::EVEX_Vshuff32x4_zmm_k1z_zmm_zmmm512b32_imm8,
                d,
                a,
                b,
                u32::from(imm),
            ),
            Shuf::Blocks(imm) => Instruction::with4(
                Code::VEX_Vperm2f128_ymm_ymm_ymmm256_imm8,
                d,
                a,
                b,
                u32::from(imm),
            ),
        };
        self.a.enc(ins, "transpose shuffle")
    }
}

// ----- in-register transpose ---------------------------------------------------------

/// A two-source shuffle of the transpose; lanes are grouped in 128-bit blocks of 4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shuf {
    /// `vunpcklps`: per block `[a0, b0, a1, b1]`.
    LoPs,
    /// `vunpckhps`: per block `[a2, b2, a3, b3]`.
    HiPs,
    /// `vunpcklpd`: per block `[a0, a1, b0, b1]`.
    LoPd,
    /// `vunpckhpd`: per block `[a2, a3, b2, b3]`.
    HiPd,
    /// Whole blocks: `vshuff32x4` (zmm: blocks 0, 1 from a, 2, 3 from b, two imm bits
    /// each) or `vperm2f128` (ymm: each half picks one of a.lo, a.hi, b.lo, b.hi).
    Blocks(u8),
}

/// `(op, dst, a, b)` register steps.
type Plan = Vec<(Shuf, usize, usize, usize)>;

/// [`transpose_plan`], computed and checked once per process and ISA (an error is
/// not kept: the next call computes it again and returns the error).
fn cached_transpose_plan(isa: Isa) -> Result<(Plan, Vec<usize>), X64Error> {
    type Cached = std::sync::OnceLock<Option<(Plan, Vec<usize>)>>;
    static PLANS: [Cached; 2] = [Cached::new(), Cached::new()];
    let slot = match isa {
        Isa::Avx512 => &PLANS[0],
        Isa::Avx2 => &PLANS[1],
    };
    match slot.get_or_init(|| transpose_plan(isa).ok()) {
        Some(p) => Ok(p.clone()),
        None => transpose_plan(isa),
    }
}

/// The shuffle sequence that transposes rows in registers `0..lanes` (lane `c` of
/// register `r` = element (r, c)), and the register that ends up holding each column.
/// AVX-512: 64 shuffles for 16×16; AVX2: 24 for 8×8. The result is checked by
/// simulating every step on (row, column) labels, so a wrong plan is a compile error,
/// never wrong numbers.
fn transpose_plan(isa: Isa) -> Result<(Plan, Vec<usize>), X64Error> {
    let lanes = isa.lanes();
    let (r, t) = (0usize, lanes);
    let mut plan: Plan = Vec::new();
    for i in 0..lanes / 2 {
        plan.push((Shuf::LoPs, t + 2 * i, r + 2 * i, r + 2 * i + 1));
        plan.push((Shuf::HiPs, t + 2 * i + 1, r + 2 * i, r + 2 * i + 1));
    }
    for g in 0..lanes / 4 {
        let q = 4 * g;
        plan.push((Shuf::LoPd, r + q, t + q, t + q + 2));
        plan.push((Shuf::HiPd, r + q + 1, t + q, t + q + 2));
        plan.push((Shuf::LoPd, r + q + 2, t + q + 1, t + q + 3));
        plan.push((Shuf::HiPd, r + q + 3, t + q + 1, t + q + 3));
    }
    let out_base = match isa {
        Isa::Avx2 => {
            for c in 0..4 {
                plan.push((Shuf::Blocks(0x20), t + c, r + c, r + 4 + c));
                plan.push((Shuf::Blocks(0x31), t + 4 + c, r + c, r + 4 + c));
            }
            t
        }
        Isa::Avx512 => {
            for h in 0..2 {
                for c in 0..4 {
                    let (a, b) = (r + 8 * h + c, r + 8 * h + 4 + c);
                    plan.push((Shuf::Blocks(0x88), t + 8 * h + c, a, b));
                    plan.push((Shuf::Blocks(0xdd), t + 8 * h + 4 + c, a, b));
                }
            }
            for c in 0..8 {
                plan.push((Shuf::Blocks(0x88), r + c, t + c, t + 8 + c));
                plan.push((Shuf::Blocks(0xdd), r + 8 + c, t + c, t + 8 + c));
            }
            r
        }
    };
    // Simulate on labels and find each column's register.
    let mut regs: Vec<Vec<(usize, usize)>> = (0..2 * lanes)
        .map(|reg| (0..lanes).map(|c| (reg, c)).collect())
        .collect();
    for &(op, d, a, b) in &plan {
        let (a, b) = (regs[a].clone(), regs[b].clone());
        let blk = |v: &[(usize, usize)], i: usize| v[4 * i..4 * i + 4].to_vec();
        let mut res = Vec::with_capacity(lanes);
        match op {
            Shuf::LoPs | Shuf::HiPs | Shuf::LoPd | Shuf::HiPd => {
                for i in 0..lanes / 4 {
                    let (x, y) = (blk(&a, i), blk(&b, i));
                    res.extend(match op {
                        Shuf::LoPs => [x[0], y[0], x[1], y[1]],
                        Shuf::HiPs => [x[2], y[2], x[3], y[3]],
                        Shuf::LoPd => [x[0], x[1], y[0], y[1]],
                        _ => [x[2], x[3], y[2], y[3]],
                    });
                }
            }
            Shuf::Blocks(imm) => {
                let sel = |k: u8| usize::from(k & 3);
                if lanes == 16 {
                    res.extend(blk(&a, sel(imm)));
                    res.extend(blk(&a, sel(imm >> 2)));
                    res.extend(blk(&b, sel(imm >> 4)));
                    res.extend(blk(&b, sel(imm >> 6)));
                } else {
                    let src = [blk(&a, 0), blk(&a, 1), blk(&b, 0), blk(&b, 1)];
                    res.extend(src[sel(imm)].iter().copied());
                    res.extend(src[sel(imm >> 4)].iter().copied());
                }
            }
        }
        regs[d] = res;
    }
    let mut out = Vec::with_capacity(lanes);
    for col in 0..lanes {
        let want: Vec<(usize, usize)> = (0..lanes).map(|row| (row, col)).collect();
        let reg = (out_base..out_base + lanes)
            .find(|&reg| regs[reg] == want)
            .ok_or_else(|| X64Error::Encode {
                what: "brgemm transpose".into(),
                reason: format!("no register holds column {col} after the plan"),
            })?;
        out.push(reg);
    }
    Ok((plan, out))
}

// ----- FMA peak reference ------------------------------------------------------------

/// A JIT loop of independent register-only FMAs: the FMA-throughput reference the
/// brgemm benches report their efficiency against (the same probe as a C loop of 12
/// accumulator chains, but through this crate's own encoder).
#[derive(Debug)]
pub struct FmaPeak {
    kernel: Kernel,
}

/// Independent accumulator chains in [`FmaPeak`]: enough to hide a 4-cycle FMA latency
/// on two pipes.
const PEAK_CHAINS: usize = 12;

impl FmaPeak {
    /// Compiles the loop for `isa`.
    pub fn compile(isa: Isa) -> Result<FmaPeak, X64Error> {
        let mut a = VecAsm::new(isa, Gpr::Rdx)?;
        let frame = a.prologue(&[]);
        let (code, zero) = match isa {
            Isa::Avx512 => (
                Code::EVEX_Vfmadd231ps_zmm_k1z_zmm_zmmm512b32_er,
                Code::EVEX_Vxorps_zmm_k1z_zmm_zmmm512b32,
            ),
            Isa::Avx2 => (
                Code::VEX_Vfmadd231ps_ymm_ymm_ymmm256,
                Code::VEX_Vxorps_ymm_ymm_ymmm256,
            ),
        };
        for r in 0..PEAK_CHAINS + 2 {
            let v = a.vr(VReg(r as u8));
            a.enc(Instruction::with3(zero, v, v, v), "vxorps")?;
        }
        let top = a.new_label();
        let done = a.new_label();
        dynasm!(a.ops() ; .arch x64 ; test rdi, rdi ; jle =>done ; =>top);
        let (x, y) = (
            a.vr(VReg(PEAK_CHAINS as u8)),
            a.vr(VReg(PEAK_CHAINS as u8 + 1)),
        );
        for r in 0..PEAK_CHAINS {
            let v = a.vr(VReg(r as u8));
            a.enc(Instruction::with3(code, v, x, y), "vfmadd231ps")?;
        }
        dynasm!(a.ops() ; .arch x64 ; dec rdi ; jnz =>top ; =>done);
        a.epilogue(&frame);
        Ok(FmaPeak {
            kernel: a.finalize()?,
        })
    }

    /// Floating-point operations per loop iteration (2 per FMA lane).
    pub fn flops_per_iter(&self) -> u64 {
        (2 * PEAK_CHAINS * self.kernel.isa().lanes()) as u64
    }

    /// Runs `iters` iterations.
    pub fn run(&self, iters: u64) -> Result<(), X64Error> {
        let isa = self.kernel.isa();
        if !isa.is_supported() {
            return Err(X64Error::IsaUnsupported { isa });
        }
        let iters = i64::try_from(iters)
            .map_err(|_| X64Error::Args(format!("{iters} iterations exceed i64")))?;
        // SAFETY: the CPU supports the ISA; the code reads no memory and takes the count
        // in rdi per the sysv64 ABI.
        unsafe {
            let f: unsafe extern "sysv64" fn(i64) = std::mem::transmute(self.kernel.entry_ptr());
            f(iters);
        }
        Ok(())
    }
}
