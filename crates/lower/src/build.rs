//! Builds the data-flow linear IR from an elementwise subgraph body.

use std::collections::HashMap;

use snipjit_ir::{DType, Graph, Op, ValueRef};

use crate::LowerError;
use crate::lir::{Expr, ExprKind, Lir, PortInfo};

/// Builds the linear IR of `body`, one expression per node in topological order.
///
/// `bcast_inner[i]` says whether input `i` is broadcast along the innermost dim for
/// the shapes this kernel serves (part of the kernel cache key).
pub fn build(body: &Graph, bcast_inner: &[bool]) -> Result<Lir, LowerError> {
    if bcast_inner.len() != body.inputs.len() {
        return Err(LowerError::Unsupported(format!(
            "broadcast pattern has {} entries for {} inputs",
            bcast_inner.len(),
            body.inputs.len()
        )));
    }
    let port = |v: ValueRef, bcast: bool| {
        let o = &body.node(v.node).outputs[v.port as usize];
        PortInfo {
            name: o.name.clone(),
            dtype: o.ty.dtype,
            shape: o.ty.shape.clone(),
            bcast_inner: bcast,
        }
    };
    let mut lir = Lir {
        name: body.name.clone(),
        inputs: body
            .inputs
            .iter()
            .zip(bcast_inner)
            .map(|(&p, &b)| port(ValueRef::new(p, 0), b))
            .collect(),
        outputs: body
            .outputs
            .iter()
            .map(|&r| port(ValueRef::new(r, 0), false))
            .collect(),
        exprs: vec![],
        loops: vec![],
        num_values: 0,
        locations: vec![],
        scratch_regs: vec![],
        spill_slots: 0,
        spill_temps: vec![],
    };
    for p in lir.inputs.iter().chain(&lir.outputs) {
        if p.dtype != DType::F32 {
            return Err(LowerError::Unsupported(format!(
                "port '{}' has dtype {}; the JIT reads and writes f32 only",
                p.name, p.dtype
            )));
        }
    }
    let param_index: HashMap<_, _> = body
        .inputs
        .iter()
        .enumerate()
        .map(|(i, &n)| (n, i))
        .collect();
    let result_index: HashMap<_, _> = body
        .outputs
        .iter()
        .enumerate()
        .map(|(i, &n)| (n, i))
        .collect();
    let mut value_of = HashMap::new();
    for id in body.topo_order()? {
        let node = body.node(id);
        let ins = node
            .inputs
            .iter()
            .map(|v| {
                value_of.get(v).copied().ok_or_else(|| {
                    LowerError::Unsupported(format!(
                        "node '{}' reads an unlowered value",
                        node.name
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let kind = match &node.op {
            Op::Parameter => ExprKind::Parameter(param_index[&id]),
            Op::Result => {
                lir.exprs
                    .push(Expr::new(ExprKind::Result(result_index[&id]), &ins, None));
                continue;
            }
            Op::Constant(t) => match (t.dtype(), t.scalar_value()) {
                (DType::F32, Some(v)) => ExprKind::Scalar(v as f32),
                _ => {
                    return Err(LowerError::Unsupported(format!(
                        "constant '{}' is not an f32 scalar; tensor constants must be subgraph inputs",
                        node.name
                    )));
                }
            },
            Op::Unary(u) => ExprKind::Unary(*u),
            Op::Binary(b) => ExprKind::Binary(*b),
            Op::Select => ExprKind::Select,
            Op::Identity => {
                value_of.insert(ValueRef::new(id, 0), ins[0]);
                continue;
            }
            other => {
                return Err(LowerError::Unsupported(format!(
                    "op {} at node '{}' is not elementwise",
                    other.name(),
                    node.name
                )));
            }
        };
        for o in &node.outputs {
            if !matches!(o.ty.dtype, DType::F32 | DType::Bool) {
                return Err(LowerError::Unsupported(format!(
                    "value '{}' has dtype {}; the JIT computes in f32 and bool",
                    o.name, o.ty.dtype
                )));
            }
        }
        let out = lir.new_value();
        value_of.insert(ValueRef::new(id, 0), out);
        lir.exprs.push(Expr::new(kind, &ins, Some(out)));
    }
    Ok(lir)
}
