//! When a driver stop has finished, from the states the SCM reports after it
//! accepted `SERVICE_CONTROL_STOP`.
//!
//! Windows unloads a driver inside the stop request: `ControlService` then
//! reports it stopped, or fails with 1052 (`ERROR_INVALID_SERVICE_CONTROL`)
//! when the driver set no unload routine. Wine 8 accepts that stop but leaves
//! the driver running (ntoskrnl's `unload_driver` returns early without a
//! `DriverUnload`), so a driver still running after the stop counts as 1052
//! too, after a short grace; a stop still pending counts as a timeout (1053).

use std::time::Duration;

/// `SERVICE_STOPPED`.
pub const STOPPED: u32 = 1;
/// `SERVICE_STOP_PENDING`.
pub const STOP_PENDING: u32 = 3;

/// How long a driver may still show as running after an accepted stop.
pub const NOT_UNLOADED_AFTER: Duration = Duration::from_secs(2);
/// How long a stop may stay pending, as the SCM waits for a control.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// What to make of the state `elapsed` after an accepted stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The driver unloaded.
    Stopped,
    /// Ask again shortly.
    Wait,
    /// Still running: the driver was not unloaded (no unload routine).
    NotUnloaded,
    /// Still stopping after [`STOP_TIMEOUT`]: the unload routine hangs.
    TimedOut,
}

/// Judges one reported state.
#[must_use]
pub fn progress(state: u32, elapsed: Duration) -> Progress {
    match state {
        STOPPED => Progress::Stopped,
        STOP_PENDING if elapsed < STOP_TIMEOUT => Progress::Wait,
        STOP_PENDING => Progress::TimedOut,
        _ if elapsed < NOT_UNLOADED_AFTER => Progress::Wait,
        _ => Progress::NotUnloaded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUNNING: u32 = 4;

    #[test]
    fn stopped_is_done_at_once() {
        assert_eq!(progress(STOPPED, Duration::ZERO), Progress::Stopped);
    }

    #[test]
    fn a_driver_still_running_was_not_unloaded() {
        assert_eq!(progress(RUNNING, Duration::ZERO), Progress::Wait);
        assert_eq!(progress(RUNNING, NOT_UNLOADED_AFTER), Progress::NotUnloaded);
    }

    #[test]
    fn a_pending_stop_is_waited_for_then_times_out() {
        assert_eq!(
            progress(STOP_PENDING, NOT_UNLOADED_AFTER * 5),
            Progress::Wait
        );
        assert_eq!(progress(STOP_PENDING, STOP_TIMEOUT), Progress::TimedOut);
    }
}
