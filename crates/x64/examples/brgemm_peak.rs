//! GFLOP/s of the brgemm micro-kernel on L2-resident blocks against the FMA peak of a
//! JIT loop of independent FMAs, one thread.
//!
//! `cargo run --release -p snipjit-x64 --example brgemm_peak [reps]`
//!
//! The kernel and the peak loop are timed in alternating batches of about 3 ms (`reps`
//! pairs, default 41), so both see the same load on a shared machine. Printed: the
//! kernel's median and best GFLOP/s, the median of the per-pair ratios kernel/peak, and
//! best kernel over best peak. `BRGEMM_BLOCKINGS=6x4x4,8x3x4` compares blockings
//! (MRxNRxK_UNROLL). `Packed` rows time the kernel on B^T packed beforehand by a
//! `BPacker` (the packing itself is not timed).

use std::time::Instant;

use snipjit_x64::{BLayout, BPacker, Blocking, Brgemm, BrgemmOptions, BrgemmShape, FmaPeak, Isa};

/// Calls of `f` that take about `secs`.
fn calibrate(secs: f64, f: &mut impl FnMut()) -> u64 {
    let t = Instant::now();
    let mut calls = 0u64;
    while t.elapsed().as_secs_f64() < 0.01 {
        f();
        calls += 1;
    }
    let per = t.elapsed().as_secs_f64() / calls as f64;
    ((secs / per) as u64).max(1)
}

/// GFLOP/s of one batch of `calls` calls doing `flops` each.
fn batch(calls: u64, flops: f64, f: &mut impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..calls {
        f();
    }
    flops * calls as f64 / t.elapsed().as_secs_f64() / 1e9
}

/// Figures of one kernel against the peak loop, timed in alternating short batches so
/// that both see the same machine load: (median, best) GFLOP/s of the kernel, median of
/// the per-batch ratios kernel/peak, and best kernel / best peak.
struct Figures {
    median: f64,
    best: f64,
    median_ratio: f64,
    best_ratio: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn measure(reps: usize, peak: &FmaPeak, flops: f64, mut f: impl FnMut()) -> Figures {
    const BATCH_SECS: f64 = 0.003;
    let iters = 20_000u64;
    let peak_flops = (peak.flops_per_iter() * iters) as f64;
    let mut p = || peak.run(iters).expect("isa checked");
    let (pc, kc) = (calibrate(BATCH_SECS, &mut p), calibrate(BATCH_SECS, &mut f));
    let mut ks = Vec::with_capacity(reps);
    let mut ps = Vec::with_capacity(reps);
    for _ in 0..reps {
        ps.push(batch(pc, peak_flops, &mut p));
        ks.push(batch(kc, flops, &mut f));
    }
    let ratios: Vec<f64> = ks.iter().zip(&ps).map(|(k, p)| k / p).collect();
    let best = ks.iter().copied().fold(0.0, f64::max);
    let best_peak = ps.iter().copied().fold(0.0, f64::max);
    Figures {
        median: median(ks),
        best,
        median_ratio: median(ratios),
        best_ratio: best / best_peak,
    }
}

fn main() {
    let reps: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(41);
    for isa in Isa::ALL {
        if !isa.is_supported() {
            println!("SKIPPED: {isa}: this CPU does not support it");
            continue;
        }
        let peak = FmaPeak::compile(isa).expect("peak loop compiles");
        let iters = 20_000u64;
        let pf = (peak.flops_per_iter() * iters) as f64;
        let mut p = || peak.run(iters).expect("isa checked");
        let pc = calibrate(0.003, &mut p);
        let runs: Vec<f64> = (0..reps).map(|_| batch(pc, pf, &mut p)).collect();
        let best = runs.iter().copied().fold(0.0, f64::max);
        println!(
            "{isa}: FMA peak (JIT loop, 12 chains): median {:.1} GFLOP/s, best {best:.1}",
            median(runs)
        );
        let blockings: Vec<Option<Blocking>> = match std::env::var("BRGEMM_BLOCKINGS") {
            Ok(s) => s
                .split(',')
                .map(|b| {
                    let v: Vec<usize> = b.split('x').map(|x| x.parse().expect("MRxNRxU")).collect();
                    Some(Blocking {
                        mr: v[0],
                        nr: v[1],
                        k_unroll: v[2],
                    })
                })
                .collect(),
            Err(_) => vec![None],
        };
        for blocking in blockings {
            for layout in [BLayout::RowMajor, BLayout::Transposed, BLayout::Packed] {
                let opts = BrgemmOptions {
                    blocking,
                    ..BrgemmOptions::new(isa, layout)
                };
                let kern = match Brgemm::compile(opts) {
                    Ok(k) => k,
                    Err(e) => {
                        println!("  {blocking:?}: {e}");
                        continue;
                    }
                };
                let bl = kern.blocking();
                let shapes: &[(usize, usize, usize, &str)] = match layout {
                    BLayout::RowMajor => &[
                        (64, 64, 64, ""),
                        (96, 128, 128, ""),
                        (120, 128, 256, ""),
                        (128, 128, 128, ""),
                        (32, 64, 128, "P·V, S_blk 128"),
                        (32, 64, 256, "P·V, S_blk 256"),
                    ],
                    BLayout::Transposed | BLayout::Packed => &[
                        (64, 64, 64, ""),
                        (128, 128, 128, ""),
                        (32, 64, 64, "Q·K^T, S_blk 64"),
                        (32, 128, 64, "Q·K^T, S_blk 128"),
                        (32, 256, 64, "Q·K^T, S_blk 256"),
                    ],
                };
                for &(m, n, k, what) in shapes {
                    let a = vec![0.5f32; m * k];
                    let mut b = vec![0.25f32; k * n];
                    if layout == BLayout::Packed {
                        // B^T packed once, outside the timing: the attention runtime packs
                        // K^T of a head once for all its Q blocks.
                        let packer = BPacker::for_kernel(&kern, BLayout::Transposed)
                            .expect("packer compiles");
                        let mut packed = vec![0f32; packer.packed_len(n, k)];
                        packer.pack(&b, n, k, k, &mut packed).expect("packs");
                        b = packed;
                    }
                    let mut c = vec![0f32; m * n];
                    let mut scratch = vec![0f32; kern.scratch_len(k)];
                    let args = BrgemmShape::dense(m, n, k, layout).args(
                        a.as_ptr(),
                        b.as_ptr(),
                        c.as_mut_ptr(),
                        scratch.as_mut_ptr(),
                    );
                    let flops = 2.0 * (m * n * k) as f64;
                    // SAFETY: the ISA is supported; the buffers match the shape and the
                    // scratch has scratch_len(k) floats; they outlive the calls.
                    let fig = measure(reps, &peak, flops, || unsafe { kern.call(&args) });
                    println!(
                        "  {:10} {}x{}x{} M={m:4} N={n:4} K={k:4} {what:17}: median {:6.1} GFLOP/s ({:5.1}% of peak), best {:6.1} ({:5.1}%)",
                        format!("{layout:?}"),
                        bl.mr,
                        bl.nr,
                        bl.k_unroll,
                        fig.median,
                        100.0 * fig.median_ratio,
                        fig.best,
                        100.0 * fig.best_ratio,
                    );
                }
            }
        }
        // The packer alone: B^T (N×64, an attention K block) into panels.
        for source in [BLayout::Transposed, BLayout::RowMajor] {
            let packer = BPacker::compile(isa, source, None).expect("packer compiles");
            for (n, k) in [(256usize, 64usize), (1024, 64)] {
                let b = vec![0.25f32; n * k];
                let ldb = if source == BLayout::Transposed { k } else { n };
                let mut packed = vec![0f32; packer.packed_len(n, k)];
                let mut f = || packer.pack(&b, n, k, ldb, &mut packed).expect("packs");
                let calls = calibrate(0.003, &mut f);
                let times: Vec<f64> = (0..reps)
                    .map(|_| {
                        let t = Instant::now();
                        for _ in 0..calls {
                            f();
                        }
                        t.elapsed().as_secs_f64() / calls as f64
                    })
                    .collect();
                let t = median(times);
                println!(
                    "  pack {:10} N={n:5} K={k:3}: median {:7.2} us, {:.2} ns per element",
                    format!("{source:?}"),
                    t * 1e6,
                    t * 1e9 / (n * k) as f64
                );
            }
        }
    }
}
