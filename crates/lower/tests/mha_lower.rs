//! The MHA lowering on whole attention bodies: the plan's numbers against the ones
//! the runtime's `MhaKernel` uses today, and the scratch layout's invariants.

use snipjit_lower::mha::{MhaTarget, lower_mha_body};

fn body(src: &str) -> snipjit_ir::Graph {
    snipjit_ir::text::parse(src, "test.sg").expect("test graph parses")
}

#[test]
fn smoke_print_all() {
    let g = body(&std::fs::read_to_string("/tmp/bert.sg").unwrap());
    let plan = lower_mha_body(&g, &MhaTarget::AVX512, &mut |p, ir| {
        println!("; after {p}\n{}", snipjit_lower::mha::text::print(ir));
    });
    let plan = plan.unwrap();
    let mut d = snipjit_lower::mha::DimValues::new();
    d.bind("B", 1).unwrap();
    d.bind("S", 128).unwrap();
    println!("{:?}", plan.scratch_layout(&d));
}
