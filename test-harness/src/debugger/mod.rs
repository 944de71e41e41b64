//! `harness kd`: a kd-compatible debugger session on the native engine's
//! emulated machine. Everything a command prints comes from the machine's
//! memory and registers, the driver's PDB and the emulated kernel's symbols.

pub mod expr;
pub mod format;
pub mod pdb;
pub mod types;
