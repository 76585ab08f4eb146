//! `snipjit bench`: times a model and each of its subgraphs over a grid of shapes.
//!
//! The model is compiled once; every combination of the `--dim` values (cartesian
//! product, the first `--dim` varying slowest) then runs in this one process on
//! deterministic random inputs. Per combination there is one line for the whole
//! model (`CompiledModel::run`, input checks and thread split included) and one per
//! Subgraph node (the compiled `JitSubgraph::run` or `MhaKernel::run_into`, or the interpreter's `eval_op` on
//! the Subgraph op, on the inputs it received in one run of the model).
//!
//! Timing: warm-up of at least 3 calls and 50 ms, then calls until `--target-ms` and at
//! least `--min-iters`, each timed with `Instant`; median, min and max in microseconds.
//! `--json` prints one JSON object a line, keys as in the shared benchmark results
//! (/work/shared/bench) so they join on `(workload, shape, threads)`.

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use snipjit::ir::{Op, infer::infer_op};
use snipjit::{CompiledModel, Compiler, Graph, Options, Shape, Tensor};
use snipjit_ir::TensorData;
use snipjit_runtime::Executor;

use crate::bind::{self, Bindings};
use crate::error::CliError;
use crate::run::Isa;

/// Arguments of `snipjit bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The model: a .onnx or .sg file.
    pub model: PathBuf,
    /// Values of a symbolic dim, NAME=V1,V2,... (repeatable); every combination runs.
    #[arg(long = "dim", value_name = "NAME=V1,V2,...")]
    pub dims: Vec<String>,
    /// Worker threads (1 to 256).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Instruction set for compiled kernels.
    #[arg(long, value_enum, default_value_t = Isa::Auto)]
    pub isa: Isa,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The `workload` key (default: the model file's stem).
    #[arg(long)]
    pub workload: Option<String>,
    /// Timed milliseconds per measurement (after warm-up).
    #[arg(long, default_value_t = 300.0)]
    pub target_ms: f64,
    /// Timed calls per measurement, at least.
    #[arg(long, default_value_t = 10)]
    pub min_iters: usize,
    /// Time `CompiledModel::run`, which allocates its outputs on every call, instead of
    /// `run_into` with outputs reused across calls (what the peers in ../shared/bench
    /// measure: OpenVINO's pre-bound outputs, onnxruntime's I/O binding).
    #[arg(long)]
    pub fresh_outputs: bool,
}

/// Per-call times of one measurement.
#[derive(Clone, Debug, PartialEq)]
pub struct Timing {
    pub median_us: f64,
    pub min_us: f64,
    pub max_us: f64,
    pub iters: usize,
}

impl Timing {
    /// Summarizes per-call times in microseconds (`times` non-empty).
    fn of(mut times: Vec<f64>) -> Timing {
        times.sort_by(f64::total_cmp);
        let n = times.len();
        let median = if n % 2 == 1 {
            times[n / 2]
        } else {
            (times[n / 2 - 1] + times[n / 2]) / 2.0
        };
        Timing {
            median_us: median,
            min_us: times[0],
            max_us: times[n - 1],
            iters: n,
        }
    }
}

/// Warm-up (at least 3 calls and 50 ms), then timed calls until `target` has passed
/// and at least `min_iters` were made. What `f` returns is dropped outside the timed
/// span.
pub fn measure<R>(
    mut f: impl FnMut() -> Result<R, CliError>,
    target: Duration,
    min_iters: usize,
) -> Result<Timing, CliError> {
    let warm = Instant::now();
    let mut n = 0;
    while n < 3 || warm.elapsed() < Duration::from_millis(50) {
        std::hint::black_box(f()?);
        n += 1;
    }
    let start = Instant::now();
    let mut times = vec![];
    while times.len() < min_iters.max(1) || start.elapsed() < target {
        let t = Instant::now();
        let r = f()?;
        times.push(t.elapsed().as_secs_f64() * 1e6);
        drop(std::hint::black_box(r));
    }
    Ok(Timing::of(times))
}

/// Runs a kernel once for its outputs, then times it: `run` (fresh outputs every
/// call) when `fresh_outputs`, else `run_into` on the outputs of the first run.
fn time_kernel(
    mut run: impl FnMut() -> Result<Vec<Tensor>, CliError>,
    mut run_into: impl FnMut(&mut Vec<Tensor>) -> Result<(), CliError>,
    fresh_outputs: bool,
    target: Duration,
    min_iters: usize,
) -> Result<(Timing, Vec<Tensor>), CliError> {
    let mut outs = run()?;
    let timing = if fresh_outputs {
        measure(&mut run, target, min_iters)?
    } else {
        measure(|| run_into(&mut outs), target, min_iters)?
    };
    Ok((timing, outs))
}

/// Every combination of the values, the first dim varying slowest.
fn combinations(dims: &[(String, Vec<usize>)]) -> Vec<Bindings> {
    let mut out: Vec<Bindings> = vec![vec![]];
    for (name, values) in dims {
        out = out
            .into_iter()
            .flat_map(|prefix| {
                values.iter().map(move |&v| {
                    let mut b = prefix.clone();
                    b.push((name.clone(), v));
                    b
                })
            })
            .collect();
    }
    out
}

/// The `shape` key: `B<b>_S<s>_H<h>_D<d>` when dims `B` and `S` are bound and the
/// first input is 4-D (`[B, S, H, D]`, the attention workloads), else `N<numel of
/// the first input>` (the elementwise workloads).
pub fn shape_key(bindings: &Bindings, shapes: &[Vec<usize>]) -> String {
    let bound = |n: &str| bindings.iter().any(|(b, _)| b == n);
    match shapes.first() {
        Some(s) if bound("B") && bound("S") && s.len() == 4 => {
            format!("B{}_S{}_H{}_D{}", s[0], s[1], s[2], s[3])
        }
        Some(s) => format!("N{}", s.iter().product::<usize>()),
        None => "N0".to_string(),
    }
}

/// Floating-point operations of the MatMuls of `graph` (2·M·N·K each, batch dims
/// included; Subgraph bodies counted) for inputs of `shapes`: `None` when the graph
/// has no MatMul or a MatMul's shapes cannot be made concrete.
pub fn matmul_flops(graph: &Graph, shapes: &[Vec<usize>]) -> Option<f64> {
    let (flops, seen) = flops_in(graph, shapes)?;
    seen.then_some(flops)
}

/// (flops, whether a MatMul was seen); `None` if shapes could not be inferred.
fn flops_in(graph: &Graph, shapes: &[Vec<usize>]) -> Option<(f64, bool)> {
    let mut g = graph.clone();
    for (&p, s) in g.inputs.clone().iter().zip(shapes) {
        g.node_mut(p).outputs[0].ty.shape = Shape::fixed(s);
    }
    let mut flops = 0.0;
    let mut seen = false;
    for id in g.topo_order().ok()? {
        let node = g.node(id);
        let in_shapes = |g: &Graph| -> Option<Vec<Vec<usize>>> {
            node.inputs
                .iter()
                .map(|&v| g.value_type(v).shape.as_static())
                .collect()
        };
        let types = match &node.op {
            Op::Parameter => continue,
            Op::Subgraph(sg) => {
                let ins = in_shapes(&g)?;
                let (f, s) = flops_in(&sg.body, &ins)?;
                flops += f;
                seen |= s;
                // The body's output types for these inputs.
                let mut body = sg.body.clone();
                for (&p, s) in body.inputs.clone().iter().zip(&ins) {
                    body.node_mut(p).outputs[0].ty.shape = Shape::fixed(s);
                }
                body.infer_types().ok()?;
                body.outputs
                    .iter()
                    .map(|&r| body.node(r).outputs[0].ty.clone())
                    .collect()
            }
            op => {
                if let Op::MatMul { transpose_a, .. } = op {
                    seen = true;
                    let a = g.value_type(*node.inputs.first()?).shape.as_static()?;
                    let k = match (a.len(), transpose_a) {
                        (0, _) => return None,
                        (1, _) => a[0],
                        (r, false) => a[r - 1],
                        (r, true) => a[r - 2],
                    };
                    let out = infer_op(&g, op, &node.inputs).ok()?;
                    let numel = out.first()?.shape.static_numel()?;
                    flops += 2.0 * numel as f64 * k as f64;
                }
                infer_op(&g, op, &node.inputs).ok()?
            }
        };
        let node = g.node_mut(id);
        for (o, t) in node.outputs.iter_mut().zip(types) {
            o.ty = t;
        }
    }
    Some((flops, seen))
}

/// Bytes of the elements of `tensors`.
fn bytes_of<'a>(tensors: impl IntoIterator<Item = &'a Tensor>) -> usize {
    tensors
        .into_iter()
        .map(|t| t.numel() * t.dtype().size())
        .sum()
}

/// One result line.
#[derive(Debug)]
struct Line {
    subgraph: String,
    kind: String,
    timing: Timing,
    bytes: usize,
    flops: Option<f64>,
    compile_us: Option<f64>,
    /// The model's first compile in the process (`compile_us` is the median of
    /// the ones after it).
    first_compile_us: Option<f64>,
    first_call_us: Option<f64>,
    /// The median of a few more calls at the same shapes, each on inputs the caller
    /// has just rewritten (as the first call's were just written): the first call
    /// minus this leaves out the inputs' cache state, not what entering the
    /// combination after other work costs (caches that lost the code, scratch and
    /// data meanwhile), which a `shape_seen` combination's first call pays too.
    fresh_inputs_us: Option<f64>,
    /// The same, on rewritten inputs and bound outputs, each call also after as much
    /// other work on the calling thread as came before the first call (the input
    /// preparation, see [`IDLE_GAP`]), so that the pool's workers have parked as they
    /// had then: the first call minus this also leaves out the workers' wake-up.
    idle_inputs_us: Option<f64>,
    /// Whether the first call wrote into caller-held outputs (`run_into`) rather
    /// than allocating them (`run`).
    first_call_bound: bool,
    /// On the model line: whether an earlier combination of this process ran the
    /// same input shapes (a `--dim` list that names a value twice). Its first call
    /// then re-enters a seen shape after the same kind of work as a never-seen one's
    /// first call, so the two `first_call_us` differ by what a shape never seen costs.
    shape_seen: Option<bool>,
    /// With worker threads: the CPU time they used during the timed calls over
    /// (wall time × workers). About 1 when they took part (spinning between calls
    /// counts too), about 0 when they stayed parked; a low GFLOP/s with a share near
    /// 1 means the machine gave them less than a core each.
    worker_cpu_share: Option<f64>,
}

/// What every line of one combination shares.
struct Common<'a> {
    workload: &'a str,
    dims: &'a Bindings,
    shape: &'a str,
    threads: usize,
    isa: &'a str,
    compilations: usize,
}

/// A JSON value for a float, rounded to 3 decimals; `null` if not finite.
fn num(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => {
            serde_json::Value::from((x * 1000.0).round() / 1000.0).to_string()
        }
        _ => "null".into(),
    }
}

fn string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// `x / median` per second, in units of 1e9.
fn per_second_g(x: f64, t: &Timing) -> Option<f64> {
    (t.median_us > 0.0).then(|| x / (t.median_us * 1e-6) / 1e9)
}

impl Line {
    fn json(&self, c: &Common) -> String {
        let dims: Vec<String> = c
            .dims
            .iter()
            .map(|(n, v)| format!("{}:{v}", string(n)))
            .collect();
        let mut fields: Vec<(&str, String)> = vec![
            ("workload", string(c.workload)),
            ("subgraph", string(&self.subgraph)),
            ("kind", string(&self.kind)),
            ("dims", format!("{{{}}}", dims.join(","))),
            ("shape", string(c.shape)),
            ("threads", c.threads.to_string()),
            ("isa", string(c.isa)),
            ("peer", string("snipjit")),
            ("median_us", num(Some(self.timing.median_us))),
            ("min_us", num(Some(self.timing.min_us))),
            ("max_us", num(Some(self.timing.max_us))),
            ("gbps", num(per_second_g(self.bytes as f64, &self.timing))),
            (
                "gflops",
                num(self.flops.and_then(|f| per_second_g(f, &self.timing))),
            ),
            ("compilations", c.compilations.to_string()),
            ("compile_us", num(self.compile_us)),
        ];
        if let Some(f) = self.first_compile_us {
            fields.push(("first_compile_us", num(Some(f))));
        }
        if let Some(f) = self.first_call_us {
            fields.push(("first_call_us", num(Some(f))));
            let how = if self.first_call_bound {
                "bound"
            } else {
                "fresh"
            };
            fields.push(("first_call_outputs", string(how)));
        }
        if let Some(f) = self.fresh_inputs_us {
            fields.push(("fresh_inputs_us", num(Some(f))));
        }
        if let Some(f) = self.idle_inputs_us {
            fields.push(("idle_inputs_us", num(Some(f))));
        }
        if let Some(f) = self.worker_cpu_share {
            fields.push(("worker_cpu_share", num(Some(f))));
        }
        if let Some(seen) = self.shape_seen {
            fields.push(("shape_seen", seen.to_string()));
        }
        let body: Vec<String> = fields
            .into_iter()
            .map(|(k, v)| format!("{}:{v}", string(k)))
            .collect();
        format!("{{{}}}", body.join(","))
    }
}

/// Runs `snipjit bench`.
pub fn bench(args: &BenchArgs, out: &mut impl Write) -> Result<(), CliError> {
    if !(args.target_ms.is_finite() && args.target_ms >= 0.0) {
        return Err(CliError::Bench(format!(
            "--target-ms must be a non-negative number of milliseconds, got {}",
            args.target_ms
        )));
    }
    if args.min_iters == 0 {
        return Err(CliError::Bench("--min-iters must be at least 1".into()));
    }
    let dims = args
        .dims
        .iter()
        .map(|s| bind::parse_dim_list(s))
        .collect::<Result<Vec<_>, _>>()?;
    let workload = match &args.workload {
        Some(w) => w.clone(),
        None => args
            .model
            .file_stem()
            .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned()),
    };
    let graph = snipjit::load_model(&args.model)?;
    let compiler = Compiler::new(Options {
        threads: args.threads,
        isa: args.isa.into(),
    })?;
    // The first compile in this process also pays for the first use of the
    // compiler's code and memory (page faults, cold caches); the peers' compile time
    // is the median of 5 compiles after a discarded one, and so is `compile_us`.
    let t0 = Instant::now();
    let mut model = compiler.compile(graph.clone())?;
    let first_compile_us = t0.elapsed().as_secs_f64() * 1e6;
    let mut compiles = Vec::with_capacity(COMPILE_REPEATS);
    for _ in 0..COMPILE_REPEATS {
        let g = graph.clone();
        let t = Instant::now();
        let m = compiler.compile(g)?;
        compiles.push(t.elapsed().as_secs_f64() * 1e6);
        // The previous model (and its executor's threads) is dropped untimed.
        model = m;
    }
    compiles.sort_by(f64::total_cmp);
    let compile_us = compiles[compiles.len() / 2];
    bind::check_symbols(model.inputs(), dims.iter().map(|(n, _)| n.as_str()))?;
    // Every combination's shapes are checked before the first one runs.
    let combos = combinations(&dims)
        .into_iter()
        .map(|b| {
            let shapes = bind::input_shapes(model.inputs(), &b)?;
            // Output shapes follow from the bindings when every output dim is static
            // or a bound symbol (else the first call allocates its outputs).
            let out_shapes = bind::input_shapes(model.outputs(), &b).ok();
            Ok((b, shapes, out_shapes))
        })
        .collect::<Result<Vec<_>, CliError>>()?;
    let exec = Executor::new(args.threads).map_err(|e| CliError::Bench(e.to_string()))?;
    let isa = model.isa().map_or("none", |i| i.name());
    let target = Duration::from_secs_f64(args.target_ms / 1e3);
    if !args.json {
        writeln!(
            out,
            "{workload}: compiled in {:.3} ms for {isa}, {} thread(s) (median of {COMPILE_REPEATS} \
             compiles after a first one of {:.3} ms)",
            compile_us / 1e3,
            args.threads,
            first_compile_us / 1e3
        )
        .map_err(CliError::Stdout)?;
    }
    for (i, (bindings, shapes, out_shapes)) in combos.iter().enumerate() {
        let shape_seen = combos[..i].iter().any(|(_, earlier, _)| earlier == shapes);
        let lines = bench_one(
            &model,
            Combo {
                shapes,
                out_shapes: out_shapes.as_deref(),
                seen: shape_seen,
            },
            (compile_us, first_compile_us),
            &exec,
            target,
            args.min_iters,
            args.fresh_outputs,
        )?;
        let shape = shape_key(bindings, shapes);
        let common = Common {
            workload: &workload,
            dims: bindings,
            shape: &shape,
            threads: args.threads,
            isa,
            compilations: model.stats().compilations,
        };
        let text = if args.json {
            lines.iter().map(|l| l.json(&common) + "\n").collect()
        } else {
            table(&lines, &common)
        };
        out.write_all(text.as_bytes()).map_err(CliError::Stdout)?;
        out.flush().map_err(CliError::Stdout)?;
    }
    Ok(())
}

/// Compiles after the first one whose median is `compile_us`.
const COMPILE_REPEATS: usize = 5;

/// Calls on rewritten inputs after the first call (`fresh_inputs_us` is their median,
/// and `idle_inputs_us` of as many after an idle gap each).
const FRESH_INPUT_CALLS: usize = 5;

/// Busy time on the calling thread before each `idle_inputs_us` call: as long as the
/// input preparation before the first call took, within these bounds (at least 20
/// times the pool's default spin of 100 us, so that its workers have parked; how long
/// a parked worker takes to wake up grows with how long its core has been idle on a
/// VM). The caller busy-waits (it does not sleep), as it was busy preparing inputs.
const IDLE_GAP: (Duration, Duration) = (Duration::from_millis(2), Duration::from_millis(100));

/// Reads and writes back every element of `tensors`, so that they are in the state
/// of data the caller has just written (as `make_inputs` leaves them).
fn rewrite(tensors: &mut [Tensor]) {
    fn touch<T: Copy>(v: &mut [T]) {
        for x in v.iter_mut() {
            *x = std::hint::black_box(*x);
        }
    }
    for t in tensors {
        match &mut t.data {
            TensorData::F32(v) => touch(v),
            TensorData::BF16(v) => touch(v),
            TensorData::F16(v) => touch(v),
            TensorData::I8(v) => touch(v),
            TensorData::U8(v) => touch(v),
            TensorData::I32(v) => touch(v),
            TensorData::I64(v) => touch(v),
            TensorData::Bool(v) => touch(v),
        }
    }
}

/// One combination's shapes, as `bench_one` runs them.
struct Combo<'a> {
    /// The inputs' shapes.
    shapes: &'a [Vec<usize>],
    /// The outputs' shapes, when the bindings determine them: the first call then
    /// writes into bound outputs.
    out_shapes: Option<&'a [Vec<usize>]>,
    /// Whether an earlier combination ran the same input shapes.
    seen: bool,
}

/// Times the model and each subgraph on `combo`'s inputs.
fn bench_one(
    model: &CompiledModel,
    combo: Combo,
    (compile_us, first_compile_us): (f64, f64),
    exec: &Executor,
    target: Duration,
    min_iters: usize,
    fresh_outputs: bool,
) -> Result<Vec<Line>, CliError> {
    let Combo {
        shapes,
        out_shapes,
        seen,
    } = combo;
    let prep = Instant::now();
    let inputs = bind::make_inputs(model.inputs(), shapes, 0x5eed);
    // The first call at these shapes. Timing `run_into`, it writes into outputs the
    // caller already holds (allocated and touched here, as a server binds its
    // buffers), so it compares with the repeated `run_into` calls below; with fresh
    // outputs (or output shapes that --dim does not determine) it is a `run`, which
    // also pays for faulting in the new output pages.
    let bound = match out_shapes {
        Some(s) if !fresh_outputs => Some(bind::make_inputs(model.outputs(), s, 0x0b7)),
        _ => None,
    };
    let first_call_bound = bound.is_some();
    let idle_gap = prep.elapsed().clamp(IDLE_GAP.0, IDLE_GAP.1);
    let t = Instant::now();
    let mut outputs = match bound {
        Some(mut outs) => {
            model.run_into(&inputs, &mut outs)?;
            outs
        }
        None => model.run(&inputs)?,
    };
    let first_call_us = t.elapsed().as_secs_f64() * 1e6;
    // The same call again, each time on inputs rewritten just before, then also
    // after `gap` of busy work: the median of FRESH_INPUT_CALLS calls.
    let mut inputs = inputs;
    // With `idle`, the bound outputs are rewritten too (they were written by this
    // thread before the first call, so a worker's first writes to them moved their
    // cache lines from this core).
    let mut again = |gap: Duration, idle: bool| -> Result<f64, CliError> {
        let mut times = Vec::with_capacity(FRESH_INPUT_CALLS);
        for _ in 0..FRESH_INPUT_CALLS {
            rewrite(&mut inputs);
            if idle && first_call_bound {
                rewrite(&mut outputs);
            }
            let busy = Instant::now();
            while busy.elapsed() < gap {
                std::hint::spin_loop();
            }
            let t = Instant::now();
            if first_call_bound {
                model.run_into(&inputs, &mut outputs)?;
            } else {
                std::hint::black_box(model.run(&inputs)?);
            }
            times.push(t.elapsed().as_secs_f64() * 1e6);
        }
        times.sort_by(f64::total_cmp);
        Ok(times[times.len() / 2])
    };
    let fresh_inputs_us = again(Duration::ZERO, false)?;
    let idle_inputs_us = again(idle_gap, true)?;
    let inputs = inputs;
    let workers = model.executor().threads().saturating_sub(1);
    let cpu0 = model.executor().worker_cpu_time();
    let wall = Instant::now();
    let timing = if fresh_outputs {
        measure(|| Ok(model.run(&inputs)?), target, min_iters)?
    } else {
        measure(
            || Ok(model.run_into(&inputs, &mut outputs)?),
            target,
            min_iters,
        )?
    };
    let wall = wall.elapsed();
    let worker_cpu_share = match (cpu0, model.executor().worker_cpu_time()) {
        (Some(a), Some(b)) if workers > 0 && !wall.is_zero() => {
            Some((b.saturating_sub(a)).as_secs_f64() / (wall.as_secs_f64() * workers as f64))
        }
        _ => None,
    };
    let mut lines = vec![Line {
        subgraph: "model".into(),
        kind: "model".into(),
        timing,
        bytes: bytes_of(&inputs) + bytes_of(&outputs),
        flops: matmul_flops(model.graph(), shapes),
        compile_us: Some(compile_us),
        first_compile_us: Some(first_compile_us),
        first_call_us: Some(first_call_us),
        fresh_inputs_us: Some(fresh_inputs_us),
        idle_inputs_us: Some(idle_inputs_us),
        first_call_bound,
        worker_cpu_share,
        shape_seen: Some(seen),
    }];
    let kernels = model.kernels();
    let mha_kernels = model.mha_kernels();
    let g = model.fused_graph();
    for c in bind::capture(model, &inputs, Some(exec))? {
        let node = g.node(c.node);
        let Op::Subgraph(sg) = &node.op else {
            continue;
        };
        let refs: Vec<&Tensor> = c.inputs.iter().collect();
        let in_shapes: Vec<Vec<usize>> = c.inputs.iter().map(|t| t.shape.clone()).collect();
        let err = |reason: String| CliError::Subgraph {
            subgraph: node.name.clone(),
            reason,
        };
        let jit = kernels
            .iter()
            .find(|(id, _)| *id == c.node)
            .and_then(|(_, k)| k.as_ref().ok());
        let mha = mha_kernels
            .iter()
            .find(|(id, _)| *id == c.node)
            .map(|(_, k)| k);
        let (timing, outs, compile_us) = match (jit, mha) {
            (_, Some(k)) => {
                let (timing, outs) = time_kernel(
                    || k.run(&refs, exec).map_err(|e| err(e.to_string())),
                    |outs| {
                        k.run_into(&refs, outs, exec)
                            .map_err(|e| err(e.to_string()))
                    },
                    fresh_outputs,
                    target,
                    min_iters,
                )?;
                (timing, outs, None)
            }
            (Some(k), None) => {
                let (timing, outs) = time_kernel(
                    || k.run(&refs, exec).map_err(|e| err(e.to_string())),
                    |outs| {
                        k.run_into(&refs, outs, exec)
                            .map_err(|e| err(e.to_string()))
                    },
                    fresh_outputs,
                    target,
                    min_iters,
                )?;
                let domain = bind::domain_of(&in_shapes, sg.body.outputs.len()).map_err(&err)?;
                let ck = k
                    .kernel(&domain.bcast_inner)
                    .map_err(|e| err(e.to_string()))?;
                (timing, outs, Some(ck.compile_us))
            }
            (None, None) => {
                let outs =
                    snipjit_interp::eval_op(&node.op, &refs).map_err(|e| err(e.to_string()))?;
                let timing = measure(
                    || snipjit_interp::eval_op(&node.op, &refs).map_err(|e| err(e.to_string())),
                    target,
                    min_iters,
                )?;
                (timing, outs, None)
            }
        };
        lines.push(Line {
            subgraph: node.name.clone(),
            kind: sg.kind.name().to_string(),
            timing,
            bytes: bytes_of(&c.inputs) + bytes_of(&outs),
            flops: matmul_flops(&sg.body, &in_shapes),
            compile_us,
            first_compile_us: None,
            first_call_us: None,
            fresh_inputs_us: None,
            idle_inputs_us: None,
            first_call_bound: false,
            worker_cpu_share: None,
            shape_seen: None,
        });
    }
    Ok(lines)
}

/// The readable form of one combination.
fn table(lines: &[Line], c: &Common) -> String {
    let dims: Vec<String> = c.dims.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let mut s = String::new();
    let first = lines
        .iter()
        .find_map(|l| l.first_call_us)
        .map_or_else(|| "-".into(), |f| format!("{f:.1} us"));
    let fresh = lines
        .iter()
        .find_map(|l| l.fresh_inputs_us)
        .map_or_else(|| "-".into(), |f| format!("{f:.1} us"));
    let seen = if lines.iter().any(|l| l.shape_seen == Some(true)) {
        " at shapes run before"
    } else {
        ""
    };
    let _ = writeln!(
        s,
        "\n{} (shape {}): first call{seen} {first} (then {fresh} on freshly written inputs), compilations {}",
        if dims.is_empty() {
            "static shapes".to_string()
        } else {
            dims.join(", ")
        },
        c.shape,
        c.compilations
    );
    let _ = writeln!(
        s,
        "  {:<16} {:<12} {:>12} {:>12} {:>12} {:>9} {:>9} {:>11} {:>6}",
        "subgraph",
        "kind",
        "median_us",
        "min_us",
        "max_us",
        "GB/s",
        "GFLOP/s",
        "compile_us",
        "iters"
    );
    let opt = |v: Option<f64>, prec: usize| v.map_or_else(|| "-".into(), |x| format!("{x:.prec$}"));
    for l in lines {
        let _ = writeln!(
            s,
            "  {:<16} {:<12} {:>12.3} {:>12.3} {:>12.3} {:>9} {:>9} {:>11} {:>6}",
            l.subgraph,
            l.kind,
            l.timing.median_us,
            l.timing.min_us,
            l.timing.max_us,
            opt(per_second_g(l.bytes as f64, &l.timing), 2),
            opt(l.flops.and_then(|f| per_second_g(f, &l.timing)), 2),
            opt(l.compile_us, 1),
            l.timing.iters
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        let t = Timing::of(vec![5.0, 1.0, 3.0]);
        assert_eq!(
            (t.median_us, t.min_us, t.max_us, t.iters),
            (3.0, 1.0, 5.0, 3)
        );
        assert_eq!(Timing::of(vec![4.0, 1.0, 2.0, 3.0]).median_us, 2.5);
    }

    #[test]
    fn cartesian_product_first_dim_slowest() {
        let c = combinations(&[("B".into(), vec![1, 8]), ("S".into(), vec![16, 32, 64])]);
        let flat: Vec<(usize, usize)> = c.iter().map(|b| (b[0].1, b[1].1)).collect();
        assert_eq!(
            flat,
            vec![(1, 16), (1, 32), (1, 64), (8, 16), (8, 32), (8, 64)]
        );
        assert_eq!(combinations(&[]), vec![Vec::<(String, usize)>::new()]);
    }

    #[test]
    fn shape_keys() {
        let bs: Bindings = vec![("B".into(), 1), ("S".into(), 128)];
        assert_eq!(shape_key(&bs, &[vec![1, 128, 12, 64]]), "B1_S128_H12_D64");
        let n: Bindings = vec![("N".into(), 16)];
        assert_eq!(shape_key(&n, &[vec![16, 1024]]), "N16384");
        // B and S bound but a 2-D first input: the elementwise rule.
        assert_eq!(shape_key(&bs, &[vec![1, 128]]), "N128");
    }

    #[test]
    fn matmul_flops_of_attention() {
        let g = snipjit::parse_model(include_str!("../../../examples/mha.sg"), "mha").unwrap();
        let (b, s, h, d) = (2usize, 16usize, 12usize, 64usize);
        let shapes = vec![
            vec![b, s, h, d],
            vec![b, s, h, d],
            vec![b, s, h, d],
            vec![b, 1, 1, s],
        ];
        // Q·Kᵀ and P·V: 2·(B·H·S·S·D) each.
        let want = 4.0 * (b * h * s * s * d) as f64;
        assert_eq!(matmul_flops(&g, &shapes), Some(want));
        let silu = snipjit::parse_model(include_str!("../../../examples/silu.sg"), "silu").unwrap();
        assert_eq!(matmul_flops(&silu, &[vec![4, 1024]]), None);
    }

    #[test]
    fn measure_honours_min_iters_and_target() {
        let mut calls = 0;
        let t = measure(
            || {
                calls += 1;
                Ok(())
            },
            Duration::ZERO,
            7,
        )
        .unwrap();
        assert_eq!(t.iters, 7);
        assert!(calls >= 3 + 7);
        assert!(t.min_us <= t.median_us && t.median_us <= t.max_us);
    }
}
