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

/// `tests/drivers/huge.c`, with `ExAllocatePool2` imported from ntoskrnl.exe
/// (MinGW's import library predates it).
fn huge_driver(arch: Arch, dir: &Path) -> PathBuf {
    let mut build = CBuild::new("huge.c", "HUGE");
    build
        .made_libraries
        .push(("ntoskrnl.exe", &["ExAllocatePool2@16"], false));
    build.build_in(arch, dir)
}

/// Sizes near the top of `SIZE_T` get NULL, as on Windows: `ExAllocatePoolWithTag`
/// and `ExAllocatePool2` both return NULL when the request cannot be
/// satisfied (`MicrosoftDocs/windows-driver-docs-ddi`, `wdm/nf-wdm-exallocatepoolwithtag.md`
/// and `nf-wdm-exallocatepool2.md`, "Return value"; the latter raises only
/// with `POOL_FLAG_RAISE_ON_FAILURE`, which the driver does not pass). The
/// driver frees what it got and fails DriverEntry if a huge request
/// succeeded, so only NULL every time gives a clean run.
#[test]
fn huge_pool_requests_get_null_on_every_engine() {
    let dir = tempfile::tempdir().expect("temp dir");
    for arch in Arch::ALL {
        let driver = huge_driver(arch, dir.path());
        for engine in ENGINES {
            let run = common::emulate_json(&driver, &["--engine", engine]);
            assert!(
                !run.stderr.contains("panicked"),
                "{engine} {arch}: {}",
                run.stderr
            );
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

fn u16_at(bytes: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn offset(value: u32) -> usize {
    usize::try_from(value).expect("offset")
}

/// A PE's section table as (RVA, raw size, raw offset), and the file offset
/// of its optional header.
fn sections(bytes: &[u8]) -> (usize, Vec<(u32, u32, u32)>) {
    let pe = offset(u32_at(bytes, 0x3c));
    let optional = pe + 24;
    let table = optional + u16_at(bytes, pe + 20);
    let sections = (0..u16_at(bytes, pe + 6))
        .map(|i| {
            let at = table + 40 * i;
            (
                u32_at(bytes, at + 12),
                u32_at(bytes, at + 16),
                u32_at(bytes, at + 20),
            )
        })
        .collect();
    (optional, sections)
}

fn file_offset(sections: &[(u32, u32, u32)], rva: u32) -> Option<usize> {
    sections.iter().find_map(|&(va, raw_size, raw)| {
        (rva >= va && rva - va < raw_size).then(|| offset(raw + (rva - va)))
    })
}

/// The image as its linker would have made it for `base`: `ImageBase` and
/// every fixup target (x64 DIR64, x86 HIGHLOW) moved by the same wrapping
/// difference.
fn rebase(bytes: &mut [u8], arch: Arch, base: u64) {
    let (optional, sections) = sections(bytes);
    let (field, width, fixup_type, directories) = match arch {
        Arch::X64 => (optional + 24, 8, 10, optional + 112),
        Arch::X86 => (optional + 28, 4, 3, optional + 96),
    };
    let read = |bytes: &[u8], at: usize| {
        let mut value = [0_u8; 8];
        value[..width].copy_from_slice(&bytes[at..at + width]);
        u64::from_le_bytes(value)
    };
    let mask = if width == 8 {
        u64::MAX
    } else {
        u64::from(u32::MAX)
    };
    let old = read(bytes, field);
    bytes[field..field + width].copy_from_slice(&(base & mask).to_le_bytes()[..width]);
    let start = file_offset(&sections, u32_at(bytes, directories + 8 * 5)).expect("relocations");
    let end = start + offset(u32_at(bytes, directories + 8 * 5 + 4));
    let mut block = start;
    let mut fixed = 0;
    while block + 8 <= end {
        let page = u32_at(bytes, block);
        let size = offset(u32_at(bytes, block + 4));
        for entry in (block + 8..block + size).step_by(2) {
            let value = u32::try_from(u16_at(bytes, entry)).expect("u16");
            if value >> 12 == fixup_type {
                let at = file_offset(&sections, page + (value & 0xfff)).expect("fixup");
                let moved = read(bytes, at).wrapping_sub(old).wrapping_add(base) & mask;
                bytes[at..at + width].copy_from_slice(&moved.to_le_bytes()[..width]);
                fixed += 1;
            }
        }
        block += size;
    }
    assert!(fixed > 0, "{arch}: the image has fixups to move");
}

/// An `ImageBase` at the top of the address space (x64 0xfffffffffffff000,
/// x86 0xfffff000: the image would run past the end) is no reason to refuse
/// a kernel image: Windows maps system images wherever it has room and
/// applies their relocations (WRK `base/ntos/mm/sysload.c`,
/// `MiLoadSystemImage` calls `LdrRelocateImage` when the image is not at its
/// `ImageBase`). Every engine and `kd` give the leaky driver's own verdict,
/// with its PDB's names (Wine: x64 only).
#[test]
fn an_image_base_at_the_top_of_the_address_space_is_relocated_on_every_engine_wine_included() {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("session.txt");
    std::fs::write(&script, "g\nkvn\n!verifier 3 Sample.sys\nq\n").expect("script");
    let leak = |run: &common::Run, what: &str| {
        assert!(!run.stderr.contains("panicked"), "{what}: {}", run.stderr);
        let verdict = run.expect(ExitCode::Violation).verdict();
        let bugcheck = verdict.bugcheck.expect("bug check");
        assert_eq!(
            (bugcheck.code, bugcheck.args[0], bugcheck.args[3]),
            (0xC4, 0x62, 1),
            "{what}"
        );
        assert_eq!(verdict.leaks.len(), 1, "{what}");
        assert!(
            verdict.leaks[0].caller.starts_with("Sample!DriverEntry+0x"),
            "{what}: {}",
            verdict.leaks[0].caller
        );
    };
    for (arch, base) in [(Arch::X64, 0xffff_ffff_ffff_f000), (Arch::X86, 0xffff_f000)] {
        let built = common::driver(arch, true);
        let case = dir.path().join(arch.to_string());
        std::fs::create_dir(&case).expect("mkdir");
        let mut bytes = std::fs::read(&built.sys).expect("sys");
        rebase(&mut bytes, arch, base);
        let sys = case.join("Sample.sys");
        std::fs::write(&sys, &bytes).expect("write");
        std::fs::copy(&built.pdb, case.join("Sample.pdb")).expect("pdb");
        for engine in ENGINES {
            let run = common::emulate_json(&sys, &["--engine", engine]);
            leak(&run, &format!("{arch} {engine}"));
        }
        if arch == Arch::X64 {
            let _serial = common::wine::serial();
            leak(&common::wine::emulate(&sys, &[]), "x64 wine");
        }
        let run = common::harness(&[
            "kd",
            sys.to_str().expect("utf-8"),
            "--script",
            script.to_str().expect("utf-8"),
        ]);
        assert!(
            !run.stderr.contains("panicked"),
            "{arch} kd: {}",
            run.stderr
        );
        run.expect(ExitCode::Violation);
        assert!(
            run.stdout.contains("*** Fatal System Error: 0x000000c4"),
            "{arch} kd: {}",
            run.stdout
        );
    }
}

/// A relocation block whose page lies beyond the image: the kernel's
/// relocator writes each fixup at image + page + offset without a bounds
/// check (WRK `base/ntos/rtl/ldrreloc.c`; `ReactOS` `sdk/lib/rtl/image.c`,
/// `LdrProcessRelocationBlockLongLong`): what Windows then does depends on
/// the memory beyond the image, so every engine says the same before
/// mapping it: cannot judge (exit 2), one line naming the block, where
/// Speakeasy used to run it and pass.
#[test]
fn a_relocation_block_beyond_the_image_cannot_be_judged_on_every_engine() {
    let dir = tempfile::tempdir().expect("temp dir");
    for arch in Arch::ALL {
        let built = common::driver(arch, false);
        let mut bytes = std::fs::read(&built.sys).expect("sys");
        let (optional, sections) = sections(&bytes);
        let directories = optional + if arch == Arch::X64 { 112 } else { 96 };
        let first = file_offset(&sections, u32_at(&bytes, directories + 8 * 5)).expect("block");
        bytes[first..first + 4].copy_from_slice(&0x0010_0000_u32.to_le_bytes());
        let sys = dir.path().join(format!("reloc_{arch}.sys"));
        std::fs::write(&sys, &bytes).expect("write");
        for engine in ENGINES {
            let run = common::emulate_json(&sys, &["--engine", engine]);
            run.expect(ExitCode::CannotJudge);
            assert_eq!(
                run.stderr.trim().lines().count(),
                1,
                "{engine}: {}",
                run.stderr
            );
            assert!(
                run.stderr.contains("base relocation block")
                    && run.stderr.contains("beyond SizeOfImage")
                    && run.stderr.contains("cannot be judged"),
                "{engine} {arch}: {}",
                run.stderr
            );
        }
    }
}

/// A run on a leaky driver whose PDB is damaged: the driver's own verdict
/// (the symbols only name things), or one clean line; never a panic.
fn leak_verdict_or_one_line(run: &common::Run, what: &str) {
    assert!(
        !run.stderr.contains("panicked") && !run.stderr.contains("Traceback"),
        "{what}: {}",
        run.stderr
    );
    match run.code {
        2 => assert_eq!(
            run.stderr.trim().lines().count(),
            1,
            "{what}: {}",
            run.stderr
        ),
        _ => {
            run.expect(ExitCode::Violation);
        }
    }
}

/// One flipped bit at offset 0x6899 of the leaky x64 Sample.pdb used to
/// panic inside the `pdb` crate (symbols now come from the harness's own
/// reader). Every bit of that byte, on both builds: `emulate` on the native
/// engine and Speakeasy, and a `kd --script` session.
#[test]
fn a_flipped_bit_in_sample_pdb_gives_a_verdict_or_one_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("session.txt");
    std::fs::write(
        &script,
        "g\nkvn\ng\n!analyze -v\n!verifier 3 Sample.sys\nq\n",
    )
    .expect("script");
    for arch in Arch::ALL {
        let built = common::driver(arch, true);
        let pdb = std::fs::read(&built.pdb).expect("pdb");
        assert!(pdb.len() > 0x6899, "{arch}: the PDB is {} bytes", pdb.len());
        for bit in 0..8 {
            let case = dir.path().join(format!("{arch}-bit{bit}"));
            std::fs::create_dir(&case).expect("mkdir");
            let sys = case.join("Sample.sys");
            std::fs::copy(&built.sys, &sys).expect("sys");
            let mut flipped = pdb.clone();
            flipped[0x6899] ^= 1 << bit;
            std::fs::write(case.join("Sample.pdb"), &flipped).expect("pdb");
            for engine in ENGINES {
                let run = common::emulate_json(&sys, &["--engine", engine]);
                let what = format!("{arch} bit {bit} {engine}");
                leak_verdict_or_one_line(&run, &what);
                if run.code == 3 {
                    let verdict = run.verdict();
                    assert_eq!(verdict.leaks.len(), 1, "{what}");
                }
            }
            let run = common::harness(&[
                "kd",
                sys.to_str().expect("utf-8"),
                "--script",
                script.to_str().expect("utf-8"),
            ]);
            leak_verdict_or_one_line(&run, &format!("{arch} bit {bit} kd"));
        }
    }
}
