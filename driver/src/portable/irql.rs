//! Raising and lowering IRQL as the WDK's `KeRaiseIrql` and `KeLowerIrql`
//! do: inline CR8 writes on x64, hal.dll's fastcall `KfRaiseIrql` and
//! `KfLowerIrql` on x86. Only the `paged-at-dispatch` build uses them.
#![allow(non_snake_case, clippy::upper_case_acronyms)]

/// `KIRQL`.
pub type KIRQL = u8;

/// `KeRaiseIrql`, as the WDK defines it on x64: an inline write of CR8.
///
/// # Safety
/// `new` must not be below the current IRQL.
#[cfg(target_arch = "x86_64")]
pub unsafe fn KeRaiseIrql(new: KIRQL) -> KIRQL {
    let old: u64;
    // SAFETY: reading and writing CR8 is how x64 kernel code changes IRQL;
    // the caller keeps the order of levels.
    unsafe {
        core::arch::asm!("mov {old}, cr8", "mov cr8, {new}", old = out(reg) old, new = in(reg) u64::from(new), options(nostack, preserves_flags));
    }
    // CR8 holds 0 to 15.
    KIRQL::try_from(old & 0xf).unwrap_or(0)
}

/// `KeLowerIrql`, as the WDK defines it on x64: an inline write of CR8.
///
/// # Safety
/// `new` must not be above the current IRQL.
#[cfg(target_arch = "x86_64")]
pub unsafe fn KeLowerIrql(new: KIRQL) {
    // SAFETY: as in `KeRaiseIrql`.
    unsafe {
        core::arch::asm!("mov cr8, {new}", new = in(reg) u64::from(new), options(nostack, preserves_flags));
    }
}

// On x86 the WDK's KeRaiseIrql and KeLowerIrql are hal.dll's fastcall
// KfRaiseIrql and KfLowerIrql.
#[cfg(target_arch = "x86")]
#[link(
    name = "hal.dll",
    kind = "raw-dylib",
    modifiers = "+verbatim",
    import_name_type = "undecorated"
)]
unsafe extern "fastcall" {
    #[link_name = "KfRaiseIrql"]
    pub fn KeRaiseIrql(NewIrql: KIRQL) -> KIRQL;
    #[link_name = "KfLowerIrql"]
    pub fn KeLowerIrql(NewIrql: KIRQL);
}

/// `DISPATCH_LEVEL`.
pub const DISPATCH_LEVEL: KIRQL = 2;
