//! Where commands come from: a script (each command echoed after `kd> `,
//! so the output reads like a kd log) or the interactive prompt, with line
//! editing and history (rustyline).

use std::io::{self, IsTerminal as _, Read as _};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use nix::sys::termios::{self, LocalFlags, SetArg, Termios};
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

use super::session::{PROMPT, Session};
use harness_core::console::emit;

/// Longest command line kd takes; a longer one is refused, not run.
pub const MAX_LINE: usize = 4096;

/// Lines in a row that are not UTF-8 before the prompt gives up.
const MAX_BAD_LINES: u32 = 100;

/// Largest script read from stdin.
const MAX_STDIN: u64 = 16 << 20;

/// Whether stdin is a terminal (the interactive prompt) or a pipe/file.
#[must_use]
pub fn stdin_is_terminal() -> bool {
    io::stdin().is_terminal()
}

/// Reads a whole script from stdin, up to a limit.
///
/// # Errors
/// stdin cannot be read, is not UTF-8, or is too large.
pub fn read_stdin() -> io::Result<String> {
    let mut bytes = Vec::new();
    io::stdin().take(MAX_STDIN + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_STDIN {
        return Err(io::Error::other(format!(
            "stdin: more than {} MiB of commands",
            MAX_STDIN >> 20
        )));
    }
    String::from_utf8(bytes).map_err(|_| io::Error::other("stdin: the commands are not UTF-8 text"))
}

/// Runs a script's lines, printing each after the prompt and then its
/// output, until the end or `q`. Blank lines are skipped.
///
/// # Errors
/// stdout failed (a closed pipe is not a failure).
pub fn replay(session: &mut Session, script: &str) -> io::Result<()> {
    session.stream_to(emit);
    for line in script.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        emit(&format!("{PROMPT}{line}\n"))?;
        let (output, quit) = run_line(session, line);
        emit(&output)?;
        if quit {
            break;
        }
    }
    Ok(())
}

fn run_line(session: &mut Session, line: &str) -> (String, bool) {
    if line.len() > MAX_LINE {
        return (
            format!("harness kd: a command line is at most {MAX_LINE} characters\n"),
            false,
        );
    }
    // Driver-controlled text (its DbgPrint, strings `da`/`du` show) must
    // not drive the terminal: control characters show as escapes.
    let (output, quit) = session.execute(line);
    (harness_core::render::visible(&output), quit)
}

/// Ctrl-C shows as the session's own `^C` line, and nothing written is lost.
/// By default a terminal that sends SIGINT for Ctrl-C also discards the
/// output not yet shown (termios ISIG without NOFLSH) and echoes `^C` itself
/// wherever the output is (ECHOCTL), which could land just before the
/// session's line (`^C^C`). The terminal's own flags come back when the
/// session ends.
struct KeepOutputOnInterrupt(Option<Termios>);

impl KeepOutputOnInterrupt {
    fn set() -> Self {
        let stdin = io::stdin();
        let Ok(original) = termios::tcgetattr(&stdin) else {
            return Self(None);
        };
        let mut kept = original.clone();
        kept.local_flags.insert(LocalFlags::NOFLSH);
        kept.local_flags.remove(LocalFlags::ECHOCTL);
        let set = termios::tcsetattr(&stdin, SetArg::TCSANOW, &kept).is_ok();
        Self(set.then_some(original))
    }
}

impl Drop for KeepOutputOnInterrupt {
    fn drop(&mut self) {
        if let Some(original) = &self.0 {
            let _ = termios::tcsetattr(io::stdin(), SetArg::TCSANOW, original);
        }
    }
}

/// The `kd> ` prompt on a terminal. Ctrl-C clears the line; Ctrl-D or `q`
/// ends the session.
///
/// # Errors
/// The terminal failed.
pub fn interactive(session: &mut Session) -> io::Result<()> {
    let _keep = KeepOutputOnInterrupt::set();
    let mut editor = DefaultEditor::new().map_err(io::Error::other)?;
    let profile = format!(
        "harness kd: {} ({}) on an emulated Windows {} with Driver Verifier pool tracking; the driver is not loaded yet: g starts it, q quits\n",
        session.driver_name(),
        session.arch(),
        session.windows_version()
    );
    emit(&profile)?;
    session.stream_to(emit);
    // Ctrl-C while a command runs stops it (kd's break-in) instead of
    // ending the session; at the prompt rustyline reads it as a key.
    let interrupt = session.interrupt_flag();
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&interrupt))?;
    let mut last = String::new();
    let mut bad_lines = 0;
    loop {
        match editor.readline(PROMPT) {
            Ok(line) => {
                bad_lines = 0;
                // Enter on an empty line repeats the last command
                // (enter--repeat-last-command-.md).
                let line = if line.trim().is_empty() {
                    last.clone()
                } else {
                    let _ = editor.add_history_entry(line.as_str());
                    last.clone_from(&line);
                    line
                };
                interrupt.store(false, Ordering::Relaxed);
                let (output, quit) = run_line(session, &line);
                emit(&output)?;
                if quit {
                    return Ok(());
                }
            }
            Err(ReadlineError::Interrupted) => {}
            Err(ReadlineError::Eof) => return Ok(()),
            // A line that is not UTF-8 is refused, once, and the prompt goes on.
            Err(ReadlineError::Io(error)) if error.kind() == io::ErrorKind::InvalidData => {
                bad_lines += 1;
                if bad_lines > MAX_BAD_LINES {
                    return Err(io::Error::other(
                        "stdin: the terminal keeps sending text that is not UTF-8",
                    ));
                }
                emit("harness kd: that line was not UTF-8 text; it was not run\n")?;
            }
            Err(error) => return Err(io::Error::other(error)),
        }
    }
}
