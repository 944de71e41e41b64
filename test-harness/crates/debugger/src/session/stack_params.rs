//! `kp` and `kP`: `k`'s rows with each driver function's parameters, their
//! types, names and values from the PDB, as `dv /t` reads them in that
//! frame. debugger/k--kb--kc--kd--kp--kp--kv--display-stack-backtrace-.md:
//! "p Displays all of the parameters for each function that is called in
//! the stack trace. The parameter list includes each parameter's data type,
//! name, and value"; "P ... the function parameters are printed on a second
//! line of the display". Frames without private symbols (the kernel's)
//! stay as `k` shows them.

use std::fmt::Write as _;

use super::{Reply, Session};

/// Whether `name` (as typed: `p` and `P` differ) is `kp` or `kP`, alone or
/// with `n`.
pub(super) fn is_parameter_stack(name: &str) -> bool {
    name.strip_prefix('k').is_some_and(|options| {
        (options.contains('p') || options.contains('P'))
            && options.chars().all(|c| matches!(c, 'p' | 'P' | 'n'))
    })
}

impl Session {
    /// `kp`/`kP [count]`.
    pub(super) fn parameter_stack(&mut self, name: &str, args: &str) -> Reply {
        let separate_lines = name.contains('P');
        let listing = self.backtrace("k", args)?;
        let frames = self.frames();
        let current = self.frame;
        let mut out = String::new();
        for (index, line) in listing.lines().enumerate() {
            let row = index
                .checked_sub(1)
                .and_then(|row| frames.get(row).map(|frame| (row, *frame)));
            let Some((number, frame)) = row else {
                let _ = writeln!(out, "{line}");
                continue;
            };
            self.frame = number;
            let parameters = self.frame_parameters(&frame);
            self.frame = current;
            let (Some(parameters), Some(site)) = (parameters, self.names.name_of(frame.ip)) else {
                let _ = writeln!(out, "{line}");
                continue;
            };
            let function = site.split("+0x").next().unwrap_or_default();
            let joined = if separate_lines {
                let lines: Vec<String> = parameters
                    .iter()
                    .map(|parameter| format!("\n\t\t\t{parameter}"))
                    .collect();
                lines.join(", ")
            } else {
                parameters.join(", ")
            };
            // Insert the list after the function's name, before its offset.
            let shown = line.replacen(function, &format!("{function}({joined})"), 1);
            let _ = writeln!(out, "{shown}");
        }
        Ok(out)
    }

    /// `type name = value` for each parameter of the driver function of
    /// `frame` (read as `dv /t` reads it with `.frame` on that frame);
    /// `None` outside the driver or without its PDB.
    fn frame_parameters(&self, frame: &crate::stack::Frame) -> Option<Vec<String>> {
        let rva = self.names.driver_rva(frame.ip)?;
        let pdb = self.names.pdb()?;
        // Above frame 0 the return address is one past the call.
        let probe = if self.frame == 0 {
            rva
        } else {
            rva.saturating_sub(1)
        };
        let procedure = pdb.procedure_at(probe)?;
        Some(
            procedure
                .locals
                .iter()
                .filter(|local| local.is_parameter)
                .map(|local| {
                    self.local_line(&pdb.types, procedure, local, frame, probe, true, false)
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::is_parameter_stack;

    #[test]
    fn p_and_capital_p_forms() {
        assert!(is_parameter_stack("kp"));
        assert!(is_parameter_stack("kP"));
        assert!(is_parameter_stack("kpn"));
        assert!(!is_parameter_stack("kvn"));
        assert!(!is_parameter_stack("kpf"));
    }
}
