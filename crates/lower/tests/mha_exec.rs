//! Executes the final MHA IR of a plan with a naive reference executor (loops with
//! their work amounts and tails, pointer moves, brgemm operand strides, the packed
//! K panels, the online softmax, buffers at their allocated offsets in ONE scratch
//! array of the plan's total) and compares the output with the reference interpreter
//! running the body. A wrong stride, move, view, blocking extent, lifetime or offset
//! (two live buffers overlapping) shows up as a numeric difference.

use std::collections::HashMap;

use snipjit_ir::{Graph, Tensor, TensorData};
use snipjit_lower::mha::ir::{
    BLayout, Beta, Extent, MaskKind, MhaIr, Op, Operand, ValueId, ValueKind,
};
use snipjit_lower::mha::{DimValues, MhaPlan, MhaTarget, Sym, lower_mha_body};

struct Exec<'a> {
    ir: &'a MhaIr,
    d: DimValues,
    /// Input data as f32 (a bool mask as 0/1), by value.
    data: HashMap<ValueId, Vec<f32>>,
    out: Vec<f32>,
    out_id: ValueId,
    scratch: Vec<f32>,
    /// Current element offset of every tensor pointer, and buffer bases.
    ptr: HashMap<ValueId, i64>,
    /// Per loop: (current block size, first iteration).
    blk: HashMap<u32, (i64, bool)>,
}

impl Exec<'_> {
    fn ev(&self, s: &Sym) -> i64 {
        s.eval(&self.d).unwrap()
    }

    fn extent(&self, e: &Extent) -> i64 {
        match e {
            Extent::Full(s) => self.ev(s),
            Extent::Block(l) => self.blk[&l.0].0,
        }
    }

    fn load(&self, v: ValueId, idx: i64) -> f32 {
        let i = usize::try_from(idx).unwrap();
        match self.data.get(&v) {
            Some(x) => x[i],
            None if v == self.out_id => self.out[i],
            None => self.scratch[i],
        }
    }

    fn store(&mut self, v: ValueId, idx: i64, x: f32) {
        let i = usize::try_from(idx).unwrap();
        if v == self.out_id {
            self.out[i] = x;
        } else {
            assert!(
                self.ir.value(v).is_buffer(),
                "stores only to the output or buffers"
            );
            self.scratch[i] = x;
        }
    }

    /// Element (i, j) of an operand's 2D view at its current pointer.
    fn at(&self, o: &Operand, i: i64, j: i64) -> i64 {
        self.ptr[&o.value] + i * self.ev(&o.row) + j * self.ev(&o.col)
    }

    /// Is the innermost loop around expression `e` in its first iteration?
    fn first(&self, e: usize) -> bool {
        let (b, _) = self.ir.enclosing_loop(e).unwrap();
        let Op::LoopBegin(l) = self.ir.exprs[b].op else {
            unreachable!()
        };
        self.blk[&l.0].1
    }

    fn run(&mut self, from: usize, to: usize) {
        let mut i = from;
        while i < to {
            let e = self.ir.exprs[i].clone();
            match &e.op {
                Op::LoopBegin(l) => {
                    let (_, end) = self.ir.loop_bounds(*l).unwrap();
                    let lp = self.ir.lp(*l).clone();
                    let (work, step) = (self.ev(&lp.work), self.ev(&lp.step));
                    let saved = self.ptr.clone();
                    let mut it = 0;
                    while it < work {
                        self.blk.insert(l.0, (step.min(work - it), it == 0));
                        self.run(i + 1, end);
                        for (v, inc) in &lp.moves {
                            *self.ptr.get_mut(v).unwrap() += self.ev(inc);
                        }
                        it += step;
                    }
                    self.ptr = saved;
                    i = end + 1;
                    continue;
                }
                Op::PackB { src, layout, n, k } => {
                    assert_ne!(*layout, BLayout::Packed);
                    let transposed = *layout == BLayout::Transposed;
                    let (n, k) = (self.ev(n), self.ev(k));
                    let panel = self.d.get("panel").unwrap();
                    let dst = e.out.unwrap();
                    let np = (n + panel - 1) / panel;
                    for p in 0..np {
                        for kk in 0..k {
                            for jj in 0..panel {
                                let j = p * panel + jj;
                                let x = if j < n {
                                    // K[j][kk]: row j of [L, D], or column j of [D, L].
                                    let (r, c) = if transposed { (j, kk) } else { (kk, j) };
                                    self.load(src.value, self.at(src, r, c))
                                } else {
                                    0.0
                                };
                                let at = self.ptr[&dst] + p * k * panel + kk * panel + jj;
                                self.store(dst, at, x);
                            }
                        }
                    }
                }
                Op::Brgemm(b) => {
                    let (m, n, k) = (self.extent(&b.m), self.extent(&b.n), self.extent(&b.k));
                    let acc = match b.beta {
                        Beta::Zero => false,
                        Beta::One => true,
                        Beta::FirstZero => !self.first(i),
                    };
                    let panel = self.d.get("panel").unwrap();
                    for r in 0..m {
                        for c in 0..n {
                            let mut s = 0f64;
                            for kk in 0..k {
                                let a = self.load(b.a.value, self.at(&b.a, r, kk));
                                let bidx = match b.b_layout {
                                    BLayout::RowMajor => self.at(&b.b, kk, c),
                                    BLayout::Transposed => self.at(&b.b, c, kk),
                                    BLayout::Packed => {
                                        self.ptr[&b.b.value]
                                            + (c / panel) * k * panel
                                            + kk * panel
                                            + c % panel
                                    }
                                };
                                s += f64::from(a) * f64::from(self.load(b.b.value, bidx));
                            }
                            let ci = self.at(&b.c, r, c);
                            let old = if acc {
                                f64::from(self.load(b.c.value, ci))
                            } else {
                                0.0
                            };
                            self.store(b.c.value, ci, (old + s) as f32);
                        }
                    }
                }
                Op::SoftmaxStep(st) => {
                    let (rows, cols) = (self.extent(&st.rows), self.extent(&st.cols));
                    let first = self.first(i);
                    let probs = e.out.unwrap();
                    let so = self.ir.dense(st.scores);
                    let po = self.ir.dense(probs);
                    let ao = self.ir.dense(st.acc);
                    let dv = self.ev(&self.ir.value(st.acc).shape[1]);
                    let (mb, lb) = (self.ptr[&st.max], self.ptr[&st.sum]);
                    for r in 0..rows {
                        let xs: Vec<f32> = (0..cols)
                            .map(|c| {
                                let mut x = self.load(st.scores, self.at(&so, r, c));
                                if let Some(sc) = st.scale {
                                    x = if sc.mul { x * sc.value } else { x / sc.value };
                                }
                                if let Some((m, kind)) = &st.mask {
                                    let mv = self.load(m.value, self.at(m, r, c));
                                    x = match kind {
                                        MaskKind::Additive => x + mv,
                                        MaskKind::Select { fill, keep_when } => {
                                            if (mv != 0.0) == *keep_when { x } else { *fill }
                                        }
                                    };
                                }
                                x
                            })
                            .collect();
                        let m_old = if first {
                            f32::NEG_INFINITY
                        } else {
                            self.load(st.max, mb + r)
                        };
                        let m_new = xs.iter().copied().fold(m_old, f32::max);
                        let m_use = if m_new == f32::NEG_INFINITY {
                            0.0
                        } else {
                            m_new
                        };
                        let mut sum = 0f32;
                        for (c, &x) in xs.iter().enumerate() {
                            let p = (x - m_use).exp();
                            sum += p;
                            let pi = self.at(&po, r, c as i64);
                            self.store(probs, pi, p);
                        }
                        let alpha = if first { 0.0 } else { (m_old - m_use).exp() };
                        let l_old = if first {
                            0.0
                        } else {
                            self.load(st.sum, lb + r)
                        };
                        self.store(st.sum, lb + r, l_old * alpha + sum);
                        self.store(st.max, mb + r, m_new);
                        if !first {
                            for c in 0..dv {
                                let ai = self.at(&ao, r, c);
                                let x = self.load(st.acc, ai) * alpha;
                                self.store(st.acc, ai, x);
                            }
                        }
                    }
                }
                Op::SoftmaxFinish {
                    acc,
                    sum,
                    out,
                    rows,
                } => {
                    let rows = self.extent(rows);
                    let ao = self.ir.dense(*acc);
                    let dv = self.ev(&self.ir.value(*acc).shape[1]);
                    for r in 0..rows {
                        let l = self.load(*sum, self.ptr[sum] + r);
                        for c in 0..dv {
                            let x = self.load(*acc, self.at(&ao, r, c)) / l;
                            let oi = self.at(out, r, c);
                            self.store(out.value, oi, x);
                        }
                    }
                }
                Op::Parameter(_) | Op::Buffer | Op::Result { .. } => {}
                op => panic!("unexpected op in a lowered plan: {op:?}"),
            }
            i += 1;
        }
    }
}

/// A deterministic pseudo-random f32 in [-1, 1).
fn rnd(state: &mut u64) -> f32 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    ((*state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

/// Runs `plan` on inputs of `shapes` (m_blk/n_blk overridable) and the interpreter on
/// `body`; asserts the outputs agree.
fn check(body: &Graph, plan: &MhaPlan, shapes: &[&[usize]], blocks: Option<(i64, i64)>) {
    let ir = plan.ir();
    let mut d = plan.dims_of_shapes(shapes).unwrap();
    if let Some((m, n)) = blocks {
        d.set("m_blk", m);
        d.set("n_blk", n);
    }
    let layout = plan.scratch_layout(&d).unwrap();
    let mut seed = 0x1234_5678_9abc_def1u64;
    let mut tensors = vec![];
    let mut data = HashMap::new();
    let mut ptr = HashMap::new();
    // Values the passes replaced stay in the table; only those the IR touches count.
    let used: Vec<ValueId> = ir
        .exprs
        .iter()
        .flat_map(|e| ir.reads(e).into_iter().chain(ir.writes(e)))
        .collect();
    for (vi, v) in ir.values.iter().enumerate() {
        let id = ValueId(vi as u32);
        if !used.contains(&id) {
            continue;
        }
        match &v.kind {
            ValueKind::Input(i) => {
                let shape = shapes[*i].to_vec();
                let n: usize = shape.iter().product();
                let (t, f) = if v.dtype == "bool" {
                    let b: Vec<bool> = (0..n).map(|_| rnd(&mut seed) > -0.6).collect();
                    let f = b.iter().map(|&x| f32::from(u8::from(x))).collect();
                    (Tensor::new(shape, TensorData::Bool(b)).unwrap(), f)
                } else {
                    let f: Vec<f32> = (0..n).map(|_| rnd(&mut seed)).collect();
                    (Tensor::from_f32(&shape, f.clone()).unwrap(), f)
                };
                tensors.push((*i, t));
                data.insert(id, f);
                ptr.insert(id, 0);
            }
            ValueKind::Output => {
                ptr.insert(id, 0);
            }
            ValueKind::Buffer(_) => {
                let off = layout.offset(&v.name).unwrap();
                assert_eq!(off % 4, 0);
                ptr.insert(id, (off / 4) as i64);
            }
            ValueKind::Temp => panic!("a temp '{}' is left", v.name),
        }
    }
    tensors.sort_by_key(|t| t.0);
    let inputs: Vec<Tensor> = tensors.into_iter().map(|t| t.1).collect();
    let want = snipjit_interp::run(body, &inputs).unwrap().remove(0);
    let out_id = ValueId(
        ir.values
            .iter()
            .position(|v| v.kind == ValueKind::Output)
            .unwrap() as u32,
    );
    let mut ex = Exec {
        ir,
        d,
        data,
        out: vec![f32::NAN; want.shape.iter().product()],
        out_id,
        // NaN everywhere: reading a scratch float nobody wrote poisons the output.
        scratch: vec![f32::NAN; layout.total / 4],
        ptr,
        blk: HashMap::new(),
    };
    ex.run(0, ir.exprs.len());
    let TensorData::F32(w) = &want.data else {
        panic!("f32 output")
    };
    assert_eq!(w.len(), ex.out.len());
    for (i, (a, b)) in ex.out.iter().zip(w).enumerate() {
        assert!(
            (a - b).abs() <= 2e-5 + 2e-5 * b.abs(),
            "element {i}: plan {a}, interpreter {b} (shapes {shapes:?})"
        );
    }
}

fn lower(src: &str, target: &MhaTarget) -> (Graph, MhaPlan) {
    let g = snipjit_ir::text::parse(src, "test.sg").unwrap();
    let p = lower_mha_body(&g, target, &mut |_, _| {}).unwrap();
    (g, p)
}

#[test]
fn bert_4d_with_transposes_scale_and_mask() {
    let src = "graph bert(q: f32[B, S, 3, 16], k: f32[B, S, 3, 16], v: f32[B, S, 3, 16], mask: f32[B, 1, 1, S]) {
  qt: f32[B, 3, S, 16] = Transpose(q, perm=[0, 2, 1, 3])
  kt: f32[B, 3, 16, S] = Transpose(k, perm=[0, 2, 3, 1])
  vt: f32[B, 3, S, 16] = Transpose(v, perm=[0, 2, 1, 3])
  scores: f32[B, 3, S, S] = MatMul(qt, kt)
  scale: f32[] = Constant(0.25)
  scaled: f32[B, 3, S, S] = Mul(scores, scale)
  masked: f32[B, 3, S, S] = Add(scaled, mask)
  probs: f32[B, 3, S, S] = Softmax(masked, axis=-1)
  context: f32[B, 3, S, 16] = MatMul(probs, vt)
  out: f32[B, S, 3, 16] = Transpose(context, perm=[0, 2, 1, 3])
  return out
}";
    for target in [MhaTarget::AVX512, MhaTarget::AVX2] {
        let (g, p) = lower(src, &target);
        // 150 rows: blocks 48+48+48+6; 150 keys: 128 + a tail of 22.
        check(
            &g,
            &p,
            &[
                &[2, 150, 3, 16],
                &[2, 150, 3, 16],
                &[2, 150, 3, 16],
                &[2, 1, 1, 150],
            ],
            None,
        );
        // Small blocks (as the runtime shrinks them): many KV steps, panel-multiple n_blk.
        let n = target.panel as i64;
        check(
            &g,
            &p,
            &[
                &[1, 37, 3, 16],
                &[1, 37, 3, 16],
                &[1, 37, 3, 16],
                &[1, 1, 1, 37],
            ],
            Some((6, n)),
        );
    }
}

#[test]
fn three_d_k_pretransposed_scale_on_q() {
    let src = "graph pre(q: f32[N, S, 24], kt: f32[N, 24, L], v: f32[N, L, 40]) {
  c: f32[] = Constant(0.3)
  qs: f32[N, S, 24] = Mul(q, c)
  scores: f32[N, S, L] = MatMul(qs, kt)
  probs: f32[N, S, L] = Softmax(scores, axis=-1)
  out: f32[N, S, 40] = MatMul(probs, v)
  return out
}";
    let (g, p) = lower(src, &MhaTarget::AVX512);
    check(&g, &p, &[&[3, 50, 24], &[3, 24, 260], &[3, 260, 40]], None);
}

#[test]
fn boolean_mask_broadcast_batch_and_div_scale() {
    let src = "graph where(q: f32[B, 2, S, 16], k: f32[KB, 2, L, 16], v: f32[KB, 2, L, 32], keep: bool[1, 1, S, L]) {
  kt: f32[KB, 2, 16, L] = Transpose(k, perm=[0, 1, 3, 2])
  scores: f32[?, 2, S, L] = MatMul(q, kt)
  d: f32[] = Constant(4.0)
  scaled: f32[?, 2, S, L] = Div(scores, d)
  neg: f32[] = Constant(-inf)
  masked: f32[?, 2, S, L] = Select(keep, scaled, neg)
  probs: f32[?, 2, S, L] = Softmax(masked, axis=-1)
  out: f32[?, 2, S, 32] = MatMul(probs, v)
  return out
}";
    let (g, p) = lower(src, &MhaTarget::AVX512);
    // K and V shared by the 3 batch indices of Q (KB = 1 at run time).
    check(
        &g,
        &p,
        &[
            &[3, 2, 20, 16],
            &[1, 2, 140, 16],
            &[1, 2, 140, 32],
            &[1, 1, 20, 140],
        ],
        None,
    );
}

#[test]
fn mask_broadcast_along_rows_3d() {
    let src =
        "graph sdpa3(q: f32[BH, S, 32], k: f32[BH, L, 32], v: f32[BH, L, 32], mask: f32[1, L]) {
  kt: f32[BH, 32, L] = Transpose(k, perm=[0, 2, 1])
  scores: f32[BH, S, L] = MatMul(q, kt)
  scale: f32[] = Constant(0.17677669)
  scaled: f32[BH, S, L] = Mul(scale, scores)
  masked: f32[BH, S, L] = Add(mask, scaled)
  probs: f32[BH, S, L] = Softmax(masked, axis=2)
  out: f32[BH, S, 32] = MatMul(probs, v)
  return out
}";
    let (g, p) = lower(src, &MhaTarget::AVX2);
    check(
        &g,
        &p,
        &[&[2, 49, 32], &[2, 129, 32], &[2, 129, 32], &[1, 129]],
        None,
    );
}
