//! `harness emulate`: one driver, one engine, one verdict.

use std::path::{Path, PathBuf};

use crate::engine::{self, RunOptions};
use crate::events::Event;
use crate::failure::{Failure, Result};
use crate::pe::PeImage;
use crate::symbols::{SymbolSource, Symbolizer};
use crate::tracker::{self, Context};
use crate::verdict::Verdict;

/// The engines `emulate` can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineKind {
    /// Mandiant Speakeasy (x64 and x86).
    Speakeasy,
    /// Wine's winedevice.exe (x64 only).
    Wine,
}

impl EngineKind {
    /// The engine's name in verdicts.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Speakeasy => "speakeasy",
            Self::Wine => "wine",
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

/// Runs a driver and judges it.
///
/// # Errors
/// Bad input, a missing tool, or an engine that could not run the driver.
pub fn emulate(request: &Request) -> Result<Verdict> {
    let driver = &request.driver;
    if !driver.is_file() {
        return Err(Failure::new(format!("{}: no such file", driver.display())));
    }
    let image = PeImage::read(driver)?;
    let arch = image
        .require_kernel_driver()
        .map_err(|why| Failure::new(format!("{}: {why}", driver.display())))?;
    let events = match request.engine {
        EngineKind::Speakeasy => engine::speakeasy::run(driver, &request.options)?,
        EngineKind::Wine => {
            if arch != crate::arch::Arch::X64 {
                return Err(Failure::new(format!(
                    "{}: the wine engine runs x64 drivers only (Debian's wine64; 32-bit Wine is not installable here)",
                    driver.display()
                )));
            }
            engine::wine::run(driver, image.size_of_image, &request.options)?
        }
    };
    judge(driver, &image, arch, &events, request)
}

fn judge(
    driver: &Path,
    image: &PeImage,
    arch: crate::arch::Arch,
    events: &[Event],
    request: &Request,
) -> Result<Verdict> {
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
        driver: driver
            .file_name()
            .map_or_else(String::new, |name| name.to_string_lossy().into_owned()),
        engine: request.engine.name().into(),
        symbols: &symbols,
        arch,
        pool_hit_tag: request.pool_hit_tag,
    };
    let mut verdict = tracker::judge(events, &context)?;
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
