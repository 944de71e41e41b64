//! Names and addresses across the session's modules: `nt` (the emulated
//! kernel's own symbols) and the driver (its PDB, else its exports).
//!
//! `name_of` gives kd's `module!symbol+0xoff`; `address_of` resolves what a
//! trainee types (`nt!PoolHitTag`, `Sample!g_RegistryPath`, `DriverEntry`).

use std::sync::Arc;

use harness_core::pdb::DriverSymbols;
use harness_core::symbols::Symbolizer;
use harness_ntemu::nt::NtImage;

/// A symbol's address and `module!name`.
pub type Named = (u64, String);

/// The session's symbols.
pub struct Names {
    nt: Arc<NtImage>,
    /// The driver's module name (`Sample`).
    pub driver: String,
    base: u64,
    size: u64,
    pdb: Option<DriverSymbols>,
    exports: Symbolizer,
    /// The driver's image is mapped (names resolve into it).
    pub mapped: bool,
}

impl Names {
    /// Symbols for nt and a driver at `base`.
    #[must_use]
    pub const fn new(
        nt: Arc<NtImage>,
        driver: String,
        (base, size): (u64, u64),
        pdb: Option<DriverSymbols>,
        exports: Symbolizer,
    ) -> Self {
        Self {
            nt,
            driver,
            base,
            size,
            pdb,
            exports,
            mapped: true,
        }
    }

    /// The driver's PDB symbols, when it has a matching PDB.
    #[must_use]
    pub const fn pdb(&self) -> Option<&DriverSymbols> {
        self.pdb.as_ref()
    }

    /// The driver's base address.
    #[must_use]
    pub const fn driver_base(&self) -> u64 {
        self.base
    }

    /// Whether `address` is in the driver's image.
    #[must_use]
    pub const fn in_driver(&self, address: u64) -> bool {
        self.mapped && address >= self.base && address - self.base < self.size
    }

    /// The RVA of a driver address.
    #[must_use]
    pub(crate) fn driver_rva(&self, address: u64) -> Option<u32> {
        if self.in_driver(address) {
            u32::try_from(address - self.base).ok()
        } else {
            None
        }
    }

    /// Whether `name` is the driver's module name (kd matches case-blind).
    #[must_use]
    pub(crate) fn is_driver(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case(&self.driver)
    }

    /// A module's base by name.
    #[must_use]
    pub(crate) fn module_base(&self, name: &str) -> Option<u64> {
        if name.eq_ignore_ascii_case("nt") {
            Some(self.nt.base)
        } else if self.is_driver(name) && self.mapped {
            Some(self.base)
        } else {
            None
        }
    }

    /// Resolves `module!name` (or a bare `name`, tried in nt then the driver).
    #[must_use]
    pub(crate) fn address_of(&self, module: Option<&str>, name: &str) -> Option<u64> {
        let in_nt = || self.nt.symbol(name);
        let in_driver = || self.driver_symbol(name);
        match module {
            Some(module) if module.eq_ignore_ascii_case("nt") => in_nt(),
            Some(module) if self.is_driver(module) => in_driver(),
            Some(_) => None,
            None => in_nt().or_else(in_driver),
        }
    }

    fn driver_symbol(&self, name: &str) -> Option<u64> {
        if !self.mapped {
            return None;
        }
        if let Some(pdb) = &self.pdb {
            if let Some(procedure) = pdb.procedure_by_name(name) {
                return Some(self.base + u64::from(procedure.rva));
            }
            if let Some(global) = pdb.global(name) {
                return Some(self.base + u64::from(global.rva));
            }
        }
        self.exports
            .function_rva(name)
            .map(|rva| self.base + u64::from(rva))
    }

    /// kd's name for an address: `nt!ExAllocatePoolWithTag+0x881`,
    /// `Sample!g_RegistryPath+0x4`, `Sample+0x1234` past the driver's last
    /// symbol; `None` outside every module.
    #[must_use]
    pub(crate) fn name_of(&self, address: u64) -> Option<String> {
        if let Some((symbol, offset)) = self.nt.symbol_at(address) {
            return Some(with_offset(&format!("nt!{}", symbol.name), offset));
        }
        if address >= self.nt.base && address - self.nt.base < self.nt.size() {
            return Some(with_offset("nt", address - self.nt.base));
        }
        let rva = self.driver_rva(address)?;
        let (name, start) = self.driver_symbol_before(rva).unwrap_or_default();
        if name.is_empty() {
            return Some(with_offset(&self.driver, u64::from(rva)));
        }
        Some(with_offset(
            &format!("{}!{name}", self.driver),
            u64::from(rva - start),
        ))
    }

    /// The driver symbol at or before `rva`: procedures, globals, exports.
    fn driver_symbol_before(&self, rva: u32) -> Option<(String, u32)> {
        let mut best: Option<(String, u32)> = None;
        let mut consider = |name: &str, start: u32| {
            if start <= rva && best.as_ref().is_none_or(|(_, at)| start > *at) {
                best = Some((name.to_owned(), start));
            }
        };
        if let Some(pdb) = &self.pdb {
            for procedure in pdb.procedures() {
                consider(&procedure.name, procedure.rva);
            }
            for global in pdb.globals() {
                consider(&global.name, global.rva);
            }
        } else if let Some(name) = self.exports.function_at(rva) {
            let start = self.exports.function_rva(name).unwrap_or(rva);
            consider(name, start);
        }
        best
    }

    /// The driver's function start addresses (for the x86 walker).
    #[must_use]
    pub(crate) fn driver_function_starts(&self) -> Vec<u64> {
        self.pdb.as_ref().map_or_else(Vec::new, |pdb| {
            pdb.procedures()
                .iter()
                .map(|procedure| self.base + u64::from(procedure.rva))
                .collect()
        })
    }

    /// The nearest symbols before and after `address` (`ln`), with addresses.
    #[must_use]
    pub(crate) fn neighbours(&self, address: u64) -> (Option<Named>, Option<Named>) {
        // Only the module's own symbols: a driver address is never named
        // after a far-away nt symbol. Without symbols of its own, kd names
        // it after the module (`Sample+0x1020`, ln--list-nearest-symbols-.md).
        let mut all: Vec<(u64, String)> = Vec::new();
        if self.in_driver(address) {
            all.push((self.base, self.driver.clone()));
            if self.pdb.is_none()
                && let Some(name) = self
                    .driver_rva(address)
                    .and_then(|rva| self.exports.function_at(rva))
                && let Some(rva) = self.exports.function_rva(name)
            {
                all.push((
                    self.base + u64::from(rva),
                    format!("{}!{name}", self.driver),
                ));
            }
        } else {
            all.extend(
                self.nt
                    .symbols
                    .iter()
                    .map(|symbol| (symbol.address, format!("nt!{}", symbol.name))),
            );
        }
        if self.mapped
            && self.in_driver(address)
            && let Some(pdb) = &self.pdb
        {
            all.extend(pdb.procedures().iter().map(|procedure| {
                (
                    self.base + u64::from(procedure.rva),
                    format!("{}!{}", self.driver, procedure.name),
                )
            }));
            all.extend(pdb.globals().iter().map(|global| {
                (
                    self.base + u64::from(global.rva),
                    format!("{}!{}", self.driver, global.name),
                )
            }));
        }
        all.sort();
        let before = all.iter().rev().find(|(at, _)| *at <= address).cloned();
        let after = all.iter().find(|(at, _)| *at > address).cloned();
        (before, after)
    }
}

/// `name+0x12`, or `name` at offset 0.
fn with_offset(name: &str, offset: u64) -> String {
    if offset == 0 {
        name.to_owned()
    } else {
        format!("{name}+0x{offset:x}")
    }
}
