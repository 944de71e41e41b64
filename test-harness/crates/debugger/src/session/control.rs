//! Running the target: `g`, `gu`, `p`, `t`, and breakpoints (`bp`, `bu`,
//! `bl`, `bc`, `bd`, `be`).

use std::fmt::Write as _;

use iced_x86::{Decoder, DecoderOptions};

use super::{Breakpoint, CommandError, Reply, Session};
use crate::expr;
use harness_ntemu::machine::{Stop, Watch};

/// How a stop at the session's own temporary breakpoint is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arrival {
    /// `gu`, `g <address>`: the location.
    Location,
    /// `p`: the registers and the location, as after a step.
    Step,
}

/// Most times breakpoint commands (`gc`) resume the target in one command.
const MAX_RESUMES: u64 = 100_000;

/// Most steps one `p`/`t` takes: each is shown, so the output stays bounded.
pub const MAX_STEPS: u64 = 10_000;

/// `k`, `kb`, `kv`, `kn`, `kvn`, `kbn`, `kp`...: `k` and option letters.
#[must_use]
pub fn is_stack_command(name: &str) -> bool {
    name.strip_prefix('k').is_some_and(|options| {
        options
            .chars()
            .all(|c| matches!(c, 'b' | 'v' | 'n' | 'p' | 'f' | 'c'))
    })
}

impl Session {
    /// Runs until the next stop, with an optional breakpoint of the
    /// session's own (`gu`, `p`, `g <address>`). A breakpoint whose command
    /// string resumes (`gc`) runs on without showing the stop.
    fn run(&mut self, temporary: Option<u64>, arrival: Arrival) -> Reply {
        self.runnable()?;
        let mut out = self.resolve_deferred();
        let mut list = Vec::new();
        let mut ids = Vec::new();
        let mut watches = Vec::new();
        let mut watch_ids = Vec::new();
        for (id, breakpoint) in self.breakpoints.iter().enumerate() {
            if let Some(Breakpoint {
                address: Some(address),
                enabled: true,
                processor,
                ..
            }) = breakpoint
            {
                if let Some(watch) = processor.and_then(|processor| processor.watch(*address)) {
                    watches.push(watch);
                    watch_ids.push(Some(id));
                } else {
                    list.push((*address, true));
                    ids.push(Some(id));
                }
            }
        }
        if let Some(address) = temporary {
            list.push((address, true));
            ids.push(None);
        }
        // A watch's stop is numbered after the code breakpoints.
        let code_breakpoints = ids.len();
        ids.extend(watch_ids);
        let mut resumed = 0_u64;
        loop {
            let stop = match self.resume_once(&list, &watches)? {
                Stop::Watch(index) => Stop::Watch(code_breakpoints + index),
                other => other,
            };
            let own = matches!(stop, Stop::Breakpoint(index) if ids.get(index) == Some(&None));
            let shown = if own && arrival == Arrival::Step {
                Stop::Stepped
            } else {
                stop.clone()
            };
            let commands = match stop {
                Stop::Breakpoint(index) | Stop::Watch(index) => ids
                    .get(index)
                    .copied()
                    .flatten()
                    .and_then(|id| self.breakpoints.get(id).cloned().flatten())
                    .and_then(|breakpoint| breakpoint.commands),
                _ => None,
            };
            let Some(commands) = commands else {
                // The session's own breakpoint prints no "Breakpoint N hit" (`ids` has no number for it).
                out.push_str(&self.report(&shown, &ids));
                return Ok(out);
            };
            // The commands run where it stopped, before the stop is shown.
            out.push_str(&self.new_output());
            self.sync();
            let outcome = self.breakpoint_commands(&commands);
            let runs_on = outcome.resume && !self.quit && !self.interrupted();
            if runs_on && resumed < MAX_RESUMES {
                resumed += 1;
                out.push_str(&outcome.output);
                continue;
            }
            if outcome.resume && resumed >= MAX_RESUMES {
                let _ = writeln!(
                    out,
                    "harness kd: a breakpoint's commands resumed 0n{MAX_RESUMES} times; stopped here"
                );
            }
            out.push_str(&self.report(&shown, &ids));
            out.push_str(&outcome.output);
            return Ok(out);
        }
    }

    /// Sets the breakpoints and lets the machine run to its next stop.
    fn resume_once(
        &mut self,
        list: &[(u64, bool)],
        watches: &[Watch],
    ) -> Result<Stop, CommandError> {
        let refused = |error| CommandError::Message(format!("harness kd: {error}"));
        self.target.machine.set_breakpoints(list).map_err(refused)?;
        self.target.machine.set_watches(watches).map_err(refused)?;
        let ip = self.target.ip();
        // Resuming from a breakpoint runs its instruction first (unless the
        // machine resumes elsewhere: past an `int 3` it broke on).
        let resumes_here = self
            .target
            .machine
            .kernel()
            .resume_at
            .is_none_or(|at| at == ip);
        if resumes_here && list.iter().any(|(address, _)| *address == ip) {
            self.target.machine.pass_breakpoint_at(ip);
        }
        let stop = self.target.machine.resume();
        let _ = self.target.machine.set_breakpoints(&[]);
        let _ = self.target.machine.set_watches(&[]);
        Ok(stop)
    }

    /// `g [address]`.
    pub(super) fn go(&mut self, args: &str) -> Reply {
        if args.starts_with('=') {
            return Err(CommandError::Message(
                "harness kd: g = StartAddress is not emulated (it moves the instruction pointer)"
                    .into(),
            ));
        }
        let temporary = if args.is_empty() {
            None
        } else {
            Some(expr::evaluate(args, self)?)
        };
        self.run(temporary, Arrival::Location)
    }

    /// `gu`: run until the current function returns.
    pub(super) fn go_up(&mut self) -> Reply {
        self.runnable()?;
        let frames = self.frames();
        let Some(return_address) = frames
            .first()
            .map(|frame| frame.return_address)
            .filter(|address| *address != 0)
        else {
            return Err(CommandError::Message(
                "harness kd: the current function has no caller to return to".into(),
            ));
        };
        self.run(Some(return_address), Arrival::Location)
    }

    /// `t [Count]`, `p [Count]`: `Count` steps, each one shown, stopping
    /// early where the target stops for anything else (p--step-.md,
    /// t--trace-.md: "Count ... the number of instructions ... to step
    /// through"; each step's display is kd's default). `= address` is
    /// not supported: it moves the instruction pointer.
    pub(super) fn step(&mut self, over: bool, args: &str) -> Reply {
        if args.starts_with('=') {
            return Err(CommandError::Message(
                "harness kd: p/t = StartAddress is not emulated (it moves the instruction pointer)"
                    .into(),
            ));
        }
        let count = if args.is_empty() {
            1
        } else {
            expr::evaluate(args, self)?
        };
        if count > MAX_STEPS {
            return Err(CommandError::Message(format!(
                "harness kd: at most 0n{MAX_STEPS} steps per command, not 0n{count}"
            )));
        }
        let mut out = String::new();
        for _ in 0..count {
            if self.interrupted() {
                // kd's break-in: Ctrl-C ends a long trace where it is.
                out.push_str("^C\n");
                break;
            }
            self.last_stop = None;
            let more = if over {
                self.step_over()?
            } else {
                self.step_into()?
            };
            // Each step shows as it is taken; a closed stdout ends the trace.
            match self.streaming {
                Some(emit) => {
                    if emit(&out).and_then(|()| emit(&more)).is_err() {
                        break;
                    }
                    out.clear();
                }
                None => out.push_str(&more),
            }
            if self.last_stop != Some(Stop::Stepped) || self.runnable().is_err() {
                break;
            }
        }
        Ok(out)
    }

    /// `t`: one instruction.
    pub(super) fn step_into(&mut self) -> Reply {
        self.runnable()?;
        let mut out = self.resolve_deferred();
        // No breakpoints are set while stepping: one instruction runs.
        let stop = self.target.machine.step();
        out.push_str(&self.report(&stop, &[]));
        Ok(out)
    }

    /// `p`: one instruction, running whole calls.
    pub(super) fn step_over(&mut self) -> Reply {
        self.runnable()?;
        let ip = self.target.ip();
        let bytes = self.target.read(ip, 16).unwrap_or_default();
        let bitness = if self.pointer_size() == 4 { 32 } else { 64 };
        let instruction = Decoder::with_ip(bitness, &bytes, ip, DecoderOptions::NONE).decode();
        let over = instruction.is_call_near()
            || instruction.is_call_far()
            || instruction.is_call_near_indirect()
            || instruction.has_rep_prefix()
            || instruction.has_repne_prefix();
        if over && !instruction.is_invalid() {
            self.run(Some(instruction.next_ip()), Arrival::Step)
        } else {
            self.step_into()
        }
    }

    /// Evaluates an expression with the driver's names visible even before
    /// it is loaded (deferred breakpoints: the image is already in place).
    fn evaluate_with_driver(&mut self, text: &str) -> Result<u64, expr::ExprError> {
        let mapped = self.names.mapped;
        if !self.target.machine.started() {
            self.names.mapped = true;
        }
        let result = expr::evaluate(text, self);
        self.names.mapped = mapped;
        result
    }

    /// Resolves deferred breakpoints whose module is now known; returns the
    /// notes for those that land inside an instruction.
    fn resolve_deferred(&mut self) -> String {
        let mut notes = String::new();
        let pending: Vec<(usize, String)> = self
            .breakpoints
            .iter()
            .enumerate()
            .filter_map(|(id, breakpoint)| {
                breakpoint
                    .as_ref()
                    .filter(|breakpoint| breakpoint.address.is_none())
                    .map(|breakpoint| (id, breakpoint.expression.clone()))
            })
            .collect();
        for (id, expression) in pending {
            if let Ok(address) = self.evaluate_with_driver(&expression)
                && let Some(Some(breakpoint)) = self.breakpoints.get_mut(id)
            {
                breakpoint.address = Some(address);
                // The image is in place before it is announced as loaded.
                let mapped = self.names.mapped;
                self.names.mapped = true;
                if let Some(note) = self.placement_note(address) {
                    notes.push_str(&note);
                }
                self.names.mapped = mapped;
            }
        }
        notes
    }

    /// `bp [ID] address ["commands"]`; `bu` the same, deferred by name.
    pub(super) fn set_breakpoint(&mut self, raw: &str) -> Reply {
        // `bp1 addr` sets breakpoint 1 (the ID follows the command directly).
        let digits = raw.len() - raw.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let (id, rest) = if digits > 0 {
            (raw[..digits].parse::<usize>().ok(), &raw[digits..])
        } else {
            (None, raw)
        };
        let rest = rest.trim();
        let (target, commands) = rest.find('"').map_or((rest, None), |at| {
            let body = rest[at + 1..].trim_end();
            let body = body.strip_suffix('"').unwrap_or(body);
            (rest[..at].trim(), Some(body.to_owned()))
        });
        if target.is_empty() {
            return Err(CommandError::Message(
                "harness kd: bp needs an address (bp Sample!DriverEntry+0x2c)".into(),
            ));
        }
        // Syntax first: an expression kd cannot parse is an error, not a deferral.
        let used = expr::expression_len(target)?;
        if !target[used..].trim().is_empty() {
            return Err(CommandError::Message(format!(
                "harness kd: pass counts are not supported: '{}'",
                target[used..].trim()
            )));
        }
        let mut out = String::new();
        let address = match expr::evaluate(target, self) {
            Ok(address) => Some(address),
            Err(expr::ExprError::Unresolved(_)) => {
                // kd defers a breakpoint on a module that is not loaded yet.
                self.evaluate_with_driver(target)
                    .map_err(CommandError::from)?;
                let _ = writeln!(
                    out,
                    "Bp expression '{target}' could not be resolved, adding deferred bp"
                );
                None
            }
            Err(error) => return Err(error.into()),
        };
        // kd keeps one breakpoint per place: setting it again redefines the
        // existing one under its ID (bp--bu--bm--set-breakpoint-.md, Remarks;
        // real kd prints "breakpoint 0 redefined"). A deferred `bu` is the
        // same place when its expression is.
        let existing = self.breakpoints.iter().position(|slot| {
            slot.as_ref()
                .filter(|breakpoint| breakpoint.processor.is_none())
                .is_some_and(|breakpoint| match (address, breakpoint.address) {
                    (Some(new), Some(old)) => new == old,
                    _ => breakpoint.expression.eq_ignore_ascii_case(target),
                })
        });
        let id = self.breakpoint_id(id, existing)?;
        let note = address.and_then(|address| self.placement_note(address));
        let breakpoint = Breakpoint {
            expression: target.to_owned(),
            address,
            enabled: true,
            commands,
            processor: None,
        };
        out.push_str(&self.store_breakpoint(id, existing, breakpoint, note));
        Ok(out)
    }

    /// The ID a new breakpoint gets: the one typed, else the one of the
    /// breakpoint it redefines, else the first free one.
    pub(super) fn breakpoint_id(
        &self,
        id: Option<usize>,
        existing: Option<usize>,
    ) -> Result<usize, CommandError> {
        let id = id.or(existing).unwrap_or_else(|| {
            self.breakpoints
                .iter()
                .position(Option::is_none)
                .unwrap_or(self.breakpoints.len())
        });
        if id >= 0x400 {
            return Err(CommandError::Message(format!(
                "harness kd: breakpoint IDs go up to 0n1023, not 0n{id}"
            )));
        }
        Ok(id)
    }

    /// Stores `breakpoint` under `id`: kd's line when it redefines
    /// `existing`, then `note`.
    pub(super) fn store_breakpoint(
        &mut self,
        id: usize,
        existing: Option<usize>,
        breakpoint: Breakpoint,
        note: Option<String>,
    ) -> String {
        let mut out = String::new();
        if let Some(existing) = existing {
            let _ = writeln!(out, "breakpoint {existing} redefined");
            if existing != id {
                self.breakpoints[existing] = None;
            }
        }
        out.push_str(&note.unwrap_or_default());
        if self.breakpoints.len() <= id {
            self.breakpoints.resize(id + 1, None);
        }
        self.breakpoints[id] = Some(breakpoint);
        out
    }

    /// `bl`.
    pub(super) fn list_breakpoints(&self) -> String {
        let mut out = String::new();
        for (id, breakpoint) in self.breakpoints.iter().enumerate() {
            let Some(breakpoint) = breakpoint else {
                continue;
            };
            // The walkthrough's kd: the state, then its DML toggle's text.
            let state = if breakpoint.enabled {
                "e Disable Clear "
            } else {
                "d Enable Clear "
            };
            if let Some(address) = breakpoint.address {
                let name = self
                    .names
                    .name_of(address)
                    .unwrap_or_else(|| breakpoint.expression.clone());
                // A processor breakpoint's type and size where a software
                // one has blanks (bl--breakpoint-list-.md).
                let kind = breakpoint.processor.map_or_else(
                    || "   ".to_owned(),
                    super::processor_breakpoints::Processor::listing,
                );
                let _ = write!(
                    out,
                    "{id:>6} {state} {} {kind} 0001 (0001) {name}",
                    self.address(address)
                );
            } else {
                // Deferred: `u` where the address goes, the expression in parentheses.
                let blank = " ".repeat(self.address(0).len() + 5);
                let _ = write!(
                    out,
                    "{id:>6} {state}u{blank}0001 (0001) ({})",
                    breakpoint.expression
                );
            }
            if let Some(commands) = &breakpoint.commands {
                let _ = write!(out, " \"{commands}\"");
            }
            out.push('\n');
        }
        out
    }

    /// `bc`, `bd`, `be` with `*` or a list of IDs and ranges (`1-3`).
    pub(super) fn change_breakpoints(&mut self, command: &str, args: &str) -> Reply {
        if args.is_empty() {
            return Err(CommandError::Message(format!(
                "harness kd: {command} needs breakpoint IDs or *"
            )));
        }
        let mut ids = Vec::new();
        for part in args.split([' ', ',']).filter(|part| !part.is_empty()) {
            if part == "*" {
                ids.extend(0..self.breakpoints.len());
                continue;
            }
            let number = |text: &str| {
                expr::evaluate(text, self)
                    .ok()
                    .and_then(|value| usize::try_from(value).ok())
            };
            match part.split_once('-') {
                Some((low, high)) => match (number(low), number(high)) {
                    (Some(low), Some(high)) if low <= high => ids.extend(low..=high),
                    _ => {
                        return Err(CommandError::Message(format!(
                            "harness kd: '{part}' is not a breakpoint ID range"
                        )));
                    }
                },
                None => match number(part) {
                    Some(id) => ids.push(id),
                    None => {
                        return Err(CommandError::Message(format!(
                            "harness kd: '{part}' is not a breakpoint ID"
                        )));
                    }
                },
            }
        }
        for id in ids {
            let Some(slot) = self.breakpoints.get_mut(id) else {
                continue;
            };
            match command {
                "bc" => *slot = None,
                "bd" => {
                    if let Some(breakpoint) = slot {
                        breakpoint.enabled = false;
                    }
                }
                _ => {
                    if let Some(breakpoint) = slot {
                        breakpoint.enabled = true;
                    }
                }
            }
        }
        Ok(String::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_commands_are_k_with_options() {
        for name in ["k", "kb", "kv", "kn", "kvn", "kbn", "kp"] {
            assert!(is_stack_command(name), "{name}");
        }
        for name in ["kd", "kx", "lm"] {
            assert!(!is_stack_command(name), "{name}");
        }
    }
}
