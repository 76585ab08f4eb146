//! A fused subgraph with its kernel cache.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use smallvec::SmallVec;

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
    /// Element size in bytes of every port (inputs, then outputs).
    pub port_sizes: Vec<usize>,
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
        port_sizes: lir
            .inputs
            .iter()
            .chain(&lir.outputs)
            .map(|p| p.dtype.size())
            .collect(),
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
    /// The configuration of the last call's shapes.
    last: Mutex<Option<Arc<Prepared>>>,
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
            last: Mutex::new(None),
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

    /// Runs the subgraph on concrete inputs (dtypes and shapes matching the body's
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
        let mut ins: SmallVec<[*const u8; 8]> = SmallVec::new();
        for (i, (t, &p)) in inputs.iter().zip(&body.inputs).enumerate() {
            let decl = &body.node(p).outputs[0];
            let err = |reason: String| RuntimeError::Input {
                index: i,
                name: decl.name.clone(),
                reason,
            };
            if t.dtype() != decl.ty.dtype {
                return Err(err(format!(
                    "dtype {} where {} is expected",
                    t.dtype(),
                    decl.ty.dtype
                )));
            }
            let numel = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            if !decl.ty.shape.matches(&t.shape) || numel != Some(t.data.len()) {
                return Err(err(format!(
                    "shape {:?} does not match {}",
                    t.shape, decl.ty.shape
                )));
            }
            ins.push(
                data_ptr(&t.data)
                    .ok_or_else(|| err(format!("dtype {} is not read by the JIT", t.dtype())))?,
            );
        }
        let prep = self.prepare(inputs)?;
        let numel = prep.domain.numel();
        outputs.truncate(body.outputs.len());
        let mut fresh: SmallVec<[usize; 4]> = SmallVec::new();
        for (k, &r) in body.outputs.iter().enumerate() {
            let dtype = body.node(r).outputs[0].ty.dtype;
            let reusable = outputs.get(k).is_some_and(|t| {
                t.shape == prep.full && t.dtype() == dtype && t.data.len() == numel
            });
            if !reusable {
                let data = new_output(dtype, numel).map_err(|reason| {
                    RuntimeError::Shape(format!("output {k} ({dtype}[{numel}]): {reason}"))
                })?;
                let t = Tensor {
                    shape: prep.full.clone(),
                    data,
                };
                if k < outputs.len() {
                    outputs[k] = t;
                } else {
                    outputs.push(t);
                }
                fresh.push(k);
            }
        }
        let out_ptrs: SmallVec<[*mut u8; 4]> = outputs
            .iter_mut()
            .map(|o| data_ptr_mut(&mut o.data).expect("outputs were made of JIT dtypes above"))
            .collect();
        if numel > 0 {
            // SAFETY: inputs were checked to have their declared dtypes (whose element
            // sizes the kernel was compiled for), to hold their shapes' elements and to
            // broadcast to the domain (in `prepare`), so every stride stays inside its
            // buffer; outputs have capacity for the domain's element count of their
            // dtype, are distinct allocations, and cannot alias the inputs (`&mut`
            // against `&`).
            unsafe { exec.run(&prep.kernel, &prep.domain, &prep.rt, &ins, &out_ptrs) };
        }
        for k in fresh {
            // SAFETY: the kernel wrote every one of the `numel` elements of each output
            // (the domain covers the full output shape), within capacity; bool outputs
            // are written as 0/1 bytes, valid `bool`s.
            unsafe { set_output_len(&mut outputs[k].data, numel) };
        }
        Ok(())
    }

    /// The call configuration for the shapes of `inputs`: the last one when the shapes
    /// repeat (the common case of a loop over same-shaped inputs), else configured anew.
    fn prepare(&self, inputs: &[&Tensor]) -> Result<Arc<Prepared>, RuntimeError> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = last.as_ref()
            && p.shapes.len() == inputs.len()
            && p.shapes.iter().zip(inputs).all(|(s, t)| *s == t.shape)
        {
            return Ok(p.clone());
        }
        let body = &self.body;
        let mut full: Vec<usize> = vec![];
        for (i, t) in inputs.iter().enumerate() {
            full = snipjit_ir::broadcast_concrete(&full, &t.shape).ok_or_else(|| {
                RuntimeError::Input {
                    index: i,
                    name: body.node(body.inputs[i]).outputs[0].name.clone(),
                    reason: format!("shape {:?} does not broadcast with {full:?}", t.shape),
                }
            })?;
        }
        let numel = if full.contains(&0) {
            Some(0)
        } else {
            full.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
        };
        if numel.is_none_or(|n| n > MAX_OUTPUT_ELEMENTS) {
            return Err(RuntimeError::Shape(format!(
                "the outputs' shape {full:?} has more than {MAX_OUTPUT_ELEMENTS} elements"
            )));
        }
        for &r in &body.outputs {
            let ty = &body.node(r).outputs[0].ty;
            if !ty.shape.matches(&full) {
                return Err(RuntimeError::Shape(format!(
                    "output '{}' of type {ty} cannot take the domain shape {full:?}",
                    body.node(r).name
                )));
            }
        }
        let in_shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape.as_slice()).collect();
        let out_shapes: Vec<&[usize]> = body.outputs.iter().map(|_| full.as_slice()).collect();
        let domain = configure(&in_shapes, &out_shapes)?;
        let kernel = self.kernel(&domain.bcast_inner)?;
        let rt = domain.runtime_args(&kernel.lir)?;
        let p = Arc::new(Prepared {
            shapes: inputs.iter().map(|t| t.shape.clone()).collect(),
            full,
            domain,
            kernel,
            rt,
        });
        *last = Some(p.clone());
        Ok(p)
    }
}

/// A call configuration: everything that depends only on the input shapes.
#[derive(Debug)]
struct Prepared {
    shapes: Vec<Vec<usize>>,
    full: Vec<usize>,
    domain: crate::config::Domain,
    kernel: Arc<CompiledKernel>,
    /// The runtime argument block: the kernel's runtime pointer moves evaluated for
    /// the domain ([`crate::config::Domain::runtime_args`]).
    rt: Vec<i64>,
}

/// The first element of `d` (`None` for i64, which the JIT does not read).
fn data_ptr(d: &TensorData) -> Option<*const u8> {
    Some(match d {
        TensorData::F32(v) => v.as_ptr().cast(),
        TensorData::BF16(v) => v.as_ptr().cast(),
        TensorData::F16(v) => v.as_ptr().cast(),
        TensorData::I8(v) => v.as_ptr().cast(),
        TensorData::U8(v) => v.as_ptr(),
        TensorData::I32(v) => v.as_ptr().cast(),
        TensorData::Bool(v) => v.as_ptr().cast(),
        TensorData::I64(_) => return None,
    })
}

/// The first element of `d`, writable (`None` for i64).
fn data_ptr_mut(d: &mut TensorData) -> Option<*mut u8> {
    Some(match d {
        TensorData::F32(v) => v.as_mut_ptr().cast(),
        TensorData::BF16(v) => v.as_mut_ptr().cast(),
        TensorData::F16(v) => v.as_mut_ptr().cast(),
        TensorData::I8(v) => v.as_mut_ptr().cast(),
        TensorData::U8(v) => v.as_mut_ptr(),
        TensorData::I32(v) => v.as_mut_ptr().cast(),
        TensorData::Bool(v) => v.as_mut_ptr().cast(),
        TensorData::I64(_) => return None,
    })
}

/// Sets the length of a fresh output buffer.
///
/// # Safety
/// The first `n` elements must be initialized (bool elements to 0 or 1) and `n` must
/// not exceed the capacity.
unsafe fn set_output_len(d: &mut TensorData, n: usize) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match d {
            TensorData::F32(v) => v.set_len(n),
            TensorData::BF16(v) => v.set_len(n),
            TensorData::F16(v) => v.set_len(n),
            TensorData::I8(v) => v.set_len(n),
            TensorData::U8(v) => v.set_len(n),
            TensorData::I32(v) => v.set_len(n),
            TensorData::I64(v) => v.set_len(n),
            TensorData::Bool(v) => v.set_len(n),
        }
    }
}

/// An empty output of `dtype` with capacity for `n` elements (`None` for i64).
fn new_output(dtype: DType, n: usize) -> Result<TensorData, String> {
    Ok(match dtype {
        DType::F32 => TensorData::F32(huge_page_capacity(n)?),
        DType::BF16 => TensorData::BF16(huge_page_capacity(n)?),
        DType::F16 => TensorData::F16(huge_page_capacity(n)?),
        DType::I8 => TensorData::I8(huge_page_capacity(n)?),
        DType::U8 => TensorData::U8(huge_page_capacity(n)?),
        DType::I32 => TensorData::I32(huge_page_capacity(n)?),
        DType::Bool => TensorData::Bool(huge_page_capacity(n)?),
        DType::I64 => return Err("the JIT does not write i64".into()),
    })
}

/// The most elements an output may have (2^32: 16 GiB of f32), so that a broadcast of
/// small inputs to an absurd shape is an error, not an allocation failure.
pub const MAX_OUTPUT_ELEMENTS: usize = 1 << 32;

/// Bytes from which output buffers ask for transparent huge pages.
const HUGE_PAGE_MIN_BYTES: usize = 4 << 20;

/// An empty buffer with capacity for `n` elements (outputs: the kernel writes every
/// element before `set_len`). From 4 MiB the buffer is advised to use transparent huge
/// pages, so the first touch faults once per 2 MiB instead of once per 4 KiB. A
/// reservation that cannot be met is an error, not an abort.
pub fn huge_page_capacity<T>(n: usize) -> Result<Vec<T>, String> {
    let mut v: Vec<T> = Vec::new();
    // An allocation that cannot be met is an error, not an abort.
    v.try_reserve_exact(n)
        .map_err(|e| format!("cannot allocate the output: {e}"))?;
    let bytes = n * std::mem::size_of::<T>();
    if bytes >= HUGE_PAGE_MIN_BYTES {
        let start = v.as_ptr() as usize;
        let page = 4096;
        let aligned = start.next_multiple_of(page);
        let len = (start + bytes).saturating_sub(aligned) / page * page;
        if len > 0 {
            // SAFETY: the range lies inside the allocation just made; MADV_HUGEPAGE
            // only changes how its pages are backed, never their contents. A failure
            // (no THP support) leaves ordinary pages, so the result is ignored.
            unsafe { libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE) };
        }
    }
    Ok(v)
}
