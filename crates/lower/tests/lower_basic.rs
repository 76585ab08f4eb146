//! Lowering of small elementwise bodies: the pipeline runs, the verifier holds after
//! every pass, and the final IR has the expected shape.

use snipjit_ir::{BinaryOp, DType, Dim, Graph, Op, Shape, Tensor, TensorType, UnaryOp};
use snipjit_lower::lir::{ExprKind, Location};
use snipjit_lower::{Target, lower};

fn scratch(k: &ExprKind) -> usize {
    match k {
        ExprKind::Unary(UnaryOp::Tanh) => 3,
        ExprKind::Unary(_) => 2,
        _ => 0,
    }
}

fn target(vregs: usize) -> Target {
    Target {
        name: "test",
        lanes: 16,
        vregs,
        scratch,
    }
}

fn nd(d: &[Dim]) -> Shape {
    d.iter().cloned().collect()
}

/// y = relu(x + b) * 0.5 + x ; x: [N, C], b: [1, C]
fn relu_bias() -> Graph {
    let mut g = Graph::new("relu_bias");
    let x = g.add_input(
        "x",
        TensorType::new(DType::F32, nd(&[Dim::sym("N"), Dim::sym("C")])),
    );
    let b = g.add_input(
        "b",
        TensorType::new(DType::F32, nd(&[Dim::Static(1), Dim::sym("C")])),
    );
    let s = g.add_op("s", Op::Binary(BinaryOp::Add), &[x, b]).unwrap();
    let r = g.add_op("r", Op::Unary(UnaryOp::Relu), &[s]).unwrap();
    let h = g
        .add_op("h", Op::Constant(Tensor::scalar_f32(0.5)), &[])
        .unwrap();
    let m = g.add_op("m", Op::Binary(BinaryOp::Mul), &[r, h]).unwrap();
    let y = g.add_op("y", Op::Binary(BinaryOp::Add), &[m, x]).unwrap();
    g.add_output("y", y);
    g
}

#[test]
fn pipeline_runs_and_verifies() {
    let mut seen = vec![];
    let lir = lower(
        &relu_bias(),
        &[false, false],
        &target(32),
        &mut |name, _| seen.push(name.to_string()),
    )
    .unwrap();
    assert_eq!(seen, snipjit_lower::pipeline::pass_names());
    let text = lir.to_text();
    // Mul + Add fused, scalar hoisted, a tail copy of the inner loop.
    assert!(text.contains("Fma"), "{text}");
    assert!(!text.contains("= Mul"), "{text}");
    let first = lir.exprs.first().unwrap();
    assert!(
        matches!(first.kind, ExprKind::Scalar(v) if v == 0.5),
        "{text}"
    );
    let tails = lir
        .loops
        .iter()
        .filter(|l| l.kind == snipjit_lower::lir::LoopKind::Tail)
        .count();
    assert_eq!(tails, 1, "{text}");
    assert_eq!(lir.spill_slots, 0);
    // Every value has a register, none is a scratch register.
    for e in &lir.exprs {
        if let Some(o) = e.out {
            match lir.locations[o.0 as usize] {
                Some(Location::Reg(r)) => assert!(!lir.scratch_regs.contains(&r)),
                other => panic!("%{} at {other:?}", o.0),
            }
        }
    }
}

#[test]
fn inner_broadcast_becomes_broadcast_load() {
    let lir = lower(&relu_bias(), &[false, true], &target(32), &mut |_, _| {}).unwrap();
    let n = lir
        .exprs
        .iter()
        .filter(|e| matches!(e.kind, ExprKind::BroadcastLoad { input: 1 }))
        .count();
    assert_eq!(
        n,
        2,
        "main and tail body each broadcast b:\n{}",
        lir.to_text()
    );
}

#[test]
fn pow_with_scalar_exponent_becomes_static() {
    let mut g = Graph::new("pow");
    let x = g.add_input("x", TensorType::new(DType::F32, Shape::fixed(&[4, 40])));
    let e = g
        .add_op("e", Op::Constant(Tensor::scalar_f32(3.0)), &[])
        .unwrap();
    let p = g.add_op("p", Op::Binary(BinaryOp::Pow), &[x, e]).unwrap();
    g.add_output("p", p);
    let lir = lower(&g, &[false], &target(32), &mut |_, _| {}).unwrap();
    assert!(lir.exprs.iter().any(|e| e.kind == ExprKind::PowStatic(3.0)));
    assert!(
        !lir.exprs
            .iter()
            .any(|e| matches!(e.kind, ExprKind::Scalar(_))),
        "dead exponent removed"
    );
}

/// Many values live at once on a tiny register file: the allocator spills, and the
/// verifier's replay accepts the result.
#[test]
fn spills_when_registers_run_out() {
    let mut g = Graph::new("wide");
    let xs: Vec<_> = (0..12)
        .map(|i| {
            g.add_input(
                format!("x{i}"),
                TensorType::new(DType::F32, Shape::fixed(&[64])),
            )
        })
        .collect();
    // exp of every input first (all live), then sum them.
    let es: Vec<_> = xs
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            g.add_op(format!("e{i}"), Op::Unary(UnaryOp::Exp), &[x])
                .unwrap()
        })
        .collect();
    let mut acc = es[0];
    for (i, &e) in es.iter().enumerate().skip(1) {
        acc = g
            .add_op(format!("s{i}"), Op::Binary(BinaryOp::Add), &[acc, e])
            .unwrap();
    }
    g.add_output("y", acc);
    let lir = lower(&g, &[false; 12], &target(8), &mut |_, _| {}).unwrap();
    assert!(lir.spill_slots > 0, "{}", lir.to_text());
    snipjit_lower::verify::verify(&lir).unwrap();
}

#[test]
fn verifier_rejects_clobbered_register() {
    let mut lir = lower(&relu_bias(), &[false, false], &target(32), &mut |_, _| {}).unwrap();
    // Put every value in register 0: a later definition overwrites a live one.
    for l in lir.locations.iter_mut().flatten() {
        *l = Location::Reg(0);
    }
    assert!(snipjit_lower::verify::verify(&lir).is_err());
}

#[test]
fn non_elementwise_body_is_refused() {
    let mut g = Graph::new("sm");
    let x = g.add_input("x", TensorType::new(DType::F32, Shape::fixed(&[4, 8])));
    let s = g.add_op("s", Op::Softmax { axis: -1 }, &[x]).unwrap();
    g.add_output("s", s);
    let e = lower(&g, &[false], &target(32), &mut |_, _| {}).unwrap_err();
    assert!(e.to_string().contains("Softmax"), "{e}");
}

#[test]
fn loop_manager_after_the_pipeline() {
    use snipjit_lower::lir::{LoopKind, Move, Offset, Port, Quantity};
    let mut after_mark = None;
    let mut after_fuse = None;
    // b broadcast along the row: fixed in the inner loops.
    let lir = lower(
        &relu_bias(),
        &[false, true],
        &target(32),
        &mut |name, l| match name {
            "mark_loops" => after_mark = Some(l.clone()),
            "fuse_loops" => after_fuse = Some(l.clone()),
            _ => {}
        },
    )
    .unwrap();
    // One loop nest: nothing to fuse.
    assert_eq!(after_mark, after_fuse);
    assert_eq!(lir.loops.len(), 3);
    let (outer, main, tail) = (&lir.loops[0], &lir.loops[1], &lir.loops[2]);
    let row = Offset::term(1, Quantity::Stride(1))
        .plus(&Offset::term(-1, Quantity::Main { dim: 0, step: 16 }));
    let stride = Offset::term(1, Quantity::Stride(1));
    for p in &outer.ports {
        let want = if p.port == Port::Input(1) {
            &stride
        } else {
            &row
        };
        assert_eq!(&p.increment, want, "{:?}", p.port);
        assert!(p.finalization.is_zero());
    }
    for p in &main.ports {
        let moves = p.port != Port::Input(1);
        assert_eq!(p.incremented, moves);
        let want = Offset::constant(if moves { 16 } else { 0 });
        assert_eq!(p.increment, want);
        assert!(p.finalization.is_zero());
    }
    assert_eq!((tail.kind, tail.once), (LoopKind::Tail, true));
    assert!(!main.once && !outer.once);
    assert!(
        tail.ports
            .iter()
            .all(|p| p.increment.is_zero() && p.finalization.is_zero())
    );
    // The argument block: the outer increment of each port, nothing else.
    let slots = lir.rt_slots();
    assert_eq!(slots.len(), 3);
    assert!(
        slots
            .iter()
            .all(|s| s.loop_id.0 == 0 && s.what == Move::Increment)
    );
}
