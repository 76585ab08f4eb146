//! Differential fuzzing in CI: random models on the JIT (every ISA of this CPU, 1-4
//! executor threads) against the reference interpreter. `snipjit fuzz` runs the same
//! generator at any scale.
//!
//! The cases listed in `KNOWN_*` fail today because of real bugs the fuzzer found
//! (seed 1 / seed 2 of the generator as of this commit); they are kept out of the
//! green runs and checked by the ignored test `known_failures`:
//! - (fixed by falling back to the interpreter) "cannot take the domain shape": the
//!   elementwise tokenizer fuses values of different shapes into one subgraph and makes
//!   a broadcast-shaped value (e.g. `f32[N, 1]` inside an `[N, C]` domain) a subgraph
//!   output, which the kernel cannot write; such calls now run on the interpreter
//!   (`CompiledModel::fallbacks` counts them). Still open: fuse such regions so that
//!   the kernel can take them.
//! - Mod with `|a/b| >= 2^23` (large or denormal operands): `fma(-trunc(a/b), b, a)`
//!   gives results far outside `[0, |b|)`, or `-inf` when `a/b` overflows.
//! - Pow with exponent +-0.5 (sqrt fast path): `pow(-0, -0.5)` gives -inf (IEEE:
//!   +inf), `pow(-inf, 0.5)` NaN (+inf), `pow(-inf, -0.5)` NaN (+0).
//! - Swish, GeluTanh, GeluErf, Mish at `x = -inf`: the JIT returns -0 (the limit),
//!   the interpreter NaN (`-inf * 0`).
//! - Signed zeros: Min/Max of `-0` and `+0` pick different zeros in the JIT and the
//!   interpreter, and the JIT's `Tanh(-0)` is `+0`; a following Reciprocal or Div shows
//!   it as +inf vs -inf.
//!
//! A rarer report is the fuzzer's own: cancellation after an inexact op (e.g.
//! `SquaredDifference(x, sqrt((x - y)^2))`) can amplify an in-bound emitter error past
//! the tolerance (1 case in 4000 at seed 11). Seeds 1, 2 and 4 have none.

use snipjit::fuzz::{self, FuzzConfig};

/// Seed 1 (finite inputs), cases below 500 that fail today.
const KNOWN_FINITE: &[u64] = &[133, 139, 187, 198, 229, 264, 385, 400];

/// Seed 2 (NaN and infinities in the inputs), cases below 200 that fail today.
const KNOWN_NAN_INF: &[u64] = &[6, 16, 29, 57, 60, 67, 83, 90, 170, 183];

/// Seed 4 with large cases, cases below 5 that fail today (none since the interpreter
/// takes over calls a kernel cannot run).
const KNOWN_BIG: &[u64] = &[];

fn big() -> FuzzConfig {
    FuzzConfig {
        big_every: 1,
        ..FuzzConfig::default()
    }
}

fn nan_inf() -> FuzzConfig {
    FuzzConfig {
        nan_inf: true,
        ..FuzzConfig::default()
    }
}

/// Runs the cases of `seed` and fails with every failing case's report and model.
fn run(seed: u64, cases: impl Iterator<Item = u64>, cfg: &FuzzConfig) {
    if cfg.isas.is_empty() {
        eprintln!("SKIPPED: every fuzz run (this CPU has neither AVX-512 nor AVX2)");
        return;
    }
    if cfg.isas.len() < 2 {
        eprintln!("SKIPPED: AVX-512 runs (this CPU has no AVX-512); fuzzing AVX2 only");
    }
    let mut count = 0;
    let failures: Vec<String> = cases
        .inspect(|_| count += 1)
        .map(|i| fuzz::run_case(seed, i, cfg))
        .filter(|r| !r.passed())
        .map(|r| r.failure_file())
        .collect();
    assert!(count > 0);
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn finite_inputs() {
    run(
        1,
        (0..500).filter(|i| !KNOWN_FINITE.contains(i)),
        &FuzzConfig::default(),
    );
}

#[test]
fn nan_and_inf_inputs() {
    run(
        2,
        (0..200).filter(|i| !KNOWN_NAN_INF.contains(i)),
        &nan_inf(),
    );
}

/// The cases kept out of the runs above; see the module docs for the bugs.
#[test]
#[ignore = "fails until the bugs listed in the module docs are fixed"]
fn known_failures() {
    run(1, KNOWN_FINITE.iter().copied(), &FuzzConfig::default());
    run(2, KNOWN_NAN_INF.iter().copied(), &nan_inf());
    run(4, KNOWN_BIG.iter().copied(), &big());
}

/// The known failures still fail, each with a report and a localized value, so the
/// lists above stay honest (a fixed bug shows up here as a passing case to remove).
#[test]
fn known_failures_are_reported() {
    let cfg = FuzzConfig::default();
    if cfg.isas.is_empty() {
        eprintln!("SKIPPED: known failures (this CPU has neither AVX-512 nor AVX2)");
        return;
    }
    for &i in &KNOWN_FINITE[..5] {
        let r = fuzz::run_case(1, i, &cfg);
        assert!(
            !r.passed(),
            "seed 1 case {i} passes now: remove it from KNOWN_FINITE"
        );
        let file = r.failure_file();
        assert!(file.starts_with(&format!("# snipjit fuzz: seed 1 case {i} ")));
        snipjit::parse_model(&file, "failure.sg").expect("a saved failure parses back");
    }
    // A mismatch (not a crash) names the first differing value: case 198 is
    // `Mod(x0, |x1|)` with a denormal divisor.
    let r = fuzz::run_case(1, 198, &cfg);
    assert!(
        matches!(r.outcome, fuzz::Outcome::Mismatch(_)),
        "{}",
        r.outcome
    );
    assert!(
        r.culprit.as_deref().unwrap_or("").contains("= Mod("),
        "{:?}",
        r.culprit
    );
}

/// Generated models print as `.sg` text that parses back to the same text.
#[test]
fn models_round_trip_through_text() {
    let cfg = FuzzConfig::default();
    for i in 0..200 {
        let case = fuzz::generate(3, i, &cfg).unwrap();
        let text = snipjit::ir::text::print(&case.graph);
        let back = snipjit::parse_model(&text, "fuzz.sg").unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(snipjit::ir::text::print(&back), text);
        assert_eq!(case.inputs.len(), case.graph.inputs.len());
    }
}

/// Large cases, so that the executor splits each kernel over 2-4 threads.
#[test]
fn thread_split_cases() {
    run(4, (0..5).filter(|i| !KNOWN_BIG.contains(i)), &big());
}
