//! Compile time of the fused attention kernel and of its parts (min and median of
//! 200 compilations each, microseconds), and their code size.
//!
//! `cargo run --release -p snipjit-x64 --example mha_compile`

use std::time::Instant;

use snipjit_x64::{
    AttnMask, AttnScale, BLayout, BPacker, Brgemm, BrgemmOptions, Isa, KLayout, MhaFused,
    MhaFusedOptions, OnlineSoftmax, OnlineSoftmaxOptions, X64Error,
};

/// Times `f` (which returns the code size in bytes).
fn time(what: &str, mut f: impl FnMut() -> Result<usize, X64Error>) {
    let mut size = 0;
    let mut t: Vec<f64> = (0..200)
        .map(|_| {
            let s = Instant::now();
            size = f().expect("compiles");
            s.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    t.sort_by(f64::total_cmp);
    println!(
        "{what:<40} min {:7.1} us  median {:7.1} us  code {:5.1} KiB",
        t[0],
        t[t.len() / 2],
        size as f64 / 1024.0
    );
}

fn main() {
    snipjit_x64::warm_up();
    let (scale, mask) = (Some(AttnScale::Mul(0.125)), AttnMask::Additive);
    for isa in Isa::ALL {
        println!("{isa}");
        for k_layout in [KLayout::Transposed, KLayout::RowMajor] {
            time(&format!("MhaFused (K {k_layout:?})"), || {
                MhaFused::compile(MhaFusedOptions::new(isa, k_layout, scale, mask))
                    .map(|k| k.kernel().code().len())
            });
        }
        for layout in [BLayout::RowMajor, BLayout::Transposed, BLayout::Packed] {
            time(&format!("Brgemm {layout:?}"), || {
                Brgemm::compile(BrgemmOptions::new(isa, layout)).map(|k| k.kernel().code().len())
            });
        }
        time("BPacker Transposed", || {
            BPacker::compile(isa, BLayout::Transposed, None).map(|k| k.kernel().code().len())
        });
        time("OnlineSoftmax", || {
            OnlineSoftmax::compile(OnlineSoftmaxOptions { isa, scale, mask })
                .map(|k| k.block_kernel().code().len() + k.finish_kernel().code().len())
        });
    }
}
