//! Issue 3: bad input ends in a clear one-line error with exit code 2, or in
//! a verdict; never a panic or a Python traceback. Includes a fuzz run over
//! mutations of the real Sample.sys.

use crate::common;

use std::path::Path;

use harness_core::arch::Arch;

fn assert_could_not_run(run: &common::Run, expect: &str) {
    run.cannot_judge(expect);
}

fn emulate(path: &Path) -> common::Run {
    common::emulate_json(path, &[])
}

#[test]
fn missing_file() {
    assert_could_not_run(
        &emulate(Path::new("/nonexistent/Sample.sys")),
        "no such file",
    );
}

#[test]
fn not_a_pe_file() {
    let dir = tempfile::tempdir().expect("dir");
    let text = dir.path().join("notes.sys");
    std::fs::write(&text, "just text").expect("write");
    assert_could_not_run(&emulate(&text), "not a PE image");
    // An ELF binary (the harness itself) is named for what it is.
    assert_could_not_run(
        &emulate(Path::new(env!("CARGO_BIN_EXE_harness"))),
        "not a PE image",
    );
}

/// A user-mode program is refused for what the kernel loader refuses in it:
/// its imports from user-mode DLLs (exit 6), not its console subsystem, which
/// the loader never reads (WRK `base/ntos/mm/sysload.c`: `MmLoadSystemImage`
/// checks the image with `MmCheckSystemImage`, maps it as an image section,
/// then binds its imports in `MiResolveImageReferences`).
#[test]
fn user_mode_exe_is_refused_for_its_imports() {
    let dir = tempfile::tempdir().expect("dir");
    let source = dir.path().join("hello.c");
    std::fs::write(&source, "int main(void) { return 0; }\n").expect("write");
    let exe = dir.path().join("hello.exe");
    let status = std::process::Command::new("x86_64-w64-mingw32-gcc")
        .arg("-o")
        .arg(&exe)
        .arg(&source)
        .status()
        .expect("mingw");
    assert!(status.success());
    let run = emulate(&exe);
    run.expect(harness_core::verdict::ExitCode::LoadRefused);
    assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.contains("a user-mode DLL"), "{}", run.stderr);
}

/// A driver linked with the console or GUI subsystem and kernel imports only
/// loads and runs as the same driver with the native subsystem does: the
/// loader does not look at the subsystem (above).
#[test]
fn console_or_gui_subsystem_driver_runs_like_a_native_one() {
    let dir = tempfile::tempdir().expect("dir");
    for arch in Arch::ALL {
        let native = common::c_driver_from("one_truth.c", "DEVICE_LINK", arch, dir.path());
        let expected = emulate(&native);
        expected.expect(harness_core::verdict::ExitCode::Clean);
        for subsystem in ["console", "windows"] {
            let out = dir.path().join(format!("{subsystem}_{arch}.sys"));
            let mut build = common::CBuild::new("one_truth.c", "DEVICE_LINK");
            build.libraries.push("hal");
            build.subsystem = subsystem;
            common::compile_c(&build, arch, &out);
            let image = harness_core::pe::PeImage::read(&out).expect("a PE image");
            assert_ne!(image.subsystem, harness_core::pe::SUBSYSTEM_NATIVE);
            let run = emulate(&out);
            run.expect(harness_core::verdict::ExitCode::Clean);
            let (mut got, mut want) = (run.verdict(), expected.verdict());
            got.driver.clear();
            want.driver.clear();
            assert_eq!(got.debug_output, want.debug_output, "{subsystem} {arch}");
            assert_eq!(got.stage, want.stage);
            assert_eq!(got.leaks, want.leaks);
        }
    }
}

#[test]
fn truncated_driver() {
    let built = common::driver(Arch::X64, false);
    let bytes = std::fs::read(&built.sys).expect("sys");
    let dir = tempfile::tempdir().expect("dir");
    for keep in [2, 64, 300, 1024] {
        let path = dir.path().join(format!("cut{keep}.sys"));
        std::fs::write(&path, &bytes[..keep]).expect("write");
        let run = emulate(&path);
        // Headers intact but sections cut off: the Windows loader refuses it
        // (exit 6); less than the headers is not an image at all (exit 2).
        let expected = if keep == 1024 { 6 } else { 2 };
        assert_eq!(run.code, expected, "{keep} bytes: {}", run.stderr);
        assert_eq!(run.stderr.trim().lines().count(), 1);
        if keep == 1024 {
            assert!(
                run.stderr.contains("ends beyond the file"),
                "{}",
                run.stderr
            );
        }
    }
}

#[test]
fn other_architecture_is_refused() {
    let built = common::driver(Arch::X64, false);
    let mut bytes = std::fs::read(&built.sys).expect("sys");
    let pe = usize::try_from(u32::from_le_bytes(bytes[0x3c..0x40].try_into().expect("4")))
        .expect("offset");
    bytes[pe + 4..pe + 6].copy_from_slice(&0xAA64_u16.to_le_bytes()); // ARM64
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("arm64.sys");
    std::fs::write(&path, bytes).expect("write");
    assert_could_not_run(&emulate(&path), "unsupported architecture (machine 0xaa64)");
}

#[test]
fn bad_options_are_one_line_errors() {
    let built = common::driver(Arch::X64, false);
    let path = built.sys.to_str().expect("path");
    common::harness(&["emulate", path, "--pool-hit-tag", "toolong"]).cannot_judge("bad pool tag");
    common::harness(&["emulate", path, "--os-version", "ten"]).cannot_judge("not a version");
    common::harness(&["emulate", path, "--no-such-option"]).cannot_judge("--no-such-option");
}

/// Mutates the real Sample.sys (x64 and x86) 300 times: bit flips, byte
/// runs, truncation and header fields. Every run must end in a verdict
/// (exit 0, 3 or 4, with JSON) or a clean one-line exit 2.
#[test]
fn fuzzed_drivers_end_in_a_verdict_or_a_clean_error() {
    const RUNS: usize = 300;
    let originals: Vec<Vec<u8>> = Arch::ALL
        .iter()
        .map(|arch| std::fs::read(common::driver(*arch, true).sys).expect("sys"))
        .collect();
    let dir = tempfile::tempdir().expect("dir");
    let outcomes = std::sync::Mutex::new([0_usize; 7]);
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                loop {
                    let case = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if case >= RUNS {
                        break;
                    }
                    let mut random = common::Random(
                        0x9E37_79B9_7F4A_7C15 ^ (u64::try_from(case).expect("case") + 1),
                    );
                    let mut bytes = originals[case % 2].clone();
                    match case % 4 {
                        0 => {
                            for _ in 0..=random.below(8) {
                                let at = random.below(bytes.len());
                                bytes[at] ^= 1 << random.below(8);
                            }
                        }
                        1 => {
                            let at = random.below(bytes.len());
                            let len = (1 + random.below(64)).min(bytes.len() - at);
                            let value = u8::try_from(random.below(256)).expect("byte");
                            bytes[at..at + len].fill(value);
                        }
                        2 => bytes.truncate(random.below(bytes.len())),
                        _ => {
                            // Header region: where the parsers are most exposed.
                            let at = random.below(0x400.min(bytes.len()));
                            bytes[at] = u8::try_from(random.below(256)).expect("byte");
                        }
                    }
                    let path = dir.path().join(format!("fuzz{case}.sys"));
                    std::fs::write(&path, &bytes).expect("write");
                    let run = common::emulate_json(
                        &path,
                        &["--max-instructions", "100000", "--timeout", "15"],
                    );
                    match run.code {
                        0 | 3 | 4 => {
                            // A verdict, deserialised into the harness's own type.
                            let verdict = run.verdict();
                            assert_eq!(
                                run.code,
                                i32::from(verdict.exit_code() as u8),
                                "case {case}"
                            );
                        }
                        2 | 6 => {
                            assert_eq!(
                                run.stderr.trim().lines().count(),
                                1,
                                "case {case}: {}",
                                run.stderr
                            );
                            assert!(
                                !run.stderr.contains("Traceback")
                                    && !run.stderr.contains("panicked"),
                                "case {case}: {}",
                                run.stderr
                            );
                        }
                        other => {
                            panic!("case {case}: exit {other}\n{}\n{}", run.stdout, run.stderr)
                        }
                    }
                    outcomes.lock().expect("lock")[usize::try_from(run.code).expect("code")] += 1;
                    let _ = std::fs::remove_file(&path);
                }
            });
        }
    });
    let outcomes = outcomes.into_inner().expect("lock");
    println!("fuzz outcomes by exit code (0..=6): {outcomes:?}");
    // The mutations must reach the emulator, not only the PE parser.
    assert!(
        outcomes[0] + outcomes[3] + outcomes[4] > RUNS / 10,
        "{outcomes:?}"
    );
}
