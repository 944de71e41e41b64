//! What the kernel's own functions do at their traps: the I/O manager's
//! load and unload, the verifier's pool checks, the allocator, bug checks.

use std::sync::Arc;

use super::cpu::{self, Reg, Uc};
use super::machine::{Halt, Thread, run_routine};
use super::nt::{Trap, Unverified};
use super::pool::{Grow, Pool};
use super::routines::{Call, Conv};
use harness_core::events::{Event, Phase};
use harness_core::nt::{
    BAD_POOL_CALLER, DRIVER_VERIFIER_DETECTED_VIOLATION, SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION,
    WORKER_THREAD_RETURNED_AT_BAD_IRQL, status,
};
use harness_core::pool_api::{PoolOp, PoolRoutine};
use harness_core::verifier::{LOW_RESOURCES, SPECIAL_POOL, low_resources_draw};
use harness_core::wdm;

/// Runs the engine's part of a trap.
///
/// # Errors
/// The machine must stop (a gap, a thread switch, a thread's end).
pub fn run(uc: &mut Uc<'_>, trap: Trap) -> Result<(), Halt> {
    match trap {
        Trap::Routine(index) => run_routine(uc, index),
        Trap::VerifyAllocation(routine) => verify_allocation(uc, routine),
        Trap::RecordAllocation(routine) => record_allocation(uc, routine),
        Trap::VerifyFree(routine) => verify_free(uc, routine),
        Trap::Allocate => allocate_trap(uc),
        Trap::Free => free_trap(uc),
        Trap::CheckLeaks => check_leaks(uc),
        Trap::BugCheck => bug_check(uc),
        Trap::WorkItem => {
            work_item(uc);
            Ok(())
        }
        Trap::WorkerReturned => worker_returned(uc),
        Trap::SpecialFree => special_free(uc),
        Trap::ImageLoaded => {
            let kernel = uc.get_data_mut();
            kernel.loaded.mapped = true;
            let stop = kernel.debugger && kernel.break_on_load;
            cpu::set_reg(uc, Reg::Ax, u64::from(stop));
            Ok(())
        }
        Trap::ReleaseCheck => decision(uc, false, &[BAD_POOL_CALLER]),
        Trap::Unverified(step) => unverified(uc, step),
        Trap::StartDriver => super::objects::start_driver(uc),
        Trap::DriverStarted => driver_started(uc),
        Trap::LoadOrUnload => load_or_unload(uc),
        Trap::UnloadReturned => unload_returned(uc),
        Trap::UnloadRequested => unload_requested(uc),
        Trap::ImageUnloaded => {
            uc.get_data_mut().loaded.mapped = false;
            Ok(())
        }
        Trap::Dereference => dereference(uc),
        Trap::DriverDeleted => super::objects::delete_driver(uc),
        Trap::InvalidDeviceRequest => {
            cpu::set_reg(uc, Reg::Ax, u64::from(status::INVALID_DEVICE_REQUEST));
            Ok(())
        }
        Trap::ThreadExit => Err(Halt::ThreadExit),
    }
}

/// The argument slots of a pool routine's call, as the verifier's thunk got them.
fn pool_args(call: &Call<'_, '_>, routine: PoolRoutine) -> Result<Vec<u64>, Halt> {
    (0..routine.slots(call.arch()))
        .map(|index| call.arg(index))
        .collect()
}

/// When the verifier has just decided on a bug check, leaves its
/// parameters in `VfPendingBugCheck` and says so in `ax`.
fn verifier_decision(uc: &mut Uc<'_>, already: bool) -> Result<(), Halt> {
    decision(
        uc,
        already,
        &[
            DRIVER_VERIFIER_DETECTED_VIOLATION,
            WORKER_THREAD_RETURNED_AT_BAD_IRQL,
            SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION,
        ],
    )
}

/// As [`verifier_decision`], for a bug check with one of `codes`.
fn decision(uc: &mut Uc<'_>, already: bool, codes: &[u32]) -> Result<(), Halt> {
    let decided = uc
        .get_data()
        .tracker
        .bugcheck()
        .cloned()
        .filter(|_| !already);
    let Some(bugcheck) = decided.filter(|bugcheck| codes.contains(&bugcheck.code)) else {
        cpu::set_reg(uc, Reg::Ax, 0);
        return Ok(());
    };
    let pending = uc.get_data().nt.data.pending_bugcheck;
    let size = cpu::arch(uc).pointer_size();
    for (index, value) in bugcheck.args.iter().enumerate() {
        cpu::write_ptr(uc, pending + size * index as u64, *value)?;
    }
    cpu::set_reg(uc, Reg::Ax, 1);
    Ok(())
}

fn already_bugchecked(uc: &Uc<'_>) -> bool {
    uc.get_data().tracker.bugcheck().is_some()
}

/// The verifier's check before an allocation: a zero-byte request.
fn verify_allocation(uc: &mut Uc<'_>, routine: PoolRoutine) -> Result<(), Halt> {
    let already = already_bugchecked(uc);
    let mut call = Call::at_trap(uc, Conv::Stdcall, routine.name())?;
    let args = pool_args(&call, routine)?;
    let arch = call.arch();
    let irql = call.kernel().irql;
    // Sizes and IRQLs the verifier refuses: the tracker judges this call
    // now, before the allocator runs.
    let request = routine.read(arch, &args, 0);
    if let PoolOp::Alloc { size, .. } = request {
        // The thunk passes the allocator a rounded size; special pool lays
        // out the size the driver asked for.
        call.kernel().special.requested = Some(size);
    }
    let zero = matches!(request, PoolOp::Alloc { size: 0, .. });
    // With the verifier off the release kernel's allocator refuses the IRQL
    // (`ReleaseAllocCheck`); the tracker judges either now.
    let refused = irql > refusable_irql(routine, arch, &args);
    if zero || refused {
        let phase = call.kernel().phase;
        let caller = call.caller;
        call.emit(Event::PoolCall {
            phase,
            routine,
            args,
            result: 0,
            caller,
            injected_failure: false,
            irql: Some(irql),
        })?;
    }
    verifier_decision(uc, already)
}

/// nt's own report of a pool call, for a driver that is not verified (its
/// imports bind to nt's routines): what the thunks report otherwise.
fn unverified(uc: &mut Uc<'_>, step: Unverified) -> Result<(), Halt> {
    if uc.get_data().verifier_flags.0 != 0 {
        return Ok(()); // the thunk reported the call
    }
    // Called from nt's own code (a pool thunk such as `ExFreePool2`'s, or
    // `ExFreePool`), which reported the driver's call already.
    let caller = Call::at_trap(uc, Conv::Stdcall, "ExFreePoolWithTag")?.caller;
    let (code_start, code_end) = uc.get_data().nt.code;
    if (code_start..code_end).contains(&caller) {
        return Ok(());
    }
    match step {
        Unverified::Allocation => verify_allocation(uc, PoolRoutine::ExAllocatePoolWithTag),
        Unverified::Record => record_allocation(uc, PoolRoutine::ExAllocatePoolWithTag),
        Unverified::Free => verify_free(uc, PoolRoutine::ExFreePoolWithTag),
    }
}

/// The highest IRQL the verifier lets a driver call `routine` at: `APC_LEVEL`
/// for paged pool, `DISPATCH_LEVEL` for nonpaged (frees: judged by the
/// tracker, which knows the block's type).
fn refusable_irql(routine: PoolRoutine, arch: harness_core::arch::Arch, args: &[u64]) -> u8 {
    match routine.read(arch, args, 0) {
        PoolOp::Alloc { pool, .. } if pool.is_paged() == Some(true) => 1,
        _ => 2,
    }
}

/// Allocates for the driver: counts the call, fails it if asked to,
/// writes the headers. Returns the address (0: failed) and whether the
/// failure was injected.
fn allocate(uc: &mut Uc<'_>, pool_type: u32, size: u64, tag: u32) -> Result<(u64, bool), Halt> {
    let kernel = uc.get_data_mut();
    kernel.allocations += 1;
    let requested = kernel.special.requested.take().unwrap_or(size);
    if kernel.fail_allocation == Some(kernel.allocations) {
        return Ok((0, true));
    }
    if kernel.verifier_flags.has(LOW_RESOURCES) {
        let (state, fail) = low_resources_draw(kernel.low_resources);
        kernel.low_resources = state;
        if fail {
            return Ok((0, true));
        }
    }
    if kernel.verifier_flags.has(SPECIAL_POOL)
        && let Some(address) = super::special_pool::allocate(uc, requested, tag)?
    {
        return Ok((address, false));
    }
    let block = allocate_pool(uc, pool_type, size, tag)?;
    Ok((block, false))
}

/// Grows the pool by mapping more pages.
struct Mapper<'u, 'a>(&'u mut Uc<'a>);

impl Grow for Mapper<'_, '_> {
    fn grow(&mut self, va: u64, size: u64) -> bool {
        let Ok(region) = self.0.get_data_mut().space.reserve(
            va,
            size,
            unicorn_engine::Prot::READ | unicorn_engine::Prot::WRITE,
            "pool",
        ) else {
            return false;
        };
        self.0
            .mem_map(region.pa, region.size, unicorn_engine::Prot::ALL)
            .is_ok()
    }
}

/// A pool allocation (the driver's or the kernel's own): 0 when the pool
/// is exhausted.
///
/// # Errors
/// A header could not be written (never, for mapped pages).
pub fn allocate_pool(uc: &mut Uc<'_>, pool_type: u32, size: u64, tag: u32) -> Result<u64, Halt> {
    let arch = cpu::arch(uc);
    let mut pool = std::mem::replace(&mut uc.get_data_mut().pool, Pool::new(arch));
    let allocated = pool.allocate(pool_type, size, tag, &mut Mapper(uc));
    uc.get_data_mut().pool = pool;
    let Some((block, writes)) = allocated else {
        return Ok(0);
    };
    for (address, bytes) in writes {
        cpu::write(uc, address, &bytes)?;
    }
    Ok(block.address)
}

/// Frees a block; returns its tag (0: no block there).
///
/// # Errors
/// A header could not be written.
pub fn free_pool(uc: &mut Uc<'_>, address: u64) -> Result<u32, Halt> {
    if let Some(tag) = super::special_pool::free(uc, address) {
        return Ok(tag);
    }
    let freed = uc.get_data_mut().pool.free(address);
    let Some((block, writes)) = freed else {
        return Ok(0);
    };
    for (at, bytes) in writes {
        cpu::write(uc, at, &bytes)?;
    }
    Ok(block.tag)
}

/// `ExAllocatePoolWithTag`'s own trap: the allocation itself.
fn allocate_trap(uc: &mut Uc<'_>) -> Result<(), Halt> {
    let call = Call::at_trap(uc, Conv::Stdcall, "ExAllocatePoolWithTag")?;
    let (pool_type, size, tag) = (call.arg32(0)?, call.arg(1)?, call.arg32(2)?);
    let (address, injected) = allocate(uc, pool_type, size, tag)?;
    uc.get_data_mut().last_injected = injected;
    cpu::set_reg(uc, Reg::Ax, address);
    cpu::set_reg(uc, Reg::Cx, u64::from(tag));
    Ok(())
}

/// The verifier records an allocation's result (and, for the routines
/// without the walkthrough's call chain, allocates here).
fn record_allocation(uc: &mut Uc<'_>, routine: PoolRoutine) -> Result<(), Halt> {
    let mut call = Call::at_trap(uc, Conv::Stdcall, routine.name())?;
    let args = pool_args(&call, routine)?;
    let arch = call.arch();
    let PoolOp::Alloc {
        pool, size, tag, ..
    } = routine.read(arch, &args, 0)
    else {
        return Ok(());
    };
    let (result, injected) = if routine == PoolRoutine::ExAllocatePoolWithTag {
        let injected = call.kernel().last_injected;
        (cpu::reg(call.uc, Reg::Ax), injected)
    } else {
        let pool_type = pool.value().unwrap_or(0);
        let (address, injected) = allocate(call.uc, pool_type, size, tag)?;
        if routine == PoolRoutine::ExAllocatePoolZero || routine == PoolRoutine::ExAllocatePool2 {
            // Both return zeroed memory (ExAllocatePool2 unless told otherwise).
            if address != 0 {
                cpu::write(
                    call.uc,
                    address,
                    &vec![0; usize::try_from(size).unwrap_or(0)],
                )?;
            }
        }
        (address, injected)
    };
    let phase = call.kernel().phase;
    let caller = call.caller;
    let irql = call.kernel().irql;
    call.emit(Event::PoolCall {
        phase,
        routine,
        args,
        result,
        caller,
        injected_failure: injected,
        irql: Some(irql),
    })?;
    cpu::set_reg(uc, Reg::Ax, result);
    cpu::set_reg(uc, Reg::Cx, u64::from(tag));
    Ok(())
}

/// The verifier's check of a free: the tracker decides (bad address,
/// double free).
fn verify_free(uc: &mut Uc<'_>, routine: PoolRoutine) -> Result<(), Halt> {
    let already = already_bugchecked(uc);
    let mut call = Call::at_trap(uc, Conv::Stdcall, routine.name())?;
    let args = pool_args(&call, routine)?;
    let phase = call.kernel().phase;
    let caller = call.caller;
    let irql = call.kernel().irql;
    if let PoolOp::Free { address, .. } = routine.read(call.arch(), &args, 0)
        && let Some(header) = freed_header(call.uc, address)?
    {
        // What the header checks will find (the tracker decides whose).
        call.emit(Event::FreedTwice {
            address,
            header: Some(header),
        })?;
    }
    call.emit(Event::PoolCall {
        phase,
        routine,
        args,
        result: 0,
        caller,
        injected_failure: false,
        irql: Some(irql),
    })?;
    verifier_decision(uc, already)
}

/// `MmFreeSpecialPool`'s check before a free: the pattern around a special
/// pool block; `ax` = 1 when it changed (the bug check's parameters pending).
fn special_free(uc: &mut Uc<'_>) -> Result<(), Halt> {
    let already = already_bugchecked(uc);
    let call = Call::at_trap(uc, Conv::Stdcall, "MmFreeSpecialPool")?;
    let address = call.arg(0)?;
    let gone = uc
        .get_data()
        .special
        .block_at(address)
        .is_some_and(|block| block.address == address && !block.live);
    if gone {
        // Its page is no longer mapped (0xC1 / 0x20, the tracker decides).
        super::machine::emit(
            uc,
            Event::FreedTwice {
                address,
                header: None,
            },
        )?;
    } else if let Some(corrupted) = super::special_pool::corrupted(uc, address)? {
        super::machine::emit(uc, Event::SpecialPoolCorrupted { address, corrupted })?;
    }
    verifier_decision(uc, already)
}

/// The first ULONG of the header of the pool block at `address` when the
/// pool has it free already (the WRK's checks read it: the verifier's
/// `ExFreePoolSanityChecks` and the release `ExFreePoolWithTag`).
fn freed_header(uc: &Uc<'_>, address: u64) -> Result<Option<u32>, Halt> {
    let header = uc
        .get_data()
        .pool
        .block(address)
        .filter(|block| !block.allocated && !block.big)
        .map(|block| block.header);
    let Some(header) = header else {
        return Ok(None);
    };
    let mut ulong1 = [0; 4];
    cpu::read(uc, header, &mut ulong1).map_err(|_| Halt::Gap)?;
    Ok(Some(u32::from_le_bytes(ulong1)))
}

/// The free itself: `ax` = the block's tag, for nt!PoolHitTag.
fn free_trap(uc: &mut Uc<'_>) -> Result<(), Halt> {
    let call = Call::at_trap(uc, Conv::Stdcall, "ExFreePoolWithTag")?;
    let address = call.arg(0)?;
    let tag = free_pool(uc, address)?;
    cpu::set_reg(uc, Reg::Ax, u64::from(tag));
    Ok(())
}

/// `VfPoolCheckForLeaks`: the tracker judged the unload; if it found
/// allocations outstanding, the verifier bug-checks now.
fn check_leaks(uc: &mut Uc<'_>) -> Result<(), Halt> {
    let leaked = uc
        .get_data()
        .tracker
        .bugcheck()
        .is_some_and(|bugcheck| bugcheck.is_verifier(harness_core::nt::c4::LEAKED_AT_UNLOAD));
    if leaked {
        verifier_decision(uc, false)
    } else {
        cpu::set_reg(uc, Reg::Ax, 0);
        Ok(())
    }
}

/// `KeBugCheckEx`: the bug check's data, as `!analyze` reads it.
fn bug_check(uc: &mut Uc<'_>) -> Result<(), Halt> {
    let mut call = Call::at_trap(uc, Conv::Stdcall, "KeBugCheckEx")?;
    let code = call.arg32(0)?;
    let args = [call.arg(1)?, call.arg(2)?, call.arg(3)?, call.arg(4)?];
    let caller = call.caller;
    let data = call.kernel().nt.data.bugcheck_data;
    let size = call.arch().pointer_size();
    cpu::write_ptr(call.uc, data, u64::from(code))?;
    for (index, value) in args.iter().enumerate() {
        cpu::write_ptr(call.uc, data + size * (index as u64 + 1), *value)?;
    }
    // A bug check is a bug check whoever calls KeBugCheckEx: the driver,
    // or nt's KeBugCheck on its behalf. Only the verifier's own (its
    // decision is recorded already) is not reported again.
    if call.kernel().in_driver(caller) || call.kernel().tracker.bugcheck().is_none() {
        let phase = call.kernel().phase;
        call.emit(Event::BugCheckCall {
            phase,
            code,
            args,
            caller,
        })?;
    }
    Ok(())
}

/// `ExpWorkerThread` got control back from its work item: at a raised
/// IRQL it bug-checks (`ax` = 1, the parameters in `VfPendingBugCheck`).
fn worker_returned(uc: &mut Uc<'_>) -> Result<(), Halt> {
    let already = already_bugchecked(uc);
    let irql = uc.get_data().irql;
    let routine = uc.get_data().nt.symbol("IopLoadUnloadDriver").unwrap_or(0);
    // The emulated worker has no WORK_QUEUE_ITEM: parameter and item are 0.
    super::machine::emit(
        uc,
        Event::WorkerReturn {
            irql,
            routine,
            parameter: 0,
            work_item: 0,
        },
    )?;
    verifier_decision(uc, already)
}

/// `ExpWorkerThread` takes its work item: `IopLoadUnloadDriver`.
fn work_item(uc: &mut Uc<'_>) {
    let nt = Arc::clone(&uc.get_data().nt);
    let routine = nt.symbol("IopLoadUnloadDriver").unwrap_or(0);
    cpu::set_reg(uc, Reg::Ax, routine);
    cpu::set_reg(uc, Reg::Cx, 0);
}

fn driver_object_field(uc: &Uc<'_>, offset: u64) -> Result<u64, Halt> {
    let object = uc.get_data().loaded.driver_object;
    Ok(cpu::read_ptr(uc, object + offset)?)
}

fn layout(uc: &Uc<'_>) -> wdm::DriverObject {
    wdm::DriverObject::for_arch(cpu::arch(uc))
}

/// `IopLoadUnloadDriver`: load (call `IopLoadDriver`) or unload (call the
/// driver's unload routine with its driver object).
fn load_or_unload(uc: &mut Uc<'_>) -> Result<(), Halt> {
    if uc.get_data().work() == Some(super::machine::Work::Unload) {
        let unload = driver_object_field(uc, layout(uc).driver_unload)?;
        let object = uc.get_data().loaded.driver_object;
        uc.get_data_mut().phase = Phase::Unload;
        cpu::set_reg(uc, Reg::Ax, unload);
        cpu::set_reg(uc, Reg::Cx, object);
    } else {
        let nt = Arc::clone(&uc.get_data().nt);
        cpu::set_reg(uc, Reg::Ax, nt.symbol("IopLoadDriver").unwrap_or(0));
        cpu::set_reg(uc, Reg::Cx, 0);
    }
    Ok(())
}

/// `IopLoadDriver`, after `DriverEntry`: its status; a failure unloads the
/// image again (and the verifier checks it for leaks).
fn driver_started(uc: &mut Uc<'_>) -> Result<(), Halt> {
    let status_value = u32::try_from(cpu::reg(uc, Reg::Ax) & 0xffff_ffff).unwrap_or(0);
    let unload = driver_object_field(uc, layout(uc).driver_unload)?;
    uc.get_data_mut().loaded.entry_status = Some(status_value);
    super::machine::emit(
        uc,
        Event::EntryReturn {
            status: status_value,
            unload_routine: unload,
        },
    )?;
    let failed = status::failed(status_value);
    let object = uc.get_data().loaded.driver_object;
    cpu::set_reg(uc, Reg::Ax, u64::from(failed));
    cpu::set_reg(uc, Reg::Cx, object);
    Ok(())
}

/// After the unload routine returned.
fn unload_returned(uc: &mut Uc<'_>) -> Result<(), Halt> {
    if uc.get_data().work() == Some(super::machine::Work::Unload) {
        super::machine::emit(uc, Event::UnloadReturn)?;
    }
    Ok(())
}

/// `IopUnloadDriver`: no unload routine, no unload (`sc stop` fails with
/// 1052); otherwise the unload routine runs on the worker thread first.
fn unload_requested(uc: &mut Uc<'_>) -> Result<(), Halt> {
    let unload = driver_object_field(uc, layout(uc).driver_unload)?;
    if unload == 0 {
        cpu::set_reg(uc, Reg::Ax, 0);
        return Ok(());
    }
    let object = uc.get_data().loaded.driver_object;
    cpu::set_reg(uc, Reg::Ax, 1);
    cpu::set_reg(uc, Reg::Cx, object);
    debug_assert_eq!(uc.get_data().thread, Thread::Caller);
    Err(Halt::SwitchToWorker)
}

/// `ObfDereferenceObjectWithTag`: the unloading driver's object goes, any
/// other object stays.
fn dereference(uc: &mut Uc<'_>) -> Result<(), Halt> {
    let call = Call::at_trap(uc, Conv::Fastcall, "ObfDereferenceObjectWithTag")?;
    let object = call.arg(0)?;
    let kernel = uc.get_data();
    let goes = object == kernel.loaded.driver_object
        && kernel.thread == Thread::Caller
        && kernel.loaded.mapped;
    if goes {
        // IopUnloadDriver made the object temporary just before (WRK,
        // io/iomgr/internal.c): its name has left \Driver already.
        super::ob::remove_driver(uc, object)?;
    }
    cpu::set_reg(uc, Reg::Ax, u64::from(goes));
    cpu::set_reg(uc, Reg::Cx, object);
    Ok(())
}
