//! How the executor splits a configured domain over threads, for `dump --dim`.
//!
//! `snipjit_runtime::Executor::run` does not expose its plan, so this module restates
//! it (crates/runtime/src/exec.rs): the thread count is capped so that every thread
//! gets at least one row or 64 vectors of one row; the rows of the whole domain
//! (parallel indices times `M`) are then cut into equal runs, or, when the domain is a
//! single row, that row is cut into runs of whole vectors. A run of rows becomes one
//! kernel call per parallel index it touches. Keep the two in step.

use snipjit_runtime::config::Domain;

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

/// The work items the executor would run for `domain` with `threads` threads and
/// `lanes`-wide vectors (one item per thread at most).
pub fn plan(domain: &Domain, lanes: usize, threads: usize) -> Vec<WorkItem> {
    if domain.numel() == 0 {
        return vec![];
    }
    let (w, m) = (domain.w(), domain.m());
    let rows = domain.parallel().iter().product::<usize>() * m;
    let threads = threads
        .min(rows.max(1) * w.div_ceil(lanes * 64).max(1))
        .max(1);
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
    items
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
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use snipjit_runtime::config::configure;

    #[test]
    fn rows_split_evenly_and_calls_stop_at_parallel_boundaries() {
        // [2 parallel, 3 rows, 40 elements] over 4 threads: 6 rows, 2 per thread.
        let d = configure(&[&[2, 3, 40], &[3, 1]], &[&[2, 3, 40]]).unwrap();
        assert_eq!(d.dims, vec![2, 3, 40]);
        let p = plan(&d, 16, 4);
        let runs: Vec<(usize, usize)> = p.iter().map(|i| (i.first_row, i.rows)).collect();
        assert_eq!(runs, vec![(0, 2), (2, 2), (4, 2)]);
        // Rows 2..4 cross from parallel index 0 to 1: two calls of one row each.
        assert_eq!(p[1].calls, vec![1, 1]);
        assert!(p.iter().all(|i| i.first_elem == 0 && i.elems == 40));
    }

    #[test]
    fn one_row_splits_in_whole_vectors() {
        let d = configure(&[&[100_000]], &[&[100_000]]).unwrap();
        let p = plan(&d, 16, 2);
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].first_elem, p[0].elems), (0, 50_000));
        assert_eq!((p[1].first_elem, p[1].elems), (50_000, 50_000));
        // Too little work for a second thread: under 64 vectors.
        let small = configure(&[&[1000]], &[&[1000]]).unwrap();
        assert_eq!(plan(&small, 16, 2).len(), 1);
        assert_eq!(plan(&small, 16, 2)[0].calls, vec![1]);
    }
}
