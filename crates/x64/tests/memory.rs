//! Memory safety of tails (guard pages) and W^X of the code buffer.

mod common;

use snipjit_ir::{BinaryOp, UnaryOp};
use snipjit_x64::{jit_binary_map, jit_unary_map};

/// Two anonymous pages; the second is PROT_NONE, so any access past the first faults.
struct Guarded {
    base: *mut u8,
    page: usize,
}

impl Guarded {
    fn new() -> Guarded {
        // SAFETY: plain anonymous mapping and protection change of our own pages.
        unsafe {
            let page = libc::sysconf(libc::_SC_PAGESIZE) as usize;
            let base = libc::mmap(
                std::ptr::null_mut(),
                2 * page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(base, libc::MAP_FAILED);
            let base = base as *mut u8;
            assert_eq!(
                libc::mprotect(base.add(page) as *mut _, page, libc::PROT_NONE),
                0
            );
            Guarded { base, page }
        }
    }

    /// The last `n` f32 of the readable page, ending exactly at the guard page.
    fn tail_slice(&mut self, n: usize) -> &mut [f32] {
        // SAFETY: the range lies inside the readable first page and is f32-aligned.
        unsafe {
            let end = self.base.add(self.page) as *mut f32;
            std::slice::from_raw_parts_mut(end.sub(n), n)
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // SAFETY: unmaps the mapping created in `new`.
        unsafe {
            libc::munmap(self.base as *mut _, 2 * self.page);
        }
    }
}

#[test]
fn masked_tails_never_touch_memory_past_n() {
    for isa in common::isas("masked_tails_never_touch_memory_past_n") {
        let un = jit_unary_map(isa, UnaryOp::Exp).unwrap();
        let bin = jit_binary_map(isa, BinaryOp::Add).unwrap();
        let (mut a, mut b, mut d) = (Guarded::new(), Guarded::new(), Guarded::new());
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
