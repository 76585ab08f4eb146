//! The passes, one per file. `crate::pipeline` lists them in order.

pub mod assign_registers;
pub mod cleanup_loop_offsets;
pub mod convert_power_to_power_static;
pub mod extract_loop_invariants;
pub mod fuse_loops;
pub mod fuse_swish;
pub mod init_loops;
pub mod insert_broadcast_move;
pub mod insert_load_store;
pub mod insert_loops;
pub mod insert_specific_iterations;
pub mod mark_loops;
pub mod mul_add_to_fma;
pub mod optimize_loop_single_evaluation;

use crate::lir::Lir;

/// Drops pure expressions whose value nobody reads (stores and loop markers stay).
pub(crate) fn remove_dead_values(lir: &mut Lir) {
    loop {
        let mut used = vec![false; lir.num_values as usize];
        for e in &lir.exprs {
            for v in &e.ins {
                used[v.0 as usize] = true;
            }
        }
        let before = lir.exprs.len();
        lir.exprs.retain(|e| match e.out {
            Some(o) => used[o.0 as usize] || matches!(e.kind, crate::lir::ExprKind::Parameter(_)),
            None => true,
        });
        if lir.exprs.len() == before {
            break;
        }
    }
}
