//! What an engine saw a driver do. Engines (Speakeasy, Wine) only produce
//! these; [`crate::tracker`] judges them. Speakeasy's adapter prints them as
//! JSON lines in exactly this shape.

use serde::{Deserialize, Serialize};

/// When in the driver's life an event happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// In DriverEntry.
    Entry,
    /// In the unload routine.
    Unload,
}

/// An error that ended a run inside the emulator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunError {
    /// The emulator's description (`invalid_read`, `unsupported_api`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// Faulting instruction.
    pub pc: Option<u64>,
    /// Address accessed (or the PC again for fetches).
    pub address: Option<u64>,
    /// For `unsupported_api`: `ntoskrnl.IoCreateDevice`.
    pub api: Option<String>,
    /// For `unsupported_api`: the return address of the call.
    pub caller: Option<u64>,
    /// Disassembly of the faulting instruction, if the emulator had it.
    pub instruction: Option<String>,
}

/// One observation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The image was mapped.
    Load {
        /// `x64` or `x86`.
        arch: String,
        /// Where it was mapped.
        image_base: u64,
        /// Its size in memory.
        image_size: u64,
        /// Address of DriverEntry.
        entry_point: u64,
    },
    /// A pool allocation call; `address` 0 means it failed.
    Alloc {
        /// When.
        phase: Phase,
        /// Which routine (`ExAllocatePoolWithTag`).
        api: String,
        /// `POOL_TYPE`.
        pool: u32,
        /// Bytes requested.
        size: u64,
        /// Tag value.
        tag: u32,
        /// Address returned, or 0.
        address: u64,
        /// Return address in the driver.
        caller: u64,
        /// The failure was injected (`--fail-allocation`).
        #[serde(default)]
        injected_failure: bool,
    },
    /// A pool free call.
    Free {
        /// When.
        phase: Phase,
        /// Which routine (`ExFreePoolWithTag`).
        api: String,
        /// Address freed.
        address: u64,
        /// Tag given, for the tagged routines.
        tag: Option<u32>,
        /// Return address in the driver.
        caller: u64,
    },
    /// Text passed to DbgPrint (may hold several lines, or part of one).
    DebugPrint {
        /// When.
        phase: Phase,
        /// The formatted text.
        text: String,
    },
    /// DriverEntry returned, or its run ended with an error.
    EntryReturn {
        /// The NTSTATUS, if it returned.
        status: Option<u32>,
        /// Why the run ended otherwise.
        error: Option<RunError>,
        /// Address of the unload routine it set (0: none).
        unload_routine: u64,
    },
    /// The unload routine returned, or its run ended with an error.
    UnloadReturn {
        /// Why the run ended otherwise.
        error: Option<RunError>,
    },
    /// The driver called KeBugCheckEx.
    Bugcheck {
        /// When.
        phase: Phase,
        /// Code.
        code: u32,
        /// Parameters.
        args: [u64; 4],
        /// Return address in the driver.
        caller: u64,
    },
    /// The driver object the engine created.
    DriverObject {
        /// Its address.
        address: u64,
        /// Address of its DriverName string (bug check 0xC4/0x62's Arg2).
        name_address: u64,
        /// The driver name (`Sample`).
        name: String,
    },
    /// The engine could not do its part.
    AdapterError {
        /// `missing_tool`, `bad_input` or `engine`.
        kind: String,
        /// One line for the user.
        message: String,
    },
    /// The engine finished reporting.
    End,
}
