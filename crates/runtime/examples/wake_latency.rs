//! How long a pool worker takes to start on a job after the executor has been idle:
//! the part of a first call on several threads that is not the shape's (the bench's
//! `idle_inputs_us` pays it too).
//!
//! `cargo run --release -p snipjit-runtime --example wake_latency`
//!
//! Two threads; for each idle gap (the caller busy, the worker spinning its 100 us and
//! then parked), 15 jobs of two items: the caller holds item 0 until the worker has
//! started item 1, and the time from the job's start to that is printed (min / median
//! / max, microseconds).
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use snipjit_runtime::Executor;

fn main() {
    let exec = Executor::new(2).unwrap();
    for idle_ms in [0.05, 0.2, 1.0, 5.0, 20.0, 100.0] {
        let mut lat = Vec::new();
        for _ in 0..15 {
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs_f64(idle_ms / 1e3) {
                std::hint::spin_loop();
            }
            let start = Instant::now();
            let seen = AtomicU64::new(u64::MAX);
            exec.for_each_index(2, &|i| {
                if i == 1 {
                    seen.store(start.elapsed().as_nanos() as u64, Ordering::SeqCst);
                } else {
                    // Hold the caller until the worker takes item 1 (or 50 ms).
                    while seen.load(Ordering::SeqCst) == u64::MAX
                        && start.elapsed() < Duration::from_millis(50)
                    {
                        std::hint::spin_loop();
                    }
                }
            });
            lat.push(seen.load(Ordering::SeqCst) as f64 / 1e3);
        }
        lat.sort_by(f64::total_cmp);
        println!(
            "idle {idle_ms:>6} ms: worker start after {:.1} / {:.1} / {:.1} us (min/median/max)",
            lat[0],
            lat[lat.len() / 2],
            lat[lat.len() - 1]
        );
    }
}
