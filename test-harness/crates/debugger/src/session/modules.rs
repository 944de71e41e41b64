//! Modules, symbols, code and types: `lm`, `ln`, `x`, `u`, `dt`.

use std::fmt::Write as _;

use super::{CommandError, Reply, Session};
use crate::{disasm, expr};
use harness_core::types;

/// Instructions `u` shows without a count.
const UNASSEMBLE_COUNT: usize = 8;

impl Session {
    /// `lm [m pattern]`: the loaded modules, then the unloaded ones.
    pub(super) fn list_modules(&self, args: &str) -> String {
        let pattern = args
            .split_whitespace()
            .skip_while(|word| *word != "m")
            .nth(1);
        let width = self.address(0).len();
        let mut out = format!(
            "{:<width$} {:<width$}   module name\n",
            "start",
            "end",
            width = width
        );
        for module in self.target.modules() {
            if pattern.is_some_and(|pattern| !wildcard(pattern, &module.name)) {
                continue;
            }
            if module.name != "nt" && !self.names.mapped {
                continue;
            }
            let symbols = if module.name == "nt" {
                format!("(export symbols)       {}", module.image)
            } else if self.names.pdb().is_some() {
                format!(
                    "(private pdb symbols)  {}",
                    self.target
                        .driver()
                        .pdb
                        .as_ref()
                        .map_or_else(String::new, |pdb| {
                            std::fs::canonicalize(pdb)
                                .unwrap_or_else(|_| pdb.clone())
                                .display()
                                .to_string()
                        })
                )
            } else {
                format!("(export symbols)       {}", module.image)
            };
            let _ = writeln!(
                out,
                "{} {}   {:<10} {symbols}",
                self.address(module.base),
                self.address(module.base + module.size),
                module.name
            );
        }
        if self.driver_was_unloaded() {
            let (base, size) = self.target.machine.kernel().image;
            let _ = write!(
                out,
                "\nUnloaded modules:\n{} {}   {}\n",
                self.address(base),
                self.address(base + size),
                self.target.driver().file_name
            );
        }
        out
    }

    fn driver_was_unloaded(&self) -> bool {
        self.target.driver_unloaded()
    }

    /// `ln address`: the nearest symbols around it.
    pub(super) fn list_nearest(&self, args: &str) -> Reply {
        let address = if args.is_empty() {
            self.target.ip()
        } else {
            expr::evaluate(args, self)?
        };
        let (before, after) = self.names.neighbours(address);
        let Some((start, name)) = before else {
            return Ok(String::new());
        };
        if self.names.name_of(address).is_none() {
            return Ok(String::new());
        }
        let mut out = String::new();
        let offset = address - start;
        let shown = if offset == 0 {
            name.clone()
        } else {
            format!("{name}+0x{offset:x}")
        };
        let _ = write!(out, "({})   {shown}", self.address(start));
        if let Some((next, next_name)) = after {
            let _ = write!(out, "   |  ({})   {next_name}", self.address(next));
        }
        out.push('\n');
        if offset == 0 {
            let _ = writeln!(out, "Exact matches:\n    {name} = <no type information>");
        }
        Ok(out)
    }

    /// `x module!pattern`: symbols matching a wildcard.
    pub(super) fn examine(&self, args: &str) -> Reply {
        let Some((module, pattern)) = args.split_once('!') else {
            return Err(CommandError::Message(
                "harness kd: x needs module!pattern (x Sample!*, x nt!Pool*)".into(),
            ));
        };
        let mut found: Vec<(u64, String)> = Vec::new();
        if module.eq_ignore_ascii_case("nt") {
            for symbol in &self.target.nt().symbols {
                if wildcard(pattern, &symbol.name) {
                    found.push((symbol.address, format!("nt!{}", symbol.name)));
                }
            }
        } else if self.names.is_driver(module)
            && self.names.mapped
            && let Some(pdb) = self.names.pdb()
        {
            {
                let base = self.names.driver_base();
                for procedure in pdb.procedures() {
                    if wildcard(pattern, &procedure.name) {
                        found.push((
                            base + u64::from(procedure.rva),
                            format!("{}!{}", self.names.driver, procedure.name),
                        ));
                    }
                }
                for global in pdb.globals() {
                    if wildcard(pattern, &global.name) {
                        found.push((
                            base + u64::from(global.rva),
                            format!("{}!{}", self.names.driver, global.name),
                        ));
                    }
                }
            }
        }
        found.sort();
        found.dedup();
        let mut out = String::new();
        for (address, name) in found {
            let suffix = self.symbol_suffix(address, &name);
            let _ = writeln!(out, "{}          {name}{suffix}", self.address(address));
        }
        Ok(out)
    }

    /// `u [range]`: disassembly, with a label line where a symbol starts.
    pub(super) fn unassemble(&mut self, args: &str) -> Reply {
        let (start, count) = if args.is_empty() {
            (
                self.next_unassemble.unwrap_or_else(|| self.target.ip()),
                UNASSEMBLE_COUNT,
            )
        } else {
            let range = expr::parse_range(args, self)?;
            match range.extent {
                None => (range.start, UNASSEMBLE_COUNT),
                Some(expr::Extent::Count { count, .. }) => (
                    range.start,
                    usize::try_from(count.min(0x1000)).unwrap_or(0x1000),
                ),
                Some(expr::Extent::End(end)) => {
                    // Enough instructions to reach `end`.
                    let bytes =
                        usize::try_from(end.saturating_sub(range.start).min(0x10000)).unwrap_or(0);
                    (range.start, bytes.max(1))
                }
            }
        };
        let bytes = self.readable_bytes(start, count * 15);
        if bytes.is_empty() {
            return Ok(format!("{} ??              ???\n", self.address(start)));
        }
        let lines = disasm::disassemble(&bytes, start, count, self.pointer_size(), &self.names);
        let mut out = String::new();
        for (index, line) in lines.iter().enumerate() {
            let label = self.names.name_of(line.address);
            let starts_symbol = label.as_ref().is_some_and(|name| !name.contains("+0x"));
            if (index == 0 || starts_symbol)
                && let Some(name) = label
            {
                let _ = writeln!(out, "{name}:");
            }
            let _ = writeln!(out, "{}", line.render(self.pointer_size(), self.code_bytes));
        }
        self.next_unassemble = lines.last().map(|line| line.address + line.length as u64);
        Ok(out)
    }

    /// As many bytes from `start` as are mapped, up to `length`.
    fn readable_bytes(&self, start: u64, length: usize) -> Vec<u8> {
        let mut length = length;
        while length > 0 {
            if let Some(bytes) = self.target.read(start, length) {
                return bytes;
            }
            // Stop at the end of the mapped page.
            let page_end = (start | 0xfff) + 1;
            let within = usize::try_from(page_end - start).unwrap_or(0);
            length = if length > within { within } else { 0 };
        }
        Vec::new()
    }

    /// `dt [module!]type [address]`, `dt module!global`.
    pub(super) fn display_type(&self, args: &str) -> Reply {
        let (options, args) = dt_options(args)?;
        let mut words = args.splitn(2, char::is_whitespace);
        let name = words.next().unwrap_or_default();
        let rest = words.next().unwrap_or_default().trim();
        if name.is_empty() {
            return Err(CommandError::Message(
                "harness kd: dt needs a type or a variable (dt nt!_POOL_HEADER addr, dt Sample!g_RegistryPath)"
                    .into(),
            ));
        }
        let read = |address: u64, length: usize| self.target.read(address, length);
        let name_code = |address: u64| self.names.name_of(address);
        if let Some((table, id)) = self.find_type(name) {
            let address = if rest.is_empty() {
                None
            } else {
                Some(expr::evaluate(rest, self)?)
            };
            return Ok(types::dt_with_options(
                table,
                id,
                address,
                self.arch(),
                &read,
                &name_code,
                options,
            ));
        }
        // A variable: the driver's globals from its PDB.
        let (module, bare) = match name.split_once('!') {
            Some((module, bare)) => (Some(module), bare),
            None => (None, name),
        };
        let driver_global = module.is_none_or(|module| self.names.is_driver(module));
        if driver_global
            && self.names.mapped
            && let Some(pdb) = self.names.pdb()
            && let Some(global) = pdb.global(bare)
        {
            let Some(ty) = global.ty else {
                return Err(CommandError::Message(format!(
                    "harness kd: {name} has no type information in the PDB"
                )));
            };
            let address = self.names.driver_base() + u64::from(global.rva);
            return Ok(types::dt_with_options(
                &pdb.types,
                ty,
                Some(address),
                self.arch(),
                &read,
                &name_code,
                options,
            ));
        }
        let shown = if module.is_some() {
            name.to_owned()
        } else {
            format!("nt!{name}")
        };
        Err(CommandError::Message(format!("Symbol {shown} not found.")))
    }
}

/// `dt`'s leading options (dt--display-type-.md): `-r[N]` expands
/// structure members N levels deep (N a digit 1-9; alone, as deep as the
/// harness goes), `-b` expands them all, `-v` adds the size line. Other
/// options are refused rather than read as a type name.
fn dt_options(args: &str) -> Result<(types::DtOptions, &str), CommandError> {
    let mut options = types::DtOptions::default();
    let mut rest = args.trim_start();
    while let Some(option) = rest.strip_prefix('-') {
        let end = option.find(char::is_whitespace).unwrap_or(option.len());
        let word = &option[..end];
        match word.as_bytes() {
            [b'r' | b'b'] => options.recurse = usize::MAX,
            [b'r', digit @ b'0'..=b'9'] => options.recurse = usize::from(digit - b'0'),
            [b'v'] => options.verbose = true,
            _ => {
                return Err(CommandError::Message(format!(
                    "harness kd: dt -{word} is not emulated (-r[N], -b and -v are)"
                )));
            }
        }
        rest = option[end..].trim_start();
    }
    Ok((options, rest))
}

/// kd's `*` and `?` wildcards, case-blind.
pub(super) fn wildcard(pattern: &str, text: &str) -> bool {
    wildcard_bytes(pattern.as_bytes(), text.as_bytes(), true)
}

/// `*` and `?` matching, case-blind or not (the usual backtracking matcher:
/// linear in practice, never exponential).
pub(super) fn wildcard_bytes(pattern: &[u8], text: &[u8], case_blind: bool) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(c)
                if *c == b'?'
                    || *c == text[t]
                    || (case_blind && c.eq_ignore_ascii_case(&text[t])) =>
            {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == b'*')
}

#[cfg(test)]
mod tests {
    use super::wildcard;

    #[test]
    fn wildcards_match_like_kd() {
        assert!(wildcard("Pool*", "PoolHitTag"));
        assert!(wildcard("*", "anything"));
        assert!(wildcard("?oolHitTag", "PoolHitTag"));
        assert!(wildcard("poolhittag", "PoolHitTag"));
        assert!(!wildcard("Pool", "PoolHitTag"));
        assert!(!wildcard("*Free", "ExAllocatePoolWithTag"));
    }
}
