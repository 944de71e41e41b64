//! Windows names in one place: bug check codes, NTSTATUS values, pool types
//! and pool tags, as `!analyze -v`, `!pool` and `!verifier` print them.

use serde::{Deserialize, Serialize};

use crate::arch::Arch;

/// `DRIVER_VERIFIER_DETECTED_VIOLATION`.
pub const DRIVER_VERIFIER_DETECTED_VIOLATION: u32 = 0xC4;
/// `SYSTEM_THREAD_EXCEPTION_NOT_HANDLED`.
pub const SYSTEM_THREAD_EXCEPTION_NOT_HANDLED: u32 = 0x7E;
/// `UNEXPECTED_KERNEL_MODE_TRAP`.
pub(crate) const UNEXPECTED_KERNEL_MODE_TRAP: u32 = 0x7F;
/// 0x7F's Arg1 for a double fault (the trap number, `EXCEPTION_DOUBLE_FAULT`).
pub(crate) const DOUBLE_FAULT: u64 = 8;
/// `ATTEMPTED_WRITE_TO_READONLY_MEMORY`.
pub(crate) const ATTEMPTED_WRITE_TO_READONLY_MEMORY: u32 = 0xBE;
/// `PAGE_FAULT_IN_NONPAGED_AREA`.
pub(crate) const PAGE_FAULT_IN_NONPAGED_AREA: u32 = 0x50;
/// wdk-panic's bug check code, "RPNC".
pub(crate) const RUST_PANIC: u32 = 0x5250_4E43;

/// `SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION`.
pub const SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION: u32 = 0xC1;
/// `BAD_POOL_CALLER`: the release kernel's own pool checks.
pub const BAD_POOL_CALLER: u32 = 0xC2;

/// 0xC2's Arg1 values the release kernel raises (`MicrosoftDocs`
/// windows-driver-docs, debugger/bug-check-0xc2--bad-pool-caller.md).
pub(crate) mod c2 {
    /// Freeing pool already freed (Arg3 the header's contents, Arg4 the block).
    pub const DOUBLE_FREE: u64 = 0x07;
    /// Allocating at an invalid IRQL (Arg2 IRQL, Arg3 pool type, Arg4 size).
    pub const ALLOC_IRQL: u64 = 0x08;
    /// Freeing at an invalid IRQL (Arg2 IRQL, Arg3 pool type, Arg4 the block).
    pub const FREE_IRQL: u64 = 0x09;
}
/// `PAGE_FAULT_IN_FREED_SPECIAL_POOL` (nt's own code touched it).
pub(crate) const PAGE_FAULT_IN_FREED_SPECIAL_POOL: u32 = 0xCC;
/// `PAGE_FAULT_BEYOND_END_OF_ALLOCATION` (nt's own code touched it).
pub(crate) const PAGE_FAULT_BEYOND_END_OF_ALLOCATION: u32 = 0xCD;
/// `DRIVER_PAGE_FAULT_IN_FREED_SPECIAL_POOL`.
pub const DRIVER_PAGE_FAULT_IN_FREED_SPECIAL_POOL: u32 = 0xD5;
/// `DRIVER_PAGE_FAULT_BEYOND_END_OF_ALLOCATION`.
pub const DRIVER_PAGE_FAULT_BEYOND_END_OF_ALLOCATION: u32 = 0xD6;

/// `WORKER_THREAD_RETURNED_AT_BAD_IRQL`.
pub const WORKER_THREAD_RETURNED_AT_BAD_IRQL: u32 = 0xE1;

/// 0xC4's Arg1 values the pool tracker raises.
pub mod c4 {
    /// A zero-byte allocation.
    pub(crate) const ZERO_BYTES: u64 = 0x00;
    /// Paged pool allocated above `APC_LEVEL`.
    pub const PAGED_ALLOC_ABOVE_APC: u64 = 0x01;
    /// Nonpaged pool allocated above `DISPATCH_LEVEL`.
    pub(crate) const NONPAGED_ALLOC_ABOVE_DISPATCH: u64 = 0x02;
    /// Paged pool freed above `APC_LEVEL`.
    pub(crate) const PAGED_FREE_ABOVE_APC: u64 = 0x11;
    /// Nonpaged pool freed above `DISPATCH_LEVEL`.
    pub(crate) const NONPAGED_FREE_ABOVE_DISPATCH: u64 = 0x12;
    /// Freeing an address no allocation returned.
    pub(crate) const FREE_UNALLOCATED: u64 = 0x10;
    /// Freeing pool already freed.
    pub const DOUBLE_FREE: u64 = 0x13;
    /// Freeing an address no block can start at (misaligned).
    pub(crate) const FREE_MISALIGNED: u64 = 0x16;
    /// The driver unloaded with pool allocations outstanding.
    pub const LEAKED_AT_UNLOAD: u64 = 0x62;
}

/// NTSTATUS values the harness names.
pub mod status {
    /// `STATUS_SUCCESS`.
    pub const SUCCESS: u32 = 0;
    /// `STATUS_UNSUCCESSFUL`.
    pub(crate) const UNSUCCESSFUL: u32 = 0xC000_0001;
    /// `STATUS_NOT_IMPLEMENTED`.
    pub(crate) const NOT_IMPLEMENTED: u32 = 0xC000_0002;
    /// `STATUS_ACCESS_VIOLATION`.
    pub(crate) const ACCESS_VIOLATION: u32 = 0xC000_0005;
    /// `STATUS_INVALID_PARAMETER`.
    pub const INVALID_PARAMETER: u32 = 0xC000_000D;
    /// `STATUS_INVALID_DEVICE_REQUEST`.
    pub const INVALID_DEVICE_REQUEST: u32 = 0xC000_0010;
    /// `STATUS_OBJECT_NAME_NOT_FOUND`.
    pub const OBJECT_NAME_NOT_FOUND: u32 = 0xC000_0034;
    /// `STATUS_BUFFER_OVERFLOW` (a warning).
    pub const BUFFER_OVERFLOW: u32 = 0x8000_0005;
    /// `STATUS_TIMEOUT`.
    pub(crate) const TIMEOUT: u32 = 0x0000_0102;
    /// `STATUS_ILLEGAL_INSTRUCTION`.
    pub(crate) const ILLEGAL_INSTRUCTION: u32 = 0xC000_001D;
    /// `STATUS_ACCESS_DENIED`.
    pub(crate) const ACCESS_DENIED: u32 = 0xC000_0022;
    /// `STATUS_BUFFER_TOO_SMALL`.
    pub const BUFFER_TOO_SMALL: u32 = 0xC000_0023;
    /// `STATUS_OBJECT_NAME_COLLISION`.
    pub const OBJECT_NAME_COLLISION: u32 = 0xC000_0035;
    /// `STATUS_INTEGER_DIVIDE_BY_ZERO`.
    pub(crate) const INTEGER_DIVIDE_BY_ZERO: u32 = 0xC000_0094;
    /// `STATUS_PRIVILEGED_INSTRUCTION`.
    pub(crate) const PRIVILEGED_INSTRUCTION: u32 = 0xC000_0096;
    /// `STATUS_INSUFFICIENT_RESOURCES`.
    pub const INSUFFICIENT_RESOURCES: u32 = 0xC000_009A;
    /// `STATUS_DLL_NOT_FOUND`.
    pub(crate) const DLL_NOT_FOUND: u32 = 0xC000_0135;
    /// `STATUS_INVALID_IMAGE_FORMAT`.
    pub(crate) const INVALID_IMAGE_FORMAT: u32 = 0xC000_007B;
    /// `STATUS_DRIVER_ENTRYPOINT_NOT_FOUND`.
    pub(crate) const DRIVER_ENTRYPOINT_NOT_FOUND: u32 = 0xC000_0263;
    /// `STATUS_INFO_LENGTH_MISMATCH`.
    pub(crate) const INFO_LENGTH_MISMATCH: u32 = 0xC000_0004;
    /// `STATUS_BREAKPOINT`.
    pub(crate) const BREAKPOINT: u32 = 0x8000_0003;

    /// Whether an NTSTATUS counts as failure (`!NT_SUCCESS`: warnings and errors).
    #[must_use]
    pub const fn failed(status: u32) -> bool {
        status & 0x8000_0000 != 0
    }
}

/// The symbolic name of an NTSTATUS the harness knows.
#[must_use]
pub(crate) const fn status_name(value: u32) -> Option<&'static str> {
    Some(match value {
        status::SUCCESS => "STATUS_SUCCESS",
        status::UNSUCCESSFUL => "STATUS_UNSUCCESSFUL",
        status::NOT_IMPLEMENTED => "STATUS_NOT_IMPLEMENTED",
        status::ACCESS_VIOLATION => "STATUS_ACCESS_VIOLATION",
        status::INVALID_PARAMETER => "STATUS_INVALID_PARAMETER",
        status::INVALID_DEVICE_REQUEST => "STATUS_INVALID_DEVICE_REQUEST",
        status::OBJECT_NAME_NOT_FOUND => "STATUS_OBJECT_NAME_NOT_FOUND",
        status::BUFFER_OVERFLOW => "STATUS_BUFFER_OVERFLOW",
        status::TIMEOUT => "STATUS_TIMEOUT",
        status::ILLEGAL_INSTRUCTION => "STATUS_ILLEGAL_INSTRUCTION",
        status::ACCESS_DENIED => "STATUS_ACCESS_DENIED",
        status::BUFFER_TOO_SMALL => "STATUS_BUFFER_TOO_SMALL",
        status::OBJECT_NAME_COLLISION => "STATUS_OBJECT_NAME_COLLISION",
        status::INTEGER_DIVIDE_BY_ZERO => "STATUS_INTEGER_DIVIDE_BY_ZERO",
        status::PRIVILEGED_INSTRUCTION => "STATUS_PRIVILEGED_INSTRUCTION",
        status::INSUFFICIENT_RESOURCES => "STATUS_INSUFFICIENT_RESOURCES",
        status::DLL_NOT_FOUND => "STATUS_DLL_NOT_FOUND",
        status::INVALID_IMAGE_FORMAT => "STATUS_INVALID_IMAGE_FORMAT",
        status::DRIVER_ENTRYPOINT_NOT_FOUND => "STATUS_DRIVER_ENTRYPOINT_NOT_FOUND",
        status::INFO_LENGTH_MISMATCH => "STATUS_INFO_LENGTH_MISMATCH",
        status::BREAKPOINT => "STATUS_BREAKPOINT",
        _ => return None,
    })
}

/// The name of a bug check code, as `!analyze -v` titles it.
#[must_use]
pub const fn bugcheck_name(code: u32) -> &'static str {
    match code {
        0x0A => "IRQL_NOT_LESS_OR_EQUAL",
        0x19 => "BAD_POOL_HEADER",
        0x1E => "KMODE_EXCEPTION_NOT_HANDLED",
        UNEXPECTED_KERNEL_MODE_TRAP => "UNEXPECTED_KERNEL_MODE_TRAP",
        PAGE_FAULT_IN_NONPAGED_AREA => "PAGE_FAULT_IN_NONPAGED_AREA",
        SYSTEM_THREAD_EXCEPTION_NOT_HANDLED => "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED",
        ATTEMPTED_WRITE_TO_READONLY_MEMORY => "ATTEMPTED_WRITE_TO_READONLY_MEMORY",
        SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION => "SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION",
        BAD_POOL_CALLER => "BAD_POOL_CALLER",
        PAGE_FAULT_IN_FREED_SPECIAL_POOL => "PAGE_FAULT_IN_FREED_SPECIAL_POOL",
        PAGE_FAULT_BEYOND_END_OF_ALLOCATION => "PAGE_FAULT_BEYOND_END_OF_ALLOCATION",
        DRIVER_VERIFIER_DETECTED_VIOLATION => "DRIVER_VERIFIER_DETECTED_VIOLATION",
        0xD1 => "DRIVER_IRQL_NOT_LESS_OR_EQUAL",
        DRIVER_PAGE_FAULT_IN_FREED_SPECIAL_POOL => "DRIVER_PAGE_FAULT_IN_FREED_SPECIAL_POOL",
        DRIVER_PAGE_FAULT_BEYOND_END_OF_ALLOCATION => "DRIVER_PAGE_FAULT_BEYOND_END_OF_ALLOCATION",
        WORKER_THREAD_RETURNED_AT_BAD_IRQL => "WORKER_THREAD_RETURNED_AT_BAD_IRQL",
        0x139 => "KERNEL_SECURITY_CHECK_FAILURE",
        RUST_PANIC => "RUST_PANIC (wdk-panic \"RPNC\")",
        _ => "UNKNOWN_BUGCHECK",
    }
}

/// What Arg1 means for a bug check code, where the harness knows.
#[must_use]
pub const fn bugcheck_description(code: u32, arg1: u64) -> &'static str {
    match (code, arg1) {
        (DRIVER_VERIFIER_DETECTED_VIOLATION, c4::ZERO_BYTES) => {
            "The driver requested a zero-byte pool allocation."
        }
        // The causes as the 0xC4 page words them.
        (DRIVER_VERIFIER_DETECTED_VIOLATION, c4::PAGED_ALLOC_ABOVE_APC) => {
            "The driver attempted to allocate paged memory with IRQL > APC_LEVEL."
        }
        (DRIVER_VERIFIER_DETECTED_VIOLATION, c4::NONPAGED_ALLOC_ABOVE_DISPATCH) => {
            "The driver attempted to allocate nonpaged memory with IRQL > DISPATCH_LEVEL."
        }
        (DRIVER_VERIFIER_DETECTED_VIOLATION, c4::PAGED_FREE_ABOVE_APC) => {
            "The driver attempted to free paged pool with IRQL > APC_LEVEL."
        }
        (DRIVER_VERIFIER_DETECTED_VIOLATION, c4::NONPAGED_FREE_ABOVE_DISPATCH) => {
            "The driver attempted to free nonpaged pool with IRQL > DISPATCH_LEVEL."
        }
        // Arg4 tells the cause: 0x20 a free of pool not allocated (or freed
        // already), 0x23 / 0x24 bytes around the block changed.
        (SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION, _) => {
            "Special pool found a bad free or the bytes around a block changed (Parameter 4 says which)."
        }
        (BAD_POOL_CALLER, c2::DOUBLE_FREE) => {
            "The current thread attempted to free the pool, which was already freed."
        }
        (BAD_POOL_CALLER, c2::ALLOC_IRQL) => {
            "The current thread attempted to allocate the pool at an invalid IRQL."
        }
        (BAD_POOL_CALLER, c2::FREE_IRQL) => {
            "The current thread attempted to free the pool at an invalid IRQL."
        }
        // The 0xCC and 0xCD pages' words.
        (PAGE_FAULT_IN_FREED_SPECIAL_POOL, _) => {
            "The system has referenced memory which was earlier freed (special pool)."
        }
        (PAGE_FAULT_BEYOND_END_OF_ALLOCATION, _) => {
            "The system accessed memory beyond the end of a special pool allocation."
        }
        (DRIVER_PAGE_FAULT_IN_FREED_SPECIAL_POOL, _) => {
            "A driver referenced memory which was earlier freed (special pool)."
        }
        (DRIVER_PAGE_FAULT_BEYOND_END_OF_ALLOCATION, _) => {
            "A driver accessed memory beyond the end of its special pool allocation."
        }
        (WORKER_THREAD_RETURNED_AT_BAD_IRQL, _) => {
            "A worker thread's routine returned at a raised IRQL (Arg1: the worker routine, Arg2: the IRQL)."
        }
        (DRIVER_VERIFIER_DETECTED_VIOLATION, c4::FREE_UNALLOCATED) => {
            "A driver attempted to free pool which was not allocated."
        }
        (DRIVER_VERIFIER_DETECTED_VIOLATION, c4::FREE_MISALIGNED) => {
            "The driver attempted to free pool at a bad address, or the driver passed invalid parameters to a memory routine."
        }
        (DRIVER_VERIFIER_DETECTED_VIOLATION, 0x13 | 0x14) => {
            "A driver attempted to free pool which was already freed."
        }
        (DRIVER_VERIFIER_DETECTED_VIOLATION, 0x60 | 0x62) => {
            "A driver has forgotten to free its pool allocations prior to unloading."
        }
        (DRIVER_VERIFIER_DETECTED_VIOLATION, 0x61) => {
            "A driver attempted to allocate pool while it was unloading."
        }
        (SYSTEM_THREAD_EXCEPTION_NOT_HANDLED, _) => {
            "A system thread generated an exception which the error handler did not catch."
        }
        (UNEXPECTED_KERNEL_MODE_TRAP, DOUBLE_FAULT) => "EXCEPTION_DOUBLE_FAULT",
        (ATTEMPTED_WRITE_TO_READONLY_MEMORY, _) => "Virtual address for the attempted write.",
        (PAGE_FAULT_IN_NONPAGED_AREA, _) => "Invalid system memory was referenced.",
        (RUST_PANIC, _) => "A Rust driver panicked (wdk-panic bug-checks with \"RPNC\").",
        _ => "",
    }
}

/// `POOL_TYPE` values, as `!pool` and `!verifier` name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PoolType {
    /// `NonPagedPool` (0; executable).
    NonPagedPool,
    /// `PagedPool` (1).
    PagedPool,
    /// `NonPagedPoolMustSucceed` (2).
    NonPagedPoolMustSucceed,
    /// `NonPagedPoolCacheAligned` (4).
    NonPagedPoolCacheAligned,
    /// `PagedPoolCacheAligned` (5).
    PagedPoolCacheAligned,
    /// `NonPagedPoolNx` (512).
    NonPagedPoolNx,
    /// Another value; bit 0 still tells paged from nonpaged.
    Other(u32),
    /// Not known from this source (a `!verifier 3` table without counters).
    Unknown,
}

impl PoolType {
    /// The type a `POOL_TYPE` value names.
    #[must_use]
    pub(crate) const fn from_value(value: u32) -> Self {
        match value {
            0 => Self::NonPagedPool,
            1 => Self::PagedPool,
            2 => Self::NonPagedPoolMustSucceed,
            4 => Self::NonPagedPoolCacheAligned,
            5 => Self::PagedPoolCacheAligned,
            512 => Self::NonPagedPoolNx,
            other => Self::Other(other),
        }
    }

    /// The `POOL_TYPE` value, where known.
    #[must_use]
    pub const fn value(self) -> Option<u32> {
        Some(match self {
            Self::NonPagedPool => 0,
            Self::PagedPool => 1,
            Self::NonPagedPoolMustSucceed => 2,
            Self::NonPagedPoolCacheAligned => 4,
            Self::PagedPoolCacheAligned => 5,
            Self::NonPagedPoolNx => 512,
            Self::Other(value) => value,
            Self::Unknown => return None,
        })
    }

    /// The type named in debugger text (`PagedPool`, `NonPagedPoolNx`, ...).
    #[must_use]
    pub fn from_name(name: &str) -> Self {
        match name {
            "NonPagedPool" => Self::NonPagedPool,
            "PagedPool" => Self::PagedPool,
            "NonPagedPoolMustSucceed" => Self::NonPagedPoolMustSucceed,
            "NonPagedPoolCacheAligned" => Self::NonPagedPoolCacheAligned,
            "PagedPoolCacheAligned" => Self::PagedPoolCacheAligned,
            "NonPagedPoolNx" => Self::NonPagedPoolNx,
            _ => Self::Unknown,
        }
    }

    /// Whether blocks of this type are pageable; `None` when unknown.
    #[must_use]
    pub const fn is_paged(self) -> Option<bool> {
        match self {
            Self::PagedPool | Self::PagedPoolCacheAligned => Some(true),
            Self::NonPagedPool
            | Self::NonPagedPoolMustSucceed
            | Self::NonPagedPoolCacheAligned
            | Self::NonPagedPoolNx => Some(false),
            Self::Other(value) => Some(value & 1 == 1),
            Self::Unknown => None,
        }
    }

    /// The name as the debugger prints it.
    #[must_use]
    pub fn name(self) -> String {
        match self {
            Self::NonPagedPool => "NonPagedPool".into(),
            Self::PagedPool => "PagedPool".into(),
            Self::NonPagedPoolMustSucceed => "NonPagedPoolMustSucceed".into(),
            Self::NonPagedPoolCacheAligned => "NonPagedPoolCacheAligned".into(),
            Self::PagedPoolCacheAligned => "PagedPoolCacheAligned".into(),
            Self::NonPagedPoolNx => "NonPagedPoolNx".into(),
            Self::Other(value) if value & 1 == 1 => format!("PagedPool (type 0x{value:x})"),
            Self::Other(value) => format!("NonPagedPool (type 0x{value:x})"),
            Self::Unknown => "unknown".into(),
        }
    }
}

/// Pool requests of this many bytes or more get NULL from Windows 7 on `arch`.
///
/// Whatever the machine's state: no pool is that large, and the kernel's
/// own allocations already take part of it. So an engine that cannot model
/// pool that large still knows Windows' answer.
///
/// Microsoft's "Memory Limits for Windows and Windows Server Releases":
/// 32-bit kernel-mode virtual address space is 2 GB (every pool lives in
/// it); 64-bit paged pool and nonpaged pool are each at most 128 GB.
#[must_use]
pub const fn pool_request_limit(arch: Arch) -> u64 {
    match arch {
        Arch::X86 => 2 << 30,
        Arch::X64 => 128 << 30,
    }
}

/// The tag `ExAllocatePool` gives (untagged allocations): "None".
pub(crate) const TAG_NONE: u32 = u32::from_le_bytes(*b"None");

/// A pool tag as text: the four bytes in memory order (`0x64636261` -> `abcd`).
#[must_use]
pub fn tag_text(tag: u32) -> String {
    tag.to_le_bytes()
        .iter()
        .map(|&byte| {
            if byte.is_ascii_graphic() || byte == b' ' {
                char::from(byte)
            } else {
                '?'
            }
        })
        .collect::<String>()
        .trim_end()
        .to_owned()
}

/// A tag given on the command line could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad pool tag '{0}': give 1-4 characters (abcd) or a number (0x64636261)")]
pub struct BadTag(pub String);

/// Parses a tag given as text (`abcd`) or as a number (`0x64636261`).
///
/// # Errors
/// Neither one to four printable characters nor a number.
pub fn parse_tag(text: &str) -> Result<u32, BadTag> {
    let trimmed = text.trim().trim_matches('\'');
    if let Some(hex) = trimmed
        .strip_prefix("0x")
        .or_else(|| trimmed.strip_prefix("0X"))
    {
        return u32::from_str_radix(hex, 16).map_err(|_| BadTag(text.to_owned()));
    }
    if (1..=4).contains(&trimmed.len()) && trimmed.bytes().all(|byte| byte.is_ascii_graphic()) {
        let mut bytes = [b' '; 4];
        bytes[..trimmed.len()].copy_from_slice(trimmed.as_bytes());
        return Ok(u32::from_le_bytes(bytes));
    }
    Err(BadTag(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_read_as_the_debugger_shows_them() {
        assert_eq!(tag_text(0x6463_6261), "abcd");
        assert_eq!(parse_tag("abcd"), Ok(0x6463_6261));
        assert_eq!(parse_tag("0x64636261"), Ok(0x6463_6261));
        assert_eq!(tag_text(TAG_NONE), "None");
        assert!(parse_tag("toolong").is_err());
    }

    #[test]
    fn pool_types_round_trip_their_names() {
        for value in [0, 1, 2, 4, 5, 512] {
            let pool = PoolType::from_value(value);
            assert_eq!(PoolType::from_name(&pool.name()), pool);
        }
        assert_eq!(PoolType::from_value(0x21).is_paged(), Some(true));
        assert_eq!(PoolType::Unknown.is_paged(), None);
    }
}
