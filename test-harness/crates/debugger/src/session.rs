//! One kd session on one emulated machine: commands in, kd's output out.
//!
//! The target starts stopped before the driver is loaded. `g` runs the
//! scenario the walkthrough runs on Windows: the driver is started
//! (DriverEntry on a system worker thread) and stopped (`sc stop`: the
//! unload routine, then the verifier's leak check). Every value a command
//! prints is read from the machine, the driver's PDB or the emulated
//! kernel's symbols.

mod bpcommands;
mod code_listing;
mod commands;
mod control;
mod device_object;
mod driver_object;
mod events;
mod frames;
mod memory;
mod module_info;
mod modules;
mod object;
mod placement;
mod pool;
mod pool_used;
mod pool_val;
mod processor_breakpoints;
mod reboot;
mod stack_forms;
mod stack_params;
mod step_to;
mod symbol_dump;
mod symbol_types;
mod system_objects;
mod target_info;
mod verifier;

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::expr::{self, ExprError};
use super::names::Names;
use super::target::Target;
use super::{disasm, format, stack};
use harness_core::arch::Arch;
use harness_core::events::Event;
use harness_core::pdb::DriverSymbols;
use harness_core::types;
use harness_core::verdict::{ExitCode, Verdict};
use harness_ntemu::machine::{BreakKind, Driver, Machine, MachineError, Options, Stop};

/// The prompt, as a single-processor kd shows it.
pub(crate) const PROMPT: &str = "kd> ";

/// Why a command printed an error instead of its output. The texts are
/// kd's own kinds of message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// An expression error (`Couldn't resolve error at 'foo'`).
    #[error(transparent)]
    Expr(#[from] ExprError),
    /// A command kd does not parse: the caret points at `column` of the
    /// input line.
    #[error("{caret}^ Syntax error in '{text}'", caret = " ".repeat(PROMPT.len() + .column))]
    Syntax {
        /// Where the command starts in its line.
        column: usize,
        /// The command's text.
        text: String,
    },
    /// An extension command no loaded extension exports.
    #[error("No export {0} found")]
    NoExport(String),
    /// Any other of kd's messages, as kd words it.
    #[error("{0}")]
    Message(String),
}

type Reply = Result<String, CommandError>;

/// The next word of a command's arguments, or kd's `usage` line when there
/// is none.
fn required<'a>(
    words: &mut std::str::SplitWhitespace<'a>,
    usage: &str,
) -> Result<&'a str, CommandError> {
    words
        .next()
        .ok_or_else(|| CommandError::Message(usage.to_owned()))
}

/// Where the scenario stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Stopped, and `g` can run on.
    Stopped,
    /// The driver was started and stopped: nothing is left to run.
    Finished,
    /// The machine bug-checked.
    BugChecked,
    /// The run cannot be judged from here on (an engine gap) or hit a limit.
    Dead(String),
}

/// A user breakpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Breakpoint {
    /// What the user typed (`Sample!DriverEntry+0x2c`).
    expression: String,
    /// Where it is; `None` while deferred (its module is not loaded yet).
    address: Option<u64>,
    enabled: bool,
    /// Commands run when it is hit (`bp addr "r eax; g"`).
    commands: Option<String>,
    /// A processor breakpoint's access and size (`ba`); `None` for `bp`/`bu`.
    processor: Option<processor_breakpoints::Processor>,
}

/// What the session was started with.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// The machine's options (Windows version, limits).
    pub machine: Options,
    /// `.formats`' time zone, in minutes east of UTC.
    pub utc_offset_minutes: i32,
    /// Why the driver's PDB was not used, if one was there.
    pub pdb_problem: Option<String>,
}

/// A kd session.
pub struct Session {
    target: Target,
    names: Names,
    breakpoints: Vec<Option<Breakpoint>>,
    /// `.frame`'s current frame.
    frame: usize,
    state: State,
    /// Events already shown (debug output).
    shown: usize,
    /// `.asm code_bytes`.
    code_bytes: bool,
    /// Where a bare `d*` continues.
    next_dump: u64,
    /// Where a bare `u` continues.
    next_unassemble: Option<u64>,
    /// The verifier's load banner was shown.
    announced: bool,
    /// Why the driver's PDB was not used.
    pdb_problem: Option<String>,
    /// `$t0`..`$t19`.
    temporaries: [u64; 20],
    utc_offset_minutes: i32,
    /// What `.lastevent` shows: the last stop that was a debug event.
    last_event: Option<String>,
    /// `sx`'s `ld` filter.
    load_filter: events::LoadFilter,
    /// The machine's options, for `.reboot`.
    machine_options: Options,
    /// How the machine last stopped (`p 3` goes on after a completed step).
    last_stop: Option<Stop>,
    /// `q` was given.
    quit: bool,
    /// Commands already said to be not emulated (said once per name).
    told_unsupported: std::collections::HashSet<String>,
    /// Set by Ctrl-C (SIGINT) while a command runs: kd's break-in.
    interrupt: Arc<AtomicBool>,
    /// Long commands (`p`/`t` with a count) write each step to stdout as
    /// it is taken instead of all at the end.
    streaming: Option<fn(&str) -> std::io::Result<()>>,
}

/// Why a session could not start.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The machine could not be built.
    #[error("the native engine could not start: {0}")]
    Machine(#[from] MachineError),
}

impl Session {
    /// A session on a fresh machine with `driver`, stopped before it loads.
    ///
    /// # Errors
    /// The machine could not be built.
    pub fn new(
        driver: &Arc<Driver>,
        pdb: Option<DriverSymbols>,
        options: SessionOptions,
    ) -> Result<Self, SessionError> {
        let mut machine_options = options.machine;
        machine_options.debugger = true;
        let machine = Machine::new(Arc::clone(driver), machine_options.clone())?;
        let target = Target::new(machine);
        let mut names = Names::new(
            Arc::clone(target.nt()),
            driver.service.clone(),
            target.machine.kernel().image,
            pdb,
            driver.symbols.clone(),
        );
        names.mapped = false;
        Ok(Self {
            target,
            names,
            breakpoints: Vec::new(),
            frame: 0,
            state: State::Stopped,
            shown: 0,
            code_bytes: false,
            next_dump: 0,
            next_unassemble: None,
            announced: false,
            pdb_problem: options.pdb_problem,
            temporaries: [0; 20],
            utc_offset_minutes: options.utc_offset_minutes,
            last_event: None,
            load_filter: events::LoadFilter::default(),
            machine_options,
            last_stop: None,
            quit: false,
            told_unsupported: std::collections::HashSet::new(),
            interrupt: Arc::new(AtomicBool::new(false)),
            streaming: None,
        })
    }

    /// The machine's architecture.
    #[must_use]
    pub const fn arch(&self) -> Arch {
        self.target.arch
    }

    /// The driver's file name.
    #[must_use]
    pub fn driver_name(&self) -> &str {
        &self.target.driver().file_name
    }

    /// The Windows version the machine reports (`6.1.7601`).
    #[must_use]
    pub(crate) fn windows_version(&self) -> String {
        self.target.machine.kernel().profile.version()
    }

    const fn pointer_size(&self) -> u64 {
        self.target.pointer_size()
    }

    /// An address as kd writes it.
    fn address(&self, value: u64) -> String {
        format::address(value, self.pointer_size())
    }

    /// The verdict of the run so far.
    #[must_use]
    pub fn verdict(&self) -> Verdict {
        self.target.machine.kernel().tracker.verdict()
    }

    /// The exit code the session ends with: the verdict's when the scenario
    /// is over, 2 when the run cannot be judged, 5 while the driver is still
    /// loaded (or was never started).
    #[must_use]
    pub fn exit_code(&self) -> ExitCode {
        match &self.state {
            State::Finished | State::BugChecked => self.verdict().exit_code(),
            State::Dead(_) => {
                let verdict = self.verdict();
                if verdict.bugcheck.is_some() || verdict.limit.is_some() {
                    verdict.exit_code()
                } else {
                    ExitCode::CannotJudge
                }
            }
            State::Stopped => {
                if self.verdict().bugcheck.is_some() {
                    ExitCode::Violation
                } else {
                    ExitCode::StillLoaded
                }
            }
        }
    }

    /// Why the session cannot be judged, when it ends with exit code 2: the
    /// one line `harness kd` also writes to stderr.
    #[must_use]
    pub fn cannot_judge_reason(&self) -> Option<&str> {
        match &self.state {
            State::Dead(reason) if self.exit_code() == ExitCode::CannotJudge => Some(reason),
            _ => None,
        }
    }

    /// The flag Ctrl-C sets to stop a long command (the prompt registers
    /// it for SIGINT); it is cleared before each command line.
    #[must_use]
    pub fn interrupt_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.interrupt)
    }

    /// Writes long commands' output through `emit` as it is produced.
    pub(crate) fn stream_to(&mut self, emit: fn(&str) -> std::io::Result<()>) {
        self.streaming = Some(emit);
    }

    /// Whether Ctrl-C was pressed since the command line started.
    fn interrupted(&self) -> bool {
        self.interrupt.load(Ordering::Relaxed)
    }

    /// Runs one input line (commands separated by `;`). Returns the output
    /// and whether the session should end (`q`).
    pub fn execute(&mut self, line: &str) -> (String, bool) {
        let mut out = String::new();
        for (column, command) in split_commands(line) {
            let command = command.trim();
            if command.is_empty() {
                continue;
            }
            let leading = column + line[column..].len() - line[column..].trim_start().len();
            match self.command(command, leading) {
                Ok(text) | Err(text) => out.push_str(&text),
            }
            if self.quit {
                return (out, true);
            }
        }
        (out, false)
    }

    /// One command, dispatched through the command table.
    fn command(&mut self, text: &str, column: usize) -> Result<String, String> {
        let (name, raw) = split_name(text);
        let lower = name.to_ascii_lowercase();
        let Some(entry) = commands::find(&lower) else {
            return Err(commands::unknown(self, &lower, text, column));
        };
        let call = commands::Call {
            name: &lower,
            typed: name,
            args: raw.trim(),
            raw,
            text,
            column,
        };
        entry.run(self, &call).map_err(|error| format!("{error}\n"))
    }

    /// Debug output the machine produced since the last look, as kd shows
    /// it (the driver's `DbgPrint` text).
    fn new_output(&mut self) -> String {
        let mut out = String::new();
        if !self.announced && self.target.machine.started() {
            // The kernel announces each verified driver as it loads it
            // (flags 0: the driver is not verified, nothing to announce).
            self.announced = true;
            if self.target.machine.uc.get_data().verifier_flags.0 != 0 {
                out.push_str(&verifier::enabled_banner(
                    &self.target.driver().file_name,
                    self.target.machine.kernel().profile.build,
                ));
            }
            if let Some(problem) = &self.pdb_problem {
                // kd's line when a module's symbols cannot be loaded, then why.
                let _ = writeln!(
                    out,
                    "*** ERROR: Module load completed but symbols could not be loaded for {}\nharness kd: {problem}",
                    self.target.driver().file_name
                );
            }
        }
        let events = self.target.machine.events();
        for event in &events[self.shown.min(events.len())..] {
            if let Event::DebugPrint { text, .. } = event {
                out.push_str(text);
            }
        }
        self.shown = events.len();
        out
    }

    /// Brings the names up to date with the machine (the driver loaded or
    /// unloaded) and resolves deferred breakpoints.
    fn sync(&mut self) {
        self.names.mapped = self.target.driver_mapped();
        self.frame = 0;
        self.next_unassemble = None;
    }

    /// What kd prints where the target stopped: `nt!Symbol+0x12:` and the
    /// instruction.
    fn location(&self, address: u64) -> String {
        let mut out = String::new();
        if let Some(name) = self.names.name_of(address) {
            let _ = writeln!(out, "{name}:");
        }
        let bytes = self.target.read(address, 16).unwrap_or_default();
        match disasm::disassemble(&bytes, address, 1, self.pointer_size(), &self.names).first() {
            Some(line) => {
                let _ = writeln!(out, "{}", line.render(self.pointer_size(), self.code_bytes));
            }
            None => {
                let _ = writeln!(out, "{} ??              ???", self.address(address));
            }
        }
        out
    }

    /// Reports a stop of the machine, kd's way.
    fn report(&mut self, stop: &Stop, breakpoint_ids: &[Option<usize>]) -> String {
        self.last_stop = Some(stop.clone());
        let mut out = self.new_output();
        self.sync();
        self.last_event = match stop {
            Stop::Break(BreakKind::ModuleLoad) => Some(self.load_event()),
            _ => target_info::event_description(stop)
                .map(str::to_owned)
                .or_else(|| self.last_event.take()),
        };
        match stop {
            Stop::Break(BreakKind::ModuleLoad) => {
                // kd shows only where the kernel told it (events.rs).
                out.push_str(&self.location(self.target.ip()));
            }
            Stop::Break(_) => {
                out.push_str("Break instruction exception - code 80000003 (first chance)\n");
                out.push_str(&self.location(self.target.ip()));
            }
            Stop::Breakpoint(index) | Stop::Watch(index) => {
                if let Some(Some(id)) = breakpoint_ids.get(*index) {
                    let _ = writeln!(out, "Breakpoint {id} hit");
                }
                out.push_str(&self.location(self.target.ip()));
            }
            Stop::Stepped => {
                // The walkthrough's kd shows no register block after a step.
                out.push_str(&self.location(self.target.ip()));
            }
            Stop::BugCheck => {
                self.state = State::BugChecked;
                out.push_str(&self.fatal_error_banner());
                out.push_str(&self.location(self.target.ip()));
            }
            Stop::Fault => {
                self.state = State::BugChecked;
                out.push_str(&self.fault_banner());
            }
            Stop::Finished => {
                self.state = State::Finished;
                own_line(&mut out);
                out.push_str(&self.finished_note());
            }
            Stop::CannotJudge(reason) => {
                self.state = State::Dead(format!("cannot judge: {reason}"));
                own_line(&mut out);
                let _ = writeln!(out, "harness kd: cannot judge from here: {reason}");
            }
            Stop::Limit(limit) => {
                let text = format!("the driver's code {limit}");
                own_line(&mut out);
                let _ = writeln!(out, "harness kd: {text}");
                self.state = State::Dead(text);
            }
        }
        out
    }

    /// What the end of the scenario looks like.
    fn finished_note(&self) -> String {
        let verdict = self.verdict();
        let driver = &verdict.driver;
        let what = match verdict.entry_status {
            Some(status) if harness_core::nt::status::failed(status) => format!(
                "DriverEntry of {driver} failed (status 0x{status:08x}), so it was unloaded again"
            ),
            _ if verdict.unloaded() => {
                format!("{driver} was started and stopped (DriverEntry, then its unload routine)")
            }
            _ => format!("{driver} was started, but it cannot be stopped (no unload routine)"),
        };
        format!("harness kd: {what}; nothing is left to run (q ends the session)\n")
    }

    /// Whether the target can run.
    fn runnable(&self) -> Result<(), CommandError> {
        match &self.state {
            State::Stopped => Ok(()),
            State::Finished => Err(CommandError::Message(
                "harness kd: the scenario is over (the driver was started and stopped); nothing is left to run".into(),
            )),
            State::BugChecked => Err(CommandError::Message(
                "harness kd: the machine has bug-checked; it cannot run on (q ends the session)".into(),
            )),
            State::Dead(reason) => Err(CommandError::Message(format!(
                "harness kd: the machine cannot run on: {reason}"
            ))),
        }
    }

    /// Frames of the current stack.
    fn frames(&self) -> Vec<stack::Frame> {
        let modules = self
            .target
            .walk_modules(&self.names.driver_function_starts());
        stack::walk(
            self.arch(),
            &self.target,
            &modules,
            self.target.walk_registers(),
        )
    }

    /// A type by kd's name (`nt!_POOL_HEADER`, `_UNICODE_STRING`,
    /// `Sample!MyType`): its table and id.
    fn find_type(&self, name: &str) -> Option<(&types::TypeTable, types::TypeId)> {
        let (module, bare) = match name.split_once('!') {
            Some((module, bare)) => (Some(module), bare),
            None => (None, name),
        };
        let nt = types::nt_types(self.arch());
        let driver = self.names.pdb().map(|pdb| &pdb.types);
        let in_nt = || nt.type_by_name(bare).map(|id| (nt, id));
        let in_driver = || driver.and_then(|table| table.type_by_name(bare).map(|id| (table, id)));
        match module {
            Some(module) if module.eq_ignore_ascii_case("nt") => in_nt(),
            Some(module) if self.names.is_driver(module) => in_driver(),
            Some(_) => None,
            None => in_nt().or_else(in_driver),
        }
    }

    /// `?`: a MASM expression.
    fn evaluate_masm(&self, args: &str) -> Reply {
        if args.is_empty() {
            return Ok(String::new());
        }
        let value = expr::evaluate(args, self)?;
        Ok(format!(
            "{}\n",
            format::evaluate_line(value, self.pointer_size())
        ))
    }

    /// `??`: a C++ expression.
    fn evaluate_cpp(&self, args: &str) -> Reply {
        let value = expr::evaluate_cpp(args, self)?;
        Ok(format!(
            "{}\n",
            format::cpp_value(&value, self.pointer_size())
        ))
    }

    /// `.formats`.
    fn formats(&self, args: &str) -> Reply {
        let value = expr::evaluate(args, self)?;
        Ok(format::formats(
            value,
            self.pointer_size(),
            self.utc_offset_minutes,
        ))
    }

    /// `.asm [no_]code_bytes`.
    fn asm_options(&mut self, args: &str) -> Reply {
        match args {
            "code_bytes" => self.code_bytes = true,
            "no_code_bytes" => self.code_bytes = false,
            "" => {}
            other => {
                return Err(CommandError::Message(format!(
                    "Unknown assembly option '{other}'"
                )));
            }
        }
        Ok(format!(
            "Assembly options: {}\n",
            if self.code_bytes {
                "<default>"
            } else {
                "no_code_bytes"
            }
        ))
    }
}

impl disasm::Names for Names {
    fn name(&self, address: u64) -> Option<String> {
        self.name_of(address)
    }
}

/// Pseudo-registers kd knows: `$ip`, `$csp`, `$ra`, `$retreg`, `$thread`,
/// `$proc`, `$ptrsize`, `$t0`..`$t19`.
impl expr::Context for Session {
    fn pointer_size(&self) -> u64 {
        self.target.pointer_size()
    }

    fn register(&self, name: &str) -> Option<u64> {
        let x64 = self.arch() == Arch::X64;
        match name {
            "$ip" => Some(self.target.ip()),
            "$csp" => Some(self.target.sp()),
            "$retreg" => self.target.register(if x64 { "rax" } else { "eax" }),
            "$ra" => self.frames().first().map(|frame| frame.return_address),
            "$thread" => Some(self.target.current_thread()),
            "$proc" => Some(self.target.current_process()),
            "$ptrsize" => Some(self.pointer_size()),
            _ => {
                if let Some(index) = name
                    .strip_prefix("$t")
                    .and_then(|number| number.parse::<usize>().ok())
                {
                    return self.temporaries.get(index).copied();
                }
                self.target.register(name)
            }
        }
    }

    fn symbol(&self, module: Option<&str>, name: &str) -> Option<u64> {
        self.names.address_of(module, name)
    }

    fn module(&self, name: &str) -> Option<u64> {
        self.names.module_base(name)
    }

    fn read(&self, address: u64, size: usize) -> Option<u64> {
        self.target.read_uint(address, size)
    }

    fn size_of(&self, type_name: &str) -> Option<u64> {
        let (table, id) = self.find_type(type_name.trim())?;
        Some(table.sizeof(id))
    }
}

/// Starts the harness's own line on a line of its own, after debug output
/// the driver did not end with a newline.
fn own_line(out: &mut String) {
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
}

/// The command summary `?` and `.help` print (`harness kd --help` too).
#[must_use]
pub fn command_summary() -> String {
    commands::summary()
}

/// The command's name and the rest. Names are `.word`, `!word`, `??`, `?`,
/// `*`/`$$` (comments), or letters (`dd`, `kvn`, `bp`).
fn split_name(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    if text.starts_with('*') {
        return ("*", "");
    }
    if text.starts_with("$$") {
        return ("$$", "");
    }
    if let Some(rest) = text.strip_prefix("??") {
        return ("??", rest);
    }
    if let Some(rest) = text.strip_prefix('?') {
        return ("?", rest);
    }
    let skip = usize::from(text.starts_with('.') || text.starts_with('!'));
    let end = text[skip..]
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map_or(text.len(), |at| at + skip);
    let (name, rest) = text.split_at(end);
    // `dd`, `kvn`: letters only; `.frame0n4` is unusual but `u.` is not a thing.
    if skip == 0 {
        let letters = name
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(name.len());
        return text.split_at(letters);
    }
    (name, rest)
}

/// Splits a line at `;` outside quotes, keeping each command's column. A
/// `*` comment takes the rest of the line; `.echo` and `$$` end at `;`.
fn split_commands(line: &str) -> Vec<(usize, &str)> {
    let mut commands = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (at, c) in line.char_indices() {
        if at == start && line[start..].trim_start().starts_with('*') {
            commands.push((start, &line[start..]));
            return commands;
        }
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => {
                commands.push((start, &line[start..at]));
                start = at + 1;
            }
            _ => {}
        }
    }
    commands.push((start, &line[start..]));
    commands
}

/// The PDB beside the driver, when it belongs to this build. A missing or
/// mismatched PDB leaves the session with export names only, as kd does.
#[must_use]
pub fn load_pdb(
    driver: &Path,
    image: &harness_core::pe::PeImage,
) -> (Option<DriverSymbols>, Option<String>) {
    let pdb = driver.with_extension("pdb");
    if !pdb.is_file() {
        return (None, None);
    }
    match DriverSymbols::load(&pdb, image) {
        Ok(symbols) => (Some(symbols), None),
        Err(error) => (None, Some(format!("{}: {error}", pdb.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_split_at_semicolons_outside_quotes() {
        let parts: Vec<&str> = split_commands(".frame 0n4;dv /t /v")
            .into_iter()
            .map(|(_, text)| text)
            .collect();
        assert_eq!(parts, [".frame 0n4", "dv /t /v"]);
        let parts: Vec<&str> = split_commands(r#"bp a ".echo x; g"; bl"#)
            .into_iter()
            .map(|(_, text)| text)
            .collect();
        assert_eq!(parts, [r#"bp a ".echo x; g""#, " bl"]);
        // A `*` comment takes the whole rest of the line.
        assert_eq!(split_commands("* a; b").len(), 1);
        assert_eq!(split_commands(".thread ; .cxr ; kb")[2], (16, " kb"));
    }

    #[test]
    fn command_names_are_kd_tokens() {
        assert_eq!(
            split_name("dd nt!PoolHitTag l1"),
            ("dd", " nt!PoolHitTag l1")
        );
        assert_eq!(split_name("kvn"), ("kvn", ""));
        assert_eq!(
            split_name("?? sizeof(nt!_POOL_HEADER)"),
            ("??", " sizeof(nt!_POOL_HEADER)")
        );
        assert_eq!(split_name("? 1+2"), ("?", " 1+2"));
        assert_eq!(
            split_name("!pool 0x91c26130  2"),
            ("!pool", " 0x91c26130  2")
        );
        assert_eq!(split_name(".frame 0n4"), (".frame", " 0n4"));
        assert_eq!(split_name("r @eax"), ("r", " @eax"));
        assert_eq!(split_name("dd@esp"), ("dd", "@esp"));
    }

    #[test]
    fn syntax_errors_point_under_the_command() {
        let error = CommandError::Syntax {
            column: 0,
            text: "foo".into(),
        };
        assert_eq!(error.to_string(), "    ^ Syntax error in 'foo'");
    }
}
