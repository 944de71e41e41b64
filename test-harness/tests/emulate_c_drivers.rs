//! Issue 3: drivers the project did not write in Rust (C, compiled here with
//! MinGW) are judged like Driver Verifier and the kernel would judge them.

mod common;

use harness::arch::Arch;
use harness::nt::PoolType;
use harness::verdict::{ExitCode, FaultKind, Outcome, Verdict};

fn run(variant: &str, arch: Arch, extra: &[&str]) -> common::Run {
    let dir = tempfile::tempdir().expect("temp dir");
    let driver = common::c_driver(variant, arch, dir.path());
    common::emulate_json(&driver, extra)
}

fn verdict(variant: &str, arch: Arch, extra: &[&str], code: ExitCode) -> Verdict {
    run(variant, arch, extra).expect(code).verdict()
}

fn multi_leak(arch: Arch) {
    let verdict = verdict("MULTI_LEAK", arch, &[], ExitCode::Violation);
    let bugcheck = verdict.bugcheck.as_ref().expect("bug check");
    assert_eq!((bugcheck.args[0], bugcheck.args[3]), (0x62, 3));
    let leaks: Vec<(&str, PoolType, u64)> = verdict
        .leaks
        .iter()
        .map(|leak| (leak.tag.as_str(), leak.pool, leak.bytes))
        .collect();
    assert_eq!(
        leaks,
        [
            ("Tag1", PoolType::NonPagedPool, 0x20),
            ("Tag2", PoolType::PagedPool, 0x40),
            // ExAllocatePool tags with 'None'; the verifier counts it as untagged.
            ("None", PoolType::NonPagedPoolNx, 0x10),
        ]
    );
    // No PDB: the exported DriverEntry names the call sites.
    for leak in &verdict.leaks {
        assert!(leak.caller.contains("!DriverEntry+0x"), "{}", leak.caller);
    }
    assert_eq!(verdict.pool_stats.no_tag, 1);
    assert_eq!(verdict.pool_stats.attempted, 4);
    // %wZ printed through the engine's own formatter.
    let first = &verdict.debug_output[0];
    assert!(
        first.starts_with("loading from \\Registry\\Machine\\System\\"),
        "{first}"
    );
}

#[test]
fn x64_c_driver_leaking_several_tags_and_pools() {
    multi_leak(Arch::X64);
}

#[test]
fn x86_c_driver_leaking_several_tags_and_pools() {
    multi_leak(Arch::X86);
}

#[test]
fn crash_is_reported_as_a_bugcheck_with_the_faulting_symbol() {
    for arch in Arch::ALL {
        let verdict = verdict("CRASH", arch, &[], ExitCode::Violation);
        let bugcheck = verdict.bugcheck.as_ref().expect("bug check");
        let fault = verdict.fault.as_ref().expect("fault");
        assert_eq!(bugcheck.code, 0x7E, "{arch}");
        assert_eq!(bugcheck.args[0], 0xC000_0005);
        assert_eq!(bugcheck.args[1], fault.pc);
        assert_eq!(fault.kind, FaultKind::Write);
        assert_eq!(fault.accessed, Some(0x10));
        assert!(fault.symbol.contains("!DriverEntry+0x"), "{}", fault.symbol);
    }
}

#[test]
fn endless_loop_is_stopped_by_the_instruction_budget() {
    for arch in Arch::ALL {
        let verdict = verdict(
            "LOOP",
            arch,
            &["--max-instructions", "200000", "--timeout", "20"],
            ExitCode::LoadProblem,
        );
        assert_eq!(verdict.outcome(), Outcome::EntryDidNotReturn);
        assert_eq!(
            verdict.limit,
            Some(harness::verdict::Limit::Instructions { count: 200_000 })
        );
        assert!(verdict.entry_status.is_none());
    }
}

#[test]
fn unsupported_api_is_named() {
    let run = run("UNSUPPORTED", Arch::X64, &[]);
    run.cannot_judge("ntoskrnl.FsRtlIsNameInExpression");
    assert!(run.stderr.contains("!DriverEntry+0x"), "{}", run.stderr);
    // The truth: Windows has it, the engine does not.
    assert!(
        run.stderr
            .contains("which Windows exports and the speakeasy engine does not implement"),
        "{}",
        run.stderr
    );
}

#[test]
fn driver_without_unload_routine_cannot_be_unloaded() {
    let verdict = verdict("NO_UNLOAD", Arch::X64, &[], ExitCode::LoadProblem);
    assert_eq!(verdict.outcome(), Outcome::CannotUnload);
    assert!(!verdict.unloaded());
    assert!(verdict.bugcheck.is_none());
}

#[test]
fn double_free_bad_free_and_zero_allocation_are_verifier_violations() {
    for (variant, arg1) in [
        ("DOUBLE_FREE", 0x13),
        ("BAD_FREE", 0x10),
        ("ZERO_ALLOC", 0x00),
    ] {
        let verdict = verdict(variant, Arch::X86, &[], ExitCode::Violation);
        let bugcheck = verdict.bugcheck.expect("bug check");
        assert_eq!((bugcheck.code, bugcheck.args[0]), (0xC4, arg1), "{variant}");
    }
    let bad_free = verdict("BAD_FREE", Arch::X64, &[], ExitCode::Violation);
    assert_eq!(bad_free.bugcheck.map(|b| b.args[1]), Some(0x1234_5670));
}
