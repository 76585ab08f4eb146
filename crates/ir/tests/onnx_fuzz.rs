//! Mutated ONNX bytes never panic the importer: truncations, byte flips, spliced
//! garbage and random bytes all end in `Ok` or `Err`.

mod rng;
use rng::Rng;

mod onnx_util;

use onnx_util::*;
use snipjit_ir::onnx::import_bytes;

/// Valid models exercising many code paths (attributes, initializers, decompositions).
fn seeds() -> Vec<Vec<u8>> {
    seed_models().iter().map(ModelBuilder::bytes).collect()
}

fn seed_models() -> Vec<ModelBuilder> {
    let mut a = ModelBuilder::new(18);
    a.input("q", FLOAT, &["B", "S", "8"])
        .input("k", FLOAT, &["B", "S", "8"])
        .input("m", BOOL, &["1", "S", "S"])
        .initializer(t_f32("scale", &[], &[0.35]))
        .initializer(t_f32_raw("neg", &[1], &[-1e9]))
        .node(
            "Transpose",
            "kt",
            &["k"],
            &["kt"],
            vec![a_ints("perm", &[0, 2, 1])],
        )
        .node("MatMul", "qk", &["q", "kt"], &["s"], vec![])
        .node("Mul", "sc", &["s", "scale"], &["ss"], vec![])
        .node("Where", "w", &["m", "ss", "neg"], &["sm"], vec![])
        .node("Softmax", "p", &["sm"], &["p"], vec![a_int("axis", -1)])
        .output("p");

    let mut b = ModelBuilder::new(13);
    b.input("x", FLOAT, &["N", "4"])
        .initializer(t_f32("w", &[3, 4], &[0.5; 12]))
        .initializer(t_f32("c", &[3], &[1.0, 2.0, 3.0]))
        .initializer(t_i64("shape", &[2], &[0, -1]))
        .initializer(t_i64("axes", &[1], &[1]))
        .initializer(t_f32("lo", &[], &[0.0]))
        .node(
            "Gemm",
            "fc",
            &["x", "w", "c"],
            &["g"],
            vec![
                a_int("transB", 1),
                a_float("alpha", 0.5),
                a_float("beta", 2.0),
            ],
        )
        .node("HardSigmoid", "hs", &["g"], &["h"], vec![])
        .node("Clip", "cl", &["h", "lo"], &["cl"], vec![])
        .node(
            "ReduceSum",
            "rs",
            &["cl", "axes"],
            &["r"],
            vec![a_int("keepdims", 1)],
        )
        .node("Reshape", "rsh", &["r", "shape"], &["y"], vec![])
        .node("Shape", "shp", &["y"], &["ys"], vec![])
        .node(
            "Cast",
            "cast",
            &["ys"],
            &["ysf"],
            vec![a_int("to", FLOAT as i64)],
        )
        .node(
            "Constant",
            "k",
            &[],
            &["two"],
            vec![a_float("value_float", 2.0)],
        )
        .node("Pow", "pw", &["y", "two"], &["yp"], vec![])
        .node("Sum", "sum", &["yp", "y", "y"], &["out"], vec![])
        .output("out")
        .output("ysf");
    let mut c = ModelBuilder::new(18);
    c.input("x", FLOAT, &["N", "1", "3"])
        .initializer(t_i64("ax", &[1], &[1]))
        .initializer(t_i64("ax0", &[2], &[0, -1]))
        .initializer(t_i64("idx", &[2], &[0, 2]))
        .initializer(t_i64("big", &[3], &[2, 1, 1]))
        .node("Squeeze", "sq", &["x", "ax"], &["s"], vec![])
        .node("Unsqueeze", "us", &["s", "ax0"], &["u"], vec![])
        .node("Concat", "cat", &["u", "u"], &["c"], vec![a_int("axis", 2)])
        .node(
            "Gather",
            "g",
            &["c", "idx"],
            &["gt"],
            vec![a_int("axis", -2)],
        )
        .node(
            "Transpose",
            "t",
            &["gt"],
            &["t"],
            vec![a_ints("perm", &[3, 2, 1, 0])],
        )
        .node("Expand", "e", &["t", "big"], &["e"], vec![])
        .node(
            "ReduceMax",
            "rm",
            &["e", "ax"],
            &["rm"],
            vec![a_int("keepdims", 0)],
        )
        .node("Softmax", "sm", &["rm"], &["y"], vec![a_int("axis", 1)])
        .output("y");
    vec![a, b, c]
}

#[test]
fn seeds_are_valid() {
    for s in seeds() {
        import_bytes(&s).expect("seed model imports");
    }
}

#[test]
fn truncations_never_panic() {
    for s in seeds() {
        for cut in 0..s.len() {
            let _ = import_bytes(&s[..cut]);
        }
    }
}

#[test]
fn byte_flips_never_panic() {
    for s in seeds() {
        let mut m = s.clone();
        for i in 0..m.len() {
            for x in [0x01u8, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff] {
                m[i] ^= x;
                let _ = import_bytes(&m);
                m[i] ^= x;
            }
            // Extreme values: a varint continuation byte and a zero.
            for v in [0x00u8, 0x7f, 0xff] {
                let old = std::mem::replace(&mut m[i], v);
                let _ = import_bytes(&m);
                m[i] = old;
            }
        }
    }
}

#[test]
fn random_splices_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let seeds = seeds();
    for _ in 0..20_000 {
        let mut m = seeds[rng.below(seeds.len())].clone();
        for _ in 0..1 + rng.below(4) {
            match rng.below(4) {
                0 => {
                    let i = rng.below(m.len());
                    m[i] = rng.next() as u8;
                }
                1 => {
                    let i = rng.below(m.len() + 1);
                    let n = 1 + rng.below(12);
                    let junk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                    m.splice(i..i, junk);
                }
                2 if m.len() > 2 => {
                    let i = rng.below(m.len() - 1);
                    let n = 1 + rng.below((m.len() - i).min(16));
                    m.drain(i..i + n);
                }
                _ => {
                    // Duplicate a slice elsewhere (repeats whole fields).
                    let i = rng.below(m.len());
                    let n = 1 + rng.below((m.len() - i).min(32));
                    let part = m[i..i + n].to_vec();
                    let j = rng.below(m.len() + 1);
                    m.splice(j..j, part);
                }
            }
        }
        let _ = import_bytes(&m);
    }
}

/// Values that break naive size and axis arithmetic.
const NASTY: [i64; 12] = [
    i64::MIN,
    i64::MIN + 1,
    -(1 << 32),
    -3,
    -1,
    0,
    1,
    2,
    7,
    1 << 31,
    1 << 40,
    i64::MAX,
];

#[test]
fn structured_mutations_never_panic() {
    // Well-formed protobuf with hostile values: attribute ints, dims, shape and axes
    // tensors, element types.
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    let seeds = seed_models();
    let (mut oks, mut errs) = (0, 0);
    for _ in 0..20_000 {
        let mut b = seeds[rng.below(seeds.len())].clone();
        let g = b.graph();
        for _ in 0..1 + rng.below(3) {
            let v = NASTY[rng.below(NASTY.len())];
            match rng.below(6) {
                0 if !g.node.is_empty() => {
                    let n = rng.below(g.node.len());
                    if let Some(a) = g.node[n].attribute.first_mut() {
                        a.i = v;
                        if let Some(x) = a.ints.first_mut() {
                            *x = v;
                        }
                    }
                }
                1 if !g.initializer.is_empty() => {
                    let n = rng.below(g.initializer.len());
                    let t = &mut g.initializer[n];
                    if let Some(x) = t.int64_data.first_mut() {
                        *x = v;
                    }
                }
                2 if !g.initializer.is_empty() => {
                    let n = rng.below(g.initializer.len());
                    let t = &mut g.initializer[n];
                    if let Some(d) = t.dims.first_mut() {
                        *d = v;
                    }
                }
                3 if !g.input.is_empty() => {
                    use snipjit_ir::onnx::proto::{tensor_shape_proto::dimension, type_proto};
                    let n = rng.below(g.input.len());
                    if let Some(type_proto::Value::TensorType(tt)) =
                        g.input[n].r#type.as_mut().and_then(|t| t.value.as_mut())
                        && let Some(s) = tt.shape.as_mut()
                        && !s.dim.is_empty()
                    {
                        let k = rng.below(s.dim.len());
                        s.dim[k].value = Some(dimension::Value::DimValue(v));
                    }
                }
                4 if !g.initializer.is_empty() => {
                    let n = rng.below(g.initializer.len());
                    g.initializer[n].data_type = rng.below(24) as i32;
                }
                _ if !g.node.is_empty() => {
                    // Rewire an input to another value name.
                    let n = rng.below(g.node.len());
                    let m = rng.below(g.node.len());
                    if let (Some(src), false) = (
                        g.node[m].output.first().cloned(),
                        g.node[n].input.is_empty(),
                    ) {
                        let k = rng.below(g.node[n].input.len());
                        g.node[n].input[k] = src;
                    }
                }
                _ => {}
            }
        }
        match b.import() {
            Ok(_) => oks += 1,
            Err(_) => errs += 1,
        }
    }
    // Both outcomes are common, so the mutations reach deep into the importer.
    println!("{oks} imported, {errs} refused");
    assert!(oks > 1000 && errs > 1000, "{oks} imported, {errs} refused");
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    for _ in 0..20_000 {
        let n = rng.below(256);
        let m: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
        let _ = import_bytes(&m);
    }
}
