//! The elementwise pass: finds regions of elementwise ops to fuse.
//!
//! Greedy growth along the topological order, as OpenVINO Snippets'
//! TokenizeSnippets does. A fusable node (see [`fusable`]) tries, in order:
//! 1. to merge every region among its producers and join the merged region;
//! 2. to join one producer's region (in input order);
//! 3. to start a region of its own.
//!
//! An option is taken when contracting the resulting region leaves the graph acyclic
//! (no path leaves the region and comes back through a node or another region
//! outside it), it holds at most `max_ops` ops, and, when pointer spilling is off,
//! its distinct inputs plus outputs fit in `max_data_pointers`. Finally regions under
//! `min_ops` ops, or whose values nobody reads, are dropped.
//!
//! Before: any verified graph (existing `Subgraph` nodes are left alone).
//! After: disjoint regions; contracting all of them leaves the graph acyclic.
//! ```text
//! a = Add(x, y); b = Relu(a); m = MatMul(b, w); c = Exp(m)
//!   -> regions {a, b} and {c}
//! ```

use std::collections::HashSet;

use snipjit_ir::{BinaryOp, Graph, NodeId, Op, SubgraphKind, ValueRef};

use crate::outline::Region;
use crate::{
    LeftOut, LeftOutReason, TokenizeConfig, TokenizeError, is_compute_dtype, is_convert_dtype,
    is_scalar_constant,
};

/// The regions found and the elementwise nodes left out.
#[derive(Clone, Debug, Default)]
pub struct ElementwiseRegions {
    /// Regions in order of their first node in topological order; each region's
    /// nodes are in topological order.
    pub regions: Vec<Region>,
    /// Elementwise nodes in no region, in topological order.
    pub left_out: Vec<LeftOut>,
}

/// Whether the elementwise JIT can compute `node`: an elementwise op whose inputs and
/// outputs are f32 or bool (`Convert` between f32, bf16, f16, i32, u8 and i8), and
/// for `Pow` a scalar constant exponent.
///
/// Returns `None` for ops that are not elementwise at all.
pub fn fusable(g: &Graph, node: NodeId) -> Option<Result<(), LeftOutReason>> {
    let n = g.node(node);
    if !n.op.is_elementwise() {
        return None;
    }
    let dtypes = n
        .inputs
        .iter()
        .map(|&v| g.value_type(v).dtype)
        .chain(n.outputs.iter().map(|o| o.ty.dtype));
    let ok_dtype: fn(_) -> bool = match n.op {
        Op::Convert { .. } => is_convert_dtype,
        _ => is_compute_dtype,
    };
    for d in dtypes {
        if !ok_dtype(d) {
            return Some(Err(LeftOutReason::DType(d)));
        }
    }
    if let Op::Binary(BinaryOp::Pow) = n.op
        && !n
            .inputs
            .get(1)
            .is_some_and(|e| is_scalar_constant(g, e.node))
    {
        return Some(Err(LeftOutReason::PowExponentNotScalarConstant));
    }
    if let Op::Binary(BinaryOp::Mod) = n.op {
        return Some(Err(LeftOutReason::ModNotExact));
    }
    Some(Ok(()))
}

/// Why one growth option was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    Cycle,
    TooManyOps,
    OverBudget(usize),
}

struct Grower<'g> {
    g: &'g Graph,
    cfg: &'g TokenizeConfig,
    /// Position of each node in the topological order.
    pos: Vec<usize>,
    /// (port, consumer) for each node.
    users: Vec<Vec<(u32, NodeId)>>,
    region_of: Vec<Option<usize>>,
    /// Members of each region, in topological order; empty once merged away.
    regions: Vec<Vec<NodeId>>,
    /// Visit marks for the cycle search, valid when equal to `epoch`.
    seen: Vec<u32>,
    epoch: u32,
}

/// A candidate region: `node` plus the regions `merged`.
#[derive(Clone, Copy)]
struct Candidate<'a> {
    node: NodeId,
    merged: &'a [usize],
}

impl Candidate<'_> {
    fn contains(&self, region_of: &[Option<usize>], n: NodeId) -> bool {
        n == self.node || region_of[n.index()].is_some_and(|r| self.merged.contains(&r))
    }
}

impl Grower<'_> {
    fn members<'a>(&'a self, c: Candidate<'a>) -> impl Iterator<Item = NodeId> + 'a {
        c.merged
            .iter()
            .flat_map(|&r| self.regions[r].iter().copied())
            .chain(std::iter::once(c.node))
    }

    fn check(&mut self, c: Candidate<'_>) -> Result<(), Refusal> {
        let ops = c
            .merged
            .iter()
            .map(|&r| self.regions[r].len())
            .sum::<usize>()
            + 1;
        if ops > self.cfg.max_ops {
            return Err(Refusal::TooManyOps);
        }
        if !self.cfg.allow_pointer_spill {
            let pointers = self.pointers(c);
            if pointers > self.cfg.max_data_pointers {
                return Err(Refusal::OverBudget(pointers));
            }
        }
        if self.creates_cycle(c) {
            return Err(Refusal::Cycle);
        }
        Ok(())
    }

    /// Distinct values entering (scalar constants aside) and leaving the candidate.
    fn pointers(&self, c: Candidate<'_>) -> usize {
        let mut inputs: HashSet<ValueRef> = HashSet::new();
        let mut outputs: HashSet<ValueRef> = HashSet::new();
        for m in self.members(c) {
            for v in &self.g.node(m).inputs {
                if !c.contains(&self.region_of, v.node) && !is_scalar_constant(self.g, v.node) {
                    inputs.insert(*v);
                }
            }
            for &(port, u) in &self.users[m.index()] {
                if !c.contains(&self.region_of, u) {
                    outputs.insert(ValueRef::new(m, port));
                }
            }
        }
        inputs.len() + outputs.len()
    }

    /// True if some path leaves the candidate and comes back into it.
    ///
    /// The search walks forwards from the candidate through the users of its values;
    /// an existing region counts as one node (it will be contracted), so reaching any
    /// member means reaching all. Only nodes before the candidate's newest node `n` in
    /// topological order can lead back: every region member comes before `n`, and a
    /// plain node on the way back is an ancestor of a member. So the walk stays
    /// within the window between the regions and `n`, not the whole graph.
    fn creates_cycle(&mut self, c: Candidate<'_>) -> bool {
        self.epoch += 1;
        let epoch = self.epoch;
        let limit = self.pos[c.node.index()];
        let mut stack: Vec<NodeId> = Vec::new();
        let users = |m: NodeId, stack: &mut Vec<NodeId>| {
            stack.extend(
                self.users[m.index()]
                    .iter()
                    .map(|&(_, u)| u)
                    .filter(|u| self.pos[u.index()] <= limit),
            );
        };
        for m in self.members(c) {
            users(m, &mut stack);
        }
        stack.retain(|&u| !c.contains(&self.region_of, u));
        while let Some(p) = stack.pop() {
            if c.contains(&self.region_of, p) {
                return true;
            }
            if self.seen[p.index()] == epoch {
                continue;
            }
            match self.region_of[p.index()] {
                Some(r) => {
                    for &m in &self.regions[r] {
                        self.seen[m.index()] = epoch;
                        users(m, &mut stack);
                    }
                }
                None => {
                    self.seen[p.index()] = epoch;
                    users(p, &mut stack);
                }
            }
        }
        false
    }

    /// Makes the candidate a region.
    fn commit(&mut self, c: Candidate<'_>) {
        let target = match c.merged.first() {
            Some(&r) => r,
            None => {
                self.regions.push(Vec::new());
                self.regions.len() - 1
            }
        };
        for &r in c.merged.iter().skip(1) {
            let moved = std::mem::take(&mut self.regions[r]);
            for &m in &moved {
                self.region_of[m.index()] = Some(target);
            }
            self.regions[target].extend(moved);
        }
        self.regions[target].push(c.node);
        self.region_of[c.node.index()] = Some(target);
        let pos = &self.pos;
        self.regions[target].sort_by_key(|n| pos[n.index()]);
    }

    /// True if a value of the region is read outside it.
    fn escapes(&self, region: &[NodeId]) -> bool {
        region.iter().any(|m| {
            let r = self.region_of[m.index()];
            self.users[m.index()]
                .iter()
                .any(|&(_, u)| self.region_of[u.index()] != r)
        })
    }
}

/// Finds the elementwise regions of `g` (see the module docs).
pub fn find_regions(g: &Graph, cfg: &TokenizeConfig) -> Result<ElementwiseRegions, TokenizeError> {
    if cfg.max_ops == 0 {
        return Err(TokenizeError::InvalidConfig(
            "max_ops is 0: no subgraph could hold an op".into(),
        ));
    }
    let topo = g.topo_order().map_err(TokenizeError::InvalidGraph)?;
    let mut pos = vec![0usize; g.nodes.len()];
    for (i, &n) in topo.iter().enumerate() {
        pos[n.index()] = i;
    }
    let mut users: Vec<Vec<(u32, NodeId)>> = vec![Vec::new(); g.nodes.len()];
    for (i, node) in g.nodes.iter().enumerate() {
        for v in &node.inputs {
            users[v.node.index()].push((v.port, NodeId(i as u32)));
        }
    }
    let mut grower = Grower {
        g,
        cfg,
        pos: pos.clone(),
        users,
        region_of: vec![None; g.nodes.len()],
        regions: Vec::new(),
        seen: vec![0; g.nodes.len()],
        epoch: 0,
    };
    let mut left_out: Vec<(NodeId, LeftOutReason)> = Vec::new();

    for &n in &topo {
        match fusable(g, n) {
            None => continue,
            Some(Err(reason)) => {
                left_out.push((n, reason));
                continue;
            }
            Some(Ok(())) => {}
        }
        let mut producers: Vec<usize> = Vec::new();
        for v in &g.node(n).inputs {
            if let Some(r) = grower.region_of[v.node.index()]
                && !producers.contains(&r)
            {
                producers.push(r);
            }
        }
        let mut options: Vec<Vec<usize>> = Vec::new();
        if !producers.is_empty() {
            options.push(producers.clone());
        }
        if producers.len() > 1 {
            options.extend(producers.iter().map(|&r| vec![r]));
        }
        options.push(Vec::new());
        let mut refusal = None;
        for merged in &options {
            let c = Candidate { node: n, merged };
            match grower.check(c) {
                Ok(()) => {
                    grower.commit(c);
                    refusal = None;
                    break;
                }
                Err(r) => refusal = Some(r),
            }
        }
        match refusal {
            None => {}
            Some(Refusal::OverBudget(pointers)) => left_out.push((
                n,
                LeftOutReason::OverPointerBudget {
                    pointers,
                    budget: cfg.max_data_pointers,
                },
            )),
            Some(r @ (Refusal::Cycle | Refusal::TooManyOps)) => {
                // A node alone has one op (max_ops >= 1) and cannot reach itself.
                unreachable!("a single-node region was refused: {r:?}")
            }
        }
    }

    let mut regions = Vec::new();
    for members in &grower.regions {
        if members.is_empty() {
            continue;
        }
        let reason = if members.len() < cfg.min_ops {
            Some(LeftOutReason::BelowMinOps {
                ops: members.len(),
                min_ops: cfg.min_ops,
            })
        } else if !grower.escapes(members) {
            Some(LeftOutReason::Unused)
        } else {
            None
        };
        match reason {
            Some(reason) => left_out.extend(members.iter().map(|&m| (m, reason.clone()))),
            None => regions.push(Region {
                kind: SubgraphKind::Elementwise,
                nodes: members.clone(),
            }),
        }
    }
    regions.sort_by_key(|r| pos[r.nodes[0].index()]);
    left_out.sort_by_key(|(n, _)| pos[n.index()]);
    Ok(ElementwiseRegions {
        regions,
        left_out: left_out
            .into_iter()
            .map(|(n, reason)| LeftOut {
                node: g.node(n).name.clone(),
                op: g.node(n).op.name().to_string(),
                reason,
            })
            .collect(),
    })
}
