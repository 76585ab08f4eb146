//! InsertLoops: brackets runs of expressions that share loops with LoopBegin/LoopEnd.
//!
//! Before: `%0 = Load in0 @[L0,L1] ; Store out0, %0 @[L0,L1]`
//! After:  `LoopBegin L0 ; LoopBegin L1 ; %0 = Load in0 ; Store out0, %0 ; LoopEnd L1 ; LoopEnd L0`
//! Holds after: brackets nest properly and every expression sits inside exactly the
//! loops it is marked with.

use crate::lir::{Expr, ExprKind, Lir, LoopId};
use crate::{LowerError, Pass, Target};

#[derive(Debug)]
pub struct InsertLoops;

impl Pass for InsertLoops {
    fn name(&self) -> &'static str {
        "insert_loops"
    }

    fn run(&self, lir: &mut Lir, _: &Target) -> Result<(), LowerError> {
        if lir.exprs.iter().any(|e| e.kind.is_loop_marker()) {
            return Err(LowerError::Pass {
                pass: self.name(),
                reason: "loops are already inserted".into(),
            });
        }
        let mut out = Vec::with_capacity(lir.exprs.len() + 4);
        let mut open: Vec<LoopId> = vec![];
        let close = |out: &mut Vec<Expr>, open: &mut Vec<LoopId>, keep: usize| {
            while open.len() > keep {
                let l = open.pop().expect("len > keep");
                let mut e = Expr::new(ExprKind::LoopEnd(l), &[], None);
                e.loops = open.iter().copied().chain([l]).collect();
                out.push(e);
            }
        };
        for e in std::mem::take(&mut lir.exprs) {
            let common = open
                .iter()
                .zip(&e.loops)
                .take_while(|(a, b)| a == b)
                .count();
            close(&mut out, &mut open, common);
            for &l in &e.loops[common..] {
                open.push(l);
                let mut b = Expr::new(ExprKind::LoopBegin(l), &[], None);
                b.loops = open.iter().copied().collect();
                out.push(b);
            }
            out.push(e);
        }
        close(&mut out, &mut open, 0);
        lir.exprs = out;
        Ok(())
    }
}
