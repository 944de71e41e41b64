//! `harness emulate --fail-each`: the allocation-failure sweep, which Driver
//! Verifier's random low-resources simulation cannot do.
//!
//! One run counts the driver's allocations N; then N runs fail the first,
//! the second, ... the Nth. A failed DriverEntry is what a driver should
//! answer; a leak or a crash on an error path is a violation.

use std::fmt::Write;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::emulate::{self, EmulateError, EngineKind, Request};
use harness_core::arch::Arch;
use harness_core::error::InputError;
use harness_core::events::Event;
use harness_core::pe::PeImage;
use harness_core::tracker::{self, Context};
use harness_core::verdict::{Engine, ExitCode, Outcome, Verdict};

/// One run of the sweep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepRun {
    /// Which allocation failed (1-based).
    pub fail_allocation: u32,
    /// Its call site (`Sample!DriverEntry+0x21`).
    pub caller: String,
    /// What the verifier said of the run.
    pub verdict: Verdict,
}

/// The sweep's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sweep {
    /// The driver's file name.
    pub driver: String,
    /// The engine.
    pub engine: Engine,
    /// Allocations the driver makes when none fails.
    pub allocations: u32,
    /// One run per allocation.
    pub runs: Vec<SweepRun>,
}

/// The most allocations a sweep fails in turn.
pub(crate) const MAX_SWEEP: u32 = 10_000;

impl Sweep {
    /// Whether a run violated: a bug check, or allocations outstanding at
    /// unload.
    #[must_use]
    pub fn violated(run: &SweepRun) -> bool {
        run.verdict.exit_code() == ExitCode::Violation
    }

    /// 3 if any run violated, else 0.
    #[must_use]
    pub fn exit_code(&self) -> ExitCode {
        if self.runs.iter().any(Self::violated) {
            ExitCode::Violation
        } else {
            ExitCode::Clean
        }
    }

    /// The sweep as a table.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}: {} pool allocation{} when none fails; each made to fail in turn ({} engine)\n",
            self.driver,
            self.allocations,
            if self.allocations == 1 { "" } else { "s" },
            self.engine
        );
        let _ = writeln!(
            out,
            "{:<5} {:<36} {:<12} verdict",
            "fail", "call site", "DriverEntry"
        );
        for run in &self.runs {
            let verdict = &run.verdict;
            let status = verdict
                .entry_status
                .map_or_else(|| "-".to_owned(), |status| format!("0x{status:08X}"));
            let what = match (verdict.outcome(), &verdict.bugcheck) {
                (_, Some(bugcheck)) if !verdict.leaks.is_empty() => format!(
                    "VIOLATION: bug check 0x{:X}/0x{:x}, leaked {}",
                    bugcheck.code,
                    bugcheck.args[0],
                    verdict
                        .leaks
                        .iter()
                        .map(|leak| format!(
                            "'{}' 0x{:x} from {}",
                            leak.tag, leak.bytes, leak.caller
                        ))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                (_, Some(bugcheck)) => format!(
                    "VIOLATION: bug check 0x{:X} ({})",
                    bugcheck.code, bugcheck.name
                ),
                (Outcome::EntryFailed, None) => "DriverEntry failed, nothing leaked: OK".to_owned(),
                (Outcome::Unloaded, None) => "loaded and unloaded, nothing leaked: OK".to_owned(),
                (outcome, None) => format!("{outcome:?}"),
            };
            let _ = writeln!(
                out,
                "{:<5} {:<36} {status:<12} {what}",
                run.fail_allocation, run.caller
            );
        }
        let violations = self.runs.iter().filter(|run| Self::violated(run)).count();
        let _ = writeln!(out, "\n{violations} of {} runs violated", self.runs.len());
        out
    }
}

/// Runs the sweep.
///
/// # Errors
/// Bad input, an engine that cannot run, or a run that cannot be judged.
pub fn sweep(request: &Request) -> Result<Sweep, EmulateError> {
    emulate::check_flags(request)?;
    let (image, arch) = emulate::load_checks(&request.driver)?;
    let engine_kind = request.engine;
    if engine_kind == EngineKind::Wine {
        return Err(InputError::Unsupported(
            "--fail-each needs the native or speakeasy engine; Wine runs the driver as it is"
                .into(),
        )
        .into());
    }
    let prepared = match engine_kind {
        EngineKind::Native => Some(crate::native::prepare(&request.driver, &image)?),
        _ => None,
    };
    let run = |fail: u32| -> Result<(Verdict, Vec<Event>), EmulateError> {
        let mut request = request.clone();
        request.options.fail_allocation = fail;
        let events = match &prepared {
            Some(driver) => crate::native::run(driver, &emulate::native_options(&request)?)?,
            None => crate::speakeasy::run(&request.driver, &request.options)?,
        };
        let verdict = judge(&request, &image, arch, &events, prepared.as_ref())?;
        Ok((verdict, events))
    };
    let (_, events) = run(0)?;
    let allocations = allocation_calls(&events).count();
    let allocations = u32::try_from(allocations)
        .unwrap_or(u32::MAX)
        .min(MAX_SWEEP);
    let mut runs = Vec::new();
    for fail in 1..=allocations {
        let (verdict, events) = run(fail)?;
        let caller = allocation_calls(&events)
            .find_map(|(caller, injected)| injected.then_some(caller))
            .map_or_else(
                || "(not reached: the run took another path)".to_owned(),
                |caller| name(&request.driver, &image, &events, caller, prepared.as_ref()),
            );
        runs.push(SweepRun {
            fail_allocation: fail,
            caller,
            verdict,
        });
    }
    Ok(Sweep {
        driver: harness_core::file_name(&request.driver),
        engine: engine_kind.engine(),
        allocations,
        runs,
    })
}

/// The driver's allocation calls: (call site, failed on purpose).
fn allocation_calls(events: &[Event]) -> impl Iterator<Item = (u64, bool)> + '_ {
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

fn symbols(
    driver: &std::path::Path,
    image: &PeImage,
    events: &[Event],
    prepared: Option<&Arc<harness_ntemu::machine::Driver>>,
) -> harness_core::symbols::Symbolizer {
    prepared.map_or_else(
        || crate::emulate::loaded_symbols(driver, image, events),
        |prepared| prepared.symbols.clone(),
    )
}

fn name(
    driver: &std::path::Path,
    image: &PeImage,
    events: &[Event],
    caller: u64,
    prepared: Option<&Arc<harness_ntemu::machine::Driver>>,
) -> String {
    symbols(driver, image, events, prepared).name(caller)
}

fn judge(
    request: &Request,
    image: &PeImage,
    arch: Arch,
    events: &[Event],
    prepared: Option<&Arc<harness_ntemu::machine::Driver>>,
) -> Result<Verdict, EmulateError> {
    let context = Context {
        driver: harness_core::file_name(&request.driver),
        engine: request.engine.engine(),
        symbols: symbols(&request.driver, image, events, prepared),
        arch,
        pool_hit_tag: request.pool_hit_tag,
        verifier_flags: request.options.verifier_flags,
    };
    Ok(tracker::judge(events, context)?)
}
