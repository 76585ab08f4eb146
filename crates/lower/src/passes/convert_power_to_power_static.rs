//! ConvertPowerToPowerStatic: `Pow(x, Scalar c)` becomes `PowStatic c (x)`.
//!
//! Before: `%1 = Scalar 2 ; %2 = Pow %0, %1`
//! After:  `%1 = Scalar 2 ; %2 = PowStatic 2 %0` (the scalar may become dead)
//! Holds after: no Pow reads a Scalar exponent; emitters get the exponent at compile time
//! and pick fast paths (square, sqrt, reciprocal...).

use std::collections::HashMap;

use snipjit_ir::BinaryOp;

use crate::lir::{ExprKind, Lir};
use crate::{LowerError, Pass, Target};

#[derive(Debug)]
pub struct ConvertPowerToPowerStatic;

impl Pass for ConvertPowerToPowerStatic {
    fn name(&self) -> &'static str {
        "convert_power_to_power_static"
    }

    fn run(&self, lir: &mut Lir, _: &Target) -> Result<(), LowerError> {
        let mut scalars = HashMap::new();
        for e in &mut lir.exprs {
            if let (ExprKind::Scalar(v), Some(o)) = (&e.kind, e.out) {
                scalars.insert(o, *v);
            }
            if e.kind == ExprKind::Binary(BinaryOp::Pow)
                && let Some(&c) = scalars.get(&e.ins[1])
            {
                e.kind = ExprKind::PowStatic(c);
                e.ins.truncate(1);
            }
        }
        crate::passes::remove_dead_values(lir);
        Ok(())
    }
}
