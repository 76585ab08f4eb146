//! The canonical form of an attention block: what the MHA kernel compiles from, and
//! why a block does not fit it.

use std::fmt;

use snipjit_ir::{DType, Shape};

use super::HEAD_SIZES;

/// A matched attention block in canonical form: what the MHA kernel computes.
///
/// With `r` the rank (3 or 4) and the batch dims `[..]` (`[BH]` or `[B, H]`):
/// ```text
/// q~ = transpose(in[q.input], q.perm)     [.., S, D]
/// k~ = transpose(in[k.input], k.perm)     [.., L, D]
/// v~ = transpose(in[v.input], v.perm)     [.., L, Dv]
/// s  = (q~ (*|/) scale if at Q) @ k~^T    [.., S, L]
/// s  = s (*|/) scale                      if the scale is on the scores
/// s  = s + mask | select(mask, s, fill)   if there is a mask
/// o  = softmax(s, last axis) @ v~         [.., S, Dv]
/// out = transpose(o, output.perm)         the body's only result
/// ```
/// `transpose(x, p)` is the ONNX Transpose: dim `i` of the result is dim `p[i]` of
/// `x`. So operand dim `p[i]` is canonical dim `i`, and a kernel reads `q~[.., s, d]`
/// from `in[q.input]` with that input's strides permuted by `q.perm`. Batch dims
/// broadcast (numpy rules) across q~, k~, v~ and the mask.
///
/// Layout guarantees: for Q and V `perm[r-1] == r-1` (D is the innermost axis of
/// the input); for K either that or `perm[r-2] == r-1` (the input stores K^T, L
/// innermost: see [`MhaPattern::k_pretransposed`]); the output keeps Dv innermost.
/// The order of ops is exactly the one above, so a kernel that follows it computes
/// the body's ops in the body's order.
#[derive(Clone, Debug, PartialEq)]
pub struct MhaPattern {
    /// 3 or 4.
    pub rank: usize,
    pub q: MhaOperand,
    pub k: MhaOperand,
    pub v: MhaOperand,
    /// D: the size of q~'s and k~'s last dim (static, in [`HEAD_SIZES`]).
    pub head_size: usize,
    /// Dv: the size of v~'s last dim (static, in [`HEAD_SIZES`]).
    pub v_head_size: usize,
    pub scale: Option<MhaScale>,
    pub mask: Option<MhaMask>,
    /// The shape of the scores `[.., S, L]` (as the first MatMul's output).
    pub scores_shape: Shape,
    pub output: MhaOutput,
}

impl MhaPattern {
    /// True if the K input stores K^T (`[.., D, L]` up to batch dims): the key dim
    /// L is innermost, as when a model transposes K ahead of time.
    pub fn k_pretransposed(&self) -> bool {
        self.k.perm[self.rank - 2] == self.rank - 1
    }
}

/// Q, K or V: which body input holds it and how to read it in canonical order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MhaOperand {
    /// Index of the body input (Parameter) holding the operand. Q and K (or K and V)
    /// may share one input.
    pub input: usize,
    /// Canonical view = `transpose(input, perm)` (see [`MhaPattern`]); fuses the
    /// Transposes and MatMul transpose flags of the matched ops.
    pub perm: Vec<usize>,
    /// The canonical shape (`[.., S, D]` for Q, `[.., L, D]` for K, `[.., L, Dv]` for V).
    pub shape: Shape,
}

/// `Mul` or `Div` by the scale (kept apart: `x / c` and `x * (1 / c)` differ in the
/// last bit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleOp {
    Mul,
    Div,
}

/// Where the scale applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleAt {
    /// To Q, before the first MatMul (`[.., S, D]` elements).
    Q,
    /// To the scores, right after the first MatMul (`[.., S, L]` elements).
    Scores,
}

/// The scalar scale of an attention block.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MhaScale {
    pub op: ScaleOp,
    pub value: f32,
    pub at: ScaleAt,
}

impl MhaScale {
    /// The scale applied to one element, as the body's op computes it.
    pub fn apply(&self, x: f32) -> f32 {
        match self.op {
            ScaleOp::Mul => x * self.value,
            ScaleOp::Div => x / self.value,
        }
    }
}

/// The mask of an attention block, applied to the (scaled) scores.
#[derive(Clone, Debug, PartialEq)]
pub enum MhaMask {
    /// `s + mask`; `mask` is f32 and broadcasts into the scores' shape.
    Additive { input: usize, shape: Shape },
    /// `mask == keep_when ? s : fill`; `mask` is bool and broadcasts into the
    /// scores' shape. `keep_when` is true for `Select(mask, s, fill)` and false for
    /// `Select(mask, fill, s)`.
    Boolean {
        input: usize,
        shape: Shape,
        fill: f32,
        keep_when: bool,
    },
}

impl MhaMask {
    /// The body input holding the mask.
    pub fn input(&self) -> usize {
        match self {
            MhaMask::Additive { input, .. } | MhaMask::Boolean { input, .. } => *input,
        }
    }
}

/// The output of an attention block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MhaOutput {
    /// `out = transpose(o, perm)` for the canonical `o[.., S, Dv]`; `perm[r-1] == r-1`.
    pub perm: Vec<usize>,
    /// The shape of `out` (the body's result).
    pub shape: Shape,
}

/// Why a Softmax between two MatMuls (or a body) is not an attention block the MHA
/// kernel takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotMha {
    /// The Softmax is not over the last axis.
    SoftmaxNotLastAxis { axis: i64, rank: usize },
    /// The scores have a rank other than 3 or 4.
    Rank(usize),
    /// Q, K, V and the scores do not all have the same rank.
    RankMismatch,
    /// The scores or V are not f32.
    DType(DType),
    /// A head size is dynamic.
    DynamicHeadSize,
    /// A head size is outside [`HEAD_SIZES`].
    HeadSize(usize),
    /// An op between the first MatMul and the Softmax is not a scale, mask or Identity.
    ScoreOp(String),
    /// A `Mul` or `Div` of the scores by something else than a one-element f32 constant.
    ScaleNotScalarConstant,
    /// More than one scale on the scores.
    SeveralScales,
    /// More than one mask.
    SeveralMasks,
    /// The scores are scaled after the mask.
    ScaleAfterMask,
    /// The mask is a one-element constant, not a mask.
    MaskScalar,
    /// The mask's shape does not broadcast into the scores' shape.
    MaskNotBroadcastable {
        mask: Box<Shape>,
        scores: Box<Shape>,
    },
    /// A mask `Select` whose fill value is not a one-element f32 constant.
    SelectFillNotScalarConstant,
    /// An op of the chain changes the scores' shape.
    ScoresShapeChanged(String),
    /// A layout the kernel does not read (the head dim not innermost), from a MatMul
    /// transpose flag.
    Layout {
        operand: &'static str,
        perm: Vec<usize>,
    },
    /// The second MatMul transposes the probabilities.
    ProbsTransposed,
    /// An operand (Q, K, V or the mask) is computed inside the pattern.
    OperandInsidePattern(&'static str),
    /// A value inside the pattern is also used outside it (or is a graph output).
    UsedOutside(String),
    /// Nothing reads the block's output.
    Unused,
    /// The block has more ops than [`crate::TokenizeConfig::max_ops`].
    TooManyOps { ops: usize, max_ops: usize },
    /// The block has fewer ops than [`crate::TokenizeConfig::min_ops`].
    BelowMinOps { ops: usize, min_ops: usize },
    /// The block needs more data pointers than the budget, and spilling is off.
    OverPointerBudget { pointers: usize, budget: usize },
    /// A subgraph body that is not exactly one attention block ([`super::analyze_mha`]).
    Body(String),
}

impl fmt::Display for NotMha {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotMha::SoftmaxNotLastAxis { axis, rank } => {
                write!(f, "softmax not on last axis (axis {axis} of rank {rank})")
            }
            NotMha::Rank(r) => write!(f, "scores of rank {r}, not 3 or 4"),
            NotMha::RankMismatch => f.write_str("Q, K, V and the scores differ in rank"),
            NotMha::DType(d) => write!(f, "dtype {d}, not f32"),
            NotMha::DynamicHeadSize => f.write_str("head size is dynamic"),
            NotMha::HeadSize(d) => write!(
                f,
                "head size {d} out of {}..{}",
                HEAD_SIZES.start(),
                HEAD_SIZES.end()
            ),
            NotMha::ScoreOp(op) => write!(f, "{op} between the MatMul and the Softmax"),
            NotMha::ScaleNotScalarConstant => {
                f.write_str("scores scaled by something else than a scalar constant")
            }
            NotMha::SeveralScales => f.write_str("more than one scale on the scores"),
            NotMha::SeveralMasks => f.write_str("more than one mask"),
            NotMha::ScaleAfterMask => f.write_str("scale applied after the mask"),
            NotMha::MaskScalar => f.write_str("mask is a scalar constant"),
            NotMha::MaskNotBroadcastable { mask, scores } => {
                write!(f, "mask {mask} does not broadcast into scores {scores}")
            }
            NotMha::SelectFillNotScalarConstant => {
                f.write_str("mask Select fill is not a scalar constant")
            }
            NotMha::ScoresShapeChanged(n) => write!(f, "'{n}' changes the scores' shape"),
            NotMha::Layout { operand, perm } => {
                write!(
                    f,
                    "{operand} layout {perm:?} has the head dim not innermost"
                )
            }
            NotMha::ProbsTransposed => f.write_str("second MatMul transposes the softmax"),
            NotMha::OperandInsidePattern(o) => write!(f, "{o} is computed inside the pattern"),
            NotMha::UsedOutside(v) => write!(f, "'{v}' is also used outside the pattern"),
            NotMha::Unused => f.write_str("the output is not used"),
            NotMha::TooManyOps { ops, max_ops } => {
                write!(f, "{ops} ops, more than max_ops {max_ops}")
            }
            NotMha::BelowMinOps { ops, min_ops } => {
                write!(f, "{ops} ops, below min_ops {min_ops}")
            }
            NotMha::OverPointerBudget { pointers, budget } => write!(
                f,
                "needs {pointers} data pointers, budget is {budget} and spilling is off"
            ),
            NotMha::Body(why) => write!(f, "not an attention body: {why}"),
        }
    }
}

impl std::error::Error for NotMha {}
