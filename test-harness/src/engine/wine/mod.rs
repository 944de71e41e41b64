//! Wine as a stand-in Windows test machine: Debian's wine64 8.0 loads kernel
//! drivers in winedevice.exe through its Service Control Manager, so the real
//! `samplectl.exe` installs, starts, stops and removes the real driver.
//!
//! Wine has no Driver Verifier. Its traces give what the pool tracker needs:
//! relay tracing (limited by `RelayInclude` to the pool routines) shows each
//! call with its arguments, result and return address; `+loaddll` and
//! `trace+ntoskrnl` show where the driver was mapped, DriverEntry's status
//! and the unload routine; `warn+debugstr` carries DbgPrint's text.
//!
//! Two Wine gaps are handled here: Wine 8 has no `bcryptprimitives.dll`
//! (Rust's std imports `ProcessPrng` from it), so a small shim is built with
//! MinGW into each prefix; and Wine prints `%wZ` as "Z", which Sample.sys
//! avoids by formatting its text itself.

mod machine;
mod trace;

use std::fs::{self, File};
use std::path::Path;

pub use machine::{ControlResult, WineMachine};
pub use trace::events_from_log;

use super::{EngineError, RunOptions};
use crate::error::ProcessError;
use crate::events::Event;

type Result<T> = std::result::Result<T, EngineError>;

/// The harness's own prefix for `emulate --engine wine`, made on first use.
fn cached_machine() -> Result<(WineMachine, File)> {
    let cache = crate::cache_dir().ok_or_else(|| {
        EngineError::Unsupported(
            "neither HOME nor XDG_CACHE_HOME names an absolute directory for the Wine prefix"
                .into(),
        )
    })?;
    fs::create_dir_all(&cache).map_err(EngineError::io("create", &cache))?;
    // One run at a time per prefix: they share its services and wineserver.
    let lock_path = cache.join(".wine-lock");
    let lock = File::create(&lock_path).map_err(EngineError::io("create", &lock_path))?;
    lock.lock().map_err(EngineError::io("lock", &lock_path))?;
    let prefix = cache.join("wine-prefix");
    let samplectl = crate::driver_build::build_samplectl()
        .map_err(|error| EngineError::Unsupported(error.to_string()))?;
    if let Ok(machine) = WineMachine::open(&prefix) {
        // Keep samplectl current with this harness.
        let target = machine.c_drive().join("harness/samplectl.exe");
        fs::copy(&samplectl, &target).map_err(EngineError::io("copy samplectl.exe to", &target))?;
        return Ok((machine, lock));
    }
    eprintln!(
        "harness: first use: creating a Wine prefix in {} ...",
        prefix.display()
    );
    let _ = fs::remove_dir_all(&prefix);
    let machine = WineMachine::create(&prefix, &samplectl).inspect_err(|_| {
        let _ = fs::remove_dir_all(&prefix);
    })?;
    Ok((machine, lock))
}

/// Loads, starts, stops and removes `driver` in Wine and returns the events.
///
/// # Errors
/// Wine could not run it, or the driver is not x64.
pub fn run(driver: &Path, image_size: u64, options: &RunOptions) -> Result<Vec<Event>> {
    // Wine runs the driver for real: no allocation can be made to fail, and
    // the Windows version is the prefix's.
    if options.fail_allocation != 0 || options.os_version.is_some() {
        return Err(EngineError::Unsupported(
            "--fail-allocation and --os-version need the native or speakeasy engine; Wine runs the driver as it is".into(),
        ));
    }
    let (mut machine, _lock) = cached_machine()?;
    let name = driver
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    let file_name = driver
        .file_name()
        .map(|file| file.to_string_lossy().into_owned())
        .unwrap_or_default();
    let run_dir = machine.c_drive().join("harness/run");
    let _ = fs::remove_dir_all(&run_dir);
    fs::create_dir_all(&run_dir).map_err(EngineError::io("create", &run_dir))?;
    fs::copy(driver, run_dir.join(&file_name))
        .map_err(EngineError::io("copy the driver to", &run_dir))?;
    machine.start_session()?;
    let result = drive(&machine, &name, &format!(r"C:\harness\run\{file_name}"));
    machine.stop_session();
    let (start, _stop) = result?;
    let log = machine.log();
    let events = events_from_log(&log, &file_name, image_size);
    if !events
        .iter()
        .any(|event| matches!(event, Event::Load { .. }))
    {
        return Err(EngineError::Unsupported(format!(
            "Wine did not load {file_name}: {}",
            if start.stderr.is_empty() {
                "no trace of the load".to_owned()
            } else {
                start.stderr
            }
        )));
    }
    Ok(events)
}

/// install, start, stop, uninstall (the last always, so no service is left).
fn drive(machine: &WineMachine, name: &str, path: &str) -> Result<(ControlResult, ControlResult)> {
    // A service left by an interrupted run would make install fail (1073).
    let _ = machine.samplectl(&["uninstall", "--name", name])?;
    let install = machine.samplectl(&["install", path, "--name", name, "--no-copy"])?;
    if install.code != Some(0) {
        return Err(ProcessError::Failed {
            what: "samplectl install failed under Wine".into(),
            detail: install.stderr,
        }
        .into());
    }
    let start = machine.samplectl(&["start", "--name", name])?;
    let stop = if start.code == Some(0) {
        machine.samplectl(&["stop", "--name", name])?
    } else {
        ControlResult {
            code: Some(1),
            stdout: String::new(),
            stderr: "not started".into(),
        }
    };
    let _ = machine.samplectl(&["uninstall", "--name", name]);
    Ok((start, stop))
}
