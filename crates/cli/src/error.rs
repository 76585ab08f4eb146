//! The CLI's errors; `main` prints each as one `error: ...` line.

use std::path::PathBuf;

/// Everything a CLI command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Loading, compiling or running the model failed, or a `.npy` input is bad.
    #[error(transparent)]
    Snipjit(#[from] snipjit::Error),
    /// A `--input` argument is not `NAME=FILE`.
    #[error("bad --input '{0}': expected NAME=FILE.npy")]
    InputSyntax(String),
    /// A `--dim` argument is not `NAME=VALUE` (or `NAME=V1,V2,...` for bench).
    #[error("bad --dim '{spec}': expected {expected}")]
    DimSyntax {
        spec: String,
        expected: &'static str,
    },
    /// The `--dim` bindings do not give every input a concrete shape, or name a
    /// symbol no input has.
    #[error("{0}")]
    Dim(String),
    /// `--print-after` names no pass of the pipeline.
    #[error("unknown pass '{name}' for --print-after; valid passes: {valid}")]
    UnknownPass { name: String, valid: String },
    /// Running the model on the `--dim` shapes (to find each subgraph's input shapes)
    /// failed.
    #[error("running the model on the --dim shapes failed: {0}")]
    Capture(String),
    /// A kernel or subgraph failed to compile or run.
    #[error("subgraph '{subgraph}': {reason}")]
    Subgraph { subgraph: String, reason: String },
    /// A `bench` option is out of range, or the bench could not start.
    #[error("{0}")]
    Bench(String),
    /// An `accuracy` option is bad, or a sweep could not run.
    #[error("{0}")]
    Accuracy(String),
    /// Writing an output file (or creating the output directory) failed; nothing was
    /// left behind.
    #[error("cannot write '{}': {source}", path.display())]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Writing to stdout failed.
    #[error("cannot write to stdout: {0}")]
    Stdout(#[source] std::io::Error),
    /// The demo's result differs from its reference formula.
    #[error(
        "demo result differs from the reference formula: relative error {err:e} at element {index} exceeds {tol:e}"
    )]
    DemoMismatch { err: f64, index: usize, tol: f64 },
}

impl From<snipjit::npy::NpyError> for CliError {
    fn from(e: snipjit::npy::NpyError) -> CliError {
        CliError::Snipjit(e.into())
    }
}
