//! `snipjit fuzz`: differential fuzzing of the JIT against the reference interpreter
//! (see `snipjit::fuzz`).

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use snipjit::fuzz::{self, FuzzConfig};

use crate::error::CliError;

/// Arguments of `snipjit fuzz`.
#[derive(Debug, Args)]
pub struct FuzzArgs {
    /// Number of random models to run.
    #[arg(long, default_value_t = 1000)]
    cases: u64,
    /// Seed of the run; the same seed gives the same models.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Inputs may hold NaN and +-inf.
    #[arg(long)]
    nan_inf: bool,
    /// Every K-th case has ~300k elements, so that work is split over threads (0: never).
    #[arg(long, default_value_t = 50)]
    big_every: u64,
    /// Write each failing case as DIR/seed<S>_case<I>.sg.
    #[arg(long, value_name = "DIR")]
    save_failures: Option<PathBuf>,
}

/// Runs the cases, printing progress and failures on stderr and the summary line on
/// stdout. Returns whether every case passed.
pub fn fuzz(args: &FuzzArgs, out: &mut impl Write) -> Result<bool, CliError> {
    let cfg = FuzzConfig {
        nan_inf: args.nan_inf,
        big_every: args.big_every,
        ..FuzzConfig::default()
    };
    if cfg.isas.is_empty() {
        return Err(CliError::Bench(
            "this CPU supports neither AVX-512 nor AVX2: nothing to fuzz".into(),
        ));
    }
    let isas: Vec<&str> = cfg.isas.iter().map(|i| i.name()).collect();
    eprintln!(
        "fuzzing {} cases, seed {}, ISAs {}, threads {:?}",
        args.cases,
        args.seed,
        isas.join(", "),
        cfg.threads
    );
    if let Some(dir) = &args.save_failures {
        std::fs::create_dir_all(dir).map_err(|source| CliError::Output {
            path: dir.clone(),
            source,
        })?;
    }
    let start = Instant::now();
    let mut last_report = start;
    let step = (args.cases / 20).max(1);
    let (mut mismatches, mut crashes) = (0u64, 0u64);
    for i in 0..args.cases {
        let r = fuzz::run_case(args.seed, i, &cfg);
        match r.outcome {
            fuzz::Outcome::Pass => {}
            fuzz::Outcome::Mismatch(_) => mismatches += 1,
            fuzz::Outcome::Crash { .. } => crashes += 1,
        }
        if !r.passed() {
            eprintln!("case {i}: {}", r.outcome);
            if let Some(c) = &r.culprit {
                eprintln!("  first differing value: {c}");
            }
            if let Some(dir) = &args.save_failures {
                let path = dir.join(format!("seed{}_case{i}.sg", args.seed));
                std::fs::write(&path, r.failure_file())
                    .map_err(|source| CliError::Output { path, source })?;
            }
        }
        let done = i + 1;
        if done % step == 0 || last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            eprintln!(
                "[{:>3}%] {done}/{} cases, {mismatches} mismatches, {crashes} crashes, {:.1} s",
                done * 100 / args.cases,
                args.cases,
                start.elapsed().as_secs_f64()
            );
        }
    }
    writeln!(
        out,
        "cases run: {}, mismatches: {mismatches}, crashes: {crashes}",
        args.cases
    )
    .map_err(CliError::Stdout)?;
    Ok(mismatches == 0 && crashes == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(cases: u64, seed: u64, save_failures: Option<PathBuf>) -> FuzzArgs {
        FuzzArgs {
            cases,
            seed,
            nan_inf: false,
            big_every: 0,
            save_failures,
        }
    }

    #[test]
    fn passing_run_prints_the_summary() {
        let mut out = Vec::new();
        assert!(fuzz(&args(5, 1, None), &mut out).unwrap());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "cases run: 5, mismatches: 0, crashes: 0\n"
        );
    }

    /// Seed 7 case 143 fails today (a zero of the other sign reaching a Div, see
    /// tests/fuzz_differential.rs): the run reports it and saves the model.
    #[test]
    fn failing_case_is_counted_and_saved() {
        let dir = std::env::temp_dir().join(format!("snipjit-fuzz-test-{}", std::process::id()));
        let mut out = Vec::new();
        assert!(!fuzz(&args(144, 7, Some(dir.clone())), &mut out).unwrap());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "cases run: 144, mismatches: 1, crashes: 0\n"
        );
        let saved = std::fs::read_to_string(dir.join("seed7_case143.sg")).unwrap();
        assert!(saved.starts_with("# snipjit fuzz: seed 7 case 143 "));
        assert!(snipjit::parse_model(&saved, "saved.sg").is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
