//! Graphs built with the API print to text that parses back to the same graph,
//! bit-exactly: every op and attribute, every dtype, every kind of dim, special
//! floats, multi-output and nested Subgraph nodes, odd names and arena orders.

mod rng;
use rng::Rng;

use half::{bf16, f16};
use snipjit_ir::infer::infer_op;
use snipjit_ir::text::{parse, print};
use snipjit_ir::{
    BinaryOp, DType, Dim, GeluApprox, Graph, Node, NodeId, Op, Output, ReduceKind, Shape, Subgraph,
    SubgraphKind, Tensor, TensorData, TensorType, UnaryOp, ValueRef, verify,
};

fn ty(dtype: DType, dims: &[Dim]) -> TensorType {
    TensorType::new(dtype, dims.iter().cloned().collect())
}

fn s(n: usize) -> Dim {
    Dim::Static(n)
}

fn n() -> Dim {
    Dim::sym("N")
}

fn any() -> Dim {
    Dim::Dynamic(None)
}

fn op(g: &mut Graph, name: &str, o: Op, inputs: &[ValueRef]) -> ValueRef {
    g.add_op(name, o, inputs).unwrap_or_else(|e| panic!("{e}"))
}

fn constant(g: &mut Graph, name: &str, shape: &[usize], data: TensorData) -> ValueRef {
    op(
        g,
        name,
        Op::Constant(Tensor::new(shape.to_vec(), data).unwrap()),
        &[],
    )
}

/// Adds a Subgraph node with one output per body result, types inferred.
fn subgraph(
    g: &mut Graph,
    node: &str,
    outs: &[&str],
    kind: SubgraphKind,
    body: Graph,
    inputs: &[ValueRef],
) -> NodeId {
    let o = Op::Subgraph(Box::new(Subgraph { kind, body }));
    let tys = infer_op(g, &o, inputs).unwrap_or_else(|e| panic!("{node}: {e}"));
    assert_eq!(tys.len(), outs.len());
    g.add_node(Node {
        name: node.into(),
        op: o,
        inputs: inputs.to_vec(),
        outputs: outs
            .iter()
            .zip(tys)
            .map(|(n, ty)| Output {
                name: n.to_string(),
                ty,
            })
            .collect(),
    })
}

/// Bit-exact graph equality (`==` fails on NaN and cannot tell -0 from 0).
fn same(a: &Graph, b: &Graph, at: &str) -> Result<(), String> {
    let ctx = |m: String| Err(format!("{at}: {m}"));
    if a.name != b.name
        || a.inputs != b.inputs
        || a.outputs != b.outputs
        || a.nodes.len() != b.nodes.len()
    {
        return ctx(format!(
            "graph header differs: {:?} {:?} {:?} {} vs {:?} {:?} {:?} {}",
            a.name,
            a.inputs,
            a.outputs,
            a.nodes.len(),
            b.name,
            b.inputs,
            b.outputs,
            b.nodes.len()
        ));
    }
    for (i, (x, y)) in a.nodes.iter().zip(&b.nodes).enumerate() {
        if x.name != y.name || x.inputs != y.inputs || x.outputs != y.outputs {
            return ctx(format!("node {i} differs:\n{x:?}\n{y:?}"));
        }
        let ok = match (&x.op, &y.op) {
            (Op::Constant(p), Op::Constant(q)) => {
                p.shape == q.shape && data_bits(&p.data) == data_bits(&q.data)
            }
            (Op::Unary(p), Op::Unary(q)) => p.name() == q.name() && unary_bits(p) == unary_bits(q),
            (Op::Subgraph(p), Op::Subgraph(q)) => {
                if p.kind != q.kind {
                    return ctx(format!("node {i}: subgraph kind differs"));
                }
                same(&p.body, &q.body, &format!("{at}/{}", x.name))?;
                true
            }
            (p, q) => p == q,
        };
        if !ok {
            return ctx(format!("node {i} op differs:\n{:?}\n{:?}", x.op, y.op));
        }
    }
    Ok(())
}

fn data_bits(d: &TensorData) -> (DType, Vec<u64>) {
    let v = match d {
        TensorData::F32(v) => v.iter().map(|x| x.to_bits() as u64).collect(),
        TensorData::BF16(v) => v.iter().map(|x| x.to_bits() as u64).collect(),
        TensorData::F16(v) => v.iter().map(|x| x.to_bits() as u64).collect(),
        TensorData::I8(v) => v.iter().map(|&x| x as u64).collect(),
        TensorData::U8(v) => v.iter().map(|&x| x as u64).collect(),
        TensorData::I32(v) => v.iter().map(|&x| x as u64).collect(),
        TensorData::I64(v) => v.iter().map(|&x| x as u64).collect(),
        TensorData::Bool(v) => v.iter().map(|&x| x as u64).collect(),
    };
    (d.dtype(), v)
}

fn unary_bits(u: &UnaryOp) -> Vec<u32> {
    match *u {
        UnaryOp::Clamp { min, max } => vec![min.to_bits(), max.to_bits()],
        UnaryOp::Swish { beta } => vec![beta.to_bits()],
        UnaryOp::Elu { alpha } | UnaryOp::LeakyRelu { alpha } => vec![alpha.to_bits()],
        _ => vec![],
    }
}

/// print -> parse gives the same graph; printing that again gives the same text.
fn round_trip(g: &Graph) -> String {
    verify(g).unwrap_or_else(|e| panic!("test graph is invalid: {e}"));
    let text = print(g);
    let back = parse(&text, "roundtrip.sg").unwrap_or_else(|e| panic!("{e}\n--- text ---\n{text}"));
    if let Err(m) = same(g, &back, &g.name) {
        panic!("{m}\n--- text ---\n{text}");
    }
    assert_eq!(print(&back), text);
    text
}

#[test]
fn every_binary_op() {
    let mut g = Graph::new("binary");
    let a = g.add_input("a", ty(DType::F32, &[n(), s(8)]));
    let b = g.add_input("b", ty(DType::F32, &[s(1), s(8)]));
    let p = g.add_input("p", ty(DType::Bool, &[n(), s(8)]));
    let q = g.add_input("q", ty(DType::Bool, &[s(8)]));
    for bop in BinaryOp::ALL {
        let name = format!("r_{}", bop.name());
        let v = if bop.is_logical() {
            op(&mut g, &name, Op::Binary(bop), &[p, q])
        } else {
            op(&mut g, &name, Op::Binary(bop), &[a, b])
        };
        g.add_output(format!("out_{}", bop.name()), v);
    }
    let text = round_trip(&g);
    assert!(
        text.contains("r_LessOrEqual: bool[N, 8] = LessOrEqual(a, b)\n"),
        "{text}"
    );
    assert!(text.contains("r_Xor: bool[N, 8] = Xor(p, q)\n"), "{text}");
    assert!(text.contains("out_Add = r_Add, "), "{text}");
}

#[test]
fn every_unary_op_and_parameter() {
    let mut g = Graph::new("unary");
    let x = g.add_input("x", ty(DType::F32, &[n(), any(), s(3)]));
    let m = g.add_input("m", ty(DType::Bool, &[s(3)]));
    let mut all: Vec<UnaryOp> = UnaryOp::ALL.to_vec();
    all.extend([
        UnaryOp::Clamp { min: 0.0, max: 6.0 },
        UnaryOp::Clamp {
            min: f32::NEG_INFINITY,
            max: -0.0,
        },
        UnaryOp::Swish { beta: 1.5 },
        UnaryOp::Elu { alpha: 0.25 },
        UnaryOp::LeakyRelu { alpha: 0.2 },
        UnaryOp::LeakyRelu {
            alpha: f32::from_bits(0x7fa0_0001),
        },
        UnaryOp::Gelu(GeluApprox::Tanh),
    ]);
    for (i, u) in all.into_iter().enumerate() {
        let input = if u == UnaryOp::Not { m } else { x };
        let v = op(&mut g, &format!("u{i}"), Op::Unary(u), &[input]);
        g.add_output(format!("o{i}"), v);
    }
    let text = round_trip(&g);
    for line in [
        "u3: f32[N, ?, 3] = Clamp(x, min=-1, max=1)",
        "u13: f32[N, ?, 3] = Swish(x)",
        "u17: f32[N, ?, 3] = Elu(x)",
        "u18: f32[N, ?, 3] = LeakyRelu(x)",
        "u24: bool[3] = Not(m)",
        "u25: f32[N, ?, 3] = Clamp(x, min=0, max=6)",
        "u26: f32[N, ?, 3] = Clamp(x, min=-inf, max=-0)",
        "u27: f32[N, ?, 3] = Swish(x, beta=1.5)",
        "u28: f32[N, ?, 3] = Elu(x, alpha=0.25)",
        "u29: f32[N, ?, 3] = LeakyRelu(x, alpha=0.2)",
        "u30: f32[N, ?, 3] = LeakyRelu(x, alpha=nan(0x7fa00001))",
        "u11: f32[N, ?, 3] = GeluErf(x)",
        "u12: f32[N, ?, 3] = GeluTanh(x)",
    ] {
        assert!(
            text.contains(&format!("  {line}\n")),
            "missing {line}\n{text}"
        );
    }
}

#[test]
fn shape_and_data_movement_ops() {
    let mut g = Graph::new("movement");
    let x = g.add_input("x", ty(DType::F32, &[Dim::sym("B"), s(4), s(6)]));
    let c = g.add_input("c", ty(DType::Bool, &[s(4), s(1)]));
    let y = g.add_input("y", ty(DType::F32, &[s(6)]));
    let w = g.add_input("w", ty(DType::F32, &[Dim::sym("B"), s(6), s(5)]));
    let idx32 = g.add_input("idx32", ty(DType::I32, &[s(2)]));
    let idx64 = constant(&mut g, "idx64", &[2, 2], TensorData::I64(vec![0, 3, 2, 1]));
    let mut outs = vec![
        op(&mut g, "sel", Op::Select, &[c, x, y]),
        op(&mut g, "soft", Op::Softmax { axis: -1 }, &[x]),
        op(&mut g, "soft0", Op::Softmax { axis: 0 }, &[x]),
        op(
            &mut g,
            "tr",
            Op::Transpose {
                perm: vec![0, 2, 1],
            },
            &[x],
        ),
        op(&mut g, "unsq", Op::Unsqueeze { axes: vec![0, -1] }, &[x]),
        op(&mut g, "shape", Op::ShapeOf, &[x]),
        op(&mut g, "gather32", Op::Gather { axis: 1 }, &[x, idx32]),
        op(&mut g, "gather64", Op::Gather { axis: -1 }, &[x, idx64]),
        op(&mut g, "same", Op::Identity, &[x]),
        op(&mut g, "cat", Op::Concat { axis: 1 }, &[x, x, x]),
    ];
    for (i, (ta, tb)) in [(false, false), (true, false), (false, true), (true, true)]
        .into_iter()
        .enumerate()
    {
        let a = if ta {
            op(
                &mut g,
                &format!("xt{i}"),
                Op::Transpose {
                    perm: vec![0, 2, 1],
                },
                &[x],
            )
        } else {
            x
        };
        let b = if tb {
            op(
                &mut g,
                &format!("wt{i}"),
                Op::Transpose {
                    perm: vec![0, 2, 1],
                },
                &[w],
            )
        } else {
            w
        };
        outs.push(op(
            &mut g,
            &format!("mm{i}"),
            Op::MatMul {
                transpose_a: ta,
                transpose_b: tb,
            },
            &[a, b],
        ));
    }
    let ones = op(&mut g, "ones", Op::Unsqueeze { axes: vec![1] }, &[y]);
    outs.push(op(&mut g, "sq_all", Op::Squeeze { axes: vec![] }, &[ones]));
    outs.push(op(&mut g, "sq1", Op::Squeeze { axes: vec![-1] }, &[ones]));
    for kind in ReduceKind::ALL {
        for (axes, keep) in [(vec![], false), (vec![-1], true), (vec![0, 2], false)] {
            let name = format!("{}_{}_{keep}", kind.name(), axes.len());
            outs.push(op(
                &mut g,
                &name,
                Op::Reduce {
                    kind,
                    axes,
                    keep_dims: keep,
                },
                &[x],
            ));
        }
    }
    let shape = constant(&mut g, "shape_c", &[3], TensorData::I64(vec![0, -1, 2]));
    outs.push(op(
        &mut g,
        "rs",
        Op::Reshape { allow_zero: false },
        &[x, shape],
    ));
    let shape2 = constant(&mut g, "shape_z", &[2], TensorData::I64(vec![6, 1]));
    let xs = op(&mut g, "xs", Op::Identity, &[y]);
    let x24 = op(&mut g, "x16", Op::Unsqueeze { axes: vec![0] }, &[xs]);
    outs.push(op(
        &mut g,
        "rz",
        Op::Reshape { allow_zero: true },
        &[x24, shape2],
    ));
    let bshape = constant(&mut g, "bshape", &[3], TensorData::I64(vec![2, 4, 6]));
    outs.push(op(&mut g, "bc", Op::Broadcast, &[y, bshape]));
    let dyn_shape = op(&mut g, "dyn_shape", Op::ShapeOf, &[x]);
    outs.push(op(&mut g, "bc_dyn", Op::Broadcast, &[y, dyn_shape]));
    for to in DType::ALL {
        outs.push(op(&mut g, &format!("to_{to}"), Op::Convert { to }, &[x]));
    }
    for (i, v) in outs.into_iter().enumerate() {
        g.add_output(format!("out{i}"), v);
    }
    let text = round_trip(&g);
    for line in [
        "sel: f32[B, 4, 6] = Select(c, x, y)",
        "soft: f32[B, 4, 6] = Softmax(x, axis=-1)",
        "tr: f32[B, 6, 4] = Transpose(x, perm=[0, 2, 1])",
        "unsq: f32[1, B, 4, 6, 1] = Unsqueeze(x, axes=[0, -1])",
        "shape: i64[3] = ShapeOf(x)",
        "gather64: f32[B, 4, 2, 2] = Gather(x, idx64, axis=-1)",
        "cat: f32[B, 12, 6] = Concat(x, x, x, axis=1)",
        "mm0: f32[B, 4, 5] = MatMul(x, w)",
        "mm1: f32[B, 4, 5] = MatMul(xt1, w, transpose_a=true)",
        "mm2: f32[B, 4, 5] = MatMul(x, wt2, transpose_b=true)",
        "mm3: f32[B, 4, 5] = MatMul(xt3, wt3, transpose_a=true, transpose_b=true)",
        "sq_all: f32[6] = Squeeze(ones, axes=[])",
        "ReduceSum_0_false: f32[] = ReduceSum(x, axes=[])",
        "ReduceMax_1_true: f32[B, 4, 1] = ReduceMax(x, axes=[-1], keep_dims=true)",
        "ReduceMean_2_false: f32[4] = ReduceMean(x, axes=[0, 2])",
        "shape_c: i64[3] = Constant([0, -1, 2])",
        "rs: f32[B, ?, 2] = Reshape(x, shape_c)",
        "rz: f32[6, 1] = Reshape(x16, shape_z, allow_zero=true)",
        "bc: f32[2, 4, 6] = Broadcast(y, bshape)",
        "bc_dyn: f32[?, ?, 6] = Broadcast(y, dyn_shape)",
        "to_bf16: bf16[B, 4, 6] = Convert(x, to=bf16)",
        "to_bool: bool[B, 4, 6] = Convert(x, to=bool)",
    ] {
        assert!(
            text.contains(&format!("  {line}\n")),
            "missing {line}\n{text}"
        );
    }
}

#[test]
fn constants_of_every_dtype_round_trip_bit_exactly() {
    let mut g = Graph::new("constants");
    let special_f32 = vec![
        0.0,
        -0.0,
        1.0,
        -1.5,
        0.1,
        1.0 / 3.0,
        f32::MAX,
        f32::MIN,
        f32::MIN_POSITIVE,
        f32::from_bits(1),
        f32::from_bits(0x8000_0001),
        f32::from_bits(0x007f_ffff),
        f32::EPSILON,
        16_777_217.0,
        1e20,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        f32::from_bits(0x7f80_0001),
        f32::from_bits(0xffff_ffff),
    ];
    let bf: Vec<bf16> = [
        0x0000u16, 0x8000, 0x0001, 0x3f80, 0x3dcd, 0x7f7f, 0xff7f, 0x7f80, 0xff80, 0x7fc0, 0x7f81,
        0xffc1,
    ]
    .into_iter()
    .map(bf16::from_bits)
    .collect();
    let hf: Vec<f16> = [
        0x0000u16, 0x8000, 0x0001, 0x03ff, 0x3c00, 0x2e66, 0x7bff, 0xfbff, 0x7c00, 0xfc00, 0x7e00,
        0x7c01, 0xfe01,
    ]
    .into_iter()
    .map(f16::from_bits)
    .collect();
    let tensors = [
        TensorData::F32(special_f32.clone()),
        TensorData::BF16(bf.clone()),
        TensorData::F16(hf.clone()),
        TensorData::I8(vec![i8::MIN, -1, 0, 1, i8::MAX]),
        TensorData::U8(vec![0, 1, 128, u8::MAX]),
        TensorData::I32(vec![i32::MIN, -7, 0, i32::MAX]),
        TensorData::I64(vec![i64::MIN, -1, 0, i64::MAX]),
        TensorData::Bool(vec![true, false, true]),
    ];
    for (i, t) in tensors.into_iter().enumerate() {
        let len = t.len();
        let dtype = t.dtype();
        let v = constant(&mut g, &format!("t{i}"), &[len], t);
        g.add_output(format!("t{i}_out"), v);
        // A scalar of the same dtype and a 2-D one.
        let scalar = TensorData::zeros(dtype, 1);
        let v = constant(&mut g, &format!("s{i}"), &[], scalar);
        g.add_output(format!("s{i}_out"), v);
        let m = TensorData::zeros(dtype, 6);
        let v = constant(&mut g, &format!("m{i}"), &[2, 3], m);
        g.add_output(format!("m{i}_out"), v);
    }
    for (i, &f) in special_f32.iter().enumerate() {
        let v = constant(&mut g, &format!("f{i}"), &[], TensorData::F32(vec![f]));
        g.add_output(format!("f{i}_out"), v);
    }
    let v = constant(&mut g, "empty", &[0, 3], TensorData::F32(vec![]));
    g.add_output("empty_out", v);
    let text = round_trip(&g);
    for line in [
        "f1: f32[] = Constant(-0)",
        "f15: f32[] = Constant(inf)",
        "f16: f32[] = Constant(-inf)",
        "f17: f32[] = Constant(nan)",
        "f18: f32[] = Constant(nan(0xffc00000))",
        "f9: f32[] = Constant(1e-45)",
        "s0: f32[] = Constant(0)",
        "m7: bool[2, 3] = Constant([false, false, false, false, false, false])",
        "t3: i8[5] = Constant([-128, -1, 0, 1, 127])",
        "t6: i64[4] = Constant([-9223372036854775808, -1, 0, 9223372036854775807])",
        "empty: f32[0, 3] = Constant([])",
    ] {
        assert!(
            text.contains(&format!("  {line}\n")),
            "missing {line}\n{text}"
        );
    }
}

fn silu_body(name: &str, dims: &[Dim]) -> Graph {
    let mut b = Graph::new(name);
    let x = b.add_input("x", ty(DType::F32, dims));
    let s = op(&mut b, "s", Op::Unary(UnaryOp::Sigmoid), &[x]);
    let y = op(&mut b, "y", Op::Binary(BinaryOp::Mul), &[x, s]);
    b.add_output("y", y);
    b
}

#[test]
fn subgraphs_nested_and_multi_output() {
    let dims = [n(), s(64)];
    let mut g = Graph::new("fused");
    let x = g.add_input("x", ty(DType::F32, &dims));
    let z = g.add_input("z", ty(DType::F32, &dims));

    // Elementwise body with two outputs, which itself holds a nested subgraph.
    let mut body = Graph::new("ew_body");
    let bx = body.add_input("a", ty(DType::F32, &dims));
    let bz = body.add_input("b", ty(DType::F32, &dims));
    let inner = subgraph(
        &mut body,
        "inner_sg",
        &["act"],
        SubgraphKind::Elementwise,
        silu_body("inner", &dims),
        &[bx],
    );
    let act = ValueRef::new(inner, 0);
    let sum = op(&mut body, "sum", Op::Binary(BinaryOp::Add), &[act, bz]);
    body.add_output("first", act);
    body.add_output("second", sum);
    let sg = subgraph(
        &mut g,
        "sg_ew",
        &["p", "q"],
        SubgraphKind::Elementwise,
        body,
        &[x, z],
    );

    // Softmax kind.
    let mut sm = Graph::new("softmax_body");
    let i = sm.add_input("i", ty(DType::F32, &dims));
    let o = op(&mut sm, "o", Op::Softmax { axis: -1 }, &[i]);
    sm.add_output("o", o);
    let sm_node = subgraph(
        &mut g,
        "r",
        &["r"],
        SubgraphKind::Softmax,
        sm,
        &[ValueRef::new(sg, 1)],
    );

    // MHA kind over 4-D tensors.
    let qd = [Dim::sym("B"), s(2), Dim::sym("S"), s(8)];
    let q = g.add_input("qin", ty(DType::F32, &qd));
    let mut mha = Graph::new("mha_body");
    let bq = mha.add_input("q", ty(DType::F32, &qd));
    let sc = op(
        &mut mha,
        "sc",
        Op::MatMul {
            transpose_a: false,
            transpose_b: true,
        },
        &[bq, bq],
    );
    let pr = op(&mut mha, "pr", Op::Softmax { axis: -1 }, &[sc]);
    let ctx = op(
        &mut mha,
        "ctx",
        Op::MatMul {
            transpose_a: false,
            transpose_b: false,
        },
        &[pr, bq],
    );
    mha.add_output("ctx", ctx);
    let m = subgraph(&mut g, "attn", &["attn_out"], SubgraphKind::Mha, mha, &[q]);

    // A subgraph with no outputs (and so no default node name).
    let mut empty = Graph::new("");
    empty.add_input("e", ty(DType::F32, &dims));
    subgraph(&mut g, "", &[], SubgraphKind::Elementwise, empty, &[x]);

    g.add_output("p", ValueRef::new(sg, 0));
    g.add_output("r", ValueRef::new(sm_node, 0));
    g.add_output("attn", ValueRef::new(m, 0));
    let text = round_trip(&g);
    assert!(
        text.contains(
            "  p: f32[N, 64], q: f32[N, 64] = Subgraph(x, z, kind=elementwise) @sg_ew graph ew_body(a: f32[N, 64], b: f32[N, 64]) {\n    act: f32[N, 64] = Subgraph(a, kind=elementwise) @inner_sg graph inner(x: f32[N, 64]) {\n      s: f32[N, 64] = Sigmoid(x)\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("    return first = act, second = sum\n  }\n"),
        "{text}"
    );
    assert!(
        text.contains("  r: f32[N, 64] = Subgraph(q, kind=softmax) graph softmax_body("),
        "{text}"
    );
    assert!(
        text.contains("= Subgraph(qin, kind=mha) @attn graph mha_body(q: f32[B, 2, S, 8]) {\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "  Subgraph(x, kind=elementwise) graph \"\"(e: f32[N, 64]) {\n    return\n  }\n"
        ),
        "{text}"
    );
    assert!(
        text.ends_with("  return p, r, attn = attn_out\n}\n"),
        "{text}"
    );
}

#[test]
fn odd_names_and_dims_are_quoted() {
    let weird_dim = Dim::sym("batch size");
    let num_dim = Dim::sym("3");
    let mut g = Graph::new("odd \"graph\"");
    let x = g.add_input(
        "input:0",
        ty(
            DType::F32,
            &[weird_dim.clone(), num_dim.clone(), Dim::sym("")],
        ),
    );
    let a = op(
        &mut g,
        "/enc/layer.0/Relu_output_0",
        Op::Unary(UnaryOp::Relu),
        &[x],
    );
    let b = op(
        &mut g,
        "tab\tnew\nline\\é\u{7}",
        Op::Unary(UnaryOp::Neg),
        &[a],
    );
    let c = op(&mut g, "", Op::Unary(UnaryOp::Abs), &[b]);
    // Keywords are fine as names.
    let d = op(&mut g, "input", Op::Unary(UnaryOp::Exp), &[c]);
    let e = op(&mut g, "output", Op::Unary(UnaryOp::Exp), &[d]);
    let f = op(&mut g, "return", Op::Unary(UnaryOp::Exp), &[e]);
    let h = op(&mut g, "graph", Op::Unary(UnaryOp::Exp), &[f]);
    let t = op(&mut g, "true", Op::Binary(BinaryOp::Add), &[h, h]);
    g.add_output("output", t);
    g.add_output("return", f);
    g.add_output("", c);
    let text = round_trip(&g);
    assert!(
        text.starts_with(
            "graph \"odd \\\"graph\\\"\"(\"input:0\": f32[\"batch size\", \"3\", \"\"]) {\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("  \"tab\\tnew\\nline\\\\é\\u{7}\": f32["),
        "{text}"
    );
    assert!(text.contains("  input: f32["), "{text}");
    assert!(text.contains("  return: f32["), "{text}");
    assert!(
        text.contains("  true: f32[\"batch size\", \"3\", \"\"] = Add(graph, graph)\n"),
        "{text}"
    );
    assert!(
        text.contains("  return output = true, return, \"\"\n"),
        "{text}"
    );
}

#[test]
fn node_names_that_differ_from_output_names() {
    let mut g = Graph::new("named");
    let x = g.add_input("x", ty(DType::F32, &[s(4)]));
    g.node_mut(x.node).name = "x_param".into();
    let y = op(&mut g, "y", Op::Unary(UnaryOp::Relu), &[x]);
    g.node_mut(y.node).name = "relu node".into();
    let r = g.add_output("out", y);
    g.node_mut(r).name = "result_node".into();
    let text = round_trip(&g);
    assert_eq!(
        text,
        "graph named(x: f32[4] @x_param) {\n  y: f32[4] = Relu(x) @\"relu node\"\n  return out = y @result_node\n}\n"
    );
}

#[test]
fn interleaved_inputs_and_outputs_keep_their_arena_order() {
    let mut g = Graph::new("interleaved");
    let a = g.add_input("a", ty(DType::F32, &[n()]));
    let r = op(&mut g, "r", Op::Unary(UnaryOp::Relu), &[a]);
    g.add_output("early", r);
    let b = g.add_input("b", ty(DType::F32, &[n()]));
    let c = g.add_input("c", ty(DType::F32, &[n()]));
    let s = op(&mut g, "s", Op::Binary(BinaryOp::Add), &[r, b]);
    let t = op(&mut g, "t", Op::Binary(BinaryOp::Add), &[s, c]);
    g.add_output("late", t);
    g.add_output("late2", s);
    let text = round_trip(&g);
    assert_eq!(
        text,
        "graph interleaved(a: f32[N], b: f32[N], c: f32[N]) {\n  r: f32[N] = Relu(a)\n  output 0\n  input b\n  input c\n  s: f32[N] = Add(r, b)\n  t: f32[N] = Add(s, c)\n  return early = r, late = t, late2 = s\n}\n"
    );

    // Input and output order that differs from arena order.
    let mut g = Graph::new("permuted");
    let a = g.add_input("a", ty(DType::F32, &[n()]));
    let b = g.add_input("b", ty(DType::F32, &[n()]));
    let s = op(&mut g, "s", Op::Binary(BinaryOp::Sub), &[a, b]);
    g.add_output("x", s);
    g.add_output("y", a);
    g.inputs.reverse();
    g.outputs.reverse();
    let text = round_trip(&g);
    assert_eq!(
        text,
        "graph permuted(b: f32[N], a: f32[N]) {\n  input b\n  s: f32[N] = Sub(a, b)\n  output 1\n  return y = a, x = s\n}\n"
    );
}

#[test]
fn empty_graph() {
    let g = Graph::new("nothing");
    assert_eq!(round_trip(&g), "graph nothing() {\n  return\n}\n");
    let mut g = Graph::new("scalar");
    let x = g.add_input("x", TensorType::new(DType::I32, Shape::scalar()));
    g.add_output("x", x);
    assert_eq!(round_trip(&g), "graph scalar(x: i32[]) {\n  return x\n}\n");
}

/// A random value name, sometimes one that needs quoting.
fn random_name(rng: &mut Rng, i: usize) -> String {
    match rng.below(6) {
        0 => format!("v{i}"),
        1 => format!("/blk.{i}/out-0"),
        2 => format!("t {i}:\"q\""),
        3 => format!("é{i}\\"),
        4 => format!("input{i}"),
        _ => format!("_{i}"),
    }
}

/// Random elementwise DAGs over f32/bf16/f16: random inputs added at random arena
/// positions, scalar and broadcast constants with arbitrary bit patterns, unary and
/// binary ops, outputs added anywhere, random node names.
#[test]
fn random_graphs_round_trip() {
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let dim_pool = [
        Dim::sym("N"),
        Dim::Dynamic(None),
        Dim::Static(1),
        Dim::Static(7),
        Dim::sym("batch size"),
    ];
    for case in 0..300 {
        let dtype = [DType::F32, DType::BF16, DType::F16][rng.below(3)];
        let rank = rng.below(4);
        let dims: Vec<Dim> = (0..rank)
            .map(|_| dim_pool[rng.below(dim_pool.len())].clone())
            .collect();
        let full = ty(dtype, &dims);
        let mut g = Graph::new(format!("case{case}"));
        let mut values = vec![g.add_input("in0", full.clone())];
        let mut k = 0;
        for _ in 0..rng.below(12) + 1 {
            k += 1;
            let name = random_name(&mut rng, k);
            match rng.below(6) {
                0 => values.push(g.add_input(name, full.clone())),
                1 => {
                    let bits = rng.next();
                    let data = match dtype {
                        DType::F32 => TensorData::F32(vec![f32::from_bits(bits as u32)]),
                        DType::BF16 => TensorData::BF16(vec![bf16::from_bits(bits as u16)]),
                        _ => TensorData::F16(vec![f16::from_bits(bits as u16)]),
                    };
                    values.push(constant(&mut g, &name, &[], data));
                }
                2 => {
                    let a = values[rng.below(values.len())];
                    let us = [
                        UnaryOp::Relu,
                        UnaryOp::Exp,
                        UnaryOp::Gelu(GeluApprox::Erf),
                        UnaryOp::Clamp {
                            min: f32::from_bits(rng.next() as u32),
                            max: f32::from_bits(rng.next() as u32),
                        },
                        UnaryOp::Swish {
                            beta: f32::from_bits(rng.next() as u32),
                        },
                    ];
                    values.push(op(&mut g, &name, Op::Unary(us[rng.below(us.len())]), &[a]));
                }
                3 => {
                    let v = values[rng.below(values.len())];
                    let r = g.add_output(name, v);
                    if rng.below(3) == 0 {
                        g.node_mut(r).name = format!("res{k}");
                    }
                }
                _ => {
                    let a = values[rng.below(values.len())];
                    let b = values[rng.below(values.len())];
                    let bop = BinaryOp::ALL[rng.below(10)];
                    let v = op(&mut g, &name, Op::Binary(bop), &[a, b]);
                    if rng.below(4) == 0 {
                        g.node_mut(v.node).name = format!("node {k}");
                    }
                    values.push(v);
                }
            }
        }
        let last = *values.last().unwrap();
        g.add_output("final", last);
        if rng.below(4) == 0 {
            g.inputs.reverse();
        }
        round_trip(&g);
    }
}
