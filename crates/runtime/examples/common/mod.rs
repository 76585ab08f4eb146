//! What the attention examples share: the BERT block of examples/mha.sg and its inputs
//! (tests/mha.rs takes `mha_body` from here too, so not every user calls everything).
#![allow(dead_code)]

use snipjit_ir::{Graph, Op, SubgraphKind, Tensor};
use snipjit_tokenize::{TokenizeConfig, tokenize};

const MODEL: &str = include_str!("../../../../examples/mha.sg");

/// The body of examples/mha.sg's one attention subgraph, as the tokenizer forms it.
pub fn mha_body() -> Graph {
    let graph = snipjit_ir::text::parse(MODEL, "mha.sg").expect("parses");
    let fused = tokenize(&graph, &TokenizeConfig::default()).expect("tokenizes");
    fused
        .nodes
        .iter()
        .find_map(|n| match &n.op {
            Op::Subgraph(sg) if sg.kind == SubgraphKind::Mha => Some(sg.body.clone()),
            _ => None,
        })
        .expect("one mha subgraph")
}

/// Inputs of `body` with the dim named `B` = `b` and every other dynamic dim `s`:
/// uniform values in [-0.5, 0.5) from an LCG seeded with `seed`.
pub fn inputs(body: &Graph, b: usize, s: usize, seed: u32) -> Vec<Tensor> {
    let mut seed = seed;
    body.inputs
        .iter()
        .map(|&id| {
            let shape: Vec<usize> = body.node(id).outputs[0]
                .ty
                .shape
                .concrete(|name| if name == Some("B") { b } else { s });
            let n: usize = shape.iter().product();
            let data = (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
                })
                .collect();
            Tensor::from_f32(&shape, data).expect("shape")
        })
        .collect()
}

/// The examples' usual setup: an executor of `threads` threads, the body of
/// examples/mha.sg and its attention kernel compiled for the best ISA of this CPU.
pub fn bert_kernel(
    threads: usize,
) -> (
    snipjit_runtime::Executor,
    Graph,
    snipjit_runtime::mha::MhaKernel,
) {
    let isa = snipjit_x64::Isa::detect().expect("no AVX2 or AVX-512 on this CPU");
    let exec = snipjit_runtime::Executor::new(threads).expect("executor");
    let body = mha_body();
    let pattern = snipjit_tokenize::mha::analyze_mha(&body).expect("reads back");
    let k = snipjit_runtime::mha::MhaKernel::compile(&pattern, &body, isa).expect("compiles");
    (exec, body, k)
}

/// The environment variable `name` parsed as a `T`, or `default` if it is unset or
/// does not parse.
pub fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The environment variable `name` (else `default`) as a comma-separated list of
/// sequence lengths.
pub fn env_lengths(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.parse().expect("a sequence length"))
        .collect()
}
