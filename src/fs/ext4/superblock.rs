//! The ext4 superblock (kernel `struct ext4_super_block`), read at its hex
//! offsets through the checked helpers and validated before anything else
//! touches the filesystem. Field names are the kernel's.

use serde::Serialize;

use crate::io::bytes::{array, le_u16, le_u32, padded_str};

/// Byte offset of the superblock within the filesystem.
pub const SUPERBLOCK_OFFSET: u64 = 1024;
pub const SUPERBLOCK_SIZE: usize = 1024;
const EXT4_SUPER_MAGIC: u16 = 0xEF53;

// s_feature_compat
const COMPAT_HAS_JOURNAL: u32 = 0x4;
// s_feature_incompat
const INCOMPAT_RECOVER: u32 = 0x4;
const INCOMPAT_EXTENTS: u32 = 0x40;
const INCOMPAT_64BIT: u32 = 0x80;
const INCOMPAT_FLEX_BG: u32 = 0x200;
// s_feature_ro_compat
const RO_COMPAT_HUGE_FILE: u32 = 0x8;
const RO_COMPAT_DIR_NLINK: u32 = 0x20;
const RO_COMPAT_EXTRA_ISIZE: u32 = 0x40;
const RO_COMPAT_BIGALLOC: u32 = 0x200;
const RO_COMPAT_METADATA_CSUM: u32 = 0x400;

/// A superblock field with an impossible value, or a bad checksum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SuperblockError {
    #[error("ext4 superblock is corrupt: {field} is {value} ({why})")]
    Field {
        field: &'static str,
        value: u64,
        why: &'static str,
    },
    #[error(
        "ext4 superblock is corrupt: s_checksum is {stored:#010x}, but the superblock's \
         crc32c is {computed:#010x}"
    )]
    Checksum { stored: u32, computed: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExtVersion {
    Ext2,
    Ext3,
    Ext4,
}

/// The superblock fields inspect and later the writer need.
#[derive(Debug, Clone)]
pub struct Superblock {
    pub s_inodes_count: u32,
    pub s_blocks_count: u64,
    pub s_log_block_size: u32,
    pub s_blocks_per_group: u32,
    pub s_inodes_per_group: u32,
    pub s_state: u16,
    pub s_rev_level: u32,
    pub s_inode_size: u16,
    pub s_feature_compat: u32,
    pub s_feature_incompat: u32,
    pub s_feature_ro_compat: u32,
    pub s_uuid: [u8; 16],
    pub s_volume_name: String,
}

impl Superblock {
    /// True when the magic number is present: the bytes claim to be ext2/3/4.
    pub fn has_magic(raw: &[u8]) -> bool {
        raw.len() >= SUPERBLOCK_SIZE && le_u16(raw, 0x38) == EXT4_SUPER_MAGIC
    }

    /// Parses and checks a 1024-byte superblock of a filesystem that lives
    /// in `volume_len` bytes.
    pub fn parse(raw: &[u8], volume_len: u64) -> Result<Superblock, SuperblockError> {
        let bad = |field, value: u64, why| SuperblockError::Field { field, value, why };
        let magic = le_u16(raw, 0x38);
        if magic != EXT4_SUPER_MAGIC {
            return Err(bad("s_magic", magic.into(), "must be 0xEF53"));
        }
        let sb = Superblock {
            s_inodes_count: le_u32(raw, 0x0),
            s_blocks_count: u64::from(le_u32(raw, 0x4)),
            s_log_block_size: le_u32(raw, 0x18),
            s_blocks_per_group: le_u32(raw, 0x20),
            s_inodes_per_group: le_u32(raw, 0x28),
            s_state: le_u16(raw, 0x3A),
            s_rev_level: le_u32(raw, 0x4C),
            s_inode_size: if le_u32(raw, 0x4C) == 0 {
                128
            } else {
                le_u16(raw, 0x58)
            },
            s_feature_compat: le_u32(raw, 0x5C),
            s_feature_incompat: le_u32(raw, 0x60),
            s_feature_ro_compat: le_u32(raw, 0x64),
            s_uuid: array(raw, 0x68),
            s_volume_name: padded_str(&raw[0x78..0x88]),
        };
        let sb = Superblock {
            s_blocks_count: if sb.s_feature_incompat & INCOMPAT_64BIT != 0 {
                sb.s_blocks_count | (u64::from(le_u32(raw, 0x150)) << 32)
            } else {
                sb.s_blocks_count
            },
            ..sb
        };
        if sb.s_log_block_size > 6 {
            return Err(bad(
                "s_log_block_size",
                sb.s_log_block_size.into(),
                "block sizes above 64 KiB do not exist",
            ));
        }
        let block_size = sb.block_size();
        if sb.s_rev_level > 1 {
            return Err(bad(
                "s_rev_level",
                sb.s_rev_level.into(),
                "only revisions 0 and 1 exist",
            ));
        }
        let inode_size = u32::from(sb.s_inode_size);
        if inode_size < 128 || !inode_size.is_power_of_two() || inode_size > block_size {
            return Err(bad(
                "s_inode_size",
                inode_size.into(),
                "must be a power of two from 128 to the block size",
            ));
        }
        // With bigalloc the bitmap counts clusters, so groups hold more
        // blocks than a bitmap has bits.
        let bigalloc = sb.s_feature_ro_compat & RO_COMPAT_BIGALLOC != 0;
        let per_group_max = if bigalloc { u32::MAX } else { 8 * block_size };
        if sb.s_blocks_per_group == 0 || sb.s_blocks_per_group > per_group_max {
            return Err(bad(
                "s_blocks_per_group",
                sb.s_blocks_per_group.into(),
                "must be between 1 and 8 × the block size",
            ));
        }
        if sb.s_inodes_per_group == 0 || sb.s_inodes_per_group > 8 * block_size {
            return Err(bad(
                "s_inodes_per_group",
                sb.s_inodes_per_group.into(),
                "must be between 1 and 8 × the block size",
            ));
        }
        if sb.s_blocks_count == 0 {
            return Err(bad("s_blocks_count", 0, "the filesystem has no blocks"));
        }
        let fs_bytes = sb.s_blocks_count.saturating_mul(u64::from(block_size));
        if fs_bytes > volume_len {
            return Err(bad(
                "s_blocks_count",
                sb.s_blocks_count,
                "the filesystem is larger than its partition",
            ));
        }
        if sb.has_ro_compat(RO_COMPAT_METADATA_CSUM) {
            let stored = le_u32(raw, 0x3FC);
            // The kernel stores the raw crc32c (seed ~0, no final inversion)
            // of everything before s_checksum.
            let computed = !crc32c::crc32c(&raw[..0x3FC]);
            if stored != computed {
                return Err(SuperblockError::Checksum { stored, computed });
            }
        }
        Ok(sb)
    }

    pub fn block_size(&self) -> u32 {
        1024 << self.s_log_block_size
    }

    pub fn has_ro_compat(&self, bit: u32) -> bool {
        self.s_feature_ro_compat & bit != 0
    }

    /// Whether the journal has transactions waiting to be replayed.
    pub fn needs_recovery(&self) -> bool {
        self.s_feature_incompat & INCOMPAT_RECOVER != 0
    }

    /// What blkid would call it.
    pub fn version(&self) -> ExtVersion {
        let ext4_incompat = INCOMPAT_EXTENTS | INCOMPAT_64BIT | INCOMPAT_FLEX_BG;
        let ext4_ro = RO_COMPAT_HUGE_FILE
            | RO_COMPAT_DIR_NLINK
            | RO_COMPAT_EXTRA_ISIZE
            | RO_COMPAT_METADATA_CSUM;
        if self.s_feature_incompat & ext4_incompat != 0 || self.s_feature_ro_compat & ext4_ro != 0 {
            ExtVersion::Ext4
        } else if self.s_feature_compat & COMPAT_HAS_JOURNAL != 0 {
            ExtVersion::Ext3
        } else {
            ExtVersion::Ext2
        }
    }

    /// The UUID in its usual lower-case dashed form.
    pub fn uuid(&self) -> String {
        let u = &self.s_uuid;
        let hex: String = u.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }
}
