//! samplectl: installs, starts, stops and removes Sample.sys on a Windows test
//! machine, like sc.exe, and controls Driver Verifier through verifier.exe.

// Used by the Windows build; on other hosts only their tests run.
#[cfg_attr(not(windows), allow(dead_code))]
mod errors;
#[cfg_attr(not(windows), allow(dead_code))]
mod ownership;
#[cfg(windows)]
mod scm;
#[cfg_attr(not(windows), allow(dead_code))]
mod stopping;
mod verifier;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::error::ErrorKind;
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
        /// Load-order group (sc.exe's `group=`). Wine runs the drivers of one
        /// group in one winedevice.exe.
        #[arg(long)]
        group: Option<String>,
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
    /// `install` made). Only services samplectl created.
    Uninstall {
        /// Service name.
        #[arg(long, default_value = "Sample")]
        name: String,
        /// Also remove a service samplectl did not create (its driver file
        /// is never deleted).
        #[arg(long)]
        force: bool,
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
    digits
        .map_or_else(|| text.parse(), |hex| u32::from_str_radix(hex, 16))
        .map_err(|_| format!("'{text}' is not a flags value like 0x8"))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error)
            if matches!(
                error.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) =>
        {
            // The help or version text, on stdout.
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("{}", usage_error(&error));
            return ExitCode::from(2);
        }
    };
    match run(cli.command) {
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

/// clap's usage error as one line, with where to look for more.
fn usage_error(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    let text = if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        // clap prints the whole help here; name what is missing instead.
        let usage = rendered
            .lines()
            .find_map(|line| line.trim().strip_prefix("Usage: "))
            .unwrap_or("samplectl <COMMAND>");
        format!("a command is missing: {usage}")
    } else {
        // The first paragraph: the message and any arguments it lists.
        let paragraph: Vec<&str> = rendered
            .lines()
            .map(str::trim)
            .skip_while(|line| line.is_empty())
            .take_while(|line| !line.is_empty())
            .collect();
        let text = paragraph.join(" ");
        text.strip_prefix("error: ").unwrap_or(&text).to_owned()
    };
    format!("samplectl: {text} (see samplectl --help)")
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
            group,
        } => install(&driver, &name, no_copy, group.as_deref()),
        Command::Start { name } => service::start(&name),
        Command::Stop { name } => service::stop(&name),
        Command::Status { name } => service::status(&name),
        Command::Uninstall { name, force } => service::uninstall(&name, force),
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

fn install(
    driver: &Path,
    name: &str,
    no_copy: bool,
    group: Option<&str>,
) -> Result<String, String> {
    if !driver.is_file() {
        return Err(format!("file not found: {}", driver.display()));
    }
    let driver =
        std::path::absolute(driver).map_err(|error| format!("{}: {error}", driver.display()))?;
    let copy = if no_copy { None } else { installed_copy(name) };
    service::install(&driver, name, copy.as_deref(), group)
}

#[cfg(windows)]
mod service {
    use std::path::Path;

    use super::installed_copy;
    use crate::errors::{Action, code, explain};
    use crate::ownership::file_to_remove;
    use crate::scm;

    fn fail(action: Action, name: &str) -> impl Fn(scm::ScmError) -> String + '_ {
        move |(code, text)| explain(action, name, code, &text)
    }

    pub fn install(
        driver: &Path,
        name: &str,
        copy_to: Option<&Path>,
        group: Option<&str>,
    ) -> Result<String, String> {
        // Refuse before touching any file: an existing service keeps its driver.
        // A service marked for deletion still opens: say 1072, not 1073.
        let presence = scm::presence(name).map_err(fail(Action::Install, name))?;
        if let Some(refusal) = presence.install_refusal() {
            return Err(explain(Action::Install, name, refusal, ""));
        }
        // `copied`: the file this install creates, and so may remove again.
        let (binary, copied, note) = match copy_to {
            Some(target) if target.exists() => {
                if std::fs::read(target).ok() != std::fs::read(driver).ok() {
                    return Err(format!(
                        "{} already exists and is another file: remove it, or install with --no-copy",
                        target.display()
                    ));
                }
                // Identical, but not ours: uninstall will leave it.
                (target, None, " (already there; uninstall leaves it)")
            }
            Some(target) => {
                std::fs::copy(driver, target).map_err(|error| {
                    format!("cannot copy the driver to {}: {error}", target.display())
                })?;
                (target, Some(target), "")
            }
            None => (driver, None, ""),
        };
        let undo_copy = || {
            if let Some(copy) = copied {
                let _ = std::fs::remove_file(copy); // leave nothing half-done
            }
        };
        if let Err(error) = scm::create(name, &binary.to_string_lossy(), group) {
            undo_copy();
            return Err(fail(Action::Install, name)(error));
        }
        if let Err(error) = scm::record_install(name, copied) {
            let _ = scm::delete(name);
            undo_copy();
            return Err(fail(Action::Install, name)(error));
        }
        let group = group
            .map(|group| format!("group {group}, "))
            .unwrap_or_default();
        Ok(format!(
            "service '{name}' created: kernel driver, demand start, {group}{}{note}",
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

    pub fn uninstall(name: &str, force: bool) -> Result<String, String> {
        let failed = fail(Action::Uninstall, name);
        if !scm::exists(name).map_err(&failed)? {
            return Err(explain(
                Action::Uninstall,
                name,
                code::SERVICE_DOES_NOT_EXIST,
                "",
            ));
        }
        // Read before deleting: the record goes with the service's key.
        let record = scm::install_record(name).map_err(&failed)?;
        let file = file_to_remove(name, &record, force, installed_copy(name).as_deref())?;
        match scm::stop(name) {
            Ok(()) | Err((code::SERVICE_NOT_ACTIVE, _)) => {}
            Err(error) => return Err(failed(error)),
        }
        scm::delete(name).map_err(&failed)?;
        match file {
            Some(file) if file.exists() => std::fs::remove_file(&file).map_err(|error| {
                format!(
                    "service '{name}' deleted, but its driver copy {} could not be removed ({error}): delete it by hand",
                    file.display()
                )
            })?,
            _ => {}
        }
        Ok(if record.created {
            format!("service '{name}' deleted")
        } else {
            format!(
                "service '{name}' deleted (not created by samplectl: its driver file was left in place)"
            )
        })
    }
}

#[cfg(not(windows))]
mod service {
    use std::path::Path;

    const NOT_WINDOWS: &str =
        "samplectl drives the Windows Service Control Manager: run it on Windows (or under Wine)";

    pub fn install(_: &Path, _: &str, _: Option<&Path>, _: Option<&str>) -> Result<String, String> {
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
    pub fn uninstall(_: &str, _: bool) -> Result<String, String> {
        Err(NOT_WINDOWS.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_error(args: &[&str]) -> (ErrorKind, String) {
        let error = Cli::try_parse_from(args).err().expect("a parse error");
        (error.kind(), usage_error(&error))
    }

    #[test]
    fn usage_errors_are_one_line_with_a_hint() {
        for (args, expected) in [
            (
                &["samplectl"][..],
                "a command is missing: samplectl <COMMAND>",
            ),
            (
                &["samplectl", "verifier"],
                "a command is missing: samplectl verifier <COMMAND>",
            ),
            (
                &["samplectl", "nonsense"],
                "unrecognized subcommand 'nonsense'",
            ),
            (
                &["samplectl", "install"],
                "the following required arguments were not provided: <DRIVER>",
            ),
            (
                &["samplectl", "stop", "--nmae", "x"],
                "unexpected argument '--nmae' found",
            ),
            (
                &["samplectl", "verifier", "enable", "--flags", "0xZZ"],
                "invalid value '0xZZ' for '--flags <FLAGS>': '0xZZ' is not a flags value like 0x8",
            ),
        ] {
            let (kind, line) = parse_error(args);
            assert!(
                !matches!(kind, ErrorKind::DisplayHelp | ErrorKind::DisplayVersion),
                "{args:?}"
            );
            assert_eq!(
                line,
                format!("samplectl: {expected} (see samplectl --help)")
            );
        }
    }

    #[test]
    fn help_and_version_are_not_errors() {
        for args in [
            &["samplectl", "--help"][..],
            &["samplectl", "--version"],
            &["samplectl", "stop", "-h"],
        ] {
            let (kind, _) = parse_error(args);
            assert!(
                matches!(kind, ErrorKind::DisplayHelp | ErrorKind::DisplayVersion),
                "{args:?}: {kind:?}"
            );
        }
    }

    #[test]
    fn uninstall_takes_force() {
        let cli = Cli::try_parse_from(["samplectl", "uninstall", "--name", "http", "--force"])
            .expect("parses");
        assert!(matches!(
            cli.command,
            Command::Uninstall { ref name, force: true } if name == "http"
        ));
    }
}
