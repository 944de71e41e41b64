//! Building and test-signing what the harness runs: the portable Sample.sys
//! (x64 and x86, each fault a cargo feature) and samplectl.exe, with a
//! self-made test certificate for 64-bit Windows.

pub mod driver_build;
pub mod signing;
