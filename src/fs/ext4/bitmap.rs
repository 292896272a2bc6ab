//! Block and inode bitmaps: loading (including groups still marked
//! `BLOCK_UNINIT`/`INODE_UNINIT`, whose bitmaps we must build the way the
//! kernel's `ext4_init_block_bitmap`/`ext4_init_inode_bitmap` do), bit
//! search, padding and checksums.

use super::checksum::crc32c_raw;
use super::geometry::Geometry;
use super::group_desc::GroupDescs;

/// One group's bitmap, a whole block long. Bits past the group's last
/// valid entry are padding and stay set.
#[derive(Clone)]
pub struct Bitmap {
    pub bytes: Vec<u8>,
}

impl Bitmap {
    pub fn get(&self, bit: u32) -> bool {
        self.bytes[(bit / 8) as usize] & (1 << (bit % 8)) != 0
    }
    pub fn set(&mut self, bit: u32) {
        self.bytes[(bit / 8) as usize] |= 1 << (bit % 8);
    }
    pub fn clear(&mut self, bit: u32) {
        self.bytes[(bit / 8) as usize] &= !(1 << (bit % 8));
    }

    /// First clear bit in `from..limit`.
    pub fn find_clear(&self, from: u32, limit: u32) -> Option<u32> {
        let mut bit = from;
        while bit < limit {
            if bit.is_multiple_of(8) && bit + 8 <= limit && self.bytes[(bit / 8) as usize] == 0xFF {
                bit += 8;
                continue;
            }
            if !self.get(bit) {
                return Some(bit);
            }
            bit += 1;
        }
        None
    }

    /// Number of set bits in `0..limit`.
    pub fn count_set(&self, limit: u32) -> u32 {
        let full = (limit / 8) as usize;
        let mut n: u32 = self.bytes[..full].iter().map(|b| b.count_ones()).sum();
        for bit in (full as u32 * 8)..limit {
            n += u32::from(self.get(bit));
        }
        n
    }

    /// Sets every bit from `from` to the end of the block (the kernel's
    /// `ext4_mark_bitmap_end`).
    pub fn set_padding(&mut self, from: u32) {
        let total = self.bytes.len() as u32 * 8;
        for bit in from..total {
            self.set(bit);
        }
    }

    /// The checksum stored in the descriptor: crc32c over the first
    /// `bits / 8` bytes.
    pub fn checksum(&self, seed: u32, bits: u32) -> u32 {
        crc32c_raw(seed, &self.bytes[..(bits / 8) as usize])
    }
}

/// A fresh inode bitmap for an `INODE_UNINIT` group: all free, padding set.
pub fn init_inode_bitmap(geo: &Geometry) -> Bitmap {
    let mut b = Bitmap {
        bytes: vec![0; geo.block_size as usize],
    };
    b.set_padding(geo.inodes_per_group);
    b
}

/// The block bitmap of a `BLOCK_UNINIT` group: the superblock and GDT
/// backup with the reserved GDT blocks if the group has one, and every
/// group's bitmaps and inode table that `flex_bg` placed here; blocks past
/// the end of the filesystem and the bits past `s_blocks_per_group` are
/// padding.
pub fn init_block_bitmap(geo: &Geometry, gd: &GroupDescs, group: u32) -> Bitmap {
    let mut b = Bitmap {
        bytes: vec![0; geo.block_size as usize],
    };
    let first = geo.group_first_block(group);
    let n = geo.blocks_in_group(group);
    if geo.has_super_backup(group) {
        // The superblock (or its backup), the GDT and the reserved GDT blocks.
        // With 1 KiB blocks group 0 starts at block 1, holding the superblock.
        let meta = 1 + geo.gdt_blocks() + geo.reserved_gdt_blocks;
        for bit in 0..meta.min(n) {
            b.set(bit);
        }
    }
    let table_blocks = u64::from(geo.blocks_per_inode_table());
    let mut mark = |blk: u64| {
        if blk >= first && blk < first + u64::from(n) {
            // blk - first < n, a u32.
            b.set((blk - first) as u32);
        }
    };
    for g in 0..geo.group_count {
        mark(gd.block_bitmap(g));
        mark(gd.inode_bitmap(g));
        let t = gd.inode_table(g);
        for blk in t..t + table_blocks {
            mark(blk);
        }
    }
    b.set_padding(n);
    b
}
