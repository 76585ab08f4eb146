//! Helpers shared by the interpreter's integration tests: tensor builders and
//! one-op evaluation. Nothing here computes an expected value.

#![allow(dead_code)]

use half::{bf16, f16};
use snipjit_interp::{InterpError, OpError, eval_op};
use snipjit_ir::{Op, Tensor, TensorData};

pub fn t(shape: &[usize], data: TensorData) -> Tensor {
    Tensor::new(shape.to_vec(), data).expect("test tensor has a matching element count")
}

pub fn f32t(shape: &[usize], v: &[f32]) -> Tensor {
    t(shape, TensorData::F32(v.to_vec()))
}

pub fn i32t(shape: &[usize], v: &[i32]) -> Tensor {
    t(shape, TensorData::I32(v.to_vec()))
}

pub fn i64t(shape: &[usize], v: &[i64]) -> Tensor {
    t(shape, TensorData::I64(v.to_vec()))
}

pub fn i8t(shape: &[usize], v: &[i8]) -> Tensor {
    t(shape, TensorData::I8(v.to_vec()))
}

pub fn u8t(shape: &[usize], v: &[u8]) -> Tensor {
    t(shape, TensorData::U8(v.to_vec()))
}

pub fn boolt(shape: &[usize], v: &[bool]) -> Tensor {
    t(shape, TensorData::Bool(v.to_vec()))
}

/// A bf16 tensor from values that are exactly representable in bf16.
pub fn bf16t(shape: &[usize], v: &[f32]) -> Tensor {
    let data: Vec<bf16> = v.iter().map(|&x| bf16::from_f32(x)).collect();
    for (b, &x) in data.iter().zip(v) {
        assert!(b.to_f32() == x || x.is_nan(), "{x} is not exact in bf16");
    }
    t(shape, TensorData::BF16(data))
}

/// An f16 tensor from values that are exactly representable in f16.
pub fn f16t(shape: &[usize], v: &[f32]) -> Tensor {
    let data: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
    for (h, &x) in data.iter().zip(v) {
        assert!(h.to_f32() == x || x.is_nan(), "{x} is not exact in f16");
    }
    t(shape, TensorData::F16(data))
}

/// Evaluates a single-output op; panics with the error if it fails.
pub fn eval1(op: Op, inputs: &[&Tensor]) -> Tensor {
    let mut out = eval_op(&op, inputs).unwrap_or_else(|e| panic!("{op} failed: {e}"));
    assert_eq!(out.len(), 1, "{op} has one output");
    out.remove(0)
}

/// The reason a single op fails; panics if it succeeds.
pub fn eval_err(op: Op, inputs: &[&Tensor]) -> OpError {
    match eval_op(&op, inputs) {
        Err(InterpError::Op {
            node: None, reason, ..
        }) => reason,
        other => panic!("{op}: expected an op error, got {other:?}"),
    }
}

pub fn f32s(t: &Tensor) -> &[f32] {
    t.as_f32().expect("an f32 tensor")
}

/// Bitwise equality, so that NaN == NaN and 0.0 != -0.0 where it matters.
pub fn assert_f32_bits(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "lengths of {got:?} and {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let same = g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan());
        assert!(same, "element {i}: got {g:?}, want {w:?} (all: {got:?})");
    }
}

/// Equality up to NaN (NaN equals NaN, 0.0 equals -0.0).
pub fn assert_f32_eq(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "lengths of {got:?} and {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g == w || (g.is_nan() && w.is_nan()),
            "element {i}: got {g:?}, want {w:?} (all: {got:?})"
        );
    }
}

/// A small deterministic generator (xorshift64*), so random tests are reproducible.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.unit()).collect()
    }
}
