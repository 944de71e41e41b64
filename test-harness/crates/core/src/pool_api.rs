//! What the kernel's pool routines mean, in one table: which argument is
//! the size and which the tag, how `POOL_FLAGS` map to a pool type, the tag
//! untagged allocations get.
//!
//! Engines report raw calls (argument slots as the routine received them);
//! this module reads them.

use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::nt::{PoolType, TAG_NONE};

/// The pool routines the verifier's pool tracking follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PoolRoutine {
    /// `ExAllocatePoolWithTag(PoolType, NumberOfBytes, Tag)`.
    ExAllocatePoolWithTag,
    /// `ExAllocatePoolWithTagPriority(PoolType, NumberOfBytes, Tag, Priority)`.
    ExAllocatePoolWithTagPriority,
    /// `ExAllocatePoolWithQuotaTag(PoolType, NumberOfBytes, Tag)`.
    ExAllocatePoolWithQuotaTag,
    /// `ExAllocatePool(PoolType, NumberOfBytes)`: tagged "None".
    ExAllocatePool,
    /// `ExAllocatePoolWithQuota(PoolType, NumberOfBytes)`: tagged "None".
    ExAllocatePoolWithQuota,
    /// `ExAllocatePoolZero(PoolType, NumberOfBytes, Tag)`, an inline WDK
    /// wrapper that some drivers import as a function.
    ExAllocatePoolZero,
    /// `ExAllocatePool2(POOL_FLAGS Flags, NumberOfBytes, Tag)`.
    ExAllocatePool2,
    /// `ExAllocatePool3(Flags, NumberOfBytes, Tag, ExtendedParameters, Count)`.
    ExAllocatePool3,
    /// `ExFreePoolWithTag(P, Tag)`.
    ExFreePoolWithTag,
    /// `ExFreePool(P)`.
    ExFreePool,
    /// `ExFreePool2(P, Tag, ExtendedParameters, Count)`.
    ExFreePool2,
}

/// What one pool call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolOp {
    /// An allocation; `address` 0 means it failed.
    Alloc {
        /// The pool it came from.
        pool: PoolType,
        /// Bytes requested.
        size: u64,
        /// Tag.
        tag: u32,
        /// Address returned.
        address: u64,
    },
    /// A free.
    Free {
        /// Address given back.
        address: u64,
        /// Tag given, for the tagged routines.
        tag: Option<u32>,
    },
}

/// `POOL_FLAG_NON_PAGED_EXECUTE`.
pub(crate) const POOL_FLAG_NON_PAGED_EXECUTE: u64 = 0x80;
/// `POOL_FLAG_PAGED`.
pub(crate) const POOL_FLAG_PAGED: u64 = 0x100;

impl PoolRoutine {
    /// Every routine, allocations first.
    pub const ALL: [Self; 11] = [
        Self::ExAllocatePoolWithTag,
        Self::ExAllocatePoolWithTagPriority,
        Self::ExAllocatePoolWithQuotaTag,
        Self::ExAllocatePool,
        Self::ExAllocatePoolWithQuota,
        Self::ExAllocatePoolZero,
        Self::ExAllocatePool2,
        Self::ExAllocatePool3,
        Self::ExFreePoolWithTag,
        Self::ExFreePool,
        Self::ExFreePool2,
    ];

    /// The exported name.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::ExAllocatePoolWithTag => "ExAllocatePoolWithTag",
            Self::ExAllocatePoolWithTagPriority => "ExAllocatePoolWithTagPriority",
            Self::ExAllocatePoolWithQuotaTag => "ExAllocatePoolWithQuotaTag",
            Self::ExAllocatePool => "ExAllocatePool",
            Self::ExAllocatePoolWithQuota => "ExAllocatePoolWithQuota",
            Self::ExAllocatePoolZero => "ExAllocatePoolZero",
            Self::ExAllocatePool2 => "ExAllocatePool2",
            Self::ExAllocatePool3 => "ExAllocatePool3",
            Self::ExFreePoolWithTag => "ExFreePoolWithTag",
            Self::ExFreePool => "ExFreePool",
            Self::ExFreePool2 => "ExFreePool2",
        }
    }

    /// The routine an exported name stands for.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|routine| routine.name() == name)
    }

    /// Whether it allocates (else it frees).
    #[must_use]
    pub const fn allocates(self) -> bool {
        !matches!(
            self,
            Self::ExFreePoolWithTag | Self::ExFreePool | Self::ExFreePool2
        )
    }

    /// Argument slots the routine takes on `arch`: pointer-sized stack
    /// slots on x86 (a 64-bit `POOL_FLAGS` takes two), registers and slots
    /// on x64.
    #[must_use]
    pub const fn slots(self, arch: Arch) -> usize {
        let wide_flags = matches!(arch, Arch::X86) as usize;
        match self {
            Self::ExFreePool => 1,
            Self::ExAllocatePool | Self::ExAllocatePoolWithQuota | Self::ExFreePoolWithTag => 2,
            Self::ExAllocatePoolWithTag
            | Self::ExAllocatePoolWithQuotaTag
            | Self::ExAllocatePoolZero => 3,
            Self::ExAllocatePoolWithTagPriority | Self::ExFreePool2 => 4,
            Self::ExAllocatePool2 => 3 + wide_flags,
            Self::ExAllocatePool3 => 5 + wide_flags,
        }
    }

    /// Reads a call: `args` are the argument slots, `result` what it returned.
    #[must_use]
    pub fn read(self, arch: Arch, args: &[u64], result: u64) -> PoolOp {
        let arg = |index: usize| args.get(index).copied().unwrap_or(0);
        let low = |value: u64| u32::try_from(value & 0xffff_ffff).unwrap_or(0);
        let pool_type = |value: u64| PoolType::from_value(low(value));
        let alloc = |pool, size, tag| PoolOp::Alloc {
            pool,
            size,
            tag,
            address: result,
        };
        match self {
            Self::ExAllocatePoolWithTag
            | Self::ExAllocatePoolWithTagPriority
            | Self::ExAllocatePoolWithQuotaTag
            | Self::ExAllocatePoolZero => alloc(pool_type(arg(0)), arg(1), low(arg(2))),
            Self::ExAllocatePool | Self::ExAllocatePoolWithQuota => {
                alloc(pool_type(arg(0)), arg(1), TAG_NONE)
            }
            Self::ExAllocatePool2 | Self::ExAllocatePool3 => {
                // POOL_FLAGS is a ULONG64: two stack slots on x86.
                let (flags, rest) = match arch {
                    Arch::X86 => (arg(0) | (arg(1) << 32), 2),
                    Arch::X64 => (arg(0), 1),
                };
                alloc(pool_type_from_flags(flags), arg(rest), low(arg(rest + 1)))
            }
            Self::ExFreePoolWithTag | Self::ExFreePool2 => PoolOp::Free {
                address: arg(0),
                tag: Some(low(arg(1))),
            },
            Self::ExFreePool => PoolOp::Free {
                address: arg(0),
                tag: None,
            },
        }
    }
}

/// The pool type `ExAllocatePool2` flags select.
#[must_use]
pub(crate) const fn pool_type_from_flags(flags: u64) -> PoolType {
    if flags & POOL_FLAG_PAGED != 0 {
        PoolType::PagedPool
    } else if flags & POOL_FLAG_NON_PAGED_EXECUTE != 0 {
        PoolType::NonPagedPool
    } else {
        PoolType::NonPagedPoolNx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for routine in PoolRoutine::ALL {
            assert_eq!(PoolRoutine::from_name(routine.name()), Some(routine));
        }
        assert_eq!(PoolRoutine::from_name("ExAllocatePoolWithTagX"), None);
    }

    #[test]
    fn pool2_flags_take_two_slots_on_x86() {
        let x86 = PoolRoutine::ExAllocatePool2.read(Arch::X86, &[0x100, 0, 0x40, 0x6463_6261], 8);
        let x64 = PoolRoutine::ExAllocatePool2.read(Arch::X64, &[0x100, 0x40, 0x6463_6261], 8);
        let expected = PoolOp::Alloc {
            pool: PoolType::PagedPool,
            size: 0x40,
            tag: 0x6463_6261,
            address: 8,
        };
        assert_eq!(x86, expected);
        assert_eq!(x64, expected);
        assert_eq!(PoolRoutine::ExAllocatePool2.slots(Arch::X86), 4);
        assert_eq!(pool_type_from_flags(0x40), PoolType::NonPagedPoolNx);
        assert_eq!(pool_type_from_flags(0x80), PoolType::NonPagedPool);
    }

    #[test]
    fn untagged_allocations_are_tagged_none() {
        let op = PoolRoutine::ExAllocatePool.read(Arch::X64, &[512, 0x10], 0x20);
        assert!(matches!(
            op,
            PoolOp::Alloc {
                tag: TAG_NONE,
                pool: PoolType::NonPagedPoolNx,
                ..
            }
        ));
    }
}
