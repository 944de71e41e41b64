//! `dt` against the walkthrough's real kd output, character for character,
//! on the real driver PDBs of both architectures and the built-in `nt`
//! types; hand-built tables for forms neither contains (bitfields of other
//! widths, signed values, enums, cycles a corrupt PDB could make).

use super::*;
use crate::arch::Arch;
use crate::pdb::tests::built;

/// The lines the walkthrough prints after `command`, up to the blank line.
fn walkthrough_output(command: &str) -> String {
    let path = harness_build::driver_build::workspace_root()
        .join("test-harness/tests/fixtures/walkthrough-win7-x86.txt");
    let text = std::fs::read_to_string(path).expect("the walkthrough fixture");
    let mut lines = text.lines().skip_while(|line| !line.ends_with(command));
    assert!(lines.next().is_some(), "{command} is in the walkthrough");
    let mut out = String::new();
    for line in lines.take_while(|line| !line.is_empty()) {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Memory: `bytes` at `base`, nothing readable elsewhere.
fn memory(base: u64, bytes: Vec<u8>) -> impl Fn(u64, usize) -> Option<Vec<u8>> {
    move |address, size| {
        let start = usize::try_from(address.checked_sub(base)?).ok()?;
        bytes
            .get(start..start.checked_add(size)?)
            .map(<[u8]>::to_vec)
    }
}

fn nt(arch: Arch, name: &str) -> (&'static TypeTable, TypeId) {
    let table = nt_types(arch);
    let id = table
        .type_by_name(name)
        .unwrap_or_else(|| panic!("{arch}: nt!{name}"));
    (table, id)
}

/// `_UNICODE_STRING` bytes: `Length`, `MaximumLength`, `Buffer`.
fn unicode_string(arch: Arch, length: u16, maximum: u16, buffer: u64) -> Vec<u8> {
    let mut bytes = length.to_le_bytes().to_vec();
    bytes.extend_from_slice(&maximum.to_le_bytes());
    if arch == Arch::X64 {
        bytes.extend_from_slice(&[0; 4]);
        bytes.extend_from_slice(&buffer.to_le_bytes());
    } else {
        bytes.extend_from_slice(&u32::try_from(buffer).expect("x86").to_le_bytes());
    }
    bytes
}

#[test]
fn dt_g_registry_path_matches_the_walkthrough_character_for_character() {
    let expected = walkthrough_output("dt Sample!g_RegistryPath");
    assert_eq!(expected.lines().count(), 3);
    let symbols = &built(Arch::X86).symbols;
    let global = symbols.global("g_RegistryPath").expect("g_RegistryPath");
    let ty = global.ty.expect("typed");
    let address = 0xa04c_5008;
    let read = memory(address, unicode_string(Arch::X86, 0, 0, 0x91c2_6130));
    assert_eq!(
        dt(&symbols.types, ty, Some(address), Arch::X86, &read),
        expected
    );
    // The same bytes through the kernel's own _UNICODE_STRING.
    let (table, id) = nt(Arch::X86, "_UNICODE_STRING");
    assert_eq!(dt(table, id, Some(address), Arch::X86, &read), expected);
}

#[test]
fn dt_g_registry_path_on_x64() {
    let symbols = &built(Arch::X64).symbols;
    let ty = symbols
        .global("g_RegistryPath")
        .and_then(|global| global.ty)
        .expect("typed g_RegistryPath");
    let address = 0xffff_f880_0400_3000;
    let read = memory(
        address,
        unicode_string(Arch::X64, 0, 0, 0xffff_f8a0_00e6_b9b0),
    );
    assert_eq!(
        dt(&symbols.types, ty, Some(address), Arch::X64, &read),
        " \"\"   +0x000 Length           : 0\n   +0x002 MaximumLength    : 0\n   +0x008 Buffer           : 0xfffff8a0`00e6b9b0  \"\"\n"
    );
    // Its layout, as the PDB declares it (Rust's u16 pointer).
    assert_eq!(
        dt(&symbols.types, ty, None, Arch::X64, &|_, _| None),
        "   +0x000 Length           : Uint2B\n   +0x002 MaximumLength    : Uint2B\n   +0x008 Buffer           : Ptr64 Uint2B\n"
    );
}

#[test]
fn a_counted_string_with_text_ends_its_first_line() {
    // kd: ` "\??\c:\dev\stage\Booster\booster.sys"` on a line of its own,
    // then the members, the Buffer followed by the same text.
    let text = "\\REGISTRY\\MACHINE\\SYSTEM\\ControlSet001\\services\\Sample";
    let units: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let length = u16::try_from(units.len()).expect("short");
    for arch in Arch::ALL {
        let base = 0x8000_1000;
        let buffer = base + 0x100;
        let mut bytes = unicode_string(arch, length, length + 2, buffer);
        bytes.resize(0x100, 0);
        bytes.extend_from_slice(&units);
        bytes.extend_from_slice(&[0x41, 0, 0, 0]); // beyond Length: not shown
        let read = memory(base, bytes);
        let symbols = &built(arch).symbols;
        let ty = symbols.types.type_by_name("UNICODE_STRING").expect("type");
        let out = dt(&symbols.types, ty, Some(base), arch, &read);
        let buffer_text = if arch == Arch::X64 {
            "0x00000000`80001100"
        } else {
            "0x80001100"
        };
        let offset = if arch == Arch::X64 { 8 } else { 4 };
        assert_eq!(
            out,
            format!(
                " \"{text}\"\n   +0x000 Length           : 0x6c\n   +0x002 MaximumLength    : 0x6e\n   +0x{offset:03x} Buffer           : {buffer_text}  \"{text}\"\n"
            ),
            "{arch}"
        );
    }
}

#[test]
fn dt_pool_header_x86_matches_the_walkthrough_character_for_character() {
    let expected = walkthrough_output("dt nt!_POOL_HEADER 0x91c26130-8");
    assert_eq!(expected.lines().count(), 8);
    let (table, id) = nt(Arch::X86, "_POOL_HEADER");
    let mut header = 0x860f_020c_u32.to_le_bytes().to_vec();
    header.extend_from_slice(&0x6463_6261_u32.to_le_bytes());
    let read = memory(0x91c2_6128, header);
    assert_eq!(
        dt(table, id, Some(0x91c2_6130 - 8), Arch::X86, &read),
        expected
    );
    assert_eq!(table.sizeof(id), 8);
    assert_eq!(
        dt(table, id, None, Arch::X86, &|_, _| None),
        "   +0x000 PreviousSize     : Pos 0, 9 Bits\n\
         \x20  +0x000 PoolIndex        : Pos 9, 7 Bits\n\
         \x20  +0x002 BlockSize        : Pos 0, 9 Bits\n\
         \x20  +0x002 PoolType         : Pos 9, 7 Bits\n\
         \x20  +0x000 Ulong1           : Uint4B\n\
         \x20  +0x004 PoolTag          : Uint4B\n\
         \x20  +0x004 AllocatorBackTraceIndex : Uint2B\n\
         \x20  +0x006 PoolTagHash      : Uint2B\n"
    );
}

#[test]
fn dt_pool_header_x64() {
    let (table, id) = nt(Arch::X64, "POOL_HEADER");
    assert_eq!(table.sizeof(id), 0x10);
    assert_eq!(
        dt(table, id, None, Arch::X64, &|_, _| None),
        "   +0x000 PreviousSize     : Pos 0, 8 Bits\n\
         \x20  +0x000 PoolIndex        : Pos 8, 8 Bits\n\
         \x20  +0x000 BlockSize        : Pos 16, 8 Bits\n\
         \x20  +0x000 PoolType         : Pos 24, 8 Bits\n\
         \x20  +0x000 Ulong1           : Uint4B\n\
         \x20  +0x004 PoolTag          : Uint4B\n\
         \x20  +0x008 ProcessBilled    : Ptr64 _EPROCESS\n\
         \x20  +0x008 AllocatorBackTraceIndex : Uint2B\n\
         \x20  +0x00a PoolTagHash      : Uint2B\n"
    );
    // A paged block of 8 x 16 bytes, tag `abcd`.
    let mut header = 0x0308_0000_u32.to_le_bytes().to_vec();
    header.extend_from_slice(&0x6463_6261_u32.to_le_bytes());
    header.extend_from_slice(&0xffff_fa80_0123_4560_u64.to_le_bytes());
    let read = memory(0xffff_f8a0_00e6_b9a0, header);
    assert_eq!(
        dt(table, id, Some(0xffff_f8a0_00e6_b9a0), Arch::X64, &read),
        "   +0x000 PreviousSize     : 0y00000000 (0)\n\
         \x20  +0x000 PoolIndex        : 0y00000000 (0)\n\
         \x20  +0x000 BlockSize        : 0y00001000 (0x8)\n\
         \x20  +0x000 PoolType         : 0y00000011 (0x3)\n\
         \x20  +0x000 Ulong1           : 0x3080000\n\
         \x20  +0x004 PoolTag          : 0x64636261\n\
         \x20  +0x008 ProcessBilled    : 0xfffffa80`01234560 _EPROCESS\n\
         \x20  +0x008 AllocatorBackTraceIndex : 0x4560\n\
         \x20  +0x00a PoolTagHash      : 0x123\n"
    );
}

#[test]
fn dt_driver_object_layout_x64_is_kds() {
    // As kd prints `dt nt!_DRIVER_OBJECT` on Windows 7 x64.
    let (table, id) = nt(Arch::X64, "_DRIVER_OBJECT");
    assert_eq!(
        dt(table, id, None, Arch::X64, &|_, _| None),
        "   +0x000 Type             : Int2B\n\
         \x20  +0x002 Size             : Int2B\n\
         \x20  +0x008 DeviceObject     : Ptr64 _DEVICE_OBJECT\n\
         \x20  +0x010 Flags            : Uint4B\n\
         \x20  +0x018 DriverStart      : Ptr64 Void\n\
         \x20  +0x020 DriverSize       : Uint4B\n\
         \x20  +0x028 DriverSection    : Ptr64 Void\n\
         \x20  +0x030 DriverExtension  : Ptr64 _DRIVER_EXTENSION\n\
         \x20  +0x038 DriverName       : _UNICODE_STRING\n\
         \x20  +0x048 HardwareDatabase : Ptr64 _UNICODE_STRING\n\
         \x20  +0x050 FastIoDispatch   : Ptr64 _FAST_IO_DISPATCH\n\
         \x20  +0x058 DriverInit       : Ptr64     long\n\
         \x20  +0x060 DriverStartIo    : Ptr64     void\n\
         \x20  +0x068 DriverUnload     : Ptr64     void\n\
         \x20  +0x070 MajorFunction    : [28] Ptr64     long\n"
    );
}

#[test]
fn dt_driver_object_values_x86() {
    let (table, id) = nt(Arch::X86, "DRIVER_OBJECT");
    let base = 0x86a2_20d0_u64;
    let mut bytes = vec![0u8; 0xa8];
    let mut put = |offset: usize, value: &[u8]| {
        bytes[offset..offset + value.len()].copy_from_slice(value);
    };
    put(0, &4u16.to_le_bytes());
    put(2, &0xa8u16.to_le_bytes());
    put(0x08, &0x12u32.to_le_bytes());
    put(0x0c, &0xa04c_3000_u32.to_le_bytes());
    put(0x10, &0x6000u32.to_le_bytes());
    put(0x18, &0x86a2_2178_u32.to_le_bytes());
    put(0x1c, &28u16.to_le_bytes());
    put(0x1e, &28u16.to_le_bytes());
    put(0x20, &0x86a2_2200_u32.to_le_bytes());
    put(0x2c, &0xa04c_4000_u32.to_le_bytes());
    put(0x34, &0xa04c_3010_u32.to_le_bytes());
    put(0x38, &0x82b0_1234_u32.to_le_bytes());
    let name: Vec<u8> = "\\Driver\\Sample"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    bytes.resize(0x130, 0);
    bytes.extend_from_slice(&name);
    let read = memory(base, bytes);
    let names = |address: u64| (address == 0xa04c_4000).then(|| "Sample!DriverEntry".to_owned());
    assert_eq!(
        dt_with_names(table, id, Some(base), Arch::X86, &read, &names),
        "   +0x000 Type             : 0n4\n\
         \x20  +0x002 Size             : 0n168\n\
         \x20  +0x004 DeviceObject     : (null)\n\
         \x20  +0x008 Flags            : 0x12\n\
         \x20  +0x00c DriverStart      : 0xa04c3000 Void\n\
         \x20  +0x010 DriverSize       : 0x6000\n\
         \x20  +0x014 DriverSection    : (null)\n\
         \x20  +0x018 DriverExtension  : 0x86a22178 _DRIVER_EXTENSION\n\
         \x20  +0x01c DriverName       : _UNICODE_STRING \"\\Driver\\Sample\"\n\
         \x20  +0x024 HardwareDatabase : (null)\n\
         \x20  +0x028 FastIoDispatch   : (null)\n\
         \x20  +0x02c DriverInit       : 0xa04c4000     long  Sample!DriverEntry\n\
         \x20  +0x030 DriverStartIo    : (null)\n\
         \x20  +0x034 DriverUnload     : 0xa04c3010     void\n\
         \x20  +0x038 MajorFunction    : [28] 0x82b01234     long\n"
    );
}

#[test]
fn nt_layouts_agree_with_the_wdm_tables() {
    for arch in Arch::ALL {
        let offset = |ty: &str, field: &str| {
            let (table, id) = nt(arch, ty);
            table
                .record(id)
                .and_then(|record| record.fields.iter().find(|f| f.name == field))
                .map_or_else(|| panic!("{arch}: {ty}.{field}"), |field| field.offset)
        };
        let size = |ty: &str| {
            let (table, id) = nt(arch, ty);
            table.sizeof(id)
        };
        let driver = crate::wdm::DriverObject::for_arch(arch);
        assert_eq!(size("_DRIVER_OBJECT"), driver.size, "{arch}");
        for (field, expected) in [
            ("DeviceObject", driver.device_object),
            ("Flags", driver.flags),
            ("DriverStart", driver.driver_start),
            ("DriverSize", driver.driver_size),
            ("DriverSection", driver.driver_section),
            ("DriverExtension", driver.driver_extension),
            ("DriverName", driver.driver_name),
            ("HardwareDatabase", driver.hardware_database),
            ("DriverInit", driver.driver_init),
            ("DriverUnload", driver.driver_unload),
            ("MajorFunction", driver.major_function),
        ] {
            assert_eq!(offset("_DRIVER_OBJECT", field), expected, "{arch}: {field}");
        }
        let device = crate::wdm::DeviceObject::for_arch(arch);
        assert_eq!(size("_DEVICE_OBJECT"), device.size, "{arch}");
        for (field, expected) in [
            ("ReferenceCount", device.reference_count),
            ("DriverObject", device.driver_object),
            ("NextDevice", device.next_device),
            ("Flags", device.flags),
            ("Characteristics", device.characteristics),
            ("DeviceExtension", device.device_extension),
            ("DeviceType", device.device_type),
            ("StackSize", device.stack_size),
        ] {
            assert_eq!(offset("_DEVICE_OBJECT", field), expected, "{arch}: {field}");
        }
    }
}

#[test]
fn nt_sizes_and_members_fit() {
    for (arch, sizes) in [
        (Arch::X86, [8, 8, 0xa8, 0xb8, 0x1c, 8, 0x114]),
        (Arch::X64, [0x10, 0x10, 0x150, 0x150, 0x38, 0x10, 0x114]),
    ] {
        let names = [
            "_POOL_HEADER",
            "_UNICODE_STRING",
            "_DRIVER_OBJECT",
            "_DEVICE_OBJECT",
            "_DRIVER_EXTENSION",
            "_LIST_ENTRY",
            "_OSVERSIONINFOW",
        ];
        for (name, size) in names.into_iter().zip(sizes) {
            let (table, id) = nt(arch, name);
            assert_eq!(table.sizeof(id), size, "{arch}: {name}");
            let record = table.record(id).expect("a record");
            for field in &record.fields {
                assert!(
                    field.offset + table.sizeof(field.ty) <= size,
                    "{arch}: {name}.{} ends past the structure",
                    field.name
                );
            }
        }
    }
}

#[test]
fn a_pointer_type_prints_its_width_then_the_members() {
    // kd: `dt PDEVICE_OBJECT` -> `Ptr64    +0x000 Type             : Int2B`.
    let mut table = nt_types(Arch::X64).clone();
    let (_, list) = nt(Arch::X64, "_LIST_ENTRY");
    let pointer = table.pointer(list, 8);
    assert_eq!(
        dt(&table, pointer, None, Arch::X64, &|_, _| None),
        "Ptr64    +0x000 Flink            : Ptr64 _LIST_ENTRY\n   +0x008 Blink            : Ptr64 _LIST_ENTRY\n"
    );
}

#[test]
fn unreadable_memory_is_a_memory_read_error() {
    // kd, on an x64 target:
    //    +0x000 Flink            : ????
    //    +0x008 Blink            : ????
    // Memory read error ffffc48068d7d008
    let (table, id) = nt(Arch::X64, "_LIST_ENTRY");
    assert_eq!(
        dt(
            table,
            id,
            Some(0xffff_c480_68d7_d000),
            Arch::X64,
            &|_, _| None
        ),
        "   +0x000 Flink            : ????\n   +0x008 Blink            : ????\nMemory read error ffffc48068d7d008\n"
    );
    let (table, id) = nt(Arch::X86, "_POOL_HEADER");
    let out = dt(table, id, Some(0x1000), Arch::X86, &|_, _| None);
    assert!(out.contains("   +0x000 PreviousSize     : ??\n"), "{out}");
    assert!(out.ends_with("Memory read error 00001006\n"), "{out}");
    // A readable _LIST_ENTRY member shows both links.
    let (table, id) = nt(Arch::X86, "_DEVICE_OBJECT");
    let mut bytes = vec![0u8; 0xb8];
    bytes[0x34..0x38].copy_from_slice(&0x8500_0034_u32.to_le_bytes());
    bytes[0x38..0x3c].copy_from_slice(&0x8500_0034_u32.to_le_bytes());
    bytes[0x30] = 2;
    let out = dt(
        table,
        id,
        Some(0x8500_0000),
        Arch::X86,
        &memory(0x8500_0000, bytes),
    );
    assert!(out.contains("   +0x030 StackSize        : 2 ''\n"), "{out}");
    assert!(
        out.contains("   +0x034 Queue            : <unnamed-tag>\n"),
        "{out}"
    );
    assert!(out.contains("   +0x004 ReferenceCount   : 0n0\n"), "{out}");
    assert!(!out.contains("Memory read error"), "{out}");
}

#[test]
fn character_arrays_print_as_strings() {
    let (table, id) = nt(Arch::X86, "_OSVERSIONINFOW");
    let mut bytes = Vec::new();
    for value in [0x114u32, 6, 1, 7601, 2] {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    bytes.extend("Service Pack 1".encode_utf16().flat_map(u16::to_le_bytes));
    bytes.resize(0x114, 0);
    assert_eq!(
        dt(
            table,
            id,
            Some(0x8772_d8c0),
            Arch::X86,
            &memory(0x8772_d8c0, bytes)
        ),
        "   +0x000 dwOSVersionInfoSize : 0x114\n\
         \x20  +0x004 dwMajorVersion   : 6\n\
         \x20  +0x008 dwMinorVersion   : 1\n\
         \x20  +0x00c dwBuildNumber    : 0x1db1\n\
         \x20  +0x010 dwPlatformId     : 2\n\
         \x20  +0x014 szCSDVersion     : [128]  \"Service Pack 1\"\n"
    );
}

/// A table with the forms the real PDBs lack.
fn hand_built() -> (TypeTable, TypeId) {
    let mut table = TypeTable::new();
    let uchar = table.primitive(Primitive::UCHAR);
    let char_ = table.primitive(Primitive::CHAR);
    let long = table.primitive(Primitive::LONG);
    let ulong = table.primitive(Primitive::ULONG);
    let uint64 = table.primitive(Primitive::UINT64);
    let wchar = table.primitive(Primitive::WCHAR);
    let p_wchar = table.pointer(wchar, 4);
    let p_ulong = table.pointer(ulong, 4);
    let token_type = table.add(Type::Enum(Enum {
        name: "_TOKEN_TYPE".to_owned(),
        underlying: long,
        values: vec![
            ("TokenPrimary".to_owned(), 1),
            ("TokenImpersonation".to_owned(), 2),
        ],
    }));
    let field = |name: &str, offset: u64, ty: TypeId, bits: Option<Bits>| Field {
        name: name.to_owned(),
        offset,
        ty,
        bits,
    };
    let bits = |position, length| Some(Bits { position, length });
    let record = table.add(Type::Record(Record {
        name: "_HAND_BUILT".to_owned(),
        kind: RecordKind::Struct,
        size: 0x20,
        fields: vec![
            field("Flag", 0, uchar, bits(0, 1)),
            field("Level", 0, long, bits(1, 2)),
            field("Initialized", 1, uchar, None),
            field("Letter", 2, char_, None),
            field("Delta", 4, long, None),
            field("Kind", 8, token_type, None),
            field("Big", 0x10, uint64, None),
            field("Name", 0x18, p_wchar, None),
            field("Count", 0x1c, p_ulong, None),
        ],
        complete: true,
    }));
    (table, record)
}

#[test]
fn hand_built_forms_print_as_kd_prints_them() {
    let (table, id) = hand_built();
    assert_eq!(
        dt(&table, id, None, Arch::X86, &|_, _| None),
        "   +0x000 Flag             : Pos 0, 1 Bit\n\
         \x20  +0x000 Level            : Pos 1, 2 Bits\n\
         \x20  +0x001 Initialized      : UChar\n\
         \x20  +0x002 Letter           : Char\n\
         \x20  +0x004 Delta            : Int4B\n\
         \x20  +0x008 Kind             : _TOKEN_TYPE\n\
         \x20  +0x010 Big              : Uint8B\n\
         \x20  +0x018 Name             : Ptr32 Wchar\n\
         \x20  +0x01c Count            : Ptr32 Uint4B\n"
    );
    let mut bytes = vec![0u8; 0x20];
    bytes[0] = 0b101; // Flag 1, Level 0b10 (-2 as a signed 2-bit field)
    bytes[1] = 1;
    bytes[2] = b'A';
    bytes[4..8].copy_from_slice(&(-8192i32).to_le_bytes());
    bytes[8] = 1;
    bytes[0x10..0x18].copy_from_slice(&0x0000_0001_0c5f_3a10_u64.to_le_bytes());
    bytes[0x18..0x1c].copy_from_slice(&0x1040u32.to_le_bytes());
    bytes[0x1c..0x20].copy_from_slice(&0x1060u32.to_le_bytes());
    bytes.resize(0x40, 0);
    bytes.extend("Sample".encode_utf16().flat_map(u16::to_le_bytes));
    bytes.extend_from_slice(&[0, 0]);
    bytes.resize(0x60, 0);
    bytes.extend_from_slice(&0x501u32.to_le_bytes());
    assert_eq!(
        dt(&table, id, Some(0x1000), Arch::X86, &memory(0x1000, bytes)),
        "   +0x000 Flag             : 0y1\n\
         \x20  +0x000 Level            : 0y10 (0n-2)\n\
         \x20  +0x001 Initialized      : 0x1 ''\n\
         \x20  +0x002 Letter           : 65 'A'\n\
         \x20  +0x004 Delta            : 0n-8192\n\
         \x20  +0x008 Kind             : 1 ( TokenPrimary )\n\
         \x20  +0x010 Big              : 0x00000001`0c5f3a10\n\
         \x20  +0x018 Name             : 0x00001040  \"Sample\"\n\
         \x20  +0x01c Count            : 0x00001060  -> 0x501\n"
    );
}

#[test]
fn cycles_in_a_corrupt_table_end() {
    // A pointer to itself and an array of itself, as a corrupt PDB could
    // describe them: printing must end.
    let mut table = TypeTable::new();
    let placeholder = table.primitive(Primitive::VOID);
    let pointer = table.add(Type::Pointer {
        pointee: placeholder,
        size: 4,
    });
    table.set(
        pointer,
        Type::Pointer {
            pointee: pointer,
            size: 4,
        },
    );
    let array = table.add(Type::Array {
        element: placeholder,
        count: 2,
        size: 8,
    });
    table.set(
        array,
        Type::Array {
            element: array,
            count: 2,
            size: 8,
        },
    );
    let read = |_, size| Some(vec![0x10; size]);
    assert!(table.label(pointer).ends_with("<too deep>"));
    let _ = dt(&table, pointer, Some(0x1010_1010), Arch::X86, &read);
    let _ = dt(&table, array, Some(0x1000), Arch::X86, &read);
    assert_eq!(table.sizeof(array), 8);
    // An id from another table is not a panic either.
    let other = TypeTable::new();
    assert_eq!(
        dt(&other, pointer, None, Arch::X86, &read),
        "<unknown type>\n"
    );
}

#[test]
fn names_are_split_at_their_last_segment() {
    assert_eq!(
        last_segment("Sample::sample::sample_unload"),
        "sample_unload"
    );
    assert_eq!(last_segment("_UNICODE_STRING"), "_UNICODE_STRING");
    assert_eq!(
        last_segment("enum2$<core::option::Option<u16> >::Variant1"),
        "Variant1"
    );
    assert_eq!(
        last_segment("core::fmt::Write::write_fmt<a::b::C>"),
        "write_fmt<a::b::C>"
    );
}

#[test]
fn codeview_primitives_have_kds_names() {
    let names: Vec<(&str, u8)> = [
        0x03, 0x10, 0x20, 0x71, 0x11, 0x21, 0x12, 0x22, 0x74, 0x75, 0x13, 0x23, 0x40, 0x41, 0x30,
    ]
    .into_iter()
    .map(|code| Primitive::from_codeview(code).expect("known"))
    .map(|p| (p.kd_name, p.size))
    .collect();
    assert_eq!(
        names,
        [
            ("Void", 0),
            ("Char", 1),
            ("UChar", 1),
            ("Wchar", 2),
            ("Int2B", 2),
            ("Uint2B", 2),
            ("Int4B", 4),
            ("Uint4B", 4),
            ("Int4B", 4),
            ("Uint4B", 4),
            ("Int8B", 8),
            ("Uint8B", 8),
            ("Float", 4),
            ("Float", 8),
            ("Bool", 1),
        ]
    );
    assert!(Primitive::from_codeview(0xee).is_none());
}
