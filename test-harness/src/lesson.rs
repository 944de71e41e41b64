//! `harness lesson NAME`: a lesson of docs/lessons/ as a guided kd session.
//!
//! It builds the fault, sets the lesson's verifier flags and opens the kd
//! session; any kd command is allowed, and a step is done when a command's
//! output shows what the step looks for. `hint` prints the step's command.
//! Lines come from stdin, so a lesson runs as a script too.

use std::io::BufRead;
use std::time::Duration;

use harness_build::driver_build::{self, Fault};
use harness_core::arch::Arch;
use harness_core::console::emit;
use harness_core::verdict::ExitCode;
use harness_core::verifier::VerifierFlags;

use crate::error::CommandError;
use crate::kd::{self, KdOptions};

/// One step: what to do, the command that does it, what its output shows.
pub struct Step {
    /// What the trainee is asked to do.
    pub goal: &'static str,
    /// The command `hint` gives (`{block}`: the copy's address).
    pub hint: &'static str,
    /// Text the output of the command that reaches the goal contains.
    pub shows: &'static str,
}

/// A guided lesson.
pub struct Lesson {
    /// Its name (the fault feature) and docs/lessons/ page.
    pub fault: Fault,
    /// The page.
    pub page: &'static str,
    /// The verifier flags it runs under.
    pub flags: VerifierFlags,
    /// The low resources simulation's seed (flag 0x4).
    pub seed: u64,
    /// The steps, in order.
    pub steps: &'static [Step],
}

const fn step(goal: &'static str, hint: &'static str, shows: &'static str) -> Step {
    Step { goal, hint, shows }
}

/// Starting the driver until the machine stops with the bug check.
const fn start(code: &'static str) -> Step {
    step(
        "Load and unload the driver until the machine stops.",
        "g",
        code,
    )
}

/// The lessons, one per fault, in docs/lessons/'s order.
pub const LESSONS: [Lesson; 6] = [
    Lesson {
        fault: Fault::LeakOnUnload,
        page: "docs/lessons/01-leak-on-unload.md",
        flags: VerifierFlags(0x8),
        seed: 0,
        steps: &[
            start("Fatal System Error: 0x000000c4"),
            step(
                "Read the bug check: which violation is it?",
                "!analyze -v",
                "A driver has forgotten to free its pool allocations",
            ),
            step(
                "List what the driver left behind.",
                "!verifier 3 Sample.sys",
                "abcd",
            ),
        ],
    },
    Lesson {
        fault: Fault::DoubleFree,
        page: "docs/lessons/02-double-free.md",
        flags: VerifierFlags(0x8),
        seed: 0,
        steps: &[
            start("Fatal System Error: 0x000000c4"),
            step("Read the bug check.", "!analyze -v", "already freed"),
            step(
                "Find the line that freed the block the second time.",
                "kb",
                "Sample!SampleUnload",
            ),
        ],
    },
    Lesson {
        fault: Fault::PagedAtDispatch,
        page: "docs/lessons/03-paged-at-dispatch.md",
        flags: VerifierFlags(0x2),
        seed: 0,
        steps: &[
            start("Fatal System Error: 0x000000c4"),
            step(
                "Read the bug check: at which IRQL was the allocation made?",
                "!analyze -v",
                "allocate paged memory with IRQL > APC_LEVEL",
            ),
            step("Find the allocation's line.", "kb", "Sample!DriverEntry"),
        ],
    },
    Lesson {
        fault: Fault::LeakOnError,
        page: "docs/lessons/04-leak-on-error.md",
        // Seed 36 fails the second allocation alone.
        flags: VerifierFlags(0xc),
        seed: 36,
        steps: &[
            start("Fatal System Error: 0x000000c4"),
            step(
                "Read the bug check.",
                "!analyze -v",
                "A driver has forgotten to free its pool allocations",
            ),
            step(
                "See which allocation failed and what stayed outstanding.",
                "!verifier 3 Sample.sys",
                "Pool Allocations Failed                0x1",
            ),
        ],
    },
    Lesson {
        fault: Fault::Overrun,
        page: "docs/lessons/05-overrun.md",
        flags: VerifierFlags(0x1),
        seed: 0,
        steps: &[
            start("Fatal System Error: 0x000000c1"),
            step(
                "Read the bug check: where were the bytes changed?",
                "!analyze -v",
                "24, 0x24: bytes after the end",
            ),
            step(
                "Look at the block the driver freed (Arg1).",
                "!pool {block}",
                "region is Special pool",
            ),
        ],
    },
    Lesson {
        fault: Fault::ReadAfterFree,
        page: "docs/lessons/06-read-after-free.md",
        flags: VerifierFlags(0x1),
        seed: 0,
        steps: &[
            start("Fatal System Error: 0x000000d5"),
            step(
                "Read the bug check.",
                "!analyze -v",
                "DRIVER_PAGE_FAULT_IN_FREED_SPECIAL_POOL",
            ),
            step(
                "Find the routine that read the freed copy.",
                "kb",
                "Sample!SampleUnload",
            ),
        ],
    },
];

/// The lesson for a fault's name.
#[must_use]
pub fn find(name: &str) -> Option<&'static Lesson> {
    LESSONS.iter().find(|lesson| lesson.fault.feature() == name)
}

/// The copy's address under special pool (the first block's page end).
const fn block(arch: Arch) -> &'static str {
    match arch {
        Arch::X86 => "9c000f90",
        Arch::X64 => "fffff8a0`10000f90",
    }
}

/// Runs a lesson on `arch`: exit 0 when every step was reached, 1 when the
/// input ended first.
///
/// # Errors
/// The build or the session could not run, or output failed.
pub fn run(lesson: &Lesson, arch: Arch) -> Result<ExitCode, CommandError> {
    let driver = driver_build::build_fault(arch, Some(lesson.fault))?.sys;
    let mut session = kd::open(&KdOptions {
        driver,
        script: None,
        os_version: None,
        verifier_flags: lesson.flags,
        seed: lesson.seed,
        max_instructions: 5_000_000,
        timeout: Duration::from_mins(1),
    })?;
    let hint = |step: &Step| step.hint.replace("{block}", block(arch));
    emit(&format!(
        "lesson {} ({arch}), verifier flags {} ({}); read {}\nany kd command works; `hint` shows the next one, q quits\n\nstep 1: {}\n",
        lesson.fault.feature(),
        lesson.flags,
        lesson.flags.names(),
        lesson.page,
        lesson.steps[0].goal
    ))?;
    let mut current = 0;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let command = line.trim();
        if command.is_empty() {
            continue;
        }
        emit(&format!("kd> {command}\n"))?;
        if command == "hint" {
            emit(&format!("hint: {}\n", hint(&lesson.steps[current])))?;
            continue;
        }
        let (output, quit) = session.execute(command);
        emit(&output)?;
        if quit {
            break;
        }
        if output.contains(lesson.steps[current].shows) {
            current += 1;
            let Some(next) = lesson.steps.get(current) else {
                emit(&format!("\nstep {current} done: lesson complete\n"))?;
                return Ok(ExitCode::Clean);
            };
            emit(&format!(
                "\nstep {} done. step {}: {}\n",
                current,
                current + 1,
                next.goal
            ))?;
        }
    }
    emit(&format!(
        "lesson not finished: step {} of {} open\n",
        current + 1,
        lesson.steps.len()
    ))?;
    Ok(ExitCode::Unexpected)
}
