//! Partition tables. `read_table` finds and parses the MBR or GPT of an
//! image file; `layout` recognises the image layouts we build for. These
//! readers are strict: a damaged primary table, an overlap or a partition
//! past the end of the image is an error naming the partition and LBA.
//!
//! Why our own parser rather than mbrman/gptman (DESIGN.md's choice for
//! table *writes*): gptman's reader silently falls back to the backup when
//! the primary header is corrupt and sizes its allocation from the
//! unchecked entry count; mbrman adds untrusted u32 LBAs without overflow
//! checks. Neither reports where a problem is. Reading is ~300 lines; here
//! it is checked against sfdisk in the tests.

mod error;
mod gpt;
pub mod grow;
mod guid;
pub mod layout;
mod mbr;
mod table;

pub use error::DiskError;
pub use guid::Guid;
pub use layout::{Layout, LayoutKind};
pub use table::{Partition, PartitionTable, PartitionType, TableKind};

use crate::io::{ReadAt, SectorSize};

/// Reads the partition table of an image `image_len` bytes long.
pub fn read_table<R: ReadAt + ?Sized>(
    file: &R,
    image_len: u64,
) -> Result<PartitionTable, DiskError> {
    if image_len == 0 {
        return Err(DiskError::Empty);
    }
    if image_len < 512 {
        return Err(DiskError::TooSmall { len: image_len });
    }
    let sector0 = read_sector(file, 0, 512, "MBR")?;
    if let Some(kind) = bare_filesystem(file, &sector0, image_len) {
        return Err(DiskError::BareFilesystem(kind));
    }
    if !mbr::has_signature(&sector0) {
        return Err(DiskError::NoSignature);
    }
    let protective = mbr::primary_entries(&sector0)
        .iter()
        .any(|e| e.ptype == 0xEE);
    if protective {
        for ss in [SectorSize::S512, SectorSize::S4096] {
            if gpt::signature_at(file, ss, image_len) {
                return gpt::read(file, ss, image_len);
            }
        }
        return Err(DiskError::GptMissing);
    }
    mbr::read(file, &sector0, image_len)
}

/// Recognises a filesystem written straight onto the disk (no table): a
/// FAT boot sector's type string, or the ext2/3/4 magic at byte 1080.
fn bare_filesystem<R: ReadAt + ?Sized>(
    file: &R,
    sector0: &[u8],
    image_len: u64,
) -> Option<&'static str> {
    let fat_string = |off: usize| sector0[off..off + 3] == *b"FAT";
    let no_entries = mbr::primary_entries(sector0).iter().all(|e| e.ptype == 0);
    if mbr::has_signature(sector0) && (fat_string(54) || fat_string(82)) && no_entries {
        return Some("FAT");
    }
    if image_len >= 1082 {
        let magic = read_sector(file, 1080, 2, "ext4 magic").ok()?;
        if magic == [0x53, 0xEF] && !mbr::has_signature(sector0) {
            return Some("ext2/3/4");
        }
    }
    None
}

/// Reads exactly `len` bytes at `offset`.
fn read_sector<R: ReadAt + ?Sized>(
    file: &R,
    offset: u64,
    len: usize,
    what: &'static str,
) -> Result<Vec<u8>, DiskError> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset)
        .map_err(|error| DiskError::Io {
            what,
            offset,
            error,
        })?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    //! Single-field corruptions of tables built in memory; the real-image
    //! cases are in the integration tests against sfdisk.
    use super::*;

    /// A 2 MiB disk with an MBR: entries are (type, start, sectors).
    fn mbr_disk(entries: &[(u8, u32, u32)]) -> Vec<u8> {
        let mut d = vec![0u8; 2 << 20];
        d[440..444].copy_from_slice(&0x1234_5678u32.to_le_bytes());
        for (i, (t, start, n)) in entries.iter().enumerate() {
            let off = 446 + 16 * i;
            d[off + 4] = *t;
            d[off + 8..off + 12].copy_from_slice(&start.to_le_bytes());
            d[off + 12..off + 16].copy_from_slice(&n.to_le_bytes());
        }
        d[510] = 0x55;
        d[511] = 0xAA;
        d
    }

    #[test]
    fn a_plain_mbr_reads() {
        let d = mbr_disk(&[(0x0c, 2048, 100), (0x83, 2148, 200)]);
        let t = read_table(&d[..], d.len() as u64).unwrap();
        assert_eq!(t.disk_id, "0x12345678");
        assert_eq!(t.partitions.len(), 2);
        assert_eq!(t.partitions[1].partuuid, "12345678-02");
        assert_eq!(t.partitions[1].range.start().0, 2148 * 512);
    }

    #[test]
    fn a_bad_boot_flag_means_no_table() {
        let mut d = mbr_disk(&[(0x83, 2048, 100)]);
        d[446] = 0x12;
        let e = read_table(&d[..], d.len() as u64).unwrap_err();
        assert!(
            matches!(
                e,
                DiskError::BadBootFlag {
                    entry: 1,
                    flag: 0x12
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn an_ebr_chain_that_loops_is_refused() {
        let mut d = mbr_disk(&[(0x05, 1024, 1000)]);
        // EBR at LBA 1024: one logical, next EBR at relative 0 (itself).
        let ebr = 1024 * 512;
        d[ebr + 446 + 4] = 0x83;
        d[ebr + 446 + 8..ebr + 446 + 12].copy_from_slice(&1u32.to_le_bytes());
        d[ebr + 446 + 12..ebr + 446 + 16].copy_from_slice(&10u32.to_le_bytes());
        d[ebr + 462 + 4] = 0x05;
        d[ebr + 462 + 8..ebr + 462 + 12].copy_from_slice(&0u32.to_le_bytes());
        d[ebr + 462 + 12..ebr + 462 + 16].copy_from_slice(&10u32.to_le_bytes());
        d[ebr + 510] = 0x55;
        d[ebr + 511] = 0xAA;
        let e = read_table(&d[..], d.len() as u64).unwrap_err();
        assert!(matches!(e, DiskError::BadEbr { lba: 1024, .. }), "{e}");
    }

    #[test]
    fn huge_lbas_do_not_overflow() {
        let d = mbr_disk(&[(0x83, u32::MAX, u32::MAX)]);
        let e = read_table(&d[..], d.len() as u64).unwrap_err();
        assert!(matches!(e, DiskError::PastEnd { number: 1, .. }), "{e}");
    }

    #[test]
    fn a_protective_mbr_without_gpt_is_named() {
        let d = mbr_disk(&[(0xee, 1, 2047)]);
        let e = read_table(&d[..], d.len() as u64).unwrap_err();
        assert!(matches!(e, DiskError::GptMissing), "{e}");
    }

    #[test]
    fn tiny_and_empty_inputs() {
        assert!(matches!(read_table(&[][..], 0), Err(DiskError::Empty)));
        let d = [0u8; 100];
        assert!(matches!(
            read_table(&d[..], 100),
            Err(DiskError::TooSmall { len: 100 })
        ));
    }
}
