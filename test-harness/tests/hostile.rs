//! The emulated machine under attack (issue 20): requests, images and
//! symbol files built to break the engines give Windows' answer or a
//! one-line "cannot judge", never a lost or invented verdict, never a
//! panic (the test binary's `harness` is a debug build: overflow checks on).

use crate::common;

use std::path::{Path, PathBuf};

use common::CBuild;
use harness_core::arch::Arch;
use harness_core::verdict::{ExitCode, Outcome};

/// Both emulators that run x86 and x64 drivers.
const ENGINES: [&str; 2] = ["native", "speakeasy"];

/// `tests/drivers/huge.c`, with ExAllocatePool2 imported from ntoskrnl.exe
/// (MinGW's import library predates it).
fn huge_driver(arch: Arch, dir: &Path) -> PathBuf {
    let out = dir.join(format!("huge_{arch}.sys"));
    let mut build = CBuild::new("huge.c", "HUGE");
    build
        .made_libraries
        .push(("ntoskrnl.exe", &["ExAllocatePool2@16"], false));
    common::compile_c(&build, arch, &out);
    out
}

/// Sizes near the top of SIZE_T get NULL, as on Windows: ExAllocatePoolWithTag
/// and ExAllocatePool2 both return NULL when the request cannot be
/// satisfied (MicrosoftDocs/windows-driver-docs-ddi, wdm/nf-wdm-exallocatepoolwithtag.md
/// and nf-wdm-exallocatepool2.md, "Return value"; the latter raises only
/// with POOL_FLAG_RAISE_ON_FAILURE, which the driver does not pass). The
/// driver frees what it got and fails DriverEntry if a huge request
/// succeeded, so only NULL every time gives a clean run.
#[test]
fn huge_pool_requests_get_null_on_every_engine() {
    let dir = tempfile::tempdir().expect("temp dir");
    for arch in Arch::ALL {
        let driver = huge_driver(arch, dir.path());
        for engine in ENGINES {
            let run = common::emulate_json(&driver, &["--engine", engine]);
            assert!(!run.stderr.contains("panicked"), "{engine} {arch}: {}", run.stderr);
            let verdict = run.expect(ExitCode::Clean).verdict();
            assert_eq!(verdict.outcome(), Outcome::Unloaded, "{engine} {arch}");
            let got: Vec<&str> = verdict
                .debug_output
                .iter()
                .filter(|line| line.starts_with("ExAllocatePool"))
                .map(String::as_str)
                .collect();
            assert_eq!(got.len(), 10, "{engine} {arch}: {:?}", verdict.debug_output);
            assert!(
                got.iter().all(|line| line.ends_with("-> NULL")),
                "{engine} {arch}: {got:?}"
            );
            // Ten huge requests failed; the ten small ones between them worked.
            assert_eq!(verdict.pool_stats.failed, 10, "{engine} {arch}");
            assert_eq!(verdict.pool_stats.succeeded, 10, "{engine} {arch}");
        }
    }
}
