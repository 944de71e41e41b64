//! Mutation testing over the STRUCTURE of the real Sample.sys and its PDB
//! (x64 and x86): header fields, section table entries, data directories,
//! import descriptors and thunks, relocation blocks, the PDB's MSF superblock,
//! stream directory and pages. Each mutated driver must end in a verdict
//! (exit 0, 3 or 4 with JSON) or in one line on stderr (exit 2 or 6): no
//! panic, no traceback, and within bounds of time and memory (peak RSS of
//! the harness and its engine, measured with `wait4`). About 200 runs, two
//! at a time: about a minute on a 2-core machine.

use crate::common;

use std::ffi::OsStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use harness_core::arch::Arch;

/// The most a run may take (the budget given is 10 s).
const TIME_BOUND: Duration = Duration::from_secs(20);
/// The most memory a run may take: harness plus Speakeasy is about 80 MiB.
const RSS_BOUND_KIB: i64 = 600 << 10;

use common::Random;

/// A value a parser may not expect, given the original.
fn unexpected(random: &mut Random, original: u32) -> u32 {
    match random.below(9) {
        0 => 0,
        1 => 1,
        2 => u32::MAX,
        3 => 0x7FFF_FFFF,
        4 => 0x8000_0000,
        5 => original.wrapping_add(1),
        6 => original.wrapping_sub(1),
        7 => original.wrapping_mul(16),
        _ => u32::try_from(random.next() & 0xFFFF).expect("16 bits"),
    }
}

fn u16_at(bytes: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// Where the structures of a PE file are.
struct PeMap {
    /// (offset, width) of every header field worth mutating.
    header_fields: Vec<(usize, usize)>,
    /// Offsets of the section headers (40 bytes each).
    sections: Vec<usize>,
    /// Offsets of the data directory entries (8 bytes each).
    directories: Vec<usize>,
    /// File offsets of the import descriptors (20 bytes each).
    import_descriptors: Vec<usize>,
    /// File offsets of the import thunks (name table and address table).
    thunks: Vec<(usize, usize)>,
    /// File offsets of the relocation block headers, with their sizes.
    relocation_blocks: Vec<(usize, usize)>,
}

fn rva_to_offset(bytes: &[u8], sections: &[usize], rva: u32) -> Option<usize> {
    sections.iter().find_map(|&section| {
        let va = u32_at(bytes, section + 12);
        let raw_size = u32_at(bytes, section + 16);
        let raw = u32_at(bytes, section + 20);
        (rva >= va && rva < va + raw_size)
            .then(|| usize::try_from(raw + (rva - va)).expect("offset"))
    })
}

fn pe_map(bytes: &[u8]) -> PeMap {
    let pe = usize::try_from(u32_at(bytes, 0x3c)).expect("e_lfanew");
    let file_header = pe + 4;
    let optional = file_header + 20;
    let pe32_plus = u16_at(bytes, optional) == 0x20b;
    let directories_at = optional + if pe32_plus { 112 } else { 96 };
    let count = u32_at(bytes, directories_at - 4) as usize;
    let directories: Vec<usize> = (0..count.min(16)).map(|i| directories_at + 8 * i).collect();
    let sections_at = optional + u16_at(bytes, file_header + 16);
    let sections: Vec<usize> = (0..u16_at(bytes, file_header + 2))
        .map(|i| sections_at + 40 * i)
        .collect();
    let mut header_fields = vec![
        (file_header + 2, 2),    // NumberOfSections
        (file_header + 16, 2),   // SizeOfOptionalHeader
        (file_header + 18, 2),   // Characteristics
        (optional + 16, 4),      // AddressOfEntryPoint
        (optional + 32, 4),      // SectionAlignment
        (optional + 36, 4),      // FileAlignment
        (optional + 56, 4),      // SizeOfImage
        (optional + 60, 4),      // SizeOfHeaders
        (optional + 68, 2),      // Subsystem
        (directories_at - 4, 4), // NumberOfRvaAndSizes
        (0x3c, 4),               // e_lfanew
    ];
    header_fields.push((optional + if pe32_plus { 24 } else { 28 }, 4)); // ImageBase (low)
    let import_dir = directories[1];
    let mut import_descriptors = Vec::new();
    let mut thunks = Vec::new();
    if let Some(mut at) = rva_to_offset(bytes, &sections, u32_at(bytes, import_dir)) {
        while u32_at(bytes, at + 12) != 0 {
            import_descriptors.push(at);
            let width = if pe32_plus { 8 } else { 4 };
            for table in [u32_at(bytes, at), u32_at(bytes, at + 16)] {
                if let Some(mut thunk) = rva_to_offset(bytes, &sections, table) {
                    while bytes[thunk..thunk + width].iter().any(|&b| b != 0) {
                        thunks.push((thunk, width));
                        thunk += width;
                    }
                }
            }
            at += 20;
        }
    }
    let mut relocation_blocks = Vec::new();
    let reloc_dir = directories[5];
    if let Some(start) = rva_to_offset(bytes, &sections, u32_at(bytes, reloc_dir)) {
        let end = start + u32_at(bytes, reloc_dir + 4) as usize;
        let mut at = start;
        while at + 8 <= end {
            let size = u32_at(bytes, at + 4) as usize;
            if size < 8 {
                break;
            }
            relocation_blocks.push((at, size));
            at += size;
        }
    }
    PeMap {
        header_fields,
        sections,
        directories,
        import_descriptors,
        thunks,
        relocation_blocks,
    }
}

/// Sets the field of `width` bytes at `at` to a value a parser may not expect.
fn field(bytes: &mut [u8], random: &mut Random, at: usize, width: usize, what: &str) -> String {
    let original = if width == 2 {
        u32::try_from(u16_at(bytes, at)).expect("u16")
    } else {
        u32_at(bytes, at)
    };
    let value = unexpected(random, original);
    write_value(bytes, at, width, value);
    format!("{what} 0x{original:x} -> 0x{value:x}")
}

fn write_value(bytes: &mut [u8], at: usize, width: usize, value: u32) {
    let le = value.to_le_bytes();
    for (i, byte) in bytes[at..at + width.min(4)].iter_mut().enumerate() {
        *byte = le[i];
    }
}

/// One structural mutation of a PE image; returns what it changed.
fn mutate_pe(bytes: &mut [u8], map: &PeMap, random: &mut Random) -> String {
    let kind = random.below(6);
    match kind {
        0 => {
            let (at, width) = map.header_fields[random.below(map.header_fields.len())];
            field(
                bytes,
                random,
                at,
                width,
                &format!("header field at 0x{at:x}"),
            )
        }
        1 => {
            let section = map.sections[random.below(map.sections.len())];
            let offset = [8, 12, 16, 20, 36][random.below(5)];
            field(
                bytes,
                random,
                section + offset,
                4,
                &format!("section entry +{offset}"),
            )
        }
        2 => {
            let directory = map.directories[random.below(map.directories.len())];
            let offset = 4 * random.below(2);
            field(
                bytes,
                random,
                directory + offset,
                4,
                &format!("data directory +{offset}"),
            )
        }
        3 if !map.import_descriptors.is_empty() => {
            let descriptor = map.import_descriptors[random.below(map.import_descriptors.len())];
            let offset = [0, 12, 16][random.below(3)];
            field(
                bytes,
                random,
                descriptor + offset,
                4,
                &format!("import descriptor +{offset}"),
            )
        }
        4 if !map.thunks.is_empty() => {
            let (thunk, width) = map.thunks[random.below(map.thunks.len())];
            let what = format!("import thunk at 0x{thunk:x}");
            if random.below(3) == 0 {
                // By ordinal: the high bit.
                bytes[thunk + width - 1] |= 0x80;
                format!("{what} -> by ordinal")
            } else {
                field(bytes, random, thunk, 4, &what)
            }
        }
        _ if !map.relocation_blocks.is_empty() => {
            let (block, size) = map.relocation_blocks[random.below(map.relocation_blocks.len())];
            match random.below(3) {
                0 => field(bytes, random, block, 4, "relocation block VirtualAddress"),
                1 => field(bytes, random, block + 4, 4, "relocation block SizeOfBlock"),
                _ => {
                    let entry = block + 8 + 2 * random.below((size - 8) / 2);
                    let value = u16::try_from(random.next() & 0xFFFF).expect("u16");
                    bytes[entry..entry + 2].copy_from_slice(&value.to_le_bytes());
                    format!("relocation entry at 0x{entry:x} -> 0x{value:x}")
                }
            }
        }
        _ => field(bytes, random, map.header_fields[0].0, 2, "NumberOfSections"),
    }
}

/// One structural mutation of an MSF (PDB) file.
fn mutate_pdb(bytes: &mut [u8], random: &mut Random) -> String {
    // MSF 7.0 superblock: magic (32 bytes), BlockSize, FreeBlockMapBlock,
    // NumBlocks, NumDirectoryBytes, Unknown, BlockMapAddr.
    let block_size = u32_at(bytes, 32) as usize;
    let map_block = u32_at(bytes, 52) as usize;
    let directory_block = u32_at(bytes, map_block * block_size) as usize;
    let directory = directory_block * block_size;
    let stream_count = u32_at(bytes, directory) as usize;
    match random.below(5) {
        0 => {
            let offset = [32, 36, 40, 44, 52][random.below(5)];
            field(bytes, random, offset, 4, &format!("superblock +{offset}"))
        }
        1 => field(bytes, random, directory, 4, "stream count"),
        2 => {
            let stream = 1 + random.below(stream_count.min(64));
            field(
                bytes,
                random,
                directory + 4 * stream,
                4,
                &format!("size of stream {}", stream - 1),
            )
        }
        3 => {
            let at = directory + 4 * (1 + stream_count) + 4 * random.below(32);
            field(bytes, random, at, 4, "stream directory page number")
        }
        _ => {
            let page = 3 + random.below(bytes.len() / block_size - 3);
            let at = page * block_size + 4 * random.below(block_size / 4);
            field(bytes, random, at, 4, &format!("word in page {page}"))
        }
    }
}

#[test]
fn structural_mutations_end_in_a_verdict_or_one_line_within_bounds() {
    const PE_CASES: usize = 160;
    const PDB_CASES: usize = 40;
    let builds: Vec<(Vec<u8>, Vec<u8>)> = Arch::ALL
        .iter()
        .map(|arch| {
            let built = common::driver(*arch, true);
            (
                std::fs::read(&built.sys).expect("sys"),
                std::fs::read(&built.pdb).expect("pdb"),
            )
        })
        .collect();
    let maps: Vec<PeMap> = builds.iter().map(|(sys, _)| pe_map(sys)).collect();
    for map in &maps {
        assert!(!map.import_descriptors.is_empty() && !map.relocation_blocks.is_empty());
    }
    let dir = tempfile::tempdir().expect("dir");
    let next = AtomicUsize::new(0);
    let outcomes = Mutex::new([0_usize; 7]);
    let failures = Mutex::new(Vec::new());
    let worst = Mutex::new((Duration::ZERO, 0_i64));
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                loop {
                    let case = next.fetch_add(1, Ordering::SeqCst);
                    if case >= PE_CASES + PDB_CASES {
                        break;
                    }
                    let mut random = Random(0xA076_1D64_78BD_642F ^ ((case as u64 + 1) * 0x9E37));
                    let (sys, pdb) = &builds[case % 2];
                    let case_dir = dir.path().join(format!("case{case}"));
                    std::fs::create_dir(&case_dir).expect("mkdir");
                    let (mut sys, mut pdb) = (sys.clone(), pdb.clone());
                    let what = if case < PE_CASES {
                        mutate_pe(&mut sys, &maps[case % 2], &mut random)
                    } else {
                        mutate_pdb(&mut pdb, &mut random)
                    };
                    let path = case_dir.join("Sample.sys");
                    std::fs::write(&path, &sys).expect("write sys");
                    std::fs::write(case_dir.join("Sample.pdb"), &pdb).expect("write pdb");
                    let measured = common::harness_measured(
                        &[
                            OsStr::new("emulate"),
                            path.as_os_str(),
                            // The harness's own engine, in the test build
                            // (overflow checks on): any panic is ours.
                            OsStr::new("--engine"),
                            OsStr::new("native"),
                            OsStr::new("--json"),
                            OsStr::new("--timeout"),
                            OsStr::new("10"),
                            OsStr::new("--max-instructions"),
                            OsStr::new("200000"),
                        ],
                        None,
                        &[],
                        Duration::from_mins(1),
                    );
                    let run = &measured.run;
                    let problem = check(run);
                    let failing = if measured.peak_rss_kib > RSS_BOUND_KIB {
                        Some(format!(
                            "case {case} ({what}): peak RSS {} KiB",
                            measured.peak_rss_kib
                        ))
                    } else if measured.elapsed > TIME_BOUND {
                        Some(format!("case {case} ({what}): took {:?}", measured.elapsed))
                    } else {
                        problem.map(|problem| format!("case {case} ({what}): {problem}"))
                    };
                    if let Some(failing) = failing {
                        failures.lock().expect("lock").push(failing);
                    }
                    if let Ok(code) = usize::try_from(run.code)
                        && code < 7
                    {
                        outcomes.lock().expect("lock")[code] += 1;
                    }
                    let mut worst = worst.lock().expect("lock");
                    worst.0 = worst.0.max(measured.elapsed);
                    worst.1 = worst.1.max(measured.peak_rss_kib);
                    drop(worst);
                    let _ = std::fs::remove_dir_all(&case_dir);
                }
            });
        }
    });
    let outcomes = outcomes.into_inner().expect("lock");
    let (slowest, largest) = worst.into_inner().expect("lock");
    println!(
        "outcomes by exit code (0..=6): {outcomes:?}; slowest {slowest:?}, largest {largest} KiB"
    );
    let failures = failures.into_inner().expect("lock");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(outcomes.iter().sum::<usize>(), PE_CASES + PDB_CASES);
    // The mutations reach every stage: refusals, parse errors and verdicts.
    assert!(outcomes[0] + outcomes[3] + outcomes[4] > 20, "{outcomes:?}");
    assert!(outcomes[2] + outcomes[6] > 20, "{outcomes:?}");
}

/// What is wrong with a run's ending, if anything.
fn check(run: &common::Run) -> Option<String> {
    if run.stderr.contains("Traceback") || run.stderr.contains("panicked") {
        return Some(format!("crash: {}", run.stderr));
    }
    // 101: a panic that unwound; 134 (128 + SIGABRT): one that aborted
    // (`panic = "abort"`), even if its message was lost.
    if matches!(run.code, 101 | 134) {
        return Some(format!("crash (exit {}): {}", run.code, run.stderr));
    }
    match run.code {
        0 | 3 | 4 => match serde_json::from_str::<harness_core::verdict::Verdict>(&run.stdout) {
            Ok(verdict) if i32::from(verdict.exit_code() as u8) == run.code => None,
            Ok(_) => Some(format!("exit {} disagrees with the verdict", run.code)),
            Err(error) => Some(format!("exit {} without a verdict ({error})", run.code)),
        },
        2 | 6 if run.stderr.trim().lines().count() == 1 => None,
        code => Some(format!("exit {code}: {}{}", run.stdout, run.stderr)),
    }
}

#[test]
fn a_panic_counts_as_a_failure_of_the_campaign() {
    let run = |code: i32, stderr: &str| common::Run {
        code,
        stdout: String::new(),
        stderr: stderr.to_owned(),
    };
    for (code, stderr) in [
        (
            101,
            "thread 'main' panicked at pe.rs:1:1:\nattempt to subtract with overflow",
        ),
        (
            134,
            "thread 'main' panicked at pool.rs:2:2:\nattempt to multiply with overflow",
        ),
        (134, ""),
        (101, ""),
        (
            2,
            "harness: x.sys: one line\nthread 'main' panicked at a.rs:1:1",
        ),
    ] {
        assert!(
            check(&run(code, stderr)).is_some(),
            "exit {code}: {stderr:?}"
        );
    }
    assert_eq!(
        check(&run(
            6,
            "harness: x.sys: Windows would not load this image: why"
        )),
        None
    );
}
