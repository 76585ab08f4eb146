//! Tokens of the `.sg` format.
//!
//! Newlines end statements, so the lexer reports them, except inside `(...)` and
//! `[...]` where a long call or list may span lines. Comments (`#` to the end of
//! the line) and other whitespace are skipped.

use super::{Pos, is_name_char, is_name_start};

/// One token kind.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    /// A bare name or keyword: `x`, `f32`, `graph`, `/enc/MatMul_0`.
    Ident(String),
    /// A quoted name with escapes resolved.
    Str(String),
    /// A number as written, with its sign: `-1`, `0.5`, `1e-45`, `0x7fc00001`.
    Num(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    LBrace,
    RBrace,
    Comma,
    Colon,
    Eq,
    At,
    Question,
    /// A `-` not followed by a digit (as in `-inf`).
    Minus,
    Newline,
    Eof,
}

impl Tok {
    /// How the token is named in error messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("'{s}'"),
            Tok::Str(s) => format!("string \"{}\"", s.escape_debug()),
            Tok::Num(s) => format!("number {s}"),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::LBracket => "'['".into(),
            Tok::RBracket => "']'".into(),
            Tok::LBrace => "'{'".into(),
            Tok::RBrace => "'}'".into(),
            Tok::Comma => "','".into(),
            Tok::Colon => "':'".into(),
            Tok::Eq => "'='".into(),
            Tok::At => "'@'".into(),
            Tok::Question => "'?'".into(),
            Tok::Minus => "'-'".into(),
            Tok::Newline => "end of line".into(),
            Tok::Eof => "end of file".into(),
        }
    }
}

/// A token and where it starts.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Token {
    pub tok: Tok,
    pub pos: Pos,
}

/// A lexing error: position and message.
pub(crate) type LexError = (Pos, String);

struct Cursor<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    pos: Pos,
}

impl Cursor<'_> {
    fn peek(&mut self) -> Option<char> {
        self.chars.peek().copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.pos.line += 1;
            self.pos.col = 1;
        } else {
            self.pos.col += 1;
        }
        Some(c)
    }
}

/// Splits `src` into tokens; the last one is [`Tok::Eof`].
pub(crate) fn lex(src: &str) -> Result<Vec<Token>, LexError> {
    let mut cur = Cursor {
        chars: src.chars().peekable(),
        pos: Pos { line: 1, col: 1 },
    };
    let mut toks: Vec<Token> = Vec::new();
    // Depth of open '(' and '['; newlines inside them are not statement ends.
    let mut depth = 0usize;
    loop {
        let pos = cur.pos;
        let Some(c) = cur.peek() else {
            toks.push(Token { tok: Tok::Eof, pos });
            return Ok(toks);
        };
        let tok = match c {
            '\n' => {
                cur.bump();
                let last_is_nl = toks.last().is_none_or(|t| t.tok == Tok::Newline);
                if depth > 0 || last_is_nl {
                    continue;
                }
                Tok::Newline
            }
            c if c.is_whitespace() => {
                cur.bump();
                continue;
            }
            '#' => {
                while cur.peek().is_some_and(|c| c != '\n') {
                    cur.bump();
                }
                continue;
            }
            '"' => {
                cur.bump();
                Tok::Str(lex_string(&mut cur, pos)?)
            }
            '-' => {
                cur.bump();
                if cur.peek().is_some_and(|c| c.is_ascii_digit()) {
                    Tok::Num(format!("-{}", lex_number(&mut cur)))
                } else {
                    Tok::Minus
                }
            }
            c if c.is_ascii_digit() => Tok::Num(lex_number(&mut cur)),
            c if is_name_start(c) => {
                let mut s = String::new();
                while let Some(c) = cur.peek().filter(|&c| is_name_char(c)) {
                    s.push(c);
                    cur.bump();
                }
                Tok::Ident(s)
            }
            _ => {
                cur.bump();
                match c {
                    '(' => {
                        depth += 1;
                        Tok::LParen
                    }
                    '[' => {
                        depth += 1;
                        Tok::LBracket
                    }
                    ')' => {
                        depth = depth.saturating_sub(1);
                        Tok::RParen
                    }
                    ']' => {
                        depth = depth.saturating_sub(1);
                        Tok::RBracket
                    }
                    '{' => Tok::LBrace,
                    '}' => Tok::RBrace,
                    ',' => Tok::Comma,
                    ':' => Tok::Colon,
                    '=' => Tok::Eq,
                    '@' => Tok::At,
                    '?' => Tok::Question,
                    c => {
                        return Err((pos, format!("unexpected character '{}'", c.escape_debug())));
                    }
                }
            }
        };
        toks.push(Token { tok, pos });
    }
}

/// Reads the rest of a number whose first digit is next: digits, letters, `_` and
/// `.`, and a sign right after a decimal exponent's `e`. Validation is the parser's.
fn lex_number(cur: &mut Cursor<'_>) -> String {
    let mut s = String::new();
    while let Some(c) = cur.peek() {
        let is_hex = s.starts_with("0x") || s.starts_with("0X");
        let exp_sign = matches!(c, '+' | '-') && !is_hex && s.ends_with(['e', 'E']);
        if c.is_ascii_alphanumeric() || c == '_' || c == '.' || exp_sign {
            s.push(c);
            cur.bump();
        } else {
            break;
        }
    }
    s
}

/// Reads a quoted string after its opening quote, resolving escapes.
fn lex_string(cur: &mut Cursor<'_>, start: Pos) -> Result<String, LexError> {
    let mut s = String::new();
    loop {
        let pos = cur.pos;
        match cur.bump() {
            None | Some('\n') => {
                return Err((start, "unterminated string".into()));
            }
            Some('"') => return Ok(s),
            Some('\\') => {
                let c = match cur.bump() {
                    Some('"') => '"',
                    Some('\\') => '\\',
                    Some('n') => '\n',
                    Some('t') => '\t',
                    Some('r') => '\r',
                    Some('u') => lex_unicode_escape(cur, pos)?,
                    None | Some('\n') => return Err((start, "unterminated string".into())),
                    Some(c) => {
                        return Err((pos, format!("invalid escape '\\{}'", c.escape_debug())));
                    }
                };
                s.push(c);
            }
            Some(c) => s.push(c),
        }
    }
}

/// Reads `{HEX}` after `\u`.
fn lex_unicode_escape(cur: &mut Cursor<'_>, pos: Pos) -> Result<char, LexError> {
    let bad = || (pos, "invalid unicode escape: write \\u{HEX}".to_string());
    if cur.bump() != Some('{') {
        return Err(bad());
    }
    let mut hex = String::new();
    loop {
        match cur.bump() {
            Some('}') => break,
            Some(c) if c.is_ascii_hexdigit() && hex.len() < 6 => hex.push(c),
            _ => return Err(bad()),
        }
    }
    u32::from_str_radix(&hex, 16)
        .ok()
        .and_then(char::from_u32)
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<Tok> {
        lex(src).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn tokens_and_positions() {
        let toks = lex("y: f32[N, ?] = Add(x, \"a b\") # c\n  return y\n").unwrap();
        let t: Vec<_> = toks.iter().map(|t| &t.tok).collect();
        assert_eq!(
            t,
            [
                &Tok::Ident("y".into()),
                &Tok::Colon,
                &Tok::Ident("f32".into()),
                &Tok::LBracket,
                &Tok::Ident("N".into()),
                &Tok::Comma,
                &Tok::Question,
                &Tok::RBracket,
                &Tok::Eq,
                &Tok::Ident("Add".into()),
                &Tok::LParen,
                &Tok::Ident("x".into()),
                &Tok::Comma,
                &Tok::Str("a b".into()),
                &Tok::RParen,
                &Tok::Newline,
                &Tok::Ident("return".into()),
                &Tok::Ident("y".into()),
                &Tok::Newline,
                &Tok::Eof,
            ]
        );
        assert_eq!(toks[9].pos, Pos { line: 1, col: 16 });
        assert_eq!(toks[16].pos, Pos { line: 2, col: 3 });
    }

    #[test]
    fn numbers() {
        assert_eq!(
            kinds("-1 1e-45 2.5E+3 0x7fe00000 -inf"),
            [
                Tok::Num("-1".into()),
                Tok::Num("1e-45".into()),
                Tok::Num("2.5E+3".into()),
                Tok::Num("0x7fe00000".into()),
                Tok::Minus,
                Tok::Ident("inf".into()),
                Tok::Eof
            ]
        );
    }

    #[test]
    fn newlines_inside_brackets_are_skipped() {
        assert_eq!(
            kinds("(a,\n b)\n\n[\n]"),
            [
                Tok::LParen,
                Tok::Ident("a".into()),
                Tok::Comma,
                Tok::Ident("b".into()),
                Tok::RParen,
                Tok::Newline,
                Tok::LBracket,
                Tok::RBracket,
                Tok::Eof
            ]
        );
    }

    #[test]
    fn string_escapes_and_errors() {
        assert_eq!(kinds(r#""a\"\\\n\u{e9}""#)[0], Tok::Str("a\"\\\né".into()));
        assert_eq!(
            lex("x \"abc").unwrap_err(),
            (Pos { line: 1, col: 3 }, "unterminated string".into())
        );
        assert_eq!(lex("\"a\\q\"").unwrap_err().1, "invalid escape '\\q'");
        assert_eq!(
            lex("\"\\u{d800}\"").unwrap_err().1,
            "invalid unicode escape: write \\u{HEX}"
        );
        assert_eq!(
            lex("a % b").unwrap_err(),
            (Pos { line: 1, col: 3 }, "unexpected character '%'".into())
        );
    }
}
