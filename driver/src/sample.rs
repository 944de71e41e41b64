//! The driver itself, as in the walkthrough's `Sample.cpp`: `DriverEntry` keeps
//! a `PagedPool` copy of its registry path tagged `abcd`, and the unload
//! routine frees it. With the `leak-on-unload` feature the unload routine skips
//! the free, and Driver Verifier's pool tracking bug-checks (0xC4 / 0x62).

use core::{cell::UnsafeCell, mem, ptr};

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

/// The driver's copy of its registry path (`g_RegistryPath` in the C original).
struct RegistryPathCopy(UnsafeCell<UNICODE_STRING>);

// SAFETY: the I/O manager never runs DriverEntry and the unload routine at the
// same time, and nothing else touches the copy.
unsafe impl Sync for RegistryPathCopy {}

static REGISTRY_PATH: RegistryPathCopy = RegistryPathCopy(UnsafeCell::new(UNICODE_STRING {
    Length: 0,
    MaximumLength: 0,
    Buffer: ptr::null_mut(),
}));

/// The driver's entry point, called once by the I/O manager at load.
///
/// # Safety
/// Called only by the kernel, with a valid driver object and registry path.
#[unsafe(export_name = "DriverEntry")]
pub unsafe extern "system" fn driver_entry(
    driver: &mut DRIVER_OBJECT,
    registry_path: &UNICODE_STRING,
) -> NTSTATUS {
    // SAFETY: DriverEntry runs at PASSIVE_LEVEL, where paged pool may be allocated.
    let buffer =
        unsafe { ExAllocatePoolWithTag(PagedPool, registry_path.Length.into(), DRIVER_TAG) };
    if buffer.is_null() {
        println!("Failed to allocate memory");
        return STATUS_INSUFFICIENT_RESOURCES;
    }

    let copy = REGISTRY_PATH.0.get();
    // SAFETY: nothing else runs yet (see `RegistryPathCopy`), and `copy` points
    // to a static, so the write is exclusive and in bounds.
    unsafe {
        *copy = UNICODE_STRING {
            Length: 0,
            MaximumLength: registry_path.Length,
            Buffer: buffer.cast(),
        };
    }
    // SAFETY: both strings are valid, and the destination holds `Length` bytes.
    unsafe { RtlCopyUnicodeString(copy, registry_path) };

    println!("original registry path: {}", Utf16Text(registry_path));
    // SAFETY: `copy` was initialised above and is only read here.
    println!("Copied registry path: {}", Utf16Text(unsafe { &*copy }));

    set_unload_routine(driver, sample_unload);

    // SAFETY: all-zero bytes are a valid RTL_OSVERSIONINFOW (integers only).
    let mut info: RTL_OSVERSIONINFOW = unsafe { mem::zeroed() };
    info.dwOSVersionInfoSize = size_of::<RTL_OSVERSIONINFOW>()
        .try_into()
        .unwrap_or(u32::MAX);
    // SAFETY: `info` is a writable RTL_OSVERSIONINFOW whose size field is set.
    unsafe { RtlGetVersion(&raw mut info) };
    println!(
        "Windows Version: {}.{}.{}",
        info.dwMajorVersion, info.dwMinorVersion, info.dwBuildNumber
    );

    println!("Sample driver initialized successfully");
    STATUS_SUCCESS
}

/// The unload routine (`SampleUnload`), called by the I/O manager at unload.
///
/// # Safety
/// Called only by the kernel, after a successful DriverEntry.
unsafe extern "system" fn sample_unload(_driver: *mut DRIVER_OBJECT) {
    // The leaky build drops this block, as the walkthrough comments out the free.
    if cfg!(not(feature = "leak-on-unload")) {
        // SAFETY: DriverEntry filled the copy and returned success (else no
        // unload routine would be set); nothing runs concurrently.
        let buffer = unsafe { (*REGISTRY_PATH.0.get()).Buffer };
        // SAFETY: `buffer` came from ExAllocatePoolWithTag with this tag and
        // has not been freed; unload runs at PASSIVE_LEVEL.
        unsafe { ExFreePoolWithTag(buffer.cast(), DRIVER_TAG) };
    }
    println!("Sample driver Unload called");
}
