//! One writer at a time: advisory `flock(2)` locks on the image files we
//! edit (exclusive), the bases a build reads (shared) and a build's output
//! directory (exclusive), taken without waiting. When another process
//! holds one, the error names it — its pid and command line, found in
//! `/proc/locks` by the file's device and inode — so the user knows what
//! to wait for.
//!
//! Why the file itself and not a lock file beside it: nothing is left
//! behind, nothing needs a writable directory (an image may sit in a
//! read-only one, or be a block device), every path to the same inode
//! (symlinks, hard links) meets the same lock, and the kernel drops the
//! lock when the holder dies, so there is no stale state to clean up.
//! The lock lives as long as the file handle (and its clones).

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

/// Shared for readers that must not see a write in progress (a build's
/// base), exclusive for writers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Shared,
    Exclusive,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{}: in use by {holder}; try again when it has finished", path.display())]
    Busy { path: PathBuf, holder: String },
    #[error("{}: cannot lock it: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// Locks `file` (opened from `path`) without waiting. The lock is held
/// until `file` and every clone of it are closed. Filesystems without
/// `flock` support get a warning and no lock, rather than a refusal: no
/// other process of ours could hold one there either.
pub fn lock(file: &File, path: &Path, mode: Mode) -> Result<(), LockError> {
    let op = match mode {
        Mode::Shared => FlockOperation::NonBlockingLockShared,
        Mode::Exclusive => FlockOperation::NonBlockingLockExclusive,
    };
    // A holder that finished between our attempt and the look-up in
    // /proc/locks has left the file free: try again (a few times, so a
    // stream of short holders cannot keep us looping).
    let mut vanished = 0;
    loop {
        match flock(file, op) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::WOULDBLOCK) => match holder(file) {
                None if vanished < 3 => vanished += 1,
                found => {
                    return Err(LockError::Busy {
                        path: path.to_path_buf(),
                        holder: found.unwrap_or_else(|| "another process".into()),
                    });
                }
            },
            Err(e @ (rustix::io::Errno::NOLCK | rustix::io::Errno::OPNOTSUPP)) => {
                tracing::warn!(
                    "{}: this filesystem cannot lock files ({e}); \
                     make sure no other command writes it meanwhile",
                    path.display()
                );
                return Ok(());
            }
            Err(e) => {
                return Err(LockError::Io {
                    path: path.to_path_buf(),
                    cause: e.into(),
                });
            }
        }
    }
}

/// Opens the directory `dir` and locks it exclusively: held while the
/// returned handle is open.
pub fn lock_dir(dir: &Path) -> Result<File, LockError> {
    let f = File::open(dir).map_err(|cause| LockError::Io {
        path: dir.to_path_buf(),
        cause,
    })?;
    lock(&f, dir, Mode::Exclusive)?;
    Ok(f)
}

/// "process 1234 (homelab-image cp a.img 1 x /x)" for the process that
/// holds a `flock` on `file`'s inode, from `/proc/locks`.
fn holder(file: &File) -> Option<String> {
    let meta = file.metadata().ok()?;
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let pid = holder_pid(&locks, meta.dev(), meta.ino())?;
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .map(|raw| command_line(&raw))
        .filter(|c| !c.is_empty());
    Some(match cmd {
        Some(cmd) => format!("process {pid} ({cmd})"),
        None => format!("process {pid}"),
    })
}

/// The pid holding a `FLOCK` on inode `ino` of device `dev` in the text
/// of `/proc/locks` (`1: FLOCK ADVISORY WRITE 1234 08:02:131090 0 EOF`;
/// waiting requests are marked `->` and skipped). The device is matched
/// too when it agrees: some filesystems (btrfs subvolumes) report another
/// device through stat than in `/proc/locks`, so an inode match alone is
/// the fallback.
fn holder_pid(locks: &str, dev: u64, ino: u64) -> Option<u32> {
    let want_dev = format!(
        "{:02x}:{:02x}",
        rustix::fs::major(dev),
        rustix::fs::minor(dev)
    );
    let mut by_inode = None;
    for line in locks.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || f[1] != "FLOCK" {
            continue;
        }
        let (Some(pid), Some((d, i))) = (f[4].parse::<u32>().ok(), f[5].rsplit_once(':')) else {
            continue;
        };
        if i.parse::<u64>().ok() != Some(ino) {
            continue;
        }
        if d == want_dev {
            return Some(pid);
        }
        by_inode.get_or_insert(pid);
    }
    by_inode
}

/// A `/proc/PID/cmdline` (NUL-separated) as one line, shortened.
fn command_line(raw: &[u8]) -> String {
    let text: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let mut line = text.join(" ");
    if line.chars().count() > 120 {
        line = line.chars().take(117).collect::<String>() + "...";
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_is_found_by_device_and_inode_and_waiters_are_skipped() {
        let dev = rustix::fs::makedev(8, 2);
        let locks = "\
1: POSIX  ADVISORY  WRITE 11 08:02:77 0 EOF
2: FLOCK  ADVISORY  WRITE 22 08:03:77 0 EOF
2: -> FLOCK  ADVISORY  WRITE 33 08:02:77 0 EOF
3: FLOCK  ADVISORY  READ 44 08:02:77 0 EOF
";
        assert_eq!(holder_pid(locks, dev, 77), Some(44));
        // No device agrees: the first holder of the inode.
        assert_eq!(holder_pid(locks, rustix::fs::makedev(0, 9), 77), Some(22));
        assert_eq!(holder_pid(locks, dev, 78), None);
    }

    #[test]
    fn a_second_exclusive_lock_is_refused_naming_this_process() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let a = File::open(tmp.path()).unwrap();
        let b = File::open(tmp.path()).unwrap();
        lock(&a, tmp.path(), Mode::Exclusive).unwrap();
        let err = lock(&b, tmp.path(), Mode::Shared).unwrap_err().to_string();
        let me = format!("in use by process {}", std::process::id());
        assert!(err.contains(&me), "{err}");
        drop(a);
        lock(&b, tmp.path(), Mode::Shared).unwrap();
        let c = File::open(tmp.path()).unwrap();
        lock(&c, tmp.path(), Mode::Shared).unwrap();
    }

    #[test]
    fn command_lines_are_joined_and_shortened() {
        assert_eq!(
            command_line(b"homelab-image\0cp\0a b\0"),
            "homelab-image cp a b"
        );
        assert!(command_line(&[b'x'; 500]).ends_with("..."));
    }
}
