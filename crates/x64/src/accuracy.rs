//! Exhaustive accuracy sweeps: every approximated elementwise emitter, compiled once by
//! the JIT into a map kernel ([`crate::harness`]), run over ranges of f32 bit patterns
//! (up to all 2^32) and compared with a reference evaluated in f64.
//!
//! - [`ops`] lists the swept ops ([`OpSpec`]): every transcendental of the `emit`
//!   accuracy table, HSwish/HSigmoid, the correctly rounded Sqrt/Reciprocal, and the
//!   static Pow forms. Each carries its f64 reference ([`OpSpec::reference`]) and the
//!   bound the table states ([`StatedBound`]).
//! - [`sweep`] runs one op on one or more ISAs over [`PatternRange`]s, in chunks spread
//!   over a rayon pool of the requested size. The f64 reference, the slow part, is
//!   computed once per chunk and shared by every ISA.
//! - [`classify`] is the comparison rule, the same one the `emit` module docs state and
//!   `tests/numerics.rs` uses.
//!
//! # The comparison rule
//! - A NaN reference must give NaN, and a NaN result needs a NaN reference.
//! - An infinite reference (an exact infinity, such as `exp(+inf)`) must be matched
//!   exactly.
//! - An exactly zero reference at a zero or infinite input (`tanh(-0) = -0`,
//!   `exp(-inf) = +0`) must be matched including the sign of zero. A reference that is
//!   zero only because f64 underflowed carries no sign information and is compared as a
//!   number.
//! - Otherwise the error is `|got - want|` in ULPs of the f32 nearest `want`, where
//!   `+-inf` results and references beyond `2^128` in magnitude count as `+-2^128`
//!   (the value one ULP above `f32::MAX`): a reference that rounds to infinity is
//!   matched exactly by an infinite result, and overflowing just above `f32::MAX`
//!   costs a bounded number of ULPs, as the table allows. References below `f32::MIN_POSITIVE` in
//!   magnitude are compared with an absolute tolerance of `f32::MIN_POSITIVE`, and
//!   references below 2^-100 also pass with an absolute error up to 2^-142; the
//!   largest error in that range, in ULPs of the nearest f32 (2^-149 for denormals),
//!   is reported separately ([`OpReport::max_tiny_ulp`]).

use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use snipjit_ir::{GeluApprox, UnaryOp};

use crate::harness::{MapKernel, jit_map, jit_unary_map};
use crate::{Isa, X64Error, scratch_needed_pow_static};

/// Elements per kernel call and per reference batch (1 Mi: 4 MiB of inputs).
pub const DEFAULT_CHUNK: usize = 1 << 20;

/// Special-value mismatches an [`OpReport`] keeps as samples.
pub const MAX_SAMPLES: usize = 8;

/// The emitter one sweep exercises.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SweepOp {
    /// `VecAsm::emit_unary` with this op.
    Unary(UnaryOp),
    /// `VecAsm::emit_pow_static` with this exponent.
    PowStatic(f32),
}

/// The maximum error the `emit` accuracy table states for an op, in ULPs, possibly
/// depending on the input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StatedBound {
    /// A fixed number of ULPs.
    Ulp(f64),
    /// Gelu (tanh): `4 + 3 |2u|` with `u = sqrt(2/pi) (x + 0.044715 x^3)`.
    GeluTanh,
    /// Swish with `beta != 1`: `4 + |beta x|`.
    Swish { beta: f32 },
    /// The general `exp(b ln|x|)` path of Pow: `2 + 2 |b ln|x||`.
    PowGeneral { exponent: f32 },
}

impl StatedBound {
    /// The bound in ULPs at input `x`.
    pub fn at(self, x: f64) -> f64 {
        match self {
            StatedBound::Ulp(u) => u,
            StatedBound::GeluTanh => 4.0 + 3.0 * gelu_tanh_2u(x).abs(),
            StatedBound::Swish { beta } => 4.0 + (f64::from(beta) * x).abs(),
            StatedBound::PowGeneral { exponent } => {
                2.0 + 2.0 * (f64::from(exponent) * x.abs().ln()).abs()
            }
        }
    }

    /// The bound as the table writes it.
    pub fn describe(self) -> String {
        match self {
            StatedBound::Ulp(u) => format!("{u} ULP"),
            StatedBound::GeluTanh => "4 + 3|2u| ULP".into(),
            StatedBound::Swish { beta } => format!("4 + |{beta} x| ULP"),
            StatedBound::PowGeneral { exponent } => format!("2 + 2|{exponent} ln|x|| ULP"),
        }
    }
}

/// One swept op: its name (as the CLI spells it), emitter, and stated bound.
#[derive(Clone, Debug, PartialEq)]
pub struct OpSpec {
    /// Lower-case name, unique among [`ops`]: `exp`, `gelu_erf`, `pow_2.5`, ...
    pub name: String,
    /// The emitter.
    pub op: SweepOp,
    /// The bound of the `emit` accuracy table.
    pub bound: StatedBound,
}

fn spec(name: &str, op: SweepOp, bound: StatedBound) -> OpSpec {
    OpSpec {
        name: name.to_string(),
        op,
        bound,
    }
}

/// Every op the sweep covers, in the order of the `emit` accuracy table: each
/// approximated unary op (Swish also with `beta = 1.7`, whose bound differs), the
/// correctly rounded Sqrt and Reciprocal, and the static Pow forms (an integer, the
/// sqrt-based halves and one general exponent).
pub fn ops() -> Vec<OpSpec> {
    use StatedBound::Ulp;
    use SweepOp::{PowStatic, Unary};
    use UnaryOp as U;
    vec![
        spec("exp", Unary(U::Exp), Ulp(1.0)),
        spec("log", Unary(U::Log), Ulp(1.0)),
        spec("tanh", Unary(U::Tanh), Ulp(2.0)),
        spec("sigmoid", Unary(U::Sigmoid), Ulp(3.0)),
        spec("erf", Unary(U::Erf), Ulp(3.0)),
        spec("gelu_erf", Unary(U::Gelu(GeluApprox::Erf)), Ulp(12.0)),
        spec(
            "gelu_tanh",
            Unary(U::Gelu(GeluApprox::Tanh)),
            StatedBound::GeluTanh,
        ),
        spec("swish", Unary(U::Swish { beta: 1.0 }), Ulp(3.5)),
        spec(
            "swish_1.7",
            Unary(U::Swish { beta: 1.7 }),
            StatedBound::Swish { beta: 1.7 },
        ),
        spec("mish", Unary(U::Mish), Ulp(5.0)),
        spec("elu", Unary(U::Elu { alpha: 1.0 }), Ulp(2.0)),
        spec("softplus", Unary(U::Softplus), Ulp(2.5)),
        spec("hswish", Unary(U::HSwish), Ulp(2.0)),
        spec("hsigmoid", Unary(U::HSigmoid), Ulp(1.0)),
        spec("sqrt", Unary(U::Sqrt), Ulp(0.5)),
        spec("reciprocal", Unary(U::Reciprocal), Ulp(0.5)),
        spec("pow_3", PowStatic(3.0), Ulp(4.0)),
        spec("pow_0.5", PowStatic(0.5), Ulp(1.5)),
        spec("pow_-0.5", PowStatic(-0.5), Ulp(1.5)),
        spec(
            "pow_2.5",
            PowStatic(2.5),
            StatedBound::PowGeneral { exponent: 2.5 },
        ),
    ]
}

/// The op of [`ops`] named `name` (case-insensitive; `silu` is `swish`).
pub fn op_by_name(name: &str) -> Option<OpSpec> {
    let name = name.to_ascii_lowercase();
    let name = if name == "silu" { "swish" } else { &name };
    ops().into_iter().find(|s| s.name == name)
}

fn gelu_tanh_2u(x: f64) -> f64 {
    2.0 * (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl OpSpec {
    /// The exact value of the op at `x`, evaluated in f64 (glibc's `exp`, `ln`, `tanh`,
    /// `ln_1p`, `exp_m1`, `powf`; the `libm` crate's `erf`/`erfc`; composite ops
    /// composed in f64, where their rounding is far below an f32 ULP). Op parameters
    /// are the f32 values the kernel holds. IEEE `pow` special cases hold, including
    /// `pow(-inf, non-integer)` = +inf or +0.
    pub fn reference(&self, x: f64) -> f64 {
        if x.is_nan() {
            return f64::NAN;
        }
        match self.op {
            SweepOp::Unary(op) => unary_reference(op, x),
            SweepOp::PowStatic(e) => x.powf(f64::from(e)),
        }
    }

    /// Compiles the op into a unary map kernel for `isa`.
    pub fn compile(&self, isa: Isa) -> Result<MapKernel, X64Error> {
        match self.op {
            SweepOp::Unary(op) => jit_unary_map(isa, op),
            SweepOp::PowStatic(e) => jit_map(
                isa,
                1,
                false,
                scratch_needed_pow_static(e, isa),
                |a, d, s, t| a.emit_pow_static(d, s[0], e, t),
            ),
        }
    }
}

/// f64 reference of a unary op; `x` is not NaN. Ops without a reference here (bool and
/// exact ops not in [`ops`]) give NaN, so a sweep of them reports every input.
fn unary_reference(op: UnaryOp, x: f64) -> f64 {
    use std::f64::consts::SQRT_2;
    match op {
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Sigmoid => sigmoid(x),
        UnaryOp::Erf => libm::erf(x),
        UnaryOp::Gelu(GeluApprox::Erf) => {
            // erfc for x < 0: 1 + erf(x / sqrt2) cancels there.
            if x < 0.0 {
                0.5 * x * libm::erfc(-x / SQRT_2)
            } else {
                0.5 * x * (1.0 + libm::erf(x / SQRT_2))
            }
        }
        UnaryOp::Gelu(GeluApprox::Tanh) => x * sigmoid(gelu_tanh_2u(x)),
        UnaryOp::Swish { beta } => x * sigmoid(f64::from(beta) * x),
        UnaryOp::Mish => x * x.exp().ln_1p().tanh(),
        UnaryOp::Elu { alpha } => {
            if x > 0.0 {
                x
            } else {
                f64::from(alpha) * x.exp_m1()
            }
        }
        UnaryOp::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
        UnaryOp::HSwish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
        UnaryOp::HSigmoid => (x + 3.0).clamp(0.0, 6.0) / 6.0,
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Reciprocal => 1.0 / x,
        UnaryOp::Abs => x.abs(),
        UnaryOp::Neg => -x,
        _ => f64::NAN,
    }
}

/// How one result compares with its reference (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict {
    /// A NaN, infinity or exact-zero reference the result does not match.
    Special,
    /// A reference below `f32::MIN_POSITIVE` (or below 2^-100 within 2^-142): passes
    /// when within the absolute tolerance; `ulp` is the error in ULPs of the f32 nearest
    /// the reference (2^-149 for denormals), for information.
    Tiny { within: bool, ulp: f64 },
    /// The error in ULPs and the relative error (0 for exact specials).
    Ulp { ulp: f64, rel: f64 },
}

/// Compares `got` (the kernel's result at input `x`) with the f64 reference `want`.
pub fn classify(x: f32, got: f32, want: f64) -> Verdict {
    if want.is_nan() || got.is_nan() {
        return if want.is_nan() && got.is_nan() {
            Verdict::Ulp { ulp: 0.0, rel: 0.0 }
        } else {
            Verdict::Special
        };
    }
    if want.is_infinite() {
        return if f64::from(got) == want {
            Verdict::Ulp { ulp: 0.0, rel: 0.0 }
        } else {
            Verdict::Special
        };
    }
    if want == 0.0 && (x == 0.0 || x.is_infinite()) {
        return if got.to_bits() == (want as f32).to_bits() {
            Verdict::Ulp { ulp: 0.0, rel: 0.0 }
        } else {
            Verdict::Special
        };
    }
    let top = 2f64.powi(128);
    let g = f64::from(got).clamp(-top, top);
    let want = want.clamp(-top, top);
    let err = (g - want).abs();
    let min_pos = f64::from(f32::MIN_POSITIVE);
    // The f32 nearest `want`, kept finite: a reference that rounds to infinity is
    // measured in ULPs of f32::MAX.
    let want32 = (want as f32).clamp(f32::MIN, f32::MAX).abs();
    let ulp = if want32 < f32::MIN_POSITIVE {
        2f64.powi(-149)
    } else {
        2f64.powi(((want32.to_bits() >> 23) as i32) - 127 - 23)
    };
    if want.abs() < min_pos {
        return Verdict::Tiny {
            within: err <= min_pos,
            ulp: err / ulp,
        };
    }
    if want.abs() < 2f64.powi(-100) && err <= 2f64.powi(-142) {
        return Verdict::Tiny {
            within: true,
            ulp: err / ulp,
        };
    }
    Verdict::Ulp {
        ulp: err / ulp,
        rel: err / want.abs(),
    }
}

/// Bit patterns `first, first + stride, ...` up to `last` (inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PatternRange {
    /// First bit pattern.
    pub first: u32,
    /// Last bit pattern that may be included (it is when `stride` divides the span).
    pub last: u32,
    /// Step between patterns, at least 1.
    pub stride: u32,
}

impl PatternRange {
    /// Every `stride`-th pattern of all 2^32 (stride 1: every f32, NaNs included).
    pub fn all(stride: u32) -> PatternRange {
        PatternRange {
            first: 0,
            last: u32::MAX,
            stride: stride.max(1),
        }
    }

    /// Every f32 from `lo` to `hi` (both finite or infinite, `lo <= hi`), as one range
    /// per sign: the negative part walks bit patterns downwards in value, so it is
    /// given by its own pattern range. Zero contributes both `-0` and `+0`.
    pub fn between(lo: f32, hi: f32, stride: u32) -> Vec<PatternRange> {
        let stride = stride.max(1);
        let mut v = Vec::new();
        if lo.is_nan() || hi.is_nan() || lo > hi {
            return v;
        }
        if lo.is_sign_negative() {
            // Negative values: pattern 0x8000_0000 (-0) up to the bits of the most
            // negative one.
            let top = if hi.is_sign_negative() {
                hi.to_bits()
            } else {
                0x8000_0000
            };
            v.push(PatternRange {
                first: top,
                last: lo.to_bits(),
                stride,
            });
        }
        if hi.is_sign_positive() {
            let bottom = if lo.is_sign_positive() {
                lo.to_bits()
            } else {
                0
            };
            v.push(PatternRange {
                first: bottom,
                last: hi.to_bits(),
                stride,
            });
        }
        v
    }

    /// Number of patterns.
    pub fn len(&self) -> u64 {
        if self.last < self.first {
            0
        } else {
            u64::from(self.last - self.first) / u64::from(self.stride.max(1)) + 1
        }
    }

    /// True if the range holds no pattern.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`-th pattern (`i < len`).
    fn nth(&self, i: u64) -> u32 {
        (u64::from(self.first) + i * u64::from(self.stride.max(1))) as u32
    }
}

/// How a sweep runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SweepConfig {
    /// Worker threads (a rayon pool of this size), at least 1.
    pub threads: usize,
    /// Elements per kernel call, at least 1.
    pub chunk: usize,
}

impl Default for SweepConfig {
    fn default() -> SweepConfig {
        SweepConfig {
            threads: 1,
            chunk: DEFAULT_CHUNK,
        }
    }
}

/// A result that broke a rule: the input, the kernel's result and the reference.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// The input.
    pub x: f32,
    /// The kernel's result.
    pub got: f32,
    /// The f64 reference.
    pub want: f64,
}

/// The outcome of sweeping one op on one ISA.
#[derive(Clone, Debug, PartialEq)]
pub struct OpReport {
    /// [`OpSpec::name`].
    pub op: String,
    /// The ISA the kernel was compiled for.
    pub isa: Isa,
    /// Inputs compared.
    pub inputs: u64,
    /// Largest error in ULPs (over results compared in ULPs), and where.
    pub max_ulp: f64,
    /// The input, result and reference of [`OpReport::max_ulp`] (`None` if no result
    /// was compared in ULPs).
    pub max_ulp_at: Option<Sample>,
    /// Largest relative error `|got - want| / |want|` over the same results, and where.
    pub max_rel: f64,
    /// The input of [`OpReport::max_rel`].
    pub max_rel_at: Option<f32>,
    /// Largest error in ULPs of the nearest f32 (2^-149 for denormals) over the results
    /// judged by absolute tolerance (references below `f32::MIN_POSITIVE`, or below
    /// 2^-100 and within 2^-142), for information, and where.
    pub max_tiny_ulp: f64,
    /// The input, result and reference of [`OpReport::max_tiny_ulp`].
    pub max_tiny_at: Option<Sample>,
    /// Results whose reference is tiny and whose absolute error exceeds the tolerance.
    pub tiny_over: u64,
    /// The bound as the table states it.
    pub bound: String,
    /// Results whose ULP error exceeds the stated bound at their input.
    pub over_bound: u64,
    /// The worst result over the bound (by error minus bound), if any.
    pub worst_over: Option<Sample>,
    /// NaN / infinity / zero-sign mismatches.
    pub special_mismatches: u64,
    /// The first [`MAX_SAMPLES`] special mismatches, in input order.
    pub special_samples: Vec<Sample>,
}

impl OpReport {
    fn new(op: &str, isa: Isa, bound: StatedBound) -> OpReport {
        OpReport {
            op: op.to_string(),
            isa,
            inputs: 0,
            max_ulp: 0.0,
            max_ulp_at: None,
            max_rel: 0.0,
            max_rel_at: None,
            max_tiny_ulp: 0.0,
            max_tiny_at: None,
            tiny_over: 0,
            bound: bound.describe(),
            over_bound: 0,
            worst_over: None,
            special_mismatches: 0,
            special_samples: Vec::new(),
        }
    }

    /// True if every result is within the stated bound and every special value matches.
    pub fn passed(&self) -> bool {
        self.over_bound == 0 && self.tiny_over == 0 && self.special_mismatches == 0
    }
}

/// Per-ISA accumulator of one chunk (or of a merged run of chunks).
#[derive(Clone, Debug)]
struct Acc {
    report: OpReport,
    worst_over_excess: f64,
}

impl Acc {
    fn add(&mut self, x: f32, got: f32, want: f64, bound: StatedBound) {
        let r = &mut self.report;
        r.inputs += 1;
        let sample = Sample { x, got, want };
        match classify(x, got, want) {
            Verdict::Special => {
                r.special_mismatches += 1;
                if r.special_samples.len() < MAX_SAMPLES {
                    r.special_samples.push(sample);
                }
            }
            Verdict::Tiny { within, ulp } => {
                if !within {
                    r.tiny_over += 1;
                }
                if ulp > r.max_tiny_ulp || r.max_tiny_at.is_none() {
                    r.max_tiny_ulp = ulp;
                    r.max_tiny_at = Some(sample);
                }
            }
            Verdict::Ulp { ulp, rel } => {
                if ulp > r.max_ulp || r.max_ulp_at.is_none() {
                    r.max_ulp = ulp;
                    r.max_ulp_at = Some(sample);
                }
                if rel > r.max_rel || r.max_rel_at.is_none() {
                    r.max_rel = rel;
                    r.max_rel_at = Some(x);
                }
                let b = bound.at(f64::from(x));
                if ulp > b {
                    r.over_bound += 1;
                    if ulp - b > self.worst_over_excess || r.worst_over.is_none() {
                        self.worst_over_excess = ulp - b;
                        r.worst_over = Some(sample);
                    }
                }
            }
        }
    }

    /// Merges `later` (the chunk after `self`) into `self`; ties keep `self`'s sample,
    /// so the result does not depend on how chunks were split among threads.
    fn merge(mut self, later: Acc) -> Acc {
        let (r, l) = (&mut self.report, later.report);
        r.inputs += l.inputs;
        if l.max_ulp_at.is_some() && (r.max_ulp_at.is_none() || l.max_ulp > r.max_ulp) {
            r.max_ulp = l.max_ulp;
            r.max_ulp_at = l.max_ulp_at;
        }
        if l.max_rel_at.is_some() && (r.max_rel_at.is_none() || l.max_rel > r.max_rel) {
            r.max_rel = l.max_rel;
            r.max_rel_at = l.max_rel_at;
        }
        if l.max_tiny_at.is_some() && (r.max_tiny_at.is_none() || l.max_tiny_ulp > r.max_tiny_ulp) {
            r.max_tiny_ulp = l.max_tiny_ulp;
            r.max_tiny_at = l.max_tiny_at;
        }
        r.tiny_over += l.tiny_over;
        r.over_bound += l.over_bound;
        if l.worst_over.is_some()
            && (r.worst_over.is_none() || later.worst_over_excess > self.worst_over_excess)
        {
            r.worst_over = l.worst_over;
            self.worst_over_excess = later.worst_over_excess;
        }
        r.special_mismatches += l.special_mismatches;
        let room = MAX_SAMPLES - r.special_samples.len();
        r.special_samples
            .extend(l.special_samples.into_iter().take(room));
        self
    }
}

/// Sweeps `spec` on each of `isas` over `ranges`: one kernel per ISA, compiled once;
/// inputs in chunks of `cfg.chunk` over a pool of `cfg.threads` threads.
/// `progress(done, total)` is called (from any worker) after each chunk with the
/// number of inputs finished so far. Returns one report per ISA, in the order given.
pub fn sweep(
    spec: &OpSpec,
    isas: &[Isa],
    ranges: &[PatternRange],
    cfg: &SweepConfig,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Vec<OpReport>, X64Error> {
    if cfg.threads == 0 || cfg.chunk == 0 {
        return Err(X64Error::Args(format!(
            "accuracy sweep of {}: threads ({}) and chunk ({}) must be at least 1",
            spec.name, cfg.threads, cfg.chunk
        )));
    }
    if let Some(&isa) = isas.iter().find(|i| !i.is_supported()) {
        return Err(X64Error::IsaUnsupported { isa });
    }
    let kernels = isas
        .iter()
        .map(|&isa| spec.compile(isa))
        .collect::<Result<Vec<_>, _>>()?;
    // Chunks never straddle two ranges, so each is (range index, first element, count).
    let chunk = cfg.chunk as u64;
    let mut chunks = Vec::new();
    for (ri, r) in ranges.iter().enumerate() {
        let mut i = 0;
        while i < r.len() {
            let n = chunk.min(r.len() - i);
            chunks.push((ri, i, n as usize));
            i += n;
        }
    }
    let total: u64 = ranges.iter().map(PatternRange::len).sum();
    let done = AtomicU64::new(0);
    let empty = || -> Vec<Acc> {
        isas.iter()
            .map(|&isa| Acc {
                report: OpReport::new(&spec.name, isa, spec.bound),
                worst_over_excess: 0.0,
            })
            .collect()
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads)
        .build()
        .map_err(|e| X64Error::Args(format!("accuracy sweep: no thread pool: {e}")))?;
    let run = || {
        chunks
            .par_iter()
            .map_init(
                || {
                    let f = Vec::<f32>::new;
                    (f(), Vec::<f64>::new(), f(), f())
                },
                |(xs, want, got, prev), &(ri, start, n)| -> Result<Vec<Acc>, X64Error> {
                    let r = &ranges[ri];
                    xs.clear();
                    xs.extend((0..n as u64).map(|i| f32::from_bits(r.nth(start + i))));
                    want.clear();
                    want.extend(xs.iter().map(|&x| spec.reference(f64::from(x))));
                    got.resize(n, 0.0);
                    prev.resize(n, 0.0);
                    let mut accs = empty();
                    for i in 0..kernels.len() {
                        kernels[i].run1(xs, got)?;
                        // The ISAs usually agree bit for bit: then the previous ISA's
                        // statistics are this one's too.
                        let same = i > 0
                            && got
                                .iter()
                                .zip(prev.iter())
                                .all(|(a, b)| a.to_bits() == b.to_bits());
                        if same {
                            let isa = accs[i].report.isa;
                            accs[i] = accs[i - 1].clone();
                            accs[i].report.isa = isa;
                        } else {
                            let acc = &mut accs[i];
                            for ((&x, &g), &w) in xs.iter().zip(got.iter()).zip(want.iter()) {
                                acc.add(x, g, w, spec.bound);
                            }
                        }
                        std::mem::swap(got, prev);
                    }
                    let d = done.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
                    progress(d, total);
                    Ok(accs)
                },
            )
            .try_reduce(empty, |a, b| {
                Ok(a.into_iter().zip(b).map(|(x, y)| x.merge(y)).collect())
            })
    };
    let accs = pool.install(run)?;
    Ok(accs.into_iter().map(|a| a.report).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_follows_the_stated_rule() {
        // One ULP of 1.0 (the f32 nearest the reference) is 2^-23.
        let one_ulp = f64::from(f32::EPSILON);
        match classify(0.5, 1.0 + f32::EPSILON, 1.0) {
            Verdict::Ulp { ulp, rel } => {
                assert_eq!(ulp, 1.0);
                assert_eq!(rel, one_ulp);
            }
            v => panic!("{v:?}"),
        }
        assert_eq!(classify(0.0, f32::NAN, 1.0), Verdict::Special);
        assert_eq!(classify(f32::NAN, 1.0, f64::NAN), Verdict::Special);
        assert_eq!(
            classify(f32::NAN, f32::NAN, f64::NAN),
            Verdict::Ulp { ulp: 0.0, rel: 0.0 }
        );
        assert_eq!(
            classify(f32::INFINITY, f32::MAX, f64::INFINITY),
            Verdict::Special
        );
        // Sign of an exact zero at a zero input matters; after f64 underflow it does not.
        assert_eq!(classify(-0.0, 0.0, -0.0), Verdict::Special);
        assert!(matches!(
            classify(-200.0, 0.0, -0.0),
            Verdict::Tiny { within: true, .. }
        ));
        // Denormal references: absolute tolerance, error in units of 2^-149.
        assert_eq!(
            classify(-100.0, f32::from_bits(3), 2f64.powi(-149)),
            Verdict::Tiny {
                within: true,
                ulp: 2.0
            }
        );
        // Overflowing to +inf just above f32::MAX is a finite number of ULPs.
        match classify(88.8, f32::INFINITY, f64::from(f32::MAX)) {
            Verdict::Ulp { ulp, .. } => assert_eq!(ulp, 1.0),
            v => panic!("{v:?}"),
        }
        // A reference that rounds to infinity is matched by infinity; f32::MAX is one
        // ULP short of it.
        assert_eq!(
            classify(1e-42, f32::INFINITY, 1e42),
            Verdict::Ulp { ulp: 0.0, rel: 0.0 }
        );
        match classify(1e-42, f32::MAX, 1e42) {
            Verdict::Ulp { ulp, .. } => assert_eq!(ulp, 1.0),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn pattern_ranges_cover_what_they_say() {
        assert_eq!(PatternRange::all(1).len(), 1 << 32);
        assert_eq!(PatternRange::all(3).len(), (1u64 << 32).div_ceil(3));
        let r = PatternRange::between(-1.0, 2.0, 1);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].first, 0x8000_0000);
        assert_eq!(r[0].last, (-1.0f32).to_bits());
        assert_eq!(r[1].first, 0);
        assert_eq!(r[1].last, 2.0f32.to_bits());
        let r = PatternRange::between(-3.0, -2.0, 1);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].len(), u64::from((1u32 << 22) + 1));
        assert_eq!(f32::from_bits(r[0].nth(0)), -2.0);
        assert_eq!(f32::from_bits(r[0].nth(r[0].len() - 1)), -3.0);
        assert!(PatternRange::between(2.0, 1.0, 1).is_empty());
    }

    #[test]
    fn every_op_has_a_unique_name_and_a_reference() {
        let all = ops();
        for (i, s) in all.iter().enumerate() {
            assert!(all[i + 1..].iter().all(|t| t.name != s.name), "{}", s.name);
            assert!(s.reference(0.75).is_finite(), "{}", s.name);
            assert_eq!(op_by_name(&s.name.to_uppercase()).as_ref(), Some(s));
        }
        assert_eq!(op_by_name("silu").unwrap().name, "swish");
        assert!(op_by_name("nope").is_none());
    }
}
