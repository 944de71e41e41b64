//! Issue 3: drivers the project did not write in Rust (C, compiled here with
//! MinGW) are judged like Driver Verifier and the kernel would judge them.

mod common;

use harness::arch::Arch;
use serde_json::Value;

fn run(variant: &str, arch: Arch, extra: &[&str]) -> (i32, Value, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let driver = common::c_driver(variant, arch, dir.path());
    let run = common::emulate_json(&driver, extra);
    let verdict = if run.code == 2 {
        Value::Null
    } else {
        run.json()
    };
    (run.code, verdict, run.stderr)
}

fn multi_leak(arch: Arch) {
    let (code, verdict, stderr) = run("MULTI_LEAK", arch, &[]);
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(verdict["bugcheck"]["args"][0], 0x62);
    assert_eq!(verdict["bugcheck"]["args"][3], 3);
    let leaks: Vec<(String, String, u64)> = verdict["leaks"]
        .as_array()
        .expect("leaks")
        .iter()
        .map(|leak| {
            (
                leak["tag"].as_str().expect("tag").into(),
                leak["pool"].as_str().expect("pool").into(),
                common::num(&leak["bytes"]),
            )
        })
        .collect();
    assert_eq!(
        leaks,
        [
            ("Tag1".into(), "NonPagedPool".into(), 0x20),
            ("Tag2".into(), "PagedPool".into(), 0x40),
            // ExAllocatePool tags with 'None'; the verifier counts it as untagged.
            ("None".into(), "NonPagedPoolNx".into(), 0x10),
        ]
    );
    // No PDB: the exported DriverEntry names the call sites.
    for leak in verdict["leaks"].as_array().expect("leaks") {
        let caller = leak["caller"].as_str().expect("caller");
        assert!(caller.contains("!DriverEntry+0x"), "{caller}");
    }
    assert_eq!(verdict["pool_stats"]["no_tag"], 1);
    assert_eq!(verdict["pool_stats"]["attempted"], 4);
    // %wZ printed through the adapter's own formatter.
    let first = verdict["debug_output"][0].as_str().expect("line");
    assert!(
        first.starts_with("loading from \\Registry\\Machine\\System\\"),
        "{first}"
    );
}

#[test]
fn x64_c_driver_leaking_several_tags_and_pools() {
    multi_leak(Arch::X64);
}

#[test]
fn x86_c_driver_leaking_several_tags_and_pools() {
    multi_leak(Arch::X86);
}

#[test]
fn crash_is_reported_as_a_bugcheck_with_the_faulting_symbol() {
    for arch in Arch::ALL {
        let (code, verdict, stderr) = run("CRASH", arch, &[]);
        assert_eq!(code, 3, "{stderr}");
        assert_eq!(verdict["bugcheck"]["code"], 0x7E, "{arch}");
        assert_eq!(verdict["bugcheck"]["args"][0], 0xC000_0005_u32);
        assert_eq!(verdict["bugcheck"]["args"][1], verdict["fault"]["pc"]);
        assert_eq!(verdict["fault"]["accessed"], 0x10);
        let symbol = verdict["fault"]["symbol"].as_str().expect("symbol");
        assert!(symbol.contains("!DriverEntry+0x"), "{symbol}");
    }
}

#[test]
fn endless_loop_is_stopped_by_the_instruction_budget() {
    for arch in Arch::ALL {
        let (code, verdict, stderr) = run(
            "LOOP",
            arch,
            &["--max-instructions", "200000", "--timeout", "20"],
        );
        assert_eq!(code, 4, "{stderr}");
        assert_eq!(verdict["outcome"], "entry_did_not_return");
        assert!(verdict["entry_status"].is_null());
    }
}

#[test]
fn unsupported_api_is_named() {
    let (code, _, stderr) = run("UNSUPPORTED", Arch::X64, &[]);
    assert_eq!(code, 2);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("ntoskrnl.FsRtlIsNameInExpression"),
        "{stderr}"
    );
    assert!(stderr.contains("!DriverEntry+0x"), "{stderr}");
}

#[test]
fn driver_without_unload_routine_cannot_be_unloaded() {
    let (code, verdict, stderr) = run("NO_UNLOAD", Arch::X64, &[]);
    assert_eq!(code, 4, "{stderr}");
    assert_eq!(verdict["outcome"], "cannot_unload");
    assert_eq!(verdict["unloaded"], false);
    assert!(verdict["bugcheck"].is_null());
}

#[test]
fn double_free_bad_free_and_zero_allocation_are_verifier_violations() {
    for (variant, arg1) in [
        ("DOUBLE_FREE", 0x13),
        ("BAD_FREE", 0x10),
        ("ZERO_ALLOC", 0x00),
    ] {
        let (code, verdict, stderr) = run(variant, Arch::X86, &[]);
        assert_eq!(code, 3, "{variant}: {stderr}");
        assert_eq!(verdict["bugcheck"]["code"], 0xC4, "{variant}");
        assert_eq!(verdict["bugcheck"]["args"][0], arg1, "{variant}");
    }
    let (_, bad_free, _) = run("BAD_FREE", Arch::X64, &[]);
    assert_eq!(bad_free["bugcheck"]["args"][1], 0x1234_5670);
}
