//! ONNX import (.onnx protobuf files, default-domain opsets 13 to 21).
//!
//! [`import_file`] / [`import_bytes`] decode a `ModelProto` (messages in [`proto`]) and
//! build a [`Graph`]: graph inputs become Parameters (`dim_param` dims stay dynamic and
//! keep their symbol), initializers and `Constant` nodes become Constant nodes, every
//! supported ONNX node becomes one IR node (or a short chain of them, e.g. Gemm), and
//! each graph output becomes a Result named after it. Values keep their ONNX names.
//! An op the IR has no equivalent for is an error naming the op and the node; nothing
//! is imported as an opaque node.
//!
//! The importer never panics on malformed input: every size claimed by the file is
//! checked against the data actually present before anything is allocated from it.

mod import;
pub mod proto;

use std::path::{Path, PathBuf};

use crate::{Graph, IrError};

pub use import::decode_tensor;

/// The lowest default-domain opset the importer accepts.
pub const MIN_OPSET: i64 = 13;
/// The highest default-domain opset the importer accepts.
///
/// Opsets 19 to 21 change only types or attributes the importer refuses anyway for the
/// ops it imports (float8/int4/string types, Cast's `saturate` for float8, bool
/// ReduceMax/Min) and add Gelu; opset 22 is not checked yet, so it is refused.
/// (Found by comparing `onnx.defs.get_schema(op, v).since_version` for every imported op.)
pub const MAX_OPSET: i64 = 21;

/// Largest static dim the importer accepts (keeps every later size computation far
/// from overflow).
pub const MAX_DIM: usize = u32::MAX as usize;

/// Errors of the ONNX importer.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The file could not be read.
    #[error("cannot read '{}': {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The bytes are not a valid `ModelProto`.
    #[error("not a valid ONNX model (protobuf decode failed): {0}")]
    Decode(#[from] prost::DecodeError),
    /// The model imports an unsupported version of the default domain.
    #[error(
        "default-domain opset {version} is not supported (snipjit imports opsets {MIN_OPSET} to {MAX_OPSET})"
    )]
    Opset { version: i64 },
    /// An op the importer does not know (or a non-default domain).
    #[error("unsupported op '{}' at node '{node}'", qualified(domain, op_type))]
    UnsupportedOp {
        op_type: String,
        domain: String,
        node: String,
    },
    /// A known op used in a form the IR cannot express (e.g. non-constant Clip bounds).
    #[error("node '{node}' ({op_type}): {reason}")]
    Unsupported {
        node: String,
        op_type: String,
        reason: String,
    },
    /// An attribute is missing, of the wrong type, or has an invalid value.
    #[error("node '{node}' ({op_type}): attribute '{attr}': {reason}")]
    BadAttribute {
        node: String,
        op_type: String,
        attr: String,
        reason: String,
    },
    /// A tensor (initializer or constant) cannot be decoded.
    #[error("tensor '{name}': {reason}")]
    BadTensor { name: String, reason: String },
    /// A graph input's or output's declared type cannot be used.
    #[error("value '{name}': {reason}")]
    BadValueInfo { name: String, reason: String },
    /// A node reads a value nothing defines, or lacks a required input.
    #[error("node '{node}' ({op_type}): missing input '{input}'")]
    MissingInput {
        node: String,
        op_type: String,
        input: String,
    },
    /// The model is structurally invalid (no graph, a name defined twice, a cycle...).
    #[error("invalid model: {0}")]
    Model(String),
    /// Shape/type inference or the verifier rejected the built graph.
    #[error("graph error: {0}")]
    Ir(#[from] IrError),
}

fn qualified(domain: &str, op_type: &str) -> String {
    if domain.is_empty() || domain == "ai.onnx" {
        op_type.to_string()
    } else {
        format!("{domain}.{op_type}")
    }
}

/// Reads and imports the ONNX model at `path`.
pub fn import_file(path: &Path) -> Result<Graph, OnnxError> {
    let bytes = std::fs::read(path).map_err(|source| OnnxError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    import_bytes(&bytes)
}

/// Imports an ONNX model from its protobuf bytes.
pub fn import_bytes(bytes: &[u8]) -> Result<Graph, OnnxError> {
    use prost::Message;
    let model = proto::ModelProto::decode(bytes)?;
    import_model(&model)
}

/// Imports an already decoded model.
pub fn import_model(model: &proto::ModelProto) -> Result<Graph, OnnxError> {
    import::Importer::run(model)
}
