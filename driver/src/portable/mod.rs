//! Kernel interface for the portable build: the WDK names the driver uses,
//! declared by hand, with ntoskrnl.exe linked through raw-dylib imports.

pub mod debug_print;
mod intrinsics;
mod ntoskrnl;
mod panic;
mod types;

pub(crate) use debug_print::println;
pub use ntoskrnl::{ExAllocatePoolWithTag, ExFreePoolWithTag, RtlCopyUnicodeString, RtlGetVersion};
pub use types::{
    DRIVER_OBJECT, NTSTATUS, PagedPool, RTL_OSVERSIONINFOW, STATUS_INSUFFICIENT_RESOURCES,
    STATUS_SUCCESS, UNICODE_STRING, UnloadRoutine,
};

/// Stores the unload routine in the driver object.
pub fn set_unload_routine(driver: &mut DRIVER_OBJECT, unload: UnloadRoutine) {
    driver.DriverUnload = Some(unload);
}
