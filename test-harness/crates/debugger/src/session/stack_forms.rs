//! `kc` (a clean stack: module!function only) and `kf` (the bytes between
//! adjacent frames), alone or with `k`'s other options (`kcn`, `kvf`).
//! debugger/k--kb--kc--kd--kp--kp--kv--display-stack-backtrace-.md: "c
//! Displays a clean stack trace. Each display line includes only the module
//! name and the function name"; "f Displays the distance between adjacent
//! frames. This distance is the number of bytes that separate the frames on
//! the actual stack." Row forms from real sessions: `00 nt!KeBugCheckEx`
//! under ` # Call Site`, and ``01         8 fffff880`02f1e6e0 ...`` under
//! ` #   Memory  Child-SP ...` (the distance in hex, blank for frame 00).

use std::fmt::Write as _;

use super::{Reply, Session, control};
use crate::expr;

/// Whether `name` is a `k` command with `c` or `f` (and no `p`/`P`, whose
/// parameter lists are not shown here).
pub(super) fn is_clean_or_distance(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    control::is_stack_command(&lower)
        && (lower.contains('c') || lower.contains('f'))
        && !lower.contains('p')
}

impl Session {
    /// `kc`, `kf` and their combinations with `b`, `v`, `n`.
    pub(super) fn stack_form(&self, name: &str, args: &str) -> Reply {
        let lower = name.to_ascii_lowercase();
        if lower.contains('c') {
            return self.clean_stack(args);
        }
        // `k` without `f`, then the distance column in front of each row.
        let plain: String = lower.chars().filter(|c| *c != 'f').collect();
        let listing = self.backtrace(&plain, args)?;
        let frames = self.frames();
        let mut out = String::new();
        for (index, line) in listing.lines().enumerate() {
            let Some(row) = index.checked_sub(1) else {
                // ` # Child...` becomes ` #   Memory  Child...`.
                let _ = writeln!(out, " #   Memory  {}", line.trim_start_matches(" # "));
                continue;
            };
            let (number, rest) = line.split_at(line.len().min(2));
            let distance = match (
                row.checked_sub(1).and_then(|up| frames.get(up)),
                frames.get(row),
            ) {
                (Some(above), Some(frame)) => {
                    format!("{:x}", frame.child.wrapping_sub(above.child))
                }
                _ => String::new(),
            };
            let _ = writeln!(out, "{number}{distance:>9} {rest}");
        }
        Ok(out)
    }

    /// `kc`: each frame's `module!function`, without offsets.
    fn clean_stack(&self, args: &str) -> Reply {
        let limit = if args.is_empty() {
            0x100
        } else {
            usize::try_from(expr::evaluate(args, self)?).unwrap_or(usize::MAX)
        };
        let mut out = String::from(" # Call Site\n");
        for (number, frame) in self.frames().iter().enumerate().take(limit) {
            // module!function without its offset; a module without names
            // keeps module+offset, the only name there is.
            let site = self.names.name_of(frame.ip).map_or_else(
                || format!("0x{}", self.address(frame.ip)),
                |name| {
                    if name.contains('!') {
                        name.split("+0x").next().unwrap_or_default().to_owned()
                    } else {
                        name
                    }
                },
            );
            let _ = writeln!(out, "{number:02x} {site}");
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::is_clean_or_distance;

    #[test]
    fn c_and_f_forms_are_recognised() {
        assert!(is_clean_or_distance("kc"));
        assert!(is_clean_or_distance("kvf"));
        assert!(is_clean_or_distance("kcn"));
        assert!(!is_clean_or_distance("kvn"));
        assert!(!is_clean_or_distance("kpf"));
        assert!(!is_clean_or_distance("kx"));
    }
}
