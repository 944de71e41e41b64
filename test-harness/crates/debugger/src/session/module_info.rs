//! `lm` with options: `lmv`, `lmvm name`, `lmm name`, `lm v m name`. The
//! rows are plain `lm`'s; `v` adds each module's image details, read from
//! the PE header in the machine's memory. Form from a real Windows 7 SP1
//! x64 session (`lmvm man`, FLARE-ON 2019 "help" write-ups):
//!
//! ```text
//!     Loaded symbol image file: man.sys
//!     Image path: \??\C:\Users\...\man.sys
//!     Image name: man.sys
//!     Timestamp:        unavailable (FFFFFFFE)
//!     CheckSum:         missing
//!     ImageSize:        0000F000
//!     Translations:     0000.04b0 0000.04e4 0409.04b0 0409.04e4
//!     Information from resource tables:
//! ```
//!
//! kd prints `unavailable (FFFFFFFE)` and `missing` where the header cannot
//! be read, as for the emulated kernel, whose image has no PE header. The
//! `Image path` line (the loader's full name of the file) is left out: the
//! emulated loader keeps no path. The DML-only `Browse ...` links are not
//! printed, as kd prints none without `.prefer_dml 1`.

use std::fmt::Write as _;

use super::{Reply, Session};
use crate::format;
use crate::target::ModuleInfo;

/// The `lm` options a command gives: verbose and a module pattern.
#[derive(Debug, Default, PartialEq, Eq)]
struct Options<'a> {
    verbose: bool,
    pattern: Option<&'a str>,
}

/// Reads `lm`'s options from the letters after `lm` (`vm` of `lmvm`) and
/// the words after the command (`v`, `m pattern`); `None` when a letter is
/// not one of them (kd's syntax error).
fn options<'a>(letters: &str, args: &'a str) -> Option<Options<'a>> {
    let mut options = Options::default();
    let mut words = args.split_whitespace();
    let mut wants_pattern = false;
    for letter in letters.chars() {
        match letter {
            'v' => options.verbose = true,
            'm' => wants_pattern = true,
            _ => return None,
        }
    }
    if wants_pattern {
        options.pattern = words.next();
    }
    while let Some(word) = words.next() {
        match word {
            "v" => options.verbose = true,
            "m" => options.pattern = words.next(),
            _ => return None,
        }
    }
    Some(options)
}

/// Whether `name` is `lm` followed by option letters (`lmv`, `lmvm`).
pub(super) fn is_listing(name: &str) -> bool {
    name.strip_prefix("lm")
        .is_some_and(|letters| !letters.is_empty() && letters.chars().all(|c| "vm".contains(c)))
}

impl Session {
    /// `lm[v][m] [v] [m pattern]`: `text` is the whole command, `column`
    /// where it starts (for the caret of a syntax error).
    pub(super) fn list_modules_with_options(&self, text: &str, column: usize) -> Reply {
        let (name, args) = super::split_name(text);
        let letters = name.get(2..).unwrap_or_default().to_ascii_lowercase();
        let Some(options) = options(&letters, args) else {
            return Err(super::CommandError::Syntax {
                column,
                text: text.to_owned(),
            });
        };
        let rows = self.list_modules(
            &options
                .pattern
                .map_or_else(String::new, |p| format!("m {p}")),
        );
        if !options.verbose {
            return Ok(rows);
        }
        let modules = self.target.modules();
        let mut out = String::new();
        let mut loaded = true;
        for line in rows.lines() {
            let _ = writeln!(out, "{line}");
            if line.is_empty() {
                // The unloaded modules follow: no image to describe.
                loaded = false;
            }
            let module_name = line.split_whitespace().nth(2);
            if loaded
                && let Some(module) = modules
                    .iter()
                    .find(|module| Some(module.name.as_str()) == module_name)
            {
                out.push_str(&self.image_details(module));
            }
        }
        Ok(out)
    }

    /// The `lmv` lines for one loaded module.
    fn image_details(&self, module: &ModuleInfo) -> String {
        let mut out = String::new();
        let is_driver = module.name != "nt";
        if is_driver {
            // The image file the session loaded the driver from.
            let _ = writeln!(out, "    Loaded symbol image file: {}", module.image);
        }
        let _ = writeln!(out, "    Image name: {}", module.image);
        match self.header_fields(module.base) {
            Some((timestamp, checksum)) => {
                let _ = writeln!(
                    out,
                    "    Timestamp:        {} ({timestamp:08X})\n    CheckSum:         {checksum:08X}",
                    format::ctime(i64::from(timestamp), self.utc_offset_minutes)
                );
            }
            None => out.push_str(
                "    Timestamp:        unavailable (FFFFFFFE)\n    CheckSum:         missing\n",
            ),
        }
        let _ = writeln!(out, "    ImageSize:        {:08X}", module.size);
        // kd's translations to try when an image has no version resource,
        // then the (here empty) resource table section.
        out.push_str(
            "    Translations:     0000.04b0 0000.04e4 0409.04b0 0409.04e4\n    Information from resource tables:\n",
        );
        out
    }

    /// `TimeDateStamp` and `CheckSum` of the PE header mapped at `base`.
    fn header_fields(&self, base: u64) -> Option<(u32, u32)> {
        let read32 = |at: u64| {
            self.target
                .read_uint(at, 4)
                .and_then(|value| u32::try_from(value).ok())
        };
        if self.target.read_uint(base, 2)? != 0x5a4d {
            return None;
        }
        let pe = base + u64::from(read32(base + 0x3c)?);
        if read32(pe)? != 0x0000_4550 {
            return None;
        }
        // IMAGE_FILE_HEADER.TimeDateStamp; the optional header's CheckSum
        // sits at +64 in both PE32 and PE32+.
        Some((read32(pe + 8)?, read32(pe + 24 + 64)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_come_from_letters_and_words() {
        assert_eq!(
            options("vm", "Sample"),
            Some(Options {
                verbose: true,
                pattern: Some("Sample")
            })
        );
        assert_eq!(
            options("", "v m nt"),
            Some(Options {
                verbose: true,
                pattern: Some("nt")
            })
        );
        assert_eq!(options("m", ""), Some(Options::default()));
        assert_eq!(options("", "x"), None);
        assert!(is_listing("lmvm"));
        assert!(is_listing("lmv"));
        assert!(!is_listing("lm"));
        assert!(!is_listing("lmx"));
    }
}
