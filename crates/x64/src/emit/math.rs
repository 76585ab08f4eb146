//! Polynomial cores of the transcendental emitters (see the accuracy table in the
//! parent module). Every core takes its scratch registers explicitly; the contract of
//! each (which inputs may alias what) is on the function.

use crate::asm::{Opnd, Shift, V2, V3, pred, round};
use crate::emit::{ABS, SIGN};
use crate::{Isa, VReg, VecAsm, X64Error};

/// `e^r ~ 1 + r + r^2 P(r)` on [-ln2/2, ln2/2], written as one Horner chain (the last
/// two coefficients are the `+1`s). P is a degree-4 fit minimizing the relative error
/// of `e^r` (3.6e-9 in exact arithmetic, with the `r^2` coefficient kept at exactly 1/2, 1/20 of an f32 ULP), so the f32 rounding of
/// the six FMAs dominates; Cephes' degree-5 P gains nothing measurable for one FMA more.
const EXP_POLY: [f32; 7] = [
    1.386_378_7e-3,
    8.367_476e-3,
    4.166_723_8e-2,
    1.666_653_5e-1,
    0.5,
    1.0,
    1.0,
];
const LOG2E: f32 = std::f32::consts::LOG2_E;
/// `2^f ~ c0 + c1 f + ... + c5 f^5` on [-1/2, 1/2]: a degree-5 fit minimizing the
/// relative error (7.5e-8 in exact arithmetic, 2.1e-7 through f32 Horner FMAs, checked
/// on 2e5 points; fitted by iteratively reweighted least squares). Highest degree first.
const EXP2_POLY: [f32; 6] = [
    1.327_647_1e-3,
    9.675_542e-3,
    5.550_713e-2,
    2.402_212e-1,
    6.931_469_4e-1,
    1.000_000_1,
];

/// `2^f ~ c0 + ... + c5 f^5` on [0, 1): the same kind of fit as [`EXP2_POLY`] (relative
/// error 7.5e-8 in exact arithmetic, 1.5e-7 through f32 Horner FMAs, checked on 2e5
/// points), for the AVX-512 softmax exp whose reduced argument is `t - floor(t)`.
/// Highest degree first.
const EXP2_POLY_01: [f32; 6] = [
    1.877_570_1e-3,
    8.989_343e-3,
    5.582_633e-2,
    2.401_536_1e-1,
    6.931_531e-1,
    9.999_999_4e-1,
];

/// What [`VecAsm::exp_core`] may assume of its argument `scale * x`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExpArg {
    /// Any value: clamped to [`EXP_LO`, `EXP_HI`] first.
    Any,
    /// At most 0, or NaN: the overflow clamp is left out (two instructions fewer; the
    /// result is identical).
    NonPositive,
    /// Already in [`EXP_LO`, 0], or NaN (see [`VecAsm::neg_abs_for_exp`]): no clamp.
    Clamped,
}

/// Cody-Waite split of ln 2: the high part has 9 significant bits, so `n * LN2_HI` is
/// exact for |n| <= 2^15.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Clamp range of exp's argument: above, the result overflows to +inf; below, it
/// rounds to 0. The reduced exponent stays in [-150, 128], which two-step scaling covers.
const EXP_HI: f32 = 88.8;
const EXP_LO: f32 = -104.0;
/// [`VecAsm::exp_softmax`]'s clamp on AVX2: `-126 ln 2` rounded down, so that
/// `round(x log2 e) = -126` there and the scale `2^(n-1)` built from its bits is 0.
const SOFTMAX_LO_AVX2: f32 = -87.34;
/// [`EXP2_POLY`] times 2 (exact): `2^(f+1)`, in [1.41, 2.83], so that `2^(f+1) 2^(n-1)`
/// is normal for every `n >= -125`.
const EXP2_POLY_X2: [f32; 6] = {
    let mut c = EXP2_POLY;
    let mut i = 0;
    while i < c.len() {
        c[i] *= 2.0;
        i += 1;
    }
    c
};

/// Cephes `logf` polynomial on f = m - 1, m in [sqrt(1/2), sqrt(2)).
const LOG_POLY: [f32; 9] = [
    7.037_683_6e-2,
    -1.151_461e-1,
    1.167_699_9e-1,
    -1.242_014_1e-1,
    1.424_932_3e-1,
    -1.666_805_8e-1,
    2.000_071_4e-1,
    -2.499_999_4e-1,
    3.333_333e-1,
];
const SQRT_HALF_BITS: u32 = 0x3f35_04f3;

/// Cephes `tanhf` polynomial for |x| < 0.625: `tanh x ~ x + x^3 P(x^2)`.
const TANH_POLY: [f32; 5] = [
    -5.704_988_7e-3,
    2.063_909e-2,
    -5.373_971_6e-2,
    1.333_144_2e-1,
    -3.333_328e-1,
];
const TANH_SMALL: f32 = 0.625;

/// `erf(z) / z` as a polynomial in `z^2` on [0, 1] (Chebyshev fit, abs error 1.2e-9).
const ERF_SMALL_POLY: [f32; 7] = [
    7.875_875e-5,
    -8.016_864e-4,
    5.189_087_4e-3,
    -2.685_421_2e-2,
    1.128_359_5e-1,
    -3.761_262_7e-1,
    std::f32::consts::FRAC_2_SQRT_PI,
];
/// `h(t) = erfc(1/t) e^{1/t^2} / t` as a polynomial in `s = 2t - 1`, t in (0, 1]
/// (Chebyshev fit of degree 11, abs error 1.9e-8), so that
/// `erfc(z) = e^{-z^2} t h(t)` with `t = 1/z` for z >= 1.
const ERFC_TAIL_POLY: [f32; 12] = [
    1.014_698_3e-4,
    -1.568_35e-4,
    -1.864_317_5e-4,
    6.320_370_6e-4,
    -8.105_723_5e-4,
    5.603_931_5e-4,
    1.327_722_1e-3,
    -6.780_69e-3,
    1.487_032_2e-2,
    -9.159_689e-3,
    -8.360_551e-2,
    5.107_913_6e-1,
];
/// Taylor polynomial of `(expm1(x) - x) / x^2` for |x| < 0.35 (truncation < 1e-9).
const EXPM1_POLY: [f32; 7] = [
    1.0 / 40320.0,
    1.0 / 5040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
];
const EXPM1_SMALL: f32 = 0.35;

impl VecAsm {
    /// `acc = poly(x)` (Horner, highest degree first, one FMA per step). `acc` must
    /// differ from `x`.
    fn horner(&mut self, acc: VReg, x: VReg, coeffs: &[f32]) -> Result<(), X64Error> {
        self.mov_internal(acc, Opnd::F(coeffs[0]))?;
        for &c in &coeffs[1..] {
            self.v3(V3::Fmadd213, acc, x, Opnd::F(c))?;
        }
        Ok(())
    }

    /// `dst = exp(scale * x)`, for an argument `scale * x` of the given range.
    ///
    /// Contract: `s` distinct from each other and from `dst`; `x` may equal `dst` or
    /// `s[0]` (it is read before either is written), never `s[1]`, nor `s[2]` unless
    /// the argument is [`ExpArg::Clamped`].
    pub(crate) fn exp_core(
        &mut self,
        dst: VReg,
        x: VReg,
        scale: f32,
        arg: ExpArg,
        s: [VReg; 3],
    ) -> Result<(), X64Error> {
        let [s0, s1, s2] = s;
        if arg == ExpArg::Clamped {
            return match (scale == 1.0, x) {
                // The argument is consumed in place when it sits in a scratch register.
                (true, x) if x == s0 => self.exp_reduced(dst, s0, [s1, s0, s2]),
                (true, x) if x == s2 => self.exp_reduced(dst, s2, [s0, s2, s1]),
                (true, x) => {
                    self.mov_internal(s1, Opnd::R(x))?;
                    self.exp_reduced(dst, s1, [s0, s1, s2])
                }
                (false, x) => {
                    self.v3(V3::Mul, s1, x, Opnd::F(scale))?;
                    self.exp_reduced(dst, s1, [s0, s1, s2])
                }
            };
        }
        self.exp_core_range(dst, x, scale, arg == ExpArg::NonPositive, s)
    }

    /// `s0 = -|x|`, clamped to `EXP_LO / scale` on AVX-512 (one `vrangeps`), so that
    /// [`VecAsm::sigmoid_from_abs`] needs no clamp there. Returns whether it clamped.
    pub(crate) fn neg_abs_for_exp(
        &mut self,
        s0: VReg,
        x: VReg,
        scale: f32,
    ) -> Result<bool, X64Error> {
        match self.isa() {
            Isa::Avx512 => {
                // imm: absolute minimum (0b10), sign forced to 1 (0b11 << 2).
                self.vrange(s0, x, Opnd::F(-EXP_LO / scale), 0b1110)?;
                Ok(true)
            }
            Isa::Avx2 => {
                self.v3(V3::Or, s0, x, Opnd::B(SIGN))?;
                Ok(false)
            }
        }
    }

    fn exp_core_range(
        &mut self,
        dst: VReg,
        x: VReg,
        scale: f32,
        nonpositive: bool,
        s: [VReg; 3],
    ) -> Result<(), X64Error> {
        let [s0, s1, s2] = s;
        let src = if scale == 1.0 {
            x
        } else {
            self.v3(V3::Mul, s0, x, Opnd::F(scale))?;
            s0
        };
        // Clamp with the constant as first operand: NaN passes through.
        self.mov_internal(s1, Opnd::F(EXP_LO))?;
        self.v3(V3::Max, s1, s1, src)?;
        let clamped = if nonpositive {
            s1
        } else {
            self.mov_internal(s0, Opnd::F(EXP_HI))?;
            self.v3(V3::Min, s0, s0, s1)?;
            s0
        };
        let others = if clamped == s1 {
            [s0, s1, s2]
        } else {
            [s2, s0, s1]
        };
        self.exp_reduced(dst, clamped, others)
    }

    /// `dst = e^x` for `x <= 8` or NaN, for softmax probabilities (x - m with m at
    /// most 8 below the row maximum, see `attn.rs`): fewer ops than
    /// [`VecAsm::exp_core`] with [`ExpArg::NonPositive`]. `t = x log2 e` (one
    /// rounding: a relative error of `|t| 2^-24` in the result, 1.1e-6 at x = -10
    /// where e^x = 4.5e-5), a reduced argument `f` in an interval of length 1
    /// (exact), `2^f` by a degree-5 polynomial (1.5e-7 or 2.1e-7), scaled by
    /// `2^(t - f)`. -inf gives 0, NaN stays NaN.
    ///
    /// AVX-512 (4 ops besides the polynomial's 5 FMAs): `f = t - floor(t)` by
    /// `vreduceps`, `2^f` on [0, 1) ([`EXP2_POLY_01`]), and `vscalefps`, which floors
    /// its exponent operand itself, so neither the rounding nor a clamp is needed
    /// (`t = -inf` reduces to 0 and scales to 0; results go down to the denormals).
    /// Against the clamp / `vrndscaleps` / subtract form: a 48 × 128 block 111-117
    /// instead of 121-140 cycles per row (`softmax_block` example).
    ///
    /// AVX2 clamps at [`SOFTMAX_LO_AVX2`], takes `n = round(t)`, `f = t - n` and
    /// computes `2^(f+1)` ([`EXP2_POLY_X2`]) times `2^(n-1)` built from its bits,
    /// `(n + 126) << 23`, which is exactly 0 at the clamp: `x < -87.0` (`t < -125.5`: a
    /// probability below 2^-125 against a row maximum of 1) gives 0 and every other
    /// result is normal, so a masked score (an additive -1e4, or -inf) never makes a
    /// denormal product, which costs a microcode assist per vector (a 48 × 128 block
    /// with every ninth score masked by -1e4 took 2x as long before). Four
    /// integer/FP ops instead of the two-factor scaling's nine.
    ///
    /// Contract: `s` distinct from each other and from `dst`; `x` may equal `dst`
    /// or `s[0]`.
    pub(crate) fn exp_softmax(&mut self, dst: VReg, x: VReg, s: [VReg; 3]) -> Result<(), X64Error> {
        let [t, n, acc] = s;
        if self.isa() == Isa::Avx512 {
            // t = x log2 e; f = t - floor(t) in [0, 1) (vreduceps, exact); 2^f by
            // EXP2_POLY_01; times 2^floor(t) by vscalefps, which floors its exponent
            // operand itself. No clamp: t = -inf gives f = 0 (checked by the unit
            // test) and 1 * 2^-inf = 0; a very negative t gives 0; NaN stays NaN.
            self.v3(V3::Mul, t, x, Opnd::F(LOG2E))?;
            self.vfrac_floor(n, t)?;
            self.horner(acc, n, &EXP2_POLY_01)?;
            return self.v3(V3::Scalef, dst, acc, t);
        }
        // Clamp with the constant as first operand: NaN passes through.
        if x == t {
            self.mov_internal(n, Opnd::F(SOFTMAX_LO_AVX2))?;
            self.v3(V3::Max, t, n, x)?;
        } else {
            self.mov_internal(t, Opnd::F(SOFTMAX_LO_AVX2))?;
            self.v3(V3::Max, t, t, x)?;
        }
        self.v3(V3::Mul, t, t, Opnd::F(LOG2E))?;
        self.vround(n, t, round::NEAREST)?;
        self.v3(V3::Sub, t, t, n)?;
        self.horner(acc, t, &EXP2_POLY_X2)?;
        // n in [-126, 0] (NaN: the integer indefinite, whose bits shift out to 0.5, and
        // p stays NaN).
        self.v2(V2::Cvttps2dq, n, n)?;
        self.v3(V3::PAddD, n, n, Opnd::B(126))?;
        self.vshift(Shift::Sll, n, n, 23)?;
        self.v3(V3::Mul, dst, acc, n)
    }

    /// `dst = exp(c)` for `c` in [`EXP_LO`, `EXP_HI`] or NaN, held in `s[1]`; `s[0]`
    /// and `s[2]` are scratch.
    fn exp_reduced(&mut self, dst: VReg, c: VReg, s: [VReg; 3]) -> Result<(), X64Error> {
        debug_assert_eq!(c, s[1]);
        let (acc, n) = (s[0], s[2]);
        // n = round(c log2 e); r = c - n ln2 (two steps).
        self.v3(V3::Mul, n, c, Opnd::F(LOG2E))?;
        self.vround(n, n, round::NEAREST)?;
        self.v3(V3::Fnmadd231, c, n, Opnd::F(LN2_HI))?;
        self.v3(V3::Fnmadd231, c, n, Opnd::F(LN2_LO))?;
        // Horner into the register that is neither r nor n (x is no longer read).
        self.horner(acc, c, &EXP_POLY)?;
        self.scale_pow2(dst, acc, n, c)
    }

    /// `dst = p * 2^n` for integral `n` in [-150, 128] (held as f32). Clobbers `n` and
    /// `tmp`; `p` is clobbered on AVX2.
    fn scale_pow2(&mut self, dst: VReg, p: VReg, n: VReg, tmp: VReg) -> Result<(), X64Error> {
        match self.isa() {
            Isa::Avx512 => self.v3(V3::Scalef, dst, p, n),
            Isa::Avx2 => {
                // 2^n = 2^n1 * 2^n2 with n1 = n >> 1, n2 = n - n1, both in [-75, 64], so
                // each factor is a normal float and denormal results round only once.
                self.v2(V2::Cvttps2dq, n, n)?;
                self.vshift(Shift::Sra, tmp, n, 1)?;
                self.v3(V3::PSubD, n, n, tmp)?;
                self.v3(V3::PAddD, tmp, tmp, Opnd::B(127))?;
                self.vshift(Shift::Sll, tmp, tmp, 23)?;
                self.v3(V3::PAddD, n, n, Opnd::B(127))?;
                self.vshift(Shift::Sll, n, n, 23)?;
                self.v3(V3::Mul, p, p, tmp)?;
                self.v3(V3::Mul, dst, p, n)
            }
        }
    }

    /// `dst = log(x)` for positive normal finite `x` only (no special cases).
    ///
    /// Contract: `s` distinct from each other and from `dst`; `x` may equal `dst` or
    /// `s[0]`.
    fn log_simple(&mut self, dst: VReg, x: VReg, s: [VReg; 3]) -> Result<(), X64Error> {
        let [f, e, z] = s;
        // x = 2^k m with m in [sqrt(1/2), sqrt(2)): subtracting sqrt(1/2)'s bits moves
        // the exponent boundary there.
        self.v3(V3::PSubD, f, x, Opnd::B(SQRT_HALF_BITS))?;
        self.vshift(Shift::Sra, e, f, 23)?;
        self.v2(V2::Cvtdq2ps, e, e)?;
        self.v3(V3::And, f, f, Opnd::B(0x007f_ffff))?;
        self.v3(V3::PAddD, f, f, Opnd::B(SQRT_HALF_BITS))?;
        self.v3(V3::Sub, f, f, Opnd::F(1.0))?;
        self.v3(V3::Mul, z, f, f)?;
        self.horner(dst, f, &LOG_POLY)?;
        self.v3(V3::Mul, dst, dst, f)?;
        self.v3(V3::Mul, dst, dst, z)?;
        self.v3(V3::Fmadd231, dst, e, Opnd::F(LN2_LO))?;
        self.v3(V3::Fnmadd231, dst, z, Opnd::F(0.5))?;
        self.v3(V3::Add, dst, dst, f)?;
        self.v3(V3::Fmadd231, dst, e, Opnd::F(LN2_HI))
    }

    /// `dst = log(x)` with IEEE special cases and denormal inputs.
    ///
    /// Contract: `s` distinct from each other and from `dst` and `x`; `dst` may equal `x`.
    pub(crate) fn log_full(&mut self, dst: VReg, x: VReg, s: [VReg; 5]) -> Result<(), X64Error> {
        let [s0, s1, s2, s3, s4] = s;
        // Denormals: scale by 2^23 and subtract 23 ln2 afterwards.
        let den = self.cmp(pred::LT_OQ, x, Opnd::F(f32::MIN_POSITIVE), s0)?;
        self.v3(V3::Mul, s1, x, Opnd::F(8_388_608.0))?;
        self.blend(s1, den, x, s1)?;
        self.v3(V3::Xor, s2, s2, s2)?;
        self.blend(s2, den, s2, Opnd::F(23.0))?;
        self.log_simple(s1, s1, [s0, s3, s4])?;
        self.v3(V3::Fnmadd231, s1, s2, Opnd::F(std::f32::consts::LN_2))?;
        // +inf and NaN give x itself, x < 0 NaN, +-0 -inf.
        let c = self.cmp(pred::NLT_UQ, x, Opnd::F(f32::INFINITY), s0)?;
        self.blend(s1, c, s1, x)?;
        let c = self.cmp(pred::LT_OQ, x, Opnd::F(0.0), s0)?;
        self.blend(s1, c, s1, Opnd::F(f32::NAN))?;
        let c = self.cmp(pred::EQ_OQ, x, Opnd::F(0.0), s0)?;
        self.blend(dst, c, s1, Opnd::F(f32::NEG_INFINITY))
    }

    /// `dst = tanh(x)`. Contract as for emitters (dst may be x, s distinct).
    pub(crate) fn tanh(&mut self, dst: VReg, x: VReg, s: [VReg; 5]) -> Result<(), X64Error> {
        let [s0, s1, s2, s3, s4] = s;
        self.v3(V3::And, s0, x, Opnd::B(ABS))?;
        // Large branch: 1 - 2 / (e^{2a} + 1), sign restored.
        self.exp_core(s1, s0, 2.0, ExpArg::Any, [s2, s3, s4])?;
        self.v3(V3::Add, s1, s1, Opnd::F(1.0))?;
        self.mov_internal(s2, Opnd::F(2.0))?;
        self.v3(V3::Div, s2, s2, s1)?;
        self.mov_internal(s1, Opnd::F(1.0))?;
        self.v3(V3::Sub, s1, s1, s2)?;
        self.v3(V3::And, s4, x, Opnd::B(SIGN))?;
        self.v3(V3::Or, s1, s1, s4)?;
        // Small branch: x + x^3 P(x^2).
        self.v3(V3::Mul, s2, x, x)?;
        self.horner(s3, s2, &TANH_POLY)?;
        self.v3(V3::Mul, s3, s3, s2)?;
        self.v3(V3::Fmadd213, s3, x, x)?;
        let c = self.cmp(pred::LT_OQ, s0, Opnd::F(TANH_SMALL), s2)?;
        self.blend(dst, c, s1, s3)?;
        // tanh is odd: the result takes x's sign (s4, set above), so tanh(-0) = -0.
        self.v3(V3::And, dst, dst, Opnd::B(ABS))?;
        self.v3(V3::Or, dst, dst, s4)
    }

    /// `dst = erf(x)` (`gelu == false`) or `dst = 0.5 x (1 + erf(x / sqrt 2))`.
    pub(crate) fn erf_like(
        &mut self,
        dst: VReg,
        x: VReg,
        gelu: bool,
        s: [VReg; 6],
    ) -> Result<(), X64Error> {
        let [s0, s1, s2, s3, s4, s5] = s;
        // a = min(|x|, clamp): keeps NaN, keeps the tail finite for +-inf.
        let clamp = if gelu { 40.0 } else { 20.0 };
        self.v3(V3::And, s0, x, Opnd::B(ABS))?;
        self.mov_internal(s1, Opnd::F(clamp))?;
        self.v3(V3::Min, s0, s1, s0)?;
        // Tail: erfc(z) = e^{-z^2} t h(2t - 1), t = 1/z; z^2 = a^2 c^2 split in a
        // rounded part and its exact error (c^2 is 1 or 1/2, so scaling is exact).
        self.v3(V3::Mul, s1, s0, s0)?;
        self.mov_internal(s2, Opnd::R(s0))?;
        self.v3(V3::Fmsub213, s2, s0, s1)?;
        if gelu {
            self.v3(V3::Mul, s1, s1, Opnd::F(0.5))?;
            self.v3(V3::Mul, s2, s2, Opnd::F(0.5))?;
        }
        self.exp_core(s3, s1, -1.0, ExpArg::Any, [s1, s4, s5])?;
        self.v3(V3::Fnmadd231, s3, s3, s2)?;
        let inv_c = if gelu { std::f32::consts::SQRT_2 } else { 1.0 };
        self.mov_internal(s1, Opnd::F(inv_c))?;
        self.v3(V3::Div, s1, s1, s0)?;
        self.v3(V3::Add, s2, s1, s1)?;
        self.v3(V3::Sub, s2, s2, Opnd::F(1.0))?;
        self.horner(s4, s2, &ERFC_TAIL_POLY)?;
        self.v3(V3::Mul, s3, s3, s1)?;
        self.v3(V3::Mul, s3, s3, s4)?;
        // Small: erf(z) = z P(z^2) for z < 1. For gelu, z = a / sqrt 2 is folded into
        // the coefficients (erf(a/sqrt2) = a P'(a^2)), so no rounded z enters.
        let small_poly: Vec<f32> = if gelu {
            let deg = ERF_SMALL_POLY.len() - 1;
            ERF_SMALL_POLY
                .iter()
                .enumerate()
                .map(|(i, &c)| {
                    (f64::from(c) * 0.5f64.powi((deg - i) as i32) * std::f64::consts::FRAC_1_SQRT_2)
                        as f32
                })
                .collect()
        } else {
            ERF_SMALL_POLY.to_vec()
        };
        self.v3(V3::Mul, s2, s0, s0)?;
        self.horner(s4, s2, &small_poly)?;
        self.v3(V3::Mul, s4, s4, s0)?;
        let limit = if gelu { std::f32::consts::SQRT_2 } else { 1.0 };
        let small = self.cmp(pred::LT_OQ, s0, Opnd::F(limit), s5)?;
        if !gelu {
            // erf(|x|) = small ? S : 1 - erfc, then copy x's sign.
            self.mov_internal(s2, Opnd::F(1.0))?;
            self.v3(V3::Sub, s2, s2, s3)?;
            self.blend(s2, small, s2, s4)?;
            self.v3(V3::And, s4, x, Opnd::B(SIGN))?;
            self.v3(V3::Or, dst, s2, s4)
        } else {
            // om = erfc(|z|); 1 + erf(z) = x < 0 ? om : 2 - om.
            self.mov_internal(s2, Opnd::F(1.0))?;
            self.v3(V3::Sub, s2, s2, s4)?;
            self.blend(s3, small, s3, s2)?;
            self.mov_internal(s2, Opnd::F(2.0))?;
            self.v3(V3::Sub, s2, s2, s3)?;
            let neg = self.cmp(pred::LT_OQ, x, Opnd::F(0.0), s5)?;
            self.blend(s2, neg, s2, s3)?;
            // 0.5 * x * factor, the formula as written: at x = -inf it is -inf * 0 =
            // NaN, as the interpreter and onnxruntime compute it.
            self.v3(V3::Mul, s3, x, Opnd::F(0.5))?;
            self.v3(V3::Mul, dst, s3, s2)
        }
    }

    /// `dst = x * sigmoid(2u)` (= `0.5 x (1 + tanh u)`), `u = sqrt(2/pi) (x + 0.044715 x^3)`.
    pub(crate) fn gelu_tanh(&mut self, dst: VReg, x: VReg, s: [VReg; 4]) -> Result<(), X64Error> {
        let [s0, s1, s2, s3] = s;
        let k = 2.0 * (2.0 / std::f64::consts::PI).sqrt();
        self.v3(V3::Mul, s0, x, x)?;
        self.v3(V3::Mul, s0, s0, Opnd::F(0.044_715))?;
        self.v3(V3::Fmadd213, s0, x, x)?;
        self.v3(V3::Mul, s0, s0, Opnd::F(k as f32))?;
        self.v3(V3::Or, s0, s0, Opnd::B(SIGN))?;
        // 2u has the sign of x; s0 = -|2u|.
        self.sigmoid_from_abs(dst, x, true, 1.0, pred::LT_OQ, [s0, s1, s2, s3])
    }

    /// Sigmoid of an argument `v` given as `a = -|v|` in `s[0]`, optionally times `x`:
    /// `dst = [x *] (v >= 0 ? 1 : e) / (1 + e)` with `e = exp(scale * a)`, so neither
    /// branch overflows. `v < 0` is decided by `x neg_pred 0` (the callers' arguments
    /// have the sign of x, or the opposite sign for a negative swish beta).
    pub(crate) fn sigmoid_from_abs(
        &mut self,
        dst: VReg,
        x: VReg,
        mul_x: bool,
        scale: f32,
        neg_pred: u8,
        s: [VReg; 4],
    ) -> Result<(), X64Error> {
        self.sigmoid_from_abs_clamped(dst, x, mul_x, scale, neg_pred, false, s)
    }

    /// [`VecAsm::sigmoid_from_abs`]; `clamped` says that `s[0]` is already at least
    /// `EXP_LO / scale` (as [`VecAsm::neg_abs_for_exp`] leaves it on AVX-512).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn sigmoid_from_abs_clamped(
        &mut self,
        dst: VReg,
        x: VReg,
        mul_x: bool,
        scale: f32,
        neg_pred: u8,
        clamped: bool,
        s: [VReg; 4],
    ) -> Result<(), X64Error> {
        let [s0, s1, s2, s3] = s;
        // s0 holds -|a| (the caller's): the exponent is never positive, so exp needs
        // no overflow clamp.
        if clamped {
            self.exp_core(s1, s0, scale, ExpArg::Clamped, [s0, s2, s3])?;
        } else {
            self.exp_core(s1, s0, scale, ExpArg::NonPositive, [s0, s2, s3])?;
        }
        self.v3(V3::Add, s2, s1, Opnd::F(1.0))?;
        if mul_x && self.isa() == Isa::Avx512 {
            // s0 = x, times e where the argument is negative (merge masking): one
            // instruction fewer than multiply and blend, same values.
            let neg = self.cmp(neg_pred, x, Opnd::F(0.0), s3)?;
            let crate::asm::Cond::K(k) = neg else {
                unreachable!("AVX-512 compares into an opmask")
            };
            self.mov_internal(s0, Opnd::R(x))?;
            self.v3_merge(V3::Mul, s0, k, x, s1)?;
        } else if mul_x {
            // x * e as written: +-inf * 0 = NaN where the formula gives it, as the
            // interpreter and onnxruntime compute x * sigmoid(x).
            self.v3(V3::Mul, s3, x, s1)?;
            let neg = self.cmp(neg_pred, x, Opnd::F(0.0), s1)?;
            self.blend(s0, neg, x, s3)?;
        } else {
            self.mov_internal(s0, Opnd::F(1.0))?;
            let neg = self.cmp(neg_pred, x, Opnd::F(0.0), s3)?;
            self.blend(s0, neg, s0, s1)?;
        }
        // vrcp14ps with a Newton step was tried here: no faster on Zen 4, and 3.4 ULP.
        self.v3(V3::Div, dst, s0, s2)
    }

    /// `dst = x tanh(softplus(x)) = x n / (n + 2)`, `n = e^x (e^x + 2)`.
    pub(crate) fn mish(&mut self, dst: VReg, x: VReg, s: [VReg; 4]) -> Result<(), X64Error> {
        let [s0, s1, s2, s3] = s;
        self.mov_internal(s0, Opnd::F(20.0))?;
        self.v3(V3::Min, s0, s0, x)?;
        self.exp_core(s1, s0, 1.0, ExpArg::Any, [s0, s2, s3])?;
        self.v3(V3::Add, s2, s1, Opnd::F(2.0))?;
        self.v3(V3::Mul, s1, s1, s2)?;
        self.v3(V3::Add, s2, s1, Opnd::F(2.0))?;
        self.v3(V3::Div, s1, s1, s2)?;
        // x * tanh(softplus(x)) as written: -inf * 0 = NaN, as the interpreter computes.
        self.v3(V3::Mul, dst, s1, x)
    }

    /// `dst = x > 0 ? x : alpha expm1(x)`.
    pub(crate) fn elu(
        &mut self,
        dst: VReg,
        x: VReg,
        alpha: f32,
        s: [VReg; 5],
    ) -> Result<(), X64Error> {
        let [s0, s1, s2, s3, s4] = s;
        self.exp_core(s0, x, 1.0, ExpArg::Any, [s1, s2, s3])?;
        self.v3(V3::Sub, s0, s0, Opnd::F(1.0))?;
        self.v3(V3::Mul, s2, x, x)?;
        self.horner(s1, x, &EXPM1_POLY)?;
        self.v3(V3::Fmadd213, s1, s2, x)?;
        self.v3(V3::And, s3, x, Opnd::B(ABS))?;
        let small = self.cmp(pred::LT_OQ, s3, Opnd::F(EXPM1_SMALL), s4)?;
        self.blend(s0, small, s0, s1)?;
        self.v3(V3::Mul, s0, s0, Opnd::F(alpha))?;
        // x >= 0 (not x > 0): elu(-0) is -0, which the expm1 branch would make +0.
        let pos = self.cmp(pred::GE_OQ, x, Opnd::F(0.0), s4)?;
        self.blend(dst, pos, s0, x)
    }

    /// `dst = max(x, 0) + log1p(e^{-|x|})`, log1p compensated as
    /// `log(w) + (u - (w - 1)) / w` with `w = 1 + u`.
    pub(crate) fn softplus(&mut self, dst: VReg, x: VReg, s: [VReg; 5]) -> Result<(), X64Error> {
        let [s0, s1, s2, s3, s4] = s;
        self.v3(V3::And, s0, x, Opnd::B(ABS))?;
        self.exp_core(s1, s0, -1.0, ExpArg::Any, [s0, s2, s3])?;
        self.v3(V3::Add, s2, s1, Opnd::F(1.0))?;
        self.v3(V3::Sub, s3, s2, Opnd::F(1.0))?;
        self.v3(V3::Sub, s1, s1, s3)?;
        self.v3(V3::Div, s1, s1, s2)?;
        self.log_simple(s3, s2, [s2, s0, s4])?;
        self.v3(V3::Add, s3, s3, s1)?;
        self.v3(V3::Xor, s4, s4, s4)?;
        self.v3(V3::Max, s4, s4, x)?;
        self.v3(V3::Add, dst, s4, s3)
    }

    /// `dst = fmod(a, b)` (C semantics: sign of a, |r| < |b|).
    pub(crate) fn fmod(
        &mut self,
        dst: VReg,
        a: VReg,
        b: VReg,
        s: [VReg; 4],
    ) -> Result<(), X64Error> {
        let [s0, s1, s2, s3] = s;
        self.v3(V3::Div, s0, a, b)?;
        self.vround(s0, s0, round::TRUNC)?;
        self.mov_internal(s1, Opnd::R(a))?;
        self.v3(V3::Fnmadd231, s1, s0, b)?;
        // If a/b rounded up to the next integer, r has the wrong sign: add
        // copysign(|b|, a).
        self.v3(V3::And, s2, a, Opnd::B(SIGN))?;
        self.v3(V3::And, s0, s1, Opnd::B(ABS))?;
        self.v3(V3::Or, s0, s0, s2)?;
        let wrong = self.cmp(pred::NEQ_OQ, s0, s1, s3)?;
        self.v3(V3::And, s0, b, Opnd::B(ABS))?;
        self.v3(V3::Or, s0, s0, s2)?;
        self.v3(V3::Add, s0, s1, s0)?;
        self.blend(s1, wrong, s1, s0)?;
        // Zero results take a's sign.
        self.v3(V3::And, s1, s1, Opnd::B(ABS))?;
        self.v3(V3::Or, s1, s1, s2)?;
        // |a| < |b| (including b = inf): the result is a.
        self.v3(V3::And, s0, a, Opnd::B(ABS))?;
        self.v3(V3::And, s2, b, Opnd::B(ABS))?;
        let lt = self.cmp(pred::LT_OQ, s0, s2, s3)?;
        self.blend(dst, lt, s1, a)
    }

    /// `dst = a ^ b` for run-time exponents, IEEE special cases.
    pub(crate) fn pow_dynamic(
        &mut self,
        dst: VReg,
        a: VReg,
        b: VReg,
        s: [VReg; 6],
    ) -> Result<(), X64Error> {
        let [s0, s1, s2, s3, s4, s5] = s;
        self.v3(V3::And, s0, a, Opnd::B(ABS))?;
        self.log_full(s0, s0, [s1, s2, s3, s4, s5])?;
        self.v3(V3::Mul, s0, s0, b)?;
        self.exp_core(s1, s0, 1.0, ExpArg::Any, [s0, s2, s3])?;
        // int = round(b) == b; odd = int && round(b/2) != b/2.
        self.vround(s0, b, round::NEAREST)?;
        let int = self.cmp(pred::EQ_OQ, s0, b, s2)?;
        self.v3(V3::Mul, s3, b, Opnd::F(0.5))?;
        self.vround(s0, s3, round::NEAREST)?;
        let half_frac = self.cmp(pred::NEQ_OQ, s0, s3, s4)?;
        let odd = self.cond_and(half_frac, int)?;
        // Odd integer exponent: the result takes a's sign.
        self.v3(V3::And, s0, a, Opnd::B(SIGN))?;
        self.v3(V3::Xor, s3, s3, s3)?;
        self.blend(s3, odd, s3, s0)?;
        self.v3(V3::Xor, s1, s1, s3)?;
        // Finite a < 0 with a non-integer exponent: NaN. (-inf)^b is +inf or +0, which
        // e^{b ln|a|} already gives.
        let neg = self.cmp(pred::LT_OQ, a, Opnd::F(0.0), s4)?;
        let finite = self.cmp(pred::NEQ_OQ, a, Opnd::F(f32::NEG_INFINITY), s3)?;
        let neg = self.cond_and(neg, finite)?;
        let bad = self.cond_andn(int, neg)?;
        self.blend(s1, bad, s1, Opnd::F(f32::NAN))?;
        self.pow_ones_fixup(dst, s1, a, Some(b), [s0, s2, s3])
    }

    /// `dst = r`, except 1 where `b == 0`, `a == 1`, or `a == -1` and `|b| == inf`.
    fn pow_ones_fixup(
        &mut self,
        dst: VReg,
        r: VReg,
        a: VReg,
        b: Option<VReg>,
        s: [VReg; 3],
    ) -> Result<(), X64Error> {
        let [s0, s1, s2] = s;
        if let Some(b) = b {
            let c = self.cmp(pred::EQ_OQ, b, Opnd::F(0.0), s1)?;
            self.blend(r, c, r, Opnd::F(1.0))?;
            self.v3(V3::And, s0, b, Opnd::B(ABS))?;
            let inf = self.cmp(pred::EQ_OQ, s0, Opnd::F(f32::INFINITY), s1)?;
            let m1 = self.cmp(pred::EQ_OQ, a, Opnd::F(-1.0), s2)?;
            let both = self.cond_and(inf, m1)?;
            self.blend(r, both, r, Opnd::F(1.0))?;
        }
        let c = self.cmp(pred::EQ_OQ, a, Opnd::F(1.0), s1)?;
        self.blend(dst, c, r, Opnd::F(1.0))
    }

    /// `dst = x ^ e` for a finite compile-time `e` without a fast path.
    pub(crate) fn pow_static_general(
        &mut self,
        dst: VReg,
        x: VReg,
        e: f32,
        s: [VReg; 6],
    ) -> Result<(), X64Error> {
        let [s0, s1, s2, s3, s4, s5] = s;
        self.v3(V3::And, s0, x, Opnd::B(ABS))?;
        self.log_full(s0, s0, [s1, s2, s3, s4, s5])?;
        self.v3(V3::Mul, s0, s0, Opnd::F(e))?;
        self.exp_core(s1, s0, 1.0, ExpArg::Any, [s0, s2, s3])?;
        let is_int = e.fract() == 0.0;
        let is_odd = is_int && (e * 0.5).fract() != 0.0;
        if is_odd {
            self.v3(V3::And, s0, x, Opnd::B(SIGN))?;
            self.v3(V3::Xor, s1, s1, s0)?;
        }
        if !is_int {
            // Finite x < 0: NaN; (-inf)^e is +inf or +0, as e^{e ln|x|} gives.
            let neg = self.cmp(pred::LT_OQ, x, Opnd::F(0.0), s2)?;
            let finite = self.cmp(pred::NEQ_OQ, x, Opnd::F(f32::NEG_INFINITY), s3)?;
            let neg = self.cond_and(neg, finite)?;
            self.blend(s1, neg, s1, Opnd::F(f32::NAN))?;
        }
        self.pow_ones_fixup(dst, s1, x, None, [s0, s2, s3])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln2_split_is_accurate_and_short() {
        let sum = f64::from(LN2_HI) + f64::from(LN2_LO);
        assert!((sum - std::f64::consts::LN_2).abs() < 1e-11);
        // 9 significant bits: n * LN2_HI is exact for |n| <= 2^15.
        assert_eq!(LN2_HI.to_bits() & 0x7fff, 0);
    }

    /// `exp_softmax` against f64 `exp` on both ISAs: the documented error for
    /// normal results, exactly 0 below the AVX2 clamp (never a denormal there), -inf
    /// to 0, NaN to NaN.
    #[test]
    fn exp_softmax_is_accurate_and_flushes_masked_scores_on_avx2() {
        let mut xs: Vec<f32> = (0..=24_000).map(|i| -(i as f32) * 0.005).collect();
        // Up to 8 above the reference maximum (the block kernel's slack).
        xs.extend((1..=1600).map(|i| i as f32 * 0.005));
        xs.extend([
            -88.03,
            -88.0,
            -90.0,
            -104.0,
            -1e4,
            -3.4e38,
            f32::NEG_INFINITY,
            -0.0,
        ]);
        for isa in Isa::ALL {
            if !isa.is_supported() {
                eprintln!("SKIPPED: {isa}: this CPU does not support it");
                continue;
            }
            let k = crate::jit_map(isa, 1, false, 3, |a, dst, src, s| {
                a.exp_softmax(dst, src[0], [s[0], s[1], s[2]])
            })
            .expect("compiles");
            let mut ys = vec![0.0f32; xs.len()];
            k.run1(&xs, &mut ys).expect("runs");
            for (&x, &y) in xs.iter().zip(&ys) {
                let want = f64::from(x).exp();
                let t = f64::from(x) * std::f64::consts::LOG2_E;
                if t >= -125.5 || (isa == Isa::Avx512 && t >= -126.0) {
                    let rel = (f64::from(y) - want).abs() / want;
                    let bound = 3e-7 + t.abs() * 2f64.powi(-24);
                    assert!(
                        rel <= bound,
                        "{isa}: exp({x}) = {y}, want {want}, rel {rel:e}"
                    );
                } else if isa == Isa::Avx2 && t < -125.5 {
                    assert_eq!(y, 0.0, "{isa}: exp({x}) below the clamp");
                } else {
                    // Denormal range: within a denormal step (or flushed on AVX2).
                    assert!(
                        (f64::from(y) - want).abs() <= 2f64.powi(-126) * 1e-6 + want * 1e-5
                            || (isa == Isa::Avx2 && y == 0.0),
                        "{isa}: exp({x}) = {y}, want {want}"
                    );
                }
                assert!(
                    y == 0.0 || y.is_normal() || isa == Isa::Avx512,
                    "{isa}: exp({x}) = {y} is denormal"
                );
            }
            let mut nan = [0.0f32];
            k.run1(&[f32::NAN], &mut nan).expect("runs");
            assert!(nan[0].is_nan(), "{isa}: exp(NaN) = {}", nan[0]);
        }
    }
}
