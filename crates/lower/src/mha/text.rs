//! The text form of the attention IR (printed after every pass; see docs/mha.md).
//!
//! ```text
//! mha attn rank=4
//!   dims batch=[B, 12] S=S L=L D=64 Dv=64
//!   %q: f32[B, S, 12, 64] = parameter 0
//!   %scores: f32[B, 12, S, L] = matmul %q.t, %k.t transpose_b
//!   loop rows parallel work=S step=m_blk tail moves=[%q: 768*m_blk]
//!     @scores = brgemm a=%q<0,2,1,3>{rs=768, cs=1} b=@kpack packed c=@scores{rs=n_blk, cs=1} m=rows.blk n=kv.blk k=64 beta=0
//!   end rows
//!   result %out
//! ```
//! `%` names a tensor, `@` a buffer; `<perm>` the view of an operand when it is not
//! the identity, `{rs, cs}` its row and column strides in elements.

use std::fmt::Write as _;

use super::ir::{
    BLayout, Beta, Expr, Extent, MaskKind, MhaIr, Op, Operand, Scale, ValueId, ValueKind,
};
use super::sym::Sym;

fn list(xs: &[Sym]) -> String {
    xs.iter().map(Sym::to_string).collect::<Vec<_>>().join(", ")
}

/// `%name` or `@name`.
pub fn value_ref(ir: &MhaIr, v: ValueId) -> String {
    let val = ir.value(v);
    let sigil = if val.is_buffer() { '@' } else { '%' };
    format!("{sigil}{}", val.name)
}

fn operand(ir: &MhaIr, o: &Operand) -> String {
    let mut s = value_ref(ir, o.value);
    if o.packed {
        return s;
    }
    let ident = o.perm.iter().enumerate().all(|(i, &p)| i == p);
    if !ident {
        let p: Vec<String> = o.perm.iter().map(usize::to_string).collect();
        let _ = write!(s, "<{}>", p.join(","));
    }
    let _ = write!(s, "{{rs={}, cs={}}}", o.row, o.col);
    s
}

fn extent(ir: &MhaIr, e: &Extent) -> String {
    match e {
        Extent::Full(s) => s.to_string(),
        Extent::Block(l) => format!("{}.blk", ir.lp(*l).name),
    }
}

fn scale(s: &Scale) -> String {
    format!("{}({:?})", if s.mul { "mul" } else { "div" }, s.value)
}

fn mask_kind(k: &MaskKind) -> String {
    match k {
        MaskKind::Additive => "add".into(),
        MaskKind::Select { fill, keep_when } => format!("select fill={fill:?} keep={keep_when}"),
    }
}

fn b_layout(l: BLayout) -> &'static str {
    match l {
        BLayout::RowMajor => "rowmajor",
        BLayout::Transposed => "trans",
        BLayout::Packed => "packed",
    }
}

fn expr_text(ir: &MhaIr, e: &Expr, first_def: bool) -> String {
    let r = |v: ValueId| value_ref(ir, v);
    let mut s = String::new();
    if let Some(v) = e.out {
        let val = ir.value(v);
        s.push_str(&r(v));
        if first_def && (!val.is_buffer() || e.op == Op::Buffer) {
            let _ = write!(s, ": {}[{}]", val.dtype, list(&val.shape));
        }
        s.push_str(" = ");
    }
    match &e.op {
        Op::Parameter(i) => {
            let _ = write!(s, "parameter {i}");
        }
        Op::Transpose { src, perm } => {
            let _ = write!(s, "transpose {} perm={perm:?}", r(*src));
        }
        Op::MatMul { a, b, transpose_b } => {
            let _ = write!(
                s,
                "matmul {}, {}{}",
                r(*a),
                r(*b),
                if *transpose_b { " transpose_b" } else { "" }
            );
        }
        Op::Scale { src, scale: sc } => {
            let _ = write!(s, "scale {} {}", r(*src), scale(sc));
        }
        Op::Mask { src, mask, kind } => {
            let _ = write!(s, "mask {}, {} {}", r(*src), r(*mask), mask_kind(kind));
        }
        Op::Softmax { src } => {
            let _ = write!(s, "softmax {}", r(*src));
        }
        Op::Brgemm(b) => {
            let beta = match b.beta {
                Beta::Zero => "0",
                Beta::One => "1",
                Beta::FirstZero => "first?0:1",
            };
            let _ = write!(
                s,
                "brgemm a={} b={} {} c={} m={} n={} k={} beta={beta}",
                operand(ir, &b.a),
                operand(ir, &b.b),
                b_layout(b.b_layout),
                operand(ir, &b.c),
                extent(ir, &b.m),
                extent(ir, &b.n),
                extent(ir, &b.k)
            );
        }
        Op::SoftmaxStep(st) => {
            let _ = write!(
                s,
                "online_softmax_step {} max={} sum={} acc={}",
                r(st.scores),
                r(st.max),
                r(st.sum),
                r(st.acc)
            );
            if let Some(sc) = &st.scale {
                let _ = write!(s, " scale={}", scale(sc));
            }
            if let Some((m, k)) = &st.mask {
                let _ = write!(s, " mask={} {}", operand(ir, m), mask_kind(k));
            }
            let _ = write!(
                s,
                " rows={} cols={}",
                extent(ir, &st.rows),
                extent(ir, &st.cols)
            );
        }
        Op::SoftmaxFinish {
            acc,
            sum,
            out,
            rows,
        } => {
            let _ = write!(
                s,
                "online_softmax_finish {} sum={} out={} rows={}",
                r(*acc),
                r(*sum),
                operand(ir, out),
                extent(ir, rows)
            );
        }
        Op::PackB { src, layout, n, k } => {
            let _ = write!(
                s,
                "pack_b {} {} n={n} k={k} panel=panel",
                operand(ir, src),
                b_layout(*layout)
            );
        }
        Op::Buffer => {
            s.push_str("buffer");
            if let Some(v) = e.out
                && let ValueKind::Buffer(Some(a)) = &ir.value(v).kind
            {
                let _ = write!(s, " live=[{}, {}]", a.live.0, a.live.1);
                match a.in_place_of {
                    Some(x) => {
                        let _ = write!(s, " in_place_of={}", r(x));
                    }
                    None => {
                        let _ = write!(s, " offset={}", a.offset);
                    }
                }
            }
        }
        Op::LoopBegin(l) => {
            let lp = ir.lp(*l);
            let _ = write!(s, "loop {}", lp.name);
            if lp.parallel {
                s.push_str(" parallel");
            }
            let _ = write!(s, " work={} step={}", lp.work, lp.step);
            if lp.tail {
                s.push_str(" tail");
            }
            let moves: Vec<String> = lp
                .moves
                .iter()
                .map(|(v, inc)| format!("{}: {inc}", r(*v)))
                .collect();
            let _ = write!(s, " moves=[{}]", moves.join(", "));
        }
        Op::LoopEnd(l) => {
            let _ = write!(s, "end {}", ir.lp(*l).name);
        }
        Op::Result { src } => {
            let _ = write!(s, "result {}", r(*src));
        }
    }
    s
}

/// The text form of `ir`; expression lines are numbered by `live=[..]` indices
/// (the n-th expression line is expression n).
pub fn print(ir: &MhaIr) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "mha {} rank={}", ir.name, ir.rank);
    let d = &ir.dims;
    let _ = writeln!(
        s,
        "  dims batch=[{}] S={} L={} D={} Dv={}",
        list(&d.batch),
        d.s,
        d.l,
        d.d,
        d.dv
    );
    if let Some(b) = &ir.blocking {
        let _ = writeln!(
            s,
            "  blocking m_blk={} n_blk={} k_blk={} panel={}",
            b.m_blk, b.n_blk, b.k_blk, b.panel
        );
    }
    if let Some(sp) = &ir.scratch {
        let _ = writeln!(s, "  scratch static={} total={}", sp.static_bytes, sp.total);
    }
    let mut depth = 1;
    let mut defined = vec![false; ir.values.len()];
    for e in &ir.exprs {
        if matches!(e.op, Op::LoopEnd(_)) {
            depth -= 1;
        }
        let first = e
            .out
            .is_some_and(|v| !std::mem::replace(&mut defined[v.0 as usize], true));
        let _ = writeln!(
            s,
            "{}{}",
            "  ".repeat(depth.max(1)),
            expr_text(ir, e, first)
        );
        if matches!(e.op, Op::LoopBegin(_)) {
            depth += 1;
        }
    }
    s
}
