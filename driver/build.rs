//! Build script: link settings for whichever build path is selected.

/// Official path: windows-drivers-rs configures the link from the WDK.
#[cfg(feature = "wdk")]
fn main() -> Result<(), wdk_build::ConfigError> {
    wdk_build::configure_wdk_binary_build()
}

/// Portable path: make rust-lld emit a native kernel-mode image.
#[cfg(not(feature = "wdk"))]
fn main() {
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if std::env::var_os("CARGO_FEATURE_PORTABLE").is_none() || target_os != "windows" {
        return;
    }
    for arg in [
        "/DRIVER",
        "/SUBSYSTEM:NATIVE",
        // lld also finds the stdcall-decorated `_DriverEntry@8` on x86.
        "/ENTRY:DriverEntry",
        // No CRT exists in the kernel; the few intrinsics are in the crate.
        "/NODEFAULTLIB",
        // Sets the PE checksum, which the kernel loader requires of drivers.
        "/RELEASE",
    ] {
        println!("cargo:rustc-link-arg-bin=Sample={arg}");
    }
}
