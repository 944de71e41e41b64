//! Engines run a driver and report [`crate::events::Event`]s; the tracker
//! judges them. `speakeasy` emulates the kernel; `wine` loads the driver in
//! Wine's winedevice.exe.

pub mod python;
pub mod speakeasy;
pub mod wine;

use std::io::Read;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::failure::{Failure, Result};

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
pub fn run_with_timeout(command: &mut Command, stdin: &[u8], timeout: Duration) -> Result<Output> {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| Failure::new(format!("cannot run {program}: {error}")))?;
    if let Some(mut input) = child.stdin.take() {
        use std::io::Write;
        // A child that exits early closes the pipe; its output says why.
        let _ = input.write_all(stdin);
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|error| Failure::new(error.to_string()))?
        {
            break status;
        }
        if started.elapsed() > timeout {
            kill(&mut child);
            return Err(Failure::new(format!(
                "{program} did not finish within {} s and was stopped",
                timeout.as_secs()
            )));
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

/// Runs a command that must succeed; on failure the error is `{what}` plus
/// the last line the command printed on stderr.
///
/// # Errors
/// The command could not run, outlived `timeout`, or failed.
pub fn run_checked(command: &mut Command, timeout: Duration, what: &str) -> Result<Output> {
    let output = run_with_timeout(command, b"", timeout)?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(Failure::new(
            what.replace("{}", &python::last_line(&output.stderr)),
        ))
    }
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
