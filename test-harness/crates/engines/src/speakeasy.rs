//! Speakeasy engine: runs `speakeasy_adapter.py` (fed on stdin, so nothing is
//! written to disk) and reads its JSON-line events.
//!
//! Limits: the Python process may use at most `MEMORY_CAP` bytes of address
//! space (`RLIMIT_AS`, set between fork and exec). The caller's time budget
//! bounds the start-up (Python, importing Speakeasy, loading the image: when
//! it runs out before DriverEntry starts, the engine says so, a gap) and then
//! the driver's routines, from DriverEntry's first instruction (only then is
//! "still running after N s" the driver's). A process still running
//! `KILL_GRACE` after both budgets is killed.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::engine::{EngineError, RunOptions};
use crate::python;
use harness_core::arch::Arch;
use harness_core::error::ProcessError;
use harness_core::events::Event;
use harness_core::nt::pool_request_limit;
use harness_core::process::{last_line, run_with_timeout};

/// The adapter, shipped inside the harness binary.
pub(crate) const ADAPTER: &str = include_str!("../python/speakeasy_adapter.py");

/// The most address space the engine's process may take, with room to spare.
///
/// It holds Python and Speakeasy (about 110 MiB), the image (at most
/// [`harness_core::pe::MAX_SIZE_OF_IMAGE`]) and the adapter's emulated pool (at most
/// 1 GiB).
pub(crate) const MEMORY_CAP: u64 = 2 << 30;

/// How long after the time budget a process that did not stop by itself is
/// killed.
pub(crate) const KILL_GRACE: Duration = Duration::from_secs(3);

/// Runs `driver` under Speakeasy and returns what it did.
///
/// # Errors
/// Speakeasy cannot be provisioned or started, or the adapter reported no result.
pub fn run(driver: &Path, options: &RunOptions) -> Result<Vec<Event>, EngineError> {
    let python = python::speakeasy_python()?;
    let mut command = Command::new(&python);
    command
        .arg("-")
        .args(["--fail-allocation", &options.fail_allocation.to_string()])
        .args([
            "--os-version",
            options.os_version.as_deref().unwrap_or("6.1.7601"),
        ])
        .args(["--max-instructions", &options.max_instructions.to_string()])
        .args(["--max-api-calls", &options.max_kernel_calls.to_string()])
        // Requests this large get NULL, as on Windows, not an engine limit.
        .args([
            "--pool-request-limit",
            &format!(
                "{},{}",
                pool_request_limit(Arch::X86),
                pool_request_limit(Arch::X64)
            ),
        ])
        .args([
            "--timeout",
            &format!("{:.3}", options.timeout.as_secs_f64()),
        ])
        // The registry path the native engine passes for the same version.
        .args(["--registry-path", &registry_path(driver, options)])
        // A file name starting with `-` must not read as an option.
        .arg("--")
        .arg(driver);
    limit_memory(&mut command, MEMORY_CAP);
    let output = match run_with_timeout(
        &mut command,
        ADAPTER.as_bytes(),
        options.timeout * 2 + KILL_GRACE,
    ) {
        Ok(output) => output,
        Err(ProcessError::Timeout { .. }) => {
            return Err(EngineError::Stopped {
                engine: "speakeasy",
                code: -1,
                detail: format!(
                    "still running {} s after twice the --timeout of {} s (start-up, then the driver) and killed",
                    KILL_GRACE.as_secs(),
                    options.timeout.as_secs()
                ),
            });
        }
        Err(error) => return Err(error.into()),
    };
    let events = parse_events(&output.stdout)?;
    if !matches!(events.last(), Some(Event::End | Event::Gap { .. })) {
        return Err(EngineError::Stopped {
            engine: "speakeasy",
            code: output.status.code().unwrap_or(-1),
            detail: last_line(&output.stderr),
        });
    }
    Ok(events)
}

/// `\REGISTRY\MACHINE\SYSTEM\ControlSet001\services\<stem>` for the
/// emulated Windows version (service named after the file, as samplectl does).
fn registry_path(driver: &Path, options: &RunOptions) -> String {
    let profile = options
        .os_version
        .as_deref()
        .and_then(harness_ntemu::profile::Profile::parse)
        .unwrap_or_default();
    let service = driver.file_stem().map_or_else(
        || "Driver".to_owned(),
        |stem| stem.to_string_lossy().into_owned(),
    );
    profile.registry_path(&service)
}

/// Caps the address space of the process `command` starts.
#[cfg(unix)]
fn limit_memory(command: &mut Command, bytes: u64) {
    use std::os::unix::process::CommandExt;
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    let set_limit = move || {
        // SAFETY: `limit` is a valid rlimit that outlives the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_AS, &raw const limit) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    // SAFETY: the closure runs in the child between fork and exec; it only
    // calls setrlimit, which is async-signal-safe, and allocates nothing.
    unsafe {
        command.pre_exec(set_limit);
    }
}

#[cfg(not(unix))]
fn limit_memory(_command: &mut Command, _bytes: u64) {}

/// Parses JSON-line events.
///
/// # Errors
/// A line that is not an event.
pub(crate) fn parse_events(stdout: &[u8]) -> Result<Vec<Event>, EngineError> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| {
            serde_json::from_str(line).map_err(|source| EngineError::BadEvent {
                line: line.chars().take(200).collect(),
                source,
            })
        })
        .collect()
}
