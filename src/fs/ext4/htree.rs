//! Hashed directory index blocks (`directory.rst` § "Hash Tree
//! Directories"): the `dx_root` in block 0 (fake `.`/`..`, `dx_root_info`,
//! count/limit, entries) and interior `dx_node`s, their limits, entries and
//! the `dx_tail` checksum under metadata_csum.

use super::checksum::crc32c_raw;
use super::error::{Result, Structure, WriteError};
use crate::io::bytes::{le_u16, le_u32};

/// Offset of count/limit in the root block (after `.`, `..` and the info).
pub const ROOT_COUNT_OFFSET: usize = 0x20;
/// Offset of count/limit in an interior node (after its empty dirent).
pub const NODE_COUNT_OFFSET: usize = 0x8;
/// Index levels below the root without `largedir`.
pub const MAX_INDIRECT_LEVELS: u8 = 1;
const DX_TAIL: usize = 8;

#[derive(Debug, Clone, Copy)]
pub struct DxFormat {
    pub block_size: usize,
    pub csum: bool,
}

/// One index entry: names hashing at or above `hash` live under `block`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DxEntry {
    pub hash: u32,
    pub block: u32,
}

impl DxFormat {
    /// Entries a root (`root`) or node holds, as e2fsck computes it.
    pub fn limit(&self, count_offset: usize) -> usize {
        let tail = if self.csum { DX_TAIL } else { 0 };
        (self.block_size - count_offset - tail) / 8
    }

    /// Reads and checks the entries at `off` (count/limit overlay the first
    /// entry's hash, whose value is implicitly 0).
    pub fn entries(
        &self,
        block: &[u8],
        off: usize,
        ino: u32,
        lblk: u32,
        seed: Option<u32>,
    ) -> Result<Vec<DxEntry>> {
        let bad = |why: String| WriteError::corrupt(Structure::HtreeNode { ino, lblk }, why);
        let limit = usize::from(le_u16(block, off));
        let count = usize::from(le_u16(block, off + 2));
        let want = self.limit(off);
        if limit != want {
            return Err(bad(format!("limit is {limit}, expected {want}")));
        }
        if count == 0 || count > limit {
            return Err(bad(format!("count is {count} (limit {limit})")));
        }
        if let (true, Some(seed)) = (self.csum, seed) {
            let t = off + limit * 8;
            let stored = le_u32(block, t + 4);
            let computed = self.checksum(block, off, count, seed);
            if stored != computed {
                return Err(bad(format!(
                    "dx_tail checksum is {stored:#010x}, computed {computed:#010x}"
                )));
            }
        }
        let mut out = Vec::with_capacity(count);
        for i in 0..count {
            let at = off + i * 8;
            let hash = if i == 0 { 0 } else { le_u32(block, at) };
            let e = DxEntry {
                hash,
                block: le_u32(block, at + 4),
            };
            if let Some(prev) = out.last() {
                let prev: &DxEntry = prev;
                if i > 1 && e.hash < prev.hash {
                    return Err(bad(format!(
                        "entry {i} hash {:#x} is below its predecessor",
                        e.hash
                    )));
                }
            }
            out.push(e);
        }
        Ok(out)
    }

    /// Writes `entries` (at most the limit) at `off`, count/limit in the first.
    pub fn put_entries(&self, block: &mut [u8], off: usize, entries: &[DxEntry]) {
        let limit = self.limit(off);
        assert!(
            entries.len() <= limit && !entries.is_empty(),
            "dx entries overflow"
        );
        block[off..off + limit * 8].fill(0);
        for (i, e) in entries.iter().enumerate() {
            let at = off + i * 8;
            if i > 0 {
                block[at..at + 4].copy_from_slice(&e.hash.to_le_bytes());
            }
            block[at + 4..at + 8].copy_from_slice(&e.block.to_le_bytes());
        }
        // limit and count are below 512: they fit u16.
        block[off..off + 2].copy_from_slice(&(limit as u16).to_le_bytes());
        block[off + 2..off + 4].copy_from_slice(&(entries.len() as u16).to_le_bytes());
        if self.csum {
            let t = off + limit * 8;
            block[t..t + DX_TAIL].fill(0);
        }
    }

    fn checksum(&self, block: &[u8], off: usize, count: usize, seed: u32) -> u32 {
        let c = crc32c_raw(seed, &block[..off + count * 8]);
        let t = off + self.limit(off) * 8;
        // dt_reserved, then the checksum field itself as zeros.
        let c = crc32c_raw(c, &block[t..t + 4]);
        crc32c_raw(c, &[0; 4])
    }

    /// Stores the dx_tail checksum (call after the last change).
    pub fn finish(&self, block: &mut [u8], off: usize, seed: Option<u32>) {
        if let (true, Some(seed)) = (self.csum, seed) {
            let count = usize::from(le_u16(block, off + 2));
            let c = self.checksum(block, off, count, seed);
            let t = off + self.limit(off) * 8;
            block[t + 4..t + 8].copy_from_slice(&c.to_le_bytes());
        }
    }

    /// The root's `dx_root_info`: (hash_version, indirect_levels), checked.
    pub fn root_info(&self, block: &[u8], ino: u32) -> Result<(u8, u8)> {
        let bad = |why: String| WriteError::corrupt(Structure::HtreeNode { ino, lblk: 0 }, why);
        let dot_rec = usize::from(le_u16(block, 4));
        let dotdot_rec = usize::from(le_u16(block, 12 + 4));
        if le_u32(block, 0) != ino || dot_rec != 12 || block[6] != 1 || block[8] != b'.' {
            return Err(bad("the root does not start with `.`".into()));
        }
        if dotdot_rec != self.block_size - 12 || block[12 + 6] != 2 {
            return Err(bad(format!("the root's `..` has rec_len {dotdot_rec}")));
        }
        let reserved = le_u32(block, 0x18);
        let hash_version = block[0x1C];
        let info_length = block[0x1D];
        let levels = block[0x1E];
        if reserved != 0 || info_length != 8 {
            return Err(bad(format!("dx_root_info has info_length {info_length}")));
        }
        if hash_version > 5 {
            return Err(bad(format!("dx_root_info hash_version is {hash_version}")));
        }
        if levels > MAX_INDIRECT_LEVELS {
            return Err(bad(format!(
                "indirect_levels is {levels} (largedir is not supported)"
            )));
        }
        Ok((hash_version, levels))
    }

    /// The inode the root's `..` names (its `.` is checked by `root_info`).
    pub fn root_parent(&self, block: &[u8], ino: u32) -> Result<u32> {
        let parent = le_u32(block, 12);
        if parent == 0 || &block[20..22] != b".." {
            return Err(WriteError::corrupt(
                Structure::HtreeNode { ino, lblk: 0 },
                "the root's second entry is not a live `..`",
            ));
        }
        Ok(parent)
    }

    /// A root block: `.`, `..` (taking the rest of the block, as the format
    /// wants), the info and `entries`.
    pub fn new_root(
        &self,
        ino: u32,
        parent: u32,
        filetype: bool,
        hash_version: u8,
        levels: u8,
        entries: &[DxEntry],
    ) -> Vec<u8> {
        let mut b = vec![0u8; self.block_size];
        b[0..4].copy_from_slice(&ino.to_le_bytes());
        b[4..6].copy_from_slice(&12u16.to_le_bytes());
        b[6] = 1;
        b[7] = if filetype { 2 } else { 0 };
        b[8] = b'.';
        b[12..16].copy_from_slice(&parent.to_le_bytes());
        // block_size ≤ 4096.
        b[16..18].copy_from_slice(&((self.block_size - 12) as u16).to_le_bytes());
        b[18] = 2;
        b[19] = if filetype { 2 } else { 0 };
        b[20] = b'.';
        b[21] = b'.';
        b[0x1C] = hash_version;
        b[0x1D] = 8;
        b[0x1E] = levels;
        self.put_entries(&mut b, ROOT_COUNT_OFFSET, entries);
        b
    }

    /// An interior node: one empty record spanning the block, then entries.
    pub fn new_node(&self, entries: &[DxEntry]) -> Vec<u8> {
        let mut b = vec![0u8; self.block_size];
        b[4..6].copy_from_slice(&(self.block_size as u16).to_le_bytes());
        self.put_entries(&mut b, NODE_COUNT_OFFSET, entries);
        b
    }

    pub fn set_levels(&self, root: &mut [u8], levels: u8) {
        root[0x1E] = levels;
    }
}

/// Index of the entry covering `hash`: the last whose hash is ≤ it.
pub fn find(entries: &[DxEntry], hash: u32) -> usize {
    // entries[0] covers everything below entries[1].
    entries[1..].partition_point(|e| e.hash <= hash)
}
