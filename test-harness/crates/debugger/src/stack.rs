//! Walking the emulated machine's stack the way kd does.
//!
//! On x86 through the EBP chain (the driver is built with frame pointers,
//! as WDK x86 drivers are, and the emulated kernel's functions all have EBP
//! frames); on x64 with the image's `.pdata` unwind information
//! (`RUNTIME_FUNCTION` and `UNWIND_INFO`, as `RtlVirtualUnwind` reads
//! them), which the emulated kernel carries for its own functions too.

use harness_core::arch::Arch;

/// What the walker needs to know of the machine.
pub trait Memory {
    /// Reads a pointer-sized value.
    fn pointer(&self, address: u64) -> Option<u64>;
    /// Reads bytes.
    fn bytes(&self, address: u64, length: usize) -> Option<Vec<u8>>;
}

/// A module whose code the walker can unwind.
#[derive(Debug, Clone)]
pub struct Module {
    /// Its base.
    pub base: u64,
    /// Its size in memory.
    pub size: u64,
    /// x64: the `.pdata` table's RVA and size.
    pub exception_directory: (u32, u32),
    /// x86: function start addresses whose first instruction has no frame
    /// yet (the walker finds their return address at the stack pointer).
    pub function_starts: Vec<u64>,
}

/// The registers a frame starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Registers {
    /// eip / rip.
    pub ip: u64,
    /// esp / rsp.
    pub sp: u64,
    /// ebp / rbp.
    pub bp: u64,
    /// x64 nonvolatile registers the unwind codes may restore:
    /// rbx, rbp (again), rsi, rdi, r12-r15, by CodeView number order.
    pub nonvolatile: [u64; 16],
}

/// One frame of the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// The frame's instruction pointer (frame 0: the current one; others:
    /// the return address into them).
    pub ip: u64,
    /// x86: the frame's EBP (kd's `ChildEBP`); x64: its RSP (`Child-SP`).
    pub child: u64,
    /// The address this frame returns to (0: the bottom of the stack).
    pub return_address: u64,
    /// The first arguments as kd shows them: x86 `[ebp+8]...`, x64 the
    /// home space `[rsp+8]...`.
    pub args: [u64; 4],
    /// The frame pointer locals are relative to (x86 EBP; x64 RSP after
    /// the prologue, or the established frame register).
    pub frame_base: u64,
    /// x64: the registers as they were in this frame, in CodeView order
    /// (rax rcx rdx rbx rsp rbp rsi rdi r8..r15); the nonvolatile ones are
    /// recovered through the unwind data of the frames above it, as kd
    /// does. `None` on x86 and for volatile registers of frames above 0.
    pub registers: Option<[u64; 16]>,
}

/// Whether an x64 register (CodeView order) survives calls: rbx, rsp, rbp,
/// rsi, rdi, r12-r15 (the Windows x64 calling convention).
#[must_use]
pub const fn is_nonvolatile(slot: usize) -> bool {
    matches!(slot, 3..=7 | 12..=15)
}

/// The most frames a walk produces.
const MAX_FRAMES: usize = 64;

/// Walks the stack from `registers`.
#[must_use]
pub fn walk(
    arch: Arch,
    memory: &dyn Memory,
    modules: &[Module],
    registers: Registers,
) -> Vec<Frame> {
    match arch {
        Arch::X86 => walk_x86(memory, modules, registers),
        Arch::X64 => walk_x64(memory, modules, registers),
    }
}

fn walk_x86(memory: &dyn Memory, modules: &[Module], registers: Registers) -> Vec<Frame> {
    let mut frames = Vec::new();
    let arg = |ebp: u64, index: u64| memory.pointer(ebp + 8 + 4 * index).unwrap_or(0);
    let (mut ip, mut ebp) = (registers.ip, registers.bp);
    // Frame 0 may be at a function's first instruction (no frame yet) or
    // just after `push ebp`.
    let at_start = modules
        .iter()
        .any(|module| module.function_starts.contains(&ip));
    let after_push = modules
        .iter()
        .any(|module| module.function_starts.contains(&ip.wrapping_sub(1)));
    if at_start || after_push {
        let slot = registers.sp + if at_start { 0 } else { 4 };
        let return_address = memory.pointer(slot).unwrap_or(0);
        let child = slot.wrapping_sub(4);
        frames.push(Frame {
            ip,
            child,
            return_address,
            args: [0, 1, 2, 3].map(|index| memory.pointer(slot + 4 + 4 * index).unwrap_or(0)),
            frame_base: child,
            registers: None,
        });
        if at_start {
            // ebp is still the caller's.
        } else if let Some(saved) = memory.pointer(registers.sp) {
            ebp = saved;
        }
        ip = return_address;
    }
    while frames.len() < MAX_FRAMES && ip != 0 {
        let return_address = memory.pointer(ebp + 4).unwrap_or(0);
        frames.push(Frame {
            ip,
            child: ebp,
            return_address,
            args: [arg(ebp, 0), arg(ebp, 1), arg(ebp, 2), arg(ebp, 3)],
            frame_base: ebp,
            registers: None,
        });
        let Some(next) = memory.pointer(ebp) else {
            break;
        };
        if next != 0 && next <= ebp {
            break; // a corrupt chain: kd stops too
        }
        ip = return_address;
        ebp = next;
        if ebp == 0 {
            break;
        }
    }
    frames
}

/// An `UNWIND_INFO`'s effect on a frame.
struct Unwound {
    /// The caller's RSP.
    sp: u64,
    /// The frame's own RSP after its prologue (for locals).
    frame_base: u64,
}

/// CodeView-order slot of an x64 register number in unwind codes (0 rax ... 15 r15).
const RBP: usize = 5;
const RSP: usize = 4;

fn walk_x64(memory: &dyn Memory, modules: &[Module], registers: Registers) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut ip = registers.ip;
    let mut sp = registers.sp;
    let mut saved = registers.nonvolatile;
    saved[RBP] = registers.bp;
    while frames.len() < MAX_FRAMES && ip != 0 {
        // This frame's registers: what the frames above it restored.
        let before = saved;
        let unwound = modules
            .iter()
            .find(|module| ip >= module.base && ip - module.base < module.size)
            .and_then(|module| unwind_x64(memory, module, ip, sp, &mut saved));
        // A leaf (or unknown code): the return address is at rsp.
        let (caller_sp, frame_base) =
            unwound.map_or((sp, sp), |unwound| (unwound.sp, unwound.frame_base));
        let return_address = memory.pointer(caller_sp).unwrap_or(0);
        let mut in_frame = before;
        in_frame[RSP] = sp;
        frames.push(Frame {
            ip,
            child: sp,
            return_address,
            args: [1, 2, 3, 4].map(|slot| memory.pointer(sp + 8 * slot).unwrap_or(0)),
            frame_base,
            registers: Some(in_frame),
        });
        if caller_sp <= sp && frames.len() > 1 {
            break;
        }
        ip = return_address;
        sp = caller_sp + 8;
    }
    frames
}

/// The `RUNTIME_FUNCTION` holding `rva`: its start and `UNWIND_INFO` RVA.
fn runtime_function(memory: &dyn Memory, module: &Module, rva: u32) -> Option<(u32, u32)> {
    let (table, size) = module.exception_directory;
    let entries = usize::try_from(size / 12).ok()?;
    let bytes = memory.bytes(module.base + u64::from(table), entries * 12)?;
    let read32 = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    (0..entries).find_map(|index| {
        let begin = read32(index * 12)?;
        let end = read32(index * 12 + 4)?;
        (rva >= begin && rva < end).then_some((begin, read32(index * 12 + 8)?))
    })
}

/// `UNWIND_CODE` slots an operation takes.
const fn code_slots(op: u8, op_info: u64) -> usize {
    match (op, op_info) {
        (1, 0) | (4 | 8, _) => 2,
        (1 | 5 | 9, _) => 3,
        _ => 1,
    }
}

/// Applies the unwind information for `ip`; returns where the return
/// address is.
fn unwind_x64(
    memory: &dyn Memory,
    module: &Module,
    ip: u64,
    sp: u64,
    saved: &mut [u64; 16],
) -> Option<Unwound> {
    let rva = u32::try_from(ip - module.base).ok()?;
    let (function_start, mut info_rva) = runtime_function(memory, module, rva)?;
    let offset_in_function = rva - function_start;
    let mut sp = sp;
    let mut frame_base = None;
    let mut first = true;
    loop {
        let header = memory.bytes(module.base + u64::from(info_rva), 4)?;
        let flags = header[0] >> 3;
        let prolog = u32::from(header[1]);
        let count = usize::from(header[2]);
        let frame_register = usize::from(header[3] & 0x0f);
        let frame_offset = u64::from(header[3] >> 4) * 16;
        let codes = memory.bytes(module.base + u64::from(info_rva) + 4, count * 2)?;
        // Past the prologue with a frame register: RSP comes back from it.
        if frame_register != 0 && (!first || offset_in_function >= prolog) {
            sp = saved[frame_register].wrapping_sub(frame_offset);
        }
        frame_base.get_or_insert(sp);
        let mut index = 0;
        while index < count {
            let code_offset = u32::from(codes[index * 2]);
            let op = codes[index * 2 + 1] & 0x0f;
            let op_info = u64::from(codes[index * 2 + 1] >> 4);
            let slots = code_slots(op, op_info);
            // Codes for prologue instructions not yet run are skipped.
            let applies = !first || offset_in_function >= code_offset;
            let slot16 = |at: usize| -> u64 {
                codes
                    .get(at * 2..at * 2 + 2)
                    .map_or(0, |pair| u64::from(u16::from_le_bytes([pair[0], pair[1]])))
            };
            if applies {
                match op {
                    0 => {
                        // UWOP_PUSH_NONVOL
                        saved[usize::try_from(op_info).unwrap_or(0)] =
                            memory.pointer(sp).unwrap_or(0);
                        sp += 8;
                    }
                    1 => {
                        // UWOP_ALLOC_LARGE
                        sp += if op_info == 0 {
                            slot16(index + 1) * 8
                        } else {
                            slot16(index + 1) | (slot16(index + 2) << 16)
                        };
                    }
                    2 => sp += op_info * 8 + 8, // UWOP_ALLOC_SMALL
                    4 => {
                        // UWOP_SAVE_NONVOL
                        let at = sp + slot16(index + 1) * 8;
                        saved[usize::try_from(op_info).unwrap_or(0)] =
                            memory.pointer(at).unwrap_or(0);
                    }
                    5 => {
                        let at = sp + (slot16(index + 1) | (slot16(index + 2) << 16));
                        saved[usize::try_from(op_info).unwrap_or(0)] =
                            memory.pointer(at).unwrap_or(0);
                    }
                    10 => {
                        // UWOP_PUSH_MACHFRAME: the return address is in the frame.
                        sp += if op_info == 0 { 0 } else { 8 };
                        return Some(Unwound {
                            sp,
                            frame_base: frame_base.unwrap_or(sp),
                        });
                    }
                    // UWOP_SET_FPREG (handled above) and the XMM saves,
                    // which restore no general register.
                    _ => {}
                }
            }
            index += slots;
        }
        // UNW_FLAG_CHAININFO: a RUNTIME_FUNCTION follows the codes.
        if flags & 4 == 0 {
            break;
        }
        let chained = module.base + u64::from(info_rva) + 4 + 2 * ((count as u64 + 1) & !1);
        let entry = memory.bytes(chained, 12)?;
        info_rva = u32::from_le_bytes(entry.get(8..12)?.try_into().ok()?);
        first = false;
    }
    Some(Unwound {
        sp,
        frame_base: frame_base.unwrap_or(sp),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct Fake(HashMap<u64, u8>);

    impl Fake {
        fn put(&mut self, address: u64, value: u64, size: usize) {
            for (index, byte) in value.to_le_bytes()[..size].iter().enumerate() {
                self.0.insert(address + index as u64, *byte);
            }
        }
    }

    impl Memory for Fake {
        fn pointer(&self, address: u64) -> Option<u64> {
            let bytes = self.bytes(address, 8)?;
            Some(u64::from_le_bytes(bytes.try_into().ok()?))
        }

        fn bytes(&self, address: u64, length: usize) -> Option<Vec<u8>> {
            (0..length as u64)
                .map(|offset| self.0.get(&(address + offset)).copied())
                .collect()
        }
    }

    struct Fake32(Fake);

    impl Memory for Fake32 {
        fn pointer(&self, address: u64) -> Option<u64> {
            let bytes = self.0.bytes(address, 4)?;
            Some(u64::from(u32::from_le_bytes(bytes.try_into().ok()?)))
        }

        fn bytes(&self, address: u64, length: usize) -> Option<Vec<u8>> {
            self.0.bytes(address, length)
        }
    }

    #[test]
    fn x86_follows_the_ebp_chain() {
        let mut memory = Fake(HashMap::new());
        // Frame 0 at ebp 0x1000, returns to 0x4010; its caller's ebp 0x1100.
        memory.put(0x1000, 0x1100, 4);
        memory.put(0x1004, 0x4010, 4);
        memory.put(0x1008, 0xc1, 4);
        memory.put(0x100c, 0x70, 4);
        memory.put(0x1010, 0x6463_6261, 4);
        memory.put(0x1014, 0, 4);
        memory.put(0x1100, 0, 4);
        memory.put(0x1104, 0, 4);
        memory.put(0x1108, 1, 4);
        memory.put(0x110c, 2, 4);
        memory.put(0x1110, 3, 4);
        memory.put(0x1114, 4, 4);
        let frames = walk(
            Arch::X86,
            &Fake32(memory),
            &[],
            Registers {
                ip: 0x3000,
                sp: 0xf00,
                bp: 0x1000,
                ..Registers::default()
            },
        );
        assert_eq!(frames.len(), 2);
        assert_eq!(
            (frames[0].child, frames[0].return_address),
            (0x1000, 0x4010)
        );
        assert_eq!(frames[0].args[..3], [0xc1, 0x70, 0x6463_6261]);
        assert_eq!((frames[1].ip, frames[1].child), (0x4010, 0x1100));
    }

    #[test]
    fn x64_applies_alloc_small_from_pdata() {
        let mut memory = Fake(HashMap::new());
        let base = 0x10_0000;
        // .pdata at RVA 0x100: one function [0x1000, 0x1100), unwind info at 0x200.
        memory.put(base + 0x100, 0x1000, 4);
        memory.put(base + 0x104, 0x1100, 4);
        memory.put(base + 0x108, 0x200, 4);
        // UNWIND_INFO: version 1, prolog 4, 1 code, no frame register;
        // code: offset 4, UWOP_ALLOC_SMALL, info 4 (0x28 bytes).
        for (index, byte) in [1_u8, 4, 1, 0, 4, 0x42, 0, 0].iter().enumerate() {
            memory.put(base + 0x200 + index as u64, u64::from(*byte), 1);
        }
        let sp = 0x8000;
        memory.put(sp + 0x28, 0x20_1234, 8);
        memory.put(sp + 0x30, 0, 8);
        let module = Module {
            base,
            size: 0x2000,
            exception_directory: (0x100, 12),
            function_starts: Vec::new(),
        };
        let frames = walk(
            Arch::X64,
            &memory,
            &[module],
            Registers {
                ip: base + 0x1010,
                sp,
                ..Registers::default()
            },
        );
        assert_eq!(frames[0].return_address, 0x20_1234);
        assert_eq!(frames[1].ip, 0x20_1234);
        assert_eq!(frames[1].child, sp + 0x30);
    }
}
