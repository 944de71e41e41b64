//! `!poolused [flags [tag]]`: outstanding allocations and bytes per tag,
//! nonpaged and paged. Windows keeps these counts in its pool tracking
//! table, charging a small block its whole size, header included
//! (`BlockSize << POOL_BLOCK_SHIFT`), and a big-page block its size rounded
//! to pages (WRK, base/ntos/ex/pool.c, the `ExpInsertPoolTracker` calls);
//! the emulated kernel keeps the same blocks in its own bookkeeping, which
//! is where these counts come from. Form: debugger/-poolused.md's example
//! (` Tag    Allocs     Used    Allocs     Used`, one row per tag, then
//! ` TOTAL ...`); flags 2 and 4 sort by nonpaged or paged bytes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::pool::tag_text;
use super::{CommandError, Reply, Session};
use crate::expr;
use harness_ntemu::pool::Region;

/// Page size, for big-page blocks.
const PAGE: u64 = 0x1000;

/// One tag's counts: (nonpaged allocations, bytes, paged allocations, bytes).
type Counts = [u64; 4];

/// kd's `*` and `?` in a tag pattern, case-sensitive as the page says.
fn tag_matches(pattern: &[u8], tag: &[u8]) -> bool {
    match (pattern.split_first(), tag.split_first()) {
        (None, None) => true,
        (Some((b'*', rest)), _) => {
            tag_matches(rest, tag) || (!tag.is_empty() && tag_matches(pattern, &tag[1..]))
        }
        (Some((b'?', rest)), Some((_, tail))) => tag_matches(rest, tail),
        (Some((want, rest)), Some((have, tail))) if want == have => tag_matches(rest, tail),
        _ => false,
    }
}

impl Session {
    /// `!poolused`.
    pub(super) fn pool_used(&self, args: &str) -> Reply {
        let mut words = args.split_whitespace();
        let flags = match words.next() {
            Some(text) => expr::evaluate(text, self)?,
            None => 0,
        };
        if flags & !0x6 != 0 || flags & 0x6 == 0x6 {
            return Err(CommandError::Message(format!(
                "harness kd: !poolused flags {flags:#x} are not supported (0, 2: by nonpaged bytes, 4: by paged bytes)"
            )));
        }
        let pattern = words.next().map(str::as_bytes);
        if pattern.is_some_and(|pattern| !pattern.contains(&b'*') && pattern.len() != 4) {
            return Err(CommandError::Message(
                "harness kd: a !poolused tag is four characters unless it has a *".into(),
            ));
        }
        let mut tags: BTreeMap<[u8; 4], Counts> = BTreeMap::new();
        for block in self
            .target
            .machine
            .kernel()
            .pool
            .blocks()
            .filter(|block| block.allocated)
        {
            let tag = (block.tag & 0x7fff_ffff).to_le_bytes();
            if pattern.is_some_and(|pattern| !tag_matches(pattern, &tag)) {
                continue;
            }
            let bytes = if block.big {
                block.size.div_ceil(PAGE) * PAGE
            } else {
                block.size
            };
            let column = match Region::of(block.pool_type) {
                Region::NonPaged => 0,
                Region::Paged => 2,
            };
            let counts = tags.entry(tag).or_default();
            counts[column] += 1;
            counts[column + 1] += bytes;
        }
        let mut rows: Vec<([u8; 4], Counts)> = tags.into_iter().collect();
        let sorting = match flags {
            2 => {
                rows.sort_by_key(|(_, counts)| std::cmp::Reverse(counts[1]));
                "NonPaged Pool Consumed"
            }
            4 => {
                rows.sort_by_key(|(_, counts)| std::cmp::Reverse(counts[3]));
                "Paged Pool Consumed"
            }
            _ => "Tag",
        };
        let mut out = format!(
            "   Sorting by  {sorting}\n\n  Pool Used:\n            NonPaged            Paged\n Tag    Allocs     Used    Allocs     Used\n"
        );
        let mut total: Counts = [0; 4];
        for (tag, counts) in &rows {
            let text = tag_text(u32::from_le_bytes(*tag));
            let _ = writeln!(
                out,
                " {text} {:>8} {:>8} {:>9} {:>8}UNKNOWN pooltag '{text}', please update pooltag.txt",
                counts[0], counts[1], counts[2], counts[3]
            );
            for (sum, value) in total.iter_mut().zip(counts) {
                *sum += value;
            }
        }
        let _ = writeln!(
            out,
            " TOTAL    {:>8} {:>8} {:>9} {:>8}",
            total[0], total[1], total[2], total[3]
        );
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::tag_matches;

    #[test]
    fn tag_patterns_are_kd_wildcards() {
        assert!(tag_matches(b"abcd", b"abcd"));
        assert!(tag_matches(b"ab*", b"abcd"));
        assert!(tag_matches(b"a?cd", b"abcd"));
        assert!(tag_matches(b"*", b"abcd"));
        assert!(!tag_matches(b"ABCD", b"abcd"));
        assert!(!tag_matches(b"abc", b"abcd"));
    }
}
