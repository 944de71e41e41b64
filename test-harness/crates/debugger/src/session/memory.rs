//! Memory: the `d*` displays and the `e*` edits, on the machine's virtual
//! memory (`ed nt!PoolHitTag 'dcba'` writes the variable the allocator
//! compares tags with).

use std::fmt::Write as _;

use super::{CommandError, Reply, Session};
use crate::expr::{self, ExprError};
use crate::format::{self, DumpFormat};

/// Most bytes one `d*` command shows (`L?` ranges included).
const MAX_DUMP_BYTES: u64 = 1 << 20;

impl Session {
    /// `db dw dd dq dp dc da du [range]`; without a range, where the last
    /// display ended.
    pub(super) fn dump(&mut self, command: &str, args: &str) -> Reply {
        let Some(dump_format) = DumpFormat::from_command(command) else {
            return Err(CommandError::Syntax {
                column: 0,
                text: command.to_owned(),
            });
        };
        let ps = self.pointer_size();
        let (start, count) = if args.is_empty() {
            (self.next_dump, dump_format.default_count(ps))
        } else {
            let range = expr::parse_range(args, self)?;
            range.resolve(dump_format.element_size(ps), dump_format.default_count(ps))?
        };
        // `L?` lifts kd's 256 MB limit; kd then prints until the range ends
        // or Ctrl-C. A command's output here is built whole, so it stops at
        // a bound and says so; the next bare `d*` goes on from there.
        let most = MAX_DUMP_BYTES / dump_format.element_size(ps);
        let capped = count > most;
        let read = |address: u64, length: usize| self.target.read(address, length);
        let mut dump = format::dump(dump_format, start, count.min(most), ps, &read);
        self.next_dump = dump.next;
        if capped {
            let _ = writeln!(
                dump.text,
                "harness kd: stopped after 0x{MAX_DUMP_BYTES:x} bytes (one command shows at most that much; {command} alone goes on)"
            );
        }
        Ok(dump.text)
    }

    /// `eb ew ed eq ep address values...`.
    pub(super) fn enter(&mut self, command: &str, args: &str) -> Reply {
        let ps = self.pointer_size();
        let size: usize = match command {
            "eb" => 1,
            "ew" => 2,
            "ed" => 4,
            "eq" => 8,
            _ => usize::try_from(ps).unwrap_or(8),
        };
        let used = expr::expression_len(args)?;
        let address = expr::evaluate(&args[..used], self)?;
        let values = expr::parse_value_list(&args[used..], self)?;
        if values.is_empty() {
            return Err(CommandError::Message(format!(
                "harness kd: {command} needs values after the address (interactive entry is not supported)"
            )));
        }
        let mut at = address;
        for value in values {
            let bytes = value.to_le_bytes();
            if !self.target.write(at, &bytes[..size]) {
                return Err(ExprError::MemoryAccess(args[used..].trim().to_owned()).into());
            }
            at = at.wrapping_add(size as u64);
        }
        Ok(String::new())
    }
}
