//! GFLOP/s of the brgemm micro-kernel on L2-resident blocks against the FMA peak of a
//! JIT loop of independent FMAs, one thread.
//!
//! `cargo run --release -p snipjit-x64 --example brgemm_peak [reps]`
//!
//! Each figure is the median (and best) over `reps` timed batches (default 7), each
//! batch about 50 ms of back-to-back calls on the same operands.

use std::time::Instant;

use snipjit_x64::brgemm::{BLayout, Brgemm, BrgemmArgs, BrgemmOptions, FmaPeak};
use snipjit_x64::{Blocking, Isa};

fn stats(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[v.len() - 1])
}

/// GFLOP/s of `f` doing `flops` per call: median and best over `reps` batches.
fn measure(reps: usize, flops: f64, mut f: impl FnMut()) -> (f64, f64) {
    // Calibrate the batch to ~50 ms.
    let t = Instant::now();
    let mut calls = 0u64;
    while t.elapsed().as_secs_f64() < 0.02 {
        f();
        calls += 1;
    }
    let per = t.elapsed().as_secs_f64() / calls as f64;
    let batch = ((0.05 / per) as u64).max(1);
    let runs: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..batch {
                f();
            }
            flops * batch as f64 / t.elapsed().as_secs_f64() / 1e9
        })
        .collect();
    stats(runs)
}

fn main() {
    let reps: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    for isa in Isa::ALL {
        if !isa.is_supported() {
            println!("SKIPPED: {isa}: this CPU does not support it");
            continue;
        }
        let peak = FmaPeak::compile(isa).expect("peak loop compiles");
        let iters = 1_000_000u64;
        let (peak_med, peak_best) = measure(reps, (peak.flops_per_iter() * iters) as f64, || {
            peak.run(iters).expect("isa checked")
        });
        println!(
            "{isa}: FMA peak (JIT loop, 12 chains): median {peak_med:.1} GFLOP/s, best {peak_best:.1}"
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
            for layout in [BLayout::RowMajor, BLayout::Transposed] {
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
                    BLayout::Transposed => &[
                        (64, 64, 64, ""),
                        (128, 128, 128, ""),
                        (32, 64, 64, "Q·K^T, S_blk 64"),
                        (32, 128, 64, "Q·K^T, S_blk 128"),
                        (32, 256, 64, "Q·K^T, S_blk 256"),
                    ],
                };
                for &(m, n, k, what) in shapes {
                    let a = vec![0.5f32; m * k];
                    let b = vec![0.25f32; k * n];
                    let mut c = vec![0f32; m * n];
                    let mut scratch = vec![0f32; kern.scratch_len(k)];
                    let ldb = match layout {
                        BLayout::RowMajor => n,
                        BLayout::Transposed => k,
                    };
                    let args = BrgemmArgs {
                        a: a.as_ptr(),
                        b: b.as_ptr(),
                        c: c.as_mut_ptr(),
                        scratch: scratch.as_mut_ptr(),
                        m: m as i64,
                        n: n as i64,
                        k: k as i64,
                        lda: k as i64,
                        ldb: ldb as i64,
                        ldc: n as i64,
                        accumulate: 0,
                    };
                    let flops = 2.0 * (m * n * k) as f64;
                    // SAFETY: the ISA is supported; the buffers match the shape and the
                    // scratch has scratch_len(k) floats; they outlive the calls.
                    let (med, best) = measure(reps, flops, || unsafe { kern.call(&args) });
                    println!(
                        "  {layout:?} {}x{}x{} M={m:4} N={n:4} K={k:4} {what:18}: median {med:6.1} GFLOP/s ({:5.1}% of peak), best {best:6.1} ({:5.1}%)",
                        bl.mr,
                        bl.nr,
                        bl.k_unroll,
                        100.0 * med / peak_med,
                        100.0 * best / peak_best,
                    );
                }
            }
        }
    }
}
