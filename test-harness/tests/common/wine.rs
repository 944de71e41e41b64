//! Helpers of the Wine tests: one prefix for the engine's runs in cargo's target tmp dir, made
//! by `harness setup`; the harness run in it; the MinGW gap corpus.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use harness_engines::wine;

use crate::common::Run;

/// The engine's prefix for the tests: `<target>/tmp/wine-prefix`, kept
/// between test runs (made once, about 15 s; every run of the engine removes
/// what an earlier run left in it).
///
/// Every test that uses it has "wine" in its name: `scripts/linux.sh test`
/// runs those in a process of their own beside the others, and tests that
/// wait for the prefix to be idle must not see another process's runs.
pub fn prefix() -> &'static Path {
    static PREFIX: OnceLock<PathBuf> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let prefix = Path::new(env!("CARGO_TARGET_TMPDIR")).join("wine-prefix");
        let started = Instant::now();
        let setup = harness_with(&prefix, &[], &["setup"]);
        assert_eq!(setup.code, 0, "harness setup: {}", setup.stderr);
        assert_eq!(setup.stdout.lines().count(), 1, "{}", setup.stdout);
        println!(
            "harness setup (prefix {}): {:.1} s",
            prefix.display(),
            started.elapsed().as_secs_f64()
        );
        prefix
    })
}

/// Wine tests of one binary take turns: they share the prefix, and some
/// check that no process of it is left.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The harness binary with `HARNESS_WINE_PREFIX=<prefix>` and `env`.
pub fn command_with(prefix: &Path, env: &[(&str, &Path)], args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_harness"));
    command.args(args).env(wine::PREFIX_ENV_VAR, prefix);
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

fn to_run(output: &Output) -> Run {
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs the harness with `HARNESS_WINE_PREFIX=<prefix>` and `env`.
pub fn harness_with(prefix: &Path, env: &[(&str, &Path)], args: &[&str]) -> Run {
    to_run(
        &command_with(prefix, env, args)
            .output()
            .expect("harness binary runs"),
    )
}

/// `harness emulate <driver> --engine wine --json <extra...>` in the test prefix.
pub fn emulate(driver: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "emulate",
        driver.to_str().expect("utf-8 path"),
        "--engine",
        "wine",
        "--json",
    ];
    args.extend_from_slice(extra);
    harness_with(prefix(), &[], &args)
}

/// Whether 32-bit Wine is installed here (Debian's wine32:i386 puts the
/// 32-bit loader beside wine64).
pub fn wine32_installed() -> bool {
    Path::new("/usr/lib/wine/wine").is_file()
}

/// Import libraries for the modules `wine_gaps.c` imports that MinGW has
/// none for.
const GAP_IMPORTS: [(&str, &str); 4] = [
    ("WDFLDR.SYS", "WdfVersionBind"),
    ("fwpkclnt.sys", "FwpsCalloutRegister1"),
    ("WppRecorder.sys", "WppAutoLogStart"),
    ("NDIS.SYS", "NdisGetVersion"),
];

/// Compiles `tests/drivers/wine_gaps.c` with `-DVARIANT_<variant>` (x64) into
/// `dir` as `gap_<variant>.sys`.
pub fn gap_driver(variant: &str, dir: &Path) -> PathBuf {
    let mut libs = Vec::new();
    for (module, function) in GAP_IMPORTS {
        let stem = module.split('.').next().expect("a name");
        let def = dir.join(format!("{stem}.def"));
        std::fs::write(&def, format!("LIBRARY {module}\nEXPORTS\n{function}\n")).expect("def");
        let status = Command::new("x86_64-w64-mingw32-dlltool")
            .arg("-d")
            .arg(&def)
            .arg("-l")
            .arg(dir.join(format!("lib{stem}.a")))
            .status()
            .expect("dlltool runs (MinGW binutils)");
        assert!(status.success(), "dlltool for {module}");
        libs.push(format!("-l{stem}"));
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/drivers/wine_gaps.c");
    let out = dir.join(format!("gap_{}.sys", variant.to_ascii_lowercase()));
    let status = Command::new("x86_64-w64-mingw32-gcc")
        .args(["-O1", "-ffreestanding", "-nostdlib", "-Wno-multichar"])
        .arg(format!("-DVARIANT_{variant}"))
        .args(["-Wl,--subsystem,native", "-Wl,-e,DriverEntry", "-o"])
        .arg(&out)
        .arg(&source)
        .arg("-L")
        .arg(dir)
        .args(&libs)
        .arg("-lntoskrnl")
        .env("TMPDIR", dir)
        .status()
        .expect("x86_64-w64-mingw32-gcc runs; the README's setup installs MinGW");
    assert!(status.success(), "gcc failed for {variant}");
    out
}

/// Waits until no process of `prefix` runs and its lock is free (the
/// watchdog of a killed run holds it until it is done), at most `limit`.
pub fn wait_until_idle(prefix: &Path, limit: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    loop {
        let processes = wine::prefix_processes(prefix);
        let lock_free = std::fs::File::open(prefix.join(".harness-lock"))
            .is_err_and(|error| error.kind() == std::io::ErrorKind::NotFound)
            || std::fs::File::open(prefix.join(".harness-lock"))
                .is_ok_and(|file| file.try_lock().is_ok());
        if processes.is_empty() && lock_free {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            return Err(format!(
                "after {} s: processes {processes:?}, lock free: {lock_free}",
                limit.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Services named `HarnessTest_*` in the prefix's registry (no session may run).
pub fn harness_services(prefix: &Path) -> Vec<String> {
    wine::WineMachine::open(prefix)
        .expect("the test prefix")
        .harness_services()
}

/// The tracker's verdict on the events of an in-process Wine run of `driver`
/// (as `harness emulate` judges them, with the engine's default flags).
pub fn verdict(
    driver: &Path,
    image: &harness_core::pe::PeImage,
    events: &[harness_core::events::Event],
) -> harness_core::verdict::Verdict {
    let (base, size) = events
        .iter()
        .find_map(|event| match event {
            harness_core::events::Event::Load {
                image_base,
                image_size,
                ..
            } => Some((*image_base, *image_size)),
            _ => None,
        })
        .expect("a Load event");
    let context = harness_core::tracker::Context {
        driver: harness_core::file_name(driver),
        engine: harness_core::verdict::Engine::Wine,
        symbols: harness_core::symbols::Symbolizer::for_driver(driver, image, base, size),
        arch: image.arch.expect("a known architecture"),
        pool_hit_tag: None,
        verifier_flags: harness_core::verifier::VerifierFlags::default(),
    };
    harness_core::tracker::judge(events, context).expect("the tracker judges the run")
}
