//! `harness`: builds Sample.sys, runs drivers under emulated Driver Verifier
//! pool tracking and reports the verdict the real verifier would give.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use harness::error::CommandError;
use harness::{demo, kd, lesson, vm};
use harness_build::driver_build::{self, Fault};
use harness_core::arch::Arch;
use harness_core::console::{emit, emit_line};
use harness_core::nt::parse_tag;
use harness_core::render;
use harness_core::verdict::{ExitCode, Verdict};
use harness_core::verifier::VerifierFlags;
use harness_engines::emulate;
use harness_engines::emulate::{EngineKind, Request};
use harness_engines::engine::RunOptions;

/// `harness kd --help`'s tail: the command table's summary, then the exit codes.
fn kd_help() -> String {
    format!(
        "{}\n{KD_EXIT_CODES}",
        harness_debugger::session::command_summary()
    )
}

const KD_EXIT_CODES: &str = "\
Exit codes (the verdict of the run so far):
  0  the driver was started and stopped with no violation
  3  the machine bug-checked (or the verifier found a violation)
  4  DriverEntry failed, or the driver cannot be unloaded
  5  the session ended with the driver still loaded (or never started)
  6  Windows would not load the image; one line on stderr
  2  cannot judge (the engine lacks what the driver needs), or bad input;
     one line on stderr";

const EXIT_CODES: &str = "\
Exit codes:
  0  loaded and unloaded with no violation
  3  verifier violation or bug check; the verdict is printed
  4  DriverEntry failed or did not return, or the driver could not be unloaded
  5  the driver is still loaded (debugger output with no unload): nothing judged
  6  Windows would not load the image; one line on stderr
  2  could not run or cannot judge (bad input, missing tool, an engine gap);
     one line on stderr";

#[derive(Parser)]
#[command(name = "harness", version, about, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the portable Sample.sys (installs the rustup target if needed);
    /// prints the path of the .sys as the last line (the PDB lies beside it).
    Build {
        /// Architecture to build for.
        #[arg(long, value_enum, default_value = "x64")]
        arch: Arch,
        /// Build with `leak-on-unload`: the unload routine skips the free
        /// (short for `--fault leak-on-unload`).
        #[arg(long, conflicts_with = "fault")]
        leak: bool,
        /// Build with one fault feature (see docs/lessons/): leak-on-unload,
        /// double-free, paged-at-dispatch or leak-on-error.
        #[arg(long, value_name = "NAME", value_parser = parse_fault)]
        fault: Option<Fault>,
        /// Also test-sign a copy (SHA-256 Authenticode, osslsigncode) with the
        /// harness's test certificate, into `<arch>-<variant>-signed/`; prints
        /// the certificate's path before the .sys path.
        #[arg(long)]
        sign: bool,
    },
    /// Run a driver's `DriverEntry` and unload routine under emulated pool
    /// tracking and print the verdict.
    #[command(after_help = EXIT_CODES)]
    Emulate {
        /// The driver (.sys); a PDB with the same stem beside it gives symbols.
        driver: PathBuf,
        /// The engine that runs the driver: native (the harness's own
        /// emulated kernel), speakeasy or wine.
        #[arg(long, value_enum, default_value = "native")]
        engine: EngineKind,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Emulate nt!PoolHitTag: break on each allocation and free with this
        /// tag, given as shown by !pool (abcd) or as a number (0x64636261).
        #[arg(long, value_name = "TAG", value_parser = parse_tag)]
        pool_hit_tag: Option<u32>,
        /// Make the Nth pool allocation fail (1 = the first).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        fail_allocation: Option<u32>,
        /// The allocation-failure sweep: a baseline run counts the driver's
        /// allocations, then one run per allocation with that one failing
        /// (at most 10000). Every run counts, the baseline too: exit 3 if any
        /// run violates; else 2 if any cannot be judged or --timeout (which
        /// bounds the whole sweep) left it unmade; else 5, then 4, if any
        /// run gives that; else 0. --json: one object per line.
        #[arg(long, conflicts_with = "fail_allocation")]
        fail_each: bool,
        /// The seed of the low resources simulation (verifier flag 0x4): the
        /// same seed fails the same allocations.
        #[arg(long, value_name = "N", default_value_t = 0)]
        seed: u64,
        /// Driver Verifier's flags, as `verifier /flags` takes them (hex):
        /// 0x8 pool tracking (the walkthrough's), 0x1 special pool, 0x2 Force
        /// IRQL checking, 0x4 low resources simulation (native engine); the
        /// automatic checks apply whatever is set; 0 is no verifier, the
        /// release kernel's own pool checks only (native engine). A flag the
        /// engine does not apply exits 2.
        #[arg(long, value_name = "FLAGS", default_value = "0x8", value_parser = VerifierFlags::parse)]
        verifier_flags: VerifierFlags,
        /// Windows version the emulated kernel reports (native and
        /// Speakeasy; default 6.1.7601, the walkthrough's Windows 7 SP1).
        #[arg(long, value_name = "X.Y.B", value_parser = parse_version)]
        os_version: Option<String>,
        /// Instructions each driver routine may run before it counts as hung.
        #[arg(long, value_name = "N", default_value_t = 5_000_000)]
        max_instructions: u64,
        /// Kernel calls each driver routine may make under the Speakeasy
        /// engine (its own call limit) before the run is the engine's limit,
        /// exit 2; the other engines have no such limit.
        #[arg(long, value_name = "N", default_value_t = 100_000,
              value_parser = clap::value_parser!(u32).range(1..))]
        max_kernel_calls: u32,
        /// Seconds the whole run may take (with --fail-each: the whole sweep).
        #[arg(long, value_name = "SECONDS", default_value_t = 60)]
        timeout: u64,
    },
    /// The main job: build x64 and x86, clean and leaky, emulate all four and
    /// show them side by side. Exits 0 when every build behaves as expected.
    Demo,
    /// Read real debugger output (`!analyze -v`, `!verifier 3 <driver>`, the
    /// fatal-error banner) into the same verdict `emulate` gives.
    #[command(after_help = EXIT_CODES)]
    Analyze {
        /// A text file of kd or WinDbg output.
        kd_output: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run the driver under the real Driver Verifier on a Windows test VM over
    /// SSH: enable pool tracking, reboot, install/start/stop, detect the bug
    /// check, run kd on the kernel dump, restore the guest, print the verdict.
    #[command(after_help = EXIT_CODES)]
    Vm(Box<VmArgs>),
    /// A kd session on the native engine's emulated machine: the
    /// walkthrough's debugger commands (ed nt!PoolHitTag, g, kvn, !pool,
    /// !verifier 3, !analyze -v ...) without a VM. The target starts stopped
    /// before the driver loads; g starts it, then stops it as sc would.
    /// Interactive at a `kd> ` prompt; with --script or piped commands it
    /// prints a kd-style transcript.
    #[command(after_help = kd_help())]
    Kd {
        /// The driver (.sys); its PDB beside it gives symbols and types.
        #[arg(value_name = "PATH.sys", required_unless_present = "arch", conflicts_with_all = ["arch", "leak"])]
        driver: Option<PathBuf>,
        /// Build and debug the portable Sample.sys for this architecture.
        #[arg(long, value_enum)]
        arch: Option<Arch>,
        /// With --arch: the leak-on-unload build.
        #[arg(long, requires = "arch")]
        leak: bool,
        /// Run the commands in FILE (one per line), echoing each after `kd> `.
        #[arg(long, value_name = "FILE")]
        script: Option<PathBuf>,
        /// Windows version the emulated kernel reports (default 6.1.7601,
        /// the walkthrough's Windows 7 SP1).
        #[arg(long, value_name = "X.Y.B", value_parser = parse_version)]
        os_version: Option<String>,
        /// Driver Verifier's flags, as `verifier /flags` takes them (hex):
        /// 0x8 pool tracking (the walkthrough's), 0x1 special pool, 0x2 Force
        /// IRQL checking, 0x4 low resources simulation (native engine); the
        /// automatic checks apply whatever is set; 0 is no verifier, the
        /// release kernel's own pool checks only (native engine). A flag the
        /// engine does not apply exits 2.
        #[arg(long, value_name = "FLAGS", default_value = "0x8", value_parser = VerifierFlags::parse)]
        verifier_flags: VerifierFlags,
        /// The seed of the low resources simulation (verifier flag 0x4).
        #[arg(long, value_name = "N", default_value_t = 0)]
        seed: u64,
    },
    /// A lesson of docs/lessons/ as a guided kd session on the emulated
    /// machine: builds the fault, sets the lesson's verifier flags, then
    /// reads kd commands from stdin (a terminal or a script), one step at a
    /// time; `hint` prints the next command. Exit 0 when the lesson is
    /// complete, 1 when the input ends first.
    Lesson {
        /// The lesson: leak-on-unload, double-free, paged-at-dispatch,
        /// leak-on-error, overrun or read-after-free.
        #[arg(value_parser = parse_lesson)]
        name: String,
        /// The build's architecture.
        #[arg(long, value_enum, default_value = "x86")]
        arch: Arch,
    },
    /// Provision the pinned Speakeasy virtualenv, build samplectl.exe (x64,
    /// and i686 for x86 drivers: rustup adds i686-pc-windows-gnu if missing)
    /// and make the Wine engine's prefix (when Wine is installed) now, instead
    /// of on first use; prints the interpreter's path.
    Setup,
}

/// `harness vm`'s options.
#[derive(clap::Args)]
struct VmArgs {
    /// The guest, as ssh takes it (`user@host`); OpenSSH server on the guest.
    #[arg(long, value_parser = parse_host)]
    host: String,
    /// The driver; without it the portable build for --arch is used.
    #[arg(long, value_name = "PATH.sys")]
    driver: Option<PathBuf>,
    /// Use the leak-on-unload build (when --driver is not given; short for
    /// `--fault leak-on-unload`).
    #[arg(long, conflicts_with = "fault")]
    leak: bool,
    /// Use the build with this fault (when --driver is not given).
    #[arg(long, value_name = "NAME", value_parser = parse_fault, conflicts_with = "driver")]
    fault: Option<Fault>,
    /// The flags for the guest's `verifier /flags` (hex; default 0x8, the
    /// walkthrough's pool tracking).
    #[arg(long, value_name = "FLAGS", default_value = "0x8", value_parser = VerifierFlags::parse)]
    verifier_flags: VerifierFlags,
    /// Do not test-sign an unsigned x64 driver (64-bit Windows then refuses
    /// it with error 577). A driver that is already signed is never re-signed.
    #[arg(long)]
    no_sign: bool,
    /// Architecture of the build (when --driver is not given).
    #[arg(long, value_enum, default_value = "x64")]
    arch: Arch,
    /// samplectl.exe for the guest; built with MinGW when not given.
    #[arg(long, value_name = "PATH")]
    samplectl: Option<PathBuf>,
    /// Working folder on the guest.
    #[arg(long, default_value = r"C:\sample-test")]
    guest_dir: String,
    /// kd.exe on the guest [default: the Windows SDK's, under
    /// `C:\Program Files (x86)` for x64, `C:\Program Files` for x86].
    #[arg(long)]
    kd: Option<String>,
    /// Symbol path for kd on the guest.
    #[arg(
        long,
        default_value = r"srv*C:\symbols*https://msdl.microsoft.com/download/symbols"
    )]
    symbols: String,
    /// Command run here after restoring, e.g. `virsh snapshot-revert win10 clean`.
    #[arg(long, value_name = "COMMAND")]
    revert_command: Option<String>,
    /// Seconds a reboot may take.
    #[arg(long, default_value_t = 600)]
    boot_timeout: u64,
    /// Seconds kd may take (it downloads symbols on first use).
    #[arg(long, default_value_t = 900)]
    kd_timeout: u64,
    /// kd script to run on the dump (e.g. docs/kd/postmortem.txt) instead
    /// of `!analyze -v; !verifier 3 <driver>`.
    #[arg(long, value_name = "PATH")]
    kd_script: Option<PathBuf>,
    /// Extra ssh/scp option (`-o`), repeatable: `--ssh-option Port=2222`.
    #[arg(long = "ssh-option", value_name = "OPTION")]
    ssh_options: Vec<String>,
    /// Save every guest command with its exact output, exit code and timing
    /// (and kd's output) in DIR/transcript.jsonl, replayable by tests/vm.rs.
    /// DIR must not hold a transcript yet.
    #[arg(long, value_name = "DIR")]
    record: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// A version given on the command line is not `X.Y.B`.
#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not a version like 6.1.7601")]
struct BadVersion(String);

/// `--host` as ssh takes it; a value starting with `-` would be an ssh option.
fn parse_host(text: &str) -> Result<String, vm::TransportError> {
    vm::check_host(text)?;
    Ok(text.to_owned())
}

/// A lesson's name (its fault feature).
fn parse_lesson(name: &str) -> Result<String, String> {
    lesson::find(name).map(|_| name.to_owned()).ok_or_else(|| {
        let names: Vec<&str> = lesson::LESSONS
            .iter()
            .map(|lesson| lesson.fault.feature())
            .collect();
        format!(
            "'{name}' is not a lesson; the lessons are {}",
            names.join(", ")
        )
    })
}

/// A fault feature's name (`double-free`).
fn parse_fault(name: &str) -> Result<Fault, String> {
    Fault::from_feature(name).ok_or_else(|| {
        let names: Vec<&str> = Fault::ALL.iter().map(|fault| fault.feature()).collect();
        format!(
            "'{name}' is not a fault; the faults are {}",
            names.join(", ")
        )
    })
}

fn parse_version(text: &str) -> Result<String, BadVersion> {
    let parts: Vec<&str> = text.split('.').collect();
    if parts.len() == 3 && parts.iter().all(|part| part.parse::<u32>().is_ok()) {
        Ok(text.to_owned())
    } else {
        Err(BadVersion(text.to_owned()))
    }
}

fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(usage) => return usage_error(&usage),
    };
    match run(cli.command) {
        Ok(code) => code.into(),
        Err(error) => {
            eprintln!("harness: {}", error.one_line());
            error.exit_code().into()
        }
    }
}

/// clap's errors as one line (exit 2); `--help` and `--version` as clap prints them.
fn usage_error(usage: &clap::Error) -> std::process::ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        usage.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        let _ = usage.print();
        return ExitCode::Clean.into();
    }
    let text = usage.to_string();
    let first = text
        .lines()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("bad command line")
        .trim()
        .trim_start_matches("error: ");
    eprintln!("harness: {first} (see harness --help)");
    ExitCode::CannotJudge.into()
}

fn run(command: Command) -> Result<ExitCode, CommandError> {
    match command {
        Command::Build {
            arch,
            leak,
            fault,
            sign,
        } => run_build(
            arch,
            fault.or_else(|| leak.then_some(Fault::LeakOnUnload)),
            sign,
        ),
        Command::Emulate {
            driver,
            engine,
            json,
            pool_hit_tag,
            fail_allocation,
            fail_each,
            seed,
            verifier_flags,
            os_version,
            max_instructions,
            max_kernel_calls,
            timeout,
        } => {
            let request = Request {
                driver,
                engine,
                pool_hit_tag,
                options: RunOptions {
                    fail_allocation: fail_allocation.unwrap_or(0),
                    verifier_flags,
                    seed,
                    os_version,
                    max_instructions,
                    max_kernel_calls,
                    timeout: Duration::from_secs(timeout.max(1)),
                },
            };
            if fail_each {
                return run_sweep(&request, json);
            }
            let verdict = emulate::emulate(&request)?;
            print_verdict(&verdict, json)?;
            Ok(verdict.exit_code())
        }
        Command::Analyze { kd_output, json } => {
            let bytes =
                harness_core::input::read_file(&kd_output, harness_core::input::MAX_TEXT_FILE)?;
            let verdict = harness_kd_text::analyze_bytes(&bytes, &kd_output.display().to_string())?;
            print_verdict(&verdict, json)?;
            Ok(verdict.exit_code())
        }
        Command::Vm(args) => run_vm(*args),
        Command::Lesson { name, arch } => lesson::find(&name).map_or_else(
            || Err(CommandError::Usage(format!("no lesson '{name}'"))),
            |found| lesson::run(found, arch),
        ),
        Command::Kd {
            driver,
            arch,
            leak,
            script,
            os_version,
            verifier_flags,
            seed,
        } => {
            let driver = match (driver, arch) {
                (Some(driver), _) => driver,
                (None, Some(arch)) => driver_build::build(arch, leak)?.sys,
                (None, None) => {
                    return Err(CommandError::Usage(
                        "kd needs a driver or --arch (see harness kd --help)".into(),
                    ));
                }
            };
            let options = kd::KdOptions {
                driver,
                script,
                os_version,
                verifier_flags,
                seed,
                max_instructions: 5_000_000,
                timeout: Duration::from_mins(1),
            };
            Ok(kd::run(&options)?)
        }
        Command::Setup => run_setup(),
        Command::Demo => run_demo(),
    }
}

/// `harness setup`: what the other engines need, installed now. The
/// virtualenv is mostly downloads, Wine's part builds and boots: side by side
/// they take the longer one's time.
fn run_setup() -> Result<ExitCode, CommandError> {
    let (python, wine) = std::thread::scope(|scope| {
        let wine = scope.spawn(harness_engines::wine::setup);
        let python = harness_engines::python::speakeasy_python();
        (
            python,
            wine.join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
        )
    });
    let python = python?;
    wine?;
    emit_line(&python.display().to_string())?;
    Ok(ExitCode::Clean)
}

/// `harness demo`: the walkthrough's four builds, then every fault.
fn run_demo() -> Result<ExitCode, CommandError> {
    let rows = demo::run()?;
    emit(&demo::render(&rows))?;
    let faults = demo::run_faults()?;
    emit(&demo::render_faults(&faults))?;
    Ok(
        if rows.iter().all(demo::Row::as_expected) && faults.iter().all(demo::FaultRow::as_expected)
        {
            ExitCode::Clean
        } else {
            ExitCode::Unexpected
        },
    )
}

/// `harness build`: the portable driver, optionally test-signed.
fn run_build(arch: Arch, fault: Option<Fault>, sign: bool) -> Result<ExitCode, CommandError> {
    let sys = if sign {
        let signed = driver_build::build_signed(arch, fault)?;
        emit_line(&format!(
            "harness: test certificate (import it on the guest): {}",
            signed.certificate.display()
        ))?;
        signed.sys
    } else {
        driver_build::build_fault(arch, fault)?.sys
    };
    emit_line(&sys.display().to_string())?;
    Ok(ExitCode::Clean)
}

fn run_vm(args: VmArgs) -> Result<ExitCode, CommandError> {
    let VmArgs {
        host,
        driver,
        leak,
        fault,
        verifier_flags,
        no_sign,
        arch,
        samplectl,
        guest_dir,
        kd,
        symbols,
        revert_command,
        boot_timeout,
        kd_timeout,
        kd_script,
        ssh_options,
        record,
        json,
    } = args;
    if verifier_flags.0 == 0 {
        // In emulation 0 is the verifier off; the VM run enables the
        // verifier and needs `verifier /query` to list the driver, and what
        // verifier.exe makes of `/flags 0` has not been seen here.
        return Err(harness_core::error::InputError::Unsupported(
            "--verifier-flags 0: harness vm runs the driver under Driver Verifier; give the flags to verify it with (0 is the verifier off, which only harness emulate and kd model)".to_owned(),
        )
        .into());
    }
    let fault = fault.or_else(|| leak.then_some(Fault::LeakOnUnload));
    let driver = match driver {
        Some(driver) => driver,
        None => driver_build::build_fault(arch, fault)?.sys,
    };
    let image = harness_core::pe::PeImage::read(&driver)?;
    let arch =
        image
            .require_kernel_driver()
            .map_err(|why| harness_core::error::InputError::Image {
                path: driver.clone(),
                why,
            })?;
    let driver = sign_for_guest(driver, arch, !no_sign)?;
    let samplectl = match samplectl {
        Some(path) => path,
        None => driver_build::build_samplectl_for(arch)?,
    };
    let options = vm::VmOptions {
        driver,
        samplectl,
        arch,
        guest_dir,
        kd: kd.unwrap_or_else(|| default_kd(arch).to_owned()),
        symbols,
        revert_command,
        boot_timeout: Duration::from_secs(boot_timeout),
        kd_timeout: Duration::from_secs(kd_timeout),
        kd_script,
        poll: Duration::from_secs(5),
        verifier_flags,
    };
    let mut ssh = vm::Ssh {
        target: host,
        options: ssh_options,
    };
    // Progress on stdout, so that stderr holds only the one-line error.
    let mut progress = |line: &str| {
        let _ = emit_line(&format!("harness: {line}"));
    };
    let verdict = match record {
        None => vm::run(&mut ssh, &options, &mut progress),
        Some(dir) => {
            let mut recorder =
                vm::Recorder::new(&mut ssh, &dir, &options).map_err(vm::VmError::from)?;
            let verdict = vm::run(&mut recorder, &options, &mut progress);
            // The evidence matters whatever the verdict; an incomplete
            // transcript is said, but does not replace the verdict.
            match recorder.finish(&verdict) {
                Ok(path) => progress(&format!("transcript: {}", path.display())),
                Err(error) => progress(&format!("warning: {error}")),
            }
            verdict
        }
    }?;
    print_verdict(&verdict, json)?;
    Ok(verdict.exit_code())
}

/// Where the Windows SDK puts kd.exe on a guest of the driver's (and so the
/// guest's) architecture. The SDK installs under the 32-bit Program Files
/// folder: `Program Files (x86)` on 64-bit Windows, `Program Files` on
/// 32-bit Windows, which has no `(x86)` folder ("WOW64 Implementation
/// Details", File System Redirector: ProgramFiles(x86) exists on 64-bit
/// Windows only).
const fn default_kd(arch: Arch) -> &'static str {
    match arch {
        Arch::X64 => r"C:\Program Files (x86)\Windows Kits\10\Debuggers\x64\kd.exe",
        Arch::X86 => r"C:\Program Files\Windows Kits\10\Debuggers\x86\kd.exe",
    }
}

/// 64-bit Windows loads only signed drivers, even in test mode: an unsigned
/// x64 driver is test-signed (a copy, in the harness's cache) unless
/// `--no-sign`; a signed one is used as it is. x86 drivers are left alone.
fn sign_for_guest(driver: PathBuf, arch: Arch, sign: bool) -> Result<PathBuf, CommandError> {
    use harness_build::signing::{self, GuestSigning};
    let dir = signing::certificate_dir()?.join("signed");
    let wanted = sign && arch == Arch::X64;
    match signing::for_guest(&driver, wanted, signing::test_certificate, &dir)? {
        GuestSigning::Signed {
            driver: signed,
            certificate,
        } => {
            emit_line(&format!(
                "harness: test-signed a copy of {}: {} (certificate to import on the guest: {})",
                driver.display(),
                signed.display(),
                certificate.display()
            ))?;
            Ok(signed)
        }
        GuestSigning::AlreadySigned => {
            emit_line(&format!(
                "harness: {} is signed already; using it as it is",
                driver.display()
            ))?;
            Ok(driver)
        }
        GuestSigning::Unsigned => {
            if arch == Arch::X64 {
                emit_line(&format!(
                    "harness: not signing {} (--no-sign): 64-bit Windows will refuse to start it (error 577)",
                    driver.display()
                ))?;
            }
            Ok(driver)
        }
    }
}

/// `emulate --fail-each`: each run printed as it ends (`--json`: one
/// object per line), then the summary.
fn run_sweep(request: &Request, json: bool) -> Result<ExitCode, CommandError> {
    use harness_engines::sweep::{self, Record, Sweep};
    let (mut runs, baseline) = Sweep::start(request)?;
    let print = |record: Record, header: Option<&sweep::Summary>| -> Result<(), CommandError> {
        if json {
            emit_line(&serde_json::to_string(&record)?)?;
        } else {
            if let Some(summary) = header {
                emit(&sweep::render_header(summary))?;
            }
            match &record {
                Record::Run(run) => emit(&sweep::render_run(run))?,
                Record::Summary(summary) => emit(&summary.render())?,
            }
        }
        Ok(())
    };
    print(Record::Run(baseline), Some(runs.summary_so_far()))?;
    for run in runs.by_ref() {
        print(Record::Run(run), None)?;
    }
    let summary = runs.summary();
    let code = summary.exit_code();
    if code == ExitCode::CannotJudge {
        eprintln!("harness: {}", summary.cannot_judge_line());
    }
    print(Record::Summary(summary), None)?;
    Ok(code)
}

fn print_verdict(verdict: &Verdict, json: bool) -> Result<(), CommandError> {
    if json {
        emit_line(&serde_json::to_string_pretty(verdict)?)?;
    } else {
        emit(&render::report(verdict))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_kd_follows_the_guest_architecture() {
        // 32-bit Windows has no "Program Files (x86)".
        assert!(!default_kd(Arch::X86).contains("(x86)"));
        assert!(default_kd(Arch::X86).ends_with(r"\Debuggers\x86\kd.exe"));
        assert_eq!(
            default_kd(Arch::X64),
            r"C:\Program Files (x86)\Windows Kits\10\Debuggers\x64\kd.exe"
        );
    }
}
