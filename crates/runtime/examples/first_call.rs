//! What a first call at a new sequence length costs over a repeated one, and why.
//!
//! `cargo run --release -p snipjit-runtime --example first_call`
//!
//! For each S (`MHA_S`, default 16..512) on one compiled kernel: the first call at S
//! (fresh inputs, written just before, as `snipjit bench` does), the median of the
//! repeated calls, a call on new inputs at the same S, and a call after evicting the
//! caches (writing 64 MiB), all in microseconds.
//!
//! Then what a never-seen S costs, apart from what any call after an idle spell or at
//! another S than the last one costs (the parked worker's wake-up on several threads,
//! see `wake_latency`; caches and branch predictors trained on the previous shape):
//! `MHA_PAIRS` (default 120) sequence lengths in 17..=`MHA_MAX_S` (default 700), every
//! other one run once beforehand ("seen"), the rest never run ("never-seen"). Then,
//! per length in turn, three calls, each on inputs and outputs written just before and
//! after the same idle gap (the caller busy for `MHA_GAP_MS`, default 5, so a worker
//! spins its 100 us and parks): the first enters S from another length, the second and
//! third repeat it. Printed, for S <= 128 and S > 128: the 10th, 50th and 90th
//! percentiles of `1st - 2nd` for the never-seen and the seen lengths, and of `3rd -
//! 2nd`, the spread of two repeats. A never-seen S that costs nothing of its own has
//! the seen one's `1st - 2nd`.

use std::time::Instant;

use snipjit_ir::Tensor;

mod common;

fn minflt() -> i64 {
    // SAFETY: getrusage fills one rusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_minflt
}

/// Busy-waits on the calling thread for `ms` milliseconds.
fn busy(ms: f64) {
    let t = Instant::now();
    while t.elapsed().as_secs_f64() * 1e3 < ms {
        std::hint::spin_loop();
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn pct(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let threads: usize = common::env("MHA_THREADS", 1);
    let sizes = common::env_lengths("MHA_S", "16,32,64,128,256,384,512");
    let (exec, body, k) = common::bert_kernel(threads);
    let mut evict = vec![0u8; 64 << 20];
    println!("S: first / repeated (median of 9) / new inputs / after eviction, us");
    for (i, &s) in sizes.iter().enumerate() {
        let ins = common::inputs(&body, 1, s, 1 + i as u32);
        let refs: Vec<&Tensor> = ins.iter().collect();
        // bound outputs, allocated and written as a server binds its buffers
        let mut outs = vec![Tensor::from_f32(&[1, s, 12, 64], vec![1.0; s * 768]).expect("shape")];
        let time = |outs: &mut Vec<Tensor>, refs: &[&Tensor]| {
            let t = Instant::now();
            k.run_into(refs, outs, &exec).expect("runs");
            t.elapsed().as_secs_f64() * 1e6
        };
        let f0 = minflt();
        let first = time(&mut outs, &refs);
        let faults = minflt() - f0;
        let mut rep: Vec<f64> = (0..9).map(|_| time(&mut outs, &refs)).collect();
        rep.sort_by(f64::total_cmp);
        let ins2 = common::inputs(&body, 1, s, 200 + i as u32);
        let refs2: Vec<&Tensor> = ins2.iter().collect();
        let newin = time(&mut outs, &refs2);
        for (j, b) in evict.iter_mut().enumerate() {
            *b = b.wrapping_add(j as u8);
        }
        let cold = time(&mut outs, &refs2);
        println!(
            "S {s:>5}: {first:>8.1} {:>8.1} {newin:>8.1} {cold:>8.1}  ({faults} page faults in the first call)",
            rep[4]
        );
    }
    std::hint::black_box(&evict);

    let pairs: usize = common::env("MHA_PAIRS", 120);
    let gap: f64 = common::env("MHA_GAP_MS", 5.0);
    let hi: usize = common::env("MHA_MAX_S", 700usize).max(18);
    // Distinct sequence lengths in 17..=hi not run above: a stride coprime to the
    // range's length walks all of it.
    let span = hi - 16;
    let stride = (263..).find(|p| gcd(*p, span) == 1).expect("a stride");
    let fresh: Vec<usize> = (0..span)
        .map(|i| 17 + (i * stride) % span)
        .filter(|s| !sizes.contains(s))
        .take(pairs)
        .collect();
    // Every other one runs once now ("seen"); the rest stay never-seen until their
    // turn below.
    for &s in fresh.iter().skip(1).step_by(2) {
        let ins = common::inputs(&body, 1, s, 7);
        let refs: Vec<&Tensor> = ins.iter().collect();
        let mut outs = vec![Tensor::from_f32(&[1, s, 12, 64], vec![1.0; s * 768]).expect("shape")];
        k.run_into(&refs, &mut outs, &exec).expect("runs");
    }
    // Per S: (S, seen before, entry - repeat, repeat2 - repeat).
    let mut rows: Vec<(usize, bool, f64, f64)> = Vec::new();
    for (i, &s) in fresh.iter().enumerate() {
        // Each call's inputs and outputs are written just before its gap, so all three
        // find them equally warm in the caches.
        let call = |seed: u32| {
            let ins = common::inputs(&body, 1, s, seed);
            let mut outs =
                vec![Tensor::from_f32(&[1, s, 12, 64], vec![1.0; s * 768]).expect("shape")];
            let refs: Vec<&Tensor> = ins.iter().collect();
            busy(gap);
            let t = Instant::now();
            k.run_into(&refs, &mut outs, &exec).expect("runs");
            t.elapsed().as_secs_f64() * 1e6
        };
        let entry = call(1000 + i as u32);
        let repeat = call(2000 + i as u32);
        let repeat2 = call(3000 + i as u32);
        if std::env::var_os("MHA_VERBOSE").is_some() {
            println!("  S {s:>4}: {entry:>9.1} {repeat:>9.1} {repeat2:>9.1}");
        }
        rows.push((s, i % 2 == 1, entry - repeat, repeat2 - repeat));
    }
    println!(
        "{threads} thread(s), {gap} ms idle before each call; p10 / median / p90 over the \
         sequence lengths, us:"
    );
    println!(
        "  {:>8} {:>5}  {:>23}  {:>23}  {:>23}",
        "", "sizes", "never-seen S: 1st - 2nd", "seen S: 1st - 2nd", "3rd - 2nd (both)"
    );
    for (name, lo, hi) in [("S <= 128", 0, 128), ("S > 128", 129, usize::MAX)] {
        let part: Vec<&(usize, bool, f64, f64)> =
            rows.iter().filter(|r| (lo..=hi).contains(&r.0)).collect();
        let stat = |v: Vec<f64>| {
            if v.is_empty() {
                return format!("{:>23}", "-");
            }
            format!(
                "{:+7.1} {:+7.1} {:+7.1}",
                pct(&v, 0.1),
                pct(&v, 0.5),
                pct(&v, 0.9)
            )
        };
        println!(
            "  {name:>8} {:>5}  {}  {}  {}",
            part.len(),
            stat(part.iter().filter(|r| !r.1).map(|r| r.2).collect()),
            stat(part.iter().filter(|r| r.1).map(|r| r.2).collect()),
            stat(part.iter().map(|r| r.3).collect()),
        );
    }
}
