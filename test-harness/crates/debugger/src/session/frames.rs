//! The stack and the registers: `k` and its options, `.frame`, `dv`,
//! `.thread`, `.cxr`, `r`.

use std::fmt::Write as _;

use super::{CommandError, Reply, Session};
use crate::{expr, format, stack};
use harness_core::arch::Arch;
use harness_core::pdb::{Local, Procedure, Storage};
use harness_core::types::{RecordKind, Type, TypeId, TypeTable};

/// Options of a `k` command.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct StackOptions {
    /// `b`/`v`: the arguments.
    args: bool,
    /// `v`: FPO and calling-convention notes.
    verbose: bool,
}

impl Session {
    /// `k`, `kb`, `kv`, `kn`, `kvn` [count]. kd numbers frames always now
    /// (the walkthrough's `kb` does too), so `n` changes nothing.
    pub(super) fn backtrace(&self, name: &str, args: &str) -> Reply {
        let options = StackOptions {
            args: name.contains('b') || name.contains('v'),
            verbose: name.contains('v'),
        };
        let limit = if args.is_empty() {
            0x100
        } else {
            let value = expr::evaluate(args, self)?;
            usize::try_from(value).unwrap_or(usize::MAX)
        };
        let frames = self.frames();
        Ok(self.render_frames(&frames, options, limit))
    }

    fn render_frames(
        &self,
        frames: &[stack::Frame],
        options: StackOptions,
        limit: usize,
    ) -> String {
        let mut out = String::new();
        let x64 = self.arch() == Arch::X64;
        out.push_str(match (x64, options.args) {
            (false, false) => " # ChildEBP RetAddr  \n",
            (false, true) => " # ChildEBP RetAddr  Args to Child              \n",
            (true, false) => " # Child-SP          RetAddr               Call Site\n",
            (true, true) => {
                " # Child-SP          RetAddr               : Args to Child                                                           : Call Site\n"
            }
        });
        for (number, frame) in frames.iter().enumerate().take(limit) {
            let _ = write!(
                out,
                "{number:02x} {} {}",
                self.address(frame.child),
                self.address(frame.return_address)
            );
            let count = if x64 { 4 } else { 3 };
            let arguments = frame.args[..count]
                .iter()
                .map(|arg| self.address(*arg))
                .collect::<Vec<_>>()
                .join(" ");
            match (x64, options.args) {
                (false, false) => out.push(' '),
                (false, true) => {
                    let _ = write!(out, " {arguments} ");
                }
                (true, false) => out.push_str("     "),
                (true, true) => {
                    let _ = write!(out, "     : {arguments} : ");
                }
            }
            out.push_str(&self.frame_name(frame, number, options.verbose));
            out.push('\n');
        }
        out
    }

    /// A frame's call site, with kd's notes for driver frames.
    fn frame_name(&self, frame: &stack::Frame, number: usize, verbose: bool) -> String {
        let mut name = self
            .names
            .name_of(frame.ip)
            .unwrap_or_else(|| format!("0x{}", self.address(frame.ip)));
        let Some(rva) = self.names.driver_rva(frame.ip) else {
            return name;
        };
        let Some(pdb) = self.names.pdb() else {
            return name;
        };
        if verbose && self.arch() == Arch::X86 && pdb.procedure_at(rva).is_some() {
            // The x86 driver keeps frame pointers (a "Non-FPO" frame).
            name.push_str(" (FPO: [Non-Fpo])");
            if let Some(convention) = self.calling_convention(rva) {
                let _ = write!(name, " (CONV: {convention})");
            }
        }
        // A return address names the call it returns from: look up the
        // line one byte back, as kd does for frames above the first.
        let probe = if number == 0 {
            rva
        } else {
            rva.saturating_sub(1)
        };
        if let Some(line) = pdb.line_at(probe) {
            let _ = write!(name, " [{} @ {}]", line.file, line.line);
        }
        name
    }

    /// The calling convention kd names for an x86 driver function: the
    /// exported entry points are `stdcall` (`NTAPI`), as the WDK declares
    /// them; others are unknown here.
    fn calling_convention(&self, rva: u32) -> Option<&'static str> {
        let procedure = self.names.pdb()?.procedure_at(rva)?;
        let entry = self.target.machine.kernel().entry_rva;
        let unload = self.unload_rva();
        (procedure.rva == entry || Some(procedure.rva) == unload).then_some("stdcall")
    }

    fn unload_rva(&self) -> Option<u32> {
        self.target
            .machine
            .events()
            .iter()
            .find_map(|event| match event {
                harness_core::events::Event::EntryReturn { unload_routine, .. }
                    if *unload_routine != 0 =>
                {
                    self.names.driver_rva(*unload_routine)
                }
                _ => None,
            })
    }

    /// `.frame [/r] N`: the frame locals are read from.
    pub(super) fn set_frame(&mut self, args: &str) -> Reply {
        let frames = self.frames();
        let show_registers = args.starts_with("/r");
        let args = args.trim_start_matches("/r").trim();
        if !args.is_empty() {
            let value = expr::evaluate(args, self)?;
            let number = usize::try_from(value).unwrap_or(usize::MAX);
            if number >= frames.len() {
                return Err(CommandError::Message(format!(
                    "Cannot find frame 0x{value:x}, previous scope unchanged"
                )));
            }
            self.frame = number;
        }
        let frame = frames
            .get(self.frame)
            .copied()
            .ok_or_else(|| CommandError::Message("harness kd: the stack has no frames".into()))?;
        let mut name = self
            .names
            .name_of(frame.ip)
            .unwrap_or_else(|| format!("0x{}", self.address(frame.ip)));
        if let Some(rva) = self.names.driver_rva(frame.ip)
            && let Some(pdb) = self.names.pdb()
        {
            let probe = if self.frame == 0 {
                rva
            } else {
                rva.saturating_sub(1)
            };
            if let Some(line) = pdb.line_at(probe) {
                let _ = write!(name, " [{} @ {}]", line.file, line.line);
            }
        }
        let mut out = format!(
            "{:02x} {} {} {name}\n",
            self.frame,
            self.address(frame.child),
            self.address(frame.return_address)
        );
        if show_registers {
            out.push_str(&self.frame_register_block(&frame));
        }
        Ok(out)
    }

    /// `.frame /r`: the frame's registers (x64: the nonvolatile ones as the
    /// unwind data recovers them, the instruction and stack pointers of
    /// the frame).
    fn frame_register_block(&self, frame: &stack::Frame) -> String {
        if self.frame == 0 {
            return self.register_block();
        }
        let Some(registers) = frame.registers else {
            return "harness kd: .frame /r above frame 0 shows registers on x64 only (x86 frames keep no unwind data here)\n".to_owned();
        };
        let lookup = |name: &str| -> Option<u64> {
            match name {
                "rip" => Some(frame.ip),
                _ => X64_REGISTERS
                    .iter()
                    .position(|known| *known == name)
                    .filter(|slot| stack::is_nonvolatile(*slot))
                    .map(|slot| registers[slot])
                    .or_else(|| {
                        matches!(name, "cs" | "ss" | "ds" | "es" | "fs" | "gs")
                            .then(|| self.target.register(name))
                            .flatten()
                    }),
            }
        };
        let efl = self.target.register("efl").unwrap_or(0);
        let mut out = format::registers(self.pointer_size(), &lookup, efl);
        out.push_str(
            "harness kd: volatile registers (rax rcx rdx r8-r11) are not recovered above frame 0; shown as 0\n",
        );
        out
    }

    /// `dv [/t] [/v] [name]`: the current frame's parameters and locals.
    pub(super) fn display_locals(&self, args: &str) -> Reply {
        let mut typed = false;
        let mut addresses = false;
        let mut wanted = None;
        for word in args.split_whitespace() {
            match word {
                "/t" => typed = true,
                "/v" | "/i" | "/V" => addresses = true,
                other if other.starts_with('/') => {
                    return Err(CommandError::Message(format!(
                        "harness kd: dv option {other} is not supported (/t and /v are)"
                    )));
                }
                other => wanted = Some(other),
            }
        }
        let frames = self.frames();
        let frame = frames
            .get(self.frame)
            .copied()
            .ok_or_else(|| CommandError::Message("harness kd: the stack has no frames".into()))?;
        let probe = |rva: u32| {
            if self.frame == 0 {
                rva
            } else {
                rva.saturating_sub(1)
            }
        };
        let (Some(rva), Some(pdb)) = (self.names.driver_rva(frame.ip), self.names.pdb()) else {
            return Err(CommandError::Message(
                "Unable to enumerate locals, Win32 error 0n87\nPrivate symbols (symbols.pri) are required for locals.\nType \".hh dbgerr005\" for details."
                    .into(),
            ));
        };
        let Some(procedure) = pdb.procedure_at(probe(rva)) else {
            return Err(CommandError::Message(
                "Unable to enumerate locals, Win32 error 0n87".into(),
            ));
        };
        let mut out = String::new();
        for local in &procedure.locals {
            if wanted.is_some_and(|name| name != local.name) {
                continue;
            }
            let line = self.local_line(
                &pdb.types,
                procedure,
                local,
                &frame,
                probe(rva),
                typed,
                addresses,
            );
            out.push_str(&line);
            out.push('\n');
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn local_line(
        &self,
        table: &TypeTable,
        procedure: &Procedure,
        local: &Local,
        frame: &stack::Frame,
        rva: u32,
        typed: bool,
        addresses: bool,
    ) -> String {
        let width = self.address(0).len();
        let type_name = local
            .ty
            .map_or_else(|| "<unknown type>".to_owned(), |ty| c_type_name(table, ty));
        let (place, value) = match self.local_place(procedure, local, frame, rva) {
            Some(Place::Memory(address)) => {
                let value = local.ty.map_or_else(
                    || "<unknown type>".to_owned(),
                    |ty| self.value_text(table, ty, address),
                );
                (self.address(address), value)
            }
            Some(Place::Register(name, value)) => {
                let value = match (value, local.ty) {
                    (Some(value), Some(ty)) => self.register_value_text(table, ty, value),
                    _ => "<value unavailable>".to_owned(),
                };
                (format!("@{name}"), value)
            }
            None => (String::new(), "<value unavailable>".to_owned()),
        };
        let mut line = String::new();
        if addresses {
            let _ = write!(line, "{place:<width$}          ");
        }
        if typed {
            let _ = write!(line, "{type_name} ");
        }
        let _ = write!(line, "{} = {value}", local.name);
        line
    }

    fn local_place(
        &self,
        procedure: &Procedure,
        local: &Local,
        frame: &stack::Frame,
        rva: u32,
    ) -> Option<Place> {
        if local.optimized_away {
            return None;
        }
        let location = local.location_at(rva)?;
        let base_of = |register: harness_core::pdb::Register| -> Option<u64> {
            let name = register.name()?;
            match name {
                // x86's virtual frame: the stack pointer before the call
                // pushed the return address (EBP + 8 in an EBP frame).
                "vframe" => Some(frame.child + 8),
                "ebp" | "rbp" if self.frame != 0 || self.arch() == Arch::X86 => Some(frame.child),
                "esp" | "rsp" if self.frame != 0 => Some(frame.child),
                _ => self.frame_register(frame, name),
            }
        };
        match location.storage {
            Storage::FrameRelative(offset) => {
                let register = procedure.frame.and_then(|frame| {
                    if local.is_parameter {
                        frame.parameters
                    } else {
                        frame.locals
                    }
                })?;
                let base = base_of(register)?;
                Some(Place::Memory(base.wrapping_add_signed(i64::from(offset))))
            }
            Storage::RegisterRelative(register, offset) => {
                let base = base_of(register)?;
                Some(Place::Memory(base.wrapping_add_signed(i64::from(offset))))
            }
            Storage::Register(register) | Storage::SubfieldRegister { register, .. } => {
                let name = register.name()?;
                Some(Place::Register(name, self.frame_register(frame, name)))
            }
        }
    }

    /// A register's value in the selected frame: the current one in frame
    /// 0; above it (x64) the nonvolatile registers the unwind data of the
    /// frames in between restored, as kd recovers them; else unknown.
    fn frame_register(&self, frame: &stack::Frame, name: &str) -> Option<u64> {
        if self.frame == 0 {
            return self.target.register(name);
        }
        let registers = frame.registers?;
        // `esi` is the low half of `rsi`.
        let (full, mask) = match name.strip_prefix('e') {
            Some(rest) if X64_REGISTERS.contains(&format!("r{rest}").as_str()) => {
                (format!("r{rest}"), 0xffff_ffff)
            }
            _ => (name.to_owned(), u64::MAX),
        };
        let slot = X64_REGISTERS.iter().position(|known| *known == full)?;
        stack::is_nonvolatile(slot).then(|| registers[slot] & mask)
    }

    /// A value as `dv` shows it: pointers as `0x...` with kd's note for
    /// strings and driver objects, records by their type name, integers in
    /// `dt`'s style.
    pub(super) fn value_text(&self, table: &TypeTable, ty: TypeId, address: u64) -> String {
        let size = usize::try_from(table.sizeof(ty)).unwrap_or(0);
        match table.get(ty) {
            Some(Type::Record(record)) => c_record_name(record.kind, &record.name),
            Some(Type::Pointer { .. } | Type::Primitive(_) | Type::Enum(_))
                if (1..=8).contains(&size) =>
            {
                self.target.read_uint(address, size).map_or_else(
                    || "<Memory access error>".to_owned(),
                    |value| self.register_value_text(table, ty, value),
                )
            }
            _ => c_type_name(table, ty),
        }
    }

    /// A scalar's text: `0x86a55b90 Driver "\Driver\Sample"`, `0x84f27000
    /// "\REGISTRY\..."`, `0n5`, `0x1`.
    fn register_value_text(&self, table: &TypeTable, ty: TypeId, value: u64) -> String {
        match table.get(ty) {
            Some(Type::Pointer { pointee, .. }) => {
                let mut text = format!("0x{}", self.address(value));
                if value == 0 {
                    return "0x00000000"
                        .chars()
                        .take(2 + self.address(0).len())
                        .collect();
                }
                let pointee_name = table.record(*pointee).map(|record| record.name.clone());
                match pointee_name
                    .as_deref()
                    .map(harness_core::types::last_segment)
                {
                    Some("_UNICODE_STRING" | "UNICODE_STRING") => {
                        if let Some(string) = self.unicode_string(value) {
                            let _ = write!(text, " \"{string}\"");
                        }
                    }
                    Some("_DRIVER_OBJECT" | "DRIVER_OBJECT") => {
                        let name_at = value + self.driver_name_offset();
                        if let Some(string) = self.unicode_string(name_at) {
                            let _ = write!(text, " Driver \"{string}\"");
                        }
                    }
                    _ => {}
                }
                text
            }
            Some(Type::Primitive(primitive)) => {
                use harness_core::types::PrimitiveClass;
                let bits = u32::from(primitive.size) * 8;
                let masked = if bits >= 64 {
                    value
                } else {
                    value & ((1 << bits) - 1)
                };
                match primitive.class {
                    PrimitiveClass::Signed => {
                        let shift = 64 - bits.max(1);
                        format!("0n{}", (masked << shift).cast_signed() >> shift)
                    }
                    PrimitiveClass::Bool => (if masked == 0 { "false" } else { "true" }).into(),
                    _ => format!("0x{masked:x}"),
                }
            }
            _ => format!("0x{value:x}"),
        }
    }

    /// The text of the `UNICODE_STRING` at `address`.
    pub(super) fn unicode_string(&self, address: u64) -> Option<String> {
        let length = self.target.read_uint(address, 2)?;
        let buffer_at = address + if self.arch() == Arch::X64 { 8 } else { 4 };
        let buffer = self.target.read_pointer(buffer_at)?;
        let bytes = self
            .target
            .read(buffer, usize::try_from(length.min(0x1000)).ok()?)?;
        Some(harness_ntemu::cpu::utf16_text(&bytes))
    }

    /// `DRIVER_OBJECT.DriverName`'s offset.
    const fn driver_name_offset(&self) -> u64 {
        harness_core::wdm::DriverObject::for_arch(self.arch()).driver_name
    }

    /// `.thread` (no argument): the implicit thread.
    pub(super) fn thread(&self, args: &str) -> Reply {
        if !args.is_empty() {
            return Err(CommandError::Message(
                "harness kd: the emulated machine has two threads and .thread only shows the current one".into(),
            ));
        }
        Ok(format!(
            "Implicit thread is now {}\n",
            self.address(self.target.current_thread())
        ))
    }

    /// `.cxr` (no argument): back to the machine's own context.
    pub(super) fn context_record(&mut self, args: &str) -> Reply {
        if !args.is_empty() {
            return Err(CommandError::Message(
                "harness kd: .cxr with a context record is not supported; .cxr alone resets the scope".into(),
            ));
        }
        self.frame = 0;
        Ok(String::new())
    }

    /// `r`, `r @reg`, `r reg=value`, `r $t0=value`.
    pub(super) fn registers(&mut self, args: &str) -> Reply {
        if args.is_empty() {
            return Ok(self.register_block());
        }
        let mut out = String::new();
        for part in args
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
        {
            if let Some((name, value)) = part.split_once('=') {
                let name = name.trim().trim_start_matches('@').to_ascii_lowercase();
                let value = expr::evaluate(value.trim(), self)?;
                if let Some(slot) = name
                    .strip_prefix("$t")
                    .and_then(|n| n.parse::<usize>().ok())
                    .and_then(|index| self.temporaries.get_mut(index))
                {
                    *slot = value;
                    continue;
                }
                if !self.target.set_register(&name, value) {
                    return Err(expr::ExprError::BadRegister(format!("@{name}")).into());
                }
                continue;
            }
            let name = part.trim_start_matches('@').to_ascii_lowercase();
            let value = expr::Context::register(self, &name)
                .ok_or_else(|| expr::ExprError::BadRegister(format!("@{name}")))?;
            let _ = writeln!(
                out,
                "{}",
                format::register(&name, value, self.pointer_size())
            );
        }
        Ok(out)
    }

    /// `r` without arguments.
    pub(super) fn register_block(&self) -> String {
        let lookup = |name: &str| self.target.register(name);
        let efl = self.target.register("efl").unwrap_or(0);
        format::registers(self.pointer_size(), &lookup, efl)
    }
}

/// x64 registers in CodeView order, as the stack walk keeps them.
const X64_REGISTERS: [&str; 16] = [
    "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15",
];

/// Where a local lives.
enum Place {
    /// At an address.
    Memory(u64),
    /// In a register (its value, when the frame is the current one).
    Register(&'static str, Option<u64>),
}

/// A type's C spelling, as `dv /t` prints it: `struct _DRIVER_OBJECT *`,
/// `unsigned long`, `wchar_t [256]`.
#[must_use]
pub fn c_type_name(table: &TypeTable, ty: TypeId) -> String {
    c_type_name_at(table, ty, 0)
}

fn c_type_name_at(table: &TypeTable, ty: TypeId, depth: usize) -> String {
    if depth > 16 {
        return "<too deep>".into();
    }
    match table.get(ty) {
        Some(Type::Primitive(primitive)) => primitive.c_name.to_owned(),
        Some(Type::Pointer { pointee, .. }) => {
            format!("{} *", c_type_name_at(table, *pointee, depth + 1))
        }
        Some(Type::Array { element, count, .. }) => {
            format!("{} [{count}]", c_type_name_at(table, *element, depth + 1))
        }
        Some(Type::Record(record)) => c_record_name(record.kind, &record.name),
        Some(Type::Enum(en)) => format!("enum {}", en.name),
        Some(Type::Function(_)) => "<function>".into(),
        None => "<unknown type>".into(),
    }
}

fn c_record_name(kind: RecordKind, name: &str) -> String {
    let keyword = match kind {
        RecordKind::Struct => "struct",
        RecordKind::Class => "class",
        RecordKind::Union => "union",
    };
    format!("{keyword} {name}")
}
