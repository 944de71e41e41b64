//! Issue 2: every portable build of Sample.sys is a valid kernel driver.
//! The real cross-built images are parsed with the `object` PE reader and
//! their code disassembled with iced-x86.

use crate::common;

use std::collections::BTreeSet;

use harness_core::arch::Arch;
use harness_core::pe::{PeImage, SUBSYSTEM_NATIVE};
use harness_core::symbols::{SymbolSource, Symbolizer};

/// Characteristics bit of DLLs; a driver built as a plain image has none.
const IMAGE_FILE_DLL: u16 = 0x2000;

fn check(arch: Arch, leak: bool) {
    let built = common::driver(arch, leak);
    let image = PeImage::read(&built.sys).expect("a PE image");
    let what = format!("{arch} {}", if leak { "leak" } else { "clean" });

    assert_eq!(image.arch, Some(arch), "{what}: machine type");
    assert_eq!(image.subsystem, SUBSYSTEM_NATIVE, "{what}: subsystem");
    assert_eq!(
        image.characteristics & IMAGE_FILE_DLL,
        0,
        "{what}: DLL flag set"
    );
    assert!(
        image.exports.is_empty(),
        "{what}: exports {:?}",
        image.exports
    );
    assert!(
        image.has_relocations,
        "{what}: the kernel relocates drivers; relocations are missing"
    );

    // The checksum is required for drivers and must be right.
    assert_ne!(image.stored_checksum, 0, "{what}: checksum not set");
    assert_eq!(
        image.stored_checksum, image.computed_checksum,
        "{what}: checksum"
    );

    // Imports: only ntoskrnl.exe, exactly the functions the driver calls
    // (KeBugCheckEx is the panic handler's), undecorated on x86.
    let mut expected: BTreeSet<&str> = [
        "DbgPrint",
        "ExAllocatePoolWithTag",
        "KeBugCheckEx",
        "RtlCopyUnicodeString",
        "RtlGetVersion",
    ]
    .into();
    if !leak {
        expected.insert("ExFreePoolWithTag");
    }
    for import in &image.imports {
        assert_eq!(
            import.library, "ntoskrnl.exe",
            "{what}: import from {}",
            import.library
        );
        assert!(
            !import.name.starts_with('_') && !import.name.contains('@'),
            "{what}: decorated import {}",
            import.name
        );
    }
    let names: BTreeSet<&str> = image
        .imports
        .iter()
        .map(|import| import.name.as_str())
        .collect();
    assert_eq!(names, expected, "{what}: imports");

    // The PDB belongs to this image and names the entry point and unload routine.
    let symbols = Symbolizer::for_driver(&built.sys, &image, image.image_base, image.size_of_image);
    assert_eq!(
        symbols.source,
        SymbolSource::Pdb(built.pdb.clone()),
        "{what}: {:?}",
        symbols.pdb_problem
    );
    assert_eq!(
        symbols.function_at(image.entry_rva),
        Some("DriverEntry"),
        "{what}: entry point"
    );
    assert!(
        symbols.function_names().any(|name| name == "SampleUnload"),
        "{what}: the PDB does not name the unload routine SampleUnload"
    );
    // The names are symbols only: a driver exports nothing.
    assert!(
        image.exports.is_empty(),
        "{what}: exports {:?}",
        image.exports
    );

    if arch == Arch::X86 {
        let float = image.floating_point_instructions();
        assert!(
            float.is_empty(),
            "{what}: x87/SSE instructions in 32-bit kernel code: {float:?}"
        );
    }
    println!(
        "{what}: {} bytes",
        std::fs::metadata(&built.sys).expect("sys").len()
    );
}

#[test]
fn x64_clean_is_a_valid_driver() {
    check(Arch::X64, false);
}

#[test]
fn x64_leak_is_a_valid_driver_without_the_free() {
    check(Arch::X64, true);
}

#[test]
fn x86_clean_is_a_valid_driver() {
    check(Arch::X86, false);
}

#[test]
fn x86_leak_is_a_valid_driver_without_the_free() {
    check(Arch::X86, true);
}

/// The detectors above can fail: an SSE instruction and a changed byte are caught.
#[test]
fn the_checks_catch_what_they_look_for() {
    let built = common::driver(Arch::X86, false);
    let mut bytes = std::fs::read(&built.sys).expect("sys");
    let mut image = PeImage::parse(&bytes).expect("pe");
    // movaps xmm0, xmm1 (0f 28 c1) placed in the code.
    image.code.push((0x9000, vec![0x0f, 0x28, 0xc1]));
    assert_eq!(image.floating_point_instructions().len(), 1);
    // fld st(1) (d9 c1): x87.
    image.code.push((0x9100, vec![0xd9, 0xc1]));
    assert_eq!(image.floating_point_instructions().len(), 2);

    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    let changed = PeImage::parse(&bytes).expect("pe");
    assert_ne!(changed.stored_checksum, changed.computed_checksum);
}
