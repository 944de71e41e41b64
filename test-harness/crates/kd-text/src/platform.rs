//! The platform recogniser: the target's pointer width, and the driver
//! names the text gives outside `!verifier`.
//!
//! Pointer width, strongest first ([`Evidence::arch`]):
//! 1. `ptr64 TRUE`/`ptr64 FALSE`: the debugger's own statement;
//! 2. what the target is: `x86 compatible target`/`x64 target`, `Kernel
//!    Version ... Free x64`, `amd64fre`/`x86fre` builds
//!    (`BUILD_VERSION_STRING`, `Built by:`), `OSPLATFORM_TYPE`, and the
//!    harness's own report header (`Sample.sys (x64) ...`);
//! 3. the width values are printed at (`ArgN:` and banner arguments, stack
//!    and table addresses): 8 digits for x86, 16 for x64. Weaker than 1
//!    and 2: a 32-bit debugger or an old one prints 8 digits for an x64
//!    target (tandasat/DdiMon#13), so a disagreement is noted;
//! 4. a value above 32 bits means x64.
//!
//! Driver names: `IMAGE_NAME`, `MODULE_NAME` (`.sys` added), the image
//! in `FAILURE_BUCKET_ID` (`..._IMAGE_x.sys`) or `Probably caused by :
//! x.sys`, and stack frames (`kb`, `kvn`, `k`, `STACK_TEXT`): the innermost
//! kernel-mode frame of the last listing whose module is not part of
//! Windows itself (nt, hal, ntdll and the like).

use harness_core::arch::Arch;

use super::scan::{self, hex};

/// Windows' own modules: a frame in one of these is not the driver's.
const SYSTEM_MODULES: &[&str] = &[
    "nt",
    "ntoskrnl",
    "ntkrnlmp",
    "ntkrnlpa",
    "ntkrpamp",
    "hal",
    "halmacpi",
    "halacpi",
    "ntdll",
    "kernel32",
    "kernelbase",
    "user32",
    "win32k",
    "win32kbase",
    "win32kfull",
    "verifierext",
    "ci",
    "cng",
    "ksecdd",
    "clfs",
    "pshed",
    "kdcom",
    "fltmgr",
    "wdf01000",
    "wdfldr",
    "ndis",
    "netio",
    "tcpip",
    "fwpkclnt",
    "afd",
    "tdx",
    "storport",
    "ataport",
    "classpnp",
    "volmgr",
    "partmgr",
    "ntfs",
    "rpcrt4",
    "services",
    "sharedUserData",
];

/// What one session said about the platform.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    pub ptr64: Option<bool>,
    /// The first statement of what the target is, and where it came from.
    pub stated: Option<(Arch, String)>,
    pub image_name: Option<String>,
    pub module_name: Option<String>,
    pub bucket_image: Option<String>,
    /// From the last stack listing that shows a driver's frame.
    pub stack_driver: Option<String>,
    /// Widest address seen in a stack listing (8 or 16 digits).
    pub stack_digits: Option<usize>,
    // Reading state: inside a listing, and its innermost driver frame so far.
    in_listing: bool,
    innermost: Option<String>,
}

impl Evidence {
    /// Reads one line.
    pub fn line(&mut self, line: &str) {
        let t = line.trim();
        match frame(t) {
            Some(frame) => {
                self.stack_digits = Some(self.stack_digits.unwrap_or(0).max(frame.digits));
                self.in_listing = true;
                if self.innermost.is_none() && frame.kernel && !is_system(&frame.module) {
                    self.innermost = Some(frame.module);
                }
                return;
            }
            None => self.end_listing(),
        }
        if t.is_empty() {
            return;
        }
        if t.contains("ptr64 TRUE") {
            self.ptr64 = Some(true);
        } else if t.contains("ptr64 FALSE") {
            self.ptr64 = Some(false);
        }
        if self.stated.is_none()
            && let Some(arch) = stated_arch(t)
        {
            self.stated = Some((arch, statement(t)));
        }
        if let Some(name) = scan::field(t, "IMAGE_NAME:").and_then(scan::first_word) {
            self.image_name = Some(name.to_owned()).filter(|name| scan::is_module_name(name));
        }
        if let Some(name) = scan::field(t, "MODULE_NAME:").and_then(scan::first_word)
            && scan::is_module_name(name)
        {
            self.module_name = Some(name.to_owned());
        }
        if let Some(bucket) = scan::field(t, "FAILURE_BUCKET_ID:").and_then(scan::first_word)
            && let Some((_, image)) = bucket.split_once("_IMAGE_")
            && scan::is_module_name(image)
        {
            self.bucket_image = Some(image.to_owned());
        }
        if let Some(rest) = scan::field(t, "Probably caused by :")
            && let Some(image) = scan::first_word(rest)
            && scan::is_module_name(image)
        {
            self.bucket_image.get_or_insert_with(|| image.to_owned());
        }
    }

    /// Ends the session (a listing may run to the end of the text).
    pub fn finish(&mut self) {
        self.end_listing();
    }

    fn end_listing(&mut self) {
        self.in_listing = false;
        if let Some(module) = self.innermost.take() {
            self.stack_driver = Some(scan::driver_file(&module));
        }
    }

    /// The bug check's driver by `!analyze`'s fields: `IMAGE_NAME`, then
    /// `MODULE_NAME`, then the failure bucket's image.
    pub(crate) fn analyze_driver(&self) -> Option<String> {
        self.image_name
            .clone()
            .or_else(|| self.module_name.as_deref().map(scan::driver_file))
            .or_else(|| self.bucket_image.clone())
    }

    /// Takes in what a later session said: where both say something, the
    /// later one wins.
    pub(crate) fn absorb(&mut self, later: Self) {
        self.ptr64 = later.ptr64.or(self.ptr64);
        self.stated = later.stated.or_else(|| self.stated.take());
        self.image_name = later.image_name.or_else(|| self.image_name.take());
        self.module_name = later.module_name.or_else(|| self.module_name.take());
        self.bucket_image = later.bucket_image.or_else(|| self.bucket_image.take());
        self.stack_driver = later.stack_driver.or_else(|| self.stack_driver.take());
        self.stack_digits = later.stack_digits.or(self.stack_digits);
    }

    /// The target's pointer width by the precedence in the module docs,
    /// given the width the bug-check arguments were printed at and values
    /// seen elsewhere; with a note when printed widths disagree with a
    /// statement.
    pub fn arch(
        &self,
        arg_digits: Option<usize>,
        values: &[u64],
    ) -> (Option<Arch>, Option<String>) {
        let printed = arg_digits
            .filter(|digits| matches!(digits, 8 | 16))
            .or_else(|| self.stack_digits.filter(|digits| matches!(digits, 8 | 16)))
            .map(|digits| if digits == 16 { Arch::X64 } else { Arch::X86 });
        let stated = self
            .ptr64
            .map(|wide| {
                let arch = if wide { Arch::X64 } else { Arch::X86 };
                (
                    arch,
                    format!("ptr64 {}", if wide { "TRUE" } else { "FALSE" }),
                )
            })
            .or_else(|| self.stated.clone());
        if let Some((arch, why)) = stated {
            let note = printed.filter(|seen| *seen != arch).map(|seen| {
                format!(
                    "values are printed {} digits wide as for {seen}, but the text says the target is {arch} ({why}); taken as {arch}",
                    if seen == Arch::X64 { 16 } else { 8 }
                )
            });
            return (Some(arch), note);
        }
        if printed.is_some() {
            return (printed, None);
        }
        if values.iter().any(|value| *value > u64::from(u32::MAX)) {
            return (Some(Arch::X64), None);
        }
        // Only 32-bit values seen: an x86 target (x64 kernel addresses are wider).
        (
            values
                .iter()
                .any(|value| *value >= 0x8000_0000)
                .then_some(Arch::X86),
            None,
        )
    }
}

fn is_system(module: &str) -> bool {
    SYSTEM_MODULES
        .iter()
        .any(|system| system.eq_ignore_ascii_case(module))
}

/// What a line says the target is.
fn stated_arch(t: &str) -> Option<Arch> {
    // The debugger's own build, not the target's.
    if t.starts_with("ANALYSIS_VERSION") || t.contains("Windows Debugger") {
        return None;
    }
    let has = |needle: &str| t.contains(needle);
    if has("x86 compatible target") || has("x86fre") || has("x86chk") {
        return Some(Arch::X86);
    }
    if has(" x64 target") || has("amd64fre") || has("amd64chk") {
        return Some(Arch::X64);
    }
    if has("Kernel Version") && (t.ends_with(" x64") || t.ends_with(" x86")) {
        return Some(if t.ends_with(" x64") {
            Arch::X64
        } else {
            Arch::X86
        });
    }
    if let Some(value) = scan::field(t, "OSPLATFORM_TYPE:").and_then(scan::first_word) {
        return value.parse().ok();
    }
    report_title(t)
}

/// The harness's own report header: `Sample.sys (x64) under ..., engine: kd`.
fn report_title(t: &str) -> Option<Arch> {
    let (head, engine) = t.rsplit_once(", engine: ")?;
    if engine.contains(char::is_whitespace) {
        return None;
    }
    let (_, rest) = head.split_once(" (")?;
    let (arch, _) = rest.split_once(')')?;
    arch.parse().ok()
}

/// A short form of the line that stated the arch, for notes.
fn statement(t: &str) -> String {
    let short = super::paste::truncate(t, 80);
    if short.len() < t.len() {
        format!("{short}...")
    } else {
        short.to_owned()
    }
}

/// One stack frame line.
struct Frame {
    module: String,
    kernel: bool,
    digits: usize,
}

/// `04 8772d9d8 82bd22e6 86a220d0 86a40000 00000000 Sample!DriverEntry+0x27 (FPO: ...)`,
/// `08 ffff97809fbdf850 fffff803803f750f ZFSin!ExecuteWmiMethod+0x223 [...]`,
/// `fffff88002b1a5d8 fffff800030d03a9 : 000000000000000a ... : nt+0x70e00`,
/// `... : MyDriver!OnInterrupt+0x69 ...` (a `STACK_TEXT` with the numbers cut).
fn frame(t: &str) -> Option<Frame> {
    let mut words = t.split_whitespace().peekable();
    // A frame number (`04`, `1a`) in front of `kvn`/`k` listings.
    if let Some(first) = words.peek()
        && first.len() <= 3
        && first.bytes().all(|b| b.is_ascii_hexdigit())
    {
        words.next();
    }
    let mut stack: Option<(u64, usize)> = None;
    let mut columns = 0;
    // `STACK_TEXT` with its numbers cut to `...` in a document.
    let elided = words.peek() == Some(&"...");
    for word in words {
        if word == ":" || word == "..." {
            continue;
        }
        if let Some(value) = scan::address_column(word) {
            stack.get_or_insert((value, word.len()));
            columns += 1;
            continue;
        }
        if columns < 2 && !elided {
            return None;
        }
        let module = symbol_module(word)?;
        let (kernel, digits) = stack.map_or((true, 0), |(value, digits)| {
            (scan::is_kernel_address(value, digits), digits)
        });
        return Some(Frame {
            module: module.to_owned(),
            kernel,
            digits,
        });
    }
    None
}

/// `Sample!DriverEntry+0x27` -> `Sample`; `PROCMON23+0x1285` -> `PROCMON23`.
fn symbol_module(word: &str) -> Option<&str> {
    let module = if let Some((module, _)) = word.split_once('!') {
        module
    } else {
        let (module, offset) = word.split_once('+')?;
        hex(offset)?;
        module
    };
    (scan::is_module_name(module) && hex(module).is_none()).then_some(module)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Evidence {
        let mut evidence = Evidence::default();
        for line in text.lines() {
            evidence.line(line);
        }
        evidence.finish();
        evidence
    }

    #[test]
    fn the_innermost_driver_frame_of_the_last_listing() {
        let evidence = read(
            " # ChildEBP RetAddr  Args to Child\n\
             00 8772d834 82ab06b1 000000c1 00000070 64636261 nt!ExAllocatePoolWithTag+0x881\n\
             04 8772d9d8 82bd22e6 86a220d0 86a40000 00000000 Sample!DriverEntry+0x27 (FPO: [Non-Fpo])\n\
             \n\
             15 00faf628 778e6964 007de711 00faf644 00000000 ntdll!KiFastSystemCallRet\n\
             17 00faf64c 007de873 0000000a 00000001 00700468 services!ScUnloadDriver+0x8d\n",
        );
        // User-mode frames (stack below 0x80000000) are not the driver's.
        assert_eq!(evidence.stack_driver.as_deref(), Some("Sample.sys"));
        assert_eq!(evidence.stack_digits, Some(8));
    }

    #[test]
    fn frames_without_symbols_and_elided_frames() {
        let evidence =
            read("00 fffff28282c7b978 fffff80c426532b8 : 0000000000000000 : PROCMON23+0x1285\n");
        assert_eq!(evidence.stack_driver.as_deref(), Some("PROCMON23.sys"));
        let evidence =
            read("... : nt!KeBugCheckEx+0x104 ...\n... : MyDriver!OnInterrupt+0x69 ...\n");
        assert_eq!(evidence.stack_driver.as_deref(), Some("MyDriver.sys"));
        // A pool table row is not a frame; nor is a one-address log line.
        let evidence = read(
            "0x86491d10  0x00000070  abcd  0xa05c1047  Sample!DriverEntry+0x27\n\
                             9a3bf6ac MyDriver!DeviceControlDispatch+0x4c\n",
        );
        assert_eq!(evidence.stack_driver, None);
    }

    #[test]
    fn statements_outrank_printed_widths() {
        let evidence = read("BUILD_VERSION_STRING:  7601.17514.amd64fre.win7sp1_rtm.101119-1850\n");
        let (arch, note) = evidence.arch(Some(8), &[0x91]);
        assert_eq!(arch, Some(Arch::X64));
        assert!(note.is_some());
        let (arch, note) = Evidence::default().arch(Some(8), &[]);
        assert_eq!((arch, note), (Some(Arch::X86), None));
        assert_eq!(
            report_title(
                "Sample.sys (x86) under Driver Verifier pool tracking (0x8), engine: speakeasy"
            ),
            Some(Arch::X86)
        );
    }
}
