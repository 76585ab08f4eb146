//! The graph: an arena of nodes connected by value references.

use std::fmt;

use crate::{Op, TensorType};

/// Index of a node in [`Graph::nodes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl NodeId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// One output of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueRef {
    pub node: NodeId,
    pub port: u32,
}

impl ValueRef {
    pub fn new(node: NodeId, port: u32) -> ValueRef {
        ValueRef { node, port }
    }
}

/// An output of a node: its value name (unique in the graph) and its type.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    pub name: String,
    pub ty: TensorType,
}

/// A node: an op, the values it reads, and the values it defines.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The node's name (ONNX node name, or its first output's name).
    pub name: String,
    pub op: Op,
    pub inputs: Vec<ValueRef>,
    pub outputs: Vec<Output>,
}

/// A dataflow graph.
///
/// Parameters and Results are nodes too; `inputs` and `outputs` give their order.
/// Nodes are kept in an arena: a node may refer to any other node, and
/// [`Graph::topo_order`] gives an evaluation order (or reports a cycle).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Graph {
    pub name: String,
    pub nodes: Vec<Node>,
    /// Parameter nodes, in input order.
    pub inputs: Vec<NodeId>,
    /// Result nodes, in output order.
    pub outputs: Vec<NodeId>,
}

impl Graph {
    pub fn new(name: impl Into<String>) -> Graph {
        Graph {
            name: name.into(),
            ..Graph::default()
        }
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.index()]
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[id.index()]
    }

    /// The ids of every node, in arena order.
    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        (0..self.nodes.len() as u32).map(NodeId)
    }

    /// The type of a value.
    pub fn value_type(&self, v: ValueRef) -> &TensorType {
        &self.node(v.node).outputs[v.port as usize].ty
    }

    /// The name of a value.
    pub fn value_name(&self, v: ValueRef) -> &str {
        &self.node(v.node).outputs[v.port as usize].name
    }

    /// Adds a node and returns its id; nothing is checked (see [`crate::verify`]).
    pub fn add_node(&mut self, node: Node) -> NodeId {
        let id = NodeId(self.nodes.len() as u32);
        self.nodes.push(node);
        id
    }

    /// Adds a graph input named `name` of type `ty`.
    pub fn add_input(&mut self, name: impl Into<String>, ty: TensorType) -> ValueRef {
        let name = name.into();
        let id = self.add_node(Node {
            name: name.clone(),
            op: Op::Parameter,
            inputs: vec![],
            outputs: vec![Output { name, ty }],
        });
        self.inputs.push(id);
        ValueRef::new(id, 0)
    }

    /// Adds a graph output named `name` that returns `value`.
    pub fn add_output(&mut self, name: impl Into<String>, value: ValueRef) -> NodeId {
        let ty = self.value_type(value).clone();
        let name = name.into();
        let id = self.add_node(Node {
            name: name.clone(),
            op: Op::Result,
            inputs: vec![value],
            outputs: vec![Output { name, ty }],
        });
        self.outputs.push(id);
        id
    }

    /// Adds a single-output node, inferring its output type; the value is named `name`.
    pub fn add_op(
        &mut self,
        name: impl Into<String>,
        op: Op,
        inputs: &[ValueRef],
    ) -> Result<ValueRef, crate::IrError> {
        let name = name.into();
        let ty =
            crate::infer::infer_op(self, &op, inputs).map_err(|reason| crate::IrError::Node {
                node: name.clone(),
                op: op.name().to_string(),
                reason,
            })?;
        let mut tys = ty.into_iter();
        let ty = tys.next().ok_or_else(|| crate::IrError::Node {
            node: name.clone(),
            op: op.name().to_string(),
            reason: "op has no outputs".into(),
        })?;
        let id = self.add_node(Node {
            name: name.clone(),
            op,
            inputs: inputs.to_vec(),
            outputs: vec![Output { name, ty }],
        });
        Ok(ValueRef::new(id, 0))
    }

    /// Nodes in an order where every node comes after the nodes it reads.
    ///
    /// Ties keep arena order, so the order is deterministic. Nodes not reachable from
    /// a Result are included too. Returns the name of a node on a cycle if there is one.
    pub fn topo_order(&self) -> Result<Vec<NodeId>, crate::IrError> {
        let n = self.nodes.len();
        let mut state = vec![0u8; n]; // 0 new, 1 on stack, 2 done
        let mut order = Vec::with_capacity(n);
        for root in 0..n {
            if state[root] != 0 {
                continue;
            }
            // Iterative DFS: (node, next input index).
            let mut stack = vec![(root, 0usize)];
            state[root] = 1;
            while let Some(&mut (v, ref mut next)) = stack.last_mut() {
                let node = &self.nodes[v];
                if *next < node.inputs.len() {
                    let u = node.inputs[*next].node.index();
                    *next += 1;
                    if u >= n {
                        return Err(crate::IrError::Node {
                            node: node.name.clone(),
                            op: node.op.name().into(),
                            reason: format!("input refers to missing node {u}"),
                        });
                    }
                    match state[u] {
                        0 => {
                            state[u] = 1;
                            stack.push((u, 0));
                        }
                        1 => {
                            return Err(crate::IrError::Cycle {
                                node: self.nodes[u].name.clone(),
                            });
                        }
                        _ => {}
                    }
                } else {
                    state[v] = 2;
                    order.push(NodeId(v as u32));
                    stack.pop();
                }
            }
        }
        Ok(order)
    }

    /// For every node, the (consumer node, input index) pairs that read its outputs.
    pub fn users(&self) -> Vec<Vec<(NodeId, usize)>> {
        let mut users = vec![Vec::new(); self.nodes.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            for (j, v) in node.inputs.iter().enumerate() {
                users[v.node.index()].push((NodeId(i as u32), j));
            }
        }
        users
    }

    /// Finds the value named `name`.
    pub fn find_value(&self, name: &str) -> Option<ValueRef> {
        self.nodes.iter().enumerate().find_map(|(i, n)| {
            if matches!(n.op, Op::Result) {
                return None;
            }
            n.outputs
                .iter()
                .position(|o| o.name == name)
                .map(|p| ValueRef::new(NodeId(i as u32), p as u32))
        })
    }

    /// Removes nodes that no Result depends on (Parameters are always kept),
    /// renumbering the rest in topological order.
    pub fn remove_dead(&mut self) -> Result<(), crate::IrError> {
        let order = self.topo_order()?;
        let mut live = vec![false; self.nodes.len()];
        for &p in &self.inputs {
            live[p.index()] = true;
        }
        let mut work: Vec<NodeId> = self.outputs.clone();
        while let Some(v) = work.pop() {
            if std::mem::replace(&mut live[v.index()], true) {
                continue;
            }
            work.extend(self.node(v).inputs.iter().map(|i| i.node));
        }
        for &o in &self.outputs {
            live[o.index()] = true;
        }
        let keep: Vec<NodeId> = order.into_iter().filter(|n| live[n.index()]).collect();
        let mut remap = vec![u32::MAX; self.nodes.len()];
        for (new, old) in keep.iter().enumerate() {
            remap[old.index()] = new as u32;
        }
        let mut old_nodes: Vec<Option<Node>> = std::mem::take(&mut self.nodes)
            .into_iter()
            .map(Some)
            .collect();
        for old in &keep {
            let mut node = old_nodes[old.index()].take().expect("each node kept once");
            for i in &mut node.inputs {
                i.node = NodeId(remap[i.node.index()]);
            }
            self.nodes.push(node);
        }
        for id in self.inputs.iter_mut().chain(self.outputs.iter_mut()) {
            *id = NodeId(remap[id.index()]);
        }
        Ok(())
    }
}
