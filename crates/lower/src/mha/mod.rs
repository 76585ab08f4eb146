//! Lowering of attention (`mha`) subgraphs: from the tokenizer's [`MhaPattern`] to a
//! blocked flash-attention loop nest with brgemms, an online softmax and per-thread
//! buffers in one scratchpad ([`MhaPlan`]).
//!
//! ```text
//! MhaPattern -> build -> move_scale_to_scores -> matmul_to_brgemm -> fuse_transpose_brgemm
//!   -> softmax_decomposition -> brgemm_blocking -> insert_buffers -> allocate_buffers
//! ```
//! The IR ([`ir::MhaIr`]) is an ordered list of expressions over named tensors and
//! buffers, with loops and symbolic sizes ([`sym::Sym`]); its text form
//! ([`text::print`]) is printed after any pass (`snipjit dump --print-after PASS`)
//! and tested by the filetests under `tests/filetests/mha`.

pub mod build;
pub mod ir;
pub mod passes;
pub mod pipeline;
pub mod solver;
pub mod sym;
pub mod text;
pub mod verify;

use snipjit_ir::{Graph, Op as GraphOp};
use snipjit_tokenize::mha::{MhaPattern, analyze_mha};

pub use ir::{MhaBlocking, MhaIr};
pub use sym::{DimValues, Sym};

use crate::LowerError;
use ir::{Op, ValueKind};

/// Alignment of every buffer in the scratchpad, in bytes (a cache line; a zmm load).
pub const SCRATCH_ALIGN: u64 = 64;

/// What the MHA lowering needs to know of the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MhaTarget {
    pub name: &'static str,
    /// f32 lanes per vector.
    pub lanes: usize,
    /// Columns of one packed B panel of the brgemm (its register tile's width:
    /// `nr × lanes` of the x64 crate's `Blocking::default_for`).
    pub panel: usize,
    /// Q rows per work item.
    pub m_blk: usize,
    /// Score columns per KV step.
    pub n_blk: usize,
}

impl MhaTarget {
    /// AVX-512: 16 lanes, 4-vector (64-column) brgemm panels, 48 × 128 blocks.
    pub const AVX512: MhaTarget = MhaTarget {
        name: "avx512",
        lanes: 16,
        panel: 64,
        m_blk: 48,
        n_blk: 128,
    };
    /// AVX2: 8 lanes, 2-vector (16-column) brgemm panels, 48 × 128 blocks.
    pub const AVX2: MhaTarget = MhaTarget {
        name: "avx2",
        lanes: 8,
        panel: 16,
        m_blk: 48,
        n_blk: 128,
    };

    /// The target called `name` (`avx512`, `avx2`).
    pub fn by_name(name: &str) -> Option<MhaTarget> {
        [MhaTarget::AVX512, MhaTarget::AVX2]
            .into_iter()
            .find(|t| t.name == name)
    }
}

/// A pass over the attention IR.
pub trait MhaPass: Sync {
    /// The pass name (snake case, as `--print-after` takes it).
    fn name(&self) -> &'static str;
    fn run(&self, ir: &mut MhaIr, target: &MhaTarget) -> Result<(), LowerError>;
}

/// The values of the blocking parameters `m_blk`, `n_blk`, `panel`.
pub fn blocking_values(b: &MhaBlocking) -> DimValues {
    let mut d = DimValues::new();
    for (n, v) in [
        (sym::M_BLK, b.m_blk),
        (sym::N_BLK, b.n_blk),
        (sym::PANEL, b.panel),
    ] {
        d.set(n, i64::try_from(v).unwrap_or(i64::MAX));
    }
    d
}

/// Where each buffer sits in one thread's scratchpad for concrete shapes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScratchLayout {
    /// Per buffer (in declaration order): name, byte offset, size in bytes.
    pub buffers: Vec<(String, usize, usize)>,
    /// Bytes per thread (a multiple of [`SCRATCH_ALIGN`]).
    pub total: usize,
}

impl ScratchLayout {
    /// The byte offset of buffer `name`.
    pub fn offset(&self, name: &str) -> Option<usize> {
        self.buffers.iter().find(|b| b.0 == name).map(|b| b.1)
    }
}

impl std::fmt::Display for ScratchLayout {
    /// One line per buffer (`@name offset=.. bytes=..`), then `total=..`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (name, off, bytes) in &self.buffers {
            writeln!(f, "@{name} offset={off} bytes={bytes}")?;
        }
        write!(f, "total={}", self.total)
    }
}

/// A lowered attention subgraph: the final IR, its blocking and buffer plan.
#[derive(Clone, Debug)]
pub struct MhaPlan {
    ir: MhaIr,
}

impl MhaPlan {
    /// The final IR.
    pub fn ir(&self) -> &MhaIr {
        &self.ir
    }

    /// The block sizes chosen by BrgemmBlocking.
    pub fn blocking(&self) -> MhaBlocking {
        self.ir
            .blocking
            .expect("a plan is only made from a blocked IR")
    }

    /// The dim values of concrete input shapes (one per body input, in order), with
    /// the blocking parameters: what [`MhaPlan::scratch_layout`] takes.
    pub fn dims_of_shapes(&self, shapes: &[&[usize]]) -> Result<DimValues, LowerError> {
        let mut d = blocking_values(&self.blocking());
        for v in &self.ir.values {
            let ValueKind::Input(i) = v.kind else {
                continue;
            };
            let shape = shapes.get(i).ok_or_else(|| {
                LowerError::Unsupported(format!("mha: no shape for input {i} ('{}')", v.name))
            })?;
            if shape.len() != v.shape.len() {
                return Err(LowerError::Unsupported(format!(
                    "mha: input '{}' has shape {shape:?}, declared with {} dims",
                    v.name,
                    v.shape.len()
                )));
            }
            for (s, &x) in v.shape.iter().zip(shape.iter()) {
                let x = i64::try_from(x)
                    .map_err(|_| LowerError::Unsupported("dim overflows".into()))?;
                match s {
                    Sym::Var(n) => d.bind(n, x)?,
                    Sym::Const(c) if *c != x => {
                        return Err(LowerError::Unsupported(format!(
                            "mha: input '{}' has shape {shape:?}, declared static dim {c}",
                            v.name
                        )));
                    }
                    _ => {}
                }
            }
        }
        Ok(d)
    }

    /// The scratchpad layout for `dims` (dynamic dims by name; blocking parameters
    /// missing from `dims` take the plan's values; smaller ones are allowed).
    pub fn scratch_layout(&self, dims: &DimValues) -> Result<ScratchLayout, LowerError> {
        let mut d = blocking_values(&self.blocking());
        for (n, v) in dims.iter() {
            d.set(n, v);
        }
        let b = self.blocking();
        for (n, max) in [(sym::M_BLK, b.m_blk), (sym::N_BLK, b.n_blk)] {
            let v = d.get(n)?;
            if v < 1 || v > max as i64 {
                return Err(LowerError::Unsupported(format!(
                    "{n} = {v} is outside 1..={max}"
                )));
            }
        }
        let plan = self
            .ir
            .scratch
            .as_ref()
            .expect("a plan has allocated buffers");
        let num = |s: &Sym| -> Result<usize, LowerError> {
            usize::try_from(s.eval(&d)?)
                .map_err(|_| LowerError::Unsupported(format!("'{s}' is negative")))
        };
        let mut buffers = vec![];
        for (name, off, bytes) in self.allocated_buffers() {
            buffers.push((name.to_string(), num(off)?, num(&bytes)?));
        }
        Ok(ScratchLayout {
            buffers,
            total: num(&plan.total)?,
        })
    }
}

impl MhaPlan {
    /// Every allocated buffer, in declaration order: name, byte offset (the offset of
    /// the buffer it is computed in place of, if any) and size in bytes.
    fn allocated_buffers(&self) -> Vec<(&str, &Sym, Sym)> {
        let mut out = vec![];
        for e in &self.ir.exprs {
            let (Op::Buffer, Some(v)) = (&e.op, e.out) else {
                continue;
            };
            let val = self.ir.value(v);
            let ValueKind::Buffer(Some(a)) = &val.kind else {
                continue;
            };
            let off = match a.in_place_of {
                Some(r) => match &self.ir.value(r).kind {
                    ValueKind::Buffer(Some(ra)) => &ra.offset,
                    _ => &a.offset,
                },
                None => &a.offset,
            };
            out.push((val.name.as_str(), off, val.bytes()));
        }
        out
    }

    /// The scratch layout as formulas of the input shapes alone, for a configurator
    /// that evaluates it on every call: the blocking parameters and static dims are
    /// folded in here, once, so [`LayoutFormula::eval`] only reads the few dynamic
    /// dims the offsets depend on (the K length, typically) from the shapes.
    pub fn layout_formula(&self) -> Result<LayoutFormula, LowerError> {
        let plan = self
            .ir
            .scratch
            .as_ref()
            .expect("a plan has allocated buffers");
        let d = blocking_values(&self.blocking());
        let buffers: Vec<(String, Sym, Sym)> = self
            .allocated_buffers()
            .into_iter()
            .map(|(name, off, bytes)| {
                (
                    name.to_string(),
                    off.partial_eval(&d),
                    bytes.partial_eval(&d),
                )
            })
            .collect();
        let total = plan.total.partial_eval(&d);
        let mut names = std::collections::BTreeSet::new();
        for (_, o, b) in &buffers {
            o.vars(&mut names);
            b.vars(&mut names);
        }
        total.vars(&mut names);
        let mut dims = vec![];
        for name in names {
            let mut at = vec![];
            for v in &self.ir.values {
                if let ValueKind::Input(i) = v.kind {
                    for (axis, s) in v.shape.iter().enumerate() {
                        if matches!(s, Sym::Var(n) if *n == name) {
                            at.push((i, axis));
                        }
                    }
                }
            }
            if at.is_empty() {
                return Err(LowerError::Unsupported(format!(
                    "mha: the scratch layout depends on '{name}', which no input shape gives"
                )));
            }
            dims.push((name, at));
        }
        Ok(LayoutFormula {
            dims,
            buffers,
            total,
        })
    }
}

/// [`MhaPlan::layout_formula`]: each buffer's offset and size and the total as
/// folded expressions of a few dynamic dims, with where in the input shapes each
/// dim is read.
#[derive(Clone, Debug)]
pub struct LayoutFormula {
    /// Per dynamic dim: its name and the (input, axis) positions that give it.
    dims: Vec<(String, Vec<(usize, usize)>)>,
    /// Per buffer (in declaration order): name, byte offset, size in bytes.
    buffers: Vec<(String, Sym, Sym)>,
    total: Sym,
}

/// A [`LayoutFormula`] evaluated: byte offset and size per buffer (in the
/// formula's order, see [`LayoutFormula::index`]) and the total.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayoutValues {
    pub buffers: Vec<(usize, usize)>,
    pub total: usize,
}

impl LayoutFormula {
    /// The position of buffer `name` in [`LayoutValues::buffers`].
    pub fn index(&self, name: &str) -> Option<usize> {
        self.buffers.iter().position(|b| b.0 == name)
    }

    /// The buffers' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.buffers.iter().map(|b| b.0.as_str())
    }

    /// The layout for inputs of `shapes` (one per body input): the same values as
    /// [`MhaPlan::scratch_layout`] of [`MhaPlan::dims_of_shapes`]. An error if a
    /// dim is missing or read with two different values.
    pub fn eval(&self, shapes: &[&[usize]]) -> Result<LayoutValues, LowerError> {
        let mut vals: smallvec::SmallVec<[i64; 4]> = smallvec::SmallVec::new();
        for (name, at) in &self.dims {
            let mut val = None;
            for &(i, axis) in at {
                let x = shapes
                    .get(i)
                    .and_then(|s| s.get(axis))
                    .and_then(|&x| i64::try_from(x).ok())
                    .ok_or_else(|| {
                        LowerError::Unsupported(format!(
                            "mha: no dim {axis} of input {i} for '{name}'"
                        ))
                    })?;
                match val {
                    Some(v) if v != x => {
                        return Err(LowerError::Unsupported(format!(
                            "dim {name} is both {v} and {x}"
                        )));
                    }
                    _ => val = Some(x),
                }
            }
            vals.push(val.expect("every dim has a position"));
        }
        let get = |n: &str| -> Result<i64, LowerError> {
            self.dims
                .iter()
                .position(|d| d.0 == n)
                .map(|i| vals[i])
                .ok_or_else(|| LowerError::Unsupported(format!("dim {n} has no value")))
        };
        let num = |s: &Sym| -> Result<usize, LowerError> {
            usize::try_from(s.eval_with(&get)?)
                .map_err(|_| LowerError::Unsupported(format!("'{s}' is negative")))
        };
        let buffers = self
            .buffers
            .iter()
            .map(|(_, o, b)| Ok((num(o)?, num(b)?)))
            .collect::<Result<Vec<_>, LowerError>>()?;
        Ok(LayoutValues {
            buffers,
            total: num(&self.total)?,
        })
    }
}

/// Lowers `pattern` (body inputs named `in0`, `in1`, ...) for `target`.
pub fn lower_mha(pattern: &MhaPattern, target: &MhaTarget) -> Result<MhaPlan, LowerError> {
    lower_mha_named(pattern, "mha", &[], target, &mut |_, _| {})
}

/// Reads an `mha` subgraph body with [`analyze_mha`] and lowers it, naming values
/// after the body's Parameters; `after_pass` sees the IR after every pass.
pub fn lower_mha_body(
    body: &Graph,
    target: &MhaTarget,
    after_pass: &mut dyn FnMut(&str, &MhaIr),
) -> Result<MhaPlan, LowerError> {
    let pattern = analyze_mha(body).map_err(|e| LowerError::Unsupported(format!("mha: {e}")))?;
    let names: Vec<String> = body
        .inputs
        .iter()
        .map(|&p| match &body.node(p).op {
            GraphOp::Parameter => body.node(p).outputs[0].name.clone(),
            _ => body.node(p).name.clone(),
        })
        .collect();
    lower_mha_named(&pattern, &body.name, &names, target, after_pass)
}

/// [`lower_mha`] with a name for the IR, names of the body inputs, and a hook.
pub fn lower_mha_named(
    pattern: &MhaPattern,
    name: &str,
    names: &[String],
    target: &MhaTarget,
    after_pass: &mut dyn FnMut(&str, &MhaIr),
) -> Result<MhaPlan, LowerError> {
    let mut ir = build::build(pattern, name, names)?;
    pipeline::run_pipeline(&mut ir, target, after_pass)?;
    // What the kernel takes: nothing of the graph's ops is left.
    for (i, e) in ir.exprs.iter().enumerate() {
        if matches!(
            e.op,
            Op::Transpose { .. }
                | Op::MatMul { .. }
                | Op::Scale { .. }
                | Op::Mask { .. }
                | Op::Softmax { .. }
        ) {
            return Err(LowerError::Unsupported(format!(
                "mha: expression {i} ('{}') is left after the passes: a layout the brgemm cannot read",
                e.out.map_or(String::new(), |v| ir.value(v).name.clone()),
            )));
        }
    }
    Ok(MhaPlan { ir })
}
