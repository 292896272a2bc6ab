//! Filesystems inside partitions: recognising them (`probe`) and reading
//! them through one small interface, whatever they are (FAT or ext4).

pub mod copy_in;
pub mod ext4;
pub mod fat;
mod probe;

use serde::Serialize;

pub use probe::{FsInfo, FsType, probe};

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
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
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
}

impl FsError {
    fn io(path: &str, source: std::io::Error) -> FsError {
        FsError::Io {
            path: path.to_string(),
            source,
        }
    }

    /// Turns fatfs's lookup errors (a missing path, a file used as a
    /// directory, a directory used as a file) into our words.
    fn lookup(path: &str, source: std::io::Error) -> FsError {
        // fatfs 0.3.6 says "Not a directory" / "Is a directory" with
        // ErrorKind::Other; its message is the only signal.
        if source.kind() == std::io::ErrorKind::Other {
            match source.to_string().as_str() {
                "Not a directory" => return FsError::NotADirectory(path.to_string()),
                "Is a directory" => return FsError::IsADirectory(path.to_string()),
                _ => {}
            }
        }
        match source.kind() {
            std::io::ErrorKind::NotFound => FsError::NotFound(path.to_string()),
            std::io::ErrorKind::InvalidInput | std::io::ErrorKind::NotADirectory => {
                FsError::NotADirectory(path.to_string())
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

    pub fn read(&self, path: &str) -> Result<Vec<u8>, FsError> {
        match self {
            Filesystem::Fat(v) => v.read(path),
            Filesystem::Ext4(v) => v.read(path),
        }
    }

    /// Streams the file at `path` into `out` (FAT a chunk at a time);
    /// returns the bytes copied. Errors writing to `out` are
    /// `FsError::Output`.
    pub fn read_to(&self, path: &str, out: &mut dyn std::io::Write) -> Result<u64, FsError> {
        match self {
            Filesystem::Fat(v) => v.read_to(path, out),
            Filesystem::Ext4(v) => {
                let bytes = v.read(path)?;
                out.write_all(&bytes).map_err(FsError::Output)?;
                Ok(bytes.len() as u64) // as: usize fits u64
            }
        }
    }

    pub fn exists(&self, path: &str) -> bool {
        match self {
            Filesystem::Fat(v) => v.exists(path),
            Filesystem::Ext4(v) => v.exists(path),
        }
    }

    /// Reads a file, or `None` when it does not exist.
    pub fn read_if_exists(&self, path: &str) -> Result<Option<Vec<u8>>, FsError> {
        match self.read(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(FsError::NotFound(_) | FsError::NotADirectory(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads a file as (lossy UTF-8) text, or `None` when it does not exist.
    pub fn read_text_if_exists(&self, path: &str) -> Result<Option<String>, FsError> {
        Ok(self
            .read_if_exists(path)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }
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
    let kind = match e.kind {
        EntryKind::Dir => 'd',
        EntryKind::Symlink => 'l',
        EntryKind::File => '-',
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
    use super::normalize;

    #[test]
    fn paths_normalize() {
        assert_eq!(normalize("/"), "");
        assert_eq!(normalize("/a//b/./c/"), "a/b/c");
        assert_eq!(normalize("cmdline.txt"), "cmdline.txt");
    }
}
