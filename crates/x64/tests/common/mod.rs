//! Shared helpers of the x64 integration tests.
#![allow(dead_code)]

use snipjit_x64::Isa;

/// The ISAs this machine can run, announcing on stderr every ISA it skips.
pub fn isas(test: &str) -> Vec<Isa> {
    Isa::ALL
        .into_iter()
        .filter(|&isa| {
            let ok = isa.is_supported();
            if !ok {
                eprintln!("SKIPPED: {test} on {isa}: this CPU does not support it");
            }
            ok
        })
        .collect()
}

/// Error of `got` against the exact `want`, in units of the last place of the f32
/// nearest `want`. Results whose exact value is below `f32::MIN_POSITIVE` in magnitude
/// use an absolute tolerance of `f32::MIN_POSITIVE` (0 if within it, else infinity).
/// Results below 2^-100 in magnitude (whose intermediates may be denormal) also pass
/// with an absolute error up to 2^-142 (128 denormal ULPs).
/// NaN must match NaN; infinities must match exactly (after rounding `want` to f32).
pub fn ulp_err(got: f32, want: f64) -> f64 {
    if want.is_nan() {
        return if got.is_nan() { 0.0 } else { f64::INFINITY };
    }
    if got.is_nan() {
        return f64::INFINITY;
    }
    let want32 = want as f32;
    if want32.is_infinite() || got.is_infinite() {
        return if want32 == got { 0.0 } else { f64::INFINITY };
    }
    if want.abs() < f64::from(f32::MIN_POSITIVE) {
        return if (f64::from(got) - want).abs() <= f64::from(f32::MIN_POSITIVE) {
            0.0
        } else {
            f64::INFINITY
        };
    }
    if want.abs() < 2f64.powi(-100) && (f64::from(got) - want).abs() <= 2f64.powi(-142) {
        return 0.0;
    }
    let exp = ((want32.abs().to_bits() >> 23) as i32) - 127;
    let ulp = 2f64.powi(exp - 23);
    (f64::from(got) - want).abs() / ulp
}

/// Inputs: every 2^12-th f32 bit pattern (all magnitudes, both signs, NaNs and
/// infinities), a dense uniform grid over `[lo, hi]`, and special values.
pub fn sweep(lo: f32, hi: f32, dense: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..=u32::MAX)
        .step_by(1 << 12)
        .map(f32::from_bits)
        .collect();
    let step = (f64::from(hi) - f64::from(lo)) / dense as f64;
    v.extend((0..=dense).map(|i| (f64::from(lo) + step * i as f64) as f32));
    v.extend(specials());
    v
}

/// Special values: NaN, infinities, zeros, denormals, extremes, overflow and underflow
/// thresholds of exp, small integers and halves.
pub fn specials() -> Vec<f32> {
    let mut v = vec![
        f32::NAN,
        -f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        f32::MIN_POSITIVE,
        -f32::MIN_POSITIVE,
        f32::from_bits(1),
        f32::from_bits(0x8000_0001),
        f32::from_bits(0x007f_ffff),
        f32::MAX,
        f32::MIN,
        f32::EPSILON,
        88.722_83,
        88.722_84,
        88.8,
        89.0,
        -87.336_55,
        -103.972_08,
        -103.98,
        -104.0,
        -110.0,
        1e-30,
        -1e-30,
        1e30,
        -1e30,
    ];
    for i in -20..=20 {
        v.push(i as f32);
        v.push(i as f32 + 0.5);
    }
    v
}

/// Two anonymous pages; the second is PROT_NONE, so any access past the first faults.
pub struct Guarded {
    base: *mut u8,
    page: usize,
}

impl Guarded {
    pub fn new() -> Guarded {
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

    /// The last `bytes` bytes of the readable page, ending at the guard page.
    #[allow(dead_code)]
    pub fn tail(&mut self, bytes: usize) -> &mut [u8] {
        // SAFETY: the range lies inside the readable first page.
        unsafe { std::slice::from_raw_parts_mut(self.base.add(self.page - bytes), bytes) }
    }

    /// The last `n` f32 of the readable page, ending exactly at the guard page.
    #[allow(dead_code)] // not every test binary uses every accessor
    pub fn tail_slice(&mut self, n: usize) -> &mut [f32] {
        // SAFETY: the range lies inside the readable first page and is f32-aligned
        // (the page is, and 4 * n bytes are taken from its end).
        unsafe {
            let end = self.base.add(self.page) as *mut f32;
            std::slice::from_raw_parts_mut(end.sub(n), n)
        }
    }

    /// The readable page.
    #[allow(dead_code)]
    pub fn page(&mut self) -> &mut [u8] {
        // SAFETY: the first page is mapped read-write.
        unsafe { std::slice::from_raw_parts_mut(self.base, self.page) }
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

/// Readable-writable pages between two PROT_NONE guard pages; `slice(n)` ends exactly at
/// the upper guard.
pub struct GuardedBuf {
    base: *mut u8,
    pages: usize,
    page: usize,
}

impl GuardedBuf {
    pub fn new(floats: usize) -> GuardedBuf {
        // SAFETY: an anonymous mapping of our own, and protection changes inside it.
        unsafe {
            let page = libc::sysconf(libc::_SC_PAGESIZE) as usize;
            let pages = (floats * 4).div_ceil(page).max(1);
            let len = (pages + 2) * page;
            let base = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(base, libc::MAP_FAILED);
            let base = base as *mut u8;
            assert_eq!(libc::mprotect(base as *mut _, page, libc::PROT_NONE), 0);
            assert_eq!(
                libc::mprotect(
                    base.add((pages + 1) * page) as *mut _,
                    page,
                    libc::PROT_NONE
                ),
                0
            );
            GuardedBuf { base, pages, page }
        }
    }

    /// The last `n` floats before the upper guard page.
    pub fn slice(&mut self, n: usize) -> &mut [f32] {
        assert!(n * 4 <= self.pages * self.page);
        // SAFETY: the range lies in the read-write pages and is f32-aligned.
        unsafe {
            let end = self.base.add((self.pages + 1) * self.page) as *mut f32;
            std::slice::from_raw_parts_mut(end.sub(n), n)
        }
    }
}

impl Drop for GuardedBuf {
    fn drop(&mut self) {
        // SAFETY: unmaps the mapping created in `new`.
        unsafe {
            libc::munmap(self.base as *mut _, (self.pages + 2) * self.page);
        }
    }
}

/// A 64-bit LCG (high 31 bits out): deterministic test data without a dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    /// Uniform in [lo, hi).
    pub fn f(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * (self.next() as f32 / (1u64 << 31) as f32)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
}
