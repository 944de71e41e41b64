//! `sx`, `sxe`, `sxd`, `sxn`, `sxi` for the one event the machine has: the
//! driver's image loading (`ld[:Module]`). Forms: MicrosoftDocs/windows-
//! driver-docs, debugger/sx--sxd--sxe--sxi--sxn--sxr--sx---set-exceptions-.md
//! (`sx` lists "av - Access violation - break - not handled"; events have
//! no handling status) and controlling-exceptions-and-events.md (`ld`:
//! "Load module", default break status Output; "The debugger remembers
//! only the most recent ld setting"; "Include a colon or a space between
//! ld and Module").
//!
//! At the break kd shows where the kernel told it of the load, with no
//! exception line. Real Windows sessions after `sxe ld name.sys` then `g`:
//! "nt!DebugService2+0x5:" / "fffff802`44e13be5 cc  int 3", with the
//! stack "nt!DebugService2+0x5 <- nt!DbgLoadImageSymbols+0x4d <-
//! nt!DbgLoadImageSymbolsUnicode+0x2b <- nt!MiDriverLoadSucceeded+0x2bd <-
//! nt!MmLoadSystemImage+0x80b" (Windows 7 x64), and `.lastevent` "Last
//! event: Load module KmdfHelloWorld.sys at fffff804`600c0000". Those
//! kernel sessions print no `ModLoad:` line (that line is user mode's), and
//! neither does this one; offsets inside nt are the emulator's own.

use std::fmt::Write as _;

use super::modules::wildcard;
use super::{CommandError, Reply, Session};

/// An event filter's break status (controlling-exceptions-and-events.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    /// `sxe`: break.
    Break,
    /// `sxd`: second-chance break (an event has no second chance).
    SecondChance,
    /// `sxn`: output.
    Output,
    /// `sxi`: ignore.
    Ignore,
}

impl Status {
    /// `sx`'s word for it.
    const fn word(self) -> &'static str {
        match self {
            Self::Break => "break",
            Self::SecondChance => "second-chance break",
            Self::Output => "output",
            Self::Ignore => "ignore",
        }
    }
}

/// The `ld` filter: its status and the module it is limited to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LoadFilter {
    pub status: Status,
    pub module: Option<String>,
}

impl Default for LoadFilter {
    fn default() -> Self {
        Self {
            status: Status::Output,
            module: None,
        }
    }
}

impl Session {
    /// `sx`: the event filters' states.
    pub(super) fn list_filters(&self, args: &str) -> Reply {
        if !args.is_empty() {
            return Err(CommandError::Message(format!(
                "harness kd: sx takes no arguments here, not '{args}'"
            )));
        }
        let mut out = format!(" ld - Load module - {}\n", self.load_filter.status.word());
        if let Some(module) = &self.load_filter.module {
            let _ = writeln!(out, "harness kd: ld is limited to {module}");
        }
        out.push_str("harness kd: the other exceptions and events are not emulated here\n");
        Ok(out)
    }

    /// `sxe`, `sxd`, `sxn`, `sxi` with `ld[:Module]`.
    pub(super) fn set_filter(&mut self, command: &str, args: &str) -> Reply {
        let status = match command {
            "sxe" => Status::Break,
            "sxd" => Status::SecondChance,
            "sxn" => Status::Output,
            _ => Status::Ignore,
        };
        if args.starts_with('-') {
            return Err(CommandError::Message(format!(
                "harness kd: {command} options (-c, -c2, -h) are not emulated"
            )));
        }
        let Some(rest) = args
            .get(..2)
            .filter(|event| event.eq_ignore_ascii_case("ld"))
            .map(|_| &args[2..])
            .filter(|rest| rest.is_empty() || rest.starts_with([':', ' ', '\t']))
        else {
            return Err(CommandError::Message(format!(
                "harness kd: only the ld (load module) event is emulated, not '{args}'"
            )));
        };
        let module = rest.trim_start_matches(':').trim();
        self.load_filter = LoadFilter {
            status,
            module: (!module.is_empty()).then(|| module.to_owned()),
        };
        self.apply_load_filter();
        Ok(String::new())
    }

    /// Tells the machine whether to break when the driver's image loads.
    pub(super) fn apply_load_filter(&mut self) {
        let on = self.breaks_on_load();
        self.target.machine.set_break_on_load(on);
    }

    /// Whether the ld filter breaks on the driver's image loading: its
    /// name with or without the extension, or its base address.
    pub(super) fn breaks_on_load(&self) -> bool {
        if self.load_filter.status != Status::Break {
            return false;
        }
        let Some(module) = &self.load_filter.module else {
            return true;
        };
        let file = &self.target.driver().file_name;
        let stem = file
            .rsplit_once('.')
            .map_or(file.as_str(), |(stem, _)| stem);
        let base = self.target.machine.kernel().image.0;
        wildcard(module, file)
            || wildcard(module, stem)
            || crate::expr::evaluate(module, self).is_ok_and(|value| value == base)
    }

    /// `.lastevent`'s words for the load (`Load module Sample.sys at a04c0000`).
    pub(super) fn load_event(&self) -> String {
        format!(
            "Load module {} at {}",
            self.target.driver().file_name,
            self.address(self.target.machine.kernel().image.0)
        )
    }
}
