//! Elementwise kernels per ISA: SiLU and the GELU(tanh) chain of ../shared/bench at
//! 4 Ki, 1 Mi and 16 Mi elements, through `CompiledModel::run` (the whole call a user
//! pays) and `CompiledModel::run_into` (pre-allocated outputs, as the peers are timed).
//!
//! `cargo bench --bench elementwise`; compare with `scripts/bench/run.sh eltwise`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use snipjit::{Compiler, Options, Tensor, parse_model};

mod common;
use common::isas;

const SILU: &str = include_str!("../examples/silu.sg");
const CHAIN: &str = include_str!("../examples/gelu_chain.sg");

fn bench(c: &mut Criterion) {
    for (name, text) in [("silu", SILU), ("chain_add_mul_gelutanh_mul", CHAIN)] {
        let mut group = c.benchmark_group(name);
        for isa in isas() {
            for threads in [1, 2] {
                let graph = parse_model(text, name).expect("example parses");
                let model = Compiler::new(Options { threads, isa })
                    .and_then(|c| c.compile(graph))
                    .expect("example compiles");
                for n in [4usize << 10, 1 << 20, 16 << 20] {
                    let rows = n / 1024;
                    let x = Tensor::from_f32(
                        &[rows, 1024],
                        (0..n).map(|i| (i % 97) as f32 * 0.05 - 2.0).collect(),
                    )
                    .expect("shape matches");
                    let mut out = vec![Tensor::zeros(snipjit::DType::F32, &[rows, 1024])];
                    group.throughput(Throughput::Bytes(8 * n as u64));
                    let id = format!("{}/t{threads}/N{n}", isa.name());
                    group.bench_with_input(BenchmarkId::new("run_into", &id), &x, |b, x| {
                        b.iter(|| {
                            model
                                .run_into(std::slice::from_ref(x), &mut out)
                                .expect("runs")
                        })
                    });
                    group.bench_with_input(BenchmarkId::new("run", &id), &x, |b, x| {
                        b.iter(|| model.run(std::slice::from_ref(x)).expect("runs"))
                    });
                }
            }
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_millis(300)).measurement_time(std::time::Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
