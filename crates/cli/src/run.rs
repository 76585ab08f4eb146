//! `snipjit run`: runs a model on `.npy` inputs and writes its outputs as `.npy` files.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use snipjit::{Compiler, IsaChoice, Options, Tensor};

use crate::error::CliError;
use crate::output::{OutputFile, file_names, write_all_or_nothing};

/// Arguments of `snipjit run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The model: a .onnx or .sg file.
    pub model: PathBuf,
    /// A model input, NAME=FILE.npy; repeat for every input. The name ends at the
    /// first '='.
    #[arg(long = "input", short = 'i', value_name = "NAME=FILE.npy")]
    pub inputs: Vec<String>,
    /// Where each output is written, as DIR/<output name>.npy (created if missing).
    /// Characters of an output name that cannot appear in a file name ('/', '\',
    /// control characters) become '_'.
    #[arg(long, short = 'o', value_name = "DIR", default_value = ".")]
    pub output_dir: PathBuf,
    /// Worker threads (1 to 256).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Instruction set for compiled kernels.
    #[arg(long, value_enum, default_value_t = Isa::Auto)]
    pub isa: Isa,
    /// Print compilation statistics as one JSON line on stdout (and nothing else).
    #[arg(long)]
    pub stats: bool,
}

/// `--isa` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Isa {
    /// The best ISA this CPU supports.
    Auto,
    /// AVX-512 (F, BW, DQ, VL).
    Avx512,
    /// AVX2 with FMA.
    Avx2,
}

impl From<Isa> for IsaChoice {
    fn from(isa: Isa) -> IsaChoice {
        match isa {
            Isa::Auto => IsaChoice::Auto,
            Isa::Avx512 => IsaChoice::Avx512,
            Isa::Avx2 => IsaChoice::Avx2,
        }
    }
}

/// Splits `NAME=FILE` at the first '='; both parts must be non-empty.
fn parse_input_spec(spec: &str) -> Result<(&str, PathBuf), CliError> {
    match spec.split_once('=') {
        Some((name, file)) if !name.is_empty() && !file.is_empty() => {
            Ok((name, PathBuf::from(file)))
        }
        _ => Err(CliError::InputSyntax(spec.to_string())),
    }
}

/// Runs `snipjit run`. Every output is computed before any file is written.
pub fn run(args: &RunArgs, out: &mut impl Write) -> Result<(), CliError> {
    let specs = args
        .inputs
        .iter()
        .map(|s| parse_input_spec(s))
        .collect::<Result<Vec<_>, _>>()?;
    let compiler = Compiler::new(Options {
        threads: args.threads,
        isa: args.isa.into(),
    })?;
    let model = compiler.compile(snipjit::load_model(&args.model)?)?;
    let inputs = specs
        .into_iter()
        .map(|(name, path)| Ok((name, snipjit::npy::read(&path)?)))
        .collect::<Result<Vec<(&str, Tensor)>, CliError>>()?;
    let outputs = model.run_named(inputs)?;

    let names = file_names(model.outputs().iter().map(|o| o.name.as_str()));
    let files = names
        .iter()
        .zip(&outputs)
        .map(|(file_name, t)| {
            let bytes = snipjit::npy::to_bytes(t).map_err(|reason| CliError::Output {
                path: args.output_dir.join(file_name),
                source: std::io::Error::other(reason),
            })?;
            Ok(OutputFile {
                file_name: file_name.clone(),
                bytes,
            })
        })
        .collect::<Result<Vec<_>, CliError>>()?;
    write_all_or_nothing(&args.output_dir, &files)?;

    if args.stats {
        writeln!(out, "{}", model.stats().to_json()).map_err(CliError::Stdout)?;
    } else {
        for ((info, t), file_name) in model.outputs().iter().zip(&outputs).zip(&names) {
            writeln!(
                out,
                "{}: {}{:?} -> {}",
                info.name,
                t.dtype(),
                t.shape,
                args.output_dir.join(file_name).display()
            )
            .map_err(CliError::Stdout)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_specs() {
        let (name, path) = parse_input_spec("x=a=b.npy").unwrap();
        assert_eq!((name, path), ("x", PathBuf::from("a=b.npy")));
        for bad in ["x", "=f.npy", "x=", "", "="] {
            let e = parse_input_spec(bad).unwrap_err().to_string();
            assert_eq!(e, format!("bad --input '{bad}': expected NAME=FILE.npy"));
        }
    }
}
