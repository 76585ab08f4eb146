//! Compiler options.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// The most worker threads [`Options::threads`] may ask for.
pub const MAX_THREADS: usize = 256;

/// Which instruction set the JIT emits code for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum IsaChoice {
    /// The best ISA this CPU supports (AVX-512 if present, else AVX2).
    #[default]
    Auto,
    /// AVX-512 (F, BW, DQ, VL); an error if the CPU lacks it.
    Avx512,
    /// AVX2 with FMA; an error if the CPU lacks it.
    Avx2,
}

impl IsaChoice {
    /// Every choice, in the order the CLI lists them.
    pub const ALL: [IsaChoice; 3] = [IsaChoice::Auto, IsaChoice::Avx512, IsaChoice::Avx2];

    /// The lowercase name (`auto`, `avx512`, `avx2`).
    pub fn name(self) -> &'static str {
        match self {
            IsaChoice::Auto => "auto",
            IsaChoice::Avx512 => "avx512",
            IsaChoice::Avx2 => "avx2",
        }
    }

    /// True if this CPU can run code for this choice (`Auto` always can: without
    /// AVX2 the whole model runs on the interpreter).
    pub fn is_supported(self) -> bool {
        match self {
            IsaChoice::Auto => true,
            IsaChoice::Avx512 => cpu_has_avx512(),
            IsaChoice::Avx2 => cpu_has_avx2(),
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn cpu_has_avx512() -> bool {
    std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512dq")
        && std::is_x86_feature_detected!("avx512vl")
}

#[cfg(target_arch = "x86_64")]
fn cpu_has_avx2() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu_has_avx512() -> bool {
    false
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu_has_avx2() -> bool {
    false
}

impl fmt::Display for IsaChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for IsaChoice {
    type Err = Error;

    fn from_str(s: &str) -> Result<IsaChoice, Error> {
        IsaChoice::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                Error::Options(format!("unknown ISA '{s}' (expected auto, avx512 or avx2)"))
            })
    }
}

/// How to compile and run a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Worker threads for compiled kernels, `1..=MAX_THREADS` (default 1). The
    /// interpreter, which runs everything today, is single-threaded.
    pub threads: usize,
    /// The instruction set to emit code for (default [`IsaChoice::Auto`]).
    pub isa: IsaChoice,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            threads: 1,
            isa: IsaChoice::Auto,
        }
    }
}

impl Options {
    /// Checks the options: `threads` in `1..=MAX_THREADS`, and an explicitly chosen
    /// ISA supported by this CPU.
    pub fn validate(&self) -> Result<(), Error> {
        if self.threads == 0 {
            return Err(Error::Options("threads must be at least 1".into()));
        }
        if self.threads > MAX_THREADS {
            return Err(Error::Options(format!(
                "too many threads: {} (at most {MAX_THREADS})",
                self.threads
            )));
        }
        if !self.isa.is_supported() {
            return Err(Error::Options(format!(
                "ISA {} was requested, but this CPU does not support it",
                self.isa
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_bounds() {
        let ok = |threads| {
            Options {
                threads,
                ..Options::default()
            }
            .validate()
        };
        assert!(ok(1).is_ok());
        assert!(ok(MAX_THREADS).is_ok());
        assert_eq!(
            ok(0).unwrap_err().to_string(),
            "invalid options: threads must be at least 1"
        );
        assert!(
            ok(MAX_THREADS + 1)
                .unwrap_err()
                .to_string()
                .contains("too many threads: 257")
        );
    }

    #[test]
    fn isa_names_round_trip() {
        for c in IsaChoice::ALL {
            assert_eq!(c.name().parse::<IsaChoice>().unwrap(), c);
        }
        assert!("sse2".parse::<IsaChoice>().is_err());
    }
}
