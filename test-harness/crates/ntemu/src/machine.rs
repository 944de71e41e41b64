//! The emulated machine: Unicorn's CPU, the kernel's state, and the
//! scenario the I/O manager runs.
//!
//! `sc start` runs `DriverEntry` on a worker thread; `sc stop`, the system
//! call that runs the unload routine on the worker thread and then
//! unloads the image.
//!
//! The machine reports [`Event`]s as they happen and feeds them to its own
//! verifier ([`Tracker`]), which decides the verifier's bug checks; the
//! kernel's code then really bug-checks (`KeBugCheckEx` ...), so that a
//! debugger sees what Windows would show.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use unicorn_engine::unicorn_const::{Arch as UcArch, HookType, MemType, Mode, Prot, TlbType};
use unicorn_engine::{Context, RegisterX86, TlbEntry, UcHookId, Unicorn, uc_error};

use super::cpu::{self, Reg, Uc};
use super::loader::{self, ImportSlot};
use super::memory::{AddressSpace, MapError, PAGE};
use super::nt::{self, NtImage, Trap};
use super::pool::{self, Pool};
use super::profile::Profile;
use super::routines::{self, Call};
use super::system;
use harness_core::arch::Arch;
use harness_core::events::{Event, Gap, Phase};
use harness_core::pe::PeImage;
use harness_core::symbols::Symbolizer;
use harness_core::tracker::{Context as TrackerContext, Tracker};
use harness_core::verdict::{Engine, FaultKind, Limit};
use harness_core::verifier::{FORCE_IRQL_CHECKING, VerifierFlags};

/// Bytes x64 nt functions reserve below their return address.
pub(crate) const X64_FRAME: u64 = 0x38;

/// Where the driver is mapped (x86: the walkthrough's address).
#[must_use]
pub const fn driver_base(arch: Arch) -> u64 {
    match arch {
        Arch::X86 => 0xa04c_0000,
        Arch::X64 => 0xFFFF_F806_1234_0000,
    }
}

/// Bytes of a Windows 7 kernel stack (`KERNEL_STACK_SIZE`): 12 KiB on
/// x86, 24 KiB on x64 ("How do I keep my driver from running out of
/// kernel-mode stack?", learn.microsoft.com previous-versions
/// dn613940). The page below it is a guard page, never mapped.
const fn kernel_stack_size(arch: Arch) -> u64 {
    match arch {
        Arch::X86 => 0x3000,
        Arch::X64 => 0x6000,
    }
}

/// The two threads' stacks: the worker thread's and the caller's of
/// `sc stop`. (top, size)
const fn stack(arch: Arch, worker: bool) -> (u64, u64) {
    let top = match (arch, worker) {
        (Arch::X86, true) => 0x8772_e000,
        (Arch::X86, false) => 0x826f_c000,
        (Arch::X64, true) => 0xFFFF_F880_0312_8000,
        (Arch::X64, false) => 0xFFFF_F880_0412_8000,
    };
    (top, kernel_stack_size(arch))
}

/// Bytes between a thread's stack base and its first frame.
const THREAD_FRAME: u64 = 0x40;

/// Whether `va` lies in the guard page below one of the threads' stacks.
fn in_stack_guard(arch: Arch, va: u64) -> bool {
    [true, false].into_iter().any(|worker| {
        let (top, size) = stack(arch, worker);
        let limit = top - size;
        va < limit && va >= limit - PAGE
    })
}

/// `KUSER_SHARED_DATA`, mapped read-only as on Windows.
const fn shared_user_data(arch: Arch) -> u64 {
    match arch {
        Arch::X86 => 0xffdf_0000,
        Arch::X64 => 0xFFFF_F780_0000_0000,
    }
}

/// Where calls to imports the engine lacks land (one trap each).
const fn missing_stubs(arch: Arch) -> u64 {
    match arch {
        Arch::X86 => 0x82f0_0000,
        Arch::X64 => 0xFFFF_F800_02F0_0000,
    }
}

/// What the machine is told to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The Windows version it reports.
    pub profile: Profile,
    /// Make the driver's Nth pool allocation fail (1-based).
    pub fail_allocation: Option<u32>,
    /// The verifier flags (`verifier /flags`) the driver is verified with.
    pub verifier_flags: VerifierFlags,
    /// The low resources simulation's seed (flag 0x4).
    pub seed: u64,
    /// The initial `nt!PoolHitTag`.
    pub pool_hit_tag: u32,
    /// A kernel debugger is attached: breaks stop the machine.
    pub debugger: bool,
    /// Instructions one run of the CPU may take before it counts as hung.
    pub max_instructions: u64,
    /// Wall-clock budget for the whole scenario.
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            profile: Profile::default(),
            fail_allocation: None,
            verifier_flags: VerifierFlags::default(),
            seed: 0,
            pool_hit_tag: 0,
            debugger: false,
            max_instructions: 5_000_000,
            timeout: Duration::from_mins(1),
        }
    }
}

/// A driver image read once, run on as many machines as needed.
#[derive(Debug, Clone)]
pub struct Driver {
    /// Its file name (`Sample.sys`).
    pub file_name: String,
    /// The service name it is installed under (the file stem).
    pub service: String,
    /// Its architecture.
    pub arch: Arch,
    /// The image laid out at [`driver_base`], relocated.
    pub layout: loader::Layout,
    /// Names for its addresses at that base.
    pub symbols: Symbolizer,
    /// Its PDB beside it, if any (for the debugger's types).
    pub pdb: Option<std::path::PathBuf>,
}

/// Why a driver could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The image cannot be laid out.
    #[error(transparent)]
    Load(#[from] loader::LoadError),
}

impl Driver {
    /// Lays out `bytes` (the file at `path`, already parsed as `image`).
    ///
    /// # Errors
    /// The image cannot be laid out.
    pub fn prepare(
        path: &Path,
        image: &PeImage,
        bytes: &[u8],
        arch: Arch,
    ) -> Result<Self, PrepareError> {
        let base = driver_base(arch);
        let layout = loader::lay_out(bytes, arch, base)?;
        let size = u64::try_from(layout.bytes.len()).unwrap_or(0);
        let symbols = Symbolizer::for_driver(path, image, base, size);
        let file_name = harness_core::file_name(path);
        let service = path.file_stem().map_or_else(
            || "Driver".to_owned(),
            |stem| stem.to_string_lossy().into_owned(),
        );
        let pdb = Some(path.with_extension("pdb")).filter(|pdb| pdb.is_file());
        Ok(Self {
            file_name,
            service,
            arch,
            layout,
            symbols,
            pdb,
        })
    }

    /// The imports the native engine does not provide: (library, name).
    #[must_use]
    pub fn missing_imports(&self) -> Vec<(String, String)> {
        let nt = kernel_image(self.arch);
        self.layout
            .imports
            .iter()
            .filter(|import| {
                is_kernel_module(&import.library) && resolve_export(&nt, &import.name).is_none()
            })
            .map(|import| (import.library.clone(), import.name.clone()))
            .collect()
    }

    /// Imported modules the engine does not have (not ntoskrnl.exe or hal.dll).
    #[must_use]
    pub fn missing_modules(&self) -> Vec<String> {
        let mut modules: Vec<String> = self
            .layout
            .imports
            .iter()
            .filter(|import| !is_kernel_module(&import.library))
            .map(|import| import.library.clone())
            .collect();
        modules.dedup();
        modules
    }
}

const fn is_kernel_module(library: &str) -> bool {
    library.eq_ignore_ascii_case("ntoskrnl.exe") || library.eq_ignore_ascii_case("hal.dll")
}

/// The address an import binds to: a verifier thunk for pool routines (the
/// verifier is on for the driver), else the routine or kernel export.
#[must_use]
pub(crate) fn resolve_export(nt: &NtImage, name: &str) -> Option<u64> {
    nt.verifier_thunks
        .get(name)
        .or_else(|| nt.exports.get(name))
        .copied()
}

/// The address the driver's import of `name` binds to: with no verifier
/// (flags 0) the pool routines nt reports calls of itself bind to nt's own
/// (no verifier thunk exists then: `kb` shows `nt!ExFreePoolWithTag` called
/// from the driver); otherwise as [`resolve_export`].
fn bind_export(nt: &NtImage, name: &str, verified: bool) -> Option<u64> {
    if !verified && super::nt::REPORTS_UNVERIFIED.contains(&name) {
        return nt.exports.get(name).copied();
    }
    resolve_export(nt, name)
}

/// The kernel image for `arch`, assembled once per process.
#[must_use]
pub fn kernel_image(arch: Arch) -> Arc<NtImage> {
    static X86: OnceLock<Arc<NtImage>> = OnceLock::new();
    static X64: OnceLock<Arc<NtImage>> = OnceLock::new();
    let cell = match arch {
        Arch::X86 => &X86,
        Arch::X64 => &X64,
    };
    Arc::clone(cell.get_or_init(|| Arc::new(nt::build(arch))))
}

/// Why the CPU stopped inside a hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Halt {
    /// A thread ran to its end.
    ThreadExit,
    /// Run the unload routine on the worker thread, then come back.
    SwitchToWorker,
    /// `int 3` with a debugger attached.
    Break(BreakKind),
    /// A debugger breakpoint (its number).
    Breakpoint(usize),
    /// A data watch (its number) saw its access in the instruction before.
    Watch(usize),
    /// The bug check reached `RtlpBreakWithStatusInstruction`.
    BugCheck,
    /// A CPU fault (reported as an event).
    Fault,
    /// An engine gap or a run that cannot be judged (reported).
    Gap,
    /// A routine was handed an address nothing is mapped at.
    BadPointer(u64),
    /// A routine spins forever (a spin lock held on one processor); the
    /// limit is reported already.
    Spin,
}

/// What kind of `int 3` stopped the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakKind {
    /// `nt!PoolHitTag` matched in the allocator or on a free.
    PoolHitTag,
    /// An `int 3` in the driver's own code.
    Hardcoded,
    /// `nt!DebugService2`'s break on a module load (`sxe ld`).
    ModuleLoad,
}

/// What a run of the machine ended in, for its user (emulate or kd).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The scenario is over: the driver was started and stopped.
    Finished,
    /// An `int 3` the debugger takes.
    Break(BreakKind),
    /// A breakpoint.
    Breakpoint(usize),
    /// A data watch (its number in [`Machine::set_watches`]' list): the
    /// instruction that accessed the watched bytes has completed, as after
    /// a debug register's data breakpoint, which is a trap (Intel SDM vol.
    /// 3B, 17.3.1.2 "Data Memory and I/O Breakpoint Exception Conditions").
    Watch(usize),
    /// A single step, or a run to an address, is done.
    Stepped,
    /// The machine bug-checked.
    BugCheck,
    /// A CPU fault in the driver (the tracker's verdict says which bug check).
    Fault,
    /// The run cannot be judged: an engine gap.
    CannotJudge(String),
    /// A routine did not return within a limit.
    Limit(Limit),
}

/// One of the machine's threads, for the debugger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Thread {
    /// The system worker thread (`DriverEntry`, the unload routine).
    Worker,
    /// The thread that called `NtUnloadDriver` (`sc stop`).
    Caller,
}

/// Pending work for the worker thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Load the driver (`IopLoadDriver`).
    Load,
    /// Call its unload routine.
    Unload,
}

/// Where the scenario is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scene {
    /// Nothing ran yet.
    Start,
    /// The worker thread runs `DriverEntry`.
    Loading,
    /// The caller thread runs `NtUnloadDriver` (and the worker the unload routine).
    Unloading,
    /// Over.
    Done,
}

/// The driver as the kernel sees it once loaded.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// `DRIVER_OBJECT` address.
    pub driver_object: u64,
    /// The registry path `UNICODE_STRING` passed to `DriverEntry`.
    pub registry_path: u64,
    /// `DriverEntry`'s status, once it returned.
    pub entry_status: Option<u32>,
    /// The image is still mapped.
    pub mapped: bool,
}

/// The kernel's state: the data of the Unicorn instance.
pub struct Kernel {
    /// The architecture.
    pub arch: Arch,
    /// The kernel image.
    pub nt: Arc<NtImage>,
    /// Virtual memory.
    pub space: AddressSpace,
    /// The pool.
    pub pool: Pool,
    /// Special pool (verifier flag 0x1).
    pub special: super::special_pool::SpecialPool,
    /// The Windows version.
    pub profile: Profile,
    /// x86 IRQL (x64 keeps it in CR8).
    pub irql: u8,
    /// The verifier flags.
    pub verifier_flags: VerifierFlags,
    /// The low resources simulation's generator state.
    pub low_resources: u64,
    /// Where the driver first raised IRQL to `DISPATCH_LEVEL` or above.
    pub raised_at: Option<u64>,
    /// What the machine reported, in order.
    pub events: Vec<Event>,
    /// Where in `events` the count of DbgPrint calls past the cap is.
    dropped_prints: Option<usize>,
    /// The verifier.
    pub tracker: Tracker,
    /// Why the CPU stopped, set by a hook.
    pub halt: Option<Halt>,
    /// The phase of the driver's life.
    pub phase: Phase,
    /// The driver image's range.
    pub image: (u64, u64),
    /// The loaded driver.
    pub loaded: Loaded,
    /// Calls to these stub addresses are imports the engine lacks.
    pub missing: HashMap<u64, String>,
    /// The driver's allocations so far.
    pub allocations: u32,
    /// `--fail-allocation`.
    pub fail_allocation: Option<u32>,
    /// A debugger is attached.
    pub debugger: bool,
    /// Devices the driver created (`DEVICE_OBJECT` addresses).
    pub devices: Vec<u64>,
    /// Device names: device object, name.
    pub device_names: Vec<(u64, String)>,
    /// Symbolic links: name to target.
    pub symbolic_links: Vec<(String, String)>,
    /// The instruction budget (a deadlocked spin lock spends it all).
    pub max_instructions: u64,
    /// Events' signal states, by object address.
    pub signalled: HashMap<u64, bool>,
    /// The last address translation that failed, and how.
    pub tlb_miss: Option<(u64, MemType)>,
    /// Where the CPU must resume (a trap already handled, a break passed).
    pub resume_at: Option<u64>,
    /// Debugger breakpoints (address, enabled).
    pub breakpoints: Vec<(u64, bool)>,
    /// A breakpoint at this address is passed once (resuming from it).
    pub pass_breakpoint: Option<u64>,
    /// Debugger data watches.
    pub watches: Vec<Watch>,
    /// The watch the current instruction hit: the machine stops before the next.
    pub watch_hit: Option<usize>,
    /// The address the last failed write of the emulated kernel's routines
    /// went to: a bad pointer there was written, not read (0xCC / 0xCD's
    /// Arg2).
    pub(crate) failed_write: Option<u64>,
    /// The debugger breaks when the driver's image loads (`sxe ld`).
    pub break_on_load: bool,
    /// The current thread.
    pub thread: Thread,
    /// `ETHREAD` addresses of the two threads.
    pub ethreads: [u64; 2],
    /// The System process (`EPROCESS`).
    pub system_process: u64,
    /// The driver's entry point RVA.
    pub entry_rva: u32,
    /// The service name (`Sample`).
    pub service: String,
    /// The last allocation failed because `--fail-allocation` said so.
    pub last_injected: bool,
    work: Option<Work>,
}

impl Kernel {
    /// The current IRQL.
    #[must_use]
    pub const fn irql(&self) -> u8 {
        self.irql
    }

    /// Sets the IRQL at the driver's request (from the instruction or call at `pc`).
    pub const fn set_irql(&mut self, level: u8, pc: u64) {
        if level >= 2 && self.raised_at.is_none() {
            self.raised_at = Some(pc);
        }
        self.irql = level;
    }

    /// The worker thread's current work.
    #[must_use]
    pub const fn work(&self) -> Option<Work> {
        self.work
    }

    /// Whether `address` lies in the driver's image.
    #[must_use]
    pub const fn in_driver(&self, address: u64) -> bool {
        address >= self.image.0 && address < self.image.0 + self.image.1
    }
}

/// Why the machine could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// Unicorn refused.
    #[error("unicorn: {0:?}")]
    Unicorn(uc_error),
    /// Memory could not be mapped.
    #[error(transparent)]
    Map(#[from] MapError),
}

impl From<uc_error> for MachineError {
    fn from(error: uc_error) -> Self {
        Self::Unicorn(error)
    }
}

/// One emulated machine with one driver.
pub struct Machine {
    /// The CPU, its memory and the kernel's state.
    pub uc: Uc<'static>,
    /// The driver.
    pub driver: Arc<Driver>,
    options: Options,
    scene: Scene,
    /// The caller thread, saved while the worker runs the unload routine.
    caller: Option<Context>,
    started: Instant,
    breakpoint_hooks: Vec<UcHookId>,
    watch_hooks: Vec<UcHookId>,
}

/// What a data watch breaks on: a debug register's R/W field (Intel SDM
/// vol. 3B, 17.2.4: 01 data writes, 11 data reads or writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchAccess {
    /// Writes only.
    Write,
    /// Reads or writes.
    ReadWrite,
}

/// A data watch: the bytes `address..address + size` and the access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watch {
    /// The first byte.
    pub address: u64,
    /// How many bytes (1, 2, 4 or 8).
    pub size: u64,
    /// The access that triggers it.
    pub access: WatchAccess,
}

/// One `mov` to or from CR8 in an x64 driver's code.
#[derive(Debug, Clone, Copy)]
pub struct Cr8Access {
    /// The instruction, at [`driver_base`].
    pub address: u64,
    /// Its length.
    pub length: u64,
    /// A read (else a write: the driver sets the IRQL).
    pub read: bool,
    /// The general register on the other side.
    pub register: iced_x86::Register,
}

/// Every instruction of the driver's executable sections, by a linear
/// sweep, at the addresses the machine maps them.
fn driver_instructions(driver: &Driver) -> Vec<iced_x86::Instruction> {
    use iced_x86::{Decoder, DecoderOptions};
    let base = driver_base(driver.arch);
    let bitness = match driver.arch {
        Arch::X86 => 32,
        Arch::X64 => 64,
    };
    let mut instructions = Vec::new();
    for &(rva, size, executable) in &driver.layout.sections {
        if !executable {
            continue;
        }
        let start = usize::try_from(rva).unwrap_or(usize::MAX);
        let end = start.saturating_add(usize::try_from(size).unwrap_or(0));
        if let Some(code) = driver
            .layout
            .bytes
            .get(start..end.min(driver.layout.bytes.len()))
        {
            instructions.extend(Decoder::with_ip(
                bitness,
                code,
                base + u64::from(rva),
                DecoderOptions::NONE,
            ));
        }
    }
    instructions
}

/// The CR8 accesses in the driver's executable sections (none on x86).
#[must_use]
pub fn cr8_accesses(driver: &Driver) -> Vec<Cr8Access> {
    use iced_x86::{Code, Register};
    if driver.arch != Arch::X64 {
        return Vec::new();
    }
    driver_instructions(driver)
        .iter()
        .filter_map(|instruction| {
            let (read, register) = match instruction.code() {
                Code::Mov_r64_cr if instruction.op1_register() == Register::CR8 => {
                    (true, instruction.op0_register())
                }
                Code::Mov_cr_r64 if instruction.op0_register() == Register::CR8 => {
                    (false, instruction.op1_register())
                }
                _ => return None,
            };
            Some(Cr8Access {
                address: instruction.ip(),
                length: instruction.len() as u64,
                read,
                register,
            })
        })
        .collect()
}

/// `ntoskrnl.exe!DbgPrint`, `DbgPrintEx`, `vDbgPrintEx`...
fn is_debug_print(routine: &str) -> bool {
    routine
        .rsplit('!')
        .next()
        .is_some_and(|name| name.trim_start_matches('v').starts_with("DbgPrint"))
}

/// Reports an event: recorded, and judged by the machine's verifier.
///
/// # Errors
/// The verifier cannot judge the run from here on (a gap).
pub fn emit(uc: &mut Uc<'_>, event: Event) -> Result<(), Halt> {
    let kernel = uc.get_data_mut();
    let judged = kernel.tracker.event(&event);
    match event {
        // Past the tracker's cap a DbgPrint is only counted: a driver
        // printing in a loop must not fill memory with events either.
        Event::DebugPrint { text, .. } if kernel.tracker.debug_output_full() => {
            // One count for them all, wherever it stands (a call's Call
            // event comes between): once the cap is reached every later
            // DbgPrint is dropped, so its place changes nothing.
            let bytes = u64::try_from(text.len()).unwrap_or(u64::MAX);
            let counted = kernel
                .dropped_prints
                .and_then(|at| kernel.events.get_mut(at));
            if let Some(Event::DebugPrintDropped {
                calls,
                bytes: dropped,
            }) = counted
            {
                *calls += 1;
                *dropped += bytes;
            } else {
                kernel.dropped_prints = Some(kernel.events.len());
                kernel
                    .events
                    .push(Event::DebugPrintDropped { calls: 1, bytes });
            }
        }
        // Nor is the call itself kept then (the tracker has seen it, for the
        // last call's site): memory stays bounded however long the loop.
        Event::Call { routine, .. }
            if kernel.tracker.debug_output_full() && is_debug_print(&routine) => {}
        event => kernel.events.push(event),
    }
    match judged {
        Ok(()) => Ok(()),
        Err(_) => Err(Halt::Gap),
    }
}

impl Machine {
    /// A machine with `driver` mapped and the kernel ready; nothing runs yet.
    ///
    /// # Errors
    /// Unicorn or the memory map refused.
    pub fn new(driver: Arc<Driver>, options: Options) -> Result<Self, MachineError> {
        let arch = driver.arch;
        let nt = kernel_image(arch);
        let mode = match arch {
            Arch::X86 => Mode::MODE_32,
            Arch::X64 => Mode::MODE_64,
        };
        let base = driver_base(arch);
        let size = u64::try_from(driver.layout.bytes.len()).unwrap_or(0);
        let tracker = Tracker::new(TrackerContext {
            driver: driver.file_name.clone(),
            engine: Engine::Native,
            symbols: driver.symbols.clone(),
            arch,
            pool_hit_tag: None,
            verifier_flags: options.verifier_flags,
        });
        let kernel = Kernel {
            arch,
            nt: Arc::clone(&nt),
            space: AddressSpace::new(),
            pool: Pool::new(arch),
            special: super::special_pool::SpecialPool::default(),
            profile: options.profile.clone(),
            irql: 0,
            verifier_flags: options.verifier_flags,
            low_resources: options.seed,
            raised_at: None,
            events: Vec::new(),
            dropped_prints: None,
            tracker,
            halt: None,
            phase: Phase::Entry,
            image: (base, size),
            loaded: Loaded::default(),
            missing: HashMap::new(),
            allocations: 0,
            fail_allocation: options.fail_allocation,
            debugger: options.debugger,
            devices: Vec::new(),
            device_names: Vec::new(),
            symbolic_links: Vec::new(),
            max_instructions: options.max_instructions,
            signalled: HashMap::new(),
            tlb_miss: None,
            resume_at: None,
            breakpoints: Vec::new(),
            pass_breakpoint: None,
            watches: Vec::new(),
            watch_hit: None,
            failed_write: None,
            break_on_load: false,
            thread: Thread::Worker,
            ethreads: [0; 2],
            system_process: 0,
            entry_rva: driver.layout.entry,
            service: driver.service.clone(),
            last_injected: false,
            work: None,
        };
        let mut uc = Unicorn::new_with_data(UcArch::X86, mode, kernel)?;
        uc.ctl_set_tlb_type(TlbType::VIRTUAL)?;
        uc.add_tlb_hook(1, 0, |uc, va, access| {
            let kernel = uc.get_data_mut();
            if let Some((pa, _, perms)) = kernel.space.translate(va) {
                Some(TlbEntry {
                    paddr: pa & !(PAGE - 1),
                    perms,
                })
            } else {
                if std::env::var_os("HARNESS_DEBUG_NATIVE").is_some() {
                    eprintln!("native: no page at 0x{va:x} ({access:?})");
                }
                // The first miss is the fault; delivering it may miss again.
                kernel.tlb_miss.get_or_insert((va, access));
                None
            }
        })?;
        let mut machine = Self {
            uc,
            driver,
            options,
            scene: Scene::Start,
            caller: None,
            started: Instant::now(),
            breakpoint_hooks: Vec::new(),
            watch_hooks: Vec::new(),
        };
        machine.map_kernel()?;
        machine.map_driver()?;
        machine.install_hooks()?;
        let entry_point = base + u64::from(machine.driver.layout.entry);
        let _ = emit(
            &mut machine.uc,
            Event::Load {
                arch,
                image_base: base,
                image_size: size,
                entry_point,
            },
        );
        Ok(machine)
    }

    /// Maps `size` bytes at `va`.
    fn map(&mut self, va: u64, size: u64, perms: Prot, name: &str) -> Result<(), MachineError> {
        let region = self
            .uc
            .get_data_mut()
            .space
            .reserve(va, size, perms, name)?;
        self.uc.mem_map(region.pa, region.size, Prot::ALL)?;
        Ok(())
    }

    fn map_kernel(&mut self) -> Result<(), MachineError> {
        let arch = self.driver.arch;
        let nt = Arc::clone(&self.uc.get_data().nt);
        // nt's code is mapped read-only, as Windows maps the kernel's code
        // sections: a driver's write to it faults (see `take_halt`).
        let code_start = nt.code.0;
        self.map(nt.base, code_start - nt.base, Prot::ALL, "nt")?;
        self.map(
            code_start,
            nt.size() - (code_start - nt.base),
            Prot::READ | Prot::EXEC,
            "nt code",
        )?;
        cpu::write(&mut self.uc, nt.base, &nt.bytes).map_err(|_| MapError::OutOfMemory)?;
        for worker in [true, false] {
            let (top, size) = stack(arch, worker);
            self.map(top - size, size + PAGE, Prot::READ | Prot::WRITE, "stack")?;
        }
        self.map(
            shared_user_data(arch),
            PAGE,
            Prot::READ,
            "KUSER_SHARED_DATA",
        )?;
        self.map(missing_stubs(arch), PAGE, Prot::ALL, "missing imports")?;
        let (objects, objects_size) = system::region(arch);
        self.map(
            objects,
            objects_size,
            Prot::READ | Prot::WRITE,
            "System process, threads, object namespace",
        )?;
        for region in [pool::Region::NonPaged, pool::Region::Paged] {
            // Pools grow page by page; reserve nothing up front.
            let _ = region;
        }
        self.init_kernel_data(&nt)
    }

    /// nt's variables, the processor block, the two threads and the
    /// System process, `KUSER_SHARED_DATA`.
    fn init_kernel_data(&mut self, nt: &NtImage) -> Result<(), MachineError> {
        let arch = self.driver.arch;
        let data = nt.data;
        let profile = self.options.profile.clone();
        let uc = &mut self.uc;
        let bad = |_| MachineError::Map(MapError::OutOfMemory);
        cpu::write_uint(
            uc,
            data.pool_hit_tag,
            u64::from(self.options.pool_hit_tag),
            4,
        )
        .map_err(bad)?;
        // A free build: 0xF0000000 | build.
        cpu::write_uint(
            uc,
            data.build_number,
            0xF000_0000 | u64::from(profile.build),
            4,
        )
        .map_err(bad)?;
        cpu::write_uint(
            uc,
            data.debugger_enabled,
            u64::from(self.options.debugger),
            1,
        )
        .map_err(bad)?;
        cpu::write_uint(
            uc,
            data.debugger_not_present,
            u64::from(!self.options.debugger),
            1,
        )
        .map_err(bad)?;
        let (probe, highest, system) = match arch {
            Arch::X86 => (0x7fff_0000, 0x7ffe_ffff, 0x8000_0000),
            Arch::X64 => (0x7fff_ffff_0000, 0x7fff_fffe_ffff, 0xFFFF_8000_0000_0000),
        };
        cpu::write_ptr(uc, data.user_probe_address, probe).map_err(bad)?;
        cpu::write_ptr(uc, data.highest_user_address, highest).map_err(bad)?;
        cpu::write_ptr(uc, data.system_range_start, system).map_err(bad)?;
        // Object types: each points at a small object in the data page.
        let ptr = arch.pointer_size();
        for index in 0..nt::OBJECT_TYPES.len() as u64 {
            let object = data.object_types + 0x100 + index * 0x40;
            cpu::write_ptr(uc, data.object_types + index * ptr, object).map_err(bad)?;
        }
        // The processor control region: its self pointer; the System
        // process and its threads, the worker current.
        let pcr = data.pcr;
        let self_offset = match arch {
            Arch::X86 => 0x1c,
            Arch::X64 => 0x18,
        };
        cpu::write_ptr(uc, pcr + self_offset, pcr).map_err(bad)?;
        if arch == Arch::X86 {
            // NT_TIB.ExceptionList: no SEH frame registered (-1).
            cpu::write_uint(uc, pcr, 0xffff_ffff, 4).map_err(bad)?;
        }
        let stacks = [true, false].map(|worker| {
            let (top, size) = stack(arch, worker);
            system::Stack {
                base: top,
                limit: top - size,
                initial: top - THREAD_FRAME,
            }
        });
        let worker_start = nt
            .symbol("ExpWorkerThread")
            .unwrap_or(nt.worker_thread_start);
        system::create(
            uc,
            data.active_process_head,
            data.initial_system_process,
            stacks,
            [worker_start, nt.unload_thread_start],
        )
        .map_err(bad)?;
        super::ob::create(uc, &data).map_err(bad)?;
        let (process, threads) = system::addresses(arch);
        let kernel = uc.get_data_mut();
        kernel.ethreads = threads;
        kernel.system_process = process;
        // The processor block is at gs: on x64 and fs: on x86, where inline
        // KeGetCurrentThread() and friends read it.
        match arch {
            Arch::X64 => {
                load_x64_segments(uc, nt.base + 0x800).map_err(bad)?;
                let _ = uc.reg_write(RegisterX86::GS_BASE, pcr);
            }
            Arch::X86 => load_x86_segments(uc, nt.base + 0x800, pcr).map_err(bad)?,
        }
        // KUSER_SHARED_DATA: tick count multiplier, time, version.
        let shared = shared_user_data(arch);
        let system_time: u64 = 0x01DC_5E2A_0000_0000; // 2026 in 100 ns since 1601
        cpu::write_uint(uc, shared + 0x4, 0x0fa0_0000, 4).map_err(bad)?;
        cpu::write_uint(uc, shared + 0x14, system_time, 8).map_err(bad)?;
        cpu::write_uint(uc, shared + 0x26c, u64::from(profile.major), 4).map_err(bad)?;
        cpu::write_uint(uc, shared + 0x270, u64::from(profile.minor), 4).map_err(bad)?;
        Ok(())
    }

    fn map_driver(&mut self) -> Result<(), MachineError> {
        let arch = self.driver.arch;
        let nt = Arc::clone(&self.uc.get_data().nt);
        let base = driver_base(arch);
        let driver = Arc::clone(&self.driver);
        let verified = self.uc.get_data().verifier_flags.0 != 0;
        let mut bytes = driver.layout.bytes.clone();
        let pointer = usize::try_from(arch.pointer_size()).unwrap_or(8);
        let mut next_stub = missing_stubs(arch);
        let mut missing = HashMap::new();
        for ImportSlot {
            library,
            name,
            slot,
        } in &driver.layout.imports
        {
            let target = if is_kernel_module(library) {
                bind_export(&nt, name, verified)
            } else {
                None
            };
            let target = target.unwrap_or_else(|| {
                // A trap of its own: a call reports which import it was.
                let stub = next_stub;
                next_stub += 2;
                missing.insert(stub, format!("{library}!{name}"));
                stub
            });
            let at = usize::try_from(*slot).unwrap_or(usize::MAX);
            if let Some(entry) = bytes.get_mut(at..at + pointer) {
                entry.copy_from_slice(&target.to_le_bytes()[..pointer]);
            }
        }
        if let Some(cookie) = driver.layout.cookie {
            // The loader sets a fresh /GS cookie (x64: upper 16 bits clear).
            let at = usize::try_from(cookie).unwrap_or(usize::MAX);
            let value: u64 = 0x0000_2B99_2DDF_A233;
            if let Some(entry) = bytes.get_mut(at..at + pointer) {
                entry.copy_from_slice(&value.to_le_bytes()[..pointer]);
            }
        }
        let size = u64::try_from(bytes.len()).unwrap_or(0);
        self.map(base, size, Prot::ALL, &driver.service)?;
        cpu::write(&mut self.uc, base, &bytes).map_err(|_| MapError::OutOfMemory)?;
        // Missing-import stubs: `nop` (the trap) then `ret`.
        let stubs: Vec<u8> = std::iter::repeat_n([0x90_u8, 0xC3], missing.len())
            .flatten()
            .collect();
        cpu::write(&mut self.uc, missing_stubs(arch), &stubs).map_err(|_| MapError::OutOfMemory)?;
        self.uc.get_data_mut().missing = missing;
        Ok(())
    }

    fn install_hooks(&mut self) -> Result<(), MachineError> {
        let (code_start, code_end) = self.uc.get_data().nt.code;
        self.uc
            .add_code_hook(code_start, code_end, |uc, address, _| {
                let trap = uc.get_data().nt.traps.get(&address).copied();
                if let Some(trap) = trap {
                    // A debugger breakpoint on a trap stops before the
                    // trap's work is done, so that it is done once, on resume.
                    if let Some(reason) = watch_to_stop_at(uc) {
                        halt(uc, reason);
                        return;
                    }
                    if let Some(index) = breakpoint_to_stop_at(uc, address) {
                        halt(uc, Halt::Breakpoint(index));
                        return;
                    }
                    on_trap(uc, address, trap);
                }
            })?;
        let stubs = missing_stubs(self.driver.arch);
        self.uc
            .add_code_hook(stubs, stubs + PAGE - 1, |uc, address, _| {
                let Some(routine) = uc.get_data().missing.get(&address).cloned() else {
                    return;
                };
                let caller = cpu::read_ptr(uc, cpu::reg(uc, Reg::Sp)).ok();
                let phase = uc.get_data().phase;
                let _ = emit(
                    uc,
                    Event::Gap {
                        phase: Some(phase),
                        gap: Gap::MissingRoutine { routine },
                        caller,
                    },
                );
                halt(uc, Halt::Gap);
            })?;
        // Reading a missing import as data (a variable the engine lacks).
        self.uc.add_mem_hook(
            HookType::MEM_READ,
            stubs,
            stubs + PAGE - 1,
            |uc, _, address, _, _| {
                let routine = uc.get_data().missing.get(&(address & !1)).cloned();
                if let Some(routine) = routine {
                    let phase = uc.get_data().phase;
                    let _ = emit(
                        uc,
                        Event::Gap {
                            phase: Some(phase),
                            gap: Gap::MissingRoutine { routine },
                            caller: None,
                        },
                    );
                    halt(uc, Halt::Gap);
                }
                true
            },
        )?;
        self.uc.add_intr_hook(on_interrupt)?;
        self.hook_system_instructions()
    }

    /// Hooks the system instructions in the driver's code (a linear sweep
    /// of its executable sections). x64 drivers read and set the IRQL
    /// inline through CR8 (`KeGetCurrentIrql`, `KeRaiseIrql`, `KeLowerIrql`
    /// in the WDK), which Unicorn does not model: each is carried out here,
    /// on the kernel's IRQL. The others ([`system_instruction`]) change
    /// state Windows owns, in ways Unicorn lets pass silently: each stops
    /// the run as one that cannot be judged.
    fn hook_system_instructions(&mut self) -> Result<(), MachineError> {
        use iced_x86::{Formatter, IntelFormatter};
        let driver = Arc::clone(&self.driver);
        let mut formatter = IntelFormatter::new();
        for instruction in driver_instructions(&driver) {
            let Some(detail) = system_instruction(&instruction) else {
                continue;
            };
            let mut text = String::new();
            formatter.format(&instruction, &mut text);
            self.uc
                .add_code_hook(instruction.ip(), instruction.ip(), move |uc, address, _| {
                    let phase = uc.get_data().phase;
                    let _ = emit(
                        uc,
                        Event::Gap {
                            phase: Some(phase),
                            gap: Gap::Instruction {
                                instruction: text.clone(),
                                detail: detail.to_owned(),
                            },
                            caller: Some(address),
                        },
                    );
                    halt(uc, Halt::Gap);
                })?;
        }
        for access in cr8_accesses(&driver) {
            let Cr8Access {
                address,
                length,
                read,
                register,
            } = access;
            self.uc
                .add_code_hook(address, address, move |uc, address, _| {
                    if read {
                        let irql = u64::from(uc.get_data().irql);
                        cpu::write_register64(uc, register, irql);
                    } else {
                        let value = cpu::read_register64(uc, register).unwrap_or(0);
                        let level = u8::try_from(value & 0xf).unwrap_or(0);
                        uc.get_data_mut().set_irql(level, address);
                    }
                    let _ = uc.set_pc(address + length);
                })?;
        }
        Ok(())
    }

    /// The CPU stopped: the reason a hook gave, or a fault Unicorn raised.
    fn take_halt(
        &mut self,
        result: Result<(), uc_error>,
        budget: u64,
        limit: Duration,
    ) -> Option<Halt> {
        if let Some(halt) = self.uc.get_data_mut().halt.take() {
            return Some(halt);
        }
        let pc = cpu::reg(&self.uc, Reg::Ip);
        let phase = self.uc.get_data().phase;
        let fault = |kind, address| Event::Fault {
            phase,
            kind,
            pc,
            address,
        };
        match result {
            Ok(()) => {
                if let Some(halt) = self.halted_at(pc) {
                    return Some(halt);
                }
                // Out of instructions or out of time: the routine is hung.
                let limit = if self.started.elapsed() >= limit {
                    Limit::time(self.options.timeout)
                } else {
                    Limit::Instructions { count: budget }
                };
                let _ = emit(&mut self.uc, Event::Stopped { phase, limit });
                None
            }
            Err(uc_error::INSN_INVALID) => {
                let _ = emit(&mut self.uc, fault(FaultKind::IllegalInstruction, None));
                Some(Halt::Fault)
            }
            Err(error) => {
                let miss = self.uc.get_data_mut().tlb_miss.take();
                if std::env::var_os("HARNESS_DEBUG_NATIVE").is_some() {
                    eprintln!("native: {error:?} at 0x{pc:x}, miss {miss:x?}");
                }
                let event = match (error, miss) {
                    (_, Some((page, access))) => {
                        let kind = match access {
                            MemType::WRITE | MemType::WRITE_UNMAPPED | MemType::WRITE_PROT => {
                                FaultKind::Write
                            }
                            MemType::FETCH | MemType::FETCH_UNMAPPED | MemType::FETCH_PROT => {
                                FaultKind::Execute
                            }
                            _ => FaultKind::Read,
                        };
                        // The TLB sees pages; the instruction says which byte.
                        let address = if kind == FaultKind::Execute {
                            pc
                        } else {
                            cpu::memory_operand(&self.uc, pc, page).unwrap_or(page)
                        };
                        // No stack left below the guard page for the page
                        // fault's frame: the processor double-faults.
                        let kind = if in_stack_guard(self.driver.arch, page) {
                            FaultKind::StackOverflow
                        } else {
                            kind
                        };
                        fault(kind, Some(address))
                    }
                    (uc_error::WRITE_PROT | uc_error::EXCEPTION, None)
                        if self.read_only_operand(pc).is_some() =>
                    {
                        fault(FaultKind::ReadOnlyWrite, self.read_only_operand(pc))
                    }
                    (uc_error::READ_UNMAPPED | uc_error::READ_PROT, None) => {
                        fault(FaultKind::Read, None)
                    }
                    (uc_error::WRITE_UNMAPPED | uc_error::WRITE_PROT, None) => {
                        fault(FaultKind::Write, None)
                    }
                    (uc_error::FETCH_UNMAPPED | uc_error::FETCH_PROT, None) => {
                        fault(FaultKind::Execute, Some(pc))
                    }
                    (other, None) => Event::Gap {
                        phase: Some(phase),
                        gap: Gap::EngineError {
                            message: format!("unicorn stopped with {other:?}"),
                            routine: None,
                        },
                        caller: None,
                    },
                };
                let gap = matches!(event, Event::Gap { .. });
                let _ = emit(&mut self.uc, event);
                Some(if gap { Halt::Gap } else { Halt::Fault })
            }
        }
    }

    /// The address the instruction at `pc` writes in a page mapped without
    /// write access (nt's code, `KUSER_SHARED_DATA`), if any.
    fn read_only_operand(&self, pc: u64) -> Option<u64> {
        let space = &self.uc.get_data().space;
        cpu::memory_operand_where(&self.uc, pc, |address| {
            space
                .region(address)
                .is_some_and(|region| (region.perms & Prot::WRITE).0 == 0)
        })
    }

    /// Unicorn ends a run at `hlt` (the byte before `pc`). With interrupts
    /// disabled the processor never resumes: a hang the driver caused. With
    /// them enabled, Windows resumes it at the next interrupt (the clock's,
    /// within milliseconds), which this machine never raises: the run
    /// cannot be judged from here.
    fn halted_at(&mut self, pc: u64) -> Option<Halt> {
        let at = pc.checked_sub(1)?;
        if cpu::read_vec(&self.uc, at, 1).ok()?.first() != Some(&0xF4) {
            return None;
        }
        let phase = self.uc.get_data().phase;
        let interrupts = self.uc.reg_read(RegisterX86::EFLAGS).unwrap_or(0) & 0x200 != 0;
        if interrupts {
            let _ = emit(
                &mut self.uc,
                Event::Gap {
                    phase: Some(phase),
                    gap: Gap::Instruction {
                        instruction: "hlt".into(),
                        detail: "interrupts are enabled and Windows resumes at the next \
                                 interrupt, which this machine never raises"
                            .into(),
                    },
                    caller: Some(at),
                },
            );
            Some(Halt::Gap)
        } else {
            let limit = Limit::Halted { pc: at };
            let _ = emit(&mut self.uc, Event::Stopped { phase, limit });
            Some(Halt::Spin)
        }
    }

    /// Runs until something its user must see: the end of the scenario, a
    /// break, a bug check, a fault, a gap, a limit.
    pub fn resume(&mut self) -> Stop {
        loop {
            let Some(pc) = self.next_pc() else {
                return Stop::Finished;
            };
            if let Ok(Some(stop)) | Err(stop) = self.run_from(pc, self.options.max_instructions) {
                return stop;
            }
        }
    }

    /// Runs one instruction (the debugger's `t`).
    pub fn step(&mut self) -> Stop {
        let Some(pc) = self.next_pc() else {
            return Stop::Finished;
        };
        match self.run_from(pc, 1) {
            Ok(Some(stop)) | Err(stop) => stop,
            Ok(None) => Stop::Stepped,
        }
    }

    /// Where the CPU continues; starts the next stage of the scenario when
    /// a thread has ended. `None` when the scenario is over.
    fn next_pc(&mut self) -> Option<u64> {
        if let Some(pc) = self.uc.get_data_mut().resume_at.take() {
            return Some(pc);
        }
        match self.scene {
            Scene::Start => {
                self.scene = Scene::Loading;
                Some(self.start_thread(Thread::Worker, Work::Load))
            }
            Scene::Loading | Scene::Unloading => Some(cpu::reg(&self.uc, Reg::Ip)),
            Scene::Done => None,
        }
    }

    /// Sets up a thread at its start with an empty stack.
    fn start_thread(&mut self, thread: Thread, work: Work) -> u64 {
        let arch = self.driver.arch;
        let (top, _) = stack(arch, thread == Thread::Worker);
        let nt = Arc::clone(&self.uc.get_data().nt);
        let start = match thread {
            Thread::Worker => nt.worker_thread_start,
            Thread::Caller => nt.unload_thread_start,
        };
        // The thread it replaces keeps its stack pointer in KernelStack.
        let _ = system::make_current(&mut self.uc, usize::from(thread == Thread::Caller));
        // A thread's first frame: a return address of 0 above it.
        let sp = top - THREAD_FRAME;
        let _ = cpu::write_ptr(&mut self.uc, sp, 0);
        cpu::set_reg(&mut self.uc, Reg::Sp, sp);
        cpu::set_reg(&mut self.uc, Reg::Bp, 0);
        cpu::set_reg(&mut self.uc, Reg::Ip, start);
        // Threads run with interrupts enabled (IF), as at PASSIVE_LEVEL.
        let _ = self.uc.reg_write(RegisterX86::EFLAGS, 0x202);
        let kernel = self.uc.get_data_mut();
        kernel.work = Some(work);
        kernel.thread = thread;
        start
    }

    /// One run of the CPU from `pc`. `Ok(None)`: carry on (a thread ended
    /// and the next stage starts, or a switch happened).
    fn run_from(&mut self, pc: u64, count: u64) -> Result<Option<Stop>, Stop> {
        let remaining = self.options.timeout.saturating_sub(self.started.elapsed());
        if remaining.is_zero() {
            let phase = self.uc.get_data().phase;
            let limit = Limit::time(self.options.timeout);
            let _ = emit(&mut self.uc, Event::Stopped { phase, limit });
            return Err(Stop::Limit(limit));
        }
        let micros = u64::try_from(remaining.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        // Unicorn wants an address to stop at; nt's header page is mapped
        // and never executed (an unmapped one would be looked up and fault).
        let never = self.uc.get_data().nt.base + 0x10;
        let result = self.uc.emu_start(
            pc,
            never,
            micros,
            usize::try_from(count).unwrap_or(usize::MAX),
        );
        let halt = self.take_halt(result, count, self.options.timeout);
        if count == 1 && halt.is_none() {
            // A single step that ran its instruction is not a hang.
            if let Some(Event::Stopped { .. }) = self.uc.get_data().events.last() {
                self.uc.get_data_mut().events.pop();
            }
            return Ok(Some(Stop::Stepped));
        }
        let Some(halt) = halt else {
            let limit = match self.uc.get_data().events.last() {
                Some(Event::Stopped { limit, .. }) => *limit,
                _ => Limit::Instructions { count },
            };
            return Err(Stop::Limit(limit));
        };
        match halt {
            Halt::ThreadExit => {
                self.thread_exit();
                Ok(None)
            }
            Halt::SwitchToWorker => {
                let mut context = self
                    .uc
                    .context_init()
                    .map_err(|error| self.engine_error(error))?;
                self.uc
                    .context_save(&mut context)
                    .map_err(|error| self.engine_error(error))?;
                self.caller = Some(context);
                let pc = self.start_thread(Thread::Worker, Work::Unload);
                self.uc.get_data_mut().resume_at = Some(pc);
                Ok(None)
            }
            Halt::Break(kind) => Ok(Some(Stop::Break(kind))),
            Halt::Breakpoint(number) => Ok(Some(Stop::Breakpoint(number))),
            Halt::Watch(number) => Ok(Some(Stop::Watch(number))),
            Halt::BugCheck => {
                self.scene = Scene::Done;
                Err(Stop::BugCheck)
            }
            Halt::Fault => {
                self.scene = Scene::Done;
                Err(Stop::Fault)
            }
            Halt::Spin => {
                self.scene = Scene::Done;
                let limit = match self.uc.get_data().events.last() {
                    Some(Event::Stopped { limit, .. }) => *limit,
                    _ => Limit::Instructions {
                        count: self.options.max_instructions,
                    },
                };
                Err(Stop::Limit(limit))
            }
            Halt::Gap | Halt::BadPointer(_) => {
                self.scene = Scene::Done;
                Err(Stop::CannotJudge(self.judgement_error()))
            }
        }
    }

    fn engine_error(&mut self, error: uc_error) -> Stop {
        let phase = self.uc.get_data().phase;
        let _ = emit(
            &mut self.uc,
            Event::Gap {
                phase: Some(phase),
                gap: Gap::EngineError {
                    message: format!("unicorn: {error:?}"),
                    routine: None,
                },
                caller: None,
            },
        );
        self.scene = Scene::Done;
        Stop::CannotJudge(self.judgement_error())
    }

    /// The verifier's reason for not judging, as one line.
    fn judgement_error(&self) -> String {
        let events = &self.uc.get_data().events;
        let symbols = self.driver.symbols.clone();
        let context = TrackerContext {
            driver: self.driver.file_name.clone(),
            engine: Engine::Native,
            symbols,
            arch: self.driver.arch,
            pool_hit_tag: None,
            verifier_flags: self.options.verifier_flags,
        };
        harness_core::tracker::judge(events, context)
            .err()
            .map_or_else(|| "the run stopped".into(), |error| error.to_string())
    }

    /// A thread ended: the next stage of the scenario.
    fn thread_exit(&mut self) {
        if let Some(context) = self.caller.take() {
            // The unload routine ran on the worker; the caller goes on.
            let _ = system::make_current(&mut self.uc, 1);
            let _ = self.uc.context_restore(&context);
            let kernel = self.uc.get_data_mut();
            kernel.thread = Thread::Caller;
            return;
        }
        match self.scene {
            Scene::Loading => {
                let loaded = &self.uc.get_data().loaded;
                if loaded.mapped
                    && loaded
                        .entry_status
                        .is_some_and(|status| !harness_core::nt::status::failed(status))
                {
                    self.scene = Scene::Unloading;
                    let pc = self.start_thread(Thread::Caller, Work::Unload);
                    self.uc.get_data_mut().resume_at = Some(pc);
                } else {
                    self.scene = Scene::Done;
                }
            }
            Scene::Unloading | Scene::Start | Scene::Done => self.scene = Scene::Done,
        }
        if self.scene == Scene::Done {
            self.untrimmed_gap();
            let _ = emit(&mut self.uc, Event::End);
        }
    }

    /// Force IRQL checking (0x2) pages out all pageable memory whenever the
    /// driver raises IRQL to `DISPATCH_LEVEL`, so that any touch of it then
    /// bug-checks. This machine never pages: a run that raised IRQL and
    /// ended with no bug check cannot be judged under 0x2.
    fn untrimmed_gap(&mut self) {
        let kernel = self.uc.get_data();
        let Some(pc) = kernel.raised_at else {
            return;
        };
        if !kernel.verifier_flags.has(FORCE_IRQL_CHECKING) || kernel.tracker.bugcheck().is_some() {
            return;
        }
        let phase = kernel.phase;
        let _ = emit(
            &mut self.uc,
            Event::Gap {
                phase: Some(phase),
                gap: Gap::EngineLimit {
                    detail: "the driver raised IRQL to DISPATCH_LEVEL, where Force IRQL checking (0x2) pages out pageable memory; the native engine does not page".into(),
                },
                caller: Some(pc),
            },
        );
    }

    /// Runs the whole scenario with no debugger: what `emulate` does.
    pub fn run_to_end(&mut self) {
        while let Stop::Break(_) | Stop::Breakpoint(_) | Stop::Watch(_) | Stop::Stepped =
            self.resume()
        {}
    }

    /// What the machine reported.
    #[must_use]
    pub fn events(&self) -> &[Event] {
        &self.uc.get_data().events
    }

    /// The kernel's state.
    #[must_use]
    pub fn kernel(&self) -> &Kernel {
        self.uc.get_data()
    }

    /// Whether the scenario has begun (the worker thread started loading
    /// the driver): before that, the driver is not in the loaded-module list.
    #[must_use]
    pub fn started(&self) -> bool {
        self.scene != Scene::Start
    }

    /// Whether the scenario is over.
    #[must_use]
    pub fn finished(&self) -> bool {
        self.scene == Scene::Done
    }

    /// Sets the debugger's breakpoints (all of them, replacing the old).
    ///
    /// # Errors
    /// Unicorn refused a hook.
    pub fn set_breakpoints(&mut self, breakpoints: &[(u64, bool)]) -> Result<(), MachineError> {
        for hook in self.breakpoint_hooks.drain(..) {
            let _ = self.uc.remove_hook(hook);
        }
        self.uc.get_data_mut().breakpoints = breakpoints.to_vec();
        for (index, (address, enabled)) in breakpoints.iter().enumerate() {
            if !enabled {
                continue;
            }
            let hook = self
                .uc
                .add_code_hook(*address, *address, move |uc, pc, _| {
                    if uc.get_data().nt.traps.contains_key(&pc) {
                        return; // the trap hook stops there
                    }
                    if breakpoint_to_stop_at(uc, pc) == Some(index) {
                        halt(uc, Halt::Breakpoint(index));
                    }
                })?;
            self.breakpoint_hooks.push(hook);
        }
        Ok(())
    }

    /// Sets the debugger's data watches (all of them, replacing the old).
    /// With none, no hook is left: a run without watches is not slowed.
    /// Only the CPU's accesses are seen; the kernel's routines here are
    /// Rust code, whose accesses are not instructions.
    ///
    /// # Errors
    /// Unicorn refused a hook.
    pub fn set_watches(&mut self, watches: &[Watch]) -> Result<(), MachineError> {
        let had = !self.watch_hooks.is_empty();
        for hook in self.watch_hooks.drain(..) {
            let _ = self.uc.remove_hook(hook);
        }
        let kernel = self.uc.get_data_mut();
        kernel.watches = watches.to_vec();
        kernel.watch_hit = None;
        if watches.is_empty() {
            if had {
                // Code translated with the watch hooks would keep calling them.
                self.uc.ctl_flush_tb()?;
                self.uc.ctl_flush_tlb()?;
            }
            return Ok(());
        }
        for (index, watch) in watches.iter().enumerate() {
            let kind = match watch.access {
                WatchAccess::Write => HookType::MEM_WRITE,
                WatchAccess::ReadWrite => HookType::MEM_READ | HookType::MEM_WRITE,
            };
            let Watch { address, size, .. } = *watch;
            // Unicorn's memory hooks see physical addresses under the
            // machine's page tables: the watch is hooked where its bytes
            // are now (an aligned watch lies in one page). A watch on
            // memory that is not mapped sees nothing: any access faults.
            let Some((physical, _, _)) = self.uc.get_data().space.translate(address) else {
                continue;
            };
            // Unicorn matches a hook's range against an access's first
            // byte; an access of up to 8 bytes that starts below the watch
            // and overlaps it triggers it too, as on x86 (ba--break-on-
            // access-.md: "triggered whenever the accessed range overlaps").
            let hook = self.uc.add_mem_hook(
                kind,
                physical.saturating_sub(7),
                physical.saturating_add(size - 1),
                move |uc, _, accessed, length, _| {
                    let length = u64::try_from(length).unwrap_or(1).max(1);
                    let overlaps = accessed < physical.saturating_add(size)
                        && accessed.saturating_add(length) > physical;
                    let kernel = uc.get_data_mut();
                    if overlaps && kernel.watch_hit.is_none() {
                        kernel.watch_hit = Some(index);
                    }
                    true
                },
            )?;
            self.watch_hooks.push(hook);
        }
        // The stop comes at the next instruction, once the one that
        // accessed the watch has completed.
        let hook = self.uc.add_code_hook(1, 0, |uc, _, _| {
            if let Some(reason) = watch_to_stop_at(uc) {
                halt(uc, reason);
            }
        })?;
        self.watch_hooks.push(hook);
        // Unicorn decides at translation whether an access calls memory
        // hooks: code translated before these were added would not.
        self.uc.ctl_flush_tb()?;
        self.uc.ctl_flush_tlb()?;
        Ok(())
    }

    /// Whether the debugger breaks when the driver's image loads.
    pub fn set_break_on_load(&mut self, on: bool) {
        self.uc.get_data_mut().break_on_load = on;
    }

    /// Resuming from a breakpoint: its instruction runs without stopping again.
    pub fn pass_breakpoint_at(&mut self, address: u64) {
        self.uc.get_data_mut().pass_breakpoint = Some(address);
    }
}

/// The x86 kernel's segments, as Windows sets them: a flat ring-0 code
/// (0x08) and data (0x10) segment, flat user data (0x23) in DS and ES, and
/// the processor control region at FS (0x30).
fn load_x86_segments(uc: &mut Uc<'_>, gdt: u64, pcr: u64) -> Result<(), cpu::BadAddress> {
    let descriptor = |base: u64, limit: u64, access: u64, flags: u64| -> u64 {
        (limit & 0xffff)
            | ((base & 0xff_ffff) << 16)
            | (access << 40)
            | (((limit >> 16) & 0xf) << 48)
            | (flags << 52)
            | (((base >> 24) & 0xff) << 56)
    };
    let entries = [
        0,
        descriptor(0, 0xfffff, 0x9a, 0xc), // 0x08 ring-0 code
        descriptor(0, 0xfffff, 0x92, 0xc), // 0x10 ring-0 data
        descriptor(0, 0xfffff, 0xfa, 0xc), // 0x18 user code
        descriptor(0, 0xfffff, 0xf2, 0xc), // 0x20 user data (0x23)
        0,                                 // 0x28 the TSS (none here)
        descriptor(pcr, 0xfff, 0x92, 0x4), // 0x30 KPCR
    ];
    load_gdt(
        uc,
        gdt,
        &entries,
        &[
            (RegisterX86::CS, 0x08),
            (RegisterX86::SS, 0x10),
            (RegisterX86::DS, 0x23),
            (RegisterX86::ES, 0x23),
            (RegisterX86::FS, 0x30),
        ],
    )
}

/// Writes the descriptors `entries` at `gdt`, loads GDTR with them and the
/// segment registers with `selectors`.
fn load_gdt(
    uc: &mut Uc<'_>,
    gdt: u64,
    entries: &[u64],
    selectors: &[(RegisterX86, u64)],
) -> Result<(), cpu::BadAddress> {
    for (index, entry) in entries.iter().enumerate() {
        cpu::write_uint(uc, gdt + 8 * index as u64, *entry, 8)?;
    }
    // uc_x86_mmr: selector, base, limit, flags.
    let mut table = [0_u8; 24];
    table[8..16].copy_from_slice(&gdt.to_le_bytes());
    table[16..20].copy_from_slice(
        &u32::try_from(entries.len() * 8 - 1)
            .unwrap_or(0)
            .to_le_bytes(),
    );
    let loaded = uc.reg_write_long(RegisterX86::GDTR, &table).is_ok()
        && selectors
            .iter()
            .all(|(register, selector)| uc.reg_write(*register, *selector).is_ok());
    if loaded {
        Ok(())
    } else {
        Err(cpu::BadAddress(gdt))
    }
}

/// The selectors a Windows x64 kernel thread runs with, as kd's `r` shows
/// them: cs=0010 ss=0018 ds=es=gs=002b fs=0053 (reactos/reactos amd64 `ketypes.h`:
/// `KGDT64_R0_CODE`, `KGDT64_R0_DATA`, `KGDT64_R3_DATA`, `KGDT64_R3_CMTEB`). Long
/// mode ignores the bases; GS's base (the processor block) is set after.
fn load_x64_segments(uc: &mut Uc<'_>, gdt: u64) -> Result<(), cpu::BadAddress> {
    // Flat descriptors: limit 0xfffff, granularity; L for 64-bit code.
    let flat = |access: u64, flags: u64| 0xffff | (access << 40) | (0xf << 48) | (flags << 52);
    let entries = [
        0,
        0,
        flat(0x9b, 0xa), // 0x10 ring-0 code, 64-bit
        flat(0x93, 0xc), // 0x18 ring-0 data
        flat(0xfb, 0xc), // 0x20 user code, 32-bit
        flat(0xf3, 0xc), // 0x28 user data (0x2b)
        flat(0xfb, 0xa), // 0x30 user code, 64-bit
        0,               // 0x38
        0,               // 0x40 the TSS (none here)
        0,               // 0x48
        flat(0xf3, 0xc), // 0x50 the 32-bit TEB (0x53)
    ];
    load_gdt(
        uc,
        gdt,
        &entries,
        &[
            (RegisterX86::CS, 0x10),
            (RegisterX86::SS, 0x18),
            (RegisterX86::DS, 0x2b),
            (RegisterX86::ES, 0x2b),
            (RegisterX86::FS, 0x53),
            (RegisterX86::GS, 0x2b),
        ],
    )
}

/// The watch the instruction before saw, once (the stop it causes).
fn watch_to_stop_at(uc: &mut Uc<'_>) -> Option<Halt> {
    uc.get_data_mut().watch_hit.take().map(Halt::Watch)
}

/// The debugger breakpoint the CPU must stop at before running `pc`, if
/// any; a breakpoint being resumed from is passed once.
fn breakpoint_to_stop_at(uc: &mut Uc<'_>, pc: u64) -> Option<usize> {
    let kernel = uc.get_data_mut();
    let index = kernel
        .breakpoints
        .iter()
        .position(|(address, enabled)| *enabled && *address == pc)?;
    if kernel.pass_breakpoint == Some(pc) {
        kernel.pass_breakpoint = None;
        return None;
    }
    Some(index)
}

/// What a system instruction would do on Windows that the machine cannot
/// reproduce, for the instructions Unicorn carries out without the
/// processor's checks: `rdmsr`/`wrmsr` of any MSR (a real processor raises
/// #GP for one it lacks, Intel SDM vol. 2B "RDMSR"), loads of control
/// registers and descriptor tables (CR3 = 0 or a junk GDT resets the
/// machine at the next fault), the system-call instructions. Reading a
/// control register, and CR8 (the IRQL, modelled), are not among them.
fn system_instruction(instruction: &iced_x86::Instruction) -> Option<&'static str> {
    use iced_x86::{Mnemonic, OpKind, Register};
    match instruction.mnemonic() {
        Mnemonic::Rdmsr | Mnemonic::Wrmsr => Some(
            "which MSRs exist and what writing them does depends on the processor (one it lacks raises #GP)",
        ),
        Mnemonic::Lgdt | Mnemonic::Lidt | Mnemonic::Lldt | Mnemonic::Ltr => {
            Some("it replaces a descriptor table that Windows' interrupts and faults rely on")
        }
        Mnemonic::Syscall | Mnemonic::Sysenter | Mnemonic::Sysret | Mnemonic::Sysexit => {
            Some("it takes the system-call path from kernel mode")
        }
        Mnemonic::Mov
            if instruction.op0_kind() == OpKind::Register
                && instruction.op0_register().is_cr()
                && instruction.op0_register() != Register::CR8 =>
        {
            Some("it changes the processor's paging or protection under Windows")
        }
        _ => None,
    }
}

/// Stops the CPU with a reason.
fn halt(uc: &mut Uc<'_>, reason: Halt) {
    uc.get_data_mut().halt = Some(reason);
    let _ = uc.emu_stop();
}

/// An `int n` or CPU exception.
fn on_interrupt(uc: &mut Uc<'_>, number: u32) {
    let pc = cpu::reg(uc, Reg::Ip);
    let phase = uc.get_data().phase;
    match number {
        3 => {
            let at = pc - 1;
            let kernel = uc.get_data();
            let nt = Arc::clone(&kernel.nt);
            let debugger = kernel.debugger;
            let in_driver = kernel.in_driver(at);
            let break_with_status = nt
                .symbol_at(at)
                .is_some_and(|(symbol, _)| symbol.name == "RtlpBreakWithStatusInstruction");
            if break_with_status && kernel.tracker.bugcheck().is_some() {
                cpu::set_reg(uc, Reg::Ip, at);
                halt(uc, Halt::BugCheck);
            } else if (in_driver || break_with_status) && !debugger {
                // nt's break reached with no bug check under way (the driver
                // jumped there): a breakpoint exception like any other, in
                // nt's code, which the tracker will not blame on the driver.
                let _ = emit(
                    uc,
                    Event::Fault {
                        phase,
                        kind: FaultKind::Breakpoint,
                        pc: at,
                        address: None,
                    },
                );
                halt(uc, Halt::Fault);
            } else if debugger {
                // The debugger shows the `int 3` and steps past it on `g`.
                cpu::set_reg(uc, Reg::Ip, at);
                uc.get_data_mut().resume_at = Some(pc);
                let load = nt
                    .symbol_at(at)
                    .is_some_and(|(symbol, _)| symbol.name == "DebugService2");
                let kind = if in_driver {
                    BreakKind::Hardcoded
                } else if load {
                    BreakKind::ModuleLoad
                } else {
                    BreakKind::PoolHitTag
                };
                halt(uc, Halt::Break(kind));
            }
            // No debugger: nt!PoolHitTag's break goes nowhere.
        }
        0 | 6 | 13 => {
            let kind = match number {
                0 => FaultKind::DivideError,
                6 => FaultKind::IllegalInstruction,
                _ => FaultKind::PrivilegedInstruction,
            };
            let _ = emit(
                uc,
                Event::Fault {
                    phase,
                    kind,
                    pc,
                    address: None,
                },
            );
            halt(uc, Halt::Fault);
        }
        other => {
            let _ = emit(
                uc,
                Event::Gap {
                    phase: Some(phase),
                    gap: Gap::EngineError {
                        message: format!("interrupt 0x{other:x} at 0x{pc:x}"),
                        routine: None,
                    },
                    caller: None,
                },
            );
            halt(uc, Halt::Gap);
        }
    }
}

/// A trap in nt's code: the engine's part of a kernel function.
fn on_trap(uc: &mut Uc<'_>, address: u64, trap: Trap) {
    uc.get_data_mut().failed_write = None;
    let result = super::traps::run(uc, trap);
    match result {
        Ok(()) => {}
        Err(Halt::BadPointer(bad)) => {
            // The routine would fault inside nt on Windows: not the driver's
            // own instruction, so the tracker judges it only where Windows
            // names the cause (special pool: 0xCC / 0xCD).
            let phase = uc.get_data().phase;
            let kind = if uc.get_data().failed_write == Some(bad) {
                FaultKind::Write
            } else {
                FaultKind::Read
            };
            let _ = emit(
                uc,
                Event::Fault {
                    phase,
                    kind,
                    pc: address,
                    address: Some(bad),
                },
            );
            let judged = uc.get_data().tracker.bugcheck().is_some();
            halt(uc, if judged { Halt::Fault } else { Halt::Gap });
        }
        Err(reason) => {
            // Stopping at a trap: resume just past it (its `nop`).
            if matches!(reason, Halt::SwitchToWorker | Halt::ThreadExit) {
                uc.get_data_mut().resume_at = None;
            }
            halt(uc, reason);
            if uc.get_data().halt == Some(Halt::SwitchToWorker) {
                // The caller resumes after the trap once the worker is done.
                let _ = uc.reg_write(
                    match cpu::arch(uc) {
                        Arch::X86 => RegisterX86::EIP,
                        Arch::X64 => RegisterX86::RIP,
                    },
                    address + 1,
                );
            }
        }
    }
}

/// A routine's trap: builds its call and runs its handler.
pub(super) fn run_routine(uc: &mut Uc<'_>, index: usize) -> Result<(), Halt> {
    let routine = &routines::ROUTINES[index];
    let mut call = Call::at_trap(uc, routine.conv, routine.name)?;
    if call.uc.get_data().in_driver(call.caller) {
        let phase = call.uc.get_data().phase;
        call.emit(Event::Call {
            phase,
            routine: format!("ntoskrnl.exe!{}", routine.name),
            caller: call.caller,
        })?;
    }
    let value = (routine.handler)(&mut call)?;
    cpu::set_reg(uc, Reg::Ax, value);
    if routine.wide && cpu::arch(uc) == Arch::X86 {
        cpu::set_reg(uc, Reg::Dx, value >> 32);
    }
    Ok(())
}
