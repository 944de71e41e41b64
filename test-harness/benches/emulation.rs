//! Benchmark: wall time of one emulated run (Speakeasy and Wine) and of the
//! whole demo, with ratios against baselines measured in the same run.
//! Run: `cargo bench -p harness` (prints figures; asserts nothing).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use harness::arch::Arch;

const RUNS: usize = 5;

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

fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

fn main() {
    let python = harness::engine::python::speakeasy_python().expect("Speakeasy provisioned");
    let leaky = harness::driver_build::build(Arch::X64, true)
        .expect("build")
        .sys;
    let path = leaky.to_str().expect("utf-8");

    // Baseline: starting Python and importing Speakeasy, the fixed cost of every run.
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
    let speakeasy = median((0..RUNS).map(|_| harness(&["emulate", path])).collect());
    println!(
        "python + import speakeasy (baseline)  {:>7.3} s",
        seconds(import)
    );
    println!(
        "one emulated run, Speakeasy (x64 leak) {:>7.3} s  = {:.2} x baseline",
        seconds(speakeasy),
        seconds(speakeasy) / seconds(import)
    );

    if Path::new("/usr/lib/wine/wine64").exists() {
        harness(&["emulate", path, "--engine", "wine"]); // first use creates the prefix
        let wine = median(
            (0..RUNS)
                .map(|_| harness(&["emulate", path, "--engine", "wine"]))
                .collect(),
        );
        println!(
            "one emulated run, Wine (x64 leak)      {:>7.3} s  = {:.2} x Speakeasy",
            seconds(wine),
            seconds(wine) / seconds(speakeasy)
        );
    }

    // The demo: four builds (cached after the first) and four emulations.
    let demo = harness(&["demo"]);
    println!(
        "whole demo (4 builds + 4 emulations)   {:>7.3} s  = {:.2} x one run",
        seconds(demo),
        seconds(demo) / seconds(speakeasy)
    );
}
