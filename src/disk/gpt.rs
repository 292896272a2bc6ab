//! The GUID partition table (UEFI spec §5.3): a header at LBA 1 with CRC32s
//! over itself and over its entry array, and a backup copy at the last LBA.
//! Read-only. The primary must be intact; a damaged or misplaced backup is
//! reported as a warning, as sfdisk does.

use super::DiskError;
use super::guid::Guid;
use super::table::{Partition, PartitionTable, PartitionType, TableKind, check_geometry, range_of};
use crate::io::bytes::{array, le_u16, le_u32, le_u64};
use crate::io::{Lba, ReadAt, SectorCount, SectorSize};

const SIGNATURE: &[u8; 8] = b"EFI PART";
const MIN_HEADER_SIZE: u32 = 92;
/// Entry arrays larger than this are not real tables (the spec's minimum is
/// 16 KiB; tools write exactly that). Refusing bigger ones bounds memory.
const MAX_ENTRY_ARRAY: u64 = 1 << 20;

/// The fields of a GPT header we use, at their spec offsets.
#[derive(Debug, Clone)]
struct Header {
    my_lba: u64,
    alternate_lba: u64,
    first_usable_lba: u64,
    last_usable_lba: u64,
    disk_guid: Guid,
    partition_entry_lba: u64,
    num_entries: u32,
    entry_size: u32,
    entries_crc32: u32,
}

/// True when sector 1 at `ss` carries the GPT signature.
pub(super) fn signature_at<R: ReadAt + ?Sized>(file: &R, ss: SectorSize, image_len: u64) -> bool {
    let off = u64::from(ss.bytes());
    if off + 8 > image_len {
        return false;
    }
    super::read_sector(file, off, 8, "GPT signature")
        .map(|b| b == SIGNATURE)
        .unwrap_or(false)
}

/// Reads and checks the header at `lba`.
fn read_header<R: ReadAt + ?Sized>(
    file: &R,
    lba: u64,
    ss: SectorSize,
) -> Result<Header, DiskError> {
    let offset = Lba(lba).to_offset(ss)?.0;
    let sector = super::read_sector(file, offset, ss.bytes() as usize, "GPT header")?; // as: ≤ 4096
    let bad = |problem: String| DiskError::BadGptHeader { lba, problem };
    if &sector[..8] != SIGNATURE {
        return Err(bad("no \"EFI PART\" signature".into()));
    }
    let header_size = le_u32(&sector, 12);
    if header_size < MIN_HEADER_SIZE || header_size > ss.bytes() {
        return Err(bad(format!(
            "header size {header_size} is outside 92..={}",
            ss.bytes()
        )));
    }
    let stored = le_u32(&sector, 16);
    let mut copy = sector[..header_size as usize].to_vec(); // as: ≤ 4096
    copy[16..20].fill(0);
    let computed = crc32fast::hash(&copy);
    if stored != computed {
        return Err(DiskError::GptHeaderCrc {
            lba,
            stored,
            computed,
        });
    }
    let h = Header {
        my_lba: le_u64(&sector, 24),
        alternate_lba: le_u64(&sector, 32),
        first_usable_lba: le_u64(&sector, 40),
        last_usable_lba: le_u64(&sector, 48),
        disk_guid: Guid(array(&sector, 56)),
        partition_entry_lba: le_u64(&sector, 72),
        num_entries: le_u32(&sector, 80),
        entry_size: le_u32(&sector, 84),
        entries_crc32: le_u32(&sector, 88),
    };
    if h.my_lba != lba {
        return Err(bad(format!("says it lives at LBA {}", h.my_lba)));
    }
    if h.entry_size < 128 || !h.entry_size.is_power_of_two() {
        return Err(bad(format!(
            "partition entry size {} is not a power of two ≥ 128",
            h.entry_size
        )));
    }
    if u64::from(h.num_entries) * u64::from(h.entry_size) > MAX_ENTRY_ARRAY {
        return Err(bad(format!(
            "{} entries of {} bytes is larger than any real table",
            h.num_entries, h.entry_size
        )));
    }
    if h.first_usable_lba > h.last_usable_lba {
        return Err(bad(format!(
            "first usable LBA {} is after last usable LBA {}",
            h.first_usable_lba, h.last_usable_lba
        )));
    }
    Ok(h)
}

/// Reads the entry array a header points at and checks its CRC32.
fn read_entries<R: ReadAt + ?Sized>(
    file: &R,
    h: &Header,
    ss: SectorSize,
    image_len: u64,
) -> Result<Vec<u8>, DiskError> {
    let offset = Lba(h.partition_entry_lba).to_offset(ss)?.0;
    let len = u64::from(h.num_entries) * u64::from(h.entry_size); // ≤ MAX_ENTRY_ARRAY
    if offset.saturating_add(len) > image_len {
        return Err(DiskError::BadGptHeader {
            lba: h.my_lba,
            problem: format!(
                "its partition entry array at LBA {} runs past the end of the image",
                h.partition_entry_lba
            ),
        });
    }
    let bytes = super::read_sector(file, offset, len as usize, "GPT partition entries")?; // as: ≤ 1 MiB
    let computed = crc32fast::hash(&bytes);
    if computed != h.entries_crc32 {
        return Err(DiskError::GptEntriesCrc {
            lba: h.partition_entry_lba,
            stored: h.entries_crc32,
            computed,
        });
    }
    Ok(bytes)
}

/// Parses the GPT with sector size `ss`.
pub(super) fn read<R: ReadAt + ?Sized>(
    file: &R,
    ss: SectorSize,
    image_len: u64,
) -> Result<PartitionTable, DiskError> {
    let primary = read_header(file, 1, ss)?;
    let entries = read_entries(file, &primary, ss, image_len)?;
    let mut warnings = Vec::new();
    check_backup(file, &primary, ss, image_len, &mut warnings);

    let mut parts = Vec::new();
    for (i, raw) in entries
        .chunks_exact(primary.entry_size as usize)
        .enumerate()
    {
        // as: entry_size ≤ 1 MiB
        let ptype = Guid(array(raw, 0));
        if ptype.is_zero() {
            continue;
        }
        let number = u32::try_from(i + 1).map_err(|_| DiskError::BadGptHeader {
            lba: 1,
            problem: "too many partition entries".into(),
        })?;
        let first = le_u64(raw, 32);
        let last = le_u64(raw, 40);
        let bad = |problem: String| DiskError::BadGptEntry { number, problem };
        if last < first {
            return Err(bad(format!(
                "ends (LBA {last}) before it starts (LBA {first})"
            )));
        }
        if first < primary.first_usable_lba || last > primary.last_usable_lba {
            return Err(bad(format!(
                "LBA {first}–{last} lies outside the usable area LBA {}–{}",
                primary.first_usable_lba, primary.last_usable_lba
            )));
        }
        let start = Lba(first);
        let sectors = SectorCount(last - first + 1);
        let attributes = le_u64(raw, 48);
        parts.push(Partition {
            number,
            start,
            sectors,
            range: range_of(start, sectors, ss)?,
            ptype: PartitionType::Gpt(ptype),
            bootable: attributes & (1 << 2) != 0,
            name: Some(utf16_name(&raw[56..128])),
            partuuid: Guid(array(raw, 16)).to_string().to_lowercase(),
        });
    }
    check_geometry(&parts, image_len)?;
    Ok(PartitionTable {
        kind: TableKind::Gpt,
        sector_size: ss,
        disk_id: primary.disk_guid.to_string(),
        partitions: parts,
        warnings,
    })
}

/// Checks the backup header and array; problems become warnings because
/// the primary, which we use, is intact.
fn check_backup<R: ReadAt + ?Sized>(
    file: &R,
    primary: &Header,
    ss: SectorSize,
    image_len: u64,
    warnings: &mut Vec<String>,
) {
    let last_lba = image_len / u64::from(ss.bytes()) - 1;
    if primary.alternate_lba != last_lba {
        warnings.push(format!(
            "the primary GPT header puts the backup at LBA {}, but the image's last \
             sector is LBA {last_lba} (the image was resized?)",
            primary.alternate_lba
        ));
    }
    if primary.alternate_lba > last_lba {
        return;
    }
    let outcome = read_header(file, primary.alternate_lba, ss).and_then(|backup| {
        read_entries(file, &backup, ss, image_len)?;
        Ok(backup)
    });
    match outcome {
        Ok(backup) => {
            if backup.entries_crc32 != primary.entries_crc32
                || backup.disk_guid != primary.disk_guid
            {
                warnings.push(format!(
                    "the backup GPT at LBA {} differs from the primary",
                    primary.alternate_lba
                ));
            }
        }
        Err(e) => warnings.push(format!("the backup GPT is damaged: {e}")),
    }
}

/// Partition names are UTF-16LE, NUL-padded.
fn utf16_name(raw: &[u8]) -> String {
    let units: Vec<u16> = (0..raw.len() / 2)
        .map(|i| le_u16(raw, 2 * i))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}
