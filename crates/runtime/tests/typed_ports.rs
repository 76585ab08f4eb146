//! Ports of every JIT dtype (bool, u8, i8, i32, bf16, f16, f32) and Convert between
//! them, checked against the reference interpreter on both ISAs: every tail length
//! 1..=2*lanes+1, inner and row broadcasts, several rows. Integer and bool outputs
//! must match bit-exactly; bf16/f16 outputs of pure conversions too; f32 outputs
//! within the tolerance of the emitters.

use half::{bf16, f16};
use snipjit_ir::{
    BinaryOp, DType, Dim, Graph, Op, Shape, Tensor, TensorData, TensorType, UnaryOp, ValueRef,
};
use snipjit_runtime::{Executor, JitSubgraph};
use snipjit_x64::Isa;

fn isas() -> Vec<Isa> {
    let v: Vec<Isa> = [Isa::Avx512, Isa::Avx2]
        .into_iter()
        .filter(|i| i.is_supported())
        .collect();
    if !Isa::Avx512.is_supported() {
        eprintln!("SKIPPED: AVX-512 typed-port tests (this CPU has no AVX-512)");
    }
    if !Isa::Avx2.is_supported() {
        eprintln!("SKIPPED: AVX2 typed-port tests (this CPU has no AVX2)");
    }
    v
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
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// f32 values that stress conversions: specials, saturation edges, halfway cases of
/// bf16/f16, denormals, and ordinary values.
const F32_SPECIALS: [f32; 24] = [
    0.0,
    -0.0,
    f32::NAN,
    f32::INFINITY,
    f32::NEG_INFINITY,
    3.0e9,
    -3.0e9,
    2_147_483_648.0,
    -2_147_483_648.0,
    2_147_483_520.0,
    255.9,
    -128.9,
    300.5,
    -0.7,
    0.7,
    65520.0,
    65504.0,
    1.0e-41,
    -6.0e-8,
    1.0 + 1.0 / 256.0, // a bf16 tie (to even: down)
    1.0 + 3.0 / 256.0, // a bf16 tie (to even: up)
    3.402_823_5e38,
    1.000_488_3, // near an f16 tie
    -17.25,
];

fn random_f32(rng: &mut Rng) -> f32 {
    match rng.below(4) {
        0 => F32_SPECIALS[rng.below(F32_SPECIALS.len() as u64) as usize],
        1 => f32::from_bits(rng.next() as u32),
        _ => (rng.below(2_000_001) as f32 - 1_000_000.0) / 1000.0,
    }
}

fn random_data(rng: &mut Rng, dtype: DType, n: usize) -> TensorData {
    match dtype {
        DType::F32 => TensorData::F32((0..n).map(|_| random_f32(rng)).collect()),
        DType::BF16 => TensorData::BF16((0..n).map(|_| bf16::from_f32(random_f32(rng))).collect()),
        DType::F16 => TensorData::F16((0..n).map(|_| f16::from_f32(random_f32(rng))).collect()),
        DType::I32 => TensorData::I32(
            (0..n)
                .map(|_| match rng.below(3) {
                    0 => rng.next() as i32,
                    // 2^24 + 2^16 + 1: through a nearest-even f32 it becomes a bf16 tie
                    // and rounds down; rounded once it rounds up.
                    1 => [
                        i32::MIN,
                        i32::MAX,
                        0,
                        -1,
                        16_777_217,
                        -16_777_217,
                        0x7fff_ff80,
                        16_842_753,
                        -16_842_753,
                    ][rng.below(9) as usize],
                    _ => rng.below(601) as i32 - 300,
                })
                .collect(),
        ),
        DType::U8 => TensorData::U8((0..n).map(|_| rng.next() as u8).collect()),
        DType::I8 => TensorData::I8((0..n).map(|_| rng.next() as i8).collect()),
        DType::Bool => TensorData::Bool((0..n).map(|_| rng.below(2) == 1).collect()),
        DType::I64 => unreachable!("no i64 ports"),
    }
}

/// Compares one output: bit-exact for ints, bools, and (with `exact`) floats; else a
/// few ULP of f32. NaN matches any NaN.
fn assert_matches(got: &Tensor, want: &Tensor, exact: bool, what: &str) {
    assert_eq!(got.shape, want.shape, "{what}: shape");
    assert_eq!(got.dtype(), want.dtype(), "{what}: dtype");
    let n = want.data.len();
    assert_eq!(got.data.len(), n, "{what}: length");
    for i in 0..n {
        let (a, b) = (got.data.get_f64(i), want.data.get_f64(i));
        let ok = match want.dtype() {
            DType::F32 | DType::BF16 | DType::F16 => {
                (a.is_nan() && b.is_nan())
                    || a == b && a.is_sign_negative() == b.is_sign_negative()
                    || (!exact && (a - b).abs() <= 1e-5 + 4e-6 * b.abs())
            }
            _ => a == b,
        };
        assert!(ok, "{what}: element {i}: jit {a} vs interpreter {b}");
    }
}

/// Builds `[N, C]` graphs: `inputs` are (name, dtype, broadcast) with broadcast 0 =
/// full, 1 = row broadcast `[1, C]`, 2 = inner broadcast `[N, 1]`; `body` adds the ops
/// and returns the outputs.
fn graph(
    name: &str,
    inputs: &[(&str, DType, u8)],
    body: impl FnOnce(&mut Graph, &[ValueRef]) -> Vec<ValueRef>,
) -> Graph {
    let mut g = Graph::new(name);
    let ins: Vec<ValueRef> = inputs
        .iter()
        .map(|&(n, dt, b)| {
            let dims = match b {
                0 => vec![Dim::sym("N"), Dim::sym("C")],
                1 => vec![Dim::Static(1), Dim::sym("C")],
                _ => vec![Dim::sym("N"), Dim::Static(1)],
            };
            g.add_input(n, TensorType::new(dt, dims.into_iter().collect::<Shape>()))
        })
        .collect();
    for (k, v) in body(&mut g, &ins).into_iter().enumerate() {
        g.add_output(format!("out{k}"), v);
    }
    g
}

fn op(g: &mut Graph, name: &str, o: Op, ins: &[ValueRef]) -> ValueRef {
    g.add_op(name, o, ins).unwrap()
}

fn cvt(g: &mut Graph, name: &str, x: ValueRef, to: DType) -> ValueRef {
    op(g, name, Op::Convert { to }, &[x])
}

/// Runs `g` on random inputs of every tail length and a few row counts, on every ISA.
fn check(g: &Graph, exact: bool) {
    let mut rng = Rng(0x5eed_1234 ^ g.name.len() as u64);
    for isa in isas() {
        let sg = JitSubgraph::new(g.clone(), isa).unwrap_or_else(|e| panic!("{}: {e}", g.name));
        let exec = Executor::new(1).unwrap();
        for rows in [1usize, 3] {
            for c in 1..=2 * isa.lanes() + 1 {
                let inputs: Vec<Tensor> = g
                    .inputs
                    .iter()
                    .map(|&p| {
                        let ty = &g.node(p).outputs[0].ty;
                        let dims: Vec<usize> = ty
                            .shape
                            .dims()
                            .iter()
                            .enumerate()
                            .map(|(k, d)| match d {
                                Dim::Static(s) => *s,
                                _ if k == 0 => rows,
                                _ => c,
                            })
                            .collect();
                        let n = dims.iter().product();
                        Tensor::new(dims, random_data(&mut rng, ty.dtype, n)).unwrap()
                    })
                    .collect();
                let refs: Vec<&Tensor> = inputs.iter().collect();
                let got = sg.run(&refs, &exec).unwrap();
                let want = snipjit_interp::run(g, &inputs).unwrap();
                assert_eq!(got.len(), want.len());
                for (o, (a, b)) in got.iter().zip(&want).enumerate() {
                    assert_matches(
                        a,
                        b,
                        exact,
                        &format!("{} {isa} rows={rows} C={c} output {o}", g.name),
                    );
                }
                // Reused outputs (run_into) give the same values.
                let mut again = got.clone();
                sg.run_into(&refs, &mut again, &exec).unwrap();
                for (o, (a, b)) in again.iter().zip(&got).enumerate() {
                    assert_matches(
                        a,
                        b,
                        true,
                        &format!("{} {isa}: run_into output {o}", g.name),
                    );
                }
            }
        }
    }
}

#[test]
fn where_with_a_bool_condition_input() {
    for bc in [0, 1, 2] {
        let g = graph(
            &format!("where_bool_b{bc}"),
            &[
                ("c", DType::Bool, bc),
                ("a", DType::F32, 0),
                ("b", DType::F32, 1),
            ],
            |g, i| vec![op(g, "w", Op::Select, &[i[0], i[1], i[2]])],
        );
        check(&g, true);
    }
}

#[test]
fn comparison_results_as_bool_outputs() {
    let g = graph(
        "cmp_out",
        &[("a", DType::F32, 0), ("b", DType::F32, 2)],
        |g, i| {
            let lt = op(g, "lt", Op::Binary(BinaryOp::Less), &[i[0], i[1]]);
            let eq = op(g, "eq", Op::Binary(BinaryOp::Equal), &[i[0], i[1]]);
            let s = op(g, "s", Op::Binary(BinaryOp::Add), &[i[0], i[1]]);
            vec![lt, s, eq]
        },
    );
    check(&g, false);
}

#[test]
fn logic_on_bool_inputs() {
    for bc in [0, 1, 2] {
        let g = graph(
            &format!("logic_b{bc}"),
            &[("p", DType::Bool, 0), ("q", DType::Bool, bc)],
            |g, i| {
                let np = op(g, "np", Op::Unary(UnaryOp::Not), &[i[0]]);
                let a = op(g, "a", Op::Binary(BinaryOp::And), &[np, i[1]]);
                let o = op(g, "o", Op::Binary(BinaryOp::Or), &[a, i[0]]);
                let x = op(g, "x", Op::Binary(BinaryOp::Xor), &[i[0], i[1]]);
                vec![o, x, np]
            },
        );
        check(&g, true);
    }
}

#[test]
fn convert_chains_through_integers_and_narrow_floats() {
    let g = graph("chains", &[("x", DType::F32, 0)], |g, i| {
        let xi = cvt(g, "xi", i[0], DType::I32);
        let xif = cvt(g, "xif", xi, DType::F32);
        let xb = cvt(g, "xb", i[0], DType::BF16);
        let xbf = cvt(g, "xbf", xb, DType::F32);
        let xh = cvt(g, "xh", i[0], DType::F16);
        let xhb = cvt(g, "xhb", xh, DType::BF16);
        let xu = cvt(g, "xu", i[0], DType::U8);
        let xs = cvt(g, "xs", i[0], DType::I8);
        let xiu = cvt(g, "xiu", xi, DType::U8);
        let xis = cvt(g, "xis", xi, DType::I8);
        let xbh = cvt(g, "xbh", xb, DType::F16);
        vec![xif, xi, xbf, xb, xh, xhb, xu, xs, xiu, xis, xbh]
    });
    check(&g, true);
}

#[test]
fn narrow_inputs_converted_to_f32() {
    for bc in [0, 1, 2] {
        let g = graph(
            &format!("narrow_in_b{bc}"),
            &[
                ("u", DType::U8, 0),
                ("s", DType::I8, bc),
                ("h", DType::F16, 0),
                ("b", DType::BF16, 0),
                ("i", DType::I32, 0),
            ],
            |g, i| {
                let uf = cvt(g, "uf", i[0], DType::F32);
                let sf = cvt(g, "sf", i[1], DType::F32);
                let hf = cvt(g, "hf", i[2], DType::F32);
                let bf = cvt(g, "bf", i[3], DType::F32);
                let m = op(g, "m", Op::Binary(BinaryOp::Mul), &[uf, sf]);
                let a = op(g, "a", Op::Binary(BinaryOp::Add), &[hf, bf]);
                let ib = cvt(g, "ib", i[4], DType::BF16);
                let ih = cvt(g, "ih", i[4], DType::F16);
                let iu = cvt(g, "iu", i[4], DType::U8);
                let us = cvt(g, "us", i[0], DType::I8);
                let su = cvt(g, "su", i[1], DType::U8);
                let ub = cvt(g, "ub", i[0], DType::BF16);
                let mut outs = vec![m, a, ib, ih, iu, us, ub];
                if bc == 0 {
                    outs.push(su);
                }
                outs
            },
        );
        check(&g, false);
    }
}

#[test]
fn every_dtype_passes_through() {
    // Identity-like bodies: each port dtype loaded and stored unchanged (Convert to the
    // same dtype), plus the same values through f32 and back.
    for dt in [
        DType::F32,
        DType::BF16,
        DType::F16,
        DType::I32,
        DType::U8,
        DType::I8,
    ] {
        for bc in [0, 1, 2] {
            let g = graph(
                &format!("pass_{dt}_b{bc}"),
                &[("x", dt, bc), ("y", DType::F32, 0)],
                |g, i| {
                    let same = cvt(g, "same", i[0], dt);
                    let f = cvt(g, "f", i[0], DType::F32);
                    let s = op(g, "s", Op::Binary(BinaryOp::Add), &[f, i[1]]);
                    let back = cvt(g, "back", s, dt);
                    // An output of the broadcast input alone has the input's smaller shape.
                    if bc == 0 {
                        vec![same, back]
                    } else {
                        vec![back]
                    }
                },
            );
            check(&g, dt != DType::F32);
        }
    }
}

#[test]
fn bool_conversions() {
    let g = graph(
        "bools",
        &[("x", DType::F32, 0), ("p", DType::Bool, 0)],
        |g, i| {
            let xb = cvt(g, "xb", i[0], DType::Bool);
            let pf = cvt(g, "pf", i[1], DType::F32);
            let pi = cvt(g, "pi", i[1], DType::I32);
            let pu = cvt(g, "pu", i[1], DType::U8);
            let ph = cvt(g, "ph", i[1], DType::F16);
            let xi = cvt(g, "xi", i[0], DType::I32);
            let xib = cvt(g, "xib", xi, DType::Bool);
            vec![xb, pf, pi, pu, ph, xib]
        },
    );
    check(&g, true);
}

#[test]
fn many_narrow_ports_spill_pointers() {
    // Twelve u8 inputs summed as f32 and stored as u8 and bool: pointers past the ninth
    // live on the stack, and the AVX2 tail copy must not disturb them.
    let names: Vec<String> = (0..12).map(|k| format!("x{k}")).collect();
    let ins: Vec<(&str, DType, u8)> = names.iter().map(|n| (n.as_str(), DType::U8, 0)).collect();
    let g = graph("wide_u8", &ins, |g, i| {
        let mut acc = cvt(g, "c0", i[0], DType::F32);
        for (k, &v) in i.iter().enumerate().skip(1) {
            let f = cvt(g, &format!("c{k}"), v, DType::F32);
            acc = op(g, &format!("a{k}"), Op::Binary(BinaryOp::Add), &[acc, f]);
        }
        let u = cvt(g, "u", acc, DType::U8);
        let half = op(g, "h", Op::Constant(Tensor::scalar_f32(1500.0)), &[]);
        let b = op(g, "b", Op::Binary(BinaryOp::Greater), &[acc, half]);
        vec![u, b, acc]
    });
    check(&g, true);
}

/// Runs `g` once on the given inputs with `threads` threads and compares.
fn check_once(g: &Graph, inputs: &[Tensor], threads: usize, exact: bool) {
    for isa in isas() {
        let sg = JitSubgraph::new(g.clone(), isa).unwrap();
        let exec = Executor::new(threads).unwrap();
        let refs: Vec<&Tensor> = inputs.iter().collect();
        let got = sg.run(&refs, &exec).unwrap();
        let want = snipjit_interp::run(g, inputs).unwrap();
        for (o, (a, b)) in got.iter().zip(&want).enumerate() {
            assert_matches(
                a,
                b,
                exact,
                &format!("{} {isa} x{threads} output {o}", g.name),
            );
        }
    }
}

#[test]
fn narrow_ports_split_over_threads_and_non_temporal_stores() {
    let min = snipjit_runtime::MIN_ELEMENTS_PER_THREAD;
    let mut rng = Rng(99);
    // u8 and bool in, bool and bf16 out: one long row split into vector chunks (the
    // chunk offsets scale by each port's element size), then many rows.
    let g = graph(
        "split",
        &[("u", DType::U8, 0), ("p", DType::Bool, 0)],
        |g, i| {
            let f = cvt(g, "f", i[0], DType::F32);
            let half = op(g, "h", Op::Constant(Tensor::scalar_f32(100.0)), &[]);
            let gt = op(g, "gt", Op::Binary(BinaryOp::Greater), &[f, half]);
            let both = op(g, "both", Op::Binary(BinaryOp::And), &[gt, i[1]]);
            let b = cvt(g, "b", f, DType::BF16);
            vec![both, b]
        },
    );
    for dims in [[1usize, 2 * min + 5], [2 * min / 333 + 7, 333]] {
        let n = dims[0] * dims[1];
        let inputs = vec![
            Tensor::new(dims.to_vec(), random_data(&mut rng, DType::U8, n)).unwrap(),
            Tensor::new(dims.to_vec(), random_data(&mut rng, DType::Bool, n)).unwrap(),
        ];
        check_once(&g, &inputs, 3, true);
    }
    // An f32 output past the non-temporal threshold, read from an i8 input: the
    // main loop stores with vmovntps while loading bytes.
    let g = graph("nt", &[("s", DType::I8, 0)], |g, i| {
        vec![cvt(g, "f", i[0], DType::F32)]
    });
    let n = snipjit_runtime::NT_STORE_MIN_BYTES / 4 + 77;
    let inputs = vec![Tensor::new(vec![1, n], random_data(&mut rng, DType::I8, n)).unwrap()];
    check_once(&g, &inputs, 2, true);
}
