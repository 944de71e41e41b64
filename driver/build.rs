//! Build script: link settings for whichever build path is selected.

/// Official path: windows-drivers-rs configures the link from the WDK.
#[cfg(all(feature = "wdk", windows))]
fn main() -> Result<(), wdk_build::ConfigError> {
    // wdk-build knows two CPU architectures, Amd64 and Arm64 (its
    // `CpuArchitecture`), and panics on any other target; 32-bit x86 is not
    // supported upstream (microsoft/windows-drivers-rs issue #254). Say so
    // before it panics, and name the build that does support x86.
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86") {
        println!(
            "cargo::error=the official (`wdk`) build does not support 32-bit x86: windows-drivers-rs builds only x64 and arm64 drivers. \
             For x86 (Windows 7 x86, the walkthrough's platform) use the portable build: cargo run -p harness -- build --arch x86, \
             and harness vm --arch x86"
        );
        return Ok(());
    }
    wdk_build::configure_wdk_binary_build()
}

// The wdk crates build only on a Windows host (wdk-build refuses others).
#[cfg(all(feature = "wdk", not(windows)))]
compile_error!(
    "the `wdk` feature (official build) needs a Windows host with the WDK; \
     on this host build the portable driver: cargo run -p harness -- build --arch x64"
);
#[cfg(all(feature = "wdk", not(windows)))]
fn main() {}

/// Portable path: make rust-lld emit a native kernel-mode image.
#[cfg(not(feature = "wdk"))]
fn main() {
    // `cargo make` packages the library as the driver; without `wdk` it is an
    // empty user-mode DLL, so stop before cargo-make names it sample.sys.
    if std::env::var_os("CARGO_MAKE").is_some() {
        println!(
            "cargo::error=`cargo make` builds the official driver, which needs the `wdk` feature: \
             run `cargo make default --features wdk --profile release`"
        );
        return;
    }
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
