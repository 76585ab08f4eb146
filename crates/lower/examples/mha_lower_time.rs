//! Times `lower_mha_body` on examples/mha.sg's attention block (median of 200).
use snipjit_lower::mha::{MhaTarget, lower_mha_body};

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
    t.sort_by(f64::total_cmp);
    println!(
        "lower_mha_body: min {:.1} us, median {:.1} us",
        t[0], t[100]
    );
}
