//! The group descriptor table (kernel `struct ext4_group_desc`): the primary
//! copy, read whole, edited in memory and written back with each touched
//! descriptor's checksum recomputed. Backups are left as they are (e2fsck
//! does not require their counters to match).

use super::checksum::{crc16, crc32c_raw};
use super::error::{Result, Structure, WriteError};
use super::geometry::Geometry;
use crate::io::bytes::{le_u16, le_u32};

pub const BG_INODE_UNINIT: u16 = 0x1;
pub const BG_BLOCK_UNINIT: u16 = 0x2;

const BG_CHECKSUM: usize = 0x1E;

pub struct GroupDescs {
    raw: Vec<u8>,
    desc_size: usize,
    is64: bool,
    dirty: Vec<bool>,
}

/// Combine a lo/hi pair of fields, the hi half only with 64-byte descriptors.
fn lohi32(d: &[u8], lo: usize, hi: usize, is64: bool) -> u64 {
    let mut v = u64::from(le_u32(d, lo));
    if is64 {
        v |= u64::from(le_u32(d, hi)) << 32;
    }
    v
}

fn lohi16(d: &[u8], lo: usize, hi: usize, is64: bool) -> u32 {
    let mut v = u32::from(le_u16(d, lo));
    if is64 {
        v |= u32::from(le_u16(d, hi)) << 16;
    }
    v
}

impl GroupDescs {
    /// Wraps the raw table and checks every descriptor's checksum and
    /// pointers, so later code may trust them.
    pub fn parse(raw: Vec<u8>, geo: &Geometry) -> Result<GroupDescs> {
        let desc_size = geo.desc_size as usize;
        let gd = GroupDescs {
            dirty: vec![false; geo.group_count as usize],
            raw,
            desc_size,
            is64: desc_size >= 64,
        };
        let table_blocks = u64::from(geo.blocks_per_inode_table());
        for g in 0..geo.group_count {
            let bad =
                |why: String| WriteError::corrupt(Structure::GroupDescriptor { group: g }, why);
            if geo.group_desc_csum() {
                let stored = le_u16(gd.desc(g), BG_CHECKSUM);
                let computed = gd.checksum(g, geo);
                if stored != computed {
                    return Err(bad(format!(
                        "bg_checksum is {stored:#06x}, computed {computed:#06x}"
                    )));
                }
            }
            let in_fs =
                |b: u64, n: u64| b >= u64::from(geo.first_data_block) && b + n <= geo.blocks_count;
            let checks = [
                ("bg_block_bitmap", gd.block_bitmap(g), 1),
                ("bg_inode_bitmap", gd.inode_bitmap(g), 1),
                ("bg_inode_table", gd.inode_table(g), table_blocks),
            ];
            for (field, b, n) in checks {
                if !in_fs(b, n) {
                    return Err(bad(format!("{field} is {b}, outside the filesystem")));
                }
            }
            if gd.free_blocks(g) > geo.blocks_in_group(g) {
                return Err(bad(format!(
                    "bg_free_blocks_count is {}, more than the group's {} blocks",
                    gd.free_blocks(g),
                    geo.blocks_in_group(g)
                )));
            }
            if gd.free_inodes(g) > geo.inodes_per_group {
                return Err(bad(format!(
                    "bg_free_inodes_count is {}, more than s_inodes_per_group",
                    gd.free_inodes(g)
                )));
            }
            if gd.itable_unused(g) > geo.inodes_per_group {
                return Err(bad(format!("bg_itable_unused is {}", gd.itable_unused(g))));
            }
        }
        Ok(gd)
    }

    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    fn desc(&self, g: u32) -> &[u8] {
        let at = g as usize * self.desc_size;
        &self.raw[at..at + self.desc_size]
    }

    fn desc_mut(&mut self, g: u32) -> &mut [u8] {
        self.dirty[g as usize] = true;
        let at = g as usize * self.desc_size;
        &mut self.raw[at..at + self.desc_size]
    }

    pub fn block_bitmap(&self, g: u32) -> u64 {
        lohi32(self.desc(g), 0x0, 0x20, self.is64)
    }
    pub fn inode_bitmap(&self, g: u32) -> u64 {
        lohi32(self.desc(g), 0x4, 0x24, self.is64)
    }
    pub fn inode_table(&self, g: u32) -> u64 {
        lohi32(self.desc(g), 0x8, 0x28, self.is64)
    }
    pub fn free_blocks(&self, g: u32) -> u32 {
        lohi16(self.desc(g), 0xC, 0x2C, self.is64)
    }
    pub fn free_inodes(&self, g: u32) -> u32 {
        lohi16(self.desc(g), 0xE, 0x2E, self.is64)
    }
    pub fn used_dirs(&self, g: u32) -> u32 {
        lohi16(self.desc(g), 0x10, 0x30, self.is64)
    }
    pub fn flags(&self, g: u32) -> u16 {
        le_u16(self.desc(g), 0x12)
    }
    pub fn itable_unused(&self, g: u32) -> u32 {
        lohi16(self.desc(g), 0x1C, 0x32, self.is64)
    }
    pub fn block_bitmap_csum(&self, g: u32) -> u32 {
        lohi16(self.desc(g), 0x18, 0x38, self.is64)
    }
    pub fn inode_bitmap_csum(&self, g: u32) -> u32 {
        lohi16(self.desc(g), 0x1A, 0x3A, self.is64)
    }

    fn set16(&mut self, g: u32, lo: usize, hi: usize, v: u32) {
        let is64 = self.is64;
        let d = self.desc_mut(g);
        // The lo half is the low 16 bits by definition.
        d[lo..lo + 2].copy_from_slice(&(v as u16).to_le_bytes());
        if is64 {
            d[hi..hi + 2].copy_from_slice(&((v >> 16) as u16).to_le_bytes());
        }
    }

    pub fn set_free_blocks(&mut self, g: u32, v: u32) {
        self.set16(g, 0xC, 0x2C, v);
    }
    pub fn set_free_inodes(&mut self, g: u32, v: u32) {
        self.set16(g, 0xE, 0x2E, v);
    }
    pub fn set_used_dirs(&mut self, g: u32, v: u32) {
        self.set16(g, 0x10, 0x30, v);
    }
    pub fn set_itable_unused(&mut self, g: u32, v: u32) {
        self.set16(g, 0x1C, 0x32, v);
    }
    pub fn set_block_bitmap_csum(&mut self, g: u32, v: u32) {
        self.set16(g, 0x18, 0x38, v);
    }
    pub fn set_inode_bitmap_csum(&mut self, g: u32, v: u32) {
        self.set16(g, 0x1A, 0x3A, v);
    }
    pub fn clear_flag(&mut self, g: u32, flag: u16) {
        let f = self.flags(g) & !flag;
        self.desc_mut(g)[0x12..0x14].copy_from_slice(&f.to_le_bytes());
    }

    /// The descriptor checksum the kernel expects (`ext4_group_desc_csum`).
    fn checksum(&self, g: u32, geo: &Geometry) -> u16 {
        let d = self.desc(g);
        if let Some(seed) = geo.csum_seed {
            let mut c = crc32c_raw(seed, &g.to_le_bytes());
            c = crc32c_raw(c, &d[..BG_CHECKSUM]);
            c = crc32c_raw(c, &[0, 0]);
            if d.len() > BG_CHECKSUM + 2 {
                c = crc32c_raw(c, &d[BG_CHECKSUM + 2..]);
            }
            // The descriptor keeps the low 16 bits.
            return (c & 0xFFFF) as u16;
        }
        let mut c = crc16(!0, &geo.uuid);
        c = crc16(c, &g.to_le_bytes());
        c = crc16(c, &d[..BG_CHECKSUM]);
        if d.len() > BG_CHECKSUM + 2 {
            c = crc16(c, &d[BG_CHECKSUM + 2..]);
        }
        c
    }

    /// Recomputes the checksum of every descriptor changed since loading.
    pub fn finish(&mut self, geo: &Geometry) {
        if !geo.group_desc_csum() {
            return;
        }
        for g in 0..geo.group_count {
            if self.dirty[g as usize] {
                let c = self.checksum(g, geo);
                let at = g as usize * self.desc_size + BG_CHECKSUM;
                self.raw[at..at + 2].copy_from_slice(&c.to_le_bytes());
            }
        }
    }
}
