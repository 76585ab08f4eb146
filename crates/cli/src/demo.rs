//! `snipjit demo`: runs the example model shipped in `examples/gelu_chain.sg` and
//! checks the result against the same formula computed directly in f64.

use std::io::Write;
use std::time::Instant;

use snipjit::{Compiler, DType, Options, Tensor};

use crate::error::CliError;

/// The example model: `y = gelu_tanh((x + 0.5) * 1.25) * 0.75` for `x: f32[N, 1024]`.
const MODEL: &str = include_str!("../../../examples/gelu_chain.sg");
const MODEL_FILE: &str = "examples/gelu_chain.sg";

/// Rows of the demo input (the model's dynamic dim N).
const ROWS: usize = 4;
/// Inputs are evenly spaced over `[-RANGE, RANGE]`, which covers gelu's curved
/// middle and both of its nearly linear tails.
const RANGE: f64 = 4.0;
/// Largest accepted `|y - reference| / max(1, |reference|)`: a few f32 roundings
/// per op over a chain of four ops stays far below it.
const TOLERANCE: f64 = 1e-5;

/// What the example computes, in f64.
fn reference(x: f64) -> f64 {
    let z = (x + 0.5) * 1.25;
    let gelu =
        0.5 * z * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (z + 0.044715 * z * z * z)).tanh());
    gelu * 0.75
}

/// Runs `snipjit demo`.
pub fn demo(out: &mut impl Write) -> Result<(), CliError> {
    let graph = snipjit::parse_model(MODEL, MODEL_FILE)?;
    let compile_start = Instant::now();
    let model = Compiler::new(Options::default())?.compile(graph)?;
    let compile_time = compile_start.elapsed();

    // The input shape: N = ROWS for the dynamic dim, the static dims as declared.
    let input = &model.inputs()[0];
    let shape: Vec<usize> = input.ty.shape.concrete(|_| ROWS);
    let numel: usize = shape.iter().product();
    let xs: Vec<f32> = (0..numel)
        .map(|i| (-RANGE + 2.0 * RANGE * i as f64 / (numel.max(2) - 1) as f64) as f32)
        .collect();
    let x = Tensor::from_f32(&shape, xs.clone()).expect("xs has the shape's element count");

    let run_start = Instant::now();
    let outputs = model.run(&[x])?;
    let run_time = run_start.elapsed();

    let y = &outputs[0];
    let ys = y.as_f32().unwrap_or(&[]);
    let mut worst = (0.0f64, 0usize);
    let mut max_abs = 0.0f64;
    for (i, (&xv, &yv)) in xs.iter().zip(ys).enumerate() {
        let want = reference(f64::from(xv));
        let abs = (f64::from(yv) - want).abs();
        // A NaN result counts as an infinite error.
        let rel = match abs / want.abs().max(1.0) {
            r if r.is_nan() => f64::INFINITY,
            r => r,
        };
        max_abs = max_abs.max(abs);
        if rel > worst.0 {
            worst = (rel, i);
        }
    }
    let lines = [
        format!("snipjit demo: {MODEL_FILE}"),
        String::new(),
        MODEL.trim_end().to_string(),
        String::new(),
        format!(
            "input  {}: {}{:?}, values evenly spaced in [-{RANGE}, {RANGE}]",
            input.name,
            DType::F32,
            shape
        ),
        format!(
            "output {}: {}{:?}",
            model.outputs()[0].name,
            y.dtype(),
            y.shape
        ),
        format!(
            "vs the f64 formula 0.75 * gelu_tanh((x + 0.5) * 1.25): max abs error {max_abs:.3e}, max relative error {:.3e} (tolerance {TOLERANCE:e})",
            worst.0
        ),
        format!(
            "compile: {:.3} ms, first run: {:.3} ms ({})",
            compile_time.as_secs_f64() * 1e3,
            run_time.as_secs_f64() * 1e3,
            match model.isa() {
                Some(isa) if model.stats().subgraphs.iter().all(|s| s.jit) => {
                    format!("JIT kernels for {isa}")
                }
                Some(isa) =>
                    format!("JIT kernels for {isa} where possible, the rest on the interpreter"),
                None => "reference interpreter: no AVX2 or AVX-512 on this CPU".to_string(),
            }
        ),
        format!("stats: {}", model.stats().to_json()),
    ];
    for line in lines {
        writeln!(out, "{line}").map_err(CliError::Stdout)?;
    }
    if y.dtype() != DType::F32 || ys.len() != xs.len() {
        return Err(CliError::DemoMismatch {
            err: f64::INFINITY,
            index: 0,
            tol: TOLERANCE,
        });
    }
    if worst.0 > TOLERANCE {
        return Err(CliError::DemoMismatch {
            err: worst.0,
            index: worst.1,
            tol: TOLERANCE,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_formula_values() {
        // gelu_tanh(0) = 0, so x = -0.5 gives 0.
        assert_eq!(reference(-0.5), 0.0);
        // Far right: gelu(z) ~ z, so y ~ 0.75 * 1.25 * (x + 0.5).
        assert!((reference(10.0) - 0.75 * 1.25 * 10.5).abs() < 1e-12);
        // Far left: gelu(z) ~ 0.
        assert!(reference(-10.0).abs() < 1e-12);
        // z = 1: gelu_tanh(1) = 0.8411919906082768 (tanh approximation).
        assert!((reference(0.3) - 0.75 * 0.841_191_990_608_276_8).abs() < 1e-12);
    }
}
