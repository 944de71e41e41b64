//! Kernel structure layouts, as `wdm.h` lays them out for each architecture.
//!
//! One table for every engine: the tracker finds DriverName with it, the
//! native engine builds its objects with it. The driver's own declarations
//! (driver/src/portable/types.rs) are checked against it in the tests.

use crate::arch::Arch;

/// Offsets in `DRIVER_OBJECT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverObject {
    /// `sizeof(DRIVER_OBJECT)`.
    pub size: u64,
    /// `DeviceObject`: the first device the driver created.
    pub device_object: u64,
    /// `Flags`.
    pub flags: u64,
    /// `DriverStart`: the image base.
    pub driver_start: u64,
    /// `DriverSize`: the image size.
    pub driver_size: u64,
    /// `DriverSection`: the loader's entry.
    pub driver_section: u64,
    /// `DriverExtension`.
    pub driver_extension: u64,
    /// `DriverName`, a `UNICODE_STRING` (`\Driver\Sample`).
    pub driver_name: u64,
    /// `HardwareDatabase`.
    pub hardware_database: u64,
    /// `DriverInit`: the entry point.
    pub driver_init: u64,
    /// `DriverUnload`.
    pub driver_unload: u64,
    /// `MajorFunction[IRP_MJ_MAXIMUM_FUNCTION + 1]`.
    pub major_function: u64,
}

impl DriverObject {
    /// The layout for `arch`.
    #[must_use]
    pub const fn for_arch(arch: Arch) -> Self {
        match arch {
            Arch::X64 => Self {
                size: 0x150,
                device_object: 0x08,
                flags: 0x10,
                driver_start: 0x18,
                driver_size: 0x20,
                driver_section: 0x28,
                driver_extension: 0x30,
                driver_name: 0x38,
                hardware_database: 0x48,
                driver_init: 0x58,
                driver_unload: 0x68,
                major_function: 0x70,
            },
            Arch::X86 => Self {
                size: 0xA8,
                device_object: 0x04,
                flags: 0x08,
                driver_start: 0x0C,
                driver_size: 0x10,
                driver_section: 0x14,
                driver_extension: 0x18,
                driver_name: 0x1C,
                hardware_database: 0x24,
                driver_init: 0x2C,
                driver_unload: 0x34,
                major_function: 0x38,
            },
        }
    }
}

/// `IRP_MJ_MAXIMUM_FUNCTION + 1`: entries in `MajorFunction`.
pub const MAJOR_FUNCTIONS: u64 = 28;

/// Offsets in `DEVICE_OBJECT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceObject {
    /// `sizeof(DEVICE_OBJECT)`.
    pub size: u64,
    /// `ReferenceCount`.
    pub reference_count: u64,
    /// `DriverObject`.
    pub driver_object: u64,
    /// `NextDevice`: the driver's next device.
    pub next_device: u64,
    /// `Flags`.
    pub flags: u64,
    /// `Characteristics`.
    pub characteristics: u64,
    /// `DeviceExtension`.
    pub device_extension: u64,
    /// `DeviceType`.
    pub device_type: u64,
    /// `StackSize` (a CCHAR).
    pub stack_size: u64,
}

impl DeviceObject {
    /// The layout for `arch`.
    #[must_use]
    pub const fn for_arch(arch: Arch) -> Self {
        match arch {
            Arch::X64 => Self {
                size: 0x150,
                reference_count: 0x04,
                driver_object: 0x08,
                next_device: 0x10,
                flags: 0x30,
                characteristics: 0x34,
                device_extension: 0x40,
                device_type: 0x48,
                stack_size: 0x4c,
            },
            Arch::X86 => Self {
                size: 0xB8,
                reference_count: 0x04,
                driver_object: 0x08,
                next_device: 0x0C,
                flags: 0x1C,
                characteristics: 0x20,
                device_extension: 0x28,
                device_type: 0x2C,
                stack_size: 0x30,
            },
        }
    }
}

/// Offsets in Windows 7 SP1's `ETHREAD` (its `KTHREAD`, `Tcb`, at 0).
///
/// The emulated kernel fills them in and kd's `!thread` reads them. Not in
/// wdm.h: from `dt nt!_KTHREAD` and `dt nt!_ETHREAD` of Windows 7 SP1
/// ntoskrnl in public sessions, two dumps of each where found (x86: `Cid`
/// 0x22c and `ThreadListEntry` 0x268 in both; x64: a Windows 7 SP1 `dt -r`
/// of `_EPROCESS` with its `_ETHREAD`s, `Cid` 0x3b0, `ThreadListEntry`
/// 0x420, and a Windows 7 x64 `dt _KTHREAD` whose `MiscFlags` at 0x4c and
/// `Process` at 0x210 mark the 6.1 layout). `KAPC_STATE.Process` follows
/// two (x86) or four (x64) pointers of `ApcListHead`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thread {
    /// `Tcb.InitialStack`.
    pub initial_stack: u64,
    /// `Tcb.StackLimit`.
    pub stack_limit: u64,
    /// `Tcb.KernelStack`: the stack pointer saved at the last switch.
    pub kernel_stack: u64,
    /// `Tcb.ApcState.Process`: the process whose address space it runs in.
    pub apc_process: u64,
    /// `Tcb.Priority` (a CHAR).
    pub priority: u64,
    /// `Tcb.NextProcessor` (ULONG): the processor it runs on.
    pub next_processor: u64,
    /// `Tcb.ContextSwitches` (ULONG).
    pub context_switches: u64,
    /// `Tcb.State` (a UCHAR, `KTHREAD_STATE`).
    pub state: u64,
    /// `Tcb.WaitTime` (ULONG): the tick count when it last waited.
    pub wait_time: u64,
    /// `Tcb.Teb`.
    pub teb: u64,
    /// `Tcb.BasePriority` (a CHAR).
    pub base_priority: u64,
    /// `Tcb.PriorityDecrement` (a CHAR).
    pub priority_decrement: u64,
    /// `Tcb.CallbackStack`: the stack of a user-mode callback in progress.
    pub callback_stack: u64,
    /// `Tcb.Process`: the owning process.
    pub process: u64,
    /// `Tcb.IdealProcessor` (ULONG).
    pub ideal_processor: u64,
    /// `Tcb.WaitReason` (a UCHAR, `KWAIT_REASON`).
    pub wait_reason: u64,
    /// `Tcb.Win32Thread`.
    pub win32_thread: u64,
    /// `Tcb.StackBase`.
    pub stack_base: u64,
    /// `Tcb.KernelTime` (ULONG, in clock ticks).
    pub kernel_time: u64,
    /// `Tcb.UserTime` (ULONG, in clock ticks).
    pub user_time: u64,
    /// `Tcb.ThreadListEntry`: in `KPROCESS.ThreadListHead`.
    pub kthread_list_entry: u64,
    /// `StartAddress`.
    pub start_address: u64,
    /// `Cid` (`CLIENT_ID`: `UniqueProcess`, `UniqueThread`).
    pub cid: u64,
    /// `Win32StartAddress`.
    pub win32_start_address: u64,
    /// `ThreadListEntry`: in `EPROCESS.ThreadListHead`.
    pub thread_list_entry: u64,
    /// `CrossThreadFlags` (ULONG): `ThreadIoPriority` in bits 10-12,
    /// `ThreadPagePriority` in bits 13-15.
    pub cross_thread_flags: u64,
}

impl Thread {
    /// The layout for `arch`.
    #[must_use]
    pub const fn for_arch(arch: Arch) -> Self {
        match arch {
            Arch::X86 => Self {
                initial_stack: 0x28,
                stack_limit: 0x2c,
                kernel_stack: 0x30,
                apc_process: 0x40 + 0x10,
                priority: 0x57,
                next_processor: 0x58,
                context_switches: 0x64,
                state: 0x68,
                wait_time: 0x80,
                teb: 0x88,
                base_priority: 0x135,
                priority_decrement: 0x136,
                callback_stack: 0x130,
                process: 0x150,
                ideal_processor: 0x160,
                wait_reason: 0x187,
                win32_thread: 0x18c,
                stack_base: 0x190,
                kernel_time: 0x198,
                user_time: 0x1c4,
                kthread_list_entry: 0x1e0,
                start_address: 0x218,
                cid: 0x22c,
                win32_start_address: 0x260,
                thread_list_entry: 0x268,
                cross_thread_flags: 0x280,
            },
            Arch::X64 => Self {
                initial_stack: 0x28,
                stack_limit: 0x30,
                kernel_stack: 0x38,
                apc_process: 0x50 + 0x20,
                priority: 0x7b,
                next_processor: 0x7c,
                context_switches: 0x134,
                state: 0x164,
                wait_time: 0x194,
                teb: 0xb8,
                base_priority: 0x1f1,
                priority_decrement: 0x1f2,
                callback_stack: 0x1e8,
                process: 0x210,
                ideal_processor: 0x228,
                wait_reason: 0x26b,
                win32_thread: 0x270,
                stack_base: 0x278,
                kernel_time: 0x284,
                user_time: 0x2d4,
                kthread_list_entry: 0x2f8,
                start_address: 0x388,
                cid: 0x3b0,
                win32_start_address: 0x410,
                thread_list_entry: 0x420,
                cross_thread_flags: 0x448,
            },
        }
    }
}

/// `KTHREAD_STATE` values kd names (WRK, base/ntos/inc/ke.h).
pub mod thread_state {
    /// `Running`.
    pub const RUNNING: u64 = 2;
    /// `Waiting`.
    pub const WAITING: u64 = 5;
}

/// Offsets in Windows 7 SP1's `EPROCESS` (its `KPROCESS`, `Pcb`, at 0).
///
/// The emulated kernel fills them in and kd's `!process` reads them. From
/// `dt nt!_EPROCESS` of Windows 7 SP1 ntoskrnl in public sessions (x86: a
/// full dump with `_KPROCESS`; x64: two, `UniqueProcessId` 0x180,
/// `ActiveProcessLinks` 0x188, `ObjectTable` 0x200, `Token` 0x208,
/// `ImageFileName` 0x2e0, `ThreadListHead` 0x308, `Peb` 0x338 in both);
/// `KPROCESS`'s `DirectoryTableBase` and `ThreadListHead` (x64: 0x28, 0x30)
/// are the same in every x64 `dt nt!_KPROCESS` since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Process {
    /// `Pcb.DirectoryTableBase`.
    pub directory_table_base: u64,
    /// `Pcb.ThreadListHead`: the `KTHREAD`s.
    pub kprocess_thread_list_head: u64,
    /// `UniqueProcessId`.
    pub unique_process_id: u64,
    /// `ActiveProcessLinks`: in `nt!PsActiveProcessHead`.
    pub active_process_links: u64,
    /// `ObjectTable`: the handle table.
    pub object_table: u64,
    /// `Token` (an `EX_FAST_REF`).
    pub token: u64,
    /// `InheritedFromUniqueProcessId`: the parent's id.
    pub inherited_from_unique_process_id: u64,
    /// `Session`: the session space (none for System).
    pub session: u64,
    /// `ImageFileName` (15 characters and a NUL).
    pub image_file_name: u64,
    /// `ThreadListHead`: the `ETHREAD`s.
    pub thread_list_head: u64,
    /// `ActiveThreads` (ULONG).
    pub active_threads: u64,
    /// `Peb`.
    pub peb: u64,
}

impl Process {
    /// The layout for `arch`.
    #[must_use]
    pub const fn for_arch(arch: Arch) -> Self {
        match arch {
            Arch::X86 => Self {
                directory_table_base: 0x18,
                kprocess_thread_list_head: 0x2c,
                unique_process_id: 0xb4,
                active_process_links: 0xb8,
                object_table: 0xf4,
                token: 0xf8,
                inherited_from_unique_process_id: 0x140,
                session: 0x168,
                image_file_name: 0x16c,
                thread_list_head: 0x188,
                active_threads: 0x198,
                peb: 0x1a8,
            },
            Arch::X64 => Self {
                directory_table_base: 0x28,
                kprocess_thread_list_head: 0x30,
                unique_process_id: 0x180,
                active_process_links: 0x188,
                object_table: 0x200,
                token: 0x208,
                inherited_from_unique_process_id: 0x290,
                session: 0x2d8,
                image_file_name: 0x2e0,
                thread_list_head: 0x308,
                active_threads: 0x328,
                peb: 0x338,
            },
        }
    }
}

/// Windows 7 SP1's object manager structures.
///
/// The emulated kernel lays them out and kd's `!object` reads them.
/// `dt nt!_OBJECT_HEADER` of
/// Windows 7 (x86: `TypeIndex` 0x0c, `InfoMask` 0x0e, `Body` 0x18; x64:
/// `HandleCount` 8, `TypeIndex` 0x18, `InfoMask` 0x1a, `Body` 0x30, in a
/// Windows 7 x64 session beside `!process 0 0 explorer.exe`);
/// `dt nt!_OBJECT_TYPE` (`Name` at 8 on x86, 0x10 on x64); the name
/// information (`Directory`, then `Name`) sits right before the header when
/// `InfoMask` has only bit 1 (WRK, base/ntos/inc/ob.h, and the Windows 7
/// `ObpInfoMaskToOffset` order: creator 1, name 2); `OBJECT_DIRECTORY`
/// starts with its 37 hash buckets of `OBJECT_DIRECTORY_ENTRY`
/// (`ChainLink`, `Object`, `HashValue`; WRK ob.h, `NUMBER_HASH_BUCKETS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectLayout {
    /// `OBJECT_HEADER.HandleCount`.
    pub handle_count: u64,
    /// `OBJECT_HEADER.TypeIndex` (UCHAR): into `nt!ObTypeIndexTable`.
    pub type_index: u64,
    /// `OBJECT_HEADER.InfoMask` (UCHAR): which optional headers precede it.
    pub info_mask: u64,
    /// `OBJECT_HEADER.Body`: bytes from the header to the object.
    pub body: u64,
    /// `sizeof(OBJECT_HEADER_NAME_INFO)`: `Directory`, `Name`,
    /// `ReferenceCount` (and padding on x64).
    pub name_info_size: u64,
    /// `OBJECT_HEADER_NAME_INFO.Name` (a `UNICODE_STRING`).
    pub name_info_name: u64,
    /// `OBJECT_TYPE.Name` (a `UNICODE_STRING`).
    pub type_name: u64,
}

/// `OBJECT_HEADER.InfoMask`'s bit for `OBJECT_HEADER_NAME_INFO`.
pub const NAME_INFO_MASK: u64 = 2;

/// Hash buckets in an `OBJECT_DIRECTORY` (WRK, ob.h).
pub const NUMBER_HASH_BUCKETS: u64 = 37;

impl ObjectLayout {
    /// The layout for `arch`.
    #[must_use]
    pub const fn for_arch(arch: Arch) -> Self {
        match arch {
            Arch::X86 => Self {
                handle_count: 4,
                type_index: 0x0c,
                info_mask: 0x0e,
                body: 0x18,
                name_info_size: 0x10,
                name_info_name: 4,
                type_name: 8,
            },
            Arch::X64 => Self {
                handle_count: 8,
                type_index: 0x18,
                info_mask: 0x1a,
                body: 0x30,
                name_info_size: 0x20,
                name_info_name: 8,
                type_name: 0x10,
            },
        }
    }
}
