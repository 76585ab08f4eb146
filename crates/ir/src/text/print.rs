//! A [`Graph`] to canonical `.sg` text.
//!
//! Nodes are printed in arena order. Graph inputs at the front of the arena (in
//! input order) are declared only in the header; graph outputs at the end of the
//! arena (in output order) only in `return`. Any other Parameter or Result gets an
//! `input x` / `output k` line at its arena position, so that parsing the text
//! rebuilds the same arena. Attributes equal to their default are left out.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::{fmt_bf16, fmt_f16, fmt_f32, write_name};
use crate::{Graph, Node, NodeId, Op, TensorData, TensorType, UnaryOp, ValueRef};

/// Prints `g` as `.sg` text (ending with a newline).
///
/// Never fails: a malformed graph (dangling references, a Parameter that is not a
/// graph input, ...) is printed as well as it can be, and the parser then reports
/// the problem.
pub fn print(g: &Graph) -> String {
    let mut out = String::new();
    print_graph(&mut out, g, 0);
    out.push('\n');
    out
}

fn name(out: &mut String, s: &str) {
    write_name(out, s);
}

fn ty(out: &mut String, t: &TensorType) {
    out.push_str(t.dtype.name());
    out.push('[');
    for (i, d) in t.shape.dims().iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        match d {
            crate::Dim::Static(n) => {
                let _ = write!(out, "{n}");
            }
            crate::Dim::Dynamic(None) => out.push('?'),
            crate::Dim::Dynamic(Some(s)) => name(out, s),
        }
    }
    out.push(']');
}

/// The node name the parser gives by default: the first output's name.
fn default_node_name(n: &Node) -> &str {
    n.outputs.first().map_or("", |o| o.name.as_str())
}

fn node_suffix(out: &mut String, n: &Node) {
    if n.name != default_node_name(n) {
        out.push_str(" @");
        name(out, &n.name);
    }
}

fn value(out: &mut String, g: &Graph, v: ValueRef) {
    match g
        .nodes
        .get(v.node.index())
        .and_then(|n| n.outputs.get(v.port as usize))
    {
        Some(o) => name(out, &o.name),
        None => name(out, &format!("<missing {}:{}>", v.node, v.port)),
    }
}

/// Positions of nodes in `list` (first occurrence).
fn positions(list: &[NodeId]) -> HashMap<NodeId, usize> {
    let mut m = HashMap::new();
    for (i, &id) in list.iter().enumerate() {
        m.entry(id).or_insert(i);
    }
    m
}

fn print_graph(out: &mut String, g: &Graph, indent: usize) {
    let pad = " ".repeat(indent);
    let in_pos = positions(&g.inputs);
    let out_pos = positions(&g.outputs);

    // The arena prefix of Parameters in increasing input order is declared by the
    // header alone; likewise the arena suffix of Results in increasing output order.
    let mut front = 0;
    let mut last = None;
    while let Some(n) = g.nodes.get(front) {
        match in_pos.get(&NodeId(front as u32)) {
            Some(&p) if matches!(n.op, Op::Parameter) && last.is_none_or(|l| p > l) => {
                last = Some(p);
                front += 1;
            }
            _ => break,
        }
    }
    let mut back = g.nodes.len();
    let mut next = None;
    while back > front {
        let n = &g.nodes[back - 1];
        match out_pos.get(&NodeId(back as u32 - 1)) {
            Some(&p) if matches!(n.op, Op::Result) && next.is_none_or(|l| p < l) => {
                next = Some(p);
                back -= 1;
            }
            _ => break,
        }
    }

    out.push_str(&pad);
    out.push_str("graph ");
    name(out, &g.name);
    out.push('(');
    for (i, &id) in g.inputs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        match g.nodes.get(id.index()) {
            Some(n) if n.outputs.len() == 1 => {
                name(out, &n.outputs[0].name);
                out.push_str(": ");
                ty(out, &n.outputs[0].ty);
                node_suffix(out, n);
            }
            _ => name(out, &format!("<bad input {id}>")),
        }
    }
    out.push_str(") {\n");

    let inner = " ".repeat(indent + 2);
    for (i, n) in g.nodes.iter().enumerate().take(back).skip(front) {
        out.push_str(&inner);
        match &n.op {
            Op::Parameter => {
                out.push_str("input ");
                name(out, default_node_name(n));
            }
            Op::Result => match out_pos.get(&NodeId(i as u32)) {
                Some(k) => {
                    let _ = write!(out, "output {k}");
                }
                None => out.push_str("output \"<not a graph output>\""),
            },
            _ => op_line(out, g, n, indent + 2),
        }
        out.push('\n');
    }

    out.push_str(&inner);
    out.push_str("return");
    for (i, &id) in g.outputs.iter().enumerate() {
        out.push_str(if i > 0 { ", " } else { " " });
        match g.nodes.get(id.index()) {
            Some(n) if n.outputs.len() == 1 && n.inputs.len() == 1 => {
                let oname = &n.outputs[0].name;
                let vname = g
                    .nodes
                    .get(n.inputs[0].node.index())
                    .and_then(|p| p.outputs.get(n.inputs[0].port as usize))
                    .map(|o| o.name.as_str());
                if vname != Some(oname.as_str()) {
                    name(out, oname);
                    out.push_str(" = ");
                }
                value(out, g, n.inputs[0]);
                node_suffix(out, n);
            }
            _ => name(out, &format!("<bad output {id}>")),
        }
    }
    out.push('\n');
    out.push_str(&pad);
    out.push('}');
}

fn op_line(out: &mut String, g: &Graph, n: &Node, indent: usize) {
    for (i, o) in n.outputs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        name(out, &o.name);
        out.push_str(": ");
        ty(out, &o.ty);
    }
    if !n.outputs.is_empty() {
        out.push_str(" = ");
    }
    out.push_str(n.op.name());
    out.push('(');
    let mut parts: Vec<String> = Vec::new();
    for &v in &n.inputs {
        let mut s = String::new();
        value(&mut s, g, v);
        parts.push(s);
    }
    if let Op::Constant(t) = &n.op {
        parts.push(constant_literal(&t.data, t.shape.is_empty()));
    }
    parts.extend(attrs(&n.op).into_iter().map(|(k, v)| format!("{k}={v}")));
    out.push_str(&parts.join(", "));
    out.push(')');
    node_suffix(out, n);
    if let Op::Subgraph(sg) = &n.op {
        out.push(' ');
        let mut body = String::new();
        print_graph(&mut body, &sg.body, indent);
        // The nested block starts on this line: drop its leading indentation.
        out.push_str(body.trim_start_matches(' '));
    }
}

fn ints<T: std::fmt::Display>(v: &[T]) -> String {
    let items: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("[{}]", items.join(", "))
}

/// The attributes of an op as (key, text), defaults left out.
fn attrs(op: &Op) -> Vec<(&'static str, String)> {
    let mut a = Vec::new();
    match op {
        Op::Unary(UnaryOp::Clamp { min, max }) => {
            a.push(("min", fmt_f32(*min)));
            a.push(("max", fmt_f32(*max)));
        }
        Op::Unary(UnaryOp::Swish { beta }) if beta.to_bits() != 1.0f32.to_bits() => {
            a.push(("beta", fmt_f32(*beta)));
        }
        Op::Unary(UnaryOp::Elu { alpha }) if alpha.to_bits() != 1.0f32.to_bits() => {
            a.push(("alpha", fmt_f32(*alpha)));
        }
        Op::Unary(UnaryOp::LeakyRelu { alpha }) if alpha.to_bits() != 0.01f32.to_bits() => {
            a.push(("alpha", fmt_f32(*alpha)));
        }
        Op::Convert { to } => a.push(("to", to.name().to_string())),
        Op::Reduce {
            axes, keep_dims, ..
        } => {
            a.push(("axes", ints(axes)));
            if *keep_dims {
                a.push(("keep_dims", "true".into()));
            }
        }
        Op::Softmax { axis } | Op::Concat { axis } | Op::Gather { axis } => {
            a.push(("axis", axis.to_string()))
        }
        Op::MatMul {
            transpose_a,
            transpose_b,
        } => {
            if *transpose_a {
                a.push(("transpose_a", "true".into()));
            }
            if *transpose_b {
                a.push(("transpose_b", "true".into()));
            }
        }
        Op::Transpose { perm } => a.push(("perm", ints(perm))),
        Op::Reshape { allow_zero: true } => a.push(("allow_zero", "true".into())),
        Op::Unsqueeze { axes } | Op::Squeeze { axes } => a.push(("axes", ints(axes))),
        Op::Subgraph(sg) => a.push(("kind", sg.kind.name().to_string())),
        _ => {}
    }
    a
}

/// A constant's elements: a bare literal for rank 0, else a flat list.
fn constant_literal(d: &TensorData, scalar: bool) -> String {
    let items: Vec<String> = match d {
        TensorData::F32(v) => v.iter().map(|&x| fmt_f32(x)).collect(),
        TensorData::BF16(v) => v.iter().map(|&x| fmt_bf16(x)).collect(),
        TensorData::F16(v) => v.iter().map(|&x| fmt_f16(x)).collect(),
        TensorData::I8(v) => v.iter().map(|x| x.to_string()).collect(),
        TensorData::U8(v) => v.iter().map(|x| x.to_string()).collect(),
        TensorData::I32(v) => v.iter().map(|x| x.to_string()).collect(),
        TensorData::I64(v) => v.iter().map(|x| x.to_string()).collect(),
        TensorData::Bool(v) => v.iter().map(|x| x.to_string()).collect(),
    };
    match items.as_slice() {
        [one] if scalar => one.clone(),
        _ => format!("[{}]", items.join(", ")),
    }
}
