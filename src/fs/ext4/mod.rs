//! ext4 filesystems inside a partition window. Reading goes through
//! ext4-view, an independent reader that is also the oracle for our future
//! writer; this module checks the superblock first so a damaged one is
//! reported with the field named.

mod alloc;
mod bitmap;
mod checksum;
mod dir;
mod directory;
mod dirhash;
mod error;
mod extent;
mod features;
mod geometry;
mod group_desc;
mod htree;
mod inode;
mod ops;
pub mod superblock;
mod usage;
mod writer;

use std::io::Write;

use ext4_view::{Ext4, Ext4Error};

pub use error::{Structure, WriteError};
pub use ops::{Meta, Op, Summary, apply};
pub use superblock::{ExtVersion, Superblock, SuperblockError};
pub use usage::used_spans;
pub use writer::Content;

use super::{EntryKind, FsEntry, FsError, StreamError};
use crate::io::PartitionWindow;

pub struct Ext4Volume {
    fs: Ext4,
    superblock: Superblock,
}

impl Ext4Volume {
    pub fn open(window: PartitionWindow) -> Result<Ext4Volume, FsError> {
        let superblock = read_superblock(&window)?;
        // Named here: the reader would name only a bit mask.
        features::check_readable(superblock.s_feature_incompat).map_err(FsError::Unreadable)?;
        let fs = Ext4::load(Box::new(window)).map_err(load_error)?;
        Ok(Ext4Volume { fs, superblock })
    }

    pub fn superblock(&self) -> &Superblock {
        &self.superblock
    }

    /// Entries of the directory at `path`, without `.` and `..`; symlinks
    /// are listed, not followed.
    pub fn list(&self, path: &str) -> Result<Vec<FsEntry>, FsError> {
        let abs = absolute(path);
        let dir = self
            .fs
            .read_dir(abs.as_str())
            .map_err(|e| FsError::ext4(path, e))?;
        let mut out = Vec::new();
        for entry in dir {
            let entry = entry.map_err(|e| FsError::ext4(path, e))?;
            let name = entry.file_name().display().to_string();
            if name == "." || name == ".." {
                continue;
            }
            let meta = entry.metadata().map_err(|e| FsError::ext4(path, e))?;
            out.push(self.entry(&join(&abs, &name), name, &meta)?);
        }
        Ok(out)
    }

    /// The entry for `path` itself, not following a final symlink.
    pub fn stat(&self, path: &str) -> Result<FsEntry, FsError> {
        let abs = absolute(path);
        let meta = self
            .fs
            .symlink_metadata(abs.as_str())
            .map_err(|e| FsError::ext4(path, e))?;
        let name = abs.rsplit('/').next().unwrap_or("").to_string();
        self.entry(&abs, if name.is_empty() { "/".into() } else { name }, &meta)
    }

    /// Builds the `ls` view of the inode at `abs` from its metadata.
    fn entry(
        &self,
        abs: &str,
        name: String,
        meta: &ext4_view::Metadata,
    ) -> Result<FsEntry, FsError> {
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_symlink() {
            EntryKind::Symlink
        } else if ft.is_regular_file() {
            EntryKind::File
        } else if ft.is_fifo() {
            EntryKind::Fifo
        } else if ft.is_socket() {
            EntryKind::Socket
        } else if ft.is_char_dev() {
            EntryKind::CharDevice
        } else if ft.is_block_dev() {
            EntryKind::BlockDevice
        } else {
            EntryKind::Other
        };
        let link_target = if ft.is_symlink() {
            Some(self.read_link(abs)?)
        } else {
            None
        };
        Ok(FsEntry {
            name,
            kind,
            size: meta.len(),
            mode: Some(meta.mode()),
            uid: Some(meta.uid()),
            gid: Some(meta.gid()),
            mtime: crate::time::format_utc(meta.modified().seconds()),
            link_target,
        })
    }

    /// Opens the regular file at `path`, following symlinks in the image.
    fn open_file(&self, path: &str) -> Result<ext4_view::File, FsError> {
        self.fs
            .open(absolute(path).as_str())
            .map_err(|e| FsError::ext4(path, e))
    }

    /// The bytes of the file at `path`, following symlinks inside the
    /// image; `TooLarge` when its inode claims more than `limit` bytes
    /// (checked before anything is allocated: `i_size` may be damage).
    pub fn read_bounded(&self, path: &str, limit: u64) -> Result<Vec<u8>, FsError> {
        let mut file = self.open_file(path)?;
        let size = file.metadata().len();
        if size > limit {
            return Err(FsError::TooLarge {
                path: path.to_string(),
                size,
                limit,
            });
        }
        // size <= limit, a small constant: it fits in usize.
        let mut bytes = vec![0u8; size as usize];
        let mut done = 0;
        while done < bytes.len() {
            match file.read_bytes(&mut bytes[done..]) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) => return Err(FsError::ext4(path, e)),
            }
        }
        bytes.truncate(done);
        Ok(bytes)
    }

    /// Copies the file at `path` to `out` a chunk at a time; holes are
    /// written as the zeros they read as. Returns the bytes copied.
    pub fn stream(&self, path: &str, out: &mut dyn Write) -> Result<u64, StreamError> {
        const CHUNK: usize = 256 << 10;
        let mut file = self.open_file(path).map_err(StreamError::Read)?;
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0u64;
        loop {
            // read_bytes stops at block ends: fill the chunk first.
            let mut filled = 0;
            while filled < CHUNK {
                match file.read_bytes(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) => return Err(StreamError::Read(FsError::ext4(path, e))),
                }
            }
            if filled == 0 {
                return Ok(total);
            }
            out.write_all(&buf[..filled]).map_err(StreamError::Write)?;
            total += filled as u64; // as: filled <= CHUNK
        }
    }

    pub fn exists(&self, path: &str) -> bool {
        matches!(self.fs.exists(absolute(path).as_str()), Ok(true))
    }

    /// Where the symlink at `path` points.
    pub fn read_link(&self, path: &str) -> Result<String, FsError> {
        self.fs
            .read_link(absolute(path).as_str())
            .map(|t| t.display().to_string())
            .map_err(|e| FsError::ext4(path, e))
    }
}

/// Reads and checks the superblock of the filesystem in `window`.
pub fn read_superblock(window: &PartitionWindow) -> Result<Superblock, FsError> {
    let mut raw = [0u8; superblock::SUPERBLOCK_SIZE];
    window
        .read_exact_at(superblock::SUPERBLOCK_OFFSET, &mut raw)
        .map_err(|e| FsError::io("/", e))?;
    Ok(Superblock::parse(&raw, window.len().0)?)
}

fn absolute(path: &str) -> String {
    format!("/{}", super::normalize(path))
}

fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Maps an error of `Ext4::load`. ext4-view reads the journal only to
/// replay it (needs_recovery), and then reports journal features it lacks
/// as a number ("missing required journal features: 18"), in a type that
/// is not public: its message is the only way to name them.
fn load_error(e: Ext4Error) -> FsError {
    if let Ext4Error::Incompatible(i) = &e {
        let text = i.to_string();
        for (prefix, verb) in [
            ("missing required journal features: ", "lacks"),
            ("unsupported journal features: ", "uses"),
        ] {
            if let Some(bits) = text
                .strip_prefix(prefix)
                .and_then(|n| n.trim().parse::<u32>().ok())
            {
                return FsError::Unreadable(format!(
                    "its journal needs recovery (it was not cleanly unmounted), and the \
                     reader replays only journals with journal_64bit and \
                     journal_checksum_v3: this one {verb} {}; run `e2fsck -fy` on it, \
                     or mount and unmount it, first",
                    features::journal_feature_names(bits)
                ));
            }
        }
    }
    FsError::ext4("/", e)
}

impl FsError {
    /// Maps an ext4-view error at `path` to ours.
    fn ext4(path: &str, e: Ext4Error) -> FsError {
        match e {
            Ext4Error::NotFound => FsError::NotFound(path.to_string()),
            Ext4Error::NotADirectory => FsError::NotADirectory(path.to_string()),
            Ext4Error::IsADirectory => FsError::IsADirectory(path.to_string()),
            other => FsError::Ext4 {
                path: path.to_string(),
                message: other.to_string(),
            },
        }
    }
}
