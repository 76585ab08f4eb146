//! [`Kernel`]: finalized machine code plus its constant pool, in W^X memory.
//!
//! The bytes live in an anonymous mapping owned by dynasm-rs's `ExecutableBuffer`. The
//! assembler writes code into a read-write mapping and then `mprotect`s it to
//! read-execute (memmap2's `make_exec`), so no page is ever writable and executable at
//! once; `tests/wx.rs` checks the kernel's pages are `r-x` in `/proc/self/maps`.

use std::collections::BTreeMap;
use std::fmt::Write;

use dynasmrt::{AssemblyOffset, ExecutableBuffer};
use iced_x86::{Decoder, DecoderOptions, FlowControl, Formatter, Instruction, IntelFormatter};

use crate::Isa;

/// Finalized code. `Send + Sync`: the memory is read-only and may be run by any number
/// of threads at once.
#[derive(Debug)]
pub struct Kernel {
    buf: ExecutableBuffer,
    isa: Isa,
    entry: usize,
    code_len: usize,
    pool_start: usize,
}

impl Kernel {
    pub(crate) fn new(
        buf: ExecutableBuffer,
        isa: Isa,
        entry: usize,
        code_len: usize,
        pool_start: usize,
    ) -> Kernel {
        Kernel {
            buf,
            isa,
            entry,
            code_len,
            pool_start,
        }
    }

    /// The ISA the code was generated for.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// The machine code (without the padding and constant pool after it).
    pub fn code(&self) -> &[u8] {
        &self.buf[..self.code_len]
    }

    /// The constant pool (64-byte aligned, right after the code).
    pub fn pool(&self) -> &[u8] {
        &self.buf[self.pool_start..]
    }

    /// Every byte of the mapping in use: code, padding, pool.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Address of the entry point. Call it through a function pointer of the kernel's
    /// ABI only while `self` is alive.
    pub fn entry_ptr(&self) -> *const u8 {
        self.buf.ptr(AssemblyOffset(self.entry))
    }

    /// Address of the first byte of code.
    pub fn base_ptr(&self) -> *const u8 {
        self.buf.ptr(AssemblyOffset(0))
    }

    /// Intel-syntax disassembly, one instruction a line as `offset: text`, with `Ln:`
    /// lines at branch targets and the constant pool as `.dd` data.
    pub fn disasm(&self) -> String {
        disasm(self.code(), self.pool_start, self.pool())
    }
}

/// Disassembles `code` (at offset 0) followed by a pool at `pool_start`.
pub fn disasm(code: &[u8], pool_start: usize, pool: &[u8]) -> String {
    let insns: Vec<Instruction> = Decoder::with_ip(64, code, 0, DecoderOptions::NONE)
        .into_iter()
        .collect();
    let mut labels = BTreeMap::new();
    for ins in &insns {
        if matches!(
            ins.flow_control(),
            FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch | FlowControl::Call
        ) && ins.near_branch_target() < code.len() as u64
        {
            labels.insert(ins.near_branch_target(), 0usize);
        }
    }
    for (i, v) in labels.values_mut().enumerate() {
        *v = i;
    }
    let mut fmt = IntelFormatter::new();
    fmt.options_mut().set_uppercase_hex(false);
    fmt.options_mut().set_first_operand_char_index(0);
    let mut out = String::new();
    let mut text = String::new();
    for ins in &insns {
        if let Some(l) = labels.get(&ins.ip()) {
            let _ = writeln!(out, "L{l}:");
        }
        text.clear();
        fmt.format(ins, &mut text);
        let _ = write!(out, "  {:05x}: {text}", ins.ip());
        if ins.is_invalid() {
            let _ = write!(out, " ; invalid");
        }
        if matches!(
            ins.flow_control(),
            FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch | FlowControl::Call
        ) && let Some(l) = labels.get(&ins.near_branch_target())
        {
            let _ = write!(out, " ; -> L{l}");
        }
        if ins.is_ip_rel_memory_operand() && ins.ip_rel_memory_address() == pool_start as u64 {
            let _ = write!(out, " ; -> pool");
        }
        out.push('\n');
    }
    if !pool.is_empty() {
        let _ = writeln!(out, "pool:");
        for (i, chunk) in pool.chunks(32).enumerate() {
            let words: Vec<String> = chunk
                .chunks(4)
                .map(|w| {
                    let mut b = [0u8; 4];
                    b[..w.len()].copy_from_slice(w);
                    format!("0x{:08x}", u32::from_le_bytes(b))
                })
                .collect();
            let _ = writeln!(
                out,
                "  {:05x}: .dd {}",
                pool_start + i * 32,
                words.join(", ")
            );
        }
    }
    out
}
