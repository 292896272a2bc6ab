//! Opening the target disk for good: `O_EXCL` (the kernel refuses a block
//! device that is mounted, swapped on, held, or opened exclusively by
//! another program), then the rules again on what was actually opened —
//! the path may name a different disk than when it was checked (a card
//! swapped, a `/dev/disk/by-id` link moved), so the opened descriptor's
//! device number is looked up afresh in sysfs.

use std::fs::File;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

use super::devices::{self, Disk, LookupError};
use super::privileges::{self, PrivilegeError};
use super::rules::{self, Context, Overrides, Refusal};
use super::sysfs::{self, DevNum, SysError};

/// The disk, open for writing and held exclusively until dropped.
#[derive(Debug)]
pub struct Exclusive {
    pub file: File,
    /// The disk as sysfs describes it after the open.
    pub disk: Disk,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Privileges(#[from] PrivilegeError),
    #[error(
        "{}: refused (rule busy): in use (mounted, swap, held by md/dm, or opened exclusively \
         by another program); the kernel refused exclusive access",
        path.display()
    )]
    Busy { path: PathBuf },
    #[error("{}: not a block device", path.display())]
    NotBlock { path: PathBuf },
    #[error("{}: opening it: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "{}: changed since it was checked (was {expected}, {} bytes; now {found}, {} bytes); run again",
        path.display(), expected_size, found_size
    )]
    Changed {
        path: PathBuf,
        expected: DevNum,
        expected_size: u64,
        found: DevNum,
        found_size: u64,
    },
    // The cause is in the message, not a `source`: `{:#}` would print it
    // twice.
    #[error("re-reading the devices after opening: {cause}")]
    Scan { cause: SysError },
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error(transparent)]
    Refused(#[from] Refusal),
}

/// Opens `path` (the disk `expected`, checked and confirmed by the caller)
/// with `O_RDWR | O_EXCL | O_CLOEXEC`, then checks again: the opened
/// device must be `expected` (same device number and size), and the rules
/// must still pass on a fresh scan of `root` (read-only, too, is read
/// again from `sys/dev/block/MAJ:MIN/ro`). The size confirmation counts
/// as given: the caller asked about this very disk.
pub fn open_exclusive(
    path: &Path,
    expected: &Disk,
    root: &Path,
    ctx: &Context,
    ov: &Overrides,
) -> Result<Exclusive, OpenError> {
    let file = open(path, OFlags::RDWR)?;
    let stat = rustix::fs::fstat(&file).map_err(|e| OpenError::Io {
        path: path.to_path_buf(),
        cause: e.into(),
    })?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::BlockDevice {
        return Err(OpenError::NotBlock {
            path: path.to_path_buf(),
        });
    }
    let found = DevNum::from_raw(stat.st_rdev);
    let disks = devices::scan(root).map_err(|cause| OpenError::Scan { cause })?;
    let disk = devices::disk_by_dev(&disks, path, found)?;
    if found != expected.dev || disk.size != expected.size {
        return Err(OpenError::Changed {
            path: path.to_path_buf(),
            expected: expected.dev,
            expected_size: expected.size,
            found,
            found_size: disk.size,
        });
    }
    let ov = Overrides { yes: true, ..*ov };
    rules::check(disk, ctx, &ov)?;
    let ro_dir = root.join("sys/dev/block").join(found.to_string());
    if sysfs::attr_flag(&ro_dir, "ro") {
        return Err(Refusal::ReadOnly {
            device: path.to_path_buf(),
        }
        .into());
    }
    Ok(Exclusive {
        file,
        disk: disk.clone(),
    })
}

/// Asks the kernel for exclusive access without write access, and lets go
/// at once: what `devices --check` uses to say whether a disk is in use
/// without opening it for writing (which makes udev re-probe it).
pub fn probe_exclusive(path: &Path) -> Result<(), OpenError> {
    open(path, OFlags::RDONLY).map(drop)
}

fn open(path: &Path, access: OFlags) -> Result<File, OpenError> {
    let flags = access | OFlags::EXCL | OFlags::CLOEXEC;
    match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => Ok(File::from(fd)),
        Err(rustix::io::Errno::BUSY) => Err(OpenError::Busy {
            path: path.to_path_buf(),
        }),
        Err(rustix::io::Errno::ACCESS | rustix::io::Errno::PERM) => {
            Err(privileges::denied(path).into())
        }
        Err(rustix::io::Errno::ROFS) => Err(Refusal::ReadOnly {
            device: path.to_path_buf(),
        }
        .into()),
        Err(e) => Err(OpenError::Io {
            path: path.to_path_buf(),
            cause: e.into(),
        }),
    }
}

impl OpenError {
    /// The rule id for refusals (`busy` for the kernel's), `None` for
    /// plain errors.
    pub fn rule(&self) -> Option<&'static str> {
        match self {
            OpenError::Busy { .. } => Some("busy"),
            OpenError::Refused(r) => Some(r.rule()),
            _ => None,
        }
    }
}
