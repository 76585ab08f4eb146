//! Random DAGs: up to 20 ops mixing elementwise ops (f32 and bool, constants,
//! Converts, Pow with constant and variable exponents) with ops that are not fused
//! (Softmax, ReduceSum, MatMul, Reshape, Identity), over shapes that broadcast with
//! numpy rules. For each graph and several configs the tokenized graph must verify,
//! compute bitwise the same outputs in the reference interpreter, keep every op
//! exactly once, respect the limits, fuse only what the JIT supports, and account
//! for every elementwise op it left out.

mod common;

use std::collections::HashSet;

use common::{Rng, assert_same_results};
use snipjit_ir::{
    BinaryOp, DType, Dim, Graph, Op, ReduceKind, Shape, SubgraphKind, Tensor, TensorData,
    TensorType, UnaryOp, ValueRef, verify,
};
use snipjit_tokenize::{LeftOutReason, TokenizeConfig, analyze_mha, tokenize_with_report};

/// Input shapes: all broadcast against each other (trailing dims 2, 3, 4 or 1).
fn input_shape(rng: &mut Rng) -> Shape {
    let dims: &[&[i64]] = &[
        &[2, 3, 4],
        &[-1, 3, 4], // N, 2 at run time
        &[1, 3, 4],
        &[3, 4],
        &[4],
        &[3, 1],
        &[2, 1, 1],
        &[1],
        &[],
    ];
    rng.pick(dims)
        .iter()
        .map(|&d| {
            if d < 0 {
                Dim::sym("N")
            } else {
                Dim::Static(d as usize)
            }
        })
        .collect()
}

struct Gen {
    g: Graph,
    rng: Rng,
    f32s: Vec<ValueRef>,
    bools: Vec<ValueRef>,
    next: usize,
}

impl Gen {
    fn name(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}{}", self.next)
    }

    /// A value from `pool`, biased towards recent ones so chains form.
    fn operand(&mut self, bools: bool) -> ValueRef {
        let pool = if bools { &self.bools } else { &self.f32s };
        let n = pool.len();
        let i = if self.rng.chance(50) {
            n - 1 - self.rng.below(n.min(3))
        } else {
            self.rng.below(n)
        };
        pool[i]
    }

    fn add(&mut self, prefix: &str, op: Op, inputs: &[ValueRef]) -> ValueRef {
        let name = self.name(prefix);
        let v = self
            .g
            .add_op(name, op, inputs)
            .unwrap_or_else(|e| panic!("generator built an invalid op: {e}"));
        match self.g.value_type(v).dtype {
            DType::Bool => self.bools.push(v),
            DType::F32 => self.f32s.push(v),
            _ => {}
        }
        v
    }

    fn constant(&mut self, t: Tensor) -> ValueRef {
        let name = self.name("k");
        self.g
            .add_op(name, Op::Constant(t), &[])
            .expect("constants always infer")
    }

    fn scalar(&mut self) -> ValueRef {
        let v = *self.rng.pick(&[0.5f32, 2.0, 3.0, -1.0, 0.0]);
        if self.rng.chance(30) {
            self.constant(Tensor::from_f32(&[1], vec![v]).expect("1 element"))
        } else {
            self.constant(Tensor::scalar_f32(v))
        }
    }

    fn tensor_constant(&mut self) -> ValueRef {
        const SHAPES: [&[usize]; 3] = [&[4], &[3, 1], &[2, 3, 4]];
        let shape = SHAPES[self.rng.below(SHAPES.len())];
        let n = shape.iter().product();
        let data = (0..n).map(|_| self.rng.f32_in(-2.0, 2.0)).collect();
        self.constant(Tensor::from_f32(shape, data).expect("sizes match"))
    }

    fn step(&mut self) {
        let unary: Vec<UnaryOp> = UnaryOp::ALL
            .into_iter()
            .filter(|u| *u != UnaryOp::Not)
            .collect();
        let arith = [
            BinaryOp::Add,
            BinaryOp::Sub,
            BinaryOp::Mul,
            BinaryOp::Div,
            BinaryOp::Max,
            BinaryOp::Min,
            BinaryOp::SquaredDifference,
            BinaryOp::PRelu,
            BinaryOp::Mod,
        ];
        let cmp = [
            BinaryOp::Equal,
            BinaryOp::NotEqual,
            BinaryOp::Less,
            BinaryOp::LessEqual,
            BinaryOp::Greater,
            BinaryOp::GreaterEqual,
        ];
        match self.rng.below(16) {
            0..=2 => {
                let x = self.operand(false);
                let u = *self.rng.pick(&unary);
                self.add("u", Op::Unary(u), &[x]);
            }
            3..=5 => {
                let a = self.operand(false);
                let b = self.operand(false);
                let op = *self.rng.pick(&arith);
                self.add("b", Op::Binary(op), &[a, b]);
            }
            6 => {
                let a = self.operand(false);
                let c = if self.rng.chance(50) {
                    self.scalar()
                } else {
                    self.tensor_constant()
                };
                let op = *self.rng.pick(&arith);
                let ins = if self.rng.chance(50) { [a, c] } else { [c, a] };
                self.add("c", Op::Binary(op), &ins);
            }
            7 => {
                let a = self.operand(false);
                let e = if self.rng.chance(60) {
                    self.scalar()
                } else {
                    self.operand(false)
                };
                self.add("pow", Op::Binary(BinaryOp::Pow), &[a, e]);
            }
            8 => {
                let a = self.operand(false);
                let b = self.operand(false);
                let op = *self.rng.pick(&cmp);
                self.add("cmp", Op::Binary(op), &[a, b]);
            }
            9 if !self.bools.is_empty() => {
                let a = self.operand(true);
                if self.rng.chance(30) {
                    self.add("not", Op::Unary(UnaryOp::Not), &[a]);
                } else {
                    let b = self.operand(true);
                    let op = *self.rng.pick(&[BinaryOp::And, BinaryOp::Or, BinaryOp::Xor]);
                    self.add("logic", Op::Binary(op), &[a, b]);
                }
            }
            10 if !self.bools.is_empty() => {
                let c = self.operand(true);
                let a = self.operand(false);
                let b = if self.rng.chance(30) {
                    self.scalar()
                } else {
                    self.operand(false)
                };
                self.add("sel", Op::Select, &[c, a, b]);
            }
            11 => {
                // A round trip through another dtype: fused when the JIT converts it.
                let (x, from_bool) = if !self.bools.is_empty() && self.rng.chance(25) {
                    (self.operand(true), true)
                } else {
                    (self.operand(false), false)
                };
                let mid = *self.rng.pick(&[
                    DType::I32,
                    DType::BF16,
                    DType::F16,
                    DType::U8,
                    DType::I8,
                    DType::I64,
                ]);
                let to = if from_bool { DType::F32 } else { mid };
                let y = self.add("cv", Op::Convert { to }, &[x]);
                if !from_bool {
                    self.add("cv", Op::Convert { to: DType::F32 }, &[y]);
                }
            }
            _ => self.unfusable(),
        }
    }

    fn unfusable(&mut self) {
        let x = self.operand(false);
        let ty = self.g.value_type(x).clone();
        let rank = ty.shape.rank();
        match self.rng.below(5) {
            0 if rank > 0 => {
                self.add("softmax", Op::Softmax { axis: -1 }, &[x]);
            }
            1 if rank > 0 => {
                let op = Op::Reduce {
                    kind: ReduceKind::Sum,
                    axes: vec![-1],
                    keep_dims: true,
                };
                self.add("reduce", op, &[x]);
            }
            2 if rank > 0 => {
                let k = ty.shape.dims()[rank - 1]
                    .as_static()
                    .expect("last dims are static");
                let n = k * 4;
                let data = (0..n).map(|_| self.rng.f32_in(-1.0, 1.0)).collect();
                let w = self.constant(Tensor::from_f32(&[k, 4], data).expect("sizes match"));
                let op = Op::MatMul {
                    transpose_a: false,
                    transpose_b: false,
                };
                self.add("mm", op, &[x, w]);
            }
            3 if ty.shape.is_static() => {
                let dims: Vec<i64> = ty
                    .shape
                    .dims()
                    .iter()
                    .map(|d| d.as_static().expect("static") as i64)
                    .collect();
                let shape =
                    self.constant(Tensor::new(vec![dims.len()], TensorData::I64(dims)).unwrap());
                self.add("reshape", Op::Reshape { allow_zero: false }, &[x, shape]);
            }
            _ => {
                self.add("id", Op::Identity, &[x]);
            }
        }
    }
}

fn random_graph(seed: u64) -> Graph {
    let mut gn = Gen {
        g: Graph::new(format!("random{seed}")),
        rng: Rng::new(seed),
        f32s: Vec::new(),
        bools: Vec::new(),
        next: 0,
    };
    let inputs = 1 + gn.rng.below(4);
    for i in 0..inputs {
        let shape = input_shape(&mut gn.rng);
        let v =
            gn.g.add_input(format!("x{i}"), TensorType::new(DType::F32, shape));
        gn.f32s.push(v);
    }
    if gn.rng.chance(30) {
        let shape = input_shape(&mut gn.rng);
        let v = gn.g.add_input("m", TensorType::new(DType::Bool, shape));
        gn.bools.push(v);
    }
    let ops = 1 + gn.rng.below(20);
    for _ in 0..ops {
        gn.step();
    }
    // The last value, most values nobody reads (the rest stay dead code) and a few
    // random ones are outputs.
    let mut outs: Vec<ValueRef> = vec![*gn.f32s.last().expect("inputs are f32")];
    let users = gn.g.users();
    let sinks: Vec<ValueRef> = gn
        .f32s
        .iter()
        .chain(&gn.bools)
        .copied()
        .filter(|v| users[v.node.index()].is_empty())
        .collect();
    for v in sinks {
        if gn.rng.chance(85) && !outs.contains(&v) {
            outs.push(v);
        }
    }
    for _ in 0..gn.rng.below(3) {
        let v = if !gn.bools.is_empty() && gn.rng.chance(30) {
            gn.operand(true)
        } else {
            gn.operand(false)
        };
        if !outs.contains(&v) {
            outs.push(v);
        }
    }
    for (i, v) in outs.into_iter().enumerate() {
        gn.g.add_output(format!("out{i}"), v);
    }
    verify(&gn.g).unwrap_or_else(|e| panic!("generated graph {seed} does not verify: {e}"));
    gn.g
}

/// What the JIT can compute, restated from the tokenizer's contract.
fn supported_in_body(body: &Graph, n: &snipjit_ir::Node) -> bool {
    let ins = n.inputs.iter().map(|&v| body.value_type(v).dtype);
    let outs = n.outputs.iter().map(|o| o.ty.dtype);
    let mut dtypes = ins.chain(outs);
    match &n.op {
        Op::Convert { .. } => dtypes.all(|d| {
            matches!(
                d,
                DType::F32 | DType::BF16 | DType::F16 | DType::I32 | DType::U8 | DType::I8
            )
        }),
        Op::Binary(BinaryOp::Pow) => {
            dtypes.all(|d| d == DType::F32)
                && matches!(&body.node(n.inputs[1].node).op, Op::Constant(t) if t.numel() == 1)
        }
        op => op.is_elementwise() && dtypes.all(|d| matches!(d, DType::F32 | DType::Bool)),
    }
}

/// Names of the op nodes of `g` and of every nested body (no Parameters, Results,
/// Constants or Subgraph nodes themselves).
fn all_ops(g: &Graph) -> Vec<String> {
    let mut names = Vec::new();
    for n in &g.nodes {
        match &n.op {
            Op::Parameter | Op::Result | Op::Constant(_) => {}
            Op::Subgraph(sg) => names.extend(all_ops(&sg.body)),
            _ => names.push(n.name.clone()),
        }
    }
    names
}

fn check(g: &Graph, cfg: &TokenizeConfig, what: &str) -> Graph {
    let (out, report) =
        tokenize_with_report(g, cfg).unwrap_or_else(|e| panic!("{what}: tokenize fails: {e}"));
    verify(&out).unwrap_or_else(|e| panic!("{what}: tokenized graph does not verify: {e}"));
    for seed in 0..2 {
        assert_same_results(g, &out, seed);
    }

    // Every op node of the input is kept exactly once, outside or in one body.
    let mut kept = all_ops(&out);
    let mut want = all_ops(g);
    want.sort();
    kept.sort();
    assert_eq!(kept, want, "{what}: ops kept");
    let mut outside_elementwise: HashSet<String> = HashSet::new();
    for n in &out.nodes {
        if n.op.is_elementwise() {
            outside_elementwise.insert(n.name.clone());
        }
        let Op::Subgraph(sg) = &n.op else { continue };
        let body = &sg.body;
        let ops = all_ops(body);
        let pointers = n.inputs.len() + n.outputs.len();
        assert!(ops.len() <= cfg.max_ops, "{what}: {} over max_ops", n.name);
        assert!(ops.len() >= cfg.min_ops, "{what}: {} under min_ops", n.name);
        if !cfg.allow_pointer_spill {
            assert!(
                pointers <= cfg.max_data_pointers,
                "{what}: {} uses {pointers} pointers",
                n.name
            );
        }
        if sg.kind == SubgraphKind::Mha {
            // The matcher's own contract: the body reads back as one attention block.
            if let Err(e) = analyze_mha(body) {
                panic!("{what}: {} does not analyze: {e}", n.name);
            }
            continue;
        }
        for m in &body.nodes {
            match m.op {
                Op::Parameter | Op::Result => {}
                Op::Constant(ref t) => {
                    assert_eq!(t.numel(), 1, "{what}: tensor constant in {}", n.name)
                }
                _ => assert!(
                    supported_in_body(body, m),
                    "{what}: {} holds unsupported {} '{}'",
                    n.name,
                    m.op,
                    m.name
                ),
            }
        }
    }

    // The report names exactly the elementwise nodes left outside (besides the
    // Softmax of each attention block the MHA matcher refused).
    let left: HashSet<String> = report
        .left_out
        .iter()
        .filter(|l| !matches!(l.reason, LeftOutReason::Mha(_)))
        .map(|l| l.node.clone())
        .collect();
    assert_eq!(left, outside_elementwise, "{what}: left-out report");
    let count = |g: &Graph| {
        g.nodes
            .iter()
            .filter(|n| matches!(n.op, Op::Subgraph(_)))
            .count()
    };
    let made: HashSet<&str> = report.subgraphs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        made.len(),
        count(&out) - count(g),
        "{what}: one summary per new subgraph"
    );
    out
}

#[test]
fn random_dags_tokenize_correctly() {
    let configs = [
        TokenizeConfig::default(),
        TokenizeConfig {
            max_data_pointers: 3,
            allow_pointer_spill: false,
            ..TokenizeConfig::default()
        },
        TokenizeConfig {
            max_data_pointers: 5,
            allow_pointer_spill: false,
            max_ops: 3,
            ..TokenizeConfig::default()
        },
        TokenizeConfig {
            min_ops: 2,
            ..TokenizeConfig::default()
        },
    ];
    let mut subgraphs = 0;
    let mut merged = 0;
    for seed in 0..400 {
        let g = random_graph(seed);
        for (i, cfg) in configs.iter().enumerate() {
            let what = format!("seed {seed} config {i}");
            let out = check(&g, cfg, &what);
            if i == 0 {
                // Deterministic, and a second run finds nothing more to fuse.
                assert_eq!(check(&g, cfg, &what), out, "{what}: not deterministic");
                assert_eq!(check(&out, cfg, &what), out, "{what}: not idempotent");
                for n in &out.nodes {
                    if let Op::Subgraph(sg) = &n.op {
                        subgraphs += 1;
                        merged += usize::from(sg.body.outputs.len() > 1);
                    }
                }
            }
        }
    }
    // The generator must exercise what it claims to.
    assert!(subgraphs > 400, "only {subgraphs} subgraphs made");
    assert!(merged > 20, "only {merged} subgraphs with several outputs");
}
