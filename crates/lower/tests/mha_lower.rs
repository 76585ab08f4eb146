//! The MHA lowering on whole attention bodies: the plan's numbers against the ones the
//! runtime's `MhaKernel` (crates/runtime/src/mha.rs) computes today, the scratch
//! layout's invariants for many shapes, the loop moves against dense strides, and the
//! errors of passes run out of order and of a verifier given a broken IR.

use snipjit_lower::LowerError;
use snipjit_lower::mha::build::build;
use snipjit_lower::mha::ir::{MhaIr, Op, ValueKind};
use snipjit_lower::mha::pipeline::{MHA_PASSES, mha_pass_by_name};
use snipjit_lower::mha::verify::verify;
use snipjit_lower::mha::{DimValues, MhaPlan, MhaTarget, lower_mha, lower_mha_body};
use snipjit_tokenize::mha::analyze_mha;

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

const HEADS: &str = "graph heads(q: f32[B, 2, S, 80], k: f32[B, 2, L, 80], v: f32[B, 2, L, 48], keep: bool[1, 1, S, L]) {
  kt: f32[B, 2, 80, L] = Transpose(k, perm=[0, 1, 3, 2])
  scores: f32[B, 2, S, L] = MatMul(q, kt)
  neg: f32[] = Constant(-inf)
  masked: f32[B, 2, S, L] = Select(keep, scores, neg)
  probs: f32[B, 2, S, L] = Softmax(masked, axis=-1)
  out: f32[B, 2, S, 48] = MatMul(probs, v)
  return out
}";

const PRE: &str = "graph pre(q: f32[N, S, 32], kt: f32[N, 32, L], v: f32[N, L, 32]) {
  scores: f32[N, S, L] = MatMul(q, kt)
  probs: f32[N, S, L] = Softmax(scores, axis=-1)
  out: f32[N, S, 32] = MatMul(probs, v)
  return out
}";

fn graph(src: &str) -> snipjit_ir::Graph {
    snipjit_ir::text::parse(src, "test.sg").expect("test graph parses")
}

fn plan(src: &str, target: &MhaTarget) -> MhaPlan {
    lower_mha_body(&graph(src), target, &mut |_, _| {}).expect("lowers")
}

fn dims(pairs: &[(&str, i64)]) -> DimValues {
    let mut d = DimValues::new();
    for (k, v) in pairs {
        d.bind(k, *v).unwrap();
    }
    d
}

/// What `MhaKernel::run_into` allocates per thread today (floats, without its 16
/// floats of alignment slack): every region rounded up to 16 floats; the Q·K^T
/// brgemm's transposed-B repack is `D × n_block` floats (`Brgemm::scratch_len`).
fn runtime_scratch_floats(
    m_blk: usize,
    n_blk: usize,
    d: usize,
    dv: usize,
    n_block: usize,
) -> usize {
    let al = |x: usize| x.next_multiple_of(16);
    al(m_blk * n_blk) + al(m_blk * dv) + 2 * al(m_blk) + al(d * n_block)
}

#[test]
fn scratch_covers_what_the_runtime_allocates() {
    let p = plan(BERT, &MhaTarget::AVX512);
    let b = p.blocking();
    assert_eq!((b.m_blk, b.n_blk, b.k_blk, b.panel), (48, 128, 64, 64));
    for l in [1i64, 2, 47, 63, 64, 65, 128, 384, 1000] {
        let lay = p.scratch_layout(&dims(&[("B", 1), ("S", l)])).unwrap();
        let runtime = 4 * runtime_scratch_floats(48, 128, 64, 64, 64);
        assert!(lay.total >= runtime, "L={l}: {} < {runtime}", lay.total);
        let size = |n: &str| lay.buffers.iter().find(|x| x.0 == n).unwrap().2;
        assert_eq!(size("scores"), 48 * 128 * 4);
        assert_eq!(size("acc"), 48 * 64 * 4);
        assert_eq!(size("max"), 48 * 4);
        assert_eq!(size("sum"), 48 * 4);
        let l = l as usize;
        assert_eq!(size("kpack"), l.next_multiple_of(64) * 64 * 4, "L={l}");
        // Every buffer together, nothing shared but the in-place probabilities.
        let sum: usize = ["scores", "acc", "max", "sum", "kpack"]
            .iter()
            .map(|n| size(n).next_multiple_of(64))
            .sum();
        assert_eq!(lay.total, sum, "L={l}");
    }
    // Up to L = 64 the K-pack is exactly the runtime's one-panel repack: same total.
    let lay = p.scratch_layout(&dims(&[("B", 1), ("S", 64)])).unwrap();
    assert_eq!(lay.total, 4 * runtime_scratch_floats(48, 128, 64, 64, 64));
    assert_eq!(lay.total, 53632);
}

#[test]
fn avx2_panels_follow_the_target() {
    let p = plan(HEADS, &MhaTarget::AVX2);
    assert_eq!(p.blocking().panel, 16);
    let lay = p
        .scratch_layout(&dims(&[("B", 3), ("S", 5), ("L", 17)]))
        .unwrap();
    let kp = lay.buffers.iter().find(|x| x.0 == "kpack").unwrap();
    assert_eq!(kp.2, 32 * 80 * 4, "roundup(17, 16) rows of D = 80");
    let acc = lay.buffers.iter().find(|x| x.0 == "acc").unwrap();
    assert_eq!(acc.2, 48 * 48 * 4, "m_blk x Dv = 48");
}

/// Independent check of a layout: alignment, bounds, and no two buffers live at once
/// overlapping (unless one is computed in place of the other).
fn check_layout(p: &MhaPlan, d: &DimValues) {
    let ir = p.ir();
    let lay = p.scratch_layout(d).unwrap();
    assert_eq!(lay.total % 64, 0);
    let live = |name: &str| {
        let v = ir.values.iter().find(|v| v.name == name).unwrap();
        match &v.kind {
            ValueKind::Buffer(Some(a)) => (a.live, a.in_place_of.map(|x| ir.value(x).name.clone())),
            k => panic!("{name} is {k:?}"),
        }
    };
    for (i, (n1, o1, s1)) in lay.buffers.iter().enumerate() {
        assert_eq!(o1 % 64, 0, "{n1} misaligned");
        assert!(o1 + s1 <= lay.total, "{n1} past the total");
        for (n2, o2, s2) in &lay.buffers[i + 1..] {
            let ((a1, p1), (a2, p2)) = (live(n1), live(n2));
            let together = a1.0 <= a2.1 && a2.0 <= a1.1;
            let in_place = p1.as_deref() == Some(n2.as_str()) || p2.as_deref() == Some(n1.as_str());
            if together && !in_place {
                assert!(
                    o1 + s1 <= *o2 || o2 + s2 <= *o1,
                    "{n1} and {n2} overlap for {d:?}"
                );
            }
        }
    }
}

#[test]
fn layouts_are_overlap_free_for_many_shapes_and_blockings() {
    for (src, target) in [
        (BERT, MhaTarget::AVX512),
        (HEADS, MhaTarget::AVX2),
        (PRE, MhaTarget::AVX512),
    ] {
        let p = plan(src, &target);
        for l in [1i64, 3, 16, 100, 4096] {
            for (m, n) in [(48, 128), (6, 128), (48, 1), (1, 64)] {
                let d = dims(&[
                    ("B", 2),
                    ("N", 2),
                    ("S", l),
                    ("L", l + 1),
                    ("m_blk", m),
                    ("n_blk", n),
                ]);
                check_layout(&p, &d);
            }
        }
    }
}

#[test]
fn the_layout_formula_gives_the_full_evaluation() {
    for (src, target) in [
        (BERT, MhaTarget::AVX512),
        (BERT, MhaTarget::AVX2),
        (HEADS, MhaTarget::AVX2),
        (HEADS, MhaTarget::AVX512),
        (PRE, MhaTarget::AVX512),
    ] {
        let p = plan(src, &target);
        let f = p.layout_formula().unwrap();
        let g = graph(src);
        for (b, s, l) in [
            (1, 1, 1),
            (2, 7, 3),
            (1, 64, 64),
            (3, 100, 257),
            (1, 2048, 2048),
        ] {
            // The body's input shapes with B/N = b, S = s, L = l.
            let shapes: Vec<Vec<usize>> = g
                .inputs
                .iter()
                .map(|&id| {
                    g.node(id).outputs[0].ty.shape.concrete(|name| match name {
                        Some("S") => s,
                        Some("L") => l,
                        _ => b,
                    })
                })
                .collect();
            let refs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
            let full = p.scratch_layout(&p.dims_of_shapes(&refs).unwrap()).unwrap();
            let fast = f.eval(&refs).unwrap();
            assert_eq!(fast.total, full.total, "{src:.12} {target:?} {shapes:?}");
            let names: Vec<&str> = f.names().collect();
            assert_eq!(names.len(), full.buffers.len());
            for ((name, off, bytes), (n2, (o2, b2))) in
                full.buffers.iter().zip(names.iter().zip(&fast.buffers))
            {
                assert_eq!((name.as_str(), *off, *bytes), (*n2, *o2, *b2), "{shapes:?}");
                assert_eq!(f.index(name).map(|i| fast.buffers[i]), Some((*o2, *b2)));
            }
        }
        // The K length read from two inputs must agree.
        if src == BERT {
            let (a, m) = ([1usize, 9, 12, 64], [1usize, 1, 1, 10]);
            assert!(f.eval(&[&a, &a, &a, &m]).is_err(), "S = 9 and 10");
            assert!(f.eval(&[&a]).is_err(), "inputs missing");
        }
    }
}

#[test]
fn probabilities_are_computed_in_place_of_the_scores() {
    let p = plan(PRE, &MhaTarget::AVX512);
    let lay = p
        .scratch_layout(&dims(&[("N", 1), ("S", 9), ("L", 9)]))
        .unwrap();
    assert_eq!(lay.offset("probs"), lay.offset("scores"));
    let v = p.ir().values.iter().find(|v| v.name == "probs").unwrap();
    let ValueKind::Buffer(Some(a)) = &v.kind else {
        panic!("probs is a buffer")
    };
    assert_eq!(
        a.in_place_of.map(|x| p.ir().value(x).name.as_str()),
        Some("scores")
    );
    // K pre-transposed ([N, 32, L]) is packed too: 9 columns round up to one
    // 64-column panel of 32 rows, after the fixed-size buffers.
    let static_total = 4 * (48 * 128 + 48 * 32 + 48 + 48);
    assert_eq!(lay.offset("kpack"), Some(static_total));
    assert_eq!(lay.total, static_total + 4 * 64 * 32);
    assert!(!p.ir().scratch.as_ref().unwrap().total.is_static());
}

#[test]
fn smaller_blocks_at_run_time_fit_larger_ones_are_refused() {
    let p = plan(BERT, &MhaTarget::AVX512);
    let full = p.scratch_layout(&dims(&[("B", 1), ("S", 300)])).unwrap();
    let small = p
        .scratch_layout(&dims(&[("B", 1), ("S", 300), ("m_blk", 12)]))
        .unwrap();
    assert!(small.total <= full.total);
    assert_eq!(
        small.buffers.iter().find(|x| x.0 == "scores").unwrap().2,
        12 * 128 * 4
    );
    let e = p
        .scratch_layout(&dims(&[("B", 1), ("S", 300), ("m_blk", 49)]))
        .unwrap_err();
    assert!(e.to_string().contains("m_blk = 49"), "{e}");
}

/// The value of loop `name`'s move of `value` for `d`.
fn move_of(ir: &MhaIr, name: &str, value: &str, d: &DimValues) -> i64 {
    let lp = ir.loops.iter().find(|l| l.name == name).unwrap();
    lp.moves
        .iter()
        .find(|(v, _)| ir.value(*v).name == value)
        .map_or(0, |(_, inc)| inc.eval(d).unwrap())
}

#[test]
fn loop_moves_are_the_dense_strides_of_the_inputs() {
    let p = plan(BERT, &MhaTarget::AVX512);
    let (b, s) = (2usize, 100usize);
    let shapes: [&[usize]; 4] = [
        &[b, s, 12, 64],
        &[b, s, 12, 64],
        &[b, s, 12, 64],
        &[b, 1, 1, s],
    ];
    let d = p.dims_of_shapes(&shapes).unwrap();
    let ir = p.ir();
    // q [B, S, 12, 64] dense: strides [S*768, 768, 64, 1]; viewed [B, 12, S, 64].
    for x in ["q", "k", "v", "out"] {
        assert_eq!(move_of(ir, "b0", x, &d), (s * 768) as i64, "{x}");
        assert_eq!(move_of(ir, "b1", x, &d), 64, "{x}");
    }
    assert_eq!(move_of(ir, "rows", "q", &d), 48 * 768);
    assert_eq!(move_of(ir, "rows", "out", &d), 48 * 768);
    assert_eq!(
        move_of(ir, "rows", "k", &d),
        0,
        "K does not move with Q rows"
    );
    assert_eq!(move_of(ir, "kv", "v", &d), 128 * 768);
    assert_eq!(
        move_of(ir, "kv", "k", &d),
        0,
        "K is read through its packed copy"
    );
    assert_eq!(
        move_of(ir, "kv", "kpack", &d),
        128 * 64,
        "two 64-column panels of D rows"
    );
    // mask [B, 1, 1, S] dense: strides [S, S, S, 1]; broadcast over heads and rows.
    assert_eq!(move_of(ir, "b0", "mask", &d), s as i64);
    assert_eq!(move_of(ir, "b1", "mask", &d), 0);
    assert_eq!(move_of(ir, "rows", "mask", &d), 0);
    assert_eq!(move_of(ir, "kv", "mask", &d), 128);
    let work = |n: &str| {
        ir.loops
            .iter()
            .find(|l| l.name == n)
            .unwrap()
            .work
            .eval(&d)
            .unwrap()
    };
    assert_eq!(
        (work("b0"), work("b1"), work("rows"), work("kv")),
        (2, 12, 100, 100)
    );
}

#[test]
fn a_broadcast_batch_dim_moves_no_pointer() {
    // K and V shared by every batch index when their batch dim KB is 1 at run time.
    let src = "graph kv1(q: f32[B, S, 32], k: f32[KB, L, 32], v: f32[KB, L, 32]) {
  kt: f32[KB, 32, L] = Transpose(k, perm=[0, 2, 1])
  scores: f32[?, S, L] = MatMul(q, kt)
  probs: f32[?, S, L] = Softmax(scores, axis=-1)
  out: f32[?, S, 32] = MatMul(probs, v)
  return out
}";
    let p = plan(src, &MhaTarget::AVX512);
    let shapes: [&[usize]; 3] = [&[4, 10, 32], &[1, 20, 32], &[1, 20, 32]];
    let d = p.dims_of_shapes(&shapes).unwrap();
    let ir = p.ir();
    assert_eq!(move_of(ir, "b0", "q", &d), 320);
    assert_eq!(move_of(ir, "b0", "k", &d), 0, "K broadcasts");
    assert_eq!(move_of(ir, "b0", "v", &d), 0, "V broadcasts");
    let b0 = ir.loops.iter().find(|l| l.name == "b0").unwrap();
    assert_eq!(b0.work.eval(&d).unwrap(), 4);
    let shapes: [&[usize]; 3] = [&[4, 10, 32], &[4, 20, 32], &[4, 20, 32]];
    let d = p.dims_of_shapes(&shapes).unwrap();
    assert_eq!(move_of(ir, "b0", "k", &d), 640);
}

#[test]
fn dims_of_shapes_checks_static_and_named_dims() {
    let p = plan(BERT, &MhaTarget::AVX512);
    let ok: [&[usize]; 4] = [
        &[1, 5, 12, 64],
        &[1, 5, 12, 64],
        &[1, 5, 12, 64],
        &[1, 1, 1, 5],
    ];
    assert!(p.dims_of_shapes(&ok).is_ok());
    let bad_static: [&[usize]; 4] = [
        &[1, 5, 12, 32],
        &[1, 5, 12, 64],
        &[1, 5, 12, 64],
        &[1, 1, 1, 5],
    ];
    assert!(
        p.dims_of_shapes(&bad_static)
            .unwrap_err()
            .to_string()
            .contains("static dim 64")
    );
    let conflict: [&[usize]; 4] = [
        &[1, 5, 12, 64],
        &[1, 6, 12, 64],
        &[1, 5, 12, 64],
        &[1, 1, 1, 5],
    ];
    assert!(
        p.dims_of_shapes(&conflict)
            .unwrap_err()
            .to_string()
            .contains("dim S is both 5 and 6")
    );
    assert!(p.dims_of_shapes(&ok[..3]).is_err(), "a missing input");
}

#[test]
fn lower_mha_names_inputs_by_index() {
    let pattern = analyze_mha(&graph(PRE)).unwrap();
    let p = lower_mha(&pattern, &MhaTarget::AVX512).unwrap();
    let names: Vec<&str> = p
        .ir()
        .values
        .iter()
        .filter(|v| matches!(v.kind, ValueKind::Input(_)))
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(names, ["in0", "in1", "in2"]);
    // Nothing of the graph's ops is left.
    assert!(p.ir().exprs.iter().all(|e| !matches!(
        e.op,
        Op::Transpose { .. }
            | Op::MatMul { .. }
            | Op::Scale { .. }
            | Op::Mask { .. }
            | Op::Softmax { .. }
    )));
}

#[test]
fn passes_out_of_order_are_errors_not_panics() {
    let pattern = analyze_mha(&graph(BERT)).unwrap();
    let t = MhaTarget::AVX512;
    for name in ["brgemm_blocking", "insert_buffers", "allocate_buffers"] {
        let mut ir = build(&pattern, "x", &[]).unwrap();
        let e = mha_pass_by_name(name)
            .unwrap()
            .run(&mut ir, &t)
            .unwrap_err();
        assert!(
            matches!(e, LowerError::Pass { pass, .. } if pass == name),
            "{name}: {e}"
        );
    }
    // Blocking twice.
    let mut ir = build(&pattern, "x", &[]).unwrap();
    for pass in &MHA_PASSES[..5] {
        pass.run(&mut ir, &t).unwrap();
    }
    assert!(
        mha_pass_by_name("brgemm_blocking")
            .unwrap()
            .run(&mut ir, &t)
            .is_err()
    );
}

#[test]
fn the_verifier_rejects_broken_ir() {
    let p = plan(BERT, &MhaTarget::AVX512);
    // A loop end removed.
    let mut ir = p.ir().clone();
    let end = ir
        .exprs
        .iter()
        .position(|e| matches!(e.op, Op::LoopEnd(_)))
        .unwrap();
    ir.exprs.remove(end);
    assert!(verify(&ir).is_err());
    // A buffer read before it is written: the P·V brgemm moved before the step.
    let mut ir = p.ir().clone();
    let step = ir
        .exprs
        .iter()
        .position(|e| matches!(e.op, Op::SoftmaxStep(_)))
        .unwrap();
    ir.exprs.swap(step, step + 1);
    let e = verify(&ir).unwrap_err().to_string();
    assert!(e.contains("read before it is defined"), "{e}");
    // Two live buffers at the same offset.
    let mut ir = p.ir().clone();
    for v in &mut ir.values {
        if v.name == "acc"
            && let ValueKind::Buffer(Some(a)) = &mut v.kind
        {
            a.offset = snipjit_lower::mha::Sym::Const(64);
        }
    }
    let e = verify(&ir).unwrap_err().to_string();
    assert!(e.contains("overlap"), "{e}");
    assert!(verify(p.ir()).is_ok());
}
