//! FuseLoops: merges adjacent loops that walk the same iteration space.
//!
//! Two loops fuse when one's run of expressions ends where the other's begins, at
//! the same depth of the same enclosing loops, and they agree on dim, step, static
//! work amount, kind and single evaluation: then iteration `k` of both covers the
//! same elements, so running both bodies in one iteration computes the same values.
//! Data flows between the bodies through SSA values only (loads read inputs and
//! stores write outputs, which never alias), and a value the first body defines is
//! defined earlier in the same iteration after fusion, so no dependency forbids
//! it. Loops over different dims or with different steps stay apart. Port entries
//! are merged (a port both loops move must move the same way in both). Runs before
//! InsertLoops, on the loop marks; the fused-away loops are dropped and the others
//! renumbered in order.
//!
//! Before: `%0 = Load in0 @[L0,L1] ; Store out0, %0 @[L0,L1] ; %1 = Load in1 @[L2,L3] ; Store out1, %1 @[L2,L3]`
//!         (L2 like L0, L3 like L1)
//! After:  all four `@[L0,L1]`.

use crate::lir::{Lir, LoopId, LoopInfo};
use crate::{LowerError, Pass, Target};

#[derive(Debug)]
pub struct FuseLoops;

impl Pass for FuseLoops {
    fn name(&self) -> &'static str {
        "fuse_loops"
    }

    fn run(&self, lir: &mut Lir, _: &Target) -> Result<(), LowerError> {
        if lir.exprs.iter().any(|e| e.kind.is_loop_marker()) {
            return Err(LowerError::Pass {
                pass: self.name(),
                reason: "loops are already inserted: FuseLoops works on loop marks".into(),
            });
        }
        let mut fused_away = vec![false; lir.loops.len()];
        while let Some((keep, gone)) = fusable_pair(lir) {
            let merged = merge_ports(&lir.loops[keep.0 as usize], &lir.loops[gone.0 as usize]);
            lir.loops[keep.0 as usize].ports = merged.expect("fusable_pair checked the ports");
            for e in &mut lir.exprs {
                for x in e.loops.iter_mut().filter(|x| **x == gone) {
                    *x = keep;
                }
            }
            fused_away[gone.0 as usize] = true;
        }
        if fused_away.iter().any(|&f| f) {
            let mut renumber = vec![None; lir.loops.len()];
            let mut next = 0u32;
            for (i, gone) in fused_away.iter().enumerate() {
                if !gone {
                    renumber[i] = Some(LoopId(next));
                    next += 1;
                }
            }
            let loops = std::mem::take(&mut lir.loops);
            lir.loops = loops
                .into_iter()
                .zip(&fused_away)
                .filter(|(_, gone)| !**gone)
                .map(|(l, _)| l)
                .collect();
            for e in &mut lir.exprs {
                for x in e.loops.iter_mut() {
                    *x = renumber
                        .get(x.0 as usize)
                        .copied()
                        .flatten()
                        .expect("fused-away loops no longer mark any expression");
                }
            }
        }
        Ok(())
    }
}

/// The first pair of adjacent loops that can fuse: `(kept, fused away)`.
fn fusable_pair(lir: &Lir) -> Option<(LoopId, LoopId)> {
    let known = |l: LoopId| (l.0 as usize) < lir.loops.len();
    for i in 1..lir.exprs.len() {
        let (a, b) = (&lir.exprs[i - 1].loops, &lir.exprs[i].loops);
        let k = a.iter().zip(b).take_while(|(x, y)| x == y).count();
        let (Some(&la), Some(&lb)) = (a.get(k), b.get(k)) else {
            continue;
        };
        if !known(la) || !known(lb) {
            continue;
        }
        // `la`'s run ends at i - 1 and `lb`'s starts at i: they are adjacent, not
        // interleaved.
        let ends = !lir.exprs[i..].iter().any(|e| e.loops.contains(&la));
        let starts = !lir.exprs[..i].iter().any(|e| e.loops.contains(&lb));
        let (x, y) = (lir.loop_info(la), lir.loop_info(lb));
        let same_space = x.dim == y.dim
            && x.step == y.step
            && x.work == y.work
            && x.kind == y.kind
            && x.once == y.once;
        if ends && starts && same_space && merge_ports(x, y).is_some() {
            return Some((la, lb));
        }
    }
    None
}

/// The union of two loops' port entries, sorted by port; `None` when a port is in
/// both with different moves.
fn merge_ports(x: &LoopInfo, y: &LoopInfo) -> Option<Vec<crate::lir::LoopPort>> {
    let mut ports = x.ports.clone();
    for p in &y.ports {
        match x.port(p.port) {
            Some(q) if q != p => return None,
            Some(_) => {}
            None => ports.push(p.clone()),
        }
    }
    ports.sort_by_key(|p| p.port);
    Some(ports)
}
