//! `snipjit fuzz`: differential fuzzing of the JIT against the reference interpreter
//! (see `snipjit::fuzz`).
//!
//! With `--isolate`, the cases run in a child process (this binary, `fuzz --worker`)
//! that reports each finished case on its stdout; when the child dies (a kernel fault,
//! typically a guard page hit under `--guard`), the case it was running counts as a
//! crash, is saved, and a new child carries on with the next case.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use snipjit::fuzz::{self, FuzzConfig, guard::GuardAlloc};

use crate::error::CliError;

/// Guard mode (`--guard`) places allocations between guard pages through this
/// allocator; outside guarded runs it forwards to the system allocator.
#[global_allocator]
static ALLOC: GuardAlloc = GuardAlloc;

/// Shrink attempts per failing case (each compiles and runs one candidate).
const SHRINK_BUDGET: usize = 3000;

/// Arguments of `snipjit fuzz`.
#[derive(Debug, Args)]
pub struct FuzzArgs {
    /// Number of random models to run.
    #[arg(long, default_value_t = 1000)]
    cases: u64,
    /// Seed of the run; the same seed gives the same models.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// First case index: runs cases FIRST..FIRST+CASES (to rerun one case: `--first I
    /// --cases 1`).
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// Inputs may hold NaN and +-inf.
    #[arg(long)]
    nan_inf: bool,
    /// Every K-th case has ~300k elements, so that work is split over threads (0: never).
    #[arg(long, default_value_t = 50)]
    big_every: u64,
    /// Run every case with its inputs, outputs and intermediate tensors between
    /// PROT_NONE guard pages, so an out-of-bounds kernel access faults (best with
    /// --isolate, which counts such a fault as a crash and goes on).
    #[arg(long)]
    guard: bool,
    /// Run the cases in a child process, restarted after a fatal signal: kernel faults
    /// count as crashes instead of ending the run.
    #[arg(long)]
    isolate: bool,
    /// Write each failing case as DIR/seed<S>_case<I>.sg.
    #[arg(long, value_name = "DIR")]
    save_failures: Option<PathBuf>,
    /// Shrink each failing case and write it as a regression file
    /// DIR/seed<S>_case<I>.sg (inputs in `# input:` lines).
    #[arg(long, value_name = "DIR")]
    shrink: Option<PathBuf>,
    /// Count every end-to-end difference past the tolerance as a mismatch, without
    /// the op-by-op re-check on the JIT's own values that passes amplified in-bound
    /// errors.
    #[arg(long)]
    end_to_end: bool,
    /// Internal: run as the child of --isolate, reporting each case on stdout.
    #[arg(long, hide = true)]
    worker: bool,
}

/// Failure kinds of one case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Pass,
    /// A pass whose end-to-end difference every op explains.
    Amplified,
    Mismatch,
    Crash,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Pass => "pass",
            Kind::Amplified => "amplified",
            Kind::Mismatch => "mismatch",
            Kind::Crash => "crash",
        }
    }
}

/// Counts and progress lines.
struct Tally {
    total: u64,
    done: u64,
    mismatches: u64,
    crashes: u64,
    amplified: u64,
    start: Instant,
    last_report: Instant,
}

impl Tally {
    fn record(&mut self, kind: Kind) {
        match kind {
            Kind::Pass => {}
            Kind::Amplified => self.amplified += 1,
            Kind::Mismatch => self.mismatches += 1,
            Kind::Crash => self.crashes += 1,
        }
        self.done += 1;
        let step = (self.total / 20).max(1);
        if self.done.is_multiple_of(step) || self.last_report.elapsed() >= Duration::from_secs(1) {
            self.last_report = Instant::now();
            eprintln!(
                "[{:>3}%] {}/{} cases, {} mismatches, {} crashes, {:.1} s",
                self.done * 100 / self.total.max(1),
                self.done,
                self.total,
                self.mismatches,
                self.crashes,
                self.start.elapsed().as_secs_f64()
            );
        }
    }
}

fn config(args: &FuzzArgs) -> FuzzConfig {
    FuzzConfig {
        nan_inf: args.nan_inf,
        big_every: args.big_every,
        guard_every: u64::from(args.guard),
        op_by_op: !args.end_to_end,
        ..FuzzConfig::default()
    }
}

fn create_dir(dir: &Path) -> Result<(), CliError> {
    std::fs::create_dir_all(dir).map_err(|source| CliError::Output {
        path: dir.to_path_buf(),
        source,
    })
}

fn write_file(path: PathBuf, text: &str) -> Result<(), CliError> {
    std::fs::write(&path, text).map_err(|source| CliError::Output { path, source })
}

/// Runs the cases, printing progress and failures on stderr and the summary line on
/// stdout. Returns whether every case passed.
pub fn fuzz(args: &FuzzArgs, out: &mut impl Write) -> Result<bool, CliError> {
    let cfg = config(args);
    if cfg.isas.is_empty() {
        return Err(CliError::Bench(
            "this CPU supports neither AVX-512 nor AVX2: nothing to fuzz".into(),
        ));
    }
    for dir in [&args.save_failures, &args.shrink].into_iter().flatten() {
        create_dir(dir)?;
    }
    let end = args.first.saturating_add(args.cases);
    if args.worker {
        for i in args.first..end {
            let kind = run_one(args, &cfg, i)?;
            writeln!(out, "@ {i} {}", kind.word()).map_err(CliError::Stdout)?;
            out.flush().map_err(CliError::Stdout)?;
        }
        return Ok(true);
    }
    let isas: Vec<&str> = cfg.isas.iter().map(|i| i.name()).collect();
    eprintln!(
        "fuzzing {} cases from case {}, seed {}, ISAs {}, threads {:?}{}{}",
        args.cases,
        args.first,
        args.seed,
        isas.join(", "),
        cfg.threads,
        if args.guard { ", guard pages" } else { "" },
        if args.isolate {
            ", in a child process"
        } else {
            ""
        },
    );
    let now = Instant::now();
    let mut tally = Tally {
        total: args.cases,
        done: 0,
        mismatches: 0,
        crashes: 0,
        amplified: 0,
        start: now,
        last_report: now,
    };
    if args.isolate {
        supervise(args, &cfg, end, &mut tally)?;
    } else {
        for i in args.first..end {
            tally.record(run_one(args, &cfg, i)?);
        }
    }
    writeln!(
        out,
        "cases run: {}, mismatches: {}, crashes: {}, amplified: {}, time: {:.1} s",
        tally.done,
        tally.mismatches,
        tally.crashes,
        tally.amplified,
        tally.start.elapsed().as_secs_f64()
    )
    .map_err(CliError::Stdout)?;
    Ok(tally.mismatches == 0 && tally.crashes == 0)
}

/// Runs case `i`, reporting, saving and shrinking it if it fails.
fn run_one(args: &FuzzArgs, cfg: &FuzzConfig, i: u64) -> Result<Kind, CliError> {
    if std::env::var("SNIPJIT_FUZZ_ABORT_AT").is_ok_and(|v| v == i.to_string()) && args.worker {
        // Fault injection for the tests of --isolate: the worker dies as a kernel
        // fault would kill it.
        std::process::abort();
    }
    let r = fuzz::run_case(args.seed, i, cfg);
    let kind = match r.outcome {
        fuzz::Outcome::Pass => {
            if let Some(a) = &r.amplified {
                eprintln!(
                    "case {i}: pass: every op is within tolerance on the JIT's values; amplified downstream: {a}"
                );
                return Ok(Kind::Amplified);
            }
            return Ok(Kind::Pass);
        }
        fuzz::Outcome::Mismatch(_) => Kind::Mismatch,
        fuzz::Outcome::Crash { .. } => Kind::Crash,
    };
    eprintln!("case {i}: {}", r.outcome);
    if let Some(c) = &r.culprit {
        eprintln!("  first op out of tolerance: {c}");
    }
    let file = format!("seed{}_case{i}.sg", args.seed);
    if let Some(dir) = &args.save_failures {
        write_file(dir.join(&file), &r.failure_file())?;
    }
    if let Some(dir) = &args.shrink {
        match r.shrink(cfg, SHRINK_BUDGET) {
            Some(s) => {
                let path = dir.join(&file);
                eprintln!(
                    "  shrunk in {} attempts to {}: {}",
                    s.attempts,
                    path.display(),
                    s.outcome
                );
                write_file(path, &s.file(&r))?;
            }
            None => eprintln!("  not shrunk: the failure is outside the JIT or did not repeat"),
        }
    }
    Ok(kind)
}

/// Runs the cases `next..end` in child processes, one after another, recording every
/// case a child reports and a crash for each case a child dies in.
fn supervise(
    args: &FuzzArgs,
    cfg: &FuzzConfig,
    end: u64,
    tally: &mut Tally,
) -> Result<(), CliError> {
    let exe = std::env::current_exe()
        .map_err(|e| CliError::Bench(format!("cannot find this program to isolate: {e}")))?;
    let mut next = args.first;
    while next < end {
        let mut cmd = Command::new(&exe);
        cmd.args(["fuzz", "--worker", "--seed", &args.seed.to_string()])
            .args(["--first", &next.to_string()])
            .args(["--cases", &(end - next).to_string()])
            .args(["--big-every", &args.big_every.to_string()]);
        if args.nan_inf {
            cmd.arg("--nan-inf");
        }
        if args.guard {
            cmd.arg("--guard");
        }
        if args.end_to_end {
            cmd.arg("--end-to-end");
        }
        for (flag, dir) in [
            ("--save-failures", &args.save_failures),
            ("--shrink", &args.shrink),
        ] {
            if let Some(d) = dir {
                cmd.arg(flag).arg(d);
            }
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| CliError::Bench(format!("cannot start a fuzz worker: {e}")))?;
        let stdout = child.stdout.take().expect("stdout was piped");
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let mut words = line.split_whitespace();
            let (Some("@"), Some(i), Some(kind)) = (words.next(), words.next(), words.next())
            else {
                continue;
            };
            let Ok(i) = i.parse::<u64>() else { continue };
            let kind = match kind {
                "mismatch" => Kind::Mismatch,
                "amplified" => Kind::Amplified,
                "crash" => Kind::Crash,
                _ => Kind::Pass,
            };
            tally.record(kind);
            next = i + 1;
        }
        let status = child
            .wait()
            .map_err(|e| CliError::Bench(format!("fuzz worker: {e}")))?;
        if next >= end {
            break;
        }
        if status.success() {
            return Err(CliError::Bench(format!(
                "the fuzz worker stopped at case {next} without reporting it"
            )));
        }
        eprintln!("case {next}: crash: the worker process died ({status})");
        if let Some(dir) = &args.save_failures {
            save_killer(dir, args.seed, next, cfg, &status.to_string())?;
        }
        tally.record(Kind::Crash);
        next += 1;
    }
    Ok(())
}

/// Saves the model of a case that killed its worker, regenerated from its seed.
fn save_killer(
    dir: &Path,
    seed: u64,
    i: u64,
    cfg: &FuzzConfig,
    status: &str,
) -> Result<(), CliError> {
    let model = match fuzz::generate(seed, i, cfg) {
        Ok(c) => snipjit::ir::text::print(&c.graph),
        Err(e) => format!("# not regenerated: {e}\n"),
    };
    let text = format!(
        "# snipjit fuzz: seed {seed} case {i} (regenerate: snipjit::fuzz::generate({seed}, {i}, ..))\n# crash: the worker process died ({status})\n{model}"
    );
    write_file(dir.join(format!("seed{seed}_case{i}.sg")), &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(cases: u64, seed: u64) -> FuzzArgs {
        FuzzArgs {
            cases,
            seed,
            first: 0,
            nan_inf: false,
            big_every: 0,
            guard: false,
            isolate: false,
            end_to_end: false,
            save_failures: None,
            shrink: None,
            worker: false,
        }
    }

    fn summary(out: Vec<u8>) -> String {
        let s = String::from_utf8(out).unwrap();
        // Drop the time, which varies.
        s.split(", time:").next().unwrap().to_string()
    }

    #[test]
    fn passing_run_prints_the_summary() {
        let mut out = Vec::new();
        assert!(fuzz(&args(5, 1), &mut out).unwrap());
        assert_eq!(
            summary(out),
            "cases run: 5, mismatches: 0, crashes: 0, amplified: 0"
        );
    }

    /// Guard mode works in this binary (the allocator is installed) and passes.
    #[test]
    fn guarded_run_passes() {
        let before = fuzz::guard::guarded_allocations();
        let mut out = Vec::new();
        let a = FuzzArgs {
            guard: true,
            ..args(3, 1)
        };
        assert!(fuzz(&a, &mut out).unwrap());
        assert_eq!(
            summary(out),
            "cases run: 3, mismatches: 0, crashes: 0, amplified: 0"
        );
        assert!(fuzz::guard::guarded_allocations() > before);
    }

    /// Seed 7 case 143 fails end to end (`--end-to-end`, no op-by-op re-check): Mish(-104)
    /// is -0 on the JIT instead of -7e-44 (within the stated bound), and a division by it
    /// makes the difference infinite. `--first` runs it alone; the run counts it, saves
    /// the model and shrinks it to a regression file that parses back and still fails
    /// end to end.
    #[test]
    fn failing_case_is_counted_saved_and_shrunk() {
        let dir = std::env::temp_dir().join(format!("snipjit-fuzz-test-{}", std::process::id()));
        let mut out = Vec::new();
        let a = FuzzArgs {
            first: 143,
            end_to_end: true,
            save_failures: Some(dir.join("saved")),
            shrink: Some(dir.join("shrunk")),
            ..args(1, 7)
        };
        assert!(!fuzz(&a, &mut out).unwrap());
        assert_eq!(
            summary(out),
            "cases run: 1, mismatches: 1, crashes: 0, amplified: 0"
        );
        let saved = std::fs::read_to_string(dir.join("saved/seed7_case143.sg")).unwrap();
        assert!(saved.starts_with("# snipjit fuzz: seed 7 case 143 "));
        assert!(snipjit::parse_model(&saved, "saved.sg").is_ok());
        let shrunk = std::fs::read_to_string(dir.join("shrunk/seed7_case143.sg")).unwrap();
        assert!(shrunk.starts_with("# snipjit regression: fuzz seed 7 case 143, shrunk to "));
        let case = fuzz::parse_regression(&shrunk, "shrunk.sg").unwrap();
        assert!(
            case.graph.nodes.len() < saved.lines().count() / 2,
            "{shrunk}"
        );
        let cfg = FuzzConfig {
            op_by_op: false,
            ..FuzzConfig::default()
        };
        let fails = cfg.isas.iter().any(|&isa| {
            [1, 3]
                .iter()
                .any(|&t| fuzz::check_case(&case, isa, t, &cfg, false) != fuzz::Outcome::Pass)
        });
        assert!(fails, "the shrunk case still fails:\n{shrunk}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
