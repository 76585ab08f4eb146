//! Map kernels for tests and benchmarks: `dst[i] = f(src0[i], src1[i], ..)` over `n`
//! f32 elements, full vectors then one masked tail.
//!
//! ABI (`extern "sysv64"`): the source pointers, then `dst: *mut f32`, then `n: usize`
//! (unary: `fn(src, dst, n)`, binary: `fn(a, b, dst, n)`). Registers: sources in
//! `VReg(0..arity)`, the result in `VReg(arity)` (or `VReg(0)` in place), scratch
//! after them; `r11` holds the constant-pool base.

// dynasm!'s dynamic register arguments expand to `.into()` calls.
#![allow(clippy::useless_conversion)]

use dynasmrt::dynasm;
use dynasmrt::{DynasmApi, DynasmLabelApi};
use snipjit_ir::{BinaryOp, UnaryOp};

use crate::asm::Gpr;
use crate::emit::{scratch_needed_binary, scratch_needed_unary};
use crate::{Isa, Kernel, Mem, VReg, VecAsm, X64Error};

/// Largest number of sources a map kernel takes (six SysV argument registers minus
/// `dst` and `n`).
pub const MAX_ARITY: usize = 4;

/// A compiled map kernel with safe entry points.
#[derive(Debug)]
pub struct MapKernel {
    kernel: Kernel,
    arity: usize,
}

/// Builds a map kernel of `arity` sources; `body(asm, dst, srcs, scratch)` emits the
/// per-vector computation. With `in_place`, `dst` is `srcs[0]`.
pub fn jit_map<F>(
    isa: Isa,
    arity: usize,
    in_place: bool,
    scratch: usize,
    mut body: F,
) -> Result<MapKernel, X64Error>
where
    F: FnMut(&mut VecAsm, VReg, &[VReg], &[VReg]) -> Result<(), X64Error>,
{
    if arity == 0 || arity > MAX_ARITY {
        return Err(X64Error::Args(format!(
            "map kernels take 1..={MAX_ARITY} sources, not {arity}"
        )));
    }
    let srcs: Vec<VReg> = (0..arity as u8).map(VReg).collect();
    let dst = if in_place { VReg(0) } else { VReg(arity as u8) };
    let first_scratch = arity as u8 + u8::from(!in_place);
    let scratch_regs: Vec<VReg> = (first_scratch..first_scratch + scratch as u8)
        .map(VReg)
        .collect();
    let total = usize::from(first_scratch) + scratch;
    if total > crate::asm::num_allocatable_vregs(isa) {
        return Err(X64Error::Args(format!(
            "{total} vector registers needed, {} allocatable on {isa}",
            crate::asm::num_allocatable_vregs(isa)
        )));
    }
    let ptrs: Vec<Gpr> = Gpr::SYSV_ARGS[..arity].to_vec();
    let out = Gpr::SYSV_ARGS[arity];
    let n = Gpr::SYSV_ARGS[arity + 1];
    let (nr, outr) = (n.num(), out.num());
    let lanes = isa.lanes() as i32;
    let step = isa.vec_bytes() as i32;

    let mut a = VecAsm::new(isa, Gpr::R11)?;
    let frame = a.prologue(&[]);
    let lp = a.new_label();
    let tail = a.new_label();
    let done = a.new_label();
    a.bind(lp);
    dynasm!(a.ops() ; .arch x64 ; cmp Rq(nr), lanes ; jb =>tail);
    for (&p, &v) in ptrs.iter().zip(&srcs) {
        a.load(v, Mem::new(p, 0))?;
    }
    body(&mut a, dst, &srcs, &scratch_regs)?;
    a.store(Mem::new(out, 0), dst)?;
    for &p in &ptrs {
        dynasm!(a.ops() ; .arch x64 ; add Rq(p.num()), step);
    }
    dynasm!(a.ops()
        ; .arch x64
        ; add Rq(outr), step
        ; sub Rq(nr), lanes
        ; jmp =>lp
    );
    a.bind(tail);
    dynasm!(a.ops() ; .arch x64 ; test Rq(nr), Rq(nr) ; jz =>done);
    a.set_tail_mask(n)?;
    for (&p, &v) in ptrs.iter().zip(&srcs) {
        a.load_tail(v, Mem::new(p, 0))?;
    }
    body(&mut a, dst, &srcs, &scratch_regs)?;
    a.store_tail(Mem::new(out, 0), dst)?;
    a.bind(done);
    a.epilogue(&frame);
    Ok(MapKernel {
        kernel: a.finalize()?,
        arity,
    })
}

/// A map kernel applying `op` (`dst = op(src)`, fresh dst register).
pub fn jit_unary_map(isa: Isa, op: UnaryOp) -> Result<MapKernel, X64Error> {
    jit_map(
        isa,
        1,
        false,
        scratch_needed_unary(op, isa),
        |a, d, s, t| a.emit_unary(op, d, s[0], t),
    )
}

/// A map kernel applying `op` (`dst = op(a, b)`, fresh dst register).
pub fn jit_binary_map(isa: Isa, op: BinaryOp) -> Result<MapKernel, X64Error> {
    jit_map(
        isa,
        2,
        false,
        scratch_needed_binary(op, isa),
        |a, d, s, t| a.emit_binary(op, d, s[0], s[1], t),
    )
}

type Fn1 = unsafe extern "sysv64" fn(*const f32, *mut f32, usize);
type Fn2 = unsafe extern "sysv64" fn(*const f32, *const f32, *mut f32, usize);
type Fn3 = unsafe extern "sysv64" fn(*const f32, *const f32, *const f32, *mut f32, usize);
type Fn4 =
    unsafe extern "sysv64" fn(*const f32, *const f32, *const f32, *const f32, *mut f32, usize);

impl MapKernel {
    /// The compiled kernel (for disassembly or code inspection).
    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    /// Number of sources.
    pub fn arity(&self) -> usize {
        self.arity
    }

    /// Runs the kernel over `dst.len()` elements. Every source must be as long as
    /// `dst`; the CPU must support the kernel's ISA.
    pub fn run(&self, srcs: &[&[f32]], dst: &mut [f32]) -> Result<(), X64Error> {
        if srcs.len() != self.arity {
            return Err(X64Error::Args(format!(
                "kernel takes {} sources, got {}",
                self.arity,
                srcs.len()
            )));
        }
        if let Some(bad) = srcs.iter().position(|s| s.len() != dst.len()) {
            return Err(X64Error::Args(format!(
                "source {bad} has {} elements, dst has {}",
                srcs[bad].len(),
                dst.len()
            )));
        }
        let isa = self.kernel.isa();
        if !isa.is_supported() {
            return Err(X64Error::IsaUnsupported { isa });
        }
        let n = dst.len();
        let d = dst.as_mut_ptr();
        let p = |i: usize| srcs[i].as_ptr();
        let entry = self.kernel.entry_ptr();
        // SAFETY: the kernel was generated by `jit_map` for exactly this arity and ABI;
        // it reads `n` f32 from each source and writes `n` to dst (tails are masked), and
        // all slices hold `n` elements. The ISA is supported (checked above).
        unsafe {
            match self.arity {
                1 => std::mem::transmute::<*const u8, Fn1>(entry)(p(0), d, n),
                2 => std::mem::transmute::<*const u8, Fn2>(entry)(p(0), p(1), d, n),
                3 => std::mem::transmute::<*const u8, Fn3>(entry)(p(0), p(1), p(2), d, n),
                _ => std::mem::transmute::<*const u8, Fn4>(entry)(p(0), p(1), p(2), p(3), d, n),
            }
        }
        Ok(())
    }

    /// [`MapKernel::run`] for one source.
    pub fn run1(&self, src: &[f32], dst: &mut [f32]) -> Result<(), X64Error> {
        self.run(&[src], dst)
    }

    /// [`MapKernel::run`] for two sources.
    pub fn run2(&self, a: &[f32], b: &[f32], dst: &mut [f32]) -> Result<(), X64Error> {
        self.run(&[a, b], dst)
    }
}
