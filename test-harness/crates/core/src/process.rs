//! Running the tools the harness needs (cargo, osslsigncode, Python, Wine,
//! ssh): with a wall-clock limit, the output captured, and a failure as one
//! line naming what the harness was doing.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::error::ProcessError;

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
