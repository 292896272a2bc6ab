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

/// The boot-sector fields we rely on.
#[derive(Debug, Clone)]
pub struct Bpb {
    pub bytes_per_sector: u16,
    pub sectors_per_cluster: u8,
    pub fat_type: FatType,
    pub total_sectors: u32,
    /// BPB_RsvdSecCnt: sectors before the first FAT (boot sector, FSInfo,
    /// backup boot sector).
    pub reserved_sectors: u16,
    /// BPB_NumFATs.
    pub num_fats: u8,
    /// Sectors per FAT (BPB_FATSz16, or BPB_FATSz32 when that is 0).
    pub fat_sectors: u32,
    /// BPB_RootEntCnt: 32-byte entries of the FAT12/16 root directory.
    pub root_entries: u16,
    pub volume_id: u32,
    /// The label copy in the boot sector (the root directory may hold another).
    pub boot_label: String,
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
    /// `volume_len` bytes long.
    pub fn parse(sector: &[u8], volume_len: u64) -> Result<Bpb, BpbError> {
        let bad = |field, value: u64, why| BpbError { field, value, why };
        let bytes_per_sector = le_u16(sector, 11);
        if !matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096) {
            return Err(bad(
                "BPB_BytsPerSec",
                bytes_per_sector.into(),
                "must be 512, 1024, 2048 or 4096",
            ));
        }
        let sectors_per_cluster = sector[13];
        if !sectors_per_cluster.is_power_of_two() {
            return Err(bad(
                "BPB_SecPerClus",
                sectors_per_cluster.into(),
                "must be a power of two from 1 to 128",
            ));
        }
        let reserved = le_u16(sector, 14);
        if reserved == 0 {
            return Err(bad("BPB_RsvdSecCnt", 0, "must be at least 1"));
        }
        let fats = sector[16];
        if fats == 0 {
            return Err(bad("BPB_NumFATs", 0, "must be at least 1"));
        }
        let root_entries = le_u16(sector, 17);
        let total16 = le_u16(sector, 19);
        let fat_size16 = le_u16(sector, 22);
        let total32 = le_u32(sector, 32);
        let fat_size32 = le_u32(sector, 36);
        let total_sectors = if total16 != 0 {
            u32::from(total16)
        } else {
            total32
        };
        if total_sectors == 0 {
            return Err(bad("BPB_TotSec32", 0, "the volume has no sectors"));
        }
        let fat_size = if fat_size16 != 0 {
            u32::from(fat_size16)
        } else {
            fat_size32
        };
        if fat_size == 0 {
            return Err(bad("BPB_FATSz32", 0, "the FAT has no sectors"));
        }
        let bps = u64::from(bytes_per_sector);
        let size = u64::from(total_sectors) * bps;
        if size > volume_len {
            return Err(bad(
                "BPB_TotSec32",
                total_sectors.into(),
                "the filesystem is larger than its partition",
            ));
        }
        let root_dir_sectors = (u64::from(root_entries) * 32).div_ceil(bps);
        let meta = u64::from(reserved) + u64::from(fats) * u64::from(fat_size) + root_dir_sectors;
        let Some(data_sectors) = u64::from(total_sectors)
            .checked_sub(meta)
            .filter(|&d| d > 0)
        else {
            return Err(bad(
                "BPB_FATSz32",
                fat_size.into(),
                "reserved sectors, FATs and root directory leave no room for data",
            ));
        };
        let clusters = data_sectors / u64::from(sectors_per_cluster);
        let fat_type = match clusters {
            0..4085 => FatType::Fat12,
            4085..65525 => FatType::Fat16,
            _ => FatType::Fat32,
        };
        if fat_type == FatType::Fat32 && root_entries != 0 {
            return Err(bad(
                "BPB_RootEntCnt",
                root_entries.into(),
                "must be 0 on FAT32",
            ));
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
            reserved_sectors: reserved,
            num_fats: fats,
            fat_sectors: fat_size,
            root_entries,
            volume_id,
            boot_label: padded_str(&sector[label_off..label_off + 11]),
        })
    }

    /// First sector of the data region (cluster 2): after the reserved
    /// sectors, the FATs and the FAT12/16 root directory. `parse` checked
    /// that it lies inside the volume.
    pub fn first_data_sector(&self) -> u64 {
        let bps = u64::from(self.bytes_per_sector);
        u64::from(self.reserved_sectors)
            + u64::from(self.num_fats) * u64::from(self.fat_sectors)
            + (u64::from(self.root_entries) * 32).div_ceil(bps)
    }

    /// Clusters in the data region (numbered 2 to `cluster_count() + 1`).
    pub fn cluster_count(&self) -> u64 {
        (u64::from(self.total_sectors) - self.first_data_sector())
            / u64::from(self.sectors_per_cluster)
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
    use super::Bpb;

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
}
