//! `harness emulate --fail-each`: every run counts (the baseline too),
//! `--timeout` bounds the whole sweep, and the runs stream out as JSON
//! lines with memory bounded.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common;
use harness_core::arch::Arch;
use harness_core::verdict::{ExitCode, Outcome};
use harness_engines::sweep::{MAX_RUN_LEAKS, MAX_SWEEP, Record, RunResult, Summary, SweepRun};

/// The runs and the summary of a `--fail-each --json` run, as the harness's
/// own types.
fn records(run: &common::Run) -> (Vec<SweepRun>, Summary) {
    let mut runs = Vec::new();
    let mut summary = None;
    for line in run.stdout.lines() {
        let record: Record = serde_json::from_str(line).unwrap_or_else(|error| {
            panic!(
                "not a sweep record ({error}): {line}\nstderr: {}",
                run.stderr
            )
        });
        assert!(summary.is_none(), "a line after the summary: {line}");
        match record {
            Record::Run(one) => runs.push(one),
            Record::Summary(last) => summary = Some(last),
        }
    }
    (runs, summary.expect("a summary line"))
}

fn sweep(driver: &Path, extra: &[&str]) -> common::Run {
    let mut args = vec!["--fail-each", "--engine", "native"];
    args.extend_from_slice(extra);
    common::emulate_json(driver, &args)
}

fn sweep_driver(variant: &str, count: Option<u32>, dir: &Path) -> PathBuf {
    let out = dir.join(format!("{}_{count:?}.sys", variant.to_ascii_lowercase()));
    let mut build = common::CBuild::new("sweep.c", variant);
    if let Some(count) = count {
        build.defines.push(format!("ALLOC_COUNT={count}"));
    }
    common::compile_c(&build, Arch::X64, &out);
    out
}

#[test]
fn fail_each_finds_the_leak_on_the_second_allocations_error_path() {
    let dir = tempfile::tempdir().expect("dir");
    for arch in Arch::ALL {
        let leaky = common::c_driver_from("wdm_features.c", "ERROR_PATH_LEAK", arch, dir.path());
        let run = sweep(&leaky, &[]);
        run.expect(ExitCode::Violation);
        let (runs, summary) = records(&run);
        assert_eq!(summary.allocations, 2, "{arch}");
        assert_eq!((summary.runs, summary.violated), (3, 1));
        let [baseline, first, second] = runs.as_slice() else {
            panic!("the baseline and two runs: {runs:?}")
        };
        assert_eq!(baseline.fail_allocation, 0);
        assert_eq!(baseline.exit_code(), ExitCode::Clean);
        assert_eq!(
            first.verdict().map(harness_core::verdict::Verdict::outcome),
            Some(Outcome::EntryFailed)
        );
        assert!(!first.violated());
        assert_eq!(second.fail_allocation, 2);
        let caller = second.caller.as_deref().expect("reached");
        assert!(caller.contains("!DriverEntry+0x"), "{caller}");
        assert!(second.violated(), "{arch}: {second:?}");
        let verdict = second.verdict().expect("judged");
        assert_eq!(verdict.entry_status, Some(0xC000_009A));
        let [leak] = verdict.leaks.as_slice() else {
            panic!("one leak: {:?}", verdict.leaks)
        };
        assert_eq!((leak.tag.as_str(), leak.bytes), ("Fst1", 0x40));
        assert_ne!(leak.caller, caller, "leaked by the first allocation");

        let careful = common::c_driver_from("wdm_features.c", "ERROR_PATH_CLEAN", arch, dir.path());
        let run = sweep(&careful, &[]);
        run.expect(ExitCode::Clean);
        let (runs, _) = records(&run);
        assert!(runs.iter().all(|run| !run.violated()));
    }
}

/// The sweep is never better than its baseline run, and a run that does
/// not load or unload the driver counts (it used to be dropped: exit 0).
#[test]
fn every_run_counts_the_baseline_too() {
    let dir = tempfile::tempdir().expect("dir");
    // The leak-on-unload Sample.sys leaks with nothing failed: plain
    // `emulate` says 3, so must the sweep.
    let leaky = common::driver(Arch::X64, true);
    let run = sweep(&leaky.sys, &[]);
    run.expect(ExitCode::Violation);
    let (runs, _) = records(&run);
    assert!(runs[0].violated(), "{:?}", runs[0]);

    // No allocation at all: the baseline is the only run.
    let crash = common::c_driver("CRASH", Arch::X64, dir.path());
    sweep(&crash, &[]).expect(ExitCode::Violation);
    let hang = common::c_driver("LOOP", Arch::X64, dir.path());
    let run = sweep(&hang, &["--max-instructions", "100000"]);
    run.expect(ExitCode::LoadProblem);
    let (runs, summary) = records(&run);
    assert_eq!((runs.len(), summary.load_problems), (1, 1));

    // No unload routine: every run that loads cannot be unloaded (sc stop:
    // error 1052), as plain `emulate` says with 4.
    let no_unload = sweep_driver("NO_UNLOAD", None, dir.path());
    sweep(&no_unload, &[]).expect(ExitCode::LoadProblem);

    // Each failed allocation makes DriverEntry spin: 4, in kd's words.
    let spin = sweep_driver("SPIN_ON_FAILURE", None, dir.path());
    let run = sweep(&spin, &["--max-instructions", "100000"]);
    run.expect(ExitCode::LoadProblem);
    let (runs, summary) = records(&run);
    assert_eq!((summary.runs, summary.load_problems), (4, 3));
    assert!(runs[1..].iter().all(
        |run| run.verdict().map(harness_core::verdict::Verdict::outcome)
            == Some(Outcome::EntryDidNotReturn)
    ));
    let text = common::harness(&[
        "emulate",
        spin.to_str().expect("utf-8"),
        "--fail-each",
        "--max-instructions",
        "100000",
    ]);
    text.expect(ExitCode::LoadProblem);
    assert!(
        text.stdout
            .contains("DriverEntry did not return (stopped after 100000 instructions)"),
        "{}",
        text.stdout
    );
    assert!(
        !text.stdout.contains("EntryDidNotReturn") && !text.stdout.contains("CannotUnload"),
        "{}",
        text.stdout
    );
}

/// A run that cannot be judged (its error path needs a routine the engine
/// lacks) makes the sweep "cannot judge": exit 2 and one line naming it.
#[test]
fn a_run_that_cannot_be_judged_makes_the_sweep_cannot_judge() {
    let dir = tempfile::tempdir().expect("dir");
    let gap = sweep_driver("GAP_ON_FAILURE", None, dir.path());
    let run = sweep(&gap, &[]);
    run.cannot_judge("1 of 2 runs cannot be judged (the first, the run failing allocation 1:");
    let (runs, summary) = records(&run);
    assert_eq!(runs[0].exit_code(), ExitCode::Clean);
    assert!(
        matches!(&runs[1].result, RunResult::CannotJudge { why } if why.contains("FsRtlIsNameInExpression")),
        "{:?}",
        runs[1]
    );
    assert_eq!(summary.exit_code(), ExitCode::CannotJudge);
}

/// `--timeout` bounds the whole sweep: the runs it leaves unmade cannot be
/// judged (exit 2, one line naming them), and the cap of 10000 is said.
#[test]
fn timeout_bounds_the_whole_sweep_and_the_cap_is_said() {
    let dir = tempfile::tempdir().expect("dir");
    let many = sweep_driver("CLEAN_MANY", Some(MAX_SWEEP + 50), dir.path());
    let measured = common::harness_measured(
        &[
            OsStr::new("emulate"),
            many.as_os_str(),
            OsStr::new("--fail-each"),
            OsStr::new("--json"),
            OsStr::new("--timeout"),
            OsStr::new("5"),
            OsStr::new("--max-instructions"),
            OsStr::new("100000000"),
        ],
        None,
        &[],
        Duration::from_mins(1),
    );
    let run = &measured.run;
    run.cannot_judge("not reached before --timeout");
    assert!(
        measured.elapsed < Duration::from_secs(20),
        "{:?}",
        measured.elapsed
    );
    let (runs, summary) = records(run);
    assert_eq!(summary.allocations, u64::from(MAX_SWEEP + 50));
    assert_eq!(summary.planned, MAX_SWEEP);
    assert!(summary.not_reached > 0, "{summary:?}");
    assert_eq!(
        summary.runs as usize,
        runs.len(),
        "every run made is on a line"
    );
    assert!(
        summary
            .notes
            .iter()
            .any(|note| note.contains("fails only the first 10000")),
        "{:?}",
        summary.notes
    );
}

/// 400 error paths that each leak what came before: each run keeps its
/// leak count and its first leaks, one JSON line per run, so output and
/// memory grow linearly (1000 such paths were 135 MB of JSON in one
/// object and 360 MB of memory).
#[test]
fn leaking_error_paths_stream_in_bounded_memory() {
    const PATHS: u32 = 400;
    let dir = tempfile::tempdir().expect("dir");
    let leaky = sweep_driver("LEAK_ON_ERROR", Some(PATHS), dir.path());
    let measured = common::harness_measured(
        &[
            OsStr::new("emulate"),
            leaky.as_os_str(),
            OsStr::new("--fail-each"),
            OsStr::new("--json"),
            OsStr::new("--timeout"),
            OsStr::new("600"),
            OsStr::new("--pool-hit-tag"),
            OsStr::new("Leak"),
        ],
        None,
        &[],
        Duration::from_secs(620),
    );
    let run = &measured.run;
    run.expect(ExitCode::Violation);
    let longest = run.stdout.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 8 << 10, "a line of {longest} bytes");
    assert!(
        measured.peak_rss_kib < 150 * 1024,
        "{} KiB",
        measured.peak_rss_kib
    );
    let (runs, summary) = records(run);
    assert_eq!((summary.runs, summary.violated), (PATHS + 1, PATHS - 1));
    for run in &runs[1..] {
        let RunResult::Judged {
            verdict,
            leak_count,
        } = &run.result
        else {
            panic!("judged: {run:?}")
        };
        assert_eq!(*leak_count, run.fail_allocation as usize - 1);
        assert_eq!(verdict.leaks.len(), (*leak_count).min(MAX_RUN_LEAKS));
        // A break on every allocation: up to 400 per run, 16 kept.
        assert_eq!(
            verdict.pool_hits.len(),
            run.fail_allocation.min(16) as usize
        );
        if *leak_count > MAX_RUN_LEAKS {
            let note = format!("the sweep keeps the first 8 of the run's {leak_count} leaks");
            assert!(
                verdict.notes.iter().any(|kept| kept.starts_with(&note)),
                "{:?}",
                verdict.notes
            );
        }
    }
}

/// `--fail-allocation 5` on a driver that allocates once fails nothing:
/// the verdict says so, on both engines that can fail an allocation.
#[test]
fn fail_allocation_past_the_last_says_nothing_was_failed() {
    let dir = tempfile::tempdir().expect("dir");
    let once = sweep_driver("CLEAN_MANY", Some(1), dir.path());
    for engine in ["native", "speakeasy"] {
        let run = common::emulate_json(&once, &["--engine", engine, "--fail-allocation", "5"]);
        let verdict = run.expect(ExitCode::Clean).verdict();
        assert!(
            verdict.notes.iter().any(|note| note
                == "allocation 5 was never reached (the driver made 1 allocation): nothing was made to fail"),
            "{engine}: {:?}",
            verdict.notes
        );
        // Reached: no such note.
        let run = common::emulate_json(&once, &["--engine", engine, "--fail-allocation", "1"]);
        let verdict = run.expect(ExitCode::LoadProblem).verdict();
        assert!(
            !verdict
                .notes
                .iter()
                .any(|note| note.contains("never reached")),
            "{engine}: {:?}",
            verdict.notes
        );
    }
}
