//! `.reboot`: the target restarts and the debugger reconnects, stopped
//! before the driver loads, as the session began. kd loses its breakpoints
//! across a reboot ("At this point, all breakpoints are lost if you are
//! running KD or CDB", MicrosoftDocs/windows-driver-docs,
//! debugger/crashing-and-rebooting-the-target-computer.md); the symbols and
//! pseudo-registers (`$t0`..) stay, as they are the debugger's. Lines as
//! kd prints them across the reconnect; the `Connected to ... target`
//! line is the one the walkthrough's session shows ("Connected to Windows 7
//! 7601 x86 compatible target at (...), ptr64 FALSE"), without the
//! host-clock times kd puts in it and in the shutdown line. `.restart`
//! reconnects without a reboot (kd's Restart Kernel Connection).

use std::sync::Arc;

use super::{CommandError, Reply, Session, State};
use crate::target::Target;
use harness_core::arch::Arch;
use harness_ntemu::machine::Machine;

impl Session {
    /// `.reboot`.
    pub(super) fn reboot(&mut self) -> Reply {
        let driver = Arc::clone(self.target.driver());
        let machine = Machine::new(driver, self.machine_options.clone()).map_err(|error| {
            CommandError::Message(format!(
                "harness kd: the machine could not restart: {error}"
            ))
        })?;
        self.target = Target::new(machine);
        // The event filters are the debugger's: they outlive the reboot.
        self.apply_load_filter();
        self.names.mapped = false;
        self.breakpoints.clear();
        self.frame = 0;
        self.state = State::Stopped;
        self.shown = 0;
        self.next_dump = 0;
        self.next_unassemble = None;
        self.announced = false;
        self.last_event = None;
        Ok(format!(
            "Shutdown occurred...unloading all symbol tables.\nWaiting to reconnect...\n{}",
            self.connection_lines()
        ))
    }

    /// `.restart` in kd is "Restart Kernel Connection"
    /// (-restart--restart-kernel-connection-.md): "equivalent to ending
    /// the debugger and then attaching a new debugger to the target
    /// computer". The target is not restarted (restarting the target
    /// application, -restart--restart-target-application-.md, is "user
    /// mode only"): the machine stays where it is; the new debugger has no
    /// breakpoints and no `$t` values. The harness says where a restart of
    /// the machine is.
    pub(super) fn restart_connection(&mut self) -> String {
        self.breakpoints.clear();
        self.temporaries = [0; 20];
        // A new debugger's event filters: `ld` back to its default.
        self.load_filter = super::events::LoadFilter::default();
        self.apply_load_filter();
        format!(
            "{}harness kd: .restart reconnects the debugger; the target goes on where it was \
             (.reboot starts the machine over)\n",
            self.connection_lines()
        )
    }

    /// kd's lines when it connects to the target.
    fn connection_lines(&self) -> String {
        let profile = &self.target.machine.kernel().profile;
        let (platform, ptr64) = match self.arch() {
            Arch::X86 => ("x86 compatible", "FALSE"),
            Arch::X64 => ("x64", "TRUE"),
        };
        format!(
            "Connected to {} {} {platform} target, ptr64 {ptr64}\nKernel Debugger connection established.\n",
            super::target_info::product_name(profile.major, profile.minor),
            profile.build
        )
    }
}
