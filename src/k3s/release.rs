//! A k3s release (`v1.31.4+k3s1`) and the architectures it publishes
//! binaries for, with the asset names upstream's installer downloads:
//! `k3s` / `k3s-arm64` / `k3s-armhf` beside `sha256sum-<arch>.txt`, and the
//! air-gap images `k3s-airgap-images-<arch>.tar.zst`.

use std::fmt;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "k3s version `{0}` is not an exact release: write it as on the releases page, \
     e.g. v1.31.4+k3s1"
)]
pub struct VersionError(pub String);

/// An exact k3s release: `v<major>.<minor>.<patch>[-rcN]+k3s<N>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct K3sVersion {
    text: String,
    minor: u32,
    patch: u32,
    /// The `N` of `+k3sN` (upstream re-releases a patch as k3s2, k3s3…).
    build: u32,
}

impl K3sVersion {
    pub fn parse(s: &str) -> Result<Self, VersionError> {
        let err = || VersionError(s.to_owned());
        let rest = s.strip_prefix('v').ok_or_else(err)?;
        let (core, build) = rest.split_once('+').ok_or_else(err)?;
        let n = build.strip_prefix("k3s").ok_or_else(err)?;
        if n.is_empty() || n.len() > 3 || !n.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let build: u32 = n.parse().map_err(|_| err())?;
        let (core, pre) = match core.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (core, None),
        };
        if let Some(p) = pre {
            let ok = p.len() <= 8 && !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric());
            if !ok {
                return Err(err());
            }
        }
        let parts: Vec<&str> = core.split('.').collect();
        let number = |p: &str| -> Option<u32> {
            (!p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse().ok())
                .flatten()
        };
        match parts.as_slice() {
            [maj, min, pat] if number(maj) == Some(1) => {
                let minor = number(min).ok_or_else(err)?;
                let patch = number(pat).ok_or_else(err)?;
                Ok(Self {
                    text: s.to_owned(),
                    minor,
                    patch,
                    build,
                })
            }
            _ => Err(err()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The Kubernetes minor version (31 for v1.31.4+k3s1).
    pub fn minor(&self) -> u32 {
        self.minor
    }

    /// The release's path segment in a download URL (`+` escaped, as
    /// GitHub's release URLs have it).
    pub fn url_segment(&self) -> String {
        self.text.replace('+', "%2B")
    }

    /// The architectures this release publishes a binary for.
    pub fn arches(&self) -> Vec<K3sArch> {
        K3sArch::ALL
            .into_iter()
            .filter(|a| a.published_in(self))
            .collect()
    }
}

impl fmt::Display for K3sVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

crate::profile::newtype::string_serde!(K3sVersion, K3sVersion::parse);

/// A CPU architecture in k3s's release naming (Debian's names, except that
/// 32-bit ARM is `arm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum K3sArch {
    Amd64,
    Arm64,
    Arm,
    S390x,
}

impl K3sArch {
    pub const ALL: [K3sArch; 4] = [Self::Amd64, Self::Arm64, Self::Arm, Self::S390x];

    /// Parses a Debian architecture name (`amd64`, `arm64`, `armhf`, `s390x`)
    /// or k3s's own (`arm`); `None` for one k3s never published.
    pub fn from_debian(s: &str) -> Option<Self> {
        match s {
            "amd64" | "x86_64" => Some(Self::Amd64),
            "arm64" | "aarch64" => Some(Self::Arm64),
            "armhf" | "arm" => Some(Self::Arm),
            "s390x" => Some(Self::S390x),
            _ => None,
        }
    }

    /// k3s's name, as in `sha256sum-<name>.txt`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Amd64 => "amd64",
            Self::Arm64 => "arm64",
            Self::Arm => "arm",
            Self::S390x => "s390x",
        }
    }

    /// The binary's asset name in a release.
    pub fn binary_asset(self) -> &'static str {
        match self {
            Self::Amd64 => "k3s",
            Self::Arm64 => "k3s-arm64",
            Self::Arm => "k3s-armhf",
            Self::S390x => "k3s-s390x",
        }
    }

    /// The checksum file's asset name in a release.
    pub fn checksum_asset(self) -> String {
        format!("sha256sum-{}.txt", self.name())
    }

    /// The air-gap images tarball's asset name in a release.
    pub fn airgap_asset(self) -> String {
        format!("k3s-airgap-images-{}.tar.zst", self.name())
    }

    /// Whether release `v` has assets for this architecture.
    ///
    /// s390x came and went: added by k3s-io/k3s#5018 and its backports,
    /// first shipped in v1.22.10, v1.23.7 and v1.24.1 (k3s-io/k3s#3221:
    /// "validated in v1.24.1-rc3+k3s1, v1.23.7-rc1+k3s1 and
    /// v1.22.10-rc1+k3s1"); dropped when its build runners went away in
    /// December 2023 (k3s-io/k3s#8983, backports #8998/#8999/#9000;
    /// k3s-io/k3s#9044: "since v1.28.4+k3s2 the s390x platform is
    /// disabled", v1.28.4+k3s1 still installs). The last of each line is
    /// the November 2023 patch's first build; v1.29 and later have none
    /// (today's release workflow builds amd64, arm64 and arm only).
    fn published_in(self, v: &K3sVersion) -> bool {
        match self {
            Self::Amd64 | Self::Arm64 | Self::Arm => true,
            Self::S390x => {
                let at_least = |patch| v.patch >= patch;
                let until = |patch, build| (v.patch, v.build) <= (patch, build);
                match v.minor {
                    22 => at_least(10),
                    23 => at_least(7),
                    24 => at_least(1),
                    25 => true,
                    26 => until(11, 1),
                    27 => until(8, 1),
                    28 => until(4, 1),
                    _ => false,
                }
            }
        }
    }
}

impl fmt::Display for K3sArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_releases_parse_and_anything_else_is_refused() {
        let v = K3sVersion::parse("v1.31.4+k3s1").unwrap();
        assert_eq!(v.minor(), 31);
        assert_eq!(v.url_segment(), "v1.31.4%2Bk3s1");
        assert!(K3sVersion::parse("v1.32.0-rc1+k3s2").is_ok());
        for bad in [
            "1.31.4+k3s1",
            "v1.31.4",
            "v1.31+k3s1",
            "latest",
            "stable",
            "v1.31.4+k3s",
            "v2.0.0+k3s1",
            "v1.31.4+k3s1/../x",
            "v1.31.4-rc/1+k3s1",
        ] {
            assert!(K3sVersion::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn asset_names_follow_upstream_installer() {
        assert_eq!(K3sArch::Amd64.binary_asset(), "k3s");
        assert_eq!(K3sArch::Arm64.binary_asset(), "k3s-arm64");
        assert_eq!(K3sArch::Arm.binary_asset(), "k3s-armhf");
        assert_eq!(K3sArch::Arm.checksum_asset(), "sha256sum-arm.txt");
        assert_eq!(
            K3sArch::Arm64.airgap_asset(),
            "k3s-airgap-images-arm64.tar.zst"
        );
        assert_eq!(K3sArch::from_debian("armhf"), Some(K3sArch::Arm));
        assert_eq!(K3sArch::from_debian("riscv64"), None);
    }

    #[test]
    fn s390x_is_published_only_between_v1_22_10_and_november_2023() {
        let has = |v: &str| {
            K3sVersion::parse(v)
                .unwrap()
                .arches()
                .contains(&K3sArch::S390x)
        };
        for yes in [
            "v1.22.10+k3s1",
            "v1.23.7-rc1+k3s1",
            "v1.24.1+k3s1",
            "v1.25.3+k3s1",
            "v1.26.11+k3s1",
            "v1.27.8+k3s1",
            "v1.28.4+k3s1",
        ] {
            assert!(has(yes), "{yes}");
        }
        for no in [
            "v1.21.14+k3s1",
            "v1.22.9+k3s1",
            "v1.23.6+k3s1",
            "v1.24.0+k3s1",
            "v1.28.4+k3s2",
            "v1.28.5+k3s1",
            "v1.27.9+k3s1",
            "v1.29.0+k3s1",
            "v1.31.4+k3s1",
        ] {
            assert!(!has(no), "{no}");
        }
        let v = K3sVersion::parse("v1.31.4+k3s1").unwrap();
        assert_eq!(v.arches(), [K3sArch::Amd64, K3sArch::Arm64, K3sArch::Arm]);
    }
}
