//! Each command's errors, and the exit code each one ends in.
//!
//! Every error is "could not run or cannot judge" (2), except an image
//! Windows would not load (6). The mapping is a `match` over typed errors,
//! so a new kind of error has to say which it is: nothing is found by
//! downcasting.

use harness_build::driver_build::BuildError;
use harness_build::signing::SignError;
use harness_core::error::InputError;
use harness_core::verdict::ExitCode;
use harness_engines::emulate::EmulateError;
use harness_engines::engine::EngineError;
use harness_engines::python::SetupError;
use harness_kd_text::TextError;

use crate::demo::DemoError;
use crate::kd::KdError;
use crate::vm::VmError;

/// Why a command ended without a verdict.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// `emulate`: the driver could not be run or judged.
    #[error(transparent)]
    Emulate(#[from] EmulateError),
    /// `kd`: the session could not run.
    #[error(transparent)]
    Kd(#[from] KdError),
    /// `analyze`: the text cannot be read as debugger output.
    #[error(transparent)]
    Analyze(#[from] TextError),
    /// `vm`: the run on the guest failed.
    #[error(transparent)]
    Vm(#[from] VmError),
    /// `demo`: a build or a run failed.
    #[error(transparent)]
    Demo(#[from] DemoError),
    /// `build`, and the builds `kd` and `vm` make.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Test-signing for the guest.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// `setup`: Speakeasy could not be installed.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// `setup`: the Wine prefix could not be made.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A file the command was given.
    #[error(transparent)]
    Input(#[from] InputError),
    /// A command line clap accepts but the command cannot use.
    #[error("{0}")]
    Usage(String),
    /// Writing the result.
    #[error(transparent)]
    Output(#[from] std::io::Error),
    /// Writing the result as JSON.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

impl CommandError {
    /// The exit code this error ends the command with.
    #[must_use]
    pub const fn exit_code(&self) -> ExitCode {
        match self {
            Self::Emulate(error) => error.exit_code(),
            Self::Kd(error) => error.exit_code(),
            Self::Analyze(_)
            | Self::Vm(_)
            | Self::Demo(_)
            | Self::Build(_)
            | Self::Sign(_)
            | Self::Setup(_)
            | Self::Engine(_)
            | Self::Input(_)
            | Self::Usage(_)
            | Self::Output(_)
            | Self::Json(_) => ExitCode::CannotJudge,
        }
    }

    /// The error as one line: the chain of causes joined by ": ", newlines
    /// folded.
    #[must_use]
    pub fn one_line(&self) -> String {
        harness_core::error::one_line(self)
    }
}
