//! Recognising the image layouts we build for, from the partition table and
//! what each partition holds:
//!
//! - Ubuntu raspi: MBR, FAT `system-boot` + ext4 `writable`;
//! - Armbian Raspberry Pi: MBR, FAT `RPICFG` + ext4 root;
//! - Armbian single root: GPT or MBR, one ext4 with `/boot` inside and the
//!   bootloader in the raw area before it (never to be touched);
//! - Ubuntu cloud image (for virtual machines): GPT, ext4 `cloudimg-rootfs`,
//!   an EFI system partition, a BIOS boot partition, and since 24.04 a
//!   separate ext4 `/boot` labelled `BOOT`. The cloud-init seed goes into
//!   the root file system (`/var/lib/cloud/seed/nocloud/`), not a FAT.

use std::fmt;

use serde::Serialize;

use super::{Partition, PartitionTable};
use crate::fs::{FsInfo, FsType};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LayoutKind {
    UbuntuRaspi,
    ArmbianRpi,
    ArmbianSingleRoot,
    UbuntuCloud,
}

impl fmt::Display for LayoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LayoutKind::UbuntuRaspi => "Ubuntu raspi (FAT system-boot + ext4 writable)",
            LayoutKind::ArmbianRpi => "Armbian Raspberry Pi (FAT RPICFG + ext4 root)",
            LayoutKind::ArmbianSingleRoot => "Armbian single root (ext4 with /boot inside)",
            LayoutKind::UbuntuCloud => "Ubuntu cloud image (GPT, ext4 cloudimg-rootfs)",
        })
    }
}

/// A recognised layout: which partition is which.
#[derive(Debug, Clone, Serialize)]
pub struct Layout {
    pub kind: LayoutKind,
    /// The FAT partition holding firmware and the cloud-init seed, if any.
    pub boot: Option<u32>,
    pub root: u32,
    /// Bytes before the first partition: bootloader territory on Armbian
    /// single-root images (U-Boot, idbloader) that edits must never touch.
    pub raw_area_bytes: u64,
}

/// Why an image matched none of the layouts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("no ext4 partition (every layout we build needs an ext4 root)")]
    NoExt4,
    #[error(
        "no FAT boot partition labelled system-boot or RPICFG, no ext4 labelled \
         cloudimg-rootfs, and not a single-root image (partitions with filesystems: {found})"
    )]
    Unrecognised { found: String },
    #[error("a FAT partition labelled {label:?} but no ext4 partition after it to be the root")]
    BootWithoutRoot { label: String },
    #[error("partition {number} is damaged, so the layout cannot be told: {why}")]
    Damaged { number: u32, why: String },
}

/// Labels of FAT boot partitions we know, matched case-insensitively as
/// cloud-init and the firmware do.
const UBUNTU_BOOT_LABEL: &str = "system-boot";
const ARMBIAN_RPI_BOOT_LABEL: &str = "RPICFG";
/// The root file system's label in Ubuntu's cloud images.
const CLOUD_ROOT_LABEL: &str = "cloudimg-rootfs";

/// Classifies the image from its table and per-partition filesystems.
pub fn detect(
    table: &PartitionTable,
    filesystems: &[(&Partition, Option<&FsInfo>)],
) -> Result<Layout, LayoutError> {
    let is_fat_labelled = |info: Option<&FsInfo>, want: &str| {
        info.is_some_and(|i| {
            matches!(i.fs_type, FsType::Fat(_))
                && i.label
                    .as_deref()
                    .is_some_and(|l| l.eq_ignore_ascii_case(want))
        })
    };
    let ext: Vec<&Partition> = filesystems
        .iter()
        .filter(|(_, i)| i.is_some_and(|i| matches!(i.fs_type, FsType::Ext(_))))
        .map(|(p, _)| *p)
        .collect();
    let raw_area_bytes = table
        .data_partitions()
        .map(|p| p.range.start().0)
        .min()
        .unwrap_or(0);

    for (label, kind) in [
        (UBUNTU_BOOT_LABEL, LayoutKind::UbuntuRaspi),
        (ARMBIAN_RPI_BOOT_LABEL, LayoutKind::ArmbianRpi),
    ] {
        let boot = filesystems
            .iter()
            .find(|(_, i)| is_fat_labelled(*i, label))
            .map(|(p, _)| *p);
        if let Some(boot) = boot {
            // The root is the first ext4 after the boot partition.
            let root = ext.iter().find(|p| p.start > boot.start).ok_or_else(|| {
                LayoutError::BootWithoutRoot {
                    label: label.to_string(),
                }
            })?;
            return Ok(Layout {
                kind,
                boot: Some(boot.number),
                root: root.number,
                raw_area_bytes,
            });
        }
    }
    // A cloud image: found by its root's label, whatever else it has (an
    // ESP, a BIOS boot partition, an ext4 /boot).
    let cloud_root = filesystems.iter().find(|(_, i)| {
        i.is_some_and(|i| {
            matches!(i.fs_type, FsType::Ext(_)) && i.label.as_deref() == Some(CLOUD_ROOT_LABEL)
        })
    });
    if let Some((root, _)) = cloud_root {
        return Ok(Layout {
            kind: LayoutKind::UbuntuCloud,
            boot: None,
            root: root.number,
            raw_area_bytes,
        });
    }
    let with_fs: Vec<(&Partition, &FsInfo)> = filesystems
        .iter()
        .filter_map(|(p, i)| i.map(|i| (*p, i)))
        .collect();
    match (ext.as_slice(), with_fs.len()) {
        ([], _) => Err(LayoutError::NoExt4),
        // Single root: the ext4 is the only filesystem on the disk.
        ([root], 1) => Ok(Layout {
            kind: LayoutKind::ArmbianSingleRoot,
            boot: None,
            root: root.number,
            raw_area_bytes,
        }),
        _ => Err(LayoutError::Unrecognised {
            found: with_fs
                .iter()
                .map(|(p, i)| match &i.label {
                    Some(l) => format!("{} ({} {l})", p.number, i.fs_type.blkid_type()),
                    None => format!("{} ({})", p.number, i.fs_type.blkid_type()),
                })
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}
