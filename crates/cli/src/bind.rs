//! Concrete shapes for `dump --dim` and `bench --dim`: binding symbolic dims to
//! values, making inputs of those shapes, and capturing what each Subgraph node of
//! the fused graph receives when the model runs on them.

use std::cell::RefCell;
use std::collections::HashMap;

use snipjit::ir::NodeId;
use snipjit::{CompiledModel, DType, Dim, Tensor, TensorData, ValueInfo};
use snipjit_runtime::Executor;
use snipjit_runtime::config::{Domain, configure};

use crate::error::CliError;

/// Symbol bindings in the order they were given: `[("N", 3), ("C", 37)]`.
pub type Bindings = Vec<(String, usize)>;

/// Parses `NAME=VALUE` (`--dim` of `dump`).
pub fn parse_dim(spec: &str) -> Result<(String, usize), CliError> {
    let (name, values) = parse_dim_list(spec)?;
    match values.as_slice() {
        [v] => Ok((name, *v)),
        _ => Err(CliError::DimSyntax {
            spec: spec.to_string(),
            expected: "NAME=VALUE",
        }),
    }
}

/// Parses `NAME=v1,v2,...` (`--dim` of `bench`).
pub fn parse_dim_list(spec: &str) -> Result<(String, Vec<usize>), CliError> {
    let bad = || CliError::DimSyntax {
        spec: spec.to_string(),
        expected: "NAME=VALUE (bench: NAME=V1,V2,...), VALUE a non-negative integer",
    };
    let (name, values) = spec.split_once('=').ok_or_else(bad)?;
    let name = name.trim();
    if name.is_empty() || values.is_empty() {
        return Err(bad());
    }
    let values = values
        .split(',')
        .map(|v| v.trim().parse::<usize>().map_err(|_| bad()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((name.to_string(), values))
}

/// Rejects a symbol bound twice or a symbol no model input has.
pub fn check_symbols<'a>(
    inputs: &[ValueInfo],
    names: impl IntoIterator<Item = &'a str>,
) -> Result<(), CliError> {
    let mut known: Vec<&str> = vec![];
    for i in inputs {
        for d in i.ty.shape.dims() {
            if let Dim::Dynamic(Some(s)) = d
                && !known.contains(&s.as_str())
            {
                known.push(s);
            }
        }
    }
    let mut seen: Vec<&str> = vec![];
    for n in names {
        if seen.contains(&n) {
            return Err(CliError::Dim(format!("--dim {n} is given twice")));
        }
        seen.push(n);
        if !known.contains(&n) {
            let list = if known.is_empty() {
                "the model inputs have no symbolic dims".to_string()
            } else {
                format!("the symbolic dims are {}", known.join(", "))
            };
            return Err(CliError::Dim(format!(
                "--dim {n}: no model input has a dim named '{n}' ({list})"
            )));
        }
    }
    Ok(())
}

/// The concrete shape of every model input under `bindings`: static dims as
/// declared, symbolic dims from the bindings. An anonymous (`?`) dim or an unbound
/// symbol is an error naming the input and the dim.
pub fn input_shapes(
    inputs: &[ValueInfo],
    bindings: &Bindings,
) -> Result<Vec<Vec<usize>>, CliError> {
    inputs
        .iter()
        .map(|info| {
            info.ty
                .shape
                .dims()
                .iter()
                .enumerate()
                .map(|(axis, d)| match d {
                    Dim::Static(n) => Ok(*n),
                    Dim::Dynamic(Some(sym)) => bindings
                        .iter()
                        .find(|(n, _)| n == sym)
                        .map(|&(_, v)| v)
                        .ok_or_else(|| {
                            CliError::Dim(format!(
                                "input '{}' ({}) dim {axis} is the unbound symbol '{sym}': pass --dim {sym}=VALUE",
                                info.name, info.ty
                            ))
                        }),
                    Dim::Dynamic(None) => Err(CliError::Dim(format!(
                        "input '{}' ({}) dim {axis} is anonymous ('?'): --dim cannot bind it; name the dim in the model",
                        info.name, info.ty
                    ))),
                })
                .collect()
        })
        .collect()
}

/// A small deterministic generator (SplitMix64): the same seed gives the same inputs
/// on every run and machine.
#[derive(Debug)]
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

    /// Uniform in `[-1, 1)`.
    pub fn next_f32(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// Inputs of the given shapes: floats uniform in `[-1, 1)`, bools random, integers
/// zero (always a valid index for Gather, and "copy this dim" for Reshape shapes).
/// Input `i` draws from its own stream seeded by `seed` and `i`.
pub fn make_inputs(inputs: &[ValueInfo], shapes: &[Vec<usize>], seed: u64) -> Vec<Tensor> {
    inputs
        .iter()
        .zip(shapes)
        .enumerate()
        .map(|(i, (info, shape))| {
            let n: usize = shape.iter().product();
            let mut rng = Rng::new(seed ^ (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
            let data = match info.ty.dtype {
                DType::F32 => TensorData::F32(huge_vec(n, || rng.next_f32())),
                DType::BF16 => TensorData::BF16(
                    (0..n)
                        .map(|_| half::bf16::from_f32(rng.next_f32()))
                        .collect(),
                ),
                DType::F16 => TensorData::F16(
                    (0..n)
                        .map(|_| half::f16::from_f32(rng.next_f32()))
                        .collect(),
                ),
                DType::Bool => TensorData::Bool((0..n).map(|_| rng.next_u64() & 1 == 1).collect()),
                other => TensorData::zeros(other, n),
            };
            Tensor {
                shape: shape.clone(),
                data,
            }
        })
        .collect()
}

/// `n` values of `f`, in a buffer that large inputs back with transparent huge pages
/// (as the runtime's outputs, [`snipjit_runtime::huge_page_capacity`]), as numpy does
/// for its arrays (the peers of `snipjit bench` get their inputs from numpy).
fn huge_vec<T>(n: usize, mut f: impl FnMut() -> T) -> Vec<T> {
    // A reservation that cannot be met falls back to `Vec::with_capacity`, as before.
    let mut v = snipjit_runtime::huge_page_capacity(n).unwrap_or_else(|_| Vec::with_capacity(n));
    v.extend((0..n).map(|_| f()));
    v
}

/// What one top-level Subgraph node received in a run.
#[derive(Debug)]
pub struct Captured {
    pub node: NodeId,
    pub inputs: Vec<Tensor>,
}

/// Runs the fused graph of `model` once on `inputs` and returns, per top-level
/// Subgraph node in the order they ran, the tensors it was given.
///
/// With `exec`, compiled subgraphs run as kernels (fast for large shapes); without,
/// every body runs on the reference interpreter.
pub fn capture(
    model: &CompiledModel,
    inputs: &[Tensor],
    exec: Option<&Executor>,
) -> Result<Vec<Captured>, CliError> {
    let kernels: HashMap<NodeId, _> = model
        .kernels()
        .into_iter()
        .filter_map(|(id, k)| Some((id, k.ok()?)))
        .collect();
    let mha: HashMap<NodeId, _> = model.mha_kernels().into_iter().collect();
    let seen: RefCell<Vec<Captured>> = RefCell::new(vec![]);
    let hook = |id: NodeId, args: &[&Tensor]| {
        seen.borrow_mut().push(Captured {
            node: id,
            inputs: args.iter().map(|t| (*t).clone()).collect(),
        });
        let exec = exec?;
        if let Some(k) = mha.get(&id) {
            return Some(k.run(args, exec).map_err(|e| e.to_string()));
        }
        let k = kernels.get(&id)?;
        Some(k.run(args, exec).map_err(|e| e.to_string()))
    };
    let refs: Vec<&Tensor> = inputs.iter().collect();
    snipjit_interp::run_with(model.fused_graph(), &refs, &hook)
        .map_err(|e| CliError::Capture(e.to_string()))?;
    Ok(seen.into_inner())
}

/// The domain `JitSubgraph::run` configures for subgraph inputs of `in_shapes` and
/// `outputs` outputs (each of the inputs' full broadcast shape).
pub fn domain_of(in_shapes: &[Vec<usize>], outputs: usize) -> Result<Domain, String> {
    let mut full: Vec<usize> = vec![];
    for s in in_shapes {
        full = snipjit::ir::broadcast_concrete(&full, s)
            .ok_or_else(|| format!("input shapes {in_shapes:?} do not broadcast"))?;
    }
    let ins: Vec<&[usize]> = in_shapes.iter().map(Vec::as_slice).collect();
    let outs: Vec<&[usize]> = (0..outputs).map(|_| full.as_slice()).collect();
    configure(&ins, &outs).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use snipjit::{Shape, TensorType};

    fn info(name: &str, dims: &[Dim]) -> ValueInfo {
        ValueInfo {
            name: name.into(),
            ty: TensorType::new(DType::F32, Shape::from_iter(dims.iter().cloned())),
        }
    }

    #[test]
    fn dim_specs() {
        assert_eq!(parse_dim("N=3").unwrap(), ("N".to_string(), 3));
        assert_eq!(
            parse_dim_list("S=16,128, 2048").unwrap(),
            ("S".to_string(), vec![16, 128, 2048])
        );
        for bad in ["N", "=3", "N=", "N=-1", "N=x", "N=1,,2"] {
            assert!(parse_dim_list(bad).is_err(), "{bad}");
        }
        assert!(parse_dim("N=1,2").is_err());
    }

    #[test]
    fn shapes_from_bindings() {
        let ins = [
            info("x", &[Dim::sym("N"), Dim::sym("C")]),
            info("b", &[Dim::Static(1), Dim::sym("C")]),
        ];
        let b: Bindings = vec![("C".into(), 37), ("N".into(), 3)];
        assert_eq!(
            input_shapes(&ins, &b).unwrap(),
            vec![vec![3, 37], vec![1, 37]]
        );
        let e = input_shapes(&ins, &vec![("N".into(), 3)])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("input 'x'") && e.contains("dim 1") && e.contains("'C'"),
            "{e}"
        );
        let anon = [info("z", &[Dim::Dynamic(None)])];
        let e = input_shapes(&anon, &vec![]).unwrap_err().to_string();
        assert!(e.contains("input 'z'") && e.contains("anonymous"), "{e}");
        assert!(check_symbols(&ins, ["N", "C"]).is_ok());
        let e = check_symbols(&ins, ["Q"]).unwrap_err().to_string();
        assert!(e.contains("'Q'") && e.contains("N, C"), "{e}");
        assert!(check_symbols(&ins, ["N", "N"]).is_err());
    }

    #[test]
    fn inputs_are_deterministic_and_in_range() {
        let ins = [info("x", &[Dim::Static(1000)])];
        let a = make_inputs(&ins, &[vec![1000]], 7);
        let b = make_inputs(&ins, &[vec![1000]], 7);
        assert_eq!(a, b);
        let v = a[0].as_f32().unwrap();
        assert!(v.iter().all(|x| (-1.0..1.0).contains(x)));
        // Spread over the range, not a constant.
        let mean = v.iter().sum::<f32>() / 1000.0;
        assert!(mean.abs() < 0.1, "{mean}");
        assert!(v.iter().any(|&x| x > 0.9) && v.iter().any(|&x| x < -0.9));
    }
}
