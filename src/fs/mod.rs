//! Filesystems inside partitions: recognising them (`probe`) and reading
//! them through one small interface, whatever they are (FAT or ext4).

pub mod copy_in;
pub mod ext4;
pub mod fat;
pub mod limits;
mod probe;

use serde::Serialize;

pub use probe::{FsInfo, FsType, probe, probe_typed};

use crate::io::PartitionWindow;

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error(transparent)]
    FatBootSector(#[from] fat::BpbError),
    #[error(transparent)]
    FatChain(#[from] fat::ChainError),
    #[error(transparent)]
    Ext4Superblock(#[from] ext4::SuperblockError),
    #[error("{0}: no such file or directory")]
    NotFound(String),
    #[error("{0}: not a directory")]
    NotADirectory(String),
    #[error("{0}: is a directory")]
    IsADirectory(String),
    #[error("{path}: {message}")]
    Ext4 { path: String, message: String },
    /// The cause is part of the message and deliberately not a `source`
    /// (a field named `source` would make it one), so `{:#}` prints it once.
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
    /// Writing what was read out of the filesystem failed (for `cat`, a
    /// closed pipe is not an error).
    #[error("writing the output: {0}")]
    Output(std::io::Error),
    /// Reading what was to be written into the filesystem failed (the
    /// caller names the source).
    #[error("reading the input: {0}")]
    Input(std::io::Error),
    #[error("no filesystem we can read (neither a FAT boot sector nor an ext2/3/4 superblock)")]
    Unrecognised,
    /// A filesystem whose features or state the reader cannot handle.
    #[error("cannot read this ext4 filesystem: {0}")]
    Unreadable(String),
    /// A file too large to hold in memory; its size may well be damage.
    #[error(
        "{path}: its size is {size} bytes, over the {} limit for a file read whole \
         from an image",
        crate::io::units::human_size(*limit)
    )]
    TooLarge { path: String, size: u64, limit: u64 },
    /// A partition whose table type says FAT holds no readable FAT: it is
    /// damaged, not something else (and never a layout without it).
    #[error(
        "no filesystem we can read where the partition type {ptype} says FAT: the FAT is damaged ({why})"
    )]
    DamagedFat { ptype: String, why: String },
}

impl FsError {
    fn io(path: &str, error: std::io::Error) -> FsError {
        FsError::Io {
            path: shown_path(path),
            error,
        }
    }

    /// Turns fatfs's lookup errors (a missing path, a file used as a
    /// directory, a directory used as a file) into our words.
    fn lookup(path: &str, source: std::io::Error) -> FsError {
        // fatfs 0.3.6 says "Not a directory" / "Is a directory" with
        // ErrorKind::Other; its message is the only signal.
        if source.kind() == std::io::ErrorKind::Other {
            match source.to_string().as_str() {
                "Not a directory" => return FsError::NotADirectory(shown_path(path)),
                "Is a directory" => return FsError::IsADirectory(shown_path(path)),
                _ => {}
            }
        }
        match source.kind() {
            std::io::ErrorKind::NotFound => FsError::NotFound(shown_path(path)),
            std::io::ErrorKind::InvalidInput | std::io::ErrorKind::NotADirectory => {
                FsError::NotADirectory(shown_path(path))
            }
            _ => FsError::io(path, source),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    #[serde(rename = "char-device")]
    CharDevice,
    #[serde(rename = "block-device")]
    BlockDevice,
    /// A mode whose type bits name no file type.
    Other,
}

/// One directory entry, as `ls -l` would show it. FAT has no modes or
/// owners, so those are `None` there.
#[derive(Debug, Clone, Serialize)]
pub struct FsEntry {
    pub name: String,
    pub kind: EntryKind,
    pub size: u64,
    pub mode: Option<u16>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mtime: String,
    pub link_target: Option<String>,
}

/// An opened filesystem of either kind.
pub enum Filesystem {
    Fat(fat::FatVolume),
    Ext4(ext4::Ext4Volume),
}

impl Filesystem {
    /// Opens the filesystem in `window`, of the type `probe` found there
    /// (`None`: it found none).
    pub fn open(window: PartitionWindow, fs_type: Option<FsType>) -> Result<Filesystem, FsError> {
        match fs_type {
            Some(FsType::Fat(_)) => Ok(Filesystem::Fat(fat::FatVolume::open(window)?)),
            Some(FsType::Ext(_)) => Ok(Filesystem::Ext4(ext4::Ext4Volume::open(window)?)),
            None => Err(FsError::Unrecognised),
        }
    }

    pub fn list(&self, path: &str) -> Result<Vec<FsEntry>, FsError> {
        let mut entries = match self {
            Filesystem::Fat(v) => v.list(path)?,
            Filesystem::Ext4(v) => v.list(path)?,
        };
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// The entry for `path` itself (a symlink is not followed).
    pub fn stat(&self, path: &str) -> Result<FsEntry, FsError> {
        match self {
            Filesystem::Fat(v) => v.stat(path),
            Filesystem::Ext4(v) => v.stat(path),
        }
    }

    /// The bytes of the file at `path`, refused (`TooLarge`) when the file
    /// says it holds more than `limit` bytes: every read of a whole file
    /// from an image goes through here.
    pub fn read_bounded(&self, path: &str, limit: u64) -> Result<Vec<u8>, FsError> {
        match self {
            Filesystem::Fat(v) => fat_read_bounded(v, path, limit),
            Filesystem::Ext4(v) => v.read_bounded(path, limit),
        }
    }

    /// Copies the file at `path` to `out` without holding it in memory
    /// (ext4; a FAT file, at most 4 GiB, is still read whole first).
    /// Returns the bytes copied.
    pub fn stream(&self, path: &str, out: &mut dyn std::io::Write) -> Result<u64, StreamError> {
        match self {
            // FAT streams a cluster run at a time, over a checked chain.
            Filesystem::Fat(v) => v.read_to(path, out).map_err(|e| match e {
                FsError::Output(e) => StreamError::Write(e),
                e => StreamError::Read(e),
            }),
            Filesystem::Ext4(v) => v.stream(path, out),
        }
    }

    pub fn exists(&self, path: &str) -> bool {
        match self {
            Filesystem::Fat(v) => v.exists(path),
            Filesystem::Ext4(v) => v.exists(path),
        }
    }

    /// `read_bounded`, or `None` when the file does not exist.
    pub fn read_bounded_if_exists(
        &self,
        path: &str,
        limit: u64,
    ) -> Result<Option<Vec<u8>>, FsError> {
        match self.read_bounded(path, limit) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(FsError::NotFound(_) | FsError::NotADirectory(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads a configuration file (at most `limits::PARSED_FILE` bytes),
    /// or `None` when it does not exist.
    pub fn read_if_exists(&self, path: &str) -> Result<Option<Vec<u8>>, FsError> {
        self.read_bounded_if_exists(path, limits::PARSED_FILE)
    }

    /// Reads a configuration file (at most `limits::PARSED_FILE` bytes) as
    /// (lossy UTF-8) text, or `None` when it does not exist.
    pub fn read_text_if_exists(&self, path: &str) -> Result<Option<String>, FsError> {
        Ok(self
            .read_if_exists(path)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }
}

/// Where a streamed copy (`Filesystem::stream`) failed.
#[derive(Debug)]
pub enum StreamError {
    /// Reading the file inside the image.
    Read(FsError),
    /// Writing to the destination.
    Write(std::io::Error),
}

/// `read_bounded` for a FAT volume, also used where a build edits one: the
/// directory entry's size is checked before the file is read, and the
/// bytes read after (a cluster chain may hold more than the entry says).
pub(crate) fn fat_read_bounded(
    v: &fat::FatVolume,
    path: &str,
    limit: u64,
) -> Result<Vec<u8>, FsError> {
    let entry = v.stat(path)?;
    if entry.kind == EntryKind::Dir {
        return Err(FsError::IsADirectory(path.to_string()));
    }
    let too_large = |size| FsError::TooLarge {
        path: path.to_string(),
        size,
        limit,
    };
    if entry.size > limit {
        return Err(too_large(entry.size));
    }
    let bytes = v.read(path)?;
    let got = bytes.len() as u64; // as: usize fits in u64
    if got > limit {
        return Err(too_large(got));
    }
    Ok(bytes)
}

/// One line of `ls` output. Short form: the name, `/` after directories,
/// `-> target` after symlinks. Long form adds type and mode, owner, size
/// and modification time (FAT has no modes or owners: shown as `-`).
pub fn format_entry(e: &FsEntry, long: bool) -> String {
    let name = match (e.kind, &e.link_target) {
        (EntryKind::Dir, _) => format!("{}/", e.name),
        (EntryKind::Symlink, Some(t)) => format!("{} -> {t}", e.name),
        _ => e.name.clone(),
    };
    if !long {
        return name;
    }
    // The type letters of coreutils' `ls -l` (filemodestring).
    let kind = match e.kind {
        EntryKind::Dir => 'd',
        EntryKind::Symlink => 'l',
        EntryKind::File => '-',
        EntryKind::Fifo => 'p',
        EntryKind::Socket => 's',
        EntryKind::CharDevice => 'c',
        EntryKind::BlockDevice => 'b',
        EntryKind::Other => '?',
    };
    let mode = match e.mode {
        Some(m) => {
            let mut s = String::new();
            // (shift, special bit, letter when also executable / when not)
            for (shift, special, set, unset) in [
                (6u16, 0o4000, 's', 'S'),
                (3, 0o2000, 's', 'S'),
                (0, 0o1000, 't', 'T'),
            ] {
                let bits = (m >> shift) & 7;
                s.push(if bits & 4 != 0 { 'r' } else { '-' });
                s.push(if bits & 2 != 0 { 'w' } else { '-' });
                s.push(match (m & special != 0, bits & 1 != 0) {
                    (true, true) => set,
                    (true, false) => unset,
                    (false, true) => 'x',
                    (false, false) => '-',
                });
            }
            s
        }
        None => "---------".to_string(),
    };
    let id = |v: Option<u32>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    format!(
        "{kind}{mode} {:>5} {:>5} {:>10} {} {name}",
        id(e.uid),
        id(e.gid),
        e.size,
        e.mtime
    )
}

/// A path inside a filesystem as messages show it: the root is `/`, not "".
fn shown_path(path: &str) -> String {
    if path.is_empty() {
        "/".to_string()
    } else {
        path.to_string()
    }
}

/// A path inside a filesystem without leading, trailing or doubled
/// slashes and without `.` components: `"/a//b/./c/"` → `"a/b/c"`.
pub fn normalize(path: &str) -> String {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::{FsError, normalize};

    #[test]
    fn an_io_error_prints_its_cause_once_under_alternate_format() {
        let e = FsError::io("/etc/passwd", std::io::Error::other("disk on fire"));
        let shown = format!("{:#}", anyhow::Error::new(e).context("x.img: partition 2"));
        assert_eq!(shown.matches("disk on fire").count(), 1, "{shown}");
        assert!(shown.contains("/etc/passwd: disk on fire"), "{shown}");
    }

    #[test]
    fn paths_normalize() {
        assert_eq!(normalize("/"), "");
        assert_eq!(normalize("/a//b/./c/"), "a/b/c");
        assert_eq!(normalize("cmdline.txt"), "cmdline.txt");
    }
}
