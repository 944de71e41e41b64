//! Wine as a stand-in Windows test machine: Debian's wine64 8.0 loads kernel
//! drivers in winedevice.exe through its Service Control Manager, so the real
//! `samplectl.exe` installs, starts, stops and removes the real driver.
//!
//! Wine has no Driver Verifier. Its traces give what the pool tracker needs:
//! relay tracing (limited by `RelayInclude` to the pool routines) shows each
//! call with its arguments, result and return address; `+loaddll` and
//! `trace+ntoskrnl` show where the driver was mapped, DriverEntry's status
//! and the unload routine; `warn+debugstr` carries DbgPrint's text.
//!
//! Two Wine gaps are handled here: Wine 8 has no `bcryptprimitives.dll`
//! (Rust's std imports `ProcessPrng` from it), so a small shim is built with
//! MinGW into each prefix; and Wine prints `%wZ` as "Z", which Sample.sys
//! avoids by formatting its text itself.

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{EngineError, RunOptions, last_line, run_checked, run_with_timeout, which};
use crate::arch::Arch;
use crate::error::ProcessError;
use crate::events::{Event, Gap, Phase};
use crate::pool_api::PoolRoutine;
use crate::verdict::FaultKind;

type Result<T> = std::result::Result<T, EngineError>;

/// Routines relay tracing follows besides the pool routines.
const OTHER_TRACED: [&str; 1] = ["KeBugCheckEx"];

const SHIM_SOURCE: &str = include_str!("../../wine/bcryptprimitives.c");

/// How long one samplectl call may take before the driver counts as hung.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);

/// Wine's programs.
#[derive(Debug, Clone)]
struct Tools {
    wine: PathBuf,
    wineserver: PathBuf,
}

impl Tools {
    fn find() -> Result<Self> {
        let pick = |name: &str| {
            [PathBuf::from("/usr/lib/wine").join(name)]
                .into_iter()
                .find(|path| path.is_file())
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

/// A Wine prefix used as a Windows test machine.
pub struct WineMachine {
    tools: Tools,
    prefix: PathBuf,
    log: PathBuf,
    session: bool,
}

/// What one samplectl call printed.
#[derive(Debug, Clone)]
pub struct ControlResult {
    /// samplectl's exit code (`None`: killed after the timeout).
    pub code: Option<i32>,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr (one line on failure).
    pub stderr: String,
}

impl WineMachine {
    /// Makes a fresh prefix at `prefix` with `samplectl.exe` in `C:\harness`,
    /// the `ProcessPrng` shim in system32 and relay tracing limited to the pool
    /// routines.
    ///
    /// # Errors
    /// Wine or MinGW missing, or a step failed.
    pub fn create(prefix: &Path, samplectl: &Path) -> Result<Self> {
        let tools = Tools::find()?;
        fs::create_dir_all(prefix).map_err(EngineError::io("create", prefix))?;
        let machine = Self {
            tools,
            prefix: prefix.to_path_buf(),
            log: prefix.join("harness-session.log"),
            session: false,
        };
        run_checked(
            machine
                .wine_command(&["wineboot", "-i"])
                .env("WINEDEBUG", "-all"),
            Duration::from_mins(3),
            "wineboot -i failed",
        )?;
        machine.wait_server();
        let system32 = prefix.join("drive_c/windows/system32");
        build_shim(&system32.join("bcryptprimitives.dll"))?;
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
            machine
                .wine_command(&[
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
                ])
                .env("WINEDEBUG", "-all"),
            Duration::from_mins(1),
            "cannot configure relay tracing",
        )?;
        machine.wait_server();
        let ready = prefix.join(".harness-ready");
        fs::write(&ready, "ok").map_err(EngineError::io("write", &ready))?;
        Ok(machine)
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
        Ok(Self {
            tools: Tools::find()?,
            prefix: prefix.to_path_buf(),
            log: prefix.join("harness-session.log"),
            session: false,
        })
    }

    /// `C:\` of the prefix.
    #[must_use]
    pub fn c_drive(&self) -> PathBuf {
        self.prefix.join("drive_c")
    }

    fn wine_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.tools.wine);
        command
            .args(args)
            .env("WINEPREFIX", &self.prefix)
            // No Mono/Gecko installers, and no winedbg popping up on a crash.
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=;winedbg.exe=d")
            .env_remove("DISPLAY");
        command
    }

    fn wineserver(&self, arg: &str) -> Command {
        let mut command = Command::new(&self.tools.wineserver);
        command.arg(arg).env("WINEPREFIX", &self.prefix);
        command
    }

    fn wait_server(&self) {
        let _ = run_with_timeout(&mut self.wineserver("-w"), b"", Duration::from_mins(1));
    }

    /// Starts a traced session: services.exe and the winedevice.exe processes
    /// it spawns write their traces to the session log.
    ///
    /// # Errors
    /// Wine could not start.
    pub fn start_session(&mut self) -> Result<()> {
        self.stop_session();
        let log = File::create(&self.log).map_err(EngineError::io("create", &self.log))?;
        // Persistent, so the session survives between samplectl calls; it
        // daemonises, so it gets no pipes to hold open.
        let _ = self
            .wineserver("-p")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let status = self
            .wine_command(&["wineboot"])
            .env(
                "WINEDEBUG",
                "warn+debugstr,+relay,+loaddll,trace+ntoskrnl,-fixme",
            )
            .stdout(Stdio::null())
            .stderr(log)
            .status()
            .map_err(|source| ProcessError::Spawn {
                program: "wineboot".into(),
                source,
            })?;
        if !status.success() {
            return Err(ProcessError::Failed {
                what: "wineboot failed to start a Wine session".into(),
                detail: format!("{status}"),
            }
            .into());
        }
        self.session = true;
        Ok(())
    }

    /// Ends the session (all Wine processes of the prefix).
    pub fn stop_session(&mut self) {
        let _ = run_with_timeout(&mut self.wineserver("-k"), b"", Duration::from_secs(10));
        self.session = false;
    }

    /// The session's trace log so far.
    #[must_use]
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Runs `samplectl.exe` inside the prefix.
    ///
    /// # Errors
    /// Wine could not run it.
    pub fn samplectl(&self, args: &[&str]) -> Result<ControlResult> {
        let mut all = vec![r"C:\harness\samplectl.exe"];
        all.extend_from_slice(args);
        let mut command = self.wine_command(&all);
        command.env("WINEDEBUG", "-all");
        match run_with_timeout(&mut command, b"", CONTROL_TIMEOUT) {
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
}

impl Drop for WineMachine {
    fn drop(&mut self) {
        if self.session {
            self.stop_session();
        }
    }
}

/// Builds the `ProcessPrng` shim with MinGW.
fn build_shim(target: &Path) -> Result<()> {
    let dir = target.parent().unwrap_or(Path::new("."));
    let source = dir.join("harness-bcryptprimitives.c");
    fs::write(&source, SHIM_SOURCE).map_err(EngineError::io("write", &source))?;
    let output = Command::new("x86_64-w64-mingw32-gcc")
        .args(["-O2", "-shared", "-o"])
        .arg(target)
        .arg(&source)
        .arg("-ladvapi32")
        .output();
    let _ = fs::remove_file(&source);
    match output {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(ProcessError::Failed {
            what: "building bcryptprimitives.dll failed".into(),
            detail: last_line(&output.stderr),
        }
        .into()),
        Err(_) => Err(EngineError::MissingTool {
            tool: "x86_64-w64-mingw32-gcc",
            install: "install MinGW (apt-get install gcc-mingw-w64-x86-64)",
        }),
    }
}

/// The harness's own prefix for `emulate --engine wine`, made on first use.
fn cached_machine() -> Result<(WineMachine, File)> {
    let cache = crate::cache_dir().ok_or_else(|| {
        EngineError::Unsupported(
            "neither HOME nor XDG_CACHE_HOME names an absolute directory for the Wine prefix"
                .into(),
        )
    })?;
    fs::create_dir_all(&cache).map_err(EngineError::io("create", &cache))?;
    // One run at a time per prefix: they share its services and wineserver.
    let lock_path = cache.join(".wine-lock");
    let lock = File::create(&lock_path).map_err(EngineError::io("create", &lock_path))?;
    lock.lock().map_err(EngineError::io("lock", &lock_path))?;
    let prefix = cache.join("wine-prefix");
    let samplectl = crate::driver_build::build_samplectl()
        .map_err(|error| EngineError::Unsupported(error.to_string()))?;
    if let Ok(machine) = WineMachine::open(&prefix) {
        // Keep samplectl current with this harness.
        let target = machine.c_drive().join("harness/samplectl.exe");
        fs::copy(&samplectl, &target).map_err(EngineError::io("copy samplectl.exe to", &target))?;
        return Ok((machine, lock));
    }
    eprintln!(
        "harness: first use: creating a Wine prefix in {} ...",
        prefix.display()
    );
    let _ = fs::remove_dir_all(&prefix);
    let machine = WineMachine::create(&prefix, &samplectl).inspect_err(|_| {
        let _ = fs::remove_dir_all(&prefix);
    })?;
    Ok((machine, lock))
}

/// Loads, starts, stops and removes `driver` in Wine and returns the events.
///
/// # Errors
/// Wine could not run it, or the driver is not x64.
pub fn run(driver: &Path, image_size: u64, options: &RunOptions) -> Result<Vec<Event>> {
    // Wine runs the driver for real: no allocation can be made to fail, and
    // the Windows version is the prefix's.
    if options.fail_allocation != 0 || options.os_version.is_some() {
        return Err(EngineError::Unsupported(
            "--fail-allocation and --os-version need the native or speakeasy engine; Wine runs the driver as it is".into(),
        ));
    }
    let (mut machine, _lock) = cached_machine()?;
    let name = driver
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    let file_name = driver
        .file_name()
        .map(|file| file.to_string_lossy().into_owned())
        .unwrap_or_default();
    let run_dir = machine.c_drive().join("harness/run");
    let _ = fs::remove_dir_all(&run_dir);
    fs::create_dir_all(&run_dir).map_err(EngineError::io("create", &run_dir))?;
    fs::copy(driver, run_dir.join(&file_name))
        .map_err(EngineError::io("copy the driver to", &run_dir))?;
    machine.start_session()?;
    let result = drive(&machine, &name, &format!(r"C:\harness\run\{file_name}"));
    machine.stop_session();
    let (start, _stop) = result?;
    let log = machine.log();
    let events = events_from_log(&log, &file_name, image_size);
    if !events
        .iter()
        .any(|event| matches!(event, Event::Load { .. }))
    {
        return Err(EngineError::Unsupported(format!(
            "Wine did not load {file_name}: {}",
            if start.stderr.is_empty() {
                "no trace of the load".to_owned()
            } else {
                start.stderr
            }
        )));
    }
    Ok(events)
}

/// install, start, stop, uninstall (the last always, so no service is left).
fn drive(machine: &WineMachine, name: &str, path: &str) -> Result<(ControlResult, ControlResult)> {
    // A service left by an interrupted run would make install fail (1073).
    let _ = machine.samplectl(&["uninstall", "--name", name])?;
    let install = machine.samplectl(&["install", path, "--name", name, "--no-copy"])?;
    if install.code != Some(0) {
        return Err(ProcessError::Failed {
            what: "samplectl install failed under Wine".into(),
            detail: install.stderr,
        }
        .into());
    }
    let start = machine.samplectl(&["start", "--name", name])?;
    let stop = if start.code == Some(0) {
        machine.samplectl(&["stop", "--name", name])?
    } else {
        ControlResult {
            code: Some(1),
            stdout: String::new(),
            stderr: "not started".into(),
        }
    };
    let _ = machine.samplectl(&["uninstall", "--name", name]);
    Ok((start, stop))
}

/// Turns a session log into events for the driver `file_name`.
///
/// Only calls whose return address lies inside the driver count: Wine's own
/// drivers allocate pool too.
#[must_use]
#[allow(clippy::too_many_lines)]
pub fn events_from_log(log: &str, file_name: &str, image_size: u64) -> Vec<Event> {
    let mut events = Vec::new();
    let mut base = None;
    let mut size = image_size;
    let mut thread = String::new();
    let mut phase = Phase::Entry;
    let mut pending: HashMap<String, (String, Vec<u64>, u64)> = HashMap::new();
    let mut entry_status = None;
    let mut entry_done = false;
    let driver_name = file_name
        .rsplit_once('.')
        .map_or(file_name, |(stem, _)| stem)
        .to_owned();
    let loaded = format!("\\\\{file_name}\" at ");
    for line in log.lines() {
        let (tid, rest) = line.split_once(':').unwrap_or(("", line));
        if base.is_none() {
            if let Some(at) = line.find(&loaded).filter(|_| line.contains("Loaded L\"")) {
                base = hex(line[at + loaded.len()..].split(':').next().unwrap_or(""));
                tid.clone_into(&mut thread);
                if let Some(base) = base {
                    events.push(Event::Load {
                        arch: Arch::X64,
                        image_base: base,
                        image_size: size,
                        entry_point: 0,
                    });
                }
            }
            continue;
        }
        let Some(base) = base else { continue };
        if let Some(range) =
            rest.strip_prefix("trace:ntoskrnl:ldr_notify_callback relocating from ")
        {
            // `A-B to C-D`: the mapped range.
            if let Some((from, _)) = range.split_once(" to ")
                && let Some((start, end)) = from.split_once('-')
                && let (Some(start), Some(end)) = (hex(start), hex(end))
            {
                size = end - start;
                if let Some(Event::Load { image_size, .. }) = events.first_mut() {
                    *image_size = size;
                }
            }
            continue;
        }
        let inside = |address: u64| address >= base && address < base + size;
        if let Some(rest) = rest.strip_prefix("Call driver init ") {
            if let Some(Event::Load { entry_point, .. }) = events.first_mut() {
                *entry_point = hex(rest.split_whitespace().next().unwrap_or("")).unwrap_or(0);
            }
            if let Some(object) = rest
                .split_once("obj=")
                .and_then(|(_, after)| hex(after.split(',').next().unwrap_or("")))
            {
                events.push(Event::DriverObject {
                    address: object,
                    name: driver_name.clone(),
                });
            }
            phase = Phase::Entry;
        } else if rest.starts_with("Ret  driver init ") {
            entry_status = rest
                .rsplit_once("retval=")
                .and_then(|(_, value)| hex(value.trim()))
                .map(|value| u32::try_from(value & 0xffff_ffff).unwrap_or(u32::MAX));
        } else if let Some(value) = rest
            .strip_prefix("trace:ntoskrnl:init_driver - DriverUnload = ")
            .filter(|_| tid == thread && !entry_done)
        {
            entry_done = true;
            // `Ret driver init` comes first; a trace without it says nothing
            // of DriverEntry's status, and the run cannot be judged.
            events.push(entry_status.map_or_else(
                || Event::Gap {
                    phase: Some(Phase::Entry),
                    gap: Gap::EngineError {
                        message: "Wine's trace has no status for DriverEntry".into(),
                        routine: None,
                    },
                    caller: None,
                },
                |status| Event::EntryReturn {
                    status,
                    unload_routine: hex(value).unwrap_or(0),
                },
            ));
        } else if rest.starts_with("Call driver unload ") {
            phase = Phase::Unload;
        } else if rest.starts_with("Ret  driver unload ") {
            events.push(Event::UnloadReturn);
        } else if let Some(text) = rest
            .strip_prefix("warn:debugstr:")
            .filter(|_| tid == thread)
        {
            // `vDbgPrintExWithPrefix 00000000:00000001: <text>`
            let text = text.split_once(": ").map_or("", |(_, text)| text);
            events.push(Event::DebugPrint {
                phase,
                text: format!("{text}\n"),
            });
        } else if let Some(call) = rest.strip_prefix("Call ntoskrnl.exe.") {
            // `ExAllocatePoolWithTag(00000001,00000074,64636261) ret=021a102a`
            let Some((name, after)) = call.split_once('(') else {
                continue;
            };
            let Some((args, return_address)) = after.rsplit_once(") ret=") else {
                continue;
            };
            let Some(caller) = hex(return_address) else {
                continue;
            };
            if inside(caller) {
                let args = args.split(',').filter_map(hex).collect();
                pending.insert(format!("{tid}:{name}"), (name.to_owned(), args, caller));
            }
        } else if let Some(ret) = rest.strip_prefix("Ret  ntoskrnl.exe.") {
            let Some((name, after)) = ret.split_once("()") else {
                continue;
            };
            let Some((name, args, caller)) = pending.remove(&format!("{tid}:{name}")) else {
                continue;
            };
            let result = after
                .split_once("retval=")
                .and_then(|(_, value)| hex(value.split_whitespace().next().unwrap_or("")))
                .unwrap_or(0);
            if let Some(event) = pool_event(&name, &args, result, caller, phase) {
                events.push(event);
            }
        } else if let Some(fault) = line.strip_prefix("wine: Unhandled ") {
            // `page fault on write access to 0000000000000010 at address 00000000021A1031 (thread 0134), ...`
            let pc = fault
                .split_once(" at address ")
                .and_then(|(_, after)| hex(after.split_whitespace().next().unwrap_or("")));
            let accessed = fault
                .split_once(" access to ")
                .and_then(|(_, after)| hex(after.split_whitespace().next().unwrap_or("")));
            // Wine's words for the exception (dlls/ntdll, "Unhandled %s").
            let kind = if let Some(access) = fault.strip_prefix("page fault on ") {
                match access.split_whitespace().next() {
                    Some("write") => Some(FaultKind::Write),
                    Some("execute") => Some(FaultKind::Execute),
                    Some("read") => Some(FaultKind::Read),
                    _ => None,
                }
            } else if fault.starts_with("illegal instruction") {
                Some(FaultKind::IllegalInstruction)
            } else if fault.starts_with("privileged instruction") {
                Some(FaultKind::PrivilegedInstruction)
            } else if fault.starts_with("divide by zero") {
                Some(FaultKind::DivideError)
            } else if fault.starts_with("breakpoint") {
                Some(FaultKind::Breakpoint)
            } else {
                None
            };
            if let (Some(kind), Some(pc)) = (kind, pc) {
                events.push(Event::Fault {
                    phase,
                    kind,
                    pc,
                    address: accessed.filter(|_| kind.is_access()),
                });
            }
        }
    }
    if base.is_some() {
        events.push(Event::End);
    }
    events
}

/// One traced call as an event: a pool routine, raw, or a bug check.
fn pool_event(name: &str, args: &[u64], result: u64, caller: u64, phase: Phase) -> Option<Event> {
    if let Some(routine) = PoolRoutine::from_name(name) {
        return Some(Event::PoolCall {
            phase,
            routine,
            args: args.to_vec(),
            result,
            caller,
            injected_failure: false,
        });
    }
    let arg = |index: usize| args.get(index).copied().unwrap_or(0);
    (name == "KeBugCheckEx").then(|| Event::BugCheckCall {
        phase,
        code: u32::try_from(arg(0) & 0xffff_ffff).unwrap_or(0),
        args: [arg(1), arg(2), arg(3), arg(4)],
        caller,
    })
}

fn hex(text: &str) -> Option<u64> {
    let text = text.trim().trim_end_matches([',', ')']);
    u64::from_str_radix(text.trim_start_matches("0x"), 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEAKY: &str = include_str!("../../tests/fixtures/wine/leaky-session-x64.log");
    const CRASH: &str = include_str!("../../tests/fixtures/wine/crash-session-x64.log");

    #[test]
    fn real_leaky_session_log() {
        let events = events_from_log(LEAKY, "Sample.sys", 0x6000);
        assert!(matches!(
            events[0],
            Event::Load {
                image_base: 0x21A_0000,
                image_size: 0x6000,
                entry_point: 0x21A_1000,
                ..
            }
        ));
        let allocs: Vec<_> = events
            .iter()
            .filter(|event| matches!(event, Event::PoolCall { routine, .. } if routine.allocates()))
            .collect();
        assert_eq!(
            allocs.len(),
            1,
            "Wine's own drivers' allocations are left out"
        );
        assert!(
            matches!(
                allocs[0],
                Event::PoolCall {
                    routine: PoolRoutine::ExAllocatePoolWithTag,
                    args,
                    result: 0x14a_0370,
                    caller: 0x21a_102a,
                    ..
                } if args == &[1, 0x74, 0x6463_6261]
            ),
            "{:?}",
            allocs[0]
        );
        assert!(events.contains(&Event::EntryReturn {
            status: 0,
            unload_routine: 0x21A_13E0
        }));
        assert!(events.contains(&Event::UnloadReturn));
        assert!(
            !events.iter().any(
                |event| matches!(event, Event::PoolCall { routine, .. } if !routine.allocates())
            )
        );
        let text: String = events
            .iter()
            .filter_map(|event| match event {
                Event::DebugPrint { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert!(text.starts_with("original registry path: \\Registry\\Machine\\System\\CurrentControlSet\\Services\\Sample\n"));
        assert!(text.ends_with("Sample driver Unload called\n"));
    }

    #[test]
    fn real_crash_session_log() {
        let events = events_from_log(CRASH, "crash.sys", 0x6000);
        let fault = events.iter().find_map(|event| match event {
            Event::Fault {
                kind, pc, address, ..
            } => Some((*kind, *pc, *address)),
            _ => None,
        });
        assert_eq!(
            fault,
            Some((FaultKind::Write, 0x21A_1031, Some(0x10))),
            "the crash is a write fault in DriverEntry"
        );
    }
}
