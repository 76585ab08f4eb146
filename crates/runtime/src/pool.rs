//! The executor's worker pool: a fork-join "parallel for" over `0..items` in which the
//! calling thread takes part, tuned for calls of ~10 us to ~1 ms in quick succession.
//!
//! Policy (see also docs/architecture.md, "Executor"):
//! - A pool of `threads` runs on `threads - 1` worker threads plus the caller: the
//!   caller publishes the job and then claims items like any worker, so with `items ==
//!   threads` every thread runs one item. Items are claimed dynamically (one atomic
//!   counter), so a short item (the executor's unaligned head) never leaves a large
//!   one queued behind another on one thread.
//! - A job is published by bumping an atomic epoch (odd = a job is open). After a job,
//!   a worker spins on the epoch (`std::hint::spin_loop`) for the pool's spin time
//!   (default [`DEFAULT_SPIN`]), then parks; the next job wakes only the parked workers
//!   it needs. Back-to-back calls therefore hand off in well under a microsecond,
//!   and an idle process sleeps after the spin time: nothing busy-waits forever.
//! - The caller waits for the last item the same way: it spins for the spin time on a
//!   completion counter, then parks until the worker that finishes the last item
//!   unparks it.
//! - One job at a time: a call that finds the pool busy (another thread's call, or a
//!   call nested in a work item) runs all its items on its own thread instead of
//!   waiting, so nesting cannot deadlock and concurrent callers keep their own threads.
//! - A panic in an item is caught on the thread that ran it; the other items still
//!   run, and the caller resumes the (first) panic once every item is finished.
//!
//! Soundness rests on one rule: a worker reads the job (which borrows the caller's
//! stack) only between incrementing `in_flight` and decrementing it, and only after
//! seeing the job's epoch still open after the increment; the caller closes the epoch
//! and waits for `in_flight == 0` before it returns. Both sides use `SeqCst`, so either
//! the caller sees the worker in flight or the worker sees the job closed.

use std::any::Any;
use std::cell::UnsafeCell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

/// How long a worker (and a waiting caller) spins before it parks, unless the executor
/// is built with another value ([`crate::Executor::with_spin`], or the environment
/// variable `SNIPJIT_SPIN_US` read by [`crate::Executor::new`]).
pub const DEFAULT_SPIN: Duration = Duration::from_micros(100);

/// The longest spin time an executor accepts.
pub const MAX_SPIN: Duration = Duration::from_secs(1);

/// Spin-loop iterations between two looks at the clock.
const SPINS_PER_CLOCK_READ: u32 = 64;

/// A job item: `f(i)` for `i` in `0..items`.
type ItemFn = dyn Fn(usize) + Sync;

/// Keeps a hot atomic on its own cache lines (Zen 4's adjacent-line prefetcher pairs
/// 64-byte lines, hence 128).
#[repr(C, align(128))]
struct Padded<T>(T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// The open job, written by the caller while the epoch is even.
struct Job {
    /// The caller's item function, its lifetime erased; valid while the job is open.
    f: Option<NonNull<ItemFn>>,
    items: usize,
    /// The caller, unparked by the worker that finishes the last item.
    caller: Option<Thread>,
}

/// State shared by the caller and the workers.
struct Shared {
    /// Job generation: odd while a job is open, even between jobs.
    epoch: Padded<AtomicU64>,
    /// The next item to claim.
    next: Padded<AtomicUsize>,
    /// Items finished.
    done: Padded<AtomicUsize>,
    /// Workers that may be reading the job (see the module docs).
    in_flight: Padded<AtomicUsize>,
    /// Per worker: parked, or about to park (the caller must unpark it).
    sleeping: Box<[Padded<AtomicBool>]>,
    /// Held by the thread whose job is open.
    busy: AtomicBool,
    shutdown: AtomicBool,
    spin: Duration,
    job: UnsafeCell<Job>,
    /// The first panic payload of the open job.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

// SAFETY: `job` is written only by the thread holding `busy` while no job is open and
// no worker is in flight, and read by workers only while they are in flight on an open
// job (module docs); its `f` points to a `Sync` closure. Everything else is atomic or
// behind a mutex.
unsafe impl Sync for Shared {}
// SAFETY: as above; the raw pointer in `job` is only dereferenced under that protocol.
unsafe impl Send for Shared {}

/// A worker thread: its handle for unparking and joining.
struct Worker {
    thread: Thread,
    handle: Option<JoinHandle<()>>,
}

/// A pool of `threads - 1` workers that, with the calling thread, runs jobs of
/// independent items (see the module docs).
pub(crate) struct Pool {
    shared: Arc<Shared>,
    workers: Vec<Worker>,
}

// A panic never leaves the pool half-updated: items run under `catch_unwind`, and the
// caller resumes a panic only after closing its job and releasing `busy`; the join
// handles are touched only by `Drop`. So an `Executor` can be used inside
// `catch_unwind`.
impl std::panic::RefUnwindSafe for Pool {}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("workers", &self.workers.len())
            .field("spin", &self.shared.spin)
            .finish()
    }
}

impl Pool {
    /// A pool of `threads` threads (the caller and `threads - 1` workers) that spin for
    /// `spin` before parking.
    pub(crate) fn new(threads: usize, spin: Duration) -> std::io::Result<Pool> {
        let nworkers = threads.saturating_sub(1);
        let shared = Arc::new(Shared {
            epoch: Padded(AtomicU64::new(0)),
            next: Padded(AtomicUsize::new(0)),
            done: Padded(AtomicUsize::new(0)),
            in_flight: Padded(AtomicUsize::new(0)),
            sleeping: (0..nworkers)
                .map(|_| Padded(AtomicBool::new(false)))
                .collect(),
            busy: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            spin,
            job: UnsafeCell::new(Job {
                f: None,
                items: 0,
                caller: None,
            }),
            panic: Mutex::new(None),
        });
        // Built one worker at a time: on a spawn error, dropping `pool` stops the
        // workers already started.
        let mut pool = Pool {
            shared,
            workers: Vec::with_capacity(nworkers),
        };
        for w in 0..nworkers {
            let sh = pool.shared.clone();
            let handle = thread::Builder::new()
                .name(format!("snipjit-{}", w + 1))
                .spawn(move || worker_main(&sh, w))?;
            pool.workers.push(Worker {
                thread: handle.thread().clone(),
                handle: Some(handle),
            });
        }
        Ok(pool)
    }

    /// Runs `f(i)` for every `i` in `0..items` on the pool and the calling thread, and
    /// returns when all have finished; a panic of any `f(i)` is resumed here then.
    pub(crate) fn run(&self, items: usize, f: &(dyn Fn(usize) + Sync + '_)) {
        let sh = &*self.shared;
        if items <= 1
            || self.workers.is_empty()
            || sh
                .busy
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            (0..items).for_each(f);
            return;
        }
        let _busy = BusyGuard(&sh.busy);
        // SAFETY: only the lifetime is erased (same fat-pointer layout); the pointer is
        // dereferenced only while this job is open, and this function does not return
        // (or unwind: items run under `catch_unwind`) before the job is closed and no
        // worker is in flight.
        let erased: NonNull<ItemFn> =
            unsafe { std::mem::transmute::<NonNull<dyn Fn(usize) + Sync + '_>, _>(f.into()) };
        // SAFETY: we hold `busy` and the epoch is even (the previous holder closed its
        // job and waited for `in_flight == 0`): no worker reads `job` now.
        unsafe {
            *sh.job.get() = Job {
                f: Some(erased),
                items,
                caller: Some(thread::current()),
            };
        }
        sh.next.store(0, Ordering::Relaxed);
        sh.done.store(0, Ordering::Relaxed);
        let e = sh.epoch.load(Ordering::Relaxed) + 1;
        // Publishes the job (and the counters) to every worker that sees `e`.
        sh.epoch.store(e, Ordering::SeqCst);
        // Wake parked workers, as many as there are items besides the caller's.
        for (w, worker) in self.workers.iter().take(items - 1).enumerate() {
            if sh.sleeping[w].load(Ordering::SeqCst) {
                worker.thread.unpark();
            }
        }
        sh.run_items(f, items, None);
        // Wait for the workers' items: spin, then park (the last finisher unparks us).
        let mut spin = Spin::new(sh.spin);
        while sh.done.load(Ordering::Acquire) < items {
            if !spin.step() {
                thread::park();
            }
        }
        // Close the job, then wait for workers still in flight (they only look at the
        // counters and leave: a short wait).
        sh.epoch.store(e + 1, Ordering::SeqCst);
        let mut n = 0u32;
        while sh.in_flight.load(Ordering::SeqCst) != 0 {
            n += 1;
            if n < 1 << 12 {
                std::hint::spin_loop();
            } else {
                thread::yield_now();
            }
        }
        // SAFETY: closed and nobody in flight (as above); drops our `Thread` handle.
        unsafe {
            *sh.job.get() = Job {
                f: None,
                items: 0,
                caller: None,
            };
        }
        let panic = sh.panic.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(_busy);
        if let Some(p) = panic {
            resume_unwind(p);
        }
    }

    /// CPU time each worker thread has used so far (Linux per-thread clocks), or
    /// `None` if a clock cannot be read.
    pub(crate) fn worker_cpu_times(&self) -> Option<Vec<Duration>> {
        use std::os::unix::thread::JoinHandleExt;
        self.workers
            .iter()
            .map(|w| {
                let h = w.handle.as_ref()?;
                let mut clock: libc::clockid_t = 0;
                let mut ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                // SAFETY: the thread is alive (joined only on drop, which needs `&mut
                // self`) and both out-pointers are valid.
                let ok = unsafe {
                    libc::pthread_getcpuclockid(h.as_pthread_t(), &mut clock) == 0
                        && libc::clock_gettime(clock, &mut ts) == 0
                };
                ok.then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
            })
            .collect()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let sh = &*self.shared;
        sh.shutdown.store(true, Ordering::SeqCst);
        // An even step: wakes spinning workers without opening a job.
        sh.epoch.fetch_add(2, Ordering::SeqCst);
        for w in &self.workers {
            w.thread.unpark();
        }
        for w in &mut self.workers {
            if let Some(h) = w.handle.take() {
                // A worker never unwinds (items run under `catch_unwind`).
                let _ = h.join();
            }
        }
    }
}

/// Releases the pool's `busy` flag on drop.
struct BusyGuard<'a>(&'a AtomicBool);

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// A bounded spin: `step` spins once and says whether the time is not up yet.
struct Spin {
    start: Option<Instant>,
    limit: Duration,
    n: u32,
}

impl Spin {
    fn new(limit: Duration) -> Spin {
        Spin {
            start: None,
            limit,
            n: 0,
        }
    }

    fn step(&mut self) -> bool {
        if self.limit.is_zero() {
            return false;
        }
        std::hint::spin_loop();
        self.n += 1;
        if self.n.is_multiple_of(SPINS_PER_CLOCK_READ) {
            let start = *self.start.get_or_insert_with(Instant::now);
            return start.elapsed() < self.limit;
        }
        true
    }
}

impl Shared {
    /// Claims and runs items until none is left. A worker passes the job (the caller
    /// `None`): the worker that finishes the last item unparks the job's caller.
    fn run_items(&self, f: &(dyn Fn(usize) + Sync + '_), items: usize, worker: Option<&Job>) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= items {
                return;
            }
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| f(i))) {
                let mut slot = self.panic.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert(p);
            }
            if self.done.fetch_add(1, Ordering::AcqRel) + 1 == items
                && let Some(caller) = worker.and_then(|j| j.caller.as_ref())
            {
                caller.unpark();
            }
        }
    }

    /// Waits until the epoch differs from `seen` (spinning, then parked) and returns it.
    fn wait_for_epoch(&self, w: usize, seen: u64) -> u64 {
        let mut spin = Spin::new(self.spin);
        loop {
            let e = self.epoch.load(Ordering::Acquire);
            if e != seen {
                return e;
            }
            if !spin.step() {
                break;
            }
        }
        loop {
            // Announce the park, then look again: a caller that bumps the epoch after
            // this look sees the flag (both SeqCst) and unparks us; an unpark that comes
            // before `park` makes it return at once.
            self.sleeping[w].store(true, Ordering::SeqCst);
            let e = self.epoch.load(Ordering::SeqCst);
            if e != seen {
                self.sleeping[w].store(false, Ordering::Relaxed);
                return e;
            }
            thread::park();
        }
    }

    /// Joins the job of epoch `e` if it is still open.
    fn join(&self, e: u64) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        if self.epoch.load(Ordering::SeqCst) == e {
            // SAFETY: the job of epoch `e` is open and we are in flight, so the caller
            // neither rewrites `job` nor returns (its closure stays alive) until we
            // leave (module docs).
            let job = unsafe { &*self.job.get() };
            if let Some(f) = job.f {
                // SAFETY: as above: the closure outlives our time in flight.
                let f = unsafe { f.as_ref() };
                self.run_items(f, job.items, Some(job));
            }
        }
        self.in_flight.fetch_sub(1, Ordering::Release);
    }
}

/// A worker: waits for open jobs and takes part in them until the pool shuts down.
fn worker_main(sh: &Shared, w: usize) {
    // Fault in a typical attention scratch now, while the caller is still compiling,
    // instead of in this worker's first call.
    crate::mha::warm_worker_scratch();
    // The epoch the pool started with, not the current one: a worker that starts late
    // must still see a shutdown (or a job) that came before it.
    let mut seen = 0;
    loop {
        let e = sh.wait_for_epoch(w, seen);
        if sh.shutdown.load(Ordering::Acquire) {
            return;
        }
        seen = e;
        if e % 2 == 1 {
            sh.join(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    /// Runs a job over `items` and returns how often each item ran.
    fn counts(pool: &Pool, items: usize) -> Vec<u32> {
        let hits: Vec<AtomicU32> = (0..items).map(|_| AtomicU32::new(0)).collect();
        pool.run(items, &|i| {
            hits[i].fetch_add(1, Ordering::Relaxed);
        });
        hits.into_iter().map(AtomicU32::into_inner).collect()
    }

    #[test]
    fn every_item_runs_exactly_once() {
        for threads in [1, 2, 3, 8] {
            for spin in [Duration::ZERO, DEFAULT_SPIN] {
                let pool = Pool::new(threads, spin).unwrap();
                for items in [0, 1, 2, 3, 7, 8, 9, 100] {
                    for _ in 0..20 {
                        assert_eq!(counts(&pool, items), vec![1; items], "{threads} {items}");
                    }
                }
            }
        }
    }

    #[test]
    fn items_run_on_several_threads() {
        // Each item waits (bounded) until both have started: only possible when the
        // caller and the worker run one each.
        let pool = Pool::new(2, DEFAULT_SPIN).unwrap();
        let started = AtomicUsize::new(0);
        let ids = Mutex::new(vec![]);
        pool.run(2, &|_| {
            started.fetch_add(1, Ordering::SeqCst);
            let t = Instant::now();
            while started.load(Ordering::SeqCst) < 2 && t.elapsed() < Duration::from_secs(10) {
                std::hint::spin_loop();
            }
            ids.lock().unwrap().push(thread::current().id());
        });
        assert_eq!(started.load(Ordering::SeqCst), 2);
        let ids = ids.into_inner().unwrap();
        assert_ne!(ids[0], ids[1]);
        assert!(
            ids.contains(&thread::current().id()),
            "the caller runs an item"
        );
    }

    #[test]
    fn a_short_first_item_does_not_queue_two_long_ones_on_one_thread() {
        // The executor's plan for a misaligned non-temporal row: a short head item,
        // then two long ones. Whoever runs the head waits until the other thread has
        // started a long item, then is free first and takes the second long one.
        let pool = Pool::new(2, DEFAULT_SPIN).unwrap();
        for _ in 0..3 {
            let started = AtomicUsize::new(0);
            let ran_on = Mutex::new([None; 3]);
            pool.run(3, &|i| {
                if i == 0 {
                    let t = Instant::now();
                    while started.load(Ordering::SeqCst) == 0
                        && t.elapsed() < Duration::from_secs(10)
                    {
                        std::hint::spin_loop();
                    }
                } else {
                    started.fetch_add(1, Ordering::SeqCst);
                    thread::sleep(Duration::from_millis(30));
                }
                ran_on.lock().unwrap()[i] = Some(thread::current().id());
            });
            let [head, a, b] = ran_on.into_inner().unwrap().map(Option::unwrap);
            assert_ne!(a, b, "the long items ran on one thread");
            assert!(head == a || head == b);
        }
    }

    #[test]
    fn a_panicking_item_reaches_the_caller_after_the_others_ran() {
        let pool = Pool::new(3, DEFAULT_SPIN).unwrap();
        for bad in [0, 1, 5] {
            let hits: Vec<AtomicU32> = (0..6).map(|_| AtomicU32::new(0)).collect();
            let r = catch_unwind(AssertUnwindSafe(|| {
                pool.run(6, &|i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                    if i == bad {
                        panic!("item {i} fails");
                    }
                })
            }));
            let msg = r.expect_err("the panic propagates");
            assert_eq!(
                msg.downcast_ref::<String>().map(String::as_str),
                Some(format!("item {bad} fails").as_str())
            );
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
            // The pool still works.
            assert_eq!(counts(&pool, 6), vec![1; 6]);
        }
    }

    #[test]
    fn nested_and_concurrent_calls_run_every_item() {
        let pool = Pool::new(2, DEFAULT_SPIN).unwrap();
        let total = AtomicUsize::new(0);
        thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..50 {
                        pool.run(3, &|i| {
                            // Nested: the pool is busy, so this runs on this thread.
                            pool.run(4, &|j| {
                                total.fetch_add(10 * i + j + 1, Ordering::Relaxed);
                            });
                        });
                    }
                });
            }
        });
        // Per outer call: sum over i < 3, j < 4 of (10 i + j + 1) = 120 + 30 = 150.
        assert_eq!(total.load(Ordering::Relaxed), 8 * 50 * 150);
    }

    #[test]
    fn idle_workers_park_after_the_spin_time() {
        let busy_ms = |spin: Duration| {
            let pool = Pool::new(3, spin).unwrap();
            assert_eq!(counts(&pool, 3), vec![1; 3]);
            // Past the default spin time.
            thread::sleep(Duration::from_millis(20));
            let t0 = pool.worker_cpu_times().unwrap();
            thread::sleep(Duration::from_millis(300));
            let t1 = pool.worker_cpu_times().unwrap();
            t0.iter()
                .zip(&t1)
                .map(|(a, b)| (*b - *a).as_secs_f64() * 1e3)
                .fold(0.0, f64::max)
        };
        let parked = busy_ms(DEFAULT_SPIN);
        assert!(
            parked < 5.0,
            "an idle worker used {parked:.1} ms of CPU in 300 ms"
        );
        // The measurement can tell: workers that are still spinning use CPU (at least
        // a share of a core on a busy machine).
        let spinning = busy_ms(Duration::from_millis(700));
        assert!(
            spinning > 20.0,
            "a spinning worker used only {spinning:.1} ms"
        );
    }

    #[test]
    fn a_pool_dropped_before_its_workers_start_shuts_down() {
        // Workers that first run after the drop's shutdown must still stop (a worker
        // that took the epoch at its start as "seen" parked forever here).
        for spin in [Duration::ZERO, DEFAULT_SPIN] {
            for _ in 0..100 {
                drop(Pool::new(4, spin).unwrap());
            }
        }
    }

    #[test]
    fn jobs_racing_with_workers_going_to_park_lose_no_item() {
        // A spin of 2 us makes workers park between most jobs, so publications race
        // with workers announcing their park; pauses of varying length and several
        // callers vary the interleavings. A lost wake-up would hang here.
        let pool = Pool::new(3, Duration::from_micros(2)).unwrap();
        thread::scope(|s| {
            for t in 0..3u64 {
                let pool = &pool;
                s.spawn(move || {
                    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ t;
                    for _ in 0..400 {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let items = (rng % 9) as usize;
                        assert_eq!(counts(pool, items), vec![1; items]);
                        if rng.is_multiple_of(4) {
                            thread::sleep(Duration::from_micros(rng % 50));
                        }
                    }
                });
            }
        });
    }

    #[test]
    fn a_parked_pool_wakes_for_the_next_job() {
        let pool = Pool::new(4, Duration::ZERO).unwrap();
        for _ in 0..3 {
            thread::sleep(Duration::from_millis(5));
            assert_eq!(counts(&pool, 4), vec![1; 4]);
        }
    }
}
