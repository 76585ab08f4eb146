//! FuseSwish: `Mul(x, Sigmoid(x))` becomes `Swish 1 (x)` when the sigmoid has no other use.
//!
//! Before: `%1 = Sigmoid %0 ; %2 = Mul %0, %1`   (either operand order)
//! After:  `%2 = Swish 1 %0`
//! Holds after: the fused Sigmoid is gone. The Swish emitter computes `x / (1 + e^-x)`
//! directly: one exponential, one division, and no rounding of the intermediate
//! sigmoid (within the emitters' stated error bounds of the unfused pair).

use std::collections::HashMap;

use snipjit_ir::{BinaryOp, UnaryOp};

use crate::lir::{ExprKind, Lir};
use crate::{LowerError, Pass, Target};

#[derive(Debug)]
pub struct FuseSwish;

impl Pass for FuseSwish {
    fn name(&self) -> &'static str {
        "fuse_swish"
    }

    fn run(&self, lir: &mut Lir, _: &Target) -> Result<(), LowerError> {
        let mut uses = vec![0usize; lir.num_values as usize];
        for e in &lir.exprs {
            for v in &e.ins {
                uses[v.0 as usize] += 1;
            }
        }
        // Sigmoid result -> its argument.
        let mut sigmoids = HashMap::new();
        for e in &mut lir.exprs {
            if e.kind == ExprKind::Unary(UnaryOp::Sigmoid)
                && let Some(o) = e.out
            {
                sigmoids.insert(o, e.ins[0]);
                continue;
            }
            if e.kind != ExprKind::Binary(BinaryOp::Mul) {
                continue;
            }
            let pick = [0usize, 1].into_iter().find(|&k| {
                let s = e.ins[k];
                uses[s.0 as usize] == 1 && sigmoids.get(&s) == Some(&e.ins[1 - k])
            });
            if let Some(k) = pick {
                let x = e.ins[1 - k];
                uses[e.ins[k].0 as usize] = 0;
                e.kind = ExprKind::Unary(UnaryOp::Swish { beta: 1.0 });
                e.ins = [x].into_iter().collect();
            }
        }
        crate::passes::remove_dead_values(lir);
        Ok(())
    }
}
