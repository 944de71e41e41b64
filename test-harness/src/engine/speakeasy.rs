//! Speakeasy engine: runs `speakeasy_adapter.py` (fed on stdin, so nothing is
//! written to disk) and reads its JSON-line events.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::{EngineError, RunOptions, last_line, python, run_with_timeout};
use crate::events::Event;

/// The adapter, shipped inside the harness binary.
pub const ADAPTER: &str = include_str!("../../python/speakeasy_adapter.py");

/// Runs `driver` under Speakeasy and returns what it did.
///
/// # Errors
/// Speakeasy cannot be provisioned or started, or the adapter reported no result.
pub fn run(driver: &Path, options: &RunOptions) -> Result<Vec<Event>, EngineError> {
    let python = python::speakeasy_python()?;
    // Speakeasy's own budget ends a hung routine cleanly (reported as "did
    // not return"); the outer limit only guards against a stuck interpreter.
    let inner = options.timeout.as_secs().max(1);
    let mut command = Command::new(&python);
    command
        .arg("-")
        .args(["--fail-allocation", &options.fail_allocation.to_string()])
        .args([
            "--os-version",
            options.os_version.as_deref().unwrap_or("6.1.7601"),
        ])
        .args(["--max-instructions", &options.max_instructions.to_string()])
        .args(["--timeout", &inner.to_string()])
        // The registry path the native engine passes for the same version.
        .args(["--registry-path", &registry_path(driver, options)])
        // A file name starting with `-` must not read as an option.
        .arg("--")
        .arg(driver);
    let output = run_with_timeout(
        &mut command,
        ADAPTER.as_bytes(),
        options.timeout + Duration::from_mins(1),
    )?;
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
        .and_then(super::native::profile::Profile::parse)
        .unwrap_or_default();
    let service = driver.file_stem().map_or_else(
        || "Driver".to_owned(),
        |stem| stem.to_string_lossy().into_owned(),
    );
    profile.registry_path(&service)
}

/// Parses JSON-line events.
///
/// # Errors
/// A line that is not an event.
pub fn parse_events(stdout: &[u8]) -> Result<Vec<Event>, EngineError> {
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
