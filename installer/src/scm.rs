//! The Service Control Manager calls, through the `windows` crate.
//! Each failure comes back as (Win32 error code, system text).

use std::time::{Duration, Instant};

use windows::Win32::System::Services::{
    CloseServiceHandle, ControlService, CreateServiceW, DeleteService, OpenSCManagerW,
    OpenServiceW, QueryServiceStatus, SC_HANDLE, SC_MANAGER_CONNECT, SC_MANAGER_CREATE_SERVICE,
    SERVICE_ALL_ACCESS, SERVICE_CONTROL_STOP, SERVICE_DEMAND_START, SERVICE_ERROR_NORMAL,
    SERVICE_KERNEL_DRIVER, SERVICE_QUERY_STATUS, SERVICE_RUNNING, SERVICE_START, SERVICE_STATUS,
    SERVICE_STOP, SERVICE_STOPPED, StartServiceW,
};
use windows::core::{HSTRING, PCWSTR};

/// A Win32 error: its code and the system's text for it.
pub type ScmError = (u32, String);

fn win32(error: &windows::core::Error) -> ScmError {
    // HRESULT_FROM_WIN32: 0x8007xxxx carries the Win32 code in the low word.
    #[allow(clippy::cast_sign_loss)]
    let hresult = error.code().0 as u32;
    let code = if hresult >> 16 == 0x8007 {
        hresult & 0xffff
    } else {
        hresult
    };
    (code, error.message())
}

/// An open SCM or service handle, closed on drop.
struct Handle(SC_HANDLE);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle came from OpenSCManagerW/OpenServiceW/CreateServiceW
        // and is closed exactly once, here.
        let _ = unsafe { CloseServiceHandle(self.0) };
    }
}

fn manager(access: u32) -> Result<Handle, ScmError> {
    // SAFETY: null machine and database names mean the local, active database.
    let handle = unsafe { OpenSCManagerW(PCWSTR::null(), PCWSTR::null(), access) };
    handle.map(Handle).map_err(|error| win32(&error))
}

fn service(name: &str, access: u32) -> Result<Handle, ScmError> {
    let scm = manager(SC_MANAGER_CONNECT)?;
    let name = HSTRING::from(name);
    // SAFETY: `scm` is open and `name` is a NUL-terminated wide string that
    // outlives the call.
    let handle = unsafe { OpenServiceW(scm.0, &name, access) };
    handle.map(Handle).map_err(|error| win32(&error))
}

/// Whether a service of this name exists.
///
/// # Errors
/// The SCM could not be asked (access denied, ...).
pub fn exists(name: &str) -> Result<bool, ScmError> {
    match service(name, SERVICE_QUERY_STATUS) {
        Ok(_) => Ok(true),
        Err((1060, _)) => Ok(false),
        Err(error) => Err(error),
    }
}

/// Creates a demand-start kernel driver service for `binary`.
///
/// # Errors
/// The SCM's error.
pub fn create(name: &str, binary: &str) -> Result<(), ScmError> {
    let scm = manager(SC_MANAGER_CONNECT | SC_MANAGER_CREATE_SERVICE)?;
    let (name, binary) = (HSTRING::from(name), HSTRING::from(binary));
    // SAFETY: `scm` is open; every string is NUL-terminated and outlives the
    // call; the optional arguments are null as the API allows.
    let handle = unsafe {
        CreateServiceW(
            scm.0,
            &name,
            &name,
            SERVICE_ALL_ACCESS,
            SERVICE_KERNEL_DRIVER,
            SERVICE_DEMAND_START,
            SERVICE_ERROR_NORMAL,
            &binary,
            PCWSTR::null(),
            None,
            PCWSTR::null(),
            PCWSTR::null(),
            PCWSTR::null(),
        )
    };
    handle.map(drop).map_err(|error| win32(&error))
}

/// Starts the service (for a driver: loads it and runs DriverEntry).
///
/// # Errors
/// The SCM's error (DriverEntry's failure maps to one).
pub fn start(name: &str) -> Result<(), ScmError> {
    let service = service(name, SERVICE_START | SERVICE_QUERY_STATUS)?;
    // SAFETY: `service` is open with SERVICE_START; drivers take no arguments.
    unsafe { StartServiceW(service.0, None) }.map_err(|error| win32(&error))
}

/// Stops the service (for a driver: runs its unload routine) and waits until
/// the SCM reports it stopped.
///
/// # Errors
/// The SCM's error, or (code 1053) the service did not stop in time.
pub fn stop(name: &str) -> Result<(), ScmError> {
    let service = service(name, SERVICE_STOP | SERVICE_QUERY_STATUS)?;
    let mut status = SERVICE_STATUS::default();
    // SAFETY: `service` is open with SERVICE_STOP; `status` is writable.
    unsafe { ControlService(service.0, SERVICE_CONTROL_STOP, &raw mut status) }
        .map_err(|error| win32(&error))?;
    let started = Instant::now();
    while status.dwCurrentState != SERVICE_STOPPED {
        if started.elapsed() > Duration::from_secs(30) {
            return Err((1053, "the service did not stop within 30 seconds".into()));
        }
        std::thread::sleep(Duration::from_millis(100));
        // SAFETY: as above, with SERVICE_QUERY_STATUS.
        unsafe { QueryServiceStatus(service.0, &raw mut status) }.map_err(|error| win32(&error))?;
    }
    Ok(())
}

/// The service's current state, as `sc query` names it.
///
/// # Errors
/// The SCM's error.
pub fn state(name: &str) -> Result<&'static str, ScmError> {
    let service = service(name, SERVICE_QUERY_STATUS)?;
    let mut status = SERVICE_STATUS::default();
    // SAFETY: `service` is open with SERVICE_QUERY_STATUS; `status` is writable.
    unsafe { QueryServiceStatus(service.0, &raw mut status) }.map_err(|error| win32(&error))?;
    Ok(match status.dwCurrentState {
        SERVICE_STOPPED => "STOPPED",
        SERVICE_RUNNING => "RUNNING",
        _ => "PENDING",
    })
}

/// Deletes the service (it goes once no handle is open).
///
/// # Errors
/// The SCM's error.
pub fn delete(name: &str) -> Result<(), ScmError> {
    let service = service(name, 0x0001_0000)?; // DELETE
    // SAFETY: `service` is open with DELETE access.
    unsafe { DeleteService(service.0) }.map_err(|error| win32(&error))
}
