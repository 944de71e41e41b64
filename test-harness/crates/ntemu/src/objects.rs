//! Kernel objects the I/O manager makes for a driver, laid out as `wdm.h`
//! lays them out, in the emulated pool with the tags Windows uses.

use std::sync::Arc;

use super::cpu::{self, CountedString, Reg, Uc};
use super::machine::{Halt, emit};
use super::traps::allocate_pool;
use harness_core::events::{Event, Phase};
use harness_core::wdm;

/// Pool type of kernel objects (nonpaged).
const NON_PAGED: u32 = 0;
/// Pool type of the registry path's text (paged).
const PAGED: u32 = 1;

/// A kernel-owned `UNICODE_STRING` with its text in pool: returns the
/// string's address.
///
/// # Errors
/// Memory could not be written.
pub fn new_unicode_string(
    uc: &mut Uc<'_>,
    text: &str,
    tag: [u8; 4],
    pool_type: u32,
) -> Result<u64, Halt> {
    let units: Vec<u8> = text
        .encode_utf16()
        .chain([0])
        .flat_map(u16::to_le_bytes)
        .collect();
    let length = u16::try_from(units.len() - 2).unwrap_or(u16::MAX);
    let ptr = cpu::arch(uc).pointer_size();
    let header = allocate_pool(uc, NON_PAGED, 2 * ptr, u32::from_le_bytes(tag))?;
    let buffer = allocate_pool(uc, pool_type, units.len() as u64, u32::from_le_bytes(tag))?;
    if header == 0 || buffer == 0 {
        return Err(Halt::BadPointer(0));
    }
    cpu::write(uc, buffer, &units)?;
    cpu::write_counted(
        uc,
        header,
        CountedString {
            length,
            maximum: length + 2,
            buffer,
        },
    )?;
    Ok(header)
}

/// `IopLoadDriver`, before DriverEntry: the driver object (`\Driver\<service>`,
/// tag `Driv`), its extension, and the registry path
/// (`\REGISTRY\MACHINE\SYSTEM\ControlSet001\services\<service>`).
/// Leaves DriverEntry in `ax`, the driver object in `cx`, the registry
/// path in `dx`.
///
/// # Errors
/// Memory could not be written.
pub fn start_driver(uc: &mut Uc<'_>) -> Result<(), Halt> {
    let arch = cpu::arch(uc);
    let layout = wdm::DriverObject::for_arch(arch);
    let ptr = arch.pointer_size();
    let (base, size) = uc.get_data().image;
    let entry = base + u64::from(uc.get_data().entry_rva);
    let service = uc.get_data().service.clone();
    let registry_text = uc.get_data().profile.registry_path(&service);
    let name = format!("\\Driver\\{service}");
    // The object's name information and header, DRIVER_OBJECT and
    // DRIVER_EXTENSION are one allocation, as ObCreateObject makes it.
    let extension_size = 6 * ptr;
    let prefix = super::ob::driver_object_prefix(arch);
    let block = allocate_pool(
        uc,
        NON_PAGED,
        prefix + layout.size + extension_size,
        u32::from_le_bytes(*b"Driv"),
    )?;
    if block == 0 {
        return Err(Halt::BadPointer(0));
    }
    cpu::write(
        uc,
        block,
        &vec![0; usize::try_from(prefix + layout.size + extension_size).unwrap_or(0)],
    )?;
    let object = block + prefix;
    let extension = object + layout.size;
    cpu::write_uint(uc, object, 4, 2)?; // IO_TYPE_DRIVER
    cpu::write_uint(uc, object + 2, layout.size, 2)?;
    cpu::write_ptr(uc, object + layout.driver_start, base)?;
    cpu::write_uint(uc, object + layout.driver_size, size, 4)?;
    cpu::write_ptr(uc, object + layout.driver_extension, extension)?;
    cpu::write_ptr(uc, object + layout.driver_init, entry)?;
    cpu::write_ptr(uc, extension, object)?; // DRIVER_EXTENSION.DriverObject
    let name_string = new_unicode_string(uc, &name, *b"ObNm", NON_PAGED)?;
    let name_header = cpu::read_counted(uc, name_string)?;
    cpu::write_counted(uc, object + layout.driver_name, name_header)?;
    let nt = Arc::clone(&uc.get_data().nt);
    let invalid = nt.symbol("IopInvalidDeviceRequest").unwrap_or(0);
    for index in 0..wdm::MAJOR_FUNCTIONS {
        cpu::write_ptr(uc, object + layout.major_function + index * ptr, invalid)?;
    }
    let registry_path = new_unicode_string(uc, &registry_text, *b"IoRP", PAGED)?;
    super::ob::insert_driver(uc, object, &service)?;
    let kernel = uc.get_data_mut();
    kernel.loaded.driver_object = object;
    kernel.loaded.registry_path = registry_path;
    kernel.loaded.mapped = true;
    kernel.phase = Phase::Entry;
    emit(
        uc,
        Event::DriverObject {
            address: object,
            name: service,
        },
    )?;
    cpu::set_reg(uc, Reg::Ax, entry);
    cpu::set_reg(uc, Reg::Cx, object);
    cpu::set_reg(uc, Reg::Dx, registry_path);
    Ok(())
}

/// The unloaded driver's object goes, as on Windows (WRK, base/ntos/io/
/// iomgr/internal.c `IopUnloadDriver`: `ObMakeTemporaryObject` takes its
/// name out of `\Driver` (here: its directory entry), then the last `ObDereferenceObject` runs the
/// delete procedure `IopDeleteDriver`, which frees `DriverName`'s buffer,
/// and ob's `ObpRemoveObjectRoutine` frees the object's memory): the name
/// and the object (with its extension, one allocation) go back to the
/// pool, and the kernel no longer has a driver object.
///
/// # Errors
/// A pool header could not be written.
pub fn delete_driver(uc: &mut Uc<'_>) -> Result<(), Halt> {
    let object = uc.get_data().loaded.driver_object;
    if object == 0 {
        return Ok(());
    }
    let arch = cpu::arch(uc);
    let layout = wdm::DriverObject::for_arch(arch);
    super::ob::remove_driver(uc, object)?;
    let name = cpu::read_counted(uc, object + layout.driver_name)?;
    if name.buffer != 0 {
        super::traps::free_pool(uc, name.buffer)?;
    }
    super::traps::free_pool(uc, object - super::ob::driver_object_prefix(arch))?;
    uc.get_data_mut().loaded.driver_object = 0;
    Ok(())
}
