//! The online-softmax kernels against a scalar f64 reference.
//!
//! The test plays the brgemms itself: it feeds the block kernel raw score blocks,
//! accumulates `acc += P · V` in f64 between blocks (as the P·V brgemm would), then
//! runs the finish kernel and compares with `softmax(mask(scale(S))) · V` computed in
//! f64 over the whole row.
//!
//! Tolerance: the kernel's `exp` has a relative error of a few f32 ULPs, the running
//! rescales add one rounding per block, and the f32 sum of `p` rounds once per element:
//! so `|out - ref| <= 1e-5 * Σ_j p_j |v_j| / Σ_j p_j + 1e-30`, i.e. relative to the
//! magnitude of the terms averaged, not to the (possibly cancelling) result.

mod common;

use common::Rng;

use iced_x86::{Decoder, DecoderOptions, EncodingKind};
use snipjit_x64::{AttnMask, AttnScale, Isa, MaskRef, OnlineSoftmax, OnlineSoftmaxOptions};

#[derive(Clone, Copy, Debug)]
enum TestMask {
    None,
    Add {
        bcast_rows: bool,
        bcast_cols: bool,
    },
    Bool {
        fill: f32,
        keep: bool,
        bcast_cols: bool,
    },
}

struct Case {
    rows: usize,
    l: usize,
    dv: usize,
    nb: usize,
    scale: Option<AttnScale>,
    mask: TestMask,
    /// Added to score j of every row (`ramp · j`): a row maximum that keeps growing
    /// along the row, so later blocks take the rescale path (a jump past the
    /// kernel's slack of 8 per block) or keep a stale reference maximum (p > 1).
    ramp: f32,
}

/// The block kernel's bound on p: e^8, its rescale slack.
const P_MAX: f32 = 2981.0;

fn reference(
    s: &[f32],
    v: &[f32],
    mask_val: &dyn Fn(usize, usize) -> f32,
    c: &Case,
) -> (Vec<f64>, Vec<f64>) {
    // Returns out[rows × dv] and the tolerance scale Σ p |v| / Σ p per element.
    let mut out = vec![0.0; c.rows * c.dv];
    let mut tol = vec![0.0; c.rows * c.dv];
    for r in 0..c.rows {
        let x: Vec<f64> = (0..c.l)
            .map(|j| {
                let mut x = s[r * c.l + j];
                x = match c.scale {
                    Some(AttnScale::Mul(k)) => x * k,
                    Some(AttnScale::Div(k)) => x / k,
                    None => x,
                };
                match c.mask {
                    TestMask::None => f64::from(x),
                    TestMask::Add { .. } => f64::from(x + mask_val(r, j)),
                    TestMask::Bool { fill, keep, .. } => {
                        if (mask_val(r, j) != 0.0) == keep {
                            f64::from(x)
                        } else {
                            f64::from(fill)
                        }
                    }
                }
            })
            .collect();
        let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let p: Vec<f64> = x.iter().map(|&x| (x - m).exp()).collect();
        let sum: f64 = p.iter().sum();
        for d in 0..c.dv {
            let mut acc = 0.0;
            let mut mag = 0.0;
            for j in 0..c.l {
                let vj = f64::from(v[j * c.dv + d]);
                acc += p[j] * vj;
                mag += p[j] * vj.abs();
            }
            out[r * c.dv + d] = acc / sum;
            tol[r * c.dv + d] = mag / sum;
        }
    }
    (out, tol)
}

/// Which paths of the block kernel a case took: (a block kept a stale reference
/// maximum, so some p > 1; a later block rescaled, raising m by more than the slack).
fn run_case(isa: Isa, c: &Case, rng: &mut Rng) -> (bool, bool) {
    let (mut stale, mut rescaled) = (false, false);
    let (rows, l, dv, nb) = (c.rows, c.l, c.dv, c.nb);
    let s: Vec<f32> = (0..rows * l)
        .map(|i| rng.f(-6.0, 6.0) + c.ramp * (i % l) as f32)
        .collect();
    let v: Vec<f32> = (0..l * dv).map(|_| rng.f(-1.0, 1.0)).collect();
    let (mrows, mcols, bcast_cols) = match c.mask {
        TestMask::None => (1, 1, false),
        TestMask::Add {
            bcast_rows,
            bcast_cols,
        } => (
            if bcast_rows { 1 } else { rows },
            if bcast_cols { 1 } else { l },
            bcast_cols,
        ),
        TestMask::Bool { bcast_cols, .. } => (rows, if bcast_cols { 1 } else { l }, bcast_cols),
    };
    let maskf: Vec<f32> = (0..mrows * mcols)
        .map(|_| match c.mask {
            TestMask::Bool { .. } => (rng.below(4) != 0) as u8 as f32,
            _ => {
                if rng.below(5) == 0 {
                    f32::NEG_INFINITY
                } else {
                    rng.f(-3.0, 3.0)
                }
            }
        })
        .collect();
    let maskb: Vec<bool> = maskf.iter().map(|&x| x != 0.0).collect();
    let mask_at = |r: usize, j: usize| {
        maskf[(if mrows == 1 { 0 } else { r }) * mcols + if bcast_cols { 0 } else { j }]
    };
    let (want, tol) = reference(&s, &v, &mask_at, c);

    let opts = OnlineSoftmaxOptions {
        isa,
        scale: c.scale,
        mask: match c.mask {
            TestMask::None => AttnMask::None,
            TestMask::Add { .. } => AttnMask::Additive,
            TestMask::Bool { fill, keep, .. } => AttnMask::Boolean {
                fill,
                keep_when: keep,
            },
        },
    };
    let k = OnlineSoftmax::compile(opts).unwrap();
    let lds = nb + 3; // padded rows
    let ldacc = dv + 1;
    let mut m = vec![f32::NAN; rows];
    let mut lsum = vec![f32::NAN; rows];
    let mut acc = vec![555.0f32; rows * ldacc];
    let mut n0 = 0;
    while n0 < l {
        let n = nb.min(l - n0);
        // Every row padded, plus a guard of one vector past the last row: a write
        // past column n shows up as a changed sentinel.
        const GUARD: f32 = 12345.0;
        let mut blk = vec![GUARD; rows * lds + 16];
        for r in 0..rows {
            blk[r * lds..r * lds + n].copy_from_slice(&s[r * l + n0..r * l + n0 + n]);
        }
        let row_stride = if mrows == 1 { 0 } else { mcols };
        let off = if bcast_cols { 0 } else { n0 };
        let mref = match c.mask {
            TestMask::None => MaskRef::None,
            TestMask::Add { .. } => MaskRef::F32 {
                data: &maskf[off..],
                row_stride,
                col_bcast: bcast_cols,
            },
            TestMask::Bool { .. } => MaskRef::Bool {
                data: &maskb[off..],
                row_stride,
                col_bcast: bcast_cols,
            },
        };
        let first = n0 == 0;
        let m_before = m.clone();
        k.run_block(
            &mut blk,
            (rows, n, lds),
            &mut m,
            &mut lsum,
            &mut acc,
            (dv, ldacc),
            mref,
            first,
        )
        .unwrap();
        for (i, &x) in blk.iter().enumerate() {
            if i % lds >= n || i >= rows * lds {
                assert_eq!(
                    x, GUARD,
                    "{isa}: score block written past column {n} at {i}"
                );
            }
        }
        for r in 0..rows {
            assert_eq!(acc[r * ldacc + dv], 555.0, "{isa}: acc padding written");
        }
        // p must be exp(x - m_use) with m the reference max, which never decreases
        // and trails the true max by at most the slack (checked loosely: p in [0,
        // e^8]).
        for r in 0..rows {
            if !first && m[r].is_finite() {
                assert!(m[r] >= m_before[r], "running max decreased");
                rescaled |= m_before[r].is_finite() && m[r] > m_before[r] + 8.0;
            }
            for j in 0..n {
                let p = blk[r * lds + j];
                assert!(p.is_nan() || (0.0..=P_MAX).contains(&p), "{isa}: p = {p}");
                stale |= p > 1.0 + 1e-6;
            }
        }
        // Play the P·V brgemm in f64.
        for r in 0..rows {
            for d in 0..dv {
                let mut x = if first {
                    0.0
                } else {
                    f64::from(acc[r * ldacc + d])
                };
                for j in 0..n {
                    x += f64::from(blk[r * lds + j]) * f64::from(v[(n0 + j) * dv + d]);
                }
                acc[r * ldacc + d] = x as f32;
            }
        }
        n0 += n;
    }
    let ldo = dv + 2;
    let mut out = vec![7.0f32; rows * ldo];
    k.run_finish(&acc, (rows, dv, ldacc), &lsum, &mut out, ldo)
        .unwrap();
    for r in 0..rows {
        for d in 0..dv {
            let (got, w, t) = (out[r * ldo + d], want[r * dv + d], tol[r * dv + d]);
            if w.is_nan() {
                assert!(got.is_nan(), "{isa} row {r} col {d}: want NaN, got {got}");
                continue;
            }
            let bound = 1e-5 * t + 1e-30;
            assert!(
                (f64::from(got) - w).abs() <= bound,
                "{isa} rows {rows} l {l} dv {dv} nb {nb} {:?} {:?} ramp {}: [{r}][{d}] got {got}, want {w} (bound {bound})",
                c.scale,
                c.mask,
                c.ramp
            );
        }
        for d in dv..ldo {
            assert_eq!(out[r * ldo + d], 7.0, "padding written");
        }
    }
    (stale, rescaled)
}

#[test]
fn online_softmax_matches_reference() {
    let mut rng = Rng(0x5eed);
    let masks = [
        TestMask::None,
        TestMask::Add {
            bcast_rows: false,
            bcast_cols: false,
        },
        TestMask::Add {
            bcast_rows: true,
            bcast_cols: false,
        },
        TestMask::Add {
            bcast_rows: false,
            bcast_cols: true,
        },
        TestMask::Bool {
            fill: f32::NEG_INFINITY,
            keep: true,
            bcast_cols: false,
        },
        TestMask::Bool {
            fill: -1e4,
            keep: false,
            bcast_cols: false,
        },
        TestMask::Bool {
            fill: 2.5,
            keep: true,
            bcast_cols: true,
        },
    ];
    let scales = [None, Some(AttnScale::Mul(0.125)), Some(AttnScale::Div(3.0))];
    for isa in common::isas("online_softmax_matches_reference") {
        let (mut stale, mut rescaled) = (false, false);
        let lanes = isa.lanes();
        for l in (1..=2 * lanes + 1).chain([61, 127, 200]) {
            for (i, &mask) in masks.iter().enumerate() {
                let nb = [lanes, 2 * lanes + 1, 64, 7][(l + i) % 4];
                for ramp in [0.0, 0.05, 0.4] {
                    let case = Case {
                        rows: 1 + (l + i) % 3,
                        l,
                        dv: [1, 17, 64, 80][(l + i) % 4],
                        nb,
                        scale: scales[(l + i) % 3],
                        mask,
                        ramp,
                    };
                    let (s, r) = run_case(isa, &case, &mut rng);
                    stale |= s;
                    rescaled |= r;
                }
            }
        }
        assert!(
            stale && rescaled,
            "{isa}: stale {stale}, rescaled {rescaled}"
        );
    }
}

/// A row masked to -inf everywhere gives NaN (0/0), as the reference softmax does; a
/// row masked to -inf in its first block only is finite.
#[test]
fn fully_masked_rows_are_nan_and_late_rows_recover() {
    for isa in common::isas("fully_masked_rows_are_nan_and_late_rows_recover") {
        let k = OnlineSoftmax::compile(OnlineSoftmaxOptions {
            isa,
            scale: None,
            mask: AttnMask::Additive,
        })
        .unwrap();
        let (rows, n, dv) = (2, 5, 3);
        let mut m = vec![0.0; rows];
        let mut l = vec![0.0; rows];
        let mut acc = vec![0.0; rows * dv];
        // Block 1: both rows fully masked.
        let mask1 = vec![f32::NEG_INFINITY; rows * n];
        let mut s = vec![1.0; rows * n];
        let mref = MaskRef::F32 {
            data: &mask1,
            row_stride: n,
            col_bcast: false,
        };
        k.run_block(
            &mut s,
            (rows, n, n),
            &mut m,
            &mut l,
            &mut acc,
            (dv, dv),
            mref,
            true,
        )
        .unwrap();
        assert!(s.iter().all(|&p| p == 0.0), "masked p must be 0: {s:?}");
        assert_eq!(l, vec![0.0, 0.0]);
        assert!(m.iter().all(|&x| x == f32::NEG_INFINITY));
        // acc = P·V = 0. Block 2: row 0 unmasked, row 1 still masked.
        acc.fill(0.0);
        let mut mask2 = vec![0.0; rows * n];
        mask2[n..].fill(f32::NEG_INFINITY);
        let mut s = vec![2.0; rows * n];
        let mref = MaskRef::F32 {
            data: &mask2,
            row_stride: n,
            col_bcast: false,
        };
        k.run_block(
            &mut s,
            (rows, n, n),
            &mut m,
            &mut l,
            &mut acc,
            (dv, dv),
            mref,
            false,
        )
        .unwrap();
        assert_eq!(m[0], 2.0);
        assert!((l[0] - 5.0).abs() < 1e-6, "l = {l:?}");
        assert_eq!(l[1], 0.0);
        // P·V with V = 1: acc row 0 = Σp = 5.
        acc[..dv].fill(5.0);
        let mut out = vec![0.0; rows * dv];
        k.run_finish(&acc, (rows, dv, dv), &l, &mut out, dv)
            .unwrap();
        assert!(out[..dv].iter().all(|&x| (x - 1.0).abs() < 1e-6), "{out:?}");
        assert!(out[dv..].iter().all(|x| x.is_nan()), "{out:?}");
    }
}

#[test]
fn checked_calls_reject_short_operands() {
    for isa in common::isas("checked_calls_reject_short_operands") {
        let k = OnlineSoftmax::compile(OnlineSoftmaxOptions {
            isa,
            scale: None,
            mask: AttnMask::None,
        })
        .unwrap();
        let mut s = vec![0.0; 10];
        let (mut m, mut l, mut acc) = (vec![0.0; 2], vec![0.0; 2], vec![0.0; 8]);
        let r = k.run_block(
            &mut s,
            (2, 6, 6),
            &mut m,
            &mut l,
            &mut acc,
            (4, 4),
            MaskRef::None,
            true,
        );
        assert!(r.is_err(), "scores of 10 floats cannot hold 2 rows of 6");
        let mask = [0.0f32; 4];
        let r = k.run_block(
            &mut s,
            (2, 5, 5),
            &mut m,
            &mut l,
            &mut acc,
            (4, 4),
            MaskRef::F32 {
                data: &mask,
                row_stride: 5,
                col_bcast: false,
            },
            true,
        );
        assert!(r.is_err(), "a mask on a kernel compiled without one");
        let mut out = vec![0.0; 7];
        assert!(k.run_finish(&acc, (2, 4, 4), &l, &mut out, 4).is_err());
    }
}

/// Every byte of both kernels decodes; AVX2 code has no EVEX instruction.
#[test]
fn kernels_decode_back() {
    for isa in Isa::ALL {
        for mask in [
            AttnMask::None,
            AttnMask::Additive,
            AttnMask::Boolean {
                fill: -1e9,
                keep_when: true,
            },
        ] {
            let k = OnlineSoftmax::compile(OnlineSoftmaxOptions {
                isa,
                scale: Some(AttnScale::Mul(0.125)),
                mask,
            })
            .unwrap();
            for kern in [k.block_kernel(), k.finish_kernel()] {
                let insns: Vec<_> = Decoder::with_ip(64, kern.code(), 0, DecoderOptions::NONE)
                    .into_iter()
                    .collect();
                assert!(!insns.is_empty());
                assert!(
                    insns.iter().all(|i| !i.is_invalid()),
                    "{isa}: invalid bytes\n{}",
                    kern.disasm()
                );
                if isa == Isa::Avx2 {
                    assert!(
                        insns.iter().all(|i| i.encoding() != EncodingKind::EVEX),
                        "EVEX in AVX2 code"
                    );
                } else {
                    assert!(insns.iter().any(|i| i.encoding() == EncodingKind::EVEX));
                }
            }
        }
    }
}
