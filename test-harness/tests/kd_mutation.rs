//! `harness kd` on corrupt PDBs: the real Sample.pdb of each arch, with bytes
//! flipped, words set to values a parser may not expect, or pages zeroed,
//! beside a copy of the real Sample.sys. The session reads the PDB for names,
//! stacks, locals and types; whatever the PDB holds, every command must end
//! in output or a kd-style error, the machine must still bug-check as the
//! leaky driver makes it (exit 3), and nothing may panic. (The image itself
//! is mutated by `tests/structure_mutation.rs`: `kd` and `emulate` share its
//! loading checks.) 150 runs per arch, a few seconds in all. Then 2,000
//! random command lines from a trainee's vocabulary, in one session each
//! 500: every line answers, nothing panics.

use crate::common;

use std::ffi::OsStr;
use std::process::Command;
use std::time::{Duration, Instant};

use harness_core::arch::Arch;

use common::Random;

/// Every command that reads the PDB.
const SCRIPT: &str = "g\nkvn\n.frame 0n4\ndv /t /v\ndt Sample!g_RegistryPath\n\
                      x Sample!*\nln Sample!DriverEntry\nu Sample!DriverEntry\n\
                      bp Sample!SampleUnload\nbl\ng\n!verifier 3 Sample.sys\nkb\nq\n";

/// A run may take this long (a clean run takes milliseconds).
const TIME_BOUND: Duration = Duration::from_secs(20);

fn mutate(pdb: &mut [u8], random: &mut Random) -> String {
    const PAGE: usize = 4096;
    match random.below(3) {
        0 => {
            let count = 1 + random.below(8);
            for _ in 0..count {
                let at = random.below(pdb.len());
                pdb[at] ^= 1 << random.below(8);
            }
            format!("{count} bit flips")
        }
        1 => {
            let at = random.below(pdb.len() - 4) & !3;
            let value: u32 = match random.below(5) {
                0 => 0,
                1 => u32::MAX,
                2 => 0x8000_0000,
                3 => 0x7fff_ffff,
                _ => u32::try_from(random.next() & 0xffff).expect("16 bits"),
            };
            pdb[at..at + 4].copy_from_slice(&value.to_le_bytes());
            format!("dword at 0x{at:x} = 0x{value:x}")
        }
        _ => {
            let page = random.below(pdb.len() / PAGE) * PAGE;
            pdb[page..page + PAGE].fill(0);
            format!("page at 0x{page:x} zeroed")
        }
    }
}

fn corrupt_pdbs(arch: Arch, seed: u64) {
    let built = common::driver(arch, true);
    let original = std::fs::read(&built.pdb).expect("the PDB");
    let dir = tempfile::tempdir().expect("temp dir");
    let sys = dir.path().join("Sample.sys");
    std::fs::copy(&built.sys, &sys).expect("copy the driver");
    let script = dir.path().join("script.txt");
    std::fs::write(&script, SCRIPT).expect("script");
    let mut random = Random(seed);
    for run in 0..150 {
        let mut pdb = original.clone();
        let what = mutate(&mut pdb, &mut random);
        std::fs::write(dir.path().join("Sample.pdb"), &pdb).expect("write the PDB");
        let started = Instant::now();
        let output = Command::new(env!("CARGO_BIN_EXE_harness"))
            .args(["kd", sys.to_str().expect("utf-8"), "--script"])
            .arg(&script)
            .output()
            .expect("harness kd runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let case = format!("{arch} run {run} ({what})");
        assert!(started.elapsed() < TIME_BOUND, "{case}: too slow");
        assert!(
            !stderr.contains("panicked") && !stdout.contains("panicked"),
            "{case}: {stderr}"
        );
        assert_eq!(output.status.code(), Some(3), "{case}: {stderr}\n{stdout}");
        assert!(stderr.is_empty(), "{case}: {stderr}");
        assert!(
            stdout.contains("*** Fatal System Error: 0x000000c4"),
            "{case}: {stdout}"
        );
        // Every command of the script echoed: none took the session down.
        assert_eq!(
            stdout
                .lines()
                .filter(|line| line.starts_with("kd> "))
                .count(),
            SCRIPT.lines().count(),
            "{case}"
        );
    }
}

#[test]
fn corrupt_pdbs_on_x86() {
    corrupt_pdbs(Arch::X86, 0x5eed_0086);
}

#[test]
fn corrupt_pdbs_on_x64() {
    corrupt_pdbs(Arch::X64, 0x5eed_0064);
}

/// Words a trainee might type, in any order and with any arguments.
const WORDS: &[&str] = &[
    "g",
    "gu",
    "p",
    "t",
    "bp",
    "bu",
    "bl",
    "bc",
    "bd",
    "be",
    "r",
    "k",
    "kb",
    "kvn",
    "kn",
    ".frame",
    "dv",
    "/t",
    "/v",
    ".thread",
    ".cxr",
    "lm",
    "ln",
    "x",
    "u",
    "dt",
    "db",
    "dw",
    "dd",
    "dq",
    "dp",
    "dc",
    "da",
    "du",
    "eb",
    "ew",
    "ed",
    "eq",
    "?",
    "??",
    ".formats",
    "!pool",
    "!poolfind",
    "!verifier",
    "!analyze",
    "-v",
    ".echo",
    ".asm",
    ".reload",
    "$$",
    "*",
    "nt!PoolHitTag",
    "Sample!DriverEntry",
    "Sample!g_RegistryPath",
    "nt!_POOL_HEADER",
    "_UNICODE_STRING",
    "@eax",
    "@rax",
    "@esp",
    "@$ip",
    "@$ra",
    "@$retreg",
    "poi(",
    ")",
    "(",
    "+",
    "-",
    "*",
    "/",
    "%",
    "<<",
    ">>",
    "&",
    "|",
    "^",
    "==",
    "!=",
    "0",
    "1",
    "2",
    "3",
    "0x10",
    "0n10",
    "L1",
    "L?10",
    "l100",
    "'abcd'",
    "'",
    "\"",
    ";",
    ",",
    "=",
    "@@(",
    "@@c++(",
    "sizeof(",
    "abcd",
    "ffffffff`ffffffff",
    "80000000",
    "é",
    "0y101",
    "`",
    "!",
    "$t0",
    "@$t1",
    "[",
    "]",
];

fn random_lines(random: &mut Random, count: usize) -> String {
    let mut script = String::new();
    for _ in 0..count {
        let words = 1 + random.below(5);
        let line: Vec<&str> = (0..words)
            .map(|_| WORDS[random.below(WORDS.len())])
            .collect();
        let separator = if random.below(3) == 0 { "" } else { " " };
        script.push_str(&line.join(separator));
        script.push('\n');
    }
    script
}

#[test]
fn random_command_lines_never_take_the_session_down() {
    let built = common::driver(Arch::X64, true);
    let mut random = Random(0x00c0_ffee);
    for round in 0..4 {
        // Start with the walkthrough's break so that the stack and the
        // driver's names are there, then anything at all.
        let script = format!(
            "ed nt!PoolHitTag 'dcba'\ng\n{}",
            random_lines(&mut random, 500)
        );
        let started = Instant::now();
        let run = common::harness_with_stdin(&[OsStr::new("kd"), built.sys.as_os_str()], &script);
        let (stdout, stderr) = (&run.stdout, &run.stderr);
        assert!(
            started.elapsed() < Duration::from_mins(1),
            "round {round}: too slow"
        );
        assert!(
            !stderr.contains("panicked") && !stdout.contains("panicked"),
            "round {round}: {stderr}"
        );
        // Exit 2 says why in one line on stderr; every other code says nothing there.
        if run.code == 2 {
            assert_eq!(stderr.lines().count(), 1, "round {round}: {stderr}");
        } else {
            assert!(stderr.is_empty(), "round {round}: {stderr}");
        }
        // 0 (clean end), 3 (the leak's bug check), 5 (still loaded) or 2 (a
        // limit or gap): all verdicts of a run, never a crash.
        assert!(
            matches!(run.code, 0 | 2 | 3 | 5),
            "round {round}: exit {}",
            run.code
        );
    }
}
