//! The tokenizer: finds fusable subgraphs in a [`Graph`] and replaces each by one
//! `Op::Subgraph` node whose body the later stages compile into one kernel.
//!
//! It runs two stages, each followed by [`outline`], which turns each region found
//! into a `Subgraph` node:
//! 1. the MHA matcher ([`mha`], when [`TokenizeConfig::mha`] is on) finds attention
//!    blocks (`MatMul -> [scale] -> [mask] -> Softmax -> MatMul`, with Transposes)
//!    and makes each one `Subgraph` of kind `mha`; [`analyze_mha`] describes such a
//!    body for the MHA kernel;
//! 2. the elementwise pass ([`elementwise`]) walks the nodes in topological order and
//!    grows regions of elementwise ops greedily (a node joins, and may merge, the
//!    regions of its producers when that creates no cycle and stays within
//!    [`TokenizeConfig`]'s limits). It leaves existing `Subgraph` nodes alone, so the
//!    ops of an attention block are never split between the two.
//!
//! What holds after [`tokenize`]:
//! - the graph verifies and computes the same values: the graph's inputs and outputs,
//!   every value name and type outside the regions, are unchanged;
//! - a `Subgraph` node's outputs keep the names and types of the values they replace;
//!   its body has one Parameter per value entering the region (in order of first use),
//!   one Result per value leaving it (used outside, or a graph output), and a copy of
//!   each scalar (one-element) constant the region reads; tensor constants stay
//!   outside and enter as inputs;
//! - the result is deterministic: the same graph gives the same graph.
//!
//! Before and after (`.sg` text; `k` is a scalar constant, `b` a tensor constant):
//! ```text
//! graph g(x: f32[N, 4], w: f32[4, 4]) {
//!   k: f32[] = Constant(0.5)
//!   b: f32[4] = Constant([1, 2, 3, 4])
//!   a: f32[N, 4] = Mul(x, k)
//!   r: f32[N, 4] = Add(a, b)
//!   m: f32[N, 4] = MatMul(r, w)
//!   y: f32[N, 4] = Exp(m)
//!   return y
//! }
//! ```
//! becomes
//! ```text
//! graph g(x: f32[N, 4], w: f32[4, 4]) {
//!   b: f32[4] = Constant([1, 2, 3, 4])
//!   r: f32[N, 4] = Subgraph(x, b, kind=elementwise) @subgraph0 graph subgraph0(x: f32[N, 4], b: f32[4]) {
//!     k: f32[] = Constant(0.5)
//!     a: f32[N, 4] = Mul(x, k)
//!     r: f32[N, 4] = Add(a, b)
//!     return r
//!   }
//!   m: f32[N, 4] = MatMul(r, w)
//!   y: f32[N, 4] = Subgraph(m, kind=elementwise) @subgraph1 graph subgraph1(m: f32[N, 4]) {
//!     y: f32[N, 4] = Exp(m)
//!     return y
//!   }
//!   return y
//! }
//! ```

pub mod elementwise;
pub mod mha;
pub mod outline;
mod report;

use snipjit_ir::{DType, Graph, IrError, Op, verify};

pub use mha::{
    MhaMask, MhaOperand, MhaOutput, MhaPattern, MhaScale, NotMha, ScaleAt, ScaleOp, analyze_mha,
};
pub use report::{LeftOut, LeftOutReason, SubgraphSummary, TokenizeReport};

/// Limits the tokenizer respects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenizeConfig {
    /// How many data pointers (distinct inputs plus outputs of a subgraph) the kernel
    /// keeps in general-purpose registers.
    pub max_data_pointers: usize,
    /// When true (the default), pointers past `max_data_pointers` are kept in the
    /// argument block, so the budget never splits a subgraph. When false, a node that
    /// would push a subgraph past the budget starts a new one instead.
    pub allow_pointer_spill: bool,
    /// The most ops one subgraph may hold (constants not counted).
    pub max_ops: usize,
    /// Regions with fewer ops than this stay plain nodes.
    pub min_ops: usize,
    /// When true (the default), attention blocks become `mha` subgraphs before the
    /// elementwise pass runs (see [`mha`]).
    pub mha: bool,
}

impl Default for TokenizeConfig {
    fn default() -> Self {
        TokenizeConfig {
            max_data_pointers: 12,
            allow_pointer_spill: true,
            max_ops: 256,
            min_ops: 1,
            mha: true,
        }
    }
}

/// Errors of the tokenizer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TokenizeError {
    /// The input graph does not pass the verifier.
    #[error("input graph does not verify: {0}")]
    InvalidGraph(IrError),
    /// The configuration cannot be met by any subgraph.
    #[error("invalid tokenizer config: {0}")]
    InvalidConfig(String),
    /// A region finder handed [`outline`] a malformed region (a bug in the finder).
    #[error("malformed region: {0}")]
    InvalidRegion(String),
    /// The tokenized graph failed verification: a bug in the tokenizer, reported
    /// instead of handing a wrong graph on.
    #[error("tokenizer produced an invalid graph (a bug): {0}")]
    Internal(IrError),
}

/// Tokenizes `graph`: every attention block and every fusable elementwise region
/// becomes one `Subgraph` node.
pub fn tokenize(graph: &Graph, cfg: &TokenizeConfig) -> Result<Graph, TokenizeError> {
    tokenize_with_report(graph, cfg).map(|(g, _)| g)
}

/// Like [`tokenize`], and also says which subgraphs were made and which nodes were
/// left out and why.
pub fn tokenize_with_report(
    graph: &Graph,
    cfg: &TokenizeConfig,
) -> Result<(Graph, TokenizeReport), TokenizeError> {
    verify(graph).map_err(TokenizeError::InvalidGraph)?;
    let mut summaries = Vec::new();
    let mut left_out = Vec::new();
    let mut current = None;
    if cfg.mha {
        let found = mha::find_regions(graph, cfg)?;
        left_out = found.left_out;
        if !found.regions.is_empty() {
            let outlined = outline::outline(graph, &found.regions)?;
            verify(&outlined.graph).map_err(TokenizeError::Internal)?;
            check_mha_bodies(&outlined.graph)?;
            summaries = outlined.summaries;
            current = Some(outlined.graph);
        }
    }
    let graph = current.as_ref().unwrap_or(graph);
    let found = elementwise::find_regions(graph, cfg)?;
    let outlined = outline::outline(graph, &found.regions)?;
    verify(&outlined.graph).map_err(TokenizeError::Internal)?;
    summaries.extend(outlined.summaries);
    left_out.extend(found.left_out);
    // Summaries in the order their nodes appear in the result.
    let topo = outlined
        .graph
        .topo_order()
        .map_err(TokenizeError::Internal)?;
    let position = |name: &str| {
        topo.iter()
            .position(|&n| outlined.graph.node(n).name == name)
    };
    summaries.sort_by_key(|s| position(&s.name));
    let report = TokenizeReport {
        subgraphs: summaries
            .into_iter()
            .map(|mut s| {
                s.spilled_pointers = (s.inputs + s.outputs).saturating_sub(cfg.max_data_pointers);
                s
            })
            .collect(),
        left_out,
    };
    Ok((outlined.graph, report))
}

/// Every `mha` body must read back as an [`MhaPattern`]: the MHA kernel relies on it.
fn check_mha_bodies(g: &Graph) -> Result<(), TokenizeError> {
    for node in &g.nodes {
        if let Op::Subgraph(sg) = &node.op
            && sg.kind == snipjit_ir::SubgraphKind::Mha
            && let Err(e) = analyze_mha(&sg.body)
        {
            return Err(TokenizeError::InvalidRegion(format!(
                "mha subgraph '{}' does not analyze back (a bug in the matcher): {e}",
                node.name
            )));
        }
    }
    Ok(())
}

/// True if `node` is a constant with exactly one element: such constants are copied
/// into each body that reads them instead of entering as an input.
pub fn is_scalar_constant(graph: &Graph, node: snipjit_ir::NodeId) -> bool {
    matches!(&graph.node(node).op, Op::Constant(t) if t.numel() == 1)
}

/// The dtypes the elementwise JIT computes in (besides `Convert`'s endpoints).
pub(crate) fn is_compute_dtype(d: DType) -> bool {
    matches!(d, DType::F32 | DType::Bool)
}

/// The dtypes a fused `Convert` may read or write.
pub(crate) fn is_convert_dtype(d: DType) -> bool {
    matches!(
        d,
        DType::F32 | DType::BF16 | DType::F16 | DType::I32 | DType::U8 | DType::I8
    )
}
