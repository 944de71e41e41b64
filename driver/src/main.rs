//! Sample.sys, portable build: any host, x64 and 32-bit x86, no WDK.
//!
//! `harness build` runs `cargo build --bin Sample --features portable` for a
//! `*-pc-windows-msvc` target; rust-lld links a native image against
//! ntoskrnl.exe through raw-dylib imports (see `portable/`).

#![no_std]
#![no_main]

mod portable;
mod sample;
mod unicode;

use portable as ntos;
