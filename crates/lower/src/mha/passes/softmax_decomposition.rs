//! SoftmaxDecomposition: the scale, mask and Softmax between the two brgemms become
//! an online (flash-style) softmax.
//!
//! The scores are consumed block by block (after BrgemmBlocking): each
//! `online_softmax_step` applies the scale and the mask, updates the running row
//! maximum `%max` and sum `%sum`, writes `p = exp(x - max)` and rescales the
//! accumulator `%acc` by `exp(max_old - max_new)`; the P·V brgemm accumulates into
//! `%acc` after the first KV block (`beta=first?0:1`); `online_softmax_finish`
//! writes `acc / sum` through the old P·V output operand (its strides included).
//! The step initializes `%max`, `%sum` and `%acc` on the first KV block, so it reads
//! none of them before writing. The mask is read with stride 0 along a dim of size 1
//! (`[B, 1, 1, L]`: the same row for every query row).
//! ```text
//! before: %scores = brgemm ...; %s1 = scale %scores mul(0.125); %s2 = mask %s1, %m add
//!         %probs = softmax %s2; %out = brgemm a=%probs{..} b=%v{..} c=%out<..>{..} beta=0
//! after:  %scores = brgemm ...
//!         %probs = online_softmax_step %scores max=%max sum=%sum acc=%acc scale=mul(0.125) mask=%m{..} add
//!         %acc = brgemm a=%probs{..} b=%v{..} c=%acc{..} beta=first?0:1
//!         %out = online_softmax_finish %acc sum=%sum out=%out<..>{..}
//! ```
//! Holds after: no Scale, Mask or Softmax remains.

use crate::LowerError;
use crate::mha::ir::{Beta, Expr, Extent, MhaIr, Op, Operand, SoftmaxStep, ValueId, ValueKind};
use crate::mha::sym::Sym;
use crate::mha::{MhaPass, MhaTarget};

#[derive(Debug)]
pub struct SoftmaxDecomposition;

/// The mask read as a block of the scores `like`: a dim of size 1 (it broadcasts over
/// rows or columns) has stride 0; a dim that is the scores' own has its dense stride.
fn mask_operand(ir: &MhaIr, mask: ValueId, like: ValueId) -> Operand {
    let mut o = ir.dense(mask);
    let (ms, ss) = (&ir.value(mask).shape, &ir.value(like).shape);
    let (mr, r) = (ms.len(), ss.len());
    let stride = |dim: &Sym, own: &Sym, st: Sym| {
        if dim == own {
            st
        } else {
            Sym::unless_one(dim.clone(), st)
        }
    };
    if mr >= 2 {
        o.row = stride(&ms[mr - 2], &ss[r - 2], o.row.clone());
    }
    o.col = stride(&ms[mr - 1], &ss[r - 1], o.col.clone());
    o
}

impl MhaPass for SoftmaxDecomposition {
    fn name(&self) -> &'static str {
        "softmax_decomposition"
    }

    fn run(&self, ir: &mut MhaIr, _target: &MhaTarget) -> Result<(), LowerError> {
        let err = |reason: String| LowerError::Pass {
            pass: "softmax_decomposition",
            reason,
        };
        let Some(sm) = ir
            .exprs
            .iter()
            .position(|e| matches!(e.op, Op::Softmax { .. }))
        else {
            return Ok(());
        };
        let Op::Softmax { src } = ir.exprs[sm].op else {
            unreachable!("found above")
        };
        let probs = ir.exprs[sm].out.expect("a Softmax defines its output");
        // Walk back to the scores brgemm through at most a mask and a scale.
        let (mut x, mut scale, mut mask, mut dead) = (src, None, None, vec![]);
        let scores = loop {
            let p = ir
                .producer(x)
                .ok_or_else(|| err(format!("'{}' has no producer", ir.value(x).name)))?;
            if ir.users(x).len() != 1 {
                return Err(err(format!(
                    "'{}' has users besides the softmax chain",
                    ir.value(x).name
                )));
            }
            match &ir.exprs[p].op {
                Op::Mask { src, mask: m, kind } if mask.is_none() && scale.is_none() => {
                    mask = Some((mask_operand(ir, *m, x), *kind));
                    dead.push(p);
                    x = *src;
                }
                Op::Scale { src, scale: s } if scale.is_none() => {
                    scale = Some(*s);
                    dead.push(p);
                    x = *src;
                }
                Op::Brgemm(_) => break x,
                op => {
                    return Err(err(format!(
                        "'{}' before the softmax is not a scale, mask or brgemm: {op:?}",
                        ir.value(x).name
                    )));
                }
            }
        };
        let [pv] = ir.users(probs)[..] else {
            return Err(err("the probabilities have several users".into()));
        };
        let Op::Brgemm(b) = &ir.exprs[pv].op else {
            return Err(err("the probabilities do not feed a brgemm".into()));
        };
        if b.a.value != probs {
            return Err(err("the probabilities are not the P·V brgemm's A".into()));
        }
        let out_operand = b.c.clone();
        let out = out_operand.value;
        let sshape = ir.value(scores).shape.clone();
        let r = sshape.len();
        let rows_shape: Vec<Sym> = sshape[..r - 1].to_vec();
        let acc_shape: Vec<Sym> = rows_shape
            .iter()
            .cloned()
            .chain([Sym::from(ir.dims.dv)])
            .collect();
        let max = ir.add_value("max", ValueKind::Temp, "f32", rows_shape.clone());
        let sum = ir.add_value("sum", ValueKind::Temp, "f32", rows_shape);
        let acc = ir.add_value("acc", ValueKind::Temp, "f32", acc_shape);
        let acc_op = ir.dense(acc);
        let rows = Extent::Full(sshape[r - 2].clone());
        let step = SoftmaxStep {
            scores,
            max,
            sum,
            acc,
            scale,
            mask,
            rows: rows.clone(),
            cols: Extent::Full(sshape[r - 1].clone()),
        };
        let Op::Brgemm(b) = &mut ir.exprs[pv].op else {
            unreachable!("checked above")
        };
        b.c = acc_op;
        b.beta = Beta::FirstZero;
        ir.exprs[pv].out = Some(acc);
        ir.exprs.insert(
            pv + 1,
            Expr {
                out: Some(out),
                op: Op::SoftmaxFinish {
                    acc,
                    sum,
                    out: out_operand,
                    rows,
                },
            },
        );
        ir.exprs[sm] = Expr {
            out: Some(probs),
            op: Op::SoftmaxStep(Box::new(step)),
        };
        dead.sort_unstable();
        for d in dead.into_iter().rev() {
            ir.exprs.remove(d);
        }
        Ok(())
    }
}
