//! The emulated machine's address space: kernel virtual addresses mapped
//! onto low "physical" memory through Unicorn's virtual TLB.
//!
//! High x64 kernel addresses (`fffff800'...`) fail intermittently when
//! mapped directly; translating them in a TLB-fill hook is stable, and
//! it gives x86 and x64 the same model.

use unicorn_engine::Prot;

/// Bytes in a page.
pub const PAGE: u64 = 0x1000;

/// The most physical memory one machine may use (all regions together).
pub(crate) const MAX_PHYSICAL: u64 = 512 << 20;

/// Where physical memory starts; below 4 GiB, which 32-bit x86 can address.
const PHYSICAL_BASE: u64 = 0x0100_0000;

/// One mapped range of virtual addresses.
#[derive(Debug, Clone)]
pub struct Region {
    /// First virtual address (page aligned).
    pub va: u64,
    /// Bytes (page multiple).
    pub size: u64,
    /// Physical address of `va`.
    pub pa: u64,
    /// Access rights.
    pub perms: Prot,
    /// What it holds (for `!address`-like answers and errors).
    pub name: String,
}

impl Region {
    /// Whether `va` lies inside.
    #[must_use]
    pub const fn contains(&self, va: u64) -> bool {
        va >= self.va && va - self.va < self.size
    }
}

/// Why memory could not be mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// The request overlaps a mapped region.
    #[error("{name} at 0x{va:x} overlaps {other}")]
    Overlap {
        /// The new region.
        name: String,
        /// Its address.
        va: u64,
        /// The region in the way.
        other: String,
    },
    /// All physical memory is used.
    #[error("the emulated machine is out of memory (limit {} MiB)", MAX_PHYSICAL >> 20)]
    OutOfMemory,
    /// Unicorn refused the mapping.
    #[error("unicorn could not map {name}: {error}")]
    Unicorn {
        /// The region.
        name: String,
        /// Unicorn's error.
        error: String,
    },
}

/// The virtual-to-physical map.
#[derive(Debug, Default)]
pub struct AddressSpace {
    regions: Vec<Region>,
    next_pa: u64,
}

impl AddressSpace {
    /// An empty address space.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            regions: Vec::new(),
            next_pa: PHYSICAL_BASE,
        }
    }

    /// Reserves a region; the caller maps its physical pages in Unicorn.
    ///
    /// # Errors
    /// Overlap, or the machine's memory limit.
    pub(crate) fn reserve(
        &mut self,
        va: u64,
        size: u64,
        perms: Prot,
        name: &str,
    ) -> Result<Region, MapError> {
        let size = size.div_ceil(PAGE) * PAGE;
        let va = va & !(PAGE - 1);
        if let Some(other) = self
            .regions
            .iter()
            .find(|region| va < region.va + region.size && region.va < va.saturating_add(size))
        {
            return Err(MapError::Overlap {
                name: name.to_owned(),
                va,
                other: other.name.clone(),
            });
        }
        if self.next_pa - PHYSICAL_BASE + size > MAX_PHYSICAL {
            return Err(MapError::OutOfMemory);
        }
        let region = Region {
            va,
            size,
            pa: self.next_pa,
            perms,
            name: name.to_owned(),
        };
        self.next_pa += size;
        let at = self.regions.partition_point(|other| other.va < va);
        self.regions.insert(at, region.clone());
        Ok(region)
    }

    /// Gives up the region starting at `va` (its physical pages stay used):
    /// its addresses fault from now on.
    pub(crate) fn release(&mut self, va: u64) {
        self.regions.retain(|region| region.va != va);
    }

    /// The region holding `va`.
    #[must_use]
    pub fn region(&self, va: u64) -> Option<&Region> {
        let at = self.regions.partition_point(|region| region.va <= va);
        let region = self.regions.get(at.checked_sub(1)?)?;
        region.contains(va).then_some(region)
    }

    /// The physical address of `va`, and how many bytes follow it in the
    /// same region.
    #[must_use]
    pub(crate) fn translate(&self, va: u64) -> Option<(u64, u64, Prot)> {
        let region = self.region(va)?;
        let offset = va - region.va;
        Some((region.pa + offset, region.size - offset, region.perms))
    }

    /// Every region, in address order.
    #[must_use]
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// Physical bytes in use.
    #[must_use]
    pub const fn used(&self) -> u64 {
        self.next_pa - PHYSICAL_BASE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_translate_and_refuse_overlaps() {
        let mut space = AddressSpace::new();
        let nt = space
            .reserve(0x82a0_0000, 0x1_0000, Prot::ALL, "nt")
            .expect("nt");
        assert_eq!(nt.pa, PHYSICAL_BASE);
        let driver = space
            .reserve(0xa04c_0000, 0x3000, Prot::ALL, "Sample")
            .expect("driver");
        assert_eq!(
            space.translate(0xa04c_1027).map(|t| t.0),
            Some(driver.pa + 0x1027)
        );
        assert_eq!(space.translate(0xa04c_3000), None);
        assert!(matches!(
            space.reserve(0x82a0_f000, 0x2000, Prot::ALL, "x"),
            Err(MapError::Overlap { .. })
        ));
        assert!(matches!(
            space.reserve(0xc000_0000, MAX_PHYSICAL, Prot::ALL, "huge"),
            Err(MapError::OutOfMemory)
        ));
    }
}
