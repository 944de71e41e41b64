//! The harness's core: what every source of a verdict shares, with no
//! emulator in it.
//!
//! Engines report [`events::Event`]s; the [`tracker`] applies Driver
//! Verifier's rules to them and gives one [`verdict::Verdict`], which
//! [`render`] prints as WinDbg would. Around them: the PE image and the
//! Windows loader's checks ([`pe`], [`loader`]), names for addresses
//! ([`symbols`], from the driver's PDB read by [`pdb`]), the type model `dt`
//! prints ([`types`]), Windows' names and layouts ([`nt`], [`wdm`],
//! [`pool_api`]), bounded input ([`input`]) and the tools the harness runs
//! ([`process`]).

pub mod arch;
pub mod console;
pub mod error;
pub mod events;
pub mod input;
pub mod loader;
pub mod nt;
pub mod pdb;
pub mod pe;
pub mod pool_api;
pub mod process;
pub mod render;
pub mod symbols;
pub mod tracker;
pub mod types;
pub mod verdict;
pub mod verifier;
pub mod wdm;

use std::path::{Path, PathBuf};

/// The harness's cache: `$XDG_CACHE_HOME/sample-harness`, else
/// `$HOME/.cache/sample-harness`.
///
/// `None` when neither names an absolute directory (an empty or
/// relative value would put it in the working directory).
#[must_use]
pub fn cache_dir() -> Option<PathBuf> {
    let absolute = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|path| path.is_absolute())
    };
    absolute("XDG_CACHE_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".cache")))
        .map(|cache| cache.join("sample-harness"))
}

/// A path's file name as text (`Sample.sys`).
#[must_use]
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |name| name.to_string_lossy().into_owned())
}
