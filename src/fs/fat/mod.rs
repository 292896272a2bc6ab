//! FAT volumes inside a partition window, through the fatfs crate (0.3.6).
//!
//! We only read, list, and create or replace files in directories that
//! already exist: fatfs 0.3.6's `create_dir` makes volumes that fail
//! `fsck.fat` (shared/reference/crates.md §2), so it is never called.
//! Timestamps of written files are fixed, so images are reproducible, and
//! the volume is unmounted explicitly so errors surface (its `Drop` only
//! logs them).

mod bpb;

use std::io::{Read, Write};

pub use bpb::{Bpb, BpbError, FatType};

use super::{EntryKind, FsEntry, FsError, normalize};
use crate::io::PartitionWindow;

/// The fixed time stamped on everything we write: 2020-01-01 00:00:00.
/// Reproducible output matters more than a meaningful mtime on a seed file.
#[derive(Debug)]
struct FixedTime;

impl fatfs::TimeProvider for FixedTime {
    fn get_current_date(&self) -> fatfs::Date {
        fatfs::Date {
            year: 2020,
            month: 1,
            day: 1,
        }
    }

    fn get_current_date_time(&self) -> fatfs::DateTime {
        fatfs::DateTime {
            date: self.get_current_date(),
            time: fatfs::Time {
                hour: 0,
                min: 0,
                sec: 0,
                millis: 0,
            },
        }
    }
}

static FIXED_TIME: FixedTime = FixedTime;

pub struct FatVolume {
    fs: fatfs::FileSystem<PartitionWindow>,
    bpb: Bpb,
}

impl FatVolume {
    /// Checks the boot sector, then mounts the volume.
    pub fn open(window: PartitionWindow) -> Result<FatVolume, FsError> {
        let mut sector = [0u8; 512];
        window
            .read_exact_at(0, &mut sector)
            .map_err(|e| FsError::io("/", e))?;
        let bpb = Bpb::parse(&sector, window.len().0)?;
        let options = fatfs::FsOptions::new()
            .update_accessed_date(false)
            .time_provider(&FIXED_TIME);
        let fs = fatfs::FileSystem::new(window, options).map_err(|e| FsError::io("/", e))?;
        Ok(FatVolume { fs, bpb })
    }

    pub fn bpb(&self) -> &Bpb {
        &self.bpb
    }

    /// The label as blkid reports it: the root directory's volume-label
    /// entry when there is one, else the boot sector copy.
    pub fn label(&self) -> Option<String> {
        let from_root = self
            .fs
            .read_volume_label_from_root_dir()
            .ok()
            .flatten()
            .map(|l| l.trim_end().to_string());
        let label = from_root.unwrap_or_else(|| self.bpb.boot_label.clone());
        (!label.is_empty() && label != "NO NAME").then_some(label)
    }

    fn dir(&self, path: &str) -> Result<fatfs::Dir<'_, PartitionWindow>, FsError> {
        let rel = normalize(path);
        if rel.is_empty() {
            return Ok(self.fs.root_dir());
        }
        self.fs
            .root_dir()
            .open_dir(&rel)
            .map_err(|e| FsError::lookup(path, e))
    }

    /// Entries of the directory at `path`, without `.` and `..`.
    pub fn list(&self, path: &str) -> Result<Vec<FsEntry>, FsError> {
        let dir = self.dir(path)?;
        let mut out = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(|e| FsError::io(path, e))?;
            let name = entry.file_name();
            if name == "." || name == ".." {
                continue;
            }
            let m = entry.modified();
            out.push(FsEntry {
                kind: if entry.is_dir() {
                    EntryKind::Dir
                } else {
                    EntryKind::File
                },
                size: if entry.is_dir() { 0 } else { entry.len() },
                mode: None,
                uid: None,
                gid: None,
                mtime: format!(
                    "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                    m.date.year, m.date.month, m.date.day, m.time.hour, m.time.min, m.time.sec
                ),
                link_target: None,
                name,
            });
        }
        Ok(out)
    }

    /// The entry for `path` itself (FAT names match case-insensitively).
    pub fn stat(&self, path: &str) -> Result<FsEntry, FsError> {
        let rel = normalize(path);
        if rel.is_empty() {
            return Ok(FsEntry {
                name: "/".into(),
                kind: EntryKind::Dir,
                size: 0,
                mode: None,
                uid: None,
                gid: None,
                mtime: String::new(),
                link_target: None,
            });
        }
        let (parent, name) = split_parent(&rel);
        self.list(parent)?
            .into_iter()
            .find(|e| e.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| FsError::NotFound(path.to_string()))
    }

    /// The bytes of the file at `path`.
    pub fn read(&self, path: &str) -> Result<Vec<u8>, FsError> {
        let rel = normalize(path);
        if rel.is_empty() || self.fs.root_dir().open_dir(&rel).is_ok() {
            return Err(FsError::IsADirectory(path.to_string()));
        }
        let mut file = self
            .fs
            .root_dir()
            .open_file(&rel)
            .map_err(|e| FsError::lookup(path, e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| FsError::io(path, e))?;
        Ok(bytes)
    }

    /// Whether `path` names a file or directory.
    pub fn exists(&self, path: &str) -> bool {
        let rel = normalize(path);
        rel.is_empty()
            || self.fs.root_dir().open_file(&rel).is_ok()
            || self.fs.root_dir().open_dir(&rel).is_ok()
    }

    /// Creates or replaces the file at `path`; its directory must exist.
    pub fn write_file(&self, path: &str, bytes: &[u8]) -> Result<(), FsError> {
        let rel = normalize(path);
        let (parent, name) = split_parent(&rel);
        if name.is_empty() {
            return Err(FsError::IsADirectory(path.to_string()));
        }
        let dir = self.dir(parent)?;
        if dir.open_dir(name).is_ok() {
            return Err(FsError::IsADirectory(path.to_string()));
        }
        let mut file = dir.create_file(name).map_err(|e| FsError::io(path, e))?;
        file.truncate().map_err(|e| FsError::io(path, e))?;
        file.write_all(bytes).map_err(|e| FsError::io(path, e))?;
        file.flush().map_err(|e| FsError::io(path, e))?;
        Ok(())
    }

    /// Checks that `path` is a file `remove_file` can remove: `Ok(false)`
    /// when it does not exist.
    pub fn removable(&self, path: &str) -> Result<bool, FsError> {
        let rel = normalize(path);
        if rel.is_empty() {
            return Err(FsError::IsADirectory(path.to_string()));
        }
        match self.stat(path) {
            Ok(e) if e.kind == EntryKind::Dir => Err(FsError::IsADirectory(path.to_string())),
            Ok(_) => Ok(true),
            Err(FsError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes the file at `path` (its clusters are freed).
    pub fn remove_file(&self, path: &str) -> Result<(), FsError> {
        if !self.removable(path)? {
            return Err(FsError::NotFound(path.to_string()));
        }
        let rel = normalize(path);
        let (parent, name) = split_parent(&rel);
        self.dir(parent)?
            .remove(name)
            .map_err(|e| FsError::io(path, e))
    }

    /// Flushes the FSInfo sector and clears the dirty flag.
    pub fn unmount(self) -> Result<(), FsError> {
        self.fs.unmount().map_err(|e| FsError::io("/", e))
    }
}

/// `"a/b/c"` → `("a/b", "c")`; `"c"` → `("", "c")` (a normalized path).
fn split_parent(rel: &str) -> (&str, &str) {
    rel.rsplit_once('/').unwrap_or(("", rel))
}
