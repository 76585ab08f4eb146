//! Attention blocks through the public API: the tokenizer makes one `mha` subgraph,
//! which runs on the MHA kernel (brgemms + online softmax) when the CPU has AVX2 or
//! AVX-512, and the results match the interpreter's run of the untokenized graph
//! within [`tolerance`] (bit for bit where the interpreter runs the body).

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

/// The tolerance of a JIT attention output against the interpreter, per element.
///
/// `out = Σ_j p_j v_j` with `Σ p_j = 1`, so the error relative to `max |v|` is what
/// to bound: the kernel's exp (a few f32 ULPs), the f32 row sums and the online
/// rescales contribute ~1e-6; the scores' f32 dot products of D terms (the
/// interpreter's are f64) differ by at most `D · eps · max|q| · max|k| · |scale|`
/// in the exponent, which changes each p_j by that much relative (bounded by 2x).
pub fn tolerance(d: usize, qmax: f32, kmax: f32, scale: f32, vmax: f32) -> f64 {
    let eps = f64::from(f32::EPSILON);
    f64::from(vmax) * (1e-5 + 2.0 * d as f64 * eps * f64::from(qmax * kmax * scale))
}

fn max_abs(t: &Tensor) -> f32 {
    t.as_f32().unwrap().iter().fold(0.0, |m, x| m.max(x.abs()))
}

/// Compiles `src`, checks its stats hold exactly one mha subgraph of `mha_nodes`
/// ops, compiled when the CPU has a JIT ISA, and that every run matches the
/// interpreter's run of the original graph: within [`tolerance`] (inputs `q`, `k`,
/// `v` at indices 0, 1, 2, head size `d`, scale `scale`; `residual` adds max|q| for
/// a residual add after the block).
fn check(
    src: &str,
    mha_nodes: usize,
    runs: &[Vec<Tensor>],
    (d, scale, residual): (usize, f32, bool),
) -> snipjit::Stats {
    let graph = parse_model(src, "mha.sg").expect("parses");
    let model = Compiler::new(Options::default())
        .and_then(|c| c.compile(graph.clone()))
        .expect("compiles");
    assert_eq!(mha_count(model.fused_graph()), 1);
    let stats = model.stats();
    let mha: Vec<_> = stats.subgraphs.iter().filter(|s| s.kind == "mha").collect();
    assert_eq!(mha.len(), 1, "one mha subgraph: {}", stats.to_json());
    assert_eq!(mha[0].nodes, mha_nodes);
    let jit = model.isa().is_some();
    if !jit {
        eprintln!("SKIPPED: the MHA kernel on this CPU (no AVX2): the interpreter runs it");
    }
    assert_eq!(mha[0].jit, jit);
    assert!(
        stats.to_json().contains(&format!(
            "{{\"kind\":\"mha\",\"nodes\":{mha_nodes},\"jit\":{jit}}}"
        )),
        "{}",
        stats.to_json()
    );
    for inputs in runs {
        let want = snipjit_interp::run(&graph, inputs).expect("interpreter runs");
        let got = model.run(inputs).expect("model runs");
        let mut into = vec![];
        model.run_into(inputs, &mut into).expect("runs into");
        assert_eq!(got.len(), want.len());
        let (qm, km, vm) = (
            max_abs(&inputs[0]),
            max_abs(&inputs[1]),
            max_abs(&inputs[2]),
        );
        let tol = tolerance(d, qm, km, scale, vm) * if residual { 2.0 } else { 1.0 };
        for ((g, i), w) in got.iter().zip(&into).zip(&want) {
            assert_eq!(g.shape, w.shape);
            assert_eq!(bits(g), bits(i), "run and run_into differ");
            if !jit {
                assert_eq!(bits(g), bits(w), "outputs differ for shapes {:?}", g.shape);
                continue;
            }
            for (k, (&x, &y)) in g
                .as_f32()
                .unwrap()
                .iter()
                .zip(w.as_f32().unwrap())
                .enumerate()
            {
                let ok = (x.is_nan() && y.is_nan()) || f64::from((x - y).abs()) <= tol;
                assert!(
                    ok,
                    "shapes {:?}: element {k}: {x} vs {y} (tol {tol})",
                    g.shape
                );
            }
        }
    }
    assert_eq!(model.fallbacks(), 0, "no call fell back to the interpreter");
    if jit {
        assert_eq!(
            model.stats().compilations,
            stats.compilations,
            "one compilation for all shapes"
        );
    }
    stats
}

#[test]
fn bert_block_is_one_mha_subgraph_and_matches() {
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
    let stats = check(BERT, 9, &runs, (64, 0.125, true));
    // The bias Add and the residual Add + Relu are elementwise subgraphs around it.
    let kinds: Vec<&str> = stats.subgraphs.iter().map(|s| s.kind.as_str()).collect();
    assert_eq!(kinds, ["elementwise", "mha", "elementwise"]);
}

#[test]
fn boolean_mask_3d_cross_attention_matches() {
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
    let stats = check(WHERE_3D, 5, &runs, (32, 0.177, false));
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
