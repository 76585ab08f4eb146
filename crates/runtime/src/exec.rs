//! The executor: splits a configured domain over threads and calls the kernel.

use snipjit_x64::abi::{CallArgs, FLAG_NT_STORES};

use crate::RuntimeError;
use crate::config::Domain;
use crate::subgraph::CompiledKernel;

/// Runs kernels on a fixed number of threads (1 runs on the caller's thread).
#[derive(Debug)]
pub struct Executor {
    threads: usize,
    pool: Option<rayon::ThreadPool>,
}

/// The most threads an executor takes.
pub const MAX_THREADS: usize = 256;

/// Output bytes from which the main loop uses non-temporal stores: past the caches,
/// write-allocate would read every output line before overwriting it.
pub const NT_STORE_MIN_BYTES: usize = 8 << 20;

impl Executor {
    /// An executor with `threads` threads (1..=256).
    pub fn new(threads: usize) -> Result<Executor, RuntimeError> {
        if threads == 0 || threads > MAX_THREADS {
            return Err(RuntimeError::Threads(format!(
                "{threads} threads requested; 1 to {MAX_THREADS} are allowed"
            )));
        }
        let pool = if threads > 1 {
            Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .thread_name(|i| format!("snipjit-{i}"))
                    .build()
                    .map_err(|e| RuntimeError::Threads(e.to_string()))?,
            )
        } else {
            None
        };
        Ok(Executor { threads, pool })
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `k` over `domain`: `ins` and `outs` are the base pointers of the ports.
    ///
    /// # Safety
    /// Every pointer must be valid for the elements its port's strides reach over the
    /// domain (inputs readable, outputs writable and not aliasing inputs or each other).
    pub unsafe fn run(
        &self,
        k: &CompiledKernel,
        domain: &Domain,
        ins: &[*const f32],
        outs: &[*mut f32],
    ) {
        if domain.numel() == 0 {
            return;
        }
        let lanes = k.lanes;
        let vec_bytes = lanes * 4;
        let rt = domain.outer_increments(lanes, 4);
        let ports: Vec<usize> = ins
            .iter()
            .map(|p| *p as usize)
            .chain(outs.iter().map(|p| *p as usize))
            .collect();
        let (w, m) = (domain.w(), domain.m());
        let par = domain.parallel();
        let p_total: usize = par.iter().product();
        let rows = p_total * m;
        // Work items: (first row, rows, first element, elements).
        let threads = self
            .threads
            .min(rows.max(1) * w.div_ceil(lanes * 64).max(1));
        // Non-temporal stores for large single-row domains whose outputs share their
        // misalignment: a head call with ordinary stores aligns every output pointer,
        // and whole-vector chunks keep them aligned.
        let misalign = outs.first().map_or(0, |p| *p as usize % vec_bytes);
        let nt = rows == 1
            && domain.numel() * 4 * outs.len() >= NT_STORE_MIN_BYTES
            && misalign % 4 == 0
            && outs.iter().all(|p| *p as usize % vec_bytes == misalign);
        let head = if nt {
            ((vec_bytes - misalign) % vec_bytes / 4).min(w)
        } else {
            0
        };
        let items: Vec<(usize, usize, usize, usize)> = if rows == 1 {
            // One long row: split the elements, in whole vectors.
            let chunk = (w - head).div_ceil(threads).div_ceil(lanes) * lanes;
            let mut v: Vec<_> = (head > 0).then_some((0, 1, 0, head)).into_iter().collect();
            v.extend(
                (head..w)
                    .step_by(chunk.max(1))
                    .map(|s| (0, 1, s, chunk.min(w - s))),
            );
            v
        } else {
            let per = rows.div_ceil(threads.min(rows));
            (0..rows)
                .step_by(per)
                .map(|r| (r, per.min(rows - r), 0, w))
                .collect()
        };
        let run_item = |&(r0, nr, e0, ne): &(usize, usize, usize, usize), scratch: &mut Vec<u8>| {
            let mut r = r0;
            let end = r0 + nr;
            let mut ptrs = vec![std::ptr::null_mut::<u8>(); ports.len()];
            while r < end {
                // Rows of one parallel index are contiguous in the call.
                let pi = r / m;
                let mi = r % m;
                let n = (m - mi).min(end - r);
                // Parallel index -> per-port offsets.
                let mut rem = pi;
                let mut offs = vec![0usize; ports.len()];
                for d in (0..par.len()).rev() {
                    let idx = rem % par[d];
                    rem /= par[d];
                    for (q, o) in offs.iter_mut().enumerate() {
                        *o += idx * domain.strides[q][d];
                    }
                }
                let md = par.len();
                for (q, base) in ports.iter().enumerate() {
                    let el = offs[q] + mi * domain.strides[q][md] + e0 * domain.strides[q][md + 1];
                    ptrs[q] = (*base as *mut u8).wrapping_add(el * 4);
                }
                let args = CallArgs {
                    ptrs: ptrs.as_ptr(),
                    rt: rt.as_ptr(),
                    scratch: scratch.as_mut_ptr(),
                    inner_work: ne as i64,
                    outer_work: n as i64,
                    flags: if nt && e0 >= head { FLAG_NT_STORES } else { 0 },
                };
                // SAFETY: the caller guarantees the port pointers cover the domain; the
                // offsets stay inside it, and the kernel reads only `args` and its own
                // constant pool (see snipjit_x64::abi).
                unsafe { (k.entry)(&args) };
                r += n;
            }
        };
        match &self.pool {
            Some(pool) if items.len() > 1 => pool.scope(|s| {
                for it in &items {
                    let run_item = &run_item;
                    s.spawn(move |_| {
                        let mut scratch = vec![0u8; k.scratch_bytes + 64];
                        run_item(it, &mut scratch)
                    });
                }
            }),
            _ => {
                let mut scratch = vec![0u8; k.scratch_bytes + 64];
                for it in &items {
                    run_item(it, &mut scratch);
                }
            }
        }
    }
}
