//! Times the stages of compiling an elementwise kernel (lower, emit), repeatedly.
//! `cargo run --release -p snipjit-runtime --example compile_time`

use std::time::Instant;

use snipjit_ir::{BinaryOp, DType, Dim, Graph, Op, Shape, TensorType, UnaryOp};
use snipjit_x64::Isa;

fn main() {
    let mut g = Graph::new("silu");
    let x = g.add_input(
        "x",
        TensorType::new(
            DType::F32,
            Shape::from_iter([Dim::sym("N"), Dim::Static(1024)]),
        ),
    );
    let s = g
        .add_op("s", Op::Unary(UnaryOp::Sigmoid), &[x])
        .expect("valid");
    let y = g
        .add_op("y", Op::Binary(BinaryOp::Mul), &[x, s])
        .expect("valid");
    g.add_output("y", y);
    let isa = Isa::detect().expect("AVX2 or AVX-512");
    let target = snipjit_x64::codegen::target(isa);
    for round in 0..5 {
        let t0 = Instant::now();
        let lir = snipjit_lower::lower(&g, &[false], &target, &mut |_, _| {}).expect("lowers");
        let t1 = Instant::now();
        let k = snipjit_x64::codegen::emit_elementwise(&lir, isa).expect("emits");
        let t2 = Instant::now();
        println!(
            "round {round}: lower {:.1} us, emit {:.1} us ({} bytes)",
            (t1 - t0).as_secs_f64() * 1e6,
            (t2 - t1).as_secs_f64() * 1e6,
            k.code().len()
        );
    }
}
