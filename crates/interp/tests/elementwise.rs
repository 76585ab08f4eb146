//! Unary, binary, Select and Convert against hand-computed values.

// The libm tables are Python's f64 reprs of f32 values: exact, if longer than needed.
#![allow(clippy::excessive_precision)]

mod common;

use common::*;
use half::{bf16, f16};
use snipjit_interp::OpError;
use snipjit_ir::{BinaryOp, DType, GeluApprox, Op, TensorData, UnaryOp};

fn unary(op: UnaryOp, x: &[f32]) -> Vec<f32> {
    let input = f32t(&[x.len()], x);
    f32s(&eval1(Op::Unary(op), &[&input])).to_vec()
}

fn binary(op: BinaryOp, a: &snipjit_ir::Tensor, b: &snipjit_ir::Tensor) -> snipjit_ir::Tensor {
    eval1(Op::Binary(op), &[a, b])
}

const XS: [f32; 7] = [-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.5];

/// Expected values computed with Python's `math` (C libm) in f64 and rounded to f32.
#[test]
fn unary_transcendentals_match_libm_values() {
    use UnaryOp::*;
    let table: &[(UnaryOp, &[f32])] = &[
        (
            Exp,
            &[
                0.049787066876888275,
                0.3678794503211975,
                0.6065306663513184,
                1.0,
                1.6487212181091309,
                2.7182817459106445,
                12.182494163513184,
            ],
        ),
        (
            Erf,
            &[
                -0.9999778866767883,
                -0.8427007794380188,
                -0.5204998850822449,
                0.0,
                0.5204998850822449,
                0.8427007794380188,
                0.9995930194854736,
            ],
        ),
        (
            Tanh,
            &[
                -0.9950547814369202,
                -0.7615941762924194,
                -0.46211716532707214,
                0.0,
                0.46211716532707214,
                0.7615941762924194,
                0.9866142868995667,
            ],
        ),
        (
            Sigmoid,
            &[
                0.04742587357759476,
                0.2689414322376251,
                0.3775406777858734,
                0.5,
                0.622459352016449,
                0.7310585975646973,
                0.9241418242454529,
            ],
        ),
        (
            Gelu(GeluApprox::Erf),
            &[
                -0.004049694165587425,
                -0.15865525603294373,
                -0.1542687714099884,
                0.0,
                0.3457312285900116,
                0.8413447737693787,
                2.48447585105896,
            ],
        ),
        (
            Gelu(GeluApprox::Tanh),
            &[
                -0.003637392073869705,
                -0.15880800783634186,
                -0.1542859971523285,
                0.0,
                0.3457140028476715,
                0.8411920070648193,
                2.4849157333374023,
            ],
        ),
        (
            Swish { beta: 1.0 },
            &[
                -0.14227761328220367,
                -0.2689414322376251,
                -0.1887703388929367,
                0.0,
                0.3112296760082245,
                0.7310585975646973,
                2.310354471206665,
            ],
        ),
        (
            Swish { beta: 2.0 },
            &[
                -0.007417869288474321,
                -0.11920291930437088,
                -0.13447071611881256,
                0.0,
                0.36552929878234863,
                0.8807970881462097,
                2.4832677841186523,
            ],
        ),
        (
            HSwish,
            &[
                -0.0,
                -0.3333333432674408,
                -0.2083333283662796,
                0.0,
                0.2916666567325592,
                0.6666666865348816,
                2.2916667461395264,
            ],
        ),
        (
            HSigmoid,
            &[
                0.0,
                0.3333333432674408,
                0.4166666567325592,
                0.5,
                0.5833333134651184,
                0.6666666865348816,
                0.9166666865348816,
            ],
        ),
        (
            Mish,
            &[
                -0.14564746618270874,
                -0.30340147018432617,
                -0.22074377536773682,
                0.0,
                0.37524521350860596,
                0.8650984168052673,
                2.4713923931121826,
            ],
        ),
        (
            Elu { alpha: 0.5 },
            &[
                -0.47510647773742676,
                -0.31606027483940125,
                -0.19673466682434082,
                0.0,
                0.5,
                1.0,
                2.5,
            ],
        ),
        (
            LeakyRelu { alpha: 0.1 },
            &[
                -0.30000001192092896,
                -0.10000000149011612,
                -0.05000000074505806,
                0.0,
                0.5,
                1.0,
                2.5,
            ],
        ),
        (
            Softplus,
            &[
                0.04858735203742981,
                0.3132616877555847,
                0.4740769863128662,
                0.6931471824645996,
                0.9740769863128662,
                1.31326162815094,
                2.578889846801758,
            ],
        ),
    ];
    for (op, want) in table {
        assert_f32_eq(&unary(*op, &XS), want);
    }
    let pos = [0.25, 0.5, 1.0, 2.0, 10.0];
    let table: &[(UnaryOp, &[f32])] = &[
        (
            Log,
            &[
                -1.3862943649291992,
                -0.6931471824645996,
                0.0,
                0.6931471824645996,
                2.3025851249694824,
            ],
        ),
        (
            Sqrt,
            &[
                0.5,
                0.7071067690849304,
                1.0,
                1.4142135381698608,
                3.1622776985168457,
            ],
        ),
        (Reciprocal, &[4.0, 2.0, 1.0, 0.5, 0.10000000149011612]),
    ];
    for (op, want) in table {
        assert_f32_eq(&unary(*op, &pos), want);
    }
}

#[test]
fn unary_piecewise_ops() {
    use UnaryOp::*;
    assert_f32_eq(&unary(Abs, &XS), &[3.0, 1.0, 0.5, 0.0, 0.5, 1.0, 2.5]);
    assert_f32_eq(&unary(Neg, &XS), &[3.0, 1.0, 0.5, 0.0, -0.5, -1.0, -2.5]);
    assert_f32_eq(&unary(Relu, &XS), &[0.0, 0.0, 0.0, 0.0, 0.5, 1.0, 2.5]);
    assert_f32_eq(
        &unary(
            Clamp {
                min: -0.75,
                max: 1.0,
            },
            &XS,
        ),
        &[-0.75, -0.75, -0.5, 0.0, 0.5, 1.0, 1.0],
    );
    assert_f32_eq(
        &unary(Floor, &[-1.5, -0.5, 0.5, 1.0, 2.7]),
        &[-2.0, -1.0, 0.0, 1.0, 2.0],
    );
    assert_f32_eq(
        &unary(Ceil, &[-1.5, -0.5, 0.5, 1.0, 2.7]),
        &[-1.0, -0.0, 1.0, 1.0, 3.0],
    );
    assert_f32_eq(&unary(Sign, &XS), &[-1.0, -1.0, -1.0, 0.0, 1.0, 1.0, 1.0]);
}

#[test]
fn round_is_half_to_even() {
    let x = [
        0.5, 1.5, 2.5, 3.5, -0.5, -1.5, -2.5, 2.4999998, 2.5000002, -7.0,
    ];
    let want = [0.0, 2.0, 2.0, 4.0, -0.0, -2.0, -2.0, 2.0, 3.0, -7.0];
    assert_f32_bits(&unary(UnaryOp::Round, &x), &want);
}

#[test]
fn unary_nan_and_infinities() {
    use UnaryOp::*;
    let (nan, inf) = (f32::NAN, f32::INFINITY);
    for op in [
        Abs,
        Neg,
        Relu,
        Clamp { min: 0.0, max: 1.0 },
        Exp,
        Log,
        Sqrt,
        Erf,
        Tanh,
        Sigmoid,
        Mish,
        Softplus,
        Sign,
        Round,
        Gelu(GeluApprox::Erf),
        HSwish,
    ] {
        assert!(unary(op, &[nan])[0].is_nan(), "{op:?}(NaN) should be NaN");
    }
    assert_f32_eq(&unary(Exp, &[inf, -inf, 100.0]), &[inf, 0.0, inf]);
    assert_f32_eq(&unary(Log, &[0.0, -1.0, inf]), &[-inf, nan, inf]);
    assert_f32_eq(&unary(Sqrt, &[-1.0, inf]), &[nan, inf]);
    assert_f32_bits(&unary(Reciprocal, &[0.0, -0.0]), &[inf, -inf]);
    assert_f32_eq(
        &unary(Sigmoid, &[-1000.0, 1000.0, -inf, inf]),
        &[0.0, 1.0, 0.0, 1.0],
    );
    assert_f32_eq(&unary(Tanh, &[-inf, inf, 50.0]), &[-1.0, 1.0, 1.0]);
    assert_f32_eq(&unary(Erf, &[-inf, inf]), &[-1.0, 1.0]);
    // Stable softplus: no overflow for large x, no cancellation for very negative x.
    assert_f32_eq(
        &unary(Softplus, &[1000.0, -1000.0, 100.0]),
        &[1000.0, 0.0, 100.0],
    );
    assert_eq!(unary(Softplus, &[-30.0])[0], (-30.0f64).exp() as f32);
    assert_f32_eq(&unary(Mish, &[1000.0, inf]), &[1000.0, inf]);
    assert_f32_eq(&unary(Gelu(GeluApprox::Erf), &[inf, -1000.0]), &[inf, -0.0]);
    assert_f32_eq(
        &unary(Gelu(GeluApprox::Tanh), &[1e30, -1e30]),
        &[1e30, -0.0],
    );
    assert_f32_eq(&unary(Elu { alpha: 2.0 }, &[-inf]), &[-2.0]);
    assert_f32_eq(&unary(Relu, &[-inf, inf]), &[0.0, inf]);
    assert_f32_eq(&unary(HSigmoid, &[-inf, inf]), &[0.0, 1.0]);
}

#[test]
fn unary_on_integers_wraps() {
    let x = i8t(&[4], &[-128, -5, 0, 7]);
    let abs = eval1(Op::Unary(UnaryOp::Abs), &[&x]);
    assert_eq!(abs.data, TensorData::I8(vec![-128, 5, 0, 7]));
    let neg = eval1(Op::Unary(UnaryOp::Neg), &[&x]);
    assert_eq!(neg.data, TensorData::I8(vec![-128, 5, 0, -7]));
    let relu = eval1(Op::Unary(UnaryOp::Relu), &[&x]);
    assert_eq!(relu.data, TensorData::I8(vec![0, 0, 0, 7]));
    let sign = eval1(Op::Unary(UnaryOp::Sign), &[&x]);
    assert_eq!(sign.data, TensorData::I8(vec![-1, -1, 0, 1]));
    let u = u8t(&[3], &[0, 5, 255]);
    let neg = eval1(Op::Unary(UnaryOp::Neg), &[&u]);
    assert_eq!(neg.data, TensorData::U8(vec![0, 251, 1]));
    // Clamp bounds round inward for integers: [-1.5, 2.5] holds the ints -1..=2.
    let y = i32t(&[5], &[-7, -1, 0, 2, 9]);
    let c = eval1(
        Op::Unary(UnaryOp::Clamp {
            min: -1.5,
            max: 2.5,
        }),
        &[&y],
    );
    assert_eq!(c.data, TensorData::I32(vec![-1, -1, 0, 2, 2]));
    let c = eval1(
        Op::Unary(UnaryOp::Clamp {
            min: f32::NEG_INFINITY,
            max: 1e30,
        }),
        &[&y],
    );
    assert_eq!(c.data, TensorData::I32(vec![-7, -1, 0, 2, 9]));
    let big = t(&[2], TensorData::I64(vec![i64::MIN, i64::MAX]));
    let a = eval1(Op::Unary(UnaryOp::Abs), &[&big]);
    assert_eq!(a.data, TensorData::I64(vec![i64::MIN, i64::MAX]));
}

#[test]
fn unary_dtype_errors() {
    let i = i32t(&[1], &[1]);
    let f = f32t(&[1], &[1.0]);
    let b = boolt(&[1], &[true]);
    for (op, x, dtype) in [
        (UnaryOp::Exp, &i, DType::I32),
        (UnaryOp::Round, &i, DType::I32),
        (UnaryOp::Not, &f, DType::F32),
        (UnaryOp::Abs, &b, DType::Bool),
        (UnaryOp::Sigmoid, &b, DType::Bool),
    ] {
        assert_eq!(
            eval_err(Op::Unary(op), &[x]),
            OpError::UnsupportedDType {
                dtype,
                what: op.name()
            }
        );
    }
    let not = eval1(Op::Unary(UnaryOp::Not), &[&boolt(&[2], &[true, false])]);
    assert_eq!(not.data, TensorData::Bool(vec![false, true]));
}

#[test]
fn narrow_floats_round_once_to_nearest_even() {
    // 1/3 in bf16: 1.0101010|1010.. x 2^-2 rounds up to 1.0101011 = 171/512.
    let one = bf16t(&[1], &[1.0]);
    let three = bf16t(&[1], &[3.0]);
    let q = binary(BinaryOp::Div, &one, &three);
    assert_eq!(q.data, TensorData::BF16(vec![bf16::from_bits(0x3EAB)]));
    assert_eq!(bf16::from_bits(0x3EAB).to_f64(), 171.0 / 512.0);
    // In f16: 1.0101010101|0101.. x 2^-2 rounds down to 1365/4096.
    let q = binary(BinaryOp::Div, &f16t(&[1], &[1.0]), &f16t(&[1], &[3.0]));
    assert_eq!(q.data, TensorData::F16(vec![f16::from_bits(0x3555)]));
    assert_eq!(f16::from_bits(0x3555).to_f64(), 1365.0 / 4096.0);
    // A sum that is an exact tie rounds to even: 1 + 2^-8 in bf16 is 1.0, and
    // 1 + 3 * 2^-8 goes up to 1 + 2^-6.
    let a = bf16t(&[2], &[1.0, 1.0]);
    let b = bf16t(&[2], &[2f32.powi(-8), 3.0 * 2f32.powi(-8)]);
    let s = binary(BinaryOp::Add, &a, &b);
    assert_eq!(
        s.data,
        TensorData::BF16(vec![
            bf16::from_f32(1.0),
            bf16::from_f32(1.0 + 2f32.powi(-6))
        ])
    );
    // Exp of 1 in bf16: e = 2.71828.. lies between 2.703125 and 2.71875 (step 2^-6).
    let e = eval1(Op::Unary(UnaryOp::Exp), &[&one]);
    assert_eq!(e.data, TensorData::BF16(vec![bf16::from_f32(2.71875)]));
    // f16 overflow: 65504 + 16 is the tie to infinity.
    let big = f16t(&[2], &[65504.0, 65504.0]);
    let add = f16t(&[2], &[8.0, 16.0]);
    let s = binary(BinaryOp::Add, &big, &add);
    assert_eq!(
        s.data,
        TensorData::F16(vec![f16::from_f32(65504.0), f16::INFINITY])
    );
}

#[test]
fn f32_arithmetic_is_ieee_rounded() {
    // 1 + 2^-24 is a tie: stays 1. 1 + 2^-24 (1 + 2^-23) is above the tie: 1 + 2^-23.
    let a = f32t(&[2], &[1.0, 1.0]);
    let b = f32t(
        &[2],
        &[2f32.powi(-24), 2f32.powi(-24) * (1.0 + 2f32.powi(-23))],
    );
    let s = binary(BinaryOp::Add, &a, &b);
    assert_f32_bits(f32s(&s), &[1.0, 1.0 + 2f32.powi(-23)]);
    let third = binary(BinaryOp::Div, &f32t(&[1], &[1.0]), &f32t(&[1], &[3.0]));
    assert_f32_bits(f32s(&third), &[1.0f32 / 3.0]);
}

#[test]
fn binary_float_ops_with_broadcasting() {
    let a = f32t(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let row = f32t(&[3], &[10.0, 20.0, 30.0]);
    let col = f32t(&[2, 1], &[100.0, 200.0]);
    let s = binary(BinaryOp::Add, &a, &row);
    assert_eq!(s.shape, vec![2, 3]);
    assert_f32_eq(f32s(&s), &[11.0, 22.0, 33.0, 14.0, 25.0, 36.0]);
    let s = binary(BinaryOp::Sub, &col, &row);
    assert_f32_eq(f32s(&s), &[90.0, 80.0, 70.0, 190.0, 180.0, 170.0]);
    // [2,1] x [1,3] -> outer product shape [2,3].
    let r13 = f32t(&[1, 3], &[1.0, 2.0, 3.0]);
    let m = binary(BinaryOp::Mul, &col, &r13);
    assert_eq!(m.shape, vec![2, 3]);
    assert_f32_eq(f32s(&m), &[100.0, 200.0, 300.0, 200.0, 400.0, 600.0]);
    // Scalar on the left, rank-3 broadcast.
    let sc = f32t(&[], &[12.0]);
    let x = f32t(&[2, 1, 2], &[1.0, 2.0, 3.0, 4.0]);
    let d = binary(BinaryOp::Div, &sc, &x);
    assert_eq!(d.shape, vec![2, 1, 2]);
    assert_f32_eq(f32s(&d), &[12.0, 6.0, 4.0, 3.0]);
    let y = f32t(&[3, 1], &[1.0, 0.0, -1.0]);
    let big = binary(BinaryOp::Add, &x, &y);
    assert_eq!(big.shape, vec![2, 3, 2]);
    assert_f32_eq(
        f32s(&big),
        &[2.0, 3.0, 1.0, 2.0, 0.0, 1.0, 4.0, 5.0, 3.0, 4.0, 2.0, 3.0],
    );
    let p = binary(
        BinaryOp::Pow,
        &f32t(&[4], &[2.0, 4.0, 0.0, -8.0]),
        &f32t(&[4], &[3.0, 0.5, 0.0, 1.0 / 3.0]),
    );
    assert_f32_eq(f32s(&p), &[8.0, 2.0, 1.0, f32::NAN]);
    let sd = binary(BinaryOp::SquaredDifference, &a, &row);
    assert_f32_eq(f32s(&sd), &[81.0, 324.0, 729.0, 36.0, 225.0, 576.0]);
    // PRelu with a per-channel slope.
    let x = f32t(&[2, 2], &[-2.0, 3.0, -4.0, -0.5]);
    let slope = f32t(&[2], &[0.5, 0.25]);
    let pr = binary(BinaryOp::PRelu, &x, &slope);
    assert_f32_eq(f32s(&pr), &[-1.0, 3.0, -2.0, -0.125]);
    // fmod: the result has the dividend's sign.
    let m = binary(
        BinaryOp::Mod,
        &f32t(&[5], &[5.5, -5.5, 5.5, -5.5, 1.0]),
        &f32t(&[5], &[2.0, 2.0, -2.0, -2.0, 0.0]),
    );
    assert_f32_eq(f32s(&m), &[1.5, -1.5, 1.5, -1.5, f32::NAN]);
    let d = binary(
        BinaryOp::Div,
        &f32t(&[3], &[1.0, -1.0, 0.0]),
        &f32t(&[3], &[0.0, 0.0, 0.0]),
    );
    assert_f32_eq(f32s(&d), &[f32::INFINITY, f32::NEG_INFINITY, f32::NAN]);
}

#[test]
fn max_min_propagate_nan() {
    let nan = f32::NAN;
    let a = f32t(&[4], &[1.0, nan, 3.0, -1.0]);
    let b = f32t(&[4], &[nan, 2.0, 2.0, f32::NEG_INFINITY]);
    assert_f32_eq(f32s(&binary(BinaryOp::Max, &a, &b)), &[nan, nan, 3.0, -1.0]);
    assert_f32_eq(
        f32s(&binary(BinaryOp::Min, &a, &b)),
        &[nan, nan, 2.0, f32::NEG_INFINITY],
    );
}

#[test]
fn comparisons_yield_bool_with_ieee_nan() {
    let nan = f32::NAN;
    let a = f32t(&[4], &[1.0, 2.0, nan, 3.0]);
    let b = f32t(&[4], &[1.0, 3.0, nan, 2.0]);
    let cases = [
        (BinaryOp::Equal, [true, false, false, false]),
        (BinaryOp::NotEqual, [false, true, true, true]),
        (BinaryOp::Less, [false, true, false, false]),
        (BinaryOp::LessEqual, [true, true, false, false]),
        (BinaryOp::Greater, [false, false, false, true]),
        (BinaryOp::GreaterEqual, [true, false, false, true]),
    ];
    for (op, want) in cases {
        let r = binary(op, &a, &b);
        assert_eq!(r.data, TensorData::Bool(want.to_vec()), "{op:?}");
    }
    // Integers compare exactly, beyond f64 precision too; broadcasting applies.
    let x = t(&[2], TensorData::I64(vec![i64::MAX, i64::MAX - 1]));
    let y = t(&[1], TensorData::I64(vec![i64::MAX - 1]));
    assert_eq!(
        binary(BinaryOp::Greater, &x, &y).data,
        TensorData::Bool(vec![true, false])
    );
    let eq = binary(
        BinaryOp::Equal,
        &boolt(&[2], &[true, false]),
        &boolt(&[1], &[true]),
    );
    assert_eq!(eq.data, TensorData::Bool(vec![true, false]));
}

#[test]
fn logical_ops() {
    let a = boolt(&[4], &[false, false, true, true]);
    let b = boolt(&[4], &[false, true, false, true]);
    assert_eq!(
        binary(BinaryOp::And, &a, &b).data,
        TensorData::Bool(vec![false, false, false, true])
    );
    assert_eq!(
        binary(BinaryOp::Or, &a, &b).data,
        TensorData::Bool(vec![false, true, true, true])
    );
    assert_eq!(
        binary(BinaryOp::Xor, &a, &b).data,
        TensorData::Bool(vec![false, true, true, false])
    );
    let s = boolt(&[], &[true]);
    assert_eq!(
        binary(BinaryOp::Xor, &a, &s).data,
        TensorData::Bool(vec![true, true, false, false])
    );
}

#[test]
fn integer_binary_ops_wrap() {
    let a = i8t(&[3], &[100, -128, 127]);
    let b = i8t(&[3], &[100, -1, 1]);
    assert_eq!(
        binary(BinaryOp::Add, &a, &b).data,
        TensorData::I8(vec![-56, 127, -128])
    );
    assert_eq!(
        binary(BinaryOp::Div, &a, &b).data,
        TensorData::I8(vec![1, -128, 127])
    );
    assert_eq!(
        binary(BinaryOp::Mul, &a, &b).data,
        TensorData::I8(vec![16, -128, 127])
    );
    // (100 - -100)^2 = 40000 = 156 * 256 + 64.
    let sd = binary(
        BinaryOp::SquaredDifference,
        &i8t(&[1], &[100]),
        &i8t(&[1], &[-100]),
    );
    assert_eq!(sd.data, TensorData::I8(vec![64]));
    let u = binary(BinaryOp::Sub, &u8t(&[2], &[0, 10]), &u8t(&[1], &[1]));
    assert_eq!(u.data, TensorData::U8(vec![255, 9]));
    let x = i32t(&[4], &[-7, 7, -7, i32::MAX]);
    let y = i32t(&[4], &[2, -2, -2, 2]);
    assert_eq!(
        binary(BinaryOp::Div, &x, &y).data,
        TensorData::I32(vec![-3, -3, 3, i32::MAX / 2])
    );
    assert_eq!(
        binary(BinaryOp::Mod, &x, &y).data,
        TensorData::I32(vec![-1, 1, -1, 1])
    );
    assert_eq!(
        binary(BinaryOp::Mul, &x, &y).data,
        TensorData::I32(vec![-14, -14, 14, -2])
    );
    assert_eq!(
        binary(BinaryOp::Max, &x, &y).data,
        TensorData::I32(vec![2, 7, -2, i32::MAX])
    );
    assert_eq!(
        binary(BinaryOp::Min, &x, &y).data,
        TensorData::I32(vec![-7, -2, -7, 2])
    );
    assert_eq!(
        binary(BinaryOp::PRelu, &x, &y).data,
        TensorData::I32(vec![-14, 7, 14, i32::MAX])
    );
    let p = binary(
        BinaryOp::Pow,
        &i32t(&[4], &[2, 3, -2, 0]),
        &i32t(&[4], &[10, 0, 3, 0]),
    );
    assert_eq!(p.data, TensorData::I32(vec![1024, 1, -8, 1]));
    // Wrapping power: compare with repeated wrapping multiplication.
    let mut want = 1i64;
    for _ in 0..41 {
        want = want.wrapping_mul(3);
    }
    let p = binary(BinaryOp::Pow, &i64t(&[1], &[3]), &i64t(&[1], &[41]));
    assert_eq!(p.data, TensorData::I64(vec![want]));
    let p = binary(BinaryOp::Pow, &i8t(&[1], &[3]), &i8t(&[1], &[5]));
    assert_eq!(p.data, TensorData::I8(vec![243u8 as i8]));
}

#[test]
fn binary_errors() {
    let z = i32t(&[2], &[1, 0]);
    let x = i32t(&[2], &[5, 5]);
    assert_eq!(
        eval_err(Op::Binary(BinaryOp::Div), &[&x, &z]),
        OpError::DivisionByZero
    );
    assert_eq!(
        eval_err(Op::Binary(BinaryOp::Mod), &[&x, &z]),
        OpError::DivisionByZero
    );
    assert_eq!(
        eval_err(Op::Binary(BinaryOp::Pow), &[&x, &i32t(&[1], &[-1])]),
        OpError::NegativeExponent { exponent: -1 }
    );
    let a = f32t(&[2, 3], &[0.0; 6]);
    let b = f32t(&[4], &[0.0; 4]);
    assert_eq!(
        eval_err(Op::Binary(BinaryOp::Add), &[&a, &b]),
        OpError::Broadcast {
            a: vec![2, 3],
            b: vec![4]
        }
    );
    assert_eq!(
        eval_err(Op::Binary(BinaryOp::Add), &[&a, &x]),
        OpError::DTypeMismatch {
            a: DType::F32,
            b: DType::I32
        }
    );
    let bl = boolt(&[1], &[true]);
    assert_eq!(
        eval_err(Op::Binary(BinaryOp::Add), &[&bl, &bl]),
        OpError::UnsupportedDType {
            dtype: DType::Bool,
            what: "Add"
        }
    );
    assert_eq!(
        eval_err(Op::Binary(BinaryOp::And), &[&a, &a]),
        OpError::UnsupportedDType {
            dtype: DType::F32,
            what: "And"
        }
    );
    assert_eq!(
        eval_err(Op::Binary(BinaryOp::Add), &[&a]),
        OpError::Arity {
            expected: 2,
            got: 1
        }
    );
    // A broadcast whose output would be absurdly large is an error, not an abort.
    let tall = t(&[1 << 20, 1], TensorData::zeros(DType::U8, 1 << 20));
    let wide = t(&[1, 1 << 20], TensorData::zeros(DType::U8, 1 << 20));
    assert_eq!(
        eval_err(Op::Binary(BinaryOp::Add), &[&tall, &wide]),
        OpError::TooLarge {
            dtype: DType::U8,
            shape: vec![1 << 20, 1 << 20]
        }
    );
}

#[test]
fn zero_size_elementwise() {
    let e = f32t(&[0, 3], &[]);
    let row = f32t(&[3], &[1.0, 2.0, 3.0]);
    let s = binary(BinaryOp::Add, &e, &row);
    assert_eq!(s.shape, vec![0, 3]);
    assert!(f32s(&s).is_empty());
    // A size-0 dim broadcasts against 1.
    let one = f32t(&[1], &[1.0]);
    let z = f32t(&[0], &[]);
    assert_eq!(binary(BinaryOp::Mul, &one, &z).shape, vec![0]);
    let u = eval1(Op::Unary(UnaryOp::Exp), &[&e]);
    assert_eq!(u.shape, vec![0, 3]);
    let c = eval1(Op::Convert { to: DType::I8 }, &[&e]);
    assert_eq!(c.data, TensorData::I8(vec![]));
}

#[test]
fn select_broadcasts_three_ways() {
    let cond = boolt(&[2, 1], &[true, false]);
    let a = f32t(&[1, 3], &[1.0, 2.0, 3.0]);
    let b = f32t(&[], &[-1.0]);
    let s = eval1(Op::Select, &[&cond, &a, &b]);
    assert_eq!(s.shape, vec![2, 3]);
    assert_f32_eq(f32s(&s), &[1.0, 2.0, 3.0, -1.0, -1.0, -1.0]);
    let s = eval1(
        Op::Select,
        &[
            &boolt(&[3], &[false, true, false]),
            &i64t(&[3], &[1, 2, 3]),
            &i64t(&[3], &[4, 5, 6]),
        ],
    );
    assert_eq!(s.data, TensorData::I64(vec![4, 2, 6]));
    let s = eval1(
        Op::Select,
        &[
            &boolt(&[2], &[true, false]),
            &boolt(&[1], &[false]),
            &boolt(&[1], &[true]),
        ],
    );
    assert_eq!(s.data, TensorData::Bool(vec![false, true]));
    assert_eq!(
        eval_err(Op::Select, &[&a, &a, &a]),
        OpError::UnsupportedDType {
            dtype: DType::F32,
            what: "Select condition"
        }
    );
    assert_eq!(
        eval_err(Op::Select, &[&cond, &a, &i32t(&[1], &[0])]),
        OpError::DTypeMismatch {
            a: DType::F32,
            b: DType::I32
        }
    );
    assert!(matches!(
        eval_err(Op::Select, &[&boolt(&[2], &[true, true]), &a, &b]),
        OpError::Broadcast { .. }
    ));
}

#[test]
fn convert_float_to_int_truncates_and_saturates() {
    let x = f32t(
        &[8],
        &[
            2.9,
            -2.9,
            300.0,
            -300.0,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -0.5,
        ],
    );
    let c = |to| eval1(Op::Convert { to }, &[&x]).data;
    assert_eq!(
        c(DType::I8),
        TensorData::I8(vec![2, -2, 127, -128, 0, 127, -128, 0])
    );
    assert_eq!(
        c(DType::U8),
        TensorData::U8(vec![2, 0, 255, 0, 0, 255, 0, 0])
    );
    assert_eq!(
        c(DType::I32),
        TensorData::I32(vec![2, -2, 300, -300, 0, i32::MAX, i32::MIN, 0])
    );
    assert_eq!(
        c(DType::I64),
        TensorData::I64(vec![2, -2, 300, -300, 0, i64::MAX, i64::MIN, 0])
    );
    assert_eq!(
        c(DType::Bool),
        TensorData::Bool(vec![true, true, true, true, true, true, true, true])
    );
    let z = f32t(&[2], &[0.0, -0.0]);
    assert_eq!(
        eval1(Op::Convert { to: DType::Bool }, &[&z]).data,
        TensorData::Bool(vec![false, false])
    );
    let big = f32t(&[1], &[3e9]);
    assert_eq!(
        eval1(Op::Convert { to: DType::I32 }, &[&big]).data,
        TensorData::I32(vec![i32::MAX])
    );
}

#[test]
fn convert_between_ints_bools_and_floats() {
    let x = i32t(&[5], &[300, -1, 0, 16_777_217, 16_777_219]);
    assert_eq!(
        eval1(Op::Convert { to: DType::I8 }, &[&x]).data,
        TensorData::I8(vec![44, -1, 0, 1, 3])
    );
    assert_eq!(
        eval1(Op::Convert { to: DType::U8 }, &[&x]).data,
        TensorData::U8(vec![44, 255, 0, 1, 3])
    );
    assert_eq!(
        eval1(Op::Convert { to: DType::Bool }, &[&x]).data,
        TensorData::Bool(vec![true, true, false, true, true])
    );
    // 2^24 + 1 is a tie between 2^24 and 2^24 + 2: even is 2^24; 2^24 + 3 goes to 2^24 + 4.
    let f = eval1(Op::Convert { to: DType::F32 }, &[&x]);
    assert_f32_bits(f32s(&f), &[300.0, -1.0, 0.0, 16_777_216.0, 16_777_220.0]);
    let b = boolt(&[2], &[true, false]);
    assert_f32_eq(
        f32s(&eval1(Op::Convert { to: DType::F32 }, &[&b])),
        &[1.0, 0.0],
    );
    assert_eq!(
        eval1(Op::Convert { to: DType::I64 }, &[&b]).data,
        TensorData::I64(vec![1, 0])
    );
    assert_eq!(eval1(Op::Convert { to: DType::Bool }, &[&b]).data, b.data);
    assert_eq!(
        eval1(Op::Convert { to: DType::BF16 }, &[&b]).data,
        TensorData::BF16(vec![bf16::ONE, bf16::ZERO])
    );
    // i64 -> bf16 is one correct rounding: 2^60 + 2^52 + 1 is just above the tie between
    // 2^60 and 2^60 + 2^53 (bf16's step there), so it rounds up. Going through f64 with
    // round-to-nearest would land exactly on the tie and round down to 2^60.
    let v = t(
        &[2],
        TensorData::I64(vec![(1 << 60) + (1 << 52) + 1, (1 << 60) + (1 << 52)]),
    );
    let r = eval1(Op::Convert { to: DType::BF16 }, &[&v]);
    let up = bf16::from_f64(2f64.powi(60) + 2f64.powi(53));
    assert_eq!(
        r.data,
        TensorData::BF16(vec![up, bf16::from_f64(2f64.powi(60))])
    );
    let u = u8t(&[2], &[255, 7]);
    assert_eq!(
        eval1(Op::Convert { to: DType::I8 }, &[&u]).data,
        TensorData::I8(vec![-1, 7])
    );
    let i = i8t(&[1], &[-1]);
    assert_eq!(
        eval1(Op::Convert { to: DType::I64 }, &[&i]).data,
        TensorData::I64(vec![-1])
    );
}

#[test]
fn convert_between_floats_rounds_to_nearest_even() {
    // bf16 step at 1.0 is 2^-7: 1 + 2^-8 ties to 1.0, 1 + 3 * 2^-8 ties up to 1 + 2^-6,
    // 1 + 2^-8 + 2^-20 is above the tie.
    let x = f32t(
        &[4],
        &[
            1.0 + 2f32.powi(-8),
            1.0 + 3.0 * 2f32.powi(-8),
            1.0 + 2f32.powi(-8) + 2f32.powi(-20),
            f32::NAN,
        ],
    );
    let b = eval1(Op::Convert { to: DType::BF16 }, &[&x]);
    let TensorData::BF16(v) = &b.data else {
        panic!("bf16 expected")
    };
    assert_eq!(v[0].to_bits(), 0x3F80);
    assert_eq!(v[1].to_bits(), 0x3F82);
    assert_eq!(v[2].to_bits(), 0x3F81);
    assert!(v[3].is_nan());
    // f16 step at 1.0 is 2^-10; max is 65504; 65520 is the tie to infinity.
    let x = f32t(
        &[5],
        &[
            1.0 + 2f32.powi(-11),
            1.0 + 3.0 * 2f32.powi(-11),
            65519.0,
            65520.0,
            1e-8,
        ],
    );
    let h = eval1(Op::Convert { to: DType::F16 }, &[&x]);
    let TensorData::F16(v) = &h.data else {
        panic!("f16 expected")
    };
    let bits: Vec<u16> = v.iter().map(|h| h.to_bits()).collect();
    // 1e-8 is below half the smallest subnormal 2^-24 (5.96e-8) / 2 = 2.98e-8: zero.
    assert_eq!(bits, vec![0x3C00, 0x3C02, 0x7BFF, 0x7C00, 0x0000]);
    // Widening is exact, and f16 -> bf16 rounds once.
    let back = eval1(Op::Convert { to: DType::F32 }, &[&h]);
    assert_f32_bits(
        f32s(&back),
        &[1.0, 1.0 + 2f32.powi(-9), 65504.0, f32::INFINITY, 0.0],
    );
    let hb = eval1(
        Op::Convert { to: DType::BF16 },
        &[&f16t(&[1], &[1.0 + 2f32.powi(-8) + 2f32.powi(-10)])],
    );
    assert_eq!(hb.data, TensorData::BF16(vec![bf16::from_bits(0x3F81)]));
}

/// Random shapes of rank 0..=4 where each operand's dim is the full size, 1, or missing
/// (lower rank), checked against an unravel/ravel index formula.
#[test]
fn random_broadcasts_match_index_formula() {
    let mut rng = Rng(99);
    for case in 0..200 {
        let rank = rng.below(5);
        let full: Vec<usize> = (0..rank).map(|_| rng.below(4)).collect();
        let pick = |rng: &mut Rng| -> Vec<usize> {
            let mut s: Vec<usize> = full
                .iter()
                .map(|&d| if rng.below(3) == 0 { 1 } else { d })
                .collect();
            let drop = rng.below(s.len() + 1);
            s.drain(..drop);
            s
        };
        let (sa, sb) = (pick(&mut rng), pick(&mut rng));
        let rank = sa.len().max(sb.len());
        let va = rng.vec(sa.iter().product());
        let vb = rng.vec(sb.iter().product());
        let r = binary(BinaryOp::Sub, &f32t(&sa, &va), &f32t(&sb, &vb));
        // Output dim: the max over operands (a 0 wins over 1: numpy).
        let out: Vec<usize> = (0..rank)
            .map(|d| {
                let get = |s: &[usize]| (d + s.len()).checked_sub(rank).map_or(1, |j| s[j]);
                let (x, y) = (get(&sa), get(&sb));
                if x == 1 { y } else { x }
            })
            .collect();
        assert_eq!(r.shape, out, "case {case}: {sa:?} - {sb:?}");
        let ravel = |s: &[usize], idx: &[usize]| {
            let lead = rank - s.len();
            s.iter().enumerate().fold(0, |acc, (j, &d)| {
                acc * d + if d == 1 { 0 } else { idx[lead + j] }
            })
        };
        let total: usize = out.iter().product();
        let want: Vec<f32> = (0..total)
            .map(|flat| {
                let mut idx = vec![0; rank];
                let mut rest = flat;
                for d in (0..rank).rev() {
                    idx[d] = rest % out[d];
                    rest /= out[d];
                }
                va[ravel(&sa, &idx)] - vb[ravel(&sb, &idx)]
            })
            .collect();
        assert_f32_bits(f32s(&r), &want);
    }
}
