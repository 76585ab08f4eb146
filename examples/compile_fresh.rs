//! What compiling examples/mha.sg costs in a fresh process, and again after it:
//! wall time and minor page faults of `Compiler::new` and of each `compile`.
//!
//! `cargo run --release --example compile_fresh` (run it several times: each run is
//! one fresh process).

use std::time::Instant;

use snipjit::{Compiler, Options};

fn minflt() -> i64 {
    // SAFETY: getrusage fills one rusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_minflt
}

fn main() {
    let src = include_str!("mha.sg");
    let t = Instant::now();
    let f = minflt();
    let compiler = Compiler::new(Options::default()).expect("options");
    println!(
        "Compiler::new   {:>7.1} us {:>4} faults",
        t.elapsed().as_secs_f64() * 1e6,
        minflt() - f
    );
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    for round in 0..rounds {
        let graph = snipjit_ir::text::parse(src, "mha.sg").expect("parses");
        let f = minflt();
        let t = Instant::now();
        let model = compiler.compile(graph).expect("compiles");
        let us = t.elapsed().as_secs_f64() * 1e6;
        println!(
            "compile #{round}      {us:>7.1} us {:>4} faults",
            minflt() - f
        );
        std::hint::black_box(&model);
    }
}
