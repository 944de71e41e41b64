//! What every engine shares: the options a run takes and why an engine
//! could not run at all.

use std::path::PathBuf;
use std::time::Duration;

use harness_core::error::ProcessError;

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
    Setup(#[from] crate::python::SetupError),
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
    /// The verifier flags the driver is verified with (`verifier /flags`).
    pub verifier_flags: harness_core::verifier::VerifierFlags,
    /// The low resources simulation's seed (flag 0x4).
    pub seed: u64,
    /// Windows version the emulated kernel reports (`6.1.7601` if `None`).
    pub os_version: Option<String>,
    /// Instruction budget per driver routine.
    pub max_instructions: u64,
    /// Kernel calls per driver routine (Speakeasy's `max_api_count`).
    pub max_kernel_calls: u32,
    /// Wall-clock budget for the whole run.
    pub timeout: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            fail_allocation: 0,
            verifier_flags: harness_core::verifier::VerifierFlags::default(),
            seed: 0,
            os_version: None,
            max_instructions: 5_000_000,
            max_kernel_calls: 100_000,
            timeout: Duration::from_mins(1),
        }
    }
}
