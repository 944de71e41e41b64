//! Issue 11: the native engine. The real Sample.sys builds and the MinGW C
//! drivers run on the harness's own emulated kernel: at kernel addresses,
//! with Windows 7's registry path and pool blocks, and the same verdicts
//! Speakeasy gives.

use crate::common;

use std::sync::Arc;
use std::time::Instant;

use harness_core::arch::Arch;
use harness_core::events::Event;
use harness_core::nt::PoolType;
use harness_core::pe::PeImage;
use harness_core::verdict::{Engine, ExitCode, Outcome, Verdict};
use harness_engines::native;
use harness_ntemu::{machine::Options, pool};

/// Pages for a pool that lives outside a machine.
struct Grow;

impl pool::Grow for Grow {
    fn grow(&mut self, _: u64, _: u64) -> bool {
        true
    }
}

fn native(driver: &std::path::Path, extra: &[&str]) -> common::Run {
    let mut args = vec!["--engine", "native"];
    args.extend_from_slice(extra);
    common::emulate_json(driver, &args)
}

fn leaky(arch: Arch) -> Verdict {
    let built = common::driver(arch, true);
    let verdict = native(&built.sys, &[])
        .expect(ExitCode::Violation)
        .verdict();
    assert_eq!(verdict.engine, Engine::Native);
    let bugcheck = verdict.bugcheck.as_ref().expect("bug check");
    assert_eq!(
        (bugcheck.code, bugcheck.args[0], bugcheck.args[3]),
        (0xC4, 0x62, 1)
    );
    assert!(
        bugcheck.args[1] >= arch.kernel_base(),
        "Arg2: the driver name in kernel memory"
    );
    let [leak] = verdict.leaks.as_slice() else {
        panic!("one leak: {:?}", verdict.leaks)
    };
    // The walkthrough's Windows 7 path: 0x6c bytes.
    assert_eq!(
        verdict.debug_output[0],
        "original registry path: \\REGISTRY\\MACHINE\\SYSTEM\\ControlSet001\\services\\Sample"
    );
    assert_eq!(leak.bytes, 0x6c);
    assert_eq!(
        (leak.tag.as_str(), leak.pool),
        ("abcd", PoolType::PagedPool)
    );
    assert!(
        leak.caller.starts_with("Sample!DriverEntry+0x"),
        "{}",
        leak.caller
    );
    assert!(leak.address >= arch.kernel_base(), "0x{:x}", leak.address);
    verdict
}

#[test]
fn x86_leak_is_in_kernel_memory_with_the_windows_7_path() {
    let verdict = leaky(Arch::X86);
    assert!(verdict.leaks[0].address >= 0x8000_0000);
}

#[test]
fn x64_leak_is_in_canonical_kernel_space() {
    let verdict = leaky(Arch::X64);
    assert!(verdict.leaks[0].address >= 0xFFFF_8000_0000_0000);
}

#[test]
fn clean_builds_unload_clean() {
    for arch in Arch::ALL {
        let built = common::driver(arch, false);
        let verdict = native(&built.sys, &[]).expect(ExitCode::Clean).verdict();
        assert_eq!(verdict.outcome(), Outcome::Unloaded);
        assert_eq!(verdict.debug_output.len(), 5, "{:?}", verdict.debug_output);
        assert_eq!(verdict.debug_output[2], "Windows Version: 6.1.7601");
    }
}

#[test]
fn the_verifier_length_0x70_comes_from_the_pool_block() {
    // The pool allocator's real block for the rounded request: 0x78 on x86
    // (8-byte header), 0x80 on x64 (16-byte header); the verifier shows it
    // without the header.
    let built = common::driver(Arch::X86, true);
    let run = common::harness(&["emulate", built.sys.to_str().expect("path")]);
    run.expect(ExitCode::Violation);
    assert!(run.stdout.contains("0x00000070  abcd"), "{}", run.stdout);
    let tag = u32::from_le_bytes(*b"abcd");
    for (arch, block) in [(Arch::X86, 0x78), (Arch::X64, 0x80)] {
        let mut pool = pool::Pool::new(arch);
        // The verifier's thunk rounds 0x6c to 0x70 and marks the type 0xc1.
        let (allocated, _) = pool.allocate(0xc1, 0x70, tag, &mut Grow).expect("block");
        assert_eq!(allocated.size, block, "{arch}");
        assert_eq!(allocated.size - arch.pool_header_size(), 0x70);
    }
}

#[test]
fn os_version_selects_the_profile() {
    let built = common::driver(Arch::X64, false);
    let verdict = native(&built.sys, &["--os-version", "10.0.19045"]).verdict();
    assert_eq!(verdict.debug_output[2], "Windows Version: 10.0.19045");
    assert!(
        verdict.debug_output[0].ends_with("\\ControlSet001\\Services\\Sample"),
        "Windows 10 spells it Services: {}",
        verdict.debug_output[0]
    );
}

#[test]
fn a_control_device_with_a_symbolic_link_and_a_spin_lock_unloads_clean() {
    let dir = tempfile::tempdir().expect("dir");
    for arch in Arch::ALL {
        let driver = common::c_driver_from("wdm_features.c", "CONTROL_DEVICE", arch, dir.path());
        let verdict = native(&driver, &[]).expect(ExitCode::Clean).verdict();
        let lines = &verdict.debug_output;
        assert!(
            lines[0]
                .starts_with("created \\DosDevices\\SampleCtl -> \\Device\\SampleCtl (extension "),
            "{arch}: {lines:?}"
        );
        // The inline KeGetCurrentThread() (fs:/gs:) finds the same thread.
        assert_eq!(lines[1], "current thread matches", "{arch}");
        // DISPATCH_LEVEL inside the lock, PASSIVE_LEVEL after it; %I64x and %-4s.
        assert_eq!(
            lines[2], "irql inside the lock 2, after 0, count 1, ok 1122334455667788 ab  |",
            "{arch}"
        );
        assert_eq!(lines.last().map(String::as_str), Some("unloaded"));
    }
}

/// Runs share nothing: 300 in one process each see one allocation and end.
/// (`cargo bench` times runs; this checks they stay independent.)
#[test]
fn many_runs_in_one_process() {
    let built = common::driver(Arch::X64, true);
    let image = PeImage::read(&built.sys).expect("image");
    let driver = native::prepare(&built.sys, &image).expect("prepared");
    let started = Instant::now();
    for run in 0..300 {
        let events = native::run(&Arc::clone(&driver), &Options::default()).expect("runs");
        let leaks = events
            .iter()
            .filter(|event| matches!(event, Event::PoolCall { routine, .. } if routine.allocates()))
            .count();
        assert_eq!(leaks, 1, "run {run}");
        assert!(
            matches!(
                events.last(),
                Some(Event::UnloadReturn | Event::WorkerReturn { .. } | Event::End)
            ),
            "run {run}: {:?}",
            events.last()
        );
    }
    println!("300 native runs: {:.2} s", started.elapsed().as_secs_f64());
}

#[test]
fn native_and_speakeasy_agree_on_sample_and_the_c_corpus() {
    let dir = tempfile::tempdir().expect("dir");
    let mut drivers = Vec::new();
    for arch in Arch::ALL {
        for leak in [false, true] {
            drivers.push(common::driver(arch, leak).sys);
        }
        for variant in [
            "MULTI_LEAK",
            "CRASH",
            "NO_UNLOAD",
            "DOUBLE_FREE",
            "BAD_FREE",
            "ZERO_ALLOC",
        ] {
            drivers.push(common::c_driver(variant, arch, dir.path()));
        }
    }
    for driver in drivers {
        let ours = native(&driver, &[]);
        let theirs = common::emulate_json(&driver, &["--engine", "speakeasy"]);
        assert_eq!(
            ours.code,
            theirs.code,
            "{}: {} / {}",
            driver.display(),
            ours.stderr,
            theirs.stderr
        );
        let (ours, theirs) = (ours.verdict(), theirs.verdict());
        let essentials = |verdict: &Verdict| {
            (
                verdict.outcome(),
                // 0xC4 / 0x13's Arg4 is the freed block's pool header,
                // which only the native engine's pool has (Speakeasy: 0).
                verdict.bugcheck.as_ref().map(|b| {
                    let arg4 = (b.code, b.args[0]) != (0xC4, 0x13);
                    (b.code, b.args[0], arg4.then_some(b.args[3]))
                }),
                verdict
                    .leaks
                    .iter()
                    .map(|leak| (leak.tag.clone(), leak.bytes, leak.pool))
                    .collect::<Vec<_>>(),
                verdict.debug_output.clone(),
            )
        };
        assert_eq!(
            essentials(&ours),
            essentials(&theirs),
            "{}",
            driver.display()
        );
    }
}
