//! The debuggee: the native engine's machine, seen the way a kernel
//! debugger sees it (virtual memory, registers by kd's names, threads,
//! modules).

use std::sync::Arc;

use harness_ntemu::RegisterX86;

use super::stack;
use harness_core::arch::Arch;
use harness_ntemu::cpu;
use harness_ntemu::machine::{Driver, Machine, Thread};
use harness_ntemu::nt::NtImage;

/// A module as `lm` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    /// kd's module name (`nt`, `Sample`).
    pub name: String,
    /// Its image file (`ntkrnlpa.exe`, `Sample.sys`).
    pub image: String,
    /// Base address.
    pub base: u64,
    /// Bytes in memory.
    pub size: u64,
}

/// The debuggee.
pub struct Target {
    /// The emulated machine.
    pub machine: Machine,
    /// Its architecture.
    pub arch: Arch,
}

/// General registers by kd's name: (name, Unicorn register, bits, shift).
/// Sub-registers (`ax`, `al`, `ah`, `r8d`) read part of their full register.
const X86_REGISTERS: &[(&str, RegisterX86)] = &[
    ("eax", RegisterX86::EAX),
    ("ebx", RegisterX86::EBX),
    ("ecx", RegisterX86::ECX),
    ("edx", RegisterX86::EDX),
    ("esi", RegisterX86::ESI),
    ("edi", RegisterX86::EDI),
    ("eip", RegisterX86::EIP),
    ("esp", RegisterX86::ESP),
    ("ebp", RegisterX86::EBP),
    ("efl", RegisterX86::EFLAGS),
    ("cs", RegisterX86::CS),
    ("ss", RegisterX86::SS),
    ("ds", RegisterX86::DS),
    ("es", RegisterX86::ES),
    ("fs", RegisterX86::FS),
    ("gs", RegisterX86::GS),
];

const X64_REGISTERS: &[(&str, RegisterX86)] = &[
    ("rax", RegisterX86::RAX),
    ("rbx", RegisterX86::RBX),
    ("rcx", RegisterX86::RCX),
    ("rdx", RegisterX86::RDX),
    ("rsi", RegisterX86::RSI),
    ("rdi", RegisterX86::RDI),
    ("rip", RegisterX86::RIP),
    ("rsp", RegisterX86::RSP),
    ("rbp", RegisterX86::RBP),
    ("r8", RegisterX86::R8),
    ("r9", RegisterX86::R9),
    ("r10", RegisterX86::R10),
    ("r11", RegisterX86::R11),
    ("r12", RegisterX86::R12),
    ("r13", RegisterX86::R13),
    ("r14", RegisterX86::R14),
    ("r15", RegisterX86::R15),
    ("efl", RegisterX86::EFLAGS),
    ("cs", RegisterX86::CS),
    ("ss", RegisterX86::SS),
    ("ds", RegisterX86::DS),
    ("es", RegisterX86::ES),
    ("fs", RegisterX86::FS),
    ("gs", RegisterX86::GS),
];

/// A part of a full register: (full name, shift, bits).
fn sub_register(name: &str, arch: Arch) -> Option<(String, u32, u32)> {
    let legacy = ["ax", "bx", "cx", "dx", "si", "di", "sp", "bp", "ip"];
    let full = |base: &str| match arch {
        Arch::X86 => format!("e{base}"),
        Arch::X64 => format!("r{base}"),
    };
    if arch == Arch::X64
        && let Some(base) = name.strip_prefix('e')
        && legacy.contains(&base)
    {
        return Some((full(base), 0, 32));
    }
    if legacy.contains(&name) {
        return Some((full(name), 0, 16));
    }
    if let Some(letter) = name
        .strip_suffix('l')
        .filter(|letter| ["a", "b", "c", "d"].contains(letter))
    {
        return Some((full(&format!("{letter}x")), 0, 8));
    }
    if let Some(letter) = name
        .strip_suffix('h')
        .filter(|letter| ["a", "b", "c", "d"].contains(letter))
    {
        return Some((full(&format!("{letter}x")), 8, 8));
    }
    if arch == Arch::X64 && name.starts_with('r') {
        for (suffix, bits) in [("d", 32), ("w", 16), ("b", 8)] {
            if let Some(number) = name
                .strip_suffix(suffix)
                .and_then(|rest| rest.strip_prefix('r'))
                && number
                    .parse::<u8>()
                    .is_ok_and(|number| (8..=15).contains(&number))
            {
                return Some((format!("r{number}"), 0, bits));
            }
        }
    }
    None
}

impl Target {
    /// Wraps a machine.
    #[must_use]
    pub fn new(machine: Machine) -> Self {
        let arch = machine.driver.arch;
        Self { machine, arch }
    }

    /// The driver.
    #[must_use]
    pub const fn driver(&self) -> &Arc<Driver> {
        &self.machine.driver
    }

    /// The kernel image.
    #[must_use]
    pub fn nt(&self) -> &Arc<NtImage> {
        &self.machine.kernel().nt
    }

    /// Bytes in a pointer.
    #[must_use]
    pub const fn pointer_size(&self) -> u64 {
        self.arch.pointer_size()
    }

    /// Reads virtual memory.
    #[must_use]
    pub fn read(&self, address: u64, length: usize) -> Option<Vec<u8>> {
        cpu::read_vec(&self.machine.uc, address, length).ok()
    }

    /// Reads a little-endian value of `size` bytes.
    #[must_use]
    pub fn read_uint(&self, address: u64, size: usize) -> Option<u64> {
        cpu::read_uint(&self.machine.uc, address, size).ok()
    }

    /// Reads a pointer.
    #[must_use]
    pub(crate) fn read_pointer(&self, address: u64) -> Option<u64> {
        cpu::read_ptr(&self.machine.uc, address).ok()
    }

    /// Writes virtual memory; false where nothing is mapped.
    pub fn write(&mut self, address: u64, bytes: &[u8]) -> bool {
        cpu::write(&mut self.machine.uc, address, bytes).is_ok()
    }

    const fn table(&self) -> &'static [(&'static str, RegisterX86)] {
        match self.arch {
            Arch::X86 => X86_REGISTERS,
            Arch::X64 => X64_REGISTERS,
        }
    }

    /// A register by kd's lowercase name (full or part).
    #[must_use]
    pub fn register(&self, name: &str) -> Option<u64> {
        if let Some((_, register)) = self.table().iter().find(|(known, _)| *known == name) {
            return self.machine.uc.reg_read(*register).ok();
        }
        let (full, shift, bits) = sub_register(name, self.arch)?;
        let value = self.register(&full)?;
        Some((value >> shift) & ((1_u64 << bits) - 1))
    }

    /// Sets a register by name; false for a name the machine has not.
    pub(crate) fn set_register(&mut self, name: &str, value: u64) -> bool {
        if let Some((_, register)) = self.table().iter().find(|(known, _)| *known == name) {
            let value = if self.arch == Arch::X86 {
                value & 0xffff_ffff
            } else {
                value
            };
            return self.machine.uc.reg_write(*register, value).is_ok();
        }
        let Some((full, shift, bits)) = sub_register(name, self.arch) else {
            return false;
        };
        let Some(old) = self.register(&full) else {
            return false;
        };
        let mask = ((1_u64 << bits) - 1) << shift;
        // Writing a 32-bit part of an x64 register clears the upper half, as the CPU does.
        let kept = if self.arch == Arch::X64 && bits == 32 {
            0
        } else {
            old & !mask
        };
        self.set_register(&full, kept | ((value << shift) & mask))
    }

    /// The instruction pointer.
    #[must_use]
    pub fn ip(&self) -> u64 {
        cpu::reg(&self.machine.uc, cpu::Reg::Ip)
    }

    /// The stack pointer.
    #[must_use]
    pub fn sp(&self) -> u64 {
        cpu::reg(&self.machine.uc, cpu::Reg::Sp)
    }

    /// The registers a stack walk starts from.
    #[must_use]
    pub(crate) fn walk_registers(&self) -> stack::Registers {
        let mut nonvolatile = [0; 16];
        if self.arch == Arch::X64 {
            // CodeView order: rax rcx rdx rbx rsp rbp rsi rdi r8..r15.
            let names = [
                "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11",
                "r12", "r13", "r14", "r15",
            ];
            for (slot, name) in nonvolatile.iter_mut().zip(names) {
                *slot = self.register(name).unwrap_or(0);
            }
        }
        stack::Registers {
            ip: self.ip(),
            sp: self.sp(),
            bp: cpu::reg(&self.machine.uc, cpu::Reg::Bp),
            nonvolatile,
        }
    }

    /// The current thread's `ETHREAD`.
    #[must_use]
    pub fn current_thread(&self) -> u64 {
        let kernel = self.machine.kernel();
        kernel.ethreads[usize::from(kernel.thread == Thread::Caller)]
    }

    /// The System process's `EPROCESS`.
    #[must_use]
    pub fn current_process(&self) -> u64 {
        self.machine.kernel().system_process
    }

    /// The loaded modules: nt, and the driver while its image is mapped.
    #[must_use]
    pub fn modules(&self) -> Vec<ModuleInfo> {
        let nt = self.nt();
        let kernel_image = match self.arch {
            // The walkthrough's 32-bit Windows 7 runs the PAE kernel.
            Arch::X86 => "ntkrnlpa.exe",
            Arch::X64 => "ntoskrnl.exe",
        };
        let mut modules = vec![ModuleInfo {
            name: "nt".into(),
            image: kernel_image.into(),
            base: nt.base,
            size: nt.size(),
        }];
        let kernel = self.machine.kernel();
        let (base, size) = kernel.image;
        if self.driver_mapped() {
            modules.push(ModuleInfo {
                name: self.driver().service.clone(),
                image: self.driver().file_name.clone(),
                base,
                size,
            });
        }
        modules.sort_by_key(|module| module.base);
        modules
    }

    /// Whether the driver is loaded: the scenario has begun and its image
    /// is still mapped.
    #[must_use]
    pub(crate) fn driver_mapped(&self) -> bool {
        self.machine.started() && self.machine.kernel().loaded.mapped
    }

    /// Whether the driver was loaded and has been unloaded since.
    #[must_use]
    pub(crate) fn driver_unloaded(&self) -> bool {
        self.machine.started() && !self.machine.kernel().loaded.mapped
    }

    /// The modules a stack walk unwinds through.
    #[must_use]
    pub(crate) fn walk_modules(&self, driver_functions: &[u64]) -> Vec<stack::Module> {
        let nt = self.nt();
        let mut modules = vec![stack::Module {
            base: nt.base,
            size: nt.size(),
            exception_directory: nt.exception_directory(),
            function_starts: nt
                .symbols
                .iter()
                .filter(|symbol| symbol.function)
                .map(|symbol| symbol.address)
                .collect(),
        }];
        let (base, size) = self.machine.kernel().image;
        modules.push(stack::Module {
            base,
            size,
            exception_directory: self.driver().layout.exception_directory,
            function_starts: driver_functions.to_vec(),
        });
        modules
    }
}

/// Memory for the stack walker.
impl stack::Memory for Target {
    fn pointer(&self, address: u64) -> Option<u64> {
        self.read_pointer(address)
    }

    fn bytes(&self, address: u64, length: usize) -> Option<Vec<u8>> {
        self.read(address, length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_registers_name_their_part() {
        assert_eq!(sub_register("al", Arch::X86), Some(("eax".into(), 0, 8)));
        assert_eq!(sub_register("ah", Arch::X86), Some(("eax".into(), 8, 8)));
        assert_eq!(sub_register("ax", Arch::X64), Some(("rax".into(), 0, 16)));
        assert_eq!(sub_register("eax", Arch::X64), Some(("rax".into(), 0, 32)));
        assert_eq!(sub_register("r8d", Arch::X64), Some(("r8".into(), 0, 32)));
        assert_eq!(sub_register("r15b", Arch::X64), Some(("r15".into(), 0, 8)));
        assert_eq!(sub_register("r8d", Arch::X86), None);
        assert_eq!(sub_register("eax", Arch::X86), None); // a full register there
        assert_eq!(sub_register("xyz", Arch::X64), None);
    }
}
