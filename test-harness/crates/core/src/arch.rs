//! The two architectures Sample.sys is built for.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A Windows kernel architecture the project builds and emulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// 64-bit x86 (AMD64).
    X64,
    /// 32-bit x86 (i386), which windows-drivers-rs does not target.
    X86,
}

impl Arch {
    /// Both architectures, x64 first.
    pub const ALL: [Self; 2] = [Self::X64, Self::X86];

    /// The Rust target triple of the portable build.
    #[must_use]
    pub const fn triple(self) -> &'static str {
        match self {
            Self::X64 => "x86_64-pc-windows-msvc",
            Self::X86 => "i686-pc-windows-msvc",
        }
    }

    /// Hex digits of a pointer, as the debugger prints them.
    #[must_use]
    pub const fn pointer_digits(self) -> usize {
        match self {
            Self::X64 => 16,
            Self::X86 => 8,
        }
    }

    /// Pool allocations are handed out in blocks of this many bytes
    /// (`!verifier 3` shows the rounded length: 0x6c -> 0x70 on x86).
    #[must_use]
    pub const fn pool_granularity(self) -> u64 {
        match self {
            Self::X64 => 16,
            Self::X86 => 8,
        }
    }

    /// Size of the `_POOL_HEADER` in front of every pool block (8 bytes on
    /// x86, 16 on x64); block sizes are multiples of it.
    #[must_use]
    pub const fn pool_header_size(self) -> u64 {
        self.pool_granularity()
    }

    /// The lowest kernel-mode address: everything below is user space.
    #[must_use]
    pub const fn kernel_base(self) -> u64 {
        match self {
            Self::X64 => 0xFFFF_8000_0000_0000,
            Self::X86 => 0x8000_0000,
        }
    }

    /// Bytes in a pointer.
    #[must_use]
    pub const fn pointer_size(self) -> u64 {
        match self {
            Self::X64 => 8,
            Self::X86 => 4,
        }
    }

    /// Formats an address with the debugger's width for this architecture.
    #[must_use]
    pub fn address(self, value: u64) -> String {
        format!("{value:0width$x}", width = self.pointer_digits())
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::X64 => "x64",
            Self::X86 => "x86",
        })
    }
}

/// An architecture name the harness does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown architecture '{0}' (expected x64 or x86)")]
pub struct UnknownArch(pub String);

impl FromStr for Arch {
    type Err = UnknownArch;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "x64" | "amd64" | "x86_64" => Ok(Self::X64),
            "x86" | "i386" | "i686" => Ok(Self::X86),
            other => Err(UnknownArch(other.to_owned())),
        }
    }
}
