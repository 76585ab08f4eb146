//! The `.sg` text format: parser and printer (see docs/ir-format.md).
//!
//! ```text
//! graph silu(x: f32[N, 1024]) {
//!   s: f32[N, 1024] = Sigmoid(x)
//!   y: f32[N, 1024] = Mul(x, s)
//!   return y
//! }
//! ```
//!
//! One op a line; every value is named and typed; attributes are written in the op
//! call (`Softmax(x, axis=-1)`); a `Subgraph` node carries its body as a nested
//! `graph` block. [`print()`] writes the canonical form and [`parse`] reads it (and
//! a laxer hand-written form: types may be left out, attributes with a default may
//! be left out, comments and blank lines are allowed).
//!
//! Round trips:
//! - `print(&parse(text)?) == text` for text in canonical form (what `print` writes);
//! - `parse(&print(g))? == g` for every graph that passes [`crate::verify()`] and
//!   whose arena order is topological (every node comes after the nodes it reads),
//!   which holds for graphs built with `add_input` / `add_op` / `add_output`.
//!   Floats round-trip bit-exactly, NaN payloads included.
//!
//! The module is split in four: `lexer` (tokens with 1-based line/column),
//! `parse` (tokens to a syntax tree), `build` (the tree to a [`Graph`] through
//! [`crate::infer::infer_op`]) and `print`.

mod build;
mod lexer;
mod parse;
mod print;

use std::fmt;

use half::{bf16, f16};

pub use parse::parse;
pub use print::print;

#[cfg(doc)]
use crate::Graph;

/// A syntax or semantic error in `.sg` text, at a 1-based line and column
/// (columns count characters, not bytes).
///
/// Displays as `file:line:col: message`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{col}: {message}")]
pub struct ParseError {
    /// The file name given to [`parse`].
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// What is wrong, naming the node or value involved.
    pub message: String,
}

/// A 1-based source position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Pos {
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// Deepest nesting of `Subgraph` bodies the parser accepts (bounds its recursion).
pub(crate) const MAX_NESTING: usize = 32;

/// True for characters that may start a bare (unquoted) name.
pub fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == '/'
}

/// True for characters that may continue a bare (unquoted) name.
pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-')
}

/// Writes `name` bare when it is a valid bare name, else as a quoted string (the
/// linear-IR text form uses the same rules).
pub fn write_name(out: &mut String, name: &str) {
    let mut chars = name.chars();
    let bare = chars.next().is_some_and(is_name_start) && chars.all(is_name_char);
    if bare {
        out.push_str(name);
        return;
    }
    out.push('"');
    for c in name.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Formats a finite or infinite float (not NaN) as the shortest decimal that
/// parses back to the same f32, without a trailing `.0`.
fn fmt_non_nan_f32(v: f32) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    // `{:?}` is Rust's shortest round-trip form ("0.1", "1e-45", "100.0").
    let s = format!("{v:?}");
    match s.strip_suffix(".0") {
        Some(t) => t.to_string(),
        None => s,
    }
}

/// The text form of an f32: shortest round-trip decimal, `inf`, `-inf`, `nan`
/// (the canonical quiet NaN `0x7fc00000`) or `nan(0x…)` with the exact bits.
pub fn fmt_f32(v: f32) -> String {
    if v.is_nan() {
        let bits = v.to_bits();
        if bits == f32::NAN.to_bits() {
            "nan".into()
        } else {
            format!("nan(0x{bits:08x})")
        }
    } else {
        fmt_non_nan_f32(v)
    }
}

/// The text form of a bf16 (its exact value as an f32 decimal; NaN bits as `nan(0x…)`).
pub(crate) fn fmt_bf16(v: bf16) -> String {
    if v.is_nan() {
        let bits = v.to_bits();
        if bits == bf16::NAN.to_bits() {
            "nan".into()
        } else {
            format!("nan(0x{bits:04x})")
        }
    } else {
        fmt_non_nan_f32(v.to_f32())
    }
}

/// The text form of an f16 (its exact value as an f32 decimal; NaN bits as `nan(0x…)`).
pub(crate) fn fmt_f16(v: f16) -> String {
    if v.is_nan() {
        let bits = v.to_bits();
        if bits == f16::NAN.to_bits() {
            "nan".into()
        } else {
            format!("nan(0x{bits:04x})")
        }
    } else {
        fmt_non_nan_f32(v.to_f32())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_only_when_needed() {
        let q = |s: &str| {
            let mut o = String::new();
            write_name(&mut o, s);
            o
        };
        assert_eq!(q("x"), "x");
        assert_eq!(
            q("/enc/layer.0/MatMul_output_0"),
            "/enc/layer.0/MatMul_output_0"
        );
        assert_eq!(q("a-b"), "a-b");
        assert_eq!(q(""), "\"\"");
        assert_eq!(q("0x"), "\"0x\"");
        assert_eq!(q("input:0"), "\"input:0\"");
        assert_eq!(q("a b"), "\"a b\"");
        assert_eq!(q("q\"\\\n\u{1}é"), "\"q\\\"\\\\\\n\\u{1}é\"");
    }

    #[test]
    fn floats_print_shortest_and_exact() {
        assert_eq!(fmt_f32(1.0), "1");
        assert_eq!(fmt_f32(-0.0), "-0");
        assert_eq!(fmt_f32(0.1), "0.1");
        assert_eq!(fmt_f32(1.25), "1.25");
        assert_eq!(fmt_f32(f32::INFINITY), "inf");
        assert_eq!(fmt_f32(f32::NEG_INFINITY), "-inf");
        assert_eq!(fmt_f32(f32::NAN), "nan");
        assert_eq!(fmt_f32(f32::from_bits(0xffc0_0001)), "nan(0xffc00001)");
        assert_eq!(fmt_f32(f32::from_bits(1)), "1e-45");
        assert_eq!(fmt_bf16(bf16::from_f32(0.5)), "0.5");
        assert_eq!(fmt_f16(f16::NAN), "nan");
        for bits in [
            1u32,
            0x007f_ffff,
            0x0080_0000,
            0x7f7f_ffff,
            0x3dcc_cccd,
            0x4b80_0001,
        ] {
            let v = f32::from_bits(bits);
            assert_eq!(fmt_f32(v).parse::<f32>().unwrap().to_bits(), bits);
        }
    }
}
