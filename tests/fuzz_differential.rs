//! Differential fuzzing in CI: random models on the JIT (every ISA of this CPU, 1-4
//! executor threads) against the reference interpreter. `snipjit fuzz` runs the same
//! generator at any scale.
//!
//! Seeds 1 and 2 ran clean once the bugs the fuzzer found first were fixed: kernel calls
//! with subgraph outputs smaller than the domain (now run on the interpreter), Mod with
//! large quotients (no longer fused: the interpreter's fmod is exact), Pow with +-0.5 at
//! -0 and -inf, Swish/Gelu/Mish at +-inf (now the formula's NaN, as the interpreter and
//! onnxruntime give), and Min/Max of -0 and +0.
//!
//! An end-to-end difference past the tolerance is re-checked op by op on the JIT's own
//! values (`snipjit::fuzz::first_bad_op`): when every op is within tolerance (bit-exact
//! ops exactly, zeros with their sign), it is an in-bound error amplified downstream and
//! passes (seed 7 case 143: Mish(-104) is -0 instead of -7e-44, then divided by 0;
//! seed 8 case 847: Log near 1 after Pow). The runs place the inputs, outputs and
//! intermediate tensors of every third case between guard pages.
//!
//! Cases other seeds found, each fixed and now run by `fixed_cases_pass` (and, shrunk,
//! in tests/regressions/): `FIXED_SEED7` (finite inputs) Elu(-0) was +0 on the JIT;
//! `FIXED_SEED8` (NaN/inf inputs) case 849, Pow(-inf, non-integer) was NaN (+inf in
//! IEEE), case 862, Elu(-0) again. A new failure goes into a `KNOWN_*` list of an
//! ignored test until it is fixed (none today).

use std::process::Command;

use snipjit::fuzz::{self, FuzzConfig, guard, guard::GuardAlloc};

/// Guard mode places allocations between guard pages through this allocator.
#[global_allocator]
static ALLOC: GuardAlloc = GuardAlloc;

/// Seed 7 (finite inputs, `snipjit fuzz --cases 3000 --seed 7`), cases that failed
/// before their fix.
const FIXED_SEED7: &[u64] = &[1412];

/// Seed 8 (NaN/inf inputs, `snipjit fuzz --cases 1000 --seed 8 --nan-inf`), cases that
/// failed before their fix.
const FIXED_SEED8: &[u64] = &[254, 279, 849, 862];

/// Seed 4 with large cases, cases below 5 that fail today (none since the interpreter
/// takes over calls a kernel cannot run).
const KNOWN_BIG: &[u64] = &[];

fn big() -> FuzzConfig {
    FuzzConfig {
        big_every: 1,
        ..FuzzConfig::default()
    }
}

fn nan_inf() -> FuzzConfig {
    FuzzConfig {
        nan_inf: true,
        ..FuzzConfig::default()
    }
}

/// The CI configuration: every third case between guard pages.
fn guarded(cfg: FuzzConfig) -> FuzzConfig {
    FuzzConfig {
        guard_every: 3,
        ..cfg
    }
}

/// Runs the cases of `seed` and fails with every failing case's report and model.
fn run(seed: u64, cases: impl Iterator<Item = u64>, cfg: &FuzzConfig) {
    if cfg.isas.is_empty() {
        eprintln!("SKIPPED: every fuzz run (this CPU has neither AVX-512 nor AVX2)");
        return;
    }
    if cfg.isas.len() < 2 {
        eprintln!("SKIPPED: AVX-512 runs (this CPU has no AVX-512); fuzzing AVX2 only");
    }
    let mut count = 0;
    let failures: Vec<String> = cases
        .inspect(|_| count += 1)
        .map(|i| fuzz::run_case(seed, i, cfg))
        .filter(|r| !r.passed())
        .map(|r| r.failure_file())
        .collect();
    assert!(count > 0);
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn finite_inputs() {
    run(1, 0..2000, &guarded(FuzzConfig::default()));
}

#[test]
fn nan_and_inf_inputs() {
    run(2, 0..1000, &guarded(nan_inf()));
}

/// The cases the fuzzer found past seeds 1 and 2, fixed: they pass now, guarded and
/// unguarded (Elu(-0) keeps its sign; Pow(-inf, non-integer) is +inf or +0).
#[test]
fn fixed_cases_pass() {
    let all_guarded = |cfg| FuzzConfig {
        guard_every: 1,
        ..cfg
    };
    run(
        7,
        FIXED_SEED7.iter().copied(),
        &all_guarded(FuzzConfig::default()),
    );
    run(8, FIXED_SEED8.iter().copied(), &all_guarded(nan_inf()));
    run(7, FIXED_SEED7.iter().copied(), &FuzzConfig::default());
    run(8, FIXED_SEED8.iter().copied(), &nan_inf());
}

/// Cases that failed end to end before the op-by-op re-check and pass now, each with
/// the amplified difference said; with `op_by_op` off they fail again, so the re-check
/// (not a change of the cases) is what passes them.
#[test]
fn amplified_errors_pass_with_a_note() {
    let cfg = FuzzConfig::default();
    if cfg.isas.is_empty() {
        eprintln!("SKIPPED: amplified cases (this CPU has neither AVX-512 nor AVX2)");
        return;
    }
    let end_to_end = FuzzConfig {
        op_by_op: false,
        ..FuzzConfig::default()
    };
    for (seed, case, cfg, e2e) in [
        (7, 143, cfg.clone(), end_to_end.clone()),
        (
            8,
            847,
            nan_inf(),
            FuzzConfig {
                nan_inf: true,
                ..end_to_end
            },
        ),
    ] {
        let r = fuzz::run_case(seed, case, &cfg);
        assert!(r.passed(), "seed {seed} case {case}: {}", r.outcome);
        assert!(r.amplified.is_some(), "seed {seed} case {case}");
        let r = fuzz::run_case(seed, case, &e2e);
        assert!(
            matches!(r.outcome, fuzz::Outcome::Mismatch(_)),
            "seed {seed} case {case}: {}",
            r.outcome
        );
    }
}

/// Generated models print as `.sg` text that parses back to the same text.
#[test]
fn models_round_trip_through_text() {
    let cfg = FuzzConfig::default();
    for i in 0..200 {
        let case = fuzz::generate(3, i, &cfg).unwrap();
        let text = snipjit::ir::text::print(&case.graph);
        let back = snipjit::parse_model(&text, "fuzz.sg").unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(snipjit::ir::text::print(&back), text);
        assert_eq!(case.inputs.len(), case.graph.inputs.len());
    }
}

/// Large cases, so that the executor splits each kernel over 2-4 threads.
#[test]
fn thread_split_cases() {
    run(4, (0..5).filter(|i| !KNOWN_BIG.contains(i)), &big());
}

/// Guard mode is on in the runs above: the tensors a guarded run hands to the kernel
/// (inputs cloned in the scope, outputs the runtime allocates) end at a guard page.
#[test]
fn guarded_run_places_tensors_at_guard_pages() {
    assert!(guard::installed());
    let g = snipjit::parse_model(
        "graph g(x: f32[N, 37]) {\n  y: f32[N, 37] = Exp(x)\n  return y\n}\n",
        "g.sg",
    )
    .unwrap();
    let x = snipjit::Tensor::from_f32(&[3, 37], vec![0.5; 111]).unwrap();
    let model = snipjit::Compiler::new(snipjit::Options::default())
        .unwrap()
        .compile(g)
        .unwrap();
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    let (ins, outs) = guard::scope(|| {
        let ins = vec![x.clone()];
        let mut outs = vec![];
        model.run_into(&ins, &mut outs).unwrap();
        (ins, outs)
    });
    for t in ins.iter().chain(&outs) {
        let snipjit::TensorData::F32(v) = &t.data else {
            panic!("f32 expected")
        };
        assert!(guard::is_guarded(v.as_ptr().cast()));
        assert_eq!(
            (v.as_ptr() as usize + 4 * v.len()) % page,
            0,
            "ends at a page end"
        );
    }
    assert!((outs[0].as_f32().unwrap()[110] - 0.5f32.exp()).abs() < 1e-6);
    // Freed guarded blocks go back without the scope.
    drop((ins, outs));
}

/// The child side of `guard_pages_bite`: reads around a guarded block as told by
/// `SNIPJIT_GUARD_PROBE` (the parent expects the process to die on a fault).
fn guard_probe(mode: &str) {
    let v: Vec<f32> = guard::scope(|| vec![1.5f32; 5]);
    assert!(guard::is_guarded(v.as_ptr().cast()));
    let p = v.as_ptr();
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    let page_start = (p as usize) & !(page - 1);
    let addr = match mode {
        "last" => p.wrapping_add(4),
        "past_end" => p.wrapping_add(5),
        "before_start" => (page_start - 4) as *const f32,
        other => panic!("unknown probe mode {other}"),
    };
    // SAFETY: deliberately unsound for "past_end" and "before_start": the address is
    // outside the block, in a PROT_NONE page, and this child process must die there.
    let x = unsafe { std::ptr::read_volatile(addr) };
    println!("read {x}");
}

/// Guard pages bite: in a child process (this test binary, rerun with an env var),
/// reading the last element of a guarded block works, and reading one element past
/// its end or just before its page kills the process with SIGSEGV.
#[test]
fn guard_pages_bite() {
    if let Ok(mode) = std::env::var("SNIPJIT_GUARD_PROBE") {
        guard_probe(&mode);
        return;
    }
    use std::os::unix::process::ExitStatusExt;
    for (mode, faults) in [("last", false), ("past_end", true), ("before_start", true)] {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "guard_pages_bite",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SNIPJIT_GUARD_PROBE", mode)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if faults {
            assert_eq!(
                out.status.signal(),
                Some(libc::SIGSEGV),
                "{mode}: {:?}\n{stdout}",
                out.status
            );
            assert!(!stdout.contains("read "), "{mode}: {stdout}");
        } else {
            assert!(out.status.success(), "{mode}: {:?}\n{stdout}", out.status);
            assert!(stdout.contains("read 1.5"), "{stdout}");
        }
    }
}
