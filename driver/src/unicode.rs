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
