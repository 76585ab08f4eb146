//! Builds the attention IR of an [`MhaPattern`]: the block's ops, one expression
//! each, in the body's order (Transposes with the pattern's fused permutations, the
//! two MatMuls, scale, mask, Softmax). Static dims become constants, named dynamic
//! dims variables (`S`), unnamed ones `<input>.d<axis>`.

use snipjit_ir::{Dim, Shape};
use snipjit_tokenize::mha::{MhaMask, MhaPattern, ScaleAt, ScaleOp};

use super::ir::{CanonDims, Expr, MaskKind, MhaIr, Op, Scale, ValueId, ValueKind};
use super::sym::Sym;
use crate::LowerError;

fn is_perm(p: &[usize], r: usize) -> bool {
    let mut s = p.to_vec();
    s.sort_unstable();
    s == (0..r).collect::<Vec<_>>()
}

/// The IR of `pattern`; `names[i]` names body input `i` (missing: `in<i>`).
pub fn build(pattern: &MhaPattern, name: &str, names: &[String]) -> Result<MhaIr, LowerError> {
    let r = pattern.rank;
    let bad = |why: String| LowerError::Unsupported(format!("mha: {why}"));
    if !matches!(r, 3 | 4) {
        return Err(bad(format!("rank {r} is not 3 or 4")));
    }
    let operands = [("Q", &pattern.q), ("K", &pattern.k), ("V", &pattern.v)];
    for (what, op) in operands {
        if !is_perm(&op.perm, r) || op.shape.rank() != r {
            return Err(bad(format!(
                "{what}: permutation {:?} of rank {r}",
                op.perm
            )));
        }
    }
    if !is_perm(&pattern.output.perm, r) || pattern.output.shape.rank() != r {
        return Err(bad(format!("output permutation {:?}", pattern.output.perm)));
    }
    let n_inputs = operands
        .iter()
        .map(|(_, o)| o.input)
        .chain(pattern.mask.as_ref().map(MhaMask::input))
        .max()
        .expect("three operands")
        + 1;
    let input_name = |i: usize| names.get(i).cloned().unwrap_or_else(|| format!("in{i}"));
    // Stored shape of each input, from the canonical views: axis perm[i] is view axis i.
    let mut stored: Vec<Option<(Shape, &'static str)>> = vec![None; n_inputs];
    for (_, op) in operands {
        let mut dims = vec![Dim::Static(0); r];
        for (i, &p) in op.perm.iter().enumerate() {
            dims[p] = op.shape.dims()[i].clone();
        }
        stored[op.input] = Some((dims.into_iter().collect(), "f32"));
    }
    if let Some(m) = &pattern.mask {
        let (shape, dtype) = match m {
            MhaMask::Additive { shape, .. } => (shape, "f32"),
            MhaMask::Boolean { shape, .. } => (shape, "bool"),
        };
        if shape.rank() > r {
            return Err(bad(format!("mask {shape} has a rank above {r}")));
        }
        if let Some(Some((_, d))) = stored.get(m.input()) {
            return Err(bad(format!(
                "the mask shares input {} with a {d} operand",
                m.input()
            )));
        }
        stored[m.input()] = Some((shape.clone(), dtype));
    }
    let sym = |d: &Dim, input: &str, axis: usize| -> Sym {
        match d {
            Dim::Static(n) => Sym::from(*n),
            Dim::Dynamic(Some(n)) => Sym::var(n),
            Dim::Dynamic(None) => Sym::Var(format!("{input}.d{axis}")),
        }
    };
    let mut ir = MhaIr {
        name: name.to_string(),
        rank: r,
        dims: CanonDims {
            batch: vec![],
            s: Sym::Const(0),
            l: Sym::Const(0),
            d: pattern.head_size,
            dv: pattern.v_head_size,
        },
        values: vec![],
        exprs: vec![],
        loops: vec![],
        blocking: None,
        scratch: None,
    };
    let mut inputs: Vec<Option<ValueId>> = vec![None; n_inputs];
    for (i, s) in stored.iter().enumerate() {
        let Some((shape, dtype)) = s else { continue };
        let n = input_name(i);
        let dims = shape
            .dims()
            .iter()
            .enumerate()
            .map(|(a, d)| sym(d, &n, a))
            .collect();
        let v = ir.add_value(&n, ValueKind::Input(i), dtype, dims);
        ir.exprs.push(Expr {
            out: Some(v),
            op: Op::Parameter(i),
        });
        inputs[i] = Some(v);
    }
    let input = |i: usize| inputs[i].expect("every operand's input was declared");
    let ident: Vec<usize> = (0..r).collect();
    // Canonical views.
    let view = |ir: &mut MhaIr, v: ValueId, perm: &[usize], suffix: &str| -> ValueId {
        if perm == ident.as_slice() {
            return v;
        }
        let src = ir.value(v);
        let shape = perm.iter().map(|&p| src.shape[p].clone()).collect();
        let name = format!("{}.{suffix}", src.name);
        let t = ir.add_value(&name, ValueKind::Temp, "f32", shape);
        ir.exprs.push(Expr {
            out: Some(t),
            op: Op::Transpose {
                src: v,
                perm: perm.to_vec(),
            },
        });
        t
    };
    let mut q = view(&mut ir, input(pattern.q.input), &pattern.q.perm, "t");
    let k = view(&mut ir, input(pattern.k.input), &pattern.k.perm, "t");
    let v = view(&mut ir, input(pattern.v.input), &pattern.v.perm, "t");
    let shape_of = |ir: &MhaIr, v: ValueId| ir.value(v).shape.clone();
    let (qs, ks, vs) = (shape_of(&ir, q), shape_of(&ir, k), shape_of(&ir, v));
    let scale = pattern.scale.map(|s| {
        (
            Scale {
                mul: s.op == ScaleOp::Mul,
                value: s.value,
            },
            s.at,
        )
    });
    if let Some((sc, ScaleAt::Q)) = scale {
        let t = ir.add_value("q.scaled", ValueKind::Temp, "f32", qs.clone());
        ir.exprs.push(Expr {
            out: Some(t),
            op: Op::Scale { src: q, scale: sc },
        });
        q = t;
    }
    let mut batch = vec![];
    for i in 0..r - 2 {
        let mut dims = vec![qs[i].clone(), ks[i].clone(), vs[i].clone()];
        if let Some(m) = &pattern.mask {
            let ms = &ir.value(input(m.input())).shape;
            if let Some(j) = (i + ms.len()).checked_sub(r) {
                dims.push(ms[j].clone());
            }
        }
        batch.push(Sym::bcast(dims));
    }
    let (s, l) = (qs[r - 2].clone(), ks[r - 2].clone());
    ir.dims.batch = batch.clone();
    ir.dims.s = s.clone();
    ir.dims.l = l.clone();
    let scores_shape: Vec<Sym> = batch.iter().cloned().chain([s.clone(), l]).collect();
    let mut x = ir.add_value("scores", ValueKind::Temp, "f32", scores_shape.clone());
    ir.exprs.push(Expr {
        out: Some(x),
        op: Op::MatMul {
            a: q,
            b: k,
            transpose_b: true,
        },
    });
    if let Some((sc, ScaleAt::Scores)) = scale {
        let t = ir.add_value(
            "scores.scaled",
            ValueKind::Temp,
            "f32",
            scores_shape.clone(),
        );
        ir.exprs.push(Expr {
            out: Some(t),
            op: Op::Scale { src: x, scale: sc },
        });
        x = t;
    }
    if let Some(m) = &pattern.mask {
        let kind = match m {
            MhaMask::Additive { .. } => MaskKind::Additive,
            MhaMask::Boolean {
                fill, keep_when, ..
            } => MaskKind::Select {
                fill: *fill,
                keep_when: *keep_when,
            },
        };
        let t = ir.add_value(
            "scores.masked",
            ValueKind::Temp,
            "f32",
            scores_shape.clone(),
        );
        ir.exprs.push(Expr {
            out: Some(t),
            op: Op::Mask {
                src: x,
                mask: input(m.input()),
                kind,
            },
        });
        x = t;
    }
    let p = ir.add_value("probs", ValueKind::Temp, "f32", scores_shape);
    ir.exprs.push(Expr {
        out: Some(p),
        op: Op::Softmax { src: x },
    });
    let o_shape: Vec<Sym> = batch
        .iter()
        .cloned()
        .chain([s, Sym::from(pattern.v_head_size)])
        .collect();
    let operm = &pattern.output.perm;
    let out = if operm == &ident {
        let o = ir.add_value("out", ValueKind::Output, "f32", o_shape);
        ir.exprs.push(Expr {
            out: Some(o),
            op: Op::MatMul {
                a: p,
                b: v,
                transpose_b: false,
            },
        });
        o
    } else {
        let o = ir.add_value("o", ValueKind::Temp, "f32", o_shape.clone());
        ir.exprs.push(Expr {
            out: Some(o),
            op: Op::MatMul {
                a: p,
                b: v,
                transpose_b: false,
            },
        });
        let shape = operm.iter().map(|&i| o_shape[i].clone()).collect();
        let t = ir.add_value("out", ValueKind::Output, "f32", shape);
        ir.exprs.push(Expr {
            out: Some(t),
            op: Op::Transpose {
                src: o,
                perm: operm.clone(),
            },
        });
        t
    };
    ir.exprs.push(Expr {
        out: None,
        op: Op::Result { src: out },
    });
    Ok(ir)
}
