//! Printing a counted UTF-16 string (`%wZ` in C) through Rust formatting.
//!
//! The driver formats its text itself and hands `DbgPrint` a plain `%s`
//! string: Wine 8 prints `%wZ` as a literal "Z" and Speakeasy 1.5.11 aborts
//! on it, while `%s` works on Windows and in both emulators.

use core::fmt;

use crate::ntos::UNICODE_STRING;

/// Displays a `UNICODE_STRING`; ill-formed UTF-16 shows as U+FFFD.
pub struct Utf16Text<'a>(pub &'a UNICODE_STRING);

impl fmt::Display for Utf16Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = usize::from(self.0.Length) / size_of::<u16>();
        if self.0.Buffer.is_null() || units == 0 {
            return Ok(());
        }
        // SAFETY: a UNICODE_STRING's Buffer holds at least Length bytes.
        let text = unsafe { core::slice::from_raw_parts(self.0.Buffer, units) };
        for c in char::decode_utf16(text.iter().copied()) {
            fmt::Write::write_char(f, c.unwrap_or(char::REPLACEMENT_CHARACTER))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::{format, ptr, string::String, vec::Vec};

    use super::*;

    /// A `UNICODE_STRING` over `units`, claiming `length` bytes.
    fn counted(units: &mut [u16], length: u16) -> UNICODE_STRING {
        UNICODE_STRING {
            Length: length,
            MaximumLength: u16::try_from(units.len() * 2).expect("short test text"),
            Buffer: units.as_mut_ptr(),
        }
    }

    fn utf16(text: &str) -> Vec<u16> {
        text.encode_utf16().collect()
    }

    #[test]
    fn shows_the_registry_path() {
        let path = r"\REGISTRY\MACHINE\SYSTEM\ControlSet001\services\Sample";
        let mut units = utf16(path);
        let length = u16::try_from(units.len() * 2).expect("short");
        assert_eq!(length, 0x6c, "the walkthrough's Length");
        assert_eq!(format!("{}", Utf16Text(&counted(&mut units, length))), path);
    }

    #[test]
    fn reads_only_length_bytes_without_a_terminator() {
        let mut units = utf16("SampleXYZ");
        let text = format!("{}", Utf16Text(&counted(&mut units, 12)));
        assert_eq!(text, "Sample");
        // An odd Length stops at the last whole unit.
        assert_eq!(format!("{}", Utf16Text(&counted(&mut units, 13))), "Sample");
    }

    #[test]
    fn non_ascii_and_surrogate_pairs_are_decoded() {
        let mut units = utf16("Größe 𝄞");
        let length = u16::try_from(units.len() * 2).expect("short");
        assert_eq!(
            format!("{}", Utf16Text(&counted(&mut units, length))),
            "Größe 𝄞"
        );
    }

    #[test]
    fn an_unpaired_surrogate_shows_as_the_replacement_character() {
        let mut units = [u16::from(b'a'), 0xD800, u16::from(b'b')];
        let text: String = format!("{}", Utf16Text(&counted(&mut units, 6)));
        assert_eq!(text, "a\u{FFFD}b");
    }

    #[test]
    fn empty_and_null_strings_print_nothing() {
        let mut units = utf16("x");
        assert_eq!(format!("{}", Utf16Text(&counted(&mut units, 0))), "");
        let null = UNICODE_STRING {
            Length: 8,
            MaximumLength: 8,
            Buffer: ptr::null_mut(),
        };
        assert_eq!(format!("{}", Utf16Text(&null)), "");
    }
}
