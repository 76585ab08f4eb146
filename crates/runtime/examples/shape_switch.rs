//! What a first call at a never-seen sequence length costs when nothing else changes.
//!
//! `cargo run --release -p snipjit-runtime --example shape_switch`
//!
//! One compiled kernel, a length `A` and lengths `B0`, `B0 + step`, ... (`MHA_AB` =
//! `A,B0`, default `96,97`; `MHA_STEP`, default 1; `MHA_ROUNDS`, default 40). Each
//! round makes the next B's inputs and outputs, calls four times at A, then four
//! times at B. Before every call its own inputs and outputs are rewritten, so that
//! every call finds its data in the same state, and the caller stays busy for
//! `MHA_GAP_MS` (default 0; arithmetic only, no memory traffic). Printed: the median
//! over the rounds of each B call minus the mean of that round's last two B calls.
//! With a step of 1 every `B1` is the first call at a length this process never ran;
//! with `MHA_STEP=0` B stays one (seen) length, with fresh buffers every round.
//!
//! On this project's VM (2026-11-24, one thread, no gap): `B1 - repeated` +0.4 to +4.8
//! us for B in 33..62, 97..126 and 129..158, i.e. a never-seen length costs nothing
//! measurable of its own. With a gap of a few milliseconds every call is slower (the
//! VM's caches lose their contents while the core does other work) and `B1` more so,
//! seen length or not (`MHA_STEP=0`): that is the data's cache state, not the shape.

use std::time::Instant;

use snipjit_ir::{Tensor, TensorData};

mod common;

/// Reads and writes back every element, so the data is in the state of data just
/// written by the caller.
fn rewrite(ts: &mut [Tensor]) {
    for t in ts {
        if let TensorData::F32(v) = &mut t.data {
            for x in v.iter_mut() {
                *x = std::hint::black_box(*x);
            }
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let threads: usize = common::env("MHA_THREADS", 1);
    let gap: f64 = common::env("MHA_GAP_MS", 0.0);
    let rounds: usize = common::env("MHA_ROUNDS", 40);
    let ab = common::env_lengths("MHA_AB", "96,97");
    let (exec, body, k) = common::bert_kernel(threads);
    // Every round's B is a length not run before in this process: its first call is
    // the first at a never-seen S.
    let a = ab[0];
    let step: usize = common::env("MHA_STEP", 1);
    let b_of = |round: usize| ab[1] + round * step;
    let make = |s: usize| {
        let ins = common::inputs(&body, 1, s, s as u32);
        let outs = vec![Tensor::from_f32(&[1, s, 12, 64], vec![1.0; s * 768]).expect("shape")];
        (ins, outs)
    };
    let call = |(ins, outs): &mut (Vec<Tensor>, Vec<Tensor>)| {
        rewrite(ins);
        rewrite(outs);
        let t = Instant::now();
        let mut x = 1u64;
        while t.elapsed().as_secs_f64() * 1e3 < gap {
            for _ in 0..64 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        let refs: Vec<&Tensor> = ins.iter().collect();
        let t = Instant::now();
        k.run_into(&refs, outs, &exec).expect("runs");
        t.elapsed().as_secs_f64() * 1e6
    };
    let mut at_a = make(a);
    let mut extra: [Vec<f64>; 4] = Default::default();
    let mut base = vec![];
    for round in 0..rounds {
        let b = b_of(round);
        // Made before the A calls, so that B's first call follows A's calls directly.
        let mut at_b = make(b);
        for _ in 0..4 {
            call(&mut at_a);
        }
        let t: Vec<f64> = (0..4).map(|_| call(&mut at_b)).collect();
        let m = (t[2] + t[3]) / 2.0;
        base.push(m);
        for (e, x) in extra.iter_mut().zip(&t) {
            e.push(x - m);
        }
    }
    println!(
        "A = {a}, B = {}..={}, {threads} thread(s), {gap} ms busy before each call",
        b_of(0),
        b_of(rounds - 1)
    );
    println!("B repeated: {:.1} us (median)", median(&mut base));
    for (i, e) in extra.iter_mut().enumerate() {
        println!("B{} - repeated: {:+.1} us (median)", i + 1, median(e));
    }
}
