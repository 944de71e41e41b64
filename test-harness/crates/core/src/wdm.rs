//! Kernel structure layouts, as `wdm.h` lays them out for each architecture.
//!
//! One table for every engine: the tracker finds DriverName with it, the
//! native engine builds its objects with it. The driver's own declarations
//! (driver/src/portable/types.rs) are checked against it in the tests.

use crate::arch::Arch;

/// Offsets in `DRIVER_OBJECT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverObject {
    /// `sizeof(DRIVER_OBJECT)`.
    pub size: u64,
    /// `DeviceObject`: the first device the driver created.
    pub device_object: u64,
    /// `Flags`.
    pub flags: u64,
    /// `DriverStart`: the image base.
    pub driver_start: u64,
    /// `DriverSize`: the image size.
    pub driver_size: u64,
    /// `DriverSection`: the loader's entry.
    pub driver_section: u64,
    /// `DriverExtension`.
    pub driver_extension: u64,
    /// `DriverName`, a `UNICODE_STRING` (`\Driver\Sample`).
    pub driver_name: u64,
    /// `HardwareDatabase`.
    pub hardware_database: u64,
    /// `DriverInit`: the entry point.
    pub driver_init: u64,
    /// `DriverUnload`.
    pub driver_unload: u64,
    /// `MajorFunction[IRP_MJ_MAXIMUM_FUNCTION + 1]`.
    pub major_function: u64,
}

impl DriverObject {
    /// The layout for `arch`.
    #[must_use]
    pub const fn for_arch(arch: Arch) -> Self {
        match arch {
            Arch::X64 => Self {
                size: 0x150,
                device_object: 0x08,
                flags: 0x10,
                driver_start: 0x18,
                driver_size: 0x20,
                driver_section: 0x28,
                driver_extension: 0x30,
                driver_name: 0x38,
                hardware_database: 0x48,
                driver_init: 0x58,
                driver_unload: 0x68,
                major_function: 0x70,
            },
            Arch::X86 => Self {
                size: 0xA8,
                device_object: 0x04,
                flags: 0x08,
                driver_start: 0x0C,
                driver_size: 0x10,
                driver_section: 0x14,
                driver_extension: 0x18,
                driver_name: 0x1C,
                hardware_database: 0x24,
                driver_init: 0x2C,
                driver_unload: 0x34,
                major_function: 0x38,
            },
        }
    }
}

/// `IRP_MJ_MAXIMUM_FUNCTION + 1`: entries in `MajorFunction`.
pub const MAJOR_FUNCTIONS: u64 = 28;

/// Offsets in `DEVICE_OBJECT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceObject {
    /// `sizeof(DEVICE_OBJECT)`.
    pub size: u64,
    /// `ReferenceCount`.
    pub reference_count: u64,
    /// `DriverObject`.
    pub driver_object: u64,
    /// `NextDevice`: the driver's next device.
    pub next_device: u64,
    /// `Flags`.
    pub flags: u64,
    /// `Characteristics`.
    pub characteristics: u64,
    /// `DeviceExtension`.
    pub device_extension: u64,
    /// `DeviceType`.
    pub device_type: u64,
    /// `StackSize` (a CCHAR).
    pub stack_size: u64,
}

impl DeviceObject {
    /// The layout for `arch`.
    #[must_use]
    pub const fn for_arch(arch: Arch) -> Self {
        match arch {
            Arch::X64 => Self {
                size: 0x150,
                reference_count: 0x04,
                driver_object: 0x08,
                next_device: 0x10,
                flags: 0x30,
                characteristics: 0x34,
                device_extension: 0x40,
                device_type: 0x48,
                stack_size: 0x4c,
            },
            Arch::X86 => Self {
                size: 0xB8,
                reference_count: 0x04,
                driver_object: 0x08,
                next_device: 0x0C,
                flags: 0x1C,
                characteristics: 0x20,
                device_extension: 0x28,
                device_type: 0x2C,
                stack_size: 0x30,
            },
        }
    }
}
