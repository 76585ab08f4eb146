//! snipjit graph IR: ops, dtypes, shapes with dynamic dims, the `.sg` text format,
//! ONNX import and the verifier.
//!
//! A [`Graph`] is an arena of [`Node`]s; each node has an [`Op`], reads [`ValueRef`]s
//! and defines typed outputs. Dims are static or dynamic ([`Dim`]); shape inference
//! ([`infer`]) follows numpy broadcasting.

pub mod dtype;
pub mod graph;
pub mod infer;
pub mod op;
pub mod shape;
pub mod tensor;
pub mod verify;

pub use dtype::DType;
pub use graph::{Graph, Node, NodeId, Output, ValueRef};
pub use op::{BinaryOp, GeluApprox, Op, ReduceKind, Subgraph, SubgraphKind, UnaryOp};
pub use shape::{Dim, Shape, TensorType, broadcast_concrete, broadcast_shapes};
pub use tensor::{Tensor, TensorData, TensorSizeError};
pub use verify::verify;

/// Errors of the graph IR.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IrError {
    /// A node is malformed or ill-typed.
    #[error("node '{node}' ({op}): {reason}")]
    Node {
        node: String,
        op: String,
        reason: String,
    },
    /// The graph has a cycle through this node.
    #[error("graph has a cycle through node '{node}'")]
    Cycle { node: String },
    /// A graph-level problem.
    #[error("{0}")]
    Graph(String),
}

pub mod onnx;
pub mod text;
