//! The Sample.sys test harness: builds the portable driver, runs drivers under
//! emulated Driver Verifier pool tracking, parses real debugger output, and
//! drives a Windows test VM. Every source ends in one [`verdict::Verdict`].

pub mod arch;
pub mod demo;
pub mod driver_build;
pub mod emulate;
pub mod engine;
pub mod events;
pub mod failure;
pub mod kd;
pub mod pe;
pub mod render;
pub mod symbols;
pub mod tracker;
pub mod verdict;
pub mod vm;
