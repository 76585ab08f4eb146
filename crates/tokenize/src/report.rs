//! What the tokenizer did, for the CLI and for tests.

use std::fmt;

use snipjit_ir::{DType, SubgraphKind};

use crate::NotMha;

/// What the tokenizer made and what it left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenizeReport {
    /// The subgraphs made, in the order they appear in the tokenized graph.
    pub subgraphs: Vec<SubgraphSummary>,
    /// Nodes that stay outside every subgraph: first the Softmax of each attention
    /// block the MHA matcher refused, then the elementwise nodes, each in
    /// topological order.
    pub left_out: Vec<LeftOut>,
}

/// One subgraph the tokenizer made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubgraphSummary {
    /// The `Subgraph` node's name (`subgraph0`, ...).
    pub name: String,
    pub kind: SubgraphKind,
    /// Ops in the body, not counting Parameters, Results and constants.
    pub ops: usize,
    /// Values entering the body (its Parameters).
    pub inputs: usize,
    /// Values leaving the body (its Results).
    pub outputs: usize,
    /// Scalar constants copied into the body.
    pub constants: usize,
    /// Data pointers past `max_data_pointers`, kept in the argument block.
    pub spilled_pointers: usize,
}

/// A node the tokenizer did not fuse: an elementwise node, or the Softmax of an
/// attention block that is not fused as one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeftOut {
    /// The node's name.
    pub node: String,
    /// The op's name.
    pub op: String,
    pub reason: LeftOutReason,
}

/// Why a node stays outside every subgraph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeftOutReason {
    /// An input or output has a dtype the elementwise JIT does not compute in.
    DType(DType),
    /// A `Pow` whose exponent is not a scalar constant.
    PowExponentNotScalarConstant,
    /// `Mod`: the JIT's emitter is exact only while `|a / b| < 2^23`, so the
    /// interpreter (exact fmod) runs it.
    ModNotExact,
    /// The node alone needs more data pointers than the budget, and spilling is off.
    OverPointerBudget { pointers: usize, budget: usize },
    /// Its region had fewer ops than `min_ops`.
    BelowMinOps { ops: usize, min_ops: usize },
    /// Nothing reads the region's values, so there is nothing to compute.
    Unused,
    /// A Softmax between two MatMuls that is not an attention block the MHA kernel
    /// takes; its ops stay ordinary nodes (the elementwise ones may still fuse).
    Mha(NotMha),
}

impl fmt::Display for LeftOutReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeftOutReason::DType(d) => write!(f, "dtype {d} is not fused"),
            LeftOutReason::PowExponentNotScalarConstant => {
                f.write_str("Pow exponent is not a scalar constant")
            }
            LeftOutReason::ModNotExact => {
                f.write_str("Mod is exact in the JIT only for |a/b| < 2^23")
            }
            LeftOutReason::OverPointerBudget { pointers, budget } => write!(
                f,
                "needs {pointers} data pointers, budget is {budget} and spilling is off"
            ),
            LeftOutReason::BelowMinOps { ops, min_ops } => {
                write!(f, "region of {ops} ops is below min_ops {min_ops}")
            }
            LeftOutReason::Unused => f.write_str("no value of its region is used"),
            LeftOutReason::Mha(why) => write!(f, "{why}"),
        }
    }
}

impl fmt::Display for TokenizeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} subgraph(s)", self.subgraphs.len())?;
        for s in &self.subgraphs {
            write!(
                f,
                "  {} ({}): {} ops, {} inputs, {} outputs, {} scalar constants",
                s.name,
                s.kind.name(),
                s.ops,
                s.inputs,
                s.outputs,
                s.constants
            )?;
            if s.spilled_pointers > 0 {
                write!(f, ", {} pointers spilled", s.spilled_pointers)?;
            }
            writeln!(f)?;
        }
        let (mha, elementwise): (Vec<&LeftOut>, Vec<&LeftOut>) = self
            .left_out
            .iter()
            .partition(|l| matches!(l.reason, LeftOutReason::Mha(_)));
        if !mha.is_empty() {
            writeln!(f, "{} attention block(s) not fused", mha.len())?;
            for l in mha {
                writeln!(f, "  {} ({}): {}", l.node, l.op, l.reason)?;
            }
        }
        if !elementwise.is_empty() {
            writeln!(f, "{} elementwise node(s) left out", elementwise.len())?;
            for l in elementwise {
                writeln!(f, "  {} ({}): {}", l.node, l.op, l.reason)?;
            }
        }
        Ok(())
    }
}
