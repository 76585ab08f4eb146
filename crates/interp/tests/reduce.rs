//! Reductions and softmax against hand values and naive loops.

mod common;

use common::*;
use half::bf16;
use snipjit_interp::OpError;
use snipjit_ir::{DType, Op, ReduceKind, TensorData};

fn reduce(kind: ReduceKind, axes: &[i64], keep_dims: bool) -> Op {
    Op::Reduce {
        kind,
        axes: axes.to_vec(),
        keep_dims,
    }
}

#[test]
fn reduce_2d_hand_values() {
    let x = f32t(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    // (kind, axes, keep_dims, output shape, output values)
    type Case<'a> = (ReduceKind, &'a [i64], bool, &'a [usize], &'a [f32]);
    let cases: &[Case] = &[
        (ReduceKind::Sum, &[1], false, &[2], &[6.0, 15.0]),
        (ReduceKind::Sum, &[0], false, &[3], &[5.0, 7.0, 9.0]),
        (ReduceKind::Sum, &[-1], true, &[2, 1], &[6.0, 15.0]),
        (ReduceKind::Sum, &[], false, &[], &[21.0]),
        (ReduceKind::Sum, &[], true, &[1, 1], &[21.0]),
        (ReduceKind::Sum, &[0, 1], false, &[], &[21.0]),
        (ReduceKind::Max, &[1], false, &[2], &[3.0, 6.0]),
        (ReduceKind::Min, &[0], true, &[1, 3], &[1.0, 2.0, 3.0]),
        (ReduceKind::Mean, &[1], false, &[2], &[2.0, 5.0]),
        (ReduceKind::Prod, &[1], false, &[2], &[6.0, 120.0]),
        (ReduceKind::Prod, &[], false, &[], &[720.0]),
    ];
    for &(kind, axes, keep, shape, want) in cases {
        let r = eval1(reduce(kind, axes, keep), &[&x]);
        assert_eq!(r.shape, shape, "{kind:?} {axes:?} {keep}");
        assert_f32_eq(f32s(&r), want);
    }
}

#[test]
fn reduce_3d_matches_naive_loops() {
    let mut rng = Rng(7);
    let (a, b, c) = (3, 4, 5);
    let v = rng.vec(a * b * c);
    let x = f32t(&[a, b, c], &v);
    // Sum over axes 0 and 2, kept as [1, 4, 1].
    let r = eval1(reduce(ReduceKind::Sum, &[0, -1], true), &[&x]);
    assert_eq!(r.shape, vec![1, b, 1]);
    let want: Vec<f32> = (0..b)
        .map(|j| {
            let mut s = 0.0f64;
            for i in 0..a {
                for k in 0..c {
                    s += f64::from(v[(i * b + j) * c + k]);
                }
            }
            s as f32
        })
        .collect();
    assert_f32_eq(f32s(&r), &want);
    // Max over axis 1.
    let r = eval1(reduce(ReduceKind::Max, &[1], false), &[&x]);
    assert_eq!(r.shape, vec![a, c]);
    for i in 0..a {
        for k in 0..c {
            let m = (0..b)
                .map(|j| v[(i * b + j) * c + k])
                .fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(f32s(&r)[i * c + k], m);
        }
    }
}

#[test]
fn reduce_accumulates_in_f64() {
    // f32 accumulation would lose the 1.
    let x = f32t(&[3], &[1e8, 1.0, -1e8]);
    assert_f32_eq(
        f32s(&eval1(reduce(ReduceKind::Sum, &[], false), &[&x])),
        &[1.0],
    );
    // bf16: 1 + 2^-8 + 2^-8 = 1 + 2^-7 exactly; a bf16 accumulator would stay at 1.
    let b = bf16t(&[3], &[1.0, 2f32.powi(-8), 2f32.powi(-8)]);
    let r = eval1(reduce(ReduceKind::Sum, &[0], false), &[&b]);
    assert_eq!(r.data, TensorData::BF16(vec![bf16::from_bits(0x3F81)]));
}

#[test]
fn reduce_nan_and_inf() {
    let nan = f32::NAN;
    let x = f32t(&[2, 2], &[1.0, nan, f32::INFINITY, 2.0]);
    let max = eval1(reduce(ReduceKind::Max, &[1], false), &[&x]);
    assert_f32_eq(f32s(&max), &[nan, f32::INFINITY]);
    let min = eval1(reduce(ReduceKind::Min, &[1], false), &[&x]);
    assert_f32_eq(f32s(&min), &[nan, 2.0]);
    let sum = eval1(reduce(ReduceKind::Sum, &[1], false), &[&x]);
    assert_f32_eq(f32s(&sum), &[nan, f32::INFINITY]);
    let y = f32t(&[2], &[f32::INFINITY, f32::NEG_INFINITY]);
    assert_f32_eq(
        f32s(&eval1(reduce(ReduceKind::Sum, &[], false), &[&y])),
        &[nan],
    );
}

#[test]
fn reduce_over_zero_size_axes() {
    let x = f32t(&[0, 3], &[]);
    let cases = [
        (ReduceKind::Sum, 0.0),
        (ReduceKind::Prod, 1.0),
        (ReduceKind::Mean, f32::NAN),
        (ReduceKind::Max, f32::NEG_INFINITY),
        (ReduceKind::Min, f32::INFINITY),
    ];
    for (kind, v) in cases {
        let r = eval1(reduce(kind, &[0], false), &[&x]);
        assert_eq!(r.shape, vec![3]);
        assert_f32_eq(f32s(&r), &[v, v, v]);
        // Reducing the other axis gives an empty output and no error, for any kind.
        let r = eval1(reduce(kind, &[1], true), &[&x]);
        assert_eq!(r.shape, vec![0, 1]);
    }
    let i = i32t(&[0, 2], &[]);
    assert_eq!(
        eval1(reduce(ReduceKind::Sum, &[0], false), &[&i]).data,
        TensorData::I32(vec![0, 0])
    );
    assert_eq!(
        eval1(reduce(ReduceKind::Prod, &[0], false), &[&i]).data,
        TensorData::I32(vec![1, 1])
    );
    for kind in [ReduceKind::Max, ReduceKind::Min, ReduceKind::Mean] {
        assert_eq!(
            eval_err(reduce(kind, &[0], false), &[&i]),
            OpError::EmptyReduction {
                what: kind.name(),
                dtype: DType::I32
            }
        );
    }
    assert_eq!(
        eval1(reduce(ReduceKind::Max, &[1], false), &[&i]).shape,
        vec![0]
    );
}

#[test]
fn reduce_integers() {
    let x = i8t(&[2, 2], &[100, 100, -7, 2]);
    assert_eq!(
        eval1(reduce(ReduceKind::Sum, &[1], false), &[&x]).data,
        TensorData::I8(vec![-56, -5])
    );
    // Mean sums in i64 (no wrap at 200) and truncates toward zero.
    assert_eq!(
        eval1(reduce(ReduceKind::Mean, &[1], false), &[&x]).data,
        TensorData::I8(vec![100, -2])
    );
    assert_eq!(
        eval1(reduce(ReduceKind::Max, &[0], false), &[&x]).data,
        TensorData::I8(vec![100, 100])
    );
    assert_eq!(
        eval1(reduce(ReduceKind::Min, &[], false), &[&x]).data,
        TensorData::I8(vec![-7])
    );
    assert_eq!(
        eval1(reduce(ReduceKind::Prod, &[0], false), &[&x]).data,
        TensorData::I8(vec![(-700i32) as i8, -56])
    );
    let big = i64t(&[2], &[i64::MAX, 1]);
    assert_eq!(
        eval1(reduce(ReduceKind::Sum, &[], false), &[&big]).data,
        TensorData::I64(vec![i64::MIN])
    );
}

#[test]
fn reduce_errors() {
    let x = f32t(&[2, 3], &[0.0; 6]);
    assert!(matches!(
        eval_err(reduce(ReduceKind::Sum, &[2], false), &[&x]),
        OpError::Shape(_)
    ));
    assert!(matches!(
        eval_err(reduce(ReduceKind::Sum, &[1, -1], false), &[&x]),
        OpError::Shape(_)
    ));
    let b = boolt(&[1], &[true]);
    assert_eq!(
        eval_err(reduce(ReduceKind::Max, &[], false), &[&b]),
        OpError::UnsupportedDType {
            dtype: DType::Bool,
            what: "ReduceMax"
        }
    );
}

/// Naive softmax of one row in f64.
fn naive_softmax(row: &[f32]) -> Vec<f64> {
    let m = row
        .iter()
        .fold(f64::NEG_INFINITY, |m, &x| m.max(f64::from(x)));
    let e: Vec<f64> = row.iter().map(|&x| (f64::from(x) - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

#[test]
fn softmax_last_axis() {
    let x = f32t(&[2, 3], &[1.0, 2.0, 3.0, 0.0, 0.0, 0.0]);
    let r = eval1(Op::Softmax { axis: -1 }, &[&x]);
    let want: Vec<f32> = naive_softmax(&[1.0, 2.0, 3.0])
        .into_iter()
        .chain(naive_softmax(&[0.0, 0.0, 0.0]))
        .map(|v| v as f32)
        .collect();
    assert_f32_eq(f32s(&r), &want);
    // Hand value: e^1 / (e^1 + e^2 + e^3) = 0.09003057317038046.
    assert_eq!(f32s(&r)[0], 0.090_030_57_f32);
    assert_eq!(f32s(&r)[3], 1.0 / 3.0);
}

#[test]
fn softmax_middle_axis_rows_sum_to_one() {
    let mut rng = Rng(11);
    let (a, b, c) = (3, 5, 4);
    let v: Vec<f32> = rng.vec(a * b * c).into_iter().map(|x| x * 20.0).collect();
    let x = f32t(&[a, b, c], &v);
    let r = eval1(Op::Softmax { axis: 1 }, &[&x]);
    let out = f32s(&r);
    for i in 0..a {
        for k in 0..c {
            let row: Vec<f32> = (0..b).map(|j| v[(i * b + j) * c + k]).collect();
            let want = naive_softmax(&row);
            let mut sum = 0.0f64;
            for j in 0..b {
                let got = out[(i * b + j) * c + k];
                assert_eq!(got, want[j] as f32);
                sum += f64::from(got);
            }
            assert!((sum - 1.0).abs() < 1e-6, "sum {sum}");
        }
    }
}

#[test]
fn softmax_is_stable_and_handles_infinities() {
    let x = f32t(
        &[3, 2],
        &[1000.0, 1000.0, f32::NEG_INFINITY, 0.0, f32::NAN, 1.0],
    );
    let r = eval1(Op::Softmax { axis: 1 }, &[&x]);
    assert_f32_eq(f32s(&r), &[0.5, 0.5, 0.0, 1.0, f32::NAN, f32::NAN]);
    let all_neg_inf = f32t(&[2], &[f32::NEG_INFINITY, f32::NEG_INFINITY]);
    let r = eval1(Op::Softmax { axis: 0 }, &[&all_neg_inf]);
    assert!(f32s(&r).iter().all(|v| v.is_nan()));
    let e = f32t(&[2, 0], &[]);
    assert_eq!(eval1(Op::Softmax { axis: 1 }, &[&e]).shape, vec![2, 0]);
    let h = bf16t(&[2], &[0.0, 0.0]);
    assert_eq!(
        eval1(Op::Softmax { axis: 0 }, &[&h]).data,
        TensorData::BF16(vec![bf16::from_f32(0.5); 2])
    );
}

#[test]
fn softmax_errors() {
    let x = f32t(&[2, 3], &[0.0; 6]);
    assert!(matches!(
        eval_err(Op::Softmax { axis: 2 }, &[&x]),
        OpError::Shape(_)
    ));
    let i = i32t(&[2], &[1, 2]);
    assert_eq!(
        eval_err(Op::Softmax { axis: 0 }, &[&i]),
        OpError::UnsupportedDType {
            dtype: DType::I32,
            what: "Softmax"
        }
    );
}
