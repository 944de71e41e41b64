//! samplectl.exe (MinGW build) against Wine's Service Control Manager, each
//! test in a fresh Wine prefix in a temporary directory: what `uninstall`
//! refuses, that install + uninstall leave the machine as it was, and that
//! stopping a driver without an unload routine is error 1052.
//!
//! CI installs Wine and MinGW (scripts/linux.sh), so their absence fails the
//! tests instead of skipping them.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The workspace root (this crate is one level below it).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// A Wine program: Debian's location first, then PATH.
fn wine_tool(name: &str) -> PathBuf {
    let debian = Path::new("/usr/lib/wine").join(name);
    if debian.is_file() {
        return debian;
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_else(|| {
            panic!("{name} not found: install Wine (apt-get install wine wine64; scripts/linux.sh does)")
        })
}

/// `cargo build --release --locked <args>` into `target/portable/<dir>`
/// (`cargo test` holds the workspace target dir), with `.cargo/config.toml`'s
/// flags. These are the directories and arguments `harness build` and
/// `harness setup` use, so what the harness tests built is reused, not
/// rebuilt (40 s of CI otherwise).
fn cargo_build(dir: &str, args: &[&str]) -> PathBuf {
    let target_dir = workspace().join("target").join("portable").join(dir);
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(workspace())
        .args(["build", "--release", "--locked"])
        .args(args)
        .env("CARGO_TARGET_DIR", &target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .stdout(Stdio::null())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build {args:?} failed");
    target_dir
}

fn samplectl_exe() -> PathBuf {
    let triple = "x86_64-pc-windows-gnu";
    cargo_build("samplectl-x64", &["-p", "samplectl", "--target", triple])
        .join(triple)
        .join("release")
        .join("samplectl.exe")
}

/// The portable x64 Sample.sys, built as `harness build --arch x64` builds it.
fn sample_sys() -> PathBuf {
    let triple = "x86_64-pc-windows-msvc";
    let linker = format!("target.{triple}.linker=\"rust-lld\"");
    let args = ["-p", "sample", "--bin", "Sample", "--features", "portable"];
    cargo_build(
        "x64-clean",
        &[&args[..], &["--target", triple, "--config", &linker]].concat(),
    )
    .join(triple)
    .join("release")
    .join("Sample.exe")
}

/// Runs a command, killing it after `limit`. Output goes through files, not
/// pipes: Wine's background processes (services.exe, winedevice.exe) inherit
/// them and would hold a pipe open long after the command ends.
fn run(command: &mut Command, limit: Duration) -> Output {
    let capture = || tempfile::tempfile().expect("temp file");
    let (mut stdout, mut stderr) = (capture(), capture());
    let mut child = command
        .stdin(Stdio::null())
        .stdout(stdout.try_clone().expect("clone"))
        .stderr(stderr.try_clone().expect("clone"))
        .spawn()
        .unwrap_or_else(|error| panic!("{command:?}: {error}"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("{command:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |file: &mut fs::File| {
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(0)).expect("seek");
        file.read_to_end(&mut bytes).expect("read");
        bytes
    };
    Output {
        status,
        stdout: read(&mut stdout),
        stderr: read(&mut stderr),
    }
}

/// What one samplectl call did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// A fresh Wine prefix in a temporary directory, with samplectl.exe in C:\
/// and a persistent wineserver, which is killed when this is dropped.
struct Prefix {
    dir: tempfile::TempDir,
    wine: PathBuf,
    wineserver: PathBuf,
}

impl Prefix {
    fn new() -> Self {
        let samplectl = samplectl_exe();
        let prefix = Self {
            dir: tempfile::tempdir().expect("temp dir"),
            wine: wine_tool("wine64"),
            wineserver: wine_tool("wineserver"),
        };
        let boot = run(
            &mut prefix.wine_command(&["wineboot", "-i"]),
            Duration::from_mins(3),
        );
        assert!(boot.status.success(), "wineboot -i failed");
        run(&mut prefix.wineserver_command("-w"), Duration::from_mins(1));
        let system32 = prefix.c_drive().join("windows/system32");
        let shim = Command::new("x86_64-w64-mingw32-gcc")
            .args(["-O2", "-shared", "-o"])
            .arg(system32.join("bcryptprimitives.dll"))
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/wine/process_prng.c"))
            .arg("-ladvapi32")
            .status()
            .expect("x86_64-w64-mingw32-gcc runs (apt-get install gcc-mingw-w64-x86-64)");
        assert!(shim.success(), "building bcryptprimitives.dll failed");
        fs::copy(samplectl, prefix.c_drive().join("samplectl.exe")).expect("copy samplectl");
        // Persistent, so that loaded drivers stay loaded between calls.
        let started = prefix
            .wineserver_command("-p")
            .status()
            .expect("wineserver");
        assert!(started.success(), "wineserver -p failed");
        prefix
    }

    fn c_drive(&self) -> PathBuf {
        self.dir.path().join("drive_c")
    }

    fn drivers_dir(&self) -> PathBuf {
        self.c_drive().join("windows/system32/drivers")
    }

    fn wine_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.wine);
        command
            .args(args)
            .env("WINEPREFIX", self.dir.path())
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=;winedbg.exe=d")
            .env("WINEDEBUG", "-all")
            .env_remove("DISPLAY");
        command
    }

    fn wineserver_command(&self, arg: &str) -> Command {
        let mut command = Command::new(&self.wineserver);
        command.arg(arg).env("WINEPREFIX", self.dir.path());
        command
    }

    fn samplectl(&self, args: &[&str]) -> Run {
        let started = Instant::now();
        let output = run(
            &mut self.wine_command(&[&[r"C:\samplectl.exe"][..], args].concat()),
            Duration::from_mins(1),
        );
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).trim().to_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            took: started.elapsed(),
        }
    }

    /// samplectl must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let run = self.samplectl(args);
        assert_eq!(run.code, Some(0), "{args:?}: {}", run.stderr);
        run.stdout
    }

    /// samplectl must fail with exit 1 and one line on stderr; returns it.
    fn refused(&self, args: &[&str]) -> String {
        let run = self.samplectl(args);
        assert_eq!(run.code, Some(1), "{args:?}: {}", run.stdout);
        assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {}", run.stderr);
        run.stderr
    }

    /// The files in System32\drivers.
    fn driver_files(&self) -> BTreeSet<String> {
        fs::read_dir(self.drivers_dir())
            .expect("drivers dir")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    }

    /// `reg query <key>`: the values and subkeys, or `None` if there is no key.
    fn registry(&self, key: &str) -> Option<String> {
        let output = run(
            &mut self.wine_command(&["reg", "query", key]),
            Duration::from_mins(1),
        );
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let _ = run(&mut self.wineserver_command("-k"), Duration::from_secs(30));
    }
}

const SERVICES: &str = r"HKLM\System\CurrentControlSet\Services";

#[test]
fn uninstall_leaves_what_samplectl_did_not_make() {
    let prefix = Prefix::new();
    let http_sys = prefix.drivers_dir().join("http.sys");
    assert!(
        http_sys.is_file(),
        "Wine's http.sys is part of a fresh prefix"
    );

    // Wine's own http service: refused, nothing touched.
    let refusal = prefix.refused(&["uninstall", "--name", "http"]);
    assert_eq!(
        refusal,
        "samplectl: service 'http' was not created by samplectl; pass --force to remove it anyway (its driver file is never deleted)"
    );
    assert!(prefix.ok(&["status", "--name", "http"]).contains("STATE"));
    assert!(http_sys.is_file());

    // --force removes the service, never the file.
    let forced = prefix.ok(&["uninstall", "--name", "http", "--force"]);
    assert!(forced.contains("left in place"), "{forced}");
    let gone = prefix.refused(&["status", "--name", "http"]);
    assert!(gone.contains("does not exist (error 1060)"), "{gone}");
    assert!(http_sys.is_file(), "--force deleted http.sys");
}

#[test]
fn install_and_uninstall_remove_exactly_what_install_made() {
    let prefix = Prefix::new();
    fs::copy(sample_sys(), prefix.c_drive().join("Sample.sys")).expect("copy the driver");
    let files = prefix.driver_files();
    let services = prefix.registry(SERVICES).expect("services key");
    let key = format!(r"{SERVICES}\Sample");

    // Default install: a copy in System32\drivers, recorded in the service's key.
    let created = prefix.ok(&["install", r"C:\Sample.sys"]);
    assert!(created.contains(r"drivers\Sample.sys"), "{created}");
    let recorded = prefix.registry(&key).expect("the service's key");
    assert!(recorded.contains("SamplectlCreated"), "{recorded}");
    assert!(
        recorded.contains(
            r"SamplectlInstalledCopy    REG_SZ    C:\windows\System32\drivers\Sample.sys"
        ),
        "{recorded}"
    );
    assert!(prefix.ok(&["start"]).contains("started"));
    assert!(prefix.ok(&["stop"]).contains("stopped"));
    assert!(prefix.ok(&["uninstall"]).contains("deleted"));
    assert_eq!(prefix.driver_files(), files, "System32\\drivers changed");
    assert_eq!(prefix.registry(SERVICES), Some(services.clone()));
    assert_eq!(prefix.registry(&key), None);

    // An identical file already there is used, but it is not samplectl's.
    let theirs = prefix.drivers_dir().join("Sample.sys");
    fs::copy(prefix.c_drive().join("Sample.sys"), &theirs).expect("copy");
    let reused = prefix.ok(&["install", r"C:\Sample.sys"]);
    assert!(reused.contains("uninstall leaves it"), "{reused}");
    prefix.ok(&["uninstall"]);
    assert!(
        theirs.is_file(),
        "uninstall deleted a file install did not copy"
    );

    // Another file of that name is refused before anything is created.
    fs::write(&theirs, b"not this driver").expect("write");
    let refusal = prefix.refused(&["install", r"C:\Sample.sys"]);
    assert!(
        refusal.contains("already exists and is another file"),
        "{refusal}"
    );
    assert_eq!(fs::read(&theirs).expect("read"), b"not this driver");
    assert_eq!(prefix.registry(&key), None);
    assert_eq!(prefix.registry(SERVICES), Some(services));
}

#[test]
fn stopping_a_driver_without_unload_routine_is_error_1052() {
    let prefix = Prefix::new();
    let driver = prefix.c_drive().join("no_unload.sys");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/drivers/no_unload.c");
    let built = Command::new("x86_64-w64-mingw32-gcc")
        .args(["-O1", "-ffreestanding", "-nostdlib"])
        .args(["-Wl,--subsystem,native", "-Wl,-e,DriverEntry", "-o"])
        .arg(&driver)
        .arg(source)
        .status()
        .expect("x86_64-w64-mingw32-gcc runs (apt-get install gcc-mingw-w64-x86-64)");
    assert!(built.success(), "building no_unload.sys failed");

    let name = ["--name", "NoUnload"];
    prefix.ok(&[&["install", r"C:\no_unload.sys", "--no-copy"][..], &name].concat());
    prefix.ok(&[&["start"][..], &name].concat());
    let stop = prefix.samplectl(&[&["stop"][..], &name].concat());
    assert_eq!(stop.code, Some(1), "{}", stop.stdout);
    assert_eq!(
        stop.stderr,
        "samplectl: service 'NoUnload' cannot be stopped (error 1052): the driver set no unload routine (DriverUnload), so it stays loaded until the next reboot"
    );
    assert!(
        stop.took < Duration::from_secs(10),
        "stop took {:?}",
        stop.took
    );
    println!(
        "stop of a driver without unload routine: {:.2} s",
        stop.took.as_secs_f64()
    );
    assert!(
        prefix
            .ok(&[&["status"][..], &name].concat())
            .contains("RUNNING")
    );
}

/// `--group` is sc.exe's `group=`: the service key's `Group` value
/// (`CreateServiceW`'s `lpLoadOrderGroup`), which Wine's services.exe uses to run
/// the drivers of one group in one winedevice.exe (the harness's Wine engine
/// relies on it). Without it there is no `Group` value.
#[test]
fn install_puts_the_service_in_its_load_order_group() {
    let prefix = Prefix::new();
    fs::copy(sample_sys(), prefix.c_drive().join("Sample.sys")).expect("copy the driver");
    let grouped = ["--name", "Grouped"];
    let created = prefix.ok(&[
        &[
            "install",
            r"C:\Sample.sys",
            "--no-copy",
            "--group",
            "Test Group",
        ][..],
        &grouped,
    ]
    .concat());
    assert!(created.contains("group Test Group, "), "{created}");
    let key = prefix
        .registry(&format!(r"{SERVICES}\Grouped"))
        .expect("the service's key");
    assert!(key.contains("Group    REG_SZ    Test Group"), "{key}");
    let plain = ["--name", "Plain"];
    let created = prefix.ok(&[&["install", r"C:\Sample.sys", "--no-copy"][..], &plain].concat());
    assert!(!created.contains("group"), "{created}");
    let key = prefix
        .registry(&format!(r"{SERVICES}\Plain"))
        .expect("the service's key");
    assert!(!key.contains("Group    REG_SZ"), "{key}");
    prefix.ok(&[&["uninstall"][..], &grouped].concat());
    prefix.ok(&[&["uninstall"][..], &plain].concat());
}
