//! snipjit runtime: compiles elementwise subgraphs per broadcast pattern, configures
//! the argument block for concrete shapes, and runs kernels over threads.
//!
//! - [`config`]: the runtime configurator (shapes to domain, strides, increments).
//! - [`JitSubgraph`]: one fused subgraph with its kernel cache; `run` takes tensors.
//! - the executor splits the domain over a thread pool (the caller takes part;
//!   workers spin briefly between calls, then park), each call with its own
//!   `CallArgs` and scratchpad.

pub mod config;
mod exec;
pub mod mha;
mod pool;
mod scratch;
mod subgraph;

pub use exec::{Executor, MIN_ELEMENTS_PER_THREAD, NT_STORE_MIN_BYTES, OutputPort, Plan, WorkItem};
pub use mha::MhaKernel;
pub use pool::{DEFAULT_SPIN, MAX_SPIN};
pub use subgraph::{
    CompiledKernel, JitSubgraph, compile_kernel, huge_page_capacity, predicted_pattern,
};

/// Errors of the runtime.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuntimeError {
    #[error("shape: {0}")]
    Shape(String),
    #[error("input {index} ('{name}'): {reason}")]
    Input {
        index: usize,
        name: String,
        reason: String,
    },
    #[error(transparent)]
    Lower(#[from] snipjit_lower::LowerError),
    #[error(transparent)]
    X64(#[from] snipjit_x64::X64Error),
    /// An attention subgraph the MHA kernel does not take, or a call it cannot run.
    #[error("mha: {0}")]
    Mha(String),
    #[error("threads: {0}")]
    Threads(String),
}
