//! CodeView records read from their raw bytes. The `pdb` crate does not
//! parse the `S_DEFRANGE_*` family, `S_FRAMEPROC` or `S_BPREL32`, and its
//! type parser panics on some malformed records, so the records the
//! debugger relies on are read here, every read bounds-checked.
//!
//! Layouts: microsoft-pdb's cvinfo.h and LLVM's
//! `llvm/DebugInfo/CodeView/SymbolRecord.h` (`LocalVariableAddrRange`,
//! `DefRange*Header`, `FrameProcSym`).

/// `S_FRAMEPROC`: frame size and frame-pointer registers of a procedure.
pub const S_FRAMEPROC: u16 = 0x1012;
/// `S_BPREL32`: a local at a fixed offset from EBP (classic MSVC).
pub const S_BPREL32: u16 = 0x110b;
/// `S_LDATA32`: module-local data.
pub const S_LDATA32: u16 = 0x110c;
/// `S_GDATA32`: global data.
pub const S_GDATA32: u16 = 0x110d;
/// `S_PUB32`: a public (linker) symbol.
pub const S_PUB32: u16 = 0x110e;
/// `S_LPROC32`: a module-local procedure.
pub const S_LPROC32: u16 = 0x110f;
/// `S_GPROC32`: a global procedure.
pub const S_GPROC32: u16 = 0x1110;
/// `S_REGREL32`: a local at a fixed offset from a register (classic MSVC).
pub const S_REGREL32: u16 = 0x1111;
/// `S_LOCAL`: a local or parameter whose locations follow in `S_DEFRANGE_*`.
pub const S_LOCAL: u16 = 0x113e;
/// `S_DEFRANGE_REGISTER`.
pub const S_DEFRANGE_REGISTER: u16 = 0x1141;
/// `S_DEFRANGE_FRAMEPOINTER_REL`.
pub const S_DEFRANGE_FRAMEPOINTER_REL: u16 = 0x1142;
/// `S_DEFRANGE_SUBFIELD_REGISTER`.
pub const S_DEFRANGE_SUBFIELD_REGISTER: u16 = 0x1143;
/// `S_DEFRANGE_FRAMEPOINTER_REL_FULL_SCOPE`.
pub const S_DEFRANGE_FRAMEPOINTER_REL_FULL_SCOPE: u16 = 0x1144;
/// `S_DEFRANGE_REGISTER_REL`.
pub const S_DEFRANGE_REGISTER_REL: u16 = 0x1145;
/// `S_LPROC32_ID`: a module-local procedure whose type is an id record.
pub const S_LPROC32_ID: u16 = 0x1146;
/// `S_GPROC32_ID`.
pub const S_GPROC32_ID: u16 = 0x1147;
/// `S_INLINESITE`: code inlined from another function.
pub const S_INLINESITE: u16 = 0x114d;
/// `S_INLINESITE2`.
pub const S_INLINESITE2: u16 = 0x115d;

/// Whether a symbol kind opens a scope (closed by `S_END` and its kin) or
/// closes one: procedures, blocks, thunks, `with`, separated code and
/// inline sites open; `S_END`, `S_PROC_ID_END`, `S_INLINESITE_END` close.
#[must_use]
pub const fn scope_effect(kind: u16) -> (bool, bool) {
    match kind {
        S_LPROC32 | S_GPROC32 | S_LPROC32_ID | S_GPROC32_ID | S_INLINESITE | S_INLINESITE2
        | 0x1102 | 0x1103 | 0x1104 | 0x112a | 0x112b | 0x1132 | 0x1155 | 0x1156 => (true, false),
        0x0006 | 0x114e | 0x114f => (false, true),
        _ => (false, false),
    }
}

/// A bounds-checked little-endian reader over one record.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Reads `data` from the start.
    #[must_use]
    pub const fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    /// Bytes not read yet.
    #[must_use]
    pub const fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    /// The next `count` bytes.
    pub fn take(&mut self, count: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(count)?;
        let bytes = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(bytes)
    }

    /// Skips `count` bytes.
    pub fn skip(&mut self, count: usize) -> Option<()> {
        self.take(count).map(|_| ())
    }

    /// Skips up to `count` bytes (trailing padding may be cut short).
    pub(crate) fn skip_at_most(&mut self, count: usize) {
        self.pos = self.pos.saturating_add(count).min(self.data.len());
    }

    /// One byte.
    pub fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|bytes| bytes[0])
    }

    /// A little-endian `u16`.
    pub fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A little-endian `i32`.
    pub fn i32(&mut self) -> Option<i32> {
        self.u32().map(u32::cast_signed)
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self) -> Option<u64> {
        let low = self.u32()?;
        let high = self.u32()?;
        Some((u64::from(high) << 32) | u64::from(low))
    }

    /// A NUL-terminated name (lossy UTF-8); a name without its NUL runs to
    /// the end of the record, as LLVM's reader allows.
    pub fn name(&mut self) -> Option<String> {
        let rest = self.data.get(self.pos..)?;
        let length = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
        let text = String::from_utf8_lossy(&rest[..length]).into_owned();
        self.pos += (length + 1).min(rest.len());
        Some(text)
    }

    /// A CodeView numeric leaf (cvinfo.h `LF_NUMERIC` and up): the integer
    /// kinds. Other kinds (reals, strings) are not sizes or offsets.
    pub fn numeric(&mut self) -> Option<i128> {
        let leaf = self.u16()?;
        if leaf < 0x8000 {
            return Some(i128::from(leaf));
        }
        Some(match leaf {
            0x8000 => i128::from(self.u8()?.cast_signed()),
            0x8001 => i128::from(self.u16()?.cast_signed()),
            0x8002 => i128::from(self.u16()?),
            0x8003 => i128::from(self.i32()?),
            0x8004 => i128::from(self.u32()?),
            0x8009 => i128::from(self.u64()?.cast_signed()),
            0x800a => i128::from(self.u64()?),
            _ => return None,
        })
    }
}

/// A code address as a section and offset, before translation to an RVA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionOffset {
    /// Offset in the section.
    pub offset: u32,
    /// Section number, from 1.
    pub section: u16,
}

/// `S_GPROC32` / `S_LPROC32` and their `_ID` forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcRecord {
    /// Code bytes.
    pub length: u32,
    /// Type (or, for the `_ID` forms, id) index.
    pub type_index: u32,
    /// Where the code starts.
    pub start: SectionOffset,
    /// Full name.
    pub name: String,
}

/// Parses a procedure record (the bytes after its kind).
#[must_use]
pub fn proc_record(body: &[u8]) -> Option<ProcRecord> {
    let mut r = Reader::new(body);
    r.skip(12)?; // parent, end, next
    let length = r.u32()?;
    r.skip(8)?; // debug start, debug end
    let type_index = r.u32()?;
    let offset = r.u32()?;
    let section = r.u16()?;
    r.u8()?; // flags
    Some(ProcRecord {
        length,
        type_index,
        start: SectionOffset { offset, section },
        name: r.name()?,
    })
}

/// `S_GDATA32` / `S_LDATA32`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataRecord {
    /// Type index.
    pub type_index: u32,
    /// Where it is.
    pub at: SectionOffset,
    /// Full name.
    pub name: String,
}

/// Parses a data record.
#[must_use]
pub fn data_record(body: &[u8]) -> Option<DataRecord> {
    let mut r = Reader::new(body);
    let type_index = r.u32()?;
    let offset = r.u32()?;
    let section = r.u16()?;
    Some(DataRecord {
        type_index,
        at: SectionOffset { offset, section },
        name: r.name()?,
    })
}

/// `S_PUB32`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicRecord {
    /// `CVPSF_FUNCTION`: it names code.
    pub function: bool,
    /// Where it is.
    pub at: SectionOffset,
    /// Decorated name (`_DriverEntry@8`).
    pub name: String,
}

/// Parses a public record.
#[must_use]
pub fn public_record(body: &[u8]) -> Option<PublicRecord> {
    let mut r = Reader::new(body);
    let flags = r.u32()?;
    let offset = r.u32()?;
    let section = r.u16()?;
    Some(PublicRecord {
        function: flags & 2 != 0,
        at: SectionOffset { offset, section },
        name: r.name()?,
    })
}

/// `S_LOCAL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRecord {
    /// Type index.
    pub type_index: u32,
    /// `fIsParam`.
    pub is_parameter: bool,
    /// `fIsOptimizedOut`.
    pub optimized_away: bool,
    /// Name.
    pub name: String,
}

/// Parses an `S_LOCAL` record.
#[must_use]
pub fn local_record(body: &[u8]) -> Option<LocalRecord> {
    let mut r = Reader::new(body);
    let type_index = r.u32()?;
    let flags = r.u16()?;
    Some(LocalRecord {
        type_index,
        is_parameter: flags & 0x0001 != 0,
        optimized_away: flags & 0x0100 != 0,
        name: r.name()?,
    })
}

/// `S_REGREL32` (with a register) or `S_BPREL32` (without).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelativeRecord {
    /// Offset from the register.
    pub offset: i32,
    /// Type index.
    pub type_index: u32,
    /// CodeView register number; `None` for `S_BPREL32` (the frame).
    pub register: Option<u16>,
    /// Name.
    pub name: String,
}

/// Parses `S_REGREL32` (`with_register`) or `S_BPREL32`.
#[must_use]
pub fn relative_record(body: &[u8], with_register: bool) -> Option<RelativeRecord> {
    let mut r = Reader::new(body);
    let offset = r.i32()?;
    let type_index = r.u32()?;
    let register = if with_register { Some(r.u16()?) } else { None };
    Some(RelativeRecord {
        offset,
        type_index,
        register,
        name: r.name()?,
    })
}

/// `S_FRAMEPROC`'s parts the debugger uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameProcRecord {
    /// Bytes of locals (`cbFrame`).
    pub frame_size: u32,
    /// Encoded local base register (0 none, 1 stack, 2 frame, 3 base).
    pub local_base: u8,
    /// Encoded parameter base register.
    pub param_base: u8,
}

/// Parses `S_FRAMEPROC`: `cbFrame`, `cbPad`, `offPad`, `cbSaveRegs`,
/// `offExHdlr`, `sectExHdlr`, then the flags, whose bits 14-15 and 16-17
/// encode the local and parameter base registers.
#[must_use]
pub fn frameproc_record(body: &[u8]) -> Option<FrameProcRecord> {
    let mut r = Reader::new(body);
    let frame_size = r.u32()?;
    r.skip(18)?;
    let flags = r.u32()?;
    Some(FrameProcRecord {
        frame_size,
        local_base: u8::try_from((flags >> 14) & 3).unwrap_or(0),
        param_base: u8::try_from((flags >> 16) & 3).unwrap_or(0),
    })
}

/// The storage one `S_DEFRANGE_*` record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefRangeKind {
    /// In a register.
    Register(u16),
    /// At the frame pointer plus an offset.
    FrameRelative(i32),
    /// At a register plus an offset.
    RegisterRelative(u16, i32),
    /// One part of the variable, at `offset_in_parent`, in a register.
    SubfieldRegister {
        /// Register.
        register: u16,
        /// Offset of the part in the variable.
        offset_in_parent: u32,
    },
}

/// A parsed `S_DEFRANGE_*` record: storage, range and gaps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefRange {
    /// Where the variable is.
    pub kind: DefRangeKind,
    /// Code range it holds for; `None` for the whole procedure (`_FULL_SCOPE`).
    pub range: Option<(SectionOffset, u16)>,
    /// Gaps inside the range: offset from the range start, length.
    pub gaps: Vec<(u16, u16)>,
}

/// Parses one of the five `S_DEFRANGE_*` kinds; `None` for another kind or
/// a malformed record.
#[must_use]
pub fn defrange_record(kind: u16, body: &[u8]) -> Option<DefRange> {
    let mut r = Reader::new(body);
    let kind = match kind {
        S_DEFRANGE_REGISTER => {
            let register = r.u16()?;
            r.u16()?; // may have no name
            DefRangeKind::Register(register)
        }
        S_DEFRANGE_FRAMEPOINTER_REL => DefRangeKind::FrameRelative(r.i32()?),
        S_DEFRANGE_SUBFIELD_REGISTER => {
            let register = r.u16()?;
            r.u16()?; // may have no name
            // The offset is the low 12 bits (CV_OFFSET_PARENT_LENGTH_LIMIT).
            let offset_in_parent = r.u32()? & 0xfff;
            DefRangeKind::SubfieldRegister {
                register,
                offset_in_parent,
            }
        }
        S_DEFRANGE_FRAMEPOINTER_REL_FULL_SCOPE => {
            return Some(DefRange {
                kind: DefRangeKind::FrameRelative(r.i32()?),
                range: None,
                gaps: Vec::new(),
            });
        }
        S_DEFRANGE_REGISTER_REL => {
            let register = r.u16()?;
            r.u16()?; // spilled-member flag and offset in parent
            DefRangeKind::RegisterRelative(register, r.i32()?)
        }
        _ => return None,
    };
    // LocalVariableAddrRange: offset, section, length; then gaps to the end.
    let offset = r.u32()?;
    let section = r.u16()?;
    let length = r.u16()?;
    let mut gaps = Vec::new();
    while r.remaining() >= 4 {
        let start = r.u16()?;
        let gap = r.u16()?;
        gaps.push((start, gap));
    }
    Some(DefRange {
        kind,
        range: Some((SectionOffset { offset, section }, length)),
        gaps,
    })
}
