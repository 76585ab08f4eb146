//! Accuracy sweeps of every approximated emitter (`snipjit_x64::accuracy`), sized for
//! CI: every 4097-th f32 bit pattern (odd, so every exponent and sign meets many
//! mantissa patterns) plus dense sweeps of each op's critical regions, on every ISA
//! this CPU has. The full 2^32 sweep is `snipjit accuracy --op all --isa all` (figures
//! in docs/reliability.md) or the ignored test at the end.

mod common;

use common::isas;
use snipjit_x64::Isa;
use snipjit_x64::accuracy::{
    OpReport, OpSpec, PatternRange, StatedBound, SweepConfig, Verdict, classify, op_by_name, ops,
    sweep,
};

/// Odd stride of the CI sweep: 2^12 + 1.
const CI_STRIDE: u32 = 4097;

/// Every f32 in `[lo, hi]`, thinned to about `n` patterns by an odd stride.
fn dense(lo: f32, hi: f32, n: u64) -> Vec<PatternRange> {
    let total: u64 = PatternRange::between(lo, hi, 1)
        .iter()
        .map(PatternRange::len)
        .sum();
    let stride = ((total / n.max(1)) as u32) | 1;
    PatternRange::between(lo, hi, stride)
}

/// The inputs of the largest ULP error of each op over all 2^32 patterns (the
/// exhaustive sweep of docs/reliability.md, 2026-11-24), checked here on every run.
const EXHAUSTIVE_WORST: &[(&str, u32)] = &[
    ("exp", 0xc26d_0f06),
    ("sigmoid", 0xc085_088d),
    ("swish", 0xc0be_0b6a),
    ("tanh", 0x3f21_4812),
    ("gelu_tanh", 0xc120_a7c5),
    ("gelu_erf", 0xbfb4_80e9),
    ("erf", 0x3ef4_30fd),
    ("log", 0x3fb4_f239),
    ("swish_1.7", 0xc253_9487),
    ("mish", 0xc0dc_0e19),
    ("elu", 0xbec4_b5c1),
    ("softplus", 0xbfa2_3478),
    ("hswish", 0x3faf_8d3e),
    ("hsigmoid", 0x3f80_000a),
    ("sqrt", 0x017f_ffff),
    ("reciprocal", 0x00fc_3237),
    ("pow_3", 0x2bca_7f80),
    ("pow_0.5", 0x017f_ffff),
    ("pow_-0.5", 0x0080_cab3),
    ("pow_2.5", 0x56a8_db7f),
];

fn single(bits: u32) -> PatternRange {
    PatternRange {
        first: bits,
        last: bits,
        stride: 1,
    }
}

/// The CI input set of one op: the strided sweep of all patterns, the exhaustive
/// sweep's worst input, then the op's critical regions.
fn ci_ranges(op: &str) -> Vec<PatternRange> {
    let mut r = vec![PatternRange::all(CI_STRIDE)];
    r.extend(
        EXHAUSTIVE_WORST
            .iter()
            .filter(|(name, _)| *name == op)
            .map(|&(_, bits)| single(bits)),
    );
    // +-inf, quiet and signalling NaNs of both signs, and the extremes (the stride
    // skips them).
    r.extend(
        [
            0x7f80_0000u32,
            0xff80_0000,
            0x7fc0_0000,
            0xffc0_0000,
            0x7f80_0001,
            0xff80_0001,
            0x7fff_ffff,
            0x7f7f_ffff,
            0xff7f_ffff,
            0x0000_0001,
            0x8000_0001,
        ]
        .map(single),
    );
    let tiny = f32::MIN_POSITIVE;
    // Around zero and the denormals (results x, 0.5 x, log of denormals, ...).
    r.extend(dense(-tiny, tiny, 1 << 15));
    r.extend(dense(-1.0, 1.0, 1 << 16));
    // The bulk of activations, nearly every pattern of its top binades.
    r.extend(dense(-12.0, 12.0, 1 << 17));
    // exp's overflow threshold (88.72) and underflow to denormals and zero (-87.3 to
    // -103.97); sigmoid, swish, softplus, gelu, mish and elu go through it.
    r.extend(dense(86.0, 90.0, 1 << 14));
    r.extend(dense(-106.0, -80.0, 1 << 15));
    match op {
        // Saturation near +-1 (erf from |x| ~ 3.9, tanh from ~ 9) and gelu_erf's
        // cancellation near x = -1.41.
        "erf" | "tanh" | "gelu_erf" => {
            r.extend(dense(0.5, 10.0, 1 << 16));
            r.extend(dense(-10.0, -0.5, 1 << 16));
        }
        // log near 1 (cancellation) and at the denormal pre-scale boundary.
        "log" => {
            r.extend(dense(0.9, 1.1, 1 << 16));
            r.extend(dense(tiny / 4.0, tiny * 4.0, 1 << 14));
        }
        _ => {}
    }
    r
}

fn table(reports: &[OpReport]) -> String {
    let mut s = String::new();
    for r in reports {
        let at = r
            .max_ulp_at
            .map(|a| format!("x={:e} got {:e} want {:e}", a.x, a.got, a.want))
            .unwrap_or_default();
        s.push_str(&format!(
            "{:<11} {:<6} {:>8} inputs: max {:.3} ULP ({at}), max rel {:.3e}, tiny max {:.2} ULP{}, bound {}, over {}, tiny over {}, specials {}{}\n",
            r.op,
            r.isa.name(),
            r.inputs,
            r.max_ulp,
            r.max_rel,
            r.max_tiny_ulp,
            r.max_tiny_at
                .map(|a| format!(" at x={:e} got {:e} want {:e}", a.x, a.got, a.want))
                .unwrap_or_default(),
            r.bound,
            r.over_bound,
            r.tiny_over,
            r.special_mismatches,
            r.special_samples
                .first()
                .map(|a| format!(" (first at x={:e}: got {:e} want {:e})", a.x, a.got, a.want))
                .unwrap_or_default(),
        ));
        if let Some(w) = r.worst_over {
            s.push_str(&format!(
                "    worst over bound: x={:e} got {:e} want {:e}\n",
                w.x, w.got, w.want
            ));
        }
    }
    s
}

#[test]
fn every_op_has_its_exhaustive_worst_input_pinned() {
    for spec in ops() {
        assert!(
            EXHAUSTIVE_WORST.iter().any(|(n, _)| *n == spec.name),
            "{}: run `snipjit accuracy --op {} --json` and add its max_ulp_at to EXHAUSTIVE_WORST",
            spec.name,
            spec.name
        );
    }
}

#[test]
fn every_op_within_its_stated_bound_on_the_ci_sweep() {
    let isas = isas("every_op_within_its_stated_bound_on_the_ci_sweep");
    assert!(!isas.is_empty(), "no ISA of the backend runs on this CPU");
    let cfg = SweepConfig {
        threads: 2,
        chunk: 1 << 16,
    };
    let mut all = Vec::new();
    for spec in ops() {
        let ranges = ci_ranges(&spec.name);
        let expected: u64 = ranges.iter().map(PatternRange::len).sum();
        let reports = sweep(&spec, &isas, &ranges, &cfg, &|_, _| {}).unwrap();
        for r in &reports {
            assert_eq!(r.inputs, expected, "{} on {}", r.op, r.isa);
        }
        all.extend(reports);
    }
    let report = table(&all);
    eprintln!("{report}");
    let failed: Vec<&str> = all
        .iter()
        .filter(|r| !r.passed())
        .map(|r| r.op.as_str())
        .collect();
    assert!(
        failed.is_empty(),
        "over the stated bound: {failed:?}\n{report}"
    );
}

/// The sweep finds errors: exp against a bound of 0 ULP must report inputs over it,
/// and the worst one it names must have exactly the error it reports (recomputed
/// here from the input with the std f64 exp).
#[test]
fn the_sweep_reports_errors_it_finds() {
    let isas = isas("the_sweep_reports_errors_it_finds");
    let mut spec = op_by_name("exp").unwrap();
    spec.bound = StatedBound::Ulp(0.0);
    let ranges = PatternRange::between(-10.0, 10.0, 997);
    let reports = sweep(&spec, &isas, &ranges, &SweepConfig::default(), &|_, _| {}).unwrap();
    for r in &reports {
        assert!(r.over_bound > 0, "{}: exp is not correctly rounded", r.isa);
        let at = r.max_ulp_at.unwrap();
        assert_eq!(f64::from(at.x).exp(), at.want);
        let want32 = at.want as f32;
        let ulp = f64::from(want32.next_up() - want32);
        let e = (f64::from(at.got) - at.want).abs() / ulp;
        assert!((e - r.max_ulp).abs() < 1e-9, "{e} vs {}", r.max_ulp);
        assert!(r.max_ulp > 0.5 && r.max_ulp <= 1.0, "{}", r.max_ulp);
        assert_eq!(r.special_mismatches, 0);
    }
}

/// Splitting work over threads and chunks does not change the report.
#[test]
fn reports_do_not_depend_on_threads_or_chunks() {
    let isas = isas("reports_do_not_depend_on_threads_or_chunks");
    let spec = op_by_name("gelu_erf").unwrap();
    let ranges = [PatternRange::all(65_537)];
    let one = SweepConfig {
        threads: 1,
        chunk: 1 << 16,
    };
    let two = SweepConfig {
        threads: 2,
        chunk: 1000,
    };
    let a = sweep(&spec, &isas, &ranges, &one, &|_, _| {}).unwrap();
    let b = sweep(&spec, &isas, &ranges, &two, &|_, _| {}).unwrap();
    assert_eq!(a, b);
}

#[test]
fn special_values_match_exactly() {
    // Exact values every op must reproduce bit for bit (beyond NaN in, NaN out, which
    // the sweep checks everywhere): sign of zero, infinities and saturation.
    let cases: &[(&str, f32, f32)] = &[
        ("exp", f32::NEG_INFINITY, 0.0),
        ("exp", f32::INFINITY, f32::INFINITY),
        ("exp", 0.0, 1.0),
        ("log", 0.0, f32::NEG_INFINITY),
        ("log", -0.0, f32::NEG_INFINITY),
        ("log", f32::INFINITY, f32::INFINITY),
        ("log", 1.0, 0.0),
        ("tanh", -0.0, -0.0),
        ("tanh", f32::NEG_INFINITY, -1.0),
        ("erf", -0.0, -0.0),
        ("erf", f32::INFINITY, 1.0),
        ("sigmoid", f32::NEG_INFINITY, 0.0),
        ("sigmoid", f32::INFINITY, 1.0),
        ("gelu_erf", -0.0, -0.0),
        ("gelu_erf", f32::INFINITY, f32::INFINITY),
        ("gelu_tanh", -0.0, -0.0),
        ("swish", -0.0, -0.0),
        ("swish", f32::INFINITY, f32::INFINITY),
        ("mish", -0.0, -0.0),
        ("elu", f32::NEG_INFINITY, -1.0),
        ("softplus", f32::INFINITY, f32::INFINITY),
        ("softplus", f32::NEG_INFINITY, 0.0),
        ("sqrt", -0.0, -0.0),
        ("pow_0.5", -0.0, 0.0),
        ("pow_0.5", f32::NEG_INFINITY, f32::INFINITY),
        ("pow_-0.5", 0.0, f32::INFINITY),
        ("pow_3", -0.0, -0.0),
    ];
    for isa in isas("special_values_match_exactly") {
        for &(name, x, want) in cases {
            let spec: OpSpec = op_by_name(name).unwrap();
            let k = spec.compile(isa).unwrap();
            let mut got = [0.0f32; 1];
            k.run1(&[x], &mut got).unwrap();
            assert_eq!(
                got[0].to_bits(),
                want.to_bits(),
                "{name}({x:e}) on {isa}: got {:e}, want {want:e}",
                got[0]
            );
            // The sweep's reference and rule agree.
            let v = classify(x, got[0], spec.reference(f64::from(x)));
            assert!(
                matches!(
                    v,
                    Verdict::Ulp { ulp: 0.0, rel: 0.0 } | Verdict::Tiny { ulp: 0.0, .. }
                ),
                "{name}({x:e}): {v:?}"
            );
        }
    }
}

#[test]
fn bad_configurations_are_errors() {
    let spec = op_by_name("exp").unwrap();
    let r = [PatternRange::all(1 << 20)];
    let zero = SweepConfig {
        threads: 0,
        chunk: 16,
    };
    assert!(sweep(&spec, &[], &r, &zero, &|_, _| {}).is_err());
    let no_chunk = SweepConfig {
        threads: 1,
        chunk: 0,
    };
    assert!(sweep(&spec, &[], &r, &no_chunk, &|_, _| {}).is_err());
    if !Isa::Avx512.is_supported() {
        let e = sweep(
            &spec,
            &[Isa::Avx512],
            &r,
            &SweepConfig::default(),
            &|_, _| {},
        );
        assert!(e.is_err());
    }
}

/// The full sweep: all 2^32 patterns (or every `SNIPJIT_ACCURACY_STRIDE`-th) of every
/// op (or `SNIPJIT_ACCURACY_OP`) on every ISA. Hours in a debug build; run it with
/// `--release`, or use `snipjit accuracy --op all --isa all`.
#[test]
#[ignore = "the exhaustive sweep takes tens of minutes even in release"]
fn exhaustive_sweep_within_stated_bounds() {
    let stride: u32 = std::env::var("SNIPJIT_ACCURACY_STRIDE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let only = std::env::var("SNIPJIT_ACCURACY_OP").ok();
    let isas = isas("exhaustive_sweep_within_stated_bounds");
    let cfg = SweepConfig {
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        ..SweepConfig::default()
    };
    let mut all = Vec::new();
    for spec in ops() {
        if only.as_deref().is_some_and(|o| o != spec.name) {
            continue;
        }
        let reports = sweep(&spec, &isas, &[PatternRange::all(stride)], &cfg, &|_, _| {}).unwrap();
        eprint!("{}", table(&reports));
        all.extend(reports);
    }
    assert!(all.iter().all(OpReport::passed), "{}", table(&all));
}
