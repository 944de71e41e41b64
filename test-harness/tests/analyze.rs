//! Issue 5: real debugger output, parsed into the same Verdict as emulation.
//! Fixtures are real WinDbg/kd text (sources in fixtures/kd/README.md).
//! Where a test changes a fixture (quotes it, re-encodes it, pastes it
//! twice), the change is made here in code, on the real text.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use harness_core::arch::Arch;
use harness_core::nt::PoolType;
use harness_core::verdict::{BugCheck, Engine, ExitCode, Leak, Outcome, Stage, Verdict};
use harness_kd_text as kd;

fn fixture_path(fixture: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(fixture)
}

fn fixture(fixture: &str) -> String {
    std::fs::read_to_string(fixture_path(fixture)).expect("fixture")
}

/// `harness analyze <path> --json`: the exit code and the verdict.
fn analyze_path(path: &Path) -> (i32, Verdict) {
    let run = common::harness(&["analyze", path.to_str().expect("path"), "--json"]);
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    (run.code, run.verdict())
}

fn analyze(fixture: &str) -> (i32, Verdict) {
    analyze_path(&fixture_path(fixture))
}

/// `harness analyze` on bytes written to a temporary file.
fn analyze_bytes(bytes: &[u8]) -> (i32, Verdict) {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("kd.txt");
    std::fs::write(&path, bytes).expect("write");
    analyze_path(&path)
}

const fn args(verdict: &Verdict) -> [u64; 4] {
    verdict.bugcheck.as_ref().expect("bug check").args
}

const VIOLATION: i32 = ExitCode::Violation as i32;
const STILL_LOADED: i32 = ExitCode::StillLoaded as i32;

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
    assert!(verdict.verifier);
    assert!(verdict.notes.is_empty(), "{:?}", verdict.notes);
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
    // The debugger printed the banner twice: one crash, no "pasted twice" note.
    assert!(!verdict.notes.iter().any(|note| note.contains("times")));
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
    assert_eq!(code, STILL_LOADED);
    assert_eq!(verdict.outcome(), Outcome::StillLoaded);
    assert_eq!(verdict.stage, Stage::Loaded);
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
    // No line names the driver; its allocations' callers do.
    assert_eq!(verdict.driver, "eBPFCore.sys");
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

/// Windows 7's `!verifier 0xf`: the `Entry State NonPagedPool PagedPool
/// Module` list and `PoolAddress SizeInBytes Tag CallersAddress` tables of
/// two drivers, both loaded.
#[test]
fn windows_7_verifier_format_keeps_drivers_apart() {
    let (code, verdict) = analyze("kd/msdocs-verifier-0xf-win7-x64.txt");
    assert_eq!(code, STILL_LOADED, "loaded drivers are never judged clean");
    assert_eq!(verdict.outcome(), Outcome::StillLoaded);
    assert_eq!(verdict.driver, "videoprt.sys");
    assert_eq!(verdict.arch, Some(Arch::X64));
    assert!(verdict.verifier);
    assert_eq!(verdict.leaks.len(), 3);
    assert!(
        verdict.leaks.iter().all(|leak| leak.tag == "Vprt"),
        "usbport's rows are its own"
    );
    let first = &verdict.leaks[0];
    assert_eq!((first.address, first.bytes), (0xffff_f980_0157_efc0, 0x3c));
    assert_eq!(first.caller_address, Some(0xffff_f880_02c6_2963));
    assert!(
        verdict
            .notes
            .iter()
            .any(|note| note.contains("usbport.sys"))
    );
    assert_eq!(verdict.pool_stats.current_nonpaged, (0xe3, 0x46110));

    // Derived: the same output with the command naming usbport.sys.
    let text = fixture("kd/msdocs-verifier-0xf-win7-x64.txt")
        .replace("!verifier 0xf", "!verifier 0xf usbport.sys");
    let (_, usbport) = analyze_bytes(text.as_bytes());
    assert_eq!(usbport.driver, "usbport.sys");
    assert!(usbport.leaks.iter().all(|leak| leak.tag == "usbp"));
    assert!(
        usbport
            .notes
            .iter()
            .any(|note| note.contains("videoprt.sys"))
    );
}

/// A Windows 7 module list and a `kb` stack name the driver; the verify
/// level (0x800) says pool tracking was off.
#[test]
fn driver_from_module_list_and_stack_and_a_level_without_pool_tracking() {
    let (code, verdict) = analyze("kd/msdocs-misc-checks-win7-x86.txt");
    assert_eq!(code, VIOLATION);
    assert_eq!(verdict.driver, "buggy.sys");
    assert_eq!(verdict.arch, Some(Arch::X86));
    assert_eq!(args(&verdict), [0xD2, 0x9655_D4A8, 0x9655_D468, 0xB0]);
    assert!(!verdict.verifier, "level 0x800 has no pool tracking");
    assert!(verdict.notes.iter().any(|note| note.contains("0x800")));
    assert_eq!(verdict.stage, Stage::Loaded);
}

/// Microsoft's 0x62 walkthrough: an x86 target, a `MODULE:` line that still
/// says `(Loaded)`, and a command spelling the driver `Mydriver.sys`.
#[test]
fn leak_at_unload_on_windows_8_x86() {
    let (code, verdict) = analyze("kd/msdocs-leak-0x62-win8-x86.txt");
    assert_eq!(code, VIOLATION);
    assert_eq!(verdict.driver, "MyDriver.sys");
    assert_eq!(verdict.arch, Some(Arch::X86));
    assert_eq!(args(&verdict), [0x62, 0x9707_712c, 0x9c1f_af70, 3]);
    assert!(verdict.unloaded(), "0x62 is raised while the image unloads");
    let tags: Vec<&str> = verdict.leaks.iter().map(|leak| leak.tag.as_str()).collect();
    assert_eq!(tags, ["VMdl", "mdrv", "Vfwi"]);
    assert!(
        verdict
            .leaks
            .iter()
            .all(|leak| leak.pool == PoolType::NonPagedPool)
    );
    assert_eq!(verdict.leaks[1].bytes, 0x1008);
    assert_eq!(verdict.leaks[2].caller, "MyDriver!GetNecessaryObjects");
    assert!(
        !verdict.notes.iter().any(|note| note.contains("Arg4")),
        "Arg4 and the listing agree: {:?}",
        verdict.notes
    );
}

/// A documentation page: banner, `!analyze -v` and `STACK_TEXT` in separate
/// fenced blocks with prose between them.
#[test]
fn banner_and_analysis_in_separate_blocks() {
    let (code, verdict) = analyze("kd/msdocs-ddi-rule-x64.txt");
    assert_eq!(code, VIOLATION);
    assert_eq!(args(&verdict), [0x20005, 0xffff_f880_00e1_6f50, 0, 0]);
    assert_eq!(verdict.driver, "MyDriver.sys");
    assert_eq!(verdict.arch, Some(Arch::X64));
    assert!(verdict.notes.is_empty(), "{:?}", verdict.notes);
}

/// A blog's copy: lines wrapped at 80 columns, no title, fields run
/// together, the bucket string cut after `0xc4_`, non-ASCII text after it.
#[test]
fn blog_wrapped_text_without_a_title() {
    let (code, verdict) = analyze("kd/idebug-blog-wrapped-x64.txt");
    assert_eq!(code, VIOLATION);
    assert_eq!(
        args(&verdict),
        [0x62, 0xffff_fadf_cebc_e290, 0xffff_fadf_cebc_e1f0, 4]
    );
    assert_eq!(verdict.bugcheck.as_ref().map(|b| b.code), Some(0xC4));
    assert_eq!(verdict.driver, "usbser.sys");
    assert!(verdict.unloaded());
    assert!(
        verdict
            .notes
            .iter()
            .any(|note| note.contains("Arg4 says 4"))
    );

    // Derived: without the bucket string, Arg1's text still means 0xC4.
    let text = fixture("kd/idebug-blog-wrapped-x64.txt");
    let no_bucket = text.replace("BUGCHECK_STR: 0xc4_", "");
    let (_, verdict) = analyze_bytes(no_bucket.as_bytes());
    assert_eq!(verdict.bugcheck.as_ref().map(|b| b.code), Some(0xC4));
    // Derived: with neither, nothing gives the code, and the harness says so.
    let nothing = no_bucket.replace(
        "A driver has forgotten to free its pool allocations prior t",
        "x",
    );
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("kd.txt");
    std::fs::write(&path, nothing).expect("write");
    common::harness(&["analyze", path.to_str().expect("path")]).cannot_judge("no bug-check code");
}

/// A 32-bit-wide print of an x64 target's arguments: the build string wins.
#[test]
fn stated_platform_outranks_printed_width() {
    let (code, verdict) = analyze("kd/ddimon-13-short-args-x64.txt");
    assert_eq!(code, VIOLATION);
    assert_eq!(verdict.arch, Some(Arch::X64));
    assert_eq!(args(&verdict), [0x91, 2, 0x018e_9b60, 0]);
    assert!(verdict.notes.iter().any(|note| note.contains("amd64fre")));
    assert!(
        verdict
            .bugcheck
            .as_ref()
            .is_some_and(|b| b.description.contains("KeExpandKernelStackAndCallout")),
        "Arg1's text goes on over indented lines"
    );
}

/// Markdown italics around the title, a backtick before the prompt, and
/// the driver only in `module!symbol` frames.
#[test]
fn driver_from_stack_frames_under_markdown_emphasis() {
    let (code, verdict) = analyze("kd/openzfs-243-italic-title-x64.txt");
    assert_eq!(code, VIOLATION);
    let bugcheck = verdict.bugcheck.as_ref().expect("bug check");
    assert_eq!(bugcheck.code, 0x3B);
    assert_eq!(bugcheck.name, "SYSTEM_SERVICE_EXCEPTION");
    assert_eq!(
        bugcheck.args,
        [0x8000_0003, 0xffff_f803_8025_53a2, 0xffff_9780_9fbd_ee60, 0]
    );
    assert_eq!(verdict.driver, "ZFSin.sys", "nt frames are skipped");
    assert!(!verdict.verifier);
}

/// `.bugcheck`'s form, and frames with no symbols (`PROCMON23+0x1285`).
#[test]
fn dot_bugcheck_and_module_offset_frames() {
    let (code, verdict) = analyze("kd/sysinternals-113-dot-bugcheck-x64.txt");
    assert_eq!(code, VIOLATION);
    assert_eq!(verdict.bugcheck.as_ref().map(|b| b.code), Some(0x50));
    assert_eq!(
        args(&verdict),
        [0xffff_b288_4020_43fa, 0, 0xffff_f80c_4265_1285, 2]
    );
    assert_eq!(verdict.driver, "PROCMON23.sys");
}

/// Two debuggers' `!analyze -v` of one dump, one incomplete, with duplicated
/// `Arg3`/`Arg4` lines: one crash, reported once, from the complete copy.
#[test]
fn one_dump_analysed_twice() {
    let (code, verdict) = analyze("kd/windbg-feedback-17-two-debuggers-x64.txt");
    assert_eq!(code, VIOLATION);
    let bugcheck = verdict.bugcheck.as_ref().expect("bug check");
    assert_eq!(bugcheck.code, 0x19C);
    assert_eq!(bugcheck.name, "WIN32K_POWER_WATCHDOG_TIMEOUT");
    assert_eq!(bugcheck.args, [0x50, 0xffff_b58f_3dd2_4080, 0, 0]);
    let copies = verdict
        .notes
        .iter()
        .filter(|note| note.contains("appears 2 times"))
        .count();
    assert_eq!(copies, 1, "{:?}", verdict.notes);
    assert!(
        !verdict
            .notes
            .iter()
            .any(|note| note.contains("more than one"))
    );
}

/// Derived: the walkthrough pasted twice is the walkthrough once, with a note.
#[test]
fn a_log_pasted_twice_is_read_once() {
    let text = fixture("walkthrough-win7-x86.txt");
    let (code, twice) = analyze_bytes(format!("{text}\n{text}").as_bytes());
    let (_, once) = analyze("walkthrough-win7-x86.txt");
    assert_eq!(code, VIOLATION);
    assert_eq!(
        twice.leaks, once.leaks,
        "Arg4 says 1 and one leak is listed"
    );
    assert_eq!(twice.bugcheck, once.bugcheck);
    assert!(
        twice
            .notes
            .iter()
            .any(|note| note.contains("appears 2 times"))
    );
}

/// Derived: two different crashes; the last complete one is judged and the
/// other is named. Its leak listing stays with it.
#[test]
fn two_crashes_are_not_merged() {
    let walkthrough = fixture("walkthrough-win7-x86.txt");
    let bad_free = fixture("kd/ovs-91-bad-free-x64.txt");
    let (_, verdict) = analyze_bytes(format!("{bad_free}\n{walkthrough}").as_bytes());
    assert_eq!(args(&verdict)[0], 0x62);
    assert_eq!(verdict.leaks.len(), 1);
    assert!(verdict.notes.iter().any(|note| note.contains("0xC4 (0x10")));
    let (_, verdict) = analyze_bytes(format!("{walkthrough}\n{bad_free}").as_bytes());
    assert_eq!(args(&verdict)[0], 0x10);
    assert!(
        verdict.leaks.is_empty(),
        "Sample.sys's leak belongs to the other crash"
    );
    assert!(verdict.notes.iter().any(|note| note.contains("0xC4 (0x62")));
}

/// Derived: the walkthrough with its banner's code changed. `!analyze`
/// wins, and the note says what the banner said.
#[test]
fn a_banner_that_disagrees_with_analyze() {
    let text = fixture("walkthrough-win7-x86.txt").replace(
        "*** Fatal System Error: 0x000000c4",
        "*** Fatal System Error: 0x000000d1",
    );
    let (code, verdict) = analyze_bytes(text.as_bytes());
    assert_eq!(code, VIOLATION);
    assert_eq!(verdict.bugcheck.as_ref().map(|b| b.code), Some(0xC4));
    assert!(
        verdict
            .notes
            .iter()
            .any(|note| note.contains("banner says bug check 0xD1")),
        "{:?}",
        verdict.notes
    );
    assert_eq!(verdict.leaks.len(), 1);
}

/// How a paste changes one line.
type Wrap = fn(&str) -> String;

/// Derived: the way people paste: every line quoted (`> `, `> > `), every
/// line in backticks, the whole in a fence. Same verdict each time.
#[test]
fn paste_forms_give_the_same_verdict() {
    let forms: [(&str, Wrap); 4] = [
        ("quoted", |line| format!("> {line}")),
        ("quoted twice", |line| format!("> > {line}")),
        ("backticks", |line| {
            if line.is_empty() {
                String::new()
            } else {
                format!("`{line}`")
            }
        }),
        ("list", |line| {
            if line.starts_with("Arg") {
                format!("- {line}")
            } else {
                line.to_owned()
            }
        }),
    ];
    for fixture_name in [
        "walkthrough-win7-x86.txt",
        "kd/ebpf-2197-analyze-x64.txt",
        "kd/openzfs-243-italic-title-x64.txt",
    ] {
        let text = fixture(fixture_name);
        let (_, plain) = analyze(fixture_name);
        for (form, wrap) in forms {
            let pasted: String = text.lines().map(|line| wrap(line) + "\n").collect();
            let (_, verdict) = analyze_bytes(pasted.as_bytes());
            assert_eq!(verdict, plain, "{fixture_name} {form}");
        }
        let fenced = format!("Here is the output:\n\n```text\n{text}\n```\n");
        assert_eq!(
            analyze_bytes(fenced.as_bytes()).1,
            plain,
            "{fixture_name} fenced"
        );
    }
}

/// Derived: the same texts as UTF-16 (LE/BE, with and without a BOM) and
/// with a UTF-8 BOM. The openzfs text's first line is its only title, so a
/// BOM that hid it would lose the bug check.
#[test]
fn encodings_give_the_same_verdict() {
    for fixture_name in [
        "walkthrough-win7-x86.txt",
        "kd/openzfs-243-italic-title-x64.txt",
    ] {
        let text = fixture(fixture_name);
        let (_, plain) = analyze(fixture_name);
        let le: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let be: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
        let encodings = [
            (
                "UTF-8 BOM",
                [b"\xEF\xBB\xBF".as_slice(), text.as_bytes()].concat(),
            ),
            ("UTF-16 LE BOM", [[0xFF, 0xFE].as_slice(), &le].concat()),
            ("UTF-16 LE", le.clone()),
            ("UTF-16 BE BOM", [[0xFE, 0xFF].as_slice(), &be].concat()),
            ("UTF-16 BE", be.clone()),
            ("CRLF", text.replace('\n', "\r\n").into_bytes()),
        ];
        for (name, bytes) in encodings {
            let (code, verdict) = analyze_bytes(&bytes);
            assert_eq!(code, VIOLATION, "{fixture_name} {name}");
            assert_eq!(verdict, plain, "{fixture_name} {name}");
        }
    }
}

#[test]
fn crash_dumps_are_refused_by_name() {
    let dir = tempfile::tempdir().expect("dir");
    let dump = dir.path().join("MEMORY.DMP");
    std::fs::write(&dump, b"PAGEDU64\x0f\x00\x00\x00").expect("write");
    common::harness(&["analyze", dump.to_str().expect("path")]).cannot_judge("kernel memory dump");
}

/// The report's title claims pool tracking only when the text shows it.
#[test]
fn report_title_claims_the_verifier_only_when_shown() {
    for (fixture_name, verifier) in [
        ("walkthrough-win7-x86.txt", true),
        ("kd/openzfs-243-italic-title-x64.txt", false),
        ("kd/msdocs-misc-checks-win7-x86.txt", false),
    ] {
        let path = fixture_path(fixture_name);
        let run = common::harness(&["analyze", path.to_str().expect("path")]);
        let title = run.stdout.lines().next().unwrap_or_default();
        assert_eq!(
            title.contains("under Driver Verifier pool tracking"),
            verifier,
            "{fixture_name}: {title}"
        );
    }
}

/// render.rs prints the x64 banner with 16-digit arguments, exactly as the
/// real x64 banners in the fixtures show them.
#[test]
fn x64_banner_as_the_debugger_prints_it() {
    for (fixture_name, code, bug_args) in [
        (
            "kd/ebpf-392-banner-x64.txt",
            0xC4,
            [0x62, 0xffff_bf89_6573_51d0, 0xffff_bf89_6579_d230, 2],
        ),
        (
            "kd/msdocs-ddi-rule-x64.txt",
            0xC4,
            [0x20005, 0xffff_f880_00e1_6f50, 0, 0],
        ),
    ] {
        let verdict = Verdict::new("x.sys", Engine::Kd, Some(Arch::X64));
        let bugcheck = BugCheck::new(code, bug_args);
        let rendered = harness_core::render::analyze(&bugcheck, &verdict, Arch::X64);
        let banner: Vec<&str> = rendered.lines().take(2).collect();
        let real = fixture(fixture_name);
        let position = real
            .lines()
            .collect::<Vec<_>>()
            .windows(2)
            .position(|pair| pair == banner.as_slice());
        assert!(position.is_some(), "{banner:?} not in {fixture_name}");
    }
}

fn leak(address: u64, bytes: u64, caller: &str, caller_address: u64) -> Leak {
    Leak {
        address,
        bytes,
        tag: "abcd".into(),
        pool: PoolType::PagedPool,
        caller: caller.into(),
        caller_address: Some(caller_address),
    }
}

/// Verdicts as the harness produces them, x86 and x64, leaky and clean.
fn own_verdicts() -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    for arch in Arch::ALL {
        let (address, name_arg, caller_address) = match arch {
            Arch::X64 => (
                0xffff_a50f_2c3e_1000,
                0xffff_a50f_2c3e_0f00,
                0xffff_f806_1a2b_102a,
            ),
            Arch::X86 => (0x9c8e_1000, 0x9c8e_0f00, 0xa05c_1021),
        };
        let mut leaky = Verdict::new("Sample.sys", Engine::Speakeasy, Some(arch));
        leaky.stage = Stage::Unloaded;
        leaky.bugcheck = Some(BugCheck::new(0xC4, [0x62, name_arg, 0, 1]));
        leaky.leaks = vec![leak(
            address,
            0x74,
            "Sample!DriverEntry+0x2a",
            caller_address,
        )];
        leaky.pool_stats.attempted = 1;
        verdicts.push(leaky.clone());

        let mut clean = Verdict::new("Sample.sys", Engine::Speakeasy, Some(arch));
        clean.stage = Stage::Unloaded;
        verdicts.push(clean);

        let mut outstanding = Verdict::new("Sample.sys", Engine::Kd, Some(arch));
        outstanding.stage = Stage::Loaded;
        outstanding.verifier = true;
        outstanding.leaks = vec![
            leak(address, 0x6c, "Sample!DriverEntry+0x27", caller_address),
            leak(
                address + 0x100,
                0x10,
                "Sample!Other+0x5",
                caller_address + 0x40,
            ),
        ];
        verdicts.push(outstanding);

        let mut crashed = Verdict::new("Sample.sys", Engine::Speakeasy, Some(arch));
        crashed.stage = Stage::InEntry;
        crashed.bugcheck = Some(BugCheck::new(0x7E, [0xC000_0005, caller_address, 0, 0]));
        verdicts.push(crashed);
    }
    verdicts
}

/// What a report keeps: the bug check, arch, driver, leaks (bytes as the
/// report rounds them) and whether the image was unloaded.
fn assert_round_trip(original: &Verdict, back: &Verdict) {
    let arch = original.arch.expect("arch");
    assert_eq!(back.arch, Some(arch));
    assert_eq!(back.driver, original.driver);
    let summary = |verdict: &Verdict| {
        verdict
            .bugcheck
            .as_ref()
            .map(|b| (b.code, b.args, b.name.clone()))
    };
    assert_eq!(summary(back), summary(original));
    assert_eq!(back.leaks.len(), original.leaks.len());
    // Emulators give the size requested, the report the block size.
    let emulated = original.engine.is_emulator();
    for (back, original) in back.leaks.iter().zip(&original.leaks) {
        let granularity = arch.pool_granularity();
        assert_eq!(back.address, original.address);
        assert_eq!(back.tag, original.tag);
        let shown = if emulated {
            original.bytes.div_ceil(granularity) * granularity
        } else {
            original.bytes
        };
        assert_eq!(back.bytes, shown);
        assert_eq!(back.caller, original.caller);
        assert_eq!(back.caller_address, original.caller_address);
    }
    if original.bugcheck.is_none() {
        assert_eq!(back.unloaded(), original.unloaded());
        assert_eq!(back.exit_code(), original.exit_code());
    }
}

#[test]
fn render_then_analyze_keeps_the_verdict() {
    for original in own_verdicts() {
        let text = harness_core::render::report(&original);
        let back = kd::analyze(&text, "report").unwrap_or_else(|error| panic!("{error}\n{text}"));
        assert_round_trip(&original, &back);
    }
}

/// Every fixture's verdict, rendered as a report and read back, is the
/// same verdict: `analyze` reads the harness's own output as it reads kd's.
#[test]
fn fixture_verdicts_survive_their_own_report() {
    let dir = fixture_path("kd");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "txt"))
        .collect();
    names.push(fixture_path("walkthrough-win7-x86.txt"));
    for path in names {
        let text = std::fs::read_to_string(&path).expect("fixture");
        let verdict = kd::analyze(&text, "fixture").expect("verdict");
        let back =
            kd::analyze(&harness_core::render::report(&verdict), "report").expect("read back");
        let name = path.display();
        assert_round_trip(&verdict, &back);
        assert_eq!(back.stage, verdict.stage, "{name}");
        assert_eq!(back.exit_code(), verdict.exit_code(), "{name}");
    }
}

/// The emulated leaky x86 build's text report, read back by `analyze`, and
/// the walkthrough's real log agree on what matters.
#[test]
fn emulation_and_the_real_debugger_agree() {
    let (_, real) = analyze("walkthrough-win7-x86.txt");
    let built = common::driver(Arch::X86, true);
    let emulated = common::emulate_json(&built.sys, &[]).verdict();
    let text = common::harness(&["emulate", built.sys.to_str().expect("path")]);
    let (_, read_back) = analyze_bytes(text.stdout.as_bytes());
    assert_round_trip(&emulated, &read_back);
    for verdict in [&real, &emulated, &read_back] {
        let bugcheck = verdict.bugcheck.as_ref().expect("bug check");
        assert_eq!(
            (bugcheck.code, bugcheck.args[0], bugcheck.args[3]),
            (0xC4, 0x62, 1)
        );
        assert_eq!(verdict.leaks[0].tag, "abcd");
        assert!(verdict.leaks[0].caller.starts_with("Sample!DriverEntry+0x"));
    }
    assert_eq!(real.leaks[0].pool, PoolType::PagedPool);
    assert_eq!(emulated.leaks[0].pool, PoolType::PagedPool);
}

/// Text no debugger printed: megabyte lines, non-ASCII, broken and mixed
/// encodings, deep quoting. Never a panic; a verdict or a typed error.
#[test]
fn adversarial_text_never_panics() {
    let walkthrough = fixture("walkthrough-win7-x86.txt");
    let utf16: Vec<u8> = "Arg1: 0000000000000062, x\n"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let inputs: Vec<Vec<u8>> = vec![
        format!(
            "BUGCHECK_CODE: c4 {} IMAGE_NAME: x.sys\n",
            "é".repeat(3 << 20)
        )
        .into_bytes(),
        "> ".repeat(1 << 20).into_bytes(),
        "`".repeat(1 << 20).into_bytes(),
        format!(
            "Arg1: 沒有{}\nArg2: ü\n0xé  0x1  ab\u{300}c  Foo!Bar",
            "留言".repeat(1000)
        )
        .into_bytes(),
        [walkthrough.as_bytes(), b"\xff\xfe\x00\xd8", &utf16, b"\xc3"].concat(),
        [b"\xFF\xFE".as_slice(), &utf16, b"\x41"].concat(),
        walkthrough.replace('\n', "\r").into_bytes(),
        walkthrough.chars().rev().collect::<String>().into_bytes(),
        (0..=255u8).cycle().take(1 << 16).collect(),
        b"      Address     Length      Tag   Caller\n0x1 0x2 \xe6\xb2\x92\xe6\x9c\x89 0x3\n"
            .to_vec(),
        b"*** Fatal System Error: 0x\n(\n BugCheck ,{\nBugcheck code \nArguments \n".to_vec(),
    ];
    for bytes in inputs {
        let started = Instant::now();
        let result = kd::analyze_bytes(&bytes, "adversarial");
        assert!(started.elapsed() < Duration::from_secs(10));
        if let Ok(verdict) = result {
            // Whatever it found, the verdict is whole.
            let _ = harness_core::render::report(&verdict);
        }
    }
}

/// A 10 MB log (the walkthrough 600 times over) reads in linear time: a
/// quadratic pass over it would take hours, not seconds.
#[test]
fn large_input_stays_linear() {
    let walkthrough = fixture("walkthrough-win7-x86.txt");
    let repeat = (10 << 20) / walkthrough.len() + 1;
    let big = walkthrough.repeat(repeat);
    let started = Instant::now();
    let verdict = kd::analyze_bytes(big.as_bytes(), "big").expect("verdict");
    let took = started.elapsed();
    // Seconds in a debug build on two cores; minutes would mean a quadratic.
    assert!(took < Duration::from_mins(1), "{took:?}");
    assert_eq!(verdict.leaks.len(), 1);
    assert!(
        verdict
            .notes
            .iter()
            .any(|note| note.contains(&format!("appears {repeat} times")))
    );
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
