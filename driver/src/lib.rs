//! Sample.sys, official build: the windows-drivers-rs crates on a Windows host
//! with the WDK (`cargo make default --features wdk`). Without the `wdk`
//! feature this crate is empty, so the workspace still builds on any host.

#![cfg(feature = "wdk")]
#![cfg_attr(not(test), no_std)]

#[cfg(not(test))]
extern crate wdk_panic;

#[cfg(not(test))]
use wdk_alloc::WdkAllocator;

mod official;
mod sample;
mod unicode;

use official as ntos;

#[cfg(not(test))]
#[global_allocator]
static GLOBAL_ALLOCATOR: WdkAllocator = WdkAllocator;
