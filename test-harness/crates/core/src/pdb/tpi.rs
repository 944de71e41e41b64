//! The TPI stream (the PDB's type records) turned into a [`TypeTable`].
//!
//! Records are read from the raw stream (layouts: cvinfo.h, `lf*` structs)
//! because the `pdb` crate's type parser panics on some malformed records.
//! Modifiers (`const`, `volatile`) are seen through, forward references
//! are resolved to their definitions by unique name, then by name, and a
//! member whose type is an `LF_BITFIELD` becomes a bitfield of the
//! underlying integer.

use std::collections::HashMap;

use super::PdbError;
use super::codeview::Reader;
use crate::types::{
    Bits, Enum, Field, Function, MAX_DEPTH, Primitive, PrimitiveClass, Record, RecordKind, Type,
    TypeId, TypeTable,
};

/// Indices below this are primitives encoded in the index itself.
const FIRST_RECORD: u32 = 0x1000;
/// The size of the TPI stream header (cvinfo's `TPI_HEADER`, 2004 version).
const HEADER_SIZE: usize = 56;
/// `CV_PROP_FWDREF`: a declaration whose definition is elsewhere.
const FORWARD_REFERENCE: u16 = 0x80;
/// `CV_PROP_HASUNIQUENAME`: a decorated unique name follows the name.
const HAS_UNIQUE_NAME: u16 = 0x200;

/// What a primitive index with an unknown basic type stands for.
const UNKNOWN_PRIMITIVE: Primitive = Primitive {
    kd_name: "<unknown type>",
    c_name: "<unknown type>",
    size: 0,
    class: PrimitiveClass::Void,
};

#[derive(Debug, Clone)]
enum Member {
    Data { name: String, ty: u32, offset: u64 },
    Enumerate { name: String, value: i128 },
}

#[derive(Debug, Clone)]
enum Leaf {
    Record {
        kind: RecordKind,
        forward: bool,
        fields: u32,
        size: u64,
        name: String,
        unique: Option<String>,
    },
    Enum {
        forward: bool,
        underlying: u32,
        fields: u32,
        name: String,
        unique: Option<String>,
    },
    Pointer {
        pointee: u32,
        size: u8,
    },
    Modifier {
        underlying: u32,
    },
    Array {
        element: u32,
        size: u64,
    },
    Procedure {
        returns: u32,
        parameters: u16,
        arguments: u32,
    },
    FieldList {
        members: Vec<Member>,
        continuation: Option<u32>,
    },
    ArgList(Vec<u32>),
    Bitfield {
        underlying: u32,
        length: u8,
        position: u8,
    },
    Other,
}

/// The converted types, and what the symbols need to find theirs.
#[derive(Debug)]
pub struct Types {
    /// The table.
    pub table: TypeTable,
    leaves: Vec<Leaf>,
    slots: Vec<Option<TypeId>>,
    definitions: HashMap<String, u32>,
    primitives: HashMap<u32, TypeId>,
}

fn corrupt(index: u32, why: &'static str) -> PdbError {
    PdbError::Corrupt {
        what: format!("type record 0x{index:x}"),
        why,
    }
}

impl Types {
    /// Reads the TPI stream.
    ///
    /// # Errors
    /// The stream's header or a record the debugger uses is malformed.
    pub fn parse(stream: &[u8]) -> Result<Self, PdbError> {
        let header_error = |why| PdbError::Corrupt {
            what: "TPI stream header".to_owned(),
            why,
        };
        let mut header = Reader::new(stream);
        let _version = header.u32().ok_or_else(|| header_error("truncated"))?;
        let header_size = header.u32().ok_or_else(|| header_error("truncated"))?;
        let begin = header.u32().ok_or_else(|| header_error("truncated"))?;
        let end = header.u32().ok_or_else(|| header_error("truncated"))?;
        let record_bytes = header.u32().ok_or_else(|| header_error("truncated"))?;
        let header_size = usize::try_from(header_size).unwrap_or(usize::MAX);
        let record_bytes = usize::try_from(record_bytes).unwrap_or(usize::MAX);
        if header_size < HEADER_SIZE {
            return Err(header_error("header size too small"));
        }
        if begin != FIRST_RECORD || end < begin {
            return Err(header_error("bad type index range"));
        }
        let records = header_size
            .checked_add(record_bytes)
            .and_then(|records_end| stream.get(header_size..records_end))
            .ok_or_else(|| header_error("records run past the stream"))?;
        let count = usize::try_from(end - begin).unwrap_or(usize::MAX);
        // Every record takes at least four bytes.
        if count > records.len() / 4 {
            return Err(header_error("more types than the stream can hold"));
        }

        let mut leaves = Vec::with_capacity(count);
        let mut reader = Reader::new(records);
        while reader.remaining() > 0 {
            let index = begin.saturating_add(u32::try_from(leaves.len()).unwrap_or(u32::MAX));
            let length = reader
                .u16()
                .ok_or_else(|| corrupt(index, "truncated length"))?;
            let body = reader
                .take(usize::from(length))
                .ok_or_else(|| corrupt(index, "runs past the stream"))?;
            leaves.push(parse_leaf(body).ok_or_else(|| corrupt(index, "malformed"))?);
        }
        if leaves.len() != count {
            return Err(header_error("record count differs from the header's"));
        }

        let mut types = Self {
            table: TypeTable::new(),
            leaves,
            slots: Vec::new(),
            definitions: HashMap::new(),
            primitives: HashMap::new(),
        };
        types.build();
        Ok(types)
    }

    fn leaf(&self, index: u32) -> Option<&Leaf> {
        let at = usize::try_from(index.checked_sub(FIRST_RECORD)?).ok()?;
        self.leaves.get(at)
    }

    fn slot(&self, index: u32) -> Option<TypeId> {
        let at = usize::try_from(index.checked_sub(FIRST_RECORD)?).ok()?;
        self.slots.get(at).copied().flatten()
    }

    fn build(&mut self) {
        // Placeholders first, so that types can refer to any other.
        let placeholder = Type::Primitive(UNKNOWN_PRIMITIVE);
        let mut slots = Vec::with_capacity(self.leaves.len());
        for (at, leaf) in self.leaves.iter().enumerate() {
            let index = FIRST_RECORD.saturating_add(u32::try_from(at).unwrap_or(u32::MAX));
            slots.push(match leaf {
                Leaf::Record {
                    forward,
                    name,
                    unique,
                    ..
                }
                | Leaf::Enum {
                    forward,
                    name,
                    unique,
                    ..
                } => {
                    if !forward {
                        if let Some(unique) = unique {
                            self.definitions
                                .entry(format!("u:{unique}"))
                                .or_insert(index);
                        }
                        self.definitions.entry(format!("n:{name}")).or_insert(index);
                    }
                    Some(self.table.add(placeholder.clone()))
                }
                Leaf::Pointer { .. } | Leaf::Array { .. } | Leaf::Procedure { .. } => {
                    Some(self.table.add(placeholder.clone()))
                }
                _ => None,
            });
        }
        self.slots = slots;

        // Arrays last: their element counts need the elements' sizes.
        for pass_arrays in [false, true] {
            for at in 0..self.leaves.len() {
                let index = FIRST_RECORD.saturating_add(u32::try_from(at).unwrap_or(u32::MAX));
                let is_array = matches!(self.leaves.get(at), Some(Leaf::Array { .. }));
                if is_array != pass_arrays {
                    continue;
                }
                if let (Some(id), Some(ty)) = (self.slot(index), self.convert(index)) {
                    self.table.set(id, ty);
                }
            }
        }
    }

    /// The type the record at `index` defines.
    fn convert(&mut self, index: u32) -> Option<Type> {
        let leaf = self.leaf(index)?.clone();
        Some(match leaf {
            Leaf::Record {
                kind,
                forward,
                fields,
                size,
                name,
                ..
            } => {
                let fields = if forward {
                    Vec::new()
                } else {
                    self.data_members(fields)
                };
                Type::Record(Record {
                    name,
                    kind,
                    size,
                    fields,
                    complete: !forward,
                })
            }
            Leaf::Enum {
                underlying,
                fields,
                name,
                ..
            } => {
                let underlying = self.resolve_or_unknown(underlying);
                let values = self
                    .members(fields)
                    .into_iter()
                    .filter_map(|member| match member {
                        Member::Enumerate { name, value } => Some((name, value)),
                        Member::Data { .. } => None,
                    })
                    .collect();
                Type::Enum(Enum {
                    name,
                    underlying,
                    values,
                })
            }
            Leaf::Pointer { pointee, size } => Type::Pointer {
                pointee: self.resolve_or_unknown(pointee),
                size,
            },
            Leaf::Array { element, size } => {
                let element = self.resolve_or_unknown(element);
                let element_size = self.table.sizeof(element);
                Type::Array {
                    element,
                    count: size.checked_div(element_size).unwrap_or(0),
                    size,
                }
            }
            Leaf::Procedure {
                returns, arguments, ..
            } => {
                let returns = self.resolve_or_unknown(returns);
                let parameters = match self.leaf(arguments) {
                    Some(Leaf::ArgList(list)) => list.clone(),
                    _ => Vec::new(),
                };
                let parameters = parameters
                    .into_iter()
                    .map(|parameter| self.resolve_or_unknown(parameter))
                    .collect();
                Type::Function(Function {
                    returns,
                    parameters,
                })
            }
            _ => return None,
        })
    }

    /// The members of a field list and its continuations (`LF_INDEX`).
    /// A continuation back to a part already read (a cycle) ends the list:
    /// each part's members count once.
    fn members(&self, list: u32) -> Vec<Member> {
        let mut members = Vec::new();
        let mut next = Some(list);
        let mut seen = Vec::new();
        for _ in 0..MAX_DEPTH {
            let Some(index) = next.filter(|index| !seen.contains(index)) else {
                break;
            };
            seen.push(index);
            match self.leaf(index) {
                Some(Leaf::FieldList {
                    members: part,
                    continuation,
                }) => {
                    members.extend(part.iter().cloned());
                    next = *continuation;
                }
                _ => break,
            }
        }
        members
    }

    fn data_members(&mut self, list: u32) -> Vec<Field> {
        let mut fields = Vec::new();
        for member in self.members(list) {
            let Member::Data { name, ty, offset } = member else {
                continue;
            };
            let (ty, bits) = match self.leaf(ty) {
                Some(Leaf::Bitfield {
                    underlying,
                    length,
                    position,
                }) => {
                    let bits = Bits {
                        position: *position,
                        length: *length,
                    };
                    (self.resolve_or_unknown(*underlying), Some(bits))
                }
                _ => (self.resolve_or_unknown(ty), None),
            };
            fields.push(Field {
                name,
                offset,
                ty,
                bits,
            });
        }
        fields
    }

    fn resolve_or_unknown(&mut self, index: u32) -> TypeId {
        match self.resolve(index) {
            Some(id) => id,
            None => self.table.primitive(UNKNOWN_PRIMITIVE),
        }
    }

    /// The type a type index stands for: primitives decoded, modifiers
    /// seen through, forward references replaced by their definitions.
    pub fn resolve(&mut self, index: u32) -> Option<TypeId> {
        let mut index = index;
        for _ in 0..MAX_DEPTH {
            if index < FIRST_RECORD {
                return self.primitive(index);
            }
            match self.leaf(index)? {
                Leaf::Modifier { underlying } => index = *underlying,
                Leaf::Record {
                    forward: true,
                    name,
                    unique,
                    ..
                }
                | Leaf::Enum {
                    forward: true,
                    name,
                    unique,
                    ..
                } => {
                    let definition = unique
                        .as_ref()
                        .and_then(|unique| self.definitions.get(&format!("u:{unique}")))
                        .or_else(|| self.definitions.get(&format!("n:{name}")))
                        .copied();
                    return definition
                        .and_then(|definition| self.slot(definition))
                        .or_else(|| self.slot(index));
                }
                _ => return self.slot(index),
            }
        }
        None
    }

    /// A primitive index: basic type in the low byte, pointer mode in bits
    /// 8-11 (0 direct, 4 a 32-bit pointer, 6 a 64-bit pointer).
    fn primitive(&mut self, index: u32) -> Option<TypeId> {
        if let Some(id) = self.primitives.get(&index) {
            return Some(*id);
        }
        let code = u8::try_from(index & 0xff).unwrap_or(0);
        let base = self
            .table
            .primitive(Primitive::from_codeview(code).unwrap_or(UNKNOWN_PRIMITIVE));
        let id = match (index >> 8) & 0xf {
            0 => base,
            4 => self.table.pointer(base, 4),
            6 => self.table.pointer(base, 8),
            _ => return None,
        };
        self.primitives.insert(index, id);
        Some(id)
    }

    /// Parameters of the procedure type at `index` (`LF_PROCEDURE`,
    /// `LF_MFUNCTION`), for telling classic MSVC parameters from locals.
    #[must_use]
    pub(crate) fn parameter_count(&self, index: u32) -> Option<u16> {
        match self.leaf(index)? {
            Leaf::Procedure { parameters, .. } => Some(*parameters),
            _ => None,
        }
    }
}

fn parse_leaf(body: &[u8]) -> Option<Leaf> {
    let mut r = Reader::new(body);
    let kind = r.u16()?;
    Some(match kind {
        // LF_MODIFIER
        0x1001 => Leaf::Modifier {
            underlying: r.u32()?,
        },
        // LF_POINTER: the size is bits 13-18 of the attributes; a record
        // without it is sized by its kind (0x0a 32-bit, 0x0c 64-bit).
        0x1002 => {
            let pointee = r.u32()?;
            let attributes = r.u32()?;
            let size = u8::try_from((attributes >> 13) & 0x3f).unwrap_or(0);
            let size = match (size, attributes & 0x1f) {
                (0, 0x0c) => 8,
                (0, _) => 4,
                (size, _) => size,
            };
            Leaf::Pointer { pointee, size }
        }
        // LF_PROCEDURE
        0x1008 => {
            let returns = r.u32()?;
            r.skip(2)?; // calling convention, attributes
            let parameters = r.u16()?;
            let arguments = r.u32()?;
            Leaf::Procedure {
                returns,
                parameters,
                arguments,
            }
        }
        // LF_MFUNCTION
        0x1009 => {
            let returns = r.u32()?;
            r.skip(10)?; // class, this, calling convention, attributes
            let parameters = r.u16()?;
            let arguments = r.u32()?;
            Leaf::Procedure {
                returns,
                parameters,
                arguments,
            }
        }
        // LF_ARGLIST
        0x1201 => {
            let count = usize::try_from(r.u32()?).ok()?;
            if count > r.remaining() / 4 {
                return None;
            }
            let mut arguments = Vec::with_capacity(count);
            for _ in 0..count {
                arguments.push(r.u32()?);
            }
            Leaf::ArgList(arguments)
        }
        // LF_FIELDLIST
        0x1203 => parse_field_list(&mut r)?,
        // LF_BITFIELD
        0x1205 => Leaf::Bitfield {
            underlying: r.u32()?,
            length: r.u8()?,
            position: r.u8()?,
        },
        // LF_ARRAY
        0x1503 => {
            let element = r.u32()?;
            r.u32()?; // index type
            let size = u64::try_from(r.numeric()?).ok()?;
            Leaf::Array { element, size }
        }
        0x1504..=0x1507 | 0x1519 => parse_named_leaf(kind, &mut r)?,
        _ => Leaf::Other,
    })
}

/// `LF_CLASS`, `LF_STRUCTURE`, `LF_INTERFACE`, `LF_UNION`, `LF_ENUM`.
fn parse_named_leaf(kind: u16, r: &mut Reader<'_>) -> Option<Leaf> {
    Some(match kind {
        // LF_CLASS, LF_STRUCTURE, LF_INTERFACE
        0x1504 | 0x1505 | 0x1519 => {
            r.u16()?; // member count
            let properties = r.u16()?;
            let fields = r.u32()?;
            r.skip(8)?; // derivation list, vtable shape
            let size = u64::try_from(r.numeric()?).ok()?;
            let name = r.name()?;
            let unique = unique_name(r, properties);
            Leaf::Record {
                kind: if kind == 0x1505 {
                    RecordKind::Struct
                } else {
                    RecordKind::Class
                },
                forward: properties & FORWARD_REFERENCE != 0,
                fields,
                size,
                name,
                unique,
            }
        }
        // LF_UNION
        0x1506 => {
            r.u16()?;
            let properties = r.u16()?;
            let fields = r.u32()?;
            let size = u64::try_from(r.numeric()?).ok()?;
            let name = r.name()?;
            let unique = unique_name(r, properties);
            Leaf::Record {
                kind: RecordKind::Union,
                forward: properties & FORWARD_REFERENCE != 0,
                fields,
                size,
                name,
                unique,
            }
        }
        // LF_ENUM
        0x1507 => {
            r.u16()?;
            let properties = r.u16()?;
            let underlying = r.u32()?;
            let fields = r.u32()?;
            let name = r.name()?;
            let unique = unique_name(r, properties);
            Leaf::Enum {
                forward: properties & FORWARD_REFERENCE != 0,
                underlying,
                fields,
                name,
                unique,
            }
        }
        _ => return None,
    })
}

fn unique_name(r: &mut Reader<'_>, properties: u16) -> Option<String> {
    (properties & HAS_UNIQUE_NAME != 0 && r.remaining() > 0)
        .then(|| r.name())
        .flatten()
}

/// An `LF_FIELDLIST`: members one after another, each padded to four bytes
/// with `LF_PAD` bytes (0xf0 and up, which no member kind starts with).
fn parse_field_list(r: &mut Reader<'_>) -> Option<Leaf> {
    let mut members = Vec::new();
    let mut continuation = None;
    while r.remaining() > 0 {
        let mut peek = r.clone();
        if peek.u8()? >= 0xf0 {
            r.skip(1)?;
            continue;
        }
        match r.u16()? {
            // LF_BCLASS: attributes, type, offset.
            0x1400 => {
                r.skip(6)?;
                r.numeric()?;
            }
            // LF_VBCLASS, LF_IVBCLASS: attributes, two types, two numbers.
            0x1401 | 0x1402 => {
                r.skip(10)?;
                r.numeric()?;
                r.numeric()?;
            }
            // LF_INDEX: padding, then the next part of the list.
            0x1404 => {
                r.skip(2)?;
                continuation = Some(r.u32()?);
            }
            // LF_VFUNCTAB: padding, type.
            0x1409 => r.skip(6)?,
            // LF_ENUMERATE: attributes, value, name.
            0x1502 => {
                r.skip(2)?;
                let value = r.numeric()?;
                let name = r.name()?;
                members.push(Member::Enumerate { name, value });
            }
            // LF_MEMBER: attributes, type, offset, name.
            0x150d => {
                r.skip(2)?;
                let ty = r.u32()?;
                let offset = u64::try_from(r.numeric()?).ok()?;
                let name = r.name()?;
                members.push(Member::Data { name, ty, offset });
            }
            // LF_STMEMBER (attributes, type), LF_METHOD (count, method
            // list), LF_NESTTYPE (padding, type): six bytes, then a name.
            0x150e..=0x1510 => {
                r.skip(6)?;
                r.name()?;
            }
            // LF_ONEMETHOD: attributes, type, a vtable offset for
            // introducing virtuals (method property 4 or 6), name.
            0x1511 => {
                let attributes = r.u16()?;
                r.skip(4)?;
                if matches!((attributes >> 2) & 7, 4 | 6) {
                    r.skip(4)?;
                }
                r.name()?;
            }
            // LF_VFUNCOFF: padding, type, offset.
            0x1512 => r.skip(10)?,
            _ => return None,
        }
    }
    Some(Leaf::FieldList {
        members,
        continuation,
    })
}
