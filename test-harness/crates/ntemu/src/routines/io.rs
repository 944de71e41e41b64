//! Device objects and symbolic links, as a control-device driver makes
//! them: `IoCreateDevice` allocates the `DEVICE_OBJECT` and its extension
//! in nonpaged pool (tag `Devi`) and links it into the driver object.

use super::Call;
use crate::cpu;
use crate::machine::Halt;
use crate::traps::{allocate_pool, free_pool};
use harness_core::nt::status;
use harness_core::wdm;

/// `DO_DEVICE_INITIALIZING`.
const DO_DEVICE_INITIALIZING: u64 = 0x80;

fn optional_name(call: &Call<'_, '_>, index: usize) -> Result<Option<String>, Halt> {
    let pointer = call.arg(index)?;
    Ok(if pointer == 0 {
        None
    } else {
        Some(cpu::read_unicode_string(call.uc, pointer)?)
    })
}

/// `IoCreateDevice(DriverObject, DeviceExtensionSize, DeviceName,
/// DeviceType, DeviceCharacteristics, Exclusive, DeviceObject)`.
pub fn io_create_device(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let arch = call.arch();
    let layout = wdm::DeviceObject::for_arch(arch);
    let driver_layout = wdm::DriverObject::for_arch(arch);
    let driver = call.arg(0)?;
    let extension_size = u64::from(call.arg32(1)?);
    let name = optional_name(call, 2)?;
    let device_type = call.arg32(3)?;
    let characteristics = call.arg32(4)?;
    let out = call.arg(6)?;
    if let Some(name) = &name
        && call
            .kernel()
            .device_names
            .iter()
            .any(|(_, taken)| taken.eq_ignore_ascii_case(name))
    {
        return Ok(u64::from(status::OBJECT_NAME_COLLISION));
    }
    let size = layout.size + extension_size;
    let device = allocate_pool(call.uc, 0, size, u32::from_le_bytes(*b"Devi"))?;
    if device == 0 {
        return Ok(u64::from(status::INSUFFICIENT_RESOURCES));
    }
    cpu::write(
        call.uc,
        device,
        &vec![0; usize::try_from(size).unwrap_or(0)],
    )?;
    cpu::write_uint(call.uc, device, 3, 2)?; // IO_TYPE_DEVICE
    cpu::write_uint(call.uc, device + 2, layout.size, 2)?;
    cpu::write_uint(call.uc, device + layout.reference_count, 0, 4)?;
    cpu::write_ptr(call.uc, device + layout.driver_object, driver)?;
    let first = cpu::read_ptr(call.uc, driver + driver_layout.device_object)?;
    cpu::write_ptr(call.uc, device + layout.next_device, first)?;
    cpu::write_ptr(call.uc, driver + driver_layout.device_object, device)?;
    cpu::write_uint(call.uc, device + layout.flags, DO_DEVICE_INITIALIZING, 4)?;
    cpu::write_uint(
        call.uc,
        device + layout.characteristics,
        u64::from(characteristics),
        4,
    )?;
    if extension_size > 0 {
        cpu::write_ptr(
            call.uc,
            device + layout.device_extension,
            device + layout.size,
        )?;
    }
    cpu::write_uint(
        call.uc,
        device + layout.device_type,
        u64::from(device_type),
        4,
    )?;
    cpu::write_uint(call.uc, device + layout.stack_size, 1, 1)?;
    cpu::write_ptr(call.uc, out, device)?;
    let kernel = call.kernel();
    kernel.devices.push(device);
    if let Some(name) = name {
        kernel.device_names.push((device, name));
    }
    Ok(u64::from(status::SUCCESS))
}

/// `IoDeleteDevice(DeviceObject)`: unlinks and frees it.
pub fn io_delete_device(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let arch = call.arch();
    let layout = wdm::DeviceObject::for_arch(arch);
    let driver_layout = wdm::DriverObject::for_arch(arch);
    let device = call.arg(0)?;
    let driver = cpu::read_ptr(call.uc, device + layout.driver_object)?;
    let next = cpu::read_ptr(call.uc, device + layout.next_device)?;
    // Unlink from the driver's list.
    let mut link = driver + driver_layout.device_object;
    loop {
        let current = cpu::read_ptr(call.uc, link)?;
        if current == 0 {
            break;
        }
        if current == device {
            cpu::write_ptr(call.uc, link, next)?;
            break;
        }
        link = current + layout.next_device;
    }
    free_pool(call.uc, device)?;
    let kernel = call.kernel();
    kernel.devices.retain(|&other| other != device);
    kernel.device_names.retain(|(other, _)| *other != device);
    Ok(0)
}

/// `IoCreateSymbolicLink(SymbolicLinkName, DeviceName)`.
pub fn io_create_symbolic_link(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let Some(link) = optional_name(call, 0)? else {
        return Ok(u64::from(status::INVALID_PARAMETER));
    };
    let target = optional_name(call, 1)?.unwrap_or_default();
    let kernel = call.kernel();
    if kernel
        .symbolic_links
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case(&link))
    {
        return Ok(u64::from(status::OBJECT_NAME_COLLISION));
    }
    kernel.symbolic_links.push((link, target));
    Ok(u64::from(status::SUCCESS))
}

/// `IoDeleteSymbolicLink(SymbolicLinkName)`.
pub fn io_delete_symbolic_link(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let Some(link) = optional_name(call, 0)? else {
        return Ok(u64::from(status::INVALID_PARAMETER));
    };
    let kernel = call.kernel();
    let before = kernel.symbolic_links.len();
    kernel
        .symbolic_links
        .retain(|(name, _)| !name.eq_ignore_ascii_case(&link));
    Ok(u64::from(if kernel.symbolic_links.len() < before {
        status::SUCCESS
    } else {
        status::OBJECT_NAME_NOT_FOUND
    }))
}

/// `IofCompleteRequest(Irp, PriorityBoost)`: no I/O reaches the driver
/// here (the I/O manager only loads and unloads it), so nothing waits.
pub const fn iof_complete_request(_call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    Ok(0)
}
