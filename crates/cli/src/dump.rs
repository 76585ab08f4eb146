//! `snipjit dump`: prints a model and what the compiler makes of it.
//!
//! Without flags the model graph is printed as `.sg` text (or DOT). Each flag adds a
//! section, in this order:
//! - `--fused`: the tokenized graph (Subgraph nodes with their bodies), then a
//!   `#`-commented summary per subgraph (the whole stays parseable `.sg`);
//! - `--print-after PASS` / `--print-after-all`: per elementwise subgraph, the linear
//!   IR after those passes, each headed `; subgraph NAME: after PASS`; per attention
//!   subgraph, the MHA IR after the MHA passes named (`snipjit_lower::mha`), and with
//!   `--dim`, its scratch layout for those shapes;
//! - `--disasm`: every compiled kernel's disassembly under a `; subgraph ...` header;
//! - `--dim NAME=VALUE`: per subgraph, the run-time values for those shapes (input
//!   shapes, configured domain, broadcast pattern, strides, port element sizes,
//!   argument block, and the work split `Executor::plan` makes for vector-aligned
//!   outputs), `#`-commented.
//!
//! The IR and kernels are those of the broadcast pattern the `--dim` shapes select,
//! or, without `--dim`, of the pattern the declared shapes predict.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use snipjit::ir::{NodeId, Op};
use snipjit::{CompiledModel, Compiler, Graph, Options, Tensor};
use snipjit_runtime::config::Domain;
use snipjit_runtime::{Executor, JitSubgraph, OutputPort, predicted_pattern};

use crate::bind::{self, Bindings};
use crate::error::CliError;
use crate::run::Isa;

/// Arguments of `snipjit dump`.
#[derive(Debug, Args)]
pub struct DumpArgs {
    /// The model: a .onnx or .sg file.
    pub model: PathBuf,
    /// Print the tokenized graph (Subgraph nodes with their bodies) and a summary
    /// of each subgraph.
    #[arg(long)]
    pub fused: bool,
    /// Print each elementwise subgraph's linear IR after this pass (repeatable;
    /// `build` is the IR before the first pass).
    #[arg(long = "print-after", value_name = "PASS")]
    pub print_after: Vec<String>,
    /// Print the linear IR after every pass.
    #[arg(long)]
    pub print_after_all: bool,
    /// Print each compiled kernel's disassembly.
    #[arg(long)]
    pub disasm: bool,
    /// Bind a symbolic dim of the model inputs (repeatable); prints each subgraph's
    /// run-time values for the resulting shapes, and selects the kernel of their
    /// broadcast pattern for --print-after and --disasm.
    #[arg(long = "dim", value_name = "NAME=VALUE")]
    pub dims: Vec<String>,
    /// Threads the --dim work split is shown for (1 to 256).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Instruction set of the kernels.
    #[arg(long, value_enum, default_value_t = Isa::Auto)]
    pub isa: Isa,
    /// How to print the graph: .sg text, or DOT for Graphviz (graph only).
    #[arg(
        long,
        value_enum,
        default_value_t = DumpFormat::Sg,
        conflicts_with_all = ["print_after", "print_after_all", "disasm", "dims"]
    )]
    pub format: DumpFormat,
}

/// Output formats of `snipjit dump`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DumpFormat {
    /// snipjit's .sg text format (parses back to the same graph).
    Sg,
    /// Graphviz DOT (`digraph`); with --fused each subgraph is a labelled cluster.
    Dot,
}

/// Runs `snipjit dump`.
pub fn dump(args: &DumpArgs, out: &mut impl Write) -> Result<(), CliError> {
    let passes = selected_passes(args)?;
    let bindings: Bindings = args
        .dims
        .iter()
        .map(|s| bind::parse_dim(s))
        .collect::<Result<_, _>>()?;
    let graph = snipjit::load_model(&args.model)?;
    let inspect = args.fused || !passes.is_empty() || args.disasm || !bindings.is_empty();
    if !inspect {
        let text = match args.format {
            DumpFormat::Sg => snipjit::ir::text::print(&graph),
            DumpFormat::Dot => crate::dot::render(&graph, &|_| String::new()),
        };
        return out.write_all(text.as_bytes()).map_err(CliError::Stdout);
    }
    let model = Compiler::new(Options {
        threads: args.threads,
        isa: args.isa.into(),
    })?
    .compile(graph)?;
    let subgraphs = Subgraphs::of(&model);

    // Shapes first: a bad --dim fails before anything is printed.
    let runtime = if bindings.is_empty() {
        None
    } else {
        bind::check_symbols(model.inputs(), bindings.iter().map(|(n, _)| n.as_str()))?;
        let shapes = bind::input_shapes(model.inputs(), &bindings)?;
        let inputs = bind::make_inputs(model.inputs(), &shapes, 0);
        let captured = bind::capture(&model, &inputs, None)?;
        Some(captured)
    };
    // Per Subgraph node: the broadcast pattern of the --dim shapes (when it has a
    // kernel and ran), else the predicted one.
    let mut configured: HashMap<NodeId, (Vec<Vec<usize>>, Domain)> = HashMap::new();
    if let Some(captured) = &runtime {
        for c in captured {
            let Some(s) = subgraphs.get(c.node) else {
                continue;
            };
            let in_shapes: Vec<Vec<usize>> = c.inputs.iter().map(|t| t.shape.clone()).collect();
            if let Ok(k) = &s.jit {
                let domain =
                    bind::domain_of(&in_shapes, k.body().outputs.len()).map_err(|reason| {
                        CliError::Subgraph {
                            subgraph: s.name.clone(),
                            reason,
                        }
                    })?;
                // Compile the kernel of this pattern now, so --disasm shows it.
                k.kernel(&domain.bcast_inner)
                    .map_err(|e| CliError::Subgraph {
                        subgraph: s.name.clone(),
                        reason: e.to_string(),
                    })?;
                configured.insert(c.node, (in_shapes, domain));
            } else {
                configured.insert(c.node, (in_shapes, empty_domain()));
            }
        }
    }

    let mut text = String::new();
    if args.fused {
        match args.format {
            DumpFormat::Sg => {
                text.push_str(&snipjit::ir::text::print(model.fused_graph()));
                text.push_str(&summary(&model, &subgraphs));
            }
            DumpFormat::Dot => {
                let mha: Vec<NodeId> = model.mha_kernels().into_iter().map(|(id, _)| id).collect();
                let label = |id: NodeId| match subgraphs.get(id) {
                    Some(s) => format!(
                        "{}\nkind {}\njit {}",
                        s.name,
                        s.kind,
                        match &s.jit {
                            Ok(_) => "true".to_string(),
                            Err(_) if mha.contains(&s.node) => "true (MHA kernel)".to_string(),
                            Err(why) => format!("false ({why})"),
                        }
                    ),
                    None => String::new(),
                };
                text.push_str(&crate::dot::render(model.fused_graph(), &label));
            }
        }
    }
    let pattern_of = |s: &SubgraphInfo, k: &JitSubgraph| -> Vec<bool> {
        match configured.get(&s.node) {
            Some((_, d)) if !d.dims.is_empty() => d.bcast_inner.clone(),
            _ => predicted_pattern(k.body()),
        }
    };
    if !passes.is_empty() {
        // Attention subgraphs print their MHA IR below.
        for s in subgraphs.list.iter().filter(|s| s.kind != "mha") {
            let k = match &s.jit {
                Ok(k) => k,
                Err(why) => {
                    let _ = writeln!(text, "; subgraph {}: no linear IR ({why})", s.name);
                    continue;
                }
            };
            let pattern = pattern_of(s, k);
            let mut sections: Vec<(String, String)> = vec![];
            snipjit_runtime::compile_kernel(k.body(), &pattern, k.isa(), &mut |pass, lir| {
                if passes.contains(&pass) {
                    sections.push((pass.to_string(), lir.to_text()));
                }
            })
            .map_err(|e| CliError::Subgraph {
                subgraph: s.name.clone(),
                reason: e.to_string(),
            })?;
            for (pass, lir) in sections {
                let _ = writeln!(
                    text,
                    "; subgraph {}: after {pass} ({}, pattern {})",
                    s.name,
                    k.isa(),
                    pattern_text(&pattern)
                );
                text.push_str(&lir);
            }
        }
        for (node, _) in model.mha_kernels() {
            text.push_str(&mha_sections(&model, node, &passes, configured.get(&node))?);
        }
    }
    if args.disasm {
        let mha = model.mha_kernels();
        for s in &subgraphs.list {
            let k = match &s.jit {
                Ok(k) => k,
                Err(_) if mha.iter().any(|(id, _)| *id == s.node) => {
                    let (_, mk) = mha
                        .iter()
                        .find(|(id, _)| *id == s.node)
                        .expect("checked by the guard");
                    let kern = mk.kernel();
                    let _ = writeln!(
                        text,
                        "; subgraph {}: fused MHA kernel {}, all shapes, {} bytes of code, {} bytes of constants",
                        s.name,
                        mk.isa(),
                        kern.code().len(),
                        kern.pool().len()
                    );
                    text.push_str(&kern.disasm());
                    continue;
                }
                Err(why) => {
                    let _ = writeln!(text, "; subgraph {}: no kernel ({why})", s.name);
                    continue;
                }
            };
            let predicted = predicted_pattern(k.body());
            let selected = pattern_of(s, k);
            for (pattern, ck) in k.kernels() {
                let mut tags = vec![];
                if pattern == predicted {
                    tags.push("predicted");
                }
                if runtime.is_some() && pattern == selected {
                    tags.push("--dim shapes");
                }
                let _ = writeln!(
                    text,
                    "; subgraph {}: kernel {}, pattern {}{}, {} bytes of code, {} bytes of constants, {} scratch bytes, compiled in {:.0} us",
                    s.name,
                    k.isa(),
                    pattern_text(&pattern),
                    if tags.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", tags.join(", "))
                    },
                    ck.kernel.code().len(),
                    ck.kernel.pool().len(),
                    ck.scratch_bytes,
                    ck.compile_us
                );
                text.push_str(&ck.kernel.disasm());
            }
        }
    }
    if let Some(captured) = &runtime {
        // The executor of --threads threads plans the work split shown (the same
        // plan `Executor::run` follows).
        let exec = Executor::new(args.threads)
            .map_err(|e| CliError::Snipjit(snipjit::Error::Options(e.to_string())))?;
        text.push_str(&runtime_values(
            &model,
            &subgraphs,
            &bindings,
            captured,
            &configured,
            &exec,
        ));
    }
    out.write_all(text.as_bytes()).map_err(CliError::Stdout)
}

/// The MHA IR of the attention subgraph `node` after each of `passes` (MHA pass
/// names; others are skipped), and its scratch layout for the `--dim` input shapes.
fn mha_sections(
    model: &CompiledModel,
    node: NodeId,
    passes: &[&str],
    configured: Option<&(Vec<Vec<usize>>, Domain)>,
) -> Result<String, CliError> {
    use snipjit_lower::mha::{MhaTarget, lower_mha_body, text::print};
    let n = model.fused_graph().node(node);
    let Op::Subgraph(sg) = &n.op else {
        return Ok(String::new());
    };
    let target = match model.isa() {
        Some(snipjit_x64::Isa::Avx2) => MhaTarget::AVX2,
        _ => MhaTarget::AVX512,
    };
    let fail = |e: snipjit_lower::LowerError| CliError::Subgraph {
        subgraph: n.name.clone(),
        reason: e.to_string(),
    };
    let mut text = String::new();
    let plan = lower_mha_body(&sg.body, &target, &mut |pass, ir| {
        if passes.contains(&pass) {
            let _ = writeln!(
                text,
                "; subgraph {}: after {pass} (mha, {})",
                n.name, target.name
            );
            text.push_str(&print(ir));
        }
    })
    .map_err(fail)?;
    if let Some((shapes, _)) = configured {
        let shapes: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
        let layout = plan
            .dims_of_shapes(&shapes)
            .and_then(|d| plan.scratch_layout(&d))
            .map_err(fail)?;
        let _ = writeln!(
            text,
            "; subgraph {}: scratch per thread for {shapes:?}",
            n.name
        );
        for line in layout.to_string().lines() {
            let _ = writeln!(text, ";   {line}");
        }
    }
    Ok(text)
}

/// The pass names `--print-after` / `--print-after-all` select, in pipeline order
/// (the elementwise pipeline's, then the MHA pipeline's).
fn selected_passes(args: &DumpArgs) -> Result<Vec<&'static str>, CliError> {
    let mut all = snipjit_lower::pipeline::pass_names();
    all.extend(
        snipjit_lower::mha::pipeline::mha_pass_names()
            .into_iter()
            .skip(1),
    );
    for name in &args.print_after {
        if !all.contains(&name.as_str()) {
            return Err(CliError::UnknownPass {
                name: name.clone(),
                valid: all.join(", "),
            });
        }
    }
    Ok(all
        .into_iter()
        .filter(|p| args.print_after_all || args.print_after.iter().any(|n| n == p))
        .collect())
}

/// One Subgraph node of the fused graph.
struct SubgraphInfo {
    node: NodeId,
    name: String,
    kind: &'static str,
    jit: Result<Arc<JitSubgraph>, String>,
}

/// The Subgraph nodes of a compiled model, in topological order.
struct Subgraphs {
    list: Vec<SubgraphInfo>,
}

impl Subgraphs {
    fn of(model: &CompiledModel) -> Subgraphs {
        let g = model.fused_graph();
        let list = model
            .kernels()
            .into_iter()
            .map(|(node, jit)| {
                let n = g.node(node);
                let kind = match &n.op {
                    Op::Subgraph(sg) => sg.kind.name(),
                    _ => "?",
                };
                SubgraphInfo {
                    node,
                    name: n.name.clone(),
                    kind,
                    jit,
                }
            })
            .collect();
        Subgraphs { list }
    }

    fn get(&self, node: NodeId) -> Option<&SubgraphInfo> {
        self.list.iter().find(|s| s.node == node)
    }
}

/// `[full, bcast]`: per input, whether it is broadcast along the innermost dim.
fn pattern_text(pattern: &[bool]) -> String {
    let v: Vec<&str> = pattern
        .iter()
        .map(|&b| if b { "bcast" } else { "full" })
        .collect();
    format!("[{}]", v.join(", "))
}

fn empty_domain() -> Domain {
    Domain {
        dims: vec![],
        bcast_inner: vec![],
        strides: vec![],
    }
}

/// The `#`-commented per-subgraph summary after the fused graph.
fn summary(model: &CompiledModel, subgraphs: &Subgraphs) -> String {
    let g = model.fused_graph();
    let mut s = String::new();
    let mha: Vec<NodeId> = model.mha_kernels().into_iter().map(|(id, _)| id).collect();
    let jit_count = subgraphs
        .list
        .iter()
        .filter(|s| s.jit.is_ok() || mha.contains(&s.node))
        .count();
    let _ = writeln!(
        s,
        "# {} subgraph(s), {jit_count} compiled for {}",
        subgraphs.list.len(),
        model
            .isa()
            .map_or("no ISA (interpreter only)", |i| i.name())
    );
    for info in &subgraphs.list {
        let node = g.node(info.node);
        let Op::Subgraph(sg) = &node.op else {
            continue;
        };
        let ops: Vec<&str> = sg
            .body
            .nodes
            .iter()
            .filter(|n| !matches!(n.op, Op::Parameter | Op::Result | Op::Constant(_)))
            .map(|n| n.op.name())
            .collect();
        let ports = |g: &Graph, ids: &[NodeId]| -> String {
            let v: Vec<String> = ids
                .iter()
                .map(|&id| {
                    let o = &g.node(id).outputs[0];
                    format!("{}: {}", o.name, o.ty)
                })
                .collect();
            v.join(", ")
        };
        let outputs: Vec<String> = node
            .outputs
            .iter()
            .map(|o| format!("{}: {}", o.name, o.ty))
            .collect();
        let _ = writeln!(s, "# subgraph {}: kind {}", info.name, info.kind);
        let _ = writeln!(s, "#   ops: {}", ops.join(", "));
        let _ = writeln!(s, "#   inputs: {}", ports(&sg.body, &sg.body.inputs));
        let _ = writeln!(s, "#   outputs: {}", outputs.join(", "));
        match &info.jit {
            Ok(k) => {
                let _ = writeln!(
                    s,
                    "#   jit: true ({}, predicted pattern {})",
                    k.isa(),
                    pattern_text(&predicted_pattern(k.body()))
                );
            }
            Err(_) if mha.contains(&info.node) => {
                let isa = model.isa().map_or("?", |i| i.name());
                let _ = writeln!(
                    s,
                    "#   jit: true ({isa}, fused MHA kernel: brgemms + online softmax, all shapes)"
                );
            }
            Err(why) => {
                let _ = writeln!(s, "#   jit: false ({why})");
            }
        }
    }
    s
}

/// The `#`-commented run-time values of every subgraph for the `--dim` shapes.
fn runtime_values(
    model: &CompiledModel,
    subgraphs: &Subgraphs,
    bindings: &Bindings,
    captured: &[bind::Captured],
    configured: &HashMap<NodeId, (Vec<Vec<usize>>, Domain)>,
    exec: &Executor,
) -> String {
    let mut s = String::new();
    let threads = exec.threads();
    let dims: Vec<String> = bindings.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let _ = writeln!(
        s,
        "# run-time values for {}, {threads} thread(s)",
        dims.join(", ")
    );
    for info in &subgraphs.list {
        let _ = writeln!(s, "# subgraph {} ({})", info.name, info.kind);
        let Some(c) = captured.iter().find(|c| c.node == info.node) else {
            let _ = writeln!(s, "#   not run: no model output depends on it");
            continue;
        };
        let _ = writeln!(
            s,
            "#   inputs: {}",
            shapes_text(model, info.node, &c.inputs)
        );
        let k = match &info.jit {
            Ok(k) => k,
            Err(why) => {
                let _ = writeln!(s, "#   runs on the interpreter: {why}");
                continue;
            }
        };
        let Some((_, d)) = configured.get(&info.node) else {
            continue;
        };
        // The kernel of this pattern was compiled when the domain was configured.
        let ck = match k.kernel(&d.bcast_inner) {
            Ok(ck) => ck,
            Err(e) => {
                let _ = writeln!(s, "#   no kernel for these shapes: {e}");
                continue;
            }
        };
        let lanes = ck.lanes;
        let names = port_names(k.body());
        let predicted = predicted_pattern(k.body());
        let _ = writeln!(
            s,
            "#   domain: dims {:?}, parallel {:?}, M {}, W {}",
            d.dims,
            d.parallel(),
            d.m(),
            d.w()
        );
        let _ = writeln!(
            s,
            "#   pattern: {} ({})",
            pattern_text(&d.bcast_inner),
            if d.bcast_inner == predicted {
                "the predicted kernel".to_string()
            } else {
                format!(
                    "not the predicted {}: compiled on first use",
                    pattern_text(&predicted)
                )
            }
        );
        let strides: Vec<String> = names
            .iter()
            .zip(&d.strides)
            .map(|(n, st)| format!("{n} {st:?}"))
            .collect();
        let _ = writeln!(
            s,
            "#   strides (elements, per domain dim): {}",
            strides.join(", ")
        );
        let sizes: Vec<String> = names
            .iter()
            .zip(&ck.port_sizes)
            .map(|(n, b)| format!("{n} {b}"))
            .collect();
        let _ = writeln!(s, "#   element bytes: {}", sizes.join(", "));
        // The argument block as the kernel's linear IR lays it out (Lir::rt_slots).
        let n_in = ck.lir.inputs.len();
        let slots = ck.lir.rt_slots();
        match d.runtime_args(&ck.lir) {
            Ok(vals) => {
                let incs: Vec<String> = slots
                    .iter()
                    .zip(vals)
                    .map(|(slot, b)| {
                        let q = match slot.port {
                            snipjit_lower::lir::Port::Input(i) => i,
                            snipjit_lower::lir::Port::Output(o) => n_in + o,
                        };
                        let what = match slot.what {
                            snipjit_lower::lir::Move::Increment => "inc",
                            snipjit_lower::lir::Move::Finalization => "fin",
                        };
                        let name = names.get(q).map_or("?", String::as_str);
                        format!("{name} L{} {what} {} = {b}", slot.loop_id.0, slot.offset)
                    })
                    .collect();
                let _ = writeln!(
                    s,
                    "#   argument block (bytes, {lanes} lanes): {}",
                    incs.join(", ")
                );
            }
            Err(e) => {
                let _ = writeln!(s, "#   argument block: {e}");
            }
        }
        let w = d.w();
        let _ = writeln!(
            s,
            "#   inner loop: W {w} = {} x {lanes} lanes + tail {}",
            w / lanes,
            w % lanes
        );
        // Output addresses are known only at run time: the split is shown for
        // vector-aligned outputs (what fresh large buffers are, in practice).
        let n_in = k.body().inputs.len();
        let outputs: Vec<OutputPort> = ck.port_sizes[n_in.min(ck.port_sizes.len())..]
            .iter()
            .enumerate()
            .map(|(i, &elem_size)| OutputPort {
                elem_size,
                addr: (i + 1) << 12,
            })
            .collect();
        let plan = exec.plan(d, lanes, &outputs);
        let _ = writeln!(
            s,
            "#   thread split: {} work item(s){}",
            plan.items().len(),
            if plan.nt_stores() {
                " (for vector-aligned outputs; an unaligned output adds a head item of < lanes elements with ordinary stores)"
            } else {
                ""
            }
        );
        for (t, it) in plan.items().iter().enumerate() {
            let calls: Vec<usize> = it.calls(d.m()).map(|(_, n)| n).collect();
            let _ = writeln!(
                s,
                "#     item {t}: rows {}..{}, elements {}..{}: {} call(s), inner_work {}, outer_work {calls:?}{}",
                it.first_row,
                it.first_row + it.rows,
                it.first_elem,
                it.first_elem + it.elems,
                calls.len(),
                it.elems,
                if it.nt_stores {
                    ", non-temporal stores"
                } else {
                    ""
                }
            );
        }
    }
    s
}

/// `x f32[3, 37], b f32[1, 37]`: the subgraph's input names (from its body) and the
/// concrete shapes it received.
fn shapes_text(model: &CompiledModel, node: NodeId, inputs: &[Tensor]) -> String {
    let body = match &model.fused_graph().node(node).op {
        Op::Subgraph(sg) => Some(&sg.body),
        _ => None,
    };
    let v: Vec<String> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let name = body
                .and_then(|b| Some(b.node(*b.inputs.get(i)?).outputs[0].name.clone()))
                .unwrap_or_else(|| format!("in{i}"));
            format!("{name} {}{:?}", t.dtype(), t.shape)
        })
        .collect();
    v.join(", ")
}

/// Port names of a body: its inputs, then its outputs.
fn port_names(body: &Graph) -> Vec<String> {
    body.inputs
        .iter()
        .chain(&body.outputs)
        .map(|&id| {
            let n = body.node(id);
            match n.op {
                Op::Result => n.name.clone(),
                _ => n.outputs[0].name.clone(),
            }
        })
        .collect()
}
