//! `!poolval address [0]`: checks the chain of pool headers in the page
//! holding `address`: the first block's `PreviousSize` is 0, each next
//! one's is the block before's `BlockSize`, no block is empty or runs past
//! the page, and the blocks end exactly at the page's end (Windows formats
//! a whole page into blocks, the last one free). Form from real sessions
//! (Windows 10 x64, bug check 0x19 write-ups, 2024):
//!
//! ```text
//! Pool page ffffbd06d46e0000 region is Paged pool
//!
//! Validating Pool headers for pool page: ffffbd06d46e0000
//!
//! Pool page [ ffffbd06d46e0000 ] is INVALID.
//!
//! Analyzing linked list...
//! [ ffffbd06d46e0000 ]: invalid previous size [ 0x41 ] should be [ 0x0 ]
//! ```
//!
//! kd then scans for single-bit errors; that scan is not done here.

use std::fmt::Write as _;

use super::{CommandError, Reply, Session};
use crate::expr;

/// Bytes in a pool page.
const PAGE: u64 = 0x1000;

impl Session {
    /// `!poolval`.
    pub(super) fn pool_validate(&self, args: &str) -> Reply {
        let mut words = args.split_whitespace();
        let text = super::required(
            &mut words,
            "harness kd: !poolval needs an address (!poolval @$retreg)",
        )?;
        let address = expr::evaluate(text, self)?;
        if let Some(level) = words.next()
            && expr::evaluate(level, self)? != 0
        {
            return Err(CommandError::Message(
                "harness kd: !poolval display levels 1 to 3 are not supported (0 is)".into(),
            ));
        }
        let page = address & !(PAGE - 1);
        let shown = self.plain_address(page);
        let Some((region, _, _)) = self.region_at(address) else {
            return Err(CommandError::Message(format!(
                "harness kd: {shown} is in neither pool of the emulated machine"
            )));
        };
        if self.big_block_at(address).is_some() {
            return Err(CommandError::Message(format!(
                "harness kd: {shown} is a large page allocation: it has no pool headers to validate"
            )));
        }
        let problems = self.header_chain_problems(page);
        let mut out = format!(
            "Pool page {shown} region is {}\n\nValidating Pool headers for pool page: {shown}\n\n",
            region.name()
        );
        if problems.is_empty() {
            let _ = writeln!(out, "Pool page [ {shown} ] is VALID.");
        } else {
            let _ = writeln!(
                out,
                "Pool page [ {shown} ] is INVALID.\n\nAnalyzing linked list..."
            );
            for problem in problems {
                let _ = writeln!(out, "{problem}");
            }
        }
        Ok(out)
    }

    /// What is wrong with the headers of the page at `page`: kd's line for
    /// a broken `PreviousSize` link (sizes in the header's units), and a
    /// `harness kd:` line for a block that is empty or leaves the page.
    fn header_chain_problems(&self, page: u64) -> Vec<String> {
        let unit = self.arch().pool_header_size();
        let mut problems = Vec::new();
        let mut at = page;
        let mut expected_previous = 0;
        while at < page + PAGE {
            let Some(header) = self.read_header(at) else {
                problems.push(format!(
                    "harness kd: the header at {} cannot be read",
                    self.plain_address(at)
                ));
                break;
            };
            if header.previous != expected_previous {
                problems.push(format!(
                    "[ {} ]: invalid previous size [ {:#x} ] should be [ {:#x} ]",
                    self.plain_address(at),
                    header.previous / unit,
                    expected_previous / unit
                ));
            }
            if header.size == 0 || at + header.size > page + PAGE {
                problems.push(format!(
                    "harness kd: the block at {} has size {:#x}, which {}",
                    self.plain_address(at),
                    header.size,
                    if header.size == 0 {
                        "cannot be"
                    } else {
                        "runs past the page"
                    }
                ));
                break;
            }
            expected_previous = header.size;
            at += header.size;
        }
        problems
    }
}
