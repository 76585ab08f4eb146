//! ONNX import error paths: every refusal names what it refuses, and nothing panics.

mod onnx_util;

use onnx_util::*;
use snipjit_ir::onnx::proto::{
    NodeProto, SparseTensorProto, StringStringEntryProto, TensorProto, data_location,
};
use snipjit_ir::onnx::{OnnxError, import_bytes, import_file};

fn relu_model(opset: i64) -> ModelBuilder {
    let mut b = ModelBuilder::new(opset);
    b.input("x", FLOAT, &["N", "4"])
        .node("Relu", "r", &["x"], &["y"], vec![])
        .output("y");
    b
}

#[test]
fn unknown_op_names_op_and_node() {
    let mut b = ModelBuilder::new(18);
    b.input("x", FLOAT, &["4"])
        .node("Foo", "bar", &["x"], &["y"], vec![])
        .output("y");
    assert_eq!(err(&b), "unsupported op 'Foo' at node 'bar'");
    assert!(matches!(b.import(), Err(OnnxError::UnsupportedOp { .. })));

    // A node without a name is named after its first output.
    let mut b = ModelBuilder::new(18);
    b.input("x", FLOAT, &["4"])
        .node("Conv", "", &["x"], &["conv_out"], vec![])
        .output("conv_out");
    assert_eq!(err(&b), "unsupported op 'Conv' at node 'conv_out'");
}

#[test]
fn non_default_domain_is_unsupported() {
    let mut b = ModelBuilder::new(18);
    b.input("x", FLOAT, &["4"]);
    b.graph().node.push(NodeProto {
        input: vec!["x".into()],
        output: vec!["y".into()],
        name: "g".into(),
        op_type: "Gelu".into(),
        domain: "com.microsoft".into(),
        ..Default::default()
    });
    b.output("y");
    assert_eq!(err(&b), "unsupported op 'com.microsoft.Gelu' at node 'g'");
}

#[test]
fn opset_outside_supported_range() {
    for v in [1, 11, 12, 22, 23] {
        let msg = err(&relu_model(v));
        assert!(
            msg.contains(&format!("opset {v} is not supported")) && msg.contains("13 to 21"),
            "{msg}"
        );
    }
    for v in [13, 17, 18, 20, 21] {
        ok(&relu_model(v));
    }
    let mut b = relu_model(18);
    b.model.opset_import.clear();
    assert!(err(&b).contains("no default-domain opset"));
    let mut b = relu_model(18);
    b.model.opset_import[0].domain = "com.example".into();
    assert!(err(&b).contains("no default-domain opset"));
}

#[test]
fn truncated_and_garbage_bytes() {
    let bytes = relu_model(18).bytes();
    for cut in [1, bytes.len() / 3, bytes.len() - 1] {
        let e = import_bytes(&bytes[..cut]).expect_err("truncated model imported");
        assert!(
            matches!(e, OnnxError::Decode(_)) || matches!(e, OnnxError::Model(_)),
            "cut {cut}: {e}"
        );
    }
    let e = import_bytes(b"definitely not a protobuf \xff\xff\xff").unwrap_err();
    assert!(e.to_string().starts_with("not a valid ONNX model"), "{e}");
    // Empty bytes decode as an empty model: no opset.
    assert!(import_bytes(&[]).is_err());
}

#[test]
fn io_error_names_the_path() {
    let e = import_file(std::path::Path::new("/nonexistent/model.onnx")).unwrap_err();
    assert!(matches!(e, OnnxError::Io { .. }));
    assert!(e.to_string().contains("/nonexistent/model.onnx"), "{e}");
}

#[test]
fn import_file_reads_a_model() {
    let dir = std::env::temp_dir().join(format!("snipjit_onnx_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("relu.onnx");
    std::fs::write(&path, relu_model(18).bytes()).unwrap();
    let g = import_file(&path).unwrap();
    assert_eq!(g.outputs.len(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn with_initializer(t: TensorProto) -> ModelBuilder {
    let mut b = ModelBuilder::new(18);
    b.input("x", FLOAT, &["4"])
        .initializer(t)
        .node("Add", "add", &["x", "w"], &["y"], vec![])
        .output("y");
    b
}

#[test]
fn external_data_is_refused() {
    let mut t = t_f32("w", &[4], &[]);
    t.data_location = data_location::EXTERNAL;
    t.external_data = vec![StringStringEntryProto {
        key: "location".into(),
        value: "weights.bin".into(),
    }];
    assert_eq!(
        err(&with_initializer(t)),
        "tensor 'w': external data is not supported (the model must embed its tensors)"
    );
}

#[test]
fn tensor_size_mismatches() {
    let msg = err(&with_initializer(t_f32("w", &[4], &[1.0, 2.0, 3.0])));
    assert_eq!(
        msg,
        "tensor 'w': float_data holds 3 elements, dims [4] need 4"
    );
    let msg = err(&with_initializer(t_f32_raw("w", &[4], &[1.0; 5])));
    assert_eq!(
        msg,
        "tensor 'w': raw_data holds 20 bytes, dims need 16 (4 x f32)"
    );
    // Data in the field of another dtype.
    let mut t = t_f32("w", &[4], &[]);
    t.int64_data = vec![1, 2, 3, 4];
    assert!(err(&with_initializer(t)).contains("float_data holds 0 elements"));
    // Both raw and typed data.
    let mut t = t_f32_raw("w", &[1], &[1.0]);
    t.float_data = vec![1.0];
    assert!(err(&with_initializer(t)).contains("both raw_data and a typed data field"));
}

#[test]
fn hostile_dims_are_refused_without_allocating() {
    // Claims 2^62 elements with no data.
    let msg = err(&with_initializer(t_f32("w", &[1 << 31, 1 << 31], &[])));
    assert!(
        msg.contains("dims [2147483648, 2147483648] need 4611686018427387904"),
        "{msg}"
    );
    // Product overflows usize.
    let msg = err(&with_initializer(t_f32("w", &[u32::MAX as i64; 3], &[])));
    assert!(msg.contains("overflows"), "{msg}");
    let msg = err(&with_initializer(t_f32("w", &[1 << 40], &[])));
    assert!(msg.contains("exceeds the supported maximum"), "{msg}");
    let msg = err(&with_initializer(t_f32("w", &[-1], &[])));
    assert!(msg.contains("negative dim -1"), "{msg}");
    // A graph input with a huge or negative dim.
    let mut b = ModelBuilder::new(18);
    b.input("x", FLOAT, &["9223372036854775807"])
        .node("Relu", "r", &["x"], &["y"], vec![])
        .output("y");
    assert!(err(&b).starts_with("value 'x': dim 9223372036854775807 exceeds"));
    let mut b = ModelBuilder::new(18);
    b.input("x", FLOAT, &["-3"])
        .node("Relu", "r", &["x"], &["y"], vec![])
        .output("y");
    assert_eq!(err(&b), "value 'x': negative dim -3");
    // A Reshape whose constant target claims a huge dim.
    let mut b = ModelBuilder::new(18);
    b.input("x", FLOAT, &["N"])
        .initializer(t_i64("s", &[2], &[1 << 50, 1 << 12]))
        .node("Reshape", "r", &["x", "s"], &["y"], vec![])
        .output("y");
    assert!(err(&b).contains("exceeds the supported maximum"));
}

#[test]
fn unsupported_dtypes() {
    let t = TensorProto {
        name: "w".into(),
        dims: vec![1],
        data_type: DOUBLE,
        double_data: vec![1.0],
        ..Default::default()
    };
    assert!(err(&with_initializer(t)).contains("DOUBLE (f64) is not supported"));
    let mut b = ModelBuilder::new(18);
    b.input("x", STRING, &["4"])
        .node("Identity", "i", &["x"], &["y"], vec![])
        .output("y");
    assert_eq!(
        err(&b),
        "value 'x': element type STRING (8) is not supported"
    );
    let mut b = ModelBuilder::new(18);
    b.input("x", FLOAT, &["4"])
        .node(
            "Cast",
            "c",
            &["x"],
            &["y"],
            vec![a_int("to", DOUBLE as i64)],
        )
        .output("y");
    assert!(err(&b).starts_with("node 'c' (Cast): attribute 'to': element type DOUBLE"));
    // Out-of-range int32_data for a narrow dtype.
    let t = t_int32_field("w", UINT8, &[1], &[300]);
    assert!(err(&with_initializer(t)).contains("300 is out of range for u8"));
    let t = t_raw("w", BOOL, &[1], vec![2]);
    assert!(err(&with_initializer(t)).contains("bool element has byte value 2"));
}

#[test]
fn sparse_initializer_is_refused() {
    let mut b = relu_model(18);
    b.graph().sparse_initializer.push(SparseTensorProto {
        values: Some(t_f32("sp", &[1], &[1.0])),
        ..Default::default()
    });
    assert_eq!(
        err(&b),
        "tensor 'sp': sparse initializers are not supported"
    );
}

#[test]
fn missing_inputs_and_outputs() {
    let mut b = ModelBuilder::new(18);
    b.input("x", FLOAT, &["4"])
        .node("Add", "add", &["x", "nowhere"], &["y"], vec![])
        .output("y");
    assert_eq!(err(&b), "node 'add' (Add): missing input 'nowhere'");
    let mut b = ModelBuilder::new(18);
    b.input("x", FLOAT, &["4"])
        .node("Add", "add", &["x"], &["y"], vec![])
        .output("y");
    assert_eq!(err(&b), "node 'add' (Add): expects 2 inputs, got 1");
    let mut b = relu_model(18);
    b.output("ghost");
    assert!(err(&b).contains("graph output 'ghost' is not defined"));
    let mut b = ModelBuilder::new(18);
    b.input("x", FLOAT, &["4"])
        .node("Unsqueeze", "u", &["x", ""], &["y"], vec![])
        .output("y");
    assert_eq!(err(&b), "node 'u' (Unsqueeze): missing input '#1'");
}

#[test]
fn structural_errors() {
    // A cycle.
    let mut b = ModelBuilder::new(18);
    b.input("x", FLOAT, &["4"])
        .node("Add", "a", &["x", "c"], &["b"], vec![])
        .node("Relu", "r", &["b"], &["c"], vec![])
        .output("c");
    assert!(err(&b).contains("cycle through node"), "{}", err(&b));
    // A value defined twice.
    let mut b = ModelBuilder::new(18);
    b.input("x", FLOAT, &["4"])
        .node("Relu", "r1", &["x"], &["y"], vec![])
        .node("Neg", "r2", &["x"], &["y"], vec![])
        .output("y");
    assert_eq!(err(&b), "invalid model: value 'y' is defined twice");
    let mut b = ModelBuilder::new(18);
    b.input("x", FLOAT, &["4"])
        .node("Relu", "r1", &["x"], &["x"], vec![])
        .output("x");
    assert_eq!(err(&b), "invalid model: value 'x' is defined twice");
    // No graph.
    let mut b = relu_model(18);
    b.model.graph = None;
    assert_eq!(err(&b), "invalid model: model has no graph");
    // Input without shape or type.
    let mut b = relu_model(18);
    b.graph().input[0].r#type = None;
    assert_eq!(err(&b), "value 'x': has no type");
}

#[test]
fn declared_output_type_must_match() {
    let mut b = ModelBuilder::new(18);
    b.input("x", FLOAT, &["4"])
        .node("Relu", "r", &["x"], &["y"], vec![])
        .output_typed("y", INT64, &["4"]);
    assert!(err(&b).starts_with("value 'y': declared element type i64"));
    let mut b = ModelBuilder::new(18);
    b.input("x", FLOAT, &["4"])
        .node("Relu", "r", &["x"], &["y"], vec![])
        .output_typed("y", FLOAT, &["4", "1"]);
    assert!(err(&b).starts_with("value 'y': declared rank 2"));
}

#[test]
fn shape_inference_errors_are_wrapped() {
    let mut b = ModelBuilder::new(18);
    b.input("a", FLOAT, &["3"])
        .input("b", FLOAT, &["4"])
        .node("Add", "add", &["a", "b"], &["y"], vec![])
        .output("y");
    let e = b.import().unwrap_err();
    assert!(matches!(e, OnnxError::Ir(_)));
    assert_eq!(
        e.to_string(),
        "graph error: node 'add' (Add): shapes [3] and [4] do not broadcast"
    );
    let mut b = ModelBuilder::new(18);
    b.input("a", INT32, &["3"])
        .node("Exp", "e", &["a"], &["y"], vec![])
        .output("y");
    assert!(err(&b).contains("Exp needs a float input"));
}

#[test]
fn unsupported_forms_of_known_ops() {
    let cases: Vec<(ModelBuilder, &str)> = vec![
        (
            {
                let mut b = ModelBuilder::new(18);
                b.input("x", FLOAT, &["4"])
                    .input("lo", FLOAT, &[])
                    .node("Clip", "clip", &["x", "lo"], &["y"], vec![])
                    .output("y");
                b
            },
            "node 'clip' (Clip): Clip bound 'lo' must be a constant with one element",
        ),
        (
            {
                let mut b = ModelBuilder::new(18);
                b.input("a", INT32, &["4"])
                    .input("b", INT32, &["4"])
                    .node("Mod", "m", &["a", "b"], &["y"], vec![])
                    .output("y");
                b
            },
            "node 'm' (Mod): Mod with fmod=0 (integer floor modulo) is not supported; only fmod=1 (C fmod) is",
        ),
        (
            {
                let mut b = ModelBuilder::new(18);
                b.input("x", FLOAT, &["2", "3"])
                    .node("Shape", "s", &["x"], &["y"], vec![a_int("start", 1)])
                    .output("y");
                b
            },
            "node 's' (Shape): Shape with start/end (a slice 1..2 of rank 2) is not supported",
        ),
        (
            {
                let mut b = ModelBuilder::new(18);
                b.input("x", FLOAT, &["4"])
                    .node("Dropout", "d", &["x"], &["y", "mask"], vec![])
                    .node("Not", "n", &["mask"], &["z"], vec![])
                    .output("z");
                b
            },
            "node 'n' (Not): reads 'mask', which is an output of Dropout node 'd' that snipjit does not import",
        ),
        (
            {
                let mut b = ModelBuilder::new(18);
                b.input("x", FLOAT, &["4"])
                    .input("t", BOOL, &[])
                    .node("Dropout", "d", &["x", "", "t"], &["y"], vec![])
                    .output("y");
                b
            },
            "node 'd' (Dropout): training_mode must be a constant false for inference",
        ),
        (
            {
                let mut b = ModelBuilder::new(18);
                b.input("x", FLOAT, &["N", "1"])
                    .node("Squeeze", "sq", &["x"], &["y"], vec![])
                    .output("y");
                b
            },
            "node 'sq' (Squeeze): Squeeze without axes on input of shape [N, 1] (with dynamic dims) is ambiguous",
        ),
        (
            {
                let mut b = ModelBuilder::new(18);
                b.input("x", FLOAT, &["4"])
                    .input("ax", INT64, &["1"])
                    .node("Unsqueeze", "u", &["x", "ax"], &["y"], vec![])
                    .output("y");
                b
            },
            "node 'u' (Unsqueeze): axes ('ax') must be a constant (initializer or Constant node)",
        ),
        (
            {
                let mut b = ModelBuilder::new(18);
                b.input("a", FLOAT, &["2", "3", "4"])
                    .input("b", FLOAT, &["4", "5"])
                    .node("Gemm", "g", &["a", "b"], &["y"], vec![])
                    .output("y");
                b
            },
            "node 'g' (Gemm): Gemm input A must be 2-D, got f32[2, 3, 4]",
        ),
        (
            {
                let mut b = ModelBuilder::new(18);
                b.input("x", FLOAT, &["4"])
                    .node("ReduceMax", "r", &["x"], &["y"], vec![a_ints("axes", &[0])])
                    .output("y");
                b
            },
            "node 'r' (ReduceMax): attribute 'axes': ReduceMax takes axes as an input at opset 18",
        ),
    ];
    for (b, want) in cases {
        assert_eq!(err(&b), want);
    }
}

#[test]
fn bad_attributes() {
    let mut b = ModelBuilder::new(18);
    b.input("x", FLOAT, &["4"])
        .node(
            "Gelu",
            "g",
            &["x"],
            &["y"],
            vec![a_str("approximate", "fast")],
        )
        .output("y");
    assert_eq!(
        err(&b),
        "node 'g' (Gelu): attribute 'approximate': expected \"none\" or \"tanh\", got \"fast\""
    );
    let mut b = ModelBuilder::new(18);
    b.input("x", FLOAT, &["4"])
        .node("Softmax", "s", &["x"], &["y"], vec![a_float("axis", 1.0)])
        .output("y");
    assert_eq!(
        err(&b),
        "node 's' (Softmax): attribute 'axis': expected type INT, got type code 1"
    );
    let mut b = ModelBuilder::new(18);
    b.input("x", FLOAT, &["4"])
        .node("Concat", "c", &["x"], &["y"], vec![])
        .output("y");
    assert_eq!(err(&b), "node 'c' (Concat): attribute 'axis': required");
    let mut b = ModelBuilder::new(18);
    b.input("x", FLOAT, &["4"])
        .node(
            "Transpose",
            "t",
            &["x"],
            &["y"],
            vec![a_ints("perm", &[-1])],
        )
        .output("y");
    assert_eq!(
        err(&b),
        "node 't' (Transpose): attribute 'perm': negative entry -1"
    );
    let mut b = ModelBuilder::new(18);
    b.input("x", FLOAT, &["4"])
        .node(
            "Reshape",
            "r",
            &["x", "x"],
            &["y"],
            vec![a_int("allowzero", 7)],
        )
        .output("y");
    assert_eq!(
        err(&b),
        "node 'r' (Reshape): attribute 'allowzero': expected 0 or 1, got 7"
    );
    let mut b = ModelBuilder::new(18);
    b.node(
        "Constant",
        "k",
        &[],
        &["y"],
        vec![a_str("value_string", "hi")],
    )
    .output("y");
    assert!(err(&b).starts_with("node 'k' (Constant): attribute 'value_string'"));
}
