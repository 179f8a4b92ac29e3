//! A small typed eBPF instruction builder and assembler.
//!
//! Encodings follow the kernel's documented instruction set
//! (`Documentation/bpf/standardization/instruction-set.rst`, `include/uapi/linux/bpf.h`):
//! every instruction is 8 bytes — `opcode: u8`, `dst_reg: 4 bits` (low nibble),
//! `src_reg: 4 bits` (high nibble), `off: i16`, `imm: i32`, in host byte order.
//! The only 16-byte instruction is the 64-bit immediate load (`BPF_LD | BPF_DW | BPF_IMM`),
//! used here for map file descriptors.
//!
//! [`Asm`] collects instructions and resolves jumps to symbolic [`Label`]s when
//! [`Asm::finish`] is called.

use std::fmt;

/// Instruction classes (low three bits of the opcode).
pub mod class {
    /// Non-standard loads (only the 64-bit immediate load is used).
    pub const LD: u8 = 0x00;
    /// Loads from memory into a register.
    pub const LDX: u8 = 0x01;
    /// Stores of an immediate into memory.
    pub const ST: u8 = 0x02;
    /// Stores of a register into memory.
    pub const STX: u8 = 0x03;
    /// 32-bit arithmetic.
    pub const ALU: u8 = 0x04;
    /// 64-bit jumps, calls and exit.
    pub const JMP: u8 = 0x05;
    /// 32-bit jumps.
    pub const JMP32: u8 = 0x06;
    /// 64-bit arithmetic.
    pub const ALU64: u8 = 0x07;
}

/// Source operand selector (bit 3 of ALU/JMP opcodes).
pub mod source {
    /// Immediate operand (`BPF_K`).
    pub const K: u8 = 0x00;
    /// Register operand (`BPF_X`).
    pub const X: u8 = 0x08;
}

/// Memory access modes (top three bits of load/store opcodes).
pub mod mode {
    /// Immediate (only with `BPF_LD | BPF_DW`).
    pub const IMM: u8 = 0x00;
    /// Regular memory access.
    pub const MEM: u8 = 0x60;
}

/// `src_reg` of a 64-bit immediate load: the immediate is a map file descriptor.
pub const PSEUDO_MAP_FD: u8 = 1;
/// `src_reg` of a call: the immediate is a kfunc's BTF id.
pub const PSEUDO_KFUNC_CALL: u8 = 2;

/// One of the eleven eBPF registers.
///
/// R0 holds return values, R1–R5 arguments (clobbered by calls), R6–R9 are callee-saved,
/// R10 is the read-only frame pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Reg {
    R0 = 0,
    R1 = 1,
    R2 = 2,
    R3 = 3,
    R4 = 4,
    R5 = 5,
    R6 = 6,
    R7 = 7,
    R8 = 8,
    R9 = 9,
    /// Frame pointer (read-only); the stack grows down from it, 512 bytes.
    R10 = 10,
}

/// Width of a memory access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// 1 byte (`BPF_B`).
    U8,
    /// 2 bytes (`BPF_H`).
    U16,
    /// 4 bytes (`BPF_W`).
    U32,
    /// 8 bytes (`BPF_DW`).
    U64,
}

impl Size {
    /// The size bits of a load/store opcode.
    pub const fn bits(self) -> u8 {
        match self {
            Size::U32 => 0x00,
            Size::U16 => 0x08,
            Size::U8 => 0x10,
            Size::U64 => 0x18,
        }
    }
}

/// Arithmetic operations (high four bits of ALU opcodes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AluOp {
    Add,
    Sub,
    Mul,
    Div,
    Or,
    And,
    Lsh,
    Rsh,
    Neg,
    Mod,
    Xor,
    Mov,
    Arsh,
}

impl AluOp {
    /// The operation bits of an ALU opcode.
    pub const fn bits(self) -> u8 {
        match self {
            AluOp::Add => 0x00,
            AluOp::Sub => 0x10,
            AluOp::Mul => 0x20,
            AluOp::Div => 0x30,
            AluOp::Or => 0x40,
            AluOp::And => 0x50,
            AluOp::Lsh => 0x60,
            AluOp::Rsh => 0x70,
            AluOp::Neg => 0x80,
            AluOp::Mod => 0x90,
            AluOp::Xor => 0xa0,
            AluOp::Mov => 0xb0,
            AluOp::Arsh => 0xc0,
        }
    }
}

/// Conditional jump comparisons (high four bits of JMP opcodes). `U*` are unsigned, `S*` signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cond {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// unsigned `>`
    UGt,
    /// unsigned `>=`
    UGe,
    /// unsigned `<`
    ULt,
    /// unsigned `<=`
    ULe,
    /// signed `>`
    SGt,
    /// signed `>=`
    SGe,
    /// signed `<`
    SLt,
    /// signed `<=`
    SLe,
    /// `dst & src != 0`
    Set,
}

impl Cond {
    /// The operation bits of a JMP opcode.
    pub const fn bits(self) -> u8 {
        match self {
            Cond::Eq => 0x10,
            Cond::UGt => 0x20,
            Cond::UGe => 0x30,
            Cond::Set => 0x40,
            Cond::Ne => 0x50,
            Cond::SGt => 0x60,
            Cond::SGe => 0x70,
            Cond::ULt => 0xa0,
            Cond::ULe => 0xb0,
            Cond::SLt => 0xc0,
            Cond::SLe => 0xd0,
        }
    }
}

const JMP_JA: u8 = 0x00;
const JMP_CALL: u8 = 0x80;
const JMP_EXIT: u8 = 0x90;
const ALU_END: u8 = 0xd0;
const END_TO_LE: u8 = 0x00;
const END_TO_BE: u8 = 0x08;

/// One 8-byte eBPF instruction, laid out exactly like the kernel's `struct bpf_insn`.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct Insn {
    /// Opcode: class | size/source | mode/operation.
    pub code: u8,
    /// `dst_reg` in the low nibble, `src_reg` in the high nibble.
    pub regs: u8,
    /// Signed offset (memory displacement or jump distance in instructions).
    pub off: i16,
    /// Signed immediate.
    pub imm: i32,
}

impl Insn {
    /// Builds an instruction from raw fields.
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Insn {
            code,
            regs: (src << 4) | (dst & 0x0f),
            off,
            imm,
        }
    }

    /// Destination register number.
    pub const fn dst(&self) -> u8 {
        self.regs & 0x0f
    }

    /// Source register number.
    pub const fn src(&self) -> u8 {
        self.regs >> 4
    }

    /// The 8 bytes the kernel reads (host byte order, as `struct bpf_insn`).
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = self.regs;
        b[2..4].copy_from_slice(&self.off.to_ne_bytes());
        b[4..8].copy_from_slice(&self.imm.to_ne_bytes());
        b
    }

    /// `dst = imm` (64-bit, sign-extended).
    pub const fn mov64_imm(dst: Reg, imm: i32) -> Self {
        Self::alu64_imm(AluOp::Mov, dst, imm)
    }

    /// `dst = src` (64-bit).
    pub const fn mov64_reg(dst: Reg, src: Reg) -> Self {
        Self::alu64_reg(AluOp::Mov, dst, src)
    }

    /// `dst = dst <op> imm` (64-bit).
    pub const fn alu64_imm(op: AluOp, dst: Reg, imm: i32) -> Self {
        Self::new(class::ALU64 | source::K | op.bits(), dst as u8, 0, 0, imm)
    }

    /// `dst = dst <op> src` (64-bit).
    pub const fn alu64_reg(op: AluOp, dst: Reg, src: Reg) -> Self {
        Self::new(
            class::ALU64 | source::X | op.bits(),
            dst as u8,
            src as u8,
            0,
            0,
        )
    }

    /// `dst = (u32)dst <op> imm`, upper 32 bits zeroed.
    pub const fn alu32_imm(op: AluOp, dst: Reg, imm: i32) -> Self {
        Self::new(class::ALU | source::K | op.bits(), dst as u8, 0, 0, imm)
    }

    /// `dst = (u32)dst <op> (u32)src`, upper 32 bits zeroed.
    pub const fn alu32_reg(op: AluOp, dst: Reg, src: Reg) -> Self {
        Self::new(
            class::ALU | source::X | op.bits(),
            dst as u8,
            src as u8,
            0,
            0,
        )
    }

    /// Byte swap of the low `bits` (16, 32 or 64) of `dst` to big-endian (a no-op
    /// truncation on big-endian hosts).
    pub const fn to_be(dst: Reg, bits: i32) -> Self {
        Self::new(class::ALU | ALU_END | END_TO_BE, dst as u8, 0, 0, bits)
    }

    /// Conversion of the low `bits` (16, 32 or 64) of `dst` to little-endian.
    pub const fn to_le(dst: Reg, bits: i32) -> Self {
        Self::new(class::ALU | ALU_END | END_TO_LE, dst as u8, 0, 0, bits)
    }

    /// `dst = *(size *)(src + off)`, zero-extended.
    pub const fn load(size: Size, dst: Reg, src: Reg, off: i16) -> Self {
        Self::new(
            class::LDX | mode::MEM | size.bits(),
            dst as u8,
            src as u8,
            off,
            0,
        )
    }

    /// `*(size *)(dst + off) = src`.
    pub const fn store(size: Size, dst: Reg, off: i16, src: Reg) -> Self {
        Self::new(
            class::STX | mode::MEM | size.bits(),
            dst as u8,
            src as u8,
            off,
            0,
        )
    }

    /// `*(size *)(dst + off) = imm`.
    pub const fn store_imm(size: Size, dst: Reg, off: i16, imm: i32) -> Self {
        Self::new(class::ST | mode::MEM | size.bits(), dst as u8, 0, off, imm)
    }

    /// Unconditional jump by `off` instructions (relative to the next one).
    pub const fn ja(off: i16) -> Self {
        Self::new(class::JMP | JMP_JA, 0, 0, off, 0)
    }

    /// `if dst <cond> imm goto +off` (64-bit compare).
    pub const fn jmp_imm(cond: Cond, dst: Reg, imm: i32, off: i16) -> Self {
        Self::new(class::JMP | source::K | cond.bits(), dst as u8, 0, off, imm)
    }

    /// `if dst <cond> src goto +off` (64-bit compare).
    pub const fn jmp_reg(cond: Cond, dst: Reg, src: Reg, off: i16) -> Self {
        Self::new(
            class::JMP | source::X | cond.bits(),
            dst as u8,
            src as u8,
            off,
            0,
        )
    }

    /// `if (u32)dst <cond> imm goto +off` (32-bit compare).
    pub const fn jmp32_imm(cond: Cond, dst: Reg, imm: i32, off: i16) -> Self {
        Self::new(
            class::JMP32 | source::K | cond.bits(),
            dst as u8,
            0,
            off,
            imm,
        )
    }

    /// Call of a kernel helper by its number (`enum bpf_func_id`).
    pub const fn call_helper(id: i32) -> Self {
        Self::new(class::JMP | JMP_CALL, 0, 0, 0, id)
    }

    /// Call of a kfunc by its BTF id in vmlinux (`off` = 0: no module BTF fd).
    pub const fn call_kfunc(btf_id: u32) -> Self {
        Self::new(
            class::JMP | JMP_CALL,
            0,
            PSEUDO_KFUNC_CALL,
            0,
            btf_id as i32,
        )
    }

    /// Return R0 to the caller.
    pub const fn exit() -> Self {
        Self::new(class::JMP | JMP_EXIT, 0, 0, 0, 0)
    }

    /// The two instructions of `dst = imm64` with a given `src_reg` pseudo marker.
    pub const fn ld_imm64_raw(dst: Reg, src: u8, imm: u64) -> [Self; 2] {
        [
            Self::new(
                class::LD | mode::IMM | Size::U64.bits(),
                dst as u8,
                src,
                0,
                imm as u32 as i32,
            ),
            Self::new(0, 0, 0, 0, (imm >> 32) as u32 as i32),
        ]
    }

    /// `dst = imm64`.
    pub const fn ld_imm64(dst: Reg, imm: u64) -> [Self; 2] {
        Self::ld_imm64_raw(dst, 0, imm)
    }

    /// `dst = &map` where `map_fd` is a map file descriptor (`BPF_PSEUDO_MAP_FD`).
    pub const fn ld_map_fd(dst: Reg, map_fd: i32) -> [Self; 2] {
        Self::ld_imm64_raw(dst, PSEUDO_MAP_FD, map_fd as u32 as u64)
    }

    /// Whether this is the first half of a 16-byte immediate load.
    pub const fn is_ld_imm64(&self) -> bool {
        self.code == class::LD | mode::IMM | Size::U64.bits()
    }
}

impl fmt::Debug for Insn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Insn {{ code: {:#04x}, dst: r{}, src: r{}, off: {}, imm: {} }}",
            self.code,
            self.dst(),
            self.src(),
            self.off,
            self.imm
        )
    }
}

/// A symbolic jump target, created by [`Asm::label`] and placed with [`Asm::bind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Label(usize);

/// Errors found when resolving labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AsmError {
    /// A jump names a label that was never bound.
    UnboundLabel(usize),
    /// A label was bound twice.
    ReboundLabel(usize),
    /// A jump distance does not fit in 16 bits.
    JumpTooFar { at: usize, distance: i64 },
    /// The program does not fit the kernel's 1M-instruction limit (or is empty).
    BadLength(usize),
}

impl fmt::Display for AsmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AsmError::UnboundLabel(l) => write!(f, "label {l} is used but never bound"),
            AsmError::ReboundLabel(l) => write!(f, "label {l} is bound twice"),
            AsmError::JumpTooFar { at, distance } => {
                write!(f, "jump at instruction {at} is too far ({distance})")
            }
            AsmError::BadLength(n) => write!(f, "program length {n} is out of range"),
        }
    }
}

impl std::error::Error for AsmError {}

/// An instruction stream with symbolic labels.
#[derive(Debug, Default)]
pub struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, Label)>,
    rebound: Option<usize>,
}

impl Asm {
    /// An empty program.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of 8-byte slots emitted so far.
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    /// Whether nothing was emitted yet.
    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    /// A fresh, unbound label.
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Places `label` at the next instruction.
    pub fn bind(&mut self, label: Label) -> &mut Self {
        let slot = &mut self.labels[label.0];
        if slot.is_some() {
            self.rebound.get_or_insert(label.0);
        }
        *slot = Some(self.insns.len());
        self
    }

    /// Appends a ready-made instruction.
    pub fn emit(&mut self, insn: Insn) -> &mut Self {
        self.insns.push(insn);
        self
    }

    /// Appends several instructions (for the two halves of a 64-bit immediate load).
    pub fn emit_all(&mut self, insns: &[Insn]) -> &mut Self {
        self.insns.extend_from_slice(insns);
        self
    }

    /// `dst = imm` (64-bit).
    pub fn mov64_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.emit(Insn::mov64_imm(dst, imm))
    }

    /// `dst = src` (64-bit).
    pub fn mov64_reg(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.emit(Insn::mov64_reg(dst, src))
    }

    /// `dst <op>= imm` (64-bit).
    pub fn alu64_imm(&mut self, op: AluOp, dst: Reg, imm: i32) -> &mut Self {
        self.emit(Insn::alu64_imm(op, dst, imm))
    }

    /// `dst <op>= src` (64-bit).
    pub fn alu64_reg(&mut self, op: AluOp, dst: Reg, src: Reg) -> &mut Self {
        self.emit(Insn::alu64_reg(op, dst, src))
    }

    /// `dst <op>= imm` (32-bit).
    pub fn alu32_imm(&mut self, op: AluOp, dst: Reg, imm: i32) -> &mut Self {
        self.emit(Insn::alu32_imm(op, dst, imm))
    }

    /// `dst <op>= src` (32-bit).
    pub fn alu32_reg(&mut self, op: AluOp, dst: Reg, src: Reg) -> &mut Self {
        self.emit(Insn::alu32_reg(op, dst, src))
    }

    /// `dst = *(size *)(src + off)`.
    pub fn load(&mut self, size: Size, dst: Reg, src: Reg, off: i16) -> &mut Self {
        self.emit(Insn::load(size, dst, src, off))
    }

    /// `*(size *)(dst + off) = src`.
    pub fn store(&mut self, size: Size, dst: Reg, off: i16, src: Reg) -> &mut Self {
        self.emit(Insn::store(size, dst, off, src))
    }

    /// `*(size *)(dst + off) = imm`.
    pub fn store_imm(&mut self, size: Size, dst: Reg, off: i16, imm: i32) -> &mut Self {
        self.emit(Insn::store_imm(size, dst, off, imm))
    }

    fn jump_to(&mut self, insn: Insn, target: Label) -> &mut Self {
        self.fixups.push((self.insns.len(), target));
        self.emit(insn)
    }

    /// `goto target`.
    pub fn jump(&mut self, target: Label) -> &mut Self {
        self.jump_to(Insn::ja(0), target)
    }

    /// `if dst <cond> imm goto target` (64-bit compare).
    pub fn jump_if_imm(&mut self, cond: Cond, dst: Reg, imm: i32, target: Label) -> &mut Self {
        self.jump_to(Insn::jmp_imm(cond, dst, imm, 0), target)
    }

    /// `if dst <cond> src goto target` (64-bit compare).
    pub fn jump_if_reg(&mut self, cond: Cond, dst: Reg, src: Reg, target: Label) -> &mut Self {
        self.jump_to(Insn::jmp_reg(cond, dst, src, 0), target)
    }

    /// `if (u32)dst <cond> imm goto target` (32-bit compare).
    pub fn jump32_if_imm(&mut self, cond: Cond, dst: Reg, imm: i32, target: Label) -> &mut Self {
        self.jump_to(Insn::jmp32_imm(cond, dst, imm, 0), target)
    }

    /// Calls a helper by number.
    pub fn call_helper(&mut self, id: i32) -> &mut Self {
        self.emit(Insn::call_helper(id))
    }

    /// Calls a vmlinux kfunc by BTF id.
    pub fn call_kfunc(&mut self, btf_id: u32) -> &mut Self {
        self.emit(Insn::call_kfunc(btf_id))
    }

    /// `dst = &map` for a map fd.
    pub fn ld_map_fd(&mut self, dst: Reg, map_fd: i32) -> &mut Self {
        self.emit_all(&Insn::ld_map_fd(dst, map_fd))
    }

    /// `return r0`.
    pub fn exit(&mut self) -> &mut Self {
        self.emit(Insn::exit())
    }

    /// Resolves every jump and returns the instruction stream.
    pub fn finish(mut self) -> Result<Vec<Insn>, AsmError> {
        if let Some(l) = self.rebound {
            return Err(AsmError::ReboundLabel(l));
        }
        if self.insns.is_empty() || self.insns.len() > 1_000_000 {
            return Err(AsmError::BadLength(self.insns.len()));
        }
        for &(at, label) in &self.fixups {
            let target = self.labels[label.0].ok_or(AsmError::UnboundLabel(label.0))?;
            let distance = target as i64 - (at as i64 + 1);
            let off = i16::try_from(distance).map_err(|_| AsmError::JumpTooFar { at, distance })?;
            self.insns[at].off = off;
        }
        Ok(self.insns)
    }
}

/// Serialises instructions into the byte image the kernel expects.
pub fn to_bytes(insns: &[Insn]) -> Vec<u8> {
    insns.iter().flat_map(|i| i.to_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected bytes are computed by hand from the documented encoding on a little-endian
    // host: [opcode, src<<4 | dst, off lo, off hi, imm (4 bytes LE)].
    #[cfg(target_endian = "little")]
    #[test]
    fn encodings_match_hand_computed_bytes() {
        // BPF_ALU64 | BPF_K | BPF_MOV = 0x07 | 0x00 | 0xb0 = 0xb7; r0 = 2
        assert_eq!(
            Insn::mov64_imm(Reg::R0, 2).to_bytes(),
            [0xb7, 0, 0, 0, 2, 0, 0, 0]
        );
        // BPF_JMP | BPF_EXIT = 0x95
        assert_eq!(Insn::exit().to_bytes(), [0x95, 0, 0, 0, 0, 0, 0, 0]);
        // BPF_LDX | BPF_MEM | BPF_W = 0x61; r2 = *(u32 *)(r1 + 4)
        assert_eq!(
            Insn::load(Size::U32, Reg::R2, Reg::R1, 4).to_bytes(),
            [0x61, 0x12, 4, 0, 0, 0, 0, 0]
        );
        // BPF_LDX | BPF_MEM | BPF_H = 0x69; r3 = *(u16 *)(r9 + 2)
        assert_eq!(
            Insn::load(Size::U16, Reg::R3, Reg::R9, 2).to_bytes(),
            [0x69, 0x93, 2, 0, 0, 0, 0, 0]
        );
        // BPF_STX | BPF_MEM | BPF_DW = 0x7b; *(u64 *)(r10 - 8) = r1
        assert_eq!(
            Insn::store(Size::U64, Reg::R10, -8, Reg::R1).to_bytes(),
            [0x7b, 0x1a, 0xf8, 0xff, 0, 0, 0, 0]
        );
        // BPF_ST | BPF_MEM | BPF_W = 0x62; *(u32 *)(r10 - 4) = 7
        assert_eq!(
            Insn::store_imm(Size::U32, Reg::R10, -4, 7).to_bytes(),
            [0x62, 0x0a, 0xfc, 0xff, 7, 0, 0, 0]
        );
        // BPF_JMP | BPF_CALL = 0x85, imm = 51 (bpf_redirect_map)
        assert_eq!(
            Insn::call_helper(51).to_bytes(),
            [0x85, 0, 0, 0, 51, 0, 0, 0]
        );
        // kfunc call: src_reg = BPF_PSEUDO_KFUNC_CALL (2), imm = BTF id 0x12345
        assert_eq!(
            Insn::call_kfunc(0x12345).to_bytes(),
            [0x85, 0x20, 0, 0, 0x45, 0x23, 0x01, 0]
        );
        // BPF_JMP | BPF_K | BPF_JNE = 0x55; if r2 != 17 goto +3
        assert_eq!(
            Insn::jmp_imm(Cond::Ne, Reg::R2, 17, 3).to_bytes(),
            [0x55, 0x02, 3, 0, 17, 0, 0, 0]
        );
        // BPF_JMP | BPF_X | BPF_JGT = 0x2d; if r1 > r8 goto -1
        assert_eq!(
            Insn::jmp_reg(Cond::UGt, Reg::R1, Reg::R8, -1).to_bytes(),
            [0x2d, 0x81, 0xff, 0xff, 0, 0, 0, 0]
        );
        // BPF_ALU64 | BPF_X | BPF_ADD = 0x0f; r1 += r2
        assert_eq!(
            Insn::alu64_reg(AluOp::Add, Reg::R1, Reg::R2).to_bytes(),
            [0x0f, 0x21, 0, 0, 0, 0, 0, 0]
        );
        // BPF_ALU | BPF_K | BPF_AND = 0x54; w1 &= 0xf
        assert_eq!(
            Insn::alu32_imm(AluOp::And, Reg::R1, 0xf).to_bytes(),
            [0x54, 0x01, 0, 0, 0x0f, 0, 0, 0]
        );
        // BPF_ALU64 | BPF_K | BPF_ADD = 0x07; r2 += -16
        assert_eq!(
            Insn::alu64_imm(AluOp::Add, Reg::R2, -16).to_bytes(),
            [0x07, 0x02, 0, 0, 0xf0, 0xff, 0xff, 0xff]
        );
        // BPF_ALU | BPF_END | BPF_TO_BE = 0xdc, imm = 16
        assert_eq!(
            Insn::to_be(Reg::R2, 16).to_bytes(),
            [0xdc, 0x02, 0, 0, 16, 0, 0, 0]
        );
        // BPF_LD | BPF_DW | BPF_IMM = 0x18 with src_reg = BPF_PSEUDO_MAP_FD (1); r1 = map fd 5
        let ld = Insn::ld_map_fd(Reg::R1, 5);
        assert_eq!(ld[0].to_bytes(), [0x18, 0x11, 0, 0, 5, 0, 0, 0]);
        assert_eq!(ld[1].to_bytes(), [0; 8]);
        // plain 64-bit immediate: low half then high half
        let ld = Insn::ld_imm64(Reg::R3, 0x1122_3344_5566_7788);
        assert_eq!(ld[0].to_bytes(), [0x18, 0x03, 0, 0, 0x88, 0x77, 0x66, 0x55]);
        assert_eq!(ld[1].to_bytes(), [0, 0, 0, 0, 0x44, 0x33, 0x22, 0x11]);
    }

    #[test]
    fn insn_is_eight_bytes() {
        assert_eq!(std::mem::size_of::<Insn>(), 8);
    }

    #[test]
    fn labels_resolve_forward_and_backward_over_wide_loads() {
        let mut asm = Asm::new();
        let top = asm.label();
        let out = asm.label();
        asm.bind(top);
        asm.mov64_imm(Reg::R0, 0); // 0
        asm.jump_if_imm(Cond::Eq, Reg::R0, 1, out); // 1 -> 5: off 3
        asm.ld_map_fd(Reg::R1, 3); // 2, 3
        asm.jump(top); // 4 -> 0: off -5
        asm.bind(out);
        asm.exit(); // 5
        let insns = asm.finish().unwrap();
        assert_eq!(insns.len(), 6);
        assert_eq!(insns[1].off, 3);
        assert_eq!(insns[4].off, -5);
    }

    #[test]
    fn unbound_and_rebound_labels_are_errors() {
        let mut asm = Asm::new();
        let l = asm.label();
        asm.jump(l);
        assert_eq!(asm.finish(), Err(AsmError::UnboundLabel(0)));

        let mut asm = Asm::new();
        let l = asm.label();
        asm.bind(l).exit();
        asm.bind(l).exit();
        assert_eq!(asm.finish(), Err(AsmError::ReboundLabel(0)));
    }
}
