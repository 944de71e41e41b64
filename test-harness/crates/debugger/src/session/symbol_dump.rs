//! `dds`, `dqs`, `dps`: memory as a column of values, each followed by the
//! symbol it points into (debugger/dds--dps--dqs--display-words-and-
//! symbols-.md: 4-byte, 8-byte and pointer-sized values; a plain address
//! shows 128 bytes; without a range the display goes on where the last
//! one ended). Line form from real sessions:
//! `8772d834  82ab06b1 nt!ExAllocatePoolWithTagPriority+0x196`.

use std::fmt::Write as _;

use super::{Reply, Session};
use crate::expr;
use crate::format;

/// Bytes a range without a length shows.
const DEFAULT_BYTES: u64 = 128;

/// Values one command lists at most (each looks up a symbol); the listing
/// stops there, as `u` stops at 0x1000 instructions.
const MAX_VALUES: u64 = 0x1_0000;

/// The element size of `dds`, `dqs` or `dps`; `None` for other names.
pub(super) const fn element_size(command: &str, pointer_size: u64) -> Option<u64> {
    match command.as_bytes() {
        b"dds" => Some(4),
        b"dqs" => Some(8),
        b"dps" => Some(pointer_size),
        _ => None,
    }
}

impl Session {
    /// `dds`/`dqs`/`dps [range]`.
    pub(super) fn dump_symbols(&mut self, size: u64, args: &str) -> Reply {
        let default_count = DEFAULT_BYTES / size;
        let (start, count) = if args.is_empty() {
            (self.next_dump, default_count)
        } else {
            expr::parse_range(args, self)?.resolve(size, default_count)?
        };
        let width = usize::try_from(size).unwrap_or(8);
        let mut out = String::new();
        let mut at = start;
        for _ in 0..count.min(MAX_VALUES) {
            let _ = write!(out, "{}  ", self.address(at));
            match self.target.read_uint(at, width) {
                Some(value) => {
                    out.push_str(&format::address(value, size));
                    // The symbol a value points into: kd names it only
                    // inside a module, so data values stay bare.
                    if let Some(name) = self.names.name_of(value) {
                        let _ = write!(out, " {name}");
                    }
                }
                None => out.push_str(if size == 4 {
                    "????????"
                } else {
                    "????????`????????"
                }),
            }
            out.push('\n');
            at = at.wrapping_add(size);
        }
        self.next_dump = at;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::element_size;

    #[test]
    fn sizes_follow_the_command() {
        assert_eq!(element_size("dds", 8), Some(4));
        assert_eq!(element_size("dqs", 4), Some(8));
        assert_eq!(element_size("dps", 4), Some(4));
        assert_eq!(element_size("dps", 8), Some(8));
        assert_eq!(element_size("dd", 4), None);
    }
}
