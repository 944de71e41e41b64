//! `harness kd`: the walkthrough's debugger session on the emulated machine,
//! with the real portable Sample.sys builds (x86 and x64, clean and leaky)
//! and their PDBs. Every value checked is read back from what the session
//! printed, and compared with what the walkthrough's Windows 7 showed or
//! with what the session itself reported elsewhere (the buffer `r` shows is
//! the one `!pool`, `!poolfind` and `!verifier 3` show).

mod added;
mod events;
mod processor_breakpoints;
mod system_objects;

use crate::common;

use std::path::Path;

use harness_core::arch::Arch;
use harness_core::verdict::ExitCode;

/// One command of a transcript and what it printed.
struct Step {
    command: String,
    output: Vec<String>,
}

/// A transcript cut at the `kd> ` echoes.
struct Transcript {
    steps: Vec<Step>,
    code: i32,
    /// What `harness kd` wrote to stderr: one line when it exits 2.
    stderr: String,
}

impl Transcript {
    fn parse(stdout: &str, code: i32) -> Self {
        let mut steps: Vec<Step> = Vec::new();
        for line in stdout.lines() {
            if let Some(command) = line.strip_prefix("kd> ") {
                steps.push(Step {
                    command: command.to_owned(),
                    output: Vec::new(),
                });
            } else if let Some(step) = steps.last_mut() {
                step.output.push(line.to_owned());
            } else {
                panic!("output before the first command: {line}");
            }
        }
        Self {
            steps,
            code,
            stderr: String::new(),
        }
    }

    /// The output of the `nth` run of `command` (0-based).
    fn nth(&self, command: &str, nth: usize) -> &[String] {
        &self
            .steps
            .iter()
            .filter(|step| step.command == command)
            .nth(nth)
            .unwrap_or_else(|| panic!("no run {nth} of '{command}'"))
            .output
    }

    fn of(&self, command: &str) -> &[String] {
        self.nth(command, 0)
    }
}

fn kd_script(driver: &Path, script: &str) -> Transcript {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("script.txt");
    std::fs::write(&path, script).expect("write script");
    let run = common::harness(&[
        "kd",
        driver.to_str().expect("utf-8"),
        "--script",
        path.to_str().expect("utf-8"),
    ]);
    if run.code == i32::from(ExitCode::CannotJudge as u8) {
        assert_eq!(run.stderr.lines().count(), 1, "exit 2: {}", run.stderr);
    } else {
        assert!(run.stderr.is_empty(), "kd wrote to stderr: {}", run.stderr);
    }
    let mut transcript = Transcript::parse(&run.stdout, run.code);
    transcript.stderr = run.stderr;
    transcript
}

fn hex(text: &str) -> u64 {
    let text = text.trim().trim_start_matches("0x").replace('`', "");
    u64::from_str_radix(&text, 16).unwrap_or_else(|_| panic!("not hex: {text}"))
}

/// A `kvn`/`kb` row: (frame, child, return address, arguments, call site).
struct Frame {
    args: Vec<u64>,
    site: String,
}

fn frames(output: &[String], arch: Arch) -> Vec<Frame> {
    output
        .iter()
        .skip(1)
        .map(|row| {
            let (columns, site) = match arch {
                // `00 8772d834 82ab06b1 000000c1 00000070 64636261 nt!...`
                Arch::X86 => {
                    let words: Vec<&str> = row.splitn(7, ' ').collect();
                    (words[3..6].to_vec(), words[6].to_owned())
                }
                // `00 sp ret     : a1 a2 a3 a4 : nt!...`
                Arch::X64 => {
                    let parts: Vec<&str> = row.split(" : ").collect();
                    (parts[1].split(' ').collect(), parts[2].to_owned())
                }
            };
            Frame {
                args: columns.into_iter().map(hex).collect(),
                site,
            }
        })
        .collect()
}

/// The value after `Name : ` in a `dt` listing.
fn field<'a>(output: &'a [String], name: &str) -> &'a str {
    output
        .iter()
        .find_map(|line| {
            let (left, value) = line.split_once(" : ")?;
            left.split_whitespace()
                .nth(1)
                .filter(|found| *found == name)
                .map(|_| value.trim())
        })
        .unwrap_or_else(|| panic!("no field {name} in {output:#?}"))
}

/// The walkthrough, step by step, as `docs/kd/live-session.txt` runs it.
fn live_session() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/kd/live-session.txt"),
    )
    .expect("docs/kd/live-session.txt")
}

#[allow(clippy::too_many_lines)] // one walkthrough, step by step
fn walkthrough(arch: Arch) {
    let built = common::driver(arch, true);
    // The walkthrough's own `r @eax` (x64: `r @rax`) beside the script's `r @$retreg`.
    let register_command = match arch {
        Arch::X86 => "r @eax",
        Arch::X64 => "r @rax",
    };
    let script =
        live_session().replace("r @$retreg\n", &format!("r @$retreg\n{register_command}\n"));
    let transcript = kd_script(&built.sys, &script);
    assert_eq!(transcript.code, i32::from(ExitCode::Violation as u8));
    let header = arch.pool_header_size();

    // ed + dd: the variable holds the tag; .formats shows it as characters.
    let dumped = transcript.of("dd nt!PoolHitTag l1");
    let words: Vec<&str> = dumped[0].split_whitespace().collect();
    assert_eq!(words[1], "64636261", "{dumped:?}");
    assert!(
        transcript
            .of(".formats 64636261")
            .iter()
            .any(|line| line.trim().starts_with("Chars:") && line.ends_with("dcba"))
    );

    // g: the PoolHitTag break in the allocator, as kd prints it.
    let break_in = transcript.nth("g", 0);
    let at = break_in
        .iter()
        .position(|line| line == "Break instruction exception - code 80000003 (first chance)")
        .expect("a break");
    assert!(
        break_in[at + 1].starts_with("nt!ExAllocatePoolWithTag+0x"),
        "{break_in:?}"
    );
    assert!(break_in[at + 2].ends_with("int     3"), "{break_in:?}");

    // kvn: the allocator with the verifier's type, rounded size and tag;
    // the driver's call with PagedPool, the registry path's length and the tag.
    let stack = frames(transcript.of("kvn"), arch);
    assert!(stack[0].site.starts_with("nt!ExAllocatePoolWithTag+0x"));
    if arch == Arch::X86 {
        // x64 passes arguments in registers: its stack columns are home space.
        assert_eq!(stack[0].args, [0xc1, 0x70, 0x6463_6261]);
    }
    let entry = stack
        .iter()
        .position(|frame| frame.site.starts_with("Sample!DriverEntry+0x"))
        .expect("Sample!DriverEntry on the stack");
    assert!(
        stack[entry - 1]
            .site
            .starts_with("nt!VerifierExAllocatePoolWithTag+0x")
    );
    if arch == Arch::X86 {
        assert_eq!(stack[entry - 1].args, [1, 0x6c, 0x6463_6261]);
        assert!(
            stack[entry]
                .site
                .contains("(FPO: [Non-Fpo]) (CONV: stdcall) ["),
            "{}",
            stack[entry].site
        );
    }
    assert!(
        stack[entry].site.contains(" @ "),
        "source line: {}",
        stack[entry].site
    );
    let chain: Vec<&str> = stack[entry + 1..]
        .iter()
        .map(|frame| frame.site.split('+').next().unwrap_or_default())
        .collect();
    assert_eq!(
        chain,
        [
            "nt!IopLoadDriver",
            "nt!IopLoadUnloadDriver",
            "nt!ExpWorkerThread",
            "nt!PspSystemThreadStartup",
            "nt!KiThreadStartup"
        ]
    );

    // gu x4: back in DriverEntry right after the call.
    let back = transcript.nth("gu", 3);
    assert!(back[0].starts_with("Sample!DriverEntry+0x"), "{back:?}");

    // The buffer is a kernel (paged pool) address.
    let register = transcript.of("r @$retreg");
    let buffer = hex(register[0].strip_prefix("$retreg=").expect("r output"));
    assert!(buffer >= arch.kernel_base(), "{buffer:x}");
    let named = transcript.of(register_command);
    let prefix = format!("{}=", &register_command[3..]);
    assert_eq!(
        hex(named[0].strip_prefix(prefix.as_str()).expect("r output")),
        buffer
    );
    let digits = named[0].len() - prefix.len();
    assert_eq!(digits, arch.pointer_digits(), "{named:?}");

    // The copy is not filled in yet (as at the walkthrough's breakpoint).
    let copy = transcript.of("dt Sample!g_RegistryPath");
    assert_eq!(field(copy, "Buffer"), "(null)");

    // The header: 8 or 16 bytes, holding the tag and the block size.
    let size_of = transcript.of("?? sizeof(nt!_POOL_HEADER)");
    let expected = match arch {
        Arch::X86 => "unsigned int 8",
        Arch::X64 => "unsigned int64 0x10",
    };
    assert_eq!(size_of[0], expected);
    let pool_header = transcript.of("dt nt!_POOL_HEADER @$retreg-@@(sizeof(nt!_POOL_HEADER))");
    assert_eq!(field(pool_header, "PoolTag"), "0x64636261");
    let block_units = match arch {
        Arch::X86 => "(0xf)",
        Arch::X64 => "(0x8)",
    };
    assert!(
        field(pool_header, "BlockSize").ends_with(block_units),
        "{pool_header:?}"
    );
    assert!(
        field(pool_header, "PoolType").ends_with("(0x43)"),
        "{pool_header:?}"
    );

    // !pool: the block holding the buffer, 0x78 (x86) or 0x80 (x64), abcd.
    let pool = transcript.of("!pool @$retreg 2");
    assert!(pool[0].ends_with("region is Paged pool"), "{pool:?}");
    let block: Vec<&str> = pool[1].split_whitespace().collect();
    assert_eq!(hex(block[0].trim_start_matches('*')), buffer - header);
    let block_size = match arch {
        Arch::X86 => "78",
        Arch::X64 => "80",
    };
    assert_eq!((block[1], block[2]), ("size:", block_size), "{pool:?}");
    assert_eq!(block.last(), Some(&"*abcd"));

    // !poolfind: the same block by its tag, before and after the bug check.
    for nth in 0..2 {
        let found = transcript.nth("!poolfind abcd", nth);
        let rows: Vec<&String> = found
            .iter()
            .filter(|line| line.contains(" : tag "))
            .collect();
        assert_eq!(rows.len(), 1, "{found:?}");
        let row: Vec<&str> = rows[0].split_whitespace().collect();
        assert_eq!(hex(row[0]), buffer);
        assert_eq!((row[3], row[5]), ("abcd,", "0x70,"), "{row:?}");
    }

    // .frame/dv: DriverEntry's parameters with kd's notes for them.
    let locals = transcript.of(".frame 0n0;dv /t /v");
    assert!(locals[0].starts_with("00 ") && locals[0].contains("Sample!DriverEntry+0x"));
    assert!(
        locals
            .iter()
            .any(|line| line.contains("DRIVER_OBJECT * driver = 0x")
                && line.ends_with("Driver \"\\Driver\\Sample\"")),
        "{locals:#?}"
    );
    assert!(
        locals
            .iter()
            .any(|line| line.contains("UNICODE_STRING * registry_path = 0x")
                && line.ends_with("\\services\\Sample\"")),
        "{locals:#?}"
    );

    // g: the driver's output, then the verifier's bug check at unload.
    let crash = transcript.nth("g", 1);
    assert!(
        crash
            .iter()
            .any(|line| line == "Sample driver Unload called")
    );
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
    assert_eq!((parameters[0], parameters[3]), (0x62, 1));
    assert_eq!(
        crash.last().map(|line| line.ends_with("int     3")),
        Some(true)
    );

    let analysis = transcript.of("!analyze -v");
    assert!(
        analysis
            .iter()
            .any(|line| line == "DRIVER_VERIFIER_DETECTED_VIOLATION (c4)")
    );
    let arg4 = analysis
        .iter()
        .find_map(|line| line.strip_prefix("Arg4: "))
        .expect("Arg4");
    assert_eq!(hex(arg4.split(',').next().unwrap_or_default()), 1);

    // .thread; .cxr; kb: the bug check's stack down to the unload request.
    let bugcheck_stack = transcript.of(".thread ; .cxr ; kb");
    assert!(bugcheck_stack[0].starts_with("Implicit thread is now "));
    let sites: Vec<String> = frames(&bugcheck_stack[1..], arch)
        .into_iter()
        .map(|frame| frame.site.split('+').next().unwrap_or_default().to_owned())
        .collect();
    for expected in [
        "nt!RtlpBreakWithStatusInstruction",
        "nt!KeBugCheckEx",
        "nt!VerifierBugCheckIfAppropriate",
        "nt!VfPoolCheckForLeaks",
        "nt!MmUnloadSystemImage",
        "nt!IopUnloadDriver",
        "nt!NtUnloadDriver",
    ] {
        assert!(
            sites.iter().any(|site| site == expected),
            "{expected} not in {sites:?}"
        );
    }

    // !verifier 3: the leaked allocation, 0x70 bytes, abcd, from DriverEntry.
    let verifier = transcript.of("!verifier 3 Sample.sys");
    assert!(
        verifier
            .iter()
            .any(|line| line.ends_with("Sample.sys (Loaded and Unloaded)"))
    );
    let row = verifier
        .iter()
        .find(|line| line.trim_start().starts_with(&format!("0x{buffer:x}")))
        .unwrap_or_else(|| panic!("no allocation row in {verifier:#?}"));
    let leak: Vec<&str> = row.split_whitespace().collect();
    assert_eq!((leak[1], leak[2]), ("0x00000070", "abcd"));
    assert!(leak[4].starts_with("Sample!DriverEntry+0x"));

    // lm: the image is still listed (the bug check came before the unmap).
    assert!(
        transcript
            .of("lm")
            .iter()
            .any(|line| line.contains(" Sample "))
    );
}

#[test]
fn the_walkthrough_on_x86() {
    walkthrough(Arch::X86);
}

#[test]
fn the_walkthrough_on_x64() {
    walkthrough(Arch::X64);
}

/// The clean build: the free breaks in from the unload routine, then the
/// scenario ends with no bug check.
fn clean(arch: Arch) {
    let built = common::driver(arch, false);
    let transcript = kd_script(&built.sys, "ed nt!PoolHitTag 'dcba'\ng\ng\nkvn\ng\ng\nlm\n");
    assert_eq!(transcript.code, 0);
    let free = transcript.nth("g", 1);
    assert!(
        free.iter()
            .any(|line| line == "Sample driver initialized successfully")
    );
    assert!(
        free.iter()
            .any(|line| line.starts_with("nt!ExFreePoolWithTag+0x")),
        "{free:?}"
    );
    let stack = frames(transcript.of("kvn"), arch);
    assert!(stack[1].site.starts_with("nt!VerifierExFreePoolWithTag+0x"));
    assert!(
        stack[2].site.starts_with("Sample!SampleUnload+0x"),
        "{}",
        stack[2].site
    );
    if arch == Arch::X86 {
        assert_eq!(
            stack[1].args[1], 0x6463_6261,
            "the tag the unload routine frees with"
        );
    }
    let end = transcript.nth("g", 2);
    assert_eq!(end[0], "Sample driver Unload called");
    assert!(end[1].contains("nothing is left to run"), "{end:?}");
    assert!(!end.iter().any(|line| line.contains("Fatal System Error")));
    // Running on refuses, kd-style, and the session goes on.
    assert!(transcript.nth("g", 3)[0].contains("nothing is left to run"));
    let modules = transcript.of("lm");
    let unloaded = modules
        .iter()
        .position(|line| line == "Unloaded modules:")
        .expect("unloaded list");
    assert!(modules[unloaded + 1].ends_with("Sample.sys"));
}

#[test]
fn the_clean_build_frees_from_its_unload_routine_on_x86() {
    clean(Arch::X86);
}

#[test]
fn the_clean_build_frees_from_its_unload_routine_on_x64() {
    clean(Arch::X64);
}

#[test]
fn breakpoints_defer_until_the_driver_loads_and_hit_once_each() {
    let built = common::driver(Arch::X86, false);
    let transcript = kd_script(
        &built.sys,
        "bp Sample!DriverEntry\nbu Sample!SampleUnload\nbl\ng\nbl\nbd 0\nbl\ng\nbc *\nbl\ng\n",
    );
    assert_eq!(transcript.code, 0);
    let deferred = transcript.of("bp Sample!DriverEntry");
    assert_eq!(
        deferred,
        ["Bp expression 'Sample!DriverEntry' could not be resolved, adding deferred bp"]
    );
    let listed = transcript.nth("bl", 0);
    assert_eq!(listed.len(), 2);
    assert!(
        listed[0].contains(" e Disable Clear u ") && listed[0].ends_with("(Sample!DriverEntry)"),
        "{listed:?}"
    );
    let hit = transcript.nth("g", 0);
    let at = hit
        .iter()
        .position(|line| line == "Breakpoint 0 hit")
        .expect("hit");
    assert_eq!(hit[at + 1], "Sample!DriverEntry:");
    assert!(hit[at + 2].ends_with("push    ebp"), "{hit:?}");
    // Resolved now: bl shows the address and the symbol.
    let resolved = transcript.nth("bl", 1);
    assert!(
        resolved[0].ends_with("0001 (0001) Sample!DriverEntry"),
        "{resolved:?}"
    );
    assert!(transcript.nth("bl", 2)[0].contains(" d Enable Clear "));
    // The unload routine's breakpoint is hit next, once.
    let unload = transcript.nth("g", 1);
    assert!(
        unload.iter().any(|line| line == "Breakpoint 1 hit"),
        "{unload:?}"
    );
    assert!(unload.iter().any(|line| line == "Sample!SampleUnload:"));
    assert!(transcript.nth("bl", 3).is_empty());
    assert!(
        transcript
            .nth("g", 2)
            .iter()
            .any(|line| line.contains("nothing is left to run"))
    );
}

#[test]
fn stepping_moves_one_instruction_and_steps_over_calls() {
    let built = common::driver(Arch::X64, false);
    let steps = "p\n".repeat(16);
    let transcript = kd_script(
        &built.sys,
        &format!("bp Sample!DriverEntry\ng\nt\nr @rip\n{steps}q\n"),
    );
    let start = transcript.of("t");
    assert!(start[0].starts_with("Sample!DriverEntry+0x"), "{start:?}");
    let rip = hex(transcript.of("r @rip")[0]
        .strip_prefix("rip=")
        .expect("rip"));
    let shown = hex(start[1].split_whitespace().next().expect("address"));
    assert_eq!(rip, shown);
    // Each `p` shows where it stopped; over the allocation's call it stops
    // at the next instruction, still in DriverEntry.
    let mut previous = start;
    let mut over_call = false;
    for nth in 0..16 {
        let step = transcript.nth("p", nth);
        assert!(
            step[0].starts_with("Sample!DriverEntry+0x"),
            "step {nth}: {step:?}"
        );
        if previous[1].contains(" call ") {
            over_call = true;
            let call_at = hex(previous[1].split_whitespace().next().expect("address"));
            let now = hex(step[1].split_whitespace().next().expect("address"));
            assert!(
                now > call_at && now - call_at <= 15,
                "{previous:?} -> {step:?}"
            );
        }
        previous = step;
    }
    assert!(over_call, "no call stepped over");
    assert_eq!(transcript.code, i32::from(ExitCode::StillLoaded as u8));
}

#[test]
fn expressions_and_memory_use_the_machine() {
    let built = common::driver(Arch::X86, true);
    let transcript = kd_script(
        &built.sys,
        "? nt!PoolHitTag\nx nt!PoolHitTag\neb nt!PoolHitTag 61 62 63 64\ndc nt!PoolHitTag l1\n\
         ?? sizeof(nt!_UNICODE_STRING)\ndt nt!_UNICODE_STRING\nln nt!PoolHitTag\nu nt!KeBugCheckEx l2\n\
         ed 0 1\nfoo\n!nosuchthing\ndt nt!_NOSUCH\nq\n",
    );
    let address = transcript.of("? nt!PoolHitTag")[0]
        .rsplit(' ')
        .next()
        .map(hex)
        .expect("value");
    let listed = transcript.of("x nt!PoolHitTag");
    assert_eq!(
        hex(listed[0].split_whitespace().next().expect("address")),
        address
    );
    let dump = transcript.of("dc nt!PoolHitTag l1");
    assert!(
        dump[0].starts_with(&format!("{address:08x}  64636261")),
        "{dump:?}"
    );
    assert!(dump[0].ends_with("abcd"), "{dump:?}");
    assert_eq!(
        transcript.of("?? sizeof(nt!_UNICODE_STRING)"),
        ["unsigned int 8"]
    );
    let layout = transcript.of("dt nt!_UNICODE_STRING");
    assert_eq!(layout.len(), 3);
    assert!(layout[2].starts_with("   +0x004 Buffer"));
    assert!(
        transcript
            .of("ln nt!PoolHitTag")
            .iter()
            .any(|line| line == "Exact matches:")
    );
    let code = transcript.of("u nt!KeBugCheckEx l2");
    assert_eq!(code[0], "nt!KeBugCheckEx:");
    assert_eq!(code.len(), 3);
    // Errors are kd's kinds of one-line message; the session goes on.
    assert_eq!(transcript.of("ed 0 1"), ["Memory access error at '1'"]);
    // (then, once per name, the harness's note that it is not emulated)
    assert_eq!(transcript.of("foo")[0], "    ^ Syntax error in 'foo'");
    assert_eq!(
        transcript.of("!nosuchthing")[0],
        "No export nosuchthing found"
    );
    assert_eq!(
        transcript.of("dt nt!_NOSUCH"),
        ["Symbol nt!_NOSUCH not found."]
    );
    assert_eq!(transcript.code, i32::from(ExitCode::StillLoaded as u8));
}

#[test]
fn commands_from_stdin_give_the_same_transcript() {
    let built = common::driver(Arch::X86, true);
    let script = live_session();
    let from_file = kd_script(&built.sys, &script);
    let run = common::harness_with_stdin(
        &[std::ffi::OsStr::new("kd"), built.sys.as_os_str()],
        &script,
    );
    let from_stdin = Transcript::parse(&run.stdout, run.code);
    assert_eq!(from_stdin.code, from_file.code);
    assert_eq!(from_stdin.steps.len(), from_file.steps.len());
    for (a, b) in from_stdin.steps.iter().zip(&from_file.steps) {
        assert_eq!((&a.command, &a.output), (&b.command, &b.output));
    }
}

#[test]
fn bad_input_is_one_line_and_a_documented_code() {
    // A missing script, a script that is not text, and no driver at all.
    let built = common::driver(Arch::X86, false);
    let sys = built.sys.to_str().expect("utf-8");
    common::harness(&["kd", sys, "--script", "/nonexistent/script.txt"]).cannot_judge("script.txt");
    let dir = tempfile::tempdir().expect("temp dir");
    let binary = dir.path().join("binary.txt");
    std::fs::write(&binary, [0xff_u8, 0xfe, 0x00, 0x80]).expect("write");
    common::harness(&["kd", sys, "--script", binary.to_str().expect("utf-8")])
        .cannot_judge("not UTF-8");
    let usage = common::harness(&["kd"]);
    usage.expect(ExitCode::CannotJudge);
    assert_eq!(usage.stderr.lines().count(), 1, "{}", usage.stderr);
    common::harness(&["kd", "/nonexistent/Sample.sys"]).cannot_judge("Sample.sys");
}

#[test]
fn drivers_the_machine_cannot_run_are_refused_or_stop_as_cannot_judge() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A KMDF driver: WDFLDR.SYS is not on the emulated machine.
    let kmdf = dir.path().join("kmdf.sys");
    let mut build = common::CBuild::new("gaps.c", "KMDF");
    build
        .made_libraries
        .push(("WDFLDR.SYS", &["WdfVersionBind@16"], false));
    common::compile_c(&build, Arch::X64, &kmdf);
    common::harness(&["kd", kmdf.to_str().expect("utf-8")])
        .cannot_judge("needs WDFLDR.SYS, which the native engine does not have");

    // An image Windows would not load: exit 6, as `emulate` gives.
    let user_dll = dir.path().join("user_dll.sys");
    let mut build = common::CBuild::new("gaps.c", "USER_DLL");
    build.libraries.push("kernel32");
    common::compile_c(&build, Arch::X64, &user_dll);
    let refused = common::harness(&["kd", user_dll.to_str().expect("utf-8")]);
    refused.expect(ExitCode::LoadRefused);
    assert_eq!(refused.stderr.lines().count(), 1, "{}", refused.stderr);
    assert!(refused.stderr.contains("Windows would not load this image"));

    // A call the engine does not implement: the session says so where it
    // happens and will not run on; the exit code is "cannot judge".
    let sysinfo = dir.path().join("sysinfo.sys");
    common::compile_c(
        &common::CBuild::new("gaps.c", "SYSINFO"),
        Arch::X64,
        &sysinfo,
    );
    let transcript = kd_script(&sysinfo, "g\ng\nkn\nq\n");
    assert_eq!(transcript.code, i32::from(ExitCode::CannotJudge as u8));
    let stop = transcript.nth("g", 0);
    assert!(
        stop.iter().any(
            |line| line.starts_with("harness kd: cannot judge from here: ")
                && line.contains("ZwQuerySystemInformation")
        ),
        "{stop:?}"
    );
    assert!(transcript.nth("g", 1)[0].contains("cannot run on"));
    // And one line on stderr, as every exit 2 has.
    assert!(
        transcript.stderr.contains("ZwQuerySystemInformation"),
        "{}",
        transcript.stderr
    );
}

#[test]
fn a_pdb_of_another_build_is_said_and_not_used() {
    // The x64 build's PDB beside the x86 image: another GUID.
    let x86 = common::driver(Arch::X86, true);
    let x64 = common::driver(Arch::X64, true);
    let dir = tempfile::tempdir().expect("temp dir");
    let sys = dir.path().join("Sample.sys");
    std::fs::copy(&x86.sys, &sys).expect("copy");
    std::fs::copy(&x64.pdb, dir.path().join("Sample.pdb")).expect("copy");
    let transcript = kd_script(
        &sys,
        "ed nt!PoolHitTag 'dcba'\ng\nkvn\ndt Sample!g_RegistryPath\nq\n",
    );
    let load = transcript.nth("g", 0);
    let at = load
        .iter()
        .position(|line| {
            line == "*** ERROR: Module load completed but symbols could not be loaded for Sample.sys"
        })
        .expect("kd's symbol error");
    assert!(load[at + 1].contains("different build"), "{load:?}");
    // Without symbols the driver's frame is module+offset, as kd shows it.
    let stack = frames(transcript.of("kvn"), Arch::X86);
    assert!(
        stack
            .iter()
            .any(|frame| frame.site.starts_with("Sample+0x")),
        "no Sample+0x frame"
    );
    assert_eq!(
        transcript.of("dt Sample!g_RegistryPath"),
        ["Symbol Sample!g_RegistryPath not found."]
    );
}

// ---- Issue 16 "wrong today", 19 and 20: kd's own forms for commands a
// trainee types next.

/// `bp A; bp B; bp A`: kd redefines breakpoint 0 under its ID
/// (bp--bu--bm--set-breakpoint-.md, Remarks); `bu` twice likewise.
#[test]
fn setting_a_breakpoint_again_redefines_it_under_its_id() {
    let built = common::driver(Arch::X86, false);
    let transcript = kd_script(
        &built.sys,
        "bu Sample!DriverEntry\nbu Sample!DriverEntry\nbl\ng\nbp nt!ExAllocatePoolWithTag\nbp nt!ExFreePoolWithTag\nbp nt!ExAllocatePoolWithTag\nbl\nbc 0\nbl\nq\n",
    );
    assert_eq!(
        transcript
            .nth("bu Sample!DriverEntry", 1)
            .last()
            .map(String::as_str),
        Some("breakpoint 0 redefined")
    );
    assert_eq!(
        transcript.nth("bl", 0).len(),
        1,
        "{:?}",
        transcript.nth("bl", 0)
    );
    assert_eq!(
        transcript.nth("bp nt!ExAllocatePoolWithTag", 1),
        ["breakpoint 1 redefined"]
    );
    let ids = |listing: &[String]| -> Vec<u32> {
        listing
            .iter()
            .map(|line| {
                line.split_whitespace()
                    .next()
                    .expect("id")
                    .parse()
                    .expect("id")
            })
            .collect()
    };
    assert_eq!(ids(transcript.nth("bl", 1)), [0, 1, 2]);
    assert_eq!(ids(transcript.nth("bl", 2)), [1, 2]);
}

/// `p 3`, `t 3`: three steps, each shown (p--step-.md, t--trace-.md:
/// Count), as three single steps show them.
#[test]
fn step_counts_take_that_many_steps_each_shown() {
    for arch in [Arch::X86, Arch::X64] {
        let built = common::driver(arch, false);
        let transcript = kd_script(&built.sys, "bp Sample!DriverEntry\ng\np 3\nt 2\nr $ip\nq\n");
        let singles = kd_script(
            &built.sys,
            "bp Sample!DriverEntry\ng\np\np\np\nt\nt\nr $ip\nq\n",
        );
        let mut expected: Vec<String> = Vec::new();
        for nth in 0..3 {
            expected.extend(singles.nth("p", nth).iter().cloned());
        }
        assert_eq!(transcript.of("p 3"), expected, "{arch}");
        let mut expected: Vec<String> = Vec::new();
        for nth in 0..2 {
            expected.extend(singles.nth("t", nth).iter().cloned());
        }
        assert_eq!(transcript.of("t 2"), expected, "{arch}");
        assert_eq!(transcript.of("r $ip"), singles.of("r $ip"), "{arch}");
    }
}

/// `r`: the selectors of a Windows 7 kernel thread (the walkthrough's x86
/// kd shows cs=0008; x64 kd shows cs=0010 ss=0018).
#[test]
fn registers_show_the_kernel_selectors() {
    for (arch, expected) in [
        (
            Arch::X86,
            ["cs=0008", "ss=0010", "ds=0023", "es=0023", "fs=0030"],
        ),
        (
            Arch::X64,
            ["cs=0010", "ss=0018", "ds=002b", "es=002b", "fs=0053"],
        ),
    ] {
        let built = common::driver(arch, false);
        let transcript = kd_script(&built.sys, "bp Sample!DriverEntry\ng\nr\nq\n");
        let words: Vec<&str> = transcript
            .of("r")
            .iter()
            .flat_map(|line| line.split_whitespace())
            .collect();
        for selector in expected {
            assert!(words.contains(&selector), "{arch}: {selector} in {words:?}");
        }
    }
}

/// `!analyze -v` shows the two lines of 0xC4's description the
/// walkthrough's kd shows (tests/fixtures/walkthrough-win7-x86.txt).
#[test]
fn analyze_shows_the_whole_c4_description() {
    let built = common::driver(Arch::X86, true);
    let transcript = kd_script(&built.sys, "g\n!analyze -v\nq\n");
    let analysis = transcript.of("!analyze -v");
    let at = analysis
        .iter()
        .position(|line| line.starts_with("DRIVER_VERIFIER_DETECTED_VIOLATION (c4)"))
        .expect("the bug check's name");
    assert_eq!(
        analysis[at + 4..at + 6],
        [
            "If the driver attempts to corrupt the system, bugchecks 0xC4, 0xC1 and 0xA will",
            "be among the most commonly seen crashes."
        ]
    );
}

/// A driver's debug output with no newline at its end: the harness's own
/// line after it starts on a line of its own (issue 19).
#[test]
fn the_harness_lines_start_on_their_own_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let driver = common::c_driver("UNTERMINATED_PRINT", Arch::X64, dir.path());
    let transcript = kd_script(&driver, "g\nq\n");
    assert_eq!(transcript.code, 0);
    let run = transcript.of("g");
    assert!(
        run.iter()
            .any(|line| line.ends_with("unloading, no newline")),
        "{run:?}"
    );
    assert!(
        run.iter().any(
            |line| line.starts_with("harness kd: ") && line.contains("was started and stopped")
        ),
        "{run:?}"
    );
}

/// `?` alone and `.help` print the command table's summary (the same text
/// `harness kd --help` ends with); a command the harness does not emulate
/// gets kd's own error and, once per name, the harness's note.
#[test]
fn help_comes_from_the_command_table_and_unknown_commands_say_so_once() {
    let built = common::driver(Arch::X86, false);
    let transcript = kd_script(&built.sys, "?\n.help\nfoo\nfoo 1\n!nosuch\nq\n");
    let summary = transcript.of("?");
    assert_eq!(summary, transcript.of(".help"));
    let help = common::harness(&["kd", "--help"]);
    for command in [
        "bp[ID] Address",
        "!poolfind Tag",
        "p [Count]",
        "dt [-r[N]] [-b] [-v] [Module!]Type",
    ] {
        assert!(
            summary
                .iter()
                .any(|line| line.trim_start().starts_with(command)),
            "{command} in {summary:#?}"
        );
    }
    for line in summary {
        assert!(help.stdout.contains(line.as_str()), "--help lacks {line}");
    }
    assert_eq!(
        transcript.of("foo"),
        [
            "    ^ Syntax error in 'foo'",
            "harness kd: 'foo' is not emulated here (? lists the commands)"
        ]
    );
    assert_eq!(transcript.of("foo 1"), ["    ^ Syntax error in 'foo 1'"]);
    assert_eq!(
        transcript.of("!nosuch"),
        [
            "No export nosuch found",
            "harness kd: '!nosuch' is not emulated here (? lists the commands)"
        ]
    );
}

/// The walkthrough's `bp Sample!DriverEntry+0x2c` is an offset of its C
/// build; in ours it falls inside an instruction. The harness says so and
/// where the walkthrough's places are here; a breakpoint on the place it
/// names for +0x2c is hit, just after the buffer was stored.
#[test]
fn a_breakpoint_inside_an_instruction_is_told_with_the_walkthrough_places() {
    for arch in [Arch::X86, Arch::X64] {
        let built = common::driver(arch, true);
        let first = kd_script(
            &built.sys,
            "ed nt!PoolHitTag 'dcba'\ng\nbp Sample!DriverEntry+0x2c\nq\n",
        );
        let note = first.of("bp Sample!DriverEntry+0x2c");
        assert!(
            note[0].starts_with("harness kd: Sample!DriverEntry+0x2c is inside the instruction at Sample!DriverEntry+0x"),
            "{arch}: {note:?}"
        );
        let places = note[1]
            .strip_prefix("harness kd: the walkthrough's DriverEntry offsets in this build: ")
            .unwrap_or_else(|| panic!("{arch}: {note:?}"));
        let stored = places
            .split(", ")
            .find_map(|place| {
                place.strip_prefix("+0x2c (the buffer is stored in g_RegistryPath) is ")
            })
            .unwrap_or_else(|| panic!("{arch}: {places}"));
        let second = kd_script(
            &built.sys,
            &format!(
                "ed nt!PoolHitTag 'dcba'\ng\nbp {stored}\ng\ndt Sample!g_RegistryPath Buffer\nr @$retreg\nq\n"
            ),
        );
        assert!(
            second.of(&format!("bp {stored}")).is_empty(),
            "{arch}: at a start"
        );
        let hit = second.nth("g", 1);
        assert!(
            hit.contains(&"Breakpoint 0 hit".to_owned()),
            "{arch}: {hit:?}"
        );
        assert!(hit.contains(&format!("{stored}:")), "{arch}: {hit:?}");
        // The buffer is stored: g_RegistryPath.Buffer is the allocation's result.
        let buffer = field(second.of("dt Sample!g_RegistryPath Buffer"), "Buffer");
        let returned = second.of("r @$retreg")[0]
            .split('=')
            .nth(1)
            .map(hex)
            .expect("value");
        assert_eq!(
            hex(buffer.split_whitespace().next().expect("pointer")),
            returned,
            "{arch}"
        );
        // Deferred with bu: told when the driver loads and it resolves.
        let deferred = kd_script(&built.sys, "bu Sample!DriverEntry+0x2c\ng\nq\n");
        assert_eq!(deferred.of("g")[0], note[0], "{arch}");
    }
}

/// Breakpoint command strings as kd runs them: `j` and `.if`/`.else` choose,
/// `gc` resumes without showing the stop (gc--go-from-conditional-
/// breakpoint-.md, j--execute-if---else-.md), `;` inside quotes stays in
/// the string. The allocator's third argument is the tag (x86: poi(@esp+0xc)
/// at its entry, x64: @r8).
#[test]
fn breakpoint_commands_choose_and_resume_as_kd_does() {
    for (arch, tag) in [(Arch::X86, "poi(@esp+0xc)"), (Arch::X64, "@r8")] {
        let built = common::driver(arch, false);
        let run = |commands: &str| {
            let transcript = kd_script(
                &built.sys,
                &format!("bp nt!ExAllocatePoolWithTag \"{commands}\"\ng\nq\n"),
            );
            transcript.of("g").to_vec()
        };
        let finished = |output: &[String]| {
            output
                .iter()
                .any(|line| line.contains("was started and stopped"))
        };
        let logged = run(".echo allocating; gc");
        assert!(
            logged.contains(&"allocating".to_owned()),
            "{arch}: {logged:?}"
        );
        assert!(
            !logged.contains(&"Breakpoint 0 hit".to_owned()),
            "{arch}: {logged:?}"
        );
        assert!(finished(&logged), "{arch}: {logged:?}");

        let tagged = run(&format!(
            "j ({tag}==0x64636261) '.echo tagged; .echo abcd'; 'gc'"
        ));
        let at = tagged
            .iter()
            .position(|line| line == "Breakpoint 0 hit")
            .unwrap_or_else(|| panic!("{arch}: {tagged:?}"));
        assert_eq!(tagged[at + 1], "nt!ExAllocatePoolWithTag:", "{arch}");
        assert_eq!(tagged[at + 3..], ["tagged", "abcd"], "{arch}");

        let other = run(&format!("j ({tag}==0x11111111) ''; 'gc'"));
        assert!(
            !other.contains(&"Breakpoint 0 hit".to_owned()),
            "{arch}: {other:?}"
        );
        assert!(finished(&other), "{arch}: {other:?}");

        let chosen = run(&format!(
            ".if ({tag}==0x64636261) {{ .echo mine }} .else {{ .echo theirs; gc }}"
        ));
        assert_eq!(chosen.last().map(String::as_str), Some("mine"), "{arch}");
        let passed = run(&format!(
            ".if ({tag}!=0x64636261) {{ .echo mine }} .else {{ .echo theirs; gc }}"
        ));
        assert!(
            passed.contains(&"theirs".to_owned()) && finished(&passed),
            "{arch}: {passed:?}"
        );
    }
}

/// `dt -r`, `-rN`, `-b`, `-v` are options, not symbol names
/// (dt--display-type-.md): -r expands structure members, indented three
/// more columns a level; -v starts with the kind, member count and size.
#[test]
fn dt_takes_its_options() {
    for (arch, object, size) in [
        (Arch::X86, "poi(@esp+4)", "0x8"),
        (Arch::X64, "@rcx", "0x10"),
    ] {
        let built = common::driver(arch, false);
        let transcript = kd_script(
            &built.sys,
            &format!(
                "bp Sample!DriverEntry\ng\ndt -v nt!_UNICODE_STRING\ndt -r nt!_DRIVER_OBJECT\n\
                 dt -r0 nt!_DRIVER_OBJECT\ndt nt!_DRIVER_OBJECT\ndt -r1 nt!_DRIVER_OBJECT {object}\n\
                 dt -b Sample!g_RegistryPath\ndt Sample!g_RegistryPath\ndt -x nt!_UNICODE_STRING\nq\n"
            ),
        );
        let verbose = transcript.of("dt -v nt!_UNICODE_STRING");
        assert_eq!(
            verbose[0],
            format!("struct _UNICODE_STRING, 3 elements, {size} bytes"),
            "{arch}"
        );
        assert_eq!(verbose.len(), 4, "{arch}: {verbose:?}");
        let plain = transcript.of("dt nt!_DRIVER_OBJECT");
        assert_eq!(transcript.of("dt -r0 nt!_DRIVER_OBJECT"), plain, "{arch}");
        let expanded = transcript.of("dt -r nt!_DRIVER_OBJECT");
        let at = expanded
            .iter()
            .position(|line| line.contains(" DriverName ") && line.ends_with(": _UNICODE_STRING"))
            .unwrap_or_else(|| panic!("{arch}: {expanded:?}"));
        assert!(
            expanded[at + 1].starts_with("      +0x000 Length "),
            "{arch}: {expanded:?}"
        );
        assert!(expanded[at + 3].starts_with("      +0x"), "{arch}");
        assert!(expanded[at + 3].contains(" Buffer "), "{arch}");
        assert_eq!(expanded.len(), plain.len() + 3, "{arch}");
        let values = transcript.of(&format!("dt -r1 nt!_DRIVER_OBJECT {object}"));
        let at = values
            .iter()
            .position(|line| line.contains(" DriverName "))
            .expect("DriverName");
        assert!(
            values[at].ends_with("_UNICODE_STRING \"\\Driver\\Sample\""),
            "{arch}: {values:?}"
        );
        assert!(
            values[at + 3].ends_with("\"\\Driver\\Sample\""),
            "{arch}: {values:?}"
        );
        assert_eq!(
            transcript.of("dt -b Sample!g_RegistryPath"),
            transcript.of("dt Sample!g_RegistryPath"),
            "{arch}"
        );
        assert_eq!(
            transcript.of("dt -x nt!_UNICODE_STRING"),
            ["harness kd: dt -x is not emulated (-r[N], -b and -v are)"]
        );
    }
}

/// `ln` on a driver without a PDB or exports names the module
/// (`Sample+0x1020`), never a far-away nt symbol.
#[test]
fn ln_without_driver_symbols_names_the_module() {
    for arch in [Arch::X86, Arch::X64] {
        let built = common::driver(arch, false);
        let dir = tempfile::tempdir().expect("temp dir");
        let sys = dir.path().join("Sample.sys");
        std::fs::copy(&built.sys, &sys).expect("copy");
        let script = "bp nt!ExAllocatePoolWithTag\ng\nln Sample+0x1020\n? Sample\nq\n";
        let transcript = kd_script(&sys, script);
        let base = transcript.of("? Sample")[0]
            .rsplit(' ')
            .next()
            .map(hex)
            .expect("base");
        let line = &transcript.of("ln Sample+0x1020")[0];
        let (address, name) = line.split_once(")   ").expect("kd's ln form");
        assert_eq!(hex(address.trim_start_matches('(')), base, "{arch}: {line}");
        assert_eq!(name, "Sample+0x1020", "{arch}: {line}");
        // With its PDB the same address is a function's.
        let named = kd_script(&built.sys, script);
        assert!(
            named.of("ln Sample+0x1020")[0].contains("Sample!"),
            "{arch}: {:?}",
            named.of("ln Sample+0x1020")
        );
    }
}

/// `!poolfind TagString|TagValue [PoolType]` as -poolfind.md documents it:
/// `*` and `?` wildcards, case-sensitive; `0x` values; 0 nonpaged, 1 paged.
#[test]
fn poolfind_takes_patterns_values_and_the_pool_type() {
    let built = common::driver(Arch::X64, true);
    let finds = [
        "!poolfind abcd",
        "!poolfind ab*",
        "!poolfind *",
        "!poolfind 0x64636261 1",
        "!poolfind a?cd 1",
        "!poolfind abcd 0",
        "!poolfind ABCD",
        "!poolfind abcd 2",
    ];
    let transcript = kd_script(&built.sys, &format!("g\n{}\nq\n", finds.join("\n")));
    let hits = |command: &str| -> Vec<String> {
        transcript
            .of(command)
            .iter()
            .filter(|line| line.contains(" : tag abcd, size "))
            .cloned()
            .collect()
    };
    let found = hits("!poolfind abcd");
    assert_eq!(found.len(), 1, "{:?}", transcript.of("!poolfind abcd"));
    assert!(found[0].ends_with("Paged pool"), "{found:?}");
    for command in [
        "!poolfind ab*",
        "!poolfind *",
        "!poolfind 0x64636261 1",
        "!poolfind a?cd 1",
    ] {
        assert_eq!(hits(command), found, "{command}");
    }
    // `*` finds the other tags too; nonpaged pool and another case find none.
    assert!(
        transcript
            .of("!poolfind *")
            .iter()
            .filter(|line| line.contains(" : tag "))
            .count()
            > 1
    );
    assert!(hits("!poolfind abcd 0").is_empty());
    assert!(
        transcript
            .of("!poolfind abcd 0")
            .iter()
            .all(|line| !line.contains("paged pool (") || line.contains("nonpaged"))
    );
    assert!(hits("!poolfind ABCD").is_empty());
    assert_eq!(
        transcript.of("!poolfind abcd 2"),
        ["harness kd: the emulated machine has no special pool: nothing to search"]
    );
}

/// `!pool Address 1` adds each block's contents, `0x80000000` leaves out
/// the tag's description (-pool.md, Flags).
#[test]
fn pool_flags_add_contents_and_drop_the_description() {
    for arch in [Arch::X86, Arch::X64] {
        let built = common::driver(arch, false);
        let buffer = format!("poi(Sample!g_RegistryPath+{})", arch.pointer_size());
        let transcript = kd_script(
            &built.sys,
            &format!(
                "bu Sample!SampleUnload\ng\n!pool {buffer} 3\n!pool {buffer} 2\n!pool {buffer} 0x80000002\ndd {buffer} l4\nq\n"
            ),
        );
        let with_contents = transcript.of(&format!("!pool {buffer} 3"));
        let plain = transcript.of(&format!("!pool {buffer} 2"));
        assert_eq!(with_contents[..plain.len()], *plain, "{arch}");
        // The first contents line is the buffer's first four dwords, as dd shows them.
        let dumped: Vec<&str> = transcript.of(&format!("dd {buffer} l4"))[0]
            .split_whitespace()
            .skip(1)
            .collect();
        let first: Vec<&str> = with_contents[plain.len()]
            .split_whitespace()
            .skip(1)
            .collect();
        assert_eq!(first, dumped, "{arch}: {with_contents:?}");
        assert!(plain.iter().any(|line| line.contains("Owning component")));
        let bare = transcript.of(&format!("!pool {buffer} 0x80000002"));
        assert_eq!(bare.len(), plain.len() - 1, "{arch}: {bare:?}");
        assert!(bare.iter().all(|line| !line.contains("Owning component")));
    }
}

/// `dd 0 L?0xffffffffffff` (and db, dc, dq): kd lifts its 256 MB limit for
/// `L?` (Address and Address Range Syntax); one command here shows at most
/// 1 MB, says so, and a bare `dd` goes on from where it stopped (issue 20).
#[test]
fn huge_l_ranges_stop_at_a_bound_and_say_so() {
    let built = common::driver(Arch::X64, false);
    let transcript = kd_script(
        &built.sys,
        "dd 0 L?0xffffffffffff\ndd\ndb 0 L?0xffffffffffff\ndc 0 L?0xffffffffffff\ndq 0 L?0xffffffffffff\nq\n",
    );
    for (command, per_line) in [("dd", 16), ("db", 16), ("dc", 16), ("dq", 16)] {
        let output = transcript.of(&format!("{command} 0 L?0xffffffffffff"));
        assert_eq!(output.len(), (1 << 20) / per_line + 1, "{command}");
        assert_eq!(
            output.last().map(String::as_str),
            Some(
                format!(
                    "harness kd: stopped after 0x100000 bytes (one command shows at most that much; {command} alone goes on)"
                )
                .as_str()
            )
        );
    }
    assert!(
        transcript.of("dd")[0].starts_with("00000000`00100000 "),
        "{:?}",
        transcript.of("dd")
    );
}

/// `!verifier` flags as -verifier.md gives them: bit 1 (allocations) only
/// with bit 0; the log flags alone (8, 0x80 Address, ...) and within a sum
/// (0xf) are said to be absent, not ignored.
#[test]
fn verifier_flags_are_honoured_or_said_absent() {
    let built = common::driver(Arch::X86, true);
    let transcript = kd_script(
        &built.sys,
        "g\n!verifier 3\n!verifier 1\n!verifier 2\n!verifier 0xf\n!verifier 8\n!verifier 0x80 0x1234\nq\n",
    );
    let lists_allocations = |command: &str| {
        transcript
            .of(command)
            .iter()
            .any(|line| line.trim() == "Pool Allocations:")
    };
    assert!(lists_allocations("!verifier 3"));
    assert!(!lists_allocations("!verifier 1"));
    assert!(!lists_allocations("!verifier 2"));
    assert!(lists_allocations("!verifier 0xf"));
    assert_eq!(
        transcript.of("!verifier 0xf").last().map(String::as_str),
        Some(
            "harness kd: not shown, the emulated verifier does not keep them: fault injection information, the IRQL transition log"
        )
    );
    assert_eq!(
        transcript.of("!verifier 8"),
        [
            "harness kd: !verifier 0x8 shows the IRQL transition log, which the emulated verifier does not keep"
        ]
    );
    assert_eq!(
        transcript.of("!verifier 0x80 0x1234"),
        [
            "harness kd: !verifier 0x80 shows the kernel pool allocate/free log, which the emulated verifier does not keep"
        ]
    );
}

/// x64: at the PoolHitTag break, DriverEntry's parameters live in rsi/rdi
/// (its prologue moved them there); `.frame 0n4; dv /t /v` recovers them
/// through the unwind data of the frames above, as kd does, and
/// `.frame /r` shows them in the frame's registers.
#[test]
fn x64_frames_recover_nonvolatile_registers() {
    let built = common::driver(Arch::X64, true);
    let transcript = kd_script(
        &built.sys,
        "ed nt!PoolHitTag 'dcba'\ng\n.frame 0n4;dv /t /v\n.frame /r 0n4\nq\n",
    );
    let locals = transcript.of(".frame 0n4;dv /t /v");
    assert!(locals[0].contains(" Sample!DriverEntry+0x"), "{locals:?}");
    let value_of = |register: &str| -> u64 {
        let line = locals
            .iter()
            .find(|line| line.starts_with(&format!("@{register} ")))
            .unwrap_or_else(|| panic!("no @{register} local: {locals:?}"));
        let after = line.split(" = ").nth(1).expect("a value");
        assert!(!after.contains("unavailable"), "{line}");
        hex(after.split_whitespace().next().expect("value"))
    };
    let driver = value_of("rsi");
    let registry = value_of("rdi");
    assert!(
        locals
            .iter()
            .any(|line| line.ends_with("Driver \"\\Driver\\Sample\"")),
        "{locals:?}"
    );
    assert!(
        locals.iter().any(|line| line
            .ends_with("\"\\REGISTRY\\MACHINE\\SYSTEM\\ControlSet001\\services\\Sample\"")),
        "{locals:?}"
    );
    let block = transcript.of(".frame /r 0n4");
    let register = |name: &str| -> u64 {
        block
            .iter()
            .flat_map(|line| line.split_whitespace())
            .find_map(|word| word.strip_prefix(&format!("{name}=")))
            .map_or_else(|| panic!("{name} in {block:?}"), hex)
    };
    assert_eq!(register("rsi"), driver);
    assert_eq!(register("rdi"), registry);
}
