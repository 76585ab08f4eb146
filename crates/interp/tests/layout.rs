//! Transpose, Reshape, Broadcast, Unsqueeze, Squeeze, Concat, ShapeOf, Gather,
//! Identity and Constant.

mod common;

use common::*;
use snipjit_interp::OpError;
use snipjit_ir::{DType, Op, TensorData};

#[test]
fn transpose_matches_index_formula() {
    let (a, b, c) = (2, 3, 4);
    let v: Vec<f32> = (0..a * b * c).map(|i| i as f32).collect();
    let x = f32t(&[a, b, c], &v);
    let r = eval1(
        Op::Transpose {
            perm: vec![2, 0, 1],
        },
        &[&x],
    );
    assert_eq!(r.shape, vec![c, a, b]);
    let mut want = Vec::new();
    for k in 0..c {
        for i in 0..a {
            for j in 0..b {
                want.push(v[(i * b + j) * c + k]);
            }
        }
    }
    assert_f32_eq(f32s(&r), &want);
    let m = i64t(&[2, 3], &[1, 2, 3, 4, 5, 6]);
    let r = eval1(Op::Transpose { perm: vec![1, 0] }, &[&m]);
    assert_eq!(r.data, TensorData::I64(vec![1, 4, 2, 5, 3, 6]));
    let e = f32t(&[0, 2], &[]);
    assert_eq!(
        eval1(Op::Transpose { perm: vec![1, 0] }, &[&e]).shape,
        vec![2, 0]
    );
    for perm in [vec![0], vec![0, 0], vec![0, 2]] {
        assert!(matches!(
            eval_err(Op::Transpose { perm }, &[&m]),
            OpError::Shape(_)
        ));
    }
}

#[test]
fn reshape_zero_and_minus_one() {
    let x = f32t(&[2, 3, 4], &(0..24).map(|i| i as f32).collect::<Vec<_>>());
    let case = |shape: &[i64], allow_zero: bool| {
        eval1(
            Op::Reshape { allow_zero },
            &[&x, &i64t(&[shape.len()], shape)],
        )
        .shape
    };
    assert_eq!(case(&[6, 4], false), vec![6, 4]);
    assert_eq!(case(&[-1], false), vec![24]);
    assert_eq!(case(&[0, -1], false), vec![2, 12]);
    assert_eq!(case(&[0, 0, 2, 2], false), vec![2, 3, 2, 2]);
    assert_eq!(case(&[4, -1, 3], false), vec![4, 2, 3]);
    let r = eval1(
        Op::Reshape { allow_zero: false },
        &[&x, &i64t(&[2], &[4, 6])],
    );
    assert_eq!(r.data, x.data, "reshape keeps row-major order");
    // allow_zero: 0 is a real zero-size dim.
    let e = f32t(&[0, 3], &[]);
    let r = eval1(
        Op::Reshape { allow_zero: true },
        &[&e, &i64t(&[3], &[3, 0, 5])],
    );
    assert_eq!(r.shape, vec![3, 0, 5]);
    let r = eval1(
        Op::Reshape { allow_zero: false },
        &[&e, &i64t(&[2], &[0, 7])],
    );
    assert_eq!(r.shape, vec![0, 7]);
}

#[test]
fn reshape_errors() {
    let x = f32t(&[2, 3], &[0.0; 6]);
    let bad = |shape: &[i64], allow_zero: bool| {
        eval_err(
            Op::Reshape { allow_zero },
            &[&x, &i64t(&[shape.len()], shape)],
        )
    };
    for (shape, allow_zero) in [
        (&[4, 2][..], false),
        (&[-1, -1][..], false),
        (&[-1, 4][..], false),
        (&[0, 0, 0][..], false),
        (&[-2, 3][..], false),
        (&[0, -1][..], true),
        (&[0, 6][..], true),
    ] {
        assert!(
            matches!(bad(shape, allow_zero), OpError::Shape(_)),
            "{shape:?} {allow_zero}"
        );
    }
    assert_eq!(
        eval_err(
            Op::Reshape { allow_zero: false },
            &[&x, &i32t(&[2], &[3, 2])]
        ),
        OpError::UnsupportedDType {
            dtype: DType::I32,
            what: "Reshape shape"
        }
    );
    assert!(matches!(
        eval_err(
            Op::Reshape { allow_zero: false },
            &[&x, &i64t(&[1, 2], &[3, 2])]
        ),
        OpError::Shape(_)
    ));
    assert_eq!(
        eval_err(Op::Reshape { allow_zero: false }, &[&x]),
        OpError::Arity {
            expected: 2,
            got: 1
        }
    );
}

#[test]
fn broadcast_is_bidirectional() {
    let x = f32t(&[3, 1], &[1.0, 2.0, 3.0]);
    let r = eval1(Op::Broadcast, &[&x, &i64t(&[3], &[2, 1, 4])]);
    assert_eq!(r.shape, vec![2, 3, 4]);
    let mut want = Vec::new();
    for _ in 0..2 {
        for v in [1.0, 2.0, 3.0] {
            want.extend([v; 4]);
        }
    }
    assert_f32_eq(f32s(&r), &want);
    // A target smaller than the input keeps the input's dims.
    let r = eval1(Op::Broadcast, &[&x, &i64t(&[1], &[1])]);
    assert_eq!(r.shape, vec![3, 1]);
    let r = eval1(Op::Broadcast, &[&boolt(&[], &[true]), &i64t(&[2], &[2, 0])]);
    assert_eq!(r.shape, vec![2, 0]);
    let r = eval1(Op::Broadcast, &[&x, &i64t(&[1], &[2])]);
    assert_eq!(r.shape, vec![3, 2]);
    assert_f32_eq(f32s(&r), &[1.0, 1.0, 2.0, 2.0, 3.0, 3.0]);
    assert_eq!(
        eval_err(Op::Broadcast, &[&x, &i64t(&[2], &[2, 2])]),
        OpError::Broadcast {
            a: vec![3, 1],
            b: vec![2, 2]
        }
    );
    assert!(matches!(
        eval_err(Op::Broadcast, &[&x, &i64t(&[1], &[-1])]),
        OpError::Shape(_)
    ));
    assert!(matches!(
        eval_err(
            Op::Broadcast,
            &[&x, &i64t(&[3], &[1 << 31, 1 << 31, 1 << 31])]
        ),
        OpError::TooLarge { .. } | OpError::Broadcast { .. }
    ));
    assert!(matches!(
        eval_err(
            Op::Broadcast,
            &[&f32t(&[1], &[0.0]), &i64t(&[3], &[1 << 20, 1 << 20, 16])]
        ),
        OpError::TooLarge { .. }
    ));
}

#[test]
fn unsqueeze_and_squeeze() {
    let x = i32t(&[2, 3], &[1, 2, 3, 4, 5, 6]);
    let u = eval1(Op::Unsqueeze { axes: vec![0, -1] }, &[&x]);
    assert_eq!(u.shape, vec![1, 2, 3, 1]);
    assert_eq!(u.data, x.data);
    let u = eval1(Op::Unsqueeze { axes: vec![1] }, &[&x]);
    assert_eq!(u.shape, vec![2, 1, 3]);
    let s = eval1(
        Op::Squeeze { axes: vec![] },
        &[&i32t(&[1, 2, 1, 3, 1], &[0; 6])],
    );
    assert_eq!(s.shape, vec![2, 3]);
    let s = eval1(
        Op::Squeeze { axes: vec![-1, 0] },
        &[&i32t(&[1, 2, 1, 3, 1], &[0; 6])],
    );
    assert_eq!(s.shape, vec![2, 1, 3]);
    let s = eval1(Op::Squeeze { axes: vec![] }, &[&f32t(&[1], &[5.0])]);
    assert_eq!(s.shape, Vec::<usize>::new());
    assert!(matches!(
        eval_err(Op::Squeeze { axes: vec![0] }, &[&x]),
        OpError::Shape(_)
    ));
    assert!(matches!(
        eval_err(Op::Squeeze { axes: vec![2] }, &[&x]),
        OpError::Shape(_)
    ));
    assert!(matches!(
        eval_err(Op::Unsqueeze { axes: vec![4] }, &[&x]),
        OpError::Shape(_)
    ));
    assert!(matches!(
        eval_err(Op::Unsqueeze { axes: vec![1, 1] }, &[&x]),
        OpError::Shape(_)
    ));
}

#[test]
fn concat_along_each_axis() {
    let a = i32t(&[2, 2], &[1, 2, 3, 4]);
    let b = i32t(&[2, 1], &[5, 6]);
    let e = i32t(&[2, 0], &[]);
    let r = eval1(Op::Concat { axis: 1 }, &[&a, &e, &b]);
    assert_eq!(r.shape, vec![2, 3]);
    assert_eq!(r.data, TensorData::I32(vec![1, 2, 5, 3, 4, 6]));
    let c = i32t(&[1, 2], &[7, 8]);
    let r = eval1(Op::Concat { axis: -2 }, &[&a, &c]);
    assert_eq!(r.shape, vec![3, 2]);
    assert_eq!(r.data, TensorData::I32(vec![1, 2, 3, 4, 7, 8]));
    let r = eval1(Op::Concat { axis: 0 }, &[&a]);
    assert_eq!(r, a);
    assert!(matches!(
        eval_err(Op::Concat { axis: 0 }, &[&a, &b]),
        OpError::Shape(_)
    ));
    assert!(matches!(
        eval_err(Op::Concat { axis: 0 }, &[]),
        OpError::Shape(_)
    ));
    assert!(matches!(
        eval_err(Op::Concat { axis: 2 }, &[&a, &a]),
        OpError::Shape(_)
    ));
    assert!(matches!(
        eval_err(Op::Concat { axis: 0 }, &[&a, &i32t(&[4], &[0; 4])]),
        OpError::Shape(_)
    ));
    assert_eq!(
        eval_err(Op::Concat { axis: 0 }, &[&a, &f32t(&[1, 2], &[0.0; 2])]),
        OpError::DTypeMismatch {
            a: DType::I32,
            b: DType::F32
        }
    );
}

#[test]
fn shape_of_identity_constant() {
    let x = f32t(&[2, 0, 5], &[]);
    let s = eval1(Op::ShapeOf, &[&x]);
    assert_eq!(s, i64t(&[3], &[2, 0, 5]));
    assert_eq!(eval1(Op::ShapeOf, &[&f32t(&[], &[1.0])]), i64t(&[0], &[]));
    let y = f32t(&[2], &[1.0, f32::NAN]);
    let id = eval1(Op::Identity, &[&y]);
    assert_f32_bits(f32s(&id), f32s(&y));
    let c = eval1(Op::Constant(i8t(&[2], &[3, 4])), &[]);
    assert_eq!(c, i8t(&[2], &[3, 4]));
    assert_eq!(
        eval_err(Op::Identity, &[&y, &y]),
        OpError::Arity {
            expected: 1,
            got: 2
        }
    );
    assert!(matches!(
        eval_err(Op::Parameter, &[]),
        OpError::Unsupported(_)
    ));
}

#[test]
fn gather_with_negative_and_nd_indices() {
    let data = f32t(&[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    // axis 0, indices [2, 2] -> [2, 2, 2].
    let idx = i64t(&[2, 2], &[0, 1, -1, 0]);
    let r = eval1(Op::Gather { axis: 0 }, &[&data, &idx]);
    assert_eq!(r.shape, vec![2, 2, 2]);
    assert_f32_eq(f32s(&r), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 1.0, 2.0]);
    // axis 1 with i32 indices -> [3, 3].
    let idx = i32t(&[3], &[1, 0, -2]);
    let r = eval1(Op::Gather { axis: -1 }, &[&data, &idx]);
    assert_eq!(r.shape, vec![3, 3]);
    assert_f32_eq(f32s(&r), &[2.0, 1.0, 1.0, 4.0, 3.0, 3.0, 6.0, 5.0, 5.0]);
    // A scalar index removes the axis.
    let r = eval1(Op::Gather { axis: 0 }, &[&data, &i64t(&[], &[1])]);
    assert_eq!(r.shape, vec![2]);
    assert_f32_eq(f32s(&r), &[3.0, 4.0]);
    // Empty indices, and gather from an embedding table of bools.
    let r = eval1(Op::Gather { axis: 0 }, &[&data, &i64t(&[0], &[])]);
    assert_eq!(r.shape, vec![0, 2]);
    let b = boolt(&[2, 2], &[true, false, false, true]);
    let r = eval1(Op::Gather { axis: 0 }, &[&b, &i64t(&[1], &[1])]);
    assert_eq!(r.data, TensorData::Bool(vec![false, true]));
}

#[test]
fn gather_errors() {
    let data = f32t(&[3, 2], &[0.0; 6]);
    assert_eq!(
        eval_err(Op::Gather { axis: 0 }, &[&data, &i64t(&[2], &[0, 3])]),
        OpError::IndexOutOfRange {
            index: 3,
            axis: 0,
            size: 3
        }
    );
    assert_eq!(
        eval_err(Op::Gather { axis: 1 }, &[&data, &i64t(&[1], &[-3])]),
        OpError::IndexOutOfRange {
            index: -3,
            axis: 1,
            size: 2
        }
    );
    assert_eq!(
        eval_err(Op::Gather { axis: 0 }, &[&data, &i64t(&[1], &[i64::MIN])]),
        OpError::IndexOutOfRange {
            index: i64::MIN,
            axis: 0,
            size: 3
        }
    );
    assert_eq!(
        eval_err(Op::Gather { axis: 0 }, &[&data, &f32t(&[1], &[0.0])]),
        OpError::UnsupportedDType {
            dtype: DType::F32,
            what: "Gather indices"
        }
    );
    assert!(matches!(
        eval_err(Op::Gather { axis: 2 }, &[&data, &i64t(&[1], &[0])]),
        OpError::Shape(_)
    ));
    let empty = f32t(&[0, 2], &[]);
    assert_eq!(
        eval_err(Op::Gather { axis: 0 }, &[&empty, &i64t(&[1], &[0])]),
        OpError::IndexOutOfRange {
            index: 0,
            axis: 0,
            size: 0
        }
    );
}

#[test]
fn malformed_and_absurd_inputs_are_errors() {
    // The fields are public, so a tensor can disagree with its own shape.
    let bad = snipjit_ir::Tensor {
        shape: vec![3],
        data: TensorData::F32(vec![1.0]),
    };
    assert!(matches!(eval_err(Op::Identity, &[&bad]), OpError::Shape(_)));
    // Empty, but with dims whose product overflows: rejected before any loop runs.
    let absurd = snipjit_ir::Tensor {
        shape: vec![1 << 40, 0, 1 << 40],
        data: TensorData::F32(vec![]),
    };
    assert!(matches!(
        eval_err(Op::Softmax { axis: 1 }, &[&absurd]),
        OpError::TooLarge { .. }
    ));
    // Empty outputs with huge outer dims return at once.
    let wide = f32t(&[1 << 20, 0, 1 << 20], &[]);
    let r = eval1(Op::Softmax { axis: 2 }, &[&wide]);
    assert_eq!(r.shape, vec![1 << 20, 0, 1 << 20]);
    let r = eval1(Op::Gather { axis: 1 }, &[&wide, &i64t(&[0], &[])]);
    assert_eq!(r.shape, vec![1 << 20, 0, 1 << 20]);
    let r = eval1(Op::Concat { axis: 0 }, &[&wide, &wide]);
    assert_eq!(r.shape, vec![2 << 20, 0, 1 << 20]);
    let m = f32t(&[1 << 20, 1 << 20, 0, 2], &[]);
    let r = eval1(
        Op::MatMul {
            transpose_a: false,
            transpose_b: false,
        },
        &[&m, &f32t(&[2, 3], &[0.0; 6])],
    );
    assert_eq!(r.shape, vec![1 << 20, 1 << 20, 0, 3]);
}
