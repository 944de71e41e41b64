//! Issue 5: real debugger output, parsed into the same Verdict as emulation.
//! Fixtures are real WinDbg/kd text (sources in fixtures/kd/README.md).

mod common;

use std::path::Path;

use harness::arch::Arch;
use harness::nt::PoolType;
use harness::verdict::{Engine, ExitCode, Verdict};

fn analyze(fixture: &str) -> (i32, Verdict) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(fixture);
    let run = common::harness(&["analyze", path.to_str().expect("path"), "--json"]);
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    (run.code, run.verdict())
}

fn args(verdict: &Verdict) -> [u64; 4] {
    verdict.bugcheck.as_ref().expect("bug check").args
}

const VIOLATION: i32 = ExitCode::Violation as i32;

#[test]
fn walkthrough_log_gives_the_seed_verdict() {
    let (code, verdict) = analyze("walkthrough-win7-x86.txt");
    assert_eq!(code, VIOLATION);
    assert_eq!(verdict.engine, Engine::Kd);
    assert_eq!(verdict.driver, "Sample.sys");
    assert_eq!(verdict.arch, Some(Arch::X86));
    assert_eq!(verdict.bugcheck.as_ref().map(|b| b.code), Some(0xC4));
    // x86: 32-bit values, although BUGCHECK_P2 prints them sign-extended.
    assert_eq!(args(&verdict), [0x62, 0x86a8_4ebc, 0x86a2_d4f8, 1]);
    let [leak] = verdict.leaks.as_slice() else {
        panic!("one leak: {:?}", verdict.leaks)
    };
    assert_eq!(leak.bytes, 0x70);
    assert_eq!(leak.tag, "abcd");
    assert_eq!(leak.pool, PoolType::PagedPool);
    assert_eq!(leak.caller, "Sample!DriverEntry+0x27");
    assert_eq!(leak.caller_address, Some(0xa05c_1047));
    assert_eq!(leak.address, 0x8649_1d10);
    assert_eq!(verdict.pool_stats.attempted, 3);
    assert_eq!(verdict.pool_stats.current_paged.1, 0x70);
}

#[test]
fn x64_analyze_arguments() {
    let (code, verdict) = analyze("kd/ebpf-2197-analyze-x64.txt");
    assert_eq!(code, VIOLATION);
    assert_eq!(verdict.arch, Some(Arch::X64));
    assert_eq!(
        args(&verdict),
        [0x62, 0xffff_e708_861a_eea8, 0xffff_e708_8602_d8a0, 3]
    );
    assert_eq!(
        verdict.driver, "unknown",
        "the !verifier hint is not a driver name"
    );
}

#[test]
fn old_bugcheck_str_form_with_image_name() {
    let (code, verdict) = analyze("kd/ovs-50-old-format-x64.txt");
    assert_eq!(code, VIOLATION);
    assert_eq!(verdict.driver, "OVSExt.sys");
    assert_eq!(
        args(&verdict),
        [0x62, 0xffff_e000_01b7_5978, 0xffff_e000_01bd_56b0, 5]
    );
}

#[test]
fn fatal_system_error_banner_only() {
    let (code, verdict) = analyze("kd/ebpf-392-banner-x64.txt");
    assert_eq!(code, VIOLATION);
    assert_eq!(verdict.driver, "ebpfcore.sys");
    assert_eq!(
        args(&verdict),
        [0x62, 0xffff_bf89_6573_51d0, 0xffff_bf89_6579_d230, 2]
    );
}

#[test]
fn verifier_listing_with_caller_address_header() {
    let (code, verdict) = analyze("kd/ebpf-1908-verifier3-x64.txt");
    // No bug check in this excerpt, but an allocation outstanding after unload.
    assert_eq!(code, VIOLATION);
    assert!(verdict.bugcheck.is_none());
    assert_eq!(verdict.driver, "ebpfcore.sys");
    assert!(verdict.unloaded());
    let [leak] = verdict.leaks.as_slice() else {
        panic!("one leak: {:?}", verdict.leaks)
    };
    assert_eq!(leak.address, 0xffff_cb84_3b87_aff0);
    assert_eq!(leak.bytes, 4);
    assert_eq!(leak.tag, "ebpf");
    assert_eq!(leak.pool, PoolType::NonPagedPool);
    assert_eq!(leak.caller, "ebpfcore!ebpf_allocate+0x21");
}

#[test]
fn table_header_pasted_onto_the_heading_line() {
    let (code, verdict) = analyze("kd/ebpf-2092-wrapped-table-x64.txt");
    // No bug check and no sign of an unload: the driver is still loaded, and
    // the listed allocations are outstanding, not leaked (yet).
    assert_eq!(code, ExitCode::StillLoaded as i32);
    assert_eq!(verdict.outcome(), harness::verdict::Outcome::StillLoaded);
    assert_eq!(
        verdict.leaks.len(),
        4,
        "the `du` lines after the table are not rows"
    );
    assert!(
        verdict
            .leaks
            .iter()
            .all(|leak| leak.tag == "entv" && leak.bytes == 0xb2)
    );
}

#[test]
fn other_subcodes_keep_their_meaning() {
    let (_, zero) = analyze("kd/ebpf-1115-zero-alloc-x64.txt");
    assert_eq!(args(&zero), [0, 0, 0x200, 0]);
    assert_eq!(
        zero.bugcheck.as_ref().map(|b| b.description.as_str()),
        Some("caller is trying to allocate zero bytes")
    );
    let (_, bad_free) = analyze("kd/ovs-91-bad-free-x64.txt");
    assert_eq!(args(&bad_free)[0], 0x10);
}

/// The emulated leaky x86 build and the walkthrough's real log agree on
/// what matters: the bug check, its Arg1 and Arg4, and the leaked tag.
#[test]
fn emulation_and_the_real_debugger_agree() {
    let (_, real) = analyze("walkthrough-win7-x86.txt");
    let built = common::driver(Arch::X86, true);
    let emulated = common::emulate_json(&built.sys, &[]).verdict();
    for verdict in [&real, &emulated] {
        let bugcheck = verdict.bugcheck.as_ref().expect("bug check");
        assert_eq!(
            (bugcheck.code, bugcheck.args[0], bugcheck.args[3]),
            (0xC4, 0x62, 1)
        );
        assert_eq!(verdict.leaks[0].tag, "abcd");
        assert_eq!(verdict.leaks[0].pool, PoolType::PagedPool);
        assert!(verdict.leaks[0].caller.starts_with("Sample!DriverEntry+0x"));
    }
}

#[test]
fn unreadable_or_unrelated_files_are_one_line_errors() {
    common::harness(&["analyze", "/nonexistent/kd.txt"]).cannot_judge("no such file");
    common::harness(&[
        "analyze",
        concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
    ])
    .cannot_judge("no bug check");
}
