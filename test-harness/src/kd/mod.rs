//! `harness analyze`: real debugger output (WinDbg or kd) turned into the same
//! Verdict the emulators give. Reads the "*** Fatal System Error" banner,
//! `!analyze -v` (new `BUGCHECK_CODE`/`BUGCHECK_P1..4` and old `BUGCHECK_STR`
//! forms, `ArgN:` lines, `BugCheck C4, {...}`) and `!verifier 3 <driver>`
//! (its counters and the Pool Allocations table, with `Caller` or
//! `Caller Address` headers, x86 or x64 addresses, wrapped lines).

use crate::arch::Arch;
use crate::nt::{self, PoolType};
use crate::verdict::{BugCheck, Engine, Leak, PoolStats, Stage, Verdict};

/// The text is not debugger output the harness can read.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: no bug check, !analyze -v or !verifier output found")]
pub struct NothingFound {
    /// Where the text came from.
    pub source_name: String,
}

/// Parses debugger text into a verdict (engine `kd`).
///
/// # Errors
/// The text holds no bug check, `!analyze` or `!verifier` output.
pub fn analyze(text: &str, source: &str) -> Result<Verdict, NothingFound> {
    let text = normalize(text);
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Found::default();
    for (index, line) in lines.iter().enumerate() {
        found.line(line, lines.get(index + 1).copied());
    }
    found.leaks = leak_table(&lines);
    found.into_verdict(source)
}

/// Debuggers print 64-bit values with a backtick between the halves
/// (fffff803\`569c53e1) and lines may end in `\r`; both would get in the way.
fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    for (index, &c) in chars.iter().enumerate() {
        let between_hex = index > 0
            && chars[index - 1].is_ascii_hexdigit()
            && chars.get(index + 1).is_some_and(char::is_ascii_hexdigit);
        if (c == '`' && between_hex) || c == '\r' {
            continue;
        }
        out.push(c);
    }
    out
}

/// What the lines say, before deciding which source wins.
#[derive(Default)]
struct Found {
    /// `BUGCHECK_CODE` / `BUGCHECK_P1..4` (newest debuggers).
    code_new: Option<u32>,
    params_new: [Option<u64>; 4],
    /// `DRIVER_VERIFIER_DETECTED_VIOLATION (c4)` and `ArgN:` lines.
    analyze_name: Option<(String, u32)>,
    analyze_args: [Option<u64>; 4],
    arg1_text: Option<String>,
    /// `*** Fatal System Error: 0x000000c4 (a,b,c,d)` or `BugCheck C4, {a, b, c, d}`.
    banner: Option<(u32, [u64; 4])>,
    /// `BUGCHECK_STR: 0xc4_62` (old debuggers): code and Arg1 only.
    bugcheck_str: Option<(u32, u64)>,
    /// Hex digits of `ArgN:` or banner values: 8 on x86, 16 on x64.
    arg_digits: Option<usize>,
    driver: Option<String>,
    unloaded: bool,
    pointer64: Option<bool>,
    stats: PoolStats,
    /// Per driver: current allocations (nonpaged, paged).
    current_by_pool: Option<(u64, u64)>,
    saw_verifier: bool,
    leaks: Vec<Leak>,
}

impl Found {
    #[allow(clippy::too_many_lines)]
    fn line(&mut self, raw: &str, next: Option<&str>) {
        let line = raw.trim();
        if let Some(rest) = line
            .split_once("*** Fatal System Error:")
            .map(|(_, rest)| rest)
        {
            let code = hex(rest.split_whitespace().next().unwrap_or(""));
            // The arguments follow on the same line or the next one.
            let args_text = rest.find('(').map_or_else(
                || next.unwrap_or("").trim().to_owned(),
                |at| rest[at..].to_owned(),
            );
            if let (Some(code), Some(args)) = (code, four(&args_text, ',')) {
                let first = args_text
                    .trim_start_matches('(')
                    .split(',')
                    .next()
                    .unwrap_or("");
                self.arg_digits
                    .get_or_insert(first.trim().trim_start_matches("0x").len());
                self.banner = Some((u32::try_from(code).unwrap_or(u32::MAX), args));
            }
        } else if let Some(rest) = line.strip_prefix("BugCheck ") {
            // `BugCheck C4, {62, ffffe00001b75978, ffffe00001bd56b0, 5}`
            if let Some((code, args)) = rest.split_once(',')
                && let (Some(code), Some(args)) = (hex(code), four(args, ','))
            {
                self.banner
                    .get_or_insert((u32::try_from(code).unwrap_or(u32::MAX), args));
            }
        } else if let Some(value) = field(line, "BUGCHECK_CODE:") {
            self.code_new = hex(value).and_then(|code| u32::try_from(code).ok());
        } else if let Some((index, value)) =
            (1..=4).find_map(|n| field(line, &format!("BUGCHECK_P{n}:")).map(|v| (n - 1, v)))
        {
            self.params_new[index] = hex(value);
        } else if let Some(value) = field(line, "BUGCHECK_STR:") {
            // `0xc4_62`, or `0xC4_62_VRF_...`
            let mut parts = value
                .trim_start_matches("0x")
                .trim_start_matches("0X")
                .split('_');
            if let (Some(code), Some(arg1)) =
                (parts.next().and_then(hex), parts.next().and_then(hex))
            {
                self.bugcheck_str = Some((u32::try_from(code).unwrap_or(u32::MAX), arg1));
            }
        } else if let Some(value) =
            field(line, "PRIMARY_PROBLEM_CLASS:").or_else(|| field(line, "FAILURE_BUCKET_ID:"))
        {
            // `0xc4_62_VRF_LEAKED_POOL_IMAGE_echosrv.sys`
            let mut parts = value.trim_start_matches("0x").split('_');
            if let (Some(code), Some(arg1)) =
                (parts.next().and_then(hex), parts.next().and_then(hex))
            {
                self.bugcheck_str
                    .get_or_insert((u32::try_from(code).unwrap_or(u32::MAX), arg1));
            }
        } else if let Some((n, value, text)) = arg_line(line) {
            self.analyze_args[n] = Some(value);
            if let Some(digits) = line
                .split_once(':')
                .map(|(_, rest)| rest.trim().split(',').next().unwrap_or("").len())
            {
                self.arg_digits = Some(digits);
            }
            if n == 0 && !text.is_empty() {
                self.arg1_text = Some(text.to_owned());
            }
        } else if let Some((name, code)) = analyze_title(line) {
            self.analyze_name = Some((name, code));
        } else if let Some(value) = field(line, "IMAGE_NAME:") {
            self.driver = Some(value.to_owned());
        } else if let Some(value) = field(line, "MODULE_NAME:") {
            self.driver.get_or_insert_with(|| format!("{value}.sys"));
        } else if let Some(rest) = line
            .split_once("nt!_VF_TARGET_DRIVER")
            .map(|(_, rest)| rest)
        {
            // `nt!_VF_TARGET_DRIVER 0xa013f2c8: Sample.sys (Loaded and Unloaded)`
            self.saw_verifier = true;
            if let Some((_, after)) = rest.split_once(':') {
                self.target_driver(after);
            }
        } else if let Some(rest) = line.strip_prefix("MODULE:") {
            // `MODULE: 0x84f3a1d8 Sample.sys (Loaded and Unloaded)` (older debuggers)
            self.saw_verifier = true;
            let rest = rest.trim();
            let rest = rest
                .split_once(char::is_whitespace)
                .filter(|(first, _)| hex(first).is_some())
                .map_or(rest, |(_, after)| after);
            self.target_driver(rest);
        } else if let Some(rest) = line
            .split_once("!verifier ")
            .filter(|_| !line.starts_with("Type !verifier")) // !analyze's hint, not a command
            .map(|(_, rest)| rest)
        {
            self.saw_verifier = true;
            if let Some(driver) = rest
                .split_whitespace()
                .find(|word| word.to_ascii_lowercase().ends_with(".sys"))
            {
                self.driver.get_or_insert_with(|| driver.to_owned());
            }
        } else if line.contains("ptr64 TRUE") {
            self.pointer64 = Some(true);
        } else if line.contains("ptr64 FALSE") {
            self.pointer64 = Some(false);
        } else if let Some(value) = field(line, "OSPLATFORM_TYPE:") {
            self.pointer64 = Some(value.contains("64"));
        } else if let Some((label, value)) = counter(line) {
            self.saw_verifier = true;
            let stats = &mut self.stats;
            match label {
                "Pool Allocations Attempted" => stats.attempted = value.0,
                "Pool Allocations Succeeded" => stats.succeeded = value.0,
                "Pool Allocations Failed" => stats.failed = value.0,
                "Pool Allocations With NO TAG" => stats.no_tag = value.0,
                "Current paged pool allocations" => stats.current_paged = value,
                "Peak paged pool allocations" => stats.peak_paged = value,
                "Current nonpaged pool allocations" => stats.current_nonpaged = value,
                "Peak nonpaged pool allocations" => stats.peak_nonpaged = value,
                _ => {}
            }
        } else if let Some(rest) = field(line, "Current Pool Allocations:") {
            // `( 0x00000000 / 0x00000001 )`: NonPagedPool / PagedPool
            let inner = rest.trim_matches(|c| c == '(' || c == ')' || c == ' ');
            if let Some((nonpaged, paged)) = inner.split_once('/')
                && let (Some(nonpaged), Some(paged)) = (hex(nonpaged.trim()), hex(paged.trim()))
            {
                self.current_by_pool = Some((nonpaged, paged));
            }
        }
    }

    fn target_driver(&mut self, text: &str) {
        let text = text.trim();
        if let Some(name) = text.split_whitespace().next() {
            self.driver.get_or_insert_with(|| name.to_owned());
        }
        if text.contains("Unloaded") {
            self.unloaded = true;
        }
    }

    fn bugcheck(&self) -> Option<BugCheck> {
        let complete = |args: [Option<u64>; 4]| -> Option<[u64; 4]> {
            Some([args[0]?, args[1]?, args[2]?, args[3]?])
        };
        // ArgN lines first: they print values at the target's pointer width
        // (BUGCHECK_Pn sign-extends 32-bit ones).
        let (code, args) = if let (Some((_, code)), Some(args)) =
            (&self.analyze_name, complete(self.analyze_args))
        {
            (*code, args)
        } else if let (Some(code), Some(args)) = (self.code_new, complete(self.params_new)) {
            (code, args)
        } else if let Some((code, args)) = self.banner {
            (code, args)
        } else if let Some((code, arg1)) = self.bugcheck_str {
            (code, [arg1, 0, 0, 0])
        } else {
            let (_, code) = self.analyze_name.as_ref()?;
            (*code, [self.analyze_args[0].unwrap_or(0), 0, 0, 0])
        };
        let (table_name, table_text) = (
            nt::bugcheck_name(code).to_owned(),
            nt::bugcheck_description(code, args[0]).to_owned(),
        );
        let name = self
            .analyze_name
            .as_ref()
            .filter(|(_, named)| *named == code)
            .map_or(table_name, |(name, _)| name.clone());
        let description = self
            .arg1_text
            .clone()
            .filter(|_| self.analyze_args[0] == Some(args[0]))
            .unwrap_or(table_text);
        Some(BugCheck {
            code,
            args,
            name,
            description,
        })
    }

    fn arch(&self, bugcheck: Option<&BugCheck>) -> Option<Arch> {
        if let Some(wide) = self.pointer64 {
            return Some(if wide { Arch::X64 } else { Arch::X86 });
        }
        match self.arg_digits {
            Some(8) => return Some(Arch::X86),
            Some(16) => return Some(Arch::X64),
            _ => {}
        }
        let values = bugcheck
            .map(|b| b.args.to_vec())
            .unwrap_or_default()
            .into_iter()
            .chain(self.leaks.iter().map(|leak| leak.address));
        let mut any = false;
        for value in values {
            any = true;
            if value > u64::from(u32::MAX) {
                return Some(Arch::X64);
            }
        }
        // Only 32-bit values seen: an x86 target (x64 kernel addresses are wider).
        (any && (self.leaks.iter().any(|leak| leak.address != 0)
            || bugcheck.is_some_and(|b| b.args[1] != 0)))
        .then_some(Arch::X86)
    }

    fn into_verdict(mut self, source: &str) -> Result<Verdict, NothingFound> {
        let mut bugcheck = self.bugcheck();
        if bugcheck.is_none() && !self.saw_verifier && self.leaks.is_empty() {
            return Err(NothingFound {
                source_name: source.to_owned(),
            });
        }
        // The table does not say which pool; the per-driver counters can.
        let pool = match self.current_by_pool {
            Some((0, paged)) if paged > 0 => PoolType::PagedPool,
            Some((nonpaged, 0)) if nonpaged > 0 => PoolType::NonPagedPool,
            _ if self.stats.current_nonpaged.0 == 0 && self.stats.current_paged.0 > 0 => {
                PoolType::PagedPool
            }
            _ if self.stats.current_paged.0 == 0 && self.stats.current_nonpaged.0 > 0 => {
                PoolType::NonPagedPool
            }
            _ => PoolType::Unknown,
        };
        for leak in &mut self.leaks {
            leak.pool = pool;
        }
        let arch = self.arch(bugcheck.as_ref());
        if arch == Some(Arch::X86)
            && let Some(bugcheck) = &mut bugcheck
        {
            bugcheck.args = bugcheck.args.map(|arg| arg & 0xffff_ffff);
        }
        let unloaded = self.unloaded
            || bugcheck
                .as_ref()
                .is_some_and(|b| b.is_verifier(nt::c4::LEAKED_AT_UNLOAD));
        let mut verdict = Verdict::new(
            self.driver.unwrap_or_else(|| "unknown".into()),
            Engine::Kd,
            arch,
        );
        // Without a sign of the unload, the driver is still loaded (or the
        // text does not say): nothing was judged at unload.
        verdict.stage = if unloaded {
            Stage::Unloaded
        } else {
            Stage::Loaded
        };
        verdict.verifier = self.saw_verifier
            || bugcheck
                .as_ref()
                .is_some_and(|b| b.code == nt::DRIVER_VERIFIER_DETECTED_VIOLATION);
        verdict.bugcheck = bugcheck;
        verdict.leaks = self.leaks;
        verdict.pool_stats = self.stats;
        Ok(verdict)
    }
}

/// A hex number, with or without `0x`, as the debugger prints them.
fn hex(text: &str) -> Option<u64> {
    let text = text.trim().trim_end_matches(',');
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// Four hex values inside `(...)` or `{...}`, separated by `separator`.
fn four(text: &str, separator: char) -> Option<[u64; 4]> {
    let inner = text
        .trim()
        .trim_start_matches(['(', '{'])
        .split([')', '}'])
        .next()?;
    let values: Vec<u64> = inner.split(separator).map(hex).collect::<Option<_>>()?;
    values.try_into().ok()
}

/// `LABEL: value` (any spacing).
fn field<'a>(line: &'a str, label: &str) -> Option<&'a str> {
    line.strip_prefix(label).map(str::trim)
}

/// `Arg1: 0000000000000062, A driver has forgotten ...` -> (0, 0x62, text).
fn arg_line(line: &str) -> Option<(usize, u64, &str)> {
    let rest = line.strip_prefix("Arg")?;
    let (number, rest) = rest.split_once(':')?;
    let index = number
        .trim()
        .parse::<usize>()
        .ok()?
        .checked_sub(1)
        .filter(|index| *index < 4)?;
    let (value, text) = rest.split_once(',').unwrap_or((rest, ""));
    Some((index, hex(value)?, text.trim()))
}

/// `DRIVER_VERIFIER_DETECTED_VIOLATION (c4)`.
fn analyze_title(line: &str) -> Option<(String, u32)> {
    let (name, rest) = line.split_once(" (")?;
    let code = rest.strip_suffix(')')?;
    if name.len() < 4
        || !name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'_' || b.is_ascii_digit())
    {
        return None;
    }
    Some((name.to_owned(), u32::try_from(hex(code)?).ok()?))
}

/// `Pool Allocations Attempted   0x3` or
/// `Current paged pool allocations   0x1 for 00000070 bytes`.
fn counter(line: &str) -> Option<(&str, (u64, u64))> {
    let labels = [
        "Pool Allocations Attempted",
        "Pool Allocations Succeeded SpecialPool",
        "Pool Allocations Succeeded",
        "Pool Allocations With NO TAG",
        "Pool Allocations Failed",
        "Current paged pool allocations",
        "Peak paged pool allocations",
        "Current nonpaged pool allocations",
        "Peak nonpaged pool allocations",
    ];
    let label = labels.iter().find(|label| line.starts_with(*label))?;
    let mut words = line[label.len()..].split_whitespace();
    let count = hex(words.next()?)?;
    let bytes = match (words.next(), words.next()) {
        (Some("for"), Some(bytes)) => hex(bytes)?,
        _ => 0,
    };
    Some((label, (count, bytes)))
}

/// The rows of every Pool Allocations table: Address, Length, Tag, Caller.
fn leak_table(lines: &[&str]) -> Vec<Leak> {
    let mut leaks = Vec::new();
    let mut in_table = false;
    let mut index = 0;
    while index < lines.len() {
        let line = lines[index].trim();
        let is_header = line.contains("Address") && line.contains("Length") && line.contains("Tag");
        if is_header {
            in_table = true;
        } else if in_table && !line.is_empty() && !line.starts_with("---") {
            match table_row(line) {
                Some(mut leak) => {
                    // A wrapped row: the symbol, or caller and symbol, on the next line.
                    if let Some(next) = lines.get(index + 1).map(|next| next.trim())
                        && !next.is_empty()
                        && table_row(next).is_none()
                        && !next.contains("kd>")
                        && !next.starts_with("Contiguous")
                        && leak.caller.is_empty()
                    {
                        let mut words = next.split_whitespace();
                        if leak.caller_address.is_none() {
                            leak.caller_address = words.clone().next().and_then(hex);
                            if leak.caller_address.is_some() {
                                words.next();
                            }
                        }
                        leak.caller = words.collect::<Vec<_>>().join(" ");
                        index += 1;
                    }
                    if leak.caller.is_empty() {
                        leak.caller = leak
                            .caller_address
                            .map(|at| format!("0x{at:x}"))
                            .unwrap_or_default();
                    }
                    leaks.push(leak);
                }
                None => in_table = false,
            }
        }
        index += 1;
    }
    leaks
}

/// `0x86491d10  0x00000070  abcd  0xa05c1047  Sample!DriverEntry+0x27`
fn table_row(line: &str) -> Option<Leak> {
    let (address, rest) = line.split_once(char::is_whitespace)?;
    if !address.starts_with("0x") && address.len() < 8 {
        return None;
    }
    let address = hex(address)?;
    let rest = rest.trim_start();
    let (length, rest) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let bytes = hex(length)?;
    // The tag is four characters and may contain spaces ("Ntf ").
    let rest = rest
        .strip_prefix(' ')
        .unwrap_or(rest)
        .trim_start_matches(' ');
    let tag: String = rest.chars().take(4).collect();
    let rest = rest.get(tag.len()..).unwrap_or("").trim();
    let mut words = rest.split_whitespace();
    let caller_address = words.clone().next().and_then(hex);
    if caller_address.is_some() {
        words.next();
    }
    Some(Leak {
        address,
        bytes,
        tag: tag.trim_end().to_owned(),
        pool: PoolType::Unknown,
        caller: words.collect::<Vec<_>>().join(" "),
        caller_address,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Forms the real fixtures do not cover, written out as the debugger
    /// prints them: an older `MODULE:` line, tab indentation, a wrapped row,
    /// a tag with a space and new-style `BUGCHECK_P` fields.
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
        assert!(analyze("hello\nworld\n", "t.txt").is_err());
    }
}
