//! `harness emulate`: one driver, one engine, one verdict.

use std::path::{Path, PathBuf};

use crate::engine::{EngineError, RunOptions};
use harness_core::arch::Arch;
use harness_core::error::{CannotJudge, InputError, LoadRefused, UnknownImport};
use harness_core::events::{Event, Gap};
use harness_core::file_name;
use harness_core::loader::{self, ImportProblem};
use harness_core::pe::{PeError, PeImage};
use harness_core::symbols::{SymbolSource, Symbolizer};
use harness_core::tracker::{self, Context};
use harness_core::verdict::{Engine, ExitCode, Verdict};
use harness_core::verifier::VerifierFlags;

/// The engines `emulate` can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineKind {
    /// The harness's own emulated kernel on Unicorn (x64 and x86).
    Native,
    /// Mandiant Speakeasy (x64 and x86).
    Speakeasy,
    /// Wine's winedevice.exe (x64; x86 with 32-bit Wine).
    Wine,
}

impl EngineKind {
    /// The engine as verdicts name it.
    #[must_use]
    pub const fn engine(self) -> Engine {
        match self {
            Self::Native => Engine::Native,
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
    /// Whether Windows would load the image cannot be told.
    #[error(transparent)]
    UnknownImport(#[from] UnknownImport),
}

impl EmulateError {
    /// The exit code: 6 for an image Windows would not load, else 2
    /// (could not run, or cannot judge).
    #[must_use]
    pub const fn exit_code(&self) -> ExitCode {
        match self {
            Self::LoadRefused(_) => ExitCode::LoadRefused,
            Self::Input(_) | Self::Engine(_) | Self::CannotJudge(_) | Self::UnknownImport(_) => {
                ExitCode::CannotJudge
            }
        }
    }
}

/// Runs a driver and judges it.
///
/// # Errors
/// Bad input, a missing tool, an engine that could not run the driver, or
/// a run that cannot be judged.
pub fn emulate(request: &Request) -> Result<Verdict, EmulateError> {
    check_flags(request)?;
    let driver = &request.driver;
    let (image, arch) = load_checks(driver)?;
    let mut lacking = Vec::new();
    let events = match request.engine {
        EngineKind::Native => {
            let prepared = crate::native::prepare(driver, &image)?;
            lacking = prepared.missing_imports();
            crate::native::run(&prepared, &native_options(request)?)?
        }
        EngineKind::Speakeasy => {
            speakeasy_follows_irql(driver, &image)?;
            crate::speakeasy::run(driver, &request.options)?
        }
        EngineKind::Wine => {
            let events = crate::wine::run(driver, &image, &request.options)?;
            // A gap the run met first (a module Wine lacks, a stub) is what
            // stopped the judging; else the IRQL Wine does not keep is.
            if !events
                .iter()
                .any(|event| matches!(event, Event::Gap { .. }))
            {
                wine_follows_irql(driver, &image)?;
            }
            events
        }
    };
    let mut verdict = judge(driver, &image, arch, &events, request)?;
    let fail = request.options.fail_allocation;
    let made = crate::sweep::allocation_calls(&events).count();
    if fail != 0 && !crate::sweep::allocation_calls(&events).any(|(_, injected)| injected) {
        verdict.notes.push(format!(
            "allocation {fail} was never reached (the driver made {made} allocation{}): nothing was made to fail",
            if made == 1 { "" } else { "s" }
        ));
    }
    if !lacking.is_empty() {
        verdict.notes.push(format!(
            "the native engine lacks {} of the driver's imports (a call to one stops the run): {}",
            lacking.len(),
            lacking
                .iter()
                .map(|(library, name)| format!("{library}!{name}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(verdict)
}

/// Whether the engine applies the verifier flags asked for.
///
/// The native engine applies those its table marks; Speakeasy and Wine
/// pool tracking (0x8) alone, since they cannot tell the IRQL or lay out
/// special pool.
///
/// # Errors
/// A flag the engine does not apply: one line naming it.
pub fn check_flags(request: &Request) -> Result<(), InputError> {
    let flags = request.options.verifier_flags;
    let lacking = match request.engine {
        EngineKind::Native => flags.unsupported_native(),
        EngineKind::Speakeasy | EngineKind::Wine if flags != VerifierFlags::default() => {
            vec![format!("{flags} (only 0x8, pool tracking)")]
        }
        EngineKind::Speakeasy | EngineKind::Wine => Vec::new(),
    };
    if lacking.is_empty() {
        return Ok(());
    }
    Err(InputError::Unsupported(format!(
        "--verifier-flags {flags}: the {} engine does not apply verifier flag {}; the run cannot be judged",
        request.engine.engine(),
        lacking.join(", ")
    )))
}

/// Speakeasy's CPU (Unicorn 1.0.2) ignores writes to CR8, the x64 WDK's
/// inline `KeRaiseIrql`: the verifier's automatic IRQL checks could not see
/// the level such a driver runs at, so it cannot be judged there.
///
/// # Errors
/// The driver writes CR8: one line naming where.
fn speakeasy_follows_irql(driver: &Path, image: &PeImage) -> Result<(), EmulateError> {
    let Some(site) = first_cr8_write(driver, image)? else {
        return Ok(());
    };
    Err(CannotJudge {
        driver: file_name(driver),
        engine: Engine::Speakeasy,
        gap: Gap::EngineLimit {
            detail: format!(
                "the driver sets IRQL by writing CR8 at {site} (the x64 WDK's inline KeRaiseIrql), which Speakeasy's CPU ignores, so the verifier's IRQL checks cannot follow it"
            ),
        },
        site: Some(site),
    }
    .into())
}

/// Where the driver first writes CR8 (the x64 WDK's inline `KeRaiseIrql`),
/// as a symbol; none on x86.
///
/// # Errors
/// The image cannot be laid out.
fn first_cr8_write(driver: &Path, image: &PeImage) -> Result<Option<String>, EmulateError> {
    if image.arch != Some(Arch::X64) {
        return Ok(None);
    }
    let prepared = crate::native::prepare(driver, image)?;
    Ok(harness_ntemu::machine::cr8_accesses(&prepared)
        .into_iter()
        .find(|access| !access.read)
        .map(|write| prepared.symbols.name(write.address)))
}

/// Routines that raise the IRQL (WDK: wdm.h; hal.dll's on x86). Wine runs
/// drivers in a user-mode process and does not keep an IRQL: its
/// `KfRaiseIrql` is a stub (Wine 8.0's session log: `fixme:ntoskrnl:KfRaiseIrql
/// (2) stub!`), and the others return without raising anything.
const IRQL_RAISING_ROUTINES: [&str; 12] = [
    "KfRaiseIrql",
    "KeRaiseIrqlToDpcLevel",
    "KeRaiseIrqlToSynchLevel",
    "KfAcquireSpinLock",
    "KeAcquireSpinLockRaiseToDpc",
    "KeAcquireQueuedSpinLock",
    "KeAcquireInStackQueuedSpinLock",
    "KeAcquireSpinLockForDpc",
    "KeAcquireInterruptSpinLock",
    "IoAcquireCancelSpinLock",
    "ExAcquireSpinLockExclusive",
    "ExAcquireSpinLockShared",
];

/// Wine keeps no IRQL (its winedevice.exe is a user-mode process): a driver
/// that raises it would pass checks Windows makes at the raised level (0xC4
/// / 0x01, paged pool at `DISPATCH_LEVEL`), so it cannot be judged there. Its
/// CR8 writes (the x64 WDK's inline `KeRaiseIrql`) fault as privileged
/// instructions that Wine's ntoskrnl emulates and otherwise ignores (the
/// session's seh trace: `dispatch_exception code=c0000096`, then its vectored
/// handler); the imported raising routines do nothing.
///
/// # Errors
/// The driver writes CR8 or imports one of [`IRQL_RAISING_ROUTINES`]: one
/// line naming where or which.
fn wine_follows_irql(driver: &Path, image: &PeImage) -> Result<(), EmulateError> {
    let cannot_judge = |detail: String, site: Option<String>| CannotJudge {
        driver: file_name(driver),
        engine: Engine::Wine,
        gap: Gap::EngineLimit { detail },
        site,
    };
    if let Some(import) = image
        .imports
        .iter()
        .find(|import| IRQL_RAISING_ROUTINES.contains(&import.name.as_str()))
    {
        return Err(cannot_judge(
            format!(
                "the driver raises IRQL with {}!{}, and Wine keeps no IRQL, so the verifier's IRQL checks cannot follow it",
                import.library, import.name
            ),
            None,
        )
        .into());
    }
    let Some(site) = first_cr8_write(driver, image)? else {
        return Ok(());
    };
    Err(cannot_judge(
        format!(
            "the driver sets IRQL by writing CR8 at {site} (the x64 WDK's inline KeRaiseIrql), which Wine emulates without keeping an IRQL, so the verifier's IRQL checks cannot follow it"
        ),
        Some(site),
    )
    .into())
}

/// The native machine's options for a request.
///
/// # Errors
/// A version that is not `X.Y.B`.
pub fn native_options(request: &Request) -> Result<harness_ntemu::machine::Options, InputError> {
    let options = &request.options;
    let profile = match &options.os_version {
        Some(version) => harness_ntemu::profile::Profile::parse(version).ok_or_else(|| {
            InputError::Unsupported(format!("'{version}' is not a version like 6.1.7601"))
        })?,
        None => harness_ntemu::profile::Profile::default(),
    };
    Ok(harness_ntemu::machine::Options {
        profile,
        fail_allocation: (options.fail_allocation != 0).then_some(options.fail_allocation),
        verifier_flags: options.verifier_flags,
        seed: options.seed,
        pool_hit_tag: request.pool_hit_tag.unwrap_or(0),
        debugger: false,
        max_instructions: options.max_instructions,
        timeout: options.timeout,
    })
}

/// Reads the image and checks it as the Windows loader would (layout and
/// imports), before any engine maps it.
///
/// # Errors
/// The file cannot be used, Windows would refuse it, or an import cannot be
/// told apart from one no Windows exports.
pub fn load_checks(driver: &Path) -> Result<(PeImage, Arch), EmulateError> {
    let image = check_image(driver)?;
    let unusable = |why| InputError::Image {
        path: driver.to_path_buf(),
        why,
    };
    if image.arch.is_none() {
        return Err(unusable(PeError::UnsupportedMachine(image.machine)).into());
    }
    // The loader's next step (after the layout, which `check_image` read);
    // what the harness itself cannot run comes after what Windows refuses.
    match loader::check_imports(&image) {
        Ok(()) => {}
        Err(ImportProblem::Refused(reason)) => {
            return Err(LoadRefused {
                driver: file_name(driver),
                reason,
            }
            .into());
        }
        Err(ImportProblem::Unknown(why)) => {
            return Err(UnknownImport {
                driver: file_name(driver),
                why,
            }
            .into());
        }
    }
    let arch = image.require_kernel_driver().map_err(unusable)?;
    Ok((image, arch))
}

/// Reads the image and checks it as the Windows loader would, before any
/// engine maps it.
///
/// # Errors
/// The file cannot be used, or Windows would refuse its layout.
pub(crate) fn check_image(driver: &Path) -> Result<PeImage, EmulateError> {
    match PeImage::read(driver) {
        Ok(image) => Ok(image),
        Err(InputError::Image { why, .. }) if why.windows_refuses() => Err(LoadRefused {
            driver: file_name(driver),
            reason: why.to_string(),
        }
        .into()),
        Err(error) => Err(error.into()),
    }
}

fn judge(
    driver: &Path,
    image: &PeImage,
    arch: Arch,
    events: &[Event],
    request: &Request,
) -> Result<Verdict, CannotJudge> {
    let symbols = loaded_symbols(driver, image, events);
    let (pdb_problem, source) = (symbols.pdb_problem.clone(), symbols.source.clone());
    let context = Context {
        driver: file_name(driver),
        engine: request.engine.engine(),
        symbols,
        arch,
        pool_hit_tag: request.pool_hit_tag,
        verifier_flags: request.options.verifier_flags,
    };
    let mut verdict = tracker::judge(events, context)?;
    if let Some(problem) = &pdb_problem {
        verdict
            .notes
            .push(format!("symbols from exports only: {problem}"));
    } else if source == SymbolSource::Exports {
        verdict
            .notes
            .push("no PDB beside the driver: symbols from exports only".into());
    }
    Ok(verdict)
}

/// Names for the driver's addresses where the engine loaded it (its `Load`
/// event), else at the image's preferred base.
#[must_use]
pub(crate) fn loaded_symbols(driver: &Path, image: &PeImage, events: &[Event]) -> Symbolizer {
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
    Symbolizer::for_driver(driver, image, base, size)
}
