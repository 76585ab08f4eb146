//! How the executor splits a configured domain over threads, for `dump --dim`.
//!
//! `snipjit_runtime::Executor::run` does not expose its plan, so this module restates
//! it (crates/runtime/src/exec.rs): the thread count is capped so that every thread
//! gets at least `MIN_ELEMENTS_PER_THREAD` elements; the rows of the whole domain
//! (parallel indices times `M`) are then cut into equal runs, or, when the domain is a
//! single row, that row is cut into runs of whole vectors. A run of rows becomes one
//! kernel call per parallel index it touches.
//!
//! One thing depends on the output addresses and is only reported, not planned: a
//! single row whose outputs reach `NT_STORE_MIN_BYTES` uses non-temporal stores, and
//! if the outputs are not vector-aligned a head item of fewer than `lanes` elements
//! with ordinary stores comes first. Keep this module in step with the executor.

use snipjit_runtime::config::Domain;
use snipjit_runtime::{MIN_ELEMENTS_PER_THREAD, NT_STORE_MIN_BYTES};

/// One work item: a run of rows and of elements in each row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkItem {
    pub first_row: usize,
    pub rows: usize,
    pub first_elem: usize,
    pub elems: usize,
    /// Rows of each kernel call the item makes (`CallArgs::outer_work`); every call
    /// has `CallArgs::inner_work = elems`.
    pub calls: Vec<usize>,
}

/// The executor's plan for one domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// One item per thread at most (for vector-aligned outputs).
    pub items: Vec<WorkItem>,
    /// The main loop stores with non-temporal stores.
    pub nt_stores: bool,
}

/// The plan the executor would run for `domain` with `threads` threads,
/// `lanes`-wide vectors and `outputs` f32 outputs, assuming vector-aligned outputs.
pub fn plan(domain: &Domain, lanes: usize, threads: usize, outputs: usize) -> Plan {
    let numel = domain.numel();
    if numel == 0 {
        return Plan {
            items: vec![],
            nt_stores: false,
        };
    }
    let (w, m) = (domain.w(), domain.m());
    let rows = numel / w;
    let threads = threads.min(numel.div_ceil(MIN_ELEMENTS_PER_THREAD)).max(1);
    let nt_stores = rows == 1 && numel * 4 * outputs >= NT_STORE_MIN_BYTES;
    let items: Vec<(usize, usize, usize, usize)> = if rows == 1 {
        let chunk = (w.div_ceil(threads).div_ceil(lanes) * lanes).max(1);
        (0..w)
            .step_by(chunk)
            .map(|s| (0, 1, s, chunk.min(w - s)))
            .collect()
    } else {
        let per = rows.div_ceil(threads.min(rows));
        (0..rows)
            .step_by(per)
            .map(|r| (r, per.min(rows - r), 0, w))
            .collect()
    };
    let items = items
        .into_iter()
        .map(|(r0, nr, e0, ne)| {
            let mut calls = vec![];
            let mut r = r0;
            while r < r0 + nr {
                let n = (m - r % m).min(r0 + nr - r);
                calls.push(n);
                r += n;
            }
            WorkItem {
                first_row: r0,
                rows: nr,
                first_elem: e0,
                elems: ne,
                calls,
            }
        })
        .collect();
    Plan { items, nt_stores }
}

#[cfg(test)]
mod tests {
    use super::*;
    use snipjit_runtime::config::configure;

    fn runs(p: &Plan) -> Vec<(usize, usize)> {
        p.items.iter().map(|i| (i.first_row, i.rows)).collect()
    }

    #[test]
    fn rows_split_evenly_and_calls_stop_at_parallel_boundaries() {
        // [2 parallel, 3 rows, 40000 elements] over 4 threads: 6 rows, 2 per thread.
        let d = configure(&[&[2, 3, 40_000], &[3, 1]], &[&[2, 3, 40_000]]).unwrap();
        assert_eq!(d.dims, vec![2, 3, 40_000]);
        let p = plan(&d, 16, 4, 1);
        assert_eq!(runs(&p), vec![(0, 2), (2, 2), (4, 2)]);
        // Rows 2..4 cross from parallel index 0 to 1: two calls of one row each.
        assert_eq!(p.items[1].calls, vec![1, 1]);
        assert!(
            p.items
                .iter()
                .all(|i| i.first_elem == 0 && i.elems == 40_000)
        );
        assert!(!p.nt_stores);
    }

    #[test]
    fn small_domains_stay_on_one_thread() {
        // 240 elements: far below the per-thread minimum.
        let d = configure(&[&[2, 3, 40], &[3, 1]], &[&[2, 3, 40]]).unwrap();
        let p = plan(&d, 16, 4, 1);
        assert_eq!(runs(&p), vec![(0, 6)]);
        assert_eq!(p.items[0].calls, vec![3, 3]);
        // Exactly two threads' worth of elements.
        let n = 2 * MIN_ELEMENTS_PER_THREAD;
        let d = configure(&[&[4, n / 4]], &[&[4, n / 4]]).unwrap();
        assert_eq!(plan(&d, 16, 8, 1).items.len(), 2);
    }

    #[test]
    fn one_row_splits_in_whole_vectors() {
        let d = configure(&[&[100_000]], &[&[100_000]]).unwrap();
        let p = plan(&d, 16, 2, 1);
        assert_eq!(p.items.len(), 2);
        assert_eq!((p.items[0].first_elem, p.items[0].elems), (0, 50_000));
        assert_eq!((p.items[1].first_elem, p.items[1].elems), (50_000, 50_000));
        assert_eq!(p.items[0].calls, vec![1]);
        // 100 003 elements: the chunk rounds up to whole vectors, the last is shorter.
        let d = configure(&[&[100_003]], &[&[100_003]]).unwrap();
        let p = plan(&d, 16, 2, 1);
        assert_eq!(p.items[0].elems, 50_016);
        assert_eq!(p.items[1].elems, 100_003 - 50_016);
        // A large single row stores non-temporally.
        let big = NT_STORE_MIN_BYTES / 4;
        let d = configure(&[&[big]], &[&[big]]).unwrap();
        assert!(plan(&d, 16, 1, 1).nt_stores);
    }
}
