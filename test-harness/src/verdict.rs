//! The Verdict: what a pool-tracking run found, whatever the source (Speakeasy,
//! Wine, or a real debugger's output). Serialised as the `--json` output.

use serde::{Deserialize, Serialize};

use crate::arch::Arch;

/// Exit code: loaded and unloaded with no violation.
pub const EXIT_CLEAN: i32 = 0;
/// Exit code: verifier violation or bug check.
pub const EXIT_VIOLATION: i32 = 3;
/// Exit code: DriverEntry failed, or the driver could not be unloaded.
pub const EXIT_LOAD_PROBLEM: i32 = 4;

/// `DRIVER_VERIFIER_DETECTED_VIOLATION`.
pub const DRIVER_VERIFIER_DETECTED_VIOLATION: u32 = 0xC4;

/// How loading and unloading went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// DriverEntry succeeded and the unload routine ran to the end.
    Unloaded,
    /// DriverEntry returned an error status; the image was unloaded.
    EntryFailed,
    /// DriverEntry succeeded but set no unload routine: `sc stop` gives
    /// `ERROR_INVALID_SERVICE_CONTROL` (1052) and the image stays loaded.
    CannotUnload,
    /// DriverEntry did not return within the instruction or time budget.
    EntryDidNotReturn,
    /// The unload routine did not return within the budget.
    UnloadDidNotReturn,
    /// The machine bug-checked (see `bugcheck`).
    BugCheck,
    /// Not known from this source (debugger output that shows no bug check).
    Unknown,
}

/// A bug check, as `!analyze -v` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BugCheck {
    /// The bug check code (0xC4).
    pub code: u32,
    /// Its four parameters.
    pub args: [u64; 4],
    /// Its symbolic name (`DRIVER_VERIFIER_DETECTED_VIOLATION`).
    pub name: String,
    /// What Arg1 means for this code, where known.
    pub description: String,
}

/// A pool allocation still outstanding when the driver unloaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leak {
    /// Address returned to the driver.
    pub address: u64,
    /// Bytes: the size requested (emulators), or the Length column of
    /// `!verifier 3` (debugger output, which shows the rounded block size).
    pub bytes: u64,
    /// The pool tag as text (`abcd`).
    pub tag: String,
    /// `PagedPool`, `NonPagedPool`, `NonPagedPoolNx`, ...
    pub pool: String,
    /// Where it was allocated (`Sample!DriverEntry+0x27`).
    pub caller: String,
    /// The return address behind `caller`, where known.
    pub caller_address: Option<u64>,
}

/// A crash inside the driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// What went wrong (`invalid read`, `invalid instruction`, ...).
    pub kind: String,
    /// The faulting instruction's address.
    pub pc: u64,
    /// Its symbol (`Sample!DriverEntry+0x12`).
    pub symbol: String,
    /// The memory address accessed, for access faults.
    pub accessed: Option<u64>,
}

/// One nt!PoolHitTag break.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolHit {
    /// The pool routine that broke in.
    pub api: String,
    /// Address allocated or freed.
    pub address: u64,
    /// Bytes requested (allocations).
    pub bytes: Option<u64>,
    /// The call site (`Sample!DriverEntry+0x27`).
    pub caller: String,
    /// How many debug output lines came before this break.
    pub after_debug_lines: usize,
}

/// Driver Verifier's pool counters (`!verifier 3`'s summary).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolStats {
    /// Pool Allocations Attempted.
    pub attempted: u64,
    /// Pool Allocations Succeeded.
    pub succeeded: u64,
    /// Pool Allocations Failed.
    pub failed: u64,
    /// Pool Allocations With NO TAG.
    pub no_tag: u64,
    /// Current paged pool allocations and bytes.
    pub current_paged: (u64, u64),
    /// Peak paged pool allocations and bytes.
    pub peak_paged: (u64, u64),
    /// Current nonpaged pool allocations and bytes.
    pub current_nonpaged: (u64, u64),
    /// Peak nonpaged pool allocations and bytes.
    pub peak_nonpaged: (u64, u64),
}

/// The result of one pool-tracking run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The driver's file name (`Sample.sys`).
    pub driver: String,
    /// `speakeasy`, `wine` or `kd`.
    pub engine: String,
    /// The driver's architecture, where known.
    pub arch: Option<Arch>,
    /// The NTSTATUS DriverEntry returned, if it returned and the source knows.
    pub entry_status: Option<u32>,
    /// Whether the driver was unloaded.
    pub unloaded: bool,
    /// How loading and unloading went.
    pub outcome: Outcome,
    /// The bug check, if the machine stopped.
    pub bugcheck: Option<BugCheck>,
    /// Allocations still outstanding at unload.
    pub leaks: Vec<Leak>,
    /// The driver's debug output, one entry per line.
    pub debug_output: Vec<String>,
    /// Pool counters.
    pub pool_stats: PoolStats,
    /// The crash, if the driver crashed.
    pub fault: Option<Fault>,
    /// nt!PoolHitTag breaks, when a tag was set.
    pub pool_hits: Vec<PoolHit>,
    /// Anything else worth saying (symbol problems, tag mismatches).
    pub notes: Vec<String>,
}

impl Verdict {
    /// The documented exit code for this verdict.
    #[must_use]
    pub fn exit_code(&self) -> i32 {
        // Outstanding allocations are a violation even where the source shows
        // no bug check (a `!verifier 3` listing on its own).
        if self.bugcheck.is_some() || !self.leaks.is_empty() {
            return EXIT_VIOLATION;
        }
        match self.outcome {
            Outcome::Unloaded | Outcome::Unknown => EXIT_CLEAN,
            Outcome::BugCheck => EXIT_VIOLATION,
            Outcome::EntryFailed
            | Outcome::CannotUnload
            | Outcome::EntryDidNotReturn
            | Outcome::UnloadDidNotReturn => EXIT_LOAD_PROBLEM,
        }
    }
}

/// The name and Arg1 meaning of the bug checks the harness reports.
#[must_use]
pub fn bugcheck_text(code: u32, arg1: u64) -> (String, String) {
    let name = match code {
        0xC4 => "DRIVER_VERIFIER_DETECTED_VIOLATION",
        0xC2 => "BAD_POOL_CALLER",
        0x7E => "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED",
        0x50 => "PAGE_FAULT_IN_NONPAGED_AREA",
        0x1E => "KMODE_EXCEPTION_NOT_HANDLED",
        0xD1 => "DRIVER_IRQL_NOT_LESS_OR_EQUAL",
        0x139 => "KERNEL_SECURITY_CHECK_FAILURE",
        0x5250_4E43 => "RUST_PANIC (wdk-panic \"RPNC\")",
        _ => "UNKNOWN_BUGCHECK",
    };
    let description = match (code, arg1) {
        (0xC4, 0x00) => "The driver requested a zero-byte pool allocation.",
        (0xC4, 0x10) => "A driver attempted to free pool which was not allocated.",
        (0xC4, 0x13 | 0x14) => "A driver attempted to free pool which was already freed.",
        (0xC4, 0x60 | 0x62) => {
            "A driver has forgotten to free its pool allocations prior to unloading."
        }
        (0xC4, 0x61) => "A driver attempted to allocate pool while it was unloading.",
        (0x7E, _) => {
            "A system thread generated an exception which the error handler did not catch."
        }
        (0x50, _) => "Invalid system memory was referenced.",
        _ => "",
    };
    (name.to_owned(), description.to_owned())
}

/// A bug check record with its name and description filled in.
#[must_use]
pub fn bugcheck(code: u32, args: [u64; 4]) -> BugCheck {
    let (name, description) = bugcheck_text(code, args[0]);
    BugCheck {
        code,
        args,
        name,
        description,
    }
}

/// Pool type names as `!pool` and `!verifier` print them.
#[must_use]
pub fn pool_type_name(pool_type: u32) -> String {
    match pool_type {
        0 => "NonPagedPool".into(),
        1 => "PagedPool".into(),
        2 => "NonPagedPoolMustSucceed".into(),
        4 => "NonPagedPoolCacheAligned".into(),
        5 => "PagedPoolCacheAligned".into(),
        512 => "NonPagedPoolNx".into(),
        other if other & 1 == 1 => format!("PagedPool (type 0x{other:x})"),
        other => format!("NonPagedPool (type 0x{other:x})"),
    }
}

/// Whether a pool type name is paged.
#[must_use]
pub fn is_paged(pool: &str) -> bool {
    pool.starts_with("Paged")
}

/// A pool tag as text: the four bytes in memory order (`0x64636261` -> `abcd`).
#[must_use]
pub fn tag_text(tag: u32) -> String {
    tag.to_le_bytes()
        .iter()
        .map(|&byte| {
            if byte.is_ascii_graphic() || byte == b' ' {
                char::from(byte)
            } else {
                '?'
            }
        })
        .collect::<String>()
        .trim_end()
        .to_owned()
}

/// Parses a tag given as text (`abcd`) or as a number (`0x64636261`).
///
/// # Errors
/// Neither one to four printable characters nor a number.
pub fn parse_tag(text: &str) -> Result<u32, String> {
    let trimmed = text.trim().trim_matches('\'');
    if let Some(hex) = trimmed
        .strip_prefix("0x")
        .or_else(|| trimmed.strip_prefix("0X"))
    {
        return u32::from_str_radix(hex, 16).map_err(|_| format!("bad pool tag '{text}'"));
    }
    if (1..=4).contains(&trimmed.len()) && trimmed.bytes().all(|byte| byte.is_ascii_graphic()) {
        let mut bytes = [b' '; 4];
        bytes[..trimmed.len()].copy_from_slice(trimmed.as_bytes());
        return Ok(u32::from_le_bytes(bytes));
    }
    Err(format!(
        "bad pool tag '{text}': give 1-4 characters (abcd) or a number (0x64636261)"
    ))
}
