//! The MHA matcher: finds scaled-dot-product attention blocks and describes them.
//!
//! The pattern, anchored at each Softmax:
//! ```text
//! [Transpose] -> MatMul(Q, K^T) -> [Mul|Div scale] -> [Add mask | Select mask]
//!   -> Softmax(last axis) -> MatMul(., V) -> [Transpose]
//! ```
//! - ranks 3 (`[BH, S, D]`) or 4 (`[B, H, S, D]`), f32; batch dims broadcast as the
//!   MatMuls do;
//! - the scale is a one-element f32 constant, a `Mul` (either side) or a `Div` (as
//!   divisor), on the scores or on Q (before or after Q's Transpose);
//! - the mask is an `Add` of an f32 tensor, or a `Select(bool, scores, fill)` /
//!   `Select(bool, fill, scores)` with a one-element f32 `fill`; its shape broadcasts
//!   into the scores' shape without growing it; a scale on the scores comes first;
//! - K^T comes from a Transpose, from the MatMul's `transpose_b`, or is given
//!   pre-transposed; Transposes on Q, K, V and the output join the pattern while the
//!   layout they make keeps the head dim D (or, for K, the key dim L) innermost in
//!   memory: a Transpose that would not is left outside, as an ordinary op;
//! - the head sizes (D of Q and K, Dv of V) are static and in [`HEAD_SIZES`];
//! - `Identity` nodes anywhere on the chain are absorbed.
//!
//! A Softmax between two MatMuls that breaks a rule is a near-miss: it stays ordinary
//! ops and the report names the rule ([`NotMha`]). Every node of a match but the last
//! must have all its users inside the match (the scores or probabilities also
//! returned, say, reject it), so outlining it never changes a value seen outside.
//!
//! Before and after ([`crate::outline`] builds the body; the ops stay unchanged, so the
//! interpreter computes the body exactly as before):
//! ```text
//! qt = Transpose(q, perm=[0, 2, 1, 3]); kt = Transpose(k, perm=[0, 2, 3, 1]); ...
//! s = MatMul(qt, kt); m = Add(Mul(s, 0.125), mask); p = Softmax(m, axis=-1)
//! o = Transpose(MatMul(p, vt), perm=[0, 2, 1, 3])
//!   -> o = Subgraph(q, k, v, mask, kind=mha) { the same ops }
//! ```
//! [`analyze_mha`] reads a body back into an [`MhaPattern`]: the interface the MHA
//! kernel compiles from.
//!
//! Ops around the block (a bias Add before Q, a residual Add after the output) do not
//! join its subgraph: they form elementwise subgraphs of their own. Only a scalar
//! scale on Q joins, as part of the pattern.

use std::fmt;
use std::ops::RangeInclusive;

use snipjit_ir::infer::norm_axis;
use snipjit_ir::{BinaryOp, DType, Dim, Graph, NodeId, Op, Shape, SubgraphKind, ValueRef};

use crate::outline::Region;
use crate::{LeftOut, LeftOutReason, TokenizeConfig, TokenizeError, is_scalar_constant};

/// The head sizes (D of Q and K, and Dv of V) an MHA subgraph may have.
pub const HEAD_SIZES: RangeInclusive<usize> = 16..=256;

/// How long a chain of ops between the first MatMul and the Softmax may be.
const MAX_SCORE_CHAIN: usize = 8;

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
    /// A subgraph body that is not exactly one attention block ([`analyze_mha`]).
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

/// A match in some graph, with operands as values of that graph.
#[derive(Clone, Debug)]
struct Found {
    /// Every matched node (constants excluded), in no particular order.
    nodes: Vec<NodeId>,
    rank: usize,
    q: (ValueRef, Vec<usize>),
    k: (ValueRef, Vec<usize>),
    v: (ValueRef, Vec<usize>),
    head_size: usize,
    v_head_size: usize,
    scale: Option<MhaScale>,
    mask: Option<FoundMask>,
    scores_shape: Shape,
    output: (ValueRef, Vec<usize>),
}

#[derive(Clone, Debug)]
struct FoundMask {
    value: ValueRef,
    /// `None`: additive; `Some((fill, keep_when))`: boolean.
    select: Option<(f32, bool)>,
}

/// Which operand a layout rule is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Q,
    K,
    V,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Q => "Q",
            Role::K => "K",
            Role::V => "V",
        }
    }

    /// True if the kernel reads an operand whose canonical view is `transpose(x, p)`.
    fn supports(self, p: &[usize]) -> bool {
        let r = p.len();
        match self {
            Role::Q | Role::V => p[r - 1] == r - 1,
            Role::K => p[r - 1] == r - 1 || p[r - 2] == r - 1,
        }
    }
}

struct Ctx<'g> {
    g: &'g Graph,
    users: Vec<Vec<(NodeId, usize)>>,
}

impl<'g> Ctx<'g> {
    fn new(g: &'g Graph) -> Ctx<'g> {
        Ctx {
            g,
            users: g.users(),
        }
    }

    fn op(&self, n: NodeId) -> &'g Op {
        &self.g.node(n).op
    }

    fn shape(&self, v: ValueRef) -> &'g Shape {
        &self.g.value_type(v).shape
    }

    /// The value of a one-element f32 constant.
    fn scalar_f32(&self, v: ValueRef) -> Option<f32> {
        match self.op(v.node) {
            Op::Constant(t) if t.numel() == 1 => t.as_f32().map(|d| d[0]),
            _ => None,
        }
    }

    /// The only user of node `n` (single-output nodes only).
    fn sole_user(&self, n: NodeId) -> Option<(NodeId, usize)> {
        match self.users[n.index()].as_slice() {
            [u] => Some(*u),
            _ => None,
        }
    }

    /// The path `[mm1, ..., producer of v]` from a MatMul to `v` through elementwise
    /// ops and Identities, following data inputs (not one-element constants).
    fn back_to_matmul(&self, v: ValueRef, depth: usize) -> Option<Vec<NodeId>> {
        let n = v.node;
        let data_inputs: &[usize] = match self.op(n) {
            Op::MatMul { .. } => return Some(vec![n]),
            Op::Identity | Op::Unary(_) | Op::Convert { .. } => &[0],
            Op::Binary(_) => &[0, 1],
            Op::Select => &[1, 2],
            _ => return None,
        };
        if depth == 0 {
            return None;
        }
        let node = self.g.node(n);
        for &i in data_inputs {
            let input = node.inputs[i];
            if is_scalar_constant(self.g, input.node) {
                continue;
            }
            if let Some(mut path) = self.back_to_matmul(input, depth - 1) {
                path.push(n);
                return Some(path);
            }
        }
        None
    }

    /// Walks back from a MatMul operand `v` whose canonical view is
    /// `transpose(v, perm)`, absorbing single-user Identities and Transposes (while
    /// the layout stays supported) and, if `scale` is given, one scalar Mul/Div.
    fn walk_operand(
        &self,
        mut v: ValueRef,
        mut perm: Vec<usize>,
        role: Role,
        nodes: &mut Vec<NodeId>,
        mut scale: Option<&mut Option<MhaScale>>,
    ) -> (ValueRef, Vec<usize>) {
        loop {
            let n = v.node;
            if self.sole_user(n).is_none() {
                break;
            }
            let node = self.g.node(n);
            match self.op(n) {
                Op::Identity => {}
                Op::Transpose { perm: t } => {
                    let next: Vec<usize> = perm.iter().map(|&i| t[i]).collect();
                    if !role.supports(&next) {
                        break;
                    }
                    perm = next;
                }
                Op::Binary(op @ (BinaryOp::Mul | BinaryOp::Div)) => {
                    let Some(slot) = scale.as_deref_mut().filter(|s| s.is_none()) else {
                        break;
                    };
                    let Some((data, value)) = self.scale_operands(node, *op) else {
                        break;
                    };
                    if self.g.value_type(data) != &node.outputs[0].ty {
                        break;
                    }
                    *slot = Some(MhaScale {
                        op: if *op == BinaryOp::Mul {
                            ScaleOp::Mul
                        } else {
                            ScaleOp::Div
                        },
                        value,
                        at: ScaleAt::Q,
                    });
                    nodes.push(n);
                    v = data;
                    continue;
                }
                _ => break,
            }
            nodes.push(n);
            v = node.inputs[0];
        }
        (v, perm)
    }

    /// For a Mul or Div by a one-element f32 constant: the data input and the constant.
    fn scale_operands(&self, node: &snipjit_ir::Node, op: BinaryOp) -> Option<(ValueRef, f32)> {
        let (a, b) = (node.inputs[0], node.inputs[1]);
        if let Some(c) = self.scalar_f32(b) {
            return Some((a, c));
        }
        match op {
            BinaryOp::Mul => self.scalar_f32(a).map(|c| (b, c)),
            _ => None,
        }
    }

    /// Tries to match the attention block around Softmax `sm`. `None` if `sm` is not
    /// between two MatMuls at all; otherwise the match or why it fails.
    fn match_softmax(&self, sm: NodeId) -> Option<Result<Found, NotMha>> {
        let Op::Softmax { axis } = *self.op(sm) else {
            return None;
        };
        // Forward to the second MatMul, through Identities.
        let mut nodes = vec![sm];
        let mut cur = sm;
        let mm2 = loop {
            let users = &self.users[cur.index()];
            if let Some(&(u, _)) = users
                .iter()
                .find(|&&(u, port)| port == 0 && matches!(self.op(u), Op::MatMul { .. }))
            {
                break u;
            }
            match users.as_slice() {
                [(u, _)] if matches!(self.op(*u), Op::Identity) => {
                    nodes.push(*u);
                    cur = *u;
                }
                _ => return None,
            }
        };
        let path = self.back_to_matmul(self.g.node(sm).inputs[0], MAX_SCORE_CHAIN)?;
        Some(self.check(axis, mm2, path, nodes))
    }

    /// The rules of the module docs, on a structural match.
    fn check(
        &self,
        axis: i64,
        mm2: NodeId,
        path: Vec<NodeId>,
        mut nodes: Vec<NodeId>,
    ) -> Result<Found, NotMha> {
        let g = self.g;
        let mm1 = path[0];
        let scores = ValueRef::new(mm1, 0);
        let scores_ty = g.value_type(scores);
        let rank = scores_ty.shape.rank();
        if !matches!(rank, 3 | 4) {
            return Err(NotMha::Rank(rank));
        }
        let sm_axis = norm_axis(axis, rank).map_err(NotMha::Body)?;
        if sm_axis != rank - 1 {
            return Err(NotMha::SoftmaxNotLastAxis { axis, rank });
        }
        if scores_ty.dtype != DType::F32 {
            return Err(NotMha::DType(scores_ty.dtype));
        }
        let out2 = ValueRef::new(mm2, 0);
        if g.value_type(out2).dtype != DType::F32 {
            return Err(NotMha::DType(g.value_type(out2).dtype));
        }
        let (mm1_node, mm2_node) = (g.node(mm1), g.node(mm2));
        let (ta, tb) = match *self.op(mm1) {
            Op::MatMul {
                transpose_a,
                transpose_b,
            } => (transpose_a, transpose_b),
            _ => unreachable!("back_to_matmul ends at a MatMul"),
        };
        let (ta2, tb2) = match *self.op(mm2) {
            Op::MatMul {
                transpose_a,
                transpose_b,
            } => (transpose_a, transpose_b),
            _ => unreachable!("the forward walk ends at a MatMul"),
        };
        if ta2 {
            return Err(NotMha::ProbsTransposed);
        }
        let operand_rank = |v: ValueRef| self.shape(v).rank();
        if [mm1_node.inputs[0], mm1_node.inputs[1], mm2_node.inputs[1]]
            .into_iter()
            .any(|v| operand_rank(v) != rank)
            || operand_rank(out2) != rank
        {
            return Err(NotMha::RankMismatch);
        }

        // The chain between the MatMul and the Softmax.
        let mut scale = None;
        let mut mask: Option<FoundMask> = None;
        let mut data = scores;
        for &n in &path[1..] {
            let node = g.node(n);
            let out = ValueRef::new(n, 0);
            match &node.op {
                Op::Identity => {}
                Op::Binary(op @ (BinaryOp::Mul | BinaryOp::Div)) => {
                    let (d, value) = self
                        .scale_operands(node, *op)
                        .filter(|(d, _)| *d == data)
                        .ok_or(NotMha::ScaleNotScalarConstant)?;
                    debug_assert_eq!(d, data);
                    if mask.is_some() {
                        return Err(NotMha::ScaleAfterMask);
                    }
                    if scale.is_some() {
                        return Err(NotMha::SeveralScales);
                    }
                    scale = Some(MhaScale {
                        op: if *op == BinaryOp::Mul {
                            ScaleOp::Mul
                        } else {
                            ScaleOp::Div
                        },
                        value,
                        at: ScaleAt::Scores,
                    });
                }
                Op::Binary(BinaryOp::Add) => {
                    let other = if node.inputs[0] == data {
                        node.inputs[1]
                    } else {
                        node.inputs[0]
                    };
                    if mask.is_some() {
                        return Err(NotMha::SeveralMasks);
                    }
                    mask = Some(self.mask(other, scores, None)?);
                }
                Op::Select => {
                    let keep_when = node.inputs[1] == data;
                    let fill = node.inputs[if keep_when { 2 } else { 1 }];
                    let fill = self
                        .scalar_f32(fill)
                        .ok_or(NotMha::SelectFillNotScalarConstant)?;
                    if mask.is_some() {
                        return Err(NotMha::SeveralMasks);
                    }
                    mask = Some(self.mask(node.inputs[0], scores, Some((fill, keep_when)))?);
                }
                op => return Err(NotMha::ScoreOp(op.name().to_string())),
            }
            if g.value_type(out) != scores_ty {
                return Err(NotMha::ScoresShapeChanged(node.name.clone()));
            }
            data = out;
        }
        nodes.extend(path.iter().copied());
        nodes.push(mm2);

        // Operands, with their Transposes and a scale on Q.
        let ident: Vec<usize> = (0..rank).collect();
        let swapped = |flag: bool| {
            let mut p = ident.clone();
            if flag {
                p.swap(rank - 1, rank - 2);
            }
            p
        };
        let start = [
            (Role::Q, mm1_node.inputs[0], swapped(ta)),
            (Role::K, mm1_node.inputs[1], swapped(!tb)),
            (Role::V, mm2_node.inputs[1], swapped(tb2)),
        ];
        for (role, _, perm) in &start {
            if !role.supports(perm) {
                return Err(NotMha::Layout {
                    operand: role.name(),
                    perm: perm.clone(),
                });
            }
        }
        let mut q_scale = None;
        let [q, k, v] = start.map(|(role, value, perm)| {
            let slot = (role == Role::Q && scale.is_none()).then_some(&mut q_scale);
            self.walk_operand(value, perm, role, &mut nodes, slot)
        });
        let scale = scale.or(q_scale);

        // Output, with its Identities and Transposes.
        let mut out = (out2, ident.clone());
        while let Some((u, _)) = self.sole_user(out.0.node) {
            match self.op(u) {
                Op::Identity => {}
                Op::Transpose { perm: t } => {
                    let next: Vec<usize> = t.iter().map(|&i| out.1[i]).collect();
                    if next[rank - 1] != rank - 1 {
                        break;
                    }
                    out.1 = next;
                }
                _ => break,
            }
            nodes.push(u);
            out.0 = ValueRef::new(u, 0);
        }
        if self.users[out.0.node.index()].is_empty() {
            return Err(NotMha::Unused);
        }

        // Everything but the output stays inside; operands come from outside.
        for &n in &nodes {
            if n == out.0.node {
                continue;
            }
            if self.users[n.index()]
                .iter()
                .any(|(u, _)| !nodes.contains(u))
            {
                return Err(NotMha::UsedOutside(g.node(n).outputs[0].name.clone()));
            }
        }
        let operands = [
            ("Q", Some(q.0)),
            ("K", Some(k.0)),
            ("V", Some(v.0)),
            ("the mask", mask.as_ref().map(|m| m.value)),
        ];
        for (name, value) in operands {
            if value.is_some_and(|v| nodes.contains(&v.node)) {
                return Err(NotMha::OperandInsidePattern(name));
            }
        }

        let head = |value: ValueRef, perm: &[usize]| -> Result<usize, NotMha> {
            let d = &self.shape(value).dims()[perm[rank - 1]];
            let Dim::Static(d) = *d else {
                return Err(NotMha::DynamicHeadSize);
            };
            if HEAD_SIZES.contains(&d) {
                Ok(d)
            } else {
                Err(NotMha::HeadSize(d))
            }
        };
        let head_size = head(q.0, &q.1)?;
        let v_head_size = head(v.0, &v.1)?;
        Ok(Found {
            nodes,
            rank,
            q,
            k,
            v,
            head_size,
            v_head_size,
            scale,
            mask,
            scores_shape: scores_ty.shape.clone(),
            output: out,
        })
    }

    /// Checks a mask operand against the scores.
    fn mask(
        &self,
        value: ValueRef,
        scores: ValueRef,
        select: Option<(f32, bool)>,
    ) -> Result<FoundMask, NotMha> {
        if is_scalar_constant(self.g, value.node) {
            return Err(NotMha::MaskScalar);
        }
        let (m, s) = (self.shape(value), self.shape(scores));
        if !broadcasts_into(m, s) {
            return Err(NotMha::MaskNotBroadcastable {
                mask: Box::new(m.clone()),
                scores: Box::new(s.clone()),
            });
        }
        Ok(FoundMask { value, select })
    }
}

/// True if `small` broadcasts into `big` without growing it, whatever the dynamic
/// dims turn out to be: each dim of `small` (aligned right) is 1, the same dim as
/// `big`'s (a named dynamic dim matches only itself, `?` nothing), or dynamic
/// against a static `n` (at run time it is 1 or `n`, or the op fails anyway).
fn broadcasts_into(small: &Shape, big: &Shape) -> bool {
    let (rs, rb) = (small.rank(), big.rank());
    rs <= rb
        && small
            .dims()
            .iter()
            .zip(&big.dims()[rb - rs..])
            .all(|(m, s)| match (m, s) {
                _ if m.is_one() => true,
                (Dim::Dynamic(_), Dim::Static(_)) => true,
                _ => m == s && *s != Dim::Dynamic(None),
            })
}

/// The canonical shape `transpose(shape, perm)`.
fn permuted(shape: &Shape, perm: &[usize]) -> Shape {
    perm.iter().map(|&i| shape.dims()[i].clone()).collect()
}

/// The attention blocks found and the near-misses.
#[derive(Clone, Debug, Default)]
pub struct MhaRegions {
    /// One region per block, in topological order of their Softmax.
    pub regions: Vec<Region>,
    /// Softmax nodes between two MatMuls that do not fit, with the reason.
    pub left_out: Vec<LeftOut>,
}

/// Checks a match against the limits of `cfg` (op count, pointer budget).
fn within_limits(g: &Graph, m: &Found, cfg: &TokenizeConfig) -> Result<(), NotMha> {
    let ops = m.nodes.len();
    if ops > cfg.max_ops {
        return Err(NotMha::TooManyOps {
            ops,
            max_ops: cfg.max_ops,
        });
    }
    if ops < cfg.min_ops {
        return Err(NotMha::BelowMinOps {
            ops,
            min_ops: cfg.min_ops,
        });
    }
    if !cfg.allow_pointer_spill {
        let mut inputs: Vec<ValueRef> = [m.q.0, m.k.0, m.v.0]
            .into_iter()
            .chain(m.mask.as_ref().map(|k| k.value))
            .filter(|v| !is_scalar_constant(g, v.node))
            .collect();
        inputs.sort();
        inputs.dedup();
        let pointers = inputs.len() + 1;
        if pointers > cfg.max_data_pointers {
            return Err(NotMha::OverPointerBudget {
                pointers,
                budget: cfg.max_data_pointers,
            });
        }
    }
    Ok(())
}

/// Finds the attention blocks of `g` (see the module docs) within `cfg`'s limits.
pub fn find_regions(g: &Graph, cfg: &TokenizeConfig) -> Result<MhaRegions, TokenizeError> {
    let ctx = Ctx::new(g);
    let topo = g.topo_order().map_err(TokenizeError::InvalidGraph)?;
    let mut claimed = vec![false; g.nodes.len()];
    let mut found = MhaRegions::default();
    for &n in &topo {
        let Some(result) = ctx.match_softmax(n) else {
            continue;
        };
        match result.and_then(|m| within_limits(g, &m, cfg).map(|()| m)) {
            Ok(m) if m.nodes.iter().all(|x| !claimed[x.index()]) => {
                let mut nodes = m.nodes;
                nodes.sort();
                nodes.dedup();
                for x in &nodes {
                    claimed[x.index()] = true;
                }
                found.regions.push(Region {
                    kind: SubgraphKind::Mha,
                    nodes,
                });
            }
            // Disjointness follows from the single-user rule; kept as a guard.
            Ok(_) => {}
            Err(reason) => found.left_out.push(LeftOut {
                node: g.node(n).name.clone(),
                op: g.node(n).op.name().to_string(),
                reason: LeftOutReason::Mha(reason),
            }),
        }
    }
    Ok(found)
}

/// Reads an MHA subgraph body back into its canonical form.
///
/// The body must be exactly one attention block as [`find_regions`] matches it:
/// Parameters, one-element constants, the matched ops, and one Result (the block's
/// output). Operands are identified by body input index.
pub fn analyze_mha(body: &Graph) -> Result<MhaPattern, NotMha> {
    let ctx = Ctx::new(body);
    let softmaxes: Vec<NodeId> = body
        .node_ids()
        .filter(|&n| matches!(body.node(n).op, Op::Softmax { .. }))
        .collect();
    let [sm] = softmaxes[..] else {
        return Err(NotMha::Body(format!(
            "{} Softmax nodes, not one",
            softmaxes.len()
        )));
    };
    let found = ctx
        .match_softmax(sm)
        .ok_or_else(|| NotMha::Body("the Softmax is not between two MatMuls".into()))??;
    let [result] = body.outputs[..] else {
        return Err(NotMha::Body(format!(
            "{} results, not one",
            body.outputs.len()
        )));
    };
    if body.node(result).inputs.first() != Some(&found.output.0) {
        return Err(NotMha::Body("the result is not the block's output".into()));
    }
    for n in body.node_ids() {
        let node = body.node(n);
        let inside = matches!(node.op, Op::Parameter | Op::Result)
            || is_scalar_constant(body, n)
            || found.nodes.contains(&n);
        if !inside {
            return Err(NotMha::Body(format!(
                "'{}' ({}) is not part of the pattern",
                node.name, node.op
            )));
        }
    }
    let input = |v: ValueRef, what: &str| -> Result<usize, NotMha> {
        body.inputs
            .iter()
            .position(|&p| p == v.node)
            .ok_or_else(|| NotMha::Body(format!("{what} is not a body input")))
    };
    let operand = |(v, perm): &(ValueRef, Vec<usize>), what: &str| -> Result<MhaOperand, NotMha> {
        Ok(MhaOperand {
            input: input(*v, what)?,
            perm: perm.clone(),
            shape: permuted(ctx.shape(*v), perm),
        })
    };
    let mask = match &found.mask {
        None => None,
        Some(m) => {
            let input = input(m.value, "the mask")?;
            let shape = ctx.shape(m.value).clone();
            Some(match m.select {
                None => MhaMask::Additive { input, shape },
                Some((fill, keep_when)) => MhaMask::Boolean {
                    input,
                    shape,
                    fill,
                    keep_when,
                },
            })
        }
    };
    Ok(MhaPattern {
        rank: found.rank,
        q: operand(&found.q, "Q")?,
        k: operand(&found.k, "K")?,
        v: operand(&found.v, "V")?,
        head_size: found.head_size,
        v_head_size: found.v_head_size,
        scale: found.scale,
        mask,
        scores_shape: found.scores_shape,
        output: MhaOutput {
            perm: found.output.1,
            shape: ctx.shape(found.output.0).clone(),
        },
    })
}
