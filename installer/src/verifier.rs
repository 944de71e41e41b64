//! Driver Verifier control through its supported interface, verifier.exe.
//! Settings made with `/flags` and `/reset` take effect after a reboot.

use std::path::PathBuf;
use std::process::Command;

/// verifier.exe, if this machine has it.
fn verifier_exe() -> Result<PathBuf, String> {
    let root = std::env::var_os("SystemRoot").or_else(|| std::env::var_os("windir"));
    let candidate = root.map(|root| PathBuf::from(root).join("System32").join("verifier.exe"));
    match candidate {
        Some(path) if path.is_file() => Ok(path),
        Some(path) => Err(format!(
            "verifier.exe not found at {}: Driver Verifier is part of Windows (Wine has none); run this on the Windows test machine",
            path.display()
        )),
        None => Err(
            "verifier.exe not found: Driver Verifier control needs Windows (SystemRoot is not set)"
                .into(),
        ),
    }
}

fn run(args: &[&str]) -> Result<String, String> {
    let exe = verifier_exe()?;
    let output = Command::new(&exe)
        .args(args)
        .output()
        .map_err(|error| format!("cannot run {}: {error}", exe.display()))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    // verifier.exe exits 2 when the change needs a reboot; both 0 and 2 succeed.
    match output.status.code() {
        Some(0 | 2) => Ok(text),
        Some(code) if text.contains("Access is denied") || code == 5 => Err(
            "access denied: run samplectl from an elevated prompt (Run as administrator)".into(),
        ),
        code => Err(format!(
            "verifier.exe {} failed (exit {}): {}",
            args.join(" "),
            code.unwrap_or(-1),
            text.lines()
                .find(|line| !line.trim().is_empty())
                .unwrap_or("no output")
                .trim()
        )),
    }
}

/// `verifier /flags <flags> /driver <driver>`.
///
/// # Errors
/// No verifier.exe, or it failed.
pub fn enable(flags: u32, driver: &str) -> Result<String, String> {
    run(&["/flags", &format!("0x{flags:x}"), "/driver", driver])?;
    Ok(format!(
        "Driver Verifier: flags 0x{flags:x} set for {driver}; reboot the machine for them to take effect"
    ))
}

/// `verifier /reset`.
///
/// # Errors
/// No verifier.exe, or it failed.
pub fn disable() -> Result<String, String> {
    run(&["/reset"])?;
    Ok("Driver Verifier settings removed; reboot the machine for this to take effect".into())
}

/// `verifier /querysettings` (what will apply after reboot) and `/query`
/// (what applies now, with the pool counters of verified drivers).
///
/// # Errors
/// No verifier.exe, or it failed.
pub fn status() -> Result<String, String> {
    let settings = run(&["/querysettings"])?;
    let current = run(&["/query"])?;
    Ok(format!("{}\n{}", settings.trim_end(), current.trim_end()))
}
