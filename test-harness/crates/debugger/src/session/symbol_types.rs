//! What `x` prints after a symbol's name: a function's parameter types
//! from the PDB (`Sample!DriverEntry (struct _DRIVER_OBJECT *, struct
//! _UNICODE_STRING *)`), a variable's value as `dv` shows it
//! (`Sample!g_RegistryPath = struct _UNICODE_STRING`), and kd's notes for
//! symbols without type information: `(<no parameter info>)` for a
//! function, `= <no type information>` for data (the kernel's export names
//! are all of this kind, as with public symbols).

use super::Session;
use super::frames::c_type_name;
use harness_core::types::Type;

/// kd's note for a function with no type.
const NO_PARAMETERS: &str = " (<no parameter info>)";
/// kd's note for data with no type.
const NO_TYPE: &str = " = <no type information>";

impl Session {
    /// The text `x` puts after `module!name` at `address`.
    pub(super) fn symbol_suffix(&self, address: u64, qualified: &str) -> String {
        let Some((module, bare)) = qualified.split_once('!') else {
            return String::new();
        };
        if module == "nt" {
            let symbol = self
                .target
                .nt()
                .symbols
                .iter()
                .find(|symbol| symbol.address == address && symbol.name == bare);
            return match symbol {
                Some(symbol) if symbol.function => NO_PARAMETERS.to_owned(),
                Some(_) => NO_TYPE.to_owned(),
                None => String::new(),
            };
        }
        let Some(pdb) = self.names.pdb() else {
            return String::new();
        };
        let Some(rva) = self.names.driver_rva(address) else {
            return String::new();
        };
        if let Some(procedure) = pdb
            .procedures()
            .iter()
            .find(|procedure| procedure.rva == rva && procedure.name == bare)
        {
            return match procedure.ty.and_then(|ty| pdb.types.get(ty)) {
                Some(Type::Function(function)) if function.parameters.is_empty() => {
                    " (void)".to_owned()
                }
                Some(Type::Function(function)) => {
                    let parameters: Vec<String> = function
                        .parameters
                        .iter()
                        .map(|ty| c_type_name(&pdb.types, *ty))
                        .collect();
                    format!(" ({})", parameters.join(", "))
                }
                _ => NO_PARAMETERS.to_owned(),
            };
        }
        match pdb
            .globals()
            .iter()
            .find(|global| global.rva == rva && global.name == bare)
            .map(|global| global.ty)
        {
            Some(Some(ty)) => format!(" = {}", self.value_text(&pdb.types, ty, address)),
            Some(None) => NO_TYPE.to_owned(),
            None => String::new(),
        }
    }
}
