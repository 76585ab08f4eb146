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

/// A runtime quantity of one port, in elements of the port's dtype, that a pointer
/// move can be made of. Kernel dims count from the innermost (dim 0, the contiguous
/// one); `work(d)` is the number of elements (or rows) the kernel walks along dim `d`
/// and `stride(d)` the port's stride along it (0 where the port is broadcast). Both
/// are known only at run time: the configurator evaluates them per shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Quantity {
    /// `stride(d)`. Text: `stride<d>`.
    Stride(usize),
    /// `work(d) * stride(d)`: what walking all of dim `d` moves the pointer.
    /// Text: `span<d>`.
    Span(usize),
    /// `floor(work(dim) / step) * step * stride(dim)`: what the full steps of a loop
    /// over `dim` move the pointer. Text: `main<dim>/<step>`.
    Main { dim: usize, step: usize },
    /// `(work(dim) % step) * stride(dim)`: what one tail step over the rest moves the
    /// pointer (0 when `step` divides the work). Text: `tail<dim>/<step>`.
    Tail { dim: usize, step: usize },
}

impl Quantity {
    /// The quantity's value for a port with strides `strides` (elements, per kernel
    /// dim, innermost first) in a domain of `work` (per kernel dim, innermost first);
    /// `None` if the quantity names a dim the domain does not have, a zero step, or
    /// the value overflows.
    pub fn eval(self, work: &[usize], strides: &[usize]) -> Option<i64> {
        let (d, n) = match self {
            Quantity::Stride(d) => (d, 1),
            Quantity::Span(d) => (d, *work.get(d)?),
            Quantity::Main { dim, step } => (dim, work.get(dim)?.checked_div(step)? * step),
            Quantity::Tail { dim, step } => (dim, work.get(dim)?.checked_rem(step)?),
        };
        let v = n.checked_mul(*strides.get(d)?)?;
        i64::try_from(v).ok()
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quantity::Stride(d) => write!(f, "stride{d}"),
            Quantity::Span(d) => write!(f, "span{d}"),
            Quantity::Main { dim, step } => write!(f, "main{dim}/{step}"),
            Quantity::Tail { dim, step } => write!(f, "tail{dim}/{step}"),
        }
    }
}

/// A symbolic pointer move of one port, in elements of the port's dtype:
/// `constant + sum(coef * quantity)`.
///
/// Kept in a normal form by its constructors and operations (terms sorted by
/// quantity, one term per quantity, no zero coefficient, and `a*span<d> -
/// a*tail<d>/<s>` written `a*main<d>/<s>`), so two offsets are equal exactly when
/// their forms are; the fields are public for reading. An offset without terms is a
/// compile-time constant, which the kernel adds as an immediate; any other is
/// evaluated by the configurator per shape and read from the runtime argument block.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Offset {
    pub constant: i64,
    pub terms: Vec<(i64, Quantity)>,
}

impl Offset {
    /// No move.
    pub fn zero() -> Offset {
        Offset::default()
    }

    /// A compile-time constant move of `c` elements.
    pub fn constant(c: i64) -> Offset {
        Offset {
            constant: c,
            terms: vec![],
        }
    }

    /// `coef * q`.
    pub fn term(coef: i64, q: Quantity) -> Offset {
        Offset {
            constant: 0,
            terms: vec![(coef, q)],
        }
        .normalized()
    }

    pub fn is_zero(&self) -> bool {
        self.constant == 0 && self.terms.is_empty()
    }

    /// The constant, if the offset has no runtime terms.
    pub fn as_constant(&self) -> Option<i64> {
        self.terms.is_empty().then_some(self.constant)
    }

    /// `self + other`, normalized.
    pub fn plus(&self, other: &Offset) -> Offset {
        let mut terms = self.terms.clone();
        terms.extend_from_slice(&other.terms);
        Offset {
            constant: self.constant.saturating_add(other.constant),
            terms,
        }
        .normalized()
    }

    /// `k * self`, normalized.
    pub fn times(&self, k: i64) -> Offset {
        Offset {
            constant: self.constant.saturating_mul(k),
            terms: self
                .terms
                .iter()
                .map(|&(c, q)| (c.saturating_mul(k), q))
                .collect(),
        }
        .normalized()
    }

    fn normalized(mut self) -> Offset {
        self.terms.sort_by_key(|&(_, q)| q);
        let mut merged: Vec<(i64, Quantity)> = Vec::with_capacity(self.terms.len());
        for (c, q) in self.terms.drain(..) {
            match merged.last_mut() {
                Some((mc, mq)) if *mq == q => *mc = mc.saturating_add(c),
                _ => merged.push((c, q)),
            }
        }
        // span<d> = main<d>/<s> + tail<d>/<s>: `a*span - a*tail` is `a*main`.
        let spans: Vec<(i64, usize)> = merged
            .iter()
            .filter_map(|&(c, q)| match q {
                Quantity::Span(d) => Some((c, d)),
                _ => None,
            })
            .collect();
        for (a, d) in spans {
            let tail = merged
                .iter()
                .position(|&(c, q)| matches!(q, Quantity::Tail { dim, .. } if dim == d) && c == -a);
            if let Some(t) = tail {
                let Quantity::Tail { step, .. } = merged[t].1 else {
                    unreachable!("matched a tail above")
                };
                merged.remove(t);
                merged.retain(|&(_, q)| q != Quantity::Span(d));
                merged.push((a, Quantity::Main { dim: d, step }));
                merged.sort_by_key(|&(_, q)| q);
            }
        }
        merged.retain(|&(c, _)| c != 0);
        self.terms = merged;
        self
    }

    /// The offset's value in elements for a port with strides `strides` in a domain
    /// of `work` (both per kernel dim, innermost first; see [`Quantity::eval`]).
    pub fn eval(&self, work: &[usize], strides: &[usize]) -> Option<i64> {
        self.terms.iter().try_fold(self.constant, |acc, &(c, q)| {
            acc.checked_add(c.checked_mul(q.eval(work, strides)?)?)
        })
    }
}

impl fmt::Display for Offset {
    /// `16`, `-span0`, `stride1 - main0/16`, `2*stride1 + 3`: terms first, the
    /// constant last; `0` for no move.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.terms.is_empty() {
            return write!(f, "{}", self.constant);
        }
        for (k, &(c, q)) in self.terms.iter().enumerate() {
            let sign = if c < 0 { "-" } else { "+" };
            match k {
                0 if c < 0 => f.write_str("-")?,
                0 => {}
                _ => write!(f, " {sign} ")?,
            }
            let a = c.unsigned_abs();
            if a != 1 {
                write!(f, "{a}*")?;
            }
            write!(f, "{q}")?;
        }
        match self.constant {
            0 => Ok(()),
            c if c < 0 => write!(f, " - {}", c.unsigned_abs()),
            c => write!(f, " + {c}"),
        }
    }
}

/// A port as one loop moves it: the loop manager's entry.
#[derive(Clone, Debug, PartialEq)]
pub struct LoopPort {
    pub port: Port,
    /// False for a port broadcast along the loop's dim: its pointer never moves with
    /// the loop's iterations.
    pub incremented: bool,
    /// Added to the port's pointer after every iteration (text `inc=`).
    pub increment: Offset,
    /// Added to the port's pointer once, after the loop's last iteration (text `fin=`).
    pub finalization: Offset,
}

impl LoopPort {
    /// An entry with no moves yet.
    pub fn new(port: Port, incremented: bool) -> LoopPort {
        LoopPort {
            port,
            incremented,
            increment: Offset::zero(),
            finalization: Offset::zero(),
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
/// Work amounts and strides are not here: they depend on the shape, so pointer moves
/// are symbolic ([`Offset`]) and the runtime configurator evaluates them per shape
/// into the argument block the kernel reads. What the code needs to know is
/// compile-time: which dim the loop walks, its step, and which ports move with it.
#[derive(Clone, Debug, PartialEq)]
pub struct LoopInfo {
    /// Kernel dim the loop walks: 0 is the innermost (contiguous) dim.
    pub dim: usize,
    /// Elements per iteration (vector lanes for the inner loop, 1 for outer loops).
    pub step: usize,
    /// The work amount when every shape the kernel serves has the same one (text
    /// `work=N`); `None` when it is known only at run time.
    pub work: Option<usize>,
    pub kind: LoopKind,
    /// The loop runs at most once (a tail, or a static work amount <= step): its
    /// increments are folded into the finalization offsets and the kernel emits no
    /// back edge for it (text `once`; set by OptimizeLoopSingleEvaluation).
    pub once: bool,
    /// Ports whose pointers move with this loop (sorted by port).
    pub ports: Vec<LoopPort>,
}

impl LoopInfo {
    /// A loop over `dim` with no ports yet.
    pub fn new(dim: usize, step: usize, kind: LoopKind) -> LoopInfo {
        LoopInfo {
            dim,
            step,
            work: None,
            kind,
            once: false,
            ports: vec![],
        }
    }

    /// The entry of `port`, if the loop moves it.
    pub fn port(&self, port: Port) -> Option<&LoopPort> {
        self.ports.iter().find(|p| p.port == port)
    }
}

/// Whether a runtime argument-block value is a loop's per-iteration increment or its
/// finalization offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Move {
    Increment,
    Finalization,
}

/// One `i64` of the runtime argument block: a pointer move that is not a
/// compile-time constant. The configurator writes `offset` evaluated in bytes; the
/// kernel adds it to `port`'s pointer.
#[derive(Clone, Debug, PartialEq)]
pub struct RtSlot {
    pub loop_id: LoopId,
    pub port: Port,
    pub what: Move,
    pub offset: Offset,
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

    /// The layout of the runtime argument block: every increment and finalization
    /// offset with a runtime term, by loop, then port (the loop's order), increment
    /// before finalization. The kernel reads slot `k` at byte `8 k`; constant moves
    /// are immediates in the code and take no slot.
    pub fn rt_slots(&self) -> Vec<RtSlot> {
        let mut slots = vec![];
        for (l, info) in self.loops.iter().enumerate() {
            for p in &info.ports {
                for (what, offset) in [
                    (Move::Increment, &p.increment),
                    (Move::Finalization, &p.finalization),
                ] {
                    if offset.as_constant().is_none() {
                        slots.push(RtSlot {
                            loop_id: LoopId(l as u32),
                            port: p.port,
                            what,
                            offset: offset.clone(),
                        });
                    }
                }
            }
        }
        slots
    }

    /// The description of a port (`None` if the kernel has no such port).
    pub fn port_info(&self, p: Port) -> Option<&PortInfo> {
        match p {
            Port::Input(i) => self.inputs.get(i),
            Port::Output(o) => self.outputs.get(o),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_normalize_and_print() {
        let s1 = Offset::term(1, Quantity::Stride(1));
        let main = Quantity::Main { dim: 0, step: 16 };
        let tail = Quantity::Tail { dim: 0, step: 16 };
        // -span0 + tail0/16 is what the main loop advanced, negated.
        let fin = Offset::term(-1, Quantity::Span(0)).plus(&Offset::term(1, tail));
        assert_eq!(fin, Offset::term(-1, main));
        assert_eq!(fin.to_string(), "-main0/16");
        // Terms merge and cancel; the constant prints last.
        let o = s1
            .plus(&fin)
            .plus(&Offset::constant(-3))
            .plus(&Offset::term(2, Quantity::Stride(1)));
        assert_eq!(o.to_string(), "3*stride1 - main0/16 - 3");
        assert!(o.plus(&o.times(-1)).is_zero());
        assert_eq!(Offset::constant(16).as_constant(), Some(16));
        assert_eq!(o.as_constant(), None);
        assert_eq!(Offset::zero().to_string(), "0");
    }

    #[test]
    fn offsets_evaluate_per_port() {
        // Row of 37 f32 elements, 16 lanes: main 32, tail 5, row stride 37.
        let work = [37, 3];
        let (full, row_bcast) = ([1, 37], [1, 0]);
        let inc = Offset::term(1, Quantity::Stride(1))
            .plus(&Offset::term(-1, Quantity::Main { dim: 0, step: 16 }));
        assert_eq!(inc.eval(&work, &full), Some(5));
        assert_eq!(inc.eval(&work, &row_bcast), Some(-32));
        let t = Quantity::Tail { dim: 0, step: 16 };
        assert_eq!(t.eval(&work, &full), Some(5));
        assert_eq!(t.eval(&[32, 3], &full), Some(0));
        assert_eq!(Quantity::Span(1).eval(&work, &full), Some(111));
        // A dim the domain does not have, a zero step, an overflow.
        assert_eq!(Quantity::Stride(2).eval(&work, &full), None);
        assert_eq!(Quantity::Main { dim: 0, step: 0 }.eval(&work, &full), None);
        let big = Offset::term(i64::MAX, Quantity::Stride(1));
        assert_eq!(big.eval(&work, &full), None);
    }
}
