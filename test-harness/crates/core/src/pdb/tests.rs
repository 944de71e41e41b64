//! Tests on the real driver's PDBs (both architectures, built by
//! `driver_build`), plus hand-built records for the forms our PDBs do not
//! contain (classic `S_REGREL32` / `S_BPREL32`, `_FULL_SCOPE` ranges).

use std::sync::OnceLock;

use super::codeview::{self, DefRangeKind};
use super::*;
use crate::types::Type;
use harness_build::driver_build;

/// A built driver: its image, its PDB's bytes and the symbols read from them.
pub struct Built {
    pub image: PeImage,
    pub pdb: Vec<u8>,
    pub symbols: DriverSymbols,
}

/// The leak build for `arch`, built once per test run.
pub fn built(arch: Arch) -> &'static Built {
    static X86: OnceLock<Built> = OnceLock::new();
    static X64: OnceLock<Built> = OnceLock::new();
    let cell = match arch {
        Arch::X86 => &X86,
        Arch::X64 => &X64,
    };
    cell.get_or_init(|| {
        // harness-build links the library build of this crate, whose `Arch`
        // is another type than this test build's.
        let build_arch = match arch {
            Arch::X86 => driver_build::Arch::X86,
            Arch::X64 => driver_build::Arch::X64,
        };
        let driver = driver_build::build(build_arch, true)
            .unwrap_or_else(|error| panic!("building the {arch} driver: {error}"));
        let image = PeImage::read(&driver.sys).expect("the built driver is a PE image");
        let pdb = std::fs::read(&driver.pdb).expect("the PDB is beside the driver");
        let symbols = DriverSymbols::load(&driver.pdb, &image).expect("the PDB loads");
        Built {
            image,
            pdb,
            symbols,
        }
    })
}

/// The line `needle` is on in the driver's sample.rs (1-based).
fn source_line_of(needle: &str) -> u32 {
    let path = driver_build::workspace_root().join("driver/src/sample.rs");
    let text = std::fs::read_to_string(path).expect("driver/src/sample.rs");
    let index = text
        .lines()
        .position(|line| line.contains(needle))
        .expect("the line is in sample.rs");
    u32::try_from(index + 1).expect("small")
}

fn local<'a>(procedure: &'a Procedure, name: &str) -> &'a Local {
    procedure
        .locals
        .iter()
        .find(|local| local.name == name)
        .unwrap_or_else(|| panic!("{name} in {}", procedure.full_name))
}

fn record_name(symbols: &DriverSymbols, id: Option<TypeId>) -> String {
    let id = id.expect("a type");
    match symbols.types.get(id) {
        Some(Type::Record(record)) => record.name.clone(),
        Some(Type::Pointer { pointee, .. }) => match symbols.types.get(*pointee) {
            Some(Type::Record(record)) => format!("{}*", record.name),
            other => panic!("pointer to {other:?}"),
        },
        other => panic!("not a record: {other:?}"),
    }
}

#[test]
fn driver_entry_is_named_by_its_public_name_and_found_by_all_three() {
    for arch in Arch::ALL {
        let built = built(arch);
        let symbols = &built.symbols;
        let entry = symbols
            .procedure_by_name("DriverEntry")
            .unwrap_or_else(|| panic!("{arch}: DriverEntry"));
        assert_eq!(entry.name, "DriverEntry", "{arch}");
        assert_eq!(entry.full_name, "Sample::sample::driver_entry", "{arch}");
        assert_eq!(entry.rva, built.image.entry_rva, "{arch}");
        assert!(entry.length > 0x100, "{arch}: {}", entry.length);
        for name in ["Sample::sample::driver_entry", "driver_entry"] {
            assert_eq!(
                symbols.procedure_by_name(name).map(|p| p.rva),
                Some(entry.rva),
                "{arch}: {name}"
            );
        }
        assert_eq!(
            symbols.procedure_at(entry.rva + 0x27).map(|p| p.rva),
            Some(entry.rva)
        );
        assert!(
            symbols
                .procedure_at(entry.rva + entry.length)
                .is_none_or(|p| p.rva != entry.rva)
        );
        assert!(symbols.procedure_by_name("NoSuchRoutine").is_none());
    }
}

#[test]
fn driver_entry_parameters_on_x86_are_frame_relative_to_ebp() {
    let symbols = &built(Arch::X86).symbols;
    let entry = symbols
        .procedure_by_name("DriverEntry")
        .expect("DriverEntry");
    let frame = entry.frame.expect("S_FRAMEPROC");
    assert_eq!(frame.locals.and_then(Register::name), Some("ebp"));
    assert_eq!(frame.parameters.and_then(Register::name), Some("ebp"));
    let params: Vec<&str> = entry
        .locals
        .iter()
        .filter(|local| local.is_parameter)
        .map(|local| local.name.as_str())
        .collect();
    assert_eq!(params, ["driver", "registry_path"]);
    for (name, offset) in [("driver", 8), ("registry_path", 12)] {
        let parameter = local(entry, name);
        assert!(!parameter.optimized_away);
        let location = parameter
            .location_at(entry.rva + 0x27)
            .unwrap_or_else(|| panic!("{name} at +0x27"));
        assert_eq!(location.storage, Storage::FrameRelative(offset), "{name}");
    }
    assert_eq!(
        record_name(symbols, local(entry, "driver").ty),
        "Sample::portable::types::DRIVER_OBJECT*"
    );
    assert_eq!(
        record_name(symbols, local(entry, "registry_path").ty),
        "Sample::portable::types::UNICODE_STRING*"
    );
    // `copy` is optimized away; `buffer` lives in EAX with a gap.
    assert!(local(entry, "copy").optimized_away);
    let buffer = local(entry, "buffer");
    let location = buffer.locations.first().expect("a location");
    assert_eq!(location.storage, Storage::Register(Register(17)));
    let range = location.range.as_ref().expect("a range");
    assert_eq!(range.gaps.len(), 1);
    let (gap, _) = range.gaps[0];
    assert!(range.contains(range.start));
    assert!(!range.contains(gap));
    assert!(buffer.location_at(gap).is_none());
    // Locals of inlined callees are not DriverEntry's.
    assert!(entry.locals.iter().all(|local| local.name != "self"));
}

#[test]
fn driver_entry_parameters_on_x64_arrive_in_rcx_and_rdx() {
    let symbols = &built(Arch::X64).symbols;
    let entry = symbols
        .procedure_by_name("DriverEntry")
        .expect("DriverEntry");
    assert_eq!(
        entry
            .frame
            .and_then(|frame| frame.locals)
            .and_then(Register::name),
        Some("rsp")
    );
    for (name, register) in [("driver", "rcx"), ("registry_path", "rdx")] {
        let parameter = local(entry, name);
        assert!(parameter.is_parameter, "{name}");
        let Some(Location {
            storage: Storage::Register(at_entry),
            ..
        }) = parameter.location_at(entry.rva)
        else {
            panic!("{name} is not in a register at entry: {parameter:?}");
        };
        assert_eq!(at_entry.name(), Some(register), "{name}");
    }
    // `info` is on the stack (frame-relative to RSP), `args` has subfields.
    let info = local(entry, "info");
    assert!(matches!(
        info.locations.first().map(|l| l.storage),
        Some(Storage::FrameRelative(offset)) if offset > 0
    ));
}

#[test]
fn subfield_register_ranges_are_read() {
    let symbols = &built(Arch::X86).symbols;
    let entry = symbols
        .procedure_by_name("DriverEntry")
        .expect("DriverEntry");
    // The `args` of the block in DriverEntry that keeps three parts in
    // EDI, EAX and ECX (offsets 0, 4, 8).
    let parts: Vec<(Option<&str>, u32)> = entry
        .locals
        .iter()
        .filter(|local| local.name == "args")
        .flat_map(|local| &local.locations)
        .filter_map(|location| match location.storage {
            Storage::SubfieldRegister {
                register,
                offset_in_parent,
            } => Some((register.name(), offset_in_parent)),
            _ => None,
        })
        .collect();
    assert_eq!(
        parts,
        [(Some("edi"), 0), (Some("eax"), 4), (Some("ecx"), 8)]
    );
}

#[test]
fn the_unload_routine_is_found_by_its_last_segment() {
    for arch in Arch::ALL {
        let symbols = &built(arch).symbols;
        let unload = symbols
            .procedure_by_name("sample_unload")
            .unwrap_or_else(|| panic!("{arch}: sample_unload"));
        assert_eq!(unload.full_name, "Sample::sample::sample_unload");
        assert!(unload.length > 0);
        let parameter = local(unload, "_driver");
        assert!(parameter.is_parameter);
        assert_eq!(
            symbols
                .procedure_at(unload.rva + 1)
                .map(|p| p.full_name.as_str()),
            Some("Sample::sample::sample_unload")
        );
    }
}

#[test]
fn driver_entry_starts_on_its_line_in_sample_rs() {
    let expected = source_line_of("pub unsafe extern \"system\" fn driver_entry(");
    for arch in Arch::ALL {
        let symbols = &built(arch).symbols;
        let entry = symbols
            .procedure_by_name("DriverEntry")
            .expect("DriverEntry");
        let line = symbols.line_at(entry.rva).expect("a line at DriverEntry");
        assert!(
            line.file
                .replace('\\', "/")
                .ends_with("driver/src/sample.rs"),
            "{arch}: {}",
            line.file
        );
        assert_eq!(line.line, expected, "{arch}");
        // A later instruction maps to the closest line at or before it.
        let lines = symbols.lines_of(entry);
        assert!(lines.len() > 5, "{arch}");
        assert!(lines.windows(2).all(|pair| pair[0].0 <= pair[1].0));
        let (second, second_line) = lines[1].clone();
        assert_eq!(symbols.line_at(second), Some(second_line.clone()));
        if second > entry.rva + 1 {
            assert_eq!(symbols.line_at(second - 1), Some(line));
        }
        assert!(symbols.line_at(0xffff_0000).is_none());
    }
}

#[test]
fn g_registry_path_is_found_by_its_public_name() {
    for arch in Arch::ALL {
        let symbols = &built(arch).symbols;
        let global = symbols
            .global("g_RegistryPath")
            .unwrap_or_else(|| panic!("{arch}: g_RegistryPath"));
        assert_eq!(global.name, "g_RegistryPath");
        assert_eq!(
            global.full_name.as_deref(),
            Some("Sample::sample::g_RegistryPath")
        );
        assert_eq!(
            record_name(symbols, global.ty),
            "Sample::portable::types::UNICODE_STRING"
        );
        assert_eq!(
            global.ty.map(|ty| symbols.types.sizeof(ty)),
            Some(arch.pointer_size() * 2)
        );
        assert_eq!(
            symbols
                .global("Sample::sample::g_RegistryPath")
                .map(|g| g.rva),
            Some(global.rva)
        );
        assert!(symbols.global("g_NoSuchThing").is_none());
    }
    let x86 = &built(Arch::X86).symbols;
    assert_eq!(
        x86.global("_g_RegistryPath").map(|g| g.name.as_str()),
        Some("g_RegistryPath")
    );
}

#[test]
fn types_are_found_by_short_and_full_names() {
    for arch in Arch::ALL {
        let types = &built(arch).symbols.types;
        let full = types
            .type_by_name("Sample::portable::types::UNICODE_STRING")
            .expect("full name");
        for name in ["UNICODE_STRING", "_UNICODE_STRING"] {
            assert_eq!(types.type_by_name(name), Some(full), "{arch}: {name}");
        }
        let driver_object = types.type_by_name("DRIVER_OBJECT").expect("DRIVER_OBJECT");
        let record = types.record(driver_object).expect("a record");
        assert!(record.complete);
        assert_eq!(record.size, crate::wdm::DriverObject::for_arch(arch).size);
        let name = record
            .fields
            .iter()
            .find(|f| f.name == "DriverName")
            .expect("DriverName");
        assert_eq!(
            name.offset,
            crate::wdm::DriverObject::for_arch(arch).driver_name
        );
        // The forward reference the member uses resolves to the definition.
        assert_eq!(name.ty, full);
        let array = record
            .fields
            .iter()
            .find(|f| f.name == "MajorFunction")
            .expect("MajorFunction");
        assert!(matches!(
            types.get(array.ty),
            Some(Type::Array { count: 28, .. })
        ));
        assert!(types.type_by_name("NO_SUCH_TYPE").is_none());
    }
}

#[test]
fn a_pdb_of_another_build_is_refused() {
    let built = built(Arch::X64);
    let mut image = built.image.clone();
    if let Some((guid, _, _)) = image.pdb.as_mut() {
        guid[0] ^= 1;
    }
    let error = DriverSymbols::parse(&built.pdb, &image).expect_err("mismatch");
    assert!(matches!(error, PdbError::Mismatch { .. }), "{error}");
    image.pdb = None;
    let error = DriverSymbols::parse(&built.pdb, &image).expect_err("no record");
    assert!(matches!(error, PdbError::NoCodeViewRecord), "{error}");
    // The x86 PDB does not belong to the x64 image either.
    let error = DriverSymbols::parse(&super::tests::built(Arch::X86).pdb, &built.image)
        .expect_err("other arch");
    assert!(matches!(error, PdbError::Mismatch { .. }), "{error}");
}

#[test]
fn a_truncated_pdb_is_an_error() {
    for arch in Arch::ALL {
        let built = built(arch);
        let len = built.pdb.len();
        for cut in [0, 1, 31, 32, 0x1000, len / 2, len - 0x1000, len - 1] {
            let result = DriverSymbols::parse(&built.pdb[..cut], &built.image);
            assert!(result.is_err(), "{arch}: {cut} of {len} bytes loaded");
        }
    }
    assert!(
        DriverSymbols::load(
            Path::new("/nonexistent/Sample.pdb"),
            &built(Arch::X86).image
        )
        .is_err()
    );
}

/// A small deterministic generator (xorshift), so failures reproduce.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn bit_flips_give_an_error_or_symbols_never_a_panic() {
    for arch in Arch::ALL {
        let built = built(arch);
        let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ arch.pointer_size();
        let mut errors = 0;
        for _ in 0..150 {
            let mut bytes = built.pdb.clone();
            let len = bytes.len() as u64;
            for _ in 0..=next(&mut state) % 8 {
                let at = usize::try_from(next(&mut state) % len).expect("fits");
                bytes[at] ^= 1 << (next(&mut state) % 8);
            }
            if let Ok(symbols) = DriverSymbols::parse(&bytes, &built.image) {
                // Whatever loaded must be usable.
                let _ = symbols.procedure_by_name("DriverEntry");
                let _ = symbols.line_at(built.image.entry_rva);
                if let Some(ty) = symbols.global("g_RegistryPath").and_then(|g| g.ty) {
                    let _ = crate::types::dt(&symbols.types, ty, Some(0x1000), arch, &|_, n| {
                        Some(vec![0x41; n])
                    });
                }
            } else {
                errors += 1;
            }
        }
        assert!(errors > 0, "{arch}: no flip was noticed");
    }
}

/// Flips inside the type stream, which every load reads in full.
#[test]
fn corrupt_type_records_give_an_error_never_a_panic() {
    let built = built(Arch::X86);
    let tpi = msf::Msf::parse(&built.pdb)
        .and_then(|msf| msf.required(2, "TPI"))
        .expect("the TPI stream");
    assert!(tpi::Types::parse(&tpi).is_ok());
    let mut state = 0x1234_5678_u64;
    for _ in 0..2000 {
        let mut bytes = tpi.clone();
        let at = usize::try_from(next(&mut state) % bytes.len() as u64).expect("fits");
        bytes[at] = u8::try_from(next(&mut state) & 0xff).expect("a byte");
        // Labelling walks a type's references, where a corrupt table's
        // cycles would show; once per table is enough.
        if let Ok(types) = tpi::Types::parse(&bytes) {
            for name in ["_UNICODE_STRING", "_DRIVER_OBJECT", "_POOL_HEADER"] {
                let _ = types
                    .table
                    .type_by_name(name)
                    .map(|id| types.table.label(id));
            }
        }
    }
    for cut in [0, 4, 55, 56, 100, tpi.len() - 1] {
        assert!(tpi::Types::parse(&tpi[..cut]).is_err(), "{cut}");
    }
}

/// Symbol-record bytes: kind, then body.
fn record(kind: u16, body: &[u8]) -> Vec<u8> {
    let mut bytes = kind.to_le_bytes().to_vec();
    bytes.extend_from_slice(body);
    bytes
}

fn name(text: &str) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    bytes.push(0);
    bytes
}

/// A hand-built module stream for a classic MSVC x86 procedure (the form
/// C drivers' PDBs use; our Rust PDBs have none): `S_GPROC32` of a
/// two-parameter function type, `S_BPREL32` parameters at +8 and +0xc, an
/// `S_REGREL32` local at ebp-0x10, a `_FULL_SCOPE` frame range, `S_END`.
#[test]
fn classic_msvc_locals_are_read_from_hand_built_records() {
    let built = built(Arch::X86);
    let tpi = msf::Msf::parse(&built.pdb)
        .and_then(|msf| msf.required(2, "TPI"))
        .expect("the TPI stream");
    let mut types = tpi::Types::parse(&tpi).expect("types");
    // DriverEntry's type in our PDB: two parameters.
    let entry_type = 0x11D1;
    assert_eq!(types.parameter_count(entry_type), Some(2));

    let mut procedures = Vec::new();
    let mut data = Vec::new();
    let to_rva = |at: SectionOffset| (at.section == 1).then_some(0x1000 + at.offset);
    let mut reader = ModuleReader {
        arch: Arch::X86,
        types: &mut types,
        procedures: &mut procedures,
        data: &mut data,
        to_rva: &to_rva,
        scopes: Vec::new(),
        current: None,
        last_local: None,
        classic: 0,
        classic_parameters: None,
    };
    let mut proc = Vec::new();
    proc.extend_from_slice(&[0; 12]); // parent, end, next
    proc.extend_from_slice(&0x40u32.to_le_bytes()); // length
    proc.extend_from_slice(&[0; 8]); // debug start, end
    proc.extend_from_slice(&entry_type.to_le_bytes());
    proc.extend_from_slice(&0x20u32.to_le_bytes()); // offset
    proc.extend_from_slice(&1u16.to_le_bytes()); // section
    proc.push(0); // flags
    proc.extend(name("_DriverEntry@8"));
    let mut frameproc = vec![0u8; 22];
    frameproc.extend_from_slice(&((2u32 << 14) | (2u32 << 16)).to_le_bytes());
    let bprel = |offset: i32, ty: u32, text: &str| {
        let mut body = offset.to_le_bytes().to_vec();
        body.extend_from_slice(&ty.to_le_bytes());
        body.extend(name(text));
        record(codeview::S_BPREL32, &body)
    };
    let mut regrel = (-0x10i32).to_le_bytes().to_vec();
    regrel.extend_from_slice(&0x74u32.to_le_bytes()); // int
    regrel.extend_from_slice(&22u16.to_le_bytes()); // ebp
    regrel.extend(name("status"));
    let mut local = 0x74u32.to_le_bytes().to_vec();
    local.extend_from_slice(&0u16.to_le_bytes());
    local.extend(name("spilled"));
    let full_scope = (-0x20i32).to_le_bytes().to_vec();
    let stream = [
        record(codeview::S_GPROC32, &proc),
        record(codeview::S_FRAMEPROC, &frameproc),
        bprel(8, 0x1001, "DriverObject"),
        bprel(12, 0x100B, "RegistryPath"),
        record(codeview::S_REGREL32, &regrel),
        record(codeview::S_LOCAL, &local),
        record(
            codeview::S_DEFRANGE_FRAMEPOINTER_REL_FULL_SCOPE,
            &full_scope,
        ),
        record(6, &[]),
    ];
    for bytes in &stream {
        reader.symbol(bytes).expect("well-formed");
    }
    assert!(reader.current.is_none() && reader.scopes.is_empty());
    let procedure = procedures.first().expect("one procedure");
    assert_eq!((procedure.rva, procedure.length), (0x1020, 0x40));
    assert_eq!(
        procedure
            .frame
            .and_then(|f| f.locals)
            .and_then(Register::name),
        Some("ebp")
    );
    let summary: Vec<(&str, bool, Storage)> = procedure
        .locals
        .iter()
        .map(|l| (l.name.as_str(), l.is_parameter, l.locations[0].storage))
        .collect();
    assert_eq!(
        summary,
        [
            ("DriverObject", true, Storage::FrameRelative(8)),
            ("RegistryPath", true, Storage::FrameRelative(12)),
            (
                "status",
                false,
                Storage::RegisterRelative(Register(22), -0x10)
            ),
            ("spilled", false, Storage::FrameRelative(-0x20)),
        ]
    );
    assert!(procedure.locals[3].locations[0].range.is_none());
    assert!(procedure.locals[3].location_at(0x1050).is_some());
}

#[test]
fn defrange_register_rel_and_malformed_records() {
    // S_DEFRANGE_REGISTER_REL: esp+0x10 over [0001:0100, +0x20) with a gap.
    let mut body = 21u16.to_le_bytes().to_vec();
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&0x10i32.to_le_bytes());
    body.extend_from_slice(&0x100u32.to_le_bytes());
    body.extend_from_slice(&1u16.to_le_bytes());
    body.extend_from_slice(&0x20u16.to_le_bytes());
    body.extend_from_slice(&4u16.to_le_bytes());
    body.extend_from_slice(&2u16.to_le_bytes());
    let range =
        codeview::defrange_record(codeview::S_DEFRANGE_REGISTER_REL, &body).expect("parses");
    assert_eq!(range.kind, DefRangeKind::RegisterRelative(21, 0x10));
    assert_eq!(range.gaps, [(4, 2)]);
    // Every truncation is refused, not read past.
    for cut in 0..12 {
        assert!(
            codeview::defrange_record(codeview::S_DEFRANGE_REGISTER_REL, &body[..cut]).is_none(),
            "{cut}"
        );
    }
    assert!(codeview::proc_record(&[0; 10]).is_none());
    assert!(codeview::frameproc_record(&[0; 25]).is_none());
    assert!(codeview::local_record(&[1, 2, 3]).is_none());
}

#[test]
fn register_names_follow_cvinfo() {
    let names: Vec<Option<&str>> = [
        17, 18, 19, 20, 21, 22, 23, 24, 328, 330, 331, 334, 335, 336, 343, 367, 30006, 0, 154,
    ]
    .into_iter()
    .map(|n| Register(n).name())
    .collect();
    assert_eq!(
        names,
        [
            Some("eax"),
            Some("ecx"),
            Some("edx"),
            Some("ebx"),
            Some("esp"),
            Some("ebp"),
            Some("esi"),
            Some("edi"),
            Some("rax"),
            Some("rcx"),
            Some("rdx"),
            Some("rbp"),
            Some("rsp"),
            Some("r8"),
            Some("r15"),
            Some("r15d"),
            Some("vframe"),
            None,
            None,
        ]
    );
}

#[test]
fn x86_publics_are_undecorated_x64_ones_are_not() {
    assert_eq!(undecorate("_DriverEntry@8", Arch::X86), "DriverEntry");
    assert_eq!(undecorate("_g_RegistryPath", Arch::X86), "g_RegistryPath");
    assert_eq!(undecorate("@fast@4", Arch::X86), "fast");
    assert_eq!(undecorate("_a@b", Arch::X86), "a@b");
    assert_eq!(undecorate("_g_RegistryPath", Arch::X64), "_g_RegistryPath");
}

/// The ms-pdb evaluation's single-field corruptions that hang, panic or
/// abort Microsoft's `ms-pdb` crate: each gives our reader an error or
/// bounded symbols, quickly.
fn survives(bytes: &[u8], image: &PeImage, what: &str) {
    let started = std::time::Instant::now();
    if let Ok(symbols) = DriverSymbols::parse(bytes, image) {
        let _ = symbols.procedure_by_name("DriverEntry");
        let _ = symbols.types.type_by_name("UNICODE_STRING");
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{what}: took {:?}",
        started.elapsed()
    );
}

fn set_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

/// MSF superblock fields (after the 32-byte magic): `BlockSize` at 32,
/// `NumBlocks` at 40, `NumDirectoryBytes` at 44 (LLVM, "The MSF File Format").
#[test]
fn msf_superblock_fields_set_to_extremes_are_errors() {
    for arch in Arch::ALL {
        let built = built(arch);
        for (at, value, what) in [
            (40, 0xffff_ffff, "num_pages = 0xffffffff"),
            (32, 0x8000_0000, "page_size = 0x80000000"),
            (44, 0xffff_fffc, "stream directory size = 0xfffffffc"),
        ] {
            let mut bytes = built.pdb.clone();
            set_u32(&mut bytes, at, value);
            let error = msf::Msf::parse(&bytes).expect_err(what);
            assert!(
                matches!(error, PdbError::Corrupt { .. }),
                "{arch} {what}: {error}"
            );
            assert!(
                DriverSymbols::parse(&bytes, &built.image).is_err(),
                "{arch} {what}"
            );
        }
    }
}

/// The TPI header: version, `HeaderSize` at 4, `TypeIndexBegin` at 8,
/// `TypeIndexEnd` at 12 (LLVM, "The PDB TPI and IPI Streams"). Set in the
/// stream itself, and in the PDB file wherever a TPI or IPI header starts a
/// block.
#[test]
fn tpi_header_fields_set_to_extremes_are_errors() {
    for arch in Arch::ALL {
        let built = built(arch);
        let tpi = msf::Msf::parse(&built.pdb)
            .and_then(|msf| msf.required(2, "TPI"))
            .expect("the TPI stream");
        let header = tpi[..12].to_vec();
        let block = usize::try_from(u32::from_le_bytes(built.pdb[32..36].try_into().expect("4")))
            .expect("block size");
        let starts: Vec<usize> = (0..built.pdb.len())
            .step_by(block)
            .filter(|at| built.pdb[*at..].starts_with(&header))
            .collect();
        assert!(!starts.is_empty(), "{arch}: the TPI header's block");
        for (at, value, what) in [
            (12, 0xffff_ffff, "type_index_end = 0xffffffff"),
            (4, 0xffff_ff00, "header_size = 0xffffff00"),
        ] {
            let mut stream = tpi.clone();
            set_u32(&mut stream, at, value);
            let error = tpi::Types::parse(&stream).expect_err(what);
            assert!(
                matches!(error, PdbError::Corrupt { .. }),
                "{arch} {what}: {error}"
            );
            let mut bytes = built.pdb.clone();
            for start in &starts {
                set_u32(&mut bytes, start + at, value);
            }
            survives(&bytes, &built.image, what);
        }
    }
}

/// A TPI stream of hand-built records after a 56-byte header.
fn tpi_stream(records: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::new();
    for record in records {
        let length = u16::try_from(record.len()).expect("small");
        body.extend_from_slice(&length.to_le_bytes());
        body.extend_from_slice(record);
    }
    let count = u32::try_from(records.len()).expect("few");
    let mut stream = vec![0_u8; 56];
    set_u32(&mut stream, 0, 20_040_203); // V80
    set_u32(&mut stream, 4, 56);
    set_u32(&mut stream, 8, 0x1000);
    set_u32(&mut stream, 12, 0x1000 + count);
    set_u32(&mut stream, 16, u32::try_from(body.len()).expect("small"));
    stream.extend_from_slice(&body);
    stream
}

/// A struct whose `LF_FIELDLIST` continues (`LF_INDEX`) to itself: its one
/// member counts once, and the read ends.
#[test]
fn a_field_list_continued_to_itself_ends() {
    // 0x1000: LF_FIELDLIST { LF_MEMBER int Length at 0; LF_INDEX 0x1000 }.
    let mut fields = Vec::new();
    fields.extend_from_slice(&0x150d_u16.to_le_bytes());
    fields.extend_from_slice(&3_u16.to_le_bytes()); // public
    fields.extend_from_slice(&0x0074_u32.to_le_bytes()); // T_INT4
    fields.extend_from_slice(&0_u16.to_le_bytes()); // offset 0
    fields.extend_from_slice(&name("Length"));
    while fields.len() % 4 != 0 {
        fields.push(0xf0 | u8::try_from(4 - fields.len() % 4).expect("pad"));
    }
    fields.extend_from_slice(&0x1404_u16.to_le_bytes());
    fields.extend_from_slice(&0_u16.to_le_bytes());
    fields.extend_from_slice(&0x1000_u32.to_le_bytes());
    // 0x1001: LF_STRUCTURE Cycle { fields 0x1000 }, 4 bytes.
    let mut structure = Vec::new();
    structure.extend_from_slice(&1_u16.to_le_bytes()); // member count
    structure.extend_from_slice(&0_u16.to_le_bytes()); // properties
    structure.extend_from_slice(&0x1000_u32.to_le_bytes());
    structure.extend_from_slice(&[0; 8]); // derivation list, vtable shape
    structure.extend_from_slice(&4_u16.to_le_bytes()); // size
    structure.extend_from_slice(&name("Cycle"));
    let stream = tpi_stream(&[record(0x1203, &fields), record(0x1505, &structure)]);
    let started = std::time::Instant::now();
    let types = tpi::Types::parse(&stream).expect("parses");
    let id = types.table.type_by_name("Cycle").expect("Cycle");
    let Some(Type::Record(record)) = types.table.get(id) else {
        panic!("not a record");
    };
    let names: Vec<&str> = record
        .fields
        .iter()
        .map(|field| field.name.as_str())
        .collect();
    assert_eq!(names, ["Length"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
}
