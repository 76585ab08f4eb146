//! The graph verifier: structural and type checks whose errors name the node.

use std::collections::HashSet;

use crate::infer::infer_op;
use crate::{Graph, IrError, Op};

/// Checks that `g` is well formed: inputs refer to existing values, no cycles,
/// Parameters and Results are listed in `inputs`/`outputs`, value names are unique,
/// and every node's output types are what inference gives.
pub fn verify(g: &Graph) -> Result<(), IrError> {
    let err = |node: &crate::Node, reason: String| IrError::Node {
        node: node.name.clone(),
        op: node.op.name().to_string(),
        reason,
    };
    for node in &g.nodes {
        for v in &node.inputs {
            let ok = g
                .nodes
                .get(v.node.index())
                .is_some_and(|n| (v.port as usize) < n.outputs.len());
            if !ok {
                return Err(err(node, format!("input refers to missing value {v:?}")));
            }
        }
    }
    let order = g.topo_order()?;
    let params: HashSet<_> = g.inputs.iter().copied().collect();
    let results: HashSet<_> = g.outputs.iter().copied().collect();
    if params.len() != g.inputs.len() || results.len() != g.outputs.len() {
        return Err(IrError::Graph(
            "a node is listed twice as graph input or output".into(),
        ));
    }
    let mut names = HashSet::new();
    for id in order {
        let node = g.node(id);
        match node.op {
            Op::Parameter if !params.contains(&id) => {
                return Err(err(node, "Parameter is not a graph input".into()));
            }
            Op::Result if !results.contains(&id) => {
                return Err(err(node, "Result is not a graph output".into()));
            }
            _ => {}
        }
        if !matches!(node.op, Op::Result) {
            for o in &node.outputs {
                if !names.insert(o.name.as_str()) {
                    return Err(err(
                        node,
                        format!("value name '{}' is defined twice", o.name),
                    ));
                }
            }
        }
        if matches!(node.op, Op::Parameter) {
            if !node.inputs.is_empty() || node.outputs.len() != 1 {
                return Err(err(
                    node,
                    "Parameter must have no inputs and one output".into(),
                ));
            }
            continue;
        }
        let tys = infer_op(g, &node.op, &node.inputs).map_err(|r| err(node, r))?;
        let got: Vec<_> = node.outputs.iter().map(|o| &o.ty).collect();
        if tys.iter().collect::<Vec<_>>() != got {
            let want: Vec<String> = tys.iter().map(|t| t.to_string()).collect();
            let got: Vec<String> = got.iter().map(|t| t.to_string()).collect();
            return Err(err(
                node,
                format!("output types {got:?} differ from inferred {want:?}"),
            ));
        }
        if let Op::Subgraph(sg) = &node.op {
            verify(&sg.body).map_err(|e| err(node, format!("in body: {e}")))?;
        }
    }
    for &p in &g.inputs {
        if !matches!(g.nodes.get(p.index()).map(|n| &n.op), Some(Op::Parameter)) {
            return Err(IrError::Graph(format!(
                "graph input {p} is not a Parameter"
            )));
        }
    }
    for &r in &g.outputs {
        if !matches!(g.nodes.get(r.index()).map(|n| &n.op), Some(Op::Result)) {
            return Err(IrError::Graph(format!("graph output {r} is not a Result")));
        }
    }
    Ok(())
}
