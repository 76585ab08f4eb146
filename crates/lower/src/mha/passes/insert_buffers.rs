//! InsertBuffers: every intermediate tensor (produced and consumed inside the loop
//! nest, neither a graph input nor the output) becomes a per-thread buffer, declared
//! by a `buffer` expression before the outermost loop; and the score brgemm reads K
//! (B, transposed as `[L, D]` rows or given pre-transposed as row-major `[D, L]`)
//! from a packed copy instead: a `pack_b` into the buffer `@kpack`
//! (`roundup(L, panel) × D` floats), once per work item before the KV loop, whose
//! panels the KV loop walks by `n_blk × D`. (The runtime packs once per head and
//! thread: a work item whose head the same thread packed last skips the packing.)
//! ```text
//! before: loop rows ..
//!           loop kv .. moves=[%k: n_blk*768, ..]
//!             %scores = brgemm a=.. b=%k<0,2,1,3>{rs=768, cs=1} trans c=%scores{..} ..
//! after:  @scores: f32[m_blk, n_blk] = buffer
//!         @kpack: f32[roundup(L, panel), 64] = buffer
//!         loop rows ..
//!           @kpack = pack_b %k<0,2,1,3>{rs=768, cs=1} trans n=L k=64 panel=panel
//!           loop kv .. moves=[@kpack: 64*n_blk, ..]
//!             @scores = brgemm a=.. b=@kpack packed c=@scores{..} ..
//! ```
//! Holds after: no intermediate tensor is left; every buffer is declared before use.

use crate::LowerError;
use crate::mha::ir::{BLayout, Expr, MhaIr, Op, ValueKind};
use crate::mha::sym::{N_BLK, PANEL, Sym};
use crate::mha::{MhaPass, MhaTarget};

#[derive(Debug)]
pub struct InsertBuffers;

impl MhaPass for InsertBuffers {
    fn name(&self) -> &'static str {
        "insert_buffers"
    }

    fn run(&self, ir: &mut MhaIr, _target: &MhaTarget) -> Result<(), LowerError> {
        let err = |reason: String| LowerError::Pass {
            pass: "insert_buffers",
            reason,
        };
        let first_loop = ir
            .exprs
            .iter()
            .position(|e| matches!(e.op, Op::LoopBegin(_)))
            .ok_or_else(|| err("no loop nest (run brgemm_blocking first)".into()))?;
        let temps: Vec<_> = (0..ir.values.len())
            .map(|i| crate::mha::ir::ValueId(i as u32))
            .filter(|&v| ir.value(v).kind == ValueKind::Temp)
            .filter(|&v| {
                ir.producer(v).is_some() || ir.exprs.iter().any(|e| ir.writes(e).contains(&v))
            })
            .collect();
        let mut decls = vec![];
        for v in temps {
            if ir
                .exprs
                .iter()
                .any(|e| matches!(e.op, Op::Result { src } if src == v))
            {
                continue;
            }
            ir.value_mut(v).kind = ValueKind::Buffer(None);
            decls.push(Expr {
                out: Some(v),
                op: Op::Buffer,
            });
        }
        // B of the score brgemm (K, transposed or given pre-transposed as row-major
        // `[D, L]`), inside a loop: pack it before that loop. The kernel reads K
        // packed in either layout (measured: packing pays from S = 64 on and costs
        // nothing at S = 16); V, the P·V brgemm's row-major B, is read in place.
        let packs: Vec<usize> = (0..ir.exprs.len())
            .filter(|&i| matches!(&ir.exprs[i].op, Op::Brgemm(b) if b.b_layout != BLayout::Packed))
            .take(1)
            .collect();
        for (inserted, i) in packs.into_iter().enumerate() {
            let i = i + inserted;
            let Op::Brgemm(b) = &ir.exprs[i].op else {
                unreachable!("filtered above")
            };
            let (src, src_layout) = (b.b.clone(), b.b_layout);
            // The innermost loop around the brgemm.
            let mut depth = 0;
            let mut lp = None;
            for j in (0..i).rev() {
                match ir.exprs[j].op {
                    Op::LoopEnd(_) => depth += 1,
                    Op::LoopBegin(l) if depth == 0 => {
                        lp = Some((j, l));
                        break;
                    }
                    Op::LoopBegin(_) => depth -= 1,
                    _ => {}
                }
            }
            let Some((begin, l)) = lp else {
                return Err(err("a brgemm with transposed B outside any loop".into()));
            };
            let d = Sym::from(ir.dims.d);
            let n = ir.dims.l.clone();
            let kp = ir.add_value(
                if inserted == 0 { "kpack" } else { "kpack2" },
                ValueKind::Buffer(None),
                "f32",
                vec![Sym::round_up(n.clone(), Sym::var(PANEL)), d.clone()],
            );
            decls.push(Expr {
                out: Some(kp),
                op: Op::Buffer,
            });
            let lpm = &mut ir.loops[l.0 as usize];
            if !lpm.moves.iter().any(|(v, _)| *v == src.value) {
                return Err(err(format!(
                    "loop {} does not walk B of the brgemm",
                    lpm.name
                )));
            }
            lpm.moves.retain(|(v, _)| *v != src.value);
            lpm.moves.push((kp, Sym::times(d.clone(), Sym::var(N_BLK))));
            let mut packed = ir.dense(kp);
            packed.packed = true;
            let Op::Brgemm(b) = &mut ir.exprs[i].op else {
                unreachable!("filtered above")
            };
            b.b = packed;
            b.b_layout = BLayout::Packed;
            ir.exprs.insert(
                begin,
                Expr {
                    out: Some(kp),
                    op: Op::PackB {
                        src,
                        layout: src_layout,
                        n,
                        k: d,
                    },
                },
            );
        }
        let at = first_loop;
        for (j, e) in decls.into_iter().enumerate() {
            ir.exprs.insert(at + j, e);
        }
        Ok(())
    }
}
