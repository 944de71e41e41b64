//! `println!` for the portable build: formats with `core::fmt` and hands the
//! text to `DbgPrint` as a plain `%s` argument, like wdk's `println!`.

use core::fmt::{self, Write};

use super::ntoskrnl::DbgPrint;

/// DbgPrint transmits at most 512 bytes per call, terminator included.
const CHUNK: usize = 512;

/// Collects formatted text and passes it to DbgPrint one chunk at a time.
struct DebugPrinter {
    buffer: [u8; CHUNK],
    used: usize,
}

impl DebugPrinter {
    fn flush(&mut self) {
        if self.used == 0 {
            return;
        }
        self.buffer[self.used] = 0;
        // SAFETY: the format is a literal "%s" and the argument is the
        // NUL-terminated buffer, so DbgPrint reads nothing else.
        unsafe { DbgPrint(c"%s".as_ptr().cast(), self.buffer.as_ptr()) };
        self.used = 0;
    }
}

impl Write for DebugPrinter {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for &byte in text.as_bytes() {
            // A NUL would end the string early; keep one byte for the terminator.
            if self.used == CHUNK - 1 {
                self.flush();
            }
            self.buffer[self.used] = if byte == 0 { b'?' } else { byte };
            self.used += 1;
        }
        Ok(())
    }
}

/// Prints one line to the kernel debugger. Use through `println!`.
pub fn print_line(args: fmt::Arguments<'_>) {
    let mut printer = DebugPrinter {
        buffer: [0; CHUNK],
        used: 0,
    };
    // Printing is best effort: a failing Display impl only truncates the line.
    let _ = printer.write_fmt(args);
    let _ = printer.write_str("\n");
    printer.flush();
}

/// Prints a formatted line to the kernel debugger, like wdk's `println!`.
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::portable::debug_print::print_line(format_args!($($arg)*))
    };
}
pub(crate) use println;
