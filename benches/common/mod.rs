//! What the criterion benches share.

use snipjit::IsaChoice;

/// The ISAs this CPU runs, each skipped one named on stderr.
pub fn isas() -> Vec<IsaChoice> {
    [IsaChoice::Avx512, IsaChoice::Avx2]
        .into_iter()
        .filter(|i| {
            let ok = i.is_supported();
            if !ok {
                eprintln!("SKIPPED: {} (not supported by this CPU)", i.name());
            }
            ok
        })
        .collect()
}
