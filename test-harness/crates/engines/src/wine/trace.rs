//! Wine's session log, turned into events for one driver.
//!
//! The session runs with `warn+debugstr,+relay,+loaddll,trace+ntoskrnl,
//! warn+seh,trace+seh,trace+unwind,-fixme` (relay limited to the pool routines by
//! `RelayInclude`). Lines are `<thread>:<class>:<channel>:<function> text`,
//! relay lines `<thread>:Call dll.Name(args) ret=<addr>`, and Wine's messages
//! to the user start with `wine: ` and carry no thread prefix. Every line is
//! matched on exact prefixes and fields of those formats:
//!
//! - `trace:loaddll:build_module Loaded L"<path>" at <base>: native`: the
//!   driver was mapped (its thread is the one that loads and runs it);
//! - `err:module:import_dll Library <M> (which is needed by L"<path>") not
//!   found` (dlls/ntdll/loader.c): a module the driver imports is missing;
//! - `Call driver init` / `Ret  driver init ... retval=` / `trace:ntoskrnl:
//!   init_driver - DriverUnload = ` / `Call driver unload` / `Ret  driver
//!   unload` (dlls/ntoskrnl.exe): DriverEntry, its status, the unload routine;
//! - `warn:debugstr:vDbgPrintExWithPrefix <component>:<level>: <text>`: DbgPrint,
//!   a newline added when the text has none (dlls/ntdll/rtl.c); with the
//!   harness's print probe (`wine/print_probe.c`) in the driver's process it is
//!   followed by the `DBG_PRINTEXCEPTION_C` the probe raises with the text:
//!   `trace:seh:dispatch_exception code=40010006 ...`, `... info[0]=<length + 1>`
//!   and `warn:seh:dispatch_exception "<text, escaped>"`, which give the text
//!   as the driver printed it;
//! - `trace:seh:dispatch_exception code=<c> ...`, then `wine: Call from <p> to
//!   unimplemented function <dll>.<name>, aborting` (ntdll's dispatcher, for a
//!   stub's `EXCEPTION_WINE_STUB`) and `trace:unwind:RtlVirtualUnwind type <t>
//!   rip <r> rsp <s>` for each frame the dispatcher walks: the first frame in
//!   the driver is where it called the stub;
//! - `wine: <what> at address <p> (thread <t>), starting debugger...`
//!   (kernelbase's unhandled-exception filter): the process dies;
//! - `err:service:process_send_command receiving command result timed out`
//!   (the SCM stopped waiting for the driver) and `... service protocol error`
//!   (the driver's winedevice.exe went away during a start or stop).

use std::collections::HashMap;

use harness_core::arch::Arch;
use harness_core::events::{Event, Gap, Phase};
use harness_core::pool_api::PoolRoutine;
use harness_core::verdict::{FaultKind, Limit};

/// What Windows keeps of one DbgPrint call: 512 bytes.
pub const DEBUG_PRINT_LIMIT: usize = 512;

/// `EXCEPTION_WINE_STUB`, raised by a stub Wine only pretends to have.
const EXCEPTION_WINE_STUB: u64 = 0x8000_0100;

/// `DBG_PRINTEXCEPTION_C`, raised by DbgPrint when a debugger is present.
const DBG_PRINTEXCEPTION_C: u64 = 0x4001_0006;

/// The driver the log is read for.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// Its file name inside Wine (`HarnessTest_Sample_42.sys`).
    pub file_name: &'a str,
    /// The driver object's name (the service name).
    pub driver_name: &'a str,
    /// Its architecture.
    pub arch: Arch,
    /// `SizeOfImage`, until Wine's trace gives the mapped range.
    pub image_size: u64,
}

/// How the run ended, as the engine saw it from outside the log.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ending {
    /// How long the SCM waits for a start or stop (`ServicesPipeTimeout`).
    pub scm_wait_seconds: u64,
    /// The run's own time limit ended it (seconds).
    pub deadline_seconds: Option<u64>,
    /// The log was cut at this many bytes: the rest was not read.
    pub truncated_at: Option<u64>,
}

/// Turns a session log into events for `subject`.
///
/// Only calls whose return address lies inside the driver count: Wine's own
/// drivers allocate pool too.
#[must_use]
pub fn events_from_log(log: &str, subject: &Subject<'_>, ending: &Ending) -> Vec<Event> {
    let mut parser = Parser::new(subject);
    for line in log.lines() {
        parser.line(line);
    }
    parser.finish(ending)
}

/// Splits `0134:rest` into the thread id and the rest.
fn thread_of(line: &str) -> Option<(u64, &str)> {
    let (tid, rest) = line.split_once(':')?;
    (tid.len() >= 4 && tid.bytes().all(|byte| byte.is_ascii_hexdigit()))
        .then(|| hex(tid).map(|tid| (tid, rest)))
        .flatten()
}

/// How the driver's winedevice.exe ended, if the log says.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Death {
    /// An unhandled exception that is not a CPU fault the harness models.
    Exception(String),
    /// The SCM lost the pipe to the process during a start or stop.
    PipeClosed,
}

struct Parser<'a> {
    subject: &'a Subject<'a>,
    loaded_marker: String,
    needed_marker: String,
    events: Vec<Event>,
    base: Option<u64>,
    size: u64,
    thread: u64,
    phase: Phase,
    /// The driver routine running now (called, not returned).
    running: Option<Phase>,
    entry_status: Option<u32>,
    entry_done: bool,
    pending_calls: HashMap<(u64, String), (Vec<u64>, u64)>,
    missing: Vec<String>,
    /// The last exception code dispatched on the driver's thread.
    exception: Option<u64>,
    /// A stub gap still waiting for its call site.
    stub_gap: Option<StubSite>,
    /// The driver's last DbgPrint, while its exception may still follow.
    print: Option<Print>,
    scm_timed_out: bool,
    death: Option<Death>,
    /// A fault or gap ended what the log can say.
    terminal: bool,
}

impl<'a> Parser<'a> {
    fn new(subject: &'a Subject<'a>) -> Self {
        Self {
            subject,
            loaded_marker: format!("\\\\{}\" at ", subject.file_name),
            needed_marker: format!("\\\\{}\") not found", subject.file_name).to_ascii_lowercase(),
            events: Vec::new(),
            base: None,
            size: subject.image_size,
            thread: 0,
            phase: Phase::Entry,
            running: None,
            entry_status: None,
            entry_done: false,
            pending_calls: HashMap::new(),
            missing: Vec::new(),
            exception: None,
            stub_gap: None,
            print: None,
            scm_timed_out: false,
            death: None,
            terminal: false,
        }
    }

    fn inside(&self, address: u64) -> bool {
        self.base
            .is_some_and(|base| address >= base && address - base < self.size)
    }

    fn line(&mut self, line: &str) {
        if let Some(message) = line.strip_prefix("wine: ") {
            self.message(message);
            return;
        }
        let Some((tid, rest)) = thread_of(line) else {
            return;
        };
        if let Some(text) = rest.strip_prefix("err:module:import_dll Library ") {
            self.import_failed(text);
            return;
        }
        if self.base.is_none() {
            if rest.starts_with("trace:loaddll:build_module Loaded L\"")
                && let Some(at) = rest.find(&self.loaded_marker)
            {
                let after = &rest[at + self.loaded_marker.len()..];
                if let Some(base) = hex(after.split(':').next().unwrap_or("")) {
                    self.base = Some(base);
                    self.thread = tid;
                    self.events.push(Event::Load {
                        arch: self.subject.arch,
                        image_base: base,
                        image_size: self.size,
                        entry_point: 0,
                    });
                }
            }
            return;
        }
        if let Some(text) = rest.strip_prefix("err:service:process_send_command ") {
            if text.starts_with("receiving command result timed out") {
                self.scm_timed_out = true;
            } else if text.starts_with("service protocol error") && self.running.is_some() {
                self.death.get_or_insert(Death::PipeClosed);
            }
            return;
        }
        if tid == self.thread {
            self.driver_thread(rest);
        }
    }

    /// A line of the thread that loaded the driver and runs its routines.
    fn driver_thread(&mut self, rest: &str) {
        if let Some(range) =
            rest.strip_prefix("trace:ntoskrnl:ldr_notify_callback relocating from ")
        {
            self.relocated(range);
        } else if let Some(call) = rest.strip_prefix("Call driver init ") {
            self.entry_called(call);
        } else if rest.starts_with("Ret  driver init ") {
            self.running = None;
            self.entry_status = rest
                .rsplit_once("retval=")
                .and_then(|(_, value)| hex(value))
                .map(|value| u32::try_from(value & 0xffff_ffff).unwrap_or(u32::MAX));
        } else if let Some(value) =
            rest.strip_prefix("trace:ntoskrnl:init_driver - DriverUnload = ")
        {
            self.entry_returned(value);
        } else if rest.starts_with("Call driver unload ") {
            self.phase = Phase::Unload;
            self.running = Some(Phase::Unload);
        } else if rest.starts_with("Ret  driver unload ") {
            self.running = None;
            self.events.push(Event::UnloadReturn);
        } else if let Some(text) = rest.strip_prefix("warn:debugstr:vDbgPrintExWithPrefix ") {
            // `00000000:00000001: <text>`: component and level, then the text.
            let text = text.split_once(": ").map_or("", |(_, text)| text);
            self.print = Some(Print {
                event: self.events.len(),
                traced: text.to_owned(),
                length: None,
                raised: false,
            });
            // As traced, until the print's exception says more.
            self.events.push(Event::DebugPrint {
                phase: self.phase,
                text: format!("{}\n", truncate(text, DEBUG_PRINT_LIMIT - 1)),
            });
        } else if let Some(info) = rest.strip_prefix("trace:seh:dispatch_exception  info[0]=") {
            if let Some(print) = self.print.as_mut().filter(|print| print.raised) {
                print.length = hex(info)
                    .and_then(|value| usize::try_from(value).ok())
                    .and_then(|value| value.checked_sub(1));
            }
        } else if let Some(escaped) = rest.strip_prefix("warn:seh:dispatch_exception \"") {
            self.printed(escaped);
        } else if let Some(call) = rest.strip_prefix("Call ntoskrnl.exe.") {
            self.relay_call(call);
        } else if let Some(ret) = rest.strip_prefix("Ret  ntoskrnl.exe.") {
            self.relay_return(ret);
        } else if let Some(text) = rest.strip_prefix("trace:seh:dispatch_exception code=") {
            self.exception = hex(text.split_whitespace().next().unwrap_or(""));
            match self.print.as_mut() {
                Some(print) if self.exception == Some(DBG_PRINTEXCEPTION_C) && !print.raised => {
                    print.raised = true;
                }
                _ => self.print = None,
            }
        } else if let Some(frame) = rest.strip_prefix("trace:unwind:RtlVirtualUnwind type ") {
            self.unwound(frame);
        } else if rest == "trace:unwind:RtlVirtualUnwind inside prolog." {
            self.site_in_prolog();
        }
    }

    /// The escaped text of the driver's last DbgPrint, from its exception
    /// (`<text>"`, or `<text>"...` when Wine's `debugstr_an` cut it): the
    /// text as printed replaces the traced one when it is whole.
    fn printed(&mut self, escaped: &str) {
        let Some(print) = self.print.take().filter(|print| print.raised) else {
            return;
        };
        let Some(length) = print.length else { return };
        let text = escaped
            .strip_suffix('"')
            .and_then(unescape)
            .filter(|text| text.len() == length)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .or_else(|| {
                // Cut: the traced text, with its newline only if it had one.
                if length == print.traced.len() {
                    Some(print.traced.clone())
                } else {
                    (length == print.traced.len() + 1).then(|| format!("{}\n", print.traced))
                }
            });
        if let (Some(text), Some(Event::DebugPrint { text: shown, .. })) =
            (text, self.events.get_mut(print.event))
        {
            truncate(&text, DEBUG_PRINT_LIMIT - 1).clone_into(shown);
        }
    }

    fn relocated(&mut self, range: &str) {
        // `A-B to C-D`: the mapped range.
        if let Some((from, _)) = range.split_once(" to ")
            && let Some((start, end)) = from.split_once('-')
            && let (Some(start), Some(end)) = (hex(start), hex(end))
            && end > start
        {
            self.size = end - start;
            if let Some(Event::Load { image_size, .. }) = self.events.first_mut() {
                *image_size = self.size;
            }
        }
    }

    fn entry_called(&mut self, call: &str) {
        // `<entry> (obj=<driver object>,str=L"...")`
        if let Some(Event::Load { entry_point, .. }) = self.events.first_mut() {
            *entry_point = hex(call.split_whitespace().next().unwrap_or("")).unwrap_or(0);
        }
        if let Some(object) = call
            .split_once("obj=")
            .and_then(|(_, after)| hex(after.split(',').next().unwrap_or("")))
        {
            self.events.push(Event::DriverObject {
                address: object,
                name: self.subject.driver_name.to_owned(),
            });
        }
        self.phase = Phase::Entry;
        self.running = Some(Phase::Entry);
    }

    fn entry_returned(&mut self, unload: &str) {
        if self.entry_done {
            return;
        }
        self.entry_done = true;
        // `Ret driver init` comes first; a trace without it says nothing of
        // DriverEntry's status, and the run cannot be judged.
        self.events.push(self.entry_status.map_or_else(
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
                unload_routine: hex(unload).unwrap_or(0),
            },
        ));
    }

    fn relay_call(&mut self, call: &str) {
        // `ExAllocatePoolWithTag(00000001,00000074,64636261) ret=021a102a`
        let Some((name, after)) = call.split_once('(') else {
            return;
        };
        let Some((args, return_address)) = after.rsplit_once(") ret=") else {
            return;
        };
        let Some(caller) = hex(return_address) else {
            return;
        };
        if self.inside(caller) {
            let args = args.split(',').filter_map(hex).collect();
            self.pending_calls
                .insert((self.thread, name.to_owned()), (args, caller));
        }
    }

    fn relay_return(&mut self, ret: &str) {
        // `ExAllocatePoolWithTag() retval=014a0370 ret=021a102a`
        let Some((name, after)) = ret.split_once("()") else {
            return;
        };
        let Some((args, caller)) = self.pending_calls.remove(&(self.thread, name.to_owned()))
        else {
            return;
        };
        let result = after
            .split_once("retval=")
            .and_then(|(_, value)| hex(value.split_whitespace().next().unwrap_or("")))
            .unwrap_or(0);
        if let Some(event) = call_event(name, &args, result, caller, self.phase) {
            self.events.push(event);
        }
    }

    /// `<type> rip <address> rsp <address>`: one frame the dispatcher walked.
    fn unwound(&mut self, frame: &str) {
        let index = match self.stub_gap {
            Some(StubSite::Waiting(index)) => index,
            // The unwinder went on from the site taken: it stands.
            Some(StubSite::Taken(_)) | None => {
                self.stub_gap = None;
                return;
            }
        };
        let rip = frame
            .split_once(" rip ")
            .and_then(|(_, after)| hex(after.split_whitespace().next().unwrap_or("")));
        if let Some(rip) = rip.filter(|rip| self.inside(*rip)) {
            if let Some(Event::Gap { caller, .. }) = self.events.get_mut(index) {
                *caller = Some(rip);
            }
            self.stub_gap = Some(StubSite::Taken(index));
        }
    }

    /// The frame just walked is inside its function's prolog: no return
    /// address points there (a call site comes after the prolog), so a
    /// driver frame there is a stale stack slot Wine's unwinder read above a
    /// stub thunk that has no unwind information, and the next driver frame
    /// is the call site.
    fn site_in_prolog(&mut self) {
        let Some(StubSite::Taken(index)) = self.stub_gap else {
            return;
        };
        self.stub_gap = Some(StubSite::Waiting(index));
        if let Some(Event::Gap { caller, .. }) = self.events.get_mut(index) {
            *caller = None;
        }
    }

    /// `Library <M> (which is needed by L"<path>") not found`.
    fn import_failed(&mut self, text: &str) {
        let Some((module, needer)) = text.split_once(" (which is needed by L\"") else {
            return;
        };
        if needer.to_ascii_lowercase().ends_with(&self.needed_marker)
            && !self
                .missing
                .iter()
                .any(|known| known.eq_ignore_ascii_case(module))
        {
            self.missing.push(module.to_owned());
        }
    }

    /// A message Wine prints for the user (`wine: ...`).
    fn message(&mut self, message: &str) {
        if self.base.is_none() || self.terminal {
            return;
        }
        if let Some(stub) = message.strip_prefix("Call from ") {
            // `<address> to unimplemented function <dll>.<name>, aborting`,
            // printed while the stub's exception is dispatched: on the
            // driver's thread if its dispatch_exception line came last.
            if self.exception != Some(EXCEPTION_WINE_STUB) {
                return;
            }
            self.exception = None;
            if let Some(routine) = stub
                .split_once(" to unimplemented function ")
                .map(|(_, routine)| routine.trim_end_matches(", aborting"))
            {
                self.stub_gap = Some(StubSite::Waiting(self.events.len()));
                self.terminal = true;
                self.events.push(Event::Gap {
                    phase: Some(self.phase),
                    gap: Gap::Unimplemented {
                        routine: routine.to_owned(),
                    },
                    caller: None,
                });
            }
            return;
        }
        // `<what> at address <pc> (thread <tid>), starting debugger...`
        let Some((what, after)) = message.split_once(" at address ") else {
            return;
        };
        let mut fields = after.split_whitespace();
        let pc = fields.next().and_then(hex);
        let thread = fields
            .next()
            .filter(|field| *field == "(thread")
            .and_then(|_| fields.next())
            .and_then(|tid| hex(tid.trim_end_matches([')', ','])));
        if thread != Some(self.thread) || what.starts_with("Unimplemented function ") {
            return; // another thread, or the stub already reported
        }
        let Some(pc) = pc else { return };
        if let Some((kind, address)) = fault_kind(what) {
            self.terminal = true;
            self.events.push(Event::Fault {
                phase: self.phase,
                kind,
                pc,
                address: address.filter(|_| kind.is_access()),
            });
        } else {
            let place = if self.inside(pc) {
                "in the driver"
            } else {
                "outside the driver"
            };
            self.death = Some(Death::Exception(format!(
                "winedevice.exe: {} at 0x{pc:x} ({place})",
                what.trim_start_matches("Unhandled ")
            )));
        }
    }

    fn finish(mut self, ending: &Ending) -> Vec<Event> {
        if !self.missing.is_empty() {
            self.events.push(Event::Gap {
                phase: None,
                gap: Gap::MissingModules {
                    modules: std::mem::take(&mut self.missing),
                },
                caller: None,
            });
            self.terminal = true;
        }
        if self.base.is_none() && !self.terminal {
            return self.events;
        }
        if !self.terminal
            && let Some(phase) = self.running
        {
            self.events
                .push(match (&self.death, ending.deadline_seconds) {
                    (Some(Death::Exception(detail)), _) => Event::Gap {
                        phase: Some(phase),
                        gap: Gap::EngineDied {
                            detail: detail.clone(),
                        },
                        caller: None,
                    },
                    (Some(Death::PipeClosed), _) => Event::Gap {
                        phase: Some(phase),
                        gap: Gap::EngineDied {
                            detail: "winedevice.exe went away with no fault in the driver".into(),
                        },
                        caller: None,
                    },
                    (None, _) if self.scm_timed_out => Event::Stopped {
                        phase,
                        limit: Limit::ServiceControl {
                            seconds: ending.scm_wait_seconds,
                        },
                    },
                    (None, Some(seconds)) => Event::Stopped {
                        phase,
                        limit: Limit::Time { seconds },
                    },
                    (None, None) => Event::Gap {
                        phase: Some(phase),
                        gap: Gap::EngineError {
                            message:
                                "Wine's trace ends while the driver runs, with no reason given"
                                    .into(),
                            routine: None,
                        },
                        caller: None,
                    },
                });
        }
        if let Some(bytes) = ending.truncated_at {
            self.events.push(Event::Gap {
                phase: self.running,
                gap: Gap::EngineLimit {
                    detail: format!(
                        "Wine's trace passed {} MiB and the rest was not read",
                        bytes >> 20
                    ),
                },
                caller: None,
            });
        }
        self.events.push(Event::End);
        self.events
    }
}

/// The CPU fault an unhandled-exception message names, and the address
/// accessed (kernelbase's `format_exception_msg`).
fn fault_kind(what: &str) -> Option<(FaultKind, Option<u64>)> {
    if let Some(access) = what.strip_prefix("Unhandled page fault on ") {
        // `write access to 0000000000000010`
        let mut words = access.split_whitespace();
        let kind = match words.next() {
            Some("write") => FaultKind::Write,
            Some("execute") => FaultKind::Execute,
            Some("read") => FaultKind::Read,
            _ => return None,
        };
        let address = access.split_once(" access to ").and_then(|(_, at)| hex(at));
        return Some((kind, address));
    }
    match what {
        "Unhandled page fault" => Some((FaultKind::Read, None)),
        "Unhandled illegal instruction" => Some((FaultKind::IllegalInstruction, None)),
        "Unhandled privileged instruction" => Some((FaultKind::PrivilegedInstruction, None)),
        "Unhandled division by zero" => Some((FaultKind::DivideError, None)),
        // `Unhandled exception 0x80000003 in thread 134`: int3.
        _ if what.starts_with("Unhandled exception 0x80000003 ") => {
            Some((FaultKind::Breakpoint, None))
        }
        _ => None,
    }
}

/// One traced call as an event: a pool routine, raw, or a bug check.
fn call_event(name: &str, args: &[u64], result: u64, caller: u64, phase: Phase) -> Option<Event> {
    if let Some(routine) = PoolRoutine::from_name(name) {
        return Some(Event::PoolCall {
            phase,
            routine,
            args: args.to_vec(),
            result,
            caller,
            injected_failure: false,
            // Wine's trace does not show the IRQL.
            irql: None,
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

/// Where the search for a stub gap's call site stands (the gap's index).
#[derive(Debug, Clone, Copy)]
enum StubSite {
    /// No driver frame walked yet.
    Waiting(usize),
    /// The last frame walked, in the driver, is the site unless the unwinder
    /// says next that it is inside a prolog.
    Taken(usize),
}

/// A DbgPrint seen in the trace, while its `DBG_PRINTEXCEPTION_C` may follow.
#[derive(Debug)]
struct Print {
    /// Its event.
    event: usize,
    /// The text as `vDbgPrintExWithPrefix` traced it (its first line).
    traced: String,
    /// The text's length in bytes, from the exception's `info[0]`.
    length: Option<usize>,
    /// Its exception is being dispatched.
    raised: bool,
}

/// The bytes of a text Wine's `debugstr_an` escaped (`\n`, `\r`, `\t`, `\"`,
/// `\\` and `\xNN`); `None` for any other escape.
fn unescape(escaped: &str) -> Option<Vec<u8>> {
    let mut bytes = Vec::with_capacity(escaped.len());
    let mut rest = escaped.as_bytes();
    while let Some((&byte, after)) = rest.split_first() {
        rest = after;
        if byte != b'\\' {
            bytes.push(byte);
            continue;
        }
        let (&kind, after) = rest.split_first()?;
        rest = after;
        bytes.push(match kind {
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'"' | b'\\' => kind,
            b'x' => {
                let digits = rest.get(..2)?;
                rest = &rest[2..];
                u8::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()?
            }
            _ => return None,
        });
    }
    Some(bytes)
}

/// At most `limit` bytes of `text`, cut at a character boundary.
fn truncate(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn hex(text: &str) -> Option<u64> {
    let text = text.trim().trim_end_matches([',', ')']);
    u64::from_str_radix(text.trim_start_matches("0x"), 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEAKY: &str = include_str!("../../tests/fixtures/wine/leaky-session-x64.log");
    const CRASH: &str = include_str!("../../tests/fixtures/wine/crash-session-x64.log");

    /// A real session log of `tests/drivers/wine_gaps.c` (or
    /// `misbehaving.c`) under Wine 8, for the driver the engine named
    /// `HarnessTest_<stem>_<pid>`.
    fn real(log: &str, ending: &Ending) -> Vec<Event> {
        real_for(Arch::X64, log, ending)
    }

    /// [`real`] for a driver of `arch`.
    fn real_for(arch: Arch, log: &str, ending: &Ending) -> Vec<Event> {
        let service = log
            .split("Services\\\\")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("the log names the service");
        let file_name = format!("{service}.sys");
        let subject = Subject {
            file_name: &file_name,
            driver_name: service,
            arch,
            image_size: 0x6000,
        };
        events_from_log(log, &subject, ending)
    }

    fn subject(file_name: &str) -> Subject<'_> {
        Subject {
            file_name,
            driver_name: "Sample",
            arch: Arch::X64,
            image_size: 0x6000,
        }
    }

    fn gap(events: &[Event]) -> Option<(Gap, Option<u64>)> {
        events.iter().find_map(|event| match event {
            Event::Gap { gap, caller, .. } => Some((gap.clone(), *caller)),
            _ => None,
        })
    }

    #[test]
    fn real_leaky_session_log() {
        let events = events_from_log(LEAKY, &subject("Sample.sys"), &Ending::default());
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
        assert_eq!(events.last(), Some(&Event::End));
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
        let events = events_from_log(CRASH, &subject("crash.sys"), &Ending::default());
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

    #[test]
    fn missing_modules_are_a_gap_before_any_load() {
        for (log, expected) in [
            (
                include_str!("../../tests/fixtures/wine/kmdf-session-x64.log"),
                vec!["WDFLDR.SYS"],
            ),
            (
                include_str!("../../tests/fixtures/wine/missing-modules-session-x64.log"),
                // Wine's loader names every module it cannot find.
                vec!["WDFLDR.SYS", "WppRecorder.sys", "fwpkclnt.sys"],
            ),
        ] {
            let events = real(log, &Ending::default());
            assert!(
                !events
                    .iter()
                    .any(|event| matches!(event, Event::Load { .. }))
            );
            assert_eq!(
                gap(&events),
                Some((
                    Gap::MissingModules {
                        modules: expected.iter().map(|m| (*m).to_owned()).collect()
                    },
                    None
                ))
            );
        }
    }

    #[test]
    fn a_stub_is_a_gap_with_the_call_site_from_the_unwind_trace() {
        for (log, routine, caller) in [
            (
                include_str!("../../tests/fixtures/wine/stub-session-x64.log"),
                "ntoskrnl.exe.MmGetVirtualForPhysical",
                0x21a_103b,
            ),
            (
                include_str!("../../tests/fixtures/wine/ndis-session-x64.log"),
                "ndis.sys.NdisGetVersion",
                0x21a_1036,
            ),
            // The same driver with the print probe run before it on that
            // thread: the slot above the stub thunk held DriverEntry's own
            // address, which the unwinder calls "inside prolog"; the call
            // site is the next frame.
            (
                include_str!("../../tests/fixtures/wine/stub-prolog-session-x64.log"),
                "ndis.sys.NdisGetVersion",
                0x21b_1036,
            ),
        ] {
            let events = real(log, &Ending::default());
            assert_eq!(
                gap(&events),
                Some((
                    Gap::Unimplemented {
                        routine: routine.into()
                    },
                    Some(caller)
                ))
            );
        }
    }

    #[test]
    fn a_stub_caught_by_the_driver_still_comes_before_its_later_crash() {
        let events = real(
            include_str!("../../tests/fixtures/wine/seh-stub-session-x64.log"),
            &Ending::default(),
        );
        let gap_at = events
            .iter()
            .position(|event| matches!(event, Event::Gap { .. }))
            .expect("a gap");
        let caught = events
            .iter()
            .position(
                |event| matches!(event, Event::DebugPrint { text, .. } if text == "caught 1\n"),
            )
            .expect("the driver caught the stub's exception");
        assert!(gap_at < caught);
        // The driver's own crash afterwards is not reported: the run ended
        // for the harness at the gap.
        assert!(
            !events
                .iter()
                .any(|event| matches!(event, Event::Fault { .. }))
        );
    }

    #[test]
    fn a_crash_outside_the_driver_that_is_no_cpu_fault_is_the_engine_dying() {
        let events = real(
            include_str!("../../tests/fixtures/wine/big-dbgprint-session-x64.log"),
            &Ending::default(),
        );
        let Some((Gap::EngineDied { detail }, None)) = gap(&events) else {
            panic!("{events:?}");
        };
        assert!(detail.contains("exception 0x80000005"), "{detail}");
        assert!(detail.contains("outside the driver"), "{detail}");
        for event in &events {
            if let Event::DebugPrint { text, .. } = event {
                assert!(text.len() <= DEBUG_PRINT_LIMIT, "{}", text.len());
            }
        }
    }

    #[test]
    fn a_hung_driver_entry_is_stopped_by_the_scm_wait() {
        let events = real(
            include_str!("../../tests/fixtures/wine/loop-session-x64.log"),
            &Ending {
                scm_wait_seconds: 5,
                ..Ending::default()
            },
        );
        assert!(events.contains(&Event::Stopped {
            phase: Phase::Entry,
            limit: Limit::ServiceControl { seconds: 5 }
        }));
        assert!(gap(&events).is_none());
    }

    #[test]
    fn no_unload_routine_and_a_reused_address() {
        let events = real(
            include_str!("../../tests/fixtures/wine/no-unload-session-x64.log"),
            &Ending::default(),
        );
        assert!(events.iter().any(|event| matches!(
            event,
            Event::EntryReturn {
                status: 0,
                unload_routine: 0
            }
        )));
        let events = real(
            include_str!("../../tests/fixtures/wine/reuse-session-x64.log"),
            &Ending::default(),
        );
        let allocated: Vec<u64> = events
            .iter()
            .filter_map(|event| match event {
                Event::PoolCall {
                    routine, result, ..
                } if routine.allocates() => Some(*result),
                _ => None,
            })
            .collect();
        assert_eq!(allocated.len(), 3);
        assert_eq!(
            allocated[0], allocated[1],
            "Wine's pool handed the address back"
        );
    }

    #[test]
    fn a_truncated_log_and_a_run_out_of_time_are_said() {
        let events = real(
            include_str!("../../tests/fixtures/wine/loop-session-x64.log")
                .replace("receiving command result timed out", "")
                .as_str(),
            &Ending {
                scm_wait_seconds: 60,
                deadline_seconds: Some(3),
                truncated_at: Some(65 << 20),
            },
        );
        assert!(events.contains(&Event::Stopped {
            phase: Phase::Entry,
            limit: Limit::Time { seconds: 3 }
        }));
        assert!(matches!(
            gap(&events),
            Some((Gap::EngineLimit { .. }, None))
        ));
    }

    #[test]
    fn long_debug_prints_are_cut_like_windows_does() {
        let log = format!(
            "0010:trace:loaddll:build_module Loaded L\"C:\\\\d.sys\" at 0000000001000000: native\n\
             0010:Call driver init 0000000001001000 (obj=0000000000376930,str=L\"x\")\n\
             0010:warn:debugstr:vDbgPrintExWithPrefix 00000000:00000001: {}\n",
            "é".repeat(400)
        );
        let events = events_from_log(&log, &subject("d.sys"), &Ending::default());
        let Some(Event::DebugPrint { text, .. }) = events.get(2) else {
            panic!("{events:?}");
        };
        assert!(text.len() <= DEBUG_PRINT_LIMIT && text.ends_with('\n'));
    }

    /// The probe's session logs (`print-probe-session-<arch>.log`, cut to
    /// the driver's thread): a driver that prints "Entering DriverEntry" with
    /// no newline, "Leaving DriverEntry\n", "a\nb\tc\"d\\e", "info 1" at
    /// `DbgPrintEx`'s info level, " level\n", 310 digits with and without a
    /// newline, then writes to 0x10.
    fn probed(arch: Arch) -> (&'static str, Vec<Event>) {
        let log = match arch {
            Arch::X64 => include_str!("../../tests/fixtures/wine/print-probe-session-x64.log"),
            Arch::X86 => include_str!("../../tests/fixtures/wine/print-probe-session-x86.log"),
        };
        let events = real_for(arch, log, &Ending::default());
        (log, events)
    }

    fn prints(events: &[Event]) -> Vec<&str> {
        events
            .iter()
            .filter_map(|event| match event {
                Event::DebugPrint { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn with_the_probe_each_print_is_its_text_as_printed() {
        let digits = "0123456789".repeat(31);
        let with_newline = format!("{digits}\n");
        for arch in Arch::ALL {
            let (_, events) = probed(arch);
            assert_eq!(
                prints(&events),
                [
                    "Entering DriverEntry",
                    "Leaving DriverEntry\n",
                    "a\nb\tc\"d\\e",
                    "info 1",
                    " level\n",
                    // Cut by debugstr_an ("..."): the traced line, whose
                    // newline the exception's length confirms or removes.
                    with_newline.as_str(),
                    digits.as_str(),
                ],
                "{arch}"
            );
            // The probe's handler let kernelbase print the crash as before.
            assert!(
                events.iter().any(|event| matches!(
                    event,
                    Event::Fault {
                        kind: FaultKind::Write,
                        address: Some(0x10),
                        ..
                    }
                )),
                "{arch}: {events:?}"
            );
        }
    }

    #[test]
    fn without_the_print_exception_the_trace_is_all_there_is() {
        for arch in Arch::ALL {
            let (log, _) = probed(arch);
            let bare = log
                .lines()
                .filter(|line| !line.contains(":seh:"))
                .collect::<Vec<_>>()
                .join("\n");
            let events = real_for(arch, &bare, &Ending::default());
            let shown = prints(&events);
            assert_eq!(shown.len(), 7, "{arch}");
            assert!(shown.iter().all(|text| text.ends_with('\n')), "{shown:?}");
            assert_eq!(shown[0], "Entering DriverEntry\n");
        }
    }

    #[test]
    fn an_escaped_text_is_decoded_or_refused() {
        assert_eq!(
            unescape(r#"a\nb\tc\"d\\e\xe9\x01"#).as_deref(),
            Some(&b"a\nb\tc\"d\\e\xe9\x01"[..])
        );
        assert_eq!(unescape(r"\q"), None);
        assert_eq!(unescape(r"\x4"), None);
        assert_eq!(unescape("\\"), None);
    }
}
