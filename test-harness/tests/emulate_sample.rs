//! Issue 3: the real portable builds of Sample.sys, run through the real
//! the native engine (the default), give the verdicts the walkthrough shows.

use crate::common;

use harness_core::arch::Arch;
use harness_core::nt::PoolType;
use harness_core::verdict::{Engine, ExitCode, Outcome, Verdict};

/// The walkthrough's debugger log (../shared/seed, copied as a fixture).
const WALKTHROUGH: &str = include_str!("fixtures/walkthrough-win7-x86.txt");

fn registry_path_bytes(verdict: &Verdict) -> u64 {
    let line = verdict
        .debug_output
        .iter()
        .find_map(|line| line.strip_prefix("original registry path: "))
        .expect("the registry path line");
    u64::try_from(line.encode_utf16().count() * 2).expect("small")
}

fn clean(arch: Arch) {
    let built = common::driver(arch, false);
    let verdict = common::emulate_json(&built.sys, &[])
        .expect(ExitCode::Clean)
        .verdict();
    assert_eq!(verdict.driver, "Sample.sys");
    assert_eq!(verdict.engine, Engine::Native);
    assert_eq!(verdict.entry_status, Some(0));
    assert!(verdict.unloaded());
    assert_eq!(verdict.outcome(), Outcome::Unloaded);
    assert!(verdict.bugcheck.is_none());
    assert!(verdict.leaks.is_empty());
    assert_eq!(verdict.pool_stats.attempted, 1);
    assert_eq!(verdict.pool_stats.current_paged.0, 0);
    // The verifier counts whole pool units (8 bytes on x86, 16 on x64).
    let unit = arch.pool_granularity();
    assert_eq!(
        verdict.pool_stats.peak_paged.1,
        registry_path_bytes(&verdict).div_ceil(unit) * unit
    );
}

fn leaky(arch: Arch) {
    let built = common::driver(arch, true);
    let verdict = common::emulate_json(&built.sys, &[])
        .expect(ExitCode::Violation)
        .verdict();
    let bugcheck = verdict.bugcheck.as_ref().expect("bug check");
    assert_eq!(bugcheck.code, 0xC4);
    assert_eq!(bugcheck.name, "DRIVER_VERIFIER_DETECTED_VIOLATION");
    assert_eq!(bugcheck.args[0], 0x62);
    assert_ne!(bugcheck.args[1], 0, "Arg2 names the driver");
    assert_eq!(bugcheck.args[3], 1);
    let [leak] = verdict.leaks.as_slice() else {
        panic!("one leak expected: {:?}", verdict.leaks);
    };
    assert_eq!(leak.tag, "abcd");
    assert_eq!(leak.pool, PoolType::PagedPool);
    assert_eq!(leak.bytes, registry_path_bytes(&verdict));
    assert!(
        leak.caller.starts_with("Sample!DriverEntry+0x"),
        "caller {}",
        leak.caller
    );
    assert_ne!(leak.address, 0);
}

fn failed_allocation(arch: Arch) {
    let built = common::driver(arch, true);
    let verdict = common::emulate_json(&built.sys, &["--fail-allocation", "1"])
        .expect(ExitCode::LoadProblem)
        .verdict();
    assert_eq!(verdict.entry_status, Some(0xC000_009A));
    assert_eq!(verdict.outcome(), Outcome::EntryFailed);
    assert!(verdict.bugcheck.is_none());
    assert!(verdict.leaks.is_empty());
    assert_eq!(verdict.debug_output[0], "Failed to allocate memory");
    assert_eq!(verdict.pool_stats.failed, 1);
}

/// The driver's lines, in order, as the walkthrough's debugger printed them.
fn debug_lines_match_walkthrough(arch: Arch) {
    let expected: Vec<&str> = WALKTHROUGH
        .lines()
        .filter(|line| {
            [
                "original registry path:",
                "Copied registry path:",
                "Windows Version:",
                "Sample driver ",
            ]
            .iter()
            .any(|prefix| line.starts_with(prefix))
        })
        .take(5)
        .collect();
    assert_eq!(expected.len(), 5, "fixture lines");
    let built = common::driver(arch, false);
    let verdict = common::emulate_json(&built.sys, &[]).verdict();
    let lines: Vec<&str> = verdict.debug_output.iter().map(String::as_str).collect();
    assert_eq!(lines.len(), 5, "{lines:?}");
    for (ours, theirs) in lines.iter().zip(&expected) {
        match theirs.split_once(": ") {
            // The registry path is the machine's: compare its shape.
            Some((label, path)) if label.ends_with("registry path") => {
                let (our_label, our_path) = ours.split_once(": ").expect("label");
                assert_eq!(our_label, label);
                let ours_lower = our_path.to_ascii_lowercase();
                assert!(
                    ours_lower.starts_with("\\registry\\machine\\system\\"),
                    "{our_path}"
                );
                assert!(
                    ours_lower.ends_with("\\services\\sample"),
                    "{our_path} vs {path}"
                );
            }
            _ => assert_eq!(ours, theirs),
        }
    }
}

#[test]
fn x64_clean_unloads_with_nothing_outstanding() {
    clean(Arch::X64);
}

#[test]
fn x86_clean_unloads_with_nothing_outstanding() {
    clean(Arch::X86);
}

#[test]
fn x64_leak_bugchecks_c4_62_with_the_abcd_allocation() {
    leaky(Arch::X64);
}

#[test]
fn x86_leak_bugchecks_c4_62_with_the_abcd_allocation() {
    leaky(Arch::X86);
}

#[test]
fn x64_failed_allocation_returns_insufficient_resources() {
    failed_allocation(Arch::X64);
}

#[test]
fn x86_failed_allocation_returns_insufficient_resources() {
    failed_allocation(Arch::X86);
}

#[test]
fn x64_debug_lines_match_the_walkthrough() {
    debug_lines_match_walkthrough(Arch::X64);
}

#[test]
fn x86_debug_lines_match_the_walkthrough() {
    debug_lines_match_walkthrough(Arch::X86);
}

#[test]
fn pool_hit_tag_breaks_on_the_allocation_and_the_free() {
    let built = common::driver(Arch::X64, false);
    let verdict = common::emulate_json(&built.sys, &["--pool-hit-tag", "abcd"]).verdict();
    let hits = &verdict.pool_hits;
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert_eq!(hits[0].api, "ExAllocatePoolWithTag");
    assert!(hits[0].caller.starts_with("Sample!DriverEntry+"));
    assert_eq!(hits[1].api, "ExFreePoolWithTag");
    assert_eq!(hits[0].address, hits[1].address);

    // The same tag as a number, and the text view shows the break.
    let text = common::harness(&[
        "emulate",
        built.sys.to_str().expect("path"),
        "--pool-hit-tag",
        "0x64636261",
    ]);
    assert!(
        text.stdout
            .contains("Break instruction exception - code 80000003"),
        "{}",
        text.stdout
    );

    let other = common::emulate_json(&built.sys, &["--pool-hit-tag", "wxyz"]).verdict();
    assert!(other.pool_hits.is_empty());
}

#[test]
fn os_version_reaches_rtlgetversion() {
    let built = common::driver(Arch::X86, false);
    let verdict = common::emulate_json(&built.sys, &["--os-version", "10.0.19045"]).verdict();
    assert!(
        verdict
            .debug_output
            .iter()
            .any(|line| line == "Windows Version: 10.0.19045")
    );
}

#[test]
fn text_report_shows_analyze_and_verifier_3() {
    let built = common::driver(Arch::X86, true);
    let run = common::harness(&["emulate", built.sys.to_str().expect("path")]);
    run.expect(ExitCode::Violation);
    for needle in [
        "*** Fatal System Error: 0x000000c4",
        "DRIVER_VERIFIER_DETECTED_VIOLATION (c4)",
        "Arg1: 00000062, A driver has forgotten to free its pool allocations prior to unloading.",
        "Arg4: 00000001, total # of (paged+nonpaged) allocations that weren't freed.",
        "!verifier 3 Sample.sys",
        "Pool Allocations Attempted             0x1",
        // 0x6c requested, shown as the verifier's rounded 0x70, as in the walkthrough.
        "0x00000070  abcd",
        "Sample!DriverEntry+0x",
    ] {
        assert!(
            run.stdout.contains(needle),
            "missing {needle:?} in:\n{}",
            run.stdout
        );
    }
}
