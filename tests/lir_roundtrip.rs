//! The linear-IR text form carries everything: for the IR after every pass of the
//! pipeline, on the real x64 targets (and a tiny one that spills), parsing the printed
//! text gives back an equal `Lir`, and printing that gives the same text.

use snipjit_ir::Graph;
use snipjit_lower::Target;
use snipjit_lower::lir::{ExprKind, Lir, Location};
use snipjit_lower::lir_text::{parse_lir, print_lir};
use snipjit_x64::Isa;

fn tiny_scratch(k: &ExprKind) -> usize {
    match k {
        ExprKind::Unary(_) | ExprKind::PowStatic(_) => 1,
        _ => 0,
    }
}

/// 8 vector registers, so that allocation must spill.
const TINY: Target = Target {
    name: "tiny8",
    lanes: 4,
    vregs: 8,
    scratch: tiny_scratch,
};

fn graph(src: &str) -> Graph {
    snipjit_ir::text::parse(src, "body.sg").expect("test bodies parse")
}

/// `y = sum of 30 inputs`, each through Exp first so that all are live at once.
fn sum30() -> String {
    let names: Vec<String> = (0..30).map(|i| format!("x{i}")).collect();
    let params: Vec<String> = names.iter().map(|n| format!("{n}: f32[N, 64]")).collect();
    let mut s = format!("graph sum30({}) {{\n", params.join(", "));
    for n in &names {
        s += &format!("  e{n} = Exp({n})\n");
    }
    s += "  s1 = Add(ex0, ex1)\n";
    for i in 2..30 {
        s += &format!("  s{i} = Add(s{}, ex{i})\n", i - 1);
    }
    s += "  return s29\n}\n";
    s
}

/// (name, body, inputs broadcast along the inner dim)
fn bodies() -> Vec<(&'static str, String, Vec<bool>)> {
    vec![
        (
            "relu_bias",
            "graph relu_bias(x: f32[N, C], b: f32[1, C]) {\n  s = Add(x, b)\n  r = Relu(s)\n  \
             h = Constant(0.5)\n  m = Mul(r, h)\n  y = Add(m, x)\n  return y\n}\n"
                .into(),
            vec![false, false],
        ),
        (
            "column_bias",
            "graph column_bias(x: f32[N, C], b: f32[N, 1]) {\n  y = Sub(x, b)\n  return y\n}\n"
                .into(),
            vec![false, true],
        ),
        (
            "gelu_chain",
            std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/examples/gelu_chain.sg"
            ))
            .expect("examples/gelu_chain.sg exists"),
            vec![false],
        ),
        (
            "pow",
            "graph pow(x: f32[N, 40], e: f32[N, 40]) {\n  c = Constant(3)\n  p = Pow(x, c)\n  \
             h = Constant(-0.5)\n  q = Pow(p, h)\n  r = Pow(q, e)\n  return r\n}\n"
                .into(),
            vec![false, false],
        ),
        ("sum30", sum30(), vec![false; 30]),
        (
            "select_compare",
            "graph sel(x: f32[N, 64], lo: f32[1, 64], hi: f32[]) {\n  a = GreaterOrEqual(x, lo)\n  \
             b = Less(x, hi)\n  c = And(a, b)\n  d = Not(c)\n  z = Constant(0)\n  \
             k = Clamp(x, min=-6, max=6)\n  y = Select(c, k, z)\n  w = Select(d, x, y)\n  \
             return y, w\n}\n"
                .into(),
            vec![false, false, true],
        ),
    ]
}

fn check(lir: &Lir, what: &str) {
    let text = print_lir(lir);
    let back = parse_lir(&text, what).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(
        &back, lir,
        "{what}: parsed text differs from the IR\n{text}"
    );
    assert_eq!(print_lir(&back), text, "{what}: text does not print back");
}

#[test]
fn text_round_trips_after_every_pass() {
    let targets = [
        snipjit_x64::codegen::target(Isa::Avx512),
        snipjit_x64::codegen::target(Isa::Avx2),
        TINY,
    ];
    let mut spilled = vec![];
    for (name, src, bcast) in bodies() {
        let g = graph(&src);
        for target in &targets {
            let mut passes = vec![];
            let lir = snipjit_lower::lower(&g, &bcast, target, &mut |pass, lir| {
                check(lir, &format!("{name} on {} after {pass}", target.name));
                passes.push(pass.to_string());
            })
            .unwrap_or_else(|e| panic!("{name} on {}: {e}", target.name));
            assert_eq!(passes, snipjit_lower::pipeline::pass_names());
            if lir
                .locations
                .iter()
                .any(|l| matches!(l, Some(Location::Spill(_))))
            {
                spilled.push(format!("{name}/{}", target.name));
            }
        }
    }
    // The register-pressure cases do spill, so spill slots and temporaries were covered.
    assert!(spilled.contains(&"sum30/tiny8".to_string()), "{spilled:?}");
    assert!(spilled.contains(&"sum30/avx2".to_string()), "{spilled:?}");
}

/// The linear-IR examples in docs/ir-format.md are canonical text of valid IR.
#[test]
fn doc_examples_are_canonical() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/ir-format.md"))
        .expect("docs/ir-format.md exists");
    let mut found = 0;
    for block in doc.split("```").skip(1).step_by(2) {
        let Some(text) = block.strip_prefix('\n').filter(|b| b.starts_with("lir ")) else {
            continue;
        };
        let lir = parse_lir(text, "docs/ir-format.md").unwrap_or_else(|e| panic!("{e}"));
        snipjit_lower::verify::verify(&lir).unwrap();
        assert_eq!(print_lir(&lir), text);
        found += 1;
    }
    assert_eq!(found, 2, "the before/after register allocation examples");
}
