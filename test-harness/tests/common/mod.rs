//! Helpers shared by the integration tests: build the real drivers, run the
//! real `harness` binary, compile C drivers with MinGW.

pub mod wine;

use std::path::{Path, PathBuf};
use std::process::Command;

use harness_build::driver_build::{self, BuiltDriver};
use harness_core::arch::Arch;
use harness_core::verdict::{ExitCode, Verdict};

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

/// Runs the harness binary with `args` and `input` on stdin.
pub fn harness_with_stdin(args: &[&std::ffi::OsStr], input: &str) -> Run {
    use std::io::Write as _;
    let output = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())?;
            child.wait_with_output()
        })
        .expect("harness binary runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A small deterministic generator (xorshift), so that a failing case can
/// be replayed from its seed.
pub struct Random(pub u64);

impl Random {
    /// The next value.
    pub const fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value below `n` (0 for an `n` of 0).
    pub fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n.max(1)).expect("n")).expect("fits")
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
    CBuild::new("misbehaving.c", variant).build_in(arch, dir)
}

/// Compiles `tests/drivers/<source>` with `-DVARIANT_<variant>` into `dir`,
/// importing from ntoskrnl.exe and hal.dll.
pub fn c_driver_from(source: &str, variant: &str, arch: Arch, dir: &Path) -> PathBuf {
    let mut build = CBuild::new(source, variant);
    build.libraries.push("hal");
    build.build_in(arch, dir)
}

/// How to build one C test driver with MinGW.
pub struct CBuild<'a> {
    /// File under `tests/drivers/`.
    pub source: &'a str,
    /// `-DVARIANT_<variant>`.
    pub variant: &'a str,
    /// Other `-D` definitions (`ALLOC_COUNT=1000`).
    pub defines: Vec<String>,
    /// Import libraries made here with dlltool, for DLLs MinGW has none for:
    /// (DLL name, exports as x86 stdcall names such as `WdfVersionBind@16`),
    /// and whether the x86 import names keep their decoration.
    pub made_libraries: Vec<(&'a str, &'a [&'a str], bool)>,
    /// MinGW import libraries (`ntoskrnl`, `ndis`, `kernel32`).
    pub libraries: Vec<&'a str>,
    /// The PE subsystem, as `ld --subsystem` takes it (`native`).
    pub subsystem: &'a str,
}

impl<'a> CBuild<'a> {
    /// A build of `source` with `-DVARIANT_<variant>`, linked with ntoskrnl.
    pub fn new(source: &'a str, variant: &'a str) -> Self {
        Self {
            source,
            variant,
            defines: Vec::new(),
            made_libraries: Vec::new(),
            libraries: vec!["ntoskrnl"],
            subsystem: "native",
        }
    }

    /// Compiles it for `arch` into `dir` as `<variant>_<arch>.sys` (the
    /// variant in lower case).
    pub fn build_in(&self, arch: Arch, dir: &Path) -> PathBuf {
        let out = dir.join(format!("{}_{arch}.sys", self.variant.to_ascii_lowercase()));
        compile_c(self, arch, &out);
        out
    }
}

/// Compiles a C test driver into `out`.
pub fn compile_c(build: &CBuild<'_>, arch: Arch, out: &Path) {
    let (prefix, entry) = match arch {
        Arch::X64 => ("x86_64-w64-mingw32", "DriverEntry"),
        Arch::X86 => ("i686-w64-mingw32", "_DriverEntry@8"),
    };
    let compiler = format!("{prefix}-gcc");
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/drivers")
        .join(build.source);
    let dir = out.parent().expect("output directory");
    let mut made = Vec::new();
    for (index, (dll, exports, decorated)) in build.made_libraries.iter().enumerate() {
        let def = dir.join(format!("made{index}_{arch}.def"));
        let names: Vec<&str> = exports
            .iter()
            .map(|name| match arch {
                Arch::X64 => name.split('@').next().unwrap_or(name),
                Arch::X86 => name,
            })
            .collect();
        std::fs::write(
            &def,
            format!("LIBRARY {dll}\nEXPORTS\n{}\n", names.join("\n")),
        )
        .expect("write .def");
        let library = dir.join(format!("libmade{index}_{arch}.a"));
        let mut dlltool = Command::new(format!("{prefix}-dlltool"));
        if arch == Arch::X86 && !decorated {
            dlltool.arg("-k");
        }
        let status = dlltool
            .arg("-d")
            .arg(&def)
            .arg("-l")
            .arg(&library)
            .status()
            .expect("dlltool runs");
        assert!(status.success(), "dlltool failed for {dll}");
        made.push(library);
    }
    let status = Command::new(&compiler)
        .args(["-O1", "-ffreestanding", "-nostdlib", "-Wno-multichar"])
        .arg(format!("-DVARIANT_{}", build.variant))
        .args(build.defines.iter().map(|define| format!("-D{define}")))
        .arg(format!("-Wl,--subsystem,{}", build.subsystem))
        .args([&format!("-Wl,-e,{entry}"), "-o"])
        .arg(out)
        .arg(&source)
        .args(&made)
        .args(build.libraries.iter().map(|library| format!("-l{library}")))
        .status()
        .unwrap_or_else(|error| {
            panic!("{compiler} not runnable ({error}); the README's setup installs MinGW")
        });
    assert!(
        status.success(),
        "{compiler} failed for {} {}",
        build.source,
        build.variant
    );
}

/// A harness run with what it cost.
pub struct Measured {
    pub run: Run,
    /// Peak resident memory of the harness and every process it waited for
    /// (the engine), in KiB.
    pub peak_rss_kib: i64,
    /// Wall time.
    pub elapsed: std::time::Duration,
}

/// Starts `harness` as the child of a small launcher (Python: `fork`, then
/// `exec`) and reports its `wait4` usage.
///
/// Why not `wait4` on a direct child: `Command::spawn` uses `posix_spawn`,
/// whose child shares this process's memory until it execs, and Linux
/// carries that memory's high-water mark into the child's `ru_maxrss` at
/// exec. This test binary runs every test (and the native engine
/// in-process), so the harness would be charged with the test binary's
/// peak. A forked child of the small launcher starts from the launcher's
/// few MiB instead.
const MEASURE: &str = r#"
import os, signal, sys
out, argv = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    os.execv(argv[0], argv)
signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGKILL))
_, status, usage = os.wait4(pid, 0)
with open(out, "w") as file:
    file.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"#;

/// The interpreter itself (`sys.executable`), found once on this process's
/// PATH: a shim such as pyenv's would change the harness's PATH on the way,
/// and `env` may give the harness a PATH with a fake python3 first.
fn launcher_python() -> &'static Path {
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PYTHON.get_or_init(|| {
        let output = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 runs");
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
    })
}

/// Runs the harness binary with `args` (in `cwd`, with `env` changes),
/// killing it after `limit`; measures its peak memory with `wait4`.
pub fn harness_measured(
    args: &[&std::ffi::OsStr],
    cwd: Option<&Path>,
    env: &[(&str, Option<&std::ffi::OsStr>)],
    limit: std::time::Duration,
) -> Measured {
    use std::io::Read;
    let report = tempfile::NamedTempFile::new().expect("usage file");
    let python = launcher_python();
    let mut command = Command::new(python);
    command
        .args(["-c", MEASURE])
        .arg(report.path())
        .arg(env!("CARGO_BIN_EXE_harness"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    for (name, value) in env {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    let started = std::time::Instant::now();
    let mut child = command.spawn().expect("the launcher starts");
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let err = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes);
        bytes
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > limit {
            // SAFETY: pid is our own, unreaped child; SIGTERM makes the
            // launcher kill the harness.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let _ = child.wait();
            panic!("harness {args:?} still running after {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let elapsed = started.elapsed();
    // The launcher exits with the harness's code, a signal as a shell
    // reports it (an aborting panic: 134).
    let code = status.code().unwrap_or(-1);
    let peak_rss_kib = std::fs::read_to_string(report.path())
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or_else(|| panic!("no usage from the launcher (exit {code})"));
    Measured {
        run: Run {
            code,
            stdout: String::from_utf8_lossy(&out.join().expect("stdout")).into_owned(),
            stderr: String::from_utf8_lossy(&err.join().expect("stderr")).into_owned(),
        },
        peak_rss_kib,
        elapsed,
    }
}
