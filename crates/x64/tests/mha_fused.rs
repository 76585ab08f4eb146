//! The fused attention kernel ([`MhaFused`]) against an f64 reference attention.
//!
//! Every operand and scratch buffer ends exactly at a guard page (a read or write past
//! it faults), output padding between rows must stay untouched, and each case runs as
//! two work items over the same head: the first packs K (`pack = true`), the second
//! reuses the packed K (`pack = false`), as the runtime does.
//!
//! Tolerance, per output element: the kernel's f32 scores differ from the exact ones by
//! at most `dx = 2·D·u·|c|·Σ_i |q_i k_i|` (u = 2^-24, c the scale; the worst case of
//! an f32 dot product), which moves each weight `p_j` by a relative `2·dx`; `exp`, the
//! running rescale and the f32 sums add ~1e-5 relative. Relative to the magnitude of
//! the averaged terms: `|out - ref| <= (1e-5 + 4·dx) · Σ_j p_j |v_j| / Σ_j p_j`.

mod common;

use common::Rng;

use common::GuardedBuf;
use iced_x86::{Decoder, DecoderOptions, EncodingKind, Instruction, Mnemonic, OpKind, Register};
use snipjit_x64::{
    AttnMask, AttnScale, Isa, KLayout, MaskRef, MhaFused, MhaFusedOptions, MhaItemShape,
    MhaScratch, X64Error,
};

#[derive(Clone, Copy, Debug)]
enum TestMask {
    None,
    /// Additive f32 mask; `rows_bcast`: one mask row for every Q row (stride 0);
    /// `cols_bcast`: one element per row.
    Add {
        rows_bcast: bool,
        cols_bcast: bool,
    },
    Bool {
        fill: f32,
        keep: bool,
        rows_bcast: bool,
        cols_bcast: bool,
    },
}

#[derive(Clone, Copy, Debug)]
struct Case {
    rows: usize,
    l: usize,
    d: usize,
    dv: usize,
    n_blk: usize,
    layout: KLayout,
    scale: Option<AttnScale>,
    mask: TestMask,
    /// Padding added to each leading dimension.
    pad: usize,
    /// Rows of the first work item (the one that packs K).
    split: usize,
}

fn len(rows: usize, cols: usize, ld: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * ld + cols
    }
}

/// A guarded copy of `data` (ending at the guard page).
fn guarded(data: &[f32]) -> GuardedBuf {
    let mut g = GuardedBuf::new(data.len());
    g.slice(data.len()).copy_from_slice(data);
    g
}

fn fill(rng: &mut Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.f(lo, hi)).collect()
}

fn run_case(isa: Isa, c: Case, rng: &mut Rng) {
    let kern = MhaFused::compile(MhaFusedOptions::new(
        isa,
        c.layout,
        c.scale,
        match c.mask {
            TestMask::None => AttnMask::None,
            TestMask::Add { .. } => AttnMask::Additive,
            TestMask::Bool { fill, keep, .. } => AttnMask::Boolean {
                fill,
                keep_when: keep,
            },
        },
    ))
    .unwrap();
    let (ldq, ldv, ldo) = (c.d + c.pad, c.dv + c.pad, c.dv + c.pad);
    let (kr, kc) = match c.layout {
        KLayout::Transposed => (c.l, c.d),
        KLayout::RowMajor => (c.d, c.l),
    };
    let ldk = kc + c.pad;
    let q = fill(rng, len(c.rows, c.d, ldq), -0.5, 0.5);
    let k = fill(rng, len(kr, kc, ldk), -0.5, 0.5);
    let v = fill(rng, len(c.l, c.dv, ldv), -1.0, 1.0);
    let kat = |j: usize, i: usize| match c.layout {
        KLayout::Transposed => k[j * ldk + i],
        KLayout::RowMajor => k[i * ldk + j],
    };
    // Mask: element (r, j) at r * mrow + (cols_bcast ? 0 : j).
    let (rows_bcast, cols_bcast) = match c.mask {
        TestMask::None => (true, true),
        TestMask::Add {
            rows_bcast,
            cols_bcast,
        }
        | TestMask::Bool {
            rows_bcast,
            cols_bcast,
            ..
        } => (rows_bcast, cols_bcast),
    };
    let mcols = if cols_bcast { 1 } else { c.l };
    let mrow = if rows_bcast { 0 } else { mcols + c.pad };
    let mlen = if rows_bcast {
        mcols
    } else {
        len(c.rows, mcols, mrow)
    };
    let madd: Vec<f32> = (0..mlen)
        .map(|_| match rng.below(10) {
            0 => f32::NEG_INFINITY,
            _ => rng.f(-3.0, 1.0),
        })
        .collect();
    let mbool: Vec<bool> = (0..mlen).map(|_| rng.below(4) != 0).collect();
    let midx = |r: usize, j: usize| r * mrow + if cols_bcast { 0 } else { j };

    // Reference (f64) and per-element tolerance.
    let scale = |x: f64| match c.scale {
        Some(AttnScale::Mul(s)) => x * f64::from(s),
        Some(AttnScale::Div(s)) => x / f64::from(s),
        None => x,
    };
    let cabs = match c.scale {
        Some(AttnScale::Mul(s)) => f64::from(s).abs(),
        Some(AttnScale::Div(s)) => 1.0 / f64::from(s).abs(),
        None => 1.0,
    };
    let u = f64::powi(2.0, -24);
    let mut want = vec![0.0f64; c.rows * c.dv];
    let mut tol = vec![0.0f64; c.rows * c.dv];
    for r in 0..c.rows {
        let mut dx = 0.0f64;
        let x: Vec<f64> = (0..c.l)
            .map(|j| {
                let (mut dot, mut abs) = (0.0f64, 0.0f64);
                for i in 0..c.d {
                    let t = f64::from(q[r * ldq + i]) * f64::from(kat(j, i));
                    dot += t;
                    abs += t.abs();
                }
                dx = dx.max(2.0 * c.d as f64 * u * cabs * abs);
                let s = scale(dot);
                match c.mask {
                    TestMask::None => s,
                    TestMask::Add { .. } => s + f64::from(madd[midx(r, j)]),
                    TestMask::Bool { fill, keep, .. } => {
                        if mbool[midx(r, j)] == keep {
                            s
                        } else {
                            f64::from(fill)
                        }
                    }
                }
            })
            .collect();
        let mx = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let p: Vec<f64> = x.iter().map(|&x| (x - mx).exp()).collect();
        let sum: f64 = p.iter().sum();
        for e in 0..c.dv {
            let (mut o, mut mag) = (0.0, 0.0);
            for j in 0..c.l {
                let vv = f64::from(v[j * ldv + e]);
                o += p[j] * vv;
                mag += p[j] * vv.abs();
            }
            want[r * c.dv + e] = o / sum;
            tol[r * c.dv + e] = (1e-5 + 4.0 * dx) * mag / sum + 1e-30;
        }
    }

    // Guarded operands; out padding holds a sentinel.
    const SENTINEL: f32 = 12345.0;
    let out_len = len(c.rows, c.dv, ldo);
    let (mut gq, mut gk, mut gv) = (guarded(&q), guarded(&k), guarded(&v));
    let mut gout = guarded(&vec![SENTINEL; out_len]);
    let mut gmadd = guarded(&madd);
    let mut gmbool = GuardedBuf::new(mlen.div_ceil(4));
    let mbool_slice: &mut [bool] = {
        let bytes = gmbool.slice(mlen.div_ceil(4));
        // SAFETY: the f32 slice's last `mlen` bytes, 0/1 values written below.
        let p = bytes.as_mut_ptr().cast::<u8>();
        let s = unsafe {
            std::slice::from_raw_parts_mut(p.add(bytes.len() * 4 - mlen).cast::<bool>(), mlen)
        };
        s.copy_from_slice(&mbool);
        s
    };
    let kblen = kern.kbuf_len(c.l, c.d);
    let mut gkb = GuardedBuf::new(kblen.max(1));
    let (q, k, v) = (
        gq.slice(q.len()) as &[f32],
        gk.slice(k.len()) as &[f32],
        gv.slice(v.len()) as &[f32],
    );
    let out = gout.slice(out_len);
    let kbuf = gkb.slice(kblen);
    let items = [(0, c.split), (c.split, c.rows - c.split)];
    for (i, &(r0, rows)) in items.iter().enumerate() {
        if rows == 0 {
            continue;
        }
        let mut gs = GuardedBuf::new(len(rows, c.n_blk.min(c.l), c.n_blk));
        let mut ga = GuardedBuf::new(rows * c.dv);
        let mut gm = GuardedBuf::new(rows);
        let mut gl = GuardedBuf::new(rows);
        let scratch = MhaScratch {
            scores: gs.slice(len(rows, c.n_blk.min(c.l), c.n_blk)),
            acc: ga.slice(rows * c.dv),
            m: gm.slice(rows),
            lsum: gl.slice(rows),
            kbuf: &mut *kbuf,
        };
        let mstart = r0 * mrow;
        let mask = match c.mask {
            TestMask::None => MaskRef::None,
            TestMask::Add { .. } => MaskRef::F32 {
                data: &gmadd.slice(mlen)[mstart..],
                row_stride: mrow,
                col_bcast: cols_bcast,
            },
            TestMask::Bool { .. } => MaskRef::Bool {
                data: &mbool_slice[mstart..],
                row_stride: mrow,
                col_bcast: cols_bcast,
            },
        };
        kern.run(
            (&q[r0 * ldq..], k, v),
            mask,
            &mut out[r0 * ldo..],
            MhaItemShape {
                rows,
                l: c.l,
                d: c.d,
                dv: c.dv,
                n_blk: c.n_blk,
                ldq,
                ldk,
                ldv,
                ldo,
            },
            scratch,
            i == 0 || rows == c.rows,
        )
        .unwrap_or_else(|e| panic!("{c:?}: {e}"));
    }
    for r in 0..c.rows {
        for e in 0..ldo {
            let i = r * ldo + e;
            if i >= out_len {
                break;
            }
            let got = out[i];
            if e >= c.dv {
                assert_eq!(
                    got.to_bits(),
                    SENTINEL.to_bits(),
                    "{c:?}: padding ({r},{e})"
                );
                continue;
            }
            let (w, t) = (want[r * c.dv + e], tol[r * c.dv + e]);
            if w.is_nan() {
                assert!(got.is_nan(), "{isa} {c:?}: ({r},{e}) got {got}, want NaN");
            } else {
                assert!(
                    (f64::from(got) - w).abs() <= t,
                    "{isa} {c:?}: ({r},{e}) got {got}, want {w} (tol {t})"
                );
            }
        }
    }
}

fn random_case(rng: &mut Rng, isa: Isa, layout: KLayout) -> Case {
    const DS: [usize; 6] = [16, 32, 64, 80, 128, 256];
    const LS: [usize; 12] = [1, 2, 3, 17, 31, 63, 64, 65, 127, 128, 129, 257];
    let rows = 1 + rng.below(48);
    let l = if rng.below(2) == 0 {
        rng.pick(&LS)
    } else {
        1 + rng.below(299)
    };
    let nb = match isa {
        Isa::Avx512 => 64,
        Isa::Avx2 => 16,
    };
    let n_blk = nb * (1 + rng.below(3));
    let scale = match rng.below(3) {
        0 => None,
        1 => Some(AttnScale::Mul(rng.f(0.05, 0.5))),
        _ => Some(AttnScale::Div(rng.f(2.0, 16.0))),
    };
    let (rb, cb) = (rng.below(3) == 0, rng.below(3) == 0);
    let mask = match rng.below(3) {
        0 => TestMask::None,
        1 => TestMask::Add {
            rows_bcast: rb,
            cols_bcast: cb,
        },
        _ => TestMask::Bool {
            fill: rng.pick(&[-1e4, f32::NEG_INFINITY, 0.0]),
            keep: rng.below(2) == 0,
            rows_bcast: rb,
            cols_bcast: cb,
        },
    };
    Case {
        rows,
        l,
        d: rng.pick(&DS),
        dv: rng.pick(&DS),
        n_blk,
        layout,
        scale,
        mask,
        pad: rng.pick(&[0, 0, 1, 3]),
        split: rng.below(rows + 1),
    }
}

#[test]
fn random_items_against_f64_reference() {
    for isa in common::isas("random_items_against_f64_reference") {
        let mut rng = Rng(0x5eed ^ isa as u64);
        for layout in [KLayout::Transposed, KLayout::RowMajor] {
            for _ in 0..80 {
                let c = random_case(&mut rng, isa, layout);
                run_case(isa, c, &mut rng);
            }
        }
    }
}

#[test]
fn every_head_size_and_edge_length() {
    for isa in common::isas("every_head_size_and_edge_length") {
        let mut rng = Rng(7);
        let nb = if isa == Isa::Avx512 { 64 } else { 16 };
        for d in [16, 32, 64, 80, 128, 256] {
            for (dv, l) in [
                (d, 1),
                (16, nb - 1),
                (256, nb),
                (80, nb + 1),
                (d, 2 * nb + 3),
            ] {
                for layout in [KLayout::Transposed, KLayout::RowMajor] {
                    let c = Case {
                        rows: 1 + rng.below(48),
                        l,
                        d,
                        dv,
                        n_blk: nb,
                        layout,
                        scale: Some(AttnScale::Div(8.0)),
                        mask: TestMask::Add {
                            rows_bcast: false,
                            cols_bcast: false,
                        },
                        pad: 1,
                        split: 5,
                    };
                    run_case(
                        isa,
                        Case {
                            split: c.rows.min(5),
                            ..c
                        },
                        &mut rng,
                    );
                }
            }
        }
    }
}

#[test]
fn fully_masked_rows_give_nan_like_the_reference() {
    for isa in common::isas("fully_masked_rows_give_nan_like_the_reference") {
        let mut rng = Rng(3);
        let c = Case {
            rows: 7,
            l: 70,
            d: 16,
            dv: 16,
            n_blk: if isa == Isa::Avx512 { 64 } else { 16 },
            layout: KLayout::Transposed,
            scale: None,
            mask: TestMask::Bool {
                fill: f32::NEG_INFINITY,
                keep: true,
                rows_bcast: false,
                cols_bcast: true,
            },
            pad: 0,
            split: 3,
        };
        // With one mask element per row, about a quarter of the rows are all -inf.
        run_case(isa, c, &mut rng);
    }
}

#[test]
fn bad_arguments_are_errors() {
    let isa = Isa::Avx2;
    if !isa.is_supported() {
        eprintln!("SKIPPED: bad_arguments_are_errors: no AVX2");
        return;
    }
    let kern = MhaFused::compile(MhaFusedOptions::new(
        isa,
        KLayout::Transposed,
        None,
        AttnMask::None,
    ))
    .unwrap();
    let s = MhaItemShape {
        rows: 4,
        l: 20,
        d: 16,
        dv: 16,
        n_blk: 16,
        ldq: 16,
        ldk: 16,
        ldv: 16,
        ldo: 16,
    };
    let (q, k, v) = (vec![0.0; 64], vec![0.0; 320], vec![0.0; 320]);
    let mut out = vec![0.0; 64];
    let mut bufs = (
        vec![0.0; 64],
        vec![0.0; 64],
        vec![0.0; 4],
        vec![0.0; 4],
        vec![0.0; kern.kbuf_len(20, 16)],
    );
    let mut run = |s: MhaItemShape, qlen: usize, mask: MaskRef<'_>| {
        kern.run(
            (&q[..qlen], &k, &v),
            mask,
            &mut out,
            s,
            MhaScratch {
                scores: &mut bufs.0,
                acc: &mut bufs.1,
                m: &mut bufs.2,
                lsum: &mut bufs.3,
                kbuf: &mut bufs.4,
            },
            true,
        )
    };
    assert!(run(s, 64, MaskRef::None).is_ok());
    let is_args = |r: Result<(), X64Error>| matches!(r, Err(X64Error::Args(_)));
    assert!(is_args(run(s, 63, MaskRef::None)), "short Q");
    assert!(is_args(run(
        MhaItemShape { n_blk: 24, ..s },
        64,
        MaskRef::None
    )));
    assert!(is_args(run(
        MhaItemShape { ldq: 15, ..s },
        64,
        MaskRef::None
    )));
    assert!(is_args(run(MhaItemShape { l: 21, ..s }, 64, MaskRef::None)));
    assert!(is_args(run(
        MhaItemShape { rows: 5, ..s },
        64,
        MaskRef::None
    )));
    let m = [0.0f32; 20];
    let mask = MaskRef::F32 {
        data: &m,
        row_stride: 0,
        col_bcast: false,
    };
    assert!(is_args(run(s, 64, mask)), "mask on a kernel without one");
}

fn decode(code: &[u8]) -> Vec<Instruction> {
    let insns: Vec<Instruction> = Decoder::with_ip(64, code, 0, DecoderOptions::NONE)
        .into_iter()
        .collect();
    assert!(insns.iter().all(|i| !i.is_invalid()), "invalid bytes");
    insns
}

#[test]
fn whole_kernel_decodes_back() {
    for isa in Isa::ALL {
        for layout in [KLayout::Transposed, KLayout::RowMajor] {
            for mask in [
                AttnMask::None,
                AttnMask::Additive,
                AttnMask::Boolean {
                    fill: -1e4,
                    keep_when: false,
                },
            ] {
                let kern = MhaFused::compile(MhaFusedOptions::new(
                    isa,
                    layout,
                    Some(AttnScale::Mul(0.125)),
                    mask,
                ))
                .unwrap();
                let insns = decode(kern.kernel().code());
                let decoded: usize = insns.iter().map(|i| i.len()).sum();
                assert_eq!(decoded, kern.kernel().code().len(), "every byte decodes");
                let count = |m: Mnemonic| insns.iter().filter(|i| i.mnemonic() == m).count();
                // One function per step, each ending in one ret: the loop, the
                // row-major brgemm (P·V, and Q·K^T on packed panels), the packer, the
                // softmax block, the finish. Call sites: pack, Q·K^T, block, P·V (one
                // that writes the output of a single block, one that accumulates),
                // finish.
                assert_eq!(count(Mnemonic::Ret), 5, "{isa} {layout:?}");
                assert_eq!(count(Mnemonic::Call), 6);
                // Every call goes to a function start inside the buffer.
                let starts: Vec<u64> = std::iter::once(0)
                    .chain(
                        insns
                            .windows(2)
                            .filter(|w| w[0].mnemonic() == Mnemonic::Ret)
                            .map(|w| w[1].ip()),
                    )
                    .collect();
                for i in insns.iter().filter(|i| i.mnemonic() == Mnemonic::Call) {
                    assert!(starts.contains(&i.near_branch_target()), "{i}");
                }
                assert!(count(Mnemonic::Vfmadd231ps) > 0);
                // The loop (up to its ret) reads the argument block through r15 at the
                // offsets of MhaFusedArgs: n = min(n_blk, L - n0) by `cmovg r13,
                // [r15 + 72]`, the packed panel at (n0 + j) * D by `imul rax,
                // [r15 + 56]`; and no vector code but the single block's 1/l per row.
                let end = insns
                    .iter()
                    .position(|i| i.mnemonic() == Mnemonic::Ret)
                    .unwrap();
                let lp = &insns[..end];
                let reads = |m: Mnemonic, reg: Register, disp: u64| {
                    lp.iter().any(|i| {
                        i.mnemonic() == m
                            && i.op0_register() == reg
                            && i.op1_kind() == OpKind::Memory
                            && i.memory_base() == Register::R15
                            && i.memory_displacement64() == disp
                    })
                };
                assert!(reads(Mnemonic::Cmovg, Register::R13, 72), "n_blk read");
                assert!(reads(Mnemonic::Imul, Register::RAX, 56), "D read");
                assert!(reads(Mnemonic::Cmp, Register::R12, 48), "L read");
                let vector = |i: &&Instruction| {
                    (0..i.op_count()).any(|k| {
                        i.op_kind(k) == OpKind::Register && i.op_register(k).is_vector_register()
                    })
                };
                let lp_vec: Vec<Mnemonic> =
                    lp.iter().filter(vector).map(|i| i.mnemonic()).collect();
                assert_eq!(
                    lp_vec.iter().filter(|&&m| m == Mnemonic::Vdivss).count(),
                    1,
                    "{lp_vec:?}"
                );
                assert!(
                    lp_vec.iter().all(|m| matches!(
                        m,
                        Mnemonic::Vdivss
                            | Mnemonic::Vmovss
                            | Mnemonic::Vbroadcastss
                            | Mnemonic::Vmovups
                            | Mnemonic::Vmovaps
                    )),
                    "{lp_vec:?}"
                );
                // The row scale of the output-writing P·V.
                assert!(count(Mnemonic::Vmulps) > 0);
                if layout == KLayout::Transposed {
                    assert!(count(Mnemonic::Vgatherdps) > 0, "the transposing packer");
                }
                for i in &insns {
                    if isa == Isa::Avx2 {
                        assert_ne!(i.encoding(), EncodingKind::EVEX, "{i}");
                    }
                }
                if isa == Isa::Avx512 {
                    assert!(insns.iter().any(|i| i.encoding() == EncodingKind::EVEX));
                }
            }
        }
    }
}
