//! A call a kernel cannot take runs on the interpreter, with the same result.

use snipjit::{Compiler, Options, Tensor, parse_model};

/// `a = -b` is `[N, 1]` inside the `[N, C]` region `x + a`, and also an output: the
/// kernel writes full-domain outputs only, so this call falls back.
const MODEL: &str = "\
graph d(x: f32[N, C], b: f32[N, 1]) {
  a: f32[N, 1] = Neg(b)
  s: f32[N, C] = Add(x, a)
  return y = s, z = a
}
";

#[test]
fn broadcast_shaped_subgraph_output_falls_back_to_the_interpreter() {
    let graph = parse_model(MODEL, "d.sg").expect("parses");
    let model = Compiler::new(Options::default())
        .and_then(|c| c.compile(graph.clone()))
        .expect("compiles");
    let x = Tensor::from_f32(&[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    let b = Tensor::from_f32(&[2, 1], vec![10.0, 20.0]).unwrap();
    let out = model.run(&[x.clone(), b.clone()]).expect("runs");
    let y = Tensor::from_f32(&[2, 3], vec![-9.0, -8.0, -7.0, -16.0, -15.0, -14.0]).unwrap();
    let z = Tensor::from_f32(&[2, 1], vec![-10.0, -20.0]).unwrap();
    assert_eq!(out, vec![y.clone(), z.clone()]);
    let mut into = vec![];
    model.run_into(&[x, b], &mut into).expect("runs");
    assert_eq!(into, vec![y, z]);
    if model.isa().is_some() {
        assert!(
            model.fallbacks() >= 2,
            "both calls fell back: {}",
            model.fallbacks()
        );
    }
}
