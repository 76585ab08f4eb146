//! The tokenizer: finds fusable subgraphs in a [`Graph`] and replaces each by one
//! `Op::Subgraph` node whose body the later stages compile into one kernel.
//!
//! Today it runs one stage, the elementwise pass ([`elementwise`]): it walks the
//! nodes in topological order and grows regions of elementwise ops greedily (a node
//! joins, and may merge, the regions of its producers when that creates no cycle and
//! stays within [`TokenizeConfig`]'s limits). [`outline`] then turns each region
//! into a `Subgraph` node. A matcher for attention blocks would run before the
//! elementwise pass and reuse [`outline`]; the elementwise pass leaves existing
//! `Subgraph` nodes alone.
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
pub mod outline;
mod report;

use snipjit_ir::{DType, Graph, IrError, Op, verify};

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
}

impl Default for TokenizeConfig {
    fn default() -> Self {
        TokenizeConfig {
            max_data_pointers: 12,
            allow_pointer_spill: true,
            max_ops: 256,
            min_ops: 1,
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

/// Tokenizes `graph`: every fusable elementwise region becomes one `Subgraph` node.
pub fn tokenize(graph: &Graph, cfg: &TokenizeConfig) -> Result<Graph, TokenizeError> {
    tokenize_with_report(graph, cfg).map(|(g, _)| g)
}

/// Like [`tokenize`], and also says which subgraphs were made and which elementwise
/// nodes were left out and why.
pub fn tokenize_with_report(
    graph: &Graph,
    cfg: &TokenizeConfig,
) -> Result<(Graph, TokenizeReport), TokenizeError> {
    verify(graph).map_err(TokenizeError::InvalidGraph)?;
    let found = elementwise::find_regions(graph, cfg)?;
    let outlined = outline::outline(graph, &found.regions)?;
    verify(&outlined.graph).map_err(TokenizeError::Internal)?;
    let report = TokenizeReport {
        subgraphs: outlined
            .summaries
            .into_iter()
            .map(|mut s| {
                s.spilled_pointers = (s.inputs + s.outputs).saturating_sub(cfg.max_data_pointers);
                s
            })
            .collect(),
        left_out: found.left_out,
    };
    Ok((outlined.graph, report))
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
