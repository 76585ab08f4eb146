//! Every `.sg` file in the repository (examples/**, tests/**) parses, verifies, and
//! prints back to exactly its own text (less full-line comments and blank lines,
//! which filetests use for headers and expectations). `SG_EXTRA_DIR=<dir>` adds
//! another directory, e.g. a crate's filetests. The graphs in docs/ir-format.md
//! parse too.

use std::path::{Path, PathBuf};

use snipjit_ir::text::{parse, print};
use snipjit_ir::{Dim, Op, verify};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// All `.sg` files under `dir`, recursively, sorted.
fn sg_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let p = e.expect("readable directory entry").path();
        if p.is_dir() {
            sg_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "sg") {
            out.push(p);
        }
    }
    out.sort();
}

fn repo_sg_files() -> Vec<PathBuf> {
    let root = workspace_root();
    let mut files = Vec::new();
    sg_files(&root.join("examples"), &mut files);
    sg_files(&root.join("tests"), &mut files);
    if let Ok(extra) = std::env::var("SG_EXTRA_DIR") {
        sg_files(Path::new(&extra), &mut files);
    }
    files
}

/// The text without full-line comments and blank lines: what a graph keeps.
///
/// Filetests carry a header and expectations in comments; a file without them
/// (every example) must print back byte for byte.
fn strip_comments(text: &str) -> String {
    text.lines()
        .filter(|l| {
            let t = l.trim_start();
            !t.is_empty() && !t.starts_with('#')
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn examples_have_no_comments() {
    let root = workspace_root();
    let mut files = Vec::new();
    sg_files(&root.join("examples"), &mut files);
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            strip_comments(&text),
            text,
            "{} is not canonical",
            path.display()
        );
    }
}

#[test]
fn every_sg_file_round_trips_exactly() {
    let files = repo_sg_files();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for required in [
        "silu.sg",
        "gelu_chain.sg",
        "relu_bias.sg",
        "mha.sg",
        "select_convert.sg",
    ] {
        assert!(
            names.iter().any(|n| n == required),
            "examples/{required} is missing"
        );
    }
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let file = path.display().to_string();
        let g = parse(&text, &file).unwrap_or_else(|e| panic!("{e}"));
        verify(&g).unwrap_or_else(|e| panic!("{file}: {e}"));
        let printed = print(&g);
        assert_eq!(
            printed,
            strip_comments(&text),
            "{file} does not print back identically"
        );
        assert_eq!(
            parse(&printed, &file).unwrap(),
            g,
            "{file}: reparse differs"
        );
    }
}

fn example(name: &str) -> snipjit_ir::Graph {
    let path = workspace_root().join("examples").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    parse(&text, name).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn gelu_chain_has_the_documented_structure() {
    let g = example("gelu_chain.sg");
    let ops: Vec<&str> = g.nodes.iter().map(|n| n.op.name()).collect();
    assert_eq!(
        ops,
        [
            "Parameter",
            "Constant",
            "Add",
            "Constant",
            "Mul",
            "GeluTanh",
            "Constant",
            "Mul",
            "Result"
        ]
    );
    let consts: Vec<f64> = g
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::Constant(t) => t.scalar_value(),
            _ => None,
        })
        .collect();
    assert_eq!(consts, [0.5, 1.25, 0.75]);
    let x = g.node(g.inputs[0]);
    assert_eq!(
        x.outputs[0].ty.shape.dims(),
        [Dim::sym("N"), Dim::Static(1024)]
    );
}

#[test]
fn mha_example_is_bert_attention() {
    let g = example("mha.sg");
    assert_eq!(g.inputs.len(), 4);
    let ops: Vec<&str> = g.nodes.iter().map(|n| n.op.name()).collect();
    for op in ["Transpose", "MatMul", "Mul", "Add", "Softmax"] {
        assert!(ops.contains(&op), "{op} missing");
    }
    let mm = g
        .nodes
        .iter()
        .find(|n| n.name == "scores")
        .expect("scores node");
    assert_eq!(
        mm.op,
        Op::MatMul {
            transpose_a: false,
            transpose_b: true
        }
    );
    let out = g.node(g.outputs[0]);
    let dims: Vec<String> = out.outputs[0]
        .ty
        .shape
        .dims()
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(dims, ["B", "S", "12", "64"]);
}

#[test]
fn fused_example_has_a_nested_body() {
    let g = example("silu_fused.sg");
    let node = g
        .nodes
        .iter()
        .find(|n| n.name == "subgraph0")
        .expect("subgraph node");
    let Op::Subgraph(sg) = &node.op else {
        panic!("not a subgraph: {:?}", node.op)
    };
    assert_eq!(sg.kind, snipjit_ir::SubgraphKind::Elementwise);
    assert_eq!(sg.body.name, "body");
    assert_eq!(sg.body.nodes.len(), 4);
    assert_eq!(node.outputs[0].name, "y");
}

/// The fenced code blocks of docs/ir-format.md.
fn doc_blocks() -> Vec<String> {
    let doc = std::fs::read_to_string(workspace_root().join("docs/ir-format.md")).unwrap();
    let mut blocks = Vec::new();
    let mut cur: Option<String> = None;
    for line in doc.lines() {
        if line.starts_with("```") {
            match cur.take() {
                Some(b) => blocks.push(b),
                None => cur = Some(String::new()),
            }
        } else if let Some(b) = &mut cur {
            b.push_str(line);
            b.push('\n');
        }
    }
    blocks
}

#[test]
fn graphs_in_the_format_doc_parse() {
    let graphs: Vec<String> = doc_blocks()
        .into_iter()
        .filter(|b| {
            b.lines()
                .find(|l| !l.starts_with('#'))
                .is_some_and(|l| l.starts_with("graph ") && !l.contains("NAME("))
        })
        .collect();
    assert!(graphs.len() >= 4, "found {} graph blocks", graphs.len());
    for b in &graphs {
        let g = parse(b, "docs/ir-format.md").unwrap_or_else(|e| panic!("{e}\n{b}"));
        verify(&g).unwrap();
        // Canonical blocks (no comments) print back identically.
        if !b.contains('#') {
            assert_eq!(print(&g), *b);
        }
    }
}

#[test]
fn constants_in_the_format_doc_parse() {
    let block = doc_blocks()
        .into_iter()
        .find(|b| b.starts_with("half: f32[] = Constant(0.5)"))
        .expect("the constants block");
    let src = format!("graph c() {{\n{block}  return\n}}\n");
    let g = parse(&src, "docs").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(g.nodes.len(), 5);
}
