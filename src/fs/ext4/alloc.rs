//! Block and inode allocation over the group bitmaps (e2fsprogs `alloc.c`,
//! kernel `balloc.c`/`ialloc.c`): lazy-init groups are initialised first,
//! descriptor counters and `bg_itable_unused` kept in step, and blocks that
//! held data before the batch are only released at commit.

use super::bitmap::{self, Bitmap};
use super::error::{Result, Structure, WriteError};
use super::group_desc::{BG_BLOCK_UNINIT, BG_INODE_UNINIT};
use super::writer::Writer;

impl Writer<'_> {
    fn uninit(&self, g: u32, flag: u16) -> bool {
        self.geo().group_desc_csum() && self.gd.flags(g) & flag != 0
    }

    /// The block bitmap of group `g`, loaded (or built, for BLOCK_UNINIT)
    /// and checked against the descriptor.
    pub(super) fn block_bitmap(&mut self, g: u32) -> Result<&mut Bitmap> {
        if !self.block_bitmaps.contains_key(&g) {
            let geo = self.geo().clone();
            let bad = |why: String| WriteError::corrupt(Structure::BlockBitmap { group: g }, why);
            let bm = if self.uninit(g, BG_BLOCK_UNINIT) {
                bitmap::init_block_bitmap(&geo, &self.gd, g)
            } else {
                let bm = Bitmap {
                    bytes: self.read_block(self.gd.block_bitmap(g))?,
                };
                if let Some(seed) = geo.csum_seed {
                    let c = bm.checksum(seed, geo.blocks_per_group);
                    let stored = self.gd.block_bitmap_csum(g);
                    let c = if geo.desc_size >= 64 { c } else { c & 0xFFFF };
                    if stored != c {
                        return Err(bad(format!("checksum is {stored:#x}, computed {c:#x}")));
                    }
                }
                bm
            };
            let n = geo.blocks_in_group(g);
            let used = bm.count_set(n);
            let free = self.gd.free_blocks(g);
            if n - used != free {
                return Err(bad(format!(
                    "{} blocks are free in the bitmap, bg_free_blocks_count says {free}",
                    n - used
                )));
            }
            self.block_bitmaps.insert(g, bm);
        }
        Ok(self.block_bitmaps.get_mut(&g).expect("loaded above"))
    }

    pub(super) fn inode_bitmap(&mut self, g: u32) -> Result<&mut Bitmap> {
        if !self.inode_bitmaps.contains_key(&g) {
            let geo = self.geo().clone();
            let bad = |why: String| WriteError::corrupt(Structure::InodeBitmap { group: g }, why);
            let bm = if self.uninit(g, BG_INODE_UNINIT) {
                bitmap::init_inode_bitmap(&geo)
            } else {
                let bm = Bitmap {
                    bytes: self.read_block(self.gd.inode_bitmap(g))?,
                };
                if let Some(seed) = geo.csum_seed {
                    let c = bm.checksum(seed, geo.inodes_per_group);
                    let stored = self.gd.inode_bitmap_csum(g);
                    let c = if geo.desc_size >= 64 { c } else { c & 0xFFFF };
                    if stored != c {
                        return Err(bad(format!("checksum is {stored:#x}, computed {c:#x}")));
                    }
                }
                bm
            };
            let used = bm.count_set(geo.inodes_per_group);
            let free = self.gd.free_inodes(g);
            if geo.inodes_per_group - used != free {
                return Err(bad(format!(
                    "{} inodes are free in the bitmap, bg_free_inodes_count says {free}",
                    geo.inodes_per_group - used
                )));
            }
            self.inode_bitmaps.insert(g, bm);
        }
        Ok(self.inode_bitmaps.get_mut(&g).expect("loaded above"))
    }

    pub(super) fn free_blocks_total(&self) -> u64 {
        (0..self.geo().group_count)
            .map(|g| u64::from(self.gd.free_blocks(g)))
            .sum()
    }

    pub(super) fn free_inodes_total(&self) -> u64 {
        (0..self.geo().group_count)
            .map(|g| u64::from(self.gd.free_inodes(g)))
            .sum()
    }

    fn no_space_blocks(&self, needed: u64) -> WriteError {
        WriteError::NoSpace {
            what: "blocks",
            needed,
            free: self.free_blocks_total(),
            hint: format!(" ({}-byte blocks)", self.geo().block_size),
        }
    }

    /// Allocates a run of 1..=`max` contiguous blocks, searching from `goal`
    /// and wrapping around once.
    pub(super) fn alloc_run(&mut self, goal: u64, max: u32) -> Result<(u64, u32)> {
        let geo = self.geo().clone();
        let goal = if goal < u64::from(geo.first_data_block) || goal >= geo.blocks_count {
            u64::from(geo.first_data_block)
        } else {
            goal
        };
        let (g0, bit0) = geo.block_group(goal);
        for step in 0..=geo.group_count {
            let g = (g0 + step) % geo.group_count;
            let from = if step == 0 { bit0 } else { 0 };
            if step == geo.group_count && bit0 == 0 {
                break;
            }
            if self.gd.free_blocks(g) == 0 {
                continue;
            }
            let n = geo.blocks_in_group(g);
            let bm = self.block_bitmap(g)?;
            let Some(start) = bm.find_clear(from, n) else {
                continue;
            };
            let mut len = 1;
            while len < max && start + len < n && !bm.get(start + len) {
                len += 1;
            }
            for bit in start..start + len {
                bm.set(bit);
            }
            self.dirty_block_bitmaps.insert(g);
            let free = self.gd.free_blocks(g) - len;
            self.gd.set_free_blocks(g, free);
            let first = geo.group_first_block(g) + u64::from(start);
            for b in first..first + u64::from(len) {
                self.new_blocks.insert(b);
            }
            return Ok((first, len));
        }
        Err(self.no_space_blocks(u64::from(max)))
    }

    pub(super) fn alloc_block(&mut self, goal: u64) -> Result<u64> {
        Ok(self.alloc_run(goal, 1)?.0)
    }

    /// Frees blocks: at once if this batch allocated them, else at commit.
    pub(super) fn free_blocks(&mut self, start: u64, len: u32) -> Result<()> {
        let mut run_start = start;
        let mut run_new = None;
        for b in start..start + u64::from(len) {
            let is_new = self.new_blocks.contains(&b);
            if run_new.is_some_and(|n| n != is_new) {
                self.free_run(run_start, b, run_new == Some(true))?;
                run_start = b;
            }
            run_new = Some(is_new);
        }
        if let Some(n) = run_new {
            self.free_run(run_start, start + u64::from(len), n)?;
        }
        Ok(())
    }

    fn free_run(&mut self, from: u64, to: u64, is_new: bool) -> Result<()> {
        // A run is within one extent: at most 32768 blocks.
        let len = (to - from) as u32;
        if is_new {
            for b in from..to {
                self.new_blocks.remove(&b);
                self.blocks.remove(&b);
                self.dirty_blocks.remove(&b);
            }
            self.release_blocks(from, len)
        } else {
            self.pending_free.push((from, len));
            Ok(())
        }
    }

    /// Clears the bits of `len` blocks from `start` and credits the groups.
    pub(super) fn release_blocks(&mut self, start: u64, len: u32) -> Result<()> {
        let geo = self.geo().clone();
        for b in start..start + u64::from(len) {
            let (g, bit) = geo.block_group(b);
            let bm = self.block_bitmap(g)?;
            if !bm.get(bit) {
                return Err(WriteError::corrupt(
                    Structure::BlockBitmap { group: g },
                    format!("block {b} is in use by a file but free in the bitmap"),
                ));
            }
            bm.clear(bit);
            self.dirty_block_bitmaps.insert(g);
            let free = self.gd.free_blocks(g) + 1;
            self.gd.set_free_blocks(g, free);
        }
        Ok(())
    }

    /// Allocates an inode, preferring `goal_group`.
    pub(super) fn alloc_inode(&mut self, goal_group: u32, is_dir: bool) -> Result<u32> {
        let geo = self.geo().clone();
        for step in 0..geo.group_count {
            let g = (goal_group + step) % geo.group_count;
            if self.gd.free_inodes(g) == 0 {
                continue;
            }
            let from = if g == 0 { geo.first_ino - 1 } else { 0 };
            let bm = self.inode_bitmap(g)?;
            let Some(i) = bm.find_clear(from, geo.inodes_per_group) else {
                continue;
            };
            bm.set(i);
            self.dirty_inode_bitmaps.insert(g);
            // The kernel initialises the block bitmap with the first inode of
            // a group (its table is counted there); mirror it.
            if self.uninit(g, BG_BLOCK_UNINIT) {
                self.block_bitmap(g)?;
                self.dirty_block_bitmaps.insert(g);
            }
            self.gd.set_free_inodes(g, self.gd.free_inodes(g) - 1);
            if is_dir {
                self.gd.set_used_dirs(g, self.gd.used_dirs(g) + 1);
            }
            if geo.group_desc_csum() {
                let unused = self.gd.itable_unused(g);
                let first_unused = geo.inodes_per_group - unused;
                if i >= first_unused {
                    self.gd.set_itable_unused(g, geo.inodes_per_group - i - 1);
                }
            }
            return Ok(g * geo.inodes_per_group + i + 1);
        }
        Err(WriteError::NoSpace {
            what: "inodes",
            needed: 1,
            free: 0,
            hint: String::new(),
        })
    }

    pub(super) fn free_inode(&mut self, ino: u32, is_dir: bool) -> Result<()> {
        let geo = self.geo().clone();
        let (g, i) = geo.inode_group(ino);
        let bm = self.inode_bitmap(g)?;
        if !bm.get(i) {
            return Err(WriteError::corrupt(
                Structure::InodeBitmap { group: g },
                format!("inode {ino} is in use but free in the bitmap"),
            ));
        }
        bm.clear(i);
        self.dirty_inode_bitmaps.insert(g);
        self.gd.set_free_inodes(g, self.gd.free_inodes(g) + 1);
        if is_dir {
            self.gd
                .set_used_dirs(g, self.gd.used_dirs(g).saturating_sub(1));
        }
        Ok(())
    }
}
