//! The Wine engine leaves nothing behind: not when interrupted (SIGINT), not
//! when killed (SIGKILL), not after an earlier run was killed, not in
//! `$TMPDIR`, and nothing on stderr when all went well.

use crate::common;
use crate::common::wine;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use harness_core::arch::Arch;
use harness_engines::wine::{SERVICE_PREFIX, WineMachine};

/// Starts `harness emulate` on a driver whose DriverEntry never returns and
/// waits until winedevice.exe runs it.
fn start_hung_run(dir: &Path) -> Child {
    let driver = common::c_driver("LOOP", Arch::X64, dir);
    let prefix = wine::prefix();
    let log = prefix.join("harness-session.log");
    let _ = std::fs::remove_file(&log);
    let child = wine::command_with(
        prefix,
        &[],
        &[
            "emulate",
            driver.to_str().expect("utf-8"),
            "--engine",
            "wine",
            "--timeout",
            "120",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("harness starts");
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("Call driver init ") && text.contains(SERVICE_PREFIX) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_mins(1),
            "DriverEntry never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // DriverEntry spins now.
    std::thread::sleep(Duration::from_millis(500));
    child
}

fn signal(child: &Child, signal: i32) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: kill(2) on our own child with a valid signal number.
    let sent = unsafe { libc::kill(pid, signal) };
    assert_eq!(sent, 0, "kill failed");
}

#[test]
fn sigint_mid_run_stops_the_session_and_deregisters_the_service() {
    let _serial = wine::serial();
    let dir = tempfile::tempdir().expect("temp dir");
    let child = start_hung_run(dir.path());
    signal(&child, libc::SIGINT);
    let started = Instant::now();
    let output = child.wait_with_output().expect("harness ends");
    println!(
        "SIGINT: harness ended {:.1} s later",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(output.status.code(), Some(130));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(
            "interrupted: the Wine session was stopped and service HarnessTest_loop_x64_"
        ),
        "{stderr}"
    );
    // By the time the harness exits, nothing of the session is left.
    assert_eq!(
        harness_engines::wine::prefix_processes(wine::prefix()),
        Vec::<u32>::new()
    );
    wine::wait_until_idle(wine::prefix(), Duration::from_secs(5)).expect("idle");
    assert!(wine::harness_services(wine::prefix()).is_empty());
}

#[test]
fn sigkill_mid_run_leaves_nothing_running_for_long() {
    let _serial = wine::serial();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = start_hung_run(dir.path());
    signal(&child, libc::SIGKILL);
    let _ = child.wait();
    // The watchdog stops the session and deregisters the service.
    let took = wine::wait_until_idle(wine::prefix(), Duration::from_secs(30))
        .expect("the watchdog cleaned up");
    println!("SIGKILL: idle {:.1} s later", took.as_secs_f64());
    assert!(wine::harness_services(wine::prefix()).is_empty());
}

#[test]
fn the_next_run_removes_what_a_killed_run_left() {
    let _serial = wine::serial();
    let prefix = wine::prefix();
    // What a run killed together with its watchdog leaves: a service of the
    // harness's, and a persistent wineserver of the prefix.
    let stale = format!("{SERVICE_PREFIX}stale_1");
    let stale_copy = prefix
        .join("drive_c/harness/run")
        .join(format!("{stale}.sys"));
    std::fs::create_dir_all(stale_copy.parent().expect("dir")).expect("run dir");
    {
        let mut machine = WineMachine::open(prefix).expect("prefix");
        machine.remove_leftovers();
        std::fs::copy(common::driver(Arch::X64, false).sys, &stale_copy).expect("copy");
        let created = machine
            .samplectl(&[
                "install",
                &format!(r"C:\harness\run\{stale}.sys"),
                "--name",
                &stale,
                "--no-copy",
            ])
            .expect("samplectl");
        assert_eq!(created.code, Some(0), "{}", created.stderr);
        machine.kill_session();
    }
    assert!(wine::harness_services(prefix).contains(&stale));
    let status = std::process::Command::new("/usr/lib/wine/wineserver")
        .arg("-p")
        .env("WINEPREFIX", prefix)
        .env("TMPDIR", prefix.join("tmp"))
        .status()
        .expect("wineserver");
    assert!(status.success());
    assert!(!harness_engines::wine::prefix_processes(prefix).is_empty());

    let built = common::driver(Arch::X64, false);
    wine::emulate(&built.sys, &[]).expect(harness_core::verdict::ExitCode::Clean);
    assert!(wine::harness_services(prefix).is_empty());
    assert!(
        !stale_copy.exists(),
        "the stale copy of the driver is removed"
    );
    wine::wait_until_idle(prefix, Duration::from_secs(5)).expect("no wineserver left");
}

#[test]
fn a_clean_run_prints_nothing_on_stderr() {
    let _serial = wine::serial();
    let built = common::driver(Arch::X64, false);
    let started = Instant::now();
    let run = wine::emulate(&built.sys, &[]);
    run.expect(harness_core::verdict::ExitCode::Clean);
    println!("one Wine verdict: {:.2} s", started.elapsed().as_secs_f64());
    assert_eq!(run.stderr, "", "no build output, no Wine output");
}

/// Making a prefix and running a driver leave nothing in `$TMPDIR`: the
/// shim's compiler and the wineserver get private temporary directories.
#[test]
fn a_new_prefix_and_a_run_leave_nothing_in_tmpdir() {
    let _serial = wine::serial();
    let tmp = tempfile::tempdir().expect("temp dir");
    let private = tmp.path().join("tmpdir");
    std::fs::create_dir(&private).expect("private TMPDIR");
    let prefix = tmp.path().join("prefix");
    let started = Instant::now();
    let setup = wine::harness_with(&prefix, &[("TMPDIR", &private)], &["setup"]);
    println!(
        "prefix creation by harness setup: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(setup.code, 0, "{}", setup.stderr);
    let built = common::driver(Arch::X64, true);
    let run = wine::harness_with(
        &prefix,
        &[("TMPDIR", &private)],
        &[
            "emulate",
            built.sys.to_str().expect("utf-8"),
            "--engine",
            "wine",
            "--json",
        ],
    );
    run.expect(harness_core::verdict::ExitCode::Violation);
    let left: Vec<_> = std::fs::read_dir(&private)
        .expect("read")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
    wine::wait_until_idle(&prefix, Duration::from_secs(10)).expect("idle");
}
