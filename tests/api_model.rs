//! The public facade: loading, compiling and running models, and the errors that
//! name the offending input.

use std::sync::Arc;

use snipjit::ir::{BinaryOp, Op, Subgraph, SubgraphKind, UnaryOp};
use snipjit::{
    CompiledModel, Compiler, DType, Dim, Error, Graph, IsaChoice, Options, Shape, Tensor,
    TensorData, TensorType,
};

fn ty(dtype: DType, dims: &[Dim]) -> TensorType {
    TensorType::new(dtype, Shape::from_iter(dims.iter().cloned()))
}

/// `out = (x - y) * scale` for `x: f32[N, 4]`, `y: f32[N, 1]`, `scale: f32[]`.
fn sub_scale() -> Graph {
    let mut g = Graph::new("sub_scale");
    let x = g.add_input("x", ty(DType::F32, &[Dim::sym("N"), Dim::Static(4)]));
    let y = g.add_input("y", ty(DType::F32, &[Dim::sym("N"), Dim::Static(1)]));
    let s = g.add_input("scale", ty(DType::F32, &[]));
    let d = g.add_op("d", Op::Binary(BinaryOp::Sub), &[x, y]).unwrap();
    let o = g.add_op("o", Op::Binary(BinaryOp::Mul), &[d, s]).unwrap();
    g.add_output("out", o);
    g
}

fn compile(g: Graph) -> CompiledModel {
    Compiler::new(Options::default())
        .unwrap()
        .compile(g)
        .unwrap()
}

fn f32s(shape: &[usize], v: Vec<f32>) -> Tensor {
    Tensor::from_f32(shape, v).unwrap()
}

/// Inputs for `sub_scale` with N rows, and the expected output computed directly.
fn sub_scale_case(n: usize) -> (Vec<Tensor>, Tensor) {
    let x: Vec<f32> = (0..n * 4).map(|i| i as f32 * 0.5 - 3.0).collect();
    let y: Vec<f32> = (0..n).map(|i| i as f32 + 0.25).collect();
    let scale = -1.5f32;
    let want: Vec<f32> = (0..n * 4).map(|i| (x[i] - y[i / 4]) * scale).collect();
    (
        vec![
            f32s(&[n, 4], x),
            f32s(&[n, 1], y),
            Tensor::scalar_f32(scale),
        ],
        f32s(&[n, 4], want),
    )
}

#[test]
fn run_positional_and_named() {
    let m = compile(sub_scale());
    let names: Vec<&str> = m.inputs().iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["x", "y", "scale"]);
    assert_eq!(m.outputs().len(), 1);
    assert_eq!(m.outputs()[0].name, "out");
    assert_eq!(m.outputs()[0].ty.to_string(), "f32[N, 4]");

    for n in [1, 3, 17] {
        let (inputs, want) = sub_scale_case(n);
        assert_eq!(m.run(&inputs).unwrap(), vec![want.clone()]);
        let [x, y, s]: [Tensor; 3] = inputs.try_into().unwrap();
        let named = m.run_named([("scale", s), ("x", x), ("y", y)]).unwrap();
        assert_eq!(named, vec![want]);
    }
}

#[test]
fn zero_size_inputs_run() {
    let m = compile(sub_scale());
    let (inputs, want) = sub_scale_case(0);
    assert_eq!(want.shape, vec![0, 4]);
    assert_eq!(m.run(&inputs).unwrap(), vec![want]);
}

#[test]
fn input_errors_name_the_input() {
    let m = compile(sub_scale());
    let (ok, _) = sub_scale_case(2);
    let with = |i: usize, t: Tensor| {
        let mut v = ok.clone();
        v[i] = t;
        m.run(&v).unwrap_err()
    };

    let e = m.run(&ok[..2]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::InputCount {
                expected: 3,
                got: 2,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "the model takes 3 inputs ('x', 'y', 'scale'), got 2"
    );

    let e = with(
        1,
        Tensor::new(vec![2, 1], TensorData::I32(vec![1, 2])).unwrap(),
    );
    assert!(
        matches!(&e, Error::InputDType { name, expected: DType::F32, got: DType::I32 } if name == "y"),
        "{e}"
    );

    let e = with(0, f32s(&[8], vec![0.0; 8]));
    assert!(
        matches!(&e, Error::InputRank { name, .. } if name == "x"),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "input 'x': shape [8] has rank 1, the model expects [N, 4] (rank 2)"
    );

    let e = with(0, f32s(&[2, 5], vec![0.0; 10]));
    assert!(
        matches!(&e, Error::InputDim { name, axis: 1, expected: 4, got: 5, .. } if name == "x"),
        "{e}"
    );

    // N is 2 in x but 3 in y.
    let e = with(1, f32s(&[3, 1], vec![0.0; 3]));
    assert!(
        matches!(&e, Error::SymbolMismatch { name, axis: 0, symbol, got: 3, bound: 2, bound_by }
            if name == "y" && symbol == "N" && bound_by == "x"),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "input 'y': dim 0 ('N') is 3, but input 'x' has N = 2"
    );

    let e = with(2, f32s(&[1], vec![1.0]));
    assert!(
        matches!(&e, Error::InputRank { name, .. } if name == "scale"),
        "{e}"
    );

    // A hand-built tensor whose data does not fill its shape.
    let bad = Tensor {
        shape: vec![2, 4],
        data: TensorData::F32(vec![0.0; 7]),
    };
    let e = with(0, bad);
    assert!(
        matches!(&e, Error::MalformedTensor { name, expected: 8, got: 7, .. } if name == "x"),
        "{e}"
    );
}

#[test]
fn named_input_errors() {
    let m = compile(sub_scale());
    let (ok, _) = sub_scale_case(2);
    let named = |names: &[&'static str]| {
        let v: Vec<(&str, Tensor)> = names
            .iter()
            .zip(ok.iter().cycle())
            .map(|(n, t)| (*n, t.clone()))
            .collect();
        m.run_named(v).unwrap_err()
    };
    let e = named(&["x", "y"]);
    assert!(
        matches!(&e, Error::MissingInput { name, .. } if name == "scale"),
        "{e}"
    );
    assert_eq!(e.to_string(), "missing input 'scale' (f32[])");

    let e = named(&["x", "y", "scale", "bias"]);
    assert!(
        matches!(&e, Error::UnknownInput { name, .. } if name == "bias"),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "unknown input 'bias' (the model's inputs are: 'x', 'y', 'scale')"
    );

    let e = named(&["x", "x"]);
    assert!(
        matches!(&e, Error::DuplicateInput { name } if name == "x"),
        "{e}"
    );
}

#[test]
fn run_time_faults_are_interpreter_errors() {
    // Integer division by zero is a run-time fault, not a panic.
    let mut g = Graph::new("idiv");
    let a = g.add_input("a", ty(DType::I32, &[Dim::Static(2)]));
    let b = g.add_input("b", ty(DType::I32, &[Dim::Static(2)]));
    let q = g.add_op("q", Op::Binary(BinaryOp::Div), &[a, b]).unwrap();
    g.add_output("q", q);
    let m = compile(g);
    let t = |v: Vec<i32>| Tensor::new(vec![2], TensorData::I32(v)).unwrap();
    assert_eq!(
        m.run(&[t(vec![7, -9]), t(vec![2, 3])]).unwrap(),
        vec![t(vec![3, -3])]
    );
    let e = m.run(&[t(vec![7, 1]), t(vec![2, 0])]).unwrap_err();
    assert!(matches!(e, Error::Interp(_)), "{e}");
    assert!(e.to_string().contains("division by zero"), "{e}");
}

#[test]
fn options_are_validated() {
    let opts = |threads, isa| Options { threads, isa };
    assert!(matches!(
        Compiler::new(opts(0, IsaChoice::Auto)),
        Err(Error::Options(_))
    ));
    let e = Compiler::new(opts(257, IsaChoice::Auto)).unwrap_err();
    assert!(e.to_string().contains("too many threads"), "{e}");
    assert_eq!(
        Compiler::new(opts(256, IsaChoice::Auto))
            .unwrap()
            .options()
            .threads,
        256
    );
    for isa in [IsaChoice::Avx512, IsaChoice::Avx2] {
        match Compiler::new(opts(1, isa)) {
            Ok(_) => assert!(isa.is_supported()),
            Err(e) => {
                assert!(!isa.is_supported());
                eprintln!("note: {isa} is not supported on this CPU: {e}");
            }
        }
    }
    assert_eq!(Options::default(), opts(1, IsaChoice::Auto));
}

#[test]
fn invalid_graph_is_rejected_by_compile() {
    let mut g = sub_scale();
    // Make the Mul node read itself: a cycle.
    let mul = g
        .node_ids()
        .find(|&id| g.node(id).name == "o")
        .expect("node o exists");
    g.node_mut(mul).inputs[0].node = mul;
    let e = Compiler::new(Options::default())
        .unwrap()
        .compile(g)
        .unwrap_err();
    assert!(matches!(e, Error::Graph(_)), "{e}");
    assert!(e.to_string().contains("cycle"), "{e}");
}

#[test]
fn compiled_model_is_shared_across_threads() {
    let m = Arc::new(compile(sub_scale()));
    let handles: Vec<_> = (1..=4)
        .map(|n| {
            let m = Arc::clone(&m);
            std::thread::spawn(move || {
                let (inputs, want) = sub_scale_case(n * 5);
                assert_eq!(m.run(&inputs).unwrap(), vec![want]);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn stats_list_subgraphs_and_compilations() {
    // x - y and * scale fuse into one elementwise kernel; on a CPU without AVX2 it
    // runs on the interpreter and nothing is compiled.
    let m = compile(sub_scale());
    let jit = snipjit::IsaChoice::Auto.is_supported() && m.isa().is_some();
    let want = if jit {
        r#"{"subgraphs":[{"kind":"elementwise","nodes":2,"jit":true}],"compilations":1}"#
    } else {
        r#"{"subgraphs":[{"kind":"elementwise","nodes":2,"jit":false}],"compilations":0}"#
    };
    assert_eq!(m.stats().to_json(), want);
    // New shapes of the same broadcast pattern reuse the kernel.
    for n in [1, 5, 33, 100] {
        let (inputs, expected) = sub_scale_case(n);
        assert_eq!(m.run(&inputs).unwrap(), vec![expected]);
    }
    assert_eq!(m.stats().to_json(), want);

    // A graph that already holds a fused elementwise subgraph (relu(x) + 1).
    let mut body = Graph::new("body");
    let bx = body.add_input("bx", ty(DType::F32, &[Dim::sym("N")]));
    let r = body.add_op("r", Op::Unary(UnaryOp::Relu), &[bx]).unwrap();
    let one = body
        .add_op("one", Op::Constant(Tensor::scalar_f32(1.0)), &[])
        .unwrap();
    let p = body
        .add_op("p", Op::Binary(BinaryOp::Add), &[r, one])
        .unwrap();
    body.add_output("bo", p);
    let mut g = Graph::new("outer");
    let x = g.add_input("x", ty(DType::F32, &[Dim::sym("N")]));
    let sg = Op::Subgraph(Box::new(Subgraph {
        kind: SubgraphKind::Elementwise,
        body,
    }));
    let y = g.add_op("sg", sg, &[x]).unwrap();
    g.add_output("y", y);
    let m = compile(g);
    let want = if m.isa().is_some() {
        r#"{"subgraphs":[{"kind":"elementwise","nodes":2,"jit":true}],"compilations":1}"#
    } else {
        r#"{"subgraphs":[{"kind":"elementwise","nodes":2,"jit":false}],"compilations":0}"#
    };
    assert_eq!(m.stats().to_json(), want);
    let out = m.run(&[f32s(&[3], vec![-1.0, 0.5, 2.0])]).unwrap();
    assert_eq!(out, vec![f32s(&[3], vec![1.0, 1.5, 3.0])]);
}
