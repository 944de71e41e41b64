//! Issue 4: Wine as the test machine. A fresh Wine prefix, the real
//! `samplectl.exe` (built with MinGW) against Wine's Service Control Manager,
//! and the real x64 Sample.sys loaded by winedevice.exe.

use crate::common;
use crate::common::wine;

use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use harness_core::arch::Arch;
use harness_engines::wine::WineMachine;

/// One fresh prefix for this test binary, made anew on each run in cargo's
/// target tmp dir (`wine-machine`, so that it never piles up); tests take
/// turns on it.
fn machine() -> &'static Mutex<WineMachine> {
    static MACHINE: OnceLock<Mutex<WineMachine>> = OnceLock::new();
    MACHINE.get_or_init(|| {
        let samplectl =
            harness_build::driver_build::build_samplectl().expect("samplectl.exe builds");
        let prefix = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("wine-machine");
        if let Ok(mut old) = WineMachine::open(&prefix) {
            old.kill_session();
        }
        let _ = std::fs::remove_dir_all(&prefix);
        let started = Instant::now();
        let machine = WineMachine::create(&prefix, &samplectl).expect("a fresh Wine prefix");
        println!("fresh prefix in {:.1} s", started.elapsed().as_secs_f64());
        Mutex::new(machine)
    })
}

fn copy_in(machine: &WineMachine, leak: bool) -> String {
    let built = common::driver(Arch::X64, leak);
    let name = if leak { "leaky.sys" } else { "clean.sys" };
    std::fs::copy(&built.sys, machine.c_drive().join(name)).expect("copy");
    format!(r"C:\{name}")
}

fn ok(result: &harness_engines::wine::ControlResult) -> &str {
    assert_eq!(result.code, Some(0), "stderr: {}", result.stderr);
    &result.stdout
}

#[test]
fn install_start_stop_uninstall_clean_and_leaky() {
    let mut machine = machine()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for leak in [false, true] {
        let path = copy_in(&machine, leak);
        machine.start_session().expect("session");
        let started = Instant::now();
        // The leaky run uses the default: a copy in %SystemRoot%\System32\drivers.
        let copy = machine
            .c_drive()
            .join("windows/system32/drivers/Sample.sys");
        let install: &[&str] = if leak {
            &["install", &path]
        } else {
            &["install", &path, "--no-copy"]
        };
        let created = machine.samplectl(install).expect("install");
        assert!(ok(&created).contains("created"));
        assert_eq!(copy.exists(), leak, "{}", created.stdout);
        assert!(ok(&machine.samplectl(&["start"]).expect("start")).contains("started"));
        assert!(ok(&machine.samplectl(&["status"]).expect("status")).contains("RUNNING"));
        assert!(ok(&machine.samplectl(&["stop"]).expect("stop")).contains("stopped"));
        assert!(ok(&machine.samplectl(&["uninstall"]).expect("uninstall")).contains("deleted"));
        assert!(!copy.exists(), "uninstall removes the copy install made");
        println!(
            "install/start/stop/uninstall under Wine: {:.2} s",
            started.elapsed().as_secs_f64()
        );
        machine.stop_session();
        check_debug_output(&machine.log(), leak);
    }
}

/// The driver's DbgPrint output, from Wine's debugstr channel, in a session's
/// log.
fn check_debug_output(log: &str, leak: bool) {
    let lines: Vec<&str> = log
        .lines()
        .filter_map(|line| line.split_once("warn:debugstr:").map(|(_, text)| text))
        .filter_map(|text| text.split_once(": ").map(|(_, text)| text))
        .collect();
    println!(
        "debug output ({}):\n  {}",
        if leak { "leaky" } else { "clean" },
        lines.join("\n  ")
    );
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert!(lines[0].starts_with("original registry path: \\Registry\\Machine\\System\\"));
    assert!(lines[1].starts_with("Copied registry path: \\Registry\\Machine\\System\\"));
    assert_eq!(lines[2], "Windows Version: 6.1.7601");
    assert_eq!(lines[3], "Sample driver initialized successfully");
    assert_eq!(lines[4], "Sample driver Unload called");
    // Wine really called the driver's unload routine.
    assert!(log.contains("Call driver unload"));
}

#[test]
fn error_paths_give_one_clear_line_and_exit_1() {
    let mut machine = machine()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let path = copy_in(&machine, false);
    machine.start_session().expect("session");
    let expect_error = |args: &[&str], needle: &str| {
        let result = machine.samplectl(args).expect("ran");
        assert_eq!(result.code, Some(1), "{args:?}: {}", result.stdout);
        assert_eq!(result.stderr.lines().count(), 1, "{}", result.stderr);
        assert!(
            result.stderr.contains(needle),
            "{args:?}: {}",
            result.stderr
        );
    };
    expect_error(
        &["start", "--name", "NoSuchService"],
        "does not exist (error 1060)",
    );
    expect_error(
        &["install", r"C:\missing.sys"],
        "file not found: C:\\missing.sys",
    );
    ok(&machine
        .samplectl(&["install", &path, "--no-copy"])
        .expect("install"));
    expect_error(
        &["install", &path, "--no-copy"],
        "already exists (error 1073): remove it with `samplectl uninstall --name Sample`",
    );
    expect_error(&["stop"], "is not started (error 1062)");
    expect_error(&["verifier", "enable"], "verifier.exe not found");
    ok(&machine.samplectl(&["uninstall"]).expect("uninstall"));
    expect_error(&["uninstall"], "does not exist (error 1060)");
    machine.stop_session();
}

/// The Wine engine and Speakeasy agree on the same .sys. The registry
/// path is each machine's own: Wine's service control manager passes
/// `CurrentControlSet\Services\HarnessTest_Sample_<pid>` (the engine's own
/// service name), Speakeasy the harness's Windows 7 path; the driver's
/// lines and its leak follow the path it was given.
#[test]
fn wine_engine_verdicts_equal_speakeasy() {
    let _serial = wine::serial();
    for leak in [false, true] {
        let built = common::driver(Arch::X64, leak);
        let started = Instant::now();
        let wine = wine::emulate(&built.sys, &[]);
        println!("one Wine verdict: {:.2} s", started.elapsed().as_secs_f64());
        let speakeasy = common::emulate_json(&built.sys, &["--engine", "speakeasy"]);
        assert_eq!(wine.code, speakeasy.code, "{}", wine.stderr);
        assert_eq!(wine.stderr, "", "nothing on stderr");
        let (wine, speakeasy) = (wine.verdict(), speakeasy.verdict());
        assert_eq!(wine.engine, harness_core::verdict::Engine::Wine);
        assert_eq!(wine.entry_status, speakeasy.entry_status);
        let registry_path = |verdict: &harness_core::verdict::Verdict| -> String {
            verdict.debug_output[0]
                .strip_prefix("original registry path: ")
                .expect("the registry path line")
                .to_owned()
        };
        let wine_path = registry_path(&wine);
        assert!(
            wine_path
                .rsplit('\\')
                .next()
                .is_some_and(|service| service.starts_with("HarnessTest_Sample_")),
            "{wine_path}"
        );
        let without_path = |verdict: &harness_core::verdict::Verdict| -> Vec<String> {
            let path = registry_path(verdict);
            verdict
                .debug_output
                .iter()
                .map(|line| line.replace(&path, "<registry path>"))
                .collect()
        };
        assert_eq!(without_path(&wine), without_path(&speakeasy));
        let essentials = |verdict: &harness_core::verdict::Verdict| {
            verdict
                .bugcheck
                .as_ref()
                .map(|b| (b.code, b.name.clone(), b.args[0], b.args[3]))
        };
        assert_eq!(essentials(&wine), essentials(&speakeasy));
        // Each leak is the copy of the path that machine passed.
        let leaked = |verdict: &harness_core::verdict::Verdict| -> Vec<(String, u64)> {
            let path_bytes =
                2 * u64::try_from(registry_path(verdict).encode_utf16().count()).expect("length");
            verdict
                .leaks
                .iter()
                .map(|leak| (leak.tag.clone(), leak.bytes - path_bytes))
                .collect()
        };
        assert_eq!(leaked(&wine), leaked(&speakeasy));
        assert_eq!(leaked(&wine).len(), usize::from(leak));
    }
}

#[test]
fn wine_engine_refuses_what_it_cannot_do() {
    let built = common::driver(Arch::X64, false);
    for option in [["--fail-allocation", "1"], ["--os-version", "10.0.19045"]] {
        common::emulate_json(&built.sys, &["--engine", "wine", option[0], option[1]])
            .cannot_judge("need the native or speakeasy engine");
    }
}

/// Wine sessions at once in one process, each in its own prefix (this
/// binary's fresh one and the engine's test prefix): every run gets its own
/// verdict. Seen before (cargo test with four test threads): a session failed
/// as another one started (wineboot exit 1). The engine kept one watchdog
/// pipe for the whole process, so the second session's watchdog replaced the
/// first's, whose pipe closed: that watchdog took the harness for dead and
/// stopped the first session. The second run starts once the first one's
/// session is up.
#[test]
fn sessions_at_once_each_get_their_verdict() {
    use harness_core::verdict::ExitCode;
    let own = machine()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let _serial = wine::serial();
    let built = common::driver(Arch::X64, true);
    let image = harness_core::pe::PeImage::read(&built.sys).expect("a PE");
    let run = |prefix: &Path| {
        let events = harness_engines::wine::run_at(
            prefix,
            &built.sys,
            &image,
            &harness_engines::engine::RunOptions::default(),
        )
        .unwrap_or_else(|error| panic!("{}: {error}", prefix.display()));
        wine::verdict(&built.sys, &image, &events)
    };
    let first_log = own.path().join("harness-session.log");
    let _ = std::fs::remove_file(&first_log);
    let verdicts = std::thread::scope(|scope| {
        let first = scope.spawn(|| run(own.path()));
        let started = Instant::now();
        while std::fs::metadata(&first_log).map_or(true, |meta| meta.len() == 0) {
            assert!(
                started.elapsed() < std::time::Duration::from_mins(1),
                "the first session never started"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let second = run(wine::prefix());
        [first.join().expect("the first run's thread"), second]
    });
    for verdict in &verdicts {
        assert_eq!(verdict.exit_code(), ExitCode::Violation, "{verdict:?}");
        let tags: Vec<&str> = verdict.leaks.iter().map(|leak| leak.tag.as_str()).collect();
        assert_eq!(tags, ["abcd"]);
        assert_eq!(verdict.debug_output.len(), 5, "{:?}", verdict.debug_output);
    }
    for prefix in [own.path(), wine::prefix()] {
        wine::wait_until_idle(prefix, std::time::Duration::from_secs(10)).expect("idle");
    }
}
