//! The reference interpreter: the oracle of every snipjit test.
//!
//! [`run`] evaluates a whole [`Graph`](snipjit_ir::Graph) on concrete tensors;
//! [`eval_op`] evaluates one [`Op`](snipjit_ir::Op). The code favours being obviously
//! correct over being fast:
//!
//! - every float op is computed in `f64` and rounded once to the tensor's dtype
//!   (round to nearest even, also for bf16/f16: see [`round`]);
//! - integer ops wrap in the tensor's dtype; division or remainder by zero, a negative
//!   integer exponent and other run-time faults are errors, never panics;
//! - reductions, softmax and matmul accumulate in `f64` (floats) or wrapping `i64` (ints);
//! - broadcasting is numpy's, walked with a plain strided index (no per-element allocation).
//!
//! Semantics are those documented on [`Op`](snipjit_ir::Op) in `snipjit-ir`, ONNX otherwise.

mod elementwise;
mod error;
mod exec;
mod index;
mod layout;
mod matmul;
mod num;
mod reduce;
pub mod round;

pub use error::{InputError, InterpError, OpError};
pub use exec::{SubgraphHook, eval_op, run, run_with};

/// The largest tensor, in bytes, that the interpreter allocates (16 GiB). Larger
/// outputs are an [`OpError::TooLarge`] error instead of an allocation failure.
pub const MAX_TENSOR_BYTES: usize = 1 << 34;
