//! `!thread` and `!process 0 0`: the emulated kernel's `ETHREAD`s and its
//! one process, System, read from the machine's memory with Windows 7
//! SP1's layouts (harness-core's `wdm::Thread` and `wdm::Process`, which
//! cite their sources).
//!
//! Forms from debugger/-thread.md's example (Windows 10) and real Windows
//! 7 SP1 x64 sessions with today's kd (a bug check 0x7E's `!thread` on a
//! system worker: `Win32 Start Address nt!ExpWorkerThread (0x...)`,
//! `Stack Init ... Current ...` then `Base ... Limit ... Call ...`); on x86
//! the stack fields share one line (Windows Internals 7th ed., part 1, ch.
//! 6, and Windows 7 x86 sessions). `!process 0 0`: debugger/-process.md's
//! example and real Windows 7 x64 sessions (`PROCESS fffffa801916b5d0`, then
//! `SessionId: none  Cid: 0004    Peb: 00000000  ParentCid: 0000`,
//! `DirBase: ...  ObjectTable: ...  HandleCount: 560.`, `Image: System`);
//! x86 kd keeps `SessionId` on the `PROCESS` line.

use std::fmt::Write as _;

use super::{CommandError, Reply, Session};
use crate::expr;
use harness_core::arch::Arch;
use harness_core::wdm::{self, thread_state};
use harness_ntemu::system::{TIME_INCREMENT, current_thread_offset};

/// `DISPATCHER_HEADER.Type` of a thread (WRK ke.h `ThreadObject`).
const THREAD_OBJECT: u64 = 6;

/// `DISPATCHER_HEADER.Type` of a process (WRK ke.h `ProcessObject`).
const PROCESS_OBJECT: u64 = 3;

/// Processes listed at most (a corrupt list could loop).
const MAX_PROCESSES: usize = 64;

/// `CrossThreadFlags.ActiveImpersonationInfo` (bit 3).
const ACTIVE_IMPERSONATION_INFO: u64 = 1 << 3;

impl Session {
    /// `!thread [Address]`: the current thread (`KPCR`'s `CurrentThread`)
    /// or the one at Address.
    pub(super) fn thread_display(&self, args: &str) -> Reply {
        let thread = self.thread_to_show(args)?;
        let layout = wdm::Thread::for_arch(self.arch());
        let field = |offset: u64, size: usize| self.target.read_uint(thread + offset, size);
        let pointer = |offset: u64| self.target.read_pointer(thread + offset).unwrap_or(0);
        let ptr = self.pointer_size();
        let wide = |value: u64| self.arch().address(value);
        let process = pointer(layout.process);
        let attached = pointer(layout.apc_process);
        let mut out = format!(
            "THREAD {}  Cid {:04x}.{:04x}  Teb: {} Win32Thread: {} RUNNING on processor {:x}\n",
            wide(thread),
            pointer(layout.cid),
            pointer(layout.cid + ptr),
            wide(pointer(layout.teb)),
            wide(pointer(layout.win32_thread)),
            field(layout.next_processor, 4).unwrap_or(0),
        );
        if field(layout.cross_thread_flags, 4).unwrap_or(0) & ACTIVE_IMPERSONATION_INFO == 0 {
            out.push_str("Not impersonating\n");
        } else {
            out.push_str("harness kd: the thread impersonates; its token is not emulated\n");
        }
        let _ = writeln!(
            out,
            "Owning Process            {}       Image:         {}",
            wide(process),
            self.image_file_name(process)
        );
        if attached == process {
            out.push_str("Attached Process          N/A            Image:         N/A\n");
        } else {
            let _ = writeln!(
                out,
                "Attached Process          {}       Image:         {}",
                wide(attached),
                self.image_file_name(attached)
            );
        }
        let ticks = self.tick_count();
        let wait_time = field(layout.wait_time, 4).unwrap_or(0);
        let _ = writeln!(
            out,
            "Wait Start TickCount      {wait_time:<15}Ticks: {}",
            ticks.wrapping_sub(wait_time) & 0xffff_ffff
        );
        let _ = writeln!(
            out,
            "Context Switch Count      {:<15}IdealProcessor: {:<14}",
            field(layout.context_switches, 4).unwrap_or(0),
            field(layout.ideal_processor, 4).unwrap_or(0)
        );
        let _ = writeln!(
            out,
            "UserTime                  {}\nKernelTime                {}",
            duration(field(layout.user_time, 4).unwrap_or(0)),
            duration(field(layout.kernel_time, 4).unwrap_or(0))
        );
        let start = pointer(layout.win32_start_address);
        let hex = |value: u64| self.arch().address(value);
        match self.names.name_of(start) {
            Some(name) => {
                let _ = writeln!(out, "Win32 Start Address {name} (0x{})", hex(start));
            }
            None => {
                let _ = writeln!(out, "Win32 Start Address 0x{}", hex(start));
            }
        }
        let stack = format!(
            "Stack Init {} Current {}",
            hex(pointer(layout.initial_stack)),
            hex(pointer(layout.kernel_stack))
        );
        let limits = format!(
            "Base {} Limit {} Call {}",
            hex(pointer(layout.stack_base)),
            hex(pointer(layout.stack_limit)),
            hex(pointer(layout.callback_stack))
        );
        let separator = if self.arch() == Arch::X86 { " " } else { "\n" };
        let _ = writeln!(out, "{stack}{separator}{limits}");
        let flags = field(layout.cross_thread_flags, 4).unwrap_or(0);
        let signed = |offset: u64| {
            let byte = u8::try_from(field(offset, 1).unwrap_or(0)).unwrap_or(0);
            i8::from_ne_bytes([byte])
        };
        let _ = writeln!(
            out,
            "Priority {} BasePriority {} PriorityDecrement {} IoPriority {} PagePriority {}",
            signed(layout.priority),
            signed(layout.base_priority),
            signed(layout.priority_decrement),
            (flags >> 10) & 7,
            (flags >> 13) & 7
        );
        // The stack as `kb` shows it, without the frame numbers.
        let frames = self.backtrace("kb", "")?;
        for line in frames.lines() {
            let _ = writeln!(out, "{}", line.get(3..).unwrap_or_default());
        }
        Ok(out)
    }

    /// The thread `!thread` shows: the current one, or the one at the
    /// argument if it is that one (a waiting thread's display is not
    /// emulated).
    fn thread_to_show(&self, args: &str) -> Result<u64, CommandError> {
        let current = self.current_thread_in_pcr()?;
        let thread = if args.is_empty() {
            current
        } else {
            let mut words = args.split_whitespace();
            let address = expr::evaluate(words.next().unwrap_or_default(), self)?;
            if words.next().is_some() {
                return Err(CommandError::Message(
                    "harness kd: !thread takes no flags here (the default display is shown)".into(),
                ));
            }
            address
        };
        if self.target.read_uint(thread, 1) != Some(THREAD_OBJECT) {
            return Err(CommandError::Message(format!(
                "harness kd: {} is not a thread (its Type is not ThreadObject)",
                self.arch().address(thread)
            )));
        }
        let layout = wdm::Thread::for_arch(self.arch());
        let state = self.target.read_uint(thread + layout.state, 1).unwrap_or(0);
        if state != thread_state::RUNNING || thread != current {
            return Err(CommandError::Message(format!(
                "harness kd: thread {} is not running (State {state}): the display of a waiting thread (its wait blocks and stack) is not emulated",
                self.arch().address(thread)
            )));
        }
        Ok(thread)
    }

    /// `!process 0 0 [ImageName]`: every process on `nt!PsActiveProcessHead`,
    /// three lines each.
    pub(super) fn process_display(&self, args: &str) -> Reply {
        let words: Vec<&str> = args.split_whitespace().collect();
        let (process, flags, image) = match words.as_slice() {
            [process, flags] => (*process, *flags, None),
            [process, flags, image] => (*process, *flags, Some(*image)),
            _ => {
                return Err(CommandError::Message(
                    "harness kd: only !process 0 0 [ImageName] and !process Address 0 are emulated (the thread lists of flags 1-0x1f are not; !thread shows the current thread)".into(),
                ));
            }
        };
        let mut process = expr::evaluate(process, self)?;
        if expr::evaluate(flags, self)? != 0 {
            return Err(CommandError::Message(
                "harness kd: only Flags 0 are emulated (!thread shows the current thread)".into(),
            ));
        }
        if process != 0 {
            if image.is_some() {
                return Err(CommandError::Message(
                    "harness kd: ImageName goes with Process 0 (!process 0 0 System)".into(),
                ));
            }
            // -1: the current process (-process.md).
            if process == u64::MAX >> (64 - 8 * self.pointer_size()) || process == u64::MAX {
                process = self.target.current_process();
            }
            if self.target.read_uint(process, 1) != Some(PROCESS_OBJECT) {
                return Err(CommandError::Message(format!(
                    "harness kd: {} is not a process (its Type is not ProcessObject; a process id is not looked up)",
                    self.arch().address(process)
                )));
            }
            return Ok(self.process_summary(process));
        }
        let head = self
            .target
            .nt()
            .symbol("PsActiveProcessHead")
            .ok_or_else(|| CommandError::Message("harness kd: no nt!PsActiveProcessHead".into()))?;
        let links = wdm::Process::for_arch(self.arch()).active_process_links;
        let mut out = String::from("**** NT ACTIVE PROCESS DUMP ****\n");
        let mut entry = self.target.read_pointer(head).unwrap_or(head);
        for _ in 0..MAX_PROCESSES {
            if entry == head || entry == 0 {
                break;
            }
            let process = entry.wrapping_sub(links);
            let wanted =
                image.is_none_or(|name| self.image_file_name(process).eq_ignore_ascii_case(name));
            if wanted {
                out.push_str(&self.process_summary(process));
            }
            entry = self.target.read_pointer(entry).unwrap_or(head);
        }
        Ok(out)
    }

    /// One process as `!process Address 0` shows it, and a blank line.
    fn process_summary(&self, process: u64) -> String {
        let layout = wdm::Process::for_arch(self.arch());
        let pointer = |offset: u64| self.target.read_pointer(process + offset).unwrap_or(0);
        let session = pointer(layout.session);
        let session = if session == 0 {
            "none".to_owned()
        } else {
            format!("{session:x}")
        };
        let ids = format!(
            "SessionId: {session}  Cid: {:04x}    Peb: {:08x}  ParentCid: {:04x}",
            pointer(layout.unique_process_id),
            pointer(layout.peb),
            pointer(layout.inherited_from_unique_process_id)
        );
        let address = match self.arch() {
            Arch::X86 => format!("{}  {ids}", self.arch().address(process)),
            Arch::X64 => format!("{}\n    {ids}", self.arch().address(process)),
        };
        // No handle table: kd's zeros for a process without one.
        let table = pointer(layout.object_table);
        let table = if table == 0 {
            "00000000".to_owned()
        } else {
            format!("{table:x}")
        };
        format!(
            "PROCESS {address}\n    DirBase: {:08x}  ObjectTable: {table}  HandleCount: {:>3}.\n    Image: {}\n\n",
            pointer(layout.directory_table_base),
            0,
            self.image_file_name(process)
        )
    }

    /// `EPROCESS.ImageFileName`, up to its NUL.
    fn image_file_name(&self, process: u64) -> String {
        let offset = wdm::Process::for_arch(self.arch()).image_file_name;
        let bytes = self.target.read(process + offset, 15).unwrap_or_default();
        bytes
            .iter()
            .take_while(|byte| **byte != 0)
            .map(|byte| char::from(*byte))
            .collect()
    }

    /// `KPCR`'s `CurrentThread`, as kd's `!thread` finds it.
    fn current_thread_in_pcr(&self) -> Result<u64, CommandError> {
        let pcr = self
            .target
            .nt()
            .symbol("KiInitialPcr")
            .ok_or_else(|| CommandError::Message("harness kd: no nt!KiInitialPcr".into()))?;
        Ok(self
            .target
            .read_pointer(pcr + current_thread_offset(self.arch()))
            .unwrap_or(0))
    }

    /// `nt!KeTickCount`'s low 32 bits.
    fn tick_count(&self) -> u64 {
        self.target
            .nt()
            .symbol("KeTickCount")
            .and_then(|address| self.target.read_uint(address, 4))
            .unwrap_or(0)
    }
}

/// Clock ticks as kd's `hh:mm:ss.mmm`.
fn duration(ticks: u64) -> String {
    let millis = ticks.saturating_mul(TIME_INCREMENT) / 10_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        millis / 3_600_000,
        millis / 60_000 % 60,
        millis / 1000 % 60,
        millis % 1000
    )
}
