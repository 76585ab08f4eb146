//! The op set of the graph IR.
//!
//! Semantics follow ONNX (opset 13-18) unless a doc comment says otherwise:
//! binary ops broadcast with numpy rules, comparisons yield `bool`, reductions
//! and softmax take (possibly negative) axes.

use std::fmt;

use crate::{DType, Tensor};

/// Binary elementwise ops (numpy broadcasting).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    /// `a ^ b`.
    Pow,
    /// `(a - b)^2`.
    SquaredDifference,
    /// `a < 0 ? a * b : a` (b is the slope).
    PRelu,
    /// Floating remainder with the sign of the dividend (C `fmod`).
    Mod,
    Equal,
    NotEqual,
    Less,
    LessEqual,
    Greater,
    GreaterEqual,
    /// Logical ops on bool inputs.
    And,
    Or,
    Xor,
}

impl BinaryOp {
    pub const ALL: [BinaryOp; 19] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Max,
        BinaryOp::Min,
        BinaryOp::Pow,
        BinaryOp::SquaredDifference,
        BinaryOp::PRelu,
        BinaryOp::Mod,
        BinaryOp::Equal,
        BinaryOp::NotEqual,
        BinaryOp::Less,
        BinaryOp::LessEqual,
        BinaryOp::Greater,
        BinaryOp::GreaterEqual,
        BinaryOp::And,
        BinaryOp::Or,
        BinaryOp::Xor,
    ];

    /// Name in the `.sg` format (the ONNX spelling where ONNX has the op).
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "Add",
            BinaryOp::Sub => "Sub",
            BinaryOp::Mul => "Mul",
            BinaryOp::Div => "Div",
            BinaryOp::Max => "Max",
            BinaryOp::Min => "Min",
            BinaryOp::Pow => "Pow",
            BinaryOp::SquaredDifference => "SquaredDifference",
            BinaryOp::PRelu => "PRelu",
            BinaryOp::Mod => "Mod",
            BinaryOp::Equal => "Equal",
            BinaryOp::NotEqual => "NotEqual",
            BinaryOp::Less => "Less",
            BinaryOp::LessEqual => "LessOrEqual",
            BinaryOp::Greater => "Greater",
            BinaryOp::GreaterEqual => "GreaterOrEqual",
            BinaryOp::And => "And",
            BinaryOp::Or => "Or",
            BinaryOp::Xor => "Xor",
        }
    }

    pub fn from_name(s: &str) -> Option<BinaryOp> {
        BinaryOp::ALL.into_iter().find(|o| o.name() == s)
    }

    /// True for the comparisons (result dtype bool, inputs any non-bool dtype).
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Equal
                | BinaryOp::NotEqual
                | BinaryOp::Less
                | BinaryOp::LessEqual
                | BinaryOp::Greater
                | BinaryOp::GreaterEqual
        )
    }

    /// True for And, Or, Xor (bool in, bool out).
    pub fn is_logical(self) -> bool {
        matches!(self, BinaryOp::And | BinaryOp::Or | BinaryOp::Xor)
    }

    /// Result dtype for inputs of dtype `input`.
    pub fn result_dtype(self, input: DType) -> DType {
        if self.is_comparison() || self.is_logical() {
            DType::Bool
        } else {
            input
        }
    }
}

/// Gelu variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GeluApprox {
    /// `0.5 x (1 + erf(x / sqrt 2))`.
    Erf,
    /// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.
    Tanh,
}

/// Unary elementwise ops; float parameters are part of the op.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    Abs,
    Neg,
    Relu,
    /// `min(max(x, min), max)`.
    Clamp {
        min: f32,
        max: f32,
    },
    Exp,
    /// Natural logarithm.
    Log,
    Sqrt,
    /// `1 / x`.
    Reciprocal,
    Erf,
    Tanh,
    Sigmoid,
    Gelu(GeluApprox),
    /// `x * sigmoid(beta * x)`; beta = 1 is SiLU.
    Swish {
        beta: f32,
    },
    /// `x * relu6(x + 3) / 6`.
    HSwish,
    /// `relu6(x + 3) / 6`.
    HSigmoid,
    /// `x * tanh(softplus(x))`.
    Mish,
    /// `x >= 0 ? x : alpha (exp(x) - 1)`.
    Elu {
        alpha: f32,
    },
    /// `x >= 0 ? x : alpha x`.
    LeakyRelu {
        alpha: f32,
    },
    /// `ln(1 + exp(x))`.
    Softplus,
    Floor,
    Ceil,
    /// Round half to even (ONNX Round).
    Round,
    /// `-1`, `0` or `1`.
    Sign,
    /// Logical not (bool).
    Not,
}

impl UnaryOp {
    /// Name in the `.sg` format (without parameters).
    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Abs => "Abs",
            UnaryOp::Neg => "Neg",
            UnaryOp::Relu => "Relu",
            UnaryOp::Clamp { .. } => "Clamp",
            UnaryOp::Exp => "Exp",
            UnaryOp::Log => "Log",
            UnaryOp::Sqrt => "Sqrt",
            UnaryOp::Reciprocal => "Reciprocal",
            UnaryOp::Erf => "Erf",
            UnaryOp::Tanh => "Tanh",
            UnaryOp::Sigmoid => "Sigmoid",
            UnaryOp::Gelu(GeluApprox::Erf) => "GeluErf",
            UnaryOp::Gelu(GeluApprox::Tanh) => "GeluTanh",
            UnaryOp::Swish { .. } => "Swish",
            UnaryOp::HSwish => "HSwish",
            UnaryOp::HSigmoid => "HSigmoid",
            UnaryOp::Mish => "Mish",
            UnaryOp::Elu { .. } => "Elu",
            UnaryOp::LeakyRelu { .. } => "LeakyRelu",
            UnaryOp::Softplus => "Softplus",
            UnaryOp::Floor => "Floor",
            UnaryOp::Ceil => "Ceil",
            UnaryOp::Round => "Round",
            UnaryOp::Sign => "Sign",
            UnaryOp::Not => "Not",
        }
    }

    /// True for the ops that carry float parameters (Clamp, Swish, Elu, LeakyRelu).
    pub fn has_params(self) -> bool {
        matches!(
            self,
            UnaryOp::Clamp { .. }
                | UnaryOp::Swish { .. }
                | UnaryOp::Elu { .. }
                | UnaryOp::LeakyRelu { .. }
        )
    }

    /// Every unary op with default parameters (for tests and tables).
    pub const ALL: [UnaryOp; 25] = [
        UnaryOp::Abs,
        UnaryOp::Neg,
        UnaryOp::Relu,
        UnaryOp::Clamp {
            min: -1.0,
            max: 1.0,
        },
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Reciprocal,
        UnaryOp::Erf,
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::Gelu(GeluApprox::Erf),
        UnaryOp::Gelu(GeluApprox::Tanh),
        UnaryOp::Swish { beta: 1.0 },
        UnaryOp::HSwish,
        UnaryOp::HSigmoid,
        UnaryOp::Mish,
        UnaryOp::Elu { alpha: 1.0 },
        UnaryOp::LeakyRelu { alpha: 0.01 },
        UnaryOp::Softplus,
        UnaryOp::Floor,
        UnaryOp::Ceil,
        UnaryOp::Round,
        UnaryOp::Sign,
        UnaryOp::Not,
    ];
}

/// Reduction kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceKind {
    Max,
    Min,
    Sum,
    Mean,
    Prod,
}

impl ReduceKind {
    pub fn name(self) -> &'static str {
        match self {
            ReduceKind::Max => "ReduceMax",
            ReduceKind::Min => "ReduceMin",
            ReduceKind::Sum => "ReduceSum",
            ReduceKind::Mean => "ReduceMean",
            ReduceKind::Prod => "ReduceProd",
        }
    }

    pub const ALL: [ReduceKind; 5] = [
        ReduceKind::Max,
        ReduceKind::Min,
        ReduceKind::Sum,
        ReduceKind::Mean,
        ReduceKind::Prod,
    ];
}

/// What a fused subgraph computes (set by the tokenizer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubgraphKind {
    Elementwise,
    Mha,
    Softmax,
}

impl SubgraphKind {
    pub fn name(self) -> &'static str {
        match self {
            SubgraphKind::Elementwise => "elementwise",
            SubgraphKind::Mha => "mha",
            SubgraphKind::Softmax => "softmax",
        }
    }
}

/// A node's operation.
///
/// Inputs are listed per variant; every op but `Subgraph` has one output.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A graph input (no inputs); `Graph::inputs` gives its position.
    Parameter,
    /// A graph output (one input); `Graph::outputs` gives its position.
    Result,
    /// A constant tensor (no inputs).
    Constant(Tensor),
    /// `(a, b)`.
    Binary(BinaryOp),
    /// `(x)`.
    Unary(UnaryOp),
    /// `(cond, a, b)`: `cond ? a : b` with three-way broadcasting (ONNX Where).
    Select,
    /// `(x)`: element type conversion (ONNX Cast). Float to int truncates toward zero
    /// with saturation; to bool is `x != 0`.
    Convert { to: DType },
    /// `(x)`: reduce over `axes` (empty: all axes).
    Reduce {
        kind: ReduceKind,
        axes: Vec<i64>,
        keep_dims: bool,
    },
    /// `(x)`: softmax over one axis.
    Softmax { axis: i64 },
    /// `(a, b)`: numpy matmul (batched, broadcast batch dims); the flags transpose the
    /// last two dims of an input first.
    MatMul {
        transpose_a: bool,
        transpose_b: bool,
    },
    /// `(x)`: output dim `i` is input dim `perm[i]`.
    Transpose { perm: Vec<usize> },
    /// `(x, shape: i64[r])`: ONNX Reshape (0 copies a dim unless `allow_zero`, -1 infers).
    Reshape { allow_zero: bool },
    /// `(x, shape: i64[r])`: bidirectional broadcast to `shape` (ONNX Expand).
    Broadcast,
    /// `(x)`: inserts size-1 dims at `axes` (positions in the output).
    Unsqueeze { axes: Vec<i64> },
    /// `(x)`: removes the size-1 dims at `axes` (empty: all size-1 dims).
    Squeeze { axes: Vec<i64> },
    /// `(x0, x1, ...)`: concatenation along `axis`.
    Concat { axis: i64 },
    /// `(x)`: the shape of x as i64[rank].
    ShapeOf,
    /// `(data, indices)`: ONNX Gather along `axis`.
    Gather { axis: i64 },
    /// `(x)`: x unchanged.
    Identity,
    /// A fused subgraph: its inputs feed the body's parameters in order, its outputs are
    /// the body's results in order.
    Subgraph(Box<Subgraph>),
}

/// The body of a fused subgraph.
#[derive(Clone, Debug, PartialEq)]
pub struct Subgraph {
    pub kind: SubgraphKind,
    pub body: crate::Graph,
}

impl Op {
    /// The op's name as the `.sg` format spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Parameter => "Parameter",
            Op::Result => "Result",
            Op::Constant(_) => "Constant",
            Op::Binary(b) => b.name(),
            Op::Unary(u) => u.name(),
            Op::Select => "Select",
            Op::Convert { .. } => "Convert",
            Op::Reduce { kind, .. } => kind.name(),
            Op::Softmax { .. } => "Softmax",
            Op::MatMul { .. } => "MatMul",
            Op::Transpose { .. } => "Transpose",
            Op::Reshape { .. } => "Reshape",
            Op::Broadcast => "Broadcast",
            Op::Unsqueeze { .. } => "Unsqueeze",
            Op::Squeeze { .. } => "Squeeze",
            Op::Concat { .. } => "Concat",
            Op::ShapeOf => "ShapeOf",
            Op::Gather { .. } => "Gather",
            Op::Identity => "Identity",
            Op::Subgraph(_) => "Subgraph",
        }
    }

    /// True for ops that map each output element to the same-index (broadcast) input
    /// elements, with no cross-element dependency: what the elementwise tokenizer fuses.
    pub fn is_elementwise(&self) -> bool {
        matches!(
            self,
            Op::Binary(_) | Op::Unary(_) | Op::Select | Op::Convert { .. }
        )
    }

    /// The number of inputs the op takes, or `None` if variadic.
    pub fn arity(&self) -> Option<usize> {
        Some(match self {
            Op::Parameter | Op::Constant(_) => 0,
            Op::Result
            | Op::Unary(_)
            | Op::Convert { .. }
            | Op::Reduce { .. }
            | Op::Softmax { .. }
            | Op::Transpose { .. }
            | Op::Unsqueeze { .. }
            | Op::Squeeze { .. }
            | Op::ShapeOf
            | Op::Identity => 1,
            Op::Binary(_) | Op::MatMul { .. } | Op::Reshape { .. } | Op::Broadcast => 2,
            Op::Gather { .. } => 2,
            Op::Select => 3,
            Op::Concat { .. } | Op::Subgraph(_) => return None,
        })
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
