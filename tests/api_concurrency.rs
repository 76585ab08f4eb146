//! One compiled model shared by 8 threads, each running different shapes at once,
//! gives exactly what sequential runs give (issue 5: concurrency).

use std::sync::Arc;

use snipjit::{Compiler, IsaChoice, Options, Tensor, parse_model};

const MODEL: &str = include_str!("../examples/relu_bias.sg");

fn inputs(n: usize, c: usize, seed: u32) -> Vec<Tensor> {
    let x: Vec<f32> = (0..n * c)
        .map(|i| {
            ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 * 0.01 - 5.0
        })
        .collect();
    let b: Vec<f32> = (0..c)
        .map(|i| (i as f32 * 0.37 + seed as f32).sin())
        .collect();
    vec![
        Tensor::from_f32(&[n, c], x).expect("shape matches"),
        Tensor::from_f32(&[1, c], b).expect("shape matches"),
    ]
}

#[test]
fn eight_threads_with_different_shapes_match_sequential_runs() {
    for isa in [IsaChoice::Avx512, IsaChoice::Avx2] {
        if !isa.is_supported() {
            eprintln!("SKIPPED: {} (not supported by this CPU)", isa.name());
            continue;
        }
        for threads in [1, 2, 4] {
            let graph = parse_model(MODEL, "relu_bias.sg").expect("example parses");
            let model = Arc::new(
                Compiler::new(Options { threads, isa })
                    .and_then(|c| c.compile(graph))
                    .expect("compiles"),
            );
            // Shapes chosen so that the threads hit different tails, broadcast-free and
            // row-split domains, and a zero-size batch.
            let shapes: Vec<(usize, usize)> = vec![
                (1, 1),
                (3, 37),
                (0, 5),
                (17, 16),
                (64, 1031),
                (2, 70_000),
                (5, 33),
                (200, 700),
            ];
            let sequential: Vec<Vec<Tensor>> = shapes
                .iter()
                .enumerate()
                .map(|(k, &(n, c))| model.run(&inputs(n, c, k as u32)).expect("runs"))
                .collect();
            let handles: Vec<_> = shapes
                .iter()
                .enumerate()
                .map(|(k, &(n, c))| {
                    let model = Arc::clone(&model);
                    std::thread::spawn(move || {
                        // Several rounds each, so the threads really overlap.
                        let mut last = vec![];
                        for _ in 0..20 {
                            last = model.run(&inputs(n, c, k as u32)).expect("runs");
                        }
                        last
                    })
                })
                .collect();
            for (k, h) in handles.into_iter().enumerate() {
                let concurrent = h.join().expect("no thread panicked");
                assert_eq!(
                    concurrent,
                    sequential[k],
                    "{} x{threads} shape {:?}",
                    isa.name(),
                    shapes[k]
                );
            }
            assert_eq!(
                model.stats().compilations,
                1,
                "one kernel for every shape of this pattern"
            );
        }
    }
}

/// Compile once, run any shape: 100 different input shapes of one broadcast pattern
/// give one compilation and the same kernel bytes (issue 3).
#[test]
fn hundred_shapes_one_compilation() {
    let graph = parse_model(MODEL, "relu_bias.sg").expect("example parses");
    let model = Compiler::new(Options::default())
        .and_then(|c| c.compile(graph))
        .expect("compiles");
    let Some((_, Ok(sg))) = model.kernels().into_iter().next() else {
        eprintln!("SKIPPED: no JIT on this CPU (the model runs on the interpreter)");
        return;
    };
    let code = sg.kernels()[0].1.kernel.code().to_vec();
    for k in 0..100usize {
        let (n, c) = (1 + k % 7, 2 + (k * 37) % 301);
        let out = model.run(&inputs(n, c, k as u32)).expect("runs");
        assert_eq!(out[0].shape, vec![n, c]);
    }
    assert_eq!(model.stats().compilations, 1);
    let kernels = sg.kernels();
    assert_eq!(kernels.len(), 1);
    assert_eq!(
        kernels[0].1.kernel.code(),
        code.as_slice(),
        "byte-identical kernel"
    );
}
