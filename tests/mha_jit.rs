//! Differential tests of the MHA kernel against the interpreter (the untokenized
//! graph): random batch, heads and sequence lengths (primes included), head sizes
//! 16..128, masks (none, additive `[B, 1, 1, L]` and `[1, 1, S, L]`, boolean), the
//! scale on Q or on the scores (Mul or Div), K through a Transpose, the `transpose_b`
//! flag or pre-transposed, 3D and 4D, 1 and 3 threads, both ISAs.
//!
//! Tolerance (per element, the same as tests/api_mha.rs): `out = Σ_j p_j v_j` with
//! `Σ p_j = 1`, so errors are bounded relative to `max |v|`: ~1e-5 for the kernel's
//! exp, the f32 row sums and online rescales, plus the scores' f32-vs-f64 dot products
//! of D terms, `D · eps · max|q| · max|k| · |scale|` in the exponent (2x margin).
//!
//! Every compiled model must keep one compilation across all shapes it runs and
//! must never fall back to the interpreter.

use snipjit::{Compiler, IsaChoice, Options, Tensor, TensorData, parse_model};
use snipjit_x64::Isa;

/// xorshift64*: deterministic test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
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
            .map(|_| {
                if self.below(5) == 0 {
                    -10000.0
                } else {
                    self.f32()
                }
            })
            .collect();
        Tensor::from_f32(shape, v).unwrap()
    }
    fn bools(&mut self, shape: &[usize]) -> Tensor {
        let n = shape.iter().product();
        let v = (0..n).map(|_| self.below(4) != 0).collect();
        Tensor::new(shape.to_vec(), TensorData::Bool(v)).unwrap()
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum KForm {
    /// `MatMul(q, Transpose(k), transpose_b=true)`.
    TransposeB,
    /// `MatMul(q, Transpose(k, [0, 2, 3, 1]))`.
    Transpose,
    /// K given as `[B, H, D, L]`.
    Pre,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum MaskForm {
    None,
    /// `[B, 1, 1, L]` (rank 3: `[N, 1, L]`).
    AddRow,
    /// `[1, 1, S, L]` (rank 3: `[S, L]`).
    AddFull,
    /// `Select(bool[S, L], scores, fill)` (keep_when true) or swapped.
    Bool {
        keep: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum ScaleForm {
    None,
    Q,
    MulScores,
    DivScores,
}

#[derive(Clone, Copy, Debug)]
struct Variant {
    rank4: bool,
    k: KForm,
    mask: MaskForm,
    scale: ScaleForm,
    h: usize,
    d: usize,
}

impl Variant {
    /// The scale factor as it multiplies the scores.
    fn factor(&self) -> f32 {
        match self.scale {
            ScaleForm::None => 1.0,
            ScaleForm::DivScores => 1.0 / 8.0,
            _ => 0.125,
        }
    }

    fn source(&self) -> String {
        let (h, d) = (self.h, self.d);
        let mut s = String::new();
        let (qsh, vsh, ssh, osh) = if self.rank4 {
            (
                format!("[B, S, {h}, {d}]"),
                format!("[B, L, {h}, {d}]"),
                format!("[B, {h}, S, L]"),
                format!("[B, {h}, S, {d}]"),
            )
        } else {
            (
                format!("[B, S, {d}]"),
                format!("[B, L, {d}]"),
                "[B, S, L]".to_string(),
                format!("[B, S, {d}]"),
            )
        };
        let ksh = match (self.rank4, self.k) {
            (true, KForm::Pre) => format!("[B, {h}, {d}, L]"),
            (false, KForm::Pre) => format!("[B, {d}, L]"),
            _ => vsh.clone(),
        };
        let msh = match (self.rank4, self.mask) {
            (_, MaskForm::None) => None,
            (true, MaskForm::AddRow) => Some("f32[B, 1, 1, L]"),
            (false, MaskForm::AddRow) => Some("f32[B, 1, L]"),
            (true, MaskForm::AddFull) => Some("f32[1, 1, S, L]"),
            (false, MaskForm::AddFull) => Some("f32[S, L]"),
            (_, MaskForm::Bool { .. }) => Some("bool[S, L]"),
        };
        s += &format!("graph t(q: f32{qsh}, k: f32{ksh}, v: f32{vsh}");
        if let Some(m) = msh {
            s += &format!(", mask: {m}");
        }
        s += ") {\n  c: f32[] = Constant(0.125)\n  eight: f32[] = Constant(8)\n";
        let mut q = "q".to_string();
        if self.scale == ScaleForm::Q {
            s += &format!("  qs: f32{qsh} = Mul(q, c)\n");
            q = "qs".into();
        }
        let (qt, vt) = if self.rank4 {
            s += &format!("  qt: f32[B, {h}, S, {d}] = Transpose({q}, perm=[0, 2, 1, 3])\n");
            s += &format!("  vt: f32[B, {h}, L, {d}] = Transpose(v, perm=[0, 2, 1, 3])\n");
            ("qt".to_string(), "vt")
        } else {
            (q, "v")
        };
        let scores = match (self.rank4, self.k) {
            (true, KForm::TransposeB) => {
                s += &format!("  kt: f32[B, {h}, L, {d}] = Transpose(k, perm=[0, 2, 1, 3])\n");
                format!("MatMul({qt}, kt, transpose_b=true)")
            }
            (true, KForm::Transpose) => {
                s += &format!("  kt: f32[B, {h}, {d}, L] = Transpose(k, perm=[0, 2, 3, 1])\n");
                format!("MatMul({qt}, kt)")
            }
            (false, KForm::Transpose) => {
                s += &format!("  kt: f32[B, {d}, L] = Transpose(k, perm=[0, 2, 1])\n");
                format!("MatMul({qt}, kt)")
            }
            (false, KForm::TransposeB) => format!("MatMul({qt}, k, transpose_b=true)"),
            (_, KForm::Pre) => format!("MatMul({qt}, k)"),
        };
        s += &format!("  scores: f32{ssh} = {scores}\n");
        let mut cur = "scores";
        match self.scale {
            ScaleForm::MulScores => {
                s += &format!("  sc: f32{ssh} = Mul(scores, c)\n");
                cur = "sc";
            }
            ScaleForm::DivScores => {
                s += &format!("  sc: f32{ssh} = Div(scores, eight)\n");
                cur = "sc";
            }
            _ => {}
        }
        match self.mask {
            MaskForm::None => {}
            MaskForm::AddRow | MaskForm::AddFull => {
                s += &format!("  masked: f32{ssh} = Add({cur}, mask)\n");
                cur = "masked";
            }
            MaskForm::Bool { keep } => {
                s += "  fill: f32[] = Constant(-1000000000)\n";
                let args = if keep {
                    format!("mask, {cur}, fill")
                } else {
                    format!("mask, fill, {cur}")
                };
                s += &format!("  masked: f32{ssh} = Select({args})\n");
                cur = "masked";
            }
        }
        s += &format!("  probs: f32{ssh} = Softmax({cur}, axis=-1)\n");
        if self.rank4 {
            s += &format!("  ctx: f32{osh} = MatMul(probs, {vt})\n");
            s += &format!("  out: f32{qsh} = Transpose(ctx, perm=[0, 2, 1, 3])\n");
        } else {
            s += &format!("  out: f32{osh} = MatMul(probs, {vt})\n");
        }
        s += "  return out\n}\n";
        s
    }

    fn inputs(&self, rng: &mut Rng, b: usize, sq: usize, l: usize) -> Vec<Tensor> {
        let (h, d) = (self.h, self.d);
        let (q, v) = if self.rank4 {
            (vec![b, sq, h, d], vec![b, l, h, d])
        } else {
            (vec![b, sq, d], vec![b, l, d])
        };
        let k = match (self.rank4, self.k) {
            (true, KForm::Pre) => vec![b, h, d, l],
            (false, KForm::Pre) => vec![b, d, l],
            _ => v.clone(),
        };
        let mut t = vec![rng.tensor(&q), rng.tensor(&k), rng.tensor(&v)];
        match (self.rank4, self.mask) {
            (_, MaskForm::None) => {}
            (true, MaskForm::AddRow) => t.push(rng.mask(&[b, 1, 1, l])),
            (false, MaskForm::AddRow) => t.push(rng.mask(&[b, 1, l])),
            (true, MaskForm::AddFull) => t.push(rng.mask(&[1, 1, sq, l])),
            (false, MaskForm::AddFull) => t.push(rng.mask(&[sq, l])),
            (_, MaskForm::Bool { .. }) => t.push(rng.bools(&[sq, l])),
        }
        t
    }
}

fn max_abs(t: &Tensor) -> f32 {
    t.as_f32().unwrap().iter().fold(0.0, |m, x| m.max(x.abs()))
}

/// Compiles the variant for `isa` and `threads`, runs every (B, S, L) of `shapes`
/// against the interpreter.
fn check(
    v: Variant,
    isa: IsaChoice,
    threads: usize,
    shapes: &[(usize, usize, usize)],
    rng: &mut Rng,
) {
    let src = v.source();
    let graph = parse_model(&src, "t.sg").unwrap_or_else(|e| panic!("{e}\n{src}"));
    let model = Compiler::new(Options { threads, isa })
        .and_then(|c| c.compile(graph.clone()))
        .expect("compiles");
    let stats = model.stats();
    assert!(
        stats.subgraphs.iter().any(|s| s.kind == "mha" && s.jit),
        "{v:?}: no JIT mha subgraph: {}\n{src}",
        stats.to_json()
    );
    for &(b, sq, l) in shapes {
        let inputs = v.inputs(rng, b, sq, l);
        let want = snipjit_interp::run(&graph, &inputs).expect("interpreter runs");
        let got = model.run(&inputs).expect("model runs");
        let (qm, km, vm) = (
            max_abs(&inputs[0]),
            max_abs(&inputs[1]),
            max_abs(&inputs[2]),
        );
        let eps = f64::from(f32::EPSILON);
        let tol = f64::from(vm) * (1e-5 + 2.0 * v.d as f64 * eps * f64::from(qm * km * v.factor()));
        assert_eq!(got[0].shape, want[0].shape);
        let (g, w) = (got[0].as_f32().unwrap(), want[0].as_f32().unwrap());
        for (i, (&x, &y)) in g.iter().zip(w).enumerate() {
            let ok = (x.is_nan() && y.is_nan()) || f64::from((x - y).abs()) <= tol;
            assert!(
                ok,
                "{v:?} {isa:?} threads {threads} B {b} S {sq} L {l}: element {i}: {x} vs {y} (tol {tol:e})"
            );
        }
    }
    assert_eq!(
        model.fallbacks(),
        0,
        "{v:?}: a call fell back to the interpreter"
    );
    assert_eq!(
        model.stats().compilations,
        stats.compilations,
        "{v:?}: shapes triggered compilations"
    );
}

fn isas() -> Vec<IsaChoice> {
    let mut v = vec![];
    if Isa::Avx512.is_supported() {
        v.push(IsaChoice::Avx512);
    } else {
        eprintln!("SKIPPED: MHA kernel on AVX-512: this CPU does not support it");
    }
    if Isa::Avx2.is_supported() {
        v.push(IsaChoice::Avx2);
    } else {
        eprintln!("SKIPPED: MHA kernel on AVX2: this CPU does not support it");
    }
    v
}

const PRIMES: [usize; 9] = [1, 2, 3, 17, 61, 127, 131, 257, 293];
const HEADS: [usize; 5] = [16, 32, 64, 80, 128];

fn variants(rng: &mut Rng, n: usize) -> Vec<Variant> {
    let ks = [KForm::TransposeB, KForm::Transpose, KForm::Pre];
    let masks = [
        MaskForm::None,
        MaskForm::AddRow,
        MaskForm::AddFull,
        MaskForm::Bool { keep: true },
        MaskForm::Bool { keep: false },
    ];
    let scales = [
        ScaleForm::None,
        ScaleForm::Q,
        ScaleForm::MulScores,
        ScaleForm::DivScores,
    ];
    (0..n)
        .map(|i| Variant {
            rank4: i % 3 != 2,
            k: ks[i % 3],
            mask: masks[i % 5],
            scale: scales[(i / 3) % 4],
            h: 1 + rng.below(4),
            d: HEADS[(i + i / 5) % 5],
        })
        .collect()
}

/// Every (K form, mask, scale) combination family on both ISAs and 1 / 3 threads,
/// with small random shapes plus primes; sizes kept so that the debug-build
/// interpreter finishes quickly.
#[test]
fn mha_kernel_matches_interpreter() {
    let mut rng = Rng(0x00c0_ffee);
    let vs = variants(&mut rng, 20);
    for isa in isas() {
        for (i, &v) in vs.iter().enumerate() {
            let threads = if i % 2 == 0 { 1 } else { 3 };
            let b = 1 + rng.below(3);
            // Keep B·H·S·L·D moderate in debug builds.
            let big = PRIMES[5 + i % 4];
            let shapes = [
                (b, PRIMES[i % 5], PRIMES[(i + 2) % 5]),
                (1 + rng.below(3), 1 + rng.below(40), 1 + rng.below(70)),
                (1, big, if v.d >= 80 { 61 } else { big }),
            ];
            check(v, isa, threads, &shapes, &mut rng);
        }
    }
}

/// The BERT layout at sizes around the blocking (m_blk 48, n_blk 128) edges, with 3
/// threads (fewer work items than threads for S = 1, so rows split further).
#[test]
fn mha_block_edges() {
    let mut rng = Rng(42);
    let v = Variant {
        rank4: true,
        k: KForm::TransposeB,
        mask: MaskForm::AddRow,
        scale: ScaleForm::MulScores,
        h: 2,
        d: 64,
    };
    for isa in isas() {
        let shapes = [
            (1, 1, 1),
            (1, 47, 128),
            (1, 49, 129),
            (2, 96, 255),
            (1, 7, 300),
        ];
        check(v, isa, 3, &shapes, &mut rng);
    }
}

/// A longer random sweep (run with `--ignored`, ideally in release).
#[test]
#[ignore]
fn mha_kernel_matches_interpreter_sweep() {
    let mut rng = Rng(0xdead_beef);
    let vs = variants(&mut rng, 60);
    for isa in isas() {
        for (i, &v) in vs.iter().enumerate() {
            let shapes: Vec<(usize, usize, usize)> = (0..4)
                .map(|_| (1 + rng.below(3), 1 + rng.below(300), 1 + rng.below(300)))
                .chain([(1, PRIMES[i % 9], PRIMES[(i * 7) % 9])])
                .collect();
            check(v, isa, 1 + i % 3, &shapes, &mut rng);
        }
    }
}
