//! What the running system uses block devices for: the mounts in
//! `/proc/self/mountinfo` and the swap areas in `/proc/swaps`, parsed by
//! hand (about as long as wiring a crate) and bounded.

use std::path::{Path, PathBuf};

use super::sysfs::{self, DevNum, MOUNTINFO_CAP, SWAPS_CAP, SysError};

/// One line of mountinfo, the parts we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Field 3: the `st_dev` of files on this mount. For btrfs and other
    /// multi-device filesystems an anonymous `0:N`, so `source` matters too.
    pub dev: DevNum,
    pub mount_point: PathBuf,
    /// The mount source after the ` - fstype ` separator (`/dev/sda2`,
    /// `tmpfs`, `server:/export`).
    pub source: String,
}

/// One swap area in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapEntry {
    /// As the kernel prints it: `/dev/sda3`, `/dev/dm-1`, `/swapfile`.
    pub filename: String,
    /// `partition` or `file`.
    pub kind: String,
}

/// Reads `ROOT/proc/self/mountinfo`.
pub fn read_mountinfo(root: &Path) -> Result<Vec<MountEntry>, SysError> {
    let path = root.join("proc/self/mountinfo");
    let text = sysfs::read_capped(&path, MOUNTINFO_CAP)?;
    parse_mountinfo(&text, &path)
}

/// Reads `ROOT/proc/swaps`; a system without it (no swap support) has none.
pub fn read_swaps(root: &Path) -> Result<Vec<SwapEntry>, SysError> {
    let path = root.join("proc/swaps");
    match sysfs::read_capped(&path, SWAPS_CAP) {
        Ok(text) => Ok(parse_swaps(&text)),
        Err(SysError::Io { cause, .. }) if cause.kind() == std::io::ErrorKind::NotFound => {
            Ok(Vec::new())
        }
        Err(e) => Err(e),
    }
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`
/// (proc(5)): the optional fields end at a lone `-`.
pub fn parse_mountinfo(text: &str, path: &Path) -> Result<Vec<MountEntry>, SysError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |what: &str| SysError::Parse {
            path: path.to_path_buf(),
            line: i + 1,
            what: what.to_owned(),
        };
        let fields: Vec<&str> = line.split(' ').collect();
        let dev = fields
            .get(2)
            .and_then(|f| DevNum::parse(f))
            .ok_or_else(|| bad("third field is not MAJOR:MINOR"))?;
        let mount_point = fields.get(4).ok_or_else(|| bad("no mount point field"))?;
        let sep = fields
            .iter()
            .skip(6)
            .position(|f| *f == "-")
            .map(|p| p + 6)
            .ok_or_else(|| bad("no ' - ' separator before the filesystem type"))?;
        let source = fields
            .get(sep + 2)
            .ok_or_else(|| bad("no mount source after the filesystem type"))?;
        out.push(MountEntry {
            dev,
            mount_point: PathBuf::from(sysfs::unescape_octal(mount_point)),
            source: sysfs::unescape_octal(source),
        });
    }
    Ok(out)
}

/// `Filename  Type  Size  Used  Priority`, a header line first. Fields are
/// separated by runs of blanks; names have blanks escaped.
pub fn parse_swaps(text: &str) -> Vec<SwapEntry> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let filename = sysfs::unescape_octal(f.next()?);
            let kind = f.next().unwrap_or("").to_owned();
            Some(SwapEntry { filename, kind })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_fields_are_read_past_optional_fields() {
        let text = "27 1 254:0 / / rw,relatime shared:1 master:2 - ext4 /dev/vda rw\n\
                    43 27 7:0 / /media/my\\040card rw - vfat /dev/sdb1 rw\n";
        let m = parse_mountinfo(text, Path::new("mountinfo")).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(
            m[0].dev,
            DevNum {
                major: 254,
                minor: 0
            }
        );
        assert_eq!(m[0].source, "/dev/vda");
        assert_eq!(m[1].mount_point, PathBuf::from("/media/my card"));
    }

    #[test]
    fn a_mangled_mountinfo_line_is_refused_with_its_number() {
        let text = "27 1 254:0 / / rw - ext4 /dev/vda rw\n28 1 nonsense / /x rw\n";
        let err = parse_mountinfo(text, Path::new("mi")).unwrap_err();
        assert_eq!(err.to_string(), "mi:2: third field is not MAJOR:MINOR");
    }

    #[test]
    fn swaps_skip_the_header() {
        let s = parse_swaps(
            "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n\
             /dev/sda3                               partition\t2097148\t\t0\t\t-2\n",
        );
        assert_eq!(
            s,
            vec![SwapEntry {
                filename: "/dev/sda3".into(),
                kind: "partition".into()
            }]
        );
    }
}
