//! Sample.sys's fault features (docs/lessons/) under the emulated verifier's
//! flags, x86 and x64, judged as Windows 7 SP1 judges them.
//!
//! Sources: MicrosoftDocs/windows-driver-docs, debugger/bug-check-0xc4--driver-verifier-detected-violation.md
//! (0x01: Arg2 current IRQL, Arg3 pool type, Arg4 size; 0x13/0x14: Arg3
//! pointer to the pool header; 0x62 only under Pool Tracking),
//! devtest/automatic-checks.md (zero-byte, IRQL, bad and double frees are
//! checked whatever flags are set), debugger/bug-check-0xe1--worker-thread-returned-at-bad-irql.md
//! and the WRK's `ExpWorkerThread` (base/ntos/ex/worker.c) for 0xE1.

use crate::common;

use harness_build::driver_build::{self, Fault};
use harness_core::arch::Arch;
use harness_core::verdict::{ExitCode, Outcome, Verdict};
use harness_core::verifier::VerifierFlags;
use harness_engines::sweep::{Record, Summary, SweepRun};

/// The walkthrough's registry path copy: 0x6c bytes.
const COPY_BYTES: u64 = 0x6c;

fn built(arch: Arch, fault: Option<Fault>) -> std::path::PathBuf {
    driver_build::build_fault(arch, fault)
        .unwrap_or_else(|failure| panic!("build failed: {failure}"))
        .sys
}

fn judged(driver: &std::path::Path, flags: &str) -> Verdict {
    let run = common::emulate_json(driver, &["--verifier-flags", flags]);
    let verdict = run.verdict();
    assert_eq!(
        verdict.verifier_flags,
        Some(VerifierFlags::parse(flags).expect("flags"))
    );
    verdict
}

#[test]
fn paged_pool_at_dispatch_level_is_c4_01_under_any_flags() {
    for arch in Arch::ALL {
        let driver = built(arch, Some(Fault::PagedAtDispatch));
        // No verifier: the release allocator's own IRQL check, 0xC2 / 0x08
        // with the same parameters (WRK base/ntos/ex/pool.c,
        // ASSERT_ALLOCATE_IRQL; bug-check-0xc2--bad-pool-caller.md).
        let release = judged(&driver, "0").bugcheck.expect("bug check");
        assert_eq!(
            (release.code, release.args),
            (0xC2, [0x08, 2, 1, COPY_BYTES]),
            "{arch}"
        );
        for flags in ["0x8", "0x2", "0xa"] {
            let verdict = judged(&driver, flags);
            assert_eq!(verdict.exit_code(), ExitCode::Violation, "{arch} {flags}");
            let bugcheck = verdict.bugcheck.expect("bug check");
            // IRQL 2 (DISPATCH_LEVEL), pool type 1 (PagedPool), the size.
            assert_eq!(
                (bugcheck.code, bugcheck.args),
                (0xC4, [0x01, 2, 1, COPY_BYTES]),
                "{arch} {flags}"
            );
            // The machine stopped at the call: DriverEntry never returned.
            assert_eq!(verdict.entry_status, None, "{arch} {flags}");
        }
    }
}

#[test]
fn double_free_is_c4_13_at_the_second_free() {
    for arch in Arch::ALL {
        let driver = built(arch, Some(Fault::DoubleFree));
        for flags in ["0x8", "0x2", "0x9"] {
            let verdict = judged(&driver, flags);
            let bugcheck = verdict.bugcheck.clone().expect("bug check");
            assert_eq!((bugcheck.code, bugcheck.args[0]), (0xC4, 0x13), "{arch}");
            // Arg3 points at the pool header, just below the block the
            // driver freed twice (the kernel's pool, not the driver's image).
            assert!(bugcheck.args[2] >= arch.kernel_base(), "{arch} {flags}");
            // Arg4: the header's contents (the WRK's ExFreePoolSanityChecks
            // passes Entry->Ulong1); special pool's block has no such header.
            if flags != "0x9" {
                assert_header_of_the_copy(arch, bugcheck.args[3]);
            }
            assert_eq!(verdict.exit_code(), ExitCode::Violation);
            assert!(verdict.leaks.is_empty());
        }
    }
}

/// A pool header's first ULONG holds the block of the registry path's
/// copy: `BlockSize` (bits 16 on) is 0x6c bytes and the header in pool units.
fn assert_header_of_the_copy(arch: Arch, ulong1: u64) {
    let unit = arch.pool_granularity();
    let units = (COPY_BYTES + arch.pool_header_size()).div_ceil(unit);
    let block_size = match arch {
        Arch::X86 => (ulong1 >> 16) & 0x1ff,
        Arch::X64 => (ulong1 >> 16) & 0xff,
    };
    assert_eq!(block_size, units, "{arch} {ulong1:x}");
}

/// Without the verifier the release kernel's `ExFreePoolWithTag` finds the
/// header marked free: 0xC2 / 0x07, Arg2 reserved (the WRK passes its line
/// number), Arg3 the header's contents, Arg4 the block (WRK
/// base/ntos/ex/pool.c, `IS_POOL_HEADER_MARKED_ALLOCATED`;
/// debugger/bug-check-0xc2--bad-pool-caller.md). Under special pool alone
/// the verifier does not track the block and `MmFreeSpecialPool` finds its
/// page gone: 0xC1 / 0x20, Arg1 the address, Arg3 0 (bug-check-0xc1;
/// `ReactOS` ntoskrnl/mm/ARM3/special.c, `MmFreeSpecialPool`).
#[test]
fn double_free_without_pool_tracking_is_nt_own_check() {
    for arch in Arch::ALL {
        let driver = built(arch, Some(Fault::DoubleFree));
        let release = judged(&driver, "0");
        let bugcheck = release.bugcheck.clone().expect("bug check");
        assert_eq!((bugcheck.code, bugcheck.args[0]), (0xC2, 0x07), "{arch}");
        assert_header_of_the_copy(arch, bugcheck.args[2]);
        assert!(bugcheck.args[3] >= arch.kernel_base(), "{arch}");
        assert_eq!(release.exit_code(), ExitCode::Violation);
        assert!(!release.verifier && release.leaks.is_empty());

        let special = judged(&driver, "0x1");
        let bugcheck = special.bugcheck.clone().expect("bug check");
        assert_eq!(
            (
                bugcheck.code,
                bugcheck.args[1],
                bugcheck.args[2],
                bugcheck.args[3]
            ),
            (0xC1, 0, 0, 0x20),
            "{arch}"
        );
        // The block special pool gave: at the end of its page (Verify End).
        assert_eq!((bugcheck.args[0] + 0x70) % 0x1000, 0, "{arch}");
    }
}

#[test]
fn the_clean_build_stays_clean_under_every_flag_set() {
    for arch in Arch::ALL {
        let driver = built(arch, None);
        for flags in ["0", "0x8", "0x2", "0xa", "0x1", "0xb"] {
            let verdict = judged(&driver, flags);
            assert_eq!(verdict.exit_code(), ExitCode::Clean, "{arch} {flags}");
        }
    }
}

/// 0xC4 / 0x62 needs Pool Tracking: under Force IRQL checking alone the
/// leak goes unseen (the lesson's point), with pool tracking it is caught.
#[test]
fn the_leak_needs_pool_tracking() {
    for arch in Arch::ALL {
        let driver = built(arch, Some(Fault::LeakOnUnload));
        for flags in ["0x2", "0"] {
            let unseen = judged(&driver, flags);
            assert_eq!(unseen.exit_code(), ExitCode::Clean, "{arch} {flags}");
            assert!(unseen.leaks.is_empty() && !unseen.verifier);
        }
        // The summary does not claim what was not checked.
        let path = driver.to_str().expect("utf-8");
        let text = common::harness(&["emulate", path, "--verifier-flags", "0"]);
        text.expect(ExitCode::Clean);
        assert!(
            text.stdout.contains(
                "pool tracking (0x8) is off, so outstanding allocations were not checked: PASS"
            ),
            "{}",
            text.stdout
        );
        let seen = judged(&driver, "0xa");
        assert_eq!(seen.bugcheck.map(|b| b.args[0]), Some(0x62), "{arch}");
    }
}

#[test]
fn a_driver_entry_returning_at_a_raised_irql_is_0xe1() {
    let dir = tempfile::tempdir().expect("dir");
    for arch in Arch::ALL {
        let driver = common::c_driver_from("wdm_features.c", "RAISED_RETURN", arch, dir.path());
        let run = common::emulate_json(&driver, &[]);
        run.expect(ExitCode::Violation);
        let verdict = run.verdict();
        let bugcheck = verdict.bugcheck.expect("bug check");
        assert_eq!(bugcheck.code, 0xE1, "{arch}");
        // Arg1: the work routine (nt's IopLoadUnloadDriver), Arg2: IRQL 15.
        assert!(bugcheck.args[0] >= arch.kernel_base(), "{arch}");
        assert_eq!(bugcheck.args[1], 15, "{arch}");
        assert_eq!(verdict.entry_status, Some(0), "DriverEntry returned");
    }
}

#[test]
fn flags_an_engine_does_not_apply_cannot_be_judged() {
    let clean = built(Arch::X64, None);
    let path = clean.to_str().expect("utf-8");
    common::harness(&["emulate", path, "--verifier-flags", "0x10"])
        .cannot_judge("does not apply verifier flag 0x10 (I/O verification)");
    common::harness(&["emulate", path, "--verifier-flags", "pool"]).expect(ExitCode::CannotJudge);
    // The VM always runs under the verifier: 0 (off) is refused before
    // anything is built or the guest reached.
    common::harness(&[
        "vm",
        "--host",
        "nobody@guest.invalid",
        "--driver",
        path,
        "--verifier-flags",
        "0",
    ])
    .cannot_judge("--verifier-flags 0: harness vm runs the driver under Driver Verifier");
    common::harness(&[
        "emulate",
        path,
        "--engine",
        "speakeasy",
        "--verifier-flags",
        "0x2",
    ])
    .cannot_judge("the speakeasy engine does not apply verifier flag 0x2");
}

/// Force IRQL checking pages out pageable memory whenever IRQL is raised;
/// the native engine does not page, so a run that raised IRQL and passed
/// cannot be judged under 0x2 (the same driver passes under 0x8).
#[test]
fn a_raised_irql_under_force_irql_checking_cannot_be_judged() {
    let dir = tempfile::tempdir().expect("dir");
    let driver = common::c_driver_from("wdm_features.c", "PLAIN", Arch::X64, dir.path());
    let path = driver.to_str().expect("utf-8");
    common::harness(&["emulate", path, "--verifier-flags", "0x2"])
        .cannot_judge("Force IRQL checking (0x2) pages out pageable memory");
    common::harness(&["emulate", path]).expect(ExitCode::Clean);
}

/// Speakeasy's CPU ignores CR8, where the x64 build raises IRQL: it must
/// not pass the paged-at-dispatch build (x86 calls hal!KfRaiseIrql, which
/// Speakeasy lacks).
#[test]
fn speakeasy_cannot_judge_what_it_cannot_see_of_the_irql() {
    let x64 = built(Arch::X64, Some(Fault::PagedAtDispatch));
    common::harness(&[
        "emulate",
        x64.to_str().expect("utf-8"),
        "--engine",
        "speakeasy",
    ])
    .cannot_judge("writing CR8 at Sample!DriverEntry+0x");
    let x86 = built(Arch::X86, Some(Fault::PagedAtDispatch));
    common::harness(&[
        "emulate",
        x86.to_str().expect("utf-8"),
        "--engine",
        "speakeasy",
    ])
    .cannot_judge("hal.KfRaiseIrql");
}

/// Wine keeps no IRQL (winedevice.exe is a user-mode process; its
/// `KfRaiseIrql` is a stub, and CR8 writes are emulated privileged
/// instructions), so it must not pass the paged-at-dispatch build either,
/// which the native engine judges 0xC4 / 0x01 (Arg2 IRQL 2, Arg3 PagedPool;
/// the bug check page named above). Seen before: exit 0 under Wine,
/// x64 and x86.
#[test]
fn wine_cannot_judge_what_it_cannot_see_of_the_irql() {
    use crate::common::wine;
    for (arch, site) in [
        (Arch::X64, "writing CR8 at Sample!DriverEntry+0x"),
        (Arch::X86, "hal.dll!KfRaiseIrql"),
    ] {
        let driver = built(arch, Some(Fault::PagedAtDispatch));
        let native = judged(&driver, "0x8").bugcheck.expect("bug check");
        assert_eq!((native.code, native.args[0]), (0xC4, 0x01), "native {arch}");
        let _serial = wine::serial();
        wine::emulate(&driver, &[]).cannot_judge(site);
    }
}

/// The second allocation's error path forgets the copy: a plain run is
/// clean, and only failing that allocation (the low resources simulation's
/// job on Windows, `--fail-each` here) shows the leak, 0xC4 / 0x62 when the
/// failed load unloads the image.
#[test]
fn leak_on_error_is_found_by_failing_each_allocation() {
    for arch in Arch::ALL {
        let driver = built(arch, Some(Fault::LeakOnError));
        let path = driver.to_str().expect("utf-8");
        assert_eq!(judged(&driver, "0x8").exit_code(), ExitCode::Clean);
        for engine in ["native", "speakeasy"] {
            let run =
                common::harness(&["emulate", path, "--engine", engine, "--fail-each", "--json"]);
            run.expect(ExitCode::Violation);
            let (runs, summary) = sweep_records(&run.stdout);
            assert_eq!(summary.allocations, 2, "{arch} {engine}");
            // The baseline and failing the copy are handled; failing the
            // scratch block leaks the copy.
            assert!(
                !runs[0].violated() && !runs[1].violated(),
                "{arch} {engine}"
            );
            let second = runs[2].verdict().expect("the second failure is judged");
            assert_eq!(second.outcome(), Outcome::BugCheck, "{arch} {engine}");
            assert_eq!(second.entry_status, Some(0xC000_009A));
            let bugcheck = second.bugcheck.as_ref().expect("bug check");
            assert_eq!(
                (bugcheck.code, bugcheck.args[0], bugcheck.args[3]),
                (0xC4, 0x62, 1)
            );
            assert_eq!(second.leaks.len(), 1);
            assert_eq!(second.leaks[0].bytes, COPY_BYTES);
        }
    }
}

/// `--fail-each --json`'s lines: each run, then the summary.
fn sweep_records(stdout: &str) -> (Vec<SweepRun>, Summary) {
    let mut runs = Vec::new();
    let mut summary = None;
    for line in stdout.lines() {
        match serde_json::from_str(line).expect("a sweep record") {
            Record::Run(run) => runs.push(run),
            Record::Summary(last) => summary = Some(last),
        }
    }
    (runs, summary.expect("the summary line"))
}

/// `harness demo`'s fault table: every fault, both arches, under its
/// lesson's flags, each with the documented bug check.
#[test]
fn the_demo_judges_every_fault_as_its_lesson_says() {
    let rows = harness::demo::run_faults().expect("demo runs");
    assert_eq!(rows.len(), Fault::ALL.len() * Arch::ALL.len());
    for row in &rows {
        let bugcheck = row
            .verdict
            .as_ref()
            .and_then(|verdict| verdict.bugcheck.clone())
            .expect("bug check");
        // The 0xC4, 0xC1 and 0xD5 pages' parameters.
        let (code, index, value) = match row.lesson.fault {
            Fault::LeakOnUnload | Fault::LeakOnError => (0xC4, 0, 0x62),
            Fault::DoubleFree => (0xC4, 0, 0x13),
            Fault::PagedAtDispatch => (0xC4, 0, 0x01),
            Fault::Overrun => (0xC1, 3, 0x24),
            Fault::ReadAfterFree => (0xD5, 1, 0),
        };
        assert_eq!((bugcheck.code, bugcheck.args[index]), (code, value));
        assert!(row.as_expected());
    }
    let table = harness::demo::render_faults(&rows);
    assert_eq!(table.matches(" yes\n").count(), rows.len(), "{table}");
}

/// Special pool (0x1), Verify End: the overrun's terminator lands in the
/// slack after the block and is found when the block is freed (0xC1, Arg2
/// the first changed byte, Arg4 0x24); pool tracking alone sees nothing
/// (the 0xC1 bug check page, devtest/special-pool.md).
#[test]
fn the_overrun_is_found_by_special_pool_at_the_free() {
    for arch in Arch::ALL {
        let driver = built(arch, Some(Fault::Overrun));
        for flags in ["0x1", "0x9"] {
            let verdict = judged(&driver, flags);
            let bugcheck = verdict.bugcheck.expect("bug check");
            assert_eq!((bugcheck.code, bugcheck.args[3]), (0xC1, 0x24), "{arch}");
            // The two bytes of the NUL right after the 0x6c-byte copy.
            assert_eq!(bugcheck.args[1], bugcheck.args[0] + COPY_BYTES, "{arch}");
            // Verify End: the block ends at its page's end, rounded to the pool unit.
            assert_eq!((bugcheck.args[0] + 0x70) % 0x1000, 0, "{arch}");
        }
        assert_eq!(judged(&driver, "0x8").exit_code(), ExitCode::Clean);
    }
}

/// The read after the free touches the freed special pool page: 0xD5 at
/// the driver's instruction (Arg2 0 = read, Arg3 the instruction); without
/// special pool nothing is caught (bug-check-0xd5).
#[test]
fn the_read_after_free_faults_in_freed_special_pool() {
    for arch in Arch::ALL {
        let driver = built(arch, Some(Fault::ReadAfterFree));
        let verdict = judged(&driver, "0x1");
        let bugcheck = verdict.bugcheck.clone().expect("bug check");
        assert_eq!((bugcheck.code, bugcheck.args[1]), (0xD5, 0), "{arch}");
        let fault = verdict.fault.expect("the driver's fault");
        assert_eq!(bugcheck.args[2], fault.pc, "{arch}");
        assert!(fault.symbol.starts_with("Sample!"), "{}", fault.symbol);
        // The address read is in the freed block's page.
        assert_eq!(
            bugcheck.args[0] & !0xfff,
            fault.accessed.expect("address") & !0xfff
        );
        assert_eq!(
            judged(&driver, "0x8").exit_code(),
            ExitCode::Clean,
            "{arch}"
        );
    }
}

/// Special pool's layout in the emulated memory (x86): the header at the
/// page start (the size requested, the tag), the pattern byte around the
/// block, the block ending at the page's end, the next page unmapped.
#[test]
fn special_pool_lays_a_block_out_at_the_end_of_its_page() {
    let driver = built(Arch::X86, None);
    let script = "bp nt!MmFreeSpecialPool\ng\ndd 9c000000 L2\ndb 9c000f80 L10\ndb 9c001000 L4\n!pool 9c000f90\n!verifier\nq\n";
    let run = common::harness_with_stdin(
        &[
            "kd".as_ref(),
            "--verifier-flags".as_ref(),
            "0x1".as_ref(),
            driver.as_os_str(),
        ],
        script,
    );
    let out = &run.stdout;
    // dd: 0x6c bytes requested, tag 'abcd'.
    assert!(out.contains("9c000000  0000006c 64636261"), "{out}");
    // The 0x10 bytes before the block hold the pattern (the address's low byte).
    assert!(
        out.contains("9c000f80  90 90 90 90 90 90 90 90-90 90 90 90 90 90 90 90"),
        "{out}"
    );
    // The page after the block is not mapped.
    assert!(out.contains("9c001000  ?? ?? ?? ??"), "{out}");
    // `!pool` and `!verifier` say special pool.
    assert!(
        out.contains("Pool page 9c000f90 region is Special pool"),
        "{out}"
    );
    assert!(
        out.contains("*9c000f90 size:   6c special pool, Allocated, tag is abcd"),
        "{out}"
    );
    assert!(
        out.contains("Pool Allocations Succeeded SpecialPool 0x1"),
        "{out}"
    );
    assert!(out.contains("[X] (0x00000001) Special pool"), "{out}");
}

/// The low resources simulation (0x4) fails about 6% of allocations
/// (devtest/low-resources-simulation.md: the default probability), the
/// same ones for the same `--seed`: some seeds fail the scratch block of
/// `leak-on-error` alone and show its leak, 0xC4 / 0x62.
#[test]
fn low_resources_simulation_is_deterministic_and_finds_the_error_path_leak() {
    let driver = built(Arch::X86, Some(Fault::LeakOnError));
    let path = driver.to_str().expect("utf-8");
    let run = |seed: u64| {
        common::harness(&[
            "emulate",
            path,
            "--json",
            "--verifier-flags",
            "0xc",
            "--seed",
            &seed.to_string(),
        ])
        .verdict()
    };
    let mut leaked = 0;
    for seed in 0..=40 {
        let verdict = run(seed);
        let second_failed = verdict
            .notes
            .iter()
            .any(|note| note.starts_with("allocation 2 "));
        let first_failed = verdict
            .notes
            .iter()
            .any(|note| note.starts_with("allocation 1 "));
        if second_failed && !first_failed {
            leaked += 1;
            assert_eq!(
                verdict.bugcheck.map(|b| b.args[0]),
                Some(0x62),
                "seed {seed}"
            );
        } else if first_failed {
            assert_eq!(verdict.outcome(), Outcome::EntryFailed, "seed {seed}");
        } else {
            assert_eq!(verdict.exit_code(), ExitCode::Clean, "seed {seed}");
        }
        assert_eq!(
            verdict.pool_stats,
            run(seed).pool_stats,
            "seed {seed} repeats"
        );
    }
    assert!(leaked > 0, "no seed in 0..=40 failed the second allocation");
}

/// `harness lesson`: each lesson, driven by its own hints on stdin, ends
/// complete (exit 0) on both arches; input that stops early leaves it open
/// (exit 1).
#[test]
fn every_lesson_runs_to_the_end_from_its_hints() {
    for lesson in &harness::lesson::LESSONS {
        for arch in Arch::ALL {
            let name = lesson.fault.feature();
            let arch_name = arch.to_string();
            let args = [
                "lesson".as_ref(),
                name.as_ref(),
                "--arch".as_ref(),
                arch_name.as_ref(),
            ];
            // First pass: ask for a hint, then run what it says, step by step.
            let mut script = String::new();
            for _ in lesson.steps {
                script.push_str("hint\n");
            }
            let hints = common::harness_with_stdin(&args, &script);
            let commands: Vec<&str> = hints
                .stdout
                .lines()
                .filter_map(|line| line.strip_prefix("hint: "))
                .collect();
            // A hint does not move on: the first step's command each time.
            assert_eq!(commands.len(), lesson.steps.len(), "{name}");
            assert!(commands.iter().all(|command| *command == "g"), "{name}");
            let mut script = String::new();
            for step in lesson.steps {
                script.push_str(&step.hint.replace(
                    "{block}",
                    match arch {
                        Arch::X86 => "9c000f90",
                        Arch::X64 => "fffff8a0`10000f90",
                    },
                ));
                script.push('\n');
            }
            let run = common::harness_with_stdin(&args, &script);
            run.expect(ExitCode::Clean);
            assert!(
                run.stdout.contains("lesson complete"),
                "{name} {arch}: {}",
                run.stdout
            );
            let early = common::harness_with_stdin(&args, "g\n");
            early.expect(ExitCode::Unexpected);
        }
    }
}

/// `harness kd --seed` runs the low resources simulation as `emulate` does:
/// seed 36 fails `leak-on-error`'s scratch block, the session stops at 0xC4.
#[test]
fn kd_takes_the_low_resources_seed() {
    let driver = built(Arch::X86, Some(Fault::LeakOnError));
    let args = [
        "kd".as_ref(),
        "--verifier-flags".as_ref(),
        "0xc".as_ref(),
        "--seed".as_ref(),
        "36".as_ref(),
        driver.as_os_str(),
    ];
    let run = common::harness_with_stdin(&args, "g\n!verifier\nq\n");
    assert!(
        run.stdout.contains("Fatal System Error: 0x000000c4"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("Pool Allocations Failed                0x1"),
        "{}",
        run.stdout
    );
}

/// `tests/drivers/pool_frees.c`, `ExFreePool2` imported from ntoskrnl.exe
/// (MinGW's import library predates it).
fn pool_frees(variant: &str, arch: Arch, dir: &std::path::Path) -> std::path::PathBuf {
    let mut build = common::CBuild::new("pool_frees.c", variant);
    build
        .made_libraries
        .push(("ntoskrnl.exe", &["ExFreePool2@16"], false));
    build.build_in(arch, dir)
}

/// With the verifier off (flags 0) nt's own routines report the driver's
/// pool calls. A free through `ExFreePool` is one free (nt's `ExFreePool`
/// calls `ExFreePoolWithTag`: reporting it twice would judge a double free).
/// A big-pool block (two pages: no pool header) freed twice leaves the
/// release kernel's check to its big-page table, which no engine models:
/// cannot judge, never a pass; with pool tracking the verifier's 0xC4 / 0x13.
#[test]
fn without_the_verifier_a_free_is_seen_once_and_a_big_double_free_never_passes() {
    let dir = tempfile::tempdir().expect("dir");
    for arch in Arch::ALL {
        let once = pool_frees("FREE_POOL", arch, dir.path());
        for flags in ["0", "0x8"] {
            let verdict = judged(&once, flags);
            assert_eq!(verdict.exit_code(), ExitCode::Clean, "{arch} {flags}");
        }
        let big = pool_frees("BIG_TWICE", arch, dir.path());
        common::emulate_json(&big, &["--verifier-flags", "0"])
            .cannot_judge("a second time with the verifier off");
        let tracked = judged(&big, "0x8").bugcheck.expect("bug check");
        assert_eq!((tracked.code, tracked.args[0]), (0xC4, 0x13), "{arch}");
    }
}

/// Freeing one byte into a block: no block can start there (not aligned to
/// the pool header's size), 0xC4 / 0x16 with Arg3 the address, whatever
/// verifier flags are set (the WRK's `ExFreePoolSanityChecks`,
/// base/ntos/ex/pool.c; bug-check-0xc4: "free pool at a bad address").
#[test]
fn a_misaligned_free_is_c4_16() {
    let dir = tempfile::tempdir().expect("dir");
    for arch in Arch::ALL {
        let driver = pool_frees("MISALIGNED", arch, dir.path());
        for flags in ["0x8", "0x2"] {
            let bugcheck = judged(&driver, flags).bugcheck.expect("bug check");
            assert_eq!(
                (
                    bugcheck.code,
                    bugcheck.args[0],
                    bugcheck.args[1],
                    bugcheck.args[3]
                ),
                (0xC4, 0x16, 0, 0),
                "{arch} {flags}"
            );
            assert_eq!(bugcheck.args[2] % arch.pool_header_size(), 1, "{arch}");
            assert!(bugcheck.args[2] >= arch.kernel_base(), "{arch}");
        }
    }
}

/// `ExFreePool2` frees through nt's one path, so special pool checks the
/// slack there as at `ExFreePoolWithTag`: the byte written past the 0x1c-byte
/// block (in the slack up to the pool unit) is 0xC1 / 0x24 (Arg2 the byte;
/// bug-check-0xc1).
#[test]
fn an_overrun_freed_with_exfreepool2_is_c1_24() {
    let dir = tempfile::tempdir().expect("dir");
    for arch in Arch::ALL {
        let driver = pool_frees("OVERRUN_FREE2", arch, dir.path());
        let bugcheck = judged(&driver, "0x1").bugcheck.expect("bug check");
        assert_eq!((bugcheck.code, bugcheck.args[3]), (0xC1, 0x24), "{arch}");
        assert_eq!(bugcheck.args[1], bugcheck.args[0] + 0x1c, "{arch}");
    }
}

/// `!verifier`'s `RaiseIrqls` counts the raises the verifier's thunks see:
/// x86's call to `hal!KfRaiseIrql` (1), not x64's inline `mov cr8` (0).
/// `MicrosoftDocs` windows-driver-docs, debugger/-verifier.md (bit 0x8, the
/// IRQL log): "In 64-bit versions of Windows, some of the kernel functions
/// that raise or lower the IRQL are implemented as inline code rather than
/// as exported functions. Driver Verifier does not report IRQL changes made
/// by inline code".
#[test]
fn raise_irqls_counts_only_what_the_verifier_hooks() {
    for (arch, raises) in [(Arch::X86, "0x1"), (Arch::X64, "0x0")] {
        let driver = built(arch, Some(Fault::PagedAtDispatch));
        let run = common::harness_with_stdin(
            &[
                "kd".as_ref(),
                "--verifier-flags".as_ref(),
                "0x2".as_ref(),
                driver.as_os_str(),
            ],
            "g\n!verifier\nq\n",
        );
        let line = format!("  RaiseIrqls           {raises}\n");
        assert!(run.stdout.contains(&line), "{arch}: {}", run.stdout);
    }
}

/// nt's own code touching special pool: `RtlCopyUnicodeString` reading a
/// freed block is 0xCC, reading past a block's end 0xCD, writing a freed
/// block 0xCC (Arg1 the address, Arg2 0 = read / 1 = write, Arg3 the
/// instruction, in nt). The WRK's `KeBugCheck2`
/// (base/ntos/ke/bugcheck.c) turns a 0x50 on a special pool address into
/// 0xCC / 0xCD when the faulting instruction is in the kernel or HAL, into
/// 0xD5 / 0xD6 when it is in a driver (bug check pages 0xCC and 0xCD).
/// Without special pool both reads go unseen.
#[test]
fn nt_touching_special_pool_is_cc_or_cd() {
    let dir = tempfile::tempdir().expect("dir");
    for arch in Arch::ALL {
        for (variant, code, write) in [
            ("NT_READS_FREED", 0xCC, 0),
            ("NT_READS_PAST", 0xCD, 0),
            ("NT_WRITES_FREED", 0xCC, 1),
        ] {
            let driver = pool_frees(variant, arch, dir.path());
            let verdict = judged(&driver, "0x1");
            let bugcheck = verdict.bugcheck.clone().expect("bug check");
            assert_eq!(
                (bugcheck.code, bugcheck.args[1], bugcheck.args[3]),
                (code, write, 0),
                "{arch} {variant}"
            );
            let fault = verdict.fault.clone().expect("the fault");
            assert_eq!(bugcheck.args[2], fault.pc, "{arch} {variant}");
            // The instruction is nt's (a kernel address the driver's
            // symbols do not name), not the driver's.
            assert!(bugcheck.args[2] >= arch.kernel_base(), "{arch}");
            assert!(!fault.symbol.starts_with("nt_"), "{}", fault.symbol);
            assert_eq!(verdict.exit_code(), ExitCode::Violation);
            assert_eq!(
                judged(&driver, "0x8").exit_code(),
                ExitCode::Clean,
                "{arch} {variant}"
            );
        }
    }
}

/// `harness kd --verifier-flags 0`: the driver is not verified, so the kernel
/// does not announce it and its imports bind to nt's routines, not to the
/// verifier's thunks; the release kernel's 0xC2 / 0x07 stops the machine at
/// the second free, in `nt!ExFreePoolWithTag` (the WRK's pool.c).
#[test]
fn kd_without_the_verifier_stops_at_bad_pool_caller() {
    let driver = built(Arch::X86, Some(Fault::DoubleFree));
    let run = common::harness_with_stdin(
        &[
            "kd".as_ref(),
            "--verifier-flags".as_ref(),
            "0".as_ref(),
            driver.as_os_str(),
        ],
        "g\n!analyze -v\nkb\nq\n",
    );
    let out = &run.stdout;
    assert!(!out.contains("Driver Verifier: Enabled"), "{out}");
    assert!(out.contains("Fatal System Error: 0x000000c2"), "{out}");
    assert!(out.contains("BAD_POOL_CALLER (c2)"), "{out}");
    assert!(out.contains("nt!ExFreePoolWithTag+0x"), "{out}");
    assert!(out.contains("Sample!SampleUnload+0x"), "{out}");
    // No verifier, no thunk: the driver called nt's routine itself.
    assert!(!out.contains("VerifierExFreePoolWithTag"), "{out}");
}
