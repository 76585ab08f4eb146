//! Instruction-set levels the backend targets, and their detection at run time.

use std::fmt;

/// A vector ISA level.
///
/// | level    | features required                  | f32 lanes | vector registers |
/// |----------|------------------------------------|-----------|------------------|
/// | `Avx512` | avx512f, avx512bw, avx512dq, avx512vl, (fma, bmi2) | 16 (zmm)  | 32 |
/// | `Avx2`   | avx2, fma, bmi2                    | 8 (ymm)   | 16 |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// AVX-512 F/BW/DQ/VL on zmm registers, opmask tails.
    Avx512,
    /// AVX2 + FMA + BMI2 on ymm registers, vmaskmov tails.
    Avx2,
}

impl Isa {
    /// Every ISA, best first.
    pub const ALL: [Isa; 2] = [Isa::Avx512, Isa::Avx2];

    /// The best ISA this CPU supports, or `None` if it has neither.
    pub fn detect() -> Option<Isa> {
        Isa::ALL.into_iter().find(|isa| isa.is_supported())
    }

    /// True if this CPU (and OS, which must save the upper register state) can run code
    /// of this level.
    pub fn is_supported(self) -> bool {
        let avx2 = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("bmi2");
        match self {
            Isa::Avx2 => avx2,
            Isa::Avx512 => {
                avx2 && std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                    && std::arch::is_x86_feature_detected!("avx512vl")
            }
        }
    }

    /// True if this CPU also has AVX512_BF16 (`vcvtneps2bf16`); only meaningful for
    /// [`Isa::Avx512`].
    pub fn has_bf16(self) -> bool {
        self == Isa::Avx512 && std::arch::is_x86_feature_detected!("avx512bf16")
    }

    /// f32 lanes per vector register.
    pub fn lanes(self) -> usize {
        match self {
            Isa::Avx512 => 16,
            Isa::Avx2 => 8,
        }
    }

    /// Bytes per vector register.
    pub fn vec_bytes(self) -> usize {
        self.lanes() * 4
    }

    /// Architectural vector registers (zmm0..31 or ymm0..15).
    pub fn num_vregs(self) -> usize {
        match self {
            Isa::Avx512 => 32,
            Isa::Avx2 => 16,
        }
    }

    /// Lower-case name: `avx512` or `avx2`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
        }
    }

    /// Parses [`Isa::name`].
    pub fn from_name(s: &str) -> Option<Isa> {
        Isa::ALL.into_iter().find(|i| i.name() == s)
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
