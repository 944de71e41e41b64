//! `!pool` and `!poolfind`, read from the pool headers in the machine's
//! memory (Windows 7's `_POOL_HEADER`: x86 8 bytes in 8-byte units, x64 16
//! bytes in 16-byte units) and, for big-page allocations, from the kernel's
//! record of them (Windows' big page table).

use std::fmt::Write as _;

use super::{CommandError, Reply, Session};
use crate::expr;
use harness_core::arch::Arch;
use harness_ntemu::pool::Region;

/// One pool header as read from memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    /// Where it is.
    at: u64,
    /// Block bytes, header included.
    size: u64,
    /// The previous block's bytes.
    previous: u64,
    /// The stored pool type (0: free).
    pool_type: u32,
    tag: u32,
}

const PAGE: u64 = 0x1000;

/// `!pool`'s flag 2: only the block holding the address.
const ONLY_HIT: u64 = 2;

impl Session {
    fn read_header(&self, at: u64) -> Option<Header> {
        let unit = self.arch().pool_header_size();
        let bytes = self.target.read(at, usize::try_from(unit).ok()?)?;
        let (previous, size, pool_type) = match self.arch() {
            Arch::X86 => {
                let ulong = u32::from_le_bytes(bytes[..4].try_into().ok()?);
                (ulong & 0x1ff, (ulong >> 16) & 0x1ff, ulong >> 25)
            }
            Arch::X64 => (
                u32::from(bytes[0]),
                u32::from(bytes[2]),
                u32::from(bytes[3]),
            ),
        };
        Some(Header {
            at,
            size: u64::from(size) * unit,
            previous: u64::from(previous) * unit,
            pool_type,
            tag: u32::from_le_bytes(bytes[4..8].try_into().ok()?),
        })
    }

    /// The headers of the small-block page at `page`, in order.
    fn page_headers(&self, page: u64) -> Vec<Header> {
        let mut headers = Vec::new();
        let mut at = page;
        while at < page + PAGE {
            let Some(header) = self.read_header(at) else {
                break;
            };
            if header.size == 0 {
                break;
            }
            headers.push(header);
            at += header.size;
        }
        headers
    }

    /// The pool region holding `address`, with its bounds.
    fn region_at(&self, address: u64) -> Option<(Region, u64, u64)> {
        let pool = &self.target.machine.kernel().pool;
        [Region::NonPaged, Region::Paged]
            .into_iter()
            .find_map(|region| {
                let base = region.base(self.arch());
                let end = base + pool.mapped(region);
                (address >= base && address < end).then_some((region, base, end))
            })
    }

    /// A big-page allocation holding `address`.
    fn big_block_at(&self, address: u64) -> Option<(u64, u64, u32)> {
        let block = self.target.machine.kernel().pool.block_at(address)?;
        (block.big && block.allocated).then_some((block.address, block.size, block.tag))
    }

    /// `!pool address [flags]`.
    pub(super) fn pool(&self, args: &str) -> Reply {
        if args.is_empty() {
            return Err(CommandError::Message(
                "harness kd: !pool needs an address (!pool 0x91c26130 2)".into(),
            ));
        }
        let used = expr::expression_len(args)?;
        let address = expr::evaluate(&args[..used], self)?;
        let flags = match args[used..].trim() {
            "" => 0,
            rest => expr::evaluate(rest, self)?,
        };
        let plain = |value: u64| self.plain_address(value);
        if let Some(block) = self.target.machine.kernel().special.block_at(address) {
            // Special pool (verifier flag 0x1): one block per page.
            return Ok(format!(
                "Pool page {} region is Special pool
*{} size: {:>4x} special pool, {}, tag is {}
{}
",
                plain(address),
                plain(block.address),
                block.bytes,
                if block.live { "Allocated" } else { "Freed" },
                tag_text(block.tag),
                owner_line(block.tag)
            ));
        }
        let Some((region, _, _)) = self.region_at(address) else {
            return Ok(self.not_pool(address));
        };
        let mut out = format!("Pool page {} region is {}\n", plain(address), region.name());
        if let Some((start, size, tag)) = self.big_block_at(address) {
            let _ = writeln!(
                out,
                "*{} : large page allocation, tag is {}, size is 0x{size:x} bytes",
                plain(start),
                tag_text(tag)
            );
            let _ = writeln!(out, "{}", owner_line(tag));
            return Ok(out);
        }
        let page = address & !(PAGE - 1);
        for header in self.page_headers(page) {
            let hit = address >= header.at && address < header.at + header.size;
            if flags & ONLY_HIT != 0 && !hit {
                continue;
            }
            let marker = if hit { '*' } else { ' ' };
            let state = if header.pool_type == 0 {
                "(Free)"
            } else {
                "(Allocated)"
            };
            let _ = writeln!(
                out,
                "{marker}{} size: {:>4x} previous size: {:>4x}  {state:<11} {marker}{}",
                plain(header.at),
                header.size,
                header.previous,
                tag_with_protection(header.tag),
            );
            if hit {
                let _ = writeln!(out, "{}", owner_line(header.tag & 0x7fff_ffff));
            }
        }
        Ok(out)
    }

    /// What `!pool` says of an address outside both pools.
    fn not_pool(&self, address: u64) -> String {
        let page = self.plain_address(address & !(PAGE - 1));
        let mut out = format!(
            "Pool page {} region is Unknown\n{page} is not a valid large pool allocation, checking large session pool...\n{page} is not valid pool. Checking for freed (or corrupt) pool\n",
            self.plain_address(address)
        );
        if self.target.read(address & !(PAGE - 1), 1).is_none() {
            let _ = writeln!(
                out,
                "Address {page} could not be read. It may be a freed, invalid or paged out page"
            );
        } else {
            let _ = writeln!(
                out,
                "harness kd: {} is not in the emulated kernel's paged or nonpaged pool",
                self.address(address)
            );
        }
        out
    }

    /// An address as `!pool` and `!poolfind` print it: no backtick.
    fn plain_address(&self, value: u64) -> String {
        match self.arch() {
            Arch::X86 => format!("{:08x}", value & 0xffff_ffff),
            Arch::X64 => format!("{value:016x}"),
        }
    }

    /// `!poolfind tag [-paged | -nonpaged | 0 | 1]`: every block with the
    /// tag (`?` and `*` match any character), big pages first as kd scans
    /// its large pool table first.
    pub(super) fn poolfind(&self, args: &str) -> Reply {
        let mut words = args.split_whitespace();
        let Some(tag) = words.next() else {
            return Err(CommandError::Message(
                "harness kd: !poolfind needs a tag (!poolfind abcd)".into(),
            ));
        };
        let tag = tag.trim_matches('"');
        if tag.len() > 4 || tag.is_empty() {
            return Err(CommandError::Message(format!(
                "harness kd: a pool tag has at most four characters, not '{tag}'"
            )));
        }
        let mut regions = vec![Region::NonPaged, Region::Paged];
        for word in words {
            regions = match word {
                "-nonpaged" | "0" => vec![Region::NonPaged],
                "-paged" | "1" => vec![Region::Paged],
                other => {
                    return Err(CommandError::Message(format!(
                        "harness kd: !poolfind option {other} is not supported (-paged, -nonpaged, 0, 1)"
                    )));
                }
            };
        }
        let pattern: Vec<u8> = format!("{tag:<4}").into_bytes();
        let matches = |value: u32| {
            let bytes = value.to_le_bytes();
            pattern
                .iter()
                .zip(bytes)
                .all(|(want, have)| *want == b'?' || *want == b'*' || *want == have)
        };
        let value = u32::from_le_bytes(pattern[..4].try_into().unwrap_or([0; 4]));
        let label = format!("0x{value:08x} ({})", String::from_utf8_lossy(&pattern));
        let pool = &self.target.machine.kernel().pool;
        let mut out = String::new();
        // kd adds the table's bounds; the emulated kernel keeps its big
        // page table in its own bookkeeping, not at an address.
        let _ = writeln!(
            out,
            "\nScanning large pool allocation table for tag {label}\n"
        );
        let mut found = false;
        for block in pool.blocks().filter(|block| block.big && block.allocated) {
            if regions.contains(&Region::of(block.pool_type)) && matches(block.tag) {
                found = true;
                let _ = writeln!(
                    out,
                    "{} : tag {}, size {:>9}, {}",
                    self.plain_address(block.address),
                    tag_text(block.tag),
                    size_text(block.size),
                    Region::of(block.pool_type).name()
                );
            }
        }
        let unit = self.arch().pool_header_size();
        for region in regions {
            let base = region.base(self.arch());
            let end = base + pool.mapped(region);
            let name = match region {
                Region::NonPaged => "nonpaged",
                Region::Paged => "paged",
            };
            if found {
                out.push('\n');
            }
            found = false;
            let _ = writeln!(
                out,
                "Searching {name} pool ({} : {}) for tag {label}\n",
                self.plain_address(base),
                self.plain_address(base + Region::SIZE)
            );
            let mut page = base;
            while page < end {
                if self.big_block_at(page).is_none() {
                    for header in self.page_headers(page) {
                        if header.pool_type != 0 && matches(header.tag & 0x7fff_ffff) {
                            found = true;
                            let _ = writeln!(
                                out,
                                "{} : tag {}, size {:>9}, {}",
                                self.plain_address(header.at + unit),
                                tag_text(header.tag),
                                size_text(header.size - unit),
                                region.name()
                            );
                        }
                    }
                }
                page += PAGE;
            }
        }
        Ok(out)
    }
}

/// A tag as `!pool` prints it: four characters, `.` for unprintable ones.
fn tag_text(tag: u32) -> String {
    tag.to_le_bytes()
        .iter()
        .map(|byte| {
            let byte = byte & 0x7f;
            if (0x20..0x7f).contains(&byte) {
                char::from(byte)
            } else {
                '.'
            }
        })
        .collect()
}

/// A tag with kd's ` (Protected)` for the high bit.
fn tag_with_protection(tag: u32) -> String {
    let mut text = tag_text(tag);
    if tag & 0x8000_0000 != 0 {
        text.push_str(" (Protected)");
    }
    text
}

/// The line after the block `!pool` marks. The harness carries no
/// pooltag.txt, so every tag is unknown to it, as `abcd` is to kd.
fn owner_line(_tag: u32) -> String {
    "\t\tOwning component : Unknown (update pooltag.txt)".to_owned()
}

/// `!poolfind`'s size: `0x70`, or `0` for zero.
fn size_text(size: u64) -> String {
    if size == 0 {
        "0".into()
    } else {
        format!("0x{size:x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_print_as_kd_prints_them() {
        assert_eq!(tag_text(0x6463_6261), "abcd");
        assert_eq!(
            tag_with_protection(0x6463_6261 | 0x8000_0000),
            "abcd (Protected)"
        );
        assert_eq!(tag_text(0x0000_6f49), "Io..");
        assert_eq!(size_text(0x70), "0x70");
        assert_eq!(size_text(0), "0");
    }
}
