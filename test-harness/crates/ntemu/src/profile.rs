//! The Windows version the emulated machine pretends to be. The default is
//! the walkthrough's: Windows 7 SP1, 6.1.7601.

/// One Windows version, as the kernel reports it to drivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// `dwMajorVersion`.
    pub major: u32,
    /// `dwMinorVersion`.
    pub minor: u32,
    /// `dwBuildNumber`.
    pub build: u32,
    /// `szCSDVersion` (`Service Pack 1`, or empty).
    pub service_pack: &'static str,
    /// `wServicePackMajor`.
    pub service_pack_major: u16,
}

impl Profile {
    /// Windows 7 SP1, as in the walkthrough.
    pub(crate) const WINDOWS_7_SP1: Self = Self {
        major: 6,
        minor: 1,
        build: 7601,
        service_pack: "Service Pack 1",
        service_pack_major: 1,
    };

    /// The profile for `major.minor.build` (`--os-version`).
    #[must_use]
    pub(crate) fn for_version(major: u32, minor: u32, build: u32) -> Self {
        let service_pack = match (major, minor, build) {
            (6, 1, 7601) => Self::WINDOWS_7_SP1.service_pack,
            _ => "",
        };
        Self {
            major,
            minor,
            build,
            service_pack,
            service_pack_major: u16::from(!service_pack.is_empty()),
        }
    }

    /// Parses `X.Y.B`.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('.').map(str::parse::<u32>);
        let profile = Self::for_version(
            parts.next()?.ok()?,
            parts.next()?.ok()?,
            parts.next()?.ok()?,
        );
        parts.next().is_none().then_some(profile)
    }

    /// The registry path the I/O manager passes to DriverEntry. The service
    /// control manager keeps services under `ControlSet001`; Windows 7 and
    /// earlier spell the key `services`, Windows 8 and later `Services`.
    #[must_use]
    pub fn registry_path(&self, service: &str) -> String {
        let services = if (self.major, self.minor) <= (6, 1) {
            "services"
        } else {
            "Services"
        };
        format!("\\REGISTRY\\MACHINE\\SYSTEM\\ControlSet001\\{services}\\{service}")
    }

    /// `X.Y.B`.
    #[must_use]
    pub fn version(&self) -> String {
        format!("{}.{}.{}", self.major, self.minor, self.build)
    }
}

impl Default for Profile {
    fn default() -> Self {
        Self::WINDOWS_7_SP1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_walkthrough_registry_path_is_0x6c_bytes() {
        let path = Profile::default().registry_path("Sample");
        assert_eq!(
            path,
            "\\REGISTRY\\MACHINE\\SYSTEM\\ControlSet001\\services\\Sample"
        );
        assert_eq!(path.encode_utf16().count() * 2, 0x6c);
        let windows10 = Profile::parse("10.0.19045").expect("version");
        assert!(windows10.registry_path("Sample").contains("\\Services\\"));
        assert_eq!(Profile::parse("10.0"), None);
    }
}
