//! Kernel interface for the portable build: the WDK names the driver uses,
//! declared by hand, with ntoskrnl.exe linked through raw-dylib imports.

pub mod debug_print;
mod intrinsics;
#[cfg(feature = "paged-at-dispatch")]
mod irql;
mod ntoskrnl;
mod panic;
mod types;

use core::ffi::CStr;

#[cfg(feature = "paged-at-dispatch")]
pub use irql::{DISPATCH_LEVEL, KeLowerIrql, KeRaiseIrql};
pub use ntoskrnl::{ExAllocatePoolWithTag, ExFreePoolWithTag, RtlCopyUnicodeString, RtlGetVersion};
pub use types::{
    DRIVER_OBJECT, NTSTATUS, PagedPool, RTL_OSVERSIONINFOW, STATUS_INSUFFICIENT_RESOURCES,
    STATUS_SUCCESS, UNICODE_STRING, UnloadRoutine,
};

/// Stores the unload routine in the driver object.
pub fn set_unload_routine(driver: &mut DRIVER_OBJECT, unload: UnloadRoutine) {
    driver.DriverUnload = Some(unload);
}

/// The kernel debugger, reached through `DbgPrint`.
pub struct KernelDebugger;

impl debug_print::Sink for KernelDebugger {
    fn print(&mut self, chunk: &CStr) {
        // SAFETY: the format is a literal "%s" and the argument is a
        // NUL-terminated string, so DbgPrint reads nothing else.
        unsafe { ntoskrnl::DbgPrint(c"%s".as_ptr().cast(), chunk.as_ptr()) };
    }
}

/// Prints a formatted line to the kernel debugger, like wdk's `println!`.
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::portable::debug_print::print_line(
            $crate::portable::KernelDebugger,
            format_args!($($arg)*),
        )
    };
}
pub(crate) use println;
