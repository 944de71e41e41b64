//! The target and its last event: `.lastevent`, `.bugcheck`, `vertarget`,
//! `version`, `!irql`. Every value is read from the emulated machine: the
//! bug check from `nt!KiBugCheckData`, the build from `nt!NtBuildNumber`,
//! the IRQL from the machine's processor state.

use std::fmt::Write as _;

use super::{CommandError, Reply, Session};
use harness_core::arch::Arch;
use harness_ntemu::machine::Stop;

/// What `.lastevent` says of a stop, in kd's words; `None` for a stop that
/// is no debug event (the scenario ending, a limit), which leaves the last
/// event as it was.
///
/// kd reports breakpoints, `int 3` and the bug check's break-in alike as
/// the break instruction exception (the walkthrough's own lines); a
/// finished step is a single-step exception (`STATUS_SINGLE_STEP`,
/// 0x80000004, ntstatus.h); a fault is the access violation the fault
/// banner shows.
pub(super) const fn event_description(stop: &Stop) -> Option<&'static str> {
    match stop {
        Stop::Break(_) | Stop::Breakpoint(_) | Stop::BugCheck => {
            Some("Break instruction exception - code 80000003 (first chance)")
        }
        // A data breakpoint is the processor's debug exception, which
        // Windows raises as STATUS_SINGLE_STEP (WRK, KiTrap01 in
        // base/ntos/ke/i386/trap.asm).
        Stop::Stepped | Stop::Watch(_) => {
            Some("Single step exception - code 80000004 (first chance)")
        }
        Stop::Fault => Some("Access violation - code c0000005 (!!! second chance !!!)"),
        Stop::Finished | Stop::CannotJudge(_) | Stop::Limit(_) => None,
    }
}

/// kd's name of an IRQL, by architecture (wdm.h's `*_LEVEL` values: x86
/// `HIGH_LEVEL` 31, `CLOCK2_LEVEL` 28; x64 `HIGH_LEVEL` 15, `CLOCK_LEVEL`
/// 13, `SYNCH_LEVEL` 12). kd calls level 0 `LOW_LEVEL` (the `!irql` page
/// of MicrosoftDocs/windows-driver-docs, debugger/-irql.md).
const fn irql_name(irql: u8, arch: Arch) -> Option<&'static str> {
    match (irql, arch) {
        (0, _) => Some("LOW_LEVEL"),
        (1, _) => Some("APC_LEVEL"),
        (2, _) => Some("DISPATCH_LEVEL"),
        (31, Arch::X86) | (15, Arch::X64) => Some("HIGH_LEVEL"),
        (28, Arch::X86) => Some("CLOCK2_LEVEL"),
        (13, Arch::X64) => Some("CLOCK_LEVEL"),
        (12, Arch::X64) => Some("SYNCH_LEVEL"),
        _ => None,
    }
}

/// The product name kd puts before "Kernel Version" for a kernel's
/// major.minor (`Windows 7 Kernel Version 7601 ...`, real vertarget output
/// quoted in docs/kd/commands.md).
pub(super) const fn product_name(major: u32, minor: u32) -> &'static str {
    match (major, minor) {
        (6, 0) => "Windows Vista",
        (6, 1) => "Windows 7",
        (6, 2) => "Windows 8",
        (6, 3) => "Windows 8.1",
        (10, _) => "Windows 10",
        _ => "Windows",
    }
}

impl Session {
    /// `.lastevent`: the event the target last stopped for.
    pub(super) fn last_event(&self) -> String {
        self.last_event.as_deref().map_or_else(
            || {
                "harness kd: no event yet (the target starts stopped before the driver loads)\n"
                    .to_owned()
            },
            |event| format!("Last event: {event}\n"),
        )
    }

    /// `.bugcheck`: `nt!KiBugCheckData` (the code, then four pointer-sized
    /// arguments), all zero until the machine bug-checks, as on Windows.
    /// Form: `Bugcheck code 0000001E` / ``Arguments ffffffff`c0000005 ...``
    /// (MicrosoftDocs/windows-driver-docs, debugger/bug-check-0x1e--kmode-
    /// exception-not-handled.md and real x64 sessions).
    pub(super) fn bugcheck(&self) -> Reply {
        let data = self.target.nt().data.bugcheck_data;
        let size = self.pointer_size();
        let mut values = [0_u64; 5];
        for (index, value) in values.iter_mut().enumerate() {
            let at = data + size * index as u64;
            *value = self.target.read_pointer(at).ok_or_else(|| {
                CommandError::Message(format!(
                    "Unable to read bugcheck data at {}",
                    self.address(at)
                ))
            })?;
        }
        let arguments: Vec<String> = values[1..]
            .iter()
            .map(|value| self.address(*value))
            .collect();
        Ok(format!(
            "Bugcheck code {:08X}\nArguments {}\n",
            values[0] & 0xffff_ffff,
            arguments.join(" ")
        ))
    }

    /// `vertarget`: the kernel's version line, then its base. The build
    /// number and free/checked come from `nt!NtBuildNumber` (0xF0000000 |
    /// build on a free build, 0xC0000000 | build on a checked one); the
    /// version and service pack from the emulated kernel's profile (what
    /// `RtlGetVersion` reports). Form from real Windows 7 sessions:
    /// "Windows 7 Kernel Version 7601 (Service Pack 1) MP (1 procs) Free x64",
    /// "Machine Name:", ``Kernel base = 0xfffff800`02e1f000 ...``.
    pub(super) fn vertarget(&self) -> Reply {
        let address = self.target.nt().data.build_number;
        let Some(build_number) = self.target.read_uint(address, 4) else {
            return Err(CommandError::Message(format!(
                "Unable to read nt!NtBuildNumber at {}",
                self.address(address)
            )));
        };
        let profile = &self.target.machine.kernel().profile;
        let kind = if build_number >> 28 == 0xC {
            "Checked"
        } else {
            "Free"
        };
        let service_pack = if profile.service_pack.is_empty() {
            String::new()
        } else {
            format!(" ({})", profile.service_pack)
        };
        let platform = match self.arch() {
            Arch::X86 => "x86 compatible",
            Arch::X64 => "x64",
        };
        let mut out = String::new();
        // The emulated machine has one processor; Windows 7 runs the
        // multiprocessor kernel on it, so kd says "MP (1 procs)".
        let _ = writeln!(
            out,
            "{} Kernel Version {}{service_pack} MP (1 procs) {kind} {platform}",
            product_name(profile.major, profile.minor),
            build_number & 0xffff
        );
        out.push_str("Machine Name:\n");
        let _ = writeln!(
            out,
            "Kernel base = 0x{}",
            self.address(self.target.nt().base)
        );
        Ok(out)
    }

    /// `version`: the target's version, then the debugger's (this one is
    /// the harness's kd, not Microsoft's).
    pub(super) fn version(&self) -> Reply {
        let mut out = self.vertarget()?;
        let _ = writeln!(
            out,
            "\nharness kd {} (kd commands on the emulated machine)",
            env!("CARGO_PKG_VERSION")
        );
        Ok(out)
    }

    /// `!irql [processor]`: the IRQL the processor ran at when the target
    /// stopped. Form: `Debugger saved IRQL for processor 0x0 -- 0
    /// (LOW_LEVEL)` (debugger/-irql.md); a processor the machine has not
    /// gets kd's "Cannot get PRCB address".
    pub(super) fn irql(&self, args: &str) -> Reply {
        if !args.is_empty() && crate::expr::evaluate(args, self)? != 0 {
            return Err(CommandError::Message("Cannot get PRCB address".into()));
        }
        let irql = self.target.machine.kernel().irql;
        let name =
            irql_name(irql, self.arch()).map_or_else(String::new, |name| format!(" ({name})"));
        Ok(format!(
            "Debugger saved IRQL for processor 0x0 -- {irql}{name}\n"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn irql_names_follow_the_architecture() {
        assert_eq!(irql_name(0, Arch::X86), Some("LOW_LEVEL"));
        assert_eq!(irql_name(2, Arch::X64), Some("DISPATCH_LEVEL"));
        assert_eq!(irql_name(28, Arch::X86), Some("CLOCK2_LEVEL"));
        assert_eq!(irql_name(12, Arch::X64), Some("SYNCH_LEVEL"));
        assert_eq!(irql_name(12, Arch::X86), None);
    }

    #[test]
    fn steps_and_breaks_are_different_events() {
        assert_eq!(
            event_description(&Stop::Stepped),
            Some("Single step exception - code 80000004 (first chance)")
        );
        assert_eq!(event_description(&Stop::Finished), None);
        assert_eq!(product_name(6, 1), "Windows 7");
    }
}
