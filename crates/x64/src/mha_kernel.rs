//! [`MhaFused`]: one JIT kernel that runs the whole flash-attention loop of one work
//! item (a block of Q rows of one head): ONE code buffer, ONE entry point.
//!
//! # What the entry point runs
//! ```text
//! if pack: kbuf = pack(K^T of the head)               packer subroutine
//! for n0 in (0..L).step_by(n_blk):  n = min(n_blk, L - n0)
//!     scores[rows × n]  = Q[rows × D] · K[n0..n0+n]^T    brgemm subroutine (the P·V one),
//!                                                       once per packed K panel
//!     scores = p = exp(mask(scale(scores)) - m); m, l running; acc *= alpha
//!                                                       online-softmax block subroutine
//!     acc[rows × Dv] (+)= scores · V[n0..n0+n]           brgemm subroutine (RowMajor)
//! out[rows × Dv] = acc / l                              finish subroutine
//! ```
//! With a single block (L <= n_blk) the P·V brgemm writes `out` directly, its rows
//! scaled by `1/l` ([`BrgemmArgs::row_scale`]), and there is no finish pass.
//! The subroutines are the functions the standalone [`crate::Brgemm`], [`crate::BPacker`]
//! and [`crate::OnlineSoftmax`] kernels are made of (`emit_brgemm_fn`, `emit_pack_fn`,
//! `emit_block_fn`, `emit_finish_fn`), emitted into the same buffer behind the loop
//! and reached with `call`/`ret`; the loop builds their argument blocks in its own
//! stack frame. No Rust runs between the steps.
//!
//! # Packed K
//! `kbuf` holds K^T of the whole head in the brgemm's panel layout
//! ([`crate::BLayout::Packed`]: panel `p` of [`MhaFused::n_block`] columns is a
//! contiguous `D × n_block` block at float offset `p · D · n_block`). The item with
//! [`MhaFusedArgs::pack`] set writes it; the following items of the same head clear
//! the flag and read it, so K is repacked once per head and thread instead of once per
//! row block and column block. The column block `n0` starts at float `n0 · D` of
//! `kbuf`, which needs `n_blk` to be a multiple of `n_block()`.
//!
//! A packed panel is a `D × n_block` row-major block, so the row-major brgemm (P·V's)
//! computes Q·K^T on it with `ldb = n_block`, one call per panel: one brgemm function
//! in the buffer instead of two (the brgemm is most of the compile time; a call per
//! 64 columns costs ~20 cycles against ~1700 cycles of FMAs per 48-row panel).
//!
//! Reading K in place instead (the transposed brgemm repacking each panel per call,
//! no `kbuf`) was measured and never won: equal at S = 16, 3–6 % slower from S = 64 on
//! (docs/mha.md), so there is no such path.
//!
//! # Register roles (the loop; the subroutines keep SysV callee-saved registers)
//! | register | role |
//! |---|---|
//! | `r15` | `*const MhaFusedArgs` |
//! | `r12` | `n0`, the first score column of the block |
//! | `r13` | `n`, the columns of the block |
//! | `r14` | column of the packed panel within the block (Q·K^T on packed K) |
//! | `rdi` | argument block of the subroutine being called (`rsp + slot`) |
//! | `rax`, `rcx`, `r8` | temporaries |
//! | `[rsp + 0..96]` | `BrgemmArgs` of Q·K^T (first the packer's) |
//! | `[rsp + 96..192]` | `BrgemmArgs` of P·V |
//! | `[rsp + 192..296]` | `SoftmaxBlockArgs` |
//! | `[rsp + 296..352]` | `AttnFinishArgs` |

// dynasm!'s dynamic register arguments expand to `.into()` calls.
#![allow(clippy::useless_conversion)]

use std::mem::{offset_of, size_of};

use dynasmrt::{DynasmApi, DynasmLabelApi, dynasm};
use iced_x86::{Code, Instruction, MemoryOperand, Register};

use crate::asm::Opnd;
use crate::attn::{emit_block_fn, emit_finish_fn};
use crate::brgemm::{emit_brgemm_fn, emit_pack_fn};
use crate::{
    AttnFinishArgs, AttnMask, AttnScale, BLayout, Blocking, BrgemmArgs, Gpr, Isa, Kernel, MaskRef,
    OnlineSoftmaxOptions, SoftmaxBlockArgs, VReg, VecAsm, X64Error,
};

/// How K arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KLayout {
    /// K as `[L, D]` rows (row stride `ldk >= D`): the brgemm's B^T
    /// ([`BLayout::Transposed`]).
    Transposed,
    /// K^T as `[D, L]` rows (row stride `ldk >= L`): the brgemm's row-major B.
    RowMajor,
}

impl KLayout {
    fn b_layout(self) -> BLayout {
        match self {
            KLayout::Transposed => BLayout::Transposed,
            KLayout::RowMajor => BLayout::RowMajor,
        }
    }
}

/// Compile-time options of an [`MhaFused`] kernel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MhaFusedOptions {
    pub isa: Isa,
    pub k_layout: KLayout,
    /// Applied to every score first, if any.
    pub scale: Option<AttnScale>,
    pub mask: AttnMask,
    /// Brgemm register blocking; `None` takes [`Blocking::default_for`].
    pub blocking: Option<Blocking>,
}

impl MhaFusedOptions {
    /// Options with the default blocking.
    pub fn new(
        isa: Isa,
        k_layout: KLayout,
        scale: Option<AttnScale>,
        mask: AttnMask,
    ) -> MhaFusedOptions {
        MhaFusedOptions {
            isa,
            k_layout,
            scale,
            mask,
            blocking: None,
        }
    }
}

/// The argument block of one work item: rows `0..rows` of Q against the head's K and V.
/// Strides are in elements unless named bytes. The caller (the runtime) fills every
/// field; the kernel only reads it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MhaFusedArgs {
    /// The item's first Q row (`rows × D`, row stride `ldq`).
    pub q: *const f32,
    /// The head's K: `[L, D]` rows ([`KLayout::Transposed`]) or K^T `[D, L]`
    /// ([`KLayout::RowMajor`]), row stride `ldk`. Read only when `pack` is set.
    pub k: *const f32,
    /// The head's V (`L × Dv`, row stride `ldv`).
    pub v: *const f32,
    /// Mask element of (the item's row 0, column 0); null without a mask. f32 for an
    /// additive mask, 0/1 bytes for a boolean one.
    pub mask: *const u8,
    /// The item's first output row (`rows × Dv`, row stride `ldo`).
    pub out: *mut f32,
    pub rows: i64,
    /// Keys (score columns).
    pub l: i64,
    /// Head size of Q and K.
    pub d: i64,
    /// Head size of V and the output.
    pub dv: i64,
    /// Score columns per block (a positive multiple of [`MhaFused::n_block`]).
    pub n_blk: i64,
    pub ldq: i64,
    pub ldk: i64,
    pub ldv: i64,
    pub ldo: i64,
    /// Bytes between the mask rows of consecutive Q rows (0: one mask row for all).
    pub mask_row_stride: i64,
    /// Nonzero: one mask element per row, broadcast over the columns.
    pub mask_col_bcast: i64,
    /// Scratch: `rows × n_blk` scores (row stride `n_blk`).
    pub scores: *mut f32,
    /// Scratch: `rows × Dv` accumulator (row stride `Dv`).
    pub acc: *mut f32,
    /// Scratch: `rows` running maxima.
    pub m: *mut f32,
    /// Scratch: `rows` running sums.
    pub lsum: *mut f32,
    /// [`MhaFused::kbuf_len`] floats: the packed K of the head.
    pub kbuf: *mut f32,
    /// Nonzero: pack the head's K into `kbuf` first. Zero: `kbuf` already holds this
    /// head's packed K (same `k`, `l`, `d`, `ldk`).
    pub pack: i64,
}

macro_rules! off {
    ($t:ty, $f:ident) => {
        offset_of!($t, $f) as i32
    };
}

const A_Q: i32 = off!(MhaFusedArgs, q);
const A_K: i32 = off!(MhaFusedArgs, k);
const A_V: i32 = off!(MhaFusedArgs, v);
const A_MASK: i32 = off!(MhaFusedArgs, mask);
const A_OUT: i32 = off!(MhaFusedArgs, out);
const A_ROWS: i32 = off!(MhaFusedArgs, rows);
const A_L: i32 = off!(MhaFusedArgs, l);
const A_D: i32 = off!(MhaFusedArgs, d);
const A_DV: i32 = off!(MhaFusedArgs, dv);
const A_NBLK: i32 = off!(MhaFusedArgs, n_blk);
const A_LDQ: i32 = off!(MhaFusedArgs, ldq);
const A_LDK: i32 = off!(MhaFusedArgs, ldk);
const A_LDV: i32 = off!(MhaFusedArgs, ldv);
const A_LDO: i32 = off!(MhaFusedArgs, ldo);
const A_MROW: i32 = off!(MhaFusedArgs, mask_row_stride);
const A_MBC: i32 = off!(MhaFusedArgs, mask_col_bcast);
const A_SCORES: i32 = off!(MhaFusedArgs, scores);
const A_ACC: i32 = off!(MhaFusedArgs, acc);
const A_M: i32 = off!(MhaFusedArgs, m);
const A_LSUM: i32 = off!(MhaFusedArgs, lsum);
const A_KBUF: i32 = off!(MhaFusedArgs, kbuf);
const A_PACK: i32 = off!(MhaFusedArgs, pack);

const _: () = {
    assert!(size_of::<MhaFusedArgs>() == 176);
    assert!(A_Q == 0 && A_K == 8 && A_V == 16 && A_MASK == 24 && A_OUT == 32);
    assert!(A_ROWS == 40 && A_L == 48 && A_D == 56 && A_DV == 64 && A_NBLK == 72);
    assert!(A_LDQ == 80 && A_LDK == 88 && A_LDV == 96 && A_LDO == 104);
    assert!(A_MROW == 112 && A_MBC == 120 && A_SCORES == 128 && A_ACC == 136);
    assert!(A_M == 144 && A_LSUM == 152 && A_KBUF == 160 && A_PACK == 168);
};

// Subroutine argument blocks in the loop's stack frame (bytes from rsp).
const S_QK: i32 = 0;
const S_PV: i32 = S_QK + size_of::<BrgemmArgs>() as i32;
const S_SM: i32 = S_PV + size_of::<BrgemmArgs>() as i32;
const S_FIN: i32 = S_SM + size_of::<SoftmaxBlockArgs>() as i32;
/// Frame size: the four blocks, rounded so that `rsp` is 16-byte aligned at every
/// `call` (entry `rsp ≡ 8 mod 16`, six pushes, then this).
const FRAME: i32 = (S_FIN + size_of::<AttnFinishArgs>() as i32 + 15) / 16 * 16 + 8;

const _: () = {
    assert!(S_PV == 96 && S_SM == 192 && S_FIN == 296 && FRAME == 360);
};

macro_rules! bo {
    ($f:ident) => {
        offset_of!(BrgemmArgs, $f) as i32
    };
}
macro_rules! so {
    ($f:ident) => {
        offset_of!(SoftmaxBlockArgs, $f) as i32
    };
}
macro_rules! fo {
    ($f:ident) => {
        offset_of!(AttnFinishArgs, $f) as i32
    };
}

type FusedFn = unsafe extern "sysv64" fn(args: *const MhaFusedArgs);

/// Copies fields of the item's arguments (`r15`) into the subroutines' argument
/// blocks in the loop's frame: per entry, `rax = [r15 + src]`, then `[rsp + dst] =
/// rax` for each destination.
fn copy_fields(a: &mut VecAsm, moves: &[(i32, &[i32])]) {
    for &(src, dsts) in moves {
        dynasm!(a.ops() ; .arch x64 ; mov rax, [r15 + src]);
        for &dst in dsts {
            dynasm!(a.ops() ; .arch x64 ; mov [rsp + dst], rax);
        }
    }
}

/// The compiled fused attention kernel. `Send + Sync`: the code is read-only and keeps
/// no state; each thread brings its own scratch.
#[derive(Debug)]
pub struct MhaFused {
    kernel: Kernel,
    opts: MhaFusedOptions,
    blocking: Blocking,
}

/// The scratch buffers of one [`MhaFused::run`] call.
#[derive(Debug)]
pub struct MhaScratch<'a> {
    /// `rows × n_blk` floats.
    pub scores: &'a mut [f32],
    /// `rows × Dv` floats.
    pub acc: &'a mut [f32],
    /// `rows` floats.
    pub m: &'a mut [f32],
    /// `rows` floats.
    pub lsum: &'a mut [f32],
    /// [`MhaFused::kbuf_len`] floats.
    pub kbuf: &'a mut [f32],
}

/// One checked call of [`MhaFused::run`]: sizes and leading dimensions (elements).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MhaItemShape {
    pub rows: usize,
    pub l: usize,
    pub d: usize,
    pub dv: usize,
    pub n_blk: usize,
    pub ldq: usize,
    pub ldk: usize,
    pub ldv: usize,
    pub ldo: usize,
}

impl MhaFused {
    /// Compiles the kernel: the loop, then its subroutines, in one buffer. Encoding does
    /// not need the CPU to support the ISA; running does.
    pub fn compile(opts: MhaFusedOptions) -> Result<MhaFused, X64Error> {
        let isa = opts.isa;
        let blocking = opts.blocking.unwrap_or_else(|| Blocking::default_for(isa));
        blocking.validate(isa)?;
        let mut a = VecAsm::new(isa, Gpr::Rdx)?;
        let pack_fn = a.new_label();
        let block_fn = a.new_label();
        let pv_fn = a.new_label();
        let finish_fn = a.new_label();
        // Q·K^T runs on the P·V brgemm's code (packed panels are row-major blocks).
        let qk_fn = pv_fn;
        let nb = (blocking.nr * isa.lanes()) as i32;
        // log2 of the mask element size.
        let mask_shift: i8 = match opts.mask {
            AttnMask::Boolean { .. } => 0,
            _ => 2,
        };

        // ----- the loop -----
        let frame = a.prologue(&[Gpr::Rbx, Gpr::Rbp, Gpr::R12, Gpr::R13, Gpr::R14, Gpr::R15]);
        let (exit, n_loop) = (a.new_label(), a.new_label());
        dynasm!(a.ops()
            ; .arch x64
            ; sub rsp, FRAME
            ; mov r15, rdi
            ; cmp QWORD [r15 + A_ROWS], 0
            ; jle =>exit
            ; cmp QWORD [r15 + A_L], 0
            ; jle =>exit
            ; cmp QWORD [r15 + A_NBLK], 0
            ; jle =>exit
        );
        {
            let packed = a.new_label();
            dynasm!(a.ops()
                ; .arch x64
                ; cmp QWORD [r15 + A_PACK], 0
                ; je =>packed
            );
            copy_fields(
                &mut a,
                &[
                    (A_K, &[S_QK + bo!(b)]),
                    (A_L, &[S_QK + bo!(n)]),
                    (A_D, &[S_QK + bo!(k)]),
                    (A_LDK, &[S_QK + bo!(ldb)]),
                    (A_KBUF, &[S_QK + bo!(scratch)]),
                ],
            );
            dynasm!(a.ops()
                ; .arch x64
                ; lea rdi, [rsp + S_QK]
                ; call =>pack_fn
                ; =>packed
            );
        }
        // Fields that stay the same for every column block: Q·K^T computes
        // scores[rows × n] = Q · K^T, the softmax block works on the scores in place,
        // P·V computes acc (+)= P · V, the finish writes out = acc / l.
        copy_fields(
            &mut a,
            &[
                (A_Q, &[S_QK + bo!(a)]),
                (A_SCORES, &[S_QK + bo!(c), S_SM + so!(s), S_PV + bo!(a)]),
                (A_KBUF, &[S_QK + bo!(scratch)]),
                (
                    A_ROWS,
                    &[
                        S_QK + bo!(m),
                        S_SM + so!(rows),
                        S_PV + bo!(m),
                        S_FIN + fo!(rows),
                    ],
                ),
                (A_D, &[S_QK + bo!(k)]),
                (A_LDQ, &[S_QK + bo!(lda)]),
                (A_NBLK, &[S_QK + bo!(ldc), S_SM + so!(lds), S_PV + bo!(lda)]),
                (A_M, &[S_SM + so!(m)]),
                (A_LSUM, &[S_SM + so!(l), S_FIN + fo!(l)]),
                (A_ACC, &[S_SM + so!(acc), S_PV + bo!(c), S_FIN + fo!(acc)]),
                (
                    A_DV,
                    &[
                        S_SM + so!(ldacc),
                        S_SM + so!(dv),
                        S_PV + bo!(n),
                        S_PV + bo!(ldc),
                        S_FIN + fo!(ldacc),
                        S_FIN + fo!(dv),
                    ],
                ),
                (A_MROW, &[S_SM + so!(mask_row_stride)]),
                (A_MBC, &[S_SM + so!(mask_col_bcast)]),
                (A_LDV, &[S_PV + bo!(ldb)]),
                (A_OUT, &[S_FIN + fo!(out)]),
                (A_LDO, &[S_FIN + fo!(ldo)]),
            ],
        );
        dynasm!(a.ops()
            ; .arch x64
            ; mov QWORD [rsp + S_QK + bo!(accumulate)], 0
            ; mov QWORD [rsp + S_QK + bo!(row_scale)], 0
            ; mov QWORD [rsp + S_PV + bo!(row_scale)], 0
            ; mov QWORD [rsp + S_PV + bo!(scratch)], 0
            ; xor r12d, r12d
        );
        // Q·K^T reads each packed panel as a row-major B of nb columns.
        dynasm!(a.ops() ; .arch x64 ; mov QWORD [rsp + S_QK + bo!(ldb)], nb);
        dynasm!(a.ops()
            ; .arch x64
            ; =>n_loop
            // n = min(n_blk, L - n0)
            ; mov r13, [r15 + A_L]
            ; sub r13, r12
            ; cmp r13, [r15 + A_NBLK]
            ; cmovg r13, [r15 + A_NBLK]
        );
        // Q·K^T of the block: one call per packed panel (n0 is panel-aligned: panel j
        // of the block starts at float (n0 + j) * D of kbuf), each read as a row-major
        // B of `nb` columns with ldb = nb.
        let panel = a.new_label();
        dynasm!(a.ops()
            ; .arch x64
            ; xor r14d, r14d
            ; =>panel
            ; mov rax, r13
            ; sub rax, r14
            ; mov ecx, nb
            ; cmp rax, rcx
            ; cmovg rax, rcx
            ; mov [rsp + S_QK + bo!(n)], rax
            ; mov rax, r12
            ; add rax, r14
            ; imul rax, [r15 + A_D]
            ; shl rax, 2
            ; add rax, [r15 + A_KBUF]
            ; mov [rsp + S_QK + bo!(b)], rax
            ; mov rax, [r15 + A_SCORES]
            ; lea rax, [rax + r14 * 4]
            ; mov [rsp + S_QK + bo!(c)], rax
            ; lea rdi, [rsp + S_QK]
            ; call =>qk_fn
            ; add r14, nb
            ; cmp r14, r13
            ; jl =>panel
        );
        dynasm!(a.ops()
            ; .arch x64
            ; mov [rsp + S_SM + so!(n)], r13
            // first = n0 == 0; P·V accumulates unless first.
            ; xor eax, eax
            ; test r12, r12
            ; sete al
            ; mov [rsp + S_SM + so!(first)], rax
            ; xor al, 1
            ; mov [rsp + S_PV + bo!(accumulate)], rax
        );
        if opts.mask != AttnMask::None {
            // mask + (col_bcast ? 0 : n0 * elem)
            dynasm!(a.ops()
                ; .arch x64
                ; mov rcx, r12
                ; shl rcx, mask_shift
                ; xor r8d, r8d
                ; cmp QWORD [r15 + A_MBC], 0
                ; cmovne rcx, r8
                ; add rcx, [r15 + A_MASK]
                ; mov [rsp + S_SM + so!(mask)], rcx
            );
        } else {
            dynasm!(a.ops() ; .arch x64 ; mov QWORD [rsp + S_SM + so!(mask)], 0);
        }
        dynasm!(a.ops()
            ; .arch x64
            ; lea rdi, [rsp + S_SM]
            ; call =>block_fn
            // V rows n0..
            ; mov rax, [r15 + A_LDV]
            ; imul rax, r12
            ; shl rax, 2
            ; add rax, [r15 + A_V]
            ; mov [rsp + S_PV + bo!(b)], rax
            ; mov [rsp + S_PV + bo!(k)], r13
        );
        // One block (n0 = 0 and n = L, every L up to n_blk): P·V writes the output
        // itself, each row scaled by 1/l, and the finish pass (a store and a reload
        // of the accumulator) is skipped.
        let several = a.new_label();
        dynasm!(a.ops()
            ; .arch x64
            ; test r12, r12
            ; jnz =>several
            ; cmp r13, [r15 + A_L]
            ; jl =>several
            ; mov rax, [r15 + A_LSUM]
            ; mov rcx, [r15 + A_ROWS]
        );
        {
            // l[r] = 1 / l[r] for every row (rows >= 1 was checked at entry).
            let recip = a.new_label();
            a.mov_internal(VReg(0), Opnd::F(1.0))?;
            a.bind(recip);
            a.enc(
                Instruction::with3(
                    Code::VEX_Vdivss_xmm_xmm_xmmm32,
                    Register::XMM1,
                    Register::XMM0,
                    MemoryOperand::with_base(Register::RAX),
                ),
                "vdivss",
            )?;
            a.enc(
                Instruction::with2(
                    Code::VEX_Vmovss_m32_xmm,
                    MemoryOperand::with_base(Register::RAX),
                    Register::XMM1,
                ),
                "vmovss",
            )?;
            dynasm!(a.ops()
                ; .arch x64
                ; add rax, 4
                ; dec rcx
                ; jnz =>recip
            );
        }
        copy_fields(
            &mut a,
            &[
                (A_OUT, &[S_PV + bo!(c)]),
                (A_LDO, &[S_PV + bo!(ldc)]),
                (A_LSUM, &[S_PV + bo!(row_scale)]),
            ],
        );
        dynasm!(a.ops()
            ; .arch x64
            ; lea rdi, [rsp + S_PV]
            ; call =>pv_fn
            ; jmp =>exit
            ; =>several
            ; lea rdi, [rsp + S_PV]
            ; call =>pv_fn
            ; add r12, r13
            ; cmp r12, [r15 + A_L]
            ; jl =>n_loop
            ; lea rdi, [rsp + S_FIN]
            ; call =>finish_fn
            ; =>exit
            ; add rsp, FRAME
        );
        a.epilogue(&frame);

        // ----- the subroutines -----
        // P·V, and Q·K^T on the packed panels.
        a.bind(pv_fn);
        emit_brgemm_fn(&mut a, BLayout::RowMajor, blocking)?;
        a.bind(pack_fn);
        emit_pack_fn(&mut a, opts.k_layout.b_layout(), blocking)?;
        a.bind(block_fn);
        emit_block_fn(
            &mut a,
            OnlineSoftmaxOptions {
                isa,
                scale: opts.scale,
                mask: opts.mask,
            },
        )?;
        a.bind(finish_fn);
        emit_finish_fn(&mut a)?;
        Ok(MhaFused {
            kernel: a.finalize()?,
            opts,
            blocking,
        })
    }

    /// The options it was compiled with.
    pub fn options(&self) -> MhaFusedOptions {
        self.opts
    }

    /// The brgemm blocking in effect.
    pub fn blocking(&self) -> Blocking {
        self.blocking
    }

    /// The kernel: the whole loop and its subroutines (for disassembly).
    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    /// Columns per packed K panel (`n_blk` must be a multiple of it).
    pub fn n_block(&self) -> usize {
        self.blocking.nr * self.opts.isa.lanes()
    }

    /// Floats of [`MhaFusedArgs::kbuf`] for a head of `l` keys of size `d`: the packed
    /// K, `ceil(l / n_block) · n_block · d`. Saturates.
    pub fn kbuf_len(&self, l: usize, d: usize) -> usize {
        let nb = self.n_block();
        l.div_ceil(nb).saturating_mul(nb).saturating_mul(d)
    }

    /// Runs the kernel on raw pointers: one work item.
    ///
    /// # Safety
    /// The CPU supports the ISA. With `rows, l, n_blk >= 1` (else the call does
    /// nothing): Q is readable at `(rows-1)*ldq + d` floats; K at `(l-1)*ldk + d`
    /// (transposed) or `(d-1)*ldk + l` (row-major) floats when it is read (see
    /// [`MhaFusedArgs::k`]); V at `(l-1)*ldv + dv`; with a mask, every element of the
    /// rows × l (or rows × 1 with `mask_col_bcast`) block at `mask`, row stride
    /// `mask_row_stride` bytes, is readable; `out` is writable at `(rows-1)*ldo + dv`;
    /// the scratch buffers have the sizes [`MhaFusedArgs`] names, are private to the
    /// caller and alias nothing else; `n_blk` is a multiple of
    /// [`MhaFused::n_block`]; with `pack == 0` `kbuf` holds this K packed by an
    /// earlier call with the same `k, l, d, ldk`. `ldk * (n_block() - 1)`, `ldq`,
    /// `ldv`, `ldo` and `n_blk` times 4 fit in an i32 (the brgemms' offsets).
    pub unsafe fn call(&self, args: &MhaFusedArgs) {
        // SAFETY: the entry point has the FusedFn ABI (emitted by `compile`), the kernel
        // outlives the call; the caller vouches for the pointers.
        unsafe {
            let f: FusedFn = std::mem::transmute(self.kernel.entry_ptr());
            f(args);
        }
    }

    /// Checks every extent against the slices and runs one work item. `k` is `[L, D]`
    /// or K^T `[D, L]` by the compiled layout; `mask` gives the item's mask rows
    /// starting at (row 0, column 0). `pack`: pack K into `scratch.kbuf` first (with
    /// `pack == false`, `kbuf` is trusted to hold this K's packing from an earlier
    /// call; its contents are never a memory-safety matter). Errors, never panics.
    pub fn run(
        &self,
        (q, k, v): (&[f32], &[f32], &[f32]),
        mask: MaskRef<'_>,
        out: &mut [f32],
        s: MhaItemShape,
        scratch: MhaScratch<'_>,
        pack: bool,
    ) -> Result<(), X64Error> {
        let isa = self.opts.isa;
        if !isa.is_supported() {
            return Err(X64Error::IsaUnsupported { isa });
        }
        let err = |why: String| {
            X64Error::Args(format!(
                "mha item rows={} L={} D={} Dv={}: {why}",
                s.rows, s.l, s.d, s.dv
            ))
        };
        if s.rows == 0 || s.l == 0 {
            return Ok(());
        }
        if s.n_blk == 0 || !s.n_blk.is_multiple_of(self.n_block()) {
            return Err(err(format!(
                "n_blk = {} must be a positive multiple of {}",
                s.n_blk,
                self.n_block()
            )));
        }
        let need = |rows: usize, cols: usize, ld: usize| -> Result<usize, X64Error> {
            if ld < cols {
                return Err(err(format!("a row stride {ld} is below its row {cols}")));
            }
            if rows == 0 || cols == 0 {
                return Ok(0);
            }
            (rows - 1)
                .checked_mul(ld)
                .and_then(|x| x.checked_add(cols))
                .ok_or_else(|| err("extent overflows".into()))
        };
        let (kr, kc) = match self.opts.k_layout {
            KLayout::Transposed => (s.l, s.d),
            KLayout::RowMajor => (s.d, s.l),
        };
        let short = |what: &str| err(format!("{what} is too short"));
        if q.len() < need(s.rows, s.d, s.ldq)? {
            return Err(short("Q"));
        }
        if k.len() < need(kr, kc, s.ldk)? {
            return Err(short("K"));
        }
        if v.len() < need(s.l, s.dv, s.ldv)? {
            return Err(short("V"));
        }
        if out.len() < need(s.rows, s.dv, s.ldo)? {
            return Err(short("out"));
        }
        // The kernel's score rows are n_blk apart whatever the block width.
        if scratch.scores.len() < need(s.rows, s.n_blk.min(s.l), s.n_blk)? {
            return Err(short("scores scratch"));
        }
        if scratch.acc.len() < s.rows.saturating_mul(s.dv)
            || scratch.m.len() < s.rows
            || scratch.lsum.len() < s.rows
        {
            return Err(short("acc, m or lsum scratch"));
        }
        if scratch.kbuf.len() < self.kbuf_len(s.l, s.d) {
            return Err(short("kbuf"));
        }
        let fits = |x: usize| x <= (i32::MAX as usize) / 4;
        if ![s.ldq, s.ldv, s.ldo, s.n_blk, s.dv, s.d]
            .into_iter()
            .all(fits)
            || !fits(s.ldk.saturating_mul(self.n_block()))
            || !fits(s.l)
        {
            return Err(err("sizes exceed the kernel's 32-bit offsets".into()));
        }
        let (mptr, mrow, bcast) = match (mask, self.opts.mask) {
            (MaskRef::None, AttnMask::None) => (std::ptr::null(), 0, false),
            (
                MaskRef::F32 {
                    data,
                    row_stride,
                    col_bcast,
                },
                AttnMask::Additive,
            ) => {
                if data.len() < mask_need(s.rows, s.l, row_stride, col_bcast) {
                    return Err(short("mask"));
                }
                (data.as_ptr().cast::<u8>(), row_stride * 4, col_bcast)
            }
            (
                MaskRef::Bool {
                    data,
                    row_stride,
                    col_bcast,
                },
                AttnMask::Boolean { .. },
            ) => {
                if data.len() < mask_need(s.rows, s.l, row_stride, col_bcast) {
                    return Err(short("mask"));
                }
                (data.as_ptr().cast::<u8>(), row_stride, col_bcast)
            }
            _ => return Err(err("the mask does not match the compiled mask kind".into())),
        };
        let args = MhaFusedArgs {
            q: q.as_ptr(),
            k: k.as_ptr(),
            v: v.as_ptr(),
            mask: mptr,
            out: out.as_mut_ptr(),
            rows: s.rows as i64,
            l: s.l as i64,
            d: s.d as i64,
            dv: s.dv as i64,
            n_blk: s.n_blk as i64,
            ldq: s.ldq as i64,
            ldk: s.ldk as i64,
            ldv: s.ldv as i64,
            ldo: s.ldo as i64,
            mask_row_stride: mrow as i64,
            mask_col_bcast: i64::from(bcast),
            scores: scratch.scores.as_mut_ptr(),
            acc: scratch.acc.as_mut_ptr(),
            m: scratch.m.as_mut_ptr(),
            lsum: scratch.lsum.as_mut_ptr(),
            kbuf: scratch.kbuf.as_mut_ptr(),
            pack: i64::from(pack),
        };
        // SAFETY: the ISA is supported and every extent was checked above; the
        // exclusive borrows keep the scratch private and unaliased.
        unsafe { self.call(&args) };
        Ok(())
    }
}

/// Mask elements a `rows × l` block reads (`row_stride` elements apart, 0: one row for
/// all; one column with `col_bcast`); `usize::MAX` if that overflows.
fn mask_need(rows: usize, l: usize, row_stride: usize, col_bcast: bool) -> usize {
    let cols = if col_bcast { 1 } else { l };
    (rows - 1)
        .checked_mul(row_stride)
        .and_then(|x| x.checked_add(cols))
        .unwrap_or(usize::MAX)
}
