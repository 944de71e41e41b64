//! What the harness needs to know about a PE image: architecture, subsystem,
//! entry point, imports, exports, checksum, PDB identity and code bytes.

use std::path::Path;

use iced_x86::{Decoder, DecoderOptions, Formatter, Instruction, IntelFormatter, Register};
use object::read::pe::{ImageNtHeaders, ImageOptionalHeader, PeFile};
use object::{LittleEndian as LE, Object, ObjectSection, SectionKind, pe};

use crate::arch::Arch;
use crate::error::InputError;

/// `IMAGE_SUBSYSTEM_NATIVE`: kernel drivers and native programs.
pub const SUBSYSTEM_NATIVE: u16 = pe::IMAGE_SUBSYSTEM_NATIVE.0;

/// The largest `SizeOfImage` the harness lets an engine map: far beyond any
/// real driver (the largest Windows ships are a few tens of MiB).
pub const MAX_SIZE_OF_IMAGE: u64 = 256 << 20;

/// The most sections an image may have (the PE format's own limit).
pub(crate) const MAX_SECTIONS: usize = 96;

/// One imported function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// The DLL it comes from, as written in the image.
    pub library: String,
    /// The function name, exactly as imported (decorations included).
    pub name: String,
}

/// The facts of a PE image the harness checks and uses.
#[derive(Debug, Clone)]
pub struct PeImage {
    /// Architecture, or `None` for a machine type the harness does not run.
    pub arch: Option<Arch>,
    /// `IMAGE_FILE_HEADER.Machine`.
    pub machine: u16,
    /// `IMAGE_OPTIONAL_HEADER.Subsystem`.
    pub subsystem: u16,
    /// `IMAGE_FILE_HEADER.Characteristics`.
    pub characteristics: u16,
    /// Preferred load address.
    pub image_base: u64,
    /// `SizeOfImage`: bytes the image takes in memory.
    pub size_of_image: u64,
    /// Entry point RVA (0: none).
    pub entry_rva: u32,
    /// Checksum stored in the optional header.
    pub stored_checksum: u32,
    /// Checksum computed over the file the way the loader does.
    pub computed_checksum: u32,
    /// Imported functions, in table order.
    pub imports: Vec<Import>,
    /// Exported names with their RVAs.
    pub exports: Vec<(String, u32)>,
    /// CodeView record: PDB GUID bytes, age and path, if any.
    pub pdb: Option<([u8; 16], u32, String)>,
    /// Executable sections: (RVA, bytes).
    pub code: Vec<(u32, Vec<u8>)>,
    /// Whether the image has base relocations (drivers must be relocatable).
    pub has_relocations: bool,
}

/// What is wrong with a file the harness was asked to run as a driver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeError {
    /// Not a PE file at all.
    #[error("not a PE image")]
    NotPe,
    /// Another object format.
    #[error("not a PE image (it is {0})")]
    OtherFormat(String),
    /// A PE file the reader cannot make sense of.
    #[error("corrupt PE image: {0}")]
    Corrupt(String),
    /// A machine type the harness does not run.
    #[error("unsupported architecture (machine 0x{0:04x}); x64 and x86 drivers are supported")]
    UnsupportedMachine(u16),
    /// No entry point.
    #[error("no entry point, so there is no DriverEntry to call")]
    NoEntryPoint,
    /// Larger in memory than the harness maps.
    #[error(
        "SizeOfImage 0x{0:x} is larger than the {limit} MiB the harness maps for an image",
        limit = MAX_SIZE_OF_IMAGE >> 20
    )]
    ImageTooLarge(u64),
    /// A layout the Windows loader refuses (`STATUS_INVALID_IMAGE_FORMAT`).
    #[error("{0}")]
    BadLayout(String),
    /// Base relocations outside the image: the Windows loader applies them
    /// without a bounds check, so what follows depends on the memory beyond
    /// the image, which no engine can know.
    #[error(
        "{0}: the Windows loader applies base relocations without a bounds check (WRK ldrreloc.c), so what Windows does depends on the memory beyond the image; the run cannot be judged"
    )]
    RelocationOutside(String),
}

impl PeError {
    /// Whether the Windows loader itself would refuse an image with this
    /// problem (as opposed to the harness not being able to use it).
    #[must_use]
    pub const fn windows_refuses(&self) -> bool {
        matches!(self, Self::BadLayout(_))
    }
}

impl PeImage {
    /// Reads and parses a PE file; every failure is one clear line.
    ///
    /// # Errors
    /// The file is missing, not a regular file, too large, unreadable, or
    /// not a well-formed PE image.
    pub fn read(path: &Path) -> Result<Self, InputError> {
        let data = crate::input::read_file(path, crate::input::MAX_IMAGE_FILE)?;
        Self::parse(&data).map_err(|why| InputError::Image {
            path: path.to_path_buf(),
            why,
        })
    }

    /// Parses PE bytes.
    ///
    /// # Errors
    /// What is wrong with the bytes.
    pub fn parse(data: &[u8]) -> Result<Self, PeError> {
        match object::FileKind::parse(data) {
            Ok(object::FileKind::Pe32) => parse_as::<pe::ImageNtHeaders32>(data),
            Ok(object::FileKind::Pe64) => parse_as::<pe::ImageNtHeaders64>(data),
            Ok(kind) => Err(PeError::OtherFormat(format!("{kind:?}"))),
            Err(_) if data.starts_with(b"MZ") => {
                Err(PeError::Corrupt("truncated or malformed headers".into()))
            }
            Err(_) => Err(PeError::NotPe),
        }
    }

    /// An image with nothing in it, for tests of code that takes one.
    #[must_use]
    pub const fn empty(arch: Arch) -> Self {
        Self {
            arch: Some(arch),
            machine: match arch {
                Arch::X64 => pe::IMAGE_FILE_MACHINE_AMD64.0,
                Arch::X86 => pe::IMAGE_FILE_MACHINE_I386.0,
            },
            subsystem: SUBSYSTEM_NATIVE,
            characteristics: 0,
            image_base: 0,
            size_of_image: 0,
            entry_rva: 0,
            stored_checksum: 0,
            computed_checksum: 0,
            imports: Vec::new(),
            exports: Vec::new(),
            pdb: None,
            code: Vec::new(),
            has_relocations: false,
        }
    }

    /// Checks that the harness can run this image as a driver: x64 or x86,
    /// with an entry point.
    ///
    /// The subsystem is not looked at: the kernel loader does not (the
    /// Windows Research Kernel's `MmLoadSystemImage` checks the image with
    /// `MmCheckSystemImage`: checksum, and MP/UP; the machine too in `ReactOS`;
    /// then maps it as an image section and resolves its imports with
    /// `MiResolveImageReferences`; none of them reads
    /// `OptionalHeader.Subsystem`). A console or GUI image is refused, if at
    /// all, for what it imports.
    ///
    /// # Errors
    /// An architecture the harness cannot run, or no entry point.
    pub const fn require_kernel_driver(&self) -> Result<Arch, PeError> {
        let Some(arch) = self.arch else {
            return Err(PeError::UnsupportedMachine(self.machine));
        };
        if self.entry_rva == 0 {
            return Err(PeError::NoEntryPoint);
        }
        Ok(arch)
    }

    /// Instructions that touch x87, MMX or SSE/AVX state, as "address: text".
    #[must_use]
    pub fn floating_point_instructions(&self) -> Vec<String> {
        let bitness = if self.arch == Some(Arch::X86) { 32 } else { 64 };
        let mut found = Vec::new();
        let mut formatter = IntelFormatter::new();
        for (rva, bytes) in &self.code {
            let ip = self.image_base.wrapping_add(u64::from(*rva));
            let mut decoder = Decoder::with_ip(bitness, bytes, ip, DecoderOptions::NONE);
            let mut instruction = Instruction::default();
            while decoder.can_decode() {
                decoder.decode_out(&mut instruction);
                if uses_float_state(&instruction) {
                    let mut text = String::new();
                    formatter.format(&instruction, &mut text);
                    found.push(format!("{:x}: {text}", instruction.ip()));
                }
            }
        }
        found
    }
}

fn uses_float_state(instruction: &Instruction) -> bool {
    use iced_x86::CpuidFeature as F;
    let features = instruction.cpuid_features();
    let float_feature = features.iter().any(|feature| {
        matches!(
            feature,
            F::FPU
                | F::FPU287
                | F::FPU387
                | F::MMX
                | F::SSE
                | F::SSE2
                | F::SSE3
                | F::SSSE3
                | F::SSE4_1
                | F::SSE4_2
                | F::SSE4A
                | F::AVX
                | F::AVX2
                | F::AVX512F
                | F::FMA
                | F::F16C
        )
    });
    let float_register = (0..instruction.op_count()).any(|i| {
        let register = instruction.op_register(i);
        register != Register::None
            && (register.is_xmm()
                || register.is_ymm()
                || register.is_zmm()
                || register.is_st()
                || register.is_mm())
    });
    float_feature || float_register
}

fn parse_as<Pe: ImageNtHeaders>(data: &[u8]) -> Result<PeImage, PeError> {
    let file = PeFile::<Pe>::parse(data).map_err(|error| PeError::Corrupt(error.to_string()))?;
    let nt = file.nt_headers();
    let header = nt.file_header();
    let optional = nt.optional_header();
    check_layout(
        &Layout {
            file_len: u64::try_from(data.len()).unwrap_or(u64::MAX),
            size_of_image: u64::from(optional.size_of_image()),
            size_of_headers: u64::from(optional.size_of_headers()),
            section_alignment: u64::from(optional.section_alignment()),
            file_alignment: u64::from(optional.file_alignment()),
        },
        file.section_table().iter().map(|section| Section {
            name: String::from_utf8_lossy(section.raw_name())
                .trim_end_matches('\0')
                .to_owned(),
            rva: u64::from(section.virtual_address.get(LE)),
            virtual_size: u64::from(section.virtual_size.get(LE)),
            raw_offset: u64::from(section.pointer_to_raw_data.get(LE)),
            raw_size: u64::from(section.size_of_raw_data.get(LE)),
        }),
    )?;
    check_relocations_of(&file, data)?;
    let machine = header.machine.get(LE).0;
    let arch = match machine {
        x if x == pe::IMAGE_FILE_MACHINE_AMD64.0 => Some(Arch::X64),
        x if x == pe::IMAGE_FILE_MACHINE_I386.0 => Some(Arch::X86),
        _ => None,
    };
    let imports = file
        .imports()
        .map_err(|error| PeError::Corrupt(format!("import table: {error}")))?
        .map(|import| {
            let import =
                import.map_err(|error| PeError::Corrupt(format!("import table: {error}")))?;
            Ok(Import {
                library: String::from_utf8_lossy(import.library()).into_owned(),
                name: name_text(&import.name()),
            })
        })
        .collect::<Result<Vec<_>, PeError>>()?;
    let image_base = optional.image_base();
    let exports = file
        .exports()
        .map_err(|error| PeError::Corrupt(format!("export table: {error}")))?
        .filter_map(|export| {
            let export = export.ok()?;
            let object::ExportTarget::Address { address } = export.target() else {
                return None;
            };
            // object adds ImageBase wrapping; so does Windows' 64-bit arithmetic.
            let rva = u32::try_from(address.wrapping_sub(image_base)).ok()?;
            Some((name_text(&export.name()), rva))
        })
        .collect();
    let pdb = file.pdb_info().ok().flatten().map(|info| {
        (
            info.guid(),
            info.age(),
            String::from_utf8_lossy(info.path()).into_owned(),
        )
    });
    let mut code = Vec::new();
    for section in file.sections() {
        if section.kind() == SectionKind::Text {
            let bytes = section
                .data()
                .map_err(|error| PeError::Corrupt(format!("section: {error}")))?;
            let rva = section.pe_section().virtual_address.get(LE);
            code.push((rva, bytes.to_vec()));
        }
    }
    let has_relocations = file
        .data_directory(pe::IMAGE_DIRECTORY_ENTRY_BASERELOC)
        .is_some_and(|dir| dir.size.get(LE) > 0);
    Ok(PeImage {
        arch,
        machine,
        subsystem: optional.subsystem().0,
        characteristics: header.characteristics.get(LE).0,
        image_base,
        size_of_image: u64::from(optional.size_of_image()),
        entry_rva: optional.address_of_entry_point(),
        stored_checksum: optional.check_sum(),
        computed_checksum: checksum(data, checksum_offset(data)),
        imports,
        exports,
        pdb,
        code,
        has_relocations,
    })
}

/// The header fields the layout check reads.
struct Layout {
    file_len: u64,
    size_of_image: u64,
    size_of_headers: u64,
    section_alignment: u64,
    file_alignment: u64,
}

/// One section table entry, as the layout check reads it.
struct Section {
    name: String,
    rva: u64,
    virtual_size: u64,
    raw_offset: u64,
    raw_size: u64,
}

/// Checks what the Windows loader checks before it maps an image (sizes
/// against the file, alignment, sections inside the image and in order), so
/// that no engine maps an image Windows would refuse, or one of any size.
fn check_layout(layout: &Layout, sections: impl Iterator<Item = Section>) -> Result<(), PeError> {
    let bad = |why: String| Err(PeError::BadLayout(why));
    if layout.size_of_image > MAX_SIZE_OF_IMAGE {
        return Err(PeError::ImageTooLarge(layout.size_of_image));
    }
    let (section_alignment, file_alignment) = (layout.section_alignment, layout.file_alignment);
    if !file_alignment.is_power_of_two() || !section_alignment.is_power_of_two() {
        return bad(format!(
            "SectionAlignment 0x{section_alignment:x} and FileAlignment 0x{file_alignment:x} must be powers of two"
        ));
    }
    if section_alignment < file_alignment {
        return bad(format!(
            "SectionAlignment 0x{section_alignment:x} is smaller than FileAlignment 0x{file_alignment:x}"
        ));
    }
    if layout.size_of_headers > layout.size_of_image || layout.size_of_headers > layout.file_len {
        return bad(format!(
            "SizeOfHeaders 0x{:x} is larger than the image (0x{:x}) or the file (0x{:x})",
            layout.size_of_headers, layout.size_of_image, layout.file_len
        ));
    }
    let align = |value: u64| value.div_ceil(section_alignment) * section_alignment;
    let mut next_free = layout.size_of_headers;
    for (index, section) in sections.enumerate() {
        if index >= MAX_SECTIONS {
            return bad(format!("more than {MAX_SECTIONS} sections"));
        }
        let name = &section.name;
        // The loader maps VirtualSize bytes (SizeOfRawData when it is 0).
        let size = if section.virtual_size == 0 {
            section.raw_size
        } else {
            section.virtual_size
        };
        if section.rva % section_alignment != 0 {
            return bad(format!(
                "section {name} at RVA 0x{:x} is not aligned to SectionAlignment 0x{section_alignment:x}",
                section.rva
            ));
        }
        if section.rva.saturating_add(size) > layout.size_of_image {
            return bad(format!(
                "section {name} (RVA 0x{:x}, 0x{size:x} bytes) ends beyond SizeOfImage 0x{:x}",
                section.rva, layout.size_of_image
            ));
        }
        if section.rva < next_free {
            return bad(format!(
                "section {name} at RVA 0x{:x} overlaps the headers or the section before it",
                section.rva
            ));
        }
        next_free = section.rva + align(size);
        if section.raw_size > 0
            && section.raw_offset.saturating_add(section.raw_size)
                > layout.file_len.div_ceil(file_alignment) * file_alignment
        {
            return bad(format!(
                "section {name}'s data (0x{:x} bytes at file offset 0x{:x}) ends beyond the file (0x{:x} bytes)",
                section.raw_size, section.raw_offset, layout.file_len
            ));
        }
    }
    Ok(())
}

/// The base relocation check on a parsed file.
fn check_relocations_of<Pe: ImageNtHeaders>(
    file: &PeFile<'_, Pe>,
    data: &[u8],
) -> Result<(), PeError> {
    let optional = file.nt_headers().optional_header();
    let mapped: Vec<Mapped> = file
        .section_table()
        .iter()
        .map(|section| Mapped {
            rva: u64::from(section.virtual_address.get(LE)),
            raw_offset: u64::from(section.pointer_to_raw_data.get(LE)),
            // The loader copies no more than the section's size in memory.
            raw_size: match u64::from(section.virtual_size.get(LE)) {
                0 => u64::from(section.size_of_raw_data.get(LE)),
                size => size.min(u64::from(section.size_of_raw_data.get(LE))),
            },
        })
        .collect();
    let Some(directory) = file.data_directory(pe::IMAGE_DIRECTORY_ENTRY_BASERELOC) else {
        return Ok(());
    };
    check_relocations(
        &Image {
            data,
            size: u64::from(optional.size_of_image()),
            headers: u64::from(optional.size_of_headers()),
            sections: &mapped,
        },
        u64::from(directory.virtual_address.get(LE)),
        u64::from(directory.size.get(LE)),
    )
}

/// Where a section's file bytes land in the image.
struct Mapped {
    rva: u64,
    raw_offset: u64,
    raw_size: u64,
}

/// The image as the loader maps it, read without building it: headers and
/// section data from the file, zeros elsewhere up to `SizeOfImage`.
struct Image<'a> {
    data: &'a [u8],
    size: u64,
    headers: u64,
    sections: &'a [Mapped],
}

impl Image<'_> {
    /// `N` bytes at `rva`, or `None` if they are not all inside the image.
    fn read<const N: usize>(&self, rva: u64) -> Option<[u8; N]> {
        let width = N as u64;
        if rva.checked_add(width)? > self.size {
            return None;
        }
        let mut bytes = [0; N];
        for (index, byte) in bytes.iter_mut().enumerate() {
            let at = rva + index as u64;
            let file_at = if at < self.headers {
                Some(at)
            } else {
                self.sections
                    .iter()
                    .find(|section| at >= section.rva && at - section.rva < section.raw_size)
                    .map(|section| section.raw_offset + (at - section.rva))
            };
            *byte = file_at
                .and_then(|at| usize::try_from(at).ok())
                .and_then(|at| self.data.get(at).copied())
                .unwrap_or(0);
        }
        Some(bytes)
    }
}

/// Checks the base relocations as the kernel's relocator would apply them
/// to an image loaded away from its `ImageBase` (always, for a driver).
///
/// The relocator (WRK `base/ntos/rtl/ldrreloc.c`, `LdrRelocateImage` and
/// `LdrProcessRelocationBlockLongLong`; `ReactOS` `sdk/lib/rtl/image.c` alike)
/// walks the blocks inside the mapped image and writes each fixup at
/// image + page + offset without a bounds check; an unknown fixup type
/// makes it return `STATUS_INVALID_IMAGE_FORMAT` and the load fails. A block
/// or fixup outside the image would have the kernel's own loader read or
/// write outside the driver's image: on Windows that corrupts or faults on
/// whatever lies beyond it, which no engine can know, so such an image
/// cannot be judged (exit 2), the same way on every engine; an unknown
/// fixup type is the loader's own refusal (exit 6).
fn check_relocations(image: &Image<'_>, rva: u64, size: u64) -> Result<(), PeError> {
    let bad = |why: String| Err(PeError::RelocationOutside(why));
    if rva == 0 || size == 0 {
        return Ok(());
    }
    if rva.saturating_add(size) > image.size {
        return bad(format!(
            "the base relocation table (RVA 0x{rva:x}, 0x{size:x} bytes) ends beyond SizeOfImage 0x{:x}",
            image.size
        ));
    }
    let end = rva + size;
    let mut block = rva;
    while block + 8 <= end {
        let page = u64::from(u32::from_le_bytes(
            image.read::<4>(block).unwrap_or_default(),
        ));
        let block_size = u64::from(u32::from_le_bytes(
            image.read::<4>(block + 4).unwrap_or_default(),
        ));
        if block_size == 0 {
            break; // the relocator's own end of the table
        }
        if block_size < 8 || block.saturating_add(block_size) > image.size {
            return bad(format!(
                "base relocation block at RVA 0x{block:x} has SizeOfBlock 0x{block_size:x}, which runs outside the image"
            ));
        }
        let mut entry = block + 8;
        while entry + 2 <= block + block_size {
            let value = u16::from_le_bytes(image.read::<2>(entry).unwrap_or_default());
            entry += 2;
            let width = match value >> 12 {
                0 => continue, // IMAGE_REL_BASED_ABSOLUTE: padding
                1 | 2 => 2,    // HIGH, LOW
                3 => 4,        // HIGHLOW
                4 => {
                    // HIGHADJ: the next slot is its low half, not a place.
                    entry += 2;
                    2
                }
                10 => 8, // DIR64
                other => {
                    return Err(PeError::BadLayout(format!(
                        "base relocation at RVA 0x{entry:x} has type {other}, which the kernel's relocator rejects"
                    )));
                }
            };
            let target = page + u64::from(value & 0xfff);
            if target + width > image.size {
                return bad(format!(
                    "base relocation block at RVA 0x{block:x} fixes up RVA 0x{target:x}, beyond SizeOfImage 0x{:x}",
                    image.size
                ));
            }
        }
        block += block_size;
    }
    Ok(())
}

fn name_text(name: &object::NameOrOrdinal<&[u8]>) -> String {
    match name {
        object::NameOrOrdinal::Name(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        object::NameOrOrdinal::Ordinal(ordinal) => format!("#{ordinal}"),
    }
}

/// File offset of `OptionalHeader.CheckSum` (the same in PE32 and PE32+).
fn checksum_offset(data: &[u8]) -> usize {
    let e_lfanew = data.get(0x3c..0x40).map_or(0, |bytes| {
        u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
    });
    usize::try_from(e_lfanew).unwrap_or(0) + 4 + 20 + 64
}

/// The PE checksum, as `MapFileAndCheckSum` computes it and the kernel loader
/// checks it for drivers.
///
/// A 16-bit one's-complement-style sum of the file with the checksum field taken
/// as zero, plus the file length.
#[must_use]
pub fn checksum(data: &[u8], checksum_offset: usize) -> u32 {
    let mut sum: u64 = 0;
    for (index, pair) in data.chunks(2).enumerate() {
        let offset = index * 2;
        if offset == checksum_offset || offset == checksum_offset + 2 {
            continue;
        }
        let word = u16::from_le_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u64::from(word);
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum = (sum & 0xffff) + (sum >> 16);
    let length = u64::try_from(data.len()).unwrap_or(u64::MAX);
    u32::try_from((sum + length) & 0xffff_ffff).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image of 0x3000 bytes whose headers (the first 0x1000 file
    /// bytes) hold one relocation block at RVA 0x100.
    fn check(page: u32, entries: &[u16]) -> Result<(), PeError> {
        let mut data = vec![0_u8; 0x1000];
        let size = u32::try_from(8 + 2 * entries.len()).expect("size");
        data[0x100..0x104].copy_from_slice(&page.to_le_bytes());
        data[0x104..0x108].copy_from_slice(&size.to_le_bytes());
        for (index, entry) in entries.iter().enumerate() {
            let at = 0x108 + 2 * index;
            data[at..at + 2].copy_from_slice(&entry.to_le_bytes());
        }
        let image = Image {
            data: &data,
            size: 0x3000,
            headers: 0x1000,
            sections: &[],
        };
        check_relocations(&image, 0x100, u64::from(size))
    }

    #[test]
    fn fixups_inside_the_image_pass() {
        assert_eq!(check(0x2000, &[0xaff8, 0x3ffc, 0x0000]), Ok(()));
    }

    #[test]
    fn a_fixup_beyond_size_of_image_cannot_be_judged() {
        let error = check(0x2000, &[0xaff9]).expect_err("DIR64 at 0x2ff9 ends past 0x3000");
        assert!(matches!(error, PeError::RelocationOutside(_)), "{error}");
        assert!(!error.windows_refuses(), "{error}");
        assert!(check(0x10_0000, &[0x3000]).is_err());
        assert!(check(u32::MAX, &[0x3fff]).is_err(), "no overflow");
    }

    #[test]
    fn a_fixup_type_the_relocator_does_not_know_is_refused() {
        let error = check(0x2000, &[0x7000]).expect_err("type 7");
        assert!(error.to_string().contains("type 7"), "{error}");
        assert!(error.windows_refuses(), "{error}");
    }
}
