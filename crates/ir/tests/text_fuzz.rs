//! The parser never panics: truncated prefixes of every example, random mutations
//! of them, and random byte strings all give `Ok` or `Err`. Whatever parses is a
//! valid graph whose printed form parses back to the same text.

mod rng;
use rng::Rng;

use std::path::{Path, PathBuf};

use snipjit_ir::text::{parse, print};
use snipjit_ir::verify;

fn example_texts() -> Vec<(String, String)> {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).expect("examples/ exists") {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "sg") {
            out.push((
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            ));
        }
    }
    out.sort();
    assert!(
        out.len() >= 5,
        "expected the example models in {}",
        dir.display()
    );
    out
}

/// Iterations of the random tests: `SG_FUZZ_ITERS` (default 3000) for longer runs.
fn iters() -> usize {
    std::env::var("SG_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

/// Parses; on success checks that the graph verifies and prints stably.
fn check(src: &str) -> bool {
    match parse(src, "fuzz.sg") {
        Ok(g) => {
            verify(&g).unwrap_or_else(|e| panic!("parsed graph does not verify: {e}\n{src}"));
            let text = print(&g);
            let again = parse(&text, "printed.sg")
                .unwrap_or_else(|e| panic!("printed text does not parse: {e}\n{text}"));
            assert_eq!(print(&again), text, "printing is not stable for\n{src}");
            true
        }
        Err(e) => {
            assert!(e.line >= 1 && e.col >= 1, "positions are 1-based: {e}");
            assert!(!e.message.is_empty());
            false
        }
    }
}

#[test]
fn truncated_prefixes_of_every_example() {
    for (name, text) in example_texts() {
        let mut ok = 0;
        for (i, _) in text.char_indices().chain([(text.len(), ' ')]) {
            if check(&text[..i]) {
                ok += 1;
            }
        }
        // Only the whole file (and the file minus its final newline) parse.
        assert_eq!(ok, 2, "{name}: a strict prefix parsed");
    }
}

#[test]
fn random_mutations_of_the_examples() {
    const ALPHABET: &[u8] =
        b"graph(){}[],:=@?-#\"\\\n 0123456789.exNnanif_/Add Constant Subgraph kind=mha";
    let texts = example_texts();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut parsed = 0;
    for _ in 0..iters() {
        let (_, text) = &texts[rng.below(texts.len())];
        let mut bytes = text.as_bytes().to_vec();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(bytes.len() + 1);
            let c = ALPHABET[rng.below(ALPHABET.len())];
            match rng.below(3) {
                0 if at < bytes.len() => {
                    bytes.remove(at);
                }
                1 if at < bytes.len() => bytes[at] = c,
                _ => bytes.insert(at, c),
            }
        }
        if check(&String::from_utf8_lossy(&bytes)) {
            parsed += 1;
        }
    }
    // Some mutations (in comments, names, numbers) keep the text valid.
    assert!(
        parsed > 0,
        "no mutation parsed; the mutator is too destructive"
    );
}

#[test]
fn random_byte_strings() {
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    for i in 0..iters() {
        let len = rng.below(200);
        let bytes: Vec<u8> = (0..len).map(|_| (rng.next() >> 24) as u8).collect();
        assert!(
            !check(&String::from_utf8_lossy(&bytes)),
            "random bytes {i} parsed"
        );
    }
    // Random token soup is closer to the grammar than random bytes.
    let words = [
        "graph", "g", "(", ")", "{", "}", "[", "]", ",", ":", "=", "@", "?", "-", "\n", "f32", "x",
        "N", "1", "-1", "0.5", "nan", "inf", "Add", "Constant", "Subgraph", "return", "input",
        "output", "kind", "axis", "\"q\"",
    ];
    for _ in 0..iters() {
        let n = rng.below(40);
        let src: Vec<&str> = (0..n).map(|_| words[rng.below(words.len())]).collect();
        check(&src.join(" "));
    }
}

#[test]
fn pathological_inputs() {
    let deep_brackets = "graph g(x: f32[".to_string() + &"[".repeat(100_000);
    check(&deep_brackets);
    let deep_parens = "(".repeat(100_000);
    check(&deep_parens);
    let mut nested = String::from("graph g(x: f32[]) {\n");
    for i in 0..5000 {
        nested.push_str(&format!(
            "y{i} = Subgraph(x, kind=elementwise) graph b(x: f32[]) {{\n"
        ));
    }
    check(&nested);
    let huge = usize::MAX;
    for src in [
        format!("graph g(x: f32[{huge}]) {{\n  y = Concat(x, x, x, axis=0)\n  return y\n}}\n"),
        format!(
            "graph g(x: f32[{huge}, {huge}]) {{\n  s: i64[2] = Constant([-1, 1])\n  y = Reshape(x, s)\n  return y\n}}\n"
        ),
        format!(
            "graph g(x: f32[{huge}]) {{\n  c: f32[{huge}, {huge}] = Constant([])\n  return c\n}}\n"
        ),
        format!(
            "graph g(x: f32[2]) {{\n  y = Softmax(x, axis={})\n  return y\n}}\n",
            i64::MIN
        ),
        format!(
            "graph g(x: f32[2]) {{\n  y = Unsqueeze(x, axes=[{}])\n  return y\n}}\n",
            i64::MAX
        ),
        "graph g(x: f32[2]) {\n  y = Transpose(x, perm=[18446744073709551615])\n  return y\n}\n"
            .to_string(),
        "graph g(x: f32[2]) {\n  c = Constant(99999999999999999999)\n  return c\n}\n".to_string(),
    ] {
        check(&src);
    }
}

#[test]
fn byte_order_mark_and_crlf_are_accepted() {
    let g = parse(
        "\u{feff}graph g(x: f32[4]) {\r\n  y = Relu(x)\r\n  return y\r\n}\r\n",
        "crlf.sg",
    )
    .unwrap();
    assert_eq!(
        print(&g),
        "graph g(x: f32[4]) {\n  y: f32[4] = Relu(x)\n  return y\n}\n"
    );
}

#[test]
fn printing_malformed_graphs_does_not_panic() {
    use snipjit_ir::{DType, Graph, Node, NodeId, Op, Output, Shape, TensorType, ValueRef};
    let t = TensorType::new(DType::F32, Shape::fixed(&[2]));
    let out = |name: &str| Output {
        name: name.into(),
        ty: t.clone(),
    };
    let mut g = Graph::new("broken");
    let x = g.add_input("x", t.clone());
    // Reads a missing node and a missing port.
    g.add_node(Node {
        name: "dangling".into(),
        op: Op::Binary(snipjit_ir::BinaryOp::Add),
        inputs: vec![ValueRef::new(NodeId(99), 0), ValueRef::new(x.node, 7)],
        outputs: vec![out("d")],
    });
    // A Parameter that is not a graph input, a Result that is not an output.
    g.add_node(Node {
        name: "p".into(),
        op: Op::Parameter,
        inputs: vec![],
        outputs: vec![out("p")],
    });
    g.add_node(Node {
        name: "r".into(),
        op: Op::Result,
        inputs: vec![],
        outputs: vec![],
    });
    g.inputs.push(NodeId(1234));
    g.outputs.push(NodeId(2));
    g.outputs.push(NodeId(4321));
    let text = print(&g);
    assert!(
        text.starts_with("graph broken(x: f32[2], \"<bad input n1234>\") {\n"),
        "{text}"
    );
    assert!(
        text.contains("Add(\"<missing n99:0>\", \"<missing n0:7>\")"),
        "{text}"
    );
    assert!(parse(&text, "broken.sg").is_err());
}
