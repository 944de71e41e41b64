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
pub(crate) mod ob;
mod objects;
pub mod pool;
pub mod profile;
pub mod routines;
pub mod special_pool;
pub mod system;
pub(crate) mod traps;

pub use unicorn_engine::RegisterX86;
