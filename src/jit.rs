//! The JIT path of a compiled model: the tokenized graph and a kernel per subgraph.
//!
//! Compilation tokenizes the graph, then gives every elementwise Subgraph node a
//! [`JitSubgraph`] (its kernel cache). A subgraph the JIT cannot take (a dtype or op
//! the emitters lack) keeps running on the interpreter and is reported with
//! `jit: false`. Every `mha` Subgraph node (an attention block the tokenizer
//! outlined, see `snipjit_tokenize::mha`) gets an [`MhaKernel`] (one fused JIT
//! kernel: brgemms and an online softmax, compiled once for every shape); a body
//! `analyze_mha` does not read keeps running on the interpreter. At run time the interpreter walks the host graph and
//! hands each compiled Subgraph node to its kernel; a model that is one subgraph
//! skips the walk. A kernel that cannot take a call leaves it to the interpreter
//! (counted in `fallbacks`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use snipjit_ir::{Graph, NodeId, Op, SubgraphKind, Tensor};
use snipjit_runtime::{Executor, JitSubgraph, MhaKernel, RuntimeError};
use snipjit_tokenize::{TokenizeConfig, tokenize};
use snipjit_x64::Isa;

use crate::{Error, IsaChoice, Options, SubgraphStats};

/// The compiled form of one Subgraph node.
#[derive(Clone, Debug)]
pub(crate) enum SubKernel {
    Elementwise(Arc<JitSubgraph>),
    Mha(Arc<MhaKernel>),
}

impl SubKernel {
    fn run(&self, inputs: &[&Tensor], exec: &Executor) -> Result<Vec<Tensor>, RuntimeError> {
        match self {
            SubKernel::Elementwise(k) => k.run(inputs, exec),
            SubKernel::Mha(k) => k.run(inputs, exec),
        }
    }

    fn run_into(
        &self,
        inputs: &[&Tensor],
        outputs: &mut Vec<Tensor>,
        exec: &Executor,
    ) -> Result<(), RuntimeError> {
        match self {
            SubKernel::Elementwise(k) => k.run_into(inputs, outputs, exec),
            SubKernel::Mha(k) => k.run_into(inputs, outputs, exec),
        }
    }

    fn compilations(&self) -> usize {
        match self {
            SubKernel::Elementwise(k) => k.compilations(),
            SubKernel::Mha(k) => k.compilations(),
        }
    }
}

/// One Subgraph node of the tokenized graph.
#[derive(Debug)]
pub(crate) struct FusedNode {
    pub node: NodeId,
    pub kind: SubgraphKind,
    pub nodes: usize,
    /// The compiled subgraph, or why the interpreter runs it.
    pub jit: Result<SubKernel, String>,
}

/// The JIT state of a compiled model.
#[derive(Debug)]
pub(crate) struct Jit {
    pub graph: Graph,
    pub isa: Option<Isa>,
    pub fused: Vec<FusedNode>,
    by_node: HashMap<NodeId, usize>,
    /// The process-wide executor of this thread count ([`shared_executor`]).
    exec: Arc<Executor>,
    /// Set when the whole model is one compiled subgraph: output `i` of the model is
    /// output `direct[i]` of that subgraph.
    direct: Option<(SubKernel, Vec<usize>)>,
    /// Kernel calls that fell back to the interpreter.
    fallbacks: AtomicUsize,
}

/// The ISA the options ask for; `None` when the JIT cannot run on this CPU.
pub(crate) fn pick_isa(choice: IsaChoice) -> Result<Option<Isa>, Error> {
    let need = |isa: Isa| {
        if isa.is_supported() {
            Ok(Some(isa))
        } else {
            Err(Error::Options(format!(
                "this CPU does not support {}",
                isa.name()
            )))
        }
    };
    match choice {
        IsaChoice::Auto => Ok(Isa::detect()),
        IsaChoice::Avx512 => need(Isa::Avx512),
        IsaChoice::Avx2 => need(Isa::Avx2),
    }
}

fn body_nodes(g: &Graph) -> usize {
    g.nodes
        .iter()
        .filter(|n| !matches!(n.op, Op::Parameter | Op::Result | Op::Constant(_)))
        .count()
}

/// The executor of `threads` threads shared by every model compiled in this process:
/// its worker threads are started by the first compile that asks for that count, not
/// by every compile (thread start-up and each worker's scratch cost a fresh compile
/// hundreds of microseconds), and idle workers park. Models run concurrently from
/// several threads share it: a call that finds the workers busy runs on its own thread
/// (see [`Executor::for_each_chunk`]).
fn shared_executor(threads: usize) -> Result<Arc<Executor>, Error> {
    static POOLS: std::sync::Mutex<Vec<(usize, Arc<Executor>)>> = std::sync::Mutex::new(Vec::new());
    let mut pools = POOLS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, e)) = pools.iter().find(|(t, _)| *t == threads) {
        return Ok(Arc::clone(e));
    }
    let exec = Arc::new(Executor::new(threads).map_err(|e| Error::Options(e.to_string()))?);
    pools.push((threads, Arc::clone(&exec)));
    Ok(exec)
}

impl Jit {
    /// Tokenizes `graph` and compiles its subgraphs for the options' ISA.
    pub fn compile(graph: &Graph, options: &Options) -> Result<Jit, Error> {
        let isa = pick_isa(options.isa)?;
        let exec = shared_executor(options.threads)?;
        let graph =
            tokenize(graph, &TokenizeConfig::default()).map_err(|e| Error::Jit(e.to_string()))?;
        let mut fused = vec![];
        for id in graph.topo_order()? {
            let Op::Subgraph(sg) = &graph.node(id).op else {
                continue;
            };
            let jit = match (sg.kind, isa) {
                (_, None) => Err("no AVX2 or AVX-512 on this CPU".to_string()),
                (SubgraphKind::Elementwise, Some(isa)) => JitSubgraph::new(sg.body.clone(), isa)
                    .map(|k| SubKernel::Elementwise(Arc::new(k)))
                    .map_err(|e| e.to_string()),
                (SubgraphKind::Mha, Some(isa)) => MhaKernel::from_body(&sg.body, isa)
                    .map(|k| SubKernel::Mha(Arc::new(k)))
                    .map_err(|e| e.to_string()),
                (k, Some(_)) => Err(format!("{} subgraphs have no kernel yet", k.name())),
            };
            fused.push(FusedNode {
                node: id,
                kind: sg.kind,
                nodes: body_nodes(&sg.body),
                jit,
            });
        }
        let by_node = fused.iter().enumerate().map(|(i, f)| (f.node, i)).collect();
        let direct = direct_plan(&graph, &fused);
        Ok(Jit {
            graph,
            isa,
            fused,
            by_node,
            exec,
            direct,
            fallbacks: AtomicUsize::new(0),
        })
    }

    /// The per-subgraph statistics, in topological order.
    pub fn subgraph_stats(&self) -> Vec<SubgraphStats> {
        self.fused
            .iter()
            .map(|f| SubgraphStats {
                kind: f.kind.name().to_string(),
                nodes: f.nodes,
                jit: f.jit.is_ok(),
            })
            .collect()
    }

    /// Kernels compiled so far (one per subgraph and broadcast pattern).
    pub fn compilations(&self) -> usize {
        self.fused
            .iter()
            .filter_map(|f| f.jit.as_ref().ok())
            .map(|k| k.compilations())
            .sum()
    }

    /// Runs the model on checked inputs, writing into `outputs` (reused in place where
    /// the shapes match, when the model is one compiled subgraph).
    pub fn run_into(&self, inputs: &[&Tensor], outputs: &mut Vec<Tensor>) -> Result<(), Error> {
        match &self.direct {
            Some((sg, map)) if map.iter().enumerate().all(|(i, &m)| i == m) => {
                if sg.run_into(inputs, outputs, &self.exec).is_err() {
                    self.fallbacks.fetch_add(1, Ordering::Relaxed);
                    *outputs = self.interpret(inputs)?;
                }
                Ok(())
            }
            _ => {
                *outputs = self.run(inputs)?;
                Ok(())
            }
        }
    }

    /// Runs the model on checked inputs.
    pub fn run(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>, Error> {
        if let Some((sg, map)) = &self.direct {
            match sg.run(inputs, &self.exec) {
                Ok(outs) => {
                    let mut outs: Vec<Option<Tensor>> = outs.into_iter().map(Some).collect();
                    return map
                        .iter()
                        .map(|&i| {
                            outs[i].take().ok_or_else(|| {
                                Error::Jit("a subgraph output feeds two model outputs".into())
                            })
                        })
                        .collect();
                }
                Err(_) => {
                    self.fallbacks.fetch_add(1, Ordering::Relaxed);
                    return self.interpret(inputs);
                }
            }
        }
        self.interpret(inputs)
    }

    /// Walks the host graph on the interpreter, handing compiled Subgraph nodes to
    /// their kernels. A kernel that cannot take a call (shapes outside what it
    /// supports, e.g. a subgraph output smaller than the domain) leaves that call to
    /// the interpreter, which is the reference: the result is the same, only slower.
    fn interpret(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>, Error> {
        let hook = |id: NodeId, args: &[&Tensor]| {
            let f = &self.fused[*self.by_node.get(&id)?];
            let k = f.jit.as_ref().ok()?;
            match k.run(args, &self.exec) {
                Ok(outs) => Some(Ok(outs)),
                Err(_) => {
                    self.fallbacks.fetch_add(1, Ordering::Relaxed);
                    None
                }
            }
        };
        snipjit_interp::run_with(&self.graph, inputs, &hook).map_err(|e| Error::Interp(Box::new(e)))
    }

    /// The executor the model's kernels run on (shared by every model of this
    /// thread count in the process).
    pub fn executor(&self) -> &Executor {
        &self.exec
    }

    /// Kernel calls the interpreter took over (see [`Jit::interpret`]).
    pub fn fallbacks(&self) -> usize {
        self.fallbacks.load(Ordering::Relaxed)
    }
}

/// The fast path: the graph is its Parameters, one compiled Subgraph reading them in
/// order, and Results each reading a distinct output of it.
fn direct_plan(g: &Graph, fused: &[FusedNode]) -> Option<(SubKernel, Vec<usize>)> {
    let [f] = fused else { return None };
    let k = f.jit.as_ref().ok()?;
    if g.nodes.len() != g.inputs.len() + 1 + g.outputs.len() {
        return None;
    }
    let node = g.node(f.node);
    let reads_params_in_order = node.inputs.len() == g.inputs.len()
        && node
            .inputs
            .iter()
            .zip(&g.inputs)
            .all(|(v, &p)| v.node == p && v.port == 0);
    if !reads_params_in_order {
        return None;
    }
    let mut map = vec![];
    for &r in &g.outputs {
        let v = *g.node(r).inputs.first()?;
        if v.node != f.node || map.contains(&(v.port as usize)) {
            return None;
        }
        map.push(v.port as usize);
    }
    Some((k.clone(), map))
}
