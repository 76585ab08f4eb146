//! Whole-graph runs: input checks, dynamic dims, run-time faults that name the node,
//! subgraphs, and a BERT-style attention block against a naive implementation.

mod common;

use common::*;
use snipjit_interp::{InputError, InterpError, OpError, eval_op, run};
use snipjit_ir::{
    BinaryOp, DType, Dim, Graph, IrError, Node, Op, Output, Shape, Subgraph, SubgraphKind,
    TensorData, TensorType, UnaryOp, ValueRef,
};

fn ty(dtype: DType, dims: &[Dim]) -> TensorType {
    TensorType::new(dtype, dims.iter().cloned().collect::<Shape>())
}

fn n() -> Dim {
    Dim::sym("N")
}

fn s(v: usize) -> Dim {
    Dim::Static(v)
}

/// y = relu(x + b) with x: f32[N, 4], b: f32[4].
fn bias_relu() -> Graph {
    let mut g = Graph::new("bias_relu");
    let x = g.add_input("x", ty(DType::F32, &[n(), s(4)]));
    let b = g.add_input("b", ty(DType::F32, &[s(4)]));
    let sum = g.add_op("sum", Op::Binary(BinaryOp::Add), &[x, b]).unwrap();
    let y = g.add_op("y", Op::Unary(UnaryOp::Relu), &[sum]).unwrap();
    g.add_output("out", y);
    g
}

#[test]
fn runs_with_different_dynamic_sizes() {
    let g = bias_relu();
    let b = f32t(&[4], &[1.0, -1.0, 0.5, -0.5]);
    for rows in [0usize, 1, 3] {
        let xv: Vec<f32> = (0..rows * 4).map(|i| i as f32 - 5.0).collect();
        let out = run(&g, &[f32t(&[rows, 4], &xv), b.clone()]).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].shape, vec![rows, 4]);
        let bv = [1.0, -1.0, 0.5, -0.5];
        let want: Vec<f32> = xv
            .iter()
            .enumerate()
            .map(|(i, &v)| (v + bv[i % 4]).max(0.0))
            .collect();
        assert_f32_eq(f32s(&out[0]), &want);
    }
}

#[test]
fn input_checks_name_the_input_and_dim() {
    let g = bias_relu();
    let b = f32t(&[4], &[0.0; 4]);
    assert_eq!(
        run(&g, std::slice::from_ref(&b)),
        Err(InterpError::InputCount {
            graph: "bias_relu".into(),
            expected: 2,
            got: 1
        })
    );
    let input_err = |inputs: &[snipjit_ir::Tensor]| match run(&g, inputs) {
        Err(InterpError::Input {
            index,
            name,
            reason,
            ..
        }) => (index, name, *reason),
        other => panic!("expected an input error, got {other:?}"),
    };
    assert_eq!(
        input_err(&[i32t(&[1, 4], &[0; 4]), b.clone()]),
        (
            0,
            "x".into(),
            InputError::DType {
                expected: DType::F32,
                got: DType::I32
            }
        )
    );
    assert_eq!(
        input_err(&[f32t(&[4], &[0.0; 4]), b.clone()]),
        (
            0,
            "x".into(),
            InputError::Rank {
                expected: 2,
                got: 1
            }
        )
    );
    assert_eq!(
        input_err(&[f32t(&[1, 4], &[0.0; 4]), f32t(&[3], &[0.0; 3])]),
        (
            1,
            "b".into(),
            InputError::StaticDim {
                dim: 0,
                expected: 4,
                got: 3
            }
        )
    );
    let e = run(&g, &[f32t(&[1, 4], &[0.0; 4]), f32t(&[3], &[0.0; 3])]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "graph 'bias_relu': input 1 'b': dim 0 is 3, the parameter's dim is 4"
    );
}

#[test]
fn same_symbol_must_have_same_size() {
    let mut g = Graph::new("sym");
    let x = g.add_input("x", ty(DType::F32, &[n(), s(2)]));
    let y = g.add_input("y", ty(DType::F32, &[s(2), n()]));
    let t = g
        .add_op("t", Op::Transpose { perm: vec![1, 0] }, &[y])
        .unwrap();
    let sum = g.add_op("sum", Op::Binary(BinaryOp::Add), &[x, t]).unwrap();
    g.add_output("out", sum);
    let ok = run(&g, &[f32t(&[3, 2], &[0.0; 6]), f32t(&[2, 3], &[0.0; 6])]);
    assert_eq!(ok.unwrap()[0].shape, vec![3, 2]);
    let e = run(&g, &[f32t(&[3, 2], &[0.0; 6]), f32t(&[2, 4], &[0.0; 8])]).unwrap_err();
    let InterpError::Input {
        index,
        name,
        reason,
        ..
    } = &e
    else {
        panic!("expected an input error, got {e:?}");
    };
    assert_eq!((*index, name.as_str()), (1, "y"));
    assert_eq!(
        **reason,
        InputError::Symbol {
            dim: 1,
            symbol: "N".into(),
            got: 4,
            bound: 3,
            bound_by: "x".into()
        }
    );
    assert!(e.to_string().contains("input 'x' bound 'N' to 3"), "{e}");
}

#[test]
fn run_time_broadcast_fault_names_the_node() {
    let mut g = Graph::new("g");
    let x = g.add_input("x", ty(DType::F32, &[n()]));
    let y = g.add_input("y", ty(DType::F32, &[Dim::sym("M")]));
    let sum = g.add_op("sum", Op::Binary(BinaryOp::Add), &[x, y]).unwrap();
    g.add_output("out", sum);
    let e = run(&g, &[f32t(&[3], &[0.0; 3]), f32t(&[4], &[0.0; 4])]).unwrap_err();
    assert_eq!(
        e,
        InterpError::Op {
            node: Some("sum".into()),
            op: "Add",
            reason: OpError::Broadcast {
                a: vec![3],
                b: vec![4]
            },
        }
    );
    assert_eq!(
        e.to_string(),
        "node 'sum' (Add): shapes [3] and [4] do not broadcast"
    );
    // N = 1 broadcasts against M.
    let out = run(&g, &[f32t(&[1], &[1.0]), f32t(&[2], &[1.0, 2.0])]).unwrap();
    assert_f32_eq(f32s(&out[0]), &[2.0, 3.0]);
}

#[test]
fn declared_types_are_checked() {
    // Add of x: [N] and a constant [5] is declared [5]; N = 1 and N = 5 fit, N = 3 fails.
    let mut g = Graph::new("g");
    let x = g.add_input("x", ty(DType::F32, &[n()]));
    let c = g
        .add_op("c", Op::Constant(f32t(&[5], &[1.0; 5])), &[])
        .unwrap();
    let sum = g.add_op("sum", Op::Binary(BinaryOp::Add), &[x, c]).unwrap();
    g.add_output("out", sum);
    assert_eq!(run(&g, &[f32t(&[1], &[1.0])]).unwrap()[0].shape, vec![5]);
    assert_eq!(run(&g, &[f32t(&[5], &[1.0; 5])]).unwrap()[0].shape, vec![5]);
    assert!(run(&g, &[f32t(&[3], &[1.0; 3])]).is_err());

    // A value declared [N] that comes out with another size is an OutputType error.
    let mut g = Graph::new("g");
    let x = g.add_input("x", ty(DType::F32, &[n(), s(2)]));
    let shape = g
        .add_op("shape", Op::Constant(i64t(&[1], &[-1])), &[])
        .unwrap();
    let flat = g
        .add_op("flat", Op::Reshape { allow_zero: false }, &[x, shape])
        .unwrap();
    g.add_output("out", flat);
    assert_eq!(
        run(&g, &[f32t(&[3, 2], &[0.0; 6])]).unwrap()[0].shape,
        vec![6]
    );
    g.node_mut(flat.node).outputs[0].ty = ty(DType::F32, &[n()]);
    let e = run(&g, &[f32t(&[3, 2], &[0.0; 6])]).unwrap_err();
    let InterpError::Op {
        node,
        op,
        reason: OpError::OutputType {
            port, dtype, shape, ..
        },
    } = e
    else {
        panic!("expected an output type error, got {e:?}");
    };
    assert_eq!(
        (node.as_deref(), op, port, dtype, shape),
        (Some("flat"), "Reshape", 0, DType::F32, vec![6])
    );
}

#[test]
fn only_needed_nodes_run_and_values_can_be_shared() {
    let mut g = Graph::new("g");
    let x = g.add_input("x", ty(DType::I32, &[s(2)]));
    // A dead division by zero: never evaluated because no Result reads it.
    let zero = g
        .add_op("zero", Op::Constant(i32t(&[2], &[0, 0])), &[])
        .unwrap();
    g.add_op("dead", Op::Binary(BinaryOp::Div), &[x, zero])
        .unwrap();
    let sq = g.add_op("sq", Op::Binary(BinaryOp::Mul), &[x, x]).unwrap();
    g.add_output("a", sq);
    g.add_output("b", sq);
    g.add_output("x_out", x);
    let out = run(&g, &[i32t(&[2], &[3, -4])]).unwrap();
    assert_eq!(out.len(), 3);
    assert_eq!(out[0].data, TensorData::I32(vec![9, 16]));
    assert_eq!(out[1], out[0]);
    assert_eq!(out[2], i32t(&[2], &[3, -4]));
}

#[test]
fn malformed_graphs_are_errors() {
    let mut g = bias_relu();
    // Make "sum" read "y": a cycle.
    let y = g.find_value("y").unwrap();
    let sum = g.find_value("sum").unwrap();
    g.node_mut(sum.node).inputs[1] = y;
    let e = run(&g, &[f32t(&[1, 4], &[0.0; 4]), f32t(&[4], &[0.0; 4])]).unwrap_err();
    assert!(
        matches!(
            e,
            InterpError::Graph {
                error: IrError::Cycle { .. },
                ..
            }
        ),
        "{e:?}"
    );

    let mut g = bias_relu();
    let sum = g.find_value("sum").unwrap();
    g.node_mut(sum.node).inputs[1] = ValueRef::new(g.inputs[1], 3);
    let e = run(&g, &[f32t(&[1, 4], &[0.0; 4]), f32t(&[4], &[0.0; 4])]).unwrap_err();
    assert!(
        matches!(
            &e,
            InterpError::Op {
                reason: OpError::Unsupported(_),
                ..
            }
        ),
        "{e:?}"
    );
}

/// A body computing `relu(a + b)` and `a * b`.
fn body() -> Graph {
    let mut body = Graph::new("body");
    let a = body.add_input("a", ty(DType::F32, &[n()]));
    let b = body.add_input("b", ty(DType::F32, &[n()]));
    let sum = body
        .add_op("sum", Op::Binary(BinaryOp::Add), &[a, b])
        .unwrap();
    let r = body.add_op("r", Op::Unary(UnaryOp::Relu), &[sum]).unwrap();
    let p = body
        .add_op("p", Op::Binary(BinaryOp::Mul), &[a, b])
        .unwrap();
    body.add_output("r_out", r);
    body.add_output("p_out", p);
    body
}

#[test]
fn subgraph_runs_its_body() {
    let body = body();
    let mut g = Graph::new("host");
    let x = g.add_input("x", ty(DType::F32, &[n()]));
    let y = g.add_input("y", ty(DType::F32, &[n()]));
    let out_ty = ty(DType::F32, &[n()]);
    let op = Op::Subgraph(Box::new(Subgraph {
        kind: SubgraphKind::Elementwise,
        body,
    }));
    let sg = g.add_node(Node {
        name: "sg".into(),
        op: op.clone(),
        inputs: vec![x, y],
        outputs: vec![
            Output {
                name: "sg_r".into(),
                ty: out_ty.clone(),
            },
            Output {
                name: "sg_p".into(),
                ty: out_ty,
            },
        ],
    });
    g.add_output("p", ValueRef::new(sg, 1));
    g.add_output("r", ValueRef::new(sg, 0));
    snipjit_ir::verify(&g).unwrap();
    let xs = f32t(&[3], &[1.0, -2.0, 3.0]);
    let ys = f32t(&[3], &[-4.0, 1.0, 0.5]);
    let out = run(&g, &[xs.clone(), ys.clone()]).unwrap();
    assert_f32_eq(f32s(&out[0]), &[-4.0, -2.0, 1.5]);
    assert_f32_eq(f32s(&out[1]), &[0.0, 0.0, 3.5]);
    // The same through eval_op.
    let out = eval_op(&op, &[&xs, &ys]).unwrap();
    assert_f32_eq(f32s(&out[0]), &[0.0, 0.0, 3.5]);
    assert_f32_eq(f32s(&out[1]), &[-4.0, -2.0, 1.5]);
    // The host run rejects inconsistent N before the body runs; eval_op reports the
    // body's own input check, wrapped.
    let e = run(&g, &[xs.clone(), f32t(&[2], &[0.0; 2])]).unwrap_err();
    assert!(matches!(&e, InterpError::Input { index: 1, .. }), "{e:?}");
    let e = eval_op(&op, &[&xs, &f32t(&[2], &[0.0; 2])]).unwrap_err();
    let InterpError::Subgraph { node: None, error } = &e else {
        panic!("expected a subgraph error, got {e:?}");
    };
    assert!(
        matches!(&**error, InterpError::Input { index: 1, name, .. } if name == "b"),
        "{e:?}"
    );
    assert_eq!(
        eval_op(&op, &[&xs]).unwrap_err(),
        InterpError::Subgraph {
            node: None,
            error: Box::new(InterpError::InputCount {
                graph: "body".into(),
                expected: 2,
                got: 1
            }),
        }
    );
}

#[test]
fn subgraph_body_errors_are_wrapped() {
    let mut body = Graph::new("body");
    let a = body.add_input("a", ty(DType::I32, &[n()]));
    let b = body.add_input("b", ty(DType::I32, &[n()]));
    let q = body
        .add_op("q", Op::Binary(BinaryOp::Div), &[a, b])
        .unwrap();
    body.add_output("q_out", q);
    let mut g = Graph::new("host");
    let x = g.add_input("x", ty(DType::I32, &[n()]));
    let y = g.add_input("y", ty(DType::I32, &[n()]));
    let op = Op::Subgraph(Box::new(Subgraph {
        kind: SubgraphKind::Elementwise,
        body,
    }));
    let sg = g.add_op("sg", op, &[x, y]).unwrap();
    g.add_output("out", sg);
    let out = run(&g, &[i32t(&[2], &[7, -7]), i32t(&[2], &[2, 2])]).unwrap();
    assert_eq!(out[0].data, TensorData::I32(vec![3, -3]));
    let e = run(&g, &[i32t(&[2], &[7, -7]), i32t(&[2], &[2, 0])]).unwrap_err();
    let want_inner = InterpError::Op {
        node: Some("q".into()),
        op: "Div",
        reason: OpError::DivisionByZero,
    };
    assert_eq!(
        e,
        InterpError::Subgraph {
            node: Some("sg".into()),
            error: Box::new(want_inner)
        }
    );
    assert_eq!(
        e.to_string(),
        "node 'sg' (Subgraph) body: node 'q' (Div): integer division by zero"
    );
}

/// BERT self-attention: x [B, S, 8], 2 heads of 4, additive mask [B, S] of 0 / -10000.
fn attention_graph() -> (Graph, Vec<Vec<f32>>) {
    let (e, h, d) = (8usize, 2usize, 4usize);
    let mut rng = Rng(42);
    let weights: Vec<Vec<f32>> = (0..3).map(|_| rng.vec(e * e)).collect();
    let b = Dim::sym("B");
    let sq = Dim::sym("S");
    let mut g = Graph::new("attention");
    let x = g.add_input("x", ty(DType::F32, &[b.clone(), sq.clone(), s(e)]));
    let mask = g.add_input("mask", ty(DType::F32, &[b, sq]));
    let split = g
        .add_op(
            "split",
            Op::Constant(i64t(&[4], &[0, 0, h as i64, d as i64])),
            &[],
        )
        .unwrap();
    let mut heads = Vec::new();
    for (name, w) in ["q", "k", "v"].iter().zip(&weights) {
        let wc = g
            .add_op(format!("w{name}"), Op::Constant(f32t(&[e, e], w)), &[])
            .unwrap();
        let proj = g
            .add_op(
                format!("{name}_proj"),
                Op::MatMul {
                    transpose_a: false,
                    transpose_b: false,
                },
                &[x, wc],
            )
            .unwrap();
        let r = g
            .add_op(
                format!("{name}_split"),
                Op::Reshape { allow_zero: false },
                &[proj, split],
            )
            .unwrap();
        let t = g
            .add_op(
                format!("{name}_heads"),
                Op::Transpose {
                    perm: vec![0, 2, 1, 3],
                },
                &[r],
            )
            .unwrap();
        heads.push(t);
    }
    let scores = g
        .add_op(
            "scores",
            Op::MatMul {
                transpose_a: false,
                transpose_b: true,
            },
            &[heads[0], heads[1]],
        )
        .unwrap();
    let scale = g
        .add_op("scale", Op::Constant(f32t(&[], &[0.5])), &[])
        .unwrap();
    let scaled = g
        .add_op("scaled", Op::Binary(BinaryOp::Mul), &[scores, scale])
        .unwrap();
    let m4 = g
        .add_op("mask4", Op::Unsqueeze { axes: vec![1, 2] }, &[mask])
        .unwrap();
    let masked = g
        .add_op("masked", Op::Binary(BinaryOp::Add), &[scaled, m4])
        .unwrap();
    let probs = g
        .add_op("probs", Op::Softmax { axis: -1 }, &[masked])
        .unwrap();
    let ctx = g
        .add_op(
            "ctx",
            Op::MatMul {
                transpose_a: false,
                transpose_b: false,
            },
            &[probs, heads[2]],
        )
        .unwrap();
    let ctx_t = g
        .add_op(
            "ctx_t",
            Op::Transpose {
                perm: vec![0, 2, 1, 3],
            },
            &[ctx],
        )
        .unwrap();
    let merge = g
        .add_op("merge", Op::Constant(i64t(&[3], &[0, 0, e as i64])), &[])
        .unwrap();
    let out = g
        .add_op("out", Op::Reshape { allow_zero: false }, &[ctx_t, merge])
        .unwrap();
    g.add_output("y", out);
    snipjit_ir::verify(&g).unwrap();
    (g, weights)
}

/// The same attention written as plain loops in f64.
fn naive_attention(x: &[f32], mask: &[f32], w: &[Vec<f32>], bsz: usize, seq: usize) -> Vec<f64> {
    let (e, h, d) = (8usize, 2usize, 4usize);
    let proj = |w: &[f32]| -> Vec<f64> {
        let mut p = vec![0.0; bsz * seq * e];
        for r in 0..bsz * seq {
            for c in 0..e {
                p[r * e + c] = (0..e)
                    .map(|k| f64::from(x[r * e + k]) * f64::from(w[k * e + c]))
                    .sum();
            }
        }
        p
    };
    let (q, k, v) = (proj(&w[0]), proj(&w[1]), proj(&w[2]));
    let mut y = vec![0.0; bsz * seq * e];
    for bi in 0..bsz {
        for hi in 0..h {
            for i in 0..seq {
                let at = |t: &[f64], pos: usize, c: usize| t[(bi * seq + pos) * e + hi * d + c];
                let logits: Vec<f64> = (0..seq)
                    .map(|j| {
                        let dot: f64 = (0..d).map(|c| at(&q, i, c) * at(&k, j, c)).sum();
                        dot / (d as f64).sqrt() + f64::from(mask[bi * seq + j])
                    })
                    .collect();
                let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let ex: Vec<f64> = logits.iter().map(|l| (l - m).exp()).collect();
                let sum: f64 = ex.iter().sum();
                for c in 0..d {
                    y[(bi * seq + i) * e + hi * d + c] =
                        (0..seq).map(|j| ex[j] / sum * at(&v, j, c)).sum();
                }
            }
        }
    }
    y
}

#[test]
fn bert_attention_with_mask_matches_naive() {
    let (g, w) = attention_graph();
    let mut rng = Rng(3);
    for (bsz, seq) in [(1usize, 1usize), (2, 5), (3, 7)] {
        let x = rng.vec(bsz * seq * 8);
        // Mask the last position of each batch but the first (padding).
        let mask: Vec<f32> = (0..bsz * seq)
            .map(|i| {
                if i % seq == seq - 1 && i / seq > 0 {
                    -10000.0
                } else {
                    0.0
                }
            })
            .collect();
        let out = run(&g, &[f32t(&[bsz, seq, 8], &x), f32t(&[bsz, seq], &mask)]).unwrap();
        assert_eq!(out[0].shape, vec![bsz, seq, 8]);
        let want = naive_attention(&x, &mask, &w, bsz, seq);
        for (i, (&got, &want)) in f32s(&out[0]).iter().zip(&want).enumerate() {
            assert!(
                (f64::from(got) - want).abs() < 1e-5,
                "B={bsz} S={seq} element {i}: {got} vs {want}"
            );
        }
    }
    // The two inputs disagree on S: an input error naming the mask.
    let e = run(
        &g,
        &[f32t(&[1, 2, 8], &[0.0; 16]), f32t(&[1, 3], &[0.0; 3])],
    )
    .unwrap_err();
    assert!(
        matches!(&e, InterpError::Input { index: 1, name, .. } if name == "mask"),
        "{e:?}"
    );
}
