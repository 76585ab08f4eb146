//! MatMul against a naive triple loop over explicitly transposed, broadcast operands.

mod common;

use common::*;
use snipjit_interp::OpError;
use snipjit_ir::{DType, Op, Tensor, TensorData};

fn mm(ta: bool, tb: bool) -> Op {
    Op::MatMul {
        transpose_a: ta,
        transpose_b: tb,
    }
}

/// Expected `a @ b` for a `[..batch_a, r, c]` and b `[..batch_b, r, c]` (both rank >= 2),
/// written independently of the interpreter: transpose each matrix into a fresh buffer,
/// broadcast batch indices by clamping size-1 dims, then a triple loop in f64.
fn naive(
    a: &[f32],
    sa: &[usize],
    b: &[f32],
    sb: &[usize],
    ta: bool,
    tb: bool,
) -> (Vec<usize>, Vec<f32>) {
    let split = |s: &[usize]| (s[..s.len() - 2].to_vec(), s[s.len() - 2], s[s.len() - 1]);
    let (ba, ra, ca) = split(sa);
    let (bb, rb, cb) = split(sb);
    let (m, k) = if ta { (ca, ra) } else { (ra, ca) };
    let (k2, n) = if tb { (cb, rb) } else { (rb, cb) };
    assert_eq!(k, k2);
    let rank = ba.len().max(bb.len());
    let pad = |s: &[usize]| {
        let mut p = vec![1; rank - s.len()];
        p.extend_from_slice(s);
        p
    };
    let (pa, pb) = (pad(&ba), pad(&bb));
    let batch: Vec<usize> = pa.iter().zip(&pb).map(|(&x, &y)| x.max(y)).collect();
    let total: usize = batch.iter().product();
    let mut out = Vec::new();
    for flat in 0..total {
        // Unravel `flat` over `batch`, then ravel over each operand's own batch shape.
        let mut idx = vec![0; rank];
        let mut rest = flat;
        for d in (0..rank).rev() {
            idx[d] = rest % batch[d];
            rest /= batch[d];
        }
        let ravel = |p: &[usize]| {
            idx.iter()
                .zip(p)
                .fold(0, |acc, (&i, &s)| acc * s + if s == 1 { 0 } else { i })
        };
        let (oa, ob) = (ravel(&pa) * ra * ca, ravel(&pb) * rb * cb);
        let mat_a: Vec<f64> = (0..m * k)
            .map(|e| {
                let (i, p) = (e / k, e % k);
                f64::from(if ta {
                    a[oa + p * ca + i]
                } else {
                    a[oa + i * ca + p]
                })
            })
            .collect();
        let mat_b: Vec<f64> = (0..k * n)
            .map(|e| {
                let (p, j) = (e / n, e % n);
                f64::from(if tb {
                    b[ob + j * cb + p]
                } else {
                    b[ob + p * cb + j]
                })
            })
            .collect();
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
                for p in 0..k {
                    s += mat_a[i * k + p] * mat_b[p * n + j];
                }
                out.push(s as f32);
            }
        }
    }
    let mut shape = batch;
    shape.extend([m, n]);
    (shape, out)
}

#[test]
fn matmul_2x3_by_3x2_hand_values() {
    let a = f32t(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let b = f32t(&[3, 2], &[7.0, 8.0, 9.0, 10.0, 11.0, 12.0]);
    let r = eval1(mm(false, false), &[&a, &b]);
    assert_eq!(r.shape, vec![2, 2]);
    assert_f32_eq(f32s(&r), &[58.0, 64.0, 139.0, 154.0]);
    // a^T (3x2) @ a (2x3) = 3x3.
    let r = eval1(mm(true, false), &[&a, &a]);
    assert_eq!(r.shape, vec![3, 3]);
    assert_f32_eq(
        f32s(&r),
        &[17.0, 22.0, 27.0, 22.0, 29.0, 36.0, 27.0, 36.0, 45.0],
    );
    // a @ a^T = 2x2.
    let r = eval1(mm(false, true), &[&a, &a]);
    assert_f32_eq(f32s(&r), &[14.0, 32.0, 32.0, 77.0]);
}

#[test]
fn matmul_random_shapes_against_naive() {
    let mut rng = Rng(0x5eed);
    for case in 0..300 {
        let (m, k, n) = (rng.below(6) + 1, rng.below(7), rng.below(6) + 1);
        let (ta, tb) = (rng.below(2) == 1, rng.below(2) == 1);
        // Batch dims: ranks 0..=2, each dim shared, or 1 on one side (broadcast).
        let brank = rng.below(3);
        let full: Vec<usize> = (0..brank).map(|_| rng.below(3) + 1).collect();
        let mut batch_a: Vec<usize> = full
            .iter()
            .map(|&d| if rng.below(3) == 0 { 1 } else { d })
            .collect();
        let batch_b: Vec<usize> = full
            .iter()
            .map(|&d| if rng.below(3) == 0 { 1 } else { d })
            .collect();
        if rng.below(3) == 0 && !batch_a.is_empty() {
            batch_a.remove(0); // a has lower rank
        }
        let mat = |r: usize, c: usize, t: bool| if t { [c, r] } else { [r, c] };
        let mut sa = batch_a.clone();
        sa.extend(mat(m, k, ta));
        let mut sb = batch_b.clone();
        sb.extend(mat(k, n, tb));
        let va = rng.vec(sa.iter().product());
        let vb = rng.vec(sb.iter().product());
        let r = eval1(mm(ta, tb), &[&f32t(&sa, &va), &f32t(&sb, &vb)]);
        let (shape, want) = naive(&va, &sa, &vb, &sb, ta, tb);
        assert_eq!(r.shape, shape, "case {case}: {sa:?} {sb:?} ta={ta} tb={tb}");
        assert_f32_eq(f32s(&r), &want);
    }
}

#[test]
fn matmul_one_dimensional_operands() {
    let v = f32t(&[3], &[1.0, 2.0, 3.0]);
    let w = f32t(&[3], &[4.0, 5.0, 6.0]);
    // vector . vector -> scalar; the transpose flags are ignored for 1-D operands.
    for (ta, tb) in [(false, false), (true, true)] {
        let r = eval1(mm(ta, tb), &[&v, &w]);
        assert_eq!(r.shape, Vec::<usize>::new());
        assert_f32_eq(f32s(&r), &[32.0]);
    }
    let m = f32t(&[2, 3], &[1.0, 0.0, 1.0, 0.0, 1.0, 0.0]);
    // matrix @ vector -> [2].
    let r = eval1(mm(false, false), &[&m, &v]);
    assert_eq!(r.shape, vec![2]);
    assert_f32_eq(f32s(&r), &[4.0, 2.0]);
    // vector @ matrix^T -> [2]: v (3) @ m^T (3x2).
    let r = eval1(mm(false, true), &[&v, &m]);
    assert_eq!(r.shape, vec![2]);
    assert_f32_eq(f32s(&r), &[4.0, 2.0]);
    // vector @ batched matrices [2, 3, 1] -> [2, 1].
    let bm = f32t(&[2, 3, 1], &[1.0, 1.0, 1.0, 0.0, 0.0, 2.0]);
    let r = eval1(mm(false, false), &[&v, &bm]);
    assert_eq!(r.shape, vec![2, 1]);
    assert_f32_eq(f32s(&r), &[6.0, 6.0]);
    // batched matrices [2, 1, 3] @ vector -> [2, 1].
    let bm = f32t(&[2, 1, 3], &[1.0, 1.0, 1.0, 0.0, 0.0, 2.0]);
    let r = eval1(mm(false, false), &[&bm, &v]);
    assert_eq!(r.shape, vec![2, 1]);
    assert_f32_eq(f32s(&r), &[6.0, 6.0]);
}

#[test]
fn matmul_zero_sizes() {
    // K = 0: zeros.
    let a = f32t(&[2, 0], &[]);
    let b = f32t(&[0, 3], &[]);
    let r = eval1(mm(false, false), &[&a, &b]);
    assert_eq!(r.shape, vec![2, 3]);
    assert_f32_bits(f32s(&r), &[0.0; 6]);
    // M = 0 and a zero batch.
    let r = eval1(
        mm(false, false),
        &[&f32t(&[0, 2], &[]), &f32t(&[2, 3], &[0.0; 6])],
    );
    assert_eq!(r.shape, vec![0, 3]);
    let r = eval1(
        mm(false, false),
        &[&f32t(&[0, 1, 2], &[]), &f32t(&[2, 3], &[0.0; 6])],
    );
    assert_eq!(r.shape, vec![0, 1, 3]);
}

#[test]
fn matmul_integers_wrap_and_narrow_floats_round() {
    let a = i32t(&[1, 2], &[i32::MAX, 2]);
    let b = i32t(&[2, 1], &[2, 3]);
    // MAX * 2 + 6 wraps to 4.
    assert_eq!(
        eval1(mm(false, false), &[&a, &b]).data,
        TensorData::I32(vec![4])
    );
    let a = i8t(&[1, 2], &[100, 100]);
    let b = i8t(&[2, 1], &[1, 1]);
    assert_eq!(
        eval1(mm(false, false), &[&a, &b]).data,
        TensorData::I8(vec![-56])
    );
    let a = Tensor::new(vec![1, 2], TensorData::U8(vec![200, 100])).unwrap();
    let b = Tensor::new(vec![2, 1], TensorData::U8(vec![1, 1])).unwrap();
    assert_eq!(
        eval1(mm(false, false), &[&a, &b]).data,
        TensorData::U8(vec![44])
    );
    // bf16: 1 * 1 + 2^-8 * 1 + 2^-8 * 1 accumulates exactly to 1 + 2^-7 in f64.
    let a = bf16t(&[1, 3], &[1.0, 2f32.powi(-8), 2f32.powi(-8)]);
    let b = bf16t(&[3, 1], &[1.0, 1.0, 1.0]);
    let r = eval1(mm(false, false), &[&a, &b]);
    assert_eq!(
        r.data,
        TensorData::BF16(vec![half::bf16::from_bits(0x3F81)])
    );
}

#[test]
fn matmul_errors() {
    let a = f32t(&[2, 3], &[0.0; 6]);
    let b = f32t(&[2, 3], &[0.0; 6]);
    assert!(matches!(
        eval_err(mm(false, false), &[&a, &b]),
        OpError::Shape(_)
    ));
    assert!(matches!(
        eval_err(mm(false, false), &[&f32t(&[], &[1.0]), &b]),
        OpError::Shape(_)
    ));
    let x = f32t(&[2, 2, 3], &[0.0; 12]);
    let y = f32t(&[3, 3, 1], &[0.0; 9]);
    assert_eq!(
        eval_err(mm(false, false), &[&x, &y]),
        OpError::Broadcast {
            a: vec![2],
            b: vec![3]
        }
    );
    assert_eq!(
        eval_err(mm(false, false), &[&a, &i32t(&[3, 1], &[0; 3])]),
        OpError::DTypeMismatch {
            a: DType::F32,
            b: DType::I32
        }
    );
    let bl = boolt(&[1, 1], &[true]);
    assert_eq!(
        eval_err(mm(false, false), &[&bl, &bl]),
        OpError::UnsupportedDType {
            dtype: DType::Bool,
            what: "MatMul"
        }
    );
}
