//! The driver itself, as in the walkthrough's `Sample.cpp`: `DriverEntry` keeps
//! a `PagedPool` copy of its registry path tagged `abcd`, and the unload
//! routine frees it. Each fault feature adds one bug the lessons find
//! (docs/lessons/): `leak-on-unload` skips the free (0xC4 / 0x62 under pool
//! tracking), `double-free` frees twice (0xC4 / 0x13), `paged-at-dispatch`
//! allocates the paged copy at `DISPATCH_LEVEL` (0xC4 / 0x01), `leak-on-error`
//! forgets the copy when a second allocation fails (0xC4 / 0x62).

use core::{mem, ptr};

use crate::{
    ntos::{
        DRIVER_OBJECT, ExAllocatePoolWithTag, ExFreePoolWithTag, NTSTATUS, PagedPool,
        RTL_OSVERSIONINFOW, RtlCopyUnicodeString, RtlGetVersion, STATUS_INSUFFICIENT_RESOURCES,
        STATUS_SUCCESS, UNICODE_STRING, println, set_unload_routine,
    },
    unicode::Utf16Text,
};

/// Pool tag `abcd`. Tags are stored little-endian, so the debugger shows
/// "abcd" and the value is 0x64636261 (`ed nt!PoolHitTag 'dcba'`).
pub const DRIVER_TAG: u32 = u32::from_le_bytes(*b"abcd");

/// The driver's copy of its registry path, under the C original's name, so
/// that `dt Sample!g_RegistryPath` shows it in the debugger.
///
/// A `static mut` rather than a `Sync` wrapper, so that its debug type is
/// `UNICODE_STRING` itself. Only DriverEntry and then the unload routine touch
/// it, and the I/O manager never runs the two at the same time.
// SAFETY: no other symbol in the image is named `g_RegistryPath`.
#[unsafe(export_name = "g_RegistryPath")]
#[allow(non_upper_case_globals)]
static mut g_RegistryPath: UNICODE_STRING = UNICODE_STRING {
    Length: 0,
    MaximumLength: 0,
    Buffer: ptr::null_mut(),
};

/// The driver's entry point, called once by the I/O manager at load.
///
/// # Safety
/// Called only by the kernel, with a valid driver object and registry path.
// SAFETY: the image's entry point, and no other symbol has this name.
#[unsafe(export_name = "DriverEntry")]
pub unsafe extern "system" fn driver_entry(
    driver: &mut DRIVER_OBJECT,
    registry_path: &UNICODE_STRING,
) -> NTSTATUS {
    // The `paged-at-dispatch` build holds DISPATCH_LEVEL around the
    // allocation, as code under a spin lock would.
    #[cfg(feature = "paged-at-dispatch")]
    // SAFETY: DriverEntry runs at PASSIVE_LEVEL, below DISPATCH_LEVEL.
    let old_irql = unsafe { crate::ntos::KeRaiseIrql(crate::ntos::DISPATCH_LEVEL) };
    // SAFETY: DriverEntry runs at PASSIVE_LEVEL, where paged pool may be
    // allocated (the `paged-at-dispatch` build breaks this on purpose).
    let buffer =
        unsafe { ExAllocatePoolWithTag(PagedPool, registry_path.Length.into(), DRIVER_TAG) };
    #[cfg(feature = "paged-at-dispatch")]
    // SAFETY: back to the level DriverEntry was called at.
    unsafe {
        crate::ntos::KeLowerIrql(old_irql);
    }
    if buffer.is_null() {
        println!("Failed to allocate memory");
        return STATUS_INSUFFICIENT_RESOURCES;
    }

    // The `leak-on-error` build also takes a scratch block, and its error
    // path forgets to free the copy.
    if cfg!(feature = "leak-on-error") {
        // SAFETY: PASSIVE_LEVEL, as for the copy.
        let scratch =
            unsafe { ExAllocatePoolWithTag(PagedPool, registry_path.Length.into(), DRIVER_TAG) };
        if scratch.is_null() {
            println!("Failed to allocate scratch memory");
            return STATUS_INSUFFICIENT_RESOURCES;
        }
        // SAFETY: `scratch` came from ExAllocatePoolWithTag just above.
        unsafe { ExFreePoolWithTag(scratch, DRIVER_TAG) };
    }

    let copy = &raw mut g_RegistryPath;
    // SAFETY: nothing else runs yet (see `g_RegistryPath`), so the write is exclusive.
    unsafe {
        *copy = UNICODE_STRING {
            Length: 0,
            MaximumLength: registry_path.Length,
            Buffer: buffer.cast(),
        };
    }
    // SAFETY: both strings are valid, and the destination holds `Length` bytes.
    unsafe { RtlCopyUnicodeString(copy, registry_path) };

    // The `overrun` build NUL-terminates the copy, one character past the
    // bytes it allocated (the classic UNICODE_STRING bug).
    if cfg!(feature = "overrun") {
        let end = usize::from(registry_path.Length / 2);
        // SAFETY: none, on purpose: the buffer holds `end` characters.
        unsafe { buffer.cast::<u16>().wrapping_add(end).write(0) };
    }

    println!("original registry path: {}", Utf16Text(registry_path));
    // SAFETY: the copy was filled above, and nothing writes it while it is read.
    println!("Copied registry path: {}", Utf16Text(unsafe { &*copy }));

    set_unload_routine(driver, sample_unload);

    // SAFETY: all-zero bytes are a valid RTL_OSVERSIONINFOW (integers only).
    let mut info: RTL_OSVERSIONINFOW = unsafe { mem::zeroed() };
    info.dwOSVersionInfoSize = size_of::<RTL_OSVERSIONINFOW>()
        .try_into()
        .unwrap_or(u32::MAX);
    // SAFETY: `info` is a writable RTL_OSVERSIONINFOW whose size field is set.
    let status = unsafe { RtlGetVersion(&raw mut info) };
    if status == STATUS_SUCCESS {
        println!(
            "Windows Version: {}.{}.{}",
            info.dwMajorVersion, info.dwMinorVersion, info.dwBuildNumber
        );
    } else {
        println!("RtlGetVersion failed: {status:#010x}");
    }

    println!("Sample driver initialized successfully");
    STATUS_SUCCESS
}

/// The unload routine, called by the I/O manager at unload. Named
/// `SampleUnload` as in the C original, so that the debugger's stacks show
/// `Sample!SampleUnload`.
///
/// # Safety
/// Called only by the kernel, after a successful DriverEntry.
// SAFETY: no other symbol in the image is named `SampleUnload`.
#[unsafe(export_name = "SampleUnload")]
unsafe extern "system" fn sample_unload(_driver: *mut DRIVER_OBJECT) {
    // The leaky build drops this block, as the walkthrough comments out the free.
    if cfg!(not(feature = "leak-on-unload")) {
        let copy = &raw const g_RegistryPath;
        // SAFETY: DriverEntry filled the copy and returned success (else no
        // unload routine would be set); nothing runs concurrently.
        let buffer = unsafe { (*copy).Buffer };
        // SAFETY: `buffer` came from ExAllocatePoolWithTag with this tag and
        // has not been freed; unload runs at PASSIVE_LEVEL.
        unsafe { ExFreePoolWithTag(buffer.cast(), DRIVER_TAG) };
        // The `double-free` build frees the copy a second time.
        if cfg!(feature = "double-free") {
            // SAFETY: none, on purpose: `buffer` was freed just above.
            unsafe { ExFreePoolWithTag(buffer.cast(), DRIVER_TAG) };
        }
        // The `read-after-free` build still reads the copy.
        if cfg!(feature = "read-after-free") {
            // SAFETY: none, on purpose: the copy's buffer was freed just above.
            println!("Freed registry path: {}", Utf16Text(unsafe { &*copy }));
        }
    }
    println!("Sample driver Unload called");
}
