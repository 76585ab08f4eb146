//! Graph evaluation and the one-op entry point.

use std::borrow::Cow;
use std::collections::HashMap;

use snipjit_ir::{Dim, Graph, NodeId, Op, Tensor, TensorType};

use crate::{InputError, InterpError, OpError, elementwise, index, layout, matmul, reduce};

/// Evaluates `graph` on `inputs` (in `graph.inputs` order) and returns the values of
/// `graph.outputs`, in order.
///
/// Each input must have its Parameter's dtype, rank and static dims, and dynamic dims
/// with the same symbol must have the same size across all inputs. Only the nodes some
/// Result depends on are evaluated, in [`Graph::topo_order`]; a value is dropped once
/// its last reader has run. Every computed value is checked against the type the graph
/// declares for it, so a run-time shape fault names the node where it happens.
pub fn run(graph: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>, InterpError> {
    let refs: Vec<&Tensor> = inputs.iter().collect();
    run_refs(graph, &refs, None)
}

/// Runs a top-level Subgraph node some other way (a compiled kernel): given the node
/// and its input values, returns its outputs, or `None` to let the interpreter run the
/// body. An `Err` becomes [`OpError::Hook`] naming the node.
pub type SubgraphHook<'h> = &'h dyn Fn(NodeId, &[&Tensor]) -> Option<Result<Vec<Tensor>, String>>;

/// [`run`], with top-level Subgraph nodes offered to `hook` first. Everything the
/// hook returns is checked against the node's declared types like any other value.
pub fn run_with(
    graph: &Graph,
    inputs: &[&Tensor],
    hook: SubgraphHook<'_>,
) -> Result<Vec<Tensor>, InterpError> {
    run_refs(graph, inputs, Some(hook))
}

/// Evaluates one op on concrete tensors. Reshape and Broadcast take their `i64` shape
/// tensor as the second input; a Subgraph runs its body on the inputs.
pub fn eval_op(op: &Op, inputs: &[&Tensor]) -> Result<Vec<Tensor>, InterpError> {
    match op {
        Op::Subgraph(sg) => run_refs(&sg.body, inputs, None).map_err(|e| InterpError::Subgraph {
            node: None,
            error: Box::new(e),
        }),
        _ => eval_simple(op, inputs)
            .map(|t| vec![t])
            .map_err(|reason| InterpError::Op {
                node: None,
                op: op.name(),
                reason,
            }),
    }
}

/// Every op but Subgraph: one output.
fn eval_simple(op: &Op, x: &[&Tensor]) -> Result<Tensor, OpError> {
    if let Some(n) = op.arity()
        && n != x.len()
    {
        return Err(OpError::Arity {
            expected: n,
            got: x.len(),
        });
    }
    for t in x {
        index::check_tensor(t)?;
    }
    match op {
        Op::Parameter => Err(OpError::Unsupported(
            "a Parameter has a value only inside a graph run".into(),
        )),
        Op::Result | Op::Identity => Ok(x[0].clone()),
        Op::Constant(t) => Ok(t.clone()),
        Op::Binary(b) => elementwise::binary(*b, x[0], x[1]),
        Op::Unary(u) => elementwise::unary(*u, x[0]),
        Op::Select => elementwise::select(x[0], x[1], x[2]),
        Op::Convert { to } => elementwise::convert(x[0], *to),
        Op::Reduce {
            kind,
            axes,
            keep_dims,
        } => reduce::reduce(*kind, axes, *keep_dims, x[0]),
        Op::Softmax { axis } => reduce::softmax(*axis, x[0]),
        Op::MatMul {
            transpose_a,
            transpose_b,
        } => matmul::matmul(x[0], x[1], *transpose_a, *transpose_b),
        Op::Transpose { perm } => layout::transpose(x[0], perm),
        Op::Reshape { allow_zero } => layout::reshape(x[0], x[1], *allow_zero),
        Op::Broadcast => layout::broadcast(x[0], x[1]),
        Op::Unsqueeze { axes } => layout::unsqueeze(x[0], axes),
        Op::Squeeze { axes } => layout::squeeze(x[0], axes),
        Op::Concat { axis } => layout::concat(x, *axis),
        Op::ShapeOf => layout::shape_of(x[0]),
        Op::Gather { axis } => layout::gather(x[0], x[1], *axis),
        Op::Subgraph(_) => unreachable!("eval_simple is not called for Subgraph"),
    }
}

/// Binds each symbol to its size, remembering which input bound it.
type Bindings = HashMap<String, (usize, String)>;

fn check_inputs(graph: &Graph, inputs: &[&Tensor]) -> Result<Bindings, InterpError> {
    if inputs.len() != graph.inputs.len() {
        return Err(InterpError::InputCount {
            graph: graph.name.clone(),
            expected: graph.inputs.len(),
            got: inputs.len(),
        });
    }
    let mut bindings = Bindings::new();
    for (index, (&id, t)) in graph.inputs.iter().zip(inputs).enumerate() {
        let node = graph
            .nodes
            .get(id.index())
            .filter(|nd| matches!(nd.op, Op::Parameter))
            .ok_or_else(|| InterpError::Graph {
                graph: graph.name.clone(),
                error: snipjit_ir::IrError::Graph(format!("graph input {id} is not a Parameter")),
            })?;
        let fail = |reason| InterpError::Input {
            graph: graph.name.clone(),
            index,
            name: node.name.clone(),
            reason: Box::new(reason),
        };
        let Some(out) = node.outputs.first() else {
            return Err(InterpError::Graph {
                graph: graph.name.clone(),
                error: snipjit_ir::IrError::Graph(format!(
                    "graph input '{}' has no output",
                    node.name
                )),
            });
        };
        let ty = &out.ty;
        if t.dtype() != ty.dtype {
            return Err(fail(InputError::DType {
                expected: ty.dtype,
                got: t.dtype(),
            }));
        }
        if t.shape.len() != ty.shape.rank() {
            return Err(fail(InputError::Rank {
                expected: ty.shape.rank(),
                got: t.shape.len(),
            }));
        }
        for (dim, (d, &got)) in ty.shape.dims().iter().zip(&t.shape).enumerate() {
            match d {
                Dim::Static(expected) if *expected != got => {
                    return Err(fail(InputError::StaticDim {
                        dim,
                        expected: *expected,
                        got,
                    }));
                }
                Dim::Dynamic(Some(symbol)) => match bindings.get(symbol) {
                    Some((bound, bound_by)) if *bound != got => {
                        return Err(fail(InputError::Symbol {
                            dim,
                            symbol: symbol.clone(),
                            got,
                            bound: *bound,
                            bound_by: bound_by.clone(),
                        }));
                    }
                    Some(_) => {}
                    None => {
                        bindings.insert(symbol.clone(), (got, node.name.clone()));
                    }
                },
                _ => {}
            }
        }
    }
    Ok(bindings)
}

/// Checks a computed value against its declared type: dtype, rank, static dims, and
/// dims whose symbol an input bound.
fn check_output(
    port: usize,
    declared: &TensorType,
    t: &Tensor,
    bindings: &Bindings,
) -> Result<(), OpError> {
    let ok = t.dtype() == declared.dtype
        && declared.shape.matches(&t.shape)
        && declared
            .shape
            .dims()
            .iter()
            .zip(&t.shape)
            .all(|(d, &got)| match d {
                Dim::Dynamic(Some(s)) => bindings.get(s).is_none_or(|(n, _)| *n == got),
                _ => true,
            });
    if ok {
        Ok(())
    } else {
        Err(OpError::OutputType {
            port,
            declared: Box::new(declared.clone()),
            dtype: t.dtype(),
            shape: t.shape.clone(),
        })
    }
}

fn run_refs<'a>(
    graph: &'a Graph,
    inputs: &[&'a Tensor],
    hook: Option<SubgraphHook<'_>>,
) -> Result<Vec<Tensor>, InterpError> {
    let bindings = check_inputs(graph, inputs)?;
    let graph_err = |error| InterpError::Graph {
        graph: graph.name.clone(),
        error,
    };
    let order = graph.topo_order().map_err(graph_err)?;
    let n = graph.nodes.len();
    for &id in graph.outputs.iter() {
        if graph
            .nodes
            .get(id.index())
            .is_none_or(|nd| nd.outputs.is_empty())
        {
            return Err(graph_err(snipjit_ir::IrError::Graph(format!(
                "graph output {id} is not a node with a value"
            ))));
        }
    }

    // Only what the Results need; `uses` counts the remaining reads of each value
    // (a Result's own value is read once per appearance in `graph.outputs`).
    let mut needed = vec![false; n];
    let mut work: Vec<NodeId> = graph.outputs.clone();
    while let Some(id) = work.pop() {
        if !std::mem::replace(&mut needed[id.index()], true) {
            work.extend(graph.node(id).inputs.iter().map(|v| v.node));
        }
    }
    let mut uses: Vec<Vec<usize>> = graph
        .nodes
        .iter()
        .map(|nd| vec![0; nd.outputs.len()])
        .collect();
    for (i, node) in graph.nodes.iter().enumerate() {
        if !needed[i] {
            continue;
        }
        for v in &node.inputs {
            let count = uses[v.node.index()]
                .get_mut(v.port as usize)
                .ok_or_else(|| InterpError::Op {
                    node: Some(node.name.clone()),
                    op: node.op.name(),
                    reason: OpError::Unsupported(format!(
                        "input reads port {} of '{}', which has {} outputs",
                        v.port,
                        graph.node(v.node).name,
                        graph.node(v.node).outputs.len()
                    )),
                })?;
            *count += 1;
        }
    }
    for &id in &graph.outputs {
        if let Some(count) = uses[id.index()].first_mut() {
            *count += 1;
        }
    }
    let position: HashMap<NodeId, usize> = graph
        .inputs
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, i))
        .collect();

    let mut values: Vec<Vec<Option<Cow<'a, Tensor>>>> = graph
        .nodes
        .iter()
        .map(|nd| vec![None; nd.outputs.len()])
        .collect();
    for id in order {
        if !needed[id.index()] {
            continue;
        }
        let node = graph.node(id);
        let op_err = |reason| InterpError::Op {
            node: Some(node.name.clone()),
            op: node.op.name(),
            reason,
        };
        let outs: Vec<Cow<'a, Tensor>> = match &node.op {
            Op::Parameter => {
                let &i = position.get(&id).ok_or_else(|| {
                    op_err(OpError::Unsupported(
                        "Parameter is not listed in the graph's inputs".into(),
                    ))
                })?;
                vec![Cow::Borrowed(inputs[i])]
            }
            Op::Constant(t) => vec![Cow::Borrowed(t)],
            // Pass the value through: moved if this is its last reader.
            Op::Result | Op::Identity if node.inputs.len() == 1 => {
                let v = node.inputs[0];
                let (slot, count) = (
                    &mut values[v.node.index()][v.port as usize],
                    uses[v.node.index()][v.port as usize],
                );
                let value = if count == 1 {
                    slot.take()
                } else {
                    slot.clone()
                };
                vec![value.expect("inputs are evaluated before their readers")]
            }
            op => {
                let args: Vec<&Tensor> = node
                    .inputs
                    .iter()
                    .map(|v| {
                        values[v.node.index()][v.port as usize]
                            .as_deref()
                            .expect("inputs are evaluated before their readers")
                    })
                    .collect();
                let hooked = match (op, hook) {
                    (Op::Subgraph(_), Some(h)) => h(id, &args),
                    _ => None,
                };
                match op {
                    _ if hooked.is_some() => hooked
                        .expect("checked")
                        .map_err(|e| op_err(OpError::Hook(e)))?
                        .into_iter()
                        .map(Cow::Owned)
                        .collect(),
                    Op::Subgraph(sg) => run_refs(&sg.body, &args, None)
                        .map_err(|e| InterpError::Subgraph {
                            node: Some(node.name.clone()),
                            error: Box::new(e),
                        })?
                        .into_iter()
                        .map(Cow::Owned)
                        .collect(),
                    _ => vec![Cow::Owned(eval_simple(op, &args).map_err(op_err)?)],
                }
            }
        };
        if outs.len() != node.outputs.len() {
            return Err(op_err(OpError::Unsupported(format!(
                "op produced {} outputs, node declares {}",
                outs.len(),
                node.outputs.len()
            ))));
        }
        for (port, (t, o)) in outs.iter().zip(&node.outputs).enumerate() {
            check_output(port, &o.ty, t, &bindings).map_err(op_err)?;
        }
        for v in &node.inputs {
            let count = &mut uses[v.node.index()][v.port as usize];
            *count -= 1;
            if *count == 0 {
                values[v.node.index()][v.port as usize] = None;
            }
        }
        for (port, t) in outs.into_iter().enumerate() {
            if uses[id.index()][port] > 0 {
                values[id.index()][port] = Some(t);
            }
        }
    }

    graph
        .outputs
        .iter()
        .map(|&id| {
            let count = &mut uses[id.index()][0];
            *count -= 1;
            let slot = &mut values[id.index()][0];
            let value = if *count == 0 {
                slot.take()
            } else {
                slot.clone()
            };
            Ok(value.expect("every Result was evaluated").into_owned())
        })
        .collect()
}
