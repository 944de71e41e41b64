//! The Wine prefix used as a test machine, and a traced session in it.
//!
//! A session is services.exe and the winedevice.exe processes it starts,
//! under a wineserver of the prefix that persists [`SERVER_PERSISTENCE`]
//! after the last program of the harness exits. Their stderr (Wine's traces)
//! goes through a pipe into the session log, at most [`LOG_LIMIT`] bytes of it.
//! Three things make sure no session outlives the harness:
//!
//! - [`WineMachine::stop_session`] (also on drop) kills the wineserver with
//!   `wineserver -k`, then every process left whose environment names the
//!   prefix (`WINEPREFIX=<prefix>` in `/proc/<pid>/environ`);
//! - a watchdog (`sh`, [`WATCHDOG`]) that the harness starts with each session
//!   holds the read end of a pipe: when the harness dies, even by SIGKILL, the
//!   pipe closes and the watchdog kills the session and deregisters the
//!   service the harness had installed. It also holds the prefix's lock until
//!   it is done, so the next run waits for it;
//! - on SIGINT and SIGTERM, [`interrupt_guard`]'s thread does the same at
//!   once, then exits (130 or 143).
//!
//! The next run also removes what an earlier run could not: a running
//! wineserver of the prefix, and services whose names start with
//! [`SERVICE_PREFIX`].

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::engine::EngineError;
use harness_core::arch::Arch;
use harness_core::error::ProcessError;
use harness_core::pool_api::PoolRoutine;
use harness_core::process::{last_line, run_checked, spawn_piped, wait_with_timeout, which};

type Result<T> = std::result::Result<T, EngineError>;

/// Routines relay tracing follows besides the pool routines.
const OTHER_TRACED: [&str; 1] = ["KeBugCheckEx"];

const SHIM_SOURCE: &str = include_str!("../../wine/bcryptprimitives.c");

/// The DbgPrint probe (`wine/print_probe.c`): a driver that makes Wine trace
/// each DbgPrint of the drivers sharing its winedevice.exe as printed.
const PROBE_SOURCE: &str = include_str!("../../wine/print_probe.c");

/// The load-order group the probe and the driver under test share: Wine's
/// services.exe runs the drivers of one group in one winedevice.exe.
pub const PROBE_GROUP: &str = "HarnessPrint";

/// How long one samplectl call that does not run driver code may take.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);

/// The most of Wine's trace a session log keeps; the rest is read and dropped.
pub const LOG_LIMIT: u64 = 64 << 20;

/// How long the session's wineserver outlives the last program of the
/// harness (`wineserver -p<seconds>`).
pub const SERVER_PERSISTENCE: Duration = Duration::from_secs(10);

/// Every service the harness installs is named `HarnessTest_<stem>_<pid>`.
pub const SERVICE_PREFIX: &str = "HarnessTest_";

/// The debug channels of a traced session.
const SESSION_DEBUG: &str =
    "warn+debugstr,+relay,+loaddll,trace+ntoskrnl,warn+seh,trace+seh,trace+unwind,-fixme";

/// Stops the session when the harness is gone. Arguments: wineserver, wine,
/// prefix. Lines on stdin: `service <name>` (installed), `done` (the harness
/// cleaned up itself). End of input without `done`: the harness died.
/// SIGINT is ignored: Ctrl-C reaches the whole process group, and the
/// watchdog must outlive the harness to do its work.
const WATCHDOG: &str = r#"
trap '' INT TERM HUP
server=$1 wine=$2 prefix=$3 service=
while IFS= read -r line; do
  case $line in
    done) exit 0 ;;
    "service "*) service=${line#service } ;;
  esac
done
sweep() {
  for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    [ "$pid" = "$$" ] && continue
    if tr '\0' '\n' 2>/dev/null < "$dir/environ" | grep -qxF "WINEPREFIX=$prefix"; then
      kill -9 "$pid" 2>/dev/null
    fi
  done
}
WINEPREFIX=$prefix "$server" -k >/dev/null 2>&1
sweep
if [ -n "$service" ]; then
  WINEPREFIX=$prefix WINEDEBUG=-all timeout 60 "$wine" 'C:\harness\samplectl.exe' uninstall --name "$service" >/dev/null 2>&1
  WINEPREFIX=$prefix "$server" -k >/dev/null 2>&1
  sweep
fi
"#;

/// Wine's programs.
#[derive(Debug, Clone)]
struct Tools {
    wine: PathBuf,
    wineserver: PathBuf,
}

impl Tools {
    fn find() -> Result<Self> {
        let pick = |name: &str| {
            Some(PathBuf::from("/usr/lib/wine").join(name))
                .filter(|path| path.is_file())
                .or_else(|| which(name))
        };
        match (pick("wine64"), pick("wineserver")) {
            (Some(wine), Some(wineserver)) => Ok(Self { wine, wineserver }),
            _ => Err(EngineError::MissingTool {
                tool: "Wine",
                install: "install it (Debian: apt-get install --no-install-recommends wine wine64)",
            }),
        }
    }
}

/// Where Wine installations keep their 32-bit PE modules.
const WINE32_MODULE_DIRS: [&str; 4] = [
    "/usr/lib/i386-linux-gnu/wine/i386-windows", // Debian's wine32:i386
    "/usr/lib/wine/i386-windows",
    "/usr/lib32/wine/i386-windows",
    "/usr/local/lib/wine/i386-windows",
];

/// Whether 32-bit Wine is installed, checked on each run (it may be added
/// later): the 32-bit loader `wine` beside `wine64`, and the 32-bit
/// winedevice.exe that services.exe starts for a 32-bit driver image (Wine's
/// `programs/services/services.c`, `get_service_binary_path`).
///
/// # Errors
/// Wine itself is missing.
pub fn wine32_present() -> Result<bool> {
    let tools = Tools::find()?;
    Ok(wine32_in(&tools.wine, &WINE32_MODULE_DIRS.map(Path::new)))
}

fn wine32_in(wine64: &Path, module_dirs: &[&Path]) -> bool {
    wine64.with_file_name("wine").is_file()
        && module_dirs
            .iter()
            .any(|dir| dir.join("winedevice.exe").is_file())
}

/// What the interrupt handler needs to stop a session on its own.
#[derive(Debug, Clone)]
struct Prefix {
    tools: Tools,
    path: PathBuf,
    /// `TMPDIR` for Wine: where the wineserver of the prefix puts its socket.
    tmp: PathBuf,
}

impl Prefix {
    fn wine_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.tools.wine);
        command
            .args(args)
            .env("WINEPREFIX", &self.path)
            .env("TMPDIR", &self.tmp)
            .env("WINEDEBUG", "-all")
            // No Mono/Gecko installers, and no winedbg popping up on a crash.
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=;winedbg.exe=d")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY");
        command
    }

    fn wineserver(&self, arg: &str) -> Command {
        let mut command = Command::new(&self.tools.wineserver);
        command
            .arg(arg)
            .env("WINEPREFIX", &self.path)
            .env("TMPDIR", &self.tmp)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    }

    /// Runs a wineserver command (`-k`, `-w`, `-p<n>`) to completion.
    fn server(&self, arg: &str) {
        // Only the start goes through the gate: `-w` may wait seconds, and
        // other threads' sessions must not wait for it.
        if let Ok(mut child) = gated(|| self.wineserver(arg).spawn()) {
            let _ = child.wait();
        }
    }

    /// Kills the prefix's wineserver and every process of the prefix.
    fn kill_session(&self) {
        self.server("-k");
        self.server("-w");
        kill_prefix_processes(&self.path, &[]);
    }

    /// Services the harness installed that the registry still holds. Read
    /// from `system.reg`, which the wineserver writes when it exits: call
    /// with no session running.
    fn harness_services(&self) -> Vec<String> {
        let Ok(file) = File::open(self.path.join("system.reg")) else {
            return Vec::new();
        };
        let key = format!("[System\\\\CurrentControlSet\\\\Services\\\\{SERVICE_PREFIX}");
        BufReader::new(file)
            .split(b'\n')
            .map_while(std::result::Result::ok)
            .filter_map(|line| {
                let line = String::from_utf8(line).ok()?;
                let rest = line.strip_prefix(&key)?;
                let (name, _) = rest.split_once(']')?;
                (!name.contains('\\')).then(|| format!("{SERVICE_PREFIX}{name}"))
            })
            .collect()
    }

    /// Removes `service` through the SCM of an untraced session, then ends it.
    fn deregister(&self, service: &str) {
        // A server started first holds no pipe of samplectl's open.
        self.server(&format!("-p{}", SERVER_PERSISTENCE.as_secs()));
        let mut command =
            self.wine_command(&[r"C:\harness\samplectl.exe", "uninstall", "--name", service]);
        let _ = run_gated(&mut command, CONTROL_TIMEOUT);
        self.kill_session();
    }

    /// Stops any session of the prefix, removes the services an earlier run
    /// of the harness left registered and the driver copies it left in
    /// `C:\harness\run`.
    fn remove_leftovers(&self) {
        self.kill_session();
        for service in self.harness_services() {
            self.deregister(&service);
        }
        let run_dir = self.path.join("drive_c/harness/run");
        if let Ok(entries) = fs::read_dir(&run_dir) {
            for entry in entries.filter_map(std::result::Result::ok) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// Runs a Wine program to completion (killed after `limit`), unless the
/// harness is being interrupted.
fn run_gated(command: &mut Command, limit: Duration) -> std::result::Result<Output, ProcessError> {
    let child = gated(|| spawn_piped(command))?;
    wait_with_timeout(child, "wine", b"", limit)
}

/// Set once SIGINT or SIGTERM arrived: from then on only the interrupt
/// handler's thread starts Wine programs.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// Held while a Wine program is started, so that the interrupt handler sees
/// every program started before it stops the session.
static SPAWN_GATE: Mutex<()> = Mutex::new(());
/// The interrupt handler's thread.
static HANDLER: OnceLock<std::thread::ThreadId> = OnceLock::new();

/// Starts a program through the gate. Once the harness is being interrupted,
/// only the handler's thread gets through: any other thread waits for the
/// exit, so it cannot start or kill anything under the handler's feet.
fn gated<T>(spawn: impl FnOnce() -> T) -> T {
    let gate = SPAWN_GATE.lock().unwrap_or_else(PoisonError::into_inner);
    if INTERRUPTED.load(Ordering::SeqCst) {
        // The handler's own programs need the gate.
        drop(gate);
        stand_by_if_interrupted();
        return spawn();
    }
    spawn()
}

/// Parks the calling thread for good if the interrupt handler (another
/// thread) has taken over; it ends the process.
fn stand_by_if_interrupted() {
    if INTERRUPTED.load(Ordering::SeqCst) && HANDLER.get() != Some(&std::thread::current().id()) {
        loop {
            std::thread::park();
        }
    }
}

/// The sessions running now, which the interrupt handler must clean up
/// after: one entry per session, since threads of one process (the test
/// suite's) may each run a session in a prefix of their own. One slot for
/// all once let a second session drop the first one's watchdog pipe, and
/// that watchdog then stopped the first session (wineboot exit 1).
static ACTIVE: Mutex<Vec<ActiveRun>> = Mutex::new(Vec::new());

/// Numbers the sessions of this process (the key of [`ACTIVE`]).
static NEXT_SESSION: AtomicU64 = AtomicU64::new(0);

struct ActiveRun {
    session: u64,
    prefix: Prefix,
    service: Option<String>,
    watchdog: Option<ChildStdin>,
}

/// Installs (once) the SIGINT/SIGTERM handler thread of the Wine engine: it
/// stops the running session, deregisters its service and exits with 130
/// (SIGINT) or 143 (SIGTERM), saying so in one line.
///
/// # Errors
/// The handler could not be installed.
pub fn interrupt_guard() -> Result<()> {
    static INSTALLED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            use signal_hook::consts::{SIGINT, SIGTERM};
            let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
                .map_err(|error| error.to_string())?;
            let handler = std::thread::spawn(move || {
                if let Some(signal) = signals.forever().next() {
                    on_interrupt(signal);
                }
            });
            let _ = HANDLER.set(handler.thread().id());
            Ok(())
        })
        .clone()
        .map_err(|error| EngineError::Unsupported(format!("cannot handle SIGINT: {error}")))
}

fn on_interrupt(signal: i32) -> ! {
    {
        // Whatever another thread is starting now is started before the
        // session is stopped below.
        let _gate = SPAWN_GATE.lock().unwrap_or_else(PoisonError::into_inner);
        INTERRUPTED.store(true, Ordering::SeqCst);
    }
    let sessions = std::mem::take(&mut *ACTIVE.lock().unwrap_or_else(PoisonError::into_inner));
    for mut active in sessions {
        active.prefix.kill_session();
        // The service is deregistered through an untraced session of our own.
        if let Some(service) = &active.service {
            active.prefix.deregister(service);
        }
        if let Some(mut watchdog) = active.watchdog.take() {
            let _ = watchdog.write_all(b"done\n");
        }
        eprintln!(
            "harness: interrupted: the Wine session was stopped{}",
            active.service.map_or_else(String::new, |service| format!(
                " and service {service} removed"
            ))
        );
    }
    std::process::exit(128 + signal);
}

/// Kills (SIGKILL) every process whose environment has `WINEPREFIX=<prefix>`,
/// except this one and `keep`.
pub fn kill_prefix_processes(prefix: &Path, keep: &[u32]) {
    stand_by_if_interrupted();
    for pid in prefix_processes(prefix) {
        if pid != std::process::id()
            && !keep.contains(&pid)
            && let Ok(pid) = libc::pid_t::try_from(pid)
        {
            // SAFETY: kill(2) with a pid read from /proc and a valid signal
            // number; it touches no memory of ours.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// Processes whose environment has `WINEPREFIX=<prefix>` (from `/proc`).
#[must_use]
pub fn prefix_processes(prefix: &Path) -> Vec<u32> {
    let mut wanted = b"WINEPREFIX=".to_vec();
    wanted.extend_from_slice(prefix.as_os_str().as_encoded_bytes());
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(std::result::Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|environ| environ.split(|byte| *byte == 0).any(|var| var == wanted))
        })
        .collect()
}

/// A Wine prefix used as a Windows test machine.
pub struct WineMachine {
    prefix: Prefix,
    log: PathBuf,
    /// Bytes Wine wrote to the last session's log.
    log_bytes: Arc<AtomicU64>,
    /// The prefix's lock, when the machine holds it (shared with the watchdog).
    lock: Option<File>,
    session: Option<Session>,
    /// This machine's key in [`ACTIVE`].
    key: u64,
    /// Which samplectl.exe drives the driver (the x64 one by default).
    controller: Arch,
}

/// samplectl.exe's file name in `C:\harness` for drivers of `arch`: x86
/// drivers are driven by an i686 build, as a 32-bit Windows would run them.
/// The x64 one also cleans up (the watchdog, [`WineMachine::deregister`]).
const fn controller_name(arch: Arch) -> &'static str {
    match arch {
        Arch::X64 => "samplectl.exe",
        Arch::X86 => "samplectl-x86.exe",
    }
}

/// A traced session: the log reader and the watchdog.
struct Session {
    reader: JoinHandle<()>,
    watchdog: Option<Child>,
}

/// The probe's service for drivers of `arch` (never a [`SERVICE_PREFIX`]
/// name: it stays registered from run to run).
const fn probe_service(arch: Arch) -> &'static str {
    match arch {
        Arch::X64 => "HarnessPrintProbe_x64",
        Arch::X86 => "HarnessPrintProbe_x86",
    }
}

/// What one samplectl call printed.
#[derive(Debug, Clone)]
pub struct ControlResult {
    /// samplectl's exit code (`None`: killed after its time limit).
    pub code: Option<i32>,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr (one line on failure).
    pub stderr: String,
}

impl ControlResult {
    /// Whether the call was stopped by its time limit.
    #[must_use]
    pub(crate) const fn timed_out(&self) -> bool {
        self.code.is_none()
    }
}

/// The session log: at most [`LOG_LIMIT`] bytes of it, and whether there was more.
#[derive(Debug, Clone, Default)]
pub struct SessionLog {
    /// The text kept.
    pub text: String,
    /// Total bytes Wine wrote, when more than were kept.
    pub truncated_at: Option<u64>,
}

impl WineMachine {
    /// Makes a fresh prefix at `prefix` with `samplectl.exe` in `C:\harness`,
    /// the `ProcessPrng` shim in system32 and relay tracing limited to the pool
    /// routines. `prefix` must not exist, or be an empty directory (or hold
    /// only the harness's lock file).
    ///
    /// # Errors
    /// Wine or MinGW missing, `prefix` in use, or a step failed.
    pub fn create(prefix: &Path, samplectl: &Path) -> Result<Self> {
        let tools = Tools::find()?;
        if fs::read_dir(prefix).is_ok_and(|entries| {
            entries
                .filter_map(std::result::Result::ok)
                .any(|entry| entry.file_name() != ".harness-lock")
        }) {
            return Err(EngineError::Unsupported(format!(
                "{}: not empty; a Wine prefix for the harness needs a new or empty directory",
                prefix.display()
            )));
        }
        let machine = Self::at(tools, prefix)?;
        fs::write(prefix.join(".harness-prefix"), "made by harness\n")
            .map_err(EngineError::io("write", prefix))?;
        run_checked(
            &mut machine.prefix.wine_command(&["wineboot", "-i"]),
            Duration::from_mins(3),
            "wineboot -i failed",
        )?;
        machine.wait_server();
        let system32 = prefix.join("drive_c/windows/system32");
        build_shim(&system32.join("bcryptprimitives.dll"), &machine.prefix.tmp)?;
        let harness_dir = machine.c_drive().join("harness");
        fs::create_dir_all(&harness_dir).map_err(EngineError::io("create", &harness_dir))?;
        fs::copy(samplectl, harness_dir.join("samplectl.exe"))
            .map_err(EngineError::io("copy samplectl.exe into", &harness_dir))?;
        let include = PoolRoutine::ALL
            .iter()
            .map(|routine| routine.name())
            .chain(OTHER_TRACED)
            .map(|name| format!("ntoskrnl.exe.{name}"))
            .collect::<Vec<_>>()
            .join(";");
        run_checked(
            &mut machine.prefix.wine_command(&[
                "reg",
                "add",
                r"HKCU\Software\Wine\Debug",
                "/v",
                "RelayInclude",
                "/t",
                "REG_SZ",
                "/d",
                &include,
                "/f",
            ]),
            Duration::from_mins(1),
            "cannot configure relay tracing",
        )?;
        machine.wait_server();
        let ready = prefix.join(".harness-ready");
        fs::write(&ready, "ok").map_err(EngineError::io("write", &ready))?;
        Ok(machine)
    }

    /// Whether Wine is installed.
    ///
    /// # Errors
    /// It is not: how to install it.
    pub(crate) fn tools_present() -> Result<()> {
        Tools::find().map(|_| ())
    }

    /// Opens an existing prefix made by [`WineMachine::create`].
    ///
    /// # Errors
    /// Wine missing, or the prefix was not made by the harness.
    pub fn open(prefix: &Path) -> Result<Self> {
        if !prefix.join(".harness-ready").is_file() {
            return Err(EngineError::Unsupported(format!(
                "{} is not a prefix made by the harness",
                prefix.display()
            )));
        }
        Self::at(Tools::find()?, prefix)
    }

    fn at(tools: Tools, prefix: &Path) -> Result<Self> {
        let tmp = prefix.join("tmp");
        fs::create_dir_all(&tmp).map_err(EngineError::io("create", &tmp))?;
        Ok(Self {
            prefix: Prefix {
                tools,
                path: prefix.to_path_buf(),
                tmp,
            },
            log: prefix.join("harness-session.log"),
            log_bytes: Arc::new(AtomicU64::new(0)),
            lock: None,
            session: None,
            key: NEXT_SESSION.fetch_add(1, Ordering::Relaxed),
            controller: Arch::X64,
        })
    }

    /// Keeps the prefix's lock (from [`lock_prefix`]) for as long as the
    /// machine lives, and hands it to each session's watchdog.
    pub(crate) fn hold_lock(&mut self, lock: File) {
        self.lock = Some(lock);
    }

    /// The prefix directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.prefix.path
    }

    /// `C:\` of the prefix.
    #[must_use]
    pub fn c_drive(&self) -> PathBuf {
        self.prefix.path.join("drive_c")
    }

    fn wait_server(&self) {
        self.prefix.server("-w");
    }

    /// Stops any session of the prefix and removes the services an earlier
    /// (killed) run of the harness left registered.
    pub fn remove_leftovers(&mut self) {
        self.stop_session();
        self.prefix.remove_leftovers();
    }

    /// Ends every process of the prefix (any session, traced or not).
    pub fn kill_session(&mut self) {
        self.stop_session();
        self.prefix.kill_session();
    }

    /// Services whose names start with [`SERVICE_PREFIX`] that the prefix's
    /// registry holds (read with no session running).
    #[must_use]
    pub fn harness_services(&self) -> Vec<String> {
        self.prefix.harness_services()
    }

    /// Sets how long Wine's SCM waits for a driver to start or stop
    /// (`ServicesPipeTimeout`, read when services.exe starts).
    ///
    /// # Errors
    /// reg.exe failed.
    pub(crate) fn set_scm_wait(&self, wait: Duration) -> Result<()> {
        let marker = self.prefix.path.join(".harness-scm-wait");
        let millis = wait.as_millis().to_string();
        if fs::read_to_string(&marker).is_ok_and(|known| known == millis) {
            return Ok(());
        }
        run_checked(
            &mut self.prefix.wine_command(&[
                "reg",
                "add",
                r"HKLM\System\CurrentControlSet\Control",
                "/v",
                "ServicesPipeTimeout",
                "/t",
                "REG_SZ",
                "/d",
                &millis,
                "/f",
            ]),
            CONTROL_TIMEOUT,
            "cannot set the SCM's wait",
        )?;
        self.wait_server();
        fs::write(&marker, millis).map_err(EngineError::io("write", &marker))
    }

    /// Starts a traced session: services.exe and the winedevice.exe processes
    /// it spawns write their traces to the session log; a watchdog stops the
    /// session if the harness dies.
    ///
    /// # Errors
    /// Wine could not start.
    pub fn start_session(&mut self) -> Result<()> {
        self.stop_session();
        let log = File::create(&self.log).map_err(EngineError::io("create", &self.log))?;
        let watchdog = self.start_watchdog()?;
        // Persistent for a while, so the session survives between samplectl
        // calls; it daemonises, so it gets no pipes to hold open.
        self.prefix
            .server(&format!("-p{}", SERVER_PERSISTENCE.as_secs()));
        let mut boot = self.prefix.wine_command(&["wineboot"]);
        boot.env("WINEDEBUG", SESSION_DEBUG)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let spawned = gated(|| {
            boot.spawn().map_err(|source| ProcessError::Spawn {
                program: "wineboot".into(),
                source,
            })
        });
        let mut child = match spawned {
            Ok(child) => child,
            Err(error) => {
                self.session = Some(Session {
                    reader: std::thread::spawn(|| {}),
                    watchdog: Some(watchdog),
                });
                self.stop_session();
                return Err(error.into());
            }
        };
        self.log_bytes = Arc::new(AtomicU64::new(0));
        let reader = {
            let pipe = child.stderr.take();
            let log_bytes = Arc::clone(&self.log_bytes);
            std::thread::spawn(move || copy_capped(pipe, log, &log_bytes))
        };
        let status = child.wait().map_err(|source| ProcessError::Spawn {
            program: "wineboot".into(),
            source,
        });
        self.session = Some(Session {
            reader,
            watchdog: Some(watchdog),
        });
        let status = status?;
        if !status.success() {
            self.stop_session();
            return Err(ProcessError::Failed {
                what: "wineboot failed to start a Wine session".into(),
                detail: format!("{status}"),
            }
            .into());
        }
        Ok(())
    }

    fn start_watchdog(&self) -> Result<Child> {
        let mut command = Command::new("sh");
        command
            .args(["-c", WATCHDOG, "harness-wine-watchdog"])
            .arg(&self.prefix.tools.wineserver)
            .arg(&self.prefix.tools.wine)
            .arg(&self.prefix.path)
            .env_remove("WINEPREFIX")
            .env("TMPDIR", &self.prefix.tmp)
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=;winedbg.exe=d")
            .env_remove("DISPLAY")
            .stdin(Stdio::piped())
            .stdout(Stdio::null());
        // The watchdog shares the prefix's lock (its stderr is the lock file),
        // so the next run waits until it is done.
        match self.lock.as_ref().and_then(|lock| lock.try_clone().ok()) {
            Some(lock) => command.stderr(lock),
            None => command.stderr(Stdio::null()),
        };
        let mut child = command.spawn().map_err(|source| ProcessError::Spawn {
            program: "sh".into(),
            source,
        })?;
        let stdin = child.stdin.take();
        {
            let mut active = ACTIVE.lock().unwrap_or_else(PoisonError::into_inner);
            active.retain(|run| run.session != self.key);
            active.push(ActiveRun {
                session: self.key,
                prefix: self.prefix.clone(),
                service: None,
                watchdog: stdin,
            });
        }
        Ok(child)
    }

    /// Tells the watchdog and the interrupt handler which service to remove
    /// if the harness dies or is interrupted now.
    pub fn installing(&self, service: &str) {
        let mut active = ACTIVE.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(active) = active.iter_mut().find(|run| run.session == self.key) {
            active.service = Some(service.to_owned());
            if let Some(watchdog) = active.watchdog.as_mut() {
                let _ = writeln!(watchdog, "service {service}");
            }
        }
    }

    /// Drives drivers of `arch` with their samplectl.exe from now on (put in
    /// the prefix by [`WineMachine::update_samplectl`]).
    pub(crate) const fn drive_with(&mut self, arch: Arch) {
        self.controller = arch;
    }

    /// Ends the session (all Wine processes of the prefix) and dismisses the
    /// watchdog.
    pub fn stop_session(&mut self) {
        let Some(mut session) = self.session.take() else {
            return;
        };
        self.prefix.kill_session();
        // Every writer of the log pipe is gone: the reader ends.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !session.reader.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if session.reader.is_finished() {
            let _ = session.reader.join();
        }
        let active = {
            let mut sessions = ACTIVE.lock().unwrap_or_else(PoisonError::into_inner);
            sessions
                .iter()
                .position(|run| run.session == self.key)
                .map(|index| sessions.swap_remove(index))
        };
        if let Some(mut watchdog) = active.and_then(|active| active.watchdog) {
            let _ = watchdog.write_all(b"done\n");
        }
        if let Some(mut watchdog) = session.watchdog.take() {
            let _ = watchdog.wait();
        }
    }

    /// The session's trace log so far, at most [`LOG_LIMIT`] bytes.
    #[must_use]
    pub(crate) fn session_log(&self) -> SessionLog {
        let mut text = Vec::new();
        if let Ok(file) = File::open(&self.log) {
            let _ = file.take(LOG_LIMIT).read_to_end(&mut text);
        }
        let written = self.log_bytes.load(Ordering::SeqCst);
        let total = written.max(u64::try_from(text.len()).unwrap_or(u64::MAX));
        SessionLog {
            text: String::from_utf8_lossy(&text).into_owned(),
            truncated_at: (total > LOG_LIMIT).then_some(total),
        }
    }

    /// The session's trace log so far.
    #[must_use]
    pub fn log(&self) -> String {
        self.session_log().text
    }

    /// Runs `samplectl.exe` inside the prefix, for at most `CONTROL_TIMEOUT`.
    ///
    /// # Errors
    /// Wine could not run it.
    pub fn samplectl(&self, args: &[&str]) -> Result<ControlResult> {
        self.samplectl_within(args, CONTROL_TIMEOUT)
    }

    /// Runs `samplectl.exe` inside the prefix, killed after `limit`.
    ///
    /// # Errors
    /// Wine could not run it.
    pub(crate) fn samplectl_within(&self, args: &[&str], limit: Duration) -> Result<ControlResult> {
        let exe = format!(r"C:\harness\{}", controller_name(self.controller));
        let mut all = vec![exe.as_str()];
        all.extend_from_slice(args);
        let mut command = self.prefix.wine_command(&all);
        match run_gated(&mut command, limit) {
            Ok(output) => Ok(ControlResult {
                code: output.status.code(),
                stdout: String::from_utf8_lossy(&output.stdout).trim().to_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            }),
            Err(timeout @ ProcessError::Timeout { .. }) => Ok(ControlResult {
                code: None,
                stdout: String::new(),
                stderr: timeout.to_string(),
            }),
            Err(error) => Err(error.into()),
        }
    }

    /// Removes `service` through the SCM in an untraced session of its own
    /// (for a service the traced session could not remove); no session may
    /// be running.
    pub(crate) fn deregister(&self, service: &str) {
        self.prefix.deregister(service);
    }

    /// Keeps the DbgPrint probe for drivers of `arch` in `C:\harness` built
    /// from this harness's source (MinGW, when the source changed).
    ///
    /// # Errors
    /// MinGW is missing or the build failed.
    pub(crate) fn update_print_probe(&self, arch: Arch) -> Result<()> {
        let harness_dir = self.c_drive().join("harness");
        let target = harness_dir.join(format!("print-probe-{arch}.sys"));
        let built_from = harness_dir.join(format!("print-probe-{arch}.c"));
        let (compiler, entry) = match arch {
            Arch::X64 => ("x86_64-w64-mingw32-gcc", "DriverEntry"),
            Arch::X86 => ("i686-w64-mingw32-gcc", "_DriverEntry@8"),
        };
        let entry = format!("-Wl,-e,{entry}");
        let flags = [
            "-O2",
            "-ffreestanding",
            "-nostdlib",
            "-Wl,--subsystem,native",
            &entry,
        ];
        // What it was built from: the flags, then the source.
        let stamp = format!("/* {} */\n{PROBE_SOURCE}", flags.join(" "));
        if target.is_file() && fs::read_to_string(&built_from).is_ok_and(|built| built == stamp) {
            return Ok(());
        }
        mingw_build(
            compiler,
            &flags,
            &target,
            ("print_probe.c", PROBE_SOURCE),
            &self.prefix.tmp,
        )?;
        fs::write(&built_from, stamp).map_err(EngineError::io("write", &built_from))
    }

    /// Starts the DbgPrint probe for drivers of `arch` in this session (its
    /// service is made in [`PROBE_GROUP`] the first time).
    ///
    /// # Errors
    /// It did not start: the run cannot show DbgPrint text as printed.
    pub(crate) fn start_print_probe(&self, arch: Arch) -> Result<()> {
        let service = probe_service(arch);
        if self.samplectl(&["start", "--name", service])?.code == Some(0) {
            return Ok(());
        }
        let path = format!(r"C:\harness\print-probe-{arch}.sys");
        let args = [
            "install",
            &path,
            "--name",
            service,
            "--group",
            PROBE_GROUP,
            "--no-copy",
        ];
        let install = self.samplectl(&args)?;
        let start = self.samplectl(&["start", "--name", service])?;
        if start.code == Some(0) {
            Ok(())
        } else {
            // Its install's error when that failed too (it may say why).
            let detail = if install.code == Some(0) {
                start.stderr
            } else {
                format!("{}; {}", install.stderr, start.stderr)
            };
            Err(ProcessError::Failed {
                what: "the Wine engine's DbgPrint probe did not start".into(),
                detail,
            }
            .into())
        }
    }

    /// Keeps the samplectl.exe for drivers of `arch` in the prefix equal to
    /// `samplectl` (a build for `arch`).
    ///
    /// # Errors
    /// The copy failed.
    pub(crate) fn update_samplectl(&self, arch: Arch, samplectl: &Path) -> Result<()> {
        let target = self.c_drive().join("harness").join(controller_name(arch));
        let same = fs::read(samplectl).ok() == fs::read(&target).ok();
        if !same {
            fs::copy(samplectl, &target)
                .map_err(EngineError::io("copy samplectl.exe to", &target))?;
        }
        Ok(())
    }
}

impl Drop for WineMachine {
    fn drop(&mut self) {
        self.stop_session();
    }
}

/// Copies the session's trace from `pipe` into `log`, at most [`LOG_LIMIT`]
/// bytes; the rest is read (so Wine never blocks on a full pipe) and counted.
fn copy_capped(pipe: Option<impl Read>, log: File, written: &AtomicU64) {
    let Some(pipe) = pipe else { return };
    let mut pipe = BufReader::with_capacity(1 << 16, pipe);
    let mut log = std::io::BufWriter::new(log);
    let mut total: u64 = 0;
    loop {
        let chunk = match pipe.fill_buf() {
            Ok([]) | Err(_) => break,
            Ok(chunk) => chunk,
        };
        let length = chunk.len();
        let room = usize::try_from(LOG_LIMIT.saturating_sub(total)).unwrap_or(usize::MAX);
        if room > 0 {
            let _ = log.write_all(&chunk[..length.min(room)]);
            // Flushed per line batch, so a run can read the log while it grows.
            let _ = log.flush();
        }
        total = total.saturating_add(u64::try_from(length).unwrap_or(u64::MAX));
        written.store(total, Ordering::SeqCst);
        pipe.consume(length);
    }
    let _ = log.flush();
}

/// The lock file of a prefix (`<prefix>/.harness-lock`), created if needed.
fn lock_file(prefix: &Path) -> Option<File> {
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(prefix.join(".harness-lock"))
        .ok()
}

/// Takes the prefix's lock (one run at a time: they share its services and
/// wineserver), waiting for a run or watchdog that holds it.
///
/// # Errors
/// The lock file cannot be made or locked.
pub fn lock_prefix(prefix: &Path) -> Result<File> {
    fs::create_dir_all(prefix).map_err(EngineError::io("create", prefix))?;
    let path = prefix.join(".harness-lock");
    let lock = lock_file(prefix).ok_or_else(|| EngineError::Io {
        what: "create",
        path: path.clone(),
        source: std::io::Error::other("cannot open"),
    })?;
    lock.lock().map_err(EngineError::io("lock", &path))?;
    Ok(lock)
}

/// Builds the `ProcessPrng` shim with MinGW, with `tmp` as its `TMPDIR`.
fn build_shim(target: &Path, tmp: &Path) -> Result<()> {
    mingw_build(
        "x86_64-w64-mingw32-gcc",
        &["-O2", "-shared", "-ladvapi32"],
        target,
        ("bcryptprimitives.c", SHIM_SOURCE),
        tmp,
    )
}

/// Compiles one C `source` (file name, text) into `target` with the MinGW
/// `compiler` and its `flags`, in a directory of its own under `tmp`.
fn mingw_build(
    compiler: &'static str,
    flags: &[&str],
    target: &Path,
    (name, text): (&str, &str),
    tmp: &Path,
) -> Result<()> {
    let build = tmp.join("harness-mingw");
    fs::create_dir_all(&build).map_err(EngineError::io("create", &build))?;
    let source = build.join(name);
    fs::write(&source, text).map_err(EngineError::io("write", &source))?;
    // Libraries after the source, as ld resolves left to right.
    let (libraries, options): (Vec<&str>, Vec<&str>) =
        flags.iter().partition(|flag| flag.starts_with("-l"));
    let output = Command::new(compiler)
        .args(options)
        .arg("-o")
        .arg(target)
        .arg(&source)
        .args(libraries)
        .env("TMPDIR", &build)
        .stdin(Stdio::null())
        .output();
    let _ = fs::remove_dir_all(&build);
    match output {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(ProcessError::Failed {
            what: format!("building {} failed", harness_core::file_name(target)),
            detail: last_line(&output.stderr),
        }
        .into()),
        Err(_) => Err(EngineError::MissingTool {
            tool: compiler,
            install: if compiler.starts_with("i686") {
                "install MinGW (apt-get install gcc-mingw-w64-i686)"
            } else {
                "install MinGW (apt-get install gcc-mingw-w64-x86-64)"
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_log_keeps_at_most_the_limit_and_counts_the_rest() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("log");
        let log = File::create(&path).expect("log");
        let written = AtomicU64::new(0);
        let more = LOG_LIMIT + 4096;
        copy_capped(Some(std::io::repeat(b'x').take(more)), log, &written);
        assert_eq!(fs::metadata(&path).expect("log").len(), LOG_LIMIT);
        assert_eq!(written.load(Ordering::SeqCst), more);
    }

    #[test]
    fn wine32_needs_the_32_bit_loader_and_winedevice() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bin = dir.path().join("bin");
        let modules = dir.path().join("i386-windows");
        fs::create_dir_all(&bin).expect("bin");
        fs::create_dir_all(&modules).expect("modules");
        let wine64 = bin.join("wine64");
        fs::write(&wine64, "").expect("wine64");
        let dirs = [modules.as_path()];
        assert!(!wine32_in(&wine64, &dirs), "wine64 alone");
        fs::write(bin.join("wine"), "").expect("wine");
        assert!(!wine32_in(&wine64, &dirs), "no 32-bit winedevice.exe");
        fs::write(modules.join("winedevice.exe"), "").expect("winedevice");
        assert!(wine32_in(&wine64, &dirs));
    }

    #[test]
    fn registered_harness_services_are_read_from_system_reg() {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::write(
            dir.path().join("system.reg"),
            "[System\\\\CurrentControlSet\\\\Services\\\\PlugPlay] 1\n\
             [System\\\\CurrentControlSet\\\\Services\\\\HarnessTest_a_1] 1\n\
             [System\\\\CurrentControlSet\\\\Services\\\\HarnessTest_a_1\\\\Enum] 1\n",
        )
        .expect("write");
        let prefix = Prefix {
            tools: Tools {
                wine: "wine64".into(),
                wineserver: "wineserver".into(),
            },
            path: dir.path().to_path_buf(),
            tmp: dir.path().join("tmp"),
        };
        assert_eq!(prefix.harness_services(), ["HarnessTest_a_1"]);
    }
}
