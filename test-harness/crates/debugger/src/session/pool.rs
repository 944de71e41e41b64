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
pub(super) struct Header {
    /// Where it is.
    pub(super) at: u64,
    /// Block bytes, header included.
    pub(super) size: u64,
    /// The previous block's bytes.
    pub(super) previous: u64,
    /// The stored pool type (0: free).
    pool_type: u32,
    tag: u32,
}

const PAGE: u64 = 0x1000;

/// `!pool`'s flags (-pool.md): bit 0 adds each block's contents, bit 1
/// shows only the block holding the address, bit 31 leaves out the
/// description of the tag (the owner line).
const CONTENTS: u64 = 1;
const ONLY_HIT: u64 = 2;
const NO_DESCRIPTION: u64 = 0x8000_0000;

impl Session {
    pub(super) fn read_header(&self, at: u64) -> Option<Header> {
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
    pub(super) fn region_at(&self, address: u64) -> Option<(Region, u64, u64)> {
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
    pub(super) fn big_block_at(&self, address: u64) -> Option<(u64, u64, u32)> {
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
        let unit = self.arch().pool_header_size();
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
            if hit && flags & NO_DESCRIPTION == 0 {
                let _ = writeln!(out, "{}", owner_line(header.tag & 0x7fff_ffff));
            }
            if flags & CONTENTS != 0 {
                out.push_str(
                    &self.block_contents(header.at + unit, header.size.saturating_sub(unit)),
                );
            }
        }
        Ok(out)
    }

    /// A block's body as `!pool Address 1` adds it: dwords, four a line,
    /// indented under the header.
    fn block_contents(&self, start: u64, size: u64) -> String {
        let mut out = String::new();
        let mut at = start;
        while at < start + size {
            let words: Vec<String> = (0..4)
                .map(|index| at + 4 * index)
                .filter(|word| *word < start + size)
                .map(|word| {
                    self.target
                        .read_uint(word, 4)
                        .map_or_else(|| "????????".to_owned(), |value| format!("{value:08x}"))
                })
                .collect();
            let _ = writeln!(out, "    {}  {}", self.plain_address(at), words.join(" "));
            at += 16;
        }
        out
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
    pub(super) fn plain_address(&self, value: u64) -> String {
        match self.arch() {
            Arch::X86 => format!("{:08x}", value & 0xffff_ffff),
            Arch::X64 => format!("{value:016x}"),
        }
    }

    /// `!poolfind TagString|TagValue [PoolType]` (-poolfind.md): every block
    /// with the tag, big pages first as kd scans its large pool table
    /// first. `TagString` is case-sensitive, `?` matches one character and
    /// `*` any number; `TagValue` starts with `0x`. `PoolType` 0 is nonpaged
    /// pool, 1 paged; without one both are searched, nonpaged first, as the
    /// page's example session shows (its default "0" searched both).
    pub(super) fn poolfind(&self, args: &str) -> Reply {
        let mut words = args.split_whitespace();
        let tag = super::required(
            &mut words,
            "harness kd: !poolfind needs a tag (!poolfind abcd)",
        )?;
        let search = TagSearch::parse(tag.trim_matches('"'))?;
        let mut regions = vec![Region::NonPaged, Region::Paged];
        for word in words {
            regions = match word {
                "-nonpaged" | "0" => vec![Region::NonPaged],
                "-paged" | "1" => vec![Region::Paged],
                "2" | "4" => {
                    return Ok(format!(
                        "harness kd: the emulated machine has no {} pool: nothing to search\n",
                        if word == "2" { "special" } else { "session" }
                    ));
                }
                other => {
                    return Err(CommandError::Message(format!(
                        "harness kd: !poolfind pool type {other} is not one kd documents (0 nonpaged, 1 paged, 2 special, 4 session)"
                    )));
                }
            };
        }
        let matches = |value: u32| search.matches(value);
        let label = search.label();
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

/// What `!poolfind` looks for.
enum TagSearch {
    /// `0x64636261`: that value (the protected bit aside).
    Value(u32),
    /// `abcd`, `ab*`, `a?cd`: matched against the tag's four characters.
    Pattern(Vec<u8>),
}

impl TagSearch {
    fn parse(tag: &str) -> Result<Self, CommandError> {
        // Only a lower-case `0x` makes a value (-poolfind.md: "0X" is a tag string).
        if let Some(hex) = tag.strip_prefix("0x") {
            return u32::from_str_radix(hex, 16)
                .map(|value| Self::Value(value & 0x7fff_ffff))
                .map_err(|_| {
                    CommandError::Message(format!("harness kd: '{tag}' is not a 32-bit tag value"))
                });
        }
        let wild = tag.contains('*');
        if tag.is_empty() || (!wild && tag.len() > 4) || tag.len() > 32 || !tag.is_ascii() {
            return Err(CommandError::Message(format!(
                "harness kd: a pool tag is four ASCII characters (or a pattern with *), not '{tag}'"
            )));
        }
        // A shorter tag is padded with spaces, as drivers' tags are.
        let pattern = if wild {
            tag.to_owned()
        } else {
            format!("{tag:<4}")
        };
        Ok(Self::Pattern(pattern.into_bytes()))
    }

    fn matches(&self, tag: u32) -> bool {
        let tag = tag & 0x7fff_ffff;
        match self {
            Self::Value(value) => tag == *value,
            Self::Pattern(pattern) => glob(pattern, &tag.to_le_bytes()),
        }
    }

    /// `0x64636261 (abcd)`, or the pattern as typed.
    fn label(&self) -> String {
        match self {
            Self::Value(value) => format!("0x{value:08x} ({})", tag_text(*value)),
            Self::Pattern(pattern) if pattern.len() == 4 && !pattern.contains(&b'*') => {
                let value = u32::from_le_bytes([pattern[0], pattern[1], pattern[2], pattern[3]]);
                format!("0x{value:08x} ({})", String::from_utf8_lossy(pattern))
            }
            Self::Pattern(pattern) => String::from_utf8_lossy(pattern).into_owned(),
        }
    }
}

/// Case-sensitive `?`/`*` matching: pool tags are.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    super::modules::wildcard_bytes(pattern, text, false)
}

/// A tag as `!pool` prints it: four characters, `.` for unprintable ones.
pub(super) fn tag_text(tag: u32) -> String {
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
