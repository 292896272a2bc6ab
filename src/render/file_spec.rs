//! `FileSpec`: one thing the build step must put into an image — which file
//! system, which path, what (bytes, a directory, a symlink, an absence, an
//! edit of an existing file) and with which mode and owner. Renderers only
//! produce these; they never touch a disk.

use std::fmt;

use crate::render::accounts::AccountEntries;
use crate::render::cmdline::CmdlineOp;

/// Which file system of the image a spec goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// The FAT boot partition (Ubuntu's `system-boot`); paths are relative
    /// to its root and carry no owner or mode.
    Boot,
    /// The ext4 root file system; paths are absolute.
    Root,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Boot => "boot",
            Self::Root => "root",
        })
    }
}

/// The account database an `AccountEntries` edit applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AccountDb {
    Passwd,
    Shadow,
    Group,
    Gshadow,
}

/// What to do at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileKind {
    /// Create or replace a regular file with these bytes.
    File { bytes: Vec<u8> },
    /// Create the directory (parents are created as root 0755).
    Dir,
    /// Create or replace a symbolic link.
    Symlink { target: String },
    /// Remove the file if it exists (e.g. Armbian's first-login marker).
    Absent,
    /// Merge these accounts into the image's existing account file with
    /// `AccountEntries::merge`; the file keeps its own mode and owner.
    AccountEntries {
        db: AccountDb,
        entries: AccountEntries,
    },
    /// Edit the first line of an existing `cmdline.txt` token by token
    /// with `cmdline::edit_cmdline`.
    CmdlineEdit { ops: Vec<CmdlineOp> },
    /// A regular file copied from the download cache (the k3s binary, its
    /// air-gap images: tens of MiB), streamed into the image by the build
    /// and never held in memory.
    Cached { file: CachedFile },
}

/// What `FileKind::Cached` copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedFile {
    /// What it is, for people: `k3s v1.31.4+k3s1 arm64 binary`.
    pub what: String,
    /// The verified file in the cache, when it is there (`pull`, or the
    /// build itself, puts it there; `render` only looks).
    pub found: Option<CachedBlob>,
}

/// A verified file of the download cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedBlob {
    pub path: std::path::PathBuf,
    pub sha256: crate::digest::Sha256,
    pub len: u64,
}

impl FileKind {
    pub fn name(&self) -> &'static str {
        match self {
            Self::File { .. } => "file",
            Self::Dir => "dir",
            Self::Symlink { .. } => "symlink",
            Self::Absent => "absent",
            Self::AccountEntries { .. } => "merge-accounts",
            Self::CmdlineEdit { .. } => "edit-cmdline",
            Self::Cached { .. } => "from-cache",
        }
    }
}

/// One entry of a node's rendered output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    pub target: Target,
    /// Absolute for `Root`, relative (no leading `/`) for `Boot`.
    pub path: String,
    pub kind: FileKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl FileSpec {
    /// A root-owned regular file.
    pub fn root_file(path: &str, mode: u32, bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            target: Target::Root,
            path: path.to_owned(),
            kind: FileKind::File {
                bytes: bytes.into(),
            },
            mode,
            uid: 0,
            gid: 0,
        }
    }

    /// A file on the boot FAT (FAT has no owners; mode is nominal 0644).
    pub fn boot_file(path: &str, bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            target: Target::Boot,
            path: path.to_owned(),
            kind: FileKind::File {
                bytes: bytes.into(),
            },
            mode: 0o644,
            uid: 0,
            gid: 0,
        }
    }

    pub fn root_dir(path: &str, mode: u32) -> Self {
        Self {
            target: Target::Root,
            path: path.to_owned(),
            kind: FileKind::Dir,
            mode,
            uid: 0,
            gid: 0,
        }
    }

    pub fn root_symlink(path: &str, target: &str) -> Self {
        Self {
            target: Target::Root,
            path: path.to_owned(),
            kind: FileKind::Symlink {
                target: target.to_owned(),
            },
            mode: 0o777,
            uid: 0,
            gid: 0,
        }
    }

    pub fn root_absent(path: &str) -> Self {
        Self {
            target: Target::Root,
            path: path.to_owned(),
            kind: FileKind::Absent,
            mode: 0,
            uid: 0,
            gid: 0,
        }
    }

    /// A root-owned regular file copied from the download cache.
    pub fn root_cached(path: &str, mode: u32, file: CachedFile) -> Self {
        Self {
            target: Target::Root,
            path: path.to_owned(),
            kind: FileKind::Cached { file },
            mode,
            uid: 0,
            gid: 0,
        }
    }

    pub fn owned_by(mut self, uid: u32, gid: u32) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }

    /// The bytes of a regular file, if this is one.
    pub fn bytes(&self) -> Option<&[u8]> {
        match &self.kind {
            FileKind::File { bytes } => Some(bytes),
            _ => None,
        }
    }
}
