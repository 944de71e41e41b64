//! kd's disassembly, with iced-x86's MASM formatter.
//!
//! Lines read as the walkthrough shows them, `cmp     dword ptr
//! [Sample!g_RegistryPath+0x4 (a04c500c)],0`: mnemonic in eight columns,
//! MASM numbers `0Ch`, names with their address in parentheses, no code
//! bytes as with `.asm no_code_bytes`.

use std::collections::HashMap;
use std::fmt::Write as _;

use iced_x86::{
    Decoder, DecoderOptions, Formatter, FormatterTextKind, Instruction, MasmFormatter,
    MemorySizeOptions, OpKind, SymbolResolver, SymbolResult,
};

use super::format;

/// Names for addresses, as `module!symbol+0xoff`.
pub trait Names {
    /// The name of `address`, if it lies in a module.
    fn name(&self, address: u64) -> Option<String>;
}

/// One disassembled instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Its address.
    pub address: u64,
    /// Its length in bytes.
    pub length: usize,
    /// `mnemonic operands`, kd's way.
    pub text: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

impl Line {
    /// `a04c305c cmp     ...`, or with code bytes as kd prints them by default.
    #[must_use]
    pub fn render(&self, pointer_size: u64, code_bytes: bool) -> String {
        let address = format::address(self.address, pointer_size);
        if code_bytes {
            let hex = self.bytes.iter().fold(String::new(), |mut hex, byte| {
                let _ = write!(hex, "{byte:02x}");
                hex
            });
            let width = if pointer_size == 4 { 15 } else { 16 };
            format!("{address} {hex:<width$} {}", self.text)
        } else {
            format!("{address} {}", self.text)
        }
    }
}

/// The formatter wants a `'static` resolver: names are looked up first,
/// for every address the instructions mention.
struct Resolver {
    names: HashMap<u64, String>,
    pointer_size: u64,
}

impl SymbolResolver for Resolver {
    fn symbol(
        &mut self,
        instruction: &Instruction,
        _operand: u32,
        _instruction_operand: Option<u32>,
        address: u64,
        _address_size: u32,
    ) -> Option<SymbolResult<'_>> {
        let branch = is_branch(instruction);
        let shown = format::address(address, self.pointer_size);
        let text = match self.names.get(&address) {
            Some(name) => format!("{name} ({shown})"),
            // kd writes branch targets outside any module as bare addresses.
            None if branch => shown,
            None => return None,
        };
        Some(SymbolResult::with_string_kind(
            address,
            text,
            FormatterTextKind::Label,
        ))
    }
}

const fn is_branch(instruction: &Instruction) -> bool {
    instruction.is_call_near()
        || instruction.is_jmp_short_or_near()
        || instruction.is_jcc_short_or_near()
        || instruction.is_loop()
        || instruction.is_loopcc()
        || instruction.is_jcx_short()
}

/// The addresses an instruction mentions that may have names.
fn mentioned(instruction: &Instruction) -> Vec<u64> {
    let mut addresses = Vec::new();
    if is_branch(instruction) {
        addresses.push(instruction.near_branch_target());
    }
    for operand in 0..instruction.op_count() {
        match instruction.op_kind(operand) {
            OpKind::Memory => addresses.push(instruction.memory_displacement64()),
            OpKind::Immediate32 | OpKind::Immediate32to64 | OpKind::Immediate64 => {
                addresses.push(instruction.immediate(operand));
            }
            _ => {}
        }
    }
    addresses
}

/// Disassembles `count` instructions from `bytes`, which start at `address`.
#[must_use]
pub fn disassemble(
    bytes: &[u8],
    address: u64,
    count: usize,
    pointer_size: u64,
    names: &dyn Names,
) -> Vec<Line> {
    let bitness = if pointer_size == 4 { 32 } else { 64 };
    let mut decoder = Decoder::with_ip(bitness, bytes, address, DecoderOptions::NONE);
    let mut instructions = Vec::new();
    while instructions.len() < count && decoder.can_decode() {
        let offset = decoder.position();
        let instruction = decoder.decode();
        instructions.push((offset, instruction));
        if instruction.is_invalid() {
            break;
        }
    }
    let mut resolved = HashMap::new();
    for (_, instruction) in &instructions {
        for mention in mentioned(instruction) {
            if let Some(name) = names.name(mention) {
                resolved.insert(mention, name);
            }
        }
    }
    let mut formatter = MasmFormatter::with_options(
        Some(Box::new(Resolver {
            names: resolved,
            pointer_size,
        })),
        None,
    );
    let options = formatter.options_mut();
    options.set_first_operand_char_index(8);
    options.set_memory_size_options(MemorySizeOptions::Always);
    options.set_show_branch_size(false);
    options.set_rip_relative_addresses(false);
    options.set_branch_leading_zeros(false);
    instructions
        .into_iter()
        .map(|(at, instruction)| {
            let length = instruction.len();
            let text = if instruction.is_invalid() {
                "???".to_owned()
            } else {
                let mut text = String::new();
                formatter.format(&instruction, &mut text);
                tidy(&text)
            };
            Line {
                address: instruction.ip(),
                length,
                text,
                bytes: bytes.get(at..at + length).unwrap_or_default().to_vec(),
            }
        })
        .collect()
}

/// kd's spellings where iced's MASM differs: no `ds:` before a named
/// operand (`dword ptr [nt!PoolHitTag (82b37df4)]`).
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("ds:[") {
        let named = rest[at + 4..]
            .chars()
            .next()
            .is_some_and(|next| next.is_ascii_alphabetic() || next == '_');
        out.push_str(&rest[..at]);
        if !named {
            out.push_str("ds:");
        }
        out.push('[');
        rest = &rest[at + 4..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;

    impl Names for Fixed {
        fn name(&self, address: u64) -> Option<String> {
            match address {
                0xa04c_500c => Some("Sample!g_RegistryPath+0x4".into()),
                0x82b3_7df4 => Some("nt!PoolHitTag".into()),
                0xa04c_3000 => Some("Sample!DriverEntry".into()),
                _ => None,
            }
        }
    }

    fn one(bytes: &[u8], address: u64, pointer_size: u64) -> String {
        disassemble(bytes, address, 1, pointer_size, &Fixed)[0].render(pointer_size, false)
    }

    #[test]
    fn walkthrough_breakpoint_line() {
        // 83 3d <disp32> 00: cmp dword ptr [a04c500c],0 (the walkthrough's line).
        let bytes = [0x83, 0x3d, 0x0c, 0x50, 0x4c, 0xa0, 0x00];
        assert_eq!(
            one(&bytes, 0xa04c_305c, 4),
            "a04c305c cmp     dword ptr [Sample!g_RegistryPath+0x4 (a04c500c)],0"
        );
    }

    #[test]
    fn int3_and_frame_operands() {
        assert_eq!(one(&[0xcc], 0x82b2_f88c, 4), "82b2f88c int     3");
        // mov eax,[ebp+8] and [ebp+0Ch] as kd writes displacements.
        assert_eq!(
            one(&[0x8b, 0x45, 0x08], 0xa04c_30ba, 4),
            "a04c30ba mov     eax,dword ptr [ebp+8]"
        );
        assert_eq!(
            one(&[0x8b, 0x45, 0x0c], 0xa04c_30ba, 4),
            "a04c30ba mov     eax,dword ptr [ebp+0Ch]"
        );
    }

    #[test]
    fn unnamed_absolute_operand_keeps_ds() {
        let bytes = [0xa1, 0x00, 0x03, 0xfe, 0x7f];
        assert_eq!(
            one(&bytes, 0x1000, 4),
            "00001000 mov     eax,dword ptr ds:[7FFE0300h]"
        );
        let named = [0xa1, 0xf4, 0x7d, 0xb3, 0x82];
        assert_eq!(
            one(&named, 0x1000, 4),
            "00001000 mov     eax,dword ptr [nt!PoolHitTag (82b37df4)]"
        );
    }

    #[test]
    fn branches_name_their_targets() {
        // call rel32 to a04c3000, from a04c3050.
        let rel = 0xa04c_3000_u32.wrapping_sub(0xa04c_3055).to_le_bytes();
        let bytes = [0xe8, rel[0], rel[1], rel[2], rel[3]];
        assert_eq!(
            one(&bytes, 0xa04c_3050, 4),
            "a04c3050 call    Sample!DriverEntry (a04c3000)"
        );
        // A jump to an unnamed address prints the bare address.
        assert_eq!(one(&[0xeb, 0x00], 0x1000, 4), "00001000 jmp     00001002");
    }

    #[test]
    fn x64_addresses_and_code_bytes() {
        let line = &disassemble(
            &[0x48, 0x89, 0x5c, 0x24, 0x08],
            0xFFFF_F806_1234_1000,
            1,
            8,
            &Fixed,
        )[0];
        assert_eq!(
            line.render(8, false),
            "fffff806`12341000 mov     qword ptr [rsp+8],rbx"
        );
        assert_eq!(
            line.render(8, true),
            "fffff806`12341000 48895c2408       mov     qword ptr [rsp+8],rbx"
        );
    }

    #[test]
    fn undecodable_bytes_are_question_marks() {
        // A truncated `mov`: kd prints `???` and stops there.
        let lines = disassemble(&[0x8b], 0x1000, 4, 4, &Fixed);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].text, "???");
    }
}
