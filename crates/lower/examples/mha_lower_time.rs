//! Times the MHA lowering of examples/mha.sg's attention block (`lower_mha_body`,
//! median of 200) and the per-shape evaluation of its scratch layout: in full
//! (`dims_of_shapes` + `scratch_layout`), and from the formula folded at compile time
//! (`LayoutFormula::eval`, what the runtime does on every call).
//! Run from the repository root:
//! `cargo run --release -p snipjit-lower --example mha_lower_time`.
use snipjit_lower::mha::{MhaTarget, lower_mha_body};

fn median_min(mut t: Vec<f64>) -> (f64, f64) {
    t.sort_by(f64::total_cmp);
    (t[t.len() / 2], t[0])
}

/// Median and min microseconds of `f` on the BERT shapes at S = 1..=200.
fn per_shape(mut f: impl FnMut(&[&[usize]])) -> (f64, f64) {
    let mut t = vec![];
    for s in 1..=200usize {
        let qkv = [1, s, 12, 64];
        let mask = [1, 1, 1, s];
        let shapes: [&[usize]; 4] = [&qkv, &qkv, &qkv, &mask];
        let t0 = std::time::Instant::now();
        f(&shapes);
        t.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    median_min(t)
}

fn main() {
    let src = std::fs::read_to_string("examples/mha.sg").expect("run from the repo root");
    let g = snipjit_ir::text::parse(&src, "mha.sg").expect("parses");
    let mut t = vec![];
    for _ in 0..200 {
        let t0 = std::time::Instant::now();
        let p = lower_mha_body(&g, &MhaTarget::AVX512, &mut |_, _| {}).expect("lowers");
        t.push(t0.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(p);
    }
    let (med, min) = median_min(t);
    println!("lower_mha_body: median {med:.1} us, min {min:.1} us");
    let p = lower_mha_body(&g, &MhaTarget::AVX512, &mut |_, _| {}).expect("lowers");
    let (med, min) = per_shape(|shapes| {
        let d = p.dims_of_shapes(shapes).expect("binds");
        std::hint::black_box(p.scratch_layout(&d).expect("evaluates"));
    });
    println!("scratch layout at a new shape, in full: median {med:.2} us, min {min:.2} us");
    let f = p.layout_formula().expect("folds");
    let (med, min) = per_shape(|shapes| {
        std::hint::black_box(f.eval(shapes).expect("evaluates"));
    });
    println!(
        "scratch layout at a new shape, from the formula: median {med:.2} us, min {min:.2} us"
    );
}
