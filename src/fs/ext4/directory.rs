//! Directory editing on top of the transaction: loading a directory (linear
//! or htree), looking names up, adding entries (into slack, a new block, or
//! the right htree leaf — splitting full leaves, converting a full one-block
//! directory to an index and adding index levels as it grows) and removing
//! them. Mirrors the kernel's `namei.c` (`ext4_add_entry`,
//! `make_indexed_dir`, `ext4_dx_add_entry`, `do_split`).

use std::collections::HashMap;

use super::dir::{Dirent, rec_len_for};
use super::dirhash::dirhash;
use super::error::{Result, Structure, WriteError};
use super::extent::{self, push_run};
use super::htree::{self, DxEntry, MAX_INDIRECT_LEVELS, NODE_COUNT_OFFSET, ROOT_COUNT_OFFSET};
use super::inode::{EXT4_CASEFOLD_FL, EXT4_ENCRYPT_FL, EXT4_INDEX_FL};
use super::writer::{BlockKind, DirState, Writer};

/// One step of an htree walk: the index block and the entry taken.
struct Frame {
    lblk: u32,
    pblk: u64,
    off: usize,
    entries: Vec<DxEntry>,
    at: usize,
}

impl Writer<'_> {
    /// The checksum seed to verify a block with: blocks this batch changed
    /// get their checksums at commit, so they are not verified.
    fn verify_seed(&self, seed: Option<u32>, pblk: u64) -> Option<u32> {
        if self.dirty_blocks.contains_key(&pblk) {
            None
        } else {
            seed
        }
    }

    fn dir_pblk(&self, dir: u32, lblk: u32) -> Result<u64> {
        self.dirs[&dir].mapping.lookup(lblk).ok_or_else(|| {
            WriteError::corrupt(
                Structure::DirectoryBlock { ino: dir, lblk },
                "the block is not mapped (a hole in a directory)",
            )
        })
    }

    fn hash_version(&self, root_version: u8) -> u8 {
        if root_version <= super::dirhash::DX_HASH_TEA && self.geo().hash_unsigned {
            root_version + 3
        } else {
            root_version
        }
    }

    fn name_hash(&mut self, dir: u32, name: &[u8]) -> Result<u32> {
        let root = self.dir_pblk(dir, 0)?;
        let block = self.block(root)?.clone();
        let (v, _) = self.dx.root_info(&block, dir)?;
        let seed = self.geo().hash_seed;
        Ok(dirhash(name, self.hash_version(v), &seed))
    }

    /// Loads directory `dir` (checked: every block, every record).
    pub(super) fn load_dir(&mut self, dir: u32) -> Result<()> {
        if self.dirs.contains_key(&dir) {
            return Ok(());
        }
        let inode = self.inode(dir)?;
        if !inode.is_dir() {
            return Err(WriteError::corrupt(
                Structure::Inode { ino: dir },
                "not a directory",
            ));
        }
        if inode.flags() & (EXT4_CASEFOLD_FL | EXT4_ENCRYPT_FL) != 0 {
            return Err(WriteError::Refused(format!(
                "directory inode {dir} is casefolded or encrypted"
            )));
        }
        let mapping = self.mapping(dir)?;
        let bs = u64::from(self.geo().block_size);
        let nblocks = mapping.end();
        if u64::from(nblocks) > self.geo().blocks_count {
            return Err(WriteError::corrupt(
                Structure::Inode { ino: dir },
                format!("directory maps {nblocks} blocks, more than the filesystem has"),
            ));
        }
        if inode.size() != u64::from(nblocks) * bs || mapping.data_blocks() != u64::from(nblocks) {
            return Err(WriteError::corrupt(
                Structure::Inode { ino: dir },
                format!(
                    "directory size {} does not match its {} mapped blocks",
                    inode.size(),
                    mapping.data_blocks()
                ),
            ));
        }
        if nblocks == 0 {
            return Err(WriteError::corrupt(
                Structure::Inode { ino: dir },
                "a directory without blocks (no `.` and `..`)",
            ));
        }
        let indexed = inode.flags() & EXT4_INDEX_FL != 0 && self.geo().dir_index();
        self.dirs.insert(
            dir,
            DirState {
                mapping,
                names: HashMap::new(),
                indexed,
                slack: Vec::new(),
                dotdot: 0,
            },
        );
        let mut dotdot = None;
        if indexed {
            // dx_leaves checks the root's `.`; its `..` is read here.
            let pblk = self.dir_pblk(dir, 0)?;
            let dx = self.dx;
            dotdot = Some(dx.root_parent(self.block(pblk)?, dir)?);
        }
        let leaves = if indexed {
            self.dx_leaves(dir)?
        } else {
            (0..nblocks).collect()
        };
        let seed = inode.csum_seed(self.geo());
        let inodes_count = self.geo().inodes_count;
        let mut names = HashMap::new();
        let mut slack = vec![0; nblocks as usize];
        for lblk in leaves {
            let pblk = self.dir_pblk(dir, lblk)?;
            let fmt = self.fmt;
            let seed = self.verify_seed(seed, pblk);
            let block = self.block(pblk)?;
            let records = fmt.parse(block, dir, lblk, seed, inodes_count)?;
            let mut best = 0;
            let bad = |why: String| {
                WriteError::corrupt(Structure::DirectoryBlock { ino: dir, lblk }, why)
            };
            for (i, (at, rec_len, d)) in records.into_iter().enumerate() {
                let used = if d.ino == 0 {
                    0
                } else {
                    rec_len_for(d.name.len())
                };
                best = best.max(rec_len - used);
                // A linear directory starts with `.` (itself) and `..`, in
                // that order, live; nowhere else may either name appear
                // (e2fsck pass 2).
                let head = lblk == 0 && i < 2 && !indexed;
                match (head, i) {
                    (true, 0) if d.ino != dir || d.name != b"." => {
                        return Err(bad(format!(
                            "the first entry must be `.` pointing at inode {dir}, \
                             found {:?} → inode {}",
                            String::from_utf8_lossy(&d.name),
                            d.ino
                        )));
                    }
                    (true, 1) if d.ino == 0 || d.name != b".." => {
                        return Err(bad(format!(
                            "the second entry must be `..`, found {:?} → inode {}",
                            String::from_utf8_lossy(&d.name),
                            d.ino
                        )));
                    }
                    (true, 1) => dotdot = Some(d.ino),
                    (true, _) => {}
                    (false, _) if d.ino != 0 && (d.name == b"." || d.name == b"..") => {
                        return Err(bad(format!(
                            "another {:?} entry at offset {at} (inode {})",
                            String::from_utf8_lossy(&d.name),
                            d.ino
                        )));
                    }
                    (false, _) => {}
                }
                if d.ino == 0 || head {
                    continue;
                }
                if names.insert(d.name.clone(), (d.ino, d.file_type)).is_some() {
                    return Err(WriteError::corrupt(
                        Structure::DirectoryBlock { ino: dir, lblk },
                        format!(
                            "the name {:?} appears twice",
                            String::from_utf8_lossy(&d.name)
                        ),
                    ));
                }
            }
            slack[lblk as usize] = best;
        }
        let dotdot = dotdot.ok_or_else(|| {
            WriteError::corrupt(
                Structure::DirectoryBlock { ino: dir, lblk: 0 },
                "block 0 has no `..` entry",
            )
        })?;
        let st = self.dirs.get_mut(&dir).expect("inserted above");
        st.names = names;
        st.slack = slack;
        st.dotdot = dotdot;
        Ok(())
    }

    /// Checks that `dir`'s `..` names `parent`, the directory it was found
    /// in (e2fsck pass 3): directories have one parent, so any other value
    /// means the tree is not what its entries say.
    pub(super) fn check_parent(&mut self, dir: u32, parent: u32) -> Result<()> {
        self.load_dir(dir)?;
        let dotdot = self.dirs[&dir].dotdot;
        if dotdot != parent {
            return Err(WriteError::corrupt(
                Structure::DirectoryBlock { ino: dir, lblk: 0 },
                format!("`..` points at inode {dotdot}, but the directory is in inode {parent}"),
            ));
        }
        Ok(())
    }

    /// All leaf blocks of an indexed directory, walking the whole index.
    fn dx_leaves(&mut self, dir: u32) -> Result<Vec<u32>> {
        let seed = self.inode(dir)?.csum_seed(self.geo());
        let root_pblk = self.dir_pblk(dir, 0)?;
        let root = self.block(root_pblk)?.clone();
        let (_, levels) = self.dx.root_info(&root, dir)?;
        let root_seed = self.verify_seed(seed, root_pblk);
        let mut level = self
            .dx
            .entries(&root, ROOT_COUNT_OFFSET, dir, 0, root_seed)?;
        let nblocks = self.dirs[&dir].mapping.end();
        for _ in 0..levels {
            let mut next = Vec::new();
            for e in &level {
                if e.block == 0 || e.block >= nblocks {
                    return Err(WriteError::corrupt(
                        Structure::HtreeNode { ino: dir, lblk: 0 },
                        format!("an index entry points at block {}", e.block),
                    ));
                }
                let node_pblk = self.dir_pblk(dir, e.block)?;
                let node = self.block(node_pblk)?.clone();
                let node_seed = self.verify_seed(seed, node_pblk);
                next.extend(
                    self.dx
                        .entries(&node, NODE_COUNT_OFFSET, dir, e.block, node_seed)?,
                );
            }
            level = next;
        }
        let mut out: Vec<u32> = level.iter().map(|e| e.block).collect();
        for &b in &out {
            if b == 0 || b >= nblocks {
                return Err(WriteError::corrupt(
                    Structure::HtreeNode { ino: dir, lblk: 0 },
                    format!("an index entry points at block {b}"),
                ));
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    pub(super) fn lookup(&mut self, dir: u32, name: &[u8]) -> Result<Option<(u32, u8)>> {
        self.load_dir(dir)?;
        Ok(self.dirs[&dir].names.get(name).copied())
    }

    /// Appends a block to directory `dir`, holding `content`.
    fn dir_append(&mut self, dir: u32, content: Vec<u8>, kind: BlockKind) -> Result<(u32, u64)> {
        let mut inode = self.inode(dir)?;
        let mut mapping = self.dirs[&dir].mapping.clone();
        let lblk = mapping.end();
        let goal = mapping.extents.last().map_or_else(
            || self.geo().group_first_block(self.geo().inode_group(dir).0),
            |e| e.pblk + u64::from(e.len),
        );
        let pblk = self.alloc_block(goal)?;
        push_run(&mut mapping.extents, lblk, pblk, 1);
        for b in std::mem::take(&mut mapping.tree_blocks) {
            self.free_blocks(b, 1)?;
        }
        let seed = inode.csum_seed(self.geo());
        let bs = self.geo().block_size;
        let mut tree_goal = pblk + 1;
        let built = extent::build_tree(&mapping.extents, bs, seed, &mut || {
            let b = self.alloc_block(tree_goal)?;
            tree_goal = b + 1;
            Ok(b)
        })?;
        for (b, data) in built.blocks {
            mapping.tree_blocks.push(b);
            self.blocks.insert(b, data);
            self.mark_dirty(b, BlockKind::Plain);
        }
        inode.i_block_mut().copy_from_slice(&built.i_block);
        let geo = self.geo().clone();
        inode.set_size(u64::from(lblk + 1) * u64::from(bs));
        inode.set_fs_blocks(
            &geo,
            mapping.data_blocks() + mapping.tree_blocks.len() as u64,
        )?;
        self.put_inode(inode);
        self.blocks.insert(pblk, content);
        self.mark_dirty(pblk, kind);
        let st = self.dirs.get_mut(&dir).expect("loaded");
        st.mapping = mapping;
        st.slack.push(0);
        Ok((lblk, pblk))
    }

    /// Adds `name` → `ino` to directory `dir` (which must not hold it).
    pub(super) fn add_entry(
        &mut self,
        dir: u32,
        name: &[u8],
        ino: u32,
        file_type: u8,
    ) -> Result<()> {
        self.load_dir(dir)?;
        let d = Dirent {
            ino,
            name: name.to_vec(),
            file_type: if self.geo().filetype() { file_type } else { 0 },
        };
        if self.dirs[&dir].indexed {
            self.dx_add(dir, &d)?;
        } else {
            self.linear_add(dir, &d)?;
        }
        self.dirs
            .get_mut(&dir)
            .expect("loaded")
            .names
            .insert(name.to_vec(), (ino, d.file_type));
        self.touch(dir)
    }

    /// Sets a directory's mtime and ctime to the batch time.
    fn touch(&mut self, dir: u32) -> Result<()> {
        let mut inode = self.inode(dir)?;
        inode.set_times(self.now, false, true, true);
        self.put_inode(inode);
        Ok(())
    }

    fn linear_add(&mut self, dir: u32, d: &Dirent) -> Result<()> {
        let need = rec_len_for(d.name.len());
        let candidates: Vec<u32> = {
            let st = &self.dirs[&dir];
            (0..st.mapping.end())
                .filter(|&b| st.slack[b as usize] >= need)
                .collect()
        };
        for lblk in candidates {
            let pblk = self.dir_pblk(dir, lblk)?;
            let fmt = self.fmt;
            let block = self.block(pblk)?;
            if fmt.insert(block, d) {
                let s = slack_of(&fmt, block);
                self.dirs.get_mut(&dir).expect("loaded").slack[lblk as usize] = s;
                self.mark_dirty(pblk, BlockKind::DirLeaf { dir });
                return Ok(());
            }
        }
        if self.geo().dir_index() && self.dirs[&dir].mapping.end() == 1 {
            self.make_indexed(dir)?;
            return self.dx_add(dir, d);
        }
        let block = self.fmt.layout(std::slice::from_ref(d));
        let s = slack_of(&self.fmt, &block);
        let (lblk, _) = self.dir_append(dir, block, BlockKind::DirLeaf { dir })?;
        self.dirs.get_mut(&dir).expect("loaded").slack[lblk as usize] = s;
        Ok(())
    }

    /// Turns a full one-block directory into an indexed one: its entries
    /// move to block 1 and block 0 becomes the root with one entry.
    fn make_indexed(&mut self, dir: u32) -> Result<()> {
        let pblk0 = self.dir_pblk(dir, 0)?;
        let seed = self.inode(dir)?.csum_seed(self.geo());
        let inodes_count = self.geo().inodes_count;
        let fmt = self.fmt;
        let block0 = self.block(pblk0)?.clone();
        let seed = self.verify_seed(seed, pblk0);
        let records = fmt.parse(&block0, dir, 0, seed, inodes_count)?;
        let parent = records
            .iter()
            .find(|(_, _, d)| d.name == b"..")
            .map(|(_, _, d)| d.ino)
            .ok_or_else(|| {
                WriteError::corrupt(
                    Structure::DirectoryBlock { ino: dir, lblk: 0 },
                    "no `..` entry",
                )
            })?;
        let entries: Vec<Dirent> = records
            .into_iter()
            .map(|(_, _, d)| d)
            .filter(|d| d.ino != 0 && d.name != b"." && d.name != b"..")
            .collect();
        let leaf = fmt.layout(&entries);
        let (lblk1, _) = self.dir_append(dir, leaf, BlockKind::DirLeaf { dir })?;
        let version = self.geo().def_hash_version;
        let root = self.dx.new_root(
            dir,
            parent,
            fmt.filetype,
            version,
            0,
            &[DxEntry {
                hash: 0,
                block: lblk1,
            }],
        );
        self.blocks.insert(pblk0, root);
        self.mark_dirty(pblk0, BlockKind::DxRoot { dir });
        let mut inode = self.inode(dir)?;
        inode.set_flags(inode.flags() | EXT4_INDEX_FL);
        self.put_inode(inode);
        self.dirs.get_mut(&dir).expect("loaded").indexed = true;
        Ok(())
    }

    fn dx_walk(&mut self, dir: u32, hash: u32) -> Result<Vec<Frame>> {
        let seed = self.inode(dir)?.csum_seed(self.geo());
        let pblk = self.dir_pblk(dir, 0)?;
        let root = self.block(pblk)?.clone();
        let (_, levels) = self.dx.root_info(&root, dir)?;
        let root_seed = self.verify_seed(seed, pblk);
        let entries = self
            .dx
            .entries(&root, ROOT_COUNT_OFFSET, dir, 0, root_seed)?;
        let at = htree::find(&entries, hash);
        let mut frames = vec![Frame {
            lblk: 0,
            pblk,
            off: ROOT_COUNT_OFFSET,
            entries,
            at,
        }];
        for _ in 0..levels {
            let lblk = frames
                .last()
                .map(|f| f.entries[f.at].block)
                .expect("non-empty");
            let pblk = self.dir_pblk(dir, lblk)?;
            let node = self.block(pblk)?.clone();
            let node_seed = self.verify_seed(seed, pblk);
            let entries = self
                .dx
                .entries(&node, NODE_COUNT_OFFSET, dir, lblk, node_seed)?;
            let at = htree::find(&entries, hash);
            frames.push(Frame {
                lblk,
                pblk,
                off: NODE_COUNT_OFFSET,
                entries,
                at,
            });
        }
        Ok(frames)
    }

    fn put_frame(&mut self, dir: u32, f: &Frame) -> Result<()> {
        let dx = self.dx;
        let block = self.block(f.pblk)?;
        dx.put_entries(block, f.off, &f.entries);
        let kind = if f.lblk == 0 {
            BlockKind::DxRoot { dir }
        } else {
            BlockKind::DxNode { dir }
        };
        self.mark_dirty(f.pblk, kind);
        Ok(())
    }

    fn dx_add(&mut self, dir: u32, d: &Dirent) -> Result<()> {
        let hash = self.name_hash(dir, &d.name)?;
        // Each pass either inserts or makes room in the index; making room
        // happens at most once per level.
        for _ in 0..4 {
            let mut frames = self.dx_walk(dir, hash)?;
            let last = frames.last().expect("the root is always there");
            let leaf_lblk = last.entries[last.at].block;
            let leaf_pblk = self.dir_pblk(dir, leaf_lblk)?;
            let fmt = self.fmt;
            let seed = self.inode(dir)?.csum_seed(self.geo());
            let inodes_count = self.geo().inodes_count;
            let seed = self.verify_seed(seed, leaf_pblk);
            {
                let block = self.block(leaf_pblk)?;
                fmt.parse(block, dir, leaf_lblk, seed, inodes_count)?;
                if fmt.insert(block, d) {
                    self.mark_dirty(leaf_pblk, BlockKind::DirLeaf { dir });
                    return Ok(());
                }
            }
            let limit = self.dx.limit(last.off);
            if last.entries.len() < limit {
                return self.split_leaf(dir, &mut frames, leaf_lblk, leaf_pblk, d, hash);
            }
            self.make_index_room(dir, &mut frames)?;
        }
        Err(WriteError::corrupt(
            Structure::HtreeNode { ino: dir, lblk: 0 },
            "no room could be made in the index",
        ))
    }

    /// The leaf's parent index block is full: split it (or, for a full root,
    /// push its entries down one level).
    fn make_index_room(&mut self, dir: u32, frames: &mut [Frame]) -> Result<()> {
        let levels = frames.len() - 1;
        let full = frames.len() - 1;
        if full == 0 {
            // The root is the leaves' parent and full: add a level.
            if levels as u8 >= MAX_INDIRECT_LEVELS {
                return Err(self.index_full(dir));
            }
            let root = &frames[0];
            let node = self.dx.new_node(&root.entries);
            let (lblk, _) = self.dir_append(dir, node, BlockKind::DxNode { dir })?;
            let mut root = Frame {
                entries: vec![DxEntry {
                    hash: 0,
                    block: lblk,
                }],
                at: 0,
                lblk: frames[0].lblk,
                pblk: frames[0].pblk,
                off: frames[0].off,
            };
            self.put_frame(dir, &root)?;
            let dx = self.dx;
            let block = self.block(root.pblk)?;
            dx.set_levels(block, 1);
            root.at = 0;
            return Ok(());
        }
        // A full interior node: split it in two, the upper half moving to a
        // new block that the parent (the root) learns about.
        let parent_full = frames[full - 1].entries.len() >= self.dx.limit(frames[full - 1].off);
        if parent_full {
            return Err(self.index_full(dir));
        }
        let node = &frames[full];
        let half = node.entries.len() / 2;
        let upper: Vec<DxEntry> = node.entries[half..].to_vec();
        let split_hash = upper[0].hash;
        let new_node = self.dx.new_node(&upper);
        let (new_lblk, _) = self.dir_append(dir, new_node, BlockKind::DxNode { dir })?;
        let lower = Frame {
            entries: node.entries[..half].to_vec(),
            lblk: node.lblk,
            pblk: node.pblk,
            off: node.off,
            at: 0,
        };
        self.put_frame(dir, &lower)?;
        self.insert_after(dir, &mut frames[full - 1], split_hash, new_lblk)
    }

    /// Adds the entry (hash → block) after the one `frame` descended
    /// through, and stores the index block.
    fn insert_after(&mut self, dir: u32, frame: &mut Frame, hash: u32, block: u32) -> Result<()> {
        frame.entries.insert(frame.at + 1, DxEntry { hash, block });
        self.put_frame(dir, frame)
    }

    fn index_full(&self, dir: u32) -> WriteError {
        WriteError::Refused(format!(
            "directory inode {dir} has a full two-level hash index; more entries need the \
             large_dir feature, which the writer does not support"
        ))
    }

    /// Splits a full leaf by hash (the kernel's `do_split`): the upper half
    /// moves to a new block, the parent gains its index entry, and `d` goes
    /// to whichever half its hash belongs to.
    fn split_leaf(
        &mut self,
        dir: u32,
        frames: &mut [Frame],
        lblk: u32,
        pblk: u64,
        d: &Dirent,
        hash: u32,
    ) -> Result<()> {
        let seed = self.inode(dir)?.csum_seed(self.geo());
        let inodes_count = self.geo().inodes_count;
        let fmt = self.fmt;
        let block = self.block(pblk)?.clone();
        let seed = self.verify_seed(seed, pblk);
        let mut map: Vec<(u32, Dirent)> = Vec::new();
        let geo_seed = self.geo().hash_seed;
        let root = self.block(self.dir_pblk(dir, 0)?)?.clone();
        let (v, _) = self.dx.root_info(&root, dir)?;
        let version = self.hash_version(v);
        for (_, _, e) in fmt.parse(&block, dir, lblk, seed, inodes_count)? {
            if e.ino != 0 {
                map.push((dirhash(&e.name, version, &geo_seed), e));
            }
        }
        map.sort_by_key(|(h, _)| *h);
        let count = map.len();
        if count < 2 {
            return Err(WriteError::corrupt(
                Structure::DirectoryBlock { ino: dir, lblk },
                "a full leaf with fewer than two entries",
            ));
        }
        // Split in the middle by size, as the kernel does.
        let half = fmt.block_size / 2;
        let mut size = 0;
        let mut moved = 0;
        let mut i = count;
        while i > 0 {
            let s = rec_len_for(map[i - 1].1.name.len());
            if size + s / 2 > half {
                break;
            }
            size += s;
            moved += 1;
            i -= 1;
        }
        let split = if i > 0 && moved > 0 {
            count - moved
        } else {
            count / 2
        };
        let split = split.clamp(1, count - 1);
        let hash2 = map[split].0;
        let continued = u32::from(hash2 == map[split - 1].0);
        let lower: Vec<Dirent> = map[..split].iter().map(|(_, e)| e.clone()).collect();
        let upper: Vec<Dirent> = map[split..].iter().map(|(_, e)| e.clone()).collect();
        let mut old_block = fmt.layout(&lower);
        let mut new_block = fmt.layout(&upper);
        let target = if hash >= hash2 {
            &mut new_block
        } else {
            &mut old_block
        };
        if !fmt.insert(target, d) {
            return Err(WriteError::corrupt(
                Structure::DirectoryBlock { ino: dir, lblk },
                "the entry does not fit either half of a split leaf",
            ));
        }
        self.blocks.insert(pblk, old_block);
        self.mark_dirty(pblk, BlockKind::DirLeaf { dir });
        let (new_lblk, _) = self.dir_append(dir, new_block, BlockKind::DirLeaf { dir })?;
        let parent = frames.last_mut().expect("the root is always there");
        self.insert_after(dir, parent, hash2 + continued, new_lblk)
    }

    /// Removes `name` from `dir`.
    pub(super) fn remove_entry(&mut self, dir: u32, name: &[u8]) -> Result<()> {
        self.load_dir(dir)?;
        let leaves: Vec<u32> = if self.dirs[&dir].indexed {
            let hash = self.name_hash(dir, name)?;
            let frames = self.dx_walk(dir, hash)?;
            let f = frames.last().expect("the root is always there");
            // Equal hashes may continue into the following leaves.
            let mut v = vec![f.entries[f.at].block];
            for e in &f.entries[f.at + 1..] {
                if e.hash & !1 != hash {
                    break;
                }
                v.push(e.block);
            }
            v
        } else {
            (0..self.dirs[&dir].mapping.end()).collect()
        };
        for lblk in leaves {
            let pblk = self.dir_pblk(dir, lblk)?;
            let fmt = self.fmt;
            let block = self.block(pblk)?;
            if fmt.remove(block, name) {
                let s = slack_of(&fmt, block);
                let st = self.dirs.get_mut(&dir).expect("loaded");
                if !st.indexed {
                    st.slack[lblk as usize] = s;
                }
                st.names.remove(name);
                self.mark_dirty(pblk, BlockKind::DirLeaf { dir });
                return self.touch(dir);
            }
        }
        Err(WriteError::corrupt(
            Structure::Inode { ino: dir },
            format!(
                "the entry {:?} is listed but not found where its hash says",
                String::from_utf8_lossy(name)
            ),
        ))
    }
}

/// Largest record span an insertion could use in a leaf block.
fn slack_of(fmt: &super::dir::DirFormat, block: &[u8]) -> usize {
    let mut best = 0;
    let end = fmt.usable();
    let mut at = 0;
    while at + 8 <= end {
        let rec_len = usize::from(crate::io::bytes::le_u16(block, at + 4));
        if rec_len == 0 {
            break;
        }
        let used = if crate::io::bytes::le_u32(block, at) == 0 {
            0
        } else if fmt.filetype {
            rec_len_for(usize::from(block[at + 6]))
        } else {
            rec_len_for(usize::from(crate::io::bytes::le_u16(block, at + 6)))
        };
        best = best.max(rec_len.saturating_sub(used));
        at += rec_len;
    }
    best
}
