//! The native engine: the harness's own emulated Windows kernel on the
//! Unicorn CPU emulator.
//!
//! The driver runs at kernel addresses, calls real machine code in an
//! emulated `nt` image, allocates from a pool with real headers, and is
//! loaded and unloaded the way the I/O manager does it. A run takes
//! milliseconds, so a sweep of runs (`--fail-each`) is cheap.

pub mod cpu;
pub mod loader;
pub mod machine;
pub mod memory;
pub mod nt;
mod objects;
pub mod pool;
pub mod profile;
pub mod routines;
pub mod traps;

use std::path::Path;
use std::sync::Arc;

use self::machine::{Driver, Machine, Options};
use super::EngineError;
use crate::events::Event;
use crate::pe::PeImage;

/// Runs `driver` on a fresh machine and returns what it did.
///
/// # Errors
/// The machine could not be built.
pub fn run(driver: &Arc<Driver>, options: &Options) -> Result<Vec<Event>, EngineError> {
    let modules = driver.missing_modules();
    if !modules.is_empty() {
        // The engine is ntoskrnl.exe and hal.dll only: it cannot load the
        // driver's other modules (KMDF's WDFLDR.SYS, NDIS.SYS, ...).
        return Ok(vec![Event::Gap {
            phase: None,
            gap: crate::events::Gap::MissingModules { modules },
            caller: None,
        }]);
    }
    let mut machine = Machine::new(Arc::clone(driver), options.clone()).map_err(|error| {
        EngineError::Unsupported(format!("the native engine could not start: {error}"))
    })?;
    machine.run_to_end();
    Ok(machine.events().to_vec())
}

/// Reads and lays out a driver for the native engine.
///
/// # Errors
/// The image cannot be laid out.
pub fn prepare(path: &Path, image: &PeImage) -> Result<Arc<Driver>, EngineError> {
    let arch = image
        .arch
        .ok_or_else(|| EngineError::Unsupported("unsupported architecture".into()))?;
    let bytes = crate::input::read_file(path, crate::input::MAX_IMAGE_FILE)
        .map_err(|error| EngineError::Unsupported(error.to_string()))?;
    Driver::prepare(path, image, &bytes, arch)
        .map(Arc::new)
        .map_err(|error| EngineError::Unsupported(format!("{}: {error}", path.display())))
}
