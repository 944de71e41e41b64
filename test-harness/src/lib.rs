//! The Sample.sys test harness: builds the portable driver, runs drivers under
//! emulated Driver Verifier pool tracking, parses real debugger output, and
//! drives a Windows test VM. Every source ends in one [`verdict::Verdict`].

pub mod arch;
pub mod console;
pub mod debugger;
pub mod demo;
pub mod driver_build;
pub mod emulate;
pub mod engine;
pub mod error;
pub mod events;
pub mod input;
pub mod kd;
pub mod loader;
pub mod nt;
pub mod pe;
pub mod pool_api;
pub mod render;
pub mod signing;
pub mod sweep;
pub mod symbols;
pub mod tracker;
pub mod verdict;
pub mod vm;
pub mod wdm;

use std::path::PathBuf;

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
