//! Engines run a driver and report [`crate::events::Event`]s; the tracker
//! judges them. `speakeasy` emulates the kernel; `wine` loads the driver in
//! Wine's winedevice.exe.

pub mod native;
pub mod python;
pub mod speakeasy;
pub mod wine;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::error::ProcessError;

/// Why an engine could not run at all (before any event of the driver).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A program the engine needs failed.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// A file or directory the engine needs.
    #[error("cannot {what} {}: {source}", .path.display())]
    Io {
        /// What the engine was doing (`create`, `write`, ...).
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A tool is not installed.
    #[error("{tool} not found: {install}")]
    MissingTool {
        /// The tool.
        tool: &'static str,
        /// How to install it.
        install: &'static str,
    },
    /// The engine cannot do what was asked.
    #[error("{0}")]
    Unsupported(String),
    /// The engine's output could not be read.
    #[error("unreadable engine event ({source}): {line}")]
    BadEvent {
        /// The line.
        line: String,
        /// Why.
        source: serde_json::Error,
    },
    /// The engine stopped before it reported a result.
    #[error("the {engine} engine stopped before reporting a result (exit {code}): {detail}")]
    Stopped {
        /// Which engine.
        engine: &'static str,
        /// Its exit code (-1: killed).
        code: i32,
        /// Its last line of output.
        detail: String,
    },
    /// Setting the engine up failed.
    #[error("{0}")]
    Setup(#[from] python::SetupError),
}

impl EngineError {
    /// An I/O failure on `path`.
    pub fn io(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { what, path, source }
    }
}

/// Options every engine takes.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Make the Nth pool allocation fail (1-based; 0: none).
    pub fail_allocation: u32,
    /// Windows version the emulated kernel reports (`6.1.7601` if `None`).
    pub os_version: Option<String>,
    /// Instruction budget per driver routine.
    pub max_instructions: u64,
    /// Wall-clock budget for the whole run.
    pub timeout: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            fail_allocation: 0,
            os_version: None,
            max_instructions: 5_000_000,
            timeout: Duration::from_mins(1),
        }
    }
}

/// Runs a command to completion with a wall-clock limit, feeding `stdin`.
///
/// # Errors
/// The program cannot be started, or it outlives `timeout` (it is killed).
pub fn run_with_timeout(
    command: &mut Command,
    stdin: &[u8],
    timeout: Duration,
) -> Result<Output, ProcessError> {
    let child = spawn_piped(command)?;
    wait_with_timeout(
        child,
        &command.get_program().to_string_lossy(),
        stdin,
        timeout,
    )
}

/// Starts a command with piped stdin, stdout and stderr (for
/// [`wait_with_timeout`]).
///
/// # Errors
/// The program cannot be started.
pub fn spawn_piped(command: &mut Command) -> Result<Child, ProcessError> {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ProcessError::Spawn {
            program: command.get_program().to_string_lossy().into_owned(),
            source,
        })
}

/// Feeds `stdin` to a child started by [`spawn_piped`] and waits for it,
/// with a wall-clock limit; `program` names it in errors.
///
/// # Errors
/// The child outlives `timeout` (it is killed), or cannot be waited for.
pub fn wait_with_timeout(
    mut child: Child,
    program: &str,
    stdin: &[u8],
    timeout: Duration,
) -> Result<Output, ProcessError> {
    let program = program.to_owned();
    if let Some(mut input) = child.stdin.take() {
        use std::io::Write;
        // A child that exits early closes the pipe; its output says why.
        let _ = input.write_all(stdin);
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|source| ProcessError::Spawn {
            program: program.clone(),
            source,
        })? {
            break status;
        }
        if started.elapsed() > timeout {
            kill(&mut child);
            return Err(ProcessError::Timeout {
                program,
                limit: timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // A daemon the child left behind (wineserver, say) may hold the pipes
    // open: take what arrived shortly after the exit and move on.
    let grace = Duration::from_secs(2);
    Ok(Output {
        status,
        stdout: stdout.recv_timeout(grace).unwrap_or_default(),
        stderr: stderr.recv_timeout(grace).unwrap_or_default(),
    })
}

/// Runs a command that must succeed; on failure the error says `what` the
/// harness was doing and the last line the command printed on stderr.
///
/// # Errors
/// The command could not run, outlived `timeout`, or failed.
pub fn run_checked(
    command: &mut Command,
    timeout: Duration,
    what: &str,
) -> Result<Output, ProcessError> {
    let output = run_with_timeout(command, b"", timeout)?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(ProcessError::Failed {
            what: what.to_owned(),
            detail: last_line(&output.stderr),
        })
    }
}

/// The last non-empty line of a tool's output, for one-line errors.
#[must_use]
pub fn last_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("no output")
        .trim()
        .to_owned()
}

/// Finds a program on PATH.
#[must_use]
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> std::sync::mpsc::Receiver<Vec<u8>> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        let _ = sender.send(bytes);
    });
    receiver
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}
