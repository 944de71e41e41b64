//! Where a breakpoint lands in the driver's code. The walkthrough's
//! `bp Sample!DriverEntry+0x2c` is an offset in the C build it debugged
//! (walkthrough: `Sample!DriverEntry+0x2c: cmp dword ptr
//! [Sample!g_RegistryPath+0x4],0`); in another build it may fall inside an
//! instruction, where a breakpoint is never hit (on Windows its 0xCC byte
//! would even change that instruction). kd sets it without a word; the
//! harness says so, and where the walkthrough's places are in this build.

use std::fmt::Write as _;

use super::Session;
use crate::disasm;

/// Largest function the check decodes (bytes from its start).
const MAX_FUNCTION: u64 = 0x4000;

impl Session {
    /// The harness's note when `address` is inside one of the driver's
    /// instructions (not at its start); `None` at an instruction's start or
    /// where the driver's functions are not known (no PDB).
    pub(super) fn placement_note(&self, address: u64) -> Option<String> {
        let start = self
            .names
            .driver_function_starts()
            .into_iter()
            .filter(|start| *start <= address && address - *start < MAX_FUNCTION)
            .max()?;
        let lines = self.function_lines(start, address - start + 16);
        let holder = lines
            .iter()
            .find(|line| line.address < address && address < line.address + line.length as u64)?;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "harness kd: {} is inside the instruction at {} ({}); a breakpoint there is never hit",
            self.names.name_of(address).unwrap_or_default(),
            self.names.name_of(holder.address).unwrap_or_default(),
            holder.render(self.pointer_size(), false).trim_end()
        );
        let function = self.names.name_of(start).unwrap_or_default();
        if function.ends_with("!DriverEntry") {
            out.push_str(&self.walkthrough_places(start, &function));
        }
        Some(out)
    }

    /// The function's instructions from `start`, `length` bytes or more.
    fn function_lines(&self, start: u64, length: u64) -> Vec<disasm::Line> {
        let length = usize::try_from(length.min(MAX_FUNCTION)).unwrap_or(0);
        let bytes = self.target.read(start, length).unwrap_or_default();
        disasm::disassemble(&bytes, start, usize::MAX, self.pointer_size(), &self.names)
    }

    /// The walkthrough's DriverEntry offsets (its x86 C build) and the
    /// same places in this build, found in the code: +0x27 where the
    /// allocation returns, +0x2c after the buffer is stored in
    /// `g_RegistryPath.Buffer`, +0x8a where the unload routine is set.
    fn walkthrough_places(&self, start: u64, function: &str) -> String {
        let lines = self.function_lines(start, MAX_FUNCTION);
        let offset = |address: u64| format!("+0x{:x}", address - start);
        let buffer_field = format!("g_RegistryPath+0x{:x}", self.pointer_size());
        let returned = lines
            .iter()
            .position(|line| {
                line.text.starts_with("call") && line.text.contains("ExAllocatePoolWithTag")
            })
            .and_then(|call| lines.get(call + 1).map(|next| (call + 1, next.address)));
        let stored = returned.and_then(|(from, _)| {
            lines[from..]
                .iter()
                .position(|line| line.text.starts_with("mov") && line.text.contains(&buffer_field))
                .and_then(|at| lines.get(from + at + 1))
                .map(|next| next.address)
        });
        let unload = lines
            .iter()
            .find(|line| line.text.contains("Unload"))
            .map(|line| line.address);
        let places = [
            (
                "+0x27",
                "the allocation has returned",
                returned.map(|(_, at)| at),
            ),
            ("+0x2c", "the buffer is stored in g_RegistryPath", stored),
            ("+0x8a", "the unload routine is set", unload),
        ];
        let found: Vec<String> = places
            .iter()
            .filter_map(|(theirs, what, ours)| {
                ours.map(|ours| format!("{theirs} ({what}) is {function}{}", offset(ours)))
            })
            .collect();
        if found.is_empty() {
            return String::new();
        }
        format!(
            "harness kd: the walkthrough's DriverEntry offsets in this build: {}\n",
            found.join(", ")
        )
    }
}
