//! A kd-compatible debugger session on the native engine's emulated
//! machine (`harness kd` wires it to the command line).
//!
//! Everything a command prints comes from the machine's memory and
//! registers, the driver's PDB and the emulated kernel's symbols.

pub mod console;
pub(crate) mod disasm;
pub(crate) mod expr;
pub mod format;
pub mod names;
pub mod session;
pub mod stack;
pub mod target;

pub use session::{Session, SessionOptions};
