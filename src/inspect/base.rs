//! What a build must know about its base image before it renders or
//! writes anything: the layout, the OS (os-release, armbian-release),
//! cloud-init, the NTP client, where the kernel command line lives, and the
//! account files new users are allocated ids against. Read once, through
//! our own readers, with a size cap on every file.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};

use super::os::{self, CloudInit, OsInfo};
use crate::disk::{Layout, LayoutKind};
use crate::fs::{EntryKind, Filesystem};
use crate::image::Image;
use crate::render::quirks::{AB_CMDLINE, NtpClient};

/// The largest account or configuration file read from an image. Real
/// ones are a few kilobytes; this only stops a damaged image from making
/// us read gigabytes.
const MAX_SMALL_FILE: u64 = crate::fs::limits::PARSED_FILE;

/// The image's own account files, for allocating ids as `useradd` would.
#[derive(Debug, Clone, Default)]
pub struct AccountFiles {
    pub passwd: String,
    pub group: String,
    /// `/etc/login.defs`, when the image has one.
    pub login_defs: Option<String>,
}

/// What is known about one base image.
#[derive(Debug, Clone)]
pub struct BaseFacts {
    pub image: PathBuf,
    pub layout: Layout,
    pub os: Option<OsInfo>,
    pub cloud_init: CloudInit,
    pub ntp: Option<NtpClient>,
    /// The kernel command line file on the boot FAT (`cmdline.txt`, or
    /// `current/cmdline.txt` in Ubuntu 26.04's A/B layout), if any.
    pub cmdline: Option<&'static str>,
    pub accounts: AccountFiles,
    /// The CPU architecture of the image's programs (from the ELF header
    /// of `/usr/bin/env`), when it can tell.
    pub arch: Option<crate::profile::platform::Arch>,
}

impl BaseFacts {
    /// Reads the facts of `image`; an image of no layout we build from is
    /// an error saying why.
    pub fn read(image: &Image) -> Result<BaseFacts> {
        let shown = image.path().display().to_string();
        // A damaged filesystem would drop out of layout detection and then
        // be blamed on the layout: say what broke, as `build::patch` does.
        image.check_filesystems()?;
        let layout = image
            .layout()
            .with_context(|| format!("{shown}: not an image layout we build from"))?;
        let (_, root) = image.filesystem(&layout.root.to_string())?;
        let in_root = |what: &str| format!("{shown}: partition {}: reading {what}", layout.root);
        let os = os::read_os(&root).with_context(|| in_root("the OS release"))?;
        let cloud_init = os::read_cloud_init(&root).with_context(|| in_root("cloud-init"))?;
        let ntp = super::ntp::detect(&root).with_context(|| in_root("the NTP client"))?;
        let text = |path: &str| small_text(&root, path).with_context(|| in_root(path));
        let accounts = AccountFiles {
            passwd: text("/etc/passwd")?.unwrap_or_default(),
            group: text("/etc/group")?.unwrap_or_default(),
            login_defs: text("/etc/login.defs")?,
        };
        let cmdline = match layout.boot {
            None => None,
            Some(n) => {
                let (_, fat) = image.filesystem(&n.to_string())?;
                ["cmdline.txt", AB_CMDLINE]
                    .into_iter()
                    .find(|p| fat.exists(p))
            }
        };
        let arch = elf_arch(&root).with_context(|| in_root("/usr/bin/env"))?;
        Ok(BaseFacts {
            image: image.path().to_owned(),
            layout,
            os,
            cloud_init,
            ntp,
            cmdline,
            accounts,
            arch,
        })
    }

    /// The Armbian release, when `/etc/armbian-release` says it is one.
    pub fn is_armbian(&self) -> bool {
        self.os.as_ref().is_some_and(|o| o.armbian.is_some())
    }

    /// One line naming the image as a person would: what it is, its
    /// layout, cloud-init, for messages that compare it with the profile.
    pub fn describe(&self) -> String {
        let what = match &self.os {
            None => "an image without /etc/os-release".to_owned(),
            Some(o) => {
                let release = format!(
                    "{} {}",
                    o.name.as_deref().unwrap_or("an unknown OS"),
                    o.version_id.as_deref().unwrap_or("")
                );
                let release = release.trim();
                match (&o.armbian, &o.version_codename) {
                    (Some(a), codename) => format!(
                        "Armbian {} for {} ({release}{} userland)",
                        a.version.as_deref().unwrap_or("?"),
                        a.board.as_deref().unwrap_or("?"),
                        codename
                            .as_deref()
                            .map_or_else(String::new, |c| format!(" {c}"))
                    ),
                    (None, Some(c)) => format!("{release} ({c})"),
                    (None, None) => release.to_owned(),
                }
            }
        };
        let layout = match self.layout.kind {
            LayoutKind::UbuntuRaspi => "Ubuntu raspi layout",
            LayoutKind::ArmbianRpi => "Armbian Raspberry Pi layout",
            LayoutKind::ArmbianSingleRoot => "Armbian single-root layout",
            LayoutKind::UbuntuCloud => "Ubuntu cloud-image layout",
        };
        let cmdline = self
            .cmdline
            .map_or_else(String::new, |c| format!(", kernel command line in {c}"));
        let ci = if self.cloud_init.installed {
            format!(
                "cloud-init {}",
                self.cloud_init
                    .version
                    .as_deref()
                    .unwrap_or("(version unknown)")
            )
        } else {
            "no cloud-init".to_owned()
        };
        format!("{what}: {layout}{cmdline}, {ci}")
    }
}

/// A small text file of `fs`, or `None` when it does not exist. Sizes are
/// checked before reading; one symlink is followed (Ubuntu's os-release).
fn small_text(fs: &Filesystem, path: &str) -> Result<Option<String>> {
    let mut at = path.to_owned();
    for _ in 0..2 {
        let st = match fs.stat(&at) {
            Ok(st) => st,
            Err(crate::fs::FsError::NotFound(_) | crate::fs::FsError::NotADirectory(_)) => {
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        match st.kind {
            EntryKind::File => {
                let bytes = fs.read_bounded(&at, MAX_SMALL_FILE)?;
                return String::from_utf8(bytes)
                    .map(Some)
                    .map_err(|_| anyhow!("{at} is not UTF-8 text"));
            }
            EntryKind::Symlink => {
                let target = st.link_target.unwrap_or_default();
                at = if target.starts_with('/') {
                    target
                } else {
                    let dir = at.rsplit_once('/').map_or("", |(d, _)| d);
                    format!("{dir}/{target}")
                };
            }
            _ => bail!("{at} is not a regular file"),
        }
    }
    bail!("{path}: too many symbolic links")
}

/// The architecture `/usr/bin/env` (coreutils, in every image) is built
/// for: the ELF header's `e_machine` (x86-64 62, AArch64 183). `None`
/// when there is no such file or it is not a 64-bit little-endian ELF of
/// either.
fn elf_arch(root: &Filesystem) -> Result<Option<crate::profile::platform::Arch>> {
    use crate::profile::platform::Arch;
    // coreutils' env is tens of KiB; a damaged inode cannot make us read more.
    let Some(elf) = root.read_bounded_if_exists("/usr/bin/env", 4 << 20)? else {
        return Ok(None);
    };
    if elf.len() < 20 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return Ok(None);
    }
    Ok(match u16::from_le_bytes([elf[18], elf[19]]) {
        62 => Some(Arch::Amd64),
        183 => Some(Arch::Arm64),
        _ => None,
    })
}
