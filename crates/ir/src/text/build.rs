//! The syntax tree to a [`Graph`]: resolves names, builds ops from their
//! attributes, infers types with [`infer_op`] and checks the written ones.
//!
//! Arena order follows the text: the header inputs that have no `input` line come
//! first (in header order), then every statement in order, then the Results of the
//! return items that have no `output` line (in return order).

use std::collections::{HashMap, HashSet};

use half::{bf16, f16};

use super::Pos;
use super::parse::{Arg, AttrVal, GraphAst, Lit, OpAst, PResult, RetItem, Sp, Stmt, TypeAst};
use crate::infer::infer_op;
use crate::{
    BinaryOp, DType, Graph, Node, NodeId, Op, Output, ReduceKind, Subgraph, SubgraphKind, Tensor,
    TensorData, TensorType, UnaryOp, ValueRef,
};

/// Builds the graph of a parsed `graph` block (recursing into subgraph bodies).
pub(crate) fn build(ast: &GraphAst) -> PResult<Graph> {
    let mut b = Builder {
        g: Graph::new(ast.name.v.clone()),
        scope: HashMap::new(),
        header: HashMap::new(),
    };
    for (i, p) in ast.params.iter().enumerate() {
        if b.header.insert(p.name.v.clone(), i).is_some() {
            return Err((
                p.name.pos,
                format!("duplicate name '{}': already a graph input", p.name.v),
            ));
        }
    }

    // Which inputs and outputs are placed by `input` / `output` lines.
    let mut placed_inputs = HashSet::new();
    let mut placed_outputs = HashSet::new();
    for s in &ast.stmts {
        match s {
            Stmt::Input(n) => {
                if !b.header.contains_key(&n.v) {
                    return Err((
                        n.pos,
                        format!("'{}' is not an input in the graph header", n.v),
                    ));
                }
                if !placed_inputs.insert(n.v.as_str()) {
                    return Err((n.pos, format!("input '{}' is placed twice", n.v)));
                }
            }
            Stmt::Output(k) => {
                if k.v >= ast.ret.len() as u64 {
                    return Err((
                        k.pos,
                        format!(
                            "output {} does not exist: return has {} items",
                            k.v,
                            ast.ret.len()
                        ),
                    ));
                }
                if !placed_outputs.insert(k.v as usize) {
                    return Err((k.pos, format!("output {} is placed twice", k.v)));
                }
            }
            Stmt::Op(_) => {}
        }
    }

    let mut inputs: Vec<Option<NodeId>> = vec![None; ast.params.len()];
    let mut outputs: Vec<Option<NodeId>> = vec![None; ast.ret.len()];
    for (i, p) in ast.params.iter().enumerate() {
        if !placed_inputs.contains(p.name.v.as_str()) {
            inputs[i] = Some(b.param(ast, i));
        }
    }
    for s in &ast.stmts {
        match s {
            Stmt::Input(n) => {
                let i = b.header[&n.v];
                inputs[i] = Some(b.param(ast, i));
            }
            Stmt::Output(k) => {
                let item = &ast.ret[k.v as usize];
                if !b.scope.contains_key(&item.value.v) {
                    return Err((
                        k.pos,
                        format!(
                            "output {} returns '{}', which is not defined before this line",
                            k.v, item.value.v
                        ),
                    ));
                }
                outputs[k.v as usize] = Some(b.result(item)?);
            }
            Stmt::Op(op) => b.op(op)?,
        }
    }
    for (k, item) in ast.ret.iter().enumerate() {
        if !placed_outputs.contains(&k) {
            outputs[k] = Some(b.result(item)?);
        }
    }
    let mut g = b.g;
    g.inputs = inputs
        .into_iter()
        .map(|i| i.expect("every input is created once"))
        .collect();
    g.outputs = outputs
        .into_iter()
        .map(|o| o.expect("every output is created once"))
        .collect();
    // The builder checked everything verify checks; this is a guard against drift.
    crate::verify(&g).map_err(|e| {
        (
            ast.name.pos,
            format!("graph '{}' is invalid: {e}", ast.name.v),
        )
    })?;
    Ok(g)
}

struct Builder {
    g: Graph,
    /// Values defined so far, by name.
    scope: HashMap<String, ValueRef>,
    /// Header inputs by name, to their position.
    header: HashMap<String, usize>,
}

impl Builder {
    /// Creates the Parameter node of header input `i`.
    fn param(&mut self, ast: &GraphAst, i: usize) -> NodeId {
        let p = &ast.params[i];
        let id = self.g.add_node(Node {
            name: p.node_name.as_ref().map_or(&p.name.v, |n| &n.v).clone(),
            op: Op::Parameter,
            inputs: vec![],
            outputs: vec![Output {
                name: p.name.v.clone(),
                ty: p.ty.ty.clone(),
            }],
        });
        self.scope.insert(p.name.v.clone(), ValueRef::new(id, 0));
        id
    }

    fn lookup(&self, name: &Sp<String>) -> PResult<ValueRef> {
        if let Some(&v) = self.scope.get(&name.v) {
            return Ok(v);
        }
        if self.header.contains_key(&name.v) {
            return Err((
                name.pos,
                format!("input '{}' is used before its 'input' line", name.v),
            ));
        }
        Err((name.pos, format!("unknown value '{}'", name.v)))
    }

    /// Creates the Result node of one return item.
    fn result(&mut self, item: &RetItem) -> PResult<NodeId> {
        let v = self.lookup(&item.value)?;
        let out = item.out_name.as_ref().unwrap_or(&item.value);
        let ty = self.g.value_type(v).clone();
        Ok(self.g.add_node(Node {
            name: item.node_name.as_ref().unwrap_or(out).v.clone(),
            op: Op::Result,
            inputs: vec![v],
            outputs: vec![Output {
                name: out.v.clone(),
                ty,
            }],
        }))
    }

    fn op(&mut self, ast: &OpAst) -> PResult<()> {
        let node_name = match (&ast.node_name, ast.lhs.first()) {
            (Some(n), _) => n.v.clone(),
            (None, Some(l)) => l.name.v.clone(),
            (None, None) => String::new(),
        };
        let shown = if node_name.is_empty() {
            "<unnamed>"
        } else {
            &node_name
        };
        let ctx = |m: String| format!("node '{shown}' ({}): {m}", ast.op.v);

        let op = make_op(ast)?;
        let mut inputs = Vec::new();
        for a in &ast.args {
            if let Arg::Name(n) = &a.v {
                inputs.push(self.lookup(&Sp {
                    v: n.clone(),
                    pos: a.pos,
                })?);
            }
        }
        if let Some(n) = op.arity()
            && n != inputs.len()
            && !matches!(op, Op::Constant(_))
        {
            let s = if n == 1 { "" } else { "s" };
            return Err((
                ast.op.pos,
                ctx(format!("expects {n} input{s}, got {}", inputs.len())),
            ));
        }
        let tys = infer_op(&self.g, &op, &inputs).map_err(|m| (ast.op.pos, ctx(m)))?;
        if tys.len() != ast.lhs.len() {
            let pos = ast.lhs.first().map_or(ast.op.pos, |l| l.name.pos);
            return Err((
                pos,
                ctx(format!(
                    "the op has {} outputs, but {} names are written",
                    tys.len(),
                    ast.lhs.len()
                )),
            ));
        }
        let mut outputs = Vec::new();
        for (l, ty) in ast.lhs.iter().zip(tys) {
            if let Some(w) = &l.ty
                && w.ty != ty
            {
                return Err((
                    w.pos,
                    ctx(format!(
                        "written type {} of '{}' differs from the inferred type {ty}",
                        w.ty, l.name.v
                    )),
                ));
            }
            if self.scope.contains_key(&l.name.v)
                || self.header.contains_key(&l.name.v)
                || outputs.iter().any(|o: &Output| o.name == l.name.v)
            {
                return Err((
                    l.name.pos,
                    format!(
                        "duplicate name '{}': the value is already defined",
                        l.name.v
                    ),
                ));
            }
            outputs.push(Output {
                name: l.name.v.clone(),
                ty,
            });
        }
        let id = self.g.add_node(Node {
            name: node_name,
            op,
            inputs,
            outputs,
        });
        for (port, l) in ast.lhs.iter().enumerate() {
            self.scope
                .insert(l.name.v.clone(), ValueRef::new(id, port as u32));
        }
        Ok(())
    }
}

/// Builds the op of an op line from its name, attributes and (for Subgraph) body.
fn make_op(ast: &OpAst) -> PResult<Op> {
    let name = ast.op.v.as_str();
    if ast.body.is_some() && name != "Subgraph" {
        return Err((
            ast.op.pos,
            format!("only Subgraph takes a graph body, not {name}"),
        ));
    }
    let mut a = Attrs::new(ast)?;
    let op = if let Some(b) = BinaryOp::from_name(name) {
        Op::Binary(b)
    } else if let Some(u) = UnaryOp::ALL
        .into_iter()
        .find(|u| !u.has_params() && u.name() == name)
    {
        Op::Unary(u)
    } else if let Some(kind) = ReduceKind::ALL.into_iter().find(|k| k.name() == name) {
        Op::Reduce {
            kind,
            axes: a.req_ints("axes")?,
            keep_dims: a.opt_bool("keep_dims", false)?,
        }
    } else {
        match name {
            "Parameter" => {
                return Err((
                    ast.op.pos,
                    "graph inputs are declared in the graph header, not with Parameter".into(),
                ));
            }
            "Result" => {
                return Err((
                    ast.op.pos,
                    "graph outputs are declared with return, not with Result".into(),
                ));
            }
            "Constant" => Op::Constant(constant(ast)?),
            "Clamp" => Op::Unary(UnaryOp::Clamp {
                min: a.req_f32("min")?,
                max: a.req_f32("max")?,
            }),
            "Swish" => Op::Unary(UnaryOp::Swish {
                beta: a.opt_f32("beta", 1.0)?,
            }),
            "Elu" => Op::Unary(UnaryOp::Elu {
                alpha: a.opt_f32("alpha", 1.0)?,
            }),
            "LeakyRelu" => Op::Unary(UnaryOp::LeakyRelu {
                alpha: a.opt_f32("alpha", 0.01)?,
            }),
            "Select" => Op::Select,
            "Convert" => Op::Convert {
                to: a.req_dtype("to")?,
            },
            "Softmax" => Op::Softmax {
                axis: a.req_int("axis")?,
            },
            "MatMul" => Op::MatMul {
                transpose_a: a.opt_bool("transpose_a", false)?,
                transpose_b: a.opt_bool("transpose_b", false)?,
            },
            "Transpose" => {
                let (perm, pos) = a.req_ints_at("perm")?;
                let perm = perm
                    .into_iter()
                    .map(|p| {
                        usize::try_from(p).map_err(|_| (pos, format!("perm entry {p} is negative")))
                    })
                    .collect::<PResult<_>>()?;
                Op::Transpose { perm }
            }
            "Reshape" => Op::Reshape {
                allow_zero: a.opt_bool("allow_zero", false)?,
            },
            "Broadcast" => Op::Broadcast,
            "Unsqueeze" => Op::Unsqueeze {
                axes: a.req_ints("axes")?,
            },
            "Squeeze" => Op::Squeeze {
                axes: a.req_ints("axes")?,
            },
            "Concat" => Op::Concat {
                axis: a.req_int("axis")?,
            },
            "ShapeOf" => Op::ShapeOf,
            "Gather" => Op::Gather {
                axis: a.req_int("axis")?,
            },
            "Identity" => Op::Identity,
            "Subgraph" => {
                let kind = a.req_kind("kind")?;
                let Some(body) = &ast.body else {
                    return Err((
                        ast.op.pos,
                        "Subgraph needs a body: '... = Subgraph(...) graph name(...) {'".into(),
                    ));
                };
                Op::Subgraph(Box::new(Subgraph {
                    kind,
                    body: build(body)?,
                }))
            }
            _ => return Err((ast.op.pos, format!("unknown op '{name}'"))),
        }
    };
    if !matches!(op, Op::Constant(_))
        && let Some(arg) = ast.args.iter().find(|a| !matches!(a.v, Arg::Name(_)))
    {
        return Err((arg.pos, format!("{name} takes value names, not literals")));
    }
    a.finish()?;
    Ok(op)
}

/// The attributes of one op line, consumed by name; leftovers are errors.
struct Attrs<'a> {
    op: &'a str,
    items: Vec<(&'a Sp<String>, &'a Sp<AttrVal>, bool)>,
    op_pos: Pos,
}

impl<'a> Attrs<'a> {
    fn new(ast: &'a OpAst) -> PResult<Attrs<'a>> {
        let mut seen = HashSet::new();
        for (k, _) in &ast.attrs {
            if !seen.insert(k.v.as_str()) {
                return Err((k.pos, format!("attribute '{}' is given twice", k.v)));
            }
        }
        Ok(Attrs {
            op: &ast.op.v,
            items: ast.attrs.iter().map(|(k, v)| (k, v, false)).collect(),
            op_pos: ast.op.pos,
        })
    }

    fn take(&mut self, key: &str) -> Option<&'a Sp<AttrVal>> {
        let item = self.items.iter_mut().find(|(k, _, _)| k.v == key)?;
        item.2 = true;
        Some(item.1)
    }

    fn req(&mut self, key: &str) -> PResult<&'a Sp<AttrVal>> {
        let (op, pos) = (self.op, self.op_pos);
        self.take(key)
            .ok_or_else(|| (pos, format!("{op} needs the attribute '{key}'")))
    }

    fn wrong(&self, key: &str, v: &Sp<AttrVal>, want: &str) -> (Pos, String) {
        (
            v.pos,
            format!("attribute '{key}' of {} must be {want}", self.op),
        )
    }

    fn int_of(&self, key: &str, v: &Sp<AttrVal>) -> PResult<i64> {
        match &v.v {
            AttrVal::Lit(Lit::Num(n)) => parse_int(n).map_err(|_| self.wrong(key, v, "an integer")),
            _ => Err(self.wrong(key, v, "an integer")),
        }
    }

    fn req_int(&mut self, key: &str) -> PResult<i64> {
        let v = self.req(key)?;
        self.int_of(key, v)
    }

    fn req_ints_at(&mut self, key: &str) -> PResult<(Vec<i64>, Pos)> {
        let v = self.req(key)?;
        match &v.v {
            AttrVal::List(items) => {
                let ints = items
                    .iter()
                    .map(|l| match &l.v {
                        Lit::Num(n) => parse_int(n)
                            .map_err(|_| (l.pos, format!("expected an integer, found {n}"))),
                        _ => Err((
                            l.pos,
                            format!("attribute '{key}' of {} must list integers", self.op),
                        )),
                    })
                    .collect::<PResult<_>>()?;
                Ok((ints, v.pos))
            }
            _ => Err(self.wrong(key, v, "a list of integers like [0, 1]")),
        }
    }

    fn req_ints(&mut self, key: &str) -> PResult<Vec<i64>> {
        Ok(self.req_ints_at(key)?.0)
    }

    fn opt_bool(&mut self, key: &str, default: bool) -> PResult<bool> {
        match self.take(key) {
            None => Ok(default),
            Some(v) => match &v.v {
                AttrVal::Lit(Lit::Bool(b)) => Ok(*b),
                _ => Err(self.wrong(key, v, "true or false")),
            },
        }
    }

    fn f32_of(&self, key: &str, v: &Sp<AttrVal>) -> PResult<f32> {
        match &v.v {
            AttrVal::Lit(l) => {
                lit_f32(l).map_err(|m| (v.pos, format!("attribute '{key}' of {}: {m}", self.op)))
            }
            _ => Err(self.wrong(key, v, "a number")),
        }
    }

    fn req_f32(&mut self, key: &str) -> PResult<f32> {
        let v = self.req(key)?;
        self.f32_of(key, v)
    }

    fn opt_f32(&mut self, key: &str, default: f32) -> PResult<f32> {
        match self.take(key) {
            None => Ok(default),
            Some(v) => self.f32_of(key, v),
        }
    }

    fn req_dtype(&mut self, key: &str) -> PResult<DType> {
        let v = self.req(key)?;
        match &v.v {
            AttrVal::Word(w) => {
                DType::from_name(w).ok_or_else(|| (v.pos, format!("unknown dtype '{w}'")))
            }
            _ => Err(self.wrong(key, v, "a dtype like f32")),
        }
    }

    fn req_kind(&mut self, key: &str) -> PResult<SubgraphKind> {
        let v = self.req(key)?;
        let kinds = [
            SubgraphKind::Elementwise,
            SubgraphKind::Mha,
            SubgraphKind::Softmax,
        ];
        match &v.v {
            AttrVal::Word(w) => kinds
                .into_iter()
                .find(|k| k.name() == w)
                .ok_or_else(|| self.wrong(key, v, "elementwise, mha or softmax")),
            _ => Err(self.wrong(key, v, "elementwise, mha or softmax")),
        }
    }

    fn finish(self) -> PResult<()> {
        match self.items.iter().find(|(_, _, used)| !used) {
            Some((k, _, _)) => Err((
                k.pos,
                format!("unknown attribute '{}' for {}", k.v, self.op),
            )),
            None => Ok(()),
        }
    }
}

/// Parses a decimal integer (with optional sign); no float syntax.
fn parse_int(s: &str) -> Result<i64, ()> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    s.parse().map_err(|_| ())
}

/// Checks that `s` is decimal float syntax: digits, optional `.digits`, optional exponent.
fn is_decimal(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let (mant, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = match mant.find('.') {
        Some(i) => (&mant[..i], Some(&mant[i + 1..])),
        None => (mant, None),
    };
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    let exp_ok = exp.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    !int.is_empty() && digits(int) && frac.is_none_or(digits) && exp_ok
}

/// A float element type that literals convert to.
trait FloatLit: Copy {
    const NAME: &'static str;
    const INF: Self;
    const NEG_INF: Self;
    /// The canonical NaN, written `nan`.
    const NAN: Self;
    /// Rounds a decimal (already checked by [`is_decimal`]) to the nearest value.
    fn from_dec(s: &str) -> Option<Self>;
    /// The NaN with these bits, if they are a NaN of this type.
    fn nan_from_bits(b: u64) -> Option<Self>;
    fn finite(self) -> bool;
}

impl FloatLit for f32 {
    const NAME: &'static str = "f32";
    const INF: f32 = f32::INFINITY;
    const NEG_INF: f32 = f32::NEG_INFINITY;
    const NAN: f32 = f32::NAN;
    fn from_dec(s: &str) -> Option<f32> {
        s.parse().ok()
    }
    fn nan_from_bits(b: u64) -> Option<f32> {
        u32::try_from(b)
            .ok()
            .map(f32::from_bits)
            .filter(|v| v.is_nan())
    }
    fn finite(self) -> bool {
        self.is_finite()
    }
}

// bf16 and f16 read the decimal as f64 and round once more: exact for every value
// the printer writes (the shortest f32 decimal of an exactly representable value).
impl FloatLit for bf16 {
    const NAME: &'static str = "bf16";
    const INF: bf16 = bf16::INFINITY;
    const NEG_INF: bf16 = bf16::NEG_INFINITY;
    const NAN: bf16 = bf16::NAN;
    fn from_dec(s: &str) -> Option<bf16> {
        s.parse::<f64>().ok().map(bf16::from_f64)
    }
    fn nan_from_bits(b: u64) -> Option<bf16> {
        u16::try_from(b)
            .ok()
            .map(bf16::from_bits)
            .filter(|v| v.is_nan())
    }
    fn finite(self) -> bool {
        self.is_finite()
    }
}

impl FloatLit for f16 {
    const NAME: &'static str = "f16";
    const INF: f16 = f16::INFINITY;
    const NEG_INF: f16 = f16::NEG_INFINITY;
    const NAN: f16 = f16::NAN;
    fn from_dec(s: &str) -> Option<f16> {
        s.parse::<f64>().ok().map(f16::from_f64)
    }
    fn nan_from_bits(b: u64) -> Option<f16> {
        u16::try_from(b)
            .ok()
            .map(f16::from_bits)
            .filter(|v| v.is_nan())
    }
    fn finite(self) -> bool {
        self.is_finite()
    }
}

/// The value of a literal in float type `T`.
fn lit_float<T: FloatLit>(l: &Lit) -> Result<T, String> {
    let what = T::NAME;
    match l {
        Lit::Num(n) => {
            if !is_decimal(n) {
                return Err(format!("bad number '{n}'"));
            }
            let v = T::from_dec(n).ok_or_else(|| format!("bad number '{n}'"))?;
            if !v.finite() {
                return Err(format!("{n} is out of range for {what}"));
            }
            Ok(v)
        }
        Lit::Inf { neg } => Ok(if *neg { T::NEG_INF } else { T::INF }),
        Lit::Nan { bits: None } => Ok(T::NAN),
        Lit::Nan { bits: Some(b) } => {
            T::nan_from_bits(*b).ok_or_else(|| format!("0x{b:x} is not the bits of a {what} NaN"))
        }
        Lit::Bool(_) => Err(format!("expected a {what} number, found a bool")),
    }
}

fn lit_f32(l: &Lit) -> Result<f32, String> {
    lit_float(l)
}

fn lit_int<T: TryFrom<i64>>(l: &Lit, what: &str) -> Result<T, String> {
    match l {
        Lit::Num(n) => {
            let v =
                parse_int(n).map_err(|_| format!("expected an integer for {what}, found {n}"))?;
            T::try_from(v).map_err(|_| format!("{n} is out of range for {what}"))
        }
        _ => Err(format!("expected an integer for {what}")),
    }
}

fn lit_bool(l: &Lit) -> Result<bool, String> {
    match l {
        Lit::Bool(b) => Ok(*b),
        _ => Err("expected true or false for bool".into()),
    }
}

/// Converts every literal with `f`, reporting the failing literal's position.
fn convert<T>(lits: &[Sp<Lit>], f: impl Fn(&Lit) -> Result<T, String>) -> PResult<Vec<T>> {
    lits.iter()
        .map(|l| f(&l.v).map_err(|m| (l.pos, m)))
        .collect()
}

/// The tensor of a `Constant(literal)` line, typed by its written type (or f32 /
/// bool, shape `[]` or `[n]`, when the type is omitted).
fn constant(ast: &OpAst) -> PResult<Tensor> {
    let [arg] = ast.args.as_slice() else {
        return Err((
            ast.op.pos,
            format!(
                "Constant takes one literal, got {} arguments",
                ast.args.len()
            ),
        ));
    };
    let (lits, is_list): (Vec<Sp<Lit>>, bool) = match &arg.v {
        Arg::Scalar(l) => (
            vec![Sp {
                v: l.clone(),
                pos: arg.pos,
            }],
            false,
        ),
        Arg::List(items) => (items.clone(), true),
        Arg::Name(n) => {
            return Err((
                arg.pos,
                format!("Constant takes a literal, not the value name '{n}'"),
            ));
        }
    };
    let written: Option<&TypeAst> = match ast.lhs.as_slice() {
        [l] => l.ty.as_ref(),
        _ => None,
    };
    let ty = match written {
        Some(t) => t.ty.clone(),
        None => {
            let dtype = if lits.first().is_some_and(|l| matches!(l.v, Lit::Bool(_))) {
                DType::Bool
            } else {
                DType::F32
            };
            let shape = if is_list {
                crate::Shape::fixed(&[lits.len()])
            } else {
                crate::Shape::scalar()
            };
            TensorType::new(dtype, shape)
        }
    };
    let tpos = written.map_or(ast.op.pos, |t| t.pos);
    let Some(shape) = ty.shape.as_static() else {
        return Err((
            tpos,
            format!("a Constant needs a static shape, got {}", ty.shape),
        ));
    };
    let data = match ty.dtype {
        DType::F32 => TensorData::F32(convert(&lits, lit_f32)?),
        DType::BF16 => TensorData::BF16(convert(&lits, lit_float)?),
        DType::F16 => TensorData::F16(convert(&lits, lit_float)?),
        DType::I8 => TensorData::I8(convert(&lits, |l| lit_int(l, "i8"))?),
        DType::U8 => TensorData::U8(convert(&lits, |l| lit_int(l, "u8"))?),
        DType::I32 => TensorData::I32(convert(&lits, |l| lit_int(l, "i32"))?),
        DType::I64 => TensorData::I64(convert(&lits, |l| lit_int(l, "i64"))?),
        DType::Bool => TensorData::Bool(convert(&lits, lit_bool)?),
    };
    Tensor::new(shape, data).map_err(|e| {
        (
            arg.pos,
            format!(
                "Constant of type {ty} needs {} elements, got {}",
                e.expected, e.got
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_syntax() {
        for ok in ["0", "-1", "1.5", "1.", "1e5", "1E-45", "2.5e+3", "-0"] {
            assert!(is_decimal(ok), "{ok}");
        }
        for bad in [
            "", "-", "1e", "0x10", "1.2.3", "1_0", "1e+", "inf", "nan", "1f",
        ] {
            assert!(!is_decimal(bad), "{bad}");
        }
    }

    #[test]
    fn float_literals_round_to_the_type() {
        assert_eq!(lit_f32(&Lit::Num("0.1".into())).unwrap(), 0.1f32);
        assert_eq!(lit_f32(&Lit::Num("1e-45".into())).unwrap().to_bits(), 1);
        assert_eq!(
            lit_f32(&Lit::Num("-0".into())).unwrap().to_bits(),
            0x8000_0000
        );
        assert!(
            lit_f32(&Lit::Num("1e39".into()))
                .unwrap_err()
                .contains("out of range")
        );
        assert!(
            lit_float::<f16>(&Lit::Num("70000".into()))
                .unwrap_err()
                .contains("out of range")
        );
        assert_eq!(
            lit_float::<bf16>(&Lit::Num("0.5".into())).unwrap(),
            bf16::from_f32(0.5)
        );
        assert_eq!(
            lit_f32(&Lit::Nan {
                bits: Some(0x7fa0_0000)
            })
            .unwrap()
            .to_bits(),
            0x7fa0_0000
        );
        assert!(
            lit_f32(&Lit::Nan {
                bits: Some(0x3f80_0000)
            })
            .is_err()
        );
        assert!(
            lit_float::<f16>(&Lit::Nan {
                bits: Some(0x7fc0_0000)
            })
            .is_err()
        );
        assert_eq!(lit_int::<u8>(&Lit::Num("255".into()), "u8"), Ok(255));
        assert!(lit_int::<u8>(&Lit::Num("256".into()), "u8").is_err());
        assert!(lit_int::<i32>(&Lit::Num("1.5".into()), "i32").is_err());
    }
}
