//! A fused subgraph with its kernel cache.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use snipjit_ir::{DType, Graph, Tensor, TensorData};
use snipjit_lower::Lir;
use snipjit_x64::abi::KernelFn;
use snipjit_x64::{Isa, Kernel};

use crate::config::configure;
use crate::{Executor, RuntimeError};

/// A compiled kernel with what the executor needs to call it.
#[derive(Debug)]
pub struct CompiledKernel {
    pub kernel: Kernel,
    pub(crate) entry: KernelFn,
    pub lanes: usize,
    /// Bytes of per-thread scratchpad (spilled values).
    pub scratch_bytes: usize,
    /// The final linear IR (for dumps).
    pub lir: Lir,
    /// Microseconds spent lowering and emitting.
    pub compile_us: f64,
}

/// Lowers and emits the kernel of an elementwise `body` for one broadcast pattern.
pub fn compile_kernel(
    body: &Graph,
    bcast_inner: &[bool],
    isa: Isa,
    after_pass: &mut dyn FnMut(&str, &Lir),
) -> Result<CompiledKernel, RuntimeError> {
    let t0 = Instant::now();
    let target = snipjit_x64::codegen::target(isa);
    let lir = snipjit_lower::lower(body, bcast_inner, &target, after_pass)?;
    let kernel = snipjit_x64::codegen::emit_elementwise(&lir, isa)?;
    // SAFETY: the entry point is the start of code emitted for the `KernelFn` ABI
    // (snipjit_x64::abi), and lives as long as `kernel`, which the struct owns.
    let entry: KernelFn = unsafe { std::mem::transmute::<*const u8, KernelFn>(kernel.entry_ptr()) };
    Ok(CompiledKernel {
        entry,
        lanes: isa.lanes(),
        scratch_bytes: lir.spill_slots as usize * isa.vec_bytes(),
        lir,
        kernel,
        compile_us: t0.elapsed().as_secs_f64() * 1e6,
    })
}

/// The broadcast pattern the declared shapes of `body` predict: an input is broadcast
/// along the inner dim if its last dim is statically 1 (or it is a scalar) while the
/// first output's last dim is not. Shapes that turn out otherwise at run time compile
/// their own kernel on first use.
pub fn predicted_pattern(body: &Graph) -> Vec<bool> {
    let out_last = body
        .outputs
        .first()
        .and_then(|&r| body.node(r).outputs[0].ty.shape.dims().last().cloned());
    let out_is_one = out_last.as_ref().is_none_or(|d| d.is_one());
    body.inputs
        .iter()
        .map(|&p| {
            let last = body.node(p).outputs[0].ty.shape.dims().last().cloned();
            !out_is_one && last.is_none_or(|d| d.is_one())
        })
        .collect()
}

/// One elementwise subgraph compiled for one ISA: a kernel per broadcast pattern,
/// compiled on first use and shared by every shape with that pattern.
#[derive(Debug)]
pub struct JitSubgraph {
    body: Graph,
    isa: Isa,
    kernels: Mutex<HashMap<Vec<bool>, Arc<CompiledKernel>>>,
    compilations: AtomicUsize,
}

impl JitSubgraph {
    /// Checks that the body can be lowered by compiling the kernel for the broadcast
    /// pattern its declared shapes predict (see [`predicted_pattern`]).
    pub fn new(body: Graph, isa: Isa) -> Result<JitSubgraph, RuntimeError> {
        if !isa.is_supported() {
            return Err(snipjit_x64::X64Error::IsaUnsupported { isa }.into());
        }
        let sg = JitSubgraph {
            body,
            isa,
            kernels: Mutex::new(HashMap::new()),
            compilations: AtomicUsize::new(0),
        };
        sg.kernel(&predicted_pattern(&sg.body))?;
        Ok(sg)
    }

    pub fn body(&self) -> &Graph {
        &self.body
    }

    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Kernels compiled so far.
    pub fn compilations(&self) -> usize {
        self.compilations.load(Ordering::Relaxed)
    }

    /// Every compiled kernel, by broadcast pattern (sorted).
    pub fn kernels(&self) -> Vec<(Vec<bool>, Arc<CompiledKernel>)> {
        let map = self.kernels.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The kernel for a broadcast pattern, compiling it on first use.
    pub fn kernel(&self, pattern: &[bool]) -> Result<Arc<CompiledKernel>, RuntimeError> {
        let mut map = self.kernels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = map.get(pattern) {
            return Ok(k.clone());
        }
        let k = Arc::new(compile_kernel(
            &self.body,
            pattern,
            self.isa,
            &mut |_, _| {},
        )?);
        self.compilations.fetch_add(1, Ordering::Relaxed);
        map.insert(pattern.to_vec(), k.clone());
        Ok(k)
    }

    /// Runs the subgraph on concrete inputs (f32, shapes matching the body's
    /// parameters); returns the outputs.
    pub fn run(&self, inputs: &[&Tensor], exec: &Executor) -> Result<Vec<Tensor>, RuntimeError> {
        let mut outs = vec![];
        self.run_into(inputs, &mut outs, exec)?;
        Ok(outs)
    }

    /// Like [`JitSubgraph::run`], writing into `outputs`: a tensor that already has the
    /// output's dtype and shape is overwritten in place (no allocation); anything else
    /// (including a missing entry) is replaced by a new tensor.
    pub fn run_into(
        &self,
        inputs: &[&Tensor],
        outputs: &mut Vec<Tensor>,
        exec: &Executor,
    ) -> Result<(), RuntimeError> {
        let body = &self.body;
        if inputs.len() != body.inputs.len() {
            return Err(RuntimeError::Shape(format!(
                "subgraph takes {} inputs, got {}",
                body.inputs.len(),
                inputs.len()
            )));
        }
        let mut ins = Vec::with_capacity(inputs.len());
        let mut in_shapes: Vec<&[usize]> = Vec::with_capacity(inputs.len());
        let mut full: Vec<usize> = vec![];
        for (i, (t, &p)) in inputs.iter().zip(&body.inputs).enumerate() {
            let decl = &body.node(p).outputs[0];
            let err = |reason: String| RuntimeError::Input {
                index: i,
                name: decl.name.clone(),
                reason,
            };
            let data = t
                .as_f32()
                .ok_or_else(|| err(format!("dtype {} where f32 is expected", t.dtype())))?;
            if !decl.ty.shape.matches(&t.shape) || data.len() != t.shape.iter().product::<usize>() {
                return Err(err(format!(
                    "shape {:?} does not match {}",
                    t.shape, decl.ty.shape
                )));
            }
            full = snipjit_ir::broadcast_concrete(&full, &t.shape).ok_or_else(|| {
                err(format!(
                    "shape {:?} does not broadcast with {full:?}",
                    t.shape
                ))
            })?;
            ins.push(data.as_ptr());
            in_shapes.push(&t.shape);
        }
        // Every output has the full shape.
        for &r in &body.outputs {
            let ty = &body.node(r).outputs[0].ty;
            if ty.dtype != DType::F32 || !ty.shape.matches(&full) {
                return Err(RuntimeError::Shape(format!(
                    "output '{}' of type {ty} cannot take the domain shape {full:?}",
                    body.node(r).name
                )));
            }
        }
        let out_shapes: Vec<&[usize]> = body.outputs.iter().map(|_| full.as_slice()).collect();
        let domain = configure(&in_shapes, &out_shapes)?;
        let numel = domain.numel();
        outputs.truncate(body.outputs.len());
        for k in 0..body.outputs.len() {
            let reusable = outputs.get(k).is_some_and(|t| {
                t.shape == full && matches!(&t.data, TensorData::F32(v) if v.len() == numel)
            });
            if !reusable {
                let t = Tensor {
                    shape: full.clone(),
                    data: TensorData::F32(vec![0f32; numel]),
                };
                if k < outputs.len() {
                    outputs[k] = t;
                } else {
                    outputs.push(t);
                }
            }
        }
        if numel > 0 {
            let k = self.kernel(&domain.bcast_inner)?;
            let out_ptrs: Vec<*mut f32> = outputs
                .iter_mut()
                .map(|o| match &mut o.data {
                    TensorData::F32(v) => v.as_mut_ptr(),
                    _ => unreachable!("outputs were made f32 above"),
                })
                .collect();
            // SAFETY: inputs were checked to hold their shapes' elements and to
            // broadcast to the domain, so every stride stays inside its buffer; outputs
            // hold the domain's element count, are distinct allocations, and cannot
            // alias the inputs (`&mut` against `&`).
            unsafe { exec.run(&k, &domain, &ins, &out_ptrs) };
        }
        Ok(())
    }
}
