//! The MASM evaluator: kd's default syntax, every value a 64-bit unsigned
//! number. Precedence, lowest first: `or |`, `xor ^`, `and &`, comparisons
//! (`= == != < > <= >=`, 1 or 0), shifts (`<< >> >>>`), `+ -`, `* / % mod`;
//! unary `- + ~ not hi low by wo dwo qwo poi` bind tighter than all of them.

use super::{
    Context, ExprError, MAX_DEPTH, cpp, matching_paren, register_bits, rest_at, sign_extend_32,
};

/// Registers kd reads without an `@` ("Register Syntax").
const COMMON_REGISTERS: [&str; 9] = [
    "eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "eip", "efl",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Shl,
    Shr,
    Sar,
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    And,
    Xor,
    Or,
    Tilde,
    Open,
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind<'t> {
    End,
    Op(Op),
    /// A number, name, `@register`, `$pseudo` or `module!symbol`.
    Word(&'t str),
    /// The text between single quotes.
    Char(&'t str),
    /// `.`: the instruction pointer.
    Dot,
    /// `@@(...)`, `@@c++(...)` or `@@masm(...)`.
    Nested {
        cpp: bool,
        inner: &'t str,
    },
    Other,
}

#[derive(Debug, Clone, Copy)]
struct Token<'t> {
    kind: Kind<'t>,
    start: usize,
    end: usize,
}

/// A unary operator waiting for its operand.
#[derive(Debug, Clone, Copy)]
enum Prefix {
    Neg,
    Plus,
    BitNot,
    Not,
    Hi,
    Low,
    Read(usize),
    Poi,
}

/// Why a word is not a MASM number.
enum NumberError {
    NotNumber,
    Overflow,
}

/// A recursive-descent parser that evaluates as it goes; without a context
/// it only checks the syntax (every name is 0).
pub(super) struct Parser<'t, 'c> {
    text: &'t str,
    pos: usize,
    /// Start of the last token consumed (where kd reports memory errors).
    last: usize,
    ctx: Option<&'c dyn Context>,
    depth: usize,
}

impl<'t, 'c> Parser<'t, 'c> {
    pub(super) fn new(text: &'t str, ctx: Option<&'c dyn Context>, depth: usize) -> Self {
        Self {
            text,
            pos: 0,
            last: 0,
            ctx,
            depth,
        }
    }

    /// The leading expression's value (32 bits on x86) and its length.
    pub(super) fn run(mut self) -> Result<(u64, usize), ExprError> {
        let value = self.binary(0)?;
        let value = if self.pointer_size() == 4 {
            value & 0xffff_ffff
        } else {
            value
        };
        Ok((value, self.pos))
    }

    fn pointer_size(&self) -> u64 {
        self.ctx.map_or(8, Context::pointer_size)
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
        let next = |offset: usize| bytes.get(start + offset).copied();
        let token = |kind, len: usize| Token {
            kind,
            start,
            end: start + len,
        };
        let op = |op, len| token(Kind::Op(op), len);
        let Some(first) = next(0) else {
            return token(Kind::End, 0);
        };
        match first {
            b'(' => op(Op::Open, 1),
            b')' => op(Op::Close, 1),
            b'+' => op(Op::Add, 1),
            b'-' => op(Op::Sub, 1),
            b'*' => op(Op::Mul, 1),
            b'/' => op(Op::Div, 1),
            b'%' => op(Op::Rem, 1),
            b'~' => op(Op::Tilde, 1),
            b'&' => op(Op::And, 1),
            b'^' => op(Op::Xor, 1),
            b'|' => op(Op::Or, 1),
            b'<' => match next(1) {
                Some(b'<') => op(Op::Shl, 2),
                Some(b'=') => op(Op::Le, 2),
                _ => op(Op::Lt, 1),
            },
            b'>' => match (next(1), next(2)) {
                (Some(b'>'), Some(b'>')) => op(Op::Sar, 3),
                (Some(b'>'), _) => op(Op::Shr, 2),
                (Some(b'='), _) => op(Op::Ge, 2),
                _ => op(Op::Gt, 1),
            },
            b'=' if next(1) == Some(b'=') => op(Op::Eq, 2),
            b'=' => op(Op::Eq, 1),
            b'!' if next(1) == Some(b'=') => op(Op::Ne, 2),
            b'\'' => text[start + 1..].find('\'').map_or_else(
                || token(Kind::Other, 1),
                |len| token(Kind::Char(&text[start + 1..start + 1 + len]), len + 2),
            ),
            b'.' if !next(1).is_some_and(is_word_byte) => token(Kind::Dot, 1),
            b'@' if next(1) == Some(b'@') => self.nested(start),
            byte if is_word_byte(byte) || byte == b'@' || byte == b'!' => {
                let mut end = start + 1;
                loop {
                    match bytes.get(end).copied() {
                        Some(b'!') if bytes.get(end + 1) != Some(&b'=') => end += 1,
                        Some(b'`') if bytes.get(end + 1).is_some_and(u8::is_ascii_alphanumeric) => {
                            end += 1;
                        }
                        Some(b':') if bytes.get(end + 1) == Some(&b':') => end += 2,
                        Some(byte) if is_word_byte(byte) => end += 1,
                        _ => break,
                    }
                }
                token(Kind::Word(&text[start..end]), end - start)
            }
            _ => token(Kind::Other, 1),
        }
    }

    /// `@@name(...)` at `start`.
    fn nested(&self, start: usize) -> Token<'t> {
        let text = self.text;
        let open = text[start + 2..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '+'))
            .map_or(text.len(), |len| start + 2 + len);
        let name = &text[start + 2..open];
        let close = (text.as_bytes().get(open) == Some(&b'('))
            .then(|| matching_paren(text, open))
            .flatten();
        let evaluator = match name.to_ascii_lowercase().as_str() {
            "" | "c++" => Some(true),
            "masm" => Some(false),
            _ => None,
        };
        match (close, evaluator) {
            (Some(close), Some(cpp)) => Token {
                kind: Kind::Nested {
                    cpp,
                    inner: &text[open + 1..close],
                },
                start,
                end: close + 1,
            },
            _ => Token {
                kind: Kind::Other,
                start,
                end: start + 1,
            },
        }
    }

    const fn consume(&mut self, token: Token<'_>) {
        self.pos = token.end;
        self.last = token.start;
    }

    /// The binary operator of precedence `level` (0 = `or`, 6 = `*`), if the
    /// token is one.
    fn binary_op(level: usize, token: Token<'_>) -> Option<Op> {
        let op = match token.kind {
            Kind::Op(op) => op,
            Kind::Word(word) => match word.to_ascii_lowercase().as_str() {
                "or" => Op::Or,
                "xor" => Op::Xor,
                "and" => Op::And,
                "mod" => Op::Rem,
                _ => return None,
            },
            _ => return None,
        };
        let op_level = match op {
            Op::Or => 0,
            Op::Xor => 1,
            Op::And => 2,
            Op::Eq | Op::Ne | Op::Lt | Op::Gt | Op::Le | Op::Ge => 3,
            Op::Shl | Op::Shr | Op::Sar => 4,
            Op::Add | Op::Sub => 5,
            Op::Mul | Op::Div | Op::Rem => 6,
            Op::Tilde | Op::Open | Op::Close => return None,
        };
        (op_level == level).then_some(op)
    }

    fn binary(&mut self, level: usize) -> Result<u64, ExprError> {
        if level > 6 {
            return self.unary();
        }
        let mut lhs = self.binary(level + 1)?;
        loop {
            let token = self.peek();
            let Some(op) = Self::binary_op(level, token) else {
                return Ok(lhs);
            };
            self.consume(token);
            let rhs_at = self.peek().start;
            let rhs = self.binary(level + 1)?;
            lhs = self.apply(op, lhs, rhs, rhs_at)?;
        }
    }

    fn apply(&self, op: Op, lhs: u64, rhs: u64, rhs_at: usize) -> Result<u64, ExprError> {
        let divide = |f: fn(u64, u64) -> u64| {
            if rhs != 0 {
                Ok(f(lhs, rhs))
            } else if self.ctx.is_none() {
                Ok(0)
            } else {
                Err(ExprError::DivideByZero(self.at(rhs_at)))
            }
        };
        Ok(match op {
            Op::Add => lhs.wrapping_add(rhs),
            Op::Sub => lhs.wrapping_sub(rhs),
            Op::Mul => lhs.wrapping_mul(rhs),
            Op::Div => divide(|a, b| a / b)?,
            Op::Rem => divide(|a, b| a % b)?,
            Op::Shl => u32::try_from(rhs)
                .ok()
                .and_then(|n| lhs.checked_shl(n))
                .unwrap_or(0),
            Op::Shr => u32::try_from(rhs)
                .ok()
                .and_then(|n| lhs.checked_shr(n))
                .unwrap_or(0),
            Op::Sar => (lhs.cast_signed() >> rhs.min(63)).cast_unsigned(),
            Op::Eq => u64::from(lhs == rhs),
            Op::Ne => u64::from(lhs != rhs),
            Op::Lt => u64::from(lhs < rhs),
            Op::Gt => u64::from(lhs > rhs),
            Op::Le => u64::from(lhs <= rhs),
            Op::Ge => u64::from(lhs >= rhs),
            Op::And => lhs & rhs,
            Op::Xor => lhs ^ rhs,
            Op::Or => lhs | rhs,
            Op::Tilde | Op::Open | Op::Close => lhs,
        })
    }

    fn unary(&mut self) -> Result<u64, ExprError> {
        let mut prefixes = Vec::new();
        loop {
            let token = self.peek();
            let prefix = match token.kind {
                Kind::Op(Op::Sub) => Prefix::Neg,
                Kind::Op(Op::Add) => Prefix::Plus,
                Kind::Op(Op::Tilde) => Prefix::BitNot,
                Kind::Word(word) => match word.to_ascii_lowercase().as_str() {
                    "not" => Prefix::Not,
                    "hi" => Prefix::Hi,
                    "low" => Prefix::Low,
                    "by" => Prefix::Read(1),
                    "wo" => Prefix::Read(2),
                    "dwo" => Prefix::Read(4),
                    "qwo" => Prefix::Read(8),
                    "poi" => Prefix::Poi,
                    _ => break,
                },
                _ => break,
            };
            self.consume(token);
            prefixes.push(prefix);
        }
        let mut value = self.primary()?;
        let at = self.last;
        for prefix in prefixes.into_iter().rev() {
            value = match prefix {
                Prefix::Neg => value.wrapping_neg(),
                Prefix::Plus => value,
                Prefix::BitNot => !value,
                Prefix::Not => u64::from(value == 0),
                Prefix::Hi => value >> 16 & 0xffff,
                Prefix::Low => value & 0xffff,
                Prefix::Read(size) => self.read(value, size, at)?,
                Prefix::Poi => {
                    let size = if self.pointer_size() == 4 { 4 } else { 8 };
                    let pointer = self.read(value, size, at)?;
                    if size == 4 {
                        sign_extend_32(pointer)
                    } else {
                        pointer
                    }
                }
            };
        }
        Ok(value)
    }

    fn read(&self, address: u64, size: usize, at: usize) -> Result<u64, ExprError> {
        let Some(ctx) = self.ctx else {
            return Ok(0);
        };
        let address = if ctx.pointer_size() == 4 {
            address & 0xffff_ffff
        } else {
            address
        };
        let mask = if size >= 8 {
            u64::MAX
        } else {
            (1u64 << (size * 8)) - 1
        };
        ctx.read(address, size)
            .map(|value| value & mask)
            .ok_or_else(|| ExprError::MemoryAccess(self.at(at)))
    }

    fn primary(&mut self) -> Result<u64, ExprError> {
        let token = self.peek();
        match token.kind {
            Kind::Op(Op::Open) => {
                if self.depth >= MAX_DEPTH {
                    return Err(ExprError::TooDeep(self.at(token.start)));
                }
                self.consume(token);
                self.depth += 1;
                let value = self.binary(0)?;
                self.depth -= 1;
                let close = self.peek();
                if close.kind != Kind::Op(Op::Close) {
                    return Err(ExprError::Syntax(self.at(close.start)));
                }
                self.consume(close);
                Ok(value)
            }
            Kind::Char(inner) => {
                self.consume(token);
                char_constant(inner).ok_or_else(|| ExprError::Syntax(self.at(token.start)))
            }
            Kind::Dot => {
                self.consume(token);
                self.register_or_error("$ip", token.start)
            }
            Kind::Nested { cpp, inner } => {
                if self.depth >= MAX_DEPTH {
                    return Err(ExprError::TooDeep(self.at(token.start)));
                }
                self.consume(token);
                let Some(ctx) = self.ctx else {
                    return Ok(0);
                };
                if cpp {
                    cpp::evaluate(inner, ctx, self.depth + 1).map(|value| value.to_u64())
                } else {
                    let (value, used) = Parser::new(inner, Some(ctx), self.depth + 1).run()?;
                    match inner[used..].trim() {
                        "" => Ok(value),
                        rest => Err(ExprError::Syntax(rest.to_owned())),
                    }
                }
            }
            Kind::Word(word) => {
                self.consume(token);
                self.word(word, token.start)
            }
            Kind::End | Kind::Op(_) | Kind::Other => Err(ExprError::Syntax(self.at(token.start))),
        }
    }

    /// A register's value, sign-extended when it is a 32-bit one.
    fn register(&self, name: &str) -> Option<u64> {
        let ctx = self.ctx?;
        let pointer_size = ctx.pointer_size();
        let value = match name {
            "$ptrsize" => Some(pointer_size),
            "$pagesize" => Some(0x1000),
            "$ip" => ctx
                .register("$ip")
                .or_else(|| ctx.register(if pointer_size == 4 { "eip" } else { "rip" })),
            _ => ctx.register(name),
        }?;
        let bits = register_bits(name, pointer_size);
        Some(if !name.starts_with('$') && bits == 32 {
            sign_extend_32(value)
        } else {
            value
        })
    }

    fn register_or_error(&self, name: &str, at: usize) -> Result<u64, ExprError> {
        if self.ctx.is_none() {
            return Ok(0);
        }
        self.register(name)
            .ok_or_else(|| ExprError::BadRegister(self.at(at)))
    }

    /// An address from the symbol tables: sign-extended on x86.
    fn address(&self, address: u64) -> u64 {
        if self.pointer_size() == 4 {
            sign_extend_32(address)
        } else {
            address
        }
    }

    fn word(&self, word: &str, at: usize) -> Result<u64, ExprError> {
        let unresolved = || ExprError::Unresolved(self.at(at));
        if word.starts_with(|c: char| c.is_ascii_digit()) {
            return number(word).map_err(|error| match error {
                NumberError::NotNumber => ExprError::Syntax(self.at(at)),
                NumberError::Overflow => ExprError::Overflow(self.at(at)),
            });
        }
        let Some(ctx) = self.ctx else {
            return Ok(0);
        };
        if let Some(name) = word.strip_prefix('@') {
            return self.register_or_error(&name.to_ascii_lowercase(), at);
        }
        if word.starts_with('$') && !word.contains('!') {
            return self.register_or_error(&word.to_ascii_lowercase(), at);
        }
        if let Some((module, name)) = word.split_once('!') {
            if name.is_empty() {
                return Err(unresolved());
            }
            let module = (!module.is_empty() && module != "$").then_some(module);
            return ctx
                .symbol(module, name)
                .map(|address| self.address(address))
                .ok_or_else(unresolved);
        }
        let lower = word.to_ascii_lowercase();
        if COMMON_REGISTERS.contains(&lower.as_str())
            && let Some(value) = self.register(&lower)
        {
            return Ok(value);
        }
        match number(word) {
            Ok(value) => return Ok(value),
            Err(NumberError::Overflow) => return Err(ExprError::Overflow(self.at(at))),
            Err(NumberError::NotNumber) => {}
        }
        ctx.symbol(None, word)
            .or_else(|| ctx.module(word))
            .map(|address| self.address(address))
            .or_else(|| self.register(&lower))
            .ok_or_else(unresolved)
    }
}

/// Bytes a word may contain after its first.
const fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'$'
}

/// A MASM number: `0x`, `0n`, `0t`, `0y` prefixes, an `h` suffix, default
/// radix 16, backticks between digits. Without a backtick, kernel-mode kd
/// sign-extends `0x80000000..=0xffffffff`.
fn number(word: &str) -> Result<u64, NumberError> {
    let lower = word.to_ascii_lowercase();
    let (radix, digits, prefixed) = match lower.get(..2) {
        Some("0x") => (16, &lower[2..], true),
        Some("0n") => (10, &lower[2..], true),
        Some("0t") => (8, &lower[2..], true),
        Some("0y") => (2, &lower[2..], true),
        _ => match lower.strip_suffix('h') {
            Some(digits) if !digits.is_empty() => (16, digits, false),
            _ => (16, lower.as_str(), false),
        },
    };
    let mut value = 0u64;
    let mut backtick = false;
    let mut any = false;
    for c in digits.chars() {
        if c == '`' {
            backtick = true;
            continue;
        }
        let digit = c.to_digit(radix).ok_or(NumberError::NotNumber)?;
        value = value
            .checked_mul(u64::from(radix))
            .and_then(|v| v.checked_add(u64::from(digit)))
            .ok_or(NumberError::Overflow)?;
        any = true;
    }
    if !any && !prefixed {
        return Err(NumberError::NotNumber);
    }
    if !backtick && (0x8000_0000..=0xffff_ffff).contains(&value) {
        value = sign_extend_32(value);
    }
    Ok(value)
}

/// `'dcba'`: up to eight ASCII characters, the first the most significant
/// byte (`ed nt!PoolHitTag 'dcba'` stores 64636261).
fn char_constant(inner: &str) -> Option<u64> {
    if inner.is_empty() || inner.len() > 8 || !inner.is_ascii() {
        return None;
    }
    Some(
        inner
            .bytes()
            .fold(0, |value, byte| value << 8 | u64::from(byte)),
    )
}

#[cfg(test)]
mod tests {
    use super::super::testctx::Machine;
    use super::super::{ExprError, evaluate, expression_len};

    fn x86(text: &str) -> Result<u64, ExprError> {
        evaluate(text, &Machine::x86())
    }

    fn x64(text: &str) -> Result<u64, ExprError> {
        evaluate(text, &Machine::x64())
    }

    #[test]
    fn numbers_default_to_hex() {
        assert_eq!(x64("10"), Ok(0x10));
        assert_eq!(x64("0x4AB3"), Ok(0x4ab3));
        assert_eq!(x64("0X4aB3"), Ok(0x4ab3));
        assert_eq!(x64("4ab3h"), Ok(0x4ab3));
        assert_eq!(x64("4aB3H"), Ok(0x4ab3));
        assert_eq!(x64("0n10"), Ok(10));
        assert_eq!(x64("0t10"), Ok(8));
        assert_eq!(x64("0y101"), Ok(5));
        assert_eq!(x64("0x"), Ok(0));
        assert_eq!(x64("0n"), Ok(0));
        assert_eq!(x64("fffff800`02a00000"), Ok(0xffff_f800_02a0_0000));
        assert_eq!(x64("dcba"), Ok(0xdcba));
        // The docs' example: @r10 + 0x10 + 0t10 + 0y10 with r10 = 0.
        let mut m = super::super::testctx::Machine::x64();
        m.registers.insert("r10", 0);
        assert_eq!(evaluate("@r10 + 0x10 + 0t10 + 0y10", &m), Ok(26));
    }

    #[test]
    fn bad_numbers() {
        assert_eq!(x64("0t9"), Err(ExprError::Syntax("0t9".into())));
        assert_eq!(x64("12g"), Err(ExprError::Syntax("12g".into())));
        assert_eq!(
            x64("1ffffffffffffffff"),
            Err(ExprError::Overflow("1ffffffffffffffff".into()))
        );
        assert_eq!(
            x64("fffffffffffffffff"),
            Err(ExprError::Overflow("fffffffffffffffff".into()))
        );
    }

    #[test]
    fn kernel_sign_extension() {
        // "Sign Extension": constants 80000000..ffffffff are sign-extended
        // in kernel mode unless a backtick is written.
        assert_eq!(x64("80000000"), Ok(0xffff_ffff_8000_0000));
        assert_eq!(x64("00000000EEAA1122"), Ok(0xffff_ffff_eeaa_1122));
        assert_eq!(x64("00000000`EEAA1122"), Ok(0xeeaa_1122));
        assert_eq!(x64("0`EEAA1122"), Ok(0xeeaa_1122));
        assert_eq!(x64("12345678"), Ok(0x1234_5678));
        // The docs' masking idiom.
        assert_eq!(x64("0x0`FFFFFFFF & 80000000"), Ok(0x8000_0000));
        // 32-bit registers too: eax = 22064220 here, positive.
        assert_eq!(x64("@eax"), Ok(0x2206_4220));
        let mut m = Machine::x64();
        m.registers.insert("eax", 0x91c2_6130);
        assert_eq!(evaluate("eax", &m), Ok(0xffff_ffff_91c2_6130));
    }

    #[test]
    fn x86_results_are_32_bit() {
        assert_eq!(x86("91c26130-8"), Ok(0x91c2_6128));
        assert_eq!(x86("0-1"), Ok(0xffff_ffff));
        assert_eq!(x86("0x7fffffff+0n14"), Ok(0x8000_000d));
        // Sign extension still shows inside: the shift sees ffffffff`91c26130.
        assert_eq!(x86("91c26130 >> 4"), Ok(0xf91c_2613));
        assert_eq!(x86("0`91c26130 >> 4"), Ok(0x091c_2613));
    }

    #[test]
    fn character_constants() {
        assert_eq!(x86("'dcba'"), Ok(0x6463_6261));
        assert_eq!(x64("'abcd'"), Ok(0x6162_6364));
        assert_eq!(x64("'A'"), Ok(0x41));
        assert_eq!(x64("'abcdefgh'"), Ok(0x6162_6364_6566_6768));
        assert!(x64("''").is_err());
        assert!(x64("'abcdefghi'").is_err());
        assert!(x64("'abc").is_err());
        assert!(x64("'é'").is_err());
    }

    #[test]
    fn registers_and_pseudo_registers() {
        assert_eq!(x86("@eax"), Ok(0x91c2_6130));
        assert_eq!(x86("eax"), Ok(0x91c2_6130));
        assert_eq!(x86("EAX"), Ok(0x91c2_6130));
        assert_eq!(x86("@EAX"), Ok(0x91c2_6130));
        // esp is not one of the common nine: a symbol first, then a register.
        assert_eq!(x86("esp"), Ok(0x8772_d9a0));
        assert_eq!(x86("$ip"), Ok(0xa04c_305c));
        assert_eq!(x86("@$ip"), Ok(0xa04c_305c));
        assert_eq!(x86("."), Ok(0xa04c_305c));
        assert_eq!(x86(". + 4"), Ok(0xa04c_3060));
        assert_eq!(x64("@$ip"), Ok(0xffff_f800_02a1_b4f0));
        assert_eq!(x64("@$ptrsize"), Ok(8));
        assert_eq!(x86("$ptrsize"), Ok(4));
        assert_eq!(x64("$t0"), Ok(5));
        assert_eq!(x86("@foo"), Err(ExprError::BadRegister("@foo".into())));
        assert_eq!(x86("$t9+1"), Err(ExprError::BadRegister("$t9+1".into())));
        assert_eq!(x86("@"), Err(ExprError::BadRegister("@".into())));
        // The docs' identity check.
        assert_eq!(x64("NOT(($ip = .) AND ($ip = @rip) AND (@rip =. ))"), Ok(0));
    }

    #[test]
    fn symbols_and_modules() {
        assert_eq!(x86("nt!PoolHitTag"), Ok(0x82b3_7df4));
        assert_eq!(x86("Sample!DriverEntry+0x2c"), Ok(0xa04c_305c));
        assert_eq!(x86("Sample!g_RegistryPath+0x4"), Ok(0xa04c_500c));
        assert_eq!(x86("DriverEntry"), Ok(0xa04c_3030));
        assert_eq!(x86("nt"), Ok(0x82a0_0000));
        assert_eq!(x86("Sample+1000"), Ok(0xa04c_1000));
        // A hex-looking name is a number; `!` makes it a symbol.
        assert_eq!(x86("add"), Ok(0xadd));
        assert_eq!(x86("!add"), Ok(0x1234));
        assert_eq!(x64("nt!PoolHitTag"), Ok(0xffff_f800_02c3_1f08));
        assert_eq!(x86("foo+1"), Err(ExprError::Unresolved("foo+1".into())));
        assert_eq!(x86("nt!Nope"), Err(ExprError::Unresolved("nt!Nope".into())));
        assert_eq!(x86("nt!"), Err(ExprError::Unresolved("nt!".into())));
    }

    #[test]
    fn operators_and_precedence() {
        assert_eq!(x64("2+3*4"), Ok(14));
        assert_eq!(x64("(2+3)*4"), Ok(20));
        assert_eq!(x64("10-4-2"), Ok(10));
        assert_eq!(x64("7 mod 3"), Ok(1));
        assert_eq!(x64("7 % 3"), Ok(1));
        assert_eq!(x64("7 / 2"), Ok(3));
        assert_eq!(x64("1 << 4 + 1"), Ok(0x20));
        assert_eq!(x64("0x88>>2"), Ok(0x22));
        assert_eq!(x64("-10 >>> 4"), Ok(u64::MAX));
        assert_eq!(x64("-10 >> 3c"), Ok(0xf));
        assert_eq!(x64("1 << 40"), Ok(0));
        assert_eq!(x64("3 == 3"), Ok(1));
        assert_eq!(x64("3 = 4"), Ok(0));
        assert_eq!(x64("3 != 4"), Ok(1));
        assert_eq!(x64("3 < 4"), Ok(1));
        assert_eq!(x64("3 >= 4"), Ok(0));
        assert_eq!(x64("3 <= 3"), Ok(1));
        assert_eq!(x64("3 > 4"), Ok(0));
        assert_eq!(x64("6 & 3"), Ok(2));
        assert_eq!(x64("6 and 3"), Ok(2));
        assert_eq!(x64("6 | 3"), Ok(7));
        assert_eq!(x64("6 or 3"), Ok(7));
        assert_eq!(x64("6 ^ 3"), Ok(5));
        assert_eq!(x64("6 xor 3"), Ok(5));
        assert_eq!(x64("1 | 2 ^ 3 & 4"), Ok(3));
        assert_eq!(x64("0x4f ^ 0x0b ^ 0x54"), Ok(0x10));
        assert_eq!(x64("0x4 | 0x2 | 0x1"), Ok(7));
        assert_eq!(x64("-1"), Ok(u64::MAX));
        assert_eq!(x64("~0"), Ok(u64::MAX));
        assert_eq!(x64("+5"), Ok(5));
        assert_eq!(x64("not 0"), Ok(1));
        assert_eq!(x64("not 5"), Ok(0));
        assert_eq!(x64("--5"), Ok(5));
        assert_eq!(x64("hi 12345678"), Ok(0x1234));
        assert_eq!(x64("low(12345678)"), Ok(0x5678));
        assert_eq!(x64("ffffffffffffffff + 2"), Ok(1));
        assert_eq!(
            x64("0xffffe58422064000+0x22*0x10"),
            Ok(0xffff_e584_2206_4220)
        );
        // 80808080 is sign-extended in kernel mode (user-mode kd prints
        // ffffffff`7f7f8f80 for the same expression).
        assert_eq!(x64("0x1000 - 0x80808080"), Ok(0x7f7f_8f80));
    }

    #[test]
    fn division_by_zero() {
        assert_eq!(x64("1/0"), Err(ExprError::DivideByZero("0".into())));
        assert_eq!(
            x64("1 mod (2-2)"),
            Err(ExprError::DivideByZero("(2-2)".into()))
        );
        // Syntax-only parsing does not divide.
        assert_eq!(expression_len("1/0 L4"), Ok(3));
    }

    #[test]
    fn memory_operators() {
        assert_eq!(x86("dwo(nt!PoolHitTag)"), Ok(0x6463_6261));
        assert_eq!(x86("poi(nt!PoolHitTag)"), Ok(0x6463_6261));
        assert_eq!(x86("by(nt!PoolHitTag)"), Ok(0x61));
        assert_eq!(x86("wo(nt!PoolHitTag)"), Ok(0x6261));
        assert_eq!(x86("poi(Sample!g_RegistryPath+0x4)"), Ok(0x91c2_6130));
        assert_eq!(x86("poi(Sample!g_RegistryPath+4)-8"), Ok(0x91c2_6128));
        assert_eq!(x86("poi nt!PoolHitTag + 1"), Ok(0x6463_6262));
        assert_eq!(x64("qwo(nt!PoolHitTag+8)"), Ok(0xffff_f800_02c3_1f08));
        assert_eq!(
            x64("poi(poi(nt!PoolHitTag+8)+8)"),
            Ok(0xffff_f800_02c3_1f08)
        );
        assert_eq!(
            x64("poi(nt!PoolHitTag)"),
            Err(ExprError::MemoryAccess(")".into()))
        );
        assert_eq!(x86("dwo(0)"), Err(ExprError::MemoryAccess(")".into())));
        assert_eq!(x86("poi 0"), Err(ExprError::MemoryAccess("0".into())));
        assert_eq!(
            x64("poi(@$teb + 0x108)"),
            Err(ExprError::BadRegister("@$teb + 0x108)".into()))
        );
    }

    #[test]
    fn nested_evaluators() {
        assert_eq!(x64("@@(1+2)*2"), Ok(6));
        assert_eq!(x64("@@c++(10)"), Ok(10));
        assert_eq!(x64("@@masm(10)"), Ok(0x10));
        assert_eq!(x64("@@c++(sizeof(nt!_POOL_HEADER))"), Ok(0x10));
        assert_eq!(x64("@@masm(1 2)"), Err(ExprError::Syntax("2".into())));
        assert!(x64("@@foo(1)").is_err());
        assert!(x64("@@(1").is_err());
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(x64("(1+2"), Err(ExprError::Syntax(String::new())));
        assert_eq!(x64("1+"), Err(ExprError::Syntax(String::new())));
        assert_eq!(x64("*3"), Err(ExprError::Syntax("*3".into())));
        assert_eq!(x64("1 + )"), Err(ExprError::Syntax(")".into())));
        assert_eq!(x64("#"), Err(ExprError::Syntax("#".into())));
        assert_eq!(x64(".formats"), Err(ExprError::Syntax(".formats".into())));
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!("{}1{}", "(".repeat(64), ")".repeat(64));
        assert_eq!(x64(&deep), Ok(1));
        let too_deep = format!("{}1{}", "(".repeat(65), ")".repeat(65));
        assert!(matches!(x64(&too_deep), Err(ExprError::TooDeep(_))));
        let nested = "@@masm(".repeat(100) + &")".repeat(100);
        assert!(x64(&nested).is_err());
        assert_eq!(
            x64(&"-".repeat(100_000)),
            Err(ExprError::Syntax(String::new()))
        );
        assert_eq!(x64(&("-".repeat(10_000) + "1")), Ok(1));
    }
}
