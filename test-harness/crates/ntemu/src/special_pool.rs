//! Driver Verifier's special pool (flag 0x1), Verify End.
//!
//! As Windows 7 lays it out (devtest/special-pool.md): every allocation of
//! the driver gets a page of its own, its header at the page start and the
//! block at the highest aligned address that fits, the rest of the page
//! filled with a pattern that is checked when the block is freed; the pages
//! on both sides are never mapped, and a freed page is unmapped, so that
//! touching either faults at once.
//!
//! The header here is the emulator's own (the size requested, then the tag);
//! the pattern byte is the low byte of the block's address.

use std::collections::HashMap;

use unicorn_engine::unicorn_const::Prot;

use super::cpu::{self, Uc};
use super::machine::Halt;
use super::memory::PAGE;
use harness_core::arch::Arch;
use harness_core::verifier::{special_pool_block, special_pool_page};

/// The most special pool allocations a run makes; later ones come from
/// normal pool, as on Windows once special pool is used up.
const MAX_BLOCKS: u64 = 0x1000;

/// Where special pool starts (a free stretch of the emulated kernel space).
const fn base(arch: Arch) -> u64 {
    match arch {
        Arch::X86 => 0x9c00_0000,
        Arch::X64 => 0xFFFF_F8A0_1000_0000,
    }
}

/// One special pool block.
#[derive(Debug, Clone, Copy)]
struct Block {
    bytes: u64,
    tag: u32,
    /// The physical page, while the block is live.
    pa: Option<u64>,
}

/// The special pool of one machine.
#[derive(Debug, Default)]
pub struct SpecialPool {
    /// The size the driver asked for in the allocation under way.
    pub requested: Option<u64>,
    /// Blocks handed out so far (each takes its page and a guard page).
    count: u64,
    blocks: HashMap<u64, Block>,
}

/// A special pool block as `!pool` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shown {
    /// The block's address.
    pub address: u64,
    /// The bytes requested.
    pub bytes: u64,
    /// Its tag.
    pub tag: u32,
    /// Not freed yet.
    pub live: bool,
}

impl SpecialPool {
    /// The block whose page (or the guard page after it) holds `address`.
    #[must_use]
    pub fn block_at(&self, address: u64) -> Option<Shown> {
        let page = special_pool_page(address);
        self.blocks.iter().find_map(|(&at, block)| {
            let own = special_pool_page(at);
            (own == page || own + PAGE == page).then_some(Shown {
                address: at,
                bytes: block.bytes,
                tag: block.tag,
                live: block.pa.is_some(),
            })
        })
    }

    /// Whether `address` is a live special pool block.
    #[must_use]
    pub fn live(&self, address: u64) -> bool {
        self.blocks
            .get(&address)
            .is_some_and(|block| block.pa.is_some())
    }
}

/// The pattern byte around the block at `address`.
const fn pattern(address: u64) -> u8 {
    (address & 0xff) as u8
}

/// Allocates `size` bytes on a page of their own; `None` when the request
/// does not fit a page or special pool is used up (normal pool then).
///
/// # Errors
/// The page could not be written (never, once mapped).
pub fn allocate(uc: &mut Uc<'_>, size: u64, tag: u32) -> Result<Option<u64>, Halt> {
    let arch = cpu::arch(uc);
    let count = uc.get_data().special.count;
    if count >= MAX_BLOCKS {
        return Ok(None);
    }
    let page = base(arch) + 2 * PAGE * count;
    let Some(address) = special_pool_block(arch, page, size) else {
        return Ok(None);
    };
    let Ok(region) =
        uc.get_data_mut()
            .space
            .reserve(page, PAGE, Prot::READ | Prot::WRITE, "special pool")
    else {
        return Ok(None);
    };
    if uc.mem_map(region.pa, PAGE, Prot::ALL).is_err() {
        return Ok(None);
    }
    let special = &mut uc.get_data_mut().special;
    special.count += 1;
    special.blocks.insert(
        address,
        Block {
            bytes: size,
            tag,
            pa: Some(region.pa),
        },
    );
    let mut bytes = vec![pattern(address); usize::try_from(PAGE).unwrap_or(0)];
    let header = arch.pool_header_size();
    bytes[..4].copy_from_slice(&u32::try_from(size).unwrap_or(u32::MAX).to_le_bytes());
    bytes[4..8].copy_from_slice(&tag.to_le_bytes());
    if header > 8 {
        bytes[8..usize::try_from(header).unwrap_or(8)].fill(0);
    }
    cpu::write(uc, page, &bytes)?;
    Ok(Some(address))
}

/// The first byte around a live block that no longer holds the pattern.
///
/// # Errors
/// The page could not be read (never, while the block is live).
pub fn corrupted(uc: &Uc<'_>, address: u64) -> Result<Option<u64>, Halt> {
    let Some(block) = uc.get_data().special.blocks.get(&address).copied() else {
        return Ok(None);
    };
    if block.pa.is_none() {
        return Ok(None);
    }
    let page = special_pool_page(address);
    let mut bytes = vec![0; usize::try_from(PAGE).unwrap_or(0)];
    cpu::read(uc, page, &mut bytes).map_err(|_| Halt::Gap)?;
    let header = cpu::arch(uc).pool_header_size();
    let end = address + block.bytes;
    let changed = (page + header..address)
        .chain(end..page + PAGE)
        .find(|at| bytes[usize::try_from(at - page).unwrap_or(0)] != pattern(address));
    Ok(changed)
}

/// Frees a live block: its page goes (any later touch faults). Returns its
/// tag, `None` when `address` is no live special pool block.
pub fn free(uc: &mut Uc<'_>, address: u64) -> Option<u32> {
    let block = uc.get_data_mut().special.blocks.get_mut(&address)?;
    // Its physical page stays mapped in Unicorn, unreachable: no virtual
    // address leads there any more.
    block.pa.take()?;
    let tag = block.tag;
    let page = special_pool_page(address);
    uc.get_data_mut().space.release(page);
    let _ = uc.ctl_flush_tlb();
    Some(tag)
}
