//! Every difference between the base images we support, as named
//! predicates in one place (STYLE rule 13). Renderers ask these questions
//! instead of comparing OS names themselves. Most follow from the
//! profile's `os` and `board`; what only the image itself can tell (its
//! NTP client) is added with `with_ntp` once the build has looked.

use std::fmt;

use serde::Serialize;

use crate::profile::platform::{Board, OsRelease};
use crate::render::cmdline::CmdlineOp;

/// Where Ubuntu 26.04's A/B boot layout keeps the live kernel command line.
pub const AB_CMDLINE: &str = "current/cmdline.txt";

/// cloud-init's NoCloud seed directory in the root file system.
pub const SEED_DIR: &str = "/var/lib/cloud/seed/nocloud";

/// An NTP client a base image can ship, by the name cloud-init's
/// `ntp_client` uses for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum NtpClient {
    #[serde(rename = "systemd-timesyncd")]
    SystemdTimesyncd,
    #[serde(rename = "chrony")]
    Chrony,
    /// ntp or ntpsec (both are `ntpd`, which cloud-init's `ntp` means).
    #[serde(rename = "ntp")]
    Ntp,
}

impl NtpClient {
    pub fn name(self) -> &'static str {
        match self {
            Self::SystemdTimesyncd => "systemd-timesyncd",
            Self::Chrony => "chrony",
            Self::Ntp => "ntp",
        }
    }
}

impl fmt::Display for NtpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What is known about the base image's NTP client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NtpFound {
    /// The image was not looked at (`render` without the image at hand).
    #[default]
    Unknown,
    /// The image has no NTP client.
    Nothing,
    Client(NtpClient),
}

/// The quirks of one node's base image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quirks {
    os: OsRelease,
    board: Board,
    ntp: NtpFound,
}

impl Quirks {
    pub fn new(os: OsRelease, board: &Board) -> Self {
        Self {
            os,
            board: board.clone(),
            ntp: NtpFound::Unknown,
        }
    }

    /// These quirks for an image whose NTP client is `ntp`.
    pub fn with_ntp(mut self, ntp: NtpFound) -> Self {
        self.ntp = ntp;
        self
    }

    /// The image's NTP client, as far as it is known.
    pub fn ntp(&self) -> NtpFound {
        self.ntp
    }

    /// Ubuntu raspi images configure themselves with cloud-init from the
    /// NoCloud seed on `system-boot`; Armbian images have no cloud-init, so
    /// everything is written into the root file system directly.
    pub fn uses_cloud_init(&self) -> bool {
        matches!(
            self.os,
            OsRelease::Ubuntu2204 | OsRelease::Ubuntu2404 | OsRelease::Ubuntu2604
        )
    }

    /// Where the kernel command line lives on the boot FAT, if we edit it.
    /// Ubuntu 22.04/24.04 keep it at the root; 26.04 boots from an A/B
    /// layout whose live half is `current/` (nobodd's howto-resolute).
    pub fn cmdline_path(&self) -> Option<&'static str> {
        if !(self.uses_cloud_init() && self.board.is_raspberry_pi()) {
            return None;
        }
        Some(match self.os {
            OsRelease::Ubuntu2604 => AB_CMDLINE,
            _ => "cmdline.txt",
        })
    }

    /// `ds=nocloud` makes ds-identify pick NoCloud even if the image lost
    /// its `datasource_list` drop-in; the seed itself is found by the
    /// `system-boot` label the image's cloud-init is configured with.
    /// Where the NoCloud seed goes in the root file system: a cloud image
    /// (`board: vm`) has no boot FAT for it, and cloud-init's ds-identify
    /// looks in this directory. `None`: on the boot FAT.
    pub fn seed_dir(&self) -> Option<&'static str> {
        (self.uses_cloud_init() && self.board.is_vm()).then_some(SEED_DIR)
    }

    pub fn cmdline_ops(&self) -> Vec<CmdlineOp> {
        vec![CmdlineOp::Set {
            key: "ds".to_owned(),
            value: "nocloud".to_owned(),
        }]
    }

    /// Where a k3s node's kernel command line gets the memory cgroup
    /// tokens: the Pi firmware's `cmdline.txt` (Ubuntu's, or Armbian
    /// bcm2711's on its `RPICFG` FAT, which already carries them). Other
    /// Armbian boards boot a mainline kernel through U-Boot whose cgroup v2
    /// has the memory controller on by default: nothing to add.
    pub fn k3s_cmdline_path(&self) -> Option<&'static str> {
        if !self.board.is_raspberry_pi() {
            return None;
        }
        self.cmdline_path().or(Some("cmdline.txt"))
    }

    /// The Raspberry Pi kernel keeps the memory cgroup off unless asked
    /// (docs.k3s.io, Requirements, "Raspberry Pi").
    pub fn k3s_cmdline_ops(&self) -> Vec<CmdlineOp> {
        ["cgroup_memory=1", "cgroup_enable=memory"]
            .into_iter()
            .map(|t| CmdlineOp::Add {
                token: t.to_owned(),
            })
            .collect()
    }

    /// Ubuntu's raspi kernels since 21.10 keep vxlan (flannel's default
    /// backend) in linux-modules-extra, which the images do not ship.
    pub fn k3s_needs_vxlan_package(&self) -> bool {
        self.uses_cloud_init() && self.board.is_raspberry_pi()
    }

    /// netplan learned `regulatory-domain` in 0.105; 22.04 shipped 0.104.
    pub fn netplan_has_regulatory_domain(&self) -> bool {
        !matches!(self.os, OsRelease::Ubuntu2204)
    }

    /// Armbian images ship without snapd.
    pub fn needs_snapd_install(&self) -> bool {
        matches!(self.os, OsRelease::Armbian)
    }

    /// Files whose presence would fight our configuration on first boot:
    /// Armbian's first-login wizard marker (it would ask for a new root
    /// password and user on the console) and its DHCP-on-every-NIC netplan.
    pub fn files_to_remove(&self) -> &'static [&'static str] {
        match self.os {
            OsRelease::Armbian => &[
                "/root/.not_logged_in_yet",
                "/etc/netplan/10-dhcp-all-interfaces.yaml",
            ],
            _ => &[],
        }
    }

    /// Accounts whose shipped password must be locked: Armbian's root has
    /// the well-known password 1234, normally changed by the wizard we skip.
    pub fn accounts_to_lock(&self) -> &'static [&'static str] {
        match self.os {
            OsRelease::Armbian => &["root"],
            _ => &[],
        }
    }

    /// Home directories: Ubuntu ≥ 21.04 and Armbian's noble base make them
    /// private (0750).
    pub fn home_mode(&self) -> u32 {
        0o750
    }

    /// Our netplan file when we write it ourselves (sorted after Armbian's
    /// `00-`/`10-` defaults so its `renderer` wins).
    pub fn netplan_path(&self) -> &'static str {
        "/etc/netplan/30-homelab.yaml"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ubuntu_uses_cloud_init_and_edits_cmdline() {
        let q = Quirks::new(OsRelease::Ubuntu2404, &Board::RaspberryPi4);
        assert!(q.uses_cloud_init());
        assert_eq!(q.cmdline_path(), Some("cmdline.txt"));
        assert!(q.files_to_remove().is_empty());
    }

    #[test]
    fn ubuntu_26_04_edits_the_cmdline_of_its_live_boot_half() {
        let q = Quirks::new(OsRelease::Ubuntu2604, &Board::RaspberryPi5);
        assert!(q.uses_cloud_init());
        assert_eq!(q.cmdline_path(), Some("current/cmdline.txt"));
    }

    #[test]
    fn armbian_writes_files_itself() {
        let q = Quirks::new(OsRelease::Armbian, &Board::Armbian("rock-5b".into()));
        assert!(!q.uses_cloud_init());
        assert_eq!(q.cmdline_path(), None);
        assert!(q.needs_snapd_install());
        assert!(q.files_to_remove().contains(&"/root/.not_logged_in_yet"));
    }
}
