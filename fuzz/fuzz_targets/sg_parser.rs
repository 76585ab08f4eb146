//! The `.sg` parser on arbitrary bytes: it returns an error or a graph that verifies
//! and prints back to text that parses to the same graph; it never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(g) = snipjit_ir::text::parse(text, "fuzz.sg") {
        snipjit_ir::verify(&g).expect("a parsed graph verifies");
        let printed = snipjit_ir::text::print(&g);
        let again = snipjit_ir::text::parse(&printed, "printed.sg").expect("printed text parses");
        assert_eq!(snipjit_ir::text::print(&again), printed, "printing is stable");
    }
});
