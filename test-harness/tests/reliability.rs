//! Reliability: the harness never takes what it should not (the user's
//! directories, unbounded memory or time, a FIFO's endless read), and the
//! engine's own limits are reported as such.

use crate::common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{CBuild, Measured, Run};
use harness_core::arch::Arch;
use harness_core::verdict::{ExitCode, FaultKind, Outcome};

/// Asserts exit `code`, one line on stderr containing `expect`, no panic or
/// traceback.
fn one_line(run: &Run, code: ExitCode, expect: &str) {
    run.expect(code);
    assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(expect),
        "{expect:?} not in {}",
        run.stderr
    );
    assert!(!run.stderr.contains("Traceback") && !run.stderr.contains("panicked"));
}

fn os(text: &str) -> &OsStr {
    OsStr::new(text)
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// `harness setup` with `HARNESS_VENV` (and `PATH`, `HOME`, ...) as given, never
/// an interpreter from the environment.
fn setup(env: &[(&str, Option<&OsStr>)], cwd: Option<&Path>) -> Run {
    let mut all: Vec<(&str, Option<&OsStr>)> = vec![("HARNESS_PYTHON", None)];
    all.extend_from_slice(env);
    common::harness_measured(&[os("setup")], cwd, &all, Duration::from_mins(2)).run
}

#[test]
fn harness_venv_naming_a_users_directory_is_refused_untouched() {
    let dir = tempfile::tempdir().expect("dir");
    let mine = dir.path().join("projects");
    std::fs::create_dir(&mine).expect("mkdir");
    std::fs::write(mine.join("thesis.txt"), "years of work").expect("write");
    let run = setup(&[("HARNESS_VENV", Some(mine.as_os_str()))], None);
    one_line(
        &run,
        ExitCode::CannotJudge,
        "not empty and not a virtualenv made by the harness",
    );
    assert_eq!(listing(&mine), ["thesis.txt"]);
    assert_eq!(
        std::fs::read_to_string(mine.join("thesis.txt")).expect("read"),
        "years of work"
    );
    assert_eq!(listing(dir.path()), ["projects"]);
}

#[test]
fn harness_venv_naming_a_file_is_refused_and_leaves_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("notes");
    std::fs::write(&file, "keep me").expect("write");
    let run = setup(&[("HARNESS_VENV", Some(file.as_os_str()))], None);
    one_line(&run, ExitCode::CannotJudge, "not a directory");
    assert_eq!(std::fs::read_to_string(&file).expect("read"), "keep me");
    assert_eq!(
        listing(dir.path()),
        ["notes"],
        "no notes.partial or lock left"
    );
}

/// A python3 that makes a "virtualenv" holding a fake interpreter, or fails
/// as told, so that setup's own logic runs without an 86 MB pip install.
fn fake_python(dir: &Path, venv_works: bool) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("fakebin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    let script = if venv_works {
        "#!/bin/sh\n# python3 -m venv DIR\nmkdir -p \"$3/bin\"\nprintf '#!/bin/sh\\nexit 0\\n' > \"$3/bin/python\"\nchmod +x \"$3/bin/python\"\n"
    } else {
        "#!/bin/sh\necho 'Error: ensurepip is not available' >&2\nexit 1\n"
    };
    let python = bin.join("python3");
    std::fs::write(&python, script).expect("write");
    std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    bin
}

#[test]
fn setup_creates_nothing_outside_the_named_directory() {
    for works in [false, true] {
        let dir = tempfile::tempdir().expect("dir");
        let bin = fake_python(dir.path(), works);
        let parent = dir.path().join("parent");
        std::fs::create_dir(&parent).expect("mkdir");
        let venv = parent.join("speakeasy");
        let path = std::env::join_paths([bin.as_path(), Path::new("/usr/bin"), Path::new("/bin")])
            .expect("PATH");
        let run = setup(
            &[
                ("HARNESS_VENV", Some(venv.as_os_str())),
                ("PATH", Some(path.as_os_str())),
            ],
            None,
        );
        if works {
            run.expect(ExitCode::Clean);
            let python = venv.join("venv/bin/python");
            assert_eq!(run.stdout.trim(), python.to_str().expect("utf-8"));
            assert!(venv.join("venv/.harness-ready").is_file());
            // A second run finds it ready and changes nothing.
            let again = setup(
                &[
                    ("HARNESS_VENV", Some(venv.as_os_str())),
                    ("PATH", Some(path.as_os_str())),
                ],
                None,
            );
            again.expect(ExitCode::Clean);
            assert!(!again.stderr.contains("installing"), "{}", again.stderr);
        } else {
            // The "first use: installing" progress line, then the one-line error.
            run.expect(ExitCode::CannotJudge);
            let lines: Vec<&str> = run.stderr.trim().lines().collect();
            assert_eq!(lines.len(), 2, "{}", run.stderr);
            assert!(lines[0].contains("first use: installing Speakeasy"));
            assert!(
                lines[1].contains("python3 -m venv failed"),
                "{}",
                run.stderr
            );
        }
        assert_eq!(
            listing(&parent),
            ["speakeasy"],
            "nothing beside it ({works})"
        );
        for name in listing(&venv) {
            assert!(
                [".harness-venv", ".setup-lock", "venv"].contains(&name.as_str()),
                "{name} left in {}",
                venv.display()
            );
        }
    }
}

#[test]
fn empty_or_relative_home_is_refused_and_nothing_lands_in_the_working_directory() {
    for (home, cache) in [("", ""), ("relative", "also-relative")] {
        let cwd = tempfile::tempdir().expect("dir");
        let run = setup(
            &[
                ("HARNESS_VENV", None),
                ("HOME", Some(os(home))),
                ("XDG_CACHE_HOME", Some(os(cache))),
            ],
            Some(cwd.path()),
        );
        one_line(
            &run,
            ExitCode::CannotJudge,
            "neither HOME nor XDG_CACHE_HOME names an absolute directory",
        );
        assert!(listing(cwd.path()).is_empty(), "{:?}", listing(cwd.path()));
    }
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo");
    assert!(status.success());
}

#[test]
fn a_fifo_named_like_the_pdb_does_not_hang() {
    let built = common::driver(Arch::X64, false);
    let dir = tempfile::tempdir().expect("dir");
    let sys = dir.path().join("Sample.sys");
    std::fs::copy(&built.sys, &sys).expect("copy");
    mkfifo(&dir.path().join("Sample.pdb"));
    let measured = common::harness_measured(
        &[os("emulate"), sys.as_os_str(), os("--json")],
        None,
        &[],
        Duration::from_mins(1),
    );
    measured.run.expect(ExitCode::Clean);
    let verdict = measured.run.verdict();
    assert_eq!(verdict.outcome(), Outcome::Unloaded);
}

#[test]
fn fifos_and_devices_are_refused_quickly() {
    let dir = tempfile::tempdir().expect("dir");
    let fifo = dir.path().join("kd.txt");
    mkfifo(&fifo);
    for command in ["analyze", "emulate"] {
        for input in [fifo.as_os_str(), os("/dev/zero")] {
            let measured =
                common::harness_measured(&[os(command), input], None, &[], Duration::from_secs(20));
            one_line(&measured.run, ExitCode::CannotJudge, "not a regular file");
            assert!(measured.elapsed < Duration::from_secs(10), "{command}");
            assert!(
                measured.peak_rss_kib < 200 << 10,
                "{command}: {} KiB",
                measured.peak_rss_kib
            );
        }
    }
}

#[test]
fn a_driver_file_named_like_an_option_runs() {
    let built = common::driver(Arch::X64, false);
    let dir = tempfile::tempdir().expect("dir");
    std::fs::copy(&built.sys, dir.path().join("-evil.sys")).expect("copy");
    let measured = common::harness_measured(
        &[os("emulate"), os("--json"), os("--"), os("-evil.sys")],
        Some(dir.path()),
        &[],
        Duration::from_mins(2),
    );
    measured.run.expect(ExitCode::Clean);
    assert_eq!(measured.run.verdict().driver, "-evil.sys");
}

/// Builds `reliability.c` with `-DVARIANT_<variant>`.
fn reliability_driver(variant: &str, arch: Arch, dir: &Path, defines: &[&str]) -> PathBuf {
    let mut build = CBuild::new("reliability.c", variant);
    build.defines = defines.iter().map(|define| (*define).to_owned()).collect();
    build.build_in(arch, dir)
}

#[test]
fn divide_error_is_0x7e_integer_divide_by_zero_on_both_arches() {
    let dir = tempfile::tempdir().expect("dir");
    for arch in Arch::ALL {
        let driver = reliability_driver("DIVIDE", arch, dir.path(), &[]);
        let run = common::emulate_json(&driver, &[]);
        let verdict = run.expect(ExitCode::Violation).verdict();
        let bugcheck = verdict.bugcheck.as_ref().expect("bug check");
        assert_eq!(
            (bugcheck.code, bugcheck.args[0]),
            (0x7E, 0xC000_0094),
            "{arch}"
        );
        let fault = verdict.fault.as_ref().expect("fault");
        assert_eq!(fault.kind, FaultKind::DivideError);
        assert!(fault.symbol.contains("!DriverEntry+0x"), "{}", fault.symbol);
    }
}

#[test]
fn dbgprint_transmits_at_most_511_characters_per_call() {
    let dir = tempfile::tempdir().expect("dir");
    for arch in Arch::ALL {
        let driver = reliability_driver("DBGPRINT_HUGE", arch, dir.path(), &[]);
        let measured = common::harness_measured(
            &[os("emulate"), driver.as_os_str(), os("--json")],
            None,
            &[],
            Duration::from_mins(1),
        );
        let verdict = measured.run.expect(ExitCode::Clean).verdict();
        // "%*d|" with a width of 100,000,000: cut at 511 characters, as
        // Windows cuts it; the next call's text follows.
        assert_eq!(
            verdict.debug_output.first().map(String::as_str),
            Some(format!("{}head-tail", " ".repeat(511)).as_str()),
            "{arch}"
        );
        assert!(
            measured.run.stdout.len() < 16 << 10,
            "{arch}: {} bytes",
            measured.run.stdout.len()
        );
        assert!(
            measured.peak_rss_kib < 300 << 10,
            "{arch}: {} KiB",
            measured.peak_rss_kib
        );
    }
}

#[test]
fn more_pool_than_the_adapter_has_is_the_engines_limit() {
    let dir = tempfile::tempdir().expect("dir");
    let driver = reliability_driver("POOL_HOG", Arch::X64, dir.path(), &[]);
    let measured = common::harness_measured(
        &[
            os("emulate"),
            driver.as_os_str(),
            os("--engine"),
            os("speakeasy"),
        ],
        None,
        &[],
        Duration::from_mins(1),
    );
    one_line(
        &measured.run,
        ExitCode::CannotJudge,
        "hit its own limit: the emulated pool holds at most 1024 MiB",
    );
    assert!(
        measured.peak_rss_kib < 600 << 10,
        "{} KiB",
        measured.peak_rss_kib
    );
}

#[test]
fn many_allocations_take_linear_time() {
    let dir = tempfile::tempdir().expect("dir");
    let driver = reliability_driver("ALLOC_MANY", Arch::X64, dir.path(), &["ALLOC_COUNT=5000"]);
    let measured = common::harness_measured(
        &[
            os("emulate"),
            driver.as_os_str(),
            os("--json"),
            os("--max-instructions"),
            os("50000000"),
        ],
        None,
        &[],
        Duration::from_mins(2),
    );
    let verdict = measured.run.expect(ExitCode::Clean).verdict();
    assert_eq!(verdict.pool_stats.succeeded, 5000);
    assert_eq!(verdict.debug_output, ["allocated 5000", "freed 5000"]);
    // 5,000 allocations and frees: about 5 s here (the quadratic pool cost
    // that made 40,000 take 385 s is gone).
    assert!(
        measured.elapsed < Duration::from_mins(1),
        "{:?}",
        measured.elapsed
    );
}

#[test]
fn too_many_kernel_calls_is_the_engines_limit_not_a_hang() {
    let dir = tempfile::tempdir().expect("dir");
    let driver = reliability_driver("API_FLOOD", Arch::X64, dir.path(), &[]);
    let Measured { run, .. } = common::harness_measured(
        &[
            os("emulate"),
            driver.as_os_str(),
            os("--engine"),
            os("speakeasy"),
            os("--max-instructions"),
            os("100000000"),
            // The default 100,000 calls take Speakeasy about two minutes;
            // the limit is the same code path at any value.
            os("--max-kernel-calls"),
            os("2000"),
            os("--timeout"),
            os("60"),
        ],
        None,
        &[],
        Duration::from_mins(2),
    );
    one_line(
        &run,
        ExitCode::CannotJudge,
        "hit its own limit: Speakeasy stops a driver routine after 2000 calls to the kernel (--max-kernel-calls)",
    );
    assert!(!run.stderr.contains("did not return"));
}

#[test]
fn the_timeout_covers_the_whole_run() {
    let dir = tempfile::tempdir().expect("dir");
    let driver = common::c_driver("LOOP", Arch::X64, dir.path());
    let measured = common::harness_measured(
        &[
            os("emulate"),
            driver.as_os_str(),
            os("--json"),
            os("--timeout"),
            os("3"),
            os("--max-instructions"),
            os("100000000000"),
        ],
        None,
        &[],
        Duration::from_secs(30),
    );
    let verdict = measured.run.expect(ExitCode::LoadProblem).verdict();
    assert_eq!(verdict.outcome(), Outcome::EntryDidNotReturn);
    assert_eq!(
        verdict.limit,
        Some(harness_core::verdict::Limit::Time { seconds: 3 })
    );
    assert!(
        measured.elapsed < Duration::from_secs(5),
        "{:?}",
        measured.elapsed
    );
}

/// Offset of the PE header and of the first section header.
fn pe_offsets(bytes: &[u8]) -> (usize, usize) {
    let pe =
        usize::try_from(u32::from_le_bytes(bytes[0x3c..0x40].try_into().expect("4"))).expect("pe");
    let optional = usize::from(u16::from_le_bytes(
        bytes[pe + 20..pe + 22].try_into().expect("2"),
    ));
    (pe, pe + 24 + optional)
}

#[test]
fn unbounded_images_are_refused_before_any_engine_maps_them() {
    let built = common::driver(Arch::X86, false);
    let original = std::fs::read(&built.sys).expect("sys");
    let (pe, sections) = pe_offsets(&original);
    let dir = tempfile::tempdir().expect("dir");
    // Section 2 (.data or .rdata) claims RVA 0x80000000: 8.4 GB and 46 s before.
    let mut far = original.clone();
    far[sections + 40 + 12..sections + 40 + 16].copy_from_slice(&0x8000_0000_u32.to_le_bytes());
    // SizeOfImage of almost 2 GiB: 55-70 s before.
    let mut huge = original.clone();
    huge[pe + 24 + 56..pe + 24 + 60].copy_from_slice(&0x7FFF_0000_u32.to_le_bytes());
    // Sections that overlap.
    let mut overlapping = original;
    let first_rva: [u8; 4] = overlapping[sections + 12..sections + 16]
        .try_into()
        .expect("4");
    overlapping[sections + 40 + 12..sections + 40 + 16].copy_from_slice(&first_rva);
    for (name, bytes, code, expect) in [
        (
            "far.sys",
            far,
            ExitCode::LoadRefused,
            "ends beyond SizeOfImage",
        ),
        (
            "huge.sys",
            huge,
            ExitCode::CannotJudge,
            "larger than the 256 MiB the harness maps",
        ),
        (
            "overlap.sys",
            overlapping,
            ExitCode::LoadRefused,
            "overlaps",
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write");
        let measured = common::harness_measured(
            &[os("emulate"), path.as_os_str(), os("--timeout"), os("5")],
            None,
            &[],
            Duration::from_secs(20),
        );
        one_line(&measured.run, code, expect);
        assert!(
            measured.elapsed < Duration::from_secs(5),
            "{name}: {:?}",
            measured.elapsed
        );
        assert!(
            measured.peak_rss_kib < 200 << 10,
            "{name}: {} KiB",
            measured.peak_rss_kib
        );
    }
}
