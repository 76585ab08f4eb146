//! Tests of the MHA matcher and of [`analyze_mha`], the description the MHA kernel
//! compiles from.
//!
//! The strongest check: for every mha subgraph the filetests make, an independent
//! naive SDPA written only from the [`MhaPattern`] fields (perms, scale, mask, output
//! perm) computes the same values as the interpreter running the body. A field that
//! is wrong or missing shows up there as a numeric difference.

mod common;

use snipjit_ir::{DType, Dim, Graph, Node, Op, SubgraphKind, Tensor, TensorData, text, verify};
use snipjit_tokenize::{
    LeftOutReason, MhaMask, MhaPattern, MhaScale, NotMha, ScaleAt, ScaleOp, TokenizeConfig,
    TokenizeReport, analyze_mha, tokenize_with_report,
};

fn tokenize_text(src: &str) -> (Graph, Graph, TokenizeReport) {
    tokenize_text_with(src, &TokenizeConfig::default())
}

fn tokenize_text_with(src: &str, cfg: &TokenizeConfig) -> (Graph, Graph, TokenizeReport) {
    let g = text::parse(src, "test.sg").expect("test graph parses");
    verify(&g).expect("test graph verifies");
    let (out, report) = tokenize_with_report(&g, cfg).expect("tokenizes");
    verify(&out).expect("tokenized graph verifies");
    for seed in 0..2 {
        common::assert_same_results(&g, &out, seed);
    }
    (g, out, report)
}

fn mha_nodes(g: &Graph) -> Vec<&Node> {
    g.nodes
        .iter()
        .filter(|n| matches!(&n.op, Op::Subgraph(sg) if sg.kind == SubgraphKind::Mha))
        .collect()
}

fn body(n: &Node) -> &Graph {
    match &n.op {
        Op::Subgraph(sg) => &sg.body,
        _ => panic!("{} is not a subgraph", n.name),
    }
}

/// The one mha subgraph of `src` after tokenizing, analyzed.
fn single_pattern(src: &str) -> (Graph, MhaPattern) {
    let (_, out, report) = tokenize_text(src);
    let nodes = mha_nodes(&out);
    assert_eq!(
        nodes.len(),
        1,
        "one mha subgraph expected; report:\n{report}"
    );
    let b = body(nodes[0]).clone();
    let p = analyze_mha(&b).expect("an mha body analyzes");
    (b, p)
}

/// The Softmax near-miss reasons of a report.
fn refusals(report: &TokenizeReport) -> Vec<NotMha> {
    report
        .left_out
        .iter()
        .filter_map(|l| match &l.reason {
            LeftOutReason::Mha(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

fn input_name(body: &Graph, i: usize) -> &str {
    &body.node(body.inputs[i]).name
}

fn dims(ds: &[&str]) -> Vec<Dim> {
    ds.iter()
        .map(|d| match d.parse::<usize>() {
            Ok(n) => Dim::Static(n),
            Err(_) => Dim::sym(d),
        })
        .collect()
}

const BERT: &str = "graph bert(q: f32[B, S, 12, 64], k: f32[B, S, 12, 64], v: f32[B, S, 12, 64], mask: f32[B, 1, 1, S]) {
  qt: f32[B, 12, S, 64] = Transpose(q, perm=[0, 2, 1, 3])
  kt: f32[B, 12, 64, S] = Transpose(k, perm=[0, 2, 3, 1])
  vt: f32[B, 12, S, 64] = Transpose(v, perm=[0, 2, 1, 3])
  scores: f32[B, 12, S, S] = MatMul(qt, kt)
  scale: f32[] = Constant(0.125)
  scaled: f32[B, 12, S, S] = Mul(scores, scale)
  masked: f32[B, 12, S, S] = Add(scaled, mask)
  probs: f32[B, 12, S, S] = Softmax(masked, axis=-1)
  context: f32[B, 12, S, 64] = MatMul(probs, vt)
  out: f32[B, S, 12, 64] = Transpose(context, perm=[0, 2, 1, 3])
  return out
}";

#[test]
fn bert_block_in_canonical_form() {
    let (b, p) = single_pattern(BERT);
    assert_eq!(p.rank, 4);
    assert_eq!(input_name(&b, p.q.input), "q");
    assert_eq!(input_name(&b, p.k.input), "k");
    assert_eq!(input_name(&b, p.v.input), "v");
    // [B, S, H, D] read as [B, H, S, D]: canonical dim 1 (H) is input dim 2.
    assert_eq!(p.q.perm, vec![0, 2, 1, 3]);
    assert_eq!(p.k.perm, vec![0, 2, 1, 3]);
    assert_eq!(p.v.perm, vec![0, 2, 1, 3]);
    assert!(!p.k_pretransposed());
    assert_eq!(p.q.shape.dims(), dims(&["B", "12", "S", "64"]));
    assert_eq!(p.head_size, 64);
    assert_eq!(p.v_head_size, 64);
    assert_eq!(
        p.scale,
        Some(MhaScale {
            op: ScaleOp::Mul,
            value: 0.125,
            at: ScaleAt::Scores
        })
    );
    match &p.mask {
        Some(MhaMask::Additive { input, shape }) => {
            assert_eq!(input_name(&b, *input), "mask");
            assert_eq!(shape.dims(), dims(&["B", "1", "1", "S"]));
        }
        m => panic!("additive mask expected, got {m:?}"),
    }
    assert_eq!(p.scores_shape.dims(), dims(&["B", "12", "S", "S"]));
    assert_eq!(p.output.perm, vec![0, 2, 1, 3]);
    assert_eq!(p.output.shape.dims(), dims(&["B", "S", "12", "64"]));
}

#[test]
fn k_layouts_transpose_flag_and_pretransposed() {
    let flag = "graph g(q: f32[B, 3, S, 16], k: f32[B, 3, L, 16], v: f32[B, 3, L, 32]) {
  scores: f32[B, 3, S, L] = MatMul(q, k, transpose_b=true)
  probs: f32[B, 3, S, L] = Softmax(scores, axis=3)
  out: f32[B, 3, S, 32] = MatMul(probs, v)
  return out
}";
    let (_, p) = single_pattern(flag);
    assert_eq!(p.k.perm, vec![0, 1, 2, 3]);
    assert!(!p.k_pretransposed());
    assert_eq!((p.head_size, p.v_head_size), (16, 32));
    assert_eq!(p.scale, None);
    assert_eq!(p.mask, None);
    assert_eq!(p.output.perm, vec![0, 1, 2, 3]);

    let pre = "graph g(q: f32[B, 2, S, 16], kt: f32[B, 2, 16, L], v: f32[B, 2, L, 16]) {
  scores: f32[B, 2, S, L] = MatMul(q, kt)
  probs: f32[B, 2, S, L] = Softmax(scores, axis=-1)
  out: f32[B, 2, S, 16] = MatMul(probs, v)
  return out
}";
    let (b, p) = single_pattern(pre);
    assert_eq!(input_name(&b, p.k.input), "kt");
    assert_eq!(p.k.perm, vec![0, 1, 3, 2]);
    assert!(p.k_pretransposed());
    assert_eq!(p.k.shape.dims(), dims(&["B", "2", "L", "16"]));

    // Transpose + transpose_b: [B, L, H, D] -> [B, H, L, D], flag transposes it.
    let both = "graph g(q: f32[B, 2, S, 16], k: f32[B, L, 2, 16], v: f32[B, 2, L, 16]) {
  kt: f32[B, 2, L, 16] = Transpose(k, perm=[0, 2, 1, 3])
  scores: f32[B, 2, S, L] = MatMul(q, kt, transpose_b=true)
  probs: f32[B, 2, S, L] = Softmax(scores, axis=-1)
  out: f32[B, 2, S, 16] = MatMul(probs, v)
  return out
}";
    let (_, p) = single_pattern(both);
    assert_eq!(p.k.perm, vec![0, 2, 1, 3]);
    assert!(!p.k_pretransposed());
}

#[test]
fn scale_on_q_and_div_scale() {
    let on_q = "graph g(q: f32[N, S, 32], k: f32[N, S, 32], v: f32[N, S, 32]) {
  c: f32[1, 1, 1] = Constant([0.5])
  qs: f32[N, S, 32] = Mul(c, q)
  scores: f32[N, S, S] = MatMul(qs, k, transpose_b=true)
  probs: f32[N, S, S] = Softmax(scores, axis=-1)
  out: f32[N, S, 32] = MatMul(probs, v)
  return out
}";
    let (b, p) = single_pattern(on_q);
    assert_eq!(input_name(&b, p.q.input), "q");
    assert_eq!(
        p.scale,
        Some(MhaScale {
            op: ScaleOp::Mul,
            value: 0.5,
            at: ScaleAt::Q
        })
    );

    let div = "graph g(q: f32[N, S, 32], k: f32[N, S, 32], v: f32[N, S, 32]) {
  scores: f32[N, S, S] = MatMul(q, k, transpose_b=true)
  c: f32[] = Constant(5.656854)
  scaled: f32[N, S, S] = Div(scores, c)
  probs: f32[N, S, S] = Softmax(scaled, axis=-1)
  out: f32[N, S, 32] = MatMul(probs, v)
  return out
}";
    let (_, p) = single_pattern(div);
    let s = p.scale.expect("a scale");
    assert_eq!(
        (s.op, s.at, s.value),
        (ScaleOp::Div, ScaleAt::Scores, 5.656854)
    );
    assert_eq!(s.apply(11.0), 11.0f32 / 5.656854);

    // A scale on the scores already: a Mul on Q stays outside, as elementwise.
    let two = "graph g(q: f32[N, S, 32], k: f32[N, S, 32], v: f32[N, S, 32]) {
  c: f32[] = Constant(0.5)
  qs: f32[N, S, 32] = Mul(q, c)
  scores: f32[N, S, S] = MatMul(qs, k, transpose_b=true)
  scaled: f32[N, S, S] = Mul(scores, c)
  probs: f32[N, S, S] = Softmax(scaled, axis=-1)
  out: f32[N, S, 32] = MatMul(probs, v)
  return out
}";
    let (b, p) = single_pattern(two);
    assert_eq!(input_name(&b, p.q.input), "qs");
    assert_eq!(p.scale.map(|s| s.at), Some(ScaleAt::Scores));
}

#[test]
fn boolean_masks_both_ways() {
    let keep = "graph g(q: f32[N, S, 16], k: f32[N, S, 16], v: f32[N, S, 16], m: bool[S, S]) {
  scores: f32[N, S, S] = MatMul(q, k, transpose_b=true)
  fill: f32[] = Constant(-1000000000)
  masked: f32[N, S, S] = Select(m, scores, fill)
  probs: f32[N, S, S] = Softmax(masked, axis=-1)
  out: f32[N, S, 16] = MatMul(probs, v)
  return out
}";
    let (b, p) = single_pattern(keep);
    match p.mask {
        Some(MhaMask::Boolean {
            input,
            ref shape,
            fill,
            keep_when,
        }) => {
            assert_eq!(input_name(&b, input), "m");
            assert_eq!(shape.dims(), dims(&["S", "S"]));
            assert_eq!(fill, -1e9);
            assert!(keep_when);
        }
        ref m => panic!("boolean mask expected, got {m:?}"),
    }
    let inverted = keep.replace("Select(m, scores, fill)", "Select(m, fill, scores)");
    let (_, p) = single_pattern(&inverted);
    assert!(matches!(
        p.mask,
        Some(MhaMask::Boolean {
            keep_when: false,
            ..
        })
    ));
}

#[test]
fn unsupported_transposes_stay_outside() {
    // Q's Transpose would leave S innermost in the input: it stays a plain node and
    // its output enters the body as Q. The output Transpose to [B, H, D, S] would
    // move D: it stays outside too.
    let src = "graph g(x: f32[B, 2, 16, S], k: f32[B, 2, S, 16], v: f32[B, 2, S, 16]) {
  q: f32[B, 2, S, 16] = Transpose(x, perm=[0, 1, 3, 2])
  scores: f32[B, 2, S, S] = MatMul(q, k, transpose_b=true)
  probs: f32[B, 2, S, S] = Softmax(scores, axis=-1)
  o: f32[B, 2, S, 16] = MatMul(probs, v)
  out: f32[B, 2, 16, S] = Transpose(o, perm=[0, 1, 3, 2])
  return out
}";
    let (_, out, _) = tokenize_text(src);
    let nodes = mha_nodes(&out);
    assert_eq!(nodes.len(), 1);
    let b = body(nodes[0]);
    let p = analyze_mha(b).unwrap();
    assert_eq!(input_name(b, p.q.input), "q");
    assert_eq!(p.q.perm, vec![0, 1, 2, 3]);
    assert_eq!(nodes[0].outputs[0].name, "o");
    let transposes = out
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Transpose { .. }))
        .count();
    assert_eq!(transposes, 2, "both Transposes stay in the outer graph");
}

#[test]
fn mask_dims_that_broadcast_at_run_time() {
    // A dynamic mask dim against a static scores dim can only be 1 or that size at
    // run time (else the Add fails), so the mask never grows the scores.
    let src = "graph g(q: f32[N, 4, 16], k: f32[N, 4, 16], v: f32[N, 4, 16], m: f32[?, 4]) {
  scores: f32[N, 4, 4] = MatMul(q, k, transpose_b=true)
  pre: f32[N, 4, 4] = Add(scores, m)
  probs: f32[N, 4, 4] = Softmax(pre, axis=-1)
  out: f32[N, 4, 16] = MatMul(probs, v)
  return out
}";
    // (Random inputs would give `?` a size of 3: only the structure is checked.)
    let g = text::parse(src, "test.sg").unwrap();
    let (out, _) = tokenize_with_report(&g, &TokenizeConfig::default()).unwrap();
    let nodes = mha_nodes(&out);
    assert_eq!(nodes.len(), 1);
    let b = body(nodes[0]);
    let p = analyze_mha(b).unwrap();
    let m = p.mask.expect("a mask");
    assert_eq!(input_name(b, m.input()), "m");
    assert!(matches!(m, MhaMask::Additive { .. }));
}

#[test]
fn shared_q_and_k() {
    // Self-attention reading one tensor as Q, K and V: one body input serves all.
    let src = "graph g(x: f32[N, S, 16]) {
  scores: f32[N, S, S] = MatMul(x, x, transpose_b=true)
  probs: f32[N, S, S] = Softmax(scores, axis=-1)
  out: f32[N, S, 16] = MatMul(probs, x)
  return out
}";
    let (b, p) = single_pattern(src);
    assert_eq!(b.inputs.len(), 1);
    assert_eq!((p.q.input, p.k.input, p.v.input), (0, 0, 0));
}

/// One refusal for `src`, and the block stays ordinary ops.
fn refused(src: &str) -> NotMha {
    let (_, out, report) = tokenize_text(src);
    assert!(mha_nodes(&out).is_empty(), "no mha subgraph expected");
    let r = refusals(&report);
    assert_eq!(r.len(), 1, "one refusal expected; report:\n{report}");
    r[0].clone()
}

/// A 3D block `[N, S, 16]` whose score chain is `chain` (from `scores` to `pre`).
fn block_with_chain(extra_inputs: &str, chain: &str) -> String {
    format!(
        "graph g(q: f32[N, S, 16], k: f32[N, S, 16], v: f32[N, S, 16]{extra_inputs}) {{
  scores: f32[N, S, S] = MatMul(q, k, transpose_b=true)
{chain}
  probs: f32[N, S, S] = Softmax(pre, axis=-1)
  out: f32[N, S, 16] = MatMul(probs, v)
  return out
}}"
    )
}

#[test]
fn near_misses_name_the_rule() {
    let c = "  c: f32[] = Constant(0.25)\n";
    let cases: Vec<(String, NotMha)> = vec![
        (
            block_with_chain(
                ", m: f32[1, S]",
                &format!("{c}  a: f32[N, S, S] = Add(scores, m)\n  pre: f32[N, S, S] = Mul(a, c)"),
            ),
            NotMha::ScaleAfterMask,
        ),
        (
            block_with_chain(
                "",
                &format!("{c}  a: f32[N, S, S] = Mul(scores, c)\n  pre: f32[N, S, S] = Div(a, c)"),
            ),
            NotMha::SeveralScales,
        ),
        (
            block_with_chain(
                ", m: f32[1, S], m2: f32[S, S]",
                "  a: f32[N, S, S] = Add(scores, m)\n  pre: f32[N, S, S] = Add(a, m2)",
            ),
            NotMha::SeveralMasks,
        ),
        (
            block_with_chain(", m: f32[1, S]", "  pre: f32[N, S, S] = Sub(scores, m)"),
            NotMha::ScoreOp("Sub".into()),
        ),
        (
            block_with_chain(", t: f32[N, S, S]", "  pre: f32[N, S, S] = Mul(scores, t)"),
            NotMha::ScaleNotScalarConstant,
        ),
        (
            block_with_chain("", &format!("{c}  pre: f32[N, S, S] = Div(c, scores)")),
            NotMha::ScaleNotScalarConstant,
        ),
        (
            block_with_chain("", &format!("{c}  pre: f32[N, S, S] = Add(scores, c)")),
            NotMha::MaskScalar,
        ),
        (
            block_with_chain(
                ", m: bool[S, S], f: f32[N, S, S]",
                "  pre: f32[N, S, S] = Select(m, scores, f)",
            ),
            NotMha::SelectFillNotScalarConstant,
        ),
        (
            // The scaled scores are also returned.
            block_with_chain("", &format!("{c}  pre: f32[N, S, S] = Mul(scores, c)"))
                .replace("return out", "return out, pre"),
            NotMha::UsedOutside("pre".into()),
        ),
    ];
    for (src, want) in cases {
        assert_eq!(refused(&src), want, "for\n{src}");
    }
}

#[test]
fn near_misses_layout_rank_and_head_size() {
    let probs_t = "graph g(q: f32[N, S, 16], k: f32[N, S, 16], v: f32[N, S, 16]) {
  scores: f32[N, S, S] = MatMul(q, k, transpose_b=true)
  probs: f32[N, S, S] = Softmax(scores, axis=-1)
  out: f32[N, S, 16] = MatMul(probs, v, transpose_a=true)
  return out
}";
    assert_eq!(refused(probs_t), NotMha::ProbsTransposed);
    let q_t = "graph g(q: f32[N, 16, S], k: f32[N, S, 16], v: f32[N, S, 16]) {
  scores: f32[N, S, S] = MatMul(q, k, transpose_a=true, transpose_b=true)
  probs: f32[N, S, S] = Softmax(scores, axis=-1)
  out: f32[N, S, 16] = MatMul(probs, v)
  return out
}";
    assert_eq!(
        refused(q_t),
        NotMha::Layout {
            operand: "Q",
            perm: vec![0, 2, 1]
        }
    );
    let v_t = "graph g(q: f32[N, S, 16], k: f32[N, S, 16], v: f32[N, 16, S]) {
  scores: f32[N, S, S] = MatMul(q, k, transpose_b=true)
  probs: f32[N, S, S] = Softmax(scores, axis=-1)
  out: f32[N, S, 16] = MatMul(probs, v, transpose_b=true)
  return out
}";
    assert_eq!(
        refused(v_t),
        NotMha::Layout {
            operand: "V",
            perm: vec![0, 2, 1]
        }
    );
    let rank2 = "graph g(q: f32[S, 16], k: f32[S, 16], v: f32[S, 16]) {
  scores: f32[S, S] = MatMul(q, k, transpose_b=true)
  probs: f32[S, S] = Softmax(scores, axis=-1)
  out: f32[S, 16] = MatMul(probs, v)
  return out
}";
    assert_eq!(refused(rank2), NotMha::Rank(2));
    let v_rank = "graph g(q: f32[N, S, 16], k: f32[N, S, 16], v: f32[S, 16]) {
  scores: f32[N, S, S] = MatMul(q, k, transpose_b=true)
  probs: f32[N, S, S] = Softmax(scores, axis=-1)
  out: f32[N, S, 16] = MatMul(probs, v)
  return out
}";
    assert_eq!(refused(v_rank), NotMha::RankMismatch);
    let dyn_d = "graph g(q: f32[N, S, D], k: f32[N, S, D], v: f32[N, S, 16]) {
  scores: f32[N, S, S] = MatMul(q, k, transpose_b=true)
  probs: f32[N, S, S] = Softmax(scores, axis=-1)
  out: f32[N, S, 16] = MatMul(probs, v)
  return out
}";
    assert_eq!(refused(dyn_d), NotMha::DynamicHeadSize);
    let dv = "graph g(q: f32[N, S, 16], k: f32[N, S, 16], v: f32[N, S, 257]) {
  scores: f32[N, S, S] = MatMul(q, k, transpose_b=true)
  probs: f32[N, S, S] = Softmax(scores, axis=-1)
  out: f32[N, S, 257] = MatMul(probs, v)
  return out
}";
    assert_eq!(refused(dv), NotMha::HeadSize(257));
}

#[test]
fn softmax_outside_attention_is_not_reported() {
    let src = "graph g(x: f32[N, 16], w: f32[16, 10]) {
  y: f32[N, 10] = MatMul(x, w)
  p: f32[N, 10] = Softmax(y, axis=-1)
  return p
}";
    let (_, out, report) = tokenize_text(src);
    assert!(mha_nodes(&out).is_empty());
    assert!(refusals(&report).is_empty());
}

#[test]
fn switch_off_leaves_attention_to_the_elementwise_pass() {
    let cfg = TokenizeConfig {
        mha: false,
        ..TokenizeConfig::default()
    };
    let (_, out, report) = tokenize_text_with(BERT, &cfg);
    assert!(mha_nodes(&out).is_empty());
    assert!(refusals(&report).is_empty());
    assert_eq!(report.subgraphs.len(), 1);
    assert_eq!(report.subgraphs[0].kind, SubgraphKind::Elementwise);
}

#[test]
fn analyze_refuses_bodies_that_are_not_one_block() {
    let (b, _) = single_pattern(BERT);
    assert!(analyze_mha(&b).is_ok());

    // An extra op in the body.
    let mut extra = b.clone();
    let out = extra.outputs[0];
    let v = extra.node(out).inputs[0];
    let r = extra
        .add_op("r", Op::Unary(snipjit_ir::UnaryOp::Relu), &[v])
        .unwrap();
    extra.node_mut(out).inputs[0] = r;
    assert!(matches!(analyze_mha(&extra), Err(NotMha::Body(_))));

    // Two results.
    let mut two = b.clone();
    let probs = two.find_value("probs").unwrap();
    two.add_output("p", probs);
    assert!(matches!(
        analyze_mha(&two),
        Err(NotMha::UsedOutside(_) | NotMha::Body(_))
    ));

    // No Softmax at all.
    let plain = text::parse(
        "graph g(a: f32[2, 16, 16], b: f32[2, 16, 16]) {\n  c: f32[2, 16, 16] = MatMul(a, b)\n  return c\n}",
        "t.sg",
    )
    .unwrap();
    assert!(matches!(analyze_mha(&plain), Err(NotMha::Body(_))));
}

// --- an independent SDPA from the pattern alone -----------------------------------

/// Row-major strides of `shape`.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Reads a tensor as the canonical view `transpose(x, perm)` with size-1 dims
/// broadcast, right-aligned to a canonical index of rank `perm.len()`.
struct View {
    data: Vec<f64>,
    shape: Vec<usize>,
    strides: Vec<usize>,
}

impl View {
    fn new(t: &Tensor, perm: &[usize]) -> View {
        let st = strides(&t.shape);
        View {
            data: t.to_f64_vec(),
            shape: perm.iter().map(|&p| t.shape[p]).collect(),
            strides: perm.iter().map(|&p| st[p]).collect(),
        }
    }

    /// Element at canonical index `idx` (aligned to the right, size-1 dims broadcast).
    fn at(&self, idx: &[usize]) -> f64 {
        let off = idx.len() - self.shape.len();
        let mut o = 0;
        for (i, (&n, &s)) in self.shape.iter().zip(&self.strides).enumerate() {
            o += if n == 1 { 0 } else { idx[off + i] * s };
        }
        self.data[o]
    }
}

fn to_f32(t: &Tensor) -> Vec<f32> {
    t.to_f64_vec().into_iter().map(|x| x as f32).collect()
}

/// softmax(scale/mask(q~ k~^T)) v~, transposed by the output perm: from `p` only.
fn sdpa_from_pattern(p: &MhaPattern, inputs: &[Tensor]) -> (Vec<usize>, Vec<f32>) {
    let r = p.rank;
    let mut qt = inputs[p.q.input].clone();
    if let Some(s) = p.scale.filter(|s| s.at == ScaleAt::Q) {
        let v: Vec<f32> = to_f32(&qt).into_iter().map(|x| s.apply(x)).collect();
        qt = Tensor::from_f32(&qt.shape, v).unwrap();
    }
    let q = View::new(&qt, &p.q.perm);
    let k = View::new(&inputs[p.k.input], &p.k.perm);
    let v = View::new(&inputs[p.v.input], &p.v.perm);
    let batch: Vec<usize> = (0..r - 2)
        .map(|i| q.shape[i].max(k.shape[i]).max(v.shape[i]))
        .collect();
    let (s_len, l_len, d, dv) = (
        q.shape[r - 2],
        k.shape[r - 2],
        q.shape[r - 1],
        v.shape[r - 1],
    );
    assert_eq!((d, dv), (p.head_size, p.v_head_size));
    let mask = p.mask.as_ref().map(|m| {
        let t = &inputs[m.input()];
        let ident: Vec<usize> = (0..t.shape.len()).collect();
        let vals = match &t.data {
            TensorData::Bool(b) => b.iter().map(|&x| f64::from(u8::from(x))).collect(),
            _ => t.to_f64_vec(),
        };
        let st = strides(&t.shape);
        View {
            data: vals,
            shape: ident.iter().map(|&i| t.shape[i]).collect(),
            strides: st,
        }
    });
    let mut o_shape = batch.clone();
    o_shape.extend([s_len, dv]);
    let nb: usize = batch.iter().product();
    let mut o = vec![0f32; nb * s_len * dv];
    let mut idx = vec![0usize; r];
    for bi in 0..nb {
        let mut rem = bi;
        for i in (0..r - 2).rev() {
            idx[i] = rem % batch[i];
            rem /= batch[i];
        }
        for s in 0..s_len {
            let mut row = vec![0f32; l_len];
            for (l, slot) in row.iter_mut().enumerate() {
                let mut acc = 0f64;
                for dd in 0..d {
                    idx[r - 2] = s;
                    idx[r - 1] = dd;
                    let qv = q.at(&idx);
                    idx[r - 2] = l;
                    acc += qv * k.at(&idx);
                }
                let mut x = acc as f32;
                if let Some(sc) = p.scale.filter(|s| s.at == ScaleAt::Scores) {
                    x = sc.apply(x);
                }
                idx[r - 2] = s;
                idx[r - 1] = l;
                match (&p.mask, &mask) {
                    (Some(MhaMask::Additive { .. }), Some(m)) => x += m.at(&idx) as f32,
                    (
                        Some(MhaMask::Boolean {
                            fill, keep_when, ..
                        }),
                        Some(m),
                    ) if (m.at(&idx) != 0.0) != *keep_when => x = *fill,
                    _ => {}
                }
                *slot = x;
            }
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f64> = row.iter().map(|&x| f64::from(x - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            for j in 0..dv {
                let mut acc = 0f64;
                for (l, &el) in e.iter().enumerate() {
                    idx[r - 2] = l;
                    idx[r - 1] = j;
                    acc += el / sum * v.at(&idx);
                }
                o[(bi * s_len + s) * dv + j] = acc as f32;
            }
        }
    }
    // out = transpose(o, output.perm)
    let out_shape: Vec<usize> = p.output.perm.iter().map(|&i| o_shape[i]).collect();
    let o_st = strides(&o_shape);
    let n: usize = out_shape.iter().product();
    let out_st = strides(&out_shape);
    let out = (0..n)
        .map(|flat| {
            let mut off = 0;
            for (i, (&st, &pi)) in out_st.iter().zip(&p.output.perm).enumerate() {
                let c = flat / st % out_shape[i];
                off += c * o_st[pi];
            }
            o[off]
        })
        .collect();
    (out_shape, out)
}

#[test]
fn pattern_alone_computes_what_the_body_computes() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/filetests");
    let mut checked = 0;
    let mut sources: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("mha_"))
        })
        .map(|p| {
            let src = std::fs::read_to_string(&p).unwrap();
            let input = src.split("\n# expect:").next().unwrap().to_string();
            (p.display().to_string(), input)
        })
        .collect();
    sources.push(("BERT".into(), BERT.into()));
    sources.sort();
    for (file, src) in &sources {
        let g = text::parse(src, file).unwrap();
        let (out, _) = tokenize_with_report(&g, &TokenizeConfig::default()).unwrap();
        for node in mha_nodes(&out) {
            let b = body(node);
            let p = analyze_mha(b).unwrap_or_else(|e| panic!("{file}: {e}"));
            for seed in 0..3 {
                let mut rng = common::Rng::new(seed);
                let inputs = common::random_inputs(b, &mut rng);
                let want = snipjit_interp::run(b, &inputs).unwrap();
                let (shape, got) = sdpa_from_pattern(&p, &inputs);
                assert_eq!(want[0].shape, shape, "{file}: output shape");
                assert_eq!(want[0].dtype(), DType::F32);
                let want = to_f32(&want[0]);
                for (i, (w, g)) in want.iter().zip(&got).enumerate() {
                    let ok = (w.is_nan() && g.is_nan()) || (w - g).abs() <= 2e-3 + 1e-3 * w.abs();
                    assert!(
                        ok,
                        "{file} {}: element {i}: body {w}, pattern {g}",
                        node.name
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 30, "only {checked} bodies checked");
}

#[test]
fn config_limits_apply_to_blocks() {
    let refusal = |cfg: TokenizeConfig| {
        let (_, out, report) = tokenize_text_with(BERT, &cfg);
        assert!(mha_nodes(&out).is_empty());
        refusals(&report)
    };
    // q, k, v, mask and the output: 5 pointers.
    assert_eq!(
        refusal(TokenizeConfig {
            max_data_pointers: 4,
            allow_pointer_spill: false,
            ..TokenizeConfig::default()
        }),
        vec![NotMha::OverPointerBudget {
            pointers: 5,
            budget: 4
        }]
    );
    assert_eq!(
        refusal(TokenizeConfig {
            max_ops: 8,
            ..TokenizeConfig::default()
        }),
        vec![NotMha::TooManyOps { ops: 9, max_ops: 8 }]
    );
    assert_eq!(
        refusal(TokenizeConfig {
            min_ops: 10,
            ..TokenizeConfig::default()
        }),
        vec![NotMha::BelowMinOps {
            ops: 9,
            min_ops: 10
        }]
    );
    // With spilling on, the budget never splits a block.
    let (_, out, _) = tokenize_text_with(
        BERT,
        &TokenizeConfig {
            max_data_pointers: 2,
            ..TokenizeConfig::default()
        },
    );
    assert_eq!(mha_nodes(&out).len(), 1);
}

// --- random attention blocks -----------------------------------------------------

/// What the generator built, to compare with what `analyze_mha` reads back.
#[derive(Debug)]
struct Built {
    q_perm: Vec<usize>,
    k_perm: Vec<usize>,
    v_perm: Vec<usize>,
    out_perm: Vec<usize>,
    head_size: usize,
    v_head_size: usize,
    scale: Option<MhaScale>,
    /// `None`: no mask; `Some(None)`: additive; `Some(Some(keep_when))`: boolean.
    mask: Option<Option<bool>>,
}

/// A random attention block over static sizes: layouts, K^T by flag, Transpose or
/// pre-transposed, batch broadcasting of K and V, scale on Q (before or after its
/// Transpose) or on the scores, additive or boolean masks of random broadcast shape,
/// Identities, and an output Transpose.
fn random_block(rng: &mut common::Rng) -> (Graph, Built) {
    use snipjit_ir::{BinaryOp, Shape, TensorType};
    let r = if rng.chance(50) { 3 } else { 4 };
    let pick = |rng: &mut common::Rng, xs: &[usize]| *rng.pick(xs);
    let (b, h) = (1 + rng.below(2), 1 + rng.below(3));
    let (s, l) = (1 + rng.below(5), 1 + rng.below(6));
    let d = pick(rng, &[16, 24, 32, 64]);
    let dv = pick(rng, &[16, 32, 48]);
    // K and V may share one batch slice across B (or N).
    let kb = if rng.chance(25) { 1 } else { b };
    let mut g = Graph::new("rand");
    let f32t = |dims: &[usize]| TensorType::new(DType::F32, Shape::fixed(dims));
    // Canonical batch dims.
    // For 3D one dim N = b * h, or 1 when K and V are shared.
    let batch = |bb: usize| match r {
        3 if bb == b => vec![b * h],
        3 => vec![1],
        _ => vec![bb, h],
    };
    let with = |bb: usize, tail: &[usize]| {
        let mut v = batch(bb);
        v.extend_from_slice(tail);
        v
    };
    let ident: Vec<usize> = (0..r).collect();
    let c_val = pick(rng, &[1, 2, 3]) as f32 * 0.125;
    let scale_where = rng.below(4); // 0 none, 1 scores, 2 Q before Transpose, 3 Q after
    let scale_op = if rng.chance(50) {
        BinaryOp::Mul
    } else {
        BinaryOp::Div
    };
    let c = g
        .add_op("c", Op::Constant(Tensor::scalar_f32(c_val)), &[])
        .unwrap();
    let mut scale = None;
    let mk_scale = |at| MhaScale {
        op: if scale_op == BinaryOp::Mul {
            ScaleOp::Mul
        } else {
            ScaleOp::Div
        },
        value: c_val,
        at,
    };

    // Q
    let q_bshd = r == 4 && rng.chance(50);
    let (mut q, q_perm) = if q_bshd {
        (g.add_input("q", f32t(&[b, s, h, d])), vec![0, 2, 1, 3])
    } else {
        (g.add_input("q", f32t(&with(b, &[s, d]))), ident.clone())
    };
    if scale_where == 2 {
        q = g.add_op("qs", Op::Binary(scale_op), &[q, c]).unwrap();
        scale = Some(mk_scale(ScaleAt::Q));
    }
    if q_bshd {
        q = g
            .add_op(
                "qt",
                Op::Transpose {
                    perm: vec![0, 2, 1, 3],
                },
                &[q],
            )
            .unwrap();
    }
    if scale_where == 3 {
        q = g.add_op("qs2", Op::Binary(scale_op), &[q, c]).unwrap();
        scale = Some(mk_scale(ScaleAt::Q));
    }

    // K: a) flag, b) Transpose of the last two, c) [B, L, H, D] to [B, H, D, L],
    // d) [B, L, H, D] to [B, H, L, D] plus flag, e) pre-transposed.
    let k_kind = if r == 3 {
        pick(rng, &[0, 1, 4])
    } else {
        rng.below(5)
    };
    let swap_last = |p: &mut Vec<usize>| p.swap(r - 1, r - 2);
    let (k, flag, k_perm) = match k_kind {
        0 => (
            g.add_input("k", f32t(&with(kb, &[l, d]))),
            true,
            ident.clone(),
        ),
        1 => {
            let k = g.add_input("k", f32t(&with(kb, &[l, d])));
            let mut p = ident.clone();
            swap_last(&mut p);
            let kt = g.add_op("kt", Op::Transpose { perm: p }, &[k]).unwrap();
            (kt, false, ident.clone())
        }
        2 => {
            let k = g.add_input("k", f32t(&[kb, l, h, d]));
            let kt = g
                .add_op(
                    "kt",
                    Op::Transpose {
                        perm: vec![0, 2, 3, 1],
                    },
                    &[k],
                )
                .unwrap();
            (kt, false, vec![0, 2, 1, 3])
        }
        3 => {
            let k = g.add_input("k", f32t(&[kb, l, h, d]));
            let kt = g
                .add_op(
                    "kt",
                    Op::Transpose {
                        perm: vec![0, 2, 1, 3],
                    },
                    &[k],
                )
                .unwrap();
            (kt, true, vec![0, 2, 1, 3])
        }
        _ => {
            let mut p = ident.clone();
            swap_last(&mut p);
            (g.add_input("k", f32t(&with(kb, &[d, l]))), false, p)
        }
    };

    // V
    let v_bshd = r == 4 && rng.chance(50);
    let (v, v_perm) = if v_bshd {
        let v = g.add_input("v", f32t(&[kb, l, h, dv]));
        let vt = g
            .add_op(
                "vt",
                Op::Transpose {
                    perm: vec![0, 2, 1, 3],
                },
                &[v],
            )
            .unwrap();
        (vt, vec![0, 2, 1, 3])
    } else {
        (g.add_input("v", f32t(&with(kb, &[l, dv]))), ident.clone())
    };

    let mut x = g
        .add_op(
            "scores",
            Op::MatMul {
                transpose_a: false,
                transpose_b: flag,
            },
            &[q, k],
        )
        .unwrap();
    if rng.chance(20) {
        x = g.add_op("same", Op::Identity, &[x]).unwrap();
    }
    if scale_where == 1 {
        let ins = if scale_op == BinaryOp::Mul && rng.chance(50) {
            [c, x]
        } else {
            [x, c]
        };
        x = g.add_op("scaled", Op::Binary(scale_op), &ins).unwrap();
        scale = Some(mk_scale(ScaleAt::Scores));
    }
    let scores_dims = with(b, &[s, l]);
    let mask_rank = 1 + rng.below(r);
    let mask_dims: Vec<usize> = scores_dims[r - mask_rank..]
        .iter()
        .map(|&n| if rng.chance(40) { 1 } else { n })
        .collect();
    let mask = match rng.below(3) {
        0 => None,
        1 => {
            let m = g.add_input("mask", f32t(&mask_dims));
            let ins = if rng.chance(50) { [x, m] } else { [m, x] };
            x = g.add_op("masked", Op::Binary(BinaryOp::Add), &ins).unwrap();
            Some(None)
        }
        _ => {
            let m = g.add_input(
                "keep",
                TensorType::new(DType::Bool, Shape::fixed(&mask_dims)),
            );
            let fill = g
                .add_op("fill", Op::Constant(Tensor::scalar_f32(-1e9)), &[])
                .unwrap();
            let keep_when = rng.chance(50);
            let ins = if keep_when {
                [m, x, fill]
            } else {
                [m, fill, x]
            };
            x = g.add_op("masked", Op::Select, &ins).unwrap();
            Some(Some(keep_when))
        }
    };
    let axis = if rng.chance(50) { -1 } else { r as i64 - 1 };
    let p = g.add_op("probs", Op::Softmax { axis }, &[x]).unwrap();
    let mut o = g
        .add_op(
            "context",
            Op::MatMul {
                transpose_a: false,
                transpose_b: false,
            },
            &[p, v],
        )
        .unwrap();
    let out_perm = if r == 4 && rng.chance(50) {
        o = g
            .add_op(
                "ot",
                Op::Transpose {
                    perm: vec![0, 2, 1, 3],
                },
                &[o],
            )
            .unwrap();
        vec![0, 2, 1, 3]
    } else {
        ident.clone()
    };
    if rng.chance(20) {
        o = g.add_op("out", Op::Identity, &[o]).unwrap();
    }
    g.add_output("y", o);
    let built = Built {
        q_perm,
        k_perm,
        v_perm,
        out_perm,
        head_size: d,
        v_head_size: dv,
        scale,
        mask,
    };
    (g, built)
}

#[test]
fn random_blocks_fuse_and_analyze_to_what_was_built() {
    let mut rng = common::Rng::new(0x5eed);
    for case in 0..200 {
        let (g, want) = random_block(&mut rng);
        verify(&g).unwrap_or_else(|e| panic!("case {case}: generator made a bad graph: {e}"));
        let (out, report) = tokenize_with_report(&g, &TokenizeConfig::default()).unwrap();
        let what = format!("case {case}: {want:?}\n{}", text::print(&g));
        assert!(refusals(&report).is_empty(), "{what}\n{report}");
        let nodes = mha_nodes(&out);
        assert_eq!(nodes.len(), 1, "{what}\n{report}");
        // Everything but the Parameters and the Result is inside the block (an
        // unused scale constant aside).
        assert_eq!(
            out.nodes
                .iter()
                .filter(|n| !matches!(n.op, Op::Constant(_)))
                .count(),
            g.inputs.len() + 2,
            "{what}\n{}",
            text::print(&out)
        );
        let b = body(nodes[0]);
        let p = analyze_mha(b).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(p.q.perm, want.q_perm, "{what}");
        assert_eq!(p.k.perm, want.k_perm, "{what}");
        assert_eq!(p.v.perm, want.v_perm, "{what}");
        assert_eq!(p.output.perm, want.out_perm, "{what}");
        assert_eq!(
            (p.head_size, p.v_head_size),
            (want.head_size, want.v_head_size)
        );
        assert_eq!(p.scale, want.scale, "{what}");
        let mask = p.mask.as_ref().map(|m| match m {
            MhaMask::Additive { .. } => None,
            MhaMask::Boolean { keep_when, .. } => Some(*keep_when),
        });
        assert_eq!(mask, want.mask, "{what}");
        assert_eq!(input_name(b, p.q.input), "q");
        assert_eq!(input_name(b, p.k.input), "k");
        assert_eq!(input_name(b, p.v.input), "v");

        common::assert_same_results(&g, &out, case);
        let inputs = common::random_inputs(b, &mut rng);
        let want_out = snipjit_interp::run(b, &inputs).unwrap();
        let (shape, got) = sdpa_from_pattern(&p, &inputs);
        assert_eq!(want_out[0].shape, shape, "{what}");
        for (i, (w, g)) in to_f32(&want_out[0]).iter().zip(&got).enumerate() {
            let ok = (w - g).abs() <= 2e-3 + 1e-3 * w.abs();
            assert!(ok, "{what}: element {i}: body {w}, pattern {g}");
        }
    }
}
