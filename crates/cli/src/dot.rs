//! Graphviz output of `snipjit dump --format dot`.
//!
//! Every node becomes a box labelled with its name, op and output types; every value
//! an edge from its producer to each reader. A Subgraph node becomes a
//! `subgraph cluster_K` holding its body (Parameters, ops, Results) with the label
//! the caller gives it (name, kind, whether it runs as a kernel); edges into and out
//! of a Subgraph node attach to the body's Parameter and Result nodes, so a value is
//! traced through the fused region. Node ids are `n<id>` in the top graph and
//! `c<K>_n<id>` inside cluster `K` (prefixes nest).

use std::collections::HashMap;
use std::fmt::Write;

use snipjit::Graph;
use snipjit::ir::{NodeId, Op, ValueRef};

/// Renders `graph` as a DOT `digraph`. `cluster_label(id)` gives the label of the
/// top-level Subgraph node `id` (nested ones are labelled with name and kind).
pub fn render(graph: &Graph, cluster_label: &dyn Fn(NodeId) -> String) -> String {
    let mut d = Dot {
        out: String::new(),
        clusters: 0,
    };
    let _ = writeln!(d.out, "digraph {} {{", quote(&graph.name));
    d.out.push_str("  rankdir=TB;\n");
    d.out
        .push_str("  node [shape=box, fontname=\"monospace\", fontsize=10];\n");
    d.out
        .push_str("  edge [fontname=\"monospace\", fontsize=9];\n");
    d.graph(graph, "", 1, Some(cluster_label));
    d.out.push_str("}\n");
    d.out
}

struct Dot {
    out: String,
    clusters: usize,
}

impl Dot {
    fn graph(
        &mut self,
        g: &Graph,
        prefix: &str,
        depth: usize,
        cluster_label: Option<&dyn Fn(NodeId) -> String>,
    ) {
        let ind = "  ".repeat(depth);
        // Cluster prefix of every Subgraph node of this level.
        let mut sub: HashMap<NodeId, String> = HashMap::new();
        for id in g.node_ids() {
            let node = g.node(id);
            match &node.op {
                Op::Subgraph(sg) => {
                    let k = self.clusters;
                    self.clusters += 1;
                    let p = format!("{prefix}c{k}_");
                    sub.insert(id, p.clone());
                    let label = match cluster_label {
                        Some(f) => f(id),
                        None => format!("{}\n{}", node.name, sg.kind.name()),
                    };
                    let _ = writeln!(self.out, "{ind}subgraph cluster_{k} {{");
                    let _ = writeln!(self.out, "{ind}  label={};", quote(&label));
                    let _ = writeln!(self.out, "{ind}  style=\"rounded,filled\";");
                    let _ = writeln!(self.out, "{ind}  fillcolor=\"#eef4ff\";");
                    self.graph(&sg.body, &p, depth + 1, None);
                    let _ = writeln!(self.out, "{ind}}}");
                }
                op => {
                    let types: Vec<String> =
                        node.outputs.iter().map(|o| o.ty.to_string()).collect();
                    let label = format!("{}\n{}\n{}", node.name, op_text(op), types.join(", "));
                    let shape = match op {
                        Op::Parameter | Op::Result => ", shape=ellipse",
                        Op::Constant(_) => ", shape=note",
                        _ => "",
                    };
                    let _ = writeln!(
                        self.out,
                        "{ind}{prefix}n{} [label={}{shape}];",
                        id.0,
                        quote(&label)
                    );
                }
            }
        }
        // The DOT node a value comes from: a Subgraph's output is its body's Result.
        let source = |v: ValueRef| -> String {
            match (&g.node(v.node).op, sub.get(&v.node)) {
                (Op::Subgraph(sg), Some(p)) => match sg.body.outputs.get(v.port as usize) {
                    Some(r) => format!("{p}n{}", r.0),
                    None => format!("{prefix}n{}", v.node.0),
                },
                _ => format!("{prefix}n{}", v.node.0),
            }
        };
        for id in g.node_ids() {
            let node = g.node(id);
            for (i, &v) in node.inputs.iter().enumerate() {
                let dst = match (&node.op, sub.get(&id)) {
                    (Op::Subgraph(sg), Some(p)) => match sg.body.inputs.get(i) {
                        Some(param) => format!("{p}n{}", param.0),
                        None => continue,
                    },
                    _ => format!("{prefix}n{}", id.0),
                };
                let _ = writeln!(
                    self.out,
                    "{ind}{} -> {dst} [label={}];",
                    source(v),
                    quote(g.value_name(v))
                );
            }
        }
    }
}

/// The op with its attributes, as far as they fit a label.
fn op_text(op: &Op) -> String {
    match op {
        Op::Constant(t) if t.numel() == 1 => match t.scalar_value() {
            Some(v) => format!("Constant {v}"),
            None => "Constant".into(),
        },
        Op::Constant(t) => format!("Constant {:?}", t.shape),
        Op::Transpose { perm } => format!("Transpose {perm:?}"),
        Op::Softmax { axis } => format!("Softmax axis={axis}"),
        Op::MatMul {
            transpose_a,
            transpose_b,
        } => format!(
            "MatMul{}{}",
            if *transpose_a { " ta" } else { "" },
            if *transpose_b { " tb" } else { "" }
        ),
        Op::Convert { to } => format!("Convert to {to}"),
        op => op.name().to_string(),
    }
}

/// A DOT string literal: `"` and `\` escaped, newlines as `\n` (centred lines).
fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            c if c.is_control() => q.push(' '),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote("a\"b\\c\nd\te"), "\"a\\\"b\\\\c\\nd e\"");
    }
}
