//! The commands `harness kd` accepts: one table that dispatches them and
//! from which `.help`, `?`, `harness kd --help` and `docs/kd/commands.md`
//! are generated. The kd forms are those of Microsoft's debugger reference
//! (MicrosoftDocs/windows-driver-docs, `debugger/*.md`, one page per
//! command, named in each entry's `source`).

use std::fmt::Write as _;

use super::{
    CommandError, Reply, Session, control, module_info, stack_forms, stack_params, step_to,
    symbol_dump,
};
use crate::format;

/// One command line's command, as the handler gets it.
pub struct Call<'a> {
    /// The name, lower case (`dd`, `kvn`, `!pool`).
    pub name: &'a str,
    /// The name as typed (`kP` is not `kp`).
    pub typed: &'a str,
    /// The rest of the command, trimmed.
    pub args: &'a str,
    /// The rest, untrimmed at the start (`bp1 addr` keeps its ID there).
    pub raw: &'a str,
    /// The whole command, for errors that point into it.
    pub text: &'a str,
    /// Where the command starts on its line.
    pub column: usize,
}

/// One command of the table.
pub struct Command {
    /// Its names, as help shows them (`bc, bd, be`).
    pub names: &'static str,
    /// kd's syntax for it, as the harness takes it.
    pub syntax: &'static str,
    /// One line: what it does.
    pub help: &'static str,
    /// What differs from a real kd ("" when nothing does).
    pub differs: &'static str,
    /// The reference page the form comes from.
    pub source: &'static str,
    /// Other sources of the output form (real sessions, WRK), "" if none.
    pub evidence: &'static str,
    accepts: fn(&str) -> bool,
    run: fn(&mut Session, &Call<'_>) -> Reply,
}

/// The table. Order is help's order.
pub static COMMANDS: &[Command] = &[
    Command {
        names: "g",
        syntax: "g [BreakAddress]",
        help: "run (the first g starts the driver; the next one stops it)",
        differs: "no = StartAddress (it would move the instruction pointer)",
        source: "g--go-.md",
        evidence: "",
        accepts: |name| name == "g",
        run: |session, call| session.go(call.args),
    },
    Command {
        names: "gu",
        syntax: "gu",
        help: "run until the current function returns",
        differs: "",
        source: "gu--go-up-.md",
        evidence: "",
        accepts: |name| name == "gu",
        run: |session, _| session.go_up(),
    },
    Command {
        names: "p",
        syntax: "p [Count]",
        help: "step over calls, Count instructions, each shown",
        differs: "no r (register block) option, no = StartAddress, at most 0n10000 steps",
        source: "p--step-.md",
        evidence: "",
        accepts: |name| name == "p",
        run: |session, call| session.step(true, call.args),
    },
    Command {
        names: "t",
        syntax: "t [Count]",
        help: "step into calls, Count instructions, each shown",
        differs: "no r option, no = StartAddress, at most 0n10000 steps",
        source: "t--trace-.md",
        evidence: "",
        accepts: |name| name == "t",
        run: |session, call| session.step(false, call.args),
    },
    Command {
        names: "bp, bu",
        syntax: "bp[ID] Address [\"CommandString\"]",
        help: "set a breakpoint (bu: deferred until its module loads)",
        differs: "no pass counts or /1 /p /t options; a place already set is redefined under its ID; a breakpoint inside an instruction is told; a command string that resumes (gc) shows only its commands' output; p/t/gu in it are refused",
        source: "bp--bu--bm--set-breakpoint-.md",
        evidence: "",
        accepts: |name| matches!(name, "bp" | "bu"),
        run: |session, call| session.set_breakpoint(call.raw.trim_end()),
    },
    Command {
        names: "ba",
        syntax: "ba[ID] {e|r|w}Size [Address] [\"CommandString\"]",
        help: "set a processor (data) breakpoint: r/w stop after the access, e before the instruction",
        differs: "no i (I/O), options or pass counts; accesses made by the emulated kernel's routines (Rust code, not instructions) do not trigger it; an address whose page is not mapped is watched from the first resume after it is mapped (said when set); a fifth one is refused when set",
        source: "ba--break-on-access-.md",
        evidence: "bl--breakpoint-list-.md (type and size after the address); kd's messages as real kd prints them (`Too many data breakpoints for processor 0` in public kd logs); Intel SDM vol. 3B 17.3.1.2 (a data breakpoint is a trap, taken after the instruction)",
        accepts: |name| name == "ba",
        run: |session, call| {
            session.set_processor_breakpoint(call.raw.trim_end(), call.text, call.column)
        },
    },
    Command {
        names: "bl",
        syntax: "bl",
        help: "list breakpoints",
        differs: "",
        source: "bl--breakpoint-list-.md",
        evidence: "",
        accepts: |name| name == "bl",
        run: |session, _| Ok(session.list_breakpoints()),
    },
    Command {
        names: "bc, bd, be",
        syntax: "bc|bd|be {* | ID[-ID] ...}",
        help: "clear, disable or enable breakpoints",
        differs: "",
        source: "bc--breakpoint-clear-.md",
        evidence: "",
        accepts: |name| matches!(name, "bc" | "bd" | "be"),
        run: |session, call| session.change_breakpoints(call.name, call.args),
    },
    Command {
        names: "r",
        syntax: "r [Register[=Value], ...]",
        help: "show or set registers",
        differs: "",
        source: "r--registers-.md",
        evidence: "",
        accepts: |name| name == "r",
        run: |session, call| session.registers(call.args),
    },
    Command {
        names: "kp, kP",
        syntax: "kp|kP [n]",
        help: "the stack with the driver frames' parameters and values (kP: one a line)",
        differs: "values carry dv's notes; a register parameter above frame 0 is <value unavailable>",
        source: "k--kb--kc--kd--kp--kp--kv--display-stack-backtrace-.md",
        evidence: "the page's \"p\" and \"P\" options",
        accepts: |name| stack_params::is_parameter_stack(name),
        run: |session, call| session.parameter_stack(call.typed, call.args),
    },
    Command {
        names: "kc, kf",
        syntax: "kc|kf [n]",
        help: "the stack as call sites only (kc), or with the memory between frames (kf)",
        differs: "kc and kf do not combine with p",
        source: "k--kb--kc--kd--kp--kp--kv--display-stack-backtrace-.md",
        evidence: "the page's \"c\" and \"f\" options; real sessions' ` #   Memory  Child-SP` header",
        accepts: |name| stack_forms::is_clean_or_distance(name),
        run: |session, call| session.stack_form(call.name, call.args),
    },
    Command {
        names: "k, kb, kv, kn, kp ...",
        syntax: "k[b|v|p][n]",
        help: "the stack",
        differs: "",
        source: "k--kb--kc--kd--kp--kp--kv--display-stack-backtrace-.md",
        evidence: "",
        accepts: |name| control::is_stack_command(name),
        run: |session, call| session.backtrace(call.name, call.args),
    },
    Command {
        names: ".frame",
        syntax: ".frame [/r] [FrameNumber]",
        help: "select a frame for dv (/r: its registers)",
        differs: "/r above frame 0: x64 only, volatile registers shown as 0",
        source: "-frame--set-local-context-.md",
        evidence: "",
        accepts: |name| name == ".frame",
        run: |session, call| session.set_frame(call.args),
    },
    Command {
        names: "dv",
        syntax: "dv [/t] [/v]",
        help: "the current frame's parameters and locals",
        differs: "",
        source: "dv--display-local-variables-.md",
        evidence: "",
        accepts: |name| name == "dv",
        run: |session, call| session.display_locals(call.args),
    },
    Command {
        names: ".thread",
        syntax: ".thread",
        help: "the current thread",
        differs: "",
        source: "-thread--set-register-context-.md",
        evidence: "",
        accepts: |name| name == ".thread",
        run: |session, call| session.thread(call.args),
    },
    Command {
        names: ".cxr",
        syntax: ".cxr [Address]",
        help: "a context record's registers (alone: back to the current ones)",
        differs: "",
        source: "-cxr--display-context-record-.md",
        evidence: "",
        accepts: |name| name == ".cxr",
        run: |session, call| session.context_record(call.args),
    },
    Command {
        names: "dds, dqs, dps",
        syntax: "dds|dqs|dps [Range]",
        help: "memory as values, each with the symbol it points into",
        differs: "no source lines after the symbols; at most 0x10000 values",
        source: "dds--dps--dqs--display-words-and-symbols-.md",
        evidence: "the walkthrough's stack values",
        accepts: |name| symbol_dump::element_size(name, 8).is_some(),
        run: |session, call| {
            symbol_dump::element_size(call.name, session.pointer_size()).map_or_else(
                || Ok(String::new()),
                |size| session.dump_symbols(size, call.args),
            )
        },
    },
    Command {
        names: "d, db, dw, dd, dq, dp, dc, da, du ...",
        syntax: "d{b|w|d|q|p|c|a|u} [Range]",
        help: "display memory",
        differs: "at most 1 MB per command with L? (kd goes on until Ctrl-C)",
        source: "d--da--db--dc--dd--dd--df--dp--dq--du--dw--dw--dyb--dyd--display-memor.md",
        evidence: "",
        accepts: |name| name == "d" || format::DumpFormat::from_command(name).is_some(),
        run: |session, call| {
            let name = if call.name == "d" { "db" } else { call.name };
            session.dump(name, call.args)
        },
    },
    Command {
        names: "eb, ew, ed, eq, ep",
        syntax: "e{b|w|d|q|p} Address Values",
        help: "enter values into memory",
        differs: "",
        source: "e--ea--eb--ed--ed--ef--ep--eq--eu--ew--eza--ezu--enter-values-.md",
        evidence: "",
        accepts: |name| matches!(name, "eb" | "ew" | "ed" | "eq" | "ep"),
        run: |session, call| session.enter(call.name, call.args),
    },
    Command {
        names: "?",
        syntax: "? Expression",
        help: "evaluate a MASM expression (alone: this list)",
        differs: "",
        source: "---evaluate-expression-.md",
        evidence: "",
        accepts: |name| name == "?",
        run: |session, call| {
            if call.args.is_empty() {
                Ok(summary())
            } else {
                session.evaluate_masm(call.args)
            }
        },
    },
    Command {
        names: "??",
        syntax: "?? Expression",
        help: "evaluate a C++ expression",
        differs: "",
        source: "----evaluate-c---expression-.md",
        evidence: "",
        accepts: |name| name == "??",
        run: |session, call| session.evaluate_cpp(call.args),
    },
    Command {
        names: ".formats",
        syntax: ".formats Expression",
        help: "a value in every format",
        differs: "",
        source: "-formats--show-number-formats-.md",
        evidence: "",
        accepts: |name| name == ".formats",
        run: |session, call| session.formats(call.args),
    },
    Command {
        names: "lm, lmv, lmvm, lmm",
        syntax: "lm [v] [m Pattern]",
        help: "loaded (and unloaded) modules",
        differs: "no Image path (the emulated loader keeps none); the emulated kernel has no PE header, so kd's unavailable (FFFFFFFE) and missing for it; no DML Browse lines; the flags o, l, k, u, f, t are a syntax error",
        source: "lm--list-loaded-modules-.md",
        evidence: "a real Windows 7 SP1 x64 `lmvm man` (FLARE-ON 2019 \"help\" write-ups)",
        accepts: |name| name == "lm" || module_info::is_listing(name),
        run: |session, call| session.list_modules_with_options(call.text, call.column),
    },
    Command {
        names: "ln",
        syntax: "ln Address",
        help: "the nearest symbols",
        differs: "",
        source: "ln--list-nearest-symbols-.md",
        evidence: "",
        accepts: |name| name == "ln",
        run: |session, call| session.list_nearest(call.args),
    },
    Command {
        names: "x",
        syntax: "x Module!Pattern",
        help: "symbols matching a pattern",
        differs: "the Rust driver's PDB names its own types (struct Sample::portable::types::DRIVER_OBJECT *); Rust's precompiled core functions show (void) (line-tables-only debug info)",
        source: "x--examine-symbols-.md",
        evidence: "kd's `x` on private and public symbols; issue 16's `Sample!DriverEntry (struct _DRIVER_OBJECT *, ...)`",
        accepts: |name| name == "x",
        run: |session, call| session.examine(call.args),
    },
    Command {
        names: "u",
        syntax: "u [Range]",
        help: "unassemble",
        differs: "",
        source: "u--unassemble-.md",
        evidence: "",
        accepts: |name| name == "u",
        run: |session, call| session.unassemble(call.args),
    },
    Command {
        names: "ub",
        syntax: "ub [Address] [L Count]",
        help: "unassemble the instructions that end at Address",
        differs: "decoded from the function's start so that they line up; at most 0x1000 instructions",
        source: "u--unassemble-.md",
        evidence: "",
        accepts: |name| name == "ub",
        run: |session, call| session.unassemble_backwards(call.args),
    },
    Command {
        names: "uf",
        syntax: "uf Address",
        help: "unassemble a whole function",
        differs: "the function's extent in address order, not only its reachable blocks; at most 0x1000 instructions",
        source: "uf--unassemble-function-.md",
        evidence: "",
        accepts: |name| name == "uf",
        run: |session, call| session.unassemble_function(call.args),
    },
    Command {
        names: ".asm",
        syntax: ".asm [no_]code_bytes",
        help: "show or hide code bytes in disassembly",
        differs: "only code_bytes",
        source: "-asm--change-disassembly-options-.md",
        evidence: "",
        accepts: |name| name == ".asm",
        run: |session, call| session.asm_options(call.args),
    },
    Command {
        names: "dt",
        syntax: "dt [-r[N]] [-b] [-v] [Module!]Type [Address]",
        help: "display a type or a variable",
        differs: "-r/-b expand embedded structures, not pointers; other options are refused",
        source: "dt--display-type-.md",
        evidence: "",
        accepts: |name| name == "dt",
        run: |session, call| session.display_type(call.args),
    },
    Command {
        names: ".reload",
        syntax: ".reload",
        help: "nothing to reload: says where the symbols come from",
        differs: "symbols are the emulated kernel's and the driver's PDB or exports",
        source: "-reload--reload-module-.md",
        evidence: "",
        accepts: |name| name == ".reload",
        run: |_, _| {
            Ok("harness kd: symbols are loaded already (nt from the emulated kernel, the driver from its PDB or exports)\n".to_owned())
        },
    },
    Command {
        names: "!pool",
        syntax: "!pool Address [Flags]",
        help: "the pool block holding an address",
        differs: "flag 1's contents are dwords, four a line",
        source: "-pool.md",
        evidence: "",
        accepts: |name| name == "!pool",
        run: |session, call| session.pool(call.args),
    },
    Command {
        names: "!poolfind",
        syntax: "!poolfind Tag [PoolType]",
        help: "pool blocks with a tag",
        differs: "without PoolType both pools are searched (README); no special or session pool",
        source: "-poolfind.md",
        evidence: "",
        accepts: |name| name == "!poolfind",
        run: |session, call| session.poolfind(call.args),
    },
    Command {
        names: "!verifier",
        syntax: "!verifier [Flags [Image]]",
        help: "Driver Verifier's settings, counters and a driver's allocations",
        differs: "the verifier's logs (4, 8, 0x20 ... 0x400) are not kept: said so",
        source: "-verifier.md",
        evidence: "",
        accepts: |name| name == "!verifier",
        run: |session, call| session.verifier(call.args),
    },
    Command {
        names: "!analyze",
        syntax: "!analyze [-v]",
        help: "the bug check's analysis",
        differs: "fewer Debugging Details fields than the walkthrough's kd (no KEY_VALUES_STRING, STACK_TEXT ...)",
        source: "-analyze.md",
        evidence: "",
        accepts: |name| name == "!analyze",
        run: |session, call| session.analyze(call.args),
    },
    Command {
        names: ".echo",
        syntax: ".echo [String | \"String\"]",
        help: "print a string",
        differs: "",
        source: "-echo--echo-comment-.md",
        evidence: "",
        accepts: |name| name == ".echo",
        run: |_, call| {
            let args = call.args;
            Ok(format!(
                "{}\n",
                args.strip_prefix('"')
                    .and_then(|text| text.strip_suffix('"'))
                    .unwrap_or(args)
            ))
        },
    },
    Command {
        names: "*, $$",
        syntax: "* Comment | $$ Comment",
        help: "a comment (* to the end of the line, $$ to the next ;)",
        differs: "",
        source: "----comment-line-specifier-.md",
        evidence: "",
        accepts: |name| matches!(name, "*" | "$$"),
        run: |_, _| Ok(String::new()),
    },
    Command {
        names: ".help",
        syntax: ".help [Command]",
        help: "this list; with a command, its form and what differs from kd",
        differs: "lists the harness's commands, not every kd meta-command; .help Command is the harness's own",
        source: "-help--meta-command-help-.md",
        evidence: "",
        accepts: |name| name == ".help",
        run: |_, call| {
            if call.args.is_empty() {
                return Ok(summary());
            }
            let name = call.args.to_ascii_lowercase();
            find(&name).map(Command::details).ok_or_else(|| {
                CommandError::Message(format!(
                    "harness kd: '{}' is not emulated here (? lists the commands)",
                    call.args
                ))
            })
        },
    },
    Command {
        names: "pc, tc, pt, tt, ph, th",
        syntax: "pc|tc|pt|tt|ph|th [Count]",
        help: "step (p over calls, t into them) to the next call, return or branch",
        differs: "no register block; no = StartAddress or r; at most 0x10000 steps",
        source: "pc--step-to-next-call-.md",
        evidence: "the tc, pt, tt, ph and th pages",
        accepts: |name| step_to::step_command(name).is_some(),
        run: |session, call| match step_to::step_command(call.name) {
            Some((into, kind)) => session.step_to(into, kind, call.args),
            None => Ok(String::new()),
        },
    },
    Command {
        names: "sx",
        syntax: "sx",
        help: "the event filters' states (ld, the driver's image load)",
        differs: "only ld is listed: the other exceptions and events are not emulated",
        source: "sx--sxd--sxe--sxi--sxn--sxr--sx---set-exceptions-.md",
        evidence: "controlling-exceptions-and-events.md (ld: Load module, default Output)",
        accepts: |name| name == "sx",
        run: |session, call| session.list_filters(call.args),
    },
    Command {
        names: "sxe, sxd, sxn, sxi",
        syntax: "sx{e|d|n|i} ld[:Module]",
        help: "break (sxe) or not when the driver's image loads, before DriverEntry runs",
        differs: "only the ld event; no -c/-c2/-h; no ModLoad line (kernel kd prints none at the break)",
        source: "sx--sxd--sxe--sxi--sxn--sxr--sx---set-exceptions-.md",
        evidence: "controlling-exceptions-and-events.md; real kernel sessions after `sxe ld name.sys` and `g` (`nt!DebugService2+0x5:`, `int 3`, no ModLoad line; Windows 7 x64 stack DebugService2 <- DbgLoadImageSymbols <- DbgLoadImageSymbolsUnicode <- MiDriverLoadSucceeded <- MmLoadSystemImage)",
        accepts: |name| matches!(name, "sxe" | "sxd" | "sxn" | "sxi"),
        run: |session, call| session.set_filter(call.name, call.args),
    },
    Command {
        names: ".lastevent",
        syntax: ".lastevent",
        help: "the last event the target reported",
        differs: "no debugger time or pid.tid; before the first stop, no event yet",
        source: "-lastevent--display-last-event-.md",
        evidence: "the walkthrough's break-in lines; `STATUS_SINGLE_STEP` (ntstatus.h) for steps and data breakpoints; real sessions' ``Last event: Load module KmdfHelloWorld.sys at fffff804`600c0000``",
        accepts: |name| name == ".lastevent",
        run: |session, _| Ok(session.last_event()),
    },
    Command {
        names: ".bugcheck",
        syntax: ".bugcheck",
        help: "the bug check code and arguments (nt!KiBugCheckData)",
        differs: "",
        source: "-bugcheck--display-bug-check-data-.md",
        evidence: "bug-check-0xa and 0x1e pages' examples; public x64 sessions (``Arguments 00000000`00000022 ...``)",
        accepts: |name| name == ".bugcheck",
        run: |session, _| session.bugcheck(),
    },
    Command {
        names: "vertarget",
        syntax: "vertarget",
        help: "the target's Windows version, processors, kernel base",
        differs: "no Product, Built by, PsLoadedModuleList, session time or uptime lines",
        source: "vertarget--show-target-computer-version-.md",
        evidence: "real Windows 7 SP1 `vertarget` output (a 1-processor x64 session: `MP (1 procs) Free x64`)",
        accepts: |name| name == "vertarget",
        run: |session, _| session.vertarget(),
    },
    Command {
        names: "version",
        syntax: "version",
        help: "the target's version, then the debugger's",
        differs: "the debugger lines name harness kd",
        source: "version--show-debugger-version-.md",
        evidence: "kd's `version` starts with the target's lines",
        accepts: |name| name == "version",
        run: |session, _| session.version(),
    },
    Command {
        names: "!irql",
        syntax: "!irql [Processor]",
        help: "the processor's IRQL when the target stopped",
        differs: "the machine's current IRQL (no separate saved copy)",
        source: "-irql.md",
        evidence: "both of the page's forms",
        accepts: |name| name == "!irql",
        run: |session, call| session.irql(call.args),
    },
    Command {
        names: "!thread",
        syntax: "!thread [Address]",
        help: "the current thread (KPCR's CurrentThread): ids, owning process, times, stack limits, priorities, stack",
        differs: "no DeviceMap line (the emulated System process has none); Flags refused; a waiting thread (the one not running) gets a harness kd line, its wait blocks are not emulated; UserTime, KernelTime, Wait Start TickCount and Context Switch Count are the ETHREAD's zeros (no scheduler); both threads belong to System (on Windows the unload caller is a services.exe thread)",
        source: "-thread.md",
        evidence: "real Windows 7 SP1 x64 sessions with today's kd (`!thread` on a system worker after bug check 0x7E: `Win32 Start Address nt!ExpWorkerThread (0x...)`, `Stack Init`/`Base` on two lines); Windows 7 x86 sessions and Windows Internals 7th ed. part 1 ch. 6 (x86: one line); offsets: `dt nt!_KTHREAD`/`_ETHREAD` of Windows 7 SP1 (wdm.rs)",
        accepts: |name| name == "!thread",
        run: |session, call| session.thread_display(call.args),
    },
    Command {
        names: "!process",
        syntax: "!process {0 0 [ImageName] | Address 0}",
        help: "the processes on nt!PsActiveProcessHead, three lines each",
        differs: "the emulated machine has one process, System; only Flags 0; no Cid lookup (a process id as Process); DirBase is the emulated CR3, 0 (no page tables); no handle table, so ObjectTable 00000000 and HandleCount 0 as kd shows them for a process without one",
        source: "-process.md",
        evidence: "real Windows 7 x64 sessions (`PROCESS fffffa801916b5d0` then `SessionId: none  Cid: 0004    Peb: 00000000  ParentCid: 0000` on its own line); offsets: `dt nt!_EPROCESS` of Windows 7 SP1 (wdm.rs)",
        accepts: |name| name == "!process",
        run: |session, call| session.process_display(call.args),
    },
    Command {
        names: "!object",
        syntax: "!object {Path | Address} [Flags]",
        help: "an object's type, header, counts and name; a directory's entries (\\Driver: the loaded driver)",
        differs: "the emulated namespace is \\, \\Driver and the loaded driver object (Windows has many more); PointerCount is 1, the namespace's reference (the emulated kernel counts no others); flags 0x10, 0x20, -p and 0 Name refused; the directory entries and names live outside the pools (Windows: ObDi and ObNm paged pool blocks) so that the walkthrough's pool addresses stay",
        source: "-object.md",
        evidence: "WRK base/ntos/ob/obdir.c (the hash, x64 four characters at a time; the page's FltMgrMsg 19 / FltMgr 21 check it); `dt nt!_OBJECT_HEADER` and `_OBJECT_TYPE` of Windows 7 x86 and x64 (wdm.rs)",
        accepts: |name| name == "!object",
        run: |session, call| session.object(call.args),
    },
    Command {
        names: "!drvobj",
        syntax: "!drvobj {Name | Address} [Flags]",
        help: "a driver object: its devices, entry points and dispatch routines",
        differs: "an address whose Type is not IO_TYPE_DRIVER gets a harness kd line",
        source: "-drvobj.md",
        evidence: "real sessions: Windows 10 x64 `!drvobj DeviceObj 7` (2019), Windows XP `!drvobj vmx_svga 3`; kdexts' `Driver object <arguments> not found`; WRK IopUnloadDriver/IopDeleteDriver (the object deleted at unload)",
        accepts: |name| name == "!drvobj",
        run: |session, call| session.driver_object(call.args),
    },
    Command {
        names: "!devobj",
        syntax: "!devobj {Name | Address}",
        help: "a device object (Sample creates none: kd's answer for what is not one)",
        differs: "a real device object gets a harness kd line instead of its display (no object header or DEVOBJ_EXTENSION on the machine)",
        source: "-devobj.md",
        evidence: "kdexts' !devobj: a bare name is looked up as `\\Device\\Name`, then given to the expression evaluator; `Device object <arguments> not found`, `<address>: is not a device object`",
        accepts: |name| name == "!devobj",
        run: |session, call| session.device_object(call.args),
    },
    Command {
        names: "!poolused",
        syntax: "!poolused [Flags [Tag]]",
        help: "outstanding pool per tag",
        differs: "counts from the emulated pool's own records; flags 1 and 8 refused",
        source: "-poolused.md",
        evidence: "WRK base/ntos/ex/pool.c (what the pool tracking table charges)",
        accepts: |name| name == "!poolused",
        run: |session, call| session.pool_used(call.args),
    },
    Command {
        names: "!poolval",
        syntax: "!poolval Address [0]",
        help: "checks a pool page's header chain",
        differs: "no single-bit-error scan; display levels 1-3 refused",
        source: "-poolval.md",
        evidence: "real sessions (Windows 10 x64 bug check 0x19 write-ups, 2024) for the lines",
        accepts: |name| name == "!poolval",
        run: |session, call| session.pool_validate(call.args),
    },
    Command {
        names: ".reboot",
        syntax: ".reboot",
        help: "start the machine over, stopped before the driver loads (breakpoints dropped)",
        differs: "no host-clock times",
        source: "-reboot--reboot-target-computer-.md",
        evidence: "crashing-and-rebooting-the-target-computer.md (\"all breakpoints are lost if you are running KD\"); the walkthrough's `Connected to ... target at (...)` line",
        accepts: |name| name == ".reboot",
        run: |session, _| session.reboot(),
    },
    Command {
        names: ".restart",
        syntax: ".restart",
        help: "restart the kernel connection: a new debugger (no breakpoints), the target as it was",
        differs: "no host-clock times; the harness points to .reboot",
        source: "-restart--restart-kernel-connection-.md",
        evidence: "-restart--restart-target-application-.md (restarting the target is user mode only)",
        accepts: |name| name == ".restart",
        run: |session, _| Ok(session.restart_connection()),
    },
    Command {
        names: "q, qq, qd",
        syntax: "q",
        help: "end the session (its exit code is the verdict so far)",
        differs: "",
        source: "q--qq--quit-.md",
        evidence: "",
        accepts: |name| matches!(name, "q" | "qq" | "qd"),
        run: |session, _| {
            session.quit = true;
            Ok(String::new())
        },
    },
];

/// The table's entry for a command name (lower case).
pub fn find(name: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|command| (command.accepts)(name))
}

impl Command {
    /// `.help Command`: the form, what it does, what differs, the source.
    fn details(&self) -> String {
        let differs = if self.differs.is_empty() {
            "nothing known"
        } else {
            self.differs
        };
        let mut text = format!(
            "{}: {}\n  {}\n  differs from kd: {differs}\n  reference: windows-driver-docs-pr/debugger/{}\n",
            self.names, self.syntax, self.help, self.source
        );
        if !self.evidence.is_empty() {
            let _ = writeln!(text, "  also: {}", self.evidence);
        }
        text
    }

    /// Runs the command.
    pub fn run(&self, session: &mut Session, call: &Call<'_>) -> Reply {
        (self.run)(session, call)
    }
}

/// The one-line-per-command summary `?`, `.help` and `harness kd --help`
/// print.
#[must_use]
pub fn summary() -> String {
    let mut out = String::from("Commands (kd's forms; docs/kd/commands.md says what differs):\n");
    let width = COMMANDS
        .iter()
        .map(|command| command.syntax.len())
        .max()
        .unwrap_or(0);
    for command in COMMANDS {
        let _ = writeln!(out, "  {:<width$} {}", command.syntax, command.help);
    }
    out.push_str(
        "Commands are separated by ; on a line. Enter on an empty line repeats the last command.\n",
    );
    out
}

/// `docs/kd/commands.md`: every command, its kd form, what differs and
/// where its output form comes from.
#[cfg(test)]
fn markdown() -> String {
    let mut out = String::from(
        "# Commands `harness kd` accepts\n\n\
         Generated from the dispatch table (test-harness/crates/debugger/src/session/commands.rs);\n\
         a unit test fails when this file and the table differ (run it with\n\
         `UPDATE_COMMANDS_MD=1` to rewrite this file). Forms are from Microsoft's debugger\n\
         reference, MicrosoftDocs/windows-driver-docs `windows-driver-docs-pr/debugger/<page>`,\n\
         and where it shows no example, from the other sources named. Every value these\n\
         commands print is read from the emulated machine (memory, registers, the `nt!` data\n\
         the emulated kernel keeps), the driver's PDB or the emulated kernel's symbols.\n\
         Any other command gets kd's own error and, once per name, a line starting\n\
         `harness kd:` saying it is not emulated.\n\n\
         | Command | kd form | What it does | What differs from a real kd | Reference page | Other sources of the form |\n\
         |---|---|---|---|---|---|\n",
    );
    let cell = |text: &str| {
        if text.is_empty() {
            "-".to_owned()
        } else {
            text.replace('|', "\\|")
        }
    };
    for command in COMMANDS {
        let _ = writeln!(
            out,
            "| {} | `{}` | {} | {} | {} | {} |",
            cell(command.names),
            cell(command.syntax),
            command.help,
            cell(command.differs),
            command.source,
            cell(command.evidence)
        );
    }
    out.push_str(NOT_YET);
    out
}

/// The commands issue 16 asks for that are not emulated yet, and why.
#[cfg(test)]
const NOT_YET: &str = "\n## Not emulated yet, and why\n\n\
- `!devobj` of a real device object: the emulated `DEVICE_OBJECT` has no object header\n  \
  (its name) and no `DEVOBJ_EXTENSION`; `!devobj` answers for what is not a device.\n";

/// What an unknown command gets: kd's own error, then (once per name) the
/// harness's note that it is not emulated.
pub fn unknown(session: &mut Session, name: &str, text: &str, column: usize) -> String {
    let error = name.strip_prefix('!').map_or_else(
        || CommandError::Syntax {
            column,
            text: text.to_owned(),
        },
        |export| CommandError::NoExport(export.to_owned()),
    );
    let mut out = format!("{error}\n");
    if session.told_unsupported.insert(name.to_owned()) {
        let _ = writeln!(
            out,
            "harness kd: '{name}' is not emulated here (? lists the commands)"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_finds_its_own_entry() {
        for command in COMMANDS {
            for name in command
                .names
                .split(", ")
                .filter(|name| !name.ends_with("..."))
            {
                let found = find(name).unwrap_or_else(|| panic!("{name}"));
                assert!(std::ptr::eq(found, command), "{name} finds another entry");
            }
        }
        assert!(find("kvn").is_some() && find("zz").is_none());
    }

    #[test]
    fn the_commands_page_is_the_table() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../docs/kd/commands.md");
        let generated = markdown();
        if std::env::var_os("UPDATE_COMMANDS_MD").is_some() {
            std::fs::write(&path, &generated).expect("write docs/kd/commands.md");
        }
        let page = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            page == generated,
            "docs/kd/commands.md differs from the table: rerun this test with UPDATE_COMMANDS_MD=1"
        );
    }

    #[test]
    fn the_summary_has_a_line_per_command() {
        assert_eq!(summary().lines().count(), COMMANDS.len() + 2);
    }
}
