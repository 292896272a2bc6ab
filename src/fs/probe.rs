//! Recognising what filesystem a partition holds, as blkid does: FAT by its
//! boot sector, ext2/3/4 by the superblock magic. Recognised but damaged
//! filesystems are errors; unrecognised bytes are `None`.

use std::fmt;

use serde::Serialize;

use super::FsError;
use super::ext4::{self, ExtVersion};
use super::fat::{Bpb, FatType, FatVolume};
use crate::io::PartitionWindow;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsType {
    Fat(FatType),
    Ext(ExtVersion),
}

impl FsType {
    /// blkid's TYPE: `vfat`, `ext4`, …
    pub fn blkid_type(&self) -> &'static str {
        match self {
            FsType::Fat(_) => "vfat",
            FsType::Ext(ExtVersion::Ext2) => "ext2",
            FsType::Ext(ExtVersion::Ext3) => "ext3",
            FsType::Ext(ExtVersion::Ext4) => "ext4",
        }
    }
}

impl fmt::Display for FsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsType::Fat(t) => write!(f, "vfat ({t})"),
            other => f.write_str(other.blkid_type()),
        }
    }
}

impl Serialize for FsType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.blkid_type())
    }
}

/// What blkid would say about a partition.
#[derive(Debug, Clone, Serialize)]
pub struct FsInfo {
    #[serde(rename = "type")]
    pub fs_type: FsType,
    /// FAT12/FAT16/FAT32 for FAT; absent for ext.
    pub version: Option<FatType>,
    pub label: Option<String>,
    pub uuid: String,
}

/// Identifies the filesystem in a partition whose table type is
/// `ptype`: like `probe`, but a partition typed FAT (`fat_typed`) that holds
/// nothing we recognise is damaged, and says why, rather than empty.
pub fn probe_typed(
    window: &PartitionWindow,
    fat_typed: bool,
    ptype: &str,
) -> Result<Option<FsInfo>, FsError> {
    let found = probe(window)?;
    if found.is_some() || !fat_typed {
        return Ok(found);
    }
    let len = usize::try_from(window.len().0.min(512)).unwrap_or(512);
    let mut sector = vec![0u8; len];
    window
        .read_exact_at(0, &mut sector)
        .map_err(|e| FsError::io("/", e))?;
    let why = Bpb::why_not_fat(&sector)
        .unwrap_or_else(|| "its boot sector was not recognised".to_owned());
    Err(FsError::DamagedFat {
        ptype: ptype.to_owned(),
        why,
    })
}

/// Identifies the filesystem in `window`, if any.
pub fn probe(window: &PartitionWindow) -> Result<Option<FsInfo>, FsError> {
    let len = window.len().0;
    if len >= 512 {
        let mut sector = [0u8; 512];
        window
            .read_exact_at(0, &mut sector)
            .map_err(|e| FsError::io("/", e))?;
        if Bpb::looks_like_fat(&sector) {
            let bpb = Bpb::parse(&sector, len)?;
            // The label may live in the root directory, which needs fatfs
            // (and a check of the root directory's chain, nothing more).
            let label = FatVolume::probe_label(window.clone())?;
            return Ok(Some(FsInfo {
                fs_type: FsType::Fat(bpb.fat_type),
                version: Some(bpb.fat_type),
                label,
                uuid: bpb.uuid(),
            }));
        }
    }
    let sb_end = ext4::superblock::SUPERBLOCK_OFFSET + ext4::superblock::SUPERBLOCK_SIZE as u64; // as: const 1024
    if len >= sb_end {
        let mut raw = [0u8; ext4::superblock::SUPERBLOCK_SIZE];
        window
            .read_exact_at(ext4::superblock::SUPERBLOCK_OFFSET, &mut raw)
            .map_err(|e| FsError::io("/", e))?;
        if ext4::Superblock::has_magic(&raw) {
            let sb = ext4::Superblock::parse(&raw, len)?;
            return Ok(Some(FsInfo {
                fs_type: FsType::Ext(sb.version()),
                version: None,
                label: (!sb.s_volume_name.is_empty()).then(|| sb.s_volume_name.clone()),
                uuid: sb.uuid(),
            }));
        }
    }
    Ok(None)
}
