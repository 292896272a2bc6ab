//! The FAT boot sector and BIOS parameter block (Microsoft FAT spec,
//! "fatgen103"), parsed and checked before the fatfs crate sees the volume,
//! so that a damaged boot sector is a clear error with the field named
//! rather than a panic or a nonsense geometry deep inside fatfs.

use std::fmt;

use serde::Serialize;

use crate::io::bytes::{le_u16, le_u32, padded_str};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FatType {
    #[serde(rename = "FAT12")]
    Fat12,
    #[serde(rename = "FAT16")]
    Fat16,
    #[serde(rename = "FAT32")]
    Fat32,
}

impl fmt::Display for FatType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FatType::Fat12 => "FAT12",
            FatType::Fat16 => "FAT16",
            FatType::Fat32 => "FAT32",
        })
    }
}

/// A boot-sector field that holds an impossible value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("FAT boot sector is corrupt: {field} is {value} ({why})")]
pub struct BpbError {
    pub field: &'static str,
    pub value: u64,
    pub why: &'static str,
}

/// The boot-sector fields we rely on, and the geometry they imply.
#[derive(Debug, Clone)]
pub struct Bpb {
    pub bytes_per_sector: u16,
    pub sectors_per_cluster: u8,
    pub fat_type: FatType,
    pub total_sectors: u32,
    pub volume_id: u32,
    /// The label copy in the boot sector (the root directory may hold another).
    pub boot_label: String,
    /// Sectors before the first FAT (boot sector, FSInfo, backup).
    pub reserved_sectors: u16,
    /// How many FATs (copies of the table) follow the reserved area.
    pub fats: u8,
    /// Sectors per FAT.
    pub fat_size: u32,
    /// The FAT that is read: 0 unless FAT32 mirroring is switched off.
    pub active_fat: u8,
    /// Entries of the fixed FAT12/16 root directory (0 on FAT32).
    pub root_entries: u16,
    /// First cluster of the FAT32 root directory (0 on FAT12/16).
    pub root_cluster: u32,
    /// Sector of the FAT32 FSInfo structure (0 on FAT12/16).
    pub fs_info_sector: u16,
    /// Data clusters: valid cluster numbers are 2 ..= cluster_count + 1.
    pub cluster_count: u32,
    /// First sector of cluster 2.
    pub first_data_sector: u32,
}

impl Bpb {
    /// True when `sector` looks like a FAT boot sector at all: boot
    /// signature plus an x86 jump. Whether its fields make sense is
    /// `parse`'s job.
    pub fn looks_like_fat(sector: &[u8]) -> bool {
        sector.len() >= 512
            && sector[510] == 0x55
            && sector[511] == 0xAA
            && (sector[0] == 0xEB || sector[0] == 0xE9)
    }

    /// Why `sector` is not a FAT boot sector, for a partition whose type
    /// says it should be one; `None` when `looks_like_fat` accepts it.
    pub fn why_not_fat(sector: &[u8]) -> Option<String> {
        if sector.len() < 512 {
            return Some(format!(
                "the partition is {} bytes, shorter than a boot sector",
                sector.len()
            ));
        }
        if sector[510] != 0x55 || sector[511] != 0xAA {
            return Some(format!(
                "its boot sector has no signature: bytes 510-511 are {:02x} {:02x}, not 55 aa",
                sector[510], sector[511]
            ));
        }
        if sector[0] != 0xEB && sector[0] != 0xE9 {
            return Some(format!(
                "its boot sector starts with {:02x}, not the jump instruction eb or e9",
                sector[0]
            ));
        }
        None
    }

    /// Parses and checks the first 512 bytes of a volume that is
    /// `volume_len` bytes long: every field the geometry depends on, and
    /// every combination fatfs would refuse or misread (its own checks
    /// give messages without the field; some of its reads assume what we
    /// check here, such as a FAT32 root cluster of 2 or more).
    pub fn parse(sector: &[u8], volume_len: u64) -> Result<Bpb, BpbError> {
        let bad = |field, value: u64, why| Err(BpbError { field, value, why });
        let bytes_per_sector = le_u16(sector, 11);
        if !matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096) {
            return bad(
                "BPB_BytsPerSec",
                bytes_per_sector.into(),
                "must be 512, 1024, 2048 or 4096",
            );
        }
        let sectors_per_cluster = sector[13];
        if !sectors_per_cluster.is_power_of_two() {
            return bad(
                "BPB_SecPerClus",
                sectors_per_cluster.into(),
                "must be a power of two from 1 to 128",
            );
        }
        let reserved = le_u16(sector, 14);
        if reserved == 0 {
            return bad("BPB_RsvdSecCnt", 0, "must be at least 1");
        }
        let fats = sector[16];
        if fats == 0 {
            return bad("BPB_NumFATs", 0, "must be at least 1");
        }
        let root_entries = le_u16(sector, 17);
        let total16 = le_u16(sector, 19);
        let fat_size16 = le_u16(sector, 22);
        let total32 = le_u32(sector, 32);
        let fat_size32 = le_u32(sector, 36);
        let total_sectors = match (total16, total32) {
            (0, 0) => return bad("BPB_TotSec32", 0, "the volume has no sectors"),
            (0, t) => t,
            (t, 0) => u32::from(t),
            (t, _) => {
                return bad(
                    "BPB_TotSec16",
                    t.into(),
                    "must be 0 when BPB_TotSec32 holds the size",
                );
            }
        };
        let fat_size = if fat_size16 != 0 {
            u32::from(fat_size16)
        } else {
            fat_size32
        };
        if fat_size == 0 {
            return bad("BPB_FATSz32", 0, "the FAT has no sectors");
        }
        let bps = u64::from(bytes_per_sector);
        let size = u64::from(total_sectors) * bps;
        if size > volume_len {
            return bad(
                "BPB_TotSec32",
                total_sectors.into(),
                "the filesystem is larger than its partition",
            );
        }
        let root_dir_sectors = (u64::from(root_entries) * 32).div_ceil(bps);
        let meta = u64::from(reserved) + u64::from(fats) * u64::from(fat_size) + root_dir_sectors;
        let Some(data_sectors) = u64::from(total_sectors)
            .checked_sub(meta)
            .filter(|&d| d > 0)
        else {
            return bad(
                "BPB_FATSz32",
                fat_size.into(),
                "reserved sectors, FATs and root directory leave no room for data",
            );
        };
        let clusters = data_sectors / u64::from(sectors_per_cluster);
        if clusters == 0 {
            return bad(
                "BPB_SecPerClus",
                sectors_per_cluster.into(),
                "the data area is smaller than one cluster",
            );
        }
        // meta < total_sectors, a u32, so the first data sector fits too.
        let first_data_sector = u32::try_from(meta).unwrap_or(u32::MAX);
        let fat_type = match clusters {
            0..4085 => FatType::Fat12,
            4085..65525 => FatType::Fat16,
            _ => FatType::Fat32,
        };
        // fatfs tells FAT32 from FAT12/16 by BPB_FATSz16 == 0, the spec by
        // the cluster count: both must agree or fatfs reads the wrong layout.
        if (fat_size16 == 0) != (fat_type == FatType::Fat32) {
            return bad(
                "BPB_FATSz16",
                fat_size16.into(),
                if fat_size16 == 0 {
                    "0 marks FAT32, but the cluster count makes the volume FAT12/16"
                } else {
                    "must be 0 on FAT32 (the cluster count makes the volume FAT32)"
                },
            );
        }
        let bits: u64 = match fat_type {
            FatType::Fat12 => 12,
            FatType::Fat16 => 16,
            FatType::Fat32 => 32,
        };
        if u64::from(fat_size) * bps * 8 / bits < clusters + 2 {
            return bad(
                "BPB_FATSz32",
                fat_size.into(),
                "the FAT is too small to hold an entry for every cluster",
            );
        }
        let mut active_fat = 0;
        let mut root_cluster = 0;
        let mut fs_info_sector = 0;
        match fat_type {
            FatType::Fat32 => {
                if root_entries != 0 {
                    return bad("BPB_RootEntCnt", root_entries.into(), "must be 0 on FAT32");
                }
                if total16 != 0 {
                    return bad("BPB_TotSec16", total16.into(), "must be 0 on FAT32");
                }
                if clusters > 0x0FFF_FFF4 {
                    return bad(
                        "BPB_TotSec32",
                        total_sectors.into(),
                        "more clusters than FAT32 can number",
                    );
                }
                let version = le_u16(sector, 42);
                if version != 0 {
                    return bad("BPB_FSVer", version.into(), "only version 0.0 exists");
                }
                let ext_flags = le_u16(sector, 40);
                if ext_flags & 0x80 != 0 {
                    // Mirroring off: only the FAT named in bits 0-3 is used.
                    // The mask keeps four bits, so the narrowing is exact.
                    active_fat = (ext_flags & 0x0F) as u8;
                    if active_fat >= fats {
                        return bad(
                            "BPB_ExtFlags",
                            ext_flags.into(),
                            "names an active FAT the volume does not have",
                        );
                    }
                }
                root_cluster = le_u32(sector, 44);
                // clusters <= 0x0FFF_FFF4 (checked above): + 2 cannot overflow.
                if !(2..clusters + 2).contains(&u64::from(root_cluster)) {
                    return bad(
                        "BPB_RootClus",
                        root_cluster.into(),
                        "the root directory must start at a data cluster of the volume, \
                         numbered 2 or above",
                    );
                }
                fs_info_sector = le_u16(sector, 48);
                if fs_info_sector == 0 || fs_info_sector >= reserved {
                    return bad(
                        "BPB_FSInfo",
                        fs_info_sector.into(),
                        "the FSInfo sector must lie in the reserved area, after the boot sector",
                    );
                }
                let backup = le_u16(sector, 50);
                if backup >= reserved {
                    return bad(
                        "BPB_BkBootSec",
                        backup.into(),
                        "the backup boot sector must lie in the reserved area",
                    );
                }
            }
            FatType::Fat12 | FatType::Fat16 => {
                if root_entries == 0 {
                    return bad(
                        "BPB_RootEntCnt",
                        0,
                        "FAT12/16 needs room for a root directory",
                    );
                }
            }
        }
        let (volume_id, label_off) = match fat_type {
            FatType::Fat32 => (le_u32(sector, 67), 71),
            _ => (le_u32(sector, 39), 43),
        };
        Ok(Bpb {
            bytes_per_sector,
            sectors_per_cluster,
            fat_type,
            total_sectors,
            volume_id,
            boot_label: padded_str(&sector[label_off..label_off + 11]),
            reserved_sectors: reserved,
            fats,
            fat_size,
            active_fat,
            root_entries,
            root_cluster,
            fs_info_sector,
            // clusters <= total_sectors, a u32.
            cluster_count: u32::try_from(clusters).unwrap_or(u32::MAX),
            first_data_sector,
        })
    }

    /// Bytes per cluster (at most 128 × 4096, so it fits).
    pub fn cluster_size(&self) -> u64 {
        u64::from(self.bytes_per_sector) * u64::from(self.sectors_per_cluster)
    }

    /// Byte offset of the FAT that is read (the first, unless FAT32
    /// mirroring is off).
    pub fn fat_offset(&self) -> u64 {
        let sector = u64::from(self.reserved_sectors)
            + u64::from(self.active_fat) * u64::from(self.fat_size);
        sector * u64::from(self.bytes_per_sector)
    }

    /// Byte offset and length of the fixed FAT12/16 root directory: its
    /// entries rounded up to whole sectors, as fatfs reads it (and as the
    /// data area starts after it).
    pub fn root_dir_region(&self) -> (u64, u64) {
        let bps = u64::from(self.bytes_per_sector);
        let start =
            u64::from(self.reserved_sectors) + u64::from(self.fats) * u64::from(self.fat_size);
        let len = (u64::from(self.root_entries) * 32).div_ceil(bps) * bps;
        (start * bps, len)
    }

    /// Byte offset of data cluster `cluster` (2 ..= cluster_count + 1).
    pub fn cluster_offset(&self, cluster: u32) -> u64 {
        let bps = u64::from(self.bytes_per_sector);
        (u64::from(self.first_data_sector)
            + u64::from(cluster.saturating_sub(2)) * u64::from(self.sectors_per_cluster))
            * bps
    }

    /// Whether `cluster` numbers a data cluster of this volume.
    pub fn is_data_cluster(&self, cluster: u32) -> bool {
        cluster >= 2 && u64::from(cluster) < u64::from(self.cluster_count) + 2
    }

    /// The volume serial as blkid and Linux print it: `ABCD-1234`.
    pub fn uuid(&self) -> String {
        format!(
            "{:04X}-{:04X}",
            self.volume_id >> 16,
            self.volume_id & 0xFFFF
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn why_not_fat_names_the_missing_signature_or_jump() {
        let mut sector = [0u8; 512];
        sector[0] = 0xEB;
        sector[510] = 0x55;
        sector[511] = 0xAA;
        assert!(Bpb::looks_like_fat(&sector));
        assert_eq!(Bpb::why_not_fat(&sector), None);
        sector[511] = 0x00;
        assert!(
            Bpb::why_not_fat(&sector)
                .unwrap()
                .contains("bytes 510-511 are 55 00")
        );
        sector[511] = 0xAA;
        sector[0] = 0x00;
        assert!(
            Bpb::why_not_fat(&sector)
                .unwrap()
                .contains("starts with 00")
        );
        assert!(
            Bpb::why_not_fat(&sector[..100])
                .unwrap()
                .contains("100 bytes")
        );
    }

    /// The boot sector of a fresh fatfs-made volume of `fat_type`.
    fn sector(fat_type: fatfs::FatType, mib: u64) -> (Vec<u8>, u64) {
        let len = mib << 20;
        let mut disk = std::io::Cursor::new(vec![0u8; len as usize]);
        fatfs::format_volume(
            &mut disk,
            fatfs::FormatVolumeOptions::new()
                .fat_type(fat_type)
                .bytes_per_cluster(512),
        )
        .unwrap();
        (disk.into_inner()[..512].to_vec(), len)
    }

    fn refused(s: &[u8], len: u64) -> String {
        Bpb::parse(s, len).unwrap_err().to_string()
    }

    #[test]
    fn geometry_of_a_fat32_volume() {
        let (s, len) = sector(fatfs::FatType::Fat32, 40);
        let b = Bpb::parse(&s, len).unwrap();
        assert_eq!(b.fat_type, FatType::Fat32);
        assert_eq!(b.root_cluster, 2);
        assert!(b.is_data_cluster(2) && b.is_data_cluster(b.cluster_count + 1));
        assert!(!b.is_data_cluster(1) && !b.is_data_cluster(b.cluster_count + 2));
        assert_eq!(b.cluster_offset(2), u64::from(b.first_data_sector) * 512);
    }

    #[test]
    fn fat32_fields_fatfs_would_misread_are_refused_by_name() {
        let (s, len) = sector(fatfs::FatType::Fat32, 40);
        let with = |off: usize, bytes: &[u8]| {
            let mut t = s.clone();
            t[off..off + bytes.len()].copy_from_slice(bytes);
            t
        };
        let b = Bpb::parse(&s, len).unwrap();
        for (patched, want) in [
            (with(44, &0u32.to_le_bytes()), "BPB_RootClus is 0"),
            (with(44, &1u32.to_le_bytes()), "BPB_RootClus is 1"),
            (
                with(44, &(b.cluster_count + 2).to_le_bytes()),
                "BPB_RootClus is",
            ),
            (with(36, &1u32.to_le_bytes()), "the FAT is too small"),
            (with(22, &7u16.to_le_bytes()), "BPB_FATSz16 is 7"),
            (with(19, &7u16.to_le_bytes()), "BPB_TotSec16 is 7"),
            (with(42, &1u16.to_le_bytes()), "BPB_FSVer is 1"),
            (with(48, &0u16.to_le_bytes()), "BPB_FSInfo is 0"),
            (with(50, &b.reserved_sectors.to_le_bytes()), "BPB_BkBootSec"),
            (with(40, &0x83u16.to_le_bytes()), "BPB_ExtFlags is 131"),
        ] {
            let e = refused(&patched, len);
            assert!(e.contains(want), "{want}: {e}");
        }
        // Mirroring off with FAT #2 active: read from the second FAT.
        let two = Bpb::parse(&with(40, &0x81u16.to_le_bytes()), len).unwrap();
        assert_eq!(
            two.fat_offset(),
            b.fat_offset() + u64::from(b.fat_size) * 512
        );
    }

    #[test]
    fn fat12_and_16_need_a_root_directory_and_no_fat32_marker() {
        for (t, mib) in [(fatfs::FatType::Fat12, 1), (fatfs::FatType::Fat16, 8)] {
            let (s, len) = sector(t, mib);
            Bpb::parse(&s, len).unwrap();
            let mut no_root = s.clone();
            no_root[17..19].copy_from_slice(&0u16.to_le_bytes());
            assert!(refused(&no_root, len).contains("BPB_RootEntCnt is 0"));
            let mut marker = s.clone();
            marker[22..24].copy_from_slice(&0u16.to_le_bytes());
            marker[36..40].copy_from_slice(&8u32.to_le_bytes());
            assert!(refused(&marker, len).contains("0 marks FAT32"), "{t:?}");
        }
    }
}
