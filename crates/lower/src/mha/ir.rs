//! The attention IR: an ordered list of expressions over named tensors and buffers,
//! with loops and symbolic sizes ([`Sym`]).
//!
//! It starts as the attention block's ops (Transpose, MatMul, scale, mask, Softmax:
//! [`super::build`]) and ends, after the passes of [`super::pipeline`], as a blocked
//! flash-attention loop nest of brgemms, online-softmax steps and per-thread buffers
//! with offsets in one scratchpad. The text form is in [`super::text`].

use super::sym::Sym;

/// A value: a tensor (input, output or intermediate) or, after InsertBuffers, a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ValueId(pub u32);

/// A loop of the loop table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LoopId(pub u32);

/// What a value is.
#[derive(Clone, Debug, PartialEq)]
pub enum ValueKind {
    /// Body input `index` (a Parameter).
    Input(usize),
    /// The body's output.
    Output,
    /// An intermediate tensor (whole, before blocking; one block after it).
    Temp,
    /// A per-thread scratch buffer (InsertBuffers); `alloc` is set by AllocateBuffers.
    Buffer(Option<Alloc>),
}

/// Where AllocateBuffers put a buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct Alloc {
    /// Byte offset in the per-thread scratchpad.
    pub offset: Sym,
    /// The lifetime: expression indices `[first, last]`.
    pub live: (usize, usize),
    /// The buffer whose memory this one reuses in place, if any.
    pub in_place_of: Option<ValueId>,
}

/// A named value of the IR.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub name: String,
    pub kind: ValueKind,
    /// `f32` or `bool` (a boolean mask).
    pub dtype: &'static str,
    /// Dims (as stored in memory for inputs and the output).
    pub shape: Vec<Sym>,
}

impl Value {
    pub fn is_buffer(&self) -> bool {
        matches!(self.kind, ValueKind::Buffer(_))
    }

    /// Bytes of the value (elements × element size).
    pub fn bytes(&self) -> Sym {
        let elem = if self.dtype == "bool" { 1 } else { 4 };
        Sym::product(std::iter::once(Sym::Const(elem)).chain(self.shape.iter().cloned()))
    }
}

/// How an expression reads a value: `view = transpose(value, perm)` (the ONNX
/// Transpose: view axis `i` is value axis `perm[i]`), with the strides of that view
/// in elements. `packed`: the value holds brgemm B panels (no strides).
#[derive(Clone, Debug, PartialEq)]
pub struct Operand {
    pub value: ValueId,
    pub perm: Vec<usize>,
    /// Strides of the view's batch dims (all but the last two).
    pub batch: Vec<Sym>,
    /// Stride of the view's row (second-last) dim.
    pub row: Sym,
    /// Stride of the view's column (last) dim.
    pub col: Sym,
    pub packed: bool,
}

/// The scale folded into the online softmax.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scale {
    /// true: `x * value`; false: `x / value`.
    pub mul: bool,
    pub value: f32,
}

/// A mask of the scores.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MaskKind {
    /// `s + mask`.
    Additive,
    /// `mask == keep_when ? s : fill`.
    Select { fill: f32, keep_when: bool },
}

/// How a brgemm reads B.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BLayout {
    /// `B[K, N]`, rows of N with stride `row`.
    RowMajor,
    /// `B^T[N, K]` given (rows of K with stride `row`): the brgemm transposes.
    Transposed,
    /// Panels of `panel` columns written by a `pack_b` expression.
    Packed,
}

/// `C = beta * C + A · B`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Beta {
    /// Overwrite C.
    Zero,
    /// Accumulate into C.
    One,
    /// Overwrite on the first iteration of the KV loop, accumulate after it.
    FirstZero,
}

/// An extent of a brgemm dim or a softmax block: a whole dim, or the current block of
/// a loop (its step, or its tail).
#[derive(Clone, Debug, PartialEq)]
pub enum Extent {
    Full(Sym),
    Block(LoopId),
}

/// A batch-reduce GEMM `C[M, N] (+)= A[M, K] · B[K, N]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Brgemm {
    pub a: Operand,
    pub b: Operand,
    pub b_layout: BLayout,
    pub c: Operand,
    pub m: Extent,
    pub n: Extent,
    pub k: Extent,
    pub beta: Beta,
}

/// One step of the online softmax over a block of scores `s` (read), writing the
/// probabilities `p = exp(mask(scale(s)) - m_new)` and updating the running row max
/// `m`, sum `l`, and rescaling the accumulator `acc` by `exp(m_old - m_new)`.
#[derive(Clone, Debug, PartialEq)]
pub struct SoftmaxStep {
    pub scores: ValueId,
    pub max: ValueId,
    pub sum: ValueId,
    pub acc: ValueId,
    pub scale: Option<Scale>,
    pub mask: Option<(Operand, MaskKind)>,
    pub rows: Extent,
    pub cols: Extent,
}

/// The operation of an expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Body input `index`.
    Parameter(usize),
    Transpose {
        src: ValueId,
        perm: Vec<usize>,
    },
    MatMul {
        a: ValueId,
        b: ValueId,
        transpose_b: bool,
    },
    Scale {
        src: ValueId,
        scale: Scale,
    },
    Mask {
        src: ValueId,
        mask: ValueId,
        kind: MaskKind,
    },
    /// Softmax over the last axis.
    Softmax {
        src: ValueId,
    },
    /// Writes its output operand `c` (the expression's `out` is `c.value`).
    Brgemm(Box<Brgemm>),
    /// Writes the probabilities (the expression's `out`).
    SoftmaxStep(Box<SoftmaxStep>),
    /// `out = acc / sum`, stored through `out` (the expression's `out` is `out.value`).
    SoftmaxFinish {
        acc: ValueId,
        sum: ValueId,
        out: Operand,
        rows: Extent,
    },
    /// Packs B (read through `src`, `n` columns of `k` rows, as `layout` says) into
    /// panels of `panel` columns in the output buffer.
    PackB {
        src: Operand,
        layout: BLayout,
        n: Sym,
        k: Sym,
    },
    /// Declares a buffer (its `out`).
    Buffer,
    LoopBegin(LoopId),
    LoopEnd(LoopId),
    Result {
        src: ValueId,
    },
}

/// One expression: an op and the value it defines or writes, if any.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub out: Option<ValueId>,
    pub op: Op,
}

/// A loop: `for i in (0..work).step_by(step)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Loop {
    pub name: String,
    pub work: Sym,
    pub step: Sym,
    /// Its iterations are independent work items of the parallel domain.
    pub parallel: bool,
    /// The last iteration may be shorter (`work % step`).
    pub tail: bool,
    /// Pointer moves per iteration (elements): the value and its increment.
    pub moves: Vec<(ValueId, Sym)>,
}

/// Block sizes chosen by BrgemmBlocking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MhaBlocking {
    /// Q rows per work item.
    pub m_blk: usize,
    /// Score columns (K/V rows) per KV step.
    pub n_blk: usize,
    /// The brgemm K block: the whole head size D.
    pub k_blk: usize,
    /// Columns per packed B panel.
    pub panel: usize,
}

/// The canonical dims of the attention block.
#[derive(Clone, Debug, PartialEq)]
pub struct CanonDims {
    /// The broadcast batch dims (`[BH]` or `[B, H]`).
    pub batch: Vec<Sym>,
    pub s: Sym,
    pub l: Sym,
    pub d: usize,
    pub dv: usize,
}

/// How the buffers sit in the per-thread scratchpad (AllocateBuffers).
#[derive(Clone, Debug, PartialEq)]
pub struct ScratchPlan {
    /// Bytes of the buffers whose sizes are static (placed first).
    pub static_bytes: Sym,
    /// Total bytes per thread.
    pub total: Sym,
}

/// The attention IR of one subgraph.
#[derive(Clone, Debug, PartialEq)]
pub struct MhaIr {
    pub name: String,
    pub rank: usize,
    pub dims: CanonDims,
    pub values: Vec<Value>,
    pub exprs: Vec<Expr>,
    pub loops: Vec<Loop>,
    pub blocking: Option<MhaBlocking>,
    pub scratch: Option<ScratchPlan>,
}

impl MhaIr {
    pub fn value(&self, v: ValueId) -> &Value {
        &self.values[v.0 as usize]
    }

    pub fn value_mut(&mut self, v: ValueId) -> &mut Value {
        &mut self.values[v.0 as usize]
    }

    pub fn lp(&self, l: LoopId) -> &Loop {
        &self.loops[l.0 as usize]
    }

    /// Adds a value.
    pub fn add_value(
        &mut self,
        name: &str,
        kind: ValueKind,
        dtype: &'static str,
        shape: Vec<Sym>,
    ) -> ValueId {
        let id = ValueId(u32::try_from(self.values.len()).expect("fewer than 2^32 values"));
        self.values.push(Value {
            name: name.to_string(),
            kind,
            dtype,
            shape,
        });
        id
    }

    /// Dense strides (elements) of a value's dims.
    pub fn dense_strides(&self, v: ValueId) -> Vec<Sym> {
        let shape = &self.value(v).shape;
        let mut st = vec![Sym::Const(1); shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            st[i] = Sym::times(st[i + 1].clone(), shape[i + 1].clone());
        }
        st
    }

    /// An operand reading `transpose(v, perm)` of the dense value `v`.
    pub fn operand(&self, v: ValueId, perm: Vec<usize>) -> Operand {
        let st = self.dense_strides(v);
        let r = perm.len();
        Operand {
            value: v,
            batch: perm[..r.saturating_sub(2)]
                .iter()
                .map(|&p| st[p].clone())
                .collect(),
            row: if r >= 2 {
                st[perm[r - 2]].clone()
            } else {
                Sym::Const(0)
            },
            col: st[perm[r - 1]].clone(),
            perm,
            packed: false,
        }
    }

    /// An operand reading `v` as it is stored.
    pub fn dense(&self, v: ValueId) -> Operand {
        self.operand(v, (0..self.value(v).shape.len()).collect())
    }

    /// The values an expression reads (operands and sources), in a fixed order.
    pub fn reads(&self, e: &Expr) -> Vec<ValueId> {
        match &e.op {
            Op::Parameter(_) | Op::Buffer | Op::LoopBegin(_) | Op::LoopEnd(_) => vec![],
            Op::Transpose { src, .. } | Op::Scale { src, .. } | Op::Softmax { src } => vec![*src],
            Op::Result { src } => vec![*src],
            Op::MatMul { a, b, .. } => vec![*a, *b],
            Op::Mask { src, mask, .. } => vec![*src, *mask],
            Op::Brgemm(b) => {
                let mut r = vec![b.a.value, b.b.value];
                if b.beta != Beta::Zero {
                    r.push(b.c.value);
                }
                r
            }
            // The step initializes max, sum and acc on the first KV block: it never
            // reads them before some step wrote them.
            Op::SoftmaxStep(s) => {
                let mut r = vec![s.scores];
                if let Some((m, _)) = &s.mask {
                    r.push(m.value);
                }
                r
            }
            Op::SoftmaxFinish { acc, sum, .. } => vec![*acc, *sum],
            Op::PackB { src, .. } => vec![src.value],
        }
    }

    /// The values an expression writes: its `out`, and the state a softmax step updates.
    pub fn writes(&self, e: &Expr) -> Vec<ValueId> {
        let mut w: Vec<ValueId> = e.out.into_iter().collect();
        if let Op::SoftmaxStep(s) = &e.op {
            w.extend([s.max, s.sum, s.acc]);
        }
        w
    }

    /// The values an expression reads and writes except on the first iteration of
    /// the innermost loop around it (the online softmax's running state, and an
    /// accumulator written with `beta=first?0:1`): such a value lives across that
    /// loop's iterations.
    pub fn carried(&self, e: &Expr) -> Vec<ValueId> {
        match &e.op {
            Op::SoftmaxStep(s) => vec![s.max, s.sum, s.acc],
            Op::Brgemm(b) if b.beta == Beta::FirstZero => vec![b.c.value],
            _ => vec![],
        }
    }

    /// The innermost loop around expression `i`: its `LoopBegin` and `LoopEnd` indices.
    pub fn enclosing_loop(&self, i: usize) -> Option<(usize, usize)> {
        let mut depth = 0usize;
        for j in (0..i).rev() {
            match self.exprs[j].op {
                Op::LoopEnd(_) => depth += 1,
                Op::LoopBegin(l) if depth == 0 => return self.loop_bounds(l),
                Op::LoopBegin(_) => depth -= 1,
                _ => {}
            }
        }
        None
    }

    /// The users (expression indices) reading `v`.
    pub fn users(&self, v: ValueId) -> Vec<usize> {
        (0..self.exprs.len())
            .filter(|&i| self.reads(&self.exprs[i]).contains(&v))
            .collect()
    }

    /// The expression defining `v` as its `out` first, if any.
    pub fn producer(&self, v: ValueId) -> Option<usize> {
        self.exprs.iter().position(|e| e.out == Some(v))
    }

    /// Every operand of an expression, mutably (passes rewrite layouts through it).
    pub fn operands_mut(e: &mut Expr) -> Vec<&mut Operand> {
        match &mut e.op {
            Op::Brgemm(b) => vec![&mut b.a, &mut b.b, &mut b.c],
            Op::SoftmaxStep(s) => s.mask.as_mut().map(|(m, _)| m).into_iter().collect(),
            Op::SoftmaxFinish { out, .. } => vec![out],
            Op::PackB { src, .. } => vec![src],
            _ => vec![],
        }
    }

    /// Replaces every read of `from` by `to` (sources and operands; layouts untouched).
    pub fn replace_uses(&mut self, from: ValueId, to: ValueId) {
        let sub = |v: &mut ValueId| {
            if *v == from {
                *v = to;
            }
        };
        for e in &mut self.exprs {
            match &mut e.op {
                Op::Transpose { src, .. }
                | Op::Scale { src, .. }
                | Op::Softmax { src }
                | Op::Result { src } => sub(src),
                Op::MatMul { a, b, .. } => {
                    sub(a);
                    sub(b);
                }
                Op::Mask { src, mask, .. } => {
                    sub(src);
                    sub(mask);
                }
                Op::SoftmaxStep(s) => {
                    sub(&mut s.scores);
                    sub(&mut s.max);
                    sub(&mut s.sum);
                    sub(&mut s.acc);
                    if let Some((m, _)) = &mut s.mask {
                        sub(&mut m.value);
                    }
                }
                Op::SoftmaxFinish { acc, sum, .. } => {
                    sub(acc);
                    sub(sum);
                }
                Op::Brgemm(b) => {
                    sub(&mut b.a.value);
                    sub(&mut b.b.value);
                }
                Op::PackB { src, .. } => sub(&mut src.value),
                Op::Parameter(_) | Op::Buffer | Op::LoopBegin(_) | Op::LoopEnd(_) => {}
            }
        }
    }

    /// Index of the `LoopBegin` and `LoopEnd` of a loop.
    pub fn loop_bounds(&self, l: LoopId) -> Option<(usize, usize)> {
        let b = self.exprs.iter().position(|e| e.op == Op::LoopBegin(l))?;
        let e = self.exprs.iter().position(|e| e.op == Op::LoopEnd(l))?;
        Some((b, e))
    }
}
