//! Counted strings (`Rtl*String`) and the C runtime's memory and string
//! functions ntoskrnl.exe exports, with the semantics the WDK documents.

use super::Call;
use crate::cpu::{self, CountedString};
use crate::machine::Halt;
use crate::traps::{allocate_pool, free_pool};
use harness_core::nt::status;

/// The longest string the engine scans for a terminator.
const MAX_SCAN: usize = 1 << 20;

fn counted(call: &Call<'_, '_>, index: usize) -> Result<CountedString, Halt> {
    Ok(cpu::read_counted(call.uc, call.arg(index)?)?)
}

/// `RtlInitUnicodeString(Destination, Source)`.
pub fn rtl_init_unicode_string(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let (destination, source) = (call.arg(0)?, call.arg(1)?);
    let length = if source == 0 {
        0
    } else {
        cpu::read_wstring(call.uc, source, 0x7fff)?.len() * 2
    };
    let length = u16::try_from(length).unwrap_or(0xfffc);
    cpu::write_counted(
        call.uc,
        destination,
        CountedString {
            length,
            maximum: if source == 0 { 0 } else { length + 2 },
            buffer: source,
        },
    )?;
    Ok(0)
}

/// `RtlInitAnsiString(Destination, Source)` (and `RtlInitString`).
pub fn rtl_init_ansi_string(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let (destination, source) = (call.arg(0)?, call.arg(1)?);
    let length = if source == 0 {
        0
    } else {
        cpu::read_cstring(call.uc, source, 0xfffe)?.len()
    };
    let length = u16::try_from(length).unwrap_or(0xfffe);
    cpu::write_counted(
        call.uc,
        destination,
        CountedString {
            length,
            maximum: if source == 0 { 0 } else { length + 1 },
            buffer: source,
        },
    )?;
    Ok(0)
}

/// `RtlCopyUnicodeString(Destination, Source)`: copies what fits, sets
/// Length, terminates when there is room.
pub fn rtl_copy_unicode_string(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let destination_at = call.arg(0)?;
    let mut destination = cpu::read_counted(call.uc, destination_at)?;
    if call.arg(1)? == 0 {
        destination.length = 0;
        cpu::write_counted(call.uc, destination_at, destination)?;
        return Ok(0);
    }
    let source = counted(call, 1)?;
    let copy = source.length.min(destination.maximum) & !1;
    let bytes = cpu::read_vec(call.uc, source.buffer, usize::from(copy))?;
    cpu::write(call.uc, destination.buffer, &bytes)?;
    if copy + 2 <= destination.maximum {
        cpu::write(call.uc, destination.buffer + u64::from(copy), &[0, 0])?;
    }
    destination.length = copy;
    cpu::write_counted(call.uc, destination_at, destination)?;
    Ok(0)
}

fn append(call: &mut Call<'_, '_>, destination_at: u64, bytes: &[u8]) -> Result<u64, Halt> {
    let mut destination = cpu::read_counted(call.uc, destination_at)?;
    let length = usize::from(destination.length);
    if length + bytes.len() > usize::from(destination.maximum) {
        return Ok(u64::from(status::BUFFER_TOO_SMALL));
    }
    cpu::write(call.uc, destination.buffer + length as u64, bytes)?;
    let new_length = length + bytes.len();
    if new_length + 2 <= usize::from(destination.maximum) {
        cpu::write(call.uc, destination.buffer + new_length as u64, &[0, 0])?;
    }
    destination.length = u16::try_from(new_length).unwrap_or(u16::MAX);
    cpu::write_counted(call.uc, destination_at, destination)?;
    Ok(u64::from(status::SUCCESS))
}

/// `RtlAppendUnicodeToString(Destination, Source)`.
pub fn rtl_append_unicode_to_string(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let destination = call.arg(0)?;
    let source = call.arg(1)?;
    let units = if source == 0 {
        Vec::new()
    } else {
        cpu::read_wstring(call.uc, source, 0x7fff)?
    };
    let bytes: Vec<u8> = units.iter().flat_map(|unit| unit.to_le_bytes()).collect();
    append(call, destination, &bytes)
}

/// `RtlAppendUnicodeStringToString(Destination, Source)`.
pub fn rtl_append_unicode_string_to_string(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let destination = call.arg(0)?;
    let source = counted(call, 1)?;
    let bytes = cpu::read_vec(call.uc, source.buffer, usize::from(source.length))?;
    append(call, destination, &bytes)
}

fn unicode_units(call: &Call<'_, '_>, index: usize) -> Result<Vec<u16>, Halt> {
    let string = counted(call, index)?;
    let bytes = cpu::read_vec(call.uc, string.buffer, usize::from(string.length & !1))?;
    Ok(bytes
        .chunks_exact(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
        .collect())
}

/// Upcases as `RtlUpcaseUnicodeChar` does for the characters drivers use.
fn upcase(unit: u16) -> u16 {
    char::from_u32(u32::from(unit))
        .and_then(|c| c.to_uppercase().next())
        .and_then(|c| u16::try_from(u32::from(c)).ok())
        .unwrap_or(unit)
}

fn compare_units(left: &[u16], right: &[u16], case_insensitive: bool) -> i64 {
    for (a, b) in left.iter().zip(right) {
        let (a, b) = if case_insensitive {
            (upcase(*a), upcase(*b))
        } else {
            (*a, *b)
        };
        if a != b {
            return i64::from(a) - i64::from(b);
        }
    }
    i64::try_from(left.len()).unwrap_or(0) - i64::try_from(right.len()).unwrap_or(0)
}

#[allow(clippy::cast_sign_loss)]
const fn signed(value: i64) -> u64 {
    value as u64
}

/// `RtlCompareUnicodeString(String1, String2, CaseInSensitive)`.
pub fn rtl_compare_unicode_string(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let (left, right) = (unicode_units(call, 0)?, unicode_units(call, 1)?);
    let insensitive = call.arg32(2)? & 0xff != 0;
    Ok(signed(compare_units(&left, &right, insensitive).signum()))
}

/// `RtlEqualUnicodeString(String1, String2, CaseInSensitive)`.
pub fn rtl_equal_unicode_string(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let (left, right) = (unicode_units(call, 0)?, unicode_units(call, 1)?);
    let insensitive = call.arg32(2)? & 0xff != 0;
    Ok(u64::from(
        left.len() == right.len() && compare_units(&left, &right, insensitive) == 0,
    ))
}

/// `RtlUnicodeStringToAnsiString(Destination, Source, AllocateDestinationString)`.
pub fn rtl_unicode_string_to_ansi_string(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let destination_at = call.arg(0)?;
    let units = unicode_units(call, 1)?;
    let bytes: Vec<u8> = units
        .iter()
        .map(|&unit| u8::try_from(unit).unwrap_or(b'?'))
        .collect();
    let allocate = call.arg32(2)? & 0xff != 0;
    store(call, destination_at, &bytes, 1, allocate)
}

/// `RtlAnsiStringToUnicodeString(Destination, Source, AllocateDestinationString)`.
pub fn rtl_ansi_string_to_unicode_string(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let destination_at = call.arg(0)?;
    let source = counted(call, 1)?;
    let ansi = cpu::read_vec(call.uc, source.buffer, usize::from(source.length))?;
    let bytes: Vec<u8> = ansi
        .iter()
        .flat_map(|&byte| u16::from(byte).to_le_bytes())
        .collect();
    let allocate = call.arg32(2)? & 0xff != 0;
    store(call, destination_at, &bytes, 2, allocate)
}

/// Stores converted text in a counted string, allocating its buffer (tag
/// `Strg`, paged pool, as the Rtl routines do) when asked to.
fn store(
    call: &mut Call<'_, '_>,
    destination_at: u64,
    bytes: &[u8],
    unit: u16,
    allocate: bool,
) -> Result<u64, Halt> {
    let Ok(length) = u16::try_from(bytes.len()) else {
        return Ok(u64::from(status::INVALID_PARAMETER));
    };
    let mut destination = cpu::read_counted(call.uc, destination_at)?;
    if allocate {
        let buffer = allocate_pool(
            call.uc,
            1,
            u64::from(length + unit),
            u32::from_le_bytes(*b"Strg"),
        )?;
        if buffer == 0 {
            return Ok(u64::from(status::INSUFFICIENT_RESOURCES));
        }
        destination.buffer = buffer;
        destination.maximum = length + unit;
    } else if length > destination.maximum {
        return Ok(u64::from(status::BUFFER_OVERFLOW));
    }
    cpu::write(call.uc, destination.buffer, bytes)?;
    if length + unit <= destination.maximum {
        cpu::write(
            call.uc,
            destination.buffer + u64::from(length),
            &vec![0; usize::from(unit)],
        )?;
    }
    destination.length = length;
    cpu::write_counted(call.uc, destination_at, destination)?;
    Ok(u64::from(status::SUCCESS))
}

/// `RtlFreeUnicodeString` / `RtlFreeAnsiString`: frees what the Rtl
/// conversion routines allocated.
pub fn rtl_free_string(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let string_at = call.arg(0)?;
    let mut string = cpu::read_counted(call.uc, string_at)?;
    if string.buffer != 0 {
        free_pool(call.uc, string.buffer)?;
    }
    string = CountedString {
        length: 0,
        maximum: 0,
        buffer: 0,
    };
    cpu::write_counted(call.uc, string_at, string)?;
    Ok(0)
}

fn length_arg(call: &Call<'_, '_>, index: usize) -> Result<usize, Halt> {
    let length = call.arg(index)?;
    usize::try_from(length)
        .ok()
        .filter(|length| *length <= 256 << 20)
        .ok_or(Halt::BadPointer(length))
}

/// `RtlCompareMemory(Source1, Source2, Length)`: bytes that match.
pub fn rtl_compare_memory(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let length = length_arg(call, 2)?;
    let left = cpu::read_vec(call.uc, call.arg(0)?, length)?;
    let right = cpu::read_vec(call.uc, call.arg(1)?, length)?;
    Ok(left.iter().zip(&right).take_while(|(a, b)| a == b).count() as u64)
}

/// `memcpy`, `memmove`, `RtlMoveMemory`, `RtlCopyMemory`(dest, src, n): the
/// destination; overlapping ranges copy as memmove does.
pub fn memmove(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let (destination, source) = (call.arg(0)?, call.arg(1)?);
    let length = length_arg(call, 2)?;
    let bytes = cpu::read_vec(call.uc, source, length)?;
    cpu::write(call.uc, destination, &bytes)?;
    Ok(destination)
}

/// `memset(dest, c, n)`.
pub fn memset(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let destination = call.arg(0)?;
    let value = u8::try_from(call.arg(1)? & 0xff).unwrap_or(0);
    let length = length_arg(call, 2)?;
    cpu::write(call.uc, destination, &vec![value; length])?;
    Ok(destination)
}

/// `RtlZeroMemory(Destination, Length)`.
pub fn rtl_zero_memory(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let destination = call.arg(0)?;
    let length = length_arg(call, 1)?;
    cpu::write(call.uc, destination, &vec![0; length])?;
    Ok(0)
}

/// `RtlFillMemory(Destination, Length, Fill)`.
pub fn rtl_fill_memory(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let destination = call.arg(0)?;
    let length = length_arg(call, 1)?;
    let value = u8::try_from(call.arg(2)? & 0xff).unwrap_or(0);
    cpu::write(call.uc, destination, &vec![value; length])?;
    Ok(0)
}

/// `memcmp(a, b, n)`.
pub fn memcmp(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let length = length_arg(call, 2)?;
    let left = cpu::read_vec(call.uc, call.arg(0)?, length)?;
    let right = cpu::read_vec(call.uc, call.arg(1)?, length)?;
    Ok(signed(match left.cmp(&right) {
        std::cmp::Ordering::Less => -1,
        std::cmp::Ordering::Equal => 0,
        std::cmp::Ordering::Greater => 1,
    }))
}

/// `memchr(s, c, n)`.
pub fn memchr(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let start = call.arg(0)?;
    let value = u8::try_from(call.arg(1)? & 0xff).unwrap_or(0);
    let length = length_arg(call, 2)?;
    let bytes = cpu::read_vec(call.uc, start, length)?;
    Ok(bytes
        .iter()
        .position(|&byte| byte == value)
        .map_or(0, |at| start + at as u64))
}

/// `strlen(s)`.
pub fn strlen(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    Ok(cpu::read_cstring(call.uc, call.arg(0)?, MAX_SCAN)?.len() as u64)
}

/// `wcslen(s)`.
pub fn wcslen(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    Ok(cpu::read_wstring(call.uc, call.arg(0)?, MAX_SCAN)?.len() as u64)
}

/// `strnlen(s, max)`.
pub fn strnlen(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let most = length_arg(call, 1)?;
    Ok(cpu::read_cstring(call.uc, call.arg(0)?, most)?.len() as u64)
}

/// `wcsnlen(s, max)`.
pub fn wcsnlen(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let most = length_arg(call, 1)?;
    Ok(cpu::read_wstring(call.uc, call.arg(0)?, most)?.len() as u64)
}

/// `strcpy(dest, src)`.
pub fn strcpy(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let destination = call.arg(0)?;
    let mut bytes = cpu::read_cstring(call.uc, call.arg(1)?, MAX_SCAN)?;
    bytes.push(0);
    cpu::write(call.uc, destination, &bytes)?;
    Ok(destination)
}

/// `wcscpy(dest, src)`.
pub fn wcscpy(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let destination = call.arg(0)?;
    let units = cpu::read_wstring(call.uc, call.arg(1)?, MAX_SCAN)?;
    let bytes: Vec<u8> = units
        .iter()
        .chain([&0])
        .flat_map(|unit| unit.to_le_bytes())
        .collect();
    cpu::write(call.uc, destination, &bytes)?;
    Ok(destination)
}

/// `strncpy(dest, src, n)`: pads with NULs, no terminator if it fills `n`.
pub fn strncpy(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let destination = call.arg(0)?;
    let count = length_arg(call, 2)?;
    let mut bytes = cpu::read_cstring(call.uc, call.arg(1)?, count)?;
    bytes.resize(count, 0);
    cpu::write(call.uc, destination, &bytes)?;
    Ok(destination)
}

/// `wcsncpy(dest, src, n)`.
pub fn wcsncpy(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let destination = call.arg(0)?;
    let count = length_arg(call, 2)?;
    let mut units = cpu::read_wstring(call.uc, call.arg(1)?, count)?;
    units.resize(count, 0);
    let bytes: Vec<u8> = units.iter().flat_map(|unit| unit.to_le_bytes()).collect();
    cpu::write(call.uc, destination, &bytes)?;
    Ok(destination)
}

fn compare_strings(
    call: &Call<'_, '_>,
    wide: bool,
    most: usize,
    insensitive: bool,
) -> Result<u64, Halt> {
    let read = |index| -> Result<Vec<u16>, Halt> {
        let pointer = call.arg(index)?;
        Ok(if wide {
            cpu::read_wstring(call.uc, pointer, most)?
        } else {
            cpu::read_cstring(call.uc, pointer, most)?
                .into_iter()
                .map(u16::from)
                .collect()
        })
    };
    let (left, right) = (read(0)?, read(1)?);
    let fold = |unit: u16| {
        if insensitive && unit < 0x80 {
            u16::from(u8::try_from(unit).unwrap_or(0).to_ascii_lowercase())
        } else {
            unit
        }
    };
    for (a, b) in left.iter().chain([&0]).zip(right.iter().chain([&0])) {
        let (a, b) = (fold(*a), fold(*b));
        if a != b {
            return Ok(signed(if a < b { -1 } else { 1 }));
        }
        if a == 0 {
            break;
        }
    }
    Ok(0)
}

/// `strcmp(a, b)`.
pub fn strcmp(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    compare_strings(call, false, MAX_SCAN, false)
}

/// `wcscmp(a, b)`.
pub fn wcscmp(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    compare_strings(call, true, MAX_SCAN, false)
}

/// `strncmp(a, b, n)`.
pub fn strncmp(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let most = length_arg(call, 2)?;
    compare_strings(call, false, most, false)
}

/// `wcsncmp(a, b, n)`.
pub fn wcsncmp(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let most = length_arg(call, 2)?;
    compare_strings(call, true, most, false)
}

/// `_stricmp(a, b)`.
pub fn stricmp(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    compare_strings(call, false, MAX_SCAN, true)
}

/// `_wcsicmp(a, b)`.
pub fn wcsicmp(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    compare_strings(call, true, MAX_SCAN, true)
}

/// `strchr(s, c)`.
pub fn strchr(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let start = call.arg(0)?;
    let value = u8::try_from(call.arg(1)? & 0xff).unwrap_or(0);
    let bytes = cpu::read_cstring(call.uc, start, MAX_SCAN)?;
    if value == 0 {
        return Ok(start + bytes.len() as u64);
    }
    Ok(bytes
        .iter()
        .position(|&byte| byte == value)
        .map_or(0, |at| start + at as u64))
}

/// `wcschr(s, c)`.
pub fn wcschr(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let start = call.arg(0)?;
    let value = u16::try_from(call.arg(1)? & 0xffff).unwrap_or(0);
    let units = cpu::read_wstring(call.uc, start, MAX_SCAN)?;
    if value == 0 {
        return Ok(start + 2 * units.len() as u64);
    }
    Ok(units
        .iter()
        .position(|&unit| unit == value)
        .map_or(0, |at| start + 2 * at as u64))
}

/// `strstr(haystack, needle)`.
pub fn strstr(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let start = call.arg(0)?;
    let haystack = cpu::read_cstring(call.uc, start, MAX_SCAN)?;
    let needle = cpu::read_cstring(call.uc, call.arg(1)?, MAX_SCAN)?;
    if needle.is_empty() {
        return Ok(start);
    }
    Ok(haystack
        .windows(needle.len())
        .position(|window| window == needle.as_slice())
        .map_or(0, |at| start + at as u64))
}
