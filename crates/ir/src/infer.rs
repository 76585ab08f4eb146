//! Shape and dtype inference for every op.

use smallvec::SmallVec;

use crate::shape::broadcast_shapes;
use crate::{DType, Dim, Graph, IrError, Op, Shape, TensorType, UnaryOp, ValueRef};

/// Normalizes a possibly negative axis against `rank`.
pub fn norm_axis(axis: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if (0..r).contains(&a) {
        Ok(a as usize)
    } else {
        Err(format!("axis {axis} out of range for rank {rank}"))
    }
}

fn float_input(ty: &TensorType, what: &str) -> Result<(), String> {
    if ty.dtype.is_float() {
        Ok(())
    } else {
        Err(format!("{what} needs a float input, got {}", ty.dtype))
    }
}

fn same_dtype(a: &TensorType, b: &TensorType) -> Result<(), String> {
    if a.dtype == b.dtype {
        Ok(())
    } else {
        Err(format!("input dtypes differ: {} and {}", a.dtype, b.dtype))
    }
}

fn broadcast(a: &Shape, b: &Shape) -> Result<Shape, String> {
    broadcast_shapes(a, b).ok_or_else(|| format!("shapes {a} and {b} do not broadcast"))
}

/// The values of a constant i64 input, if the input is a Constant node.
pub fn constant_ints(g: &Graph, v: ValueRef) -> Option<Vec<i64>> {
    match &g.node(v.node).op {
        Op::Constant(t) => Some(t.to_i64_vec()),
        _ => None,
    }
}

/// Infers the output types of `op` applied to `inputs` in `g`.
pub fn infer_op(g: &Graph, op: &Op, inputs: &[ValueRef]) -> Result<Vec<TensorType>, String> {
    if let Some(n) = op.arity()
        && n != inputs.len()
    {
        return Err(format!("expects {n} inputs, got {}", inputs.len()));
    }
    for v in inputs {
        let ok = g
            .nodes
            .get(v.node.index())
            .is_some_and(|n| (v.port as usize) < n.outputs.len());
        if !ok {
            return Err(format!("input refers to a missing value {v:?}"));
        }
    }
    let t: Vec<&TensorType> = inputs.iter().map(|&v| g.value_type(v)).collect();
    let one = |ty: TensorType| Ok(vec![ty]);
    match op {
        Op::Parameter => Err("a Parameter's type is declared, not inferred".into()),
        Op::Result | Op::Identity => one(t[0].clone()),
        Op::Constant(c) => one(c.ty()),
        Op::Binary(b) => {
            same_dtype(t[0], t[1])?;
            if b.is_logical() && t[0].dtype != DType::Bool {
                return Err(format!(
                    "{} needs bool inputs, got {}",
                    b.name(),
                    t[0].dtype
                ));
            }
            let shape = broadcast(&t[0].shape, &t[1].shape)?;
            one(TensorType::new(b.result_dtype(t[0].dtype), shape))
        }
        Op::Unary(u) => {
            match u {
                UnaryOp::Not => {
                    if t[0].dtype != DType::Bool {
                        return Err(format!("Not needs a bool input, got {}", t[0].dtype));
                    }
                }
                UnaryOp::Abs | UnaryOp::Neg | UnaryOp::Relu | UnaryOp::Sign => {
                    if t[0].dtype == DType::Bool {
                        return Err(format!("{} needs a numeric input", u.name()));
                    }
                }
                UnaryOp::Clamp { .. } => {
                    if t[0].dtype == DType::Bool {
                        return Err("Clamp needs a numeric input".into());
                    }
                }
                _ => float_input(t[0], u.name())?,
            }
            one(t[0].clone())
        }
        Op::Select => {
            if t[0].dtype != DType::Bool {
                return Err(format!("Select condition must be bool, got {}", t[0].dtype));
            }
            same_dtype(t[1], t[2])?;
            let s = broadcast(&t[0].shape, &t[1].shape)?;
            let s = broadcast(&s, &t[2].shape)?;
            one(TensorType::new(t[1].dtype, s))
        }
        Op::Convert { to } => one(TensorType::new(*to, t[0].shape.clone())),
        Op::Reduce {
            kind,
            axes,
            keep_dims,
        } => {
            let rank = t[0].shape.rank();
            let mut reduced = vec![axes.is_empty(); rank];
            for &a in axes {
                let a = norm_axis(a, rank)?;
                if std::mem::replace(&mut reduced[a], true) {
                    return Err(format!("axis {a} listed twice"));
                }
            }
            if t[0].dtype == DType::Bool {
                return Err(format!("{} needs a numeric input", kind.name()));
            }
            let dims = t[0]
                .shape
                .dims()
                .iter()
                .zip(&reduced)
                .filter_map(|(d, &r)| match (r, keep_dims) {
                    (false, _) => Some(d.clone()),
                    (true, true) => Some(Dim::Static(1)),
                    (true, false) => None,
                })
                .collect();
            one(TensorType::new(t[0].dtype, dims))
        }
        Op::Softmax { axis } => {
            float_input(t[0], "Softmax")?;
            norm_axis(*axis, t[0].shape.rank())?;
            one(t[0].clone())
        }
        Op::MatMul {
            transpose_a,
            transpose_b,
        } => {
            same_dtype(t[0], t[1])?;
            if t[0].dtype == DType::Bool {
                return Err("MatMul needs numeric inputs".into());
            }
            one(TensorType::new(
                t[0].dtype,
                matmul_shape(&t[0].shape, &t[1].shape, *transpose_a, *transpose_b)?,
            ))
        }
        Op::Transpose { perm } => {
            let rank = t[0].shape.rank();
            let mut seen = vec![false; rank];
            if perm.len() != rank {
                return Err(format!(
                    "perm {perm:?} has length {} for rank {rank}",
                    perm.len()
                ));
            }
            for &p in perm {
                if p >= rank || std::mem::replace(&mut seen[p], true) {
                    return Err(format!("perm {perm:?} is not a permutation of 0..{rank}"));
                }
            }
            let dims = perm.iter().map(|&p| t[0].shape.0[p].clone()).collect();
            one(TensorType::new(t[0].dtype, dims))
        }
        Op::Reshape { allow_zero } => {
            let len = shape_input_len(t[1])?;
            let shape = match constant_ints(g, inputs[1]) {
                Some(target) => reshape_shape(&t[0].shape, &target, *allow_zero)?,
                None => (0..len).map(|_| Dim::Dynamic(None)).collect(),
            };
            one(TensorType::new(t[0].dtype, shape))
        }
        Op::Broadcast => {
            let len = shape_input_len(t[1])?;
            let shape = match constant_ints(g, inputs[1]) {
                Some(target) => {
                    let mut dims = Shape::default();
                    for v in target {
                        if v < 0 {
                            return Err(format!("negative dim {v} in Broadcast shape"));
                        }
                        dims.0.push(Dim::Static(v as usize));
                    }
                    dims
                }
                None => (0..len).map(|_| Dim::Dynamic(None)).collect(),
            };
            one(TensorType::new(t[0].dtype, broadcast(&t[0].shape, &shape)?))
        }
        Op::Unsqueeze { axes } => {
            let out_rank = t[0].shape.rank() + axes.len();
            let mut is_new = vec![false; out_rank];
            for &a in axes {
                let a = norm_axis(a, out_rank)?;
                if std::mem::replace(&mut is_new[a], true) {
                    return Err(format!("axis {a} listed twice"));
                }
            }
            let mut src = t[0].shape.dims().iter();
            let dims = is_new
                .iter()
                .map(|&n| {
                    if n {
                        Dim::Static(1)
                    } else {
                        src.next().expect("counts match").clone()
                    }
                })
                .collect();
            one(TensorType::new(t[0].dtype, dims))
        }
        Op::Squeeze { axes } => {
            let rank = t[0].shape.rank();
            let mut drop = vec![false; rank];
            if axes.is_empty() {
                for (i, d) in t[0].shape.dims().iter().enumerate() {
                    drop[i] = d.is_one();
                }
            }
            for &a in axes {
                let a = norm_axis(a, rank)?;
                if matches!(t[0].shape.0[a], Dim::Static(n) if n != 1) {
                    return Err(format!(
                        "cannot squeeze axis {a} of size {}",
                        t[0].shape.0[a]
                    ));
                }
                drop[a] = true;
            }
            let dims = t[0]
                .shape
                .dims()
                .iter()
                .zip(&drop)
                .filter(|(_, d)| !**d)
                .map(|(d, _)| d.clone())
                .collect();
            one(TensorType::new(t[0].dtype, dims))
        }
        Op::Concat { axis } => {
            let first = t.first().ok_or("Concat needs at least one input")?;
            let rank = first.shape.rank();
            let a = norm_axis(*axis, rank)?;
            let mut dims = first.shape.clone();
            for x in &t[1..] {
                same_dtype(first, x)?;
                if x.shape.rank() != rank {
                    return Err(format!(
                        "Concat inputs differ in rank: {} and {}",
                        first.shape, x.shape
                    ));
                }
                for i in 0..rank {
                    if i == a {
                        dims.0[i] = match (&dims.0[i], &x.shape.0[i]) {
                            (Dim::Static(p), Dim::Static(q)) => {
                                Dim::Static(p.checked_add(*q).ok_or("Concat output dim overflows")?)
                            }
                            _ => Dim::Dynamic(None),
                        };
                    } else if let (Dim::Static(p), Dim::Static(q)) = (&dims.0[i], &x.shape.0[i])
                        && p != q
                    {
                        return Err(format!("Concat inputs differ at axis {i}: {p} and {q}"));
                    }
                }
            }
            one(TensorType::new(first.dtype, dims))
        }
        Op::ShapeOf => one(TensorType::new(
            DType::I64,
            Shape::fixed(&[t[0].shape.rank()]),
        )),
        Op::Gather { axis } => {
            let a = norm_axis(*axis, t[0].shape.rank())?;
            if !matches!(t[1].dtype, DType::I32 | DType::I64) {
                return Err(format!(
                    "Gather indices must be i32 or i64, got {}",
                    t[1].dtype
                ));
            }
            let d = t[0].shape.dims();
            let dims = d[..a]
                .iter()
                .chain(t[1].shape.dims())
                .chain(&d[a + 1..])
                .cloned()
                .collect();
            one(TensorType::new(t[0].dtype, dims))
        }
        Op::Subgraph(sg) => {
            let body = &sg.body;
            if body.inputs.len() != inputs.len() {
                return Err(format!(
                    "subgraph body has {} parameters, node has {} inputs",
                    body.inputs.len(),
                    inputs.len()
                ));
            }
            for (i, (&p, ty)) in body.inputs.iter().zip(&t).enumerate() {
                let pty = &body.node(p).outputs[0].ty;
                if pty.dtype != ty.dtype || pty.shape.rank() != ty.shape.rank() {
                    return Err(format!("subgraph input {i}: body expects {pty}, got {ty}"));
                }
            }
            Ok(body
                .outputs
                .iter()
                .map(|&r| body.node(r).outputs[0].ty.clone())
                .collect())
        }
    }
}

fn shape_input_len(t: &TensorType) -> Result<usize, String> {
    if t.dtype != DType::I64 || t.shape.rank() != 1 {
        return Err(format!("shape input must be i64[n], got {t}"));
    }
    t.shape.0[0]
        .as_static()
        .ok_or_else(|| "shape input must have a static length".to_string())
}

/// The output shape of a matmul (numpy semantics, with the transpose flags).
pub fn matmul_shape(a: &Shape, b: &Shape, ta: bool, tb: bool) -> Result<Shape, String> {
    if a.rank() == 0 || b.rank() == 0 {
        return Err("MatMul inputs must have rank >= 1".into());
    }
    let mut a = a.clone();
    let mut b = b.clone();
    let (a1, b1) = (a.rank() == 1, b.rank() == 1);
    if a1 {
        a.0.insert(0, Dim::Static(1));
    } else if ta {
        let r = a.rank();
        a.0.swap(r - 1, r - 2);
    }
    if b1 {
        b.0.push(Dim::Static(1));
    } else if tb {
        let r = b.rank();
        b.0.swap(r - 1, r - 2);
    }
    let (ra, rb) = (a.rank(), b.rank());
    let (m, k1) = (&a.0[ra - 2], &a.0[ra - 1]);
    let (k2, n) = (&b.0[rb - 2], &b.0[rb - 1]);
    if let (Dim::Static(x), Dim::Static(y)) = (k1, k2)
        && x != y
    {
        return Err(format!("MatMul inner dims differ: {x} and {y}"));
    }
    let batch_a: Shape = a.0[..ra - 2].iter().cloned().collect();
    let batch_b: Shape = b.0[..rb - 2].iter().cloned().collect();
    let mut out = broadcast(&batch_a, &batch_b)?;
    if !a1 {
        out.0.push(m.clone());
    }
    if !b1 {
        out.0.push(n.clone());
    }
    Ok(out)
}

/// The output shape of an ONNX Reshape of `input` to `target`.
pub fn reshape_shape(input: &Shape, target: &[i64], allow_zero: bool) -> Result<Shape, String> {
    let mut dims: SmallVec<[Dim; 6]> = SmallVec::new();
    let mut infer_at = None;
    for (i, &v) in target.iter().enumerate() {
        let d = match v {
            -1 => {
                if infer_at.replace(i).is_some() {
                    return Err("Reshape shape has more than one -1".into());
                }
                Dim::Static(1)
            }
            0 if !allow_zero => input.0.get(i).cloned().ok_or_else(|| {
                format!("Reshape copies dim {i} of a rank-{} input", input.rank())
            })?,
            v if v < 0 => return Err(format!("invalid dim {v} in Reshape shape")),
            v => Dim::Static(v as usize),
        };
        dims.push(d);
    }
    if let Some(at) = infer_at {
        let known: Option<usize> = dims
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != at)
            .try_fold(1usize, |a, (_, d)| a.checked_mul(d.as_static()?));
        dims[at] = match (input.static_numel(), known) {
            (Some(total), Some(k)) if k > 0 => {
                if total % k != 0 {
                    return Err(format!("cannot reshape {input} to {target:?}"));
                }
                Dim::Static(total / k)
            }
            _ => Dim::Dynamic(None),
        };
    } else if let (Some(total), Some(out)) =
        (input.static_numel(), Shape(dims.clone()).static_numel())
        && total != out
    {
        return Err(format!(
            "cannot reshape {input} ({total} elements) to {target:?}"
        ));
    }
    Ok(Shape(dims))
}

impl Graph {
    /// Recomputes the output types of every node but Parameters, in topological order.
    pub fn infer_types(&mut self) -> Result<(), IrError> {
        for id in self.topo_order()? {
            let node = self.node(id);
            if matches!(node.op, Op::Parameter) {
                continue;
            }
            let tys = infer_op(self, &node.op, &node.inputs).map_err(|reason| IrError::Node {
                node: node.name.clone(),
                op: node.op.name().to_string(),
                reason,
            })?;
            let node = self.node_mut(id);
            if tys.len() != node.outputs.len() {
                return Err(IrError::Node {
                    node: node.name.clone(),
                    op: node.op.name().to_string(),
                    reason: format!(
                        "op has {} outputs, node names {}",
                        tys.len(),
                        node.outputs.len()
                    ),
                });
            }
            for (o, ty) in node.outputs.iter_mut().zip(tys) {
                o.ty = ty;
            }
        }
        Ok(())
    }
}
