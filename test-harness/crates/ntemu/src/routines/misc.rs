//! Versions, IRQL and spin locks, time, events, and the other small
//! routines an everyday WDM driver calls. The machine has one processor;
//! a spin lock that is already held when acquired would deadlock there,
//! as it would on Windows with one CPU at `DISPATCH_LEVEL`.

use std::sync::Arc;

use super::Call;
use crate::cpu;
use crate::machine::{Halt, resolve_export};
use harness_core::arch::Arch;
use harness_core::events::Event;
use harness_core::nt::status;
use harness_core::verdict::{FaultKind, Limit};

/// `DISPATCH_LEVEL`.
const DISPATCH_LEVEL: u8 = 2;

/// Returns 0 (routines with nothing to do on this machine).
pub const fn zero(_call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    Ok(0)
}

/// `RtlGetVersion(lpVersionInformation)`: fills `RTL_OSVERSIONINFOW`, or
/// `RTL_OSVERSIONINFOEXW` when its size says so.
pub fn rtl_get_version(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let info = call.arg(0)?;
    let size = cpu::read_u32(call.uc, info)?;
    if size != 276 && size != 284 {
        return Ok(u64::from(status::INVALID_PARAMETER));
    }
    let profile = call.kernel().profile.clone();
    cpu::write_uint(call.uc, info + 4, u64::from(profile.major), 4)?;
    cpu::write_uint(call.uc, info + 8, u64::from(profile.minor), 4)?;
    cpu::write_uint(call.uc, info + 12, u64::from(profile.build), 4)?;
    cpu::write_uint(call.uc, info + 16, 2, 4)?; // VER_PLATFORM_WIN32_NT
    let csd: Vec<u8> = profile
        .service_pack
        .encode_utf16()
        .chain([0])
        .flat_map(u16::to_le_bytes)
        .collect();
    cpu::write(call.uc, info + 20, &csd)?;
    if size == 284 {
        cpu::write_uint(
            call.uc,
            info + 276,
            u64::from(profile.service_pack_major),
            2,
        )?;
        cpu::write_uint(call.uc, info + 278, 0, 2)?;
        cpu::write_uint(call.uc, info + 280, 0x100, 2)?; // VER_SUITE_SINGLEUSERTS
        cpu::write_uint(call.uc, info + 282, 1, 1)?; // VER_NT_WORKSTATION
    }
    Ok(u64::from(status::SUCCESS))
}

/// `PsGetVersion(MajorVersion, MinorVersion, BuildNumber, CSDVersion)`:
/// TRUE on a checked build, FALSE here.
pub fn ps_get_version(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let profile = call.kernel().profile.clone();
    for (index, value) in [profile.major, profile.minor, profile.build]
        .into_iter()
        .enumerate()
    {
        let pointer = call.arg(index)?;
        if pointer != 0 {
            cpu::write_uint(call.uc, pointer, u64::from(value), 4)?;
        }
    }
    Ok(0)
}

/// The current IRQL, kept by the kernel (x64 drivers' inline CR8 accesses
/// are carried out on it too).
fn irql(call: &Call<'_, '_>) -> u8 {
    call.uc.get_data().irql()
}

fn set_irql(call: &mut Call<'_, '_>, level: u8) {
    let caller = call.caller;
    call.kernel().set_irql(level, caller);
}

/// `KeGetCurrentIrql()`.
pub fn ke_get_current_irql(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    Ok(u64::from(irql(call)))
}

/// `KfRaiseIrql(NewIrql)` / `KeRaiseIrql`: returns the old IRQL.
pub fn kf_raise_irql(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let old = irql(call);
    let new = u8::try_from(call.arg(0)? & 0xff).unwrap_or(0);
    set_irql(call, new);
    Ok(u64::from(old))
}

/// `KfLowerIrql(NewIrql)` / `KeLowerIrql`.
pub fn kf_lower_irql(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let new = u8::try_from(call.arg(0)? & 0xff).unwrap_or(0);
    set_irql(call, new);
    Ok(0)
}

/// `KeRaiseIrqlToDpcLevel()`: returns the old IRQL.
pub fn ke_raise_irql_to_dpc_level(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let old = irql(call);
    set_irql(call, DISPATCH_LEVEL);
    Ok(u64::from(old))
}

/// `KeInitializeSpinLock(SpinLock)`.
pub fn ke_initialize_spin_lock(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let lock = call.arg(0)?;
    cpu::write_ptr(call.uc, lock, 0)?;
    Ok(0)
}

/// Takes a spin lock. One already held can never be released on this
/// one-processor machine: Windows would spin until the end of time, and
/// the machine's budget ends the routine as it would end any such loop.
fn acquire(call: &mut Call<'_, '_>, lock: u64) -> Result<(), Halt> {
    if cpu::read_ptr(call.uc, lock)? != 0 {
        let phase = call.kernel().phase;
        let count = call.kernel().max_instructions;
        call.emit(Event::Stopped {
            phase,
            limit: Limit::Instructions { count },
        })?;
        return Err(Halt::Spin);
    }
    cpu::write_ptr(call.uc, lock, 1)?;
    Ok(())
}

/// `KeAcquireSpinLockRaiseToDpc(SpinLock)` / `KfAcquireSpinLock`: the old IRQL.
pub fn ke_acquire_spin_lock_raise_to_dpc(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let lock = call.arg(0)?;
    let old = irql(call);
    acquire(call, lock)?;
    set_irql(call, DISPATCH_LEVEL);
    Ok(u64::from(old))
}

/// `KeReleaseSpinLock(SpinLock, NewIrql)` / `KfReleaseSpinLock`.
pub fn ke_release_spin_lock(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let lock = call.arg(0)?;
    let new = u8::try_from(call.arg(1)? & 0xff).unwrap_or(0);
    cpu::write_ptr(call.uc, lock, 0)?;
    set_irql(call, new);
    Ok(0)
}

/// `KeAcquireSpinLockAtDpcLevel(SpinLock)`.
pub fn ke_acquire_spin_lock_at_dpc_level(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let lock = call.arg(0)?;
    acquire(call, lock)?;
    Ok(0)
}

/// `KeReleaseSpinLockFromDpcLevel(SpinLock)`.
pub fn ke_release_spin_lock_from_dpc_level(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let lock = call.arg(0)?;
    cpu::write_ptr(call.uc, lock, 0)?;
    Ok(0)
}

/// `KeTestSpinLock(SpinLock)`: TRUE when free.
pub fn ke_test_spin_lock(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let lock = call.arg(0)?;
    Ok(u64::from(cpu::read_ptr(call.uc, lock)? == 0))
}

/// `IoGetCurrentProcess()` / `PsGetCurrentProcess()`: the System process.
pub fn current_process(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    Ok(call.kernel().system_process)
}

/// `PsGetCurrentProcessId()`: the System process's `UniqueProcessId`.
pub fn current_process_id(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let process = call.kernel().system_process;
    let layout = harness_core::wdm::Process::for_arch(cpu::arch(call.uc));
    Ok(cpu::read_ptr(call.uc, process + layout.unique_process_id)?)
}

/// `PsGetCurrentThreadId()`: the current thread's `Cid.UniqueThread`.
pub fn current_thread_id(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let thread = current_thread(call)?;
    Ok(crate::system::current_thread_id(call.uc, thread)?)
}

/// `KeGetCurrentThread()` / `PsGetCurrentThread()`.
pub fn current_thread(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let kernel = call.kernel();
    let index = usize::from(kernel.thread == crate::machine::Thread::Caller);
    Ok(kernel.ethreads[index])
}

/// `ObfReferenceObject` and friends: reference counts are not tracked
/// beyond the driver object's own.
pub fn object_reference(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    call.arg(0)
}

/// `MmGetSystemRoutineAddress(SystemRoutineName)`: what the engine
/// implements; NULL for a name Windows does not export either (Windows
/// returns NULL then). A routine Windows has and the engine lacks is a
/// gap: handing the driver NULL would send it down a path Windows would not.
pub fn mm_get_system_routine_address(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let name = cpu::read_unicode_string(call.uc, call.arg(0)?)?;
    let nt = Arc::clone(&call.kernel().nt);
    if let Some(address) = resolve_export(&nt, &name) {
        return Ok(address);
    }
    let routine = format!("ntoskrnl.exe!{name}");
    if harness_core::loader::is_known_export(&routine) == Some(false)
        && harness_core::loader::is_known_export(&format!("hal.dll!{name}")) == Some(false)
    {
        return Ok(0);
    }
    let phase = call.kernel().phase;
    let caller = call.caller;
    call.emit(Event::Gap {
        phase: Some(phase),
        gap: harness_core::events::Gap::MissingRoutine { routine },
        caller: Some(caller),
    })?;
    Err(Halt::Gap)
}

/// `MmIsAddressValid(VirtualAddress)`.
pub fn mm_is_address_valid(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let address = call.arg(0)?;
    Ok(u64::from(call.kernel().space.translate(address).is_some()))
}

fn shared(call: &Call<'_, '_>, offset: u64, size: usize) -> Result<u64, Halt> {
    let base = match call.arch() {
        Arch::X86 => 0xffdf_0000,
        Arch::X64 => 0xFFFF_F780_0000_0000,
    };
    Ok(cpu::read_uint(call.uc, base + offset, size)?)
}

/// `KeQuerySystemTime(CurrentTime)`: `KUSER_SHARED_DATA`'s `SystemTime`.
pub fn ke_query_system_time(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let time = shared(call, 0x14, 8)?;
    let out = call.arg(0)?;
    cpu::write_uint(call.uc, out, time, 8)?;
    Ok(0)
}

/// `KeQueryTickCount(TickCount)`.
pub fn ke_query_tick_count(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let ticks = u64::try_from(call.kernel().events.len()).unwrap_or(0);
    let out = call.arg(0)?;
    cpu::write_uint(call.uc, out, ticks, 8)?;
    Ok(0)
}

/// `KeQueryPerformanceCounter(PerformanceFrequency)`: a 10 MHz counter.
pub fn ke_query_performance_counter(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let frequency = call.arg(0)?;
    if frequency != 0 {
        cpu::write_uint(call.uc, frequency, 10_000_000, 8)?;
    }
    Ok(u64::try_from(call.kernel().events.len()).unwrap_or(0) * 1000)
}

/// `KeQueryTimeIncrement()`: the clock tick.
pub const fn ke_query_time_increment(_call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    Ok(crate::system::TIME_INCREMENT)
}

/// `KeStallExecutionProcessor(MicroSeconds)`: time passes at once here.
pub const fn ke_stall_execution_processor(_call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    Ok(0)
}

/// `KeDelayExecutionThread(WaitMode, Alertable, Interval)`.
pub fn ke_delay_execution_thread(_call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    Ok(u64::from(status::SUCCESS))
}

/// `KeInitializeEvent(Event, Type, State)`.
pub fn ke_initialize_event(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let event = call.arg(0)?;
    let kind = call.arg32(1)? & 0xff;
    let state = call.arg32(2)? & 0xff != 0;
    // DISPATCHER_HEADER: Type, then SignalState at +4.
    cpu::write_uint(call.uc, event, u64::from(kind), 1)?;
    cpu::write_uint(call.uc, event + 4, u64::from(state), 4)?;
    call.kernel().signalled.insert(event, state);
    Ok(0)
}

fn set_state(call: &mut Call<'_, '_>, state: bool) -> Result<u64, Halt> {
    let event = call.arg(0)?;
    let old = cpu::read_u32(call.uc, event + 4)?;
    cpu::write_uint(call.uc, event + 4, u64::from(state), 4)?;
    call.kernel().signalled.insert(event, state);
    Ok(u64::from(old))
}

/// `KeSetEvent(Event, Increment, Wait)`: the previous state.
pub fn ke_set_event(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    set_state(call, true)
}

/// `KeClearEvent(Event)`.
pub fn ke_clear_event(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    set_state(call, false).map(|_| 0)
}

/// `KeResetEvent(Event)`: the previous state.
pub fn ke_reset_event(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    set_state(call, false)
}

/// `KeReadStateEvent(Event)`.
pub fn ke_read_state_event(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let event = call.arg(0)?;
    Ok(u64::from(cpu::read_u32(call.uc, event + 4)?))
}

fn interlocked(
    call: &mut Call<'_, '_>,
    update: impl Fn(u32, &Call<'_, '_>) -> Result<u32, Halt>,
    returns_new: bool,
) -> Result<u64, Halt> {
    let target = call.arg(0)?;
    let old = cpu::read_u32(call.uc, target)?;
    let new = update(old, call)?;
    cpu::write_uint(call.uc, target, u64::from(new), 4)?;
    Ok(u64::from(if returns_new { new } else { old }))
}

/// `InterlockedIncrement(Addend)`: the new value.
pub fn interlocked_increment(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    interlocked(call, |old, _| Ok(old.wrapping_add(1)), true)
}

/// `InterlockedDecrement(Addend)`: the new value.
pub fn interlocked_decrement(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    interlocked(call, |old, _| Ok(old.wrapping_sub(1)), true)
}

/// `InterlockedExchange(Target, Value)`: the old value.
pub fn interlocked_exchange(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    interlocked(call, |_, call| call.arg32(1), false)
}

/// `InterlockedCompareExchange(Destination, Exchange, Comparand)`: the old value.
pub fn interlocked_compare_exchange(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    interlocked(
        call,
        |old, call| {
            Ok(if old == call.arg32(2)? {
                call.arg32(1)?
            } else {
                old
            })
        },
        false,
    )
}

/// `KeQueryActiveProcessorCount(ActiveProcessors)`: one processor.
pub fn ke_query_active_processor_count(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    let mask = call.arg(0)?;
    if mask != 0 {
        cpu::write_ptr(call.uc, mask, 1)?;
    }
    Ok(1)
}

/// `DbgBreakPoint()`: a break into the debugger; with none attached, the
/// breakpoint exception is not handled and the machine bug-checks (the
/// driver asked for it, so it is the driver's).
pub fn dbg_break_point(call: &mut Call<'_, '_>) -> Result<u64, Halt> {
    if call.kernel().debugger {
        return Err(Halt::Break(crate::machine::BreakKind::Hardcoded));
    }
    let phase = call.kernel().phase;
    let pc = call.caller;
    call.emit(Event::Fault {
        phase,
        kind: FaultKind::Breakpoint,
        pc,
        address: None,
    })?;
    Err(Halt::Fault)
}
