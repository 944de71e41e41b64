//! `harness demo`: the README's main job.
//!
//! Builds the portable driver for x64 and x86, clean and leaky, emulates all
//! four under pool tracking and shows them side by side; then every fault of
//! docs/lessons/ under its lesson's verifier flags, both architectures.

use std::fmt::Write;

use harness_build::driver_build::{self, BuildError, Fault};
use harness_core::arch::Arch;
use harness_core::nt::PoolType;
use harness_core::render;
use harness_core::verdict::{ExitCode, Verdict};
use harness_core::verifier::VerifierFlags;
use harness_engines::emulate::{self, EmulateError, EngineKind, Request};
use harness_engines::engine::RunOptions;
use harness_engines::sweep::{Sweep, SweepRun};

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A build failed.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// An emulation could not run.
    #[error(transparent)]
    Emulate(#[from] EmulateError),
}

/// One emulated build.
pub struct Row {
    /// The build's architecture.
    pub arch: Arch,
    /// Built with `leak-on-unload`.
    pub leak: bool,
    /// What the emulated verifier said.
    pub verdict: Verdict,
}

impl Row {
    /// Whether this build behaved as the walkthrough says it must: the clean
    /// driver unloads with nothing outstanding; the leaky one bug-checks
    /// 0xC4/0x62 with one `abcd` PagedPool allocation of the registry path's
    /// length, made in DriverEntry.
    #[must_use]
    pub fn as_expected(&self) -> bool {
        let verdict = &self.verdict;
        if !self.leak {
            return verdict.exit_code() == ExitCode::Clean && verdict.leaks.is_empty();
        }
        let path_bytes = verdict
            .debug_output
            .iter()
            .find_map(|line| line.strip_prefix("original registry path: "))
            .map(|path| path.encode_utf16().count() * 2);
        let bugcheck_ok = verdict.bugcheck.as_ref().is_some_and(|bugcheck| {
            bugcheck.code == 0xC4 && bugcheck.args[0] == 0x62 && bugcheck.args[3] == 1
        });
        let leak_ok = matches!(verdict.leaks.as_slice(), [leak]
            if leak.tag == "abcd"
                && leak.pool == PoolType::PagedPool
                && Some(usize::try_from(leak.bytes).unwrap_or(0)) == path_bytes
                && leak.caller.contains("DriverEntry"));
        verdict.exit_code() == ExitCode::Violation && bugcheck_ok && leak_ok
    }
}

/// A lesson: a fault, the verifier flags that catch it, and what Windows 7
/// SP1 then does (bug check code and Arg1, per the 0xC4 page).
pub struct Lesson {
    /// The fault feature.
    pub fault: Fault,
    /// `verifier /flags`.
    pub flags: VerifierFlags,
    /// Found by failing each allocation in turn (`--fail-each`).
    pub fail_each: bool,
    /// The bug check code, and the parameter (0-based) that tells the
    /// violation apart with its value.
    pub expected: (u32, usize, u64),
}

/// The lessons in docs/lessons/, in order.
pub const LESSONS: [Lesson; 6] = [
    Lesson {
        fault: Fault::LeakOnUnload,
        flags: VerifierFlags(0x8),
        fail_each: false,
        expected: (0xC4, 0, 0x62),
    },
    Lesson {
        fault: Fault::DoubleFree,
        flags: VerifierFlags(0x8),
        fail_each: false,
        expected: (0xC4, 0, 0x13),
    },
    Lesson {
        fault: Fault::PagedAtDispatch,
        flags: VerifierFlags(0x2),
        fail_each: false,
        expected: (0xC4, 0, 0x01),
    },
    Lesson {
        fault: Fault::LeakOnError,
        flags: VerifierFlags(0x8),
        fail_each: true,
        expected: (0xC4, 0, 0x62),
    },
    // 0xC1's Arg4 0x24: bytes after the block's end changed.
    Lesson {
        fault: Fault::Overrun,
        flags: VerifierFlags(0x1),
        fail_each: false,
        expected: (0xC1, 3, 0x24),
    },
    // 0xD5's Arg2 0: a read.
    Lesson {
        fault: Fault::ReadAfterFree,
        flags: VerifierFlags(0x1),
        fail_each: false,
        expected: (0xD5, 1, 0),
    },
];

/// One fault build under its lesson's flags.
pub struct FaultRow {
    /// The build's architecture.
    pub arch: Arch,
    /// The lesson.
    pub lesson: &'static Lesson,
    /// The verdict (with `--fail-each`, the first run that violated).
    pub verdict: Option<Verdict>,
}

impl FaultRow {
    /// Whether the build bug-checked as its lesson says.
    #[must_use]
    pub fn as_expected(&self) -> bool {
        self.verdict.as_ref().is_some_and(|verdict| {
            verdict.exit_code() == ExitCode::Violation
                && verdict.bugcheck.as_ref().is_some_and(|bugcheck| {
                    let (code, index, value) = self.lesson.expected;
                    bugcheck.code == code && bugcheck.args.get(index) == Some(&value)
                })
        })
    }
}

/// Builds every fault and judges it under its lesson's flags.
///
/// # Errors
/// A build or an emulation could not run.
pub fn run_faults() -> Result<Vec<FaultRow>, DemoError> {
    let mut rows = Vec::new();
    for lesson in &LESSONS {
        for arch in Arch::ALL {
            eprintln!(
                "harness: building Sample.sys ({arch}, {})",
                lesson.fault.feature()
            );
            let built = driver_build::build_fault(arch, Some(lesson.fault))?;
            let request = Request {
                driver: built.sys,
                engine: EngineKind::Native,
                pool_hit_tag: None,
                options: RunOptions {
                    verifier_flags: lesson.flags,
                    ..RunOptions::default()
                },
            };
            let verdict = if lesson.fail_each {
                // The first run that violated (the baseline, then each
                // failed allocation), streamed as `--fail-each` runs them.
                let (runs, baseline) = Sweep::start(&request)?;
                std::iter::once(baseline)
                    .chain(runs)
                    .find(SweepRun::violated)
                    .and_then(|run| run.verdict().cloned())
            } else {
                Some(emulate::emulate(&request)?)
            };
            rows.push(FaultRow {
                arch,
                lesson,
                verdict,
            });
        }
    }
    Ok(rows)
}

/// The faults' table.
#[must_use]
pub fn render_faults(rows: &[FaultRow]) -> String {
    let mut out = String::from(
        "
Every fault under its lesson's verifier flags (docs/lessons/)

",
    );
    let _ = writeln!(
        out,
        "{:<6} {:<18} {:<6} {:<10} {:<16} {:<5} expected",
        "arch", "fault", "flags", "how", "bug check", "exit"
    );
    for row in rows {
        let (bugcheck, exit) = row.verdict.as_ref().map_or_else(
            || ("none".to_owned(), "-".to_owned()),
            |verdict| {
                (
                    verdict.bugcheck.as_ref().map_or_else(
                        || "none".into(),
                        |bugcheck| {
                            let index = row.lesson.expected.1;
                            format!(
                                "0x{:X} Arg{}=0x{:x}",
                                bugcheck.code,
                                index + 1,
                                bugcheck.args.get(index).copied().unwrap_or(0)
                            )
                        },
                    ),
                    (verdict.exit_code() as u8).to_string(),
                )
            },
        );
        let _ = writeln!(
            out,
            "{:<6} {:<18} {:<6} {:<10} {:<16} {:<5} {}",
            row.arch.to_string(),
            row.lesson.fault.feature(),
            row.lesson.flags.to_string(),
            if row.lesson.fail_each {
                "fail-each"
            } else {
                "run"
            },
            bugcheck,
            exit,
            if row.as_expected() { "yes" } else { "NO" }
        );
    }
    out
}

/// Builds and emulates the four variants.
///
/// # Errors
/// A build or an emulation could not run.
pub fn run() -> Result<Vec<Row>, DemoError> {
    let mut rows = Vec::new();
    for arch in Arch::ALL {
        for leak in [false, true] {
            eprintln!(
                "harness: building Sample.sys ({arch}, {})",
                if leak { "leak-on-unload" } else { "clean" }
            );
            let built = driver_build::build(arch, leak)?;
            let verdict = emulate::emulate(&Request {
                driver: built.sys,
                engine: EngineKind::Native,
                pool_hit_tag: None,
                options: RunOptions::default(),
            })?;
            rows.push(Row {
                arch,
                leak,
                verdict,
            });
        }
    }
    Ok(rows)
}

/// The side-by-side table and the leaky x64 build's full report.
#[must_use]
pub fn render(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Sample.sys under emulated Driver Verifier pool tracking (native engine)\n"
    );
    let _ = writeln!(
        out,
        "{:<6} {:<16} {:<10} {:<11} {:<5} {:<9} outstanding at unload",
        "arch", "build", "entry", "bug check", "exit", "expected"
    );
    for row in rows {
        let verdict = &row.verdict;
        let entry = verdict
            .entry_status
            .map_or_else(|| "-".into(), |status| format!("0x{status:08x}"));
        let bugcheck = verdict.bugcheck.as_ref().map_or_else(
            || "none".into(),
            |bugcheck| format!("0x{:X}/0x{:x}", bugcheck.code, bugcheck.args[0]),
        );
        let leaks = if verdict.leaks.is_empty() {
            "none".to_owned()
        } else {
            verdict
                .leaks
                .iter()
                .map(|leak| {
                    format!(
                        "'{}' {} 0x{:x} at {}",
                        leak.tag,
                        leak.pool.name(),
                        leak.bytes,
                        leak.caller
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        let _ = writeln!(
            out,
            "{:<6} {:<16} {:<10} {:<11} {:<5} {:<9} {leaks}",
            row.arch.to_string(),
            if row.leak { "leak-on-unload" } else { "clean" },
            entry,
            bugcheck,
            verdict.exit_code() as u8,
            if row.as_expected() { "yes" } else { "NO" }
        );
    }
    if let Some(row) = rows.iter().find(|row| row.leak && row.arch == Arch::X64) {
        let _ = writeln!(out, "\n--- the leaky x64 build in detail ---\n");
        out.push_str(&render::report(&row.verdict));
    }
    out
}
