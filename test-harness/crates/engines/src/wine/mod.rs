//! Wine as a stand-in Windows test machine.
//!
//! Debian's wine64 8.0 loads kernel drivers in winedevice.exe through its
//! Service Control Manager, so the real `samplectl.exe` installs, starts,
//! stops and removes the real driver.
//!
//! Wine has no Driver Verifier. Its traces give what the pool tracker needs
//! (the `trace` module reads them): relay tracing (limited by `RelayInclude`
//! to the pool routines) shows each call with its arguments, result and
//! return address; `+loaddll` and `trace+ntoskrnl` show where the driver was
//! mapped, DriverEntry's status and the unload routine; `warn+debugstr`
//! carries DbgPrint's text; `trace+seh,trace+unwind` show where a driver
//! called a routine Wine only stubs.
//!
//! One run: take the prefix's lock, remove what an earlier run left, copy the
//! driver to `C:\harness\run\<service>.sys`, start a traced session (the
//! `machine` module), start the DbgPrint probe (`wine/print_probe.c`), then
//! `samplectl install / start / stop / uninstall` under a service name of the
//! harness's own (`service_name`), in the probe's load-order group so that
//! the probe shares its winedevice.exe, stop the session,
//! deregister the service if it is still there, read the log. An x86 driver
//! is driven by an i686 samplectl.exe (`C:\harness\samplectl-x86.exe`), under
//! 32-bit Wine, whose services.exe loads it in the 32-bit winedevice.exe.
//!
//! Wine gaps handled here: Wine 8 has no `bcryptprimitives.dll` (Rust's std
//! for `x86_64` imports `ProcessPrng` from it; the i686 build does not), so
//! a small 64-bit shim is built with MinGW into each prefix; and its DbgPrint
//! traces a text with a newline it may not have had and prints `%wZ` as "Z",
//! which the print probe mends.

mod machine;
mod trace;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use machine::PROBE_GROUP;
pub use machine::{ControlResult, SERVICE_PREFIX, WineMachine, prefix_processes};
use machine::{interrupt_guard, lock_prefix};
use trace::{Ending, Subject, events_from_log};

use crate::engine::{EngineError, RunOptions};
use harness_core::arch::Arch;
use harness_core::error::ProcessError;
use harness_core::events::Event;
use harness_core::pe::PeImage;

type Result<T> = std::result::Result<T, EngineError>;

/// Names the prefix `emulate --engine wine` uses (default: the cache's).
pub const PREFIX_ENV_VAR: &str = "HARNESS_WINE_PREFIX";

/// The shortest wait the SCM is given for a start or stop, whatever
/// `--timeout` says (Wine's own services start under the same setting).
pub(crate) const MIN_SCM_WAIT: Duration = Duration::from_secs(5);

/// How long after `start` returns the run waits for Wine's trace of
/// DriverEntry's return to reach the log.
const TRACE_SETTLE: Duration = Duration::from_secs(2);

/// How long building samplectl.exe may take.
const SAMPLECTL_BUILD_LIMIT: Duration = Duration::from_mins(10);

/// The prefix `emulate --engine wine` uses: `$HARNESS_WINE_PREFIX`, else
/// `wine-prefix` in the harness's cache.
///
/// # Errors
/// Neither names an absolute directory.
pub(crate) fn prefix_path() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(PREFIX_ENV_VAR).filter(|path| !path.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_absolute() {
            Ok(path)
        } else {
            Err(EngineError::Unsupported(format!(
                "{PREFIX_ENV_VAR} must name an absolute directory, not {}",
                path.display()
            )))
        };
    }
    harness_core::cache_dir()
        .map(|cache| cache.join("wine-prefix"))
        .ok_or_else(|| {
            EngineError::Unsupported(format!(
                "neither HOME nor XDG_CACHE_HOME names an absolute directory for the Wine prefix; set {PREFIX_ENV_VAR}"
            ))
        })
}

/// samplectl.exe for drivers of `arch` (x86: an i686 build, under 32-bit
/// Wine): the built one if it is newer than its sources, else built now
/// (cargo's output goes to its build log; rustup adds a missing target).
///
/// # Errors
/// The build failed or took longer than its limit.
pub(crate) fn samplectl_exe(arch: Arch) -> Result<PathBuf> {
    harness_build::driver_build::samplectl_up_to_date(arch, SAMPLECTL_BUILD_LIMIT).map_err(
        |error| match arch {
            Arch::X64 => EngineError::Unsupported(error.to_string()),
            Arch::X86 => EngineError::Unsupported(format!(
                "the i686 samplectl.exe that drives x86 drivers under Wine: {error}"
            )),
        },
    )
}

/// The harness's prefix, made if missing, locked for this process, with
/// current samplectl.exe and no leftovers of earlier runs.
///
/// # Errors
/// The prefix cannot be made, locked or cleaned.
pub(crate) fn prepared_machine() -> Result<WineMachine> {
    prepared_machine_at(&prefix_path()?)
}

/// [`prepared_machine`] for the prefix at `prefix`.
///
/// # Errors
/// The prefix cannot be made, locked or cleaned.
pub(crate) fn prepared_machine_at(prefix: &Path) -> Result<WineMachine> {
    let prefix = prefix.to_path_buf();
    let samplectl = samplectl_exe(Arch::X64)?;
    let lock = lock_prefix(&prefix)?;
    let mut machine = if let Ok(machine) = WineMachine::open(&prefix) {
        machine
    } else {
        let owned = prefix.join(".harness-prefix").is_file();
        let foreign = fs::read_dir(&prefix).is_ok_and(|entries| {
            entries
                .filter_map(std::result::Result::ok)
                .any(|entry| entry.file_name() != ".harness-lock")
        });
        if foreign && !owned {
            return Err(EngineError::Unsupported(format!(
                "{}: not a Wine prefix made by the harness; point {PREFIX_ENV_VAR} at a new or empty directory",
                prefix.display()
            )));
        }
        // A prefix whose creation did not finish: start again.
        clear_dir(&prefix);
        eprintln!(
            "harness: first use: creating a Wine prefix in {} ...",
            prefix.display()
        );
        WineMachine::create(&prefix, &samplectl).inspect_err(|_| clear_dir(&prefix))?
    };
    machine.hold_lock(lock);
    machine.update_samplectl(Arch::X64, &samplectl)?;
    machine.remove_leftovers();
    Ok(machine)
}

/// Empties `dir` except its lock file.
fn clear_dir(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.filter_map(std::result::Result::ok) {
            if entry.file_name() == ".harness-lock" {
                continue;
            }
            let path = entry.path();
            let _ = if path.is_dir() && !path.is_symlink() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
        }
    }
}

/// The service name a run installs `driver` under: `HarnessTest_<stem>_<pid>`,
/// the stem cut to 32 characters of `[A-Za-z0-9_-]` (others become `_`), the
/// process id in ten digits.
///
/// Never a name the prefix had: the prefix's own services have no
/// [`SERVICE_PREFIX`], and the process id keeps runs apart. The name is in
/// the registry path DriverEntry gets, so its length is fixed for a driver:
/// Sample.sys's copy of the path (its leak) has the same size in every run.
#[must_use]
pub(crate) fn service_name(driver: &Path) -> String {
    service_name_for(driver, std::process::id())
}

fn service_name_for(driver: &Path, pid: u32) -> String {
    let stem: String = driver
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(32)
        .collect();
    // u32::MAX has ten digits.
    format!("{SERVICE_PREFIX}{stem}_{pid:010}")
}

/// `harness setup`'s part: samplectl.exe built and the prefix made, when
/// Wine is installed (`Ok(false)` when it is not).
///
/// # Errors
/// The build or the prefix failed.
pub fn setup() -> Result<bool> {
    if let Err(EngineError::MissingTool { .. }) = WineMachine::tools_present() {
        return Ok(false);
    }
    // The i686 one too (for x86 drivers under 32-bit Wine, which may be
    // installed later): setup installs everything the tests use.
    let x86 = samplectl_exe(Arch::X86)?;
    let machine = prepared_machine()?;
    machine.update_samplectl(Arch::X86, &x86)?;
    for arch in Arch::ALL {
        machine.update_print_probe(arch)?;
    }
    Ok(true)
}

/// Loads, starts, stops and removes `driver` in Wine and returns the events.
///
/// # Errors
/// Wine could not run it, or the options ask for what Wine cannot do.
pub fn run(driver: &Path, image: &PeImage, options: &RunOptions) -> Result<Vec<Event>> {
    run_at(&prefix_path()?, driver, image, options)
}

/// [`run`] in the prefix at `prefix`.
///
/// # Errors
/// Wine could not run it, or the options ask for what Wine cannot do.
pub fn run_at(
    prefix: &Path,
    driver: &Path,
    image: &PeImage,
    options: &RunOptions,
) -> Result<Vec<Event>> {
    // Wine runs the driver for real: no allocation can be made to fail, and
    // the Windows version is the prefix's.
    if options.fail_allocation != 0 || options.os_version.is_some() {
        return Err(EngineError::Unsupported(
            "--fail-allocation and --os-version need the native or speakeasy engine; Wine runs the driver as it is".into(),
        ));
    }
    if image.arch == Some(Arch::X86) && !machine::wine32_present()? {
        return Err(EngineError::MissingTool {
            tool: "32-bit Wine (wine32:i386), which runs x86 drivers,",
            install: "install it (Debian: dpkg --add-architecture i386; apt-get update; apt-get install wine32:i386), or use --engine native",
        });
    }
    let arch = image.arch.unwrap_or(Arch::X64);
    // Built before the prefix is locked: the first build takes a while.
    let controller = samplectl_exe(arch)?;
    interrupt_guard()?;
    let mut machine = prepared_machine_at(prefix)?;
    machine.update_samplectl(arch, &controller)?;
    machine.update_print_probe(arch)?;
    machine.drive_with(arch);
    let name = service_name(driver);
    let file_name = format!("{name}.sys");
    let run_dir = machine.c_drive().join("harness/run");
    fs::create_dir_all(&run_dir).map_err(EngineError::io("create", &run_dir))?;
    let copy = run_dir.join(&file_name);
    fs::copy(driver, &copy).map_err(EngineError::io("copy the driver to", &run_dir))?;
    let scm_wait = options.timeout.max(MIN_SCM_WAIT);
    let result = machine
        .set_scm_wait(scm_wait)
        .and_then(|()| machine.start_session())
        .and_then(|()| drive(&machine, &name, &file_name, image, options.timeout));
    machine.stop_session();
    // Whatever happened, the service goes (through a session of its own).
    if machine.harness_services().contains(&name) {
        machine.deregister(&name);
    }
    let _ = fs::remove_file(&copy);
    let log = machine.session_log();
    drop(machine);
    let drive = result?;
    let subject = Subject {
        file_name: &file_name,
        driver_name: &name,
        arch,
        image_size: image.size_of_image,
    };
    let ending = Ending {
        scm_wait_seconds: scm_wait.as_secs(),
        deadline_seconds: drive.timed_out.then_some(options.timeout.as_secs()),
        truncated_at: log.truncated_at,
    };
    let events = events_from_log(&log.text, &subject, &ending);
    if events.is_empty() {
        return Err(EngineError::Unsupported(format!(
            "Wine did not load {}: {}",
            harness_core::file_name(driver),
            if drive.start.stderr.is_empty() {
                "no trace of the load".to_owned()
            } else {
                drive.start.stderr
            }
        )));
    }
    Ok(events)
}

/// What the samplectl calls of one run gave.
struct Drive {
    start: ControlResult,
    /// A call that runs driver code outlived the run's time limit.
    timed_out: bool,
}

/// install, start, and stop when DriverEntry set an unload routine; then
/// uninstall if the service stopped. A driver with no unload routine cannot
/// be stopped (Windows answers 1052): it is not asked to, and [`run`]
/// removes its service after the session.
fn drive(
    machine: &WineMachine,
    name: &str,
    file_name: &str,
    image: &PeImage,
    timeout: Duration,
) -> Result<Drive> {
    let deadline = Instant::now() + timeout;
    // The driver's own calls get the rest of the run's time, plus a moment
    // for Wine to answer.
    let remaining = || deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(2);
    machine.installing(name);
    machine.start_print_probe(image.arch.unwrap_or(Arch::X64))?;
    let path = format!(r"C:\harness\run\{file_name}");
    let install = machine.samplectl(&[
        "install",
        &path,
        "--name",
        name,
        "--no-copy",
        "--group",
        PROBE_GROUP,
    ])?;
    if install.code != Some(0) {
        return Err(ProcessError::Failed {
            what: "samplectl install failed under Wine".into(),
            detail: install.stderr,
        }
        .into());
    }
    let start = machine.samplectl_within(&["start", "--name", name], remaining())?;
    let mut timed_out = start.timed_out();
    // A running driver with no unload routine cannot be stopped, and
    // `uninstall` would try: it is removed once the session is gone.
    let removable = if start.code == Some(0) && unload_routine_set(machine, name, file_name, image)
    {
        let stop = machine.samplectl_within(&["stop", "--name", name], remaining())?;
        timed_out |= stop.timed_out();
        stop.code == Some(0)
    } else {
        start.code != Some(0)
    };
    if removable && !timed_out {
        let _ = machine.samplectl(&["uninstall", "--name", name]);
    }
    Ok(Drive { start, timed_out })
}

/// Whether DriverEntry succeeded and set an unload routine, from the trace
/// (which may reach the log a moment after `start` returns).
fn unload_routine_set(machine: &WineMachine, name: &str, file_name: &str, image: &PeImage) -> bool {
    let subject = Subject {
        file_name,
        driver_name: name,
        arch: image.arch.unwrap_or(Arch::X64),
        image_size: image.size_of_image,
    };
    let settle = Instant::now() + TRACE_SETTLE;
    loop {
        let log = machine.session_log();
        let entry = events_from_log(&log.text, &subject, &Ending::default())
            .into_iter()
            .find_map(|event| match event {
                Event::EntryReturn {
                    status,
                    unload_routine,
                } => Some((status, unload_routine)),
                _ => None,
            });
        if let Some((status, unload_routine)) = entry {
            return !harness_core::nt::status::failed(status) && unload_routine != 0;
        }
        if Instant::now() >= settle {
            // No trace of the return: stop it anyway, bounded by the run's limit.
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seen (issue 20): Sample.sys leaked 0x96 bytes in one run and 0x98 in
    /// another, as the process id's digit count changed the registry path.
    #[test]
    fn service_name_length_does_not_depend_on_the_process_id() {
        let driver = Path::new("/tmp/Sample.sys");
        let short = service_name_for(driver, 7);
        let long = service_name_for(driver, u32::MAX);
        assert_eq!(short, "HarnessTest_Sample_0000000007");
        assert_eq!(short.len(), long.len());
        assert_eq!(service_name(driver).len(), short.len());
    }
}
