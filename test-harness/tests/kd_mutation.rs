//! `harness kd` on corrupt PDBs: the real Sample.pdb of each arch, with bytes
//! flipped, words set to values a parser may not expect, or pages zeroed,
//! beside a copy of the real Sample.sys. The session reads the PDB for names,
//! stacks, locals and types; whatever the PDB holds, every command must end
//! in output or a kd-style error, the machine must still bug-check as the
//! leaky driver makes it (exit 3), and nothing may panic. (The image itself
//! is mutated by `tests/structure_mutation.rs`: `kd` and `emulate` share its
//! loading checks.) 150 runs per arch, a few seconds in all.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use harness::arch::Arch;

/// Deterministic xorshift, so that a failing case can be replayed.
struct Random(u64);

impl Random {
    const fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n.max(1)).expect("n")).expect("fits")
    }
}

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
