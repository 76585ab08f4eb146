//! Shared test helpers: a seeded RNG, random inputs for a graph, and a bitwise
//! comparison of what the reference interpreter computes before and after tokenizing.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;

use snipjit_ir::{DType, Graph, Tensor, TensorData};

/// SplitMix64: small, seeded, good enough for test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    /// Uniform in [lo, hi).
    pub fn f32_in(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Concrete sizes for dynamic dims: each symbol gets its own size (2, 3 or 4 by
/// first appearance), an anonymous `?` gets 3.
fn concrete_dims(g: &Graph) -> Vec<Vec<usize>> {
    let mut sizes: HashMap<String, usize> = HashMap::new();
    g.inputs
        .iter()
        .map(|&p| {
            g.node(p).outputs[0].ty.shape.concrete(|name| match name {
                None => 3,
                Some(s) => {
                    let next = 2 + sizes.len() % 3;
                    *sizes.entry(s.to_string()).or_insert(next)
                }
            })
        })
        .collect()
}

/// Random values for every input of `g`.
pub fn random_inputs(g: &Graph, rng: &mut Rng) -> Vec<Tensor> {
    let dims = concrete_dims(g);
    g.inputs
        .iter()
        .zip(dims)
        .map(|(&p, shape)| {
            let dtype = g.node(p).outputs[0].ty.dtype;
            let n: usize = shape.iter().product();
            let mut f = || {
                if rng.chance(5) {
                    0.0
                } else {
                    rng.f32_in(-4.0, 4.0)
                }
            };
            let data = match dtype {
                DType::F32 => TensorData::F32((0..n).map(|_| f()).collect()),
                DType::BF16 => {
                    TensorData::BF16((0..n).map(|_| half::bf16::from_f32(f())).collect())
                }
                DType::F16 => TensorData::F16((0..n).map(|_| half::f16::from_f32(f())).collect()),
                DType::I8 => TensorData::I8((0..n).map(|_| f() as i8).collect()),
                DType::U8 => TensorData::U8((0..n).map(|_| (f().abs() * 30.0) as u8).collect()),
                DType::I32 => TensorData::I32((0..n).map(|_| (f() * 10.0) as i32).collect()),
                DType::I64 => TensorData::I64((0..n).map(|_| (f() * 10.0) as i64).collect()),
                DType::Bool => TensorData::Bool((0..n).map(|_| f() > 0.0).collect()),
            };
            Tensor::new(shape, data).expect("element count matches the shape")
        })
        .collect()
}

/// The bits of every element, so NaNs compare equal to themselves.
fn bits(t: &Tensor) -> (DType, Vec<u64>) {
    let v: Vec<u64> = match &t.data {
        TensorData::F32(v) => v.iter().map(|x| x.to_bits() as u64).collect(),
        TensorData::BF16(v) => v.iter().map(|x| x.to_bits() as u64).collect(),
        TensorData::F16(v) => v.iter().map(|x| x.to_bits() as u64).collect(),
        TensorData::I8(v) => v.iter().map(|&x| x as u8 as u64).collect(),
        TensorData::U8(v) => v.iter().map(|&x| x as u64).collect(),
        TensorData::I32(v) => v.iter().map(|&x| x as u32 as u64).collect(),
        TensorData::I64(v) => v.iter().map(|&x| x as u64).collect(),
        TensorData::Bool(v) => v.iter().map(|&x| x as u64).collect(),
    };
    (t.dtype(), v)
}

/// Runs `before` and `after` on the same random inputs; an error unless every
/// output is bitwise equal. Returns the number of elements compared.
pub fn same_results(before: &Graph, after: &Graph, seed: u64) -> Result<usize, String> {
    let mut rng = Rng::new(seed);
    let inputs = random_inputs(before, &mut rng);
    let want = snipjit_interp::run(before, &inputs)
        .map_err(|e| format!("interpreter fails on the original graph: {e}"))?;
    let got = snipjit_interp::run(after, &inputs)
        .map_err(|e| format!("interpreter fails on the tokenized graph: {e}"))?;
    if want.len() != got.len() {
        return Err(format!(
            "{} outputs before, {} after",
            want.len(),
            got.len()
        ));
    }
    let mut compared = 0;
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        if w.shape != g.shape || bits(w) != bits(g) {
            return Err(format!("output {i} differs:\n want {w:?}\n got  {g:?}"));
        }
        compared += w.numel();
    }
    Ok(compared)
}

/// [`same_results`], panicking on a difference.
pub fn assert_same_results(before: &Graph, after: &Graph, seed: u64) -> usize {
    same_results(before, after, seed).unwrap_or_else(|e| panic!("{e}"))
}
