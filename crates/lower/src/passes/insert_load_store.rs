//! InsertLoadStore: subgraph ports become memory accesses.
//!
//! Before: `%0 = Parameter in0 ; ... ; Result out0 %5`
//! After:  `%0 = Load in0 ; ... ; Store out0, %5`
//! Holds after: no Parameter or Result is left; every load/store sits in the loops of
//! the expression it replaced.

use crate::lir::{ExprKind, Lir};
use crate::{LowerError, Pass, Target};

#[derive(Debug)]
pub struct InsertLoadStore;

impl Pass for InsertLoadStore {
    fn name(&self) -> &'static str {
        "insert_load_store"
    }

    fn run(&self, lir: &mut Lir, _: &Target) -> Result<(), LowerError> {
        for e in &mut lir.exprs {
            e.kind = match e.kind {
                ExprKind::Parameter(input) => ExprKind::Load { input },
                ExprKind::Result(output) => ExprKind::Store { output },
                _ => continue,
            };
        }
        Ok(())
    }
}
