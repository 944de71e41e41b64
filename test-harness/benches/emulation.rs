//! Benchmark: wall times of whole `harness` processes, each against a
//! baseline measured in the same run.
//! Run: `cargo bench -p harness` (prints figures and ratios; asserts nothing).
//!
//! - one verdict on the leaky x64 Sample.sys: native engine against
//!   Speakeasy (goal: at least 20x faster, at most 25 ms) and Wine;
//! - the demo, warm (goal: at most 0.5 s; 0.98 s before the builds were
//!   fingerprinted instead of asked of cargo four times), against one
//!   Speakeasy run;
//! - an allocation-failure sweep (`--fail-each`) of a C driver with 30
//!   allocations: native against Speakeasy;
//! - every fault build (and the clean one) under verifier flags 0 (off), 0x1, 0x2,
//!   0x8 and 0xb, both arches: the total time of the native verdicts;
//! - the walkthrough's debugger session on the emulated machine
//!   (`harness kd --script`, goal: at most 100 ms), against one native verdict.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use harness_build::driver_build::Fault;
use harness_core::arch::Arch;

const RUNS: usize = 7;

fn harness(args: &[&str]) -> Duration {
    let started = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("harness runs");
    assert!(
        status.code().is_some_and(|code| code != 2),
        "harness {args:?} could not run"
    );
    started.elapsed()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn timed(runs: usize, args: &[&str]) -> Duration {
    median((0..runs).map(|_| harness(args)).collect())
}

fn line(label: &str, value: Duration, against: Option<(&str, Duration)>) {
    let seconds = value.as_secs_f64();
    match against {
        Some((name, baseline)) => {
            let ratio = baseline.as_secs_f64() / seconds;
            if ratio >= 1.0 {
                println!("{label:<52} {seconds:>8.4} s  = {ratio:.1}x faster than {name}");
            } else {
                println!("{label:<52} {seconds:>8.4} s  = {:.2}x {name}", 1.0 / ratio);
            }
        }
        None => println!("{label:<52} {seconds:>8.4} s"),
    }
}

/// A MinGW C driver with `count` allocations (tests/drivers/reliability.c).
fn many_allocations(count: u32, dir: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/drivers/reliability.c");
    let out = dir.join("alloc_many.sys");
    let status = Command::new("x86_64-w64-mingw32-gcc")
        .args(["-O1", "-ffreestanding", "-nostdlib", "-Wno-multichar"])
        .args(["-DVARIANT_ALLOC_MANY", &format!("-DALLOC_COUNT={count}")])
        .args(["-Wl,--subsystem,native", "-Wl,-e,DriverEntry", "-o"])
        .arg(&out)
        .arg(source)
        .arg("-lntoskrnl")
        .status()
        .expect("MinGW runs");
    assert!(status.success());
    out
}

/// Every fault (and the clean build) x verifier flag sets x arch, one
/// native verdict each, whole processes.
fn fault_matrix() {
    let mut matrix = Vec::new();
    for arch in Arch::ALL {
        for fault in std::iter::once(None).chain(Fault::ALL.map(Some)) {
            let built = harness_build::driver_build::build_fault(arch, fault).expect("build");
            matrix.push(built.sys);
        }
    }
    let flag_sets = ["0", "0x1", "0x2", "0x8", "0xb"];
    let started = Instant::now();
    for driver in &matrix {
        for flags in flag_sets {
            harness(&[
                "emulate",
                driver.to_str().expect("utf-8"),
                "--verifier-flags",
                flags,
            ]);
        }
    }
    line(
        &format!(
            "{} builds x {} flag sets, native (total)",
            matrix.len(),
            flag_sets.len()
        ),
        started.elapsed(),
        None,
    );
}

fn main() {
    let python = harness_engines::python::speakeasy_python().expect("Speakeasy provisioned");
    let leaky = harness_build::driver_build::build(Arch::X64, true)
        .expect("build")
        .sys;
    let path = leaky.to_str().expect("utf-8");

    // Baseline: starting Python and importing Speakeasy, the fixed cost of every Speakeasy run.
    let import = median(
        (0..RUNS)
            .map(|_| {
                let started = Instant::now();
                let status = Command::new(&python)
                    .args(["-c", "import speakeasy"])
                    .status()
                    .expect("python");
                assert!(status.success());
                started.elapsed()
            })
            .collect(),
    );
    line("python + import speakeasy (baseline)", import, None);
    let speakeasy = timed(RUNS, &["emulate", path, "--engine", "speakeasy"]);
    line(
        "one verdict, Speakeasy (x64 leak, whole process)",
        speakeasy,
        Some(("python + import", import)),
    );
    let native = timed(RUNS * 3, &["emulate", path, "--engine", "native"]);
    line(
        "one verdict, native (x64 leak, whole process)",
        native,
        Some(("Speakeasy", speakeasy)),
    );
    if Path::new("/usr/lib/wine/wine64").exists() {
        harness(&["emulate", path, "--engine", "wine"]); // first use may create the prefix
        let wine = timed(3, &["emulate", path, "--engine", "wine"]);
        line(
            "one verdict, Wine (x64 leak, whole process)",
            wine,
            Some(("Speakeasy", speakeasy)),
        );
    }

    fault_matrix();

    harness(&["demo"]); // builds the four variants once
    let demo = timed(3, &["demo"]);
    line(
        "the demo, warm (16 builds checked + 16 native verdicts)",
        demo,
        Some(("one Speakeasy verdict", speakeasy)),
    );

    let dir = tempfile::tempdir().expect("dir");
    let sweep_driver = many_allocations(30, dir.path());
    let sweep_path = sweep_driver.to_str().expect("utf-8");
    let speakeasy_sweep = timed(
        1,
        &[
            "emulate",
            sweep_path,
            "--fail-each",
            "--engine",
            "speakeasy",
        ],
    );
    line(
        "--fail-each over 30 allocations, Speakeasy (31 runs)",
        speakeasy_sweep,
        None,
    );
    let native_sweep = timed(
        RUNS,
        &["emulate", sweep_path, "--fail-each", "--engine", "native"],
    );
    line(
        "--fail-each over 30 allocations, native (31 runs)",
        native_sweep,
        Some(("Speakeasy", speakeasy_sweep)),
    );

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/kd/live-session.txt");
    let x86 = harness_build::driver_build::build(Arch::X86, true)
        .expect("build")
        .sys;
    let session = timed(
        RUNS,
        &[
            "kd",
            x86.to_str().expect("utf-8"),
            "--script",
            script.to_str().expect("utf-8"),
        ],
    );
    line(
        "harness kd --script docs/kd/live-session.txt (x86 leak; goal 100 ms)",
        session,
        Some(("one native verdict", native)),
    );
}
