//! Differential fuzzing: random models run by the JIT and by the reference interpreter.
//!
//! [`generate`] builds a random model from a seed and a case index (deterministic, no
//! external RNG): an elementwise DAG of up to [`FuzzConfig::max_ops`] ops with forks
//! and several outputs (unary, binary, comparisons with Select, Clamp, Pow with a
//! scalar exponent, Convert round trips), sprinkled with ops that stay on the
//! interpreter (Softmax, ReduceSum, attention-shaped MatMul/Softmax/MatMul blocks,
//! Transpose); shapes with tails, size-1 broadcasts, dynamic dims and sometimes
//! zero-size dims; inputs with large magnitudes, denormals and, on request, NaN and
//! infinities.
//!
//! [`run_case`] compiles the model for every ISA and thread count of the config, runs
//! it (between guard pages for every [`FuzzConfig::guard_every`]-th case, see
//! [`guard`]), and compares each output with [`snipjit_interp::run`]: ints and bools
//! exactly, f32 with NaN equal to NaN, infinities equal only to themselves, and
//! otherwise within [`FuzzConfig::ulps`] ULP, a relative and an absolute term.
//!
//! Discontinuous ops (comparisons, Floor/Ceil/Round/Sign, Mod, conversions to narrow
//! types) only take values the JIT computes bit-exactly (see `Val::exact`), so a
//! last-bit difference of a polynomial emitter never flips a branch. A later op can
//! still amplify an in-bound error past the tolerance (`x / 0` of a tiny value of the
//! wrong sign, cancellation, overflow): an end-to-end difference is therefore
//! re-checked op by op on the JIT's own values ([`first_bad_op`]), and passes (as
//! [`CaseResult::amplified`]) when every op is within its tolerance; otherwise the
//! first op out of tolerance is the [`CaseResult::culprit`]. [`shrink`] reduces a
//! failing case to a small regression file ([`regression_file`]).
//!
//! ```
//! use snipjit::fuzz::{self, FuzzConfig};
//!
//! let r = fuzz::run_case(7, 0, &FuzzConfig::default());
//! if !r.passed() {
//!     // Save the model, with the seed, case and failure in `#` comments.
//!     let _sg: String = r.failure_file();
//! }
//! ```

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use half::{bf16, f16};
use snipjit_ir::{
    BinaryOp, DType, Dim, GeluApprox, Graph, NodeId, Op, ReduceKind, Shape, Tensor, TensorData,
    TensorType, UnaryOp, ValueRef,
};

use crate::{Compiler, IsaChoice, Options};

pub mod guard;
mod shrink;

pub use shrink::{RegressionError, Shrunk, parse_regression, regression_file, shrink};

/// What [`generate`] and [`run_case`] do.
#[derive(Clone, Debug, PartialEq)]
pub struct FuzzConfig {
    /// Most ops per model (at least 1).
    pub max_ops: usize,
    /// Inputs may hold NaN and +-inf.
    pub nan_inf: bool,
    /// ISAs to compile for; [`available_isas`] by default.
    pub isas: Vec<IsaChoice>,
    /// Executor thread counts to run with (default 1..=4).
    pub threads: Vec<usize>,
    /// Every `big_every`-th case (0: never) has 70k to 3.8M elements, so that the
    /// executor really splits the work over threads (from 64 Ki elements a thread).
    pub big_every: u64,
    /// Tolerance in f32 ULPs of the interpreter's value.
    pub ulps: u32,
    /// Relative tolerance (whichever of ULPs and relative is larger applies).
    pub rel_tol: f64,
    /// Absolute tolerance added to the above.
    pub abs_tol: f64,
    /// Guard mode for every `guard_every`-th case (0: never, 1: every case): the
    /// inputs, the outputs and every tensor the run allocates sit between
    /// `PROT_NONE` guard pages ([`guard`]), so an out-of-bounds kernel access faults.
    /// Needs [`guard::GuardAlloc`] as the global allocator; without it such runs
    /// report a crash saying so.
    pub guard_every: u64,
    /// Re-check an end-to-end mismatch op by op on the JIT's own values
    /// ([`first_bad_op`]) and pass it when every op is within tolerance (default).
    /// Off, every end-to-end difference past the tolerance is a mismatch.
    pub op_by_op: bool,
}

impl Default for FuzzConfig {
    fn default() -> FuzzConfig {
        FuzzConfig {
            max_ops: 30,
            nan_inf: false,
            isas: available_isas(),
            threads: vec![1, 2, 3, 4],
            big_every: 0,
            ulps: 32,
            rel_tol: 1e-5,
            abs_tol: 1e-6,
            guard_every: 0,
            op_by_op: true,
        }
    }
}

impl FuzzConfig {
    /// Case `case_index` runs in guard mode (see [`FuzzConfig::guard_every`]).
    pub fn guarded(&self, case_index: u64) -> bool {
        self.guard_every > 0 && case_index.is_multiple_of(self.guard_every)
    }
}

/// The explicit ISAs this CPU supports (AVX-512, AVX2), best first.
pub fn available_isas() -> Vec<IsaChoice> {
    [IsaChoice::Avx512, IsaChoice::Avx2]
        .into_iter()
        .filter(|i| i.is_supported())
        .collect()
}

/// A generated model and its inputs.
#[derive(Clone, Debug)]
pub struct Case {
    /// The model.
    pub graph: Graph,
    /// One tensor per graph input, in order.
    pub inputs: Vec<Tensor>,
}

/// The first output element where the JIT and the interpreter disagree.
#[derive(Clone, Debug, PartialEq)]
pub struct Mismatch {
    /// Output position.
    pub output: usize,
    /// Output name.
    pub name: String,
    /// Flat element index (`usize::MAX` when the shapes or dtypes differ).
    pub index: usize,
    /// The JIT's value (or shape/dtype), as text.
    pub jit: String,
    /// The interpreter's value (or shape/dtype), as text.
    pub interp: String,
    /// ISA of the failing run.
    pub isa: IsaChoice,
    /// Executor threads of the failing run.
    pub threads: usize,
}

/// How one case ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Every output of every run matched the interpreter.
    Pass,
    /// An output differed.
    Mismatch(Mismatch),
    /// A panic, or an error where the interpreter succeeded (`isa`/`threads` name the
    /// run, `None` when generation or the interpreter itself failed).
    Crash {
        isa: Option<IsaChoice>,
        threads: Option<usize>,
        message: String,
    },
}

/// The result of [`run_case`].
#[derive(Clone, Debug, PartialEq)]
pub struct CaseResult {
    /// The seed of the run.
    pub seed: u64,
    /// The case within the run.
    pub case_index: u64,
    /// Pass, mismatch or crash.
    pub outcome: Outcome,
    /// The model as `.sg` text (empty if generation itself failed).
    pub model_text: String,
    /// The concrete input shapes.
    pub input_shapes: Vec<Vec<usize>>,
    /// For a mismatch: the first op (in topological order) whose JIT value differs
    /// from the interpreter's evaluation of it on the JIT's values of its inputs
    /// ([`first_bad_op`]).
    pub culprit: Option<String>,
    /// For a pass: an end-to-end difference past the tolerance that every op explains
    /// (an in-bound error amplified downstream), described.
    pub amplified: Option<String>,
}

impl CaseResult {
    /// True when the case passed.
    pub fn passed(&self) -> bool {
        self.outcome == Outcome::Pass
    }

    /// The `.sg` file to save for a failure: a comment header (seed, case, input
    /// shapes, what failed), then the model.
    pub fn failure_file(&self) -> String {
        let mut s = format!(
            "# snipjit fuzz: seed {} case {} (regenerate: snipjit::fuzz::generate({}, {}, ..))\n# input shapes: {:?}\n",
            self.seed, self.case_index, self.seed, self.case_index, self.input_shapes
        );
        for line in self.outcome.to_string().lines() {
            s.push_str(&format!("# {line}\n"));
        }
        if let Some(c) = &self.culprit {
            s.push_str(&format!("# first op out of tolerance: {c}\n"));
        }
        s.push_str(&self.model_text);
        s
    }
}

impl CaseResult {
    /// The failing run's ISA and thread count (`None` for a pass or a failure outside
    /// the JIT).
    pub fn failing_run(&self) -> Option<(IsaChoice, usize)> {
        match &self.outcome {
            Outcome::Mismatch(m) => Some((m.isa, m.threads)),
            Outcome::Crash {
                isa: Some(i),
                threads: Some(t),
                ..
            } => Some((*i, *t)),
            _ => None,
        }
    }

    /// Regenerates the failing case and [`shrink`]s it on the failing ISA and thread
    /// count, with at most `budget` attempts. `None` for a pass, a failure outside the
    /// JIT, or a case that no longer fails.
    pub fn shrink(&self, cfg: &FuzzConfig, budget: usize) -> Option<Shrunk> {
        let (isa, threads) = self.failing_run()?;
        let case = generate(self.seed, self.case_index, cfg).ok()?;
        let guarded = cfg.guarded(self.case_index);
        shrink(&case, isa, threads, cfg, guarded, budget)
    }
}

impl Shrunk {
    /// The regression file of a case shrunk from `from` (see [`regression_file`]).
    pub fn file(&self, from: &CaseResult) -> String {
        let nodes = |g: &Graph| {
            g.nodes
                .iter()
                .filter(|n| !matches!(n.op, Op::Parameter | Op::Result | Op::Constant(_)))
                .count()
        };
        let comment = format!(
            "snipjit regression: fuzz seed {} case {}, shrunk to {} ops in {} attempts\n{}",
            from.seed,
            from.case_index,
            nodes(&self.case.graph),
            self.attempts,
            self.outcome
        );
        regression_file(&self.case, &comment)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Pass => f.write_str("pass"),
            Outcome::Mismatch(m) => write!(
                f,
                "mismatch on {} x{} threads: output {} '{}' element {}: jit {} vs interpreter {}",
                m.isa, m.threads, m.output, m.name, m.index, m.jit, m.interp
            ),
            Outcome::Crash {
                isa,
                threads,
                message,
            } => {
                let run = match (isa, threads) {
                    (Some(i), Some(t)) => format!(" on {i} x{t} threads"),
                    _ => String::new(),
                };
                write!(f, "crash{run}: {message}")
            }
        }
    }
}

/// Generates case `case_index` of the run `seed`, compiles it for every ISA and thread
/// count of `cfg`, and compares every output with the interpreter. Panics anywhere in
/// compilation or execution are caught and reported as [`Outcome::Crash`].
pub fn run_case(seed: u64, case_index: u64, cfg: &FuzzConfig) -> CaseResult {
    let mut result = CaseResult {
        seed,
        case_index,
        outcome: Outcome::Pass,
        model_text: String::new(),
        input_shapes: vec![],
        culprit: None,
        amplified: None,
    };
    let crash = |isa, threads, message| Outcome::Crash {
        isa,
        threads,
        message,
    };
    let case = match catch_unwind(|| generate(seed, case_index, cfg)) {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            result.outcome = crash(None, None, format!("generator: {e}"));
            return result;
        }
        Err(p) => {
            result.outcome = crash(
                None,
                None,
                format!("generator panicked: {}", panic_text(&p)),
            );
            return result;
        }
    };
    result.model_text = snipjit_ir::text::print(&case.graph);
    result.input_shapes = case.inputs.iter().map(|t| t.shape.clone()).collect();
    let want = match catch_unwind(|| snipjit_interp::run(&case.graph, &case.inputs)) {
        Ok(Ok(w)) => w,
        Ok(Err(e)) => {
            result.outcome = crash(None, None, format!("interpreter: {e}"));
            return result;
        }
        Err(p) => {
            result.outcome = crash(
                None,
                None,
                format!("interpreter panicked: {}", panic_text(&p)),
            );
            return result;
        }
    };
    let guarded = cfg.guarded(case_index);
    for &isa in &cfg.isas {
        for &threads in &cfg.threads {
            let v = judge(&case, &want, cfg, isa, threads, guarded);
            if v.outcome != Outcome::Pass {
                result.outcome = v.outcome;
                result.culprit = v.culprit;
                return result;
            }
            if result.amplified.is_none() {
                result.amplified = v.amplified;
            }
        }
    }
    result
}

/// Runs `case` on the interpreter and on one ISA and thread count (between guard
/// pages if `guarded`, see [`guard`]) and judges the outputs as [`run_case`] does
/// (an end-to-end difference that every op explains is a pass). An interpreter
/// failure is a crash with no ISA.
pub fn check_case(
    case: &Case,
    isa: IsaChoice,
    threads: usize,
    cfg: &FuzzConfig,
    guarded: bool,
) -> Outcome {
    match catch_unwind(|| snipjit_interp::run(&case.graph, &case.inputs)) {
        Ok(Ok(want)) => judge(case, &want, cfg, isa, threads, guarded).outcome,
        Ok(Err(e)) => Outcome::Crash {
            isa: None,
            threads: None,
            message: format!("interpreter: {e}"),
        },
        Err(p) => Outcome::Crash {
            isa: None,
            threads: None,
            message: format!("interpreter panicked: {}", panic_text(&p)),
        },
    }
}

/// The judgement of one run.
struct Verdict {
    outcome: Outcome,
    culprit: Option<String>,
    amplified: Option<String>,
}

/// Runs `case` on one ISA and thread count and compares with the interpreter's `want`.
/// An end-to-end mismatch is then re-checked op by op on the JIT's own values
/// ([`first_bad_op`]): if every op is within tolerance, the difference is an in-bound
/// error amplified downstream and the run passes (`amplified` says where).
fn judge(
    case: &Case,
    want: &[Tensor],
    cfg: &FuzzConfig,
    isa: IsaChoice,
    threads: usize,
    guarded: bool,
) -> Verdict {
    let got = match run_jit(&case.graph, &case.inputs, isa, threads, guarded) {
        Ok(got) => got,
        Err(outcome) => {
            return Verdict {
                outcome,
                culprit: None,
                amplified: None,
            };
        }
    };
    let Some(m) = compare(&case.graph, &got, want, cfg, isa, threads) else {
        return Verdict {
            outcome: Outcome::Pass,
            culprit: None,
            amplified: None,
        };
    };
    if !cfg.op_by_op {
        return Verdict {
            outcome: Outcome::Mismatch(m),
            culprit: None,
            amplified: None,
        };
    }
    match first_bad_op(case, &got, cfg, isa, threads) {
        Some(culprit) => match culprit
            .contains("= MatMul(")
            .then(|| {
                matmul_out_of_f32_range(&case.graph, &case.inputs)
                    .or_else(|| within_attention_bound(case, &got, want, cfg, isa, threads))
            })
            .flatten()
        {
            // The culprit is a MatMul (inside an attention kernel) and the JIT
            // accumulates MatMul products in f32, as every f32 runtime does; the
            // interpreter in f64. Where the magnitude bound of a dot product is past
            // f32::MAX, f32 accumulation may give inf or NaN (inf - inf) where f64 does
            // not: any result is within the f32 error bound K eps sum|a||b| = inf.
            Some(why) => Verdict {
                outcome: Outcome::Pass,
                culprit: None,
                amplified: Some(format!("{}; {why}", Outcome::Mismatch(m))),
            },
            None => Verdict {
                outcome: Outcome::Mismatch(m),
                culprit: Some(culprit),
                amplified: None,
            },
        },
        None => Verdict {
            outcome: Outcome::Pass,
            culprit: None,
            amplified: Some(Outcome::Mismatch(m).to_string()),
        },
    }
}

/// Runs `graph` on the interpreter for `inputs` with, as outputs, the MatMul `mm` of
/// `|a|` and `|b|` (the magnitude bound `sum_k |a_ik| |b_kj|` of each output element)
/// followed by `|v|` for each of `abs_of`; `None` when the probe cannot be built or run.
fn abs_matmul_probe(
    graph: &Graph,
    inputs: &[Tensor],
    mm: &Op,
    [a, b]: [ValueRef; 2],
    abs_of: &[ValueRef],
) -> Option<Vec<Tensor>> {
    let mut probe = graph.clone();
    let mut abs = |v: ValueRef| {
        let name = format!("abs_probe_{}", probe.nodes.len());
        probe.add_op(name, Op::Unary(UnaryOp::Abs), &[v]).ok()
    };
    let (a, b) = (abs(a)?, abs(b)?);
    let extra: Vec<ValueRef> = abs_of.iter().map(|&v| abs(v)).collect::<Option<_>>()?;
    let bound = probe.add_op("bound_probe", mm.clone(), &[a, b]).ok()?;
    probe.outputs.clear();
    probe.add_output("bound", bound);
    for (i, v) in extra.into_iter().enumerate() {
        probe.add_output(format!("abs_{i}"), v);
    }
    probe.remove_dead().ok()?;
    catch_unwind(AssertUnwindSafe(|| snipjit_interp::run(&probe, inputs)))
        .ok()?
        .ok()
}

/// The error bound of an f32 attention block `Softmax(f(Q K^T)) V` (f: scale, mask),
/// the one the MHA tests state: `max|V| (1e-5 + 2 D eps max_ij sum_d |q_id||k_jd|)`,
/// D the contraction of Q K^T: the scores carry the f32 rounding of their dot products,
/// which the softmax turns into relative errors of the weights. The largest bound over
/// the graph's attention blocks, evaluated on the interpreter's values.
fn attention_error_bound(graph: &Graph, inputs: &[Tensor]) -> Option<f64> {
    let producer = |v: ValueRef| graph.node(v.node);
    let mut worst: Option<f64> = None;
    for node in &graph.nodes {
        let Op::MatMul { .. } = node.op else { continue };
        // P V with P = Softmax(x), x = elementwise ops over a MatMul Q K^T.
        let p = producer(node.inputs[0]);
        let Op::Softmax { .. } = p.op else { continue };
        let mut x = producer(p.inputs[0]);
        while x.op.is_elementwise() && !x.inputs.is_empty() {
            x = producer(x.inputs[0]);
        }
        let Op::MatMul { transpose_a, .. } = x.op else {
            continue;
        };
        // |Q| x |K| (the scores' magnitude bound), |V|, and |Q| for Q's shape.
        let Some(out) = abs_matmul_probe(
            graph,
            inputs,
            &x.op,
            [x.inputs[0], x.inputs[1]],
            &[node.inputs[1], x.inputs[0]],
        ) else {
            continue;
        };
        let max = |t: &Tensor| match &t.data {
            TensorData::F32(v) => v.iter().fold(0.0f64, |m, &x| m.max(f64::from(x))),
            _ => f64::NAN,
        };
        let (qk, vmax) = (max(&out[0]), max(&out[1]));
        // The contraction length: Q's last dim, or the one before when transposed.
        let q_shape = &out[2].shape;
        let Some(&d) = q_shape.iter().rev().nth(usize::from(transpose_a)) else {
            continue;
        };
        let bound = vmax * (1e-5 + 2.0 * d as f64 * f64::from(f32::EPSILON) * qk);
        if bound.is_finite() {
            worst = Some(worst.map_or(bound, |w: f64| w.max(bound)));
        }
    }
    worst
}

/// When the model holds attention blocks: whether every output is within
/// [`attention_error_bound`] (as an absolute tolerance added to `cfg`'s), described.
fn within_attention_bound(
    case: &Case,
    got: &[Tensor],
    want: &[Tensor],
    cfg: &FuzzConfig,
    isa: IsaChoice,
    threads: usize,
) -> Option<String> {
    let bound = attention_error_bound(&case.graph, &case.inputs)?;
    let wide = FuzzConfig {
        abs_tol: cfg.abs_tol + bound,
        ..cfg.clone()
    };
    compare(&case.graph, got, want, &wide, isa, threads).is_none().then(|| {
        format!("within the attention error bound {bound:.3e} (max|V| (1e-5 + 2 D eps max sum|q||k|))")
    })
}

/// The first MatMul of `graph` (on the interpreter's values for `inputs`) with an output
/// element whose magnitude bound `sum_k |a_ik| |b_kj|` is past `f32::MAX`, described;
/// `None` when every MatMul stays in range (or the probe cannot run).
pub fn matmul_out_of_f32_range(graph: &Graph, inputs: &[Tensor]) -> Option<String> {
    for node in &graph.nodes {
        let Op::MatMul { .. } = node.op else {
            continue;
        };
        let Some(out) = abs_matmul_probe(
            graph,
            inputs,
            &node.op,
            [node.inputs[0], node.inputs[1]],
            &[],
        ) else {
            continue;
        };
        let Some(TensorData::F32(v)) = out.first().map(|t| &t.data) else {
            continue;
        };
        if v.iter().any(|x| x.is_infinite()) {
            return Some(format!(
                "MatMul {} has dot products whose magnitude bound is past f32::MAX",
                node.outputs[0].name
            ));
        }
    }
    None
}

/// Compiles and runs `graph` on one ISA and thread count: the outputs, or the crash.
fn run_jit(
    graph: &Graph,
    inputs: &[Tensor],
    isa: IsaChoice,
    threads: usize,
    guarded: bool,
) -> Result<Vec<Tensor>, Outcome> {
    let crash = |message| Outcome::Crash {
        isa: Some(isa),
        threads: Some(threads),
        message,
    };
    if guarded && !guard::installed() {
        return Err(crash(
            "guard mode needs snipjit::fuzz::guard::GuardAlloc as the global allocator".into(),
        ));
    }
    let run = || -> Result<Vec<Tensor>, crate::Error> {
        let model = Compiler::new(Options { threads, isa })?.compile(graph.clone())?;
        if !guarded {
            return model.run(inputs);
        }
        // Inputs cloned in the scope, the outputs and every intermediate tensor of
        // the run end at a guard page.
        guard::scope(|| {
            let ins = inputs.to_vec();
            let mut outs = vec![];
            model.run_into(&ins, &mut outs)?;
            Ok(outs)
        })
    };
    match catch_unwind(AssertUnwindSafe(run)) {
        Ok(Ok(got)) => Ok(got),
        Ok(Err(e)) => Err(crash(e.to_string())),
        Err(p) => Err(crash(format!("panic: {}", panic_text(&p)))),
    }
}

/// Checks every op of `case` on the JIT's own values: each value is computed by the
/// JIT alone (the model cut down to that value as its only output), and each op,
/// evaluated by the interpreter on the JIT's values of its inputs, must match the
/// JIT's value of its output within the per-op tolerance of `cfg`; each model output
/// `got` must match the JIT's value of the same node computed alone. Returns the
/// first op or output that does not, described, or `None` when every op is within
/// tolerance, i.e. an end-to-end difference is an in-bound error amplified downstream.
pub fn first_bad_op(
    case: &Case,
    got: &[Tensor],
    cfg: &FuzzConfig,
    isa: IsaChoice,
    threads: usize,
) -> Option<String> {
    let g = &case.graph;
    let Ok(order) = g.topo_order() else {
        return Some("the model has a cycle".into());
    };
    // Only the ops the outputs depend on: a dead op's error explains nothing.
    let mut live = vec![false; g.nodes.len()];
    let mut work: Vec<NodeId> = g.outputs.clone();
    while let Some(n) = work.pop() {
        if !std::mem::replace(&mut live[n.index()], true) {
            work.extend(g.node(n).inputs.iter().map(|v| v.node));
        }
    }
    let mut jit: Vec<Option<Tensor>> = vec![None; g.nodes.len()];
    for (&p, t) in g.inputs.iter().zip(&case.inputs) {
        jit[p.index()] = Some(t.clone());
    }
    for &id in order.iter().filter(|id| live[id.index()]) {
        let node = g.node(id);
        match &node.op {
            Op::Parameter | Op::Result => continue,
            Op::Constant(t) => {
                jit[id.index()] = Some(t.clone());
                continue;
            }
            _ => {}
        }
        let desc = || {
            let args: Vec<&str> = node.inputs.iter().map(|&v| g.value_name(v)).collect();
            format!(
                "{} = {}({})",
                node.outputs[0].name,
                node.op.name(),
                args.join(", ")
            )
        };
        if node.outputs.len() != 1 {
            return Some(format!("{}: several outputs, not checked", desc()));
        }
        let mut probe = g.clone();
        probe.outputs.clear();
        probe.add_output("probe", ValueRef::new(id, 0));
        if probe.remove_dead().is_err() {
            return Some(format!("{}: cannot cut the model down to it", desc()));
        }
        let value = match run_jit(&probe, &case.inputs, isa, threads, false) {
            Ok(mut v) if v.len() == 1 => v.pop().expect("one output"),
            Ok(_) => return Some(format!("{}: the cut model has no output", desc())),
            Err(e) => return Some(format!("{}: {e}", desc())),
        };
        // The op alone, on the JIT's values of its inputs.
        let mut one = Graph::new("op");
        let mut args = vec![];
        let mut arg_values = vec![];
        for (k, &v) in node.inputs.iter().enumerate() {
            args.push(one.add_input(format!("a{k}"), g.value_type(v).clone()));
            let Some(t) = jit[v.node.index()].clone() else {
                return Some(format!("{}: no JIT value of input {k}", desc()));
            };
            arg_values.push(t);
        }
        let Ok(out) = one.add_op(node.outputs[0].name.clone(), node.op.clone(), &args) else {
            return Some(format!("{}: cannot be rebuilt alone", desc()));
        };
        one.add_output(node.outputs[0].name.clone(), out);
        let want = match catch_unwind(|| snipjit_interp::run(&one, &arg_values)) {
            Ok(Ok(w)) => w,
            _ => {
                return Some(format!(
                    "{}: the interpreter fails on the JIT's inputs",
                    desc()
                ));
            }
        };
        let got_one = std::slice::from_ref(&value);
        let bad = if exact_op(g, node) {
            compare(&one, got_one, &want, &EXACT, isa, threads)
        } else {
            compare(&one, got_one, &want, cfg, isa, threads)
                .or_else(|| zero_sign_differs(&one, &value, &want[0], isa, threads))
        };
        // `mul_add_to_fma` may have fused an Add/Sub with the Mul it reads: then the
        // reference is the fused a * b + c, rounded once (which differs most at
        // overflow: fma(3.4e38, -4, inf) = inf, where -inf + inf = NaN).
        let bad = bad.filter(|_| {
            fused_reference(g, node, &jit, value.shape.clone())
                .is_none_or(|fused| compare(&one, got_one, &[fused], cfg, isa, threads).is_some())
        });
        if let Some(m) = bad {
            return Some(format!(
                "{}: on the JIT's values of its inputs: {}",
                desc(),
                Outcome::Mismatch(m)
            ));
        }
        jit[id.index()] = Some(value);
    }
    for (k, &r) in g.outputs.iter().enumerate() {
        let v = g.node(r).inputs[0];
        let (Some(alone), Some(got_k)) = (jit[v.node.index()].as_ref(), got.get(k)) else {
            return Some(format!("output {k}: no JIT value to compare"));
        };
        let mut one = Graph::new("out");
        let x = one.add_input("x", g.value_type(v).clone());
        one.add_output(g.node(r).name.clone(), x);
        let (got_k, alone) = (std::slice::from_ref(got_k), std::slice::from_ref(alone));
        if let Some(m) = compare(&one, got_k, alone, cfg, isa, threads) {
            return Some(format!(
                "output {k} differs from the JIT's value of {} computed alone: {}",
                g.value_name(v),
                Outcome::Mismatch(m)
            ));
        }
    }
    None
}

/// The comparison of ops the JIT computes bit-exactly: no tolerance, and zeros must
/// have the same sign (see [`f32_close`]).
const EXACT: FuzzConfig = FuzzConfig {
    max_ops: 0,
    nan_inf: false,
    isas: vec![],
    threads: vec![],
    big_every: 0,
    ulps: 0,
    rel_tol: -1.0,
    abs_tol: -1.0,
    guard_every: 0,
    op_by_op: false,
};

/// For an Add or Sub reading a Mul, `a * b + c` (or `- c`, or `c - a * b`) with one
/// rounding (`f32::mul_add`), on the JIT's values of a, b and c broadcast to `shape`;
/// `None` for other nodes or when a value is missing or not f32.
fn fused_reference(
    g: &Graph,
    node: &snipjit_ir::Node,
    jit: &[Option<Tensor>],
    shape: Vec<usize>,
) -> Option<Tensor> {
    let sub = match node.op {
        Op::Binary(BinaryOp::Add) => false,
        Op::Binary(BinaryOp::Sub) => true,
        _ => return None,
    };
    let [x, y] = node.inputs[..] else { return None };
    // Which side is the product (the first Mul, as the fusion pass takes it).
    let is_mul = |v: ValueRef| g.node(v.node).op == Op::Binary(BinaryOp::Mul);
    let (p, c, product_first) = if is_mul(x) {
        (x, y, true)
    } else if is_mul(y) {
        (y, x, false)
    } else {
        return None;
    };
    let [a, b] = g.node(p.node).inputs[..] else {
        return None;
    };
    // Broadcast a, b and c to the output shape on the interpreter (x * 1 keeps every
    // value, -0 and NaN included).
    let mut bg = Graph::new("broadcast");
    let n: usize = shape.iter().product();
    let ones = Tensor::new(shape.clone(), TensorData::F32(vec![1.0; n])).ok()?;
    let one = bg.add_op("ones", Op::Constant(ones), &[]).ok()?;
    let mut args = vec![];
    for (k, v) in [a, b, c].into_iter().enumerate() {
        let t = jit[v.node.index()].clone()?;
        let x = bg.add_input(format!("x{k}"), g.value_type(v).clone());
        let y = bg
            .add_op(format!("y{k}"), Op::Binary(BinaryOp::Mul), &[x, one])
            .ok()?;
        bg.add_output(format!("y{k}"), y);
        args.push(t);
    }
    let outs = catch_unwind(|| snipjit_interp::run(&bg, &args))
        .ok()?
        .ok()?;
    let [TensorData::F32(a), TensorData::F32(b), TensorData::F32(c)] =
        [&outs[0].data, &outs[1].data, &outs[2].data]
    else {
        return None;
    };
    let r = (0..n)
        .map(|i| match (sub, product_first) {
            (false, _) => a[i].mul_add(b[i], c[i]),
            (true, true) => a[i].mul_add(b[i], -c[i]),
            (true, false) => (-a[i]).mul_add(b[i], c[i]),
        })
        .collect();
    Tensor::new(shape, TensorData::F32(r)).ok()
}

/// The first element where the interpreter has an exact zero and the JIT the zero of
/// the other sign: the sign of an exact zero is part of the result (`1 / x` turns it
/// into an infinity of that sign), so even an inexact op must keep it.
fn zero_sign_differs(
    g: &Graph,
    got: &Tensor,
    want: &Tensor,
    isa: IsaChoice,
    threads: usize,
) -> Option<Mismatch> {
    let (TensorData::F32(x), TensorData::F32(y)) = (&got.data, &want.data) else {
        return None;
    };
    let i = x.iter().zip(y).position(|(a, b)| {
        *a == 0.0 && *b == 0.0 && a.is_sign_negative() != b.is_sign_negative()
    })?;
    Some(Mismatch {
        output: 0,
        name: g
            .outputs
            .first()
            .map(|&r| g.node(r).name.clone())
            .unwrap_or_default(),
        index: i,
        jit: format!("{:e}", x[i]),
        interp: format!("{:e}", y[i]),
        isa,
        threads,
    })
}

/// `node` is an op the JIT computes bit-exactly like the interpreter (correctly
/// rounded arithmetic, selections, comparisons, exact conversions), given the same
/// inputs. An Add or Sub reading a Mul is not: `mul_add_to_fma` may fuse them.
fn exact_op(g: &Graph, node: &snipjit_ir::Node) -> bool {
    match &node.op {
        Op::Unary(u) => {
            UNARY.iter().any(|(op, exact)| op == u && *exact)
                || STEP_UNARY.contains(u)
                || matches!(u, UnaryOp::Clamp { .. } | UnaryOp::Not)
        }
        Op::Binary(b @ (BinaryOp::Add | BinaryOp::Sub)) => {
            let _ = b;
            !node
                .inputs
                .iter()
                .any(|v| g.node(v.node).op == Op::Binary(BinaryOp::Mul))
        }
        Op::Binary(b) => {
            BINARY.iter().any(|(op, exact)| op == b && *exact)
                || COMPARE.contains(b)
                || matches!(b, BinaryOp::And | BinaryOp::Or | BinaryOp::Xor)
        }
        Op::Select | Op::Convert { .. } | Op::Transpose { .. } => true,
        _ => false,
    }
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(non-text panic payload)".into())
}

/// The first differing element of any output, or `None`.
fn compare(
    g: &Graph,
    got: &[Tensor],
    want: &[Tensor],
    cfg: &FuzzConfig,
    isa: IsaChoice,
    threads: usize,
) -> Option<Mismatch> {
    let name = |o: usize| {
        g.outputs
            .get(o)
            .map(|&id| g.node(id).outputs[0].name.clone())
            .unwrap_or_default()
    };
    let mismatch = |output, index, jit: String, interp: String| Mismatch {
        output,
        name: name(output),
        index,
        jit,
        interp,
        isa,
        threads,
    };
    if got.len() != want.len() {
        let (j, i) = (
            format!("{} outputs", got.len()),
            format!("{} outputs", want.len()),
        );
        return Some(mismatch(0, usize::MAX, j, i));
    }
    for (o, (a, b)) in got.iter().zip(want).enumerate() {
        if a.shape != b.shape || a.dtype() != b.dtype() {
            let ty = |t: &Tensor| format!("{} {:?}", t.dtype().name(), t.shape);
            return Some(mismatch(o, usize::MAX, ty(a), ty(b)));
        }
        let first_bad = match (&a.data, &b.data) {
            (TensorData::F32(x), TensorData::F32(y)) => x
                .iter()
                .zip(y)
                .position(|(&x, &y)| !f32_close(x, y, cfg))
                .map(|i| (i, format!("{:e}", x[i]), format!("{:e}", y[i]))),
            (TensorData::BF16(x), TensorData::BF16(y)) => first_diff(x, y, |v| v.is_nan()),
            (TensorData::F16(x), TensorData::F16(y)) => first_diff(x, y, |v| v.is_nan()),
            _ => (0..a.numel())
                .find(|&i| a.data.get_i64(i) != b.data.get_i64(i))
                .map(|i| {
                    (
                        i,
                        a.data.get_i64(i).to_string(),
                        b.data.get_i64(i).to_string(),
                    )
                }),
        };
        if let Some((i, x, y)) = first_bad {
            return Some(mismatch(o, i, x, y));
        }
    }
    None
}

fn first_diff<T: PartialEq + fmt::Debug>(
    x: &[T],
    y: &[T],
    nan: fn(&T) -> bool,
) -> Option<(usize, String, String)> {
    x.iter()
        .zip(y)
        .position(|(a, b)| a != b && !(nan(a) && nan(b)))
        .map(|i| (i, format!("{:?}", x[i]), format!("{:?}", y[i])))
}

/// `got` is close enough to the interpreter's `want` (see the module docs).
///
/// A negative `abs_tol` asks for bit equality (NaN still equals any NaN): zeros of
/// different signs then differ.
pub fn f32_close(got: f32, want: f32, cfg: &FuzzConfig) -> bool {
    if got.is_nan() || want.is_nan() {
        return got.is_nan() && want.is_nan();
    }
    if cfg.abs_tol < 0.0 {
        return got.to_bits() == want.to_bits();
    }
    if got == want {
        return true;
    }
    if got.is_infinite() || want.is_infinite() {
        return false;
    }
    let (g, w) = (got as f64, want as f64);
    let ulp = {
        let m = want.abs();
        (f32::from_bits(m.to_bits() + 1) - m) as f64
    };
    let tol = (cfg.ulps as f64 * ulp).max(cfg.rel_tol * w.abs()) + cfg.abs_tol;
    (g - w).abs() <= tol
}

/// A small deterministic RNG (splitmix64).
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// True with probability `1/n`.
    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
    fn f32(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len())]
    }
}

/// A value of the model under construction.
#[derive(Clone, Copy, Debug)]
struct Val {
    v: ValueRef,
    /// Rank (values of lower rank broadcast along the leading dims).
    rank: usize,
    /// The JIT computes it bit-exactly like the interpreter (only correctly rounded
    /// ops and selections on exact values), so discontinuous ops may use it.
    exact: bool,
    /// A product that `mul_add_to_fma` may fuse into a following Add/Sub.
    product: bool,
}

/// Unary f32 ops, and whether the JIT's result is bit-exact.
const UNARY: &[(UnaryOp, bool)] = &[
    (UnaryOp::Abs, true),
    (UnaryOp::Neg, true),
    (UnaryOp::Relu, true),
    (UnaryOp::Exp, false),
    (UnaryOp::Log, false),
    (UnaryOp::Sqrt, true),
    (UnaryOp::Reciprocal, true),
    (UnaryOp::Erf, false),
    (UnaryOp::Tanh, false),
    (UnaryOp::Sigmoid, false),
    (UnaryOp::Gelu(GeluApprox::Erf), false),
    (UnaryOp::Gelu(GeluApprox::Tanh), false),
    (UnaryOp::Swish { beta: 1.0 }, false),
    (UnaryOp::Swish { beta: 0.75 }, false),
    (UnaryOp::HSwish, false),
    (UnaryOp::HSigmoid, false),
    (UnaryOp::Mish, false),
    (UnaryOp::Elu { alpha: 0.5 }, false),
    (UnaryOp::LeakyRelu { alpha: 0.125 }, true),
    (UnaryOp::Softplus, false),
];

/// Discontinuous unary ops: exact inputs only.
const STEP_UNARY: &[UnaryOp] = &[UnaryOp::Floor, UnaryOp::Ceil, UnaryOp::Round, UnaryOp::Sign];

const BINARY: &[(BinaryOp, bool)] = &[
    (BinaryOp::Add, true),
    (BinaryOp::Sub, true),
    (BinaryOp::Mul, true),
    (BinaryOp::Div, true),
    (BinaryOp::Max, true),
    (BinaryOp::Min, true),
    (BinaryOp::SquaredDifference, false),
    (BinaryOp::PRelu, true),
];

const COMPARE: &[BinaryOp] = &[
    BinaryOp::Equal,
    BinaryOp::NotEqual,
    BinaryOp::Less,
    BinaryOp::LessEqual,
    BinaryOp::Greater,
    BinaryOp::GreaterEqual,
];

const CONVERT: &[DType] = &[
    DType::BF16,
    DType::F16,
    DType::I32,
    DType::U8,
    DType::I8,
    DType::Bool,
];

struct Builder<'c> {
    g: Graph,
    rng: Rng,
    cfg: &'c FuzzConfig,
    /// Declared full-rank dims and their concrete sizes.
    dims: Vec<(Dim, usize)>,
    f32s: Vec<Val>,
    bools: Vec<Val>,
    inputs: Vec<Tensor>,
    names: usize,
}

type GenResult<T> = Result<T, String>;

/// Generates case `case_index` of the run `seed`: the same arguments always give the
/// same model and inputs.
pub fn generate(seed: u64, case_index: u64, cfg: &FuzzConfig) -> GenResult<Case> {
    let mut rng = Rng(seed ^ case_index.wrapping_mul(0xD1B5_4A32_D192_ED03));
    rng.next();
    let rank = rng.range(1, 4);
    let big = cfg.big_every > 0 && case_index % cfg.big_every == cfg.big_every - 1;
    let zero_axis = rng.one_in(20).then(|| rng.below(rank));
    let dims = (0..rank)
        .map(|axis| {
            let size = if Some(axis) == zero_axis {
                0
            } else if axis + 1 == rank {
                if big {
                    rng.range(70_000, 140_000)
                } else {
                    rng.range(1, 33)
                }
            } else if big {
                rng.range(2, 3)
            } else {
                rng.range(1, 4)
            };
            let dim = if rng.one_in(2) {
                Dim::sym(&format!("D{axis}"))
            } else {
                Dim::Static(size)
            };
            (dim, size)
        })
        .collect();
    let mut b = Builder {
        g: Graph::new(format!("fuzz_{seed}_{case_index}")),
        rng,
        cfg,
        dims,
        f32s: vec![],
        bools: vec![],
        inputs: vec![],
        names: 0,
    };
    b.build()?;
    Ok(Case {
        graph: b.g,
        inputs: b.inputs,
    })
}

impl Builder<'_> {
    fn name(&mut self, prefix: &str) -> String {
        self.names += 1;
        format!("{prefix}{}", self.names)
    }

    fn op(&mut self, op: Op, args: &[ValueRef]) -> GenResult<ValueRef> {
        let name = self.name("v");
        self.g
            .add_op(name, op, args)
            .map_err(|e| format!("building the model: {e}"))
    }

    fn rank_of(&self, v: ValueRef) -> usize {
        self.g.value_type(v).shape.rank()
    }

    fn build(&mut self) -> GenResult<()> {
        let n_inputs = self.rng.range(1, 4);
        for i in 0..n_inputs {
            self.add_input(i == 0)?;
        }
        let n_ops = self.rng.range(1, self.cfg.max_ops.max(1));
        for _ in 0..n_ops {
            self.add_random_op()?;
        }
        // Outputs: the last f32 value, plus up to two earlier values of any kind.
        let last = *self.f32s.last().expect("an f32 input always exists");
        self.g.add_output("out0", last.v);
        for k in 1..=self.rng.below(3) {
            let pool: Vec<Val> = self.f32s.iter().chain(&self.bools).copied().collect();
            let p = self.rng.pick(&pool);
            let is_f32 = self.g.value_type(p.v).dtype == DType::F32;
            // A narrow-typed view of an exact value, now and then.
            let v = if p.exact && is_f32 && self.rng.one_in(3) {
                let to = self.rng.pick(CONVERT);
                self.op(Op::Convert { to }, &[p.v])?
            } else {
                p.v
            };
            self.g.add_output(format!("out{k}"), v);
        }
        Ok(())
    }

    /// An input: full rank or lower, each dim full or a size-1 broadcast; mostly f32,
    /// sometimes bool or a narrow type converted to f32.
    fn add_input(&mut self, full: bool) -> GenResult<()> {
        let rank = self.dims.len();
        let rank = if full || !self.rng.one_in(5) {
            rank
        } else {
            self.rng.range(1, rank)
        };
        let mut shape = Shape::scalar();
        let mut concrete = vec![];
        for (dim, size) in &self.dims[self.dims.len() - rank..] {
            if !full && self.rng.one_in(4) {
                shape.0.push(Dim::Static(1));
                concrete.push(1);
            } else {
                shape.0.push(dim.clone());
                concrete.push(*size);
            }
        }
        let dtype = match self.rng.below(12) {
            0 if !full => DType::Bool,
            1 => self
                .rng
                .pick(&[DType::BF16, DType::F16, DType::I32, DType::U8, DType::I8]),
            _ => DType::F32,
        };
        let name = format!("x{}", self.inputs.len());
        let v = self.g.add_input(name, TensorType::new(dtype, shape));
        let tensor = self.random_tensor(dtype, &concrete)?;
        self.inputs.push(tensor);
        let val = Val {
            v,
            rank,
            exact: true,
            product: false,
        };
        match dtype {
            DType::Bool => self.bools.push(val),
            DType::F32 => self.f32s.push(val),
            _ => {
                let v = self.op(Op::Convert { to: DType::F32 }, &[v])?;
                self.f32s.push(Val { v, ..val });
            }
        }
        Ok(())
    }

    fn random_f32(&mut self) -> f32 {
        match self.rng.below(40) {
            0 => self.rng.pick(&[1e30, -3e38, 3.4e38, 1e20, -1e25]),
            1 => self.rng.pick(&[1e-40, -2e-42, 1.2e-38, 0.0, -0.0]),
            2 if self.cfg.nan_inf => self.rng.pick(&[f32::NAN, f32::INFINITY, f32::NEG_INFINITY]),
            3 => self.rng.f32(-100.0, 100.0),
            4 => self.rng.pick(&[0.5, -0.5, 1.5, 2.5, -2.5, 1.0, 0.0]),
            _ => self.rng.f32(-4.0, 4.0),
        }
    }

    fn random_tensor(&mut self, dtype: DType, dims: &[usize]) -> GenResult<Tensor> {
        let n: usize = dims.iter().product();
        let data = match dtype {
            DType::F32 => TensorData::F32((0..n).map(|_| self.random_f32()).collect()),
            DType::BF16 => {
                TensorData::BF16((0..n).map(|_| bf16::from_f32(self.random_f32())).collect())
            }
            DType::F16 => TensorData::F16(
                (0..n)
                    .map(|_| {
                        let x = self.random_f32();
                        let x = if self.cfg.nan_inf {
                            x
                        } else {
                            x.clamp(-6e4, 6e4)
                        };
                        f16::from_f32(x)
                    })
                    .collect(),
            ),
            DType::I32 => TensorData::I32(
                (0..n)
                    .map(|_| match self.rng.below(10) {
                        0 => self.rng.pick(&[i32::MIN, i32::MAX, 1 << 24, (1 << 24) + 1]),
                        _ => self.rng.range(0, 2000) as i32 - 1000,
                    })
                    .collect(),
            ),
            DType::U8 => TensorData::U8((0..n).map(|_| self.rng.next() as u8).collect()),
            DType::I8 => TensorData::I8((0..n).map(|_| self.rng.next() as i8).collect()),
            DType::Bool => TensorData::Bool((0..n).map(|_| self.rng.one_in(2)).collect()),
            DType::I64 => return Err("i64 inputs are not generated".into()),
        };
        Tensor::new(dims.to_vec(), data).map_err(|e| e.to_string())
    }

    fn pick_f32(&mut self, exact: bool) -> Option<Val> {
        let pool: Vec<Val> = self
            .f32s
            .iter()
            .filter(|v| v.exact || !exact)
            .copied()
            .collect();
        (!pool.is_empty()).then(|| self.rng.pick(&pool))
    }

    fn push(&mut self, v: ValueRef, exact: bool, product: bool) {
        let rank = self.rank_of(v);
        let val = Val {
            v,
            rank,
            exact,
            product,
        };
        if self.g.value_type(v).dtype == DType::Bool {
            self.bools.push(val);
        } else {
            self.f32s.push(val);
        }
    }

    fn scalar(&mut self, x: f32) -> GenResult<ValueRef> {
        self.op(Op::Constant(Tensor::scalar_f32(x)), &[])
    }

    fn add_random_op(&mut self) -> GenResult<()> {
        let any = self.pick_f32(false).expect("an f32 input always exists");
        match self.rng.below(20) {
            0..=4 => {
                let (op, exact) = self.rng.pick(UNARY);
                let v = self.op(Op::Unary(op), &[any.v])?;
                self.push(v, exact && any.exact, false);
            }
            5..=9 => {
                let (op, exact) = self.rng.pick(BINARY);
                let other = if self.rng.one_in(4) {
                    let c = self.random_f32();
                    let c = if c.is_nan() { 2.0 } else { c };
                    Val {
                        v: self.scalar(c)?,
                        rank: 0,
                        exact: true,
                        product: false,
                    }
                } else {
                    self.pick_f32(false).expect("non-empty")
                };
                let (a, b) = if self.rng.one_in(2) {
                    (any, other)
                } else {
                    (other, any)
                };
                let v = self.op(Op::Binary(op), &[a.v, b.v])?;
                let fma = matches!(op, BinaryOp::Add | BinaryOp::Sub) && (a.product || b.product);
                self.push(v, exact && a.exact && b.exact && !fma, op == BinaryOp::Mul);
            }
            10 => {
                let lo = self.rng.f32(-3.0, 1.0);
                let hi = lo + self.rng.f32(0.0, 3.0);
                let v = self.op(Op::Unary(UnaryOp::Clamp { min: lo, max: hi }), &[any.v])?;
                self.push(v, any.exact, false);
            }
            11 => {
                let e = self
                    .rng
                    .pick(&[0.0, 1.0, 2.0, 3.0, -1.0, 0.5, -0.5, 1.5, -2.0, 4.0]);
                let e = self.scalar(e)?;
                let v = self.op(Op::Binary(BinaryOp::Pow), &[any.v, e])?;
                self.push(v, false, false);
            }
            12 | 13 => self.add_compare_select()?,
            14 => {
                if let Some(x) = self.pick_f32(true) {
                    let to = self.rng.pick(CONVERT);
                    let c = self.op(Op::Convert { to }, &[x.v])?;
                    let back = self.op(Op::Convert { to: DType::F32 }, &[c])?;
                    self.push(back, true, false);
                }
            }
            15 => {
                if let Some(x) = self.pick_f32(true) {
                    let (op, exact) = if self.rng.one_in(3) {
                        let y = self.pick_f32(true).expect("x is exact");
                        (self.op(Op::Binary(BinaryOp::Mod), &[x.v, y.v])?, false)
                    } else {
                        let op = self.rng.pick(STEP_UNARY);
                        (self.op(Op::Unary(op), &[x.v])?, true)
                    };
                    self.push(op, exact, false);
                }
            }
            _ => self.add_interpreter_op(any)?,
        }
        Ok(())
    }

    /// A comparison of exact values (or a logical op of bools), and a Select.
    fn add_compare_select(&mut self) -> GenResult<()> {
        let cond = match (
            self.pick_f32(true),
            self.rng.one_in(3) && !self.bools.is_empty(),
        ) {
            (_, true) => {
                let a = self.rng.pick(&self.bools);
                let b = self.rng.pick(&self.bools);
                let op = self.rng.pick(&[BinaryOp::And, BinaryOp::Or, BinaryOp::Xor]);
                if self.rng.one_in(3) {
                    self.op(Op::Unary(UnaryOp::Not), &[a.v])?
                } else {
                    self.op(Op::Binary(op), &[a.v, b.v])?
                }
            }
            (Some(a), false) => {
                let b = self.pick_f32(true).expect("a is exact");
                let op = self.rng.pick(COMPARE);
                self.op(Op::Binary(op), &[a.v, b.v])?
            }
            (None, false) => return Ok(()),
        };
        self.push(cond, true, false);
        if self.rng.one_in(4) {
            return Ok(());
        }
        let a = self.pick_f32(false).expect("non-empty");
        let b = self.pick_f32(false).expect("non-empty");
        let v = self.op(Op::Select, &[cond, a.v, b.v])?;
        self.push(v, a.exact && b.exact, false);
        Ok(())
    }

    /// An attention-shaped block, `softmax(Q K^T [* or / scale] [+ mask]) V`: Q, K and V are exact values of `x`'s type (often
    /// `x` itself), K is transposed by the MatMul flag or by a Transpose node, the
    /// scale sits on the scores, and the mask (another `S S^T`) is added before the
    /// Softmax. The MHA tokenizer's pattern; today it runs on the interpreter.
    fn add_attention(&mut self, x: Val) -> GenResult<()> {
        let mm = |a, b| Op::MatMul {
            transpose_a: a,
            transpose_b: b,
        };
        let ty = self.g.value_type(x.v).clone();
        let same: Vec<Val> = self
            .f32s
            .iter()
            .filter(|v| v.exact && *self.g.value_type(v.v) == ty)
            .copied()
            .collect();
        let pick = |b: &mut Self| {
            if b.rng.one_in(2) {
                x
            } else {
                b.rng.pick(&same)
            }
        };
        let (q, k, v) = (pick(self), pick(self), pick(self));
        let rank = x.rank;
        let mut perm: Vec<usize> = (0..rank).collect();
        perm.swap(rank - 1, rank - 2);
        let mut s = if self.rng.one_in(3) {
            let kt = self.op(Op::Transpose { perm: perm.clone() }, &[k.v])?;
            self.op(mm(false, false), &[q.v, kt])?
        } else {
            self.op(mm(false, true), &[q.v, k.v])?
        };
        match self.rng.below(3) {
            0 => {
                let c = self.scalar(0.125)?;
                s = self.op(Op::Binary(BinaryOp::Mul), &[s, c])?;
            }
            1 => {
                let c = self.scalar(8.0)?;
                s = self.op(Op::Binary(BinaryOp::Div), &[s, c])?;
            }
            _ => {}
        }
        if self.rng.one_in(3) {
            let m = pick(self);
            let mask = self.op(mm(false, true), &[m.v, m.v])?;
            s = self.op(Op::Binary(BinaryOp::Add), &[s, mask])?;
        }
        let s = self.op(Op::Softmax { axis: -1 }, &[s])?;
        let out = self.op(mm(false, false), &[s, v.v])?;
        self.push(out, false, false);
        Ok(())
    }

    /// Ops the elementwise tokenizer leaves to the interpreter: Softmax and ReduceSum
    /// over the last axis, attention-like `(x x^T) x`, and a transposed detour.
    /// Their inputs are exact, so the interpreter sees the same values in both runs.
    fn add_interpreter_op(&mut self, any: Val) -> GenResult<()> {
        let Some(x) = self.pick_f32(true) else {
            return Ok(());
        };
        let rank = x.rank;
        match self.rng.below(4) {
            0 => {
                let v = self.op(Op::Softmax { axis: -1 }, &[x.v])?;
                self.push(v, false, false);
            }
            1 => {
                let op = Op::Reduce {
                    kind: ReduceKind::Sum,
                    axes: vec![-1],
                    keep_dims: true,
                };
                let v = self.op(op, &[x.v])?;
                self.push(v, false, false);
            }
            2 if rank >= 2 => self.add_attention(x)?,
            _ if rank >= 2 => {
                let mut perm: Vec<usize> = (0..rank).collect();
                perm.swap(rank - 1, rank - 2);
                let t = self.op(Op::Transpose { perm: perm.clone() }, &[x.v])?;
                let (op, exact) = self.rng.pick(UNARY);
                let u = self.op(Op::Unary(op), &[t])?;
                let v = self.op(Op::Transpose { perm }, &[u])?;
                self.push(v, exact, false);
            }
            _ => {
                let v = self.op(Op::Unary(UnaryOp::Abs), &[any.v])?;
                self.push(v, any.exact, false);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic() {
        let cfg = FuzzConfig::default();
        for case in 0..20 {
            let a = generate(7, case, &cfg).unwrap();
            let b = generate(7, case, &cfg).unwrap();
            assert_eq!(
                snipjit_ir::text::print(&a.graph),
                snipjit_ir::text::print(&b.graph)
            );
            assert_eq!(a.inputs, b.inputs);
        }
        let a = snipjit_ir::text::print(&generate(7, 0, &cfg).unwrap().graph);
        let b = snipjit_ir::text::print(&generate(8, 0, &cfg).unwrap().graph);
        assert_ne!(a, b, "different seeds give different models");
    }

    #[test]
    fn tolerance() {
        let cfg = FuzzConfig::default();
        assert!(f32_close(f32::NAN, -f32::NAN, &cfg));
        assert!(!f32_close(f32::NAN, 1.0, &cfg));
        assert!(f32_close(f32::INFINITY, f32::INFINITY, &cfg));
        assert!(!f32_close(f32::INFINITY, f32::MAX, &cfg));
        assert!(!f32_close(f32::NEG_INFINITY, f32::INFINITY, &cfg));
        let one_ulp_up = f32::from_bits(1e10f32.to_bits() + 1);
        assert!(f32_close(one_ulp_up, 1e10, &cfg));
        assert!(!f32_close(1.001e10, 1e10, &cfg));
        assert!(f32_close(5e-7, 0.0, &cfg), "absolute term");
        assert!(!f32_close(1e-4, 0.0, &cfg));
    }
}
