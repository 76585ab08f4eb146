//! The compiler and the compiled model.

use std::collections::HashMap;
use std::sync::Arc;

use snipjit_ir::{Dim, Graph, Tensor, TensorType};

use crate::error::name_list;
use crate::jit::Jit;
use crate::{Error, Options, Stats};

/// A named, typed graph input or output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueInfo {
    /// The value's name in the graph.
    pub name: String,
    /// Its declared type; dims may be dynamic.
    pub ty: TensorType,
}

/// Compiles graphs into [`CompiledModel`]s.
#[derive(Clone, Debug)]
pub struct Compiler {
    options: Options,
}

impl Compiler {
    /// A compiler with validated `options` (see [`Options::validate`]).
    pub fn new(options: Options) -> Result<Compiler, Error> {
        options.validate()?;
        // One-time process initialization of the code generator, so that compiling a
        // subgraph costs only its own lowering and emission.
        snipjit_x64::warm_up();
        Ok(Compiler { options })
    }

    /// The options this compiler was built with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Verifies `graph`, finds its fusable subgraphs and compiles a kernel for each
    /// (for the ISA of the options); what the JIT cannot take runs on the reference
    /// interpreter. [`CompiledModel::stats`] lists the subgraphs.
    pub fn compile(&self, graph: Graph) -> Result<CompiledModel, Error> {
        snipjit_ir::verify(&graph)?;
        let info = |ids: &[snipjit_ir::NodeId]| -> Vec<ValueInfo> {
            ids.iter()
                .map(|&id| {
                    let out = &graph.node(id).outputs[0];
                    ValueInfo {
                        name: out.name.clone(),
                        ty: out.ty.clone(),
                    }
                })
                .collect()
        };
        let inputs = info(&graph.inputs);
        let outputs = info(&graph.outputs);
        let jit = Arc::new(Jit::compile(&graph, &self.options)?);
        Ok(CompiledModel {
            graph,
            options: self.options.clone(),
            inputs,
            outputs,
            jit,
        })
    }
}

/// A model ready to run: immutable, shareable across threads (`Send + Sync`), and
/// valid for any input shapes its dynamic dims allow.
#[derive(Clone, Debug)]
pub struct CompiledModel {
    graph: Graph,
    options: Options,
    inputs: Vec<ValueInfo>,
    outputs: Vec<ValueInfo>,
    jit: Arc<Jit>,
}

// A compiled model is shared by every thread that runs it.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<CompiledModel>();
    assert_send_sync::<Compiler>();
};

impl CompiledModel {
    /// The model's inputs, in the order [`CompiledModel::run`] takes them.
    pub fn inputs(&self) -> &[ValueInfo] {
        &self.inputs
    }

    /// The model's outputs, in the order `run` returns them.
    pub fn outputs(&self) -> &[ValueInfo] {
        &self.outputs
    }

    /// The (verified) graph this model runs.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The options the model was compiled with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The graph as it runs: fused regions replaced by Subgraph nodes.
    pub fn fused_graph(&self) -> &Graph {
        &self.jit.graph
    }

    /// The ISA kernels are compiled for (`None`: everything runs on the interpreter).
    pub fn isa(&self) -> Option<snipjit_x64::Isa> {
        self.jit.isa
    }

    /// The compiled elementwise subgraphs (`Err` with the reason where a subgraph runs
    /// on the interpreter, and for attention subgraphs, which
    /// [`CompiledModel::mha_kernels`] lists), in topological order, with the Subgraph
    /// node each one runs.
    pub fn kernels(
        &self,
    ) -> Vec<(
        snipjit_ir::NodeId,
        Result<Arc<snipjit_runtime::JitSubgraph>, String>,
    )> {
        self.jit
            .fused
            .iter()
            .map(|f| {
                let k = match &f.jit {
                    Ok(crate::jit::SubKernel::Elementwise(k)) => Ok(k.clone()),
                    Ok(crate::jit::SubKernel::Mha(_)) => {
                        Err("an mha subgraph: see CompiledModel::mha_kernels".to_string())
                    }
                    Err(e) => Err(e.clone()),
                };
                (f.node, k)
            })
            .collect()
    }

    /// The compiled attention subgraphs, in topological order, with the Subgraph node
    /// each one runs (see [`snipjit_runtime::MhaKernel`]).
    pub fn mha_kernels(&self) -> Vec<(snipjit_ir::NodeId, Arc<snipjit_runtime::MhaKernel>)> {
        self.jit
            .fused
            .iter()
            .filter_map(|f| match &f.jit {
                Ok(crate::jit::SubKernel::Mha(k)) => Some((f.node, k.clone())),
                _ => None,
            })
            .collect()
    }

    /// The executor this model's kernels run on: the process-wide one for its thread
    /// count, shared by every model compiled with that count. Its
    /// [`snipjit_runtime::Executor::worker_cpu_time`] tells whether the workers took
    /// part in a run of calls.
    pub fn executor(&self) -> &snipjit_runtime::Executor {
        self.jit.executor()
    }

    /// Kernel calls so far that the interpreter ran instead, because the kernel could
    /// not take the call's shapes (for example a subgraph output smaller than the
    /// kernel's domain). The results are the interpreter's, so they are right; a
    /// non-zero count says where the JIT is leaving speed on the table.
    pub fn fallbacks(&self) -> usize {
        self.jit.fallbacks()
    }

    /// What compilation produced: the subgraphs found, whether each runs as a kernel,
    /// and how many kernels were compiled so far (one per subgraph and broadcast
    /// pattern, so new shapes of a seen pattern add none).
    pub fn stats(&self) -> Stats {
        Stats {
            subgraphs: self.jit.subgraph_stats(),
            compilations: self.jit.compilations(),
        }
    }

    /// Runs the model on `inputs`, given in [`CompiledModel::inputs`] order.
    ///
    /// Every input is checked first (count, dtype, rank, static dims, and that each
    /// symbolic dim has one size across all inputs); errors name the input.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, Error> {
        self.check_inputs(inputs)?;
        let refs: Vec<&Tensor> = inputs.iter().collect();
        self.jit.run(&refs)
    }

    /// Like [`CompiledModel::run`], writing the outputs into `outputs`: when the model
    /// is one compiled subgraph, output tensors that already have the right dtype and
    /// shape are overwritten in place, so a loop over same-shaped inputs allocates
    /// nothing (as OpenVINO's pre-bound outputs and onnxruntime's I/O binding do).
    /// Otherwise `outputs` is replaced by freshly computed tensors.
    pub fn run_into(&self, inputs: &[Tensor], outputs: &mut Vec<Tensor>) -> Result<(), Error> {
        self.check_inputs(inputs)?;
        let refs: Vec<&Tensor> = inputs.iter().collect();
        self.jit.run_into(&refs, outputs)
    }

    /// Runs the model on inputs given by name, in any order; outputs come in
    /// [`CompiledModel::outputs`] order.
    ///
    /// Unknown, duplicate and missing names are errors, reported in that order.
    pub fn run_named<S: AsRef<str>>(
        &self,
        inputs: impl IntoIterator<Item = (S, Tensor)>,
    ) -> Result<Vec<Tensor>, Error> {
        let mut slots: Vec<Option<Tensor>> = vec![None; self.inputs.len()];
        for (name, tensor) in inputs {
            let name = name.as_ref();
            let Some(i) = self.inputs.iter().position(|v| v.name == name) else {
                return Err(Error::UnknownInput {
                    name: name.to_string(),
                    known: name_list(self.inputs.iter().map(|i| i.name.as_str())),
                });
            };
            if slots[i].replace(tensor).is_some() {
                return Err(Error::DuplicateInput {
                    name: name.to_string(),
                });
            }
        }
        let mut ordered = Vec::with_capacity(slots.len());
        for (slot, info) in slots.into_iter().zip(&self.inputs) {
            match slot {
                Some(t) => ordered.push(t),
                None => {
                    return Err(Error::MissingInput {
                        name: info.name.clone(),
                        ty: Box::new(info.ty.clone()),
                    });
                }
            }
        }
        self.run(&ordered)
    }

    /// Checks the input count and each input against its declared type.
    fn check_inputs(&self, inputs: &[Tensor]) -> Result<(), Error> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::InputCount {
                expected: self.inputs.len(),
                got: inputs.len(),
                names: name_list(self.inputs.iter().map(|i| i.name.as_str())),
            });
        }
        // symbol -> (size, input that bound it)
        let mut bound: HashMap<&str, (usize, &str)> = HashMap::new();
        for (info, t) in self.inputs.iter().zip(inputs) {
            let name = info.name.as_str();
            let expected = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            if expected != Some(t.data.len()) {
                return Err(Error::MalformedTensor {
                    name: name.to_string(),
                    shape: t.shape.clone(),
                    expected: expected.unwrap_or(usize::MAX),
                    got: t.data.len(),
                });
            }
            if t.dtype() != info.ty.dtype {
                return Err(Error::InputDType {
                    name: name.to_string(),
                    expected: info.ty.dtype,
                    got: t.dtype(),
                });
            }
            let dims = info.ty.shape.dims();
            if dims.len() != t.shape.len() {
                return Err(Error::InputRank {
                    name: name.to_string(),
                    expected: Box::new(info.ty.shape.clone()),
                    got: t.shape.clone(),
                });
            }
            for (axis, (dim, &got)) in dims.iter().zip(&t.shape).enumerate() {
                match dim {
                    Dim::Static(n) if *n != got => {
                        return Err(Error::InputDim {
                            name: name.to_string(),
                            axis,
                            expected: *n,
                            got,
                            got_shape: t.shape.clone(),
                            expected_shape: Box::new(info.ty.shape.clone()),
                        });
                    }
                    Dim::Dynamic(Some(sym)) => match bound.get(sym.as_str()) {
                        Some(&(size, by)) if size != got => {
                            return Err(Error::SymbolMismatch {
                                name: name.to_string(),
                                axis,
                                symbol: sym.clone(),
                                got,
                                bound: size,
                                bound_by: by.to_string(),
                            });
                        }
                        Some(_) => {}
                        None => {
                            bound.insert(sym, (got, name));
                        }
                    },
                    _ => {}
                }
            }
        }
        Ok(())
    }
}
