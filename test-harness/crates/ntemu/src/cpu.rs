//! Reading and writing the emulated machine: memory by virtual address
//! (translated through the machine's own map, as the TLB hook does),
//! registers by role, and strings as the kernel lays them out.

use unicorn_engine::{RegisterX86, Unicorn};

use super::machine::Kernel;
use harness_core::arch::Arch;

/// The Unicorn instance of a machine, with the kernel's state as its data.
pub(crate) type Uc<'a> = Unicorn<'a, Kernel>;

/// An access to an address nothing is mapped at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no memory at 0x{0:x}")]
pub struct BadAddress(pub u64);

/// The machine's architecture.
#[must_use]
pub fn arch(uc: &Uc<'_>) -> Arch {
    uc.get_data().arch
}

/// Reads `buffer.len()` bytes at `va`.
///
/// # Errors
/// Part of the range is not mapped.
pub fn read(uc: &Uc<'_>, va: u64, buffer: &mut [u8]) -> Result<(), BadAddress> {
    let mut done = 0;
    while done < buffer.len() {
        let at = va.wrapping_add(done as u64);
        let (pa, left, _) = uc.get_data().space.translate(at).ok_or(BadAddress(at))?;
        let chunk = usize::try_from(left)
            .unwrap_or(usize::MAX)
            .min(buffer.len() - done);
        uc.mem_read(pa, &mut buffer[done..done + chunk])
            .map_err(|_| BadAddress(at))?;
        done += chunk;
    }
    Ok(())
}

/// Writes `bytes` at `va`.
///
/// # Errors
/// Part of the range is not mapped.
pub fn write(uc: &mut Uc<'_>, va: u64, bytes: &[u8]) -> Result<(), BadAddress> {
    let mut done = 0;
    while done < bytes.len() {
        let at = va.wrapping_add(done as u64);
        let Some((pa, left, _)) = uc.get_data().space.translate(at) else {
            // Remembered: a routine's fault here is a write (0xCC's Arg2).
            uc.get_data_mut().failed_write = Some(at);
            return Err(BadAddress(at));
        };
        let chunk = usize::try_from(left)
            .unwrap_or(usize::MAX)
            .min(bytes.len() - done);
        uc.mem_write(pa, &bytes[done..done + chunk])
            .map_err(|_| BadAddress(at))?;
        done += chunk;
    }
    Ok(())
}

/// Reads `len` bytes.
///
/// # Errors
/// Part of the range is not mapped.
pub fn read_vec(uc: &Uc<'_>, va: u64, len: usize) -> Result<Vec<u8>, BadAddress> {
    let mut buffer = vec![0; len];
    read(uc, va, &mut buffer)?;
    Ok(buffer)
}

/// Reads a little-endian unsigned integer of `size` bytes (1, 2, 4 or 8).
///
/// # Errors
/// Not mapped.
pub fn read_uint(uc: &Uc<'_>, va: u64, size: usize) -> Result<u64, BadAddress> {
    let mut buffer = [0_u8; 8];
    read(uc, va, &mut buffer[..size])?;
    Ok(u64::from_le_bytes(buffer))
}

/// Reads a `u16`.
///
/// # Errors
/// Not mapped.
pub(crate) fn read_u16(uc: &Uc<'_>, va: u64) -> Result<u16, BadAddress> {
    read_uint(uc, va, 2).map(|value| u16::try_from(value).unwrap_or(0))
}

/// Reads a `u32`.
///
/// # Errors
/// Not mapped.
pub(crate) fn read_u32(uc: &Uc<'_>, va: u64) -> Result<u32, BadAddress> {
    read_uint(uc, va, 4).map(|value| u32::try_from(value).unwrap_or(0))
}

/// Reads a `u64`.
///
/// # Errors
/// Not mapped.
pub(crate) fn read_u64(uc: &Uc<'_>, va: u64) -> Result<u64, BadAddress> {
    read_uint(uc, va, 8)
}

/// Reads a pointer of the machine's width.
///
/// # Errors
/// Not mapped.
pub fn read_ptr(uc: &Uc<'_>, va: u64) -> Result<u64, BadAddress> {
    let size = usize::try_from(arch(uc).pointer_size()).unwrap_or(8);
    read_uint(uc, va, size)
}

/// Writes an unsigned integer of `size` bytes.
///
/// # Errors
/// Not mapped.
pub(crate) fn write_uint(
    uc: &mut Uc<'_>,
    va: u64,
    value: u64,
    size: usize,
) -> Result<(), BadAddress> {
    write(uc, va, &value.to_le_bytes()[..size])
}

/// Writes a pointer of the machine's width.
///
/// # Errors
/// Not mapped.
pub(crate) fn write_ptr(uc: &mut Uc<'_>, va: u64, value: u64) -> Result<(), BadAddress> {
    let size = usize::try_from(arch(uc).pointer_size()).unwrap_or(8);
    write_uint(uc, va, value, size)
}

/// Reads a NUL-terminated byte string of at most `max` bytes.
///
/// # Errors
/// Not mapped before the terminator.
pub(crate) fn read_cstring(uc: &Uc<'_>, va: u64, max: usize) -> Result<Vec<u8>, BadAddress> {
    let mut out = Vec::new();
    let mut byte = [0_u8; 1];
    while out.len() < max {
        read(uc, va + out.len() as u64, &mut byte)?;
        if byte[0] == 0 {
            break;
        }
        out.push(byte[0]);
    }
    Ok(out)
}

/// Reads a NUL-terminated UTF-16 string of at most `max` units.
///
/// # Errors
/// Not mapped before the terminator.
pub(crate) fn read_wstring(uc: &Uc<'_>, va: u64, max: usize) -> Result<Vec<u16>, BadAddress> {
    let mut out = Vec::new();
    while out.len() < max {
        let unit = read_u16(uc, va + 2 * out.len() as u64)?;
        if unit == 0 {
            break;
        }
        out.push(unit);
    }
    Ok(out)
}

/// A `UNICODE_STRING` (or `ANSI_STRING`): Length, `MaximumLength`, Buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountedString {
    /// Bytes in use.
    pub length: u16,
    /// Bytes the buffer holds.
    pub maximum: u16,
    /// The buffer.
    pub buffer: u64,
}

/// Reads a counted string's header at `va`.
///
/// # Errors
/// Not mapped.
pub(crate) fn read_counted(uc: &Uc<'_>, va: u64) -> Result<CountedString, BadAddress> {
    let ptr = arch(uc).pointer_size();
    Ok(CountedString {
        length: read_u16(uc, va)?,
        maximum: read_u16(uc, va + 2)?,
        buffer: read_ptr(uc, va + ptr)?,
    })
}

/// Writes a counted string's header at `va`.
///
/// # Errors
/// Not mapped.
pub(crate) fn write_counted(
    uc: &mut Uc<'_>,
    va: u64,
    string: CountedString,
) -> Result<(), BadAddress> {
    let ptr = arch(uc).pointer_size();
    write_uint(uc, va, u64::from(string.length), 2)?;
    write_uint(uc, va + 2, u64::from(string.maximum), 2)?;
    write_ptr(uc, va + ptr, string.buffer)
}

/// The text of a `UNICODE_STRING` at `va` (ill-formed UTF-16 as U+FFFD).
///
/// # Errors
/// Not mapped.
pub(crate) fn read_unicode_string(uc: &Uc<'_>, va: u64) -> Result<String, BadAddress> {
    let string = read_counted(uc, va)?;
    let bytes = read_vec(uc, string.buffer, usize::from(string.length & !1))?;
    Ok(utf16_text(&bytes))
}

/// UTF-16LE bytes as text.
#[must_use]
pub fn utf16_text(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

/// The general registers by role, for both architectures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reg {
    /// eax / rax.
    Ax,
    /// ecx / rcx.
    Cx,
    /// edx / rdx.
    Dx,
    /// esp / rsp.
    Sp,
    /// ebp / rbp.
    Bp,
    /// eip / rip.
    Ip,
}

impl Reg {
    const fn unicorn(self, arch: Arch) -> RegisterX86 {
        match (self, arch) {
            (Self::Ax, Arch::X86) => RegisterX86::EAX,
            (Self::Cx, Arch::X86) => RegisterX86::ECX,
            (Self::Dx, Arch::X86) => RegisterX86::EDX,
            (Self::Sp, Arch::X86) => RegisterX86::ESP,
            (Self::Bp, Arch::X86) => RegisterX86::EBP,
            (Self::Ip, Arch::X86) => RegisterX86::EIP,
            (Self::Ax, Arch::X64) => RegisterX86::RAX,
            (Self::Cx, Arch::X64) => RegisterX86::RCX,
            (Self::Dx, Arch::X64) => RegisterX86::RDX,
            (Self::Sp, Arch::X64) => RegisterX86::RSP,
            (Self::Bp, Arch::X64) => RegisterX86::RBP,
            (Self::Ip, Arch::X64) => RegisterX86::RIP,
        }
    }
}

/// Reads a register.
#[must_use]
pub fn reg(uc: &Uc<'_>, reg: Reg) -> u64 {
    uc.reg_read(reg.unicorn(arch(uc))).unwrap_or(0)
}

/// Writes a register.
pub(crate) fn set_reg(uc: &mut Uc<'_>, reg: Reg, value: u64) {
    let register = reg.unicorn(arch(uc));
    let value = match arch(uc) {
        Arch::X86 => value & 0xffff_ffff,
        Arch::X64 => value,
    };
    // Writing a general register of the machine's own mode cannot fail.
    let _ = uc.reg_write(register, value);
}

/// The address the instruction at `pc` accesses in the page at `page`
/// (its memory operand, computed from the registers).
#[must_use]
pub(crate) fn memory_operand(uc: &Uc<'_>, pc: u64, page: u64) -> Option<u64> {
    memory_operand_where(uc, pc, |address| address & !0xfff == page & !0xfff)
}

/// The first address the instruction at `pc` accesses through a memory
/// operand that `wanted` accepts.
#[must_use]
pub(crate) fn memory_operand_where(
    uc: &Uc<'_>,
    pc: u64,
    wanted: impl Fn(u64) -> bool,
) -> Option<u64> {
    use iced_x86::{Decoder, DecoderOptions, OpKind};
    let bitness = match arch(uc) {
        Arch::X86 => 32,
        Arch::X64 => 64,
    };
    let bytes = read_vec(uc, pc, 15).ok()?;
    let instruction = Decoder::with_ip(bitness, &bytes, pc, DecoderOptions::NONE).decode();
    (0..instruction.op_count())
        .filter(|&operand| instruction.op_kind(operand) == OpKind::Memory)
        .find_map(|operand| {
            let address = instruction
                .virtual_address(operand, 0, |register, _, _| register_value(uc, register))?;
            let address = match bitness {
                32 => address & 0xffff_ffff,
                _ => address,
            };
            wanted(address).then_some(address)
        })
}

/// The Unicorn register for iced's name of a 64-bit general register.
fn unicorn_register64(register: iced_x86::Register) -> Option<RegisterX86> {
    use iced_x86::Register as R;
    Some(match register.full_register() {
        R::RAX => RegisterX86::RAX,
        R::RCX => RegisterX86::RCX,
        R::RDX => RegisterX86::RDX,
        R::RBX => RegisterX86::RBX,
        R::RSP => RegisterX86::RSP,
        R::RBP => RegisterX86::RBP,
        R::RSI => RegisterX86::RSI,
        R::RDI => RegisterX86::RDI,
        R::R8 => RegisterX86::R8,
        R::R9 => RegisterX86::R9,
        R::R10 => RegisterX86::R10,
        R::R11 => RegisterX86::R11,
        R::R12 => RegisterX86::R12,
        R::R13 => RegisterX86::R13,
        R::R14 => RegisterX86::R14,
        R::R15 => RegisterX86::R15,
        _ => return None,
    })
}

/// Reads a 64-bit general register by iced's name.
#[must_use]
pub(crate) fn read_register64(uc: &Uc<'_>, register: iced_x86::Register) -> Option<u64> {
    uc.reg_read(unicorn_register64(register)?).ok()
}

/// Writes a 64-bit general register by iced's name.
pub(crate) fn write_register64(uc: &mut Uc<'_>, register: iced_x86::Register, value: u64) {
    if let Some(register) = unicorn_register64(register) {
        let _ = uc.reg_write(register, value);
    }
}

/// A register's value, by iced's name for it.
fn register_value(uc: &Uc<'_>, register: iced_x86::Register) -> Option<u64> {
    use iced_x86::Register as R;
    let arch = arch(uc);
    let full = match arch {
        Arch::X86 => register.full_register32(),
        Arch::X64 => register.full_register(),
    };
    let unicorn = match full {
        R::EAX => RegisterX86::EAX,
        R::ECX => RegisterX86::ECX,
        R::EDX => RegisterX86::EDX,
        R::EBX => RegisterX86::EBX,
        R::ESP => RegisterX86::ESP,
        R::EBP => RegisterX86::EBP,
        R::ESI => RegisterX86::ESI,
        R::EDI => RegisterX86::EDI,
        R::RIP => RegisterX86::RIP,
        R::EIP => RegisterX86::EIP,
        R::GS if arch == Arch::X64 => RegisterX86::GS_BASE,
        // Flat segments: CS, DS, ES, SS start at 0.
        R::CS | R::DS | R::ES | R::SS | R::FS | R::GS => return Some(0),
        // The 64-bit general registers.
        other => unicorn_register64(other)?,
    };
    let value = uc.reg_read(unicorn).ok()?;
    Some(match register.size() {
        1 if register != full && matches!(register, R::AH | R::CH | R::DH | R::BH) => {
            (value >> 8) & 0xff
        }
        1 => value & 0xff,
        2 => value & 0xffff,
        4 => value & 0xffff_ffff,
        _ => value,
    })
}
