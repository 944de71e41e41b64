//! Helpers shared by the integration tests: build the real drivers, run the
//! real `harness` binary, compile C drivers with MinGW.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::Command;

use harness::arch::Arch;
use harness::driver_build::{self, BuiltDriver};
use harness::verdict::{ExitCode, Verdict};

/// Builds (or reuses) a portable driver variant.
pub fn driver(arch: Arch, leak: bool) -> BuiltDriver {
    driver_build::build(arch, leak).unwrap_or_else(|failure| panic!("build failed: {failure}"))
}

/// What one `harness` run produced.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The `--json` verdict, as the harness's own type.
    pub fn verdict(&self) -> Verdict {
        serde_json::from_str(&self.stdout).unwrap_or_else(|error| {
            panic!(
                "not a verdict ({error}): {}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }

    /// Asserts the exit code, showing the output if it differs.
    pub fn expect(&self, code: ExitCode) -> &Self {
        assert_eq!(
            self.code,
            i32::from(code as u8),
            "stdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts "could not run or cannot judge": exit 2, one line on stderr
    /// containing `expect`, no panic or traceback.
    pub fn cannot_judge(&self, expect: &str) {
        self.expect(ExitCode::CannotJudge);
        assert_eq!(
            self.stderr.trim().lines().count(),
            1,
            "one line expected: {}",
            self.stderr
        );
        assert!(
            self.stderr.contains(expect),
            "{expect:?} not in {}",
            self.stderr
        );
        assert!(!self.stderr.contains("Traceback") && !self.stderr.contains("panicked"));
    }
}

/// Runs the harness binary with `args`.
pub fn harness(args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(args)
        .output()
        .expect("harness binary runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `harness emulate <driver> --json <extra...>`.
pub fn emulate_json(driver: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["emulate", driver.to_str().expect("utf-8 path"), "--json"];
    args.extend_from_slice(extra);
    harness(&args)
}

/// Compiles `tests/drivers/misbehaving.c` with `-DVARIANT_<variant>` into `dir`.
pub fn c_driver(variant: &str, arch: Arch, dir: &Path) -> PathBuf {
    c_driver_from("misbehaving.c", variant, arch, dir)
}

/// Compiles `tests/drivers/<source>` with `-DVARIANT_<variant>` into `dir`
/// (imports from ntoskrnl.exe and hal.dll).
pub fn c_driver_from(source: &str, variant: &str, arch: Arch, dir: &Path) -> PathBuf {
    let (compiler, entry) = match arch {
        Arch::X64 => ("x86_64-w64-mingw32-gcc", "DriverEntry"),
        Arch::X86 => ("i686-w64-mingw32-gcc", "_DriverEntry@8"),
    };
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/drivers")
        .join(source);
    let out = dir.join(format!("{}_{arch}.sys", variant.to_ascii_lowercase()));
    let status = Command::new(compiler)
        .args(["-O1", "-ffreestanding", "-nostdlib", "-Wno-multichar"])
        .arg(format!("-DVARIANT_{variant}"))
        .args(["-Wl,--subsystem,native", &format!("-Wl,-e,{entry}"), "-o"])
        .arg(&out)
        .arg(&source)
        .args(["-lntoskrnl", "-lhal"])
        .status()
        .unwrap_or_else(|error| {
            panic!("{compiler} not runnable ({error}); the README's setup installs MinGW")
        });
    assert!(status.success(), "{compiler} failed for {variant}");
    out
}
