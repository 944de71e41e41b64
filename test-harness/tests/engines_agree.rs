//! Issue 19: one truth across engines. The same driver gives the same
//! verdict under each engine that can run it, side by side: x86 drivers under
//! 32-bit Wine against the native engine, and DbgPrint text split over calls
//! as kd shows it.
use crate::common;
use crate::common::wine;

use harness_core::arch::Arch;
use harness_core::verdict::Verdict;

/// The registry path the driver printed first ("original registry path:"
/// for Sample.sys), if any.
fn registry_path(verdict: &Verdict) -> Option<String> {
    verdict.debug_output.first().and_then(|line| {
        line.strip_prefix("original registry path: ")
            .map(str::to_owned)
    })
}

/// What must agree between two engines. Each machine passes its own registry
/// path (Wine: the engine's service name): it is replaced by a placeholder in
/// the debug output and taken off the leak sizes (Sample.sys's leak is its
/// copy of the path).
fn comparable(verdict: &Verdict) -> impl PartialEq + std::fmt::Debug {
    let path = registry_path(verdict);
    let path_bytes = path.as_ref().map_or(0, |path| {
        2 * u64::try_from(path.encode_utf16().count()).expect("length")
    });
    let output: Vec<String> = verdict
        .debug_output
        .iter()
        .map(|line| {
            path.as_ref().map_or_else(
                || line.clone(),
                |path| line.replace(path.as_str(), "<path>"),
            )
        })
        .collect();
    let leaks: Vec<(String, u64)> = verdict
        .leaks
        .iter()
        .map(|leak| (leak.tag.clone(), leak.bytes - path_bytes))
        .collect();
    (
        verdict.exit_code() as u8,
        verdict.entry_status,
        verdict.stage,
        verdict
            .bugcheck
            .as_ref()
            .map(|bugcheck| (bugcheck.code, bugcheck.args[0], bugcheck.args[3])),
        leaks,
        output,
    )
}

/// The x86 Sample.sys, clean and leaky, and a real x86 driver with a device
/// and a symbolic link and no pool use of its own: the same verdict under
/// Wine (32-bit winedevice.exe, driven by the i686 samplectl.exe) as under
/// the native engine. Without 32-bit Wine the engine says that, in one line.
#[test]
fn x86_drivers_under_wine_equal_native() {
    let dir = tempfile::tempdir().expect("dir");
    let device_link = common::c_driver_from("one_truth.c", "DEVICE_LINK", Arch::X86, dir.path());
    let drivers = [
        common::driver(Arch::X86, false).sys,
        common::driver(Arch::X86, true).sys,
        device_link,
    ];
    let _serial = wine::serial();
    for driver in &drivers {
        let native = common::emulate_json(driver, &[]);
        let wine = wine::emulate(driver, &[]);
        if !wine::wine32_installed() {
            wine.cannot_judge("32-bit Wine (wine32:i386)");
            continue;
        }
        assert_eq!(
            wine.code,
            native.code,
            "{}: {}",
            driver.display(),
            wine.stderr
        );
        assert_eq!(wine.stderr, "", "nothing on stderr");
        let (wine, native) = (wine.verdict(), native.verdict());
        assert_eq!(wine.engine, harness_core::verdict::Engine::Wine);
        assert_eq!(wine.arch, Some(Arch::X86));
        assert_eq!(
            comparable(&wine),
            comparable(&native),
            "{}",
            driver.display()
        );
    }
    if wine::wine32_installed() {
        // They were driven by the i686 samplectl.exe (a 32-bit program, as on
        // 32-bit Windows), which the engine keeps in the prefix beside the
        // x64 one.
        let in_prefix = wine::prefix().join("drive_c/harness/samplectl-x86.exe");
        let built = harness_build::driver_build::samplectl_up_to_date(
            Arch::X86,
            std::time::Duration::from_mins(10),
        )
        .expect("the i686 samplectl.exe");
        assert_eq!(
            harness_core::pe::PeImage::read(&in_prefix)
                .expect("samplectl-x86.exe in the prefix")
                .arch,
            Some(Arch::X86)
        );
        assert!(
            std::fs::read(&in_prefix).ok() == std::fs::read(&built).ok(),
            "the prefix's samplectl-x86.exe is the i686 build"
        );
    }
}

/// Speakeasy with a `--timeout` as short as its start-up (1 s: Python and
/// the Speakeasy import take ~0.3-1 s here). Seen before: exit 4 "DriverEntry
/// did not return (still running after 1 s)", stage `in_entry`, in 8 of 17
/// runs of Sample.sys, whose DriverEntry takes milliseconds. Now the driver's
/// second starts with DriverEntry, and a start-up that uses it all is the
/// engine's (exit 2, one line naming it). A driver that loops still gets
/// "did not return" after it printed its first line.
#[test]
fn speakeasy_start_up_time_is_never_the_drivers() {
    use harness_core::verdict::{ExitCode, Limit, Stage};
    let dir = tempfile::tempdir().expect("dir");
    let leaky = common::driver(Arch::X64, true).sys;
    let looping = common::c_driver("LOOP", Arch::X64, dir.path());
    // A start-up made longer than the budget for sure: the import of
    // Speakeasy sleeps 1.5 s first (an import hook in sitecustomize.py).
    let slow = dir.path().join("slow");
    std::fs::create_dir(&slow).expect("dir");
    std::fs::write(
        slow.join("sitecustomize.py"),
        "import sys, time\n\
         class Slow:\n    \
             def find_spec(self, name, path=None, target=None):\n        \
                 if name == 'speakeasy':\n            time.sleep(1.5)\n        \
                 return None\n\
         sys.meta_path.insert(0, Slow())\n",
    )
    .expect("write");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_harness"))
        .args([
            "emulate",
            leaky.to_str().expect("utf-8"),
            "--engine",
            "speakeasy",
        ])
        .args(["--json", "--timeout", "1"])
        .env("PYTHONPATH", &slow)
        .output()
        .expect("harness runs");
    common::Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
    .cannot_judge("Speakeasy did not start DriverEntry within the --timeout of 1 s");
    for _ in 0..4 {
        for (driver, loops) in [(&leaky, false), (&looping, true)] {
            let run = common::emulate_json(driver, &["--engine", "speakeasy", "--timeout", "1"]);
            if run.code == ExitCode::CannotJudge as i32 {
                run.cannot_judge("Speakeasy did not start DriverEntry within the --timeout of 1 s");
                continue;
            }
            let verdict = run.verdict();
            if loops {
                run.expect(ExitCode::LoadProblem);
                assert_eq!(verdict.stage, Stage::InEntry);
                assert_eq!(verdict.limit, Some(Limit::Time { seconds: 1 }));
                assert!(
                    verdict.debug_output[0].starts_with("loading from "),
                    "DriverEntry ran before the limit: {:?}",
                    verdict.debug_output
                );
            } else {
                run.expect(ExitCode::Violation);
                assert_eq!(verdict.stage, Stage::Unloaded);
            }
        }
    }
}

/// A line printed in two DbgPrint calls, the first without a newline: kd
/// shows the text as the kernel's debug print buffer holds it, one line
/// `Entering DriverEntryLeaving DriverEntry`, and every engine shows it so.
/// Wine's `vDbgPrintExWithPrefix` (dlls/ntdll/rtl.c) adds the newline a text
/// lacks before tracing it; the engine's print probe has each print also
/// raise `DBG_PRINTEXCEPTION_C`, whose trace carries the text as printed.
#[test]
fn unterminated_debug_print_is_one_line_as_kd_shows_it_wine_included() {
    let dir = tempfile::tempdir().expect("dir");
    for arch in Arch::ALL {
        let driver = common::c_driver_from("one_truth.c", "UNTERMINATED_PRINT", arch, dir.path());
        for engine in ["native", "speakeasy"] {
            let run = common::emulate_json(&driver, &["--engine", engine]);
            run.expect(harness_core::verdict::ExitCode::Clean);
            assert_eq!(
                run.verdict().debug_output,
                ["Entering DriverEntryLeaving DriverEntry"],
                "{engine} {arch}"
            );
        }
        if arch == Arch::X86 && !wine::wine32_installed() {
            continue;
        }
        let _serial = wine::serial();
        let run = wine::emulate(&driver, &[]);
        run.expect(harness_core::verdict::ExitCode::Clean);
        assert_eq!(
            run.verdict().debug_output,
            ["Entering DriverEntryLeaving DriverEntry"],
            "wine {arch}"
        );
    }
}

/// The kernel printf's counted strings (`%wZ`/`%lZ` a `UNICODE_STRING`, `%Z`/`%hZ`
/// an `ANSI_STRING`, by address; Microsoft's DbgPrint page,
/// wdm/nf-wdm-dbgprint) print alike on every engine: width kept, precision
/// ignored, and "(null)" for a NULL string or Buffer, as the C runtime's
/// output.c has it; the arguments after them are read as Windows reads them.
/// Wine's own printf has no `Z` (it printed "Z" and misread every later
/// argument): the engine's print probe rewrites the format first.
#[test]
fn counted_strings_print_alike_on_every_engine_wine_included() {
    let dir = tempfile::tempdir().expect("dir");
    for arch in Arch::ALL {
        let pointer = match arch {
            Arch::X64 => "0000000000001000",
            Arch::X86 => "00001000",
        };
        let expected = [
            "[abcd] [hello] [abcd] [hello]".to_owned(),
            "[abcd    |   hello] [  abcd] [abcd] [hello]".to_owned(),
            "[(null)] [(null)] [(null)] 100%".to_owned(),
            format!("[abcdX] [   42|x  |1234567890|-5|q|{pointer}] [abcd]"),
        ];
        let driver = common::c_driver_from("one_truth.c", "COUNTED_STRINGS", arch, dir.path());
        for engine in ["native", "speakeasy"] {
            let run = common::emulate_json(&driver, &["--engine", engine]);
            run.expect(harness_core::verdict::ExitCode::Clean);
            assert_eq!(run.verdict().debug_output, expected, "{engine} {arch}");
        }
        if arch == Arch::X86 && !wine::wine32_installed() {
            continue;
        }
        let _serial = wine::serial();
        let run = wine::emulate(&driver, &[]);
        run.expect(harness_core::verdict::ExitCode::Clean);
        assert_eq!(run.verdict().debug_output, expected, "wine {arch}");
    }
}
