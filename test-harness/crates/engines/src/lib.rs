//! The engines and their orchestration: each engine runs a driver and only
//! reports events (the native machine, Speakeasy, Wine's winedevice.exe);
//! [`emulate`] judges one run with the core's tracker, [`sweep`] judges a
//! run per failed allocation.

pub mod emulate;
pub mod engine;
pub mod native;
pub mod python;
pub mod speakeasy;
pub mod sweep;
pub mod wine;
