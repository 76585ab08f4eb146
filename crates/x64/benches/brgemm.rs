//! The brgemm micro-kernel on L2-resident blocks, per ISA and B layout: square-ish
//! blocks and the attention shapes (Q·K^T: a 32×64 Q block against S_blk rows of K;
//! P·V: 32×S_blk probabilities against S_blk×64 of V); `Packed` runs on B^T packed
//! once beforehand by a `BPacker`. Throughput is in elements of C
//! times K, so criterion's "elem/s" read as FMA lanes per second: GFLOP/s = 2 × Gelem/s.
//!
//! `cargo bench -p snipjit-x64 --bench brgemm`; `--example brgemm_peak` prints the same
//! kernels as % of the FMA peak.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use snipjit_x64::{BLayout, BPacker, Brgemm, BrgemmOptions, BrgemmShape, Isa};

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("brgemm");
    for isa in Isa::ALL {
        if !isa.is_supported() {
            eprintln!("SKIPPED: brgemm on {isa}: this CPU does not support it");
            continue;
        }
        for layout in [BLayout::RowMajor, BLayout::Transposed, BLayout::Packed] {
            let kern = Brgemm::compile(BrgemmOptions::new(isa, layout)).expect("compiles");
            let shapes: &[(usize, usize, usize)] = match layout {
                BLayout::RowMajor => &[
                    (64, 64, 64),
                    (128, 128, 128),
                    (120, 128, 256),
                    (32, 64, 128),
                    (32, 64, 256),
                ],
                BLayout::Transposed | BLayout::Packed => &[
                    (64, 64, 64),
                    (128, 128, 128),
                    (32, 64, 64),
                    (32, 128, 64),
                    (32, 256, 64),
                ],
            };
            for &(m, n, k) in shapes {
                let a: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 * 0.1).collect();
                let mut b: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 * 0.1).collect();
                if layout == BLayout::Packed {
                    // B^T packed once outside the timing, as attention reuses K^T.
                    let packer = BPacker::for_kernel(&kern, BLayout::Transposed).expect("compiles");
                    let mut packed = vec![0f32; packer.packed_len(n, k)];
                    packer.pack(&b, n, k, k, &mut packed).expect("packs");
                    b = packed;
                }
                let mut cmat = vec![0f32; m * n];
                let mut scratch = vec![0f32; kern.scratch_len(k)];
                let args = BrgemmShape::dense(m, n, k, layout).args(
                    a.as_ptr(),
                    b.as_ptr(),
                    cmat.as_mut_ptr(),
                    scratch.as_mut_ptr(),
                );
                group.throughput(Throughput::Elements((m * n * k) as u64));
                let id = format!("{isa}/{layout:?}/M{m}xN{n}xK{k}");
                group.bench_function(BenchmarkId::from_parameter(id), |bch| {
                    // SAFETY: the ISA is supported; the buffers match the shape, the
                    // scratch has scratch_len(k) floats, and all outlive the calls.
                    bch.iter(|| unsafe { kern.call(&args) })
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
