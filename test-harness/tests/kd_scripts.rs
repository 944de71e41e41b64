//! The kd scripts in `docs/kd/` parse as kd parses them, with no command
//! made by a stray `;`.
//!
//! kd's rules, from Microsoft's debugger reference:
//! - `$$ (Comment Specifier)`: "The $$ token will cause the text after it to
//!   be ignored until the end of the line or until a semicolon is
//!   encountered. A semicolon terminates the comment. Text after the
//!   semicolon is parsed as a standard command."
//!   (learn.microsoft.com/windows-hardware/drivers/debuggercmds/-----comment-specifier-)
//! - `* (Comment Line Specifier)`: "the rest of the line is treated as a
//!   comment, even if a semicolon appears after it."
//!   (learn.microsoft.com/windows-hardware/drivers/debuggercmds/----comment-line-specifier-)
//! - `.echo (Echo Comment)`: an unquoted string ends at a semicolon; a
//!   string in quotation marks may contain semicolons.
//!   (learn.microsoft.com/windows-hardware/drivers/debuggercmds/-echo--echo-comment-)
//! - `$$<` runs a script file line by line ("executes the commands literally",
//!   not condensed into one block as `$$><` does).
//!   (learn.microsoft.com/windows-hardware/drivers/debugger/-----------------------a---run-script-file-)

use std::path::Path;

/// The commands kd runs for one script line, in order (comments dropped).
fn commands(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = line;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() || rest.starts_with('*') {
            return found;
        }
        if rest.starts_with("$$") && !rest.starts_with("$$<") && !rest.starts_with("$$>") {
            // A comment up to the next semicolon; what follows is a command.
            match rest.find(';') {
                Some(end) => {
                    rest = &rest[end + 1..];
                    continue;
                }
                None => return found,
            }
        }
        let end = command_end(rest);
        let command = rest[..end].trim();
        if !command.is_empty() {
            found.push(command.to_owned());
        }
        if end >= rest.len() {
            return found;
        }
        rest = &rest[end + 1..];
    }
}

/// Where the command at the start of `text` ends: at a `;` outside quotes.
/// An unquoted `.echo` string ends at the first `;`, apostrophes or not.
fn command_end(text: &str) -> usize {
    if let Some(echo) = text.strip_prefix(".echo") {
        let start = text.len() - echo.trim_start().len();
        if !echo.trim_start().starts_with('"') {
            return text[start..]
                .find(';')
                .map_or(text.len(), |end| start + end);
        }
    }
    let mut quote = None;
    for (index, character) in text.char_indices() {
        match (quote, character) {
            (None, ';') => return index,
            (None, '"' | '\'') => quote = Some(character),
            (Some(open), close) if open == close => quote = None,
            _ => {}
        }
    }
    text.len()
}

/// The commands the training scripts may run (first word).
const KNOWN: &[&str] = &[
    "ed",
    "dd",
    ".formats",
    "g",
    "gu",
    "kvn",
    "kb",
    "r",
    "dt",
    "??",
    "!pool",
    "!poolfind",
    "!analyze",
    "!verifier",
    ".frame",
    "dv",
    ".thread",
    ".cxr",
    "lm",
    ".echo",
    "q",
];

/// What is wrong with a script, line by line: a command that is not one
/// of the training commands (a comment or `.echo` cut short by a `;`).
fn problems(script: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (number, line) in script.lines().enumerate() {
        for command in &commands(line) {
            let word = command.split_whitespace().next().unwrap_or("");
            if !KNOWN.contains(&word) {
                found.push(format!(
                    "line {}: '{command}' would run as a command",
                    number + 1
                ));
            }
        }
    }
    found
}

#[test]
fn the_checker_parses_as_kd_documents() {
    // The documented example: "will display eax and ebx, but not ecx".
    assert_eq!(
        commands("r eax; $$ some text; r ebx; * more text; r ecx"),
        ["r eax", "r ebx"]
    );
    assert_eq!(commands(".echo \"a; b\""), [".echo \"a; b\""]);
    assert_eq!(commands(".echo a; b"), [".echo a", "b"]);
    assert_eq!(commands(".echo it's; b"), [".echo it's", "b"]);
    assert!(commands("* a; b").is_empty());
    assert_eq!(
        commands("ed nt!PoolHitTag 'dcba'"),
        ["ed nt!PoolHitTag 'dcba'"]
    );
}

#[test]
fn the_checker_fails_on_the_old_lines() {
    // Lines as they were before the fix: each one runs a stray command.
    for line in [
        ".echo ==== 1. the bug check (Arg1 0x62: pool not freed at unload; Arg4: how many)",
        "$$ allocation and free with the tag, so step through it by hand; this file",
        "$$    lands in nt!ExAllocatePoolWithTag; the stack shows Sample!DriverEntry:",
    ] {
        assert!(!problems(line).is_empty(), "{line}");
    }
}

#[test]
fn every_kd_script_runs_only_its_commands() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/kd");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("docs/kd") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|ext| ext == "txt") {
            let script = std::fs::read_to_string(&path).expect("read");
            let found = problems(&script);
            assert!(found.is_empty(), "{}: {found:#?}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 2, "no scripts found in {}", dir.display());
}

#[test]
fn the_live_session_is_the_walkthrough() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/kd");
    let live = std::fs::read_to_string(dir.join("live-session.txt")).expect("read");
    let run: Vec<String> = live.lines().flat_map(commands).collect();
    // The walkthrough's steps in its order (tests/kd.rs checks what they print).
    for step in [
        "ed nt!PoolHitTag 'dcba'",
        "dd nt!PoolHitTag l1",
        ".formats 64636261",
        "g",
        "kvn",
        "gu",
        "r @$retreg",
        "dt Sample!g_RegistryPath",
        "?? sizeof(nt!_POOL_HEADER)",
        "dt nt!_POOL_HEADER @$retreg-@@(sizeof(nt!_POOL_HEADER))",
        "!pool @$retreg 2",
        "!poolfind abcd",
        ".frame 0n0",
        "dv /t /v",
        "g",
        "!analyze -v",
        ".thread",
        ".cxr",
        "kb",
        "!verifier 3 Sample.sys",
    ] {
        assert!(run.iter().any(|command| command == step), "{step} missing");
    }
    let order: Vec<usize> = [
        "ed nt!PoolHitTag 'dcba'",
        "kvn",
        "!pool @$retreg 2",
        "!analyze -v",
    ]
    .iter()
    .map(|step| {
        run.iter()
            .position(|command| command == step)
            .expect("present")
    })
    .collect();
    assert!(order.windows(2).all(|pair| pair[0] < pair[1]), "{run:?}");
}
