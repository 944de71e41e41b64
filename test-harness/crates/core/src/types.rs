//! The type model `dt` and `??` work on, shared by the driver's PDB types
//! and the emulated kernel's own `nt` types, and `dt`'s rendering.
//!
//! Types live in a [`TypeTable`] and refer to each other by [`TypeId`], so a
//! structure can point to itself (`_LIST_ENTRY`) and a corrupt PDB cannot
//! make a cycle that recursion would follow forever: every walk here is
//! bounded.

mod dt;
mod nt;

use std::collections::HashMap;

pub use dt::{DtOptions, dt, dt_with_names, dt_with_options};
pub use nt::nt_types;

/// A type's place in its [`TypeTable`]; only meaningful for that table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TypeId(u32);

impl TypeId {
    /// The index in the table.
    #[must_use]
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// How `dt` prints a primitive's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrimitiveClass {
    /// `void`: no value.
    Void,
    /// Signed integer: `0n-5`.
    Signed,
    /// Unsigned integer: `0`, `6`, `0x12`.
    Unsigned,
    /// `char`: `2 ''`.
    Char,
    /// `unsigned char`: `0x1 ''`.
    UChar,
    /// `wchar_t`.
    WChar,
    /// `bool`.
    Bool,
    /// Floating point.
    Float,
}

/// A primitive type under both of the names kd gives it: `Uint4B` in a
/// layout, `unsigned long` as a function's return type (`Ptr32     long`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Primitive {
    /// kd's layout name: `Uint4B`, `Int2B`, `Wchar`, `Void`.
    pub kd_name: &'static str,
    /// The C name kd uses in function types: `long`, `void`.
    pub c_name: &'static str,
    /// Size in bytes (0 for `void`).
    pub size: u8,
    /// How values are printed.
    pub class: PrimitiveClass,
}

impl Primitive {
    /// `void`.
    pub(crate) const VOID: Self = Self::new("Void", "void", 0, PrimitiveClass::Void);
    /// `CHAR` (signed).
    pub const CHAR: Self = Self::new("Char", "char", 1, PrimitiveClass::Char);
    /// `UCHAR`.
    pub const UCHAR: Self = Self::new("UChar", "unsigned char", 1, PrimitiveClass::UChar);
    /// `WCHAR`.
    pub const WCHAR: Self = Self::new("Wchar", "wchar_t", 2, PrimitiveClass::WChar);
    /// `SHORT` / `CSHORT`.
    pub const SHORT: Self = Self::new("Int2B", "short", 2, PrimitiveClass::Signed);
    /// `USHORT`.
    pub const USHORT: Self = Self::new("Uint2B", "unsigned short", 2, PrimitiveClass::Unsigned);
    /// `LONG` (and `NTSTATUS`).
    pub const LONG: Self = Self::new("Int4B", "long", 4, PrimitiveClass::Signed);
    /// `ULONG`.
    pub const ULONG: Self = Self::new("Uint4B", "unsigned long", 4, PrimitiveClass::Unsigned);
    /// `int`.
    pub const INT: Self = Self::new("Int4B", "int", 4, PrimitiveClass::Signed);
    /// `unsigned int`.
    pub const UINT: Self = Self::new("Uint4B", "unsigned int", 4, PrimitiveClass::Unsigned);
    /// `LONGLONG`.
    pub const INT64: Self = Self::new("Int8B", "int64", 8, PrimitiveClass::Signed);
    /// `ULONGLONG`.
    pub const UINT64: Self = Self::new("Uint8B", "unsigned int64", 8, PrimitiveClass::Unsigned);

    const fn new(
        kd_name: &'static str,
        c_name: &'static str,
        size: u8,
        class: PrimitiveClass,
    ) -> Self {
        Self {
            kd_name,
            c_name,
            size,
            class,
        }
    }

    /// The primitive a CodeView basic-type code (the low byte of a primitive
    /// type index, cvinfo.h's `T_*` values) stands for. kd's names as its
    /// `dt` output shows them: `Int4B`, `Uint2B`, `Wchar`, `Float` (also for
    /// `double`), `Bool`.
    #[must_use]
    pub(crate) const fn from_codeview(code: u8) -> Option<Self> {
        use PrimitiveClass as C;
        Some(match code {
            0x03 => Self::VOID,
            0x08 => Self::new("Int4B", "HRESULT", 4, C::Signed),
            0x10 | 0x70 => Self::CHAR,
            0x68 => Self::new("Char", "signed char", 1, C::Char),
            0x20 | 0x69 => Self::UCHAR,
            0x7c => Self::new("UChar", "char8_t", 1, C::UChar),
            0x71 => Self::WCHAR,
            0x7a => Self::new("Wchar", "char16_t", 2, C::WChar),
            0x7b => Self::new("Uint4B", "char32_t", 4, C::Unsigned),
            0x11 | 0x72 => Self::SHORT,
            0x21 | 0x73 => Self::USHORT,
            0x12 => Self::LONG,
            0x22 => Self::ULONG,
            0x74 => Self::INT,
            0x75 => Self::UINT,
            0x13 | 0x76 => Self::INT64,
            0x23 | 0x77 => Self::UINT64,
            0x14 | 0x78 => Self::new("Int16B", "int128", 16, C::Signed),
            0x24 | 0x79 => Self::new("Uint16B", "unsigned int128", 16, C::Unsigned),
            0x40 => Self::new("Float", "float", 4, C::Float),
            0x41 => Self::new("Float", "double", 8, C::Float),
            0x30 => Self::new("Bool", "bool", 1, C::Bool),
            0x31 => Self::new("Bool", "bool", 2, C::Bool),
            0x32 => Self::new("Bool", "bool", 4, C::Bool),
            0x33 => Self::new("Bool", "bool", 8, C::Bool),
            _ => return None,
        })
    }
}

/// `struct`, `class` or `union`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// `struct`.
    Struct,
    /// `class`.
    Class,
    /// `union`.
    Union,
}

/// Bits of a bitfield member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bits {
    /// First bit, counted from the least significant.
    pub position: u8,
    /// Number of bits.
    pub length: u8,
}

/// One data member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Member name.
    pub name: String,
    /// Byte offset from the start of the record.
    pub offset: u64,
    /// Member type (for a bitfield, the integer type that holds the bits).
    pub ty: TypeId,
    /// The bits, for a bitfield.
    pub bits: Option<Bits>,
}

/// A structure, class or union.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Name as the debugger prints it: `_UNICODE_STRING`, or the PDB's
    /// `Sample::portable::types::UNICODE_STRING`.
    pub name: String,
    /// Which kind.
    pub kind: RecordKind,
    /// `sizeof`.
    pub size: u64,
    /// Data members in declaration order (kd prints them in this order).
    pub fields: Vec<Field>,
    /// False for a forward reference whose definition is not known: it can
    /// be pointed to but has no members.
    pub complete: bool,
}

/// An enumeration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enum {
    /// Name.
    pub name: String,
    /// The integer type that holds it.
    pub underlying: TypeId,
    /// Enumerators and their values.
    pub values: Vec<(String, i128)>,
}

/// A function type, as seen through a function pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    /// Return type.
    pub returns: TypeId,
    /// Parameter types.
    pub parameters: Vec<TypeId>,
}

/// A type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Type {
    /// A primitive.
    Primitive(Primitive),
    /// A pointer of `size` bytes (4 or 8) to `pointee`.
    Pointer {
        /// What it points to.
        pointee: TypeId,
        /// Bytes in the pointer.
        size: u8,
    },
    /// An array of `count` elements, `size` bytes in all.
    Array {
        /// Element type.
        element: TypeId,
        /// Number of elements.
        count: u64,
        /// Bytes in the array.
        size: u64,
    },
    /// A structure, class or union.
    Record(Record),
    /// An enumeration.
    Enum(Enum),
    /// A function type.
    Function(Function),
}

/// A set of types that refer to each other by [`TypeId`].
#[derive(Debug, Clone, Default)]
pub struct TypeTable {
    types: Vec<Type>,
    /// Complete records and enums by full name (first definition wins).
    names: HashMap<String, TypeId>,
    primitives: HashMap<&'static str, Vec<(Primitive, TypeId)>>,
    pointers: HashMap<(TypeId, u8), TypeId>,
}

/// The most steps any walk through a type graph takes: far more than any
/// real nesting, and a bound on what a corrupt table can make us do.
pub(crate) const MAX_DEPTH: usize = 64;

impl TypeTable {
    /// An empty table.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of types.
    #[must_use]
    pub const fn len(&self) -> usize {
        self.types.len()
    }

    /// Whether the table has no types.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    /// Adds a type and returns its id; a complete record or an enum is
    /// also found by name from then on.
    pub fn add(&mut self, ty: Type) -> TypeId {
        let id = TypeId(u32::try_from(self.types.len()).unwrap_or(u32::MAX));
        self.types.push(ty);
        self.index_name(id);
        id
    }

    /// Replaces the type at `id` (to fill in a placeholder added before the
    /// types that refer to it). Does nothing for an id this table did not
    /// hand out.
    pub fn set(&mut self, id: TypeId, ty: Type) {
        if let Some(slot) = self.types.get_mut(id.index()) {
            *slot = ty;
            self.index_name(id);
        }
    }

    fn index_name(&mut self, id: TypeId) {
        let name = match self.types.get(id.index()) {
            Some(Type::Record(record)) if record.complete => record.name.clone(),
            Some(Type::Enum(en)) => en.name.clone(),
            _ => return,
        };
        self.names.entry(name).or_insert(id);
    }

    /// The id of `primitive`, added on first use.
    pub fn primitive(&mut self, primitive: Primitive) -> TypeId {
        if let Some(found) = self.primitives.get(primitive.c_name).and_then(|list| {
            list.iter()
                .find(|(known, _)| *known == primitive)
                .map(|(_, id)| *id)
        }) {
            return found;
        }
        let id = self.add(Type::Primitive(primitive));
        self.primitives
            .entry(primitive.c_name)
            .or_default()
            .push((primitive, id));
        id
    }

    /// The id of a `size`-byte pointer to `pointee`, added on first use.
    pub fn pointer(&mut self, pointee: TypeId, size: u8) -> TypeId {
        if let Some(id) = self.pointers.get(&(pointee, size)) {
            return *id;
        }
        let id = self.add(Type::Pointer { pointee, size });
        self.pointers.insert((pointee, size), id);
        id
    }

    /// The type at `id`, or `None` for an id from another table.
    #[must_use]
    pub fn get(&self, id: TypeId) -> Option<&Type> {
        self.types.get(id.index())
    }

    /// The record at `id`, if it is one.
    #[must_use]
    pub fn record(&self, id: TypeId) -> Option<&Record> {
        match self.get(id) {
            Some(Type::Record(record)) => Some(record),
            _ => None,
        }
    }

    /// Finds a record or enum by the name a user types: the exact name
    /// (`Sample::portable::types::UNICODE_STRING`, `_UNICODE_STRING`), or
    /// the last path segment with or without kd's leading underscore
    /// (`UNICODE_STRING` finds `_UNICODE_STRING` and the Rust path both).
    #[must_use]
    pub fn type_by_name(&self, name: &str) -> Option<TypeId> {
        if let Some(id) = self.names.get(name) {
            return Some(*id);
        }
        let wanted = name.strip_prefix('_').unwrap_or(name);
        let mut best: Option<TypeId> = None;
        for (full, id) in &self.names {
            let last = last_segment(full);
            if last == name || last.strip_prefix('_').unwrap_or(last) == wanted {
                // Several candidates: the earliest type wins, so the answer
                // does not depend on hash order.
                if best.is_none_or(|known| id.0 < known.0) {
                    best = Some(*id);
                }
            }
        }
        best
    }

    /// `sizeof`, as `?? sizeof(...)` prints it.
    #[must_use]
    pub fn sizeof(&self, id: TypeId) -> u64 {
        let mut id = id;
        for _ in 0..MAX_DEPTH {
            match self.get(id) {
                Some(Type::Primitive(primitive)) => return u64::from(primitive.size),
                Some(Type::Pointer { size, .. }) => return u64::from(*size),
                Some(Type::Array { size, .. }) => return *size,
                Some(Type::Record(record)) => return record.size,
                Some(Type::Enum(en)) => id = en.underlying,
                Some(Type::Function(_)) | None => return 0,
            }
        }
        0
    }

    /// The type's name as a `dt` layout shows it: `Uint4B`,
    /// `Ptr64 _EPROCESS`, `[28] Ptr64     long`, `_UNICODE_STRING`.
    #[must_use]
    pub fn label(&self, id: TypeId) -> String {
        self.label_at(id, 0)
    }

    fn label_at(&self, id: TypeId, depth: usize) -> String {
        if depth > MAX_DEPTH {
            return "<too deep>".to_owned();
        }
        match self.get(id) {
            Some(Type::Primitive(primitive)) => primitive.kd_name.to_owned(),
            Some(Type::Pointer { pointee, size }) => format!(
                "Ptr{} {}",
                u32::from(*size) * 8,
                self.label_at(*pointee, depth + 1)
            ),
            Some(Type::Array { element, count, .. }) => {
                format!("[{count}] {}", self.label_at(*element, depth + 1))
            }
            Some(Type::Record(record)) => record.name.clone(),
            Some(Type::Enum(en)) => en.name.clone(),
            // kd indents a function type by four spaces: `Ptr32     long`.
            Some(Type::Function(function)) => {
                format!("    {}", self.c_name_at(function.returns, depth + 1))
            }
            None => "<unknown type>".to_owned(),
        }
    }

    /// The name kd gives a function's return type: the C name of a
    /// primitive (`long`, `void`), else the layout name.
    fn c_name_at(&self, id: TypeId, depth: usize) -> String {
        match self.get(id) {
            Some(Type::Primitive(primitive)) => primitive.c_name.to_owned(),
            _ => self.label_at(id, depth),
        }
    }
}

/// The last `::` segment of a name, not splitting inside `<...>`:
/// `Sample::sample::sample_unload` -> `sample_unload`.
#[must_use]
pub fn last_segment(name: &str) -> &str {
    let bytes = name.as_bytes();
    let mut depth = 0usize;
    let mut start = 0;
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'<' => depth += 1,
            b'>' => depth = depth.saturating_sub(1),
            b':' if depth == 0 && bytes.get(index + 1) == Some(&b':') => {
                start = index + 2;
                index += 1;
            }
            _ => {}
        }
        index += 1;
    }
    name.get(start..).unwrap_or(name)
}

#[cfg(test)]
mod tests;
