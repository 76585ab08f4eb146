//! Code generation: register-allocated linear IR to one shape-agnostic kernel.
//!
//! The kernel follows [`crate::abi`]: it reads the work amounts and data pointers from
//! `CallArgs`, the pointer moves that depend on the shape from the runtime argument
//! block, and nothing else; the shape never appears in the code. Every pointer move
//! is the loop manager's (`LoopInfo::ports`): a constant increment or finalization
//! offset is an immediate, any other is read from its argument-block slot
//! (`Lir::rt_slots`); a zero move emits nothing, and a loop marked `once` has no
//! increments and no back edge. For the elementwise pipeline's LIR:
//!
//! ```text
//!   hoisted invariants
//!   r8 = outer_work ; if r8 <= 0 goto done
//! row:
//!   rcx = inner_work
//!   while rcx >= lanes { main body ; moving pointers += lanes * size (immediates) ; rcx -= lanes }
//!   if rcx != 0 { tail mask from rcx ; masked tail body }       (once: no back edge)
//!   every pointer += rt[slot] (row stride - what the main loop advanced) ; if --r8 != 0 goto row
//! done:
//! ```

// dynasm! expands register operands with `.into()`.
#![allow(clippy::useless_conversion)]

use dynasmrt::{DynamicLabel, DynasmApi, DynasmLabelApi, dynasm};
use snipjit_lower::Target;
use std::collections::HashMap;

use snipjit_lower::lir::{
    Expr, ExprKind, Lir, Location, LoopId, LoopInfo, LoopKind, Move, Offset, Port,
};

use crate::abi::{
    ARGS_FLAGS, ARGS_INNER_WORK, ARGS_OUTER_WORK, ARGS_PTRS, ARGS_RT, ARGS_SCRATCH, FLAG_NT_STORES,
    POINTER_REGS,
};
use crate::asm::num_allocatable_vregs;
use crate::{Gpr, Isa, Kernel, Mem, VReg, VecAsm, X64Error};

const ARGS: Gpr = Gpr::Rdi;
const RT: Gpr = Gpr::Rsi;
const CONSTS: Gpr = Gpr::Rdx;
const INNER: Gpr = Gpr::Rcx;
const OUTER: Gpr = Gpr::R8;
const TMP: Gpr = Gpr::Rax;
const SCRATCH_BASE: Gpr = Gpr::R15;
const PTR_GPRS: [Gpr; POINTER_REGS] = [
    Gpr::R9,
    Gpr::R10,
    Gpr::R11,
    Gpr::Rbx,
    Gpr::Rbp,
    Gpr::R12,
    Gpr::R13,
    Gpr::R14,
    Gpr::R15,
];

fn scratch_for(isa: Isa, k: &ExprKind) -> usize {
    match k {
        ExprKind::Unary(u) => crate::scratch_needed_unary(*u, isa),
        ExprKind::Binary(b) => crate::scratch_needed_binary(*b, isa),
        ExprKind::PowStatic(e) => crate::scratch_needed_pow_static(*e, isa),
        ExprKind::Convert { from, to } => crate::scratch_needed_convert(*from, *to, isa),
        _ => 0,
    }
}

fn scratch_avx512(k: &ExprKind) -> usize {
    scratch_for(Isa::Avx512, k)
}

fn scratch_avx2(k: &ExprKind) -> usize {
    scratch_for(Isa::Avx2, k)
}

/// The lowering target for `isa`.
pub fn target(isa: Isa) -> Target {
    Target {
        name: isa.name(),
        lanes: isa.lanes(),
        vregs: num_allocatable_vregs(isa),
        scratch: match isa {
            Isa::Avx512 => scratch_avx512,
            Isa::Avx2 => scratch_avx2,
        },
    }
}

/// Where a port's pointer lives during the kernel.
#[derive(Clone, Copy, Debug)]
enum PtrHome {
    Reg(Gpr),
    /// `[rsp + 8 * slot]`.
    Stack(i32),
}

struct Gen<'a> {
    a: VecAsm,
    lir: &'a Lir,
    isa: Isa,
    homes: Vec<PtrHome>,
    n_inputs: usize,
    /// Open loops.
    open: Vec<OpenLoop>,
    /// Emitting the non-temporal copy of a main loop.
    nt: bool,
    /// The stack buffer AVX2 tails of sub-dword ports go through.
    tail_buf: Mem,
    /// Byte offset in the runtime argument block of every runtime pointer move.
    slots: HashMap<(LoopId, Port, Move), i32>,
}

/// A loop whose LoopBegin was emitted: (kind, dim, top label, end label, id, index of
/// the LoopBegin expression).
type OpenLoop = (
    LoopKind,
    usize,
    DynamicLabel,
    DynamicLabel,
    snipjit_lower::lir::LoopId,
    usize,
);

/// Emits the kernel for register-allocated linear IR.
/// The allocatable vector registers `lir` uses for no value, spill reload or
/// emitter scratch.
fn unused_vregs(lir: &Lir, isa: Isa) -> Vec<VReg> {
    let n = num_allocatable_vregs(isa);
    let mut used = vec![false; n];
    let regs = lir
        .locations
        .iter()
        .filter_map(|l| match l {
            Some(Location::Reg(r)) => Some(*r),
            _ => None,
        })
        .chain(lir.spill_temps.iter().copied())
        .chain(lir.scratch_regs.iter().copied());
    for r in regs {
        if let Some(u) = used.get_mut(usize::from(r)) {
            *u = true;
        }
    }
    (0..n)
        .filter(|&r| !used[r])
        .filter_map(|r| u8::try_from(r).ok().map(VReg))
        .collect()
}

pub fn emit_elementwise(lir: &Lir, isa: Isa) -> Result<Kernel, X64Error> {
    let n_ports = lir.inputs.len() + lir.outputs.len();
    let spills = lir.spill_slots > 0;
    let in_regs = if spills {
        POINTER_REGS - 1
    } else {
        POINTER_REGS
    };
    let stack_ptrs = n_ports.saturating_sub(in_regs);
    // AVX2 has no masked byte/word moves: tails of narrow ports go through a buffer
    // above the spilled pointers.
    let narrow = lir
        .inputs
        .iter()
        .chain(&lir.outputs)
        .any(|p| p.dtype.size() != 4);
    let buf_bytes = if narrow && isa == Isa::Avx2 {
        crate::asm::TAIL_BUF_BYTES
    } else {
        0
    };
    let frame_bytes = ((stack_ptrs * 8 + buf_bytes).div_ceil(16) * 16) as i32;
    let homes: Vec<PtrHome> = (0..n_ports)
        .map(|p| {
            if p < in_regs {
                PtrHome::Reg(PTR_GPRS[p])
            } else {
                PtrHome::Stack(8 * (p - in_regs) as i32)
            }
        })
        .collect();
    let mut used: Vec<Gpr> = homes
        .iter()
        .filter_map(|h| match h {
            PtrHome::Reg(r) => Some(*r),
            PtrHome::Stack(_) => None,
        })
        .collect();
    if spills {
        used.push(SCRATCH_BASE);
    }
    let mut g = Gen {
        a: VecAsm::new(isa, CONSTS)?,
        lir,
        isa,
        homes,
        n_inputs: lir.inputs.len(),
        open: vec![],
        nt: false,
        tail_buf: Mem::new(Gpr::Rsp, (stack_ptrs * 8) as i32),
        slots: lir
            .rt_slots()
            .into_iter()
            .enumerate()
            .map(|(k, s)| ((s.loop_id, s.port, s.what), 8 * k as i32))
            .collect(),
    };
    let frame = g.a.prologue(&used);
    let ops = g.a.ops();
    if frame_bytes > 0 {
        dynasm!(ops ; .arch x64 ; sub rsp, frame_bytes);
    }
    dynasm!(ops
        ; .arch x64
        ; mov Rq(RT.num()), [Rq(ARGS.num()) + ARGS_RT]
        ; mov Rq(TMP.num()), [Rq(ARGS.num()) + ARGS_PTRS]
    );
    for (p, h) in g.homes.clone().into_iter().enumerate() {
        let off = 8 * p as i32;
        let ops = g.a.ops();
        match h {
            PtrHome::Reg(r) => dynasm!(ops ; .arch x64 ; mov Rq(r.num()), [Rq(TMP.num()) + off]),
            PtrHome::Stack(s) => dynasm!(ops
                ; .arch x64
                ; mov Rq(INNER.num()), [Rq(TMP.num()) + off]
                ; mov [rsp + s], Rq(INNER.num())
            ),
        }
    }
    if spills {
        let ops = g.a.ops();
        dynasm!(ops ; .arch x64 ; mov Rq(SCRATCH_BASE.num()), [Rq(ARGS.num()) + ARGS_SCRATCH]);
    }
    // Vector registers the allocation left unused hold the emitters' constants for
    // the whole call: loaded once here instead of read from memory at every use.
    g.a.keep_constants_in(&unused_vregs(lir, isa))?;
    for i in 0..lir.exprs.len() {
        g.expr(i)?;
    }
    if !g.open.is_empty() {
        return Err(X64Error::Assembler(
            "unbalanced loops in the linear IR".into(),
        ));
    }
    let after_fence = g.a.new_label();
    let ops = g.a.ops();
    dynasm!(ops
        ; .arch x64
        ; test QWORD [Rq(ARGS.num()) + ARGS_FLAGS], FLAG_NT_STORES as i32
        ; jz =>after_fence
    );
    g.a.sfence();
    g.a.bind(after_fence);
    let ops = g.a.ops();
    if frame_bytes > 0 {
        dynasm!(ops ; .arch x64 ; add rsp, frame_bytes);
    }
    g.a.epilogue(&frame);
    g.a.finalize()
}

impl Gen<'_> {
    fn in_tail(&self) -> bool {
        self.open.iter().any(|o| o.0 == LoopKind::Tail)
    }

    fn port_dtype(&self, p: Port) -> snipjit_ir::DType {
        match p {
            Port::Input(i) => self.lir.inputs[i].dtype,
            Port::Output(o) => self.lir.outputs[o].dtype,
        }
    }

    fn port_index(&self, p: Port) -> usize {
        match p {
            Port::Input(i) => i,
            Port::Output(o) => self.n_inputs + o,
        }
    }

    /// The memory operand at port `p`'s current pointer (via rax for stack homes).
    fn port_mem(&mut self, p: Port) -> Mem {
        match self.homes[self.port_index(p)] {
            PtrHome::Reg(r) => Mem::new(r, 0),
            PtrHome::Stack(s) => {
                let ops = self.a.ops();
                dynasm!(ops ; .arch x64 ; mov Rq(TMP.num()), [rsp + s]);
                Mem::new(TMP, 0)
            }
        }
    }

    fn add_imm(&mut self, p: usize, imm: i32) {
        let ops = self.a.ops();
        match self.homes[p] {
            PtrHome::Reg(r) => dynasm!(ops ; .arch x64 ; add Rq(r.num()), imm),
            PtrHome::Stack(s) => dynasm!(ops ; .arch x64 ; add QWORD [rsp + s], imm),
        }
    }

    /// Adds a pointer move of loop `l` to `port`'s pointer: an immediate when the move
    /// is a constant, else the value of its argument-block slot; nothing when zero.
    fn add_move(
        &mut self,
        l: LoopId,
        port: Port,
        what: Move,
        off: &Offset,
    ) -> Result<(), X64Error> {
        let idx = self.port_index(port);
        if let Some(c) = off.as_constant() {
            let bytes = c
                .checked_mul(self.port_dtype(port).size() as i64)
                .ok_or_else(|| X64Error::Assembler(format!("pointer move {off} overflows")))?;
            if bytes == 0 {
                return Ok(());
            }
            if let Ok(imm) = i32::try_from(bytes) {
                self.add_imm(idx, imm);
                return Ok(());
            }
            let ops = self.a.ops();
            dynasm!(ops ; .arch x64 ; mov Rq(TMP.num()), QWORD bytes);
        } else {
            let slot = *self.slots.get(&(l, port, what)).ok_or_else(|| {
                X64Error::Assembler(format!(
                    "no argument-block slot for the {what:?} of L{} on {port:?}",
                    l.0
                ))
            })?;
            let ops = self.a.ops();
            dynasm!(ops ; .arch x64 ; mov Rq(TMP.num()), [Rq(RT.num()) + slot]);
        }
        let ops = self.a.ops();
        match self.homes[idx] {
            PtrHome::Reg(r) => dynasm!(ops ; .arch x64 ; add Rq(r.num()), Rq(TMP.num())),
            PtrHome::Stack(s) => dynasm!(ops ; .arch x64 ; add [rsp + s], Rq(TMP.num())),
        }
        Ok(())
    }

    /// The per-iteration increments of loop `l` (none for a loop that runs once).
    fn increments(&mut self, l: LoopId, info: &LoopInfo) -> Result<(), X64Error> {
        if !info.once {
            for p in &info.ports {
                self.add_move(l, p.port, Move::Increment, &p.increment)?;
            }
        }
        Ok(())
    }

    /// The finalization offsets of loop `l`, after its last iteration.
    fn finalizations(&mut self, l: LoopId, info: &LoopInfo) -> Result<(), X64Error> {
        for p in &info.ports {
            self.add_move(l, p.port, Move::Finalization, &p.finalization)?;
        }
        Ok(())
    }

    /// Applies the increments and loops back to `top` while at least one more full
    /// vector remains; a loop that runs once only counts its step off.
    fn main_loop_latch(
        &mut self,
        l: LoopId,
        info: &LoopInfo,
        top: DynamicLabel,
    ) -> Result<(), X64Error> {
        let lanes = self.isa.lanes() as i32;
        self.increments(l, info)?;
        let ops = self.a.ops();
        dynasm!(ops ; .arch x64 ; sub Rq(INNER.num()), lanes);
        if !info.once {
            dynasm!(ops
                ; .arch x64
                ; cmp Rq(INNER.num()), lanes
                ; jae =>top
            );
        }
        Ok(())
    }

    fn spill_mem(&self, slot: u32) -> Mem {
        Mem::new(SCRATCH_BASE, (slot as usize * self.isa.vec_bytes()) as i32)
    }

    /// The register holding input `k` of an expression (reloading a spilled value).
    fn use_reg(&mut self, v: snipjit_lower::lir::ValueId, k: usize) -> Result<VReg, X64Error> {
        match self.location(v)? {
            Location::Reg(r) => Ok(VReg(r)),
            Location::Spill(s) => {
                let t = VReg(self.lir.spill_temps[k]);
                let m = self.spill_mem(s);
                self.a.load(t, m)?;
                Ok(t)
            }
        }
    }

    fn location(&self, v: snipjit_lower::lir::ValueId) -> Result<Location, X64Error> {
        self.lir
            .locations
            .get(v.0 as usize)
            .copied()
            .flatten()
            .ok_or_else(|| X64Error::Assembler(format!("%{} has no register", v.0)))
    }

    fn expr(&mut self, index: usize) -> Result<(), X64Error> {
        let lir = self.lir;
        let e = &lir.exprs[index];
        let lanes = self.isa.lanes() as i32;
        match &e.kind {
            ExprKind::LoopBegin(l) => {
                let info = self.lir.loop_info(*l);
                let (top, end) = (self.a.new_label(), self.a.new_label());
                let ops = self.a.ops();
                match (info.dim, info.kind) {
                    (0, LoopKind::Main) => dynasm!(ops
                        ; .arch x64
                        ; mov Rq(INNER.num()), [Rq(ARGS.num()) + ARGS_INNER_WORK]
                        ; cmp Rq(INNER.num()), lanes
                        ; jb =>end
                        ; test QWORD [Rq(ARGS.num()) + ARGS_FLAGS], FLAG_NT_STORES as i32
                        ; jnz >nt
                        ; =>top
                    ),
                    (0, LoopKind::Tail) => {
                        dynasm!(ops ; .arch x64 ; test Rq(INNER.num()), Rq(INNER.num()) ; jz =>end);
                        self.a.set_tail_mask(INNER)?;
                    }
                    (1, _) => dynasm!(ops
                        ; .arch x64
                        ; mov Rq(OUTER.num()), [Rq(ARGS.num()) + ARGS_OUTER_WORK]
                        ; test Rq(OUTER.num()), Rq(OUTER.num())
                        ; jle =>end
                        ; =>top
                    ),
                    (d, _) => {
                        return Err(X64Error::Assembler(format!(
                            "no code for a loop over dim {d}"
                        )));
                    }
                }
                self.open.push((info.kind, info.dim, top, end, *l, index));
                Ok(())
            }
            ExprKind::LoopEnd(l) => {
                let (kind, dim, top, end, id, begin) = self
                    .open
                    .pop()
                    .ok_or_else(|| X64Error::Assembler("LoopEnd without LoopBegin".into()))?;
                if id != *l {
                    return Err(X64Error::Assembler(format!(
                        "LoopEnd L{} closes L{}",
                        l.0, id.0
                    )));
                }
                let info = self.lir.loop_info(id).clone();
                match (dim, kind) {
                    (0, LoopKind::Main) => {
                        // The regular loop, then the same body with non-temporal stores,
                        // entered from the LoopBegin when the call's flags ask for it.
                        self.main_loop_latch(id, &info, top)?;
                        let nt_top = self.a.new_label();
                        let ops = self.a.ops();
                        dynasm!(ops ; .arch x64 ; jmp =>end ; nt: ; =>nt_top);
                        self.nt = true;
                        for i in begin + 1..index {
                            self.expr(i)?;
                        }
                        self.nt = false;
                        self.main_loop_latch(id, &info, nt_top)?;
                        self.a.bind(end);
                    }
                    (0, LoopKind::Tail) => {
                        // A tail runs at most once: no back edge.
                        self.increments(id, &info)?;
                        self.a.bind(end);
                    }
                    _ => {
                        self.increments(id, &info)?;
                        let ops = self.a.ops();
                        if !info.once {
                            dynasm!(ops
                                ; .arch x64
                                ; dec Rq(OUTER.num())
                                ; jnz =>top
                            );
                        }
                        dynasm!(ops ; .arch x64 ; =>end);
                    }
                }
                self.finalizations(id, &info)?;
                Ok(())
            }
            ExprKind::Store { output } => {
                let src = self.use_reg(e.ins[0], 0)?;
                let dtype = self.port_dtype(Port::Output(*output));
                let scratch: Vec<VReg> = self.lir.scratch_regs.iter().map(|&r| VReg(r)).collect();
                let m = self.port_mem(Port::Output(*output));
                if self.in_tail() {
                    let buf = self.tail_buf;
                    self.a.store_tail_typed(m, src, dtype, &scratch, INNER, buf)
                } else if self.nt && dtype.size() == 4 {
                    self.a.store_nt(m, src)
                } else {
                    self.a.store_typed(m, src, dtype, &scratch)
                }
            }
            ExprKind::Parameter(_) | ExprKind::Result(_) => Err(X64Error::Assembler(
                "Parameter/Result left in the linear IR: InsertLoadStore did not run".into(),
            )),
            _ => self.value_expr(e),
        }
    }

    fn value_expr(&mut self, e: &Expr) -> Result<(), X64Error> {
        let out = e
            .out
            .ok_or_else(|| X64Error::Assembler(format!("{} defines no value", e.kind.name())))?;
        let mut ins = Vec::with_capacity(e.ins.len());
        for (k, &v) in e.ins.iter().enumerate() {
            ins.push(self.use_reg(v, k)?);
        }
        let out_loc = self.location(out)?;
        let dst = match out_loc {
            Location::Reg(r) => VReg(r),
            Location::Spill(_) => VReg(self.lir.spill_temps[3]),
        };
        let scratch: Vec<VReg> = self.lir.scratch_regs.iter().map(|&r| VReg(r)).collect();
        match &e.kind {
            ExprKind::Load { input } => {
                let dtype = self.port_dtype(Port::Input(*input));
                let m = self.port_mem(Port::Input(*input));
                if self.in_tail() {
                    let buf = self.tail_buf;
                    self.a.load_tail_typed(dst, m, dtype, INNER, buf)?;
                } else {
                    self.a.load_typed(dst, m, dtype)?;
                }
            }
            ExprKind::BroadcastLoad { input } => {
                let dtype = self.port_dtype(Port::Input(*input));
                let m = self.port_mem(Port::Input(*input));
                self.a.broadcast_load_typed(dst, m, dtype)?;
            }
            ExprKind::Convert { from, to } => {
                self.a.emit_convert(*from, *to, dst, ins[0], &scratch)?
            }
            ExprKind::Scalar(v) => self.a.broadcast_const(dst, *v)?,
            ExprKind::Unary(u) => self.a.emit_unary(*u, dst, ins[0], &scratch)?,
            ExprKind::Binary(b) => self.a.emit_binary(*b, dst, ins[0], ins[1], &scratch)?,
            ExprKind::Select => self.a.emit_select(dst, ins[0], ins[1], ins[2], &scratch)?,
            ExprKind::Fma => self.a.emit_fma(dst, ins[0], ins[1], ins[2], &scratch)?,
            ExprKind::PowStatic(x) => self.a.emit_pow_static(dst, ins[0], *x, &scratch)?,
            k => {
                return Err(X64Error::Assembler(format!(
                    "{} is not a value expression",
                    k.name()
                )));
            }
        }
        if let Location::Spill(s) = out_loc {
            let m = self.spill_mem(s);
            self.a.store(m, dst)?;
        }
        Ok(())
    }
}
