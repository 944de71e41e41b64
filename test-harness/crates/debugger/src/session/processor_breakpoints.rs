//! `ba`: processor (data) breakpoints, kd's form
//! `ba[ID] Access Size [Address] ["CommandString"]`
//! (MicrosoftDocs/windows-driver-docs, debugger/ba--break-on-access-.md).
//! Access is `e` (execute), `r` (read or write), `w` (write); Size is 1, 2
//! or 4, and 8 on x64 only; `e` takes size 1; the address must be aligned
//! to the size. The processor has four debug registers (DR0-DR3, Intel SDM
//! vol. 3B, 17.2), so at most four are set. A write or read breakpoint is a
//! trap: it stops after the instruction that accessed the bytes, and kd
//! shows the next instruction; an execute breakpoint stops before its
//! instruction, as `bp` does. kd's messages for a bad size, a misaligned
//! address and a fifth breakpoint are the ones a real kd prints
//! ("Unsupported data breakpoint size", "Data breakpoint must be aligned",
//! "Execution data breakpoint too large", "Too many data breakpoints for
//! processor 0").

use super::{Breakpoint, CommandError, Reply, Session};
use crate::expr;
use harness_core::arch::Arch;
use harness_ntemu::machine::{Watch, WatchAccess};

/// Debug registers DR0-DR3.
const DEBUG_REGISTERS: usize = 4;

/// The access a processor breakpoint watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Access {
    /// `e`: an instruction fetched from the address.
    Execute,
    /// `w`: a write.
    Write,
    /// `r`: a read or a write.
    ReadWrite,
}

/// A processor breakpoint's access and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Processor {
    pub access: Access,
    pub size: u64,
}

impl Processor {
    /// `bl`'s type and size (`w 4`, bl--breakpoint-list-.md: "Type and
    /// size information are displayed for data breakpoints").
    pub(super) fn listing(self) -> String {
        let letter = match self.access {
            Access::Execute => 'e',
            Access::Write => 'w',
            Access::ReadWrite => 'r',
        };
        format!("{letter} {}", self.size)
    }

    /// The machine's watch for a read or write breakpoint; `None` for an
    /// execute breakpoint, which the machine stops at as at a `bp`.
    pub(super) const fn watch(self, address: u64) -> Option<Watch> {
        let access = match self.access {
            Access::Execute => return None,
            Access::Write => WatchAccess::Write,
            Access::ReadWrite => WatchAccess::ReadWrite,
        };
        Some(Watch {
            address,
            size: self.size,
            access,
        })
    }
}

/// Access and size from `w4`, `w 4`, `r8`: the breakpoint and the rest.
fn access_and_size(text: &str) -> Option<(char, u64, &str)> {
    let mut chars = text.chars();
    let letter = chars.next()?.to_ascii_lowercase();
    let rest = chars.as_str().trim_start();
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let size = rest[..digits].parse().ok()?;
    Some((letter, size, &rest[digits..]))
}

/// A `ba` command's parts.
struct Request<'a> {
    id: Option<usize>,
    processor: Processor,
    /// The address expression ("" for the current instruction).
    target: &'a str,
    commands: Option<String>,
}

/// Splits `ba[ID] Access Size [Address] ["commands"]`; `None` where kd
/// reports a syntax error.
fn request(raw: &str) -> Result<Option<Request<'_>>, CommandError> {
    let digits = raw.len() - raw.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let id = raw[..digits].parse::<usize>().ok();
    let Some((letter, size, rest)) = access_and_size(raw[digits..].trim_start()) else {
        return Ok(None);
    };
    let access = match letter {
        'e' => Access::Execute,
        'w' => Access::Write,
        'r' => Access::ReadWrite,
        'i' => {
            return Err(CommandError::Message(
                "harness kd: ba i (I/O port breakpoints) is not emulated: the machine has no I/O ports"
                    .into(),
            ));
        }
        _ => return Ok(None),
    };
    let rest = rest.trim();
    if rest.starts_with('/') {
        return Err(CommandError::Message(format!(
            "harness kd: ba options (/1 /p /t /c /C) are not emulated: '{rest}'"
        )));
    }
    let (target, commands) = rest.find('"').map_or((rest, None), |at| {
        let body = rest[at + 1..].trim_end();
        let body = body.strip_suffix('"').unwrap_or(body);
        (rest[..at].trim(), Some(body.to_owned()))
    });
    Ok(Some(Request {
        id,
        processor: Processor { access, size },
        target,
        commands,
    }))
}

impl Session {
    /// `ba[ID] Access Size [Address] ["commands"]`.
    pub(super) fn set_processor_breakpoint(
        &mut self,
        raw: &str,
        text: &str,
        column: usize,
    ) -> Reply {
        let Some(request) = request(raw)? else {
            return Err(CommandError::Syntax {
                column,
                text: text.to_owned(),
            });
        };
        let Processor { access, size } = request.processor;
        let largest = match self.arch() {
            Arch::X86 => 4,
            Arch::X64 => 8,
        };
        if !size.is_power_of_two() || size > largest {
            return Err(CommandError::Message(
                "Unsupported data breakpoint size".into(),
            ));
        }
        let target = request.target;
        // No address: the current instruction (ba--break-on-access-.md).
        let address = if target.is_empty() {
            self.target.ip()
        } else {
            let used = expr::expression_len(target)?;
            if !target[used..].trim().is_empty() {
                return Err(CommandError::Message(format!(
                    "harness kd: pass counts are not supported: '{}'",
                    target[used..].trim()
                )));
            }
            expr::evaluate(target, self)?
        };
        if address & (size - 1) != 0 {
            return Err(CommandError::Message(
                "Data breakpoint must be aligned".into(),
            ));
        }
        if access == Access::Execute && size > 1 {
            return Err(CommandError::Message(
                "Execution data breakpoint too large".into(),
            ));
        }
        // The same access at the same place is redefined under its ID.
        let existing = self.breakpoints.iter().position(|slot| {
            slot.as_ref().is_some_and(|breakpoint| {
                breakpoint.processor == Some(request.processor)
                    && breakpoint.address == Some(address)
            })
        });
        let id = self.breakpoint_id(request.id, existing)?;
        let in_use = self
            .breakpoints
            .iter()
            .enumerate()
            .filter(|(slot, breakpoint)| {
                *slot != id
                    && Some(*slot) != existing
                    && breakpoint
                        .as_ref()
                        .is_some_and(|breakpoint| breakpoint.processor.is_some())
            })
            .count();
        if in_use >= DEBUG_REGISTERS {
            return Err(CommandError::Message(
                "Too many data breakpoints for processor 0".into(),
            ));
        }
        // Real debug registers watch a linear address whatever is mapped
        // there; the emulated processor watches the page under it when the
        // target resumes, so memory mapped later is watched from the next
        // resume on.
        let unmapped = (access != Access::Execute
            && self.target.read_uint(address, 1).is_none())
        .then(|| {
            format!(
                "harness kd: {} is not mapped now: the emulated processor watches it from the first g, p or t after its page is mapped\n",
                self.arch().address(address)
            )
        });
        let breakpoint = Breakpoint {
            expression: target.to_owned(),
            address: Some(address),
            enabled: true,
            commands: request.commands,
            processor: Some(request.processor),
        };
        Ok(self.store_breakpoint(id, existing, breakpoint, unmapped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_and_size_take_kd_spellings() {
        assert_eq!(access_and_size("w4 a"), Some(('w', 4, " a")));
        assert_eq!(access_and_size("R 8"), Some(('r', 8, "")));
        assert_eq!(access_and_size("e1"), Some(('e', 1, "")));
        assert_eq!(access_and_size("w"), None);
        assert_eq!(access_and_size(""), None);
    }

    #[test]
    fn bl_shows_type_and_size() {
        let write = Processor {
            access: Access::Write,
            size: 4,
        };
        assert_eq!(write.listing(), "w 4");
        assert!(write.watch(0x10).is_some());
        let execute = Processor {
            access: Access::Execute,
            size: 1,
        };
        assert_eq!(execute.listing(), "e 1");
        assert_eq!(execute.watch(0x10), None);
    }
}
