//! The one error type of the harness: a run that could not be judged.
//! It always ends the program with exit code 2 and a single line on stderr.

use std::fmt;

/// Exit code for "could not run" (bad input, missing tool, emulator gap).
pub const EXIT_COULD_NOT_RUN: i32 = 2;

/// Why the harness could not produce a verdict, as one line for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

impl Failure {
    /// A failure with the given one-line message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Multi-line tool output never reaches the user's terminal unfolded.
        f.write_str(&self.0.replace('\n', " "))
    }
}

impl std::error::Error for Failure {}

/// Shorthand for harness results.
pub type Result<T> = std::result::Result<T, Failure>;
