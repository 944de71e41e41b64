//! The C++ evaluator behind `??`: decimal numbers (`0x` hex, leading-`0`
//! octal), `@` before every register, C's integer types and conversions,
//! casts to integer and pointer types, `*` through integer pointers,
//! `sizeof`, and `@@masm(...)`. Symbols need type information the session
//! does not hand to the evaluator, so a bare name is an error.
//!
//! Types print as kd names them: `__int64` is `int64`, `sizeof` is
//! `unsigned int` on x86 and `unsigned int64` on x64, a 32-bit register
//! `unsigned int` (the docs' `?? @eip` gives `unsigned int 0x771e1a02`), a
//! pseudo-register `unsigned int64` (`?? @$t0` gives `unsigned int64 5`).

use super::{Context, ExprError, MAX_DEPTH, masm, matching_paren, register_bits, rest_at};

/// How a C++ value prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CppKind {
    /// `bool true`.
    Bool,
    /// A signed integer of `bits` bits: `int 0n3`.
    Signed {
        /// Width of the type.
        bits: u32,
    },
    /// An unsigned integer of `bits` bits: `unsigned int64 0x10`.
    Unsigned {
        /// Width of the type.
        bits: u32,
    },
    /// A character type: `unsigned char 0x41 'A'`.
    Char {
        /// `char` rather than `unsigned char`.
        signed: bool,
    },
    /// A pointer: `void * 0x00000538`.
    Pointer,
}

/// The value of a C++ expression with the type kd names it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CppValue {
    /// The type as kd prints it (`unsigned int`, `ULONGLONG`, `void *`).
    pub type_name: String,
    /// How the value prints.
    pub kind: CppKind,
    /// The value's bits, zero-extended from the type's width.
    pub value: u64,
}

impl CppValue {
    /// The value as a 64-bit number, sign-extended for signed types.
    #[must_use]
    pub(crate) const fn to_u64(&self) -> u64 {
        let bits = match self.kind {
            CppKind::Signed { bits } => bits,
            CppKind::Char { signed: true } => 8,
            _ => return self.value,
        };
        sign_extend(self.value, bits).cast_unsigned()
    }
}

/// An integer type.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Int {
    bits: u32,
    signed: bool,
    /// C's conversion rank: char 1, short 2, int 3, long 4, __int64 5.
    rank: u8,
    chars: bool,
    name: String,
}

impl Int {
    fn new(bits: u32, signed: bool, rank: u8, chars: bool, name: &str) -> Self {
        Self {
            bits,
            signed,
            rank,
            chars,
            name: name.to_owned(),
        }
    }

    /// kd's name for the plain type of this rank and signedness.
    fn canonical(rank: u8, signed: bool) -> Self {
        let (bits, name) = match (rank, signed) {
            (0..=3, true) => (32, "int"),
            (0..=3, false) => (32, "unsigned int"),
            (4, true) => (32, "long"),
            (4, false) => (32, "unsigned long"),
            (_, true) => (64, "int64"),
            (_, false) => (64, "unsigned int64"),
        };
        Self::new(bits, signed, rank.clamp(3, 5), false, name)
    }

    fn unsigned_of_width(bits: u32) -> Self {
        match bits {
            8 => Self::new(8, false, 1, true, "unsigned char"),
            16 => Self::new(16, false, 2, false, "unsigned short"),
            32 => Self::canonical(3, false),
            _ => Self::canonical(5, false),
        }
    }

    /// Integer promotion: everything narrower than `int` becomes `int`.
    fn promoted(&self) -> Self {
        if self.rank < 3 {
            Self::canonical(3, true)
        } else {
            Self::canonical(self.rank, self.signed)
        }
    }
}

/// A C++ type the evaluator can hold a value of.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ty {
    Bool,
    Int(Int),
    Ptr(Box<Ptr>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Ptr {
    /// What `*` yields, when it is a type the evaluator can hold.
    pointee: Option<Ty>,
    /// `sizeof(*p)`, for pointer arithmetic.
    pointee_size: Option<u64>,
    name: String,
}

#[derive(Debug, Clone)]
struct Val {
    ty: Ty,
    bits: u64,
}

/// A type name as written between parentheses: words and stars.
struct TypeSpec {
    name: String,
    stars: usize,
}

impl TypeSpec {
    /// The name without `struct`/`class`/`union`/`enum`.
    fn tag_stripped(&self) -> &str {
        ["struct ", "class ", "union ", "enum "]
            .iter()
            .find_map(|tag| self.name.strip_prefix(tag))
            .unwrap_or(&self.name)
    }
}

const fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

const fn sign_extend(value: u64, bits: u32) -> i64 {
    if bits >= 64 {
        value.cast_signed()
    } else {
        let top = 1u64 << bits.saturating_sub(1);
        ((value & mask(bits)) ^ top).wrapping_sub(top).cast_signed()
    }
}

/// C's and Windows' integer types by name (words separated by one space).
fn builtin(name: &str, pointer_size: u64) -> Option<Ty> {
    let int = |bits, signed, rank, chars, shown: &str| {
        Some(Ty::Int(Int::new(bits, signed, rank, chars, shown)))
    };
    let wide = pointer_size == 8;
    match name {
        "bool" => Some(Ty::Bool),
        "char" | "signed char" | "__int8" | "signed __int8" => int(8, true, 1, true, "char"),
        "unsigned char" | "unsigned __int8" => int(8, false, 1, true, "unsigned char"),
        "CHAR" => int(8, true, 1, true, name),
        "UCHAR" | "BYTE" | "BOOLEAN" => int(8, false, 1, true, name),
        "short" | "short int" | "signed short" | "signed short int" | "__int16"
        | "signed __int16" => int(16, true, 2, false, "short"),
        "unsigned short" | "unsigned short int" | "unsigned __int16" => {
            int(16, false, 2, false, "unsigned short")
        }
        "wchar_t" => int(16, false, 2, false, "wchar_t"),
        "SHORT" => int(16, true, 2, false, name),
        "USHORT" | "WORD" | "WCHAR" => int(16, false, 2, false, name),
        "int" | "signed" | "signed int" | "__int32" | "signed __int32" => {
            int(32, true, 3, false, "int")
        }
        "unsigned" | "unsigned int" | "unsigned __int32" => {
            int(32, false, 3, false, "unsigned int")
        }
        "INT" => int(32, true, 3, false, name),
        "UINT" => int(32, false, 3, false, name),
        "long" | "long int" | "signed long" | "signed long int" => int(32, true, 4, false, "long"),
        "unsigned long" | "unsigned long int" => int(32, false, 4, false, "unsigned long"),
        "LONG_PTR" | "INT_PTR" | "SSIZE_T" if wide => int(64, true, 5, false, name),
        "ULONG_PTR" | "UINT_PTR" | "SIZE_T" | "DWORD_PTR" | "size_t" if wide => {
            int(64, false, 5, false, name)
        }
        "LONG" | "LONG_PTR" | "INT_PTR" | "SSIZE_T" => int(32, true, 4, false, name),
        "ULONG" | "DWORD" | "ULONG_PTR" | "UINT_PTR" | "SIZE_T" | "DWORD_PTR" | "size_t" => {
            int(32, false, 4, false, name)
        }
        "long long" | "long long int" | "signed long long" | "__int64" | "signed __int64"
        | "int64" => int(64, true, 5, false, "int64"),
        "unsigned long long" | "unsigned long long int" | "unsigned __int64" | "unsigned int64" => {
            int(64, false, 5, false, "unsigned int64")
        }
        "LONG64" | "LONGLONG" | "INT64" => int(64, true, 5, false, name),
        "ULONG64" | "ULONGLONG" | "DWORD64" | "UINT64" => int(64, false, 5, false, name),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind<'t> {
    End,
    Punct(&'static str),
    Ident(&'t str),
    Number(&'t str),
    /// The text between single quotes, escapes unresolved.
    Char(&'t str),
    /// A register name after `@`.
    Reg(&'t str),
    Masm(&'t str),
    Other,
}

#[derive(Debug, Clone, Copy)]
struct Token<'t> {
    kind: Kind<'t>,
    start: usize,
    end: usize,
}

const PUNCTS: [&str; 29] = [
    "<<", ">>", "<=", ">=", "==", "!=", "&&", "||", "->", "+", "-", "*", "/", "%", "<", ">", "&",
    "|", "^", "~", "!", "?", ":", "(", ")", ",", "[", "]", ".",
];

#[derive(Debug, Clone)]
enum Prefix {
    Neg,
    Plus,
    BitNot,
    Not,
    Deref,
    Cast(Ty),
}

struct Parser<'t, 'c> {
    text: &'t str,
    pos: usize,
    ctx: &'c dyn Context,
    depth: usize,
    /// Above zero inside an operand that is not evaluated (`sizeof`, the
    /// other side of `&&`, `||`, `?:`): no memory is read, nothing fails.
    skip: usize,
}

/// Evaluates a whole C++ expression.
pub(super) fn evaluate(text: &str, ctx: &dyn Context, depth: usize) -> Result<CppValue, ExprError> {
    if depth > MAX_DEPTH {
        return Err(ExprError::TooDeep(text.trim().to_owned()));
    }
    let mut parser = Parser {
        text,
        pos: 0,
        ctx,
        depth,
        skip: 0,
    };
    let value = parser.ternary()?;
    let next = parser.peek();
    if next.kind != Kind::End {
        return Err(ExprError::Syntax(parser.at(next.start)));
    }
    Ok(Parser::export(value))
}

impl<'t> Parser<'t, '_> {
    fn pointer_size(&self) -> u64 {
        if self.ctx.pointer_size() == 4 { 4 } else { 8 }
    }

    fn at(&self, position: usize) -> String {
        rest_at(self.text, position)
    }

    fn peek(&self) -> Token<'t> {
        let text = self.text;
        let bytes = text.as_bytes();
        let mut start = self.pos;
        while bytes.get(start).is_some_and(u8::is_ascii_whitespace) {
            start += 1;
        }
        let token = |kind, end: usize| Token { kind, start, end };
        let rest = &text[start..];
        let Some(&first) = bytes.get(start) else {
            return token(Kind::End, start);
        };
        let word_end = |from: usize, more: &dyn Fn(u8) -> bool| {
            let mut end = from;
            while bytes.get(end).is_some_and(|&b| more(b)) {
                end += 1;
            }
            end
        };
        if rest.starts_with("//") {
            return token(Kind::End, start);
        }
        if rest.starts_with("@@") {
            let open = word_end(start + 2, &|b| b.is_ascii_alphanumeric() || b == b'+');
            let name = text[start + 2..open].to_ascii_lowercase();
            let close = (bytes.get(open) == Some(&b'('))
                .then(|| matching_paren(text, open))
                .flatten();
            // In C++, `@@(...)` and `@@masm(...)` are MASM.
            return match (name.as_str(), close) {
                ("" | "masm", Some(close)) => token(Kind::Masm(&text[open + 1..close]), close + 1),
                _ => token(Kind::Other, start + 1),
            };
        }
        if first == b'@' {
            let end = word_end(start + 1, &|b| {
                b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
            });
            return token(Kind::Reg(&text[start + 1..end]), end);
        }
        if first.is_ascii_digit() {
            let end = word_end(start, &|b| b.is_ascii_alphanumeric() || b == b'`');
            return token(Kind::Number(&text[start..end]), end);
        }
        if first.is_ascii_alphabetic() || first == b'_' {
            let mut end = start;
            loop {
                match bytes.get(end) {
                    Some(b':') if bytes.get(end + 1) == Some(&b':') => end += 2,
                    Some(b'!') if bytes.get(end + 1) == Some(&b'=') => break,
                    Some(&b) if b.is_ascii_alphanumeric() || b == b'_' || b == b'!' => end += 1,
                    _ => break,
                }
            }
            return token(Kind::Ident(&text[start..end]), end);
        }
        if first == b'\'' {
            let mut end = start + 1;
            while let Some(&b) = bytes.get(end) {
                match b {
                    b'\\' => end += 2,
                    b'\'' => return token(Kind::Char(&text[start + 1..end]), end + 1),
                    _ => end += 1,
                }
            }
            return token(Kind::Other, start + 1);
        }
        PUNCTS.iter().find(|p| rest.starts_with(**p)).map_or_else(
            || token(Kind::Other, start + 1),
            |p| token(Kind::Punct(p), start + p.len()),
        )
    }

    fn eat(&mut self, punct: &'static str) -> bool {
        let token = self.peek();
        if token.kind == Kind::Punct(punct) {
            self.pos = token.end;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, punct: &'static str) -> Result<(), ExprError> {
        if self.eat(punct) {
            Ok(())
        } else {
            Err(ExprError::Syntax(self.at(self.peek().start)))
        }
    }

    fn nest(&mut self, at: usize) -> Result<(), ExprError> {
        if self.depth >= MAX_DEPTH {
            return Err(ExprError::TooDeep(self.at(at)));
        }
        self.depth += 1;
        Ok(())
    }

    fn ternary(&mut self) -> Result<Val, ExprError> {
        let condition = self.binary(0)?;
        let question = self.peek();
        if question.kind != Kind::Punct("?") {
            return Ok(condition);
        }
        self.pos = question.end;
        self.nest(question.start)?;
        let take_first = condition.bits != 0;
        self.skip += usize::from(!take_first);
        let first = self.ternary()?;
        self.skip -= usize::from(!take_first);
        self.expect(":")?;
        let second_at = self.peek().start;
        self.skip += usize::from(take_first);
        let second = self.ternary()?;
        self.skip -= usize::from(take_first);
        self.depth -= 1;
        let ty = match (&first.ty, &second.ty) {
            (Ty::Bool, Ty::Bool) => Ty::Bool,
            (Ty::Ptr(_), _) | (_, Ty::Ptr(_)) => first.ty.clone(),
            _ => Ty::Int(self.common(&first, &second, second_at)?),
        };
        let chosen = if take_first { first } else { second };
        Ok(self.convert(&chosen, &ty))
    }

    fn binary(&mut self, level: usize) -> Result<Val, ExprError> {
        const LEVELS: [&[&str]; 10] = [
            &["||"],
            &["&&"],
            &["|"],
            &["^"],
            &["&"],
            &["==", "!="],
            &["<", "<=", ">", ">="],
            &["<<", ">>"],
            &["+", "-"],
            &["*", "/", "%"],
        ];
        let Some(ops) = LEVELS.get(level) else {
            return self.unary();
        };
        let mut lhs = self.binary(level + 1)?;
        loop {
            let token = self.peek();
            let Kind::Punct(op) = token.kind else {
                return Ok(lhs);
            };
            if !ops.contains(&op) {
                return Ok(lhs);
            }
            self.pos = token.end;
            let rhs_at = self.peek().start;
            // `&&` and `||` do not evaluate a right side that cannot matter.
            let skips = match op {
                "&&" => lhs.bits == 0,
                "||" => lhs.bits != 0,
                _ => false,
            };
            self.skip += usize::from(skips);
            let rhs = self.binary(level + 1)?;
            self.skip -= usize::from(skips);
            lhs = self.apply(op, &lhs, &rhs, rhs_at)?;
        }
    }

    /// The type both operands convert to (C's usual arithmetic conversions).
    fn common(&self, lhs: &Val, rhs: &Val, at: usize) -> Result<Int, ExprError> {
        let (a, b) = (
            self.int_of(lhs, at)?.promoted(),
            self.int_of(rhs, at)?.promoted(),
        );
        Ok(if a.signed == b.signed {
            if a.rank >= b.rank { a } else { b }
        } else {
            let (unsigned, signed) = if a.signed { (b, a) } else { (a, b) };
            if unsigned.rank >= signed.rank {
                unsigned
            } else if signed.bits > unsigned.bits {
                signed
            } else {
                Int::canonical(signed.rank, false)
            }
        })
    }

    fn int_of(&self, value: &Val, at: usize) -> Result<Int, ExprError> {
        match &value.ty {
            Ty::Bool => Ok(Int::canonical(3, true)),
            Ty::Int(int) => Ok(int.clone()),
            Ty::Ptr(_) => Err(ExprError::Type(self.at(at))),
        }
    }

    /// The value widened to 64 bits as its type widens it (sign-extended
    /// when signed).
    const fn extended(value: &Val) -> u64 {
        match &value.ty {
            Ty::Int(int) if int.signed => sign_extend(value.bits, int.bits).cast_unsigned(),
            _ => value.bits,
        }
    }

    fn convert(&self, value: &Val, ty: &Ty) -> Val {
        let wide = Self::extended(value);
        let bits = match ty {
            Ty::Bool => u64::from(value.bits != 0),
            Ty::Int(int) => wide & mask(int.bits),
            Ty::Ptr(_) => wide & mask(8 * u32::try_from(self.pointer_size()).unwrap_or(8)),
        };
        Val {
            ty: ty.clone(),
            bits,
        }
    }

    fn apply(&self, op: &str, lhs: &Val, rhs: &Val, at: usize) -> Result<Val, ExprError> {
        let boolean = |truth: bool| Val {
            ty: Ty::Bool,
            bits: u64::from(truth),
        };
        match op {
            "&&" => return Ok(boolean(lhs.bits != 0 && rhs.bits != 0)),
            "||" => return Ok(boolean(lhs.bits != 0 || rhs.bits != 0)),
            _ => {}
        }
        let pointers = (matches!(lhs.ty, Ty::Ptr(_)), matches!(rhs.ty, Ty::Ptr(_)));
        if pointers != (false, false) {
            return self.pointer_op(op, lhs, rhs, at);
        }
        if matches!(op, "<<" | ">>") {
            let ty = self.int_of(lhs, at)?.promoted();
            let value = self.convert(lhs, &Ty::Int(ty.clone()));
            let count = Self::extended(rhs)
                .cast_signed()
                .rem_euclid(i64::from(ty.bits));
            let count = u32::try_from(count).unwrap_or(0);
            let bits = if op == "<<" {
                value.bits << count
            } else if ty.signed {
                (sign_extend(value.bits, ty.bits) >> count).cast_unsigned()
            } else {
                value.bits >> count
            };
            return Ok(Val {
                bits: bits & mask(ty.bits),
                ty: Ty::Int(ty),
            });
        }
        let ty = self.common(lhs, rhs, at)?;
        let (a, b) = (
            self.convert(lhs, &Ty::Int(ty.clone())).bits,
            self.convert(rhs, &Ty::Int(ty.clone())).bits,
        );
        let (sa, sb) = (sign_extend(a, ty.bits), sign_extend(b, ty.bits));
        let ordering = if ty.signed { sa.cmp(&sb) } else { a.cmp(&b) };
        let bits = match op {
            "==" => return Ok(boolean(a == b)),
            "!=" => return Ok(boolean(a != b)),
            "<" => return Ok(boolean(ordering.is_lt())),
            "<=" => return Ok(boolean(ordering.is_le())),
            ">" => return Ok(boolean(ordering.is_gt())),
            ">=" => return Ok(boolean(ordering.is_ge())),
            "+" => a.wrapping_add(b),
            "-" => a.wrapping_sub(b),
            "*" => a.wrapping_mul(b),
            "&" => a & b,
            "|" => a | b,
            "^" => a ^ b,
            "/" | "%" if b == 0 => {
                if self.skip > 0 {
                    0
                } else {
                    return Err(ExprError::DivideByZero(self.at(at)));
                }
            }
            "/" if ty.signed => sa.wrapping_div(sb).cast_unsigned(),
            "%" if ty.signed => sa.wrapping_rem(sb).cast_unsigned(),
            "/" => a / b,
            "%" => a % b,
            _ => return Err(ExprError::Syntax(self.at(at))),
        };
        Ok(Val {
            bits: bits & mask(ty.bits),
            ty: Ty::Int(ty),
        })
    }

    /// Pointer arithmetic and comparison.
    fn pointer_op(&self, op: &str, lhs: &Val, rhs: &Val, at: usize) -> Result<Val, ExprError> {
        let width = mask(8 * u32::try_from(self.pointer_size()).unwrap_or(8));
        let type_error = || ExprError::Type(self.at(at));
        let scaled = |pointer: &Val, offset: &Val, negate: bool| -> Result<Val, ExprError> {
            let Ty::Ptr(ptr) = &pointer.ty else {
                return Err(type_error());
            };
            if !matches!(offset.ty, Ty::Int(_) | Ty::Bool) {
                return Err(type_error());
            }
            let size = ptr.pointee_size.ok_or_else(type_error)?;
            let delta = Self::extended(offset).wrapping_mul(size);
            let delta = if negate { delta.wrapping_neg() } else { delta };
            Ok(Val {
                ty: pointer.ty.clone(),
                bits: pointer.bits.wrapping_add(delta) & width,
            })
        };
        let boolean = |truth: bool| Val {
            ty: Ty::Bool,
            bits: u64::from(truth),
        };
        match (op, &lhs.ty, &rhs.ty) {
            ("+", Ty::Ptr(_), _) => scaled(lhs, rhs, false),
            ("+", _, Ty::Ptr(_)) => scaled(rhs, lhs, false),
            ("-", Ty::Ptr(ptr), Ty::Ptr(_)) => {
                let size = ptr.pointee_size.filter(|&s| s > 0).ok_or_else(type_error)?;
                let difference = sign_extend(
                    lhs.bits.wrapping_sub(rhs.bits) & width,
                    8 * u32::try_from(self.pointer_size()).unwrap_or(8),
                );
                let elements = difference.wrapping_div(size.cast_signed());
                let ty = if self.pointer_size() == 8 {
                    Int::canonical(5, true)
                } else {
                    Int::canonical(3, true)
                };
                Ok(Val {
                    bits: elements.cast_unsigned() & mask(ty.bits),
                    ty: Ty::Int(ty),
                })
            }
            ("-", Ty::Ptr(_), _) => scaled(lhs, rhs, true),
            ("==", ..) => Ok(boolean(lhs.bits == rhs.bits)),
            ("!=", ..) => Ok(boolean(lhs.bits != rhs.bits)),
            ("<", ..) => Ok(boolean(lhs.bits < rhs.bits)),
            ("<=", ..) => Ok(boolean(lhs.bits <= rhs.bits)),
            (">", ..) => Ok(boolean(lhs.bits > rhs.bits)),
            (">=", ..) => Ok(boolean(lhs.bits >= rhs.bits)),
            _ => Err(type_error()),
        }
    }

    fn unary(&mut self) -> Result<Val, ExprError> {
        let mut prefixes = Vec::new();
        loop {
            let token = self.peek();
            let prefix = match token.kind {
                Kind::Punct("-") => Prefix::Neg,
                Kind::Punct("+") => Prefix::Plus,
                Kind::Punct("~") => Prefix::BitNot,
                Kind::Punct("!") => Prefix::Not,
                Kind::Punct("*") => Prefix::Deref,
                Kind::Punct("(") => {
                    let saved = self.pos;
                    self.pos = token.end;
                    let cast = self
                        .type_spec()
                        .filter(|_| self.eat(")"))
                        .and_then(|spec| self.cast_type(&spec));
                    if let Some(ty) = cast {
                        Prefix::Cast(ty)
                    } else {
                        self.pos = saved;
                        break;
                    }
                }
                _ => break,
            };
            if !matches!(prefix, Prefix::Cast(_)) {
                self.pos = token.end;
            }
            prefixes.push((prefix, token.start));
        }
        let mut value = self.primary()?;
        for (prefix, at) in prefixes.into_iter().rev() {
            value = self.prefix(prefix, &value, at)?;
        }
        Ok(value)
    }

    fn prefix(&self, prefix: Prefix, value: &Val, at: usize) -> Result<Val, ExprError> {
        let promoted = |value: &Val| -> Result<Val, ExprError> {
            let ty = self.int_of(value, at)?.promoted();
            Ok(self.convert(value, &Ty::Int(ty)))
        };
        Ok(match prefix {
            Prefix::Neg => {
                let mut result = promoted(value)?;
                let Ty::Int(int) = &result.ty else {
                    return Err(ExprError::Type(self.at(at)));
                };
                result.bits = result.bits.wrapping_neg() & mask(int.bits);
                result
            }
            Prefix::Plus => promoted(value)?,
            Prefix::BitNot => {
                let mut result = promoted(value)?;
                let Ty::Int(int) = &result.ty else {
                    return Err(ExprError::Type(self.at(at)));
                };
                result.bits = !result.bits & mask(int.bits);
                result
            }
            Prefix::Not => Val {
                ty: Ty::Bool,
                bits: u64::from(value.bits == 0),
            },
            Prefix::Deref => self.deref(value, at)?,
            Prefix::Cast(ty) => self.convert(value, &ty),
        })
    }

    fn deref(&self, value: &Val, at: usize) -> Result<Val, ExprError> {
        let Ty::Ptr(ptr) = &value.ty else {
            return Err(ExprError::Type(self.at(at)));
        };
        let (Some(pointee), Some(size)) = (&ptr.pointee, ptr.pointee_size) else {
            return Err(ExprError::Type(self.at(at)));
        };
        let size_bytes = usize::try_from(size).unwrap_or(8).clamp(1, 8);
        let bits = if self.skip > 0 {
            0
        } else {
            self.ctx
                .read(value.bits, size_bytes)
                .ok_or_else(|| ExprError::MemoryAccess(self.at(at)))?
        };
        let width = u32::try_from(size_bytes * 8).unwrap_or(64);
        Ok(Val {
            ty: pointee.clone(),
            bits: bits & mask(width),
        })
    }

    /// Words and stars up to a `)`, without consuming the `)`.
    fn type_spec(&mut self) -> Option<TypeSpec> {
        let mut words = Vec::new();
        let mut stars = 0;
        loop {
            let token = self.peek();
            match token.kind {
                Kind::Ident(word) if stars == 0 => words.push(word),
                Kind::Punct("*") if !words.is_empty() => stars += 1,
                Kind::Punct(")") if !words.is_empty() => {
                    return Some(TypeSpec {
                        name: words.join(" "),
                        stars,
                    });
                }
                _ => return None,
            }
            self.pos = token.end;
        }
    }

    /// The type a cast names, if it is one the evaluator can hold.
    fn cast_type(&self, spec: &TypeSpec) -> Option<Ty> {
        let width = self.pointer_size();
        if spec.stars == 0 {
            return builtin(&spec.name, width);
        }
        let (pointee, pointee_size) = if spec.stars > 1 {
            let inner = TypeSpec {
                name: spec.name.clone(),
                stars: spec.stars - 1,
            };
            (self.cast_type(&inner), Some(width))
        } else if let Some(ty) = builtin(&spec.name, width) {
            let size = self.size_of(&ty);
            (Some(ty), Some(size))
        } else if spec.name == "void" {
            (None, None)
        } else {
            (None, self.ctx.size_of(spec.tag_stripped()))
        };
        Some(Ty::Ptr(Box::new(Ptr {
            pointee,
            pointee_size,
            name: format!("{} {}", spec.name, "*".repeat(spec.stars)),
        })))
    }

    fn size_of(&self, ty: &Ty) -> u64 {
        match ty {
            Ty::Bool => 1,
            Ty::Int(int) => u64::from(int.bits / 8),
            Ty::Ptr(_) => self.pointer_size(),
        }
    }

    /// The type of `sizeof`: `size_t`.
    fn size_t(&self) -> Ty {
        Ty::Int(if self.pointer_size() == 8 {
            Int::canonical(5, false)
        } else {
            Int::canonical(3, false)
        })
    }

    fn sizeof(&mut self, at: usize) -> Result<Val, ExprError> {
        self.nest(at)?;
        let open = self.peek();
        let size = if open.kind == Kind::Punct("(") {
            self.pos = open.end;
            let type_at = self.peek().start;
            if let Some(spec) = self.type_spec() {
                self.expect(")")?;
                self.type_size(&spec, type_at)?
            } else {
                self.pos = open.end;
                self.skip += 1;
                let value = self.ternary()?;
                self.skip -= 1;
                self.expect(")")?;
                self.size_of(&value.ty)
            }
        } else {
            self.skip += 1;
            let value = self.unary()?;
            self.skip -= 1;
            self.size_of(&value.ty)
        };
        self.depth -= 1;
        Ok(Val {
            ty: self.size_t(),
            bits: size & mask(8 * u32::try_from(self.pointer_size()).unwrap_or(8)),
        })
    }

    fn type_size(&self, spec: &TypeSpec, at: usize) -> Result<u64, ExprError> {
        if spec.stars > 0 {
            return Ok(self.pointer_size());
        }
        if let Some(ty) = builtin(&spec.name, self.pointer_size()) {
            return Ok(self.size_of(&ty));
        }
        match spec.name.as_str() {
            "float" => return Ok(4),
            "double" | "long double" => return Ok(8),
            _ => {}
        }
        self.ctx
            .size_of(spec.tag_stripped())
            .ok_or_else(|| ExprError::Unresolved(self.at(at)))
    }

    fn primary(&mut self) -> Result<Val, ExprError> {
        let token = self.peek();
        match token.kind {
            Kind::Punct("(") => {
                self.nest(token.start)?;
                self.pos = token.end;
                let value = self.ternary()?;
                self.expect(")")?;
                self.depth -= 1;
                Ok(value)
            }
            Kind::Number(word) => {
                self.pos = token.end;
                literal(word).ok_or_else(|| ExprError::Syntax(self.at(token.start)))?
            }
            Kind::Char(inner) => {
                self.pos = token.end;
                char_literal(inner).ok_or_else(|| ExprError::Syntax(self.at(token.start)))
            }
            Kind::Reg(name) => {
                self.pos = token.end;
                self.register(name, token.start)
            }
            Kind::Masm(inner) => {
                self.pos = token.end;
                if self.depth >= MAX_DEPTH {
                    return Err(ExprError::TooDeep(self.at(token.start)));
                }
                let (value, used) =
                    masm::Parser::new(inner, Some(self.ctx), self.depth + 1).run()?;
                if !inner[used..].trim().is_empty() {
                    return Err(ExprError::Syntax(inner[used..].trim().to_owned()));
                }
                Ok(Val {
                    ty: Ty::Int(Int::canonical(5, false)),
                    bits: value,
                })
            }
            Kind::Ident("sizeof") => {
                self.pos = token.end;
                self.sizeof(token.start)
            }
            Kind::Ident(word @ ("true" | "false")) => {
                self.pos = token.end;
                Ok(Val {
                    ty: Ty::Bool,
                    bits: u64::from(word == "true"),
                })
            }
            Kind::Ident(_) => Err(ExprError::Unresolved(self.at(token.start))),
            _ => Err(ExprError::Syntax(self.at(token.start))),
        }
    }

    fn register(&self, name: &str, at: usize) -> Result<Val, ExprError> {
        let name = name.to_ascii_lowercase();
        let pointer_size = self.pointer_size();
        let bad = || ExprError::BadRegister(self.at(at));
        if name.is_empty() {
            return Err(bad());
        }
        let (value, int) = if name.starts_with('$') {
            let value = match name.as_str() {
                "$ptrsize" => Some(pointer_size),
                "$pagesize" => Some(0x1000),
                "$ip" => self.ctx.register("$ip").or_else(|| {
                    self.ctx
                        .register(if pointer_size == 4 { "eip" } else { "rip" })
                }),
                _ => self.ctx.register(&name),
            };
            (value, Int::canonical(5, false))
        } else {
            let bits = register_bits(&name, pointer_size);
            (self.ctx.register(&name), Int::unsigned_of_width(bits))
        };
        let value = value.ok_or_else(bad)?;
        Ok(Val {
            bits: value & mask(int.bits),
            ty: Ty::Int(int),
        })
    }

    fn export(value: Val) -> CppValue {
        let (type_name, kind) = match value.ty {
            Ty::Bool => ("bool".to_owned(), CppKind::Bool),
            Ty::Int(int) => {
                let kind = match (int.chars, int.signed) {
                    (true, signed) => CppKind::Char { signed },
                    (false, true) => CppKind::Signed { bits: int.bits },
                    (false, false) => CppKind::Unsigned { bits: int.bits },
                };
                (int.name, kind)
            }
            Ty::Ptr(ptr) => (ptr.name, CppKind::Pointer),
        };
        CppValue {
            type_name,
            kind,
            value: value.bits,
        }
    }
}

/// A C++ integer literal with its type (C's rules, MSVC's `i64` suffix).
fn literal(word: &str) -> Option<Result<Val, ExprError>> {
    let lower = word.to_ascii_lowercase();
    let (body, suffix) = ["ui64", "i64", "ull", "llu", "ll", "ul", "lu", "u", "l"]
        .iter()
        .find_map(|suffix| lower.strip_suffix(suffix).map(|body| (body, *suffix)))
        .unwrap_or((lower.as_str(), ""));
    let (radix, digits) = match body.strip_prefix("0x") {
        Some(hex) => (16, hex),
        None if body.len() > 1 && body.starts_with('0') => (8, &body[1..]),
        None => (10, body),
    };
    if digits.is_empty() && radix != 8 {
        return None;
    }
    let mut value = 0u64;
    for c in digits.chars().filter(|&c| c != '`') {
        let digit = c.to_digit(radix)?;
        let Some(next) = value
            .checked_mul(u64::from(radix))
            .and_then(|v| v.checked_add(u64::from(digit)))
        else {
            return Some(Err(ExprError::Overflow(word.to_owned())));
        };
        value = next;
    }
    let decimal = radix == 10;
    let fits_int = value <= 0x7fff_ffff;
    let fits_unsigned = value <= 0xffff_ffff && !decimal;
    let fits_int64 = i64::try_from(value).is_ok();
    let (rank, signed) = match suffix {
        "" if fits_int => (3, true),
        "" if fits_unsigned => (3, false),
        "l" if fits_int => (4, true),
        "l" if fits_unsigned => (4, false),
        "u" if value <= 0xffff_ffff => (3, false),
        "ul" | "lu" if value <= 0xffff_ffff => (4, false),
        "" | "l" | "ll" | "i64" if fits_int64 => (5, true),
        _ => (5, false),
    };
    Some(Ok(Val {
        ty: Ty::Int(Int::canonical(rank, signed)),
        bits: value,
    }))
}

/// A character literal: one character is a `char`, several an `int` with
/// the first character most significant (MSVC).
fn char_literal(inner: &str) -> Option<Val> {
    let mut bytes = Vec::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        let byte = if c == '\\' {
            match chars.next()? {
                'n' => b'\n',
                't' => b'\t',
                'r' => b'\r',
                'a' => 7,
                'b' => 8,
                'f' => 12,
                'v' => 11,
                '0' => 0,
                'x' => {
                    let hex: String = chars
                        .clone()
                        .take_while(char::is_ascii_hexdigit)
                        .take(2)
                        .collect();
                    for _ in 0..hex.len() {
                        chars.next();
                    }
                    u8::from_str_radix(&hex, 16).ok()?
                }
                other if other.is_ascii() => other as u8,
                _ => return None,
            }
        } else if c.is_ascii() {
            c as u8
        } else {
            return None;
        };
        bytes.push(byte);
    }
    match bytes.as_slice() {
        [] => None,
        [byte] => Some(Val {
            ty: Ty::Int(Int::new(8, true, 1, true, "char")),
            bits: u64::from(*byte),
        }),
        many if many.len() <= 4 => Some(Val {
            ty: Ty::Int(Int::canonical(3, true)),
            bits: many
                .iter()
                .fold(0, |value, &byte| value << 8 | u64::from(byte)),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testctx::Machine;
    use super::super::{ExprError, evaluate_cpp};
    use super::{CppKind, CppValue};

    fn typed(text: &str, machine: &Machine) -> (String, u64) {
        let value = evaluate_cpp(text, machine).unwrap_or_else(|e| panic!("{text}: {e}"));
        (value.type_name, value.value)
    }

    fn x86(text: &str) -> (String, u64) {
        typed(text, &Machine::x86())
    }

    fn x64(text: &str) -> (String, u64) {
        typed(text, &Machine::x64())
    }

    fn pair(name: &str, value: u64) -> (String, u64) {
        (name.to_owned(), value)
    }

    #[test]
    fn sizeof_is_size_t() {
        // The walkthrough (x86) and public x64 sessions.
        assert_eq!(x86("sizeof(nt!_POOL_HEADER)"), pair("unsigned int", 8));
        assert_eq!(x64("sizeof(nt!_POOL_HEADER)"), pair("unsigned int64", 0x10));
        assert_eq!(
            x64("sizeof(_HANDLE_TABLE_ENTRY)"),
            pair("unsigned int64", 0x10)
        );
        assert_eq!(
            x64("(sizeof(_HANDLE_TABLE_ENTRY))"),
            pair("unsigned int64", 0x10)
        );
        assert_eq!(
            x86("sizeof(struct _UNICODE_STRING)"),
            pair("unsigned int", 8)
        );
        assert_eq!(x86("sizeof(int)"), pair("unsigned int", 4));
        assert_eq!(x64("sizeof(void *)"), pair("unsigned int64", 8));
        assert_eq!(x86("sizeof(nt!_POOL_HEADER *)"), pair("unsigned int", 4));
        assert_eq!(x64("sizeof(unsigned __int64)"), pair("unsigned int64", 8));
        assert_eq!(x64("sizeof(double)"), pair("unsigned int64", 8));
        assert_eq!(x64("sizeof(@eax)"), pair("unsigned int64", 4));
        assert_eq!(x64("sizeof 1+1"), pair("unsigned int64", 5));
        assert_eq!(x64("sizeof(*(int*)0)"), pair("unsigned int64", 4));
        assert_eq!(x86("sizeof(nt!_POOL_HEADER)*2"), pair("unsigned int", 0x10));
        assert_eq!(
            evaluate_cpp("sizeof(nt!_NOPE)", &Machine::x86()),
            Err(ExprError::Unresolved("nt!_NOPE)".into()))
        );
    }

    #[test]
    fn numbers_are_decimal() {
        assert_eq!(x64("10"), pair("int", 10));
        assert_eq!(x64("0x10"), pair("int", 0x10));
        assert_eq!(x64("010"), pair("int", 8));
        assert_eq!(x64("0"), pair("int", 0));
        assert_eq!(x64("1+2"), pair("int", 3));
        assert_eq!(x64("0xffffffff"), pair("unsigned int", 0xffff_ffff));
        assert_eq!(x64("4294967295"), pair("int64", 0xffff_ffff));
        assert_eq!(
            x64("0xffffffff`fffffff8"),
            pair("unsigned int64", 0xffff_ffff_ffff_fff8)
        );
        assert_eq!(x64("5u"), pair("unsigned int", 5));
        assert_eq!(x64("5L"), pair("long", 5));
        assert_eq!(x64("5ul"), pair("unsigned long", 5));
        assert_eq!(x64("5i64"), pair("int64", 5));
        assert_eq!(x64("5ui64"), pair("unsigned int64", 5));
        assert_eq!(x64("5ull"), pair("unsigned int64", 5));
        assert!(evaluate_cpp("0x", &Machine::x64()).is_err());
        assert!(evaluate_cpp("09", &Machine::x64()).is_err());
        assert!(evaluate_cpp("1a", &Machine::x64()).is_err());
        assert!(matches!(
            evaluate_cpp("99999999999999999999", &Machine::x64()),
            Err(ExprError::Overflow(_))
        ));
    }

    #[test]
    fn registers_take_their_width() {
        assert_eq!(x86("@eax"), pair("unsigned int", 0x91c2_6130));
        assert_eq!(x86("@EAX + 1"), pair("unsigned int", 0x91c2_6131));
        assert_eq!(x64("@rax"), pair("unsigned int64", 0xffff_e584_2206_4220));
        assert_eq!(x64("@$t0"), pair("unsigned int64", 5));
        assert_eq!(x64("@$t0 + @$t0"), pair("unsigned int64", 10));
        assert_eq!(x64("@$ptrsize"), pair("unsigned int64", 8));
        assert_eq!(x86("@$ip"), pair("unsigned int64", 0xa04c_305c));
        assert_eq!(
            evaluate_cpp("@nope", &Machine::x86()),
            Err(ExprError::BadRegister("@nope".into()))
        );
        // Without `@` a name is a symbol, which needs type information.
        assert_eq!(
            evaluate_cpp("eax", &Machine::x86()),
            Err(ExprError::Unresolved("eax".into()))
        );
    }

    #[test]
    fn conversions_follow_c() {
        assert_eq!(x64("-1"), pair("int", 0xffff_ffff));
        assert_eq!(x64("-1 + 0u"), pair("unsigned int", 0xffff_ffff));
        assert_eq!(x64("-1 < 0u"), pair("bool", 0));
        assert_eq!(x64("-1 < 0"), pair("bool", 1));
        assert_eq!(x64("1L + 1u"), pair("unsigned long", 2));
        assert_eq!(x64("1i64 + 1u"), pair("int64", 2));
        assert_eq!(x64("(char)300"), pair("char", 44));
        assert_eq!(x64("(unsigned char)0x20"), pair("unsigned char", 0x20));
        assert_eq!(
            x64("(ULONGLONG)(~0x0000000000000007)"),
            pair("ULONGLONG", 0xffff_ffff_ffff_fff8)
        );
        assert_eq!(x64("(ULONG)-1 + 1"), pair("unsigned long", 0));
        assert_eq!(x64("(short)-1"), pair("short", 0xffff));
        assert_eq!(x64("(short)-1 + 0"), pair("int", 0xffff_ffff));
        assert_eq!(x64("-7 / 2"), pair("int", (-3i32).cast_unsigned().into()));
        assert_eq!(x64("-7 % 2"), pair("int", (-1i32).cast_unsigned().into()));
        assert_eq!(x64("-8 >> 1"), pair("int", (-4i32).cast_unsigned().into()));
        assert_eq!(x64("1 << 33"), pair("int", 2));
        assert_eq!(x64("0x80000000 >> 4"), pair("unsigned int", 0x0800_0000));
        assert_eq!(x64("7 & 3 | 8 ^ 1"), pair("int", 0xb));
        assert_eq!(x64("2 * 3 + 4"), pair("int", 10));
        assert_eq!(
            x64("(unsigned int)5 - 6"),
            pair("unsigned int", 0xffff_ffff)
        );
    }

    #[test]
    fn logic_and_ternary() {
        assert_eq!(x64("1 == 1"), pair("bool", 1));
        assert_eq!(x64("!0"), pair("bool", 1));
        assert_eq!(x64("true && false"), pair("bool", 0));
        assert_eq!(x64("1 || 1/0"), pair("bool", 1));
        assert_eq!(x64("0 && *(int*)0"), pair("bool", 0));
        assert_eq!(x64("1 ? 2 : 1/0"), pair("int", 2));
        assert_eq!(x64("0 ? 2u : 3"), pair("unsigned int", 3));
        assert_eq!(x64("1 ? 0 ? 5 : 6 : 7"), pair("int", 6));
        assert_eq!(
            evaluate_cpp("1/0", &Machine::x64()),
            Err(ExprError::DivideByZero("0".into()))
        );
    }

    #[test]
    fn pointers() {
        let m = Machine::x86();
        let value = evaluate_cpp("(void *)0x538", &m).unwrap();
        assert_eq!(
            value,
            CppValue {
                type_name: "void *".into(),
                kind: CppKind::Pointer,
                value: 0x538
            }
        );
        assert_eq!(
            x86("*(unsigned long *)0x82b37df4"),
            pair("unsigned long", 0x6463_6261)
        );
        assert_eq!(
            x86("*(ULONG *)@@masm(nt!PoolHitTag)"),
            pair("ULONG", 0x6463_6261)
        );
        assert_eq!(
            x86("*((unsigned char *)0x82b37df4 + 2)"),
            pair("unsigned char", 0x63)
        );
        assert_eq!(
            x86("*((unsigned short *)0x82b37df4 + 1)"),
            pair("unsigned short", 0x6463)
        );
        assert_eq!(x86("(int *)8 - (int *)0"), pair("int", 2));
        assert_eq!(x64("(int *)8 - (int *)0"), pair("int64", 2));
        assert_eq!(
            x86("(nt!_POOL_HEADER *)0x91c26130 - 1"),
            pair("nt!_POOL_HEADER *", 0x91c2_6128)
        );
        assert_eq!(x86("(void *)-1"), pair("void *", 0xffff_ffff));
        assert_eq!(x64("(void *)-1"), pair("void *", u64::MAX));
        assert_eq!(
            x64("**(unsigned long **)0xfffff80002c31f10"),
            pair("unsigned long", 0x6463_6261)
        );
        assert!(matches!(
            evaluate_cpp("*(int *)0", &m),
            Err(ExprError::MemoryAccess(_))
        ));
        assert!(matches!(
            evaluate_cpp("*(void *)0", &m),
            Err(ExprError::Type(_))
        ));
        assert!(matches!(evaluate_cpp("*5", &m), Err(ExprError::Type(_))));
        assert!(matches!(
            evaluate_cpp("(void *)1 + 1", &m),
            Err(ExprError::Type(_))
        ));
        assert!(matches!(
            evaluate_cpp("-(void *)1", &m),
            Err(ExprError::Type(_))
        ));
        assert_eq!(x86("(void *)1 == (void *)1"), pair("bool", 1));
    }

    #[test]
    fn characters() {
        assert_eq!(x64("'A'"), pair("char", 0x41));
        assert_eq!(x64("'\\n'"), pair("char", 10));
        assert_eq!(x64("'\\x41'"), pair("char", 0x41));
        assert_eq!(x64("'\\''"), pair("char", 0x27));
        assert_eq!(x64("'dcba'"), pair("int", 0x6463_6261));
        assert!(evaluate_cpp("''", &Machine::x64()).is_err());
        assert!(evaluate_cpp("'abcde'", &Machine::x64()).is_err());
        assert!(evaluate_cpp("'a", &Machine::x64()).is_err());
    }

    #[test]
    fn masm_inside_cpp() {
        assert_eq!(x64("@@masm(10)"), pair("unsigned int64", 0x10));
        assert_eq!(x64("@@(10)"), pair("unsigned int64", 0x10));
        assert_eq!(
            x86("@@masm(nt!PoolHitTag) + 4"),
            pair("unsigned int64", 0x82b3_7df8)
        );
        assert!(evaluate_cpp("@@masm(1 2)", &Machine::x64()).is_err());
        assert!(evaluate_cpp("@@masm(1", &Machine::x64()).is_err());
    }

    #[test]
    fn comments_and_errors() {
        assert_eq!(x64("1 // the rest is ignored"), pair("int", 1));
        assert_eq!(
            evaluate_cpp("1 2", &Machine::x64()),
            Err(ExprError::Syntax("2".into()))
        );
        assert_eq!(
            evaluate_cpp("(1", &Machine::x64()),
            Err(ExprError::Syntax(String::new()))
        );
        assert!(evaluate_cpp("", &Machine::x64()).is_err());
        assert!(evaluate_cpp("#FIELD_OFFSET(_PEB, BeingDebugged)", &Machine::x64()).is_err());
        let deep = format!("{}1{}", "(".repeat(65), ")".repeat(65));
        assert!(matches!(
            evaluate_cpp(&deep, &Machine::x64()),
            Err(ExprError::TooDeep(_))
        ));
        let chain = "1?".repeat(100) + "1" + &":1".repeat(100);
        assert!(matches!(
            evaluate_cpp(&chain, &Machine::x64()),
            Err(ExprError::TooDeep(_))
        ));
        let casts = "(int)".repeat(10_000) + "1";
        assert_eq!(x64(&casts), pair("int", 1));
    }

    #[test]
    fn to_u64_sign_extends() {
        let value = |kind, value| CppValue {
            type_name: String::new(),
            kind,
            value,
        };
        assert_eq!(
            value(CppKind::Signed { bits: 32 }, 0xffff_ffff).to_u64(),
            u64::MAX
        );
        assert_eq!(
            value(CppKind::Unsigned { bits: 32 }, 0xffff_ffff).to_u64(),
            0xffff_ffff
        );
        assert_eq!(
            value(CppKind::Char { signed: true }, 0x80).to_u64(),
            0xffff_ffff_ffff_ff80
        );
        assert_eq!(value(CppKind::Pointer, 0x8000_0000).to_u64(), 0x8000_0000);
    }
}
