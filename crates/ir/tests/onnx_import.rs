//! ONNX import: models built as prost messages in Rust, encoded, imported, and the
//! resulting graph checked node by node.

mod onnx_util;

use half::{bf16, f16};
use onnx_util::*;
use snipjit_ir::{
    BinaryOp, DType, Dim, GeluApprox, Graph, Op, ReduceKind, Shape, TensorData, TensorType, UnaryOp,
};

fn ty(dtype: DType, dims: &[Dim]) -> TensorType {
    TensorType::new(dtype, dims.iter().cloned().collect())
}

fn st(n: usize) -> Dim {
    Dim::Static(n)
}

/// `y = op(x)` on x: f32[N, 4].
fn unary_model(op: &str, attrs: Vec<snipjit_ir::onnx::proto::AttributeProto>) -> ModelBuilder {
    let mut b = ModelBuilder::new(18);
    b.input("x", FLOAT, &["N", "4"])
        .node(op, "the_node", &["x"], &["y"], attrs)
        .output("y");
    b
}

/// The single non-Parameter, non-Result, non-Constant node's op.
fn compute_ops(g: &Graph) -> Vec<&Op> {
    g.nodes
        .iter()
        .filter(|n| !matches!(n.op, Op::Parameter | Op::Result | Op::Constant(_)))
        .map(|n| &n.op)
        .collect()
}

#[test]
fn graph_structure_names_and_dynamic_dims() {
    let mut b = ModelBuilder::new(17);
    b.input("x", FLOAT, &["batch", "?", "8"])
        .initializer(t_f32("bias", &[8], &[0.5; 8]))
        .node("Add", "add0", &["x", "bias"], &["sum"], vec![])
        .node("Relu", "", &["sum"], &["act"], vec![])
        .output("act")
        .output("sum");
    let g = ok(&b);
    assert_eq!(g.name, "test");
    assert_eq!(g.inputs.len(), 1);
    let x = g.node(g.inputs[0]);
    assert_eq!(x.name, "x");
    assert_eq!(x.op, Op::Parameter);
    let xt = ty(DType::F32, &[Dim::sym("batch"), Dim::Dynamic(None), st(8)]);
    assert_eq!(x.outputs[0].ty, xt);

    let bias = producer(&g, "bias");
    assert_eq!(bias.name, "bias");
    match &bias.op {
        Op::Constant(t) => {
            assert_eq!(t.shape, vec![8]);
            assert_eq!(t.data, TensorData::F32(vec![0.5; 8]));
        }
        other => panic!("bias is {other:?}"),
    }
    let add = producer(&g, "sum");
    assert_eq!(add.name, "add0");
    assert_eq!(add.op, Op::Binary(BinaryOp::Add));
    assert_eq!(add.outputs[0].ty, xt);
    // An unnamed node takes its first output's name.
    let relu = producer(&g, "act");
    assert_eq!(relu.name, "act");
    assert_eq!(relu.op, Op::Unary(UnaryOp::Relu));

    assert_eq!(g.outputs.len(), 2);
    let r0 = g.node(g.outputs[0]);
    assert_eq!((r0.name.as_str(), &r0.op), ("act", &Op::Result));
    assert_eq!(g.value_name(r0.inputs[0]), "act");
    assert_eq!(r0.outputs[0].ty, xt);
    let r1 = g.node(g.outputs[1]);
    assert_eq!(r1.name, "sum");
    assert_eq!(g.value_name(r1.inputs[0]), "sum");
    snipjit_ir::verify(&g).unwrap();
}

#[test]
fn input_with_initializer_is_a_constant_and_domain_spellings() {
    let mut b = ModelBuilder::new(18);
    b.model.opset_import[0].domain = "ai.onnx".into();
    b.input("x", FLOAT, &["2"])
        .input("w", FLOAT, &["2"])
        .initializer(t_f32_raw("w", &[2], &[1.5, -2.0]));
    b.graph().node.push(snipjit_ir::onnx::proto::NodeProto {
        input: vec!["x".into(), "w".into()],
        output: vec!["y".into()],
        op_type: "Mul".into(),
        domain: "ai.onnx".into(),
        ..Default::default()
    });
    b.output("y");
    let g = ok(&b);
    assert_eq!(
        g.inputs.len(),
        1,
        "w has an initializer, so it is no Parameter"
    );
    match &producer(&g, "w").op {
        Op::Constant(t) => assert_eq!(t.data, TensorData::F32(vec![1.5, -2.0])),
        other => panic!("w is {other:?}"),
    }
    assert_eq!(producer(&g, "y").op, Op::Binary(BinaryOp::Mul));
}

#[test]
fn nodes_out_of_order_are_sorted() {
    let mut b = ModelBuilder::new(18);
    b.input("x", FLOAT, &["3"])
        .node("Exp", "second", &["a"], &["b"], vec![])
        .node("Neg", "first", &["x"], &["a"], vec![])
        .output("b");
    let g = ok(&b);
    let order: Vec<&str> = g
        .topo_order()
        .unwrap()
        .into_iter()
        .map(|id| g.node(id).name.as_str())
        .collect();
    let pos = |n: &str| order.iter().position(|&o| o == n).unwrap();
    assert!(pos("first") < pos("second"));
    assert_eq!(producer(&g, "b").op, Op::Unary(UnaryOp::Exp));
}

#[test]
fn simple_unary_ops() {
    let cases: Vec<(&str, UnaryOp)> = vec![
        ("Abs", UnaryOp::Abs),
        ("Neg", UnaryOp::Neg),
        ("Relu", UnaryOp::Relu),
        ("Exp", UnaryOp::Exp),
        ("Log", UnaryOp::Log),
        ("Sqrt", UnaryOp::Sqrt),
        ("Reciprocal", UnaryOp::Reciprocal),
        ("Erf", UnaryOp::Erf),
        ("Tanh", UnaryOp::Tanh),
        ("Sigmoid", UnaryOp::Sigmoid),
        ("HardSwish", UnaryOp::HSwish),
        ("Mish", UnaryOp::Mish),
        ("Softplus", UnaryOp::Softplus),
        ("Floor", UnaryOp::Floor),
        ("Ceil", UnaryOp::Ceil),
        ("Round", UnaryOp::Round),
        ("Sign", UnaryOp::Sign),
        ("Elu", UnaryOp::Elu { alpha: 1.0 }),
        ("LeakyRelu", UnaryOp::LeakyRelu { alpha: 0.01 }),
        ("Gelu", UnaryOp::Gelu(GeluApprox::Erf)),
    ];
    for (name, want) in cases {
        let g = ok(&unary_model(name, vec![]));
        let y = producer(&g, "y");
        assert_eq!(y.op, Op::Unary(want), "{name}");
        assert_eq!(y.name, "the_node");
        assert_eq!(y.outputs[0].ty, ty(DType::F32, &[Dim::sym("N"), st(4)]));
    }
}

#[test]
fn unary_ops_with_attributes() {
    let g = ok(&unary_model("Elu", vec![a_float("alpha", 0.25)]));
    assert_eq!(
        producer(&g, "y").op,
        Op::Unary(UnaryOp::Elu { alpha: 0.25 })
    );
    let g = ok(&unary_model("LeakyRelu", vec![a_float("alpha", 0.3)]));
    assert_eq!(
        producer(&g, "y").op,
        Op::Unary(UnaryOp::LeakyRelu { alpha: 0.3 })
    );
    let g = ok(&unary_model("Gelu", vec![a_str("approximate", "tanh")]));
    assert_eq!(
        producer(&g, "y").op,
        Op::Unary(UnaryOp::Gelu(GeluApprox::Tanh))
    );
    let g = ok(&unary_model("Gelu", vec![a_str("approximate", "none")]));
    assert_eq!(
        producer(&g, "y").op,
        Op::Unary(UnaryOp::Gelu(GeluApprox::Erf))
    );
}

#[test]
fn not_and_logical_binaries() {
    for (name, want) in [
        ("And", BinaryOp::And),
        ("Or", BinaryOp::Or),
        ("Xor", BinaryOp::Xor),
    ] {
        let mut b = ModelBuilder::new(18);
        b.input("p", BOOL, &["N", "1"])
            .input("q", BOOL, &["5"])
            .node(name, "", &["p", "q"], &["r"], vec![])
            .node("Not", "", &["r"], &["y"], vec![])
            .output("y");
        let g = ok(&b);
        assert_eq!(producer(&g, "r").op, Op::Binary(want));
        let y = producer(&g, "y");
        assert_eq!(y.op, Op::Unary(UnaryOp::Not));
        assert_eq!(y.outputs[0].ty, ty(DType::Bool, &[Dim::sym("N"), st(5)]));
    }
}

#[test]
fn arithmetic_and_comparison_binaries_broadcast() {
    let cases = [
        ("Add", BinaryOp::Add, DType::F32),
        ("Sub", BinaryOp::Sub, DType::F32),
        ("Mul", BinaryOp::Mul, DType::F32),
        ("Div", BinaryOp::Div, DType::F32),
        ("Pow", BinaryOp::Pow, DType::F32),
        ("PRelu", BinaryOp::PRelu, DType::F32),
        ("Equal", BinaryOp::Equal, DType::Bool),
        ("Less", BinaryOp::Less, DType::Bool),
        ("LessOrEqual", BinaryOp::LessEqual, DType::Bool),
        ("Greater", BinaryOp::Greater, DType::Bool),
        ("GreaterOrEqual", BinaryOp::GreaterEqual, DType::Bool),
    ];
    for (name, want, out) in cases {
        let mut b = ModelBuilder::new(13);
        b.input("a", FLOAT, &["B", "1", "7"])
            .input("b", FLOAT, &["3", "1"])
            .node(name, "n", &["a", "b"], &["y"], vec![])
            .output("y");
        let g = ok(&b);
        let y = producer(&g, "y");
        assert_eq!(y.op, Op::Binary(want), "{name}");
        assert_eq!(
            y.outputs[0].ty,
            ty(out, &[Dim::sym("B"), st(3), st(7)]),
            "{name}"
        );
    }
}

#[test]
fn pow_with_integer_exponent_converts_it() {
    let mut b = ModelBuilder::new(18);
    b.input("x", FLOAT, &["4"])
        .initializer(t_i64("e", &[], &[3]))
        .node("Pow", "p", &["x", "e"], &["y"], vec![])
        .output("y");
    let g = ok(&b);
    let y = producer(&g, "y");
    assert_eq!(y.op, Op::Binary(BinaryOp::Pow));
    let conv = g.node(y.inputs[1].node);
    assert_eq!(conv.op, Op::Convert { to: DType::F32 });
    assert_eq!(g.value_name(conv.inputs[0]), "e");
}

#[test]
fn mod_with_fmod() {
    let mut b = ModelBuilder::new(18);
    b.input("a", INT32, &["4"])
        .input("b", INT32, &["4"])
        .node("Mod", "m", &["a", "b"], &["y"], vec![a_int("fmod", 1)])
        .output("y");
    let g = ok(&b);
    let y = producer(&g, "y");
    assert_eq!(y.op, Op::Binary(BinaryOp::Mod));
    assert_eq!(y.outputs[0].ty, ty(DType::I32, &[st(4)]));
}

#[test]
fn variadic_ops_chain_left_to_right() {
    for (name, want) in [
        ("Max", BinaryOp::Max),
        ("Min", BinaryOp::Min),
        ("Sum", BinaryOp::Add),
    ] {
        let mut b = ModelBuilder::new(18);
        b.input("a", FLOAT, &["N", "3"])
            .input("b", FLOAT, &["3"])
            .input("c", FLOAT, &["1", "3"])
            .node(name, "v", &["a", "b", "c"], &["y"], vec![])
            .output("y");
        let g = ok(&b);
        let y = producer(&g, "y");
        assert_eq!(y.op, Op::Binary(want));
        assert_eq!(y.name, "v");
        assert_eq!(g.value_name(y.inputs[1]), "c");
        let first = g.node(y.inputs[0].node);
        assert_eq!(first.op, Op::Binary(want));
        assert_eq!(g.value_name(first.inputs[0]), "a");
        assert_eq!(g.value_name(first.inputs[1]), "b");
        assert_eq!(y.outputs[0].ty, ty(DType::F32, &[Dim::sym("N"), st(3)]));
    }
    // One input: Identity.
    let mut b = ModelBuilder::new(18);
    b.input("a", FLOAT, &["3"])
        .node("Max", "", &["a"], &["y"], vec![])
        .output("y");
    assert_eq!(producer(&ok(&b), "y").op, Op::Identity);
}

#[test]
fn mean_is_sum_divided_by_count() {
    let mut b = ModelBuilder::new(18);
    b.input("a", FLOAT, &["3"])
        .input("b", FLOAT, &["3"])
        .node("Mean", "m", &["a", "b"], &["y"], vec![])
        .output("y");
    let g = ok(&b);
    let y = producer(&g, "y");
    assert_eq!(y.op, Op::Binary(BinaryOp::Div));
    assert_eq!(g.node(y.inputs[0].node).op, Op::Binary(BinaryOp::Add));
    match &g.node(y.inputs[1].node).op {
        Op::Constant(t) => assert_eq!((t.shape.as_slice(), t.scalar_value()), (&[][..], Some(2.0))),
        other => panic!("count is {other:?}"),
    }
}

#[test]
fn where_is_select() {
    let mut b = ModelBuilder::new(18);
    b.input("c", BOOL, &["1", "S"])
        .input("a", FLOAT, &["H", "S"])
        .initializer(t_f32("neg", &[], &[-1e9]))
        .node("Where", "w", &["c", "a", "neg"], &["y"], vec![])
        .output("y");
    let g = ok(&b);
    let y = producer(&g, "y");
    assert_eq!(y.op, Op::Select);
    assert_eq!(
        y.outputs[0].ty,
        ty(DType::F32, &[Dim::sym("H"), Dim::sym("S")])
    );
}

#[test]
fn clip_with_constant_and_missing_bounds() {
    let mut b = ModelBuilder::new(18);
    b.input("x", FLOAT, &["4"])
        .initializer(t_f32("lo", &[], &[-0.5]))
        .initializer(t_f32("hi", &[1], &[6.0]))
        .node("Clip", "both", &["x", "lo", "hi"], &["y1"], vec![])
        .node("Clip", "max_only", &["x", "", "hi"], &["y2"], vec![])
        .node("Clip", "min_only", &["x", "lo"], &["y3"], vec![])
        .node("Clip", "none", &["x"], &["y4"], vec![])
        .output("y1")
        .output("y2")
        .output("y3")
        .output("y4");
    let g = ok(&b);
    let inf = f32::INFINITY;
    let want = [
        ("y1", -0.5, 6.0),
        ("y2", -inf, 6.0),
        ("y3", -0.5, inf),
        ("y4", -inf, inf),
    ];
    for (v, min, max) in want {
        assert_eq!(
            producer(&g, v).op,
            Op::Unary(UnaryOp::Clamp { min, max }),
            "{v}"
        );
    }
}

#[test]
fn hard_sigmoid_forms() {
    let g = ok(&unary_model(
        "HardSigmoid",
        vec![a_float("alpha", 1.0 / 6.0), a_float("beta", 0.5)],
    ));
    assert_eq!(producer(&g, "y").op, Op::Unary(UnaryOp::HSigmoid));

    // Defaults alpha=0.2, beta=0.5: decomposed into clamp(x * 0.2 + 0.5, 0, 1).
    let g = ok(&unary_model("HardSigmoid", vec![]));
    let y = producer(&g, "y");
    assert_eq!(y.op, Op::Unary(UnaryOp::Clamp { min: 0.0, max: 1.0 }));
    assert_eq!(y.name, "the_node");
    let add = g.node(y.inputs[0].node);
    assert_eq!(add.op, Op::Binary(BinaryOp::Add));
    let mul = g.node(add.inputs[0].node);
    assert_eq!(mul.op, Op::Binary(BinaryOp::Mul));
    assert_eq!(g.value_name(mul.inputs[0]), "x");
    let scalar = |v: snipjit_ir::ValueRef| match &g.node(v.node).op {
        Op::Constant(t) => t.as_f32().unwrap().to_vec(),
        other => panic!("{other:?}"),
    };
    assert_eq!(scalar(mul.inputs[1]), vec![0.2]);
    assert_eq!(scalar(add.inputs[1]), vec![0.5]);
    assert_eq!(y.outputs[0].ty, ty(DType::F32, &[Dim::sym("N"), st(4)]));
}

#[test]
fn cast_and_cast_like() {
    let mut b = ModelBuilder::new(18);
    b.input("x", FLOAT, &["N"])
        .input("like", FLOAT16, &["1"])
        .node("Cast", "c", &["x"], &["i"], vec![a_int("to", INT32 as i64)])
        .node("CastLike", "cl", &["i", "like"], &["h"], vec![])
        .output("h");
    let g = ok(&b);
    assert_eq!(producer(&g, "i").op, Op::Convert { to: DType::I32 });
    let h = producer(&g, "h");
    assert_eq!(h.op, Op::Convert { to: DType::F16 });
    assert_eq!(h.inputs.len(), 1);
    assert_eq!(h.outputs[0].ty, ty(DType::F16, &[Dim::sym("N")]));
}

#[test]
fn reductions_with_axes_attribute_before_opset_18() {
    for (name, kind) in [
        ("ReduceMax", ReduceKind::Max),
        ("ReduceMin", ReduceKind::Min),
        ("ReduceMean", ReduceKind::Mean),
        ("ReduceProd", ReduceKind::Prod),
    ] {
        let mut b = ModelBuilder::new(13);
        b.input("x", FLOAT, &["N", "3", "5"])
            .node(name, "r", &["x"], &["y"], vec![a_ints("axes", &[-1])])
            .node(
                name,
                "r2",
                &["x"],
                &["z"],
                vec![a_ints("axes", &[1]), a_int("keepdims", 0)],
            )
            .output("y")
            .output("z");
        let g = ok(&b);
        let y = producer(&g, "y");
        let want = Op::Reduce {
            kind,
            axes: vec![-1],
            keep_dims: true,
        };
        assert_eq!(y.op, want);
        assert_eq!(
            y.outputs[0].ty,
            ty(DType::F32, &[Dim::sym("N"), st(3), st(1)])
        );
        let z = producer(&g, "z");
        assert_eq!(z.outputs[0].ty, ty(DType::F32, &[Dim::sym("N"), st(5)]));
    }
}

#[test]
fn reductions_with_axes_input() {
    // ReduceSum takes axes as input from opset 13, the others from 18.
    for (opset, name, kind) in [
        (13, "ReduceSum", ReduceKind::Sum),
        (18, "ReduceSum", ReduceKind::Sum),
        (18, "ReduceMax", ReduceKind::Max),
        (18, "ReduceMean", ReduceKind::Mean),
    ] {
        let mut b = ModelBuilder::new(opset);
        b.input("x", FLOAT, &["N", "3", "5"])
            .initializer(t_i64("axes", &[2], &[0, 2]))
            .node(
                name,
                "r",
                &["x", "axes"],
                &["y"],
                vec![a_int("keepdims", 0)],
            )
            .node(name, "all", &["x"], &["z"], vec![])
            .node(
                name,
                "noop",
                &["x"],
                &["w"],
                vec![a_int("noop_with_empty_axes", 1)],
            )
            .output("y")
            .output("z")
            .output("w");
        let g = ok(&b);
        let y = producer(&g, "y");
        assert_eq!(
            y.op,
            Op::Reduce {
                kind,
                axes: vec![0, 2],
                keep_dims: false
            }
        );
        assert_eq!(y.outputs[0].ty, ty(DType::F32, &[st(3)]));
        let z = producer(&g, "z");
        assert_eq!(
            z.op,
            Op::Reduce {
                kind,
                axes: vec![],
                keep_dims: true
            }
        );
        assert_eq!(z.outputs[0].ty, ty(DType::F32, &[st(1), st(1), st(1)]));
        assert_eq!(producer(&g, "w").op, Op::Identity);
    }
}

#[test]
fn softmax_default_axis_and_matmul() {
    let mut b = ModelBuilder::new(18);
    b.input("q", FLOAT, &["B", "H", "S", "64"])
        .input("k", FLOAT, &["B", "H", "64", "S"])
        .node("MatMul", "qk", &["q", "k"], &["s"], vec![])
        .node("Softmax", "sm", &["s"], &["p"], vec![])
        .node("Softmax", "sm1", &["s"], &["p1"], vec![a_int("axis", 1)])
        .output("p")
        .output("p1");
    let g = ok(&b);
    let s = producer(&g, "s");
    assert_eq!(
        s.op,
        Op::MatMul {
            transpose_a: false,
            transpose_b: false
        }
    );
    let sym = Dim::sym;
    assert_eq!(
        s.outputs[0].ty,
        ty(DType::F32, &[sym("B"), sym("H"), sym("S"), sym("S")])
    );
    assert_eq!(producer(&g, "p").op, Op::Softmax { axis: -1 });
    assert_eq!(producer(&g, "p1").op, Op::Softmax { axis: 1 });
}

#[test]
fn gemm_plain_is_one_matmul() {
    let mut b = ModelBuilder::new(18);
    b.input("a", FLOAT, &["M", "8"])
        .initializer(t_f32("w", &[16, 8], &[0.0; 128]))
        .node("Gemm", "fc", &["a", "w"], &["y"], vec![a_int("transB", 1)])
        .output("y");
    let g = ok(&b);
    let y = producer(&g, "y");
    assert_eq!(y.name, "fc");
    assert_eq!(
        y.op,
        Op::MatMul {
            transpose_a: false,
            transpose_b: true
        }
    );
    assert_eq!(y.outputs[0].ty, ty(DType::F32, &[Dim::sym("M"), st(16)]));
}

#[test]
fn gemm_with_alpha_beta_and_bias() {
    let mut b = ModelBuilder::new(18);
    b.input("a", FLOAT, &["8", "M"])
        .input("bm", FLOAT, &["8", "4"])
        .initializer(t_f32("c", &[4], &[1.0; 4]))
        .node(
            "Gemm",
            "fc",
            &["a", "bm", "c"],
            &["y"],
            vec![
                a_int("transA", 1),
                a_float("alpha", 0.5),
                a_float("beta", 2.0),
            ],
        )
        .output("y");
    let g = ok(&b);
    let y = producer(&g, "y");
    assert_eq!(y.op, Op::Binary(BinaryOp::Add));
    assert_eq!(y.outputs[0].ty, ty(DType::F32, &[Dim::sym("M"), st(4)]));
    let scaled = g.node(y.inputs[0].node);
    assert_eq!(scaled.op, Op::Binary(BinaryOp::Mul));
    let mm = g.node(scaled.inputs[0].node);
    assert_eq!(
        mm.op,
        Op::MatMul {
            transpose_a: true,
            transpose_b: false
        }
    );
    let alpha = g.node(scaled.inputs[1].node);
    assert_eq!(alpha.op, Op::Constant(snipjit_ir::Tensor::scalar_f32(0.5)));
    let bias = g.node(y.inputs[1].node);
    assert_eq!(bias.op, Op::Binary(BinaryOp::Mul));
    assert_eq!(g.value_name(bias.inputs[0]), "c");
    let beta = g.node(bias.inputs[1].node);
    assert_eq!(beta.op, Op::Constant(snipjit_ir::Tensor::scalar_f32(2.0)));

    // beta = 0 drops C; alpha = 1 with C is MatMul + Add.
    let mut b = ModelBuilder::new(18);
    b.input("a", FLOAT, &["2", "3"])
        .input("bm", FLOAT, &["3", "4"])
        .input("c", FLOAT, &["2", "4"])
        .node(
            "Gemm",
            "g0",
            &["a", "bm", "c"],
            &["y0"],
            vec![a_float("beta", 0.0)],
        )
        .node("Gemm", "g1", &["a", "bm", "c"], &["y1"], vec![])
        .output("y0")
        .output("y1");
    let g = ok(&b);
    assert!(matches!(producer(&g, "y0").op, Op::MatMul { .. }));
    let y1 = producer(&g, "y1");
    assert_eq!(y1.op, Op::Binary(BinaryOp::Add));
    assert!(matches!(g.node(y1.inputs[0].node).op, Op::MatMul { .. }));
    assert_eq!(g.value_name(y1.inputs[1]), "c");
}

#[test]
fn transpose_reshape_expand_chain() {
    let mut b = ModelBuilder::new(18);
    b.input("x", FLOAT, &["B", "S", "12"])
        .initializer(t_i64("shape", &[4], &[0, 0, 3, 4]))
        .initializer(t_i64("big", &[4], &[1, 1, 1, 2]))
        .node("Reshape", "r", &["x", "shape"], &["r"], vec![])
        .node(
            "Transpose",
            "t",
            &["r"],
            &["t"],
            vec![a_ints("perm", &[0, 2, 1, 3])],
        )
        .node("Transpose", "rev", &["t"], &["rev"], vec![])
        .node("Expand", "e", &["rev", "big"], &["e"], vec![])
        .output("e");
    let g = ok(&b);
    let sym = Dim::sym;
    let r = producer(&g, "r");
    assert_eq!(r.op, Op::Reshape { allow_zero: false });
    assert_eq!(
        r.outputs[0].ty,
        ty(DType::F32, &[sym("B"), sym("S"), st(3), st(4)])
    );
    let t = producer(&g, "t");
    assert_eq!(
        t.op,
        Op::Transpose {
            perm: vec![0, 2, 1, 3]
        }
    );
    assert_eq!(
        t.outputs[0].ty,
        ty(DType::F32, &[sym("B"), st(3), sym("S"), st(4)])
    );
    let rev = producer(&g, "rev");
    assert_eq!(
        rev.op,
        Op::Transpose {
            perm: vec![3, 2, 1, 0]
        }
    );
    let e = producer(&g, "e");
    assert_eq!(e.op, Op::Broadcast);
    // 2 against the dynamic B gives 2 (checked at run time).
    assert_eq!(
        e.outputs[0].ty,
        ty(DType::F32, &[st(4), sym("S"), st(3), st(2)])
    );
}

#[test]
fn reshape_allowzero() {
    let mut b = ModelBuilder::new(18);
    b.input("x", FLOAT, &["0", "4"])
        .initializer(t_i64("shape", &[2], &[4, 0]))
        .node(
            "Reshape",
            "r",
            &["x", "shape"],
            &["y"],
            vec![a_int("allowzero", 1)],
        )
        .output("y");
    let y = ok(&b);
    let y = producer(&y, "y");
    assert_eq!(y.op, Op::Reshape { allow_zero: true });
    assert_eq!(y.outputs[0].ty, ty(DType::F32, &[st(4), st(0)]));
}

#[test]
fn unsqueeze_squeeze_concat() {
    let mut b = ModelBuilder::new(13);
    b.input("x", FLOAT, &["N", "1", "3"])
        .initializer(t_i64("ax1", &[1], &[1]))
        .initializer(t_i64("ax0", &[2], &[0, -1]))
        .node("Squeeze", "sq", &["x", "ax1"], &["s"], vec![])
        .node("Unsqueeze", "us", &["s", "ax0"], &["u"], vec![])
        .node(
            "Concat",
            "cat",
            &["u", "u"],
            &["c"],
            vec![a_int("axis", -2)],
        )
        .output("c");
    let g = ok(&b);
    let s = producer(&g, "s");
    assert_eq!(s.op, Op::Squeeze { axes: vec![1] });
    assert_eq!(s.outputs[0].ty, ty(DType::F32, &[Dim::sym("N"), st(3)]));
    let u = producer(&g, "u");
    assert_eq!(u.op, Op::Unsqueeze { axes: vec![0, -1] });
    assert_eq!(
        u.outputs[0].ty,
        ty(DType::F32, &[st(1), Dim::sym("N"), st(3), st(1)])
    );
    let c = producer(&g, "c");
    assert_eq!(c.op, Op::Concat { axis: -2 });
    assert_eq!(
        c.outputs[0].ty,
        ty(DType::F32, &[st(1), Dim::sym("N"), st(6), st(1)])
    );

    // Squeeze without axes on a static shape drops every size-1 dim.
    let mut b = ModelBuilder::new(18);
    b.input("x", FLOAT, &["1", "3", "1"])
        .node("Squeeze", "", &["x"], &["y"], vec![])
        .output("y");
    let g = ok(&b);
    let y = producer(&g, "y");
    assert_eq!(y.op, Op::Squeeze { axes: vec![] });
    assert_eq!(y.outputs[0].ty, ty(DType::F32, &[st(3)]));
}

#[test]
fn shape_gather_concat_reshape_chain() {
    // y = reshape(x, concat(shape(x)[0], [-1])): a dynamic flatten.
    let mut b = ModelBuilder::new(18);
    b.input("x", FLOAT, &["N", "3", "4"])
        .initializer(t_i64("zero", &[1], &[0]))
        .initializer(t_i64("minus1", &[1], &[-1]))
        .node("Shape", "shp", &["x"], &["s"], vec![])
        .node(
            "Gather",
            "g",
            &["s", "zero"],
            &["n"],
            vec![a_int("axis", 0)],
        )
        .node(
            "Concat",
            "cat",
            &["n", "minus1"],
            &["target"],
            vec![a_int("axis", 0)],
        )
        .node("Reshape", "r", &["x", "target"], &["y"], vec![])
        .output("y");
    let g = ok(&b);
    let s = producer(&g, "s");
    assert_eq!(s.op, Op::ShapeOf);
    assert_eq!(s.outputs[0].ty, ty(DType::I64, &[st(3)]));
    let n = producer(&g, "n");
    assert_eq!(n.op, Op::Gather { axis: 0 });
    assert_eq!(n.outputs[0].ty, ty(DType::I64, &[st(1)]));
    assert_eq!(
        producer(&g, "target").outputs[0].ty,
        ty(DType::I64, &[st(2)])
    );
    let y = producer(&g, "y");
    assert_eq!(
        y.outputs[0].ty,
        ty(DType::F32, &[Dim::Dynamic(None), Dim::Dynamic(None)])
    );

    // Shape with explicit full-range start/end is fine too.
    let mut b = ModelBuilder::new(18);
    b.input("x", FLOAT, &["N", "3"])
        .node(
            "Shape",
            "s",
            &["x"],
            &["s"],
            vec![a_int("start", 0), a_int("end", 5)],
        )
        .output("s");
    assert_eq!(producer(&ok(&b), "s").op, Op::ShapeOf);
}

#[test]
fn gather_with_scalar_index() {
    let mut b = ModelBuilder::new(18);
    b.input("x", FLOAT, &["N", "5", "7"])
        .initializer(t_int32_field("i", INT32, &[], &[2]))
        .node("Gather", "g", &["x", "i"], &["y"], vec![a_int("axis", 1)])
        .output("y");
    let g = ok(&b);
    let y = producer(&g, "y");
    assert_eq!(y.op, Op::Gather { axis: 1 });
    assert_eq!(y.outputs[0].ty, ty(DType::F32, &[Dim::sym("N"), st(7)]));
}

#[test]
fn identity_and_dropout() {
    let mut b = ModelBuilder::new(18);
    b.input("x", FLOAT, &["N"])
        .initializer(t_f32("ratio", &[], &[0.1]))
        .initializer(t_int32_field("train", BOOL, &[], &[0]))
        .node("Identity", "id", &["x"], &["a"], vec![])
        .node("Dropout", "d0", &["a"], &["b"], vec![])
        .node(
            "Dropout",
            "d1",
            &["b", "ratio", "train"],
            &["c", "mask"],
            vec![],
        )
        .output("c");
    let g = ok(&b);
    for v in ["a", "b", "c"] {
        assert_eq!(producer(&g, v).op, Op::Identity, "{v}");
    }
    assert!(g.find_value("mask").is_none());
}

#[test]
fn constant_node_forms() {
    let mut b = ModelBuilder::new(18);
    b.node(
        "Constant",
        "k0",
        &[],
        &["t"],
        vec![a_tensor("value", t_f32("", &[2], &[1.0, 2.0]))],
    )
    .node(
        "Constant",
        "k1",
        &[],
        &["f"],
        vec![a_float("value_float", 3.5)],
    )
    .node(
        "Constant",
        "k2",
        &[],
        &["fs"],
        vec![a_floats("value_floats", &[1.0, 2.0, 3.0])],
    )
    .node("Constant", "k3", &[], &["i"], vec![a_int("value_int", -7)])
    .node(
        "Constant",
        "k4",
        &[],
        &["is"],
        vec![a_ints("value_ints", &[4, 5])],
    )
    .node("Add", "add", &["t", "f"], &["y"], vec![])
    .output("y")
    .output("fs")
    .output("i")
    .output("is");
    let g = ok(&b);
    let konst = |v: &str| match &producer(&g, v).op {
        Op::Constant(t) => t.clone(),
        other => panic!("{v} is {other:?}"),
    };
    assert_eq!(konst("t").data, TensorData::F32(vec![1.0, 2.0]));
    assert_eq!(producer(&g, "t").name, "k0");
    let f = konst("f");
    assert_eq!(
        (f.shape.clone(), f.data),
        (vec![], TensorData::F32(vec![3.5]))
    );
    let fs = konst("fs");
    assert_eq!(
        (fs.shape.clone(), fs.data),
        (vec![3], TensorData::F32(vec![1.0, 2.0, 3.0]))
    );
    let i = konst("i");
    assert_eq!(
        (i.shape.clone(), i.data),
        (vec![], TensorData::I64(vec![-7]))
    );
    let is = konst("is");
    assert_eq!(
        (is.shape.clone(), is.data),
        (vec![2], TensorData::I64(vec![4, 5]))
    );
    // The scalar constant stays a Constant node feeding the Add.
    assert_eq!(producer(&g, "y").outputs[0].ty, ty(DType::F32, &[st(2)]));
}

#[test]
fn tensor_decoding_every_dtype() {
    use snipjit_ir::onnx::decode_tensor;
    let cases: Vec<(snipjit_ir::onnx::proto::TensorProto, TensorData)> = vec![
        (
            t_f32("a", &[2], &[1.5, -0.0]),
            TensorData::F32(vec![1.5, -0.0]),
        ),
        (
            t_f32_raw("a", &[1, 2], &[3.0, f32::MAX]),
            TensorData::F32(vec![3.0, f32::MAX]),
        ),
        (
            t_i64("a", &[2], &[i64::MIN, 5]),
            TensorData::I64(vec![i64::MIN, 5]),
        ),
        (
            t_raw(
                "a",
                INT64,
                &[2],
                [-2i64, 9].iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
            TensorData::I64(vec![-2, 9]),
        ),
        (
            t_int32_field("a", INT32, &[3], &[-1, 0, 7]),
            TensorData::I32(vec![-1, 0, 7]),
        ),
        (
            t_raw("a", INT32, &[1], 123456i32.to_le_bytes().to_vec()),
            TensorData::I32(vec![123456]),
        ),
        (
            t_int32_field("a", INT8, &[2], &[-128, 127]),
            TensorData::I8(vec![-128, 127]),
        ),
        (
            t_raw("a", INT8, &[2], vec![0xff, 3]),
            TensorData::I8(vec![-1, 3]),
        ),
        (
            t_int32_field("a", UINT8, &[2], &[0, 255]),
            TensorData::U8(vec![0, 255]),
        ),
        (
            t_raw("a", UINT8, &[2], vec![200, 1]),
            TensorData::U8(vec![200, 1]),
        ),
        (
            t_int32_field("a", BOOL, &[3], &[1, 0, 1]),
            TensorData::Bool(vec![true, false, true]),
        ),
        (
            t_raw("a", BOOL, &[2], vec![0, 1]),
            TensorData::Bool(vec![false, true]),
        ),
        (
            t_int32_field(
                "a",
                FLOAT16,
                &[2],
                &[
                    f16::from_f32(1.5).to_bits() as i32,
                    f16::from_f32(-2.0).to_bits() as i32,
                ],
            ),
            TensorData::F16(vec![f16::from_f32(1.5), f16::from_f32(-2.0)]),
        ),
        (
            t_raw(
                "a",
                FLOAT16,
                &[1],
                f16::from_f32(0.25).to_bits().to_le_bytes().to_vec(),
            ),
            TensorData::F16(vec![f16::from_f32(0.25)]),
        ),
        (
            t_int32_field(
                "a",
                BFLOAT16,
                &[1],
                &[bf16::from_f32(-3.0).to_bits() as i32],
            ),
            TensorData::BF16(vec![bf16::from_f32(-3.0)]),
        ),
        (
            t_raw(
                "a",
                BFLOAT16,
                &[1],
                bf16::from_f32(7.0).to_bits().to_le_bytes().to_vec(),
            ),
            TensorData::BF16(vec![bf16::from_f32(7.0)]),
        ),
        (t_f32("empty", &[0, 3], &[]), TensorData::F32(vec![])),
    ];
    for (proto, want) in cases {
        let t = decode_tensor(&proto).unwrap_or_else(|e| panic!("{proto:?}: {e}"));
        assert_eq!(t.data, want);
        let dims: Vec<usize> = proto.dims.iter().map(|&d| d as usize).collect();
        assert_eq!(t.shape, dims);
    }
}

#[test]
fn integer_and_16_bit_graphs_import() {
    let mut b = ModelBuilder::new(18);
    b.input("x", BFLOAT16, &["N", "4"])
        .input("y", FLOAT16, &["N", "4"])
        .input("i", INT8, &["4"])
        .input("u", UINT8, &["4"])
        .node("Relu", "", &["x"], &["rx"], vec![])
        .node(
            "Cast",
            "",
            &["y"],
            &["cy"],
            vec![a_int("to", BFLOAT16 as i64)],
        )
        .node("Add", "", &["rx", "cy"], &["s"], vec![])
        .node("Cast", "", &["i"], &["iu"], vec![a_int("to", UINT8 as i64)])
        .node("Max", "", &["iu", "u"], &["m"], vec![])
        .output("s")
        .output("m");
    let g = ok(&b);
    assert_eq!(
        producer(&g, "s").outputs[0].ty,
        ty(DType::BF16, &[Dim::sym("N"), st(4)])
    );
    assert_eq!(producer(&g, "m").outputs[0].ty, ty(DType::U8, &[st(4)]));
}

#[test]
fn attention_block_3d_with_mask_and_scale() {
    // softmax(q @ k^T * scale + mask) @ v with q, k, v: [B*H, S, D] and an additive mask.
    let mut b = ModelBuilder::new(18);
    b.input("q", FLOAT, &["BH", "S", "32"])
        .input("k", FLOAT, &["BH", "S", "32"])
        .input("v", FLOAT, &["BH", "S", "32"])
        .input("mask", BOOL, &["1", "S", "S"])
        .initializer(t_f32("scale", &[], &[0.17677669]))
        .initializer(t_f32("neg", &[], &[f32::NEG_INFINITY]))
        .node(
            "Transpose",
            "kt",
            &["k"],
            &["kt"],
            vec![a_ints("perm", &[0, 2, 1])],
        )
        .node("MatMul", "qk", &["q", "kt"], &["s"], vec![])
        .node("Mul", "scale", &["s", "scale"], &["ss"], vec![])
        .node("Where", "mask", &["mask", "ss", "neg"], &["sm"], vec![])
        .node(
            "Softmax",
            "softmax",
            &["sm"],
            &["p"],
            vec![a_int("axis", -1)],
        )
        .node("MatMul", "pv", &["p", "v"], &["o"], vec![])
        .output_typed("o", FLOAT, &["BH", "S", "32"]);
    let g = ok(&b);
    let o = producer(&g, "o");
    let sym = Dim::sym;
    assert_eq!(
        o.outputs[0].ty,
        ty(DType::F32, &[sym("BH"), sym("S"), st(32)])
    );
    assert_eq!(compute_ops(&g).len(), 6);
    assert_eq!(
        producer(&g, "sm").outputs[0].ty,
        ty(DType::F32, &[sym("BH"), sym("S"), sym("S")])
    );
    let _ = Shape::scalar();
}
