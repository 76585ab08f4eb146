//! What a first call at a new sequence length costs over a repeated one, and why.
//!
//! `cargo run --release -p snipjit-runtime --example first_call`
//!
//! For each S (`MHA_S`, default 16..512) on one compiled kernel: the first call at S
//! (fresh inputs, written just before, as `snipjit bench` does), the median of the
//! repeated calls, a call on new inputs at the same S, and a call after evicting the
//! caches (writing 64 MiB), all in microseconds.

use std::time::Instant;

use snipjit_ir::Tensor;
use snipjit_runtime::Executor;
use snipjit_runtime::mha::MhaKernel;
use snipjit_tokenize::mha::analyze_mha;
use snipjit_x64::Isa;

mod common;

fn minflt() -> i64 {
    // SAFETY: getrusage fills one rusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_minflt
}

fn main() {
    let threads: usize = std::env::var("MHA_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let sizes: Vec<usize> = std::env::var("MHA_S")
        .unwrap_or_else(|_| "16,32,64,128,256,384,512".into())
        .split(',')
        .map(|s| s.parse().expect("S"))
        .collect();
    let isa = Isa::detect().expect("no AVX2 or AVX-512 on this CPU");
    let exec = Executor::new(threads).expect("executor");
    let body = common::mha_body();
    let pattern = analyze_mha(&body).expect("reads back");
    let k = MhaKernel::compile(&pattern, &body, isa).expect("compiles");
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
}
