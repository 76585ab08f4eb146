//! The executor: splits a configured domain over threads and calls the kernel.

use smallvec::SmallVec;
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

    /// Runs `k` over `domain`: `ins` and `outs` are the base pointers of the ports,
    /// `rt` the runtime argument block for the domain (one outer increment per port).
    ///
    /// The domain is cut into work items: runs of rows, or, for a single long row,
    /// runs of whole vectors. Items go to the pool's threads only when each thread gets
    /// at least [`MIN_ELEMENTS_PER_THREAD`] elements; below that, waking threads costs
    /// more than it saves.
    ///
    /// # Safety
    /// Every pointer must be valid for the elements (of its port's dtype, see
    /// [`CompiledKernel::port_sizes`]) its port's strides reach over the domain (inputs
    /// readable, outputs writable and not aliasing inputs or each other), and `rt` must
    /// be `domain.port_outer_increments(k.lanes, &k.port_sizes)`.
    pub unsafe fn run(
        &self,
        k: &CompiledKernel,
        domain: &Domain,
        rt: &[i64],
        ins: &[*const u8],
        outs: &[*mut u8],
    ) {
        let numel = domain.numel();
        if numel == 0 {
            return;
        }
        let lanes = k.lanes;
        let vec_bytes = lanes * 4;
        let out_sizes = &k.port_sizes[ins.len().min(k.port_sizes.len())..];
        let ports: SmallVec<[usize; 8]> = ins
            .iter()
            .map(|p| *p as usize)
            .chain(outs.iter().map(|p| *p as usize))
            .collect();
        let (w, m) = (domain.w(), domain.m());
        let rows = numel / w;
        let threads = self
            .threads
            .min(numel.div_ceil(MIN_ELEMENTS_PER_THREAD))
            .max(1);
        // Non-temporal stores for large single-row domains whose outputs share their
        // misalignment: a head call with ordinary stores aligns every output pointer,
        // and whole-vector chunks keep them aligned.
        let misalign = outs.first().map_or(0, |p| *p as usize % vec_bytes);
        // Only f32/i32 outputs get non-temporal stores (the kernel stores narrower
        // ports with ordinary stores), so only they need aligning.
        let nt = rows == 1
            && !outs.is_empty()
            && out_sizes.len() == outs.len()
            && out_sizes.iter().all(|&s| s == 4)
            && numel * 4 * outs.len() >= NT_STORE_MIN_BYTES
            && misalign.is_multiple_of(4)
            && outs.iter().all(|p| *p as usize % vec_bytes == misalign);
        let head = if nt {
            ((vec_bytes - misalign) % vec_bytes / 4).min(w)
        } else {
            0
        };
        // Work items: (first row, rows, first element, elements).
        let mut items: SmallVec<[Item; 8]> = SmallVec::new();
        if rows == 1 {
            if head > 0 {
                items.push((0, 1, 0, head));
            }
            let chunk = (w - head).div_ceil(threads).div_ceil(lanes) * lanes;
            items.extend(
                (head..w)
                    .step_by(chunk.max(1))
                    .map(|s| (0, 1, s, chunk.min(w - s))),
            );
        } else {
            let per = rows.div_ceil(threads.min(rows));
            items.extend((0..rows).step_by(per).map(|r| (r, per.min(rows - r), 0, w)));
        }
        let call = Call {
            k,
            domain,
            rt,
            ports: &ports,
            m,
            nt_from: if nt { head } else { usize::MAX },
        };
        match &self.pool {
            Some(pool) if items.len() > 1 => pool.scope(|s| {
                for it in &items {
                    let call = &call;
                    s.spawn(move |_| call.item(*it));
                }
            }),
            _ => {
                for it in &items {
                    call.item(*it);
                }
            }
        }
    }
}

/// (first row, rows, first element, elements) of one work item.
type Item = (usize, usize, usize, usize);

/// Elements below which a thread is not worth waking.
pub const MIN_ELEMENTS_PER_THREAD: usize = 32 << 10;

/// What every work item of one run shares.
struct Call<'a> {
    k: &'a CompiledKernel,
    domain: &'a Domain,
    rt: &'a [i64],
    /// Port base addresses (inputs, then outputs).
    ports: &'a [usize],
    m: usize,
    /// Items starting at this element (or later) use non-temporal stores.
    nt_from: usize,
}

// SAFETY: `Call` holds addresses (as integers) and shared references to data that the
// caller of `Executor::run` keeps alive and unaliased for the whole run.
unsafe impl Sync for Call<'_> {}

impl Call<'_> {
    fn item(&self, (r0, nr, e0, ne): Item) {
        let d = self.domain;
        let par = d.parallel();
        let md = par.len();
        let mut scratch: SmallVec<[u8; 256]> = SmallVec::from_elem(0, self.k.scratch_bytes + 64);
        let mut ptrs: SmallVec<[*mut u8; 16]> =
            SmallVec::from_elem(std::ptr::null_mut(), self.ports.len());
        let end = r0 + nr;
        let mut r = r0;
        while r < end {
            // Rows of one parallel index are contiguous in the call.
            let (pi, mi) = (r / self.m, r % self.m);
            let n = (self.m - mi).min(end - r);
            for (q, (base, ptr)) in self.ports.iter().zip(ptrs.iter_mut()).enumerate() {
                let strides = &d.strides[q];
                let mut rem = pi;
                let mut el = mi * strides[md] + e0 * strides[md + 1];
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
                inner_work: ne as i64,
                outer_work: n as i64,
                flags: if e0 >= self.nt_from {
                    FLAG_NT_STORES
                } else {
                    0
                },
            };
            // SAFETY: the caller of `Executor::run` guarantees the port pointers cover
            // the domain; these offsets stay inside it, and the kernel reads only
            // `args`, the argument block and its own constant pool (snipjit_x64::abi).
            unsafe { (self.k.entry)(&args) };
            r += n;
        }
    }
}
