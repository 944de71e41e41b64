//! `harness emulate --fail-each`: the allocation-failure sweep, which Driver
//! Verifier's random low-resources simulation cannot do.
//!
//! A baseline run (nothing failed) counts the driver's allocations N; then N
//! runs fail the first, the second, ... the Nth. A failed DriverEntry is what
//! a driver should answer; a leak or a crash on an error path is a violation.
//!
//! Every run counts, the baseline too: the sweep's exit code is the worst of
//! its runs' (see [`Summary::exit_code`]). Runs are handed out one at a time
//! ([`Sweep`] is an iterator) and each keeps at most [`MAX_RUN_LEAKS`] leaks
//! and [`MAX_RUN_DEBUG_LINES`] debug lines, pool hits and notes, so that
//! memory and output grow linearly with the number of runs. `--timeout`
//! bounds the whole sweep.

use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::emulate::{self, EmulateError, EngineKind, Request};
use harness_core::arch::Arch;
use harness_core::error::InputError;
use harness_core::events::Event;
use harness_core::pe::PeImage;
use harness_core::tracker::{self, Context};
use harness_core::verdict::{Engine, ExitCode, Limit, Outcome, Verdict};

/// The most allocations a sweep fails in turn.
pub const MAX_SWEEP: u32 = 10_000;

/// Leaks each run keeps (its `leak_count` says how many there were).
pub const MAX_RUN_LEAKS: usize = 8;

/// Debug output lines each run keeps (and pool hits, and notes).
pub const MAX_RUN_DEBUG_LINES: usize = 16;

/// One line of `--fail-each --json`: the runs one by one (the baseline
/// first), then the summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Record {
    /// One run.
    Run(SweepRun),
    /// The last line.
    Summary(Summary),
}

/// One run of the sweep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepRun {
    /// Which allocation failed (1-based; 0: the baseline, nothing failed).
    pub fail_allocation: u32,
    /// The failed allocation's call site (`Sample!DriverEntry+0x21`), if
    /// the run reached it.
    pub caller: Option<String>,
    /// What the run gave.
    pub result: RunResult,
}

/// What one run gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunResult {
    /// The verifier's verdict, with at most [`MAX_RUN_LEAKS`] leaks and
    /// [`MAX_RUN_DEBUG_LINES`] debug lines, pool hits and notes.
    Judged {
        /// The verdict.
        verdict: Box<Verdict>,
        /// Allocations outstanding at the end of the run, all of them.
        leak_count: usize,
    },
    /// The run cannot be judged (an engine gap, or the sweep's `--timeout`
    /// ran out during it).
    CannotJudge {
        /// Why, in one line.
        why: String,
    },
}

impl SweepRun {
    /// The run's exit code, as `emulate` would give it, but for a
    /// DriverEntry that fails cleanly when an allocation was made to fail:
    /// that is the answer the sweep wants (0).
    #[must_use]
    pub fn exit_code(&self) -> ExitCode {
        match &self.result {
            RunResult::Judged { verdict, .. }
                if self.fail_allocation > 0
                    && verdict.outcome() == Outcome::EntryFailed
                    && verdict.exit_code() == ExitCode::LoadProblem =>
            {
                ExitCode::Clean
            }
            RunResult::Judged { verdict, .. } => verdict.exit_code(),
            RunResult::CannotJudge { .. } => ExitCode::CannotJudge,
        }
    }

    /// Whether the run violated: a bug check, or allocations outstanding at
    /// unload.
    #[must_use]
    pub fn violated(&self) -> bool {
        self.exit_code() == ExitCode::Violation
    }

    /// The verdict, if the run was judged.
    #[must_use]
    pub fn verdict(&self) -> Option<&Verdict> {
        match &self.result {
            RunResult::Judged { verdict, .. } => Some(verdict),
            RunResult::CannotJudge { .. } => None,
        }
    }
}

/// The sweep's last line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The driver's file name.
    pub driver: String,
    /// The engine.
    pub engine: Engine,
    /// Allocations the driver makes when none fails.
    pub allocations: u64,
    /// Runs that fail an allocation the sweep meant to make: the
    /// allocations, at most [`MAX_SWEEP`].
    pub planned: u32,
    /// Runs made, the baseline included.
    pub runs: u32,
    /// Runs that violated.
    pub violated: u32,
    /// Runs that cannot be judged.
    pub cannot_judge: u32,
    /// Runs where the driver could not be loaded or unloaded (exit 4).
    pub load_problems: u32,
    /// Runs that ended with the driver still loaded (exit 5).
    pub still_loaded: u32,
    /// Planned runs `--timeout` left no time for.
    pub not_reached: u32,
    /// The first run that cannot be judged, and why.
    pub first_cannot_judge: Option<(u32, String)>,
    /// The cap, `--timeout`, ... in words.
    pub notes: Vec<String>,
}

impl Summary {
    /// The sweep's exit code: 3 if any run violated; else 2 if any run
    /// cannot be judged or was not reached (it might have violated); else 5
    /// if any run left the driver loaded; else 4 if any run could not load
    /// or unload it; else 0. Never better than the baseline run's.
    #[must_use]
    pub const fn exit_code(&self) -> ExitCode {
        if self.violated > 0 {
            ExitCode::Violation
        } else if self.cannot_judge > 0 || self.not_reached > 0 {
            ExitCode::CannotJudge
        } else if self.still_loaded > 0 {
            ExitCode::StillLoaded
        } else if self.load_problems > 0 {
            ExitCode::LoadProblem
        } else {
            ExitCode::Clean
        }
    }

    /// The one line on stderr when the sweep cannot be judged.
    #[must_use]
    pub fn cannot_judge_line(&self) -> String {
        let mut parts = Vec::new();
        if let Some((fail, why)) = &self.first_cannot_judge {
            parts.push(format!(
                "{} of {} runs cannot be judged (the first, {}: {why})",
                self.cannot_judge,
                self.runs,
                run_name(*fail)
            ));
        }
        if self.not_reached > 0 {
            parts.push(format!(
                "{} of {} planned runs not reached before --timeout",
                self.not_reached, self.planned
            ));
        }
        format!("{}: --fail-each: {}", self.driver, parts.join("; "))
    }

    /// The summary as the table's last lines.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n{} of {} runs violated; {} could not load or unload the driver; {} cannot be judged; {} not reached",
            self.violated, self.runs, self.load_problems, self.cannot_judge, self.not_reached
        );
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }

    fn count(&mut self, run: &SweepRun) {
        self.runs += 1;
        match run.exit_code() {
            ExitCode::Violation => self.violated += 1,
            ExitCode::LoadProblem => self.load_problems += 1,
            ExitCode::StillLoaded => self.still_loaded += 1,
            ExitCode::Clean => {}
            ExitCode::CannotJudge | ExitCode::LoadRefused | ExitCode::Unexpected => {
                self.cannot_judge += 1;
                if self.first_cannot_judge.is_none()
                    && let RunResult::CannotJudge { why } = &run.result
                {
                    self.first_cannot_judge = Some((run.fail_allocation, why.clone()));
                }
            }
        }
    }
}

fn run_name(fail: u32) -> String {
    if fail == 0 {
        "the baseline run".to_owned()
    } else {
        format!("the run failing allocation {fail}")
    }
}

/// The sweep in progress: the baseline has run; each `next()` makes the
/// next run.
pub struct Sweep {
    request: Request,
    image: PeImage,
    arch: Arch,
    prepared: Option<Arc<harness_ntemu::machine::Driver>>,
    deadline: Instant,
    next_fail: u32,
    stopped: bool,
    summary: Summary,
}

impl Sweep {
    /// Checks the driver and makes the baseline run (nothing failed).
    ///
    /// # Errors
    /// Bad input, an engine that cannot run, or a baseline run that cannot
    /// be judged (as plain `emulate` would say).
    pub fn start(request: &Request) -> Result<(Self, SweepRun), EmulateError> {
        let deadline = Instant::now() + request.options.timeout;
        emulate::check_flags(request)?;
        let (image, arch) = emulate::load_checks(&request.driver)?;
        if request.engine == EngineKind::Wine {
            return Err(InputError::Unsupported(
                "--fail-each needs the native or speakeasy engine; Wine runs the driver as it is"
                    .into(),
            )
            .into());
        }
        let prepared = match request.engine {
            EngineKind::Native => Some(crate::native::prepare(&request.driver, &image)?),
            _ => None,
        };
        let mut sweep = Self {
            request: request.clone(),
            image,
            arch,
            prepared,
            deadline,
            next_fail: 1,
            stopped: false,
            summary: Summary {
                driver: harness_core::file_name(&request.driver),
                engine: request.engine.engine(),
                allocations: 0,
                planned: 0,
                runs: 0,
                violated: 0,
                cannot_judge: 0,
                load_problems: 0,
                still_loaded: 0,
                not_reached: 0,
                first_cannot_judge: None,
                notes: Vec::new(),
            },
        };
        let (verdict, events) = sweep.run(0, request.options.timeout)?;
        let allocations = u64::try_from(allocation_calls(&events).count()).unwrap_or(u64::MAX);
        sweep.summary.allocations = allocations;
        sweep.summary.planned = u32::try_from(allocations)
            .unwrap_or(u32::MAX)
            .min(MAX_SWEEP);
        if allocations > u64::from(MAX_SWEEP) {
            sweep.summary.notes.push(format!(
                "the driver makes {allocations} allocations; the sweep fails only the first {MAX_SWEEP} (its cap)"
            ));
        }
        let baseline = SweepRun {
            fail_allocation: 0,
            caller: None,
            result: judged(verdict),
        };
        sweep.summary.count(&baseline);
        Ok((sweep, baseline))
    }

    /// The counts so far (the baseline's allocations, for the header).
    #[must_use]
    pub const fn summary_so_far(&self) -> &Summary {
        &self.summary
    }

    /// The summary; the runs not made count as not reached.
    #[must_use]
    pub fn summary(mut self) -> Summary {
        let unmade = (self.summary.planned + 1).saturating_sub(self.next_fail);
        if unmade > 0 {
            self.summary.not_reached = unmade;
            self.summary.notes.push(format!(
                "--timeout of {} s ran out: runs failing allocations {} to {} were not made",
                self.request.options.timeout.as_secs(),
                self.next_fail,
                self.summary.planned
            ));
        }
        self.summary
    }

    /// One run failing allocation `fail` (0: none) within `budget`.
    fn run(&self, fail: u32, budget: Duration) -> Result<(Verdict, Vec<Event>), EmulateError> {
        let mut request = self.request.clone();
        request.options.fail_allocation = fail;
        request.options.timeout = budget;
        let events = match &self.prepared {
            Some(driver) => crate::native::run(driver, &emulate::native_options(&request)?)?,
            None => crate::speakeasy::run(&request.driver, &request.options)?,
        };
        let context = Context {
            driver: harness_core::file_name(&request.driver),
            engine: request.engine.engine(),
            symbols: self.symbols(&events),
            arch: self.arch,
            pool_hit_tag: request.pool_hit_tag,
            verifier_flags: request.options.verifier_flags,
        };
        Ok((tracker::judge(&events, context)?, events))
    }

    fn symbols(&self, events: &[Event]) -> harness_core::symbols::Symbolizer {
        self.prepared.as_ref().map_or_else(
            || emulate::loaded_symbols(&self.request.driver, &self.image, events),
            |prepared| prepared.symbols.clone(),
        )
    }
}

impl Iterator for Sweep {
    type Item = SweepRun;

    fn next(&mut self) -> Option<SweepRun> {
        if self.stopped || self.next_fail > self.summary.planned {
            return None;
        }
        let budget = self.deadline.saturating_duration_since(Instant::now());
        if budget.is_zero() {
            self.stopped = true;
            return None;
        }
        let fail = self.next_fail;
        self.next_fail += 1;
        let run = match self.run(fail, budget) {
            // A routine stopped by the clock was stopped by the sweep's
            // deadline, not by its own hang (a hang meets the instruction
            // budget): the run was cut short, so it cannot be judged.
            Ok((verdict, _)) if matches!(verdict.limit, Some(Limit::Time { .. })) => {
                self.stopped = true;
                SweepRun {
                    fail_allocation: fail,
                    caller: None,
                    result: RunResult::CannotJudge {
                        why: format!(
                            "--timeout of {} s ran out during it",
                            self.request.options.timeout.as_secs()
                        ),
                    },
                }
            }
            Ok((verdict, events)) => {
                let caller = allocation_calls(&events)
                    .find_map(|(caller, injected)| injected.then_some(caller))
                    .map(|caller| self.symbols(&events).name(caller));
                SweepRun {
                    fail_allocation: fail,
                    caller,
                    result: judged(verdict),
                }
            }
            Err(error) => {
                if Instant::now() >= self.deadline {
                    self.stopped = true;
                }
                SweepRun {
                    fail_allocation: fail,
                    caller: None,
                    result: RunResult::CannotJudge {
                        why: harness_core::error::one_line(&error),
                    },
                }
            }
        };
        self.summary.count(&run);
        Some(run)
    }
}

/// A verdict trimmed to what a sweep keeps of each run.
fn judged(mut verdict: Verdict) -> RunResult {
    let leak_count = verdict.leaks.len();
    let mut trimmed = Vec::new();
    if keep(&mut verdict.leaks, MAX_RUN_LEAKS) {
        trimmed.push(format!("{MAX_RUN_LEAKS} of the run's {leak_count} leaks"));
    }
    let lines = verdict.debug_output.len();
    if keep(&mut verdict.debug_output, MAX_RUN_DEBUG_LINES) {
        trimmed.push(format!(
            "{MAX_RUN_DEBUG_LINES} of the run's {lines} debug output lines"
        ));
    }
    let hits = verdict.pool_hits.len();
    if keep(&mut verdict.pool_hits, MAX_RUN_DEBUG_LINES) {
        trimmed.push(format!(
            "{MAX_RUN_DEBUG_LINES} of the run's {hits} pool hits"
        ));
    }
    let notes = verdict.notes.len();
    if keep(&mut verdict.notes, MAX_RUN_DEBUG_LINES) {
        trimmed.push(format!("{MAX_RUN_DEBUG_LINES} of the run's {notes} notes"));
    }
    if !trimmed.is_empty() {
        verdict.notes.push(format!(
            "the sweep keeps the first {}",
            trimmed.join(", the first ")
        ));
    }
    RunResult::Judged {
        verdict: Box::new(verdict),
        leak_count,
    }
}

/// Keeps the first `most` items; whether any were dropped.
fn keep<T>(items: &mut Vec<T>, most: usize) -> bool {
    let over = items.len() > most;
    items.truncate(most);
    over
}

/// The driver's allocation calls: (call site, failed on purpose).
pub(crate) fn allocation_calls(events: &[Event]) -> impl Iterator<Item = (u64, bool)> + '_ {
    events.iter().filter_map(|event| match event {
        Event::PoolCall {
            routine,
            caller,
            injected_failure,
            ..
        } if routine.allocates() => Some((*caller, *injected_failure)),
        _ => None,
    })
}

/// The table's first lines, after the baseline run.
#[must_use]
pub fn render_header(summary: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {} pool allocation{} when none fails; each made to fail in turn ({} engine)\n",
        summary.driver,
        summary.allocations,
        if summary.allocations == 1 { "" } else { "s" },
        summary.engine
    );
    let _ = writeln!(
        out,
        "{:<5} {:<36} {:<12} verdict",
        "fail", "call site", "DriverEntry"
    );
    out
}

/// One run as a row of the table.
#[must_use]
pub fn render_run(run: &SweepRun) -> String {
    let fail = if run.fail_allocation == 0 {
        "none".to_owned()
    } else {
        run.fail_allocation.to_string()
    };
    let caller = match (&run.caller, run.fail_allocation) {
        (Some(caller), _) => caller.clone(),
        (None, 0) => "(baseline: nothing failed)".to_owned(),
        (None, _) if matches!(run.result, RunResult::CannotJudge { .. }) => "-".to_owned(),
        (None, _) => "(not reached: the run took another path)".to_owned(),
    };
    let (status, what) = match &run.result {
        RunResult::Judged {
            verdict,
            leak_count,
        } => (
            verdict
                .entry_status
                .map_or_else(|| "-".to_owned(), |status| format!("0x{status:08X}")),
            words(verdict, *leak_count),
        ),
        RunResult::CannotJudge { why } => ("-".to_owned(), format!("CANNOT JUDGE: {why}")),
    };
    format!("{fail:<5} {caller:<36} {status:<12} {what}\n")
}

/// A judged run in the words kd, `sc` and `!verifier` use.
fn words(verdict: &Verdict, leak_count: usize) -> String {
    let leaks = || {
        let mut shown = verdict
            .leaks
            .iter()
            .map(|leak| format!("'{}' 0x{:x} from {}", leak.tag, leak.bytes, leak.caller))
            .collect::<Vec<_>>()
            .join(", ");
        if leak_count > verdict.leaks.len() {
            let _ = write!(shown, " and {} more", leak_count - verdict.leaks.len());
        }
        shown
    };
    let limit = verdict
        .limit
        .map_or_else(String::new, |limit| format!(" ({limit})"));
    match (verdict.outcome(), &verdict.bugcheck) {
        (_, Some(bugcheck)) if !verdict.leaks.is_empty() => format!(
            "VIOLATION: bug check 0x{:X}/0x{:x} ({}), {leak_count} leaked: {}",
            bugcheck.code,
            bugcheck.args[0],
            bugcheck.name,
            leaks()
        ),
        (_, Some(bugcheck)) => format!(
            "VIOLATION: bug check 0x{:X} ({})",
            bugcheck.code, bugcheck.name
        ),
        (_, None) if verdict.unloaded() && !verdict.leaks.is_empty() => {
            format!("VIOLATION: {leak_count} allocations outstanding at unload: {}", leaks())
        }
        (Outcome::EntryFailed, None) => "DriverEntry failed, nothing leaked: OK".to_owned(),
        (Outcome::Unloaded, None) => "loaded and unloaded, nothing leaked: OK".to_owned(),
        (Outcome::CannotUnload, None) => {
            "LOAD PROBLEM: no unload routine, so sc stop fails (error 1052, ERROR_INVALID_SERVICE_CONTROL)".to_owned()
        }
        (Outcome::EntryDidNotReturn, None) => {
            format!("LOAD PROBLEM: DriverEntry did not return{limit}")
        }
        (Outcome::UnloadDidNotReturn, None) => {
            format!("LOAD PROBLEM: the unload routine did not return{limit}")
        }
        (Outcome::StillLoaded | Outcome::BugCheck, None) => {
            "STILL LOADED: nothing judged at unload".to_owned()
        }
    }
}
