//! Driver Verifier's flags (`verifier /flags`), one table for the command
//! line, the engines and the debugger's `!verifier`.
//!
//! Bit meanings are verifier.exe's (MicrosoftDocs/windows-driver-docs,
//! devtest/driver-verifier-command-syntax.md and `!verifier`'s listing in the
//! walkthrough). Whatever bits are set, the automatic checks apply
//! (devtest/automatic-checks.md).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::arch::Arch;

/// One verifier flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag {
    /// Its bit.
    pub bit: u32,
    /// `!verifier`'s name for it.
    pub name: &'static str,
    /// Listed under `STANDARD FLAGS` (else `ADDITIONAL FLAGS`).
    pub standard: bool,
    /// The native engine applies it.
    pub native: bool,
}

const fn flag(bit: u32, name: &'static str, standard: bool, native: bool) -> Flag {
    Flag {
        bit,
        name,
        standard,
        native,
    }
}

/// Every flag `!verifier` lists on Windows 7, in its order.
pub const FLAGS: [Flag; 11] = [
    flag(0x1, "Special pool", true, true),
    flag(0x2, "Force IRQL checking", true, true),
    flag(0x8, "Pool tracking", true, true),
    flag(0x10, "I/O verification", true, false),
    flag(0x20, "Deadlock detection", true, false),
    flag(0x80, "DMA checking", true, false),
    flag(0x100, "Security checks", true, false),
    flag(0x800, "Miscellaneous checks", true, false),
    flag(0x4, "Randomized low resources simulation", false, true),
    flag(0x200, "Force pending I/O requests", false, false),
    flag(0x400, "IRP logging", false, false),
];

/// Special pool.
pub const SPECIAL_POOL: u32 = 0x1;
/// Force IRQL checking.
pub const FORCE_IRQL_CHECKING: u32 = 0x2;
/// Pool tracking.
pub const POOL_TRACKING: u32 = 0x8;
/// Low resources simulation.
pub const LOW_RESOURCES: u32 = 0x4;

/// The low resources simulation's chance of failing an allocation, in
/// percent (devtest/low-resources-simulation.md: "The default value is 6%").
pub const LOW_RESOURCES_PERCENT: u64 = 6;

/// The low resources simulation's draw for one allocation: the next state
/// of a xorshift64* generator started from `--seed`, and whether the
/// allocation fails. Deterministic, so a run can be repeated.
#[must_use]
pub const fn low_resources_draw(state: u64) -> (u64, bool) {
    // A zero state would stay zero.
    let mut x = if state == 0 {
        0x9E37_79B9_7F4A_7C15
    } else {
        state
    };
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    let value = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
    (x, (value >> 32) % 100 < LOW_RESOURCES_PERCENT)
}

/// Special pool's page size.
const PAGE: u64 = 0x1000;

/// Where special pool puts a block of `size` bytes on `page` (Verify End).
///
/// Each allocation gets a page of its own, its header at the page start and
/// the block at the highest aligned address that fits; the pages on both
/// sides stay inaccessible (devtest/special-pool.md). `None` when the
/// request does not fit a page beside the header (Windows then uses normal
/// pool).
#[must_use]
pub const fn special_pool_block(arch: Arch, page: u64, size: u64) -> Option<u64> {
    let unit = arch.pool_granularity();
    let rounded = if size == 0 {
        unit
    } else {
        size.div_ceil(unit) * unit
    };
    if rounded > PAGE - arch.pool_header_size() {
        return None;
    }
    Some(page + PAGE - rounded)
}

/// The special pool page holding `address`.
#[must_use]
pub const fn special_pool_page(address: u64) -> u64 {
    address & !(PAGE - 1)
}

/// The verifier flags a run uses (`verifier /flags`); 0 = the driver is not
/// verified at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VerifierFlags(pub u32);

impl Default for VerifierFlags {
    /// 0x8, the walkthrough's `verifier /flags 0x8`.
    fn default() -> Self {
        Self(POOL_TRACKING)
    }
}

impl VerifierFlags {
    /// Whether `bit` is set.
    #[must_use]
    pub const fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }

    /// The set flags the native engine does not apply, or bits no flag has.
    /// None set (0) is the verifier off: the release kernel's own pool
    /// checks, which the native engine applies.
    #[must_use]
    pub fn unsupported_native(self) -> Vec<String> {
        let mut left = self.0;
        let mut names = Vec::new();
        for flag in FLAGS {
            if left & flag.bit != 0 {
                left &= !flag.bit;
                if !flag.native {
                    names.push(format!("0x{:x} ({})", flag.bit, flag.name));
                }
            }
        }
        if left != 0 {
            names.push(format!("0x{left:x} (no such verifier flag)"));
        }
        names
    }

    /// The set flags' names, `, `-separated (`Force IRQL checking, Pool tracking`).
    #[must_use]
    pub fn names(self) -> String {
        let mut names: Vec<String> = FLAGS
            .iter()
            .filter(|flag| self.has(flag.bit))
            .map(|flag| flag.name.to_owned())
            .collect();
        let known = FLAGS.iter().fold(0, |bits, flag| bits | flag.bit);
        if self.0 & !known != 0 {
            names.push(format!("unknown 0x{:x}", self.0 & !known));
        }
        if names.is_empty() {
            names.push("none".into());
        }
        names.join(", ")
    }

    /// Parses `0x8`, `8` (hex, as verifier.exe reads `/flags`) or `0n8`.
    ///
    /// # Errors
    /// Not a number.
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        let value = trimmed.strip_prefix("0n").map_or_else(
            || {
                let hex = trimmed
                    .strip_prefix("0x")
                    .or_else(|| trimmed.strip_prefix("0X"))
                    .unwrap_or(trimmed);
                u32::from_str_radix(hex, 16).ok()
            },
            |decimal| decimal.parse::<u32>().ok(),
        );
        value
            .map(Self)
            .ok_or_else(|| format!("'{text}' is not verifier flags (a hex number such as 0x8)"))
    }
}

impl fmt::Display for VerifierFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_resources_fails_about_six_percent() {
        let mut state = 1;
        let mut failed = 0;
        for _ in 0..10_000 {
            let (next, fail) = low_resources_draw(state);
            state = next;
            failed += u32::from(fail);
        }
        assert!((500..700).contains(&failed), "{failed}");
    }

    #[test]
    fn parses_as_verifier_exe_does() {
        assert_eq!(VerifierFlags::parse("0x8"), Ok(VerifierFlags(8)));
        assert_eq!(VerifierFlags::parse("b"), Ok(VerifierFlags(0xb)));
        assert_eq!(VerifierFlags::parse("0n10"), Ok(VerifierFlags(10)));
        assert!(VerifierFlags::parse("pool").is_err());
        assert_eq!(VerifierFlags::default(), VerifierFlags(8));
    }

    #[test]
    fn names_what_the_native_engine_lacks() {
        assert!(VerifierFlags(0xf).unsupported_native().is_empty());
        assert_eq!(
            VerifierFlags(0x10019).unsupported_native(),
            ["0x10 (I/O verification)", "0x10000 (no such verifier flag)"]
        );
        assert!(VerifierFlags(0).unsupported_native().is_empty());
    }
}
