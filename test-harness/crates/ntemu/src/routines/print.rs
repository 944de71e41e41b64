//! `DbgPrint` and the kernel's `printf` family: the Microsoft C runtime's
//! format language with the kernel's extensions.
//!
//! The extensions are `%wZ` for a `UNICODE_STRING`, `%Z` for an
//! `ANSI_STRING` and `%ws`/`%S` for wide text. DbgPrint sends at most 512
//! bytes per call, as Windows does.

use super::Call;
use crate::cpu::{self, Uc};
use crate::machine::Halt;
use harness_core::arch::Arch;
use harness_core::events::Event;

/// The most text one DbgPrint call sends (Windows: 512 bytes, NUL included).
pub(crate) const DBGPRINT_LIMIT: usize = 511;

/// The most digits an integer has (u64 in octal: 22), beyond the budget a
/// capped precision keeps, so that the shown prefix is unchanged.
const MAX_DIGITS: usize = 24;

/// The most fractional digits a float is formatted with.
const MAX_FLOAT_PRECISION: usize = 1000;

/// Where the formatter takes its arguments: consecutive stack slots (or a
/// `va_list`, which points at the same layout).
pub(crate) struct Slots<'a, 'b> {
    uc: &'a Uc<'b>,
    next: u64,
    arch: Arch,
}

impl<'a, 'b> Slots<'a, 'b> {
    /// Arguments starting at `address`.
    #[must_use]
    pub fn new(uc: &'a Uc<'b>, address: u64) -> Self {
        Self {
            uc,
            next: address,
            arch: cpu::arch(uc),
        }
    }

    /// The next argument of `bits` bits (a 64-bit one takes two x86 slots).
    fn take(&mut self, bits: u32) -> Result<u64, Halt> {
        let value = match self.arch {
            Arch::X64 => {
                let value = cpu::read_u64(self.uc, self.next)?;
                self.next += 8;
                value
            }
            Arch::X86 if bits == 64 => {
                let value = cpu::read_u64(self.uc, self.next)?;
                self.next += 8;
                value
            }
            Arch::X86 => {
                let value = u64::from(cpu::read_u32(self.uc, self.next)?);
                self.next += 4;
                value
            }
        };
        Ok(if bits >= 64 {
            value
        } else {
            value & ((1 << bits) - 1)
        })
    }
}

/// One conversion's parsed form: printf's flags are booleans.
#[derive(Default)]
#[allow(clippy::struct_excessive_bools)]
struct Spec {
    left: bool,
    plus: bool,
    space: bool,
    alternate: bool,
    zero: bool,
    width: Option<usize>,
    precision: Option<usize>,
    /// Integer size in bits (0: default).
    bits: u32,
    /// `h` (narrow) or `l`/`w` (wide) for strings and characters.
    wide: Option<bool>,
}

/// Formats `format` (bytes of a narrow string, or UTF-16 units of a wide
/// one) with arguments from `slots`, stopping at `limit` characters.
///
/// `wide_format`: the format is a wide string, where `%s` means wide text.
///
/// # Errors
/// An argument or string is not readable.
#[allow(clippy::too_many_lines)] // printf's grammar, in order
pub(crate) fn format(
    uc: &Uc<'_>,
    format: &[u16],
    slots: &mut Slots<'_, '_>,
    wide_format: bool,
    limit: usize,
) -> Result<String, Halt> {
    let mut out = String::new();
    let mut chars = format
        .iter()
        .map(|&unit| char::from_u32(u32::from(unit)).unwrap_or('?'))
        .peekable();
    let pointer_bits = u32::try_from(cpu::arch(uc).pointer_size() * 8).unwrap_or(64);
    while let Some(c) = chars.next() {
        if out.chars().count() >= limit {
            break;
        }
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&flag) = chars.peek() {
            match flag {
                '-' => spec.left = true,
                '+' => spec.plus = true,
                ' ' => spec.space = true,
                '#' => spec.alternate = true,
                '0' => spec.zero = true,
                _ => break,
            }
            chars.next();
        }
        if chars.peek() == Some(&'*') {
            chars.next();
            // A negative width means left alignment.
            let signed = i64::from(int32(slots.take(32)?));
            spec.left |= signed < 0;
            spec.width = Some(usize::try_from(signed.unsigned_abs()).unwrap_or(0));
        } else {
            spec.width = number(&mut chars);
        }
        if chars.peek() == Some(&'.') {
            chars.next();
            if chars.peek() == Some(&'*') {
                chars.next();
                // A negative precision counts as none.
                spec.precision = usize::try_from(int32(slots.take(32)?)).ok();
            } else {
                spec.precision = Some(number(&mut chars).unwrap_or(0));
            }
        }
        // Size prefixes.
        loop {
            match chars.peek() {
                Some('h') => {
                    chars.next();
                    if chars.peek() == Some(&'h') {
                        chars.next();
                        spec.bits = 8;
                    } else {
                        spec.bits = 16;
                    }
                    spec.wide = Some(false);
                }
                Some('l') => {
                    chars.next();
                    if chars.peek() == Some(&'l') {
                        chars.next();
                        spec.bits = 64;
                    } else {
                        spec.bits = 32;
                        spec.wide = Some(true);
                    }
                }
                Some('w') => {
                    chars.next();
                    spec.wide = Some(true);
                }
                Some('L') => {
                    chars.next();
                }
                Some('j') => {
                    chars.next();
                    spec.bits = 64;
                }
                Some('z' | 't') => {
                    chars.next();
                    spec.bits = pointer_bits;
                }
                Some('I') => {
                    chars.next();
                    let digits: String = chars.clone().take(2).collect();
                    if digits == "64" {
                        chars.next();
                        chars.next();
                        spec.bits = 64;
                    } else if digits == "32" {
                        chars.next();
                        chars.next();
                        spec.bits = 32;
                    } else {
                        spec.bits = pointer_bits;
                    }
                }
                _ => break,
            }
        }
        let Some(conversion) = chars.next() else {
            break;
        };
        let budget = limit.saturating_sub(out.chars().count());
        // Only the first `budget` characters are ever sent, so no field is
        // formatted wider than that (zeros beyond it are never seen): a
        // precision of 2^31 must not build gigabytes. "Any single call to
        // DbgPrint will only transmit 512 bytes" (Microsoft's DbgPrint page,
        // wdm/nf-wdm-dbgprint).
        spec.precision = spec
            .precision
            .map(|precision| precision.min(budget + MAX_DIGITS));
        let text = match conversion {
            '%' => "%".to_owned(),
            'd' | 'i' => {
                let bits = if spec.bits == 0 { 32 } else { spec.bits };
                let value = sign_extend(slots.take(bits)?, bits);
                let digits = with_precision(value.unsigned_abs().to_string(), spec.precision);
                let sign = if value < 0 {
                    "-"
                } else if spec.plus {
                    "+"
                } else if spec.space {
                    " "
                } else {
                    ""
                };
                pad_number(sign, &digits, &spec, budget)
            }
            'u' | 'x' | 'X' | 'o' => {
                let bits = if spec.bits == 0 { 32 } else { spec.bits };
                let value = slots.take(bits)?;
                let (digits, prefix) = match conversion {
                    'u' => (value.to_string(), ""),
                    'x' => (
                        format!("{value:x}"),
                        if spec.alternate && value != 0 {
                            "0x"
                        } else {
                            ""
                        },
                    ),
                    'X' => (
                        format!("{value:X}"),
                        if spec.alternate && value != 0 {
                            "0X"
                        } else {
                            ""
                        },
                    ),
                    _ => (format!("{value:o}"), if spec.alternate { "0" } else { "" }),
                };
                pad_number(
                    prefix,
                    &with_precision(digits, spec.precision),
                    &spec,
                    budget,
                )
            }
            'p' => {
                let value = slots.take(pointer_bits)?;
                let digits = usize::try_from(pointer_bits / 4).unwrap_or(16);
                pad(&format!("{value:0digits$X}"), &spec, budget)
            }
            'c' | 'C' => {
                let value = slots.take(32)?;
                let unit = u32::try_from(value & 0xffff).unwrap_or(0);
                pad(
                    &char::from_u32(unit).unwrap_or('?').to_string(),
                    &spec,
                    budget,
                )
            }
            's' | 'S' => {
                let pointer = slots.take(pointer_bits)?;
                // In a narrow format `%s` is narrow and `%S` wide; a wide
                // format swaps them; `h`, `l` and `w` say it outright.
                let wide = spec.wide.unwrap_or((conversion == 'S') != wide_format);
                let most = spec.precision.unwrap_or(usize::MAX).min(budget.max(1));
                let text = read_text(uc, pointer, wide, most)?;
                pad(&text, &spec, budget)
            }
            'Z' => {
                let pointer = slots.take(pointer_bits)?;
                let string = if pointer == 0 {
                    None
                } else {
                    Some(cpu::read_counted(uc, pointer)?)
                };
                // "(null)" for a NULL string or Buffer, as the C runtime's
                // output.c prints a counted string.
                let text = match string.filter(|string| string.buffer != 0) {
                    None => "(null)".to_owned(),
                    Some(string) if spec.wide == Some(true) => cpu::utf16_text(&cpu::read_vec(
                        uc,
                        string.buffer,
                        usize::from(string.length & !1),
                    )?),
                    Some(string) => {
                        let bytes = cpu::read_vec(uc, string.buffer, usize::from(string.length))?;
                        bytes.iter().map(|&byte| char::from(byte)).collect()
                    }
                };
                pad(&text, &spec, budget)
            }
            'n' => {
                // Never written: the kernel's printf has %n disabled.
                let _ = slots.take(pointer_bits)?;
                String::new()
            }
            'e' | 'E' | 'f' | 'F' | 'g' | 'G' | 'a' | 'A' => {
                let value = f64::from_bits(slots.take(64)?);
                // Microsoft's DbgPrint page (wdm/nf-wdm-dbgprint): "does not
                // support any of the floating point types"; what Windows
                // prints instead is not documented, so they are formatted.
                // Capped below core's float formatting limits (its `e`
                // buffer is 1024 digits; precisions past u16 panic): a
                // double's exact expansion ends within 1074 fractional
                // digits and at most 767 significant ones, so past the
                // budget the digits cut off never change what is shown.
                let wanted = spec.precision.unwrap_or(6);
                let precision = wanted.min(MAX_FLOAT_PRECISION);
                // The digits past the cap are zeros (the expansion has
                // ended): written out, as far as the budget reaches.
                let zeros = if value.is_finite() {
                    "0".repeat((wanted - precision).min(budget))
                } else {
                    String::new()
                };
                let text = match conversion {
                    'e' | 'E' => {
                        let text = format!("{value:.precision$e}");
                        match text.split_once('e') {
                            Some((digits, exponent)) => format!("{digits}{zeros}e{exponent}"),
                            None => text,
                        }
                    }
                    _ => format!("{value:.precision$}{zeros}"),
                };
                pad(&text, &spec, budget)
            }
            other => format!("%{other}"),
        };
        out.extend(text.chars().take(budget));
    }
    Ok(out.chars().take(limit).collect())
}

/// The low 32 bits of an argument slot as a C `int`.
fn int32(value: u64) -> i32 {
    u32::try_from(value & 0xffff_ffff)
        .unwrap_or(0)
        .cast_signed()
}

fn number(chars: &mut std::iter::Peekable<impl Iterator<Item = char>>) -> Option<usize> {
    let mut value: Option<usize> = None;
    while let Some(digit) = chars.peek().and_then(|c| c.to_digit(10)) {
        chars.next();
        value = Some(
            value
                .unwrap_or(0)
                .saturating_mul(10)
                .saturating_add(digit as usize),
        );
    }
    value
}

#[allow(clippy::cast_possible_wrap)]
const fn sign_extend(value: u64, bits: u32) -> i64 {
    if bits >= 64 {
        value as i64
    } else {
        let shift = 64 - bits;
        ((value << shift) as i64) >> shift
    }
}

fn with_precision(digits: String, precision: Option<usize>) -> String {
    match precision {
        Some(0) if digits == "0" => String::new(),
        Some(precision) if digits.len() < precision => {
            format!("{}{digits}", "0".repeat(precision - digits.len()))
        }
        _ => digits,
    }
}

/// Pads to the width; only the first `budget` characters of the padded text
/// are produced (a huge width never builds a huge string).
fn pad(text: &str, spec: &Spec, budget: usize) -> String {
    let length = text.chars().count();
    let width = spec.width.unwrap_or(0);
    if length >= width {
        return text.chars().take(budget).collect();
    }
    let fill = (width - length).min(budget);
    let mut out = String::new();
    if spec.left {
        out.extend(text.chars().take(budget));
        out.extend(std::iter::repeat_n(
            ' ',
            fill.min(budget.saturating_sub(length)),
        ));
    } else {
        out.extend(std::iter::repeat_n(' ', fill));
        out.extend(text.chars().take(budget - fill));
    }
    out
}

fn pad_number(prefix: &str, digits: &str, spec: &Spec, budget: usize) -> String {
    let width = spec.width.unwrap_or(0);
    let length = prefix.len() + digits.len();
    if spec.zero && !spec.left && spec.precision.is_none() && length < width {
        let zeros = (width - length).min(budget);
        let mut out: String = prefix.chars().take(budget).collect();
        out.extend(std::iter::repeat_n(
            '0',
            zeros.min(budget.saturating_sub(out.len())),
        ));
        out.extend(digits.chars().take(budget.saturating_sub(out.len())));
        return out;
    }
    pad(&format!("{prefix}{digits}"), spec, budget)
}

fn read_text(uc: &Uc<'_>, pointer: u64, wide: bool, most: usize) -> Result<String, Halt> {
    if pointer == 0 {
        return Ok("(null)".to_owned());
    }
    Ok(if wide {
        String::from_utf16_lossy(&cpu::read_wstring(uc, pointer, most)?)
    } else {
        cpu::read_cstring(uc, pointer, most)?
            .iter()
            .map(|&byte| char::from(byte))
            .collect()
    })
}

/// A narrow format string as UTF-16 units (each byte one character, as
/// the C runtime reads them).
fn narrow(uc: &Uc<'_>, pointer: u64) -> Result<Vec<u16>, Halt> {
    Ok(cpu::read_cstring(uc, pointer, 4096)?
        .iter()
        .map(|&byte| u16::from(byte))
        .collect())
}

fn debug_print(call: &mut Call<'_, '_>, format_at: usize, args: u64) -> Result<u64, Halt> {
    let format_text = narrow(call.uc, call.arg(format_at)?)?;
    let text = {
        let mut slots = Slots::new(call.uc, args);
        format(call.uc, &format_text, &mut slots, false, DBGPRINT_LIMIT)?
    };
    let phase = call.kernel().phase;
    call.emit(Event::DebugPrint { phase, text })?;
    Ok(0) // STATUS_SUCCESS
}

/// `DbgPrint(Format, ...)`.
pub(crate) fn dbg_print(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let args = call.slot_address(1);
    debug_print(call, 0, args)
}

/// `DbgPrintEx(ComponentId, Level, Format, ...)`.
pub(crate) fn dbg_print_ex(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let args = call.slot_address(3);
    debug_print(call, 2, args)
}

/// `vDbgPrintEx(ComponentId, Level, Format, arglist)`.
pub(crate) fn v_dbg_print_ex(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let args = call.arg(3)?;
    debug_print(call, 2, args)
}

/// `vDbgPrintExWithPrefix(Prefix, ComponentId, Level, Format, arglist)`.
pub(crate) fn v_dbg_print_ex_with_prefix(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let prefix = cpu::read_cstring(call.uc, call.arg(0)?, 256)?;
    let format_text = narrow(call.uc, call.arg(3)?)?;
    let args = call.arg(4)?;
    let text = {
        let mut slots = Slots::new(call.uc, args);
        format(call.uc, &format_text, &mut slots, false, DBGPRINT_LIMIT)?
    };
    let phase = call.kernel().phase;
    let text = format!("{}{text}", String::from_utf8_lossy(&prefix))
        .chars()
        .take(DBGPRINT_LIMIT)
        .collect();
    call.emit(Event::DebugPrint { phase, text })?;
    Ok(0)
}

/// Writes formatted text into a caller's buffer of `count` characters,
/// as `_snprintf` does: no terminator when it does not fit, and -1.
fn print_into(
    call: &mut Call<'_, '_>,
    buffer: u64,
    count: Option<u64>,
    text: &str,
    wide: bool,
) -> Result<u64, Halt> {
    let units: Vec<u16> = if wide {
        text.encode_utf16().collect()
    } else {
        text.chars()
            .map(|c| {
                u16::try_from(u32::from(c)).map_or_else(|_| u16::from(b'?'), |unit| unit & 0xff)
            })
            .collect()
    };
    let size = if wide { 2 } else { 1 };
    let length = units.len() as u64;
    let (written, result) = match count {
        Some(count) if length >= count => (count, u64::from(u32::MAX)), // -1
        _ => (length, length),
    };
    let mut bytes: Vec<u8> = units[..usize::try_from(written).unwrap_or(0)]
        .iter()
        .flat_map(|&unit| {
            if wide {
                unit.to_le_bytes().to_vec()
            } else {
                vec![u8::try_from(unit & 0xff).unwrap_or(b'?')]
            }
        })
        .collect();
    if count.is_none_or(|count| length < count) {
        bytes.extend(std::iter::repeat_n(0, size));
    }
    cpu::write(call.uc, buffer, &bytes)?;
    Ok(result)
}

fn printf(call: &mut Call<'_, '_>, wide: bool, counted: bool, va_list: bool) -> Result<u64, Halt> {
    let buffer = call.arg(0)?;
    let (count, format_at) = if counted {
        (Some(call.arg(1)?), 2)
    } else {
        (None, 1)
    };
    let format_pointer = call.arg(format_at)?;
    let format_text = if wide {
        cpu::read_wstring(call.uc, format_pointer, 4096)?
    } else {
        narrow(call.uc, format_pointer)?
    };
    let args = if va_list {
        call.arg(format_at + 1)?
    } else {
        call.slot_address(format_at + 1)
    };
    // A caller's buffer bounds the text; an uncounted one still stops at 64 KiB.
    let limit = count.map_or(65_536, |count| {
        usize::try_from(count).unwrap_or(65_536).min(65_536) + 1
    });
    let text = {
        let mut slots = Slots::new(call.uc, args);
        format(call.uc, &format_text, &mut slots, wide, limit)?
    };
    print_into(call, buffer, count, &text, wide)
}

/// `_snprintf(buffer, count, format, ...)`.
pub(crate) fn snprintf(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    printf(call, false, true, false)
}

/// `_snwprintf(buffer, count, format, ...)`.
pub(crate) fn snwprintf(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    printf(call, true, true, false)
}

/// `sprintf(buffer, format, ...)`.
pub(crate) fn sprintf(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    printf(call, false, false, false)
}

/// `swprintf(buffer, format, ...)`.
pub(crate) fn swprintf(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    printf(call, true, false, false)
}

/// `_vsnprintf(buffer, count, format, arglist)`.
pub(crate) fn vsnprintf(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    printf(call, false, true, true)
}

/// `_vsnwprintf(buffer, count, format, arglist)`.
pub(crate) fn vsnwprintf(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    printf(call, true, true, true)
}
