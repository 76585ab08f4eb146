//! The ONNX importer on arbitrary bytes: an error or a verified graph, never a panic
//! or an abort (dims and tensor sizes are checked before anything is allocated).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(g) = snipjit_ir::onnx::import_bytes(data) {
        snipjit_ir::verify(&g).expect("an imported graph verifies");
    }
});
