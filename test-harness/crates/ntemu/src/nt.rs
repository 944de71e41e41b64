//! The emulated kernel image, `nt`: real machine code at kernel addresses,
//! built with iced-x86's assembler for each architecture.
//!
//! Every routine the engine implements is a small function with a proper
//! frame whose body holds a *trap*: a `nop` the engine's code hook stops at
//! to run the routine in Rust. The paths Windows takes around a driver are
//! functions too, named as Windows names them (`IopLoadDriver`,
//! `VerifierExAllocatePoolWithTag`, `KeBugCheckEx`, ...), calling each
//! other with real return addresses, so a debugger walking the stack sees
//! the walkthrough's chain. `nt!PoolHitTag` is a real variable the
//! allocation and free paths compare the tag with before `int 3`.
//!
//! Layout: a header page, a data page (variables), then code. Offsets
//! inside functions are the emulator's own, not Windows'.

use std::collections::HashMap;

use iced_x86::BlockEncoderOptions;
use iced_x86::code_asm::{
    AsmRegister32, AsmRegister64, CodeAssembler, CodeLabel, dword_ptr, eax, ebp, ecx, edx, esp,
    qword_ptr, r8, r9, r10, r11, rax, rcx, rdx, rsp,
};

use super::routines::{self, Conv};
use harness_core::arch::Arch;
use harness_core::nt::BAD_POOL_CALLER;
use harness_core::pool_api::PoolRoutine;

/// The pool routines a driver that is not verified binds to directly, and
/// which report its calls themselves.
pub(crate) const REPORTS_UNVERIFIED: [&str; 2] = ["ExAllocatePoolWithTag", "ExFreePoolWithTag"];

/// What nt's own pool routines report for a driver that is not verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unverified {
    /// The allocation's request (before it is made: a bad IRQL).
    Allocation,
    /// The allocation's result.
    Record,
    /// The free's request.
    Free,
}

/// What the engine does when execution reaches a trap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trap {
    /// A routine implemented in Rust (index into `routines::ROUTINES`).
    Routine(usize),
    /// The verifier's check before an allocation (a zero-byte request).
    VerifyAllocation(PoolRoutine),
    /// The verifier's record of an allocation's result.
    RecordAllocation(PoolRoutine),
    /// The verifier's check of a free (bad address, double free).
    VerifyFree(PoolRoutine),
    /// The pool allocator: `ax` = the block, `cx` = its tag.
    Allocate,
    /// The pool allocator frees: `ax` = the block's tag.
    Free,
    /// `VfPoolCheckForLeaks`: `ax` = 1 when the verifier bug-checks.
    CheckLeaks,
    /// `KeBugCheckEx`: record the bug check in `KiBugCheckData`.
    BugCheck,
    /// `ExpWorkerThread`: `ax` = the work routine, `cx` = its parameter.
    WorkItem,
    /// `ExpWorkerThread`, after the work routine returned: `ax` = 1 when it
    /// returned at a raised IRQL (the bug check's parameters pending).
    WorkerReturned,
    /// `MmFreeSpecialPool`: `ax` = 1 when the bytes around a special pool
    /// block changed, or its page is gone (0xC1's parameters pending).
    SpecialFree,
    /// `DebugService2` from `DbgLoadImageSymbols`: the image is in the
    /// loaded-module list; `ax` = 1 when the debugger breaks on the load.
    ImageLoaded,
    /// The release kernel's own checks in the allocator, in
    /// `ExFreePoolWithTag` and in the thunks that allocate themselves: `ax`
    /// = 1 when the call was judged `BAD_POOL_CALLER` (0xC2's parameters
    /// pending).
    ReleaseCheck,
    /// With no verifier (flags 0) the driver calls nt's routine itself: it
    /// reports the call as the verifier's thunk would (the tracker applies
    /// the release kernel's checks); a no-op otherwise.
    Unverified(Unverified),
    /// `IopLoadDriver`, before `DriverEntry`: `ax` = `DriverEntry`, `cx` = the
    /// driver object, `dx` = the registry path.
    StartDriver,
    /// `IopLoadDriver`, after `DriverEntry`: `ax` = 1 when the image must be
    /// unloaded again (`DriverEntry` failed), `cx` = the image.
    DriverStarted,
    /// `IopLoadUnloadDriver`: `ax` = 1 to load, 0 to unload; for an unload
    /// `cx` = the driver object, `dx` = its unload routine.
    LoadOrUnload,
    /// `IopLoadUnloadDriver`, after the unload routine returned.
    UnloadReturned,
    /// `IopUnloadDriver`: `ax` = 0 when the driver cannot be unloaded;
    /// otherwise the unload routine runs on a worker thread first.
    UnloadRequested,
    /// `MiUnloadSystemImage`: the image is gone.
    ImageUnloaded,
    /// `ObpRemoveObjectRoutine`, after the delete procedure: the driver
    /// object is out of `\Driver` and its memory is freed.
    DriverDeleted,
    /// `ObfDereferenceObjectWithTag`: `ax` = 1 when the object goes (the
    /// unloading driver's object), `cx` = the object.
    Dereference,
    /// `IopInvalidDeviceRequest`: what a driver's unset `MajorFunction`
    /// entries point at.
    InvalidDeviceRequest,
    /// The bottom of a thread: the stage is over.
    ThreadExit,
}

/// A symbol of the emulated kernel.
#[derive(Debug, Clone)]
pub struct Symbol {
    /// `ExAllocatePoolWithTag`.
    pub name: String,
    /// Its address.
    pub address: u64,
    /// Its size in bytes (functions: code bytes; variables: their size).
    pub size: u64,
    /// A function (else a variable).
    pub function: bool,
}

/// The variables in nt's data page, at fixed offsets from it.
#[derive(Debug, Clone, Copy)]
pub struct Data {
    /// `nt!PoolHitTag` (ULONG).
    pub pool_hit_tag: u64,
    /// `nt!KiBugCheckData` (`ULONG_PTR[5]`: code and four parameters).
    pub bugcheck_data: u64,
    /// `nt!NtBuildNumber` (ULONG).
    pub build_number: u64,
    /// `nt!KeTickCount` (`KSYSTEM_TIME` on x86).
    pub tick_count: u64,
    /// `nt!InitSafeBootMode` (ULONG).
    pub safe_boot_mode: u64,
    /// `nt!KdDebuggerEnabled` (BOOLEAN).
    pub debugger_enabled: u64,
    /// `nt!KdDebuggerNotPresent` (BOOLEAN).
    pub debugger_not_present: u64,
    /// `nt!MmUserProbeAddress` (`ULONG_PTR`).
    pub user_probe_address: u64,
    /// `nt!MmHighestUserAddress` (PVOID).
    pub highest_user_address: u64,
    /// `nt!MmSystemRangeStart` (PVOID).
    pub system_range_start: u64,
    /// `nt!VfPendingBugCheck`: the parameters the verifier bug-checks with.
    pub pending_bugcheck: u64,
    /// `nt!PsActiveProcessHead` (`LIST_ENTRY`): the processes.
    pub active_process_head: u64,
    /// `nt!PsInitialSystemProcess` (PEPROCESS): the System process.
    pub initial_system_process: u64,
    /// `nt!ObpRootDirectoryObject` (a pointer): the namespace's root.
    pub root_directory: u64,
    /// `nt!ObTypeIndexTable` (pointers): object types by `TypeIndex`.
    pub type_index_table: u64,
    /// Object type pointers (`IoDriverObjectType` ...), each a PVOID.
    pub object_types: u64,
    /// The processor control region (`fs:`/`gs:` base).
    pub pcr: u64,
}

/// Variables exported by name (data imports), with their offset in [`Data`].
const DATA_EXPORTS: [&str; 17] = [
    "PoolHitTag",
    "KiBugCheckData",
    "NtBuildNumber",
    "KeTickCount",
    "InitSafeBootMode",
    "KdDebuggerEnabled",
    "KdDebuggerNotPresent",
    "MmUserProbeAddress",
    "MmHighestUserAddress",
    "MmSystemRangeStart",
    "VfPendingBugCheck",
    "IoDriverObjectType",
    "KiInitialPcr",
    "PsActiveProcessHead",
    "PsInitialSystemProcess",
    "ObpRootDirectoryObject",
    "ObTypeIndexTable",
];

/// The kernel's own functions that Windows exports to drivers.
const EXPORTED_FUNCTIONS: [&str; 8] = [
    "KeBugCheckEx",
    "KeBugCheck",
    "ObfDereferenceObject",
    "ObfDereferenceObjectWithTag",
    "ExAllocatePoolWithTag",
    "ExAllocatePoolWithTagPriority",
    "ExFreePoolWithTag",
    "ExFreePool",
];

/// Object types drivers import as data (`POBJECT_TYPE *`).
pub(crate) const OBJECT_TYPES: [(&str, &str); 8] = [
    ("IoDriverObjectType", "Driver"),
    ("IoDeviceObjectType", "Device"),
    ("IoFileObjectType", "File"),
    ("PsProcessType", "Process"),
    ("PsThreadType", "Thread"),
    ("ExEventObjectType", "Event"),
    ("ExSemaphoreObjectType", "Semaphore"),
    ("SeTokenObjectType", "Token"),
];

/// The verifier's pending bug check parameters, Arg1 to Arg4.
const PENDING: [A; 4] = [A::Data(0), A::Data(1), A::Data(2), A::Data(3)];

/// The assembled kernel image for one architecture.
#[derive(Debug, Clone)]
pub struct NtImage {
    /// Where it is mapped.
    pub base: u64,
    /// Its bytes (headers, data, code).
    pub bytes: Vec<u8>,
    /// Code range, for the trap hook.
    pub code: (u64, u64),
    /// Traps by address.
    pub traps: HashMap<u64, Trap>,
    /// Symbols, in address order.
    pub symbols: Vec<Symbol>,
    /// Exports a driver may import: name to address (functions and data).
    pub exports: HashMap<String, u64>,
    /// The routine a driver's import of each pool routine is bound to
    /// (the verifier's thunk).
    pub verifier_thunks: HashMap<String, u64>,
    /// The variables.
    pub data: Data,
    /// x64: `RUNTIME_FUNCTION` entries (begin, end, unwind info), as RVAs.
    pub runtime_functions: Vec<(u32, u32, u32)>,
    /// Where `KiThreadStartup` is (the load and unload worker thread).
    pub worker_thread_start: u64,
    /// Where the system-call path that unloads a driver starts.
    pub unload_thread_start: u64,
}

impl NtImage {
    /// The address of an nt symbol.
    #[must_use]
    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.symbols
            .iter()
            .find(|symbol| symbol.name == name)
            .map(|symbol| symbol.address)
    }

    /// The symbol holding `address`, and the offset into it.
    #[must_use]
    pub fn symbol_at(&self, address: u64) -> Option<(&Symbol, u64)> {
        let at = self
            .symbols
            .partition_point(|symbol| symbol.address <= address);
        let symbol = self.symbols.get(at.checked_sub(1)?)?;
        let offset = address - symbol.address;
        (offset < symbol.size.max(1)).then_some((symbol, offset))
    }

    /// x64: the `.pdata` table's RVA and size in bytes (`RUNTIME_FUNCTION`
    /// entries after the shared `UNWIND_INFO`); x86: none.
    #[must_use]
    pub fn exception_directory(&self) -> (u32, u32) {
        let written = self
            .runtime_functions
            .iter()
            .take_while(|function| function.2 != 0)
            .count();
        let table = u32::try_from(UNWIND_OFFSET + 16).unwrap_or(0);
        (table, u32::try_from(written * 12).unwrap_or(0))
    }

    /// Bytes the image takes in memory.
    #[must_use]
    pub fn size(&self) -> u64 {
        u64::try_from(self.bytes.len()).unwrap_or(u64::MAX)
    }
}

/// Where nt lives on each architecture (near the walkthrough's Windows 7).
#[must_use]
pub const fn base(arch: Arch) -> u64 {
    match arch {
        Arch::X86 => 0x82a0_0000,
        Arch::X64 => 0xFFFF_F800_02A0_0000,
    }
}

const PAGE: u64 = 0x1000;
/// Offset of the data page in the image.
const DATA_OFFSET: u64 = PAGE;
/// Offset of the x64 unwind data page.
const UNWIND_OFFSET: u64 = 2 * PAGE;
/// Offset of the code.
const CODE_OFFSET: u64 = 4 * PAGE;

/// A value an nt function passes on.
#[derive(Debug, Clone, Copy)]
enum A {
    /// Its own argument `n`.
    Arg(u8),
    /// Its own argument `n`, or-ed with a constant.
    ArgOr(u8, u32),
    /// Its own argument `n`, rounded up to the pool's granularity.
    ArgRound(u8),
    /// Its own return address (the caller's call site).
    ReturnAddress,
    /// What a trap left in `ax`, `cx` or `dx`.
    Ax,
    Cx,
    Dx,
    /// A constant.
    Imm(u32),
    /// The pointer-sized variable at this offset in the data page.
    Data(u64),
}

/// One step of an nt function.
#[derive(Debug, Clone)]
enum Op {
    Trap(Trap),
    /// Call another nt function (stdcall on x86) with these arguments.
    Call(&'static str, Vec<A>),
    /// Call the address in `ax` (driver code, stdcall on x86) with these arguments.
    CallAx(Vec<A>),
    /// Return now (keeping `ax`) when `ax` is zero.
    ReturnIfAxZero,
    /// When `ax` is not zero, the verifier bug-checks with the parameters
    /// a trap left in `VfPendingBugCheck`.
    BugCheckIfAx,
    /// When `ax` is not zero, `KeBugCheckEx` with this code and the
    /// parameters a trap left in `VfPendingBugCheck`.
    KeBugCheckIfAx(u32),
    /// `int 3` if the tag in `cx`... compares `nt!PoolHitTag` with `A`.
    BreakOnTag(A),
    /// `int 3`.
    Break,
}

/// An nt function.
struct Func {
    name: &'static str,
    /// x86: argument slots the callee pops (stdcall), 0 for cdecl.
    pops: u8,
    /// x86 fastcall (first two arguments in ecx, edx).
    fastcall: bool,
    /// No frame at all (`RtlpBreakWithStatusInstruction`).
    frameless: bool,
    body: Vec<Op>,
}

const fn func(name: &'static str, pops: u8, body: Vec<Op>) -> Func {
    Func {
        name,
        pops,
        fastcall: false,
        frameless: false,
        body,
    }
}

/// A fastcall function on x86 (two arguments, both in registers).
const fn fastcall(name: &'static str, body: Vec<Op>) -> Func {
    Func {
        name,
        pops: 0,
        fastcall: true,
        frameless: false,
        body,
    }
}

/// The kernel's own functions around the driver, as Windows names them.
#[allow(clippy::too_many_lines)] // a table, one function per entry
fn kernel_functions(arch: Arch) -> Vec<Func> {
    use A::{Arg, ArgOr, ArgRound, Ax, Cx, Dx, Imm, ReturnAddress};
    use Op::{Break, BreakOnTag, BugCheckIfAx, Call, CallAx, KeBugCheckIfAx, ReturnIfAxZero};
    let system_call = match arch {
        Arch::X86 => "KiFastCallEntry",
        Arch::X64 => "KiSystemServiceCopyEnd",
    };
    vec![
        // The worker thread that loads and unloads drivers (sc start, and
        // the unload routine's half of sc stop).
        func(
            "KiThreadStartup",
            0,
            vec![
                Call("PspSystemThreadStartup", vec![Imm(0), Imm(0)]),
                Op::Trap(Trap::ThreadExit),
            ],
        ),
        func(
            "PspSystemThreadStartup",
            2,
            vec![Call("ExpWorkerThread", vec![Arg(1)])],
        ),
        func(
            "ExpWorkerThread",
            1,
            vec![
                Op::Trap(Trap::WorkItem),
                CallAx(vec![Cx]),
                Op::Trap(Trap::WorkerReturned),
                KeBugCheckIfAx(0xE1),
            ],
        ),
        // Calls IopLoadDriver, or the driver's unload routine.
        func(
            "IopLoadUnloadDriver",
            1,
            vec![
                Op::Trap(Trap::LoadOrUnload),
                CallAx(vec![Cx]),
                Op::Trap(Trap::UnloadReturned),
            ],
        ),
        // The image load the debugger hears of before the driver object
        // exists: MmLoadSystemImage -> MiDriverLoadSucceeded ->
        // DbgLoadImageSymbolsUnicode -> DbgLoadImageSymbols ->
        // DebugService2 (a Windows 7 x64 stack at `sxe ld`'s break, quoted
        // in crates/debugger/src/session/events.rs).
        func(
            "IopLoadDriver",
            1,
            vec![
                Call("MmLoadSystemImage", vec![]),
                Op::Trap(Trap::StartDriver),
                CallAx(vec![Cx, Dx]),
                Op::Trap(Trap::DriverStarted),
                ReturnIfAxZero,
                Call("MmUnloadSystemImage", vec![Cx]),
            ],
        ),
        func(
            "MmLoadSystemImage",
            0,
            vec![Call("MiDriverLoadSucceeded", vec![])],
        ),
        func(
            "MiDriverLoadSucceeded",
            0,
            vec![Call("DbgLoadImageSymbolsUnicode", vec![])],
        ),
        func(
            "DbgLoadImageSymbolsUnicode",
            0,
            vec![Call("DbgLoadImageSymbols", vec![])],
        ),
        func(
            "DbgLoadImageSymbols",
            0,
            vec![Call("DebugService2", vec![])],
        ),
        // kd breaks here on a module load it was told to break on (`sxe ld`).
        func(
            "DebugService2",
            0,
            vec![Op::Trap(Trap::ImageLoaded), ReturnIfAxZero, Break],
        ),
        // The system call that unloads a driver (sc stop's other half).
        func(
            system_call,
            0,
            vec![
                Call("NtUnloadDriver", vec![Imm(0)]),
                Op::Trap(Trap::ThreadExit),
            ],
        ),
        func(
            "NtUnloadDriver",
            1,
            vec![Call("IopUnloadDriver", vec![Arg(0), Imm(0)])],
        ),
        func(
            "IopUnloadDriver",
            2,
            vec![
                Op::Trap(Trap::UnloadRequested),
                ReturnIfAxZero,
                Call("ObfDereferenceObject", vec![Cx]),
            ],
        ),
        // Exported, fastcall on x86: drivers dereference objects with it too;
        // only the last reference to the unloading driver's object goes on.
        fastcall(
            "ObfDereferenceObject",
            vec![Call(
                "ObfDereferenceObjectWithTag",
                vec![Arg(0), Imm(0x6d6c_6644)],
            )],
        ),
        fastcall(
            "ObfDereferenceObjectWithTag",
            vec![
                Op::Trap(Trap::Dereference),
                ReturnIfAxZero,
                Call("ObpRemoveObjectRoutine", vec![Cx, Imm(0)]),
            ],
        ),
        func(
            "ObpRemoveObjectRoutine",
            2,
            vec![
                Call("IopDeleteDriver", vec![Arg(0)]),
                Op::Trap(Trap::DriverDeleted),
            ],
        ),
        func(
            "IopDeleteDriver",
            1,
            vec![Call("MmUnloadSystemImage", vec![Arg(0)])],
        ),
        func(
            "MmUnloadSystemImage",
            1,
            vec![Call("MiUnloadSystemImage", vec![Arg(0), Imm(0)])],
        ),
        func(
            "MiUnloadSystemImage",
            2,
            vec![
                Call("VfDriverUnloadImage", vec![Arg(0)]),
                Op::Trap(Trap::ImageUnloaded),
            ],
        ),
        func(
            "VfDriverUnloadImage",
            1,
            vec![Call("VfTargetDriversRemove", vec![Arg(0)])],
        ),
        func(
            "VfTargetDriversRemove",
            1,
            vec![Call("VfPoolCheckForLeaks", vec![Arg(0)])],
        ),
        func(
            "VfPoolCheckForLeaks",
            1,
            vec![Op::Trap(Trap::CheckLeaks), BugCheckIfAx],
        ),
        // The verifier raises its bug checks here (code 0xC4 and Arg1-Arg4).
        func(
            "VerifierBugCheckIfAppropriate",
            4,
            vec![Call(
                "KeBugCheckEx",
                vec![Imm(0xC4), Arg(0), Arg(1), Arg(2), Arg(3)],
            )],
        ),
        func(
            "KeBugCheckEx",
            5,
            vec![
                Op::Trap(Trap::BugCheck),
                Call(
                    "KeBugCheck2",
                    vec![Arg(0), Arg(1), Arg(2), Arg(3), Arg(4), Imm(0)],
                ),
            ],
        ),
        func(
            "KeBugCheck",
            1,
            vec![Call(
                "KeBugCheckEx",
                vec![Arg(0), Imm(0), Imm(0), Imm(0), Imm(0)],
            )],
        ),
        func(
            "KeBugCheck2",
            6,
            vec![Call("KiBugCheckDebugBreak", vec![Imm(3)])],
        ),
        func(
            "KiBugCheckDebugBreak",
            1,
            vec![Call("RtlpBreakWithStatusInstruction", vec![Arg(0)])],
        ),
        Func {
            name: "RtlpBreakWithStatusInstruction",
            pops: 1,
            fastcall: false,
            frameless: true,
            body: vec![Break],
        },
        // Pool: the verifier's thunks the driver's imports are bound to,
        // and the allocator. The thunk rounds the size and marks the type
        // as the walkthrough's frames show (0x6c -> 0x70, 1 -> 0xc1).
        func(
            "VerifierExAllocatePoolWithTag",
            3,
            vec![
                Op::Trap(Trap::VerifyAllocation(PoolRoutine::ExAllocatePoolWithTag)),
                BugCheckIfAx,
                Call(
                    "VeAllocatePoolWithTagPriority",
                    vec![ArgOr(0, 0xC0), ArgRound(1), Arg(2), Imm(16), ReturnAddress],
                ),
                Op::Trap(Trap::RecordAllocation(PoolRoutine::ExAllocatePoolWithTag)),
            ],
        ),
        func(
            "VeAllocatePoolWithTagPriority",
            5,
            vec![Call(
                "ExAllocatePoolWithTagPriority",
                vec![Arg(0), Arg(1), Arg(2), Arg(3)],
            )],
        ),
        func(
            "ExAllocatePoolWithTagPriority",
            4,
            vec![Call("ExAllocatePoolWithTag", vec![Arg(0), Arg(1), Arg(2)])],
        ),
        func(
            "ExAllocatePoolWithTag",
            3,
            vec![
                Op::Trap(Trap::Unverified(Unverified::Allocation)),
                Op::Trap(Trap::ReleaseCheck),
                KeBugCheckIfAx(BAD_POOL_CALLER),
                Op::Trap(Trap::Allocate),
                Op::Trap(Trap::Unverified(Unverified::Record)),
                BreakOnTag(Arg(2)),
            ],
        ),
        func(
            "VerifierExFreePoolWithTag",
            2,
            vec![
                Op::Trap(Trap::VerifyFree(PoolRoutine::ExFreePoolWithTag)),
                BugCheckIfAx,
                Call("ExFreePoolWithTag", vec![Arg(0), Arg(1)]),
            ],
        ),
        func(
            "VerifierExFreePool",
            1,
            vec![
                Op::Trap(Trap::VerifyFree(PoolRoutine::ExFreePool)),
                BugCheckIfAx,
                Call("ExFreePoolWithTag", vec![Arg(0), Imm(0)]),
            ],
        ),
        func(
            "ExFreePoolWithTag",
            2,
            vec![
                Op::Trap(Trap::Unverified(Unverified::Free)),
                // The WRK's order: special pool's own free first, then
                // the header checks (base/ntos/ex/pool.c).
                Call("MmFreeSpecialPool", vec![Arg(0)]),
                Op::Trap(Trap::ReleaseCheck),
                KeBugCheckIfAx(BAD_POOL_CALLER),
                Op::Trap(Trap::Free),
                BreakOnTag(Ax),
            ],
        ),
        func(
            "MmFreeSpecialPool",
            1,
            vec![Op::Trap(Trap::SpecialFree), KeBugCheckIfAx(0xC1)],
        ),
        func(
            "ExFreePool",
            1,
            vec![Call("ExFreePoolWithTag", vec![Arg(0), Imm(0)])],
        ),
        func(
            "IopInvalidDeviceRequest",
            2,
            vec![Op::Trap(Trap::InvalidDeviceRequest)],
        ),
    ]
}

/// The verifier thunks of the other pool routines: one trap each that
/// allocates or frees, records, and breaks on the tag.
fn pool_thunks() -> Vec<(PoolRoutine, Func)> {
    use A::Cx;
    let mut thunks = Vec::new();
    for routine in PoolRoutine::ALL {
        let name: &'static str = match routine {
            PoolRoutine::ExAllocatePoolWithTag
            | PoolRoutine::ExFreePoolWithTag
            | PoolRoutine::ExFreePool => continue,
            PoolRoutine::ExAllocatePoolWithTagPriority => "VerifierExAllocatePoolWithTagPriority",
            PoolRoutine::ExAllocatePoolWithQuotaTag => "VerifierExAllocatePoolWithQuotaTag",
            PoolRoutine::ExAllocatePool => "VerifierExAllocatePool",
            PoolRoutine::ExAllocatePoolWithQuota => "VerifierExAllocatePoolWithQuota",
            PoolRoutine::ExAllocatePoolZero => "VerifierExAllocatePoolZero",
            PoolRoutine::ExAllocatePool2 => "VerifierExAllocatePool2",
            PoolRoutine::ExAllocatePool3 => "VerifierExAllocatePool3",
            PoolRoutine::ExFreePool2 => "VerifierExFreePool2",
        };
        // Slots on x86 are what the routine takes there (POOL_FLAGS: two).
        let pops = u8::try_from(routine.slots(Arch::X86)).unwrap_or(0);
        let body = if routine.allocates() {
            vec![
                Op::Trap(Trap::VerifyAllocation(routine)),
                Op::BugCheckIfAx,
                Op::Trap(Trap::ReleaseCheck),
                Op::KeBugCheckIfAx(BAD_POOL_CALLER),
                Op::Trap(Trap::RecordAllocation(routine)),
                Op::BreakOnTag(Cx),
            ]
        } else {
            // The free itself goes nt's one way (special pool's checks,
            // the release kernel's header check), as ExFreePoolWithTag's.
            vec![
                Op::Trap(Trap::VerifyFree(routine)),
                Op::BugCheckIfAx,
                Op::Call("ExFreePoolWithTag", vec![A::Arg(0), A::Arg(1)]),
            ]
        };
        thunks.push((routine, func(name, pops, body)));
    }
    thunks
}

/// Builds the image for `arch`.
///
/// # Panics
/// Only if the kernel's own code cannot be assembled, which the unit tests
/// rule out for both architectures.
#[must_use]
pub fn build(arch: Arch) -> NtImage {
    Builder::new(arch).build()
}

struct Builder {
    arch: Arch,
    asm: CodeAssembler,
    labels: HashMap<&'static str, CodeLabel>,
    /// Function name, its label, an end label.
    funcs: Vec<(String, CodeLabel, CodeLabel, bool)>,
    traps: Vec<(CodeLabel, Trap)>,
    data: Data,
    /// x86 fastcall functions, called with ecx/edx loaded.
    fastcalls: Vec<&'static str>,
    /// The function being emitted is fastcall (its arguments 0 and 1 are
    /// in ecx and edx).
    in_fastcall: bool,
}

/// Frame bytes x64 functions reserve: home space for callees and up to
/// two stack arguments, keeping rsp 16-byte aligned.
const X64_FRAME: i32 = 0x38;
/// Bytes of the x64 prologue before the frame is allocated (homing rcx..r9).
const X64_HOMING: u8 = 20;

impl Builder {
    fn new(arch: Arch) -> Self {
        let bitness = match arch {
            Arch::X86 => 32,
            Arch::X64 => 64,
        };
        let ptr = arch.pointer_size();
        let data_base = base(arch) + DATA_OFFSET;
        let data = Data {
            pool_hit_tag: data_base,
            bugcheck_data: data_base + 0x10,
            build_number: data_base + 0x40,
            tick_count: data_base + 0x48,
            safe_boot_mode: data_base + 0x58,
            debugger_enabled: data_base + 0x5c,
            debugger_not_present: data_base + 0x5d,
            user_probe_address: data_base + 0x60,
            highest_user_address: data_base + 0x68,
            system_range_start: data_base + 0x70,
            pending_bugcheck: data_base + 0x80,
            active_process_head: data_base + 0xa0,
            initial_system_process: data_base + 0xb0,
            root_directory: data_base + 0xb8,
            type_index_table: data_base + 0x140,
            object_types: data_base + 0x100,
            pcr: data_base + 0x400,
        };
        debug_assert!(0x10 + 5 * ptr <= 0x40);
        debug_assert!(0x80 + 4 * ptr <= 0xa0);
        Self {
            arch,
            // Infallible for 32 and 64.
            asm: CodeAssembler::new(bitness).unwrap_or_else(|_| unreachable!()),
            labels: HashMap::new(),
            funcs: Vec::new(),
            traps: Vec::new(),
            data,
            fastcalls: Vec::new(),
            in_fastcall: false,
        }
    }

    fn label(&mut self, name: &'static str) -> CodeLabel {
        if let Some(label) = self.labels.get(name) {
            return *label;
        }
        let label = self.asm.create_label();
        self.labels.insert(name, label);
        label
    }

    #[allow(clippy::too_many_lines)] // assembly, then the image's tables in order
    fn build(mut self) -> NtImage {
        let code_base = base(self.arch) + CODE_OFFSET;
        let mut thunks = HashMap::new();
        let mut stubs: Vec<&'static str> = Vec::new();
        let functions = kernel_functions(self.arch);
        self.fastcalls = functions
            .iter()
            .filter(|function| function.fastcall)
            .map(|function| function.name)
            .collect();
        for routine in routines::ROUTINES {
            if routine.conv == Conv::Fastcall {
                self.fastcalls.push(routine.name);
            }
        }
        for function in functions {
            self.emit(&function);
        }
        for (routine, function) in pool_thunks() {
            thunks.insert(routine.name().to_owned(), function.name);
            self.emit(&function);
        }
        for (index, routine) in routines::ROUTINES.iter().enumerate() {
            if self.labels.contains_key(routine.name) {
                continue; // the kernel's own function of that name serves
            }
            let pops = match (routine.conv, self.arch) {
                (Conv::Cdecl, _) | (_, Arch::X64) => 0,
                (Conv::Fastcall, Arch::X86) => routine.slots.saturating_sub(2),
                (Conv::Stdcall, Arch::X86) => routine.slots,
            };
            let function = Func {
                name: routine.name,
                pops,
                fastcall: routine.conv == Conv::Fastcall,
                frameless: false,
                body: vec![Op::Trap(Trap::Routine(index))],
            };
            self.emit(&function);
            stubs.push(routine.name);
        }
        let result = self
            .asm
            .assemble_options(
                code_base,
                BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS,
            )
            .unwrap_or_else(|error| panic!("nt does not assemble: {error}"));
        let ip = |label: &CodeLabel| {
            result
                .label_ip(label)
                .unwrap_or_else(|error| panic!("nt label: {error}"))
        };
        let code = result.inner.code_buffer.clone();
        let code_len = u64::try_from(code.len()).unwrap_or(u64::MAX);
        let image_len = CODE_OFFSET + code_len.div_ceil(PAGE) * PAGE;
        let mut bytes = vec![0_u8; usize::try_from(image_len).unwrap_or(0)];
        bytes[..2].copy_from_slice(b"MZ");
        let code_at = usize::try_from(CODE_OFFSET).unwrap_or(0);
        bytes[code_at..code_at + code.len()].copy_from_slice(&code);

        let mut symbols = Vec::new();
        let mut runtime_functions = Vec::new();
        let nt_base = base(self.arch);
        for (name, start, end, frameless) in &self.funcs {
            let (start, end) = (ip(start), ip(end));
            symbols.push(Symbol {
                name: name.clone(),
                address: start,
                size: end - start,
                function: true,
            });
            if self.arch == Arch::X64 && !frameless {
                let rva = |address: u64| u32::try_from(address - nt_base).unwrap_or(0);
                runtime_functions.push((rva(start), rva(end), 0));
            }
        }
        self.write_unwind_info(&mut bytes, &mut runtime_functions);
        let traps = self
            .traps
            .iter()
            .map(|(label, trap)| (ip(label), *trap))
            .collect();
        let by_name: HashMap<String, u64> = symbols
            .iter()
            .map(|symbol| (symbol.name.clone(), symbol.address))
            .collect();
        // What drivers may import: the routines, and the kernel's own
        // functions Windows exports; the internal ones (IopLoadDriver...)
        // are only symbols.
        let mut exports: HashMap<String, u64> = stubs
            .iter()
            .chain(EXPORTED_FUNCTIONS.iter())
            .filter_map(|name| Some(((*name).to_owned(), *by_name.get(*name)?)))
            .collect();
        for (name, address) in self.data_symbols() {
            symbols.push(Symbol {
                name: name.to_owned(),
                address,
                size: self.arch.pointer_size(),
                function: false,
            });
            // The kernel's own variables are symbols, not exports.
            if !matches!(name, "PoolHitTag" | "VfPendingBugCheck" | "KiInitialPcr") {
                exports.insert(name.to_owned(), address);
            }
        }
        symbols.sort_by_key(|symbol| symbol.address);
        let verifier_thunks = thunks
            .into_iter()
            .map(|(routine, thunk)| (routine, by_name[thunk]))
            .chain([
                (
                    "ExAllocatePoolWithTag".to_owned(),
                    by_name["VerifierExAllocatePoolWithTag"],
                ),
                (
                    "ExFreePoolWithTag".to_owned(),
                    by_name["VerifierExFreePoolWithTag"],
                ),
                ("ExFreePool".to_owned(), by_name["VerifierExFreePool"]),
            ])
            .collect();
        NtImage {
            base: nt_base,
            bytes,
            code: (code_base, code_base + code_len),
            traps,
            worker_thread_start: by_name["KiThreadStartup"],
            unload_thread_start: by_name[match self.arch {
                Arch::X86 => "KiFastCallEntry",
                Arch::X64 => "KiSystemServiceCopyEnd",
            }],
            symbols,
            exports,
            verifier_thunks,
            data: self.data,
            runtime_functions,
        }
    }

    fn data_symbols(&self) -> Vec<(&'static str, u64)> {
        let data = self.data;
        let ptr = self.arch.pointer_size();
        let mut symbols: Vec<(&'static str, u64)> = DATA_EXPORTS
            .iter()
            .map(|name| {
                let address = match *name {
                    "PoolHitTag" => data.pool_hit_tag,
                    "KiBugCheckData" => data.bugcheck_data,
                    "NtBuildNumber" => data.build_number,
                    "KeTickCount" => data.tick_count,
                    "InitSafeBootMode" => data.safe_boot_mode,
                    "KdDebuggerEnabled" => data.debugger_enabled,
                    "KdDebuggerNotPresent" => data.debugger_not_present,
                    "MmUserProbeAddress" => data.user_probe_address,
                    "MmHighestUserAddress" => data.highest_user_address,
                    "MmSystemRangeStart" => data.system_range_start,
                    "VfPendingBugCheck" => data.pending_bugcheck,
                    "KiInitialPcr" => data.pcr,
                    "PsActiveProcessHead" => data.active_process_head,
                    "PsInitialSystemProcess" => data.initial_system_process,
                    "ObpRootDirectoryObject" => data.root_directory,
                    "ObTypeIndexTable" => data.type_index_table,
                    _ => data.object_types,
                };
                (*name, address)
            })
            .filter(|(name, _)| *name != "IoDriverObjectType")
            .collect();
        for (index, (name, _)) in OBJECT_TYPES.iter().enumerate() {
            symbols.push((
                name,
                data.object_types + ptr * u64::try_from(index).unwrap_or(0),
            ));
        }
        symbols
    }

    /// x64 unwind data: one `UNWIND_INFO` for every framed function (they
    /// share a prologue: home rcx..r9, then `sub rsp, 0x38`).
    fn write_unwind_info(&self, bytes: &mut [u8], functions: &mut [(u32, u32, u32)]) {
        if self.arch != Arch::X64 {
            return;
        }
        let info_rva = u32::try_from(UNWIND_OFFSET).unwrap_or(0);
        let prolog = X64_HOMING + 4;
        let alloc_small = u8::try_from((X64_FRAME - 8) / 8).unwrap_or(0);
        // Version 1, no flags; prolog size; one code; no frame register;
        // the code: at `prolog`, UWOP_ALLOC_SMALL (2) with info `alloc_small`.
        let info = [1_u8, prolog, 1, 0, prolog, 2 | (alloc_small << 4), 0, 0];
        let at = usize::try_from(UNWIND_OFFSET).unwrap_or(0);
        bytes[at..at + info.len()].copy_from_slice(&info);
        // The RUNTIME_FUNCTION table follows it.
        let table = at + 16;
        for (index, function) in functions.iter_mut().enumerate() {
            let entry = table + index * 12;
            if entry + 12 > at + usize::try_from(PAGE * 2).unwrap_or(0) {
                break;
            }
            function.2 = info_rva;
            bytes[entry..entry + 4].copy_from_slice(&function.0.to_le_bytes());
            bytes[entry + 4..entry + 8].copy_from_slice(&function.1.to_le_bytes());
            bytes[entry + 8..entry + 12].copy_from_slice(&function.2.to_le_bytes());
        }
    }

    fn emit(&mut self, function: &Func) {
        let mut start = self.label(function.name);
        let mut end = self.asm.create_label();
        let mut epilogue = self.asm.create_label();
        self.asm
            .set_label(&mut start)
            .unwrap_or_else(|error| panic!("{}: {error}", function.name));
        self.in_fastcall = function.fastcall;
        let result = match self.arch {
            Arch::X86 => self.emit_x86(function, &mut epilogue),
            Arch::X64 => self.emit_x64(function, &mut epilogue),
        };
        result.unwrap_or_else(|error| panic!("{}: {error}", function.name));
        // `end` labels the next instruction: a one-byte pad after each function.
        self.asm
            .set_label(&mut end)
            .and_then(|()| self.asm.int3())
            .unwrap_or_else(|error| panic!("{}: {error}", function.name));
        self.funcs
            .push((function.name.to_owned(), start, end, function.frameless));
    }

    fn trap(&mut self, trap: Trap) -> Result<(), iced_x86::IcedError> {
        let mut label = self.asm.create_label();
        self.asm.set_label(&mut label)?;
        self.asm.nop()?;
        self.traps.push((label, trap));
        Ok(())
    }

    fn emit_x86(
        &mut self,
        function: &Func,
        epilogue: &mut CodeLabel,
    ) -> Result<(), iced_x86::IcedError> {
        if function.frameless {
            for op in &function.body {
                if matches!(op, Op::Break) {
                    self.asm.int3()?;
                }
            }
            return self.asm.ret_1(u32::from(function.pops) * 4);
        }
        self.asm.push(ebp)?;
        self.asm.mov(ebp, esp)?;
        for op in &function.body {
            match op {
                Op::Trap(trap) => self.trap(*trap)?,
                Op::Call(target, args) => {
                    if self.fastcalls.contains(target) {
                        self.fastcall_args_x86(args)?;
                    } else {
                        self.push_args_x86(args)?;
                    }
                    let label = self.label(target);
                    self.asm.call(label)?;
                }
                Op::CallAx(args) => {
                    self.push_args_x86(args)?;
                    self.asm.call(eax)?;
                }
                Op::ReturnIfAxZero => {
                    self.asm.test(eax, eax)?;
                    self.asm.je(*epilogue)?;
                }
                Op::BugCheckIfAx | Op::KeBugCheckIfAx(_) => {
                    let mut skip = self.asm.create_label();
                    self.asm.test(eax, eax)?;
                    self.asm.je(skip)?;
                    let (target, args) = bugcheck_call(op);
                    self.push_args_x86(&args)?;
                    let label = self.label(target);
                    self.asm.call(label)?;
                    self.asm.set_label(&mut skip)?;
                    self.asm.nop()?;
                }
                Op::BreakOnTag(value) => {
                    let mut skip = self.asm.create_label();
                    let register = self.value_x86(*value, edx)?;
                    let tag = u32::try_from(self.data.pool_hit_tag).unwrap_or(0);
                    self.asm.cmp(dword_ptr(tag), register)?;
                    self.asm.jne(skip)?;
                    self.asm.int3()?;
                    self.asm.set_label(&mut skip)?;
                    self.asm.nop()?;
                }
                Op::Break => self.asm.int3()?,
            }
        }
        self.asm.set_label(epilogue)?;
        // `leave`: whatever the body pushed, the frame ends balanced.
        self.asm.leave()?;
        if function.pops == 0 {
            self.asm.ret()
        } else {
            self.asm.ret_1(u32::from(function.pops) * 4)
        }
    }

    /// Puts a value in `scratch` (or returns the register already holding it).
    fn value_x86(
        &mut self,
        value: A,
        scratch: AsmRegister32,
    ) -> Result<AsmRegister32, iced_x86::IcedError> {
        Ok(match value {
            A::Ax => eax,
            A::Cx => ecx,
            A::Dx => edx,
            // A fastcall function's first two arguments arrive in ecx, edx.
            A::Arg(0) if self.in_fastcall => ecx,
            A::Arg(1) if self.in_fastcall => edx,
            A::Arg(n) if self.in_fastcall => {
                self.asm
                    .mov(scratch, dword_ptr(ebp + 8 + 4 * (i32::from(n) - 2)))?;
                scratch
            }
            A::Arg(n) => {
                self.asm
                    .mov(scratch, dword_ptr(ebp + 8 + 4 * i32::from(n)))?;
                scratch
            }
            A::ArgOr(n, bits) => {
                self.asm
                    .mov(scratch, dword_ptr(ebp + 8 + 4 * i32::from(n)))?;
                self.asm.or(scratch, bits)?;
                scratch
            }
            A::ArgRound(n) => {
                // Rounded to the pool's 8-byte granularity on x86; a size
                // the rounding would wrap to 0 stays huge, so that the
                // allocator refuses it as Windows does.
                let mut rounded = self.asm.create_label();
                self.asm
                    .mov(scratch, dword_ptr(ebp + 8 + 4 * i32::from(n)))?;
                self.asm.add(scratch, 7)?;
                self.asm.jnc(rounded)?;
                self.asm.mov(scratch, u32::MAX)?;
                self.asm.set_label(&mut rounded)?;
                self.asm.and(scratch, !7_i32)?;
                scratch
            }
            A::ReturnAddress => {
                self.asm.mov(scratch, dword_ptr(ebp + 4))?;
                scratch
            }
            A::Imm(value) => {
                self.asm.mov(scratch, value)?;
                scratch
            }
            A::Data(index) => {
                let address = self.data.pending_bugcheck + 4 * index;
                self.asm
                    .mov(scratch, dword_ptr(u32::try_from(address).unwrap_or(0)))?;
                scratch
            }
        })
    }

    fn push_args_x86(&mut self, args: &[A]) -> Result<(), iced_x86::IcedError> {
        // edx is the scratch register: a call that computes an argument
        // must not also pass dx (the kernel's functions never do).
        debug_assert!(
            !(args.iter().any(|value| matches!(value, A::Dx))
                && args.iter().any(|value| matches!(
                    value,
                    A::ArgOr(..) | A::ArgRound(_) | A::Data(_) | A::ReturnAddress
                ))),
            "{args:?}"
        );
        for value in args.iter().rev() {
            match value {
                A::Imm(value) => self.asm.push(*value)?,
                A::Ax => self.asm.push(eax)?,
                A::Cx => self.asm.push(ecx)?,
                A::Dx => self.asm.push(edx)?,
                A::Arg(n) if !self.in_fastcall => {
                    self.asm.push(dword_ptr(ebp + 8 + 4 * i32::from(*n)))?;
                }
                other => {
                    let register = self.value_x86(*other, edx)?;
                    self.asm.push(register)?;
                }
            }
        }
        Ok(())
    }

    /// Arguments for a fastcall callee: the first two in ecx, edx.
    fn fastcall_args_x86(&mut self, args: &[A]) -> Result<(), iced_x86::IcedError> {
        if args.len() > 2 {
            self.push_args_x86(&args[2..])?;
        }
        if let Some(second) = args.get(1) {
            let register = self.value_x86(*second, edx)?;
            if register != edx {
                self.asm.mov(edx, register)?;
            }
        }
        if let Some(first) = args.first() {
            let register = self.value_x86(*first, ecx)?;
            if register != ecx {
                self.asm.mov(ecx, register)?;
            }
        }
        Ok(())
    }

    fn emit_x64(
        &mut self,
        function: &Func,
        epilogue: &mut CodeLabel,
    ) -> Result<(), iced_x86::IcedError> {
        if function.frameless {
            for op in &function.body {
                if matches!(op, Op::Break) {
                    self.asm.int3()?;
                }
            }
            return self.asm.ret();
        }
        // Home the register arguments (so that debuggers show them and
        // traps read every argument from memory), then the frame.
        self.asm.mov(qword_ptr(rsp + 8), rcx)?;
        self.asm.mov(qword_ptr(rsp + 0x10), rdx)?;
        self.asm.mov(qword_ptr(rsp + 0x18), r8)?;
        self.asm.mov(qword_ptr(rsp + 0x20), r9)?;
        self.asm.sub(rsp, X64_FRAME)?;
        for op in &function.body {
            match op {
                Op::Trap(trap) => self.trap(*trap)?,
                Op::Call(target, args) => {
                    self.load_args_x64(args)?;
                    let label = self.label(target);
                    self.asm.call(label)?;
                }
                Op::CallAx(args) => {
                    self.load_args_x64(args)?;
                    self.asm.call(rax)?;
                }
                Op::ReturnIfAxZero => {
                    self.asm.test(rax, rax)?;
                    self.asm.je(*epilogue)?;
                }
                Op::BugCheckIfAx | Op::KeBugCheckIfAx(_) => {
                    let mut skip = self.asm.create_label();
                    self.asm.test(rax, rax)?;
                    self.asm.je(skip)?;
                    let (target, args) = bugcheck_call(op);
                    self.load_args_x64(&args)?;
                    let label = self.label(target);
                    self.asm.call(label)?;
                    self.asm.set_label(&mut skip)?;
                    self.asm.nop()?;
                }
                Op::BreakOnTag(value) => {
                    let mut skip = self.asm.create_label();
                    let register = self.value_x64(*value, r10)?;
                    self.asm.mov(r11, self.data.pool_hit_tag)?;
                    self.asm.cmp(dword_ptr(r11), low32(register))?;
                    self.asm.jne(skip)?;
                    self.asm.int3()?;
                    self.asm.set_label(&mut skip)?;
                    self.asm.nop()?;
                }
                Op::Break => self.asm.int3()?,
            }
        }
        self.asm.set_label(epilogue)?;
        self.asm.add(rsp, X64_FRAME)?;
        self.asm.ret()
    }

    fn value_x64(
        &mut self,
        value: A,
        scratch: AsmRegister64,
    ) -> Result<AsmRegister64, iced_x86::IcedError> {
        // Incoming argument n is homed at [rsp + frame + 8 + 8n].
        let arg = |n: u8| qword_ptr(rsp + X64_FRAME + 8 + 8 * i32::from(n));
        Ok(match value {
            A::Ax => rax,
            A::Cx => rcx,
            A::Dx => rdx,
            A::Arg(n) => {
                self.asm.mov(scratch, arg(n))?;
                scratch
            }
            A::ArgOr(n, bits) => {
                self.asm.mov(scratch, arg(n))?;
                self.asm.or(scratch, i32::try_from(bits).unwrap_or(0))?;
                scratch
            }
            A::ArgRound(n) => {
                // Rounded to the pool's 16-byte granularity on x64 (a
                // wrapping size stays huge, as on x86).
                let mut rounded = self.asm.create_label();
                self.asm.mov(scratch, arg(n))?;
                self.asm.add(scratch, 15)?;
                self.asm.jnc(rounded)?;
                self.asm.mov(scratch, u64::MAX)?;
                self.asm.set_label(&mut rounded)?;
                self.asm.and(scratch, !15_i32)?;
                scratch
            }
            A::ReturnAddress => {
                self.asm.mov(scratch, qword_ptr(rsp + X64_FRAME))?;
                scratch
            }
            A::Imm(value) => {
                self.asm.mov(scratch, u64::from(value))?;
                scratch
            }
            A::Data(index) => {
                self.asm
                    .mov(scratch, self.data.pending_bugcheck + 8 * index)?;
                self.asm.mov(scratch, qword_ptr(scratch))?;
                scratch
            }
        })
    }

    fn load_args_x64(&mut self, args: &[A]) -> Result<(), iced_x86::IcedError> {
        const REGISTERS: [AsmRegister64; 4] = [rcx, rdx, r8, r9];
        // Stack arguments first, through r10, while rcx/rdx still hold
        // what traps left there.
        for (index, value) in args.iter().enumerate().skip(4) {
            let register = self.value_x64(*value, r10)?;
            let slot = 0x20 + 8 * i32::try_from(index - 4).unwrap_or(0);
            self.asm.mov(qword_ptr(rsp + slot), register)?;
        }
        // Register arguments: sources cx/dx must not be overwritten before
        // they are read; the kernel's functions never pass them crossed.
        for (index, value) in args.iter().enumerate().take(4) {
            let target = REGISTERS[index];
            let source = self.value_x64(*value, r11)?;
            if source != target {
                self.asm.mov(target, source)?;
            }
        }
        Ok(())
    }
}

/// The call a bug-check op makes: the verifier's (0xC4 and the pending
/// parameters) or `KeBugCheckEx` with a code of its own.
fn bugcheck_call(op: &Op) -> (&'static str, Vec<A>) {
    match op {
        Op::KeBugCheckIfAx(code) => {
            let mut args = vec![A::Imm(*code)];
            args.extend(PENDING);
            ("KeBugCheckEx", args)
        }
        _ => ("VerifierBugCheckIfAppropriate", PENDING.to_vec()),
    }
}

/// The 32-bit half of a 64-bit register.
fn low32(register: AsmRegister64) -> AsmRegister32 {
    use iced_x86::code_asm::{r10d, r11d};
    if register == rax {
        eax
    } else if register == rcx {
        ecx
    } else if register == rdx {
        edx
    } else if register == r10 {
        r10d
    } else {
        r11d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// nt's variables, each with its size, do not overlap on either
    /// architecture (x64's `VfPendingBugCheck` takes four pointers).
    #[test]
    fn the_data_page_variables_do_not_overlap() {
        for arch in [Arch::X86, Arch::X64] {
            let data = build(arch).data;
            let ptr = arch.pointer_size();
            let mut spans = [
                (data.pool_hit_tag, 4),
                (data.bugcheck_data, 5 * ptr),
                (data.build_number, 4),
                (data.tick_count, 12),
                (data.safe_boot_mode, 4),
                (data.debugger_enabled, 1),
                (data.debugger_not_present, 1),
                (data.user_probe_address, ptr),
                (data.highest_user_address, ptr),
                (data.system_range_start, ptr),
                (data.pending_bugcheck, 4 * ptr),
                (data.active_process_head, 2 * ptr),
                (data.initial_system_process, ptr),
                (data.root_directory, ptr),
                (
                    data.type_index_table,
                    (crate::ob::FIRST_TYPE_INDEX + OBJECT_TYPES.len() as u64 + 1) * ptr,
                ),
                // The type objects the pointers point at.
                (data.object_types + 0x100, OBJECT_TYPES.len() as u64 * 0x40),
                (data.object_types, OBJECT_TYPES.len() as u64 * ptr),
                (data.pcr, 0x190),
            ];
            spans.sort_unstable();
            for pair in spans.windows(2) {
                assert!(pair[0].0 + pair[0].1 <= pair[1].0, "{arch}: {pair:x?}");
            }
        }
    }
}
