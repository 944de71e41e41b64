//! The Wine engine at its limits: drivers that reach what Wine cannot do
//! (`tests/drivers/wine_gaps.c`) end in one line and exit 2, never in a
//! verdict on the driver; hung and unstoppable drivers are said as such,
//! quickly, and leave no service behind; a reused pool address is one
//! allocation; a driver named like a service of the prefix leaves it alone.

use crate::common;
use crate::common::wine;

use std::time::{Duration, Instant};

use harness_core::arch::Arch;
use harness_core::events::{Event, Gap};
use harness_core::verdict::{ExitCode, Limit, Outcome};
use harness_engines::engine::RunOptions;

#[test]
fn engine_gaps_are_one_line_and_exit_2_never_a_verdict() {
    let _serial = wine::serial();
    let dir = tempfile::tempdir().expect("temp dir");
    for (variant, expected) in [
        (
            "KMDF",
            "needs WDFLDR.SYS, which the wine engine does not have; the run cannot be judged",
        ),
        (
            "MISSING_MODULES",
            "needs WDFLDR.SYS, WppRecorder.sys, fwpkclnt.sys, which the wine engine does not have",
        ),
        (
            "NDIS",
            "calls ndis.sys.NdisGetVersion from gap_ndis!DriverEntry+0x1f, which the wine engine only stubs",
        ),
        (
            "STUB",
            "calls ntoskrnl.exe.MmGetVirtualForPhysical from gap_stub!DriverEntry+0x24, which the wine engine only stubs",
        ),
        (
            "SEH_STUB",
            "calls ntoskrnl.exe.MmGetVirtualForPhysical from gap_seh_stub+0x101c, which the wine engine only stubs",
        ),
        (
            "BIG_DBGPRINT",
            "the wine engine's process ended with no fault in the driver: winedevice.exe: exception 0x80000005",
        ),
    ] {
        let driver = wine::gap_driver(variant, dir.path());
        let started = Instant::now();
        let run = wine::emulate(&driver, &[]);
        println!(
            "{variant}: exit {} in {:.1} s: {}",
            run.code,
            started.elapsed().as_secs_f64(),
            run.stderr.trim()
        );
        run.cannot_judge(expected);
        assert!(run.stdout.is_empty(), "{variant}: {}", run.stdout);
    }
    assert!(wine::harness_services(wine::prefix()).is_empty());
}

/// The driver catches the stub's exception in its own `__try` and then
/// crashes in its own code: the crash comes after the gap, so it is not
/// judged.
#[test]
fn a_driver_that_survives_a_stub_and_then_crashes_is_not_judged() {
    let _serial = wine::serial();
    let dir = tempfile::tempdir().expect("temp dir");
    let driver = wine::gap_driver("SEH_STUB", dir.path());
    let image = harness_core::pe::PeImage::read(&driver).expect("a PE");
    let events =
        harness_engines::wine::run_at(wine::prefix(), &driver, &image, &RunOptions::default())
            .expect("Wine ran it");
    let gap = events
        .iter()
        .position(|event| {
            matches!(event, Event::Gap { gap: Gap::Unimplemented { routine }, caller: Some(_), .. }
                if routine == "ntoskrnl.exe.MmGetVirtualForPhysical")
        })
        .expect("the stub is a gap with its call site");
    let caught = events
        .iter()
        .position(|event| matches!(event, Event::DebugPrint { text, .. } if text == "caught 1\n"))
        .expect("the driver's __try caught the stub's exception");
    assert!(gap < caught, "{events:?}");
    // And the harness does not judge the crash that followed.
    wine::emulate(&driver, &[]).cannot_judge("which the wine engine only stubs");
}

#[test]
fn a_hung_driver_entry_is_stopped_by_the_scm_wait() {
    let _serial = wine::serial();
    let dir = tempfile::tempdir().expect("temp dir");
    let driver = common::c_driver("LOOP", Arch::X64, dir.path());
    let started = Instant::now();
    let verdict = wine::emulate(&driver, &["--timeout", "5"])
        .expect(ExitCode::LoadProblem)
        .verdict();
    let elapsed = started.elapsed();
    println!(
        "hung DriverEntry under Wine: {:.1} s",
        elapsed.as_secs_f64()
    );
    assert_eq!(verdict.outcome(), Outcome::EntryDidNotReturn);
    assert_eq!(verdict.limit, Some(Limit::ServiceControl { seconds: 5 }));
    assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");
    assert!(wine::harness_services(wine::prefix()).is_empty());
    wine::wait_until_idle(wine::prefix(), Duration::from_secs(5)).expect("nothing left running");
}

#[test]
fn no_unload_routine_cannot_be_unloaded_quickly_and_leaves_no_service() {
    let _serial = wine::serial();
    let dir = tempfile::tempdir().expect("temp dir");
    let driver = common::c_driver("NO_UNLOAD", Arch::X64, dir.path());
    let started = Instant::now();
    let verdict = wine::emulate(&driver, &[])
        .expect(ExitCode::LoadProblem)
        .verdict();
    let elapsed = started.elapsed();
    println!(
        "no unload routine under Wine: {:.1} s",
        elapsed.as_secs_f64()
    );
    assert_eq!(verdict.outcome(), Outcome::CannotUnload);
    assert_eq!(verdict.entry_status, Some(0));
    // Not the 30 s of a stop request nobody answers.
    assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
    assert!(wine::harness_services(wine::prefix()).is_empty());
}

#[test]
fn a_reused_pool_address_is_counted_once() {
    let _serial = wine::serial();
    let dir = tempfile::tempdir().expect("temp dir");
    let driver = wine::gap_driver("REUSE", dir.path());
    let verdict = wine::emulate(&driver, &[])
        .expect(ExitCode::Violation)
        .verdict();
    // Wine's pool handed the freed block back for the second allocation.
    assert!(
        verdict.debug_output.contains(&"reused 1".to_owned()),
        "{:?}",
        verdict.debug_output
    );
    let leaks: Vec<(&str, u64)> = verdict
        .leaks
        .iter()
        .map(|leak| (leak.tag.as_str(), leak.bytes))
        .collect();
    assert_eq!(leaks, [("Ruse", 0x40), ("Leak", 0x20)]);
    let bugcheck = verdict.bugcheck.expect("0xC4/0x62");
    assert_eq!((bugcheck.args[0], bugcheck.args[3]), (0x62, 2));
    assert_eq!(verdict.pool_stats.attempted, 3);
}

#[test]
fn a_driver_named_like_a_service_of_the_prefix_leaves_it_alone() {
    let _serial = wine::serial();
    let dir = tempfile::tempdir().expect("temp dir");
    let driver = dir.path().join("PlugPlay.sys");
    std::fs::copy(common::driver(Arch::X64, false).sys, &driver).expect("copy");
    let run = wine::emulate(&driver, &[])
        .expect(ExitCode::Clean)
        .verdict();
    assert!(
        run.debug_output[0].contains("\\Services\\HarnessTest_PlugPlay_"),
        "{:?}",
        run.debug_output
    );
    let mut machine = harness_engines::wine::WineMachine::open(wine::prefix()).expect("prefix");
    let status = machine
        .samplectl(&["status", "--name", "PlugPlay"])
        .expect("samplectl runs");
    machine.remove_leftovers();
    assert_eq!(status.code, Some(0), "PlugPlay is gone: {}", status.stderr);
    assert!(
        status.stdout.contains("SERVICE_NAME: PlugPlay"),
        "{}",
        status.stdout
    );
}
