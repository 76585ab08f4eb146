//! Tokens to a syntax tree; [`parse`] then hands the tree to the builder.
//!
//! The syntax tree keeps every position, so that the builder's semantic errors
//! (unknown value, type mismatch, ...) point at the right line and column.

use super::build::build;
use super::lexer::{Tok, Token, lex};
use super::{MAX_NESTING, ParseError, Pos};
use crate::{DType, Dim, Graph, Shape, TensorType};

/// A value with the position where it was written.
#[derive(Clone, Debug)]
pub(crate) struct Sp<T> {
    pub v: T,
    pub pos: Pos,
}

/// A scalar literal as written.
#[derive(Clone, Debug)]
pub(crate) enum Lit {
    /// Decimal or hex text with its sign (`-1`, `0.5`, `1e-45`).
    Num(String),
    /// `inf` or `-inf`.
    Inf {
        neg: bool,
    },
    /// `nan`, or `nan(0x…)` with the exact bits.
    Nan {
        bits: Option<u64>,
    },
    Bool(bool),
}

/// An attribute value.
#[derive(Clone, Debug)]
pub(crate) enum AttrVal {
    Lit(Lit),
    /// A bare word: a dtype (`to=bf16`) or a subgraph kind (`kind=mha`).
    Word(String),
    List(Vec<Sp<Lit>>),
}

/// A positional argument of an op call.
#[derive(Clone, Debug)]
pub(crate) enum Arg {
    /// A value name.
    Name(String),
    /// A scalar literal (Constant only).
    Scalar(Lit),
    /// A list literal (Constant only).
    List(Vec<Sp<Lit>>),
}

/// A written type.
#[derive(Clone, Debug)]
pub(crate) struct TypeAst {
    pub ty: TensorType,
    pub pos: Pos,
}

/// A graph input in the header: `name: type [@node]`.
#[derive(Clone, Debug)]
pub(crate) struct ParamAst {
    pub name: Sp<String>,
    pub ty: TypeAst,
    pub node_name: Option<Sp<String>>,
}

/// One output name on the left of `=`, with its optional type.
#[derive(Clone, Debug)]
pub(crate) struct LhsAst {
    pub name: Sp<String>,
    pub ty: Option<TypeAst>,
}

/// An op line: `lhs, ... = Op(args, key=value, ...) [@node] [graph ...]`.
#[derive(Clone, Debug)]
pub(crate) struct OpAst {
    pub lhs: Vec<LhsAst>,
    pub op: Sp<String>,
    pub args: Vec<Sp<Arg>>,
    pub attrs: Vec<(Sp<String>, Sp<AttrVal>)>,
    pub node_name: Option<Sp<String>>,
    pub body: Option<Box<GraphAst>>,
}

/// One item of `return`: `[out =] value [@node]`.
#[derive(Clone, Debug)]
pub(crate) struct RetItem {
    pub out_name: Option<Sp<String>>,
    pub value: Sp<String>,
    pub node_name: Option<Sp<String>>,
}

/// A statement in a graph body.
#[derive(Clone, Debug)]
pub(crate) enum Stmt {
    Op(OpAst),
    /// `input x`: the Parameter node of header input `x` sits here.
    Input(Sp<String>),
    /// `output 2`: the Result node of return item 2 sits here.
    Output(Sp<u64>),
}

/// A `graph name(params) { stmts return ... }` block.
#[derive(Clone, Debug)]
pub(crate) struct GraphAst {
    pub name: Sp<String>,
    pub params: Vec<ParamAst>,
    pub stmts: Vec<Stmt>,
    pub ret: Vec<RetItem>,
}

/// Parses `.sg` text into a [`Graph`]. `file` is only used in error messages.
///
/// Types written in the text must equal the types [`crate::infer::infer_op`] gives
/// (except for graph inputs, whose written type declares them); omitted types are
/// inferred. The result passes [`crate::verify::verify`].
pub fn parse(src: &str, file: &str) -> Result<Graph, ParseError> {
    let err = |pos: Pos, message: String| ParseError {
        file: file.to_string(),
        line: pos.line,
        col: pos.col,
        message,
    };
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let toks = lex(src).map_err(|(pos, m)| err(pos, m))?;
    let mut p = Parser { toks, i: 0 };
    let ast = p.file().map_err(|(pos, m)| err(pos, m))?;
    build(&ast).map_err(|(pos, m)| err(pos, m))
}

/// A positioned error message, turned into a [`ParseError`] by [`parse`].
pub(crate) type PResult<T> = Result<T, (Pos, String)>;

struct Parser {
    toks: Vec<Token>,
    i: usize,
}

impl Parser {
    fn tok(&self) -> &Token {
        // The lexer always ends with Eof, and `bump` never moves past it.
        &self.toks[self.i.min(self.toks.len() - 1)]
    }

    fn peek(&self) -> &Tok {
        &self.tok().tok
    }

    fn peek2(&self) -> &Tok {
        &self.toks[(self.i + 1).min(self.toks.len() - 1)].tok
    }

    fn pos(&self) -> Pos {
        self.tok().pos
    }

    fn bump(&mut self) -> Token {
        let t = self.tok().clone();
        if t.tok != Tok::Eof {
            self.i += 1;
        }
        t
    }

    fn eat(&mut self, t: &Tok) -> bool {
        if self.peek() == t {
            self.bump();
            true
        } else {
            false
        }
    }

    fn unexpected<T>(&self, wanted: &str) -> PResult<T> {
        Err((
            self.pos(),
            format!("expected {wanted}, found {}", self.peek().describe()),
        ))
    }

    fn expect(&mut self, t: &Tok, wanted: &str) -> PResult<Pos> {
        if self.peek() == t {
            Ok(self.bump().pos)
        } else {
            self.unexpected(wanted)
        }
    }

    /// Expects the `close` token of a bracket opened at `open`; at end of file the
    /// error says which bracket is unterminated.
    fn close(&mut self, close: &Tok, what: &str, open: Pos) -> PResult<()> {
        if self.eat(close) {
            return Ok(());
        }
        if *self.peek() == Tok::Eof {
            return Err((self.pos(), format!("unterminated {what} opened at {open}")));
        }
        Err((
            self.pos(),
            format!(
                "expected {} to close the {what} opened at {open}, found {}",
                close.describe(),
                self.peek().describe()
            ),
        ))
    }

    fn skip_newlines(&mut self) {
        while self.eat(&Tok::Newline) {}
    }

    /// The end of a statement: a newline, or a `}` / end of file that the caller handles.
    fn end_of_line(&mut self) -> PResult<()> {
        match self.peek() {
            Tok::Newline => {
                self.bump();
                Ok(())
            }
            Tok::RBrace | Tok::Eof => Ok(()),
            t => Err((
                self.pos(),
                format!("unexpected {} after the end of the statement", t.describe()),
            )),
        }
    }

    fn file(&mut self) -> PResult<GraphAst> {
        self.skip_newlines();
        let g = self.graph(0)?;
        self.skip_newlines();
        if *self.peek() != Tok::Eof {
            return Err((
                self.pos(),
                format!(
                    "trailing {} after the graph's closing '}}'",
                    self.peek().describe()
                ),
            ));
        }
        Ok(g)
    }

    fn name(&mut self, what: &str) -> PResult<Sp<String>> {
        let pos = self.pos();
        match self.peek().clone() {
            Tok::Ident(s) | Tok::Str(s) => {
                self.bump();
                Ok(Sp { v: s, pos })
            }
            _ => self.unexpected(what),
        }
    }

    fn node_name(&mut self) -> PResult<Option<Sp<String>>> {
        if self.eat(&Tok::At) {
            Ok(Some(self.name("a node name after '@'")?))
        } else {
            Ok(None)
        }
    }

    fn graph(&mut self, depth: usize) -> PResult<GraphAst> {
        let kw = self.pos();
        if depth > MAX_NESTING {
            return Err((
                kw,
                format!("subgraph bodies nested deeper than {MAX_NESTING} levels"),
            ));
        }
        match self.peek() {
            Tok::Ident(s) if s == "graph" => {
                self.bump();
            }
            _ => return self.unexpected("'graph'"),
        }
        let name = self.name("a graph name")?;
        let open = self.expect(&Tok::LParen, "'(' after the graph name")?;
        let mut params = Vec::new();
        if !self.eat(&Tok::RParen) {
            loop {
                let pname = self.name("an input name")?;
                self.expect(&Tok::Colon, "':' and the input's type")?;
                let ty = self.ty()?;
                let node_name = self.node_name()?;
                params.push(ParamAst {
                    name: pname,
                    ty,
                    node_name,
                });
                if self.eat(&Tok::Comma) {
                    continue;
                }
                self.close(&Tok::RParen, "graph header '('", open)?;
                break;
            }
        }
        let brace = self.expect(&Tok::LBrace, "'{' to open the graph body")?;
        self.expect(&Tok::Newline, "end of line after '{'")?;
        let mut stmts = Vec::new();
        let mut ret = None;
        loop {
            self.skip_newlines();
            match self.peek() {
                Tok::RBrace => {
                    let pos = self.pos();
                    self.bump();
                    let Some(ret) = ret else {
                        return Err((pos, format!("graph '{}' has no return statement", name.v)));
                    };
                    return Ok(GraphAst {
                        name,
                        params,
                        stmts,
                        ret,
                    });
                }
                Tok::Eof => {
                    return Err((
                        self.pos(),
                        format!("unterminated graph body: '{{' at {brace} is never closed"),
                    ));
                }
                _ => {}
            }
            if ret.is_some() {
                return Err((
                    self.pos(),
                    "statement after return: return must be the last line of a graph".into(),
                ));
            }
            let keyword = match (self.peek(), self.peek2()) {
                (Tok::Ident(k), next)
                    if !matches!(next, Tok::Colon | Tok::Comma | Tok::Eq | Tok::LParen) =>
                {
                    Some(k.clone())
                }
                _ => None,
            };
            match keyword.as_deref() {
                Some("return") => {
                    self.bump();
                    ret = Some(self.ret_items()?);
                }
                Some("input") => {
                    self.bump();
                    stmts.push(Stmt::Input(
                        self.name("the name of a graph input after 'input'")?,
                    ));
                }
                Some("output") => {
                    self.bump();
                    let pos = self.pos();
                    let idx = match self.peek() {
                        Tok::Num(n) => n.parse::<u64>().ok(),
                        _ => None,
                    };
                    let Some(idx) = idx else {
                        return self.unexpected("the index of a return item after 'output'");
                    };
                    self.bump();
                    stmts.push(Stmt::Output(Sp { v: idx, pos }));
                }
                _ => stmts.push(Stmt::Op(self.op_stmt(depth)?)),
            }
            self.end_of_line()?;
        }
    }

    fn ret_items(&mut self) -> PResult<Vec<RetItem>> {
        let mut items = Vec::new();
        if matches!(self.peek(), Tok::Newline | Tok::RBrace | Tok::Eof) {
            return Ok(items);
        }
        loop {
            let first = self.name("a value name to return")?;
            let (out_name, value) = if self.eat(&Tok::Eq) {
                (Some(first), self.name("a value name after '='")?)
            } else {
                (None, first)
            };
            let node_name = self.node_name()?;
            items.push(RetItem {
                out_name,
                value,
                node_name,
            });
            if !self.eat(&Tok::Comma) {
                return Ok(items);
            }
        }
    }

    fn op_stmt(&mut self, depth: usize) -> PResult<OpAst> {
        let mut lhs = Vec::new();
        let no_lhs = matches!((self.peek(), self.peek2()), (Tok::Ident(_), Tok::LParen));
        if !no_lhs {
            loop {
                let name = self.name("a value name or a statement")?;
                let ty = if self.eat(&Tok::Colon) {
                    Some(self.ty()?)
                } else {
                    None
                };
                lhs.push(LhsAst { name, ty });
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
            self.expect(&Tok::Eq, "'=' or ','")?;
        }
        let op_pos = self.pos();
        let op = match self.peek().clone() {
            Tok::Ident(s) => {
                self.bump();
                Sp { v: s, pos: op_pos }
            }
            _ => return self.unexpected("an op name"),
        };
        let open = self.expect(&Tok::LParen, "'(' after the op name")?;
        let is_constant = op.v == "Constant";
        let mut args = Vec::new();
        let mut attrs: Vec<(Sp<String>, Sp<AttrVal>)> = Vec::new();
        if !self.eat(&Tok::RParen) {
            loop {
                let pos = self.pos();
                if let (Tok::Ident(key), Tok::Eq) = (self.peek().clone(), self.peek2()) {
                    self.bump();
                    self.bump();
                    let val = self.attr_val()?;
                    attrs.push((Sp { v: key, pos }, val));
                } else if !attrs.is_empty() {
                    return Err((pos, "positional argument after an attribute".into()));
                } else if is_constant {
                    let arg = if *self.peek() == Tok::LBracket {
                        Arg::List(self.lit_list()?)
                    } else {
                        Arg::Scalar(self.lit()?.v)
                    };
                    args.push(Sp { v: arg, pos });
                } else {
                    let n = self.name("a value name")?;
                    args.push(Sp {
                        v: Arg::Name(n.v),
                        pos,
                    });
                }
                if self.eat(&Tok::Comma) {
                    continue;
                }
                self.close(&Tok::RParen, "call '('", open)?;
                break;
            }
        }
        let node_name = self.node_name()?;
        let body = match self.peek() {
            Tok::Ident(k) if k == "graph" => Some(Box::new(self.graph(depth + 1)?)),
            _ => None,
        };
        Ok(OpAst {
            lhs,
            op,
            args,
            attrs,
            node_name,
            body,
        })
    }

    fn attr_val(&mut self) -> PResult<Sp<AttrVal>> {
        let pos = self.pos();
        let v = match self.peek().clone() {
            Tok::LBracket => AttrVal::List(self.lit_list()?),
            Tok::Ident(w) if !matches!(w.as_str(), "true" | "false" | "inf" | "nan") => {
                self.bump();
                AttrVal::Word(w)
            }
            _ => AttrVal::Lit(self.lit()?.v),
        };
        Ok(Sp { v, pos })
    }

    fn lit_list(&mut self) -> PResult<Vec<Sp<Lit>>> {
        let open = self.expect(&Tok::LBracket, "'['")?;
        let mut items = Vec::new();
        if self.eat(&Tok::RBracket) {
            return Ok(items);
        }
        loop {
            items.push(self.lit()?);
            if self.eat(&Tok::Comma) {
                continue;
            }
            self.close(&Tok::RBracket, "list '['", open)?;
            return Ok(items);
        }
    }

    fn lit(&mut self) -> PResult<Sp<Lit>> {
        let pos = self.pos();
        let neg = self.eat(&Tok::Minus);
        let v = match self.peek().clone() {
            Tok::Num(n) if !neg => {
                self.bump();
                Lit::Num(n)
            }
            Tok::Ident(w) if w == "inf" => {
                self.bump();
                Lit::Inf { neg }
            }
            Tok::Ident(w) if w == "nan" && !neg => {
                self.bump();
                let bits = if *self.peek() == Tok::LParen {
                    let open = self.bump().pos;
                    let bpos = self.pos();
                    let bits = match self.peek() {
                        Tok::Num(n) => n
                            .strip_prefix("0x")
                            .and_then(|h| u64::from_str_radix(h, 16).ok()),
                        _ => None,
                    };
                    let Some(bits) = bits else {
                        return Err((
                            bpos,
                            "expected the NaN's bits in hex, like nan(0x7fc00001)".into(),
                        ));
                    };
                    self.bump();
                    self.close(&Tok::RParen, "nan(", open)?;
                    Some(bits)
                } else {
                    None
                };
                Lit::Nan { bits }
            }
            Tok::Ident(w) if (w == "true" || w == "false") && !neg => {
                self.bump();
                Lit::Bool(w == "true")
            }
            _ if neg => return self.unexpected("a number or 'inf' after '-'"),
            _ => return self.unexpected("a literal (number, inf, nan, true or false)"),
        };
        Ok(Sp { v, pos })
    }

    fn ty(&mut self) -> PResult<TypeAst> {
        let pos = self.pos();
        let dtype = match self.peek().clone() {
            Tok::Ident(s) => match DType::from_name(&s) {
                Some(d) => d,
                None => {
                    let all: Vec<&str> = DType::ALL.iter().map(|d| d.name()).collect();
                    return Err((
                        pos,
                        format!("unknown dtype '{s}' (expected one of {})", all.join(", ")),
                    ));
                }
            },
            _ => return self.unexpected("a type like f32[N, 64]"),
        };
        self.bump();
        let open = self.expect(
            &Tok::LBracket,
            "'[' and the dims after the dtype (f32[] for a scalar)",
        )?;
        let mut shape = Shape::scalar();
        if !self.eat(&Tok::RBracket) {
            loop {
                shape.0.push(self.dim()?);
                if self.eat(&Tok::Comma) {
                    continue;
                }
                self.close(&Tok::RBracket, "shape '['", open)?;
                break;
            }
        }
        Ok(TypeAst {
            ty: TensorType::new(dtype, shape),
            pos,
        })
    }

    fn dim(&mut self) -> PResult<Dim> {
        let pos = self.pos();
        match self.peek().clone() {
            Tok::Question => {
                self.bump();
                Ok(Dim::Dynamic(None))
            }
            Tok::Ident(s) | Tok::Str(s) => {
                self.bump();
                Ok(Dim::Dynamic(Some(s)))
            }
            Tok::Num(n) => {
                self.bump();
                let ok = n.bytes().all(|b| b.is_ascii_digit());
                match n.parse::<usize>() {
                    Ok(d) if ok => Ok(Dim::Static(d)),
                    _ => Err((
                        pos,
                        format!("bad dim {n}: expected a size >= 0, a symbol or '?'"),
                    )),
                }
            }
            Tok::Minus => Err((pos, "bad dim: a dim cannot be negative".into())),
            _ => self.unexpected("a dim (size, symbol or '?')"),
        }
    }
}
