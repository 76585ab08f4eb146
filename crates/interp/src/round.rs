//! Correctly rounded conversions to the narrow float types.
//!
//! `half`'s `from_f64` is not correctly rounded (it drops the low 32 mantissa bits
//! before rounding, and on x86 with F16C goes through `f32` with a second rounding),
//! so the interpreter rounds `f64 -> f32` *to odd* first and then `f32 -> bf16/f16`
//! to nearest even with `half`'s `from_f32`, which looks at every bit. Rounding to odd
//! at 24 bits and then to nearest at 8 (bf16) or 11 (f16) bits equals one rounding to
//! nearest, because 24 >= 11 + 2.

use half::{bf16, f16};

/// Rounds `x` to `f32` *to odd*: truncate toward zero, and if that was inexact set the
/// lowest mantissa bit. Exact values (and NaN, +-inf) come back unchanged.
pub fn f64_to_f32_round_odd(x: f64) -> f32 {
    let nearest = x as f32;
    if nearest.is_nan() || f64::from(nearest) == x {
        return nearest;
    }
    // Inexact: the neighbour toward zero is `nearest` itself, or the next f32 toward zero
    // if `nearest` was rounded away from zero (this also maps an overflow to +-MAX).
    let toward_zero = if f64::from(nearest).abs() > x.abs() {
        f32::from_bits(nearest.to_bits() - 1)
    } else {
        nearest
    };
    f32::from_bits(toward_zero.to_bits() | 1)
}

/// Rounds an `i64` to `f64` *to odd* (see [`f64_to_f32_round_odd`]), so that a later
/// rounding to a narrower float is a single correct rounding of the integer.
pub fn i64_to_f64_round_odd(x: i64) -> f64 {
    let nearest = x as f64;
    // |nearest| <= 2^63 fits i128 exactly.
    let back = nearest as i128;
    if back == i128::from(x) {
        return nearest;
    }
    let toward_zero = if back.abs() > i128::from(x).abs() {
        f64::from_bits(nearest.to_bits() - 1)
    } else {
        nearest
    };
    f64::from_bits(toward_zero.to_bits() | 1)
}

/// `x` rounded to the nearest `f32` (ties to even).
pub fn f64_to_f32(x: f64) -> f32 {
    x as f32
}

/// `x` rounded to the nearest `bf16` (ties to even), correctly rounded.
pub fn f64_to_bf16(x: f64) -> bf16 {
    bf16::from_f32(f64_to_f32_round_odd(x))
}

/// `x` rounded to the nearest `f16` (ties to even), correctly rounded.
pub fn f64_to_f16(x: f64) -> f16 {
    f16::from_f32(f64_to_f32_round_odd(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_odd_f32() {
        assert_eq!(f64_to_f32_round_odd(1.5), 1.5);
        // 1 + 2^-30 lies between 1 and 1 + 2^-23: truncate to 1, set the low bit.
        let got = f64_to_f32_round_odd(1.0 + 2f64.powi(-30));
        assert_eq!(got.to_bits(), 1.0f32.to_bits() | 1);
        // Slightly below 1 + 2^-23 rounds to nearest 1 + 2^-23, but to odd it is 1 + 2^-23
        // as well (odd mantissa), since truncation gives 1 (even) then |1 -> same value.
        let got = f64_to_f32_round_odd(1.0 + 2f64.powi(-23) - 2f64.powi(-40));
        assert_eq!(got.to_bits(), 1.0f32.to_bits() | 1);
        // Negative: truncation is toward zero.
        let got = f64_to_f32_round_odd(-(1.0 + 2f64.powi(-30)));
        assert_eq!(got.to_bits(), (-1.0f32).to_bits() | 1);
        // Overflow to the largest finite (odd) value, not inf.
        assert_eq!(f64_to_f32_round_odd(1e300), f32::MAX);
        assert_eq!(f64_to_f32_round_odd(-1e300), -f32::MAX);
        assert_eq!(f64_to_f32_round_odd(f64::INFINITY), f32::INFINITY);
        assert!(f64_to_f32_round_odd(f64::NAN).is_nan());
        // Underflow: the smallest subnormal, with the sign.
        assert_eq!(f64_to_f32_round_odd(1e-300).to_bits(), 1);
        assert_eq!(f64_to_f32_round_odd(-1e-300).to_bits(), 0x8000_0001);
    }

    #[test]
    fn round_odd_i64() {
        assert_eq!(i64_to_f64_round_odd(12345), 12345.0);
        let big = (1i64 << 60) + (1 << 52) + 1;
        let r = i64_to_f64_round_odd(big);
        // Truncation toward zero is 2^60 + 2^52, the sticky bit makes it odd.
        assert_eq!(
            r.to_bits(),
            ((1u64 << 60) as f64 + (1u64 << 52) as f64).to_bits() | 1
        );
        assert_eq!(i64_to_f64_round_odd(i64::MIN), -(2f64.powi(63)));
        let m = i64_to_f64_round_odd(i64::MAX);
        assert_eq!(m.to_bits(), (2f64.powi(63) - 1024.0).to_bits() | 1);
    }

    #[test]
    fn bf16_ties_and_sticky_bits() {
        // bf16 around 1.0 has a step of 2^-7. 1 + 2^-8 is a tie -> even (1.0).
        assert_eq!(f64_to_bf16(1.0 + 2f64.powi(-8)).to_bits(), 0x3F80);
        // Just above the tie, with the extra bit far below f32 precision -> rounds up.
        // (half's own from_f64 gets this wrong: it ignores the low 32 bits.)
        assert_eq!(
            f64_to_bf16(1.0 + 2f64.powi(-8) + 2f64.powi(-50)).to_bits(),
            0x3F81
        );
        // 1 + 3 * 2^-8 is a tie between 0x3F81 and 0x3F82 -> even 0x3F82.
        assert_eq!(f64_to_bf16(1.0 + 3.0 * 2f64.powi(-8)).to_bits(), 0x3F82);
        assert_eq!(f64_to_bf16(f64::INFINITY).to_bits(), 0x7F80);
        assert_eq!(f64_to_bf16(1e300).to_bits(), 0x7F80);
        assert!(f64_to_bf16(f64::NAN).is_nan());
    }

    #[test]
    fn f16_ties_and_sticky_bits() {
        // f16 around 1.0 has a step of 2^-10.
        assert_eq!(f64_to_f16(1.0 + 2f64.powi(-11)).to_bits(), 0x3C00);
        assert_eq!(
            f64_to_f16(1.0 + 2f64.powi(-11) + 2f64.powi(-45)).to_bits(),
            0x3C01
        );
        assert_eq!(f64_to_f16(1.0 + 3.0 * 2f64.powi(-11)).to_bits(), 0x3C02);
        // 65520 is the tie between 65504 (max) and the next step 65536 (inf) -> inf.
        assert_eq!(f64_to_f16(65519.0).to_bits(), 0x7BFF);
        assert_eq!(f64_to_f16(65520.0).to_bits(), 0x7C00);
        // Smallest subnormal 2^-24; half of it is a tie to zero, a bit more rounds up.
        assert_eq!(f64_to_f16(2f64.powi(-25)).to_bits(), 0);
        assert_eq!(f64_to_f16(2f64.powi(-25) + 2f64.powi(-60)).to_bits(), 1);
    }

    #[test]
    fn bf16_exhaustive_midpoints() {
        // For every finite positive bf16 b with a finite successor, the midpoint rounds to
        // the even one of the two, and the midpoint +- a tiny amount to the nearer one.
        for bits in 0x0001u16..0x7F7F {
            let lo = bf16::from_bits(bits).to_f64();
            let hi = bf16::from_bits(bits + 1).to_f64();
            let mid = (lo + hi) / 2.0;
            let even = if bits % 2 == 0 { bits } else { bits + 1 };
            assert_eq!(f64_to_bf16(mid).to_bits(), even, "mid of {bits:#x}");
            let eps = (hi - lo) * 2f64.powi(-30);
            assert_eq!(f64_to_bf16(mid + eps).to_bits(), bits + 1);
            assert_eq!(f64_to_bf16(mid - eps).to_bits(), bits);
            assert_eq!(f64_to_bf16(-(mid + eps)).to_bits(), (bits + 1) | 0x8000);
        }
    }

    #[test]
    fn f16_exhaustive_midpoints() {
        for bits in 0x0001u16..0x7BFF {
            let lo = f16::from_bits(bits).to_f64();
            let hi = f16::from_bits(bits + 1).to_f64();
            let mid = (lo + hi) / 2.0;
            let even = if bits % 2 == 0 { bits } else { bits + 1 };
            assert_eq!(f64_to_f16(mid).to_bits(), even, "mid of {bits:#x}");
            let eps = (hi - lo) * 2f64.powi(-30);
            assert_eq!(f64_to_f16(mid + eps).to_bits(), bits + 1);
            assert_eq!(f64_to_f16(mid - eps).to_bits(), bits);
        }
    }
}
