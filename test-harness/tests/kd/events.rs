//! `sx`, `sxe ld`, `sxd ld`: breaking when the driver's image loads, before
//! DriverEntry runs (issue 16). Forms: MicrosoftDocs/windows-driver-docs,
//! debugger/sx--sxd--sxe--sxi--sxn--sxr--sx---set-exceptions-.md and
//! controlling-exceptions-and-events.md (ld's default status is Output);
//! the break and `.lastevent` as real kernel sessions show them (quoted in
//! `crates/debugger/src/session/events.rs`).

use super::{hex, kd_script};
use crate::common;

use harness_core::arch::Arch;

fn break_on_load(arch: Arch) {
    let built = common::driver(arch, false);
    let transcript = kd_script(
        &built.sys,
        "sx\nsxe ld:Sample.sys\nsx\ng\n.lastevent\nkc\nlm\nbp Sample!DriverEntry\ng\nsxd ld\nsx\n\
         sxe av\nsxe ld:Other.sys\n.reboot\ng\nq\n",
    );
    assert_eq!(transcript.nth("sx", 0)[0], " ld - Load module - output");
    assert_eq!(transcript.nth("sx", 1)[0], " ld - Load module - break");
    assert_eq!(
        transcript.nth("sx", 2)[0],
        " ld - Load module - second-chance break"
    );

    // The break: where the kernel tells the debugger, no exception line,
    // and nothing of DriverEntry's yet (it prints as it runs).
    let load = transcript.nth("g", 0);
    let at = load.len() - 2;
    assert!(load[at].starts_with("nt!DebugService2+0x"), "{load:#?}");
    assert!(load[at + 1].ends_with(" int     3"), "{load:#?}");
    assert!(
        !load.iter().any(|line| line.contains("exception")
            || line.starts_with("Sample driver")
            || line.starts_with("original registry path")),
        "{load:#?}"
    );
    // The image is in the module list at its base.
    let module = transcript
        .of("lm")
        .iter()
        .find(|line| line.split_whitespace().nth(2) == Some("Sample"))
        .expect("Sample in lm")
        .clone();
    let base = module.split_whitespace().next().expect("start").to_owned();
    assert_eq!(
        transcript.of(".lastevent"),
        [format!("Last event: Load module Sample.sys at {base}")]
    );
    assert!(hex(&base) > 0);
    // The load path a Windows 7 kernel takes to the debugger.
    let frames: Vec<&str> = transcript
        .of("kc")
        .iter()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(1))
        .collect();
    assert_eq!(
        frames[..6],
        [
            "nt!DebugService2",
            "nt!DbgLoadImageSymbols",
            "nt!DbgLoadImageSymbolsUnicode",
            "nt!MiDriverLoadSucceeded",
            "nt!MmLoadSystemImage",
            "nt!IopLoadDriver"
        ]
    );
    // Loaded: a bp on DriverEntry resolves at once, and g reaches it.
    assert!(transcript.of("bp Sample!DriverEntry").is_empty());
    assert_eq!(
        transcript.nth("g", 1)[..2],
        ["Breakpoint 0 hit", "Sample!DriverEntry:"]
    );

    assert!(transcript.of("sxe av")[0].starts_with("harness kd: only the ld"));
    // Limited to another module: the driver loads and runs without a stop.
    let again = transcript.nth("g", 2);
    assert!(
        again
            .iter()
            .any(|line| line == "Sample driver initialized successfully"),
        "{again:#?}"
    );
    assert!(
        !again
            .iter()
            .any(|line| line.starts_with("nt!DebugService2"))
    );
}

#[test]
fn sxe_ld_breaks_before_driver_entry_on_x86() {
    break_on_load(Arch::X86);
}

#[test]
fn sxe_ld_breaks_before_driver_entry_on_x64() {
    break_on_load(Arch::X64);
}
