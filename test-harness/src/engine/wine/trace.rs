//! Wine's session log, turned into events for one driver.

use std::collections::HashMap;

use crate::arch::Arch;
use crate::events::{Event, Gap, Phase};
use crate::pool_api::PoolRoutine;
use crate::verdict::FaultKind;

/// Turns a session log into events for the driver `file_name`.
///
/// Only calls whose return address lies inside the driver count: Wine's own
/// drivers allocate pool too.
#[must_use]
#[allow(clippy::too_many_lines)]
pub fn events_from_log(log: &str, file_name: &str, image_size: u64) -> Vec<Event> {
    let mut events = Vec::new();
    let mut base = None;
    let mut size = image_size;
    let mut thread = String::new();
    let mut phase = Phase::Entry;
    let mut pending: HashMap<String, (String, Vec<u64>, u64)> = HashMap::new();
    let mut entry_status = None;
    let mut entry_done = false;
    let driver_name = file_name
        .rsplit_once('.')
        .map_or(file_name, |(stem, _)| stem)
        .to_owned();
    let loaded = format!("\\\\{file_name}\" at ");
    for line in log.lines() {
        let (tid, rest) = line.split_once(':').unwrap_or(("", line));
        if base.is_none() {
            if let Some(at) = line.find(&loaded).filter(|_| line.contains("Loaded L\"")) {
                base = hex(line[at + loaded.len()..].split(':').next().unwrap_or(""));
                tid.clone_into(&mut thread);
                if let Some(base) = base {
                    events.push(Event::Load {
                        arch: Arch::X64,
                        image_base: base,
                        image_size: size,
                        entry_point: 0,
                    });
                }
            }
            continue;
        }
        let Some(base) = base else { continue };
        if let Some(range) =
            rest.strip_prefix("trace:ntoskrnl:ldr_notify_callback relocating from ")
        {
            // `A-B to C-D`: the mapped range.
            if let Some((from, _)) = range.split_once(" to ")
                && let Some((start, end)) = from.split_once('-')
                && let (Some(start), Some(end)) = (hex(start), hex(end))
            {
                size = end - start;
                if let Some(Event::Load { image_size, .. }) = events.first_mut() {
                    *image_size = size;
                }
            }
            continue;
        }
        let inside = |address: u64| address >= base && address < base + size;
        if let Some(rest) = rest.strip_prefix("Call driver init ") {
            if let Some(Event::Load { entry_point, .. }) = events.first_mut() {
                *entry_point = hex(rest.split_whitespace().next().unwrap_or("")).unwrap_or(0);
            }
            if let Some(object) = rest
                .split_once("obj=")
                .and_then(|(_, after)| hex(after.split(',').next().unwrap_or("")))
            {
                events.push(Event::DriverObject {
                    address: object,
                    name: driver_name.clone(),
                });
            }
            phase = Phase::Entry;
        } else if rest.starts_with("Ret  driver init ") {
            entry_status = rest
                .rsplit_once("retval=")
                .and_then(|(_, value)| hex(value.trim()))
                .map(|value| u32::try_from(value & 0xffff_ffff).unwrap_or(u32::MAX));
        } else if let Some(value) = rest
            .strip_prefix("trace:ntoskrnl:init_driver - DriverUnload = ")
            .filter(|_| tid == thread && !entry_done)
        {
            entry_done = true;
            // `Ret driver init` comes first; a trace without it says nothing
            // of DriverEntry's status, and the run cannot be judged.
            events.push(entry_status.map_or_else(
                || Event::Gap {
                    phase: Some(Phase::Entry),
                    gap: Gap::EngineError {
                        message: "Wine's trace has no status for DriverEntry".into(),
                        routine: None,
                    },
                    caller: None,
                },
                |status| Event::EntryReturn {
                    status,
                    unload_routine: hex(value).unwrap_or(0),
                },
            ));
        } else if rest.starts_with("Call driver unload ") {
            phase = Phase::Unload;
        } else if rest.starts_with("Ret  driver unload ") {
            events.push(Event::UnloadReturn);
        } else if let Some(text) = rest
            .strip_prefix("warn:debugstr:")
            .filter(|_| tid == thread)
        {
            // `vDbgPrintExWithPrefix 00000000:00000001: <text>`
            let text = text.split_once(": ").map_or("", |(_, text)| text);
            events.push(Event::DebugPrint {
                phase,
                text: format!("{text}\n"),
            });
        } else if let Some(call) = rest.strip_prefix("Call ntoskrnl.exe.") {
            // `ExAllocatePoolWithTag(00000001,00000074,64636261) ret=021a102a`
            let Some((name, after)) = call.split_once('(') else {
                continue;
            };
            let Some((args, return_address)) = after.rsplit_once(") ret=") else {
                continue;
            };
            let Some(caller) = hex(return_address) else {
                continue;
            };
            if inside(caller) {
                let args = args.split(',').filter_map(hex).collect();
                pending.insert(format!("{tid}:{name}"), (name.to_owned(), args, caller));
            }
        } else if let Some(ret) = rest.strip_prefix("Ret  ntoskrnl.exe.") {
            let Some((name, after)) = ret.split_once("()") else {
                continue;
            };
            let Some((name, args, caller)) = pending.remove(&format!("{tid}:{name}")) else {
                continue;
            };
            let result = after
                .split_once("retval=")
                .and_then(|(_, value)| hex(value.split_whitespace().next().unwrap_or("")))
                .unwrap_or(0);
            if let Some(event) = pool_event(&name, &args, result, caller, phase) {
                events.push(event);
            }
        } else if let Some(fault) = line.strip_prefix("wine: Unhandled ") {
            // `page fault on write access to 0000000000000010 at address 00000000021A1031 (thread 0134), ...`
            let pc = fault
                .split_once(" at address ")
                .and_then(|(_, after)| hex(after.split_whitespace().next().unwrap_or("")));
            let accessed = fault
                .split_once(" access to ")
                .and_then(|(_, after)| hex(after.split_whitespace().next().unwrap_or("")));
            // Wine's words for the exception (dlls/ntdll, "Unhandled %s").
            let kind = if let Some(access) = fault.strip_prefix("page fault on ") {
                match access.split_whitespace().next() {
                    Some("write") => Some(FaultKind::Write),
                    Some("execute") => Some(FaultKind::Execute),
                    Some("read") => Some(FaultKind::Read),
                    _ => None,
                }
            } else if fault.starts_with("illegal instruction") {
                Some(FaultKind::IllegalInstruction)
            } else if fault.starts_with("privileged instruction") {
                Some(FaultKind::PrivilegedInstruction)
            } else if fault.starts_with("divide by zero") {
                Some(FaultKind::DivideError)
            } else if fault.starts_with("breakpoint") {
                Some(FaultKind::Breakpoint)
            } else {
                None
            };
            if let (Some(kind), Some(pc)) = (kind, pc) {
                events.push(Event::Fault {
                    phase,
                    kind,
                    pc,
                    address: accessed.filter(|_| kind.is_access()),
                });
            }
        }
    }
    if base.is_some() {
        events.push(Event::End);
    }
    events
}

/// One traced call as an event: a pool routine, raw, or a bug check.
fn pool_event(name: &str, args: &[u64], result: u64, caller: u64, phase: Phase) -> Option<Event> {
    if let Some(routine) = PoolRoutine::from_name(name) {
        return Some(Event::PoolCall {
            phase,
            routine,
            args: args.to_vec(),
            result,
            caller,
            injected_failure: false,
        });
    }
    let arg = |index: usize| args.get(index).copied().unwrap_or(0);
    (name == "KeBugCheckEx").then(|| Event::BugCheckCall {
        phase,
        code: u32::try_from(arg(0) & 0xffff_ffff).unwrap_or(0),
        args: [arg(1), arg(2), arg(3), arg(4)],
        caller,
    })
}

fn hex(text: &str) -> Option<u64> {
    let text = text.trim().trim_end_matches([',', ')']);
    u64::from_str_radix(text.trim_start_matches("0x"), 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEAKY: &str = include_str!("../../../tests/fixtures/wine/leaky-session-x64.log");
    const CRASH: &str = include_str!("../../../tests/fixtures/wine/crash-session-x64.log");

    #[test]
    fn real_leaky_session_log() {
        let events = events_from_log(LEAKY, "Sample.sys", 0x6000);
        assert!(matches!(
            events[0],
            Event::Load {
                image_base: 0x21A_0000,
                image_size: 0x6000,
                entry_point: 0x21A_1000,
                ..
            }
        ));
        let allocs: Vec<_> = events
            .iter()
            .filter(|event| matches!(event, Event::PoolCall { routine, .. } if routine.allocates()))
            .collect();
        assert_eq!(
            allocs.len(),
            1,
            "Wine's own drivers' allocations are left out"
        );
        assert!(
            matches!(
                allocs[0],
                Event::PoolCall {
                    routine: PoolRoutine::ExAllocatePoolWithTag,
                    args,
                    result: 0x14a_0370,
                    caller: 0x21a_102a,
                    ..
                } if args == &[1, 0x74, 0x6463_6261]
            ),
            "{:?}",
            allocs[0]
        );
        assert!(events.contains(&Event::EntryReturn {
            status: 0,
            unload_routine: 0x21A_13E0
        }));
        assert!(events.contains(&Event::UnloadReturn));
        assert!(
            !events.iter().any(
                |event| matches!(event, Event::PoolCall { routine, .. } if !routine.allocates())
            )
        );
        let text: String = events
            .iter()
            .filter_map(|event| match event {
                Event::DebugPrint { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert!(text.starts_with("original registry path: \\Registry\\Machine\\System\\CurrentControlSet\\Services\\Sample\n"));
        assert!(text.ends_with("Sample driver Unload called\n"));
    }

    #[test]
    fn real_crash_session_log() {
        let events = events_from_log(CRASH, "crash.sys", 0x6000);
        let fault = events.iter().find_map(|event| match event {
            Event::Fault {
                kind, pc, address, ..
            } => Some((*kind, *pc, *address)),
            _ => None,
        });
        assert_eq!(
            fault,
            Some((FaultKind::Write, 0x21A_1031, Some(0x10))),
            "the crash is a write fault in DriverEntry"
        );
    }
}
