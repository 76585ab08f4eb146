//! The kernel ABI: how a compiled kernel is called and what it reads.
//!
//! A kernel is `extern "sysv64" fn(args: *const CallArgs)`. Everything that depends on
//! the concrete shape is data: [`CallArgs`] (per call: data pointers already offset to
//! the call's first element, the work amounts, the per-thread scratchpad) and the
//! runtime argument block it points to (per shape: one `i64` per pointer move of the
//! loop manager that is not a compile-time constant, in the order of
//! `snipjit_lower::Lir::rt_slots`: for the elementwise kernels, one outer-loop
//! increment per port). The kernel's code never contains a shape.
//!
//! # Register roles inside an elementwise kernel
//! | register | role | why |
//! |---|---|---|
//! | `rdi` | `*const CallArgs` | first sysv64 argument; read for work amounts and pointers |
//! | `rsi` | runtime argument block | runtime pointer moves (per row: the outer increments) are added from it |
//! | `rdx` | constant-pool base | EVEX constants are addressed as `[rdx + disp]` (no RIP-relative EVEX) |
//! | `rcx` | inner work remaining | `bzhi` takes the tail count from it to build the mask |
//! | `r8` | outer rows remaining | counts down to zero |
//! | `rax` | temporary | mask building, spilled-pointer reloads |
//! | `r9 r10 r11 rbx rbp r12 r13 r14 r15` | data pointers, in port order | callee-saved ones are pushed |
//! | `[rsp + 8 j]` | data pointers past the nine | "pointer spill": the budget never splits a subgraph |
//! | `r15` | scratchpad base, when values are spilled | then only eight pointers stay in registers |

use std::mem::{offset_of, size_of};

/// What the executor passes to every kernel call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CallArgs {
    /// Data pointers, inputs then outputs, at the first element of this call.
    pub ptrs: *const *mut u8,
    /// The runtime argument block: one `i64` (bytes) per runtime pointer move, slot
    /// `k` at byte `8 k` (`snipjit_lower::Lir::rt_slots` gives the layout).
    pub rt: *const i64,
    /// Per-thread scratchpad (spilled vector values).
    pub scratch: *mut u8,
    /// Elements per row (`W`) for this call.
    pub inner_work: i64,
    /// Rows (`M`) for this call.
    pub outer_work: i64,
    /// Bit 0 ([`FLAG_NT_STORES`]): the main loop stores with non-temporal stores
    /// (every output pointer is vector-aligned at each row start), then `sfence`.
    pub flags: i64,
}

/// [`CallArgs::flags`]: non-temporal stores in the main loop.
pub const FLAG_NT_STORES: i64 = 1;

/// Byte offsets of [`CallArgs`] fields, as the emitters read them.
pub const ARGS_PTRS: i32 = offset_of!(CallArgs, ptrs) as i32;
pub const ARGS_RT: i32 = offset_of!(CallArgs, rt) as i32;
pub const ARGS_SCRATCH: i32 = offset_of!(CallArgs, scratch) as i32;
pub const ARGS_INNER_WORK: i32 = offset_of!(CallArgs, inner_work) as i32;
pub const ARGS_OUTER_WORK: i32 = offset_of!(CallArgs, outer_work) as i32;
pub const ARGS_FLAGS: i32 = offset_of!(CallArgs, flags) as i32;

const _: () = {
    assert!(size_of::<CallArgs>() == 48);
    assert!(ARGS_PTRS == 0 && ARGS_RT == 8 && ARGS_SCRATCH == 16);
    assert!(ARGS_INNER_WORK == 24 && ARGS_OUTER_WORK == 32 && ARGS_FLAGS == 40);
};

/// The type of a compiled kernel's entry point.
pub type KernelFn = unsafe extern "sysv64" fn(args: *const CallArgs);

/// Data pointers kept in registers (more are kept on the kernel's stack).
pub const POINTER_REGS: usize = 9;
