//! Drivers the project did not write in Rust (C, compiled here with MinGW)
//! are judged like Driver Verifier and the kernel would judge them, by the
//! native engine and by Speakeasy alike.

use crate::common;

use harness_core::arch::Arch;
use harness_core::nt::PoolType;
use harness_core::verdict::{ExitCode, FaultKind, Outcome, Verdict};

/// Both emulators that run x86 and x64 drivers.
const ENGINES: [&str; 2] = ["native", "speakeasy"];

fn run_on(engine: &str, variant: &str, arch: Arch, extra: &[&str]) -> common::Run {
    let dir = tempfile::tempdir().expect("temp dir");
    let driver = common::c_driver(variant, arch, dir.path());
    let mut args = vec!["--engine", engine];
    args.extend_from_slice(extra);
    common::emulate_json(&driver, &args)
}

/// The verdicts of every engine, each checked for `code`.
fn verdicts(variant: &str, arch: Arch, extra: &[&str], code: ExitCode) -> Vec<Verdict> {
    ENGINES
        .iter()
        .map(|engine| run_on(engine, variant, arch, extra).expect(code).verdict())
        .collect()
}

fn multi_leak(arch: Arch) {
    for verdict in verdicts("MULTI_LEAK", arch, &[], ExitCode::Violation) {
        multi_leak_verdict(&verdict);
    }
}

fn multi_leak_verdict(verdict: &Verdict) {
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
        first.starts_with("loading from \\REGISTRY\\MACHINE\\SYSTEM\\ControlSet001\\services\\"),
        "{}: {first}",
        verdict.engine
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
    for (arch, verdict) in Arch::ALL.into_iter().flat_map(|arch| {
        verdicts("CRASH", arch, &[], ExitCode::Violation)
            .into_iter()
            .map(move |verdict| (arch, verdict))
    }) {
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
    for verdict in Arch::ALL.into_iter().flat_map(|arch| {
        verdicts(
            "LOOP",
            arch,
            &["--max-instructions", "200000", "--timeout", "20"],
            ExitCode::LoadProblem,
        )
    }) {
        assert_eq!(verdict.outcome(), Outcome::EntryDidNotReturn);
        assert_eq!(
            verdict.limit,
            Some(harness_core::verdict::Limit::Instructions { count: 200_000 })
        );
        assert!(verdict.entry_status.is_none());
    }
}

#[test]
fn unsupported_api_is_named() {
    for engine in ENGINES {
        let run = run_on(engine, "UNSUPPORTED", Arch::X64, &[]);
        run.cannot_judge("FsRtlIsNameInExpression");
        assert!(run.stderr.contains("!DriverEntry+0x"), "{}", run.stderr);
        // The truth: Windows has it, the engine does not.
        assert!(
            run.stderr.contains(&format!(
                "which Windows exports and the {engine} engine does not implement"
            )),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn driver_without_unload_routine_cannot_be_unloaded() {
    for verdict in verdicts("NO_UNLOAD", Arch::X64, &[], ExitCode::LoadProblem) {
        assert_eq!(verdict.outcome(), Outcome::CannotUnload);
        assert!(!verdict.unloaded());
        assert!(verdict.bugcheck.is_none());
    }
}

#[test]
fn double_free_bad_free_and_zero_allocation_are_verifier_violations() {
    for (variant, arg1) in [
        ("DOUBLE_FREE", 0x13),
        ("BAD_FREE", 0x10),
        ("ZERO_ALLOC", 0x00),
    ] {
        for verdict in verdicts(variant, Arch::X86, &[], ExitCode::Violation) {
            let bugcheck = verdict.bugcheck.expect("bug check");
            assert_eq!((bugcheck.code, bugcheck.args[0]), (0xC4, arg1), "{variant}");
        }
    }
    for bad_free in verdicts("BAD_FREE", Arch::X64, &[], ExitCode::Violation) {
        assert_eq!(bad_free.bugcheck.map(|b| b.args[1]), Some(0x1234_5670));
    }
}
