//! Driver Verifier's pool checks, applied to a driver's events: the automatic
//! checks (whatever flags are set) and pool tracking (flag 0x8).
//!
//! This is the one place the rules live; every engine feeds it, event by
//! event, and the debugger asks it for the verdict of the run so far.
//!
//! Rules, after Microsoft's bug check 0xC4 documentation
//! (MicrosoftDocs/windows-driver-docs, debugger/bug-check-0xc4--driver-verifier-detected-violation.md;
//! the IRQL ones are automatic checks, devtest/automatic-checks.md):
//! - a zero-byte allocation: 0xC4 / 0x00;
//! - allocating paged pool above `APC_LEVEL`: 0xC4 / 0x01 (Arg2 IRQL, Arg3
//!   pool type, Arg4 size); nonpaged above `DISPATCH_LEVEL`: 0xC4 / 0x02;
//! - freeing paged pool above `APC_LEVEL`: 0xC4 / 0x11 (Arg2 IRQL, Arg3 pool
//!   type, Arg4 address); nonpaged above `DISPATCH_LEVEL`: 0xC4 / 0x12;
//! - freeing an address no allocation returned: 0xC4 / 0x10;
//! - freeing pool already freed: 0xC4 / 0x13 (when the verifier tracks the
//!   block: pool tracking, or a block outside special pool); a special pool
//!   block freed twice under special pool alone is found by
//!   `MmFreeSpecialPool`, whose page for it is gone: 0xC1 / 0x20 (Arg1 the
//!   address, Arg2 reserved, the PTE; the 0xC1 page, and `ReactOS`'
//!   `MmFreeSpecialPool`, ntoskrnl/mm/ARM3/special.c);
//! - with no verifier (flags 0) only the release kernel's own checks apply
//!   (the WRK's `ExAllocatePoolWithTag` / `ExFreePoolWithTag`,
//!   base/ntos/ex/pool.c, built without `NO_POOL_CHECKS`; the 0xC2 page):
//!   a pool call at a bad IRQL, 0xC2 / 0x08 (allocation) or 0x09 (free);
//!   a block whose header says it is free, 0xC2 / 0x07 (Arg2 reserved,
//!   Arg3 the header's contents, Arg4 the block); no leak check, no
//!   special pool, a zero-byte request is served (as one byte);
//! - allocations outstanding when the image unloads (after the unload routine,
//!   or after a failed `DriverEntry`): 0xC4 / 0x62, Arg4 = their count;
//! - a CPU fault at an instruction inside the driver: the bug check the
//!   kernel would raise (0x50 for a bad kernel address, else 0x7E with the
//!   exception code);
//! - special pool (0x1; the bug check pages 0xC1, 0xD5, 0xD6):
//!   bytes around a block changed when it is freed, 0xC1 (Arg1 the block,
//!   Arg2 the first changed byte, Arg4 0x24 after its end, 0x23 before); a
//!   driver instruction touching a freed special pool page, 0xD5, or the
//!   page past a block, 0xD6 (Arg1 the address, Arg2 0 read / 1 write, Arg3
//!   the instruction); nt's own instruction, 0xCC / 0xCD (the WRK's
//!   `KeBugCheck2`, base/ntos/ke/bugcheck.c);
//! - a KeBugCheckEx call: that bug check;
//! - the worker thread that ran the driver's `DriverEntry` or unload routine
//!   getting control back above `PASSIVE_LEVEL`: 0xE1
//!   `WORKER_THREAD_RETURNED_AT_BAD_IRQL` (Arg1 work routine, Arg2 IRQL, Arg3
//!   parameter, Arg4 work item), as the WRK's `ExpWorkerThread`
//!   (base/ntos/ex/worker.c) and the `ReactOS` one (ntoskrnl/ex/work.c) check.
//!
//! What the engine could not do as Windows would (a gap, or a fault outside
//! the driver's image) is never judged: the run "cannot be judged".

use std::collections::HashMap;

use crate::arch::Arch;
use crate::error::CannotJudge;
use crate::events::{Event, Gap};
use crate::nt::{self, PoolType, TAG_NONE, c2, c4, tag_text};
use crate::pool_api::{PoolOp, PoolRoutine};
use crate::symbols::Symbolizer;
use crate::verdict::{
    BugCheck, Engine, Fault, FaultKind, Leak, PoolHit, PoolStats, Stage, Verdict,
};
use crate::verifier::{
    POOL_TRACKING, SPECIAL_POOL, VerifierFlags, special_pool_block, special_pool_page,
};
use crate::wdm;

/// The most debug output a verdict keeps, in bytes: about 20,000 lines.
pub const MAX_DEBUG_OUTPUT: usize = 1 << 20;
/// `APC_LEVEL`: paged pool may be allocated and freed up to here.
const APC_LEVEL: u8 = 1;
/// `DISPATCH_LEVEL`: nonpaged pool may be allocated and freed up to here.
const DISPATCH_LEVEL: u8 = 2;

/// What the tracker needs besides the events.
pub struct Context {
    /// The driver's file name.
    pub driver: String,
    /// The engine whose events these are.
    pub engine: Engine,
    /// Names for addresses inside the driver.
    pub symbols: Symbolizer,
    /// The driver's architecture.
    pub arch: Arch,
    /// nt!PoolHitTag: record a break on every allocation and free with this tag.
    pub pool_hit_tag: Option<u32>,
    /// The verifier flags the driver is verified with.
    pub verifier_flags: VerifierFlags,
}

/// One allocation, from its return to its free.
struct Allocation {
    address: u64,
    bytes: u64,
    tag: u32,
    pool: PoolType,
    caller: u64,
    freed: bool,
    /// On a special pool page of its own.
    special: bool,
}

/// The verifier's pool bookkeeping for one driver.
#[derive(Default)]
struct Pool {
    /// Every allocation in order, freed or not.
    allocations: Vec<Allocation>,
    /// Index of the live allocation at each address.
    live: HashMap<u64, usize>,
    /// Addresses freed and not handed out again since.
    freed: HashMap<u64, usize>,
    stats: PoolStats,
}

impl Pool {
    fn count(&mut self, pool: PoolType, bytes: u64, add: bool) {
        let (current, peak) = if pool.is_paged() == Some(true) {
            (&mut self.stats.current_paged, &mut self.stats.peak_paged)
        } else {
            (
                &mut self.stats.current_nonpaged,
                &mut self.stats.peak_nonpaged,
            )
        };
        if add {
            current.0 += 1;
            current.1 = current.1.saturating_add(bytes);
            peak.0 = peak.0.max(current.0);
            peak.1 = peak.1.max(current.1);
        } else {
            current.0 = current.0.saturating_sub(1);
            current.1 = current.1.saturating_sub(bytes);
        }
    }

    fn outstanding(&self) -> impl Iterator<Item = &Allocation> {
        self.allocations
            .iter()
            .filter(|allocation| !allocation.freed)
    }
}

/// Driver Verifier's pool tracking for one run, fed event by event.
pub struct Tracker {
    context: Context,
    verdict: Verdict,
    pool: Pool,
    text: String,
    /// DbgPrint calls past [`MAX_DEBUG_OUTPUT`], and their bytes.
    dropped: (u64, u64),
    image: Option<(u64, u64)>,
    name_address: u64,
    /// The engine routine the driver called last, and from where.
    last_call: Option<(String, u64)>,
    /// A block being freed whose header says it is free, and the header's
    /// first ULONG (0xC4 / 0x13's Arg4).
    freed_header: Option<(u64, u32)>,
}

impl Tracker {
    /// A tracker for a run that has not started.
    #[must_use]
    pub fn new(context: Context) -> Self {
        let mut verdict = Verdict::new(context.driver.clone(), context.engine, Some(context.arch));
        verdict.verifier = context.verifier_flags.has(crate::verifier::POOL_TRACKING);
        verdict.verifier_flags = Some(context.verifier_flags);
        Self {
            context,
            verdict,
            pool: Pool::default(),
            text: String::new(),
            dropped: (0, 0),
            image: None,
            name_address: 0,
            last_call: None,
            freed_header: None,
        }
    }

    /// Takes one event.
    ///
    /// # Errors
    /// The engine reported a gap, or the CPU faulted outside the driver:
    /// the run cannot be judged.
    pub fn event(&mut self, event: &Event) -> Result<(), CannotJudge> {
        if self.verdict.bugcheck.is_some() {
            return Ok(()); // the machine has stopped
        }
        match event {
            Event::Load {
                image_base,
                image_size,
                ..
            } => {
                self.image = Some((*image_base, *image_size));
                self.verdict.stage = Stage::InEntry;
            }
            Event::DriverObject { address, .. } => {
                self.name_address =
                    address + wdm::DriverObject::for_arch(self.context.arch).driver_name;
            }
            Event::Call {
                routine, caller, ..
            } => self.last_call = Some((routine.clone(), *caller)),
            Event::PoolCall {
                routine,
                args,
                result,
                caller,
                injected_failure,
                irql,
                ..
            } => {
                self.last_call = Some((format!("ntoskrnl.exe!{}", routine.name()), *caller));
                let op = routine.read(self.context.arch, args, *result);
                if let Some(irql) = *irql
                    && self.check_irql(&op, irql)
                {
                    return Ok(());
                }
                match op {
                    PoolOp::Alloc {
                        pool,
                        size,
                        tag,
                        address,
                    } => self.on_alloc(
                        *routine,
                        pool,
                        size,
                        tag,
                        address,
                        *caller,
                        *injected_failure,
                        irql.unwrap_or(0),
                    ),
                    PoolOp::Free { address, tag } => {
                        self.on_free(*routine, address, tag, *caller)?;
                    }
                }
            }
            Event::DebugPrint { text, .. } => self.on_debug_print(text),
            Event::DebugPrintDropped { calls, bytes } => {
                self.dropped.0 += calls;
                self.dropped.1 += bytes;
            }
            Event::BugCheckCall { code, args, .. } => {
                self.verdict.bugcheck = Some(BugCheck::new(*code, *args));
            }
            Event::EntryReturn {
                status,
                unload_routine,
            } => self.on_entry_return(*status, *unload_routine),
            Event::UnloadReturn => {
                self.verdict.stage = Stage::Unloaded;
                self.check_leaks_at_unload();
            }
            Event::SpecialPoolCorrupted { address, corrupted } => {
                self.on_special_pool_corrupted(*address, *corrupted);
            }
            Event::FreedTwice { address, header } => self.on_freed_twice(*address, *header),
            Event::WorkerReturn {
                irql,
                routine,
                parameter,
                work_item,
            } => {
                if *irql != 0 {
                    self.verdict.bugcheck = Some(BugCheck::new(
                        nt::WORKER_THREAD_RETURNED_AT_BAD_IRQL,
                        [*routine, u64::from(*irql), *parameter, *work_item],
                    ));
                }
            }
            Event::Fault {
                kind, pc, address, ..
            } => self.on_fault(*kind, *pc, *address)?,
            Event::Stopped { limit, .. } => self.verdict.limit = Some(*limit),
            Event::Gap { gap, caller, .. } => return Err(self.cannot_judge(gap.clone(), *caller)),
            Event::End => {}
        }
        Ok(())
    }

    /// The verdict of the run so far.
    #[must_use]
    pub fn verdict(&self) -> Verdict {
        let mut verdict = self.verdict.clone();
        verdict.debug_output = self.text.lines().map(str::to_owned).collect();
        let (calls, bytes) = self.dropped;
        if calls > 0 {
            verdict.notes.push(format!(
                "debug output kept up to {} MiB: {calls} later DbgPrint call{} ({bytes} bytes) not shown",
                MAX_DEBUG_OUTPUT >> 20,
                if calls == 1 { "" } else { "s" }
            ));
        }
        verdict.pool_stats = self.pool.stats.clone();
        verdict
    }

    /// Keeps a DbgPrint call's text while the output is under the cap;
    /// past it, whole calls are only counted (a driver printing in a loop
    /// must not fill memory or the terminal; the verdict is unchanged).
    fn on_debug_print(&mut self, text: &str) {
        if self.dropped.0 == 0 && self.text.len() + text.len() <= MAX_DEBUG_OUTPUT {
            self.text.push_str(text);
        } else {
            self.dropped.0 += 1;
            self.dropped.1 += u64::try_from(text.len()).unwrap_or(u64::MAX);
        }
    }

    /// Whether debug output is past the cap (later calls are only counted).
    #[must_use]
    pub const fn debug_output_full(&self) -> bool {
        self.dropped.0 > 0
    }

    /// The names the tracker gives addresses.
    #[must_use]
    pub const fn symbols(&self) -> &Symbolizer {
        &self.context.symbols
    }

    /// The bug check the machine raised, if it did.
    #[must_use]
    pub const fn bugcheck(&self) -> Option<&BugCheck> {
        self.verdict.bugcheck.as_ref()
    }

    /// Allocations not freed yet, as leaks would be listed.
    #[must_use]
    pub fn outstanding(&self) -> Vec<Leak> {
        self.pool
            .outstanding()
            .map(|allocation| Leak {
                address: allocation.address,
                bytes: allocation.bytes,
                tag: tag_text(allocation.tag),
                pool: allocation.pool,
                caller: self.context.symbols.name(allocation.caller),
                caller_address: Some(allocation.caller),
            })
            .collect()
    }

    /// The automatic checks of the IRQL a pool routine is called at;
    /// `true` when the verifier bug-checked.
    fn check_irql(&mut self, op: &PoolOp, irql: u8) -> bool {
        let limit = |pool: PoolType| match pool.is_paged() {
            Some(true) => Some(APC_LEVEL),
            Some(false) => Some(DISPATCH_LEVEL),
            None => None,
        };
        let irql_arg = u64::from(irql);
        match *op {
            PoolOp::Alloc { pool, size, .. } => {
                if limit(pool).is_some_and(|limit| irql > limit) {
                    let code = if pool.is_paged() == Some(true) {
                        c4::PAGED_ALLOC_ABOVE_APC
                    } else {
                        c4::NONPAGED_ALLOC_ABOVE_DISPATCH
                    };
                    self.raise_bad_irql(code, c2::ALLOC_IRQL, irql_arg, pool, size);
                    return true;
                }
            }
            PoolOp::Free { address, .. } => {
                let pool = self
                    .pool
                    .live
                    .get(&address)
                    .map(|index| self.pool.allocations[*index].pool);
                if let Some(pool) = pool
                    && limit(pool).is_some_and(|limit| irql > limit)
                {
                    let code = if pool.is_paged() == Some(true) {
                        c4::PAGED_FREE_ABOVE_APC
                    } else {
                        c4::NONPAGED_FREE_ABOVE_DISPATCH
                    };
                    self.raise_bad_irql(code, c2::FREE_IRQL, irql_arg, pool, address);
                    return true;
                }
            }
        }
        false
    }

    #[allow(clippy::too_many_arguments)]
    fn on_alloc(
        &mut self,
        routine: PoolRoutine,
        pool: PoolType,
        size: u64,
        tag: u32,
        address: u64,
        caller: u64,
        injected_failure: bool,
        irql: u8,
    ) {
        // The release kernel serves a zero-byte request (as one byte; the
        // WRK's ExAllocatePoolWithTag), the verifier refuses it.
        let verified = self.verified();
        let stats = &mut self.pool.stats;
        stats.attempted += 1;
        if size == 0 && verified {
            let pool_value = u64::from(pool.value().unwrap_or(0));
            // Arg2: IRQL (PASSIVE_LEVEL for DriverEntry and unload when the
            // engine does not say), Arg3: pool type.
            self.raise(c4::ZERO_BYTES, [u64::from(irql), pool_value, 0]);
            return;
        }
        if address == 0 {
            stats.failed += 1;
            if injected_failure {
                let attempted = stats.attempted;
                self.verdict.notes.push(format!(
                    "allocation {attempted} ({}, 0x{size:x} bytes, tag '{}') was made to fail",
                    routine.name(),
                    tag_text(tag)
                ));
            }
        } else {
            stats.succeeded += 1;
            if tag == 0 || tag == TAG_NONE {
                stats.no_tag += 1;
            }
            // The verifier counts whole pool units: the walkthrough's
            // `!verifier 3` shows 0x70 bytes for a 0x6c-byte request.
            let unit = self.context.arch.pool_granularity();
            // Saturating: an engine's report is input, whatever its size.
            self.pool
                .count(pool, size.div_ceil(unit).saturating_mul(unit), true);
            self.pool.freed.remove(&address);
            self.pool.live.insert(address, self.pool.allocations.len());
            let special = self.context.verifier_flags.has(SPECIAL_POOL)
                && special_pool_block(self.context.arch, special_pool_page(address), size)
                    == Some(address);
            self.pool.stats.special += u64::from(special);
            self.pool.allocations.push(Allocation {
                address,
                bytes: size,
                tag,
                pool,
                caller,
                freed: false,
                special,
            });
        }
        self.pool_hit(routine, address, Some(size), tag, caller);
    }

    fn on_free(
        &mut self,
        routine: PoolRoutine,
        address: u64,
        tag: Option<u32>,
        caller: u64,
    ) -> Result<(), CannotJudge> {
        if let Some(index) = self.pool.live.remove(&address) {
            let allocation = &mut self.pool.allocations[index];
            allocation.freed = true;
            let (pool, bytes, allocated_tag) = (allocation.pool, allocation.bytes, allocation.tag);
            let unit = self.context.arch.pool_granularity();
            self.pool
                .count(pool, bytes.div_ceil(unit).saturating_mul(unit), false);
            self.pool.freed.insert(address, index);
            if let Some(given) = tag
                && given != allocated_tag
            {
                self.verdict.notes.push(format!(
                    "{} freed 0x{address:x} with tag '{}' but it was allocated with '{}'",
                    self.context.symbols.name(caller),
                    tag_text(given),
                    tag_text(allocated_tag)
                ));
            }
            self.pool_hit(routine, address, None, allocated_tag, caller);
        } else if let Some(&index) = self.pool.freed.get(&address) {
            // The verifier knows the block when it tracks it (0x8), or from
            // its pool header outside special pool; a special pool block's
            // page is gone, and `MmFreeSpecialPool` finds that (0xC1 / 0x20,
            // `on_freed_twice`). Without the verifier, nt's own free path
            // checks the header (also `on_freed_twice`).
            let flags = self.context.verifier_flags;
            let special = self.pool.allocations[index].special;
            if !self.verified() && self.verdict.bugcheck.is_none() {
                // nt's own free path found no header it could judge (a big
                // pool block has none): what the release kernel does then
                // depends on its big-page table, which no engine models.
                return Err(self.cannot_judge(
                    Gap::EngineLimit {
                        detail: format!(
                            "the driver frees 0x{address:x} a second time with the verifier off; the release kernel's check of a block without a pool header (big pool) is not modelled"
                        ),
                    },
                    Some(caller),
                ));
            }
            if flags.has(POOL_TRACKING) || (self.verified() && !special) {
                // Arg3: the pool header, just before the block; Arg4 its
                // contents (the WRK's ExFreePoolSanityChecks: Entry->Ulong1).
                let header = address.saturating_sub(self.context.arch.pool_header_size());
                let contents = self
                    .freed_header
                    .filter(|(at, _)| *at == address)
                    .map_or(0, |(_, contents)| u64::from(contents));
                self.raise(c4::DOUBLE_FREE, [0, header, contents]);
            }
        } else if self.verified() {
            // The verifier's free checks, in the WRK's order
            // (ExFreePoolSanityChecks, base/ntos/ex/pool.c): a user-mode
            // address is 0x10 (Arg2 the address); an address inside a page
            // not aligned to the pool header's size cannot start a block,
            // 0x16 (Arg2 reserved, the WRK's line number; Arg3 the address;
            // bug-check-0xc4: "free pool at a bad address").
            let arch = self.context.arch;
            let misaligned =
                !address.is_multiple_of(0x1000) && !address.is_multiple_of(arch.pool_header_size());
            if address >= arch.kernel_base() && misaligned {
                self.raise(c4::FREE_MISALIGNED, [0, address, 0]);
            } else {
                self.raise(c4::FREE_UNALLOCATED, [address, 0, 0]);
            }
        } else {
            // The release kernel reads whatever lies before the address as
            // a pool header: what it does depends on those bytes.
            return Err(self.cannot_judge(
                Gap::EngineLimit {
                    detail: format!(
                        "with no verifier (flags 0) the driver frees 0x{address:x}, which no allocation returned; what the release kernel does then depends on the bytes before it, which the native engine does not reproduce"
                    ),
                },
                Some(caller),
            ));
        }
        Ok(())
    }

    /// Special pool's fill around a block changed: 0x24 after the block's
    /// end, 0x23 elsewhere in its page.
    fn on_special_pool_corrupted(&mut self, address: u64, corrupted: u64) {
        let kind = if corrupted > address { 0x24 } else { 0x23 };
        self.verdict.bugcheck = Some(BugCheck::new(
            nt::SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION,
            [address, corrupted, 0, kind],
        ));
    }

    /// nt's free path found the block free already: special pool's page is
    /// gone (0xC1 / 0x20: Arg1 the address, Arg2 reserved, Arg3 0; bug check
    /// 0xC1's page and `ReactOS`' `MmFreeSpecialPool`), or, with no verifier,
    /// the release kernel's header check (0xC2 / 0x07: Arg2 reserved, the
    /// WRK passes its line number; Arg3 the header's contents, Arg4 the
    /// block; the 0xC2 page and the WRK's `ExFreePoolWithTag`). Under the
    /// verifier the header's contents are kept for its 0xC4 / 0x13.
    fn on_freed_twice(&mut self, address: u64, header: Option<u32>) {
        match header {
            None => {
                self.verdict.bugcheck = Some(BugCheck::new(
                    nt::SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION,
                    [address, 0, 0, 0x20],
                ));
            }
            Some(header) if !self.verified() => {
                self.raise_release(c2::DOUBLE_FREE, [0, u64::from(header), address]);
            }
            Some(header) => self.freed_header = Some((address, header)),
        }
    }

    /// Whether the driver is verified at all (any flag set).
    const fn verified(&self) -> bool {
        self.context.verifier_flags.0 != 0
    }

    fn pool_hit(
        &mut self,
        routine: PoolRoutine,
        address: u64,
        bytes: Option<u64>,
        tag: u32,
        caller: u64,
    ) {
        if self.context.pool_hit_tag == Some(tag) {
            self.verdict.pool_hits.push(PoolHit {
                api: routine.name().to_owned(),
                address,
                bytes,
                caller: self.context.symbols.name(caller),
                after_debug_lines: self.text.matches('\n').count(),
            });
        }
    }

    fn on_entry_return(&mut self, status: u32, unload_routine: u64) {
        self.verdict.entry_status = Some(status);
        if nt::status::failed(status) {
            // The I/O manager unloads the image without calling the unload
            // routine; the verifier still checks for leaks.
            self.verdict.stage = Stage::EntryFailed;
            self.check_leaks_at_unload();
        } else if unload_routine == 0 {
            self.verdict.stage = Stage::CannotUnload;
        } else {
            self.verdict.stage = Stage::InUnload;
        }
    }

    /// The image is being unloaded: whatever is outstanding leaked. Only
    /// pool tracking (0x8) keeps the list, so only it bug-checks (the 0xC4
    /// page: 0x62 "occurs only when the Pool Tracking option ... is active").
    fn check_leaks_at_unload(&mut self) {
        if !self.context.verifier_flags.has(POOL_TRACKING) {
            return;
        }
        self.verdict.leaks = self.outstanding();
        if !self.verdict.leaks.is_empty() {
            let count = u64::try_from(self.verdict.leaks.len()).unwrap_or(u64::MAX);
            // Arg3, the verifier's internal structure, does not exist here.
            self.raise(c4::LEAKED_AT_UNLOAD, [self.name_address, 0, count]);
        }
    }

    /// The release kernel's own pool check failed: 0xC2 with `arg1`.
    /// A pool call above its pool's IRQL: the verifier's 0xC4 `verifier_code`,
    /// or with no verifier the release kernel's 0xC2 `release_code`, both
    /// with the IRQL, the pool type and `last` (the size or the address).
    fn raise_bad_irql(
        &mut self,
        verifier_code: u64,
        release_code: u64,
        irql: u64,
        pool: PoolType,
        last: u64,
    ) {
        let args = [irql, u64::from(pool.value().unwrap_or(0)), last];
        if self.verified() {
            self.raise(verifier_code, args);
        } else {
            self.raise_release(release_code, args);
        }
    }

    fn raise_release(&mut self, arg1: u64, rest: [u64; 3]) {
        self.verdict.bugcheck = Some(BugCheck::new(
            nt::BAD_POOL_CALLER,
            [arg1, rest[0], rest[1], rest[2]],
        ));
    }

    fn raise(&mut self, arg1: u64, rest: [u64; 3]) {
        self.verdict.bugcheck = Some(BugCheck::new(
            nt::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [arg1, rest[0], rest[1], rest[2]],
        ));
    }

    fn record_fault(&mut self, kind: FaultKind, pc: u64, accessed: Option<u64>) {
        self.verdict.fault = Some(Fault {
            kind,
            pc,
            symbol: self.context.symbols.name_instruction(pc),
            accessed,
        });
    }

    /// A special-pool page fault's bug check (0xCC, 0xCD, 0xD5, 0xD6 share
    /// their parameters: the address, 0 read / 1 write, the instruction).
    fn special_pool_bug_check(
        &mut self,
        code: u32,
        kind: FaultKind,
        pc: u64,
        accessed: Option<u64>,
    ) {
        self.record_fault(kind, pc, accessed);
        let write = u64::from(kind == FaultKind::Write);
        self.verdict.bugcheck = Some(BugCheck::new(code, [accessed.unwrap_or(0), write, pc, 0]));
    }

    fn inside_driver(&self, address: u64) -> bool {
        self.image
            .is_some_and(|(base, size)| address >= base && address - base < size)
    }

    /// A CPU fault: the driver's bug if it faulted in its own code, or if it
    /// jumped into nowhere before any engine routine could have handed it a
    /// bad address. A fault in the engine's code, or a jump to an address
    /// that may have come from the engine (right after an engine call),
    /// cannot be judged.
    fn on_fault(
        &mut self,
        kind: FaultKind,
        pc: u64,
        accessed: Option<u64>,
    ) -> Result<(), CannotJudge> {
        let own_jump = kind == FaultKind::Execute && self.last_call.is_none();
        let in_kernel = !self.inside_driver(pc) && pc >= self.context.arch.kernel_base();
        if in_kernel
            && matches!(kind, FaultKind::Read | FaultKind::Write)
            && let Some(code) = accessed.and_then(|address| self.special_pool_fault(address))
        {
            // nt's own code touched special pool (a buffer the driver passed
            // in): the WRK's KeBugCheck2 (base/ntos/ke/bugcheck.c) turns
            // the page fault into 0xCC / 0xCD when the instruction is in the
            // kernel or HAL, Arg3 the instruction (the 0xCC and 0xCD pages).
            let code = if code == nt::DRIVER_PAGE_FAULT_IN_FREED_SPECIAL_POOL {
                nt::PAGE_FAULT_IN_FREED_SPECIAL_POOL
            } else {
                nt::PAGE_FAULT_BEYOND_END_OF_ALLOCATION
            };
            self.special_pool_bug_check(code, kind, pc, accessed);
            return Ok(());
        }
        if !self.inside_driver(pc) && !own_jump {
            let after = self.last_call.as_ref().map(|(routine, _)| routine.clone());
            let caller = self.last_call.as_ref().map(|(_, caller)| *caller);
            return Err(self.cannot_judge(
                Gap::FaultOutsideDriver {
                    fault: kind,
                    pc,
                    after,
                },
                caller,
            ));
        }
        if let Some(code) = accessed.and_then(|address| self.special_pool_fault(address)) {
            self.special_pool_bug_check(code, kind, pc, accessed);
            return Ok(());
        }
        let code = kind.exception_code();
        self.record_fault(kind, pc, accessed);
        let kernel_address = |address: u64| address >= self.context.arch.kernel_base();
        self.verdict.bugcheck = Some(match accessed {
            // Touching the guard page below the kernel stack leaves no stack
            // for the page fault's trap frame: a double fault, 0x7F with
            // Arg1 8 (EXCEPTION_DOUBLE_FAULT); the other parameters are the
            // processor's state, which no engine here reports (bug check
            // 0x7F, MicrosoftDocs windows-driver-docs,
            // debugger/bug-check-0x7f--unexpected-kernel-mode-trap.md).
            _ if kind == FaultKind::StackOverflow => {
                BugCheck::new(nt::UNEXPECTED_KERNEL_MODE_TRAP, [nt::DOUBLE_FAULT, 0, 0, 0])
            }
            // A write to a read-only page of the kernel (nt's code): 0xBE
            // with Arg1 the address written; Arg2, the PTE, is not known
            // here (bug check 0xBE, MicrosoftDocs windows-driver-docs,
            // debugger/bug-check-0xbe--attempted-write-to-readonly-memory.md).
            Some(address) if kind == FaultKind::ReadOnlyWrite => {
                BugCheck::new(nt::ATTEMPTED_WRITE_TO_READONLY_MEMORY, [address, 0, 0, 0])
            }
            Some(address) if kind.is_access() && kernel_address(address) => {
                let access = match kind {
                    FaultKind::Write => 1,
                    FaultKind::Execute => 10,
                    _ => 0,
                };
                BugCheck::new(nt::PAGE_FAULT_IN_NONPAGED_AREA, [address, access, pc, 0])
            }
            _ => BugCheck::new(
                nt::SYSTEM_THREAD_EXCEPTION_NOT_HANDLED,
                [u64::from(code), pc, 0, 0],
            ),
        });
        Ok(())
    }

    /// The bug check a driver's access to `address` raises under special
    /// pool: 0xD5 in a freed block's page, 0xD6 in the page past a block.
    fn special_pool_fault(&self, address: u64) -> Option<u32> {
        let page = special_pool_page(address);
        self.pool
            .allocations
            .iter()
            .filter(|allocation| allocation.special)
            .find_map(|allocation| {
                let own = special_pool_page(allocation.address);
                if page == own && allocation.freed {
                    Some(nt::DRIVER_PAGE_FAULT_IN_FREED_SPECIAL_POOL)
                } else if page == own + 0x1000 {
                    Some(nt::DRIVER_PAGE_FAULT_BEYOND_END_OF_ALLOCATION)
                } else {
                    None
                }
            })
    }

    fn cannot_judge(&self, gap: Gap, caller: Option<u64>) -> CannotJudge {
        CannotJudge {
            driver: self.context.driver.clone(),
            engine: self.context.engine,
            gap,
            site: caller.map(|caller| self.context.symbols.name(caller)),
        }
    }
}

/// Judges a whole run.
///
/// # Errors
/// The run cannot be judged (an engine gap, or a fault outside the driver).
pub fn judge(events: &[Event], context: Context) -> Result<Verdict, CannotJudge> {
    let mut tracker = Tracker::new(context);
    for event in events {
        tracker.event(event)?;
    }
    Ok(tracker.verdict())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Phase;
    use crate::pe::PeImage;
    use crate::verdict::{ExitCode, Outcome};

    const BASE: u64 = 0x1_4000_0000;
    const TAG: u32 = 0x6463_6261;

    fn symbols() -> Symbolizer {
        let mut image = PeImage::empty(Arch::X64);
        image.image_base = BASE;
        image.size_of_image = 0x4000;
        image.entry_rva = 0x1000;
        image.exports = vec![("DriverEntry".into(), 0x1000)];
        Symbolizer::for_driver(std::path::Path::new("/none/Test.sys"), &image, BASE, 0x4000)
    }

    /// The test driver's load, then `events`, judged with `pool_hit_tag`
    /// and `flags`.
    fn judge_in(
        pool_hit_tag: Option<u32>,
        flags: VerifierFlags,
        events: &[Event],
    ) -> Result<Verdict, CannotJudge> {
        let context = Context {
            driver: "Test.sys".into(),
            engine: Engine::Native,
            symbols: symbols(),
            arch: Arch::X64,
            pool_hit_tag,
            verifier_flags: flags,
        };
        let mut all = vec![Event::Load {
            arch: Arch::X64,
            image_base: BASE,
            image_size: 0x4000,
            entry_point: BASE + 0x1000,
        }];
        all.extend_from_slice(events);
        judge(&all, context)
    }

    fn judge_events(events: &[Event]) -> Result<Verdict, CannotJudge> {
        judge_in(Some(TAG), VerifierFlags::default(), events)
    }

    fn verdict(events: &[Event]) -> Verdict {
        judge_events(events).expect("judged")
    }

    fn alloc(address: u64, size: u64) -> Event {
        alloc_at(address, size, 1, None)
    }

    fn alloc_at(address: u64, size: u64, pool: u64, irql: Option<u8>) -> Event {
        Event::PoolCall {
            phase: Phase::Entry,
            routine: PoolRoutine::ExAllocatePoolWithTag,
            args: vec![pool, size, u64::from(TAG)],
            result: address,
            caller: BASE + 0x1027,
            injected_failure: false,
            irql,
        }
    }

    fn free(address: u64) -> Event {
        free_at(address, None)
    }

    fn free_at(address: u64, irql: Option<u8>) -> Event {
        Event::PoolCall {
            phase: Phase::Unload,
            routine: PoolRoutine::ExFreePoolWithTag,
            args: vec![address, u64::from(TAG)],
            result: 0,
            caller: BASE + 0x1100,
            injected_failure: false,
            irql,
        }
    }

    fn entry(status: u32, unload: u64) -> Event {
        Event::EntryReturn {
            status,
            unload_routine: unload,
        }
    }

    #[test]
    fn balanced_run_is_clean() {
        let verdict = verdict(&[
            alloc(0x1000, 0x6c),
            entry(0, BASE + 0x1100),
            free(0x1000),
            Event::UnloadReturn,
        ]);
        assert_eq!(verdict.exit_code(), ExitCode::Clean);
        assert_eq!(verdict.outcome(), Outcome::Unloaded);
        assert_eq!(verdict.pool_stats.peak_paged, (1, 0x70));
        assert_eq!(verdict.pool_stats.current_paged, (0, 0));
        assert_eq!(verdict.pool_hits.len(), 2);
    }

    #[test]
    fn outstanding_allocation_at_unload_is_c4_62() {
        let verdict = verdict(&[
            Event::DriverObject {
                address: 0x5000,
                name: "Test".into(),
            },
            alloc(0x1000, 0x6c),
            alloc(0x2000, 8),
            entry(0, 1),
            free(0x2000),
            Event::UnloadReturn,
        ]);
        let bugcheck = verdict.bugcheck.clone().expect("bug check");
        assert_eq!((bugcheck.code, bugcheck.args), (0xC4, [0x62, 0x5038, 0, 1]));
        assert_eq!(verdict.leaks.len(), 1);
        assert_eq!(verdict.leaks[0].caller, "Test!DriverEntry+0x27");
        assert_eq!(verdict.leaks[0].tag, "abcd");
        assert_eq!(verdict.exit_code(), ExitCode::Violation);
        assert!(verdict.unloaded());
    }

    #[test]
    fn a_reused_address_is_a_new_allocation() {
        // Allocate, free, get the same address again, leak it: one leak.
        let verdict = verdict(&[
            alloc(0x1000, 16),
            free(0x1000),
            alloc(0x1000, 32),
            alloc(0x2000, 8),
            entry(0, 1),
            Event::UnloadReturn,
        ]);
        let leaked: Vec<(u64, u64)> = verdict
            .leaks
            .iter()
            .map(|leak| (leak.address, leak.bytes))
            .collect();
        assert_eq!(leaked, [(0x1000, 32), (0x2000, 8)]);
        assert_eq!(verdict.bugcheck.map(|b| b.args[3]), Some(2));
    }

    #[test]
    fn failed_driver_entry_is_still_checked_for_leaks() {
        let verdict_leaky = verdict(&[alloc(0x1000, 16), entry(0xC000_0001, 0)]);
        assert_eq!(verdict_leaky.bugcheck.map(|b| b.args[0]), Some(0x62));
        let verdict = verdict(&[alloc(0x1000, 16), free(0x1000), entry(0xC000_0001, 0)]);
        assert_eq!(verdict.outcome(), Outcome::EntryFailed);
        assert_eq!(verdict.exit_code(), ExitCode::LoadProblem);
    }

    #[test]
    fn double_free_and_foreign_free() {
        let verdict_double = verdict(&[alloc(0x1000, 16), free(0x1000), free(0x1000)]);
        assert_eq!(
            verdict_double.bugcheck.map(|b| b.args),
            Some([0x13, 0, 0x1000 - 16, 0])
        );
        let verdict_user = verdict(&[free(0x7777)]);
        assert_eq!(
            verdict_user.bugcheck.map(|b| b.args),
            Some([0x10, 0x7777, 0, 0])
        );
        // A kernel address no block can start at (not 16-byte aligned on
        // x64): 0x16, Arg3 the address (the WRK's ExFreePoolSanityChecks).
        let odd = 0xFFFF_F8A0_0120_0091;
        let verdict = verdict(&[alloc(odd - 1, 16), free(odd)]);
        assert_eq!(verdict.bugcheck.map(|b| b.args), Some([0x16, 0, odd, 0]));
    }

    // MicrosoftDocs/windows-driver-docs, bug-check-0xc4: 0x01 = paged pool
    // allocated with IRQL > APC_LEVEL (Arg2 IRQL, Arg3 pool type, Arg4
    // size); 0x02 nonpaged above DISPATCH_LEVEL; 0x11 / 0x12 the same for
    // frees (Arg4 the address). Automatic checks (devtest/automatic-checks.md).
    #[test]
    fn pool_calls_at_a_raised_irql() {
        let paged = verdict(&[alloc_at(0x1000, 0x6c, 1, Some(2))]);
        assert_eq!(
            paged.bugcheck.map(|b| (b.code, b.args)),
            Some((0xC4, [0x01, 2, 1, 0x6c]))
        );
        let nonpaged_ok = verdict(&[alloc_at(0x1000, 0x10, 0, Some(2))]);
        assert!(nonpaged_ok.bugcheck.is_none());
        let nonpaged = verdict(&[alloc_at(0x1000, 0x10, 0, Some(3))]);
        assert_eq!(nonpaged.bugcheck.map(|b| b.args), Some([0x02, 3, 0, 0x10]));
        let apc = verdict(&[alloc_at(0x1000, 0x10, 1, Some(1))]);
        assert!(apc.bugcheck.is_none(), "APC_LEVEL may allocate paged pool");
        let free = verdict(&[alloc(0x1000, 0x10), free_at(0x1000, Some(2))]);
        assert_eq!(free.bugcheck.map(|b| b.args), Some([0x11, 2, 1, 0x1000]));
        let unknown = verdict(&[alloc_at(0x1000, 0x10, 1, None)]);
        assert!(unknown.bugcheck.is_none());
    }

    // WRK base/ntos/ex/worker.c and ReactOS ntoskrnl/ex/work.c: a work
    // routine returning above PASSIVE_LEVEL is bug check 0xE1 (Arg1 the
    // routine, Arg2 the IRQL, Arg3 its parameter, Arg4 the work item).
    #[test]
    fn worker_returning_at_a_raised_irql_is_0xe1() {
        let returned = |irql| Event::WorkerReturn {
            irql,
            routine: 0x8000_1000,
            parameter: 0,
            work_item: 0,
        };
        let raised = verdict(&[entry(0, 1), returned(15)]);
        assert_eq!(
            raised.bugcheck.clone().map(|b| (b.code, b.args)),
            Some((0xE1, [0x8000_1000, 15, 0, 0]))
        );
        assert_eq!(raised.exit_code(), ExitCode::Violation);
        assert!(verdict(&[entry(0, 1), returned(0)]).bugcheck.is_none());
    }

    #[test]
    fn without_pool_tracking_a_leak_is_not_seen() {
        let events = [alloc(0x1000, 0x6c), entry(0, 1), Event::UnloadReturn];
        let irql_only = judge_with(0x2, &events).expect("judged");
        assert_eq!(irql_only.exit_code(), ExitCode::Clean);
        assert!(irql_only.leaks.is_empty() && !irql_only.verifier);
        let tracked = judge_with(0xa, &events).expect("judged");
        assert_eq!(tracked.bugcheck.map(|b| b.args[0]), Some(0x62));
    }

    fn judge_with(flags: u32, events: &[Event]) -> Result<Verdict, CannotJudge> {
        judge_in(None, VerifierFlags(flags), events)
    }

    // No verifier: the release kernel's own checks (WRK base/ntos/ex/pool.c,
    // ExFreePoolWithTag's IS_POOL_HEADER_MARKED_ALLOCATED and
    // ASSERT_ALLOCATE_IRQL; bug-check-0xc2--bad-pool-caller.md: 0x07 Arg3
    // the header's contents, Arg4 the block; 0x08 Arg2 IRQL, Arg3 pool
    // type, Arg4 size). The verifier's own 0xC4s and 0x62 never appear.
    #[test]
    fn without_the_verifier_only_the_release_kernel_checks() {
        let twice = Event::FreedTwice {
            address: 0x1000,
            header: Some(0x0008_0108),
        };
        // A second free with no header for nt's check (a big-pool block):
        // never a pass, and no verifier's 0xC4 either.
        let error = judge_with(0, &[alloc(0x1000, 16), free(0x1000), free(0x1000)])
            .expect_err("not judged");
        assert!(
            error
                .to_string()
                .contains("a second time with the verifier off"),
            "{error}"
        );
        // The engine reports the header before the second free's call.
        let double = judge_with(
            0,
            &[alloc(0x1000, 16), free(0x1000), twice.clone(), free(0x1000)],
        )
        .expect("judged");
        assert_eq!(
            double.bugcheck.map(|b| (b.code, b.args)),
            Some((0xC2, [0x07, 0, 0x0008_0108, 0x1000]))
        );
        // The verifier's 0x13 instead, Arg4 the header's contents (the WRK's
        // ExFreePoolSanityChecks; bug-check-0xc4: "Pool header contents").
        let verified =
            judge_with(8, &[alloc(0x1000, 16), free(0x1000), twice, free(0x1000)]).expect("judged");
        assert_eq!(
            verified.bugcheck.map(|b| b.args),
            Some([0x13, 0, 0x1000 - 16, 0x0008_0108])
        );
        let irql = judge_with(0, &[alloc_at(0x1000, 0x6c, 1, Some(2))]).expect("judged");
        assert_eq!(
            irql.bugcheck.map(|b| (b.code, b.args)),
            Some((0xC2, [0x08, 2, 1, 0x6c]))
        );
        let zero = judge_with(0, &[alloc(0x1000, 0), entry(0, 1)]).expect("judged");
        assert!(zero.bugcheck.is_none(), "served as one byte");
        let leak =
            judge_with(0, &[alloc(0x1000, 16), entry(0, 1), Event::UnloadReturn]).expect("judged");
        assert_eq!(leak.exit_code(), ExitCode::Clean);
        assert!(!leak.verifier && leak.leaks.is_empty());
        let error = judge_with(0, &[free(0x7777)]).expect_err("not judged");
        assert!(
            error.to_string().contains("no allocation returned"),
            "{error}"
        );
    }

    // Special pool alone: the verifier does not track the block, its page
    // is gone, MmFreeSpecialPool bug-checks 0xC1 / 0x20 (Arg1 the address,
    // Arg3 0; bug-check-0xc1, ReactOS ntoskrnl/mm/ARM3/special.c).
    #[test]
    fn a_special_pool_block_freed_twice_is_c1_20() {
        let block = 0xFFFF_F8A0_1000_0F90;
        let events = [
            alloc(block, 0x6c),
            free(block),
            free(block),
            Event::FreedTwice {
                address: block,
                header: None,
            },
        ];
        let special = judge_with(1, &events).expect("judged");
        assert_eq!(
            special.bugcheck.map(|b| (b.code, b.args)),
            Some((0xC1, [block, 0, 0, 0x20]))
        );
        let tracked = judge_with(9, &events).expect("judged");
        assert_eq!(
            tracked.bugcheck.map(|b| (b.code, b.args[0])),
            Some((0xC4, 0x13))
        );
    }

    #[test]
    fn a_huge_size_reported_as_allocated_saturates_instead_of_overflowing() {
        // An engine's report is input: a size near 2^64 must not panic.
        let verdict = verdict(&[
            alloc(0x1000, u64::MAX),
            alloc(0x2000, u64::MAX - 0xfff),
            free(0x1000),
            free(0x2000),
        ]);
        assert_eq!(verdict.pool_stats.peak_paged, (2, u64::MAX));
        assert_eq!(verdict.pool_stats.current_paged.0, 0);
    }

    #[test]
    fn events_after_a_bugcheck_are_ignored() {
        let verdict = verdict(&[free(0x7777), alloc(0x1000, 0)]);
        assert_eq!(verdict.bugcheck.map(|b| b.args[0]), Some(0x10));
    }

    #[test]
    fn no_unload_routine_and_hangs() {
        assert_eq!(verdict(&[entry(0, 0)]).outcome(), Outcome::CannotUnload);
        let limit = crate::verdict::Limit::Instructions { count: 10 };
        let hung = verdict(&[
            alloc(0x1000, 4),
            Event::Stopped {
                phase: Phase::Entry,
                limit,
            },
        ]);
        assert_eq!(hung.outcome(), Outcome::EntryDidNotReturn);
        assert_eq!(hung.limit, Some(limit));
        assert_eq!(
            verdict(&[entry(0, 1)]).outcome(),
            Outcome::UnloadDidNotReturn
        );
    }

    fn crash(kind: FaultKind, pc: u64, address: Option<u64>) -> Event {
        Event::Fault {
            phase: Phase::Entry,
            kind,
            pc,
            address,
        }
    }

    #[test]
    fn crash_on_a_kernel_address_is_0x50_else_0x7e() {
        let verdict_low = verdict(&[crash(FaultKind::Write, BASE + 0x1010, Some(0x10))]);
        assert_eq!(
            verdict_low.bugcheck.map(|b| (b.code, b.args[0])),
            Some((0x7E, 0xC000_0005))
        );
        assert_eq!(
            verdict_low.fault.map(|f| f.symbol),
            Some("Test!DriverEntry+0x10".into())
        );
        let high = verdict(&[crash(
            FaultKind::Write,
            BASE + 0x1010,
            Some(0xFFFF_F800_0000_0000),
        )]);
        assert_eq!(high.bugcheck.map(|b| (b.code, b.args[1])), Some((0x50, 1)));
        let overflow = verdict(&[crash(FaultKind::StackOverflow, BASE + 0x1010, Some(0x8000))]);
        let bugcheck = overflow.bugcheck.expect("double fault");
        assert_eq!((bugcheck.code, bugcheck.args), (0x7F, [8, 0, 0, 0]));
        let read_only = verdict(&[crash(
            FaultKind::ReadOnlyWrite,
            BASE + 0x1010,
            Some(0x82a0_4000),
        )]);
        let bugcheck = read_only.bugcheck.expect("0xBE");
        assert_eq!(
            (bugcheck.code, bugcheck.args),
            (0xBE, [0x82a0_4000, 0, 0, 0])
        );
        let divide = verdict(&[crash(FaultKind::DivideError, BASE + 0x1010, None)]);
        assert_eq!(
            divide.bugcheck.map(|b| (b.code, b.args[0])),
            Some((0x7E, 0xC000_0094))
        );
    }

    #[test]
    fn a_fault_outside_the_driver_cannot_be_judged() {
        let call = Event::Call {
            phase: Phase::Entry,
            routine: "WDFLDR.SYS!WdfVersionBind".into(),
            caller: BASE + 0x1005,
        };
        let error = judge_events(&[call, crash(FaultKind::Execute, 0, Some(0))]).expect_err("gap");
        let text = error.to_string();
        assert!(
            text.contains("right after the engine's WDFLDR.SYS!WdfVersionBind returned to Test!DriverEntry+0x5"),
            "{text}"
        );
        assert!(text.contains("Test!DriverEntry+0x5"), "{text}");
        assert!(text.ends_with("the run cannot be judged"), "{text}");
    }

    #[test]
    fn a_jump_to_nowhere_with_no_engine_call_before_is_the_drivers() {
        let verdict = verdict(&[crash(FaultKind::Execute, 0, Some(0))]);
        assert_eq!(
            verdict.bugcheck.map(|b| (b.code, b.args[0])),
            Some((0x7E, 0xC000_0005))
        );
        let read_in_engine = judge_events(&[crash(FaultKind::Read, 0x8000_0000, Some(0))]);
        assert!(
            read_in_engine.is_err(),
            "a read fault in engine code is a gap"
        );
    }

    #[test]
    fn engine_gaps_are_never_verdicts() {
        let gap = Event::Gap {
            phase: Some(Phase::Entry),
            gap: Gap::MissingRoutine {
                routine: "ntoskrnl.exe!Foo".into(),
            },
            caller: Some(BASE + 0x1005),
        };
        let error = judge_events(&[alloc(0x1000, 4), gap]).expect_err("not judged");
        assert!(
            error
                .to_string()
                .contains("calls ntoskrnl.exe!Foo from Test!DriverEntry+0x5, which is not among the kernel exports the harness knows and which the native engine does not implement"),
            "{error}"
        );
    }

    /// Debug output past 1 MiB is counted, not kept, whichever engine
    /// reported it; a replay of the counted form gives the same verdict.
    #[test]
    fn debug_output_is_capped_and_counted() {
        let line = format!("{}\n", "x".repeat(99));
        let mut events: Vec<Event> = (0..20_000)
            .map(|_| Event::DebugPrint {
                phase: Phase::Entry,
                text: line.clone(),
            })
            .collect();
        events.push(Event::EntryReturn {
            status: 0,
            unload_routine: BASE + 0x1100,
        });
        events.push(Event::UnloadReturn);
        let capped = verdict(&events);
        let kept = MAX_DEBUG_OUTPUT / line.len();
        assert_eq!(capped.debug_output.len(), kept);
        assert_eq!(capped.exit_code(), ExitCode::Clean);
        let dropped = 20_000 - kept as u64;
        assert!(
            capped.notes.contains(&format!(
                "debug output kept up to 1 MiB: {dropped} later DbgPrint calls ({} bytes) not shown",
                dropped * 100
            )),
            "{:?}",
            capped.notes
        );
        let mut counted = events[..kept].to_vec();
        counted.push(Event::DebugPrintDropped {
            calls: dropped,
            bytes: dropped * 100,
        });
        counted.extend_from_slice(&events[20_000..]);
        assert_eq!(verdict(&counted), capped);
    }
}
