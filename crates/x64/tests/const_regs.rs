//! Constants in registers: `VecAsm::keep_constants_in` and the elementwise kernels that
//! use it. Decoded back with iced-x86: the loops read no constant from memory when the
//! allocation leaves registers for them; a stub after the code loads them once.

use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic, OpKind, Register};
use snipjit_ir::{DType, Dim, Graph, Op, Shape, TensorType, UnaryOp};
use snipjit_x64::{Gpr, Isa, Kernel, VReg, VecAsm};

fn decode(k: &Kernel) -> Vec<Instruction> {
    let insns: Vec<Instruction> = Decoder::with_ip(64, k.code(), 0, DecoderOptions::NONE)
        .into_iter()
        .collect();
    assert!(insns.iter().all(|i| !i.is_invalid()), "{}", k.disasm());
    insns
}

/// Instructions with a memory operand based on `base`.
fn reads_from(insns: &[Instruction], base: Register) -> Vec<Instruction> {
    insns
        .iter()
        .filter(|i| (0..i.op_count()).any(|o| i.op_kind(o) == OpKind::Memory))
        .filter(|i| i.memory_base() == base)
        .copied()
        .collect()
}

fn isas() -> Vec<Isa> {
    [Isa::Avx512, Isa::Avx2]
        .into_iter()
        .filter(|i| i.is_supported())
        .collect()
}

#[test]
fn constants_take_the_given_registers_in_first_use_order_until_none_is_left() {
    for isa in isas() {
        let mut a = VecAsm::new(isa, Gpr::R11).unwrap();
        let frame = a.prologue(&[]);
        a.keep_constants_in(&[VReg(5), VReg(6)]).unwrap();
        for v in [1.5f32, 2.5, 1.5, 3.5] {
            a.broadcast_const(VReg(0), v).unwrap();
        }
        assert_eq!(a.constants_in_registers(), 2, "{isa}");
        a.epilogue(&frame);
        let k = a.finalize().unwrap();
        let insns = decode(&k);
        // The jump to the stub comes first (after the pool base), the stub last.
        let jmps: Vec<&Instruction> = insns
            .iter()
            .filter(|i| i.flow_control() == FlowControl::UnconditionalBranch)
            .collect();
        assert_eq!(jmps.len(), 2, "jmp to the stub and back:\n{}", k.disasm());
        let stub = jmps[0].near_branch_target();
        let back = jmps[1].near_branch_target();
        assert_eq!(back, jmps[0].next_ip(), "the stub returns after the jump");
        // The stub loads 1.5 into the first register, 2.5 into the second.
        let loads: Vec<&Instruction> = insns.iter().filter(|i| i.ip() >= stub).collect();
        let pool = k.pool();
        let lanes = isa.lanes();
        let mut want = vec![(Register::ZMM5, 1.5f32), (Register::ZMM6, 2.5)];
        if isa == Isa::Avx2 {
            want = vec![(Register::YMM5, 1.5), (Register::YMM6, 2.5)];
        }
        for (ld, (reg, val)) in loads.iter().zip(&want) {
            assert_eq!(ld.op0_register(), *reg, "{}", k.disasm());
            let off = ld.memory_displacement64() as usize;
            let bytes = &pool[off..off + 4 * lanes];
            assert!(
                bytes
                    .chunks(4)
                    .all(|c| f32::from_le_bytes(c.try_into().unwrap()) == *val)
            );
        }
        // Uses: 1.5 and 2.5 from registers, 3.5 (no register left) from the pool.
        let body: Vec<Instruction> = insns
            .iter()
            .filter(|i| i.ip() < stub && i.mnemonic() != Mnemonic::Lea)
            .copied()
            .collect();
        assert_eq!(reads_from(&body, Register::R11).len(), 1, "{}", k.disasm());
    }
}

#[test]
fn keep_constants_in_checks_its_registers() {
    let mut a = VecAsm::new(Isa::Avx2, Gpr::R11).unwrap();
    // ymm15 holds the AVX2 tail mask: not allocatable.
    assert!(a.keep_constants_in(&[VReg(15)]).is_err());
    a.keep_constants_in(&[VReg(3)]).unwrap();
    assert!(a.keep_constants_in(&[VReg(4)]).is_err(), "only once");
}

fn silu_graph() -> Graph {
    let mut g = Graph::new("silu");
    let shape: Shape = [Dim::sym("N")].into_iter().collect();
    let x = g.add_input("x", TensorType::new(DType::F32, shape));
    let y = g
        .add_op("y", Op::Unary(UnaryOp::Swish { beta: 1.0 }), &[x])
        .unwrap();
    g.add_output("y", y);
    g
}

#[test]
fn silu_loops_read_no_constant_from_memory() {
    for isa in isas() {
        let target = snipjit_x64::codegen::target(isa);
        let lir = snipjit_lower::lower(&silu_graph(), &[false], &target, &mut |_, _| {}).unwrap();
        let kernel = snipjit_x64::codegen::emit_elementwise(&lir, isa).unwrap();
        let insns = decode(&kernel);
        // The code reaches the pool through rdx (codegen's CONSTS): only the stub,
        // which runs once before the loops, reads splats from it (the tail's mask
        // table, indexed by the count, stays a memory read).
        let ret = insns
            .iter()
            .rposition(|i| i.mnemonic() == Mnemonic::Ret)
            .expect("a ret");
        let (code, stub) = insns.split_at(ret + 1);
        let in_code: Vec<Instruction> = reads_from(code, Register::RDX)
            .into_iter()
            .filter(|i| i.memory_index() == Register::None)
            .collect();
        let loads = reads_from(stub, Register::RDX);
        if isa == Isa::Avx512 {
            // 32 registers: every constant fits.
            assert!(
                in_code.is_empty(),
                "{isa}: constants read in the loops: {in_code:?}\n{}",
                kernel.disasm()
            );
            assert!(loads.len() >= 5, "{isa}: {} constants", loads.len());
        } else {
            // 15 registers: the free ones hold some constants, the rest stay memory
            // operands, and no constant is both.
            assert!(!loads.is_empty(), "{}", kernel.disasm());
            for i in &in_code {
                assert!(
                    loads
                        .iter()
                        .all(|l| l.memory_displacement64() != i.memory_displacement64()),
                    "{isa}: a constant held in a register is also read from memory\n{}",
                    kernel.disasm()
                );
            }
        }
        assert!(
            loads
                .iter()
                .all(|i| matches!(i.mnemonic(), Mnemonic::Vmovups)),
            "{}",
            kernel.disasm()
        );
    }
}
