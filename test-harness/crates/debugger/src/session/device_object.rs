//! `!devobj Name|Address`: kdexts' lookup and answers (debugger/-devobj.md:
//! "the address of the device object, or the name of the device"; the
//! order and the messages are kdexts' own `!devobj`): a hex number is an
//! address; a name starting with `\` is looked up in the object namespace
//! and a bare name as `\Device\Name`; failing both, the argument goes to
//! the expression evaluator (so `!devobj Sample` is the module's base).
//! No address: `Device object <arguments> not found`; memory whose `Type`
//! is not `IO_TYPE_DEVICE` (3, wdm.h): `<address>: is not a device object`.

use super::{CommandError, Reply, Session};
use crate::expr;

/// `IO_TYPE_DEVICE`, a `DEVICE_OBJECT`'s `Type` (wdm.h).
const IO_TYPE_DEVICE: u64 = 3;

impl Session {
    /// `!devobj`.
    pub(super) fn device_object(&self, args: &str) -> Reply {
        let Some(which) = args.split_whitespace().next() else {
            return Err(CommandError::Message(
                "harness kd: !devobj needs a device name or a DEVICE_OBJECT address".into(),
            ));
        };
        let not_found = || CommandError::Message(format!("Device object {args} not found"));
        let hex = which
            .trim_start_matches("0x")
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == '`');
        let named = if hex {
            None
        } else {
            let wanted = if which.starts_with('\\') {
                which.to_owned()
            } else {
                format!("\\Device\\{which}")
            };
            self.target
                .machine
                .kernel()
                .device_names
                .iter()
                .find(|(_, name)| name.eq_ignore_ascii_case(&wanted))
                .map(|(device, _)| *device)
        };
        let address = match named {
            Some(device) => device,
            None => expr::evaluate(which, self)
                .ok()
                .filter(|value| *value != 0)
                .ok_or_else(not_found)?,
        };
        let shown = self.arch().address(address);
        match self.target.read_uint(address, 2) {
            None => Err(CommandError::Message(format!(
                "{shown}: Could not read device object or _DEVICE_OBJECT not found"
            ))),
            Some(IO_TYPE_DEVICE) => Err(CommandError::Message(format!(
                "harness kd: {shown} is a device object; its full !devobj display is not emulated \
                 (the emulated DEVICE_OBJECT has no object header or DEVOBJ_EXTENSION); !drvobj lists it"
            ))),
            Some(_) => Ok(format!("{shown}: is not a device object\n")),
        }
    }
}
