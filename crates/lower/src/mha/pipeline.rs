//! The MHA lowering pipeline: every pass, in order, on one screen.

use super::ir::MhaIr;
use super::passes::{
    allocate_buffers::AllocateBuffers, brgemm_blocking::BrgemmBlocking,
    fuse_transpose_brgemm::FuseTransposeBrgemm, insert_buffers::InsertBuffers,
    matmul_to_brgemm::MatMulToBrgemm, move_scale_to_scores::MoveScaleToScores,
    softmax_decomposition::SoftmaxDecomposition,
};
use super::{MhaPass, MhaTarget};
use crate::LowerError;

/// Data-flow passes (on whole tensors), then blocking and buffers.
pub const MHA_PASSES: &[&dyn MhaPass] = &[
    &MoveScaleToScores,
    &MatMulToBrgemm,
    &FuseTransposeBrgemm,
    &SoftmaxDecomposition,
    &BrgemmBlocking,
    &InsertBuffers,
    &AllocateBuffers,
];

/// Names of every pass, in pipeline order (plus `build` for the initial IR).
pub fn mha_pass_names() -> Vec<&'static str> {
    std::iter::once("build")
        .chain(MHA_PASSES.iter().map(|p| p.name()))
        .collect()
}

/// The pass called `name`.
pub fn mha_pass_by_name(name: &str) -> Option<&'static dyn MhaPass> {
    MHA_PASSES.iter().copied().find(|p| p.name() == name)
}

/// Runs the passes on `ir`, verifying after each; `after_pass(name, ir)` sees the IR
/// after the build (`build`) and after every pass.
pub fn run_pipeline(
    ir: &mut MhaIr,
    target: &MhaTarget,
    after_pass: &mut dyn FnMut(&str, &MhaIr),
) -> Result<(), LowerError> {
    super::verify::verify(ir)?;
    after_pass("build", ir);
    for pass in MHA_PASSES {
        pass.run(ir, target)?;
        super::verify::verify(ir).map_err(|e| LowerError::Pass {
            pass: pass.name(),
            reason: format!("verifier failed after the pass: {e}"),
        })?;
        after_pass(pass.name(), ir);
    }
    Ok(())
}
