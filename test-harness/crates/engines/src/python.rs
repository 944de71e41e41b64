//! The Python environment Speakeasy runs in. On first use the harness makes
//! its own virtualenv with the pinned requirements and says so.
//!
//! The harness owns one directory (`HARNESS_VENV`, else
//! `$XDG_CACHE_HOME/sample-harness/speakeasy-<hash>`) and touches nothing
//! outside it: the ownership marker, the set-up lock, the staging copy and
//! the virtualenv itself (`venv/`) all live inside. A directory that holds
//! anything else is refused, never emptied.

use std::fs::{self, File};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use harness_core::error::ProcessError;
use harness_core::process::{run_checked, which};

/// Pinned Speakeasy and its dependencies.
pub(crate) const SPEAKEASY_REQUIREMENTS: &str =
    include_str!("../python/requirements-speakeasy.txt");

/// Overrides the interpreter (one that already has speakeasy-emulator).
pub(crate) const PYTHON_ENV_VAR: &str = "HARNESS_PYTHON";
/// Overrides where the virtualenv lives.
pub(crate) const VENV_ENV_VAR: &str = "HARNESS_VENV";

/// Marks a directory as the harness's own.
const OWNER_MARKER: &str = ".harness-venv";
/// Holds the requirements the ready virtualenv was made from.
const READY_MARKER: &str = ".harness-ready";

/// Why the virtualenv could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// No absolute cache directory to put it in.
    #[error(
        "neither HOME nor XDG_CACHE_HOME names an absolute directory; set {VENV_ENV_VAR} to a directory for Speakeasy's virtualenv"
    )]
    NoCacheDir,
    /// The named directory holds files the harness did not make.
    #[error(
        "{}: not empty and not a virtualenv made by the harness; set {VENV_ENV_VAR} to a new or empty directory",
        .0.display()
    )]
    NotOurs(PathBuf),
    /// The name is taken by something that is not a directory.
    #[error("{}: not a directory; set {VENV_ENV_VAR} to a new or empty directory", .0.display())]
    NotADirectory(PathBuf),
    /// A file operation failed.
    #[error("cannot {what} {}: {source}", .path.display())]
    Io {
        /// What the set-up was doing.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// No python3 on PATH.
    #[error(
        "python3 not found: install Python 3.8+ with venv (Debian: apt-get install python3 python3-venv), or set {PYTHON_ENV_VAR} to a Python that has speakeasy-emulator"
    )]
    NoPython,
    /// `python3 -m venv` failed.
    #[error("{0}; on Debian install python3-venv")]
    Venv(ProcessError),
    /// pip failed.
    #[error(
        "{0}; check access to PyPI, or set {PYTHON_ENV_VAR} to a Python that has speakeasy-emulator==1.5.11"
    )]
    Pip(ProcessError),
}

fn io_error(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SetupError {
    let path = path.to_path_buf();
    move |source| SetupError::Io { what, path, source }
}

/// The Python interpreter to run Speakeasy with, provisioning it if needed.
///
/// # Errors
/// No place for the virtualenv, no usable Python, or pip failed; the
/// message says how to fix it.
pub fn speakeasy_python() -> Result<PathBuf, SetupError> {
    if let Some(python) = std::env::var_os(PYTHON_ENV_VAR).filter(|value| !value.is_empty()) {
        return Ok(PathBuf::from(python));
    }
    let home = harness_dir()?;
    let venv = home.join("venv");
    let python = venv.join("bin").join("python");
    let ready = |venv: &Path| {
        fs::read_to_string(venv.join(READY_MARKER)).is_ok_and(|text| text == SPEAKEASY_REQUIREMENTS)
    };
    if ready(&venv) {
        return Ok(python);
    }
    claim(&home)?;
    // Several harness processes (parallel tests) may arrive here at once.
    let lock_path = home.join(".setup-lock");
    let lock = File::create(&lock_path).map_err(io_error("create", &lock_path))?;
    lock.lock().map_err(io_error("lock", &lock_path))?;
    if ready(&venv) {
        return Ok(python);
    }
    eprintln!(
        "harness: first use: installing Speakeasy (pinned, see test-harness/crates/engines/python/requirements-speakeasy.txt) into {} ...",
        venv.display()
    );
    let staging = home.join("staging");
    let _ = fs::remove_dir_all(&staging); // ours: left by an interrupted set-up
    let created = create_venv(&staging).and_then(|()| install(&staging));
    if let Err(error) = created {
        let _ = fs::remove_dir_all(&staging);
        return Err(error);
    }
    // Only `bin/python` is used, and it survives the move (scripts would not).
    fs::write(staging.join(READY_MARKER), SPEAKEASY_REQUIREMENTS)
        .map_err(io_error("write", &staging.join(READY_MARKER)))?;
    if venv.exists() {
        fs::remove_dir_all(&venv).map_err(io_error("replace", &venv))?;
    }
    fs::rename(&staging, &venv).map_err(io_error("move the new virtualenv to", &venv))?;
    Ok(python)
}

/// The directory the harness owns: `HARNESS_VENV`, or one in the cache.
fn harness_dir() -> Result<PathBuf, SetupError> {
    if let Some(dir) = std::env::var_os(VENV_ENV_VAR).filter(|value| !value.is_empty()) {
        return std::path::absolute(PathBuf::from(&dir))
            .map_err(io_error("resolve", Path::new(&dir)));
    }
    let mut hasher = DefaultHasher::new();
    SPEAKEASY_REQUIREMENTS.hash(&mut hasher);
    Ok(harness_core::cache_dir()
        .ok_or(SetupError::NoCacheDir)?
        .join(format!("speakeasy-{:08x}", hasher.finish() & 0xffff_ffff)))
}

/// Makes `dir` the harness's own: new, empty, or already marked as ours.
fn claim(dir: &Path) -> Result<(), SetupError> {
    match fs::symlink_metadata(dir) {
        Ok(metadata) if !metadata.is_dir() => return Err(SetupError::NotADirectory(dir.into())),
        Ok(_) => {
            // An older harness marked its virtualenv with READY_MARKER alone.
            let ours = dir.join(OWNER_MARKER).is_file() || dir.join(READY_MARKER).is_file();
            let empty = fs::read_dir(dir)
                .map_err(io_error("read", dir))?
                .next()
                .is_none();
            if !ours && !empty {
                return Err(SetupError::NotOurs(dir.into()));
            }
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(io_error("create", dir))?;
        }
        Err(source) => {
            return Err(SetupError::Io {
                what: "inspect",
                path: dir.into(),
                source,
            });
        }
    }
    let marker = dir.join(OWNER_MARKER);
    fs::write(&marker, "made by harness setup: Speakeasy's virtualenv\n")
        .map_err(io_error("write", &marker))
}

fn create_venv(dir: &Path) -> Result<(), SetupError> {
    let python = which("python3").ok_or(SetupError::NoPython)?;
    run_checked(
        Command::new(python).args(["-m", "venv"]).arg(dir),
        Duration::from_mins(5),
        "python3 -m venv failed",
    )
    .map_err(SetupError::Venv)?;
    Ok(())
}

fn install(dir: &Path) -> Result<(), SetupError> {
    let requirements = dir.join("requirements-speakeasy.txt");
    fs::write(&requirements, SPEAKEASY_REQUIREMENTS).map_err(io_error("write", &requirements))?;
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
        "pip could not install Speakeasy",
    )
    .map_err(SetupError::Pip)?;
    Ok(())
}
