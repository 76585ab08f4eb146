//! Elementwise ops: unary, binary (numpy broadcasting), Select and Convert.

use std::f64::consts::{FRAC_1_SQRT_2, FRAC_2_PI};

use snipjit_ir::{BinaryOp, DType, GeluApprox, Tensor, TensorData, UnaryOp};

use crate::OpError;
use crate::index::{Strided, broadcast_pair, checked_numel};
use crate::num::{Num, convert as convert_num, fmax, fmin, from_f64s, from_i64s, lift};

/// A unary op on a tensor of any shape.
pub(crate) fn unary(op: UnaryOp, x: &Tensor) -> Result<Tensor, OpError> {
    let dtype = x.dtype();
    let unsupported = || OpError::UnsupportedDType {
        dtype,
        what: op.name(),
    };
    if matches!(op, UnaryOp::Not) != (dtype == DType::Bool) {
        return Err(unsupported());
    }
    let data = match lift(&x.data) {
        Num::F(v) => from_f64s(dtype, v.into_iter().map(|x| unary_f64(op, x))),
        Num::I(v) => {
            let f = unary_i64(op).ok_or_else(unsupported)?;
            from_i64s(dtype, v.into_iter().map(f))
        }
        Num::B(v) => match op {
            UnaryOp::Not => TensorData::Bool(v.into_iter().map(|b| !b).collect()),
            _ => return Err(unsupported()),
        },
    };
    Ok(Tensor {
        shape: x.shape.clone(),
        data,
    })
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// `ln(1 + e^x)` without overflow: `max(x, 0) + ln(1 + e^-|x|)`.
fn softplus(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

fn relu6(x: f64) -> f64 {
    fmin(fmax(x, 0.0), 6.0)
}

/// A float unary op in f64. Not (bool only) never gets here: the caller rejects it;
/// it maps to NaN only so that this match stays total.
fn unary_f64(op: UnaryOp, x: f64) -> f64 {
    match op {
        UnaryOp::Abs => x.abs(),
        UnaryOp::Neg => -x,
        UnaryOp::Relu => fmax(x, 0.0),
        UnaryOp::Clamp { min, max } => fmin(fmax(x, f64::from(min)), f64::from(max)),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Reciprocal => 1.0 / x,
        UnaryOp::Erf => libm::erf(x),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Sigmoid => sigmoid(x),
        UnaryOp::Gelu(GeluApprox::Erf) => 0.5 * x * (1.0 + libm::erf(x * FRAC_1_SQRT_2)),
        UnaryOp::Gelu(GeluApprox::Tanh) => {
            let inner = FRAC_2_PI.sqrt() * (x + 0.044715 * x * x * x);
            0.5 * x * (1.0 + inner.tanh())
        }
        UnaryOp::Swish { beta } => x * sigmoid(f64::from(beta) * x),
        UnaryOp::HSwish => x * relu6(x + 3.0) / 6.0,
        UnaryOp::HSigmoid => relu6(x + 3.0) / 6.0,
        UnaryOp::Mish => x * softplus(x).tanh(),
        UnaryOp::Elu { alpha } => {
            if x >= 0.0 {
                x
            } else {
                f64::from(alpha) * x.exp_m1()
            }
        }
        UnaryOp::LeakyRelu { alpha } => {
            if x >= 0.0 {
                x
            } else {
                f64::from(alpha) * x
            }
        }
        UnaryOp::Softplus => softplus(x),
        UnaryOp::Floor => x.floor(),
        UnaryOp::Ceil => x.ceil(),
        UnaryOp::Round => x.round_ties_even(),
        UnaryOp::Sign => {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                x // 0, -0 or NaN
            }
        }
        UnaryOp::Not => f64::NAN,
    }
}

/// The integer version of a unary op, if it has one (wrapping in i64; the caller wraps
/// again to the dtype).
fn unary_i64(op: UnaryOp) -> Option<Box<dyn Fn(i64) -> i64>> {
    Some(match op {
        UnaryOp::Abs => Box::new(i64::wrapping_abs),
        UnaryOp::Neg => Box::new(i64::wrapping_neg),
        UnaryOp::Relu => Box::new(|x| x.max(0)),
        UnaryOp::Sign => Box::new(i64::signum),
        UnaryOp::Clamp { min, max } => {
            // The integers in [min, max] are those in [ceil(min), floor(max)]; `as`
            // saturates infinite bounds to the i64 range.
            let lo = f64::from(min).ceil() as i64;
            let hi = f64::from(max).floor() as i64;
            Box::new(move |x| x.max(lo).min(hi))
        }
        _ => return None,
    })
}

/// A binary op with numpy broadcasting.
pub(crate) fn binary(op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor, OpError> {
    let dtype = a.dtype();
    if b.dtype() != dtype {
        return Err(OpError::DTypeMismatch {
            a: dtype,
            b: b.dtype(),
        });
    }
    let shape = broadcast_pair(&a.shape, &b.shape)?;
    let out_dtype = op.result_dtype(dtype);
    checked_numel(&shape, out_dtype)?;
    let unsupported = || OpError::UnsupportedDType {
        dtype,
        what: op.name(),
    };
    if op.is_logical() != (dtype == DType::Bool) && !op.is_comparison() {
        return Err(unsupported());
    }
    let pairs = || Strided::broadcast(&a.shape, &shape).zip(Strided::broadcast(&b.shape, &shape));
    let data = match (lift(&a.data), lift(&b.data)) {
        (Num::F(x), Num::F(y)) => {
            if op.is_comparison() {
                TensorData::Bool(pairs().map(|(i, j)| compare(op, &x[i], &y[j])).collect())
            } else {
                from_f64s(dtype, pairs().map(|(i, j)| binary_f64(op, x[i], y[j])))
            }
        }
        (Num::I(x), Num::I(y)) => {
            if op.is_comparison() {
                TensorData::Bool(pairs().map(|(i, j)| compare(op, &x[i], &y[j])).collect())
            } else {
                let v = pairs()
                    .map(|(i, j)| binary_i64(op, x[i], y[j]))
                    .collect::<Result<Vec<i64>, OpError>>()?;
                from_i64s(dtype, v.into_iter())
            }
        }
        (Num::B(x), Num::B(y)) => {
            let f: fn(bool, bool) -> bool = match op {
                BinaryOp::And => |p, q| p & q,
                BinaryOp::Or => |p, q| p | q,
                BinaryOp::Xor => |p, q| p ^ q,
                _ if op.is_comparison() => {
                    return Ok(Tensor {
                        data: TensorData::Bool(
                            pairs().map(|(i, j)| compare(op, &x[i], &y[j])).collect(),
                        ),
                        shape,
                    });
                }
                _ => return Err(unsupported()),
            };
            TensorData::Bool(pairs().map(|(i, j)| f(x[i], y[j])).collect())
        }
        _ => unreachable!("both inputs have dtype {dtype}, so they lift to the same domain"),
    };
    Ok(Tensor { shape, data })
}

/// A comparison with IEEE semantics (every comparison with NaN is false but `!=`).
fn compare<T: PartialOrd>(op: BinaryOp, a: &T, b: &T) -> bool {
    match op {
        BinaryOp::Equal => a == b,
        BinaryOp::NotEqual => a != b,
        BinaryOp::Less => a < b,
        BinaryOp::LessEqual => a <= b,
        BinaryOp::Greater => a > b,
        BinaryOp::GreaterEqual => a >= b,
        _ => unreachable!("compare called with non-comparison {op:?}"),
    }
}

/// A float arithmetic op in f64 (comparisons and logical ops are handled elsewhere).
fn binary_f64(op: BinaryOp, a: f64, b: f64) -> f64 {
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        BinaryOp::Max => fmax(a, b),
        BinaryOp::Min => fmin(a, b),
        BinaryOp::Pow => a.powf(b),
        BinaryOp::SquaredDifference => (a - b) * (a - b),
        BinaryOp::PRelu => {
            if a < 0.0 {
                a * b
            } else {
                a
            }
        }
        // Rust's `%` on floats is C's fmod: the result has the sign of the dividend.
        BinaryOp::Mod => a % b,
        _ => unreachable!("binary_f64 called with {op:?}"),
    }
}

/// An integer arithmetic op, wrapping in i64 (the caller wraps again to the dtype, which
/// commutes with +, -, * and gives the dtype's own wrapping / and %).
fn binary_i64(op: BinaryOp, a: i64, b: i64) -> Result<i64, OpError> {
    Ok(match op {
        BinaryOp::Add => a.wrapping_add(b),
        BinaryOp::Sub => a.wrapping_sub(b),
        BinaryOp::Mul => a.wrapping_mul(b),
        BinaryOp::Div => {
            if b == 0 {
                return Err(OpError::DivisionByZero);
            }
            a.wrapping_div(b)
        }
        BinaryOp::Mod => {
            if b == 0 {
                return Err(OpError::DivisionByZero);
            }
            a.wrapping_rem(b)
        }
        BinaryOp::Max => a.max(b),
        BinaryOp::Min => a.min(b),
        BinaryOp::Pow => ipow(a, b)?,
        BinaryOp::SquaredDifference => {
            let d = a.wrapping_sub(b);
            d.wrapping_mul(d)
        }
        BinaryOp::PRelu => {
            if a < 0 {
                a.wrapping_mul(b)
            } else {
                a
            }
        }
        _ => unreachable!("binary_i64 called with {op:?}"),
    })
}

/// `base ^ exp` by repeated squaring, wrapping.
fn ipow(base: i64, exp: i64) -> Result<i64, OpError> {
    if exp < 0 {
        return Err(OpError::NegativeExponent { exponent: exp });
    }
    let (mut result, mut b, mut e) = (1i64, base, exp as u64);
    while e > 0 {
        if e & 1 == 1 {
            result = result.wrapping_mul(b);
        }
        b = b.wrapping_mul(b);
        e >>= 1;
    }
    Ok(result)
}

/// `cond ? a : b` with three-way broadcasting.
pub(crate) fn select(cond: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor, OpError> {
    let TensorData::Bool(c) = &cond.data else {
        return Err(OpError::UnsupportedDType {
            dtype: cond.dtype(),
            what: "Select condition",
        });
    };
    if a.dtype() != b.dtype() {
        return Err(OpError::DTypeMismatch {
            a: a.dtype(),
            b: b.dtype(),
        });
    }
    let shape = broadcast_pair(&broadcast_pair(&cond.shape, &a.shape)?, &b.shape)?;
    checked_numel(&shape, a.dtype())?;
    let walk = || {
        Strided::broadcast(&cond.shape, &shape)
            .zip(Strided::broadcast(&a.shape, &shape))
            .zip(Strided::broadcast(&b.shape, &shape))
    };
    macro_rules! pick {
        ($($v:ident),*) => {
            match (&a.data, &b.data) {
                $((TensorData::$v(x), TensorData::$v(y)) => TensorData::$v(
                    walk().map(|((k, i), j)| if c[k] { x[i] } else { y[j] }).collect(),
                ),)*
                _ => unreachable!("dtypes checked equal"),
            }
        };
    }
    let data = pick!(F32, BF16, F16, I8, U8, I32, I64, Bool);
    Ok(Tensor { shape, data })
}

/// Element type conversion (ONNX Cast, with the rules of [`crate::num::convert`]).
pub(crate) fn convert(x: &Tensor, to: DType) -> Result<Tensor, OpError> {
    checked_numel(&x.shape, to)?;
    Ok(Tensor {
        shape: x.shape.clone(),
        data: convert_num(&lift(&x.data), to),
    })
}
