//! The kernel pool, laid out as Windows 7 lays it out: every block is a real
//! `_POOL_HEADER` followed by the caller's bytes, in pages of the paged or
//! nonpaged pool region.
//!
//! The x86 header is 8 bytes (PreviousSize:9, PoolIndex:7, BlockSize:9,
//! PoolType:7 in 8-byte units, then the tag); the x64 header is 16 bytes (one
//! byte each, in 16-byte units, the tag, then `ProcessBilled`). Blocks too
//! large for a page are "big pool": page aligned, no header, as on Windows.
//!
//! The allocator keeps its own bookkeeping; the headers it writes are what
//! a debugger reads (`!pool`, `!poolfind`, `dt nt!_POOL_HEADER`).

use std::collections::BTreeMap;

use harness_core::arch::Arch;

use super::memory::PAGE;

/// Which pool region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Region {
    /// Nonpaged pool (also `NonPagedPoolNx`: the same pages here).
    NonPaged,
    /// Paged pool.
    Paged,
}

impl Region {
    /// The region a `POOL_TYPE` value (flags included) allocates from: bit
    /// 0 is `BASE_POOL_TYPE_MASK`, paged or not.
    #[must_use]
    pub const fn of(pool_type: u32) -> Self {
        if pool_type & 1 == 1 {
            Self::Paged
        } else {
            Self::NonPaged
        }
    }

    /// How `!pool` names it.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::NonPaged => "Nonpaged pool",
            Self::Paged => "Paged pool",
        }
    }

    /// Where the region starts (near the walkthrough's Windows 7 addresses).
    #[must_use]
    pub const fn base(self, arch: Arch) -> u64 {
        match (self, arch) {
            (Self::NonPaged, Arch::X86) => 0x8640_0000,
            (Self::Paged, Arch::X86) => 0x91c0_0000,
            (Self::NonPaged, Arch::X64) => 0xFFFF_FA80_0180_0000,
            (Self::Paged, Arch::X64) => 0xFFFF_F8A0_0120_0000,
        }
    }

    /// Virtual space reserved for it: the most it can grow to.
    pub const SIZE: u64 = 64 << 20;
}

/// A block the allocator handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Address of the header (big pool: of the block itself).
    pub header: u64,
    /// Address the caller got.
    pub address: u64,
    /// Bytes of the block, header included.
    pub size: u64,
    /// Bytes requested.
    pub requested: u64,
    /// Tag.
    pub tag: u32,
    /// The pool type as requested (flags included).
    pub pool_type: u32,
    /// Page aligned with no header.
    pub big: bool,
    /// Bytes of the block before it in its page (its header's `PreviousSize`).
    pub previous: u64,
    /// Still allocated.
    pub allocated: bool,
}

/// Header bytes to write at `Block::header`.
pub(crate) type HeaderWrite = (u64, Vec<u8>);

/// One region's pages and blocks.
#[derive(Debug, Default)]
struct Pages {
    /// Bytes of the region mapped so far.
    mapped: u64,
    /// Next unused byte (page aligned when a new page starts).
    next: u64,
    /// The block before `next` in its page (for `PreviousSize`), in bytes.
    previous: u64,
}

/// The pool allocator.
#[derive(Debug)]
pub struct Pool {
    arch: Arch,
    regions: BTreeMap<Region, Pages>,
    /// Blocks by the address the caller got.
    blocks: BTreeMap<u64, Block>,
    /// Freed small blocks by size (header, previous size), reused last-freed first.
    free: BTreeMap<(Region, u64), Vec<(u64, u64)>>,
}

/// What the allocator needs from the machine: more mapped pages.
pub trait Grow {
    /// Maps `size` more bytes at `va`; false when the machine is out of memory.
    fn grow(&mut self, va: u64, size: u64) -> bool;
}

impl Pool {
    /// An empty pool.
    #[must_use]
    pub const fn new(arch: Arch) -> Self {
        Self {
            arch,
            regions: BTreeMap::new(),
            blocks: BTreeMap::new(),
            free: BTreeMap::new(),
        }
    }

    /// The header's size, which is also the block granularity.
    #[must_use]
    pub const fn unit(&self) -> u64 {
        self.arch.pool_header_size()
    }

    /// Allocates `size` bytes of `pool_type` (flags included) with `tag`.
    /// Returns the block and the header bytes to write, or `None` when the
    /// region is exhausted (the caller gets NULL, as on Windows).
    pub fn allocate(
        &mut self,
        pool_type: u32,
        size: u64,
        tag: u32,
        grow: &mut dyn Grow,
    ) -> Option<(Block, Vec<HeaderWrite>)> {
        let region = Region::of(pool_type);
        // More than the region can ever hold: NULL, as Windows returns when
        // no run of free pool pages is long enough (WRK's
        // MiAllocatePoolPages). Checked before the rounding below, which
        // would wrap a size near 2^64 to a small block.
        if size > Region::SIZE {
            return None;
        }
        let unit = self.unit();
        let block_size = size.max(1).div_ceil(unit) * unit + unit;
        if block_size > PAGE - unit {
            return self.allocate_big(region, pool_type, size, tag, grow);
        }
        if let Some((header, previous)) =
            self.free.get_mut(&(region, block_size)).and_then(Vec::pop)
        {
            let block = Block {
                header,
                address: header + unit,
                size: block_size,
                requested: size,
                tag,
                pool_type,
                big: false,
                previous,
                allocated: true,
            };
            let write = (header, self.header_bytes(&block, region));
            self.blocks.insert(block.address, block.clone());
            return Some((block, vec![write]));
        }
        let base = region.base(self.arch);
        let pages = self.regions.entry(region).or_default();
        let page_end = pages.next.div_ceil(PAGE) * PAGE;
        if pages.next == page_end || pages.next + block_size > page_end {
            // Start a new page.
            let start = if pages.next == page_end {
                pages.next
            } else {
                page_end
            };
            if start + PAGE > pages.mapped {
                if pages.mapped + PAGE > Region::SIZE || !grow.grow(base + pages.mapped, PAGE) {
                    return None;
                }
                pages.mapped += PAGE;
            }
            pages.next = start;
            pages.previous = 0;
        }
        let header = base + pages.next;
        let previous = pages.previous;
        pages.next += block_size;
        pages.previous = block_size;
        let remainder = (PAGE - pages.next % PAGE) % PAGE;
        let next_header = base + pages.next;
        let block = Block {
            header,
            address: header + unit,
            size: block_size,
            requested: size,
            tag,
            pool_type,
            big: false,
            previous,
            allocated: true,
        };
        let mut writes = vec![(header, self.header_bytes(&block, region))];
        if remainder >= unit {
            // The rest of the page is one free block, as !pool shows it.
            writes.push((next_header, self.free_header(block_size, remainder)));
        }
        self.blocks.insert(block.address, block.clone());
        Some((block, writes))
    }

    fn allocate_big(
        &mut self,
        region: Region,
        pool_type: u32,
        size: u64,
        tag: u32,
        grow: &mut dyn Grow,
    ) -> Option<(Block, Vec<HeaderWrite>)> {
        let base = region.base(self.arch);
        let pages = self.regions.entry(region).or_default();
        let start = pages.next.div_ceil(PAGE) * PAGE;
        let bytes = size.div_ceil(PAGE) * PAGE;
        if start + bytes > Region::SIZE {
            return None;
        }
        if start + bytes > pages.mapped {
            let more = start + bytes - pages.mapped;
            if !grow.grow(base + pages.mapped, more) {
                return None;
            }
            pages.mapped += more;
        }
        pages.next = start + bytes;
        pages.previous = 0;
        let block = Block {
            header: base + start,
            address: base + start,
            size: bytes,
            requested: size,
            tag,
            pool_type,
            big: true,
            previous: 0,
            allocated: true,
        };
        self.blocks.insert(block.address, block.clone());
        Some((block, Vec::new()))
    }

    /// Frees the block the caller got at `address`. Returns it (now marked
    /// free) and the header bytes to write, or `None` if no allocated
    /// block starts there.
    pub fn free(&mut self, address: u64) -> Option<(Block, Vec<HeaderWrite>)> {
        let block = self.blocks.get_mut(&address)?;
        if !block.allocated {
            return None;
        }
        block.allocated = false;
        let block = block.clone();
        if block.big {
            return Some((block, Vec::new()));
        }
        let region = Region::of(block.pool_type);
        self.free
            .entry((region, block.size))
            .or_default()
            .push((block.header, block.previous));
        let mut bytes = self.header_bytes(&block, region);
        // PoolType 0 marks a free block (x86: the top seven bits of byte 3,
        // whose low bit is BlockSize's ninth); the tag stays, as on Windows.
        bytes[3] &= match self.arch {
            Arch::X86 => 0x01,
            Arch::X64 => 0x00,
        };
        let header = block.header;
        Some((block, vec![(header, bytes)]))
    }

    /// The block holding `address`, allocated or free.
    #[must_use]
    pub fn block_at(&self, address: u64) -> Option<&Block> {
        let (_, block) = self.blocks.range(..=address + self.unit()).next_back()?;
        (address >= block.header && address < block.header + block.size).then_some(block)
    }

    /// The block the caller got at exactly `address`.
    #[must_use]
    pub fn block(&self, address: u64) -> Option<&Block> {
        self.blocks.get(&address)
    }

    /// Every block ever handed out, in address order.
    pub fn blocks(&self) -> impl Iterator<Item = &Block> {
        self.blocks.values()
    }

    /// Mapped bytes of a region.
    #[must_use]
    pub fn mapped(&self, region: Region) -> u64 {
        self.regions.get(&region).map_or(0, |pages| pages.mapped)
    }

    /// The header of an allocated block.
    fn header_bytes(&self, block: &Block, region: Region) -> Vec<u8> {
        let previous = block.previous;
        let unit = self.unit();
        let units = |bytes: u64| u32::try_from(bytes / unit).unwrap_or(0);
        let pool_index = u32::from(region == Region::Paged);
        // Allocated blocks keep the requested type's low bits with the
        // in-use bit (2): the walkthrough's verifier allocation of type
        // 0xc1 shows PoolType 0x43.
        let stored_type = (block.pool_type & 0x7f) | 2;
        match self.arch {
            Arch::X86 => {
                let low = units(previous) | (pool_index << 9);
                let high = units(block.size) | (stored_type << 9);
                let ulong1 = low | (high << 16);
                let mut bytes = ulong1.to_le_bytes().to_vec();
                bytes.extend_from_slice(&block.tag.to_le_bytes());
                bytes
            }
            Arch::X64 => {
                let mut bytes = vec![
                    u8::try_from(units(previous)).unwrap_or(0),
                    u8::try_from(pool_index).unwrap_or(0),
                    u8::try_from(units(block.size)).unwrap_or(0),
                    u8::try_from(stored_type).unwrap_or(0),
                ];
                bytes.extend_from_slice(&block.tag.to_le_bytes());
                bytes.extend_from_slice(&[0; 8]); // ProcessBilled
                bytes
            }
        }
    }

    /// The header of the free remainder of a page.
    fn free_header(&self, previous: u64, size: u64) -> Vec<u8> {
        let unit = self.unit();
        let units = |bytes: u64| u32::try_from(bytes / unit).unwrap_or(0);
        match self.arch {
            Arch::X86 => {
                let ulong1 = units(previous) | (units(size) << 16);
                let mut bytes = ulong1.to_le_bytes().to_vec();
                bytes.extend_from_slice(&[0; 4]);
                bytes
            }
            Arch::X64 => {
                let mut bytes = vec![
                    u8::try_from(units(previous)).unwrap_or(0),
                    0,
                    u8::try_from(units(size)).unwrap_or(0),
                    0,
                ];
                bytes.extend_from_slice(&[0; 12]);
                bytes
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Unlimited;

    impl Grow for Unlimited {
        fn grow(&mut self, _: u64, _: u64) -> bool {
            true
        }
    }

    #[test]
    fn the_walkthrough_block_is_0x78_on_x86_and_0x80_on_x64() {
        let tag = u32::from_le_bytes(*b"abcd");
        let mut x86 = Pool::new(Arch::X86);
        let (block, writes) = x86
            .allocate(0xc1, 0x70, tag, &mut Unlimited)
            .expect("block");
        assert_eq!(block.size, 0x78);
        assert_eq!(block.address, block.header + 8);
        let header = u32::from_le_bytes(writes[0].1[..4].try_into().expect("4"));
        assert_eq!((header >> 16) & 0x1ff, 0xf, "BlockSize in 8-byte units");
        assert_eq!(header >> 25, 0x43, "PoolType as the walkthrough shows it");
        assert_eq!((header >> 9) & 0x7f, 1, "PoolIndex of paged pool");
        assert_eq!(Region::of(0xc1), Region::Paged);

        let mut x64 = Pool::new(Arch::X64);
        let (block, writes) = x64
            .allocate(0xc1, 0x70, tag, &mut Unlimited)
            .expect("block");
        assert_eq!(block.size, 0x80);
        assert_eq!(writes[0].1[2], 8, "BlockSize in 16-byte units");
        assert_eq!(writes[0].1.len(), 16);
    }

    #[test]
    fn blocks_follow_each_other_and_free_ones_are_reused() {
        let mut pool = Pool::new(Arch::X86);
        let (first, _) = pool.allocate(1, 0x10, 1, &mut Unlimited).expect("first");
        let (second, writes) = pool.allocate(1, 0x20, 2, &mut Unlimited).expect("second");
        assert_eq!(second.header, first.header + first.size);
        let header = u32::from_le_bytes(writes[0].1[..4].try_into().expect("4"));
        assert_eq!(
            header & 0x1ff,
            3,
            "PreviousSize: the first block's 0x18 bytes"
        );
        assert!(pool.free(first.address).is_some());
        assert!(pool.free(first.address).is_none(), "already free");
        let (again, _) = pool.allocate(1, 0x10, 3, &mut Unlimited).expect("again");
        assert_eq!(again.address, first.address);
        assert_eq!(pool.block_at(second.address + 4).map(|b| b.tag), Some(2));
    }

    #[test]
    fn requests_no_region_can_hold_get_null_and_take_nothing() {
        for arch in [Arch::X86, Arch::X64] {
            let mut pool = Pool::new(arch);
            for size in [
                u64::MAX,
                u64::MAX - 0xfff,
                u64::MAX - 0xf,
                u64::from(u32::MAX),
                Region::SIZE + 1,
            ] {
                assert!(
                    pool.allocate(0, size, 1, &mut Unlimited).is_none(),
                    "{arch} 0x{size:x}"
                );
            }
            let (small, _) = pool.allocate(0, 0x20, 2, &mut Unlimited).expect("small");
            assert_eq!(
                small.header,
                Region::NonPaged.base(arch),
                "{arch}: nothing taken"
            );
        }
    }

    #[test]
    fn large_requests_are_big_pool_pages() {
        let mut pool = Pool::new(Arch::X64);
        let (block, writes) = pool.allocate(0, 0x2000, 7, &mut Unlimited).expect("big");
        assert!(block.big && writes.is_empty());
        assert_eq!(block.address % PAGE, 0);
    }
}
