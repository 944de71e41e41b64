//! samplectl: installs, starts, stops and removes Sample.sys on a Windows test
//! machine, like sc.exe, and controls Driver Verifier through verifier.exe.

// Used by the Windows build; on other hosts only its tests run.
#[cfg_attr(not(windows), allow(dead_code))]
mod errors;
#[cfg(windows)]
mod scm;
mod verifier;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

const EXIT_CODES: &str = "\
Exit codes:
  0  done
  1  the operation failed; one line on stderr says why and what to do
  2  bad command line";

#[derive(Parser)]
#[command(name = "samplectl", version, about, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a demand-start kernel-driver service for the driver.
    Install {
        /// The driver (.sys).
        driver: PathBuf,
        /// Service name.
        #[arg(long, default_value = "Sample")]
        name: String,
        /// Use the file where it is instead of copying it to
        /// %SystemRoot%\System32\drivers.
        #[arg(long)]
        no_copy: bool,
    },
    /// Load the driver (runs DriverEntry).
    Start {
        /// Service name.
        #[arg(long, default_value = "Sample")]
        name: String,
    },
    /// Unload the driver (runs its unload routine).
    Stop {
        /// Service name.
        #[arg(long, default_value = "Sample")]
        name: String,
    },
    /// Show whether the service exists and is running.
    Status {
        /// Service name.
        #[arg(long, default_value = "Sample")]
        name: String,
    },
    /// Stop the service if it runs, then delete it (and the driver copy
    /// `install` made).
    Uninstall {
        /// Service name.
        #[arg(long, default_value = "Sample")]
        name: String,
    },
    /// Driver Verifier (verifier.exe); changes apply after a reboot.
    Verifier {
        #[command(subcommand)]
        command: VerifierCommand,
    },
}

#[derive(Subcommand)]
enum VerifierCommand {
    /// Verify the driver with these flags (0x8: pool tracking).
    Enable {
        /// Verifier flags.
        #[arg(long, default_value = "0x8", value_parser = parse_flags)]
        flags: u32,
        /// Driver file name to verify.
        #[arg(long, default_value = "Sample.sys")]
        driver: String,
    },
    /// Remove all Driver Verifier settings (verifier /reset).
    Disable,
    /// Show the settings and the current counters.
    Status,
}

fn parse_flags(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X"));
    match digits {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => text.parse(),
    }
    .map_err(|_| format!("'{text}' is not a flags value like 0x8"))
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(message) => {
            if !message.is_empty() {
                println!("{message}");
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("samplectl: {}", message.replace(['\r', '\n'], " "));
            ExitCode::from(1)
        }
    }
}

fn run(command: Command) -> Result<String, String> {
    match command {
        Command::Verifier { command } => match command {
            VerifierCommand::Enable { flags, driver } => verifier::enable(flags, &driver),
            VerifierCommand::Disable => verifier::disable(),
            VerifierCommand::Status => verifier::status(),
        },
        Command::Install {
            driver,
            name,
            no_copy,
        } => install(&driver, &name, no_copy),
        Command::Start { name } => service::start(&name),
        Command::Stop { name } => service::stop(&name),
        Command::Status { name } => service::status(&name),
        Command::Uninstall { name } => service::uninstall(&name),
    }
}

/// Where `install` copies the driver, and `uninstall` removes it from.
fn installed_copy(name: &str) -> Option<PathBuf> {
    let root = std::env::var_os("SystemRoot").or_else(|| std::env::var_os("windir"))?;
    Some(
        Path::new(&root)
            .join("System32")
            .join("drivers")
            .join(format!("{name}.sys")),
    )
}

fn install(driver: &Path, name: &str, no_copy: bool) -> Result<String, String> {
    if !driver.is_file() {
        return Err(format!("file not found: {}", driver.display()));
    }
    let driver =
        std::path::absolute(driver).map_err(|error| format!("{}: {error}", driver.display()))?;
    let copy = if no_copy { None } else { installed_copy(name) };
    service::install(&driver, name, copy.as_deref())
}

#[cfg(windows)]
mod service {
    use std::path::Path;

    use super::installed_copy;
    use crate::errors::{Action, explain};
    use crate::scm;

    fn fail(action: Action, name: &str) -> impl Fn(scm::ScmError) -> String + '_ {
        move |(code, text)| explain(action, name, code, &text)
    }

    pub fn install(driver: &Path, name: &str, copy_to: Option<&Path>) -> Result<String, String> {
        // Refuse before touching any file: an existing service keeps its driver.
        if scm::exists(name).map_err(fail(Action::Install, name))? {
            return Err(explain(
                Action::Install,
                name,
                crate::errors::code::SERVICE_EXISTS,
                "",
            ));
        }
        let binary = match &copy_to {
            Some(target) => {
                let same = std::fs::read(target).ok() == std::fs::read(driver).ok();
                if target.exists() && !same {
                    return Err(format!(
                        "{} already exists and is another file: remove it, or install with --no-copy",
                        target.display()
                    ));
                }
                std::fs::copy(driver, target).map_err(|error| {
                    format!("cannot copy the driver to {}: {error}", target.display())
                })?;
                target.to_path_buf()
            }
            None => driver.to_path_buf(),
        };
        if let Err(error) = scm::create(name, &binary.to_string_lossy()) {
            if copy_to.is_some() {
                let _ = std::fs::remove_file(&binary); // leave nothing half-done
            }
            return Err(fail(Action::Install, name)(error));
        }
        Ok(format!(
            "service '{name}' created: kernel driver, demand start, {}",
            binary.display()
        ))
    }

    pub fn start(name: &str) -> Result<String, String> {
        scm::start(name).map_err(fail(Action::Start, name))?;
        Ok(format!("service '{name}' started (DriverEntry succeeded)"))
    }

    pub fn stop(name: &str) -> Result<String, String> {
        scm::stop(name).map_err(fail(Action::Stop, name))?;
        Ok(format!("service '{name}' stopped (the driver unloaded)"))
    }

    pub fn status(name: &str) -> Result<String, String> {
        let state = scm::state(name).map_err(fail(Action::Status, name))?;
        Ok(format!(
            "SERVICE_NAME: {name}\n        TYPE               : 1  KERNEL_DRIVER\n        STATE              : {state}"
        ))
    }

    pub fn uninstall(name: &str) -> Result<String, String> {
        match scm::stop(name) {
            Ok(()) | Err((crate::errors::code::SERVICE_NOT_ACTIVE, _)) => {}
            Err(error) => return Err(fail(Action::Uninstall, name)(error)),
        }
        scm::delete(name).map_err(fail(Action::Uninstall, name))?;
        if let Some(copy) = installed_copy(name).filter(|copy| copy.exists()) {
            let _ = std::fs::remove_file(copy);
        }
        Ok(format!("service '{name}' deleted"))
    }
}

#[cfg(not(windows))]
mod service {
    use std::path::Path;

    const NOT_WINDOWS: &str =
        "samplectl drives the Windows Service Control Manager: run it on Windows (or under Wine)";

    pub fn install(_: &Path, _: &str, _: Option<&Path>) -> Result<String, String> {
        Err(NOT_WINDOWS.into())
    }
    pub fn start(_: &str) -> Result<String, String> {
        Err(NOT_WINDOWS.into())
    }
    pub fn stop(_: &str) -> Result<String, String> {
        Err(NOT_WINDOWS.into())
    }
    pub fn status(_: &str) -> Result<String, String> {
        Err(NOT_WINDOWS.into())
    }
    pub fn uninstall(_: &str) -> Result<String, String> {
        Err(NOT_WINDOWS.into())
    }
}
