//! One clear line, saying what to do, for each error a user meets.

/// Win32 error codes samplectl explains.
pub mod code {
    /// `ERROR_FILE_NOT_FOUND`
    pub const FILE_NOT_FOUND: u32 = 2;
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
