//! Debugger text as people paste it, turned back into the lines the
//! debugger printed: markdown quotes (`> `, `> > `), fenced code blocks,
//! lines wrapped in backticks, list markers (`- Arg1:`), `<details>` and
//! `<pre>` wrappers, HTML entities, and the backtick kd puts between the
//! halves of a 64-bit value (between `fffff803` and `569c53e1`).

use std::borrow::Cow;

/// Lines longer than this are read only up to here. No debugger line comes
/// close; the limit keeps a pasted megabyte-long line from costing more
/// than any other.
pub const MAX_LINE: usize = 64 * 1024;

/// The text's lines, split at `\n`, `\r\n` or a lone `\r`.
pub fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n')
        .flat_map(|line| line.strip_suffix('\r').unwrap_or(line).split('\r'))
}

/// A line as the debugger printed it. Indentation is kept (the recognisers
/// use it for continuation lines); everything a paste added is removed.
pub fn clean(line: &str) -> Cow<'_, str> {
    let mut line = truncate(line, MAX_LINE).trim_end();
    // A BOM in the middle of a text (files joined with `cat`).
    line = line.trim_start_matches('\u{feff}');
    line = unquote(line);
    let trimmed = line.trim_start();
    if is_fence(trimmed) || is_wrapper_tag(trimmed) {
        return Cow::Borrowed("");
    }
    if let Some(rest) = list_marker(trimmed) {
        line = rest;
    }
    let mut owned: Option<String> = line.contains('`').then(|| line.replace('`', ""));
    if line.contains('&') {
        owned = Some(unescape(owned.as_deref().unwrap_or(line)));
    }
    if line.contains('<') {
        let text = owned.as_deref().unwrap_or(line);
        let stripped = strip_inline_tags(text);
        if stripped.len() != text.len() {
            owned = Some(stripped);
        }
    }
    owned.map_or(Cow::Borrowed(line), Cow::Owned)
}

/// The longest prefix of at most `max` bytes that ends on a char boundary.
pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Removes markdown quote markers (`>`, `> > `, `>>`) in front of a line.
fn unquote(line: &str) -> &str {
    let mut rest = line;
    loop {
        let trimmed = rest.trim_start();
        match trimmed.strip_prefix('>') {
            Some(after) => rest = after.strip_prefix(' ').unwrap_or(after),
            None => return rest,
        }
    }
}

/// A code fence (```` ``` ````, ```` ```text ````, `~~~`): no content of its own.
fn is_fence(trimmed: &str) -> bool {
    trimmed.starts_with("```") || trimmed.starts_with("~~~")
}

/// Lines that only open or close an HTML wrapper around the output.
fn is_wrapper_tag(trimmed: &str) -> bool {
    [
        "<details",
        "</details",
        "<summary",
        "<pre",
        "</pre",
        "<code",
        "</code",
    ]
    .iter()
    .any(|tag| trimmed.starts_with(tag))
        && trimmed.ends_with('>')
}

/// `- Arg1: ...`, `* Arg1: ...`: a markdown list around debugger lines.
fn list_marker(trimmed: &str) -> Option<&str> {
    let rest = trimmed
        .strip_prefix("- ")
        .or_else(|| trimmed.strip_prefix("* "))
        .or_else(|| trimmed.strip_prefix("+ "))?;
    rest.starts_with(|c: char| c.is_ascii_alphanumeric())
        .then_some(rest)
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&")
}

/// `<pre>` and `<code>` wrapped around a line's text.
fn strip_inline_tags(text: &str) -> String {
    let mut out = text.to_owned();
    for tag in [
        "<pre>", "</pre>", "<code>", "</code>", "<br>", "<br/>", "<br />",
    ] {
        if out.contains(tag) {
            out = out.replace(tag, "");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paste_forms_come_back_as_debugger_lines() {
        assert_eq!(
            clean("> Arg1: 0000000000000062, A driver"),
            "Arg1: 0000000000000062, A driver"
        );
        assert_eq!(clean("> > BUGCHECK_CODE:  c4"), "BUGCHECK_CODE:  c4");
        assert_eq!(
            clean(">>IMAGE_NAME:  Sample.sys"),
            "IMAGE_NAME:  Sample.sys"
        );
        assert_eq!(
            clean("`Arg2: ffffe708861aeea8, name`"),
            "Arg2: ffffe708861aeea8, name"
        );
        assert_eq!(clean("```text"), "");
        assert_eq!(
            clean("- Arg1: 0000000000002000, Code"),
            "Arg1: 0000000000002000, Code"
        );
        assert_eq!(
            clean("00 ffff9780`9fbde578 fffff801`d5df43a9 nt!KeBugCheckEx"),
            "00 ffff97809fbde578 fffff801d5df43a9 nt!KeBugCheckEx"
        );
        assert_eq!(
            clean("for .reload &lt;image.ext&gt;"),
            "for .reload <image.ext>"
        );
        assert_eq!(clean("<details> <summary> BSOD analysis </summary>"), "");
        // Indentation that carries meaning stays.
        assert_eq!(clean("\tthe operating system."), "\tthe operating system.");
        assert_eq!(clean("> \tType !verifier 3"), "\tType !verifier 3");
    }

    #[test]
    fn lines_split_at_every_line_end() {
        let split: Vec<&str> = lines("a\r\nb\rc\nd").collect();
        assert_eq!(split, ["a", "b", "c", "d"]);
    }

    #[test]
    fn long_and_non_ascii_lines_are_cut_on_a_char_boundary() {
        let long = "é".repeat(MAX_LINE);
        let cut = clean(&long);
        assert!(cut.len() <= MAX_LINE);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
