//! Bounded, root-relative reads of the kernel's sysfs and procfs files, and
//! the one place that decides which root they are read from.
//!
//! Every read is capped (a sysfs attribute is a line; mountinfo on a busy
//! container host is large but finite) and every symlink is resolved
//! lexically and must stay inside the root: a fake tree cannot make us read
//! the real system, and nothing here loops or reads without bound.

use std::fmt;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// The environment variable that points device discovery at a fake
/// `sys/` + `proc/` tree instead of `/`. **Test-only**: the integration
/// tests build a tree of disks in a tempdir and run the binary with it;
/// real runs leave it unset. Read in [`system_root`] and nowhere else.
pub const SYSROOT_ENV: &str = "HOMELAB_SYSROOT";

/// The root device discovery reads `sys/` and `proc/` under: `/`, or the
/// test tree named by [`SYSROOT_ENV`].
pub fn system_root() -> PathBuf {
    match std::env::var_os(SYSROOT_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from("/"),
    }
}

/// A sysfs attribute is one short line; anything longer is not what we
/// think it is.
pub const ATTR_CAP: u64 = 4096;
/// `/proc/self/mountinfo` of a host with thousands of container mounts
/// stays well under this.
pub const MOUNTINFO_CAP: u64 = 16 << 20;
/// `/proc/swaps`: one line per swap area.
pub const SWAPS_CAP: u64 = 1 << 20;
/// Entries read from one sysfs directory (`sys/block`, a holders dir):
/// far above any real machine, low enough to stop a runaway tree.
pub const DIR_ENTRIES_CAP: usize = 16_384;

/// A block device number, `MAJOR:MINOR` as sysfs and mountinfo print it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DevNum {
    pub major: u32,
    pub minor: u32,
}

impl DevNum {
    /// From a `stat` `st_dev`/`st_rdev`.
    pub fn from_raw(dev: u64) -> Self {
        DevNum {
            major: rustix::fs::major(dev),
            minor: rustix::fs::minor(dev),
        }
    }

    /// Parses `8:16` (the `dev` attribute, mountinfo's third field).
    pub fn parse(s: &str) -> Option<Self> {
        let (a, b) = s.trim().split_once(':')?;
        Some(DevNum {
            major: a.parse().ok()?,
            minor: b.parse().ok()?,
        })
    }
}

impl fmt::Display for DevNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// Why a sysfs/procfs read failed, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum SysError {
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{}: longer than {cap} bytes; not a kernel attribute file", path.display())]
    TooLong { path: PathBuf, cap: u64 },
    #[error("{}: more than {cap} entries", path.display())]
    TooManyEntries { path: PathBuf, cap: usize },
    #[error("{}: link to {} leaves the system root {}", path.display(), target.display(), root.display())]
    Escapes {
        path: PathBuf,
        target: PathBuf,
        root: PathBuf,
    },
    #[error("{}:{line}: {what}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        what: String,
    },
}

/// Reads a whole file of at most `cap` bytes as text (lossily: sysfs
/// strings from device firmware are not always UTF-8).
pub fn read_capped(path: &Path, cap: u64) -> Result<String, SysError> {
    let io = |cause| SysError::Io {
        path: path.to_path_buf(),
        cause,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(cap + 1).read_to_end(&mut bytes).map_err(io)?;
    // as: a Vec's length (usize, at most 64 bits here) always fits u64.
    if bytes.len() as u64 > cap {
        return Err(SysError::TooLong {
            path: path.to_path_buf(),
            cap,
        });
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// An optional attribute: `None` when absent (or unreadable, as some are
/// for non-root), its trimmed text otherwise; empty counts as absent.
pub fn attr(dir: &Path, name: &str) -> Option<String> {
    let text = read_capped(&dir.join(name), ATTR_CAP).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// A required attribute.
pub fn attr_required(dir: &Path, name: &str) -> Result<String, SysError> {
    let path = dir.join(name);
    Ok(read_capped(&path, ATTR_CAP)?.trim().to_owned())
}

/// A `0`/`1` attribute; absent counts as 0.
pub fn attr_flag(dir: &Path, name: &str) -> bool {
    attr(dir, name).as_deref() == Some("1")
}

/// Names in a directory, sorted, at most [`DIR_ENTRIES_CAP`]; a missing
/// directory is empty.
pub fn dir_names(dir: &Path) -> Result<Vec<String>, SysError> {
    let io = |cause| SysError::Io {
        path: dir.to_path_buf(),
        cause,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        if names.len() == DIR_ENTRIES_CAP {
            return Err(SysError::TooManyEntries {
                path: dir.to_path_buf(),
                cap: DIR_ENTRIES_CAP,
            });
        }
        names.push(
            entry
                .map_err(io)?
                .file_name()
                .to_string_lossy()
                .into_owned(),
        );
    }
    names.sort();
    Ok(names)
}

/// Resolves `path` (inside `root`) when it is a symlink, lexically: the
/// link text is joined to the link's directory and `..` is applied without
/// asking the filesystem, then the result must still be inside `root`. A
/// path that is not a link is returned as it is. One hop: sysfs links point
/// at real directories under `sys/devices`.
pub fn resolve_link(root: &Path, path: &Path) -> Result<PathBuf, SysError> {
    let target = match std::fs::read_link(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => return Ok(path.to_path_buf()),
        Err(cause) => {
            return Err(SysError::Io {
                path: path.to_path_buf(),
                cause,
            });
        }
    };
    let joined = if target.is_absolute() {
        // An absolute link means "from the system root", which for a test
        // tree is the tree itself.
        root.join(target.strip_prefix("/").unwrap_or(&target))
    } else {
        path.parent().unwrap_or(root).join(&target)
    };
    let resolved = normalize(&joined);
    if !resolved.starts_with(normalize(root)) {
        return Err(SysError::Escapes {
            path: path.to_path_buf(),
            target,
            root: root.to_path_buf(),
        });
    }
    Ok(resolved)
}

/// Removes `.` and applies `..` lexically.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Undoes the octal escapes (`\040` for a space, `\011`, `\012`, `\134`)
/// the kernel uses for paths in mountinfo and /proc/swaps.
pub fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            if let Ok(b) = u8::try_from(v) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_escapes_in_mount_paths_are_decoded() {
        assert_eq!(unescape_octal(r"/media/my\040card"), "/media/my card");
        assert_eq!(unescape_octal(r"/a\134b"), r"/a\b");
        assert_eq!(unescape_octal(r"/end\04"), r"/end\04");
    }

    #[test]
    fn a_link_out_of_the_root_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("sys/block")).unwrap();
        std::os::unix::fs::symlink("../../../elsewhere", root.join("sys/block/sdx")).unwrap();
        let err = resolve_link(&root, &root.join("sys/block/sdx")).unwrap_err();
        assert!(matches!(err, SysError::Escapes { .. }), "{err}");
        assert!(err.to_string().contains("sys/block/sdx"), "{err}");
    }

    #[test]
    fn an_overlong_attribute_is_refused_not_read_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("size");
        std::fs::write(&p, vec![b'1'; 5000]).unwrap();
        let err = read_capped(&p, ATTR_CAP).unwrap_err();
        assert!(matches!(err, SysError::TooLong { .. }), "{err}");
    }
}
