//! Issue 5: the VM orchestration, run against a scripted guest that answers
//! like a Windows machine with Driver Verifier would. The kd output it hands
//! back is the walkthrough's real debugger log.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use harness::arch::Arch;
use harness::verdict::{Engine, ExitCode, Verdict};
use harness::vm::{self, Remote, Transport, TransportError, VmError, VmOptions};

const KD_OUTPUT: &str = include_str!("fixtures/walkthrough-win7-x86.txt");

/// A Windows guest, reduced to what the orchestration touches.
#[allow(clippy::struct_excessive_bools)]
struct FakeGuest {
    version: &'static str,
    arch: &'static str,
    dump_setting: &'static str,
    kd_present: bool,
    leaky: bool,
    start_error: Option<&'static str>,
    reboot_returns: bool,
    boot: u32,
    /// Commands that fail (connection refused) before the guest answers again.
    down: u32,
    verifier_pending: bool,
    verifier_active: bool,
    installed: bool,
    dump: u32,
    kd_ran: bool,
    log: Vec<String>,
    uploads: HashMap<String, usize>,
}

impl FakeGuest {
    fn new(leaky: bool) -> Self {
        Self {
            version: "10.0.19045.3803",
            arch: "AMD64",
            dump_setting: "2",
            kd_present: true,
            leaky,
            start_error: None,
            reboot_returns: true,
            boot: 1,
            down: 0,
            verifier_pending: false,
            verifier_active: false,
            installed: false,
            dump: 0,
            kd_ran: false,
            log: Vec::new(),
            uploads: HashMap::new(),
        }
    }

    fn reboot(&mut self) {
        if self.reboot_returns {
            self.down = 2;
            self.boot += 1;
            self.verifier_active = self.verifier_pending;
        } else {
            self.down = u32::MAX;
        }
    }

    fn ran(&self, needle: &str) -> usize {
        self.log
            .iter()
            .position(|command| command.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} never ran: {:#?}", self.log))
    }
}

fn ok(stdout: &str) -> Remote {
    Remote {
        code: Some(0),
        stdout: stdout.to_owned(),
        stderr: String::new(),
    }
}

impl Transport for FakeGuest {
    fn run(&mut self, command: &str, _timeout: Duration) -> Result<Remote, TransportError> {
        self.log.push(command.to_owned());
        if self.down > 0 {
            self.down = self.down.saturating_sub(1);
            return Ok(Remote {
                code: None,
                stdout: String::new(),
                stderr: "ssh: connect to host: Connection refused".into(),
            });
        }
        let reply = if command == "ver" {
            ok(&format!(
                "\r\nMicrosoft Windows [Version {}]\r\n",
                self.version
            ))
        } else if command.contains("PROCESSOR_ARCHITECTURE") {
            ok(self.arch)
        } else if command.contains("CrashDumpEnabled") {
            ok(&format!(
                "\r\nHKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\CrashControl\r\n    CrashDumpEnabled    REG_DWORD    0x{}\r\n",
                self.dump_setting
            ))
        } else if command.starts_with("if exist") {
            ok(if self.kd_present { "found" } else { "missing" })
        } else if command.starts_with("if not exist") {
            ok("")
        } else if command.contains("LastBootUpTime") {
            ok(&format!("20261124{:06}.500000+000", self.boot))
        } else if command.contains("kd.exe") {
            self.kd_ran = true;
            ok("")
        } else if command.contains("MEMORY.DMP") {
            ok(&if self.dump > 0 {
                format!("6389{:08}", self.dump)
            } else {
                String::new()
            })
        } else if command.contains("verifier enable") || command.contains("verifier /flags") {
            self.verifier_pending = true;
            ok("Driver Verifier: flags 0x8 set")
        } else if command.contains("verifier disable") || command.contains("verifier /reset") {
            self.verifier_pending = false;
            ok("removed")
        } else if command.contains("verifier status") || command.contains("verifier /query") {
            ok(if self.verifier_active {
                "Verifier Flags: 0x00000008\r\n\r\nName: sample.sys, loads: 1, unloads: 1\r\n  CurrentPagedPoolAllocations: 0\r\n  CurrentNonPagedPoolAllocations: 0\r\n"
            } else {
                "No drivers are currently verified."
            })
        } else if command.contains("shutdown /r") {
            self.reboot();
            ok("")
        } else if command.contains(" install ") || command.starts_with("sc create") {
            self.installed = true;
            ok("created")
        } else if command.contains(" start") {
            match self.start_error {
                Some(error) => Remote {
                    code: Some(1),
                    stdout: String::new(),
                    stderr: error.into(),
                },
                None => ok("started"),
            }
        } else if command.contains(" stop") && !command.contains("delete") {
            if self.leaky && self.verifier_active {
                // Bug check 0xC4/0x62: the connection drops, a dump is written, the guest reboots.
                self.dump += 1;
                self.verifier_active = self.verifier_pending;
                self.down = 3;
                self.boot += 1;
                return Ok(Remote {
                    code: None,
                    stdout: String::new(),
                    stderr: "Connection reset by peer".into(),
                });
            }
            ok("stopped")
        } else if command.contains("uninstall") || command.contains("sc delete") {
            self.installed = false;
            ok("deleted")
        } else {
            Remote {
                code: Some(1),
                stdout: String::new(),
                stderr: format!("unknown command {command}"),
            }
        };
        Ok(reply)
    }

    fn upload(&mut self, local: &Path, remote: &str) -> Result<(), TransportError> {
        let size = std::fs::metadata(local)
            .map_err(|source| TransportError::Io {
                what: "read",
                path: local.to_path_buf(),
                source,
            })?
            .len();
        self.uploads
            .insert(remote.to_owned(), usize::try_from(size).unwrap_or(0));
        Ok(())
    }

    fn download(&mut self, remote: &str, local: &Path) -> Result<(), TransportError> {
        if remote.ends_with("kd.txt") && self.kd_ran {
            std::fs::write(local, KD_OUTPUT).map_err(|source| TransportError::Io {
                what: "write",
                path: local.to_path_buf(),
                source,
            })
        } else {
            Err(TransportError::NoRemoteFile(remote.to_owned()))
        }
    }

    fn pause(&mut self, _pause: Duration) {}
}

fn options(dir: &Path, revert_marker: Option<&Path>) -> VmOptions {
    let driver = dir.join("Sample.sys");
    std::fs::write(&driver, b"MZ driver").expect("write");
    std::fs::write(dir.join("Sample.pdb"), b"pdb").expect("write");
    let samplectl = dir.join("samplectl.exe");
    std::fs::write(&samplectl, b"MZ samplectl").expect("write");
    VmOptions {
        driver,
        samplectl,
        arch: Arch::X64,
        guest_dir: r"C:\sample-test".into(),
        kd: r"C:\Debuggers\kd.exe".into(),
        symbols: "srv*C:\\symbols*https://msdl.microsoft.com/download/symbols".into(),
        revert_command: revert_marker.map(|marker| format!("touch '{}'", marker.display())),
        boot_timeout: Duration::from_secs(5),
        kd_timeout: Duration::from_secs(5),
        kd_script: None,
        poll: Duration::ZERO,
    }
}

/// Runs the orchestration, collecting its progress lines.
fn run(
    transport: &mut dyn Transport,
    options: &VmOptions,
) -> (Result<Verdict, VmError>, Vec<String>) {
    let mut progress = Vec::new();
    let result = vm::run(transport, options, &mut |line| {
        progress.push(line.to_owned());
    });
    (result, progress)
}

#[test]
fn leaky_driver_bugchecks_and_the_dump_gives_the_walkthrough_verdict() {
    let dir = tempfile::tempdir().expect("dir");
    let marker = dir.path().join("reverted");
    let options = options(dir.path(), Some(&marker));
    let mut guest = FakeGuest::new(true);
    let (result, progress) = run(&mut guest, &options);
    let verdict = result.expect("a verdict");
    assert_eq!(verdict.engine, Engine::Vm);
    assert_eq!(verdict.exit_code(), ExitCode::Violation);
    let bugcheck = verdict.bugcheck.expect("bug check");
    assert_eq!(
        (bugcheck.code, bugcheck.args[0], bugcheck.args[3]),
        (0xC4, 0x62, 1)
    );
    assert_eq!(verdict.leaks[0].tag, "abcd");

    // Every step reported, in order.
    for step in 1..=6 {
        assert!(
            progress
                .iter()
                .any(|line| line.starts_with(&format!("[{step}/7]"))),
            "{progress:#?}"
        );
    }
    // The sequence: enable, reboot, install, start, stop, kd, then restore.
    let order = [
        "samplectl.exe\" verifier enable --flags 0x8 --driver Sample.sys",
        "shutdown /r",
        "samplectl.exe\" install",
        "samplectl.exe\" start",
        "samplectl.exe\" stop",
        "-z C:\\Windows\\MEMORY.DMP",
        "samplectl.exe\" uninstall",
        "samplectl.exe\" verifier disable",
    ];
    let positions: Vec<usize> = order.iter().map(|step| guest.ran(step)).collect();
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "{:#?}",
        guest.log
    );
    assert!(
        guest
            .log
            .iter()
            .filter(|command| command.contains("shutdown /r"))
            .count()
            == 2,
        "reboots: enable and reset"
    );
    assert_eq!(guest.uploads.len(), 3, "driver, PDB and samplectl.exe");
    assert!(
        guest
            .log
            .iter()
            .any(|command| command.contains("!verifier 3 Sample.sys"))
    );
    // Restored: no service, no verifier, snapshot reverted.
    assert!(!guest.installed && !guest.verifier_active && !guest.verifier_pending);
    assert!(marker.exists(), "the revert command ran");
}

#[test]
fn training_kd_script_runs_on_the_dump() {
    let dir = tempfile::tempdir().expect("dir");
    let mut options = options(dir.path(), None);
    options.kd_script = Some(std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/kd/postmortem.txt"
    )));
    let mut guest = FakeGuest::new(true);
    let verdict = run(&mut guest, &options).0.expect("verdict");
    assert_eq!(verdict.exit_code(), ExitCode::Violation);
    assert!(
        guest
            .uploads
            .keys()
            .any(|path| path.ends_with("harness-kd-script.txt"))
    );
    guest.ran("-c \"$$<C:\\sample-test\\harness-kd-script.txt; q\"");
}

#[test]
fn clean_driver_unloads_without_a_bugcheck() {
    let dir = tempfile::tempdir().expect("dir");
    let mut guest = FakeGuest::new(false);
    let (result, _) = run(&mut guest, &options(dir.path(), None));
    let verdict = result.expect("a verdict");
    assert_eq!(verdict.exit_code(), ExitCode::Clean);
    assert!(verdict.bugcheck.is_none() && verdict.leaks.is_empty());
    assert!(verdict.notes.is_empty(), "{:?}", verdict.notes);
    assert!(!guest.kd_ran);
    assert!(!guest.installed && !guest.verifier_pending);
}

#[test]
fn a_guest_that_never_comes_back_is_a_clear_timeout() {
    let dir = tempfile::tempdir().expect("dir");
    let mut guest = FakeGuest::new(true);
    guest.reboot_returns = false;
    let (result, _) = run(&mut guest, &options(dir.path(), None));
    let failure = result.expect_err("timeout");
    assert!(
        failure
            .to_string()
            .contains("did not come back within 5 s after enabling Driver Verifier"),
        "{failure}"
    );
    assert!(
        failure.to_string().contains("verifier /reset"),
        "says how to restore: {failure}"
    );
    assert!(!failure.to_string().contains('\n'));
}

#[test]
fn unsigned_driver_is_reported_and_the_guest_restored() {
    let dir = tempfile::tempdir().expect("dir");
    let mut guest = FakeGuest::new(true);
    guest.start_error = Some(
        "samplectl: Windows refused to load 'Sample' because it is not signed (error 577): ...",
    );
    let (result, _) = run(&mut guest, &options(dir.path(), None));
    let failure = result.expect_err("start fails");
    assert!(
        failure
            .to_string()
            .starts_with("start failed: samplectl: Windows refused"),
        "{failure}"
    );
    assert!(
        failure.to_string().ends_with("(the guest was restored)"),
        "{failure}"
    );
    assert!(!guest.installed && !guest.verifier_pending);
}

#[test]
fn missing_evidence_is_refused_before_changing_anything() {
    let dir = tempfile::tempdir().expect("dir");
    let options = options(dir.path(), None);
    let mut minidump = FakeGuest::new(true);
    minidump.dump_setting = "3";
    let failure = run(&mut minidump, &options).0.expect_err("minidump");
    assert!(
        failure.to_string().contains("kernel memory dump"),
        "{failure}"
    );

    let mut no_kd = FakeGuest::new(true);
    no_kd.kd_present = false;
    let failure = run(&mut no_kd, &options).0.expect_err("no kd");
    assert!(
        failure.to_string().contains("kd.exe not found"),
        "{failure}"
    );

    let mut x86 = FakeGuest::new(true);
    x86.arch = "x86";
    let failure = run(&mut x86, &options).0.expect_err("arch");
    assert!(
        failure
            .to_string()
            .contains("the driver is x64 but the guest is x86"),
        "{failure}"
    );

    for guest in [&minidump, &no_kd, &x86] {
        assert!(guest.uploads.is_empty());
        assert!(
            !guest
                .log
                .iter()
                .any(|command| command.contains("verifier") || command.contains("shutdown")),
            "{:#?}",
            guest.log
        );
    }
}

#[test]
fn windows_7_guest_is_driven_with_sc_and_verifier_exe() {
    let dir = tempfile::tempdir().expect("dir");
    let mut guest = FakeGuest::new(true);
    guest.version = "6.1.7601";
    let (result, progress) = run(&mut guest, &options(dir.path(), None));
    assert_eq!(result.expect("verdict").exit_code(), ExitCode::Violation);
    assert!(
        progress
            .iter()
            .any(|line| line.contains("older than Windows 10"))
    );
    guest.ran("verifier /flags 0x8 /driver Sample.sys");
    guest.ran("sc create Sample type= kernel start= demand binPath=");
    guest.ran("verifier /reset");
    assert!(
        !guest
            .uploads
            .keys()
            .any(|path| path.ends_with("samplectl.exe"))
    );
    assert!(
        !guest
            .log
            .iter()
            .any(|command| command.contains("samplectl"))
    );
}

/// The real transport's failures are one line too (no such host here).
#[test]
fn real_ssh_transport_reports_an_unreachable_guest() {
    let dir = tempfile::tempdir().expect("dir");
    let mut ssh = vm::Ssh {
        target: "nobody@127.0.0.1".into(),
        options: vec!["Port=1".into()],
    };
    let (result, _) = run(&mut ssh, &options(dir.path(), None));
    let failure = result.expect_err("unreachable");
    assert!(
        failure
            .to_string()
            .contains("cannot reach the guest over SSH"),
        "{failure}"
    );
}
