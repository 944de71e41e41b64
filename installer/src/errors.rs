//! One clear line, saying what to do, for each error a user meets.

/// Win32 error codes samplectl explains.
pub mod code {
    /// `ERROR_FILE_NOT_FOUND`
    pub const FILE_NOT_FOUND: u32 = 2;
    /// `ERROR_PATH_NOT_FOUND`
    pub const PATH_NOT_FOUND: u32 = 3;
    /// `ERROR_ACCESS_DENIED`
    pub const ACCESS_DENIED: u32 = 5;
    /// `ERROR_BAD_EXE_FORMAT`
    pub const BAD_EXE_FORMAT: u32 = 193;
    /// `ERROR_INVALID_IMAGE_HASH`
    pub const INVALID_IMAGE_HASH: u32 = 577;
    /// `ERROR_INVALID_SERVICE_CONTROL`
    pub const INVALID_SERVICE_CONTROL: u32 = 1052;
    /// `ERROR_SERVICE_ALREADY_RUNNING`
    pub const SERVICE_ALREADY_RUNNING: u32 = 1056;
    /// `ERROR_SERVICE_REQUEST_TIMEOUT`
    pub const SERVICE_REQUEST_TIMEOUT: u32 = 1053;
    /// `ERROR_SERVICE_DISABLED`
    pub const SERVICE_DISABLED: u32 = 1058;
    /// `ERROR_SERVICE_DOES_NOT_EXIST`
    pub const SERVICE_DOES_NOT_EXIST: u32 = 1060;
    /// `ERROR_SERVICE_NOT_ACTIVE`
    pub const SERVICE_NOT_ACTIVE: u32 = 1062;
    /// `ERROR_SERVICE_MARKED_FOR_DELETE`
    pub const SERVICE_MARKED_FOR_DELETE: u32 = 1072;
    /// `ERROR_SERVICE_EXISTS`
    pub const SERVICE_EXISTS: u32 = 1073;
    /// `ERROR_DRIVER_BLOCKED`
    pub const DRIVER_BLOCKED: u32 = 1275;
    /// `ERROR_NO_SYSTEM_RESOURCES` (DriverEntry returned `STATUS_INSUFFICIENT_RESOURCES`)
    pub const NO_SYSTEM_RESOURCES: u32 = 1450;
}

/// Whether a service of a name is there, as install must know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// No such service.
    Absent,
    /// It exists.
    Present,
    /// It exists until its last handle closes: `DeleteService` "marks a
    /// service for deletion"; "the service is not deleted until all open
    /// handles to the service have been closed" (`DeleteService`, Remarks).
    /// `OpenService` still opens it.
    MarkedForDelete,
}

impl Presence {
    /// Reads the SCM's answers: `open` is `OpenService`'s, `probe` a
    /// `ChangeServiceConfig` that changes nothing (every value
    /// `SERVICE_NO_CHANGE`), which fails with
    /// `ERROR_SERVICE_MARKED_FOR_DELETE` on a service marked for deletion
    /// (`ChangeServiceConfigW`, Return value). Any other probe failure says
    /// nothing about deletion: the service is there.
    ///
    /// # Errors
    /// `OpenService` failed other than with `ERROR_SERVICE_DOES_NOT_EXIST`.
    pub fn from_scm(
        open: Result<(), (u32, String)>,
        probe: impl FnOnce() -> Result<(), (u32, String)>,
    ) -> Result<Self, (u32, String)> {
        match open {
            Err((code::SERVICE_DOES_NOT_EXIST, _)) => Ok(Self::Absent),
            Err(error) => Err(error),
            Ok(()) => Ok(match probe() {
                Err((code::SERVICE_MARKED_FOR_DELETE, _)) => Self::MarkedForDelete,
                _ => Self::Present,
            }),
        }
    }

    /// The Win32 error `install` refuses with, the one `CreateService` would
    /// return: 1073 `ERROR_SERVICE_EXISTS`, or 1072
    /// `ERROR_SERVICE_MARKED_FOR_DELETE` (`CreateServiceW`, Return value).
    #[must_use]
    pub const fn install_refusal(self) -> Option<u32> {
        match self {
            Self::Absent => None,
            Self::Present => Some(code::SERVICE_EXISTS),
            Self::MarkedForDelete => Some(code::SERVICE_MARKED_FOR_DELETE),
        }
    }
}

/// What the user was doing, for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `install`
    Install,
    /// `start`
    Start,
    /// `stop`
    Stop,
    /// `status`
    Status,
    /// `uninstall`
    Uninstall,
}

impl Action {
    const fn verb(self) -> &'static str {
        match self {
            Self::Install => "install",
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Status => "query",
            Self::Uninstall => "uninstall",
        }
    }
}

/// The message for a Win32 error `code` met while doing `action` to service `name`.
#[must_use]
pub fn explain(action: Action, name: &str, code: u32, system_text: &str) -> String {
    match code {
        code::ACCESS_DENIED => {
            "access denied (error 5): run samplectl from an elevated prompt (Run as administrator)"
                .to_owned()
        }
        code::SERVICE_EXISTS => format!(
            "service '{name}' already exists (error 1073): remove it with `samplectl uninstall --name {name}`, or choose another --name"
        ),
        code::SERVICE_DOES_NOT_EXIST => format!(
            "service '{name}' does not exist (error 1060): create it with `samplectl install <PATH.sys> --name {name}`"
        ),
        code::SERVICE_NOT_ACTIVE => {
            format!(
                "service '{name}' is not started (error 1062): nothing to stop; `samplectl start --name {name}` starts it"
            )
        }
        code::INVALID_SERVICE_CONTROL => format!(
            "service '{name}' cannot be stopped (error 1052): the driver set no unload routine (DriverUnload), so it stays loaded until the next reboot"
        ),
        code::SERVICE_ALREADY_RUNNING => {
            format!("service '{name}' is already running (error 1056)")
        }
        code::SERVICE_DISABLED => {
            format!(
                "service '{name}' is disabled (error 1058): set its start type to demand (sc config {name} start= demand)"
            )
        }
        code::SERVICE_MARKED_FOR_DELETE => format!(
            "service '{name}' is marked for deletion (error 1072): close programs holding it (services.msc, sc) or reboot, then try again"
        ),
        code::INVALID_IMAGE_HASH => format!(
            "Windows refused to load '{name}' because it is not signed (error 577): on 64-bit Windows enable test signing (`bcdedit /set testsigning on`, reboot) and test-sign the driver (README: Test-signing)"
        ),
        code::DRIVER_BLOCKED => format!(
            "Windows blocked '{name}' (error 1275, ERROR_DRIVER_BLOCKED): the driver blocklist or Memory integrity (HVCI) rejects it; turn Memory integrity off on the test machine or use a VM without it"
        ),
        code::BAD_EXE_FORMAT => format!(
            "'{name}' is not a valid driver for this Windows (error 193): check that its architecture (x64/x86) matches the machine"
        ),
        code::FILE_NOT_FOUND if action == Action::Start => format!(
            "the driver file of service '{name}' is missing (error 2): reinstall with `samplectl install <PATH.sys> --name {name}`"
        ),
        // StartService, Return value: ERROR_PATH_NOT_FOUND, "The service
        // binary file could not be found": a folder on its path is missing.
        code::PATH_NOT_FOUND if action == Action::Start => format!(
            "the folder of service '{name}''s driver file is missing (error 3): reinstall with `samplectl install <PATH.sys> --name {name}`"
        ),
        code::NO_SYSTEM_RESOURCES if action == Action::Start => format!(
            "'{name}' failed to start: DriverEntry returned STATUS_INSUFFICIENT_RESOURCES (error 1450)"
        ),
        _ => {
            let text = system_text.trim().trim_end_matches('.');
            let text = if text.is_empty() {
                "unknown error"
            } else {
                text
            };
            format!(
                "could not {} service '{name}': {text} (error {code})",
                action.verb()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_error_says_what_to_do() {
        let cases = [
            (Action::Install, code::ACCESS_DENIED, "elevated"),
            (
                Action::Install,
                code::SERVICE_EXISTS,
                "samplectl uninstall --name Sample",
            ),
            (
                Action::Start,
                code::SERVICE_DOES_NOT_EXIST,
                "samplectl install",
            ),
            (Action::Stop, code::SERVICE_NOT_ACTIVE, "is not started"),
            (
                Action::Stop,
                code::INVALID_SERVICE_CONTROL,
                "no unload routine",
            ),
            (Action::Start, code::INVALID_IMAGE_HASH, "testsigning"),
            (Action::Start, code::DRIVER_BLOCKED, "Memory integrity"),
            (Action::Start, code::FILE_NOT_FOUND, "reinstall"),
            (Action::Start, code::PATH_NOT_FOUND, "reinstall"),
            (
                Action::Install,
                code::SERVICE_MARKED_FOR_DELETE,
                "marked for deletion",
            ),
        ];
        for (action, error, needle) in cases {
            let message = explain(action, "Sample", error, "");
            assert!(message.contains(needle), "{error}: {message}");
            assert!(message.contains(&format!("error {error}")), "{message}");
            assert!(!message.contains('\n'));
        }
    }

    #[test]
    fn unknown_errors_keep_the_system_text() {
        let message = explain(
            Action::Stop,
            "Sample",
            87,
            "The parameter is incorrect.\r\n",
        );
        assert_eq!(
            message,
            "could not stop service 'Sample': The parameter is incorrect (error 87)"
        );
    }
}

#[cfg(test)]
mod presence_tests {
    use super::*;

    fn error(code: u32) -> Result<(), (u32, String)> {
        Err((code, String::new()))
    }

    #[test]
    fn a_service_marked_for_deletion_is_refused_with_1072_not_1073() {
        // OpenService succeeds; the no-change ChangeServiceConfig reports
        // the pending deletion.
        let marked = Presence::from_scm(Ok(()), || error(code::SERVICE_MARKED_FOR_DELETE));
        assert_eq!(marked, Ok(Presence::MarkedForDelete));
        assert_eq!(
            marked.map(Presence::install_refusal),
            Ok(Some(code::SERVICE_MARKED_FOR_DELETE))
        );
        let message = explain(Action::Install, "Sample", 1072, "");
        assert!(
            message.contains("marked for deletion (error 1072)"),
            "{message}"
        );

        let present = Presence::from_scm(Ok(()), || Ok(()));
        assert_eq!(
            present.map(Presence::install_refusal),
            Ok(Some(code::SERVICE_EXISTS))
        );
        // A probe refused for another reason says nothing about deletion.
        assert_eq!(
            Presence::from_scm(Ok(()), || error(code::ACCESS_DENIED)),
            Ok(Presence::Present)
        );
        let absent = Presence::from_scm(error(code::SERVICE_DOES_NOT_EXIST), || {
            unreachable!("no probe without a service")
        });
        assert_eq!(absent.map(Presence::install_refusal), Ok(None));
        assert_eq!(
            Presence::from_scm(error(code::ACCESS_DENIED), || Ok(())),
            Err((code::ACCESS_DENIED, String::new()))
        );
    }
}
