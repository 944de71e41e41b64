//! Kernel interface for the official build: wdk-sys bindings and wdk's
//! `println!`, under the names the driver uses (those of the WDK headers).

pub use wdk::println;
pub use wdk_sys::{
    _POOL_TYPE::PagedPool,
    DRIVER_OBJECT, NTSTATUS, RTL_OSVERSIONINFOW, STATUS_INSUFFICIENT_RESOURCES, STATUS_SUCCESS,
    UNICODE_STRING,
    ntddk::{ExFreePoolWithTag, RtlCopyUnicodeString, RtlGetVersion},
};
use wdk_sys::{PDRIVER_UNLOAD, POOL_TYPE, PVOID, SIZE_T, ULONG};

#[cfg(feature = "paged-at-dispatch")]
pub use crate::irql::{DISPATCH_LEVEL, KeLowerIrql, KeRaiseIrql};

unsafe extern "system" {
    /// wdk-sys leaves this out of its bindings because the WDK marks it
    /// deprecated (in favour of `ExAllocatePool2`), but it is what the
    /// walkthrough's driver calls, and ntoskrnl.exe still exports it.
    pub fn ExAllocatePoolWithTag(PoolType: POOL_TYPE, NumberOfBytes: SIZE_T, Tag: ULONG) -> PVOID;
}

/// The driver's unload routine, as the shared driver code declares it.
pub type UnloadRoutine = unsafe extern "system" fn(driver: *mut DRIVER_OBJECT);

/// Stores the unload routine in the driver object.
pub fn set_unload_routine(driver: &mut DRIVER_OBJECT, unload: UnloadRoutine) {
    // SAFETY: bindgen spells the callback `extern "C"`; on x86_64 and aarch64,
    // the only targets wdk-sys supports, that is the same calling convention
    // as "system", so both pointer types have the same size and meaning.
    driver.DriverUnload =
        unsafe { core::mem::transmute::<Option<UnloadRoutine>, PDRIVER_UNLOAD>(Some(unload)) };
}
