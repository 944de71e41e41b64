//! What an engine saw a driver do. Engines (native, Speakeasy, Wine) only
//! produce these; [`crate::tracker`] judges them. Speakeasy's adapter prints
//! them as JSON lines in exactly this shape.

use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::pool_api::PoolRoutine;
use crate::verdict::{FaultKind, Limit};

/// When in the driver's life an event happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// In `DriverEntry`.
    Entry,
    /// In the unload routine.
    Unload,
}

/// Something the engine could not do as Windows would. A run with a gap is
/// never judged: the driver may have behaved correctly on a real machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Gap {
    /// The driver called a routine the engine does not implement.
    MissingRoutine {
        /// `ntoskrnl.exe!FsRtlIsNameInExpression`.
        routine: String,
    },
    /// The loader could not find modules the driver imports.
    MissingModules {
        /// `WDFLDR.SYS`, `fwpkclnt.sys`, ...
        modules: Vec<String>,
    },
    /// The driver binds KMDF; the engine has no framework function table.
    Kmdf {
        /// `WdfVersionBind`.
        routine: String,
    },
    /// The engine raised an error of its own inside a routine it provides.
    EngineError {
        /// The engine's words.
        message: String,
        /// The routine it was in, if known.
        routine: Option<String>,
    },
    /// A stub for a routine the engine only pretends to have (Wine's
    /// "unimplemented function").
    Unimplemented {
        /// `ntoskrnl.exe.MmGetVirtualForPhysical`.
        routine: String,
    },
    /// The engine's process for the driver ended with no fault in the driver.
    EngineDied {
        /// What the engine said last.
        detail: String,
    },
    /// The engine hit one of its own limits (not the driver's budget).
    EngineLimit {
        /// Which limit, in the engine's words.
        detail: String,
    },
    /// The driver ran a system instruction whose effect on Windows the
    /// engine cannot reproduce (`hlt` waiting for an interrupt, `rdmsr`,
    /// `mov cr3`, ...).
    Instruction {
        /// The instruction as written (`hlt`, `mov cr3, rax`).
        instruction: String,
        /// What Windows would do and why the engine cannot say.
        detail: String,
    },
    /// The CPU faulted outside the driver's image: in the engine's own code,
    /// or at an address an engine routine handed back.
    FaultOutsideDriver {
        /// What went wrong.
        fault: FaultKind,
        /// Where.
        pc: u64,
        /// The engine routine the driver called last, if any.
        after: Option<String>,
    },
}

/// One observation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The image was mapped.
    Load {
        /// The image's architecture.
        arch: Arch,
        /// Where it was mapped.
        image_base: u64,
        /// Its size in memory.
        image_size: u64,
        /// Address of `DriverEntry`.
        entry_point: u64,
    },
    /// The driver object the engine created (its DriverName is bug check
    /// 0xC4/0x62's Arg2).
    DriverObject {
        /// Its address.
        address: u64,
        /// The driver name (`Sample`).
        name: String,
    },
    /// The driver called a routine of the engine's (kept so that a fault
    /// right after it can be traced to the engine).
    Call {
        /// When.
        phase: Phase,
        /// `ntoskrnl.exe!IoCreateDevice`.
        routine: String,
        /// Return address in the driver.
        caller: u64,
    },
    /// A pool routine call, raw: its argument slots and result.
    PoolCall {
        /// When.
        phase: Phase,
        /// Which routine.
        routine: PoolRoutine,
        /// Argument slots as the routine received them.
        args: Vec<u64>,
        /// What it returned (allocations: the address, 0 if it failed).
        result: u64,
        /// Return address in the driver.
        caller: u64,
        /// The failure was injected (`--fail-allocation`).
        #[serde(default)]
        injected_failure: bool,
        /// The IRQL the driver called at, where the engine knows it (the
        /// verifier's automatic IRQL checks need it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        irql: Option<u8>,
    },
    /// Text passed to DbgPrint (may hold several lines, or part of one).
    DebugPrint {
        /// When.
        phase: Phase,
        /// The formatted text.
        text: String,
    },
    /// DbgPrint calls an engine counted but did not keep, past the
    /// tracker's cap on debug output (one event for a run of them).
    DebugPrintDropped {
        /// How many calls.
        calls: u64,
        /// Their text's bytes.
        bytes: u64,
    },
    /// The driver called KeBugCheckEx (or KeBugCheck).
    BugCheckCall {
        /// When.
        phase: Phase,
        /// Code.
        code: u32,
        /// Parameters.
        args: [u64; 4],
        /// Return address in the driver.
        caller: u64,
    },
    /// `DriverEntry` returned.
    EntryReturn {
        /// The NTSTATUS.
        status: u32,
        /// Address of the unload routine it set (0: none).
        unload_routine: u64,
    },
    /// The unload routine returned.
    UnloadReturn,
    /// Special pool found the bytes around a block changed when the driver
    /// freed it (the slack after its end, or the fill before its start).
    SpecialPoolCorrupted {
        /// The block being freed.
        address: u64,
        /// The first changed byte.
        corrupted: u64,
    },
    /// nt's own free path found the block free already: the release
    /// kernel's pool header says so (`header`: its first ULONG), or special
    /// pool's page for it is no longer mapped (`header`: none).
    FreedTwice {
        /// The block being freed.
        address: u64,
        /// The pool header's first ULONG, for a normal pool block.
        header: Option<u32>,
    },
    /// A system worker thread got control back from its work item (the
    /// I/O manager's load or unload of the driver) at this IRQL.
    WorkerReturn {
        /// The IRQL it returned at.
        irql: u8,
        /// The work item's routine (`nt!IopLoadUnloadDriver`).
        routine: u64,
        /// The work item's parameter.
        parameter: u64,
        /// The work item.
        work_item: u64,
    },
    /// The CPU faulted.
    Fault {
        /// When.
        phase: Phase,
        /// What went wrong.
        kind: FaultKind,
        /// The faulting instruction.
        pc: u64,
        /// The address accessed, for access faults.
        address: Option<u64>,
    },
    /// A limit of the run stopped the driver (it did not return in time).
    Stopped {
        /// When.
        phase: Phase,
        /// Which limit.
        limit: Limit,
    },
    /// The engine could not do its part.
    Gap {
        /// When (`None`: while loading).
        phase: Option<Phase>,
        /// What is missing.
        gap: Gap,
        /// Return address in the driver of the call that reached it.
        caller: Option<u64>,
    },
    /// The engine finished reporting.
    End,
}

impl Gap {
    /// The gap in one line, with the call site where the driver reached it.
    #[must_use]
    pub fn describe(&self, engine: crate::verdict::Engine, site: Option<&str>) -> String {
        let at = |prefix: &str| site.map_or_else(String::new, |site| format!("{prefix}{site}"));
        match self {
            Self::MissingRoutine { routine } => match crate::loader::is_known_export(routine) {
                Some(true) => format!(
                    "calls {routine}{}, which Windows exports and the {engine} engine does not implement",
                    at(" from ")
                ),
                Some(false) => format!(
                    "calls {routine}{}, which is not among the kernel exports the harness knows and which the {engine} engine does not implement",
                    at(" from ")
                ),
                None => format!(
                    "calls {routine}{}, which the {engine} engine does not implement (the harness has no list of that module's exports)",
                    at(" from ")
                ),
            },
            Self::MissingModules { modules } => format!(
                "needs {}, which the {engine} engine does not have",
                modules.join(", ")
            ),
            Self::Kmdf { routine } => format!(
                "calls {routine} (KMDF{}): the {engine} engine binds KMDF without a full function table",
                at("; ")
            ),
            Self::EngineError { message, routine } => format!(
                "the {engine} engine failed{}{}: {message}",
                routine
                    .as_deref()
                    .map_or_else(String::new, |routine| format!(" inside {routine}")),
                at(", called from ")
            ),
            Self::Unimplemented { routine } => format!(
                "calls {routine}{}, which the {engine} engine only stubs (unimplemented function)",
                at(" from ")
            ),
            Self::EngineDied { detail } => format!(
                "the {engine} engine's process ended with no fault in the driver{}: {detail}",
                at(" after a call from ")
            ),
            Self::EngineLimit { detail } => {
                format!("the {engine} engine hit its own limit: {detail}")
            }
            Self::Instruction {
                instruction,
                detail,
            } => format!(
                "executes `{instruction}`{}: {detail}; the {engine} engine cannot say what Windows would do",
                at(" at ")
            ),
            Self::FaultOutsideDriver { fault, pc, after } => format!(
                "the CPU faulted outside the driver ({} at 0x{pc:x}){}",
                fault.describe(),
                after.as_deref().map_or_else(String::new, |routine| format!(
                    " right after the engine's {routine} returned{}",
                    at(" to ")
                ))
            ),
        }
    }
}
