//! Typed ports: decode-back of the widening loads and narrowing stores on both ISAs,
//! and guard pages behind every tail length of every narrow dtype (a kernel that
//! touched a byte past the count would fault).

mod common;

use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};
use snipjit_ir::{DType, Dim, Graph, Op, Shape, TensorType};
use snipjit_x64::abi::CallArgs;
use snipjit_x64::{Gpr, Isa, Mem, VReg, VecAsm, X64Error};

fn emit(isa: Isa, f: impl FnOnce(&mut VecAsm) -> Result<(), X64Error>) -> Vec<Instruction> {
    let mut a = VecAsm::new(isa, Gpr::R11).unwrap();
    f(&mut a).unwrap();
    let k = a.finalize().unwrap();
    let insns: Vec<Instruction> = Decoder::with_ip(64, k.code(), 0, DecoderOptions::NONE)
        .into_iter()
        .collect();
    assert!(insns.iter().all(|i| !i.is_invalid()), "{}", k.disasm());
    insns
}

fn mnemonics(v: &[Instruction]) -> Vec<Mnemonic> {
    v.iter().map(|i| i.mnemonic()).collect()
}

/// The instructions that access memory through `base` (the port), with their operand
/// index.
fn port_accesses(v: &[Instruction], base: Register) -> Vec<(Instruction, u32)> {
    v.iter()
        .flat_map(|i| {
            (0..i.op_count())
                .filter(|&op| i.op_kind(op) == OpKind::Memory && i.memory_base() == base)
                .map(|op| (*i, op))
                .collect::<Vec<_>>()
        })
        .collect()
}

const NARROW: [DType; 5] = [DType::U8, DType::I8, DType::Bool, DType::BF16, DType::F16];

#[test]
fn full_vector_forms_read_and_write_one_vector_of_elements() {
    use Mnemonic as M;
    for isa in Isa::ALL {
        let lanes = isa.lanes();
        for dt in NARROW {
            let v = emit(isa, |a| a.load_typed(VReg(3), Mem::new(Gpr::R9, 8), dt));
            let acc = port_accesses(&v, Register::R9);
            assert_eq!(acc.len(), 1, "{isa} load {dt}: {v:?}");
            let (i, op) = acc[0];
            assert_eq!(i.memory_displacement64(), 8);
            assert_eq!(i.op_mask(), Register::None);
            // The memory operand covers exactly `lanes` elements.
            assert_eq!(
                i.memory_size().size(),
                lanes * dt.size(),
                "{isa} load {dt}: {i}"
            );
            assert_eq!(op, 1);
            let widen = match dt {
                DType::U8 | DType::Bool => M::Vpmovzxbd,
                DType::I8 => M::Vpmovsxbd,
                DType::BF16 => M::Vpmovzxwd,
                _ => M::Vcvtph2ps,
            };
            let mut want = vec![widen];
            match dt {
                DType::Bool => want.extend([M::Vpslld, M::Vpsrad]),
                DType::BF16 => want.push(M::Vpslld),
                _ => {}
            }
            assert_eq!(mnemonics(&v), want, "{isa} load {dt}");
            let full = match isa {
                Isa::Avx512 => Register::ZMM3,
                Isa::Avx2 => Register::YMM3,
            };
            assert_eq!(
                v[0].op0_register(),
                full,
                "{isa} load {dt} fills the vector"
            );

            let v = emit(isa, |a| {
                a.store_typed(Mem::new(Gpr::R10, 0), VReg(2), dt, &[VReg(5)])
            });
            let acc = port_accesses(&v, Register::R10);
            let written: usize = acc.iter().map(|(i, _)| i.memory_size().size()).sum();
            assert_eq!(written, lanes * dt.size(), "{isa} store {dt}: {v:?}");
            assert!(
                acc.iter()
                    .all(|(i, op)| *op == 0 && i.op_mask() == Register::None)
            );
            // Only the scratch register is written besides memory.
            for i in &v {
                if i.op_count() > 0 && i.op_kind(0) == OpKind::Register {
                    assert_eq!(i.op0_register().number(), 5, "{isa} store {dt}: {i}");
                }
            }

            let v = emit(isa, |a| {
                a.broadcast_load_typed(VReg(4), Mem::new(Gpr::R12, 3), dt)
            });
            let acc = port_accesses(&v, Register::R12);
            assert_eq!(acc.len(), 1);
            assert_eq!(
                acc[0].0.memory_size().size(),
                dt.size(),
                "{isa} broadcast {dt}"
            );
        }
    }
}

#[test]
fn tail_forms_are_masked_or_copied_by_count() {
    use Mnemonic as M;
    for isa in Isa::ALL {
        for dt in NARROW {
            let buf = Mem::new(Gpr::Rsp, 16);
            let v = emit(isa, |a| {
                a.load_tail_typed(VReg(1), Mem::new(Gpr::R9, 0), dt, Gpr::Rcx, buf)
            });
            let w = emit(isa, |a| {
                a.store_tail_typed(Mem::new(Gpr::R9, 0), VReg(1), dt, &[VReg(6)], Gpr::Rcx, buf)
            });
            match isa {
                Isa::Avx512 => {
                    for (what, v, op) in [("load", &v, 1), ("store", &w, 0)] {
                        let acc = port_accesses(v, Register::R9);
                        assert_eq!(acc.len(), 1, "{what} {dt}");
                        let (i, o) = acc[0];
                        assert_eq!(o, op);
                        let mov = if dt.size() == 1 {
                            M::Vmovdqu8
                        } else {
                            M::Vmovdqu16
                        };
                        assert_eq!(i.mnemonic(), mov, "{what} {dt}");
                        assert_eq!(i.op_mask(), Register::K1, "{what} {dt}: masked by k1");
                        assert_eq!(i.zeroing_masking(), what == "load");
                        // 16 lanes of the element: the mask selects the count.
                        assert_eq!(i.memory_size().size(), 16 * dt.size());
                    }
                }
                Isa::Avx2 => {
                    for (what, v) in [("load", &v), ("store", &w)] {
                        let m = mnemonics(v);
                        assert!(m.contains(&M::Movsb), "{what} {dt}: {m:?}");
                        let movs = v.iter().find(|i| i.mnemonic() == M::Movsb).unwrap();
                        assert!(movs.has_rep_prefix(), "{what} {dt}");
                        // rcx, rsi, rdi are saved around the copy.
                        let pushes: Vec<Register> = v
                            .iter()
                            .filter(|i| i.mnemonic() == M::Push)
                            .map(|i| i.op0_register())
                            .collect();
                        let pops: Vec<Register> = v
                            .iter()
                            .filter(|i| i.mnemonic() == M::Pop)
                            .map(|i| i.op0_register())
                            .collect();
                        assert_eq!(pushes, [Register::RCX, Register::RSI, Register::RDI]);
                        assert_eq!(pops, [Register::RDI, Register::RSI, Register::RCX]);
                        // The port is only reached through rep movsb (lea of its address).
                        for (i, _) in port_accesses(v, Register::R9) {
                            assert_eq!(i.mnemonic(), M::Lea, "{what} {dt}: {i}");
                        }
                        // The stack buffer is addressed past the three pushes.
                        let lea_buf = v
                            .iter()
                            .find(|i| i.mnemonic() == M::Lea && i.memory_base() == Register::RSP)
                            .unwrap();
                        assert_eq!(lea_buf.memory_displacement64(), 16 + 24);
                        if dt.size() == 2 {
                            assert!(v.iter().any(|i| i.mnemonic() == M::Shl));
                        }
                    }
                }
            }
        }
    }
}

/// `y = Convert(Convert(x, f32), dt)`: loads and stores `dt`, values unchanged for the
/// bytes this test writes.
fn round_trip_graph(dt: DType) -> Graph {
    let mut g = Graph::new(format!("rt_{dt}"));
    let shape: Shape = [Dim::sym("N")].into_iter().collect();
    let x = g.add_input("x", TensorType::new(dt, shape));
    let f = g.add_op("f", Op::Convert { to: DType::F32 }, &[x]).unwrap();
    let y = g.add_op("y", Op::Convert { to: dt }, &[f]).unwrap();
    g.add_output("y", y);
    g
}

/// Element bytes that survive the round trip through f32 unchanged.
fn element(dt: DType, i: usize) -> Vec<u8> {
    match dt {
        DType::Bool => vec![(i % 2) as u8],
        DType::U8 => vec![(i * 37 % 256) as u8],
        DType::I8 => vec![(i * 37 % 256) as u8],
        DType::I32 => ((i as i32 - 20) * 1001).to_le_bytes().to_vec(),
        DType::BF16 => half::bf16::from_f32(i as f32 * -0.75)
            .to_le_bytes()
            .to_vec(),
        DType::F16 => half::f16::from_f32(i as f32 * 0.375).to_le_bytes().to_vec(),
        _ => (i as f32 * 1.5).to_le_bytes().to_vec(),
    }
}

#[test]
fn typed_tails_never_touch_memory_past_the_count() {
    for isa in common::isas("typed_tails_never_touch_memory_past_the_count") {
        for dt in [
            DType::U8,
            DType::I8,
            DType::Bool,
            DType::BF16,
            DType::F16,
            DType::I32,
        ] {
            let g = round_trip_graph(dt);
            let target = snipjit_x64::codegen::target(isa);
            let lir = snipjit_lower::lower(&g, &[false], &target, &mut |_, _| {}).unwrap();
            let kernel = snipjit_x64::codegen::emit_elementwise(&lir, isa).unwrap();
            // SAFETY: the entry point follows the KernelFn ABI (snipjit_x64::abi).
            let f: snipjit_x64::abi::KernelFn =
                unsafe { std::mem::transmute::<*const u8, _>(kernel.entry_ptr()) };
            let (mut src, mut dst) = (common::Guarded::new(), common::Guarded::new());
            for n in 1..=2 * isa.lanes() + 1 {
                let data: Vec<u8> = (0..n).flat_map(|i| element(dt, i)).collect();
                src.tail(data.len()).copy_from_slice(&data);
                dst.page().fill(0xAB);
                let ptrs = [
                    src.tail(data.len()).as_mut_ptr(),
                    dst.tail(data.len()).as_mut_ptr(),
                ];
                let rt = [0i64, 0];
                let args = CallArgs {
                    ptrs: ptrs.as_ptr(),
                    rt: rt.as_ptr(),
                    scratch: std::ptr::null_mut(),
                    inner_work: n as i64,
                    outer_work: 1,
                    flags: 0,
                };
                // SAFETY: both pointers cover n elements of dt, ending at a guard page; a
                // read or write past them faults and kills the test.
                unsafe { f(&args) };
                let page = dst.page().len();
                let out = &dst.page()[page - data.len()..];
                assert_eq!(out, data.as_slice(), "{isa} {dt} n={n}");
                assert!(
                    dst.page()[..page - data.len()].iter().all(|&b| b == 0xAB),
                    "{isa} {dt} n={n}: wrote before the output"
                );
            }
        }
    }
}
