//! `!drvobj driver|address [flags]`: a `DRIVER_OBJECT` read from the
//! machine's memory with wdm.h's layout (harness-core's `wdm` table).
//! Flags as debugger/-drvobj.md documents them: 1 (the default) lists the
//! driver's device objects, 2 adds its entry points and dispatch routines.
//! Form from real sessions (Windows 10 x64, 2019, `!drvobj DeviceObj 7`;
//! Windows XP x86, `!drvobj vmx_svga 3`):
//!
//! ```text
//! Driver object (ffffa3828a49b060) is for:
//!  \Driver\DeviceObj
//!
//! Driver Extension List: (id , addr)
//!
//! Device Object list:
//! ffffa3828c2869f0
//!
//! DriverEntry:   fffff80043a55064<TAB>DeviceObj
//! DriverStartIo: 00000000
//! ...
//! [00] IRP_MJ_CREATE                      fffff800439d4ff0<TAB>DeviceObj+0x4ff0
//! ```
//!
//! (`<TAB>`: a tab character.)

use std::fmt::Write as _;

use super::{CommandError, Reply, Session};
use crate::expr;
use harness_core::wdm;

/// `IRP_MJ_*` by index (wdm.h).
const MAJOR_FUNCTION_NAMES: [&str; 28] = [
    "IRP_MJ_CREATE",
    "IRP_MJ_CREATE_NAMED_PIPE",
    "IRP_MJ_CLOSE",
    "IRP_MJ_READ",
    "IRP_MJ_WRITE",
    "IRP_MJ_QUERY_INFORMATION",
    "IRP_MJ_SET_INFORMATION",
    "IRP_MJ_QUERY_EA",
    "IRP_MJ_SET_EA",
    "IRP_MJ_FLUSH_BUFFERS",
    "IRP_MJ_QUERY_VOLUME_INFORMATION",
    "IRP_MJ_SET_VOLUME_INFORMATION",
    "IRP_MJ_DIRECTORY_CONTROL",
    "IRP_MJ_FILE_SYSTEM_CONTROL",
    "IRP_MJ_DEVICE_CONTROL",
    "IRP_MJ_INTERNAL_DEVICE_CONTROL",
    "IRP_MJ_SHUTDOWN",
    "IRP_MJ_LOCK_CONTROL",
    "IRP_MJ_CLEANUP",
    "IRP_MJ_CREATE_MAILSLOT",
    "IRP_MJ_QUERY_SECURITY",
    "IRP_MJ_SET_SECURITY",
    "IRP_MJ_POWER",
    "IRP_MJ_SYSTEM_CONTROL",
    "IRP_MJ_DEVICE_CHANGE",
    "IRP_MJ_QUERY_QUOTA",
    "IRP_MJ_SET_QUOTA",
    "IRP_MJ_PNP",
];

/// Devices listed at most (a corrupt `NextDevice` chain could loop).
const MAX_DEVICES: usize = 256;

/// `IO_TYPE_DRIVER`, the object's `Type` (wdm.h).
const IO_TYPE_DRIVER: u64 = 4;

impl Session {
    /// `!drvobj`.
    pub(super) fn driver_object(&self, args: &str) -> Reply {
        let mut words = args.split_whitespace();
        let which = super::required(
            &mut words,
            "harness kd: !drvobj needs a driver name or a DRIVER_OBJECT address (!drvobj Sample 2)",
        )?;
        let flags = match words.next() {
            Some(text) => expr::evaluate(text, self)?,
            None => 1,
        };
        let object = self.find_driver_object(which, args)?;
        let layout = wdm::DriverObject::for_arch(self.arch());
        let size = self.pointer_size();
        let pointer = |offset: u64| self.target.read_pointer(object + offset).unwrap_or(0);
        let name = self
            .unicode_string(object + layout.driver_name)
            .unwrap_or_default();
        let mut out = format!(
            "Driver object ({}) is for:\n {name}\n\nDriver Extension List: (id , addr)\n",
            self.arch().address(object)
        );
        // DRIVER_EXTENSION.ClientDriverExtension: after DriverObject,
        // AddDevice, Count and ServiceKeyName (a UNICODE_STRING).
        let extension = pointer(layout.driver_extension);
        if extension != 0 {
            let mut client = self
                .target
                .read_pointer(extension + 3 * size + 2 * size)
                .unwrap_or(0);
            for _ in 0..MAX_DEVICES {
                if client == 0 {
                    break;
                }
                // IO_CLIENT_EXTENSION: NextExtension, ClientIdentificationAddress.
                let id = self.target.read_pointer(client + size).unwrap_or(0);
                let _ = writeln!(
                    out,
                    "({} {})",
                    self.arch().address(id),
                    self.arch().address(client)
                );
                client = self.target.read_pointer(client).unwrap_or(0);
            }
        }
        out.push_str("\nDevice Object list:\n");
        let device_layout = wdm::DeviceObject::for_arch(self.arch());
        let mut device = pointer(layout.device_object);
        let mut devices = Vec::new();
        while device != 0 && devices.len() < MAX_DEVICES {
            devices.push(format!("{}  ", self.arch().address(device)));
            device = self
                .target
                .read_pointer(device + device_layout.next_device)
                .unwrap_or(0);
        }
        let _ = writeln!(out, "{}", devices.concat().trim_end());
        if flags & 2 != 0 {
            let add_device = if extension == 0 {
                0
            } else {
                self.target.read_pointer(extension + size).unwrap_or(0)
            };
            out.push('\n');
            for (label, value) in [
                ("DriverEntry:  ", pointer(layout.driver_init)),
                // DriverStartIo sits just before DriverUnload.
                ("DriverStartIo:", pointer(layout.driver_unload - size)),
                ("DriverUnload: ", pointer(layout.driver_unload)),
                ("AddDevice:    ", add_device),
            ] {
                let _ = writeln!(out, "{label} {}", self.routine(value));
            }
            out.push_str("\nDispatch routines:\n");
            for (index, name) in MAJOR_FUNCTION_NAMES.iter().enumerate() {
                let value = pointer(layout.major_function + size * index as u64);
                let _ = writeln!(out, "[{index:02x}] {name:<35}{}", self.routine(value));
            }
        }
        Ok(out)
    }

    /// The driver object a name (`Sample`, `\Driver\Sample`) or an address
    /// names. Neither in `\Driver` nor an expression: kdexts' "Driver object
    /// <arguments> not found" (its `!drvobj`, which looks the name up in the
    /// object directory and then tries the expression evaluator, as
    /// -drvobj.md's Remarks say). Before the driver starts and after its
    /// unload deleted the object, `\Driver` holds no `Sample`.
    fn find_driver_object(&self, which: &str, args: &str) -> Result<u64, CommandError> {
        let wanted = if which.starts_with('\\') {
            which.to_owned()
        } else {
            format!("\\Driver\\{which}")
        };
        let loaded = self.target.machine.kernel().loaded.driver_object;
        let layout = wdm::DriverObject::for_arch(self.arch());
        if loaded != 0
            && self
                .unicode_string(loaded + layout.driver_name)
                .is_some_and(|name| name.eq_ignore_ascii_case(&wanted))
        {
            return Ok(loaded);
        }
        let Ok(address) = expr::evaluate(which, self) else {
            return Err(CommandError::Message(format!(
                "Driver object {args} not found"
            )));
        };
        if self.target.read_uint(address, 2) != Some(IO_TYPE_DRIVER) {
            return Err(CommandError::Message(format!(
                "harness kd: {} is not a driver object (its Type is not IO_TYPE_DRIVER)",
                self.arch().address(address)
            )));
        }
        Ok(address)
    }

    /// A routine's address and, after a tab, its symbol; a null one bare.
    fn routine(&self, value: u64) -> String {
        if value == 0 {
            return "00000000".to_owned();
        }
        let name = self.names.name_of(value).unwrap_or_default();
        format!("{}\t{name}", self.arch().address(value))
            .trim_end()
            .to_owned()
    }
}
