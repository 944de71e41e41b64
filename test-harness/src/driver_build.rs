//! `harness build`: the portable cross-build of Sample.sys (no WDK), and
//! samplectl.exe for Wine and test VMs. Cargo's output goes to a log file
//! beside the build, never to the user's terminal; a failure names the log.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::arch::Arch;

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

/// The workspace this harness belongs to (it builds the driver from there).
#[must_use]
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Builds the portable driver for `arch`, with or without `leak-on-unload`.
///
/// # Errors
/// A missing toolchain piece or a failed build.
pub fn build(arch: Arch, leak: bool) -> Result<BuiltDriver, BuildError> {
    let root = workspace_root();
    ensure_target(arch.triple())?;
    let variant = format!("{arch}-{}", if leak { "leak" } else { "clean" });
    let target_dir = root.join("target").join("portable").join(&variant);
    let triple = arch.triple();
    let mut features = String::from("portable");
    if leak {
        features.push_str(",leak-on-unload");
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
pub fn build_signed(arch: Arch, leak: bool) -> Result<SignedDriver, BuildError> {
    let built = build(arch, leak)?;
    let certificate = crate::signing::test_certificate()?;
    let variant = format!("{arch}-{}-signed", if leak { "leak" } else { "clean" });
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
    let root = workspace_root();
    let triple = match arch {
        Arch::X64 => "x86_64-pc-windows-gnu",
        Arch::X86 => "i686-pc-windows-gnu",
    };
    ensure_target(triple)?;
    let target_dir = root
        .join("target")
        .join("portable")
        .join(format!("samplectl-{arch}"));
    cargo_build(
        &target_dir,
        &["-p", "samplectl", "--target", triple],
        &format!("samplectl.exe for {triple}"),
        " (it needs MinGW: apt-get install gcc-mingw-w64-x86-64 gcc-mingw-w64-i686)",
    )?;
    Ok(target_dir
        .join(triple)
        .join("release")
        .join("samplectl.exe"))
}

/// `cargo build --release --locked <args>` in the workspace, into its own
/// target dir (`cargo test` holds the workspace target dir's lock while the
/// tests that call this run), with cargo's output in `build.log` there.
fn cargo_build(
    target_dir: &Path,
    args: &[&str],
    what: &str,
    hint: &'static str,
) -> Result<(), BuildError> {
    fs::create_dir_all(target_dir).map_err(io_error("create", target_dir))?;
    let log = target_dir.join("build.log");
    let output = File::create(&log).map_err(io_error("create", &log))?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace_root())
        .args(["build", "--release", "--locked", "--color", "never"])
        .args(args)
        .env("CARGO_TARGET_DIR", target_dir)
        // Either of these would make cargo skip .cargo/config.toml's flags
        // (they keep SSE out of the x86 kernel code).
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(output)
        .status()
        .map_err(|source| BuildError::Spawn {
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

fn copy(from: &Path, to: &Path) -> Result<(), BuildError> {
    fs::copy(from, to)
        .map(|_| ())
        .map_err(io_error("copy the build to", to))
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
