//! Outlining: replaces each given region of nodes by one `Op::Subgraph` node.
//!
//! The region finders (the elementwise pass, later an attention matcher) decide which
//! nodes go together; this module only rewrites the graph, so every finder shares
//! one definition of what a body looks like.
//!
//! Before: the regions are disjoint sets of nodes other than Parameters and Results,
//! contracting each region to one node leaves the graph acyclic, and each region has
//! a value used outside it.
//! After: each region is one node named `subgraphN` (the first free such name) whose
//! body holds
//! - one Parameter per value entering the region, named and typed as that value, in
//!   order of first use (region nodes in topological order, inputs in port order);
//! - a copy of each scalar (one-element) constant the region reads, before its first
//!   user; a scalar constant no node outside a region reads any more is dropped;
//! - the region's nodes with their names, ops and value names unchanged;
//! - one Result per value used outside the region (or returned by the graph), named
//!   as the value, in topological order.
//!
//! The node's outputs are those values, with their names and types, so nothing
//! outside changes. Nodes come out in a topological order that keeps the input's
//! order where it can, so the output is deterministic.

use std::collections::{HashMap, HashSet};

use snipjit_ir::{Graph, Node, NodeId, Op, Subgraph, SubgraphKind, ValueRef};

use crate::{SubgraphSummary, TokenizeError, is_scalar_constant};

/// A set of nodes to become one `Subgraph` node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    pub kind: SubgraphKind,
    /// The region's nodes (any order; the body follows the graph's topological order).
    pub nodes: Vec<NodeId>,
}

/// The outlined graph and one summary per `Subgraph` node made, in graph order.
#[derive(Clone, Debug)]
pub struct Outlined {
    pub graph: Graph,
    pub summaries: Vec<SubgraphSummary>,
}

/// What a region reads and defines, computed once.
struct Boundary {
    /// Members in topological order.
    nodes: Vec<NodeId>,
    /// Values entering the region (not scalar constants), in order of first use.
    inputs: Vec<ValueRef>,
    /// Values leaving the region, in topological order.
    outputs: Vec<ValueRef>,
}

/// A node of the contracted graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unit {
    Node(NodeId),
    Region(usize),
}

/// Replaces every region in `regions` by a `Subgraph` node (see the module docs for
/// what holds before and after).
pub fn outline(g: &Graph, regions: &[Region]) -> Result<Outlined, TokenizeError> {
    let bad = |reason: String| Err(TokenizeError::InvalidRegion(reason));
    let topo = g.topo_order().map_err(TokenizeError::InvalidGraph)?;
    let mut pos = vec![0usize; g.nodes.len()];
    for (i, &n) in topo.iter().enumerate() {
        pos[n.index()] = i;
    }

    let mut region_of: Vec<Option<usize>> = vec![None; g.nodes.len()];
    for (r, region) in regions.iter().enumerate() {
        if region.nodes.is_empty() {
            return bad(format!("region {r} is empty"));
        }
        for &n in &region.nodes {
            let Some(node) = g.nodes.get(n.index()) else {
                return bad(format!("region {r} names missing node {n}"));
            };
            if matches!(node.op, Op::Parameter | Op::Result) {
                return bad(format!("region {r} holds {} '{}'", node.op, node.name));
            }
            if region_of[n.index()].replace(r).is_some() {
                return bad(format!("node '{}' is in two regions", node.name));
            }
        }
    }

    // (port, consumer) for each node.
    let mut users: Vec<Vec<(u32, NodeId)>> = vec![Vec::new(); g.nodes.len()];
    for (i, node) in g.nodes.iter().enumerate() {
        for v in &node.inputs {
            users[v.node.index()].push((v.port, NodeId(i as u32)));
        }
    }

    let copied = |v: &ValueRef, r: usize| {
        region_of[v.node.index()] != Some(r) && is_scalar_constant(g, v.node)
    };
    let mut boundaries = Vec::with_capacity(regions.len());
    for (r, region) in regions.iter().enumerate() {
        let mut nodes = region.nodes.clone();
        nodes.sort_by_key(|n| pos[n.index()]);
        let mut inputs = Vec::new();
        let mut seen = HashSet::new();
        let mut outputs = Vec::new();
        for &m in &nodes {
            for v in &g.node(m).inputs {
                if region_of[v.node.index()] != Some(r) && !copied(v, r) && seen.insert(*v) {
                    inputs.push(*v);
                }
            }
            for port in 0..g.node(m).outputs.len() as u32 {
                let escapes = users[m.index()]
                    .iter()
                    .any(|&(p, u)| p == port && region_of[u.index()] != Some(r));
                if escapes {
                    outputs.push(ValueRef::new(m, port));
                }
            }
        }
        if outputs.is_empty() {
            return bad(format!("region {r} defines no value used outside it"));
        }
        boundaries.push(Boundary {
            nodes,
            inputs,
            outputs,
        });
    }

    // Scalar constants whose every reader is in a region are copied into the bodies
    // and disappear from the outer graph.
    let dropped: Vec<bool> = (0..g.nodes.len())
        .map(|i| {
            let id = NodeId(i as u32);
            region_of[i].is_none()
                && is_scalar_constant(g, id)
                && !users[i].is_empty()
                && users[i]
                    .iter()
                    .all(|&(_, u)| region_of[u.index()].is_some())
        })
        .collect();

    let unit_of = |n: NodeId| match region_of[n.index()] {
        Some(r) => Unit::Region(r),
        None => Unit::Node(n),
    };
    let deps = |u: Unit| -> Vec<Unit> {
        match u {
            Unit::Node(n) => g.node(n).inputs.iter().map(|v| unit_of(v.node)).collect(),
            Unit::Region(r) => boundaries[r]
                .inputs
                .iter()
                .map(|v| unit_of(v.node))
                .collect(),
        }
    };

    // Contracted-graph topological order by DFS, roots in the input's topological
    // order, so an untouched graph keeps its order.
    let mut order: Vec<Unit> = Vec::new();
    let mut state_node = vec![0u8; g.nodes.len()]; // 0 new, 1 open, 2 done
    let mut state_region = vec![0u8; regions.len()];
    for &root in &topo {
        if dropped[root.index()] {
            continue;
        }
        let root = unit_of(root);
        let state = |u: Unit, sn: &[u8], sr: &[u8]| match u {
            Unit::Node(n) => sn[n.index()],
            Unit::Region(r) => sr[r],
        };
        if state(root, &state_node, &state_region) != 0 {
            continue;
        }
        let mut stack: Vec<(Unit, Vec<Unit>, usize)> = vec![(root, deps(root), 0)];
        let set = |u: Unit, s: u8, sn: &mut [u8], sr: &mut [u8]| match u {
            Unit::Node(n) => sn[n.index()] = s,
            Unit::Region(r) => sr[r] = s,
        };
        set(root, 1, &mut state_node, &mut state_region);
        while let Some((u, ds, next)) = stack.last_mut() {
            if let Some(&d) = ds.get(*next) {
                *next += 1;
                match state(d, &state_node, &state_region) {
                    0 => {
                        set(d, 1, &mut state_node, &mut state_region);
                        stack.push((d, deps(d), 0));
                    }
                    1 => {
                        return bad("contracting the regions creates a cycle".into());
                    }
                    _ => {}
                }
            } else {
                let u = *u;
                set(u, 2, &mut state_node, &mut state_region);
                order.push(u);
                stack.pop();
            }
        }
    }

    let mut taken: HashSet<&str> = HashSet::new();
    for node in &g.nodes {
        taken.insert(&node.name);
        taken.extend(node.outputs.iter().map(|o| o.name.as_str()));
    }
    let mut next_name = 0usize;
    let mut fresh_name = || loop {
        let name = format!("subgraph{next_name}");
        next_name += 1;
        if !taken.contains(name.as_str()) {
            return name;
        }
    };

    let mut out = Graph::new(g.name.clone());
    let mut node_map: Vec<Option<NodeId>> = vec![None; g.nodes.len()];
    let mut value_map: HashMap<ValueRef, ValueRef> = HashMap::new();
    let mut summaries = Vec::new();
    let lookup = |map: &HashMap<ValueRef, ValueRef>, v: &ValueRef| {
        *map.get(v)
            .expect("contracted order emits producers before consumers")
    };
    for unit in order {
        match unit {
            Unit::Node(n) => {
                let node = g.node(n);
                let id = out.add_node(Node {
                    name: node.name.clone(),
                    op: node.op.clone(),
                    inputs: node.inputs.iter().map(|v| lookup(&value_map, v)).collect(),
                    outputs: node.outputs.clone(),
                });
                node_map[n.index()] = Some(id);
                for port in 0..node.outputs.len() as u32 {
                    value_map.insert(ValueRef::new(n, port), ValueRef::new(id, port));
                }
            }
            Unit::Region(r) => {
                let b = &boundaries[r];
                let name = fresh_name();
                let (body, constants) = build_body(g, &name, b, |v| copied(v, r));
                let ops = b
                    .nodes
                    .iter()
                    .filter(|&&n| !matches!(g.node(n).op, Op::Constant(_)))
                    .count();
                summaries.push(SubgraphSummary {
                    name: name.clone(),
                    kind: regions[r].kind,
                    ops,
                    inputs: b.inputs.len(),
                    outputs: b.outputs.len(),
                    constants,
                    spilled_pointers: 0,
                });
                let id = out.add_node(Node {
                    name,
                    op: Op::Subgraph(Box::new(Subgraph {
                        kind: regions[r].kind,
                        body,
                    })),
                    inputs: b.inputs.iter().map(|v| lookup(&value_map, v)).collect(),
                    outputs: b
                        .outputs
                        .iter()
                        .map(|v| g.node(v.node).outputs[v.port as usize].clone())
                        .collect(),
                });
                for (port, v) in b.outputs.iter().enumerate() {
                    value_map.insert(*v, ValueRef::new(id, port as u32));
                }
            }
        }
    }
    let remap = |ids: &[NodeId]| -> Vec<NodeId> {
        ids.iter()
            .map(|n| node_map[n.index()].expect("Parameters and Results are never outlined"))
            .collect()
    };
    out.inputs = remap(&g.inputs);
    out.outputs = remap(&g.outputs);
    Ok(Outlined {
        graph: out,
        summaries,
    })
}

/// Builds a region's body; returns it and the number of scalar constants copied in.
fn build_body(
    g: &Graph,
    name: &str,
    b: &Boundary,
    copied: impl Fn(&ValueRef) -> bool,
) -> (Graph, usize) {
    let mut body = Graph::new(name);
    let mut map: HashMap<ValueRef, ValueRef> = HashMap::new();
    for v in &b.inputs {
        let p = body.add_input(g.value_name(*v), g.value_type(*v).clone());
        map.insert(*v, p);
    }
    let mut constants = 0;
    for &m in &b.nodes {
        let node = g.node(m);
        for v in &node.inputs {
            if !map.contains_key(v) && copied(v) {
                let c = g.node(v.node);
                let id = body.add_node(Node {
                    name: c.name.clone(),
                    op: c.op.clone(),
                    inputs: vec![],
                    outputs: c.outputs.clone(),
                });
                constants += 1;
                for port in 0..c.outputs.len() as u32 {
                    map.insert(ValueRef::new(v.node, port), ValueRef::new(id, port));
                }
            }
        }
        let id = body.add_node(Node {
            name: node.name.clone(),
            op: node.op.clone(),
            inputs: node
                .inputs
                .iter()
                .map(|v| {
                    *map.get(v)
                        .expect("body inputs are mapped before their users")
                })
                .collect(),
            outputs: node.outputs.clone(),
        });
        for port in 0..node.outputs.len() as u32 {
            map.insert(ValueRef::new(m, port), ValueRef::new(id, port));
        }
    }
    for v in &b.outputs {
        let value = *map.get(v).expect("every output is defined in the body");
        body.add_output(g.value_name(*v), value);
    }
    (body, constants)
}
