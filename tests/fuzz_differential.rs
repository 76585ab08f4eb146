//! Differential fuzzing in CI: random models on the JIT (every ISA of this CPU, 1-4
//! executor threads) against the reference interpreter. `snipjit fuzz` runs the same
//! generator at any scale.
//!
//! Seeds 1 and 2 ran clean once the bugs the fuzzer found first were fixed: kernel calls
//! with subgraph outputs smaller than the domain (now run on the interpreter), Mod with
//! large quotients (no longer fused: the interpreter's fmod is exact), Pow with +-0.5 at
//! -0 and -inf, Swish/Gelu/Mish at +-inf (now the formula's NaN, as the interpreter and
//! onnxruntime give), and Min/Max of -0 and +0.
//!
//! Other seeds still find cases, kept in the ignored test `known_failures`:
//! - `KNOWN_SEED7` (finite inputs): a Div whose divisor is a zero of the other sign
//!   (+inf vs -inf, NaN vs -inf): some op upstream returns +0 where the interpreter has
//!   -0; the comparison treats the zeros as equal, so the first differing value shown
//!   is the Div.
//! - `KNOWN_SEED8` (NaN/inf inputs): the general Pow path with infinite or NaN operands
//!   (NaN where IEEE pow gives inf), and two reports of the fuzzer's own: an in-bound
//!   error of an input amplified past the tolerance by Exp (x ~ 81) and Pow.

use snipjit::fuzz::{self, FuzzConfig};

/// Seed 7 (finite inputs, `snipjit fuzz --cases 3000 --seed 7`), cases that fail today.
const KNOWN_SEED7: &[u64] = &[143, 1412];

/// Seed 8 (NaN/inf inputs, `snipjit fuzz --cases 1000 --seed 8 --nan-inf`), cases that fail
/// today.
const KNOWN_SEED8: &[u64] = &[254, 279, 299, 399, 847];

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
    run(1, 0..500, &FuzzConfig::default());
}

#[test]
fn nan_and_inf_inputs() {
    run(2, 0..200, &nan_inf());
}

/// The cases kept out of the runs above; see the module docs for the bugs.
#[test]
#[ignore = "fails until the bugs listed in the module docs are fixed"]
fn known_failures() {
    run(7, KNOWN_SEED7.iter().copied(), &FuzzConfig::default());
    run(8, KNOWN_SEED8.iter().copied(), &nan_inf());
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
    for &i in KNOWN_SEED7 {
        let r = fuzz::run_case(7, i, &cfg);
        assert!(
            !r.passed(),
            "seed 7 case {i} passes now: remove it from KNOWN_SEED7"
        );
        let file = r.failure_file();
        assert!(file.starts_with(&format!("# snipjit fuzz: seed 7 case {i} ")));
        snipjit::parse_model(&file, "failure.sg").expect("a saved failure parses back");
    }
    // A mismatch (not a crash) names the first differing value: seed 7 case 143 is a Div
    // whose divisor is a zero of the other sign.
    let r = fuzz::run_case(7, 143, &cfg);
    assert!(
        matches!(r.outcome, fuzz::Outcome::Mismatch(_)),
        "{}",
        r.outcome
    );
    assert!(
        r.culprit.as_deref().unwrap_or("").contains("= Div("),
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
