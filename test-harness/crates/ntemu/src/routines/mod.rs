//! The kernel routines the native engine implements, with the calling
//! convention of each.
//!
//! On x86 stdcall unless noted, `DbgPrint` and the C runtime's functions
//! cdecl, and `Kf*`, `Kef*`, `Iof*`, `Obf*` fastcall (ecx, edx); on x64
//! the Microsoft x64 convention for all.
//!
//! Every handler has the `Handler` signature, whatever it needs, and its
//! only error is "the machine stops here" ([`Halt`]): hence the allows.
#![allow(clippy::unnecessary_wraps, clippy::missing_errors_doc)]

mod io;
mod misc;
pub mod print;
mod strings;

use super::cpu::{self, BadAddress, Uc};
use super::machine::{Halt, Kernel};
use harness_core::arch::Arch;
use harness_core::events::Event;

/// A calling convention on x86 (x64 has one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Conv {
    /// Callee pops its arguments.
    Stdcall,
    /// Caller pops (variadic and C runtime functions).
    Cdecl,
    /// First two arguments in ecx and edx, callee pops the rest.
    Fastcall,
}

/// What a routine does with the machine; returns the value for `ax`.
pub(crate) type Handler = fn(&mut Call<'_, '_>) -> Result<u64, Halt>;

/// One routine: its exported name, convention, argument slots on x86, and
/// its implementation.
pub(crate) struct Routine {
    /// The exported name.
    pub name: &'static str,
    /// The calling convention on x86.
    pub conv: Conv,
    /// Argument slots on x86 (a 64-bit argument takes two).
    pub slots: u8,
    /// The implementation.
    pub handler: Handler,
    /// Returns a 64-bit value (edx:eax on x86).
    pub wide: bool,
}

const fn routine(name: &'static str, conv: Conv, slots: u8, handler: Handler) -> Routine {
    Routine {
        name,
        conv,
        slots,
        handler,
        wide: false,
    }
}

const fn wide(name: &'static str, conv: Conv, slots: u8, handler: Handler) -> Routine {
    Routine {
        name,
        conv,
        slots,
        handler,
        wide: true,
    }
}

use Conv::{Cdecl, Fastcall, Stdcall};

/// Every routine the native engine implements. Imports of anything else
/// from ntoskrnl.exe or hal.dll are reported at load time, and a call to
/// one stops the run as an engine gap.
pub(crate) static ROUTINES: &[Routine] = &[
    // Debug output.
    routine("DbgPrint", Cdecl, 1, print::dbg_print),
    routine("DbgPrintEx", Cdecl, 3, print::dbg_print_ex),
    routine("vDbgPrintEx", Stdcall, 4, print::v_dbg_print_ex),
    routine(
        "vDbgPrintExWithPrefix",
        Stdcall,
        5,
        print::v_dbg_print_ex_with_prefix,
    ),
    routine("DbgBreakPoint", Stdcall, 0, misc::dbg_break_point),
    // Versions.
    routine("RtlGetVersion", Stdcall, 1, misc::rtl_get_version),
    routine("PsGetVersion", Stdcall, 4, misc::ps_get_version),
    // Strings.
    routine(
        "RtlInitUnicodeString",
        Stdcall,
        2,
        strings::rtl_init_unicode_string,
    ),
    routine(
        "RtlInitAnsiString",
        Stdcall,
        2,
        strings::rtl_init_ansi_string,
    ),
    routine("RtlInitString", Stdcall, 2, strings::rtl_init_ansi_string),
    routine(
        "RtlCopyUnicodeString",
        Stdcall,
        2,
        strings::rtl_copy_unicode_string,
    ),
    routine(
        "RtlAppendUnicodeToString",
        Stdcall,
        2,
        strings::rtl_append_unicode_to_string,
    ),
    routine(
        "RtlAppendUnicodeStringToString",
        Stdcall,
        2,
        strings::rtl_append_unicode_string_to_string,
    ),
    routine(
        "RtlCompareUnicodeString",
        Stdcall,
        3,
        strings::rtl_compare_unicode_string,
    ),
    routine(
        "RtlEqualUnicodeString",
        Stdcall,
        3,
        strings::rtl_equal_unicode_string,
    ),
    routine(
        "RtlUnicodeStringToAnsiString",
        Stdcall,
        3,
        strings::rtl_unicode_string_to_ansi_string,
    ),
    routine(
        "RtlAnsiStringToUnicodeString",
        Stdcall,
        3,
        strings::rtl_ansi_string_to_unicode_string,
    ),
    routine("RtlFreeUnicodeString", Stdcall, 1, strings::rtl_free_string),
    routine("RtlFreeAnsiString", Stdcall, 1, strings::rtl_free_string),
    routine("RtlCompareMemory", Stdcall, 3, strings::rtl_compare_memory),
    routine("RtlMoveMemory", Stdcall, 3, strings::memmove),
    routine("RtlCopyMemory", Stdcall, 3, strings::memmove),
    routine("RtlZeroMemory", Stdcall, 2, strings::rtl_zero_memory),
    routine("RtlFillMemory", Stdcall, 3, strings::rtl_fill_memory),
    // The C runtime ntoskrnl exports (cdecl).
    routine("memset", Cdecl, 3, strings::memset),
    routine("memcpy", Cdecl, 3, strings::memmove),
    routine("memmove", Cdecl, 3, strings::memmove),
    routine("memcmp", Cdecl, 3, strings::memcmp),
    routine("memchr", Cdecl, 3, strings::memchr),
    routine("strlen", Cdecl, 1, strings::strlen),
    routine("wcslen", Cdecl, 1, strings::wcslen),
    routine("strnlen", Cdecl, 2, strings::strnlen),
    routine("wcsnlen", Cdecl, 2, strings::wcsnlen),
    routine("strcpy", Cdecl, 2, strings::strcpy),
    routine("wcscpy", Cdecl, 2, strings::wcscpy),
    routine("strncpy", Cdecl, 3, strings::strncpy),
    routine("wcsncpy", Cdecl, 3, strings::wcsncpy),
    routine("strcmp", Cdecl, 2, strings::strcmp),
    routine("wcscmp", Cdecl, 2, strings::wcscmp),
    routine("strncmp", Cdecl, 3, strings::strncmp),
    routine("wcsncmp", Cdecl, 3, strings::wcsncmp),
    routine("_stricmp", Cdecl, 2, strings::stricmp),
    routine("_wcsicmp", Cdecl, 2, strings::wcsicmp),
    routine("strchr", Cdecl, 2, strings::strchr),
    routine("wcschr", Cdecl, 2, strings::wcschr),
    routine("strstr", Cdecl, 2, strings::strstr),
    routine("_snprintf", Cdecl, 3, print::snprintf),
    routine("_snwprintf", Cdecl, 3, print::snwprintf),
    routine("sprintf", Cdecl, 2, print::sprintf),
    routine("swprintf", Cdecl, 2, print::swprintf),
    routine("_vsnprintf", Cdecl, 4, print::vsnprintf),
    routine("_vsnwprintf", Cdecl, 4, print::vsnwprintf),
    // Bug checks (KeBugCheckEx and KeBugCheck are the kernel's own code).
    // IRQL (hal.dll on x86; ntoskrnl.exe on x64).
    routine("KeGetCurrentIrql", Stdcall, 0, misc::ke_get_current_irql),
    routine("KfRaiseIrql", Fastcall, 1, misc::kf_raise_irql),
    routine("KfLowerIrql", Fastcall, 1, misc::kf_lower_irql),
    routine(
        "KeRaiseIrqlToDpcLevel",
        Stdcall,
        0,
        misc::ke_raise_irql_to_dpc_level,
    ),
    routine(
        "KeRaiseIrqlToSynchLevel",
        Stdcall,
        0,
        misc::ke_raise_irql_to_dpc_level,
    ),
    routine("KeLowerIrql", Stdcall, 1, misc::kf_lower_irql),
    // Spin locks.
    routine(
        "KeInitializeSpinLock",
        Stdcall,
        1,
        misc::ke_initialize_spin_lock,
    ),
    routine(
        "KeAcquireSpinLockRaiseToDpc",
        Stdcall,
        1,
        misc::ke_acquire_spin_lock_raise_to_dpc,
    ),
    routine("KeReleaseSpinLock", Stdcall, 2, misc::ke_release_spin_lock),
    routine(
        "KfAcquireSpinLock",
        Fastcall,
        1,
        misc::ke_acquire_spin_lock_raise_to_dpc,
    ),
    routine("KfReleaseSpinLock", Fastcall, 2, misc::ke_release_spin_lock),
    routine(
        "KeAcquireSpinLockAtDpcLevel",
        Stdcall,
        1,
        misc::ke_acquire_spin_lock_at_dpc_level,
    ),
    routine(
        "KeReleaseSpinLockFromDpcLevel",
        Stdcall,
        1,
        misc::ke_release_spin_lock_from_dpc_level,
    ),
    routine(
        "KefAcquireSpinLockAtDpcLevel",
        Fastcall,
        1,
        misc::ke_acquire_spin_lock_at_dpc_level,
    ),
    routine(
        "KefReleaseSpinLockFromDpcLevel",
        Fastcall,
        1,
        misc::ke_release_spin_lock_from_dpc_level,
    ),
    routine("KeTestSpinLock", Stdcall, 1, misc::ke_test_spin_lock),
    // I/O.
    routine("IoCreateDevice", Stdcall, 7, io::io_create_device),
    routine("IoDeleteDevice", Stdcall, 1, io::io_delete_device),
    routine(
        "IoCreateSymbolicLink",
        Stdcall,
        2,
        io::io_create_symbolic_link,
    ),
    routine(
        "IoDeleteSymbolicLink",
        Stdcall,
        1,
        io::io_delete_symbolic_link,
    ),
    routine("IofCompleteRequest", Fastcall, 2, io::iof_complete_request),
    routine("IoCompleteRequest", Stdcall, 2, io::iof_complete_request),
    routine("IoGetCurrentProcess", Stdcall, 0, misc::current_process),
    routine("PsGetCurrentProcess", Stdcall, 0, misc::current_process),
    routine(
        "PsGetCurrentProcessId",
        Stdcall,
        0,
        misc::current_process_id,
    ),
    routine("PsGetCurrentThreadId", Stdcall, 0, misc::current_thread_id),
    routine("KeGetCurrentThread", Stdcall, 0, misc::current_thread),
    routine("PsGetCurrentThread", Stdcall, 0, misc::current_thread),
    routine("ObfReferenceObject", Fastcall, 1, misc::object_reference),
    routine("ObDereferenceObject", Stdcall, 1, misc::object_reference),
    routine("ObReferenceObject", Stdcall, 1, misc::object_reference),
    // Routine lookup.
    routine(
        "MmGetSystemRoutineAddress",
        Stdcall,
        1,
        misc::mm_get_system_routine_address,
    ),
    routine("MmIsAddressValid", Stdcall, 1, misc::mm_is_address_valid),
    // Time.
    routine("KeQuerySystemTime", Stdcall, 1, misc::ke_query_system_time),
    routine("KeQueryTickCount", Stdcall, 1, misc::ke_query_tick_count),
    wide(
        "KeQueryPerformanceCounter",
        Stdcall,
        1,
        misc::ke_query_performance_counter,
    ),
    routine(
        "KeQueryTimeIncrement",
        Stdcall,
        0,
        misc::ke_query_time_increment,
    ),
    routine(
        "KeStallExecutionProcessor",
        Stdcall,
        1,
        misc::ke_stall_execution_processor,
    ),
    routine(
        "KeDelayExecutionThread",
        Stdcall,
        3,
        misc::ke_delay_execution_thread,
    ),
    // Events (a single emulated thread: waits on signalled events return).
    routine("KeInitializeEvent", Stdcall, 3, misc::ke_initialize_event),
    routine("KeSetEvent", Stdcall, 3, misc::ke_set_event),
    routine("KeClearEvent", Stdcall, 1, misc::ke_clear_event),
    routine("KeResetEvent", Stdcall, 1, misc::ke_reset_event),
    routine("KeReadStateEvent", Stdcall, 1, misc::ke_read_state_event),
    // Interlocked lists and counters.
    routine(
        "InterlockedIncrement",
        Fastcall,
        1,
        misc::interlocked_increment,
    ),
    routine(
        "InterlockedDecrement",
        Fastcall,
        1,
        misc::interlocked_decrement,
    ),
    routine(
        "InterlockedExchange",
        Fastcall,
        2,
        misc::interlocked_exchange,
    ),
    routine(
        "InterlockedCompareExchange",
        Fastcall,
        3,
        misc::interlocked_compare_exchange,
    ),
    routine("ExGetPreviousMode", Stdcall, 0, misc::zero),
    routine("KeGetPreviousMode", Stdcall, 0, misc::zero),
    routine("KeEnterCriticalRegion", Stdcall, 0, misc::zero),
    routine("KeLeaveCriticalRegion", Stdcall, 0, misc::zero),
    routine("KeGetCurrentProcessorNumber", Stdcall, 0, misc::zero),
    routine("KeGetCurrentProcessorNumberEx", Stdcall, 1, misc::zero),
    routine(
        "KeQueryActiveProcessorCount",
        Stdcall,
        1,
        misc::ke_query_active_processor_count,
    ),
];

/// The routine of this name, if the engine implements it.
#[must_use]
pub fn find(name: &str) -> Option<usize> {
    ROUTINES.iter().position(|routine| routine.name == name)
}

/// A routine's call in progress: its arguments, its caller, the machine.
pub struct Call<'u, 'a> {
    /// The machine.
    pub uc: &'u mut Uc<'a>,
    /// Argument slot 0's address on the stack (x64: the home space).
    args: u64,
    /// The routine's convention.
    conv: Conv,
    /// The return address (the call site).
    pub caller: u64,
    /// The routine's name.
    pub name: &'static str,
}

impl<'u, 'a> Call<'u, 'a> {
    /// The call stopped at a trap of a routine implemented in Rust: its
    /// frame is the stub's (x86: ebp; x64: rsp after `sub rsp, frame`).
    ///
    /// # Errors
    /// The stack is not readable (a machine in an impossible state).
    pub(crate) fn at_trap(
        uc: &'u mut Uc<'a>,
        conv: Conv,
        name: &'static str,
    ) -> Result<Self, BadAddress> {
        let (args, return_slot) = match cpu::arch(uc) {
            Arch::X86 => {
                let frame = cpu::reg(uc, cpu::Reg::Bp);
                (frame + 8, frame + 4)
            }
            Arch::X64 => {
                let frame = cpu::reg(uc, cpu::Reg::Sp) + super::machine::X64_FRAME;
                (frame + 8, frame)
            }
        };
        let caller = cpu::read_ptr(uc, return_slot)?;
        Ok(Self {
            uc,
            args,
            conv,
            caller,
            name,
        })
    }

    /// The machine's architecture.
    #[must_use]
    pub fn arch(&self) -> Arch {
        cpu::arch(self.uc)
    }

    /// The kernel's state.
    pub fn kernel(&mut self) -> &mut Kernel {
        self.uc.get_data_mut()
    }

    /// Argument slot `index` (x86: 4-byte slots; x64: 8-byte).
    ///
    /// # Errors
    /// The stack is not readable.
    pub fn arg(&self, index: usize) -> Result<u64, Halt> {
        let arch = self.arch();
        let index_u64 = u64::try_from(index).unwrap_or(u64::MAX);
        match (arch, self.conv) {
            (Arch::X86, Conv::Fastcall) if index < 2 => Ok(cpu::reg(
                self.uc,
                if index == 0 {
                    cpu::Reg::Cx
                } else {
                    cpu::Reg::Dx
                },
            )),
            (Arch::X86, Conv::Fastcall) => Ok(u64::from(cpu::read_u32(
                self.uc,
                self.args + 4 * (index_u64 - 2),
            )?)),
            (Arch::X86, _) => Ok(u64::from(cpu::read_u32(
                self.uc,
                self.args + 4 * index_u64,
            )?)),
            (Arch::X64, _) => Ok(cpu::read_u64(self.uc, self.args + 8 * index_u64)?),
        }
    }

    /// Argument `index` as a 32-bit value (ULONG, NTSTATUS, BOOLEAN...).
    ///
    /// # Errors
    /// The stack is not readable.
    pub(crate) fn arg32(&self, index: usize) -> Result<u32, Halt> {
        Ok(u32::try_from(self.arg(index)? & 0xffff_ffff).unwrap_or(0))
    }

    /// The address of argument slot `index` (variadic arguments follow it).
    #[must_use]
    pub(crate) fn slot_address(&self, index: usize) -> u64 {
        let size = self.arch().pointer_size();
        self.args + size * u64::try_from(index).unwrap_or(0)
    }

    /// Reports an event to the machine (and its verifier).
    ///
    /// # Errors
    /// The event ends the run (a gap, a bug check the verifier raised).
    pub fn emit(&mut self, event: Event) -> Result<(), Halt> {
        super::machine::emit(self.uc, event)
    }
}

impl From<BadAddress> for Halt {
    fn from(bad: BadAddress) -> Self {
        Self::BadPointer(bad.0)
    }
}
