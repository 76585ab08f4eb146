//! BrgemmBlocking: chooses the block sizes and wraps the flash loop nest around the
//! brgemms and the online softmax.
//!
//! `m_blk` Q rows per work item and `n_blk` score columns per KV step come from the
//! target (48 × 128 by default: the score block stays in L1, docs/mha.md); the K block
//! is the whole head size D. The loops:
//! ```text
//! loop b0 .. b{r-3} parallel work=<batch dim> step=1     one per batch dim
//!   loop rows parallel work=S step=m_blk tail
//!     loop kv work=L step=n_blk tail
//!       brgemm Q·K^T; online_softmax_step; brgemm P·V
//!     end kv
//!     online_softmax_finish
//!   end rows
//! end b..
//! ```
//! Each loop lists the pointer moves (elements per iteration) of the tensors read or
//! written inside: batch strides (0 where an operand broadcasts), `m_blk` rows of Q,
//! the mask and the output, `n_blk` rows of K and V. Intermediate tensors shrink to
//! one block (`[m_blk, n_blk]` scores, `[m_blk, Dv]` accumulator, `[m_blk]` max/sum).
//! Holds after: every brgemm and softmax expression is inside the kv or rows loop.

use crate::LowerError;
use crate::mha::ir::{
    BLayout, Expr, Extent, Loop, LoopId, MhaBlocking, MhaIr, Op, Operand, ValueId, ValueKind,
};
use crate::mha::sym::{M_BLK, N_BLK, Sym};
use crate::mha::{MhaPass, MhaTarget};

#[derive(Debug)]
pub struct BrgemmBlocking;

/// The view dim of `o` on canonical axis `axis` (views of lower rank align right).
fn view_dim(ir: &MhaIr, o: &Operand, axis: usize) -> Option<Sym> {
    let r = ir.rank;
    let j = (axis + o.perm.len()).checked_sub(r)?;
    Some(ir.value(o.value).shape[o.perm[j]].clone())
}

/// The stride of `o`'s view on canonical axis `axis` for a loop over `work`: 0 where
/// the view's dim is 1 (it broadcasts), the plain stride where it is the loop's dim.
fn view_stride(ir: &MhaIr, o: &Operand, axis: usize, work: &Sym) -> Sym {
    let r = ir.rank;
    let Some(dim) = view_dim(ir, o, axis) else {
        return Sym::Const(0);
    };
    let j = (axis + o.perm.len()) - r;
    let n = o.perm.len();
    let st = if j + 2 == n {
        o.row.clone()
    } else if j + 1 == n {
        o.col.clone()
    } else {
        o.batch[j].clone()
    };
    if dim == *work {
        st
    } else {
        Sym::unless_one(dim, st)
    }
}

impl MhaPass for BrgemmBlocking {
    fn name(&self) -> &'static str {
        "brgemm_blocking"
    }

    fn run(&self, ir: &mut MhaIr, target: &MhaTarget) -> Result<(), LowerError> {
        let err = |reason: String| LowerError::Pass {
            pass: "brgemm_blocking",
            reason,
        };
        if !ir.loops.is_empty() {
            return Err(err("the IR already has loops".into()));
        }
        let find = |ir: &MhaIr, f: &dyn Fn(&Op) -> bool| ir.exprs.iter().position(|e| f(&e.op));
        let step = find(ir, &|o| matches!(o, Op::SoftmaxStep(_))).ok_or_else(|| {
            err("no online softmax step (run softmax_decomposition first)".into())
        })?;
        let fin = find(ir, &|o| matches!(o, Op::SoftmaxFinish { .. }))
            .ok_or_else(|| err("no online softmax finish".into()))?;
        let Op::SoftmaxStep(st) = &ir.exprs[step].op else {
            unreachable!("found above")
        };
        let (scores, max, sum, acc) = (st.scores, st.max, st.sum, st.acc);
        let qk = ir
            .producer(scores)
            .filter(|&p| matches!(ir.exprs[p].op, Op::Brgemm(_)))
            .ok_or_else(|| err("the scores do not come from a brgemm".into()))?;
        let probs = ir.exprs[step]
            .out
            .expect("a softmax step defines the probabilities");
        let pv = ir
            .users(probs)
            .into_iter()
            .find(|&u| matches!(ir.exprs[u].op, Op::Brgemm(_)))
            .ok_or_else(|| err("no P·V brgemm".into()))?;
        if !(qk < step && step < pv && pv < fin)
            || fin != pv + 1
            || pv != step + 1
            || step != qk + 1
        {
            return Err(err(
                "the brgemms and the softmax are not in flash order".into()
            ));
        }
        let b = MhaBlocking {
            m_blk: target.m_blk,
            n_blk: target.n_blk,
            k_blk: ir.dims.d,
            panel: target.panel,
        };
        if b.m_blk == 0 || b.n_blk == 0 || b.panel == 0 {
            return Err(err(format!("block sizes {b:?} must be positive")));
        }
        ir.blocking = Some(b);
        let (m_blk, n_blk) = (Sym::var(M_BLK), Sym::var(N_BLK));
        let r = ir.rank;
        let (Op::Brgemm(bqk), Op::Brgemm(bpv)) = (&ir.exprs[qk].op, &ir.exprs[pv].op) else {
            unreachable!("checked above")
        };
        let q = bqk.a.clone();
        let k = bqk.b.clone();
        let k_layout = bqk.b_layout;
        let v = bpv.b.clone();
        let mask = match &ir.exprs[step].op {
            Op::SoftmaxStep(s) => s.mask.as_ref().map(|(m, _)| m.clone()),
            _ => None,
        };
        let Op::SoftmaxFinish { out, .. } = &ir.exprs[fin].op else {
            unreachable!("found above")
        };
        let out = out.clone();
        // Tensors of the graph: the operands whose pointers the loops move.
        let mut ports: Vec<&Operand> = vec![&q, &k, &v, &out];
        ports.extend(mask.as_ref());
        // Batch loops.
        let mut loops = vec![];
        for i in 0..r - 2 {
            let work = &ir.dims.batch[i];
            let moves = ports
                .iter()
                .map(|o| (o.value, view_stride(ir, o, i, work)))
                .collect();
            loops.push(Loop {
                name: format!("b{i}"),
                work: ir.dims.batch[i].clone(),
                step: Sym::Const(1),
                parallel: true,
                tail: false,
                moves,
            });
        }
        // Rows of Q, the mask and the output.
        let row_move =
            |o: &Operand| Sym::times(m_blk.clone(), view_stride(ir, o, r - 2, &ir.dims.s));
        let mut rows_moves: Vec<(ValueId, Sym)> =
            vec![(q.value, row_move(&q)), (out.value, row_move(&out))];
        rows_moves.extend(mask.iter().map(|m| (m.value, row_move(m))));
        loops.push(Loop {
            name: "rows".into(),
            work: ir.dims.s.clone(),
            step: m_blk.clone(),
            parallel: true,
            tail: true,
            moves: rows_moves,
        });
        // Rows of K and V (K's L axis is its view's row, or its column when row-major).
        let k_l = match k_layout {
            BLayout::RowMajor => k.col.clone(),
            _ => k.row.clone(),
        };
        let mut kv_moves = vec![
            (k.value, Sym::times(n_blk.clone(), k_l)),
            (v.value, Sym::times(n_blk.clone(), v.row.clone())),
        ];
        kv_moves.extend(mask.iter().map(|m| {
            (
                m.value,
                Sym::times(n_blk.clone(), view_stride(ir, m, r - 1, &ir.dims.l)),
            )
        }));
        loops.push(Loop {
            name: "kv".into(),
            work: ir.dims.l.clone(),
            step: n_blk.clone(),
            parallel: false,
            tail: true,
            moves: kv_moves,
        });
        for lp in &mut loops {
            lp.moves.retain(|(_, inc)| *inc != Sym::Const(0));
        }
        let base = ir.loops.len();
        ir.loops.extend(loops);
        let id = |i: usize| LoopId(u32::try_from(base + i).expect("few loops"));
        let (rows, kv) = (id(r - 2), id(r - 1));
        // Block extents.
        let d = Sym::from(ir.dims.d);
        if let Op::Brgemm(b) = &mut ir.exprs[qk].op {
            (b.m, b.n, b.k) = (Extent::Block(rows), Extent::Block(kv), Extent::Full(d));
        }
        if let Op::SoftmaxStep(s) = &mut ir.exprs[step].op {
            (s.rows, s.cols) = (Extent::Block(rows), Extent::Block(kv));
        }
        if let Op::Brgemm(b) = &mut ir.exprs[pv].op {
            (b.m, b.k) = (Extent::Block(rows), Extent::Block(kv));
        }
        if let Op::SoftmaxFinish { rows: e, .. } = &mut ir.exprs[fin].op {
            *e = Extent::Block(rows);
        }
        // Intermediates shrink to one block; their operands follow.
        let dv = Sym::from(ir.dims.dv);
        for (vid, shape) in [
            (scores, vec![m_blk.clone(), n_blk.clone()]),
            (probs, vec![m_blk.clone(), n_blk.clone()]),
            (max, vec![m_blk.clone()]),
            (sum, vec![m_blk.clone()]),
            (acc, vec![m_blk.clone(), dv]),
        ] {
            if ir.value(vid).kind != ValueKind::Temp {
                return Err(err(format!(
                    "'{}' is not an intermediate tensor",
                    ir.value(vid).name
                )));
            }
            ir.value_mut(vid).shape = shape;
        }
        for e in [qk, pv] {
            let (a, c) = match &ir.exprs[e].op {
                Op::Brgemm(b) => (b.a.value, b.c.value),
                _ => unreachable!("brgemms"),
            };
            let (da, dc) = (ir.dense(a), ir.dense(c));
            if let Op::Brgemm(b) = &mut ir.exprs[e].op {
                if e == pv {
                    b.a = da;
                }
                b.c = dc;
            }
        }
        // The nest: batch loops and rows around [qk, fin], kv around [qk, pv].
        let begin = |i: usize| Expr {
            out: None,
            op: Op::LoopBegin(id(i)),
        };
        let end = |i: usize| Expr {
            out: None,
            op: Op::LoopEnd(id(i)),
        };
        ir.exprs.insert(fin + 1, end(r - 2));
        for i in (0..r - 2).rev() {
            ir.exprs.insert(fin + 2 + (r - 3 - i), end(i));
        }
        ir.exprs.insert(pv + 1, end(r - 1));
        ir.exprs.insert(qk, begin(r - 1));
        for i in (0..r - 1).rev() {
            ir.exprs.insert(qk, begin(i));
        }
        Ok(())
    }
}
