//! Output exactly as kd prints it: addresses, `?`, `??`, `.formats`, the
//! `d*` memory displays and `r`. Multi-line outputs end every line in `\n`;
//! one-line outputs have none.
//!
//! `.formats` follows the walkthrough's kd (no `Decimal (unsigned)` line,
//! which later WinDbg releases add). Sources of the x64 forms: public x64
//! sessions (`.formats 57724231h` prints `Hex:     00000000``57724231`,
//! 22 octal digits and 64 binary digits) and Microsoft's docs.

mod cfloat;
mod clock;
mod memory;

pub(crate) use cfloat::{double_g, float_g};
pub(crate) use clock::{ctime, time_field};
pub(crate) use memory::{DumpFormat, dump};

use super::expr::{CppKind, CppValue, register_bits, sign_extend_32};

/// An address as kd writes it: `82b37df4` on x86, `fffff800``02a1b4f0` on
/// x64.
#[must_use]
pub fn address(value: u64, pointer_size: u64) -> String {
    if pointer_size == 4 {
        format!("{:08x}", value & 0xffff_ffff)
    } else {
        format!("{:08x}`{:08x}", value >> 32, value & 0xffff_ffff)
    }
}

/// The line `?` prints: the value in signed decimal, then in hex. x86 kd
/// shows 32 bits (`Evaluate expression: -2034393040 = 86bda030`), x64 kd 64
/// (`Evaluate expression: 34 = 00000000``00000022`).
#[must_use]
pub(crate) fn evaluate_line(value: u64, pointer_size: u64) -> String {
    let decimal = if pointer_size == 4 {
        sign_extend_32(value).cast_signed()
    } else {
        value.cast_signed()
    };
    format!(
        "Evaluate expression: {decimal} = {}",
        address(value, pointer_size)
    )
}

/// The `.formats` block for a value, with the `Time:` line at the given
/// offset from UTC in minutes (kd uses the host's zone; the walkthrough's
/// was +330).
///
/// On x86 the value is the low 32 bits, sign-extended as kd keeps it (so
/// `Float: ... high` and `Double:` of 80010033 are NaNs).
#[must_use]
pub fn formats(value: u64, pointer_size: u64, utc_offset_minutes: i32) -> String {
    let narrow = pointer_size == 4;
    let value = if narrow { sign_extend_32(value) } else { value };
    let (octal, bytes) = if narrow {
        (format!("{:011o}", value & 0xffff_ffff), 4)
    } else {
        (format!("{value:022o}"), 8)
    };
    let shown = &value.to_be_bytes()[8 - bytes..];
    let binary: Vec<String> = shown.iter().map(|byte| format!("{byte:08b}")).collect();
    let chars: String = shown
        .iter()
        .map(|&byte| {
            if (0x20..0x7f).contains(&byte) {
                char::from(byte)
            } else {
                '.'
            }
        })
        .collect();
    let low = u32::try_from(value & 0xffff_ffff).unwrap_or_default();
    let high = u32::try_from(value >> 32).unwrap_or_default();
    [
        "Evaluate expression:".to_owned(),
        format!("  Hex:     {}", address(value, pointer_size)),
        format!("  Decimal: {}", value.cast_signed()),
        format!("  Octal:   {octal}"),
        format!("  Binary:  {}", binary.join(" ")),
        format!("  Chars:   {chars}"),
        format!("  Time:    {}", time_field(value, utc_offset_minutes)),
        format!("  Float:   low {} high {}", float_g(low), float_g(high)),
        format!("  Double:  {}", double_g(value)),
    ]
    .iter()
    .fold(String::new(), |text, line| text + line + "\n")
}

/// `??`'s line: the type, then the value as kd shows that type
/// (`unsigned int 8`, `unsigned int64 0x10`, `int 0n3`, `bool true`,
/// `void * 0x00000538`, `unsigned char 0x20 ' '`).
#[must_use]
pub(crate) fn cpp_value(value: &CppValue, pointer_size: u64) -> String {
    let number = match value.kind {
        CppKind::Bool => (if value.value == 0 { "false" } else { "true" }).to_owned(),
        CppKind::Signed { .. } => format!("0n{}", value.to_u64().cast_signed()),
        CppKind::Unsigned { .. } => unsigned(value.value),
        CppKind::Char { signed } => {
            let byte = (value.value & 0xff) as u8;
            let shown = if (0x20..0x7f).contains(&byte) {
                char::from(byte).to_string()
            } else {
                String::new()
            };
            let number = if signed {
                format!("0n{}", byte.cast_signed())
            } else {
                unsigned(u64::from(byte))
            };
            format!("{number} '{shown}'")
        }
        CppKind::Pointer => format!("0x{}", address(value.value, pointer_size)),
    };
    format!("{} {number}", value.type_name)
}

/// An unsigned C++ value: decimal below 10 (where both read the same), hex
/// otherwise, 64-bit values past 32 bits with kd's backtick.
fn unsigned(value: u64) -> String {
    if value < 10 {
        value.to_string()
    } else if value > 0xffff_ffff {
        format!("0x{:08x}`{:08x}", value >> 32, value & 0xffff_ffff)
    } else {
        format!("0x{value:x}")
    }
}

/// `r @eax`: `eax=91c26130`, as many digits as the register has.
#[must_use]
pub fn register(name: &str, value: u64, pointer_size: u64) -> String {
    let bits = register_bits(name, pointer_size);
    let digits = usize::try_from(bits / 4).unwrap_or(16);
    let value = if bits >= 64 {
        value
    } else {
        value & ((1 << bits) - 1)
    };
    format!("{name}={value:0digits$x}")
}

/// The flag mnemonics of `r`: overflow `ov`/`nv`, direction `dn`/`up`,
/// interrupts `ei`/`di`, sign `ng`/`pl`, zero `zr`/`nz`, auxiliary carry
/// `ac`/`na`, parity `pe`/`po`, carry `cy`/`nc`.
///
/// x64 kd prints parity the other way round: its `r` shows
/// `efl=00000246` (PF set) as `po` and `efl=00000202` as `pe` (Microsoft's
/// "MASM Numbers and Operators" example and public x64 sessions), while
/// x86 kd shows `efl=00000246` as `pe` (a Windows 7 x86 session). Both are
/// reproduced.
#[must_use]
pub fn flags(efl: u64, pointer_size: u64) -> String {
    let bit = |n: u32| efl >> n & 1 == 1;
    let parity = bit(2) != (pointer_size == 8);
    [
        if bit(11) { "ov" } else { "nv" },
        if bit(10) { "dn" } else { "up" },
        if bit(9) { "ei" } else { "di" },
        if bit(7) { "ng" } else { "pl" },
        if bit(6) { "zr" } else { "nz" },
        if bit(4) { "ac" } else { "na" },
        if parity { "pe" } else { "po" },
        if bit(0) { "cy" } else { "nc" },
    ]
    .join(" ")
}

/// `r` without arguments: x86's three lines or x64's eight, from a register
/// lookup (a register it does not know shows as 0) and the flags value.
#[must_use]
pub fn registers(pointer_size: u64, lookup: &dyn Fn(&str) -> Option<u64>, efl: u64) -> String {
    let reg = |name: &str| register(name, lookup(name).unwrap_or(0), pointer_size);
    let row = |names: &[&str]| {
        names
            .iter()
            .map(|name| reg(name))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let iopl = format!("iopl={:<10}{}", efl >> 12 & 3, flags(efl, pointer_size));
    let segments = format!(
        "{}  {}  {}  {}  {}  {}             {}",
        reg("cs"),
        reg("ss"),
        reg("ds"),
        reg("es"),
        reg("fs"),
        reg("gs"),
        register("efl", efl, pointer_size)
    );
    let lines = if pointer_size == 4 {
        vec![
            row(&["eax", "ebx", "ecx", "edx", "esi", "edi"]),
            format!("{} {iopl}", row(&["eip", "esp", "ebp"])),
            segments,
        ]
    } else {
        vec![
            row(&["rax", "rbx", "rcx"]),
            row(&["rdx", "rsi", "rdi"]),
            row(&["rip", "rsp", "rbp"]),
            format!(" {}  {} {}", reg("r8"), reg("r9"), reg("r10")),
            row(&["r11", "r12", "r13"]),
            row(&["r14", "r15"]),
            iopl,
            segments,
        ]
    };
    lines
        .iter()
        .fold(String::new(), |text, line| text + line + "\n")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::clock::{ctime, filetime};

    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(address(0x82b3_7df4, 4), "82b37df4");
        assert_eq!(address(0xffff_ffff_82b3_7df4, 4), "82b37df4");
        assert_eq!(address(0xffff_f800_02a1_b4f0, 8), "fffff800`02a1b4f0");
        assert_eq!(address(0x22, 8), "00000000`00000022");
    }

    #[test]
    fn evaluate_lines() {
        assert_eq!(
            evaluate_line(0x6463_6261, 4),
            "Evaluate expression: 1684234849 = 64636261"
        );
        assert_eq!(
            evaluate_line(0x6463_6261, 8),
            "Evaluate expression: 1684234849 = 00000000`64636261"
        );
        // Real x86 kd: `? 86bda018+18`, `? nt!MiSystemPteInfo`.
        assert_eq!(
            evaluate_line(0x86bd_a030, 4),
            "Evaluate expression: -2034393040 = 86bda030"
        );
        assert_eq!(
            evaluate_line(0x82d4_5440, 4),
            "Evaluate expression: -2100014016 = 82d45440"
        );
        assert_eq!(
            evaluate_line(0x91c2_6128, 4),
            "Evaluate expression: -1849532120 = 91c26128"
        );
        // Real x64 kd.
        assert_eq!(
            evaluate_line(0x22, 8),
            "Evaluate expression: 34 = 00000000`00000022"
        );
        assert_eq!(
            evaluate_line(0xffff_e584_2206_4220, 8),
            "Evaluate expression: -29119307431392 = ffffe584`22064220"
        );
        assert_eq!(
            evaluate_line(0x0000_008e_ed57_b108, 8),
            "Evaluate expression: 613867303176 = 0000008e`ed57b108"
        );
    }

    #[test]
    fn formats_walkthrough_block() {
        let expected = "\
Evaluate expression:
  Hex:     64636261
  Decimal: 1684234849
  Octal:   14430661141
  Binary:  01100100 01100011 01100010 01100001
  Chars:   dcba
  Time:    Tue May 16 16:30:49 2023
  Float:   low 1.6778e+022 high 0
  Double:  8.32123e-315
";
        assert_eq!(formats(0x6463_6261, 4, 330), expected);
        let utc = formats(0x6463_6261, 4, 0);
        assert!(
            utc.contains("\n  Time:    Tue May 16 11:00:49 2023\n"),
            "{utc}"
        );
    }

    #[test]
    fn formats_docs_block() {
        // Microsoft's .formats page (written at UTC-8).
        let expected = "\
Evaluate expression:
  Hex:     1c407e62
  Decimal: 473988706
  Octal:   03420077142
  Binary:  00011100 01000000 01111110 01100010
  Chars:   .@~b
  Time:    Mon Jan  7 15:31:46 1985
  Float:   low 6.36908e-022 high 0
  Double:  2.34182e-315
";
        assert_eq!(formats(0x1c40_7e62, 4, -480), expected);
    }

    #[test]
    fn formats_x86_negative() {
        // `.formats cr0` on a PAE x86 target (its `Decimal (unsigned)` line,
        // from a newer WinDbg, left out).
        let expected = "\
Evaluate expression:
  Hex:     80010033
  Decimal: -2147418061
  Octal:   20000200063
  Binary:  10000000 00000001 00000000 00110011
  Chars:   ...3
  Time:    ***** Invalid
  Float:   low -9.1907e-041 high -1.#QNAN
  Double:  -1.#QNAN
";
        assert_eq!(formats(0x8001_0033, 4, 0), expected);
    }

    #[test]
    fn formats_x64_blocks() {
        // `.formats 57724231h` in a public x64 session at UTC-7.
        let expected = "\
Evaluate expression:
  Hex:     00000000`57724231
  Decimal: 1467105841
  Octal:   0000000000012734441061
  Binary:  00000000 00000000 00000000 00000000 01010111 01110010 01000010 00110001
  Chars:   ....WrB1
  Time:    Tue Jun 28 02:24:01 2016
  Float:   low 2.66366e+014 high 0
  Double:  7.24847e-315
";
        assert_eq!(formats(0x5772_4231, 8, -420), expected);
        let kernel = formats(0xffff_f802_0f3f_4280, 8, 0);
        for line in [
            "  Hex:     fffff802`0f3f4280",
            "  Decimal: -8787247283584",
            "  Octal:   1777777600101717641200",
            "  Binary:  11111111 11111111 11111000 00000010 00001111 00111111 01000010 10000000",
            "  Chars:   .....?B.",
            "  Time:    ***** Invalid FILETIME",
            "  Float:   low 9.42983e-030 high -1.#QNAN",
            "  Double:  -1.#QNAN",
        ] {
            assert!(
                kernel.lines().any(|l| l == line),
                "{line:?} not in\n{kernel}"
            );
        }
        let tagged = formats(0x7453_6d4d_0388_0000, 8, -420);
        for line in [
            "  Hex:     74536d4d`03880000",
            "  Decimal: 8382163509005778944",
            "  Octal:   0721233324640342000000",
            "  Chars:   tSmM....",
            "  Time:    Fri Jan  7 20:15:00.577 28163 (UTC - 7:00)",
            "  Float:   low 7.99336e-037 high 6.70039e+031",
            "  Double:  2.22547e+252",
        ] {
            assert!(
                tagged.lines().any(|l| l == line),
                "{line:?} not in\n{tagged}"
            );
        }
    }

    #[test]
    fn cpp_values() {
        let value = |type_name: &str, kind, value| CppValue {
            type_name: type_name.to_owned(),
            kind,
            value,
        };
        let unsigned = |bits| CppKind::Unsigned { bits };
        assert_eq!(
            cpp_value(&value("unsigned int", unsigned(32), 8), 4),
            "unsigned int 8"
        );
        assert_eq!(
            cpp_value(&value("unsigned int64", unsigned(64), 0x10), 8),
            "unsigned int64 0x10"
        );
        assert_eq!(
            cpp_value(&value("unsigned int64", unsigned(64), 8), 8),
            "unsigned int64 8"
        );
        assert_eq!(
            cpp_value(&value("unsigned int", unsigned(32), 0x771e_1a02), 4),
            "unsigned int 0x771e1a02"
        );
        assert_eq!(
            cpp_value(&value("ULONGLONG", unsigned(64), 0xffff_ffff_ffff_fff8), 8),
            "ULONGLONG 0xffffffff`fffffff8"
        );
        assert_eq!(
            cpp_value(&value("long", CppKind::Signed { bits: 32 }, 2), 8),
            "long 0n2"
        );
        assert_eq!(
            cpp_value(&value("int", CppKind::Signed { bits: 32 }, 0xffff_ffff), 8),
            "int 0n-1"
        );
        assert_eq!(cpp_value(&value("bool", CppKind::Bool, 1), 8), "bool true");
        assert_eq!(cpp_value(&value("bool", CppKind::Bool, 0), 8), "bool false");
        assert_eq!(
            cpp_value(&value("void *", CppKind::Pointer, 0x538), 4),
            "void * 0x00000538"
        );
        assert_eq!(
            cpp_value(&value("void *", CppKind::Pointer, 0xffff_e584_1e4b_c380), 8),
            "void * 0xffffe584`1e4bc380"
        );
        let chars = |signed| CppKind::Char { signed };
        assert_eq!(
            cpp_value(&value("unsigned char", chars(false), 0x20), 8),
            "unsigned char 0x20 ' '"
        );
        assert_eq!(
            cpp_value(&value("unsigned char", chars(false), 0x40), 8),
            "unsigned char 0x40 '@'"
        );
        assert_eq!(
            cpp_value(&value("unsigned char", chars(false), 0), 8),
            "unsigned char 0 ''"
        );
        assert_eq!(
            cpp_value(&value("char", chars(true), 0x41), 8),
            "char 0n65 'A'"
        );
    }

    #[test]
    fn cpp_values_from_the_evaluator() {
        use crate::expr::{evaluate_cpp, testctx::Machine};
        let x86 = Machine::x86();
        let x64 = Machine::x64();
        let show = |text, machine: &Machine| {
            cpp_value(&evaluate_cpp(text, machine).unwrap(), machine.pointer_size)
        };
        // The walkthrough and public x64 sessions.
        assert_eq!(show("sizeof(nt!_POOL_HEADER)", &x86), "unsigned int 8");
        assert_eq!(show("sizeof(nt!_POOL_HEADER)", &x64), "unsigned int64 0x10");
        assert_eq!(
            show("(ULONGLONG)(~0x0000000000000007)", &x64),
            "ULONGLONG 0xffffffff`fffffff8"
        );
        assert_eq!(show("@$t0", &x64), "unsigned int64 5");
        assert_eq!(show("1+2", &x64), "int 0n3");
        assert_eq!(show("@eax", &x86), "unsigned int 0x91c26130");
    }

    #[test]
    fn single_registers() {
        assert_eq!(register("eax", 0x91c2_6130, 4), "eax=91c26130");
        assert_eq!(register("rip", 0x7ffb_7ed0_0770, 8), "rip=00007ffb7ed00770");
        assert_eq!(register("cs", 0x33, 8), "cs=0033");
        assert_eq!(register("efl", 0x246, 8), "efl=00000246");
        assert_eq!(register("al", 0x1234, 4), "al=34");
    }

    #[test]
    fn flag_mnemonics() {
        assert_eq!(flags(0x246, 4), "nv up ei pl zr na pe nc");
        assert_eq!(flags(0xa82, 4), "ov up ei ng nz na po nc");
        assert_eq!(flags(0xa87, 4), "ov up ei ng nz na pe cy");
        assert_eq!(flags(0xa12, 4), "ov up ei pl nz ac po nc");
        assert_eq!(flags(0x246, 8), "nv up ei pl zr na po nc");
        assert_eq!(flags(0x202, 8), "nv up ei pl nz na pe nc");
        assert_eq!(flags(0x1_0286, 8), "nv up ei ng nz na po nc");
        assert_eq!(flags(0x0, 4), "nv up di pl nz na po nc");
        assert_eq!(flags(0x400, 4), "nv dn di pl nz na po nc");
    }

    /// Random values through every formatter: nothing may panic.
    #[test]
    fn no_value_panics() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let kinds = [
            CppKind::Bool,
            CppKind::Signed { bits: 8 },
            CppKind::Signed { bits: 64 },
            CppKind::Unsigned { bits: 16 },
            CppKind::Char { signed: true },
            CppKind::Char { signed: false },
            CppKind::Pointer,
        ];
        let formats_list = [
            DumpFormat::Bytes,
            DumpFormat::Words,
            DumpFormat::Dwords,
            DumpFormat::Qwords,
            DumpFormat::Pointers,
            DumpFormat::DwordsChars,
            DumpFormat::Ascii,
            DumpFormat::Unicode,
        ];
        for round in 0..5_000u64 {
            let value = match round % 4 {
                0 => next(),
                1 => next() >> (next() % 64),
                2 => u64::MAX - next() % 0x1000,
                _ => next() % 0x1_0000_0000,
            };
            let pointer_size = if round % 2 == 0 { 4 } else { 8 };
            let offset = i32::try_from(next() % 1681).unwrap_or(0) - 840;
            let extreme = if round % 97 == 0 { i32::MIN } else { offset };
            let _ = formats(value, pointer_size, extreme);
            let _ = ctime(value.cast_signed(), extreme);
            let _ = filetime(value, extreme);
            let _ = evaluate_line(value, pointer_size);
            let kind = kinds[usize::try_from(next() % 7).unwrap_or(0)];
            let _ = cpp_value(
                &CppValue {
                    type_name: "t".into(),
                    kind,
                    value,
                },
                pointer_size,
            );
            let _ = register("al", value, pointer_size);
            let _ = registers(pointer_size, &|_| Some(value), value);
            let seed = next();
            let read = move |address: u64, size: usize| {
                (!(address ^ seed).is_multiple_of(5)).then(|| {
                    address
                        .to_le_bytes()
                        .iter()
                        .copied()
                        .cycle()
                        .take(size)
                        .collect()
                })
            };
            let format = formats_list[usize::try_from(next() % 8).unwrap_or(0)];
            let _ = dump(format, value, next() % 0x40, pointer_size, &read);
        }
    }

    #[test]
    fn register_dumps() {
        // A Windows 7 x86 kd session.
        let x86 = HashMap::from([
            ("eax", 3u64),
            ("ebx", 0),
            ("ecx", 0x2010),
            ("edx", 0x6a),
            ("esi", 0xffff_fffe),
            ("edi", 0x65),
            ("eip", 0x83c8_3110),
            ("esp", 0x8d67_35c0),
            ("ebp", 0x8d67_360c),
            ("cs", 8),
            ("ss", 0x10),
            ("ds", 0x23),
            ("es", 0x23),
            ("fs", 0x30),
            ("gs", 0),
        ]);
        assert_eq!(
            registers(4, &|name| x86.get(name).copied(), 0x246),
            "eax=00000003 ebx=00000000 ecx=00002010 edx=0000006a esi=fffffffe edi=00000065\n\
             eip=83c83110 esp=8d6735c0 ebp=8d67360c iopl=0         nv up ei pl zr na pe nc\n\
             cs=0008  ss=0010  ds=0023  es=0023  fs=0030  gs=0000             efl=00000246\n"
        );
        // Microsoft's "MASM Numbers and Operators" page.
        let x64 = HashMap::from([
            ("rax", 0u64),
            ("rbx", 0x10),
            ("rcx", 0x7ffb_7ecc_d2c4),
            ("rdx", 0),
            ("rsi", 0x7ffb_7ed6_1a80),
            ("rdi", 0x27_eb6a_7000),
            ("rip", 0x7ffb_7ed0_0770),
            ("rsp", 0x27_eb87_f320),
            ("rbp", 0),
            ("r8", 0x27_eb87_f318),
            ("r9", 0),
            ("r10", 0),
            ("r11", 0x246),
            ("r12", 0x40),
            ("r13", 0),
            ("r14", 0x7ffb_7ed5_48f0),
            ("r15", 0x210_ea09_0000),
            ("cs", 0x33),
            ("ss", 0x2b),
            ("ds", 0x2b),
            ("es", 0x2b),
            ("fs", 0x53),
            ("gs", 0x2b),
        ]);
        assert_eq!(
            registers(8, &|name| x64.get(name).copied(), 0x246),
            "rax=0000000000000000 rbx=0000000000000010 rcx=00007ffb7eccd2c4\n\
             rdx=0000000000000000 rsi=00007ffb7ed61a80 rdi=00000027eb6a7000\n\
             rip=00007ffb7ed00770 rsp=00000027eb87f320 rbp=0000000000000000\n \
             r8=00000027eb87f318  r9=0000000000000000 r10=0000000000000000\n\
             r11=0000000000000246 r12=0000000000000040 r13=0000000000000000\n\
             r14=00007ffb7ed548f0 r15=00000210ea090000\n\
             iopl=0         nv up ei pl zr na po nc\n\
             cs=0033  ss=002b  ds=002b  es=002b  fs=0053  gs=002b             efl=00000246\n"
        );
    }
}
