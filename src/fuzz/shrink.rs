//! Shrinking a failing case to a small regression file.
//!
//! [`shrink`] reduces a case greedily while it keeps failing the same way (a mismatch
//! stays a mismatch, a crash of the JIT stays a crash) on the ISA and thread count
//! where it failed. Each step is tried and kept only if the failure persists:
//!
//! - drop a model output;
//! - cut a value: its node becomes a new graph input holding the interpreter's value
//!   of it, which removes everything only it needed upstream;
//! - bypass a node: its users read one of its inputs instead;
//! - drop an unused graph input, or turn an input into a scalar Constant;
//! - shrink the axes of one symbolic dim (or of one static size) in every input to
//!   1, half or one less;
//! - simplify input values and scalar Constants: 0, 1, -1, 2, rounded, or three
//!   significant digits (each candidate must print shorter, so the search ends).
//!
//! Types are re-inferred after every step, so a step that makes the graph invalid is
//! simply rejected. [`regression_file`] writes the result as `.sg` text whose leading
//! comments carry the input values, and [`parse_regression`] reads it back:
//!
//! ```text
//! # snipjit regression: seed 7 case 143, mismatch on avx512 x1 threads
//! # input: x0: f32[2] = Constant([1, -0])
//! graph fuzz_7_143(x0: f32[D0]) {
//!   ...
//! }
//! ```
//!
//! An `# input:` line is the `.sg` statement of a Constant holding that input's value
//! (name, type with the concrete shape, literal); the lines come in graph input order.

use std::collections::HashSet;

use snipjit_ir::{DType, Dim, Graph, NodeId, Op, Tensor, TensorData, ValueRef};

use super::{Case, FuzzConfig, Outcome, check_case};
use crate::IsaChoice;

/// A failing case after [`shrink`].
#[derive(Clone, Debug)]
pub struct Shrunk {
    /// The smallest failing case found.
    pub case: Case,
    /// How it fails.
    pub outcome: Outcome,
    /// The ISA it fails on.
    pub isa: IsaChoice,
    /// The executor threads it fails with.
    pub threads: usize,
    /// Candidate cases tried.
    pub attempts: usize,
}

/// Error reading a regression file with [`parse_regression`].
#[derive(Debug, thiserror::Error)]
pub enum RegressionError {
    /// The model or an `# input:` line does not parse.
    #[error(transparent)]
    Parse(#[from] snipjit_ir::text::ParseError),
    /// The `# input:` lines do not match the graph's inputs.
    #[error("{file}: {reason}")]
    Inputs { file: String, reason: String },
}

/// The failure kinds a shrink step must keep.
fn same_kind(a: &Outcome, b: &Outcome) -> bool {
    matches!(
        (a, b),
        (Outcome::Mismatch(_), Outcome::Mismatch(_))
            | (
                Outcome::Crash { isa: Some(_), .. },
                Outcome::Crash { isa: Some(_), .. }
            )
    )
}

/// Shrinks `case`, which fails on `isa` x `threads` (between guard pages if
/// `guarded`), trying at most `budget` candidates. `None` if the case does not fail
/// there (or only the interpreter fails).
pub fn shrink(
    case: &Case,
    isa: IsaChoice,
    threads: usize,
    cfg: &FuzzConfig,
    guarded: bool,
    budget: usize,
) -> Option<Shrunk> {
    let outcome = check_case(case, isa, threads, cfg, guarded);
    // Only failures of the JIT shrink (a mismatch, or a crash on an ISA).
    if !same_kind(&outcome, &outcome) {
        return None;
    }
    let mut s = Shrinker {
        cur: case.clone(),
        outcome,
        isa,
        threads,
        cfg,
        guarded,
        attempts: 0,
        budget,
    };
    s.run();
    Some(Shrunk {
        case: s.cur,
        outcome: s.outcome,
        isa,
        threads,
        attempts: s.attempts,
    })
}

struct Shrinker<'c> {
    cur: Case,
    outcome: Outcome,
    isa: IsaChoice,
    threads: usize,
    cfg: &'c FuzzConfig,
    guarded: bool,
    attempts: usize,
    budget: usize,
}

impl Shrinker<'_> {
    fn out_of_budget(&self) -> bool {
        self.attempts >= self.budget
    }

    /// Keeps `cand` if it is a valid case that still fails the same way.
    fn attempt(&mut self, cand: Option<Case>) -> bool {
        let Some(cand) = cand else { return false };
        if self.out_of_budget() {
            return false;
        }
        self.attempts += 1;
        let o = check_case(&cand, self.isa, self.threads, self.cfg, self.guarded);
        if same_kind(&o, &self.outcome) {
            self.cur = cand;
            self.outcome = o;
            true
        } else {
            false
        }
    }

    fn run(&mut self) {
        loop {
            let before = self.attempts;
            let mut progress = false;
            progress |= self.drop_outputs();
            progress |= self.drop_unused_inputs();
            progress |= self.cut_and_bypass();
            progress |= self.drop_unused_inputs();
            progress |= self.shrink_axes();
            progress |= self.constant_inputs();
            progress |= self.simplify_values();
            progress |= self.simplify_constants();
            if !progress || self.out_of_budget() || self.attempts == before {
                return;
            }
        }
    }

    fn drop_outputs(&mut self) -> bool {
        let mut progress = false;
        let mut k = 0;
        while self.cur.graph.outputs.len() > 1 && k < self.cur.graph.outputs.len() {
            let mut g = self.cur.graph.clone();
            g.outputs.remove(k);
            let cand = retype(&g).map(|graph| Case {
                graph,
                inputs: self.cur.inputs.clone(),
            });
            if self.attempt(cand) {
                progress = true;
            } else {
                k += 1;
            }
        }
        progress
    }

    fn drop_unused_inputs(&mut self) -> bool {
        let mut progress = false;
        let mut i = 0;
        while i < self.cur.graph.inputs.len() {
            let p = self.cur.graph.inputs[i];
            let used = self
                .cur
                .graph
                .nodes
                .iter()
                .any(|n| n.inputs.iter().any(|v| v.node == p));
            if !used {
                let mut case = self.cur.clone();
                case.graph.inputs.remove(i);
                case.inputs.remove(i);
                let cand = retype(&case.graph).map(|graph| Case { graph, ..case });
                if self.attempt(cand) {
                    progress = true;
                    continue;
                }
            }
            i += 1;
        }
        progress
    }

    /// Cuts or bypasses nodes, from the outputs up (cutting near the outputs removes
    /// the most).
    fn cut_and_bypass(&mut self) -> bool {
        let mut progress = false;
        let mut done: HashSet<String> = HashSet::new();
        'restart: loop {
            let Ok(order) = self.cur.graph.topo_order() else {
                return progress;
            };
            for &id in order.iter().rev() {
                let node = self.cur.graph.node(id);
                if matches!(node.op, Op::Parameter | Op::Result | Op::Constant(_))
                    || node.outputs.len() != 1
                    || !done.insert(node.name.clone())
                {
                    continue;
                }
                if self.out_of_budget() {
                    return progress;
                }
                let v = ValueRef::new(id, 0);
                let cut = self.cut(v);
                if self.attempt(cut) {
                    progress = true;
                    continue 'restart;
                }
                let args = self.cur.graph.node(id).inputs.clone();
                for a in args {
                    let mut g = self.cur.graph.clone();
                    replace_uses(&mut g, v, a);
                    let cand = retype(&g).map(|graph| Case {
                        graph,
                        inputs: self.cur.inputs.clone(),
                    });
                    if self.attempt(cand) {
                        progress = true;
                        continue 'restart;
                    }
                }
            }
            return progress;
        }
    }

    /// The case with value `v` replaced by a new graph input holding its value.
    fn cut(&self, v: ValueRef) -> Option<Case> {
        let g = &self.cur.graph;
        let ty = g.value_type(v).clone();
        if ty.dtype == DType::I64 {
            return None;
        }
        let value = value_of(&self.cur, v)?;
        let mut g = g.clone();
        let name = g.value_name(v).to_string();
        let p = g.add_input(name, ty);
        replace_uses(&mut g, v, p);
        let graph = retype(&g)?;
        let mut inputs = self.cur.inputs.clone();
        inputs.push(value);
        Some(Case { graph, inputs })
    }

    /// Shrinks groups of input axes that must keep one size: the axes of one
    /// symbolic dim, or the static axes of one size (so that a transposed input
    /// shrinks with the others), to 1, half and one less, keeping the first or the
    /// last entries.
    fn shrink_axes(&mut self) -> bool {
        let mut progress = false;
        let mut keys: Vec<Dim> = vec![];
        for &p in &self.cur.graph.inputs {
            for d in &self.cur.graph.node(p).outputs[0].ty.shape.0 {
                if *d != Dim::Static(1) && *d != Dim::Static(0) && !keys.contains(d) {
                    keys.push(d.clone());
                }
            }
        }
        for key in keys {
            let mut key = key;
            while let Some(size) = self.group_size(&key) {
                let mut sizes = vec![1, size / 2, size.saturating_sub(1)];
                sizes.dedup();
                let mut shrunk = None;
                'sizes: for k in sizes.into_iter().filter(|&k| k < size) {
                    for from_end in [false, true] {
                        if self.attempt(self.with_group(&key, k, from_end)) {
                            shrunk = Some(k);
                            break 'sizes;
                        }
                    }
                }
                let Some(k) = shrunk else { break };
                progress = true;
                if let Dim::Static(_) = key {
                    key = Dim::Static(k);
                }
                if k <= 1 {
                    break;
                }
            }
        }
        progress
    }

    /// The concrete size of the axes declared as `key` (the largest, if they differ).
    fn group_size(&self, key: &Dim) -> Option<usize> {
        let mut size = None;
        for (t, &p) in self.cur.inputs.iter().zip(&self.cur.graph.inputs) {
            let decl = &self.cur.graph.node(p).outputs[0].ty.shape.0;
            for (a, d) in decl.iter().enumerate() {
                if d == key && t.shape.get(a).is_some_and(|&s| s > 1) {
                    size = size.max(Some(t.shape[a]));
                }
            }
        }
        size
    }

    /// Every input axis declared as `key` cut to its first (or last) `k` entries;
    /// static declarations become `k`.
    fn with_group(&self, key: &Dim, k: usize, from_end: bool) -> Option<Case> {
        let mut case = self.cur.clone();
        let params = case.graph.inputs.clone();
        for (t, &p) in case.inputs.iter_mut().zip(&params) {
            let decl = &mut case.graph.node_mut(p).outputs[0].ty.shape.0;
            for (a, d) in decl.iter_mut().enumerate() {
                if d != key || t.shape.get(a).is_none_or(|&s| s <= k) {
                    continue;
                }
                let start = if from_end { t.shape[a] - k } else { 0 };
                *t = slice_axis(t, a, start, k)?;
                if let Dim::Static(s) = d {
                    *s = k;
                }
            }
        }
        let graph = retype(&case.graph)?;
        Some(Case { graph, ..case })
    }

    /// Turns each input but the last one left into a scalar Constant of its first
    /// element (one input stays, so that the kernel still reads memory).
    fn constant_inputs(&mut self) -> bool {
        let mut progress = false;
        let mut i = 0;
        while i < self.cur.graph.inputs.len() && self.cur.graph.inputs.len() > 1 {
            if self.attempt(self.as_constant(i)) {
                progress = true;
            } else {
                i += 1;
            }
        }
        progress
    }

    fn as_constant(&self, i: usize) -> Option<Case> {
        let mut case = self.cur.clone();
        let t = case.inputs.remove(i);
        let p = case.graph.inputs.remove(i);
        let name = case.graph.node(p).name.clone();
        let scalar = first_element(&t)?;
        let c = case.graph.add_op(name, Op::Constant(scalar), &[]).ok()?;
        replace_uses(&mut case.graph, ValueRef::new(p, 0), c);
        let graph = retype(&case.graph)?;
        Some(Case { graph, ..case })
    }

    /// Simpler f32 input values: first every element of a tensor at once, then one
    /// element at a time (tensors up to 256 elements).
    fn simplify_values(&mut self) -> bool {
        let mut progress = false;
        for i in 0..self.cur.inputs.len() {
            for strategy in [sig3 as fn(f32) -> f32, f32::round] {
                let mut case = self.cur.clone();
                let TensorData::F32(v) = &mut case.inputs[i].data else {
                    continue;
                };
                let mut changed = false;
                for x in v.iter_mut() {
                    let y = strategy(*x);
                    if cost(y) < cost(*x) {
                        *x = y;
                        changed = true;
                    }
                }
                if changed && self.attempt(Some(case)) {
                    progress = true;
                }
            }
            let n = self.cur.inputs[i].numel();
            if n > 256 {
                continue;
            }
            for e in 0..n {
                let TensorData::F32(v) = &self.cur.inputs[i].data else {
                    break;
                };
                let x = v[e];
                for y in [0.0, 1.0, -1.0, 2.0, x.round(), sig3(x)] {
                    if cost(y) >= cost(x) || self.out_of_budget() {
                        continue;
                    }
                    let mut case = self.cur.clone();
                    if let TensorData::F32(v) = &mut case.inputs[i].data {
                        v[e] = y;
                    }
                    if self.attempt(Some(case)) {
                        progress = true;
                        break;
                    }
                }
            }
        }
        progress
    }
}

impl Shrinker<'_> {
    /// Simpler values of scalar f32 Constants, as for inputs.
    fn simplify_constants(&mut self) -> bool {
        let mut progress = false;
        for i in 0..self.cur.graph.nodes.len() {
            let Op::Constant(t) = &self.cur.graph.nodes[i].op else {
                continue;
            };
            let (true, TensorData::F32(v)) = (t.shape.is_empty(), &t.data) else {
                continue;
            };
            let x = v[0];
            for y in [0.0, 1.0, -1.0, 2.0, x.round(), sig3(x)] {
                if cost(y) >= cost(x) || self.out_of_budget() {
                    continue;
                }
                let mut case = self.cur.clone();
                case.graph.nodes[i].op = Op::Constant(Tensor::scalar_f32(y));
                if self.attempt(Some(case)) {
                    progress = true;
                    break;
                }
            }
        }
        progress
    }
}

/// How complex a value looks: the length of its shortest exponent form.
fn cost(x: f32) -> usize {
    format!("{x:e}").len()
}

/// `x` rounded to three significant digits (specials unchanged).
fn sig3(x: f32) -> f32 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    format!("{x:.2e}").parse().unwrap_or(x)
}

/// Every use of `from` (by nodes other than its own) reads `to` instead; dead nodes
/// are then dropped.
fn replace_uses(g: &mut Graph, from: ValueRef, to: ValueRef) {
    for node in &mut g.nodes {
        for i in &mut node.inputs {
            if *i == from {
                *i = to;
            }
        }
    }
    // A failure here leaves the graph as is; `retype` rejects it then.
    let _ = g.remove_dead();
}

/// `g` rebuilt from its inputs' declared types: live nodes in topological order with
/// types inferred anew, so a change of an input's shape or a rerouted use reaches
/// every type. `None` if that fails or the result does not verify.
fn retype(g: &Graph) -> Option<Graph> {
    let mut out = Graph::new(g.name.clone());
    let mut map: Vec<Option<ValueRef>> = vec![None; g.nodes.len()];
    for &p in &g.inputs {
        let o = &g.node(p).outputs[0];
        map[p.index()] = Some(out.add_input(o.name.clone(), o.ty.clone()));
    }
    let mut live = vec![false; g.nodes.len()];
    let mut work: Vec<NodeId> = g.outputs.clone();
    while let Some(n) = work.pop() {
        if !std::mem::replace(&mut live[n.index()], true) {
            work.extend(g.node(n).inputs.iter().map(|v| v.node));
        }
    }
    for id in g.topo_order().ok()? {
        let node = g.node(id);
        if !live[id.index()] || matches!(node.op, Op::Parameter | Op::Result) {
            continue;
        }
        if node.outputs.len() != 1 {
            return None;
        }
        let args: Option<Vec<ValueRef>> = node.inputs.iter().map(|v| map[v.node.index()]).collect();
        let v = out
            .add_op(node.outputs[0].name.clone(), node.op.clone(), &args?)
            .ok()?;
        map[id.index()] = Some(v);
    }
    for &r in &g.outputs {
        let v = map[g.node(r).inputs.first()?.node.index()]?;
        out.add_output(g.node(r).name.clone(), v);
    }
    snipjit_ir::verify(&out).ok()?;
    Some(out)
}

/// The interpreter's value of `v` on the case's inputs.
fn value_of(case: &Case, v: ValueRef) -> Option<Tensor> {
    let mut probe = case.graph.clone();
    probe.outputs.clear();
    probe.add_output("probe", v);
    probe.remove_dead().ok()?;
    let run = std::panic::catch_unwind(|| snipjit_interp::run(&probe, &case.inputs));
    run.ok()?.ok()?.pop()
}

fn select<T: Clone>(v: &[T], keep: &[usize]) -> Vec<T> {
    keep.iter().map(|&i| v[i].clone()).collect()
}

/// `t` with axis `axis` cut to the `k` entries from `start`.
fn slice_axis(t: &Tensor, axis: usize, start: usize, k: usize) -> Option<Tensor> {
    let dim = *t.shape.get(axis)?;
    let inner: usize = t.shape[axis + 1..].iter().product();
    let keep: Vec<usize> = (0..t.numel())
        .filter(|&i| (start..start + k).contains(&((i / inner.max(1)) % dim.max(1))))
        .collect();
    let mut shape = t.shape.clone();
    shape[axis] = k;
    let data = match &t.data {
        TensorData::F32(v) => TensorData::F32(select(v, &keep)),
        TensorData::BF16(v) => TensorData::BF16(select(v, &keep)),
        TensorData::F16(v) => TensorData::F16(select(v, &keep)),
        TensorData::I8(v) => TensorData::I8(select(v, &keep)),
        TensorData::U8(v) => TensorData::U8(select(v, &keep)),
        TensorData::I32(v) => TensorData::I32(select(v, &keep)),
        TensorData::I64(v) => TensorData::I64(select(v, &keep)),
        TensorData::Bool(v) => TensorData::Bool(select(v, &keep)),
    };
    Tensor::new(shape, data).ok()
}

/// A rank-0 tensor of `t`'s first element (`None` if `t` is empty).
fn first_element(t: &Tensor) -> Option<Tensor> {
    if t.numel() == 0 {
        return None;
    }
    let one = [0usize];
    let data = match &t.data {
        TensorData::F32(v) => TensorData::F32(select(v, &one)),
        TensorData::BF16(v) => TensorData::BF16(select(v, &one)),
        TensorData::F16(v) => TensorData::F16(select(v, &one)),
        TensorData::I8(v) => TensorData::I8(select(v, &one)),
        TensorData::U8(v) => TensorData::U8(select(v, &one)),
        TensorData::I32(v) => TensorData::I32(select(v, &one)),
        TensorData::I64(v) => TensorData::I64(select(v, &one)),
        TensorData::Bool(v) => TensorData::Bool(select(v, &one)),
    };
    Tensor::new(vec![], data).ok()
}

/// The `.sg` text of a regression case: `comment` (each line prefixed with `# `), one
/// `# input:` line per graph input with its value, then the model.
pub fn regression_file(case: &Case, comment: &str) -> String {
    let mut s = String::new();
    for line in comment.lines() {
        s.push_str(&format!("# {line}\n").replace("# \n", "#\n"));
    }
    for (&p, t) in case.graph.inputs.iter().zip(&case.inputs) {
        let name = case.graph.node(p).outputs[0].name.clone();
        let mut g = Graph::new("input");
        let line = g
            .add_op(name, Op::Constant(t.clone()), &[])
            .map(|v| {
                g.add_output("o", v);
                snipjit_ir::text::print(&g)
            })
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|l| l.contains("= Constant("))
                    .map(|l| l.trim().to_string())
            })
            .expect("a tensor prints as a Constant");
        s.push_str(&format!("# input: {line}\n"));
    }
    s.push_str(&snipjit_ir::text::print(&case.graph));
    s
}

/// Reads a file written by [`regression_file`]: the model and its inputs.
pub fn parse_regression(text: &str, file: &str) -> Result<Case, RegressionError> {
    let graph = snipjit_ir::text::parse(text, file)?;
    let err = |reason: String| RegressionError::Inputs {
        file: file.to_string(),
        reason,
    };
    let mut inputs = vec![];
    for (n, line) in text.lines().enumerate() {
        let Some(stmt) = line.strip_prefix("# input:") else {
            continue;
        };
        let src = format!("graph input() {{\n  {}\n  return\n}}\n", stmt.trim());
        let g = snipjit_ir::text::parse(&src, &format!("{file}:{}", n + 1))?;
        let node = g
            .nodes
            .iter()
            .find(|n| matches!(n.op, Op::Constant(_)))
            .ok_or_else(|| err(format!("line {}: no Constant", n + 1)))?;
        let Op::Constant(t) = &node.op else {
            unreachable!("matched above")
        };
        let k = inputs.len();
        let Some(&p) = graph.inputs.get(k) else {
            return Err(err(format!(
                "line {}: more input lines than graph inputs",
                n + 1
            )));
        };
        let decl = &graph.node(p).outputs[0];
        if decl.name != node.outputs[0].name {
            return Err(err(format!(
                "line {}: input {k} is '{}', not '{}'",
                n + 1,
                decl.name,
                node.outputs[0].name
            )));
        }
        inputs.push(t.clone());
    }
    if inputs.len() != graph.inputs.len() {
        return Err(err(format!(
            "{} input lines for {} graph inputs",
            inputs.len(),
            graph.inputs.len()
        )));
    }
    Ok(Case { graph, inputs })
}
