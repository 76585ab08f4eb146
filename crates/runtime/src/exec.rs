//! The executor: splits a configured domain over threads and calls the kernel.

use smallvec::SmallVec;
use snipjit_x64::abi::{CallArgs, FLAG_NT_STORES};

use std::time::Duration;

use crate::RuntimeError;
use crate::config::Domain;
use crate::pool::{DEFAULT_SPIN, MAX_SPIN, Pool};
use crate::subgraph::CompiledKernel;

/// Runs kernels on a fixed number of threads: the calling thread and `threads - 1`
/// workers (1 runs everything on the caller's thread).
///
/// Workers that finish a call spin for the executor's spin time before they park, so
/// back-to-back calls hand work over in well under a microsecond; an idle executor
/// sleeps. One call at a time uses the workers: a call made while the workers are
/// busy (from another thread, or nested in a work item) runs on its caller's thread.
#[derive(Debug)]
pub struct Executor {
    threads: usize,
    pool: Option<Pool>,
}

/// The most threads an executor takes.
pub const MAX_THREADS: usize = 256;

/// Output bytes from which the main loop uses non-temporal stores: past the caches,
/// write-allocate would read every output line before overwriting it.
pub const NT_STORE_MIN_BYTES: usize = 8 << 20;

impl Executor {
    /// An executor with `threads` threads (1..=256) and the spin time of the
    /// environment variable `SNIPJIT_SPIN_US` (microseconds, at most one second), else
    /// [`DEFAULT_SPIN`] (see [`Executor::with_spin`]).
    pub fn new(threads: usize) -> Result<Executor, RuntimeError> {
        let spin = match std::env::var("SNIPJIT_SPIN_US") {
            Err(std::env::VarError::NotPresent) => DEFAULT_SPIN,
            Ok(v) => match v.trim().parse::<u64>() {
                Ok(us) => Duration::from_micros(us),
                Err(_) => {
                    return Err(RuntimeError::Threads(format!(
                        "SNIPJIT_SPIN_US='{v}' is not a whole number of microseconds"
                    )));
                }
            },
            Err(e) => return Err(RuntimeError::Threads(format!("SNIPJIT_SPIN_US: {e}"))),
        };
        Executor::with_spin(threads, spin)
    }

    /// An executor with `threads` threads (1..=256) whose workers, after each call,
    /// spin for `spin` (at most [`MAX_SPIN`]) waiting for the next one before they
    /// park; a caller waiting for the workers spins as long before it parks. Zero
    /// parks at once: every call then pays the wake-up of the workers (tens of
    /// microseconds), which a longer spin avoids for calls in quick succession at the
    /// price of up to `spin` of CPU time per worker after the last call.
    pub fn with_spin(threads: usize, spin: Duration) -> Result<Executor, RuntimeError> {
        if threads == 0 || threads > MAX_THREADS {
            return Err(RuntimeError::Threads(format!(
                "{threads} threads requested; 1 to {MAX_THREADS} are allowed"
            )));
        }
        if spin > MAX_SPIN {
            return Err(RuntimeError::Threads(format!(
                "spin time {spin:?} is above the maximum of {MAX_SPIN:?}"
            )));
        }
        let pool = if threads > 1 {
            Some(Pool::new(threads, spin).map_err(|e| {
                RuntimeError::Threads(format!("starting {} workers: {e}", threads - 1))
            })?)
        } else {
            None
        };
        Ok(Executor { threads, pool })
    }

    /// The number of threads, the caller's included.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f` over `0..items` cut into at most [`Executor::threads`] contiguous
    /// chunks of near-equal size, and returns when all are done; the caller's thread
    /// runs one chunk (all of them when there is one, or when the workers are busy
    /// with another call). Each call of `f` can set up per-thread state (a scratchpad)
    /// once for its whole chunk. A panic in `f` is resumed on the caller's thread
    /// once every chunk has finished.
    pub fn for_each_chunk(&self, items: usize, f: &(dyn Fn(std::ops::Range<usize>) + Sync)) {
        if items == 0 {
            return;
        }
        let chunks = self.threads.min(items);
        if chunks <= 1 {
            return f(0..items);
        }
        self.for_each_index(chunks, &|c| {
            f(c * items / chunks..(c + 1) * items / chunks);
        });
    }

    /// CPU time the pool's worker threads (not the caller) have used since they
    /// started, summed (Linux per-thread clocks): `Some(0)` with one thread, `None` if
    /// a clock cannot be read. Read before and after a run of calls, it tells whether
    /// the workers took part (`snipjit bench` reports it as `worker_cpu_share`).
    pub fn worker_cpu_time(&self) -> Option<Duration> {
        match &self.pool {
            None => Some(Duration::ZERO),
            Some(pool) => Some(pool.worker_cpu_times()?.into_iter().sum()),
        }
    }

    /// Runs `f(i)` for every `i` in `0..n` on the executor's threads and returns when
    /// all are done. Indices are handed out in increasing order to whichever thread is
    /// free, the caller's included, so with more indices than threads a thread that
    /// starts late (a parked worker waking up) or runs slower (a core shared with
    /// other work) takes fewer of them. All run on the caller's thread when there is
    /// one thread, or when the workers are busy with another call. A panic in `f` is
    /// resumed on the caller's thread once every index has finished.
    pub fn for_each_index(&self, n: usize, f: &(dyn Fn(usize) + Sync)) {
        match &self.pool {
            Some(pool) if n > 1 => pool.run(n, f),
            _ => (0..n).for_each(f),
        }
    }

    /// The work items [`Executor::run`] makes of `domain` for `lanes`-wide vectors
    /// and `outputs` (element size and address of each output, in port order): a pure
    /// function of its arguments and the thread count, so a tool can print exactly
    /// what a run does.
    ///
    /// The thread count is capped so that every thread gets at least
    /// [`MIN_ELEMENTS_PER_THREAD`] elements. A domain of several rows is cut into equal
    /// runs of rows (each run one kernel call per parallel index it touches, see
    /// [`WorkItem::calls`]); a single row is cut into runs of whole vectors. A single
    /// row whose outputs are all 4-byte (f32, i32), share their misalignment and
    /// reach [`NT_STORE_MIN_BYTES`] together stores non-temporally: when the outputs
    /// are not vector-aligned, a head item of fewer than `lanes` elements with
    /// ordinary stores comes first, so that every following item starts aligned.
    pub fn plan(&self, domain: &Domain, lanes: usize, outputs: &[OutputPort]) -> Plan {
        let mut items: SmallVec<[WorkItem; 8]> = SmallVec::new();
        let numel = domain.numel();
        if numel == 0 || lanes == 0 {
            return Plan { items };
        }
        let vec_bytes = lanes * 4;
        let w = domain.w();
        let rows = numel / w;
        let threads = self
            .threads
            .min(numel.div_ceil(MIN_ELEMENTS_PER_THREAD))
            .max(1);
        // Only f32/i32 outputs get non-temporal stores (the kernel stores narrower
        // ports with ordinary stores), so only they need aligning; a head call with
        // ordinary stores aligns every output pointer when they share their
        // misalignment, and whole-vector chunks keep them aligned.
        let misalign = outputs.first().map_or(0, |o| o.addr % vec_bytes);
        let nt = rows == 1
            && !outputs.is_empty()
            && outputs.iter().all(|o| o.elem_size == 4)
            && numel.saturating_mul(4).saturating_mul(outputs.len()) >= NT_STORE_MIN_BYTES
            && misalign.is_multiple_of(4)
            && outputs.iter().all(|o| o.addr % vec_bytes == misalign);
        if rows == 1 {
            let head = if nt {
                ((vec_bytes - misalign) % vec_bytes / 4).min(w)
            } else {
                0
            };
            let item = |first_elem, elems, nt_stores| WorkItem {
                first_row: 0,
                rows: 1,
                first_elem,
                elems,
                nt_stores,
            };
            if head > 0 {
                items.push(item(0, head, false));
            }
            let chunk = (w - head).div_ceil(threads).div_ceil(lanes) * lanes;
            items.extend(
                (head..w)
                    .step_by(chunk.max(1))
                    .map(|s| item(s, chunk.min(w - s), nt)),
            );
        } else {
            let per = rows.div_ceil(threads.min(rows));
            items.extend((0..rows).step_by(per).map(|r| WorkItem {
                first_row: r,
                rows: per.min(rows - r),
                first_elem: 0,
                elems: w,
                nt_stores: false,
            }));
        }
        Plan { items }
    }

    /// Runs `k` over `domain`: `ins` and `outs` are the base pointers of the ports,
    /// `rt` the runtime argument block for the domain (the kernel's runtime pointer
    /// moves, see [`Domain::runtime_args`]).
    ///
    /// The work items are those of [`Executor::plan`]. When there are several (each
    /// thread then has at least [`MIN_ELEMENTS_PER_THREAD`] elements), the caller and
    /// the workers claim them one at a time until none is left; else the caller runs
    /// them. A panic in the kernel call is resumed on the caller's thread.
    ///
    /// # Safety
    /// Every pointer must be valid for the elements (of its port's dtype, see
    /// [`CompiledKernel::port_sizes`]) its port's strides reach over the domain (inputs
    /// readable, outputs writable and not aliasing inputs or each other), and `rt` must
    /// be `domain.runtime_args(&k.lir)`.
    pub unsafe fn run(
        &self,
        k: &CompiledKernel,
        domain: &Domain,
        rt: &[i64],
        ins: &[*const u8],
        outs: &[*mut u8],
    ) {
        if domain.numel() == 0 {
            return;
        }
        let out_sizes = &k.port_sizes[ins.len().min(k.port_sizes.len())..];
        // An output without a known element size (a caller error) gets size 0, which
        // keeps the whole run on ordinary stores.
        let outputs: SmallVec<[OutputPort; 4]> = outs
            .iter()
            .enumerate()
            .map(|(i, p)| OutputPort {
                elem_size: out_sizes.get(i).copied().unwrap_or(0),
                addr: *p as usize,
            })
            .collect();
        let plan = self.plan(domain, k.lanes, &outputs);
        let ports: SmallVec<[usize; 8]> = ins
            .iter()
            .map(|p| *p as usize)
            .chain(outs.iter().map(|p| *p as usize))
            .collect();
        let call = Call {
            k,
            domain,
            rt,
            ports: &ports,
        };
        match &self.pool {
            // Items are claimed dynamically: the caller and the workers each take the
            // next unclaimed item, so a short head item is followed by a large one on
            // the same thread rather than two large ones queueing on one worker.
            Some(pool) if plan.items.len() > 1 => pool.run(plan.items.len(), &|i| {
                call.item(&plan.items[i]);
            }),
            _ => {
                for it in &plan.items {
                    call.item(it);
                }
            }
        }
    }
}

/// One output of a run as [`Executor::plan`] sees it: non-temporal stores depend on
/// the element size and on the address's misalignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputPort {
    /// Bytes per element (4 for f32, 2 for bf16, ...).
    pub elem_size: usize,
    /// The address of the output's first element (only its misalignment matters).
    pub addr: usize,
}

/// One work item of a run: one task on the pool, a run of rows and of elements in
/// each row. All rows of the domain count (parallel indices times `M`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkItem {
    /// First row (of all `P * M` rows).
    pub first_row: usize,
    /// Rows of the item.
    pub rows: usize,
    /// First element of each row.
    pub first_elem: usize,
    /// Elements of each row: every call's `CallArgs::inner_work`.
    pub elems: usize,
    /// The main loop stores non-temporally (`CallArgs::flags` has `FLAG_NT_STORES`).
    pub nt_stores: bool,
}

impl WorkItem {
    /// The kernel calls the item makes for a domain of `m` rows per parallel index,
    /// as `(first row, rows)`: rows of one parallel index are one call
    /// (`CallArgs::outer_work`), so a run of rows that crosses a parallel boundary is
    /// several calls, each with its own start pointers.
    pub fn calls(&self, m: usize) -> impl Iterator<Item = (usize, usize)> + use<> {
        let end = self.first_row + self.rows;
        let mut r = self.first_row;
        std::iter::from_fn(move || {
            if r >= end || m == 0 {
                return None;
            }
            let n = (m - r % m).min(end - r);
            let call = (r, n);
            r += n;
            Some(call)
        })
    }
}

/// The work items of one run (see [`Executor::plan`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    items: SmallVec<[WorkItem; 8]>,
}

impl Plan {
    /// The items, in domain order.
    pub fn items(&self) -> &[WorkItem] {
        &self.items
    }

    /// Whether any item stores non-temporally.
    pub fn nt_stores(&self) -> bool {
        self.items.iter().any(|i| i.nt_stores)
    }
}

/// Elements below which a thread is not worth waking. 16 Ki f32 elements of SiLU take
/// ~4 us on one core, against a ~1.5 us hand-off to a spinning worker of the pool; a
/// worker that is parked and slow to wake loses its item to the caller (items are
/// claimed dynamically), so a split never costs more than running alone. Measured
/// (`snipjit bench examples/silu.sg --dim N=32,64 --threads 2`): 32 Ki 8.5 -> 4.7 us,
/// 64 Ki 17.5 -> 9.3 us against the earlier 64 Ki threshold.
pub const MIN_ELEMENTS_PER_THREAD: usize = 16 << 10;

/// What every work item of one run shares.
struct Call<'a> {
    k: &'a CompiledKernel,
    domain: &'a Domain,
    rt: &'a [i64],
    /// Port base addresses (inputs, then outputs).
    ports: &'a [usize],
}

// SAFETY: `Call` holds addresses (as integers) and shared references to data that the
// caller of `Executor::run` keeps alive and unaliased for the whole run.
unsafe impl Sync for Call<'_> {}

impl Call<'_> {
    fn item(&self, it: &WorkItem) {
        let d = self.domain;
        let par = d.parallel();
        let md = par.len();
        let m = d.m();
        let mut scratch: SmallVec<[u8; 256]> = SmallVec::from_elem(0, self.k.scratch_bytes + 64);
        let mut ptrs: SmallVec<[*mut u8; 16]> =
            SmallVec::from_elem(std::ptr::null_mut(), self.ports.len());
        for (r, n) in it.calls(m) {
            let (pi, mi) = (r / m, r % m);
            for (q, (base, ptr)) in self.ports.iter().zip(ptrs.iter_mut()).enumerate() {
                let strides = &d.strides[q];
                let mut rem = pi;
                let mut el = mi * strides[md] + it.first_elem * strides[md + 1];
                for dd in (0..md).rev() {
                    el += (rem % par[dd]) * strides[dd];
                    rem /= par[dd];
                }
                *ptr = (*base as *mut u8).wrapping_add(el * self.k.port_sizes[q]);
            }
            let args = CallArgs {
                ptrs: ptrs.as_ptr(),
                rt: self.rt.as_ptr(),
                scratch: scratch.as_mut_ptr(),
                inner_work: it.elems as i64,
                outer_work: n as i64,
                flags: if it.nt_stores { FLAG_NT_STORES } else { 0 },
            };
            // SAFETY: the caller of `Executor::run` guarantees the port pointers cover
            // the domain; these offsets stay inside it, and the kernel reads only
            // `args`, the argument block and its own constant pool (snipjit_x64::abi).
            unsafe { (self.k.entry)(&args) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::configure;

    /// Vector-aligned outputs of `sizes` bytes per element.
    fn aligned(sizes: &[usize]) -> Vec<OutputPort> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &elem_size)| OutputPort {
                elem_size,
                addr: 4096 * (i + 1),
            })
            .collect()
    }

    fn plan(threads: usize, d: &Domain, lanes: usize, outs: &[OutputPort]) -> Plan {
        Executor::new(threads).unwrap().plan(d, lanes, outs)
    }

    fn runs(p: &Plan) -> Vec<(usize, usize)> {
        p.items().iter().map(|i| (i.first_row, i.rows)).collect()
    }

    #[test]
    fn chunks_cover_the_items_once_in_near_equal_parts() {
        for threads in 1..=4 {
            let exec = Executor::with_spin(threads, Duration::from_micros(50)).unwrap();
            for items in 0..12 {
                let seen = std::sync::Mutex::new(vec![]);
                exec.for_each_chunk(items, &|r| seen.lock().unwrap().push(r));
                let mut ranges = seen.into_inner().unwrap();
                ranges.sort_by_key(|r| r.start);
                assert_eq!(ranges.len(), threads.min(items), "{threads} {items}");
                let covered: Vec<usize> = ranges.iter().flat_map(|r| r.clone()).collect();
                assert_eq!(covered, (0..items).collect::<Vec<_>>());
                let lens: Vec<usize> = ranges.iter().map(|r| r.len()).collect();
                let (lo, hi) = (lens.iter().min(), lens.iter().max());
                assert!(hi.zip(lo).is_none_or(|(h, l)| h - l <= 1), "{lens:?}");
            }
        }
    }

    #[test]
    fn worker_cpu_time_counts_the_workers_only() {
        assert_eq!(
            Executor::new(1).unwrap().worker_cpu_time(),
            Some(Duration::ZERO)
        );
        let exec = Executor::with_spin(2, Duration::ZERO).unwrap();
        let t0 = exec.worker_cpu_time().expect("the worker's clock reads");
        // Two items that each hold their thread busy until both have started and the
        // thread has used 20 ms of CPU time in the item (CPU, not wall time: other
        // tests share the cores): the worker must run one of them.
        let thread_cpu = || {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: a valid out-pointer; this thread's CPU clock always exists.
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
            Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
        };
        let started = std::sync::atomic::AtomicUsize::new(0);
        exec.for_each_index(2, &|_| {
            started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let t = thread_cpu();
            while started.load(std::sync::atomic::Ordering::SeqCst) < 2
                || thread_cpu() - t < Duration::from_millis(20)
            {
                std::hint::spin_loop();
            }
        });
        let used = exec.worker_cpu_time().unwrap() - t0;
        assert!(used >= Duration::from_millis(10), "{used:?}");
    }

    #[test]
    fn a_panic_in_a_chunk_reaches_the_caller() {
        let exec = Executor::new(2).unwrap();
        let r = std::panic::catch_unwind(|| {
            exec.for_each_chunk(4, &|r| assert!(!r.contains(&3), "chunk {r:?} fails"));
        });
        assert!(r.is_err());
        // The executor keeps working.
        let n = std::sync::atomic::AtomicUsize::new(0);
        exec.for_each_chunk(4, &|r| {
            n.fetch_add(r.len(), std::sync::atomic::Ordering::Relaxed);
        });
        assert_eq!(n.into_inner(), 4);
    }

    #[test]
    fn thread_counts_and_spin_times_are_checked() {
        assert!(matches!(Executor::new(0), Err(RuntimeError::Threads(_))));
        assert!(matches!(
            Executor::new(MAX_THREADS + 1),
            Err(RuntimeError::Threads(_))
        ));
        assert!(Executor::with_spin(2, MAX_SPIN).is_ok());
        let e = Executor::with_spin(2, MAX_SPIN + Duration::from_nanos(1)).unwrap_err();
        assert!(e.to_string().contains("spin time"), "{e}");
        assert_eq!(Executor::with_spin(3, Duration::ZERO).unwrap().threads(), 3);
    }

    #[test]
    fn rows_split_evenly_and_calls_stop_at_parallel_boundaries() {
        // [2 parallel, 3 rows, 40000 elements] over 4 threads: 6 rows, 2 per thread.
        let d = configure(&[&[2, 3, 40_000], &[3, 1]], &[&[2, 3, 40_000]]).unwrap();
        assert_eq!(d.dims, vec![2, 3, 40_000]);
        let p = plan(4, &d, 16, &aligned(&[4]));
        assert_eq!(runs(&p), vec![(0, 2), (2, 2), (4, 2)]);
        // Rows 2..4 cross from parallel index 0 to 1: two calls of one row each.
        assert_eq!(
            p.items()[1].calls(3).collect::<Vec<_>>(),
            vec![(2, 1), (3, 1)]
        );
        assert_eq!(p.items()[0].calls(3).collect::<Vec<_>>(), vec![(0, 2)]);
        assert!(
            p.items()
                .iter()
                .all(|i| i.first_elem == 0 && i.elems == 40_000 && !i.nt_stores)
        );
    }

    #[test]
    fn small_domains_stay_on_one_thread() {
        // 240 elements: far below the per-thread minimum.
        let d = configure(&[&[2, 3, 40], &[3, 1]], &[&[2, 3, 40]]).unwrap();
        let p = plan(4, &d, 16, &aligned(&[4]));
        assert_eq!(runs(&p), vec![(0, 6)]);
        assert_eq!(
            p.items()[0].calls(3).collect::<Vec<_>>(),
            vec![(0, 3), (3, 3)]
        );
        // Exactly two threads' worth of elements.
        let n = 2 * MIN_ELEMENTS_PER_THREAD;
        let d = configure(&[&[4, n / 4]], &[&[4, n / 4]]).unwrap();
        assert_eq!(plan(8, &d, 16, &aligned(&[4])).items().len(), 2);
        // Nothing to do: no items.
        let d = configure(&[&[0, 4]], &[&[0, 4]]).unwrap();
        assert!(plan(2, &d, 16, &aligned(&[4])).items().is_empty());
    }

    #[test]
    fn one_row_splits_in_whole_vectors() {
        let d = configure(&[&[100_000]], &[&[100_000]]).unwrap();
        let p = plan(2, &d, 16, &aligned(&[4]));
        let spans: Vec<_> = p.items().iter().map(|i| (i.first_elem, i.elems)).collect();
        assert_eq!(spans, vec![(0, 50_000), (50_000, 50_000)]);
        assert_eq!(p.items()[0].calls(1).collect::<Vec<_>>(), vec![(0, 1)]);
        // 100 003 elements: the chunk rounds up to whole vectors (50 002 -> 50 016),
        // the last is shorter.
        let d = configure(&[&[100_003]], &[&[100_003]]).unwrap();
        let p = plan(2, &d, 16, &aligned(&[4]));
        let spans: Vec<_> = p.items().iter().map(|i| (i.first_elem, i.elems)).collect();
        assert_eq!(spans, vec![(0, 50_016), (50_016, 100_003 - 50_016)]);
        assert!(!p.nt_stores());
    }

    #[test]
    fn non_temporal_stores_for_large_rows_of_four_byte_outputs() {
        // One f32 output of exactly NT_STORE_MIN_BYTES: every item stores non-temporally.
        let n = NT_STORE_MIN_BYTES / 4;
        let d = configure(&[&[n]], &[&[n]]).unwrap();
        let p = plan(2, &d, 16, &aligned(&[4]));
        assert_eq!(p.items().len(), 2);
        assert!(p.items().iter().all(|i| i.nt_stores));
        // One element less: ordinary stores.
        let d1 = configure(&[&[n - 1]], &[&[n - 1]]).unwrap();
        assert!(!plan(2, &d1, 16, &aligned(&[4])).nt_stores());
        // Two f32 outputs of half the size reach the threshold together.
        let d2 = configure(&[&[n / 2]], &[&[n / 2], &[n / 2]]).unwrap();
        assert!(plan(1, &d2, 16, &aligned(&[4, 4])).nt_stores());
        // A bf16 or u8 output is stored with ordinary stores, however large.
        assert!(!plan(2, &d, 16, &aligned(&[2])).nt_stores());
        assert!(!plan(1, &d2, 16, &aligned(&[4, 1])).nt_stores());
        // Several rows (b broadcast along them keeps the domain 2-D): ordinary stores.
        let rows = configure(&[&[2, n], &[1, n]], &[&[2, n]]).unwrap();
        assert_eq!(rows.dims, vec![2, n]);
        assert!(!plan(2, &rows, 16, &aligned(&[4])).nt_stores());
    }

    #[test]
    fn misaligned_outputs_get_an_ordinary_head_item() {
        let n = NT_STORE_MIN_BYTES / 4 + 77;
        let d = configure(&[&[n]], &[&[n]]).unwrap();
        // 12 bytes past a 64-byte boundary: 13 elements reach the next one.
        let out = [OutputPort {
            elem_size: 4,
            addr: 64 * 1000 + 12,
        }];
        let p = plan(2, &d, 16, &out);
        let items = p.items();
        assert_eq!(items.len(), 3);
        assert_eq!((items[0].first_elem, items[0].elems), (0, 13));
        assert!(!items[0].nt_stores);
        // The rest splits in whole vectors from element 13 on, every start aligned.
        let chunk = (n - 13).div_ceil(2).div_ceil(16) * 16;
        assert_eq!((items[1].first_elem, items[1].elems), (13, chunk));
        assert_eq!(
            (items[2].first_elem, items[2].elems),
            (13 + chunk, n - 13 - chunk)
        );
        assert!(items[1].nt_stores && items[2].nt_stores);
        for it in items {
            assert_eq!((64 * 1000 + 12 + 4 * it.first_elem) % 64 == 0, it.nt_stores);
        }
        // Outputs with different misalignments, or not a multiple of 4 bytes off:
        // ordinary stores, no head.
        for addrs in [[0, 12], [2, 2]] {
            let outs: Vec<OutputPort> = addrs
                .iter()
                .map(|&addr| OutputPort {
                    elem_size: 4,
                    addr: 64 * 7 + addr,
                })
                .collect();
            let d = configure(&[&[n]], &[&[n], &[n]]).unwrap();
            let p = plan(1, &d, 16, &outs);
            assert!(!p.nt_stores(), "{addrs:?}");
            assert_eq!(p.items().len(), 1);
        }
    }
}
