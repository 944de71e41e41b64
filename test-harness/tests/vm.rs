//! The VM orchestration, run against a scripted guest that answers as
//! Microsoft documents Windows to answer: verifier.exe's return codes and
//! `/query` output, the kernel-mode code signing policy, Driver Verifier
//! matching the loaded image's name. Each behaviour cites its source. The kd
//! output it hands back is the walkthrough's real debugger log.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use harness::vm::{self, Remote, Transport, TransportError, VmError, VmOptions};
use harness_core::arch::Arch;
use harness_core::verdict::{Engine, ExitCode, Verdict};

const KD_OUTPUT: &str = include_str!("fixtures/walkthrough-win7-x86.txt");

/// What the guest's verifier does with its settings at boot.
#[derive(Clone, Copy, PartialEq, Eq)]
enum VerifierBoot {
    /// As documented: `/flags ... /driver X` "Activates the specified
    /// options after the next reboot" (Driver Verifier Command Syntax).
    Applies,
    /// The settings are written but never take effect (a guest where the
    /// verifier stays off): `/querysettings` still lists the driver.
    NeverActive,
}

/// Pool counters of one verified image in this boot.
#[derive(Clone, Default)]
struct Counters {
    loads: u32,
    unloads: u32,
    paged: u32,
}

/// A Windows guest, reduced to what the orchestration touches.
#[allow(clippy::struct_excessive_bools)]
struct FakeGuest {
    version: &'static str,
    arch: &'static str,
    secure_boot: bool,
    testsigning: bool,
    dump_setting: &'static str,
    kd_present: bool,
    /// The driver's unload routine skips its free.
    leaky: bool,
    /// Not documented behaviour, a robustness case: the verifier counts the
    /// leak but does not bug-check at unload.
    bugchecks: bool,
    verifier_boot: VerifierBoot,
    /// verifier.exe fails (exit 1), e.g. not elevated.
    verifier_fails: bool,
    reboot_returns: bool,
    boot: u32,
    /// Commands that fail (connection refused) before the guest answers again.
    down: u32,
    /// `verifier /flags` settings (registry): drivers for the next boot.
    settings: Option<Vec<String>>,
    /// Images verified in this boot, with their counters.
    active: Vec<(String, Counters)>,
    files: HashMap<String, Vec<u8>>,
    /// The service: (name, image name, image bytes).
    service: Option<(String, String, Vec<u8>)>,
    loaded: bool,
    dump: u32,
    kd_ran: bool,
    log: Vec<String>,
}

impl FakeGuest {
    fn new(leaky: bool) -> Self {
        Self {
            version: "10.0.19045.3803",
            arch: "AMD64",
            secure_boot: false,
            testsigning: true,
            dump_setting: "2",
            kd_present: true,
            leaky,
            bugchecks: true,
            verifier_boot: VerifierBoot::Applies,
            verifier_fails: false,
            reboot_returns: true,
            boot: 1,
            down: 0,
            settings: None,
            active: Vec::new(),
            files: HashMap::new(),
            service: None,
            loaded: false,
            dump: 0,
            kd_ran: false,
            log: Vec::new(),
        }
    }

    fn windows_7(leaky: bool) -> Self {
        Self {
            version: "6.1.7601",
            ..Self::new(leaky)
        }
    }

    /// (major, minor) of the version: Windows 7 is 6.1, Windows 8 is 6.2.
    fn version(&self) -> (u32, u32) {
        let mut parts = self
            .version
            .split('.')
            .map(|part| part.parse().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    }

    /// Whether the kernel refuses unsigned drivers. "Kernel-Mode Code
    /// Signing Policy": Windows Vista/7 (and 8+ with Secure Boot off) require
    /// signatures on 64-bit only, "no signature required for 32-bit";
    /// Windows 8+ with Secure Boot on require them on 64-bit and 32-bit.
    fn enforces_signatures(&self) -> bool {
        self.arch == "AMD64" || (self.version() >= (6, 2) && self.secure_boot)
    }

    /// Whether this image may load. "The TESTSIGNING Boot Configuration
    /// Option": with test signing on, the kernel loads drivers "signed by any
    /// certificate"... "However, each driver image file must have a digital
    /// signature." Without test signing, a test certificate is not accepted.
    fn may_load(&self, image: &[u8]) -> bool {
        !self.enforces_signatures() || (embedded_signature(image) && self.testsigning)
    }

    fn reboot(&mut self) {
        if self.reboot_returns {
            self.down = 2;
            self.boot += 1;
            self.loaded = false;
            self.active = match (&self.settings, self.verifier_boot) {
                (Some(drivers), VerifierBoot::Applies) => drivers
                    .iter()
                    .map(|name| (name.clone(), Counters::default()))
                    .collect(),
                _ => Vec::new(),
            };
        } else {
            self.down = u32::MAX;
        }
    }

    /// The counters of `image`, if the verifier verifies it in this boot:
    /// "`/driver DriverList`: ... a list of drivers by binary name, such as
    /// Driver.sys" (Driver Verifier Command Syntax), i.e. the loaded image.
    fn verified(&mut self, image: &str) -> Option<&mut Counters> {
        self.active
            .iter_mut()
            .find(|(name, _)| name.eq_ignore_ascii_case(image))
            .map(|(_, counters)| counters)
    }

    /// `verifier /query` in this Windows version's form (sources:
    /// tests/fixtures/vm/README.md). "No drivers are currently verified."
    /// when nothing is verified in this boot.
    fn query(&self) -> String {
        if self.active.is_empty() {
            return "\r\nNo drivers are currently verified.\r\n".into();
        }
        let mut text = String::from("\r\nVerifier Flags: 0x00000008\r\n\r\n");
        for (name, counters) in &self.active {
            if self.version().0 >= 10 {
                let _ = write!(
                    text,
                    "MODULE: {name} (load: {} / unload: {})\r\n    Current Pool Allocations:  (      0 / {:>6} )\r\n    Current Pool Bytes:        (      0 / {:>6} )\r\n",
                    counters.loads,
                    counters.unloads,
                    counters.paged,
                    counters.paged * 0x80
                );
            } else {
                let _ = write!(
                    text,
                    "Name: {name}, loads: {}, unloads: {}\r\nCurrentPagedPoolAllocations: {}\r\nCurrentNonPagedPoolAllocations: 0\r\nPagedPoolUsageInBytes: {}\r\nNonPagedPoolUsageInBytes: 0\r\n",
                    counters.loads,
                    counters.unloads,
                    counters.paged,
                    counters.paged * 0x80
                );
            }
        }
        text
    }

    /// `verifier /querysettings`: the settings for the next boot, listed
    /// "whether or not" they are active ("Displays a summary of the options
    /// that will be activated and drivers that will be verified after the
    /// next boot").
    fn query_settings(&self) -> String {
        self.settings.as_ref().map_or_else(
            || "Verifier Flags: 0x00000000\r\n\r\nVerified Drivers:\r\n\r\nNone\r\n".into(),
            |drivers| {
                format!(
                    "Verifier Flags: 0x00000008\r\n\r\nVerified Drivers:\r\n\r\n{}\r\n",
                    drivers.join("\r\n")
                )
            },
        )
    }

    fn ran(&self, needle: &str) -> usize {
        self.log
            .iter()
            .position(|command| command.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} never ran: {:#?}", self.log))
    }

    fn never_ran(&self, needle: &str) -> bool {
        !self.log.iter().any(|command| command.contains(needle))
    }

    fn file(&self, path: &str) -> Option<Vec<u8>> {
        self.files.get(path).cloned()
    }

    /// verifier.exe itself. Return codes ("Driver Verifier Command Syntax",
    /// Return Codes): 0 `EXIT_CODE_SUCCESS`, 1 `EXIT_CODE_ERROR`, 2
    /// `EXIT_CODE_REBOOT_NEEDED`; `/flags` and `/reset` take effect "after the
    /// next reboot"/"After the next boot", so they return 2.
    fn verifier(&mut self, args: &str) -> Remote {
        if self.verifier_fails {
            return reply(Some(1), "", "Access is denied.");
        }
        if let Some(rest) = args.strip_prefix("/flags 0x8 /driver ") {
            self.settings = Some(rest.split_whitespace().map(str::to_owned).collect());
            reply(
                Some(2),
                "New verifier settings:\r\n\r\nVerifier Flags: 0x00000008\r\n\r\nThe system reboot is required for the changes to take effect.\r\n",
                "",
            )
        } else if args == "/reset" {
            self.settings = None;
            reply(
                Some(2),
                "The system reboot is required for the changes to take effect.\r\n",
                "",
            )
        } else if args == "/query" {
            reply(Some(0), &self.query(), "")
        } else if args == "/querysettings" {
            reply(Some(0), &self.query_settings(), "")
        } else {
            reply(Some(1), "", "bad verifier arguments")
        }
    }

    /// samplectl.exe (installer/src): `install` copies the driver to
    /// `%SystemRoot%\System32\drivers\<name>.sys`, so the loaded image is
    /// `<name>.sys`; its verifier commands run verifier.exe and take 0 or 2
    /// as success (installer/src/verifier.rs).
    fn samplectl(&mut self, args: &str) -> Remote {
        let words: Vec<&str> = args.split_whitespace().collect();
        match words.as_slice() {
            ["install", path, "--name", name] => {
                let path = path.trim_matches('"');
                match self.file(path) {
                    Some(bytes) => {
                        self.service = Some(((*name).to_owned(), format!("{name}.sys"), bytes));
                        reply(Some(0), "service created", "")
                    }
                    None => reply(Some(1), "", &format!("samplectl: file not found: {path}")),
                }
            }
            ["start", "--name", _] => match self.start() {
                Ok(()) => reply(
                    Some(0),
                    "service 'Sample' started (DriverEntry succeeded)",
                    "",
                ),
                Err(577) => reply(
                    Some(1),
                    "",
                    "samplectl: Windows refused to load 'Sample' because it is not signed (error 577): ...",
                ),
                Err(code) => reply(Some(1), "", &format!("samplectl: error {code}")),
            },
            ["stop", "--name", _] => self.stop(),
            ["uninstall", "--name", _] => {
                self.loaded = false;
                self.service = None;
                reply(Some(0), "service 'Sample' deleted", "")
            }
            ["verifier", "enable", "--flags", "0x8", "--driver", driver] => {
                let result = self.verifier(&format!("/flags 0x8 /driver {driver}"));
                samplectl_verifier(&result)
            }
            ["verifier", "disable"] => {
                let result = self.verifier("/reset");
                samplectl_verifier(&result)
            }
            _ => reply(Some(2), "", "samplectl: bad command line"),
        }
    }

    /// Loading the service's image. sc.exe on failure prints
    /// `[SC] StartService FAILED <code>:` and the system message, and exits
    /// with the code; 577 is `ERROR_INVALID_IMAGE_HASH` ("Windows cannot verify
    /// the digital signature for this file", System Error Codes 500-999).
    fn start(&mut self) -> Result<(), u32> {
        let Some((_, image, bytes)) = self.service.clone() else {
            return Err(1060);
        };
        if !self.may_load(&bytes) {
            return Err(577);
        }
        self.loaded = true;
        if let Some(counters) = self.verified(&image) {
            // DriverEntry's copy of the registry path: one PagedPool block.
            counters.loads += 1;
            counters.paged += 1;
        }
        Ok(())
    }

    /// Unloading: Pool Tracking "will issue bug check 0xC4 (with Parameter 1
    /// equal to 0x62) if a driver unloads without freeing all its
    /// allocations" (Pool Tracking); only for a verified image.
    fn stop(&mut self) -> Remote {
        if !self.loaded {
            return reply(Some(1062), "", "[SC] ControlService FAILED 1062:");
        }
        let Some((_, image, _)) = self.service.clone() else {
            return reply(Some(1060), "", "[SC] OpenService FAILED 1060:");
        };
        self.loaded = false;
        let leaky = self.leaky;
        let bugchecks = self.bugchecks;
        let mut bugcheck = false;
        if let Some(counters) = self.verified(&image) {
            counters.unloads += 1;
            if leaky {
                bugcheck = bugchecks;
            } else {
                counters.paged -= 1;
            }
        }
        if bugcheck {
            // The connection drops, a dump is written, the guest reboots.
            self.dump += 1;
            self.reboot();
            self.down = 3;
            return Remote {
                code: None,
                stdout: String::new(),
                stderr: "Connection reset by peer".into(),
            };
        }
        reply(
            Some(0),
            "service 'Sample' stopped (the driver unloaded)",
            "",
        )
    }

    /// sc.exe: `sc create ... binPath= "<path>"` makes the binPath itself the
    /// image, so the loaded image name is that file's name.
    fn sc(&mut self, args: &str) -> Remote {
        if let Some(rest) = args.strip_prefix("create Sample type= kernel start= demand binPath= ")
        {
            let path = rest.trim_matches('"');
            let Some(bytes) = self.file(path) else {
                return reply(Some(2), "", "[SC] CreateService FAILED 2:");
            };
            let image = path.rsplit('\\').next().unwrap_or(path).to_owned();
            self.service = Some(("Sample".into(), image, bytes));
            return reply(Some(0), "[SC] CreateService SUCCESS", "");
        }
        match args {
            "start Sample" => match self.start() {
                Ok(()) => reply(
                    Some(0),
                    "SERVICE_NAME: Sample\r\n        STATE              : 4  RUNNING",
                    "",
                ),
                Err(577) => reply(
                    Some(577),
                    "[SC] StartService FAILED 577:\r\n\r\nWindows cannot verify the digital signature for this file. A recent hardware or software change might have installed a file that is signed incorrectly or damaged, or that might be malicious software from an unknown source.\r\n",
                    "",
                ),
                Err(code) => reply(
                    Some(i32::try_from(code).unwrap_or(1)),
                    &format!("[SC] StartService FAILED {code}:"),
                    "",
                ),
            },
            "stop Sample" => self.stop(),
            "stop Sample & sc delete Sample" => {
                let _ = self.stop();
                self.service = None;
                reply(Some(0), "[SC] DeleteService SUCCESS", "")
            }
            _ => reply(Some(1), "", "bad sc arguments"),
        }
    }
}

/// samplectl maps verifier.exe's 0 and 2 to success, 1 to failure.
fn samplectl_verifier(result: &Remote) -> Remote {
    if matches!(result.code, Some(0 | 2)) {
        reply(
            Some(0),
            "Driver Verifier: done; reboot the machine for this to take effect",
            "",
        )
    } else {
        reply(
            Some(1),
            "",
            "samplectl: verifier.exe failed (exit 1): Access is denied.",
        )
    }
}

fn reply(code: Option<i32>, stdout: &str, stderr: &str) -> Remote {
    Remote {
        code,
        stdout: stdout.to_owned(),
        stderr: stderr.to_owned(),
    }
}

/// Whether a PE image carries an embedded Authenticode signature: a
/// certificate table (data directory 4, `IMAGE_DIRECTORY_ENTRY_SECURITY`)
/// holding a `WIN_CERTIFICATE` of type `WIN_CERT_TYPE_PKCS_SIGNED_DATA` (2)
/// (PE Format, "The Attribute Certificate Table"). Read here byte by byte,
/// independently of the harness's own reader.
fn embedded_signature(image: &[u8]) -> bool {
    let u16_at = |at: usize| {
        image
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        image
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let Some(pe) = u32_at(0x3c).and_then(|at| usize::try_from(at).ok()) else {
        return false;
    };
    let optional = pe + 24;
    let directories = match u16_at(optional) {
        Some(0x10b) => optional + 96,
        Some(0x20b) => optional + 112,
        _ => return false,
    };
    let (Some(offset), Some(size)) = (u32_at(directories + 4 * 8), u32_at(directories + 4 * 8 + 4))
    else {
        return false;
    };
    let offset = usize::try_from(offset).unwrap_or(usize::MAX);
    size >= 8 && u32_at(offset) == Some(size) && u16_at(offset + 6) == Some(2)
}

impl Transport for FakeGuest {
    fn run(&mut self, command: &str, _timeout: Duration) -> Result<Remote, TransportError> {
        self.log.push(command.to_owned());
        if self.down > 0 {
            self.down = self.down.saturating_sub(1);
            return Ok(reply(None, "", "ssh: connect to host: Connection refused"));
        }
        let samplectl = "\"C:\\sample-test\\samplectl.exe\" ";
        let answer = if command == "ver" {
            reply(
                Some(0),
                &format!("\r\nMicrosoft Windows [Version {}]\r\n", self.version),
                "",
            )
        } else if command.contains("PROCESSOR_ARCHITECTURE") {
            reply(Some(0), self.arch, "")
        } else if command.contains("CrashDumpEnabled") {
            reply(
                Some(0),
                &format!(
                    "\r\nHKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\CrashControl\r\n    CrashDumpEnabled    REG_DWORD    0x{}\r\n",
                    self.dump_setting
                ),
                "",
            )
        } else if command.starts_with("if exist") {
            reply(
                Some(0),
                if self.kd_present { "found" } else { "missing" },
                "",
            )
        } else if command.starts_with("if not exist") {
            reply(Some(0), "", "")
        } else if command.contains("LastBootUpTime") {
            reply(Some(0), &format!("20261124{:06}.500000+000", self.boot), "")
        } else if command.contains("kd.exe") {
            self.kd_ran = true;
            reply(Some(0), "", "")
        } else if command.contains("MEMORY.DMP") {
            let stamp = if self.dump > 0 {
                format!("6389{:08}", self.dump)
            } else {
                String::new()
            };
            reply(Some(0), &stamp, "")
        } else if command.starts_with("shutdown /r") {
            self.reboot();
            reply(Some(0), "", "")
        } else if let Some(args) = command.strip_prefix("verifier ") {
            self.verifier(args)
        } else if let Some(args) = command.strip_prefix(samplectl) {
            if self.files.contains_key("C:\\sample-test\\samplectl.exe") {
                self.samplectl(args)
            } else {
                reply(
                    Some(1),
                    "",
                    "'samplectl.exe' is not recognized as an internal or external command",
                )
            }
        } else if let Some(args) = command.strip_prefix("sc ") {
            self.sc(args)
        } else {
            reply(Some(1), "", &format!("unknown command {command}"))
        };
        Ok(answer)
    }

    fn upload(&mut self, local: &Path, remote: &str) -> Result<(), TransportError> {
        let bytes = std::fs::read(local).map_err(|source| TransportError::Io {
            what: "read",
            path: local.to_path_buf(),
            source,
        })?;
        self.files.insert(remote.to_owned(), bytes);
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

/// The portable builds (unsigned), built once for all tests.
fn built(arch: Arch) -> &'static Path {
    static X64: OnceLock<PathBuf> = OnceLock::new();
    static X86: OnceLock<PathBuf> = OnceLock::new();
    let cell = match arch {
        Arch::X64 => &X64,
        Arch::X86 => &X86,
    };
    cell.get_or_init(|| {
        harness_build::driver_build::build(arch, false)
            .expect("portable build")
            .sys
    })
}

/// The x64 build, test-signed once with a certificate of the test's own.
fn signed_x64() -> &'static Path {
    static SIGNED: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &SIGNED
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("dir");
            let certificate = harness_build::signing::certificate_in(&dir.path().join("cert"))
                .expect("certificate");
            let signed =
                harness_build::signing::signed_copy(built(Arch::X64), dir.path(), &certificate)
                    .expect("signed");
            (dir, signed)
        })
        .1
}

/// Which driver file a test hands to `vm`.
#[derive(Clone, Copy)]
enum Driver {
    SignedX64,
    UnsignedX64,
    UnsignedX86,
}

fn options_for(dir: &Path, driver: Driver, name: &str, revert_marker: Option<&Path>) -> VmOptions {
    let (source, arch) = match driver {
        Driver::SignedX64 => (signed_x64(), Arch::X64),
        Driver::UnsignedX64 => (built(Arch::X64), Arch::X64),
        Driver::UnsignedX86 => (built(Arch::X86), Arch::X86),
    };
    let sys = dir.join(name);
    std::fs::copy(source, &sys).expect("copy the driver");
    std::fs::copy(source.with_extension("pdb"), sys.with_extension("pdb")).expect("copy the PDB");
    let samplectl = dir.join("samplectl.exe");
    std::fs::write(&samplectl, b"MZ samplectl").expect("write");
    VmOptions {
        driver: sys,
        samplectl,
        arch,
        guest_dir: r"C:\sample-test".into(),
        kd: r"C:\Debuggers\kd.exe".into(),
        symbols: "srv*C:\\symbols*https://msdl.microsoft.com/download/symbols".into(),
        revert_command: revert_marker.map(|marker| format!("touch '{}'", marker.display())),
        boot_timeout: Duration::from_secs(5),
        kd_timeout: Duration::from_secs(5),
        kd_script: None,
        poll: Duration::ZERO,
        verifier_flags: harness_core::verifier::VerifierFlags::default(),
    }
}

fn options(dir: &Path, revert_marker: Option<&Path>) -> VmOptions {
    options_for(dir, Driver::SignedX64, "Sample.sys", revert_marker)
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

const fn restored(guest: &FakeGuest) -> bool {
    guest.service.is_none() && guest.settings.is_none() && guest.active.is_empty()
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
    for step in 1..=7 {
        assert!(
            progress
                .iter()
                .any(|line| line.starts_with(&format!("[{step}/7]"))),
            "{progress:#?}"
        );
    }
    // The sequence: enable, reboot, check, install, start, stop, kd, restore.
    let order = [
        "samplectl.exe\" verifier enable --flags 0x8 --driver Sample.sys",
        "shutdown /r",
        "verifier /query",
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
    assert_eq!(
        guest
            .log
            .iter()
            .filter(|command| command.contains("shutdown /r"))
            .count(),
        2,
        "reboots: enable and reset"
    );
    assert_eq!(guest.files.len(), 3, "driver, PDB and samplectl.exe");
    guest.ran("!verifier 3 Sample.sys");
    assert!(restored(&guest));
    assert!(marker.exists(), "the revert command ran");
}

#[test]
fn training_kd_script_runs_on_the_dump() {
    let dir = tempfile::tempdir().expect("dir");
    let mut options = options(dir.path(), None);
    options.kd_script = Some(PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/kd/postmortem.txt"
    )));
    let mut guest = FakeGuest::new(true);
    let verdict = run(&mut guest, &options).0.expect("verdict");
    assert_eq!(verdict.exit_code(), ExitCode::Violation);
    assert!(
        guest
            .files
            .keys()
            .any(|path| path.ends_with("harness-kd-script.txt"))
    );
    guest.ran("-c \"$$<C:\\sample-test\\harness-kd-script.txt; q\"");
}

#[test]
fn clean_driver_unloads_and_the_windows_10_counters_are_read() {
    let dir = tempfile::tempdir().expect("dir");
    let mut guest = FakeGuest::new(false);
    let (result, _) = run(&mut guest, &options(dir.path(), None));
    let verdict = result.expect("a verdict");
    assert_eq!(verdict.exit_code(), ExitCode::Clean);
    assert!(verdict.bugcheck.is_none() && verdict.leaks.is_empty());
    assert!(verdict.verifier);
    assert!(verdict.notes.is_empty(), "{:?}", verdict.notes);
    assert!(!guest.kd_ran);
    assert!(restored(&guest));
}

#[test]
fn outstanding_allocations_in_the_counters_are_never_clean() {
    // Windows 10 (MODULE: form) and Windows 7 (Name: form) alike.
    for mut guest in [FakeGuest::new(true), FakeGuest::windows_7(true)] {
        guest.bugchecks = false;
        let dir = tempfile::tempdir().expect("dir");
        let failure = run(&mut guest, &options(dir.path(), None))
            .0
            .expect_err("not a clean verdict");
        assert!(
            matches!(&failure, VmError::Restored { cause, .. }
                if matches!(**cause, VmError::Outstanding { count: 1, .. })),
            "{failure}"
        );
        assert!(restored(&guest));
    }
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
fn unsigned_x64_driver_is_refused_with_577_even_in_test_mode() {
    // --no-sign on x64: Windows 10 through samplectl, Windows 7 through sc.exe.
    for (mut guest, expected) in [
        (
            FakeGuest::new(true),
            "start failed: samplectl: Windows refused to load 'Sample' because it is not signed (error 577)",
        ),
        (
            FakeGuest::windows_7(true),
            "start failed: [SC] StartService FAILED 577:",
        ),
    ] {
        let dir = tempfile::tempdir().expect("dir");
        let options = options_for(dir.path(), Driver::UnsignedX64, "Sample.sys", None);
        assert!(guest.testsigning);
        let failure = run(&mut guest, &options).0.expect_err("start fails");
        let text = failure.to_string();
        assert!(text.starts_with(expected), "{text}");
        assert!(text.ends_with("(the guest was restored)"), "{text}");
        assert!(restored(&guest));
    }
}

#[test]
fn a_test_signature_needs_test_mode() {
    let dir = tempfile::tempdir().expect("dir");
    let mut guest = FakeGuest::new(false);
    guest.testsigning = false;
    let failure = run(&mut guest, &options(dir.path(), None))
        .0
        .expect_err("refused");
    assert!(failure.to_string().contains("error 577"), "{failure}");
}

#[test]
fn x86_guests_enforce_signatures_only_with_secure_boot_on_windows_8_and_later() {
    // Windows 7 x86: no signature required.
    let dir = tempfile::tempdir().expect("dir");
    let options = options_for(dir.path(), Driver::UnsignedX86, "Sample.sys", None);
    let mut windows_7 = FakeGuest::windows_7(true);
    windows_7.arch = "x86";
    let verdict = run(&mut windows_7, &options).0.expect("loads unsigned");
    assert_eq!(verdict.exit_code(), ExitCode::Violation);

    // Windows 10 x86, Secure Boot off: none required either.
    let mut off = FakeGuest::new(false);
    off.arch = "x86";
    let verdict = run(&mut off, &options).0.expect("loads unsigned");
    assert_eq!(verdict.exit_code(), ExitCode::Clean);

    // Windows 10 x86, Secure Boot on: refused.
    let mut on = FakeGuest::new(false);
    on.arch = "x86";
    on.secure_boot = true;
    let failure = run(&mut on, &options).0.expect_err("refused");
    assert!(failure.to_string().contains("error 577"), "{failure}");
}

#[test]
fn the_verifier_is_pointed_at_the_image_the_kernel_loads() {
    // A driver file not named Sample.sys. samplectl installs it as
    // System32\drivers\Sample.sys: that is the image to verify.
    let dir = tempfile::tempdir().expect("dir");
    let options = options_for(dir.path(), Driver::SignedX64, "leaky-build.sys", None);
    let mut windows_10 = FakeGuest::new(true);
    let verdict = run(&mut windows_10, &options).0.expect("verdict");
    assert_eq!(
        verdict.exit_code(),
        ExitCode::Violation,
        "the leak is caught"
    );
    windows_10.ran("verifier enable --flags 0x8 --driver Sample.sys");
    windows_10.ran("!verifier 3 Sample.sys");
    windows_10.ran("install \"C:\\sample-test\\leaky-build.sys\" --name Sample");
    assert!(windows_10.never_ran("--driver leaky-build.sys"));

    // sc.exe's binPath is the uploaded file: its name is the image's.
    let mut windows_7 = FakeGuest::windows_7(true);
    let verdict = run(&mut windows_7, &options).0.expect("verdict");
    assert_eq!(verdict.exit_code(), ExitCode::Violation);
    windows_7.ran("verifier /flags 0x8 /driver leaky-build.sys");
    windows_7.ran("!verifier 3 leaky-build.sys");

    // The clean build under another name: judged from the loaded image's counters.
    let mut clean = FakeGuest::new(false);
    let verdict = run(&mut clean, &options).0.expect("verdict");
    assert_eq!(verdict.exit_code(), ExitCode::Clean);
    assert_eq!(verdict.driver, "leaky-build.sys");
}

#[test]
fn the_verifier_must_be_active_not_just_set() {
    // /querysettings lists the driver, but after the reboot /query shows
    // "No drivers are currently verified.": refused, not judged.
    let mut model = FakeGuest::new(true);
    model.verifier_boot = VerifierBoot::NeverActive;
    let _ = model.verifier("/flags 0x8 /driver Sample.sys");
    model.reboot();
    assert!(model.query_settings().contains("Sample.sys"));
    assert!(model.query().contains("No drivers are currently verified."));

    for mut guest in [FakeGuest::new(true), FakeGuest::windows_7(true)] {
        guest.verifier_boot = VerifierBoot::NeverActive;
        let dir = tempfile::tempdir().expect("dir");
        let failure = run(&mut guest, &options(dir.path(), None))
            .0
            .expect_err("not verified");
        assert!(
            failure
                .to_string()
                .starts_with("Driver Verifier is not active for Sample.sys after the reboot"),
            "{failure}"
        );
        assert!(guest.never_ran("install"), "nothing loaded unverified");
        assert!(guest.never_ran("querysettings"));
        assert!(restored(&guest));
    }
}

/// `--verifier-flags` reaches the guest's verifier.exe as given.
#[test]
fn the_verifier_flags_reach_verifier_exe() {
    let dir = tempfile::tempdir().expect("dir");
    let mut guest = FakeGuest::windows_7(true);
    let mut options = options(dir.path(), None);
    options.verifier_flags = harness_core::verifier::VerifierFlags(0xa);
    let (_, progress) = run(&mut guest, &options);
    guest.ran("verifier /flags 0xa /driver Sample.sys");
    assert!(
        progress
            .iter()
            .any(|line| line.contains("flags 0xa (Force IRQL checking, Pool tracking)")),
        "{progress:?}"
    );
}

#[test]
fn windows_7_guest_is_driven_with_sc_and_verifier_exe() {
    let dir = tempfile::tempdir().expect("dir");
    let marker = dir.path().join("reverted");
    let mut guest = FakeGuest::windows_7(true);
    let (result, progress) = run(&mut guest, &options(dir.path(), Some(&marker)));
    // verifier.exe returns 2 for /flags and /reset: success, and the guest
    // is fully restored (no "not fully restored").
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
            .files
            .keys()
            .any(|path| path.ends_with("samplectl.exe"))
    );
    assert!(guest.never_ran("samplectl"));
    assert!(restored(&guest));
    assert!(marker.exists());

    // And the clean build: Windows 7's Name: form of the counters.
    let mut clean = FakeGuest::windows_7(false);
    let verdict = run(&mut clean, &options(dir.path(), None))
        .0
        .expect("verdict");
    assert_eq!(verdict.exit_code(), ExitCode::Clean);
}

#[test]
fn a_verifier_error_stops_the_run_and_is_reported() {
    // Exit 1 is EXIT_CODE_ERROR: a failure, on both paths.
    for mut guest in [FakeGuest::new(false), FakeGuest::windows_7(false)] {
        guest.verifier_fails = true;
        let dir = tempfile::tempdir().expect("dir");
        let failure = run(&mut guest, &options(dir.path(), None))
            .0
            .expect_err("enable fails");
        let text = failure.to_string();
        assert!(
            text.starts_with("could not enable Driver Verifier"),
            "{text}"
        );
        // The reset failed too, so the settings are reported as left.
        assert!(text.contains("verifier /reset"), "{text}");
        assert!(guest.never_ran("shutdown"));
    }
}

#[test]
fn missing_evidence_is_refused_before_changing_anything() {
    let dir = tempfile::tempdir().expect("dir");
    let marker = dir.path().join("reverted");
    let options = options(dir.path(), Some(&marker));
    let mut minidump = FakeGuest::new(true);
    minidump.dump_setting = "3";
    let failure = run(&mut minidump, &options).0.expect_err("minidump");
    assert!(
        failure.to_string().contains("kernel memory dump"),
        "{failure}"
    );
    assert!(
        failure
            .to_string()
            .ends_with("(nothing on the guest was changed)"),
        "{failure}"
    );
    assert!(!marker.exists(), "no revert when nothing was changed");

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
        assert!(guest.files.is_empty());
        assert!(
            !guest
                .log
                .iter()
                .any(|command| command.contains("verifier") || command.contains("shutdown")),
            "{:#?}",
            guest.log
        );
    }
    assert!(!marker.exists(), "no revert when nothing was changed");
}

#[test]
fn verifier_query_fixtures_in_both_formats() {
    // Windows 10/11, real output (fixtures/vm/README.md).
    let win10 = harness_kd_text::parse_query(include_str!("fixtures/vm/query-win10-module.txt"));
    let module = win10.module("safeupload.sys").expect("module");
    assert_eq!((module.loads, module.unloads), (1, 0));
    assert_eq!((module.current_nonpaged, module.current_paged), (0, 0));
    assert!(!win10.none_verified);

    // The older Name: form.
    let old = harness_kd_text::parse_query(include_str!("fixtures/vm/query-old-format.txt"));
    let module = old.module("Sample.sys").expect("module");
    assert_eq!((module.loads, module.unloads), (1, 1));
    assert_eq!((module.current_paged, module.current_nonpaged), (1, 0));
    assert_eq!(module.paged_bytes, 0x70);
    assert!(old.module("ntfs.sys").is_some());

    // Nothing verified.
    let none = harness_kd_text::parse_query(include_str!("fixtures/vm/query-none.txt"));
    assert!(none.none_verified && none.modules.is_empty());

    // A name is matched whole: Sample.sys.bak is not Sample.sys.
    let other = harness_kd_text::parse_query("MODULE: Sample.sys.bak (load: 1 / unload: 1)");
    assert!(other.module("Sample.sys").is_none());
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

/// A host that ssh would take as an option never reaches ssh.
#[test]
fn a_host_starting_with_a_dash_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let marker = dir.path().join("ran");
    let mut ssh = vm::Ssh {
        target: format!("-oProxyCommand=touch {}", marker.display()),
        options: Vec::new(),
    };
    let failure = ssh.run("ver", Duration::from_secs(5)).expect_err("refused");
    assert!(matches!(failure, TransportError::BadHost(_)), "{failure}");
    let failure = ssh
        .upload(&dir.path().join("x"), "C:\\x")
        .expect_err("refused");
    assert!(matches!(failure, TransportError::BadHost(_)), "{failure}");
    assert!(!marker.exists(), "no local command ran");
}

/// The real binary: progress on stdout, one error line alone on stderr.
#[test]
fn harness_vm_output_streams() {
    let dir = tempfile::tempdir().expect("dir");
    let samplectl = dir.path().join("samplectl.exe");
    std::fs::write(&samplectl, b"MZ").expect("write");
    let harness = env!("CARGO_BIN_EXE_harness");

    let output = std::process::Command::new(harness)
        .args([
            "vm",
            "--host",
            "nobody@127.0.0.1",
            "--ssh-option",
            "Port=1",
            "--driver",
        ])
        .arg(built(Arch::X64))
        .arg("--samplectl")
        .arg(&samplectl)
        .env("XDG_CACHE_HOME", dir.path())
        .output()
        .expect("run harness");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stdout}{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("harness: cannot reach the guest over SSH"),
        "{stderr}"
    );
    assert!(
        stderr
            .trim_end()
            .ends_with("(nothing on the guest was changed)"),
        "{stderr}"
    );
    assert!(stdout.contains("harness: [1/7]"), "{stdout}");
    assert!(stdout.contains("test-signed a copy"), "{stdout}");
    assert!(!stderr.contains("[1/7]"));

    let marker = dir.path().join("ran");
    let output = std::process::Command::new(harness)
        .arg("vm")
        .arg(format!("--host=-oProxyCommand=touch {}", marker.display()))
        .arg("--driver")
        .arg(built(Arch::X64))
        .arg("--samplectl")
        .arg(&samplectl)
        .env("XDG_CACHE_HOME", dir.path())
        .output()
        .expect("run harness");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("starts with '-'"), "{stderr}");
    assert!(output.stdout.is_empty());
    assert!(!marker.exists(), "no local command ran");
}
