//! kd's two expression languages, MASM and C++, over a [`Context`] the
//! session implements.
//!
//! MASM is [`evaluate`] (`?`, `dd`, `bp`, `ed`, ...), C++ is [`evaluate_cpp`]
//! (`??`); the argument helpers the memory commands use are here too
//! ([`split_range`], [`parse_range`], [`parse_value_list`]).
//!
//! Choices where kd's behaviour is documented but not obvious (sources:
//! Microsoft's "MASM Numbers and Operators", "Register Syntax", "Sign
//! Extension", "Address and Address Range Syntax" pages):
//!
//! - The session is a kernel debugger, so a MASM numeric constant from
//!   `0x80000000` to `0xffffffff` written without a backtick is sign-extended
//!   (`80000000` is `ffffffff``80000000`), and so is every 32-bit register.
//!   On x86, symbol addresses and `poi` results are sign-extended too (kd
//!   keeps x86 kernel addresses as sign-extended 64-bit values: `!analyze`
//!   prints `BUGCHECK_P2: ffffffff86a84ebc`). All arithmetic is 64-bit and
//!   wraps.
//! - On x86 the result is cut to 32 bits: addresses are 32-bit values, and
//!   x86 kd prints `? 86bda018+18` as `-2034393040 = 86bda030` (the low 32
//!   bits, read as signed; see [`super::format::evaluate_line`]).
//! - A bare name is resolved as kd's "Register Syntax" page says: the common
//!   x86 registers (`eax ebx ecx edx esi edi ebp eip efl`) need no `@`; any
//!   other name is tried as a hexadecimal number (`dcba`, `fffff800``02a00000`),
//!   then as a symbol, then as a module (its base), and last as a register.

mod cpp;
mod masm;

pub use cpp::{CppKind, CppValue};

/// What an expression can look up: the session's machine and symbols.
pub trait Context {
    /// Bytes in a pointer: 4 (x86) or 8 (x64).
    fn pointer_size(&self) -> u64;
    /// A register or pseudo-register by lowercase name (`eax`, `rip`, `efl`,
    /// `$ip`, `$t0`).
    fn register(&self, name: &str) -> Option<u64>;
    /// A symbol's address: `nt!PoolHitTag` is `(Some("nt"), "PoolHitTag")`,
    /// a bare `DriverEntry` is `(None, "DriverEntry")`.
    fn symbol(&self, module: Option<&str>, name: &str) -> Option<u64>;
    /// A module's base address by name (`nt`, `Sample`).
    fn module(&self, name: &str) -> Option<u64>;
    /// `size` (1, 2, 4 or 8) bytes at `address`, little-endian.
    fn read(&self, address: u64, size: usize) -> Option<u64>;
    /// The size of a type by name as written (`nt!_POOL_HEADER`, `_TEB`).
    fn size_of(&self, type_name: &str) -> Option<u64>;
}

/// Why an expression has no value. The messages are kd's, each with the
/// rest of the input from where the evaluator stopped (`Couldn't resolve
/// error at 'foo+1'`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExprError {
    /// Text that is not an expression.
    #[error("Syntax error at '{0}'")]
    Syntax(String),
    /// A name that is no symbol, module or register.
    #[error("Couldn't resolve error at '{0}'")]
    Unresolved(String),
    /// An `@name` or `$name` the machine has no register for.
    #[error("Bad register error at '{0}'")]
    BadRegister(String),
    /// `poi`, `dwo`, ... of memory that cannot be read.
    #[error("Memory access error at '{0}'")]
    MemoryAccess(String),
    /// Division or modulus by zero.
    #[error("Divide by zero error at '{0}'")]
    DivideByZero(String),
    /// A number that does not fit in 64 bits.
    #[error("Numeric overflow error at '{0}'")]
    Overflow(String),
    /// Parentheses or nested evaluators deeper than [`MAX_DEPTH`].
    #[error("Expression too deeply nested at '{0}'")]
    TooDeep(String),
    /// A C++ operation on a type it does not apply to, or a type the C++
    /// evaluator does not know.
    #[error("Type error at '{0}'")]
    Type(String),
    /// An address range whose end is before its start, or larger than kd's
    /// 256 MB limit without `L?`.
    #[error("Range error in '{0}'")]
    Range(String),
}

/// Deepest nesting of parentheses and `@@(...)` an expression may have.
pub const MAX_DEPTH: usize = 64;

/// kd's limit on a range without `L?`: 256 MB.
pub const RANGE_LIMIT: u64 = 0x1000_0000;

/// Evaluates a whole MASM expression (default radix 16).
///
/// # Errors
/// Any [`ExprError`]; text left over after the expression is a syntax error.
pub fn evaluate(text: &str, ctx: &dyn Context) -> Result<u64, ExprError> {
    let (value, used) = evaluate_prefix(text, ctx)?;
    let rest = text[used..].trim();
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(ExprError::Syntax(rest.to_owned()))
    }
}

/// Evaluates the MASM expression at the start of `text` and returns its
/// value with the number of bytes it used, for commands whose arguments
/// follow one another (`dd 1000 2000`, `ed addr 1 2 3`).
///
/// # Errors
/// Any [`ExprError`]; an empty expression is a syntax error.
pub fn evaluate_prefix(text: &str, ctx: &dyn Context) -> Result<(u64, usize), ExprError> {
    masm::Parser::new(text, Some(ctx), 0).run()
}

/// Bytes of `text` that the leading MASM expression takes, found by syntax
/// alone (nothing is looked up).
///
/// # Errors
/// [`ExprError::Syntax`] and the other errors of the syntax itself.
pub fn expression_len(text: &str) -> Result<usize, ExprError> {
    masm::Parser::new(text, None, 0).run().map(|(_, used)| used)
}

/// Evaluates a C++ expression as `??` does: decimal by default, `@` before
/// every register, and a C++ type on the result.
///
/// # Errors
/// Any [`ExprError`]; leftover text is a syntax error.
pub fn evaluate_cpp(text: &str, ctx: &dyn Context) -> Result<CppValue, ExprError> {
    cpp::evaluate(text, ctx, 0)
}

/// The width in bits of a register by lowercase name, as `r` prints it and
/// `??` types it; names it does not know are pointer-sized.
#[must_use]
pub fn register_bits(name: &str, pointer_size: u64) -> u32 {
    const R64: [&str; 17] = [
        "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "rip", "r8", "r9", "r10", "r11",
        "r12", "r13", "r14", "r15",
    ];
    const R32: [&str; 18] = [
        "eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp", "eip", "efl", "r8d", "r9d", "r10d",
        "r11d", "r12d", "r13d", "r14d", "r15d",
    ];
    const R16: [&str; 23] = [
        "ax", "bx", "cx", "dx", "si", "di", "bp", "sp", "ip", "fl", "cs", "ds", "es", "fs", "gs",
        "ss", "r8w", "r9w", "r10w", "r11w", "r12w", "r13w", "r14w",
    ];
    const R8: [&str; 16] = [
        "al", "bl", "cl", "dl", "ah", "bh", "ch", "dh", "sil", "dil", "bpl", "spl", "r8b", "r9b",
        "r10b", "r11b",
    ];
    if R64.contains(&name) {
        64
    } else if R32.contains(&name) {
        32
    } else if R16.contains(&name) || name == "r15w" {
        16
    } else if R8.contains(&name) || matches!(name, "r12b" | "r13b" | "r14b" | "r15b") {
        8
    } else if pointer_size == 4 {
        32
    } else {
        64
    }
}

/// The parts of an address range as written: `start`, then `L<count>`,
/// `L?<count>`, `L-<count>` or an end address, then whatever follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeText<'a> {
    /// The start address expression.
    pub start: &'a str,
    /// The count or end, if given.
    pub extent: Option<ExtentText<'a>>,
    /// Text after the range (a command's further arguments), trimmed.
    pub rest: &'a str,
}

/// How a range's length is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtentText<'a> {
    /// `L<count>` (`unlimited` for `L?`, `backwards` for `L-`).
    Count {
        /// The count expression.
        text: &'a str,
        /// `L?`: no 256 MB limit.
        unlimited: bool,
        /// `L-`: the range ends at the start address.
        backwards: bool,
    },
    /// A second address: the last one in the range.
    End(&'a str),
}

/// Splits `dd nt!PoolHitTag l1`-style arguments (without the command) into
/// their expressions, by syntax alone.
///
/// # Errors
/// A missing or malformed start, count or end expression.
pub fn split_range(text: &str) -> Result<RangeText<'_>, ExprError> {
    let text = text.trim();
    let start_len = expression_len(text)?;
    let start = text[..start_len].trim();
    let rest = text[start_len..].trim_start();
    if rest.is_empty() {
        return Ok(RangeText {
            start,
            extent: None,
            rest,
        });
    }
    let (extent, rest) = if let Some(count) = rest.strip_prefix(['L', 'l']) {
        let (unlimited, backwards, count) = match count.as_bytes().first() {
            Some(b'?') => (true, false, &count[1..]),
            Some(b'-') => (false, true, &count[1..]),
            _ => (false, false, count),
        };
        let count = count.trim_start();
        let len = expression_len(count)?;
        let extent = ExtentText::Count {
            text: count[..len].trim(),
            unlimited,
            backwards,
        };
        (Some(extent), count[len..].trim())
    } else {
        // Not an expression (a quoted string, an option): the command's.
        expression_len(rest).map_or((None, rest), |len| {
            (
                Some(ExtentText::End(rest[..len].trim())),
                rest[len..].trim(),
            )
        })
    };
    Ok(RangeText {
        start,
        extent,
        rest,
    })
}

/// An evaluated address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// The address as written.
    pub start: u64,
    /// Count or end address, if given.
    pub extent: Option<Extent>,
}

/// An evaluated range length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// `L<count>` objects.
    Count {
        /// Objects (of the command's size) in the range.
        count: u64,
        /// `L?`: no 256 MB limit.
        unlimited: bool,
        /// `L-`: the range ends just before the start address.
        backwards: bool,
    },
    /// The last address in the range.
    End(u64),
}

/// Evaluates a whole address range (`dd`'s arguments).
///
/// # Errors
/// Any [`ExprError`]; text after the range is a syntax error.
pub fn parse_range(text: &str, ctx: &dyn Context) -> Result<Range, ExprError> {
    let parts = split_range(text)?;
    if !parts.rest.is_empty() {
        return Err(ExprError::Syntax(parts.rest.to_owned()));
    }
    let start = evaluate(parts.start, ctx)?;
    let extent = match parts.extent {
        None => None,
        Some(ExtentText::Count {
            text,
            unlimited,
            backwards,
        }) => Some(Extent::Count {
            count: evaluate(text, ctx)?,
            unlimited,
            backwards,
        }),
        Some(ExtentText::End(text)) => Some(Extent::End(evaluate(text, ctx)?)),
    };
    Ok(Range { start, extent })
}

impl Range {
    /// The first address and the number of `element_size`-byte objects,
    /// `default_count` when no count or end was given. An end address is the
    /// last byte shown (`1000 1007` is two dwords).
    ///
    /// # Errors
    /// [`ExprError::Range`] when the end is before the start or the range
    /// passes 256 MB without `L?`.
    pub fn resolve(&self, element_size: u64, default_count: u64) -> Result<(u64, u64), ExprError> {
        let size = element_size.max(1);
        let (start, count, unlimited) = match self.extent {
            None => (self.start, default_count, false),
            Some(Extent::Count {
                count,
                unlimited,
                backwards,
            }) => {
                let start = if backwards {
                    self.start.wrapping_sub(count.wrapping_mul(size))
                } else {
                    self.start
                };
                (start, count, unlimited)
            }
            Some(Extent::End(end)) => {
                let span = end
                    .checked_sub(self.start)
                    .ok_or_else(|| ExprError::Range(format!("{:x} {end:x}", self.start)))?;
                (self.start, (span / size).saturating_add(1), false)
            }
        };
        if !unlimited
            && count
                .checked_mul(size)
                .is_none_or(|bytes| bytes > RANGE_LIMIT)
        {
            return Err(ExprError::Range(format!("{start:x} L{count:x}")));
        }
        Ok((start, count))
    }
}

/// Evaluates a list of MASM expressions one after another (`ed addr 1 2 3`
/// gives its values; kd's greedy parse makes `1 -2` one value, -1).
///
/// # Errors
/// Any [`ExprError`] of the first expression that fails.
pub fn parse_value_list(text: &str, ctx: &dyn Context) -> Result<Vec<u64>, ExprError> {
    let mut values = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let (value, used) = evaluate_prefix(rest, ctx)?;
        values.push(value);
        rest = rest[used..].trim_start();
        // Commas may separate values, as in kd's `e` command.
        if let Some(after) = rest.strip_prefix(',') {
            rest = after.trim_start();
        }
    }
    Ok(values)
}

/// Sign-extends the low 32 bits.
pub const fn sign_extend_32(value: u64) -> u64 {
    ((value & 0xffff_ffff) ^ 0x8000_0000).wrapping_sub(0x8000_0000)
}

/// Finds the `)` that closes the `(` at `open`, skipping quoted text.
fn matching_paren(text: &str, open: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut quote = None;
    for (index, &byte) in bytes.iter().enumerate().skip(open) {
        if let Some(q) = quote {
            if byte == q {
                quote = None;
            }
            continue;
        }
        match byte {
            b'\'' | b'"' => quote = Some(byte),
            b'(' => depth += 1,
            b')' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(index);
                }
            }
            _ => {}
        }
    }
    None
}

/// The rest of the input from `at`, as kd quotes it in errors.
fn rest_at(text: &str, at: usize) -> String {
    text.get(at..).unwrap_or("").trim_end().to_owned()
}

#[cfg(test)]
pub mod testctx {
    //! A small machine for the evaluator tests: the walkthrough's x86 target
    //! (or an x64 one) with a few symbols, registers and bytes.

    use std::collections::HashMap;

    use super::Context;

    /// A fake debuggee.
    pub struct Machine {
        pub pointer_size: u64,
        pub registers: HashMap<&'static str, u64>,
        pub symbols: HashMap<(Option<&'static str>, &'static str), u64>,
        pub modules: HashMap<&'static str, u64>,
        pub memory: HashMap<u64, u8>,
        pub types: HashMap<&'static str, u64>,
    }

    impl Machine {
        /// The walkthrough's Windows 7 x86 machine at `Sample!DriverEntry+0x2c`.
        pub fn x86() -> Self {
            let mut machine = Self {
                pointer_size: 4,
                registers: HashMap::from([
                    ("eax", 0x91c2_6130),
                    ("ebx", 0),
                    ("esp", 0x8772_d9a0),
                    ("eip", 0xa04c_305c),
                    ("efl", 0x246),
                ]),
                symbols: HashMap::from([
                    ((Some("nt"), "PoolHitTag"), 0x82b3_7df4),
                    ((Some("Sample"), "DriverEntry"), 0xa04c_3030),
                    ((Some("Sample"), "g_RegistryPath"), 0xa04c_5008),
                    ((None, "DriverEntry"), 0xa04c_3030),
                    ((None, "add"), 0x1234),
                ]),
                modules: HashMap::from([("nt", 0x82a0_0000), ("Sample", 0xa04c_0000)]),
                memory: HashMap::new(),
                types: HashMap::from([("nt!_POOL_HEADER", 8), ("_UNICODE_STRING", 8)]),
            };
            machine.write(0x82b3_7df4, &0x6463_6261u32.to_le_bytes());
            machine.write(0xa04c_500c, &0x91c2_6130u32.to_le_bytes());
            machine
        }

        /// An x64 machine with kernel addresses.
        pub fn x64() -> Self {
            let mut machine = Self {
                pointer_size: 8,
                registers: HashMap::from([
                    ("rax", 0xffff_e584_2206_4220),
                    ("eax", 0x2206_4220),
                    ("rip", 0xffff_f800_02a1_b4f0),
                    ("efl", 0x246),
                    ("$t0", 5),
                ]),
                symbols: HashMap::from([((Some("nt"), "PoolHitTag"), 0xffff_f800_02c3_1f08)]),
                modules: HashMap::from([("nt", 0xffff_f800_02a0_0000)]),
                memory: HashMap::new(),
                types: HashMap::from([("nt!_POOL_HEADER", 16), ("_HANDLE_TABLE_ENTRY", 16)]),
            };
            machine.write(0xffff_f800_02c3_1f08, &0x6463_6261u32.to_le_bytes());
            machine.write(
                0xffff_f800_02c3_1f10,
                &0xffff_f800_02c3_1f08u64.to_le_bytes(),
            );
            machine
        }

        pub fn write(&mut self, address: u64, bytes: &[u8]) {
            for (offset, &byte) in (0u64..).zip(bytes) {
                self.memory.insert(address.wrapping_add(offset), byte);
            }
        }
    }

    impl Context for Machine {
        fn pointer_size(&self) -> u64 {
            self.pointer_size
        }
        fn register(&self, name: &str) -> Option<u64> {
            self.registers.get(name).copied()
        }
        fn symbol(&self, module: Option<&str>, name: &str) -> Option<u64> {
            self.symbols
                .iter()
                .find(|((m, n), _)| *m == module && *n == name)
                .map(|(_, &v)| v)
        }
        fn module(&self, name: &str) -> Option<u64> {
            self.modules.get(name).copied()
        }
        fn read(&self, address: u64, size: usize) -> Option<u64> {
            let mut value = 0u64;
            for index in (0..size).rev() {
                let byte = *self.memory.get(&address.wrapping_add(index as u64))?;
                value = value << 8 | u64::from(byte);
            }
            Some(value)
        }
        fn size_of(&self, type_name: &str) -> Option<u64> {
            self.types.get(type_name).copied()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testctx::Machine;
    use super::*;

    #[test]
    fn evaluate_rejects_leftover_text() {
        let m = Machine::x86();
        assert_eq!(evaluate("1+2", &m), Ok(3));
        assert_eq!(evaluate("1 2", &m), Err(ExprError::Syntax("2".into())));
        assert_eq!(evaluate("", &m), Err(ExprError::Syntax(String::new())));
    }

    #[test]
    fn evaluate_prefix_reports_what_it_used() {
        let m = Machine::x86();
        assert_eq!(
            evaluate_prefix("nt!PoolHitTag l1", &m),
            Ok((0x82b3_7df4, 13))
        );
        assert_eq!(evaluate_prefix("1 + 2 L4", &m), Ok((3, 5)));
    }

    #[test]
    fn expression_len_needs_no_context() {
        assert_eq!(expression_len("nt!PoolHitTag l1"), Ok(13));
        assert_eq!(expression_len("poi(esp+4) 20"), Ok(10));
        assert_eq!(expression_len("foo L?20"), Ok(3));
        assert!(expression_len(")").is_err());
    }

    #[test]
    fn split_range_forms() {
        let plain = split_range("nt!PoolHitTag l1").unwrap();
        assert_eq!(plain.start, "nt!PoolHitTag");
        assert_eq!(
            plain.extent,
            Some(ExtentText::Count {
                text: "1",
                unlimited: false,
                backwards: false
            })
        );
        let big = split_range("0x91c26130-8 L?10000000").unwrap();
        assert_eq!(big.start, "0x91c26130-8");
        assert!(matches!(
            big.extent,
            Some(ExtentText::Count {
                text: "10000000",
                unlimited: true,
                ..
            })
        ));
        let back = split_range("80000000 L-20").unwrap();
        assert!(matches!(
            back.extent,
            Some(ExtentText::Count {
                text: "20",
                backwards: true,
                ..
            })
        ));
        let pair = split_range("0x00001000  0x00001007").unwrap();
        assert_eq!(pair.extent, Some(ExtentText::End("0x00001007")));
        let alone = split_range(" esp ").unwrap();
        assert_eq!((alone.start, alone.extent, alone.rest), ("esp", None, ""));
        let search = split_range("00007ffc`0f180771 L100000 \"ntdll\"").unwrap();
        assert_eq!(search.rest, "\"ntdll\"");
        assert!(split_range("").is_err());
        assert!(split_range("1000 L").is_err());
    }

    #[test]
    fn parse_range_and_resolve() {
        let m = Machine::x86();
        let range = parse_range("nt!PoolHitTag l1", &m).unwrap();
        assert_eq!(range.resolve(4, 0x20), Ok((0x82b3_7df4, 1)));
        let range = parse_range("1000 1007", &m).unwrap();
        assert_eq!(range.resolve(4, 0x20), Ok((0x1000, 2)));
        assert_eq!(range.resolve(1, 0x80), Ok((0x1000, 8)));
        let range = parse_range("80000000 L-20", &m).unwrap();
        assert_eq!(range.resolve(1, 0x80), Ok((0x7fff_ffe0, 0x20)));
        let range = parse_range("esp", &m).unwrap();
        assert_eq!(range.resolve(4, 0x20), Ok((0x8772_d9a0, 0x20)));
        let huge = parse_range("0 L10000001", &m).unwrap();
        assert!(matches!(huge.resolve(1, 0x80), Err(ExprError::Range(_))));
        let fine = parse_range("0 L?10000001", &m).unwrap();
        assert_eq!(fine.resolve(1, 0x80), Ok((0, 0x1000_0001)));
        let backwards = parse_range("2000 1000", &m).unwrap();
        assert!(matches!(
            backwards.resolve(1, 0x80),
            Err(ExprError::Range(_))
        ));
        assert!(parse_range("1000 L4 junk", &m).is_err());
    }

    #[test]
    fn value_lists() {
        let m = Machine::x86();
        assert_eq!(parse_value_list("'dcba'", &m), Ok(vec![0x6463_6261]));
        assert_eq!(
            parse_value_list("nt!PoolHitTag 1 2 0n10", &m),
            Ok(vec![0x82b3_7df4, 1, 2, 10])
        );
        assert_eq!(parse_value_list("1, 2", &m), Ok(vec![1, 2]));
        assert_eq!(parse_value_list("1 -2", &m), Ok(vec![0xffff_ffff]));
        assert_eq!(parse_value_list("", &m), Ok(vec![]));
        assert!(parse_value_list("1 )", &m).is_err());
    }

    #[test]
    fn register_widths() {
        assert_eq!(register_bits("eax", 8), 32);
        assert_eq!(register_bits("rip", 8), 64);
        assert_eq!(register_bits("cs", 4), 16);
        assert_eq!(register_bits("al", 4), 8);
        assert_eq!(register_bits("r15b", 8), 8);
        assert_eq!(register_bits("cr0", 4), 32);
        assert_eq!(register_bits("cr0", 8), 64);
    }

    #[test]
    fn sign_extension_of_32_bits() {
        assert_eq!(sign_extend_32(0x8000_0000), 0xffff_ffff_8000_0000);
        assert_eq!(sign_extend_32(0x7fff_ffff), 0x7fff_ffff);
        assert_eq!(sign_extend_32(0x1_8000_0000), 0xffff_ffff_8000_0000);
    }

    #[test]
    fn matching_paren_skips_quotes() {
        assert_eq!(matching_paren("(a(b)c)", 0), Some(6));
        assert_eq!(matching_paren("(')')", 0), Some(4));
        assert_eq!(matching_paren("((", 0), None);
    }

    /// A deterministic fuzzer: token soup through every entry point, on both
    /// machines. Passing means no input panics (or overflows the stack).
    #[test]
    fn no_input_panics() {
        const PIECES: [&str; 64] = [
            "(",
            ")",
            "+",
            "-",
            "*",
            "/",
            "%",
            "<<",
            ">>",
            ">>>",
            "=",
            "==",
            "!=",
            "<",
            ">",
            "<=",
            ">=",
            "&",
            "|",
            "^",
            "~",
            "!",
            "?",
            ":",
            "'",
            "\"",
            "`",
            "@",
            "@@",
            "@@(",
            "@@masm(",
            "@@c++(",
            "$",
            ".",
            " ",
            "poi",
            "by",
            "dwo",
            "qwo",
            "hi",
            "low",
            "not",
            "and",
            "mod",
            "sizeof",
            "0x",
            "0n",
            "0t",
            "0y",
            "ffffffff",
            "80000000",
            "7",
            "nt!",
            "PoolHitTag",
            "eax",
            "@rip",
            "$ip",
            "L",
            "L?",
            "L-",
            "(int *)",
            "é",
            "\\",
            "//",
        ];
        let x86 = Machine::x86();
        let x64 = Machine::x64();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = next() % 12;
            let text: String = (0..len)
                .map(|_| PIECES[usize::try_from(next() % 64).unwrap_or(0)])
                .collect();
            for machine in [&x86, &x64] {
                let _ = evaluate(&text, machine);
                let _ = evaluate_cpp(&text, machine);
                let _ = parse_value_list(&text, machine);
                if let Ok(range) = parse_range(&text, machine) {
                    let _ = range.resolve(next() % 9, next());
                }
            }
            let _ = expression_len(&text);
            let _ = split_range(&text);
        }
        for deep in ["(", "@@(", "@@masm(", "(int)", "-", "1?", "sizeof ", "poi "] {
            let text = deep.repeat(5000) + "1";
            let _ = evaluate(&text, &x64);
            let _ = evaluate_cpp(&text, &x64);
        }
    }

    #[test]
    fn error_messages_are_kds() {
        assert_eq!(
            ExprError::Unresolved("foo+1".into()).to_string(),
            "Couldn't resolve error at 'foo+1'"
        );
        assert_eq!(
            ExprError::Syntax("2".into()).to_string(),
            "Syntax error at '2'"
        );
    }
}
