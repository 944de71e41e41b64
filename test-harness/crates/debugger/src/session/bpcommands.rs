//! A breakpoint's command string, run when it is hit: commands separated by
//! `;`, kd's `j Condition 'Command1' ; 'Command2'` (j--execute-if---else-.md),
//! `.if (Condition) { Commands } .elsif (...) { ... } .else { ... }`
//! (-if.md, -else.md, -elsif.md), and `gc`/`g`, which resume the target
//! (gc--go-from-conditional-breakpoint-.md). A string that resumes shows
//! only what its commands print, as a conditional breakpoint does.

use std::fmt::Write as _;

use super::Session;
use crate::expr;

/// Deepest nesting of `j` and `.if` in one command string.
const MAX_NESTING: usize = 16;

/// What running a command string did.
pub struct Outcome {
    /// What its commands printed.
    pub output: String,
    /// It ended with `gc` or `g`: the target runs on.
    pub resume: bool,
}

impl Session {
    /// Runs a breakpoint's command string where the target stopped.
    pub(super) fn breakpoint_commands(&mut self, text: &str) -> Outcome {
        let mut outcome = Outcome {
            output: String::new(),
            resume: false,
        };
        self.command_string(text, 0, &mut outcome);
        outcome
    }

    fn command_string(&mut self, text: &str, depth: usize, outcome: &mut Outcome) {
        let mut rest = text.trim();
        while !rest.is_empty() && !outcome.resume && !self.quit {
            if depth > MAX_NESTING {
                outcome
                    .output
                    .push_str("harness kd: breakpoint commands nest too deeply\n");
                return;
            }
            if let Some(after) = keyword(rest, "j") {
                rest = self.conditional_j(after, depth, outcome);
                continue;
            }
            if let Some(after) = keyword(rest, ".if") {
                rest = self.conditional_if(after, depth, outcome);
                continue;
            }
            let end = top_level(rest, ';').unwrap_or(rest.len());
            let command = rest[..end].trim();
            rest = rest.get(end + 1..).unwrap_or("").trim_start();
            let name = command
                .split(|c: char| c.is_whitespace())
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            match name.as_str() {
                "" => {}
                "gc" | "g" if command.len() == name.len() => outcome.resume = true,
                "g" | "gu" | "p" | "t" => {
                    let _ = writeln!(
                        outcome.output,
                        "harness kd: '{command}' in a breakpoint's commands is not emulated (gc and g are)"
                    );
                }
                _ => {
                    let (output, _) = self.execute(command);
                    outcome.output.push_str(&output);
                }
            }
        }
    }

    /// `j Expression Command1 ; Command2`: returns what follows.
    fn conditional_j<'a>(&mut self, text: &'a str, depth: usize, outcome: &mut Outcome) -> &'a str {
        let (condition, rest) = operand(text);
        let (first, rest) = branch(rest);
        let rest = rest.trim_start();
        let (second, rest) = rest.strip_prefix(';').map_or(("", rest), branch);
        match expr::evaluate(condition, self) {
            Ok(value) => {
                let chosen = if value == 0 { second } else { first };
                self.command_string(chosen, depth + 1, outcome);
            }
            Err(error) => {
                let _ = writeln!(outcome.output, "{error}");
            }
        }
        rest.trim_start().trim_start_matches(';')
    }

    /// `.if (Condition) { ... } [.elsif (Condition) { ... }] [.else { ... }]`.
    fn conditional_if<'a>(
        &mut self,
        text: &'a str,
        depth: usize,
        outcome: &mut Outcome,
    ) -> &'a str {
        let mut rest = text;
        let mut done = false;
        let mut condition = Some(operand(rest));
        loop {
            let (value, after) = match condition {
                Some((text, after)) => (
                    expr::evaluate(text, self).map_err(|error| error.to_string()),
                    after,
                ),
                None => (Ok(1), rest),
            };
            let Some((body, after)) = braces(after) else {
                outcome
                    .output
                    .push_str("harness kd: .if needs { commands }\n");
                return "";
            };
            match value {
                Ok(value) if value != 0 && !done => {
                    done = true;
                    self.command_string(body, depth + 1, outcome);
                }
                Ok(_) => {}
                Err(error) => {
                    let _ = writeln!(outcome.output, "{error}");
                    done = true;
                }
            }
            rest = after.trim_start();
            if let Some(after) = keyword(rest, ".elsif") {
                condition = Some(operand(after));
            } else if let Some(after) = keyword(rest, ".else") {
                condition = None;
                rest = after;
            } else {
                return rest.trim_start_matches(';');
            }
        }
    }
}

/// The text after `word` when `text` starts with it as a whole word.
fn keyword<'a>(text: &'a str, word: &str) -> Option<&'a str> {
    let after = text
        .get(..word.len())?
        .eq_ignore_ascii_case(word)
        .then(|| &text[word.len()..])?;
    match after.chars().next() {
        None => Some(after),
        Some(c) if c.is_whitespace() || c == '(' || c == '{' || c == '\'' => {
            Some(after.trim_start())
        }
        Some(_) => None,
    }
}

/// A condition: a parenthesised expression, or a word.
fn operand(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    if text.starts_with('(') {
        let mut level = 0_usize;
        for (at, c) in text.char_indices() {
            match c {
                '(' => level += 1,
                ')' => {
                    level = level.saturating_sub(1);
                    if level == 0 {
                        return (&text[..=at], &text[at + 1..]);
                    }
                }
                _ => {}
            }
        }
        return (text, "");
    }
    let end = text.find(char::is_whitespace).unwrap_or(text.len());
    (&text[..end], &text[end..])
}

/// One of j's commands: `'quoted; commands'` or a command up to `;`.
fn branch(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    if let Some(body) = text.strip_prefix('\'') {
        let end = body.find('\'').unwrap_or(body.len());
        return (&body[..end], body.get(end + 1..).unwrap_or(""));
    }
    let end = top_level(text, ';').unwrap_or(text.len());
    (&text[..end], &text[end..])
}

/// `{ commands }`: the body and what follows.
fn braces(text: &str) -> Option<(&str, &str)> {
    let text = text.trim_start();
    let body = text.strip_prefix('{')?;
    let mut level = 1_usize;
    for (at, c) in body.char_indices() {
        match c {
            '{' => level += 1,
            '}' => {
                level -= 1;
                if level == 0 {
                    return Some((&body[..at], &body[at + 1..]));
                }
            }
            _ => {}
        }
    }
    None
}

/// Where `needle` first occurs outside quotes, parentheses and braces.
fn top_level(text: &str, needle: char) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut level = 0_usize;
    for (at, c) in text.char_indices() {
        match (quote, c) {
            (Some(open), _) if c == open => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            (None, '(' | '{') => level += 1,
            (None, ')' | '}') => level = level.saturating_sub(1),
            (None, _) if c == needle && level == 0 => return Some(at),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn j_takes_a_condition_and_two_commands() {
        let text = "(poi(@esp+0xc)==0x64636261) ''; 'gc'";
        let (condition, rest) = operand(text);
        assert_eq!(condition, "(poi(@esp+0xc)==0x64636261)");
        let (first, rest) = branch(rest);
        assert_eq!(first, "");
        let (second, rest) = branch(rest.trim_start().strip_prefix(';').expect(";"));
        assert_eq!((second, rest), ("gc", ""));
        assert_eq!(branch("r eax; gc"), ("r eax", "; gc"));
    }

    #[test]
    fn separators_inside_quotes_and_braces_do_not_split() {
        assert_eq!(top_level("'a; b'; c", ';'), Some(6));
        assert_eq!(top_level("{ a; b } ; c", ';'), Some(9));
        assert_eq!(
            braces("{ r; {x} } .else {}"),
            Some((" r; {x} ", " .else {}"))
        );
        assert_eq!(keyword(".if (1) {}", ".if"), Some("(1) {}"));
        assert_eq!(keyword("jx", "j"), None);
    }
}
