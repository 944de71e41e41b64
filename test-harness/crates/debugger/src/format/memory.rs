//! The `d*` memory displays. Each line starts at the address of its first
//! element (lines follow the start address, not an alignment), then two
//! spaces, then the elements; memory that cannot be read shows as question
//! marks of the element's width (`????????` for a dword, `??` and `?` in
//! `db`'s columns), as in kd's output of unmapped pages.

use std::fmt::Write as _;

use super::address;

/// Reads `size` bytes at an address; `None` when they are not mapped.
pub type Reader<'a> = &'a dyn Fn(u64, usize) -> Option<Vec<u8>>;

/// One of kd's memory display commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpFormat {
    /// `db`: bytes and ASCII.
    Bytes,
    /// `dw`: words.
    Words,
    /// `dd`: dwords.
    Dwords,
    /// `dq`: qwords, each with a backtick.
    Qwords,
    /// `dp`: pointers (`dd` on x86, `dq` on x64).
    Pointers,
    /// `dc`: dwords and ASCII.
    DwordsChars,
    /// `da`: an ASCII string.
    Ascii,
    /// `du`: a UTF-16 string.
    Unicode,
}

/// A display's text and where the next bare `d` continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dump {
    /// The lines, each ending in `\n`.
    pub text: String,
    /// The address after the last element shown.
    pub next: u64,
}

/// Characters on one `da`/`du` line (kd's output shows 32 and continues at
/// `+0x20` or `+0x40`).
const STRING_LINE: u64 = 32;

/// Characters `da`/`du` show without an `L` count. Not checked against kd.
pub const DEFAULT_STRING_CHARS: u64 = 0x100;

impl DumpFormat {
    /// The format of a command name: `db dw dd dq dp dc da du` (`dD` is a
    /// double-precision display and not one of these).
    #[must_use]
    pub(crate) fn from_command(name: &str) -> Option<Self> {
        Some(match name {
            "db" => Self::Bytes,
            "dw" => Self::Words,
            "dd" => Self::Dwords,
            "dq" => Self::Qwords,
            "dp" => Self::Pointers,
            "dc" => Self::DwordsChars,
            "da" => Self::Ascii,
            "du" => Self::Unicode,
            _ => return None,
        })
    }

    /// Bytes per element (per character for `da`/`du`).
    #[must_use]
    pub const fn element_size(self, pointer_size: u64) -> u64 {
        match self {
            Self::Bytes | Self::Ascii => 1,
            Self::Words | Self::Unicode => 2,
            Self::Dwords | Self::DwordsChars => 4,
            Self::Qwords => 8,
            Self::Pointers => pointer_size,
        }
    }

    /// kd's count without `L`: 0x80 bytes of elements (`dd` 0x20, `db`
    /// 0x80, `dq` 0x10), and [`DEFAULT_STRING_CHARS`] for strings.
    #[must_use]
    pub(crate) const fn default_count(self, pointer_size: u64) -> u64 {
        match self {
            Self::Ascii | Self::Unicode => DEFAULT_STRING_CHARS,
            _ => 0x80 / self.element_size(pointer_size),
        }
    }

    const fn per_line(self, pointer_size: u64) -> u64 {
        16 / self.element_size(pointer_size)
    }
}

/// Displays `count` elements (characters for `da`/`du`) from `start`.
#[must_use]
pub fn dump(
    format: DumpFormat,
    start: u64,
    count: u64,
    pointer_size: u64,
    read: Reader<'_>,
) -> Dump {
    let pointer_size = if pointer_size == 4 { 4 } else { 8 };
    match format {
        DumpFormat::Ascii | DumpFormat::Unicode => string(format, start, count, pointer_size, read),
        _ => numbers(format, start, count, pointer_size, read),
    }
}

const fn wrap(value: u64, pointer_size: u64) -> u64 {
    if pointer_size == 4 {
        value & 0xffff_ffff
    } else {
        value
    }
}

fn element(address: u64, size: u64, read: Reader<'_>) -> Option<Vec<u8>> {
    let size = usize::try_from(size).unwrap_or(8);
    read(address, size).filter(|bytes| bytes.len() == size)
}

fn printable(byte: u64) -> char {
    match u8::try_from(byte) {
        Ok(byte @ 0x20..=0x7e) => char::from(byte),
        _ => '.',
    }
}

fn numbers(
    format: DumpFormat,
    start: u64,
    count: u64,
    pointer_size: u64,
    read: Reader<'_>,
) -> Dump {
    let size = format.element_size(pointer_size);
    let per_line = format.per_line(pointer_size);
    let mut text = String::new();
    let mut done = 0u64;
    while done < count {
        let line_start = wrap(start.wrapping_add(done.wrapping_mul(size)), pointer_size);
        let on_line = per_line.min(count - done);
        let mut hex = String::new();
        let mut chars = String::new();
        for index in 0..on_line {
            let at = wrap(line_start.wrapping_add(index * size), pointer_size);
            let bytes = element(at, size, read);
            if index > 0 {
                hex.push(if format == DumpFormat::Bytes && index == 8 {
                    '-'
                } else {
                    ' '
                });
            }
            if let Some(bytes) = &bytes {
                let value = bytes.iter().rev().fold(0u64, |v, &b| v << 8 | u64::from(b));
                let _ = match size {
                    1 => write!(hex, "{value:02x}"),
                    2 => write!(hex, "{value:04x}"),
                    4 => write!(hex, "{value:08x}"),
                    _ => write!(hex, "{:08x}`{:08x}", value >> 32, value & 0xffff_ffff),
                };
                chars.extend(bytes.iter().map(|&b| printable(u64::from(b))));
            } else {
                hex.push_str(match size {
                    1 => "??",
                    2 => "????",
                    4 => "????????",
                    _ => "????????`????????",
                });
                chars.extend(std::iter::repeat_n('?', usize::try_from(size).unwrap_or(8)));
            }
        }
        let line = match format {
            DumpFormat::Bytes => {
                format!("{}  {hex:<47}  {chars}", address(line_start, pointer_size))
            }
            DumpFormat::DwordsChars => {
                format!("{}  {hex:<35}  {chars}", address(line_start, pointer_size))
            }
            _ => format!("{}  {hex}", address(line_start, pointer_size)),
        };
        text.push_str(&line);
        text.push('\n');
        done += on_line;
    }
    Dump {
        text,
        next: wrap(start.wrapping_add(count.wrapping_mul(size)), pointer_size),
    }
}

fn string(format: DumpFormat, start: u64, count: u64, pointer_size: u64, read: Reader<'_>) -> Dump {
    let size = format.element_size(pointer_size);
    let mut text = String::new();
    let mut at = wrap(start, pointer_size);
    let mut left = count;
    let mut first = true;
    while left > 0 {
        let line_start = at;
        let mut line = String::new();
        let mut stop = false;
        while (line.len() as u64) < STRING_LINE && left > 0 {
            let Some(bytes) = element(at, size, read) else {
                if first && line.is_empty() {
                    let _ = writeln!(text, "{}  ????????", address(line_start, pointer_size));
                    return Dump { text, next: at };
                }
                stop = true;
                break;
            };
            let value = bytes.iter().rev().fold(0u64, |v, &b| v << 8 | u64::from(b));
            if value == 0 {
                stop = true;
                break;
            }
            line.push(printable(value));
            at = wrap(at.wrapping_add(size), pointer_size);
            left -= 1;
        }
        let _ = writeln!(text, "{}  \"{line}\"", address(line_start, pointer_size));
        first = false;
        if stop {
            break;
        }
    }
    Dump { text, next: at }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Memory with the given bytes mapped and nothing else.
    fn memory(regions: &[(u64, &[u8])]) -> impl Fn(u64, usize) -> Option<Vec<u8>> + use<> {
        let mut map = HashMap::new();
        for &(base, bytes) in regions {
            for (offset, &byte) in (0u64..).zip(bytes) {
                map.insert(base + offset, byte);
            }
        }
        move |address: u64, size: usize| {
            (0..size as u64)
                .map(|offset| map.get(&address.wrapping_add(offset)).copied())
                .collect()
        }
    }

    fn show(
        format: DumpFormat,
        start: u64,
        count: u64,
        pointer_size: u64,
        read: Reader<'_>,
    ) -> String {
        dump(format, start, count, pointer_size, read).text
    }

    #[test]
    fn command_names_sizes_and_defaults() {
        assert_eq!(DumpFormat::from_command("dd"), Some(DumpFormat::Dwords));
        assert_eq!(DumpFormat::from_command("du"), Some(DumpFormat::Unicode));
        assert_eq!(DumpFormat::from_command("dD"), None);
        assert_eq!(DumpFormat::Dwords.default_count(4), 0x20);
        assert_eq!(DumpFormat::Bytes.default_count(4), 0x80);
        assert_eq!(DumpFormat::Qwords.default_count(4), 0x10);
        assert_eq!(DumpFormat::Words.default_count(8), 0x40);
        assert_eq!(DumpFormat::Pointers.default_count(4), 0x20);
        assert_eq!(DumpFormat::Pointers.default_count(8), 0x10);
        assert_eq!(DumpFormat::Unicode.default_count(8), DEFAULT_STRING_CHARS);
        assert_eq!(DumpFormat::Pointers.element_size(8), 8);
    }

    #[test]
    fn dd_walkthrough_line() {
        let read = memory(&[(0x82b3_7df4, &0x6463_6261u32.to_le_bytes())]);
        assert_eq!(
            show(DumpFormat::Dwords, 0x82b3_7df4, 1, 4, &read),
            "82b37df4  64636261\n"
        );
        let dump = dump(DumpFormat::Dwords, 0x82b3_7df4, 2, 4, &read);
        assert_eq!(dump.text, "82b37df4  64636261 ????????\n");
        assert_eq!(dump.next, 0x82b3_7dfc);
    }

    #[test]
    fn dd_default_is_eight_lines() {
        let bytes: Vec<u8> = (0u8..0x80).collect();
        let read = memory(&[(0x1000, &bytes)]);
        let text = show(DumpFormat::Dwords, 0x1000, 0x20, 4, &read);
        assert_eq!(text.lines().count(), 8);
        assert_eq!(
            text.lines().next(),
            Some("00001000  03020100 07060504 0b0a0908 0f0e0d0c")
        );
        assert_eq!(
            text.lines().last(),
            Some("00001070  73727170 77767574 7b7a7978 7f7e7d7c")
        );
    }

    #[test]
    fn dd_unmapped_x64() {
        // Microsoft's "Address and Address Range Syntax" page.
        let read = memory(&[]);
        assert_eq!(
            show(DumpFormat::Dwords, 0x409, 4, 8, &read),
            "00000000`00000409  ???????? ???????? ???????? ????????\n"
        );
    }

    #[test]
    fn db_lines() {
        // A public session: `eb rsp 11 22 33 44` then `db rsp L4`.
        let read = memory(&[(0x14_fe08, &[0x11, 0x22, 0x33, 0x44])]);
        assert_eq!(
            show(DumpFormat::Bytes, 0x14_fe08, 4, 8, &read),
            "00000000`0014fe08  11 22 33 44                                      .\"3D\n"
        );
        // A heap tail: two readable bytes, then a guard page.
        let read = memory(&[(0x07f3_cffe, &[0xad, 0xa7])]);
        let text = show(DumpFormat::Bytes, 0x07f3_cffe, 0x20, 4, &read);
        assert_eq!(
            text,
            "07f3cffe  ad a7 ?? ?? ?? ?? ?? ??-?? ?? ?? ?? ?? ?? ?? ??  ..??????????????\n\
             07f3d00e  ?? ?? ?? ?? ?? ?? ?? ??-?? ?? ?? ?? ?? ?? ?? ??  ????????????????\n"
        );
        let read = memory(&[(
            0xffff_ae01_5ff9_7664,
            &[
                0x00, 0x80, 0xbc, 0xff, 0x18, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x50, 0xe0, 0x51,
            ],
        )]);
        assert_eq!(
            show(DumpFormat::Bytes, 0xffff_ae01_5ff9_7664, 16, 8, &read),
            "ffffae01`5ff97664  00 80 bc ff 18 00 00 00-00 00 00 00 08 50 e0 51  .............P.Q\n"
        );
    }

    #[test]
    fn dw_and_dq_lines() {
        let mz = [
            0x4d, 0x5a, 0x90, 0, 3, 0, 0, 0, 4, 0, 0, 0, 0xff, 0xff, 0, 0,
        ];
        let read = memory(&[(0xffff_f801_1234_5000, &mz)]);
        assert_eq!(
            show(DumpFormat::Words, 0xffff_f801_1234_5000, 8, 8, &read),
            "fffff801`12345000  5a4d 0090 0003 0000 0004 0000 ffff 0000\n"
        );
        assert_eq!(
            show(DumpFormat::Qwords, 0xffff_f801_1234_5000, 2, 8, &read),
            "fffff801`12345000  00000003`00905a4d 0000ffff`00000004\n"
        );
        assert_eq!(
            show(DumpFormat::Pointers, 0xffff_f801_1234_5000, 3, 8, &read),
            "fffff801`12345000  00000003`00905a4d 0000ffff`00000004\n\
             fffff801`12345010  ????????`????????\n"
        );
        assert_eq!(
            show(
                DumpFormat::Pointers,
                0x1000,
                1,
                4,
                &memory(&[(0x1000, &[1, 0, 0, 0])])
            ),
            "00001000  00000001\n"
        );
    }

    #[test]
    fn dc_lines() {
        // A public Win7 x86 session: `dc 858c9ec0 LA`.
        let words: [u32; 10] = [
            0x0408_0008,
            0xee65_7645,
            0,
            0x40,
            0,
            0,
            1,
            1,
            0,
            0x0008_000c,
        ];
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let read = memory(&[(0x858c_9ec0, &bytes)]);
        assert_eq!(
            show(DumpFormat::DwordsChars, 0x858c_9ec0, 10, 4, &read),
            "858c9ec0  04080008 ee657645 00000000 00000040  ....Eve.....@...\n\
             858c9ed0  00000000 00000000 00000001 00000001  ................\n\
             858c9ee0  00000000 0008000c                    ........\n"
        );
    }

    #[test]
    fn strings() {
        let read = memory(&[(0xb1db_9890, b"unconditional_conditions@flare-on.com\0")]);
        assert_eq!(
            show(DumpFormat::Ascii, 0xb1db_9890, 0x100, 4, &read),
            "b1db9890  \"unconditional_conditions@flare-o\"\nb1db98b0  \"n.com\"\n"
        );
        // Exactly 32 characters: kd shows an empty line for the NUL.
        let read = memory(&[(0x1000, b"0defcon00defcon00defcon00defcon0\0")]);
        assert_eq!(
            show(DumpFormat::Ascii, 0x1000, 0x100, 4, &read),
            "00001000  \"0defcon00defcon00defcon00defcon0\"\n00001020  \"\"\n"
        );
        let read = memory(&[(0x1000, b"a\nb\0")]);
        assert_eq!(
            show(DumpFormat::Ascii, 0x1000, 0x100, 4, &read),
            "00001000  \"a.b\"\n"
        );
        assert_eq!(
            show(DumpFormat::Ascii, 0x1000, 1, 4, &read),
            "00001000  \"a\"\n"
        );
        let wide: Vec<u8> = "\\REGISTRY\\MACHINE\\SYSTEM\\ControlSet001\\services\\Sample\0"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let read = memory(&[(0x91c2_6130, &wide)]);
        let dump = dump(DumpFormat::Unicode, 0x91c2_6130, 0x100, 4, &read);
        assert_eq!(
            dump.text,
            "91c26130  \"\\REGISTRY\\MACHINE\\SYSTEM\\Control\"\n91c26170  \"Set001\\services\\Sample\"\n"
        );
        assert_eq!(dump.next, 0x91c2_6130 + 2 * 54);
        assert_eq!(
            show(DumpFormat::Unicode, 0x5000, 0x100, 4, &read),
            "00005000  ????????\n"
        );
        // Unmapped after some characters: the line ends there.
        let read = memory(&[(0x2000, b"abc")]);
        assert_eq!(
            show(DumpFormat::Ascii, 0x2000, 0x100, 4, &read),
            "00002000  \"abc\"\n"
        );
    }

    #[test]
    fn zero_count_shows_nothing_and_x86_wraps() {
        let read = memory(&[]);
        assert_eq!(show(DumpFormat::Dwords, 0x1000, 0, 4, &read), "");
        let dump = dump(DumpFormat::Dwords, 0xffff_fffc, 2, 4, &read);
        assert_eq!(dump.text, "fffffffc  ???????? ????????\n");
        assert_eq!(dump.next, 4);
    }
}
