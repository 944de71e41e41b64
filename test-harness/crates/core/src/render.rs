//! Verdicts as text, in the shape the walkthrough's debugger shows them:
//! the fatal-error banner, `!analyze -v`'s arguments and `!verifier 3`.

use std::fmt::Write;

use crate::arch::Arch;
use crate::nt;
use crate::verdict::{BugCheck, Engine, Outcome, PoolStats, Verdict};
use crate::verifier::VerifierFlags;

/// What starts each line of the driver's debug output in a report, so
/// that `analyze` never reads a driver's DbgPrint (a fake `*** Fatal
/// System Error` banner, `Arg1:` lines) as the verdict.
pub const DEBUG_OUTPUT_MARK: &str = "DbgPrint| ";

/// The whole report for `emulate` and `analyze` (text mode).
#[must_use]
pub fn report(verdict: &Verdict) -> String {
    let mut out = String::new();
    let arch = verdict.arch.unwrap_or(Arch::X64);
    let _ = writeln!(
        out,
        "{} ({}){}, engine: {}",
        verdict.driver,
        verdict
            .arch
            .map_or_else(|| "arch unknown".into(), |arch| arch.to_string()),
        match verdict.verifier_flags {
            Some(flags) if flags != VerifierFlags::default() => {
                format!(" under Driver Verifier flags {flags} ({})", flags.names())
            }
            _ if verdict.verifier => " under Driver Verifier pool tracking (0x8)".to_owned(),
            _ => String::new(),
        },
        verdict.engine
    );
    if !verdict.debug_output.is_empty() || !verdict.pool_hits.is_empty() {
        out.push('\n');
        let mut hits = verdict.pool_hits.iter().peekable();
        for (index, line) in verdict.debug_output.iter().enumerate() {
            while let Some(hit) = hits.next_if(|hit| hit.after_debug_lines <= index) {
                out.push_str(&pool_hit(hit, arch));
            }
            let _ = writeln!(out, "{DEBUG_OUTPUT_MARK}{}", visible(line));
        }
        for hit in hits {
            out.push_str(&pool_hit(hit, arch));
        }
    }
    out.push('\n');
    let _ = writeln!(out, "{}", outcome_line(verdict));
    for note in &verdict.notes {
        let _ = writeln!(out, "note: {note}");
    }
    if let Some(fault) = &verdict.fault {
        let accessed = fault
            .accessed
            .map(|at| format!(" accessing {}", arch.address(at)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "The driver crashed: {} at {} ({}){accessed}",
            fault.kind.describe(),
            arch.address(fault.pc),
            fault.symbol
        );
    }
    if let Some(bugcheck) = &verdict.bugcheck {
        out.push('\n');
        out.push_str(&analyze(bugcheck, verdict, arch));
    }
    if (verdict.engine != Engine::Kd && verdict.verifier) || !verdict.leaks.is_empty() {
        out.push('\n');
        out.push_str(&verifier3(verdict, arch));
    }
    out
}

/// The driver's text with terminal control characters shown as escapes.
///
/// `\x1b`, `\x07`, `\r`, `\u{202e}`: a driver's DbgPrint must not clear
/// the screen, retitle the window or hide text from the reader. Newlines
/// and tabs are kept.
#[must_use]
pub fn visible(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            '\r' => out.push_str("\\r"),
            // C0, DEL and C1 (0x9b is a one-byte CSI).
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            // Bidirectional overrides and isolates reorder what is shown.
            '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

fn outcome_line(verdict: &Verdict) -> String {
    let status = verdict.entry_status.map_or_else(String::new, |status| {
        format!(
            "DriverEntry returned 0x{status:08X}{}; ",
            status_name(status)
        )
    });
    let limit = verdict
        .limit
        .map_or_else(String::new, |limit| format!(" ({limit})"));
    let what = match verdict.outcome() {
        Outcome::Unloaded if verdict.leaks.is_empty() && verdict.verifier => {
            "the unload routine ran; no pool allocations outstanding: PASS".to_owned()
        }
        // Only pool tracking keeps the list the unload is checked against
        // (0xC4 / 0x62 "occurs only when the Pool Tracking option ... is
        // active"): say what was not checked.
        Outcome::Unloaded if verdict.leaks.is_empty() => {
            "the unload routine ran; pool tracking (0x8) is off, so outstanding allocations were not checked: PASS".to_owned()
        }
        Outcome::Unloaded => "the unload routine ran".to_owned(),
        Outcome::EntryFailed => {
            "the driver did not load; the I/O manager unloaded the image".to_owned()
        }
        Outcome::CannotUnload => {
            "the driver set no unload routine, so it cannot be unloaded (sc stop: error 1052, ERROR_INVALID_SERVICE_CONTROL)".to_owned()
        }
        Outcome::EntryDidNotReturn => format!("DriverEntry did not return{limit}"),
        Outcome::UnloadDidNotReturn => format!("the unload routine did not return{limit}"),
        Outcome::BugCheck => format!(
            "the system bug-checked: {}",
            verdict
                .bugcheck
                .as_ref()
                .map_or("", |bugcheck| bugcheck.name.as_str())
        ),
        Outcome::StillLoaded if verdict.leaks.is_empty() => {
            "no bug check and no unload in this output: the driver is still loaded, nothing was judged at unload".to_owned()
        }
        Outcome::StillLoaded => {
            "no bug check and no unload in this output: the driver is still loaded, so the allocations below are outstanding, not (yet) leaked".to_owned()
        }
    };
    format!("{status}{what}")
}

fn status_name(status: u32) -> String {
    nt::status_name(status).map_or_else(String::new, |name| format!(" ({name})"))
}

fn pool_hit(hit: &crate::verdict::PoolHit, arch: Arch) -> String {
    // An allocation shows what it got; a free, what it gave back.
    let what = hit.bytes.map_or_else(
        || arch.address(hit.address),
        |bytes| format!("0x{bytes:x} bytes -> {}", arch.address(hit.address)),
    );
    format!(
        "Break instruction exception - code 80000003 (first chance)\n\
         nt!PoolHitTag: nt!{api} {what}\n # Call Site\n00 nt!{api}\n01 {}\n",
        hit.caller,
        api = hit.api,
    )
}

/// The fatal-error banner and `!analyze -v`'s bug check section.
#[must_use]
pub fn analyze(bugcheck: &BugCheck, verdict: &Verdict, arch: Arch) -> String {
    format!(
        "{}\n{}",
        fatal_error(bugcheck, arch),
        bugcheck_analysis(bugcheck, verdict, arch)
    )
}

/// kd's two `*** Fatal System Error` lines, the arguments at the target's
/// pointer width.
#[must_use]
pub fn fatal_error(bugcheck: &BugCheck, arch: Arch) -> String {
    let short = |value: u64| format!("0x{value:0width$X}", width = arch.pointer_digits());
    format!(
        "*** Fatal System Error: 0x{:08x}\n                       ({})\n",
        bugcheck.code,
        bugcheck
            .args
            .iter()
            .map(|arg| short(*arg))
            .collect::<Vec<_>>()
            .join(",")
    )
}

/// What `!analyze -v` says after each argument: the bug check page's
/// parameter descriptions.
const fn argument_notes(bugcheck: &BugCheck) -> [&str; 4] {
    match (bugcheck.code, bugcheck.args[0]) {
        (0xC4, 0x62) => [
            bugcheck.description.as_str(),
            "name of the driver having the issue.",
            "verifier internal structure with driver information.",
            "total # of (paged+nonpaged) allocations that weren't freed.",
        ],
        (0xC4, 0x10) => [bugcheck.description.as_str(), "bad address.", "0", "0"],
        // The 0xC4 page's parameter columns.
        (0xC4, 0x01 | 0x02) => [
            bugcheck.description.as_str(),
            "current IRQL.",
            "pool type.",
            "size of allocation, in bytes.",
        ],
        (0xC4, 0x11 | 0x12) => [
            bugcheck.description.as_str(),
            "current IRQL.",
            "pool type.",
            "address of pool.",
        ],
        // The 0xC1, 0xD5 and 0xD6 pages' parameters.
        (0xC1, _) => [
            "address that the driver tried to free.",
            "address where bits are corrupted.",
            "reserved.",
            "0x24: bytes after the end of the allocation were overwritten; 0x23: bytes nearby in the same page.",
        ],
        (0xD5 | 0xD6, _) => [
            "memory address referenced.",
            "0: read, 1: write.",
            "address that referenced memory.",
            "reserved.",
        ],
        // The 0xE1 page's parameters (debugger/bug-check-0xe1--worker-thread-returned-at-bad-irql.md).
        (0xE1, _) => [
            "address of the worker routine (ln on it finds the driver).",
            "IRQL that the worker thread returned at.",
            "work item parameter.",
            "work item address.",
        ],
        (0xC4, 0x13 | 0x14) => [
            bugcheck.description.as_str(),
            "reserved.",
            "pointer to pool header.",
            "pool header contents.",
        ],
        (0x7E, _) => [
            "The exception code that was not handled.",
            "The address that the exception occurred at.",
            "Exception Record Address.",
            "Context Record Address.",
        ],
        (0x50, _) => [
            "memory referenced.",
            "value 0 = read operation, 1 = write operation, 10 = execute.",
            "If non-zero, the instruction address which referenced the bad memory address.",
            "(reserved)",
        ],
        _ => [bugcheck.description.as_str(), "", "", ""],
    }
}

/// `!analyze -v`'s bug check section: the name, the arguments and the
/// `BUGCHECK_*` fields (x86 values sign-extended, as kd keeps them).
#[must_use]
pub fn bugcheck_analysis(bugcheck: &BugCheck, verdict: &Verdict, arch: Arch) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} ({:x})", bugcheck.name, bugcheck.code);
    if bugcheck.code == 0xC4 {
        out.push_str(
            "A device driver attempting to corrupt the system has been caught.  This is\n\
             because the driver was specified in the registry as being suspect (by the\n\
             administrator) and the kernel has enabled substantial checking of this driver.\n\
             If the driver attempts to corrupt the system, bugchecks 0xC4, 0xC1 and 0xA will\n\
             be among the most commonly seen crashes.\n",
        );
    }
    let arg_notes = argument_notes(bugcheck);
    out.push_str("Arguments:\n");
    for (index, (arg, note)) in bugcheck.args.iter().zip(arg_notes).enumerate() {
        let _ = writeln!(out, "Arg{}: {}, {note}", index + 1, arch.address(*arg));
    }
    if bugcheck.code == 0xC4 && bugcheck.args[0] == 0x62 {
        let _ = writeln!(
            out,
            "\tType !verifier 3 drivername.sys for info on the allocations\n\tthat were leaked that caused the bugcheck."
        );
    }
    out.push('\n');
    let _ = writeln!(out, "BUGCHECK_CODE:  {:x}", bugcheck.code);
    for (index, arg) in bugcheck.args.iter().enumerate() {
        let shown = match arch {
            Arch::X86 if arg & 0x8000_0000 != 0 => arg | 0xffff_ffff_0000_0000,
            _ => *arg,
        };
        let _ = writeln!(out, "BUGCHECK_P{}: {shown:x}", index + 1);
    }
    let module = verdict
        .driver
        .rsplit_once('.')
        .map_or(verdict.driver.as_str(), |(stem, _)| stem);
    let _ = writeln!(
        out,
        "\nIMAGE_NAME:  {}\nMODULE_NAME: {module}",
        verdict.driver
    );
    if let Some(fault) = &verdict.fault {
        let _ = writeln!(out, "FAULTING_IP: {}", fault.symbol);
    }
    out
}

/// `!verifier`'s pool counters, as kd prints them: the allocation counts,
/// then current and peak allocations and bytes per pool, each block
/// followed by a blank line.
#[must_use]
pub fn pool_counters(stats: &PoolStats) -> String {
    let mut out = String::new();
    for (label, value) in [
        ("Pool Allocations Attempted            ", stats.attempted),
        ("Pool Allocations Succeeded            ", stats.succeeded),
        ("Pool Allocations Succeeded SpecialPool", stats.special),
        ("Pool Allocations With NO TAG          ", stats.no_tag),
        ("Pool Allocations Failed               ", stats.failed),
    ] {
        let _ = writeln!(out, "  {label} 0x{value:x}");
    }
    out.push('\n');
    for (label, (count, bytes)) in [
        ("Current paged pool allocations   ", stats.current_paged),
        ("Peak paged pool allocations      ", stats.peak_paged),
        ("Current nonpaged pool allocations", stats.current_nonpaged),
        ("Peak nonpaged pool allocations   ", stats.peak_nonpaged),
    ] {
        let _ = writeln!(out, "  {label}      0x{count:x} for {bytes:08X} bytes");
    }
    out.push('\n');
    out
}

/// `!verifier 3 <driver>`: the pool counters and the outstanding allocations.
#[must_use]
pub fn verifier3(verdict: &Verdict, arch: Arch) -> String {
    let stats = &verdict.pool_stats;
    let mut out = String::new();
    let _ = writeln!(out, "kd> !verifier 3 {}\n", verdict.driver);
    let (level, mark) = if verdict.verifier {
        (0x8, 'X')
    } else {
        (0, ' ')
    };
    let _ = writeln!(
        out,
        "Verify Flags Level 0x{level:08x}\n\n  [{mark}] (0x00000008) Pool tracking\n"
    );
    out.push_str(&pool_counters(stats));
    // The module line carries the load state, as the debugger's does. The
    // entry address is 0 outside a real machine (like 0xC4/0x62's Arg3).
    let _ = writeln!(
        out,
        "Driver Verification List\n------------------------\n\nnt!_VF_TARGET_DRIVER 0x{}: {} ({})\n",
        arch.address(0),
        verdict.driver,
        if verdict.unloaded() {
            "Loaded and Unloaded"
        } else {
            "Loaded"
        }
    );
    let _ = writeln!(out, "    Pool Allocations:\n");
    let width = arch.pointer_digits() + 2;
    let _ = writeln!(out, "      {:<width$}  Length      Tag   Caller", "Address");
    let _ = writeln!(
        out,
        "      {}  ----------  ----  ----------",
        "-".repeat(width)
    );
    for leak in &verdict.leaks {
        // The verifier shows the pool block's size, rounded up; debugger
        // output already shows it so.
        let granularity = arch.pool_granularity();
        let shown = if verdict.engine.is_emulator() {
            leak.bytes.div_ceil(granularity) * granularity
        } else {
            leak.bytes
        };
        let caller_address = leak
            .caller_address
            .map(|at| format!("0x{}  ", arch.address(at)))
            .unwrap_or_default();
        // Without a symbol the caller is its address: print it once.
        let symbol =
            if leak.caller_address.map(|at| format!("0x{at:x}")) == Some(leak.caller.clone()) {
                ""
            } else {
                leak.caller.as_str()
            };
        let _ = writeln!(
            out,
            "      0x{}  0x{shown:08x}  {:<4}  {caller_address}{symbol}",
            arch.address(leak.address),
            leak.tag,
        );
    }
    if verdict.leaks.is_empty() {
        let _ = writeln!(out, "      (none outstanding)");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::visible;

    #[test]
    fn control_characters_become_escapes() {
        assert_eq!(
            visible("a\x1b[2J\x07\r\u{9b}\u{202e}b\tc\n\\REGISTRY"),
            "a\\x1b[2J\\x07\\r\\x9b\\u{202e}b\tc\n\\REGISTRY"
        );
    }
}
