//! The driver's DbgPrint output: bounded per call (512 bytes, as Windows)
//! and in all, shown without handing control characters to the terminal,
//! and marked so that `analyze` never reads it as the verdict.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common;
use harness_core::arch::Arch;
use harness_core::verdict::{ExitCode, Outcome};

/// Both emulators that run x86 and x64 drivers.
const ENGINES: [&str; 2] = ["native", "speakeasy"];

fn dbgprint_driver(variant: &str, defines: &[String], arch: Arch, dir: &Path) -> PathBuf {
    let mut build = common::CBuild::new("dbgprint.c", variant);
    build.defines.extend_from_slice(defines);
    build.build_in(arch, dir)
}

/// Fields far wider than DbgPrint's 512 bytes: no panic (core's float
/// formatting asserted on `%.65535e`), no gigabytes for `%.2147483647d`,
/// and the first 511 characters as Windows sends them ("any single call to
/// DbgPrint will only transmit 512 bytes": Microsoft's DbgPrint docs).
#[test]
fn huge_fields_are_cut_at_511_characters_without_a_panic() {
    let dir = tempfile::tempdir().expect("dir");
    for arch in Arch::ALL {
        let driver = dbgprint_driver("HUGE_FIELDS", &[], arch, dir.path());
        for engine in ENGINES {
            let started = Instant::now();
            let run = common::emulate_json(&driver, &["--engine", engine]);
            let verdict = run.expect(ExitCode::Clean).verdict();
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{engine} {arch}"
            );
            assert!(
                verdict.debug_output.iter().all(|line| line.len() <= 511),
                "{engine} {arch}: {:?}",
                verdict.debug_output
            );
            if engine == "native" {
                let lines = &verdict.debug_output;
                assert_eq!(lines[0], format!("1.5{}", "0".repeat(508)), "{arch}");
                assert_eq!(lines[1], " ".repeat(511), "{arch}");
                assert_eq!(lines[2], format!("1.5{}", "0".repeat(508)), "{arch}");
                assert_eq!(lines[3], "0".repeat(511), "{arch}");
                assert_eq!(lines[4], "1.500 00042|", "{arch}");
            }
        }
    }
}

/// Float digits past the formatter's cap of 1000 are written out as the
/// zeros they are, where the buffer has room (`_snprintf`, not DbgPrint).
#[test]
fn float_digits_past_the_cap_are_zeros() {
    let dir = tempfile::tempdir().expect("dir");
    for arch in Arch::ALL {
        let driver = dbgprint_driver("SNPRINTF_FLOAT", &[], arch, dir.path());
        let verdict = common::emulate_json(&driver, &["--engine", "native"])
            .expect(ExitCode::Clean)
            .verdict();
        // "0." and 1200 digits: from offset 1190, the last 12 and the bar.
        assert_eq!(verdict.debug_output[0], "000000000000|", "{arch}");
    }
}

/// 400,000 DbgPrint lines: the verdict keeps the first MiB and says how
/// much it did not keep; stdout and memory stay bounded (they were
/// 182 MB of output and 690 MB of memory) and the verdict stands.
#[test]
fn a_flood_of_debug_output_is_capped_with_a_note() {
    let dir = tempfile::tempdir().expect("dir");
    let driver = dbgprint_driver("FLOOD", &["LINES=400000".into()], Arch::X64, dir.path());
    let measured = common::harness_measured(
        &[
            OsStr::new("emulate"),
            driver.as_os_str(),
            OsStr::new("--json"),
            OsStr::new("--max-instructions"),
            OsStr::new("1000000000"),
        ],
        None,
        &[],
        Duration::from_mins(2),
    );
    let run = &measured.run;
    let verdict = run.expect(ExitCode::Clean).verdict();
    assert!(run.stdout.len() < 2 << 20, "{} bytes", run.stdout.len());
    assert!(
        measured.peak_rss_kib < 80 * 1024,
        "{} KiB",
        measured.peak_rss_kib
    );
    let kept = verdict.debug_output.len();
    assert!((20_000..30_000).contains(&kept), "{kept} lines kept");
    assert_eq!(verdict.debug_output[0], "line 0 of a flood of debug output");
    let dropped = 400_000 - kept + 1; // and the unload routine's line
    assert!(
        verdict.notes.iter().any(|note| note.starts_with(&format!(
            "debug output kept up to 1 MiB: {dropped} later DbgPrint calls"
        ))),
        "{:?}",
        verdict.notes
    );
}

/// A driver's escape sequences (clear screen, window title, bell) reach
/// neither the report nor the kd transcript raw: they show as `\x1b`.
#[test]
fn control_characters_are_shown_not_sent_to_the_terminal() {
    let dir = tempfile::tempdir().expect("dir");
    let driver = dbgprint_driver("CONTROL", &[], Arch::X64, dir.path());
    let shown = r"clear\x1b[2J title\x1b]0;pwned\x07 bell\x07 back\x08 done";
    for engine in ENGINES {
        let run = common::harness(&[
            "emulate",
            driver.to_str().expect("utf-8"),
            "--engine",
            engine,
        ]);
        run.expect(ExitCode::Clean);
        assert!(run.stdout.contains(shown), "{engine}: {}", run.stdout);
        assert!(
            !run.stdout.contains(['\x1b', '\x07', '\x08']),
            "{engine}: {:?}",
            run.stdout
        );
        // JSON keeps the text as the driver printed it (JSON escapes it).
        let verdict = common::emulate_json(&driver, &["--engine", engine]).verdict();
        assert!(verdict.debug_output[0].contains("\x1b[2J"), "{engine}");
    }
    let run = common::harness_with_stdin(&[OsStr::new("kd"), driver.as_os_str()], "g\nq\n");
    assert!(run.stdout.contains(shown), "{}", run.stdout);
    assert!(
        !run.stdout.contains(['\x1b', '\x07', '\x08']),
        "{:?}",
        run.stdout
    );
}

/// A driver that prints a fake `*** Fatal System Error` block passes;
/// `analyze` of that very report reads back the same verdict, not the
/// driver's 0xC4 / 0x62 (the report marks the driver's lines).
#[test]
fn a_report_with_a_fake_bug_check_in_debug_output_reads_back_the_same() {
    let dir = tempfile::tempdir().expect("dir");
    let driver = dbgprint_driver("FAKE_BUGCHECK", &[], Arch::X64, dir.path());
    for engine in ENGINES {
        let run = common::harness(&[
            "emulate",
            driver.to_str().expect("utf-8"),
            "--engine",
            engine,
        ]);
        run.expect(ExitCode::Clean);
        assert!(
            run.stdout
                .contains("DbgPrint| *** Fatal System Error: 0x000000c4"),
            "{engine}: {}",
            run.stdout
        );
        let report = dir.path().join(format!("report-{engine}.txt"));
        std::fs::write(&report, &run.stdout).expect("write report");
        let back = common::harness(&["analyze", report.to_str().expect("utf-8"), "--json"]);
        let verdict = back.expect(ExitCode::Clean).verdict();
        assert_eq!(verdict.bugcheck, None, "{engine}");
        assert_eq!(verdict.outcome(), Outcome::Unloaded, "{engine}");
        assert!(verdict.leaks.is_empty(), "{engine}");
    }
}

/// The README's registry paths: Speakeasy is handed the native engine's
/// (Windows 7's `ControlSet001\services`, 0x6c bytes for Sample), not
/// `CurrentControlSet` (0x74).
#[test]
fn speakeasy_passes_the_native_engines_registry_path() {
    let built = common::driver(Arch::X64, true);
    let path = |engine: &str| {
        let verdict = common::emulate_json(&built.sys, &["--engine", engine])
            .expect(ExitCode::Violation)
            .verdict();
        let line = verdict.debug_output[0].clone();
        (line, verdict.leaks[0].bytes)
    };
    let native = path("native");
    assert_eq!(
        native,
        (
            r"original registry path: \REGISTRY\MACHINE\SYSTEM\ControlSet001\services\Sample"
                .to_owned(),
            0x6c
        )
    );
    assert_eq!(path("speakeasy"), native);
}
