//! `dt`, printed the way kd prints it. The forms come from real kd output:
//! the walkthrough (`dt Sample!g_RegistryPath`, `dt nt!_POOL_HEADER`) and
//! published sessions of Windows 7 to 10 targets:
//!
//! - a member line is `   +0x004 Name             : value`, the name padded
//!   to 16 columns (a longer one is followed by a single space);
//! - unsigned integers print as `0` to `9`, then `0x12`; signed ones as
//!   `0n-8192`; `UChar` as `0x1 ''`, `Char` as `2 ''`;
//! - a bitfield as `0y000001100 (0xc)` (a 1-bit one as `0y1`, zero as `(0)`);
//! - a pointer as `0x91c26130` or ``0xfffff8a0`00e6b9b0``, `(null)` when 0,
//!   followed by the type pointed to (`_DRIVER_OBJECT`, `Void`), a string in
//!   quotes after two spaces for character pointers, ` -> value` for other
//!   primitives, and the function's return type for function pointers;
//! - a `_UNICODE_STRING` shows its counted text, both as a member
//!   (`_UNICODE_STRING "\Driver\Sample"`) and first of all when it is the
//!   type dumped (` ""` — kd ends that line only when the text is not
//!   empty, as the walkthrough's ` ""   +0x000 Length` shows);
//! - an unreadable member prints `??` (`????` for a pointer), and the dump
//!   ends with `Memory read error <address>` of the last one.
//!
//! kd's older versions put a space after `(null)` and function types; the
//! newer ones the walkthrough comes from do not, and neither does this.

use std::fmt::Write as _;

use super::{
    Bits, MAX_DEPTH, PrimitiveClass, Record, RecordKind, Type, TypeId, TypeTable, last_segment,
};
use crate::arch::Arch;

/// Longest string a character pointer is followed for, in characters.
const MAX_STRING: usize = 256;

/// `dt` of `ty`: its layout without an address, its values at `address`
/// (read through `read`, which returns `None` or fewer bytes when memory
/// is not readable). Every line ends in `\n`.
#[must_use]
pub fn dt(
    table: &TypeTable,
    ty: TypeId,
    address: Option<u64>,
    arch: Arch,
    read: &dyn Fn(u64, usize) -> Option<Vec<u8>>,
) -> String {
    dt_with_names(table, ty, address, arch, read, &|_| None)
}

/// [`dt`], naming function pointers' targets with `name_code`
/// (`Sample!DriverEntry`), which kd prints after the function type.
#[must_use]
pub fn dt_with_names(
    table: &TypeTable,
    ty: TypeId,
    address: Option<u64>,
    arch: Arch,
    read: &dyn Fn(u64, usize) -> Option<Vec<u8>>,
    name_code: &dyn Fn(u64) -> Option<String>,
) -> String {
    dt_with_options(
        table,
        ty,
        address,
        arch,
        read,
        name_code,
        DtOptions::default(),
    )
}

/// `dt`'s options (dt--display-type-.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DtOptions {
    /// `-r[N]`: expand members that are structures, N levels deep (kd
    /// indents each level by three more columns).
    pub recurse: usize,
    /// `-v`: first a line with the kind, the member count and the size
    /// (`struct _UNICODE_STRING, 3 elements, 0x8 bytes`).
    pub verbose: bool,
}

/// [`dt_with_names`] with kd's options.
#[must_use]
pub fn dt_with_options(
    table: &TypeTable,
    ty: TypeId,
    address: Option<u64>,
    arch: Arch,
    read: &dyn Fn(u64, usize) -> Option<Vec<u8>>,
    name_code: &dyn Fn(u64) -> Option<String>,
    options: DtOptions,
) -> String {
    let mut renderer = Renderer {
        table,
        arch,
        read,
        name_code,
        failed: None,
        recurse: options.recurse.min(MAX_DEPTH),
    };
    let mut out = String::new();
    if options.verbose
        && let Some(record) = table.record(ty)
    {
        let kind = match record.kind {
            RecordKind::Struct => "struct",
            RecordKind::Class => "class",
            RecordKind::Union => "union",
        };
        let _ = writeln!(
            out,
            "{kind} {}, {} elements, 0x{:x} bytes",
            record.name,
            record.fields.len(),
            record.size
        );
    }
    out.push_str(&match address {
        None => renderer.layout(ty),
        Some(address) => renderer.values(ty, address),
    });
    out
}

struct Renderer<'a> {
    table: &'a TypeTable,
    arch: Arch,
    read: &'a dyn Fn(u64, usize) -> Option<Vec<u8>>,
    name_code: &'a dyn Fn(u64) -> Option<String>,
    /// The last address that could not be read.
    failed: Option<u64>,
    /// `-r`'s depth.
    recurse: usize,
}

/// Where a `_UNICODE_STRING`-like record keeps its parts.
struct CountedString {
    length: u64,
    buffer: u64,
    pointer_size: u8,
}

fn member_line(out: &mut String, level: usize, offset: u64, name: &str, text: &str) {
    let indent = "   ".repeat(level);
    let _ = writeln!(out, "{indent}   +0x{offset:03x} {name:<16} : {text}");
}

impl<'a> Renderer<'a> {
    fn layout(&self, ty: TypeId) -> String {
        let mut out = String::new();
        match self.table.get(ty) {
            Some(Type::Record(record)) => self.layout_record(&mut out, record, 0),
            // `dt PDEVICE_OBJECT`: the pointer's width, then the members of
            // what it points to, on the same line.
            Some(Type::Pointer { pointee, size }) if self.table.record(*pointee).is_some() => {
                let _ = write!(out, "Ptr{} ", u32::from(*size) * 8);
                if let Some(record) = self.table.record(*pointee) {
                    self.layout_record(&mut out, record, 0);
                }
            }
            _ => {
                let _ = writeln!(out, "{}", self.table.label(ty));
            }
        }
        out
    }

    fn layout_record(&self, out: &mut String, record: &Record, level: usize) {
        for field in &record.fields {
            let text = match field.bits {
                Some(Bits { position, length }) => format!(
                    "Pos {position}, {length} Bit{}",
                    if length == 1 { "" } else { "s" }
                ),
                None => self.table.label(field.ty),
            };
            member_line(out, level, field.offset, &field.name, &text);
            if let Some(inner) = self.expanded(field.ty, field.bits, level) {
                self.layout_record(out, inner, level + 1);
            }
        }
    }

    /// The structure member `-r` expands at this level, if any.
    fn expanded(&self, ty: TypeId, bits: Option<Bits>, level: usize) -> Option<&'a Record> {
        let table: &'a TypeTable = self.table;
        if bits.is_some() || level >= self.recurse {
            return None;
        }
        table.record(ty).filter(|record| record.complete)
    }

    fn values(&mut self, ty: TypeId, address: u64) -> String {
        let mut out = String::new();
        match self.table.get(ty) {
            Some(Type::Record(record)) => self.record_values(&mut out, record, address, 0),
            Some(Type::Pointer { pointee, size }) if self.table.record(*pointee).is_some() => {
                match self.read_uint(address, usize::from(*size)) {
                    Some(0) => out.push_str("(null)\n"),
                    Some(target) => {
                        let _ = writeln!(out, "{}", self.pointer_text(target));
                        if let Some(record) = self.table.record(*pointee) {
                            self.record_values(&mut out, record, target, 0);
                        }
                    }
                    None => self.failed = Some(address),
                }
            }
            _ => {
                let text = self.value(ty, address, 0);
                let _ = writeln!(out, "{text}");
            }
        }
        if let Some(failed) = self.failed {
            let _ = writeln!(
                out,
                "Memory read error {:0width$x}",
                failed,
                width = self.arch.pointer_digits()
            );
        }
        out
    }

    fn record_values(&mut self, out: &mut String, record: &Record, address: u64, level: usize) {
        let counted = self.counted_string(record);
        if level == 0
            && let Some(counted) = &counted
            && let Some(text) = self.counted_text(counted, address)
        {
            // kd's quirk: the line ends only when there is text on it.
            let _ = write!(out, " \"{text}\"");
            if !text.is_empty() {
                out.push('\n');
            }
        }
        for field in &record.fields {
            let at = address.wrapping_add(field.offset);
            let text = if let Some(bits) = field.bits {
                self.bitfield(field.ty, at, bits)
            } else if field.name == "Buffer"
                && let Some(counted) = &counted
            {
                self.buffer_text(counted, address)
            } else {
                self.value(field.ty, at, 0)
            };
            member_line(out, level, field.offset, &field.name, &text);
            if let Some(inner) = self.expanded(field.ty, field.bits, level) {
                self.record_values(out, inner, at, level + 1);
            }
        }
    }

    /// A member's value, as it follows the colon.
    fn value(&mut self, ty: TypeId, address: u64, depth: usize) -> String {
        if depth > MAX_DEPTH {
            return "??".to_owned();
        }
        let table = self.table;
        match table.get(ty) {
            Some(Type::Primitive(primitive)) => {
                let size = usize::from(primitive.size);
                if primitive.class == PrimitiveClass::Void {
                    return String::new();
                }
                self.read_bytes(address, size).map_or_else(
                    || "??".to_owned(),
                    |bytes| primitive_text(primitive.class, &bytes),
                )
            }
            Some(Type::Enum(en)) => {
                let size = usize::try_from(table.sizeof(en.underlying)).unwrap_or(0);
                self.read_bytes(address, size).map_or_else(
                    || "??".to_owned(),
                    |bytes| {
                        let value = little_endian(&bytes);
                        let signed = sign_extend(value, size);
                        let matched = en
                            .values
                            .iter()
                            .find(|(_, v)| *v == i128::from(value) || *v == i128::from(signed));
                        match matched {
                            Some((name, _)) => format!("{} ( {name} )", unsigned_text(value)),
                            None => unsigned_text(value),
                        }
                    },
                )
            }
            Some(Type::Pointer { pointee, size }) => {
                match self.read_uint(address, usize::from(*size)) {
                    Some(0) => "(null)".to_owned(),
                    Some(target) => self.pointer_value(*pointee, target, depth),
                    None => "????".to_owned(),
                }
            }
            Some(Type::Array { element, count, .. }) => {
                if let Some(text) = self.character_array(*element, *count, address) {
                    return format!("[{count}]  \"{text}\"");
                }
                format!("[{count}] {}", self.value(*element, address, depth + 1))
            }
            Some(Type::Record(record)) => {
                let mut text = record.name.clone();
                if let Some(counted) = self.counted_string(record) {
                    if let Some(string) = self.counted_text(&counted, address) {
                        let _ = write!(text, " \"{string}\"");
                    }
                } else if let Some(pointer_size) = list_entry(table, record) {
                    let size = usize::from(pointer_size);
                    let flink = self.read_uint(address, size);
                    let blink = self.read_uint(address.wrapping_add(u64::from(pointer_size)), size);
                    if let (Some(flink), Some(blink)) = (flink, blink) {
                        let _ = write!(
                            text,
                            " [ {} - {} ]",
                            self.pointer_text(flink),
                            self.pointer_text(blink)
                        );
                    }
                }
                text
            }
            Some(Type::Function(_)) | None => table.label(ty),
        }
    }

    /// What follows a non-null pointer's value.
    fn pointer_value(&mut self, pointee: TypeId, target: u64, depth: usize) -> String {
        let table = self.table;
        let address = self.pointer_text(target);
        match table.get(pointee) {
            Some(Type::Record(record)) => {
                let mut text = format!("{address} {}", record.name);
                if let Some(counted) = self.counted_string(record)
                    && let Some(string) = self.counted_text(&counted, target)
                {
                    let _ = write!(text, " \"{string}\"");
                }
                text
            }
            Some(Type::Primitive(primitive)) => match primitive.class {
                PrimitiveClass::Void => format!("{address} Void"),
                PrimitiveClass::WChar => {
                    format!("{address}  \"{}\"", self.c_string(target, 2))
                }
                PrimitiveClass::Char | PrimitiveClass::UChar => {
                    format!("{address}  \"{}\"", self.c_string(target, 1))
                }
                _ => format!("{address}  -> {}", self.value(pointee, target, depth + 1)),
            },
            Some(Type::Pointer { .. } | Type::Enum(_)) => {
                format!("{address}  -> {}", self.value(pointee, target, depth + 1))
            }
            Some(Type::Function(_)) => {
                let mut text = format!("{address} {}", table.label(pointee));
                if let Some(name) = (self.name_code)(target) {
                    let _ = write!(text, "  {name}");
                }
                text
            }
            Some(Type::Array { .. }) | None => address,
        }
    }

    fn bitfield(&mut self, ty: TypeId, address: u64, bits: Bits) -> String {
        let (size, signed) = match self.table.get(ty) {
            Some(Type::Primitive(primitive)) => (
                usize::from(primitive.size),
                primitive.class == PrimitiveClass::Signed,
            ),
            Some(Type::Enum(en)) => (
                usize::try_from(self.table.sizeof(en.underlying)).unwrap_or(0),
                false,
            ),
            _ => (0, false),
        };
        let Some(bytes) = self.read_bytes(address, size) else {
            return "??".to_owned();
        };
        let length = u32::from(bits.length).min(64);
        let raw = little_endian(&bytes)
            .checked_shr(u32::from(bits.position))
            .unwrap_or(0);
        let value = if length >= 64 {
            raw
        } else {
            raw & ((1u64 << length) - 1)
        };
        let width = usize::from(bits.length);
        let binary = format!("0y{value:0width$b}");
        if bits.length == 1 {
            return binary;
        }
        let number = if signed {
            let shift = 64 - length.max(1);
            // Sign-extend the field's own top bit.
            let extended = (value.cast_signed() << shift) >> shift;
            format!("0n{extended}")
        } else if value == 0 {
            "0".to_owned()
        } else {
            format!("0x{value:x}")
        };
        format!("{binary} ({number})")
    }

    /// `0x91c26130` on x86, ``0xfffff8a0`00e6b9b0`` on x64.
    fn pointer_text(&self, value: u64) -> String {
        match self.arch {
            Arch::X86 => format!("0x{:08x}", value & 0xffff_ffff),
            Arch::X64 => format!("0x{:08x}`{:08x}", value >> 32, value & 0xffff_ffff),
        }
    }

    /// A `_UNICODE_STRING`'s layout: a record named so (with or without
    /// the underscore, under any path) with `Length` and a `Buffer`
    /// pointer. The driver's Rust PDB declares `Buffer` as `unsigned
    /// short*` where wdm.h has `PWCH`; kd shows the text of both.
    fn counted_string(&self, record: &Record) -> Option<CountedString> {
        let short = last_segment(&record.name);
        if short.strip_prefix('_').unwrap_or(short) != "UNICODE_STRING" {
            return None;
        }
        let length = record.fields.iter().find(|f| f.name == "Length")?;
        let buffer = record.fields.iter().find(|f| f.name == "Buffer")?;
        let Some(Type::Pointer { size, .. }) = self.table.get(buffer.ty) else {
            return None;
        };
        (self.table.sizeof(length.ty) == 2).then_some(CountedString {
            length: length.offset,
            buffer: buffer.offset,
            pointer_size: *size,
        })
    }

    /// The text of the counted string at `address`: `Length` bytes at
    /// `Buffer`, as kd shows it. `None` when the structure itself cannot
    /// be read.
    fn counted_text(&mut self, counted: &CountedString, address: u64) -> Option<String> {
        let length = self.read_uint(address.wrapping_add(counted.length), 2)?;
        let buffer = self.read_uint(
            address.wrapping_add(counted.buffer),
            usize::from(counted.pointer_size),
        )?;
        if length == 0 {
            return Some(String::new());
        }
        let length = usize::try_from(length & !1).unwrap_or(0);
        Some(match (self.read)(buffer, length) {
            Some(bytes) if bytes.len() >= length => utf16_text(&bytes),
            _ => self.memory_error_text(buffer),
        })
    }

    /// A `_UNICODE_STRING`'s `Buffer` member: the pointer and the counted
    /// text after two spaces.
    fn buffer_text(&mut self, counted: &CountedString, record_address: u64) -> String {
        let at = record_address.wrapping_add(counted.buffer);
        match self.read_uint(at, usize::from(counted.pointer_size)) {
            None => "????".to_owned(),
            Some(0) => "(null)".to_owned(),
            Some(buffer) => {
                let text = self
                    .counted_text(counted, record_address)
                    .unwrap_or_default();
                format!("{}  \"{text}\"", self.pointer_text(buffer))
            }
        }
    }

    /// A NUL-terminated string of `unit`-byte characters (at most
    /// [`MAX_STRING`]).
    fn c_string(&self, address: u64, unit: usize) -> String {
        let mut units = Vec::new();
        for index in 0..MAX_STRING {
            let at = address.wrapping_add((index * unit) as u64);
            match (self.read)(at, unit) {
                Some(bytes) if bytes.len() >= unit => {
                    let value = little_endian(&bytes[..unit]);
                    if value == 0 {
                        break;
                    }
                    units.push(u16::try_from(value).unwrap_or(u16::MAX));
                }
                _ if index == 0 => return self.memory_error_text(address),
                _ => break,
            }
        }
        String::from_utf16_lossy(&units)
    }

    /// `[260]  "C:\Windows"`: character arrays print as strings.
    fn character_array(&self, element: TypeId, count: u64, address: u64) -> Option<String> {
        let Some(Type::Primitive(primitive)) = self.table.get(element) else {
            return None;
        };
        let unit = match primitive.class {
            PrimitiveClass::WChar => 2,
            PrimitiveClass::Char | PrimitiveClass::UChar => 1,
            _ => return None,
        };
        let count = usize::try_from(count.min(MAX_STRING as u64)).unwrap_or(0);
        let bytes = (self.read)(address, count * unit)?;
        let units: Vec<u16> = bytes
            .chunks_exact(unit)
            .map(|chunk| u16::try_from(little_endian(chunk)).unwrap_or(u16::MAX))
            .take_while(|unit| *unit != 0)
            .collect();
        Some(String::from_utf16_lossy(&units))
    }

    fn memory_error_text(&self, address: u64) -> String {
        format!(
            "--- memory read error at address {} ---",
            self.pointer_text(address)
        )
    }

    fn read_bytes(&mut self, address: u64, size: usize) -> Option<Vec<u8>> {
        match (self.read)(address, size) {
            Some(bytes) if bytes.len() >= size => Some(bytes),
            _ => {
                self.failed = Some(address);
                None
            }
        }
    }

    fn read_uint(&mut self, address: u64, size: usize) -> Option<u64> {
        self.read_bytes(address, size.min(8))
            .map(|bytes| little_endian(&bytes))
    }
}

/// A `_LIST_ENTRY`: `Flink` and `Blink` pointers; their size.
fn list_entry(table: &TypeTable, record: &Record) -> Option<u8> {
    let short = last_segment(&record.name);
    if short.strip_prefix('_').unwrap_or(short) != "LIST_ENTRY" {
        return None;
    }
    let flink = record.fields.iter().find(|f| f.name == "Flink")?;
    match table.get(flink.ty) {
        Some(Type::Pointer { size, .. }) => Some(*size),
        _ => None,
    }
}

/// Up to eight bytes as a little-endian integer.
fn little_endian(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .take(8)
        .rev()
        .fold(0, |value, byte| (value << 8) | u64::from(*byte))
}

fn sign_extend(value: u64, size: usize) -> i64 {
    let bits = u32::try_from(size.clamp(1, 8) * 8).unwrap_or(64);
    let shift = 64 - bits;
    (value.cast_signed() << shift) >> shift
}

/// kd's unsigned integers: `0`..`9` as they are, larger ones in hex, and
/// 64-bit values with the backtick between the halves.
fn unsigned_text(value: u64) -> String {
    if value < 10 {
        value.to_string()
    } else if value > 0xffff_ffff {
        format!("0x{:08x}`{:08x}", value >> 32, value & 0xffff_ffff)
    } else {
        format!("0x{value:x}")
    }
}

/// The character kd quotes after a `Char`/`UChar` value: printable ASCII
/// only, else nothing (`0x1 ''`).
fn quoted_char(value: u64) -> String {
    match u8::try_from(value) {
        Ok(byte) if (0x20..0x7f).contains(&byte) => format!("'{}'", char::from(byte)),
        _ => "''".to_owned(),
    }
}

fn primitive_text(class: PrimitiveClass, bytes: &[u8]) -> String {
    let value = little_endian(bytes);
    match class {
        PrimitiveClass::Void => String::new(),
        PrimitiveClass::Signed => format!("0n{}", sign_extend(value, bytes.len())),
        PrimitiveClass::Unsigned | PrimitiveClass::Bool => unsigned_text(value),
        PrimitiveClass::Char => {
            format!("{} {}", sign_extend(value, 1), quoted_char(value))
        }
        PrimitiveClass::UChar | PrimitiveClass::WChar => {
            let number = if value == 0 {
                "0".to_owned()
            } else {
                format!("0x{value:x}")
            };
            format!("{number} {}", quoted_char(value))
        }
        PrimitiveClass::Float => match bytes.len() {
            4 => f32::from_bits(u32::try_from(value).unwrap_or(0)).to_string(),
            8 => f64::from_bits(value).to_string(),
            _ => unsigned_text(value),
        },
    }
}

fn utf16_text(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}
