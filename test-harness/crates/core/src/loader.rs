//! What the Windows kernel loader does with a driver's imports, checked
//! before any engine runs.
//!
//! The loader (`MiResolveImageReferences` in the Windows Research Kernel's
//! `base/ntos/mm/sysload.c`) resolves each import DLL by its whole name
//! against the kernel modules already loaded (`ntoskrnl.exe`, `hal.dll`,
//! boot drivers), else loads `<the importing driver's directory>\<name>` (for
//! a driver, `\SystemRoot\System32\drivers`) as a kernel image; then it binds
//! each imported name by exact comparison with the module's export names
//! (`MiSnapThunk`: `STATUS_DRIVER_ENTRYPOINT_NOT_FOUND` when it is not there).
//! So a user-mode DLL (kernel32.dll, ntdll.dll) is never a kernel module the
//! import can bind to, `ntoskrnl` without `.exe` matches no loaded module, and
//! a name the kernel does not export fails the load.
//!
//! Exports are known for `ntoskrnl.exe` and `hal.dll` only
//! (`kernel_exports.txt`: Wine's lists of Windows export names). That list is
//! not complete, so a name missing from it proves nothing: such a driver
//! "cannot be judged". Only a decorated form of a listed name (`_Name@12`,
//! `Name@12`) is certainly missing from every Windows kernel.

use crate::pe::{Import, PeImage};

/// The export names of the kernel modules the harness knows.
const KERNEL_EXPORTS: &str = include_str!("kernel_exports.txt");

/// User-mode DLLs a driver may mistakenly import (lower case).
const USER_MODE_DLLS: &[&str] = &[
    "advapi32.dll",
    "bcrypt.dll",
    "comctl32.dll",
    "crypt32.dll",
    "gdi32.dll",
    "kernel32.dll",
    "kernelbase.dll",
    "msvcrt.dll",
    "ntdll.dll",
    "ole32.dll",
    "oleaut32.dll",
    "rpcrt4.dll",
    "secur32.dll",
    "shell32.dll",
    "shlwapi.dll",
    "ucrtbase.dll",
    "user32.dll",
    "vcruntime140.dll",
    "version.dll",
    "winhttp.dll",
    "wininet.dll",
    "ws2_32.dll",
];

/// Why the harness will not run a driver: Windows would refuse it, or it
/// cannot be told whether Windows would load it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportProblem {
    /// The kernel loader would fail to load the driver.
    Refused(String),
    /// The harness cannot tell whether the kernel exports this import.
    Unknown(String),
}

/// Checks every import the way the kernel loader would resolve it.
///
/// # Errors
/// The first import the loader would refuse, else the first the harness
/// cannot vouch for.
pub fn check_imports(image: &PeImage) -> Result<(), ImportProblem> {
    let mut unknown = None;
    for import in &image.imports {
        match check(import) {
            Ok(()) => {}
            Err(ImportProblem::Unknown(why)) => {
                unknown.get_or_insert(ImportProblem::Unknown(why));
            }
            Err(refused) => return Err(refused),
        }
    }
    unknown.map_or(Ok(()), Err)
}

fn check(import: &Import) -> Result<(), ImportProblem> {
    let library = import.library.to_ascii_lowercase();
    if USER_MODE_DLLS.contains(&library.as_str()) || library.starts_with("api-ms-win-") {
        return Err(ImportProblem::Refused(format!(
            "it imports {} from {}, a user-mode DLL: the kernel loader binds a driver's imports only to kernel-mode modules (ntoskrnl.exe, hal.dll, export drivers loaded from \\SystemRoot\\System32\\drivers), never to user-mode DLLs",
            import.name, import.library
        )));
    }
    let Some(module) = kernel_module(&library) else {
        if let Some(real) = misnamed_kernel_module(&library) {
            return Err(ImportProblem::Refused(format!(
                "it imports {} from \"{}\", a module no Windows has: the kernel loader matches the whole name, and the kernel module is {real}",
                import.name, import.library
            )));
        }
        return Ok(()); // another kernel module: the engine says whether it has it
    };
    if let Some(ordinal) = import.name.strip_prefix('#') {
        return Err(ImportProblem::Unknown(format!(
            "it imports ordinal {ordinal} of {module}, and the ordinals of kernel exports differ between Windows builds"
        )));
    }
    if exports(module).any(|name| name == import.name) {
        return Ok(());
    }
    if let Some(plain) = undecorated(&import.name)
        && exports(module).any(|name| name == plain)
    {
        return Err(ImportProblem::Refused(format!(
            "it imports \"{}\" from {module}, which exports {plain} undecorated: the kernel loader matches names exactly (STATUS_DRIVER_ENTRYPOINT_NOT_FOUND)",
            import.name
        )));
    }
    Err(ImportProblem::Unknown(format!(
        "it imports {module}!{}, which is not in the harness's list of {module} exports (Wine's list of Windows export names), so whether Windows would load it cannot be told",
        import.name
    )))
}

/// The kernel module the harness has an export list for.
fn kernel_module(library: &str) -> Option<&'static str> {
    match library {
        "ntoskrnl.exe" => Some("ntoskrnl.exe"),
        "hal.dll" => Some("hal.dll"),
        _ => None,
    }
}

/// `ntoskrnl`, `ntoskrnl.exe.dll`, `hal`: names of the kernel modules that
/// the loader would not match.
fn misnamed_kernel_module(library: &str) -> Option<&'static str> {
    let stem = library.split('.').next().unwrap_or(library);
    match stem {
        "ntoskrnl" => Some("ntoskrnl.exe"),
        "hal" => Some("hal.dll"),
        _ => None,
    }
}

/// `_Name@12`, `Name@12`, `@Name@8` -> `Name` (x86 stdcall and fastcall
/// decorations, which no Windows kernel export carries).
fn undecorated(name: &str) -> Option<&str> {
    let (stem, digits) = name.rsplit_once('@')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let stem = stem
        .strip_prefix('_')
        .or_else(|| stem.strip_prefix('@'))
        .unwrap_or(stem);
    (!stem.is_empty()).then_some(stem)
}

/// The export names listed for `module`.
fn exports(module: &str) -> impl Iterator<Item = &'static str> {
    let header = format!("[{module}]");
    KERNEL_EXPORTS
        .lines()
        .skip_while(move |line| *line != header)
        .skip(1)
        .take_while(|line| !line.starts_with('['))
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
}

/// Whether `module!name` is a known export of a Windows kernel module
/// (`ntoskrnl.exe!FsRtlIsNameInExpression`, or Speakeasy's
/// `ntoskrnl.FsRtlIsNameInExpression`).
#[must_use]
pub fn is_known_export(routine: &str) -> Option<bool> {
    let (module, name) = routine.split_once(['!', '.'])?;
    let name = name.rsplit(['!', '.']).next().unwrap_or(name);
    let module = match module.to_ascii_lowercase().as_str() {
        "ntoskrnl" | "ntoskrnl.exe" => "ntoskrnl.exe",
        "hal" | "hal.dll" => "hal.dll",
        _ => return None,
    };
    Some(exports(module).any(|export| export == name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Arch;

    fn image(imports: &[(&str, &str)]) -> PeImage {
        let mut image = PeImage::empty(Arch::X64);
        image.imports = imports
            .iter()
            .map(|(library, name)| Import {
                library: (*library).into(),
                name: (*name).into(),
            })
            .collect();
        image
    }

    #[test]
    fn the_list_has_both_modules() {
        assert!(exports("ntoskrnl.exe").count() > 1500);
        assert!(exports("hal.dll").count() > 50);
        assert!(exports("ntoskrnl.exe").any(|name| name == "ExAllocatePool2"));
        assert_eq!(
            is_known_export("ntoskrnl.FsRtlIsNameInExpression"),
            Some(true)
        );
        assert_eq!(is_known_export("ntoskrnl.exe!NoSuchRoutine"), Some(false));
        assert_eq!(is_known_export("NDIS.SYS!NdisGetVersion"), None);
    }

    #[test]
    fn what_the_loader_refuses() {
        let ok = image(&[("ntoskrnl.exe", "ExAllocatePoolWithTag"), ("NDIS.SYS", "X")]);
        assert_eq!(check_imports(&ok), Ok(()));
        for bad in [
            ("kernel32.dll", "GetTickCount"),
            ("ntdll.dll", "RtlGetVersion"),
            ("ntoskrnl", "DbgPrint"),
            ("ntoskrnl.exe.dll", "DbgPrint"),
            ("ntoskrnl.exe", "_ExAllocatePoolWithTag@12"),
        ] {
            assert!(
                matches!(
                    check_imports(&image(&[bad])),
                    Err(ImportProblem::Refused(_))
                ),
                "{bad:?}"
            );
        }
        for unknown in [("ntoskrnl.exe", "NoSuchRoutine"), ("hal.dll", "#5")] {
            assert!(
                matches!(
                    check_imports(&image(&[unknown])),
                    Err(ImportProblem::Unknown(_))
                ),
                "{unknown:?}"
            );
        }
        // A refusal wins over an unknown name, wherever it is.
        let both = image(&[("ntoskrnl.exe", "NoSuchRoutine"), ("kernel32.dll", "Sleep")]);
        assert!(matches!(
            check_imports(&both),
            Err(ImportProblem::Refused(_))
        ));
    }
}
