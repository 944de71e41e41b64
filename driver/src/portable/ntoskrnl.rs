//! The ntoskrnl.exe exports the driver calls, imported without an import
//! library. `+verbatim` keeps the DLL name `ntoskrnl.exe` (not
//! `ntoskrnl.exe.dll`); on x86, `undecorated` imports `ExFreePoolWithTag`
//! rather than `_ExFreePoolWithTag@8`, which the kernel would not resolve.
#![allow(non_snake_case)]

use core::ffi::c_void;

use super::types::{NTSTATUS, POOL_TYPE, RTL_OSVERSIONINFOW, UNICODE_STRING};

/// An `extern` block of ntoskrnl.exe imports with the right link attributes.
macro_rules! ntoskrnl {
    ($abi:literal { $($item:item)* }) => {
        #[cfg_attr(
            target_arch = "x86",
            link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim", import_name_type = "undecorated")
        )]
        #[cfg_attr(not(target_arch = "x86"), link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim"))]
        unsafe extern $abi {
            $($item)*
        }
    };
}

ntoskrnl!("system" {
    pub fn ExAllocatePoolWithTag(PoolType: POOL_TYPE, NumberOfBytes: usize, Tag: u32) -> *mut c_void;
    pub fn ExFreePoolWithTag(P: *mut c_void, Tag: u32);
    pub fn RtlCopyUnicodeString(Destination: *mut UNICODE_STRING, Source: *const UNICODE_STRING);
    pub fn RtlGetVersion(VersionInformation: *mut RTL_OSVERSIONINFOW) -> NTSTATUS;
    pub fn KeBugCheckEx(BugCheckCode: u32, P1: usize, P2: usize, P3: usize, P4: usize) -> !;
});

// DbgPrint is variadic, hence cdecl on every architecture.
ntoskrnl!("C" {
    pub fn DbgPrint(Format: *const u8, Arguments: ...) -> u32;
});
