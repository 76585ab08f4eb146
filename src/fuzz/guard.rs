//! Guard-page allocations: every heap block allocated on a thread inside [`scope`]
//! ends exactly at a `PROT_NONE` page and starts one page after another, so a kernel
//! load or store past either end of a tensor faults instead of reading or writing a
//! neighbour.
//!
//! Tensors own their data as `Vec`s, so the only sound way to place a tensor's data
//! between guard pages without changing the runtime is the allocator: [`GuardAlloc`]
//! is a [`GlobalAlloc`] that forwards to [`System`] except on a thread inside
//! [`scope`]. A program opts in by installing it:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: snipjit::fuzz::guard::GuardAlloc = snipjit::fuzz::guard::GuardAlloc;
//! ```
//!
//! Inside a scope, every allocation of the calling thread gets its own mapping:
//!
//! ```text
//! | guard page | slack .. data (ends at the page end) | guard page |
//! ```
//!
//! so the inputs cloned in the scope, the outputs the runtime allocates for a run,
//! and the intermediate tensors the interpreter passes between subgraphs are all
//! guarded. Allocations of other threads (the executor's pool allocates nothing per
//! call) use the system allocator. A block whose size is not a multiple of its
//! alignment ends up to `align - 1` bytes before the guard page.
//!
//! Cost: three system calls per allocation and one page fault per page touched
//! (freed one-page blocks are kept and reused, which saves both for most blocks), so
//! guarded runs are several times slower; the CI fuzz test guards a third of its cases.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

thread_local! {
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
}

/// Set once [`GuardAlloc`] served any allocation, i.e. it is the global allocator.
static INSTALLED: AtomicBool = AtomicBool::new(false);
/// Guarded blocks alive now (lets `dealloc` skip the table when there are none).
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Guarded blocks allocated since the program started.
static TOTAL: AtomicUsize = AtomicUsize::new(0);

/// Live guarded blocks at most; beyond, allocations fall back to the system allocator.
const CAP: usize = 1 << 14;

/// Open-addressing table (linear probing, backward-shift deletion) from a block's
/// data pointer to its mapping. Fixed size: the allocator cannot allocate.
struct Table {
    ptr: [usize; CAP],
    base: [usize; CAP],
    len: [usize; CAP],
    used: usize,
    /// Freed mappings of one data page (three pages with the guards), kept for
    /// reuse: most blocks are small, and reuse saves three system calls and a page
    /// fault per allocation.
    spare: [usize; SPARE],
    spares: usize,
}

/// Freed one-page mappings kept for reuse at most.
const SPARE: usize = 256;

static TABLE: Mutex<Table> = Mutex::new(Table {
    ptr: [0; CAP],
    base: [0; CAP],
    len: [0; CAP],
    used: 0,
    spare: [0; SPARE],
    spares: 0,
});

fn slot(ptr: usize) -> usize {
    ((ptr >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % CAP
}

impl Table {
    fn insert(&mut self, ptr: usize, base: usize, len: usize) -> bool {
        if self.used >= CAP / 2 {
            return false;
        }
        let mut i = slot(ptr);
        while self.ptr[i] != 0 {
            i = (i + 1) % CAP;
        }
        self.ptr[i] = ptr;
        self.base[i] = base;
        self.len[i] = len;
        self.used += 1;
        true
    }

    fn find(&self, ptr: usize) -> Option<usize> {
        let mut i = slot(ptr);
        while self.ptr[i] != 0 {
            if self.ptr[i] == ptr {
                return Some(i);
            }
            i = (i + 1) % CAP;
        }
        None
    }

    /// Removes `ptr`, returning its mapping.
    fn remove(&mut self, ptr: usize) -> Option<(usize, usize)> {
        let mut hole = self.find(ptr)?;
        let found = (self.base[hole], self.len[hole]);
        self.ptr[hole] = 0;
        self.used -= 1;
        // Backward shift: move later entries of the probe run into the hole when
        // their home slot does not lie strictly between the hole and them.
        let mut j = (hole + 1) % CAP;
        while self.ptr[j] != 0 {
            let home = slot(self.ptr[j]);
            let between = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !between {
                self.ptr[hole] = self.ptr[j];
                self.base[hole] = self.base[j];
                self.len[hole] = self.len[j];
                self.ptr[j] = 0;
                hole = j;
            }
            j = (j + 1) % CAP;
        }
        Some(found)
    }
}

fn page_size() -> usize {
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    match PAGE.load(Ordering::Relaxed) {
        0 => {
            // SAFETY: sysconf has no preconditions.
            let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            let p = if p > 0 { p as usize } else { 4096 };
            PAGE.store(p, Ordering::Relaxed);
            p
        }
        p => p,
    }
}

fn lock() -> std::sync::MutexGuard<'static, Table> {
    TABLE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Maps `guard | data pages | guard` and returns the data pointer placed so that the
/// block ends at the second guard page, or null.
///
/// # Safety
/// `layout.size() > 0` and `layout.align() <= page_size()`.
unsafe fn guarded_alloc(layout: Layout) -> *mut u8 {
    let page = page_size();
    let data_pages = layout.size().div_ceil(page);
    let Some(len) = data_pages.checked_add(2).and_then(|n| n.checked_mul(page)) else {
        return std::ptr::null_mut();
    };
    // SAFETY: an anonymous private mapping at an address of the kernel's choice.
    let spare = if data_pages == 1 {
        let mut t = lock();
        t.spares.checked_sub(1).map(|n| {
            t.spares = n;
            t.spare[n]
        })
    } else {
        None
    };
    let (base, ok) = match spare {
        Some(base) => (base, true),
        None => {
            // SAFETY: an anonymous private mapping at an address of the kernel's choice.
            let base = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_NONE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if base == libc::MAP_FAILED {
                return std::ptr::null_mut();
            }
            // SAFETY: the data pages lie inside the mapping just made.
            let ok = unsafe {
                libc::mprotect(
                    (base as usize + page) as *mut libc::c_void,
                    data_pages * page,
                    libc::PROT_READ | libc::PROT_WRITE,
                )
            } == 0;
            (base as usize, ok)
        }
    };
    let end = base + page + data_pages * page;
    let ptr = (end - layout.size()) & !(layout.align() - 1);
    if !ok || !lock().insert(ptr, base, len) {
        // SAFETY: unmapping the mapping made above, which nothing references.
        unsafe { libc::munmap(base as *mut libc::c_void, len) };
        return std::ptr::null_mut();
    }
    LIVE.fetch_add(1, Ordering::Relaxed);
    TOTAL.fetch_add(1, Ordering::Relaxed);
    ptr as *mut u8
}

/// Unmaps `ptr`'s block if it is a guarded one; false if it is not.
fn guarded_free(ptr: *mut u8) -> bool {
    if LIVE.load(Ordering::Relaxed) == 0 {
        return false;
    }
    let mut t = lock();
    let Some((base, len)) = t.remove(ptr as usize) else {
        return false;
    };
    LIVE.fetch_sub(1, Ordering::Relaxed);
    if len == 3 * page_size() && t.spares < SPARE {
        let n = t.spares;
        t.spare[n] = base;
        t.spares += 1;
        return true;
    }
    drop(t);
    // SAFETY: the mapping was made by `guarded_alloc` for this block, which the
    // caller frees; no other block shares it.
    unsafe { libc::munmap(base as *mut libc::c_void, len) };
    true
}

fn active() -> bool {
    ACTIVE.try_with(Cell::get).unwrap_or(false)
}

/// The global allocator of guard mode; see the module docs.
#[derive(Clone, Copy, Debug, Default)]
pub struct GuardAlloc;

// SAFETY: blocks come either from `System` (and go back to it) or from
// `guarded_alloc`, whose mappings are private to the block, sized and aligned for its
// layout, and recorded so that `dealloc` sends each pointer back where it came from.
unsafe impl GlobalAlloc for GuardAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !INSTALLED.load(Ordering::Relaxed) {
            INSTALLED.store(true, Ordering::Relaxed);
        }
        if active() && layout.size() > 0 && layout.align() <= page_size() {
            // SAFETY: size and alignment checked just above.
            let p = unsafe { guarded_alloc(layout) };
            if !p.is_null() {
                return p;
            }
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if active() && layout.size() > 0 {
            // SAFETY: forwarded; a reused mapping holds old data, so the block is
            // zeroed here (it is `layout.size()` bytes long).
            unsafe {
                let p = self.alloc(layout);
                if !p.is_null() {
                    std::ptr::write_bytes(p, 0, layout.size());
                }
                return p;
            }
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !guarded_free(ptr) {
            // SAFETY: not a guarded block, so `System` allocated it with `layout`.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !active() && !is_guarded(ptr) {
            // SAFETY: a `System` block, reallocated by `System`.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: the caller guarantees `new_size` and `layout.align()` form a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: forwarded to `alloc` / `dealloc` above; the copy stays inside both blocks.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

/// True once [`GuardAlloc`] is the program's global allocator (it has served an
/// allocation); without it, [`scope`] guards nothing.
pub fn installed() -> bool {
    // Any allocation goes through the global allocator and sets the flag if it is ours.
    drop(std::hint::black_box(Box::new(0u8)));
    INSTALLED.load(Ordering::Relaxed)
}

/// True if `ptr` is the start of a live guarded block.
pub fn is_guarded(ptr: *const u8) -> bool {
    LIVE.load(Ordering::Relaxed) > 0 && lock().find(ptr as usize).is_some()
}

/// Guarded blocks allocated since the program started (all threads).
pub fn guarded_allocations() -> usize {
    TOTAL.load(Ordering::Relaxed)
}

/// Runs `f` with every allocation of this thread placed between guard pages (when
/// [`GuardAlloc`] is installed; see [`installed`]). Scopes nest; the previous state
/// comes back when `f` returns or unwinds.
pub fn scope<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = ACTIVE.try_with(|a| a.set(self.0));
        }
    }
    let _restore = Restore(ACTIVE.with(|a| a.replace(true)));
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_insert_find_remove() {
        let mut t = Box::new(Table {
            ptr: [0; CAP],
            base: [0; CAP],
            len: [0; CAP],
            used: 0,
            spare: [0; SPARE],
            spares: 0,
        });
        // Keys that collide on purpose (same slot) and keys spread out.
        let keys: Vec<usize> = (1..2000).map(|i| i * 4096 + 64).collect();
        for &k in &keys {
            assert!(t.insert(k, k - 64, 8192));
        }
        for &k in &keys {
            assert!(t.find(k).is_some(), "{k:x}");
        }
        for &k in keys.iter().step_by(3) {
            assert_eq!(t.remove(k), Some((k - 64, 8192)));
        }
        for (i, &k) in keys.iter().enumerate() {
            assert_eq!(t.find(k).is_some(), i % 3 != 0, "{k:x}");
        }
        assert_eq!(t.remove(12345), None);
    }
}
