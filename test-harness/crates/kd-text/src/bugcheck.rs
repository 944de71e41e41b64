//! The bug-check recogniser: every place debugger text states a bug check,
//! kept apart by source so that disagreements can be seen and resolved.
//!
//! Sources, as printed:
//! - crash time: the `*** Fatal System Error: 0x000000c4` banner with its
//!   `(a,b,c,d)` line, kd's `BugCheck C4, {a, b, c, d}` on opening a dump,
//!   and `.bugcheck`'s `Bugcheck code` / `Arguments` lines;
//! - `!analyze -v`: the title (`DRIVER_VERIFIER_DETECTED_VIOLATION (c4)`,
//!   `Unknown bugcheck code (19c)`), the `ArgN:` lines, the
//!   `BUGCHECK_CODE`/`BUGCHECK_P1..4` fields (and `Key: Bugcheck.Code.*`),
//!   and the bucket strings `BUGCHECK_STR`/`FAILURE_BUCKET_ID`/
//!   `PRIMARY_PROBLEM_CLASS` (`0xc4_62...`: code and Arg1 only);
//! - the meaning of Arg1's text, for phrases only 0xC4 uses.
//!
//! Precedence, one session at a time ([`Evidence::resolve`]):
//! - code: `BUGCHECK_CODE` > the `!analyze` title > the banner > `BugCheck`
//!   / `.bugcheck` > the bucket strings > Arg1's meaning. `!analyze` reads
//!   the dump's saved bug-check data and is what the user asked for; a
//!   banner in the same text can be left over from an earlier break; the
//!   bucket strings are derived and carry no Arg2..4.
//! - arguments: taken only from sources that agree with the chosen code;
//!   `ArgN:` lines > `BUGCHECK_Pn` > banner > `BugCheck`/`.bugcheck` >
//!   bucket. `ArgN:` prints at the target's pointer width, `BUGCHECK_Pn`
//!   sign-extends 32-bit values.
//! - a source that disagrees is named in a note, never mixed in.

use harness_core::nt;

use super::scan::{self, hex};

/// A bug check stated with all four arguments at crash time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stated {
    pub code: u32,
    pub args: [u64; 4],
    /// Hex digits of the printed arguments (8 on x86, 16 on x64).
    pub digits: usize,
}

/// One thing a line said about a bug check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Obs {
    Banner(Stated),
    Summary(Stated),
    Title {
        name: Option<String>,
        code: u32,
    },
    Arg {
        index: usize,
        value: u64,
        digits: usize,
        text: String,
    },
    ArgText(String),
    Code(u32),
    Param {
        index: usize,
        value: u64,
    },
    Bucket {
        code: u32,
        arg1: Option<u64>,
    },
}

/// Line-to-line state: values printed on the line after their label.
#[derive(Debug, Default)]
pub struct Reader {
    banner_code: Option<u32>,
    dot_bugcheck_code: Option<u32>,
    key_is_code: bool,
    last_arg: Option<usize>,
}

impl Reader {
    /// What `line` says about a bug check, if anything.
    pub fn line(&mut self, line: &str) -> Option<Obs> {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            return None;
        }
        let pending_banner = self.banner_code.take();
        let pending_dot = self.dot_bugcheck_code.take();
        let key_is_code = std::mem::take(&mut self.key_is_code);
        let last_arg = self.last_arg.take();
        if let Some(code) = pending_banner
            && trimmed.starts_with('(')
        {
            return banner_args(code, trimmed).map(Obs::Banner);
        }
        if let Some(code) = pending_dot
            && let Some(rest) = trimmed.strip_prefix("Arguments ")
        {
            let values: Vec<&str> = rest.split_whitespace().collect();
            if let [a, b, c, d] = values.as_slice()
                && let (Some(a), Some(b), Some(c), Some(d)) = (hex(a), hex(b), hex(c), hex(d))
            {
                let digits = scan::digits(values[0]);
                return Some(Obs::Summary(Stated {
                    code,
                    args: [a, b, c, d],
                    digits,
                }));
            }
        }
        if key_is_code && let Some(value) = trimmed.strip_prefix("Value:") {
            return code32(value).map(Obs::Code);
        }
        // Arg1's text may go on over indented lines (DdiMon's 0x91).
        if last_arg == Some(0) && line.starts_with([' ', '\t']) && !trimmed.starts_with("Type ") {
            self.last_arg = Some(0);
            return Some(Obs::ArgText(trimmed.to_owned()));
        }
        if let Some(rest) = scan::field(trimmed, "*** Fatal System Error:") {
            let code = code32(rest.split_whitespace().next().unwrap_or(""))?;
            // The arguments follow on the same line or the next one.
            if let Some(at) = rest.find('(') {
                return banner_args(code, &rest[at..]).map(Obs::Banner);
            }
            self.banner_code = Some(code);
            return None;
        }
        if let Some(rest) = trimmed.strip_prefix("BugCheck ") {
            // `BugCheck C4, {62, ffffe00001b75978, ffffe00001bd56b0, 5}`
            let (code, args) = rest.split_once(',')?;
            let digits = scan::digits(args.trim().trim_start_matches('{').split(',').next()?);
            return Some(Obs::Summary(Stated {
                code: code32(code)?,
                args: scan::four(args)?,
                digits,
            }));
        }
        if let Some(rest) = trimmed.strip_prefix("Bugcheck code ") {
            self.dot_bugcheck_code = code32(rest);
            return None;
        }
        if let Some((index, value, text, digits)) = arg_line(trimmed) {
            self.last_arg = Some(index);
            return Some(Obs::Arg {
                index,
                value,
                digits,
                text: text.to_owned(),
            });
        }
        if let Some(obs) = fields(trimmed) {
            return Some(obs);
        }
        if trimmed.starts_with("Key") && trimmed.contains("Bugcheck.Code.") {
            self.key_is_code = true;
            return None;
        }
        title(trimmed)
    }
}

/// `(0x00000062,0x86A84EBC,0x86A2D4F8,0x00000001)` after a banner.
fn banner_args(code: u32, text: &str) -> Option<Stated> {
    let args = scan::four(text)?;
    let digits = scan::digits(text.trim().trim_start_matches('(').split(',').next()?);
    Some(Stated { code, args, digits })
}

fn code32(text: &str) -> Option<u32> {
    hex(text).and_then(|code| u32::try_from(code).ok())
}

/// `Arg1: 0000000000000062, A driver has forgotten ...` -> (0, 0x62, text, 16).
fn arg_line(line: &str) -> Option<(usize, u64, &str, usize)> {
    let rest = line.strip_prefix("Arg")?;
    let (number, rest) = rest.split_once(':')?;
    let index = match number.trim() {
        "1" => 0,
        "2" => 1,
        "3" => 2,
        "4" => 3,
        _ => return None,
    };
    let (value, text) = rest.split_once(',').unwrap_or((rest, ""));
    let value = value.trim();
    Some((index, hex(value)?, text.trim(), scan::digits(value)))
}

/// `BUGCHECK_CODE:  c4`, `BUGCHECK_P2: ffffffff86a84ebc`, `BUGCHECK_STR:  0xc4_62`,
/// `FAILURE_BUCKET_ID:  0xc4_62_VRF_LEAKED_POOL_IMAGE_x.sys`.
fn fields(line: &str) -> Option<Obs> {
    if let Some(value) = scan::field(line, "BUGCHECK_CODE:") {
        return code32(scan::first_word(value)?).map(Obs::Code);
    }
    for (index, label) in [
        "BUGCHECK_P1:",
        "BUGCHECK_P2:",
        "BUGCHECK_P3:",
        "BUGCHECK_P4:",
    ]
    .iter()
    .enumerate()
    {
        if let Some(value) = scan::field(line, label) {
            return Some(Obs::Param {
                index,
                value: hex(scan::first_word(value)?)?,
            });
        }
    }
    for label in [
        "BUGCHECK_STR:",
        "FAILURE_BUCKET_ID:",
        "PRIMARY_PROBLEM_CLASS:",
    ] {
        if let Some(value) = scan::field(line, label) {
            // `0xc4_62`, `0xC4_62_VRF_...`, `0xD1`; a blog may cut it after `0xc4_`.
            let value = scan::first_word(value)?;
            let value = value
                .strip_prefix("0x")
                .or_else(|| value.strip_prefix("0X"))?;
            let mut parts = value.split('_');
            let code = code32(parts.next()?)?;
            let arg1 = parts.next().and_then(hex);
            return Some(Obs::Bucket { code, arg1 });
        }
    }
    None
}

/// `DRIVER_VERIFIER_DETECTED_VIOLATION (c4)`, `Unknown bugcheck code (19c)`,
/// and a title wrapped in markdown emphasis (`_SYSTEM_SERVICE_EXCEPTION (3b)`).
fn title(line: &str) -> Option<Obs> {
    let line = line.trim_matches(['_', '*']);
    let (name, rest) = line.rsplit_once(" (")?;
    let code = code32(rest.strip_suffix(')')?)?;
    if name.trim() == "Unknown bugcheck code" {
        return Some(Obs::Title { name: None, code });
    }
    let plausible = name.len() >= 4
        && name.len() <= 80
        && name.bytes().next().is_some_and(|b| b.is_ascii_uppercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'_' || b.is_ascii_digit());
    plausible.then(|| Obs::Title {
        name: Some(name.to_owned()),
        code,
    })
}

/// The bug-check code an Arg1 text implies, for phrases `!analyze` prints
/// only under 0xC4 (others, like "memory referenced", are shared by several
/// codes and prove nothing).
fn arg1_meaning(text: &str) -> Option<u32> {
    const C4_ONLY: [&str; 7] = [
        "forgotten to free its pool allocations",
        "trying to allocate zero bytes",
        "freeing a bad pool address",
        "Referencing user handle as KernelMode",
        "forgot to call EtwUnregister",
        "Code Integrity Issue",
        "switched stacks using a method",
    ];
    C4_ONLY
        .iter()
        .any(|phrase| text.contains(phrase))
        .then_some(nt::DRIVER_VERIFIER_DETECTED_VIOLATION)
}

/// Everything one session said about its bug check, by source.
#[derive(Debug, Default, Clone)]
pub struct Evidence {
    banner: Option<Stated>,
    summary: Option<Stated>,
    title: Option<(Option<String>, u32)>,
    args: [Option<u64>; 4],
    arg_digits: Option<usize>,
    arg1_text: Option<String>,
    code: Option<u32>,
    params: [Option<u64>; 4],
    bucket: Option<(u32, Option<u64>)>,
}

impl Evidence {
    /// Whether anything was said.
    pub fn any(&self) -> bool {
        self.crash_time() || self.analysis()
    }

    const fn crash_time(&self) -> bool {
        self.banner.is_some() || self.summary.is_some()
    }

    fn analysis(&self) -> bool {
        self.title.is_some()
            || self.code.is_some()
            || self.bucket.is_some()
            || self.args.iter().chain(&self.params).any(Option::is_some)
    }

    /// Whether `obs` belongs to another session: a second banner after an
    /// analysis, a second `!analyze` title, or a field seen again with a
    /// different value. A line repeated with the same value (the debugger
    /// printing a banner twice, a duplicated `Arg3:` line) stays.
    pub(crate) fn starts_new_session(&self, obs: &Obs) -> bool {
        match obs {
            Obs::Banner(stated) => {
                self.analysis()
                    || self.summary.is_some()
                    || self.banner.is_some_and(|banner| banner != *stated)
            }
            Obs::Summary(stated) => {
                self.summary.is_some_and(|summary| summary != *stated)
                    || self
                        .code
                        .or_else(|| self.title.as_ref().map(|(_, code)| *code))
                        .is_some_and(|code| code != stated.code)
            }
            Obs::Title { .. } => {
                self.title.is_some() || self.code.is_some() || self.args.iter().any(Option::is_some)
            }
            Obs::Arg { index, value, .. } => self.args[*index].is_some_and(|seen| seen != *value),
            Obs::Code(code) => self.code.is_some_and(|seen| seen != *code),
            Obs::Param { index, value } => self.params[*index].is_some_and(|seen| seen != *value),
            Obs::ArgText(_) | Obs::Bucket { .. } => false,
        }
    }

    /// Records `obs`.
    pub fn apply(&mut self, obs: Obs) {
        match obs {
            Obs::Banner(stated) => self.banner = Some(stated),
            Obs::Summary(stated) => self.summary = Some(stated),
            Obs::Title { name, code } => self.title = Some((name, code)),
            Obs::Arg {
                index,
                value,
                digits,
                text,
            } => {
                self.args[index] = Some(value);
                self.arg_digits.get_or_insert(digits);
                if index == 0 && !text.is_empty() {
                    self.arg1_text = Some(text);
                }
            }
            Obs::ArgText(more) => {
                if let Some(text) = &mut self.arg1_text {
                    text.push(' ');
                    text.push_str(&more);
                }
            }
            Obs::Code(code) => self.code = Some(code),
            Obs::Param { index, value } => self.params[index] = Some(value),
            Obs::Bucket { code, arg1 } => {
                // The first bucket string is BUGCHECK_STR, the most literal.
                if self.bucket.is_none() {
                    self.bucket = Some((code, arg1));
                }
            }
        }
    }

    /// The session's bug check by the precedence in the module docs.
    pub fn resolve(&self) -> Resolved {
        let mut sources: Vec<Source> = Vec::new();
        let analyze_code = self
            .code
            .or_else(|| self.title.as_ref().map(|(_, code)| *code));
        let analyze_args: [Option<u64>; 4] =
            std::array::from_fn(|i| self.args[i].or(self.params[i]));
        if analyze_code.is_some() || analyze_args.iter().any(Option::is_some) {
            sources.push(Source {
                what: "!analyze",
                code: analyze_code,
                args: analyze_args,
            });
        }
        for (what, stated) in [
            ("the Fatal System Error banner", self.banner),
            ("kd's BugCheck line", self.summary),
        ] {
            if let Some(stated) = stated {
                sources.push(Source {
                    what,
                    code: Some(stated.code),
                    args: stated.args.map(Some),
                });
            }
        }
        if let Some((code, arg1)) = self.bucket {
            sources.push(Source {
                what: "the bucket string (BUGCHECK_STR)",
                code: Some(code),
                args: [arg1, None, None, None],
            });
        }
        if let Some(code) = self.arg1_text.as_deref().and_then(arg1_meaning) {
            sources.push(Source {
                what: "Arg1's text",
                code: Some(code),
                args: [None; 4],
            });
        }
        let mut notes = Vec::new();
        // `!analyze` fields can disagree among themselves.
        if let (Some(field), Some((_, titled))) = (self.code, &self.title)
            && field != *titled
        {
            notes.push(format!(
                "!analyze's title says bug check 0x{titled:X} but its BUGCHECK_CODE says 0x{field:X}; following BUGCHECK_CODE"
            ));
        }
        let chosen = sources.iter().find_map(|source| source.code);
        let mut args: [Option<(u64, &str)>; 4] = [None; 4];
        if let Some(code) = chosen {
            let chosen_what = chosen_source(&sources, code);
            for source in &sources {
                // Analyze's arguments without a code of their own go with
                // the chosen code only when nothing contradicts them.
                if source.code.is_some_and(|own| own != code) {
                    notes.push(format!(
                        "{} says bug check 0x{:X}{}, but {chosen_what} says 0x{code:X}; following {chosen_what}",
                        capitalised(source.what),
                        source.code.unwrap_or_default(),
                        shown(&source.args),
                    ));
                    continue;
                }
                for (index, value) in source.args.iter().enumerate() {
                    match (args[index], value) {
                        (None, Some(value)) => args[index] = Some((*value, source.what)),
                        (Some((kept, from)), Some(value)) if !same_value(kept, *value) => {
                            notes.push(format!(
                                "{} gives Arg{} = 0x{value:x}, but {from} gives 0x{kept:x}; following {from}",
                                capitalised(source.what),
                                index + 1,
                            ));
                        }
                        _ => {}
                    }
                }
            }
        }
        let args = args.map(|arg| arg.map(|(value, _)| value));
        let name = self
            .title
            .as_ref()
            .filter(|(_, titled)| Some(*titled) == chosen)
            .and_then(|(name, _)| name.clone());
        let digits = self
            .arg_digits
            .or_else(|| self.banner.map(|b| b.digits))
            .or_else(|| self.summary.map(|s| s.digits));
        Resolved {
            code: chosen,
            args,
            name,
            arg1_text: self
                .arg1_text
                .clone()
                .filter(|_| self.args[0].is_some() && self.args[0] == args[0]),
            digits,
            notes,
        }
    }
}

/// One source of a bug check.
struct Source {
    what: &'static str,
    code: Option<u32>,
    args: [Option<u64>; 4],
}

fn chosen_source(sources: &[Source], code: u32) -> &'static str {
    sources
        .iter()
        .find(|source| source.code == Some(code))
        .map_or("the text", |source| source.what)
}

fn capitalised(what: &str) -> String {
    let mut chars = what.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn shown(args: &[Option<u64>; 4]) -> String {
    let known: Vec<String> = args
        .iter()
        .map(|arg| arg.map_or_else(|| "?".to_owned(), |value| format!("0x{value:x}")))
        .collect();
    if args.iter().all(Option::is_none) {
        String::new()
    } else {
        format!(" ({})", known.join(", "))
    }
}

/// Equal, or equal once a 32-bit value is sign-extended (`BUGCHECK_P2:
/// ffffffff86a84ebc` against `Arg2: 86a84ebc` on x86).
pub fn same_value(a: u64, b: u64) -> bool {
    let extend =
        |v: u64| u32::try_from(v).map_or(v, |low| i64::from(low.cast_signed()).cast_unsigned());
    a == b || extend(a) == extend(b)
}

/// A session's bug check after precedence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    pub code: Option<u32>,
    pub args: [Option<u64>; 4],
    /// The `!analyze` title's name, when the title agrees with the code.
    pub name: Option<String>,
    /// Arg1's description, when it belongs to the chosen Arg1.
    pub arg1_text: Option<String>,
    /// Digits the arguments were printed with.
    pub digits: Option<usize>,
    pub notes: Vec<String>,
}

impl Resolved {
    /// Code and all four arguments known.
    pub fn complete(&self) -> bool {
        self.code.is_some() && self.args.iter().all(Option::is_some)
    }

    /// Whether two sessions show the same crash: same code, and no known
    /// argument differs.
    pub(crate) fn same_crash(&self, other: &Self) -> bool {
        self.code == other.code
            && self.args.iter().zip(&other.args).all(|pair| match pair {
                (Some(a), Some(b)) => same_value(*a, *b),
                _ => true,
            })
    }

    /// `0xC4 (0x62, 0x86a84ebc, ...)` for notes.
    pub fn describe(&self) -> String {
        let code = self
            .code
            .map_or_else(|| "with no code".to_owned(), |code| format!("0x{code:X}"));
        format!("{code}{}", shown(&self.args))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Evidence {
        let mut reader = Reader::default();
        let mut evidence = Evidence::default();
        for line in text.lines() {
            if let Some(obs) = reader.line(line) {
                evidence.apply(obs);
            }
        }
        evidence
    }

    /// Written by hand: a banner whose code disagrees with `!analyze`.
    #[test]
    fn analyze_wins_over_a_disagreeing_banner_and_says_so() {
        let resolved = read(
            "*** Fatal System Error: 0x000000d1\n   (0x00000008,0x00000002,0x00000000,0x8c5d1234)\n\
             DRIVER_VERIFIER_DETECTED_VIOLATION (c4)\nArg1: 00000062, A driver has forgotten\n\
             Arg2: 86a84ebc, name\nArg3: 86a2d4f8, x\nArg4: 00000001, total\nBUGCHECK_CODE:  c4\n",
        )
        .resolve();
        assert_eq!(resolved.code, Some(0xC4));
        assert_eq!(
            resolved.args,
            [Some(0x62), Some(0x86a8_4ebc), Some(0x86a2_d4f8), Some(1)]
        );
        assert_eq!(
            resolved.name.as_deref(),
            Some("DRIVER_VERIFIER_DETECTED_VIOLATION")
        );
        assert_eq!(resolved.notes.len(), 1, "{:?}", resolved.notes);
        assert!(resolved.notes[0].contains("banner says bug check 0xD1"));
    }

    /// Written by hand: `ArgN:` lines without a title take the code from
    /// the banner, from a bucket string cut short, or from Arg1's meaning;
    /// with none of them there is no code.
    #[test]
    fn arguments_without_a_title() {
        let args = "Arg1: 0000000000000062, A driver has forgotten to free its pool allocations prior t\n\
                    Arg2: fffffadfcebce290, name\nArg3: fffffadfcebce1f0, v\nArg4: 0000000000000004, t\n";
        assert_eq!(read(args).resolve().code, Some(0xC4));
        let plain = args.replace(
            "A driver has forgotten to free its pool allocations prior t",
            "x",
        );
        let resolved = read(&plain).resolve();
        assert_eq!(resolved.code, None);
        let with_bucket = format!("{plain}BUGCHECK_STR: 0xc4_\n");
        assert_eq!(read(&with_bucket).resolve().code, Some(0xC4));
    }

    /// Written by hand: `ArgN:` lines with no title, and a banner that
    /// gives the code; a differing argument is named with both sources.
    #[test]
    fn arguments_take_the_banners_code() {
        let args = "Arg1: 00000062, A\nArg2: 86a84ebc, n\nArg3: 86a2d4f8, v\nArg4: 00000001, t\n";
        let banner =
            "*** Fatal System Error: 0x000000c4\n (0x00000062,0x86A84EBC,0x86A2D4F8,0x00000001)\n";
        let resolved = read(&format!("{banner}{args}")).resolve();
        assert!(resolved.complete());
        assert!(resolved.notes.is_empty(), "{:?}", resolved.notes);
        let resolved = read(&format!(
            "{}{args}",
            banner.replace("0x00000001)", "0x00000002)")
        ))
        .resolve();
        assert_eq!(resolved.args[3], Some(1));
        assert_eq!(
            resolved.notes,
            [
                "The Fatal System Error banner gives Arg4 = 0x2, but !analyze gives 0x1; following !analyze"
            ]
        );
    }

    #[test]
    fn dot_bugcheck_and_key_value_forms() {
        let resolved = read(
            "Bugcheck code 00000050\nArguments ffffb288402043fa 0000000000000000 fffff80c42651285 0000000000000002\n",
        )
        .resolve();
        assert_eq!(resolved.code, Some(0x50));
        assert!(resolved.complete());
        let keyed = read("    Key  : Bugcheck.Code.LegacyAPI\n    Value: 0xd1\n").resolve();
        assert_eq!(keyed.code, Some(0xD1));
    }

    #[test]
    fn sign_extended_parameters_agree_with_narrow_arguments() {
        assert!(same_value(0x86a8_4ebc, 0xffff_ffff_86a8_4ebc));
        assert!(!same_value(0x86a8_4ebc, 0x86a8_4ebd));
        let resolved =
            read("Arg2: 86a84ebc, name\nBUGCHECK_P2: ffffffff86a84ebc\nBUGCHECK_CODE: c4\n")
                .resolve();
        assert!(resolved.notes.is_empty(), "{:?}", resolved.notes);
        assert_eq!(resolved.args[1], Some(0x86a8_4ebc));
    }
}
