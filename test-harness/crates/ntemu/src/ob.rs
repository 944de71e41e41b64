//! The object manager's namespace, as far as a driver's load shows it.
//!
//! The root directory `\`, the directory `\Driver`, and the driver object
//! in it with its `OBJECT_HEADER` and name (harness-core's
//! `wdm::ObjectLayout`, with its sources).
//!
//! The object types carry their names and sit in `nt!ObTypeIndexTable`
//! (the emulated kernel's own numbering: 2 onwards, in `nt::OBJECT_TYPES`'
//! order, then `Directory`). The directories, their entries and the
//! names in them live in a page of their own outside the pools: Windows
//! allocates directory entries (`ObDi`) and names (`ObNm`) from paged
//! pool, which would move the walkthrough's pool addresses.

use super::cpu::{self, CountedString, Uc};
use super::memory::PAGE;
use super::nt;
use harness_core::arch::Arch;
use harness_core::wdm::{NAME_INFO_MASK, NUMBER_HASH_BUCKETS, ObjectLayout};

/// `ObTypeIndexTable` index of the first of `nt::OBJECT_TYPES` (the
/// emulated kernel's numbering; `!object` shows type names, not indexes).
pub const FIRST_TYPE_INDEX: u64 = 2;

/// `Directory`'s index, after `nt::OBJECT_TYPES`.
const DIRECTORY_TYPE_INDEX: u64 = FIRST_TYPE_INDEX + nt::OBJECT_TYPES.len() as u64;

/// Bytes of the namespace page's parts.
const DIRECTORY_SLOT: u64 = 0x400;
/// Where the `Directory` type object sits in the page.
const DIRECTORY_TYPE: u64 = 0x800;
/// Where the two directory entries sit (root's `Driver`, `\Driver`'s driver).
const ENTRIES: u64 = 0xa00;
/// Bytes of one entry's slot: the entry, then its name's text.
const ENTRY_SLOT: u64 = 0x300;
/// Longest name an entry holds, in UTF-16 units.
const MAX_NAME: usize = 0x100;

/// The namespace page.
#[must_use]
pub const fn page(arch: Arch) -> u64 {
    super::system::region(arch).0 + 3 * PAGE
}

/// The root directory's and `\Driver`'s object (body) addresses.
#[must_use]
pub const fn directories(arch: Arch) -> [u64; 2] {
    let layout = ObjectLayout::for_arch(arch);
    let prefix = layout.name_info_size + layout.body;
    let page = page(arch);
    [page + prefix, page + DIRECTORY_SLOT + prefix]
}

/// Writes a `UNICODE_STRING` at `at` whose text goes to `text_at`.
fn write_name(uc: &mut Uc<'_>, at: u64, text_at: u64, text: &str) -> Result<(), cpu::BadAddress> {
    let units: Vec<u8> = text
        .encode_utf16()
        .take(MAX_NAME)
        .flat_map(u16::to_le_bytes)
        .collect();
    cpu::write(uc, text_at, &units)?;
    let length = u16::try_from(units.len()).unwrap_or(u16::MAX);
    cpu::write_counted(
        uc,
        at,
        CountedString {
            length,
            maximum: length,
            buffer: text_at,
        },
    )
}

/// Writes an object's header and name information before `body`.
///
/// # Errors
/// The memory is not mapped.
pub fn write_header(
    uc: &mut Uc<'_>,
    body: u64,
    type_index: u64,
    directory: u64,
    name: (u64, &str),
) -> Result<(), cpu::BadAddress> {
    let layout = ObjectLayout::for_arch(cpu::arch(uc));
    let header = body - layout.body;
    // One reference, the namespace's: the kernel does not count others.
    cpu::write_ptr(uc, header, 1)?;
    cpu::write_ptr(uc, header + layout.handle_count, 0)?;
    cpu::write_uint(uc, header + layout.type_index, type_index, 1)?;
    cpu::write_uint(uc, header + layout.info_mask, NAME_INFO_MASK, 1)?;
    let info = header - layout.name_info_size;
    cpu::write_ptr(uc, info, directory)?;
    write_name(uc, info + layout.name_info_name, name.0, name.1)
}

/// The hash `ObpLookupDirectoryEntry` files a name under.
///
/// WRK, base/ntos/ob/obdir.c: on x64 four characters at a time while four are
/// left (an all-ASCII chunk upper-cased by clearing bit 5 of each), then
/// character by character, upper-casing `a`-`z` (and, on Windows, other
/// letters through `RtlUpcaseUnicodeChar`, which the emulated kernel
/// leaves as they are). Returns (`HashValue`, bucket).
#[must_use]
pub fn hash(arch: Arch, name: &str) -> (u32, u64) {
    let units: Vec<u16> = name.encode_utf16().collect();
    let mut rest = units.as_slice();
    let mut index: u32 = if arch == Arch::X64 && rest.len() >= 4 {
        let mut chunk_hash: u64 = 0;
        while rest.len() >= 4 {
            let mut chunk = rest[..4]
                .iter()
                .rev()
                .fold(0_u64, |chunk, unit| (chunk << 16) | u64::from(*unit));
            if chunk & 0xFF80_FF80_FF80_FF80 == 0 {
                chunk &= !0x0020_0020_0020_0020;
            } else {
                chunk = rest[..4]
                    .iter()
                    .rev()
                    .fold(0, |chunk, unit| (chunk << 16) | u64::from(upcase(*unit)));
            }
            chunk_hash = chunk_hash
                .wrapping_add((chunk_hash << 1).wrapping_add(chunk_hash >> 1))
                .wrapping_add(chunk);
            rest = &rest[4..];
        }
        u32::try_from((chunk_hash.wrapping_add(chunk_hash >> 32)) & 0xffff_ffff).unwrap_or(0)
    } else {
        0
    };
    for unit in rest {
        index = index
            .wrapping_add((index << 1).wrapping_add(index >> 1))
            .wrapping_add(u32::from(upcase(*unit)));
    }
    (index, u64::from(index) % NUMBER_HASH_BUCKETS)
}

/// `a`-`z` upper-cased; anything else as it is.
const fn upcase(unit: u16) -> u16 {
    if unit >= b'a' as u16 && unit <= b'z' as u16 {
        unit - 0x20
    } else {
        unit
    }
}

/// Files `object` (named `name`) in `directory` through the entry in slot
/// `slot`, at the head of its bucket (`ObpInsertDirectoryEntry`).
fn insert(
    uc: &mut Uc<'_>,
    directory: u64,
    slot: u64,
    object: u64,
    name: &str,
) -> Result<(), cpu::BadAddress> {
    let arch = cpu::arch(uc);
    let ptr = arch.pointer_size();
    let entry = page(arch) + ENTRIES + slot * ENTRY_SLOT;
    let (value, bucket) = hash(arch, name);
    let head = directory + bucket * ptr;
    let next = cpu::read_ptr(uc, head)?;
    cpu::write_ptr(uc, entry, next)?;
    cpu::write_ptr(uc, entry + ptr, object)?;
    cpu::write_uint(uc, entry + 2 * ptr, u64::from(value), 4)?;
    cpu::write_ptr(uc, head, entry)
}

/// The namespace at boot: type names and `nt!ObTypeIndexTable`, the root
/// directory (`nt!ObpRootDirectoryObject`) holding `Driver`.
///
/// # Errors
/// The memory is not mapped.
pub fn create(uc: &mut Uc<'_>, data: &nt::Data) -> Result<(), cpu::BadAddress> {
    let arch = cpu::arch(uc);
    let layout = ObjectLayout::for_arch(arch);
    let ptr = arch.pointer_size();
    let page = page(arch);
    for (index, (_, name)) in nt::OBJECT_TYPES.iter().enumerate() {
        let index = index as u64;
        let object = cpu::read_ptr(uc, data.object_types + index * ptr)?;
        write_name(uc, object + layout.type_name, object + 0x20, name)?;
        cpu::write_ptr(
            uc,
            data.type_index_table + (FIRST_TYPE_INDEX + index) * ptr,
            object,
        )?;
    }
    let directory_type = page + DIRECTORY_TYPE;
    write_name(
        uc,
        directory_type + layout.type_name,
        directory_type + 0x20,
        "Directory",
    )?;
    cpu::write_ptr(
        uc,
        data.type_index_table + DIRECTORY_TYPE_INDEX * ptr,
        directory_type,
    )?;
    let [root, driver] = directories(arch);
    let text = |body: u64| body + NUMBER_HASH_BUCKETS * ptr;
    write_header(uc, root, DIRECTORY_TYPE_INDEX, 0, (text(root), "\\"))?;
    write_header(
        uc,
        driver,
        DIRECTORY_TYPE_INDEX,
        root,
        (text(driver), "Driver"),
    )?;
    insert(uc, root, 0, driver, "Driver")?;
    cpu::write_ptr(uc, data.root_directory, root)
}

/// Bytes before a driver object in its pool block: name information and
/// header, as `ObCreateObject` lays them out.
#[must_use]
pub const fn driver_object_prefix(arch: Arch) -> u64 {
    let layout = ObjectLayout::for_arch(arch);
    layout.name_info_size + layout.body
}

/// `ObInsertObject` of a driver object: its header and name, and its entry
/// in `\Driver`.
///
/// # Errors
/// The memory is not mapped.
pub fn insert_driver(uc: &mut Uc<'_>, object: u64, service: &str) -> Result<(), cpu::BadAddress> {
    let arch = cpu::arch(uc);
    let [_, driver] = directories(arch);
    let slot = page(arch) + ENTRIES + ENTRY_SLOT;
    let type_index = FIRST_TYPE_INDEX
        + nt::OBJECT_TYPES
            .iter()
            .position(|(symbol, _)| *symbol == "IoDriverObjectType")
            .unwrap_or(0) as u64;
    write_header(uc, object, type_index, driver, (slot + 0x20, service))?;
    insert(uc, driver, 1, object, service)
}

/// `ObMakeTemporaryObject` at unload: the driver object's entry leaves
/// `\Driver`.
///
/// # Errors
/// The memory is not mapped.
pub fn remove_driver(uc: &mut Uc<'_>, object: u64) -> Result<(), cpu::BadAddress> {
    let arch = cpu::arch(uc);
    let ptr = arch.pointer_size();
    let [_, driver] = directories(arch);
    for bucket in 0..NUMBER_HASH_BUCKETS {
        let mut link = driver + bucket * ptr;
        for _ in 0..16 {
            let entry = cpu::read_ptr(uc, link)?;
            if entry == 0 {
                break;
            }
            if cpu::read_ptr(uc, entry + ptr)? == object {
                let next = cpu::read_ptr(uc, entry)?;
                return cpu::write_ptr(uc, link, next);
            }
            link = entry;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// debugger/-object.md's `\FileSystem\Filters` listing (a Windows 10
    /// x64 kd session) files `FltMgrMsg` under bucket 19 and `FltMgr`
    /// under 21: the x64 chunked hash, with the bucket in decimal.
    #[test]
    fn the_documented_filters_directory_buckets() {
        assert_eq!(hash(Arch::X64, "FltMgrMsg").1, 19);
        assert_eq!(hash(Arch::X64, "FltMgr").1, 21);
    }

    /// x86 hashes character by character (WRK obdir.c): "SAMPLE" worked by
    /// hand, h = h + 2h + h/2 + c: 83, 355, 1319, 4696, 16512, 57861; 57861
    /// mod 37 = 30.
    #[test]
    fn x86_hashes_character_by_character() {
        assert_eq!(hash(Arch::X86, "Sample"), (57861, 30));
    }
}
