//! Regression files of the differential fuzzer (`snipjit fuzz --shrink DIR` writes
//! them; the format is in `snipjit::fuzz::regression_file`: `.sg` text whose
//! `# input:` comment lines carry the input values).
//!
//! - `tests/regressions/*.sg` must pass: every ISA of this CPU, 1 and 3 executor
//!   threads, with and without guard pages, judged as the fuzzer judges.
//! - An open bug's shrunk file would go into `tests/regressions/known/` with a test that
//!   it still fails; there is none today (the last two, Elu(-0) and Pow(-inf, x), are
//!   fixed and their files moved up here).

use std::path::{Path, PathBuf};

use snipjit::fuzz::{self, FuzzConfig, Outcome, guard::GuardAlloc};

#[global_allocator]
static ALLOC: GuardAlloc = GuardAlloc;

fn sg_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sg"))
        .collect();
    files.sort();
    files
}

fn regressions() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions")
}

/// Every run of `path`: (ISA, threads, guarded, outcome).
fn runs(path: &Path) -> Vec<(String, usize, bool, Outcome)> {
    let text = std::fs::read_to_string(path).unwrap();
    let case = fuzz::parse_regression(&text, &path.display().to_string())
        .unwrap_or_else(|e| panic!("{e}"));
    let cfg = FuzzConfig::default();
    let mut out = vec![];
    for &isa in &cfg.isas {
        for threads in [1, 3] {
            for guarded in [false, true] {
                let o = fuzz::check_case(&case, isa, threads, &cfg, guarded);
                out.push((isa.name().to_string(), threads, guarded, o));
            }
        }
    }
    out
}

#[test]
fn regressions_pass() {
    if fuzz::available_isas().is_empty() {
        eprintln!("SKIPPED: regression files (this CPU has neither AVX-512 nor AVX2)");
        return;
    }
    let files = sg_files(&regressions());
    assert!(files.len() >= 3, "regression files are missing");
    let mut failures = vec![];
    for f in &files {
        for (isa, threads, guarded, o) in runs(f) {
            if o != Outcome::Pass {
                failures.push(format!(
                    "{}: {isa} x{threads}{}: {o}",
                    f.display(),
                    if guarded { " guarded" } else { "" }
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The files parse back to the same text (the printer writes what the parser reads),
/// and their input lines round-trip bit-exactly (NaN, -0 and denormals included).
#[test]
fn files_round_trip() {
    let files = sg_files(&regressions());
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let case = fuzz::parse_regression(&text, "r.sg").unwrap();
        let again = fuzz::regression_file(&case, "c");
        let back = fuzz::parse_regression(&again, "again.sg").unwrap();
        assert_eq!(
            snipjit::ir::text::print(&back.graph),
            snipjit::ir::text::print(&case.graph)
        );
        let bits = |c: &fuzz::Case| -> Vec<Vec<u32>> {
            c.inputs
                .iter()
                .map(|t| match &t.data {
                    snipjit::TensorData::F32(v) => v.iter().map(|x| x.to_bits()).collect(),
                    _ => (0..t.numel()).map(|i| t.data.get_i64(i) as u32).collect(),
                })
                .collect()
        };
        assert_eq!(bits(&back), bits(&case), "{}", f.display());
    }
}

/// A malformed header is an error naming the file, not a panic.
#[test]
fn bad_input_lines_are_errors() {
    let model = "graph g(x: f32[2]) {\n  y: f32[2] = Abs(x)\n  return y\n}\n";
    let err = |text: &str| {
        fuzz::parse_regression(text, "bad.sg")
            .unwrap_err()
            .to_string()
    };
    assert!(err(model).contains("0 input lines for 1 graph inputs"));
    let wrong_name = format!("# input: z: f32[2] = Constant([1, 2])\n{model}");
    assert!(err(&wrong_name).contains("input 0 is 'x', not 'z'"));
    let two = format!(
        "# input: x: f32[2] = Constant([1, 2])\n# input: w: f32[2] = Constant([1, 2])\n{model}"
    );
    assert!(err(&two).contains("more input lines than graph inputs"));
    let bad_literal = format!("# input: x: f32[2] = Constant([1])\n{model}");
    assert!(err(&bad_literal).contains("needs 2 elements"));
}

/// The shrinker on a failure that does not depend on any bug: with bit-exact
/// comparison (a negative absolute tolerance) and no op-by-op re-check, an inexact
/// Exp differs from the interpreter's in the last bit somewhere. The shrinker must cut
/// the model down to that Exp and a few elements, and the file must still fail.
#[test]
fn shrinker_reduces_an_inexact_op() {
    let cfg = FuzzConfig {
        ulps: 0,
        rel_tol: 0.0,
        abs_tol: -1.0,
        op_by_op: false,
        ..FuzzConfig::default()
    };
    let Some(&isa) = cfg.isas.first() else {
        eprintln!("SKIPPED: shrinker test (this CPU has neither AVX-512 nor AVX2)");
        return;
    };
    let xs: Vec<f32> = (0..3 * 37)
        .map(|i| (i as f32 * 0.37).sin() * 20.0)
        .collect();
    let text = format!(
        "# input: x: f32[3, 37] = Constant({xs:?})\n\
         graph g(x: f32[N, C]) {{\n\
           a: f32[N, C] = Abs(x)\n\
           e: f32[N, C] = Exp(x)\n\
           s: f32[N, C] = Add(e, a)\n\
           m: f32[N, C] = Mul(s, a)\n\
           r: f32[N, C] = Relu(x)\n\
           return m, r\n\
         }}\n"
    );
    let case = fuzz::parse_regression(&text, "big.sg").unwrap();
    assert!(
        matches!(
            fuzz::check_case(&case, isa, 1, &cfg, false),
            Outcome::Mismatch(_)
        ),
        "Exp is bit-exact on all 111 inputs: pick other inputs"
    );
    let s = fuzz::shrink(&case, isa, 1, &cfg, false, 500).expect("the case fails");
    let ops: Vec<&str> = s
        .case
        .graph
        .nodes
        .iter()
        .filter(|n| n.op.name() != "Parameter" && n.op.name() != "Result")
        .map(|n| n.op.name())
        .collect();
    let file = fuzz::regression_file(&s.case, "shrunk");
    assert!(ops.contains(&"Exp") && ops.len() <= 2, "{file}");
    assert_eq!(s.case.graph.outputs.len(), 1, "{file}");
    let numel: usize = s.case.inputs.iter().map(|t| t.numel()).sum();
    assert!(numel <= 2, "{file}");
    let back = fuzz::parse_regression(&file, "shrunk.sg").unwrap();
    assert!(
        matches!(
            fuzz::check_case(&back, isa, 1, &cfg, false),
            Outcome::Mismatch(_)
        ),
        "{file}"
    );
}
