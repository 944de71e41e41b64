//! `harness analyze`: debugger text (kd, WinDbg) as people paste it, turned
//! into the same Verdict the emulators give (engine `kd`).
//!
//! The way through:
//! 1. `decode`: UTF-8 with or without a BOM, UTF-16 LE/BE with or without
//!    one; crash dumps are refused by name.
//! 2. `paste`: each line as the debugger printed it (markdown quotes,
//!    fences, backticks, list markers, HTML wrappers undone).
//! 3. Sessions: a second banner after an analysis, a second `!analyze`
//!    title, a field repeated with another value, or a new debugger start
//!    (`Microsoft (R) Windows Debugger`, `Loading Dump File`) opens a new
//!    session. Sessions that show the same bug check are one crash (the
//!    same log pasted twice, a banner the debugger printed twice); the
//!    verdict is the last crash whose bug check is complete, and the others
//!    are named in `notes`.
//! 4. Three recognisers read every line of a session, each with its own
//!    documented precedence: `bugcheck` (which source's code and
//!    arguments win), `verifier` (per-driver sections; whose table a row
//!    belongs to) and `platform` (pointer width; driver names outside
//!    `!verifier`).
//!
//! The driver the verdict is about, strongest first: with a bug check,
//! `IMAGE_NAME` > `MODULE_NAME` > the failure bucket's image > the stack's
//! innermost driver frame > the driver a `!verifier` command names >
//! `Driver Verifier: Enabled for` > the first driver the `!verifier`
//! output lists; without one, the command's driver comes first. Only that
//! driver's allocations are listed; other drivers are named in `notes`.
//!
//! Stage: unloaded when the bug check is 0xC4 with Arg1 0x60/0x62 (raised
//! while the image unloads, even if the module line still says `Loaded`),
//! or when the driver's module line says `Unloaded`/`Loaded and Unloaded`,
//! or its `loads`/`unloads` counters are equal; otherwise still loaded, so
//! a text with no bug check and no unload is never judged clean.

mod bugcheck;
mod decode;
mod paste;
mod platform;
mod query;
mod scan;
mod verifier;

use decode::Encoding;
pub use decode::NotText;
pub use query::{VerifierQuery, parse_query};

use harness_core::arch::Arch;
use harness_core::nt::{self, PoolType};
use harness_core::verdict::{BugCheck, Engine, Leak, Stage, Verdict};

/// The driver name when the text names none.
const UNKNOWN: &str = "unknown";

/// The text holds nothing the harness can judge.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {reason}")]
pub struct NothingFound {
    /// Where the text came from.
    pub source_name: String,
    /// What is missing.
    pub reason: Unjudgeable,
}

/// Why a text cannot be judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unjudgeable {
    /// No bug check, `!analyze` or `!verifier` output at all.
    #[error("no bug check, !analyze -v or !verifier output found")]
    NoDebuggerOutput,
    /// `ArgN:` lines, but nothing says which bug check they belong to.
    #[error(
        "bug-check arguments but no bug-check code (no !analyze title, banner, BUGCHECK_CODE or BUGCHECK_STR); cannot tell which bug check it was"
    )]
    CodeMissing,
}

/// A file `analyze` cannot read.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// Not debugger text at all.
    #[error("{source_name}: {why}")]
    NotText {
        /// Where the bytes came from.
        source_name: String,
        /// What they are instead.
        why: NotText,
    },
    /// Text, but nothing to judge.
    #[error(transparent)]
    Nothing(#[from] NothingFound),
}

/// Parses debugger text into a verdict (engine `kd`).
///
/// # Errors
/// The text holds no bug check, `!analyze` or `!verifier` output, or
/// bug-check arguments without a code.
pub fn analyze(text: &str, source: &str) -> Result<Verdict, NothingFound> {
    judge(text).map_err(|reason| NothingFound {
        source_name: source.to_owned(),
        reason,
    })
}

/// Decodes a file's bytes (step 1 in the module docs) and parses them.
///
/// # Errors
/// A crash dump rather than text, or nothing to judge.
pub fn analyze_bytes(bytes: &[u8], source: &str) -> Result<Verdict, TextError> {
    let decoded = decode::decode(bytes).map_err(|why| TextError::NotText {
        source_name: source.to_owned(),
        why,
    })?;
    let mut verdict = analyze(&decoded.text, source)?;
    if decoded.replaced {
        verdict.notes.push(format!(
            "parts of the file are not valid {} and were read as U+FFFD",
            match decoded.encoding {
                Encoding::Utf8 | Encoding::Utf8Bom => "UTF-8",
                Encoding::Utf16Le { .. } | Encoding::Utf16Be { .. } => "UTF-16",
            }
        ));
    }
    Ok(verdict)
}

/// What one debugger session said, by recogniser.
#[derive(Debug, Default)]
struct Session {
    bugcheck: bugcheck::Evidence,
    verifier: verifier::Evidence,
    platform: platform::Evidence,
}

impl Session {
    fn finish(&mut self) {
        self.verifier.finish();
        self.platform.finish();
    }

    fn judgeable(&self) -> bool {
        self.bugcheck.any() || self.verifier.seen || !self.verifier.sections.is_empty()
    }
}

/// Reads the text into sessions (step 3 of the module docs).
fn read(text: &str) -> Vec<Session> {
    let mut sessions = vec![Session::default()];
    let mut reader = bugcheck::Reader::default();
    for raw in paste::lines(text) {
        let cleaned = paste::clean(raw);
        let line = cleaned.as_ref();
        // A harness report's copy of the driver's own DbgPrint text: what
        // the driver said, never what the machine did.
        if line
            .trim_start()
            .starts_with(harness_core::render::DEBUG_OUTPUT_MARK)
        {
            continue;
        }
        let obs = reader.line(line);
        let mut current = sessions.last_mut().expect("at least one session");
        let split = match &obs {
            Some(obs) => current.bugcheck.starts_new_session(obs),
            None => current.bugcheck.any() && starts_debugger(line),
        };
        if split {
            current.finish();
            sessions.push(Session::default());
            current = sessions.last_mut().expect("just pushed");
        }
        if let Some(obs) = obs {
            current.bugcheck.apply(obs);
        }
        current.verifier.line(line);
        current.platform.line(line);
    }
    if let Some(last) = sessions.last_mut() {
        last.finish();
    }
    sessions
}

fn starts_debugger(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with("Microsoft (R) Windows Debugger") || t.starts_with("Loading Dump File")
}

/// Sessions that show the same bug check, merged.
#[derive(Debug)]
struct Crash {
    /// The most complete of its sessions' bug checks (the later on a tie).
    best: Option<bugcheck::Resolved>,
    /// Sessions that showed the bug check.
    copies: usize,
    verifier: verifier::Evidence,
    platform: platform::Evidence,
}

impl Crash {
    fn new(resolved: Option<bugcheck::Resolved>, session: Session) -> Self {
        Self {
            copies: usize::from(resolved.is_some()),
            best: resolved,
            verifier: session.verifier,
            platform: session.platform,
        }
    }

    fn add(&mut self, resolved: Option<bugcheck::Resolved>, session: Session) {
        if let Some(resolved) = resolved {
            self.copies += 1;
            let better = self
                .best
                .as_ref()
                .is_none_or(|best| resolved.complete() || !best.complete());
            if better {
                self.best = Some(resolved);
            }
        }
        self.verifier.absorb(session.verifier);
        self.platform.absorb(session.platform);
    }
}

fn crashes(sessions: Vec<Session>) -> (Vec<Crash>, platform::Evidence) {
    let mut crashes: Vec<Crash> = Vec::new();
    let mut everywhere = platform::Evidence::default();
    for session in sessions {
        everywhere.absorb(session.platform.clone());
        let resolved = session.bugcheck.any().then(|| session.bugcheck.resolve());
        let same = match (&resolved, crashes.last()) {
            (None, Some(_)) => true,
            (Some(resolved), Some(last)) => last
                .best
                .as_ref()
                .is_none_or(|best| best.same_crash(resolved)),
            (_, None) => false,
        };
        match crashes.last_mut() {
            Some(last) if same => last.add(resolved, session),
            _ => crashes.push(Crash::new(resolved, session)),
        }
    }
    (crashes, everywhere)
}

/// The crash the verdict is about: the last with a complete bug check,
/// else the last with a code, else the last with anything.
fn pick(crashes: &[Crash]) -> usize {
    let last = |test: &dyn Fn(&bugcheck::Resolved) -> bool| {
        crashes
            .iter()
            .rposition(|crash| crash.best.as_ref().is_some_and(test))
    };
    last(&bugcheck::Resolved::complete)
        .or_else(|| last(&|best| best.code.is_some()))
        .or_else(|| last(&|_| true))
        .unwrap_or_else(|| crashes.len().saturating_sub(1))
}

fn judge(text: &str) -> Result<Verdict, Unjudgeable> {
    let sessions = read(text);
    if !sessions.iter().any(Session::judgeable) {
        return Err(Unjudgeable::NoDebuggerOutput);
    }
    let (crashes, everywhere) = crashes(sessions);
    let (crash, mut notes) = choose(crashes);
    let resolved = match crash.best {
        Some(best) if best.code.is_none() => return Err(Unjudgeable::CodeMissing),
        other => other,
    };
    if let Some(resolved) = &resolved {
        notes.extend(resolved.notes.iter().cloned());
    }
    let mut platform = everywhere;
    platform.absorb(crash.platform);
    let verifier = crash.verifier;

    let (driver, driver_source) = driver(resolved.is_some(), &platform, &verifier);
    if driver_source == DriverSource::Other && verifier.sections.len() > 1 {
        notes.push(format!(
            "nothing says which driver the text is about; judged {driver}, the first the !verifier output lists"
        ));
    }
    let (leaks, listed) = leaks(&verifier, &driver, &mut notes);
    let values: Vec<u64> = resolved
        .iter()
        .flat_map(|resolved| resolved.args.iter().flatten().copied())
        .chain(leaks.iter().map(|leak| leak.address))
        .collect();
    let (arch, arch_note) = platform.arch(resolved.as_ref().and_then(|r| r.digits), &values);
    notes.extend(arch_note);
    let bugcheck = resolved
        .as_ref()
        .map(|resolved| bug_check(resolved, arch, &mut notes));
    if let Some(bugcheck) = &bugcheck {
        outstanding_note(bugcheck, listed.then_some(leaks.len()), &driver, &mut notes);
    }

    let unloaded = bugcheck.as_ref().is_some_and(|b| {
        b.code == nt::DRIVER_VERIFIER_DETECTED_VIOLATION && matches!(b.args[0], 0x60 | 0x62)
    }) || verifier
        .section(&driver)
        .and_then(verifier::Section::unloaded)
        .unwrap_or(false);
    let mut verdict = Verdict::new(driver, Engine::Kd, arch);
    verdict.stage = if unloaded {
        Stage::Unloaded
    } else {
        Stage::Loaded
    };
    verdict.verifier = pool_tracking(&verifier, bugcheck.as_ref(), &mut notes);
    verdict.bugcheck = bugcheck;
    verdict.leaks = leaks;
    verdict.pool_stats = verifier.stats;
    verdict.notes = notes;
    Ok(verdict)
}

/// The crash the verdict is about, and notes on the others and on copies.
fn choose(mut crashes: Vec<Crash>) -> (Crash, Vec<String>) {
    let chosen = pick(&crashes);
    let others: Vec<String> = crashes
        .iter()
        .enumerate()
        .filter(|(index, _)| *index != chosen)
        .filter_map(|(_, crash)| crash.best.as_ref().map(bugcheck::Resolved::describe))
        .collect();
    let crash = crashes.swap_remove(chosen);
    let mut notes = Vec::new();
    if !others.is_empty() {
        notes.push(format!(
            "this text holds more than one bug check; judged: the last complete one; also present: {}",
            others.join("; ")
        ));
    }
    if crash.copies > 1
        && let Some(best) = &crash.best
    {
        notes.push(format!(
            "bug check {} appears {} times (printed again, or the log pasted twice); read once",
            best.describe(),
            crash.copies
        ));
    }
    (crash, notes)
}

/// The driver's outstanding allocations (and whether the text lists them
/// at all); other drivers' listings are named in a note, not counted.
fn leaks(
    verifier: &verifier::Evidence,
    driver: &str,
    notes: &mut Vec<String>,
) -> (Vec<Leak>, bool) {
    let listing = verifier
        .section(driver)
        .filter(|section| section.listed)
        .or_else(|| verifier.unattributed());
    // The global counters speak for the driver only when it is the only one.
    let alone = verifier
        .sections
        .iter()
        .filter(|section| section.listed || section.current.is_some())
        .count()
        <= 1;
    let pool = listing
        .and_then(verifier::Section::pool)
        .or_else(|| alone.then(|| global_pool(verifier)).flatten())
        .unwrap_or(PoolType::Unknown);
    let mut leaks: Vec<Leak> = listing
        .map(|section| section.leaks.clone())
        .unwrap_or_default();
    for leak in &mut leaks {
        leak.pool = pool;
    }
    for section in &verifier.sections {
        if let Some(name) = &section.driver
            && !scan::same_driver(name, driver)
            && section.listed
        {
            notes.push(format!(
                "the !verifier output also lists {name} ({} allocations); not counted for {driver}",
                section.leaks.len()
            ));
        }
    }
    (leaks, listing.is_some())
}

/// 0xC4/0x62's Arg4 against the listing.
fn outstanding_note(
    bugcheck: &BugCheck,
    listed: Option<usize>,
    driver: &str,
    notes: &mut Vec<String>,
) {
    if !bugcheck.is_verifier(nt::c4::LEAKED_AT_UNLOAD) {
        return;
    }
    let outstanding = bugcheck.args[3];
    match listed {
        Some(count) if u64::try_from(count).ok() != Some(outstanding) => notes.push(format!(
            "Arg4 says {outstanding} allocations were not freed; the listing shows {count}"
        )),
        None => notes.push(format!(
            "Arg4 says {outstanding} allocations were not freed; this text does not list them (!verifier 3 {} would)",
            if driver == UNKNOWN { "<driver>.sys" } else { driver }
        )),
        Some(_) => {}
    }
}

/// Whether pool tracking applied: the verify level or flag line when the
/// text prints one, else any sign of the verifier (its output, a 0xC4).
fn pool_tracking(
    verifier: &verifier::Evidence,
    bugcheck: Option<&BugCheck>,
    notes: &mut Vec<String>,
) -> bool {
    let stated = verifier
        .level
        .map(|level| level & 0x8 != 0)
        .or(verifier.pool_tracking);
    if stated == Some(false) {
        notes.push(format!(
            "Driver Verifier is on{} but without pool tracking (0x8): leaks at unload are not checked",
            verifier
                .level
                .map(|level| format!(" (level 0x{level:x})"))
                .unwrap_or_default()
        ));
    }
    stated.unwrap_or_else(|| {
        verifier.seen || bugcheck.is_some_and(|b| b.code == nt::DRIVER_VERIFIER_DETECTED_VIOLATION)
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DriverSource {
    /// `!analyze`'s fields, the stack, a command or statement naming it.
    Named,
    /// Only because it is listed (first) or its code allocated.
    Other,
}

/// The driver the text is about, by the precedence in the module docs.
fn driver(
    bug_check: bool,
    platform: &platform::Evidence,
    verifier: &verifier::Evidence,
) -> (String, DriverSource) {
    let analyze = platform.analyze_driver();
    let stack = platform.stack_driver.clone();
    let named = verifier
        .commands
        .last()
        .cloned()
        .or_else(|| verifier.enabled_for.clone());
    let chosen = if bug_check {
        analyze.or(stack).or(named)
    } else {
        named.or(analyze).or(stack)
    };
    if let Some(name) = chosen {
        // The module list spells the file as it was loaded (`MyDriver.sys`
        // where the command said `Mydriver.sys`).
        let listed = verifier
            .section(&name)
            .and_then(|section| section.driver.clone());
        return (listed.unwrap_or(name), DriverSource::Named);
    }
    let listed = verifier
        .sections
        .iter()
        .find_map(|section| section.driver.clone());
    // A table no line attributes: its callers' module (`eBPFCore!...`).
    let caller = || {
        verifier.unattributed().and_then(|section| {
            section.leaks.iter().find_map(|leak| {
                let (module, _) = leak.caller.split_once('!')?;
                scan::is_module_name(module).then(|| scan::driver_file(module))
            })
        })
    };
    (
        listed.or_else(caller).unwrap_or_else(|| UNKNOWN.into()),
        DriverSource::Other,
    )
}

/// The pool when the global counters show only one kind outstanding.
const fn global_pool(verifier: &verifier::Evidence) -> Option<PoolType> {
    let stats = &verifier.stats;
    match (stats.current_nonpaged.0, stats.current_paged.0) {
        (0, paged) if paged > 0 => Some(PoolType::PagedPool),
        (nonpaged, 0) if nonpaged > 0 => Some(PoolType::NonPagedPool),
        _ => None,
    }
}

/// The verdict's bug check; missing arguments are 0 and said so.
fn bug_check(
    resolved: &bugcheck::Resolved,
    arch: Option<Arch>,
    notes: &mut Vec<String>,
) -> BugCheck {
    let code = resolved.code.unwrap_or_default();
    let missing: Vec<String> = resolved
        .args
        .iter()
        .enumerate()
        .filter(|(_, arg)| arg.is_none())
        .map(|(index, _)| format!("Arg{}", index + 1))
        .collect();
    if !missing.is_empty() {
        notes.push(format!(
            "bug check 0x{code:X}: {} not in the text (shown as 0)",
            missing.join(", ")
        ));
    }
    let mut args = resolved.args.map(Option::unwrap_or_default);
    // BUGCHECK_Pn sign-extends 32-bit values; x86 values are 32 bits.
    if arch == Some(Arch::X86) {
        args = args.map(|arg| arg & 0xffff_ffff);
    }
    BugCheck {
        code,
        args,
        name: resolved
            .name
            .clone()
            .unwrap_or_else(|| nt::bugcheck_name(code).to_owned()),
        // The table's meaning of Arg1 only for an Arg1 the text gives.
        description: resolved
            .arg1_text
            .clone()
            .filter(|text| !text.is_empty())
            .or_else(|| {
                resolved.args[0].map(|_| nt::bugcheck_description(code, args[0]).to_owned())
            })
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Forms the real fixtures do not cover, written by hand in the
    /// debugger's layout: an older `MODULE:` line, tab indentation, a
    /// wrapped row, a tag with a space and new-style `BUGCHECK_P` fields.
    #[test]
    fn module_line_tabs_wrapped_rows_and_new_fields() {
        let text = "BUGCHECK_CODE:  c4\nBUGCHECK_P1: 62\nBUGCHECK_P2: ffffffff86a84ebc\nBUGCHECK_P3: ffffffff86a2d4f8\nBUGCHECK_P4: 2\n\
            MODULE: 0x84f3a1d8 Foo.sys (Loaded and Unloaded)\n\tCurrent Pool Allocations: ( 0x00000002 / 0x00000000 )\n\
            \tPool Allocations:\n\n\tAddress     Length      Tag   Caller\n\t----------  ----------  ----  ----------\n\
            \t0x86491d10  0x00000070  Ntf   0xa05c1047\n\t\tFoo!Init+0x27\n\t0x86491e00  0x00000010  abcd  0xa05c1050  Foo!Init+0x30\n";
        let verdict = analyze(text, "t.txt").expect("parsed");
        assert_eq!(verdict.driver, "Foo.sys");
        assert!(verdict.unloaded());
        let bugcheck = verdict.bugcheck.expect("bug check");
        assert_eq!(
            bugcheck.args,
            [0x62, 0xffff_ffff_86a8_4ebc, 0xffff_ffff_86a2_d4f8, 2]
        );
        assert_eq!(verdict.leaks.len(), 2);
        assert_eq!(verdict.leaks[0].tag, "Ntf");
        assert_eq!(verdict.leaks[0].caller, "Foo!Init+0x27");
        assert_eq!(verdict.leaks[0].pool, PoolType::NonPagedPool);
        assert_eq!(verdict.leaks[1].caller, "Foo!Init+0x30");
    }

    #[test]
    fn bugcheck_line_and_backticks() {
        let text = "BugCheck C4, {62, ffffe000`01b75978, ffffe000`01bd56b0, 5}\n";
        let verdict = analyze(text, "t.txt").expect("parsed");
        assert_eq!(
            verdict.bugcheck.map(|b| b.args),
            Some([0x62, 0xffff_e000_01b7_5978, 0xffff_e000_01bd_56b0, 5])
        );
        assert_eq!(verdict.arch, Some(Arch::X64));
    }

    #[test]
    fn unrelated_text_is_refused() {
        let refused = analyze("hello\nworld\n", "t.txt").unwrap_err();
        assert_eq!(refused.reason, Unjudgeable::NoDebuggerOutput);
    }

    /// Written by hand: the arguments of a bug check and nothing that says
    /// which one. The harness does not guess.
    #[test]
    fn arguments_without_any_code_are_not_guessed() {
        let text = "Arg1: 0000000000000001, something\nArg2: 0000000000000002\nArg3: 0000000000000003\nArg4: 0000000000000004\n";
        assert_eq!(
            analyze(text, "t.txt").unwrap_err().reason,
            Unjudgeable::CodeMissing
        );
    }

    /// Written by hand: two different crashes in one file.
    #[test]
    fn the_last_complete_bug_check_of_several() {
        let text = "*** Fatal System Error: 0x0000007e\n (0xC0000005,0x8C5D1234,0x8A1B2C3D,0x8A1B2A30)\n\
                    SYSTEM_THREAD_EXCEPTION_NOT_HANDLED (7e)\nArg1: c0000005, The exception code\nArg2: 8c5d1234, a\nArg3: 8a1b2c3d, b\nArg4: 8a1b2a30, c\n\
                    *** Fatal System Error: 0x000000c4\n (0x00000062,0x86A84EBC,0x86A2D4F8,0x00000001)\n\
                    DRIVER_VERIFIER_DETECTED_VIOLATION (c4)\nArg1: 00000062, A driver has forgotten\nArg2: 86a84ebc, n\nArg3: 86a2d4f8, v\nArg4: 00000001, t\n\
                    *** Fatal System Error: 0x000000d1\n";
        let verdict = analyze(text, "t.txt").expect("parsed");
        let bugcheck = verdict.bugcheck.as_ref().expect("bug check");
        assert_eq!((bugcheck.code, bugcheck.args[0]), (0xC4, 0x62));
        assert!(
            verdict
                .notes
                .iter()
                .any(|note| note.contains("0x7E") && note.contains("more than one"))
        );
        assert!(verdict.unloaded());
    }
}
