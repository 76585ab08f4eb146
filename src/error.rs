//! The facade's error type.

use std::path::PathBuf;

use snipjit_ir::{DType, TensorType};

/// Everything that can go wrong loading, compiling or running a model.
///
/// Input-validation variants name the offending input, so a caller (and the CLI)
/// can report exactly which tensor to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model file could not be read.
    #[error("cannot read '{}': {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The model path has an extension other than `.onnx` or `.sg`.
    #[error("cannot tell the format of '{}': expected a .onnx or .sg file", path.display())]
    UnknownModelFormat { path: PathBuf },
    /// A `.sg` text model does not parse (the message starts with `file:line:col`).
    #[error(transparent)]
    Parse(#[from] snipjit_ir::text::ParseError),
    /// An ONNX model could not be imported.
    #[error("{}: {source}", path.display())]
    Onnx {
        path: PathBuf,
        #[source]
        source: snipjit_ir::onnx::OnnxError,
    },
    /// The graph failed verification.
    #[error("invalid graph: {0}")]
    Graph(#[from] snipjit_ir::IrError),
    /// The interpreter failed while running the graph.
    #[error(transparent)]
    Interp(Box<snipjit_interp::InterpError>),
    /// A `.npy` file could not be read or written.
    #[error(transparent)]
    Npy(#[from] crate::npy::NpyError),
    /// The JIT failed (tokenizer, lowering, code generation or a kernel run).
    #[error("jit: {0}")]
    Jit(String),
    /// [`crate::Options`] are invalid.
    #[error("invalid options: {0}")]
    Options(String),
    /// `run` got a different number of inputs than the model has.
    #[error("the model takes {expected} inputs ({names}), got {got}")]
    InputCount {
        expected: usize,
        got: usize,
        names: String,
    },
    /// A model input was not given.
    #[error("missing input '{name}' ({ty})")]
    MissingInput { name: String, ty: Box<TensorType> },
    /// An input was given whose name the model does not have.
    #[error("unknown input '{name}' (the model's inputs are: {known})")]
    UnknownInput { name: String, known: String },
    /// The same input was given twice.
    #[error("input '{name}' is given more than once")]
    DuplicateInput { name: String },
    /// An input tensor whose data length does not match its own shape.
    #[error("input '{name}': shape {shape:?} needs {expected} elements, the tensor holds {got}")]
    MalformedTensor {
        name: String,
        shape: Vec<usize>,
        expected: usize,
        got: usize,
    },
    /// An input has the wrong element type.
    #[error("input '{name}': dtype is {got}, the model expects {expected}")]
    InputDType {
        name: String,
        expected: DType,
        got: DType,
    },
    /// An input has the wrong rank.
    #[error("input '{name}': shape {got:?} has rank {}, the model expects {expected} (rank {})", got.len(), expected.rank())]
    InputRank {
        name: String,
        expected: Box<snipjit_ir::Shape>,
        got: Vec<usize>,
    },
    /// A static dim of an input differs from the model's.
    #[error(
        "input '{name}': dim {axis} is {got}, the model expects {expected} (shape {got_shape:?} vs {expected_shape})"
    )]
    InputDim {
        name: String,
        axis: usize,
        expected: usize,
        got: usize,
        got_shape: Vec<usize>,
        expected_shape: Box<snipjit_ir::Shape>,
    },
    /// A symbolic dim takes different sizes in different inputs (or dims).
    #[error(
        "input '{name}': dim {axis} ('{symbol}') is {got}, but input '{bound_by}' has {symbol} = {bound}"
    )]
    SymbolMismatch {
        name: String,
        axis: usize,
        symbol: String,
        got: usize,
        bound: usize,
        bound_by: String,
    },
}

impl From<snipjit_interp::InterpError> for Error {
    fn from(e: snipjit_interp::InterpError) -> Error {
        Error::Interp(Box::new(e))
    }
}

/// Formats a list of names as `'a', 'b'` (or `none`).
pub(crate) fn name_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let v: Vec<String> = names.into_iter().map(|n| format!("'{n}'")).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}
