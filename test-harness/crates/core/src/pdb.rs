//! The driver's PDB as the debugger needs it: procedures with their locals
//! and where those live, source lines, global data and types, all by RVA.
//!
//! Everything is read here from the raw streams (`msf`, `codeview`,
//! `tpi`), every offset checked, rather than through the `pdb` crate,
//! which slices unchecked and panics on some corrupt files: a corrupt PDB
//! is an error, never a panic.

mod codeview;
mod msf;
mod registers;
mod tpi;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

pub use registers::Register;

use crate::arch::Arch;
use crate::error::InputError;
use crate::pe::PeImage;
use crate::types::{TypeId, TypeTable, last_segment};
use codeview::{DefRange, DefRangeKind, SectionOffset};

/// The largest PDB the debugger reads: far beyond a driver's.
pub(crate) const MAX_PDB_FILE: u64 = 256 << 20;

/// Why a PDB cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PdbError {
    /// The file could not be read.
    #[error(transparent)]
    Input(#[from] InputError),
    /// Not an MSF 7.00 (PDB) file at all.
    #[error("not a PDB (no MSF 7.00 signature)")]
    NotPdb,
    /// A record the debugger reads itself is malformed.
    #[error("corrupt PDB: {what} is {why}")]
    Corrupt {
        /// Which record or stream.
        what: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The image names no PDB, so nothing proves this one belongs to it.
    #[error("the image has no CodeView record naming its PDB")]
    NoCodeViewRecord,
    /// The PDB was written for another build of the image.
    #[error(
        "the PDB belongs to a different build of the image (PDB GUID {found}, image {expected})"
    )]
    Mismatch {
        /// The image's CodeView GUID.
        expected: String,
        /// The PDB's GUID.
        found: String,
    },
    /// An image for a machine the debugger does not know.
    #[error("unsupported machine 0x{0:04x}")]
    UnsupportedMachine(u16),
}

/// A code range and the places in it where a location does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressRange {
    /// First byte (RVA).
    pub start: u32,
    /// Bytes covered, gaps included.
    pub length: u32,
    /// Excluded `(start RVA, length)` ranges inside it.
    pub gaps: Vec<(u32, u32)>,
}

impl AddressRange {
    /// Whether `rva` is in the range and not in a gap.
    #[must_use]
    pub fn contains(&self, rva: u32) -> bool {
        let inside = |start: u32, length: u32| {
            rva >= start && u64::from(rva) < u64::from(start) + u64::from(length)
        };
        inside(self.start, self.length)
            && !self
                .gaps
                .iter()
                .any(|(start, length)| inside(*start, *length))
    }
}

/// Where a local's value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// In a register.
    Register(Register),
    /// At the procedure's frame register plus an offset: [`Frame`]'s
    /// `parameters` register for a parameter, `locals` for a local (on x64
    /// RSP after the prologue; `S_BPREL32` is always EBP-relative).
    FrameRelative(i32),
    /// At a register's value plus an offset.
    RegisterRelative(Register, i32),
    /// The part of the variable at `offset_in_parent` is in a register.
    SubfieldRegister {
        /// The register.
        register: Register,
        /// Offset of that part in the variable.
        offset_in_parent: u32,
    },
}

/// One location of a local, and where in the code it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The storage.
    pub storage: Storage,
    /// The code it holds for; `None` for the whole procedure.
    pub range: Option<AddressRange>,
}

/// A local variable or parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    /// Name.
    pub name: String,
    /// Type in [`DriverSymbols::types`].
    pub ty: Option<TypeId>,
    /// A parameter rather than a local.
    pub is_parameter: bool,
    /// The compiler kept no location for it.
    pub optimized_away: bool,
    /// Its locations, in PDB order.
    pub locations: Vec<Location>,
}

impl Local {
    /// The location that holds at `rva`, if any.
    #[must_use]
    pub fn location_at(&self, rva: u32) -> Option<&Location> {
        self.locations.iter().find(|location| {
            location
                .range
                .as_ref()
                .is_none_or(|range| range.contains(rva))
        })
    }
}

/// The registers `S_FRAMEPROC` names as bases of frame-relative storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Bytes of locals.
    pub size: u32,
    /// Base of frame-relative locals.
    pub locals: Option<Register>,
    /// Base of frame-relative parameters.
    pub parameters: Option<Register>,
}

/// A procedure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Procedure {
    /// The name kd shows: the public (linker) name starting at the same
    /// RVA, undecorated (`DriverEntry`), else the full name.
    pub name: String,
    /// The full name from the debug info (`Sample::sample::driver_entry`).
    pub full_name: String,
    /// First byte.
    pub rva: u32,
    /// Bytes of code.
    pub length: u32,
    /// Function type in [`DriverSymbols::types`].
    pub ty: Option<TypeId>,
    /// Frame registers, from `S_FRAMEPROC`.
    pub frame: Option<Frame>,
    /// Parameters and locals of the procedure and its blocks (not those of
    /// functions inlined into it), in PDB order.
    pub locals: Vec<Local>,
}

impl Procedure {
    /// Whether `rva` is inside the procedure.
    #[must_use]
    pub fn contains(&self, rva: u32) -> bool {
        rva >= self.rva && u64::from(rva) < u64::from(self.rva) + u64::from(self.length)
    }
}

/// A source position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLine {
    /// The file, as the PDB names it.
    pub file: String,
    /// Line number.
    pub line: u32,
}

/// A global variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Global {
    /// The public name (`g_RegistryPath`, undecorated), else the full name.
    pub name: String,
    /// The full name from the debug info (`Sample::sample::g_RegistryPath`),
    /// when there is a data symbol.
    pub full_name: Option<String>,
    /// Where it is.
    pub rva: u32,
    /// Its type, when there is a data symbol.
    pub ty: Option<TypeId>,
}

#[derive(Debug, Clone)]
struct LineEntry {
    rva: u32,
    file: usize,
    line: u32,
}

/// A driver's symbols, from a PDB that belongs to its image.
#[derive(Debug)]
pub struct DriverSymbols {
    /// The image's architecture.
    pub arch: Arch,
    /// The PDB's types.
    pub types: TypeTable,
    procedures: Vec<Procedure>,
    globals: Vec<Global>,
    files: Vec<String>,
    lines: Vec<LineEntry>,
}

/// Either scope kind a local can be declared in, or any other scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Procedure,
    Inline,
    Other,
}

impl DriverSymbols {
    /// Reads `pdb`, which must be the PDB `image`'s CodeView record names
    /// (same GUID).
    ///
    /// # Errors
    /// The file is unreadable, not a PDB, corrupt, or for another build.
    pub fn load(pdb: &Path, image: &PeImage) -> Result<Self, PdbError> {
        let bytes = crate::input::read_file(pdb, MAX_PDB_FILE)?;
        Self::parse(&bytes, image)
    }

    /// [`DriverSymbols::load`] from the PDB's bytes.
    ///
    /// # Errors
    /// Not a PDB, corrupt, or for another build of `image`.
    pub fn parse(bytes: &[u8], image: &PeImage) -> Result<Self, PdbError> {
        let arch = image
            .arch
            .ok_or(PdbError::UnsupportedMachine(image.machine))?;
        let (expected, _, _) = image.pdb.as_ref().ok_or(PdbError::NoCodeViewRecord)?;
        let msf = msf::Msf::parse(bytes)?;
        let info = msf::PdbInfo::parse(&msf.required(1, "the PDB info stream")?)?;
        if &info.guid != expected {
            return Err(PdbError::Mismatch {
                expected: hex(expected),
                found: hex(&info.guid),
            });
        }
        let dbi = msf::Dbi::parse(&msf.required(3, "the DBI stream")?)?;
        let mut loader = Loader {
            arch,
            types: tpi::Types::parse(&msf.required(2, "the TPI stream")?)?,
            sections: msf::SectionMap::read(&msf, &dbi)?,
            names: match info.named.get("/names") {
                Some(index) => msf::Names::parse(&msf.required(*index, "the /names stream")?)?,
                None => msf::Names::default(),
            },
            public_functions: HashMap::new(),
            public_data: HashMap::new(),
            data: Vec::new(),
            procedures: Vec::new(),
            files: Vec::new(),
            file_ids: HashMap::new(),
            lines: Vec::new(),
        };
        loader.read_publics_and_globals(
            &msf.required(dbi.symbol_records, "the symbol record stream")?,
        )?;
        for module in &dbi.modules {
            if let Some(stream) = msf.stream(module.stream)? {
                loader.read_module(module, &stream)?;
            }
        }
        Ok(loader.finish())
    }

    /// Every procedure, by RVA.
    #[must_use]
    pub fn procedures(&self) -> &[Procedure] {
        &self.procedures
    }

    /// The procedure whose code contains `rva`.
    #[must_use]
    pub fn procedure_at(&self, rva: u32) -> Option<&Procedure> {
        self.procedures
            .iter()
            .filter(|procedure| procedure.contains(rva))
            .max_by_key(|procedure| procedure.rva)
    }

    /// A procedure by the name kd shows (`DriverEntry`), its full name
    /// (`Sample::sample::driver_entry`) or the full name's last segment
    /// (`sample_unload`).
    #[must_use]
    pub fn procedure_by_name(&self, name: &str) -> Option<&Procedure> {
        self.procedures
            .iter()
            .find(|procedure| procedure.name == name || procedure.full_name == name)
            .or_else(|| {
                self.procedures
                    .iter()
                    .find(|procedure| last_segment(&procedure.full_name) == name)
            })
    }

    /// Every global, by RVA.
    #[must_use]
    pub fn globals(&self) -> &[Global] {
        &self.globals
    }

    /// A global by its public name (`g_RegistryPath`; x86's decorated
    /// `_g_RegistryPath` too), its full name, or the full name's last
    /// segment.
    #[must_use]
    pub fn global(&self, name: &str) -> Option<&Global> {
        let undecorated = undecorate(name, self.arch);
        self.globals
            .iter()
            .find(|global| {
                global.name == name
                    || global.name == undecorated
                    || global.full_name.as_deref() == Some(name)
            })
            .or_else(|| {
                self.globals.iter().find(|global| {
                    global
                        .full_name
                        .as_deref()
                        .is_some_and(|full| last_segment(full) == name)
                })
            })
    }

    /// The source line of the code at `rva`: the closest line-table entry
    /// at or before it within its procedure.
    #[must_use]
    pub fn line_at(&self, rva: u32) -> Option<SourceLine> {
        let procedure = self.procedure_at(rva)?;
        let after = self.lines.partition_point(|entry| entry.rva <= rva);
        let entry = self.lines.get(after.checked_sub(1)?)?;
        (entry.rva >= procedure.rva).then(|| self.source_line(entry))
    }

    #[cfg(test)]
    /// The line-table entries inside `procedure`: `(RVA, line)` by RVA.
    #[must_use]
    pub(crate) fn lines_of(&self, procedure: &Procedure) -> Vec<(u32, SourceLine)> {
        self.lines
            .iter()
            .filter(|entry| procedure.contains(entry.rva))
            .map(|entry| (entry.rva, self.source_line(entry)))
            .collect()
    }

    fn source_line(&self, entry: &LineEntry) -> SourceLine {
        SourceLine {
            file: self.files.get(entry.file).cloned().unwrap_or_default(),
            line: entry.line,
        }
    }
}

/// What [`DriverSymbols::parse`] gathers before sorting it out.
struct Loader {
    arch: Arch,
    types: tpi::Types,
    sections: msf::SectionMap,
    names: msf::Names,
    public_functions: HashMap<u32, String>,
    public_data: HashMap<u32, String>,
    data: Vec<codeview::DataRecord>,
    procedures: Vec<Procedure>,
    files: Vec<String>,
    file_ids: HashMap<u32, usize>,
    lines: Vec<LineEntry>,
}

impl Loader {
    /// The symbol record stream: publics (`S_PUB32`) and global data.
    fn read_publics_and_globals(&mut self, stream: &[u8]) -> Result<(), PdbError> {
        for raw in msf::records(stream, "the symbol record stream")? {
            let (kind, body) = split(raw);
            match kind {
                codeview::S_PUB32 => {
                    let public =
                        codeview::public_record(body).ok_or_else(|| corrupt_symbol("S_PUB32"))?;
                    if let Some(rva) = self.sections.rva(public.at.section, public.at.offset) {
                        let name = undecorate(&public.name, self.arch);
                        let map = if public.function {
                            &mut self.public_functions
                        } else {
                            &mut self.public_data
                        };
                        map.entry(rva).or_insert(name);
                    }
                }
                codeview::S_GDATA32 | codeview::S_LDATA32 => {
                    self.data.push(
                        codeview::data_record(body).ok_or_else(|| corrupt_symbol("S_GDATA32"))?,
                    );
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A module stream: its symbols, then its C13 line data.
    fn read_module(&mut self, module: &msf::Module, stream: &[u8]) -> Result<(), PdbError> {
        let bad = |why| PdbError::Corrupt {
            what: format!("module stream {}", module.stream),
            why,
        };
        let symbols = stream
            .get(..module.symbol_bytes)
            .ok_or_else(|| bad("shorter than its symbols"))?;
        // CV_SIGNATURE_C13.
        if symbols
            .get(..4)
            .is_some_and(|signature| signature != [4, 0, 0, 0])
        {
            return Err(bad("not in the C13 format"));
        }
        let sections = &self.sections;
        let to_rva = |at: SectionOffset| sections.rva(at.section, at.offset);
        let mut reader = ModuleReader {
            arch: self.arch,
            types: &mut self.types,
            procedures: &mut self.procedures,
            data: &mut self.data,
            to_rva: &to_rva,
            scopes: Vec::new(),
            current: None,
            last_local: None,
            classic: 0,
            classic_parameters: None,
        };
        for raw in msf::records(symbols.get(4..).unwrap_or_default(), "a module stream")? {
            reader.symbol(raw)?;
        }
        let c13_start = module
            .symbol_bytes
            .checked_add(module.c11_bytes)
            .ok_or_else(|| bad("too large"))?;
        let c13 = c13_start
            .checked_add(module.c13_bytes)
            .and_then(|end| stream.get(c13_start..end))
            .ok_or_else(|| bad("shorter than its line data"))?;
        for entry in msf::c13_lines(c13)? {
            // 0xfeefee and up mark hidden (compiler-generated) lines.
            if entry.line == 0 || entry.line >= 0x00f0_0000 {
                continue;
            }
            let Some(rva) = self.sections.rva(entry.section, entry.offset) else {
                continue;
            };
            let file = if let Some(file) = self.file_ids.get(&entry.file_name) {
                *file
            } else {
                let next = self.files.len();
                self.files
                    .push(self.names.get(entry.file_name).unwrap_or_default());
                self.file_ids.insert(entry.file_name, next);
                next
            };
            self.lines.push(LineEntry {
                rva,
                file,
                line: entry.line,
            });
        }
        Ok(())
    }

    /// Names procedures by their publics, and globals by theirs.
    fn finish(mut self) -> DriverSymbols {
        self.lines.sort_by_key(|entry| entry.rva);
        for procedure in &mut self.procedures {
            if let Some(name) = self.public_functions.get(&procedure.rva) {
                procedure.name.clone_from(name);
            }
        }
        self.procedures.sort_by_key(|procedure| procedure.rva);

        let mut globals: Vec<Global> = Vec::new();
        for record in std::mem::take(&mut self.data) {
            let Some(rva) = self.sections.rva(record.at.section, record.at.offset) else {
                continue;
            };
            if globals
                .iter()
                .any(|known| known.rva == rva && known.full_name.as_deref() == Some(&record.name))
            {
                continue;
            }
            globals.push(Global {
                name: self
                    .public_data
                    .get(&rva)
                    .cloned()
                    .unwrap_or_else(|| record.name.clone()),
                full_name: Some(record.name),
                rva,
                ty: self.types.resolve(record.type_index),
            });
        }
        for (rva, name) in self.public_data {
            if !globals.iter().any(|known| known.rva == rva) {
                globals.push(Global {
                    name,
                    full_name: None,
                    rva,
                    ty: None,
                });
            }
        }
        globals.sort_by(|a, b| a.rva.cmp(&b.rva).then_with(|| a.name.cmp(&b.name)));
        DriverSymbols {
            arch: self.arch,
            types: self.types.table,
            procedures: self.procedures,
            globals,
            files: self.files,
            lines: self.lines,
        }
    }
}

/// Reads one module's symbol stream into procedures.
struct ModuleReader<'a, F: Fn(SectionOffset) -> Option<u32>> {
    arch: Arch,
    types: &'a mut tpi::Types,
    procedures: &'a mut Vec<Procedure>,
    data: &'a mut Vec<codeview::DataRecord>,
    to_rva: &'a F,
    scopes: Vec<Scope>,
    /// The procedure being read (index in `procedures`).
    current: Option<usize>,
    /// The `S_LOCAL` the next `S_DEFRANGE_*` records belong to.
    last_local: Option<usize>,
    /// `S_REGREL32` / `S_BPREL32` records seen in the current procedure.
    classic: u16,
    /// Parameters the current procedure's type declares.
    classic_parameters: Option<u16>,
}

impl<F: Fn(SectionOffset) -> Option<u32>> ModuleReader<'_, F> {
    fn symbol(&mut self, raw: &[u8]) -> Result<(), PdbError> {
        let (kind, body) = split(raw);
        let (starts, ends) = codeview::scope_effect(kind);
        let in_scope = self.current.is_some() && !self.scopes.contains(&Scope::Inline);
        let is_defrange =
            (codeview::S_DEFRANGE_REGISTER..=codeview::S_DEFRANGE_REGISTER_REL).contains(&kind);
        if !is_defrange {
            self.last_local = None;
        }
        match kind {
            codeview::S_GPROC32
            | codeview::S_LPROC32
            | codeview::S_GPROC32_ID
            | codeview::S_LPROC32_ID => return self.procedure(kind, body),
            codeview::S_INLINESITE | codeview::S_INLINESITE2 => {
                self.scopes.push(Scope::Inline);
                return Ok(());
            }
            codeview::S_FRAMEPROC if self.scopes.last() == Some(&Scope::Procedure) => {
                let record = codeview::frameproc_record(body)
                    .ok_or_else(|| corrupt_symbol("S_FRAMEPROC"))?;
                let frame = Frame {
                    size: record.frame_size,
                    locals: Register::from_frame_encoding(record.local_base, self.arch),
                    parameters: Register::from_frame_encoding(record.param_base, self.arch),
                };
                if let Some(procedure) = self.current_procedure() {
                    procedure.frame = Some(frame);
                }
            }
            codeview::S_LOCAL if in_scope => self.local(body)?,
            _ if is_defrange => {
                let range = codeview::defrange_record(kind, body)
                    .ok_or_else(|| corrupt_symbol("S_DEFRANGE"))?;
                let location = self.location(&range);
                if let (Some(local), Some(location)) = (self.last_local, location)
                    && let Some(procedure) = self.current_procedure()
                    && let Some(local) = procedure.locals.get_mut(local)
                {
                    local.locations.push(location);
                }
            }
            codeview::S_REGREL32 | codeview::S_BPREL32 if in_scope => {
                self.classic_local(kind, body)?;
            }
            codeview::S_GDATA32 | codeview::S_LDATA32 if self.current.is_none() => {
                self.data
                    .push(codeview::data_record(body).ok_or_else(|| corrupt_symbol("S_LDATA32"))?);
            }
            _ => {}
        }
        if starts {
            self.scopes.push(Scope::Other);
        } else if ends && self.scopes.pop() == Some(Scope::Procedure) {
            self.current = None;
        }
        Ok(())
    }

    /// `S_GPROC32` and its kin: a new procedure (and scope).
    fn procedure(&mut self, kind: u16, body: &[u8]) -> Result<(), PdbError> {
        let record = codeview::proc_record(body).ok_or_else(|| corrupt_symbol("S_GPROC32"))?;
        self.scopes.push(Scope::Procedure);
        self.current = None;
        self.classic = 0;
        self.classic_parameters = None;
        let Some(rva) = (self.to_rva)(record.start) else {
            return Ok(());
        };
        // The `_ID` forms carry an id-stream index, not a type.
        let typed = matches!(kind, codeview::S_GPROC32 | codeview::S_LPROC32);
        let ty = if typed {
            self.classic_parameters = self.types.parameter_count(record.type_index);
            self.types.resolve(record.type_index)
        } else {
            None
        };
        self.procedures.push(Procedure {
            name: record.name.clone(),
            full_name: record.name,
            rva,
            length: record.length,
            ty,
            frame: None,
            locals: Vec::new(),
        });
        self.current = Some(self.procedures.len() - 1);
        Ok(())
    }

    /// `S_LOCAL`: its locations follow in `S_DEFRANGE_*` records.
    fn local(&mut self, body: &[u8]) -> Result<(), PdbError> {
        let record = codeview::local_record(body).ok_or_else(|| corrupt_symbol("S_LOCAL"))?;
        let ty = self.types.resolve(record.type_index);
        if let Some(procedure) = self.current_procedure() {
            procedure.locals.push(Local {
                name: record.name,
                ty,
                is_parameter: record.is_parameter,
                optimized_away: record.optimized_away,
                locations: Vec::new(),
            });
            self.last_local = Some(procedure.locals.len() - 1);
        }
        Ok(())
    }

    /// `S_REGREL32` / `S_BPREL32`: a classic MSVC local at a fixed place.
    fn classic_local(&mut self, kind: u16, body: &[u8]) -> Result<(), PdbError> {
        let record = codeview::relative_record(body, kind == codeview::S_REGREL32)
            .ok_or_else(|| corrupt_symbol("S_REGREL32"))?;
        let ty = self.types.resolve(record.type_index);
        let storage = match record.register {
            Some(register) => Storage::RegisterRelative(Register(register), record.offset),
            None => Storage::FrameRelative(record.offset),
        };
        // No flag says "parameter" in these records: MSVC lists a
        // procedure's parameters first, so the first (parameter count) of
        // them are parameters; without a procedure type, a positive offset
        // from the frame (above the return address) marks one.
        let is_parameter = match self.classic_parameters {
            Some(count) => self.classic < count && self.scopes.len() == 1,
            None => {
                record.offset > 0
                    && matches!(
                        storage,
                        Storage::FrameRelative(_)
                            | Storage::RegisterRelative(Register(22 | 334), _)
                    )
            }
        };
        self.classic = self.classic.saturating_add(1);
        if let Some(procedure) = self.current_procedure() {
            procedure.locals.push(Local {
                name: record.name,
                ty,
                is_parameter,
                optimized_away: false,
                locations: vec![Location {
                    storage,
                    range: None,
                }],
            });
        }
        Ok(())
    }

    fn current_procedure(&mut self) -> Option<&mut Procedure> {
        self.procedures.get_mut(self.current?)
    }

    fn location(&self, range: &DefRange) -> Option<Location> {
        let storage = match range.kind {
            DefRangeKind::Register(register) => Storage::Register(Register(register)),
            DefRangeKind::FrameRelative(offset) => Storage::FrameRelative(offset),
            DefRangeKind::RegisterRelative(register, offset) => {
                Storage::RegisterRelative(Register(register), offset)
            }
            DefRangeKind::SubfieldRegister {
                register,
                offset_in_parent,
            } => Storage::SubfieldRegister {
                register: Register(register),
                offset_in_parent,
            },
        };
        let range = match range.range {
            None => None,
            Some((start, length)) => {
                let start = (self.to_rva)(start)?;
                let gaps = range
                    .gaps
                    .iter()
                    .map(|(offset, gap)| {
                        (start.saturating_add(u32::from(*offset)), u32::from(*gap))
                    })
                    .collect();
                Some(AddressRange {
                    start,
                    length: u32::from(length),
                    gaps,
                })
            }
        };
        Some(Location { storage, range })
    }
}

fn corrupt_symbol(what: &'static str) -> PdbError {
    PdbError::Corrupt {
        what: format!("an {what} record"),
        why: "malformed",
    }
}

/// A symbol's kind and the bytes after it.
fn split(raw: &[u8]) -> (u16, &[u8]) {
    match raw {
        [low, high, body @ ..] => (u16::from_le_bytes([*low, *high]), body),
        _ => (0, &[]),
    }
}

/// The name kd shows for a public symbol: x86's C and stdcall decorations
/// removed (`_DriverEntry@8` -> `DriverEntry`, `_g_RegistryPath` ->
/// `g_RegistryPath`, fastcall `@f@4` -> `f`); x64 names are not decorated.
fn undecorate(name: &str, arch: Arch) -> String {
    if arch != Arch::X86 {
        return name.to_owned();
    }
    let bare = name
        .strip_prefix('_')
        .or_else(|| name.strip_prefix('@'))
        .unwrap_or(name);
    match bare.rsplit_once('@') {
        Some((stem, digits))
            if !stem.is_empty()
                && !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit()) =>
        {
            stem.to_owned()
        }
        _ => bare.to_owned(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut text, byte| {
        let _ = write!(text, "{byte:02x}");
        text
    })
}

#[cfg(test)]
pub(crate) mod tests;
