//! MhaKernel at the runtime level: shape and dtype errors are errors (never panics),
//! results do not depend on the thread count or the row-block split, and one
//! compilation serves every shape.

use snipjit_ir::{Tensor, TensorData};
use snipjit_runtime::mha::MhaBlocking;
use snipjit_runtime::{Executor, MhaKernel, RuntimeError};
use snipjit_x64::Isa;

// The body of examples/mha.sg's attention subgraph, as the examples take it.
#[path = "../examples/common/mod.rs"]
mod common;
use common::mha_body;

fn kernel() -> Option<MhaKernel> {
    let Some(isa) = Isa::detect() else {
        eprintln!("SKIPPED: no AVX2 or AVX-512 on this CPU");
        return None;
    };
    Some(MhaKernel::from_body(&mha_body(), isa).expect("compiles"))
}

fn tensor(shape: &[usize], seed: &mut u32) -> Tensor {
    let n = shape.iter().product();
    let v = (0..n)
        .map(|_| {
            *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (*seed >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
        })
        .collect();
    Tensor::from_f32(shape, v).unwrap()
}

/// q, k, v `[b, s, 12, 64]` and the mask `[b, 1, 1, s]`.
fn inputs(b: usize, s: usize, seed: &mut u32) -> Vec<Tensor> {
    vec![
        tensor(&[b, s, 12, 64], seed),
        tensor(&[b, s, 12, 64], seed),
        tensor(&[b, s, 12, 64], seed),
        tensor(&[b, 1, 1, s], seed),
    ]
}

fn run(k: &MhaKernel, ins: &[Tensor], threads: usize) -> Result<Vec<Tensor>, RuntimeError> {
    let exec = Executor::new(threads).unwrap();
    let refs: Vec<&Tensor> = ins.iter().collect();
    k.run(&refs, &exec)
}

#[test]
fn bad_shapes_and_dtypes_are_errors() {
    let Some(k) = kernel() else { return };
    let mut seed = 3;
    let good = inputs(1, 5, &mut seed);
    assert!(run(&k, &good, 1).is_ok());
    // Wrong head size (the body declares 64).
    let mut bad = good.clone();
    bad[0] = tensor(&[1, 5, 12, 32], &mut seed);
    assert!(run(&k, &bad, 1).is_err(), "head size 32");
    // K with another sequence length than the mask and V.
    let mut bad = good.clone();
    bad[1] = tensor(&[1, 6, 12, 64], &mut seed);
    assert!(run(&k, &bad, 1).is_err(), "L of K differs from V");
    // Batch dims that do not broadcast.
    let mut bad = good.clone();
    bad[3] = tensor(&[3, 1, 1, 5], &mut seed);
    bad[0] = tensor(&[2, 5, 12, 64], &mut seed);
    assert!(run(&k, &bad, 1).is_err(), "batch 2 vs 3");
    // A bool where f32 is declared.
    let mut bad = good.clone();
    bad[3] = Tensor::new(vec![1, 1, 1, 5], TensorData::Bool(vec![true; 5])).unwrap();
    assert!(run(&k, &bad, 1).is_err(), "bool mask for an f32 mask");
    // Too few inputs.
    assert!(run(&k, &good[..3], 1).is_err(), "three inputs");
    // The kernel still works after the errors.
    assert!(run(&k, &good, 1).is_ok());
}

#[test]
fn threads_and_row_splits_give_identical_bits() {
    let Some(k) = kernel() else { return };
    let mut seed = 9;
    // 12 heads: with 16 or 40 threads there are fewer (head, row block) items than
    // threads, so the row blocks shrink (S = 100 splits into 6-row blocks); S <= 20 is
    // below the parallel threshold and runs on the calling thread.
    for (b, s) in [(1, 1), (1, 20), (2, 100), (1, 131)] {
        let ins = inputs(b, s, &mut seed);
        let one = run(&k, &ins, 1).unwrap();
        for threads in [2, 3, 16, 40] {
            let many = run(&k, &ins, threads).unwrap();
            assert_eq!(one[0].shape, many[0].shape);
            let (x, y) = (one[0].as_f32().unwrap(), many[0].as_f32().unwrap());
            assert!(
                x.iter().zip(y).all(|(a, c)| a.to_bits() == c.to_bits()),
                "B {b} S {s}: {threads} threads differ from 1"
            );
        }
    }
    assert_eq!(k.compilations(), 1);
}

#[test]
fn run_into_reuses_a_matching_output() {
    let Some(k) = kernel() else { return };
    let mut seed = 5;
    let exec = Executor::new(1).unwrap();
    let ins = inputs(1, 33, &mut seed);
    let refs: Vec<&Tensor> = ins.iter().collect();
    let mut outs = vec![];
    k.run_into(&refs, &mut outs, &exec).unwrap();
    let ptr = outs[0].as_f32().unwrap().as_ptr();
    let first = outs[0].clone();
    k.run_into(&refs, &mut outs, &exec).unwrap();
    assert_eq!(outs[0].as_f32().unwrap().as_ptr(), ptr, "reused in place");
    assert_eq!(outs[0], first);
    // Another shape replaces it.
    let ins = inputs(1, 7, &mut seed);
    let refs: Vec<&Tensor> = ins.iter().collect();
    k.run_into(&refs, &mut outs, &exec).unwrap();
    assert_eq!(outs[0].shape, vec![1, 7, 12, 64]);
}

#[test]
fn score_blocks_must_be_whole_k_panels() {
    let Some(k) = kernel() else { return };
    let body = mha_body();
    let panel = k.fused().n_block();
    for n_blk in [panel / 2 + 1, panel + 8] {
        let b = MhaBlocking { m_blk: 48, n_blk };
        let r = MhaKernel::compile_with(k.pattern(), &body, k.isa(), b);
        assert!(matches!(r, Err(RuntimeError::Mha(_))), "n_blk {n_blk}");
    }
    // A one-panel block gives the same results as the default two-panel block, up to
    // the rounding of the online rescale.
    let small = MhaKernel::compile_with(
        k.pattern(),
        &body,
        k.isa(),
        MhaBlocking {
            m_blk: 12,
            n_blk: panel,
        },
    )
    .unwrap();
    let mut seed = 11;
    let ins = inputs(1, 200, &mut seed);
    let (x, y) = (run(&k, &ins, 1).unwrap(), run(&small, &ins, 2).unwrap());
    for (a, c) in x[0].as_f32().unwrap().iter().zip(y[0].as_f32().unwrap()) {
        assert!((a - c).abs() <= 1e-5 * (1.0 + a.abs()), "{a} vs {c}");
    }
}

/// The scratch layout comes from the lowering's buffer allocation: every region the
/// kernel uses is 64-byte aligned, as large as the kernel needs, disjoint from the
/// others and inside the allocation, for several K lengths and blockings.
#[test]
fn scratch_regions_are_aligned_disjoint_and_inside() {
    let Some(k) = kernel() else { return };
    let body = mha_body();
    let panel = k.fused().n_block();
    for (m_blk, n_blk) in [(48, 128), (12, panel), (7, 2 * panel)] {
        let kern =
            MhaKernel::compile_with(k.pattern(), &body, k.isa(), MhaBlocking { m_blk, n_blk })
                .unwrap();
        assert_eq!(kern.blocking(), MhaBlocking { m_blk, n_blk });
        for s in [1usize, 5, 64, 65, 300, 2048] {
            let qkv = [1, s, 12, 64];
            let mask = [1, 1, 1, s];
            let shapes: [&[usize]; 4] = [&qkv, &qkv, &qkv, &mask];
            let kbuf = s.next_multiple_of(panel) * 64;
            let l = kern.scratch_for(&shapes, kbuf).unwrap();
            // The formulas give what the plan's full evaluation gives.
            let full = kern
                .lowered()
                .scratch_layout(&kern.lowered().dims_of_shapes(&shapes).unwrap())
                .unwrap();
            assert_eq!(l.total, full.total.div_ceil(4) + 16);
            assert_eq!(Some(4 * l.kbuf), full.offset("kpack"));
            assert_eq!(Some(4 * l.scores), full.offset("scores"));
            let regions = [
                (l.scores, m_blk * n_blk),
                (l.acc, m_blk * 64),
                (l.m, m_blk),
                (l.lsum, m_blk),
                (l.kbuf, kbuf),
            ];
            for (i, &(start, len)) in regions.iter().enumerate() {
                assert_eq!(start % 16, 0, "region {i} is 64-byte aligned");
                // The allocation also holds up to 15 floats of alignment slack.
                assert!(start + len + 15 < l.total, "region {i} inside");
                for &(s2, l2) in &regions[i + 1..] {
                    assert!(start + len <= s2 || s2 + l2 <= start, "disjoint");
                }
            }
            // A K buffer larger than the plan's packed K is refused, not overrun.
            let too_big = kbuf + 64 * panel;
            assert!(kern.scratch_for(&shapes, too_big).is_err());
        }
    }
}
