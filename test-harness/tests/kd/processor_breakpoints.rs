//! `ba`: processor breakpoints on the emulated machine (issue 16: "`ba w4
//! Sample!g_RegistryPath+4` stops after DriverEntry stores the buffer").
//! Forms: MicrosoftDocs/windows-driver-docs, debugger/ba--break-on-access-.md
//! (access, size, alignment, execute size 1) and bl--breakpoint-list-.md
//! (type and size after the address); kd's messages as a real kd prints
//! them (quoted in `crates/debugger/src/session/processor_breakpoints.rs`).

use super::{hex, kd_script};
use crate::common;

use harness_core::arch::Arch;

fn break_on_access(arch: Arch) {
    let built = common::driver(arch, false);
    // The copy's Buffer field: +4 in x86's UNICODE_STRING, +8 in x64's.
    let size = arch.pointer_size();
    let buffer = format!("Sample!g_RegistryPath+{size}");
    let too_big = if arch == Arch::X86 { 8 } else { 3 };
    let script = format!(
        "ba w{size} {buffer}\nbp Sample!DriverEntry\ng\nba w{size} {buffer}\n\
         ba r4 Sample!g_RegistryPath+2\nba w{too_big} Sample!g_RegistryPath\n\
         ba e2 Sample!DriverEntry\nba i4 3f8\nba e1 Sample!SampleUnload\n\
         ba r1 Sample!g_RegistryPath\nba w2 Sample!g_RegistryPath+2\n\
         ba w1 Sample!g_RegistryPath+1\nbc 4\nbd 3\nbl\n? {buffer}\ng\n.lastevent\n\
         ub @$ip l1\ndp {buffer} l1\nbc 1\ng\nq\n"
    );
    let transcript = kd_script(&built.sys, &script);

    // Before the driver loads its names do not resolve: no deferral for ba.
    assert_eq!(
        transcript.nth(&format!("ba w{size} {buffer}"), 0),
        [format!("Couldn't resolve error at '{buffer}'")]
    );
    assert!(
        transcript
            .nth(&format!("ba w{size} {buffer}"), 1)
            .is_empty()
    );
    // "Address must be ... suitably aligned to match the Size parameter";
    // sizes 1, 2, 4 (x86) and 8 (x64 only); "if Access equals e, Size must
    // be 1" (ba--break-on-access-.md).
    assert_eq!(
        transcript.of("ba r4 Sample!g_RegistryPath+2"),
        ["Data breakpoint must be aligned"]
    );
    assert_eq!(
        transcript.of(&format!("ba w{too_big} Sample!g_RegistryPath")),
        ["Unsupported data breakpoint size"]
    );
    assert_eq!(
        transcript.of("ba e2 Sample!DriverEntry"),
        ["Execution data breakpoint too large"]
    );
    assert!(transcript.of("ba i4 3f8")[0].starts_with("harness kd: ba i "));
    // Four debug registers (DR0-DR3): a fifth is refused.
    assert_eq!(
        transcript.of("ba w1 Sample!g_RegistryPath+1"),
        ["Too many data breakpoints for processor 0"]
    );

    // bl: the type and size after the address, blanks for a bp.
    let address = hex(transcript.of(&format!("? {buffer}"))[0]
        .rsplit(' ')
        .next()
        .expect("value"));
    let list = transcript.of("bl");
    let fields: Vec<Vec<&str>> = list
        .iter()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(fields.len(), 4, "{list:#?}");
    assert_eq!(fields[0][5..], ["0001", "(0001)", "Sample!DriverEntry"]);
    let size_text = size.to_string();
    assert_eq!(
        fields[1][1..],
        [
            "e",
            "Disable",
            "Clear",
            fields[1][4],
            "w",
            &size_text,
            "0001",
            "(0001)",
            &format!("Sample!g_RegistryPath+0x{size}"),
        ]
    );
    assert_eq!(hex(fields[1][4]), address);
    assert_eq!(fields[2][5..8], ["e", "1", "0001"]);
    assert_eq!(fields[3][..2], ["3", "d"], "bd 3 disabled it");
    assert_eq!(fields[3][5..7], ["r", "1"]);

    // The write watch stops after the store: kd shows the next
    // instruction, and the one before it wrote the Buffer field.
    let hit = transcript.nth("g", 1);
    assert_eq!(hit[0], "Breakpoint 1 hit", "{hit:#?}");
    assert!(hit[1].starts_with("Sample!DriverEntry+0x"), "{hit:#?}");
    let stopped = hex(hit[2].split_whitespace().next().expect("address"));
    let before = transcript.of("ub @$ip l1");
    let store = before.last().expect("the instruction before");
    assert!(
        store.contains(" mov ") && store.contains(&format!("[Sample!g_RegistryPath+0x{size} (")),
        "{before:#?}"
    );
    let store_address = hex(store.split_whitespace().next().expect("address"));
    assert!(store_address < stopped && stopped - store_address <= 15);
    // A data breakpoint is the processor's debug exception.
    assert_eq!(
        transcript.of(".lastevent"),
        ["Last event: Single step exception - code 80000004 (first chance)"]
    );
    // The pointer is stored by then: it is the pool buffer, not NULL.
    let value = transcript.of(&format!("dp {buffer} l1"));
    assert_ne!(hex(value[0].split_whitespace().nth(1).expect("value")), 0);

    // The execute breakpoint stops before SampleUnload's first instruction.
    let unload = transcript.nth("g", 2);
    let at = unload
        .iter()
        .position(|line| line == "Breakpoint 2 hit")
        .unwrap_or_else(|| panic!("{unload:#?}"));
    assert_eq!(unload[at + 1], "Sample!SampleUnload:");
}

#[test]
fn ba_stops_after_the_store_of_the_buffer_on_x86() {
    break_on_access(Arch::X86);
}

#[test]
fn ba_stops_after_the_store_of_the_buffer_on_x64() {
    break_on_access(Arch::X64);
}

/// Debug registers watch a linear address whatever is mapped there; the
/// emulated processor watches the page under it from the next resume, so an
/// address with nothing mapped now is accepted with a line saying so.
#[test]
fn ba_on_memory_not_mapped_now_says_when_it_is_watched() {
    let built = common::driver(Arch::X86, false);
    // Special pool's region: nothing is mapped there under flags 0x8.
    let transcript = kd_script(&built.sys, "ba w4 9c000000\nba w4 nt!PoolHitTag\nbl\nq\n");
    assert_eq!(
        transcript.of("ba w4 9c000000"),
        [
            "harness kd: 9c000000 is not mapped now: the emulated processor watches it from the first g, p or t after its page is mapped"
        ]
    );
    assert!(transcript.of("ba w4 nt!PoolHitTag").is_empty());
    assert_eq!(transcript.of("bl").len(), 2);
}
