//! Small readers shared by the recognisers: hex numbers, labelled fields and
//! driver names as the debugger prints them. All of them look at one line
//! and never index into it at a position that did not come from a search
//! for ASCII text, so non-ASCII lines cannot make them panic.

/// A hex number as the debugger prints it: `0x` optional, a trailing comma
/// or period allowed, at most 16 digits.
pub fn hex(text: &str) -> Option<u64> {
    let text = text.trim().trim_end_matches([',', '.', ';']);
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    if digits.is_empty() || digits.len() > 16 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// Hex digits in a value as printed (`0x` and punctuation not counted).
pub fn digits(text: &str) -> usize {
    let text = text.trim().trim_end_matches([',', '.', ';', ')', '}']);
    text.strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text)
        .len()
}

/// A bare address column (`fffff88002c62963`, `8459ca50`): 8 or 16 hex
/// digits, no `0x`.
pub fn address_column(token: &str) -> Option<u64> {
    (matches!(token.len(), 8 | 16) && !token.starts_with("0x"))
        .then(|| hex(token))
        .flatten()
}

/// The value after `label` when the label starts the line or follows
/// whitespace (blog-joined lines put several fields on one line).
pub fn field<'a>(line: &'a str, label: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(found) = line.get(from..).and_then(|rest| rest.find(label)) {
        let at = from + found;
        let starts_token = line[..at]
            .chars()
            .next_back()
            .is_none_or(char::is_whitespace);
        if starts_token {
            return Some(line[at + label.len()..].trim());
        }
        from = at + label.len();
    }
    None
}

/// The first whitespace-separated word of a field's value.
pub fn first_word(value: &str) -> Option<&str> {
    value.split_whitespace().next()
}

/// Four hex values inside `(...)` or `{...}`, separated by commas.
pub fn four(text: &str) -> Option<[u64; 4]> {
    let inner = text
        .trim()
        .trim_start_matches(['(', '{'])
        .split([')', '}'])
        .next()?;
    let mut values = inner.split(',').map(hex);
    let four = [
        values.next()??,
        values.next()??,
        values.next()??,
        values.next()??,
    ];
    values.next().is_none().then_some(four)
}

/// A driver file name as the verdict shows it: `Sample` -> `Sample.sys`.
pub fn driver_file(module: &str) -> String {
    if module.contains('.') {
        module.to_owned()
    } else {
        format!("{module}.sys")
    }
}

/// Whether two names are the same driver (`Sample`, `sample.SYS`).
pub fn same_driver(a: &str, b: &str) -> bool {
    let stem = |name: &str| {
        let lower = name.to_ascii_lowercase();
        lower
            .strip_suffix(".sys")
            .map_or_else(|| lower.clone(), str::to_owned)
    };
    stem(a) == stem(b)
}

/// A plausible module or file name: letters, digits, `_`, `-`, `.`.
pub fn is_module_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && name.bytes().any(|b| b.is_ascii_alphabetic())
}

/// A kernel-mode address for a pointer printed `digits` wide.
pub const fn is_kernel_address(value: u64, digits: usize) -> bool {
    if digits > 8 {
        value >= 0xFFFF_8000_0000_0000
    } else {
        value >= 0x8000_0000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_values_as_printed() {
        assert_eq!(hex("0x000000c4"), Some(0xC4));
        assert_eq!(hex("ffffe70886 "), Some(0xff_ffe7_0886));
        assert_eq!(hex("62,"), Some(0x62));
        assert_eq!(hex("0x"), None);
        assert_eq!(hex("12345678901234567"), None);
        assert_eq!(hex("zz"), None);
        assert_eq!(digits("0000000000000062,"), 16);
    }

    #[test]
    fn fields_found_where_blogs_put_them() {
        let line = "62 IMAGE_NAME: usbser.sys DEBUG_FLR_IMAGE_TIMESTAMP: 42435eb6";
        assert_eq!(
            field(line, "IMAGE_NAME:").and_then(first_word),
            Some("usbser.sys")
        );
        assert_eq!(field("DEBUG_FLR_IMAGE_NAME: x", "IMAGE_NAME:"), None);
        assert_eq!(field("é IMAGE_NAME: ü.sys", "IMAGE_NAME:"), Some("ü.sys"));
    }

    #[test]
    fn driver_names_compare_without_case_or_extension() {
        assert!(same_driver("MyDriver.sys", "Mydriver.SYS"));
        assert!(same_driver("ZFSin", "zfsin.sys"));
        assert!(!same_driver("Other.sys", "Sample.sys"));
        assert_eq!(driver_file("buggy"), "buggy.sys");
    }
}
