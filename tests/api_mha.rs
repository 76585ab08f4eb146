//! Attention blocks through the public API: the tokenizer makes one `mha` subgraph,
//! which runs its body on the interpreter until the MHA kernel exists, and the
//! results equal the interpreter's run of the untokenized graph bit for bit.

use snipjit::{Compiler, Graph, Options, Tensor, TensorData, parse_model};
use snipjit_ir::{Op, SubgraphKind};

/// The benchmark's BERT block, with a bias Add on Q before it and a residual Add
/// and Relu after it (those fuse as elementwise subgraphs of their own).
const BERT: &str = "\
graph bert(q: f32[B, S, 12, 64], k: f32[B, S, 12, 64], v: f32[B, S, 12, 64], mask: f32[B, 1, 1, S], bias: f32[64]) {
  qb: f32[B, S, 12, 64] = Add(q, bias)
  qt: f32[B, 12, S, 64] = Transpose(qb, perm=[0, 2, 1, 3])
  kt: f32[B, 12, 64, S] = Transpose(k, perm=[0, 2, 3, 1])
  vt: f32[B, 12, S, 64] = Transpose(v, perm=[0, 2, 1, 3])
  scores: f32[B, 12, S, S] = MatMul(qt, kt)
  scale: f32[] = Constant(0.125)
  scaled: f32[B, 12, S, S] = Mul(scores, scale)
  masked: f32[B, 12, S, S] = Add(scaled, mask)
  probs: f32[B, 12, S, S] = Softmax(masked, axis=-1)
  context: f32[B, 12, S, 64] = MatMul(probs, vt)
  ctx: f32[B, S, 12, 64] = Transpose(context, perm=[0, 2, 1, 3])
  res: f32[B, S, 12, 64] = Add(ctx, q)
  out: f32[B, S, 12, 64] = Relu(res)
  return out
}
";

/// 3D cross-attention with a boolean mask and the scale on Q: the whole model is
/// one mha subgraph.
const WHERE_3D: &str = "\
graph where3(q: f32[N, S, 32], k: f32[N, L, 32], v: f32[N, L, 32], keep: bool[S, L]) {
  c: f32[] = Constant(0.17677669)
  qs: f32[N, S, 32] = Mul(q, c)
  scores: f32[N, S, L] = MatMul(qs, k, transpose_b=true)
  fill: f32[] = Constant(-1000000000)
  masked: f32[N, S, L] = Select(keep, scores, fill)
  probs: f32[N, S, L] = Softmax(masked, axis=-1)
  out: f32[N, S, 32] = MatMul(probs, v)
  return out
}
";

/// xorshift64*: deterministic test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
    }

    fn tensor(&mut self, shape: &[usize]) -> Tensor {
        let n = shape.iter().product();
        Tensor::from_f32(shape, (0..n).map(|_| self.f32()).collect()).unwrap()
    }

    fn mask(&mut self, shape: &[usize]) -> Tensor {
        let n = shape.iter().product();
        let v = (0..n)
            .map(|i| {
                if self.next().is_multiple_of(5) && !i.is_multiple_of(7) {
                    -10000.0
                } else {
                    0.0
                }
            })
            .collect();
        Tensor::from_f32(shape, v).unwrap()
    }

    fn bools(&mut self, shape: &[usize]) -> Tensor {
        let n = shape.iter().product();
        let v = (0..n).map(|_| !self.next().is_multiple_of(4)).collect();
        Tensor::new(shape.to_vec(), TensorData::Bool(v)).unwrap()
    }
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.as_f32()
        .expect("f32 output")
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

fn mha_count(g: &Graph) -> usize {
    g.nodes
        .iter()
        .filter(|n| matches!(&n.op, Op::Subgraph(sg) if sg.kind == SubgraphKind::Mha))
        .count()
}

/// Compiles `src`, checks its stats hold exactly one mha subgraph of `mha_nodes`
/// ops running on the interpreter, and that every run equals the interpreter's run
/// of the original graph bit for bit.
fn check(src: &str, mha_nodes: usize, runs: &[Vec<Tensor>]) -> snipjit::Stats {
    let graph = parse_model(src, "mha.sg").expect("parses");
    let model = Compiler::new(Options::default())
        .and_then(|c| c.compile(graph.clone()))
        .expect("compiles");
    assert_eq!(mha_count(model.fused_graph()), 1);
    let stats = model.stats();
    let mha: Vec<_> = stats.subgraphs.iter().filter(|s| s.kind == "mha").collect();
    assert_eq!(mha.len(), 1, "one mha subgraph: {}", stats.to_json());
    assert_eq!(mha[0].nodes, mha_nodes);
    assert!(!mha[0].jit, "no MHA kernel yet: the interpreter runs it");
    assert!(
        stats.to_json().contains(&format!(
            "{{\"kind\":\"mha\",\"nodes\":{mha_nodes},\"jit\":false}}"
        )),
        "{}",
        stats.to_json()
    );
    for inputs in runs {
        let want = snipjit_interp::run(&graph, inputs).expect("interpreter runs");
        let got = model.run(inputs).expect("model runs");
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.shape, w.shape);
            assert_eq!(bits(g), bits(w), "outputs differ for shapes {:?}", g.shape);
        }
        let mut into = vec![];
        model.run_into(inputs, &mut into).expect("runs into");
        assert_eq!(
            into.iter().map(bits).collect::<Vec<_>>(),
            want.iter().map(bits).collect::<Vec<_>>()
        );
    }
    stats
}

#[test]
fn bert_block_is_one_mha_subgraph_and_exact() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let runs: Vec<Vec<Tensor>> = [(1, 7), (2, 13), (1, 1)]
        .into_iter()
        .map(|(b, s)| {
            vec![
                rng.tensor(&[b, s, 12, 64]),
                rng.tensor(&[b, s, 12, 64]),
                rng.tensor(&[b, s, 12, 64]),
                rng.mask(&[b, 1, 1, s]),
                rng.tensor(&[64]),
            ]
        })
        .collect();
    let stats = check(BERT, 9, &runs);
    // The bias Add and the residual Add + Relu are elementwise subgraphs around it.
    let kinds: Vec<&str> = stats.subgraphs.iter().map(|s| s.kind.as_str()).collect();
    assert_eq!(kinds, ["elementwise", "mha", "elementwise"]);
}

#[test]
fn boolean_mask_3d_cross_attention_is_exact() {
    let mut rng = Rng(7);
    let runs: Vec<Vec<Tensor>> = [(3, 5, 9), (1, 16, 17), (2, 1, 3)]
        .into_iter()
        .map(|(n, s, l)| {
            vec![
                rng.tensor(&[n, s, 32]),
                rng.tensor(&[n, l, 32]),
                rng.tensor(&[n, l, 32]),
                rng.bools(&[s, l]),
            ]
        })
        .collect();
    let stats = check(WHERE_3D, 5, &runs);
    assert_eq!(stats.subgraphs.len(), 1);
}

#[test]
fn near_miss_stays_ordinary_ops_and_is_exact() {
    // Head size 8 is below 16: no mha subgraph; the scale still fuses.
    let src = WHERE_3D.replace("32]", "8]");
    let graph = parse_model(&src, "small.sg").expect("parses");
    let model = Compiler::new(Options::default())
        .and_then(|c| c.compile(graph.clone()))
        .expect("compiles");
    assert_eq!(mha_count(model.fused_graph()), 0);
    assert!(model.stats().subgraphs.iter().all(|s| s.kind != "mha"));
    let mut rng = Rng(11);
    let inputs = vec![
        rng.tensor(&[2, 4, 8]),
        rng.tensor(&[2, 6, 8]),
        rng.tensor(&[2, 6, 8]),
        rng.bools(&[4, 6]),
    ];
    let want = snipjit_interp::run(&graph, &inputs).unwrap();
    let got = model.run(&inputs).unwrap();
    assert_eq!(bits(&got[0]), bits(&want[0]));
}
