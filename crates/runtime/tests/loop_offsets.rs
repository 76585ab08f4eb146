//! The loop manager's pointer moves, end to end: kernels lowered with and without
//! OptimizeLoopSingleEvaluation and CleanupLoopOffsets must compute the same rows.
//!
//! Without the two passes the kernel adds every increment and finalization offset
//! that InitLoops and InsertSpecificIterations wrote (the tail's increment, the
//! finalization offsets of the tail and of the row loop), each read from its own
//! argument-block slot; with them, one outer increment per port. Both are called
//! here with the argument block the configurator evaluates from their own linear
//! IR, on ports of three element sizes (u8 in, f32 broadcast row or column, bf16
//! out), every row length 1..2*lanes+1, and compared with the result computed here.

use half::bf16;
use snipjit_ir::text::parse;
use snipjit_lower::lir::Lir;
use snipjit_lower::pipeline::{CONTROL_FLOW, DATA_FLOW};
use snipjit_runtime::config::configure;
use snipjit_x64::Isa;
use snipjit_x64::abi::{CallArgs, KernelFn};

const SG: &str = "graph narrow(x: u8[N, C], b: f32[?, ?]) {
  xf: f32[N, C] = Convert(x, to=f32)
  s: f32[?, ?] = Add(xf, b)
  r: f32[?, ?] = Relu(s)
  y: bf16[?, ?] = Convert(r, to=bf16)
  return y
}
";

fn isas() -> Vec<Isa> {
    let v: Vec<Isa> = [Isa::Avx512, Isa::Avx2]
        .into_iter()
        .filter(|i| i.is_supported())
        .collect();
    if !Isa::Avx512.is_supported() {
        eprintln!("SKIPPED: AVX-512 loop-offset tests (this CPU has no AVX-512)");
    }
    v
}

/// Lowers `SG` for `isa` and `bcast`, skipping the passes named in `skip`.
fn lower(isa: Isa, bcast: &[bool], skip: &[&str]) -> Lir {
    let g = parse(SG, "narrow.sg").unwrap();
    let target = snipjit_x64::codegen::target(isa);
    let mut lir = snipjit_lower::build::build(&g, bcast).unwrap();
    for pass in DATA_FLOW.iter().chain(CONTROL_FLOW) {
        if skip.contains(&pass.name()) {
            continue;
        }
        pass.run(&mut lir, &target).unwrap();
        snipjit_lower::verify::verify(&lir)
            .unwrap_or_else(|e| panic!("after {}: {e}", pass.name()));
    }
    lir
}

/// Calls the kernel of `lir` on an `m x w` domain (b a column `[m, 1]` or a row
/// `[1, w]`) with the argument block the configurator evaluates from `lir`, and
/// checks every output element (and two sentinels after the output).
fn check(lir: &Lir, isa: Isa, column: bool, m: usize, w: usize, what: &str) {
    let b_shape = if column { [m, 1] } else { [1, w] };
    let d = configure(&[&[m, w], &b_shape], &[&[m, w]]).unwrap();
    if d.bcast_inner != [false, column] {
        // b[1, 1] or b[m, 1] with w == 1 is another pattern, whose kernel this is
        // not: the configurator refuses it.
        assert!(d.runtime_args(lir).is_err(), "{isa} {what} w={w}");
        return;
    }
    let rt = d.runtime_args(lir).unwrap();
    assert_eq!(rt.len(), lir.rt_slots().len());
    let kernel = snipjit_x64::codegen::emit_elementwise(lir, isa).unwrap();
    // SAFETY: the entry point follows the KernelFn ABI (snipjit_x64::abi).
    let f: KernelFn = unsafe { std::mem::transmute(kernel.entry_ptr()) };
    let x: Vec<u8> = (0..m * w).map(|i| (i * 37 % 251) as u8).collect();
    let b: Vec<f32> = (0..b_shape[0] * b_shape[1])
        .map(|i| i as f32 * 7.5 - 60.0)
        .collect();
    let mut y = vec![bf16::from_f32(-1.0); m * w + 2];
    let ptrs = [
        x.as_ptr() as *mut u8,
        b.as_ptr() as *mut u8,
        y.as_mut_ptr() as *mut u8,
    ];
    let args = CallArgs {
        ptrs: ptrs.as_ptr(),
        rt: rt.as_ptr(),
        scratch: std::ptr::null_mut(),
        inner_work: w as i64,
        outer_work: m as i64,
        flags: 0,
    };
    assert_eq!(lir.spill_slots, 0, "no scratchpad is passed");
    // SAFETY: x, b and y hold the domain's elements of their dtypes (u8, f32,
    // bf16), as the strides of `d` reach them; the kernel spills nothing.
    unsafe { f(&args) };
    for r in 0..m {
        for c in 0..w {
            let bv = if column { b[r] } else { b[c] };
            let want = bf16::from_f32((x[r * w + c] as f32 + bv).max(0.0));
            assert_eq!(y[r * w + c], want, "{isa} {what} w={w} [{r}, {c}]");
        }
    }
    assert_eq!(
        &y[m * w..],
        &[bf16::from_f32(-1.0); 2],
        "{isa} {what}: overrun"
    );
}

#[test]
fn kernels_with_and_without_offset_passes_agree() {
    let variants: [&[&str]; 3] = [
        &[],
        &["cleanup_loop_offsets"],
        &["optimize_loop_single_evaluation", "cleanup_loop_offsets"],
    ];
    for isa in isas() {
        let lanes = isa.lanes();
        // b[1, C]: a row broadcast (moves along the row, back after it);
        // b[M, 1]: a column broadcast (fixed along the row, one element per row).
        for column in [false, true] {
            let bcast = [false, column];
            for (k, skip) in variants.iter().enumerate() {
                let lir = lower(isa, &bcast, skip);
                let slots = lir.rt_slots().len();
                if k == 0 {
                    assert_eq!(slots, 3, "{isa} {skip:?}: one outer increment per port");
                } else {
                    assert!(slots > 3, "{isa} {skip:?}: {slots} slots");
                }
                for w in 1..=2 * lanes + 1 {
                    check(
                        &lir,
                        isa,
                        column,
                        3,
                        w,
                        &format!("column={column} skip={skip:?}"),
                    );
                }
            }
        }
    }
}

/// A vector loop whose static work amount is one step runs once: no back edge and
/// no increments (OptimizeLoopSingleEvaluation folds them into the finalization
/// offsets, CleanupLoopOffsets into the row increment). Called with rows of exactly
/// that many elements, as the static work amount promises.
#[test]
fn a_static_single_step_loop_has_no_back_edge() {
    use snipjit_lower::Pass;
    use snipjit_lower::passes::{
        cleanup_loop_offsets::CleanupLoopOffsets,
        optimize_loop_single_evaluation::OptimizeLoopSingleEvaluation,
    };
    for isa in isas() {
        let lanes = isa.lanes();
        let target = snipjit_x64::codegen::target(isa);
        for column in [false, true] {
            let mut lir = lower(
                isa,
                &[false, column],
                &["optimize_loop_single_evaluation", "cleanup_loop_offsets"],
            );
            let full = lower(isa, &[false, column], &[]);
            lir.loops[1].work = Some(lanes);
            OptimizeLoopSingleEvaluation.run(&mut lir, &target).unwrap();
            CleanupLoopOffsets.run(&mut lir, &target).unwrap();
            snipjit_lower::verify::verify(&lir).unwrap();
            assert!(lir.loops[1].once && lir.loops[2].once);
            let code = snipjit_x64::codegen::emit_elementwise(&lir, isa).unwrap();
            let dynamic = snipjit_x64::codegen::emit_elementwise(&full, isa).unwrap();
            assert!(
                code.code().len() < dynamic.code().len(),
                "{isa}: no back edge, no increments: shorter code"
            );
            for m in [1, 3] {
                check(
                    &lir,
                    isa,
                    column,
                    m,
                    lanes,
                    &format!("static column={column}"),
                );
            }
        }
    }
}
