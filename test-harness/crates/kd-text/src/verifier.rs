//! The verifier recogniser: `!verifier` output in its forms, kept per
//! driver so that one driver's allocations are never charged to another.
//!
//! Forms read:
//! - the command (`kd> !verifier 3 Sample.sys`, `!Verifier 3 x.sys`), which
//!   names the driver the following output is about;
//! - `Verify Flags Level 0x...` / `Verify Level 9bb ...` and the
//!   `[X] (0x00000008) Pool tracking` line: whether pool tracking is on;
//! - the global counters (`Pool Allocations Attempted 0x3`, `Current paged
//!   pool allocations 0x1 for 00000070 bytes`);
//! - per-driver sections, started by `nt!_VF_TARGET_DRIVER 0x...: X.sys
//!   (Loaded and Unloaded)`, `MODULE: 0x... X.sys (Loaded)`, a row of the
//!   Windows 7 list under `Entry State NonPagedPool PagedPool Module`,
//!   `dt nt!_MI_VERIFIER_DRIVER_ENTRY` output (`BaseName`, `Loads`,
//!   `Unloads`, `Current...PoolAllocations`), or `verifier /query`'s
//!   `Name: x.sys, loads: 1, unloads: 1`;
//! - per-driver counters: `Current Pool Allocations: ( np / p )` and the
//!   Windows 7 `Current Pool Allocations  np    p` (columns in the order
//!   of the `Entry` header: nonpaged, then paged);
//! - the allocation tables: `Address Length Tag Caller` (or `Caller
//!   Address`; rows `0x86491d10  0x00000070  abcd  0xa05c1047  Sample!...`,
//!   possibly wrapped) and the Windows 7 `PoolAddress SizeInBytes Tag
//!   CallersAddress` (rows `fffff9800157efc0  0x0000003c  Vprt
//!   fffff88002c62963`).
//!
//! A table belongs to the section it is printed under; without one, to
//! the driver the command named; without that, to no driver. A new table
//! for a section replaces its earlier listing (the latest listing is the
//! state of the pool), and an address is never listed twice.

use harness_core::nt::PoolType;
use harness_core::verdict::{Leak, PoolStats};

use super::scan::{self, hex};

/// A driver's load state as the module line prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleState {
    Loaded,
    Unloaded,
    LoadedAndUnloaded,
}

/// One driver's part of the output.
#[derive(Debug, Clone, Default)]
pub struct Section {
    /// The driver, or `None` for a table no line attributes.
    pub driver: Option<String>,
    pub state: Option<ModuleState>,
    /// Current allocations: (nonpaged, paged).
    pub current: Option<(u64, u64)>,
    pub loads: Option<u64>,
    pub unloads: Option<u64>,
    /// The latest allocation table's rows.
    pub leaks: Vec<Leak>,
    /// Whether an allocation table was printed for it.
    pub listed: bool,
}

impl Section {
    /// Whether the section says the image was unloaded.
    pub fn unloaded(&self) -> Option<bool> {
        if let Some(state) = self.state {
            return Some(state != ModuleState::Loaded);
        }
        match (self.loads, self.unloads) {
            (Some(loads), Some(unloads)) if loads > 0 => Some(unloads >= loads),
            _ => None,
        }
    }

    /// The pool the listed allocations came from, when the counters show
    /// only one kind.
    pub fn pool(&self) -> Option<PoolType> {
        match self.current? {
            (0, paged) if paged > 0 => Some(PoolType::PagedPool),
            (nonpaged, 0) if nonpaged > 0 => Some(PoolType::NonPagedPool),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    /// `Address Length Tag Caller`.
    Current,
    /// Windows 7's `PoolAddress SizeInBytes Tag CallersAddress`.
    Win7,
}

/// What one session's `!verifier` output said.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// Any sign of the verifier: output, a command, a statement.
    pub seen: bool,
    /// The verify level (flags), when printed.
    pub level: Option<u64>,
    /// Whether the pool tracking flag line is checked.
    pub pool_tracking: Option<bool>,
    pub stats: PoolStats,
    pub stats_seen: bool,
    /// Drivers named by `!verifier` commands, in order.
    pub commands: Vec<String>,
    /// `Driver Verifier: Enabled for X.sys on Build ...`.
    pub enabled_for: Option<String>,
    pub sections: Vec<Section>,
    // Reading state.
    current: Option<usize>,
    table: Option<Table>,
    pending: Option<(usize, Leak)>,
    module_list: bool,
    command_driver: Option<String>,
    dt_section: Option<usize>,
}

impl Evidence {
    /// Reads one line.
    pub fn line(&mut self, line: &str) {
        let t = line.trim();
        if let Some((section, mut leak)) = self.pending.take() {
            if continues_row(t) {
                let mut words = t.split_whitespace();
                if leak.caller_address.is_none() {
                    leak.caller_address = words.clone().next().and_then(hex);
                    if leak.caller_address.is_some() {
                        words.next();
                    }
                }
                leak.caller = words.collect::<Vec<_>>().join(" ");
                self.push_leak(section, leak);
                return;
            }
            self.push_leak(section, leak);
        }
        if t.is_empty() {
            return;
        }
        if !t.starts_with("+0x") {
            self.dt_section = None;
        }
        if let Some(Command { driver }) = command(t) {
            self.seen = true;
            self.table = None;
            self.current = None;
            self.module_list = false;
            if let Some(driver) = &driver {
                self.commands.push(driver.clone());
            }
            self.command_driver = driver;
            return;
        }
        if let Some(rest) = scan::field(t, "Driver Verifier: Enabled for") {
            self.seen = true;
            self.enabled_for = scan::first_word(rest).map(str::to_owned);
            return;
        }
        if self.flags(t) || self.module_line(t) || self.table_header(t) {
            return;
        }
        if let Some(kind) = self.table {
            if t.starts_with("---") {
                return;
            }
            match row(t, kind) {
                Some(leak) => {
                    let section = self.target_section();
                    if kind == Table::Current && leak.caller.is_empty() {
                        self.pending = Some((section, leak));
                    } else {
                        self.push_leak(section, leak);
                    }
                    return;
                }
                None => self.table = None,
            }
        }
        self.counters(t);
    }

    /// Ends the session: a row still waiting for its wrapped caller is kept.
    pub fn finish(&mut self) {
        if let Some((section, leak)) = self.pending.take() {
            self.push_leak(section, leak);
        }
        self.table = None;
    }

    /// The section for `driver` (case and `.sys` ignored).
    pub fn section(&self, driver: &str) -> Option<&Section> {
        self.sections.iter().rev().find(|section| {
            section
                .driver
                .as_deref()
                .is_some_and(|name| scan::same_driver(name, driver))
        })
    }

    /// Rows no line attributes to a driver.
    pub(crate) fn unattributed(&self) -> Option<&Section> {
        self.sections
            .iter()
            .find(|section| section.driver.is_none() && section.listed)
    }

    /// Takes in a later session's output about the same crash: its
    /// sections replace same-named ones (the latest listing wins).
    pub(crate) fn absorb(&mut self, later: Self) {
        self.seen |= later.seen;
        self.level = later.level.or(self.level);
        self.pool_tracking = later.pool_tracking.or(self.pool_tracking);
        if later.stats_seen {
            self.stats = later.stats;
            self.stats_seen = true;
        }
        self.commands.extend(later.commands);
        self.enabled_for = later.enabled_for.or_else(|| self.enabled_for.take());
        for section in later.sections {
            let same =
                self.sections
                    .iter_mut()
                    .find(|kept| match (&kept.driver, &section.driver) {
                        (Some(a), Some(b)) => scan::same_driver(a, b),
                        (None, None) => true,
                        _ => false,
                    });
            match same {
                Some(kept) => {
                    kept.state = section.state.or(kept.state);
                    kept.current = section.current.or(kept.current);
                    kept.loads = section.loads.or(kept.loads);
                    kept.unloads = section.unloads.or(kept.unloads);
                    if section.listed {
                        kept.leaks = section.leaks;
                        kept.listed = true;
                    }
                }
                None => self.sections.push(section),
            }
        }
    }

    fn push_leak(&mut self, section: usize, mut leak: Leak) {
        if leak.caller.is_empty() {
            leak.caller = leak
                .caller_address
                .map(|at| format!("0x{at:x}"))
                .unwrap_or_default();
        }
        let leaks = &mut self.sections[section].leaks;
        if !leaks.iter().any(|kept| kept.address == leak.address) {
            leaks.push(leak);
        }
    }

    /// The section rows go to: the one printed above them, else the
    /// command's driver, else none.
    fn target_section(&mut self) -> usize {
        if let Some(index) = self.current {
            return index;
        }
        let driver = self.command_driver.clone();
        let index = self.find_or_add(driver);
        self.current = Some(index);
        index
    }

    fn find_or_add(&mut self, driver: Option<String>) -> usize {
        let found = self
            .sections
            .iter()
            .rposition(|section| match (&section.driver, &driver) {
                (Some(a), Some(b)) => scan::same_driver(a, b),
                (None, None) => true,
                _ => false,
            });
        found.unwrap_or_else(|| {
            self.sections.push(Section {
                driver,
                ..Section::default()
            });
            self.sections.len() - 1
        })
    }

    /// `Verify Flags Level`, `Verify Level`, the pool tracking flag line and
    /// the headings.
    fn flags(&mut self, t: &str) -> bool {
        if let Some(rest) = t
            .strip_prefix("Verify Flags Level")
            .or_else(|| t.strip_prefix("Verify Level"))
        {
            self.seen = true;
            self.level = rest.split_whitespace().next().and_then(hex);
            return true;
        }
        if t.ends_with("(0x00000008) Pool tracking") {
            self.pool_tracking = Some(t.starts_with("[X]"));
            return true;
        }
        if t == "All pool allocations checked on unload" {
            self.pool_tracking = Some(true);
            return true;
        }
        if t.starts_with("Summary of All Verifier Statistics")
            || t.trim_start_matches('#').trim() == "Driver Verification List"
        {
            self.seen = true;
            return true;
        }
        false
    }

    /// A line that starts a driver's section.
    fn module_line(&mut self, t: &str) -> bool {
        if let Some((_, rest)) = t.split_once("nt!_VF_TARGET_DRIVER") {
            // `nt!_VF_TARGET_DRIVER 0xa013f2c8: Sample.sys (Loaded and Unloaded)`
            if let Some((_, after)) = rest.split_once(':') {
                self.start_section(after);
            }
            return true;
        }
        if let Some(rest) = t.strip_prefix("MODULE:") {
            // `MODULE: 0x84226b28 MyDriver.sys (Loaded)` (older debuggers)
            let rest = rest.trim();
            let rest = rest
                .split_once(char::is_whitespace)
                .filter(|(first, _)| hex(first).is_some())
                .map_or(rest, |(_, after)| after);
            self.start_section(rest);
            return true;
        }
        if t.starts_with("Entry") && t.contains("NonPagedPool") && t.ends_with("Module") {
            self.seen = true;
            self.module_list = true;
            return true;
        }
        if self.module_list
            && let Some((driver, state)) = win7_entry(t)
        {
            let index = self.find_or_add(Some(driver));
            self.sections[index].state = Some(state);
            self.current = Some(index);
            self.table = None;
            return true;
        }
        if t.contains("_MI_VERIFIER_DRIVER_ENTRY") && t.contains("dt ") {
            // `dt nt!_MI_VERIFIER_DRIVER_ENTRY <address>`: fields follow, the
            // name among them.
            self.seen = true;
            self.sections.push(Section::default());
            self.dt_section = Some(self.sections.len() - 1);
            return true;
        }
        if let Some(rest) = t.strip_prefix("Name:")
            && rest.contains("loads:")
        {
            // `verifier /query`: `Name: sample.sys, loads: 1, unloads: 1`
            self.seen = true;
            let mut parts = rest.split(',');
            let driver = parts.next().unwrap_or("").trim().to_owned();
            let index = self.find_or_add(Some(driver));
            for part in parts {
                if let Some((label, value)) = part.split_once(':') {
                    let value = value.trim().parse::<u64>().ok();
                    match label.trim() {
                        "loads" => self.sections[index].loads = value,
                        "unloads" => self.sections[index].unloads = value,
                        _ => {}
                    }
                }
            }
            self.current = Some(index);
            return true;
        }
        false
    }

    fn start_section(&mut self, text: &str) {
        self.seen = true;
        let text = text.trim();
        let Some(name) = text.split_whitespace().next() else {
            return;
        };
        let index = self.find_or_add(Some(name.to_owned()));
        self.sections[index].state = Some(module_state(text));
        self.current = Some(index);
        self.table = None;
    }

    fn table_header(&mut self, t: &str) -> bool {
        let kind = if t.contains("PoolAddress") && t.contains("SizeInBytes") {
            Table::Win7
        } else if t.contains("Address")
            && t.contains("Length")
            && t.contains("Tag")
            && t.contains("Caller")
        {
            Table::Current
        } else {
            return false;
        };
        self.seen = true;
        let section = self.target_section();
        let section = &mut self.sections[section];
        // A new listing: the pool as it is now.
        section.leaks.clear();
        section.listed = true;
        self.table = Some(kind);
        true
    }

    fn counters(&mut self, t: &str) {
        if let Some(index) = self.dt_section
            && let Some(field) = t.strip_prefix("+0x")
        {
            self.dt_field(index, field);
            return;
        }
        if let Some(rest) = t.strip_prefix("Current Pool Allocations") {
            if let Some(index) = self.current {
                self.sections[index].current = pair(rest);
            }
            return;
        }
        if let Some(index) = self.current {
            for (label, paged) in [
                ("CurrentPagedPoolAllocations:", true),
                ("CurrentNonPagedPoolAllocations:", false),
            ] {
                if let Some(value) = t
                    .strip_prefix(label)
                    .and_then(|v| v.trim().parse::<u64>().ok())
                {
                    set_current(&mut self.sections[index], paged, value);
                    return;
                }
            }
        }
        if let Some((label, value)) = counter(t) {
            self.seen = true;
            self.stats_seen = true;
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
        }
    }

    /// A `dt nt!_MI_VERIFIER_DRIVER_ENTRY` field: `010 Loads : 9`.
    fn dt_field(&mut self, index: usize, field: &str) {
        let Some((name, value)) = field
            .split_once(char::is_whitespace)
            .and_then(|(_, rest)| rest.split_once(':'))
        else {
            return;
        };
        let value = value.trim();
        let number = || {
            hex(value)
                .filter(|_| value.starts_with("0x"))
                .or_else(|| value.parse().ok())
        };
        let section = &mut self.sections[index];
        match name.trim() {
            "BaseName" => {
                section.driver = value
                    .split('"')
                    .nth(1)
                    .filter(|name| scan::is_module_name(name))
                    .map(str::to_owned);
            }
            "Loads" => section.loads = number(),
            "Unloads" => section.unloads = number(),
            "CurrentPagedPoolAllocations" => {
                if let Some(value) = number() {
                    set_current(section, true, value);
                }
            }
            "CurrentNonPagedPoolAllocations" => {
                if let Some(value) = number() {
                    set_current(section, false, value);
                }
            }
            _ => {}
        }
    }
}

fn set_current(section: &mut Section, paged: bool, value: u64) {
    let (nonpaged, paged_now) = section.current.unwrap_or((0, 0));
    section.current = Some(if paged {
        (nonpaged, value)
    } else {
        (value, paged_now)
    });
}

/// A `!verifier` command line.
#[derive(Debug, PartialEq, Eq)]
struct Command {
    /// The driver it names (`!verifier 3 Sample.sys`).
    driver: Option<String>,
}

fn command(t: &str) -> Option<Command> {
    let lower_start = t.get(..9).map(str::to_ascii_lowercase);
    let rest = if lower_start.as_deref() == Some("!verifier") {
        &t[9..]
    } else {
        let (_, after) = t.split_once("kd>")?;
        let after = after.trim_start();
        if !after.get(..9)?.eq_ignore_ascii_case("!verifier") {
            return None;
        }
        &after[9..]
    };
    if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let driver = rest
        .split_whitespace()
        .skip(1)
        .find(|word| hex(word).is_none() && scan::is_module_name(word))
        .map(str::to_owned);
    Some(Command { driver })
}

fn module_state(text: &str) -> ModuleState {
    if text.contains("Loaded and Unloaded") {
        ModuleState::LoadedAndUnloaded
    } else if text.contains("Unloaded") {
        ModuleState::Unloaded
    } else {
        ModuleState::Loaded
    }
}

/// `fffffa8003b6f670 Loaded           000000a0       00000854    videoprt.sys`
fn win7_entry(t: &str) -> Option<(String, ModuleState)> {
    let words: Vec<&str> = t.split_whitespace().collect();
    let [entry, middle @ .., nonpaged, paged, module] = words.as_slice() else {
        return None;
    };
    scan::address_column(entry)?;
    hex(nonpaged)?;
    hex(paged)?;
    let state = middle.join(" ");
    if !state.contains("Loaded") && !state.contains("Unloaded") {
        return None;
    }
    scan::is_module_name(module).then(|| ((*module).to_owned(), module_state(&state)))
}

/// `( 0x00000003 / 0x00000000 )` or `  00000002    00000013`: (nonpaged, paged).
fn pair(text: &str) -> Option<(u64, u64)> {
    let inner = text.trim_start_matches(':').trim().trim_matches(['(', ')']);
    let (nonpaged, paged) = if let Some((a, b)) = inner.split_once('/') {
        (a.trim(), b.trim())
    } else {
        let mut words = inner.split_whitespace();
        (words.next()?, words.next()?)
    };
    Some((hex(nonpaged)?, hex(paged)?))
}

/// `Pool Allocations Attempted   0x3` or
/// `Current paged pool allocations   0x1 for 00000070 bytes`.
fn counter(line: &str) -> Option<(&'static str, (u64, u64))> {
    const LABELS: [&str; 9] = [
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
    let label = LABELS.iter().find(|label| line.starts_with(*label))?;
    let mut words = line[label.len()..].split_whitespace();
    let count = hex(words.next()?)?;
    let bytes = match (words.next(), words.next()) {
        (Some("for"), Some(bytes)) => hex(bytes)?,
        _ => 0,
    };
    Some((label, (count, bytes)))
}

/// The line after a row with no caller symbol carries it (or the caller
/// address and the symbol).
fn continues_row(t: &str) -> bool {
    !t.is_empty()
        && row(t, Table::Current).is_none()
        && !t.contains("kd>")
        && !t.starts_with("Contiguous")
        && !t.starts_with("---")
        && t.split_whitespace().count() <= 2
}

/// One table row.
fn row(t: &str, kind: Table) -> Option<Leak> {
    let (address, rest) = t.split_once(char::is_whitespace)?;
    let address = match kind {
        Table::Current if address.starts_with("0x") || address.len() >= 8 => hex(address)?,
        Table::Win7 => scan::address_column(address)
            .or_else(|| hex(address).filter(|_| address.starts_with("0x")))?,
        Table::Current => return None,
    };
    let rest = rest.trim_start();
    let (length, rest) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let bytes = hex(length)?;
    // The tag is four characters and may end in spaces ("Ntf ").
    let rest = rest
        .strip_prefix(' ')
        .unwrap_or(rest)
        .trim_start_matches(' ');
    let tag: String = rest.chars().take(4).collect();
    if tag.is_empty() {
        return None;
    }
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

    fn read(text: &str) -> Evidence {
        let mut evidence = Evidence::default();
        for line in text.lines() {
            evidence.line(line);
        }
        evidence.finish();
        evidence
    }

    /// Written by hand in the debugger's layout: two drivers' sections; each
    /// keeps its own rows.
    #[test]
    fn two_drivers_stay_apart() {
        let evidence = read(
            "kd> !verifier 3\n\
             nt!_VF_TARGET_DRIVER 0xa013f2c8: Sample.sys (Loaded and Unloaded)\n\
             \tCurrent Pool Allocations: ( 0x00000000 / 0x00000001 )\n\
             \tAddress     Length      Tag   Caller\n\
             \t0x86491d10  0x00000070  abcd  0xa05c1047  Sample!DriverEntry+0x27\n\
             nt!_VF_TARGET_DRIVER 0xa013f3c8: Other.sys (Loaded)\n\
             \tAddress     Length      Tag   Caller\n\
             \t0x86491e00  0x00000010  othr  0xa06c1047  Other!Init+0x10\n",
        );
        let sample = evidence.section("sample").expect("Sample.sys");
        assert_eq!(sample.leaks.len(), 1);
        assert_eq!(sample.pool(), Some(PoolType::PagedPool));
        assert_eq!(sample.unloaded(), Some(true));
        let other = evidence.section("OTHER.SYS").expect("Other.sys");
        assert_eq!(other.leaks[0].tag, "othr");
        assert_eq!(other.unloaded(), Some(false));
    }

    /// Written by hand: the same listing twice lists each address once.
    #[test]
    fn a_repeated_listing_replaces_the_earlier_one() {
        let listing = "kd> !verifier 3 Sample.sys\n\
                       \tAddress     Length      Tag   Caller\n\
                       \t0x86491d10  0x00000070  abcd  0xa05c1047  Sample!DriverEntry+0x27\n";
        let evidence = read(&format!("{listing}{listing}"));
        assert_eq!(
            evidence.section("Sample.sys").expect("section").leaks.len(),
            1
        );
    }

    #[test]
    fn verifier_query_counters() {
        let evidence =
            read("Name: sample.sys, loads: 1, unloads: 1\nCurrentPagedPoolAllocations: 1\n");
        let section = evidence.section("Sample.sys").expect("section");
        assert_eq!(section.unloaded(), Some(true));
        assert_eq!(section.current, Some((0, 1)));
    }

    #[test]
    fn commands_name_their_driver() {
        let named = |name: &str| {
            Some(Command {
                driver: Some(name.into()),
            })
        };
        assert_eq!(
            command("1: kd> !verifier 3 Sample.sys"),
            named("Sample.sys")
        );
        assert_eq!(
            command("20: kd> !Verifier 3 netebpfext.sys"),
            named("netebpfext.sys")
        );
        assert_eq!(
            command("2: kd> !verifier 0xf"),
            Some(Command { driver: None })
        );
        assert_eq!(command("Type !verifier 3 drivername.sys for info"), None);
        assert_eq!(command("!verifiers"), None);
    }
}
