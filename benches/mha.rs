//! The attention block of ../shared/bench (BERT-base: Q, K, V as [B, S, 12, 64], an
//! additive [B, 1, 1, S] mask) per ISA, through `CompiledModel::run_into` (outputs
//! bound once, as the peers are timed): B = 1 with S in {16, 64, 128, 512} and
//! B = 8 with S = 128, on 1 and 2 threads. Throughput is in matmul FLOPs
//! (`4·B·12·S²·64`), so criterion's "elem/s" reads as FLOP/s.
//!
//! `cargo bench --bench mha`; compare with `scripts/bench/run.sh mha`, which measures
//! OpenVINO and onnxruntime on the same shapes in the same run.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use snipjit::{Compiler, Options, Tensor, parse_model};

mod common;
use common::isas;

const MHA: &str = include_str!("../examples/mha.sg");

fn tensor(shape: &[usize], salt: usize) -> Tensor {
    let n: usize = shape.iter().product();
    let v = (0..n)
        .map(|i| ((i * 31 + salt * 17) % 101) as f32 * 0.02 - 1.0)
        .collect();
    Tensor::from_f32(shape, v).expect("shape matches")
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("mha");
    for isa in isas() {
        for threads in [1, 2] {
            let graph = parse_model(MHA, "mha").expect("example parses");
            let model = Compiler::new(Options { threads, isa })
                .and_then(|c| c.compile(graph))
                .expect("example compiles");
            for (b, s) in [(1usize, 16usize), (1, 64), (1, 128), (1, 512), (8, 128)] {
                let qkv = [b, s, 12, 64];
                let inputs = vec![
                    tensor(&qkv, 1),
                    tensor(&qkv, 2),
                    tensor(&qkv, 3),
                    Tensor::zeros(snipjit::DType::F32, &[b, 1, 1, s]),
                ];
                let mut out = model.run(&inputs).expect("runs");
                group.throughput(Throughput::Elements((4 * b * 12 * s * s * 64) as u64));
                let id = format!("{}/t{threads}/B{b}_S{s}", isa.name());
                group.bench_with_input(BenchmarkId::new("run_into", &id), &inputs, |bch, x| {
                    bch.iter(|| model.run_into(x, &mut out).expect("runs"))
                });
            }
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_millis(300)).measurement_time(std::time::Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
