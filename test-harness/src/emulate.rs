//! `harness emulate`: one driver, one engine, one verdict.

use std::path::{Path, PathBuf};

use crate::arch::Arch;
use crate::engine::{self, EngineError, RunOptions};
use crate::error::{CannotJudge, InputError, LoadRefused};
use crate::events::Event;
use crate::pe::PeImage;
use crate::symbols::{SymbolSource, Symbolizer};
use crate::tracker::{self, Context};
use crate::verdict::{Engine, Verdict};

/// The engines `emulate` can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineKind {
    /// Mandiant Speakeasy (x64 and x86).
    Speakeasy,
    /// Wine's winedevice.exe (x64 only).
    Wine,
}

impl EngineKind {
    /// The engine as verdicts name it.
    #[must_use]
    pub const fn engine(self) -> Engine {
        match self {
            Self::Speakeasy => Engine::Speakeasy,
            Self::Wine => Engine::Wine,
        }
    }
}

/// Everything `emulate` needs.
#[derive(Debug, Clone)]
pub struct Request {
    /// The driver image.
    pub driver: PathBuf,
    /// Which engine runs it.
    pub engine: EngineKind,
    /// nt!PoolHitTag.
    pub pool_hit_tag: Option<u32>,
    /// Engine options.
    pub options: RunOptions,
}

/// Why `emulate` gave no verdict.
#[derive(Debug, thiserror::Error)]
pub enum EmulateError {
    /// The driver file cannot be used.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The engine could not run.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The engine ran but fell short of a Windows machine.
    #[error(transparent)]
    CannotJudge(#[from] CannotJudge),
    /// Windows would not load the image.
    #[error(transparent)]
    LoadRefused(#[from] LoadRefused),
}

/// Runs a driver and judges it.
///
/// # Errors
/// Bad input, a missing tool, an engine that could not run the driver, or
/// a run that cannot be judged.
pub fn emulate(request: &Request) -> Result<Verdict, EmulateError> {
    let driver = &request.driver;
    let image = PeImage::read(driver)?;
    let arch = image
        .require_kernel_driver()
        .map_err(|why| InputError::Image {
            path: driver.clone(),
            why,
        })?;
    let events = match request.engine {
        EngineKind::Speakeasy => engine::speakeasy::run(driver, &request.options)?,
        EngineKind::Wine => {
            if arch != Arch::X64 {
                return Err(InputError::Unsupported(format!(
                    "{}: the wine engine runs x64 drivers only (Debian's wine64; 32-bit Wine is not installable here)",
                    driver.display()
                ))
                .into());
            }
            engine::wine::run(driver, &image, &request.options)?
        }
    };
    Ok(judge(driver, &image, arch, &events, request)?)
}

fn judge(
    driver: &Path,
    image: &PeImage,
    arch: Arch,
    events: &[Event],
    request: &Request,
) -> Result<Verdict, CannotJudge> {
    let (base, size) = events
        .iter()
        .find_map(|event| match event {
            Event::Load {
                image_base,
                image_size,
                ..
            } => Some((*image_base, *image_size)),
            _ => None,
        })
        .unwrap_or((image.image_base, image.size_of_image));
    let symbols = Symbolizer::for_driver(driver, image, base, size);
    let context = Context {
        driver: file_name(driver),
        engine: request.engine.engine(),
        symbols: &symbols,
        arch,
        pool_hit_tag: request.pool_hit_tag,
    };
    let mut verdict = tracker::judge(events, context)?;
    if let Some(problem) = &symbols.pdb_problem {
        verdict
            .notes
            .push(format!("symbols from exports only: {problem}"));
    } else if symbols.source == SymbolSource::Exports {
        verdict
            .notes
            .push("no PDB beside the driver: symbols from exports only".into());
    }
    Ok(verdict)
}

/// A path's file name as text (`Sample.sys`).
#[must_use]
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |name| name.to_string_lossy().into_owned())
}
