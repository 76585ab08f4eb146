//! A thread's scratch memory: anonymous memory mapped in 2 MiB steps, 2 MiB aligned
//! and advised for transparent huge pages.
//!
//! Every first touch of a 4 KiB page is a page fault: 1-5 us on this project's VM, and
//! an attention call at a K length larger than any before touches its packed K's new
//! pages (128 of them, ~150 us, going from S = 1024 to 2048 at head size 64). With a
//! huge page (Linux with transparent huge pages in `madvise` or `always` mode), the
//! first touch faults in 2 MiB at once (~40-50 us here, zeroing included), which
//! covers the scratch of every K length up to ~7000 at head size 64: after the warm-up
//! (at compile time, or when a pool worker starts) no call faults. Where huge pages are
//! not available the mapping behaves like any other memory: pages fault in as they are
//! first touched. The price is up to 2 MiB of memory per thread that runs attention.

use std::ptr::NonNull;

/// Mapping granularity and alignment: one x86-64 huge page.
pub(crate) const HUGE_PAGE: usize = 2 << 20;

/// Floats per 4 KiB page.
const PAGE_FLOATS: usize = 1024;

/// Anonymous memory of `cap` floats, touched (faulted in) up to `touched` floats.
/// Fresh pages read as zeros, so the memory is always initialized f32s.
#[derive(Debug)]
pub(crate) struct ScratchBuf {
    /// The mapping (null when none) and its length in bytes.
    map: *mut libc::c_void,
    map_len: usize,
    /// The first 2 MiB boundary in the mapping.
    ptr: NonNull<f32>,
    cap: usize,
    touched: usize,
}

impl ScratchBuf {
    pub(crate) const fn new() -> ScratchBuf {
        ScratchBuf {
            map: std::ptr::null_mut(),
            map_len: 0,
            ptr: NonNull::dangling(),
            cap: 0,
            touched: 0,
        }
    }

    /// The first `len` floats, mapped and touched. A `len` beyond the capacity makes
    /// a new mapping (the contents are not kept) of at least `reserve` floats and
    /// twice the old capacity, rounded up to 2 MiB. `None` if the mapping fails.
    pub(crate) fn get(&mut self, len: usize, reserve: usize) -> Option<&mut [f32]> {
        if len > self.cap {
            self.grow(len.max(reserve).max(self.cap.saturating_mul(2)))?;
        }
        if len > self.touched {
            // One write per page: a read would map the shared zero page and fault
            // again on the kernel's first write.
            let mut i = self.touched / PAGE_FLOATS * PAGE_FLOATS;
            while i < len {
                // SAFETY: i < len <= cap, inside the mapping.
                unsafe { self.ptr.as_ptr().add(i).write_volatile(0.0) };
                i += PAGE_FLOATS;
            }
            self.touched = len;
        }
        // SAFETY: `len` <= cap floats of this mapping, initialized (zero pages or
        // values written since), borrowed mutably with `self`.
        Some(unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), len) })
    }

    fn grow(&mut self, floats: usize) -> Option<()> {
        let bytes = floats.checked_mul(4)?.checked_next_multiple_of(HUGE_PAGE)?;
        let map_len = bytes.checked_add(HUGE_PAGE)?;
        // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return None;
        }
        let aligned = (map as usize).next_multiple_of(HUGE_PAGE) as *mut f32;
        // Best effort: without transparent huge pages the advice fails and the
        // mapping keeps 4 KiB pages.
        #[cfg(target_os = "linux")]
        // SAFETY: the range lies inside the mapping made above.
        unsafe {
            libc::madvise(aligned.cast(), bytes, libc::MADV_HUGEPAGE);
        }
        self.release();
        self.map = map;
        self.map_len = map_len;
        self.ptr = NonNull::new(aligned)?;
        self.cap = bytes / 4;
        self.touched = 0;
        Some(())
    }

    fn release(&mut self) {
        if !self.map.is_null() {
            // SAFETY: the mapping made by `grow`, no longer borrowed (`&mut self`).
            unsafe { libc::munmap(self.map, self.map_len) };
            self.map = std::ptr::null_mut();
        }
    }
}

impl Drop for ScratchBuf {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_grows_keeps_contents_below_capacity_and_is_aligned() {
        let mut s = ScratchBuf::new();
        let a = s.get(100, 1000).unwrap();
        assert_eq!(a.len(), 100);
        assert!(a.iter().all(|&x| x == 0.0));
        assert_eq!(a.as_ptr() as usize % HUGE_PAGE, 0);
        a[99] = 7.0;
        let p = a.as_ptr();
        // Within the capacity (2 MiB = 512 Ki floats): same memory, contents kept.
        let b = s.get(300 << 10, 0).unwrap();
        assert_eq!(b.as_ptr(), p);
        assert_eq!(b[99], 7.0);
        assert!(b[100..].iter().all(|&x| x == 0.0));
        b[(300 << 10) - 1] = 1.0;
        // Beyond it: a new mapping of at least twice the capacity, zeroed.
        let c = s.get(600 << 10, 0).unwrap();
        assert_eq!(c.len(), 600 << 10);
        assert_eq!(c.as_ptr() as usize % HUGE_PAGE, 0);
        assert!(c.iter().all(|&x| x == 0.0));
        assert!(s.cap >= 1 << 20);
        // A request that cannot be mapped is None, not a panic.
        assert!(s.get(usize::MAX / 2, 0).is_none());
    }
}
