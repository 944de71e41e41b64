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

/// The form `verifier /query` prints its counters in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum QueryForm {
    /// The forms in fixtures/vm (`MODULE:` on Windows 10+, `Name:` before).
    Known,
    /// Any other text: stands for a real Windows 7 form that differs from
    /// our reconstruction (no capture exists, fixtures/vm/README.md).
    Unknown,
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
    /// `CrashControl\\AutoReboot` (None: the value is absent).
    auto_reboot: Option<u32>,
    /// `CrashControl\\DumpFile` (None: absent, Windows' default applies).
    dump_file: Option<&'static str>,
    system_root: &'static str,
    /// The boot entry's `debug` element (bcdedit /debug on).
    kernel_debugging: bool,
    query_form: QueryForm,
    /// After the crash reboot: stamp reads before the dump file exists, then
    /// reads during which it still grows (the dump is copied out of the
    /// page file during boot).
    dump_appears_after: u32,
    dump_grows_for: u32,
    dump_wait: u32,
    dump_growth: u32,
    /// sshd is the 32-bit build on 64-bit Windows.
    wow64_sshd: bool,
    /// Installed updates (Get-HotFix), e.g. KB3033929.
    hotfixes: Vec<&'static str>,
    /// What `sc delete` exits with (0: deleted).
    sc_delete_code: i32,
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
            auto_reboot: Some(1),
            dump_file: Some("%SystemRoot%\\MEMORY.DMP"),
            system_root: "C:\\Windows",
            kernel_debugging: false,
            query_form: QueryForm::Known,
            dump_appears_after: 0,
            dump_grows_for: 0,
            dump_wait: 0,
            dump_growth: 0,
            sc_delete_code: 0,
            hotfixes: Vec::new(),
            wow64_sshd: false,
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

    /// Windows 7 SP1 with the SHA-2 code signing update, as the README's
    /// guest preparation asks.
    fn windows_7(leaky: bool) -> Self {
        Self {
            version: "6.1.7601",
            hotfixes: vec!["KB3033929"],
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
    ///
    /// Windows 7 x64 reads a SHA-256 signature only with KB3033929 ("adds
    /// support for SHA-2 signing and verification", Microsoft Security
    /// Advisory 3033929) or KB4474419 (SHA-2 code signing support update).
    fn may_load(&self, image: &[u8]) -> bool {
        if !self.enforces_signatures() {
            return true;
        }
        let readable = self.version() != (6, 1)
            || has_sha1_digest(image)
            || self
                .hotfixes
                .iter()
                .any(|id| matches!(*id, "KB3033929" | "KB4474419"));
        embedded_signature(image) && readable && self.testsigning
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
            if self.query_form == QueryForm::Unknown {
                let _ = write!(
                    text,
                    "{name:<16}{:>6}{:>8}{:>10}\r\n",
                    counters.loads, counters.unloads, counters.paged
                );
            } else if self.version().0 >= 10 {
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

    /// cmd leaves an undefined variable as written; under WOW64 the first
    /// is x86 and the second AMD64 (WOW64 Implementation Details).
    fn architecture(&self) -> Remote {
        let answer = if self.wow64_sshd {
            "x86 AMD64\r\n".to_owned()
        } else {
            format!("{} %PROCESSOR_ARCHITEW6432%\r\n", self.arch)
        };
        reply(Some(0), &answer, "")
    }

    /// `DumpFile`, expanded as Windows does (`%SystemRoot%`).
    fn dump_path(&self) -> String {
        self.dump_file
            .unwrap_or("%SystemRoot%\\MEMORY.DMP")
            .replace("%SystemRoot%", self.system_root)
    }

    /// The dump's `ticks length`, as it is now: missing, growing, complete.
    fn dump_stamp(&mut self) -> String {
        if self.dump == 0 {
            return String::new();
        }
        if self.dump_wait > 0 {
            self.dump_wait -= 1;
            return if self.dump > 1 {
                format!("6389{:08} 536870912", self.dump - 1)
            } else {
                String::new()
            };
        }
        if self.dump_growth > 0 {
            self.dump_growth -= 1;
            return format!(
                "6389{:08} {}",
                self.dump,
                1_048_576 * (8 - self.dump_growth.min(7))
            );
        }
        format!("6389{:08} 536870912", self.dump)
    }

    /// reg.exe's answer to `reg query KEY /v NAME`: the value's line, or
    /// "ERROR: The system was unable to find the specified registry key or
    /// value." with exit 1.
    fn reg_reply(name: &str, value: Option<(&str, String)>) -> Remote {
        value.map_or_else(
            || {
                reply(
                    Some(1),
                    "",
                    "ERROR: The system was unable to find the specified registry key or value.",
                )
            },
            |(kind, value)| {
                reply(
                    Some(0),
                    &format!(
                        "\r\nHKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\CrashControl\r\n    {name}    {kind}    {value}\r\n\r\n"
                    ),
                    "",
                )
            },
        )
    }

    /// `bcdedit /enum {current}`: the Windows Boot Loader entry, with the
    /// elements `BCDEdit /set` writes (`testsigning`, `debug`) as Yes/No.
    fn boot_entry(&self) -> String {
        let yes = |on: bool| if on { "Yes" } else { "No" };
        format!(
            "\r\nWindows Boot Loader\r\n-------------------\r\nidentifier              {{current}}\r\ndevice                  partition=C:\r\npath                    \\Windows\\system32\\winload.exe\r\ndescription             Windows\r\ntestsigning             {}\r\nsystemroot              \\Windows\r\ndebug                   {}\r\n",
            yes(self.testsigning),
            yes(self.kernel_debugging)
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
            // samplectl's status prints sc query's lines (installer/src/main.rs).
            ["status", "--name", _] => match (&self.service, self.loaded) {
                (None, _) => reply(
                    Some(1),
                    "",
                    "samplectl: service 'Sample' does not exist (error 1060)",
                ),
                (Some(_), loaded) => reply(
                    Some(0),
                    &format!(
                        "SERVICE_NAME: Sample\n        TYPE               : 1  KERNEL_DRIVER\n        STATE              : {}",
                        if loaded { "4  RUNNING" } else { "1  STOPPED" }
                    ),
                    "",
                ),
            },
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
            self.dump_wait = self.dump_appears_after;
            self.dump_growth = self.dump_grows_for;
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
            // sc.exe exits with the Win32 error; DeleteService fails with 5
            // (ERROR_ACCESS_DENIED) without the right (DeleteService).
            "delete Sample" => match (self.sc_delete_code, &self.service) {
                (0, Some(_)) => {
                    self.service = None;
                    reply(Some(0), "[SC] DeleteService SUCCESS", "")
                }
                (0, None) => reply(
                    Some(1060),
                    "[SC] OpenService FAILED 1060:\r\n\r\nThe specified service does not exist as an installed service.\r\n",
                    "",
                ),
                (code, _) => reply(
                    Some(code),
                    &format!("[SC] DeleteService FAILED {code}:\r\n\r\nAccess is denied.\r\n"),
                    "",
                ),
            },
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

/// Whether the image names the SHA-1 digest algorithm (OID 1.3.14.3.2.26,
/// DER 06 05 2B 0E 03 02 1A) anywhere: a SHA-1 or dual signature does.
fn has_sha1_digest(image: &[u8]) -> bool {
    image
        .windows(7)
        .any(|window| window == [0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a])
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
        } else if command == "echo %PROCESSOR_ARCHITECTURE% %PROCESSOR_ARCHITEW6432%" {
            self.architecture()
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
        } else if command.contains("/v AutoReboot") {
            Self::reg_reply(
                "AutoReboot",
                self.auto_reboot
                    .map(|value| ("REG_DWORD", format!("0x{value:x}"))),
            )
        } else if command.contains("/v DumpFile") {
            Self::reg_reply(
                "DumpFile",
                self.dump_file
                    .map(|path| ("REG_EXPAND_SZ", path.to_owned())),
            )
        } else if command == "echo %SystemRoot%" {
            reply(Some(0), &format!("{}\r\n", self.system_root), "")
        } else if command.contains("Get-HotFix") {
            // Get-HotFix -Id A,B lists the installed ones among A and B.
            let found: Vec<&str> = self
                .hotfixes
                .iter()
                .copied()
                .filter(|id| command.contains(id))
                .collect();
            reply(Some(0), &found.join("\r\n"), "")
        } else if command == "bcdedit /enum {current}" {
            reply(Some(0), &self.boot_entry(), "")
        } else if command.contains("kd.exe") {
            // kd opens the dump named by -z; a dump still being written is
            // not one it can read.
            let wanted = format!("-z \"{}\"", self.dump_path());
            self.kd_ran = command.contains(&wanted)
                && self.dump > 0
                && self.dump_wait == 0
                && self.dump_growth == 0;
            reply(Some(0), "", "")
        } else if command.contains("Test-Path") {
            let ours = command.contains(&format!("'{}'", self.dump_path()));
            reply(
                Some(0),
                &if ours {
                    self.dump_stamp()
                } else {
                    String::new()
                },
                "",
            )
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
        "-z \"C:\\Windows\\MEMORY.DMP\"",
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
    guest.ran(
        "-c \"aS SampleImage Sample.sys; aS SampleModule Sample; $$<C:\\sample-test\\harness-kd-script.txt; q\"",
    );

    // On Windows 7 the image is the uploaded file's name: the script gets
    // that name through its aliases, and names the driver only through them.
    let dir = tempfile::tempdir().expect("dir");
    let mut options = options_for(dir.path(), Driver::SignedX64, "leaky-build.sys", None);
    options.kd_script = Some(PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/kd/postmortem.txt"
    )));
    let mut windows_7 = FakeGuest::windows_7(true);
    let verdict = run(&mut windows_7, &options).0.expect("verdict");
    assert_eq!(verdict.exit_code(), ExitCode::Violation);
    windows_7.ran("-c \"aS SampleImage leaky-build.sys; aS SampleModule leaky-build; $$<");
    let script =
        std::fs::read_to_string(options.kd_script.as_ref().expect("script")).expect("read");
    let commands: Vec<&str> = script
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('*') && !line.starts_with(".echo"))
        .collect();
    assert!(
        commands.contains(&"!verifier 3 ${SampleImage}"),
        "{commands:?}"
    );
    assert!(commands.contains(&"lm m ${SampleModule}"), "{commands:?}");
    assert!(
        !commands
            .iter()
            .any(|command| command.contains("Sample.sys") || command.ends_with(" Sample")),
        "{commands:?}"
    );
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
fn a_driver_name_that_cannot_go_into_a_command_line_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let mut guest = FakeGuest::windows_7(true);
    let options = options_for(dir.path(), Driver::SignedX64, "a;b.sys", None);
    let failure = run(&mut guest, &options).0.expect_err("refused");
    assert!(matches!(failure, VmError::BadDriverName(_)), "{failure}");
    assert!(guest.log.is_empty());
}

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

/// One of the checks that run before anything is changed refused the guest.
fn refused_untouched(guest: &FakeGuest, failure: &VmError) {
    assert!(
        failure
            .to_string()
            .ends_with("(nothing on the guest was changed)"),
        "{failure}"
    );
    assert!(guest.files.is_empty());
    assert!(guest.never_ran("verifier /flags") && guest.never_ran("verifier enable"));
    assert!(guest.never_ran("shutdown"));
}

#[test]
fn a_windows_7_query_form_the_harness_does_not_read_falls_back_to_querysettings() {
    // "The following methods will display the settings that will take
    // effect after the next boot" (Viewing Driver Verifier Settings,
    // verifier /querysettings): read after that boot, they prove the
    // verifier is set. The bug check and the dump then give the verdict.
    let dir = tempfile::tempdir().expect("dir");
    let mut guest = FakeGuest::windows_7(true);
    guest.query_form = QueryForm::Unknown;
    let (result, progress) = run(&mut guest, &options(dir.path(), None));
    let verdict = result.expect("verdict");
    assert_eq!(verdict.exit_code(), ExitCode::Violation);
    guest.ran("verifier /querysettings");
    // The raw /query text is shown, so the real form can be added.
    assert!(
        progress
            .iter()
            .any(|line| line.contains("verifier /query printed:") && line.contains("Sample.sys")),
        "{progress:#?}"
    );
    assert!(restored(&guest));

    // Without a bug check the counters are needed, and cannot be read:
    // cannot judge, with the text that was not understood.
    let mut clean = FakeGuest::windows_7(false);
    clean.query_form = QueryForm::Unknown;
    let failure = run(&mut clean, &options(dir.path(), None))
        .0
        .expect_err("not judged");
    assert!(
        matches!(&failure, VmError::Restored { cause, .. }
            if matches!(&**cause, VmError::CountersUnread { raw, .. } if raw.contains("Sample.sys"))),
        "{failure}"
    );
    assert!(!failure.to_string().contains('\n'));
    assert!(restored(&clean));
}

#[test]
fn not_verified_shows_what_verifier_query_printed() {
    let dir = tempfile::tempdir().expect("dir");
    let mut guest = FakeGuest::windows_7(true);
    guest.verifier_boot = VerifierBoot::NeverActive;
    let failure = run(&mut guest, &options(dir.path(), None))
        .0
        .expect_err("not verified");
    assert!(
        failure
            .to_string()
            .contains("verifier /query printed: No drivers are currently verified."),
        "{failure}"
    );
    assert!(!failure.to_string().contains('\n'));
}

#[test]
fn the_dump_is_awaited_until_it_appears_and_stops_growing() {
    // After the crash reboot the dump may appear (and grow) only after SSH
    // answers; kd cannot read a dump still being written.
    let dir = tempfile::tempdir().expect("dir");
    let mut guest = FakeGuest::new(true);
    guest.dump_appears_after = 2;
    guest.dump_grows_for = 3;
    let verdict = run(&mut guest, &options(dir.path(), None))
        .0
        .expect("verdict");
    assert_eq!(verdict.exit_code(), ExitCode::Violation);
    assert!(guest.kd_ran);

    // A dump that never comes: a bounded wait, then one line naming the path.
    let mut never = FakeGuest::new(true);
    never.dump_appears_after = u32::MAX;
    let failure = run(&mut never, &options(dir.path(), None))
        .0
        .expect_err("no dump");
    assert!(
        failure
            .to_string()
            .starts_with("the guest rebooted but no new, complete kernel dump appeared at C:\\Windows\\MEMORY.DMP within 5 s"),
        "{failure}"
    );
}

#[test]
fn the_dump_path_comes_from_dumpfile_and_systemroot() {
    // Win32_OSRecoveryConfiguration: DebugFilePath maps to CrashControl's
    // DumpFile ("%SystemRoot%\MEMORY.DMP" by default, a REG_EXPAND_SZ).
    let dir = tempfile::tempdir().expect("dir");
    let mut guest = FakeGuest::windows_7(true);
    guest.system_root = "D:\\WINNT";
    guest.dump_file = Some("%SystemRoot%\\Crash Dumps\\KERNEL.DMP");
    let verdict = run(&mut guest, &options(dir.path(), None))
        .0
        .expect("verdict");
    assert_eq!(verdict.exit_code(), ExitCode::Violation);
    guest.ran("-z \"D:\\WINNT\\Crash Dumps\\KERNEL.DMP\"");

    // No DumpFile value: Windows' default, under the guest's SystemRoot.
    let mut default = FakeGuest::new(true);
    default.dump_file = None;
    default.system_root = "E:\\Windows";
    let verdict = run(&mut default, &options(dir.path(), None))
        .0
        .expect("verdict");
    assert_eq!(verdict.exit_code(), ExitCode::Violation);
    default.ran("-z \"E:\\Windows\\MEMORY.DMP\"");
}

#[test]
fn a_guest_that_would_not_restart_after_the_bug_check_is_refused_first() {
    // AutoReboot 0: "System will automatically reboot during a recovery
    // operation" is off (Win32_OSRecoveryConfiguration.AutoReboot, mapped
    // to CrashControl\AutoReboot): the guest would stay at the blue screen.
    let dir = tempfile::tempdir().expect("dir");
    let mut guest = FakeGuest::new(true);
    guest.auto_reboot = Some(0);
    let failure = run(&mut guest, &options(dir.path(), None))
        .0
        .expect_err("refused");
    assert!(
        matches!(&failure, VmError::Restored { cause, .. } if matches!(**cause, VmError::NoAutoReboot)),
        "{failure}"
    );
    refused_untouched(&guest, &failure);

    // The value absent: Windows' default, which restarts.
    let mut absent = FakeGuest::new(true);
    absent.auto_reboot = None;
    let verdict = run(&mut absent, &options(dir.path(), None))
        .0
        .expect("verdict");
    assert_eq!(verdict.exit_code(), ExitCode::Violation);
}

#[test]
fn kernel_debugging_on_the_guest_is_refused_first() {
    // "Attaching an active kernel debugger to the target computer disables
    // the enforcement of kernel-mode digital signatures" (Appendix 1:
    // Enforcing Kernel-Mode Signature Verification in Kernel Debugging
    // Mode), and a bug check breaks into the debugger instead of restarting.
    for mut guest in [FakeGuest::new(true), FakeGuest::windows_7(true)] {
        guest.kernel_debugging = true;
        let dir = tempfile::tempdir().expect("dir");
        let failure = run(&mut guest, &options(dir.path(), None))
            .0
            .expect_err("refused");
        assert!(
            matches!(&failure, VmError::Restored { cause, .. } if matches!(**cause, VmError::KernelDebugger)),
            "{failure}"
        );
        assert!(
            failure.to_string().contains("bcdedit /debug off"),
            "{failure}"
        );
        refused_untouched(&guest, &failure);
    }
}

#[test]
fn a_windows_7_service_that_sc_delete_leaves_is_reported() {
    // sc.exe exits with DeleteService's Win32 error; 5 is access denied.
    let dir = tempfile::tempdir().expect("dir");
    let mut guest = FakeGuest::windows_7(false);
    guest.sc_delete_code = 5;
    let failure = run(&mut guest, &options(dir.path(), None))
        .0
        .expect_err("not restored");
    let text = failure.to_string();
    assert!(
        matches!(&failure, VmError::NotRestored { cause: None, left } if left.iter().any(|item| item.starts_with("the Sample service (sc delete Sample: [SC] DeleteService FAILED 5:"))),
        "{text}"
    );
    assert!(guest.service.is_some());
    guest.ran("sc stop Sample");
}

/// One line of a `harness vm --record` transcript (src/vm/record.rs).
#[derive(serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Entry {
    /// `harness vm --record`'s has the options; the workflow's has `mode`.
    Start {
        driver: Option<String>,
        arch: Option<String>,
        guest_dir: Option<String>,
        kd: Option<String>,
        symbols: Option<String>,
        kd_script: Option<String>,
        /// Absent in transcripts from before `--verifier-flags`: 0x8.
        #[serde(default)]
        verifier_flags: harness_core::verifier::VerifierFlags,
    },
    Run {
        command: String,
        code: Option<i32>,
        #[serde(default)]
        stdout: String,
        #[serde(default)]
        stderr: String,
        error: Option<String>,
        elapsed_ms: u64,
    },
    Upload {
        remote: String,
        error: Option<String>,
    },
    Download {
        remote: String,
        file: Option<String>,
        error: Option<String>,
    },
    End {
        verdict: Option<Box<Verdict>>,
        error: Option<String>,
    },
}

fn read_transcript(dir: &Path) -> Vec<Entry> {
    let text = std::fs::read_to_string(dir.join(vm::TRANSCRIPT)).expect("transcript");
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}")))
        .collect()
}

/// A guest that answers exactly as a recorded one did, in the recorded
/// order; a command the recording does not have next is a divergence.
struct Replay {
    dir: PathBuf,
    entries: std::vec::IntoIter<Entry>,
}

impl Replay {
    fn new(dir: &Path) -> Self {
        let mut entries = read_transcript(dir);
        entries.retain(|entry| !matches!(entry, Entry::Start { .. } | Entry::End { .. }));
        Self {
            dir: dir.to_path_buf(),
            entries: entries.into_iter(),
        }
    }
}

impl Transport for Replay {
    fn run(&mut self, command: &str, _timeout: Duration) -> Result<Remote, TransportError> {
        match self.entries.next() {
            Some(Entry::Run {
                command: recorded,
                code,
                stdout,
                stderr,
                error,
                ..
            }) => {
                assert_eq!(command, recorded, "the replay diverged");
                error.map_or(
                    Ok(Remote {
                        code,
                        stdout,
                        stderr,
                    }),
                    |error| Err(TransportError::NoRemoteFile(error)),
                )
            }
            _ => panic!("the replay diverged: {command} was not recorded next"),
        }
    }

    fn upload(&mut self, _local: &Path, remote: &str) -> Result<(), TransportError> {
        match self.entries.next() {
            Some(Entry::Upload {
                remote: recorded,
                error,
            }) => {
                assert_eq!(remote, recorded, "the replay diverged");
                error.map_or(Ok(()), |error| Err(TransportError::NoRemoteFile(error)))
            }
            _ => panic!("the replay diverged: upload to {remote} was not recorded next"),
        }
    }

    fn download(&mut self, remote: &str, local: &Path) -> Result<(), TransportError> {
        match self.entries.next() {
            Some(Entry::Download {
                remote: recorded,
                file,
                error,
            }) => {
                assert_eq!(remote, recorded, "the replay diverged");
                match (file, error) {
                    (Some(file), None) => {
                        std::fs::copy(self.dir.join(file), local).expect("recorded download");
                        Ok(())
                    }
                    (_, error) => Err(TransportError::NoRemoteFile(error.unwrap_or_default())),
                }
            }
            _ => panic!("the replay diverged: download of {remote} was not recorded next"),
        }
    }

    fn pause(&mut self, _pause: Duration) {}
}

/// The options a recorded `harness vm` run ran with, from its start line,
/// with the driver kept in the record folder; None for a transcript of
/// single commands (the workflow's evidence).
fn replay_options(dir: &Path, entries: &[Entry]) -> Option<VmOptions> {
    let Some(Entry::Start {
        driver: Some(driver),
        arch: Some(arch),
        guest_dir: Some(guest_dir),
        kd: Some(kd),
        symbols: Some(symbols),
        kd_script,
        verifier_flags,
    }) = entries.first()
    else {
        return None;
    };
    Some(VmOptions {
        driver: dir.join("files").join(driver),
        // Uploaded, never read: the replay does not look at local files.
        samplectl: dir.join("files").join("samplectl.exe"),
        arch: if arch == "x86" { Arch::X86 } else { Arch::X64 },
        guest_dir: guest_dir.clone(),
        kd: kd.clone(),
        symbols: symbols.clone(),
        revert_command: None,
        boot_timeout: Duration::from_mins(5),
        kd_timeout: Duration::from_mins(5),
        kd_script: kd_script.as_ref().map(|name| dir.join(name)),
        poll: Duration::ZERO,
        verifier_flags: *verifier_flags,
    })
}

/// Replays a recorded run; its outcome must be the recorded one.
fn replay_matches(dir: &Path) {
    let entries = read_transcript(dir);
    let options = replay_options(dir, &entries).expect("a recorded harness vm run");
    let mut replay = Replay::new(dir);
    let outcome = run(&mut replay, &options).0;
    match (entries.last(), outcome) {
        (
            Some(Entry::End {
                verdict: Some(recorded),
                ..
            }),
            Ok(verdict),
        ) => {
            assert_eq!(verdict, **recorded, "{}", dir.display());
        }
        (
            Some(Entry::End {
                error: Some(recorded),
                ..
            }),
            Err(error),
        ) => {
            assert_eq!(&error.to_string(), recorded, "{}", dir.display());
        }
        (_, outcome) => panic!("{}: replayed to {outcome:?}", dir.display()),
    }
    assert!(
        replay.entries.next().is_none(),
        "the whole transcript replayed"
    );
}

#[test]
fn a_recorded_run_replays_to_the_same_verdict() {
    // Windows 10 and Windows 7, leaky (bug check, kd) and clean (counters).
    for (mut guest, violation) in [
        (FakeGuest::new(true), true),
        (FakeGuest::windows_7(true), true),
        (FakeGuest::windows_7(false), false),
    ] {
        let dir = tempfile::tempdir().expect("dir");
        let record = dir.path().join("record");
        let options = options(dir.path(), None);
        let mut writer = vm::Recorder::new(&mut guest, &record, &options).expect("recorder");
        let outcome = run(&mut writer, &options).0;
        writer.finish(&outcome).expect("finish");
        let recorded = outcome.expect("verdict");
        assert_eq!(recorded.exit_code() == ExitCode::Violation, violation);

        // The transcript: every guest command, with its output and code.
        let entries = read_transcript(&record);
        assert!(matches!(entries.first(), Some(Entry::Start { .. })));
        assert!(
            matches!(entries.last(), Some(Entry::End { verdict: Some(verdict), error: None }) if **verdict == recorded)
        );
        let commands = entries
            .iter()
            .filter(|entry| matches!(entry, Entry::Run { .. }))
            .count();
        assert_eq!(commands, guest.log.len(), "every command recorded");
        assert!(entries.iter().any(|entry| matches!(entry,
            Entry::Run { command, code: Some(0), stdout, elapsed_ms, .. }
                if command == "ver" && stdout.contains("Microsoft Windows") && *elapsed_ms < 60_000)));
        if violation {
            assert!(
                entries
                    .iter()
                    .any(|entry| matches!(entry, Entry::Download { file: Some(_), .. })),
                "kd's output kept"
            );
        }

        // Replayed without the guest, from the record folder alone (options
        // from its start line, the driver kept there): the same verdict.
        std::fs::remove_file(&options.driver).expect("the original goes");
        replay_matches(&record);
    }
}

#[test]
fn a_failed_run_is_recorded_with_its_error_and_an_existing_transcript_is_kept() {
    let dir = tempfile::tempdir().expect("dir");
    let record = dir.path().join("record");
    let mut guest = FakeGuest::new(true);
    guest.kernel_debugging = true;
    let options = options(dir.path(), None);
    let mut recorder = vm::Recorder::new(&mut guest, &record, &options).expect("recorder");
    let result = run(&mut recorder, &options).0;
    recorder.finish(&result).expect("finish");
    let failure = result.expect_err("refused");
    assert!(matches!(
        read_transcript(&record).last(),
        Some(Entry::End { verdict: None, error: Some(error) }) if *error == failure.to_string()
    ));
    let mut again = FakeGuest::new(true);
    assert!(
        vm::Recorder::new(&mut again, &record, &options).is_err(),
        "not overwritten"
    );
    replay_matches(&record);
}

#[test]
fn windows_7_x64_without_sha2_support_is_refused_before_a_577() {
    let dir = tempfile::tempdir().expect("dir");
    let options = options(dir.path(), None);
    let signed = std::fs::read(&options.driver).expect("driver");
    // The harness signs with SHA-256 alone.
    assert!(embedded_signature(&signed) && !has_sha1_digest(&signed));

    let mut guest = FakeGuest::windows_7(true);
    guest.hotfixes.clear();
    assert!(
        !guest.may_load(&signed),
        "the model refuses it, as Windows 7 x64 does"
    );
    let failure = run(&mut guest, &options).0.expect_err("refused");
    assert!(
        matches!(&failure, VmError::Restored { cause, .. } if matches!(**cause, VmError::NoSha2Support)),
        "{failure}"
    );
    assert!(failure.to_string().contains("KB3033929"), "{failure}");
    refused_untouched(&guest, &failure);

    // KB4474419, the 2019 SHA-2 code signing update, serves as well.
    let mut newer = FakeGuest::windows_7(true);
    newer.hotfixes = vec!["KB4474419"];
    let verdict = run(&mut newer, &options).0.expect("verdict");
    assert_eq!(verdict.exit_code(), ExitCode::Violation);

    // x86 Windows 7 needs no signature at all: no check.
    let x86 = options_for(dir.path(), Driver::UnsignedX86, "Sample.sys", None);
    let mut guest = FakeGuest::windows_7(true);
    guest.arch = "x86";
    guest.hotfixes.clear();
    assert!(run(&mut guest, &x86).0.is_ok());
    assert!(guest.never_ran("Get-HotFix"));
}

const EVIDENCE_COMMANDS: &str = include_str!("fixtures/vm/evidence-commands.txt");

/// The workflow's evidence commands, placeholders filled in.
fn evidence_commands(samplectl: &str, driver: &str) -> Vec<String> {
    EVIDENCE_COMMANDS
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            line.replace("@samplectl@", samplectl)
                .replace("@driver@", driver)
        })
        .collect()
}

/// What a transcript shows that contradicts what the harness assumes of
/// Windows; empty if nothing does.
fn contradictions(entries: &[Entry]) -> Vec<String> {
    let mut found = Vec::new();
    let mut set = false;
    let mut testsigning = None;
    for entry in entries {
        let Entry::Run {
            command,
            code: Some(code),
            stdout,
            stderr,
            ..
        } = entry
        else {
            continue;
        };
        let mut wrong = |what: &str| {
            found.push(format!("{command}: {what} (exit {code}): {stdout}{stderr}"));
        };
        // verifier.exe: 0 success, 2 success pending a reboot
        // (Driver Verifier Command Syntax, Return Codes).
        if command.starts_with("verifier /flags") || command == "verifier /reset" {
            if !matches!(code, 0 | 2) {
                wrong("verifier.exe's exit is neither 0 nor 2");
            }
            set = command.starts_with("verifier /flags");
        } else if command == "verifier /querysettings" {
            let listed = stdout
                .split_whitespace()
                .any(|word| word.eq_ignore_ascii_case("Sample.sys"));
            if listed != set {
                wrong("/querysettings does not show the settings for the next boot");
            }
        } else if command == "verifier /query" {
            let query = harness_kd_text::parse_query(stdout);
            if !query.none_verified && query.modules.is_empty() {
                wrong("verifier /query in a form the harness does not read");
            }
        } else if command == "bcdedit /enum {current}" {
            testsigning = Some(stdout.lines().any(|line| {
                let mut words = line.split_whitespace();
                words.next() == Some("testsigning") && words.next() == Some("Yes")
            }));
        } else if command.ends_with("start --name Sample") && testsigning == Some(false) {
            // A test-signed driver with test signing off: 577
            // (ERROR_INVALID_IMAGE_HASH), which samplectl explains.
            if *code != 1 || !stderr.contains("error 577") {
                wrong("a test-signed driver started, or failed otherwise, with test signing off");
            }
        } else if command == "ver" && !stdout.contains("[Version ") {
            wrong("ver prints no version");
        }
    }
    found
}

#[test]
fn the_evidence_commands_on_the_scripted_guest_contradict_nothing() {
    // The GitHub runner: Windows Server, test signing off, nothing verified.
    let dir = tempfile::tempdir().expect("dir");
    let options = options(dir.path(), None);
    let mut guest = FakeGuest::new(false);
    guest.testsigning = false;
    guest
        .upload(&options.driver, "C:\\sample-test\\Sample.sys")
        .expect("upload");
    guest
        .upload(&options.samplectl, "C:\\sample-test\\samplectl.exe")
        .expect("upload");
    let record = dir.path().join("record");
    let mut recorder = vm::Recorder::new(&mut guest, &record, &options).expect("recorder");
    let commands = evidence_commands(
        "\"C:\\sample-test\\samplectl.exe\"",
        "C:\\sample-test\\Sample.sys",
    );
    for command in &commands {
        recorder.run(command, Duration::from_mins(2)).expect("run");
    }
    recorder
        .finish(&Err(VmError::NoDriverFile))
        .expect("finish");
    let entries = read_transcript(&record);
    assert_eq!(
        entries
            .iter()
            .filter(|entry| matches!(entry, Entry::Run { .. }))
            .count(),
        commands.len()
    );
    assert_eq!(contradictions(&entries), Vec::<String>::new());
    guest.ran("start --name Sample");
    assert!(restored(&guest));

    // The checks bite: a /query the harness cannot read, a 577 missing.
    let mut unread = FakeGuest::new(false);
    unread.testsigning = false;
    unread.query_form = QueryForm::Unknown;
    unread.active = vec![("Sample.sys".into(), Counters::default())];
    let mut broken = read_transcript(&record);
    for entry in &mut broken {
        if let Entry::Run {
            command, stdout, ..
        } = entry
            && command == "verifier /query"
        {
            *stdout = unread.query();
        }
        if let Entry::Run {
            command,
            code,
            stderr,
            ..
        } = entry
            && command.ends_with("start --name Sample")
        {
            *code = Some(0);
            stderr.clear();
        }
    }
    assert_eq!(
        contradictions(&broken).len(),
        2,
        "{:#?}",
        contradictions(&broken)
    );
}

#[test]
fn recorded_real_transcripts_hold_what_the_harness_assumes() {
    // Whatever real transcripts are committed (fixtures/vm/recorded/README.md;
    // none yet): each must contradict nothing the harness assumes.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vm/recorded");
    assert!(root.join("README.md").is_file(), "{}", root.display());
    for entry in std::fs::read_dir(&root).expect("recorded") {
        let dir = entry.expect("entry").path();
        if dir.join(vm::TRANSCRIPT).is_file() {
            let entries = read_transcript(&dir);
            assert!(
                matches!(entries.first(), Some(Entry::Start { .. })),
                "{}",
                dir.display()
            );
            let found = contradictions(&entries);
            assert!(found.is_empty(), "{}: {found:#?}", dir.display());
            // A whole `harness vm` run replays to its recorded outcome.
            if replay_options(&dir, &entries).is_some() {
                replay_matches(&dir);
            }
        }
    }
}

#[test]
fn a_32_bit_sshd_on_64_bit_windows_is_named_not_taken_for_x86() {
    let dir = tempfile::tempdir().expect("dir");
    let mut guest = FakeGuest::windows_7(true);
    guest.wow64_sshd = true;
    let failure = run(&mut guest, &options(dir.path(), None))
        .0
        .expect_err("refused");
    assert!(
        matches!(&failure, VmError::Restored { cause, .. } if matches!(**cause, VmError::Wow64Ssh)),
        "{failure}"
    );
    assert!(failure.to_string().contains("OpenSSH-Win64"), "{failure}");
    refused_untouched(&guest, &failure);
}

/// `--record` through the real binary: the transcript is written even when
/// the run fails, and ends with the error the user sees.
#[test]
fn harness_vm_record_writes_the_transcript() {
    let dir = tempfile::tempdir().expect("dir");
    let samplectl = dir.path().join("samplectl.exe");
    std::fs::write(&samplectl, b"MZ").expect("write");
    let record = dir.path().join("record");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_harness"))
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
        .arg("--record")
        .arg(&record)
        .env("XDG_CACHE_HOME", dir.path())
        .output()
        .expect("run harness");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stdout}{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stdout.contains("transcript: "), "{stdout}");
    let entries = read_transcript(&record);
    assert!(matches!(entries.first(), Some(Entry::Start { .. })));
    assert!(
        matches!(&entries[1], Entry::Run { command, code: None, error: None, .. } if command == "ver"),
        "the unreachable guest's answer is kept"
    );
    assert!(
        matches!(
            entries.last(),
            Some(Entry::End { verdict: None, error: Some(error) })
                if stderr.trim_end() == format!("harness: {error}")
        ),
        "{stderr}"
    );
}

#[test]
fn the_workflow_runs_the_evidence_command_list() {
    // One list for the workflow and the tests: the workflow must read this
    // file and fill in the same placeholders.
    let workflow = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../.github/workflows/windows-wdk.yaml"
    ))
    .expect("workflow");
    assert!(workflow.contains(r"test-harness\tests\fixtures\vm\evidence-commands.txt"));
    for placeholder in ["@samplectl@", "@driver@"] {
        assert!(workflow.contains(placeholder), "{placeholder}");
        assert!(EVIDENCE_COMMANDS.contains(placeholder), "{placeholder}");
    }
    assert!(workflow.contains("name: windows-evidence"));
    assert!(workflow.contains("dumpbin"));
}
