//! The `.npy` reader on arbitrary bytes: an error or a tensor whose data fills its
//! shape, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = snipjit::npy::read_bytes(data) {
        let n: usize = t.shape.iter().product();
        assert_eq!(n, t.data.len(), "tensor data matches its shape");
    }
});
