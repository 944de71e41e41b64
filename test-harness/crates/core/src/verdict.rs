//! The Verdict: what a pool-tracking run found, whatever the source (the
//! native engine, Speakeasy, Wine, a real debugger's output or a VM).
//!
//! Serialised as the `--json` output; `outcome` and `unloaded` are derived
//! from `stage` and `bugcheck`, so the three can never disagree.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::nt::{self, PoolType};
use crate::verifier::VerifierFlags;

/// The documented exit codes of every `harness` command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// Loaded and unloaded with no violation.
    Clean = 0,
    /// `demo`: a build did not behave as the walkthrough says.
    Unexpected = 1,
    /// Could not run or cannot judge: bad input, a missing tool, an engine
    /// gap, an unreachable VM. One line on stderr.
    CannotJudge = 2,
    /// A verifier violation or bug check.
    Violation = 3,
    /// `DriverEntry` failed or did not return, or the driver could not be
    /// unloaded or its unload routine did not return.
    LoadProblem = 4,
    /// The source shows the driver still loaded: nothing was judged at
    /// unload (debugger output with no unload and no bug check).
    StillLoaded = 5,
    /// Windows would refuse to load the image (an import that no kernel
    /// module exports, a user-mode DLL import). One line on stderr.
    LoadRefused = 6,
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        Self::from(code as u8)
    }
}

/// Where a verdict came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// The harness's own emulated kernel (Unicorn).
    Native,
    /// Mandiant Speakeasy.
    Speakeasy,
    /// Wine's winedevice.exe.
    Wine,
    /// Real debugger output (`harness analyze`).
    Kd,
    /// The real Driver Verifier on a Windows VM (`harness vm`).
    Vm,
}

impl Engine {
    /// The name used in verdicts and messages.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Speakeasy => "speakeasy",
            Self::Wine => "wine",
            Self::Kd => "kd",
            Self::Vm => "vm",
        }
    }

    /// Whether the source is an emulator run by the harness (as opposed to
    /// text from a real machine).
    #[must_use]
    pub const fn is_emulator(self) -> bool {
        matches!(self, Self::Native | Self::Speakeasy | Self::Wine)
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How far the driver's life got when the run ended. Stored; the outcome
/// is derived from it and the bug check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The source says nothing of loading or unloading.
    Unknown,
    /// In `DriverEntry` when the run ended.
    InEntry,
    /// `DriverEntry` returned an error; the I/O manager unloaded the image.
    EntryFailed,
    /// `DriverEntry` succeeded and the driver is still loaded.
    Loaded,
    /// `DriverEntry` succeeded but set no unload routine: `sc stop` gives
    /// `ERROR_INVALID_SERVICE_CONTROL` (1052) and the image stays loaded.
    CannotUnload,
    /// In the unload routine when the run ended.
    InUnload,
    /// The unload routine returned and the image was unloaded.
    Unloaded,
}

/// How loading and unloading went, derived from the stage and the bug check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// `DriverEntry` succeeded and the unload routine ran to the end.
    Unloaded,
    /// `DriverEntry` returned an error status; the image was unloaded.
    EntryFailed,
    /// `DriverEntry` succeeded but set no unload routine.
    CannotUnload,
    /// `DriverEntry` did not return (a limit stopped it).
    EntryDidNotReturn,
    /// The unload routine did not return (a limit stopped it).
    UnloadDidNotReturn,
    /// The machine bug-checked (see `bugcheck`).
    BugCheck,
    /// The driver is still loaded: nothing has been judged at unload.
    StillLoaded,
}

/// A limit that stopped a driver routine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Limit {
    /// The instruction budget (`--max-instructions`).
    Instructions {
        /// The budget.
        count: u64,
    },
    /// The wall-clock budget (`--timeout`).
    Time {
        /// The budget in seconds.
        seconds: u64,
    },
    /// The service control manager's wait for a start or stop (Wine).
    ServiceControl {
        /// How long it waited, in seconds.
        seconds: u64,
    },
    /// `hlt` with interrupts disabled: the processor never resumes.
    Halted {
        /// The `hlt` instruction's address.
        pc: u64,
    },
}

impl Limit {
    /// A time limit.
    #[must_use]
    pub const fn time(limit: Duration) -> Self {
        Self::Time {
            seconds: limit.as_secs(),
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Instructions { count } => write!(f, "stopped after {count} instructions"),
            Self::Time { seconds } => write!(f, "still running after {seconds} s"),
            Self::ServiceControl { seconds } => {
                write!(f, "the service control manager gave up after {seconds} s")
            }
            Self::Halted { pc } => write!(
                f,
                "halted for good at 0x{pc:x} (hlt with interrupts disabled)"
            ),
        }
    }
}

/// What kind of CPU fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Reading an invalid address.
    Read,
    /// Writing an invalid address.
    Write,
    /// Executing at an invalid address.
    Execute,
    /// An undefined instruction.
    IllegalInstruction,
    /// A privileged instruction where it is not allowed.
    PrivilegedInstruction,
    /// Integer division by zero (or overflow).
    DivideError,
    /// A breakpoint instruction with no debugger to take it.
    Breakpoint,
    /// A write to memory mapped read-only (nt's code).
    ReadOnlyWrite,
    /// An access to the guard page below the kernel stack: the processor
    /// cannot push the page fault's frame either, a double fault.
    StackOverflow,
}

impl FaultKind {
    /// The exception code the kernel raises for it.
    #[must_use]
    pub(crate) const fn exception_code(self) -> u32 {
        match self {
            Self::Read
            | Self::Write
            | Self::Execute
            | Self::ReadOnlyWrite
            | Self::StackOverflow => nt::status::ACCESS_VIOLATION,
            Self::IllegalInstruction => nt::status::ILLEGAL_INSTRUCTION,
            Self::PrivilegedInstruction => nt::status::PRIVILEGED_INSTRUCTION,
            Self::DivideError => nt::status::INTEGER_DIVIDE_BY_ZERO,
            Self::Breakpoint => nt::status::BREAKPOINT,
        }
    }

    /// Whether it is a memory access fault.
    #[must_use]
    pub const fn is_access(self) -> bool {
        matches!(self, Self::Read | Self::Write | Self::Execute)
    }

    /// In words, for reports.
    #[must_use]
    pub const fn describe(self) -> &'static str {
        match self {
            Self::Read => "invalid read",
            Self::Write => "invalid write",
            Self::Execute => "invalid fetch (jump to unmapped memory)",
            Self::IllegalInstruction => "illegal instruction",
            Self::PrivilegedInstruction => "privileged instruction",
            Self::DivideError => "integer divide by zero",
            Self::Breakpoint => "breakpoint with no debugger attached",
            Self::StackOverflow => "kernel stack overflow into the guard page",
            Self::ReadOnlyWrite => "write to read-only memory",
        }
    }
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

impl BugCheck {
    /// A bug check with the name and description the harness knows.
    #[must_use]
    pub fn new(code: u32, args: [u64; 4]) -> Self {
        Self {
            code,
            args,
            name: nt::bugcheck_name(code).to_owned(),
            description: nt::bugcheck_description(code, args[0]).to_owned(),
        }
    }

    /// Whether this is 0xC4 with the given Arg1.
    #[must_use]
    pub const fn is_verifier(&self, arg1: u64) -> bool {
        self.code == nt::DRIVER_VERIFIER_DETECTED_VIOLATION && self.args[0] == arg1
    }
}

/// A pool allocation a source lists as outstanding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leak {
    /// Address returned to the driver.
    pub address: u64,
    /// Bytes: the size requested (emulators), or the Length column of
    /// `!verifier 3` (debugger output, which shows the rounded block size).
    pub bytes: u64,
    /// The pool tag as text (`abcd`).
    pub tag: String,
    /// The pool it came from.
    pub pool: PoolType,
    /// Where it was allocated (`Sample!DriverEntry+0x27`).
    pub caller: String,
    /// The return address behind `caller`, where known.
    pub caller_address: Option<u64>,
}

/// A crash inside the driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// What went wrong.
    pub kind: FaultKind,
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
    /// Pool Allocations Succeeded `SpecialPool` (verifier flag 0x1).
    #[serde(default)]
    pub special: u64,
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
#[serde(into = "VerdictJson", try_from = "VerdictJson")]
pub struct Verdict {
    /// The driver's file name (`Sample.sys`).
    pub driver: String,
    /// Where the verdict came from.
    pub engine: Engine,
    /// The driver's architecture, where known.
    pub arch: Option<Arch>,
    /// The NTSTATUS `DriverEntry` returned, if it returned and the source knows.
    pub entry_status: Option<u32>,
    /// How far the driver's life got.
    pub stage: Stage,
    /// The limit that stopped a routine that did not return.
    pub limit: Option<Limit>,
    /// The bug check, if the machine stopped.
    pub bugcheck: Option<BugCheck>,
    /// Allocations the source lists as outstanding (at unload: leaked).
    pub leaks: Vec<Leak>,
    /// The driver's debug output, one entry per line.
    pub debug_output: Vec<String>,
    /// Pool counters.
    pub pool_stats: PoolStats,
    /// The crash, if the driver crashed.
    pub fault: Option<Fault>,
    /// nt!PoolHitTag breaks, when a tag was set.
    pub pool_hits: Vec<PoolHit>,
    /// Whether Driver Verifier's pool tracking applied to the run.
    pub verifier: bool,
    /// The verifier flags the run used, where the source sets them (the
    /// emulators).
    pub verifier_flags: Option<VerifierFlags>,
    /// Anything else worth saying (symbol problems, tag mismatches).
    pub notes: Vec<String>,
}

impl Verdict {
    /// An empty verdict for `driver` from `engine`: nothing known yet.
    #[must_use]
    pub fn new(driver: impl Into<String>, engine: Engine, arch: Option<Arch>) -> Self {
        Self {
            driver: driver.into(),
            engine,
            arch,
            entry_status: None,
            stage: Stage::Unknown,
            limit: None,
            bugcheck: None,
            leaks: Vec::new(),
            debug_output: Vec::new(),
            pool_stats: PoolStats::default(),
            fault: None,
            pool_hits: Vec::new(),
            verifier: engine.is_emulator(),
            verifier_flags: None,
            notes: Vec::new(),
        }
    }

    /// How loading and unloading went.
    #[must_use]
    pub const fn outcome(&self) -> Outcome {
        if self.bugcheck.is_some() {
            return Outcome::BugCheck;
        }
        match self.stage {
            Stage::Unknown | Stage::Loaded => Outcome::StillLoaded,
            Stage::InEntry => Outcome::EntryDidNotReturn,
            Stage::EntryFailed => Outcome::EntryFailed,
            Stage::CannotUnload => Outcome::CannotUnload,
            Stage::InUnload => Outcome::UnloadDidNotReturn,
            Stage::Unloaded => Outcome::Unloaded,
        }
    }

    /// Whether the image was unloaded.
    #[must_use]
    pub const fn unloaded(&self) -> bool {
        matches!(self.stage, Stage::EntryFailed | Stage::Unloaded)
    }

    /// The documented exit code for this verdict.
    #[must_use]
    pub const fn exit_code(&self) -> ExitCode {
        // Outstanding allocations at unload are a violation even where the
        // source shows no bug check (a `!verifier 3` listing on its own).
        if self.bugcheck.is_some() || (self.unloaded() && !self.leaks.is_empty()) {
            return ExitCode::Violation;
        }
        match self.outcome() {
            Outcome::Unloaded => ExitCode::Clean,
            Outcome::BugCheck => ExitCode::Violation,
            Outcome::StillLoaded => ExitCode::StillLoaded,
            Outcome::EntryFailed
            | Outcome::CannotUnload
            | Outcome::EntryDidNotReturn
            | Outcome::UnloadDidNotReturn => ExitCode::LoadProblem,
        }
    }
}

/// The JSON form: the stored fields plus the derived `outcome` and `unloaded`.
#[derive(Serialize, Deserialize)]
struct VerdictJson {
    driver: String,
    engine: Engine,
    arch: Option<Arch>,
    entry_status: Option<u32>,
    stage: Stage,
    outcome: Outcome,
    unloaded: bool,
    limit: Option<Limit>,
    bugcheck: Option<BugCheck>,
    leaks: Vec<Leak>,
    debug_output: Vec<String>,
    pool_stats: PoolStats,
    fault: Option<Fault>,
    pool_hits: Vec<PoolHit>,
    verifier: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verifier_flags: Option<VerifierFlags>,
    notes: Vec<String>,
}

impl From<Verdict> for VerdictJson {
    fn from(verdict: Verdict) -> Self {
        Self {
            outcome: verdict.outcome(),
            unloaded: verdict.unloaded(),
            driver: verdict.driver,
            engine: verdict.engine,
            arch: verdict.arch,
            entry_status: verdict.entry_status,
            stage: verdict.stage,
            limit: verdict.limit,
            bugcheck: verdict.bugcheck,
            leaks: verdict.leaks,
            debug_output: verdict.debug_output,
            pool_stats: verdict.pool_stats,
            fault: verdict.fault,
            pool_hits: verdict.pool_hits,
            verifier: verdict.verifier,
            verifier_flags: verdict.verifier_flags,
            notes: verdict.notes,
        }
    }
}

/// JSON whose derived fields contradict its stored ones.
#[derive(Debug, thiserror::Error)]
#[error(
    "inconsistent verdict: outcome {outcome:?} / unloaded {unloaded} do not follow from stage {stage:?} and the bug check"
)]
pub(crate) struct InconsistentVerdict {
    outcome: Outcome,
    unloaded: bool,
    stage: Stage,
}

impl TryFrom<VerdictJson> for Verdict {
    type Error = InconsistentVerdict;

    fn try_from(json: VerdictJson) -> Result<Self, Self::Error> {
        let verdict = Self {
            driver: json.driver,
            engine: json.engine,
            arch: json.arch,
            entry_status: json.entry_status,
            stage: json.stage,
            limit: json.limit,
            bugcheck: json.bugcheck,
            leaks: json.leaks,
            debug_output: json.debug_output,
            pool_stats: json.pool_stats,
            fault: json.fault,
            pool_hits: json.pool_hits,
            verifier: json.verifier,
            verifier_flags: json.verifier_flags,
            notes: json.notes,
        };
        if verdict.outcome() == json.outcome && verdict.unloaded() == json.unloaded {
            Ok(verdict)
        } else {
            Err(InconsistentVerdict {
                outcome: json.outcome,
                unloaded: json.unloaded,
                stage: json.stage,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_and_unloaded_follow_the_stage_and_bugcheck() {
        let mut verdict = Verdict::new("Sample.sys", Engine::Native, Some(Arch::X86));
        assert_eq!(verdict.outcome(), Outcome::StillLoaded);
        assert_eq!(verdict.exit_code(), ExitCode::StillLoaded);
        verdict.stage = Stage::Unloaded;
        assert_eq!(verdict.exit_code(), ExitCode::Clean);
        verdict.bugcheck = Some(BugCheck::new(0xC4, [0x62, 1, 0, 1]));
        assert_eq!(verdict.outcome(), Outcome::BugCheck);
        assert!(verdict.unloaded());
        assert_eq!(verdict.exit_code(), ExitCode::Violation);
    }

    #[test]
    fn json_round_trips_and_rejects_contradictions() {
        let mut verdict = Verdict::new("Sample.sys", Engine::Kd, None);
        verdict.stage = Stage::EntryFailed;
        let text = serde_json::to_string(&verdict).expect("json");
        let back: Verdict = serde_json::from_str(&text).expect("parsed");
        assert_eq!(back, verdict);
        let lying = text.replace("\"unloaded\":true", "\"unloaded\":false");
        assert!(serde_json::from_str::<Verdict>(&lying).is_err());
    }
}
