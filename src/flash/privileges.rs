//! May this process write the device? Writing a disk needs root or the
//! device's group (`disk` on Debian and Ubuntu); nothing else in the tool
//! does. Asked before any prompt, so a user is not walked through choosing
//! and confirming a disk only to be told at the end that they cannot.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// `/etc/group` is a few KiB; a larger one is not read.
const GROUP_FILE_CAP: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error(
        "{}: no permission to write it; writing a disk needs root or membership of group {group}: \
         run with sudo, or add yourself to the group (sudo usermod -aG {group} $USER) and log in again",
        path.display()
    )]
    Denied { path: PathBuf, group: String },
    /// The node belongs to group root (systems without a `disk` group, or
    /// containers): joining root's group is not advice to give.
    #[error(
        "{}: no permission to write it; it is writable by root only: run with sudo",
        path.display()
    )]
    RootOnly { path: PathBuf },
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// The error for a device we may not write: names the device's group
/// (`disk`) when `/etc/group` says what it is called.
pub fn denied(path: &Path) -> PrivilegeError {
    let gid = std::fs::metadata(path).ok().map(|m| m.gid());
    if gid == Some(0) {
        return PrivilegeError::RootOnly {
            path: path.to_path_buf(),
        };
    }
    let group = gid
        .map(|g| group_name(g).unwrap_or_else(|| g.to_string()))
        .unwrap_or_else(|| "disk".to_owned());
    PrivilegeError::Denied {
        path: path.to_path_buf(),
        group,
    }
}

/// Checks, without opening it, that this process may open `path` for
/// writing (`access(2)` with `W_OK`: root, the owner, or a member of the
/// device's group with write permission).
pub fn ensure_can_write(path: &Path) -> Result<(), PrivilegeError> {
    match rustix::fs::access(path, rustix::fs::Access::WRITE_OK) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::ACCESS | rustix::io::Errno::PERM) => Err(denied(path)),
        Err(e) => Err(PrivilegeError::Io {
            path: path.to_path_buf(),
            cause: e.into(),
        }),
    }
}

/// The name of group `gid` from `/etc/group`.
fn group_name(gid: u32) -> Option<String> {
    let text = super::sysfs::read_capped(Path::new("/etc/group"), GROUP_FILE_CAP).ok()?;
    text.lines().find_map(|line| {
        let mut f = line.split(':');
        let name = f.next()?;
        let id = f.nth(1)?;
        (id.parse::<u32>().ok()? == gid).then(|| name.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_denial_says_how_to_fix_it() {
        let msg = PrivilegeError::Denied {
            path: "/dev/sdb".into(),
            group: "disk".into(),
        }
        .to_string();
        assert!(
            msg.starts_with("/dev/sdb: no permission to write it"),
            "{msg}"
        );
        assert!(msg.contains("sudo usermod -aG disk $USER"), "{msg}");
        assert!(msg.contains("log in again"), "{msg}");
    }

    #[test]
    fn group_zero_is_root() {
        assert_eq!(group_name(0).as_deref(), Some("root"));
    }
}
