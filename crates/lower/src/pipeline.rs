//! The lowering pipeline: every pass, in order, on one screen.
//!
//! The CLI's `--print-after NAME` uses the names printed by each pass.

use snipjit_ir::Graph;

use crate::lir::Lir;
use crate::passes::{
    assign_registers::AssignRegisters, cleanup_loop_offsets::CleanupLoopOffsets,
    convert_power_to_power_static::ConvertPowerToPowerStatic,
    extract_loop_invariants::ExtractLoopInvariants, fuse_loops::FuseLoops, fuse_swish::FuseSwish,
    init_loops::InitLoops, insert_broadcast_move::InsertBroadcastMove,
    insert_load_store::InsertLoadStore, insert_loops::InsertLoops,
    insert_specific_iterations::InsertSpecificIterations, mark_loops::MarkLoops,
    mul_add_to_fma::MulAddToFma, optimize_loop_single_evaluation::OptimizeLoopSingleEvaluation,
};
use crate::{LowerError, Pass, Target};

/// Data-flow passes: rewrite the expression DAG before loops exist.
pub const DATA_FLOW: &[&dyn Pass] = &[&ConvertPowerToPowerStatic, &FuseSwish, &MulAddToFma];

/// Control-flow passes: loops, memory access, registers, tails, pointer moves.
///
/// OptimizeLoopSingleEvaluation runs before CleanupLoopOffsets (as in Snippets): it
/// turns the tail's increments into a finalization offset, which the cleanup then
/// folds into the outer loop's increment.
pub const CONTROL_FLOW: &[&dyn Pass] = &[
    &MarkLoops,
    &FuseLoops,
    &InsertLoadStore,
    &InsertBroadcastMove,
    &ExtractLoopInvariants,
    &InitLoops,
    &InsertLoops,
    &AssignRegisters,
    &InsertSpecificIterations,
    &OptimizeLoopSingleEvaluation,
    &CleanupLoopOffsets,
];

/// Names of every pass, in pipeline order (plus `build` for the initial IR).
pub fn pass_names() -> Vec<&'static str> {
    std::iter::once("build")
        .chain(DATA_FLOW.iter().chain(CONTROL_FLOW).map(|p| p.name()))
        .collect()
}

/// The pass called `name` in [`DATA_FLOW`] or [`CONTROL_FLOW`] (filetests and the CLI
/// look passes up by the names `--print-after` takes).
pub fn pass_by_name(name: &str) -> Option<&'static dyn Pass> {
    DATA_FLOW
        .iter()
        .chain(CONTROL_FLOW)
        .copied()
        .find(|p| p.name() == name)
}

/// Lowers an elementwise subgraph body to register-allocated linear IR.
///
/// `after_pass(name, lir)` is called after the initial build and after every pass
/// (the CLI prints from it). The verifier runs after each pass.
pub fn lower(
    body: &Graph,
    bcast_inner: &[bool],
    target: &Target,
    after_pass: &mut dyn FnMut(&str, &Lir),
) -> Result<Lir, LowerError> {
    let mut lir = crate::build::build(body, bcast_inner)?;
    crate::verify::verify(&lir)?;
    after_pass("build", &lir);
    for pass in DATA_FLOW.iter().chain(CONTROL_FLOW) {
        pass.run(&mut lir, target)?;
        crate::verify::verify(&lir).map_err(|e| LowerError::Pass {
            pass: pass.name(),
            reason: format!("verifier failed after the pass: {e}"),
        })?;
        after_pass(pass.name(), &lir);
    }
    Ok(lir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pass_is_found_by_its_name() {
        for name in pass_names().into_iter().skip(1) {
            assert_eq!(pass_by_name(name).map(|p| p.name()), Some(name));
        }
        assert!(pass_by_name("build").is_none());
        assert!(pass_by_name("no_such_pass").is_none());
    }
}
