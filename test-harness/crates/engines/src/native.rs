//! The native engine as an engine: lays the driver out for the emulated
//! machine and runs it to the end.

use std::path::Path;
use std::sync::Arc;

use harness_core::events::{Event, Gap};
use harness_core::input;
use harness_core::pe::PeImage;
use harness_ntemu::machine::{Driver, Machine, Options};

use crate::engine::EngineError;

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
            gap: Gap::MissingModules { modules },
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
    let bytes = input::read_file(path, input::MAX_IMAGE_FILE)
        .map_err(|error| EngineError::Unsupported(error.to_string()))?;
    Driver::prepare(path, image, &bytes, arch)
        .map(Arc::new)
        .map_err(|error| EngineError::Unsupported(format!("{}: {error}", path.display())))
}
