//! The write transaction: every metadata block, inode, bitmap and
//! descriptor the batch touches is read once, changed in memory and written
//! only at commit, after all operations have succeeded. Before commit the
//! only bytes written are file contents, and only into blocks this batch
//! allocated — so a failure part-way leaves the filesystem as it was.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Read;

use super::bitmap::Bitmap;
use super::dir::DirFormat;
use super::error::{Result, Structure, WriteError};
use super::extent::{self, Extent, Mapping};
use super::geometry::{Geometry, SuperblockBuf};
use super::group_desc::{BG_BLOCK_UNINIT, BG_INODE_UNINIT, GroupDescs};
use super::htree::{DxFormat, NODE_COUNT_OFFSET, ROOT_COUNT_OFFSET};
use super::inode::{Inode, UnixTime};
use super::superblock::{SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE};
use crate::io::PartitionWindow;

/// What a dirty metadata block is, for its checksum at commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// Checksummed already (extent blocks) or not checksummed at all.
    Plain,
    DirLeaf {
        dir: u32,
    },
    DxRoot {
        dir: u32,
    },
    DxNode {
        dir: u32,
    },
}

/// File contents to write at commit.
pub enum Content {
    Bytes(Vec<u8>),
    /// A local file of the given length (checked again when read).
    File {
        path: std::path::PathBuf,
        len: u64,
    },
}

impl Content {
    pub fn len(&self) -> u64 {
        match self {
            Content::Bytes(b) => b.len() as u64,
            Content::File { len, .. } => *len,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A directory loaded for editing.
pub struct DirState {
    pub mapping: Mapping,
    /// Live entries (not `.`/`..`): name → (inode, file type).
    pub names: HashMap<Vec<u8>, (u32, u8)>,
    pub indexed: bool,
    /// Largest free record span per block (linear directories only).
    pub slack: Vec<usize>,
    /// The inode its `..` entry names.
    pub dotdot: u32,
}

pub struct Writer<'w> {
    pub(super) dev: &'w PartitionWindow,
    pub(super) sb: SuperblockBuf,
    pub(super) gd: GroupDescs,
    pub(super) fmt: DirFormat,
    pub(super) dx: DxFormat,
    pub(super) block_bitmaps: HashMap<u32, Bitmap>,
    pub(super) inode_bitmaps: HashMap<u32, Bitmap>,
    pub(super) dirty_block_bitmaps: BTreeSet<u32>,
    pub(super) dirty_inode_bitmaps: BTreeSet<u32>,
    pub(super) inodes: HashMap<u32, Inode>,
    pub(super) dirty_inodes: BTreeSet<u32>,
    pub(super) blocks: HashMap<u64, Vec<u8>>,
    pub(super) dirty_blocks: BTreeMap<u64, BlockKind>,
    /// Blocks allocated by this batch: the only ones written before commit.
    pub(super) new_blocks: HashSet<u64>,
    /// Blocks freed by this batch that held data before it: released only
    /// at commit, so nothing of the old filesystem is overwritten early.
    pub(super) pending_free: Vec<(u64, u32)>,
    pub(super) data: Vec<(Vec<Extent>, Content)>,
    pub(super) dirs: HashMap<u32, DirState>,
    /// Where the next data allocation starts looking.
    pub(super) cursor: u64,
    pub(super) now: UnixTime,
    pub(super) generation: u32,
}

impl<'w> Writer<'w> {
    /// Reads and checks the superblock, descriptors and journal state.
    pub fn open(dev: &'w PartitionWindow, now: UnixTime) -> Result<Writer<'w>> {
        let mut raw = [0u8; SUPERBLOCK_SIZE];
        dev.read_exact_at(SUPERBLOCK_OFFSET, &mut raw)
            .map_err(|e| WriteError::io("reading the ext4 superblock", e))?;
        let sb = SuperblockBuf::parse(raw, dev.len().0)?;
        let geo = sb.geo.clone();
        if !geo.extents() {
            return Err(WriteError::Refused(
                "it lacks the extent feature (ext2/ext3); the writer only makes extent-mapped files"
                    .into(),
            ));
        }
        let mut gdt = vec![0u8; geo.group_count as usize * geo.desc_size as usize];
        dev.read_exact_at(geo.gdt_offset(), &mut gdt)
            .map_err(|e| WriteError::io("reading the ext4 group descriptors", e))?;
        let gd = GroupDescs::parse(gdt, &geo)?;
        let bs = geo.block_size as usize;
        let mut w = Writer {
            dev,
            fmt: DirFormat {
                block_size: bs,
                filetype: geo.filetype(),
                csum: geo.metadata_csum(),
            },
            dx: DxFormat {
                block_size: bs,
                csum: geo.metadata_csum(),
            },
            sb,
            gd,
            block_bitmaps: HashMap::new(),
            inode_bitmaps: HashMap::new(),
            dirty_block_bitmaps: BTreeSet::new(),
            dirty_inode_bitmaps: BTreeSet::new(),
            inodes: HashMap::new(),
            dirty_inodes: BTreeSet::new(),
            blocks: HashMap::new(),
            dirty_blocks: BTreeMap::new(),
            new_blocks: HashSet::new(),
            pending_free: Vec::new(),
            data: Vec::new(),
            dirs: HashMap::new(),
            cursor: 0,
            now,
            generation: 0,
        };
        w.check_journal()?;
        Ok(w)
    }

    pub fn geo(&self) -> &Geometry {
        &self.sb.geo
    }

    /// Refuses a journal with transactions still to replay (`s_start != 0`
    /// in the jbd2 superblock), even when the needs_recovery flag is clear.
    fn check_journal(&mut self) -> Result<()> {
        let jino = self.geo().journal_inum;
        if jino == 0 {
            return Ok(());
        }
        let inode = self.inode(jino)?;
        let first = if inode.uses_extents() {
            let m = self.mapping(jino)?;
            m.lookup(0)
        } else {
            Some(u64::from(crate::io::bytes::le_u32(inode.i_block(), 0)))
        };
        let Some(first) = first.filter(|&b| b != 0) else {
            return Err(WriteError::corrupt(
                Structure::Journal,
                "the journal inode maps no blocks",
            ));
        };
        let jsb = self.read_block(first)?;
        let be32 = |o: usize| u32::from_be_bytes([jsb[o], jsb[o + 1], jsb[o + 2], jsb[o + 3]]);
        if be32(0) != 0xC03B_3998 {
            return Err(WriteError::corrupt(
                Structure::Journal,
                format!("magic is {:#010x}, expected 0xc03b3998", be32(0)),
            ));
        }
        if be32(0x1C) != 0 {
            return Err(WriteError::Refused(
                "its journal holds transactions that were never replayed (s_start ≠ 0); \
                 run `e2fsck -fy` on it first"
                    .into(),
            ));
        }
        Ok(())
    }

    pub(super) fn block_offset(&self, block: u64) -> u64 {
        block * u64::from(self.geo().block_size)
    }

    /// A block straight from the device (not cached).
    pub(super) fn read_block(&self, block: u64) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; self.geo().block_size as usize];
        if block >= self.geo().blocks_count {
            return Err(WriteError::corrupt(
                Structure::Superblock,
                format!("block {block} is past the end of the filesystem"),
            ));
        }
        self.dev
            .read_exact_at(self.block_offset(block), &mut buf)
            .map_err(|e| WriteError::io(format!("reading ext4 block {block}"), e))?;
        Ok(buf)
    }

    /// A metadata block through the cache.
    pub(super) fn block(&mut self, block: u64) -> Result<&mut Vec<u8>> {
        if !self.blocks.contains_key(&block) {
            let data = self.read_block(block)?;
            self.blocks.insert(block, data);
        }
        // Inserted just above if it was missing.
        Ok(self.blocks.get_mut(&block).expect("cached"))
    }

    pub(super) fn mark_dirty(&mut self, block: u64, kind: BlockKind) {
        self.dirty_blocks.insert(block, kind);
    }

    fn inode_location(&self, ino: u32) -> Result<u64> {
        let geo = self.geo();
        if ino == 0 || ino > geo.inodes_count {
            return Err(WriteError::corrupt(
                Structure::Inode { ino },
                format!("inode number out of range (1..={})", geo.inodes_count),
            ));
        }
        let (g, i) = geo.inode_group(ino);
        Ok(self.block_offset(self.gd.inode_table(g)) + u64::from(i) * u64::from(geo.inode_size))
    }

    /// An inode in use, read once and checked.
    pub(super) fn inode(&mut self, ino: u32) -> Result<Inode> {
        if let Some(i) = self.inodes.get(&ino) {
            return Ok(i.clone());
        }
        let at = self.inode_location(ino)?;
        let mut raw = vec![0u8; self.geo().inode_size as usize];
        self.dev
            .read_exact_at(at, &mut raw)
            .map_err(|e| WriteError::io(format!("reading ext4 inode {ino}"), e))?;
        let inode = Inode { ino, raw };
        inode.verify(self.geo())?;
        if inode.links() == 0 || inode.mode() == 0 {
            return Err(WriteError::corrupt(
                Structure::Inode { ino },
                "a directory entry points at an unused inode",
            ));
        }
        let flags = inode.flags();
        if flags & super::inode::EXT4_INLINE_DATA_FL != 0 {
            return Err(WriteError::corrupt(
                Structure::Inode { ino },
                "inline data without the feature",
            ));
        }
        self.inodes.insert(ino, inode.clone());
        Ok(inode)
    }

    pub(super) fn put_inode(&mut self, inode: Inode) {
        self.dirty_inodes.insert(inode.ino);
        self.inodes.insert(inode.ino, inode);
    }

    /// The whole mapping of an extent-mapped inode.
    pub(super) fn mapping(&mut self, ino: u32) -> Result<Mapping> {
        let inode = self.inode(ino)?;
        if !inode.uses_extents() {
            return Err(WriteError::Refused(format!(
                "inode {ino} uses block maps instead of extents; the writer does not edit those"
            )));
        }
        let seed = inode.csum_seed(self.geo());
        let (bs, count) = (self.geo().block_size, self.geo().blocks_count);
        let mut read = |b: u64| -> Result<Vec<u8>> { Ok(self.block(b)?.clone()) };
        extent::read_tree(ino, inode.i_block(), bs, count, seed, &mut read)
    }

    /// A deterministic `i_generation` for a new inode.
    pub(super) fn next_generation(&mut self, ino: u32) -> u32 {
        self.generation = self.generation.wrapping_add(1);
        ino.wrapping_mul(0x9E37_79B9) ^ self.generation
    }

    /// Writes everything: file contents, then metadata blocks, inodes,
    /// bitmaps, descriptors and the superblock.
    pub fn commit(mut self) -> Result<()> {
        for (start, len) in std::mem::take(&mut self.pending_free) {
            self.release_blocks(start, len)?;
        }
        self.write_data()?;
        let dirty: Vec<(u64, BlockKind)> =
            self.dirty_blocks.iter().map(|(b, k)| (*b, *k)).collect();
        for (block, kind) in dirty {
            let seed = match kind {
                BlockKind::Plain => None,
                BlockKind::DirLeaf { dir }
                | BlockKind::DxRoot { dir }
                | BlockKind::DxNode { dir } => {
                    let inode = self.inode(dir)?;
                    inode.csum_seed(self.geo())
                }
            };
            let (fmt, dx) = (self.fmt, self.dx);
            let data = self
                .blocks
                .get_mut(&block)
                .expect("dirty blocks are cached");
            match kind {
                BlockKind::Plain => {}
                BlockKind::DirLeaf { .. } => fmt.finish(data, seed),
                BlockKind::DxRoot { .. } => dx.finish(data, ROOT_COUNT_OFFSET, seed),
                BlockKind::DxNode { .. } => dx.finish(data, NODE_COUNT_OFFSET, seed),
            }
            let off = self.block_offset(block);
            self.dev
                .write_all_at(off, &self.blocks[&block])
                .map_err(|e| WriteError::io(format!("writing ext4 block {block}"), e))?;
        }
        let geo = self.geo().clone();
        for ino in std::mem::take(&mut self.dirty_inodes) {
            let at = self.inode_location(ino)?;
            let inode = self.inodes.get_mut(&ino).expect("dirty inodes are cached");
            inode.finish(&geo);
            self.dev
                .write_all_at(at, &inode.raw)
                .map_err(|e| WriteError::io(format!("writing ext4 inode {ino}"), e))?;
        }
        for g in std::mem::take(&mut self.dirty_block_bitmaps) {
            let bm = &self.block_bitmaps[&g];
            if let Some(seed) = geo.csum_seed {
                let c = bm.checksum(seed, geo.blocks_per_group);
                self.gd.set_block_bitmap_csum(g, c);
            }
            self.gd.clear_flag(g, BG_BLOCK_UNINIT);
            let off = self.block_offset(self.gd.block_bitmap(g));
            self.dev
                .write_all_at(off, &bm.bytes)
                .map_err(|e| WriteError::io(format!("writing the block bitmap of group {g}"), e))?;
        }
        for g in std::mem::take(&mut self.dirty_inode_bitmaps) {
            let bm = &self.inode_bitmaps[&g];
            if let Some(seed) = geo.csum_seed {
                let c = bm.checksum(seed, geo.inodes_per_group);
                self.gd.set_inode_bitmap_csum(g, c);
            }
            self.gd.clear_flag(g, BG_INODE_UNINIT);
            let off = self.block_offset(self.gd.inode_bitmap(g));
            self.dev
                .write_all_at(off, &bm.bytes)
                .map_err(|e| WriteError::io(format!("writing the inode bitmap of group {g}"), e))?;
        }
        self.gd.finish(&geo);
        self.dev
            .write_all_at(geo.gdt_offset(), self.gd.raw())
            .map_err(|e| WriteError::io("writing the ext4 group descriptors", e))?;
        let (mut free_blocks, mut free_inodes) = (0u64, 0u32);
        for g in 0..geo.group_count {
            free_blocks += u64::from(self.gd.free_blocks(g));
            free_inodes += self.gd.free_inodes(g);
        }
        self.sb.set_free_counts(free_blocks, free_inodes);
        let raw = *self.sb.finished();
        self.dev
            .write_all_at(SUPERBLOCK_OFFSET, &raw)
            .map_err(|e| WriteError::io("writing the ext4 superblock", e))?;
        Ok(())
    }

    /// Streams every file's contents into its (new) blocks, zero-filling the
    /// tail of the last block.
    fn write_data(&mut self) -> Result<()> {
        let bs = u64::from(self.geo().block_size);
        const CHUNK: usize = 1 << 20;
        for (extents, content) in std::mem::take(&mut self.data) {
            let len = content.len();
            let mut reader: Box<dyn Read> = match &content {
                Content::Bytes(b) => Box::new(std::io::Cursor::new(b.as_slice())),
                Content::File { path, .. } => Box::new(
                    std::fs::File::open(path)
                        .map_err(|e| WriteError::io(format!("opening {}", path.display()), e))?,
                ),
            };
            let what = match &content {
                Content::Bytes(_) => "file contents".to_string(),
                Content::File { path, .. } => path.display().to_string(),
            };
            let mut left = len;
            let mut buf = vec![0u8; CHUNK];
            for e in &extents {
                let mut off = self.block_offset(e.pblk);
                let mut ext_left = u64::from(e.len) * bs;
                while ext_left > 0 {
                    // Bounded by CHUNK.
                    let n = ext_left.min(CHUNK as u64) as usize;
                    let take = left.min(n as u64) as usize;
                    reader.read_exact(&mut buf[..take]).map_err(|e| {
                        WriteError::io(format!("reading {what} (was it changed?)"), e)
                    })?;
                    buf[take..n].fill(0);
                    self.dev.write_all_at(off, &buf[..n]).map_err(|e| {
                        WriteError::io("writing file contents into the ext4 image", e)
                    })?;
                    left -= take as u64;
                    off += n as u64;
                    ext_left -= n as u64;
                }
            }
            if left != 0 {
                return Err(WriteError::io(
                    format!("writing {what}"),
                    std::io::Error::other("contents longer than the blocks allocated"),
                ));
            }
        }
        Ok(())
    }
}
