//! What every partition table reader produces: the table kind, disk id,
//! sector size and partitions in absolute, checked byte ranges.

use std::fmt;

use serde::Serialize;

use super::DiskError;
use super::guid::Guid;
use crate::io::{ByteRange, Lba, SectorCount, SectorSize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TableKind {
    /// DOS/MBR, as sfdisk calls it "dos".
    Mbr,
    Gpt,
}

impl fmt::Display for TableKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TableKind::Mbr => "MBR (dos)",
            TableKind::Gpt => "GPT",
        })
    }
}

/// A partition's type as its table records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionType {
    Mbr(u8),
    Gpt(Guid),
}

impl PartitionType {
    /// The spelling sfdisk uses: lower-case hex without leading zeros for
    /// MBR (`c`, `83`), the upper-case GUID for GPT.
    pub fn sfdisk_id(&self) -> String {
        match self {
            PartitionType::Mbr(t) => format!("{t:x}"),
            PartitionType::Gpt(g) => g.to_string(),
        }
    }

    /// A short human name for the types we meet in Pi and Armbian images.
    pub fn description(&self) -> &'static str {
        match self {
            PartitionType::Mbr(t) => match t {
                0x01 => "FAT12",
                0x04 | 0x06 | 0x0e => "FAT16",
                0x0b | 0x0c => "FAT32",
                0x05 | 0x0f | 0x85 => "Extended",
                0x82 => "Linux swap",
                0x83 => "Linux",
                0xea => "Linux extended boot",
                0xee => "GPT protective",
                0xef => "EFI System",
                _ => "unknown",
            },
            PartitionType::Gpt(g) => match g.to_string().as_str() {
                "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" => "EFI System",
                "0FC63DAF-8483-4772-8E79-3D69D8477DE4" => "Linux filesystem",
                "B921B045-1DF0-41C3-AF44-4C6F280D3FAE" => "Linux root (ARM-64)",
                "BC13C2FF-59E6-4262-A352-B275FD6F7172" => "Linux extended boot",
                "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709" => "Linux root (x86-64)",
                "21686148-6449-6E6F-744E-656564454649" => "BIOS boot",
                "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7" => "Microsoft basic data",
                "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F" => "Linux swap",
                _ => "unknown",
            },
        }
    }

    /// Types that promise a FAT file system: the MBR FAT types and the
    /// EFI System partition. A partition of one of these types without a
    /// readable FAT is damaged. (GPT "Microsoft basic data" may as well
    /// hold NTFS or exFAT, so it promises nothing.)
    pub fn is_fat(&self) -> bool {
        match self {
            PartitionType::Mbr(t) => matches!(t, 0x01 | 0x04 | 0x06 | 0x0b | 0x0c | 0x0e | 0xef),
            PartitionType::Gpt(g) => g.to_string() == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
        }
    }

    pub fn is_extended_container(&self) -> bool {
        matches!(self, PartitionType::Mbr(0x05 | 0x0f | 0x85))
    }
}

#[derive(Debug, Clone)]
pub struct Partition {
    /// 1-based; MBR logical partitions are numbered from 5, as Linux does.
    pub number: u32,
    pub start: Lba,
    pub sectors: SectorCount,
    /// Absolute byte range within the image.
    pub range: ByteRange,
    pub ptype: PartitionType,
    /// MBR boot flag 0x80, or GPT attribute bit 2 (legacy BIOS bootable).
    pub bootable: bool,
    /// GPT partition name; MBR has none.
    pub name: Option<String>,
    /// PARTUUID: the GPT unique GUID, or `<disk id>-<nn>` on MBR as blkid
    /// reports it.
    pub partuuid: String,
}

impl Partition {
    /// Last sector, inclusive, as sfdisk and fdisk print it.
    pub fn last_lba(&self) -> u64 {
        self.start.0 + self.sectors.0.saturating_sub(1)
    }
}

#[derive(Debug, Clone)]
pub struct PartitionTable {
    pub kind: TableKind,
    pub sector_size: SectorSize,
    /// `0x5452a1b3` for MBR, the disk GUID for GPT (sfdisk's "id").
    pub disk_id: String,
    pub partitions: Vec<Partition>,
    /// Problems that do not stop us reading (a damaged backup GPT, say).
    pub warnings: Vec<String>,
}

impl PartitionTable {
    /// Partitions that hold data, leaving out MBR extended containers.
    pub fn data_partitions(&self) -> impl Iterator<Item = &Partition> {
        self.partitions
            .iter()
            .filter(|p| !p.ptype.is_extended_container())
    }

    pub fn get(&self, number: u32) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.number == number)
    }
}

/// Refuses partitions that run past the image or overlap each other (MBR
/// extended containers may contain their logical partitions).
pub(super) fn check_geometry(parts: &[Partition], image_len: u64) -> Result<(), DiskError> {
    for p in parts {
        if p.start.0 == 0 {
            return Err(DiskError::StartsAtZero { number: p.number });
        }
        if p.range.end().0 > image_len {
            return Err(DiskError::PastEnd {
                number: p.number,
                end: p.range.end().0,
                image_len,
            });
        }
    }
    let data: Vec<&Partition> = parts
        .iter()
        .filter(|p| !p.ptype.is_extended_container())
        .collect();
    for (i, a) in data.iter().enumerate() {
        for b in &data[i + 1..] {
            if a.range.overlaps(&b.range) {
                return Err(DiskError::Overlap {
                    a: a.number,
                    b: b.number,
                    a_start: a.start.0,
                    a_last: a.last_lba(),
                    b_start: b.start.0,
                    b_last: b.last_lba(),
                });
            }
        }
    }
    Ok(())
}

/// Builds a partition's byte range from its table entry.
pub(super) fn range_of(
    start: Lba,
    sectors: SectorCount,
    ss: SectorSize,
) -> Result<ByteRange, DiskError> {
    Ok(ByteRange::from_sectors(start, sectors, ss)?)
}
