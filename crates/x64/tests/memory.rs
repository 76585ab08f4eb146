//! Memory safety of tails (guard pages) and W^X of the code buffer.

mod common;

use snipjit_ir::{BinaryOp, UnaryOp};
use snipjit_x64::{jit_binary_map, jit_unary_map};

#[test]
fn masked_tails_never_touch_memory_past_n() {
    for isa in common::isas("masked_tails_never_touch_memory_past_n") {
        let un = jit_unary_map(isa, UnaryOp::Exp).unwrap();
        let bin = jit_binary_map(isa, BinaryOp::Add).unwrap();
        let (mut a, mut b, mut d) = (
            common::Guarded::new(),
            common::Guarded::new(),
            common::Guarded::new(),
        );
        for n in 1..=2 * isa.lanes() + 1 {
            let src: Vec<f32> = (0..n).map(|i| i as f32 * 0.5).collect();
            a.tail_slice(n).copy_from_slice(&src);
            b.tail_slice(n).copy_from_slice(&src);
            // A fault on the guard page would kill the test process.
            let sa: &[f32] = a.tail_slice(n);
            un.run1(sa, d.tail_slice(n)).unwrap();
            for (i, &y) in d.tail_slice(n).iter().enumerate() {
                let want = (i as f32 * 0.5).exp();
                assert!((y - want).abs() <= want * 1e-6, "{isa} exp n={n} lane {i}");
            }
            let sb: &[f32] = b.tail_slice(n);
            bin.run2(sa, sb, d.tail_slice(n)).unwrap();
            for (i, &y) in d.tail_slice(n).iter().enumerate() {
                assert_eq!(y, i as f32, "{isa} add n={n} lane {i}");
            }
        }
    }
}

#[test]
fn kernel_code_is_read_execute_only() {
    let maps_for = |addr: usize| -> String {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        for line in maps.lines() {
            let mut it = line.split_whitespace();
            let range = it.next().unwrap();
            let perms = it.next().unwrap();
            let (lo, hi) = range.split_once('-').unwrap();
            let lo = usize::from_str_radix(lo, 16).unwrap();
            let hi = usize::from_str_radix(hi, 16).unwrap();
            if (lo..hi).contains(&addr) {
                return perms.to_string();
            }
        }
        panic!("address {addr:#x} not mapped");
    };
    for isa in common::isas("kernel_code_is_read_execute_only") {
        let k = jit_unary_map(isa, UnaryOp::Tanh).unwrap();
        let kernel = k.kernel();
        let first = kernel.base_ptr() as usize;
        let last = first + kernel.bytes().len() - 1;
        for addr in [first, kernel.entry_ptr() as usize, last] {
            assert_eq!(
                maps_for(addr),
                "r-xp",
                "{isa}: code page at {addr:#x} must be r-x"
            );
        }
        // And it runs from there.
        let mut out = [0.0f32; 3];
        k.run1(&[0.0, 1.0, -1.0], &mut out).unwrap();
        assert!((out[1] - 1f32.tanh()).abs() < 1e-6);
    }
}
