//! Growing a GPT disk image: once the image is longer, its backup header
//! and entry array belong at the new end, the primary header must point at
//! them and let the free space be used, and the protective MBR must cover
//! the whole disk — what `sgdisk -e` does. The partitions themselves stay
//! where they are; the guest's growpart extends the last one into the new
//! space. Pure: this computes the sectors to write, the caller writes them
//! (into an overlay, so nothing reaches a file until the image is final).

use crate::io::bytes::{le_u32, le_u64};

/// The sectors to write, as (offset, bytes), for a disk image of `old_len`
/// bytes grown to `new_len`. `read(buf, offset)` reads the image as it
/// was. An MBR disk (no GPT) needs nothing: `Ok(vec![])`. `Err` says what
/// in the GPT header stops the move.
pub fn gpt_moves(
    read: &dyn Fn(&mut [u8], u64) -> std::io::Result<()>,
    old_len: u64,
    new_len: u64,
) -> Result<Vec<(u64, Vec<u8>)>, String> {
    if new_len <= old_len {
        return Ok(Vec::new());
    }
    let io = |e: std::io::Error| format!("reading the partition table: {e}");
    for ss in [512u64, 4096] {
        if 2 * ss > old_len {
            continue;
        }
        let mut hdr = vec![0u8; ss as usize]; // as: 512 or 4096
        read(&mut hdr, ss).map_err(io)?;
        if &hdr[..8] != b"EFI PART" {
            continue;
        }
        let header_size = u64::from(le_u32(&hdr, 12));
        if !(92..=ss).contains(&header_size) {
            return Err(format!(
                "the GPT header at LBA 1 has a size of {header_size} bytes"
            ));
        }
        let entries = u64::from(le_u32(&hdr, 80)) * u64::from(le_u32(&hdr, 84));
        let entry_sectors = entries.div_ceil(ss);
        let entries_lba = le_u64(&hdr, 72);
        if entries > 1 << 20 || entries_lba < 2 || entries_lba.saturating_mul(ss) >= old_len {
            return Err(format!(
                "the GPT header at LBA 1 describes {entries} bytes of entries at LBA {entries_lba}"
            ));
        }
        let last = new_len / ss - 1;
        let backup_entries_lba = last - entry_sectors;
        let hs = header_size as usize; // as: <= 4096
        let mut primary = hdr.clone();
        primary[32..40].copy_from_slice(&last.to_le_bytes());
        primary[48..56].copy_from_slice(&(backup_entries_lba - 1).to_le_bytes());
        seal(&mut primary, hs);
        let mut backup = primary.clone();
        backup[24..32].copy_from_slice(&last.to_le_bytes());
        backup[32..40].copy_from_slice(&1u64.to_le_bytes());
        backup[72..80].copy_from_slice(&backup_entries_lba.to_le_bytes());
        seal(&mut backup, hs);
        let mut table = vec![0u8; (entry_sectors * ss) as usize]; // as: <= 1 MiB + a sector
        read(&mut table, entries_lba * ss).map_err(io)?;
        let mut writes = Vec::new();
        // The old backup header would otherwise lie, stale, inside the
        // space the root grows into; tools that scan for it find none.
        let old_last = old_len / ss - 1;
        let mut old_backup = vec![0u8; ss as usize]; // as: 512 or 4096
        read(&mut old_backup, old_last * ss).map_err(io)?;
        if &old_backup[..8] == b"EFI PART" {
            writes.push((old_last * ss, vec![0u8; ss as usize])); // as: 512 or 4096
        }
        if let Some(mbr) = protective_mbr(read, last).map_err(io)? {
            writes.push((0, mbr));
        }
        writes.push((ss, primary));
        writes.push((backup_entries_lba * ss, table));
        writes.push((last * ss, backup));
        return Ok(writes);
    }
    Ok(Vec::new())
}

/// Sector 0 with its protective (0xEE) entry covering the grown disk, when
/// it has one: LBA 1 to the last LBA, capped at 0xFFFFFFFF sectors (UEFI
/// spec §5.2.3).
fn protective_mbr(
    read: &dyn Fn(&mut [u8], u64) -> std::io::Result<()>,
    last: u64,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut mbr = vec![0u8; 512];
    read(&mut mbr, 0)?;
    if mbr[510..512] != [0x55, 0xaa] {
        return Ok(None);
    }
    for i in 0..4 {
        let e = 446 + 16 * i;
        if mbr[e + 4] == 0xee && le_u32(&mbr, e + 8) == 1 {
            let sectors = u32::try_from(last).unwrap_or(u32::MAX);
            mbr[e + 12..e + 16].copy_from_slice(&sectors.to_le_bytes());
            return Ok(Some(mbr));
        }
    }
    Ok(None)
}

/// Recomputes a GPT header's CRC32 (over `len` bytes with the field zero).
fn seal(hdr: &mut [u8], len: usize) {
    hdr[16..20].fill(0);
    let crc = crc32fast::hash(&hdr[..len]);
    hdr[16..20].copy_from_slice(&crc.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(disk: &[u8]) -> impl Fn(&mut [u8], u64) -> std::io::Result<()> + '_ {
        move |buf: &mut [u8], offset: u64| {
            let at = usize::try_from(offset).unwrap();
            buf.copy_from_slice(&disk[at..at + buf.len()]);
            Ok(())
        }
    }

    #[test]
    fn a_disk_without_gpt_needs_nothing_and_a_bad_header_is_named() {
        let mut disk = vec![0u8; 1 << 20];
        assert!(
            gpt_moves(&reader(&disk), 1 << 20, 2 << 20)
                .unwrap()
                .is_empty()
        );
        disk[512..520].copy_from_slice(b"EFI PART");
        disk[512 + 12..512 + 16].copy_from_slice(&50u32.to_le_bytes());
        let e = gpt_moves(&reader(&disk), 1 << 20, 2 << 20).unwrap_err();
        assert!(e.contains("size of 50 bytes"), "{e}");
        // Entries said to lie past the image's end.
        disk[512 + 12..512 + 16].copy_from_slice(&92u32.to_le_bytes());
        disk[512 + 72..512 + 80].copy_from_slice(&(1u64 << 40).to_le_bytes());
        disk[512 + 80..512 + 84].copy_from_slice(&128u32.to_le_bytes());
        disk[512 + 84..512 + 88].copy_from_slice(&128u32.to_le_bytes());
        let e = gpt_moves(&reader(&disk), 1 << 20, 2 << 20).unwrap_err();
        assert!(e.contains("entries at LBA"), "{e}");
    }
}
