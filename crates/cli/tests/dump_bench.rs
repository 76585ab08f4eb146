//! End-to-end tests of `snipjit dump` (every flag) and `snipjit bench --json` on the
//! shipped examples. Expected values are computed here from the shapes, not taken
//! from the tool.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn example(name: &str) -> String {
    examples().join(name).display().to_string()
}

/// A model under `tests/fixtures`.
fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// Why the JIT refuses `fixtures/i64_port.sg`: its explicit Subgraph node has an i64
/// input port, which no kernel reads (the tokenizer never forms such a subgraph, but a
/// model may bring one).
const I64_REASON: &str = "port 'ids0' has dtype i64";

fn snipjit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_snipjit"))
        .args(args)
        .output()
        .expect("the snipjit binary runs")
}

/// Runs and expects success; returns stdout.
fn ok(args: &[&str]) -> String {
    let o = snipjit(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{args:?} failed: {err}");
    String::from_utf8(o.stdout).unwrap()
}

/// Asserts exit 1, one `error: ` line containing every fragment, empty stdout.
fn fails(args: &[&str], want: &[&str]) {
    let o = snipjit(args);
    let err = String::from_utf8(o.stderr).unwrap();
    assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    for w in want {
        assert!(err.contains(w), "{err:?} should contain {w:?}");
    }
    assert!(o.stdout.is_empty(), "nothing on stdout");
}

fn has_avx512() -> bool {
    std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512dq")
        && std::is_x86_feature_detected!("avx512vl")
}

fn has_avx2() -> bool {
    std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("fma")
        && std::is_x86_feature_detected!("bmi2")
}

/// The ISAs to run ISA-specific checks on, saying which are skipped.
fn isas() -> Vec<(&'static str, usize)> {
    let mut v = vec![];
    if has_avx512() {
        v.push(("avx512", 16));
    } else {
        eprintln!("skipped: AVX-512 checks (this CPU lacks AVX-512)");
    }
    if has_avx2() {
        v.push(("avx2", 8));
    } else {
        eprintln!("skipped: AVX2 checks (this CPU lacks AVX2/FMA/BMI2)");
    }
    v
}

/// The pipeline's pass names, in order (what `--print-after` accepts).
fn passes() -> Vec<&'static str> {
    let p = snipjit_lower::pipeline::pass_names();
    // The anchors the tests below rely on.
    assert_eq!(p[0], "build");
    let at = |n: &str| p.iter().position(|q| *q == n).unwrap();
    assert!(at("insert_loops") < at("assign_registers"));
    assert!(at("assign_registers") < at("insert_specific_iterations"));
    p
}

/// The passes named in `; subgraph NAME: after PASS` headers, in order.
fn headers(text: &str, subgraph: &str) -> Vec<String> {
    let prefix = format!("; subgraph {subgraph}: after ");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|rest| rest.split(' ').next().unwrap().to_string())
        .collect()
}

/// True if `s` has a `%<digits>:r<digits>` register operand.
fn has_register(s: &str) -> bool {
    s.split(|c: char| c.is_whitespace() || c == ',').any(|tok| {
        match tok.strip_prefix('%').and_then(|t| t.split_once(":r")) {
            Some((v, r)) => {
                !v.is_empty()
                    && !r.is_empty()
                    && v.bytes().all(|b| b.is_ascii_digit())
                    && r.bytes().all(|b| b.is_ascii_digit())
            }
            None => false,
        }
    })
}

#[test]
fn plain_dump_is_unchanged_sg() {
    let out = ok(&["dump", &example("relu_bias.sg")]);
    let src = std::fs::read_to_string(examples().join("relu_bias.sg")).unwrap();
    assert_eq!(out, src, "the example is in canonical form");
}

#[test]
fn fused_prints_the_tokenized_graph_and_a_summary() {
    let out = ok(&["dump", &example("relu_bias.sg"), "--fused"]);
    // Still valid .sg: the summary is comments.
    let g = snipjit::parse_model(&out, "fused").unwrap();
    assert_eq!(
        g.nodes.iter().filter(|n| n.op.name() == "Subgraph").count(),
        1
    );
    assert!(out.contains("= Subgraph(x, b, kind=elementwise) @subgraph0 graph subgraph0("));
    for line in [
        "# subgraph subgraph0: kind elementwise",
        "#   ops: Add, Relu",
        "#   inputs: x: f32[N, C], b: f32[1, C]",
        "#   outputs: y: f32[N, C]",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
    assert!(out.contains("#   jit: true ("), "{out}");

    // Comparisons, Select and Converts to bf16 and bool ports: one compiled kernel.
    let out = ok(&["dump", &example("select_convert.sg"), "--fused"]);
    for line in [
        "#   inputs: x: f32[N, 64], lo: f32[1, 64], hi: f32[1, 64]",
        "#   outputs: outside: bool[N, 64], y: bf16[N, 64]",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
    assert!(out.contains("#   jit: true ("), "{out}");
    assert!(!out.contains("jit: false"), "{out}");

    // A subgraph the JIT cannot take says why.
    let out = ok(&["dump", &fixture("i64_port.sg"), "--fused"]);
    assert!(out.contains("# 1 subgraph(s), 0 compiled for "), "{out}");
    assert!(
        out.contains("#   inputs: ids0: i64[N, 64], x0: f32[N, 64]"),
        "{out}"
    );
    let jit = field(&out, "jit");
    assert!(
        jit.starts_with("false (") && jit.contains(I64_REASON),
        "{out}"
    );
}

#[test]
fn print_after_follows_pipeline_order_and_ends_with_registers() {
    // Asked out of order: printed in pipeline order.
    let out = ok(&[
        "dump",
        &example("relu_bias.sg"),
        "--print-after",
        "insert_specific_iterations",
        "--print-after",
        "build",
        "--print-after",
        "insert_loops",
    ]);
    assert_eq!(
        headers(&out, "subgraph0"),
        vec!["build", "insert_loops", "insert_specific_iterations"]
    );
    let sections: Vec<&str> = out.split("; subgraph subgraph0: after ").skip(1).collect();
    assert_eq!(sections.len(), 3);
    // The initial IR is the data-flow form: Parameters, no loops, no registers.
    assert!(sections[0].contains("= Parameter in0") && !sections[0].contains("LoopBegin"));
    assert!(!has_register(sections[0]));
    assert!(sections[1].contains("LoopBegin L0") && sections[1].contains("Load in1"));
    // The final IR names a register for every value.
    assert!(has_register(sections[2]), "{}", sections[2]);
    assert!(sections[2].contains("Store out0, %"));

    let all = ok(&["dump", &example("gelu_chain.sg"), "--print-after-all"]);
    assert_eq!(headers(&all, "subgraph0"), passes());
    // The scalar constants of the body are pulled into the IR as Scalar values.
    let build = all
        .split("; subgraph subgraph0: after ")
        .find(|s| s.starts_with("build"))
        .unwrap();
    for e in ["Scalar 0.5", "Scalar 1.25", "GeluTanh", "Scalar 0.75"] {
        assert!(build.contains(e), "{e} in {build}");
    }
}

#[test]
fn print_after_every_subgraph() {
    let out = ok(&[
        "dump",
        &example("softmax_decomposed.sg"),
        "--print-after",
        "assign_registers",
    ]);
    assert_eq!(headers(&out, "subgraph0"), vec!["assign_registers"]);
    assert_eq!(headers(&out, "subgraph1"), vec!["assign_registers"]);
    // Both predicted patterns broadcast the second input along the row.
    assert!(out.contains("pattern [full, bcast]"), "{out}");
    assert!(out.contains("in1 m: f32[B, S, 1] bcast_inner"), "{out}");
}

#[test]
fn mha_disassembly_is_one_fused_kernel() {
    for (isa, _) in isas() {
        let out = ok(&["dump", &example("mha.sg"), "--disasm", "--isa", isa]);
        let header = out.lines().next().unwrap();
        assert!(
            header.starts_with(&format!("; subgraph subgraph0: fused MHA kernel {isa}, ")),
            "{header}"
        );
        // One kernel: one header, one buffer whose loop has six subroutine call
        // sites (pack, Q·K^T, softmax block, P·V writing the output of a single
        // block, P·V accumulating, finish).
        assert_eq!(
            out.lines().filter(|l| l.starts_with("; subgraph")).count(),
            1
        );
        let calls = out.lines().filter(|l| l.contains(": call ")).count();
        assert_eq!(calls, 6, "{isa}");
        assert!(out.contains("vfmadd231ps"), "{isa}");
    }
}

#[test]
fn disassembly_per_isa() {
    for (isa, lanes) in isas() {
        let out = ok(&["dump", &example("relu_bias.sg"), "--disasm", "--isa", isa]);
        let header = out.lines().next().unwrap();
        assert!(
            header.starts_with(&format!(
                "; subgraph subgraph0: kernel {isa}, pattern [full, full] (predicted), "
            )),
            "{header}"
        );
        // The stated code size covers every instruction offset printed.
        let size: usize = header
            .split(", ")
            .find_map(|p| p.strip_suffix(" bytes of code"))
            .unwrap()
            .parse()
            .unwrap();
        let last_offset = out
            .lines()
            .take_while(|l| !l.starts_with("pool:"))
            .filter_map(|l| l.trim().split_once(": "))
            .filter_map(|(o, _)| usize::from_str_radix(o, 16).ok())
            .max()
            .unwrap();
        assert!(last_offset < size, "{last_offset} < {size}");
        for insn in ["vaddps", "vmaxps", "ret"] {
            assert!(out.contains(insn), "{isa}: no {insn} in\n{out}");
        }
        let (reg, other) = if lanes == 16 {
            ("zmm", "ymm")
        } else {
            ("ymm", "zmm")
        };
        assert!(out.contains(reg) && !out.contains(other), "{isa}: {out}");

        let gelu = ok(&["dump", &example("gelu_chain.sg"), "--disasm", "--isa", isa]);
        assert!(gelu.contains("vfmadd"), "{isa}: no FMA in\n{gelu}");
    }
}

/// The `#   name: value` line of a --dim dump.
fn field<'a>(out: &'a str, name: &str) -> &'a str {
    let key = format!("#   {name}: ");
    out.lines()
        .find_map(|l| l.strip_prefix(&key))
        .unwrap_or_else(|| panic!("no {name} line in\n{out}"))
}

#[test]
fn dim_prints_the_configured_domain_of_the_worked_example() {
    for (isa, lanes) in isas() {
        let out = ok(&[
            "dump",
            &example("relu_bias.sg"),
            "--dim",
            "N=3",
            "--dim",
            "C=37",
            "--isa",
            isa,
        ]);
        let (n, c, elem) = (3i64, 37i64, 4i64);
        // The main loop advances each incremented pointer by floor(C / lanes) vectors;
        // after a row, x and y move on by what is left of the row, b goes back.
        let advanced = c / lanes as i64 * lanes as i64 * elem;
        let (x_inc, b_inc) = (c * elem - advanced, -advanced);
        assert_eq!((x_inc, b_inc), (20, -128));
        assert_eq!(field(&out, "inputs"), "x f32[3, 37], b f32[1, 37]");
        assert_eq!(
            field(&out, "domain"),
            format!("dims [{n}, {c}], parallel [], M {n}, W {c}")
        );
        assert_eq!(
            field(&out, "pattern"),
            "[full, full] (the predicted kernel)"
        );
        assert_eq!(
            field(&out, "strides (elements, per domain dim)"),
            "x [37, 1], b [0, 1], y [37, 1]"
        );
        // The block is the kernel's linear IR evaluated: one outer-loop increment per
        // port, the row stride minus what the main loop advanced.
        let m = format!("L0 inc stride1 - main0/{lanes}");
        assert_eq!(
            field(&out, &format!("argument block (bytes, {lanes} lanes)")),
            format!("x {m} = {x_inc}, b {m} = {b_inc}, y {m} = {x_inc}")
        );
        assert_eq!(
            field(&out, "inner loop"),
            format!(
                "W 37 = {} x {lanes} lanes + tail {}",
                37 / lanes,
                37 % lanes
            )
        );
        assert!(out.contains(
            "#     item 0: rows 0..3, elements 0..37: 1 call(s), inner_work 37, outer_work [3]"
        ));
    }
}

#[test]
fn dim_argument_block_follows_each_ports_element_size() {
    // fixtures/narrow_ports.sg: y: bf16[N, C] = Convert(Relu(Convert(x: u8[N, C]) + b:
    // f32[1, C])). Per row, the main loop advances x by floor(C / lanes) vectors of u8
    // (lanes bytes each), b of f32 (4 lanes bytes) and y of bf16 (2 lanes bytes); the
    // outer increment is the row stride in bytes minus that (b's stride is 0).
    //   C = 37: 2 x 16 or 4 x 8 lanes = 32 elements: x 37 - 32 = 5, b -128, y 74 - 64 = 10
    //   C = 13, AVX-512: no full vector: x 13, b 0, y 26
    //   C = 13, AVX2: 1 x 8 lanes: x 13 - 8 = 5, b -32, y 26 - 16 = 10
    // The f32 numbers would be x 20, b -128, y 20 for C = 37.
    let want = |isa: &str, c: usize| {
        let (x, b, y) = match (isa, c) {
            (_, 37) => (5, -128, 10),
            ("avx512", 13) => (13, 0, 26),
            ("avx2", 13) => (5, -32, 10),
            _ => unreachable!(),
        };
        let lanes = if isa == "avx512" { 16 } else { 8 };
        let m = format!("L0 inc stride1 - main0/{lanes}");
        format!("x {m} = {x}, b {m} = {b}, y {m} = {y}")
    };
    for (isa, lanes) in isas() {
        for c in [37, 13] {
            let out = ok(&[
                "dump",
                &fixture("narrow_ports.sg"),
                "--dim",
                "N=3",
                "--dim",
                &format!("C={c}"),
                "--isa",
                isa,
            ]);
            assert_eq!(
                field(&out, "inputs"),
                format!("x u8[3, {c}], b f32[1, {c}]")
            );
            assert_eq!(field(&out, "element bytes"), "x 1, b 4, y 2");
            assert_eq!(
                field(&out, "strides (elements, per domain dim)"),
                format!("x [{c}, 1], b [0, 1], y [{c}, 1]")
            );
            assert_eq!(
                field(&out, &format!("argument block (bytes, {lanes} lanes)")),
                want(isa, c),
                "{isa}, C={c}"
            );
        }
    }
}

#[test]
fn dim_thread_split_shows_non_temporal_stores() {
    // gelu_chain at N = 2048: one row of 2 Mi f32 outputs, exactly the 8 MiB from
    // which the executor's main loop stores non-temporally.
    assert_eq!(2048 * 1024 * 4, snipjit_runtime::NT_STORE_MIN_BYTES);
    let out = ok(&["dump", &example("gelu_chain.sg"), "--dim", "N=2048"]);
    assert!(
        field(&out, "thread split").starts_with("1 work item(s) (for vector-aligned outputs"),
        "{out}"
    );
    assert!(out.contains(
        "#     item 0: rows 0..1, elements 0..2097152: 1 call(s), inner_work 2097152, outer_work [1], non-temporal stores\n"
    ), "{out}");
    // A bf16 output of as many elements is stored with ordinary stores (the kernel
    // has no narrow non-temporal store), over 2 threads in whole vectors.
    let out = ok(&[
        "dump",
        &fixture("narrow_ports.sg"),
        "--dim",
        "N=1",
        "--dim",
        "C=2097152",
        "--threads",
        "2",
    ]);
    assert_eq!(
        field(&out, "domain"),
        "dims [1, 2097152], parallel [], M 1, W 2097152"
    );
    assert_eq!(field(&out, "thread split"), "2 work item(s)");
    assert!(!out.contains("non-temporal"), "{out}");
    assert!(out.contains(
        "#     item 1: rows 0..1, elements 1048576..2097152: 1 call(s), inner_work 1048576, outer_work [1]\n"
    ), "{out}");
}

#[test]
fn dim_with_another_pattern_compiles_and_shows_that_kernel() {
    // C = 1: the domain is one row of N elements and b is broadcast along it.
    let out = ok(&[
        "dump",
        &example("relu_bias.sg"),
        "--dim",
        "N=5",
        "--dim",
        "C=1",
        "--disasm",
    ]);
    assert_eq!(field(&out, "domain"), "dims [1, 5], parallel [], M 1, W 5");
    assert!(
        field(&out, "pattern").starts_with("[full, bcast] (not the predicted [full, full]"),
        "{out}"
    );
    // Both kernels are listed, the second one marked as the one these shapes use.
    assert!(out.contains("pattern [full, full] (predicted), "), "{out}");
    assert!(
        out.contains("pattern [full, bcast] (--dim shapes), "),
        "{out}"
    );

    // --print-after lowers the same pattern: b is marked broadcast along the row.
    let ir = ok(&[
        "dump",
        &example("relu_bias.sg"),
        "--dim",
        "N=5",
        "--dim",
        "C=1",
        "--print-after",
        "build",
    ]);
    assert!(ir.contains("; subgraph subgraph0: after build ("), "{ir}");
    assert!(ir.contains(", pattern [full, bcast])"), "{ir}");
    assert!(ir.contains("  in1 b: f32[1, C] bcast_inner\n"), "{ir}");
    assert!(ir.contains("  in0 x: f32[N, C]\n"), "{ir}");
}

#[test]
fn dim_thread_split() {
    // gelu_chain: [N, 1024] collapses to one row; 2 threads split it in halves once
    // there are enough elements (the executor keeps at least 64 Ki elements a thread).
    let out = ok(&[
        "dump",
        &example("gelu_chain.sg"),
        "--dim",
        "N=128",
        "--threads",
        "2",
    ]);
    assert_eq!(
        field(&out, "domain"),
        "dims [1, 131072], parallel [], M 1, W 131072"
    );
    assert!(out.contains("#   thread split: 2 work item(s)\n"), "{out}");
    assert!(
        out.contains("#     item 0: rows 0..1, elements 0..65536: 1 call(s), inner_work 65536")
    );
    assert!(
        out.contains(
            "#     item 1: rows 0..1, elements 65536..131072: 1 call(s), inner_work 65536"
        )
    );
    let small = ok(&[
        "dump",
        &example("gelu_chain.sg"),
        "--dim",
        "N=4",
        "--threads",
        "2",
    ]);
    assert!(
        small.contains("#   thread split: 1 work item(s)\n"),
        "{small}"
    );
    // Rows split for a multi-row domain: relu_bias [64 Ki, 2] with a broadcast b.
    let rows = ok(&[
        "dump",
        &example("relu_bias.sg"),
        "--dim",
        "N=65536",
        "--dim",
        "C=2",
        "--threads",
        "2",
    ]);
    assert_eq!(
        field(&rows, "domain"),
        "dims [65536, 2], parallel [], M 65536, W 2"
    );
    assert!(rows.contains("#     item 1: rows 32768..65536, elements 0..2: 1 call(s), inner_work 2, outer_work [32768]"), "{rows}");
}

#[test]
fn dim_on_an_interpreted_subgraph_names_the_reason() {
    let out = ok(&["dump", &fixture("i64_port.sg"), "--dim", "N=2"]);
    assert_eq!(field(&out, "inputs"), "ids0 i64[2, 64], x0 f32[2, 64]");
    assert!(
        field(&out, "runs on the interpreter").contains(I64_REASON),
        "{out}"
    );
    // No kernel, so no domain, argument block or split.
    for absent in ["#   domain:", "#   argument block:", "#   thread split:"] {
        assert!(!out.contains(absent), "{absent} in\n{out}");
    }

    // select_convert's bool and bf16 ports compile: the kernel's values are shown.
    let out = ok(&["dump", &example("select_convert.sg"), "--dim", "N=2"]);
    assert!(!out.contains("runs on the interpreter"), "{out}");
    assert_eq!(
        field(&out, "inputs"),
        "x f32[2, 64], lo f32[1, 64], hi f32[1, 64]"
    );
    assert_eq!(
        field(&out, "domain"),
        "dims [2, 64], parallel [], M 2, W 64"
    );
    assert_eq!(
        field(&out, "element bytes"),
        "x 4, lo 4, hi 4, outside 1, y 2"
    );
}

#[test]
fn dump_errors_are_one_line() {
    let m = example("relu_bias.sg");
    let valid = format!("valid passes: {}", passes().join(", "));
    fails(
        &["dump", &m, "--print-after", "nope"],
        &["unknown pass 'nope'", &valid],
    );
    fails(
        &["dump", &m, "--dim", "N"],
        &["bad --dim 'N'", "NAME=VALUE"],
    );
    fails(&["dump", &m, "--dim", "N=x"], &["bad --dim 'N=x'"]);
    fails(
        &["dump", &m, "--dim", "N=3"],
        &["input 'x'", "dim 1", "unbound symbol 'C'", "--dim C=VALUE"],
    );
    fails(
        &["dump", &m, "--dim", "N=3", "--dim", "Q=4"],
        &["--dim Q", "N, C"],
    );
    // An anonymous dim cannot be bound.
    let dir = std::env::temp_dir().join(format!("snipjit-dump-anon-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let anon = dir.join("anon.sg");
    std::fs::write(
        &anon,
        "graph anon(x: f32[?, 4]) {\n  y: f32[?, 4] = Relu(x)\n  return y\n}\n",
    )
    .unwrap();
    let anon_s = anon.display().to_string();
    let o = snipjit(&["dump", &anon_s, "--fused"]);
    assert_eq!(o.status.code(), Some(0));
    fails(&["dump", &anon_s, "--disasm", "--dim", "N=1"], &["--dim N"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn anonymous_dims_are_named_in_the_error() {
    let dir = std::env::temp_dir().join(format!("snipjit-dump-anon2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("m.sg");
    std::fs::write(
        &p,
        "graph m(x: f32[N, ?]) {\n  y: f32[N, ?] = Relu(x)\n  return y\n}\n",
    )
    .unwrap();
    fails(
        &["dump", &p.display().to_string(), "--dim", "N=2"],
        &["input 'x'", "dim 1", "anonymous"],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Checks DOT text: a digraph, balanced braces, every edge endpoint declared.
fn check_dot(text: &str) -> (BTreeSet<String>, usize) {
    assert!(text.starts_with("digraph \""), "{text}");
    let mut depth = 0i64;
    let mut in_str = false;
    let mut prev = ' ';
    for c in text.chars() {
        match c {
            '"' if prev != '\\' => in_str = !in_str,
            '{' if !in_str => depth += 1,
            '}' if !in_str => {
                depth -= 1;
                assert!(depth >= 0, "unbalanced braces");
            }
            _ => {}
        }
        prev = if prev == '\\' && c == '\\' { ' ' } else { c };
    }
    assert_eq!(depth, 0, "unbalanced braces");
    assert!(!in_str, "unterminated string");
    let mut declared = BTreeSet::new();
    let mut edges = 0;
    for line in text.lines().map(str::trim) {
        if let Some((src, rest)) = line.split_once(" -> ") {
            let dst = rest.split(' ').next().unwrap().trim_end_matches(';');
            for id in [src, dst] {
                assert!(
                    declared.contains(id),
                    "edge endpoint {id} is not declared before use"
                );
            }
            edges += 1;
        } else if let Some((id, _)) = line.split_once(" [label=") {
            assert!(!id.contains(' '), "{line}");
            declared.insert(id.to_string());
        }
    }
    (declared, edges)
}

/// Renders with Graphviz if it is installed.
fn render_with_dot(text: &str) {
    let Ok(mut child) = Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        eprintln!("skipped: rendering with Graphviz (no `dot` on this machine)");
        return;
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "dot rejected the output: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("<svg"));
}

#[test]
fn dot_output_is_well_formed() {
    let plain = ok(&["dump", &example("mha.sg"), "--format", "dot"]);
    let (ids, edges) = check_dot(&plain);
    // mha.sg: 4 parameters, 10 ops, 1 result; 4 + 2*2 + 6 + 1 edges... counted from the text.
    let src = std::fs::read_to_string(examples().join("mha.sg")).unwrap();
    let ops = src.lines().filter(|l| l.contains(" = ")).count();
    assert_eq!(ids.len(), 4 + ops + 1);
    assert!(!plain.contains("cluster"));
    assert!(edges >= ops);
    render_with_dot(&plain);

    let fused = ok(&["dump", &example("mha.sg"), "--fused", "--format", "dot"]);
    let (ids, _) = check_dot(&fused);
    assert!(fused.contains("subgraph cluster_0 {"));
    // The whole attention block is one mha subgraph, on the MHA kernel where the CPU
    // has a JIT ISA.
    let jit = std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
    let want = if jit {
        "jit true (MHA kernel)"
    } else {
        "jit false"
    };
    assert!(
        fused.contains(&format!("label=\"subgraph0\\nkind mha\\n{want}")),
        "{fused}"
    );
    // The body's ops are inside the cluster, with their own ids.
    assert!(ids.contains("c0_n0") && ids.iter().any(|i| i.starts_with("c0_") && i != "c0_n0"));
    // The host parameter q feeds the body's first parameter.
    assert!(
        fused
            .lines()
            .any(|l| l.trim() == "n0 -> c0_n0 [label=\"q\"];")
    );
    render_with_dot(&fused);

    let refused = ok(&[
        "dump",
        &fixture("i64_port.sg"),
        "--fused",
        "--format",
        "dot",
    ]);
    check_dot(&refused);
    assert!(
        refused.contains(&format!("\\njit false (cannot lower: {I64_REASON}")),
        "{refused}"
    );
    render_with_dot(&refused);

    let typed = ok(&[
        "dump",
        &example("select_convert.sg"),
        "--fused",
        "--format",
        "dot",
    ]);
    check_dot(&typed);
    assert!(
        typed.contains("label=\"subgraph0\\nkind elementwise\\njit true\";"),
        "{typed}"
    );
    assert!(!typed.contains("jit false"), "{typed}");
    render_with_dot(&typed);
}

#[test]
fn dot_conflicts_with_text_sections() {
    let o = snipjit(&[
        "dump",
        &example("relu_bias.sg"),
        "--format",
        "dot",
        "--disasm",
    ]);
    assert_eq!(o.status.code(), Some(2), "a usage error");
}

/// The model line among `lines` (one per combination; the first).
fn model_line(lines: &[serde_json::Value]) -> &serde_json::Value {
    lines
        .iter()
        .find(|v| v["subgraph"] == "model")
        .expect("a model line")
}

fn json_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

const KEYS: [&str; 15] = [
    "workload",
    "subgraph",
    "kind",
    "dims",
    "shape",
    "threads",
    "isa",
    "peer",
    "median_us",
    "min_us",
    "max_us",
    "gbps",
    "gflops",
    "compilations",
    "compile_us",
];

fn keys(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn bench_json_lines() {
    let out = ok(&[
        "bench",
        &example("relu_bias.sg"),
        "--dim",
        "N=3,64",
        "--dim",
        "C=37",
        "--json",
        "--target-ms",
        "1",
        "--min-iters",
        "3",
    ]);
    let lines = json_lines(&out);
    assert_eq!(
        lines.len(),
        4,
        "model + 1 subgraph, for 2 combinations:\n{out}"
    );
    let want: BTreeSet<String> = KEYS.iter().map(|k| k.to_string()).collect();
    let mut want_model = want.clone();
    want_model.insert("first_call_us".into());
    want_model.insert("first_call_outputs".into());
    want_model.insert("fresh_inputs_us".into());
    want_model.insert("idle_inputs_us".into());
    want_model.insert("first_compile_us".into());
    want_model.insert("shape_seen".into());
    for (i, (v, n)) in lines.iter().zip([3, 3, 64, 64]).enumerate() {
        let is_model = i % 2 == 0;
        if is_model {
            // relu_bias's output [N, C] follows from the bindings: the first call
            // writes into bound outputs.
            assert_eq!(v["first_call_outputs"], "bound", "{v}");
        }
        assert_eq!(
            keys(v),
            if is_model {
                want_model.clone()
            } else {
                want.clone()
            }
        );
        assert_eq!(v["workload"], "relu_bias");
        assert_eq!(v["subgraph"], if is_model { "model" } else { "subgraph0" });
        assert_eq!(v["kind"], if is_model { "model" } else { "elementwise" });
        assert_eq!(v["dims"], serde_json::json!({"N": n, "C": 37}));
        // The dims object keeps the given order.
        assert!(
            out.lines()
                .nth(i)
                .unwrap()
                .contains(&format!("\"dims\":{{\"N\":{n},\"C\":37}}"))
        );
        assert_eq!(v["shape"], format!("N{}", n * 37));
        assert_eq!(v["threads"], 1);
        assert_eq!(v["peer"], "snipjit");
        // One kernel serves both shapes: [N, 37] + [1, 37] is one broadcast pattern.
        assert_eq!(v["compilations"], 1);
        assert!(v["gflops"].is_null(), "no MatMul");
        let (med, min, max) = (
            v["median_us"].as_f64().unwrap(),
            v["min_us"].as_f64().unwrap(),
            v["max_us"].as_f64().unwrap(),
        );
        assert!(0.0 < min && min <= med && med <= max, "{v}");
        // x, b and y, f32.
        let bytes = ((n * 37 + 37 + n * 37) * 4) as f64;
        let gbps = v["gbps"].as_f64().unwrap();
        let want_gbps = bytes / (med * 1e-6) / 1e9;
        assert!(
            (gbps - want_gbps).abs() <= 1e-3 + 1e-3 * want_gbps,
            "{gbps} vs {want_gbps}"
        );
        assert!(v["compile_us"].as_f64().unwrap() > 0.0);
        if is_model {
            assert!(v["first_call_us"].as_f64().unwrap() > 0.0);
            assert!(v["fresh_inputs_us"].as_f64().unwrap() > 0.0);
            assert!(v["idle_inputs_us"].as_f64().unwrap() > 0.0);
            assert!(v["first_compile_us"].as_f64().unwrap() > 0.0);
            assert_eq!(v["shape_seen"], false, "N = 3 and 64 are both new: {v}");
        }
        if has_avx512() {
            assert_eq!(v["isa"], "avx512");
        }
    }
    // The model line's compile time (tokenize + compile every kernel) is one number.
    assert_eq!(lines[0]["compile_us"], lines[2]["compile_us"]);
}

#[test]
fn bench_workload_override_attention_shape_and_flops() {
    let out = ok(&[
        "bench",
        &example("mha.sg"),
        "--dim",
        "B=1",
        "--dim",
        "S=8,16",
        "--json",
        "--workload",
        "mha",
        "--target-ms",
        "0",
        "--min-iters",
        "1",
    ]);
    let lines = json_lines(&out);
    let models: Vec<&serde_json::Value> =
        lines.iter().filter(|v| v["subgraph"] == "model").collect();
    assert_eq!(models.len(), 2);
    for (v, s) in models.iter().zip([8usize, 16]) {
        assert_eq!(v["workload"], "mha");
        assert_eq!(v["shape"], format!("B1_S{s}_H12_D64"));
        // Q·Kᵀ and P·V: 2·B·H·S·S·D flops each.
        let flops = 4.0 * (12 * s * s * 64) as f64;
        let want = flops / (v["median_us"].as_f64().unwrap() * 1e-6) / 1e9;
        let got = v["gflops"].as_f64().unwrap();
        assert!((got - want).abs() <= 1e-3 + 1e-3 * want, "{got} vs {want}");
    }
    // The block is one mha subgraph: one MHA kernel compiled for both shapes (none
    // without AVX2, where the interpreter runs it).
    let jit = std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
    let want = if jit { 1 } else { 0 };
    assert!(lines.iter().all(|v| v["compilations"] == want), "{out}");
    assert!(lines.iter().any(|v| v["kind"] == "mha"), "{out}");
}

#[test]
fn bench_table_and_errors() {
    let out = ok(&[
        "bench",
        &example("gelu_chain.sg"),
        "--dim",
        "N=2",
        "--target-ms",
        "0",
        "--min-iters",
        "2",
    ]);
    assert!(out.contains("N=2 (shape N2048)"), "{out}");
    assert!(out.contains("median_us") && out.contains("GB/s"));
    assert!(out.lines().any(|l| l.trim_start().starts_with("model ")));
    assert!(
        out.lines()
            .any(|l| l.trim_start().starts_with("subgraph0 "))
    );

    let m = example("gelu_chain.sg");
    fails(&["bench", &m, "--dim", "N=1,x"], &["bad --dim 'N=1,x'"]);
    fails(&["bench", &m], &["input 'x'", "unbound symbol 'N'"]);
    fails(
        &["bench", &m, "--dim", "N=1", "--min-iters", "0"],
        &["--min-iters"],
    );
    fails(
        &["bench", &m, "--dim", "N=1", "--target-ms=-1"],
        &["--target-ms"],
    );
    fails(&["bench", &m, "--dim", "M=1"], &["--dim M"]);
}

#[test]
fn bench_isa_choice_and_interpreted_subgraphs() {
    if has_avx2() {
        let out = ok(&[
            "bench",
            &example("relu_bias.sg"),
            "--dim",
            "N=2",
            "--dim",
            "C=20",
            "--isa",
            "avx2",
            "--json",
            "--target-ms",
            "0",
            "--min-iters",
            "1",
        ]);
        assert!(json_lines(&out).iter().all(|v| v["isa"] == "avx2"), "{out}");
        let fused = ok(&["dump", &example("relu_bias.sg"), "--fused", "--isa", "avx2"]);
        assert!(
            fused.contains("# 1 subgraph(s), 1 compiled for avx2"),
            "{fused}"
        );
    } else {
        eprintln!("skipped: --isa avx2 checks (this CPU lacks AVX2/FMA/BMI2)");
    }
    // i64_port's subgraph has an i64 input port: the interpreter runs it, no kernel is
    // compiled, and its line has no compile time.
    let out = ok(&[
        "bench",
        &fixture("i64_port.sg"),
        "--dim",
        "N=4",
        "--json",
        "--target-ms",
        "0",
        "--min-iters",
        "1",
    ]);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2);
    let sub = &lines[1];
    assert_eq!(sub["subgraph"], "subgraph0");
    assert!(sub["compile_us"].is_null());
    assert!(lines.iter().all(|v| v["compilations"] == 0), "{out}");
    // ids in (i64), x in and y out (f32).
    let bytes = (4 * 64 * 8 + 4 * 64 * 4 + 4 * 64 * 4) as f64;
    let want = bytes / (sub["median_us"].as_f64().unwrap() * 1e-6) / 1e9;
    let got = sub["gbps"].as_f64().unwrap();
    assert!((got - want).abs() <= 1e-3 + 1e-3 * want, "{got} vs {want}");

    // select_convert's bool and bf16 ports compile: one kernel, with a compile time.
    let out = ok(&[
        "bench",
        &example("select_convert.sg"),
        "--dim",
        "N=4",
        "--json",
        "--target-ms",
        "0",
        "--min-iters",
        "1",
    ]);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2);
    let sub = &lines[1];
    assert_eq!(sub["subgraph"], "subgraph0");
    assert!(sub["compile_us"].as_f64().unwrap() > 0.0, "{out}");
    assert!(lines.iter().all(|v| v["compilations"] == 1), "{out}");
    // x, lo, hi in (f32); the subgraph's outputs are a bool mask and a bf16 tensor.
    let bytes = ((4 * 64 + 64 + 64) * 4 + 4 * 64 + 4 * 64 * 2) as f64;
    let want = bytes / (sub["median_us"].as_f64().unwrap() * 1e-6) / 1e9;
    let got = sub["gbps"].as_f64().unwrap();
    assert!((got - want).abs() <= 1e-3 + 1e-3 * want, "{got} vs {want}");
}

#[test]
fn bench_marks_a_combination_whose_shapes_ran_before() {
    // N = 3 twice (and C = 37 always): the third combination re-enters the first's
    // shapes, the second's are new.
    let out = ok(&[
        "bench",
        &example("relu_bias.sg"),
        "--dim",
        "N=3,64,3",
        "--dim",
        "C=37",
        "--json",
        "--target-ms",
        "1",
        "--min-iters",
        "2",
    ]);
    let models: Vec<serde_json::Value> = json_lines(&out)
        .into_iter()
        .filter(|v| v["subgraph"] == "model")
        .collect();
    let seen: Vec<(u64, bool)> = models
        .iter()
        .map(|v| {
            (
                v["dims"]["N"].as_u64().unwrap(),
                v["shape_seen"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen, [(3, false), (64, false), (3, true)], "{out}");
    // Only model lines carry it.
    assert!(
        json_lines(&out)
            .iter()
            .filter(|v| v["subgraph"] != "model")
            .all(|v| v.get("shape_seen").is_none()),
        "{out}"
    );
}

#[test]
fn bench_first_call_with_fresh_outputs_allocates() {
    let out = ok(&[
        "bench",
        &example("relu_bias.sg"),
        "--dim",
        "N=5",
        "--dim",
        "C=37",
        "--json",
        "--target-ms",
        "1",
        "--min-iters",
        "2",
        "--fresh-outputs",
    ]);
    let lines = json_lines(&out);
    let model = model_line(&lines);
    assert_eq!(model["first_call_outputs"], "fresh", "{model}");
    assert!(model["first_call_us"].as_f64().unwrap() > 0.0, "{model}");
}

/// `--print-after` with MHA pass names prints the attention subgraph's MHA IR, and
/// `--dim` its scratch layout; numbers computed here from the blocking (48 × 128,
/// D = Dv = 64, K packed in 64-column panels on AVX-512, 16-column ones on AVX2).
#[test]
fn print_after_mha_passes_and_scratch() {
    let out = ok(&[
        "dump",
        &example("mha.sg"),
        "--print-after",
        "matmul_to_brgemm",
        "--print-after",
        "allocate_buffers",
        "--dim",
        "B=1",
        "--dim",
        "S=100",
    ]);
    assert_eq!(
        headers(&out, "subgraph0"),
        vec!["matmul_to_brgemm", "allocate_buffers"]
    );
    let sections: Vec<&str> = out.split("; subgraph subgraph0: after ").collect();
    assert!(sections[1].contains("= brgemm ") && sections[1].contains("= transpose "));
    assert!(!sections[2].contains("= transpose ") && sections[2].contains("loop kv "));
    let (scores, acc, ml) = (48 * 128 * 4, 48 * 64 * 4, 48 * 4);
    let panel = if has_avx512() { 64 } else { 16 };
    let kpack = 100usize.next_multiple_of(panel) * 64 * 4;
    let total = scores + acc + 2 * ml + kpack;
    assert!(
        out.contains(&format!(
            ";   @kpack offset={} bytes={kpack}",
            scores + acc + 2 * ml
        )),
        "{out}"
    );
    assert!(out.contains(&format!(";   total={total}")), "{out}");
    assert!(!out.contains("no linear IR"), "{out}");
}

#[test]
fn bench_reports_the_workers_cpu_share_on_two_threads() {
    let out = ok(&[
        "bench",
        &example("mha.sg"),
        "--dim",
        "B=1",
        "--dim",
        "S=256",
        "--threads",
        "2",
        "--json",
        "--target-ms",
        "20",
        "--min-iters",
        "3",
    ]);
    let lines = json_lines(&out);
    let model = model_line(&lines);
    // The worker took part in the timed calls (a parked, never-woken worker would
    // show about 0), and no thread can use more CPU time than the wall time.
    let share = model["worker_cpu_share"]
        .as_f64()
        .expect("a share on two threads");
    assert!(share > 0.0 && share <= 1.05, "{model}");
    // Kernel lines and one-thread runs have none.
    for v in lines.iter().filter(|v| v["subgraph"] != "model") {
        assert!(v.get("worker_cpu_share").is_none(), "{v}");
    }
}
