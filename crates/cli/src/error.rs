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
