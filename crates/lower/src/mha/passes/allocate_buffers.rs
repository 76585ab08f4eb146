//! AllocateBuffers: lifetimes, in-place reuse, and offsets in one per-thread
//! scratchpad.
//!
//! - **Lifetime** of a buffer: the expressions from its first to its last access,
//!   widened to whole loops where the value crosses a loop boundary (live on entry to
//!   or exit from the loop: it must survive every iteration) or where the first
//!   access inside a loop reads it (the value comes from the previous iteration),
//!   and to the innermost loop around an expression that carries it across
//!   iterations (the online softmax's running max, sum and accumulator).
//! - **In place**: an online softmax step whose scores die at the step writes the
//!   probabilities over them (same size): one allocation for both.
//! - **Solver** ([`crate::mha::solver`]): buffers of static size (only `m_blk`,
//!   `n_blk`, `panel`, D and Dv in their size) get constant 64-byte aligned offsets at
//!   compile time; buffers whose size depends on a dynamic dim (`@kpack`: L × D)
//!   follow them, each at a symbolic offset; `scratch total` is what the configurator
//!   evaluates per shape. Smaller `m_blk`/`n_blk` at run time keep the layout valid.
//! ```text
//! before: @probs: f32[m_blk, n_blk] = buffer
//! after:  @probs: f32[m_blk, n_blk] = buffer live=[9, 13] in_place_of=@scores
//! ```
//! Holds after: every buffer has an offset; buffers live at once do not overlap.

use crate::LowerError;
use crate::mha::ir::{Alloc, MhaIr, Op, ScratchPlan, ValueId, ValueKind};
use crate::mha::solver::{Item, solve};
use crate::mha::sym::Sym;
use crate::mha::{MhaPass, MhaTarget, SCRATCH_ALIGN};

#[derive(Debug)]
pub struct AllocateBuffers;

/// Lifetimes `[first, last]` of every buffer (`None` for a buffer nothing accesses).
pub fn lifetimes(ir: &MhaIr) -> Vec<(ValueId, Option<(usize, usize)>)> {
    let loops: Vec<(usize, usize)> = (0..ir.loops.len())
        .filter_map(|l| ir.loop_bounds(crate::mha::ir::LoopId(l as u32)))
        .collect();
    let mut out = vec![];
    for (vi, val) in ir.values.iter().enumerate() {
        if !val.is_buffer() {
            continue;
        }
        let v = ValueId(vi as u32);
        let acc: Vec<(usize, bool)> = ir
            .exprs
            .iter()
            .enumerate()
            .filter(|(_, e)| e.op != Op::Buffer)
            .filter_map(|(i, e)| {
                let (r, w) = (ir.reads(e).contains(&v), ir.writes(e).contains(&v));
                (r || w).then_some((i, r && !w))
            })
            .collect();
        let (Some(&(mut first, _)), Some(&(mut last, _))) = (acc.first(), acc.last()) else {
            out.push((v, None));
            continue;
        };
        for (i, e) in ir.exprs.iter().enumerate() {
            if ir.carried(e).contains(&v)
                && let Some((b, end)) = ir.enclosing_loop(i)
            {
                (first, last) = (first.min(b), last.max(end));
            }
        }
        loop {
            let before = (first, last);
            for &(b, e) in &loops {
                let starts_inside = first > b && first < e;
                let ends_inside = last > b && last < e;
                if starts_inside && !ends_inside {
                    first = b;
                } else if ends_inside && !starts_inside {
                    last = e;
                } else if starts_inside && ends_inside {
                    let first_in = acc.iter().find(|(i, _)| *i > b && *i < e);
                    if first_in.is_some_and(|&(_, read_only)| read_only) {
                        (first, last) = (b, e);
                    }
                }
            }
            if (first, last) == before {
                break;
            }
        }
        out.push((v, Some((first, last))));
    }
    out
}

impl MhaPass for AllocateBuffers {
    fn name(&self) -> &'static str {
        "allocate_buffers"
    }

    fn run(&self, ir: &mut MhaIr, _target: &MhaTarget) -> Result<(), LowerError> {
        let err = |reason: String| LowerError::Pass {
            pass: "allocate_buffers",
            reason,
        };
        let blocking = ir
            .blocking
            .ok_or_else(|| err("no blocking (run brgemm_blocking first)".into()))?;
        let env = crate::mha::blocking_values(&blocking);
        let lives = lifetimes(ir);
        let live_of = |v: ValueId| lives.iter().find(|(x, _)| *x == v).and_then(|(_, l)| *l);
        // In-place: the probabilities over the scores they are computed from.
        let mut root: Vec<(ValueId, ValueId)> = vec![];
        for (i, e) in ir.exprs.iter().enumerate() {
            let (Op::SoftmaxStep(s), Some(p)) = (&e.op, e.out) else {
                continue;
            };
            let (sv, pvv) = (ir.value(s.scores), ir.value(p));
            if sv.is_buffer()
                && pvv.is_buffer()
                && sv.shape == pvv.shape
                && sv.dtype == pvv.dtype
                && live_of(s.scores).is_some_and(|l| l.1 == i)
            {
                root.push((p, s.scores));
            }
        }
        let root_of = |v: ValueId| root.iter().find(|(x, _)| *x == v).map_or(v, |(_, r)| *r);
        // Groups: a root and the buffers in place of it.
        let mut groups: Vec<(ValueId, (usize, usize), Sym)> = vec![];
        for (v, live) in &lives {
            let Some(live) = live else { continue };
            let r = root_of(*v);
            let bytes = ir.value(*v).bytes();
            match groups.iter_mut().find(|(x, _, _)| *x == r) {
                Some(g) => {
                    g.1 = (g.1.0.min(live.0), g.1.1.max(live.1));
                    if g.2 != bytes {
                        return Err(err(format!(
                            "'{}' is in place of a buffer of another size",
                            ir.value(*v).name
                        )));
                    }
                }
                None => groups.push((r, *live, bytes)),
            }
        }
        let (stat, dynamic): (Vec<_>, Vec<_>) = groups.into_iter().partition(|g| g.2.is_static());
        let items = stat
            .iter()
            .map(|g| {
                let size = g.2.eval(&env)?;
                Ok(Item {
                    size: u64::try_from(size).map_err(|_| err("negative buffer size".into()))?,
                    live: g.1,
                })
            })
            .collect::<Result<Vec<_>, LowerError>>()?;
        let (offsets, static_total) = solve(&items, SCRATCH_ALIGN);
        let mut offset_of: Vec<(ValueId, Sym)> = stat
            .iter()
            .zip(&offsets)
            .map(|(g, &o)| (g.0, Sym::Const(o as i64)))
            .collect();
        let static_bytes = Sym::Const(static_total as i64);
        let mut end = static_bytes.clone();
        for g in &dynamic {
            offset_of.push((g.0, end.clone()));
            end = Sym::plus(
                end,
                Sym::round_up(g.2.clone(), Sym::Const(SCRATCH_ALIGN as i64)),
            );
        }
        for (v, live) in lives {
            let r = root_of(v);
            let offset = offset_of
                .iter()
                .find(|(x, _)| *x == r)
                .map_or(Sym::Const(0), |(_, o)| o.clone());
            let alloc = Alloc {
                offset,
                live: live.unwrap_or((0, 0)),
                in_place_of: (r != v).then_some(r),
            };
            ir.value_mut(v).kind = ValueKind::Buffer(Some(alloc));
        }
        ir.scratch = Some(ScratchPlan {
            static_bytes,
            total: end,
        });
        Ok(())
    }
}
