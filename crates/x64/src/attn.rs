//! Attention helpers: the JIT online (flash-style) softmax block kernel and the final
//! normalize-and-store kernel that, with two [`crate::Brgemm`]s, run a scaled dot-product
//! attention block without ever materializing more than `rows × n` scores.
//!
//! # The block kernel ([`OnlineSoftmax::call_block`])
//! Given a block of raw scores `S[rows × n]` (row stride `lds`, written by the Q·K^T
//! brgemm), the running per-row maximum `m[r]` and sum `l[r]`, and the output
//! accumulator `acc[rows × dv]` (row stride `ldacc`), for every row `r`:
//! ```text
//! x_j    = mask(scale(S[r][j]))           scale: x * c or x / c (compile-time constant)
//!                                         mask: x + M[r][j]  or  M[r][j] == keep ? x : fill
//! b      = max_j x_j                      the block's row maximum
//! first block:  m = b
//! later blocks: m = m[r]                  if b <= m[r] + 8 in every row of the pair
//!               m = max(m[r], b)          otherwise ("rescale")
//! m_use  = m == -inf ? 0 : m              (a row masked to -inf so far stays finite)
//! S[r][j] = p_j = exp(x_j - m_use)        in place: the P·V brgemm reads it next
//! on a rescale: alpha = exp(m[r] - m_use); l[r] *= alpha; acc[r][:] *= alpha
//! l[r]   = (first ? 0 : l[r]) + Σ p_j ;  m[r] = m
//! ```
//! `m[r]` is the reference maximum that `l` and the accumulator are scaled against, not
//! always the true running maximum: a block whose maximum exceeds it by at most 8
//! keeps it (so `p <= e^8`, far from overflowing `l` or the accumulator in f32), and
//! only a larger jump pays for the `exp` of alpha and the accumulator rescale. Once a
//! row's maximum has settled, which random and trained scores do within a few blocks,
//! no block rescales (a 48 × 128 block: 186 cycles per row with a rescale, 147
//! without; `cargo run --release -p snipjit-x64 --example softmax_block`). The result
//! is the same softmax: `out = acc / l` with both scaled by the same `e^-m`.
//! The caller's P·V brgemm writes `acc` on the first block instead of adding.
//! The mask row pointer steps by `mask_row_stride` bytes per row (0: one mask row for
//! every score row); `mask_col_bcast != 0` reads one mask element per row (a mask whose
//! last dim broadcasts). Boolean masks are 0/1 bytes.
//!
//! The final kernel ([`OnlineSoftmax::call_finish`]) writes `out[r][:] = acc[r][:] · (1 / l[r])`
//! with any output row stride (a transposed output layout is a stride, not a copy).
//!
//! A row whose scores are all `-inf` ends with `l = 0` and `acc = 0`, so `out = 0/0 =
//! NaN`, as the reference softmax gives (`exp(-inf - (-inf))`).
//!
//! # Register roles (block kernel)
//! | register | role |
//! |---|---|
//! | `r15` | `*const SoftmaxBlockArgs` |
//! | `rdx` | constant-pool base |
//! | `r8`, `r9`, `rbx` | score, mask and acc row of row A (the first of a pair) |
//! | `rsi`, `rbp`, `rdi` | the same for row B (the second; never a mask address, which AVX2 boolean tails forbid for rsi/rdi) |
//! | `r10` | rows remaining |
//! | `r11` | column index (elements) |
//! | `r14` | `n` |
//! | `r12`, `r13` | `&m[r]`, `&l[r]` of row A (row B at +4) |
//! | `rax` | tail counts, temporaries |
//! | `[rsp..rsp+32]` | byte buffer of AVX2 boolean tail loads |
//!
//! Rows run in pairs, interleaved in every loop (two independent dependency chains
//! for the out-of-order core); an odd last row runs alone. See docs/mha.md for where
//! the cycles go.
//!
//! Vector registers: 0..14 only (the AVX2 set; ymm15 is the AVX2 tail mask), so one
//! generator serves both ISAs. Horizontal reductions use VEX forms on registers below
//! 16, which AVX-512 CPUs also run.

// dynasm!'s dynamic register arguments expand to `.into()` calls.
#![allow(clippy::useless_conversion)]

use std::mem::{offset_of, size_of};

use dynasmrt::{DynamicLabel, DynasmApi, DynasmLabelApi, dynasm};
use iced_x86::{Code, Instruction, Register};
use snipjit_ir::DType;

use crate::asm::{Cond, Opnd, V3, pred};
use crate::emit::math::ExpArg;
use crate::{Gpr, Isa, Kernel, Mem, VReg, VecAsm, X64Error};

/// How the scale applies to the scores.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AttnScale {
    /// `x * c`.
    Mul(f32),
    /// `x / c`.
    Div(f32),
}

/// The mask the block kernel applies after the scale.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AttnMask {
    /// No mask.
    None,
    /// `x + mask`, an f32 mask.
    Additive,
    /// `mask == keep_when ? x : fill`, a bool (0/1 byte) mask.
    Boolean { fill: f32, keep_when: bool },
}

/// Compile-time options of an [`OnlineSoftmax`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OnlineSoftmaxOptions {
    pub isa: Isa,
    /// Applied to every score first, if any.
    pub scale: Option<AttnScale>,
    pub mask: AttnMask,
}

/// The argument block of the block kernel. Strides are in elements unless named bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SoftmaxBlockArgs {
    /// Scores `rows × n`, row stride `lds`; overwritten with `p = exp(x - m)`.
    pub s: *mut f32,
    pub rows: i64,
    pub n: i64,
    pub lds: i64,
    /// Reference maxima (see the module docs), `rows` floats (written; read unless
    /// `first`).
    pub m: *mut f32,
    /// Running sums, `rows` floats (written; read unless `first`).
    pub l: *mut f32,
    /// Accumulator `rows × dv`, row stride `ldacc`; rescaled unless `first`.
    pub acc: *mut f32,
    pub ldacc: i64,
    pub dv: i64,
    /// Mask element of (row 0, column 0) of the block; null without a mask.
    pub mask: *const u8,
    /// Bytes between the mask rows of consecutive score rows (0: broadcast).
    pub mask_row_stride: i64,
    /// Nonzero: one mask element per row, broadcast over the columns.
    pub mask_col_bcast: i64,
    /// Nonzero: the first block of these rows (`m`, `l` are initialized, acc untouched).
    pub first: i64,
}

/// The argument block of the finish kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct AttnFinishArgs {
    /// Accumulator `rows × dv`, row stride `ldacc`.
    pub acc: *const f32,
    pub ldacc: i64,
    pub rows: i64,
    pub dv: i64,
    /// Sums, `rows` floats.
    pub l: *const f32,
    /// Output rows, row stride `ldo` (elements).
    pub out: *mut f32,
    pub ldo: i64,
}

const B_S: i32 = offset_of!(SoftmaxBlockArgs, s) as i32;
const B_ROWS: i32 = offset_of!(SoftmaxBlockArgs, rows) as i32;
const B_N: i32 = offset_of!(SoftmaxBlockArgs, n) as i32;
const B_LDS: i32 = offset_of!(SoftmaxBlockArgs, lds) as i32;
const B_M: i32 = offset_of!(SoftmaxBlockArgs, m) as i32;
const B_L: i32 = offset_of!(SoftmaxBlockArgs, l) as i32;
const B_ACC: i32 = offset_of!(SoftmaxBlockArgs, acc) as i32;
const B_LDACC: i32 = offset_of!(SoftmaxBlockArgs, ldacc) as i32;
const B_DV: i32 = offset_of!(SoftmaxBlockArgs, dv) as i32;
const B_MASK: i32 = offset_of!(SoftmaxBlockArgs, mask) as i32;
const B_MROW: i32 = offset_of!(SoftmaxBlockArgs, mask_row_stride) as i32;
const B_MBC: i32 = offset_of!(SoftmaxBlockArgs, mask_col_bcast) as i32;
const B_FIRST: i32 = offset_of!(SoftmaxBlockArgs, first) as i32;

const F_ACC: i32 = offset_of!(AttnFinishArgs, acc) as i32;
const F_LDACC: i32 = offset_of!(AttnFinishArgs, ldacc) as i32;
const F_ROWS: i32 = offset_of!(AttnFinishArgs, rows) as i32;
const F_DV: i32 = offset_of!(AttnFinishArgs, dv) as i32;
const F_L: i32 = offset_of!(AttnFinishArgs, l) as i32;
const F_OUT: i32 = offset_of!(AttnFinishArgs, out) as i32;
const F_LDO: i32 = offset_of!(AttnFinishArgs, ldo) as i32;

const _: () = {
    assert!(size_of::<SoftmaxBlockArgs>() == 104);
    assert!(B_S == 0 && B_ROWS == 8 && B_N == 16 && B_LDS == 24 && B_M == 32 && B_L == 40);
    assert!(B_ACC == 48 && B_LDACC == 56 && B_DV == 64 && B_MASK == 72 && B_MROW == 80);
    assert!(B_MBC == 88 && B_FIRST == 96);
    assert!(size_of::<AttnFinishArgs>() == 56);
    assert!(F_ACC == 0 && F_LDACC == 8 && F_ROWS == 16 && F_DV == 24 && F_L == 32);
    assert!(F_OUT == 40 && F_LDO == 48);
};

type BlockFn = unsafe extern "sysv64" fn(args: *const SoftmaxBlockArgs);
type FinishFn = unsafe extern "sysv64" fn(args: *const AttnFinishArgs);

/// The compiled online-softmax kernels (block and finish). `Send + Sync`: the code is
/// read-only and keeps no state.
#[derive(Debug)]
pub struct OnlineSoftmax {
    block: Kernel,
    finish: Kernel,
    opts: OnlineSoftmaxOptions,
}

/// The mask operand of [`OnlineSoftmax::run_block`].
#[derive(Clone, Copy, Debug)]
pub enum MaskRef<'a> {
    None,
    /// f32 mask elements starting at (row 0, column 0).
    F32 {
        data: &'a [f32],
        /// Elements between rows (0: broadcast).
        row_stride: usize,
        col_bcast: bool,
    },
    /// bool mask elements starting at (row 0, column 0).
    Bool {
        data: &'a [bool],
        row_stride: usize,
        col_bcast: bool,
    },
}

impl OnlineSoftmax {
    /// Compiles both kernels. Encoding does not need the CPU to support the ISA.
    pub fn compile(opts: OnlineSoftmaxOptions) -> Result<OnlineSoftmax, X64Error> {
        let mut block = VecAsm::new(opts.isa, Gpr::Rdx)?;
        emit_block_fn(&mut block, opts)?;
        let mut finish = VecAsm::new(opts.isa, Gpr::Rdx)?;
        emit_finish_fn(&mut finish)?;
        Ok(OnlineSoftmax {
            block: block.finalize()?,
            finish: finish.finalize()?,
            opts,
        })
    }

    /// The options it was compiled with.
    pub fn options(&self) -> OnlineSoftmaxOptions {
        self.opts
    }

    /// The block kernel's code (for disassembly and decode-back tests).
    pub fn block_kernel(&self) -> &Kernel {
        &self.block
    }

    /// The finish kernel's code.
    pub fn finish_kernel(&self) -> &Kernel {
        &self.finish
    }

    /// Runs the block kernel on raw pointers.
    ///
    /// # Safety
    /// The CPU supports the ISA; `s` is readable and writable at `(rows-1)*lds + n`
    /// floats, `m` and `l` at `rows` floats, `acc` (unless `first`) at
    /// `(rows-1)*ldacc + dv` floats; with a mask, `mask` is readable at every
    /// `r*mask_row_stride + j*elem` (`j < n`, or `j = 0` with `mask_col_bcast`), bools
    /// being 0/1 bytes. `rows`, `n` >= 1 (rows <= 0 is a no-op).
    pub unsafe fn call_block(&self, args: &SoftmaxBlockArgs) {
        // SAFETY: the entry point has the BlockFn ABI; the caller vouches for the rest.
        unsafe {
            let f: BlockFn = std::mem::transmute(self.block.entry_ptr());
            f(args);
        }
    }

    /// Runs the finish kernel on raw pointers.
    ///
    /// # Safety
    /// The CPU supports the ISA; `acc` is readable at `(rows-1)*ldacc + dv` floats, `l`
    /// at `rows` floats, `out` writable at `(rows-1)*ldo + dv` floats.
    pub unsafe fn call_finish(&self, args: &AttnFinishArgs) {
        // SAFETY: as for call_block.
        unsafe {
            let f: FinishFn = std::mem::transmute(self.finish.entry_ptr());
            f(args);
        }
    }

    /// Checked [`OnlineSoftmax::call_block`]: `s` is `rows × n` with row stride
    /// `lds`, `acc` is `rows × dv` with row stride `ldacc`.
    #[allow(clippy::too_many_arguments)]
    pub fn run_block(
        &self,
        s: &mut [f32],
        (rows, n, lds): (usize, usize, usize),
        m: &mut [f32],
        l: &mut [f32],
        acc: &mut [f32],
        (dv, ldacc): (usize, usize),
        mask: MaskRef<'_>,
        first: bool,
    ) -> Result<(), X64Error> {
        let isa = self.opts.isa;
        if !isa.is_supported() {
            return Err(X64Error::IsaUnsupported { isa });
        }
        let err = |why: String| X64Error::Args(format!("softmax block {rows}x{n}: {why}"));
        if rows == 0 || n == 0 {
            return Ok(());
        }
        let need = |rows: usize, cols: usize, ld: usize| (rows - 1) * ld + cols;
        if lds < n || ldacc < dv {
            return Err(err("a row stride is below its row length".into()));
        }
        if s.len() < need(rows, n, lds) || m.len() < rows || l.len() < rows {
            return Err(err("scores, m or l too short".into()));
        }
        if !first && dv > 0 && acc.len() < need(rows, dv, ldacc) {
            return Err(err("acc too short".into()));
        }
        let (ptr, row_stride, bcast, elem, len) = match mask {
            MaskRef::None => (std::ptr::null(), 0, false, 0, 0),
            MaskRef::F32 {
                data,
                row_stride,
                col_bcast,
            } => (
                data.as_ptr().cast::<u8>(),
                row_stride,
                col_bcast,
                4,
                data.len(),
            ),
            MaskRef::Bool {
                data,
                row_stride,
                col_bcast,
            } => (
                data.as_ptr().cast::<u8>(),
                row_stride,
                col_bcast,
                1,
                data.len(),
            ),
        };
        let mask_kind_ok = matches!(
            (mask, self.opts.mask),
            (MaskRef::None, AttnMask::None)
                | (MaskRef::F32 { .. }, AttnMask::Additive)
                | (MaskRef::Bool { .. }, AttnMask::Boolean { .. })
        );
        if !mask_kind_ok {
            return Err(err("the mask does not match the compiled mask kind".into()));
        }
        if elem > 0 && len < (rows - 1) * row_stride + if bcast { 1 } else { n } {
            return Err(err("mask too short".into()));
        }
        let args = SoftmaxBlockArgs {
            s: s.as_mut_ptr(),
            rows: rows as i64,
            n: n as i64,
            lds: lds as i64,
            m: m.as_mut_ptr(),
            l: l.as_mut_ptr(),
            acc: acc.as_mut_ptr(),
            ldacc: ldacc as i64,
            dv: if first { 0 } else { dv as i64 },
            mask: ptr,
            mask_row_stride: (row_stride * elem) as i64,
            mask_col_bcast: i64::from(bcast),
            first: i64::from(first),
        };
        // SAFETY: the ISA is supported and every extent was checked above.
        unsafe { self.call_block(&args) };
        Ok(())
    }

    /// Checked [`OnlineSoftmax::call_finish`].
    pub fn run_finish(
        &self,
        acc: &[f32],
        (rows, dv, ldacc): (usize, usize, usize),
        l: &[f32],
        out: &mut [f32],
        ldo: usize,
    ) -> Result<(), X64Error> {
        let isa = self.opts.isa;
        if !isa.is_supported() {
            return Err(X64Error::IsaUnsupported { isa });
        }
        if rows == 0 || dv == 0 {
            return Ok(());
        }
        let need = |ld: usize| (rows - 1) * ld + dv;
        if ldacc < dv
            || ldo < dv
            || acc.len() < need(ldacc)
            || out.len() < need(ldo)
            || l.len() < rows
        {
            return Err(X64Error::Args(format!(
                "softmax finish {rows}x{dv}: an operand is too short or a stride too small"
            )));
        }
        let args = AttnFinishArgs {
            acc: acc.as_ptr(),
            ldacc: ldacc as i64,
            rows: rows as i64,
            dv: dv as i64,
            l: l.as_ptr(),
            out: out.as_mut_ptr(),
            ldo: ldo as i64,
        };
        // SAFETY: the ISA is supported and every extent was checked above.
        unsafe { self.call_finish(&args) };
        Ok(())
    }
}

// ----- code generation ---------------------------------------------------------------

/// The registers of one score row. The block kernel runs rows in pairs (two
/// independent dependency chains), and a last odd row alone with row A's registers.
#[derive(Clone, Copy)]
struct RowRegs {
    /// Score row, mask row, accumulator row.
    s: Gpr,
    mask: Gpr,
    acc: Gpr,
    /// Byte offset of this row's `m` and `l` from r12 / r13.
    ml_off: i32,
    /// Pass 1: scores, mask load, running max, broadcast mask value.
    x: VReg,
    t: VReg,
    max: VReg,
    mb: VReg,
    /// `m_old`, then `alpha`.
    mold: VReg,
    muse: VReg,
    /// Pass 2: exp scratch and running sum; `l` after it.
    e: [VReg; 3],
    sum: VReg,
    /// Temporary of the horizontal reductions and of the `m_use` compare.
    htmp: VReg,
}

/// Vector registers 0..14 only (the AVX2 set), see the module docs.
const ROW_A: RowRegs = RowRegs {
    s: Gpr::R8,
    mask: Gpr::R9,
    acc: Gpr::Rbx,
    ml_off: 0,
    x: VReg(1),
    t: VReg(2),
    max: VReg(0),
    mb: VReg(13),
    mold: VReg(9),
    muse: VReg(4),
    e: [VReg(6), VReg(7), VReg(8)],
    sum: VReg(0),
    htmp: VReg(2),
};

const ROW_B: RowRegs = RowRegs {
    s: Gpr::Rsi,
    mask: Gpr::Rbp,
    acc: Gpr::Rdi,
    ml_off: 4,
    x: VReg(12),
    t: VReg(14),
    max: VReg(11),
    mb: VReg(4),
    mold: VReg(10),
    muse: VReg(5),
    e: [VReg(13), VReg(14), VReg(2)],
    sum: VReg(11),
    htmp: VReg(14),
};

/// The boolean mask's fill value (reloaded per row group: pass 2 uses it as a
/// temporary).
const FILL: VReg = VReg(3);
/// Temporary of pass 2's AVX2 tail blend.
const P2_TMP: VReg = VReg(3);

/// How far (in natural-log units) a block's row maximum may exceed the reference
/// maximum `m` before the block rescales: p <= e^8 ~ 2981, far from f32 overflow in
/// `l` and the accumulator.
const RESCALE_SLACK: f32 = 8.0;

/// How the mask of pass 1 is read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MaskRead {
    None,
    /// One element per column.
    Cols,
    /// One element per row (in `mb`, loaded per row).
    Bcast,
}

/// The generator of the block function; writes into a borrowed [`VecAsm`] (constants
/// through `rdx`), so the function can also live inside a larger kernel.
struct BlockGen<'a> {
    a: &'a mut VecAsm,
    opts: OnlineSoftmaxOptions,
}

/// Emits the block function (`rdi` = `*const SoftmaxBlockArgs`, SysV callee-saved
/// registers preserved, ends in `ret`) at the current offset of `a`, which must reach
/// its constant pool through `rdx` and target `opts.isa`.
pub(crate) fn emit_block_fn(a: &mut VecAsm, opts: OnlineSoftmaxOptions) -> Result<(), X64Error> {
    BlockGen::new(a, opts)?.emit_fn()
}

fn xmm(v: VReg) -> Register {
    Register::XMM0 + u32::from(v.0)
}

fn ymm(v: VReg) -> Register {
    Register::YMM0 + u32::from(v.0)
}

/// `v = op over all lanes of v`, broadcast back to every lane. `v` and `t` < 16.
fn hreduce(a: &mut VecAsm, v: VReg, t: VReg, max: bool) -> Result<(), X64Error> {
    let (op_y, op_x) = if max {
        (
            Code::VEX_Vmaxps_ymm_ymm_ymmm256,
            Code::VEX_Vmaxps_xmm_xmm_xmmm128,
        )
    } else {
        (
            Code::VEX_Vaddps_ymm_ymm_ymmm256,
            Code::VEX_Vaddps_xmm_xmm_xmmm128,
        )
    };
    if a.isa() == Isa::Avx512 {
        let zv = Register::ZMM0 + u32::from(v.0);
        a.enc(
            Instruction::with3(Code::EVEX_Vextractf64x4_ymmm256_k1z_zmm_imm8, ymm(t), zv, 1),
            "vextractf64x4",
        )?;
        a.enc(
            Instruction::with3(op_y, ymm(v), ymm(v), ymm(t)),
            "hreduce y",
        )?;
    }
    a.enc(
        Instruction::with3(Code::VEX_Vextractf128_xmmm128_ymm_imm8, xmm(t), ymm(v), 1),
        "vextractf128",
    )?;
    a.enc(
        Instruction::with3(op_x, xmm(v), xmm(v), xmm(t)),
        "hreduce x",
    )?;
    for imm in [0x4e, 0xb1] {
        a.enc(
            Instruction::with3(Code::VEX_Vpermilps_xmm_xmmm128_imm8, xmm(t), xmm(v), imm),
            "vpermilps",
        )?;
        a.enc(
            Instruction::with3(op_x, xmm(v), xmm(v), xmm(t)),
            "hreduce x",
        )?;
    }
    let code = match a.isa() {
        Isa::Avx512 => Code::EVEX_Vbroadcastss_zmm_k1z_xmmm32,
        Isa::Avx2 => Code::VEX_Vbroadcastss_ymm_xmm,
    };
    let dst = a.vr(v);
    a.enc(Instruction::with2(code, dst, xmm(v)), "vbroadcastss reg")
}

/// `acc` (over active lanes on a tail) `= acc op x`: merge-masked on AVX-512; on AVX2
/// `x` is first blended with `neutral` in the inactive lanes (clobbering `x` and
/// `tmp`).
fn masked_accum(
    a: &mut VecAsm,
    op: V3,
    (acc, x, tmp): (VReg, VReg, VReg),
    tail: bool,
    neutral: f32,
) -> Result<(), X64Error> {
    if !tail {
        return a.v3(op, acc, acc, x);
    }
    match a.isa() {
        Isa::Avx512 => a.v3_merge(op, acc, 1, acc, x),
        Isa::Avx2 => {
            // x = mask ? x : neutral
            a.mov_internal(tmp, Opnd::F(neutral))?;
            a.blend(x, Cond::V(VReg(15)), tmp, x)?;
            a.v3(op, acc, acc, x)
        }
    }
}

impl<'a> BlockGen<'a> {
    fn new(a: &'a mut VecAsm, opts: OnlineSoftmaxOptions) -> Result<BlockGen<'a>, X64Error> {
        check_asm(a, opts.isa)?;
        Ok(BlockGen { a, opts })
    }

    fn lanes(&self) -> i32 {
        self.opts.isa.lanes() as i32
    }

    fn mask_elem(&self) -> (u8, DType) {
        match self.opts.mask {
            AttnMask::Boolean { .. } => (1, DType::Bool),
            _ => (4, DType::F32),
        }
    }

    /// `x = mask(scale(x))` for the columns at r11 of row `r` (a tail: `rax` columns,
    /// tail mask set).
    fn transform(&mut self, r: RowRegs, read: MaskRead, tail: bool) -> Result<(), X64Error> {
        let m = self.mask_values(r, read, tail)?;
        match (self.opts.scale, self.opts.mask, m) {
            // A multiplied scale and an additive mask in one FMA: `x = x*scale + mask`.
            (Some(AttnScale::Mul(v)), AttnMask::Additive, Some(m)) => {
                return self.a.v3(V3::Fmadd132, r.x, m, Opnd::F(v));
            }
            (Some(AttnScale::Mul(v)), ..) => self.a.v3(V3::Mul, r.x, r.x, Opnd::F(v))?,
            (Some(AttnScale::Div(v)), ..) => self.a.v3(V3::Div, r.x, r.x, Opnd::F(v))?,
            (None, ..) => {}
        }
        match m {
            Some(m) => self.mask_op(r.x, m),
            None => Ok(()),
        }
    }

    /// The register holding the mask values for the columns at r11 of row `r`:
    /// `mb` (broadcast per row), `t` (loaded here; a tail: `rax` columns, tail mask
    /// set), or none.
    fn mask_values(
        &mut self,
        r: RowRegs,
        read: MaskRead,
        tail: bool,
    ) -> Result<Option<VReg>, X64Error> {
        match read {
            MaskRead::None => Ok(None),
            MaskRead::Bcast => Ok(Some(r.mb)),
            MaskRead::Cols => {
                let (size, dtype) = self.mask_elem();
                let mem = Mem::indexed(r.mask, Gpr::R11, size, 0);
                if tail {
                    let buf = Mem::new(Gpr::Rsp, 0);
                    self.a.load_tail_typed(r.t, mem, dtype, Gpr::Rax, buf)?;
                } else {
                    self.a.load_typed(r.t, mem, dtype)?;
                }
                Ok(Some(r.t))
            }
        }
    }

    /// Applies the mask values in `m` (f32 or all-ones/zeros lanes) to `x`.
    fn mask_op(&mut self, x: VReg, m: VReg) -> Result<(), X64Error> {
        match self.opts.mask {
            AttnMask::None => Ok(()),
            AttnMask::Additive => self.a.v3(V3::Add, x, x, m),
            AttnMask::Boolean { keep_when, .. } => {
                let c = self.a.vreg_to_cond(m)?;
                if keep_when {
                    self.a.blend(x, c, FILL, x)
                } else {
                    self.a.blend(x, c, x, FILL)
                }
            }
        }
    }

    /// A loop over the columns in r11: `body(false)` per full vector, then
    /// `body(true)` once for the tail (count in rax, tail mask set) if any.
    fn columns(
        &mut self,
        count_off: Option<i32>,
        mut body: impl FnMut(&mut BlockGen<'a>, bool) -> Result<(), X64Error>,
    ) -> Result<(), X64Error> {
        let lanes = self.lanes();
        let (lp, tail, done): (DynamicLabel, DynamicLabel, DynamicLabel) =
            (self.a.new_label(), self.a.new_label(), self.a.new_label());
        // rax = count (n in r14, or a field of the args)
        match count_off {
            None => dynasm!(self.a.ops() ; .arch x64 ; mov rax, r14),
            Some(off) => dynasm!(self.a.ops() ; .arch x64 ; mov rax, [r15 + off]),
        }
        dynasm!(self.a.ops()
            ; .arch x64
            ; xor r11d, r11d
            ; sub rax, lanes
            ; jl =>tail
            ; =>lp
        );
        body(self, false)?;
        dynasm!(self.a.ops()
            ; .arch x64
            ; add r11, lanes
            ; cmp r11, rax
            ; jle =>lp
            ; =>tail
            ; add rax, lanes
            ; sub rax, r11
            ; jle =>done
        );
        self.a.set_tail_mask(Gpr::Rax)?;
        body(self, true)?;
        self.a.bind(done);
        Ok(())
    }

    fn pass1(&mut self, rows: &[RowRegs], read: MaskRead) -> Result<(), X64Error> {
        for r in rows {
            self.a.mov_internal(r.max, Opnd::F(f32::NEG_INFINITY))?;
            if read == MaskRead::Bcast {
                let (_, dtype) = self.mask_elem();
                self.a
                    .broadcast_load_typed(r.mb, Mem::new(r.mask, 0), dtype)?;
            }
        }
        self.columns(None, |g, tail| {
            for &r in rows {
                let mem = Mem::indexed(r.s, Gpr::R11, 4, 0);
                if tail {
                    g.a.load_tail(r.x, mem)?;
                } else {
                    g.a.load(r.x, mem)?;
                }
                g.transform(r, read, tail)?;
                if tail {
                    g.a.store_tail(mem, r.x)?;
                } else {
                    g.a.store(mem, r.x)?;
                }
                masked_accum(g.a, V3::Max, (r.max, r.x, r.t), tail, f32::NEG_INFINITY)?;
            }
            Ok(())
        })
    }

    /// `r.muse = m == -inf ? 0 : m` (clobbers `r.htmp`).
    fn m_use(&mut self, r: &RowRegs, m: VReg) -> Result<(), X64Error> {
        let c = self
            .a
            .cmp(pred::EQ_OQ, m, Opnd::F(f32::NEG_INFINITY), r.htmp)?;
        self.a.blend(r.muse, c, m, Opnd::F(0.0))
    }

    /// The whole computation for `rows` (one or two) score rows.
    fn rows(&mut self, rows: &[RowRegs]) -> Result<(), X64Error> {
        if let AttnMask::Boolean { fill, .. } = self.opts.mask {
            self.a.mov_internal(FILL, Opnd::F(fill))?;
        }
        // Pass 1: transform in place, row maxima.
        let pass1_done = self.a.new_label();
        if self.opts.mask == AttnMask::None {
            self.pass1(rows, MaskRead::None)?;
        } else {
            let bcast = self.a.new_label();
            dynasm!(self.a.ops()
                ; .arch x64
                ; cmp QWORD [r15 + B_MBC], 0
                ; jne =>bcast
            );
            self.pass1(rows, MaskRead::Cols)?;
            dynasm!(self.a.ops() ; .arch x64 ; jmp =>pass1_done ; =>bcast);
            self.pass1(rows, MaskRead::Bcast)?;
        }
        self.a.bind(pass1_done);
        for r in rows {
            hreduce(self.a, r.max, r.htmp, true)?;
        }

        // The reference maximum m (what p, l and acc are scaled against) and m_use.
        // First block: m = the block maximum. Later blocks keep m_old unless the block
        // maximum exceeds it by more than RESCALE_SLACK in some row of the group; only
        // then m = max(m_old, block max) and the rescale by alpha = exp(m_old - m_use)
        // runs (an exp, l and the accumulator row). So p <= e^RESCALE_SLACK, and once
        // a row's maximum has settled no block pays for the rescale.
        let (not_first, rescale, pass2) =
            (self.a.new_label(), self.a.new_label(), self.a.new_label());
        dynasm!(self.a.ops()
            ; .arch x64
            ; cmp QWORD [r15 + B_FIRST], 0
            ; je =>not_first
        );
        for r in rows {
            self.m_use(r, r.max)?;
            self.a.store_scalar(Mem::new(Gpr::R12, r.ml_off), r.max)?;
        }
        dynasm!(self.a.ops() ; .arch x64 ; jmp =>pass2 ; =>not_first);
        for r in rows {
            self.a
                .broadcast_load(r.mold, Mem::new(Gpr::R12, r.ml_off))?;
        }
        for r in rows {
            // Every lane holds the same value: compare lane 0. Unordered (a NaN
            // score) is not above.
            self.a.v3(V3::Add, r.htmp, r.mold, Opnd::F(RESCALE_SLACK))?;
            self.a.enc(
                Instruction::with2(Code::VEX_Vucomiss_xmm_xmmm32, xmm(r.max), xmm(r.htmp)),
                "vucomiss",
            )?;
            dynasm!(self.a.ops() ; .arch x64 ; ja =>rescale);
        }
        for r in rows {
            self.m_use(r, r.mold)?;
        }
        dynasm!(self.a.ops() ; .arch x64 ; jmp =>pass2 ; =>rescale);
        for r in rows {
            self.a.v3(V3::Max, r.max, r.max, r.mold)?;
            self.m_use(r, r.max)?;
            self.a.store_scalar(Mem::new(Gpr::R12, r.ml_off), r.max)?;
        }
        for r in rows {
            self.a.v3(V3::Sub, r.mold, r.mold, r.muse)?;
            self.a
                .exp_core(r.mold, r.mold, 1.0, ExpArg::NonPositive, r.e)?;
        }
        for r in rows {
            // l *= alpha (x is free until pass 2).
            self.a.broadcast_load(r.x, Mem::new(Gpr::R13, r.ml_off))?;
            self.a.v3(V3::Mul, r.x, r.x, r.mold)?;
            self.a.store_scalar(Mem::new(Gpr::R13, r.ml_off), r.x)?;
        }
        self.columns(Some(B_DV), |g, tail| {
            for &r in rows {
                let mem = Mem::indexed(r.acc, Gpr::R11, 4, 0);
                if tail {
                    g.a.load_tail(r.x, mem)?;
                    g.a.v3(V3::Mul, r.x, r.x, r.mold)?;
                    g.a.store_tail(mem, r.x)?;
                } else {
                    g.a.load(r.x, mem)?;
                    g.a.v3(V3::Mul, r.x, r.x, r.mold)?;
                    g.a.store(mem, r.x)?;
                }
            }
            Ok(())
        })?;
        self.a.bind(pass2);

        // Pass 2: p = exp(x - m_use) in place, row sums.
        for r in rows {
            self.a.zero(r.sum)?;
        }
        self.columns(None, |g, tail| {
            for &r in rows {
                let mem = Mem::indexed(r.s, Gpr::R11, 4, 0);
                if tail {
                    g.a.load_tail(r.x, mem)?;
                } else {
                    g.a.load(r.x, mem)?;
                }
                g.a.v3(V3::Sub, r.x, r.x, r.muse)?;
                g.a.exp_softmax(r.x, r.x, r.e)?;
                if tail {
                    g.a.store_tail(mem, r.x)?;
                } else {
                    g.a.store(mem, r.x)?;
                }
                masked_accum(g.a, V3::Add, (r.sum, r.x, P2_TMP), tail, 0.0)?;
            }
            Ok(())
        })?;
        for r in rows {
            hreduce(self.a, r.sum, r.htmp, false)?;
        }

        // l = (first ? 0 : l·alpha) + Σp.
        let first = self.a.new_label();
        dynasm!(self.a.ops()
            ; .arch x64
            ; cmp QWORD [r15 + B_FIRST], 0
            ; jne =>first
        );
        for r in rows {
            self.a.broadcast_load(r.x, Mem::new(Gpr::R13, r.ml_off))?;
            self.a.v3(V3::Add, r.sum, r.sum, r.x)?;
        }
        self.a.bind(first);
        for r in rows {
            self.a.store_scalar(Mem::new(Gpr::R13, r.ml_off), r.sum)?;
        }
        Ok(())
    }

    fn emit_fn(mut self) -> Result<(), X64Error> {
        let used = [Gpr::Rbx, Gpr::Rbp, Gpr::R12, Gpr::R13, Gpr::R14, Gpr::R15];
        let frame = self.a.prologue(&used);
        let (pair_loop, single, end) = (self.a.new_label(), self.a.new_label(), self.a.new_label());
        dynasm!(self.a.ops()
            ; .arch x64
            ; sub rsp, 32
            ; mov r15, rdi
            ; mov r10, [r15 + B_ROWS]
            ; mov r14, [r15 + B_N]
            ; mov r8, [r15 + B_S]
            ; mov r9, [r15 + B_MASK]
            ; mov rbx, [r15 + B_ACC]
            ; mov r12, [r15 + B_M]
            ; mov r13, [r15 + B_L]
            ; =>pair_loop
            ; cmp r10, 2
            ; jl =>single
            // Row B's pointers: one row further.
            ; mov rax, [r15 + B_LDS]
            ; lea rsi, [r8 + rax * 4]
            ; mov rbp, r9
            ; add rbp, [r15 + B_MROW]
            ; mov rax, [r15 + B_LDACC]
            ; lea rdi, [rbx + rax * 4]
        );
        self.rows(&[ROW_A, ROW_B])?;
        dynasm!(self.a.ops()
            ; .arch x64
            ; mov rax, [r15 + B_LDS]
            ; lea r8, [r8 + rax * 8]
            ; mov rax, [r15 + B_LDACC]
            ; lea rbx, [rbx + rax * 8]
            ; mov rax, [r15 + B_MROW]
            ; lea r9, [r9 + rax * 2]
            ; add r12, 8
            ; add r13, 8
            ; sub r10, 2
            ; jmp =>pair_loop
            ; =>single
            ; test r10, r10
            ; jle =>end
        );
        self.rows(&[ROW_A])?;
        dynasm!(self.a.ops()
            ; .arch x64
            ; =>end
            ; add rsp, 32
        );
        self.a.epilogue(&frame);
        Ok(())
    }
}

/// The attention functions read constants through `rdx` and emit code for one ISA.
fn check_asm(a: &VecAsm, isa: Isa) -> Result<(), X64Error> {
    if a.consts_gpr() != Gpr::Rdx || a.isa() != isa {
        return Err(X64Error::BadRegister {
            op: "attention softmax".into(),
            reason: format!(
                "needs an assembler for {isa} with constants through rdx, got {} through {}",
                a.isa(),
                a.consts_gpr().name()
            ),
        });
    }
    Ok(())
}

/// Registers of the finish kernel.
const X: VReg = VReg(1);
const ONE: VReg = VReg(2);
const LV: VReg = VReg(11);

/// The finish function: `out[r][:] = acc[r][:] / l[r]` (`rdi` = `*const
/// AttnFinishArgs`, ends in `ret`), emitted at the current offset of `a` (constants
/// through `rdx`).
///
/// Registers: `rdi` args, `rdx` consts, `r8` acc row, `r9` out row, `r10` rows left,
/// `r11` column, `rsi` `&l[r]`, `rax` counts.
pub(crate) fn emit_finish_fn(a: &mut VecAsm) -> Result<(), X64Error> {
    let isa = a.isa();
    check_asm(a, isa)?;
    let frame = a.prologue(&[]);
    let lanes = isa.lanes() as i32;
    let (row_loop, end) = (a.new_label(), a.new_label());
    dynasm!(a.ops()
        ; .arch x64
        ; mov r10, [rdi + F_ROWS]
        ; test r10, r10
        ; jle =>end
        ; mov r8, [rdi + F_ACC]
        ; mov r9, [rdi + F_OUT]
        ; mov rsi, [rdi + F_L]
        ; =>row_loop
    );
    // One division per row, then multiplies: `vdivps` per vector made the finish
    // ~3.5 % of the whole attention at S = 64. `acc * (1/l)` is within an ULP of
    // `acc / l`; l = 0 (a fully masked row) still gives 0 * inf = NaN.
    a.broadcast_load(LV, Mem::new(Gpr::Rsi, 0))?;
    a.mov_internal(ONE, Opnd::F(1.0))?;
    a.v3(V3::Div, LV, ONE, LV)?;
    let (lp, tail, done) = (a.new_label(), a.new_label(), a.new_label());
    dynasm!(a.ops()
        ; .arch x64
        ; mov rax, [rdi + F_DV]
        ; xor r11d, r11d
        ; sub rax, lanes
        ; jl =>tail
        ; =>lp
    );
    a.load(X, Mem::indexed(Gpr::R8, Gpr::R11, 4, 0))?;
    a.v3(V3::Mul, X, X, LV)?;
    a.store(Mem::indexed(Gpr::R9, Gpr::R11, 4, 0), X)?;
    dynasm!(a.ops()
        ; .arch x64
        ; add r11, lanes
        ; cmp r11, rax
        ; jle =>lp
        ; =>tail
        ; add rax, lanes
        ; sub rax, r11
        ; jle =>done
    );
    a.set_tail_mask(Gpr::Rax)?;
    a.load_tail(X, Mem::indexed(Gpr::R8, Gpr::R11, 4, 0))?;
    a.v3(V3::Mul, X, X, LV)?;
    a.store_tail(Mem::indexed(Gpr::R9, Gpr::R11, 4, 0), X)?;
    a.bind(done);
    dynasm!(a.ops()
        ; .arch x64
        ; mov rax, [rdi + F_LDACC]
        ; lea r8, [r8 + rax * 4]
        ; mov rax, [rdi + F_LDO]
        ; lea r9, [r9 + rax * 4]
        ; add rsi, 4
        ; dec r10
        ; jnz =>row_loop
        ; =>end
    );
    a.epilogue(&frame);
    Ok(())
}
