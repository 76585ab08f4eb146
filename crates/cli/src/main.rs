//! The `snipjit` command-line tool.
//!
//! - `snipjit run MODEL --input NAME=FILE.npy ... [--output-dir DIR] [--threads N]
//!   [--isa auto|avx512|avx2] [--stats]`: runs a model, writes each output as a `.npy`.
//! - `snipjit dump MODEL [--fused] [--print-after PASS]... [--print-after-all] [--disasm]
//!   [--dim NAME=VALUE]... [--threads N] [--isa ...] [--format sg|dot]`: prints the model,
//!   its fused subgraphs, their linear IR, kernels and run-time values.
//! - `snipjit bench MODEL [--dim NAME=V1,V2,...]... [--threads N] [--isa ...] [--json]
//!   [--workload NAME] [--target-ms T] [--min-iters K] [--fresh-outputs]`: times the
//!   model and each subgraph over every combination of the dim values.
//! - `snipjit fuzz [--cases N] [--seed S] [--nan-inf] [--save-failures DIR]`: runs random
//!   models on the JIT and the interpreter and compares them; exits 1 on any failure.
//! - `snipjit accuracy [--op NAME,...|all] [--isa all|avx512|avx2] [--stride K]
//!   [--threads N] [--json]`: sweeps the approximated emitters over f32 bit patterns
//!   (all 2^32 by default) against f64 references; exits 1 if one exceeds its bound.
//! - `snipjit demo`: runs the embedded example model and checks it against a formula.
//!
//! Errors print one line, `error: ...`, on stderr and exit with status 1 (command-line
//! usage errors are clap's, with status 2).

mod accuracy;
mod bench;
mod bind;
mod demo;
mod dot;
mod dump;
mod error;
mod fuzz;
mod output;
mod run;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::CliError;

/// snipjit: a JIT subgraph compiler for CPU inference.
#[derive(Debug, Parser)]
#[command(name = "snipjit", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a model on .npy inputs and write its outputs as .npy files.
    Run(run::RunArgs),
    /// Print a model, its fused subgraphs, their linear IR, kernels and run-time values.
    Dump(dump::DumpArgs),
    /// Time a model and each of its subgraphs over a grid of shapes.
    Bench(bench::BenchArgs),
    /// Run random models on the JIT and on the interpreter and compare the outputs.
    Fuzz(fuzz::FuzzArgs),
    /// Sweep the approximated emitters over f32 bit patterns against f64 references.
    Accuracy(accuracy::AccuracyArgs),
    /// Run the built-in example (examples/gelu_chain.sg) and check its result.
    Demo,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut stdout = std::io::stdout().lock();
    let result = match cli.command {
        Command::Run(args) => run::run(&args, &mut stdout),
        Command::Dump(args) => dump::dump(&args, &mut stdout),
        Command::Bench(args) => bench::bench(&args, &mut stdout),
        Command::Demo => demo::demo(&mut stdout),
        Command::Accuracy(args) => match accuracy::accuracy(&args, &mut stdout) {
            Ok(true) => Ok(()),
            Ok(false) => {
                let _ = stdout.flush();
                return ExitCode::from(1);
            }
            Err(e) => Err(e),
        },
        Command::Fuzz(args) => match fuzz::fuzz(&args, &mut stdout) {
            Ok(true) => Ok(()),
            Ok(false) => {
                // The summary line is out; failures exit 1 whether or not stdout flushes.
                let _ = stdout.flush();
                return ExitCode::from(1);
            }
            Err(e) => Err(e),
        },
    };
    let result = result.and_then(|()| stdout.flush().map_err(CliError::Stdout));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`snipjit dump m.sg | head`) is the reader's choice, not an error.
        Err(CliError::Stdout(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e.to_string()));
            ExitCode::from(1)
        }
    }
}

/// Joins a possibly multi-line message into one line.
fn one_line(msg: &str) -> String {
    msg.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_become_one_line() {
        assert_eq!(one_line("a\n  b\n\nc"), "a; b; c");
        assert_eq!(one_line("plain"), "plain");
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
