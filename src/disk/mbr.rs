//! The DOS/MBR partition table: four primary entries in sector 0 and, for an
//! extended partition, a chain of EBRs holding one logical partition each.
//! Read-only; layout from the classic IBM PC spec as Linux interprets it
//! (logical partitions numbered from 5, MBR sectors are always 512 bytes).

use super::DiskError;
use super::table::{Partition, PartitionTable, PartitionType, TableKind, check_geometry, range_of};
use crate::io::bytes::le_u32;
use crate::io::{Lba, ReadAt, SectorCount, SectorSize};

/// Offset of the first partition entry within a (E)MBR sector.
const ENTRIES: usize = 446;
/// Offset of the 32-bit disk signature.
const DISK_SIGNATURE: usize = 440;
/// Linux reads at most this many logical partitions; a longer chain is
/// corrupt (or a loop we must not follow forever).
const MAX_LOGICAL: u32 = 128;

/// One 16-byte partition entry.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    pub status: u8,
    pub ptype: u8,
    pub lba_start: u32,
    pub sectors: u32,
}

impl Entry {
    fn parse(sector: &[u8], index: usize) -> Entry {
        let off = ENTRIES + 16 * index;
        Entry {
            status: sector[off],
            ptype: sector[off + 4],
            lba_start: le_u32(sector, off + 8),
            sectors: le_u32(sector, off + 12),
        }
    }

    fn is_used(&self) -> bool {
        self.ptype != 0 && self.sectors != 0
    }
}

/// The four primary entries of a sector that carries the 0x55AA signature.
pub(super) fn primary_entries(sector0: &[u8]) -> [Entry; 4] {
    [0, 1, 2, 3].map(|i| Entry::parse(sector0, i))
}

pub(super) fn has_signature(sector: &[u8]) -> bool {
    sector[510] == 0x55 && sector[511] == 0xAA
}

/// Parses the MBR in `sector0` (and any EBR chain) of an image `image_len`
/// bytes long.
pub(super) fn read<R: ReadAt + ?Sized>(
    file: &R,
    sector0: &[u8],
    image_len: u64,
) -> Result<PartitionTable, DiskError> {
    let ss = SectorSize::S512;
    let entries = primary_entries(sector0);
    for (i, e) in entries.iter().enumerate() {
        if e.status != 0x00 && e.status != 0x80 {
            return Err(DiskError::BadBootFlag {
                entry: i as u32 + 1, // as: i < 4
                flag: e.status,
            });
        }
    }
    let signature = le_u32(sector0, DISK_SIGNATURE);
    let disk_id = format!("{signature:#010x}");
    let partuuid = |n: u32| format!("{signature:08x}-{n:02x}");

    let mut parts = Vec::new();
    let mut extended = None;
    for (i, e) in entries.iter().enumerate() {
        if !e.is_used() {
            continue;
        }
        let number = i as u32 + 1; // as: i < 4
        let start = Lba(u64::from(e.lba_start));
        let sectors = SectorCount(u64::from(e.sectors));
        let ptype = PartitionType::Mbr(e.ptype);
        if ptype.is_extended_container() && extended.is_none() {
            extended = Some((start, sectors));
        }
        parts.push(Partition {
            number,
            start,
            sectors,
            range: range_of(start, sectors, ss)?,
            ptype,
            bootable: e.status == 0x80,
            name: None,
            partuuid: partuuid(number),
        });
    }
    if let Some((ext_start, ext_sectors)) = extended {
        read_logical(
            file,
            ext_start,
            ext_sectors,
            image_len,
            &partuuid,
            &mut parts,
        )?;
    }
    check_geometry(&parts, image_len)?;
    Ok(PartitionTable {
        kind: TableKind::Mbr,
        sector_size: ss,
        disk_id,
        partitions: parts,
        warnings: Vec::new(),
    })
}

/// Walks the EBR chain of the extended partition at `ext_start`.
fn read_logical<R: ReadAt + ?Sized>(
    file: &R,
    ext_start: Lba,
    ext_sectors: SectorCount,
    image_len: u64,
    partuuid: &dyn Fn(u32) -> String,
    parts: &mut Vec<Partition>,
) -> Result<(), DiskError> {
    let ss = SectorSize::S512;
    let ext_end = ext_start.0.saturating_add(ext_sectors.0);
    let mut ebr_rel: u64 = 0;
    let mut number = 5;
    loop {
        let ebr_lba = ext_start.0.saturating_add(ebr_rel);
        let offset = Lba(ebr_lba).to_offset(ss)?.0;
        if ebr_lba >= ext_end || offset.saturating_add(512) > image_len {
            return Err(DiskError::BadEbr {
                lba: ebr_lba,
                problem: "lies outside the extended partition or the image",
            });
        }
        let sector = super::read_sector(file, offset, 512, "extended boot record")?;
        if !has_signature(&sector) {
            if number == 5 {
                // An extended partition with no logical ones has no EBR.
                return Ok(());
            }
            return Err(DiskError::BadEbr {
                lba: ebr_lba,
                problem: "has no 0x55AA signature",
            });
        }
        let logical = Entry::parse(&sector, 0);
        let next = Entry::parse(&sector, 1);
        if logical.is_used() {
            let start = Lba(ebr_lba.saturating_add(u64::from(logical.lba_start)));
            let sectors = SectorCount(u64::from(logical.sectors));
            let range = range_of(start, sectors, ss)?;
            if start.0.saturating_add(sectors.0) > ext_end {
                return Err(DiskError::BadEbr {
                    lba: ebr_lba,
                    problem: "describes a logical partition that ends outside the extended partition",
                });
            }
            parts.push(Partition {
                number,
                start,
                sectors,
                range,
                ptype: PartitionType::Mbr(logical.ptype),
                bootable: logical.status == 0x80,
                name: None,
                partuuid: partuuid(number),
            });
            number += 1;
        }
        if !next.is_used() {
            return Ok(());
        }
        let next_rel = u64::from(next.lba_start);
        // Each EBR must point strictly forward, which also rules out loops.
        if next_rel <= ebr_rel {
            return Err(DiskError::BadEbr {
                lba: ebr_lba,
                problem: "links backwards in the chain (a loop)",
            });
        }
        if number > 4 + MAX_LOGICAL {
            return Err(DiskError::BadEbr {
                lba: ebr_lba,
                problem: "is one of more than 128 logical partitions",
            });
        }
        ebr_rel = next_rel;
    }
}
