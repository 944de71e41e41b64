//! The Wine prefix used as a test machine, and a traced session in it.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::engine::{EngineError, last_line, run_checked, run_with_timeout, which};
use crate::error::ProcessError;
use crate::pool_api::PoolRoutine;

type Result<T> = std::result::Result<T, EngineError>;

/// Routines relay tracing follows besides the pool routines.
const OTHER_TRACED: [&str; 1] = ["KeBugCheckEx"];

const SHIM_SOURCE: &str = include_str!("../../../wine/bcryptprimitives.c");

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
