//! Time of the online-softmax block kernel alone, every ISA, on the BERT block shape by
//! default: 48 rows of 128 scores, scale 0.125, one additive mask row with every ninth
//! score masked by -1e4, a 64-wide accumulator. Cycles are estimated from the clock of
//! the FMA-peak loop (one 16-lane FMA per cycle on AVX-512, two 8-lane ones on AVX2,
//! as on Zen 4).
//!
//! `cargo run --release -p snipjit-x64 --example softmax_block`
//!
//! Environment: `SB_ROWS` (48), `SB_N` (128), `SB_FIRST=1` (time a row's first block,
//! which has nothing to rescale), `SB_JUMP=1` (every block raises each row's maximum
//! past the rescale slack, so every block rescales: the worst case), `SB_REPS` (31).
//! Kernel and peak loop alternate in batches of ~3 ms; printed are medians.

use std::time::Instant;

use snipjit_x64::attn::MaskRef;
use snipjit_x64::{AttnMask, AttnScale, FmaPeak, Isa, OnlineSoftmax, OnlineSoftmaxOptions};

const DV: usize = 64;
/// The additive mask value of masked scores (BERT's).
const MASKED: f32 = -1e4;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Seconds per call of `f`, over a batch of about 3 ms.
fn per_call(f: &mut impl FnMut()) -> f64 {
    let t = Instant::now();
    let mut calls = 0u64;
    while t.elapsed().as_secs_f64() < 0.003 {
        f();
        calls += 1;
    }
    t.elapsed().as_secs_f64() / calls as f64
}

fn main() {
    let (rows, n, reps) = (env("SB_ROWS", 48), env("SB_N", 128), env("SB_REPS", 31));
    let (first, jump) = (env("SB_FIRST", 0) != 0, env("SB_JUMP", 0) != 0);
    for isa in Isa::ALL {
        if !isa.is_supported() {
            println!("SKIPPED: {isa}: this CPU does not support it");
            continue;
        }
        let peak = FmaPeak::compile(isa).expect("peak loop compiles");
        let kern = OnlineSoftmax::compile(OnlineSoftmaxOptions {
            isa,
            scale: Some(AttnScale::Mul(0.125)),
            mask: AttnMask::Additive,
        })
        .expect("softmax block compiles");
        let raw: Vec<f32> = (0..rows * n)
            .map(|i| ((i * 37) % 101) as f32 * 0.05)
            .collect();
        let mut s = raw.clone();
        let mask: Vec<f32> = (0..n)
            .map(|j| if j % 9 == 0 { MASKED } else { 0.0 })
            .collect();
        // The reference maxima before each block: 0 keeps them (the block's maxima
        // are below 0.7), -100 makes every row jump.
        let m0 = if jump { -100.0 } else { 0.0 };
        let (mut m, mut l) = (vec![m0; rows], vec![1.0f32; rows]);
        let mut acc = vec![1.0f32; rows * DV];
        // One block on fresh inputs, or (`reset_only`) just the input reset, whose
        // time is subtracted.
        let mut step = |reset_only: bool| {
            s.copy_from_slice(&raw);
            m.fill(m0);
            l.fill(1.0);
            if reset_only {
                std::hint::black_box(&mut s);
                return;
            }
            kern.run_block(
                &mut s,
                (rows, n, n),
                &mut m,
                &mut l,
                &mut acc,
                (DV, DV),
                MaskRef::F32 {
                    data: &mask,
                    row_stride: 0,
                    col_bcast: false,
                },
                first,
            )
            .expect("block runs");
        };
        let iters = 20_000u64;
        let mut p = || peak.run(iters).expect("isa checked");
        let (mut ks, mut hz) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            let tp = per_call(&mut p);
            // One zmm FMA (or two ymm FMAs) per cycle: 32 flops.
            hz.push((peak.flops_per_iter() * iters) as f64 / tp / 32.0);
            let full = per_call(&mut || step(false));
            ks.push(full - per_call(&mut || step(true)));
        }
        let (t, ghz) = (median(ks), median(hz) / 1e9);
        let vectors = (rows * n.div_ceil(isa.lanes())) as f64;
        println!(
            "{isa}: {rows}x{n} block{} {:.2} us, {:.0} cycles/row, {:.1} cycles per score vector (clock {ghz:.2} GHz)",
            match (first, jump) {
                (true, _) => " (first)",
                (false, true) => " (every row rescales)",
                (false, false) => "",
            },
            t * 1e6,
            t * ghz * 1e9 / rows as f64,
            t * ghz * 1e9 / vectors
        );
    }
}
