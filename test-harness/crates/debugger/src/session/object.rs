//! `!object Path | Address [Flags]`: an object's header (type, counts,
//! name) and a directory's entries, read from the machine's memory with
//! Windows 7's object layouts (harness-core's `wdm::ObjectLayout`).
//!
//! Form from debugger/-object.md's examples (a Windows 10 x64 session):
//!
//! ```text
//! Object: ffffc00b074166a0  Type: (ffffe0083b768690) Directory
//!     ObjectHeader: ffffc00b07416670 (new version)
//!     HandleCount: 0  PointerCount: 224
//!     Directory Object: ffffc00b074092e0  Name: Device
//!     Hash Address          Type          Name
//!     ---- -------          ----          ----
//!      00  ffffe0083e6a61f0 Device        00000044
//!          ffffe0083dcc4050 Device        00000030
//! ```
//!
//! Flags as the page documents them: 1 the counts and name, 8 (with 1) a
//! directory's entries; the default is 9. A path starts at
//! `nt!ObpRootDirectoryObject`; the hash column is the bucket, in decimal
//! (the page's `\FileSystem\Filters` files `FltMgrMsg` under 19 and
//! `FltMgr` under 21, as ntemu's `ob::hash` computes them).

use std::fmt::Write as _;

use super::{CommandError, Reply, Session};
use crate::expr;
use harness_core::wdm::{NAME_INFO_MASK, NUMBER_HASH_BUCKETS, ObjectLayout};

/// Entries read from one bucket at most (a corrupt chain could loop).
const MAX_CHAIN: usize = 256;

/// Path components followed at most.
const MAX_DEPTH: usize = 32;

impl Session {
    /// `!object`.
    pub(super) fn object(&self, args: &str) -> Reply {
        let mut words = args.split_whitespace();
        let which = super::required(
            &mut words,
            "harness kd: !object needs a path or an address (!object \\Driver)",
        )?;
        let flags = match words.next() {
            Some(text) => expr::evaluate(text, self)?,
            None => 9,
        };
        if flags & !9 != 0 || words.next().is_some() {
            return Err(CommandError::Message(
                "harness kd: only !object flags 0, 1, 8 and 9 are emulated".into(),
            ));
        }
        let object = if which.starts_with('\\') {
            self.lookup_path(which)?
        } else {
            let address = expr::evaluate(which, self)?;
            if address == 0 {
                return Err(CommandError::Message(
                    "harness kd: !object 0 Name (objects of a type) is not emulated".into(),
                ));
            }
            address
        };
        self.object_display(object, flags)
    }

    /// The object a path names, from the root directory down.
    fn lookup_path(&self, path: &str) -> Result<u64, CommandError> {
        let nt = self.target.nt();
        let mut object = nt
            .symbol("ObpRootDirectoryObject")
            .and_then(|root| self.target.read_pointer(root))
            .unwrap_or(0);
        for component in path
            .split('\\')
            .filter(|part| !part.is_empty())
            .take(MAX_DEPTH)
        {
            object = self
                .directory_entries(object)
                .into_iter()
                .find(|(_, entry)| {
                    self.object_name(*entry)
                        .is_some_and(|name| name.eq_ignore_ascii_case(component))
                })
                .map(|(_, entry)| entry)
                .ok_or_else(|| {
                    CommandError::Message(format!(
                        "harness kd: no {path} in the emulated namespace (it holds \\Driver and the loaded driver)"
                    ))
                })?;
        }
        Ok(object)
    }

    /// `(bucket, object)` for every entry of a directory, bucket by bucket.
    fn directory_entries(&self, directory: u64) -> Vec<(u64, u64)> {
        let ptr = self.pointer_size();
        let mut entries = Vec::new();
        for bucket in 0..NUMBER_HASH_BUCKETS {
            let mut entry = self
                .target
                .read_pointer(directory + bucket * ptr)
                .unwrap_or(0);
            for _ in 0..MAX_CHAIN {
                if entry == 0 {
                    break;
                }
                let object = self.target.read_pointer(entry + ptr).unwrap_or(0);
                entries.push((bucket, object));
                entry = self.target.read_pointer(entry).unwrap_or(0);
            }
        }
        entries
    }

    /// The name in an object's `OBJECT_HEADER_NAME_INFO`, if it has one.
    fn object_name(&self, object: u64) -> Option<String> {
        let layout = ObjectLayout::for_arch(self.arch());
        let header = object.checked_sub(layout.body)?;
        let mask = self.target.read_uint(header + layout.info_mask, 1)?;
        if mask & NAME_INFO_MASK == 0 {
            return None;
        }
        let info = header.checked_sub(layout.name_info_size)?;
        self.unicode_string(info + layout.name_info_name)
    }

    /// The object type (its address and name) an object's header names.
    fn object_type(&self, object: u64) -> Option<(u64, String)> {
        let layout = ObjectLayout::for_arch(self.arch());
        let index = self
            .target
            .read_uint(object.checked_sub(layout.body)? + layout.type_index, 1)?;
        let table = self.target.nt().symbol("ObTypeIndexTable")?;
        let object_type = self
            .target
            .read_pointer(table + index * self.pointer_size())?;
        if object_type == 0 {
            return None;
        }
        let name = self.unicode_string(object_type + layout.type_name)?;
        Some((object_type, name))
    }

    fn object_display(&self, object: u64, flags: u64) -> Reply {
        let address = |value: u64| self.arch().address(value);
        let layout = ObjectLayout::for_arch(self.arch());
        let Some((type_address, type_name)) = self.object_type(object) else {
            return Err(CommandError::Message(format!(
                "harness kd: {} has no object header the emulated kernel made (its type is unknown)",
                address(object)
            )));
        };
        let header = object - layout.body;
        let mut out = format!(
            "Object: {}  Type: ({}) {type_name}\n    ObjectHeader: {} (new version)\n",
            address(object),
            address(type_address),
            address(header)
        );
        if flags & 1 == 0 {
            return Ok(out);
        }
        let pointers = self.target.read_pointer(header).unwrap_or(0);
        let handles = self
            .target
            .read_pointer(header + layout.handle_count)
            .unwrap_or(0);
        let _ = writeln!(out, "    HandleCount: {handles}  PointerCount: {pointers}");
        if self
            .target
            .read_uint(header + layout.info_mask, 1)
            .is_some_and(|mask| mask & NAME_INFO_MASK != 0)
        {
            let info = header - layout.name_info_size;
            let directory = self.target.read_pointer(info).unwrap_or(0);
            let name = self.object_name(object).unwrap_or_default();
            let _ = writeln!(
                out,
                "    Directory Object: {}  Name: {name}",
                address(directory)
            );
        }
        if flags & 8 != 0 && type_name == "Directory" {
            let width = self.arch().pointer_digits() + 1;
            let _ = writeln!(
                out,
                "    Hash {:<width$}Type          Name\n    ---- {:<width$}----          ----",
                "Address", "-------"
            );
            let mut last = None;
            for (bucket, entry) in self.directory_entries(object) {
                let hash = if last == Some(bucket) {
                    "  ".to_owned()
                } else {
                    format!("{bucket:02}")
                };
                last = Some(bucket);
                let kind = self
                    .object_type(entry)
                    .map(|(_, name)| name)
                    .unwrap_or_default();
                let name = self.object_name(entry).unwrap_or_default();
                let _ = writeln!(
                    out,
                    "     {hash}  {:<width$}{kind:<14}{name}",
                    address(entry)
                );
            }
        }
        Ok(out)
    }
}
