//! Names for code addresses, the way WinDbg prints them: `Sample!DriverEntry+0x27`.
//!
//! From the PDB beside the driver when it matches the image, else from the
//! image's exports, else `Sample+0x1027`; outside the image, a raw address.

use std::path::{Path, PathBuf};

use crate::pdb::DriverSymbols;
use crate::pe::PeImage;

#[derive(Debug, Clone)]
struct Function {
    rva: u32,
    len: u32,
    name: String,
}

/// Where the names came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SymbolSource {
    /// A PDB whose GUID and age match the image.
    Pdb(PathBuf),
    /// The image's export table only.
    Exports,
}

/// Resolves addresses inside one loaded driver image.
#[derive(Debug, Clone)]
pub struct Symbolizer {
    module: String,
    base: u64,
    size: u64,
    functions: Vec<Function>,
    /// Where the names come from.
    pub source: SymbolSource,
    /// Why a PDB next to the image was not used, if one was there.
    pub pdb_problem: Option<String>,
}

impl Symbolizer {
    /// Symbols for `driver` loaded at `base`, from `<stem>.pdb` beside it when
    /// that PDB belongs to this build of the image.
    #[must_use]
    pub fn for_driver(driver: &Path, image: &PeImage, base: u64, size: u64) -> Self {
        let module = driver.file_stem().map_or_else(
            || "driver".to_owned(),
            |stem| stem.to_string_lossy().into_owned(),
        );
        let pdb_path = driver.with_extension("pdb");
        let mut pdb_problem = None;
        // Only a regular file: a FIFO or device named like the PDB would block.
        if pdb_path.is_file() {
            match read_pdb(&pdb_path, image) {
                Ok(functions) => {
                    return Self {
                        module,
                        base,
                        size,
                        functions,
                        source: SymbolSource::Pdb(pdb_path),
                        pdb_problem,
                    };
                }
                Err(why) => pdb_problem = Some(format!("{}: {why}", pdb_path.display())),
            }
        }
        let mut functions: Vec<Function> = image
            .exports
            .iter()
            .map(|(name, rva)| Function {
                rva: *rva,
                len: 0,
                name: strip_stdcall_suffix(name).to_owned(),
            })
            .collect();
        functions.sort_by_key(|function| function.rva);
        Self {
            module,
            base,
            size,
            functions,
            source: SymbolSource::Exports,
            pdb_problem,
        }
    }

    /// The module name used in symbols (`Sample`).
    #[must_use]
    pub fn module(&self) -> &str {
        &self.module
    }

    /// Names a return address (a call site, as in a stack trace).
    ///
    /// It is looked up one byte back, so that a call that is the last
    /// instruction of a function still names that function.
    #[must_use]
    pub fn name(&self, return_address: u64) -> String {
        self.lookup(return_address, return_address.saturating_sub(1))
    }

    /// Names the address of an instruction (a faulting PC).
    #[must_use]
    pub(crate) fn name_instruction(&self, pc: u64) -> String {
        self.lookup(pc, pc)
    }

    /// The function that starts exactly at `rva`, if the symbols know one.
    #[must_use]
    pub fn function_at(&self, rva: u32) -> Option<&str> {
        self.functions
            .iter()
            .find(|function| function.rva == rva)
            .map(|function| function.name.as_str())
    }

    /// Where the function named `name` starts.
    #[must_use]
    pub fn function_rva(&self, name: &str) -> Option<u32> {
        self.functions
            .iter()
            .find(|function| function.name == name)
            .map(|function| function.rva)
    }

    /// Every function name the symbols know.
    pub fn function_names(&self) -> impl Iterator<Item = &str> {
        self.functions.iter().map(|function| function.name.as_str())
    }

    fn lookup(&self, address: u64, probe: u64) -> String {
        if probe < self.base || probe >= self.base + self.size {
            return format!("0x{address:x}");
        }
        let rva = u32::try_from(address - self.base).unwrap_or(u32::MAX);
        let probe = u32::try_from(probe - self.base).unwrap_or(u32::MAX);
        let best = self
            .functions
            .iter()
            .filter(|function| function.rva <= probe)
            .filter(|function| function.len == 0 || probe < function.rva + function.len)
            .max_by_key(|function| function.rva);
        best.map_or_else(
            || format!("{}+0x{rva:x}", self.module),
            |function| {
                format!(
                    "{}!{}+0x{:x}",
                    self.module,
                    function.name,
                    rva - function.rva
                )
            },
        )
    }
}

/// `DriverEntry@8` -> `DriverEntry` (how MinGW exports stdcall functions).
fn strip_stdcall_suffix(name: &str) -> &str {
    match name.rsplit_once('@') {
        Some((stem, digits))
            if !stem.is_empty()
                && !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit()) =>
        {
            stem
        }
        _ => name,
    }
}

/// The functions of the PDB that belongs to `image`, read with the same
/// bounded reader `kd` uses.
fn read_pdb(path: &Path, image: &PeImage) -> Result<Vec<Function>, String> {
    let symbols = DriverSymbols::load(path, image).map_err(|error| error.to_string())?;
    let functions: Vec<Function> = symbols
        .procedures()
        .iter()
        .map(|procedure| Function {
            rva: procedure.rva,
            len: procedure.length,
            name: procedure.name.clone(),
        })
        .collect();
    if functions.is_empty() {
        return Err("the PDB has no function symbols".into());
    }
    Ok(functions)
}
