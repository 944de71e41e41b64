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

/// What verifier.exe's exit code means for `args`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meaning {
    /// A settings change (`/flags`, `/reset`): 0 or 2 (done, reboot needed).
    Change,
    /// A query: 0.
    Query,
}

fn run(args: &[&str], meaning: Meaning) -> Result<String, String> {
    let exe = verifier_exe()?;
    let output = Command::new(&exe)
        .args(args)
        .output()
        .map_err(|error| format!("cannot run {}: {error}", exe.display()))?;
    judge(
        args,
        meaning,
        output.status.code(),
        &String::from_utf8_lossy(&output.stdout),
        &String::from_utf8_lossy(&output.stderr),
    )
}

/// Reads verifier.exe's result: exit 0 is success, 2 is success for a
/// change (it takes effect after a reboot), anything else is a failure,
/// told by the first meaningful line of its output.
fn judge(
    args: &[&str],
    meaning: Meaning,
    code: Option<i32>,
    stdout: &str,
    stderr: &str,
) -> Result<String, String> {
    match (code, meaning) {
        (Some(0), _) | (Some(2), Meaning::Change) => return Ok(stdout.to_owned()),
        _ => {}
    }
    if code == Some(5) || stdout.contains("Access is denied") || stderr.contains("Access is denied")
    {
        return Err(
            "access denied: run samplectl from an elevated prompt (Run as administrator)".into(),
        );
    }
    // Skip blank lines and rules such as "-----" or "*****".
    let said = stdout
        .lines()
        .chain(stderr.lines())
        .map(str::trim)
        .find(|line| line.chars().any(char::is_alphanumeric))
        .unwrap_or("no output");
    let code = code.map_or_else(|| "none".to_owned(), |code| code.to_string());
    Err(format!(
        "verifier.exe {} failed (exit {code}): {said}",
        args.join(" ")
    ))
}

/// `verifier /flags <flags> /driver <driver>`.
///
/// # Errors
/// No verifier.exe, or it failed.
pub fn enable(flags: u32, driver: &str) -> Result<String, String> {
    run(
        &["/flags", &format!("0x{flags:x}"), "/driver", driver],
        Meaning::Change,
    )?;
    Ok(format!(
        "Driver Verifier: flags 0x{flags:x} set for {driver}; reboot the machine for them to take effect"
    ))
}

/// `verifier /reset`.
///
/// # Errors
/// No verifier.exe, or it failed.
pub fn disable() -> Result<String, String> {
    run(&["/reset"], Meaning::Change)?;
    Ok("Driver Verifier settings removed; reboot the machine for this to take effect".into())
}

/// `verifier /querysettings` (what will apply after reboot) and `/query`
/// (what applies now, with the pool counters of verified drivers).
///
/// # Errors
/// No verifier.exe, or it failed.
pub fn status() -> Result<String, String> {
    let settings = run(&["/querysettings"], Meaning::Query)?;
    let current = run(&["/query"], Meaning::Query)?;
    Ok(format!("{}\n{}", settings.trim_end(), current.trim_end()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAGS: &[&str] = &["/flags", "0x8", "/driver", "Sample.sys"];

    #[test]
    fn exit_2_is_success_for_changes_only() {
        let reboot = "New verifier settings:\r\n...\r\nYou must restart this computer\r\n";
        assert_eq!(
            judge(FLAGS, Meaning::Change, Some(2), reboot, ""),
            Ok(reboot.to_owned())
        );
        assert!(judge(&["/reset"], Meaning::Change, Some(2), "", "").is_ok());
        assert!(judge(&["/query"], Meaning::Query, Some(2), "odd", "").is_err());
        assert!(judge(&["/query"], Meaning::Query, Some(0), "", "").is_ok());
    }

    #[test]
    fn exit_1_fails_with_the_first_meaningful_line() {
        let output = "\r\n----------------\r\n  Invalid driver name: Sample.sy_\r\nmore\r\n";
        assert_eq!(
            judge(FLAGS, Meaning::Change, Some(1), output, ""),
            Err(
                "verifier.exe /flags 0x8 /driver Sample.sys failed (exit 1): Invalid driver name: Sample.sy_"
                    .to_owned()
            )
        );
        assert_eq!(
            judge(&["/reset"], Meaning::Change, Some(1), " \n", "\n"),
            Err("verifier.exe /reset failed (exit 1): no output".to_owned())
        );
        assert_eq!(
            judge(&["/reset"], Meaning::Change, None, "", "stderr text"),
            Err("verifier.exe /reset failed (exit none): stderr text".to_owned())
        );
    }

    #[test]
    fn access_denied_says_to_elevate() {
        let error = judge(
            FLAGS,
            Meaning::Change,
            Some(1),
            "Error 0x00000005: Access is denied.",
            "",
        )
        .expect_err("fails");
        assert!(error.contains("elevated"), "{error}");
    }
}
