//! The writer's view of the superblock: the raw 1024 bytes (kept, so fields
//! we do not model survive untouched) and the geometry derived from them,
//! validated once. Field names and offsets are the kernel's
//! `struct ext4_super_block`.

use super::checksum::{crc32c_raw, fs_seed};
use super::error::{Result, Structure, WriteError};
use super::features::{compat, incompat, ro_compat};
use super::superblock::{SUPERBLOCK_SIZE, Superblock};
use crate::io::bytes::{array, le_u16, le_u32};

const EXT4_VALID_FS: u16 = 0x1;
const EXT4_ERROR_FS: u16 = 0x2;
const EXT2_FLAGS_UNSIGNED_HASH: u32 = 0x2;

#[derive(Debug, Clone)]
pub struct Geometry {
    pub block_size: u32,
    pub blocks_count: u64,
    pub first_data_block: u32,
    pub blocks_per_group: u32,
    pub inodes_per_group: u32,
    pub inodes_count: u32,
    pub inode_size: u32,
    pub desc_size: u32,
    pub group_count: u32,
    pub first_ino: u32,
    pub reserved_gdt_blocks: u32,
    pub compat: u32,
    pub incompat: u32,
    pub ro_compat: u32,
    /// `Some(seed)` with `metadata_csum`.
    pub csum_seed: Option<u32>,
    pub uuid: [u8; 16],
    pub hash_seed: [u32; 4],
    pub def_hash_version: u8,
    pub hash_unsigned: bool,
    pub want_extra_isize: u16,
    /// `Some` with `sparse_super2`: the only two groups with backups.
    pub backup_bgs: Option<[u32; 2]>,
    pub journal_inum: u32,
}

impl Geometry {
    pub fn has_incompat(&self, bit: u32) -> bool {
        self.incompat & bit != 0
    }
    pub fn has_ro_compat(&self, bit: u32) -> bool {
        self.ro_compat & bit != 0
    }
    pub fn has_compat(&self, bit: u32) -> bool {
        self.compat & bit != 0
    }
    pub fn metadata_csum(&self) -> bool {
        self.csum_seed.is_some()
    }
    /// Whether descriptors carry a checksum and lazy-init flags.
    pub fn group_desc_csum(&self) -> bool {
        self.metadata_csum() || self.has_ro_compat(ro_compat::GDT_CSUM)
    }
    pub fn extents(&self) -> bool {
        self.has_incompat(incompat::EXTENTS)
    }
    pub fn filetype(&self) -> bool {
        self.has_incompat(incompat::FILETYPE)
    }
    pub fn dir_index(&self) -> bool {
        self.has_compat(compat::DIR_INDEX)
    }

    /// First block of `group`.
    pub fn group_first_block(&self, group: u32) -> u64 {
        u64::from(self.first_data_block) + u64::from(group) * u64::from(self.blocks_per_group)
    }

    /// Number of blocks in `group` (the last one may be short).
    pub fn blocks_in_group(&self, group: u32) -> u32 {
        let first = self.group_first_block(group);
        let left = self.blocks_count - first;
        // Bounded by blocks_per_group, a u32.
        left.min(u64::from(self.blocks_per_group)) as u32
    }

    /// The group holding block `block` and its index inside the group.
    pub fn block_group(&self, block: u64) -> (u32, u32) {
        let rel = block - u64::from(self.first_data_block);
        let bpg = u64::from(self.blocks_per_group);
        // group_count fits u32, so rel / bpg does; rel % bpg < bpg (a u32).
        ((rel / bpg) as u32, (rel % bpg) as u32)
    }

    /// Whether `group` carries a superblock and GDT backup.
    pub fn has_super_backup(&self, group: u32) -> bool {
        if group == 0 {
            return true;
        }
        if let Some(bgs) = self.backup_bgs {
            return group == bgs[0] || group == bgs[1];
        }
        if !self.has_ro_compat(ro_compat::SPARSE_SUPER) {
            return true;
        }
        if group == 1 {
            return true;
        }
        [3u32, 5, 7].iter().any(|&p| is_power_of(group, p))
    }

    /// Blocks holding the group descriptor table.
    pub fn gdt_blocks(&self) -> u32 {
        let bytes = u64::from(self.group_count) * u64::from(self.desc_size);
        // At most group_count * 64 / 1024 blocks: fits u32.
        bytes.div_ceil(u64::from(self.block_size)) as u32
    }

    pub fn blocks_per_inode_table(&self) -> u32 {
        (self.inodes_per_group * self.inode_size).div_ceil(self.block_size)
    }

    /// Byte offset of the primary GDT.
    pub fn gdt_offset(&self) -> u64 {
        (u64::from(self.first_data_block) + 1) * u64::from(self.block_size)
    }

    pub fn inode_group(&self, ino: u32) -> (u32, u32) {
        (
            (ino - 1) / self.inodes_per_group,
            (ino - 1) % self.inodes_per_group,
        )
    }

    /// `i_extra_isize` for inodes we create.
    pub fn new_extra_isize(&self) -> u16 {
        if self.inode_size <= 128 {
            return 0;
        }
        // inode_size ≤ block size ≤ 4096, so this fits.
        let room = (self.inode_size - 128) as u16;
        self.want_extra_isize.max(32).min(room)
    }
}

fn is_power_of(mut n: u32, p: u32) -> bool {
    while n > 1 && n.is_multiple_of(p) {
        n /= p;
    }
    n == 1
}

/// The superblock as the writer holds it: raw bytes plus geometry.
pub struct SuperblockBuf {
    pub raw: [u8; SUPERBLOCK_SIZE],
    pub geo: Geometry,
}

impl SuperblockBuf {
    /// Parses `raw` (already read from offset 1024 of a volume of
    /// `volume_len` bytes) and refuses states the writer must not touch.
    pub fn parse(raw: [u8; SUPERBLOCK_SIZE], volume_len: u64) -> Result<SuperblockBuf> {
        let sb = Superblock::parse(&raw, volume_len)?;
        let bad = |why: String| WriteError::corrupt(Structure::Superblock, why);
        let block_size = sb.block_size();
        if block_size > 4096 {
            return Err(WriteError::Refused(format!(
                "its block size is {block_size} bytes; the writer handles 1, 2 and 4 KiB"
            )));
        }
        super::features::check_writable(sb.s_feature_incompat, sb.s_feature_ro_compat)
            .map_err(WriteError::Refused)?;
        let state = sb.s_state;
        if state & EXT4_VALID_FS == 0 || state & EXT4_ERROR_FS != 0 {
            return Err(WriteError::Refused(format!(
                "s_state is {state:#x}: the filesystem was not cleanly unmounted or has \
                 errors; run `e2fsck -f` on it first"
            )));
        }
        let s_last_orphan = le_u32(&raw, 0xE8);
        if s_last_orphan != 0 {
            return Err(WriteError::Refused(format!(
                "it has an orphan list (s_last_orphan = {s_last_orphan}); run `e2fsck -f` first"
            )));
        }
        let first_data_block = le_u32(&raw, 0x14);
        if first_data_block != u32::from(block_size == 1024) {
            return Err(bad(format!(
                "s_first_data_block is {first_data_block}, expected {} for {block_size}-byte blocks",
                u32::from(block_size == 1024)
            )));
        }
        let incompat = sb.s_feature_incompat;
        let ro = sb.s_feature_ro_compat;
        let desc_size = if incompat & incompat::BIT64 != 0 {
            u32::from(le_u16(&raw, 0xFE))
        } else {
            32
        };
        if !(32..=1024).contains(&desc_size) || !desc_size.is_power_of_two() {
            return Err(bad(format!("s_desc_size is {desc_size}")));
        }
        if incompat & incompat::BIT64 != 0 && desc_size < 64 {
            return Err(bad(format!(
                "s_desc_size is {desc_size} with 64bit (minimum 64)"
            )));
        }
        let data_blocks = sb.s_blocks_count - u64::from(first_data_block);
        let group_count_64 = data_blocks.div_ceil(u64::from(sb.s_blocks_per_group));
        let group_count = u32::try_from(group_count_64)
            .map_err(|_| bad(format!("{group_count_64} block groups")))?;
        let inodes_count = sb.s_inodes_count;
        if u64::from(group_count) * u64::from(sb.s_inodes_per_group) != u64::from(inodes_count) {
            return Err(bad(format!(
                "s_inodes_count is {inodes_count}, but {group_count} groups × \
                 s_inodes_per_group {} differ",
                sb.s_inodes_per_group
            )));
        }
        let metadata_csum = ro & ro_compat::METADATA_CSUM != 0;
        if metadata_csum && raw[0x175] != 1 {
            return Err(bad(format!(
                "s_checksum_type is {} (only 1, crc32c, exists)",
                raw[0x175]
            )));
        }
        let uuid: [u8; 16] = array(&raw, 0x68);
        let csum_seed = metadata_csum.then(|| {
            let explicit = (incompat & incompat::CSUM_SEED != 0).then(|| le_u32(&raw, 0x270));
            fs_seed(&uuid, explicit)
        });
        let compat_bits = sb.s_feature_compat;
        let first_ino = if sb.s_rev_level == 0 {
            11
        } else {
            le_u32(&raw, 0x54)
        };
        if first_ino < 11 || first_ino >= inodes_count {
            return Err(bad(format!("s_first_ino is {first_ino}")));
        }
        let hash_seed = [
            le_u32(&raw, 0xEC),
            le_u32(&raw, 0xF0),
            le_u32(&raw, 0xF4),
            le_u32(&raw, 0xF8),
        ];
        let geo = Geometry {
            block_size,
            blocks_count: sb.s_blocks_count,
            first_data_block,
            blocks_per_group: sb.s_blocks_per_group,
            inodes_per_group: sb.s_inodes_per_group,
            inodes_count,
            inode_size: u32::from(sb.s_inode_size),
            desc_size,
            group_count,
            first_ino,
            reserved_gdt_blocks: u32::from(le_u16(&raw, 0xCE)),
            compat: compat_bits,
            incompat,
            ro_compat: ro,
            csum_seed,
            uuid,
            hash_seed,
            def_hash_version: raw[0xFC],
            hash_unsigned: le_u32(&raw, 0x160) & EXT2_FLAGS_UNSIGNED_HASH != 0,
            want_extra_isize: le_u16(&raw, 0x15E),
            backup_bgs: (compat_bits & compat::SPARSE_SUPER2 != 0)
                .then(|| [le_u32(&raw, 0x24C), le_u32(&raw, 0x250)]),
            journal_inum: if compat_bits & compat::HAS_JOURNAL != 0 {
                le_u32(&raw, 0xE0)
            } else {
                0
            },
        };
        if !geo.blocks_per_group.is_multiple_of(8) || !geo.inodes_per_group.is_multiple_of(8) {
            return Err(bad(
                "blocks or inodes per group are not a multiple of 8".into()
            ));
        }
        if geo.def_hash_version > 5 && geo.dir_index() {
            return Err(bad(format!(
                "s_def_hash_version is {}",
                geo.def_hash_version
            )));
        }
        Ok(SuperblockBuf { raw, geo })
    }

    pub fn set_free_counts(&mut self, free_blocks: u64, free_inodes: u32) {
        // Split into the lo/hi halves; the hi half exists only with 64bit.
        self.raw[0x0C..0x10].copy_from_slice(&(free_blocks as u32).to_le_bytes());
        if self.geo.has_incompat(incompat::BIT64) {
            self.raw[0x158..0x15C].copy_from_slice(&((free_blocks >> 32) as u32).to_le_bytes());
        }
        self.raw[0x10..0x14].copy_from_slice(&free_inodes.to_le_bytes());
    }

    pub fn set_ro_compat(&mut self, bit: u32) {
        self.geo.ro_compat |= bit;
        self.raw[0x64..0x68].copy_from_slice(&self.geo.ro_compat.to_le_bytes());
    }

    /// The bytes to write back, with `s_checksum` recomputed.
    pub fn finished(&mut self) -> &[u8; SUPERBLOCK_SIZE] {
        if self.geo.metadata_csum() {
            let c = crc32c_raw(!0, &self.raw[..0x3FC]);
            self.raw[0x3FC..0x400].copy_from_slice(&c.to_le_bytes());
        }
        &self.raw
    }
}
