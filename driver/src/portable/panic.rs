//! Panics bug-check the machine, as wdk-panic does in the official build.

use core::panic::PanicInfo;

use super::ntoskrnl::KeBugCheckEx;

/// Bug check code "RPNC" (Rust panic), the one wdk-panic uses.
const RUST_PANIC: u32 = u32::from_be_bytes(*b"RPNC");

/// Bug-checks with wdk-panic's arguments: the file name's address and
/// length, the line and the column (all 0 without a location).
#[cold]
#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    let (file, file_len, line, column) = info.location().map_or((0, 0, 0, 0), |at| {
        (
            at.file().as_ptr() as usize,
            at.file().len(),
            at.line() as usize,
            at.column() as usize,
        )
    });
    // SAFETY: KeBugCheckEx accepts any arguments at any IRQL and never returns.
    unsafe { KeBugCheckEx(RUST_PANIC, file, file_len, line, column) }
}
