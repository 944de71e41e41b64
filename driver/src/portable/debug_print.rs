//! `println!` for the portable build: formats with `core::fmt` and hands the
//! text to `DbgPrint` as a plain `%s` argument, like wdk's `println!`.
//!
//! The chunking is generic over its [`Sink`], so the host unit tests below
//! run it against a recording sink instead of the kernel debugger.

use core::{
    ffi::CStr,
    fmt::{self, Write},
};

/// DbgPrint transmits at most 512 bytes per call, terminator included.
pub const CHUNK: usize = 512;

/// Where finished chunks go: `DbgPrint` in the driver, a recorder in tests.
pub trait Sink {
    /// Prints one NUL-terminated chunk of at most [`CHUNK`] bytes.
    fn print(&mut self, chunk: &CStr);
}

/// Collects formatted text and passes it to the sink one chunk at a time,
/// splitting only between UTF-8 characters.
pub struct DebugPrinter<S: Sink> {
    sink: S,
    buffer: [u8; CHUNK],
    used: usize,
}

impl<S: Sink> DebugPrinter<S> {
    /// An empty printer writing to `sink`.
    pub const fn new(sink: S) -> Self {
        Self {
            sink,
            buffer: [0; CHUNK],
            used: 0,
        }
    }

    /// Passes the collected text, if any, to the sink.
    pub fn flush(&mut self) {
        if self.used == 0 {
            return;
        }
        self.buffer[self.used] = 0;
        // SAFETY: `buffer[used]` is the NUL just written, and `write_str`
        // replaced every NUL before it.
        let chunk = unsafe { CStr::from_bytes_with_nul_unchecked(&self.buffer[..=self.used]) };
        self.sink.print(chunk);
        self.used = 0;
    }
}

impl<S: Sink> Write for DebugPrinter<S> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut rest = text.as_bytes();
        while !rest.is_empty() {
            // Keep one byte for the terminator, and cut only where a character
            // starts: UTF-8 continuation bytes are 0b10xx_xxxx.
            let mut end = rest.len().min(CHUNK - 1 - self.used);
            while end > 0 && end < rest.len() && rest[end] & 0xC0 == 0x80 {
                end -= 1;
            }
            if end == 0 {
                self.flush();
                continue;
            }
            let (now, later) = rest.split_at(end);
            for &byte in now {
                // A NUL would end the C string early.
                self.buffer[self.used] = if byte == 0 { b'?' } else { byte };
                self.used += 1;
            }
            rest = later;
        }
        Ok(())
    }
}

/// Prints one line to `sink`. Use through `println!`.
pub fn print_line<S: Sink>(sink: S, args: fmt::Arguments<'_>) {
    let mut printer = DebugPrinter::new(sink);
    // Printing is best effort: a failing Display impl only truncates the line.
    let _ = printer.write_fmt(args);
    let _ = printer.write_str("\n");
    printer.flush();
}

#[cfg(test)]
mod tests {
    use std::{string::String, vec::Vec};

    use super::*;

    /// Records what DbgPrint would have been given.
    #[derive(Default)]
    struct Recorder(Vec<Vec<u8>>);

    impl Sink for &mut Recorder {
        fn print(&mut self, chunk: &CStr) {
            self.0.push(chunk.to_bytes().to_vec());
        }
    }

    fn chunks_of(args: fmt::Arguments<'_>) -> Vec<Vec<u8>> {
        let mut recorder = Recorder::default();
        print_line(&mut recorder, args);
        recorder.0
    }

    fn joined(chunks: &[Vec<u8>]) -> String {
        String::from_utf8(chunks.concat()).expect("the chunks join into UTF-8")
    }

    #[test]
    fn a_short_line_is_one_call() {
        let chunks = chunks_of(format_args!("Windows Version: {}.{}.{}", 6, 1, 7601));
        assert_eq!(chunks, [b"Windows Version: 6.1.7601\n".to_vec()]);
    }

    #[test]
    fn long_ascii_fills_each_call_to_511_bytes() {
        let text = "a".repeat(1200);
        let chunks = chunks_of(format_args!("{text}"));
        let sizes: Vec<usize> = chunks.iter().map(Vec::len).collect();
        assert_eq!(sizes, [511, 511, 179]);
        assert_eq!(joined(&chunks), format!("{text}\n"));
    }

    #[test]
    fn multi_byte_characters_are_never_split() {
        // 'é' is 2 bytes, '€' 3, '𝄞' 4: offsets make every width cross 511.
        for (prefix, c) in [(510, 'é'), (509, '€'), (510, '€'), (508, '𝄞'), (510, '𝄞')] {
            let text = format!("{}{}", "a".repeat(prefix), c.to_string().repeat(300));
            let chunks = chunks_of(format_args!("{text}"));
            for chunk in &chunks {
                assert!(chunk.len() < CHUNK, "{} bytes", chunk.len());
                assert!(
                    core::str::from_utf8(chunk).is_ok(),
                    "prefix {prefix}, {c:?}: a chunk splits a character"
                );
            }
            assert_eq!(joined(&chunks), format!("{text}\n"));
        }
    }

    #[test]
    fn an_interior_nul_does_not_end_the_text() {
        let chunks = chunks_of(format_args!("a{}b", '\0'));
        assert_eq!(chunks, [b"a?b\n".to_vec()]);
    }

    #[test]
    fn nothing_is_printed_for_no_text() {
        let mut recorder = Recorder::default();
        DebugPrinter::new(&mut recorder).flush();
        assert!(recorder.0.is_empty());
    }
}
