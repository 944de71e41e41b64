//! Test-signing drivers on Linux: a self-made code-signing certificate
//! (openssl) and an embedded SHA-256 Authenticode signature (osslsigncode).
//!
//! 64-bit Windows loads only signed kernel-mode code; with `bcdedit /set
//! testsigning on` it accepts a signature from any certificate, which need
//! not chain to a trusted root ("The TESTSIGNING Boot Configuration Option",
//! learn.microsoft.com/windows-hardware/drivers/install/the-testsigning-boot-configuration-option).
//! The certificate is made once and kept in the harness's cache.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use object::read::pe::{ImageNtHeaders, ImageOptionalHeader, PeFile};
use object::{LittleEndian as LE, pe};

use harness_core::error::ProcessError;

/// Why signing failed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// No cache directory to keep the certificate in.
    #[error(
        "no cache directory for the test certificate (set HOME or XDG_CACHE_HOME to an absolute path)"
    )]
    NoCache,
    /// openssl or osslsigncode is not installed.
    #[error("cannot run {0}: install it (apt-get install openssl osslsigncode)")]
    Missing(String),
    /// openssl or osslsigncode failed.
    #[error(transparent)]
    Tool(ProcessError),
    /// A file could not be read or written.
    #[error("cannot {what} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The signed file is not a PE image the harness can patch.
    #[error("{}: not a PE image after signing", .0.display())]
    NotPe(PathBuf),
    /// The output has no certificate table although osslsigncode succeeded.
    #[error("{}: osslsigncode wrote no certificate table", .0.display())]
    Unsigned(PathBuf),
}

impl From<ProcessError> for SignError {
    fn from(error: ProcessError) -> Self {
        match error {
            ProcessError::Spawn { program, .. } => Self::Missing(program),
            other => Self::Tool(other),
        }
    }
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SignError {
    let path = path.to_path_buf();
    move |source| SignError::Io { what, path, source }
}

/// The test certificate and its private key.
#[derive(Debug, Clone)]
pub struct TestCertificate {
    /// PEM certificate (what the guest may import with certutil).
    pub certificate: PathBuf,
    /// PEM private key (stays on this host).
    pub key: PathBuf,
}

/// `<cache>/test-signing`, where the certificate lives.
///
/// # Errors
/// No cache directory.
pub fn certificate_dir() -> Result<PathBuf, SignError> {
    harness_core::cache_dir()
        .map(|cache| cache.join("test-signing"))
        .ok_or(SignError::NoCache)
}

/// The harness's test certificate, made with openssl on first use.
///
/// # Errors
/// openssl is missing or failed, or the cache cannot be written.
pub fn test_certificate() -> Result<TestCertificate, SignError> {
    certificate_in(&certificate_dir()?)
}

/// The test certificate kept in `dir` (`test.crt`, `test.key`), made if missing.
///
/// # Errors
/// openssl is missing or failed, or `dir` cannot be written.
pub fn certificate_in(dir: &Path) -> Result<TestCertificate, SignError> {
    let made = TestCertificate {
        certificate: dir.join("test.crt"),
        key: dir.join("test.key"),
    };
    if made.certificate.is_file() && made.key.is_file() {
        return Ok(made);
    }
    fs::create_dir_all(dir).map_err(io("create", dir))?;
    // Written under temporary names and renamed, so an interrupted run never
    // leaves a key without its certificate.
    let key = dir.join(format!("test.key.{}", std::process::id()));
    let certificate = dir.join(format!("test.crt.{}", std::process::id()));
    let mut openssl = Command::new("openssl");
    openssl
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
        ])
        .args(["-subj", "/CN=Sample.sys test signing (harness)"])
        // Code signing EKU: what Authenticode signers carry.
        .args(["-addext", "extendedKeyUsage=codeSigning"])
        .args(["-addext", "keyUsage=critical,digitalSignature"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&certificate);
    let made_now = harness_core::process::run_checked(
        &mut openssl,
        Duration::from_mins(1),
        "openssl could not make the test certificate",
    );
    if let Err(error) = made_now {
        let _ = fs::remove_file(&key);
        let _ = fs::remove_file(&certificate);
        return Err(error.into());
    }
    restrict(&key)?;
    fs::rename(&key, &made.key).map_err(io("store", &made.key))?;
    fs::rename(&certificate, &made.certificate).map_err(io("store", &made.certificate))?;
    Ok(made)
}

#[cfg(unix)]
fn restrict(key: &Path) -> Result<(), SignError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(key, fs::Permissions::from_mode(0o600)).map_err(io("protect", key))
}

#[cfg(not(unix))]
fn restrict(_key: &Path) -> Result<(), SignError> {
    Ok(())
}

/// Signs `input` into `output` (SHA-256 Authenticode, the certificate
/// embedded), then makes the PE checksum valid for the signed file.
///
/// # Errors
/// osslsigncode is missing or failed, or the result cannot be patched.
pub fn sign(input: &Path, output: &Path, certificate: &TestCertificate) -> Result<(), SignError> {
    if output.exists() {
        // osslsigncode refuses to overwrite.
        fs::remove_file(output).map_err(io("replace", output))?;
    }
    let mut osslsigncode = Command::new("osslsigncode");
    osslsigncode
        .arg("sign")
        .arg("-certs")
        .arg(&certificate.certificate)
        .arg("-key")
        .arg(&certificate.key)
        .args(["-h", "sha256"])
        .arg("-in")
        .arg(input)
        .arg("-out")
        .arg(output);
    harness_core::process::run_checked(
        &mut osslsigncode,
        Duration::from_mins(1),
        "osslsigncode could not sign the driver",
    )?;
    let mut data = fs::read(output).map_err(io("read", output))?;
    if certificate_table(&data).is_none() {
        return Err(SignError::Unsigned(output.to_path_buf()));
    }
    // The loader checks a driver's checksum. Authenticode leaves the checksum
    // field and the certificate table out of the signed hash, so fixing it
    // keeps the signature valid; osslsigncode 2.x writes it, older ones may not.
    if fix_checksum(&mut data).ok_or_else(|| SignError::NotPe(output.to_path_buf()))? {
        fs::write(output, &data).map_err(io("write", output))?;
    }
    Ok(())
}

/// Checks an image's signature with `osslsigncode verify -CAfile <crt>`.
///
/// # Errors
/// The signature does not verify against the certificate.
pub fn verify(signed: &Path, certificate: &Path) -> Result<(), SignError> {
    let mut osslsigncode = Command::new("osslsigncode");
    osslsigncode
        .arg("verify")
        .arg("-CAfile")
        .arg(certificate)
        .arg("-in")
        .arg(signed);
    harness_core::process::run_checked(
        &mut osslsigncode,
        Duration::from_mins(1),
        "the signature does not verify",
    )?;
    Ok(())
}

/// The certificate table (data directory 4, `IMAGE_DIRECTORY_ENTRY_SECURITY`):
/// its file offset and size, if the image has one. An embedded Authenticode
/// signature lives there.
#[must_use]
pub fn certificate_table(data: &[u8]) -> Option<(u32, u32)> {
    fn table<Pe: ImageNtHeaders>(data: &[u8]) -> Option<(u32, u32)> {
        let file = PeFile::<Pe>::parse(data).ok()?;
        let entry = file.data_directory(pe::IMAGE_DIRECTORY_ENTRY_SECURITY)?;
        let (offset, size) = (entry.virtual_address.get(LE), entry.size.get(LE));
        (size > 0).then_some((offset, size))
    }
    match object::FileKind::parse(data).ok()? {
        object::FileKind::Pe32 => table::<pe::ImageNtHeaders32>(data),
        object::FileKind::Pe64 => table::<pe::ImageNtHeaders64>(data),
        _ => None,
    }
}

/// Whether the file at `path` carries an embedded signature.
///
/// # Errors
/// The file cannot be read.
pub fn is_signed(path: &Path) -> Result<bool, SignError> {
    let data = fs::read(path).map_err(io("read", path))?;
    Ok(certificate_table(&data).is_some())
}

/// Rewrites the optional header's checksum to match the file; `Some(true)`
/// if it changed, `None` if the data is not a PE image.
fn fix_checksum(data: &mut [u8]) -> Option<bool> {
    fn checksum_field<Pe: ImageNtHeaders>(data: &[u8]) -> Option<(usize, u32)> {
        let file = PeFile::<Pe>::parse(data).ok()?;
        let stored = file.nt_headers().optional_header().check_sum();
        let e_lfanew = u32::from_le_bytes(data.get(0x3c..0x40)?.try_into().ok()?);
        // Signature (4) + file header (20) + 64 bytes into the optional header.
        Some((usize::try_from(e_lfanew).ok()? + 4 + 20 + 64, stored))
    }
    let (offset, stored) = match object::FileKind::parse(&*data).ok()? {
        object::FileKind::Pe32 => checksum_field::<pe::ImageNtHeaders32>(data)?,
        object::FileKind::Pe64 => checksum_field::<pe::ImageNtHeaders64>(data)?,
        _ => return None,
    };
    let computed = harness_core::pe::checksum(data, offset);
    if computed == stored {
        return Some(false);
    }
    data.get_mut(offset..offset + 4)?
        .copy_from_slice(&computed.to_le_bytes());
    Some(true)
}

/// A driver made ready for a guest: signed here, already signed, or left unsigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestSigning {
    /// Signed by the harness; the certificate to import is this one.
    Signed {
        /// The signed copy.
        driver: PathBuf,
        /// The test certificate.
        certificate: PathBuf,
    },
    /// The file had a signature already; used as it is.
    AlreadySigned,
    /// Not signed: x86 (not enforced on Windows 7, nor on 8+ with Secure Boot
    /// off) or `--no-sign`.
    Unsigned,
}

/// Signs `driver` for a guest when asked to and it is not signed yet: the
/// signed copy (and the PDB beside the original, for symbols) goes to `dir`
/// under the same file names.
///
/// # Errors
/// Signing failed.
pub fn for_guest(
    driver: &Path,
    sign: bool,
    certificate: impl FnOnce() -> Result<TestCertificate, SignError>,
    dir: &Path,
) -> Result<GuestSigning, SignError> {
    if is_signed(driver)? {
        return Ok(GuestSigning::AlreadySigned);
    }
    if !sign {
        return Ok(GuestSigning::Unsigned);
    }
    let certificate = certificate()?;
    let signed = signed_copy(driver, dir, &certificate)?;
    Ok(GuestSigning::Signed {
        driver: signed,
        certificate: certificate.certificate,
    })
}

/// Signs `driver` into `dir` with the same file name, copying the PDB beside
/// it (the signature does not touch the CodeView record, so it still matches).
///
/// # Errors
/// Signing or copying failed.
pub fn signed_copy(
    driver: &Path,
    dir: &Path,
    certificate: &TestCertificate,
) -> Result<PathBuf, SignError> {
    fs::create_dir_all(dir).map_err(io("create", dir))?;
    let name = driver
        .file_name()
        .ok_or_else(|| SignError::NotPe(driver.to_path_buf()))?;
    let output = dir.join(name);
    sign(driver, &output, certificate)?;
    let pdb = driver.with_extension("pdb");
    if pdb.is_file() {
        let to = output.with_extension("pdb");
        fs::copy(&pdb, &to).map_err(io("copy the PDB to", &to))?;
    }
    Ok(output)
}
