//! Measures the executor's hand-off: the time of `Executor::for_each_chunk` over
//! `threads` chunks that only wait until every chunk has started (a rendezvous, so
//! each chunk really runs on its own thread), back to back and with a pause between
//! calls (workers parked by then): the cost of waking the workers and waiting for
//! them, with no work.
//!
//! `cargo run --release -p snipjit-runtime --example handoff -- [THREADS] [CALLS]`
//! (defaults 2 and 20000). Prints min / median / 90th percentile per call in
//! microseconds for the spin times 0 (park at once) and the default, and for the
//! rayon pool the executor used before (`scope` with one `spawn` per chunk).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use snipjit_runtime::{DEFAULT_SPIN, Executor};

/// Times `call` `n` times (after `n / 10` warm-up calls), `pause` before each; prints
/// min / median / p90 in microseconds.
fn report(label: &str, n: usize, pause: Duration, mut call: impl FnMut()) {
    let mut times = Vec::with_capacity(n);
    for i in 0..n + n / 10 {
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
        let t = Instant::now();
        call();
        if i >= n / 10 {
            times.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    times.sort_by(f64::total_cmp);
    let q = |f: f64| times[((times.len() - 1) as f64 * f) as usize];
    let what = if pause.is_zero() {
        "back to back"
    } else {
        "1 ms apart"
    };
    println!(
        "{label:>18} {what:>12}: min {:7.2} median {:7.2} p90 {:7.2}",
        q(0.0),
        q(0.5),
        q(0.9)
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().map_or(Ok(2), |a| a.parse())?;
    let calls: usize = args.next().map_or(Ok(20_000), |a| a.parse())?;
    println!("threads {threads}; per call of {threads} rendezvous chunks, us");
    // Each chunk waits (at most 1 s) until all have arrived.
    let meet = |arrived: &AtomicUsize| {
        arrived.fetch_add(1, Ordering::SeqCst);
        let t = Instant::now();
        while arrived.load(Ordering::SeqCst) < threads && t.elapsed() < Duration::from_secs(1) {
            std::hint::spin_loop();
        }
    };
    let pauses = [
        (Duration::ZERO, calls),
        (Duration::from_millis(1), (calls / 20).max(10)),
    ];
    for spin in [Duration::ZERO, DEFAULT_SPIN] {
        let exec = Executor::with_spin(threads, spin)?;
        for (pause, n) in pauses {
            report(&format!("executor spin {spin:?}"), n, pause, || {
                let arrived = AtomicUsize::new(0);
                exec.for_each_chunk(threads, &|_| meet(&arrived));
            });
        }
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    for (pause, n) in pauses {
        report("rayon scope", n, pause, || {
            let arrived = &AtomicUsize::new(0);
            pool.scope(|s| {
                for _ in 0..threads {
                    s.spawn(move |_| meet(arrived));
                }
            })
        });
    }
    Ok(())
}
