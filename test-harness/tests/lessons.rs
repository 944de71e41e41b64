//! docs/lessons/ says "every transcript below is that command's output": each
//! block of `harness ...` commands in a lesson is run, and the code block
//! after it must be what the last command printed (a `harness kd` transcript
//! gets the block's `kd> ` lines on stdin, as a trainee would type them).
//! The emulated kernel's addresses move when nt's code grows, so a stale
//! transcript fails here; `UPDATE_LESSONS=1` rewrites the blocks instead.
//! Source paths are shown relative to the checkout.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// A fenced code block: the line range of its body in the page's lines.
struct Block {
    body: std::ops::Range<usize>,
}

fn blocks(lines: &[&str]) -> Vec<Block> {
    let mut found = Vec::new();
    let mut open = None;
    for (index, line) in lines.iter().enumerate() {
        if line.starts_with("```") {
            match open.take() {
                None => open = Some(index + 1),
                Some(start) => found.push(Block { body: start..index }),
            }
        }
    }
    assert!(open.is_none(), "a code block is not closed");
    found
}

/// Runs one `harness` command line (split on spaces, as the lessons write
/// them) from the workspace root, with `stdin`; what it printed.
fn run(line: &str, stdin: &str) -> String {
    let args: Vec<&str> = line
        .strip_prefix("harness ")
        .expect("a harness command")
        .split_whitespace()
        .collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(&args)
        .current_dir(workspace())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("harness runs");
    let mut input = child.stdin.take().expect("stdin");
    std::io::Write::write_all(&mut input, stdin.as_bytes()).expect("stdin written");
    drop(input);
    let output = child.wait_with_output().expect("harness ends");
    // A build that fails would leave the next command an old driver.
    assert!(
        output.status.success() || args[0] != "build",
        "{line}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Source paths come from the PDB, which holds this checkout's absolute
    // path: the pages show them relative to it, as any checkout can.
    let root = format!("{}/", workspace().display());
    String::from_utf8(output.stdout)
        .expect("UTF-8 output")
        .replace(&root, "")
}

/// The page with each output block replaced by what its command prints now.
fn regenerated(page: &str) -> String {
    let lines: Vec<&str> = page.lines().collect();
    let found = blocks(&lines);
    let mut replaced: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    for pair in found.windows(2) {
        let commands: Vec<&str> = lines[pair[0].body.clone()]
            .iter()
            .copied()
            .filter(|line| !line.trim().is_empty())
            .collect();
        if commands.is_empty() || !commands.iter().all(|line| line.starts_with("harness ")) {
            continue;
        }
        let (last, builds) = commands.split_last().expect("one command at least");
        for build in builds {
            run(build, "");
        }
        let shown = &lines[pair[1].body.clone()];
        let mut typed = String::new();
        for command in shown.iter().filter_map(|line| line.strip_prefix("kd> ")) {
            typed.push_str(command);
            typed.push('\n');
        }
        replaced.push((pair[1].body.clone(), run(last, &typed)));
    }
    assert!(!replaced.is_empty(), "no transcript found");
    let mut out = String::new();
    let mut at = 0;
    for (range, text) in replaced {
        for line in &lines[at..range.start] {
            out.push_str(line);
            out.push('\n');
        }
        out.push_str(&text);
        if !text.ends_with('\n') {
            out.push('\n');
        }
        at = range.end;
    }
    for line in &lines[at..] {
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[test]
fn every_lesson_transcript_is_what_harness_prints() {
    let dir = workspace().join("docs/lessons");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("docs/lessons")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| {
            path.extension().is_some_and(|ext| ext == "md")
                && path
                    .file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| name.starts_with('0'))
        })
        .collect();
    pages.sort();
    assert_eq!(pages.len(), 6, "one page per fault");
    let update = std::env::var_os("UPDATE_LESSONS").is_some();
    let mut stale = Vec::new();
    for page in pages {
        let text = std::fs::read_to_string(&page).expect("the page");
        let now = regenerated(&text);
        if now != text {
            if update {
                std::fs::write(&page, &now).expect("rewritten");
            } else {
                stale.push(page.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "transcripts differ from what harness prints now (rerun with UPDATE_LESSONS=1 and read the diff): {stale:?}"
    );
}
