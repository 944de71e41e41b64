//! Issue "The emulated machine under attack": drivers (tests/drivers/machine.c)
//! that bug-check through nt's own routines, overwrite nt's code, overflow
//! the kernel stack, halt the processor, run system instructions, or point
//! their unload routine or entry point nowhere. Each engine must give the bug
//! check Windows would raise, or "cannot judge" with one line; never an
//! invented hang and never a pass.

use crate::common;

use std::path::{Path, PathBuf};

use common::{CBuild, Run};
use harness_core::arch::Arch;
use harness_core::verdict::{ExitCode, FaultKind, Limit, Verdict};

/// The emulators that run x86 and x64 drivers.
const ENGINES: [&str; 2] = ["native", "speakeasy"];
const BOTH: [Arch; 2] = [Arch::X64, Arch::X86];

/// Builds `machine.c` with `-DVARIANT_<variant>` (and `defines`) into `dir`.
fn build(variant: &str, arch: Arch, dir: &Path, defines: &[String]) -> PathBuf {
    let suffix = defines.join("_").to_ascii_lowercase().replace('=', "");
    let out = dir.join(format!(
        "{}{suffix}_{arch}.sys",
        variant.to_ascii_lowercase()
    ));
    let mut build = CBuild::new("machine.c", variant);
    build.defines = defines.to_vec();
    common::compile_c(&build, arch, &out);
    out
}

fn run(driver: &Path, engine: &str) -> Run {
    common::emulate_json(driver, &["--engine", engine])
}

/// Runs `variant` on every engine and architecture in `arches`.
fn each_run(variant: &str, arches: &[Arch], check: impl Fn(&str, Arch, &Run)) {
    let dir = tempfile::tempdir().expect("temp dir");
    for &arch in arches {
        let driver = build(variant, arch, dir.path(), &[]);
        for engine in ENGINES {
            check(engine, arch, &run(&driver, engine));
        }
    }
}

/// The bug check of a run that must end in one (exit 3).
fn bugcheck(run: &Run) -> (u32, [u64; 4], Verdict) {
    let verdict = run.expect(ExitCode::Violation).verdict();
    let bugcheck = verdict.bugcheck.clone().expect("a bug check");
    (bugcheck.code, bugcheck.args, verdict)
}

/// `KeBugCheck(0x1234)`: nt's KeBugCheck calls KeBugCheckEx, so the caller
/// KeBugCheckEx sees is nt; the bug check is still the driver's, with
/// parameters 0 (KeBugCheck takes only the code). It once ended as
/// "DriverEntry did not return" on the native engine.
#[test]
fn ke_bug_check_through_nt_is_a_bug_check() {
    each_run("KE_BUG_CHECK", &BOTH, |engine, arch, run| {
        let (code, args, _) = bugcheck(run);
        assert_eq!((code, args), (0x1234, [0; 4]), "{engine} {arch}");
    });
    each_run("KE_BUG_CHECK_EX", &BOTH, |engine, arch, run| {
        let (code, args, _) = bugcheck(run);
        assert_eq!((code, args), (0x1234, [1, 2, 3, 4]), "{engine} {arch}");
    });
}

/// A jump into nt's `int 3` (`RtlpBreakWithStatusInstruction`) with no bug
/// check under way is a breakpoint exception in nt's code, not a bug check
/// and not a hang: the native engine cannot blame it on the driver. (Under
/// Speakeasy the driver finds no `int 3` after KeBugCheck's stand-in and
/// returns normally.)
#[test]
fn a_jump_into_nts_break_is_not_a_hang() {
    let dir = tempfile::tempdir().expect("temp dir");
    for arch in BOTH {
        let driver = build("BREAK_IN_NT", arch, dir.path(), &[]);
        run(&driver, "native").cannot_judge("breakpoint with no debugger attached");
    }
}

/// nt's code is mapped read-only, as Windows maps the kernel's code: a
/// driver's write to it is bug check 0xBE `ATTEMPTED_WRITE_TO_READONLY_MEMORY`
/// with Arg1 the address written (Microsoft's windows-driver-docs,
/// debugger/bug-check-0xbe--attempted-write-to-readonly-memory.md). It once
/// passed on both engines.
#[test]
fn writing_nts_code_is_0xbe() {
    each_run("PATCH_NT", &BOTH, |engine, arch, run| {
        let (code, args, verdict) = bugcheck(run);
        assert_eq!(code, 0xBE, "{engine} {arch}");
        assert_ne!(args[0], 0, "{engine} {arch}: the address written");
        let fault = verdict.fault.expect("the fault");
        assert_eq!(fault.kind, FaultKind::ReadOnlyWrite);
        assert_eq!(fault.accessed, Some(args[0]));
        assert!(
            fault.symbol.contains("DriverEntry"),
            "{engine} {arch}: {}",
            fault.symbol
        );
    });
}

/// Windows 7's kernel stacks are 12 KiB (x86) and 24 KiB (x64) with a guard
/// page below ("How do I keep my driver from running out of kernel-mode
/// stack?", learn.microsoft.com previous-versions dn613940); running into
/// it is a double fault, bug check 0x7F with Arg1 8 (Microsoft's
/// windows-driver-docs, debugger/bug-check-0x7f--unexpected-kernel-mode-trap.md).
/// Recursion of 13 KiB (x86) or 29 KiB (x64) once passed on the native
/// engine's 32 KiB stacks; Speakeasy ran drivers on 4 KiB and blamed an
/// access violation on 8 KiB of recursion.
#[test]
fn kernel_stacks_are_windows_sizes_with_a_guard_page() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (arch, fits, overflows) in [(Arch::X86, 8, 13), (Arch::X64, 18, 29)] {
        let fits = build("RECURSE", arch, dir.path(), &[format!("STACK_KIB={fits}")]);
        let overflows = build(
            "RECURSE",
            arch,
            dir.path(),
            &[format!("STACK_KIB={overflows}")],
        );
        for engine in ENGINES {
            let verdict = run(&fits, engine).expect(ExitCode::Clean).verdict();
            assert!(verdict.bugcheck.is_none(), "{engine} {arch}");
            let (code, args, verdict) = bugcheck(&run(&overflows, engine));
            assert_eq!((code, args), (0x7F, [8, 0, 0, 0]), "{engine} {arch}");
            assert_eq!(
                verdict.fault.map(|fault| fault.kind),
                Some(FaultKind::StackOverflow)
            );
        }
    }
    // kd shows the double fault as kd does: no exception dispatched first.
    let overflows = dir.path().join("recursestack_kib29_x64.sys");
    let kd = common::harness_with_stdin(
        &["kd".as_ref(), overflows.as_os_str()],
        "g\n!analyze -v\nq\n",
    );
    assert!(
        kd.stdout
            .contains("Arg1: 0000000000000008, EXCEPTION_DOUBLE_FAULT"),
        "{}",
        kd.stdout
    );
    assert!(!kd.stdout.contains("Access violation"), "{}", kd.stdout);
    // Unbounded recursion: the same double fault (Speakeasy once said 0x50
    // or 0x7E, an access violation).
    for arch in BOTH {
        let unbounded = build("RECURSE", arch, dir.path(), &["STACK_KIB=1000000".into()]);
        for engine in ENGINES {
            let (code, args, _) = bugcheck(&run(&unbounded, engine));
            assert_eq!((code, args), (0x7F, [8, 0, 0, 0]), "{engine} {arch}");
        }
    }
}

/// `hlt` with interrupts enabled: Windows resumes at the next interrupt,
/// which no engine here raises. It once ended as "stopped after 5000000
/// instructions" after two instructions.
#[test]
fn hlt_with_interrupts_enabled_cannot_be_judged() {
    each_run("HLT", &BOTH, |_, _, run| {
        run.cannot_judge("executes `hlt` at hlt_");
    });
}

/// `cli; hlt`: the processor never resumes, a hang the driver caused,
/// reported as the halt it is and not as an instruction budget.
#[test]
fn cli_hlt_is_a_hang_the_driver_caused() {
    each_run("CLI_HLT", &BOTH, |engine, arch, run| {
        let verdict = run.expect(ExitCode::LoadProblem).verdict();
        assert!(
            matches!(verdict.limit, Some(Limit::Halted { .. })),
            "{engine} {arch}: {:?}",
            verdict.limit
        );
        assert!(verdict.bugcheck.is_none());
    });
}

/// System instructions Unicorn carries out without a processor's checks:
/// `rdmsr` of an MSR no processor has, `wrmsr` EFER=0, `mov crN, 0`, `lgdt`
/// of junk, `syscall` in kernel mode. A real machine raises #GP or resets;
/// no engine here can say which, so none may pass. They all once passed.
#[test]
fn system_instructions_cannot_be_judged() {
    let cases: [(&str, &str, &[Arch]); 7] = [
        ("RDMSR", "executes `rdmsr` at rdmsr_", &BOTH),
        (
            "WRMSR_EFER",
            "executes `wrmsr` at wrmsr_efer_",
            &[Arch::X64],
        ),
        ("CR0", "executes `mov cr0", &BOTH),
        ("CR3", "executes `mov cr3", &BOTH),
        ("CR4", "executes `mov cr4", &BOTH),
        ("LGDT", "executes `lgdt ", &BOTH),
        ("SYSCALL", "executes `syscall` at syscall_", &[Arch::X64]),
    ];
    for (variant, expect, arches) in cases {
        each_run(variant, arches, |_, _, run| run.cannot_judge(expect));
    }
}

/// An unload routine in the null page or at garbage: the worker thread
/// jumps there, an access violation no handler takes, 0x7E with the target
/// as the faulting address. Speakeasy once ran such images as user-mode
/// programs (they import nothing from the kernel) and reported a hang.
#[test]
fn an_unload_routine_nowhere_is_0x7e() {
    for (variant, target) in [("UNLOAD_NULL", 0x10), ("UNLOAD_GARBAGE", 0x4141_4141)] {
        each_run(variant, &BOTH, |engine, arch, run| {
            let (code, args, verdict) = bugcheck(run);
            assert_eq!(
                (code, args),
                (0x7E, [0xC000_0005, target, 0, 0]),
                "{engine} {arch}"
            );
            assert_eq!(verdict.entry_status, Some(0));
        });
    }
}

/// An entry point beyond the image: the jump to it faults before the driver
/// runs an instruction. Speakeasy once reported a hang with no status.
#[test]
fn an_entry_point_beyond_the_image_faults() {
    let dir = tempfile::tempdir().expect("temp dir");
    for arch in BOTH {
        let clean = build("CLEAN", arch, dir.path(), &[]);
        let mut bytes = std::fs::read(&clean).expect("driver");
        let pe = usize::try_from(u32::from_le_bytes(
            bytes[0x3c..0x40].try_into().expect("e_lfanew"),
        ))
        .expect("offset");
        let optional = pe + 24;
        let size_of_image = u32::from_le_bytes(
            bytes[optional + 56..optional + 60]
                .try_into()
                .expect("size"),
        );
        let entry = size_of_image + 0x1_0000;
        bytes[optional + 16..optional + 20].copy_from_slice(&entry.to_le_bytes());
        let beyond = dir.path().join(format!("entry_beyond_{arch}.sys"));
        std::fs::write(&beyond, bytes).expect("write");
        for engine in ENGINES {
            let (_, _, verdict) = bugcheck(&run(&beyond, engine));
            let fault = verdict.fault.expect("the fault");
            assert_eq!(fault.kind, FaultKind::Execute, "{engine} {arch}");
            assert_eq!(fault.accessed, Some(fault.pc), "{engine} {arch}");
            assert_eq!(verdict.entry_status, None);
        }
    }
}
