//! Driver Verifier's pool tracking (flag 0x8), applied to a driver's events.
//! This is the one place the rules live; every engine feeds it.
//!
//! Rules, after Microsoft's bug check 0xC4 documentation:
//! - a zero-byte allocation: 0xC4 / 0x00;
//! - freeing an address no allocation returned: 0xC4 / 0x10;
//! - freeing pool already freed: 0xC4 / 0x13;
//! - allocations outstanding when the image unloads (after the unload routine,
//!   or after a failed DriverEntry): 0xC4 / 0x62, Arg4 = their count;
//! - a crash in the driver: the bug check the kernel would raise
//!   (0x50 for a bad kernel address, else 0x7E with the exception code).

use std::collections::{BTreeMap, HashSet};

use crate::arch::Arch;
use crate::events::{Event, RunError};
use crate::failure::{Failure, Result};
use crate::symbols::Symbolizer;
use crate::verdict::{
    DRIVER_VERIFIER_DETECTED_VIOLATION, Fault, Leak, Outcome, PoolHit, PoolStats, Verdict,
    bugcheck, is_paged, pool_type_name, tag_text,
};

/// Exception codes the kernel reports in 0x7E.
const STATUS_ACCESS_VIOLATION: u64 = 0xC000_0005;
const STATUS_ILLEGAL_INSTRUCTION: u64 = 0xC000_001D;
const STATUS_BREAKPOINT: u64 = 0x8000_0003;

/// What the tracker needs besides the events.
pub struct Context<'a> {
    /// The driver's file name.
    pub driver: String,
    /// Engine name for the verdict.
    pub engine: String,
    /// Names for addresses inside the driver.
    pub symbols: &'a Symbolizer,
    /// The driver's architecture.
    pub arch: Arch,
    /// nt!PoolHitTag: record a break on every allocation and free with this tag.
    pub pool_hit_tag: Option<u32>,
}

struct Allocation {
    bytes: u64,
    tag: u32,
    pool: String,
    caller: u64,
}

#[derive(Default)]
struct Pool {
    live: BTreeMap<u64, Allocation>,
    order: Vec<u64>,
    freed: HashSet<u64>,
    stats: PoolStats,
}

impl Pool {
    fn adjust(&mut self, pool: &str, bytes: u64, add: bool) {
        let (current, peak) = if is_paged(pool) {
            (&mut self.stats.current_paged, &mut self.stats.peak_paged)
        } else {
            (
                &mut self.stats.current_nonpaged,
                &mut self.stats.peak_nonpaged,
            )
        };
        if add {
            current.0 += 1;
            current.1 += bytes;
            peak.0 = peak.0.max(current.0);
            peak.1 = peak.1.max(current.1);
        } else {
            current.0 = current.0.saturating_sub(1);
            current.1 = current.1.saturating_sub(bytes);
        }
    }
}

/// Judges a driver's events the way Driver Verifier's pool tracking would.
///
/// # Errors
/// The engine reported that it could not run the driver (missing tool, an API
/// it does not implement, bad input): there is nothing to judge.
#[allow(clippy::too_many_lines)]
pub fn judge(events: &[Event], context: &Context<'_>) -> Result<Verdict> {
    let arch = context.arch;
    let mut verdict = Verdict {
        driver: context.driver.clone(),
        engine: context.engine.clone(),
        arch: Some(arch),
        entry_status: None,
        unloaded: false,
        outcome: Outcome::EntryDidNotReturn,
        bugcheck: None,
        leaks: Vec::new(),
        debug_output: Vec::new(),
        pool_stats: PoolStats::default(),
        fault: None,
        pool_hits: Vec::new(),
        notes: Vec::new(),
    };
    let mut pool = Pool::default();
    let mut text = String::new();
    // Engines may report the driver object last; bug check 0x62 needs it.
    let name_address = events
        .iter()
        .find_map(|event| match event {
            Event::DriverObject { name_address, .. } => Some(*name_address),
            _ => None,
        })
        .unwrap_or(0);
    let mut entry_returned = false;
    let mut unload_expected = false;

    for event in events {
        if verdict.bugcheck.is_some() {
            break; // the machine has stopped
        }
        match event {
            Event::AdapterError { message, .. } => return Err(Failure::new(message.clone())),
            Event::Load { .. } | Event::End | Event::DriverObject { .. } => {}
            Event::DebugPrint { text: printed, .. } => text.push_str(printed),
            Event::Alloc {
                api,
                pool: pool_type,
                size,
                tag,
                address,
                caller,
                injected_failure,
                ..
            } => {
                pool.stats.attempted += 1;
                if *size == 0 {
                    verdict.bugcheck = Some(bugcheck(
                        DRIVER_VERIFIER_DETECTED_VIOLATION,
                        [0x00, 0, u64::from(*pool_type), 0],
                    ));
                    continue;
                }
                if *address == 0 {
                    pool.stats.failed += 1;
                    if *injected_failure {
                        verdict.notes.push(format!(
                            "allocation {} ({api}, 0x{size:x} bytes, tag '{}') was made to fail",
                            pool.stats.attempted,
                            tag_text(*tag)
                        ));
                    }
                } else {
                    pool.stats.succeeded += 1;
                    if *tag == 0 || *tag == u32::from_le_bytes(*b"None") {
                        pool.stats.no_tag += 1;
                    }
                    let pool_name = pool_type_name(*pool_type);
                    pool.adjust(&pool_name, *size, true);
                    pool.freed.remove(address);
                    pool.order.push(*address);
                    pool.live.insert(
                        *address,
                        Allocation {
                            bytes: *size,
                            tag: *tag,
                            pool: pool_name,
                            caller: *caller,
                        },
                    );
                }
                if context.pool_hit_tag == Some(*tag) {
                    verdict.pool_hits.push(PoolHit {
                        api: api.clone(),
                        address: *address,
                        bytes: Some(*size),
                        caller: context.symbols.name(*caller),
                        after_debug_lines: text.matches('\n').count(),
                    });
                }
            }
            Event::Free {
                api,
                address,
                tag,
                caller,
                ..
            } => {
                let hit_tag = pool
                    .live
                    .get(address)
                    .map(|allocation| allocation.tag)
                    .or(*tag);
                if let Some(allocation) = pool.live.remove(address) {
                    pool.adjust(&allocation.pool, allocation.bytes, false);
                    pool.freed.insert(*address);
                    if let Some(given) = tag
                        && *given != allocation.tag
                    {
                        verdict.notes.push(format!(
                            "{} freed 0x{address:x} with tag '{}' but it was allocated with '{}'",
                            context.symbols.name(*caller),
                            tag_text(*given),
                            tag_text(allocation.tag)
                        ));
                    }
                } else if pool.freed.contains(address) {
                    let header = address.saturating_sub(arch.pool_granularity());
                    verdict.bugcheck = Some(bugcheck(
                        DRIVER_VERIFIER_DETECTED_VIOLATION,
                        [0x13, 0, header, 0],
                    ));
                } else {
                    verdict.bugcheck = Some(bugcheck(
                        DRIVER_VERIFIER_DETECTED_VIOLATION,
                        [0x10, *address, 0, 0],
                    ));
                }
                if hit_tag.is_some() && context.pool_hit_tag == hit_tag {
                    verdict.pool_hits.push(PoolHit {
                        api: api.clone(),
                        address: *address,
                        bytes: None,
                        caller: context.symbols.name(*caller),
                        after_debug_lines: text.matches('\n').count(),
                    });
                }
            }
            Event::Bugcheck { code, args, .. } => verdict.bugcheck = Some(bugcheck(*code, *args)),
            Event::EntryReturn {
                status,
                error,
                unload_routine,
            } => {
                entry_returned = true;
                if let Some(error) = error {
                    crash(&mut verdict, error, context)?;
                    continue;
                }
                verdict.entry_status = *status;
                let failed = status.is_none_or(|status| status & 0x8000_0000 != 0);
                if failed {
                    // The I/O manager unloads the image without calling the
                    // unload routine; the verifier still checks for leaks.
                    verdict.outcome = Outcome::EntryFailed;
                    verdict.unloaded = true;
                    check_leaks(&mut verdict, &pool, name_address, context);
                } else if *unload_routine == 0 {
                    verdict.outcome = Outcome::CannotUnload;
                } else {
                    unload_expected = true;
                    verdict.outcome = Outcome::UnloadDidNotReturn;
                }
            }
            Event::UnloadReturn { error } => {
                if let Some(error) = error {
                    crash(&mut verdict, error, context)?;
                    continue;
                }
                if unload_expected {
                    verdict.unloaded = true;
                    verdict.outcome = Outcome::Unloaded;
                    check_leaks(&mut verdict, &pool, name_address, context);
                }
            }
        }
    }
    if !entry_returned && verdict.bugcheck.is_none() {
        verdict.outcome = Outcome::EntryDidNotReturn;
    }
    if verdict.bugcheck.is_some() {
        // `unloaded` stays as it was: a 0x62 bug check comes after the unload.
        verdict.outcome = Outcome::BugCheck;
    }
    verdict.debug_output = text.lines().map(str::to_owned).collect();
    verdict.pool_stats = pool.stats;
    Ok(verdict)
}

fn check_leaks(verdict: &mut Verdict, pool: &Pool, name_address: u64, context: &Context<'_>) {
    verdict.leaks = pool
        .order
        .iter()
        .filter_map(|address| {
            let allocation = pool.live.get(address)?;
            Some(Leak {
                address: *address,
                bytes: allocation.bytes,
                tag: tag_text(allocation.tag),
                pool: allocation.pool.clone(),
                caller: context.symbols.name(allocation.caller),
                caller_address: Some(allocation.caller),
            })
        })
        .collect();
    // `order` may name an address twice if it was freed and reallocated.
    verdict.leaks.dedup_by_key(|leak| leak.address);
    if !verdict.leaks.is_empty() {
        let count = u64::try_from(verdict.leaks.len()).unwrap_or(u64::MAX);
        verdict.bugcheck = Some(bugcheck(
            DRIVER_VERIFIER_DETECTED_VIOLATION,
            [0x62, name_address, 0, count],
        ));
    }
}

/// Turns an emulator run error into the bug check the kernel would raise.
fn crash(verdict: &mut Verdict, error: &RunError, context: &Context<'_>) -> Result<()> {
    let kind = error.kind.to_ascii_lowercase();
    if kind.contains("unsupported_api") {
        let api = error.api.clone().unwrap_or_else(|| "an API".into());
        let site = error
            .caller
            .map(|caller| format!(" (called from {})", context.symbols.name(caller)))
            .unwrap_or_default();
        return Err(Failure::new(format!(
            "{} calls {api}{site}, which the {} engine does not implement; the run cannot be judged",
            context.driver, context.engine
        )));
    }
    if kind.contains("max_api_count") {
        verdict.outcome = Outcome::EntryDidNotReturn;
        verdict
            .notes
            .push("stopped after too many API calls".into());
        return Ok(());
    }
    let pc = error.pc.unwrap_or(0);
    let accessed = error.address;
    let (description, code) = if kind.contains("insn") || kind.contains("instruction") {
        ("invalid instruction", STATUS_ILLEGAL_INSTRUCTION)
    } else if kind.contains("interrupt") || kind.contains("int3") || kind.contains("breakpoint") {
        ("breakpoint", STATUS_BREAKPOINT)
    } else if kind.contains("fetch") {
        (
            "invalid fetch (jump to unmapped memory)",
            STATUS_ACCESS_VIOLATION,
        )
    } else if kind.contains("write") {
        ("invalid write", STATUS_ACCESS_VIOLATION)
    } else {
        ("invalid read", STATUS_ACCESS_VIOLATION)
    };
    let kernel_half = match context.arch {
        Arch::X64 => 0xFFFF_8000_0000_0000,
        Arch::X86 => 0x8000_0000,
    };
    verdict.fault = Some(Fault {
        kind: description.into(),
        pc,
        symbol: context.symbols.name_instruction(pc),
        accessed,
    });
    verdict.bugcheck = Some(match accessed {
        Some(address) if code == STATUS_ACCESS_VIOLATION && address >= kernel_half => {
            let access = if description.starts_with("invalid write") {
                1
            } else if description.starts_with("invalid fetch") {
                10
            } else {
                0
            };
            bugcheck(0x50, [address, access, pc, 0])
        }
        _ => bugcheck(0x7E, [code, pc, 0, 0]),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Phase;
    use crate::pe::PeImage;

    const BASE: u64 = 0x1_4000_0000;
    const TAG: u32 = 0x6463_6261;

    fn symbols() -> Symbolizer {
        let image = PeImage {
            arch: Some(Arch::X64),
            machine: 0x8664,
            subsystem: 1,
            characteristics: 0x22,
            image_base: BASE,
            size_of_image: 0x4000,
            entry_rva: 0x1000,
            stored_checksum: 0,
            computed_checksum: 0,
            imports: Vec::new(),
            exports: vec![("DriverEntry".into(), 0x1000)],
            pdb: None,
            code: Vec::new(),
            has_relocations: true,
        };
        Symbolizer::for_driver(std::path::Path::new("/none/Test.sys"), &image, BASE, 0x4000)
    }

    fn context(symbols: &Symbolizer) -> Context<'_> {
        Context {
            driver: "Test.sys".into(),
            engine: "test".into(),
            symbols,
            arch: Arch::X64,
            pool_hit_tag: Some(TAG),
        }
    }

    fn judge_events(events: &[Event]) -> Verdict {
        let symbols = symbols();
        judge(events, &context(&symbols)).expect("judged")
    }

    fn alloc(address: u64, size: u64) -> Event {
        Event::Alloc {
            phase: Phase::Entry,
            api: "ExAllocatePoolWithTag".into(),
            pool: 1,
            size,
            tag: TAG,
            address,
            caller: BASE + 0x1027,
            injected_failure: false,
        }
    }

    fn free(address: u64) -> Event {
        Event::Free {
            phase: Phase::Unload,
            api: "ExFreePoolWithTag".into(),
            address,
            tag: Some(TAG),
            caller: BASE + 0x1100,
        }
    }

    fn entry(status: u32, unload: u64) -> Event {
        Event::EntryReturn {
            status: Some(status),
            error: None,
            unload_routine: unload,
        }
    }

    const UNLOADED: Event = Event::UnloadReturn { error: None };

    #[test]
    fn balanced_run_is_clean() {
        let verdict = judge_events(&[
            alloc(0x1000, 0x6c),
            entry(0, BASE + 0x1100),
            free(0x1000),
            UNLOADED,
        ]);
        assert_eq!(verdict.exit_code(), 0);
        assert_eq!(verdict.outcome, Outcome::Unloaded);
        assert_eq!(verdict.pool_stats.peak_paged, (1, 0x6c));
        assert_eq!(verdict.pool_stats.current_paged, (0, 0));
        assert_eq!(verdict.pool_hits.len(), 2);
    }

    #[test]
    fn outstanding_allocation_at_unload_is_c4_62() {
        let name = Event::DriverObject {
            address: 0x5000,
            name_address: 0x5038,
            name: "Test".into(),
        };
        let verdict = judge_events(&[
            alloc(0x1000, 0x6c),
            alloc(0x2000, 8),
            entry(0, 1),
            free(0x2000),
            UNLOADED,
            name,
        ]);
        let bugcheck = verdict.bugcheck.clone().expect("bug check");
        assert_eq!((bugcheck.code, bugcheck.args), (0xC4, [0x62, 0x5038, 0, 1]));
        assert_eq!(verdict.leaks.len(), 1);
        assert_eq!(verdict.leaks[0].caller, "Test!DriverEntry+0x27");
        assert_eq!(verdict.leaks[0].tag, "abcd");
        assert_eq!(verdict.exit_code(), 3);
    }

    #[test]
    fn failed_driver_entry_is_still_checked_for_leaks() {
        let verdict = judge_events(&[alloc(0x1000, 16), entry(0xC000_0001, 0)]);
        assert_eq!(verdict.bugcheck.map(|b| b.args[0]), Some(0x62));
        let verdict = judge_events(&[alloc(0x1000, 16), free(0x1000), entry(0xC000_0001, 0)]);
        assert_eq!(verdict.outcome, Outcome::EntryFailed);
        assert_eq!(verdict.exit_code(), 4);
    }

    #[test]
    fn double_free_and_foreign_free() {
        let verdict = judge_events(&[alloc(0x1000, 16), free(0x1000), free(0x1000)]);
        assert_eq!(
            verdict.bugcheck.map(|b| b.args),
            Some([0x13, 0, 0x1000 - 16, 0])
        );
        let verdict = judge_events(&[free(0x7777)]);
        assert_eq!(verdict.bugcheck.map(|b| b.args), Some([0x10, 0x7777, 0, 0]));
    }

    #[test]
    fn events_after_a_bugcheck_are_ignored() {
        let verdict = judge_events(&[free(0x7777), alloc(0x1000, 0)]);
        assert_eq!(verdict.bugcheck.map(|b| b.args[0]), Some(0x10));
    }

    #[test]
    fn no_unload_routine_and_hangs() {
        assert_eq!(judge_events(&[entry(0, 0)]).outcome, Outcome::CannotUnload);
        assert_eq!(
            judge_events(&[alloc(0x1000, 4)]).outcome,
            Outcome::EntryDidNotReturn
        );
        assert_eq!(
            judge_events(&[entry(0, 1)]).outcome,
            Outcome::UnloadDidNotReturn
        );
    }

    #[test]
    fn crash_on_a_kernel_address_is_0x50_else_0x7e() {
        let error = |address| RunError {
            kind: "invalid_write".into(),
            pc: Some(BASE + 0x1010),
            address: Some(address),
            api: None,
            caller: None,
            instruction: None,
        };
        let crash = |address| Event::EntryReturn {
            status: None,
            error: Some(error(address)),
            unload_routine: 0,
        };
        let verdict = judge_events(&[crash(0x10)]);
        assert_eq!(
            verdict.bugcheck.map(|b| (b.code, b.args[0])),
            Some((0x7E, 0xC000_0005))
        );
        assert_eq!(
            verdict.fault.map(|f| f.symbol),
            Some("Test!DriverEntry+0x10".into())
        );
        let verdict = judge_events(&[crash(0xFFFF_F800_0000_0000)]);
        assert_eq!(
            verdict.bugcheck.map(|b| (b.code, b.args[1])),
            Some((0x50, 1))
        );
    }

    #[test]
    fn engine_errors_are_failures_not_verdicts() {
        let symbols = symbols();
        let context = context(&symbols);
        let unsupported = Event::EntryReturn {
            status: None,
            error: Some(RunError {
                kind: "unsupported_api".into(),
                pc: None,
                address: None,
                api: Some("ntoskrnl.Foo".into()),
                caller: Some(BASE + 0x1005),
                instruction: None,
            }),
            unload_routine: 0,
        };
        let failure = judge(&[unsupported], &context).expect_err("not judged");
        assert!(
            failure
                .0
                .contains("ntoskrnl.Foo (called from Test!DriverEntry+0x5)"),
            "{failure}"
        );
    }
}
