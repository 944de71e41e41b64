//! The System process and its two threads.
//!
//! The system worker runs `DriverEntry` and the unload routine; the other
//! thread asks for the unload. They are laid out as Windows 7 SP1 lays out `EPROCESS` and `ETHREAD`
//! (harness-core's `wdm::Process` and `wdm::Thread`, with their sources),
//! each in a page of its own outside the pools so that the pools'
//! addresses stay the walkthrough's.

use super::cpu::{self, Uc};
use super::memory::PAGE;
use harness_core::arch::Arch;
use harness_core::wdm::{self, thread_state};

/// The System process's id (`PsGetCurrentProcessId` in a system thread).
pub(crate) const SYSTEM_PID: u64 = 4;

/// The clock tick, 15.6 ms in 100 ns units (`KeQueryTimeIncrement`): a
/// thread's `KernelTime` and `UserTime` count these.
pub const TIME_INCREMENT: u64 = 156_250;

/// Thread ids: the worker's, the unload caller's.
const THREAD_IDS: [u64; 2] = [0x48, 0x2c4];

/// `ThreadIoPriority` 2 (normal) and `ThreadPagePriority` 5 (normal), as
/// kd's `!thread` shows them for system threads (`IoPriority 2
/// PagePriority 5` in real sessions), in `CrossThreadFlags`' bits.
const NORMAL_IO_AND_PAGE_PRIORITY: u64 = (2 << 10) | (5 << 13);

/// Priorities (current, base): the worker is a delayed work queue thread
/// (WRK, base/ntos/io/iomgr: `NtLoadDriver` and `IopUnloadDriver` queue
/// `IopLoadUnloadDriver` to `DelayedWorkQueue`; ex/worker.c's
/// `DELAYED_WORK_QUEUE_PRIORITY` is 12), the caller runs at the WRK's
/// `NORMAL_BASE_PRIORITY`, 8, and waits for the worker with
/// `KeWaitForSingleObject(&loadPacket.Event, Executive, ...)`.
const PRIORITIES: [u8; 2] = [12, 8];

/// Where the pages start: the process, then the worker, then the caller.
/// Each object sits past where the pool header, quota and object headers
/// would be (x86: 8 + 0x10 + 0x18; x64: 0x10 + 0x20 + 0x30), which puts
/// the x86 caller at the walkthrough's `.thread` address, 8e976030.
const fn pages(arch: Arch) -> (u64, u64) {
    match arch {
        Arch::X86 => (0x8e97_4000, 0x30),
        Arch::X64 => (0xFFFF_FA80_0A00_0000, 0x60),
    }
}

/// The pages to map: (start, bytes). A fourth page after the threads'
/// holds the object namespace (`ob.rs`).
#[must_use]
pub(crate) const fn region(arch: Arch) -> (u64, u64) {
    (pages(arch).0, 4 * PAGE)
}

/// The System process's and the two threads' addresses.
#[must_use]
pub(crate) const fn addresses(arch: Arch) -> (u64, [u64; 2]) {
    let (start, offset) = pages(arch);
    (
        start + offset,
        [start + PAGE + offset, start + 2 * PAGE + offset],
    )
}

/// A thread's stack and where it starts running.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stack {
    /// The top (`StackBase`).
    pub base: u64,
    /// The lowest mapped byte (`StackLimit`).
    pub limit: u64,
    /// Where its first frame sits (`InitialStack`, `KernelStack`).
    pub initial: u64,
}

/// Writes a `LIST_ENTRY` whose links are `flink` and `blink`.
fn link(uc: &mut Uc<'_>, entry: u64, flink: u64, blink: u64) -> Result<(), cpu::BadAddress> {
    let ptr = cpu::arch(uc).pointer_size();
    cpu::write_ptr(uc, entry, flink)?;
    cpu::write_ptr(uc, entry + ptr, blink)
}

/// Fills in the System process and its threads.
///
/// They are linked as Windows links them: `nt!PsActiveProcessHead` to the process, the process's thread
/// lists to both threads. `stacks` and `starts` are the worker's and the
/// caller's; the worker is current.
///
/// # Errors
/// The pages or nt's data are not mapped.
pub(crate) fn create(
    uc: &mut Uc<'_>,
    active_process_head: u64,
    initial_system_process: u64,
    stacks: [Stack; 2],
    starts: [u64; 2],
) -> Result<(), cpu::BadAddress> {
    let arch = cpu::arch(uc);
    let (process, threads) = addresses(arch);
    let p = wdm::Process::for_arch(arch);
    let t = wdm::Thread::for_arch(arch);
    let ptr = arch.pointer_size();
    // DISPATCHER_HEADER.Type: ProcessObject 3, ThreadObject 6 (WRK ke.h).
    cpu::write_uint(uc, process, 3, 1)?;
    cpu::write_ptr(uc, process + p.unique_process_id, SYSTEM_PID)?;
    let links = process + p.active_process_links;
    link(uc, active_process_head, links, links)?;
    link(uc, links, active_process_head, active_process_head)?;
    cpu::write_ptr(uc, initial_system_process, process)?;
    cpu::write(uc, process + p.image_file_name, b"System\0")?;
    cpu::write_uint(uc, process + p.active_threads, 2, 4)?;
    // Both thread lists: head <-> worker <-> caller <-> head.
    for (head, entry) in [
        (p.thread_list_head, t.thread_list_entry),
        (p.kprocess_thread_list_head, t.kthread_list_entry),
    ] {
        let head = process + head;
        let [first, second] = threads.map(|thread| thread + entry);
        link(uc, head, first, second)?;
        link(uc, first, second, head)?;
        link(uc, second, head, first)?;
    }
    for (index, thread) in threads.into_iter().enumerate() {
        let stack = stacks[index];
        cpu::write_uint(uc, thread, 6, 1)?;
        cpu::write_ptr(uc, thread + t.initial_stack, stack.initial)?;
        cpu::write_ptr(uc, thread + t.kernel_stack, stack.initial)?;
        cpu::write_ptr(uc, thread + t.stack_base, stack.base)?;
        cpu::write_ptr(uc, thread + t.stack_limit, stack.limit)?;
        cpu::write_ptr(uc, thread + t.process, process)?;
        cpu::write_ptr(uc, thread + t.apc_process, process)?;
        let priority = u64::from(PRIORITIES[index]);
        cpu::write_uint(uc, thread + t.priority, priority, 1)?;
        cpu::write_uint(uc, thread + t.base_priority, priority, 1)?;
        cpu::write_ptr(uc, thread + t.cid, SYSTEM_PID)?;
        cpu::write_ptr(uc, thread + t.cid + ptr, THREAD_IDS[index])?;
        cpu::write_ptr(uc, thread + t.start_address, starts[index])?;
        cpu::write_ptr(uc, thread + t.win32_start_address, starts[index])?;
        cpu::write_uint(
            uc,
            thread + t.cross_thread_flags,
            NORMAL_IO_AND_PAGE_PRIORITY,
            4,
        )?;
    }
    make_current(uc, 0)
}

/// Makes thread `index` (0 the worker, 1 the caller) the running one.
///
/// Its `State` becomes Running and the processor block's `CurrentThread`
/// points to it; the other thread waits (`Executive`, the zero
/// `WaitReason`) and, if it was the one running, keeps the stack pointer
/// in `KernelStack`, as a context switch saves it.
///
/// # Errors
/// The pages or the processor block are not mapped.
pub(crate) fn make_current(uc: &mut Uc<'_>, index: usize) -> Result<(), cpu::BadAddress> {
    let arch = cpu::arch(uc);
    let (_, threads) = addresses(arch);
    let t = wdm::Thread::for_arch(arch);
    let pcr = uc.get_data().nt.data.pcr;
    let running = cpu::read_ptr(uc, pcr + current_thread_offset(arch))?;
    if running != threads[index] && threads.contains(&running) {
        let sp = cpu::reg(uc, cpu::Reg::Sp);
        cpu::write_ptr(uc, running + t.kernel_stack, sp)?;
    }
    for (other, thread) in threads.into_iter().enumerate() {
        let state = if other == index {
            thread_state::RUNNING
        } else {
            thread_state::WAITING
        };
        cpu::write_uint(uc, thread + t.state, state, 1)?;
    }
    cpu::write_ptr(uc, pcr + current_thread_offset(arch), threads[index])
}

/// `KPCR.PrcbData.CurrentThread` (x86 0x120 + 4) / `KPCR.Prcb.CurrentThread`
/// (x64 0x180 + 8), where inline `KeGetCurrentThread()` reads it.
#[must_use]
pub const fn current_thread_offset(arch: Arch) -> u64 {
    match arch {
        Arch::X86 => 0x124,
        Arch::X64 => 0x188,
    }
}

/// The current thread's `Cid.UniqueThread`.
///
/// # Errors
/// The thread's page is not mapped.
pub(crate) fn current_thread_id(uc: &Uc<'_>, thread: u64) -> Result<u64, cpu::BadAddress> {
    let arch = cpu::arch(uc);
    let t = wdm::Thread::for_arch(arch);
    cpu::read_ptr(uc, thread + t.cid + arch.pointer_size())
}
