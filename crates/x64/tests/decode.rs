//! Decode-back: every emitter form, on both ISAs, decoded with iced-x86 and checked for
//! mnemonic, registers, memory operands, masking and vector width. Encoding does not
//! need the CPU to support the ISA, so these run everywhere.

use iced_x86::{
    Decoder, DecoderOptions, EncodingKind, Instruction, MemorySize, Mnemonic, OpKind, Register,
};
use snipjit_ir::{BinaryOp, DType, GeluApprox, UnaryOp};
use snipjit_x64::{
    Gpr, Isa, Mem, VReg, VecAsm, X64Error, scratch_needed_binary, scratch_needed_convert,
    scratch_needed_pow_static, scratch_needed_unary,
};

fn emit(isa: Isa, f: impl FnOnce(&mut VecAsm) -> Result<(), X64Error>) -> Vec<Instruction> {
    let mut a = VecAsm::new(isa, Gpr::R11).unwrap();
    f(&mut a).unwrap();
    let k = a.finalize().unwrap();
    let insns: Vec<Instruction> = Decoder::with_ip(64, k.code(), 0, DecoderOptions::NONE)
        .into_iter()
        .collect();
    assert!(
        insns.iter().all(|i| !i.is_invalid()),
        "invalid bytes:\n{}",
        k.disasm()
    );
    insns
}

fn one(isa: Isa, f: impl FnOnce(&mut VecAsm) -> Result<(), X64Error>) -> Instruction {
    let v = emit(isa, f);
    assert_eq!(v.len(), 1, "expected one instruction, got {v:?}");
    v[0]
}

fn vreg(isa: Isa, n: u32) -> Register {
    match isa {
        Isa::Avx512 => Register::ZMM0 + n,
        Isa::Avx2 => Register::YMM0 + n,
    }
}

fn check_mem(i: &Instruction, op: u32, base: Register, index: Register, scale: u32, disp: i64) {
    assert_eq!(i.op_kind(op), OpKind::Memory, "{i}");
    assert_eq!(i.memory_base(), base, "{i}");
    assert_eq!(i.memory_index(), index, "{i}");
    if index != Register::None {
        assert_eq!(i.memory_index_scale(), scale, "{i}");
    }
    assert_eq!(i.memory_displacement64() as i64, disp, "{i}");
    assert!(!i.is_ip_rel_memory_operand(), "{i}");
}

fn check_encoding(isa: Isa, i: &Instruction) {
    match isa {
        Isa::Avx2 => assert_eq!(i.encoding(), EncodingKind::VEX, "{i} must be VEX on AVX2"),
        Isa::Avx512 => assert!(
            matches!(i.encoding(), EncodingKind::EVEX | EncodingKind::VEX),
            "{i}"
        ),
    }
}

#[test]
fn data_movement_forms_decode_back() {
    for isa in Isa::ALL {
        let w = |n| vreg(isa, n);
        let hi = if isa == Isa::Avx512 { 31 } else { 14 };

        let i = one(isa, |a| a.load(VReg(hi as u8), Mem::new(Gpr::Rdi, 0x40)));
        assert_eq!(i.mnemonic(), Mnemonic::Vmovups);
        assert_eq!(i.op0_register(), w(hi));
        check_mem(&i, 1, Register::RDI, Register::None, 1, 0x40);
        assert_eq!(i.op_mask(), Register::None);
        check_encoding(isa, &i);

        let i = one(isa, |a| {
            a.load(VReg(2), Mem::indexed(Gpr::Rsi, Gpr::Rcx, 4, -8))
        });
        check_mem(&i, 1, Register::RSI, Register::RCX, 4, -8);

        let i = one(isa, |a| a.store(Mem::new(Gpr::R13, 0), VReg(5)));
        assert_eq!(i.mnemonic(), Mnemonic::Vmovups);
        check_mem(&i, 0, Register::R13, Register::None, 1, 0);
        assert_eq!(i.op1_register(), w(5));

        let i = one(isa, |a| a.store_nt(Mem::new(Gpr::Rdx, 128), VReg(7)));
        assert_eq!(i.mnemonic(), Mnemonic::Vmovntps);
        check_mem(&i, 0, Register::RDX, Register::None, 1, 128);
        assert_eq!(i.op1_register(), w(7));

        // vbroadcastss ymm/zmm, m32: dynasm 5.1 gets the ymm form wrong.
        let i = one(isa, |a| a.broadcast_load(VReg(3), Mem::new(Gpr::R8, 12)));
        assert_eq!(i.mnemonic(), Mnemonic::Vbroadcastss);
        assert_eq!(i.op0_register(), w(3), "broadcast must fill the full width");
        assert_eq!(i.memory_size(), MemorySize::Float32);
        check_mem(&i, 1, Register::R8, Register::None, 1, 12);
        check_encoding(isa, &i);

        let i = one(isa, |a| a.load_scalar(VReg(4), Mem::new(Gpr::Rax, 4)));
        assert_eq!(i.mnemonic(), Mnemonic::Vmovss);
        assert_eq!(i.op0_register(), Register::XMM4);
        check_mem(&i, 1, Register::RAX, Register::None, 1, 4);
        let i = one(isa, |a| a.store_scalar(Mem::new(Gpr::Rbx, -4), VReg(6)));
        assert_eq!(i.mnemonic(), Mnemonic::Vmovss);
        assert_eq!(i.op1_register(), Register::XMM6);
        check_mem(&i, 0, Register::RBX, Register::None, 1, -4);

        // Tails.
        let i = one(isa, |a| a.load_tail(VReg(1), Mem::new(Gpr::Rdi, 64)));
        let j = one(isa, |a| a.store_tail(Mem::new(Gpr::Rsi, 64), VReg(2)));
        match isa {
            Isa::Avx512 => {
                assert_eq!(i.mnemonic(), Mnemonic::Vmovups);
                assert_eq!((i.op_mask(), i.zeroing_masking()), (Register::K1, true));
                assert_eq!(i.op0_register(), Register::ZMM1);
                check_mem(&i, 1, Register::RDI, Register::None, 1, 64);
                assert_eq!(j.mnemonic(), Mnemonic::Vmovups);
                assert_eq!((j.op_mask(), j.zeroing_masking()), (Register::K1, false));
                assert_eq!(j.op1_register(), Register::ZMM2);
                check_mem(&j, 0, Register::RSI, Register::None, 1, 64);
            }
            Isa::Avx2 => {
                assert_eq!(i.mnemonic(), Mnemonic::Vmaskmovps);
                assert_eq!(
                    (i.op0_register(), i.op1_register()),
                    (Register::YMM1, Register::YMM15)
                );
                check_mem(&i, 2, Register::RDI, Register::None, 1, 64);
                assert_eq!(j.mnemonic(), Mnemonic::Vmaskmovps);
                check_mem(&j, 0, Register::RSI, Register::None, 1, 64);
                assert_eq!(
                    (j.op1_register(), j.op2_register()),
                    (Register::YMM15, Register::YMM2)
                );
            }
        }
        let v = emit(isa, |a| a.set_tail_mask(Gpr::Rdx));
        match isa {
            Isa::Avx512 => {
                assert_eq!(v.len(), 1);
                assert_eq!(v[0].mnemonic(), Mnemonic::Kmovw);
                assert_eq!(v[0].op0_register(), Register::K1);
                check_mem(&v[0], 1, Register::R11, Register::RDX, 2, 0);
            }
            Isa::Avx2 => {
                let m: Vec<Mnemonic> = v.iter().map(|i| i.mnemonic()).collect();
                assert_eq!(
                    m,
                    [Mnemonic::Vmovd, Mnemonic::Vpbroadcastd, Mnemonic::Vpcmpgtd]
                );
                assert_eq!(
                    (v[0].op0_register(), v[0].op1_register()),
                    (Register::XMM15, Register::EDX)
                );
                assert_eq!(v[1].op0_register(), Register::YMM15);
                assert_eq!(v[2].op0_register(), Register::YMM15);
                check_mem(&v[2], 2, Register::R11, Register::None, 1, 0);
            }
        }

        let i = one(isa, |a| a.broadcast_const(VReg(9), 2.5));
        assert_eq!(i.mnemonic(), Mnemonic::Vmovups);
        assert_eq!(i.op0_register(), w(9));
        assert_eq!(i.memory_base(), Register::R11);
        let i = one(isa, |a| a.mov(VReg(1), VReg(hi as u8)));
        assert_eq!(i.mnemonic(), Mnemonic::Vmovaps);
        assert_eq!((i.op0_register(), i.op1_register()), (w(1), w(hi)));
        assert!(emit(isa, |a| a.mov(VReg(1), VReg(1))).is_empty());
        let i = one(isa, |a| a.zero(VReg(4)));
        assert_eq!(i.mnemonic(), Mnemonic::Vxorps);
    }
}

#[test]
fn constants_are_deduplicated_and_laid_out_after_code() {
    for isa in Isa::ALL {
        let mut a = VecAsm::new(isa, Gpr::R11).unwrap();
        a.broadcast_const(VReg(0), 1.5).unwrap();
        a.broadcast_const(VReg(1), -3.0).unwrap();
        a.broadcast_const(VReg(2), 1.5).unwrap();
        let k = a.finalize().unwrap();
        let v: Vec<Instruction> = Decoder::with_ip(64, k.code(), 0, DecoderOptions::NONE)
            .into_iter()
            .collect();
        assert_eq!(v[0].memory_displacement64(), v[2].memory_displacement64());
        assert_ne!(v[0].memory_displacement64(), v[1].memory_displacement64());
        assert_eq!(k.pool().len(), 2 * isa.vec_bytes());
        let off = v[1].memory_displacement64() as usize;
        let lane = f32::from_le_bytes(k.pool()[off..off + 4].try_into().unwrap());
        assert_eq!(lane, -3.0);
        let text = k.disasm();
        assert!(
            text.contains("pool:") && text.contains("0xc0400000"),
            "{text}"
        );
        assert_eq!(
            (k.base_ptr() as usize + k.bytes().len() - k.pool().len()) % 64,
            0
        );
    }
}

/// Registers an emitter is given on each ISA (high registers on AVX-512 to exercise
/// EVEX register extension).
fn regs(isa: Isa) -> (VReg, [VReg; 3], Vec<VReg>) {
    match isa {
        Isa::Avx512 => (
            VReg(17),
            [VReg(20), VReg(25), VReg(31)],
            [16, 8, 29, 3, 24, 0, 30].map(VReg).to_vec(),
        ),
        Isa::Avx2 => (
            VReg(1),
            [VReg(2), VReg(3), VReg(4)],
            [5, 6, 7, 8, 9, 10, 11].map(VReg).to_vec(),
        ),
    }
}

/// Every vector operand at the ISA width, only allowed registers, no tail mask, only
/// pool memory, VEX only on AVX2.
fn check_emitter(isa: Isa, what: &str, insns: &[Instruction], allowed: &[VReg]) {
    assert!(!insns.is_empty(), "{what}: nothing emitted");
    for i in insns {
        check_encoding(isa, i);
        assert_ne!(
            i.op_mask(),
            Register::K1,
            "{what}: {i} uses the tail mask k1"
        );
        for op in 0..i.op_count() {
            match i.op_kind(op) {
                OpKind::Register => {
                    let r = i.op_register(op);
                    if r.is_k() {
                        assert_ne!(r, Register::K1, "{what}: {i} touches k1");
                        continue;
                    }
                    // f16 round trips narrow into half a register and widen back.
                    let half_width_ok = matches!(
                        (i.mnemonic(), op),
                        (Mnemonic::Vcvtps2ph, 0) | (Mnemonic::Vcvtph2ps, 1)
                    );
                    let width_ok = match isa {
                        Isa::Avx512 => r.is_zmm() || (half_width_ok && r.is_ymm()),
                        Isa::Avx2 => r.is_ymm() || (half_width_ok && r.is_xmm()),
                    };
                    assert!(width_ok, "{what}: {i}: {r:?} has the wrong width on {isa}");
                    let n = r.number() as u8;
                    assert!(
                        allowed.contains(&VReg(n)),
                        "{what}: {i} uses unallocated {r:?}"
                    );
                }
                OpKind::Memory => {
                    assert_eq!(i.memory_base(), Register::R11, "{what}: {i}");
                    assert!(!i.is_ip_rel_memory_operand());
                }
                _ => {}
            }
        }
    }
}

#[test]
fn every_emitter_decodes_at_isa_width_with_allocated_registers_only() {
    let mut unary: Vec<UnaryOp> = UnaryOp::ALL.to_vec();
    unary.extend([
        UnaryOp::Swish { beta: -0.5 },
        UnaryOp::LeakyRelu { alpha: 3.0 },
        UnaryOp::LeakyRelu { alpha: -0.5 },
        UnaryOp::Gelu(GeluApprox::Tanh),
    ]);
    for isa in Isa::ALL {
        let (dst, src, scratch) = regs(isa);
        for &op in &unary {
            let need = scratch_needed_unary(op, isa);
            let s = &scratch[..need];
            let allowed: Vec<VReg> = [dst, src[0]].into_iter().chain(s.iter().copied()).collect();
            let v = emit(isa, |a| a.emit_unary(op, dst, src[0], s));
            check_emitter(isa, op.name(), &v, &allowed);
            // In place too.
            let v = emit(isa, |a| a.emit_unary(op, src[0], src[0], s));
            check_emitter(isa, op.name(), &v, &allowed);
        }
        for op in BinaryOp::ALL {
            let need = scratch_needed_binary(op, isa);
            let s = &scratch[..need];
            let allowed: Vec<VReg> = [dst, src[0], src[1]]
                .into_iter()
                .chain(s.iter().copied())
                .collect();
            let v = emit(isa, |a| a.emit_binary(op, dst, src[0], src[1], s));
            check_emitter(isa, op.name(), &v, &allowed);
        }
        let allowed = [dst, src[0], src[1], src[2]];
        let v = emit(isa, |a| a.emit_select(dst, src[0], src[1], src[2], &[]));
        check_emitter(isa, "Select", &v, &allowed);
        let m: Vec<Mnemonic> = v.iter().map(|i| i.mnemonic()).collect();
        match isa {
            Isa::Avx512 => assert_eq!(m, [Mnemonic::Vpmovd2m, Mnemonic::Vblendmps]),
            Isa::Avx2 => assert_eq!(m, [Mnemonic::Vblendvps]),
        }
        for d in [dst, src[0], src[1], src[2]] {
            let v = emit(isa, |a| a.emit_fma(d, src[0], src[1], src[2], &[]));
            check_emitter(isa, "Fma", &v, &allowed);
            assert!(
                v.iter()
                    .any(|i| matches!(i.mnemonic(), Mnemonic::Vfmadd213ps | Mnemonic::Vfmadd231ps))
            );
        }
        for e in [0.0, 1.0, 2.0, 3.0, 0.5, -0.5, -1.0, 5.0, -4.0, 2.5, -1.7] {
            let s = &scratch[..scratch_needed_pow_static(e, isa)];
            let allowed: Vec<VReg> = [dst, src[0]].into_iter().chain(s.iter().copied()).collect();
            let v = emit(isa, |a| a.emit_pow_static(dst, src[0], e, s));
            check_emitter(isa, &format!("pow {e}"), &v, &allowed);
        }
        let jit_types = [
            DType::F32,
            DType::BF16,
            DType::F16,
            DType::I32,
            DType::U8,
            DType::I8,
            DType::Bool,
        ];
        let convs = jit_types
            .iter()
            .flat_map(|&f| jit_types.iter().map(move |&t| (f, t)));
        for (from, to) in convs {
            let s = &scratch[..scratch_needed_convert(from, to, isa)];
            let allowed: Vec<VReg> = [dst, src[0]].into_iter().chain(s.iter().copied()).collect();
            let v = emit(isa, |a| a.emit_convert(from, to, dst, src[0], s));
            check_emitter(isa, &format!("convert {from:?}->{to:?}"), &v, &allowed);
        }
    }
}

#[test]
fn comparisons_produce_masks_in_vector_registers() {
    let v = emit(Isa::Avx512, |a| {
        a.emit_binary(BinaryOp::Less, VReg(3), VReg(4), VReg(5), &[])
    });
    let m: Vec<Mnemonic> = v.iter().map(|i| i.mnemonic()).collect();
    assert_eq!(m, [Mnemonic::Vcmpps, Mnemonic::Vpmovm2d]);
    assert!(v[0].op0_register().is_k() && v[0].op0_register() != Register::K1);
    assert_eq!(v[0].immediate8(), 0x11);
    let v = emit(Isa::Avx2, |a| {
        a.emit_binary(BinaryOp::Less, VReg(3), VReg(4), VReg(5), &[])
    });
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].mnemonic(), Mnemonic::Vcmpps);
    assert_eq!(v[0].op0_register(), Register::YMM3);
}

#[test]
fn bad_registers_are_rejected() {
    let mut a = VecAsm::new(Isa::Avx2, Gpr::R11).unwrap();
    // ymm15 is the AVX2 tail mask.
    assert!(matches!(
        a.load(VReg(15), Mem::new(Gpr::Rdi, 0)),
        Err(X64Error::BadRegister { .. })
    ));
    assert!(matches!(
        a.emit_unary(UnaryOp::Exp, VReg(0), VReg(1), &[VReg(2)]),
        Err(X64Error::NotEnoughScratch { .. })
    ));
    assert!(matches!(
        a.emit_unary(UnaryOp::Relu, VReg(0), VReg(1), &[VReg(1)]),
        Err(X64Error::BadRegister { .. })
    ));
    let mut a = VecAsm::new(Isa::Avx512, Gpr::R11).unwrap();
    assert!(a.load(VReg(31), Mem::new(Gpr::Rdi, 0)).is_ok());
    assert!(matches!(
        a.load(VReg(32), Mem::new(Gpr::Rdi, 0)),
        Err(X64Error::BadRegister { .. })
    ));
    assert!(VecAsm::new(Isa::Avx512, Gpr::Rsp).is_err());
    // i64 is held in no register.
    let r = a.emit_convert(DType::I64, DType::F32, VReg(0), VReg(1), &[VReg(2)]);
    assert!(matches!(r, Err(X64Error::Unsupported { .. })));
    let mut a = VecAsm::new(Isa::Avx2, Gpr::R11).unwrap();
    let r = a.emit_convert(DType::I32, DType::BF16, VReg(0), VReg(1), &[VReg(2)]);
    assert!(matches!(r, Err(X64Error::NotEnoughScratch { .. })));
    // Narrow stores need a scratch register distinct from the stored one.
    let m = Mem::new(Gpr::R9, 0);
    assert!(matches!(
        a.store_typed(m, VReg(1), DType::U8, &[]),
        Err(X64Error::NotEnoughScratch { .. })
    ));
    assert!(matches!(
        a.store_typed(m, VReg(1), DType::Bool, &[VReg(1)]),
        Err(X64Error::BadRegister { .. })
    ));
    assert!(matches!(
        a.load_typed(VReg(0), m, DType::I64),
        Err(X64Error::Args(_))
    ));
    // rep movsb owns rcx, rsi and rdi.
    assert!(matches!(
        a.load_tail_typed(
            VReg(0),
            Mem::new(Gpr::Rsi, 0),
            DType::U8,
            Gpr::Rcx,
            Mem::new(Gpr::Rsp, 0)
        ),
        Err(X64Error::BadRegister { .. })
    ));
}
