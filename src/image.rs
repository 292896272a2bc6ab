//! An image file opened for looking inside: its partition table, what each
//! partition holds, and access to those filesystems by partition number or
//! label. This is the app-level entry point the commands share; errors here
//! carry the image path and partition so a user sees one clear line.
//!
//! Edits are transactions: `open_edit` locks the file against other
//! writers and opens it under a copy-on-write overlay; the caller edits
//! and checks through the overlay, then `Edit::commit` writes the changed
//! pages into the file. Dropping an `Edit` without committing writes
//! nothing.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};

use crate::disk::{self, Layout, Partition, PartitionTable};
use crate::fs::{Filesystem, FsInfo};
use crate::io::lock;
use crate::io::overlay::Overlay;
use crate::io::{PartitionWindow, Storage};

pub struct Image {
    path: PathBuf,
    file: Arc<dyn Storage>,
    len: u64,
    table: PartitionTable,
    /// What each data partition holds, by partition number. A damaged
    /// filesystem is kept as its error text, so other partitions stay usable.
    filesystems: Vec<(u32, Result<Option<FsInfo>, String>)>,
}

impl Image {
    /// Opens `path` read-only and reads its partition table.
    pub fn open(path: &Path) -> Result<Image> {
        let (file, len) = open_file(path, false)?;
        Image::over(path, Arc::new(file), len)
    }

    /// Opens `path` read-only under an in-memory overlay: the image can be
    /// edited through its windows while the file stays as it is. The
    /// overlay is returned to collect the written pages. The file is
    /// locked shared, so no `cp` or `rm` changes it while the overlay
    /// reads it.
    pub fn open_overlay(path: &Path) -> Result<(Image, Arc<Overlay>)> {
        Self::open_overlay_grown(path, None)
    }

    /// As [`Image::open_overlay`], the image grown to `size` bytes when
    /// that is more than the file's: zeros past the base, and on a GPT
    /// disk the backup table moved to the new end (`disk::grow`). A size
    /// below the file's is refused, naming both.
    pub fn open_overlay_grown(path: &Path, size: Option<u64>) -> Result<(Image, Arc<Overlay>)> {
        let (file, base_len) = open_file(path, false)?;
        lock::lock(&file, path, lock::Mode::Shared)?;
        let len = match size {
            Some(s) if s < base_len => bail!(
                "{} is {} ({base_len} bytes), larger than the disk size {} asked for",
                path.display(),
                crate::io::units::human_size(base_len),
                crate::io::units::human_size(s)
            ),
            Some(s) => s,
            None => base_len,
        };
        let overlay = Arc::new(Overlay::grown(file, base_len, len));
        if len > base_len {
            let read = |buf: &mut [u8], offset: u64| overlay.read_exact_at(buf, offset);
            let writes = crate::disk::grow::gpt_moves(&read, base_len, len)
                .map_err(|why| anyhow::anyhow!("{}: growing the disk: {why}", path.display()))?;
            for (offset, bytes) in writes {
                overlay.write_all_at(&bytes, offset).with_context(|| {
                    format!("{}: growing the disk at offset {offset}", path.display())
                })?;
            }
        }
        let image = Image::over(path, overlay.clone(), len)?;
        Ok((image, overlay))
    }

    /// Opens `path` for one edit: locked exclusively (another writer is
    /// refused, named), read through an overlay that keeps every write in
    /// memory until `Edit::commit`.
    pub fn open_edit(path: &Path) -> Result<(Image, Edit)> {
        let (file, len) = open_file(path, true)?;
        lock::lock(&file, path, lock::Mode::Exclusive)?;
        let base = file
            .try_clone()
            .with_context(|| format!("{}: cannot open", path.display()))?;
        let overlay = Arc::new(Overlay::new(base, len));
        let image = Image::over(path, overlay.clone(), len)?;
        let edit = Edit {
            path: path.to_path_buf(),
            file,
            overlay,
        };
        Ok((image, edit))
    }

    /// Reads the table and probes the partitions of `len` bytes of `file`.
    pub fn over(path: &Path, file: Arc<dyn Storage>, len: u64) -> Result<Image> {
        let table = match disk::read_table(&*file, len) {
            Ok(table) => table,
            Err(e) => match compressed(&*file) {
                // Not a partition table but a compressed file or a qcow2
                // image: say what it is and how to get the raw image out.
                Some(crate::source::Format::Qcow2) => bail!(
                    "{}: is a qcow2 image, not a raw disk image; \
                     `homelab-image pull {}` decodes it into the cache \
                     and prints the raw image's path",
                    path.display(),
                    path.display()
                ),
                Some(format) => bail!(
                    "{}: is compressed ({format}), not a raw disk image; \
                     `homelab-image pull {}` decompresses it into the cache \
                     and prints the raw image's path",
                    path.display(),
                    path.display()
                ),
                None => return Err(e).with_context(|| path.display().to_string()),
            },
        };
        let filesystems = table
            .data_partitions()
            .map(|p| {
                let window = PartitionWindow::new(Arc::clone(&file), p.range);
                let ptype = format!("{} ({})", p.ptype.sfdisk_id(), p.ptype.description());
                let info = crate::fs::probe_typed(&window, p.ptype.is_fat(), &ptype)
                    .map_err(|e| e.to_string());
                (p.number, info)
            })
            .collect();
        Ok(Image {
            path: path.to_path_buf(),
            file,
            len,
            table,
            filesystems,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn table(&self) -> &PartitionTable {
        &self.table
    }

    /// The filesystem found in partition `number`: `Ok(None)` when it holds
    /// none we know, `Err` with the reason when it is damaged.
    pub fn fs_info(&self, number: u32) -> Result<Option<&FsInfo>, &str> {
        match self.filesystems.iter().find(|(n, _)| *n == number) {
            Some((_, Ok(info))) => Ok(info.as_ref()),
            Some((_, Err(e))) => Err(e.as_str()),
            None => Ok(None),
        }
    }

    /// The filesystem label of partition `number`, if it has one.
    fn label_of(&self, number: u32) -> Option<&str> {
        self.fs_info(number)
            .ok()
            .flatten()
            .and_then(|i| i.label.as_deref())
    }

    /// Fails with the first damaged filesystem, naming its partition.
    pub fn check_filesystems(&self) -> Result<()> {
        for (n, info) in &self.filesystems {
            if let Err(e) = info {
                bail!("{}: partition {n}: {e}", self.path.display());
            }
        }
        Ok(())
    }

    pub fn window(&self, part: &Partition) -> PartitionWindow {
        PartitionWindow::new(Arc::clone(&self.file), part.range)
    }

    /// The partition named by `spec`: a number (`2`) or a filesystem label
    /// (`writable`, matched case-insensitively when unambiguous).
    pub fn partition(&self, spec: &str) -> Result<&Partition> {
        let shown = self.path.display();
        if let Ok(number) = spec.parse::<u32>() {
            return self.table.get(number).ok_or_else(|| {
                anyhow!(
                    "{shown}: no partition {number} (the image has {})",
                    self.describe_partitions()
                )
            });
        }
        let labelled = |exact: bool| -> Vec<&Partition> {
            self.table
                .data_partitions()
                .filter(|p| {
                    self.label_of(p.number).is_some_and(|l| {
                        if exact {
                            l == spec
                        } else {
                            l.eq_ignore_ascii_case(spec)
                        }
                    })
                })
                .collect()
        };
        let mut found = labelled(true);
        if found.is_empty() {
            found = labelled(false);
        }
        match found.as_slice() {
            [one] => Ok(one),
            [] => bail!(
                "{shown}: no partition labelled {spec:?} (the image has {})",
                self.describe_partitions()
            ),
            many => bail!(
                "{shown}: {} partitions are labelled {spec:?}; use a partition number",
                many.len()
            ),
        }
    }

    /// Opens the filesystem in the partition named by `spec`.
    pub fn filesystem(&self, spec: &str) -> Result<(u32, Filesystem)> {
        let part = self.partition(spec)?;
        let n = part.number;
        let shown = self.path.display();
        if part.ptype.is_extended_container() {
            bail!(
                "{shown}: partition {n} is an extended partition, a container for logical partitions"
            );
        }
        // Open what Image::open already probed, rather than probing again.
        let fs_type = match self.fs_info(n) {
            Ok(info) => info.map(|i| i.fs_type),
            Err(e) => bail!("{shown}: partition {n}: {e}"),
        };
        let fs = Filesystem::open(self.window(part), fs_type)
            .with_context(|| format!("{shown}: partition {n}"))?;
        Ok((n, fs))
    }

    /// Which of our target layouts this image is. A damaged filesystem
    /// fails it: the image is not classified by what is left readable.
    pub fn layout(&self) -> Result<Layout, disk::layout::LayoutError> {
        if let Some((number, Err(why))) = self.filesystems.iter().find(|(_, i)| i.is_err()) {
            return Err(disk::layout::LayoutError::Damaged {
                number: *number,
                why: why.clone(),
            });
        }
        let pairs: Vec<(&Partition, Option<&FsInfo>)> = self
            .table
            .data_partitions()
            .map(|p| (p, self.fs_info(p.number).ok().flatten()))
            .collect();
        disk::layout::detect(&self.table, &pairs)
    }

    /// "partitions 1 (system-boot), 2 (writable)" for error messages.
    fn describe_partitions(&self) -> String {
        let parts: Vec<String> = self
            .table
            .data_partitions()
            .map(|p| match self.label_of(p.number) {
                Some(label) => format!("{} ({label})", p.number),
                None => p.number.to_string(),
            })
            .collect();
        match parts.len() {
            0 => "no partitions".to_string(),
            1 => format!("partition {}", parts[0]),
            _ => format!("partitions {}", parts.join(", ")),
        }
    }
}

/// An edit in progress on an image file, holding its exclusive lock.
pub struct Edit {
    path: PathBuf,
    /// Open for writing; the lock lives as long as this handle.
    file: File,
    overlay: Arc<Overlay>,
}

impl Edit {
    /// Writes the changed pages into the image file and flushes it;
    /// returns how many 4 KiB pages were written. Call it only once the
    /// edit has been checked.
    pub fn commit(self) -> Result<usize> {
        self.overlay
            .commit(&self.file)
            .with_context(|| format!("{}: committing the edit", self.path.display()))
    }
}

/// Opens the image file at `path` (for writing too with `write`) and
/// returns it with its length.
/// The format of a file that starts like a compressed one (xz, gzip or
/// zstd magic) or a qcow2 image; asked only once its partition table failed to read, so a
/// raw image whose boot code happens to start with those bytes is never
/// mistaken for one.
fn compressed(file: &dyn Storage) -> Option<crate::source::Format> {
    let mut head = [0u8; 6];
    let n = file.read_at(&mut head, 0).ok()?;
    match crate::source::Format::detect(&head[..n]) {
        crate::source::Format::Raw => None,
        format => Some(format),
    }
}

fn open_file(path: &Path, write: bool) -> Result<(File, u64)> {
    let shown = path.display();
    let meta = std::fs::metadata(path).with_context(|| format!("{shown}: cannot open"))?;
    if meta.is_dir() {
        bail!("{shown}: is a directory, not a disk image");
    }
    let file = OpenOptions::new()
        .read(true)
        .write(write)
        .open(path)
        .with_context(|| format!("{shown}: cannot open"))?;
    let len = image_len(&file, &meta).with_context(|| format!("{shown}: reading its size"))?;
    Ok((file, len))
}

/// Size of a regular file, or of a block device (whose metadata says 0).
fn image_len(file: &File, meta: &std::fs::Metadata) -> std::io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    if meta.is_file() {
        return Ok(meta.len());
    }
    let mut f = file;
    let len = f.seek(SeekFrom::End(0))?;
    f.seek(SeekFrom::Start(0))?;
    Ok(len)
}
