//! `snipjit dump`: prints a model.
//!
//! The model is loaded, then rendered in the chosen format. Later stages of the
//! compiler (the tokenized graph, the IR after a named pass, the kernels'
//! disassembly) slot in between: each is a step that transforms what is dumped,
//! selected by its own flag.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use snipjit::Graph;

use crate::error::CliError;

/// Arguments of `snipjit dump`.
#[derive(Debug, Args)]
pub struct DumpArgs {
    /// The model: a .onnx or .sg file.
    pub model: PathBuf,
    /// How to print the graph.
    #[arg(long, value_enum, default_value_t = DumpFormat::Sg)]
    pub format: DumpFormat,
}

/// Output formats of `snipjit dump`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DumpFormat {
    /// snipjit's .sg text format (parses back to the same graph).
    Sg,
}

/// Runs `snipjit dump`.
pub fn dump(args: &DumpArgs, out: &mut impl Write) -> Result<(), CliError> {
    let graph = snipjit::load_model(&args.model)?;
    out.write_all(render(&graph, args.format).as_bytes())
        .map_err(CliError::Stdout)
}

/// Renders `graph` in `format`.
fn render(graph: &Graph, format: DumpFormat) -> String {
    match format {
        DumpFormat::Sg => snipjit::ir::text::print(graph),
    }
}
