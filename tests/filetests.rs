//! Filetests: text in, expected text out (Cranelift style).
//!
//! Every `*.lir` file under `tests/filetests/passes` and `tests/filetests/lir` is one
//! test. A file starts with a header, then the input, then the expected output as
//! `;` comment lines after a `; expect:` line:
//!
//! ```text
//! test pass mul_add_to_fma
//! target avx512
//! ; Why this case matters (comment lines are ignored).
//!
//! lir k values=3
//!   ...
//!
//! ; expect:
//! ; lir k values=3
//! ; ...
//! ```
//!
//! Test kinds:
//! - `test pass NAME`: the input is linear IR; it must verify; the pass named `NAME`
//!   runs on it for the target, the verifier runs, and the printed IR is the output
//!   (`error: ...` when the pass or the verifier fails).
//! - `test pipeline [bcast_inner=a,b]`: the input is a `.sg` graph, lowered as a
//!   subgraph body by the whole pipeline (inputs named after `bcast_inner=` are
//!   broadcast along the inner dim); the output is the final IR.
//! - `test mha-pass NAME [dims=B=2,S=100]`: the input is a `.sg` attention body (one
//!   block, as the tokenizer outlines it); the MHA lowering runs and the output is its
//!   IR after the pass `NAME` (`build` for the initial IR); with `dims=`, followed by
//!   the scratch layout the plan evaluates for those dims. Files under
//!   `tests/filetests/mha` end in `.mha` (not `.sg`: the header and expectations make
//!   them filetests, not graphs the `.sg` round-trip test reads).
//! - `test verify-error`: the input is linear IR the verifier must reject; the output
//!   is its error message.
//! - `test parse-error`: the input is linear IR text the parser must reject; the
//!   output is its error message.
//!
//! Targets: `avx512` and `avx2` (the x64 backend's real targets) and `tiny8`, a
//! made-up target with 4 lanes and 8 vector registers, for spilling.
//!
//! On a mismatch the runner prints a line diff (`-` expected, `+` actual) and fails.
//! `SNIPJIT_BLESS=1 cargo test --test filetests` rewrites the expectations instead.
//! `SNIPJIT_FILETEST=fma` runs only the files whose path contains `fma`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use snipjit_lower::Target;
use snipjit_lower::lir::ExprKind;
use snipjit_lower::lir_text::{parse_lir, print_lir};
use snipjit_lower::mha::pipeline::{MHA_PASSES, mha_pass_names};
use snipjit_lower::mha::text::print as print_mha;
use snipjit_lower::mha::{DimValues, MhaTarget, lower_mha_body};
use snipjit_lower::pipeline::{CONTROL_FLOW, DATA_FLOW, pass_by_name};
use snipjit_lower::verify::verify;
use snipjit_x64::Isa;

const DIRS: &[&str] = &[
    "tests/filetests/passes",
    "tests/filetests/lir",
    "tests/filetests/mha",
];
const EXPECT: &str = "; expect:";

fn tiny8_scratch(k: &ExprKind) -> usize {
    match k {
        ExprKind::Unary(_) | ExprKind::PowStatic(_) => 1,
        _ => 0,
    }
}

/// A small target that runs out of registers quickly: 4 lanes, 8 vector registers,
/// one scratch register for every unary op and static power.
const TINY8: Target = Target {
    name: "tiny8",
    lanes: 4,
    vregs: 8,
    scratch: tiny8_scratch,
};

fn target(name: &str) -> Option<Target> {
    match name {
        "avx512" => Some(snipjit_x64::codegen::target(Isa::Avx512)),
        "avx2" => Some(snipjit_x64::codegen::target(Isa::Avx2)),
        "tiny8" => Some(TINY8),
        _ => None,
    }
}

/// One parsed test file.
struct FileTest {
    /// `test ...` words after `test`.
    kind: Vec<String>,
    target: Option<String>,
    /// The input, with the header and `;` comment lines blanked so that parse errors
    /// point at the file's own lines.
    input: String,
    /// The expected output (the `;` prefix removed), if the file has one.
    expect: Option<String>,
    /// The file's lines before `; expect:` (what blessing keeps).
    before_expect: Vec<String>,
}

fn read_test(text: &str) -> Result<FileTest, String> {
    let lines: Vec<&str> = text.lines().collect();
    let expect_at = lines.iter().position(|l| l.trim_end() == EXPECT);
    let body_end = expect_at.unwrap_or(lines.len());
    let mut kind = None;
    let mut target = None;
    let mut input = String::new();
    let mut in_header = true;
    for (n, line) in lines[..body_end].iter().enumerate() {
        let t = line.trim();
        if in_header && let Some(rest) = t.strip_prefix("test ") {
            if kind.is_some() {
                return Err(format!("line {}: a second 'test' line", n + 1));
            }
            kind = Some(
                rest.split_whitespace()
                    .map(String::from)
                    .collect::<Vec<_>>(),
            );
            input.push('\n');
        } else if in_header && let Some(rest) = t.strip_prefix("target ") {
            target = Some(rest.trim().to_string());
            input.push('\n');
        } else if t.is_empty() || t.starts_with(';') {
            input.push('\n');
        } else {
            in_header = false;
            input.push_str(line);
            input.push('\n');
        }
    }
    let kind = kind.ok_or("the file has no 'test KIND' line")?;
    let expect = match expect_at {
        None => None,
        Some(at) => {
            let mut out = vec![];
            for (n, line) in lines[at + 1..].iter().enumerate() {
                let Some(rest) = line.strip_prefix(';') else {
                    return Err(format!(
                        "line {}: every line after '{EXPECT}' must start with ';'",
                        at + n + 2
                    ));
                };
                out.push(rest.strip_prefix(' ').unwrap_or(rest));
            }
            Some(normalize(&out.join("\n")))
        }
    };
    Ok(FileTest {
        kind,
        target,
        input,
        expect,
        before_expect: lines[..body_end].iter().map(|l| l.to_string()).collect(),
    })
}

/// Trailing spaces and trailing blank lines do not count.
fn normalize(s: &str) -> String {
    let lines: Vec<&str> = s.lines().map(str::trim_end).collect();
    let mut out = lines.join("\n");
    while out.ends_with('\n') {
        out.pop();
    }
    out.trim_start_matches('\n').to_string()
}

/// Runs one test; `Ok(actual output)` or `Err(why the test itself is broken)`.
fn run(t: &FileTest, path: &str) -> Result<String, String> {
    let words: Vec<&str> = t.kind.iter().map(String::as_str).collect();
    let need_target = || -> Result<Target, String> {
        let name = t
            .target
            .as_deref()
            .ok_or("this kind of test needs a 'target NAME' line")?;
        target(name).ok_or_else(|| format!("unknown target '{name}' (avx512, avx2, tiny8)"))
    };
    match words.as_slice() {
        ["pass", name] => {
            let target = need_target()?;
            let pass = pass_by_name(name).ok_or_else(|| {
                let names: Vec<&str> = DATA_FLOW
                    .iter()
                    .chain(CONTROL_FLOW)
                    .map(|p| p.name())
                    .collect();
                format!("unknown pass '{name}' (one of {})", names.join(", "))
            })?;
            let mut lir = parse_lir(&t.input, path).map_err(|e| e.to_string())?;
            verify(&lir).map_err(|e| format!("the input does not verify: {e}"))?;
            if let Err(e) = pass.run(&mut lir, &target) {
                return Ok(format!("error: {e}"));
            }
            let text = print_lir(&lir);
            check_round_trip(&text)?;
            Ok(match verify(&lir) {
                Ok(()) => text,
                Err(e) => format!("error: verifier after the pass: {e}\n{text}"),
            })
        }
        ["pipeline", opts @ ..] => {
            let target = need_target()?;
            let g = snipjit_ir::text::parse(&t.input, path).map_err(|e| e.to_string())?;
            let mut bcast = vec![false; g.inputs.len()];
            for opt in opts {
                let names = opt
                    .strip_prefix("bcast_inner=")
                    .ok_or_else(|| format!("unknown pipeline option '{opt}'"))?;
                for n in names.split(',') {
                    let i = g
                        .inputs
                        .iter()
                        .position(|&p| g.node(p).name == n)
                        .ok_or_else(|| format!("bcast_inner names '{n}', not an input"))?;
                    bcast[i] = true;
                }
            }
            match snipjit_lower::lower(&g, &bcast, &target, &mut |_, _| {}) {
                Ok(lir) => {
                    let text = print_lir(&lir);
                    check_round_trip(&text)?;
                    Ok(text)
                }
                Err(e) => Ok(format!("error: {e}")),
            }
        }
        ["mha-pass", name, opts @ ..] => run_mha(t, path, name, opts),
        ["verify-error"] => {
            let lir = parse_lir(&t.input, path).map_err(|e| e.to_string())?;
            Ok(match verify(&lir) {
                Ok(()) => "the verifier accepted the input".into(),
                Err(e) => e.to_string(),
            })
        }
        ["parse-error"] => Ok(match parse_lir(&t.input, path) {
            Ok(lir) => format!("the parser accepted the input:\n{}", print_lir(&lir)),
            Err(e) => e.to_string(),
        }),
        _ => Err(format!(
            "unknown test kind 'test {}' (pass NAME, pipeline, mha-pass NAME, verify-error, parse-error)",
            t.kind.join(" ")
        )),
    }
}

/// `test mha-pass NAME [dims=..]`: the MHA IR after pass `NAME`, and the scratch layout.
fn run_mha(t: &FileTest, path: &str, name: &str, opts: &[&str]) -> Result<String, String> {
    let tname = t
        .target
        .as_deref()
        .ok_or("this kind of test needs a 'target NAME' line")?;
    let target = MhaTarget::by_name(tname)
        .ok_or_else(|| format!("unknown MHA target '{tname}' (avx512, avx2)"))?;
    let names = mha_pass_names();
    if !names.contains(&name) {
        return Err(format!(
            "unknown MHA pass '{name}' (one of {})",
            names.join(", ")
        ));
    }
    let mut dims = DimValues::new();
    for opt in opts {
        let list = opt
            .strip_prefix("dims=")
            .ok_or_else(|| format!("unknown mha-pass option '{opt}'"))?;
        for kv in list.split(',') {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("'{kv}' is not NAME=VALUE"))?;
            let v: i64 = v.parse().map_err(|e| format!("'{kv}': {e}"))?;
            dims.bind(k, v).map_err(|e| e.to_string())?;
        }
    }
    let g = snipjit_ir::text::parse(&t.input, path).map_err(|e| e.to_string())?;
    let mut text = None;
    let plan = lower_mha_body(&g, &target, &mut |pass, ir| {
        if pass == name {
            text = Some(print_mha(ir));
        }
    });
    let mut out = text.unwrap_or_default();
    match plan {
        Err(e) => {
            let _ = write!(out, "error: {e}");
        }
        Ok(plan) if !opts.is_empty() => {
            let dv: Vec<String> = dims.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(out, "\nscratch for {}:", dv.join(", "));
            match plan.scratch_layout(&dims) {
                Ok(l) => out.push_str(&l.to_string()),
                Err(e) => {
                    let _ = write!(out, "error: {e}");
                }
            }
        }
        Ok(_) => {}
    }
    Ok(out)
}

/// Every output the runner compares must also read back as itself.
fn check_round_trip(text: &str) -> Result<(), String> {
    let back = parse_lir(text, "output").map_err(|e| format!("the output does not parse: {e}"))?;
    if print_lir(&back) != text {
        return Err("the output does not print back identically".into());
    }
    Ok(())
}

/// A unified-style diff of two texts (`-` expected, `+` actual), three lines of context.
fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    // Longest common subsequence table, from the ends.
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    // (tag, line, old line number, new line number)
    let mut ops: Vec<(char, &str, usize, usize)> = vec![];
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', a[i], i, j));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', a[i], i, j));
            i += 1;
        } else {
            ops.push(('+', b[j], i, j));
            j += 1;
        }
    }
    const CONTEXT: usize = 3;
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k].0 != ' ').collect();
    let mut out = String::from("--- expected\n+++ actual\n");
    let mut k = 0;
    while k < changed.len() {
        let start = changed[k].saturating_sub(CONTEXT);
        let mut end = changed[k] + CONTEXT + 1;
        while k + 1 < changed.len() && changed[k + 1] <= end + CONTEXT {
            k += 1;
            end = changed[k] + CONTEXT + 1;
        }
        let end = end.min(ops.len());
        let hunk = &ops[start..end];
        let old_len = hunk.iter().filter(|o| o.0 != '+').count();
        let new_len = hunk.iter().filter(|o| o.0 != '-').count();
        let _ = writeln!(
            out,
            "@@ -{},{old_len} +{},{new_len} @@",
            hunk[0].2 + 1,
            hunk[0].3 + 1
        );
        for (tag, line, _, _) in hunk {
            let _ = writeln!(out, "{tag}{line}");
        }
        k += 1;
    }
    out
}

/// The file with its expectation block replaced by `actual`.
fn blessed(t: &FileTest, actual: &str) -> String {
    let mut keep = t.before_expect.clone();
    while keep.last().is_some_and(|l| l.trim().is_empty()) {
        keep.pop();
    }
    let mut out = keep.join("\n");
    out.push_str("\n\n");
    out.push_str(EXPECT);
    out.push('\n');
    for line in actual.lines() {
        if line.is_empty() {
            out.push_str(";\n");
        } else {
            let _ = writeln!(out, "; {line}");
        }
    }
    out
}

fn test_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![];
    for dir in DIRS {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let ext = if dir.ends_with("mha") { "mha" } else { "lir" };
            if p.extension().is_some_and(|x| x == ext) {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn filetests() {
    let bless = std::env::var("SNIPJIT_BLESS").is_ok_and(|v| v == "1");
    let only = std::env::var("SNIPJIT_FILETEST").ok();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut failures = vec![];
    let mut ran = 0;
    for path in test_files() {
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .display()
            .to_string();
        if only.as_deref().is_some_and(|f| !rel.contains(f)) {
            continue;
        }
        ran += 1;
        let text = std::fs::read_to_string(&path).expect("a listed test file is readable");
        let t = match read_test(&text) {
            Ok(t) => t,
            Err(e) => {
                failures.push(format!("{rel}: {e}"));
                continue;
            }
        };
        let actual = match run(&t, &rel) {
            Ok(a) => normalize(&a),
            Err(e) => {
                failures.push(format!("{rel}: {e}"));
                continue;
            }
        };
        if t.expect.as_deref() == Some(actual.as_str()) {
            continue;
        }
        if bless {
            std::fs::write(&path, blessed(&t, &actual)).expect("test files are writable");
            eprintln!("blessed {rel}");
            continue;
        }
        match &t.expect {
            None => failures.push(format!(
                "{rel}: no '{EXPECT}' block; the output is:\n{actual}\n\
                 (SNIPJIT_BLESS=1 writes it into the file)"
            )),
            Some(e) => failures.push(format!("{rel}: output differs\n{}", diff(e, &actual))),
        }
    }
    assert!(
        ran > 0 || only.is_some(),
        "no filetests found under {DIRS:?}"
    );
    assert!(
        failures.is_empty(),
        "{} of {ran} filetests failed (SNIPJIT_BLESS=1 rewrites expectations):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Each pass of the pipeline has at least one `test pass` file named after it.
#[test]
fn every_pass_has_a_filetest() {
    let files = test_files();
    let missing: Vec<&str> = DATA_FLOW
        .iter()
        .chain(CONTROL_FLOW)
        .map(|p| p.name())
        .filter(|name| {
            !files.iter().any(|f| {
                std::fs::read_to_string(f).is_ok_and(|t| {
                    t.lines()
                        .next()
                        .is_some_and(|l| l.trim() == format!("test pass {name}"))
                })
            })
        })
        .collect();
    assert!(missing.is_empty(), "passes without a filetest: {missing:?}");
    let missing: Vec<&str> = MHA_PASSES
        .iter()
        .map(|p| p.name())
        .filter(|name| {
            !files.iter().any(|f| {
                std::fs::read_to_string(f).is_ok_and(|t| {
                    t.lines().next().is_some_and(|l| {
                        l.trim()
                            .strip_prefix("test mha-pass ")
                            .and_then(|r| r.split_whitespace().next())
                            == Some(name)
                    })
                })
            })
        })
        .collect();
    assert!(
        missing.is_empty(),
        "MHA passes without a filetest: {missing:?}"
    );
}

#[test]
fn diff_marks_changed_lines_with_context() {
    let d = diff("a\nb\nc\nd\ne\nf\ng\nh\ni", "a\nb\nc\nd\nE\nf\ng\nh\ni\nj");
    assert_eq!(
        d,
        "--- expected\n+++ actual\n@@ -2,8 +2,9 @@\n b\n c\n d\n-e\n+E\n f\n g\n h\n i\n+j\n"
    );
    assert_eq!(diff("x", "x"), "--- expected\n+++ actual\n");
}

#[test]
fn blessing_replaces_only_the_expectation() {
    let file = "test verify-error\n; why\n\nlir k values=0\n\n; expect:\n; old\n";
    let t = read_test(file).unwrap();
    assert_eq!(t.expect.as_deref(), Some("old"));
    let new = blessed(&t, "line one\n\nline three");
    assert_eq!(
        new,
        "test verify-error\n; why\n\nlir k values=0\n\n; expect:\n; line one\n;\n; line three\n"
    );
    assert_eq!(
        read_test(&new).unwrap().expect.as_deref(),
        Some("line one\n\nline three")
    );
    // The input keeps its line numbers: header and comments become blank lines.
    assert_eq!(t.input, "\n\n\nlir k values=0\n\n");
}
