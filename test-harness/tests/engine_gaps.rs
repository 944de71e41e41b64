//! Issue "verdicts you can trust": a corpus of drivers that reach what an
//! engine may lack (KMDF, NDIS, an information class it does not know) or
//! that Windows itself would refuse to load (user-mode DLL imports, a
//! misnamed kernel module, decorated or unknown import names), plus real
//! drivers from a package registry. Every engine in [`ENGINES`] runs every
//! case; each must end in the right verdict, or "cannot judge" (exit 2, one
//! line), or "Windows would not load this image" (exit 6, one line), and never
//! in a violation the driver did not commit (exit 3).
//!
//! What each engine gives (the table printed by these tests):
//!
//! | case            | speakeasy                                              |
//! |-----------------|--------------------------------------------------------|
//! | kmdf            | 2: calls WdfVersionBind (KMDF; kmdf!DriverEntry+0x..)  |
//! | ndis            | 0: clean verdict (NdisGetVersion 6.1)                  |
//! | sysinfo         | 2: ApiEmuError inside ntoskrnl.ZwQuerySystemInformation|
//! | sysinfo_dynamic | 2: ApiEmuError inside ntoskrnl.NtQuerySystemInformation|
//! | user_dll        | 6: imports GetTickCount from KERNEL32.dll (user mode)  |
//! | ntdll           | 6: imports from ntdll.dll (user mode)                  |
//! | no_exe          | 6: imports from "ntoskrnl", a module no Windows has    |
//! | decorated (x86) | 6: "ExAllocatePoolWithTag@12" is not exported           |
//! | unknown_import  | 2: ntoskrnl.exe!ExHarnessNoSuchRoutine not in the list |
//! | WinDivert 64/32 | 2: calls WdfVersionBind (KMDF; WinDivert64+0x4a9b)     |

use crate::common;

use std::path::{Path, PathBuf};

use common::{CBuild, Run};
use harness_core::arch::Arch;
use harness_core::verdict::ExitCode;

/// The engines the corpus runs on: adding an engine is one line here (its
/// expected results default to each case's `acceptable` list).
const ENGINES: &[&str] = &["native", "speakeasy", "wine"];

/// What a run must end in.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// A verdict with this exit code.
    Verdict(ExitCode),
    /// Exit 2 with one line on stderr containing this.
    CannotJudge(&'static str),
    /// Exit 6 with one line on stderr containing this.
    Refused(&'static str),
}

impl Expect {
    fn met_by(self, run: &Run) -> bool {
        let one_line = run.stderr.trim().lines().count() == 1
            && !run.stderr.contains("Traceback")
            && !run.stderr.contains("panicked");
        match self {
            Self::Verdict(code) => {
                run.code == i32::from(code as u8)
                    && serde_json::from_str::<harness_core::verdict::Verdict>(&run.stdout)
                        .is_ok_and(|verdict| verdict.exit_code() == code)
            }
            Self::CannotJudge(needle) => run.code == 2 && one_line && run.stderr.contains(needle),
            Self::Refused(needle) => run.code == 6 && one_line && run.stderr.contains(needle),
        }
    }
}

/// One corpus entry.
struct Case {
    name: &'static str,
    arches: &'static [Arch],
    /// What a given engine must give.
    expected: &'static [(&'static str, Expect)],
    /// What an engine not named in `expected` may give.
    acceptable: &'static [Expect],
}

const BOTH: &[Arch] = &[Arch::X64, Arch::X86];

const CASES: &[Case] = &[
    Case {
        name: "kmdf",
        arches: BOTH,
        expected: &[(
            "speakeasy",
            Expect::CannotJudge("calls WdfVersionBind (KMDF; kmdf!DriverEntry+0x"),
        )],
        acceptable: &[
            Expect::CannotJudge("WdfVersionBind"),
            Expect::CannotJudge("WDFLDR"),
        ],
    },
    Case {
        name: "ndis",
        arches: BOTH,
        expected: &[("speakeasy", Expect::Verdict(ExitCode::Clean))],
        acceptable: &[
            Expect::Verdict(ExitCode::Clean),
            Expect::CannotJudge("NDIS"),
            Expect::CannotJudge("NdisGetVersion"),
        ],
    },
    Case {
        name: "sysinfo",
        arches: BOTH,
        expected: &[(
            "speakeasy",
            Expect::CannotJudge(
                "failed inside ntoskrnl.ZwQuerySystemInformation, called from sysinfo!DriverEntry+0x",
            ),
        )],
        acceptable: &[
            Expect::Verdict(ExitCode::Clean),
            Expect::CannotJudge("QuerySystemInformation"),
        ],
    },
    Case {
        name: "sysinfo_dynamic",
        arches: BOTH,
        expected: &[(
            "speakeasy",
            Expect::CannotJudge(
                "failed inside ntoskrnl.NtQuerySystemInformation, called from sysinfo_dynamic!DriverEntry+0x",
            ),
        )],
        acceptable: &[
            Expect::Verdict(ExitCode::Clean),
            Expect::CannotJudge("QuerySystemInformation"),
        ],
    },
    Case {
        name: "user_dll",
        arches: BOTH,
        expected: &[],
        acceptable: &[Expect::Refused(
            "imports GetTickCount from KERNEL32.dll, a user-mode DLL",
        )],
    },
    Case {
        name: "ntdll",
        arches: BOTH,
        expected: &[],
        acceptable: &[Expect::Refused("from ntdll.dll, a user-mode DLL")],
    },
    Case {
        name: "no_exe",
        arches: BOTH,
        expected: &[],
        acceptable: &[Expect::Refused(
            "from \"ntoskrnl\", a module no Windows has",
        )],
    },
    Case {
        name: "decorated",
        arches: &[Arch::X86],
        expected: &[],
        acceptable: &[Expect::Refused(
            "imports \"ExAllocatePoolWithTag@12\" from ntoskrnl.exe",
        )],
    },
    Case {
        name: "unknown_import",
        arches: BOTH,
        expected: &[],
        acceptable: &[Expect::CannotJudge(
            "imports ntoskrnl.exe!ExHarnessNoSuchRoutine, which is not in the harness's list",
        )],
    },
];

/// Builds a corpus case into `dir/<arch>/<name>.sys`.
fn build(case: &str, arch: Arch, dir: &Path) -> PathBuf {
    let dir = dir.join(arch.to_string());
    std::fs::create_dir_all(&dir).expect("dir");
    let out = dir.join(format!("{case}.sys"));
    let variant = case.to_ascii_uppercase();
    let mut c = CBuild::new("gaps.c", &variant);
    match case {
        "kmdf" => {
            c.made_libraries
                .push(("WDFLDR.SYS", &["WdfVersionBind@16"], false));
        }
        "ndis" => c.libraries.push("ndis"),
        "user_dll" => c.libraries.push("kernel32"),
        "ntdll" => c.libraries.push("ntdll"),
        "unknown_import" => {
            c.made_libraries
                .push(("ntoskrnl.exe", &["ExHarnessNoSuchRoutine@0"], false));
        }
        "no_exe" => c.variant = "PLAIN",
        "decorated" => {
            // What a Rust raw-dylib import without `import_name_type =
            // "undecorated"` gives on x86.
            c.variant = "PLAIN";
            c.libraries.clear();
            c.made_libraries.push((
                "ntoskrnl.exe",
                &[
                    "ExAllocatePoolWithTag@12",
                    "ExFreePoolWithTag@8",
                    "DbgPrint",
                ],
                true,
            ));
        }
        _ => {}
    }
    common::compile_c(&c, arch, &out);
    if case == "no_exe" {
        // The import DLL name as a raw-dylib link without `+verbatim` (or a
        // hand-written .def) can leave it: no ".exe".
        let mut bytes = std::fs::read(&out).expect("read");
        let at = bytes
            .windows(13)
            .position(|window| window == b"ntoskrnl.exe\0")
            .expect("import name");
        bytes[at + 8..at + 12].fill(0);
        std::fs::write(&out, bytes).expect("write");
    }
    out
}

/// One row of the results table.
struct Row {
    case: String,
    arch: Arch,
    engine: &'static str,
    result: String,
    ok: bool,
}

fn run_case(engine: &'static str, case: &str, arch: Arch, driver: &Path, expect: &[Expect]) -> Row {
    let run = common::emulate_json(driver, &["--engine", engine, "--timeout", "30"]);
    let result = match run.code {
        2 | 6 => format!("{}: {}", run.code, run.stderr.trim()),
        code => format!("{code}: {:?}", run.verdict().outcome()),
    };
    let violation_expected = expect
        .iter()
        .any(|e| matches!(e, Expect::Verdict(ExitCode::Violation)));
    let ok = expect.iter().any(|e| e.met_by(&run)) && (run.code != 3 || violation_expected);
    Row {
        case: case.to_owned(),
        arch,
        engine,
        result,
        ok,
    }
}

fn expectations(case: &Case, engine: &str) -> Vec<Expect> {
    case.expected
        .iter()
        .filter(|(name, _)| *name == engine)
        .map(|(_, expect)| *expect)
        .reduce(|first, _| first)
        .map_or_else(|| case.acceptable.to_vec(), |expect| vec![expect])
}

fn report(rows: &[Row]) {
    println!("| case | arch | engine | result |");
    for row in rows {
        println!(
            "| {} | {} | {} | {} |{}",
            row.case,
            row.arch,
            row.engine,
            row.result,
            if row.ok { "" } else { " <- WRONG" }
        );
    }
    let wrong: Vec<&Row> = rows.iter().filter(|row| !row.ok).collect();
    assert!(
        wrong.is_empty(),
        "{} of {} runs ended wrongly (see the table above)",
        wrong.len(),
        rows.len()
    );
}

#[test]
fn every_engine_ends_each_gap_case_in_a_verdict_or_one_line() {
    let dir = tempfile::tempdir().expect("dir");
    let mut rows = Vec::new();
    for case in CASES {
        for &arch in case.arches {
            let driver = build(case.name, arch, dir.path());
            for &engine in ENGINES {
                if engine == "wine" && arch == Arch::X86 && !common::wine::wine32_installed() {
                    continue; // x86 needs 32-bit Wine
                }
                let expect = expectations(case, engine);
                rows.push(run_case(engine, case.name, arch, &driver, &expect));
            }
        }
    }
    // Every case on every engine, but Wine on x86 without 32-bit Wine.
    let expected: usize = CASES
        .iter()
        .flat_map(|case| case.arches.iter())
        .map(|arch| {
            ENGINES
                .iter()
                .filter(|engine| {
                    !(**engine == "wine" && *arch == Arch::X86 && !common::wine::wine32_installed())
                })
                .count()
        })
        .sum();
    assert_eq!(rows.len(), expected);
    report(&rows);
}

/// `WinDivert` 1.3 (LGPL-3.0 / GPL-2.0), as shipped in the `pydivert` 2.1.0
/// wheel on the Python package index: a real KMDF driver. Not committed: fetched here with pip
/// (the harness's own virtualenv) and checked against these SHA-256 sums.
const WINDIVERT: &[(&str, Arch, &str)] = &[
    (
        "WinDivert64.sys",
        Arch::X64,
        "9026147943bd44a1eb5e2f0c89cc8f441c7d1f13c1571aba54e262d2e7354798",
    ),
    (
        "WinDivert32.sys",
        Arch::X86,
        "bd27499533e42d64bcab52a018add1e361de02f04c4b1d16852cb643bf4c5755",
    ),
];

fn fetch_windivert(dir: &Path) -> PathBuf {
    let setup = common::harness(&["setup"]);
    setup.expect(ExitCode::Clean);
    let python = setup
        .stdout
        .trim()
        .lines()
        .last()
        .expect("python path")
        .to_owned();
    let status = std::process::Command::new(python)
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--disable-pip-version-check",
            "pydivert==2.1.0",
            "-d",
        ])
        .arg(dir)
        .status()
        .expect("pip runs");
    assert!(
        status.success(),
        "pip could not fetch pydivert 2.1.0 from PyPI"
    );
    let wheel = dir.join("pydivert-2.1.0-py2.py3-none-any.whl");
    let status = std::process::Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(&wheel)
        .arg(dir)
        .status()
        .expect("python3 runs");
    assert!(status.success(), "cannot unpack {}", wheel.display());
    dir.join("pydivert/windivert_dll")
}

#[test]
fn real_kmdf_drivers_from_pypi_cannot_be_judged_by_speakeasy() {
    let dir = tempfile::tempdir().expect("dir");
    let drivers = fetch_windivert(dir.path());
    let mut rows = Vec::new();
    for (file, arch, sha256) in WINDIVERT {
        let path = drivers.join(file);
        let sum = std::process::Command::new("sha256sum")
            .arg(&path)
            .output()
            .expect("sha256sum");
        assert!(
            String::from_utf8_lossy(&sum.stdout).starts_with(sha256),
            "{file}: not the file this test was written for"
        );
        let case = Case {
            name: "windivert",
            arches: &[],
            expected: &[(
                "speakeasy",
                Expect::CannotJudge("calls WdfVersionBind (KMDF; WinDivert"),
            )],
            acceptable: &[
                Expect::CannotJudge("WdfVersionBind"),
                Expect::CannotJudge("WDFLDR"),
            ],
        };
        for &engine in ENGINES {
            if engine == "wine" && *arch == Arch::X86 && !common::wine::wine32_installed() {
                continue;
            }
            let expect = expectations(&case, engine);
            rows.push(run_case(engine, file, *arch, &path, &expect));
        }
    }
    report(&rows);
}
