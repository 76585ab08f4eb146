//! Elementwise emitters for every f32 / bool op of the graph IR.
//!
//! Each emitter writes `dst` from its sources using the scratch registers it is given.
//! A register allocator asks [`scratch_needed_unary`] / [`scratch_needed_binary`] /
//! [`scratch_needed_pow_static`] / [`scratch_needed_convert`] how many to reserve
//! (select and fma need none).
//!
//! # Aliasing rules (all emitters)
//! - `dst` may be any of the sources (in place is fine), and sources may repeat.
//! - Scratch registers must be distinct from each other, from `dst` and from every
//!   source; their contents are clobbered. Extra scratch registers are left alone.
//! - Sources are never modified (unless one of them is `dst`).
//! - On AVX-512 the emitters also clobber opmasks `k2`..`k7` (never `k1`, the tail
//!   mask); on AVX2 they never touch `ymm15` (the tail mask).
//! - Every register must be allocatable ([`crate::asm::num_allocatable_vregs`]).
//!
//! # Booleans
//! Bool values are all-ones / all-zeros 32-bit lanes on both ISAs: comparisons produce
//! them, `And`/`Or`/`Xor`/`Not` combine them, `Select` reads the sign bit of each lane.
//!
//! # Accuracy
//! Errors against libm evaluated in f64 and rounded never worse than stated (ULP of the
//! f32 result; checked in `tests/numerics.rs` on dense sweeps plus special values).
//! Exact ops (add, sub, mul, div, sqrt, min, max, abs, neg, relu, clamp, floor, ceil,
//! round, sign, comparisons, select) are correctly rounded. Results whose magnitude is
//! below `f32::MIN_POSITIVE` (denormal range) are compared with an absolute tolerance
//! of `f32::MIN_POSITIVE` instead of ULPs, and results below 2^-100 (whose intermediates
//! can be denormal) also pass with an absolute error up to 2^-142.
//!
//! | op | method | stated max error (tested) | measured on the test sweep |
//! |---|---|---|---|
//! | Exp | Cody-Waite reduction, `1 + r + r^2 P(r)` with a degree-4 relative-error fit P (3.6e-9), `vscalefps` (AVX-512) / two-step 2^n (AVX2) | 1 ULP; +inf above 88.72, 0 below -103.97, NaN kept | 0.87 |
//! | Log | exponent/mantissa split at sqrt(2), Cephes degree-8 polynomial, denormals pre-scaled by 2^23 | 1 ULP; log(+-0) = -inf, log(x<0) = NaN, log(inf) = inf | 0.81 |
//! | Tanh | Cephes odd polynomial for \|x\| < 0.625, `1 - 2/(e^{2\|x\|}+1)` above | 2 ULP | 1.31 |
//! | Sigmoid | `(x >= 0 ? 1 : e) / (1 + e)`, `e = e^{-\|x\|}` (never overflows) | 3 ULP | 2.40 |
//! | Erf | `x P(x^2)` (degree 6 in x^2) for \|x\| < 1; `1 - e^{-x^2} t h(2t-1)`, t = 1/\|x\|, degree 11, above | 3 ULP | 2.32 |
//! | Gelu (erf) | `0.5 x (1 + erf(x/sqrt2))`, the x < 0 tail taken as `erfc` (no cancellation); `x^2/2` split exactly | 12 ULP (worst near x = -1.41, where `1 - erf` loses ~3 bits) | 10.6 |
//! | Gelu (tanh) | `x * sigmoid(2u)` as for Sigmoid | (4 + 3 \|2u\|) ULP, u the tanh argument (its f32 rounding dominates for x << 0) | |
//! | Swish / SiLU | `x * sigmoid(beta x)` as for Sigmoid; on AVX-512 one `vrangeps` gives the clamped `-\|x\|` and the numerator `x e` is a merge-masked multiply | 3.5 ULP for beta = 1; (4 + \|beta x\|) ULP otherwise | 3.06 (beta = 1) |
//! | Mish | `x n / (n + 2)`, `n = e^x (e^x + 2)` | 5 ULP | 4.31 |
//! | Elu | `alpha * expm1(x)`: Taylor polynomial for \|x\| < 0.35, `e^x - 1` below | 2 ULP | 1.32 |
//! | Softplus | `max(x,0) + log1p(e^{-\|x\|})`, log1p compensated as `log(w) + (u-(w-1))/w` | 2.5 ULP (all 2^32 inputs: 2.06 at x = -1.2617, a result just below 0.25) | 1.86 |
//! | HSwish / HSigmoid | clamp, divide by 6, multiply | 2 ULP / 1 ULP | 1.81 / 1.0 |
//! | Reciprocal, Sqrt | `vdivps`, `vsqrtps` | 0.5 ULP (correctly rounded) | 0.5 |
//! | SquaredDifference | `(a - b)^2` | 2 ULP | |
//! | Mod | `r = fma(-trunc(a/b), b, a)`, sign and zero fix-ups, `\|a\| < \|b\|` gives a | exact while \|a/b\| < 2^23; larger quotients are approximate | 0 |
//! | Pow (general) | `e^{b ln\|a\|}` with IEEE sign/special cases | (2 + 2 \|b ln\|a\|\|) ULP (the f32 argument of exp bounds it) | |
//! | Pow static | fast paths 0, 1, 2, 3, -1 and integers \|e\| <= 16 (repeated squaring); +-0.5 via sqrt | integers (1 + \|e\|) ULP; +-0.5 1.5 ULP; else as Pow | |
//!
//! Max/Min propagate NaN from either side (numpy semantics), which plain
//! `vmaxps`/`vminps` do not. Results near the overflow threshold (within the stated
//! error of `f32::MAX`) may round to infinity. Pow keeps IEEE `pow`'s special cases,
//! `pow(-inf, non-integer)` = +inf or +0 included.

pub(crate) mod math;

use snipjit_ir::{BinaryOp, DType, GeluApprox, UnaryOp};

use crate::asm::{Cond, Opnd, Shift, V2, V3, pred, round};
use crate::{Isa, VReg, VecAsm, X64Error};

pub(crate) const SIGN: u32 = 0x8000_0000;
pub(crate) const ABS: u32 = 0x7fff_ffff;

/// Scratch vector registers [`VecAsm::emit_unary`] needs for `op` on `isa`.
pub fn scratch_needed_unary(op: UnaryOp, isa: Isa) -> usize {
    let _ = isa;
    match op {
        UnaryOp::Abs
        | UnaryOp::Neg
        | UnaryOp::Sqrt
        | UnaryOp::Floor
        | UnaryOp::Ceil
        | UnaryOp::Round
        | UnaryOp::Not => 0,
        UnaryOp::Relu | UnaryOp::Reciprocal | UnaryOp::Clamp { .. } => 1,
        UnaryOp::Sign | UnaryOp::LeakyRelu { .. } | UnaryOp::HSwish | UnaryOp::HSigmoid => 2,
        UnaryOp::Exp => 3,
        UnaryOp::Sigmoid | UnaryOp::Swish { .. } | UnaryOp::Mish => 4,
        UnaryOp::Gelu(GeluApprox::Tanh) => 4,
        UnaryOp::Log | UnaryOp::Tanh | UnaryOp::Softplus => 5,
        UnaryOp::Elu { .. } => 5,
        UnaryOp::Erf | UnaryOp::Gelu(GeluApprox::Erf) => 6,
    }
}

/// Scratch vector registers [`VecAsm::emit_binary`] needs for `op` on `isa`.
pub fn scratch_needed_binary(op: BinaryOp, isa: Isa) -> usize {
    let _ = isa;
    match op {
        BinaryOp::Add
        | BinaryOp::Sub
        | BinaryOp::Mul
        | BinaryOp::Div
        | BinaryOp::SquaredDifference
        | BinaryOp::Equal
        | BinaryOp::NotEqual
        | BinaryOp::Less
        | BinaryOp::LessEqual
        | BinaryOp::Greater
        | BinaryOp::GreaterEqual
        | BinaryOp::And
        | BinaryOp::Or
        | BinaryOp::Xor => 0,
        BinaryOp::Max | BinaryOp::Min => 1,
        BinaryOp::PRelu => 2,
        BinaryOp::Mod => 4,
        BinaryOp::Pow => 6,
    }
}

/// Scratch vector registers [`VecAsm::emit_pow_static`] needs for `exponent`.
pub fn scratch_needed_pow_static(exponent: f32, isa: Isa) -> usize {
    let _ = isa;
    match pow_kind(exponent) {
        PowKind::Zero | PowKind::One | PowKind::Two => 0,
        PowKind::Three | PowKind::MinusOne => 1,
        PowKind::Half | PowKind::MinusHalf => 2,
        PowKind::Int(_) => 2,
        PowKind::General => 6,
    }
}

/// Scratch vector registers [`VecAsm::emit_convert`] needs.
pub fn scratch_needed_convert(from: DType, to: DType, isa: Isa) -> usize {
    let _ = isa;
    if from == to {
        return 0;
    }
    match (class(from), to) {
        (Some(Class::Float), DType::BF16 | DType::F16) => 1,
        (Some(Class::Int), DType::BF16) if from == DType::I32 => 2,
        (Some(Class::Int), DType::F16) if from == DType::I32 => 1,
        (Some(Class::Float), DType::I32 | DType::U8 | DType::I8) => 1,
        _ => 0,
    }
}

/// The register representation class of a dtype (see [`VecAsm::emit_convert`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// f32 lanes: f32, bf16, f16.
    Float,
    /// i32 lanes: i32, u8 (zero-extended), i8 (sign-extended).
    Int,
    /// All-ones / all-zeros lanes: bool.
    Mask,
}

fn class(d: DType) -> Option<Class> {
    match d {
        DType::F32 | DType::BF16 | DType::F16 => Some(Class::Float),
        DType::I32 | DType::U8 | DType::I8 => Some(Class::Int),
        DType::Bool => Some(Class::Mask),
        DType::I64 => None,
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum PowKind {
    Zero,
    One,
    Two,
    Three,
    Half,
    MinusHalf,
    MinusOne,
    Int(i32),
    General,
}

fn pow_kind(e: f32) -> PowKind {
    if e == 0.0 {
        PowKind::Zero
    } else if e == 1.0 {
        PowKind::One
    } else if e == 2.0 {
        PowKind::Two
    } else if e == 3.0 {
        PowKind::Three
    } else if e == 0.5 {
        PowKind::Half
    } else if e == -0.5 {
        PowKind::MinusHalf
    } else if e == -1.0 {
        PowKind::MinusOne
    } else if e.fract() == 0.0 && e.abs() <= 16.0 {
        PowKind::Int(e as i32)
    } else {
        PowKind::General
    }
}

impl VecAsm {
    /// Validates registers for an emitter: all allocatable, scratch distinct from each
    /// other and from dst/sources, enough scratch.
    fn check_regs(
        &self,
        op: &str,
        dst: VReg,
        srcs: &[VReg],
        scratch: &[VReg],
        needed: usize,
    ) -> Result<(), X64Error> {
        self.check_vreg(op, dst)?;
        for &s in srcs {
            self.check_vreg(op, s)?;
        }
        if scratch.len() < needed {
            return Err(X64Error::NotEnoughScratch {
                op: op.into(),
                needed,
                got: scratch.len(),
            });
        }
        let used = &scratch[..needed];
        for (i, &s) in used.iter().enumerate() {
            self.check_vreg(op, s)?;
            if s == dst || srcs.contains(&s) || used[..i].contains(&s) {
                return Err(X64Error::BadRegister {
                    op: op.into(),
                    reason: format!(
                        "scratch register {} aliases dst, a source or another scratch",
                        s.0
                    ),
                });
            }
        }
        Ok(())
    }

    /// Emits `dst = op(src)`. See the module docs for aliasing rules and accuracy.
    pub fn emit_unary(
        &mut self,
        op: UnaryOp,
        dst: VReg,
        src: VReg,
        scratch: &[VReg],
    ) -> Result<(), X64Error> {
        let need = scratch_needed_unary(op, self.isa());
        self.check_regs(op.name(), dst, &[src], scratch, need)?;
        let s = scratch;
        let x = src;
        match op {
            UnaryOp::Abs => self.v3(V3::And, dst, x, Opnd::B(ABS)),
            UnaryOp::Neg => self.v3(V3::Xor, dst, x, Opnd::B(SIGN)),
            UnaryOp::Not => self.v3(V3::Xor, dst, x, Opnd::B(u32::MAX)),
            UnaryOp::Sqrt => self.v2(V2::Sqrt, dst, x),
            UnaryOp::Floor => self.vround(dst, x, round::FLOOR),
            UnaryOp::Ceil => self.vround(dst, x, round::CEIL),
            UnaryOp::Round => self.vround(dst, x, round::NEAREST),
            UnaryOp::Relu => {
                // max(0, x) with 0 first: vmaxps returns its second operand when either
                // is NaN, so NaN propagates.
                self.v3(V3::Xor, s[0], s[0], s[0])?;
                self.v3(V3::Max, dst, s[0], x)
            }
            UnaryOp::Reciprocal => {
                self.mov_internal(s[0], Opnd::F(1.0))?;
                self.v3(V3::Div, dst, s[0], x)
            }
            UnaryOp::Clamp { min, max } => self.clamp_keep_nan(dst, x, min, max, s[0]),
            UnaryOp::Sign => {
                self.v3(V3::And, s[0], x, Opnd::B(SIGN))?;
                self.v3(V3::Or, s[0], s[0], Opnd::F(1.0))?;
                let c = self.cmp(pred::EQ_UQ, x, Opnd::F(0.0), s[1])?;
                self.blend(dst, c, s[0], x)
            }
            UnaryOp::LeakyRelu { alpha } => {
                self.v3(V3::Mul, s[0], x, Opnd::F(alpha))?;
                if (0.0..=1.0).contains(&alpha) {
                    self.v3(V3::Max, dst, s[0], x)
                } else if alpha > 1.0 {
                    self.v3(V3::Min, dst, s[0], x)
                } else {
                    let c = self.cmp(pred::LT_OQ, x, Opnd::F(0.0), s[1])?;
                    self.blend(dst, c, x, s[0])
                }
            }
            UnaryOp::HSwish => {
                // hsigmoid(x) * x: dividing first keeps x * 6 from overflowing.
                self.v3(V3::Add, s[0], x, Opnd::F(3.0))?;
                self.clamp_keep_nan(s[0], s[0], 0.0, 6.0, s[1])?;
                self.v3(V3::Div, s[0], s[0], Opnd::F(6.0))?;
                self.v3(V3::Mul, dst, s[0], x)
            }
            UnaryOp::HSigmoid => {
                self.v3(V3::Add, s[0], x, Opnd::F(3.0))?;
                self.clamp_keep_nan(s[0], s[0], 0.0, 6.0, s[1])?;
                self.v3(V3::Div, dst, s[0], Opnd::F(6.0))
            }
            UnaryOp::Exp => self.exp_core(dst, x, 1.0, math::ExpArg::Any, [s[0], s[1], s[2]]),
            UnaryOp::Log => self.log_full(dst, x, [s[0], s[1], s[2], s[3], s[4]]),
            UnaryOp::Sigmoid => {
                // Not vrangeps here: it does not pass a NaN through on Zen 4, and
                // sigmoid's numerator (1 or e) would not carry it either.
                self.v3(V3::Or, s[0], x, Opnd::B(SIGN))?;
                self.sigmoid_from_abs(dst, x, false, 1.0, pred::LT_OQ, [s[0], s[1], s[2], s[3]])
            }
            UnaryOp::Swish { beta } => {
                let scale = beta.abs();
                let neg = if beta < 0.0 { pred::GT_OQ } else { pred::LT_OQ };
                let sc = [s[0], s[1], s[2], s[3]];
                // A NaN x gives a NaN numerator (x itself), whatever vrangeps makes of
                // it. A zero, tiny or non-finite beta keeps the general clamp inside exp.
                let clamped = if scale.is_finite() && scale >= 1e-30 {
                    self.neg_abs_for_exp(s[0], x, scale)?
                } else {
                    self.v3(V3::Or, s[0], x, Opnd::B(SIGN))?;
                    false
                };
                self.sigmoid_from_abs_clamped(dst, x, true, scale, neg, clamped, sc)
            }
            UnaryOp::Tanh => self.tanh(dst, x, [s[0], s[1], s[2], s[3], s[4]]),
            UnaryOp::Erf => self.erf_like(dst, x, false, [s[0], s[1], s[2], s[3], s[4], s[5]]),
            UnaryOp::Gelu(GeluApprox::Erf) => {
                self.erf_like(dst, x, true, [s[0], s[1], s[2], s[3], s[4], s[5]])
            }
            UnaryOp::Gelu(GeluApprox::Tanh) => self.gelu_tanh(dst, x, [s[0], s[1], s[2], s[3]]),
            UnaryOp::Mish => self.mish(dst, x, [s[0], s[1], s[2], s[3]]),
            UnaryOp::Elu { alpha } => self.elu(dst, x, alpha, [s[0], s[1], s[2], s[3], s[4]]),
            UnaryOp::Softplus => self.softplus(dst, x, [s[0], s[1], s[2], s[3], s[4]]),
        }
    }

    /// Emits `dst = a op b`. Comparisons yield bool lanes; `And`/`Or`/`Xor` take bool
    /// lanes. See the module docs for aliasing rules and accuracy.
    pub fn emit_binary(
        &mut self,
        op: BinaryOp,
        dst: VReg,
        a: VReg,
        b: VReg,
        scratch: &[VReg],
    ) -> Result<(), X64Error> {
        let need = scratch_needed_binary(op, self.isa());
        self.check_regs(op.name(), dst, &[a, b], scratch, need)?;
        let s = scratch;
        match op {
            BinaryOp::Add => self.v3(V3::Add, dst, a, b),
            BinaryOp::Sub => self.v3(V3::Sub, dst, a, b),
            BinaryOp::Mul => self.v3(V3::Mul, dst, a, b),
            BinaryOp::Div => self.v3(V3::Div, dst, a, b),
            BinaryOp::And => self.v3(V3::And, dst, a, b),
            BinaryOp::Or => self.v3(V3::Or, dst, a, b),
            BinaryOp::Xor => self.v3(V3::Xor, dst, a, b),
            BinaryOp::SquaredDifference => {
                self.v3(V3::Sub, dst, a, b)?;
                self.v3(V3::Mul, dst, dst, dst)
            }
            BinaryOp::Max | BinaryOp::Min => {
                // The interpreter's `a >= b ? a : b` (Max) / `a <= b ? a : b` (Min), NaN
                // if either is NaN. vmaxps/vminps(b, t) return t on equality (so `a`
                // for -0 vs +0) and when either is NaN: t is `a`, or `b` where `b` is
                // NaN, so a NaN on either side propagates.
                let c = self.cmp(pred::UNORD_Q, b, b, s[0])?;
                self.blend(s[0], c, a, b)?;
                let v = if op == BinaryOp::Max {
                    V3::Max
                } else {
                    V3::Min
                };
                self.v3(v, dst, b, s[0])
            }
            BinaryOp::PRelu => {
                self.v3(V3::Mul, s[0], a, b)?;
                let c = self.cmp(pred::LT_OQ, a, Opnd::F(0.0), s[1])?;
                self.blend(dst, c, a, s[0])
            }
            BinaryOp::Equal => self.compare(dst, a, b, pred::EQ_OQ),
            BinaryOp::NotEqual => self.compare(dst, a, b, pred::NEQ_UQ),
            BinaryOp::Less => self.compare(dst, a, b, pred::LT_OQ),
            BinaryOp::LessEqual => self.compare(dst, a, b, pred::LE_OQ),
            BinaryOp::Greater => self.compare(dst, a, b, pred::GT_OQ),
            BinaryOp::GreaterEqual => self.compare(dst, a, b, pred::GE_OQ),
            BinaryOp::Mod => self.fmod(dst, a, b, [s[0], s[1], s[2], s[3]]),
            BinaryOp::Pow => self.pow_dynamic(dst, a, b, [s[0], s[1], s[2], s[3], s[4], s[5]]),
        }
    }

    fn compare(&mut self, dst: VReg, a: VReg, b: VReg, p: u8) -> Result<(), X64Error> {
        let c = self.cmp(p, a, b, dst)?;
        self.cond_to_vreg(dst, c)
    }

    /// Emits `dst = cond ? a : b` per lane, `cond` a bool vector (sign bit of each lane
    /// decides). Needs no scratch; any aliasing is fine.
    pub fn emit_select(
        &mut self,
        dst: VReg,
        cond: VReg,
        a: VReg,
        b: VReg,
        scratch: &[VReg],
    ) -> Result<(), X64Error> {
        self.check_regs("Select", dst, &[cond, a, b], scratch, 0)?;
        let c = self.vreg_to_cond(cond)?;
        self.blend(dst, c, b, a)
    }

    /// Emits `dst = a * b + c` with one rounding. Needs no scratch; any aliasing is fine.
    pub fn emit_fma(
        &mut self,
        dst: VReg,
        a: VReg,
        b: VReg,
        c: VReg,
        scratch: &[VReg],
    ) -> Result<(), X64Error> {
        self.check_regs("Fma", dst, &[a, b, c], scratch, 0)?;
        if dst == c {
            self.v3(V3::Fmadd231, dst, a, b)
        } else if dst == a {
            self.v3(V3::Fmadd213, dst, b, c)
        } else if dst == b {
            self.v3(V3::Fmadd213, dst, a, c)
        } else {
            self.mov_internal(dst, Opnd::R(a))?;
            self.v3(V3::Fmadd213, dst, b, c)
        }
    }

    /// Emits an element type conversion of `src` (held as `from`) into `dst` (held as
    /// `to`), with the interpreter's Convert semantics, bit-exactly.
    ///
    /// Register representations: f32 lanes for f32, bf16 and f16 (a bf16/f16 value is
    /// held as the f32 of the same value); i32 lanes for i32, u8 (zero-extended) and i8
    /// (sign-extended); all-ones/all-zeros lanes for bool.
    ///
    /// - float -> bf16/f16 rounds to nearest even (overflow to infinity; NaN becomes
    ///   the quiet NaN `0x7fc00000` for bf16, a quiet NaN for f16); to f32 is a move.
    /// - float -> int truncates toward zero and saturates to the target's range; NaN
    ///   gives 0.
    /// - int -> float rounds to nearest even, once (i32 -> bf16 rounds to odd at 24 bits
    ///   first where the f32 conversion is inexact, so the bf16 rounding is the only one).
    /// - int -> int wraps (u8/i8 keep the low byte, zero- or sign-extended).
    /// - anything -> bool is `x != 0` (NaN is true); bool -> numbers is 0/1.
    pub fn emit_convert(
        &mut self,
        from: DType,
        to: DType,
        dst: VReg,
        src: VReg,
        scratch: &[VReg],
    ) -> Result<(), X64Error> {
        let need = scratch_needed_convert(from, to, self.isa());
        self.check_regs("Convert", dst, &[src], scratch, need)?;
        let (Some(cf), Some(ct)) = (class(from), class(to)) else {
            return Err(X64Error::Unsupported {
                op: format!("Convert {from} -> {to}"),
                isa: self.isa(),
                reason: "i64 values are not held in vector registers".into(),
            });
        };
        if from == to {
            return self.mov_internal(dst, Opnd::R(src));
        }
        let s = scratch;
        match (cf, ct) {
            (Class::Float, Class::Float) => match to {
                DType::BF16 => self.round_to_bf16(dst, src, s[0]),
                DType::F16 => self.round_to_f16(dst, src, s[0]),
                _ => self.mov_internal(dst, Opnd::R(src)),
            },
            (Class::Float, Class::Int) => self.float_to_int(dst, src, to, s[0]),
            (Class::Float, Class::Mask) => self.compare_const(dst, src, 0.0, pred::NEQ_UQ),
            (Class::Int, Class::Float) => match (from, to) {
                (DType::I32, DType::BF16) => {
                    self.i32_to_f32_round_odd(dst, src, [s[0], s[1]])?;
                    self.round_to_bf16(dst, dst, s[0])
                }
                (DType::I32, DType::F16) => {
                    // |x| >= 2^24 is infinite in f16 whichever way the f32 rounded;
                    // below, the f32 conversion is exact: one rounding either way.
                    self.v2(V2::Cvtdq2ps, dst, src)?;
                    self.round_to_f16(dst, dst, s[0])
                }
                // u8/i8 values are exact in f32, bf16 and f16.
                _ => self.v2(V2::Cvtdq2ps, dst, src),
            },
            (Class::Int, Class::Int) => match to {
                DType::U8 => self.v3(V3::And, dst, src, Opnd::B(0xFF)),
                DType::I8 => {
                    self.vshift(Shift::Sll, dst, src, 24)?;
                    self.vshift(Shift::Sra, dst, dst, 24)
                }
                // u8/i8 lanes are valid i32 lanes.
                _ => self.mov_internal(dst, Opnd::R(src)),
            },
            (Class::Int, Class::Mask) => {
                // A nonzero integer converts to a nonzero float.
                self.v2(V2::Cvtdq2ps, dst, src)?;
                self.compare_const(dst, dst, 0.0, pred::NEQ_UQ)
            }
            (Class::Mask, Class::Float) => self.v3(V3::And, dst, src, Opnd::F(1.0)),
            (Class::Mask, Class::Int) => self.v3(V3::And, dst, src, Opnd::B(1)),
            (Class::Mask, Class::Mask) => self.mov_internal(dst, Opnd::R(src)),
        }
    }

    /// f32 lanes to i32 lanes of `to` (i32, u8 or i8): NaN -> 0, truncation toward
    /// zero, saturation to the range of `to`.
    fn float_to_int(&mut self, dst: VReg, src: VReg, to: DType, s0: VReg) -> Result<(), X64Error> {
        let c = self.cmp(pred::ORD_Q, src, src, s0)?;
        self.keep_or_zero(s0, c, src)?;
        match to {
            DType::I32 => {
                // vcvttps2dq gives 0x80000000 for x >= 2^31 (and below -2^31, which is
                // the right saturation there): fix the top end to i32::MAX.
                self.v2(V2::Cvttps2dq, dst, s0)?;
                let c = self.cmp(pred::GE_OQ, s0, Opnd::F(2_147_483_648.0), s0)?;
                self.blend(dst, c, dst, Opnd::B(0x7fff_ffff))
            }
            _ => {
                let (lo, hi) = if to == DType::U8 {
                    (0.0, 255.0)
                } else {
                    (-128.0, 127.0)
                };
                self.v3(V3::Max, s0, s0, Opnd::F(lo))?;
                self.v3(V3::Min, s0, s0, Opnd::F(hi))?;
                self.v2(V2::Cvttps2dq, dst, s0)
            }
        }
    }

    /// i32 lanes to f32 lanes rounded *to odd* where the conversion is inexact
    /// (|x| >= 2^24): the magnitude is truncated to a multiple of 256 (24 significant
    /// bits at most, so the f32 conversion is exact) with bit 8 set if anything was
    /// cut. A later rounding to bf16 (8 bits) is then a single correct rounding.
    fn i32_to_f32_round_odd(&mut self, dst: VReg, x: VReg, s: [VReg; 2]) -> Result<(), X64Error> {
        self.v2(V2::PAbsD, s[0], x)?;
        self.v3(V3::And, s[1], s[0], Opnd::B(0xFF))?;
        self.v3(V3::PAddD, s[1], s[1], Opnd::B(0xFF))?;
        self.v3(V3::And, s[1], s[1], Opnd::B(0x100))?;
        self.v3(V3::And, s[0], s[0], Opnd::B(0xFFFF_FF00))?;
        self.v3(V3::Or, s[0], s[0], s[1])?;
        // |i32::MIN| reads as -2^31 here; the absolute value below fixes it.
        self.v2(V2::Cvtdq2ps, s[0], s[0])?;
        self.v3(V3::And, s[0], s[0], Opnd::B(ABS))?;
        self.v3(V3::And, s[1], x, Opnd::B(SIGN))?;
        self.v3(V3::Or, s[0], s[0], s[1])?;
        self.v2(V2::Cvtdq2ps, dst, x)?;
        self.v3(V3::And, s[1], dst, Opnd::B(ABS))?;
        let c = self.cmp(pred::GE_OQ, s[1], Opnd::F(16_777_216.0), s[1])?;
        self.blend(dst, c, dst, s[0])
    }

    fn compare_const(&mut self, dst: VReg, a: VReg, b: f32, p: u8) -> Result<(), X64Error> {
        let c = self.cmp(p, a, Opnd::F(b), dst)?;
        self.cond_to_vreg(dst, c)
    }

    /// `dst = cond ? x : 0`.
    fn keep_or_zero(&mut self, dst: VReg, c: Cond, x: VReg) -> Result<(), X64Error> {
        match c {
            Cond::V(m) => self.v3(V3::And, dst, m, x),
            Cond::K(_) => {
                self.v3(V3::Xor, dst, dst, dst)?;
                self.blend(dst, c, dst, x)
            }
        }
    }

    /// Emits `dst = src ^ exponent` for a compile-time exponent (fast paths listed in
    /// the module docs). IEEE `pow` special cases hold for the general path;
    /// `+-0.5` are `sqrt`-based with IEEE `pow`'s
    /// results at `-0` and `-inf`.
    pub fn emit_pow_static(
        &mut self,
        dst: VReg,
        src: VReg,
        exponent: f32,
        scratch: &[VReg],
    ) -> Result<(), X64Error> {
        let need = scratch_needed_pow_static(exponent, self.isa());
        self.check_regs("PowStatic", dst, &[src], scratch, need)?;
        if !exponent.is_finite() {
            return Err(X64Error::Unsupported {
                op: format!("PowStatic({exponent})"),
                isa: self.isa(),
                reason: "the exponent must be finite".into(),
            });
        }
        let s = scratch;
        let x = src;
        match pow_kind(exponent) {
            PowKind::Zero => self.mov_internal(dst, Opnd::F(1.0)),
            PowKind::One => self.mov_internal(dst, Opnd::R(x)),
            PowKind::Two => self.v3(V3::Mul, dst, x, x),
            PowKind::Three => {
                self.v3(V3::Mul, s[0], x, x)?;
                self.v3(V3::Mul, dst, s[0], x)
            }
            PowKind::Half | PowKind::MinusHalf => {
                // IEEE pow, not sqrt, at the two points where they differ:
                // pow(-0, +-0.5) = pow(+0, +-0.5) and pow(-inf, +-0.5) = pow(+inf, +-0.5).
                // x + 0 turns -0 into +0; -inf becomes +inf.
                self.v3(V3::Add, s[0], x, Opnd::F(0.0))?;
                let c = self.cmp(pred::EQ_OQ, x, Opnd::F(f32::NEG_INFINITY), s[1])?;
                self.blend(s[0], c, s[0], Opnd::F(f32::INFINITY))?;
                if pow_kind(exponent) == PowKind::Half {
                    self.v2(V2::Sqrt, dst, s[0])
                } else {
                    self.v2(V2::Sqrt, s[0], s[0])?;
                    self.mov_internal(s[1], Opnd::F(1.0))?;
                    self.v3(V3::Div, dst, s[1], s[0])
                }
            }
            PowKind::MinusOne => {
                self.mov_internal(s[0], Opnd::F(1.0))?;
                self.v3(V3::Div, dst, s[0], x)
            }
            PowKind::Int(e) => {
                // Binary exponentiation: s[1] holds x^(2^i), s[0] the product so far.
                let mut n = e.unsigned_abs();
                let mut have_acc = false;
                self.mov_internal(s[1], Opnd::R(x))?;
                while n > 0 {
                    if n & 1 == 1 {
                        if have_acc {
                            self.v3(V3::Mul, s[0], s[0], s[1])?;
                        } else {
                            self.mov_internal(s[0], Opnd::R(s[1]))?;
                            have_acc = true;
                        }
                    }
                    n >>= 1;
                    if n > 0 {
                        self.v3(V3::Mul, s[1], s[1], s[1])?;
                    }
                }
                if e < 0 {
                    self.mov_internal(s[1], Opnd::F(1.0))?;
                    self.v3(V3::Div, dst, s[1], s[0])
                } else {
                    self.mov_internal(dst, Opnd::R(s[0]))
                }
            }
            PowKind::General => {
                self.pow_static_general(dst, x, exponent, [s[0], s[1], s[2], s[3], s[4], s[5]])
            }
        }
    }

    /// `dst = min(max(x, lo), hi)` keeping NaN: the constant is loaded into a register
    /// first so that x is the second operand of vmaxps/vminps. `s` must differ from
    /// `dst` and `x`; `dst` may be `x`.
    pub(crate) fn clamp_keep_nan(
        &mut self,
        dst: VReg,
        x: VReg,
        lo: f32,
        hi: f32,
        s: VReg,
    ) -> Result<(), X64Error> {
        self.mov_internal(s, Opnd::F(lo))?;
        self.v3(V3::Max, s, s, x)?;
        self.mov_internal(dst, Opnd::F(hi))?;
        self.v3(V3::Min, dst, dst, s)
    }

    /// Rounds f32 lanes to the nearest-even bf16, kept as f32 lanes: add
    /// `0x7fff + lsb` to the bits and clear the low half (overflow carries into the
    /// exponent and gives infinity). NaN lanes become `0x7fc00000`. Integer arithmetic,
    /// so denormals round like every other value (`vcvtneps2bf16` would flush them).
    fn round_to_bf16(&mut self, dst: VReg, src: VReg, s0: VReg) -> Result<(), X64Error> {
        self.vshift(Shift::Srl, s0, src, 16)?;
        self.v3(V3::And, s0, s0, Opnd::B(1))?;
        self.v3(V3::PAddD, s0, s0, Opnd::B(0x7fff))?;
        self.v3(V3::PAddD, s0, s0, src)?;
        self.v3(V3::And, s0, s0, Opnd::B(0xffff_0000))?;
        let c = self.cmp(pred::UNORD_Q, src, src, dst)?;
        self.blend(dst, c, s0, Opnd::B(0x7fc0_0000))
    }

    /// Rounds f32 lanes to the nearest-even f16 (`vcvtps2ph`), widened back to f32.
    fn round_to_f16(&mut self, dst: VReg, src: VReg, s0: VReg) -> Result<(), X64Error> {
        use iced_x86::{Code, Instruction, Register};
        let (code, back, n) = match self.isa() {
            Isa::Avx512 => (
                Code::EVEX_Vcvtps2ph_ymmm256_k1z_zmm_imm8_sae,
                Code::EVEX_Vcvtph2ps_zmm_k1z_ymmm256_sae,
                Register::YMM0 + u32::from(s0.0),
            ),
            Isa::Avx2 => (
                Code::VEX_Vcvtps2ph_xmmm128_ymm_imm8,
                Code::VEX_Vcvtph2ps_ymm_xmmm128,
                Register::XMM0 + u32::from(s0.0),
            ),
        };
        let ins = Instruction::with3(code, n, self.vr(src), 0u32);
        self.enc_raw(ins, "vcvtps2ph")?;
        let ins = Instruction::with2(back, self.vr(dst), n);
        self.enc_raw(ins, "vcvtph2ps")
    }
}
