//! Filetests: each `tests/filetests/*.sg` holds an input graph, then the expected
//! tokenized graph and report as comment lines after `# expect:`.
//!
//! ```text
//! # test tokenize
//! # config: max_data_pointers=4 allow_pointer_spill=false
//! graph g(x: f32[N]) { ... }
//!
//! # expect:
//! # graph g(x: f32[N]) { ... }
//! # <report>
//! ```
//!
//! The `config:` line is optional (fields of `TokenizeConfig`, defaults otherwise).
//! On a mismatch the runner prints a line diff; with `SNIPJIT_BLESS=1` it rewrites
//! the expectation instead. It also checks that the tokenized graph verifies and
//! that its text parses back to the same graph, and that the reference interpreter
//! computes bitwise the same outputs before and after, on random inputs.

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use snipjit_ir::{text, verify};
use snipjit_tokenize::{TokenizeConfig, tokenize_with_report};

const EXPECT: &str = "# expect:";

fn filetest_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/filetests")
}

/// Reads `# config: k=v ...` from the header comments.
fn parse_config(src: &str, file: &str) -> Result<TokenizeConfig, String> {
    let mut cfg = TokenizeConfig::default();
    for line in src.lines() {
        let Some(rest) = line.trim().strip_prefix("# config:") else {
            continue;
        };
        for kv in rest.split_whitespace() {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("{file}: config item '{kv}' is not key=value"))?;
            let bad = |e: &dyn std::fmt::Display| format!("{file}: config {k}: {e}");
            match k {
                "max_data_pointers" => cfg.max_data_pointers = v.parse().map_err(|e| bad(&e))?,
                "allow_pointer_spill" => {
                    cfg.allow_pointer_spill = v.parse().map_err(|e| bad(&e))?
                }
                "max_ops" => cfg.max_ops = v.parse().map_err(|e| bad(&e))?,
                "min_ops" => cfg.min_ops = v.parse().map_err(|e| bad(&e))?,
                "mha" => cfg.mha = v.parse().map_err(|e| bad(&e))?,
                _ => return Err(format!("{file}: unknown config key '{k}'")),
            }
        }
    }
    Ok(cfg)
}

/// Runs one filetest; returns the actual expectation text (without `# ` prefixes).
fn run_one(input: &str, file: &str) -> Result<String, String> {
    if !input.lines().any(|l| l.trim() == "# test tokenize") {
        return Err(format!("{file}: missing '# test tokenize' header"));
    }
    let cfg = parse_config(input, file)?;
    let g = text::parse(input, file).map_err(|e| e.to_string())?;
    let (out, report) = tokenize_with_report(&g, &cfg).map_err(|e| format!("{file}: {e}"))?;
    verify(&out).map_err(|e| format!("{file}: tokenized graph does not verify: {e}"))?;
    let printed = text::print(&out);
    let back = text::parse(&printed, file)
        .map_err(|e| format!("{file}: printed graph does not parse back: {e}\n{printed}"))?;
    if back != out {
        return Err(format!(
            "{file}: printed graph parses back to a different graph\n{printed}"
        ));
    }
    for seed in 0..3 {
        common::same_results(&g, &out, seed).map_err(|e| format!("{file}: {e}"))?;
    }
    Ok(format!("{printed}\n{report}"))
}

/// The input part of a file (before `# expect:`) and the expected text after it.
fn split(src: &str) -> (String, Option<String>) {
    let Some(at) = src.find(&format!("\n{EXPECT}\n")) else {
        return (src.to_string(), None);
    };
    let input = format!("{}\n", src[..at].trim_end());
    let expected = src[at + EXPECT.len() + 2..]
        .lines()
        .map(|l| {
            l.strip_prefix("# ")
                .unwrap_or(l.strip_prefix('#').unwrap_or(l))
        })
        .fold(String::new(), |mut s, l| {
            s.push_str(l);
            s.push('\n');
            s
        });
    (input, Some(expected))
}

fn render(input: &str, actual: &str) -> String {
    let mut out = input.trim_end().to_string();
    out.push_str("\n\n");
    out.push_str(EXPECT);
    out.push('\n');
    for l in actual.trim_end().lines() {
        if l.is_empty() {
            out.push_str("#\n");
        } else {
            let _ = writeln!(out, "# {l}");
        }
    }
    out
}

/// A line diff (longest common subsequence): `-` expected, `+` actual.
fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            let _ = writeln!(out, "  {}", a[i]);
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            let _ = writeln!(out, "- {}", a[i]);
            i += 1;
        } else {
            let _ = writeln!(out, "+ {}", b[j]);
            j += 1;
        }
    }
    out
}

#[test]
fn filetests() {
    let bless = std::env::var("SNIPJIT_BLESS").is_ok_and(|v| v == "1");
    let mut files: Vec<PathBuf> = std::fs::read_dir(filetest_dir())
        .expect("tests/filetests exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sg"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no filetests found");
    let mut failures = Vec::new();
    for path in &files {
        let file = path
            .file_name()
            .expect("a file")
            .to_string_lossy()
            .into_owned();
        let src = std::fs::read_to_string(path).expect("readable filetest");
        let (input, expected) = split(&src);
        let actual = match run_one(&input, &file) {
            Ok(a) => a,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        if expected.as_deref().map(str::trim_end) == Some(actual.trim_end()) {
            continue;
        }
        if bless {
            std::fs::write(path, render(&input, &actual) + "\n").expect("writable filetest");
            eprintln!("blessed {file}");
        } else {
            let expected = expected.unwrap_or_default();
            failures.push(format!(
                "{file}: output differs (- expected, + actual); SNIPJIT_BLESS=1 rewrites it\n{}",
                diff(expected.trim_end(), actual.trim_end())
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} filetests failed:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn diff_marks_changed_lines() {
    assert_eq!(
        diff("a\nb\nc\n", "a\nx\nc\nd\n"),
        "  a\n- b\n+ x\n  c\n+ d\n"
    );
}

#[test]
fn split_and_render_round_trip() {
    let input = "# test tokenize\ngraph g() {\n}\n";
    let rendered = render(input, "line one\n\n  indented\n");
    let (i, e) = split(&rendered);
    assert_eq!(i, "# test tokenize\ngraph g() {\n}\n");
    assert_eq!(e.as_deref(), Some("line one\n\n  indented\n"));
}
