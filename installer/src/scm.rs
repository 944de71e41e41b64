//! The Service Control Manager calls, through the `windows` crate, and the
//! install record samplectl keeps in the service's registry key.
//! Each failure comes back as (Win32 error code, system text).

use std::ffi::OsString;
use std::os::windows::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use windows::Win32::Foundation::{ERROR_FILE_NOT_FOUND, WIN32_ERROR};
use windows::Win32::System::Registry::{
    HKEY_LOCAL_MACHINE, REG_DWORD, REG_SZ, RRF_RT_REG_DWORD, RRF_RT_REG_SZ, RegGetValueW,
    RegSetKeyValueW,
};
use windows::Win32::System::Services::{
    ChangeServiceConfigW, CloseServiceHandle, ControlService, CreateServiceW, DeleteService,
    ENUM_SERVICE_TYPE, OpenSCManagerW, OpenServiceW, QueryServiceStatus, SC_HANDLE,
    SC_MANAGER_CONNECT, SC_MANAGER_CREATE_SERVICE, SERVICE_ALL_ACCESS, SERVICE_CHANGE_CONFIG,
    SERVICE_CONTROL_STOP, SERVICE_DEMAND_START, SERVICE_ERROR, SERVICE_ERROR_NORMAL,
    SERVICE_KERNEL_DRIVER, SERVICE_NO_CHANGE, SERVICE_QUERY_STATUS, SERVICE_RUNNING, SERVICE_START,
    SERVICE_START_TYPE, SERVICE_STATUS, SERVICE_STOP, SERVICE_STOPPED, StartServiceW,
};
use windows::core::{HSTRING, PCWSTR};

use crate::errors::{Presence, code};
use crate::ownership::{COPY_VALUE, CREATED_VALUE, InstallRecord};
use crate::stopping::{self, Progress};

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

/// Whether a service of this name exists, and whether it is marked for
/// deletion (see [`Presence::from_scm`]).
///
/// # Errors
/// The SCM could not be asked (access denied, ...).
pub fn presence(name: &str) -> Result<Presence, ScmError> {
    let opened = service(name, SERVICE_QUERY_STATUS | SERVICE_CHANGE_CONFIG);
    let handle = match opened {
        Ok(handle) => handle,
        Err(error) => return Presence::from_scm(Err(error), || Ok(())),
    };
    Presence::from_scm(Ok(()), || {
        // SAFETY: `handle` is open with SERVICE_CHANGE_CONFIG; every other
        // argument is "no change" (SERVICE_NO_CHANGE, null), as the API allows.
        unsafe {
            ChangeServiceConfigW(
                handle.0,
                ENUM_SERVICE_TYPE(SERVICE_NO_CHANGE),
                SERVICE_START_TYPE(SERVICE_NO_CHANGE),
                SERVICE_ERROR(SERVICE_NO_CHANGE),
                PCWSTR::null(),
                PCWSTR::null(),
                None,
                PCWSTR::null(),
                PCWSTR::null(),
                PCWSTR::null(),
                PCWSTR::null(),
            )
        }
        .map_err(|error| win32(&error))
    })
}

/// Whether a service of this name exists.
///
/// # Errors
/// The SCM could not be asked (access denied, ...).
pub fn exists(name: &str) -> Result<bool, ScmError> {
    match service(name, SERVICE_QUERY_STATUS) {
        Ok(_) => Ok(true),
        Err((code::SERVICE_DOES_NOT_EXIST, _)) => Ok(false),
        Err(error) => Err(error),
    }
}

/// Creates a demand-start kernel driver service for `binary`, in the
/// load-order `group` if one is given.
///
/// # Errors
/// The SCM's error.
pub fn create(name: &str, binary: &str, group: Option<&str>) -> Result<(), ScmError> {
    let scm = manager(SC_MANAGER_CONNECT | SC_MANAGER_CREATE_SERVICE)?;
    let (name, binary) = (HSTRING::from(name), HSTRING::from(binary));
    let group = group.map(HSTRING::from);
    let group = group
        .as_ref()
        .map_or_else(PCWSTR::null, |group| PCWSTR(group.as_ptr()));
    // SAFETY: `scm` is open; every string (`group`'s HSTRING included) is
    // NUL-terminated and outlives the call; the optional arguments are null
    // as the API allows.
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
            group,
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
/// the SCM reports it stopped (see `stopping` for how long).
///
/// # Errors
/// The SCM's error; 1052 when the driver stays loaded after the stop (it has
/// no unload routine); 1053 when the stop stays pending.
pub fn stop(name: &str) -> Result<(), ScmError> {
    let service = service(name, SERVICE_STOP | SERVICE_QUERY_STATUS)?;
    let mut status = SERVICE_STATUS::default();
    // SAFETY: `service` is open with SERVICE_STOP; `status` is writable.
    unsafe { ControlService(service.0, SERVICE_CONTROL_STOP, &raw mut status) }
        .map_err(|error| win32(&error))?;
    let started = Instant::now();
    loop {
        match stopping::progress(status.dwCurrentState.0, started.elapsed()) {
            Progress::Stopped => return Ok(()),
            Progress::NotUnloaded => return Err((code::INVALID_SERVICE_CONTROL, String::new())),
            Progress::TimedOut => {
                return Err((
                    code::SERVICE_REQUEST_TIMEOUT,
                    "the driver's unload routine did not return within 30 seconds".into(),
                ));
            }
            Progress::Wait => std::thread::sleep(Duration::from_millis(100)),
        }
        // SAFETY: as above, with SERVICE_QUERY_STATUS.
        unsafe { QueryServiceStatus(service.0, &raw mut status) }.map_err(|error| win32(&error))?;
    }
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

/// `SYSTEM\CurrentControlSet\Services\<name>` under HKLM: the service's key.
fn service_key(name: &str) -> HSTRING {
    HSTRING::from(format!(r"SYSTEM\CurrentControlSet\Services\{name}"))
}

fn checked(status: WIN32_ERROR) -> Result<(), ScmError> {
    status.ok().map_err(|error| win32(&error))
}

/// Records in the service's key that samplectl created it, and the driver
/// copy it placed, if any.
///
/// # Errors
/// The registry's error.
pub fn record_install(name: &str, copy: Option<&Path>) -> Result<(), ScmError> {
    let key = service_key(name);
    let created = 1_u32.to_ne_bytes();
    // SAFETY: the names are NUL-terminated and outlive the call; the data is
    // the 4 bytes of a DWORD.
    checked(unsafe {
        RegSetKeyValueW(
            HKEY_LOCAL_MACHINE,
            &key,
            &HSTRING::from(CREATED_VALUE),
            REG_DWORD.0,
            Some(created.as_ptr().cast()),
            4,
        )
    })?;
    let Some(copy) = copy else { return Ok(()) };
    let text: Vec<u16> = copy.as_os_str().encode_wide().chain([0]).collect();
    let bytes = u32::try_from(text.len() * 2).map_err(|_| (87, "path too long".to_owned()))?;
    // SAFETY: as above; the data is `text`, NUL-terminated UTF-16 of `bytes` bytes.
    checked(unsafe {
        RegSetKeyValueW(
            HKEY_LOCAL_MACHINE,
            &key,
            &HSTRING::from(COPY_VALUE),
            REG_SZ.0,
            Some(text.as_ptr().cast()),
            bytes,
        )
    })
}

/// What `record_install` recorded for the service: nothing for a service
/// samplectl did not create.
///
/// # Errors
/// The registry's error.
pub fn install_record(name: &str) -> Result<InstallRecord, ScmError> {
    let key = service_key(name);
    let mut created = 0_u32;
    let mut size = 4_u32;
    // SAFETY: the names are NUL-terminated and outlive the call; `created`
    // is `size` writable bytes.
    let status = unsafe {
        RegGetValueW(
            HKEY_LOCAL_MACHINE,
            &key,
            &HSTRING::from(CREATED_VALUE),
            RRF_RT_REG_DWORD,
            None,
            Some((&raw mut created).cast()),
            Some(&raw mut size),
        )
    };
    if status == ERROR_FILE_NOT_FOUND {
        return Ok(InstallRecord::default());
    }
    checked(status)?;
    Ok(InstallRecord {
        created: created == 1,
        copy: registry_text(&key, COPY_VALUE)?.map(PathBuf::from),
    })
}

/// A `REG_SZ` value of `HKLM\<key>`, or `None` if there is none.
fn registry_text(key: &HSTRING, value: &str) -> Result<Option<OsString>, ScmError> {
    let value = HSTRING::from(value);
    let mut size = 0_u32;
    // SAFETY: the names are NUL-terminated and outlive the call; without a
    // buffer, the call only writes the size the value needs.
    let status = unsafe {
        RegGetValueW(
            HKEY_LOCAL_MACHINE,
            key,
            &value,
            RRF_RT_REG_SZ,
            None,
            None,
            Some(&raw mut size),
        )
    };
    if status == ERROR_FILE_NOT_FOUND {
        return Ok(None);
    }
    checked(status)?;
    let mut text = vec![0_u16; (size as usize).div_ceil(2)];
    // SAFETY: as above; `text` is `size` writable bytes.
    checked(unsafe {
        RegGetValueW(
            HKEY_LOCAL_MACHINE,
            key,
            &value,
            RRF_RT_REG_SZ,
            None,
            Some(text.as_mut_ptr().cast()),
            Some(&raw mut size),
        )
    })?;
    let units = text
        .iter()
        .position(|&unit| unit == 0)
        .unwrap_or(text.len());
    Ok(Some(OsString::from_wide(&text[..units])))
}
