//! The catalog of base images built into the binary: which stock images
//! exist, for which OS and boards, and where their newest release is
//! published. Pure data; `locate` turns an entry into a concrete download.
//! URL patterns and checksum/signature formats: shared/reference/targets.md
//! §1.1 (Ubuntu) and §2.1 (Armbian); the cloud images' layout
//! (`releases/<series>/release-<serial>/`) is described in docs/CACHE.md.

use crate::profile::platform::{Arch, Board, OsRelease};

/// Whose signing keys vouch for an entry (see `keys/README.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publisher {
    Ubuntu,
    Armbian,
    /// cloud-images.ubuntu.com, signed by the UEC image key.
    UbuntuCloud,
}

/// How to find the newest image of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locator {
    /// A cdimage release directory. It always holds the latest point release
    /// of `series`; its `SHA256SUMS`, signed by `SHA256SUMS.gpg`, names it:
    /// `ubuntu-<series>[.<point>]-preinstalled-server-arm64+raspi.img.xz`.
    UbuntuRelease {
        dir: &'static str,
        series: &'static str,
    },
    /// An Armbian "latest" redirector link. `<link>.sha` redirects to the
    /// archived `.sha` of the newest build (`<hex> <file name>`); the image
    /// lies beside it and its detached signature at `<image>.asc`.
    ArmbianLatest { link: &'static str },
    /// A cloud-images series directory (`…/releases/noble/`). Its index
    /// lists one `release-<serial>/` directory per build; the newest holds
    /// `file` and a `SHA256SUMS` signed by `SHA256SUMS.gpg`.
    UbuntuCloud {
        dir: &'static str,
        file: &'static str,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogEntry {
    pub name: &'static str,
    pub os: OsRelease,
    /// Board names as the profile spells them.
    pub boards: &'static [&'static str],
    /// The architecture the image is built for.
    pub arch: Arch,
    pub publisher: Publisher,
    pub locator: Locator,
    pub description: &'static str,
}

/// Every entry; the first one matching an OS and board is its default.
pub const CATALOG: &[CatalogEntry] = &[
    CatalogEntry {
        name: "ubuntu-26.04-raspi",
        os: OsRelease::Ubuntu2604,
        boards: &["rpi4", "rpi5"],
        arch: Arch::Arm64,
        publisher: Publisher::Ubuntu,
        locator: Locator::UbuntuRelease {
            dir: "https://cdimage.ubuntu.com/releases/26.04/release/",
            series: "26.04",
        },
        description: "Ubuntu Server 26.04 LTS, preinstalled, Raspberry Pi",
    },
    CatalogEntry {
        name: "ubuntu-24.04-raspi",
        os: OsRelease::Ubuntu2404,
        boards: &["rpi4", "rpi5"],
        arch: Arch::Arm64,
        publisher: Publisher::Ubuntu,
        locator: Locator::UbuntuRelease {
            dir: "https://cdimage.ubuntu.com/releases/24.04/release/",
            series: "24.04",
        },
        description: "Ubuntu Server 24.04 LTS, preinstalled, Raspberry Pi",
    },
    CatalogEntry {
        name: "ubuntu-22.04-raspi",
        os: OsRelease::Ubuntu2204,
        // Ubuntu supports the Pi 5 from 23.10 on.
        boards: &["rpi4"],
        arch: Arch::Arm64,
        publisher: Publisher::Ubuntu,
        locator: Locator::UbuntuRelease {
            dir: "https://cdimage.ubuntu.com/releases/22.04/release/",
            series: "22.04",
        },
        description: "Ubuntu Server 22.04 LTS, preinstalled, Raspberry Pi",
    },
    CatalogEntry {
        name: "ubuntu-26.04-cloud-amd64",
        os: OsRelease::Ubuntu2604,
        boards: &["vm"],
        arch: Arch::Amd64,
        publisher: Publisher::UbuntuCloud,
        locator: Locator::UbuntuCloud {
            dir: "https://cloud-images.ubuntu.com/releases/resolute/",
            file: "ubuntu-26.04-server-cloudimg-amd64.img",
        },
        description: "Ubuntu Server 26.04 LTS cloud image (qcow2), amd64",
    },
    CatalogEntry {
        name: "ubuntu-26.04-cloud-arm64",
        os: OsRelease::Ubuntu2604,
        boards: &["vm"],
        arch: Arch::Arm64,
        publisher: Publisher::UbuntuCloud,
        locator: Locator::UbuntuCloud {
            dir: "https://cloud-images.ubuntu.com/releases/resolute/",
            file: "ubuntu-26.04-server-cloudimg-arm64.img",
        },
        description: "Ubuntu Server 26.04 LTS cloud image (qcow2), arm64",
    },
    CatalogEntry {
        name: "ubuntu-24.04-cloud-amd64",
        os: OsRelease::Ubuntu2404,
        boards: &["vm"],
        arch: Arch::Amd64,
        publisher: Publisher::UbuntuCloud,
        locator: Locator::UbuntuCloud {
            dir: "https://cloud-images.ubuntu.com/releases/noble/",
            file: "ubuntu-24.04-server-cloudimg-amd64.img",
        },
        description: "Ubuntu Server 24.04 LTS cloud image (qcow2), amd64",
    },
    CatalogEntry {
        name: "ubuntu-24.04-cloud-arm64",
        os: OsRelease::Ubuntu2404,
        boards: &["vm"],
        arch: Arch::Arm64,
        publisher: Publisher::UbuntuCloud,
        locator: Locator::UbuntuCloud {
            dir: "https://cloud-images.ubuntu.com/releases/noble/",
            file: "ubuntu-24.04-server-cloudimg-arm64.img",
        },
        description: "Ubuntu Server 24.04 LTS cloud image (qcow2), arm64",
    },
    CatalogEntry {
        name: "armbian-rpi4b",
        os: OsRelease::Armbian,
        // Armbian's rpi4b image is built for the whole bcm2711 family and
        // boots the Pi 5 too.
        boards: &["rpi4", "rpi5"],
        arch: Arch::Arm64,
        publisher: Publisher::Armbian,
        locator: Locator::ArmbianLatest {
            link: "https://dl.armbian.com/rpi4b/Noble_current_minimal",
        },
        description: "Armbian current stable (Ubuntu 24.04 userland, minimal)",
    },
    CatalogEntry {
        name: "armbian-rock-5b",
        os: OsRelease::Armbian,
        boards: &["rock-5b"],
        arch: Arch::Arm64,
        publisher: Publisher::Armbian,
        locator: Locator::ArmbianLatest {
            link: "https://dl.armbian.com/rock-5b/Noble_current_minimal",
        },
        description: "Armbian current stable (Ubuntu 24.04 userland, minimal)",
    },
    CatalogEntry {
        name: "armbian-orangepi5",
        os: OsRelease::Armbian,
        boards: &["orangepi5"],
        arch: Arch::Arm64,
        publisher: Publisher::Armbian,
        locator: Locator::ArmbianLatest {
            link: "https://dl.armbian.com/orangepi5/Noble_current_minimal",
        },
        description: "Armbian current stable (Ubuntu 24.04 userland, minimal)",
    },
];

/// The entry called `name`.
pub fn find(name: &str) -> Option<&'static CatalogEntry> {
    CATALOG.iter().find(|e| e.name == name)
}

/// The default entry for a node: the first for its OS, board and
/// architecture.
pub fn default_for(os: OsRelease, board: &Board, arch: Arch) -> Option<&'static CatalogEntry> {
    CATALOG
        .iter()
        .find(|e| e.os == os && e.arch == arch && e.supports(board))
}

/// All names, for error messages.
pub fn names() -> String {
    CATALOG
        .iter()
        .map(|e| e.name)
        .collect::<Vec<_>>()
        .join(", ")
}

impl CatalogEntry {
    pub fn supports(&self, board: &Board) -> bool {
        let name = board.to_string();
        self.boards.contains(&name.as_str())
    }

    /// The URL the entry is resolved from (shown by `images`).
    pub fn origin(&self) -> &'static str {
        match self.locator {
            Locator::UbuntuRelease { dir, .. } => dir,
            Locator::ArmbianLatest { link } => link,
            Locator::UbuntuCloud { dir, .. } => dir,
        }
    }
}

/// The point release in an Ubuntu raspi image name of `series`:
/// `ubuntu-24.04.3-preinstalled-server-arm64+raspi.img.xz` → `Some(3)`,
/// `ubuntu-24.04-…` → `Some(0)`, any other name → `None`.
pub fn ubuntu_point_release(series: &str, file_name: &str) -> Option<u32> {
    let rest = file_name.strip_prefix("ubuntu-")?.strip_prefix(series)?;
    let rest = rest.strip_suffix("-preinstalled-server-arm64+raspi.img.xz")?;
    if rest.is_empty() {
        return Some(0);
    }
    let digits = rest.strip_prefix('.')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_boards_parse() {
        for (i, e) in CATALOG.iter().enumerate() {
            assert!(CATALOG[..i].iter().all(|o| o.name != e.name), "{}", e.name);
            for b in e.boards {
                assert_eq!(Board::parse(b).unwrap().to_string(), *b);
            }
        }
    }

    #[test]
    fn defaults_follow_os_and_board() {
        let rpi5 = Board::parse("rpi5").unwrap();
        let rock = Board::parse("rock-5b").unwrap();
        let odroid = Board::parse("odroidn2").unwrap();
        assert_eq!(
            default_for(OsRelease::Ubuntu2404, &rpi5, Arch::Arm64)
                .unwrap()
                .name,
            "ubuntu-24.04-raspi"
        );
        assert!(default_for(OsRelease::Ubuntu2204, &rpi5, Arch::Arm64).is_none());
        assert_eq!(
            default_for(OsRelease::Armbian, &rock, Arch::Arm64)
                .unwrap()
                .name,
            "armbian-rock-5b"
        );
        assert_eq!(
            default_for(
                OsRelease::Armbian,
                &Board::parse("rpi4b").unwrap(),
                Arch::Arm64
            )
            .unwrap()
            .name,
            "armbian-rpi4b"
        );
        assert!(default_for(OsRelease::Armbian, &odroid, Arch::Arm64).is_none());
    }

    #[test]
    fn cloud_images_are_the_vm_defaults_per_arch() {
        let vm = Board::Vm;
        let name = |os, arch| default_for(os, &vm, arch).map(|e| e.name);
        assert_eq!(
            name(OsRelease::Ubuntu2404, Arch::Amd64),
            Some("ubuntu-24.04-cloud-amd64")
        );
        assert_eq!(
            name(OsRelease::Ubuntu2404, Arch::Arm64),
            Some("ubuntu-24.04-cloud-arm64")
        );
        assert_eq!(
            name(OsRelease::Ubuntu2604, Arch::Amd64),
            Some("ubuntu-26.04-cloud-amd64")
        );
        assert_eq!(
            name(OsRelease::Ubuntu2604, Arch::Arm64),
            Some("ubuntu-26.04-cloud-arm64")
        );
        assert_eq!(name(OsRelease::Ubuntu2204, Arch::Amd64), None);
        assert_eq!(name(OsRelease::Armbian, Arch::Arm64), None);
        // A Pi never gets a cloud image.
        let rpi4 = Board::parse("rpi4").unwrap();
        assert_eq!(
            default_for(OsRelease::Ubuntu2404, &rpi4, Arch::Arm64)
                .unwrap()
                .name,
            "ubuntu-24.04-raspi"
        );
        for e in CATALOG {
            if let Locator::UbuntuCloud { dir, file } = e.locator {
                assert_eq!(e.publisher, Publisher::UbuntuCloud, "{}", e.name);
                assert!(file.ends_with(&format!("-{}.img", e.arch)), "{}", e.name);
                assert!(file.starts_with(&format!("{}-server", e.os)), "{}", e.name);
                assert!(dir.ends_with('/'), "{}", e.name);
            }
        }
    }

    #[test]
    fn ubuntu_point_releases() {
        let p = |n| ubuntu_point_release("24.04", n);
        assert_eq!(
            p("ubuntu-24.04.3-preinstalled-server-arm64+raspi.img.xz"),
            Some(3)
        );
        assert_eq!(
            p("ubuntu-24.04-preinstalled-server-arm64+raspi.img.xz"),
            Some(0)
        );
        assert_eq!(
            p("ubuntu-24.04.10-preinstalled-server-arm64+raspi.img.xz"),
            Some(10)
        );
        assert_eq!(
            p("ubuntu-24.04.3-preinstalled-desktop-arm64+raspi.img.xz"),
            None
        );
        assert_eq!(p("ubuntu-24.04.3-live-server-arm64.iso"), None);
        assert_eq!(
            p("ubuntu-24.04.x-preinstalled-server-arm64+raspi.img.xz"),
            None
        );
        assert_eq!(
            p("ubuntu-22.04.5-preinstalled-server-arm64+raspi.img.xz"),
            None
        );
    }
}
