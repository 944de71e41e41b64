//! `ub` (the instructions before an address) and `uf` (a whole function,
//! block by block). debugger/u--unassemble-.md: `ub` counts backward, "the
//! range of the specified length ending at Address", "the eight or nine
//! instructions before the current address" without one (eight here), and
//! takes `Address L<count>`, never `Address1 Address2`.
//! debugger/uf--unassemble-function-.md: `uf` lists the function's code,
//! each block (the entry, a branch target, the code after a branch) under
//! a `module!function+0xoff:` label after a blank line, as kd's `uf` shows
//! a function whose blocks lie in address order.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use iced_x86::{Decoder, DecoderOptions, FlowControl};

use super::{CommandError, Reply, Session};
use crate::{disasm, expr};

/// Instructions `ub` shows without a count.
const DEFAULT_COUNT: u64 = 8;

/// The most instructions `ub` or `uf` lists (as `u`'s 0x1000).
const MAX_INSTRUCTIONS: usize = 0x1000;

/// The longest x86 instruction.
const MAX_INSTRUCTION_BYTES: u64 = 15;

impl Session {
    /// The start and end of the function holding `address`: a driver
    /// procedure from the PDB, or a kernel function from its symbols.
    fn function_bounds(&self, address: u64) -> Option<(u64, u64)> {
        if let Some(rva) = self.names.driver_rva(address) {
            let procedure = self.names.pdb()?.procedure_at(rva)?;
            let start = self.names.driver_base() + u64::from(procedure.rva);
            return Some((start, start + u64::from(procedure.length)));
        }
        let (symbol, _) = self.target.nt().symbol_at(address)?;
        symbol
            .function
            .then_some((symbol.address, symbol.address + symbol.size.max(1)))
    }

    /// Decodes `[start, end)`: each instruction's address, length and flow.
    fn decode_span(&self, start: u64, end: u64) -> Vec<(u64, usize, FlowControl, u64)> {
        let length = usize::try_from(end.saturating_sub(start)).unwrap_or(0);
        let Some(bytes) = self.target.read(start, length) else {
            return Vec::new();
        };
        let bitness = if self.pointer_size() == 4 { 32 } else { 64 };
        let mut decoder = Decoder::with_ip(bitness, &bytes, start, DecoderOptions::NONE);
        let mut out = Vec::new();
        while decoder.can_decode() && out.len() < MAX_INSTRUCTIONS {
            let instruction = decoder.decode();
            if instruction.is_invalid() {
                break;
            }
            out.push((
                instruction.ip(),
                instruction.len(),
                instruction.flow_control(),
                instruction.near_branch_target(),
            ));
        }
        out
    }

    /// `ub [address] [L count]`.
    pub(super) fn unassemble_backwards(&self, args: &str) -> Reply {
        let (end, count) = if args.is_empty() {
            (self.target.ip(), DEFAULT_COUNT)
        } else {
            let range = expr::parse_range(args, self)?;
            match range.extent {
                None => (range.start, DEFAULT_COUNT),
                Some(expr::Extent::Count { count, .. }) => (range.start, count),
                Some(expr::Extent::End(_)) => {
                    return Err(CommandError::Message(
                        "harness kd: ub takes an address and L<count>".into(),
                    ));
                }
            }
        };
        let count = usize::try_from(count)
            .unwrap_or(MAX_INSTRUCTIONS)
            .min(MAX_INSTRUCTIONS);
        // Instructions that end exactly at `end`: from the function's start
        // when it is known, else from the furthest byte back whose decoding
        // lands on `end`.
        let reach = MAX_INSTRUCTION_BYTES * count as u64;
        let starts: Vec<u64> = match self.function_bounds(end.wrapping_sub(1)) {
            Some((start, _)) if start < end => vec![start],
            _ => (1..=reach)
                .rev()
                .map(|back| end.wrapping_sub(back))
                .collect(),
        };
        let mut lines = Vec::new();
        for start in starts {
            let decoded = self.decode_span(start, end);
            if decoded
                .last()
                .is_some_and(|(at, length, ..)| at + *length as u64 == end)
            {
                lines = decoded;
                break;
            }
        }
        if lines.is_empty() {
            return Ok(format!(
                "{} ??              ???\n",
                self.address(end.wrapping_sub(1))
            ));
        }
        let first = lines.len().saturating_sub(count);
        let (start, _, _, _) = lines[first];
        Ok(self.listing(start, lines.len() - first, &BTreeSet::from([start])))
    }

    /// `uf address`: the function holding `address`, block by block.
    pub(super) fn unassemble_function(&self, args: &str) -> Reply {
        let address = if args.is_empty() {
            self.target.ip()
        } else {
            expr::evaluate(args, self)?
        };
        let Some((start, end)) = self.function_bounds(address) else {
            return Err(CommandError::Message("No code found, aborting".into()));
        };
        let decoded = self.decode_span(start, end);
        let mut blocks = BTreeSet::from([start]);
        for (at, length, flow, target) in &decoded {
            match flow {
                FlowControl::ConditionalBranch | FlowControl::UnconditionalBranch => {
                    if (start..end).contains(target) {
                        blocks.insert(*target);
                    }
                    blocks.insert(at + *length as u64);
                }
                FlowControl::Return => {
                    blocks.insert(at + *length as u64);
                }
                _ => {}
            }
        }
        blocks.retain(|block| *block < end);
        Ok(self.listing(start, decoded.len(), &blocks))
    }

    /// `count` instructions from `start`, with a label line (after a blank
    /// line, but for the first) where each block in `blocks` starts.
    fn listing(&self, start: u64, count: usize, blocks: &BTreeSet<u64>) -> String {
        let length = usize::try_from(MAX_INSTRUCTION_BYTES).unwrap_or(15) * count;
        let bytes = self
            .target
            .read(start, length)
            .or_else(|| {
                // The last page may end before `length` bytes: read less.
                let page_end = (start | 0xfff) + 1;
                self.target
                    .read(start, usize::try_from(page_end - start).unwrap_or(0))
            })
            .unwrap_or_default();
        let lines = disasm::disassemble(&bytes, start, count, self.pointer_size(), &self.names);
        let mut out = String::new();
        for line in &lines {
            if blocks.contains(&line.address) {
                if line.address != start {
                    out.push('\n');
                }
                let label = self
                    .names
                    .name_of(line.address)
                    .unwrap_or_else(|| self.address(line.address));
                let _ = writeln!(out, "{label}:");
            }
            let _ = writeln!(out, "{}", line.render(self.pointer_size(), self.code_bytes));
        }
        out
    }
}
