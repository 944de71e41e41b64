//! `harness kd`: the debugger session wired to the command line.
//!
//! The driver is checked and laid out as `emulate` does, then commands come
//! from `--script`, from stdin, or from the prompt.

use std::path::PathBuf;
use std::time::Duration;

use harness_core::error::{CannotJudge, InputError};
use harness_core::events::Gap;
use harness_core::verdict::{Engine, ExitCode};
use harness_debugger::console;
use harness_debugger::session::{self, Session, SessionOptions};
use harness_engines::emulate::{self, EmulateError, EngineKind, Request};
use harness_engines::engine::{EngineError, RunOptions};

/// What `harness kd` was asked for.
#[derive(Debug, Clone)]
pub struct KdOptions {
    /// The driver.
    pub driver: PathBuf,
    /// Commands from a file instead of the prompt.
    pub script: Option<PathBuf>,
    /// The Windows version the machine reports.
    pub os_version: Option<String>,
    /// The verifier flags.
    pub verifier_flags: harness_core::verifier::VerifierFlags,
    /// The low resources simulation's seed (flag 0x4).
    pub seed: u64,
    /// Instructions one run of the CPU may take before it counts as hung.
    pub max_instructions: u64,
    /// Wall-clock budget for the whole scenario.
    pub timeout: Duration,
}

/// Why a session could not run.
#[derive(Debug, thiserror::Error)]
pub enum KdError {
    /// The driver cannot be used or loaded.
    #[error(transparent)]
    Emulate(#[from] EmulateError),
    /// The native engine cannot lay it out.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Bad input (a script that is not text, an unknown version).
    #[error(transparent)]
    Input(#[from] InputError),
    /// The emulated machine lacks what the driver needs.
    #[error(transparent)]
    CannotJudge(#[from] CannotJudge),
    /// The machine could not start.
    #[error(transparent)]
    Session(#[from] session::SessionError),
    /// The terminal or stdout failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl KdError {
    /// The exit code: 6 for an image Windows would not load, else 2.
    #[must_use]
    pub const fn exit_code(&self) -> ExitCode {
        match self {
            Self::Emulate(error) => error.exit_code(),
            Self::Engine(_)
            | Self::Input(_)
            | Self::CannotJudge(_)
            | Self::Session(_)
            | Self::Io(_) => ExitCode::CannotJudge,
        }
    }
}

/// Prepares the driver and runs the session: commands from `--script`, from
/// stdin when it is not a terminal, else the interactive prompt.
///
/// # Errors
/// The driver cannot be loaded on the emulated machine, or input/output failed.
pub fn run(options: &KdOptions) -> Result<ExitCode, KdError> {
    let mut session = open(options)?;
    match &options.script {
        Some(path) => {
            let bytes = harness_core::input::read_file(path, harness_core::input::MAX_TEXT_FILE)?;
            let text = String::from_utf8(bytes).map_err(|_| {
                InputError::Unsupported(format!("{}: not UTF-8 text", path.display()))
            })?;
            console::replay(&mut session, &text)?;
        }
        None if console::stdin_is_terminal() => console::interactive(&mut session)?,
        None => {
            let text = console::read_stdin()?;
            console::replay(&mut session, &text)?;
        }
    }
    if let Some(reason) = session.cannot_judge_reason() {
        // The transcript says it where it happened; stderr gets the one line
        // every exit 2 has.
        eprintln!("harness: {}: {reason}", options.driver.display());
    }
    Ok(session.exit_code())
}

/// A session on the driver, stopped before it loads.
///
/// # Errors
/// The driver cannot be loaded on the emulated machine.
pub fn open(options: &KdOptions) -> Result<Session, KdError> {
    let (image, _) = emulate::load_checks(&options.driver)?;
    let driver = harness_engines::native::prepare(&options.driver, &image)?;
    let modules = driver.missing_modules();
    if !modules.is_empty() {
        return Err(CannotJudge {
            driver: driver.file_name.clone(),
            engine: Engine::Native,
            gap: Gap::MissingModules { modules },
            site: None,
        }
        .into());
    }
    let request = Request {
        driver: options.driver.clone(),
        engine: EngineKind::Native,
        pool_hit_tag: None,
        options: RunOptions {
            fail_allocation: 0,
            verifier_flags: options.verifier_flags,
            seed: options.seed,
            os_version: options.os_version.clone(),
            max_instructions: options.max_instructions,
            timeout: options.timeout,
            ..RunOptions::default()
        },
    };
    emulate::check_flags(&request)?;
    let machine = emulate::native_options(&request)?;
    let (pdb, pdb_problem) = session::load_pdb(&options.driver, &image);
    Ok(Session::new(
        &driver,
        pdb,
        SessionOptions {
            machine,
            utc_offset_minutes: 0,
            pdb_problem,
        },
    )?)
}
