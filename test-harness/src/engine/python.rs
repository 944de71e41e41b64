//! The Python environment Speakeasy runs in. On first use the harness makes
//! its own virtualenv with the pinned requirements and says so; an
//! interrupted setup leaves nothing behind that a later run would trust.

use std::fs::{self, File};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::run_checked;
use crate::failure::{Failure, Result};

/// Pinned Speakeasy and its dependencies.
pub const SPEAKEASY_REQUIREMENTS: &str = include_str!("../../python/requirements-speakeasy.txt");

/// Overrides the interpreter (one that already has speakeasy-emulator).
pub const PYTHON_ENV_VAR: &str = "HARNESS_PYTHON";
/// Overrides where the virtualenv lives.
pub const VENV_ENV_VAR: &str = "HARNESS_VENV";

/// The Python interpreter to run Speakeasy with, provisioning it if needed.
///
/// # Errors
/// No usable Python, or pip could not install the requirements; the message
/// says how to fix it.
pub fn speakeasy_python() -> Result<PathBuf> {
    if let Some(python) = std::env::var_os(PYTHON_ENV_VAR) {
        return Ok(PathBuf::from(python));
    }
    let venv = venv_dir()?;
    let python = venv.join("bin").join("python");
    let marker = venv.join(".harness-ready");
    if fs::read_to_string(&marker).is_ok_and(|text| text == SPEAKEASY_REQUIREMENTS) {
        return Ok(python);
    }
    let parent = venv.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent)
        .map_err(|error| Failure::new(format!("cannot create {}: {error}", parent.display())))?;
    // Several harness processes (parallel tests) may arrive here at once.
    let lock = File::create(parent.join(".setup-lock"))
        .map_err(|error| Failure::new(format!("cannot lock {}: {error}", parent.display())))?;
    lock.lock()
        .map_err(|error| Failure::new(format!("cannot lock {}: {error}", parent.display())))?;
    if fs::read_to_string(&marker).is_ok_and(|text| text == SPEAKEASY_REQUIREMENTS) {
        return Ok(python);
    }
    eprintln!(
        "harness: first use: installing Speakeasy (pinned, see test-harness/python/requirements-speakeasy.txt) into {} ...",
        venv.display()
    );
    let staging = venv.with_extension("partial");
    let _ = fs::remove_dir_all(&staging);
    let created = create_venv(&staging).and_then(|()| install(&staging));
    if let Err(failure) = created {
        let _ = fs::remove_dir_all(&staging);
        return Err(failure);
    }
    let _ = fs::remove_dir_all(&venv);
    fs::rename(&staging, &venv).map_err(|error| {
        Failure::new(format!(
            "cannot move the new virtualenv into place at {}: {error}",
            venv.display()
        ))
    })?;
    // Only `bin/python` is used, and it survives the move (scripts would not).
    fs::write(&marker, SPEAKEASY_REQUIREMENTS)
        .map_err(|error| Failure::new(format!("cannot write {}: {error}", marker.display())))?;
    eprintln!("harness: Speakeasy is ready");
    Ok(python)
}

fn venv_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(VENV_ENV_VAR) {
        return Ok(PathBuf::from(dir));
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .ok_or_else(|| Failure::new(format!("neither HOME nor XDG_CACHE_HOME is set; set {VENV_ENV_VAR} to a directory for Speakeasy's virtualenv")))?;
    let mut hasher = DefaultHasher::new();
    SPEAKEASY_REQUIREMENTS.hash(&mut hasher);
    Ok(cache
        .join("sample-harness")
        .join(format!("speakeasy-{:08x}", hasher.finish() & 0xffff_ffff)))
}

fn create_venv(dir: &Path) -> Result<()> {
    let python = which("python3").ok_or_else(|| {
        Failure::new(format!(
            "python3 not found: install Python 3.8+ with venv (Debian: apt-get install python3 python3-venv), or set {PYTHON_ENV_VAR} to a Python that has speakeasy-emulator"
        ))
    })?;
    run_checked(
        Command::new(python).args(["-m", "venv"]).arg(dir),
        Duration::from_mins(5),
        "python3 -m venv failed ({}); on Debian install python3-venv",
    )?;
    Ok(())
}

fn install(dir: &Path) -> Result<()> {
    let requirements = dir.join("requirements-speakeasy.txt");
    fs::write(&requirements, SPEAKEASY_REQUIREMENTS).map_err(|error| {
        Failure::new(format!("cannot write {}: {error}", requirements.display()))
    })?;
    run_checked(
        Command::new(dir.join("bin").join("python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements),
        Duration::from_mins(15),
        &format!(
            "pip could not install Speakeasy ({{}}); check access to PyPI, or set {PYTHON_ENV_VAR} to a Python that has speakeasy-emulator==1.5.11"
        ),
    )?;
    Ok(())
}

/// The last non-empty line of a tool's output, for one-line errors.
#[must_use]
pub fn last_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("no output")
        .trim()
        .to_owned()
}

/// Finds a program on PATH.
#[must_use]
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}
