//! The kernel loader's part: the driver image laid out at a kernel address,
//! its base relocations applied, its imports bound to the emulated kernel,
//! its security cookie set.
//!
//! All on a byte copy of the image; the machine then writes it into
//! emulated memory.

use std::collections::BTreeSet;

use harness_core::arch::Arch;

/// Image directory indexes.
const DIRECTORY_IMPORT: usize = 1;
const DIRECTORY_BASERELOC: usize = 5;
const DIRECTORY_LOAD_CONFIG: usize = 10;

/// The most an image may take in memory here.
pub(crate) const MAX_IMAGE: u64 = 64 << 20;

/// Why an image could not be laid out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// A header or table lies outside the file or the image.
    #[error("malformed image: {0}")]
    Malformed(&'static str),
    /// `SizeOfImage` is beyond what the engine maps.
    #[error("SizeOfImage 0x{0:x} is larger than the native engine maps (64 MiB)")]
    TooLarge(u64),
    /// A relocation type the engine does not apply.
    #[error("unsupported base relocation type {0}")]
    Relocation(u16),
}

/// One import, as the image names it, and where its IAT slot is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSlot {
    /// The DLL, as written in the image.
    pub library: String,
    /// The function name, or `#ordinal`.
    pub name: String,
    /// RVA of the IAT slot.
    pub slot: u32,
}

/// The image laid out in memory (bytes), before imports are bound.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The bytes, `SizeOfImage` long.
    pub bytes: Vec<u8>,
    /// The imports with their IAT slots.
    pub imports: Vec<ImportSlot>,
    /// Entry point RVA.
    pub entry: u32,
    /// RVA of the security cookie, if the load config names one.
    pub cookie: Option<u32>,
    /// Section ranges (RVA, size, executable).
    pub sections: Vec<(u32, u32, bool)>,
    /// RVA and size of the exception directory (x64 `.pdata`).
    pub exception_directory: (u32, u32),
}

fn u16_at(data: &[u8], at: usize) -> Result<u16, LoadError> {
    data.get(at..at + 2)
        .map(|bytes| u16::from_le_bytes([bytes[0], bytes[1]]))
        .ok_or(LoadError::Malformed("header beyond the file"))
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, LoadError> {
    data.get(at..at + 4)
        .map(|bytes| u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
        .ok_or(LoadError::Malformed("header beyond the file"))
}

fn u64_at(data: &[u8], at: usize) -> Result<u64, LoadError> {
    data.get(at..at + 8)
        .map(|bytes| u64::from_le_bytes(bytes.try_into().unwrap_or([0; 8])))
        .ok_or(LoadError::Malformed("header beyond the file"))
}

fn index(value: u32) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

/// Lays out `file` for `arch` at `base` and applies its relocations.
///
/// # Errors
/// A malformed or oversized image.
pub(crate) fn lay_out(file: &[u8], arch: Arch, base: u64) -> Result<Layout, LoadError> {
    let pe = index(u32_at(file, 0x3c)?);
    if file.get(pe..pe + 4) != Some(b"PE\0\0") {
        return Err(LoadError::Malformed("no PE signature"));
    }
    let sections_count = usize::from(u16_at(file, pe + 6)?);
    let optional_size = usize::from(u16_at(file, pe + 20)?);
    let optional = pe + 24;
    let (image_base, directories) = match arch {
        Arch::X86 => (u64::from(u32_at(file, optional + 28)?), optional + 96),
        Arch::X64 => (u64_at(file, optional + 24)?, optional + 112),
    };
    let entry = u32_at(file, optional + 16)?;
    let size_of_image = u64::from(u32_at(file, optional + 56)?);
    let size_of_headers = index(u32_at(file, optional + 60)?);
    if size_of_image > MAX_IMAGE {
        return Err(LoadError::TooLarge(size_of_image));
    }
    let directory = |entry: usize| -> Result<(u32, u32), LoadError> {
        let at = directories + 8 * entry;
        if at + 8 > optional + optional_size {
            return Ok((0, 0));
        }
        Ok((u32_at(file, at)?, u32_at(file, at + 4)?))
    };
    let mut bytes = vec![0_u8; usize::try_from(size_of_image).unwrap_or(0)];
    let headers = size_of_headers.min(file.len()).min(bytes.len());
    bytes[..headers].copy_from_slice(&file[..headers]);
    let mut sections = Vec::new();
    let table = optional + optional_size;
    for number in 0..sections_count {
        let at = table + 40 * number;
        let virtual_size = u32_at(file, at + 8)?;
        let rva = u32_at(file, at + 12)?;
        let raw_size = u32_at(file, at + 16)?;
        let raw_at = u32_at(file, at + 20)?;
        let characteristics = u32_at(file, at + 36)?;
        let in_memory = if virtual_size == 0 {
            raw_size
        } else {
            virtual_size
        };
        let copy = index(raw_size.min(in_memory));
        let (start, source) = (index(rva), index(raw_at));
        let target = bytes
            .get_mut(start..start.saturating_add(copy))
            .ok_or(LoadError::Malformed("a section lies outside SizeOfImage"))?;
        let data = file
            .get(source..source.saturating_add(copy))
            .ok_or(LoadError::Malformed(
                "a section's data lies outside the file",
            ))?;
        target.copy_from_slice(data);
        sections.push((rva, in_memory, characteristics & 0x2000_0000 != 0));
    }
    relocate(
        &mut bytes,
        directory(DIRECTORY_BASERELOC)?,
        base.wrapping_sub(image_base),
    )?;
    let imports = imports(&bytes, arch, directory(DIRECTORY_IMPORT)?)?;
    let cookie = cookie(&bytes, arch, directory(DIRECTORY_LOAD_CONFIG)?, base);
    Ok(Layout {
        bytes,
        imports,
        entry,
        cookie,
        sections,
        exception_directory: directory(3)?,
    })
}

fn relocate(bytes: &mut [u8], (rva, size): (u32, u32), delta: u64) -> Result<(), LoadError> {
    let end = index(rva).saturating_add(index(size)).min(bytes.len());
    let mut block = index(rva);
    while block + 8 <= end {
        let page = u32_at(bytes, block)?;
        let block_size = index(u32_at(bytes, block + 4)?);
        if block_size < 8 {
            break;
        }
        for entry in (block + 8..(block + block_size).min(end)).step_by(2) {
            let value = u16_at(bytes, entry)?;
            let at = index(page) + usize::from(value & 0xfff);
            match value >> 12 {
                0 => {}
                3 => {
                    let old = u32_at(bytes, at)?;
                    let new = old.wrapping_add(u32::try_from(delta & 0xffff_ffff).unwrap_or(0));
                    bytes[at..at + 4].copy_from_slice(&new.to_le_bytes());
                }
                10 => {
                    let old = u64_at(bytes, at)?;
                    bytes[at..at + 8].copy_from_slice(&old.wrapping_add(delta).to_le_bytes());
                }
                other => return Err(LoadError::Relocation(other)),
            }
        }
        block += block_size;
    }
    Ok(())
}

fn c_string(bytes: &[u8], at: usize) -> String {
    let tail = bytes.get(at..).unwrap_or_default();
    let end = tail
        .iter()
        .position(|&byte| byte == 0)
        .unwrap_or(tail.len());
    String::from_utf8_lossy(&tail[..end.min(256)]).into_owned()
}

fn imports(bytes: &[u8], arch: Arch, (rva, _): (u32, u32)) -> Result<Vec<ImportSlot>, LoadError> {
    let mut slots = Vec::new();
    if rva == 0 {
        return Ok(slots);
    }
    let pointer = usize::try_from(arch.pointer_size()).unwrap_or(8);
    let ordinal_flag = 1_u64 << (pointer * 8 - 1);
    let mut seen = BTreeSet::new();
    for descriptor in (index(rva)..).step_by(20).take(1024) {
        let names = u32_at(bytes, descriptor)?;
        let name = u32_at(bytes, descriptor + 12)?;
        let first_thunk = u32_at(bytes, descriptor + 16)?;
        if name == 0 && first_thunk == 0 {
            break;
        }
        let library = c_string(bytes, index(name));
        let lookup = if names == 0 { first_thunk } else { names };
        for entry in 0..65536_usize {
            let at = index(lookup) + entry * pointer;
            let value = match arch {
                Arch::X86 => u64::from(u32_at(bytes, at)?),
                Arch::X64 => u64_at(bytes, at)?,
            };
            if value == 0 {
                break;
            }
            let name = if value & ordinal_flag == 0 {
                c_string(
                    bytes,
                    index(u32::try_from(value & 0x7fff_ffff).unwrap_or(0)) + 2,
                )
            } else {
                format!("#{}", value & 0xffff)
            };
            let slot = first_thunk + u32::try_from(entry * pointer).unwrap_or(0);
            if seen.insert(slot) {
                slots.push(ImportSlot {
                    library: library.clone(),
                    name,
                    slot,
                });
            }
        }
    }
    Ok(slots)
}

/// The load config's `SecurityCookie`, as an RVA inside the image.
fn cookie(bytes: &[u8], arch: Arch, (rva, size): (u32, u32), base: u64) -> Option<u32> {
    if rva == 0 || size == 0 {
        return None;
    }
    let field = match arch {
        Arch::X86 => 0x3c,
        Arch::X64 => 0x58,
    };
    let at = index(rva) + field;
    let va = match arch {
        Arch::X86 => u64::from(u32_at(bytes, at).ok()?),
        Arch::X64 => u64_at(bytes, at).ok()?,
    };
    let offset = va.checked_sub(base)?;
    (offset < bytes.len() as u64).then(|| u32::try_from(offset).ok())?
}
