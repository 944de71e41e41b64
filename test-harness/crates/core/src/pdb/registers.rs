//! CodeView register numbers (cvinfo.h `CV_HREG_e`: `CV_REG_*` for x86,
//! `CV_AMD64_*` for x64, which share the numbers of the 8/16/32-bit x86
//! registers) and the names kd gives them.

use crate::arch::Arch;

/// `CV_ALLREG_VFRAME`: x86's virtual frame (the stack pointer at entry,
/// kd's `$T0`), the base of frame-relative locals when EBP is not used.
pub const VFRAME: u16 = 30006;

/// A register as CodeView numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Register(pub u16);

impl Register {
    /// kd's name for it (`eax`, `rcx`, `r8d`), or `None` for a number this
    /// table does not know (floating-point, vector and control registers).
    #[must_use]
    pub fn name(self) -> Option<&'static str> {
        const LOW: [&str; 34] = [
            "al", "cl", "dl", "bl", "ah", "ch", "dh", "bh", // 1-8
            "ax", "cx", "dx", "bx", "sp", "bp", "si", "di", // 9-16
            "eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", // 17-24
            "es", "cs", "ss", "ds", "fs", "gs", // 25-30
            "ip", "flags", "eip", "efl", // 31-34
        ];
        const AMD64: [&str; 44] = [
            "sil", "dil", "bpl", "spl", // 324-327
            "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", // 328-335
            "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", // 336-343
            "r8b", "r9b", "r10b", "r11b", "r12b", "r13b", "r14b", "r15b", // 344-351
            "r8w", "r9w", "r10w", "r11w", "r12w", "r13w", "r14w", "r15w", // 352-359
            "r8d", "r9d", "r10d", "r11d", "r12d", "r13d", "r14d", "r15d", // 360-367
        ];
        let number = usize::from(self.0);
        match number {
            1..=34 => LOW.get(number - 1).copied(),
            324..=367 => AMD64.get(number - 324).copied(),
            _ if self.0 == VFRAME => Some("vframe"),
            _ => None,
        }
    }

    /// The register an `S_FRAMEPROC` encoded base-register value stands
    /// for (LLVM's `decodeFramePtrReg`): 1 the stack (x86's virtual frame,
    /// x64's RSP), 2 the frame pointer (EBP / RBP), 3 the base pointer
    /// (EBX / R13).
    #[must_use]
    pub(crate) const fn from_frame_encoding(encoded: u8, arch: Arch) -> Option<Self> {
        Some(Self(match (encoded, arch) {
            (1, Arch::X86) => VFRAME,
            (1, Arch::X64) => 335,
            (2, Arch::X86) => 22,
            (2, Arch::X64) => 334,
            (3, Arch::X86) => 20,
            (3, Arch::X64) => 341,
            _ => return None,
        }))
    }
}
