//! The interactive `kd> ` prompt in a real terminal: tmux runs `harness kd`
//! in a pseudo-terminal, types with send-keys and reads the screen with
//! capture-pane. tmux is one of the set-up's packages (scripts/linux.sh).

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use harness_core::arch::Arch;

/// A tmux server of the test's own (`-L`), so that nothing else is touched.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn command(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux runs (scripts/linux.sh setup installs it)")
    }

    fn screen(&self) -> String {
        let output = self.command(&["capture-pane", "-p", "-J", "-S", "-200", "-t", "kd"]);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Waits until the screen holds `text`; returns the screen.
    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "{text:?} never appeared; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `text` is on the screen and a fresh `kd> ` prompt is the
    /// last line: keys sent before the prompt is back could be discarded
    /// when the line editor takes the terminal again.
    fn wait_for_prompt_after(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let screen = self.screen();
            let last = screen.lines().rev().find(|line| !line.trim().is_empty());
            if screen.contains(text) && last.is_some_and(|line| line.trim_end() == "kd>") {
                // The editor sets the terminal up just after printing it.
                std::thread::sleep(Duration::from_millis(200));
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no prompt after {text:?}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The session's exit code, once `harness kd` has ended and the shell
    /// has written it to `status`.
    fn exit_code(&self, status: &Path) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(text) = std::fs::read_to_string(status)
                && !text.trim().is_empty()
            {
                return text.trim().to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "harness kd did not end: {}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "kd"];
        args.extend_from_slice(keys);
        assert!(self.command(&args).status.success());
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command(&["kill-server"]);
    }
}

fn start(driver: &Path, status: &Path) -> Tmux {
    // One tmux server per session: the tests run in parallel in one process.
    static SESSIONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let tmux = Tmux {
        socket: format!(
            "harness-kd-test-{}-{}",
            std::process::id(),
            SESSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ),
    };
    // The shell records the exit code once harness kd ends.
    let command = format!(
        "{} kd {} ; echo $? > {}",
        env!("CARGO_BIN_EXE_harness"),
        driver.display(),
        status.display()
    );
    let output = tmux.command(&[
        "new-session",
        "-d",
        "-s",
        "kd",
        "-x",
        "200",
        "-y",
        "60",
        &command,
    ]);
    assert!(output.status.success(), "{output:?}");
    tmux
}

#[test]
fn the_prompt_edits_lines_keeps_history_and_quits() {
    let built = common::driver(Arch::X86, true);
    let dir = tempfile::tempdir().expect("temp dir");
    let status = dir.path().join("status");
    let tmux = start(&built.sys, &status);
    tmux.wait_for("q quits");
    tmux.wait_for("kd> ");

    tmux.keys(&["ed nt!PoolHitTag 'dcba'", "Enter"]);
    // Keys typed before the next prompt may be lost: wait for it.
    tmux.wait_for("'dcba'\nkd>");
    // Line editing: type a wrong word, erase it, finish the command.
    tmux.keys(&["dd nt!PoolHitTag l9", "BSpace", "1", "Enter"]);
    let screen = tmux.wait_for("64636261");
    let dump = screen
        .lines()
        .find(|line| line.ends_with("64636261"))
        .expect("the dd line");
    assert_eq!(dump.split_whitespace().count(), 2, "one dword: {dump}");

    // History: Up brings back the dd command.
    tmux.keys(&["C-l"]);
    tmux.keys(&["Up", "Enter"]);
    let again = tmux.wait_for("kd> dd nt!PoolHitTag l1");
    assert!(again.contains("64636261"), "{again}");

    // g runs to the PoolHitTag break; an unknown command is kd's error and
    // the session goes on.
    tmux.keys(&["g", "Enter"]);
    tmux.wait_for_prompt_after("nt!ExAllocatePoolWithTag+0x");
    tmux.keys(&["nosuchcommand", "Enter"]);
    tmux.wait_for("^ Syntax error in 'nosuchcommand'");
    // Ctrl-C at the prompt clears the line instead of ending the session.
    tmux.keys(&["half a command"]);
    tmux.wait_for("kd> half a command");
    tmux.keys(&["C-c"]);
    tmux.wait_for_prompt_after("half a command");
    tmux.keys(&["g", "Enter"]);
    tmux.wait_for("*** Fatal System Error: 0x000000c4");

    tmux.keys(&["q", "Enter"]);
    let code = tmux.exit_code(&status);
    // The machine bug-checked: the verdict's exit code.
    assert_eq!(code, "3");
}

/// Enter on an empty line repeats the last command
/// (enter--repeat-last-command-.md).
#[test]
fn enter_on_an_empty_line_repeats_the_last_command() {
    let built = common::driver(Arch::X86, false);
    let dir = tempfile::tempdir().expect("temp dir");
    let status = dir.path().join("status");
    let tmux = start(&built.sys, &status);
    tmux.wait_for_prompt_after("kd> ");
    tmux.keys(&["? 0x29+1", "Enter"]);
    tmux.wait_for_prompt_after("Evaluate expression: 42 = 0000002a");
    tmux.keys(&["Enter"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let screen = tmux.screen();
        if screen.matches("Evaluate expression: 42 = 0000002a").count() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "not repeated:\n{screen}");
        std::thread::sleep(Duration::from_millis(50));
    }
    tmux.keys(&["q", "Enter"]);
}

/// Ctrl-C while a long command runs stops it with kd's `^C` and the
/// session goes on (issue 20): a trace of 10000 steps through a driver
/// that loops forever.
#[test]
fn ctrl_c_stops_a_long_command_and_the_session_goes_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let driver = common::c_driver("LOOP", Arch::X64, dir.path());
    let status = dir.path().join("status");
    let tmux = start(&driver, &status);
    tmux.wait_for_prompt_after("kd> ");
    tmux.keys(&["bp loop_x64!DriverEntry", "Enter"]);
    tmux.wait_for_prompt_after("adding deferred bp");
    tmux.keys(&["g", "Enter"]);
    tmux.wait_for_prompt_after("Breakpoint 0 hit");
    tmux.keys(&["t 0n10000", "Enter"]);
    // The steps show as they are taken: the trace is running.
    tmux.wait_for("loop_x64+0x10");
    tmux.keys(&["C-c"]);
    // The harness's own `^C` line, then the prompt: the trace stopped there.
    tmux.wait_for_prompt_after("\n^C\nkd> ");
    tmux.keys(&["? 0x29+1", "Enter"]);
    tmux.wait_for_prompt_after("Evaluate expression: 42 = 00000000`0000002a");
    tmux.keys(&["q", "Enter"]);
    let code = tmux.exit_code(&status);
    // Still loaded: the driver never returned from DriverEntry.
    assert_eq!(code, "5");
}

/// A line that is not UTF-8 at the prompt is refused with one line and the
/// session goes on (it used to end the session with `harness: invalid data`).
#[test]
fn a_line_that_is_not_utf8_is_refused_once() {
    let built = common::driver(Arch::X86, false);
    let dir = tempfile::tempdir().expect("temp dir");
    let status = dir.path().join("status");
    let tmux = start(&built.sys, &status);
    tmux.wait_for("kd> ");
    // 0xc3 0x28: an invalid UTF-8 sequence, then Enter.
    assert!(
        tmux.command(&["send-keys", "-t", "kd", "-H", "c3", "28", "0a"])
            .status
            .success()
    );
    let screen = tmux.wait_for("harness kd: that line was not UTF-8 text; it was not run");
    assert_eq!(screen.matches("not UTF-8").count(), 1, "{screen}");
    tmux.keys(&["? 0x29+1", "Enter"]);
    tmux.wait_for_prompt_after("Evaluate expression: 42 = 0000002a");
    tmux.keys(&["q", "Enter"]);
}
