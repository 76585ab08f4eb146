//! GFLOP/s of the MHA kernel on the BERT block of examples/mha.sg
//! (`[B, S, 12, 64]`, additive mask `[B, 1, 1, S]`, scale 0.125), against the FMA
//! peak of a JIT loop of independent FMAs.
//!
//! `cargo run --release -p snipjit-runtime --example mha_peak [reps]`
//!
//! The kernel and the peak loop run in alternating batches of about 5 ms (`reps`
//! pairs, default 21), timed in process CPU time (so time spent descheduled on a
//! shared machine does not count; with several threads this is GFLOP/s per busy
//! core, and idle pool threads spinning count against it); printed are the kernel's
//! median and best GFLOP/s, the median of the per-pair ratios kernel/peak, and the
//! interpreter's (wall) time for one call (S <= 384). Environment: `MHA_S=16,64,...`,
//! `MHA_B=1`, `MHA_THREADS=1`, `MHA_ISA=avx512|avx2`, `MHA_BLOCKINGS=48x128,96x128`.

use std::time::Instant;

use snipjit_ir::Tensor;
use snipjit_runtime::Executor;
use snipjit_runtime::mha::{MhaBlocking, MhaKernel};
use snipjit_tokenize::mha::analyze_mha;
use snipjit_x64::{FmaPeak, Isa};

mod common;

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .map(str::to_string)
        .collect()
}

fn calibrate(secs: f64, f: &mut impl FnMut()) -> u64 {
    let t = Instant::now();
    let mut calls = 0u64;
    while t.elapsed().as_secs_f64() < 0.01 || calls < 2 {
        f();
        calls += 1;
    }
    let per = t.elapsed().as_secs_f64() / calls as f64;
    ((secs / per) as u64).max(1)
}

/// CPU seconds this process has run (all threads): time spent descheduled on a
/// shared machine does not count.
fn cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// GFLOP/s per busy core of one batch: flops over the CPU time of all threads, so
/// that preemption by other processes does not count.
fn batch(calls: u64, flops: f64, f: &mut impl FnMut()) -> f64 {
    let t = cpu_secs();
    for _ in 0..calls {
        f();
    }
    flops * calls as f64 / (cpu_secs() - t) / 1e9
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let reps: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(21);
    let isa = match std::env::var("MHA_ISA").as_deref() {
        Ok("avx2") => Isa::Avx2,
        Ok("avx512") => Isa::Avx512,
        _ => Isa::detect().expect("no AVX2 or AVX-512 on this CPU"),
    };
    let threads: usize = env_list("MHA_THREADS", "1")[0].parse().expect("threads");
    let b: usize = env_list("MHA_B", "1")[0].parse().expect("B");
    let exec = Executor::new(threads).expect("executor");
    let body = common::mha_body();
    let pattern = analyze_mha(&body).expect("reads back");
    let peak = FmaPeak::compile(isa).expect("peak compiles");
    let iters = 20_000u64;
    let peak_flops = (peak.flops_per_iter() * iters) as f64;
    let mut p = || peak.run(iters).expect("isa supported");
    println!("{isa}, {threads} thread(s), B = {b}; GFLOP/s from the matmul flops 4·B·H·S²·64");
    for blk in env_list("MHA_BLOCKINGS", "48x128") {
        let v: Vec<usize> = blk.split('x').map(|x| x.parse().expect("MxN")).collect();
        let blocking = MhaBlocking {
            m_blk: v[0],
            n_blk: v[1],
        };
        let k = MhaKernel::compile_with(&pattern, &body, isa, blocking).expect("compiles");
        for s in env_list("MHA_S", "16,64,128,384,1024") {
            let s: usize = s.parse().expect("S");
            let inputs = common::inputs(&body, b, s, 1);
            let refs: Vec<&Tensor> = inputs.iter().collect();
            let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape.as_slice()).collect();
            let flops = k.flops(&shapes).expect("shapes fit") as f64;
            let mut outs = vec![];
            let mut f = || k.run_into(&refs, &mut outs, &exec).expect("runs");
            let (pc, kc) = (calibrate(0.005, &mut p), calibrate(0.005, &mut f));
            let (mut ks, mut ratios) = (vec![], vec![]);
            for _ in 0..reps {
                let pk = batch(pc, peak_flops, &mut p);
                let kk = batch(kc, flops, &mut f);
                ks.push(kk);
                ratios.push(kk / pk);
            }
            let per_call_us = flops / median(ks.clone()) / 1e3 / threads as f64;
            let best = ks.iter().copied().fold(0.0, f64::max);
            let interp = if s <= 384 {
                let t = Instant::now();
                snipjit_interp::run(&body, &inputs).expect("interpreter runs");
                format!("{:.0} us", t.elapsed().as_secs_f64() * 1e6)
            } else {
                "-".into()
            };
            println!(
                "  blk {blk:>7} S {s:>5}: {per_call_us:>9.1} CPU-us/call/thread, median {:>6.1} GFLOP/s \
                 (best {best:.1}), {:>5.1} % of peak per core, interpreter {interp}",
                median(ks),
                100.0 * median(ratios),
            );
        }
    }
}
