//! `harness build`: the portable cross-build of Sample.sys (no WDK).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::arch::Arch;
use crate::failure::{Failure, Result};

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

/// The workspace this harness belongs to (it builds the driver from there).
#[must_use]
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Builds the portable driver for `arch`, with or without `leak-on-unload`.
///
/// Cargo's output goes to stderr; nothing is written to stdout.
///
/// # Errors
/// A missing toolchain piece or a failed build.
pub fn build(arch: Arch, leak: bool) -> Result<BuiltDriver> {
    let root = workspace_root();
    ensure_target(arch)?;
    let variant = format!("{arch}-{}", if leak { "leak" } else { "clean" });
    let target_dir = root.join("target").join("portable").join(&variant);
    let triple = arch.triple();
    let mut features = String::from("portable");
    if leak {
        features.push_str(",leak-on-unload");
    }
    let status = cargo_build(
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
    )?;
    if !status.success() {
        return Err(Failure::new(format!(
            "cargo build of the {variant} driver failed (see the errors above)"
        )));
    }
    let built = target_dir.join(triple).join("release");
    let out = root.join("target").join("drivers").join(&variant);
    fs::create_dir_all(&out)
        .map_err(|error| Failure::new(format!("cannot create {}: {error}", out.display())))?;
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

/// Builds `samplectl.exe` for x64 Windows (MinGW), for Wine or a test VM.
///
/// # Errors
/// A missing toolchain piece or a failed build.
pub fn build_samplectl() -> Result<PathBuf> {
    build_samplectl_for(Arch::X64)
}

/// Builds `samplectl.exe` for `arch` (MinGW: `x86_64` or `i686`).
///
/// # Errors
/// A missing toolchain piece or a failed build.
pub fn build_samplectl_for(arch: Arch) -> Result<PathBuf> {
    let root = workspace_root();
    let triple = match arch {
        Arch::X64 => "x86_64-pc-windows-gnu",
        Arch::X86 => "i686-pc-windows-gnu",
    };
    ensure_target_triple(triple)?;
    let target_dir = root
        .join("target")
        .join("portable")
        .join(format!("samplectl-{arch}"));
    let status = cargo_build(&target_dir, &["-p", "samplectl", "--target", triple])?;
    if !status.success() {
        return Err(Failure::new(format!(
            "cargo build of samplectl.exe for {triple} failed (it needs MinGW: apt-get install gcc-mingw-w64-x86-64 gcc-mingw-w64-i686)"
        )));
    }
    Ok(target_dir
        .join(triple)
        .join("release")
        .join("samplectl.exe"))
}

/// `cargo build --release --locked <args>` in the workspace, into its own
/// target dir: `cargo test` holds the workspace target dir's lock while the
/// tests that call this run. Cargo's output goes to stderr.
fn cargo_build(target_dir: &Path, args: &[&str]) -> Result<std::process::ExitStatus> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    Command::new(cargo)
        .current_dir(workspace_root())
        .args(["build", "--release", "--locked"])
        .args(args)
        .env("CARGO_TARGET_DIR", target_dir)
        // Either of these would make cargo skip .cargo/config.toml's flags
        // (they keep SSE out of the x86 kernel code).
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .stdout(Stdio::null())
        .status()
        .map_err(|error| Failure::new(format!("cannot run cargo: {error}")))
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to).map(|_| ()).map_err(|error| {
        Failure::new(format!(
            "cannot copy {} to {}: {error}",
            from.display(),
            to.display()
        ))
    })
}

/// Installs the rustup target if it is missing, saying so.
fn ensure_target(arch: Arch) -> Result<()> {
    ensure_target_triple(arch.triple())
}

fn ensure_target_triple(triple: &str) -> Result<()> {
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
            eprintln!("harness: installing the Rust target {triple} (rustup target add {triple})");
            let status = Command::new("rustup")
                .args(["target", "add", triple])
                .stdout(Stdio::null())
                .status()
                .map_err(|error| Failure::new(format!("cannot run rustup: {error}")))?;
            if status.success() {
                Ok(())
            } else {
                Err(Failure::new(format!("rustup target add {triple} failed")))
            }
        }
        // No rustup: the toolchain may still have the target (distro Rust).
        _ => Ok(()),
    }
}
