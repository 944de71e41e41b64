//! The `harness` command's library: what its subcommands do beyond the
//! crates below it (the demo, the VM orchestration, the kd wiring), and the
//! exit code each command's error maps to.

pub mod demo;
pub mod error;
pub mod kd;
pub mod lesson;
pub mod vm;
