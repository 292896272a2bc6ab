//! FAT volumes inside a partition window, through the fatfs crate (0.3.6).
//!
//! fatfs follows whatever the volume says, so it never sees a volume we
//! have not checked first: the boot sector (`bpb`) and every cluster chain
//! it could follow (`check`) — the root directory's to read the label, the
//! whole tree for anything else. Edits end with `unmount_checked`, which
//! checks the whole tree again, so a caller working in an overlay can
//! refuse to commit a volume fatfs left inconsistent.
//!
//! We only read, list, and create or replace files in directories that
//! already exist: fatfs 0.3.6's `create_dir` makes volumes that fail
//! `fsck.fat` (shared/reference/crates.md §2), so it is never called.
//! Timestamps of written files are fixed, so images are reproducible, and
//! the volume is unmounted explicitly so errors surface (its `Drop` only
//! logs them).

mod bpb;
mod check;

use std::io::{Read, Write};

pub use bpb::{Bpb, BpbError, FatType};
pub use check::{ChainError, FileMap, Scope};

use super::{EntryKind, FsEntry, FsError, normalize};
use crate::io::PartitionWindow;

/// The fixed time stamped on everything we write: 2020-01-01 00:00:00.
/// Reproducible output matters more than a meaningful mtime on a seed file.
#[derive(Debug)]
pub(crate) struct FixedTime;

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

pub(crate) static FIXED_TIME: FixedTime = FixedTime;

/// The largest file FAT can hold: its size field is 32 bits.
pub const MAX_FILE_SIZE: u64 = u32::MAX as u64; // as: widening

pub struct FatVolume {
    /// Boxed: fatfs's state is large, and `Filesystem` holds either kind.
    fs: Box<fatfs::FileSystem<PartitionWindow>>,
    bpb: Bpb,
    /// The same bytes fatfs works on, for the check after an edit.
    window: PartitionWindow,
    /// Stale directory slots to zero before the first edit (see
    /// `check::Checked::dead`).
    dead: std::cell::RefCell<Vec<(u64, u64)>>,
}

/// Parses the boot sector of the volume in `window`.
fn read_bpb(window: &PartitionWindow) -> Result<Bpb, FsError> {
    let mut sector = [0u8; 512];
    window
        .read_exact_at(0, &mut sector)
        .map_err(|e| FsError::io("/", e))?;
    Ok(Bpb::parse(&sector, window.len().0)?)
}

impl FatVolume {
    /// Checks the boot sector and every cluster chain reachable from the
    /// root, then mounts the volume.
    pub fn open(window: PartitionWindow) -> Result<FatVolume, FsError> {
        FatVolume::open_checked(window, Scope::Everything)
    }

    /// The volume's label, checking only what reading it follows (the
    /// boot sector and the root directory's chain): what `probe` needs,
    /// and cheap enough to run on every partition of every image opened.
    pub fn probe_label(window: PartitionWindow) -> Result<Option<String>, FsError> {
        Ok(FatVolume::open_checked(window, Scope::RootDir)?.label())
    }

    /// Where every file of the volume in `window` lies, after the same
    /// full check `open` does (so each run is inside the data area and no
    /// chain loops): what serving files straight from the volume needs.
    pub fn map_files(window: &PartitionWindow) -> Result<Vec<check::FileMap>, FsError> {
        let bpb = read_bpb(window)?;
        Ok(check::check(window, &bpb, Scope::Map)?.files)
    }

    fn open_checked(window: PartitionWindow, scope: Scope) -> Result<FatVolume, FsError> {
        let bpb = read_bpb(&window)?;
        let checked = check::check(&window, &bpb, scope)?;
        let options = fatfs::FsOptions::new()
            .update_accessed_date(false)
            .time_provider(&FIXED_TIME);
        let fs =
            fatfs::FileSystem::new(window.clone(), options).map_err(|e| FsError::io("/", e))?;
        Ok(FatVolume {
            fs: Box::new(fs),
            bpb,
            window,
            dead: std::cell::RefCell::new(checked.dead),
        })
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

    /// The bytes of the file at `path` (at most its size, which the
    /// check on opening matched with its chain: at most 4 GiB).
    pub fn read(&self, path: &str) -> Result<Vec<u8>, FsError> {
        let mut bytes = Vec::new();
        self.read_to(path, &mut bytes)?;
        Ok(bytes)
    }

    /// A reader of the file at `path`: exactly its size in bytes.
    pub fn reader(&self, path: &str) -> Result<impl Read + '_, FsError> {
        let rel = normalize(path);
        if rel.is_empty() || self.fs.root_dir().open_dir(&rel).is_ok() {
            return Err(FsError::IsADirectory(path.to_string()));
        }
        if path.ends_with('/') {
            return Err(FsError::NotADirectory(path.to_string()));
        }
        self.fs
            .root_dir()
            .open_file(&rel)
            .map_err(|e| FsError::lookup(path, e))
    }

    /// Streams the file at `path` into `out`; returns the bytes copied.
    /// Errors writing to `out` come back as `FsError::Output`.
    pub fn read_to(&self, path: &str, out: &mut dyn Write) -> Result<u64, FsError> {
        let mut file = self.reader(path)?;
        let mut buf = vec![0u8; 64 << 10];
        let mut total = 0u64;
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(FsError::io(path, e)),
            };
            out.write_all(&buf[..n]).map_err(FsError::Output)?;
            total += n as u64; // as: n <= 64 KiB
        }
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
        self.write_from(path, &mut &bytes[..])
    }

    /// Creates or replaces the file at `path` with what `src` yields, up
    /// to FAT's 4 GiB limit; its directory must exist. Errors reading
    /// `src` come back as `FsError::Input`.
    pub fn write_from(&self, path: &str, src: &mut dyn Read) -> Result<(), FsError> {
        let rel = normalize(path);
        let (parent, name) = split_parent(&rel);
        if name.is_empty() {
            return Err(FsError::IsADirectory(path.to_string()));
        }
        let dir = self.dir(parent)?;
        if dir.open_dir(name).is_ok() {
            return Err(FsError::IsADirectory(path.to_string()));
        }
        if path.ends_with('/') {
            return Err(FsError::NotADirectory(path.to_string()));
        }
        self.clear_dead()?;
        let mut file = dir.create_file(name).map_err(|e| FsError::io(path, e))?;
        file.truncate().map_err(|e| FsError::io(path, e))?;
        let mut buf = vec![0u8; 64 << 10];
        let mut total = 0u64;
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(FsError::Input(e)),
            };
            total += n as u64; // as: n <= 64 KiB
            if total > MAX_FILE_SIZE {
                return Err(FsError::io(
                    path,
                    std::io::Error::new(
                        std::io::ErrorKind::FileTooLarge,
                        "FAT cannot hold a file of 4 GiB or more",
                    ),
                ));
            }
            file.write_all(&buf[..n])
                .map_err(|e| FsError::io(path, e))?;
        }
        file.flush().map_err(|e| FsError::io(path, e))?;
        Ok(())
    }

    /// Zeroes the stale slots after directories' end marks, once, before
    /// the first edit: free space by the spec, so no file changes, but
    /// fatfs would otherwise turn them into entries when it writes into
    /// an end mark's slot.
    fn clear_dead(&self) -> Result<(), FsError> {
        for (at, len) in self.dead.take() {
            // A span is the rest of one cluster: at most 512 KiB.
            let zeros = vec![0u8; len as usize];
            self.window
                .write_all_at(at, &zeros)
                .map_err(|e| FsError::io("/", e))?;
        }
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

    /// Counts the free clusters (a scan of the FAT) so that the FSInfo
    /// sector `unmount` writes carries the count: a volume fatfs just
    /// formatted has none, which fsck.fat reports.
    pub fn count_free_clusters(&self) -> Result<u32, FsError> {
        self.fs
            .stats()
            .map(|s| s.free_clusters())
            .map_err(|e| FsError::io("/", e))
    }

    /// Flushes the FSInfo sector and clears the dirty flag.
    pub fn unmount(self) -> Result<(), FsError> {
        (*self.fs).unmount().map_err(|e| FsError::io("/", e))
    }

    /// Unmounts, then checks the boot sector and every chain again: what
    /// an edit must pass before its overlay is committed.
    pub fn unmount_checked(self) -> Result<(), FsError> {
        let window = self.window.clone();
        self.unmount()?;
        let bpb = read_bpb(&window)?;
        check::check(&window, &bpb, Scope::Everything)?;
        Ok(())
    }
}

/// `"a/b/c"` → `("a/b", "c")`; `"c"` → `("", "c")` (a normalized path).
fn split_parent(rel: &str) -> (&str, &str) {
    rel.rsplit_once('/').unwrap_or(("", rel))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{ByteLen, ByteOffset, ByteRange, MemStorage};
    use std::sync::Arc;

    /// An empty FAT16 volume in memory.
    fn fat16() -> PartitionWindow {
        let len = 8u64 << 20;
        let mut disk = std::io::Cursor::new(vec![0u8; len as usize]);
        fatfs::format_volume(
            &mut disk,
            fatfs::FormatVolumeOptions::new().fat_type(fatfs::FatType::Fat16),
        )
        .unwrap();
        let mem = Arc::new(MemStorage::new(disk.into_inner()));
        PartitionWindow::new(mem, ByteRange::new(ByteOffset(0), ByteLen(len)).unwrap())
    }

    #[test]
    fn stale_slots_after_the_end_mark_do_not_come_to_life_when_a_file_is_added() {
        // Found by the fat_rw fuzz target: the root's first slot is the end
        // mark and stale entries follow it. fatfs writes the new file's
        // entries into the first slots; the stale entry after them used to
        // become a file whose chain starts at a free cluster.
        let w = fat16();
        let bpb = read_bpb(&w).unwrap();
        let (root, len) = bpb.root_dir_region();
        let mut stale = [0u8; 32];
        stale[..11].copy_from_slice(b"STALE   TXT");
        stale[11] = 0x20;
        stale[26..28].copy_from_slice(&100u16.to_le_bytes());
        stale[28..32].copy_from_slice(&5000u32.to_le_bytes());
        for slot in 1..len / 32 {
            w.write_all_at(root + slot * 32, &stale).unwrap();
        }
        let vol = FatVolume::open(w.clone()).unwrap();
        assert!(vol.list("/").unwrap().is_empty());
        vol.write_file("/a-new-file.txt", b"new\n").unwrap();
        vol.unmount_checked().unwrap();
        let vol = FatVolume::open(w).unwrap();
        let names: Vec<String> = vol.list("/").unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["a-new-file.txt"]);
    }
}
