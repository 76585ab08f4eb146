mod common;
use snipjit_ir::UnaryOp;
use snipjit_x64::jit_unary_map;

#[test]
fn smoke_exp() {
    for isa in common::isas("smoke_exp") {
        let k = jit_unary_map(isa, UnaryOp::Exp).unwrap();
        let src: Vec<f32> = (0..37).map(|i| i as f32 * 0.25 - 3.0).collect();
        let mut dst = vec![0.0; 37];
        k.run1(&src, &mut dst).unwrap();
        for (x, y) in src.iter().zip(&dst) {
            assert!(
                common::ulp_err(*y, libm::exp(f64::from(*x))) <= 1.0,
                "{isa} exp({x}) = {y}"
            );
        }
        println!("{}", k.kernel().disasm());
    }
}
