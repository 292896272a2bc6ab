//! The writer's public face: a batch of operations (make directories,
//! create or replace files, make symlinks, remove files) applied in order
//! to an in-memory transaction and committed only when all succeeded.

use super::dir::{FT_DIR, FT_REG_FILE, FT_SYMLINK};
use super::error::{Result, Structure, WriteError};
use super::extent::{self, Extent, push_run};
use super::features::ro_compat;
use super::inode::{EXT4_EXTENTS_FL, Inode, S_IFDIR, S_IFLNK, S_IFREG, UnixTime};
use super::writer::{BlockKind, Content, Writer};
use crate::io::PartitionWindow;

const ROOT_INO: u32 = 2;
const EXT4_LINK_MAX: u16 = 65000;
const MAX_SYMLINK_HOPS: u32 = 40;

/// Permission bits, owner and modification time of something we create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits only (0o7777).
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub mtime: UnixTime,
}

pub enum Op {
    /// Makes the directory (and, with `parents`, missing parents with mode
    /// 0755 root:root); an existing directory gets `meta`'s mode and owner.
    Mkdir {
        path: String,
        meta: Meta,
        parents: bool,
    },
    /// Creates or replaces a regular file. An existing file keeps its inode
    /// (and hard links); a symlink there is replaced by the file.
    WriteFile {
        path: String,
        content: Content,
        meta: Meta,
    },
    /// Creates or replaces a symlink.
    Symlink {
        path: String,
        target: Vec<u8>,
        meta: Meta,
    },
    /// Removes a file or symlink.
    Remove { path: String, missing_ok: bool },
}

impl Op {
    pub fn path(&self) -> &str {
        match self {
            Op::Mkdir { path, .. }
            | Op::WriteFile { path, .. }
            | Op::Symlink { path, .. }
            | Op::Remove { path, .. } => path,
        }
    }
}

/// What a batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub dirs_created: u32,
    pub files_created: u32,
    pub files_replaced: u32,
    pub symlinks: u32,
    pub removed: u32,
    pub bytes: u64,
}

/// Applies `ops` in order to the ext4 filesystem in `dev`; `now` stamps the
/// directories it changes. Nothing is written unless every operation
/// succeeds; then file contents go into newly allocated blocks first and
/// metadata last.
pub fn apply(dev: &PartitionWindow, ops: &[Op], now: UnixTime) -> Result<Summary> {
    let mut w = Writer::open(dev, now)?;
    check_space(&w, ops)?;
    let mut summary = Summary::default();
    for op in ops {
        w.apply_op(op, &mut summary)?;
    }
    w.commit()?;
    Ok(summary)
}

/// Refuses a batch that cannot fit before doing any of it.
fn check_space(w: &Writer<'_>, ops: &[Op]) -> Result<()> {
    let geo = w.geo();
    let bs = u64::from(geo.block_size);
    let mut inodes = 0u64;
    let mut blocks = 0u64;
    let mut entry_bytes = 0u64;
    for op in ops {
        match op {
            Op::Mkdir { .. } => {
                inodes += 1;
                blocks += 1;
            }
            Op::WriteFile { content, .. } => {
                inodes += 1;
                let n = content.len().div_ceil(bs);
                blocks += n;
                let extents = n.div_ceil(u64::from(geo.blocks_per_group).min(32768) / 2) + 1;
                // extents is at most n + 1; fits usize on every target.
                blocks += extent::tree_blocks_needed(extents as usize, geo.block_size) as u64;
            }
            Op::Symlink { target, .. } => {
                inodes += 1;
                blocks += u64::from(target.len() >= 60);
            }
            Op::Remove { .. } => continue,
        }
        entry_bytes += super::dir::rec_len_for(op.path().len().min(255)) as u64;
    }
    // New entries may fill half-empty blocks after splits.
    blocks += (2 * entry_bytes).div_ceil(bs);
    let free_inodes = w.free_inodes_total();
    if inodes > free_inodes {
        return Err(WriteError::NoSpace {
            what: "inodes",
            needed: inodes,
            free: free_inodes,
            hint: String::new(),
        });
    }
    let free_blocks = w.free_blocks_total();
    if blocks > free_blocks {
        return Err(WriteError::NoSpace {
            what: "blocks",
            needed: blocks,
            free: free_blocks,
            hint: format!(
                " ({} needed, {} free)",
                crate::io::units::human_size(blocks * bs),
                crate::io::units::human_size(free_blocks * bs)
            ),
        });
    }
    Ok(())
}

/// The components of an absolute path, each checked.
fn components(path: &str) -> Result<Vec<&[u8]>> {
    if !path.starts_with('/') {
        return Err(WriteError::path(
            path,
            "paths inside the filesystem must be absolute",
        ));
    }
    let mut out = Vec::new();
    for c in path.split('/').filter(|c| !c.is_empty()) {
        if c == "." || c == ".." {
            return Err(WriteError::path(
                path,
                "`.` and `..` are not allowed in paths",
            ));
        }
        if c.len() > 255 {
            return Err(WriteError::path(path, "a name is longer than 255 bytes"));
        }
        if c.contains('\0') {
            return Err(WriteError::path(path, "a name contains a NUL byte"));
        }
        out.push(c.as_bytes());
    }
    Ok(out)
}

impl Writer<'_> {
    fn apply_op(&mut self, op: &Op, s: &mut Summary) -> Result<()> {
        let path = op.path();
        let comps = components(path)?;
        let Some((name, parents)) = comps.split_last() else {
            return match op {
                Op::Mkdir { meta, .. } => self.set_dir_meta(ROOT_INO, meta),
                _ => Err(WriteError::path(path, "is the root directory")),
            };
        };
        let create = matches!(op, Op::Mkdir { parents: true, .. });
        let dir = self.resolve_dir(path, parents, create, s)?;
        match op {
            Op::Mkdir { meta, .. } => self.mkdir(path, dir, name, meta, s),
            Op::WriteFile { content, meta, .. } => {
                self.write_file(path, dir, name, content, meta, s)
            }
            Op::Symlink { target, meta, .. } => self.symlink(path, dir, name, target, meta, s),
            Op::Remove { missing_ok, .. } => self.remove(path, dir, name, *missing_ok, s),
        }
    }

    /// The directory inode at `comps`, following symlinks on the way (as
    /// the kernel would, relative to the directory holding them).
    fn resolve_dir(
        &mut self,
        path: &str,
        comps: &[&[u8]],
        create: bool,
        s: &mut Summary,
    ) -> Result<u32> {
        // Every directory on the way is loaded (each record checked) and
        // its `..` compared with where it was found.
        self.check_parent(ROOT_INO, ROOT_INO)?;
        let mut stack: Vec<u32> = vec![ROOT_INO];
        let mut todo: Vec<Vec<u8>> = comps.iter().rev().map(|c| c.to_vec()).collect();
        let mut hops = 0;
        while let Some(c) = todo.pop() {
            let cur = *stack.last().expect("the root is never popped");
            if c == b"." {
                continue;
            }
            if c == b".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            match self.lookup(cur, &c)? {
                None if create => {
                    let meta = Meta {
                        mode: 0o755,
                        uid: 0,
                        gid: 0,
                        mtime: self.now,
                    };
                    let ino = self.new_dir(cur, &c, &meta)?;
                    s.dirs_created += 1;
                    stack.push(ino);
                }
                None => {
                    return Err(WriteError::path(
                        path,
                        format!(
                            "the directory {:?} does not exist",
                            String::from_utf8_lossy(&c)
                        ),
                    ));
                }
                Some((ino, _)) => {
                    let inode = self.inode(ino)?;
                    if inode.is_dir() {
                        self.check_parent(ino, cur)?;
                        stack.push(ino);
                    } else if inode.file_type() == S_IFLNK {
                        hops += 1;
                        if hops > MAX_SYMLINK_HOPS {
                            return Err(WriteError::path(
                                path,
                                "too many levels of symbolic links",
                            ));
                        }
                        let target = self.read_link(&inode)?;
                        if target.starts_with(b"/") {
                            stack.truncate(1);
                        }
                        for part in target.split(|&b| b == b'/').rev() {
                            if !part.is_empty() {
                                todo.push(part.to_vec());
                            }
                        }
                    } else {
                        return Err(WriteError::path(
                            path,
                            format!("{:?} is not a directory", String::from_utf8_lossy(&c)),
                        ));
                    }
                }
            }
        }
        Ok(*stack.last().expect("the root is never popped"))
    }

    fn read_link(&mut self, inode: &Inode) -> Result<Vec<u8>> {
        let len = usize::try_from(inode.size()).unwrap_or(usize::MAX);
        if len >= self.geo().block_size as usize {
            return Err(WriteError::corrupt(
                Structure::Inode { ino: inode.ino },
                "symlink too long",
            ));
        }
        if !inode.uses_extents() && inode.i_block().len() >= len && len < 60 {
            return Ok(inode.i_block()[..len].to_vec());
        }
        let m = self.mapping(inode.ino)?;
        let b = m.lookup(0).ok_or_else(|| {
            WriteError::corrupt(Structure::Inode { ino: inode.ino }, "symlink maps no block")
        })?;
        Ok(self.read_block(b)?[..len].to_vec())
    }

    fn set_dir_meta(&mut self, ino: u32, meta: &Meta) -> Result<()> {
        let mut inode = self.inode(ino)?;
        inode.set_mode(S_IFDIR | (meta.mode & 0o7777));
        inode.set_owner(meta.uid, meta.gid);
        inode.set_times(self.now, false, true, false);
        self.put_inode(inode);
        Ok(())
    }

    fn mkdir(
        &mut self,
        path: &str,
        dir: u32,
        name: &[u8],
        meta: &Meta,
        s: &mut Summary,
    ) -> Result<()> {
        match self.lookup(dir, name)? {
            Some((ino, _)) => {
                if !self.inode(ino)?.is_dir() {
                    return Err(WriteError::path(path, "exists and is not a directory"));
                }
                self.set_dir_meta(ino, meta)
            }
            None => {
                self.new_dir(dir, name, meta)?;
                s.dirs_created += 1;
                Ok(())
            }
        }
    }

    fn new_dir(&mut self, parent: u32, name: &[u8], meta: &Meta) -> Result<u32> {
        let mut p = self.inode(parent)?;
        let links = p.links();
        if links >= EXT4_LINK_MAX - 1 && !self.geo().has_ro_compat(ro_compat::DIR_NLINK) {
            return Err(WriteError::path(
                &String::from_utf8_lossy(name),
                "the parent directory has too many subdirectories (no dir_nlink)",
            ));
        }
        let group = self.geo().inode_group(parent).0;
        let ino = self.alloc_inode(group, true)?;
        let generation = self.next_generation(ino);
        let geo = self.geo().clone();
        let mut inode = Inode::new(
            &geo,
            ino,
            S_IFDIR | (meta.mode & 0o7777),
            meta.uid,
            meta.gid,
            meta.mtime,
            generation,
        );
        inode.set_flags(EXT4_EXTENTS_FL);
        inode.set_links(2);
        let goal = self.cursor.max(geo.group_first_block(group));
        let pblk = self.alloc_block(goal)?;
        self.cursor = pblk + 1;
        let mut extents = Vec::new();
        push_run(&mut extents, 0, pblk, 1);
        let built =
            extent::build_tree(&extents, geo.block_size, None, &mut || unreachable_alloc())?;
        inode.i_block_mut().copy_from_slice(&built.i_block);
        inode.set_size(u64::from(geo.block_size));
        inode.set_fs_blocks(&geo, 1)?;
        self.put_inode(inode);
        let block = self.fmt.new_dir_block(ino, parent);
        self.blocks.insert(pblk, block);
        self.mark_dirty(pblk, BlockKind::DirLeaf { dir: ino });
        self.add_entry(parent, name, ino, FT_DIR)?;
        // add_entry touched the parent: take its latest copy.
        p = self.inode(parent)?;
        // With dir_nlink a count past the limit becomes 1 ("many").
        let new_links = if links == 1 || links >= EXT4_LINK_MAX - 1 {
            1
        } else {
            links + 1
        };
        p.set_links(new_links);
        self.put_inode(p);
        Ok(ino)
    }

    /// Allocates and maps `len` bytes worth of blocks for `ino`.
    fn alloc_data(&mut self, inode: &mut Inode, len: u64) -> Result<Vec<Extent>> {
        let geo = self.geo().clone();
        let bs = u64::from(geo.block_size);
        let nblocks = len.div_ceil(bs);
        let nblocks32 = u32::try_from(nblocks).map_err(|_| {
            WriteError::path("", format!("{len} bytes is too large for one ext4 file"))
        })?;
        let mut extents = Vec::new();
        let mut done = 0u32;
        if self.cursor == 0 {
            self.cursor = geo.group_first_block(geo.inode_group(inode.ino).0);
        }
        while done < nblocks32 {
            let (start, n) = self.alloc_run(self.cursor, nblocks32 - done)?;
            push_run(&mut extents, done, start, n);
            self.cursor = start + u64::from(n);
            done += n;
        }
        let seed = inode.csum_seed(&geo);
        let mut tree_goal = self.cursor;
        let built = extent::build_tree(&extents, geo.block_size, seed, &mut || {
            let b = self.alloc_block(tree_goal)?;
            tree_goal = b + 1;
            Ok(b)
        })?;
        let tree = built.blocks.len() as u64;
        for (b, data) in built.blocks {
            self.blocks.insert(b, data);
            self.mark_dirty(b, BlockKind::Plain);
        }
        inode.i_block_mut().copy_from_slice(&built.i_block);
        inode.set_flags(inode.flags() | EXT4_EXTENTS_FL);
        inode.set_size(len);
        inode.set_fs_blocks(&geo, nblocks + tree)?;
        if len >= 1 << 31 && !geo.has_ro_compat(ro_compat::LARGE_FILE) {
            self.sb.set_ro_compat(ro_compat::LARGE_FILE);
        }
        Ok(extents)
    }

    /// Releases every block of `ino` (data and tree).
    fn free_inode_blocks(&mut self, inode: &Inode) -> Result<()> {
        if inode.file_type() == S_IFLNK && !inode.uses_extents() {
            return Ok(()); // a fast symlink: the target lives in the inode
        }
        if inode.is_special() {
            // FIFOs, sockets and device nodes own no data blocks; their
            // i_block is not a block map (devices keep their numbers there).
            return Ok(());
        }
        let m = self.mapping(inode.ino)?;
        for e in &m.extents {
            self.free_blocks(e.pblk, e.len)?;
        }
        for &b in &m.tree_blocks {
            self.free_blocks(b, 1)?;
        }
        Ok(())
    }

    fn write_file(
        &mut self,
        path: &str,
        dir: u32,
        name: &[u8],
        content: &Content,
        meta: &Meta,
        s: &mut Summary,
    ) -> Result<()> {
        let mode = S_IFREG | (meta.mode & 0o7777);
        let existing = self.lookup(dir, name)?;
        if let Some((ino, _)) = existing {
            let inode = self.inode(ino)?;
            if inode.is_dir() {
                return Err(WriteError::path(path, "is a directory"));
            }
            if inode.file_type() == S_IFREG {
                self.free_inode_blocks(&inode)?;
                let mut inode = inode;
                inode.set_mode(mode);
                inode.set_owner(meta.uid, meta.gid);
                inode.i_block_mut().fill(0);
                let extents = self.alloc_data(&mut inode, content.len())?;
                inode.set_times(meta.mtime, true, false, true);
                inode.set_times(self.now, false, true, false);
                self.put_inode(inode);
                self.queue_data(extents, content);
                s.files_replaced += 1;
                s.bytes += content.len();
                return Ok(());
            }
            self.unlink(dir, name, ino)?;
        }
        let group = self.geo().inode_group(dir).0;
        let ino = self.alloc_inode(group, false)?;
        let generation = self.next_generation(ino);
        let geo = self.geo().clone();
        let mut inode = Inode::new(&geo, ino, mode, meta.uid, meta.gid, meta.mtime, generation);
        inode.set_times(self.now, false, true, false);
        inode.set_links(1);
        let extents = self.alloc_data(&mut inode, content.len())?;
        self.put_inode(inode);
        self.queue_data(extents, content);
        self.add_entry(dir, name, ino, FT_REG_FILE)?;
        s.files_created += 1;
        s.bytes += content.len();
        Ok(())
    }

    fn queue_data(&mut self, extents: Vec<Extent>, content: &Content) {
        if extents.is_empty() {
            return;
        }
        let c = match content {
            Content::Bytes(b) => Content::Bytes(b.clone()),
            Content::File { path, len } => Content::File {
                path: path.clone(),
                len: *len,
            },
        };
        self.data.push((extents, c));
    }

    fn symlink(
        &mut self,
        path: &str,
        dir: u32,
        name: &[u8],
        target: &[u8],
        meta: &Meta,
        s: &mut Summary,
    ) -> Result<()> {
        let geo = self.geo().clone();
        if target.is_empty() || target.len() >= geo.block_size as usize || target.contains(&0) {
            return Err(WriteError::path(
                path,
                format!(
                    "a symlink target must be 1 to {} bytes without NUL",
                    geo.block_size - 1
                ),
            ));
        }
        if let Some((ino, _)) = self.lookup(dir, name)? {
            if self.inode(ino)?.is_dir() {
                return Err(WriteError::path(path, "is a directory"));
            }
            self.unlink(dir, name, ino)?;
        }
        let group = geo.inode_group(dir).0;
        let ino = self.alloc_inode(group, false)?;
        let generation = self.next_generation(ino);
        let mut inode = Inode::new(
            &geo,
            ino,
            S_IFLNK | 0o777,
            meta.uid,
            meta.gid,
            meta.mtime,
            generation,
        );
        inode.set_times(self.now, false, true, false);
        inode.set_links(1);
        if target.len() < 60 {
            inode.i_block_mut()[..target.len()].copy_from_slice(target);
            inode.set_size(target.len() as u64);
        } else {
            let extents = self.alloc_data(&mut inode, target.len() as u64)?;
            self.data.push((extents, Content::Bytes(target.to_vec())));
        }
        self.put_inode(inode);
        self.add_entry(dir, name, ino, FT_SYMLINK)?;
        s.symlinks += 1;
        Ok(())
    }

    fn remove(
        &mut self,
        path: &str,
        dir: u32,
        name: &[u8],
        missing_ok: bool,
        s: &mut Summary,
    ) -> Result<()> {
        let Some((ino, _)) = self.lookup(dir, name)? else {
            return if missing_ok {
                Ok(())
            } else {
                Err(WriteError::path(path, "no such file"))
            };
        };
        if self.inode(ino)?.is_dir() {
            return Err(WriteError::path(
                path,
                "is a directory (only files, symlinks, FIFOs, sockets and device nodes are removed)",
            ));
        }
        self.unlink(dir, name, ino)?;
        s.removed += 1;
        Ok(())
    }

    /// Drops the entry and one link; the last link frees the inode.
    fn unlink(&mut self, dir: u32, name: &[u8], ino: u32) -> Result<()> {
        if ino < self.geo().first_ino && ino != ROOT_INO {
            return Err(WriteError::Refused(format!(
                "inode {ino} is reserved; it is not removed"
            )));
        }
        self.remove_entry(dir, name)?;
        let mut inode = self.inode(ino)?;
        let links = inode.links().saturating_sub(1);
        inode.set_links(links);
        inode.set_times(self.now, false, true, false);
        if links == 0 {
            self.free_inode_blocks(&inode)?;
            let acl = inode.file_acl();
            if acl != 0 {
                self.release_xattr_block(ino, acl)?;
                inode.set_file_acl(0);
            }
            // The time fits: dtime is a 32-bit field by definition.
            inode.set_dtime(self.now as u32);
            inode.set_size(0);
            inode.set_fs_blocks(&self.geo().clone(), 0)?;
            self.free_inode(ino, false)?;
        }
        self.put_inode(inode);
        Ok(())
    }

    /// Drops one reference to an extended-attribute block, freeing it with
    /// the last.
    fn release_xattr_block(&mut self, ino: u32, block: u64) -> Result<()> {
        let bad = |why: String| WriteError::corrupt(Structure::XattrBlock { ino, block }, why);
        if block >= self.geo().blocks_count {
            return Err(bad("outside the filesystem".into()));
        }
        let data = self.block(block)?;
        if crate::io::bytes::le_u32(data, 0) != 0xEA02_0000 {
            return Err(bad("bad magic".into()));
        }
        let refs = crate::io::bytes::le_u32(data, 4);
        if refs <= 1 {
            self.blocks.remove(&block);
            return self.free_blocks(block, 1);
        }
        data[4..8].copy_from_slice(&(refs - 1).to_le_bytes());
        if let Some(seed) = self.geo().csum_seed {
            let data = self.blocks.get_mut(&block).expect("cached above");
            data[0x10..0x14].fill(0);
            let c = super::checksum::crc32c_raw(seed, &block.to_le_bytes());
            let c = super::checksum::crc32c_raw(c, data);
            data[0x10..0x14].copy_from_slice(&c.to_le_bytes());
        }
        self.mark_dirty(block, BlockKind::Plain);
        Ok(())
    }
}

fn unreachable_alloc() -> Result<u64> {
    Err(WriteError::corrupt(
        Structure::Superblock,
        "a one-extent tree needs no blocks",
    ))
}
