//! [`VecAsm`]: an ISA-agnostic vector assembler over dynasm-rs.
//!
//! # How code is produced
//! - Control flow, labels and general-purpose code go through the inner
//!   [`dynasmrt::VecAssembler`] ([`VecAsm::ops`]), with the `dynasm!` macro:
//!   `dynasm!(asm.ops() ; .arch x64 ; add Rq(ptr.num()), 64)`.
//! - Every vector instruction (VEX on AVX2 and EVEX on AVX-512) is encoded by iced-x86 at
//!   ip 0 and appended to the same byte stream. Only position-independent forms are
//!   used (register operands, `[base + disp]`, `[base + index*scale + disp]`; never
//!   RIP-relative), so the bytes are valid wherever they land, and dynasm labels and
//!   relocations around them keep working. Encoding AVX2 with iced too (rather than
//!   dynasm's own VEX tables) gives one encoder for all vector code, whose every form
//!   is checked by a decode-back test; dynasm 5.1 mis-encodes at least
//!   `vbroadcastss ymm, m32` (it emits the xmm form).
//!
//! # Constant pool
//! Constants (f32 splats, integer splats, tables) are collected while code is emitted
//! and laid out after the code, 64-byte aligned, when [`VecAsm::finalize`] runs. The
//! code reaches them through a GPR the caller dedicates to that ([`VecAsm::new`]),
//! loaded once with `lea reg, [rip -> pool]` by [`VecAsm::load_consts_base`]; vector
//! instructions then address constants as `[reg + offset]`. Identical constants are
//! stored once.
//!
//! # Tails
//! [`VecAsm::set_tail_mask`] turns an element count (a GPR holding 0..=lanes) into a
//! lane mask: `k1` on AVX-512 (`kmovw k1, [pool + count*2]` from a 17-entry table of
//! `(1 << c) - 1`), `ymm15` on AVX2 (`vmovd`, `vpbroadcastd`, `vpcmpgtd` against
//! `[0, 1, .., 7]`). Neither clobbers the count register or the flags. Masked loads
//! ([`VecAsm::load_tail`]) give zeros in inactive lanes and masked stores
//! ([`VecAsm::store_tail`]) never touch memory past the count: both ISAs suppress
//! faults on masked-out lanes.
//!
//! # Typed ports
//! [`VecAsm::load_typed`] / [`VecAsm::store_typed`] (and their `_tail_` and broadcast
//! forms) move u8, i8, bool, bf16 and f16 elements: loads widen to 32-bit lanes
//! (`vpmovzxbd`, `vpmovsxbd`, `vpmovzxwd` + shift, `vcvtph2ps`), stores narrow back
//! (`vpmovdb`/`vpmovdw` on AVX-512; `vpackusdw` + `vpermq` (+ `vpackuswb`) on AVX2;
//! `vcvtps2ph`). AVX-512 tails go through `k1`-masked `vmovdqu8`/`vmovdqu16`. AVX2 has
//! no masked byte or word moves: its tails copy `count` elements between the port and
//! a stack buffer with `rep movsb` (saving rcx, rsi, rdi), so no byte past the count is
//! read or written.

// dynasm!'s dynamic register arguments expand to `.into()` calls.
#![allow(clippy::useless_conversion)]

use std::collections::HashMap;

use dynasmrt::VecAssembler;
use dynasmrt::x64::X64Relocation;

/// The code buffer kernels are assembled into: plain memory until
/// [`VecAsm::finalize`] maps it executable in one go (one mapping and one `mprotect`
/// per kernel; each `mprotect`/`munmap` in a multi-threaded process costs TLB
/// shoot-down interrupts to the other CPUs, expensive on a VM).
type Assembler = VecAssembler<X64Relocation>;
use dynasmrt::{DynamicLabel, DynasmApi, DynasmLabelApi, dynasm};
use iced_x86::{Code, Encoder, Instruction, MemoryOperand, Register};
use snipjit_ir::DType;

use crate::{Isa, Kernel, X64Error};

/// A general-purpose register; the discriminant is the hardware (and dynasm `Rq(n)`)
/// number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Gpr {
    Rax = 0,
    Rcx = 1,
    Rdx = 2,
    Rbx = 3,
    Rsp = 4,
    Rbp = 5,
    Rsi = 6,
    Rdi = 7,
    R8 = 8,
    R9 = 9,
    R10 = 10,
    R11 = 11,
    R12 = 12,
    R13 = 13,
    R14 = 14,
    R15 = 15,
}

impl Gpr {
    /// All sixteen, in hardware order.
    pub const ALL: [Gpr; 16] = [
        Gpr::Rax,
        Gpr::Rcx,
        Gpr::Rdx,
        Gpr::Rbx,
        Gpr::Rsp,
        Gpr::Rbp,
        Gpr::Rsi,
        Gpr::Rdi,
        Gpr::R8,
        Gpr::R9,
        Gpr::R10,
        Gpr::R11,
        Gpr::R12,
        Gpr::R13,
        Gpr::R14,
        Gpr::R15,
    ];

    /// The SysV argument registers, in order.
    pub const SYSV_ARGS: [Gpr; 6] = [Gpr::Rdi, Gpr::Rsi, Gpr::Rdx, Gpr::Rcx, Gpr::R8, Gpr::R9];

    /// Hardware number, usable as `Rq(n)` in `dynasm!`.
    pub fn num(self) -> u8 {
        self as u8
    }

    /// True for registers the SysV ABI requires a callee to preserve
    /// (rbx, rbp, r12..r15; rsp is not a general register here).
    pub fn is_callee_saved(self) -> bool {
        matches!(
            self,
            Gpr::Rbx | Gpr::Rbp | Gpr::R12 | Gpr::R13 | Gpr::R14 | Gpr::R15
        )
    }

    /// Intel name of the 64-bit register.
    pub fn name(self) -> &'static str {
        [
            "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11",
            "r12", "r13", "r14", "r15",
        ][self as usize]
    }

    pub(crate) fn r64(self) -> Register {
        Register::RAX + u32::from(self.num())
    }

    pub(crate) fn r32(self) -> Register {
        Register::EAX + u32::from(self.num())
    }
}

/// A vector register: zmm0..31 on AVX-512, ymm0..15 on AVX2 (ymm15 is the AVX2 tail
/// mask and not allocatable).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VReg(pub u8);

/// A memory operand `[base + index*scale + disp]` (never RIP-relative).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mem {
    pub base: Gpr,
    /// Index register and scale (1, 2, 4 or 8).
    pub index: Option<(Gpr, u8)>,
    pub disp: i32,
}

impl Mem {
    /// `[base + disp]`.
    pub fn new(base: Gpr, disp: i32) -> Mem {
        Mem {
            base,
            index: None,
            disp,
        }
    }

    /// `[base + index*scale + disp]`.
    pub fn indexed(base: Gpr, index: Gpr, scale: u8, disp: i32) -> Mem {
        Mem {
            base,
            index: Some((index, scale)),
            disp,
        }
    }
}

/// A source operand of an internal vector instruction: a register, memory, or a
/// constant that lives in the pool (a splat of one 32-bit pattern).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Opnd {
    R(VReg),
    M(Mem),
    /// f32 splat from the constant pool.
    F(f32),
    /// 32-bit integer pattern splat from the constant pool.
    B(u32),
}

impl From<VReg> for Opnd {
    fn from(v: VReg) -> Opnd {
        Opnd::R(v)
    }
}

impl From<Mem> for Opnd {
    fn from(m: Mem) -> Opnd {
        Opnd::M(m)
    }
}

/// A lane condition inside an emitter: an opmask on AVX-512, a vector of all-ones /
/// all-zeros lanes on AVX2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cond {
    K(u8),
    V(VReg),
}

/// `vcmpps` predicates (quiet forms).
pub(crate) mod pred {
    pub const EQ_OQ: u8 = 0x00;
    pub const UNORD_Q: u8 = 0x03;
    pub const NEQ_UQ: u8 = 0x04;
    pub const NLT_UQ: u8 = 0x05;
    pub const ORD_Q: u8 = 0x07;
    pub const EQ_UQ: u8 = 0x08;
    pub const NEQ_OQ: u8 = 0x0C;
    pub const LT_OQ: u8 = 0x11;
    pub const LE_OQ: u8 = 0x12;
    pub const GE_OQ: u8 = 0x1D;
    pub const GT_OQ: u8 = 0x1E;
}

/// Rounding immediates of `vroundps` / `vrndscaleps` (with precision exceptions
/// suppressed).
pub(crate) mod round {
    pub const NEAREST: u8 = 8;
    pub const FLOOR: u8 = 9;
    pub const CEIL: u8 = 10;
    pub const TRUNC: u8 = 11;
}

/// Three-operand vector ops `dst = a op b` (FMA forms follow Intel's 213/231 naming:
/// 213: `dst = a*dst + b` with dst as first factor, 231: `dst = a*b + dst`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum V3 {
    Add,
    Sub,
    Mul,
    Div,
    Min,
    Max,
    And,
    AndN,
    Or,
    Xor,
    PAddD,
    PSubD,
    /// `dst = dst*a + b`.
    Fmadd213,
    /// `dst = dst*b + a`.
    Fmadd132,
    /// `dst = a*b + dst`.
    Fmadd231,
    /// `dst = -(a*b) + dst`.
    Fnmadd231,
    /// `dst = dst*a - b`.
    Fmsub213,
    /// AVX-512 only: `dst = a * 2^floor(b)`.
    Scalef,
}

impl V3 {
    fn code(self, isa: Isa) -> Option<Code> {
        use Code as C;
        Some(match (self, isa) {
            (V3::Add, Isa::Avx2) => C::VEX_Vaddps_ymm_ymm_ymmm256,
            (V3::Add, Isa::Avx512) => C::EVEX_Vaddps_zmm_k1z_zmm_zmmm512b32_er,
            (V3::Sub, Isa::Avx2) => C::VEX_Vsubps_ymm_ymm_ymmm256,
            (V3::Sub, Isa::Avx512) => C::EVEX_Vsubps_zmm_k1z_zmm_zmmm512b32_er,
            (V3::Mul, Isa::Avx2) => C::VEX_Vmulps_ymm_ymm_ymmm256,
            (V3::Mul, Isa::Avx512) => C::EVEX_Vmulps_zmm_k1z_zmm_zmmm512b32_er,
            (V3::Div, Isa::Avx2) => C::VEX_Vdivps_ymm_ymm_ymmm256,
            (V3::Div, Isa::Avx512) => C::EVEX_Vdivps_zmm_k1z_zmm_zmmm512b32_er,
            (V3::Min, Isa::Avx2) => C::VEX_Vminps_ymm_ymm_ymmm256,
            (V3::Min, Isa::Avx512) => C::EVEX_Vminps_zmm_k1z_zmm_zmmm512b32_sae,
            (V3::Max, Isa::Avx2) => C::VEX_Vmaxps_ymm_ymm_ymmm256,
            (V3::Max, Isa::Avx512) => C::EVEX_Vmaxps_zmm_k1z_zmm_zmmm512b32_sae,
            (V3::And, Isa::Avx2) => C::VEX_Vandps_ymm_ymm_ymmm256,
            (V3::And, Isa::Avx512) => C::EVEX_Vandps_zmm_k1z_zmm_zmmm512b32,
            (V3::AndN, Isa::Avx2) => C::VEX_Vandnps_ymm_ymm_ymmm256,
            (V3::AndN, Isa::Avx512) => C::EVEX_Vandnps_zmm_k1z_zmm_zmmm512b32,
            (V3::Or, Isa::Avx2) => C::VEX_Vorps_ymm_ymm_ymmm256,
            (V3::Or, Isa::Avx512) => C::EVEX_Vorps_zmm_k1z_zmm_zmmm512b32,
            (V3::Xor, Isa::Avx2) => C::VEX_Vxorps_ymm_ymm_ymmm256,
            (V3::Xor, Isa::Avx512) => C::EVEX_Vxorps_zmm_k1z_zmm_zmmm512b32,
            (V3::PAddD, Isa::Avx2) => C::VEX_Vpaddd_ymm_ymm_ymmm256,
            (V3::PAddD, Isa::Avx512) => C::EVEX_Vpaddd_zmm_k1z_zmm_zmmm512b32,
            (V3::PSubD, Isa::Avx2) => C::VEX_Vpsubd_ymm_ymm_ymmm256,
            (V3::PSubD, Isa::Avx512) => C::EVEX_Vpsubd_zmm_k1z_zmm_zmmm512b32,
            (V3::Fmadd213, Isa::Avx2) => C::VEX_Vfmadd213ps_ymm_ymm_ymmm256,
            (V3::Fmadd213, Isa::Avx512) => C::EVEX_Vfmadd213ps_zmm_k1z_zmm_zmmm512b32_er,
            (V3::Fmadd132, Isa::Avx2) => C::VEX_Vfmadd132ps_ymm_ymm_ymmm256,
            (V3::Fmadd132, Isa::Avx512) => C::EVEX_Vfmadd132ps_zmm_k1z_zmm_zmmm512b32_er,
            (V3::Fmadd231, Isa::Avx2) => C::VEX_Vfmadd231ps_ymm_ymm_ymmm256,
            (V3::Fmadd231, Isa::Avx512) => C::EVEX_Vfmadd231ps_zmm_k1z_zmm_zmmm512b32_er,
            (V3::Fnmadd231, Isa::Avx2) => C::VEX_Vfnmadd231ps_ymm_ymm_ymmm256,
            (V3::Fnmadd231, Isa::Avx512) => C::EVEX_Vfnmadd231ps_zmm_k1z_zmm_zmmm512b32_er,
            (V3::Fmsub213, Isa::Avx2) => C::VEX_Vfmsub213ps_ymm_ymm_ymmm256,
            (V3::Fmsub213, Isa::Avx512) => C::EVEX_Vfmsub213ps_zmm_k1z_zmm_zmmm512b32_er,
            (V3::Scalef, Isa::Avx512) => C::EVEX_Vscalefps_zmm_k1z_zmm_zmmm512b32_er,
            (V3::Scalef, Isa::Avx2) => return None,
        })
    }
}

/// Two-operand vector ops `dst = op(src)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum V2 {
    Sqrt,
    Cvtdq2ps,
    Cvttps2dq,
    /// `|x|` of i32 lanes (`i32::MIN` stays `0x8000_0000`, read unsigned: 2^31).
    PAbsD,
}

impl V2 {
    fn code(self, isa: Isa) -> Code {
        use Code as C;
        match (self, isa) {
            (V2::Sqrt, Isa::Avx2) => C::VEX_Vsqrtps_ymm_ymmm256,
            (V2::Sqrt, Isa::Avx512) => C::EVEX_Vsqrtps_zmm_k1z_zmmm512b32_er,
            (V2::Cvtdq2ps, Isa::Avx2) => C::VEX_Vcvtdq2ps_ymm_ymmm256,
            (V2::Cvtdq2ps, Isa::Avx512) => C::EVEX_Vcvtdq2ps_zmm_k1z_zmmm512b32_er,
            (V2::Cvttps2dq, Isa::Avx2) => C::VEX_Vcvttps2dq_ymm_ymmm256,
            (V2::Cvttps2dq, Isa::Avx512) => C::EVEX_Vcvttps2dq_zmm_k1z_zmmm512b32_sae,
            (V2::PAbsD, Isa::Avx2) => C::VEX_Vpabsd_ymm_ymmm256,
            (V2::PAbsD, Isa::Avx512) => C::EVEX_Vpabsd_zmm_k1z_zmmm512b32,
        }
    }
}

/// Integer shifts by an immediate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shift {
    Sll,
    Srl,
    Sra,
}

/// A resolved source operand for iced.
enum IOp {
    R(Register),
    M(MemoryOperand),
}

/// Constants laid out after the code.
#[derive(Debug, Default)]
struct ConstPool {
    data: Vec<u8>,
    index: HashMap<(Vec<u8>, usize), u32>,
}

impl ConstPool {
    /// Offset of `bytes` (aligned to `align`) in the pool, adding it if new.
    fn add(&mut self, bytes: &[u8], align: usize) -> u32 {
        if let Some(&off) = self.index.get(&(bytes.to_vec(), align)) {
            return off;
        }
        while !self.data.len().is_multiple_of(align) {
            self.data.push(0);
        }
        let off = u32::try_from(self.data.len()).expect("constant pool below 4 GiB");
        self.data.extend_from_slice(bytes);
        self.index.insert((bytes.to_vec(), align), off);
        off
    }
}

/// Registers a prologue pushed, for the matching epilogue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    saved: Vec<Gpr>,
}

impl Frame {
    /// Callee-saved registers the prologue pushed, in push order.
    pub fn saved(&self) -> &[Gpr] {
        &self.saved
    }
}

/// The vector assembler: one per kernel. See the module docs.
pub struct VecAsm {
    isa: Isa,
    ops: Assembler,
    consts: Gpr,
    pool: ConstPool,
    pool_label: DynamicLabel,
    encoder: Encoder,
    next_k: u8,
    entry: dynasmrt::AssemblyOffset,
    /// Registers holding constant splats for the whole kernel, when enabled by
    /// [`VecAsm::keep_constants_in`].
    const_regs: Option<ConstRegs>,
}

/// The constant-register cache: splats handed registers in first-use order, loaded
/// by a stub the kernel jumps to once, before its loops.
#[derive(Debug)]
struct ConstRegs {
    /// Registers not handed out yet (popped from the end).
    free: Vec<VReg>,
    /// Splat bits -> the register holding them.
    held: Vec<(u32, VReg)>,
    stub: DynamicLabel,
    resume: DynamicLabel,
}

impl std::fmt::Debug for VecAsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VecAsm")
            .field("isa", &self.isa)
            .field("consts", &self.consts)
            .field("code_len", &self.ops.offset().0)
            .field("pool_len", &self.pool.data.len())
            .finish()
    }
}

/// Vector registers a register allocator may hand out for `isa`: all 32 zmm on
/// AVX-512, ymm0..14 on AVX2 (ymm15 holds the tail mask).
pub fn num_allocatable_vregs(isa: Isa) -> usize {
    match isa {
        Isa::Avx512 => 32,
        Isa::Avx2 => 15,
    }
}

/// The vector register reserved for the tail mask, if the ISA keeps it in one.
pub fn tail_mask_vreg(isa: Isa) -> Option<VReg> {
    match isa {
        Isa::Avx512 => None,
        Isa::Avx2 => Some(VReg(15)),
    }
}

const TAIL_VREG_AVX2: VReg = VReg(15);

impl VecAsm {
    /// A new assembler for `isa` whose constants are reached through `consts`.
    ///
    /// `consts` must not be `rsp`; the caller must not use it for anything else once
    /// [`VecAsm::load_consts_base`] ran.
    pub fn new(isa: Isa, consts: Gpr) -> Result<VecAsm, X64Error> {
        if consts == Gpr::Rsp {
            return Err(X64Error::BadRegister {
                op: "VecAsm::new".into(),
                reason: "rsp cannot hold the constant-pool base".into(),
            });
        }
        let mut ops = Assembler::new(0);
        let pool_label = ops.new_dynamic_label();
        let entry = ops.offset();
        Ok(VecAsm {
            isa,
            ops,
            consts,
            pool: ConstPool::default(),
            pool_label,
            encoder: Encoder::new(64),
            next_k: 0,
            entry,
            const_regs: None,
        })
    }

    /// The target ISA.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// The constant-pool base register.
    pub fn consts_gpr(&self) -> Gpr {
        self.consts
    }

    /// See [`num_allocatable_vregs`].
    pub fn num_allocatable_vregs(&self) -> usize {
        num_allocatable_vregs(self.isa)
    }

    /// The inner dynasm assembler, for GPR code, labels and control flow.
    pub fn ops(&mut self) -> &mut Assembler {
        &mut self.ops
    }

    /// Current code offset in bytes.
    pub fn offset(&self) -> usize {
        self.ops.offset().0
    }

    /// A new dynamic label (bind it with `dynasm!(ops ; =>label)` or [`VecAsm::bind`]).
    pub fn new_label(&mut self) -> DynamicLabel {
        self.ops.new_dynamic_label()
    }

    /// Binds `label` to the current offset.
    pub fn bind(&mut self, label: DynamicLabel) {
        dynasm!(self.ops ; .arch x64 ; =>label);
    }

    /// Sets the kernel's entry point to the current offset (default: offset 0).
    pub fn set_entry(&mut self) {
        self.entry = self.ops.offset();
    }

    /// Pushes the callee-saved registers among `used` (SysV: rbx, rbp, r12..r15; the
    /// constant-pool register counts if it is one), then loads the constant-pool base.
    pub fn prologue(&mut self, used: &[Gpr]) -> Frame {
        let mut saved: Vec<Gpr> = Vec::new();
        for &r in used.iter().chain(std::iter::once(&self.consts)) {
            if r.is_callee_saved() && !saved.contains(&r) {
                saved.push(r);
            }
        }
        for &r in &saved {
            dynasm!(self.ops ; .arch x64 ; push Rq(r.num()));
        }
        self.load_consts_base();
        Frame { saved }
    }

    /// `vzeroupper`, pops what [`VecAsm::prologue`] pushed, `ret`.
    pub fn epilogue(&mut self, frame: &Frame) {
        dynasm!(self.ops ; .arch x64 ; vzeroupper);
        for &r in frame.saved.iter().rev() {
            dynasm!(self.ops ; .arch x64 ; pop Rq(r.num()));
        }
        dynasm!(self.ops ; .arch x64 ; ret);
    }

    /// `lea consts, [rip -> pool]`: must run before any constant is used.
    pub fn load_consts_base(&mut self) {
        let label = self.pool_label;
        let r = self.consts.num();
        dynasm!(self.ops ; .arch x64 ; lea Rq(r), [=>label]);
    }

    // ----- public vector data movement --------------------------------------------

    /// Full-vector load `dst = [mem]` (unaligned).
    pub fn load(&mut self, dst: VReg, mem: Mem) -> Result<(), X64Error> {
        self.check_vreg("load", dst)?;
        let code = match self.isa {
            Isa::Avx2 => Code::VEX_Vmovups_ymm_ymmm256,
            Isa::Avx512 => Code::EVEX_Vmovups_zmm_k1z_zmmm512,
        };
        let ins = Instruction::with2(code, self.vr(dst), iced_mem(mem));
        self.enc(ins, "vmovups load")
    }

    /// Full-vector store `[mem] = src` (unaligned).
    pub fn store(&mut self, mem: Mem, src: VReg) -> Result<(), X64Error> {
        self.check_vreg("store", src)?;
        let code = match self.isa {
            Isa::Avx2 => Code::VEX_Vmovups_ymmm256_ymm,
            Isa::Avx512 => Code::EVEX_Vmovups_zmmm512_k1z_zmm,
        };
        let ins = Instruction::with2(code, iced_mem(mem), self.vr(src));
        self.enc(ins, "vmovups store")
    }

    /// Non-temporal full-vector store; `mem` must be aligned to
    /// [`Isa::vec_bytes`]. Follow a run of these with [`VecAsm::sfence`].
    pub fn store_nt(&mut self, mem: Mem, src: VReg) -> Result<(), X64Error> {
        self.check_vreg("store_nt", src)?;
        let code = match self.isa {
            Isa::Avx2 => Code::VEX_Vmovntps_m256_ymm,
            Isa::Avx512 => Code::EVEX_Vmovntps_m512_zmm,
        };
        let ins = Instruction::with2(code, iced_mem(mem), self.vr(src));
        self.enc(ins, "vmovntps")
    }

    /// `sfence`: orders earlier non-temporal stores before later stores.
    pub fn sfence(&mut self) {
        dynasm!(self.ops ; .arch x64 ; sfence);
    }

    /// Builds the tail mask from `count` (a GPR holding 0..=lanes, upper bits zero):
    /// lanes `0..count` active. AVX-512: `k1`; AVX2: `ymm15`. `count` and the flags are
    /// preserved. `count` must not be `rsp`.
    pub fn set_tail_mask(&mut self, count: Gpr) -> Result<(), X64Error> {
        if count == Gpr::Rsp {
            return Err(X64Error::BadRegister {
                op: "set_tail_mask".into(),
                reason: "rsp cannot be the count".into(),
            });
        }
        match self.isa {
            Isa::Avx512 => {
                let table: Vec<u8> = (0..=16u32)
                    .flat_map(|c| (((1u32 << c) - 1) as u16).to_le_bytes())
                    .collect();
                let off = self.pool.add(&table, 64);
                let mem = Mem::indexed(self.consts, count, 2, Self::pool_disp(off)?);
                let ins = Instruction::with2(Code::VEX_Kmovw_kr_km16, Register::K1, iced_mem(mem));
                self.enc(ins, "kmovw k1, tail table")
            }
            Isa::Avx2 => {
                let x = Register::XMM0 + u32::from(TAIL_VREG_AVX2.0);
                let y = Register::YMM0 + u32::from(TAIL_VREG_AVX2.0);
                self.enc(
                    Instruction::with2(Code::VEX_Vmovd_xmm_rm32, x, count.r32()),
                    "vmovd",
                )?;
                self.enc(
                    Instruction::with2(Code::VEX_Vpbroadcastd_ymm_xmmm32, y, x),
                    "vpbroadcastd",
                )?;
                let iota: Vec<u8> = (0..8u32).flat_map(|i| i.to_le_bytes()).collect();
                let off = self.pool.add(&iota, 32);
                let mem = Mem::new(self.consts, Self::pool_disp(off)?);
                let ins =
                    Instruction::with3(Code::VEX_Vpcmpgtd_ymm_ymm_ymmm256, y, y, iced_mem(mem));
                self.enc(ins, "vpcmpgtd tail mask")
            }
        }
    }

    /// Masked load of the active tail lanes (see [`VecAsm::set_tail_mask`]); inactive
    /// lanes of `dst` become zero and their memory is never read.
    pub fn load_tail(&mut self, dst: VReg, mem: Mem) -> Result<(), X64Error> {
        self.check_vreg("load_tail", dst)?;
        let ins = match self.isa {
            Isa::Avx512 => {
                let mut i = Instruction::with2(
                    Code::EVEX_Vmovups_zmm_k1z_zmmm512,
                    self.vr(dst),
                    iced_mem(mem),
                )
                .map_err(|e| enc_err("vmovups{k1}{z}", e))?;
                i.set_op_mask(Register::K1);
                i.set_zeroing_masking(true);
                Ok(i)
            }
            Isa::Avx2 => Instruction::with3(
                Code::VEX_Vmaskmovps_ymm_ymm_m256,
                self.vr(dst),
                self.vr(TAIL_VREG_AVX2),
                iced_mem(mem),
            ),
        };
        self.enc(ins, "masked load")
    }

    /// Masked store of the active tail lanes; memory of inactive lanes is untouched.
    pub fn store_tail(&mut self, mem: Mem, src: VReg) -> Result<(), X64Error> {
        self.check_vreg("store_tail", src)?;
        let ins = match self.isa {
            Isa::Avx512 => {
                let mut i = Instruction::with2(
                    Code::EVEX_Vmovups_zmmm512_k1z_zmm,
                    iced_mem(mem),
                    self.vr(src),
                )
                .map_err(|e| enc_err("vmovups{k1}", e))?;
                i.set_op_mask(Register::K1);
                Ok(i)
            }
            Isa::Avx2 => Instruction::with3(
                Code::VEX_Vmaskmovps_m256_ymm_ymm,
                iced_mem(mem),
                self.vr(TAIL_VREG_AVX2),
                self.vr(src),
            ),
        };
        self.enc(ins, "masked store")
    }

    /// Loads one f32 into lane 0 of `dst`, zeroing the other lanes (`vmovss`).
    pub fn load_scalar(&mut self, dst: VReg, mem: Mem) -> Result<(), X64Error> {
        self.check_vreg("load_scalar", dst)?;
        let code = match self.isa {
            Isa::Avx2 => Code::VEX_Vmovss_xmm_m32,
            Isa::Avx512 => Code::EVEX_Vmovss_xmm_k1z_m32,
        };
        let ins = Instruction::with2(code, Register::XMM0 + u32::from(dst.0), iced_mem(mem));
        self.enc(ins, "vmovss load")
    }

    /// Stores lane 0 of `src` as one f32 (`vmovss`).
    pub fn store_scalar(&mut self, mem: Mem, src: VReg) -> Result<(), X64Error> {
        self.check_vreg("store_scalar", src)?;
        let code = match self.isa {
            Isa::Avx2 => Code::VEX_Vmovss_m32_xmm,
            Isa::Avx512 => Code::EVEX_Vmovss_m32_k1_xmm,
        };
        let ins = Instruction::with2(code, iced_mem(mem), Register::XMM0 + u32::from(src.0));
        self.enc(ins, "vmovss store")
    }

    /// Broadcasts the f32 at `mem` to every lane (`vbroadcastss ymm/zmm, m32`).
    pub fn broadcast_load(&mut self, dst: VReg, mem: Mem) -> Result<(), X64Error> {
        self.check_vreg("broadcast_load", dst)?;
        let code = match self.isa {
            Isa::Avx2 => Code::VEX_Vbroadcastss_ymm_m32,
            Isa::Avx512 => Code::EVEX_Vbroadcastss_zmm_k1z_xmmm32,
        };
        let ins = Instruction::with2(code, self.vr(dst), iced_mem(mem));
        self.enc(ins, "vbroadcastss")
    }

    /// Sets every lane of `dst` to `value` (a full-width splat from the pool).
    pub fn broadcast_const(&mut self, dst: VReg, value: f32) -> Result<(), X64Error> {
        self.check_vreg("broadcast_const", dst)?;
        self.mov_internal(dst, Opnd::F(value))
    }

    /// Sets every lane of `dst` to the 32-bit pattern `bits`.
    pub fn broadcast_bits(&mut self, dst: VReg, bits: u32) -> Result<(), X64Error> {
        self.check_vreg("broadcast_bits", dst)?;
        self.mov_internal(dst, Opnd::B(bits))
    }

    /// Adds `bytes` (a table) to the constant pool, aligned to `align` (a power of two
    /// up to 64), and returns its address as `[consts + offset]`.
    pub fn const_table(&mut self, bytes: &[u8], align: usize) -> Result<Mem, X64Error> {
        if !align.is_power_of_two() || align > 64 {
            return Err(X64Error::Assembler(format!(
                "constant table alignment {align} is not a power of two up to 64"
            )));
        }
        let off = self.pool.add(bytes, align);
        Ok(Mem::new(self.consts, Self::pool_disp(off)?))
    }

    /// `dst = src` (a register copy; nothing is emitted if they are the same).
    pub fn mov(&mut self, dst: VReg, src: VReg) -> Result<(), X64Error> {
        self.check_vreg("mov", dst)?;
        self.check_vreg("mov", src)?;
        self.mov_internal(dst, Opnd::R(src))
    }

    /// `dst = 0`.
    pub fn zero(&mut self, dst: VReg) -> Result<(), X64Error> {
        self.check_vreg("zero", dst)?;
        self.v3(V3::Xor, dst, dst, dst)
    }

    /// Keeps the constant splats the code uses from here on in `free` (registers the
    /// code never touches otherwise: the caller guarantees it) instead of reading
    /// them from the constant pool at every use: each new constant takes the next
    /// register, in first-use order, until none is left (later ones stay memory
    /// operands). Emits `jmp stub; resume:` here; [`VecAsm::finalize`] emits the stub,
    /// which loads every register handed out and jumps back. Call it once, after the
    /// constant-pool base is loaded and before any loop; a no-op without registers.
    pub fn keep_constants_in(&mut self, free: &[VReg]) -> Result<(), X64Error> {
        if free.is_empty() {
            return Ok(());
        }
        if self.const_regs.is_some() {
            return Err(X64Error::Assembler("keep_constants_in called twice".into()));
        }
        for &v in free {
            self.check_vreg("keep_constants_in", v)?;
        }
        let (stub, resume) = (self.new_label(), self.new_label());
        dynasm!(self.ops ; .arch x64 ; jmp =>stub ; =>resume);
        self.const_regs = Some(ConstRegs {
            free: free.iter().rev().copied().collect(),
            held: vec![],
            stub,
            resume,
        });
        Ok(())
    }

    /// How many constant splats live in registers (see [`VecAsm::keep_constants_in`]).
    pub fn constants_in_registers(&self) -> usize {
        self.const_regs.as_ref().map_or(0, |c| c.held.len())
    }

    /// The register holding splat `bits`, handing out a free one on first use.
    fn const_reg(&mut self, bits: u32) -> Option<VReg> {
        let c = self.const_regs.as_mut()?;
        if let Some(&(_, r)) = c.held.iter().find(|(b, _)| *b == bits) {
            return Some(r);
        }
        let r = c.free.pop()?;
        c.held.push((bits, r));
        Some(r)
    }

    /// Lays out the constant pool after the code, resolves labels and returns the
    /// kernel in read+execute memory (never writable and executable at once: dynasm-rs
    /// writes into a read-write mapping and `mprotect`s it to read-execute).
    pub fn finalize(mut self) -> Result<Kernel, X64Error> {
        if let Some(c) = self.const_regs.take() {
            // The stub of `keep_constants_in`: after the code's last `ret`, so only
            // the jump reaches it.
            dynasm!(self.ops ; .arch x64 ; =>c.stub);
            for &(bits, r) in &c.held {
                let m = self.splat(bits)?;
                self.mov_internal(r, Opnd::M(m))?;
            }
            dynasm!(self.ops ; .arch x64 ; jmp =>c.resume);
        }
        let code_len = self.ops.offset().0;
        // int3 padding: falling off the end of the code traps instead of running data.
        self.ops.align(64, 0xCC);
        let pool_start = self.ops.offset().0;
        let label = self.pool_label;
        dynasm!(self.ops ; .arch x64 ; =>label);
        let data = std::mem::take(&mut self.pool.data);
        self.ops.extend(data.iter().copied());
        let entry = self.entry.0;
        let isa = self.isa;
        // Relocations are all relative (jumps, calls, `lea [rip -> label]`), so the
        // bytes assembled for base address 0 run anywhere.
        let bytes = self
            .ops
            .finalize()
            .map_err(|e| X64Error::Assembler(e.to_string()))?;
        let io = |e: std::io::Error| X64Error::Assembler(format!("code buffer: {e}"));
        let mut mb = dynasmrt::mmap::MutableBuffer::new(bytes.len()).map_err(io)?;
        mb.set_len(bytes.len());
        mb.copy_from_slice(&bytes);
        // Writable until here, executable (and no longer writable) from here on.
        let buf = mb.make_exec().map_err(io)?;
        Ok(Kernel::new(buf, isa, entry, code_len, pool_start))
    }

    // ----- internal instruction layer ---------------------------------------------

    pub(crate) fn check_vreg(&self, op: &str, v: VReg) -> Result<(), X64Error> {
        let n = num_allocatable_vregs(self.isa);
        if usize::from(v.0) >= n {
            return Err(X64Error::BadRegister {
                op: op.into(),
                reason: format!(
                    "vector register {} is out of range or reserved on {} (allocatable: 0..{n})",
                    v.0, self.isa
                ),
            });
        }
        Ok(())
    }

    fn pool_disp(off: u32) -> Result<i32, X64Error> {
        i32::try_from(off).map_err(|_| X64Error::Assembler("constant pool exceeds 2 GiB".into()))
    }

    /// The register of `v` at the ISA's width.
    pub(crate) fn vr(&self, v: VReg) -> Register {
        match self.isa {
            Isa::Avx512 => Register::ZMM0 + u32::from(v.0),
            Isa::Avx2 => Register::YMM0 + u32::from(v.0),
        }
    }

    /// Pool address of a full-width splat of `bits`.
    fn splat(&mut self, bits: u32) -> Result<Mem, X64Error> {
        let bytes: Vec<u8> = std::iter::repeat_n(bits.to_le_bytes(), self.isa.lanes())
            .flatten()
            .collect();
        let off = self.pool.add(&bytes, self.isa.vec_bytes());
        Ok(Mem::new(self.consts, Self::pool_disp(off)?))
    }

    /// A splat of `bits`: its register if one holds it, else its pool address.
    fn const_opnd(&mut self, bits: u32) -> Result<IOp, X64Error> {
        if let Some(r) = self.const_reg(bits) {
            return Ok(IOp::R(self.vr(r)));
        }
        let m = self.splat(bits)?;
        Ok(IOp::M(iced_mem(m)))
    }

    fn resolve(&mut self, o: Opnd) -> Result<IOp, X64Error> {
        Ok(match o {
            Opnd::R(v) => IOp::R(self.vr(v)),
            Opnd::M(m) => IOp::M(iced_mem(m)),
            Opnd::F(f) => self.const_opnd(f.to_bits())?,
            Opnd::B(b) => self.const_opnd(b)?,
        })
    }

    pub(crate) fn enc(
        &mut self,
        ins: Result<Instruction, iced_x86::IcedError>,
        what: &str,
    ) -> Result<(), X64Error> {
        self.enc_named(ins, || what.to_string())
    }

    /// [`VecAsm::enc`] with the instruction's name made only on an error (the hot
    /// vector-op paths would otherwise format a name per instruction).
    fn enc_named(
        &mut self,
        ins: Result<Instruction, iced_x86::IcedError>,
        what: impl Fn() -> String,
    ) -> Result<(), X64Error> {
        let ins = ins.map_err(|e| enc_err(&what(), e))?;
        self.encoder
            .encode(&ins, 0)
            .map_err(|e| enc_err(&what(), e))?;
        // Hand the encoder its buffer back, emptied: a fresh one per instruction
        // would cost an allocation each.
        let mut bytes = self.encoder.take_buffer();
        self.ops.extend(bytes.iter().copied());
        bytes.clear();
        self.encoder.set_buffer(bytes);
        Ok(())
    }

    /// `dst = a op b`.
    pub(crate) fn v3(
        &mut self,
        op: V3,
        dst: VReg,
        a: VReg,
        b: impl Into<Opnd>,
    ) -> Result<(), X64Error> {
        let code = op.code(self.isa).ok_or_else(|| X64Error::Unsupported {
            op: format!("{op:?}"),
            isa: self.isa,
            reason: "no such instruction".into(),
        })?;
        let (d, a) = (self.vr(dst), self.vr(a));
        let ins = match self.resolve(b.into())? {
            IOp::R(r) => Instruction::with3(code, d, a, r),
            IOp::M(m) => Instruction::with3(code, d, a, m),
        };
        self.enc_named(ins, || format!("{op:?}"))
    }

    /// `dst = op(src)`.
    pub(crate) fn v2(&mut self, op: V2, dst: VReg, src: impl Into<Opnd>) -> Result<(), X64Error> {
        let code = op.code(self.isa);
        let d = self.vr(dst);
        let ins = match self.resolve(src.into())? {
            IOp::R(r) => Instruction::with2(code, d, r),
            IOp::M(m) => Instruction::with2(code, d, m),
        };
        self.enc_named(ins, || format!("{op:?}"))
    }

    /// `dst = src` for any source; register copies to self are skipped.
    pub(crate) fn mov_internal(&mut self, dst: VReg, src: Opnd) -> Result<(), X64Error> {
        if let Opnd::R(s) = src
            && s == dst
        {
            return Ok(());
        }
        let d = self.vr(dst);
        let ins = match (self.resolve(src)?, self.isa) {
            (IOp::R(r), Isa::Avx2) => Instruction::with2(Code::VEX_Vmovaps_ymm_ymmm256, d, r),
            (IOp::R(r), Isa::Avx512) => {
                Instruction::with2(Code::EVEX_Vmovaps_zmm_k1z_zmmm512, d, r)
            }
            (IOp::M(m), Isa::Avx2) => Instruction::with2(Code::VEX_Vmovups_ymm_ymmm256, d, m),
            (IOp::M(m), Isa::Avx512) => {
                Instruction::with2(Code::EVEX_Vmovups_zmm_k1z_zmmm512, d, m)
            }
        };
        self.enc(ins, "vmov")
    }

    /// `dst = round(src)` with a [`round`] immediate.
    pub(crate) fn vround(&mut self, dst: VReg, src: VReg, imm: u8) -> Result<(), X64Error> {
        let code = match self.isa {
            Isa::Avx2 => Code::VEX_Vroundps_ymm_ymmm256_imm8,
            Isa::Avx512 => Code::EVEX_Vrndscaleps_zmm_k1z_zmmm512b32_imm8_sae,
        };
        let ins = Instruction::with3(code, self.vr(dst), self.vr(src), u32::from(imm));
        self.enc(ins, "vroundps")
    }

    /// AVX-512 only: `dst = vrangeps(a, b, imm)`, e.g. `imm = 0b1110` gives
    /// `-min(|a|, |b|)` in one instruction (a NaN `a` passes through).
    pub(crate) fn vrange(
        &mut self,
        dst: VReg,
        a: VReg,
        b: impl Into<Opnd>,
        imm: u8,
    ) -> Result<(), X64Error> {
        if self.isa != Isa::Avx512 {
            return Err(X64Error::Unsupported {
                op: "vrangeps".into(),
                isa: self.isa,
                reason: "AVX-512DQ only".into(),
            });
        }
        let code = Code::EVEX_Vrangeps_zmm_k1z_zmm_zmmm512b32_imm8_sae;
        let (d, a) = (self.vr(dst), self.vr(a));
        let ins = match self.resolve(b.into())? {
            IOp::R(r) => Instruction::with4(code, d, a, r, u32::from(imm)),
            IOp::M(m) => Instruction::with4(code, d, a, m, u32::from(imm)),
        };
        self.enc(ins, "vrangeps")
    }

    /// AVX-512 only (DQ): `dst = a - floor(a)` per lane (`vreduceps` keeping no
    /// fraction bits, rounding down, precision exception suppressed): exact, in [0, 1)
    /// for finite `a`.
    pub(crate) fn vfrac_floor(&mut self, dst: VReg, a: VReg) -> Result<(), X64Error> {
        if self.isa != Isa::Avx512 {
            return Err(X64Error::Unsupported {
                op: "vreduceps".into(),
                isa: self.isa,
                reason: "AVX-512DQ only".into(),
            });
        }
        let (d, a) = (self.vr(dst), self.vr(a));
        // imm8: M = 0 fraction bits (7:4), suppress precision (3), imm rounding (2 = 0),
        // round down (1:0 = 01).
        let ins = Instruction::with3(Code::EVEX_Vreduceps_zmm_k1z_zmmm512b32_imm8_sae, d, a, 0x09);
        self.enc(ins, "vreduceps")
    }

    /// AVX-512 only: `dst = k ? a op b : dst` per lane (merge masking with opmask `k`).
    pub(crate) fn v3_merge(
        &mut self,
        op: V3,
        dst: VReg,
        k: u8,
        a: VReg,
        b: impl Into<Opnd>,
    ) -> Result<(), X64Error> {
        let code = match (self.isa, op.code(self.isa)) {
            (Isa::Avx512, Some(code)) => code,
            _ => {
                return Err(X64Error::Unsupported {
                    op: format!("{op:?} with a merge mask"),
                    isa: self.isa,
                    reason: "opmasks are AVX-512 only".into(),
                });
            }
        };
        let (d, a) = (self.vr(dst), self.vr(a));
        let mut ins = match self.resolve(b.into())? {
            IOp::R(r) => Instruction::with3(code, d, a, r),
            IOp::M(m) => Instruction::with3(code, d, a, m),
        }
        .map_err(|e| enc_err("masked op", e))?;
        ins.set_op_mask(Register::K0 + u32::from(k));
        self.enc_named(Ok(ins), || format!("{op:?}{{k}}"))
    }

    /// `dst = src shift imm` on 32-bit lanes.
    pub(crate) fn vshift(
        &mut self,
        op: Shift,
        dst: VReg,
        src: VReg,
        imm: u8,
    ) -> Result<(), X64Error> {
        use Code as C;
        let code = match (op, self.isa) {
            (Shift::Sll, Isa::Avx2) => C::VEX_Vpslld_ymm_ymm_imm8,
            (Shift::Sll, Isa::Avx512) => C::EVEX_Vpslld_zmm_k1z_zmmm512b32_imm8,
            (Shift::Srl, Isa::Avx2) => C::VEX_Vpsrld_ymm_ymm_imm8,
            (Shift::Srl, Isa::Avx512) => C::EVEX_Vpsrld_zmm_k1z_zmmm512b32_imm8,
            (Shift::Sra, Isa::Avx2) => C::VEX_Vpsrad_ymm_ymm_imm8,
            (Shift::Sra, Isa::Avx512) => C::EVEX_Vpsrad_zmm_k1z_zmmm512b32_imm8,
        };
        let ins = Instruction::with3(code, self.vr(dst), self.vr(src), u32::from(imm));
        self.enc(ins, "vpshift")
    }

    fn alloc_k(&mut self) -> u8 {
        let k = 2 + self.next_k;
        self.next_k = (self.next_k + 1) % 6;
        k
    }

    /// Compares `a pred b`; on AVX-512 into a fresh scratch opmask, on AVX2 into `tmp`.
    pub(crate) fn cmp(
        &mut self,
        p: u8,
        a: VReg,
        b: impl Into<Opnd>,
        tmp: VReg,
    ) -> Result<Cond, X64Error> {
        let ra = self.vr(a);
        let b = self.resolve(b.into())?;
        match self.isa {
            Isa::Avx512 => {
                let k = self.alloc_k();
                let kr = Register::K0 + u32::from(k);
                let code = Code::EVEX_Vcmpps_kr_k1_zmm_zmmm512b32_imm8_sae;
                let ins = match b {
                    IOp::R(r) => Instruction::with4(code, kr, ra, r, u32::from(p)),
                    IOp::M(m) => Instruction::with4(code, kr, ra, m, u32::from(p)),
                };
                self.enc(ins, "vcmpps k")?;
                Ok(Cond::K(k))
            }
            Isa::Avx2 => {
                let code = Code::VEX_Vcmpps_ymm_ymm_ymmm256_imm8;
                let d = self.vr(tmp);
                let ins = match b {
                    IOp::R(r) => Instruction::with4(code, d, ra, r, u32::from(p)),
                    IOp::M(m) => Instruction::with4(code, d, ra, m, u32::from(p)),
                };
                self.enc(ins, "vcmpps")?;
                Ok(Cond::V(tmp))
            }
        }
    }

    /// `dst = cond ? if_true : if_false`, per lane.
    pub(crate) fn blend(
        &mut self,
        dst: VReg,
        cond: Cond,
        if_false: VReg,
        if_true: impl Into<Opnd>,
    ) -> Result<(), X64Error> {
        let d = self.vr(dst);
        let f = self.vr(if_false);
        let t = self.resolve(if_true.into())?;
        match cond {
            Cond::K(k) => {
                let code = Code::EVEX_Vblendmps_zmm_k1z_zmm_zmmm512b32;
                let mut ins = match t {
                    IOp::R(r) => Instruction::with3(code, d, f, r),
                    IOp::M(m) => Instruction::with3(code, d, f, m),
                }
                .map_err(|e| enc_err("vblendmps", e))?;
                ins.set_op_mask(Register::K0 + u32::from(k));
                self.enc(Ok(ins), "vblendmps")
            }
            Cond::V(c) => {
                let code = Code::VEX_Vblendvps_ymm_ymm_ymmm256_ymm;
                let c = self.vr(c);
                let ins = match t {
                    IOp::R(r) => Instruction::with4(code, d, f, r, c),
                    IOp::M(m) => Instruction::with4(code, d, f, m, c),
                };
                self.enc(ins, "vblendvps")
            }
        }
    }

    /// `a & b` of two conditions (the result reuses `a`'s storage on AVX2).
    pub(crate) fn cond_and(&mut self, a: Cond, b: Cond) -> Result<Cond, X64Error> {
        self.cond_logic(a, b, false)
    }

    /// `!a & b` of two conditions.
    pub(crate) fn cond_andn(&mut self, a: Cond, b: Cond) -> Result<Cond, X64Error> {
        self.cond_logic(a, b, true)
    }

    fn cond_logic(&mut self, a: Cond, b: Cond, not_a: bool) -> Result<Cond, X64Error> {
        match (a, b) {
            (Cond::K(ka), Cond::K(kb)) => {
                let k = self.alloc_k();
                let code = if not_a {
                    Code::VEX_Kandnw_kr_kr_kr
                } else {
                    Code::VEX_Kandw_kr_kr_kr
                };
                let ins = Instruction::with3(
                    code,
                    Register::K0 + u32::from(k),
                    Register::K0 + u32::from(ka),
                    Register::K0 + u32::from(kb),
                );
                self.enc(ins, "kandw")?;
                Ok(Cond::K(k))
            }
            (Cond::V(va), Cond::V(vb)) => {
                self.v3(if not_a { V3::AndN } else { V3::And }, va, va, vb)?;
                Ok(Cond::V(va))
            }
            _ => Err(X64Error::Encode {
                what: "condition logic".into(),
                reason: "mixed opmask and vector conditions".into(),
            }),
        }
    }

    /// Writes a condition as an all-ones / all-zeros vector into `dst`.
    pub(crate) fn cond_to_vreg(&mut self, dst: VReg, c: Cond) -> Result<(), X64Error> {
        match c {
            Cond::K(k) => {
                let ins = Instruction::with2(
                    Code::EVEX_Vpmovm2d_zmm_kr,
                    self.vr(dst),
                    Register::K0 + u32::from(k),
                );
                self.enc(ins, "vpmovm2d")
            }
            Cond::V(v) => self.mov_internal(dst, Opnd::R(v)),
        }
    }

    /// Reads a bool vector (sign bit of each lane) as a condition.
    pub(crate) fn vreg_to_cond(&mut self, v: VReg) -> Result<Cond, X64Error> {
        match self.isa {
            Isa::Avx512 => {
                let k = self.alloc_k();
                let ins = Instruction::with2(
                    Code::EVEX_Vpmovd2m_kr_zmm,
                    Register::K0 + u32::from(k),
                    self.vr(v),
                );
                self.enc(ins, "vpmovd2m")?;
                Ok(Cond::K(k))
            }
            Isa::Avx2 => Ok(Cond::V(v)),
        }
    }

    /// Raw access for emitters that need an EVEX-only form.
    pub(crate) fn enc_raw(
        &mut self,
        ins: Result<Instruction, iced_x86::IcedError>,
        what: &str,
    ) -> Result<(), X64Error> {
        self.enc(ins, what)
    }
}

/// The iced-x86 memory operand of `m` (64-bit base and index).
pub(crate) fn iced_mem(m: Mem) -> MemoryOperand {
    let (index, scale) = match m.index {
        Some((r, s)) => (r.r64(), u32::from(s)),
        None => (Register::None, 1),
    };
    MemoryOperand::new(
        m.base.r64(),
        index,
        scale,
        i64::from(m.disp),
        1,
        false,
        Register::None,
    )
}

/// An encoder error of instruction `what`.
pub(crate) fn enc_err(what: &str, e: iced_x86::IcedError) -> X64Error {
    X64Error::Encode {
        what: what.into(),
        reason: e.to_string(),
    }
}

// ----- typed ports: widening loads and narrowing stores ------------------------------

/// How the elements of a port sit in memory, and what a load does to widen them into
/// their register representation (see `snipjit_lower::lir::register_repr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Elem {
    /// f32 and i32: one dword per lane, moved as is.
    Dword,
    /// u8: zero-extended bytes.
    U8,
    /// i8: sign-extended bytes.
    I8,
    /// bool: 0/1 bytes widened to all-ones / all-zeros lanes.
    Bool,
    /// bf16: words shifted into the top half of an f32.
    Bf16,
    /// f16: converted with `vcvtph2ps` / `vcvtps2ph` (exact for f16 values).
    F16,
}

impl Elem {
    fn of(dtype: DType, op: &str) -> Result<Elem, X64Error> {
        Ok(match dtype {
            DType::F32 | DType::I32 => Elem::Dword,
            DType::U8 => Elem::U8,
            DType::I8 => Elem::I8,
            DType::Bool => Elem::Bool,
            DType::BF16 => Elem::Bf16,
            DType::F16 => Elem::F16,
            DType::I64 => {
                return Err(X64Error::Args(format!(
                    "{op}: i64 ports are not loaded or stored by the JIT"
                )));
            }
        })
    }

    /// log2 of the element size in bytes.
    fn shift(self) -> u8 {
        match self {
            Elem::Dword => 2,
            Elem::Bf16 | Elem::F16 => 1,
            Elem::U8 | Elem::I8 | Elem::Bool => 0,
        }
    }
}

/// Bytes of the stack buffer the AVX2 sub-dword tails go through (16 are used: eight
/// words; 32 keeps a ymm-sized slot).
pub const TAIL_BUF_BYTES: usize = 32;

/// Registers `rep movsb` uses; the tail copies save and restore them.
const MOVS_REGS: [Gpr; 3] = [Gpr::Rcx, Gpr::Rsi, Gpr::Rdi];

impl VecAsm {
    /// The register of `v` that holds a vector's worth of `e` elements before
    /// widening (after narrowing): xmm for bytes, ymm for words on AVX-512 (16 lanes),
    /// xmm for both on AVX2 (8 lanes).
    fn narrow_reg(&self, v: VReg, e: Elem) -> Register {
        match (self.isa, e.shift()) {
            (Isa::Avx512, 1) => Register::YMM0 + u32::from(v.0),
            _ => Register::XMM0 + u32::from(v.0),
        }
    }

    /// Widens a vector of `e` elements from `src` (memory or the narrow register of a
    /// vreg) into the register representation in `dst`.
    fn widen(&mut self, dst: VReg, src: IOp, e: Elem) -> Result<(), X64Error> {
        use Code as C;
        let code = match (e, self.isa) {
            (Elem::Dword, _) => {
                return Err(X64Error::Assembler("widen of dword elements".into()));
            }
            (Elem::U8 | Elem::Bool, Isa::Avx2) => C::VEX_Vpmovzxbd_ymm_xmmm64,
            (Elem::U8 | Elem::Bool, Isa::Avx512) => C::EVEX_Vpmovzxbd_zmm_k1z_xmmm128,
            (Elem::I8, Isa::Avx2) => C::VEX_Vpmovsxbd_ymm_xmmm64,
            (Elem::I8, Isa::Avx512) => C::EVEX_Vpmovsxbd_zmm_k1z_xmmm128,
            (Elem::Bf16, Isa::Avx2) => C::VEX_Vpmovzxwd_ymm_xmmm128,
            (Elem::Bf16, Isa::Avx512) => C::EVEX_Vpmovzxwd_zmm_k1z_ymmm256,
            (Elem::F16, Isa::Avx2) => C::VEX_Vcvtph2ps_ymm_xmmm128,
            (Elem::F16, Isa::Avx512) => C::EVEX_Vcvtph2ps_zmm_k1z_ymmm256_sae,
        };
        let d = self.vr(dst);
        let ins = match src {
            IOp::R(r) => Instruction::with2(code, d, r),
            IOp::M(m) => Instruction::with2(code, d, m),
        };
        self.enc(ins, "widen")?;
        match e {
            Elem::Bool => {
                // 0/1 -> all-zeros/all-ones: bit 0 to the sign, then spread it.
                self.vshift(Shift::Sll, dst, dst, 31)?;
                self.vshift(Shift::Sra, dst, dst, 31)
            }
            Elem::Bf16 => self.vshift(Shift::Sll, dst, dst, 16),
            _ => Ok(()),
        }
    }

    /// Full-vector load of `lanes` elements of `dtype` at `mem`, widened to the
    /// register representation: f32 lanes (f32, bf16, f16), i32 lanes (i32, u8
    /// zero-extended, i8 sign-extended) or all-ones/all-zeros lanes (bool, stored as
    /// 0/1 bytes). Reads exactly `lanes * size` bytes.
    pub fn load_typed(&mut self, dst: VReg, mem: Mem, dtype: DType) -> Result<(), X64Error> {
        self.check_vreg("load_typed", dst)?;
        match Elem::of(dtype, "load_typed")? {
            Elem::Dword => self.load(dst, mem),
            e => {
                let m = iced_mem(mem);
                self.widen(dst, IOp::M(m), e)
            }
        }
    }

    /// Loads one element of `dtype` at `mem` and broadcasts its register
    /// representation to every lane. Reads exactly one element.
    pub fn broadcast_load_typed(
        &mut self,
        dst: VReg,
        mem: Mem,
        dtype: DType,
    ) -> Result<(), X64Error> {
        use Code as C;
        self.check_vreg("broadcast_load_typed", dst)?;
        let e = Elem::of(dtype, "broadcast_load_typed")?;
        if e == Elem::Dword {
            return self.broadcast_load(dst, mem);
        }
        let code = match (e.shift(), self.isa) {
            (0, Isa::Avx2) => C::VEX_Vpbroadcastb_xmm_xmmm8,
            (0, Isa::Avx512) => C::EVEX_Vpbroadcastb_xmm_k1z_xmmm8,
            (_, Isa::Avx2) => C::VEX_Vpbroadcastw_xmm_xmmm16,
            (_, Isa::Avx512) => C::EVEX_Vpbroadcastw_ymm_k1z_xmmm16,
        };
        let n = self.narrow_reg(dst, e);
        let ins = Instruction::with2(code, n, iced_mem(mem));
        self.enc(ins, "vpbroadcast")?;
        self.widen(dst, IOp::R(n), e)
    }

    /// Masked tail load of `count` (0..=lanes) elements of `dtype` (see
    /// [`VecAsm::load_typed`]); inactive lanes become zero and memory past the count is
    /// never read.
    ///
    /// f32/i32 use [`VecAsm::load_tail`]. Narrower types: on AVX-512 a `k1`-masked
    /// `vmovdqu8`/`vmovdqu16` (fault-suppressing) into `dst`, widened in place; on AVX2
    /// (no masked byte or word loads) `count` elements are copied with `rep movsb` into
    /// `buf` (at least [`TAIL_BUF_BYTES`] bytes of the caller's stack, zeroed first) and
    /// widened from there. The AVX2 copy saves and restores rcx, rsi and rdi; neither
    /// `mem` nor `buf` may be based on or indexed by them (`buf` may be `rsp`-based),
    /// and `count` must not be rsi or rdi.
    pub fn load_tail_typed(
        &mut self,
        dst: VReg,
        mem: Mem,
        dtype: DType,
        count: Gpr,
        buf: Mem,
    ) -> Result<(), X64Error> {
        self.check_vreg("load_tail_typed", dst)?;
        let e = Elem::of(dtype, "load_tail_typed")?;
        if e == Elem::Dword {
            return self.load_tail(dst, mem);
        }
        let n = self.narrow_reg(dst, e);
        match self.isa {
            Isa::Avx512 => {
                let code = if e.shift() == 0 {
                    Code::EVEX_Vmovdqu8_xmm_k1z_xmmm128
                } else {
                    Code::EVEX_Vmovdqu16_ymm_k1z_ymmm256
                };
                let mut ins = Instruction::with2(code, n, iced_mem(mem))
                    .map_err(|err| enc_err("vmovdqu8/16{k1}{z}", err))?;
                ins.set_op_mask(Register::K1);
                ins.set_zeroing_masking(true);
                self.enc(Ok(ins), "masked narrow load")?;
                self.widen(dst, IOp::R(n), e)
            }
            Isa::Avx2 => {
                self.zero(dst)?;
                let b = iced_mem(buf);
                self.enc(
                    Instruction::with2(Code::VEX_Vmovdqu_xmmm128_xmm, b, n),
                    "vmovdqu buf",
                )?;
                self.copy_elems(buf, mem, count, e.shift())?;
                let b = iced_mem(buf);
                self.widen(dst, IOp::M(b), e)
            }
        }
    }

    /// Full-vector store of `src` (the register representation of `dtype`) as `lanes`
    /// elements of `dtype` at `mem`: f32/i32 as is, u8/i8 truncated to the low byte
    /// (int -> int conversions wrap), bool as 0/1 bytes, bf16 as the top half of each
    /// f32 and f16 with `vcvtps2ph` (both exact for values of their type). Types
    /// narrower than 32 bits need one scratch register (`scratch[0]`, distinct from
    /// `src`). Writes exactly `lanes * size` bytes.
    pub fn store_typed(
        &mut self,
        mem: Mem,
        src: VReg,
        dtype: DType,
        scratch: &[VReg],
    ) -> Result<(), X64Error> {
        self.check_vreg("store_typed", src)?;
        let e = Elem::of(dtype, "store_typed")?;
        if e == Elem::Dword {
            return self.store(mem, src);
        }
        let tmp = self.narrow_scratch("store_typed", src, scratch)?;
        let m = iced_mem(mem);
        match self.isa {
            Isa::Avx512 => self.narrow_avx512(IOp::M(m), src, e, tmp),
            Isa::Avx2 => {
                if e == Elem::F16 {
                    return self.cvtps2ph(IOp::M(m), src);
                }
                self.narrow_avx2(tmp, src, e)?;
                self.store_narrow_xmm(IOp::M(m), tmp, e)
            }
        }
    }

    /// Masked tail store of `count` (0..=lanes) elements (see [`VecAsm::store_typed`]);
    /// memory past the count is never touched.
    ///
    /// f32/i32 use [`VecAsm::store_tail`]. Narrower types are narrowed into
    /// `scratch[0]`, then written with a `k1`-masked `vmovdqu8`/`vmovdqu16` (AVX-512), or
    /// through `buf` with `rep movsb` (AVX2; the register rules of
    /// [`VecAsm::load_tail_typed`] apply).
    pub fn store_tail_typed(
        &mut self,
        mem: Mem,
        src: VReg,
        dtype: DType,
        scratch: &[VReg],
        count: Gpr,
        buf: Mem,
    ) -> Result<(), X64Error> {
        self.check_vreg("store_tail_typed", src)?;
        let e = Elem::of(dtype, "store_tail_typed")?;
        if e == Elem::Dword {
            return self.store_tail(mem, src);
        }
        let tmp = self.narrow_scratch("store_tail_typed", src, scratch)?;
        let n = self.narrow_reg(tmp, e);
        match self.isa {
            Isa::Avx512 => {
                self.narrow_avx512(IOp::R(n), src, e, tmp)?;
                let code = if e.shift() == 0 {
                    Code::EVEX_Vmovdqu8_xmmm128_k1z_xmm
                } else {
                    Code::EVEX_Vmovdqu16_ymmm256_k1z_ymm
                };
                let mut ins = Instruction::with2(code, iced_mem(mem), n)
                    .map_err(|err| enc_err("vmovdqu8/16{k1}", err))?;
                ins.set_op_mask(Register::K1);
                self.enc(Ok(ins), "masked narrow store")
            }
            Isa::Avx2 => {
                if e == Elem::F16 {
                    self.cvtps2ph(IOp::R(n), src)?;
                } else {
                    self.narrow_avx2(tmp, src, e)?;
                }
                let b = iced_mem(buf);
                self.enc(
                    Instruction::with2(Code::VEX_Vmovdqu_xmmm128_xmm, b, n),
                    "vmovdqu buf",
                )?;
                self.copy_elems(mem, buf, count, e.shift())
            }
        }
    }

    fn narrow_scratch(&self, op: &str, src: VReg, scratch: &[VReg]) -> Result<VReg, X64Error> {
        let tmp = *scratch.first().ok_or_else(|| X64Error::NotEnoughScratch {
            op: op.into(),
            needed: 1,
            got: 0,
        })?;
        self.check_vreg(op, tmp)?;
        if tmp == src {
            return Err(X64Error::BadRegister {
                op: op.into(),
                reason: format!("scratch register {} is the stored register", tmp.0),
            });
        }
        Ok(tmp)
    }

    /// `vcvtps2ph dst, src, 0` (round to nearest even).
    fn cvtps2ph(&mut self, dst: IOp, src: VReg) -> Result<(), X64Error> {
        let code = match self.isa {
            Isa::Avx2 => Code::VEX_Vcvtps2ph_xmmm128_ymm_imm8,
            Isa::Avx512 => Code::EVEX_Vcvtps2ph_ymmm256_k1z_zmm_imm8_sae,
        };
        let s = self.vr(src);
        let ins = match dst {
            IOp::R(r) => Instruction::with3(code, r, s, 0u32),
            IOp::M(m) => Instruction::with3(code, m, s, 0u32),
        };
        self.enc(ins, "vcvtps2ph")
    }

    /// AVX-512: narrows `src` into `dst` (memory or the narrow register of a vreg) with
    /// `vpmovdb` / `vpmovdw` (truncation) or `vcvtps2ph`; `tmp` holds bool and bf16
    /// pre-shifted lanes.
    fn narrow_avx512(&mut self, dst: IOp, src: VReg, e: Elem, tmp: VReg) -> Result<(), X64Error> {
        let (code, from) = match e {
            Elem::U8 | Elem::I8 => (Code::EVEX_Vpmovdb_xmmm128_k1z_zmm, src),
            Elem::Bool => {
                self.vshift(Shift::Srl, tmp, src, 31)?;
                (Code::EVEX_Vpmovdb_xmmm128_k1z_zmm, tmp)
            }
            Elem::Bf16 => {
                self.vshift(Shift::Srl, tmp, src, 16)?;
                (Code::EVEX_Vpmovdw_ymmm256_k1z_zmm, tmp)
            }
            Elem::F16 => return self.cvtps2ph(dst, src),
            Elem::Dword => return Err(X64Error::Assembler("narrow of dword elements".into())),
        };
        let f = self.vr(from);
        let ins = match dst {
            IOp::R(r) => Instruction::with2(code, r, f),
            IOp::M(m) => Instruction::with2(code, m, f),
        };
        self.enc(ins, "vpmovdb/dw")
    }

    /// AVX2: packs `src` (8 dword lanes) into the low bytes (8 bytes) or words (16
    /// bytes) of `tmp`'s xmm: mask/shift to the element's value, `vpackusdw` (no
    /// saturation: values fit), `vpermq` to join the two 128-bit halves, and
    /// `vpackuswb` for bytes.
    fn narrow_avx2(&mut self, tmp: VReg, src: VReg, e: Elem) -> Result<(), X64Error> {
        match e {
            Elem::U8 | Elem::I8 => self.v3(V3::And, tmp, src, Opnd::B(0xFF))?,
            Elem::Bool => self.vshift(Shift::Srl, tmp, src, 31)?,
            Elem::Bf16 => self.vshift(Shift::Srl, tmp, src, 16)?,
            Elem::F16 | Elem::Dword => {
                return Err(X64Error::Assembler("narrow_avx2 of f16 or dwords".into()));
            }
        }
        let y = self.vr(tmp);
        self.enc(
            Instruction::with3(Code::VEX_Vpackusdw_ymm_ymm_ymmm256, y, y, y),
            "vpackusdw",
        )?;
        self.enc(
            Instruction::with3(Code::VEX_Vpermq_ymm_ymmm256_imm8, y, y, 0x08u32),
            "vpermq",
        )?;
        if e.shift() == 0 {
            let x = Register::XMM0 + u32::from(tmp.0);
            self.enc(
                Instruction::with3(Code::VEX_Vpackuswb_xmm_xmm_xmmm128, x, x, x),
                "vpackuswb",
            )?;
        }
        Ok(())
    }

    /// AVX2: stores the packed bytes (8, `vmovq`) or words (16 bytes, `vmovdqu`) of
    /// `tmp`'s xmm.
    fn store_narrow_xmm(&mut self, dst: IOp, tmp: VReg, e: Elem) -> Result<(), X64Error> {
        let x = Register::XMM0 + u32::from(tmp.0);
        let code = if e.shift() == 0 {
            Code::VEX_Vmovq_xmmm64_xmm
        } else {
            Code::VEX_Vmovdqu_xmmm128_xmm
        };
        let ins = match dst {
            IOp::R(r) => Instruction::with2(code, r, x),
            IOp::M(m) => Instruction::with2(code, m, x),
        };
        self.enc(ins, "narrow store")
    }

    /// Copies `count << shift` bytes from `src` to `dst` with `rep movsb`, saving and
    /// restoring rcx, rsi and rdi (and the flags are clobbered). Addresses based on
    /// `rsp` are adjusted for the saved registers.
    fn copy_elems(&mut self, dst: Mem, src: Mem, count: Gpr, shift: u8) -> Result<(), X64Error> {
        for m in [dst, src] {
            let bad = MOVS_REGS.contains(&m.base)
                || m.index
                    .is_some_and(|(r, _)| MOVS_REGS.contains(&r) || r == Gpr::Rsp);
            if bad {
                return Err(X64Error::BadRegister {
                    op: "tail copy".into(),
                    reason: "an address uses rcx, rsi or rdi, which rep movsb takes".into(),
                });
            }
        }
        if matches!(count, Gpr::Rsi | Gpr::Rdi | Gpr::Rsp) {
            return Err(X64Error::BadRegister {
                op: "tail copy".into(),
                reason: format!("the count cannot be in {}", count.name()),
            });
        }
        let pushed = 8 * MOVS_REGS.len() as i32;
        let adjust = |m: Mem| {
            if m.base == Gpr::Rsp {
                Mem {
                    disp: m.disp + pushed,
                    ..m
                }
            } else {
                m
            }
        };
        for r in MOVS_REGS {
            dynasm!(self.ops ; .arch x64 ; push Rq(r.num()));
        }
        let (s, d) = (iced_mem(adjust(src)), iced_mem(adjust(dst)));
        self.enc(
            Instruction::with2(Code::Lea_r64_m, Register::RSI, s),
            "lea rsi",
        )?;
        self.enc(
            Instruction::with2(Code::Lea_r64_m, Register::RDI, d),
            "lea rdi",
        )?;
        if count != Gpr::Rcx {
            dynasm!(self.ops ; .arch x64 ; mov rcx, Rq(count.num()));
        }
        if shift > 0 {
            dynasm!(self.ops ; .arch x64 ; shl rcx, shift as i8);
        }
        dynasm!(self.ops ; .arch x64 ; rep movsb);
        for r in MOVS_REGS.into_iter().rev() {
            dynasm!(self.ops ; .arch x64 ; pop Rq(r.num()));
        }
        Ok(())
    }
}
