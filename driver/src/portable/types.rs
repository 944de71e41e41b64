//! The few WDK types the driver touches, laid out as in `wdm.h`.
#![allow(
    non_snake_case,
    non_camel_case_types,
    non_upper_case_globals,
    clippy::upper_case_acronyms
)]

use core::ffi::c_void;

/// `NTSTATUS`: negative values are errors.
pub type NTSTATUS = i32;
/// `STATUS_SUCCESS`.
pub const STATUS_SUCCESS: NTSTATUS = 0;
/// `STATUS_INSUFFICIENT_RESOURCES` (0xC000009A).
#[allow(clippy::cast_possible_wrap)]
pub const STATUS_INSUFFICIENT_RESOURCES: NTSTATUS = 0xC000_009A_u32 as NTSTATUS;

/// `POOL_TYPE`.
pub type POOL_TYPE = i32;
/// `PagedPool`.
pub const PagedPool: POOL_TYPE = 1;

/// `UNICODE_STRING`: a counted UTF-16 string; lengths are in bytes.
#[repr(C)]
pub struct UNICODE_STRING {
    /// Bytes in use, without any terminator.
    pub Length: u16,
    /// Bytes the buffer holds.
    pub MaximumLength: u16,
    /// The characters.
    pub Buffer: *mut u16,
}

/// `DRIVER_UNLOAD` (stdcall on x86).
pub type UnloadRoutine = unsafe extern "system" fn(driver: *mut DRIVER_OBJECT);

/// `DRIVER_OBJECT`, complete so that its size and offsets match the kernel's.
#[repr(C)]
pub struct DRIVER_OBJECT {
    pub Type: i16,
    pub Size: i16,
    pub DeviceObject: *mut c_void,
    pub Flags: u32,
    pub DriverStart: *mut c_void,
    pub DriverSize: u32,
    pub DriverSection: *mut c_void,
    pub DriverExtension: *mut c_void,
    pub DriverName: UNICODE_STRING,
    pub HardwareDatabase: *mut UNICODE_STRING,
    pub FastIoDispatch: *mut c_void,
    pub DriverInit: *mut c_void,
    pub DriverStartIo: *mut c_void,
    /// Set by DriverEntry; without it the driver cannot be unloaded.
    pub DriverUnload: Option<UnloadRoutine>,
    pub MajorFunction: [*mut c_void; 28],
}

/// `RTL_OSVERSIONINFOW`.
#[repr(C)]
pub struct RTL_OSVERSIONINFOW {
    pub dwOSVersionInfoSize: u32,
    pub dwMajorVersion: u32,
    pub dwMinorVersion: u32,
    pub dwBuildNumber: u32,
    pub dwPlatformId: u32,
    pub szCSDVersion: [u16; 128],
}

// Layouts measured against the Windows headers; a mismatch would corrupt the
// kernel's driver object, so the build fails instead.
#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(core::mem::offset_of!(DRIVER_OBJECT, DriverUnload) == 0x68);
    assert!(size_of::<DRIVER_OBJECT>() == 0x150);
    assert!(size_of::<UNICODE_STRING>() == 16);
};
#[cfg(target_pointer_width = "32")]
const _: () = {
    assert!(core::mem::offset_of!(DRIVER_OBJECT, DriverUnload) == 0x34);
    assert!(size_of::<DRIVER_OBJECT>() == 0xa8);
    assert!(size_of::<UNICODE_STRING>() == 8);
};
const _: () = assert!(size_of::<RTL_OSVERSIONINFOW>() == 276);
