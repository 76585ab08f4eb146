//! The linear IR: an ordered list of expressions over SSA vector values, with loops.
//!
//! Before the control-flow passes the list is a topologically ordered DAG
//! (`Parameter`/`Result` expressions stand for the subgraph's ports). After them it
//! holds explicit `LoopBegin`/`LoopEnd` brackets, `Load`/`Store` expressions, and,
//! after `AssignRegisters`, a physical vector register for every value.

use std::fmt;

use smallvec::SmallVec;
use snipjit_ir::{BinaryOp, DType, Shape, UnaryOp};

/// An SSA value: one vector register's worth of lanes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

/// A loop of the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LoopId(pub u32);

/// A data port of the kernel: an input or an output tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Port {
    Input(usize),
    Output(usize),
}

/// What an expression does.
#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// A subgraph input (data-flow stage; replaced by loads).
    Parameter(usize),
    /// A subgraph output (data-flow stage; replaced by stores).
    Result(usize),
    /// Loads one vector of `input` at its current pointer (masked in a tail loop).
    Load {
        input: usize,
    },
    /// Loads one element of `input` and broadcasts it to every lane.
    BroadcastLoad {
        input: usize,
    },
    /// Stores a vector to `output` (masked in a tail loop).
    Store {
        output: usize,
    },
    /// A constant in every lane.
    Scalar(f32),
    Unary(UnaryOp),
    Binary(BinaryOp),
    /// `cond ? a : b` with `cond` a lane mask.
    Select,
    /// `a * b + c`.
    Fma,
    /// `x ^ exponent` with a compile-time exponent.
    PowStatic(f32),
    /// Element type conversion from the register representation of `from` to that of
    /// `to` (see [`register_repr`]), with the interpreter's Convert semantics.
    Convert {
        from: DType,
        to: DType,
    },
    LoopBegin(LoopId),
    LoopEnd(LoopId),
}

impl ExprKind {
    /// The name printed in the text form.
    pub fn name(&self) -> String {
        match self {
            ExprKind::Parameter(i) => format!("Parameter in{i}"),
            ExprKind::Result(i) => format!("Result out{i}"),
            ExprKind::Load { input } => format!("Load in{input}"),
            ExprKind::BroadcastLoad { input } => format!("BroadcastLoad in{input}"),
            ExprKind::Store { output } => format!("Store out{output}"),
            ExprKind::Scalar(v) => format!("Scalar {}", fmt_f32(*v)),
            ExprKind::Unary(u) => unary_text(*u),
            ExprKind::Binary(b) => b.name().to_string(),
            ExprKind::Select => "Select".into(),
            ExprKind::Fma => "Fma".into(),
            ExprKind::PowStatic(e) => format!("PowStatic {}", fmt_f32(*e)),
            ExprKind::Convert { from, to } => format!("Convert {from} to {to}"),
            ExprKind::LoopBegin(l) => format!("LoopBegin L{}", l.0),
            ExprKind::LoopEnd(l) => format!("LoopEnd L{}", l.0),
        }
    }

    /// True for the loop brackets.
    pub fn is_loop_marker(&self) -> bool {
        matches!(self, ExprKind::LoopBegin(_) | ExprKind::LoopEnd(_))
    }
}

/// How a value of a dtype is held in a vector register, one 32-bit lane per element.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegRepr {
    /// f32 lanes; bf16 and f16 values are held as the f32 of the same value (exactly
    /// representable), so arithmetic on them is f32 arithmetic.
    F32,
    /// 32-bit integer lanes; u8 is zero-extended, i8 sign-extended.
    I32,
    /// All-ones (true) or all-zeros (false) lanes.
    Mask,
}

/// The register representation of `dtype`, or `None` for a dtype the JIT does not
/// hold in registers (i64).
pub fn register_repr(dtype: DType) -> Option<RegRepr> {
    match dtype {
        DType::F32 | DType::BF16 | DType::F16 => Some(RegRepr::F32),
        DType::I32 | DType::U8 | DType::I8 => Some(RegRepr::I32),
        DType::Bool => Some(RegRepr::Mask),
        DType::I64 => None,
    }
}

/// Vector registers a store to a port of `dtype` needs to narrow the value into, on
/// every target: one for ports narrower than 32 bits (and bool, whose 0/1 bytes are
/// computed from mask lanes), none for f32 and i32. AssignRegisters reserves them as
/// scratch on top of the emitters' own needs.
pub fn store_scratch(dtype: DType) -> usize {
    usize::from(dtype.size() != 4)
}

fn unary_text(u: UnaryOp) -> String {
    match u {
        UnaryOp::Clamp { min, max } => format!("Clamp {} {}", fmt_f32(min), fmt_f32(max)),
        UnaryOp::Swish { beta } => format!("Swish {}", fmt_f32(beta)),
        UnaryOp::Elu { alpha } => format!("Elu {}", fmt_f32(alpha)),
        UnaryOp::LeakyRelu { alpha } => format!("LeakyRelu {}", fmt_f32(alpha)),
        _ => u.name().to_string(),
    }
}

/// Prints an f32 as the `.sg` format does, so that it parses back to the same bits.
pub use snipjit_ir::text::fmt_f32;

/// One expression.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub ins: SmallVec<[ValueId; 3]>,
    pub out: Option<ValueId>,
    /// The loops this expression runs in, outermost first (set by MarkLoops).
    pub loops: SmallVec<[LoopId; 2]>,
}

impl Expr {
    pub fn new(kind: ExprKind, ins: &[ValueId], out: Option<ValueId>) -> Expr {
        Expr {
            kind,
            ins: ins.iter().copied().collect(),
            out,
            loops: SmallVec::new(),
        }
    }
}

/// Which iterations a loop copy runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LoopKind {
    /// Full steps while at least `step` elements remain.
    Main,
    /// One masked step over the remaining `work % step` elements.
    Tail,
}

/// One loop of the kernel.
///
/// Work amounts and pointer moves that depend on the shape are not here: the
/// runtime configurator computes them per shape and the kernel reads them from the
/// argument block. What the code needs to know is compile-time: which dim the loop
/// walks, its step, and which ports move with it.
#[derive(Clone, Debug, PartialEq)]
pub struct LoopInfo {
    /// Kernel dim the loop walks: 0 is the innermost (contiguous) dim.
    pub dim: usize,
    /// Elements per iteration (vector lanes for the inner loop, 1 for outer loops).
    pub step: usize,
    pub kind: LoopKind,
    /// Ports whose pointers move with this loop, and whether they are incremented
    /// (false for a port broadcast along the loop's dim).
    pub ports: Vec<(Port, bool)>,
}

/// A port's description: name, element type, and its shape in the subgraph body.
#[derive(Clone, Debug, PartialEq)]
pub struct PortInfo {
    pub name: String,
    pub dtype: DType,
    pub shape: Shape,
    /// Broadcast along the innermost kernel dim (size 1 there while the domain is not).
    pub bcast_inner: bool,
}

/// A physical vector register index.
pub type PhysReg = u8;

/// Where a value lives after register allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Location {
    Reg(PhysReg),
    /// A stack slot of one vector in the kernel's frame.
    Spill(u32),
}

/// The linear IR of one kernel.
#[derive(Clone, Debug, PartialEq)]
pub struct Lir {
    pub name: String,
    pub inputs: Vec<PortInfo>,
    pub outputs: Vec<PortInfo>,
    pub exprs: Vec<Expr>,
    pub loops: Vec<LoopInfo>,
    pub num_values: u32,
    /// Per value (indexed by ValueId), its location once registers are assigned.
    pub locations: Vec<Option<Location>>,
    /// Registers reserved as scratch for the emitters (not holding values).
    pub scratch_regs: Vec<PhysReg>,
    /// Number of spill slots the kernel frame needs.
    pub spill_slots: u32,
    /// Registers kept free to reload spilled values (empty when nothing is spilled).
    pub spill_temps: Vec<PhysReg>,
}

impl Lir {
    /// A fresh SSA value.
    pub fn new_value(&mut self) -> ValueId {
        let v = ValueId(self.num_values);
        self.num_values += 1;
        v
    }

    /// A fresh loop.
    pub fn new_loop(&mut self, info: LoopInfo) -> LoopId {
        self.loops.push(info);
        LoopId(self.loops.len() as u32 - 1)
    }

    pub fn loop_info(&self, l: LoopId) -> &LoopInfo {
        &self.loops[l.0 as usize]
    }

    /// The text form (see docs/ir-format.md, "Linear IR"); [`crate::lir_text::parse_lir`]
    /// reads it back to an equal `Lir`.
    pub fn to_text(&self) -> String {
        crate::lir_text::print_lir(self)
    }
}

impl fmt::Display for Lir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}
