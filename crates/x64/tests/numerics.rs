//! Numerics of every elementwise emitter against libm in f64, on both ISAs, through the
//! map harness (full vectors + masked tails). The ULP bounds asserted here are the ones
//! stated in the `emit` module docs.

#![allow(clippy::type_complexity, clippy::needless_range_loop)] // case tables and lane-indexed checks

mod common;

use common::{isas, sweep, ulp_err};
use snipjit_ir::{BinaryOp, DType, GeluApprox, UnaryOp};
use snipjit_x64::{Isa, MapKernel, jit_binary_map, jit_map, jit_unary_map, scratch_needed_unary};

fn gelu_tanh_2u(x: f64) -> f64 {
    2.0 * (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + libm::exp(-x))
}

/// Exact-in-f64 reference and max ULP for each unary op (with a few parameter variants).
type Bound = Box<dyn Fn(f64) -> f64>;

fn fixed(b: f64) -> Bound {
    Box::new(move |_| b)
}

fn unary_cases() -> Vec<(UnaryOp, Bound, Box<dyn Fn(f64) -> f64>)> {
    use UnaryOp as U;
    let nan_max = |x: f64, y: f64| if x.is_nan() { x } else { x.max(y) };
    vec![
        (U::Abs, fixed(0.0), Box::new(f64::abs)),
        (U::Neg, fixed(0.0), Box::new(|x: f64| -x)),
        (U::Relu, fixed(0.0), Box::new(move |x| nan_max(x, 0.0))),
        (
            U::Clamp {
                min: -1.5,
                max: 2.25,
            },
            fixed(0.0),
            Box::new(move |x: f64| if x.is_nan() { x } else { x.clamp(-1.5, 2.25) }),
        ),
        (U::Sqrt, fixed(0.5), Box::new(f64::sqrt)),
        (U::Reciprocal, fixed(0.5), Box::new(|x| 1.0 / x)),
        (U::Floor, fixed(0.0), Box::new(f64::floor)),
        (U::Ceil, fixed(0.0), Box::new(f64::ceil)),
        (U::Round, fixed(0.0), Box::new(libm::rint)),
        (
            U::Sign,
            fixed(0.0),
            Box::new(|x: f64| {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    x
                }
            }),
        ),
        (U::Exp, fixed(1.0), Box::new(libm::exp)),
        (U::Log, fixed(1.0), Box::new(libm::log)),
        (U::Tanh, fixed(2.0), Box::new(libm::tanh)),
        (U::Sigmoid, fixed(3.0), Box::new(sigmoid)),
        (U::Erf, fixed(3.0), Box::new(libm::erf)),
        (
            U::Gelu(GeluApprox::Erf),
            fixed(12.0),
            Box::new(|x: f64| {
                if x < 0.0 {
                    0.5 * x * libm::erfc(-x / std::f64::consts::SQRT_2)
                } else {
                    0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
                }
            }),
        ),
        (
            U::Gelu(GeluApprox::Tanh),
            Box::new(|x| 4.0 + 3.0 * gelu_tanh_2u(x).abs()),
            Box::new(|x: f64| {
                let u = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
                x * sigmoid(2.0 * u)
            }),
        ),
        (
            U::Swish { beta: 1.0 },
            fixed(3.5),
            Box::new(|x| x * sigmoid(x)),
        ),
        (
            U::Swish { beta: 1.7 },
            Box::new(|x: f64| 4.0 + (1.7 * x).abs()),
            Box::new(|x| x * sigmoid(f64::from(1.7f32) * x)),
        ),
        (
            U::Swish { beta: -0.5 },
            Box::new(|x: f64| 4.0 + (-0.5 * x).abs()),
            Box::new(|x| x * sigmoid(-0.5 * x)),
        ),
        (
            U::HSwish,
            fixed(2.0),
            Box::new(|x: f64| {
                if x.is_nan() {
                    x
                } else {
                    x * (x + 3.0).clamp(0.0, 6.0) / 6.0
                }
            }),
        ),
        (
            U::HSigmoid,
            fixed(1.0),
            Box::new(|x: f64| {
                if x.is_nan() {
                    x
                } else {
                    (x + 3.0).clamp(0.0, 6.0) / 6.0
                }
            }),
        ),
        (
            U::Mish,
            fixed(5.0),
            Box::new(|x: f64| x * libm::tanh(libm::log1p(libm::exp(x)))),
        ),
        (
            U::Elu { alpha: 1.0 },
            fixed(2.0),
            Box::new(|x| if x > 0.0 { x } else { libm::expm1(x) }),
        ),
        (
            U::Elu { alpha: 0.5 },
            fixed(2.0),
            Box::new(|x| if x > 0.0 { x } else { 0.5 * libm::expm1(x) }),
        ),
        (
            U::LeakyRelu { alpha: 0.01 },
            fixed(0.5),
            Box::new(|x| if x < 0.0 { x * f64::from(0.01f32) } else { x }),
        ),
        (
            U::LeakyRelu { alpha: 2.5 },
            fixed(0.5),
            Box::new(|x| if x < 0.0 { x * 2.5 } else { x }),
        ),
        (
            U::LeakyRelu { alpha: -0.25 },
            fixed(0.5),
            Box::new(|x| if x < 0.0 { x * -0.25 } else { x }),
        ),
        (
            U::Softplus,
            fixed(2.0),
            Box::new(|x: f64| x.max(0.0) + libm::log1p(libm::exp(-x.abs()))),
        ),
    ]
}

/// Runs `k` on `src` and returns the output.
fn run1(k: &MapKernel, src: &[f32]) -> Vec<f32> {
    let mut dst = vec![0.0; src.len()];
    k.run1(src, &mut dst).unwrap();
    dst
}

/// Tail lengths 0..=2*lanes+1 at several offsets: results must equal the full run
/// bit for bit, and elements past n must stay untouched.
fn check_tails(isa: Isa, k: &MapKernel, src: &[f32], full: &[f32], what: &str) {
    let lanes = isa.lanes();
    for start in [0usize, 3, 1000] {
        for n in 0..=2 * lanes + 1 {
            let s = &src[start..start + n];
            let mut dst = vec![f32::from_bits(0xdead_beef); n + lanes];
            k.run1(s, &mut dst[..n]).unwrap();
            for i in 0..n {
                assert_eq!(
                    dst[i].to_bits(),
                    full[start + i].to_bits(),
                    "{what} on {isa}: tail n={n} lane {i}"
                );
            }
            assert!(
                dst[n..].iter().all(|v| v.to_bits() == 0xdead_beef),
                "{what} on {isa}: wrote past n={n}"
            );
        }
    }
}

#[test]
fn unary_ops_match_libm_within_stated_ulp() {
    let src = sweep(-120.0, 120.0, 1 << 20);
    let small = sweep(-8.0, 8.0, 1 << 20);
    let mut report = String::new();
    let mut failures = Vec::new();
    for isa in isas("unary_ops_match_libm_within_stated_ulp") {
        for (op, bound, reference) in unary_cases() {
            let k = jit_unary_map(isa, op).unwrap();
            let in_place = jit_map(isa, 1, true, scratch_needed_unary(op, isa), |a, d, s, t| {
                a.emit_unary(op, d, s[0], t)
            })
            .unwrap();
            let mut worst = (0.0f64, 0.0f32, 0.0f32);
            for inputs in [&src, &small] {
                let got = run1(&k, inputs);
                let got_in_place = run1(&in_place, inputs);
                for ((&x, &y), &y2) in inputs.iter().zip(&got).zip(&got_in_place) {
                    assert_eq!(
                        y.to_bits(),
                        y2.to_bits(),
                        "{op:?} on {isa}: in-place differs at x={x:e}"
                    );
                    let b = bound(f64::from(x));
                    let e = ulp_err(y, reference(f64::from(x)));
                    if e > b {
                        failures.push(format!(
                            "{op:?} on {isa}: {e:.3} ULP > {b:.3} at x={x:e} (got {y:e})"
                        ));
                    }
                    if e > worst.0 || e.is_nan() {
                        worst = (e, x, y);
                    }
                }
                check_tails(isa, &k, inputs, &got, op.name());
            }
            report.push_str(&format!(
                "{isa} {op:?}: max {:.3} ulp at x={:e} (got {:e})\n",
                worst.0, worst.1, worst.2
            ));
        }
    }
    eprintln!("{report}");
    failures.truncate(40);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Operand values for binary ops: every 2^22-th bit pattern, specials, and a grid.
fn binary_operands() -> Vec<f32> {
    let mut v: Vec<f32> = (0..=u32::MAX)
        .step_by(1 << 22)
        .map(f32::from_bits)
        .collect();
    v.extend(common::specials());
    v.extend((0..200).map(|i| (i as f32 - 100.0) * 0.173));
    v
}

fn pairs() -> (Vec<f32>, Vec<f32>) {
    let ops = binary_operands();
    let mut a = Vec::with_capacity(ops.len() * ops.len());
    let mut b = Vec::with_capacity(ops.len() * ops.len());
    for &x in &ops {
        for &y in &ops {
            a.push(x);
            b.push(y);
        }
    }
    (a, b)
}

type Bound2 = Box<dyn Fn(f64, f64) -> Option<f64>>;

/// (op, bound (None: not checked at this point), reference).
fn binary_cases() -> Vec<(BinaryOp, Bound2, Box<dyn Fn(f64, f64) -> f64>)> {
    use BinaryOp as B;
    let fixed = |b: f64| -> Bound2 { Box::new(move |_, _| Some(b)) };
    let nan2 = |a: f64, b: f64, r: f64| {
        if a.is_nan() || b.is_nan() {
            f64::NAN
        } else {
            r
        }
    };
    vec![
        (B::Add, fixed(0.5), Box::new(|a, b| a + b)),
        (B::Sub, fixed(0.5), Box::new(|a, b| a - b)),
        (B::Mul, fixed(0.5), Box::new(|a, b| a * b)),
        (B::Div, fixed(0.5), Box::new(|a, b| a / b)),
        (
            B::Max,
            fixed(0.0),
            Box::new(move |a, b| nan2(a, b, a.max(b))),
        ),
        (
            B::Min,
            fixed(0.0),
            Box::new(move |a, b| nan2(a, b, a.min(b))),
        ),
        (
            B::SquaredDifference,
            // Just below FLT_MAX, the rounded difference may square to +inf.
            Box::new(|a: f64, b: f64| {
                ((a - b) * (a - b) < 3.0e38 || !(a - b).is_finite()).then_some(2.0)
            }),
            Box::new(|a, b| (a - b) * (a - b)),
        ),
        (
            B::PRelu,
            fixed(0.5),
            Box::new(|a, b| if a < 0.0 { a * b } else { a }),
        ),
        (
            B::Mod,
            // Exact while the quotient is below 2^23.
            Box::new(|a: f64, b: f64| {
                ((a / b).abs() < 8_388_608.0 || !(a / b).is_finite()).then_some(0.0)
            }),
            Box::new(libm::fmod),
        ),
        (
            B::Pow,
            // pow(-inf, non-integer) is NaN here (documented).
            Box::new(|a: f64, b: f64| {
                // Results within the error bound of FLT_MAX may overflow to inf.
                let near_max = (1e38..f64::INFINITY).contains(&libm::pow(a, b).abs());
                (!(near_max || a == f64::NEG_INFINITY && b.fract() != 0.0 && b.is_finite()))
                    .then(|| 2.0 + 2.0 * (b * a.abs().ln()).abs())
            }),
            Box::new(libm::pow),
        ),
    ]
}

#[test]
fn binary_ops_match_libm_within_stated_ulp() {
    let (a, b) = pairs();
    let mut failures = Vec::new();
    let mut report = String::new();
    for isa in isas("binary_ops_match_libm_within_stated_ulp") {
        for (op, bound, reference) in binary_cases() {
            let k = jit_binary_map(isa, op).unwrap();
            let mut got = vec![0.0; a.len()];
            k.run2(&a, &b, &mut got).unwrap();
            let mut worst = 0.0f64;
            let mut op_failures = 0;
            for i in 0..a.len() {
                let (x, y) = (f64::from(a[i]), f64::from(b[i]));
                let Some(limit) = bound(x, y) else { continue };
                let e = ulp_err(got[i], reference(x, y));
                worst = worst.max(e);
                if e > limit && op_failures < 6 {
                    op_failures += 1;
                    failures.push(format!(
                        "{op:?} on {isa}: {e:.3} ULP > {limit:.3} at ({x:e}, {y:e}): got {:e}",
                        got[i]
                    ));
                }
            }
            report.push_str(&format!("{isa} {op:?}: max {worst:.3} ulp\n"));
            // Tails: bit-identical to the full run, nothing written past n.
            let lanes = isa.lanes();
            for n in 0..=2 * lanes + 1 {
                let mut dst = vec![f32::from_bits(0xdead_beef); n + 4];
                k.run2(&a[77..77 + n], &b[77..77 + n], &mut dst[..n])
                    .unwrap();
                for i in 0..n {
                    assert_eq!(
                        dst[i].to_bits(),
                        got[77 + i].to_bits(),
                        "{op:?} on {isa}: tail n={n}"
                    );
                }
                assert!(dst[n..].iter().all(|v| v.to_bits() == 0xdead_beef));
            }
        }
    }
    eprintln!("{report}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn comparisons_and_logic_produce_exact_masks() {
    let (a, b) = pairs();
    let t = u32::MAX;
    type Cmp = fn(f64, f64) -> bool;
    let cases: [(BinaryOp, Cmp); 6] = [
        (BinaryOp::Equal, |x, y| x == y),
        (BinaryOp::NotEqual, |x, y| x != y),
        (BinaryOp::Less, |x, y| x < y),
        (BinaryOp::LessEqual, |x, y| x <= y),
        (BinaryOp::Greater, |x, y| x > y),
        (BinaryOp::GreaterEqual, |x, y| x >= y),
    ];
    let mask = |v: bool| if v { t } else { 0 };
    for isa in isas("comparisons_and_logic_produce_exact_masks") {
        for (op, f) in cases {
            let k = jit_binary_map(isa, op).unwrap();
            let mut got = vec![0.0; a.len()];
            k.run2(&a, &b, &mut got).unwrap();
            for i in 0..a.len() {
                let want = mask(f(f64::from(a[i]), f64::from(b[i])));
                assert_eq!(
                    got[i].to_bits(),
                    want,
                    "{op:?} on {isa} at ({:e}, {:e})",
                    a[i],
                    b[i]
                );
            }
        }
        // Logic on bool masks: all four input combinations, repeated to fill tails.
        let pa: Vec<f32> = (0..64).map(|i| f32::from_bits(mask(i & 1 == 1))).collect();
        let pb: Vec<f32> = (0..64).map(|i| f32::from_bits(mask(i & 2 == 2))).collect();
        type Logic = fn(bool, bool) -> bool;
        let logic: [(BinaryOp, Logic); 3] = [
            (BinaryOp::And, |x, y| x & y),
            (BinaryOp::Or, |x, y| x | y),
            (BinaryOp::Xor, |x, y| x ^ y),
        ];
        for (op, f) in logic {
            let k = jit_binary_map(isa, op).unwrap();
            let mut got = vec![0.0; 64];
            k.run2(&pa, &pb, &mut got).unwrap();
            for i in 0..64 {
                assert_eq!(
                    got[i].to_bits(),
                    mask(f(i & 1 == 1, i & 2 == 2)),
                    "{op:?} on {isa}"
                );
            }
        }
        let k = jit_unary_map(isa, UnaryOp::Not).unwrap();
        let mut got = vec![0.0; 64];
        k.run1(&pa, &mut got).unwrap();
        for i in 0..64 {
            assert_eq!(got[i].to_bits(), mask(i & 1 == 0), "Not on {isa}");
        }
    }
}

#[test]
fn pow_static_matches_libm() {
    let src = sweep(-30.0, 30.0, 1 << 18);
    let mut failures = Vec::new();
    for isa in isas("pow_static_matches_libm") {
        for e in [
            0.0f32, 1.0, 2.0, 3.0, 0.5, -0.5, -1.0, 5.0, -4.0, 16.0, 2.5, -1.7, 0.3,
        ] {
            let k = jit_map(
                isa,
                1,
                false,
                snipjit_x64::scratch_needed_pow_static(e, isa),
                |a, d, s, t| a.emit_pow_static(d, s[0], e, t),
            )
            .unwrap();
            let got = run1(&k, &src);
            check_tails(isa, &k, &src, &got, "pow_static");
            let ef = f64::from(e);
            let mut fails = 0;
            for (&x, &y) in src.iter().zip(&got) {
                let xf = f64::from(x);
                // IEEE pow everywhere, the sqrt-based +-0.5 paths included (at -0 and
                // -inf they differ from sqrt).
                let want = libm::pow(xf, ef);
                let bound = if e.fract() == 0.0 && e.abs() <= 16.0 {
                    // One rounding per multiply (plus one for the reciprocal).
                    1.0 + ef.abs()
                } else if e == 0.5 || e == -0.5 {
                    // sqrt, then a correctly rounded division.
                    1.5
                } else {
                    2.0 + 2.0 * (ef * xf.abs().ln()).abs()
                };
                let near_max = (1e38..f64::INFINITY).contains(&want.abs());
                let e_ulp = ulp_err(y, want);
                if !near_max && e_ulp > bound && fails < 5 {
                    fails += 1;
                    failures.push(format!("pow(x, {e}) on {isa}: {e_ulp:.2} ULP > {bound} at x={x:e}: got {y:e}, want {want:e}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn select_fma_and_converts() {
    let t = f32::from_bits(u32::MAX);
    let n = 45;
    let c: Vec<f32> = (0..n).map(|i| if i % 3 == 0 { t } else { 0.0 }).collect();
    let a: Vec<f32> = (0..n).map(|i| i as f32 * 1.25 - 20.0).collect();
    let b: Vec<f32> = (0..n).map(|i| (i as f32).sqrt()).collect();
    for isa in isas("select_fma_and_converts") {
        // Select, every aliasing of dst.
        for in_place in [false, true] {
            let k = jit_map(isa, 3, in_place, 0, |asm, d, s, t| {
                asm.emit_select(d, s[0], s[1], s[2], t)
            })
            .unwrap();
            let mut out = vec![0.0; n];
            k.run(&[&c, &a, &b], &mut out).unwrap();
            for i in 0..n {
                assert_eq!(
                    out[i],
                    if i % 3 == 0 { a[i] } else { b[i] },
                    "select on {isa}"
                );
            }
        }
        // Fma: one rounding, for every dst choice.
        for which in 0..4 {
            let k = jit_map(isa, 3, false, 0, |asm, d, s, t| {
                let dst = if which == 3 { d } else { s[which] };
                asm.emit_fma(dst, s[0], s[1], s[2], t)?;
                asm.mov(d, dst)
            })
            .unwrap();
            let mut out = vec![0.0; n];
            k.run(
                &[&a, &b, &c.iter().map(|_| 0.1f32).collect::<Vec<_>>()],
                &mut out,
            )
            .unwrap();
            for i in 0..n {
                assert_eq!(
                    out[i],
                    a[i].mul_add(b[i], 0.1),
                    "fma on {isa} (dst {which})"
                );
            }
        }
        // f32 -> i32: truncation, saturation, NaN -> 0.
        let x = [
            1.9f32,
            -1.9,
            2.5e9,
            -2.5e9,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -0.0,
            2147483520.0,
            7.0,
        ];
        let want = [
            1i32,
            -1,
            i32::MAX,
            i32::MIN,
            0,
            i32::MAX,
            i32::MIN,
            0,
            2147483520,
            7,
        ];
        let k = jit_map(isa, 1, false, 1, |asm, d, s, t| {
            asm.emit_convert(DType::F32, DType::I32, d, s[0], t)
        })
        .unwrap();
        let mut out = vec![0.0; x.len()];
        k.run1(&x, &mut out).unwrap();
        let got: Vec<i32> = out.iter().map(|v| v.to_bits() as i32).collect();
        // Saturation as Rust's `as` (and ONNX Cast in the interpreter): i32::MAX above.
        assert_eq!(got, want, "f32->i32 on {isa}");
        // i32 -> f32 and the bool conversions.
        let ints: Vec<f32> = [-3i32, 0, 16777217, i32::MIN]
            .iter()
            .map(|&i| f32::from_bits(i as u32))
            .collect();
        let k = jit_map(isa, 1, false, 0, |asm, d, s, t| {
            asm.emit_convert(DType::I32, DType::F32, d, s[0], t)
        })
        .unwrap();
        let mut out = vec![0.0; 4];
        k.run1(&ints, &mut out).unwrap();
        assert_eq!(out, [-3.0, 0.0, 16777216.0, -2147483648.0]);
        let k = jit_map(isa, 1, false, 0, |asm, d, s, t| {
            asm.emit_convert(DType::F32, DType::Bool, d, s[0], t)
        })
        .unwrap();
        let mut out = vec![0.0; 4];
        k.run1(&[0.0, -0.0, f32::NAN, 3.0], &mut out).unwrap();
        assert_eq!(out.map_bits(), [0, 0, u32::MAX, u32::MAX]);
        let k = jit_map(isa, 1, false, 0, |asm, d, s, t| {
            asm.emit_convert(DType::Bool, DType::F32, d, s[0], t)
        })
        .unwrap();
        let mut out = vec![0.0; 2];
        k.run1(&[t, 0.0], &mut out).unwrap();
        assert_eq!(out, [1.0, 0.0]);
        // f32 -> bf16 rounding (nearest even), in integer arithmetic on both ISAs.
        {
            let x = [
                1.0f32,
                f32::from_bits(0x3f80_8000),
                f32::from_bits(0x3f81_8000),
                f32::from_bits(0x3f80_8001),
                -3.3,
                f32::INFINITY,
            ];
            let k = jit_map(isa, 1, false, 1, |asm, d, s, t| {
                asm.emit_convert(DType::F32, DType::BF16, d, s[0], t)
            })
            .unwrap();
            let mut out = vec![0.0; x.len()];
            k.run1(&x, &mut out).unwrap();
            let want = [
                0x3f80_0000u32,
                0x3f80_0000,
                0x3f82_0000,
                0x3f81_0000,
                0xc053_0000,
                0x7f80_0000,
            ];
            assert_eq!(out.map_bits(), want);
        }
    }
}

trait MapBits {
    fn map_bits(&self) -> Vec<u32>;
}

impl MapBits for Vec<f32> {
    fn map_bits(&self) -> Vec<u32> {
        self.iter().map(|v| v.to_bits()).collect()
    }
}

/// Odd functions keep the sign of a zero (the interpreter's and libm's `tanh(-0) = -0`):
/// a later division by the result would otherwise flip an infinity.
#[test]
fn odd_functions_keep_the_sign_of_zero() {
    use UnaryOp as U;
    for isa in isas("odd_functions_keep_the_sign_of_zero") {
        for op in [U::Tanh, U::Erf, U::Neg, U::Abs] {
            let k = jit_unary_map(isa, op).unwrap();
            let src = [-0.0f32, 0.0];
            let mut dst = [f32::NAN; 2];
            k.run1(&src, &mut dst).unwrap();
            let want = match op {
                U::Neg => [0.0f32, -0.0],
                U::Abs => [0.0, 0.0],
                _ => [-0.0, 0.0],
            };
            for (g, w) in dst.iter().zip(want) {
                assert_eq!(
                    g.to_bits(),
                    w.to_bits(),
                    "{op:?} on {isa}: got {g:e}, want {w:e}"
                );
            }
        }
    }
}
