//! snipjit lowering: the linear IR, its passes, and register allocation.
//!
//! An elementwise subgraph body (a [`snipjit_ir::Graph`]) is built into a linear IR
//! ([`lir::Lir`]), rewritten by data-flow passes, then given loops, loads and stores,
//! registers and tail iterations by control-flow passes ([`pipeline`]). The result is
//! target-independent apart from the [`Target`] facts it was lowered for; the x64
//! crate turns it into machine code.

pub mod build;
pub mod lir;
pub mod lir_text;
pub mod mha;
pub mod passes;
pub mod pipeline;
pub mod verify;

pub use lir::Lir;
pub use pipeline::lower;

/// What the lowering needs to know of the target.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    pub name: &'static str,
    /// f32 lanes per vector.
    pub lanes: usize,
    /// Vector registers the allocator may use (the backend's own reserved ones excluded).
    pub vregs: usize,
    /// Scratch registers the emitter of an expression needs.
    pub scratch: fn(&lir::ExprKind) -> usize,
}

/// A pass over the linear IR.
pub trait Pass: Sync {
    /// The pass name (snake case, as `--print-after` takes it).
    fn name(&self) -> &'static str;
    fn run(&self, lir: &mut Lir, target: &Target) -> Result<(), LowerError>;
}

/// Errors of the lowering.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LowerError {
    #[error("cannot lower: {0}")]
    Unsupported(String),
    #[error("pass {pass}: {reason}")]
    Pass { pass: &'static str, reason: String },
    #[error("linear IR verifier: expression {expr}: {reason}")]
    Verify { expr: usize, reason: String },
    #[error("attention IR verifier: expression {expr}: {reason}")]
    MhaVerify { expr: usize, reason: String },
    #[error(transparent)]
    Ir(#[from] snipjit_ir::IrError),
}
