//! Disassembly of a finalized kernel: labels at branch targets, the pool as data.

mod common;

use snipjit_ir::UnaryOp;
use snipjit_x64::jit_unary_map;

#[test]
fn disasm_shows_labels_branches_and_pool_as_data() {
    for isa in snipjit_x64::Isa::ALL {
        // Compiling needs no CPU support; only running does.
        let k = jit_unary_map(isa, UnaryOp::Exp).unwrap();
        let text = k.kernel().disasm();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].contains("lea r11,") && lines[0].ends_with("; -> pool"),
            "{text}"
        );
        assert!(lines.contains(&"L0:"), "{text}");
        assert!(
            lines
                .iter()
                .any(|l| l.contains("jmp") && l.ends_with("; -> L0")),
            "{text}"
        );
        let pool_at = lines
            .iter()
            .position(|l| *l == "pool:")
            .expect("pool section");
        assert!(
            lines[pool_at + 1..].iter().all(|l| l.contains(".dd 0x")),
            "{text}"
        );
        assert!(
            lines[..pool_at]
                .iter()
                .any(|l| l.trim_start().ends_with("ret")),
            "{text}"
        );
        let width = if isa == snipjit_x64::Isa::Avx512 {
            "zmm"
        } else {
            "ymm"
        };
        assert!(text.contains(&format!("vfmadd213ps {width}")), "{text}");
    }
    for isa in common::isas("disasm kernel runs") {
        let k = jit_unary_map(isa, UnaryOp::Exp).unwrap();
        let mut out = [0.0f32; 3];
        k.run1(&[0.0, 1.0, -1.0], &mut out).unwrap();
        assert_eq!(out[0], 1.0);
        assert!(common::ulp_err(out[1], std::f64::consts::E) <= 1.0);
    }
}

#[test]
fn map_kernel_checks_its_arguments() {
    let isa = snipjit_x64::Isa::Avx2;
    let k = snipjit_x64::jit_binary_map(isa, snipjit_ir::BinaryOp::Add).unwrap();
    let mut out = [0.0f32; 4];
    let err = k.run2(&[1.0; 4], &[1.0; 3], &mut out).unwrap_err();
    assert!(matches!(err, snipjit_x64::X64Error::Args(_)), "{err}");
    let err = k.run1(&[1.0; 4], &mut out).unwrap_err();
    assert!(matches!(err, snipjit_x64::X64Error::Args(_)), "{err}");
    assert!(snipjit_x64::jit_map(isa, 5, false, 0, |_, _, _, _| Ok(())).is_err());
    // More registers than AVX2 can allocate.
    assert!(snipjit_x64::jit_map(isa, 1, false, 14, |_, _, _, _| Ok(())).is_err());
}
