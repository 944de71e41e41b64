//! The harness's errors, typed at each module boundary.
//!
//! Each command's error in the `harness` crate wraps these and says which
//! exit code it ends in.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::events::Gap;
use crate::verdict::Engine;

/// A program the harness runs could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// It could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: io::Error,
    },
    /// It outlived its limit and was stopped.
    #[error("{program} did not finish within {} s and was stopped", .limit.as_secs())]
    Timeout {
        /// The program.
        program: String,
        /// The limit.
        limit: Duration,
    },
    /// It ran and failed; `detail` is the last line it printed.
    #[error("{what}: {detail}")]
    Failed {
        /// What the harness was doing.
        what: String,
        /// The program's last line of output.
        detail: String,
    },
}

/// Input the harness cannot use.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The path does not exist.
    #[error("{}: no such file", .0.display())]
    NotFound(PathBuf),
    /// A directory, FIFO, device or socket where a file was expected.
    #[error("{}: not a regular file", .0.display())]
    NotAFile(PathBuf),
    /// Reading failed.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file is larger than the harness reads.
    #[error("{}: larger than {limit} bytes, the most the harness reads", .path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// Not an image the harness can run.
    #[error("{}: {why}", .path.display())]
    Image {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: crate::pe::PeError,
    },
    /// An option the engine cannot honour.
    #[error("{0}")]
    Unsupported(String),
}

/// The engine could not do its part, so the run is not judged.
#[derive(Debug, thiserror::Error)]
#[error("{driver}: {}; the run cannot be judged", .gap.describe(*.engine, .site.as_deref()))]
pub struct CannotJudge {
    /// The driver's file name.
    pub driver: String,
    /// The engine that fell short.
    pub engine: Engine,
    /// What it lacked.
    pub gap: Gap,
    /// Where the driver reached it (`Sample!DriverEntry+0x27`).
    pub site: Option<String>,
}

/// Windows would not load the image; nothing of the driver ran.
#[derive(Debug, thiserror::Error)]
#[error("{driver}: Windows would not load this image: {reason}")]
pub struct LoadRefused {
    /// The driver's file name.
    pub driver: String,
    /// What the kernel loader would stop at.
    pub reason: String,
}

/// The harness cannot tell whether Windows would load the image at all (an
/// import it cannot vouch for), so no verdict about it can be trusted.
#[derive(Debug, thiserror::Error)]
#[error("{driver}: {why}; the run cannot be judged")]
pub struct UnknownImport {
    /// The driver's file name.
    pub driver: String,
    /// Which import, and why it cannot be vouched for.
    pub why: String,
}

/// An error as one line: its chain of causes joined by ": " (a cause its
/// wrapper prints already is not repeated), line breaks folded.
#[must_use]
pub fn one_line(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text.split(['\r', '\n'])
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
