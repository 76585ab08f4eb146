//! snipjit: a JIT subgraph compiler for CPU inference.
//!
//! Load a model ([`load_model`] for `.onnx` and `.sg` files, [`parse_model`] for `.sg`
//! text, or build a [`Graph`] directly), compile it with a [`Compiler`], and run the
//! [`CompiledModel`] on [`Tensor`]s. Dynamic dims stay dynamic: one compiled model
//! serves every input shape its graph allows.
//!
//! [`Compiler::compile`] tokenizes the graph into fusable subgraphs; elementwise
//! subgraphs become shape-agnostic x86-64 kernels (AVX-512 or AVX2), compiled once per
//! broadcast pattern; everything else (and any subgraph the JIT cannot take) runs on
//! the reference interpreter (`snipjit-interp`).
//!
//! ```
//! use snipjit::ir::{BinaryOp, Op};
//! use snipjit::{Compiler, DType, Dim, Graph, Options, Shape, Tensor, TensorType};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // y = x * 2 for x: f32[N]
//! let mut g = Graph::new("double");
//! let x = g.add_input("x", TensorType::new(DType::F32, Shape::from_iter([Dim::sym("N")])));
//! let two = g.add_op("two", Op::Constant(Tensor::scalar_f32(2.0)), &[])?;
//! let y = g.add_op("y", Op::Binary(BinaryOp::Mul), &[x, two])?;
//! g.add_output("out", y);
//!
//! let model = Compiler::new(Options::default())?.compile(g)?;
//! let out = model.run_named([("x", Tensor::from_f32(&[3], vec![1.0, 2.0, 3.0])?)])?;
//! assert_eq!(out[0].as_f32(), Some(&[2.0f32, 4.0, 6.0][..]));
//! # Ok(())
//! # }
//! ```

use std::path::Path;

mod error;
pub mod fuzz;
mod jit;
mod model;
pub mod npy;
mod options;
mod stats;

pub use error::Error;
pub use model::{CompiledModel, Compiler, ValueInfo};
pub use options::{IsaChoice, MAX_THREADS, Options};
pub use stats::{Stats, SubgraphStats};

/// The graph IR crate, for building graphs by hand (ops, nodes, the verifier).
pub use snipjit_ir as ir;
pub use snipjit_ir::{DType, Dim, Graph, Shape, Tensor, TensorData, TensorType};

/// Loads a model file: `.onnx` (ONNX protobuf) or `.sg` (snipjit text), chosen by
/// the file extension (case-insensitive); any other extension is an error.
pub fn load_model(path: &Path) -> Result<Graph, Error> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let read_err = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    match ext.as_deref() {
        Some("onnx") => {
            let bytes = std::fs::read(path).map_err(read_err)?;
            snipjit_ir::onnx::import_bytes(&bytes).map_err(|source| Error::Onnx {
                path: path.to_path_buf(),
                source,
            })
        }
        Some("sg") => {
            let text = std::fs::read_to_string(path).map_err(read_err)?;
            parse_model(&text, &path.display().to_string())
        }
        _ => Err(Error::UnknownModelFormat {
            path: path.to_path_buf(),
        }),
    }
}

/// Parses a model in the `.sg` text format; `file` names it in error messages.
pub fn parse_model(text: &str, file: &str) -> Result<Graph, Error> {
    Ok(snipjit_ir::text::parse(text, file)?)
}
