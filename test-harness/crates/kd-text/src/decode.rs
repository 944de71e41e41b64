//! Bytes to text. Debugger output reaches the harness as UTF-8 (kd `>`
//! redirection, copies from web pages), as UTF-16 LE with a BOM (WinDbg
//! `.logopen /u`, PowerShell 5 `>` redirection), without one (a log
//! cut out of a larger file), rarely UTF-16 BE, and sometimes with a UTF-8
//! BOM that would otherwise hide the first line's label.

/// How the bytes were encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8 (or ASCII), no byte order mark.
    Utf8,
    /// UTF-8 with a byte order mark.
    Utf8Bom,
    /// UTF-16, little-endian.
    Utf16Le {
        /// Whether a byte order mark said so (else the NUL pattern did).
        bom: bool,
    },
    /// UTF-16, big-endian.
    Utf16Be {
        /// Whether a byte order mark said so (else the NUL pattern did).
        bom: bool,
    },
}

/// The text, how it was encoded, and whether anything had to be replaced.
#[derive(Debug)]
pub struct Decoded {
    /// The text.
    pub text: String,
    /// The encoding found.
    pub encoding: Encoding,
    /// Bytes or code units that were not valid text and became U+FFFD.
    pub replaced: bool,
}

/// Bytes that are not debugger text at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotText {
    /// A kernel or complete memory dump (`PAGEDUMP`/`PAGEDU64`).
    #[error(
        "a kernel memory dump, not debugger text: run kd -z on it (!analyze -v; !verifier 3 <driver>.sys) and analyze that output"
    )]
    KernelDump,
    /// A minidump (`MDMP`).
    #[error(
        "a minidump, not debugger text: run kd -z on it (!analyze -v) and analyze that output; a minidump has no !verifier 3 data"
    )]
    Minidump,
}

/// How many bytes the UTF-16 guess looks at.
const SNIFF: usize = 4096;

/// Decodes debugger output.
///
/// # Errors
/// The bytes are a crash dump rather than text.
pub fn decode(bytes: &[u8]) -> Result<Decoded, NotText> {
    if bytes.starts_with(b"PAGEDUMP") || bytes.starts_with(b"PAGEDU64") {
        return Err(NotText::KernelDump);
    }
    if bytes.starts_with(b"MDMP") {
        return Err(NotText::Minidump);
    }
    let decoded = match bytes {
        [0xEF, 0xBB, 0xBF, rest @ ..] => utf8(rest, Encoding::Utf8Bom),
        [0xFF, 0xFE, rest @ ..] => utf16(rest, u16::from_le_bytes, Encoding::Utf16Le { bom: true }),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, u16::from_be_bytes, Encoding::Utf16Be { bom: true }),
        _ => match sniff_utf16(bytes) {
            Some(Encoding::Utf16Le { .. }) => {
                utf16(bytes, u16::from_le_bytes, Encoding::Utf16Le { bom: false })
            }
            Some(Encoding::Utf16Be { .. }) => {
                utf16(bytes, u16::from_be_bytes, Encoding::Utf16Be { bom: false })
            }
            _ => utf8(bytes, Encoding::Utf8),
        },
    };
    Ok(decoded)
}

fn utf8(bytes: &[u8], encoding: Encoding) -> Decoded {
    std::str::from_utf8(bytes).map_or_else(
        |_| Decoded {
            text: String::from_utf8_lossy(bytes).into_owned(),
            encoding,
            replaced: true,
        },
        |text| Decoded {
            text: text.to_owned(),
            encoding,
            replaced: false,
        },
    )
}

fn utf16(bytes: &[u8], unit: fn([u8; 2]) -> u16, encoding: Encoding) -> Decoded {
    let pairs = bytes.chunks_exact(2);
    let mut replaced = !pairs.remainder().is_empty();
    let units = pairs.map(|pair| unit([pair[0], pair[1]]));
    let mut text = String::with_capacity(bytes.len() / 2);
    for decoded in char::decode_utf16(units) {
        text.push(decoded.unwrap_or_else(|_| {
            replaced = true;
            char::REPLACEMENT_CHARACTER
        }));
    }
    Decoded {
        text,
        encoding,
        replaced,
    }
}

/// UTF-16 without a BOM: debugger output is mostly ASCII, so every other
/// byte is NUL (odd positions for little-endian, even for big-endian).
/// UTF-8 text has no NUL bytes at all.
fn sniff_utf16(bytes: &[u8]) -> Option<Encoding> {
    let sample = &bytes[..bytes.len().min(SNIFF) & !1];
    let pairs = sample.len() / 2;
    if pairs < 2 {
        return None;
    }
    let (mut even, mut odd) = (0usize, 0usize);
    for pair in sample.chunks_exact(2) {
        even += usize::from(pair[0] == 0);
        odd += usize::from(pair[1] == 0);
    }
    // Most units are ASCII, and the other half of the pair almost never NUL.
    if odd * 2 > pairs && even * 8 < pairs {
        Some(Encoding::Utf16Le { bom: false })
    } else if even * 2 > pairs && odd * 8 < pairs {
        Some(Encoding::Utf16Be { bom: false })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn le(text: &str) -> Vec<u8> {
        text.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    fn be(text: &str) -> Vec<u8> {
        text.encode_utf16().flat_map(u16::to_be_bytes).collect()
    }

    #[test]
    fn every_encoding_with_and_without_a_bom() {
        let text = "BUGCHECK_CODE:  c4\r\nIMAGE_NAME:  Sample.sys\r\n";
        let cases: [(Vec<u8>, Encoding); 6] = [
            (text.as_bytes().to_vec(), Encoding::Utf8),
            (
                [b"\xEF\xBB\xBF".as_slice(), text.as_bytes()].concat(),
                Encoding::Utf8Bom,
            ),
            (
                [vec![0xFF, 0xFE], le(text)].concat(),
                Encoding::Utf16Le { bom: true },
            ),
            (le(text), Encoding::Utf16Le { bom: false }),
            (
                [vec![0xFE, 0xFF], be(text)].concat(),
                Encoding::Utf16Be { bom: true },
            ),
            (be(text), Encoding::Utf16Be { bom: false }),
        ];
        for (bytes, encoding) in cases {
            let decoded = decode(&bytes).expect("text");
            assert_eq!(decoded.encoding, encoding);
            assert_eq!(decoded.text, text, "{encoding:?}");
            assert!(!decoded.replaced);
        }
    }

    #[test]
    fn non_ascii_utf16_and_broken_units() {
        let text = "Arg1: 0000000000000062 沒有留言 ü\n";
        let decoded = decode(&[vec![0xFF, 0xFE], le(text)].concat()).expect("text");
        assert_eq!(decoded.text, text);
        // A lone surrogate and an odd trailing byte are replaced, not fatal.
        let mut broken = le("Arg1: 62");
        broken.extend_from_slice(&[0x00, 0xD8, 0x41]);
        let decoded = decode(&broken).expect("text");
        assert!(decoded.replaced);
        assert!(decoded.text.starts_with("Arg1: 62"));
        let decoded = decode(b"Arg1: \xff\xfe 62").expect("text");
        assert!(decoded.replaced);
    }

    #[test]
    fn dumps_are_named_for_what_they_are() {
        assert_eq!(decode(b"PAGEDU64....").unwrap_err(), NotText::KernelDump);
        assert_eq!(decode(b"MDMP\x93\xa7").unwrap_err(), NotText::Minidump);
        assert!(decode(b"").is_ok());
    }
}
