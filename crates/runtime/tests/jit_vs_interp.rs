//! Every compiled elementwise kernel checked against the reference interpreter.

use snipjit_ir::{BinaryOp, DType, Dim, GeluApprox, Graph, Op, Shape, Tensor, TensorType, UnaryOp};
use snipjit_runtime::{Executor, JitSubgraph};
use snipjit_x64::Isa;

fn isas() -> Vec<Isa> {
    let v: Vec<Isa> = [Isa::Avx512, Isa::Avx2]
        .into_iter()
        .filter(|i| i.is_supported())
        .collect();
    if !Isa::Avx512.is_supported() {
        eprintln!("SKIPPED: AVX-512 tests (this CPU has no AVX-512)");
    }
    v
}

fn shape(d: &[Dim]) -> Shape {
    d.iter().cloned().collect()
}

/// Tiny deterministic RNG (xorshift).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn f32(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn random_tensor(rng: &mut Rng, dims: &[usize]) -> Tensor {
    let n = dims.iter().product();
    Tensor::from_f32(dims, (0..n).map(|_| rng.f32(-4.0, 4.0)).collect()).unwrap()
}

/// Compares with a tolerance of a few ULP plus a small absolute term.
fn assert_close(got: &Tensor, want: &Tensor, what: &str) {
    assert_eq!(got.shape, want.shape, "{what}: shape");
    let (g, w) = (got.as_f32().unwrap(), want.as_f32().unwrap());
    for (i, (a, b)) in g.iter().zip(w).enumerate() {
        let ok = (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-5 + 4e-6 * b.abs();
        assert!(ok, "{what}: element {i}: jit {a} vs interpreter {b}");
    }
}

fn check(g: &Graph, inputs: &[Tensor], isa: Isa, threads: usize) {
    let sg = JitSubgraph::new(g.clone(), isa).unwrap_or_else(|e| panic!("{}: {e}", g.name));
    let exec = Executor::new(threads).unwrap();
    let refs: Vec<&Tensor> = inputs.iter().collect();
    let got = sg.run(&refs, &exec).unwrap();
    let want = snipjit_interp::run(g, inputs).unwrap();
    for (o, (a, b)) in got.iter().zip(&want).enumerate() {
        let shapes: Vec<_> = inputs.iter().map(|t| t.shape.clone()).collect();
        assert_close(
            a,
            b,
            &format!("{} {isa:?} x{threads} inputs {shapes:?} output {o}", g.name),
        );
    }
}

fn relu_bias() -> Graph {
    let mut g = Graph::new("relu_bias");
    let x = g.add_input(
        "x",
        TensorType::new(DType::F32, shape(&[Dim::sym("N"), Dim::sym("C")])),
    );
    let b = g.add_input(
        "b",
        TensorType::new(DType::F32, shape(&[Dim::Static(1), Dim::sym("C")])),
    );
    let s = g.add_op("s", Op::Binary(BinaryOp::Add), &[x, b]).unwrap();
    let r = g.add_op("r", Op::Unary(UnaryOp::Relu), &[s]).unwrap();
    g.add_output("y", r);
    g
}

fn gelu_chain() -> Graph {
    let mut g = Graph::new("gelu_chain");
    let x = g.add_input(
        "x",
        TensorType::new(DType::F32, shape(&[Dim::sym("N"), Dim::Static(1024)])),
    );
    let c = |g: &mut Graph, n: &str, v: f32| {
        g.add_op(n, Op::Constant(Tensor::scalar_f32(v)), &[])
            .unwrap()
    };
    let a = c(&mut g, "a", 0.5);
    let b = c(&mut g, "b", 1.25);
    let cc = c(&mut g, "c", 0.75);
    let s = g.add_op("s", Op::Binary(BinaryOp::Add), &[x, a]).unwrap();
    let m = g.add_op("m", Op::Binary(BinaryOp::Mul), &[s, b]).unwrap();
    let ge = g
        .add_op("ge", Op::Unary(UnaryOp::Gelu(GeluApprox::Tanh)), &[m])
        .unwrap();
    let y = g.add_op("y", Op::Binary(BinaryOp::Mul), &[ge, cc]).unwrap();
    g.add_output("y", y);
    g
}

#[test]
fn relu_bias_all_tails_and_threads() {
    let mut rng = Rng(7);
    for isa in isas() {
        for c in 1..=2 * isa.lanes() + 1 {
            for n in [1, 3] {
                for threads in [1, 2] {
                    let x = random_tensor(&mut rng, &[n, c]);
                    let b = random_tensor(&mut rng, &[1, c]);
                    check(&relu_bias(), &[x, b], isa, threads);
                }
            }
        }
    }
}

#[test]
fn gelu_chain_one_kernel_for_all_shapes() {
    let mut rng = Rng(11);
    for isa in isas() {
        let g = gelu_chain();
        let sg = JitSubgraph::new(g.clone(), isa).unwrap();
        let exec = Executor::new(2).unwrap();
        let first = sg.kernels()[0].1.kernel.code().to_vec();
        for n in [1, 2, 5, 17, 64] {
            let x = random_tensor(&mut rng, &[n, 1024]);
            let got = sg.run(&[&x], &exec).unwrap();
            let want = snipjit_interp::run(&g, &[x]).unwrap();
            assert_close(&got[0], &want[0], "gelu chain");
        }
        assert_eq!(sg.compilations(), 1, "one kernel serves every N");
        assert_eq!(sg.kernels()[0].1.kernel.code(), first.as_slice());
    }
}

/// Every unary op, over every tail length.
#[test]
fn every_unary_op() {
    let mut rng = Rng(3);
    for isa in isas() {
        for op in UnaryOp::ALL {
            if op == UnaryOp::Not {
                continue;
            }
            let mut g = Graph::new(format!("u_{}", op.name()));
            let x = g.add_input("x", TensorType::new(DType::F32, shape(&[Dim::sym("N")])));
            let y = g.add_op("y", Op::Unary(op), &[x]).unwrap();
            g.add_output("y", y);
            for n in [1, isa.lanes() - 1, isa.lanes(), 2 * isa.lanes() + 1, 1000] {
                let x = random_tensor(&mut rng, &[n]);
                check(&g, &[x], isa, 1);
            }
        }
    }
}

/// Every binary op with a broadcast operand.
#[test]
fn every_binary_op_with_broadcasts() {
    let mut rng = Rng(5);
    for isa in isas() {
        for op in BinaryOp::ALL {
            if op.is_logical() || op.is_comparison() || op == BinaryOp::Pow {
                continue;
            }
            let mut g = Graph::new(format!("b_{}", op.name()));
            let a = g.add_input(
                "a",
                TensorType::new(DType::F32, shape(&[Dim::sym("N"), Dim::sym("C")])),
            );
            let b = g.add_input(
                "b",
                TensorType::new(DType::F32, shape(&[Dim::sym("M"), Dim::sym("D")])),
            );
            let y = g.add_op("y", Op::Binary(op), &[a, b]).unwrap();
            g.add_output("y", y);
            for (sa, sb) in [
                ([3, 17], [3, 17]),
                ([3, 17], [1, 17]),
                ([3, 17], [3, 1]),
                ([4, 33], [1, 1]),
            ] {
                let a = random_tensor(&mut rng, &sa);
                let mut b = random_tensor(&mut rng, &sb);
                if matches!(op, BinaryOp::Div | BinaryOp::Mod) {
                    for v in match &mut b.data {
                        snipjit_ir::TensorData::F32(v) => v,
                        _ => unreachable!(),
                    } {
                        *v = if v.abs() < 0.1 { 0.5 } else { *v };
                    }
                }
                check(&g, &[a, b], isa, 1);
            }
        }
    }
}

/// Comparisons and Select inside one kernel (bool values never leave it).
#[test]
fn compare_and_select() {
    let mut rng = Rng(9);
    for isa in isas() {
        for op in BinaryOp::ALL.into_iter().filter(|o| o.is_comparison()) {
            let mut g = Graph::new("sel");
            let a = g.add_input("a", TensorType::new(DType::F32, shape(&[Dim::sym("N")])));
            let b = g.add_input("b", TensorType::new(DType::F32, shape(&[Dim::sym("N")])));
            let c = g.add_op("c", Op::Binary(op), &[a, b]).unwrap();
            let y = g.add_op("y", Op::Select, &[c, a, b]).unwrap();
            g.add_output("y", y);
            let a = random_tensor(&mut rng, &[37]);
            let b = random_tensor(&mut rng, &[37]);
            check(&g, &[a, b], isa, 1);
        }
    }
}

/// Random elementwise DAGs (up to 20 ops) with random shapes and broadcasts.
#[test]
fn random_dags() {
    let unary = [
        UnaryOp::Relu,
        UnaryOp::Exp,
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::Abs,
        UnaryOp::Neg,
        UnaryOp::Gelu(GeluApprox::Erf),
        UnaryOp::Swish { beta: 1.0 },
        UnaryOp::Clamp {
            min: -1.5,
            max: 2.0,
        },
    ];
    let binary = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Max,
        BinaryOp::Min,
    ];
    let mut rng = Rng(12345);
    for case in 0..120 {
        for isa in isas() {
            let lanes = isa.lanes();
            let c = 1 + rng.below(2 * lanes + 1);
            let n = 1 + rng.below(4);
            let n_in = 1 + rng.below(4);
            let mut g = Graph::new(format!("dag{case}"));
            let mut vals = vec![];
            let mut in_shapes = vec![];
            for i in 0..n_in {
                // Each input is [N, C], [1, C], [N, 1] or [1, 1].
                let (dn, dc) = match rng.below(4) {
                    0 | 1 => (n, c),
                    2 => (1, c),
                    _ => (n, 1),
                };
                let dims = if i == 0 { (n, c) } else { (dn, dc) };
                in_shapes.push([dims.0, dims.1]);
                vals.push(g.add_input(
                    format!("x{i}"),
                    TensorType::new(DType::F32, Shape::fixed(&[dims.0, dims.1])),
                ));
            }
            let ops = 1 + rng.below(20);
            for k in 0..ops {
                let v = if rng.below(3) == 0 {
                    let a = vals[rng.below(vals.len())];
                    g.add_op(
                        format!("v{k}"),
                        Op::Unary(unary[rng.below(unary.len())]),
                        &[a],
                    )
                    .unwrap()
                } else {
                    let a = vals[rng.below(vals.len())];
                    let b = vals[rng.below(vals.len())];
                    g.add_op(
                        format!("v{k}"),
                        Op::Binary(binary[rng.below(binary.len())]),
                        &[a, b],
                    )
                    .unwrap()
                };
                vals.push(v);
            }
            // Outputs: the last value, broadcast to the full shape by adding x0*0.
            let last = *vals.last().unwrap();
            let zero = g
                .add_op("zero", Op::Constant(Tensor::scalar_f32(0.0)), &[])
                .unwrap();
            let z = g
                .add_op("z", Op::Binary(BinaryOp::Mul), &[vals[0], zero])
                .unwrap();
            let y = g
                .add_op("y", Op::Binary(BinaryOp::Add), &[last, z])
                .unwrap();
            g.add_output("y", y);
            let inputs: Vec<Tensor> = in_shapes
                .iter()
                .map(|s| random_tensor(&mut rng, s))
                .collect();
            check(&g, &inputs, isa, 1 + case % 2);
        }
    }
}

/// Thirty inputs: more pointers than registers, kept on the kernel's stack.
#[test]
fn thirty_inputs_spill_pointers() {
    let mut rng = Rng(99);
    for isa in isas() {
        let mut g = Graph::new("sum30");
        let xs: Vec<_> = (0..30)
            .map(|i| {
                g.add_input(
                    format!("x{i}"),
                    TensorType::new(DType::F32, shape(&[Dim::sym("N")])),
                )
            })
            .collect();
        let mut acc = xs[0];
        for (i, &x) in xs.iter().enumerate().skip(1) {
            acc = g
                .add_op(format!("s{i}"), Op::Binary(BinaryOp::Add), &[acc, x])
                .unwrap();
        }
        g.add_output("y", acc);
        let inputs: Vec<Tensor> = (0..30).map(|_| random_tensor(&mut rng, &[100])).collect();
        check(&g, &inputs, isa, 1);
    }
}

/// Many values live at once: vector registers spill to the scratchpad.
#[test]
fn register_spills() {
    let mut rng = Rng(42);
    for isa in isas() {
        let mut g = Graph::new("wide");
        let x = g.add_input("x", TensorType::new(DType::F32, shape(&[Dim::sym("N")])));
        let mut es = vec![];
        for i in 0..40 {
            let c = g
                .add_op(
                    format!("c{i}"),
                    Op::Constant(Tensor::scalar_f32(i as f32 * 0.01)),
                    &[],
                )
                .unwrap();
            es.push(
                g.add_op(format!("e{i}"), Op::Binary(BinaryOp::Add), &[x, c])
                    .unwrap(),
            );
        }
        let mut acc = es[0];
        for (i, &e) in es.iter().enumerate().skip(1) {
            acc = g
                .add_op(format!("s{i}"), Op::Binary(BinaryOp::Mul), &[acc, e])
                .unwrap();
        }
        g.add_output("y", acc);
        let x = Tensor::from_f32(&[77], (0..77).map(|_| rng.f32(0.9, 1.1)).collect()).unwrap();
        check(&g, &[x], isa, 1);
        let sg = JitSubgraph::new(g, isa).unwrap();
        assert!(
            sg.kernels()[0].1.lir.spill_slots > 0,
            "expected spills on {isa:?}"
        );
    }
}

#[test]
fn zero_size_and_bad_shapes() {
    for isa in isas() {
        let g = relu_bias();
        let sg = JitSubgraph::new(g, isa).unwrap();
        let exec = Executor::new(1).unwrap();
        let x = Tensor::from_f32(&[0, 5], vec![]).unwrap();
        let b = Tensor::from_f32(&[1, 5], vec![1.0; 5]).unwrap();
        let y = sg.run(&[&x, &b], &exec).unwrap();
        assert_eq!(y[0].shape, vec![0, 5]);
        let b6 = Tensor::from_f32(&[1, 6], vec![1.0; 6]).unwrap();
        let x5 = Tensor::from_f32(&[2, 5], vec![1.0; 10]).unwrap();
        assert!(sg.run(&[&x5, &b6], &exec).is_err());
    }
    assert!(Executor::new(0).is_err());
    assert!(Executor::new(100_000).is_err());
}

/// Small inputs that broadcast to an absurd output: a clean error, no allocation
/// attempt, no abort.
#[test]
fn huge_broadcast_output_is_an_error() {
    for isa in isas() {
        let mut g = Graph::new("outer");
        let x = g.add_input(
            "x",
            TensorType::new(DType::F32, shape(&[Dim::sym("N"), Dim::Static(1)])),
        );
        let y = g.add_input(
            "y",
            TensorType::new(DType::F32, shape(&[Dim::Static(1), Dim::sym("M")])),
        );
        let s = g.add_op("s", Op::Binary(BinaryOp::Add), &[x, y]).unwrap();
        g.add_output("s", s);
        let sg = JitSubgraph::new(g, isa).unwrap();
        let exec = Executor::new(1).unwrap();
        let n = 200_000;
        let a = Tensor::from_f32(&[n, 1], vec![1.0; n]).unwrap();
        let b = Tensor::from_f32(&[1, n], vec![2.0; n]).unwrap();
        let e = sg.run(&[&a, &b], &exec).unwrap_err();
        assert!(e.to_string().contains("elements"), "{e}");
        // A zero-size dim makes the product zero even when the others are huge.
        let z = Tensor::from_f32(&[0, 1], vec![]).unwrap();
        let out = sg.run(&[&z, &b], &exec).unwrap();
        assert_eq!(out[0].shape, vec![0, n]);
    }
}

/// Outputs past `NT_STORE_MIN_BYTES` take the non-temporal path: a head call aligns
/// the pointers, and the result must not change whatever the misalignment.
#[test]
fn large_outputs_with_non_temporal_stores() {
    use snipjit_runtime::config::configure;
    let n = (snipjit_runtime::NT_STORE_MIN_BYTES / 4) + 1234;
    let x: Vec<f32> = (0..n).map(|i| (i % 1013) as f32 * 0.01 - 5.0).collect();
    let mut g = Graph::new("silu");
    let xv = g.add_input("x", TensorType::new(DType::F32, shape(&[Dim::sym("N")])));
    let y = g
        .add_op("y", Op::Unary(UnaryOp::Swish { beta: 1.0 }), &[xv])
        .unwrap();
    g.add_output("y", y);
    let want: Vec<f32> = x
        .iter()
        .map(|&v| (v as f64 / (1.0 + (-v as f64).exp())) as f32)
        .collect();
    for isa in isas() {
        let k = snipjit_runtime::compile_kernel(&g, &[false], isa, &mut |_, _| {}).unwrap();
        for threads in [1, 2] {
            let exec = Executor::new(threads).unwrap();
            for offset in [0usize, 1, 3, 5] {
                let mut out = vec![f32::NAN; n + 16];
                let domain = configure(&[&[n]], &[&[n]]).unwrap();
                let rt = domain.runtime_args(&k.lir).unwrap();
                // SAFETY: x holds n elements; out holds n elements from `offset`.
                unsafe {
                    exec.run(
                        &k,
                        &domain,
                        &rt,
                        &[x.as_ptr().cast()],
                        &[out.as_mut_ptr().add(offset).cast()],
                    )
                };
                for (i, (a, b)) in out[offset..offset + n].iter().zip(&want).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-5 + 4e-6 * b.abs(),
                        "{isa:?} t{threads} +{offset}: [{i}] {a} vs {b}"
                    );
                }
                assert!(
                    out[..offset]
                        .iter()
                        .chain(&out[offset + n..])
                        .all(|v| v.is_nan()),
                    "wrote outside"
                );
            }
        }
    }
}

/// Domains large enough to be split over threads: rows split, a long row split into
/// vector chunks, and parallel dims above the kernel's two.
#[test]
fn work_split_over_threads() {
    let mut rng = Rng(77);
    let min = snipjit_runtime::MIN_ELEMENTS_PER_THREAD;
    for isa in isas() {
        let g = relu_bias();
        for (n, c) in [(2 * min / 333 + 7, 333), (1, 2 * min + 5), (5, min / 2 + 3)] {
            for threads in [2, 3, 4] {
                let x = random_tensor(&mut rng, &[n, c]);
                let b = random_tensor(&mut rng, &[1, c]);
                check(&g, &[x, b], isa, threads);
            }
        }
        // [A, B, C] + [A, 1, C]: the middle broadcast keeps three dims (one parallel).
        let mut g3 = Graph::new("mid");
        let x = g3.add_input(
            "x",
            TensorType::new(DType::F32, Shape::fixed(&[6, 40, 301])),
        );
        let y = g3.add_input("y", TensorType::new(DType::F32, Shape::fixed(&[6, 1, 301])));
        let s = g3.add_op("s", Op::Binary(BinaryOp::Sub), &[x, y]).unwrap();
        g3.add_output("s", s);
        let xs = random_tensor(&mut rng, &[6, 40, 301]);
        let ys = random_tensor(&mut rng, &[6, 1, 301]);
        check(&g3, &[xs, ys], isa, 3);
    }
}
