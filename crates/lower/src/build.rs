//! Builds the data-flow linear IR from an elementwise subgraph body.

use std::collections::HashMap;

use snipjit_ir::{DType, Graph, Op, ValueRef};

use crate::LowerError;
use crate::lir::{Expr, ExprKind, Lir, PortInfo, RegRepr, register_repr};

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
        if register_repr(p.dtype).is_none() {
            return Err(LowerError::Unsupported(format!(
                "port '{}' has dtype {}; the JIT reads and writes f32, bf16, f16, i32, u8, i8 and bool",
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
            Op::Constant(t) => match (register_repr(t.dtype()), t.scalar_value()) {
                (Some(repr), Some(v)) => ExprKind::Scalar(scalar_bits(repr, v)),
                _ => {
                    return Err(LowerError::Unsupported(format!(
                        "constant '{}' is not a scalar of a JIT dtype; tensor constants must be subgraph inputs",
                        node.name
                    )));
                }
            },
            Op::Unary(_) | Op::Binary(_) | Op::Select => {
                // The emitters compute in f32 and bool lanes: an op on integer (or
                // bf16/f16) values would compute something else than the graph says.
                let types = node
                    .inputs
                    .iter()
                    .map(|&v| body.value_type(v).dtype)
                    .chain(node.outputs.iter().map(|o| o.ty.dtype));
                for d in types {
                    if !matches!(d, DType::F32 | DType::Bool) {
                        return Err(LowerError::Unsupported(format!(
                            "op {} at node '{}' reads or writes {d}; the JIT computes in f32 and bool",
                            node.op.name(),
                            node.name
                        )));
                    }
                }
                match &node.op {
                    Op::Unary(u) => ExprKind::Unary(*u),
                    Op::Binary(b) => ExprKind::Binary(*b),
                    _ => ExprKind::Select,
                }
            }
            Op::Convert { to } => ExprKind::Convert {
                from: body.value_type(node.inputs[0]).dtype,
                to: *to,
            },
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
        for d in node
            .inputs
            .iter()
            .map(|&v| body.value_type(v).dtype)
            .chain(node.outputs.iter().map(|o| o.ty.dtype))
        {
            if register_repr(d).is_none() {
                return Err(LowerError::Unsupported(format!(
                    "node '{}' reads or writes {d}, which the JIT holds in no register",
                    node.name
                )));
            }
        }
        let out = lir.new_value();
        value_of.insert(ValueRef::new(id, 0), out);
        lir.exprs.push(Expr::new(kind, &ins, Some(out)));
    }
    Ok(lir)
}

/// The lane bits of a scalar constant of value `v` in representation `repr`, carried as
/// the f32 with those bits (`Scalar` splats bits): f32 lanes hold the value, i32 lanes
/// the integer, mask lanes all ones for true.
fn scalar_bits(repr: RegRepr, v: f64) -> f32 {
    match repr {
        RegRepr::F32 => v as f32,
        RegRepr::I32 => f32::from_bits(v as i64 as i32 as u32),
        RegRepr::Mask => f32::from_bits(if v != 0.0 { u32::MAX } else { 0 }),
    }
}
