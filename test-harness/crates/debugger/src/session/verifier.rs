//! The verifier's and the bug check's views: `!verifier`, `!analyze`, and
//! the banners kd prints when the machine bug-checks. The counters come
//! from the machine's verifier (the tracker), the bug check from
//! `nt!KiBugCheckData` in the machine's memory.

use std::fmt::Write as _;

use super::{CommandError, Reply, Session};
use harness_core::arch::Arch;
use harness_core::events::Event;
use harness_core::render;
use harness_core::verdict::BugCheck;
use harness_core::verifier::FLAGS;

/// What the kernel prints when a driver under the verifier loads. Windows
/// follows the build with a code for the settings; the emulator has none.
#[must_use]
pub fn enabled_banner(driver: &str, build: u32) -> String {
    format!(
        "{stars}\n*\n* This is the string you add to your checkin description\n* Driver Verifier: Enabled for {driver} on Build {build}\n*\n{stars}\n",
        stars = "*".repeat(79)
    )
}

const BOX: &str = "*******************************************************************************\n\
*                                                                             *\n\
*                        Bugcheck Analysis                                    *\n\
*                                                                             *\n\
*******************************************************************************\n";

/// `!verifier`'s log flags and what each shows (-verifier.md).
const VERIFIER_LOGS: [(u64, &str); 8] = [
    (0x4, "fault injection information"),
    (0x8, "the IRQL transition log"),
    (0x20, "the deadlock verification log"),
    (0x40, "the forced pending I/O log"),
    (0x80, "the kernel pool allocate/free log"),
    (0x100, "the IRP log"),
    (0x200, "the critical region log"),
    (0x400, "the exception log"),
];

impl Session {
    /// The bug check in `nt!KiBugCheckData`, once the machine has one.
    fn bugcheck_data(&self) -> Option<BugCheck> {
        let data = self.target.nt().data.bugcheck_data;
        let size = self.pointer_size();
        let code = self.target.read_pointer(data)?;
        if code == 0 {
            return None;
        }
        let mut args = [0; 4];
        for (index, arg) in args.iter_mut().enumerate() {
            *arg = self.target.read_pointer(data + size * (index as u64 + 1))?;
        }
        Some(BugCheck::new(u32::try_from(code).ok()?, args))
    }

    /// What kd prints when the machine breaks in after `KeBugCheckEx`.
    pub(super) fn fatal_error_banner(&self) -> String {
        let Some(bugcheck) = self.bugcheck_data() else {
            return String::new();
        };
        format!(
            "\n{}\nBreak instruction exception - code 80000003 (first chance)\n\nA fatal system error has occurred.\nDebugger entered on first try; Bugcheck callbacks have not been invoked.\n\nA fatal system error has occurred.\n\nFor analysis of this file, run !analyze -v\n",
            render::fatal_error(&bugcheck, self.arch())
        )
    }

    /// A fault in the driver's code: Windows bug-checks, as the verifier
    /// rules say (the verdict holds which bug check).
    pub(super) fn fault_banner(&self) -> String {
        let verdict = self.verdict();
        let mut out = String::new();
        // A double fault (stack overflow) reaches KeBugCheckEx straight from
        // the trap handler: no exception is dispatched, so none is shown.
        if let Some(fault) = verdict
            .fault
            .as_ref()
            .filter(|fault| fault.kind != harness_core::verdict::FaultKind::StackOverflow)
        {
            let _ = writeln!(
                out,
                "Access violation - code c0000005 (!!! second chance !!!)\n{}",
                self.location(fault.pc).trim_end()
            );
        }
        if let Some(bugcheck) = &verdict.bugcheck {
            let _ = write!(
                out,
                "\n{}\nA fatal system error has occurred.\n\nFor analysis of this file, run !analyze -v\n",
                render::fatal_error(bugcheck, self.arch())
            );
        }
        out
    }

    /// `!analyze [-v]`.
    pub(super) fn analyze(&self, args: &str) -> Reply {
        let verbose = args.split_whitespace().any(|word| word == "-v");
        let bugcheck = self
            .bugcheck_data()
            .or_else(|| self.verdict().bugcheck)
            .ok_or_else(|| {
                CommandError::Message(
                    "harness kd: the machine has not bug-checked; !analyze analyzes a bug check"
                        .into(),
                )
            })?;
        let verdict = self.verdict();
        let mut out = String::from(BOX);
        out.push('\n');
        if !verbose {
            let _ = write!(
                out,
                "Use !analyze -v to get detailed debugging information.\n\nBugCheck {:X}, {{{}}}\n\nProbably caused by : {}\n\nFollowup:     MachineOwner\n---------\n\n",
                bugcheck.code,
                bugcheck
                    .args
                    .iter()
                    .map(|arg| format!("{arg:x}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                verdict.driver
            );
            return Ok(out);
        }
        let body = render::bugcheck_analysis(&bugcheck, &verdict, self.arch());
        // The arguments, then kd's details header before the BUGCHECK_* fields.
        match body.split_once("\nBUGCHECK_CODE:") {
            Some((head, tail)) => {
                let _ = write!(
                    out,
                    "{head}\nDebugging Details:\n------------------\n\n\nBUGCHECK_CODE:{tail}"
                );
            }
            None => out.push_str(&body),
        }
        let (base, _) = self.target.machine.kernel().image;
        let _ = write!(
            out,
            "\nFAULTING_MODULE: {} {}\n\nFollowup:     MachineOwner\n---------\n\n",
            self.plain(base),
            self.names.driver
        );
        Ok(out)
    }

    /// An address at pointer width with no backtick (`!analyze`'s fields).
    fn plain(&self, value: u64) -> String {
        self.arch().address(value)
    }

    /// `!verifier [flags] [driver]`: the verifier's settings, counters and
    /// the driver's outstanding allocations.
    pub(super) fn verifier(&self, args: &str) -> Reply {
        let mut words = args.split_whitespace();
        let flags = words.next().unwrap_or("0");
        let level = crate::expr::evaluate(flags, self)?;
        // -verifier.md: 4, 8, 0x20, 0x40, 0x80, 0x100, 0x200 and 0x400 alone
        // select one of the verifier's logs (their argument is a Quantity or
        // an Address); the emulated verifier keeps none of them.
        if let Some(log) = VERIFIER_LOGS
            .iter()
            .find(|(flag, _)| *flag == level)
            .map(|(_, log)| log)
        {
            return Err(CommandError::Message(format!(
                "harness kd: !verifier 0x{level:x} shows {log}, which the emulated verifier does not keep"
            )));
        }
        let driver = words.next();
        let file = &self.target.driver().file_name;
        if let Some(name) = driver
            && !name.eq_ignore_ascii_case(file)
            && !name.eq_ignore_ascii_case(&self.names.driver)
        {
            return Ok(format!(
                "{}\nDriver Verification List\n------------------------\n\n",
                self.verifier_summary()
            ));
        }
        let mut out = self.verifier_summary();
        // Bit 1 (pools and outstanding allocations) counts only with bit 0.
        out.push_str(&self.verifier_driver(level & 3 == 3));
        let missing: Vec<&str> = VERIFIER_LOGS
            .iter()
            .filter(|(flag, _)| level & flag != 0)
            .map(|(_, log)| *log)
            .collect();
        if !missing.is_empty() {
            let _ = writeln!(
                out,
                "harness kd: not shown, the emulated verifier does not keep them: {}",
                missing.join(", ")
            );
        }
        Ok(out)
    }

    /// The flags and the global counters.
    fn verifier_summary(&self) -> String {
        let verdict = self.verdict();
        let stats = &verdict.pool_stats;
        let mut out = String::new();
        let enabled = self.target.machine.uc.get_data().verifier_flags;
        let mark = |on: bool| if on { 'X' } else { ' ' };
        let _ = writeln!(
            out,
            "\nVerify Flags Level 0x{:08x}\n\n  STANDARD FLAGS:",
            enabled.0
        );
        // Automatic checks apply whenever any flag is set.
        let _ = writeln!(
            out,
            "    [{}] (0x00000000) Automatic Checks",
            mark(enabled.0 != 0)
        );
        for standard in [true, false] {
            if !standard {
                let _ = writeln!(out, "\n  ADDITIONAL FLAGS:");
            }
            for flag in FLAGS.iter().filter(|flag| flag.standard == standard) {
                let _ = writeln!(
                    out,
                    "    [{}] (0x{:08x}) {}",
                    mark(enabled.has(flag.bit)),
                    flag.bit,
                    flag.name
                );
            }
        }
        let _ = writeln!(
            out,
            "\n    [X] Indicates flag is enabled\n\n\nSummary of All Verifier Statistics\n"
        );
        let calls = |names: &[&str]| {
            self.target
                .machine
                .events()
                .iter()
                .filter(|event| match event {
                    Event::Call { routine, .. } => names
                        .iter()
                        .any(|name| routine.rsplit('!').next() == Some(*name)),
                    _ => false,
                })
                .count()
        };
        let _ = writeln!(
            out,
            "  RaiseIrqls           0x{:x}",
            calls(&["KeRaiseIrql", "KfRaiseIrql", "KeRaiseIrqlToDpcLevel"])
        );
        let _ = writeln!(
            out,
            "  AcquireSpinLocks     0x{:x}",
            calls(&[
                "KeAcquireSpinLock",
                "KfAcquireSpinLock",
                "KeAcquireSpinLockRaiseToDpc",
                "KeAcquireInStackQueuedSpinLock",
                "KeAcquireSpinLockAtDpcLevel"
            ])
        );
        let _ = writeln!(
            out,
            "  Synch Executions     0x{:x}",
            calls(&["KeSynchronizeExecution"])
        );
        let _ = writeln!(out, "  Trims                0x0\n");
        out.push_str(&render::pool_counters(stats));
        out
    }

    /// The driver's section of `!verifier 3`.
    fn verifier_driver(&self, allocations: bool) -> String {
        let verdict = self.verdict();
        let stats = &verdict.pool_stats;
        let arch = self.arch();
        let wide = |value: u64| match arch {
            Arch::X86 => format!("0x{:08x}", value & 0xffff_ffff),
            Arch::X64 => format!("0x{value:016x}"),
        };
        let load_state = if verdict.unloaded() || self.target.driver_unloaded() {
            "Loaded and Unloaded"
        } else {
            "Loaded"
        };
        let arg3 = verdict
            .bugcheck
            .as_ref()
            .map_or(0, |bugcheck| bugcheck.args[2]);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Driver Verification List\n------------------------\n\nnt!_VF_TARGET_DRIVER {}: {} ({load_state})\n",
            wide(arg3),
            verdict.driver
        );
        let _ = writeln!(
            out,
            "    Pool Allocation Statistics: ( NonPagedPool / PagedPool )\n"
        );
        for (label, nonpaged, paged) in [
            (
                "Current Pool Allocations:",
                stats.current_nonpaged.0,
                stats.current_paged.0,
            ),
            (
                "Current Pool Bytes:      ",
                stats.current_nonpaged.1,
                stats.current_paged.1,
            ),
            (
                "Peak Pool Allocations:   ",
                stats.peak_nonpaged.0,
                stats.peak_paged.0,
            ),
            (
                "Peak Pool Bytes:         ",
                stats.peak_nonpaged.1,
                stats.peak_paged.1,
            ),
        ] {
            let _ = writeln!(out, "      {label} ( 0x{nonpaged:08x} / 0x{paged:08x} )");
        }
        let _ = writeln!(
            out,
            "      Contiguous Memory Bytes:       0x00000000\n      Peak Contiguous Memory Bytes:  0x00000000\n"
        );
        if !allocations {
            return out;
        }
        let _ = writeln!(out, "    Pool Allocations:\n");
        let leaks = self.target.machine.kernel().tracker.outstanding();
        let (column, caller) = match arch {
            Arch::X86 => (10, "Caller    "),
            Arch::X64 => (18, "Caller Address    "),
        };
        let _ = writeln!(
            out,
            "      {:<column$}  Length      Tag   {caller}\n      {}  ----------  ----  {}",
            "Address",
            "-".repeat(column),
            "-".repeat(column)
        );
        let unit = arch.pool_granularity();
        for leak in &leaks {
            // The verifier records the size its thunk rounded the request to.
            let length = leak.bytes.div_ceil(unit) * unit;
            let caller_address = leak.caller_address.unwrap_or(0);
            let _ = writeln!(
                out,
                "      {}  0x{length:08x}  {:<4}  {}  {}",
                wide(leak.address),
                leak.tag,
                wide(caller_address),
                self.names
                    .name_of(caller_address)
                    .unwrap_or_else(|| leak.caller.clone())
            );
        }
        let _ = writeln!(
            out,
            "\n    Contiguous allocations are not displayed with public symbols.\n"
        );
        out
    }
}
