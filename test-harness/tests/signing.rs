//! `harness build --sign`: a real build, test-signed with osslsigncode and a
//! certificate made with openssl, read back the way Windows would read it.

use std::path::{Path, PathBuf};
use std::process::Command;

use harness_build::signing;
use harness_core::pe::PeImage;

/// `WIN_CERT_REVISION_2_0` and `WIN_CERT_TYPE_PKCS_SIGNED_DATA` (WinTrust.h):
/// the header of an Authenticode signature in the certificate table.
const WIN_CERT_REVISION_2_0: u16 = 0x0200;
const WIN_CERT_TYPE_PKCS_SIGNED_DATA: u16 = 0x0002;

struct Signed {
    _cache: tempfile::TempDir,
    sys: PathBuf,
    certificate: PathBuf,
    stdout: String,
}

/// Runs `harness build --arch <arch> --sign` with its own cache directory.
fn build_signed(arch: &str) -> Signed {
    let cache = tempfile::tempdir().expect("dir");
    let output = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["build", "--arch", arch, "--sign"])
        .env("XDG_CACHE_HOME", cache.path())
        .output()
        .expect("run harness");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let sys = PathBuf::from(lines.last().expect("a last line"));
    let certificate = cache
        .path()
        .join("sample-harness")
        .join("test-signing")
        .join("test.crt");
    Signed {
        _cache: cache,
        sys,
        certificate,
        stdout,
    }
}

fn u16_at(data: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([data[at], data[at + 1]])
}

fn u32_at(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

fn check_signed(signed: &Signed, variant: &str) {
    // The certificate's path comes on the line before the .sys path.
    let lines: Vec<&str> = signed.stdout.lines().collect();
    assert!(
        lines[lines.len() - 2].ends_with(&signed.certificate.display().to_string()),
        "{}",
        signed.stdout
    );
    assert!(signed.certificate.is_file());
    assert!(
        signed.sys.ends_with(Path::new(variant).join("Sample.sys")),
        "{}",
        signed.sys.display()
    );
    assert!(signed.sys.with_extension("pdb").is_file(), "PDB beside it");

    // osslsigncode reads the signature and checks it against the certificate.
    signing::verify(&signed.sys, &signed.certificate).expect("osslsigncode verify");

    // The loader's checksum is valid for the signed file.
    let image = PeImage::read(&signed.sys).expect("PE");
    assert_eq!(image.stored_checksum, image.computed_checksum);
    assert_ne!(image.stored_checksum, 0);

    // The signature sits in the certificate table (data directory 4): a
    // WIN_CERTIFICATE with PKCS#7 signed data, at the end of the file.
    let data = std::fs::read(&signed.sys).expect("read");
    let (offset, size) = signing::certificate_table(&data).expect("certificate table");
    let offset = usize::try_from(offset).expect("offset");
    assert_eq!(offset + usize::try_from(size).expect("size"), data.len());
    assert_eq!(u32_at(&data, offset), size, "dwLength");
    assert_eq!(u16_at(&data, offset + 4), WIN_CERT_REVISION_2_0);
    assert_eq!(u16_at(&data, offset + 6), WIN_CERT_TYPE_PKCS_SIGNED_DATA);

    // The unsigned build has none, and is left as it was.
    let unsigned = signed
        .sys
        .parent()
        .and_then(Path::parent)
        .expect("drivers dir")
        .join(variant.trim_end_matches("-signed"))
        .join("Sample.sys");
    let plain = std::fs::read(&unsigned).expect("unsigned build");
    assert!(signing::certificate_table(&plain).is_none());
    assert!(signing::is_signed(&signed.sys).expect("read"));
}

#[test]
fn x64_build_is_test_signed_with_a_valid_checksum() {
    let signed = build_signed("x64");
    check_signed(&signed, "x64-clean-signed");

    // Verification can fail: one byte of code changed breaks it.
    let tampered = signed.sys.with_file_name("tampered.sys");
    let mut data = std::fs::read(&signed.sys).expect("read");
    data[0x400] ^= 0xff;
    std::fs::write(&tampered, &data).expect("write");
    let result = signing::verify(&tampered, &signed.certificate);
    let _ = std::fs::remove_file(&tampered);
    assert!(result.is_err(), "a modified image must not verify");
}

#[test]
fn the_certificate_is_made_once_and_has_the_code_signing_usage() {
    let dir = tempfile::tempdir().expect("dir");
    let first = signing::certificate_in(dir.path()).expect("made");
    let pem = std::fs::read(&first.certificate).expect("crt");
    let again = signing::certificate_in(dir.path()).expect("kept");
    assert_eq!(
        std::fs::read(&again.certificate).expect("crt"),
        pem,
        "not made again"
    );
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&first.certificate)
        .output()
        .expect("openssl");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("Code Signing"), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&first.key)
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the key is private");
    }
}
