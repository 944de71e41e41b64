//! `harness build`: the portable cross-build of Sample.sys (no WDK), and
//! samplectl.exe for Wine and test VMs.
//!
//! Cargo's output goes to a log file beside the build, never to the user's
//! terminal; a failure names the log.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

pub use harness_core::arch::Arch;

/// The driver's fault features (docs/lessons/): one bug each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The unload routine skips the free.
    LeakOnUnload,
    /// The unload routine frees the copy twice.
    DoubleFree,
    /// `DriverEntry` allocates the paged copy at `DISPATCH_LEVEL`.
    PagedAtDispatch,
    /// `DriverEntry`'s error path after a second allocation forgets the first.
    LeakOnError,
    /// `DriverEntry` writes the copy's terminator past its end.
    Overrun,
    /// The unload routine reads the copy after freeing it.
    ReadAfterFree,
}

impl Fault {
    /// Every fault, in the lessons' order.
    pub const ALL: [Self; 6] = [
        Self::LeakOnUnload,
        Self::DoubleFree,
        Self::PagedAtDispatch,
        Self::LeakOnError,
        Self::Overrun,
        Self::ReadAfterFree,
    ];

    /// The cargo feature (and `--fault` name).
    #[must_use]
    pub const fn feature(self) -> &'static str {
        match self {
            Self::LeakOnUnload => "leak-on-unload",
            Self::DoubleFree => "double-free",
            Self::PagedAtDispatch => "paged-at-dispatch",
            Self::LeakOnError => "leak-on-error",
            Self::Overrun => "overrun",
            Self::ReadAfterFree => "read-after-free",
        }
    }

    /// The fault a feature name names.
    #[must_use]
    pub fn from_feature(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|fault| fault.feature() == name)
    }
}

/// A built driver and its symbols.
#[derive(Debug, Clone)]
pub struct BuiltDriver {
    /// `target/drivers/<arch>-<variant>/Sample.sys`.
    pub sys: PathBuf,
    /// `Sample.pdb` beside it.
    pub pdb: PathBuf,
    /// Which build.
    pub arch: Arch,
    /// Built with `leak-on-unload`.
    pub leak: bool,
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A program could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// `cargo` or `rustup`.
        program: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// Cargo failed; its output is in the log.
    #[error("cargo build of {what} failed{hint}: {first_error} (full output: {})", .log.display())]
    Cargo {
        /// What was being built.
        what: String,
        /// The first error line cargo printed.
        first_error: String,
        /// A hint about what may be missing.
        hint: &'static str,
        /// Cargo's whole output.
        log: PathBuf,
    },
    /// Cargo outlived its time limit and was stopped.
    #[error("cargo build of {what} did not finish within {} s and was stopped (output so far: {})", .limit.as_secs(), .log.display())]
    Timeout {
        /// What was being built.
        what: String,
        /// The limit.
        limit: Duration,
        /// Cargo's output.
        log: PathBuf,
    },
    /// rustup could not add the target.
    #[error("rustup target add {0} failed")]
    Rustup(String),
    /// Test-signing the build failed.
    #[error(transparent)]
    Sign(#[from] crate::signing::SignError),
    /// A file operation failed.
    #[error("cannot {what} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

fn io_error(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BuildError {
    let path = path.to_path_buf();
    move |source| BuildError::Io { what, path, source }
}

/// The workspace this harness belongs to (it builds the driver from there):
/// three levels above this crate, `test-harness/crates/build`.
#[must_use]
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(3)
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Builds the portable driver for `arch`, with or without `leak-on-unload`.
///
/// # Errors
/// A missing toolchain piece or a failed build.
pub fn build(arch: Arch, leak: bool) -> Result<BuiltDriver, BuildError> {
    build_fault(arch, leak.then_some(Fault::LeakOnUnload))
}

/// Builds the portable driver for `arch` with one fault feature, or none.
///
/// # Errors
/// A missing toolchain piece or a failed build.
pub fn build_fault(arch: Arch, fault: Option<Fault>) -> Result<BuiltDriver, BuildError> {
    let root = workspace_root();
    ensure_target(arch.triple())?;
    let leak = fault == Some(Fault::LeakOnUnload);
    // The leak keeps its directory name (`x64-leak`), which scripts know.
    let variant = match fault {
        None => format!("{arch}-clean"),
        Some(Fault::LeakOnUnload) => format!("{arch}-leak"),
        Some(other) => format!("{arch}-{}", other.feature()),
    };
    let target_dir = root.join("target").join("portable").join(&variant);
    let triple = arch.triple();
    let mut features = String::from("portable");
    if let Some(fault) = fault {
        features.push(',');
        features.push_str(fault.feature());
    }
    cargo_build(
        &target_dir,
        &[
            "-p",
            "sample",
            "--bin",
            "Sample",
            "--features",
            &features,
            "--target",
            triple,
            "--config",
            &format!("target.{triple}.linker=\"rust-lld\""),
        ],
        &format!("the {variant} driver"),
        "",
        None,
    )?;
    let built = target_dir.join(triple).join("release");
    let out = root.join("target").join("drivers").join(&variant);
    fs::create_dir_all(&out).map_err(io_error("create", &out))?;
    let sys = out.join("Sample.sys");
    let pdb = out.join("Sample.pdb");
    copy(&built.join("Sample.exe"), &sys)?;
    copy(&built.join("Sample.pdb"), &pdb)?;
    Ok(BuiltDriver {
        sys,
        pdb,
        arch,
        leak,
    })
}

/// A test-signed copy of a portable build.
#[derive(Debug, Clone)]
pub struct SignedDriver {
    /// The build it was made from.
    pub built: BuiltDriver,
    /// `target/drivers/<arch>-<variant>-signed/Sample.sys` (PDB beside it).
    pub sys: PathBuf,
    /// The test certificate it is signed with (PEM), for the guest to import.
    pub certificate: PathBuf,
}

/// Builds the portable driver and test-signs a copy of it (SHA-256
/// Authenticode, [`crate::signing`]) into `<variant>-signed/`.
///
/// # Errors
/// The build failed, or openssl/osslsigncode are missing or failed.
pub fn build_signed(arch: Arch, fault: Option<Fault>) -> Result<SignedDriver, BuildError> {
    let built = build_fault(arch, fault)?;
    let certificate = crate::signing::test_certificate()?;
    let variant = match fault {
        None => format!("{arch}-clean-signed"),
        Some(Fault::LeakOnUnload) => format!("{arch}-leak-signed"),
        Some(other) => format!("{arch}-{}-signed", other.feature()),
    };
    let out = workspace_root()
        .join("target")
        .join("drivers")
        .join(variant);
    let sys = crate::signing::signed_copy(&built.sys, &out, &certificate)?;
    Ok(SignedDriver {
        built,
        sys,
        certificate: certificate.certificate,
    })
}

/// Builds `samplectl.exe` for x64 Windows (MinGW), for Wine or a test VM.
///
/// # Errors
/// A missing toolchain piece or a failed build.
pub fn build_samplectl() -> Result<PathBuf, BuildError> {
    build_samplectl_for(Arch::X64)
}

/// Builds `samplectl.exe` for `arch` (MinGW: `x86_64` or `i686`).
///
/// # Errors
/// A missing toolchain piece or a failed build.
pub fn build_samplectl_for(arch: Arch) -> Result<PathBuf, BuildError> {
    build_samplectl_within(arch, None)
}

/// `samplectl.exe` for `arch`: the one built before if it is newer than the
/// installer's sources and the lock file, else built now within `limit`.
///
/// # Errors
/// A missing toolchain piece, a failed build, or one that took too long.
pub fn samplectl_up_to_date(arch: Arch, limit: Duration) -> Result<PathBuf, BuildError> {
    let exe = samplectl_path(arch);
    let root = workspace_root();
    let built = fs::metadata(&exe).and_then(|meta| meta.modified()).ok();
    let sources = [
        root.join("installer"),
        root.join("Cargo.lock"),
        root.join("Cargo.toml"),
    ]
    .iter()
    .filter_map(|path| newest_change(path))
    .max();
    match (built, sources) {
        (Some(built), Some(sources)) if built >= sources => Ok(exe),
        _ => {
            let exe = build_samplectl_within(arch, Some(limit))?;
            // Cargo leaves an exe it finds fresh alone: mark it checked, so
            // that the next call does not run cargo again.
            File::options()
                .write(true)
                .open(&exe)
                .and_then(|file| file.set_modified(SystemTime::now()))
                .map_err(io_error("touch", &exe))?;
            Ok(exe)
        }
    }
}

/// The newest modification time of a file, or of anything under a directory.
fn newest_change(path: &Path) -> Option<SystemTime> {
    let meta = fs::symlink_metadata(path).ok()?;
    let own = meta.modified().ok();
    if !meta.is_dir() {
        return own;
    }
    fs::read_dir(path)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| newest_change(&entry.path()))
        .chain(own)
        .max()
}

const fn samplectl_triple(arch: Arch) -> &'static str {
    match arch {
        Arch::X64 => "x86_64-pc-windows-gnu",
        Arch::X86 => "i686-pc-windows-gnu",
    }
}

fn samplectl_target_dir(arch: Arch) -> PathBuf {
    workspace_root()
        .join("target")
        .join("portable")
        .join(format!("samplectl-{arch}"))
}

/// Where `build_samplectl_for(arch)` puts `samplectl.exe`.
#[must_use]
pub(crate) fn samplectl_path(arch: Arch) -> PathBuf {
    samplectl_target_dir(arch)
        .join(samplectl_triple(arch))
        .join("release")
        .join("samplectl.exe")
}

/// Builds `samplectl.exe` for `arch`, stopping cargo after `limit` if given.
///
/// # Errors
/// A missing toolchain piece, a failed build, or one that took too long.
pub(crate) fn build_samplectl_within(
    arch: Arch,
    limit: Option<Duration>,
) -> Result<PathBuf, BuildError> {
    let triple = samplectl_triple(arch);
    ensure_target(triple)?;
    cargo_build(
        &samplectl_target_dir(arch),
        &["-p", "samplectl", "--target", triple],
        &format!("samplectl.exe for {triple}"),
        " (it needs MinGW: apt-get install gcc-mingw-w64-x86-64 gcc-mingw-w64-i686)",
        limit,
    )?;
    Ok(samplectl_path(arch))
}

/// `cargo build --release --locked <args>` in the workspace, into its own
/// target dir (`cargo test` holds the workspace target dir's lock while the
/// tests that call this run), with cargo's output in `build.log` there and
/// temporary files in `tmp` there (removed after). With a `limit`, cargo and
/// what it started are killed after it.
fn cargo_build(
    target_dir: &Path,
    args: &[&str],
    what: &str,
    hint: &'static str,
    limit: Option<Duration>,
) -> Result<(), BuildError> {
    use std::os::unix::process::CommandExt as _;
    fs::create_dir_all(target_dir).map_err(io_error("create", target_dir))?;
    let log = target_dir.join("build.log");
    let output = File::create(&log).map_err(io_error("create", &log))?;
    let tmp = target_dir.join("tmp");
    fs::create_dir_all(&tmp).map_err(io_error("create", &tmp))?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut child = Command::new(cargo)
        .current_dir(workspace_root())
        .args(["build", "--release", "--locked", "--color", "never"])
        .args(args)
        .env("CARGO_TARGET_DIR", target_dir)
        // Either of these would make cargo skip .cargo/config.toml's flags
        // (they keep SSE out of the x86 kernel code).
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("TMPDIR", &tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(output)
        // Its own process group, so that a time limit stops rustc and the
        // linkers with it.
        .process_group(0)
        .spawn()
        .map_err(|source| BuildError::Spawn {
            program: "cargo",
            source,
        })?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) => {}
            Err(source) => break Err(source),
        }
        if let Some(limit) = limit.filter(|limit| started.elapsed() > *limit) {
            kill_group(&mut child);
            let _ = fs::remove_dir_all(&tmp);
            return Err(BuildError::Timeout {
                what: what.to_owned(),
                limit,
                log,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = fs::remove_dir_all(&tmp);
    let status = status.map_err(|source| BuildError::Spawn {
        program: "cargo",
        source,
    })?;
    if status.success() {
        return Ok(());
    }
    let text = fs::read_to_string(&log).unwrap_or_default();
    let first_error = text
        .lines()
        .find(|line| line.starts_with("error"))
        .unwrap_or("see the log")
        .trim()
        .to_owned();
    Err(BuildError::Cargo {
        what: what.to_owned(),
        first_error,
        hint,
        log,
    })
}

/// Kills a child that leads its own process group, and the group.
fn kill_group(child: &mut std::process::Child) {
    if let Ok(group) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) on the process group the child leads
        // (`process_group(0)`); it touches no memory of ours.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
    }
    let _ = child.wait();
}

/// Puts the build in place without ever showing a half-written file: a
/// reader of `to` (another harness, a test running beside this build) sees
/// the old file or the new one. An identical file is left alone.
fn copy(from: &Path, to: &Path) -> Result<(), BuildError> {
    // Staging names are unique per process and call: tests build from
    // several threads at once.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let new = fs::read(from).map_err(io_error("read the build at", from))?;
    if fs::read(to).is_ok_and(|old| old == new) {
        return Ok(());
    }
    let name = to
        .file_name()
        .map_or_else(String::new, |name| name.to_string_lossy().into_owned());
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let staging = to.with_file_name(format!(".{name}.{}-{call}.partial", std::process::id()));
    fs::write(&staging, &new).map_err(io_error("write", &staging))?;
    fs::rename(&staging, to).map_err(|error| {
        let _ = fs::remove_file(&staging);
        io_error("copy the build to", to)(error)
    })
}

/// Installs the rustup target if it is missing, saying so.
fn ensure_target(triple: &str) -> Result<(), BuildError> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match installed {
        Ok(output) if output.status.success() => {
            if String::from_utf8_lossy(&output.stdout)
                .lines()
                .any(|line| line.trim() == triple)
            {
                return Ok(());
            }
            // Progress goes to stdout; stderr is for the one-line error.
            println!("harness: installing the Rust target {triple} (rustup target add {triple})");
            let status = Command::new("rustup")
                .args(["target", "add", triple])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_err(|source| BuildError::Spawn {
                    program: "rustup",
                    source,
                })?;
            if status.success() {
                Ok(())
            } else {
                Err(BuildError::Rustup(triple.to_owned()))
            }
        }
        // No rustup: the toolchain may still have the target (distro Rust).
        _ => Ok(()),
    }
}
