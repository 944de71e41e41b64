//! `harness vm`: the real Driver Verifier on a Windows test VM, over SSH.
//!
//! 1. copy the driver, its PDB and samplectl.exe to the guest;
//! 2. enable pool tracking for the driver, reboot, wait;
//! 3. install, start and stop the driver;
//! 4. detect the bug check and the reboot that follows;
//! 5. run kd on the kernel dump and analyze its output ([`harness_kd_text`]);
//! 6. restore the guest (service, verifier settings, reboot, snapshot revert);
//! 7. return the verdict.
//!
//! Everything goes through [`Transport`], so the sequence and its error
//! handling are tested against a scripted guest; [`Ssh`] is the real one.
//! Every step reports progress and every wait has a limit.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness_core::arch::Arch;
use harness_core::error::ProcessError;
use harness_core::verdict::{Engine, PoolStats, Stage, Verdict};
use harness_kd_text::{NothingFound, VerifierQuery, parse_query};

mod record;
pub use record::{Recorder, TRANSCRIPT};

/// The harness could not use its link to the guest.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// ssh or scp could not run or failed.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// A local file could not be used.
    #[error("cannot {what} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The guest has no such file.
    #[error("no such file on the guest: {0}")]
    NoRemoteFile(String),
    /// A host that ssh would read as an option (`-oProxyCommand=...` runs a
    /// local command).
    #[error("the guest '{0}' starts with '-'; give it as user@host")]
    BadHost(String),
}

/// Refuses a guest name that ssh or scp would parse as an option.
///
/// # Errors
/// The name is empty or starts with `-`.
pub fn check_host(host: &str) -> Result<(), TransportError> {
    if host.is_empty() || host.starts_with('-') {
        Err(TransportError::BadHost(host.to_owned()))
    } else {
        Ok(())
    }
}

/// A step of the VM run failed.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// The link to the guest failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A guest command failed; `detail` is its first line of output.
    #[error("{what}: {detail}")]
    Command {
        /// What the step was doing.
        what: String,
        /// The guest's words.
        detail: String,
    },
    /// The connection dropped during a command.
    #[error("{what}: lost the connection to the guest ({detail})")]
    Lost {
        /// What the step was doing.
        what: String,
        /// The transport's words.
        detail: String,
    },
    /// The guest did not come back after a reboot.
    #[error("the guest did not come back within {} s after {why}; check it on its console", .limit.as_secs())]
    BootTimeout {
        /// What the reboot was for.
        why: String,
        /// How long the harness waited.
        limit: Duration,
    },
    /// The guest's boot time could not be read.
    #[error("cannot read the guest's boot time")]
    NoBootTime,
    /// The driver and the guest differ in architecture.
    #[error(
        "the driver is {driver} but the guest is {guest}; build the driver with --arch {guest}"
    )]
    ArchMismatch {
        /// The driver's.
        driver: Arch,
        /// The guest's.
        guest: Arch,
    },
    /// The SSH server is a 32-bit program on 64-bit Windows.
    #[error(
        "the guest's SSH server runs as a 32-bit program on 64-bit Windows (WOW64), which sees another System32 and reports x86: install the 64-bit OpenSSH (OpenSSH-Win64) on the guest"
    )]
    Wow64Ssh,
    /// A guest architecture the harness does not test on.
    #[error("unsupported guest architecture {0}")]
    UnsupportedGuest(String),
    /// The guest writes no kernel dump.
    #[error(
        "the guest does not write a kernel memory dump (CrashDumpEnabled must be 1, 2 or 7; a minidump cannot show !verifier 3): see README, guest preparation"
    )]
    NoKernelDump,
    /// kd.exe is missing on the guest.
    #[error(
        "kd.exe not found at {0} on the guest: install Debugging Tools for Windows, or pass --kd"
    )]
    NoKd(String),
    /// The verifier did not become active: neither `/query` nor
    /// `/querysettings` lists the image after the reboot.
    #[error(
        "Driver Verifier is not active for {image} after the reboot (verifier /query does not list it); verifier /query printed: {raw}"
    )]
    NotVerified {
        /// The image.
        image: String,
        /// `/query`'s output, on one line.
        raw: String,
    },
    /// The verifier is set for the image, but `/query`'s counters are in a
    /// form the harness does not read, so a run without a bug check cannot
    /// be judged.
    #[error(
        "no bug check, but verifier /query's pool counters for {image} are in a form the harness does not read, so the run is not judged; verifier /query printed: {raw}"
    )]
    CountersUnread {
        /// The image.
        image: String,
        /// `/query`'s output, on one line.
        raw: String,
    },
    /// The guest would not reboot after a bug check.
    #[error(
        "the guest does not restart after a bug check (CrashControl AutoReboot is 0), so the run would hang at the blue screen: set AutoReboot to 1 (see README, guest preparation)"
    )]
    NoAutoReboot,
    /// Windows 7 x64 without SHA-2 code signing support, and a driver signed
    /// with SHA-256 alone.
    #[error(
        "the guest is Windows 7 x64 without the SHA-2 code signing update (KB3033929 or KB4474419), so it would refuse the SHA-256-signed driver (error 577): install KB3033929, or sign the driver with SHA-1 as well (README: Test-signing)"
    )]
    NoSha2Support,
    /// Kernel debugging is on in the guest's boot settings.
    #[error(
        "kernel debugging is on in the guest's boot entry (bcdedit: debug Yes): an attached kernel debugger turns the bug check into a break (the guest never reboots) and lifts driver signature enforcement (a 577 would not show); run `bcdedit /debug off` on the guest and reboot"
    )]
    KernelDebugger,
    /// The driver loaded, but not under the verifier.
    #[error(
        "verifier /query shows no load of {0} under Driver Verifier: the image the kernel loaded is not the one being verified"
    )]
    NotLoadedVerified(String),
    /// The counters show allocations outstanding, yet nothing bug-checked.
    #[error(
        "verifier /query shows {count} pool allocations of {driver} outstanding after it unloaded, but the guest did not bug-check; not judged clean (run !verifier 3 {driver} on the guest)"
    )]
    Outstanding {
        /// The image.
        driver: String,
        /// Paged + nonpaged allocations outstanding.
        count: u64,
    },
    /// The guest rebooted without a new dump.
    #[error(
        "the guest rebooted but no new, complete kernel dump appeared at {path} within {} s; check the crash dump settings (CrashControl) and the page file", .limit.as_secs()
    )]
    NoNewDump {
        /// Where the dump was expected (`DumpFile`, expanded).
        path: String,
        /// How long the harness waited.
        limit: Duration,
    },
    /// kd did not finish.
    #[error("kd did not finish within {} s", .0.as_secs())]
    KdTimeout(Duration),
    /// kd's output holds no verdict.
    #[error(transparent)]
    Analyze(#[from] NothingFound),
    /// The driver's file name cannot go into a guest command line.
    #[error(
        "the driver file name '{0}' has characters other than letters, digits, '.', '-' and '_'; copy it to a plain name"
    )]
    BadDriverName(String),
    /// The options name no driver file.
    #[error("--driver names no file")]
    NoDriverFile,
    /// A step failed; the guest was restored, or was never changed.
    #[error("{cause} ({changes}{})", if *.reverted { "; the revert command ran" } else { "" })]
    Restored {
        /// What failed.
        cause: Box<Self>,
        /// What the run had changed on the guest (and undid).
        changes: Changes,
        /// Whether the revert command ran.
        reverted: bool,
    },
    /// Restoring the guest failed (after a test that ran, or after a failure).
    #[error("{}the guest was not fully restored; left: {}", .cause.as_ref().map_or_else(|| "the test ran, but ".to_owned(), |cause| format!("{cause}; and ")), .left.join("; "))]
    NotRestored {
        /// What failed first, if the test did not run.
        cause: Option<Box<Self>>,
        /// What is left to undo by hand.
        left: Vec<String>,
    },
}

/// What a run had changed on the guest when it stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changes {
    /// Nothing: the checks failed before the first copy.
    Nothing,
    /// Only files copied into the working folder (left there).
    CopiesOnly(String),
    /// Verifier settings or the service, which were undone.
    Settings,
}

impl std::fmt::Display for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Nothing => f.write_str("nothing on the guest was changed"),
            Self::CopiesOnly(dir) => write!(
                f,
                "only files were copied to {dir}, and are left there; nothing else was changed"
            ),
            Self::Settings => f.write_str("the guest was restored"),
        }
    }
}

type Result<T, E = VmError> = std::result::Result<T, E>;

/// What a guest command returned. `code: None` means the connection failed
/// or the command outlived its limit (a machine that bug-checks does both).
#[derive(Debug, Clone, Default)]
pub struct Remote {
    /// Exit code, if the command finished.
    pub code: Option<i32>,
    /// Its output.
    pub stdout: String,
    /// Its errors (or the transport's).
    pub stderr: String,
}

impl Remote {
    fn ok(&self) -> bool {
        self.code == Some(0)
    }

    fn first_error_line(&self) -> String {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        text.lines()
            .find(|line| !line.trim().is_empty())
            .unwrap_or("no output")
            .trim()
            .to_owned()
    }
}

/// How the harness reaches the guest.
pub trait Transport {
    /// Runs a command line on the guest (cmd.exe syntax).
    ///
    /// # Errors
    /// Only for local problems (no ssh program); guest failures are in `Remote`.
    fn run(&mut self, command: &str, timeout: Duration) -> Result<Remote, TransportError>;
    /// Copies a local file to a path on the guest.
    ///
    /// # Errors
    /// The copy failed.
    fn upload(&mut self, local: &Path, remote: &str) -> Result<(), TransportError>;
    /// Copies a guest file here.
    ///
    /// # Errors
    /// The copy failed.
    fn download(&mut self, remote: &str, local: &Path) -> Result<(), TransportError>;
    /// Waits `pause` between polls (tests do not really sleep).
    fn pause(&mut self, pause: Duration) {
        std::thread::sleep(pause);
    }
}

/// OpenSSH to the guest (`ssh` and `scp` from the host).
pub struct Ssh {
    /// `user@host`.
    pub target: String,
    /// Extra `-o` options.
    pub options: Vec<String>,
}

impl Ssh {
    fn base(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.args([
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "ServerAliveInterval=5",
            "-o",
            "ServerAliveCountMax=3",
        ]);
        for option in &self.options {
            command.args(["-o", option]);
        }
        command.stdin(Stdio::null());
        command
    }
}

impl Transport for Ssh {
    fn run(&mut self, command: &str, timeout: Duration) -> Result<Remote, TransportError> {
        check_host(&self.target)?;
        let mut ssh = self.base("ssh");
        // `--` ends ssh's options: nothing after it is read as one.
        ssh.arg("--").arg(&self.target).arg(command);
        match harness_core::process::run_with_timeout(&mut ssh, b"", timeout) {
            Ok(output) => Ok(Remote {
                // ssh's own failures (unreachable, dropped) exit 255.
                code: output.status.code().filter(|code| *code != 255),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            }),
            Err(timeout @ ProcessError::Timeout { .. }) => Ok(Remote {
                code: None,
                stdout: String::new(),
                stderr: timeout.to_string(),
            }),
            Err(error) => Err(error.into()),
        }
    }

    fn upload(&mut self, local: &Path, remote: &str) -> Result<(), TransportError> {
        let to = self.remote(remote);
        self.scp(local.as_os_str(), to.as_ref(), "scp to the guest failed")
    }

    fn download(&mut self, remote: &str, local: &Path) -> Result<(), TransportError> {
        let from = self.remote(remote);
        self.scp(
            from.as_ref(),
            local.as_os_str(),
            "scp from the guest failed",
        )
    }
}

impl Ssh {
    /// `user@host:C:/path`, as scp names a guest file.
    fn remote(&self, path: &str) -> String {
        format!("{}:{}", self.target, path.replace('\\', "/"))
    }

    fn scp(
        &self,
        from: &std::ffi::OsStr,
        to: &std::ffi::OsStr,
        what: &str,
    ) -> Result<(), TransportError> {
        check_host(&self.target)?;
        let mut scp = self.base("scp");
        // `--` ends scp's options, so neither path is read as one (a local
        // file named `-x.sys`, a guest name starting with `-`).
        scp.arg("--").arg(from).arg(to);
        harness_core::process::run_checked(&mut scp, Duration::from_mins(5), what)?;
        Ok(())
    }
}

/// Everything `vm` needs.
#[derive(Debug, Clone)]
pub struct VmOptions {
    /// The driver to test.
    pub driver: PathBuf,
    /// samplectl.exe for the guest's architecture.
    pub samplectl: PathBuf,
    /// The driver's architecture (must match the guest).
    pub arch: Arch,
    /// Working folder on the guest.
    pub guest_dir: String,
    /// kd.exe on the guest.
    pub kd: String,
    /// Symbol path for kd on the guest.
    pub symbols: String,
    /// Run on this host after restoring, e.g. a snapshot revert.
    pub revert_command: Option<String>,
    /// How long a reboot may take.
    pub boot_timeout: Duration,
    /// How long kd may take (symbol downloads).
    pub kd_timeout: Duration,
    /// A kd script to run on the dump instead of `!analyze -v; !verifier 3`
    /// (it should include both, for the verdict).
    pub kd_script: Option<PathBuf>,
    /// Pause between polls.
    pub poll: Duration,
    /// The flags for `verifier /flags` (the walkthrough's 0x8 by default).
    pub verifier_flags: harness_core::verifier::VerifierFlags,
}

/// How the guest's service and verifier are driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    /// samplectl.exe (Windows 10 and later: Rust's std needs them).
    Samplectl,
    /// sc.exe and verifier.exe directly (Windows 7/8).
    Builtin,
}

/// What the harness asks of the guest's service and verifier.
#[derive(Debug, Clone, Copy)]
enum Action {
    Install,
    Start,
    Stop,
    Uninstall,
    VerifierEnable,
    VerifierDisable,
}

const SERVICE: &str = "Sample";

/// `verifier /query`: what Driver Verifier does in this boot, with the pool
/// counters of each verified image. samplectl's `verifier status` also prints
/// `/querysettings`, which lists the drivers set for verification whether or
/// not the verifier is active, so the harness asks verifier.exe directly.
const QUERY: &str = "verifier /query";

/// verifier.exe's exit codes ("Driver Verifier Command Syntax", Return Codes):
/// 0 success, 1 error, 2 success that needs a reboot (what `/flags` and
/// `/reset` return, since both take effect at the next boot).
const fn verifier_succeeded(code: Option<i32>) -> bool {
    matches!(code, Some(0 | 2))
}

struct Run<'a> {
    transport: &'a mut dyn Transport,
    options: &'a VmOptions,
    progress: &'a mut dyn FnMut(&str),
    control: Control,
    driver_file: String,
    /// What has been changed on the guest and must be undone.
    copied: bool,
    verifier_set: bool,
    service_installed: bool,
    /// The kernel dump's path on the guest (`DumpFile`, expanded).
    dump_path: String,
}

/// Runs the whole sequence. The guest is restored whatever happens; a
/// failure says which step failed and what was or was not restored.
///
/// # Errors
/// A step failed or timed out.
pub fn run(
    transport: &mut dyn Transport,
    options: &VmOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<Verdict> {
    let driver_file = options
        .driver
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .ok_or(VmError::NoDriverFile)?;
    // The name goes into guest command lines (sc's binPath, verifier's
    // /driver, kd's aliases), unquoted in places.
    if !driver_file
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return Err(VmError::BadDriverName(driver_file));
    }
    let mut run = Run {
        transport,
        options,
        progress,
        control: Control::Samplectl,
        driver_file,
        copied: false,
        verifier_set: false,
        service_installed: false,
        dump_path: String::new(),
    };
    let result = run.test();
    let changes = if run.verifier_set || run.service_installed {
        Changes::Settings
    } else if run.copied {
        Changes::CopiesOnly(options.guest_dir.clone())
    } else {
        Changes::Nothing
    };
    let restored = run.restore(&changes);
    let reverted = changes != Changes::Nothing && options.revert_command.is_some();
    match (result, restored) {
        (Ok(verdict), Ok(())) => {
            (run.progress)("[7/7] verdict");
            Ok(verdict)
        }
        (Ok(_), Err(left)) => Err(VmError::NotRestored { cause: None, left }),
        (Err(cause), Ok(())) => Err(VmError::Restored {
            cause: Box::new(cause),
            changes,
            reverted,
        }),
        (Err(cause), Err(left)) => Err(VmError::NotRestored {
            cause: Some(Box::new(cause)),
            left,
        }),
    }
}

impl Run<'_> {
    fn say(&mut self, step: usize, text: &str) {
        (self.progress)(&format!("[{step}/7] {text}"));
    }

    fn guest(&mut self, command: &str, timeout: Duration) -> Result<Remote> {
        Ok(self.transport.run(command, timeout)?)
    }

    /// Runs a command that must succeed (`ok` says what success is).
    fn expect(&mut self, command: &str, what: &str, ok: fn(Option<i32>) -> bool) -> Result<Remote> {
        let remote = self.guest(command, Duration::from_mins(2))?;
        if ok(remote.code) {
            Ok(remote)
        } else if remote.code.is_none() {
            Err(VmError::Lost {
                what: what.to_owned(),
                detail: remote.first_error_line(),
            })
        } else {
            Err(VmError::Command {
                what: what.to_owned(),
                detail: remote.first_error_line(),
            })
        }
    }

    fn must(&mut self, command: &str, what: &str) -> Result<Remote> {
        self.expect(command, what, |code| code == Some(0))
    }

    fn path(&self, file: &str) -> String {
        format!("{}\\{file}", self.options.guest_dir)
    }

    /// The name of the image the kernel loads, which is the name Driver
    /// Verifier matches (`/driver` takes "binary names, such as Driver.sys").
    /// samplectl installs a copy as `%SystemRoot%\System32\drivers\<service>.sys`;
    /// sc.exe's binPath is the uploaded file itself.
    fn image_name(&self) -> String {
        match self.control {
            Control::Samplectl => format!("{SERVICE}.sys"),
            Control::Builtin => self.driver_file.clone(),
        }
    }

    /// The guest command for a service or verifier action.
    fn control(&self, action: Action) -> String {
        let samplectl = format!("\"{}\"", self.path("samplectl.exe"));
        let driver = self.path(&self.driver_file);
        let image = self.image_name();
        match self.control {
            Control::Samplectl => match action {
                Action::Install => format!("{samplectl} install \"{driver}\" --name {SERVICE}"),
                Action::Start => format!("{samplectl} start --name {SERVICE}"),
                Action::Stop => format!("{samplectl} stop --name {SERVICE}"),
                Action::Uninstall => format!("{samplectl} uninstall --name {SERVICE}"),
                Action::VerifierEnable => {
                    format!(
                        "{samplectl} verifier enable --flags {} --driver {image}",
                        self.options.verifier_flags
                    )
                }
                Action::VerifierDisable => format!("{samplectl} verifier disable"),
            },
            Control::Builtin => match action {
                Action::Install => {
                    format!("sc create {SERVICE} type= kernel start= demand binPath= \"{driver}\"")
                }
                Action::Start => format!("sc start {SERVICE}"),
                Action::Stop => format!("sc stop {SERVICE}"),
                // The stop is only a precaution (the test stopped it, or it
                // never started); the delete is what restores the guest.
                Action::Uninstall => format!("sc delete {SERVICE}"),
                Action::VerifierEnable => format!(
                    "verifier /flags {} /driver {image}",
                    self.options.verifier_flags
                ),
                Action::VerifierDisable => "verifier /reset".to_owned(),
            },
        }
    }

    /// A value that changes with every boot.
    fn boot_id(&mut self) -> Result<Option<String>> {
        let remote = self.guest(
            "powershell -NoProfile -Command \"(Get-WmiObject Win32_OperatingSystem).LastBootUpTime\"",
            Duration::from_mins(1),
        )?;
        Ok(remote
            .ok()
            .then(|| remote.stdout.trim().to_owned())
            .filter(|id| !id.is_empty()))
    }

    /// The kernel dump's last write time and size (empty: no dump).
    fn dump_stamp(&mut self) -> Result<String> {
        let path = self.dump_path.replace('\'', "''");
        let remote = self.guest(
            &format!(
                "powershell -NoProfile -Command \"if (Test-Path -LiteralPath '{path}') {{ $f = Get-Item -LiteralPath '{path}'; '' + $f.LastWriteTimeUtc.Ticks + ' ' + $f.Length }}\""
            ),
            Duration::from_mins(1),
        )?;
        Ok(remote.stdout.trim().to_owned())
    }

    /// Waits for a new dump that has stopped growing. Windows may still be
    /// copying the dump out of the page file when SSH first answers after
    /// the crash reboot, so one look is not enough.
    fn wait_for_dump(&mut self, before: &str) -> Result<()> {
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < self.options.boot_timeout {
            let now = self.dump_stamp()?;
            if !now.is_empty() && now != before && now == last {
                return Ok(());
            }
            last = now;
            self.transport.pause(self.options.poll);
        }
        Err(VmError::NoNewDump {
            path: self.dump_path.clone(),
            limit: self.options.boot_timeout,
        })
    }

    /// Waits until the guest has booted again (its boot id differs from `before`).
    fn wait_for_boot(&mut self, before: &str, why: &str) -> Result<()> {
        let started = Instant::now();
        while started.elapsed() < self.options.boot_timeout {
            if let Some(now) = self.boot_id()?
                && now != before
            {
                return Ok(());
            }
            self.transport.pause(self.options.poll);
        }
        Err(VmError::BootTimeout {
            why: why.to_owned(),
            limit: self.options.boot_timeout,
        })
    }

    fn reboot(&mut self, why: &str) -> Result<()> {
        let before = self.boot_id()?.ok_or(VmError::NoBootTime)?;
        self.guest("shutdown /r /t 2", Duration::from_mins(1))?;
        self.wait_for_boot(&before, why)
    }

    /// `verifier /query`, read, with its text.
    fn query(&mut self) -> Result<(VerifierQuery, String)> {
        let text = self.must(QUERY, "could not query Driver Verifier")?.stdout;
        Ok((parse_query(&text), text))
    }

    fn test(&mut self) -> Result<Verdict> {
        let dump_before = self.prepare()?;
        self.enable_verifier()?;
        if !self.exercise()? {
            self.say(
                5,
                "no bug check: reading the verifier's pool counters (verifier /query)",
            );
            let (query, raw) = self.query()?;
            let image = self.image_name();
            if query.module(&image).is_none() && !query.none_verified {
                return Err(VmError::CountersUnread {
                    image,
                    raw: one_line(&raw),
                });
            }
            let mut verdict = clean_verdict(&image, self.options.arch, &query)?;
            if verdict.driver != self.driver_file {
                verdict.notes.push(format!(
                    "{} was loaded and verified as {}",
                    self.driver_file, verdict.driver
                ));
                verdict.driver.clone_from(&self.driver_file);
            }
            return Ok(verdict);
        }
        self.say(
            4,
            &format!("waiting for the kernel dump {}", self.dump_path),
        );
        self.wait_for_dump(&dump_before)?;
        self.analyze_dump()
    }

    /// Step 1: the checks (nothing changed yet), then the copies. Returns the
    /// kernel dump's timestamp before the test.
    fn prepare(&mut self) -> Result<String> {
        let options = self.options;
        self.say(
            1,
            &format!(
                "copying {} and samplectl.exe to the guest",
                self.driver_file
            ),
        );
        let version = self
            .must(
                "ver",
                "cannot reach the guest over SSH (see README: guest preparation)",
            )?
            .stdout;
        // A 32-bit process on 64-bit Windows (WOW64) sees
        // PROCESSOR_ARCHITECTURE x86 and PROCESSOR_ARCHITEW6432 AMD64 (WOW64
        // Implementation Details, Environment Variables); cmd echoes an
        // undefined variable as written.
        let guest_arch = self
            .must(
                "echo %PROCESSOR_ARCHITECTURE% %PROCESSOR_ARCHITEW6432%",
                "cannot read the guest's architecture",
            )?
            .stdout;
        let mut words = guest_arch.split_whitespace();
        let (native, wow64) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        if wow64 == "AMD64" {
            return Err(VmError::Wow64Ssh);
        }
        let guest_arch = if native == "AMD64" {
            Arch::X64
        } else if native == "x86" {
            Arch::X86
        } else {
            return Err(VmError::UnsupportedGuest(native.to_owned()));
        };
        if guest_arch != options.arch {
            return Err(VmError::ArchMismatch {
                driver: options.arch,
                guest: guest_arch,
            });
        }
        let windows = windows_version(&version);
        if guest_arch == Arch::X64 && windows == Some((6, 1)) {
            self.sha2_signing_support()?;
        }
        if windows.is_some_and(|(major, _)| major < 10) {
            self.control = Control::Builtin;
            (self.progress)(
                "      guest is older than Windows 10: using sc.exe and verifier.exe (samplectl, like all current Rust programs, needs Windows 10+)",
            );
        }
        // Refuse early, before changing anything, if the evidence would be lost.
        let dump = self.guest(
            "reg query HKLM\\SYSTEM\\CurrentControlSet\\Control\\CrashControl /v CrashDumpEnabled",
            Duration::from_mins(1),
        )?;
        let dump_kind = dump
            .stdout
            .split_whitespace()
            .last()
            .unwrap_or("")
            .trim_start_matches("0x")
            .to_owned();
        if !matches!(dump_kind.as_str(), "1" | "2" | "7") {
            return Err(VmError::NoKernelDump);
        }
        self.crash_settings()?;
        self.no_kernel_debugger()?;
        let kd_check = self.guest(
            &format!(
                "if exist \"{}\" (echo found) else (echo missing)",
                options.kd
            ),
            Duration::from_mins(1),
        )?;
        if !kd_check.stdout.contains("found") {
            return Err(VmError::NoKd(options.kd.clone()));
        }
        self.must(
            &format!("if not exist \"{0}\" mkdir \"{0}\"", options.guest_dir),
            "cannot create the guest folder",
        )?;
        let guest_driver = self.path(&self.driver_file);
        self.copied = true;
        self.transport.upload(&options.driver, &guest_driver)?;
        let pdb = options.driver.with_extension("pdb");
        if pdb.is_file() {
            let guest_pdb = self.path(
                &pdb.file_name()
                    .map(|name| name.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
            self.transport.upload(&pdb, &guest_pdb)?;
        }
        if self.control == Control::Samplectl {
            let guest_samplectl = self.path("samplectl.exe");
            self.transport
                .upload(&options.samplectl, &guest_samplectl)?;
        }
        self.dump_stamp()
    }

    /// The dump's path and the restart after a bug check, from the values
    /// `Win32_OSRecoveryConfiguration` maps to `CrashControl`: `DumpFile`
    /// (`DebugFilePath`, e.g. `%SystemRoot%\MEMORY.DMP`) and `AutoReboot`
    /// ("System will automatically reboot during a recovery operation").
    fn crash_settings(&mut self) -> Result<()> {
        let auto_reboot = self.guest(
            &format!("{CRASH_CONTROL} /v AutoReboot"),
            Duration::from_mins(1),
        )?;
        // Absent means Windows' default, which restarts.
        if auto_reboot.ok()
            && reg_value(&auto_reboot.stdout, "AutoReboot").is_some_and(|value| value == "0x0")
        {
            return Err(VmError::NoAutoReboot);
        }
        let dump_file = self.guest(
            &format!("{CRASH_CONTROL} /v DumpFile"),
            Duration::from_mins(1),
        )?;
        let configured = dump_file
            .ok()
            .then(|| reg_value(&dump_file.stdout, "DumpFile"))
            .flatten()
            .unwrap_or_else(|| DEFAULT_DUMP.to_owned());
        let root = self
            .must("echo %SystemRoot%", "cannot read the guest's %SystemRoot%")?
            .stdout
            .trim()
            .to_owned();
        self.dump_path = expand_system_root(&configured, &root);
        Ok(())
    }

    /// Windows 7 x64 checks a SHA-256-only signature only with the SHA-2
    /// code signing update: KB3033929 (Microsoft Security Advisory 3033929,
    /// "Availability of SHA-2 Code Signing Support for Windows 7 and Windows
    /// Server 2008 R2"), or its 2019 successor KB4474419. Without it a driver
    /// signed with SHA-256 alone fails to start with 577; refuse first.
    fn sha2_signing_support(&mut self) -> Result<()> {
        let options = self.options;
        let image = std::fs::read(&options.driver).map_err(|source| TransportError::Io {
            what: "read",
            path: options.driver.clone(),
            source,
        })?;
        if harness_build::signing::certificate_table(&image).is_none() || sha1_signature(&image) {
            return Ok(());
        }
        let updates = self.guest(SHA2_UPDATES, Duration::from_mins(1))?;
        if updates.ok() && updates.stdout.contains("KB") {
            return Ok(());
        }
        Err(VmError::NoSha2Support)
    }

    /// Refuses a guest booted with kernel debugging on: "Attaching an active
    /// kernel debugger to the target computer disables the enforcement of
    /// kernel-mode digital signatures" (Installing an Unsigned Driver during
    /// Development and Test; Appendix 1: Enforcing Kernel-Mode Signature
    /// Verification in Kernel Debugging Mode), and a bug check breaks into
    /// the debugger instead of writing the dump and restarting. bcdedit shows
    /// the boot entry's `debug` element (`BCDEdit /debug`).
    fn no_kernel_debugger(&mut self) -> Result<()> {
        let boot = self.must(
            BOOT_ENTRY,
            "cannot read the guest's boot settings (bcdedit needs an administrator's SSH session)",
        )?;
        if kernel_debugging(&boot.stdout) {
            return Err(VmError::KernelDebugger);
        }
        Ok(())
    }

    /// Step 2: pool tracking for the image the kernel will load, active after
    /// a reboot, which `verifier /query` must show.
    fn enable_verifier(&mut self) -> Result<()> {
        let image = self.image_name();
        self.say(
            2,
            &format!(
                "enabling Driver Verifier flags {} ({}) for {image} and rebooting",
                self.options.verifier_flags,
                self.options.verifier_flags.names()
            ),
        );
        let enable = self.control(Action::VerifierEnable);
        self.verifier_set = true;
        self.expect(
            &enable,
            "could not enable Driver Verifier",
            verifier_succeeded,
        )?;
        self.reboot("enabling Driver Verifier")?;
        let raw = self.must(QUERY, "could not query Driver Verifier")?.stdout;
        let query = parse_query(&raw);
        if query.module(&image).is_some() {
            return Ok(());
        }
        // "No drivers are currently verified." is a clear no. Any other text
        // is a /query form the harness does not know (Windows 7's was never
        // captured here); the settings "that will take effect after the next
        // boot" (/querysettings, Viewing Driver Verifier Settings), read after
        // that boot, are then the documented proof that the verifier is set.
        if !query.none_verified {
            let settings = self
                .must(QUERY_SETTINGS, "could not query Driver Verifier's settings")?
                .stdout;
            if settings_list(&settings, &image) {
                (self.progress)(&format!(
                    "      verifier /query's form is not one the harness reads; /querysettings lists {image}, so the verifier is taken as set. verifier /query printed: {}",
                    one_line(&raw)
                ));
                return Ok(());
            }
        }
        Err(VmError::NotVerified {
            image,
            raw: one_line(&raw),
        })
    }

    /// Steps 3 and 4: load and unload the driver; true if the guest bug-checked.
    fn exercise(&mut self) -> Result<bool> {
        self.say(3, "installing, starting and stopping the driver");
        let install = self.control(Action::Install);
        self.must(&install, "install failed")?;
        self.service_installed = true;
        let start = self.control(Action::Start);
        self.must(&start, "start failed")?;
        let boot_before_stop = self.boot_id()?.unwrap_or_default();
        let stop = self.control(Action::Stop);
        let stopped = self.guest(&stop, Duration::from_mins(2))?;

        self.say(4, "checking for a bug check");
        // A bug check drops the connection and reboots the guest; a stop
        // that fails and says why (no unload routine, say) is not one.
        match stopped.code {
            Some(0) => Ok(false),
            Some(_) => Err(VmError::Command {
                what: "stop failed".into(),
                detail: stopped.first_error_line(),
            }),
            None => {
                self.wait_for_boot(&boot_before_stop, "the bug check")?;
                Ok(true)
            }
        }
    }

    /// Step 5: kd on the dump; its output read into a verdict.
    fn analyze_dump(&mut self) -> Result<Verdict> {
        let options = self.options;
        let image = self.image_name();
        self.say(
            5,
            &format!("running kd on the kernel dump (!analyze -v; !verifier 3 {image})"),
        );
        let kd_out = self.path("kd.txt");
        let commands = match &options.kd_script {
            Some(script) => {
                let guest_script = self.path("harness-kd-script.txt");
                self.transport.upload(script, &guest_script)?;
                // The script names the driver through these aliases
                // (docs/kd/postmortem.txt); `aS` ends its phrase at `;`.
                format!(
                    "aS SampleImage {image}; aS SampleModule {}; $$<{guest_script}; q",
                    module_name(&image)
                )
            }
            None => format!("!analyze -v; !verifier 3 {image}; q"),
        };
        let kd_command = format!(
            "\"{}\" -z \"{}\" -y \"{};{}\" -c \"{commands}\" > \"{kd_out}\" 2>&1",
            options.kd, self.dump_path, options.symbols, options.guest_dir
        );
        let kd = self.guest(&kd_command, options.kd_timeout)?;
        if kd.code.is_none() {
            return Err(VmError::KdTimeout(options.kd_timeout));
        }
        let local = std::env::temp_dir().join(format!("harness-vm-kd-{}.txt", std::process::id()));
        self.transport.download(&kd_out, &local)?;
        let text = std::fs::read_to_string(&local).map_err(|source| TransportError::Io {
            what: "read the kd output in",
            path: local.clone(),
            source,
        });
        let _ = std::fs::remove_file(&local);
        let mut verdict = harness_kd_text::analyze(&text?, "kd output from the guest")?;
        verdict.engine = Engine::Vm;
        verdict.driver.clone_from(&self.driver_file);
        Ok(verdict)
    }

    /// Undoes what the run changed; says what is left if anything fails.
    /// The revert command runs only if something was changed.
    fn restore(&mut self, changes: &Changes) -> std::result::Result<(), Vec<String>> {
        if *changes == Changes::Nothing {
            self.say(6, "nothing on the guest to restore");
            return Ok(());
        }
        self.say(6, "restoring the guest");
        let mut left = Vec::new();
        if self.service_installed {
            if self.control == Control::Builtin {
                let stop = self.control(Action::Stop);
                let _ = self.guest(&stop, Duration::from_mins(2));
            }
            let uninstall = self.control(Action::Uninstall);
            match self.guest(&uninstall, Duration::from_mins(2)) {
                Ok(remote) if service_gone(self.control, &remote) => {}
                Ok(remote) => left.push(format!(
                    "the {SERVICE} service ({uninstall}: {}; remove it with sc delete {SERVICE})",
                    remote.first_error_line()
                )),
                Err(_) => left.push(format!(
                    "the {SERVICE} service (remove: sc delete {SERVICE})"
                )),
            }
        }
        if self.verifier_set {
            let disable = self.control(Action::VerifierDisable);
            let reset = self
                .guest(&disable, Duration::from_mins(2))
                .is_ok_and(|remote| verifier_succeeded(remote.code));
            let rebooted = reset && self.reboot("resetting Driver Verifier").is_ok();
            if !reset {
                left.push(
                    "Driver Verifier settings (run `verifier /reset` on the guest and reboot)"
                        .into(),
                );
            } else if !rebooted {
                left.push(
                    "a reboot: Driver Verifier is reset but stays active until the guest reboots"
                        .into(),
                );
            }
        }
        if let Some(command) = &self.options.revert_command {
            (self.progress)(&format!("      running the revert command: {command}"));
            let status = Command::new("sh").arg("-c").arg(command).status();
            if !status.is_ok_and(|status| status.success()) {
                left.push(format!("the snapshot (revert command failed: {command})"));
            }
        }
        if left.is_empty() { Ok(()) } else { Err(left) }
    }
}

/// The crash dump settings' registry key, read with reg.exe.
const CRASH_CONTROL: &str = "reg query HKLM\\SYSTEM\\CurrentControlSet\\Control\\CrashControl";

/// Where a kernel dump goes when `DumpFile` is not set ("Kernel memory
/// dump": "The default file is %SystemRoot%\Memory.dmp").
const DEFAULT_DUMP: &str = "%SystemRoot%\\MEMORY.DMP";

/// The settings for the next boot (Viewing Driver Verifier Settings).
const QUERY_SETTINGS: &str = "verifier /querysettings";

/// The boot entry the guest runs (`BCDEdit /enum`).
const BOOT_ENTRY: &str = "bcdedit /enum {current}";

/// A value out of `reg query KEY /v NAME`'s listing
/// (`    DumpFile    REG_EXPAND_SZ    %SystemRoot%\MEMORY.DMP`).
fn reg_value(listing: &str, name: &str) -> Option<String> {
    listing.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        let first = words.next()?;
        if !first.eq_ignore_ascii_case(name) {
            return None;
        }
        let kind = words.next().filter(|kind| kind.starts_with("REG_"))?;
        let (_, value) = line.split_once(kind)?;
        Some(value.trim().to_owned())
    })
}

/// `%SystemRoot%\MEMORY.DMP` with the guest's `%SystemRoot%`.
fn expand_system_root(path: &str, root: &str) -> String {
    const VARIABLE: &str = "%systemroot%";
    // ASCII lowercasing keeps every byte offset.
    path.to_ascii_lowercase().find(VARIABLE).map_or_else(
        || path.to_owned(),
        |at| format!("{}{root}{}", &path[..at], &path[at + VARIABLE.len()..]),
    )
}

/// Whether bcdedit's listing of the boot entry has `debug Yes`.
fn kernel_debugging(listing: &str) -> bool {
    listing.lines().any(|line| {
        let mut words = line.split_whitespace();
        words
            .next()
            .is_some_and(|word| word.eq_ignore_ascii_case("debug"))
            && words
                .next()
                .is_some_and(|word| word.eq_ignore_ascii_case("yes"))
    })
}

/// Whether `/querysettings` names `image` among the verified drivers: a
/// line that is the name, whole.
fn settings_list(settings: &str, image: &str) -> bool {
    settings
        .lines()
        .flat_map(str::split_whitespace)
        .any(|word| word.eq_ignore_ascii_case(image))
}

/// A guest's output on one line, capped, for an error message.
fn one_line(text: &str) -> String {
    const CAP: usize = 400;
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.is_empty() {
        return "(nothing)".to_owned();
    }
    match joined.char_indices().nth(CAP) {
        Some((at, _)) => format!("{}...", &joined[..at]),
        None => joined,
    }
}

/// Whether the uninstall removed the service. sc.exe exits with the Win32
/// error: 0, or 1060 `ERROR_SERVICE_DOES_NOT_EXIST` (already gone), or 1072
/// `ERROR_SERVICE_MARKED_FOR_DELETE`, which `DeleteService` returns when the
/// service "has already been marked for deletion" (`DeleteService`, Return
/// value): it goes when the last handle closes. Any other code (5, access
/// denied) leaves it. samplectl exits 0 only when it is gone.
fn service_gone(control: Control, remote: &Remote) -> bool {
    match control {
        Control::Samplectl => remote.ok(),
        Control::Builtin => matches!(remote.code, Some(0 | 1060 | 1072)),
    }
}

/// kd's module name for an image: the file name without its extension
/// (`Sample.sys` -> `Sample`).
fn module_name(image: &str) -> &str {
    image.rsplit_once('.').map_or(image, |(stem, _)| stem)
}

/// `Microsoft Windows [Version 10.0.19045.3803]` -> (10, 0).
fn windows_version(ver: &str) -> Option<(u32, u32)> {
    let (_, rest) = ver.split_once("Version ")?;
    let mut parts = rest.split('.');
    let major = parts.next()?.trim().parse().ok()?;
    let minor = parts.next()?.trim().parse().ok()?;
    Some((major, minor))
}

/// Lists whichever SHA-2 code signing update is installed (Get-HotFix,
/// PowerShell 2.0 as Windows 7 ships it).
const SHA2_UPDATES: &str = "powershell -NoProfile -Command \"Get-HotFix -Id KB3033929,KB4474419 -ErrorAction SilentlyContinue | ForEach-Object { $_.HotFixID }\"";

/// Whether the image's Authenticode signature includes a SHA-1 one: the
/// SHA-1 algorithm identifier (OID 1.3.14.3.2.26, DER `06 05 2B 0E 03 02
/// 1A`) in the certificate table, as a SHA-1 or dual signature's digest
/// algorithm (Windows Authenticode Portable Executable Signature Format).
/// A SHA-256-only signature names SHA-256 (2.16.840.1.101.3.4.2.1) instead.
fn sha1_signature(image: &[u8]) -> bool {
    const SHA1: [u8; 7] = [0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a];
    harness_build::signing::certificate_table(image)
        .and_then(|(offset, size)| {
            let start = usize::try_from(offset).ok()?;
            let end = start.checked_add(usize::try_from(size).ok()?)?;
            image.get(start..end)
        })
        .is_some_and(|table| table.windows(SHA1.len()).any(|window| window == SHA1))
}

/// A run without a bug check: the verdict from the verifier's counters for
/// the loaded image. Not clean unless the verifier saw the image load and
/// unload with nothing outstanding.
fn clean_verdict(image: &str, arch: Arch, query: &VerifierQuery) -> Result<Verdict> {
    let module = query
        .module(image)
        .filter(|module| module.loads > 0)
        .ok_or_else(|| VmError::NotLoadedVerified(image.to_owned()))?;
    let outstanding = module.current_paged + module.current_nonpaged;
    let mut verdict = Verdict::new(image, Engine::Vm, Some(arch));
    verdict.verifier = true;
    verdict.pool_stats = PoolStats {
        current_paged: (module.current_paged, module.paged_bytes),
        current_nonpaged: (module.current_nonpaged, module.nonpaged_bytes),
        ..PoolStats::default()
    };
    if module.unloads < module.loads {
        // The stop returned, yet the verifier counts the image as loaded.
        verdict.stage = Stage::Loaded;
        verdict.notes.push(format!(
            "verifier /query: {image} loaded {} times, unloaded {} times",
            module.loads, module.unloads
        ));
        return Ok(verdict);
    }
    if outstanding > 0 {
        return Err(VmError::Outstanding {
            driver: image.to_owned(),
            count: outstanding,
        });
    }
    verdict.stage = Stage::Unloaded;
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_versions() {
        assert_eq!(
            windows_version("\r\nMicrosoft Windows [Version 6.1.7601]\r\n"),
            Some((6, 1))
        );
        assert_eq!(
            windows_version("Microsoft Windows [Version 10.0.26100.1742]"),
            Some((10, 0))
        );
        assert_eq!(windows_version("nonsense"), None);
    }

    #[test]
    fn verifier_exit_codes() {
        assert!(verifier_succeeded(Some(0)));
        assert!(verifier_succeeded(Some(2)));
        assert!(!verifier_succeeded(Some(1)));
        assert!(!verifier_succeeded(None));
    }
}
