//! The text form of the linear IR: printer and parser (docs/ir-format.md, "Linear IR").
//!
//! ```
//! use snipjit_lower::lir_text::{parse_lir, print_lir};
//!
//! let text = "\
//! lir column_bias values=4
//!   in0 x: f32[N, C]
//!   in1 b: f32[N, 1] bcast_inner
//!   out0 y: f32[N, C]
//!   loop L0: dim=1 step=1 main ports=[in0 inc=stride1 - main0/16, in1 inc=stride1, out0 inc=stride1 - main0/16]
//!   loop L1: dim=0 step=16 main ports=[in0 inc=16, in1(fixed), out0 inc=16]
//!   scratch [r31]
//!   LoopBegin L0
//!     LoopBegin L1
//!       %0:r0 = Load in0
//!       %1:r1 = BroadcastLoad in1
//!       %2:r2 = Add %0:r0, %1:r1
//!       %3:r0 = Relu %2:r2
//!       Store out0, %3:r0
//!     LoopEnd L1
//!   LoopEnd L0
//! ";
//! let lir = parse_lir(text, "column_bias.lir")?;
//! snipjit_lower::verify::verify(&lir)?;
//! assert_eq!(print_lir(&lir), text);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The text carries everything in a [`Lir`]: `parse_lir(&print_lir(lir))` equals `lir`
//! for every `Lir` (floats bit-exactly; a NaN scalar round-trips, though `Lir`'s
//! `PartialEq` never finds NaN equal to itself), and `print_lir(&parse_lir(text)?)`
//! equals `text` for text in canonical form. Two things are left out of the text when
//! they equal what the parser infers:
//! - an expression's loop list (`@[L0,L1]`) when it equals the loops whose brackets
//!   are open at the expression (for `LoopBegin L` the open loops and `L`, for
//!   `LoopEnd L` the loops open before it);
//! - the length of the location table (`locations N`), which is `values` once any
//!   value has a location, else 0.
//!
//! The parser checks syntax only: invalid IR (a use before its definition, an unknown
//! loop, unbalanced brackets) parses, so the verifier can be tested on text. It never
//! panics; an error names the file, a 1-based line and column, and the reason.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use snipjit_ir::text::{is_name_char, is_name_start, write_name};
use snipjit_ir::{BinaryOp, DType, Dim, Shape, UnaryOp};

use crate::lir::{
    Expr, ExprKind, Lir, Location, LoopId, LoopInfo, LoopKind, LoopPort, Offset, PhysReg, Port,
    PortInfo, Quantity, ValueId,
};

/// The most values (and location-table entries) a parsed `Lir` may have; bounds the
/// memory a hostile `values=` can make the parser allocate.
pub const MAX_VALUES: u32 = 1 << 20;

/// A syntax error in linear-IR text, at a 1-based line and column (in characters).
///
/// Displays as `file:line:col: message`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{col}: {message}")]
pub struct LirParseError {
    /// The file name given to [`parse_lir`].
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

// ---------------------------------------------------------------------------------
// Printer
// ---------------------------------------------------------------------------------

/// Prints `lir` in canonical text form (ending with a newline). Never fails: invalid
/// IR prints as well, and [`parse_lir`] reads it back unchanged.
pub fn print_lir(lir: &Lir) -> String {
    let mut s = String::new();
    s.push_str("lir ");
    write_name(&mut s, &lir.name);
    let _ = writeln!(s, " values={}", lir.num_values);
    for (i, p) in lir.inputs.iter().enumerate() {
        port_line(&mut s, "in", i, p);
    }
    for (i, p) in lir.outputs.iter().enumerate() {
        port_line(&mut s, "out", i, p);
    }
    for (i, l) in lir.loops.iter().enumerate() {
        let ports: Vec<String> = l.ports.iter().map(loop_port_text).collect();
        let kind = match l.kind {
            LoopKind::Main => "main",
            LoopKind::Tail => "tail",
        };
        let _ = write!(s, "  loop L{i}: dim={} step={}", l.dim, l.step);
        if let Some(w) = l.work {
            let _ = write!(s, " work={w}");
        }
        let _ = writeln!(
            s,
            " {kind}{} ports=[{}]",
            if l.once { " once" } else { "" },
            ports.join(", ")
        );
    }
    if !lir.scratch_regs.is_empty() {
        let _ = writeln!(s, "  scratch [{}]", reg_list(&lir.scratch_regs));
    }
    if lir.spill_slots > 0 || !lir.spill_temps.is_empty() {
        let _ = writeln!(
            s,
            "  spill_slots {} temps [{}]",
            lir.spill_slots,
            reg_list(&lir.spill_temps)
        );
    }
    let any_loc = lir.locations.iter().any(Option::is_some);
    let inferred = if any_loc { lir.num_values as usize } else { 0 };
    if lir.locations.len() != inferred {
        let _ = writeln!(s, "  locations {}", lir.locations.len());
    }
    // Locations of values no expression mentions would otherwise be lost.
    let mentioned: HashSet<u32> = lir
        .exprs
        .iter()
        .flat_map(|e| e.ins.iter().chain(&e.out))
        .map(|v| v.0)
        .collect();
    for (v, loc) in lir.locations.iter().enumerate() {
        if let Some(loc) = loc
            && !mentioned.contains(&(v as u32))
        {
            let _ = writeln!(s, "  value %{v}:{}", loc_text(*loc));
        }
    }
    let mut open: Vec<LoopId> = vec![];
    for e in &lir.exprs {
        let default = default_loops(&mut open, &e.kind);
        // LoopEnd is printed at the depth of the loop it closes.
        let depth = match e.kind {
            ExprKind::LoopBegin(_) => open.len().saturating_sub(1),
            _ => open.len(),
        };
        s.push_str(&"  ".repeat(depth + 1));
        if let Some(o) = e.out {
            let _ = write!(s, "{} = ", value_text(lir, o));
        }
        s.push_str(&e.kind.name());
        if !e.ins.is_empty() {
            let sep = if matches!(e.kind, ExprKind::Store { .. }) {
                ", "
            } else {
                " "
            };
            let ins: Vec<String> = e.ins.iter().map(|&v| value_text(lir, v)).collect();
            let _ = write!(s, "{sep}{}", ins.join(", "));
        }
        if e.loops.as_slice() != default.as_slice() {
            let l: Vec<String> = e.loops.iter().map(|l| format!("L{}", l.0)).collect();
            let _ = write!(s, "  @[{}]", l.join(","));
        }
        s.push('\n');
    }
    s
}

/// Steps the stack of open loop brackets over an expression of kind `kind` and returns
/// the loop list an expression there has unless the text says otherwise. The printer
/// and the parser share it, so what one leaves out the other infers.
fn default_loops(open: &mut Vec<LoopId>, kind: &ExprKind) -> Vec<LoopId> {
    match *kind {
        ExprKind::LoopBegin(l) => {
            open.push(l);
            open.clone()
        }
        ExprKind::LoopEnd(_) => {
            let d = open.clone();
            open.pop();
            d
        }
        _ => open.clone(),
    }
}

fn port_line(s: &mut String, prefix: &str, i: usize, p: &PortInfo) {
    let _ = write!(s, "  {prefix}{i} ");
    write_name(s, &p.name);
    let _ = write!(s, ": {}[", p.dtype);
    for (k, d) in p.shape.dims().iter().enumerate() {
        if k > 0 {
            s.push_str(", ");
        }
        match d {
            Dim::Static(n) => {
                let _ = write!(s, "{n}");
            }
            Dim::Dynamic(None) => s.push('?'),
            Dim::Dynamic(Some(sym)) => write_name(s, sym),
        }
    }
    s.push(']');
    if p.bcast_inner {
        s.push_str(" bcast_inner");
    }
    s.push('\n');
}

/// `in0`, `in1(fixed)`, `out0 inc=16 fin=-span0`: moves that are zero are left out.
fn loop_port_text(p: &LoopPort) -> String {
    let mut t = port_text(p.port);
    if !p.incremented {
        t.push_str("(fixed)");
    }
    if !p.increment.is_zero() {
        let _ = write!(t, " inc={}", p.increment);
    }
    if !p.finalization.is_zero() {
        let _ = write!(t, " fin={}", p.finalization);
    }
    t
}

fn port_text(p: Port) -> String {
    match p {
        Port::Input(i) => format!("in{i}"),
        Port::Output(i) => format!("out{i}"),
    }
}

fn reg_list(regs: &[PhysReg]) -> String {
    regs.iter()
        .map(|r| format!("r{r}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn loc_text(l: Location) -> String {
    match l {
        Location::Reg(r) => format!("r{r}"),
        Location::Spill(s) => format!("s{s}"),
    }
}

fn value_text(lir: &Lir, v: ValueId) -> String {
    match lir.locations.get(v.0 as usize).copied().flatten() {
        Some(l) => format!("%{}:{}", v.0, loc_text(l)),
        None => format!("%{}", v.0),
    }
}

// ---------------------------------------------------------------------------------
// Lexer (one line at a time: the format is line-based)
// ---------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    /// A bare word: keyword, op name, `in0`, `L1`, `r5`, a name.
    Ident(String),
    /// A quoted name, unescaped.
    Str(String),
    /// A number as written (`16`, `-0.5`, `1e-45`, `-inf`, `0x7fc00000`).
    Num(String),
    /// `%N`.
    Value(u32),
    /// One of `: = , [ ] ( ) @ ? + - *`.
    Punct(char),
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Ident(s) | Tok::Num(s) => format!("'{s}'"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Value(v) => format!("'%{v}'"),
            Tok::Punct(c) => format!("'{c}'"),
        }
    }
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    col: usize,
}

/// Splits one line into tokens; `;` starts a comment. Errors carry a column.
fn lex_line(line: &str) -> Result<Vec<Token>, (usize, String)> {
    let chars: Vec<char> = line.chars().collect();
    let mut toks = vec![];
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c == ';' {
            break;
        }
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let tok = if is_name_start(c) {
            let start = i;
            while i < chars.len() && is_name_char(chars[i]) {
                i += 1;
            }
            Tok::Ident(chars[start..i].iter().collect())
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let start = i;
            i += 1;
            while i < chars.len() {
                let d = chars[i];
                let after_exp = matches!(chars[i - 1], 'e' | 'E')
                    && !chars[start..i].iter().any(|&x| x == 'x' || x == 'X');
                let sign = (d == '+' || d == '-') && after_exp;
                if d.is_ascii_alphanumeric() || d == '_' || d == '.' || sign {
                    i += 1;
                } else {
                    break;
                }
            }
            Tok::Num(chars[start..i].iter().collect())
        } else if c == '-' && chars[i + 1..].starts_with(&['i', 'n', 'f']) {
            i += 4;
            Tok::Num("-inf".into())
        } else if matches!(c, '-' | '+' | '*') {
            // Signs and products of loop offsets (`stride1 - main0/16`, `2*span1`).
            i += 1;
            Tok::Punct(c)
        } else if c == '%' {
            let start = i + 1;
            i += 1;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let digits: String = chars[start..i].iter().collect();
            if digits.is_empty() {
                return Err((col, "expected a value number after '%'".into()));
            }
            let v = digits
                .parse::<u32>()
                .map_err(|_| (col, format!("value number %{digits} is too large")))?;
            Tok::Value(v)
        } else if c == '"' {
            let (s, next) = lex_string(&chars, i)?;
            i = next;
            Tok::Str(s)
        } else if matches!(c, ':' | '=' | ',' | '[' | ']' | '(' | ')' | '@' | '?') {
            i += 1;
            Tok::Punct(c)
        } else {
            return Err((col, format!("unexpected character {c:?}")));
        };
        toks.push(Token { tok, col });
    }
    Ok(toks)
}

/// Reads a quoted string starting at `chars[start] == '"'`; returns it and the index
/// after the closing quote.
fn lex_string(chars: &[char], start: usize) -> Result<(String, usize), (usize, String)> {
    let mut s = String::new();
    let mut i = start + 1;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err((start + 1, "unterminated string".into()));
        };
        i += 1;
        match c {
            '"' => return Ok((s, i)),
            '\\' => {
                let esc_col = i;
                let Some(&e) = chars.get(i) else {
                    return Err((start + 1, "unterminated string".into()));
                };
                i += 1;
                match e {
                    '"' => s.push('"'),
                    '\\' => s.push('\\'),
                    'n' => s.push('\n'),
                    't' => s.push('\t'),
                    'r' => s.push('\r'),
                    'u' => {
                        if chars.get(i) != Some(&'{') {
                            return Err((esc_col, "expected '{' after '\\u'".into()));
                        }
                        let hex_start = i + 1;
                        let Some(len) = chars[hex_start..].iter().position(|&h| h == '}') else {
                            return Err((esc_col, "unterminated '\\u{' escape".into()));
                        };
                        let hex: String = chars[hex_start..hex_start + len].iter().collect();
                        let ch = u32::from_str_radix(&hex, 16)
                            .ok()
                            .filter(|_| !hex.is_empty() && hex.len() <= 6)
                            .and_then(char::from_u32)
                            .ok_or_else(|| {
                                (esc_col, format!("'\\u{{{hex}}}' is not a character"))
                            })?;
                        s.push(ch);
                        i = hex_start + len + 1;
                    }
                    other => return Err((esc_col, format!("unknown escape '\\{other}'"))),
                }
            }
            c => s.push(c),
        }
    }
}

// ---------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------

/// Parses linear-IR text printed by [`print_lir`] (comments after `;`, blank lines and
/// any indentation are allowed). `file` is used in error messages only.
pub fn parse_lir(text: &str, file: &str) -> Result<Lir, LirParseError> {
    let mut p = Parser {
        file,
        lir: None,
        header_line: 0,
        body_started: false,
        open: vec![],
        seen_locs: BTreeMap::new(),
        locations_len: None,
        scratch_seen: false,
        spill_seen: false,
    };
    let mut last_line = 0;
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        last_line = line_no;
        let toks = lex_line(line).map_err(|(col, message)| LirParseError {
            file: file.to_string(),
            line: line_no,
            col,
            message,
        })?;
        if toks.is_empty() {
            continue;
        }
        let mut cur = Cursor {
            toks,
            i: 0,
            line: line_no,
            end_col: line.chars().count() + 1,
            file,
        };
        p.line(&mut cur)?;
        cur.expect_end()?;
    }
    p.finish(last_line.max(1))
}

struct Parser<'a> {
    file: &'a str,
    lir: Option<Lir>,
    header_line: usize,
    body_started: bool,
    open: Vec<LoopId>,
    /// Per value mentioned: its written location and where it was first written.
    seen_locs: BTreeMap<u32, (Option<Location>, usize, usize)>,
    locations_len: Option<(usize, usize, usize)>,
    scratch_seen: bool,
    spill_seen: bool,
}

/// The tokens of one line and a position in them.
struct Cursor<'a> {
    toks: Vec<Token>,
    i: usize,
    line: usize,
    end_col: usize,
    file: &'a str,
}

impl Cursor<'_> {
    fn err_at(&self, col: usize, message: impl Into<String>) -> LirParseError {
        LirParseError {
            file: self.file.to_string(),
            line: self.line,
            col,
            message: message.into(),
        }
    }

    /// The column of the next token (or the end of the line).
    fn col(&self) -> usize {
        self.toks.get(self.i).map_or(self.end_col, |t| t.col)
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|t| &t.tok)
    }

    fn found(&self) -> String {
        self.peek()
            .map_or_else(|| "the end of the line".to_string(), Tok::describe)
    }

    fn err_expected(&self, what: &str) -> LirParseError {
        self.err_at(
            self.col(),
            format!("expected {what}, found {}", self.found()),
        )
    }

    fn eat_punct(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Punct(c)) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn punct(&mut self, c: char) -> Result<(), LirParseError> {
        if self.eat_punct(c) {
            Ok(())
        } else {
            Err(self.err_expected(&format!("'{c}'")))
        }
    }

    fn ident(&mut self, what: &str) -> Result<(String, usize), LirParseError> {
        match self.peek() {
            Some(Tok::Ident(s)) => {
                let r = (s.clone(), self.col());
                self.i += 1;
                Ok(r)
            }
            _ => Err(self.err_expected(what)),
        }
    }

    fn dtype(&mut self) -> Result<DType, LirParseError> {
        let (dt, dcol) = self.ident("a dtype")?;
        DType::from_name(&dt).ok_or_else(|| {
            self.err_at(
                dcol,
                format!(
                    "unknown dtype '{dt}' (expected one of f32, bf16, f16, i8, u8, i32, i64, bool)"
                ),
            )
        })
    }

    fn keyword(&mut self, kw: &str) -> Result<(), LirParseError> {
        match self.peek() {
            Some(Tok::Ident(s)) if s == kw => {
                self.i += 1;
                Ok(())
            }
            _ => Err(self.err_expected(&format!("'{kw}'"))),
        }
    }

    /// A bare or quoted name.
    fn name(&mut self, what: &str) -> Result<String, LirParseError> {
        match self.peek() {
            Some(Tok::Ident(s) | Tok::Str(s)) => {
                let s = s.clone();
                self.i += 1;
                Ok(s)
            }
            _ => Err(self.err_expected(what)),
        }
    }

    fn int<T: std::str::FromStr>(&mut self, what: &str) -> Result<T, LirParseError> {
        let col = self.col();
        match self.peek() {
            Some(Tok::Num(s)) if s.bytes().all(|b| b.is_ascii_digit()) => {
                let s = s.clone();
                self.i += 1;
                s.parse::<T>()
                    .map_err(|_| self.err_at(col, format!("{what} {s} is too large")))
            }
            _ => Err(self.err_expected(what)),
        }
    }

    /// `key=INT`.
    fn key_int<T: std::str::FromStr>(&mut self, key: &str) -> Result<T, LirParseError> {
        self.keyword(key)?;
        self.punct('=')?;
        self.int(&format!("'{key}'"))
    }

    /// A float as `fmt_f32` writes it.
    fn f32(&mut self) -> Result<f32, LirParseError> {
        let col = self.col();
        match self.peek().cloned() {
            Some(Tok::Num(s)) => {
                self.i += 1;
                if s == "-inf" {
                    return Ok(f32::NEG_INFINITY);
                }
                let v = s
                    .parse::<f32>()
                    .ok()
                    .ok_or_else(|| self.err_at(col, format!("'{s}' is not a number")))?;
                if v.is_infinite() {
                    return Err(self.err_at(col, format!("{s} is out of the f32 range")));
                }
                Ok(v)
            }
            Some(Tok::Ident(s)) if s == "inf" => {
                self.i += 1;
                Ok(f32::INFINITY)
            }
            Some(Tok::Ident(s)) if s == "nan" => {
                self.i += 1;
                if !self.eat_punct('(') {
                    return Ok(f32::NAN);
                }
                let hcol = self.col();
                let bits = match self.peek() {
                    Some(Tok::Num(h)) => h
                        .strip_prefix("0x")
                        .and_then(|h| u32::from_str_radix(h, 16).ok()),
                    _ => None,
                }
                .ok_or_else(|| self.err_expected("the NaN's bits as 0x followed by hex digits"))?;
                self.i += 1;
                let v = f32::from_bits(bits);
                if !v.is_nan() {
                    return Err(self.err_at(
                        hcol,
                        format!("0x{bits:08x} is not the bit pattern of a NaN"),
                    ));
                }
                self.punct(')')?;
                Ok(v)
            }
            _ => Err(self.err_expected("a number")),
        }
    }

    /// An identifier made of `prefix` and a decimal number: `in3`, `L0`, `r5`.
    fn numbered<T: std::str::FromStr>(
        &mut self,
        prefix: &str,
        what: &str,
    ) -> Result<T, LirParseError> {
        let col = self.col();
        if let Some(Tok::Ident(s)) = self.peek()
            && let Some(num) = s.strip_prefix(prefix)
            && !num.is_empty()
            && num.bytes().all(|b| b.is_ascii_digit())
        {
            let num = num.to_string();
            self.i += 1;
            return num
                .parse::<T>()
                .map_err(|_| self.err_at(col, format!("{what} {prefix}{num} is out of range")));
        }
        Err(self.err_expected(&format!("{what} ({prefix}N)")))
    }

    /// A loop offset: terms joined by `+` and `-` (`16`, `-span0`, `stride1 - main0/16`,
    /// `2*stride1 + 3`).
    fn offset(&mut self) -> Result<Offset, LirParseError> {
        let mut sign = if self.eat_punct('-') { -1 } else { 1 };
        let mut acc = Offset::zero();
        loop {
            acc = acc.plus(&self.offset_term()?.times(sign));
            sign = if self.eat_punct('+') {
                1
            } else if self.eat_punct('-') {
                -1
            } else {
                return Ok(acc);
            };
        }
    }

    /// `N`, `N*QUANTITY` or `QUANTITY` (a signed `N` only at the start of an offset).
    fn offset_term(&mut self) -> Result<Offset, LirParseError> {
        let col = self.col();
        if let Some(Tok::Num(n)) = self.peek() {
            let n = n.clone();
            let v: i64 = n
                .parse()
                .map_err(|_| self.err_at(col, format!("'{n}' is not an integer offset")))?;
            self.i += 1;
            if !self.eat_punct('*') {
                return Ok(Offset::constant(v));
            }
            return Ok(Offset::term(v, self.quantity()?));
        }
        Ok(Offset::term(1, self.quantity()?))
    }

    /// `stride<d>`, `span<d>`, `main<d>/<step>` or `tail<d>/<step>`.
    fn quantity(&mut self) -> Result<Quantity, LirParseError> {
        let col = self.col();
        let what = "a loop quantity (strideD, spanD, mainD/STEP or tailD/STEP)";
        let Some(Tok::Ident(s)) = self.peek() else {
            return Err(self.err_expected(what));
        };
        let s = s.clone();
        let num = |t: &str| -> Option<usize> {
            (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                .then(|| t.parse().ok())
                .flatten()
        };
        let stepped = |rest: &str| -> Option<(usize, usize)> {
            let (d, st) = rest.split_once('/')?;
            Some((num(d)?, num(st)?))
        };
        let q = if let Some(r) = s.strip_prefix("stride") {
            num(r).map(Quantity::Stride)
        } else if let Some(r) = s.strip_prefix("span") {
            num(r).map(Quantity::Span)
        } else if let Some(r) = s.strip_prefix("main") {
            stepped(r).map(|(dim, step)| Quantity::Main { dim, step })
        } else if let Some(r) = s.strip_prefix("tail") {
            stepped(r).map(|(dim, step)| Quantity::Tail { dim, step })
        } else {
            None
        };
        let q = q.ok_or_else(|| self.err_at(col, format!("'{s}' is not {what}")))?;
        self.i += 1;
        Ok(q)
    }

    fn port(&mut self) -> Result<Port, LirParseError> {
        match self.peek() {
            Some(Tok::Ident(s)) if s.starts_with("out") => {
                Ok(Port::Output(self.numbered("out", "an output port")?))
            }
            Some(Tok::Ident(s)) if s.starts_with("in") => {
                Ok(Port::Input(self.numbered("in", "an input port")?))
            }
            _ => Err(self.err_expected("a port (inN or outN)")),
        }
    }

    fn loop_id(&mut self) -> Result<LoopId, LirParseError> {
        Ok(LoopId(self.numbered("L", "a loop")?))
    }

    fn location(&mut self) -> Result<Location, LirParseError> {
        match self.peek() {
            Some(Tok::Ident(s)) if s.starts_with('s') => {
                Ok(Location::Spill(self.numbered("s", "a spill slot")?))
            }
            _ => Ok(Location::Reg(self.numbered("r", "a register")?)),
        }
    }

    fn reg_list(&mut self) -> Result<Vec<PhysReg>, LirParseError> {
        self.punct('[')?;
        let mut regs = vec![];
        if self.eat_punct(']') {
            return Ok(regs);
        }
        loop {
            regs.push(self.numbered("r", "a register")?);
            if self.list_end()? {
                return Ok(regs);
            }
        }
    }

    /// After an item of a `[a, b]` list: true at the closing `]`, false after a `,`.
    fn list_end(&mut self) -> Result<bool, LirParseError> {
        if self.eat_punct(']') {
            Ok(true)
        } else if self.eat_punct(',') {
            Ok(false)
        } else {
            Err(self.err_expected("',' or ']'"))
        }
    }

    fn expect_end(&self) -> Result<(), LirParseError> {
        match self.peek() {
            None => Ok(()),
            Some(t) => Err(self.err_at(
                self.col(),
                format!(
                    "unexpected {} after the end of the line's item",
                    t.describe()
                ),
            )),
        }
    }
}

impl Parser<'_> {
    fn line(&mut self, c: &mut Cursor) -> Result<(), LirParseError> {
        if self.lir.is_none() {
            c.keyword("lir")?;
            let name = c.name("the kernel name")?;
            let values: u32 = c.key_int("values")?;
            if values > MAX_VALUES {
                return Err(c.err_at(
                    c.col(),
                    format!("{values} values are more than the parser accepts ({MAX_VALUES})"),
                ));
            }
            self.header_line = c.line;
            self.lir = Some(Lir {
                name,
                inputs: vec![],
                outputs: vec![],
                exprs: vec![],
                loops: vec![],
                num_values: values,
                locations: vec![],
                scratch_regs: vec![],
                spill_slots: 0,
                spill_temps: vec![],
            });
            return Ok(());
        }
        let head_col = c.col();
        let head = match c.peek() {
            Some(Tok::Ident(s)) => Some(s.clone()),
            _ => None,
        };
        let is_port = |s: &str, prefix: &str| {
            s.strip_prefix(prefix)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        };
        let header = head.as_deref().is_some_and(|s| {
            matches!(
                s,
                "lir" | "loop" | "scratch" | "spill_slots" | "locations" | "value"
            ) || is_port(s, "in")
                || is_port(s, "out")
        });
        if !header {
            self.body_started = true;
            return self.expr(c);
        }
        if self.body_started {
            return Err(c.err_at(
                head_col,
                "header line after the first expression: ports, loops, registers and \
                 locations come before the body",
            ));
        }
        let lir = self.lir.as_mut().expect("the 'lir' line came first");
        match head.as_deref().unwrap_or_default() {
            "lir" => Err(c.err_at(
                head_col,
                format!(
                    "a second 'lir' line: the kernel was declared at line {}",
                    self.header_line
                ),
            )),
            "loop" => {
                c.i += 1;
                let id: u32 = c.numbered("L", "a loop")?;
                if id as usize != lir.loops.len() {
                    return Err(c.err_at(
                        head_col + 5,
                        format!(
                            "loop L{id} is declared out of order: expected L{}",
                            lir.loops.len()
                        ),
                    ));
                }
                c.punct(':')?;
                let dim = c.key_int("dim")?;
                let step = c.key_int("step")?;
                let work = match c.peek() {
                    Some(Tok::Ident(s)) if s == "work" => Some(c.key_int("work")?),
                    _ => None,
                };
                let kind = match c.ident("'main' or 'tail'")? {
                    (k, _) if k == "main" => LoopKind::Main,
                    (k, _) if k == "tail" => LoopKind::Tail,
                    (k, col) => {
                        return Err(c.err_at(
                            col,
                            format!("unknown loop kind '{k}' (expected main or tail)"),
                        ));
                    }
                };
                let once = match c.peek() {
                    Some(Tok::Ident(s)) if s == "once" => {
                        c.i += 1;
                        true
                    }
                    _ => false,
                };
                c.keyword("ports")?;
                c.punct('=')?;
                c.punct('[')?;
                let mut ports = vec![];
                if !c.eat_punct(']') {
                    loop {
                        let p = c.port()?;
                        let mut lp = LoopPort::new(p, true);
                        if c.eat_punct('(') {
                            c.keyword("fixed")?;
                            c.punct(')')?;
                            lp.incremented = false;
                        }
                        if matches!(c.peek(), Some(Tok::Ident(s)) if s == "inc") {
                            c.i += 1;
                            c.punct('=')?;
                            lp.increment = c.offset()?;
                        }
                        if matches!(c.peek(), Some(Tok::Ident(s)) if s == "fin") {
                            c.i += 1;
                            c.punct('=')?;
                            lp.finalization = c.offset()?;
                        }
                        ports.push(lp);
                        if c.list_end()? {
                            break;
                        }
                    }
                }
                lir.loops.push(LoopInfo {
                    dim,
                    step,
                    work,
                    kind,
                    once,
                    ports,
                });
                Ok(())
            }
            "scratch" => {
                c.i += 1;
                if std::mem::replace(&mut self.scratch_seen, true) {
                    return Err(c.err_at(head_col, "a second 'scratch' line"));
                }
                lir.scratch_regs = c.reg_list()?;
                Ok(())
            }
            "spill_slots" => {
                c.i += 1;
                if std::mem::replace(&mut self.spill_seen, true) {
                    return Err(c.err_at(head_col, "a second 'spill_slots' line"));
                }
                lir.spill_slots = c.int("the number of spill slots")?;
                c.keyword("temps")?;
                lir.spill_temps = c.reg_list()?;
                Ok(())
            }
            "locations" => {
                c.i += 1;
                if let Some((_, l, col)) = self.locations_len {
                    return Err(c.err_at(
                        head_col,
                        format!("a second 'locations' line (the first is at {l}:{col})"),
                    ));
                }
                let col = c.col();
                let n: u32 = c.int("the length of the location table")?;
                if n > MAX_VALUES {
                    return Err(c.err_at(
                        col,
                        format!("{n} locations are more than the parser accepts ({MAX_VALUES})"),
                    ));
                }
                self.locations_len = Some((n as usize, c.line, head_col));
                Ok(())
            }
            "value" => {
                c.i += 1;
                let col = c.col();
                let v = self.value(c)?;
                if self.seen_locs.get(&v.0).is_none_or(|s| s.0.is_none()) {
                    return Err(c.err_at(
                        col,
                        format!("'value %{}' must give the value's location", v.0),
                    ));
                }
                Ok(())
            }
            port => {
                let (is_in, prefix) = if port.starts_with("in") {
                    (true, "in")
                } else {
                    (false, "out")
                };
                let idx: usize = c.numbered(prefix, "a port")?;
                let list = if is_in {
                    &mut lir.inputs
                } else {
                    &mut lir.outputs
                };
                if idx != list.len() {
                    return Err(c.err_at(
                        head_col,
                        format!(
                            "port {prefix}{idx} is declared out of order: expected {prefix}{}",
                            list.len()
                        ),
                    ));
                }
                let name = c.name("the port name")?;
                c.punct(':')?;
                let dtype = c.dtype()?;
                c.punct('[')?;
                let mut dims = vec![];
                if !c.eat_punct(']') {
                    loop {
                        let d = match c.peek().cloned() {
                            Some(Tok::Punct('?')) => {
                                c.i += 1;
                                Dim::Dynamic(None)
                            }
                            Some(Tok::Ident(s) | Tok::Str(s)) => {
                                c.i += 1;
                                Dim::Dynamic(Some(s))
                            }
                            _ => Dim::Static(c.int("a dim (a size, a symbol or '?')")?),
                        };
                        dims.push(d);
                        if c.list_end()? {
                            break;
                        }
                    }
                }
                let bcast_inner = match c.peek() {
                    Some(Tok::Ident(s)) if s == "bcast_inner" => {
                        c.i += 1;
                        true
                    }
                    _ => false,
                };
                let list = if is_in {
                    &mut lir.inputs
                } else {
                    &mut lir.outputs
                };
                list.push(PortInfo {
                    name,
                    dtype,
                    shape: dims.into_iter().collect::<Shape>(),
                    bcast_inner,
                });
                Ok(())
            }
        }
    }

    /// `%N` with an optional `:rK` / `:sK`; records the location it gives.
    fn value(&mut self, c: &mut Cursor) -> Result<ValueId, LirParseError> {
        let col = c.col();
        let Some(Tok::Value(v)) = c.peek().cloned() else {
            return Err(c.err_expected("a value (%N)"));
        };
        c.i += 1;
        let loc = if c.eat_punct(':') {
            Some(c.location()?)
        } else {
            None
        };
        match self.seen_locs.get(&v) {
            Some(&(prev, l, pc)) if prev != loc => {
                let show = |x: Option<Location>| x.map_or("no location".into(), loc_text);
                return Err(c.err_at(
                    col,
                    format!(
                        "%{v} is written here with {} but at {l}:{pc} with {}",
                        show(loc),
                        show(prev)
                    ),
                ));
            }
            Some(_) => {}
            None => {
                self.seen_locs.insert(v, (loc, c.line, col));
            }
        }
        Ok(ValueId(v))
    }

    fn expr(&mut self, c: &mut Cursor) -> Result<(), LirParseError> {
        let out = if matches!(c.peek(), Some(Tok::Value(_))) {
            let v = self.value(c)?;
            c.punct('=')?;
            Some(v)
        } else {
            None
        };
        let (op, op_col) = c.ident("an op name")?;
        let kind = match op.as_str() {
            "Parameter" => ExprKind::Parameter(c.numbered("in", "an input port")?),
            "Result" => ExprKind::Result(c.numbered("out", "an output port")?),
            "Load" => ExprKind::Load {
                input: c.numbered("in", "an input port")?,
            },
            "BroadcastLoad" => ExprKind::BroadcastLoad {
                input: c.numbered("in", "an input port")?,
            },
            "Store" => ExprKind::Store {
                output: c.numbered("out", "an output port")?,
            },
            "Scalar" => ExprKind::Scalar(c.f32()?),
            "Select" => ExprKind::Select,
            "Fma" => ExprKind::Fma,
            "PowStatic" => ExprKind::PowStatic(c.f32()?),
            "Convert" => {
                let from = c.dtype()?;
                c.keyword("to")?;
                ExprKind::Convert {
                    from,
                    to: c.dtype()?,
                }
            }
            "LoopBegin" => ExprKind::LoopBegin(c.loop_id()?),
            "LoopEnd" => ExprKind::LoopEnd(c.loop_id()?),
            name => {
                if let Some(b) = BinaryOp::from_name(name) {
                    ExprKind::Binary(b)
                } else if let Some(u) = UnaryOp::ALL.into_iter().find(|u| u.name() == name) {
                    ExprKind::Unary(match u {
                        UnaryOp::Clamp { .. } => UnaryOp::Clamp {
                            min: c.f32()?,
                            max: c.f32()?,
                        },
                        UnaryOp::Swish { .. } => UnaryOp::Swish { beta: c.f32()? },
                        UnaryOp::Elu { .. } => UnaryOp::Elu { alpha: c.f32()? },
                        UnaryOp::LeakyRelu { .. } => UnaryOp::LeakyRelu { alpha: c.f32()? },
                        u => u,
                    })
                } else {
                    return Err(c.err_at(op_col, format!("unknown op '{name}'")));
                }
            }
        };
        let mut ins = smallvec::SmallVec::new();
        let list = if matches!(kind, ExprKind::Store { .. }) {
            if matches!(c.peek(), Some(Tok::Value(_))) {
                return Err(c.err_expected("',' between the port and the stored value"));
            }
            c.eat_punct(',')
        } else {
            matches!(c.peek(), Some(Tok::Value(_)))
        };
        if list {
            loop {
                ins.push(self.value(c)?);
                if !c.eat_punct(',') {
                    break;
                }
            }
        }
        let lir = self.lir.as_mut().expect("the body follows the 'lir' line");
        let default = default_loops(&mut self.open, &kind);
        let loops = if c.eat_punct('@') {
            c.punct('[')?;
            let mut loops = smallvec::SmallVec::new();
            if !c.eat_punct(']') {
                loop {
                    loops.push(c.loop_id()?);
                    if c.list_end()? {
                        break;
                    }
                }
            }
            loops
        } else {
            default.into_iter().collect()
        };
        lir.exprs.push(Expr {
            kind,
            ins,
            out,
            loops,
        });
        Ok(())
    }

    fn finish(self, last_line: usize) -> Result<Lir, LirParseError> {
        let err = |line, col, message: String| LirParseError {
            file: self.file.to_string(),
            line,
            col,
            message,
        };
        let Some(mut lir) = self.lir else {
            return Err(err(
                last_line,
                1,
                "no 'lir NAME values=N' line: the text holds no kernel".into(),
            ));
        };
        let any_loc = self.seen_locs.values().any(|s| s.0.is_some());
        let len = match self.locations_len {
            Some((n, _, _)) => n,
            None if any_loc => lir.num_values as usize,
            None => 0,
        };
        let mut locations = vec![None; len];
        for (&v, &(loc, line, col)) in &self.seen_locs {
            if let Some(loc) = loc {
                let slot = locations.get_mut(v as usize).ok_or_else(|| {
                    err(
                        line,
                        col,
                        format!(
                            "%{v} has a location but the location table has {len} entries \
                             (values={}; a 'locations N' line sets another length)",
                            lir.num_values
                        ),
                    )
                })?;
                *slot = Some(loc);
            }
        }
        lir.locations = locations;
        Ok(lir)
    }
}

#[cfg(test)]
mod tests {
    use smallvec::smallvec;
    use snipjit_ir::GeluApprox;

    use super::*;
    use crate::Target;

    fn scratch(k: &ExprKind) -> usize {
        match k {
            ExprKind::Unary(UnaryOp::Tanh | UnaryOp::Gelu(_)) => 3,
            ExprKind::Unary(_) | ExprKind::PowStatic(_) => 1,
            _ => 0,
        }
    }

    fn target(vregs: usize) -> Target {
        Target {
            name: "test",
            lanes: 16,
            vregs,
            scratch,
        }
    }

    /// Text equality plus structural equality: `Lir`'s `PartialEq` compares floats by
    /// value, so the text (which is bit-exact) is compared too.
    fn assert_round_trip(lir: &Lir, what: &str) {
        let text = print_lir(lir);
        let back = parse_lir(&text, what).unwrap_or_else(|e| panic!("{what}: {e}\n{text}"));
        assert_eq!(print_lir(&back), text, "{what}");
        let nan_free = !text.contains("nan");
        if nan_free {
            assert_eq!(&back, lir, "{what}:\n{text}");
        }
    }

    const BODIES: &[(&str, &[bool])] = &[
        (
            "graph relu_bias(x: f32[N, C], b: f32[1, C]) {\n  s = Add(x, b)\n  r = Relu(s)\n  \
             h = Constant(0.5)\n  m = Mul(r, h)\n  y = Add(m, x)\n  return y\n}\n",
            &[false, true],
        ),
        (
            "graph g(x: f32[N, 64], t: f32[]) {\n  c = Constant(2)\n  p = Pow(x, c)\n  \
             k = Constant(-0)\n  q = Mul(t, c)\n  u = Add(p, q)\n  v = Clamp(u, min=-1.5, max=inf)\n  \
             w = Swish(v, beta=0.25)\n  z = LessOrEqual(w, k)\n  y = Select(z, w, x)\n  \
             g = GeluTanh(y)\n  return y, g\n}\n",
            &[false, false],
        ),
    ];

    #[test]
    fn every_pass_output_round_trips() {
        for (src, bcast) in BODIES {
            let g = snipjit_ir::text::parse(src, "body.sg").unwrap();
            for vregs in [32, 8] {
                let mut seen = 0;
                crate::lower(&g, bcast, &target(vregs), &mut |pass, lir| {
                    assert_round_trip(lir, &format!("{} after {pass}", g.name));
                    seen += 1;
                })
                .unwrap();
                assert_eq!(seen, crate::pipeline::pass_names().len());
            }
        }
    }

    /// A `Lir` no pass produces: every field off its usual value.
    fn odd_lir() -> Lir {
        let port = |name: &str, shape: Shape, bcast_inner| PortInfo {
            name: name.into(),
            dtype: DType::BF16,
            shape,
            bcast_inner,
        };
        let dims = |d: &[Dim]| d.iter().cloned().collect::<Shape>();
        let e = |kind, ins: &[u32], out: Option<u32>, loops: &[u32]| Expr {
            kind,
            ins: ins.iter().map(|&v| ValueId(v)).collect(),
            out: out.map(ValueId),
            loops: loops.iter().map(|&l| LoopId(l)).collect(),
        };
        Lir {
            name: "odd kernel \"q\"\n".into(),
            inputs: vec![
                port("", Shape::scalar(), false),
                port(
                    "x:0",
                    dims(&[
                        Dim::Dynamic(None),
                        Dim::sym("?"),
                        Dim::sym("3"),
                        Dim::sym("N"),
                    ]),
                    true,
                ),
            ],
            outputs: vec![port("in0", Shape::fixed(&[0, 7]), true)],
            exprs: vec![
                e(
                    ExprKind::Scalar(f32::from_bits(0xffc0_0001)),
                    &[],
                    Some(0),
                    &[5],
                ),
                e(ExprKind::LoopBegin(LoopId(1)), &[], None, &[]),
                e(
                    ExprKind::Unary(UnaryOp::Clamp {
                        min: -0.0,
                        max: 1e-45,
                    }),
                    &[0],
                    Some(9),
                    &[1],
                ),
                e(ExprKind::Store { output: 3 }, &[9, 0], None, &[]),
                e(ExprKind::Store { output: 0 }, &[], None, &[1]),
                e(ExprKind::Load { input: 0 }, &[7], Some(2), &[1]),
                e(
                    ExprKind::Unary(UnaryOp::Gelu(GeluApprox::Erf)),
                    &[2],
                    None,
                    &[1],
                ),
                e(ExprKind::LoopEnd(LoopId(0)), &[], None, &[1]),
                e(ExprKind::LoopEnd(LoopId(0)), &[], None, &[]),
                e(ExprKind::PowStatic(f32::NEG_INFINITY), &[], Some(2), &[]),
            ],
            loops: vec![
                LoopInfo::new(1, 1, LoopKind::Main),
                LoopInfo {
                    dim: 0,
                    step: 8,
                    work: Some(3),
                    kind: LoopKind::Tail,
                    once: true,
                    ports: vec![
                        LoopPort::new(Port::Output(0), false),
                        LoopPort {
                            port: Port::Input(1),
                            incremented: true,
                            increment: Offset::term(-2, Quantity::Stride(7))
                                .plus(&Offset::constant(-5)),
                            finalization: Offset::term(1, Quantity::Main { dim: 0, step: 8 })
                                .plus(&Offset::term(3, Quantity::Span(1)))
                                .plus(&Offset::constant(9)),
                        },
                        LoopPort {
                            port: Port::Input(2),
                            incremented: false,
                            increment: Offset::constant(-16),
                            finalization: Offset::term(-1, Quantity::Tail { dim: 2, step: 1 }),
                        },
                    ],
                },
            ],
            num_values: 5,
            locations: vec![
                Some(Location::Reg(255)),
                None,
                Some(Location::Spill(4_000_000_000)),
                None,
                Some(Location::Reg(3)),
                None,
                Some(Location::Spill(0)),
            ],
            scratch_regs: vec![],
            spill_slots: 0,
            spill_temps: vec![1],
        }
    }

    #[test]
    fn unusual_lir_round_trips() {
        let lir = odd_lir();
        let text = print_lir(&lir);
        let expected = "\
lir \"odd kernel \\\"q\\\"\\n\" values=5
  in0 \"\": bf16[]
  in1 \"x:0\": bf16[?, \"?\", \"3\", N] bcast_inner
  out0 in0: bf16[0, 7] bcast_inner
  loop L0: dim=1 step=1 main ports=[]
  loop L1: dim=0 step=8 work=3 tail once ports=[out0(fixed), in1 inc=-2*stride7 - 5 fin=3*span1 + main0/8 + 9, in2(fixed) inc=-16 fin=-tail2/1]
  spill_slots 0 temps [r1]
  locations 7
  value %4:r3
  value %6:s0
  %0:r255 = Scalar nan(0xffc00001)  @[L5]
  LoopBegin L1  @[]
    %9 = Clamp -0 1e-45 %0:r255
    Store out3, %9, %0:r255  @[]
    Store out0
    %2:s4000000000 = Load in0 %7
    GeluErf %2:s4000000000
  LoopEnd L0
  LoopEnd L0
  %2:s4000000000 = PowStatic -inf
";
        assert_eq!(text, expected);
        assert_round_trip(&lir, "odd");
        let back = parse_lir(&text, "odd").unwrap();
        assert_eq!(back.exprs[0].kind.name(), "Scalar nan(0xffc00001)");
        match back.exprs[0].kind {
            ExprKind::Scalar(v) => assert_eq!(v.to_bits(), 0xffc0_0001),
            _ => panic!("not a scalar"),
        }
        assert_eq!(back.locations, lir.locations);
        // Without locations and with a table shorter than `values`.
        let mut short = odd_lir();
        short.locations = vec![None, Some(Location::Reg(0))];
        assert_round_trip(&short, "short");
        short.locations = vec![None; 3];
        assert!(print_lir(&short).contains("  locations 3\n"));
        assert_round_trip(&short, "all none");
        short.locations.clear();
        assert!(!print_lir(&short).contains("locations"));
        assert_round_trip(&short, "none");
        let mut empty = odd_lir();
        empty.exprs.clear();
        empty.loops.clear();
        empty.inputs.clear();
        empty.outputs.clear();
        assert_round_trip(&empty, "empty");
    }

    #[test]
    fn every_op_round_trips() {
        let mut kinds: Vec<ExprKind> = vec![
            ExprKind::Parameter(3),
            ExprKind::Result(12),
            ExprKind::BroadcastLoad { input: 2 },
            ExprKind::Select,
            ExprKind::Fma,
            ExprKind::Scalar(f32::MAX),
            ExprKind::Scalar(f32::from_bits(1)),
            ExprKind::Scalar(f32::INFINITY),
            ExprKind::Scalar(-16777216.0),
            ExprKind::Scalar(1e20),
            ExprKind::PowStatic(0.5),
            ExprKind::Convert {
                from: DType::F32,
                to: DType::BF16,
            },
            ExprKind::Convert {
                from: DType::U8,
                to: DType::Bool,
            },
        ];
        kinds.extend(UnaryOp::ALL.map(ExprKind::Unary));
        kinds.extend(BinaryOp::ALL.map(ExprKind::Binary));
        kinds.push(ExprKind::Unary(UnaryOp::LeakyRelu { alpha: -3.25e-7 }));
        let mut lir = odd_lir();
        lir.exprs = kinds
            .into_iter()
            .enumerate()
            .map(|(i, kind)| Expr {
                kind,
                ins: smallvec![ValueId(0), ValueId(i as u32)],
                out: Some(ValueId(i as u32 + 1)),
                loops: smallvec![],
            })
            .collect();
        lir.num_values = lir.exprs.len() as u32 + 1;
        lir.locations.clear();
        assert_round_trip(&lir, "ops");
    }

    #[test]
    fn canonical_text_prints_back_and_lax_text_parses() {
        let lax = "\n; a comment\nlir k values=2 ; trailing comment\n\
                   in0 x: f32[4]\nloop L0: dim=0 step=16 main ports=[in0]\n\
                   LoopBegin L0\n%0 = Load in0\n      %1 =   Exp %0\nLoopEnd L0\n";
        let lir = parse_lir(lax, "lax.lir").unwrap();
        assert_eq!(lir.exprs.len(), 4);
        assert_eq!(lir.exprs[1].loops.as_slice(), &[LoopId(0)]);
        assert_eq!(lir.exprs[3].loops.as_slice(), &[LoopId(0)]);
        assert!(lir.locations.is_empty());
        let canonical = print_lir(&lir);
        assert_eq!(
            canonical,
            "lir k values=2\n  in0 x: f32[4]\n  loop L0: dim=0 step=16 main ports=[in0]\n  \
             LoopBegin L0\n    %0 = Load in0\n    %1 = Exp %0\n  LoopEnd L0\n"
        );
        assert_eq!(print_lir(&parse_lir(&canonical, "c").unwrap()), canonical);
    }

    fn parse_err(text: &str) -> String {
        parse_lir(text, "t.lir").unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_position() {
        let h = "lir k values=4\n  in0 x: f32[N]\n";
        let cases: &[(&str, &str)] = &[
            (
                "",
                "t.lir:1:1: no 'lir NAME values=N' line: the text holds no kernel",
            ),
            ("graph g()", "t.lir:1:1: expected 'lir', found 'graph'"),
            (
                "lir k",
                "t.lir:1:6: expected 'values', found the end of the line",
            ),
            (
                "lir k values=2000000",
                "t.lir:1:21: 2000000 values are more than the parser accepts (1048576)",
            ),
            (
                "lir k values=99999999999",
                "t.lir:1:14: 'values' 99999999999 is too large",
            ),
            (
                "lir k values=1\nlir j values=1",
                "t.lir:2:1: a second 'lir' line: the kernel was declared at line 1",
            ),
            ("lir \"k values=1", "t.lir:1:5: unterminated string"),
            (
                "lir k values=1\n  in1 x: f32[4]",
                "t.lir:2:3: port in1 is declared out of order: expected in0",
            ),
            (
                "lir k values=1\n  in0 x: f33[4]",
                "t.lir:2:10: unknown dtype 'f33' (expected one of f32, bf16, f16, i8, u8, i32, i64, bool)",
            ),
            (
                "lir k values=1\n  in0 x: f32[4,]",
                "t.lir:2:16: expected a dim (a size, a symbol or '?'), found ']'",
            ),
            (
                "lir k values=1\n  loop L1: dim=0 step=1 main ports=[]",
                "t.lir:2:8: loop L1 is declared out of order: expected L0",
            ),
            (
                "lir k values=1\n  loop L0: dim=0 step=1 both ports=[]",
                "t.lir:2:25: unknown loop kind 'both' (expected main or tail)",
            ),
            (
                "lir k values=1\n  loop L0: dim=0 step=1 main ports=[in0(moving)]",
                "t.lir:2:41: expected 'fixed', found 'moving'",
            ),
            (
                &format!("{h}  %0 = Frobnicate %1"),
                "t.lir:3:8: unknown op 'Frobnicate'",
            ),
            (
                &format!("{h}  %0 = Load x"),
                "t.lir:3:13: expected an input port (inN), found 'x'",
            ),
            (
                &format!("{h}  Store out0 %1"),
                "t.lir:3:14: expected ',' between the port and the stored value, found '%1'",
            ),
            (
                &format!("{h}  %0 = Scalar 1e39"),
                "t.lir:3:15: 1e39 is out of the f32 range",
            ),
            (
                &format!("{h}  %0 = Scalar nan(0x3f800000)"),
                "t.lir:3:19: 0x3f800000 is not the bit pattern of a NaN",
            ),
            (
                &format!("{h}  %0 = Scalar"),
                "t.lir:3:14: expected a number, found the end of the line",
            ),
            (
                &format!("{h}  %0:r1 = Exp %9\n  %1 = Exp %0"),
                "t.lir:4:12: %0 is written here with no location but at 3:3 with r1",
            ),
            (
                &format!("{h}  %0:r256 = Exp %9"),
                "t.lir:3:6: a register r256 is out of range",
            ),
            (
                &format!("{h}  %0:x1 = Exp %9"),
                "t.lir:3:6: expected a register (rN), found 'x1'",
            ),
            (
                &format!("{h}  %9:r1 = Exp %0"),
                "t.lir:3:3: %9 has a location but the location table has 4 entries (values=4; a 'locations N' line sets another length)",
            ),
            (
                &format!("{h}  %0 = Exp %1  @[L0"),
                "t.lir:3:20: expected ',' or ']', found the end of the line",
            ),
            (
                &format!("{h}  %0 = Exp %1 junk"),
                "t.lir:3:15: unexpected 'junk' after the end of the line's item",
            ),
            (
                &format!("{h}  %0 = Exp %1\n  scratch [r1]"),
                "t.lir:4:3: header line after the first expression: ports, loops, registers and locations come before the body",
            ),
            (
                &format!("{h}  value %1"),
                "t.lir:3:9: 'value %1' must give the value's location",
            ),
            (
                &format!("{h}  locations 1\n  locations 2"),
                "t.lir:4:3: a second 'locations' line (the first is at 3:3)",
            ),
            (
                &format!("{h}  %0 = Exp %"),
                "t.lir:3:12: expected a value number after '%'",
            ),
            (
                &format!("{h}  %0 = Exp $1"),
                "t.lir:3:12: unexpected character '$'",
            ),
            ("lir \"a\\qb\" values=1", "t.lir:1:7: unknown escape '\\q'"),
        ];
        let wrong: Vec<String> = cases
            .iter()
            .filter(|(text, want)| parse_err(text) != *want)
            .map(|(text, want)| format!("{text:?}\n  got  {}\n  want {want}", parse_err(text)))
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    /// A tiny deterministic generator (xorshift64*), so the fuzz needs no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Never panics; whatever parses prints to text that parses back to the same text.
    fn check_no_panic(text: &str) {
        if let Ok(lir) = parse_lir(text, "fuzz") {
            let printed = print_lir(&lir);
            let again = parse_lir(&printed, "fuzz").unwrap_or_else(|e| {
                panic!("printed text does not parse: {e}\ninput:\n{text}\nprinted:\n{printed}")
            });
            assert_eq!(print_lir(&again), printed);
        }
    }

    #[test]
    fn fuzz_truncations_and_mutations_never_panic() {
        let mut seeds = vec![print_lir(&odd_lir())];
        for (src, bcast) in BODIES {
            let g = snipjit_ir::text::parse(src, "body.sg").unwrap();
            crate::lower(&g, bcast, &target(8), &mut |_, lir| {
                seeds.push(print_lir(lir))
            })
            .unwrap();
        }
        let iters: usize = std::env::var("LIR_FUZZ_ITERS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3000);
        let pieces = [
            "%",
            "%1",
            ":",
            "=",
            ",",
            "[",
            "]",
            "(",
            ")",
            "@",
            "?",
            "\"",
            "\\",
            ";",
            "-",
            "1e",
            "0x",
            "nan(",
            "inf",
            "-inf",
            "r999",
            "s",
            "L",
            "in",
            "out",
            "99999999999999999999",
            "\n",
            " LoopEnd L0\n",
            " LoopBegin L7\n",
            "values=1048577",
            " locations 1048576\n",
            "\u{e9}",
            "\u{1F600}",
            "\t",
            "\r",
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for seed in &seeds {
            let chars: Vec<char> = seed.chars().collect();
            for cut in 0..chars.len() {
                check_no_panic(&chars[..cut].iter().collect::<String>());
            }
        }
        for _ in 0..iters {
            let seed = &seeds[rng.below(seeds.len())];
            let mut chars: Vec<char> = seed.chars().collect();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(chars.len() + 1);
                match rng.below(4) {
                    0 if at < chars.len() => {
                        chars.remove(at);
                    }
                    1 => {
                        let p = pieces[rng.below(pieces.len())];
                        for (k, c) in p.chars().enumerate() {
                            chars.insert(at + k, c);
                        }
                    }
                    2 if at < chars.len() => {
                        chars[at] = char::from(rng.below(128) as u8);
                    }
                    _ => {
                        // Swap two lines.
                        let text: String = chars.iter().collect();
                        let mut lines: Vec<&str> = text.lines().collect();
                        let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
                        if a < lines.len() && b < lines.len() {
                            lines.swap(a, b);
                        }
                        chars = lines.join("\n").chars().collect();
                    }
                }
            }
            check_no_panic(&chars.iter().collect::<String>());
        }
    }
}
