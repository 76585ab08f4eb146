//! MulAddToFma: `Add(Mul(a, b), c)` becomes `Fma(a, b, c)` when the product has no other use.
//!
//! Before: `%2 = Mul %0, %1 ; %4 = Add %2, %3`
//! After:  `%4 = Fma %0, %1, %3`
//! Holds after: the fused Mul is gone; results differ from Mul+Add only by the single
//! rounding of the fused operation (within the tolerance of every test).

use std::collections::HashMap;

use snipjit_ir::BinaryOp;

use crate::lir::{ExprKind, Lir};
use crate::{LowerError, Pass, Target};

#[derive(Debug)]
pub struct MulAddToFma;

impl Pass for MulAddToFma {
    fn name(&self) -> &'static str {
        "mul_add_to_fma"
    }

    fn run(&self, lir: &mut Lir, _: &Target) -> Result<(), LowerError> {
        let mut uses = vec![0usize; lir.num_values as usize];
        for e in &lir.exprs {
            for v in &e.ins {
                uses[v.0 as usize] += 1;
            }
        }
        let mut muls = HashMap::new();
        for i in 0..lir.exprs.len() {
            let e = &lir.exprs[i];
            if e.kind == ExprKind::Binary(BinaryOp::Mul)
                && let Some(o) = e.out
            {
                muls.insert(o, i);
                continue;
            }
            if e.kind != ExprKind::Binary(BinaryOp::Add) {
                continue;
            }
            // Either operand may be the product.
            let pick = [0usize, 1].into_iter().find(|&k| {
                let v = e.ins[k];
                uses[v.0 as usize] == 1 && muls.contains_key(&v)
            });
            if let Some(k) = pick {
                let prod = e.ins[k];
                let other = e.ins[1 - k];
                let m = &lir.exprs[muls[&prod]];
                let (a, b) = (m.ins[0], m.ins[1]);
                let e = &mut lir.exprs[i];
                e.kind = ExprKind::Fma;
                e.ins = [a, b, other].into_iter().collect();
                uses[prod.0 as usize] = 0;
            }
        }
        crate::passes::remove_dead_values(lir);
        Ok(())
    }
}
