//! On-disk inodes (kernel `struct ext4_inode`): field access at the spec's
//! offsets, construction of new inodes, and the inode checksum.

use super::checksum::{crc32c_raw, inode_seed};
use super::error::{Result, Structure, WriteError};
use super::geometry::Geometry;
use crate::io::bytes::{le_u16, le_u32};

pub const S_IFMT: u16 = 0o170000;
pub const S_IFREG: u16 = 0o100000;
pub const S_IFDIR: u16 = 0o040000;
pub const S_IFLNK: u16 = 0o120000;
pub const S_IFIFO: u16 = 0o010000;
pub const S_IFCHR: u16 = 0o020000;
pub const S_IFBLK: u16 = 0o060000;
pub const S_IFSOCK: u16 = 0o140000;

pub const EXT4_INDEX_FL: u32 = 0x1000;
pub const EXT4_HUGE_FILE_FL: u32 = 0x40000;
pub const EXT4_EXTENTS_FL: u32 = 0x80000;
pub const EXT4_INLINE_DATA_FL: u32 = 0x1000_0000;
pub const EXT4_CASEFOLD_FL: u32 = 0x4000_0000;
pub const EXT4_ENCRYPT_FL: u32 = 0x800;

const I_CHECKSUM_LO: usize = 0x7C;
const I_CHECKSUM_HI: usize = 0x82;
/// `i_extra_isize` must reach past `i_checksum_hi` for it to exist.
const CSUM_HI_EXTRA_END: u16 = 4;

/// Timestamps we set: seconds since the epoch (nanoseconds are zero).
pub type UnixTime = i64;

#[derive(Clone)]
pub struct Inode {
    pub ino: u32,
    pub raw: Vec<u8>,
}

impl Inode {
    fn u16_at(&self, off: usize) -> u16 {
        le_u16(&self.raw, off)
    }
    fn u32_at(&self, off: usize) -> u32 {
        le_u32(&self.raw, off)
    }
    fn put16(&mut self, off: usize, v: u16) {
        self.raw[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }
    fn put32(&mut self, off: usize, v: u32) {
        self.raw[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    pub fn mode(&self) -> u16 {
        self.u16_at(0x0)
    }
    pub fn file_type(&self) -> u16 {
        self.mode() & S_IFMT
    }
    pub fn is_dir(&self) -> bool {
        self.file_type() == S_IFDIR
    }
    /// A FIFO, socket or device node: no data blocks (a device's numbers
    /// live in `i_block`).
    pub fn is_special(&self) -> bool {
        matches!(self.file_type(), S_IFIFO | S_IFCHR | S_IFBLK | S_IFSOCK)
    }
    pub fn size(&self) -> u64 {
        u64::from(self.u32_at(0x4)) | (u64::from(self.u32_at(0x6C)) << 32)
    }
    pub fn links(&self) -> u16 {
        self.u16_at(0x1A)
    }
    pub fn flags(&self) -> u32 {
        self.u32_at(0x20)
    }
    pub fn generation(&self) -> u32 {
        self.u32_at(0x64)
    }
    pub fn file_acl(&self) -> u64 {
        u64::from(self.u32_at(0x68)) | (u64::from(self.u16_at(0x76)) << 32)
    }
    pub fn extra_isize(&self) -> u16 {
        if self.raw.len() > 128 {
            self.u16_at(0x80)
        } else {
            0
        }
    }
    /// `i_block`: the extent root, block map or fast symlink target.
    pub fn i_block(&self) -> &[u8] {
        &self.raw[0x28..0x28 + 60]
    }
    pub fn i_block_mut(&mut self) -> &mut [u8] {
        &mut self.raw[0x28..0x28 + 60]
    }
    pub fn uses_extents(&self) -> bool {
        self.flags() & EXT4_EXTENTS_FL != 0
    }

    pub fn set_mode(&mut self, mode: u16) {
        self.put16(0x0, mode);
    }
    pub fn set_owner(&mut self, uid: u32, gid: u32) {
        // Split into the 16-bit lo and hi halves the format stores.
        self.put16(0x2, uid as u16);
        self.put16(0x78, (uid >> 16) as u16);
        self.put16(0x18, gid as u16);
        self.put16(0x7A, (gid >> 16) as u16);
    }
    pub fn set_size(&mut self, size: u64) {
        self.put32(0x4, size as u32);
        self.put32(0x6C, (size >> 32) as u32);
    }
    pub fn set_links(&mut self, n: u16) {
        self.put16(0x1A, n);
    }
    pub fn set_flags(&mut self, flags: u32) {
        self.put32(0x20, flags);
    }
    pub fn set_dtime(&mut self, t: u32) {
        self.put32(0x14, t);
    }
    pub fn set_file_acl(&mut self, block: u64) {
        self.put32(0x68, block as u32);
        self.put16(0x76, (block >> 32) as u16);
    }

    /// Blocks in use (data and tree), as `i_blocks` counts them.
    pub fn set_fs_blocks(&mut self, geo: &Geometry, blocks: u64) -> Result<()> {
        let sectors = blocks * u64::from(geo.block_size / 512);
        if sectors >= 1 << 48 {
            return Err(WriteError::corrupt(
                Structure::Inode { ino: self.ino },
                "file too large for i_blocks without HUGE_FILE_FL",
            ));
        }
        self.put32(0x1C, sectors as u32);
        self.put16(0x74, (sectors >> 32) as u16);
        let flags = self.flags() & !EXT4_HUGE_FILE_FL;
        self.set_flags(flags);
        Ok(())
    }

    /// Sets `which` of atime/ctime/mtime/crtime (seconds; the extra fields
    /// carry the epoch bits and zero nanoseconds).
    pub fn set_times(&mut self, t: UnixTime, atime: bool, ctime: bool, mtime: bool) {
        let lo = t as u32; // the low 32 bits, as the format stores them
        let epoch = (((t - i64::from(lo as i32)) >> 32) & 3) as u32;
        let extra = self.extra_isize();
        let mut put = |base: usize, extra_off: usize| {
            self.put32(base, lo);
            if extra_off != 0 && usize::from(extra) + 128 >= extra_off + 4 {
                self.put32(extra_off, epoch);
            }
        };
        if atime {
            put(0x8, 0x8C);
        }
        if ctime {
            put(0xC, 0x84);
        }
        if mtime {
            put(0x10, 0x88);
        }
    }

    /// A zeroed inode of the filesystem's size with `mode`, owner, times,
    /// `i_extra_isize` and generation set; flags are the caller's.
    pub fn new(
        geo: &Geometry,
        ino: u32,
        mode: u16,
        uid: u32,
        gid: u32,
        t: UnixTime,
        generation: u32,
    ) -> Inode {
        let mut inode = Inode {
            ino,
            raw: vec![0; geo.inode_size as usize],
        };
        inode.set_mode(mode);
        inode.set_owner(uid, gid);
        if inode.raw.len() > 128 {
            inode.put16(0x80, geo.new_extra_isize());
        }
        inode.set_times(t, true, true, true);
        if usize::from(inode.extra_isize()) + 128 >= 0x98 {
            // i_crtime and its extra field.
            let lo = t as u32;
            inode.put32(0x90, lo);
        }
        inode.put32(0x64, generation);
        inode
    }

    /// The checksum the kernel computes (`ext4_inode_csum`).
    pub fn checksum(&self, fs_seed: u32) -> u32 {
        let seed = inode_seed(fs_seed, self.ino, self.generation());
        let mut copy = self.raw.clone();
        copy[I_CHECKSUM_LO..I_CHECKSUM_LO + 2].fill(0);
        if self.has_csum_hi() {
            copy[I_CHECKSUM_HI..I_CHECKSUM_HI + 2].fill(0);
        }
        crc32c_raw(seed, &copy)
    }

    fn has_csum_hi(&self) -> bool {
        self.raw.len() > 128 && self.extra_isize() >= CSUM_HI_EXTRA_END
    }

    pub fn verify(&self, geo: &Geometry) -> Result<()> {
        let bad = |why: String| WriteError::corrupt(Structure::Inode { ino: self.ino }, why);
        if self.raw.len() > 128 {
            let extra = self.extra_isize();
            if usize::from(extra) + 128 > self.raw.len() || !extra.is_multiple_of(4) {
                return Err(bad(format!("i_extra_isize is {extra}")));
            }
        }
        if let Some(seed) = geo.csum_seed {
            let c = self.checksum(seed);
            let stored_lo = self.u16_at(I_CHECKSUM_LO);
            let ok = if self.has_csum_hi() {
                u32::from(stored_lo) | (u32::from(self.u16_at(I_CHECKSUM_HI)) << 16) == c
            } else {
                u32::from(stored_lo) == c & 0xFFFF
            };
            if !ok {
                return Err(bad(format!("inode checksum mismatch (computed {c:#010x})")));
            }
        }
        Ok(())
    }

    /// Stores the checksum; call after the last change.
    pub fn finish(&mut self, geo: &Geometry) {
        if let Some(seed) = geo.csum_seed {
            let c = self.checksum(seed);
            self.put16(I_CHECKSUM_LO, (c & 0xFFFF) as u16);
            if self.has_csum_hi() {
                self.put16(I_CHECKSUM_HI, (c >> 16) as u16);
            }
        }
    }

    /// The seed for this inode's extent and directory block checksums.
    pub fn csum_seed(&self, geo: &Geometry) -> Option<u32> {
        geo.csum_seed
            .map(|s| inode_seed(s, self.ino, self.generation()))
    }
}
