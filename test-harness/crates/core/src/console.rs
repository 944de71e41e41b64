//! Writing to stdout without `println!`'s panic when the reader has gone
//! (`harness emulate x.sys | head -1`): the verdict's exit code still
//! stands, so a closed pipe is not an error.

use std::io::{self, Write};

/// Writes `text` to stdout and flushes it. A closed pipe is ignored; any
/// other write error (a full disk under a redirect) is returned.
///
/// # Errors
/// The write's error, but for [`io::ErrorKind::BrokenPipe`].
pub fn emit(text: &str) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// [`emit`] with a newline.
///
/// # Errors
/// As [`emit`].
pub fn emit_line(text: &str) -> io::Result<()> {
    emit(&format!("{text}\n"))
}
