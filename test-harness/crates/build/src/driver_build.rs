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
    let leak = fault == Some(Fault::LeakOnUnload);
    // The leak keeps its directory name (`x64-leak`), which scripts know.
    let variant = match fault {
        None => format!("{arch}-clean"),
        Some(Fault::LeakOnUnload) => format!("{arch}-leak"),
        Some(other) => format!("{arch}-{}", other.feature()),
    };
    let triple = arch.triple();
    let mut features = String::from("portable");
    if let Some(fault) = fault {
        features.push(',');
        features.push_str(fault.feature());
    }
    let linker = format!("target.{triple}.linker=\"rust-lld\"");
    let args = [
        "-p",
        "sample",
        "--bin",
        "Sample",
        "--features",
        &features,
        "--target",
        triple,
        "--config",
        &linker,
    ];
    let out = root.join("target").join("drivers").join(&variant);
    let built = BuiltDriver {
        sys: out.join("Sample.sys"),
        pdb: out.join("Sample.pdb"),
        arch,
        leak,
    };
    // Cargo's own freshness check costs about 0.15 s per variant (the demo
    // checks four); the inputs' fingerprint gives the same answer in
    // milliseconds.
    let inputs = driver_inputs(&root, &args);
    if stamp_matches(&out, inputs, &built) {
        return Ok(built);
    }
    ensure_target(triple)?;
    let target_dir = root.join("target").join("portable").join(&variant);
    cargo_build(
        &target_dir,
        &args,
        &format!("the {variant} driver"),
        "",
        None,
    )?;
    let from = target_dir.join(triple).join("release");
    fs::create_dir_all(&out).map_err(io_error("create", &out))?;
    copy(&from.join("Sample.exe"), &built.sys)?;
    copy(&from.join("Sample.pdb"), &built.pdb)?;
    write_stamp(&out, inputs, &built)?;
    Ok(built)
}

/// Staging names are unique per process and call: tests build from several
/// threads at once.
static STAGING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The stamp beside a build: the fingerprints of its inputs and outputs.
const STAMP: &str = "inputs.stamp";

/// FNV-1a (64-bit) over `bytes`, continuing from `hash`: a change detector,
/// not a defence against anyone crafting collisions.
fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Fingerprint of what a driver build reads: every file under `driver/`
/// (names and contents), the workspace manifest, lock file and
/// `.cargo/config.toml`, and cargo's arguments. The Rust toolchain is not
/// in it: after a toolchain update, remove `target/drivers` to rebuild.
fn driver_inputs(root: &Path, args: &[&str]) -> u64 {
    let mut hash = fnv1a(FNV_OFFSET, args.join("\0").as_bytes());
    let mut files = Vec::new();
    list_files(&root.join("driver"), &mut files);
    files.extend(
        ["Cargo.toml", "Cargo.lock", ".cargo/config.toml"]
            .iter()
            .map(|name| root.join(name)),
    );
    for file in files {
        hash = fnv1a(hash, file.as_os_str().as_encoded_bytes());
        // A missing file hashes differently from an empty one.
        hash = fs::read(&file).map_or_else(
            |_| fnv1a(hash, b"\xff missing"),
            |bytes| fnv1a(fnv1a(hash, &(bytes.len() as u64).to_le_bytes()), &bytes),
        );
    }
    hash
}

/// Every file under `dir`, in name order.
fn list_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .collect();
    paths.sort();
    for path in paths {
        if path.is_dir() && !path.is_symlink() {
            list_files(&path, files);
        } else {
            files.push(path);
        }
    }
}

/// Fingerprint of a build's outputs; `None` if one is missing.
fn driver_outputs(built: &BuiltDriver) -> Option<u64> {
    let sys = fs::read(&built.sys).ok()?;
    let pdb = fs::read(&built.pdb).ok()?;
    Some(fnv1a(fnv1a(FNV_OFFSET, &sys), &pdb))
}

fn stamp_text(inputs: u64, outputs: u64) -> String {
    format!("{inputs:016x} {outputs:016x}\n")
}

/// Whether the outputs in `out` were built from `inputs` and are unchanged.
fn stamp_matches(out: &Path, inputs: u64, built: &BuiltDriver) -> bool {
    let Ok(stamp) = fs::read_to_string(out.join(STAMP)) else {
        return false;
    };
    driver_outputs(built).is_some_and(|outputs| stamp == stamp_text(inputs, outputs))
}

fn write_stamp(out: &Path, inputs: u64, built: &BuiltDriver) -> Result<(), BuildError> {
    let outputs = driver_outputs(built).ok_or_else(|| BuildError::Io {
        what: "read the build at",
        path: built.sys.clone(),
        source: std::io::ErrorKind::NotFound.into(),
    })?;
    let stamp = out.join(STAMP);
    let call = STAGING.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let staging = out.join(format!(".{STAMP}.{}-{call}.partial", std::process::id()));
    fs::write(&staging, stamp_text(inputs, outputs)).map_err(io_error("write", &staging))?;
    fs::rename(&staging, &stamp).map_err(io_error("write", &stamp))
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
            eprintln!(
                "harness: building samplectl.exe for {} (MinGW; output in {}) ...",
                samplectl_triple(arch),
                samplectl_target_dir(arch).join("build.log").display()
            );
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
    let new = fs::read(from).map_err(io_error("read the build at", from))?;
    if fs::read(to).is_ok_and(|old| old == new) {
        return Ok(());
    }
    let name = to
        .file_name()
        .map_or_else(String::new, |name| name.to_string_lossy().into_owned());
    let call = STAGING.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
            // Progress goes to stderr: stdout may be a --json verdict.
            eprintln!("harness: installing the Rust target {triple} (rustup target add {triple})");
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The fingerprint follows every file under `driver/` and the workspace
    /// files, and the arguments: a changed source means a new build.
    #[test]
    fn inputs_fingerprint_follows_sources_and_arguments() {
        let root = std::env::temp_dir().join(format!("driver-inputs-{}", std::process::id()));
        let source = root.join("driver/src/portable");
        fs::create_dir_all(&source).unwrap();
        fs::write(source.join("mod.rs"), "fn a() {}").unwrap();
        fs::write(root.join("Cargo.lock"), "lock").unwrap();
        let first = driver_inputs(&root, &["--features", "portable"]);
        assert_eq!(first, driver_inputs(&root, &["--features", "portable"]));
        assert_ne!(
            first,
            driver_inputs(&root, &["--features", "portable,leak-on-unload"])
        );
        fs::write(source.join("mod.rs"), "fn b() {}").unwrap();
        let edited = driver_inputs(&root, &["--features", "portable"]);
        assert_ne!(first, edited);
        fs::write(root.join("Cargo.lock"), "lock2").unwrap();
        assert_ne!(edited, driver_inputs(&root, &["--features", "portable"]));
        fs::remove_dir_all(&root).unwrap();
    }

    /// A build whose inputs did not change is not handed to cargo again (the
    /// warm demo checks four), and an output changed since is rebuilt.
    #[test]
    fn unchanged_build_skips_cargo_and_changed_output_rebuilds() {
        let first = build(Arch::X64, false).unwrap();
        let log = workspace_root().join("target/portable/x64-clean/build.log");
        let logged = fs::metadata(&log).and_then(|meta| meta.modified()).unwrap();
        let again = build(Arch::X64, false).unwrap();
        assert_eq!(first.sys, again.sys);
        assert_eq!(
            logged,
            fs::metadata(&log).and_then(|meta| meta.modified()).unwrap(),
            "cargo ran again for an unchanged build"
        );
        // A stamp that no longer matches the outputs: cargo is asked again.
        let stamp = first.sys.with_file_name(STAMP);
        fs::write(&stamp, "0 0\n").unwrap();
        build(Arch::X64, false).unwrap();
        assert_ne!(
            logged,
            fs::metadata(&log).and_then(|meta| meta.modified()).unwrap()
        );
        assert_ne!(fs::read_to_string(&stamp).unwrap(), "0 0\n");
    }
}
