//! Sample.sys, official build: the windows-drivers-rs crates on a Windows host
//! with the WDK (`cargo make default --features wdk`).
//!
//! Without the `wdk` feature the library holds no driver; its test build runs
//! the host unit tests of the code the portable build shares (`cargo test -p
//! sample`), with the portable layer's types standing in for the kernel's.

#![cfg_attr(all(feature = "wdk", not(test)), no_std)]

#[cfg(all(feature = "wdk", not(test)))]
extern crate wdk_panic;

#[cfg(feature = "wdk")]
mod official;
#[cfg(feature = "wdk")]
mod sample;
#[cfg(any(feature = "wdk", test))]
mod unicode;

#[cfg(feature = "wdk")]
use official as ntos;

// The WDK's inline KeRaiseIrql/KeLowerIrql, which wdk-sys does not bind.
#[cfg(all(feature = "wdk", feature = "paged-at-dispatch", not(test)))]
#[path = "portable/irql.rs"]
mod irql;

// Host unit tests: the portable layer's WDK types and its DbgPrint chunking.
#[cfg(test)]
#[path = "portable/debug_print.rs"]
mod debug_print;
#[cfg(all(test, not(feature = "wdk")))]
#[allow(dead_code)]
#[path = "portable/types.rs"]
mod ntos;

#[cfg(all(feature = "wdk", not(test)))]
#[global_allocator]
static GLOBAL_ALLOCATOR: wdk_alloc::WdkAllocator = wdk_alloc::WdkAllocator;
