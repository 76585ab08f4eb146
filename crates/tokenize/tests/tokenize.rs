//! Unit tests of the tokenizer on graphs built with the builder API.
//!
//! Each test states the regions it expects from the rules (fuse elementwise f32/bool
//! ops, never across a non-fusable op that would close a cycle, budget...), and checks
//! the tokenized graph's structure: subgraph count, body ops, inputs and outputs.

mod common;

use snipjit_ir::{
    BinaryOp, DType, Graph, Node, Op, ReduceKind, Shape, Tensor, TensorData, TensorType, UnaryOp,
    ValueRef, verify,
};
use snipjit_tokenize::{
    LeftOutReason, TokenizeConfig, TokenizeError, TokenizeReport, tokenize, tokenize_with_report,
};

fn f32t(dims: &[usize]) -> TensorType {
    TensorType::new(DType::F32, Shape::fixed(dims))
}

fn bin(g: &mut Graph, name: &str, op: BinaryOp, a: ValueRef, b: ValueRef) -> ValueRef {
    g.add_op(name, Op::Binary(op), &[a, b]).unwrap()
}

fn un(g: &mut Graph, name: &str, op: UnaryOp, a: ValueRef) -> ValueRef {
    g.add_op(name, Op::Unary(op), &[a]).unwrap()
}

fn constant(g: &mut Graph, name: &str, t: Tensor) -> ValueRef {
    g.add_op(name, Op::Constant(t), &[]).unwrap()
}

fn run(g: &Graph) -> (Graph, TokenizeReport) {
    run_with(g, &TokenizeConfig::default())
}

fn run_with(g: &Graph, cfg: &TokenizeConfig) -> (Graph, TokenizeReport) {
    verify(g).expect("test graph verifies");
    let (out, report) = tokenize_with_report(g, cfg).unwrap();
    verify(&out).expect("tokenized graph verifies");
    for seed in 0..3 {
        assert!(common::assert_same_results(g, &out, seed) > 0);
    }
    (out, report)
}

fn subgraphs(g: &Graph) -> Vec<&Node> {
    g.nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Subgraph(_)))
        .collect()
}

fn body(n: &Node) -> &Graph {
    match &n.op {
        Op::Subgraph(sg) => &sg.body,
        _ => panic!("{} is not a subgraph", n.name),
    }
}

/// Names of the body's nodes that are neither Parameters, Results nor Constants.
fn body_ops(n: &Node) -> Vec<&str> {
    body(n)
        .nodes
        .iter()
        .filter(|m| !matches!(m.op, Op::Parameter | Op::Result | Op::Constant(_)))
        .map(|m| m.name.as_str())
        .collect()
}

/// The outer value names a node reads.
fn input_names<'g>(g: &'g Graph, n: &Node) -> Vec<&'g str> {
    n.inputs.iter().map(|&v| g.value_name(v)).collect()
}

fn output_names(n: &Node) -> Vec<&str> {
    n.outputs.iter().map(|o| o.name.as_str()).collect()
}

fn body_param_names(n: &Node) -> Vec<&str> {
    let b = body(n);
    b.inputs
        .iter()
        .map(|&p| b.node(p).outputs[0].name.as_str())
        .collect()
}

/// Names of the nodes in the outer graph, in order.
fn node_names(g: &Graph) -> Vec<&str> {
    g.nodes.iter().map(|n| n.name.as_str()).collect()
}

#[test]
fn chain_becomes_one_subgraph() {
    let mut g = Graph::new("chain");
    let x = g.add_input("x", f32t(&[2, 3]));
    let y = g.add_input("y", f32t(&[2, 3]));
    let a = bin(&mut g, "a", BinaryOp::Add, x, y);
    let b = un(&mut g, "b", UnaryOp::Relu, a);
    let c = un(&mut g, "c", UnaryOp::Exp, b);
    g.add_output("out", c);

    let (out, report) = run(&g);
    assert_eq!(node_names(&out), ["x", "y", "subgraph0", "out"]);
    let sg = subgraphs(&out);
    assert_eq!(sg.len(), 1);
    assert_eq!(body_ops(sg[0]), ["a", "b", "c"]);
    assert_eq!(input_names(&out, sg[0]), ["x", "y"]);
    assert_eq!(body_param_names(sg[0]), ["x", "y"]);
    assert_eq!(output_names(sg[0]), ["c"]);
    assert_eq!(sg[0].outputs[0].ty, f32t(&[2, 3]));
    assert_eq!(report.subgraphs.len(), 1);
    let s = &report.subgraphs[0];
    assert_eq!((s.ops, s.inputs, s.outputs, s.constants), (3, 2, 1, 0));
    assert!(report.left_out.is_empty());
    // The graph output still returns the same value name.
    let r = out.node(out.outputs[0]);
    assert_eq!(out.value_name(r.inputs[0]), "c");
}

#[test]
fn fork_used_inside_and_outside() {
    // a forks to b, c (fused) and to a Softmax outside: a is an output of the region.
    let mut g = Graph::new("fork");
    let x = g.add_input("x", f32t(&[4, 8]));
    let a = un(&mut g, "a", UnaryOp::Relu, x);
    let b = un(&mut g, "b", UnaryOp::Exp, a);
    let c = un(&mut g, "c", UnaryOp::Neg, a);
    let d = bin(&mut g, "d", BinaryOp::Add, b, c);
    let s = g.add_op("s", Op::Softmax { axis: -1 }, &[a]).unwrap();
    g.add_output("out_d", d);
    g.add_output("out_s", s);

    let (out, _) = run(&g);
    let sg = subgraphs(&out);
    assert_eq!(sg.len(), 1);
    assert_eq!(body_ops(sg[0]), ["a", "b", "c", "d"]);
    assert_eq!(output_names(sg[0]), ["a", "d"]);
    let softmax = out.nodes.iter().find(|n| n.name == "s").unwrap();
    assert_eq!(input_names(&out, softmax), ["a"]);
}

#[test]
fn diamond_and_two_outputs() {
    let mut g = Graph::new("diamond");
    let x = g.add_input("x", f32t(&[3]));
    let y = g.add_input("y", f32t(&[3]));
    let a = bin(&mut g, "a", BinaryOp::Add, x, y);
    let b = bin(&mut g, "b", BinaryOp::Mul, a, x);
    let c = bin(&mut g, "c", BinaryOp::Sub, a, y);
    let d = bin(&mut g, "d", BinaryOp::Max, b, c);
    g.add_output("o1", d);
    g.add_output("o2", c);

    let (out, _) = run(&g);
    let sg = subgraphs(&out);
    assert_eq!(sg.len(), 1);
    assert_eq!(body_ops(sg[0]), ["a", "b", "c", "d"]);
    assert_eq!(output_names(sg[0]), ["c", "d"]);
    assert_eq!(body(sg[0]).outputs.len(), 2);
    let outs: Vec<&str> = out
        .outputs
        .iter()
        .map(|&r| out.value_name(out.node(r).inputs[0]))
        .collect();
    assert_eq!(outs, ["d", "c"]);
}

#[test]
fn unfusable_ops_split_regions() {
    for (what, make) in [
        ("matmul", 0usize),
        ("softmax", 1),
        ("reshape", 2),
        ("reduce", 3),
    ] {
        let mut g = Graph::new(what);
        let x = g.add_input("x", f32t(&[4, 4]));
        let a = un(&mut g, "a", UnaryOp::Relu, x);
        let b = un(&mut g, "b", UnaryOp::Sigmoid, a);
        let m = match make {
            0 => {
                let w = g.add_input("w", f32t(&[4, 4]));
                g.add_op(
                    "m",
                    Op::MatMul {
                        transpose_a: false,
                        transpose_b: true,
                    },
                    &[b, w],
                )
                .unwrap()
            }
            1 => g.add_op("m", Op::Softmax { axis: 1 }, &[b]).unwrap(),
            2 => {
                let shape = constant(
                    &mut g,
                    "shape",
                    Tensor::new(vec![2], TensorData::I64(vec![2, 8])).unwrap(),
                );
                g.add_op("m", Op::Reshape { allow_zero: false }, &[b, shape])
                    .unwrap()
            }
            _ => g
                .add_op(
                    "m",
                    Op::Reduce {
                        kind: ReduceKind::Sum,
                        axes: vec![-1],
                        keep_dims: true,
                    },
                    &[b],
                )
                .unwrap(),
        };
        let c = un(&mut g, "c", UnaryOp::Tanh, m);
        let d = un(&mut g, "d", UnaryOp::Abs, c);
        g.add_output("out", d);

        let (out, report) = run(&g);
        let sg = subgraphs(&out);
        assert_eq!(sg.len(), 2, "{what}");
        assert_eq!(body_ops(sg[0]), ["a", "b"], "{what}");
        assert_eq!(body_ops(sg[1]), ["c", "d"], "{what}");
        assert_eq!(input_names(&out, sg[1]), ["m"], "{what}");
        let m = out.nodes.iter().find(|n| n.name == "m").unwrap();
        assert_eq!(input_names(&out, m)[0], "b", "{what}");
        assert_eq!(
            report
                .subgraphs
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>(),
            ["subgraph0", "subgraph1"]
        );
    }
}

#[test]
fn node_reading_region_through_outside_op_starts_new_region() {
    // x -> A(sg) -> B(Softmax, outside) -> C, and C also reads A: C may not join A's
    // region, or the region would both feed B and depend on it.
    let mut g = Graph::new("cycle");
    let x = g.add_input("x", f32t(&[2, 5]));
    let a = un(&mut g, "A", UnaryOp::Relu, x);
    let b = g.add_op("B", Op::Softmax { axis: -1 }, &[a]).unwrap();
    let c = bin(&mut g, "C", BinaryOp::Add, a, b);
    let d = un(&mut g, "D", UnaryOp::Exp, c);
    g.add_output("out", d);

    let (out, _) = run(&g);
    let sg = subgraphs(&out);
    assert_eq!(sg.len(), 2);
    assert_eq!(body_ops(sg[0]), ["A"]);
    assert_eq!(body_ops(sg[1]), ["C", "D"]);
    assert_eq!(input_names(&out, sg[1]), ["A", "B"]);
    assert_eq!(
        node_names(&out),
        ["x", "subgraph0", "B", "subgraph1", "out"]
    );
}

#[test]
fn cycle_through_another_region_is_refused() {
    // R1 = {p}; q = Softmax(p) outside; R2 = {a = Exp(q), b = Relu(y), c = a + b}.
    // n = p + b reads R1 and R2. Merging all closes p -> q -> a. Joining R1 alone
    // looks acyclic node by node (b does not depend on p), but once R2 is one
    // kernel, R1 -> q -> R2 -> n closes a cycle. Joining R2 is the only legal move.
    let mut g = Graph::new("cycle2");
    let x = g.add_input("x", f32t(&[2, 5]));
    let y = g.add_input("y", f32t(&[2, 5]));
    let p = un(&mut g, "p", UnaryOp::Relu, x);
    let q = g.add_op("q", Op::Softmax { axis: -1 }, &[p]).unwrap();
    let a = un(&mut g, "a", UnaryOp::Exp, q);
    let b = un(&mut g, "b", UnaryOp::Relu, y);
    let c = bin(&mut g, "c", BinaryOp::Add, a, b);
    let n = bin(&mut g, "n", BinaryOp::Add, p, b);
    g.add_output("o1", c);
    g.add_output("o2", n);

    let (out, _) = run(&g);
    let sg = subgraphs(&out);
    assert_eq!(sg.len(), 2);
    assert_eq!(body_ops(sg[0]), ["p"]);
    assert_eq!(body_ops(sg[1]), ["a", "b", "c", "n"]);
    assert_eq!(input_names(&out, sg[1]), ["q", "y", "p"]);
    assert_eq!(output_names(sg[1]), ["c", "n"]);
}

#[test]
fn scalar_constants_are_copied_into_the_body() {
    let mut g = Graph::new("consts");
    let x = g.add_input("x", f32t(&[2, 3]));
    let two = constant(&mut g, "two", Tensor::scalar_f32(2.0));
    let half = constant(
        &mut g,
        "half",
        Tensor::from_f32(&[1, 1], vec![0.5]).unwrap(),
    );
    let a = bin(&mut g, "a", BinaryOp::Mul, x, two);
    let b = bin(&mut g, "b", BinaryOp::Add, a, half);
    let c = bin(&mut g, "c", BinaryOp::Pow, b, two);
    g.add_output("out", c);

    let (out, report) = run(&g);
    // The constants are gone from the outer graph: every reader was fused.
    assert_eq!(node_names(&out), ["x", "subgraph0", "out"]);
    let sg = subgraphs(&out);
    assert_eq!(input_names(&out, sg[0]), ["x"]);
    let consts: Vec<(&str, &Tensor)> = body(sg[0])
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::Constant(t) => Some((n.name.as_str(), t)),
            _ => None,
        })
        .collect();
    assert_eq!(consts.len(), 2);
    assert_eq!(consts[0], ("two", &Tensor::scalar_f32(2.0)));
    assert_eq!(consts[1].0, "half");
    assert_eq!(consts[1].1.shape, vec![1, 1]);
    assert_eq!(report.subgraphs[0].constants, 2);
    assert_eq!(body_ops(sg[0]), ["a", "b", "c"]);
}

#[test]
fn scalar_constant_read_outside_too_stays_outside() {
    let mut g = Graph::new("shared_const");
    let x = g.add_input("x", f32t(&[3]));
    let k = constant(&mut g, "k", Tensor::scalar_f32(3.0));
    let a = bin(&mut g, "a", BinaryOp::Sub, x, k);
    g.add_output("out", a);
    g.add_output("k_out", k);

    let (out, _) = run(&g);
    assert_eq!(node_names(&out), ["x", "k", "subgraph0", "out", "k_out"]);
    let sg = subgraphs(&out);
    assert_eq!(input_names(&out, sg[0]), ["x"]);
    assert!(body(sg[0]).nodes.iter().any(|n| n.name == "k"));
}

#[test]
fn tensor_constants_enter_as_inputs() {
    let mut g = Graph::new("tensor_const");
    let x = g.add_input("x", f32t(&[2, 3]));
    let w = constant(
        &mut g,
        "w",
        Tensor::from_f32(&[3], vec![1.0, 2.0, 3.0]).unwrap(),
    );
    let a = bin(&mut g, "a", BinaryOp::Mul, x, w);
    let b = un(&mut g, "b", UnaryOp::Sqrt, a);
    g.add_output("out", b);

    let (out, report) = run(&g);
    assert_eq!(node_names(&out), ["x", "w", "subgraph0", "out"]);
    let sg = subgraphs(&out);
    assert_eq!(input_names(&out, sg[0]), ["x", "w"]);
    assert_eq!(body_param_names(sg[0]), ["x", "w"]);
    assert!(
        !body(sg[0])
            .nodes
            .iter()
            .any(|n| matches!(n.op, Op::Constant(_)))
    );
    assert_eq!(report.subgraphs[0].constants, 0);
}

/// `x0 + x1 + ... + x{n-1}` as a left-leaning chain.
fn sum_graph(n: usize) -> Graph {
    let mut g = Graph::new("sum");
    let xs: Vec<ValueRef> = (0..n)
        .map(|i| g.add_input(format!("x{i}"), f32t(&[2, 7])))
        .collect();
    let mut acc = xs[0];
    for (i, &x) in xs.iter().enumerate().skip(1) {
        acc = bin(&mut g, &format!("s{i}"), BinaryOp::Add, acc, x);
    }
    g.add_output("out", acc);
    g
}

#[test]
fn thirty_inputs_make_one_subgraph_when_pointers_spill() {
    let g = sum_graph(30);
    let (out, report) = run(&g);
    let sg = subgraphs(&out);
    assert_eq!(sg.len(), 1);
    assert_eq!(body_ops(sg[0]).len(), 29);
    assert_eq!(sg[0].inputs.len(), 30);
    let s = &report.subgraphs[0];
    assert_eq!((s.inputs, s.outputs), (30, 1));
    assert_eq!(s.spilled_pointers, 31 - 12);
}

#[test]
fn without_spill_the_budget_splits_subgraphs() {
    let g = sum_graph(30);
    for budget in [3, 4, 7, 12] {
        let cfg = TokenizeConfig {
            max_data_pointers: budget,
            allow_pointer_spill: false,
            ..TokenizeConfig::default()
        };
        let (out, report) = run_with(&g, &cfg);
        let sg = subgraphs(&out);
        assert!(sg.len() > 1, "budget {budget}");
        let mut ops = 0;
        for n in &sg {
            assert!(
                n.inputs.len() + n.outputs.len() <= budget,
                "{} uses {} pointers over budget {budget}",
                n.name,
                n.inputs.len() + n.outputs.len()
            );
            ops += body_ops(n).len();
        }
        assert_eq!(ops, 29, "every add is fused, budget {budget}");
        assert!(report.left_out.is_empty());
        assert!(report.subgraphs.iter().all(|s| s.spilled_pointers == 0));
        // A chain: the first subgraph takes budget - 1 inputs (budget - 2 adds), each
        // later one the previous sum plus budget - 2 new inputs.
        assert_eq!(body_ops(sg[0]).len(), budget - 2, "budget {budget}");
        let expected_count = 1 + (29 - (budget - 2)).div_ceil(budget - 2);
        assert_eq!(sg.len(), expected_count, "budget {budget}");
    }
}

#[test]
fn node_over_budget_alone_is_left_out() {
    let mut g = Graph::new("select");
    let c = g.add_input("c", TensorType::new(DType::Bool, Shape::fixed(&[4])));
    let a = g.add_input("a", f32t(&[4]));
    let b = g.add_input("b", f32t(&[4]));
    let s = g.add_op("s", Op::Select, &[c, a, b]).unwrap();
    g.add_output("out", s);
    let cfg = TokenizeConfig {
        max_data_pointers: 3,
        allow_pointer_spill: false,
        ..TokenizeConfig::default()
    };
    let (out, report) = run_with(&g, &cfg);
    assert_eq!(out, g);
    assert_eq!(report.left_out.len(), 1);
    assert_eq!(
        report.left_out[0].reason,
        LeftOutReason::OverPointerBudget {
            pointers: 4,
            budget: 3
        }
    );
}

#[test]
fn pow_fuses_only_with_a_scalar_constant_exponent() {
    let mut g = Graph::new("pow");
    let x = g.add_input("x", f32t(&[5]));
    let e = g.add_input("e", f32t(&[5]));
    let three = constant(&mut g, "three", Tensor::scalar_f32(3.0));
    let a = un(&mut g, "a", UnaryOp::Abs, x);
    let p = bin(&mut g, "p", BinaryOp::Pow, a, e);
    let q = bin(&mut g, "q", BinaryOp::Pow, p, three);
    g.add_output("out", q);

    let (out, report) = run(&g);
    let sg = subgraphs(&out);
    assert_eq!(sg.len(), 2);
    assert_eq!(body_ops(sg[0]), ["a"]);
    assert_eq!(body_ops(sg[1]), ["q"]);
    assert_eq!(report.left_out.len(), 1);
    assert_eq!(report.left_out[0].node, "p");
    assert_eq!(
        report.left_out[0].reason,
        LeftOutReason::PowExponentNotScalarConstant
    );
}

#[test]
fn dtypes_outside_f32_and_bool_stay_out_but_converts_fuse() {
    let mut g = Graph::new("dtypes");
    let x = g.add_input("x", f32t(&[6]));
    let i = g.add_input("i", TensorType::new(DType::I32, Shape::fixed(&[6])));
    let l = g.add_input("l", TensorType::new(DType::I64, Shape::fixed(&[6])));
    // f32 -> i32 -> f32 through Converts fuses; the i32 Add does not.
    let xi = g
        .add_op("xi", Op::Convert { to: DType::I32 }, &[x])
        .unwrap();
    let s = bin(&mut g, "s", BinaryOp::Add, xi, i);
    let sf = g
        .add_op("sf", Op::Convert { to: DType::F32 }, &[s])
        .unwrap();
    let r = un(&mut g, "r", UnaryOp::Relu, sf);
    // i64 -> f32 Convert is not one the JIT does.
    let lf = g
        .add_op("lf", Op::Convert { to: DType::F32 }, &[l])
        .unwrap();
    // A comparison yields bool; Select reads it: both fuse.
    let gt = bin(&mut g, "gt", BinaryOp::Greater, r, lf);
    let sel = g.add_op("sel", Op::Select, &[gt, r, lf]).unwrap();
    g.add_output("out", sel);

    let (out, report) = run(&g);
    let sg = subgraphs(&out);
    let ops: Vec<Vec<&str>> = sg.iter().map(|n| body_ops(n)).collect();
    assert_eq!(ops, [vec!["xi"], vec!["sf", "r", "gt", "sel"]]);
    let left: Vec<(&str, &LeftOutReason)> = report
        .left_out
        .iter()
        .map(|l| (l.node.as_str(), &l.reason))
        .collect();
    assert_eq!(
        left,
        [
            ("s", &LeftOutReason::DType(DType::I32)),
            ("lf", &LeftOutReason::DType(DType::I64)),
        ]
    );
}

#[test]
fn min_and_max_ops() {
    let mut g = Graph::new("limits");
    let x = g.add_input("x", f32t(&[2]));
    let mut v = x;
    for i in 0..5 {
        v = un(&mut g, &format!("u{i}"), UnaryOp::Neg, v);
    }
    let m = g.add_op("m", Op::Softmax { axis: 0 }, &[v]).unwrap();
    let e = un(&mut g, "e", UnaryOp::Exp, m);
    g.add_output("out", e);

    let cfg = TokenizeConfig {
        max_ops: 2,
        ..TokenizeConfig::default()
    };
    let (out, _) = run_with(&g, &cfg);
    let ops: Vec<Vec<&str>> = subgraphs(&out).iter().map(|n| body_ops(n)).collect();
    assert_eq!(
        ops,
        [vec!["u0", "u1"], vec!["u2", "u3"], vec!["u4"], vec!["e"]]
    );

    let cfg = TokenizeConfig {
        min_ops: 2,
        ..TokenizeConfig::default()
    };
    let (out, report) = run_with(&g, &cfg);
    let ops: Vec<Vec<&str>> = subgraphs(&out).iter().map(|n| body_ops(n)).collect();
    assert_eq!(ops, [vec!["u0", "u1", "u2", "u3", "u4"]]);
    assert_eq!(report.left_out.len(), 1);
    assert_eq!(
        report.left_out[0].reason,
        LeftOutReason::BelowMinOps { ops: 1, min_ops: 2 }
    );

    let cfg = TokenizeConfig {
        max_ops: 0,
        ..TokenizeConfig::default()
    };
    assert!(matches!(
        tokenize(&g, &cfg),
        Err(TokenizeError::InvalidConfig(_))
    ));
}

#[test]
fn unused_elementwise_ops_are_left_alone() {
    let mut g = Graph::new("dead");
    let x = g.add_input("x", f32t(&[2]));
    let _dead = un(&mut g, "dead", UnaryOp::Exp, x);
    g.add_output("out", x);
    let (out, report) = run(&g);
    assert_eq!(out, g);
    assert_eq!(report.left_out[0].reason, LeftOutReason::Unused);
}

#[test]
fn graph_without_elementwise_ops_is_unchanged() {
    let mut g = Graph::new("plain");
    let x = g.add_input("x", f32t(&[2, 3]));
    let w = g.add_input("w", f32t(&[3, 4]));
    let m = g
        .add_op(
            "m",
            Op::MatMul {
                transpose_a: false,
                transpose_b: false,
            },
            &[x, w],
        )
        .unwrap();
    g.add_output("out", m);
    let (out, report) = run(&g);
    assert_eq!(out, g);
    assert!(report.subgraphs.is_empty());
}

#[test]
fn tokenizing_twice_changes_nothing_and_names_stay_unique() {
    let mut g = Graph::new("twice");
    let x = g.add_input("subgraph0", f32t(&[3]));
    let a = un(&mut g, "a", UnaryOp::Relu, x);
    let s = g.add_op("s", Op::Softmax { axis: 0 }, &[a]).unwrap();
    let b = un(&mut g, "b", UnaryOp::Exp, s);
    g.add_output("out", b);

    let (once, _) = run(&g);
    let names: Vec<&str> = subgraphs(&once).iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["subgraph1", "subgraph2"]);
    let (twice, report) = run(&once);
    assert_eq!(twice, once);
    assert!(report.subgraphs.is_empty());
    // Deterministic: the same graph gives the same graph.
    assert_eq!(run(&g).0, once);
}

#[test]
fn invalid_input_is_an_error() {
    let mut g = Graph::new("bad");
    let x = g.add_input("x", f32t(&[3]));
    let a = un(&mut g, "a", UnaryOp::Relu, x);
    g.add_output("out", a);
    // Wrong declared type on `a`.
    g.nodes[a.node.index()].outputs[0].ty = f32t(&[4]);
    let err = tokenize(&g, &TokenizeConfig::default()).unwrap_err();
    assert!(matches!(err, TokenizeError::InvalidGraph(_)), "{err}");
    assert!(err.to_string().contains("'a'"), "{err}");
}

#[test]
fn report_prints_subgraphs_and_left_out_nodes() {
    let mut g = Graph::new("report");
    let x = g.add_input("x", f32t(&[5]));
    let e = g.add_input("e", f32t(&[5]));
    let a = un(&mut g, "a", UnaryOp::Abs, x);
    let p = bin(&mut g, "p", BinaryOp::Pow, a, e);
    g.add_output("out", p);
    let (_, report) = run(&g);
    assert_eq!(
        report.to_string(),
        "1 subgraph(s)\n  subgraph0 (elementwise): 1 ops, 1 inputs, 1 outputs, 0 scalar constants\n\
         1 elementwise node(s) left out\n  p (Pow): Pow exponent is not a scalar constant\n"
    );
}

#[test]
fn deep_residual_stack_gets_one_subgraph_per_layer() {
    // x_{i+1} = relu(x_i @ w + b) + x_i. Each layer's Add, Relu and residual Add
    // form one subgraph; the residual Add may not merge with the previous layer's
    // subgraph, which feeds this layer's MatMul. Big enough that a cycle check
    // walking the whole graph per node would be slow.
    let layers = 300;
    let mut g = Graph::new("residual");
    let mut x = g.add_input("x", f32t(&[2, 8]));
    let w = g.add_input("w", f32t(&[8, 8]));
    let b = g.add_input("b", f32t(&[8]));
    for i in 0..layers {
        let mm = Op::MatMul {
            transpose_a: false,
            transpose_b: false,
        };
        let m = g.add_op(format!("m{i}"), mm, &[x, w]).unwrap();
        let a = bin(&mut g, &format!("a{i}"), BinaryOp::Add, m, b);
        let r = un(&mut g, &format!("r{i}"), UnaryOp::Relu, a);
        x = bin(&mut g, &format!("s{i}"), BinaryOp::Add, r, x);
    }
    g.add_output("out", x);

    let (out, report) = run(&g);
    let sg = subgraphs(&out);
    assert_eq!(sg.len(), layers);
    assert_eq!(out.nodes.len(), 3 + 2 * layers + 1);
    for (i, n) in sg.iter().enumerate() {
        let ops = [format!("a{i}"), format!("r{i}"), format!("s{i}")];
        assert_eq!(body_ops(n), ops);
        let prev = if i == 0 {
            "x".to_string()
        } else {
            format!("s{}", i - 1)
        };
        assert_eq!(input_names(&out, n), [format!("m{i}"), "b".into(), prev]);
    }
    assert!(report.left_out.is_empty());
}
