//! The three computation domains: every float dtype is computed in `f64`, every integer
//! dtype in wrapping `i64`, bool as bool. Results are rounded (floats) or wrapped (ints)
//! back to the dtype once, at the end.

use snipjit_ir::{DType, TensorData};

use crate::round::{f64_to_bf16, f64_to_f16, f64_to_f32, i64_to_f64_round_odd};

/// A tensor's elements lifted into their computation domain.
#[derive(Debug)]
pub(crate) enum Num {
    F(Vec<f64>),
    I(Vec<i64>),
    B(Vec<bool>),
}

/// Lifts the elements of `d` into their domain (exactly: every dtype fits).
pub(crate) fn lift(d: &TensorData) -> Num {
    match d {
        TensorData::F32(v) => Num::F(v.iter().map(|&x| f64::from(x)).collect()),
        TensorData::BF16(v) => Num::F(v.iter().map(|x| x.to_f64()).collect()),
        TensorData::F16(v) => Num::F(v.iter().map(|x| x.to_f64()).collect()),
        TensorData::I8(v) => Num::I(v.iter().map(|&x| i64::from(x)).collect()),
        TensorData::U8(v) => Num::I(v.iter().map(|&x| i64::from(x)).collect()),
        TensorData::I32(v) => Num::I(v.iter().map(|&x| i64::from(x)).collect()),
        TensorData::I64(v) => Num::I(v.clone()),
        TensorData::Bool(v) => Num::B(v.clone()),
    }
}

/// Rounds `f64` results to the float `dtype` (nearest even).
pub(crate) fn from_f64s(dtype: DType, v: impl Iterator<Item = f64>) -> TensorData {
    match dtype {
        DType::F32 => TensorData::F32(v.map(f64_to_f32).collect()),
        DType::BF16 => TensorData::BF16(v.map(f64_to_bf16).collect()),
        DType::F16 => TensorData::F16(v.map(f64_to_f16).collect()),
        // Integer and bool targets are Convert's business; reaching here is a bug.
        _ => unreachable!("from_f64s called with non-float dtype {dtype}"),
    }
}

/// Wraps `i64` results to the integer `dtype` (two's complement truncation).
pub(crate) fn from_i64s(dtype: DType, v: impl Iterator<Item = i64>) -> TensorData {
    match dtype {
        DType::I8 => TensorData::I8(v.map(|x| x as i8).collect()),
        DType::U8 => TensorData::U8(v.map(|x| x as u8).collect()),
        DType::I32 => TensorData::I32(v.map(|x| x as i32).collect()),
        DType::I64 => TensorData::I64(v.collect()),
        _ => unreachable!("from_i64s called with non-integer dtype {dtype}"),
    }
}

/// Converts lifted values to `to` with Convert's rules: float to int truncates toward
/// zero and saturates (NaN gives 0), int to int wraps, int to float rounds to nearest,
/// anything to bool is `x != 0`, bool to numbers is 0/1.
pub(crate) fn convert(x: &Num, to: DType) -> TensorData {
    match (x, to) {
        (Num::F(v), DType::F32 | DType::BF16 | DType::F16) => from_f64s(to, v.iter().copied()),
        (Num::I(v), DType::F32 | DType::BF16 | DType::F16) => {
            from_f64s(to, v.iter().map(|&i| i64_to_f64_round_odd(i)))
        }
        (Num::B(v), DType::F32 | DType::BF16 | DType::F16) => {
            from_f64s(to, v.iter().map(|&b| f64::from(u8::from(b))))
        }
        // `as` from f64 to an integer type truncates, saturates and maps NaN to 0.
        (Num::F(v), DType::I8) => TensorData::I8(v.iter().map(|&f| f as i8).collect()),
        (Num::F(v), DType::U8) => TensorData::U8(v.iter().map(|&f| f as u8).collect()),
        (Num::F(v), DType::I32) => TensorData::I32(v.iter().map(|&f| f as i32).collect()),
        (Num::F(v), DType::I64) => TensorData::I64(v.iter().map(|&f| f as i64).collect()),
        (Num::I(v), DType::I8 | DType::U8 | DType::I32 | DType::I64) => {
            from_i64s(to, v.iter().copied())
        }
        (Num::B(v), DType::I8 | DType::U8 | DType::I32 | DType::I64) => {
            from_i64s(to, v.iter().map(|&b| i64::from(b)))
        }
        (Num::F(v), DType::Bool) => TensorData::Bool(v.iter().map(|&f| f != 0.0).collect()),
        (Num::I(v), DType::Bool) => TensorData::Bool(v.iter().map(|&i| i != 0).collect()),
        (Num::B(v), DType::Bool) => TensorData::Bool(v.clone()),
    }
}

/// numpy `maximum`: NaN if either operand is NaN.
pub(crate) fn fmax(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a >= b {
        a
    } else {
        b
    }
}

/// numpy `minimum`: NaN if either operand is NaN.
pub(crate) fn fmin(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a <= b {
        a
    } else {
        b
    }
}
