//! The brgemm micro-kernel against a naive f64-accumulated matmul: every tail
//! combination of M, N and K around the register tile, random large shapes with
//! padded leading dimensions, both B layouts, C = A·B and C += A·B, both ISAs.
//! Tail cases put A, B and C between guard pages, so any access outside the operands
//! faults. The emitted code is decoded back with iced-x86.

mod common;

use common::GuardedBuf;
use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};
use snipjit_x64::{BLayout, BPacker, Blocking, Brgemm, BrgemmOptions, BrgemmShape, Isa, X64Error};

const LAYOUTS: [BLayout; 2] = [BLayout::RowMajor, BLayout::Transposed];

/// xorshift64*: deterministic test data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [-1, 1).
    fn f(&mut self) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn len(rows: usize, cols: usize, ld: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * ld + cols
    }
}

/// Runs one case and checks every element of C (including the padding between rows,
/// which must be left untouched) against an f64 reference.
fn check(kern: &Brgemm, s: BrgemmShape, rng: &mut Rng, guarded: bool) {
    check_with(kern, None, s, rng, guarded, false)
}

/// As [`check`]; with a packer, B is made in the packer's source layout, packed (into
/// a guarded buffer of exactly `packed_len` floats when `guarded`), and the packed
/// kernel `kern` runs on the panels; with `scaled`, a row scale of exactly `M` floats
/// (between guard pages when `guarded`) multiplies row `i` of the result by
/// `scale[i]`.
fn check_with(
    kern: &Brgemm,
    packer: Option<&BPacker>,
    s: BrgemmShape,
    rng: &mut Rng,
    guarded: bool,
    scaled: bool,
) {
    let layout = packer.map_or(kern.options().b_layout, |p| p.source());
    let (br, bc) = match layout {
        BLayout::RowMajor => (s.k, s.n),
        BLayout::Transposed => (s.n, s.k),
        BLayout::Packed => unreachable!("packed B is made by the packer"),
    };
    let (la, lb, lc) = (
        len(s.m, s.k, s.lda),
        len(br, bc, s.ldb),
        len(s.m, s.n, s.ldc),
    );
    let a: Vec<f32> = (0..la).map(|_| rng.f()).collect();
    let b: Vec<f32> = (0..lb).map(|_| rng.f()).collect();
    let c0: Vec<f32> = (0..lc).map(|_| rng.f()).collect();
    let bval = |k: usize, j: usize| match layout {
        BLayout::Transposed => b[j * s.ldb + k],
        _ => b[k * s.ldb + j],
    };

    let (mut ga, mut gb, mut gc) = (
        GuardedBuf::new(la),
        GuardedBuf::new(lb),
        GuardedBuf::new(lc),
    );
    let (mut va, mut vb, mut vc) = (a.clone(), b.clone(), c0.clone());
    let (a_in, b_in, c_out): (&mut [f32], &mut [f32], &mut [f32]) = if guarded {
        (ga.slice(la), gb.slice(lb), gc.slice(lc))
    } else {
        (&mut va, &mut vb, &mut vc)
    };
    a_in.copy_from_slice(&a);
    b_in.copy_from_slice(&b);
    c_out.copy_from_slice(&c0);
    let scale: Vec<f32> = (0..s.m).map(|_| rng.f() * 4.0).collect();
    let mut gs = GuardedBuf::new(s.m);
    let mut vs = scale.clone();
    let scale_in: &mut [f32] = if guarded { gs.slice(s.m) } else { &mut vs };
    scale_in.copy_from_slice(&scale);
    match packer {
        None if scaled => kern.run_row_scaled(a_in, b_in, c_out, s, scale_in).unwrap(),
        None => kern.run(a_in, b_in, c_out, s).unwrap(),
        Some(p) => {
            let plen = p.packed_len(s.n, s.k);
            let mut gp = GuardedBuf::new(plen);
            let mut vp = vec![f32::NAN; plen];
            let packed: &mut [f32] = if guarded { gp.slice(plen) } else { &mut vp };
            p.pack(b_in, s.n, s.k, s.ldb, packed).unwrap();
            kern.run(a_in, packed, c_out, s).unwrap();
        }
    }
    assert!(a_in[..] == a[..] && b_in[..] == b[..], "A or B was written");

    let eps = f64::from(f32::EPSILON);
    let isa = kern.options().isa;
    for i in 0..s.m {
        for j in 0..s.ldc.min(lc - i * s.ldc) {
            let at = i * s.ldc + j;
            let got = f64::from(c_out[at]);
            if j >= s.n {
                assert_eq!(c_out[at], c0[at], "padding of C touched at ({i},{j}) {s:?}");
                continue;
            }
            let mut want = if s.accumulate { f64::from(c0[at]) } else { 0.0 };
            let mut mag = want.abs();
            for k in 0..s.k {
                let p = f64::from(a[i * s.lda + k]) * f64::from(bval(k, j));
                want += p;
                mag += p.abs();
            }
            // f32 accumulation of K + 1 terms in any order: |err| <= (K + 1) eps sum|terms|;
            // the row scale adds one rounding.
            let (want, mag) = if scaled {
                let f = f64::from(scale[i]);
                (want * f, mag * f.abs() + (want * f).abs())
            } else {
                (want, mag)
            };
            let tol = (s.k as f64 + 1.0) * eps * mag + f64::from(f32::MIN_POSITIVE);
            assert!(
                (got - want).abs() <= tol,
                "{isa} {layout:?} packed={} {s:?}: C[{i},{j}] = {got}, want {want} (tol {tol:e})",
                packer.is_some()
            );
        }
    }
}

fn kernels(test: &str) -> Vec<Brgemm> {
    let mut v = Vec::new();
    for isa in common::isas(test) {
        for layout in LAYOUTS {
            v.push(Brgemm::compile(BrgemmOptions::new(isa, layout)).unwrap());
        }
    }
    v
}

#[test]
fn every_tail_combination_between_guard_pages() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for kern in kernels("every_tail_combination_between_guard_pages") {
        let mr = kern.blocking().mr;
        let nb = kern.n_block();
        for m in 1..=2 * mr + 1 {
            for n in 1..=2 * nb + 1 {
                // Every K in 1..=17 meets every M and N residue across the sweep.
                let k = (m * 7 + n * 3) % 17 + 1;
                let mut s = BrgemmShape::dense(m, n, k, kern.options().b_layout);
                s.accumulate = (m + n) % 2 == 1;
                check(&kern, s, &mut rng, true);
            }
        }
    }
}

#[test]
fn row_scale_every_m_tail_between_guard_pages() {
    let mut rng = Rng(0x5eed);
    for kern in kernels("row_scale_every_m_tail_between_guard_pages") {
        let mr = kern.blocking().mr;
        let nb = kern.n_block();
        for m in 1..=3 * mr + 1 {
            for n in [1, nb - 1, nb, nb + 3, 2 * nb + 1] {
                for accumulate in [false, true] {
                    let k = (m * 5 + n) % 13 + 1;
                    let mut s = BrgemmShape::dense(m, n, k, kern.options().b_layout);
                    s.accumulate = accumulate;
                    check_with(&kern, None, s, &mut rng, true, true);
                }
            }
        }
    }
    // A scale shorter than M is an error, not a read past its end.
    let kern = &kernels("row_scale_every_m_tail_between_guard_pages")[0];
    let s = BrgemmShape::dense(4, 4, 4, kern.options().b_layout);
    let (a, b, mut c) = (vec![0.0; 16], vec![0.0; 16], vec![0.0; 16]);
    assert!(matches!(
        kern.run_row_scaled(&a, &b, &mut c, s, &[1.0; 3]),
        Err(X64Error::Args(_))
    ));
}

#[test]
fn all_k_tails_with_both_betas() {
    let mut rng = Rng(7);
    for kern in kernels("all_k_tails_with_both_betas") {
        let mr = kern.blocking().mr;
        let nb = kern.n_block();
        for k in 0..=17 {
            for accumulate in [false, true] {
                for (m, n) in [(mr, nb), (mr + 1, nb + 1), (1, 1), (2 * mr - 1, 2 * nb - 3)] {
                    let mut s = BrgemmShape::dense(m, n, k, kern.options().b_layout);
                    s.accumulate = accumulate;
                    check(&kern, s, &mut rng, true);
                }
            }
        }
    }
}

#[test]
fn random_large_shapes_with_padded_leading_dims() {
    let mut rng = Rng(0xdead_beef);
    let primes = [1, 2, 3, 5, 7, 13, 17, 31, 61, 67, 127, 131, 251, 257, 293];
    for kern in kernels("random_large_shapes_with_padded_leading_dims") {
        for case in 0..24 {
            let pick = |rng: &mut Rng| {
                if case % 2 == 0 {
                    primes[rng.below(primes.len())]
                } else {
                    1 + rng.below(300)
                }
            };
            let (m, n, k) = (pick(&mut rng), pick(&mut rng), pick(&mut rng));
            let mut s = BrgemmShape::dense(m, n, k, kern.options().b_layout);
            s.lda += rng.below(9);
            s.ldb += rng.below(9);
            s.ldc += rng.below(9);
            s.accumulate = case % 3 == 0;
            check(&kern, s, &mut rng, false);
        }
    }
}

#[test]
fn attention_shapes() {
    let mut rng = Rng(42);
    for kern in kernels("attention_shapes") {
        let shapes = match kern.options().b_layout {
            // Q·K^T: 32×64 Q block against S_blk rows of K.
            BLayout::Transposed => [(32, 64, 64), (32, 128, 64), (32, 77, 64), (1, 200, 80)],
            // P·V: 32×S_blk probabilities against V (S_blk × 64).
            _ => [(32, 64, 64), (32, 64, 128), (32, 64, 77), (1, 80, 200)],
        };
        for (m, n, k) in shapes {
            for accumulate in [false, true] {
                let mut s = BrgemmShape::dense(m, n, k, kern.options().b_layout);
                s.accumulate = accumulate;
                check(&kern, s, &mut rng, false);
            }
        }
    }
}

#[test]
fn other_blockings_agree() {
    let mut rng = Rng(3);
    for isa in common::isas("other_blockings_agree") {
        let blockings: &[(usize, usize, usize)] = match isa {
            Isa::Avx512 => &[(8, 3, 2), (4, 4, 1), (9, 2, 8), (1, 1, 3), (14, 2, 4)],
            Isa::Avx2 => &[(4, 2, 2), (3, 3, 1), (1, 4, 4), (9, 1, 8)],
        };
        for &(mr, nr, k_unroll) in blockings {
            for layout in LAYOUTS {
                let bl = Blocking { mr, nr, k_unroll };
                let opts = BrgemmOptions {
                    blocking: Some(bl),
                    ..BrgemmOptions::new(isa, layout)
                };
                let kern = match Brgemm::compile(opts) {
                    Ok(k) => k,
                    Err(e) => {
                        // mr = 14 exceeds the row bases the kernel keeps: a clear error.
                        assert!(mr > 9, "{bl:?} on {isa}: {e}");
                        continue;
                    }
                };
                for (m, n, k) in [
                    (2 * mr + 1, 2 * kern.n_block() + 1, 9),
                    (mr, 5, 1),
                    (37, 53, 19),
                ] {
                    let mut s = BrgemmShape::dense(m, n, k, layout);
                    s.accumulate = k % 2 == 1;
                    check(&kern, s, &mut rng, true);
                }
            }
        }
    }
}

#[test]
fn bad_arguments_are_errors() {
    for kern in kernels("bad_arguments_are_errors") {
        let layout = kern.options().b_layout;
        let s = BrgemmShape::dense(4, 5, 6, layout);
        let a = vec![0f32; 24];
        let b = vec![0f32; 30];
        let mut c = vec![0f32; 20];
        assert!(kern.run(&a, &b, &mut c, s).is_ok());
        let short = |r: Result<(), X64Error>| matches!(r, Err(X64Error::Args(_)));
        assert!(short(kern.run(&a[..23], &b, &mut c, s)));
        assert!(short(kern.run(&a, &b[..29], &mut c, s)));
        assert!(short(kern.run(&a, &b, &mut c[..19], s)));
        assert!(short(kern.run(&a, &b, &mut c, BrgemmShape { lda: 5, ..s })));
        assert!(short(kern.run(&a, &b, &mut c, BrgemmShape { ldc: 4, ..s })));
        let ldb_small = match layout {
            BLayout::Transposed => 5,
            _ => 4,
        };
        assert!(short(kern.run(
            &a,
            &b,
            &mut c,
            BrgemmShape {
                ldb: ldb_small,
                ..s
            }
        )));
        // Absurd sizes are errors, not overflows.
        let huge = usize::MAX / 2;
        let big = BrgemmShape {
            n: huge,
            k: huge,
            lda: huge,
            ldb: huge,
            ldc: huge,
            ..s
        };
        assert!(short(kern.run(&a, &b, &mut c, big)));
        // Empty M: only B has elements; empty N: only A.
        assert!(
            kern.run(&[], &b, &mut [], BrgemmShape::dense(0, 5, 6, layout))
                .is_ok()
        );
        assert!(
            kern.run(&a[..18], &[], &mut [], BrgemmShape::dense(3, 0, 6, layout))
                .is_ok()
        );
    }
    assert!(
        Brgemm::compile(BrgemmOptions {
            blocking: Some(Blocking {
                mr: 8,
                nr: 4,
                k_unroll: 4
            }),
            ..BrgemmOptions::new(Isa::Avx512, BLayout::RowMajor)
        })
        .is_err(),
        "8x4 zmm needs 37 registers"
    );
    assert!(
        Brgemm::compile(BrgemmOptions {
            blocking: Some(Blocking {
                mr: 6,
                nr: 3,
                k_unroll: 4
            }),
            ..BrgemmOptions::new(Isa::Avx2, BLayout::RowMajor)
        })
        .is_err(),
        "6x3 ymm needs 22 registers"
    );
}

#[test]
fn k_zero_zeroes_or_keeps_c() {
    for kern in kernels("k_zero_zeroes_or_keeps_c") {
        let s = BrgemmShape::dense(7, 19, 0, kern.options().b_layout);
        let mut c = vec![3.5f32; 7 * 19];
        kern.run(
            &[],
            &[],
            &mut c,
            BrgemmShape {
                accumulate: true,
                ..s
            },
        )
        .unwrap();
        assert!(c.iter().all(|&x| x == 3.5));
        kern.run(&[], &[], &mut c, s).unwrap();
        assert!(c.iter().all(|&x| x == 0.0));
    }
}

#[test]
fn one_kernel_runs_on_many_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Brgemm>();
    for kern in kernels("one_kernel_runs_on_many_threads") {
        std::thread::scope(|sc| {
            for t in 0..2u64 {
                let kern = &kern;
                sc.spawn(move || {
                    let mut rng = Rng(100 + t);
                    for i in 0..10 {
                        let m = 1 + (i * 5 + t as usize) % 40;
                        let s = BrgemmShape::dense(m, 70 - i, 33, kern.options().b_layout);
                        check(kern, s, &mut rng, false);
                    }
                });
            }
        });
    }
}

// ----- decode-back ---------------------------------------------------------------------

fn decode(kern: &snipjit_x64::Kernel) -> Vec<Instruction> {
    let insns: Vec<Instruction> = Decoder::with_ip(64, kern.code(), 0, DecoderOptions::NONE)
        .into_iter()
        .collect();
    assert!(
        insns.iter().all(|i| !i.is_invalid()),
        "invalid bytes:\n{}",
        kern.disasm()
    );
    insns
}

#[test]
fn packers_decode_back() {
    for isa in Isa::ALL {
        for source in LAYOUTS {
            let p = BPacker::compile(isa, source, None).unwrap();
            let insns = decode(p.kernel());
            let count = |m: Mnemonic| insns.iter().filter(|i| i.mnemonic() == m).count();
            assert_eq!(count(Mnemonic::Ret), 1);
            assert_eq!(count(Mnemonic::Vfmadd231ps), 0, "a packer computes nothing");
            match (isa, source) {
                (_, BLayout::Transposed) => {
                    // One gather loop (the K remainder) per row group.
                    assert_eq!(count(Mnemonic::Vgatherdps), Blocking::default_for(isa).nr)
                }
                (Isa::Avx512, _) => {
                    assert!(insns.iter().any(|i| i.mnemonic() == Mnemonic::Vmovups
                        && i.op_mask() == Register::K2
                        && i.zeroing_masking()))
                }
                (Isa::Avx2, _) => assert_eq!(count(Mnemonic::Vmaskmovps), 2),
            }
            for i in &insns {
                if isa == Isa::Avx2 {
                    assert_ne!(i.encoding(), iced_x86::EncodingKind::EVEX, "{i}");
                }
            }
        }
    }
}

fn is_width(r: Register, isa: Isa) -> bool {
    match isa {
        Isa::Avx512 => r.is_zmm(),
        Isa::Avx2 => r.is_ymm(),
    }
}

#[test]
fn emitted_code_decodes_back() {
    // Encoding needs no CPU support: both ISAs are checked on any machine.
    for isa in Isa::ALL {
        for layout in [BLayout::RowMajor, BLayout::Transposed, BLayout::Packed] {
            let kern = Brgemm::compile(BrgemmOptions::new(isa, layout)).unwrap();
            let bl = kern.blocking();
            let insns = decode(kern.kernel());
            let size = kern.kernel().code().len();
            eprintln!("{isa} {layout:?}: {size} bytes of code");
            // Every (width, rows) tile variant is compiled ahead; keep that bounded.
            assert!(size < 96 * 1024, "{isa} {layout:?}: {size} bytes");
            let count = |m: Mnemonic| insns.iter().filter(|i| i.mnemonic() == m).count();

            // FMAs: full width, register operands only, one per accumulator per k step.
            let fmas: Vec<&Instruction> = insns
                .iter()
                .filter(|i| i.mnemonic() == Mnemonic::Vfmadd231ps)
                .collect();
            assert!(
                fmas.len() >= bl.mr * bl.nr * bl.k_unroll,
                "{isa} {layout:?}"
            );
            for f in &fmas {
                assert!(is_width(f.op0_register(), isa), "{isa}: {f}");
                assert_eq!(f.op_kind(2), OpKind::Register, "{isa}: {f}");
            }
            // Broadcasts of A: full width from memory (dynasm's xmm form would zero the
            // upper lanes).
            let bcasts: Vec<&Instruction> = insns
                .iter()
                .filter(|i| i.mnemonic() == Mnemonic::Vbroadcastss)
                .collect();
            assert!(bcasts.len() >= bl.mr * bl.k_unroll);
            for b in &bcasts {
                assert!(is_width(b.op0_register(), isa), "{isa}: {b}");
                assert_eq!(b.op_kind(1), OpKind::Memory, "{isa}: {b}");
            }
            // Vector moves are full width; AVX2 code is all VEX, tails via vmaskmovps;
            // AVX-512 tails via k1.
            for i in &insns {
                if i.mnemonic() == Mnemonic::Vmovups {
                    let r = if i.op_kind(0) == OpKind::Register {
                        i.op0_register()
                    } else {
                        i.op1_register()
                    };
                    assert!(is_width(r, isa), "{isa}: {i}");
                }
                if isa == Isa::Avx2 {
                    assert_ne!(i.encoding(), iced_x86::EncodingKind::EVEX, "{i}");
                }
            }
            match isa {
                Isa::Avx2 => assert!(count(Mnemonic::Vmaskmovps) > 0),
                Isa::Avx512 => assert!(
                    insns
                        .iter()
                        .any(|i| i.mnemonic() == Mnemonic::Vmovups && i.op_mask() == Register::K1)
                ),
            }
            let gathers = count(Mnemonic::Vgatherdps);
            match layout {
                BLayout::RowMajor | BLayout::Packed => assert_eq!(gathers, 0),
                BLayout::Transposed => {
                    // Per row group: the full K chunks are transposed in registers
                    // (16x16: 32 block shuffles; 8x8: 8 vperm2f128), once for a full
                    // group and once for a group cut by the panel end (its missing
                    // rows zero); one gather loop for the K remainder after either.
                    assert_eq!(gathers, bl.nr, "{isa}");
                    let (blocks, per_group) = match isa {
                        Isa::Avx512 => (count(Mnemonic::Vshuff32x4), 32),
                        Isa::Avx2 => (count(Mnemonic::Vperm2f128), 8),
                    };
                    assert_eq!(blocks, 2 * per_group * bl.nr, "{isa}");
                    assert_eq!(count(Mnemonic::Vunpcklps), isa.lanes() * bl.nr);
                }
            }
            assert_eq!(count(Mnemonic::Ret), 1);
        }
    }
}

// ----- packed B ----------------------------------------------------------------------

fn packed_kernels(test: &str) -> Vec<(Brgemm, BPacker)> {
    let mut v = Vec::new();
    for isa in common::isas(test) {
        for source in LAYOUTS {
            let kern = Brgemm::compile(BrgemmOptions::new(isa, BLayout::Packed)).unwrap();
            let packer = BPacker::for_kernel(&kern, source).unwrap();
            v.push((kern, packer));
        }
    }
    v
}

#[test]
fn packed_b_every_tail_between_guard_pages() {
    let mut rng = Rng(11);
    for (kern, packer) in packed_kernels("packed_b_every_tail_between_guard_pages") {
        let mr = kern.blocking().mr;
        let nb = kern.n_block();
        for m in [1, mr, mr + 1, 2 * mr + 1] {
            for n in 1..=2 * nb + 1 {
                let k = (m * 5 + n * 3) % 18 + 1;
                let mut s = BrgemmShape::dense(m, n, k, packer.source());
                s.ldb += n % 3;
                s.accumulate = n % 2 == 0;
                check_with(&kern, Some(&packer), s, &mut rng, true, false);
            }
        }
    }
}

#[test]
fn packed_b_random_and_attention_shapes() {
    let mut rng = Rng(12);
    for (kern, packer) in packed_kernels("packed_b_random_and_attention_shapes") {
        let mut shapes = vec![(32, 64, 64), (32, 256, 64), (32, 64, 256), (293, 131, 67)];
        for _ in 0..8 {
            shapes.push((1 + rng.below(300), 1 + rng.below(300), 1 + rng.below(300)));
        }
        for (i, &(m, n, k)) in shapes.iter().enumerate() {
            let mut s = BrgemmShape::dense(m, n, k, packer.source());
            s.lda += i % 5;
            s.ldb += i % 4;
            s.ldc += i % 3;
            s.accumulate = i % 2 == 1;
            check_with(&kern, Some(&packer), s, &mut rng, false, false);
        }
    }
}

#[test]
fn packed_layout_is_panels_of_k_rows() {
    // The layout contract, checked element by element: panel p, row k, column j holds
    // B[k, p * N_blk + j]; a row-major source zero-fills the columns past N.
    let mut rng = Rng(13);
    for (kern, packer) in packed_kernels("packed_layout_is_panels_of_k_rows") {
        let nb = packer.n_block();
        assert_eq!(nb, kern.n_block());
        let (n, k) = (2 * nb + 5, 19);
        let source = packer.source();
        let ldb = match source {
            BLayout::Transposed => k + 3,
            _ => n + 2,
        };
        let rows = if source == BLayout::Transposed { n } else { k };
        let b: Vec<f32> = (0..rows * ldb).map(|_| rng.f()).collect();
        let mut packed = vec![f32::NAN; packer.packed_len(n, k)];
        assert_eq!(packed.len(), 3 * k * nb);
        packer.pack(&b, n, k, ldb, &mut packed).unwrap();
        for p in 0..3 {
            for kk in 0..k {
                for j in 0..nb {
                    let col = p * nb + j;
                    let got = packed[(p * k + kk) * nb + j];
                    if col < n {
                        let want = match source {
                            BLayout::Transposed => b[col * ldb + kk],
                            _ => b[kk * ldb + col],
                        };
                        assert_eq!(got, want, "{source:?} panel {p} k {kk} col {j}");
                    } else if source == BLayout::RowMajor {
                        assert_eq!(got, 0.0, "zero fill at panel {p} k {kk} col {j}");
                    }
                }
            }
        }
        // Errors, not panics.
        let short = |r: Result<(), X64Error>| matches!(r, Err(X64Error::Args(_)));
        let cols = if source == BLayout::Transposed { k } else { n };
        let need = (rows - 1) * ldb + cols;
        assert!(packer.pack(&b[..need], n, k, ldb, &mut packed).is_ok());
        assert!(short(packer.pack(&b[..need - 1], n, k, ldb, &mut packed)));
        let plen = packed.len();
        assert!(short(packer.pack(&b, n, k, ldb, &mut packed[..plen - 1])));
        assert!(short(packer.pack(&b, n, k, 1, &mut packed)));
        let s = BrgemmShape::dense(2, n, k, BLayout::Packed);
        assert!(short(kern.run(
            &vec![0.0; 2 * k],
            &packed[..plen - 1],
            &mut vec![0.0; 2 * n],
            s
        )));
    }
    for (kern, packer) in packed_kernels("packed_layout_is_panels_of_k_rows (sizes)") {
        let huge = usize::MAX / 3;
        let short = |r: Result<(), X64Error>| matches!(r, Err(X64Error::Args(_)));
        assert!(short(packer.pack(
            &[1.0; 8],
            huge,
            huge,
            huge,
            &mut [0.0; 8]
        )));
        let s = BrgemmShape::dense(1, huge, huge, BLayout::Packed);
        assert!(short(kern.run(&[0.0; 8], &[0.0; 8], &mut [0.0; 8], s)));
    }
    assert!(BPacker::compile(Isa::Avx2, BLayout::Packed, None).is_err());
}
