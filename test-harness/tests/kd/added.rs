//! kd commands added to the session (issue 16, "Missing"): `.lastevent`,
//! `.bugcheck`, `vertarget`, `version`, `!irql`, `dds`/`dqs`/`dps`. Each
//! output form is checked against a documented example (cited beside the
//! check), and each value against what the session shows elsewhere (the
//! stack, `lm`, the fatal error banner).

use super::{Transcript, hex, kd_script};
use crate::common;

use harness_core::arch::Arch;
use harness_core::verdict::ExitCode;

/// The commands' script: before the driver loads, at DriverEntry, after a
/// step, and after the verifier's bug check at unload.
const SCRIPT: &str = ".lastevent\n.bugcheck\nvertarget\nbp Sample!DriverEntry\ng\n.lastevent\n!irql\n\
kvn\ndps @$csp l4\ndds @$csp l1\ndqs @$csp l1\np\n.lastevent\ng\n.bugcheck\n.lastevent\nlm\nversion\nq\n";

/// The words of `Arguments a b c d` as numbers.
fn arguments(line: &str) -> Vec<u64> {
    line.strip_prefix("Arguments ")
        .unwrap_or_else(|| panic!("not an Arguments line: {line}"))
        .split(' ')
        .map(hex)
        .collect()
}

/// A `dps` line: (address, value, symbol).
fn symbol_line(line: &str) -> (u64, u64, Option<&str>) {
    let mut words = line.split_whitespace();
    let address = hex(words.next().expect("address"));
    let value = hex(words.next().expect("value"));
    (address, value, words.next())
}

#[allow(clippy::too_many_lines)] // one session, command by command
fn target_and_events(arch: Arch) {
    let built = common::driver(arch, true);
    let transcript: Transcript = kd_script(&built.sys, SCRIPT);
    assert_eq!(transcript.code, i32::from(ExitCode::Violation as u8));

    // No stop yet: the session says so rather than invent an event.
    assert!(transcript.nth(".lastevent", 0)[0].starts_with("harness kd: no event yet"));

    // `.bugcheck` before any bug check: KiBugCheckData is all zero. Form:
    // "Bugcheck code 0000000a" / "Arguments 00000000 0000001c ..."
    // (MicrosoftDocs/windows-driver-docs, debugger/bug-check-0xa--irql-not-
    // less-or-equal.md) and "Arguments 00000000`00000022 ffffbd06`d46e0000
    // ..." on x64 (public x64 sessions).
    let before = transcript.nth(".bugcheck", 0);
    assert_eq!(before[0], "Bugcheck code 00000000");
    assert_eq!(arguments(&before[1]), [0, 0, 0, 0]);
    let digits = arch.pointer_digits();
    for word in before[1].split(' ').skip(1) {
        assert_eq!(word.replace('`', "").len(), digits, "{before:?}");
    }

    // vertarget: the real Windows 7 SP1 line (a 1-processor Windows 7 x64
    // session prints "Windows 7 Kernel Version 7601 (Service Pack 1) MP
    // (1 procs) Free x64"), then the kernel base, which is lm's nt start.
    let platform = match arch {
        Arch::X86 => "x86 compatible",
        Arch::X64 => "x64",
    };
    let version = transcript.of("vertarget");
    assert_eq!(
        version[0],
        format!("Windows 7 Kernel Version 7601 (Service Pack 1) MP (1 procs) Free {platform}")
    );
    assert_eq!(version[1], "Machine Name:");
    let base = hex(version[2]
        .strip_prefix("Kernel base = 0x")
        .unwrap_or_else(|| panic!("{version:?}")));
    let nt = transcript
        .of("lm")
        .iter()
        .find(|line| line.split_whitespace().nth(2) == Some("nt"))
        .expect("nt in lm")
        .clone();
    assert_eq!(base, hex(nt.split_whitespace().next().expect("start")));
    // `version` starts with the same target lines.
    assert_eq!(&transcript.of("version")[..3], version);

    // A breakpoint hit is kd's break instruction exception; a step is a
    // single-step exception (STATUS_SINGLE_STEP 0x80000004, ntstatus.h).
    assert_eq!(
        transcript.nth(".lastevent", 1),
        ["Last event: Break instruction exception - code 80000003 (first chance)"]
    );
    assert_eq!(
        transcript.nth(".lastevent", 2),
        ["Last event: Single step exception - code 80000004 (first chance)"]
    );

    // DriverEntry runs "in the context of a system thread at IRQL =
    // PASSIVE_LEVEL" (MicrosoftDocs/windows-driver-docs, kernel/writing-a-
    // driverentry-routine.md); kd names level 0 LOW_LEVEL
    // (debugger/-irql.md: "Debugger saved IRQL for processor 0x1 -- 0
    // (LOW_LEVEL)").
    assert_eq!(
        transcript.of("!irql"),
        ["Debugger saved IRQL for processor 0x0 -- 0 (LOW_LEVEL)"]
    );

    // dps at DriverEntry's first instruction: the top of the stack is the
    // return address kvn shows for frame 00, named as kvn names frame 01.
    let stack = transcript.of("kvn");
    let return_address = hex(stack[1].split_whitespace().nth(2).expect("RetAddr"));
    let caller = stack[2].split_whitespace().last().expect("call site");
    let values = transcript.of("dps @$csp l4");
    assert_eq!(values.len(), 4, "{values:?}");
    let (address, value, symbol) = symbol_line(&values[0]);
    assert_eq!(value, return_address, "{values:?}");
    assert_eq!(symbol, Some(caller), "{values:?}");
    let size = arch.pointer_size();
    for (index, line) in values.iter().enumerate() {
        assert_eq!(symbol_line(line).0, address + size * index as u64);
        assert!(line.contains("  "), "two spaces after the address: {line}");
    }
    // dds is 4-byte values on either architecture, dqs 8-byte ones.
    let dword = symbol_line(&transcript.of("dds @$csp l1")[0]);
    assert_eq!(dword.1, return_address & 0xffff_ffff);
    let qword = transcript.of("dqs @$csp l1");
    assert_eq!(qword.len(), 1);
    if arch == Arch::X64 {
        assert_eq!(qword[0], values[0]);
    } else {
        assert_eq!(dword.2, Some(caller));
    }

    // After the verifier's bug check: the code and arguments the fatal
    // error banner showed, in .bugcheck's form.
    let crash = transcript.nth("g", 1);
    let banner = crash
        .iter()
        .position(|line| line == "*** Fatal System Error: 0x000000c4")
        .expect("the fatal error banner");
    let parameters: Vec<u64> = crash[banner + 1]
        .trim()
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(hex)
        .collect();
    let after = transcript.nth(".bugcheck", 1);
    assert_eq!(after[0], "Bugcheck code 000000C4");
    assert_eq!(arguments(&after[1]), parameters);
    assert_eq!(arguments(&after[1])[0], 0x62);
    assert_eq!(
        transcript.nth(".lastevent", 3),
        ["Last event: Break instruction exception - code 80000003 (first chance)"]
    );
}

#[test]
fn target_and_event_commands_read_the_machine_on_x86() {
    target_and_events(Arch::X86);
}

#[test]
fn target_and_event_commands_read_the_machine_on_x64() {
    target_and_events(Arch::X64);
}

#[test]
fn symbol_displays_and_irql_refuse_as_kd_does() {
    let built = common::driver(Arch::X86, false);
    let transcript = kd_script(
        &built.sys,
        "dps 0 l2\ndps nosuch\n!irql 1\ndps 0 L?0x100000\ndds nt!PoolHitTag l1\ndds\nq\n",
    );
    // Unmapped memory: kd's question marks, one line per value.
    assert_eq!(
        transcript.of("dps 0 l2"),
        ["00000000  ????????", "00000004  ????????"]
    );
    assert_eq!(
        transcript.of("dps nosuch"),
        ["Couldn't resolve error at 'nosuch'"]
    );
    // A processor the machine has not (debugger/-irql.md's message).
    assert_eq!(transcript.of("!irql 1"), ["Cannot get PRCB address"]);
    // The listing stops at 0x10000 values (README, Limits and caps).
    assert_eq!(transcript.of("dps 0 L?0x100000").len(), 0x1_0000);
    // A data value is shown bare; a bare dds goes on after the last one.
    let tag = transcript.of("dds nt!PoolHitTag l1");
    let (address, _, symbol) = symbol_line(&tag[0]);
    assert_eq!(symbol, None, "{tag:?}");
    let next = transcript.of("dds");
    assert_eq!(next.len(), 32, "128 bytes by default");
    assert_eq!(symbol_line(&next[0]).0, address + 4);
}

/// `TimeDateStamp` and `CheckSum` of a PE file, read from the file itself.
fn file_header(path: &std::path::Path) -> (u32, u32) {
    let data = std::fs::read(path).expect("read the driver");
    let word = |at: usize| u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes"));
    let pe = word(0x3c) as usize;
    (word(pe + 8), word(pe + 24 + 64))
}

/// The value after `Name:` in an `lmv` block.
fn detail<'a>(lines: &'a [String], name: &str) -> &'a str {
    lines
        .iter()
        .find_map(|line| line.trim_start().strip_prefix(name))
        .map_or_else(|| panic!("no {name} in {lines:#?}"), str::trim)
}

fn verbose_modules(arch: Arch) {
    let built = common::driver(arch, false);
    let transcript = kd_script(
        &built.sys,
        "lmv\nbp Sample!DriverEntry\ng\nlmvm Sample\nlmm Sam*\nlm v m nt\nlm x\nq\n",
    );
    // Before the driver loads: the kernel only. Its emulated image has no
    // PE header, so kd's words for an unreadable header (a real Windows 7
    // `lmvm`, quoted in crates/debugger/src/session/module_info.rs).
    let kernel = transcript.of("lmv");
    assert_eq!(kernel.len(), 8, "{kernel:#?}");
    assert_eq!(detail(kernel, "Timestamp:"), "unavailable (FFFFFFFE)");
    assert_eq!(detail(kernel, "CheckSum:"), "missing");
    assert_eq!(transcript.of("lm v m nt"), kernel);
    let row: Vec<&str> = kernel[1].split_whitespace().collect();
    assert_eq!(
        u64::from_str_radix(detail(kernel, "ImageSize:"), 16).expect("hex"),
        hex(row[1]) - hex(row[0])
    );
    assert_eq!(
        detail(kernel, "Translations:"),
        "0000.04b0 0000.04e4 0409.04b0 0409.04e4"
    );

    // The loaded driver: the header the machine mapped is the file's.
    let driver = transcript.of("lmvm Sample");
    let row: Vec<&str> = driver[1].split_whitespace().collect();
    assert_eq!(row[2], "Sample", "{driver:#?}");
    assert_eq!(detail(driver, "Image name:"), "Sample.sys");
    assert_eq!(detail(driver, "Loaded symbol image file:"), "Sample.sys");
    let (timestamp, checksum) = file_header(&built.sys);
    let shown = detail(driver, "Timestamp:");
    assert!(
        shown.ends_with(&format!(" ({timestamp:08X})")),
        "{shown} vs {timestamp:08X}"
    );
    assert_eq!(detail(driver, "CheckSum:"), format!("{checksum:08X}"));
    assert_eq!(
        u64::from_str_radix(detail(driver, "ImageSize:"), 16).expect("hex"),
        hex(row[1]) - hex(row[0])
    );
    // Without v: the row only.
    assert_eq!(transcript.of("lmm Sam*"), &driver[..2]);
    assert_eq!(transcript.of("lm x"), ["    ^ Syntax error in 'lm x'"]);
}

#[test]
fn lmv_shows_the_image_header_the_machine_mapped_on_x86() {
    verbose_modules(Arch::X86);
}

#[test]
fn lmv_shows_the_image_header_the_machine_mapped_on_x64() {
    verbose_modules(Arch::X64);
}

/// The part of a `dv /t` line before the variable's name: its C type.
fn dv_type<'a>(lines: &'a [String], variable: &str) -> &'a str {
    lines
        .iter()
        .find_map(|line| {
            line.split_once(" = ")?
                .0
                .strip_suffix(variable)
                .map(str::trim_end)
        })
        .unwrap_or_else(|| panic!("no {variable} in {lines:#?}"))
}

fn symbols_with_types(arch: Arch) {
    let built = common::driver(arch, false);
    let transcript = kd_script(
        &built.sys,
        "bp Sample!DriverEntry\ng\ndv /t\nx Sample!DriverEntry\nx Sample!SampleUnload\n\
         x Sample!g_RegistryPath\nx nt!ExAllocatePoolWithTag\nx nt!PoolHitTag\nq\n",
    );
    // A function's parameter types from the PDB, as kd lists them: "x
    // Sample!DriverEntry" in kd gives `Sample!DriverEntry (struct
    // _DRIVER_OBJECT *, struct _UNICODE_STRING *)` for the C driver (issue
    // 16); the Rust driver's PDB names its own types, the ones dv shows.
    let locals = transcript.of("dv /t");
    let driver_object = dv_type(locals, "driver");
    let registry_path = dv_type(locals, "registry_path");
    let entry = transcript.of("x Sample!DriverEntry");
    assert_eq!(entry.len(), 1, "{entry:?}");
    assert!(
        entry[0].ends_with(&format!(
            "          Sample!DriverEntry ({driver_object}, {registry_path})"
        )),
        "{entry:?}"
    );
    let unload = transcript.of("x Sample!SampleUnload");
    assert!(
        unload[0].ends_with(&format!("Sample!SampleUnload ({driver_object})")),
        "{unload:?}"
    );
    // A variable: its value as dv shows one (a structure by its type name).
    let global = transcript.of("x Sample!g_RegistryPath");
    let record = registry_path.trim_end_matches(" *");
    assert!(
        global[0].ends_with(&format!("Sample!g_RegistryPath = {record}")),
        "{global:?}"
    );
    // The kernel's names carry no type: kd's notes for public symbols.
    assert!(
        transcript.of("x nt!ExAllocatePoolWithTag")[0]
            .ends_with("nt!ExAllocatePoolWithTag (<no parameter info>)")
    );
    assert!(transcript.of("x nt!PoolHitTag")[0].ends_with("nt!PoolHitTag = <no type information>"));
}

#[test]
fn x_shows_prototypes_from_the_pdb_on_x86() {
    symbols_with_types(Arch::X86);
}

#[test]
fn x_shows_prototypes_from_the_pdb_on_x64() {
    symbols_with_types(Arch::X64);
}

fn clean_and_distance_stacks(arch: Arch) {
    let built = common::driver(arch, true);
    let transcript = kd_script(
        &built.sys,
        "ed nt!PoolHitTag 'dcba'\ng\nk\nkf\nkc\nkc 2\nkvn\nkvf\nq\n",
    );
    let plain = transcript.of("k");
    assert!(plain.len() > 5, "{plain:?}");
    // kc: module!function only (debugger/k--kb--kc--...md, "c"), one per
    // frame, in the same order as k's.
    let clean = transcript.of("kc");
    assert_eq!(clean[0], " # Call Site");
    assert_eq!(clean.len(), plain.len());
    for (row, site) in plain[1..].iter().zip(&clean[1..]) {
        let number = &row[..2];
        let function = row
            .split_whitespace()
            .nth(3)
            .and_then(|name| name.split("+0x").next())
            .expect("call site");
        assert_eq!(*site, format!("{number} {function}"), "{row}");
    }
    assert_eq!(transcript.of("kc 2"), &clean[..3]);

    // kf: k's rows behind the distance from the frame above ("the number of
    // bytes that separate the frames on the actual stack"), in hex; none
    // for frame 00.
    for (command, with_memory) in [("k", "kf"), ("kvn", "kvf")] {
        let rows = transcript.of(command);
        let spaced = transcript.of(with_memory);
        assert_eq!(rows.len(), spaced.len(), "{spaced:?}");
        assert_eq!(
            spaced[0],
            format!(" #   Memory  {}", rows[0].trim_start_matches(" # "))
        );
        let mut above: Option<u64> = None;
        for (row, line) in rows[1..].iter().zip(&spaced[1..]) {
            let child = hex(row.split_whitespace().nth(1).expect("child"));
            let distance = line[2..11].trim();
            match above {
                None => assert_eq!(distance, "", "{line}"),
                Some(above) => assert_eq!(hex(distance), child - above, "{line}"),
            }
            assert_eq!(&line[..2], &row[..2]);
            assert_eq!(&line[12..], &row[2..], "the k row follows");
            above = Some(child);
        }
    }
}

#[test]
fn kc_and_kf_follow_the_walked_stack_on_x86() {
    clean_and_distance_stacks(Arch::X86);
}

#[test]
fn kc_and_kf_follow_the_walked_stack_on_x64() {
    clean_and_distance_stacks(Arch::X64);
}

fn driver_objects(arch: Arch) {
    let built = common::driver(arch, true);
    // DriverEntry's first argument at its first instruction: on the stack
    // above the return address (x86 stdcall), in rcx (x64).
    let first_argument = match arch {
        Arch::X86 => "poi(@esp+4)",
        Arch::X64 => "@rcx",
    };
    let transcript = kd_script(
        &built.sys,
        &format!(
            "!drvobj Sample\nbp Sample!DriverEntry\ng\n? {first_argument}\n? Sample!DriverEntry\n!drvobj Sample\n\
         !drvobj Sample 2\n!drvobj nt!PoolHitTag\ng\n? Sample!SampleUnload\n!drvobj \\Driver\\Sample 3\nq\n"
        ),
    );
    // Before the driver is started \Driver holds no Sample: kdexts'
    // message (crates/debugger/src/session/driver_object.rs).
    assert_eq!(
        transcript.nth("!drvobj Sample", 0),
        ["Driver object Sample not found"]
    );
    // The object DriverEntry was given, with kd's lines (debugger/-drvobj.md
    // and real sessions quoted in crates/debugger/src/session/driver_object.rs).
    let object = hex(transcript.of(&format!("? {first_argument}"))[0]
        .rsplit(' ')
        .next()
        .expect("value"));
    let shown = transcript.nth("!drvobj Sample", 1);
    assert_eq!(
        shown,
        [
            format!("Driver object ({}) is for:", arch.address(object)),
            " \\Driver\\Sample".to_owned(),
            String::new(),
            "Driver Extension List: (id , addr)".to_owned(),
            String::new(),
            "Device Object list:".to_owned(),
            String::new(),
        ]
    );
    // Flag 2: the entry points and the 28 dispatch routines (IRP_MJ_CREATE
    // to IRP_MJ_PNP, wdm.h). The I/O manager points every one at
    // IopInvalidDeviceRequest until the driver sets its own (WRK,
    // base/ntos/io/iomgr: IopLoadDriver); Sample sets none.
    let entry_address =
        |command: &str| hex(transcript.of(command)[0].rsplit(' ').next().expect("value"));
    let routines = transcript.of("!drvobj Sample 2");
    let field = |label: &str| {
        routines
            .iter()
            .find_map(|line| line.strip_prefix(label))
            .map_or_else(|| panic!("no {label} in {routines:#?}"), str::trim)
    };
    assert_eq!(
        field("DriverEntry:"),
        format!(
            "{}\tSample!DriverEntry",
            arch.address(entry_address("? Sample!DriverEntry"))
        )
    );
    // Not set until DriverEntry stores it.
    assert_eq!(field("DriverUnload:"), "00000000");
    let dispatch: Vec<&String> = routines
        .iter()
        .filter(|line| line.starts_with('['))
        .collect();
    assert_eq!(dispatch.len(), 28);
    assert!(dispatch[0].starts_with("[00] IRP_MJ_CREATE "));
    assert!(dispatch[27].starts_with("[1b] IRP_MJ_PNP "));
    assert!(
        dispatch
            .iter()
            .all(|line| line.ends_with("\tnt!IopInvalidDeviceRequest")),
        "{dispatch:#?}"
    );
    // After DriverEntry returned: the unload routine it stored.
    let later = transcript.of("!drvobj \\Driver\\Sample 3");
    let unload = later
        .iter()
        .find_map(|line| line.strip_prefix("DriverUnload:"))
        .expect("DriverUnload");
    assert_eq!(
        unload.trim(),
        format!(
            "{}\tSample!SampleUnload",
            arch.address(entry_address("? Sample!SampleUnload"))
        )
    );
    assert!(
        transcript.of("!drvobj nt!PoolHitTag")[0]
            .ends_with("is not a driver object (its Type is not IO_TYPE_DRIVER)")
    );
}

#[test]
fn drvobj_reads_the_driver_object_on_x86() {
    driver_objects(Arch::X86);
}

#[test]
fn drvobj_reads_the_driver_object_on_x64() {
    driver_objects(Arch::X64);
}

#[test]
fn reboot_starts_the_machine_over_and_drops_the_breakpoints() {
    let built = common::driver(Arch::X86, true);
    let transcript = kd_script(
        &built.sys,
        "dd nt!PoolHitTag l1\ned nt!PoolHitTag 'dcba'\nbp Sample!DriverEntry\ng\nr $t0=5\ng\n.reboot\n\
         bl\n.bugcheck\ndd nt!PoolHitTag l1\n.lastevent\n? $t0\ng\n.bugcheck\nq\n",
    );
    assert_eq!(
        transcript.of(".reboot"),
        [
            "Shutdown occurred...unloading all symbol tables.",
            "Waiting to reconnect...",
            "Connected to Windows 7 7601 x86 compatible target, ptr64 FALSE",
            "Kernel Debugger connection established.",
        ]
    );
    // "all breakpoints are lost if you are running KD" (debugger/crashing-
    // and-rebooting-the-target-computer.md); the machine's memory is fresh
    // (no bug check data, PoolHitTag as at boot); $t0 is the debugger's.
    assert!(transcript.of("bl").is_empty());
    assert_eq!(
        transcript.nth(".bugcheck", 0),
        [
            "Bugcheck code 00000000",
            "Arguments 00000000 00000000 00000000 00000000"
        ]
    );
    assert_eq!(
        transcript.nth("dd nt!PoolHitTag l1", 1),
        transcript.nth("dd nt!PoolHitTag l1", 0)
    );
    assert!(transcript.of(".lastevent")[0].starts_with("harness kd: no event yet"));
    assert_eq!(
        transcript.of("? $t0"),
        ["Evaluate expression: 5 = 00000005"]
    );
    // The driver loads again (the verifier's banner again), runs to the
    // same leak, and the session's exit code is this boot's verdict.
    let again = transcript.nth("g", 2);
    assert!(
        again
            .iter()
            .any(|line| line.contains("Driver Verifier: Enabled for Sample.sys")),
        "{again:?}"
    );
    assert!(!again.iter().any(|line| line == "Breakpoint 0 hit"));
    assert_eq!(transcript.nth(".bugcheck", 1)[0], "Bugcheck code 000000C4");
    assert_eq!(transcript.code, i32::from(ExitCode::Violation as u8));
}

#[test]
fn the_driver_object_is_deleted_at_unload() {
    let built = common::driver(Arch::X64, false);
    let transcript = kd_script(
        &built.sys,
        "bp Sample!DriverEntry\ng\n? @rcx\n!drvobj Sample\nbc *\ng\n!drvobj Sample\n!drvobj \\Driver\\Sample 2\nq\n",
    );
    // Alive while the driver is loaded.
    let object = hex(transcript.of("? @rcx")[0]
        .rsplit(' ')
        .next()
        .expect("value"));
    assert_eq!(
        transcript.nth("!drvobj Sample", 0)[0],
        format!("Driver object ({}) is for:", Arch::X64.address(object))
    );
    // After the unload the I/O manager deleted it (WRK IopUnloadDriver,
    // IopDeleteDriver): \Driver no longer holds it, and kd says so.
    assert_eq!(
        transcript.nth("!drvobj Sample", 1),
        ["Driver object Sample not found"]
    );
    assert_eq!(
        transcript.of("!drvobj \\Driver\\Sample 2"),
        ["Driver object \\Driver\\Sample 2 not found"]
    );
}

#[test]
fn restart_reconnects_a_new_debugger_to_the_same_target() {
    let built = common::driver(Arch::X86, false);
    let transcript = kd_script(
        &built.sys,
        "bp Sample!DriverEntry\ng\nr $t0=5\n? @$ip\n.restart\nbl\n? $t0\n? @$ip\ng\nq\n",
    );
    // In kd, .restart is "Restart Kernel Connection": "equivalent to
    // ending the debugger and then attaching a new debugger to the target
    // computer" (debugger/-restart--restart-kernel-connection-.md); the
    // connection lines are .reboot's, then the harness's pointer to it.
    assert_eq!(
        transcript.of(".restart"),
        [
            "Connected to Windows 7 7601 x86 compatible target, ptr64 FALSE",
            "Kernel Debugger connection established.",
            "harness kd: .restart reconnects the debugger; the target goes on where it was \
             (.reboot starts the machine over)",
        ]
    );
    // A new debugger: no breakpoints, no $t values; the target has not
    // moved, and g runs the driver on from DriverEntry without a stop.
    assert!(transcript.of("bl").is_empty());
    assert_eq!(
        transcript.of("? $t0"),
        ["Evaluate expression: 0 = 00000000"]
    );
    assert_eq!(transcript.nth("? @$ip", 1), transcript.nth("? @$ip", 0));
    let run = transcript.nth("g", 1);
    assert!(
        run.iter()
            .any(|line| line == "Sample driver initialized successfully"),
        "{run:?}"
    );
    assert!(
        !run.iter().any(|line| line.starts_with("Breakpoint")),
        "{run:?}"
    );
    assert_eq!(transcript.code, i32::from(ExitCode::Clean as u8));
}

/// The instruction lines of a listing (not its labels or blank lines).
fn instructions(lines: &[String]) -> Vec<&String> {
    lines
        .iter()
        .filter(|line| !line.is_empty() && !line.ends_with(':'))
        .collect()
}

fn listings(arch: Arch) {
    let built = common::driver(arch, false);
    // Back in DriverEntry just after the allocation's call (the walkthrough's
    // spot: four frames up from the PoolHitTag break).
    let setup = "ed nt!PoolHitTag 'dcba'\ng\ngu\ngu\ngu\ngu\n";
    let first = kd_script(
        &built.sys,
        &format!("{setup}r @$ip\nub\nub @$ip l3\nuf Sample!SampleUnload\nuf 0\nq\n"),
    );
    let ip = hex(first.of("r @$ip")[0].strip_prefix("$ip=").expect("r @$ip"));
    // ub: 8 instructions ending right before the current one, the last
    // being the call that just returned ("the eight or nine instructions
    // before the current address", debugger/u--unassemble-.md).
    let before = first.of("ub");
    assert!(before[0].starts_with("Sample!DriverEntry+0x"), "{before:?}");
    let back = instructions(before);
    assert_eq!(back.len(), 8, "{before:?}");
    assert!(back[7].contains(" call "), "{before:?}");
    assert!(back[7].contains("ExAllocatePoolWithTag"), "{before:?}");
    let three = instructions(first.of("ub @$ip l3"));
    assert_eq!(three, back[5..]);
    // uf: every branch inside the function lands on a block label, and the
    // listing starts at the function.
    let function = first.of("uf Sample!SampleUnload");
    assert_eq!(function[0], "Sample!SampleUnload:");
    let labels: Vec<&str> = function
        .iter()
        .filter_map(|line| line.strip_suffix(':'))
        .collect();
    let mut branches = 0;
    for line in instructions(function) {
        if let Some(target) = line
            .split_whitespace()
            .nth(2)
            .filter(|target| target.starts_with("Sample!SampleUnload+0x"))
        {
            branches += 1;
            assert!(
                labels.contains(&target),
                "{target} is no block in {function:#?}"
            );
        }
    }
    assert!(branches > 0, "{function:#?}");
    for (index, line) in function.iter().enumerate().skip(1) {
        if line.ends_with(':') {
            assert_eq!(function[index - 1], "", "a blank line before each block");
        }
    }
    assert_eq!(first.of("uf 0"), ["No code found, aborting"]);

    // The same machine, the same spots: u from where ub started decodes the
    // same instructions and reaches the current one; u over uf's start and
    // length gives uf's instructions.
    let start = hex(back[0].split_whitespace().next().expect("address"));
    let unload = hex(instructions(function)[0]
        .split_whitespace()
        .next()
        .expect("address"));
    let count = instructions(function).len();
    let from_ub_start = format!("u {start:x} l9");
    let over_function = format!("u {unload:x} l{count:x}");
    let second = kd_script(
        &built.sys,
        &format!("{setup}{from_ub_start}\n{over_function}\nq\n"),
    );
    let forward = second.of(&from_ub_start);
    let forward = instructions(forward);
    assert_eq!(forward[..8], back[..]);
    assert_eq!(
        hex(forward[8].split_whitespace().next().expect("address")),
        ip
    );
    assert_eq!(
        instructions(second.of(&over_function)),
        instructions(function)
    );
}

#[test]
fn ub_and_uf_decode_as_u_does_on_x86() {
    listings(Arch::X86);
}

#[test]
fn ub_and_uf_decode_as_u_does_on_x64() {
    listings(Arch::X64);
}

/// A `!poolused` row: (tag, nonpaged allocs, bytes, paged allocs, bytes).
fn pool_rows(lines: &[String]) -> Vec<(String, [u64; 4])> {
    lines
        .iter()
        .skip(5)
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let number = |index: usize| {
                words[index]
                    .trim_end_matches(|c: char| !c.is_ascii_digit())
                    .parse::<u64>()
                    .unwrap_or_else(|_| panic!("{line}"))
            };
            (
                words[0].to_owned(),
                [number(1), number(2), number(3), number(4)],
            )
        })
        .collect()
}

fn pool_use(arch: Arch, leak: bool) {
    let built = common::driver(arch, leak);
    let transcript = kd_script(
        &built.sys,
        "ed nt!PoolHitTag 'dcba'\ng\ngu\ngu\ngu\ngu\n!pool @$retreg 2\n!poolused\n!poolused 0 abcd\n\
         !poolused 4\n!poolused 1\ng\ng\n!poolused 0 abcd\nq\n",
    );
    // debugger/-poolused.md's header and columns.
    let all = transcript.of("!poolused");
    assert_eq!(
        all[..5],
        [
            "   Sorting by  Tag",
            "",
            "  Pool Used:",
            "            NonPaged            Paged",
            " Tag    Allocs     Used    Allocs     Used",
        ]
    );
    let rows = pool_rows(all);
    let (last, rows) = rows.split_last().expect("a TOTAL row");
    assert_eq!(last.0, "TOTAL");
    let mut sums = [0; 4];
    for (_, counts) in rows {
        for (sum, value) in sums.iter_mut().zip(counts) {
            *sum += value;
        }
    }
    assert_eq!(last.1, sums);
    let tags: Vec<&String> = rows.iter().map(|(tag, _)| tag).collect();
    let mut sorted = tags.clone();
    sorted.sort();
    assert_eq!(tags, sorted, "sorted by tag");

    // The driver's buffer: one paged allocation, charged its whole block
    // (header included), the size !pool shows for it.
    let pool = transcript.of("!pool @$retreg 2");
    let block: Vec<&str> = pool[1].split_whitespace().collect();
    let block_size = hex(block[2]);
    let abcd = transcript.nth("!poolused 0 abcd", 0);
    let abcd_rows = pool_rows(abcd);
    assert_eq!(abcd_rows[0], ("abcd".to_owned(), [0, 0, 1, block_size]));
    assert!(abcd[5].ends_with("UNKNOWN pooltag 'abcd', please update pooltag.txt"));
    assert_eq!(abcd_rows[1], ("TOTAL".to_owned(), [0, 0, 1, block_size]));
    // Flag 4: by paged bytes, most first.
    let by_paged = pool_rows(transcript.of("!poolused 4"));
    let paged: Vec<u64> = by_paged[..by_paged.len() - 1]
        .iter()
        .map(|(_, counts)| counts[3])
        .collect();
    assert!(paged.windows(2).all(|pair| pair[0] >= pair[1]), "{paged:?}");
    assert!(transcript.of("!poolused 1")[0].starts_with("harness kd: "));

    // At the end: the leak is still counted; the clean build freed it.
    let end = pool_rows(transcript.nth("!poolused 0 abcd", 1));
    if leak {
        assert_eq!(end[0], ("abcd".to_owned(), [0, 0, 1, block_size]));
    } else {
        assert_eq!(end, [("TOTAL".to_owned(), [0, 0, 0, 0])]);
    }
}

#[test]
fn poolused_counts_the_leak_per_tag_on_x86() {
    pool_use(Arch::X86, true);
}

#[test]
fn poolused_counts_the_leak_per_tag_on_x64() {
    pool_use(Arch::X64, true);
}

#[test]
fn poolused_shows_the_clean_build_freed_its_buffer() {
    pool_use(Arch::X64, false);
}

/// The address of the instruction line in a stop's output.
fn stop_address(lines: &[String]) -> u64 {
    hex(lines
        .last()
        .and_then(|line| line.split_whitespace().next())
        .expect("an instruction line"))
}

fn steps_to_calls_and_returns(arch: Arch) {
    let built = common::driver(arch, false);
    let start = "bp Sample!DriverEntry\ng\n";
    let transcript = kd_script(
        &built.sys,
        &format!("{start}uf Sample!DriverEntry\npc\npc\npt\nq\n"),
    );
    // pc from DriverEntry's first instruction: the first call in its code
    // (nothing branches before it), not yet executed.
    let first_call = transcript
        .of("uf Sample!DriverEntry")
        .iter()
        .find(|line| line.contains(" call "))
        .expect("a call in DriverEntry")
        .clone();
    let at_call = transcript.nth("pc", 0);
    assert_eq!(at_call.last(), Some(&first_call), "{at_call:?}");
    // Already on a call, pc runs it whole and goes on to the next one.
    let next = transcript.nth("pc", 1);
    assert!(
        next.last().is_some_and(|line| line.contains(" call ")),
        "{next:?}"
    );
    assert!(stop_address(next) > stop_address(at_call));
    // pt: to DriverEntry's return, its debug output on the way.
    let at_return = transcript.of("pt");
    assert!(
        at_return
            .iter()
            .any(|line| line == "Sample driver initialized successfully"),
        "{at_return:?}"
    );
    assert!(at_return[at_return.len() - 2].starts_with("Sample!DriverEntry+0x"));
    assert!(
        at_return.last().is_some_and(|line| line.contains(" ret")),
        "{at_return:?}"
    );

    // A count: pc 2 stops where pc twice did.
    let counted = kd_script(&built.sys, &format!("{start}pc 2\nq\n"));
    assert_eq!(counted.of("pc 2"), next);
    // A breakpoint met on the way stops the command, as kd's page says.
    let stopped = kd_script(
        &built.sys,
        &format!("{start}bp nt!ExAllocatePoolWithTag\npc\npc\nq\n"),
    );
    let hit = stopped.nth("pc", 1);
    assert!(hit.iter().any(|line| line == "Breakpoint 1 hit"), "{hit:?}");
    assert!(
        hit.iter().any(|line| line == "nt!ExAllocatePoolWithTag:"),
        "{hit:?}"
    );
}

#[test]
fn pc_and_pt_stop_at_calls_and_returns_on_x86() {
    steps_to_calls_and_returns(Arch::X86);
}

#[test]
fn pc_and_pt_stop_at_calls_and_returns_on_x64() {
    steps_to_calls_and_returns(Arch::X64);
}

fn pool_validation(arch: Arch) {
    let built = common::driver(arch, true);
    let unit = arch.pool_header_size();
    let transcript = kd_script(
        &built.sys,
        &format!(
            "ed nt!PoolHitTag 'dcba'\ng\ngu\ngu\ngu\ngu\nr @$retreg\n!pool @$retreg\n!poolval @$retreg\n\
             eb @$retreg-{unit:x} 41\n!poolval @$retreg\n!poolval 0\nq\n"
        ),
    );
    let buffer = hex(transcript.of("r @$retreg")[0]
        .strip_prefix("$retreg=")
        .expect("r"));
    let page = buffer & !0xfff;
    let page_text = arch.address(page);
    // The allocator's page, as Windows formats it: a valid chain.
    let valid = transcript.nth("!poolval @$retreg", 0);
    assert_eq!(
        valid,
        [
            "Pool page ".to_owned() + &page_text + " region is Paged pool",
            String::new(),
            format!("Validating Pool headers for pool page: {page_text}"),
            String::new(),
            format!("Pool page [ {page_text} ] is VALID."),
        ]
    );
    // One byte of the buffer's header overwritten (its PreviousSize, the
    // header's first byte): kd's linked-list finding for that block, the
    // right value being the size of the block before it.
    let pool = transcript.of("!pool @$retreg");
    let header = buffer - unit;
    let before = pool
        .iter()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|words| {
            words.get(1) == Some(&"size:")
                && hex(words[0].trim_start_matches('*')) + hex(words[2]) == header
        })
        .expect("the block before the buffer's");
    let invalid = transcript.nth("!poolval @$retreg", 1);
    assert_eq!(invalid[4], format!("Pool page [ {page_text} ] is INVALID."));
    assert_eq!(invalid[6], "Analyzing linked list...");
    assert_eq!(
        invalid[7],
        format!(
            "[ {} ]: invalid previous size [ 0x41 ] should be [ {:#x} ]",
            arch.address(header),
            hex(before[2]) / unit
        )
    );
    assert!(transcript.of("!poolval 0")[0].starts_with("harness kd: "));
}

#[test]
fn poolval_checks_the_header_chain_on_x86() {
    pool_validation(Arch::X86);
}

#[test]
fn poolval_checks_the_header_chain_on_x64() {
    pool_validation(Arch::X64);
}

fn parameter_stacks(arch: Arch) {
    let built = common::driver(arch, true);
    let transcript = kd_script(&built.sys, "ed nt!PoolHitTag 'dcba'\ng\nk\nkp\nkP\nq\n");
    let rows = transcript.of("k");
    let entry = rows
        .iter()
        .position(|row| row.contains(" Sample!DriverEntry+0x"))
        .expect("DriverEntry's frame");
    let number = usize::from_str_radix(&rows[entry][..2], 16).expect("frame number");
    // dv /t in that frame: its parameters come first, in PDB order.
    let locals = kd_script(
        &built.sys,
        &format!("ed nt!PoolHitTag 'dcba'\ng\n.frame {number:x}\ndv /t\nq\n"),
    );
    let parameters = &locals.of("dv /t")[..2];
    assert!(parameters[0].contains(" driver = "), "{parameters:?}");
    assert!(
        parameters[1].contains(" registry_path = "),
        "{parameters:?}"
    );

    // kp: k's rows, the driver's with "(type name = value, ...)" between
    // the function and its offset.
    let with_parameters = transcript.of("kp");
    assert_eq!(with_parameters.len(), rows.len());
    for (index, (plain, shown)) in rows.iter().zip(with_parameters).enumerate() {
        if index == entry {
            let expected = plain.replacen(
                "Sample!DriverEntry+",
                &format!("Sample!DriverEntry({})+", parameters.join(", ")),
                1,
            );
            assert_eq!(*shown, expected);
        } else {
            assert_eq!(
                shown, plain,
                "frames without private symbols stay as k shows them"
            );
        }
    }
    // kP: the same, each parameter on a line of its own.
    let separate = transcript.of("kP");
    assert_eq!(separate.len(), rows.len() + 2);
    assert!(
        separate[entry].ends_with(" Sample!DriverEntry("),
        "{separate:?}"
    );
    assert_eq!(separate[entry + 1], format!("\t\t\t{}, ", parameters[0]));
    assert!(
        separate[entry + 2].starts_with(&format!("\t\t\t{})+0x", parameters[1])),
        "{separate:?}"
    );
    assert_eq!(separate[entry + 3], rows[entry + 1]);
}

#[test]
fn kp_shows_driver_parameters_on_x86() {
    parameter_stacks(Arch::X86);
}

#[test]
fn kp_shows_driver_parameters_on_x64() {
    parameter_stacks(Arch::X64);
}

#[test]
fn drvobj_lists_devices_and_irql_follows_a_spin_lock() {
    let dir = tempfile::tempdir().expect("temp dir");
    let driver = common::c_driver_from("wdm_features.c", "CONTROL_DEVICE", Arch::X64, dir.path());
    let transcript = kd_script(
        &driver,
        "bp nt!KeReleaseSpinLock\ng\n!irql\nkc\n!drvobj control_device_x64\n!devobj SampleCtl\ng\n!irql\nq\n",
    );
    // Holding the spin lock: KeAcquireSpinLockRaiseToDpc raised the IRQL to
    // DISPATCH_LEVEL (wdm.h; the driver prints "irql inside the lock 2").
    assert_eq!(
        transcript.nth("!irql", 0),
        ["Debugger saved IRQL for processor 0x0 -- 2 (DISPATCH_LEVEL)"]
    );
    assert_eq!(
        transcript.nth("!irql", 1),
        ["Debugger saved IRQL for processor 0x0 -- 0 (LOW_LEVEL)"]
    );
    // kc keeps module+offset where there is no function name (no PDB).
    let clean = transcript.of("kc");
    assert!(
        clean[2].starts_with("01 control_device_x64+0x"),
        "{clean:?}"
    );
    // The device IoCreateDevice made: the one whose extension the driver
    // printed, sizeof(DEVICE_OBJECT) after it (wdm.h layout).
    let created = transcript
        .nth("g", 0)
        .iter()
        .find_map(|line| {
            line.strip_suffix(')')?
                .split_once("(extension ")
                .map(|(_, at)| hex(at))
        })
        .expect("the driver's line about its device");
    let shown = transcript.of("!drvobj control_device_x64");
    let listed = shown
        .iter()
        .skip_while(|line| *line != "Device Object list:")
        .nth(1)
        .expect("a device");
    let size = harness_core::wdm::DeviceObject::for_arch(Arch::X64).size;
    assert_eq!(hex(listed.trim()) + size, created, "{shown:?}");
    // !devobj finds it by its name (\Device\SampleCtl, kdexts' lookup), and
    // says its display is not emulated rather than show a partial one.
    let device = transcript.of("!devobj SampleCtl");
    assert!(
        device[0].starts_with(&format!("harness kd: {} is a device object", listed.trim())),
        "{device:?}"
    );
}

/// `!devobj` on what is not a device object, kdexts' answers: a name
/// neither in `\Device` nor an expression is not found; `Sample` is the
/// module's base, whose `Type` is the `MZ` header's.
fn device_objects(arch: Arch) {
    let built = common::driver(arch, false);
    let transcript = kd_script(
        &built.sys,
        "!devobj Sample\nbp Sample!DriverEntry\ng\n!devobj Sample\n!devobj 0\nlm\nq\n",
    );
    assert_eq!(
        transcript.nth("!devobj Sample", 0),
        ["Device object Sample not found"]
    );
    let base = transcript
        .of("lm")
        .iter()
        .find(|line| line.split_whitespace().nth(2) == Some("Sample"))
        .and_then(|line| line.split_whitespace().next())
        .map(hex)
        .expect("Sample in lm");
    assert_eq!(
        transcript.nth("!devobj Sample", 1),
        [format!("{}: is not a device object", arch.address(base))]
    );
    assert_eq!(transcript.of("!devobj 0"), ["Device object 0 not found"]);
}

#[test]
fn devobj_answers_as_kd_for_what_is_not_a_device_on_x86() {
    device_objects(Arch::X86);
}

#[test]
fn devobj_answers_as_kd_for_what_is_not_a_device_on_x64() {
    device_objects(Arch::X64);
}
