//! What samplectl may remove: only what its own `install` made.
//!
//! `install` records in the service's registry key
//! (`HKLM\SYSTEM\CurrentControlSet\Services\<name>`) that samplectl created
//! the service, and which driver copy it placed there, if any. `uninstall`
//! reads that record before it touches anything.

use std::path::{Path, PathBuf};

/// `REG_DWORD` 1: samplectl created this service.
pub const CREATED_VALUE: &str = "SamplectlCreated";
/// `REG_SZ`: the driver copy samplectl's `install` placed.
pub const COPY_VALUE: &str = "SamplectlInstalledCopy";

/// What `install` recorded in a service's key.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct InstallRecord {
    /// samplectl created the service.
    pub created: bool,
    /// The driver copy samplectl placed; none with `--no-copy`, or when an
    /// identical file was already there.
    pub copy: Option<PathBuf>,
}

/// Decides what `uninstall` removes besides the service: the file to delete,
/// if any. `copy_location` is where `install` copies the driver to.
///
/// # Errors
/// The one-line refusal, for a service samplectl did not create, unless
/// `force` is given.
pub fn file_to_remove(
    name: &str,
    record: &InstallRecord,
    force: bool,
    copy_location: Option<&Path>,
) -> Result<Option<PathBuf>, String> {
    if !record.created && !force {
        return Err(format!(
            "service '{name}' was not created by samplectl; pass --force to remove it anyway (its driver file is never deleted)"
        ));
    }
    // Only a copy samplectl recorded, and only where install puts copies.
    let ours = |copy: &&PathBuf| {
        record.created
            && copy_location.is_some_and(|expected| {
                // Windows paths compare without regard to case.
                copy.to_string_lossy()
                    .eq_ignore_ascii_case(&expected.to_string_lossy())
            })
    };
    Ok(record.copy.as_ref().filter(ours).cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const COPY: &str = r"C:\windows\system32\drivers\Sample.sys";

    fn record(created: bool, copy: Option<&str>) -> InstallRecord {
        InstallRecord {
            created,
            copy: copy.map(PathBuf::from),
        }
    }

    #[test]
    fn a_service_samplectl_did_not_create_is_refused() {
        let refusal = file_to_remove("http", &record(false, None), false, Some(Path::new(COPY)))
            .expect_err("refused");
        assert_eq!(
            refusal,
            "service 'http' was not created by samplectl; pass --force to remove it anyway (its driver file is never deleted)"
        );
    }

    #[test]
    fn force_removes_the_service_but_never_a_file() {
        // Even a recorded copy is kept when samplectl did not create the service.
        for copy in [None, Some(COPY)] {
            let file = file_to_remove("http", &record(false, copy), true, Some(Path::new(COPY)));
            assert_eq!(file, Ok(None));
        }
    }

    #[test]
    fn the_copy_install_made_is_removed() {
        let expected = Path::new(r"C:\WINDOWS\System32\drivers\Sample.sys");
        let file = file_to_remove("Sample", &record(true, Some(COPY)), false, Some(expected));
        assert_eq!(file, Ok(Some(PathBuf::from(COPY))));
    }

    #[test]
    fn no_recorded_copy_means_no_file() {
        let file = file_to_remove("Sample", &record(true, None), false, Some(Path::new(COPY)));
        assert_eq!(file, Ok(None));
    }

    #[test]
    fn a_recorded_path_elsewhere_is_not_deleted() {
        let elsewhere = record(true, Some(r"C:\Users\me\Sample.sys"));
        assert_eq!(
            file_to_remove("Sample", &elsewhere, false, Some(Path::new(COPY))),
            Ok(None)
        );
        assert_eq!(
            file_to_remove("Sample", &record(true, Some(COPY)), false, None),
            Ok(None)
        );
    }
}
