//! snipjit x86-64 backend: the vector-assembler layer the code generator builds kernels
//! with.
//!
//! - [`isa`]: [`Isa`] levels (AVX-512, AVX2) and run-time detection.
//! - [`asm`]: [`VecAsm`], a vector assembler over dynasm-rs with ISA-agnostic loads,
//!   stores, masked tails, broadcasts and a constant pool; EVEX (AVX-512) instructions
//!   are encoded with iced-x86 and spliced into the dynasm stream.
//! - [`emit`]: elementwise emitters for every f32/bool op of the graph IR
//!   (`emit_unary`, `emit_binary`, `emit_select`, `emit_fma`, `emit_convert`,
//!   `emit_pow_static`), with their scratch-register needs and stated accuracy.
//! - [`kernel`]: [`Kernel`], finalized code in W^X memory, with disassembly.
//! - [`mha_kernel`]: [`MhaFused`], one kernel running the whole flash-attention loop of
//!   a work item (brgemms, online softmax, K packing as subroutines of one buffer).
//! - [`accuracy`]: exhaustive accuracy sweeps of the approximated emitters against f64
//!   references, over ranges of f32 bit patterns (up to all 2^32).
//! - [`harness`]: small map kernels (`jit_unary_map`, `jit_binary_map`) for tests and
//!   benchmarks.
//!
//! # Register conventions
//! | register | role | why |
//! |---|---|---|
//! | `k1` | tail mask (AVX-512) | written by [`VecAsm::set_tail_mask`], read by tail loads/stores |
//! | `k2`..`k7` | emitter scratch (AVX-512) | compare results inside one emitter; never live across emitters |
//! | `ymm15` | tail mask (AVX2) | `vmaskmovps` takes its mask in a vector register; not allocatable |
//! | consts GPR | constant-pool base | chosen by the caller of [`VecAsm::new`], loaded by [`VecAsm::load_consts_base`] |
//!
//! Booleans live in vector registers as all-ones / all-zeros 32-bit lanes on both ISAs,
//! so code above this crate is ISA-agnostic.
//!
//! # Accuracy
//! See [`emit`] for the stated maximum error of every approximated op; the tests in
//! `tests/numerics.rs` check each bound against libm evaluated in f64.

pub mod abi;
pub mod accuracy;
pub mod asm;
pub mod attn;
pub mod brgemm;
pub mod codegen;
pub mod emit;
pub mod harness;
pub mod isa;
pub mod kernel;
pub mod mha_kernel;

pub use asm::{Frame, Gpr, Mem, VReg, VecAsm};
pub use asm::{num_allocatable_vregs, tail_mask_vreg};
pub use attn::{
    AttnFinishArgs, AttnMask, AttnScale, MaskRef, OnlineSoftmax, OnlineSoftmaxOptions,
    SoftmaxBlockArgs,
};
pub use brgemm::{
    BLayout, BPacker, Blocking, Brgemm, BrgemmArgs, BrgemmOptions, BrgemmShape, FmaPeak,
};
pub use emit::{
    scratch_needed_binary, scratch_needed_convert, scratch_needed_pow_static, scratch_needed_unary,
};
pub use harness::{MapKernel, jit_binary_map, jit_map, jit_unary_map};
pub use isa::Isa;
pub use kernel::Kernel;
pub use mha_kernel::{KLayout, MhaFused, MhaFusedArgs, MhaFusedOptions, MhaItemShape, MhaScratch};

/// Errors of the x86-64 backend.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum X64Error {
    /// The requested ISA is not supported by this CPU.
    #[error("ISA {isa} is not supported by this CPU")]
    IsaUnsupported { isa: Isa },
    /// An op (or op/ISA combination) has no emitter.
    #[error("op {op} is not supported on {isa}: {reason}")]
    Unsupported {
        op: String,
        isa: Isa,
        reason: String,
    },
    /// A register operand is out of range, reserved, or aliases where it must not.
    #[error("{op}: bad register operand: {reason}")]
    BadRegister { op: String, reason: String },
    /// Too few scratch registers were passed to an emitter.
    #[error("{op}: needs {needed} scratch registers, got {got}")]
    NotEnoughScratch {
        op: String,
        needed: usize,
        got: usize,
    },
    /// iced-x86 refused to encode an instruction (an internal invariant was broken).
    #[error("encoding {what} failed: {reason}")]
    Encode { what: String, reason: String },
    /// dynasm-rs failed (unknown label, bad relocation) or memory could not be mapped.
    #[error("assembler: {0}")]
    Assembler(String),
    /// A kernel was run with inconsistent buffer lengths.
    #[error("kernel arguments: {0}")]
    Args(String),
}

/// Builds iced-x86's encoder tables, a one-time cost of about 0.7 ms per process that
/// would otherwise land on the first kernel compilation. Idempotent and cheap after
/// the first call; `snipjit::Compiler::new` calls it.
pub fn warm_up() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = iced_x86::Encoder::new(64);
    });
}
