//! The interpreter's errors.

use snipjit_ir::{DType, IrError, TensorType};

/// Why one op could not be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OpError {
    /// The op got the wrong number of inputs.
    #[error("expects {expected} inputs, got {got}")]
    Arity { expected: usize, got: usize },
    /// The op does not support this input dtype.
    #[error("unsupported dtype {dtype} for {what}")]
    UnsupportedDType { dtype: DType, what: &'static str },
    /// Inputs that must share a dtype do not.
    #[error("input dtypes differ: {a} and {b}")]
    DTypeMismatch { a: DType, b: DType },
    /// Concrete shapes that do not broadcast with numpy rules.
    #[error("shapes {a:?} and {b:?} do not broadcast")]
    Broadcast { a: Vec<usize>, b: Vec<usize> },
    /// Any other shape problem: axes, permutations, inner dims, reshape targets...
    #[error("{0}")]
    Shape(String),
    /// A Gather index outside `-size..size`.
    #[error("index {index} out of range for axis {axis} of size {size}")]
    IndexOutOfRange {
        index: i64,
        axis: usize,
        size: usize,
    },
    /// Integer division or remainder by zero.
    #[error("integer division by zero")]
    DivisionByZero,
    /// Integer power with a negative exponent.
    #[error("integer power with negative exponent {exponent}")]
    NegativeExponent { exponent: i64 },
    /// Max, Min or Mean of an integer tensor over zero elements.
    #[error("{what} of {dtype} over zero elements has no value")]
    EmptyReduction { what: &'static str, dtype: DType },
    /// The output would exceed [`crate::MAX_TENSOR_BYTES`] (or its element count overflows).
    #[error("output {dtype}{shape:?} is too large to allocate")]
    TooLarge { dtype: DType, shape: Vec<usize> },
    /// The computed output does not have the type the graph declares for it.
    #[error("output {port} is {dtype}{shape:?}, but the graph declares {declared}")]
    OutputType {
        port: usize,
        declared: Box<TensorType>,
        dtype: DType,
        shape: Vec<usize>,
    },
    /// The op cannot be evaluated on its own (a Parameter outside a graph).
    #[error("{0}")]
    Unsupported(String),
    /// A [`crate::SubgraphHook`] (the JIT) failed to run a subgraph.
    #[error("compiled kernel: {0}")]
    Hook(String),
}

/// Why a graph input was rejected by [`crate::run`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputError {
    /// The tensor's dtype is not the Parameter's.
    #[error("dtype is {got}, the parameter is {expected}")]
    DType { expected: DType, got: DType },
    /// The tensor's rank is not the Parameter's.
    #[error("rank is {got}, the parameter has rank {expected}")]
    Rank { expected: usize, got: usize },
    /// A static dim of the Parameter differs.
    #[error("dim {dim} is {got}, the parameter's dim is {expected}")]
    StaticDim {
        dim: usize,
        expected: usize,
        got: usize,
    },
    /// A symbolic dim differs from the size an earlier input bound the symbol to.
    #[error("dim {dim} ('{symbol}') is {got}, but input '{bound_by}' bound '{symbol}' to {bound}")]
    Symbol {
        dim: usize,
        symbol: String,
        got: usize,
        bound: usize,
        bound_by: String,
    },
}

/// An interpreter error: what failed, where, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InterpError {
    /// [`crate::run`] got the wrong number of inputs.
    #[error("graph '{graph}' expects {expected} inputs, got {got}")]
    InputCount {
        graph: String,
        expected: usize,
        got: usize,
    },
    /// A graph input does not match its Parameter.
    #[error("graph '{graph}': input {index} '{name}': {reason}")]
    Input {
        graph: String,
        index: usize,
        name: String,
        reason: Box<InputError>,
    },
    /// One op failed. `node` is `None` when the op was evaluated with [`crate::eval_op`].
    #[error("{}: {reason}", at(.node, .op))]
    Op {
        node: Option<String>,
        op: &'static str,
        reason: OpError,
    },
    /// An op inside the body of a Subgraph node failed.
    #[error("{} body: {error}", at(.node, "Subgraph"))]
    Subgraph {
        node: Option<String>,
        #[source]
        error: Box<InterpError>,
    },
    /// The graph itself is malformed (a cycle, a reference to a missing value...).
    #[error("graph '{graph}': {error}")]
    Graph {
        graph: String,
        #[source]
        error: IrError,
    },
}

fn at(node: &Option<String>, op: &str) -> String {
    match node {
        Some(n) => format!("node '{n}' ({op})"),
        None => op.to_string(),
    }
}
