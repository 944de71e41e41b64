//! Reading the user's files: regular files only (a FIFO or a device would
//! block or never end), and never more than a stated limit.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::error::InputError;

/// The most a driver image may be: larger than any real driver.
pub const MAX_IMAGE_FILE: u64 = 256 << 20;
/// The most debugger output `analyze` reads.
pub const MAX_TEXT_FILE: u64 = 64 << 20;

/// Reads a whole regular file of at most `limit` bytes.
///
/// # Errors
/// Missing, not a regular file, unreadable, or larger than `limit`.
pub fn read_file(path: &Path, limit: u64) -> Result<Vec<u8>, InputError> {
    let metadata = std::fs::metadata(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            InputError::NotFound(path.to_path_buf())
        } else {
            InputError::Read {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    if !metadata.is_file() {
        return Err(InputError::NotAFile(path.to_path_buf()));
    }
    if metadata.len() > limit {
        return Err(InputError::TooLarge {
            path: path.to_path_buf(),
            limit,
        });
    }
    let read_error = |source| InputError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    // The file may grow between the check and the read.
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > limit {
        return Err(InputError::TooLarge {
            path: path.to_path_buf(),
            limit,
        });
    }
    Ok(bytes)
}
