//! `pc`/`tc` (to the next call), `pt`/`tt` (to the next return), `ph`/`th`
//! (to the next branch): steps until the instruction at the program
//! counter is of the kind, `p` stepping over calls and `t` into them.
//! debugger/pc--step-to-next-call-.md: "execution continues until a call
//! instruction is reached or a breakpoint is encountered"; already on a
//! call, `pc` runs the whole call first; `Count` is how many such
//! instructions to reach (default one). The target stops as after `p`.

use std::fmt::Write as _;

use iced_x86::{Decoder, DecoderOptions, FlowControl};

use super::{CommandError, Reply, Session, State};
use crate::expr;

/// Steps one command takes at most before it stops anyway.
const MAX_STEPS: usize = 0x1_0000;

/// What a step command stops in front of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Goal {
    Call,
    Return,
    Branch,
}

/// The goal and whether calls are stepped into, for `pc tc pt tt ph th`.
pub(super) fn step_command(name: &str) -> Option<(bool, &'static str)> {
    Some(match name {
        "pc" => (false, "call"),
        "tc" => (true, "call"),
        "pt" => (false, "return"),
        "tt" => (true, "return"),
        "ph" => (false, "branch"),
        "th" => (true, "branch"),
        _ => return None,
    })
}

impl Session {
    /// The flow of the instruction at the program counter.
    fn flow_here(&self) -> Option<FlowControl> {
        let ip = self.target.ip();
        let bytes = self.target.read(ip, 16)?;
        let bitness = if self.pointer_size() == 4 { 32 } else { 64 };
        let instruction = Decoder::with_ip(bitness, &bytes, ip, DecoderOptions::NONE).decode();
        (!instruction.is_invalid()).then(|| instruction.flow_control())
    }

    /// `pc`, `tc`, `pt`, `tt`, `ph`, `th` `[count]`.
    pub(super) fn step_to(&mut self, into: bool, kind: &str, args: &str) -> Reply {
        if args.starts_with('=') || args.starts_with('r') {
            return Err(CommandError::Message(
                "harness kd: =StartAddress and r are not supported here; give a count or nothing"
                    .into(),
            ));
        }
        let mut remaining = if args.is_empty() {
            1
        } else {
            expr::evaluate(args, self)?
        };
        let goal = match kind {
            "call" => Goal::Call,
            "return" => Goal::Return,
            _ => Goal::Branch,
        };
        self.runnable()?;
        let mut output = String::new();
        for _ in 0..MAX_STEPS {
            let step = if into {
                self.step_into()?
            } else {
                self.step_over()?
            };
            let location = self.location(self.target.ip());
            // Anything but a plain step (a breakpoint, the PoolHitTag break,
            // the bug check, the end) stops here and shows its own lines.
            let plain = self.state == State::Stopped
                && step.ends_with(&location)
                && !step.contains("Break instruction exception")
                && !step
                    .lines()
                    .any(|line| line.starts_with("Breakpoint ") && line.ends_with(" hit"));
            if !plain {
                output.push_str(&step);
                return Ok(output);
            }
            // The debug output the step produced stays; its location does not.
            output.push_str(&step[..step.len() - location.len()]);
            let reached = matches!(
                (goal, self.flow_here()),
                (
                    Goal::Call,
                    Some(FlowControl::Call | FlowControl::IndirectCall)
                ) | (Goal::Return, Some(FlowControl::Return))
                    | (
                        Goal::Branch,
                        Some(
                            FlowControl::Call
                                | FlowControl::IndirectCall
                                | FlowControl::Return
                                | FlowControl::UnconditionalBranch
                                | FlowControl::IndirectBranch
                                | FlowControl::ConditionalBranch,
                        ),
                    )
            );
            if reached {
                remaining = remaining.saturating_sub(1);
                if remaining == 0 {
                    output.push_str(&location);
                    return Ok(output);
                }
            }
        }
        let _ = writeln!(
            output,
            "harness kd: no {kind} within {MAX_STEPS:#x} steps; stopped here"
        );
        output.push_str(&self.location(self.target.ip()));
        Ok(output)
    }
}

#[cfg(test)]
mod tests {
    use super::step_command;

    #[test]
    fn the_six_commands() {
        assert_eq!(step_command("pc"), Some((false, "call")));
        assert_eq!(step_command("th"), Some((true, "branch")));
        assert_eq!(step_command("p"), None);
    }
}
