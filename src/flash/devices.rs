//! Device discovery: the whole disks of this machine as sysfs describes
//! them (`sys/block`, `sys/dev/block`), with what the running system uses
//! on each — mounts (`proc/self/mountinfo`), swap (`proc/swaps`) and
//! holders (md, device-mapper: LVM, dm-crypt), followed through stacked
//! devices so `/` on `dm-0` over `sda2` belongs to `sda`.
//!
//! Everything is read under a root directory: `/` for real, a fake tree in
//! tests ([`super::sysfs::system_root`]). Nothing here opens a device.

use std::collections::{BTreeSet, VecDeque};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::mounts::{self, MountEntry, SwapEntry};
use super::sysfs::{self, DevNum, SysError};

/// Devices stacked on one disk (partitions, holders, their partitions…)
/// beyond which the tree is not followed.
const STACK_CAP: usize = 4096;

/// How the disk is attached, from its path under `sys/devices`: the bus
/// decides, not the `removable` flag (USB SSD enclosures report
/// `removable=0`, SD cards in built-in readers often do too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Usb,
    /// SD cards and eMMC (`mmcblk*`).
    Mmc,
    Nvme,
    Sata,
    /// SCSI/SAS other than ATA, virtio-scsi included.
    Scsi,
    Virtio,
    /// A loop device: a file posing as a disk. Flashable only when named
    /// explicitly (tests, and images written into files via a loop).
    Loop,
    /// Other kernel-made devices: dm, md, zram, ram.
    Virtual,
    Unknown,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Usb => "usb",
            Transport::Mmc => "mmc",
            Transport::Nvme => "nvme",
            Transport::Sata => "sata",
            Transport::Scsi => "scsi",
            Transport::Virtio => "virtio",
            Transport::Loop => "loop",
            Transport::Virtual => "virtual",
            Transport::Unknown => "unknown",
        }
    }

    /// From the resolved sysfs directory of the block device.
    fn detect(name: &str, sys_path: &str) -> Transport {
        if sys_path.contains("/devices/virtual/") {
            if name.starts_with("loop") {
                Transport::Loop
            } else {
                Transport::Virtual
            }
        } else if sys_path.contains("/usb") {
            Transport::Usb
        } else if name.starts_with("nvme") || sys_path.contains("/nvme/") {
            Transport::Nvme
        } else if name.starts_with("mmcblk") || sys_path.contains("/mmc_host/") {
            Transport::Mmc
        } else if sys_path.contains("/ata") {
            Transport::Sata
        } else if sys_path.contains("/host") && sys_path.contains("/target") {
            Transport::Scsi
        } else if sys_path.contains("/virtio") {
            Transport::Virtio
        } else {
            Transport::Unknown
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for DevNum {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Partition {
    pub path: PathBuf,
    pub dev: DevNum,
    pub size: u64,
}

/// A mount of a filesystem that lives on this disk (directly, on one of its
/// partitions, or on a device stacked on them).
#[derive(Debug, Clone, Serialize)]
pub struct Mount {
    /// The device the filesystem is on: `/dev/sdb1`, `/dev/dm-0`.
    pub device: PathBuf,
    pub mount_point: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HolderKind {
    DmCrypt,
    Lvm,
    Multipath,
    Dm,
    Md,
    Other,
}

impl HolderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HolderKind::DmCrypt => "dm-crypt",
            HolderKind::Lvm => "LVM",
            HolderKind::Multipath => "multipath",
            HolderKind::Dm => "device-mapper",
            HolderKind::Md => "md RAID",
            HolderKind::Other => "holder",
        }
    }
}

/// A device built on the disk or one of its partitions.
#[derive(Debug, Clone, Serialize)]
pub struct Holder {
    /// `/dev/dm-0`, `/dev/md0`.
    pub device: PathBuf,
    pub kind: HolderKind,
    /// The device it holds: `/dev/sdb2` (or another holder).
    pub of: PathBuf,
}

/// One whole disk.
#[derive(Debug, Clone, Serialize)]
pub struct Disk {
    /// `/dev/sdb`.
    pub path: PathBuf,
    #[serde(skip)]
    pub name: String,
    pub dev: DevNum,
    /// Bytes (`size` × 512, whatever the logical sector size).
    pub size: u64,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub transport: Transport,
    pub removable: bool,
    pub read_only: bool,
    pub partitions: Vec<Partition>,
    pub mounts: Vec<Mount>,
    /// Swap areas in use on the disk, its partitions or stacked devices.
    pub swaps: Vec<PathBuf>,
    pub holders: Vec<Holder>,
    /// Every device number stacked on this disk, itself included.
    #[serde(skip)]
    pub stack: BTreeSet<DevNum>,
    /// Anonymous device numbers (btrfs) of filesystems mounted from it.
    #[serde(skip)]
    pub mounted_devs: BTreeSet<DevNum>,
}

impl Disk {
    /// Whether a file whose `st_dev` is `dev` lives on this disk.
    pub fn holds_dev(&self, dev: DevNum) -> bool {
        self.stack.contains(&dev) || self.mounted_devs.contains(&dev)
    }

    /// Shown by `devices` without `--all`: real disks with a medium.
    /// Loop, ram, zram, dm, md, optical and the eMMC boot areas are not.
    pub fn listed_by_default(&self) -> bool {
        const HIDDEN: [&str; 8] = ["loop", "ram", "zram", "dm-", "md", "sr", "nbd", "fd"];
        let n = self.name.as_str();
        let emmc_area = n.starts_with("mmcblk") && (n.contains("boot") || n.ends_with("rpmb"));
        self.size > 0
            && !emmc_area
            && !HIDDEN.iter().any(|p| n.starts_with(p))
            && self.transport != Transport::Virtual
    }

    /// "SanDisk Extreme", or whichever half is known.
    pub fn description(&self) -> Option<String> {
        match (&self.vendor, &self.model) {
            (Some(v), Some(m)) => Some(format!("{v} {m}")),
            (Some(x), None) | (None, Some(x)) => Some(x.clone()),
            (None, None) => None,
        }
    }
}

/// One entry of `sys/block` with its partitions, before linking holders.
#[derive(Debug)]
struct Node {
    name: String,
    dir: PathBuf,
    dev: DevNum,
    dm_name: Option<String>,
    parts: Vec<(String, PathBuf, DevNum, u64)>,
}

fn dev_path(name: &str) -> PathBuf {
    // sysfs spells `/` in device names as `!` (cciss!c0d0).
    PathBuf::from(format!("/dev/{}", name.replace('!', "/")))
}

fn read_dev(dir: &Path) -> Result<DevNum, SysError> {
    let text = sysfs::attr_required(dir, "dev")?;
    DevNum::parse(&text).ok_or_else(|| SysError::Parse {
        path: dir.join("dev"),
        line: 1,
        what: format!("{text:?} is not MAJOR:MINOR"),
    })
}

fn read_sectors(dir: &Path) -> Result<u64, SysError> {
    let text = sysfs::attr_required(dir, "size")?;
    text.parse::<u64>()
        .ok()
        .and_then(|s| s.checked_mul(512))
        .ok_or_else(|| SysError::Parse {
            path: dir.join("size"),
            line: 1,
            what: format!("{text:?} is not a sector count"),
        })
}

fn read_node(root: &Path, name: &str) -> Result<Node, SysError> {
    let dir = sysfs::resolve_link(root, &root.join("sys/block").join(name))?;
    let mut parts = Vec::new();
    for sub in sysfs::dir_names(&dir)? {
        let pdir = dir.join(&sub);
        if pdir.join("partition").is_file() {
            parts.push((sub, pdir.clone(), read_dev(&pdir)?, read_sectors(&pdir)?));
        }
    }
    Ok(Node {
        name: name.to_owned(),
        dev: read_dev(&dir)?,
        dm_name: sysfs::attr(&dir.join("dm"), "name"),
        dir,
        parts,
    })
}

fn holder_kind(node: &Node) -> HolderKind {
    if node.name.starts_with("md") {
        return HolderKind::Md;
    }
    if !node.name.starts_with("dm-") {
        return HolderKind::Other;
    }
    match sysfs::attr(&node.dir.join("dm"), "uuid") {
        Some(u) if u.starts_with("CRYPT-") => HolderKind::DmCrypt,
        Some(u) if u.starts_with("LVM-") => HolderKind::Lvm,
        Some(u) if u.starts_with("mpath-") => HolderKind::Multipath,
        _ => HolderKind::Dm,
    }
}

/// The serial number: the device's own, the block device's (virtio), the
/// USB device's up the tree (USB mass storage keeps it there), or the
/// SCSI/NVMe world-wide id.
fn serial(root: &Path, block_dir: &Path, device: Option<&Path>) -> Option<String> {
    let device = device?;
    if let Some(s) = sysfs::attr(device, "serial").or_else(|| sysfs::attr(block_dir, "serial")) {
        return Some(s);
    }
    let top = root.join("sys/devices");
    let mut dir = device.parent();
    for _ in 0..8 {
        let d = dir.filter(|d| d.starts_with(&top))?;
        if d.join("idVendor").is_file()
            && let Some(s) = sysfs::attr(d, "serial")
        {
            return Some(s);
        }
        dir = d.parent();
    }
    sysfs::attr(device, "wwid")
}

/// Maps a mount or swap source (`/dev/sdb1`, `/dev/mapper/vg-root`) to a
/// `sys/block` name.
fn source_name<'a>(source: &'a str, nodes: &'a [Node]) -> Option<String> {
    let rest = source.strip_prefix("/dev/")?;
    if let Some(dm) = rest.strip_prefix("mapper/") {
        return nodes
            .iter()
            .find(|n| n.dm_name.as_deref() == Some(dm))
            .map(|n| n.name.clone());
    }
    Some(rest.replace('/', "!"))
}

/// Scans `ROOT/sys/block` and returns every block device that is not a
/// partition, with what is mounted, swapped on or holding it. Callers
/// filter with [`Disk::listed_by_default`].
pub fn scan(root: &Path) -> Result<Vec<Disk>, SysError> {
    let mut nodes = Vec::new();
    for name in sysfs::dir_names(&root.join("sys/block"))? {
        nodes.push(read_node(root, &name)?);
    }
    let mounts = mounts::read_mountinfo(root)?;
    let swaps = mounts::read_swaps(root)?;
    nodes
        .iter()
        .map(|n| disk(root, n, &nodes, &mounts, &swaps))
        .collect()
}

fn disk(
    root: &Path,
    node: &Node,
    nodes: &[Node],
    mounts: &[MountEntry],
    swaps: &[SwapEntry],
) -> Result<Disk, SysError> {
    let device_link = node.dir.join("device");
    let device = if device_link.exists() {
        Some(sysfs::resolve_link(root, &device_link)?)
    } else {
        None
    };
    let sys_path = node.dir.to_string_lossy();
    let transport = Transport::detect(&node.name, &sys_path);
    // virtio and PCI devices give a numeric id (`0x1af4`) here, not a name.
    let vendor = device
        .as_deref()
        .and_then(|d| sysfs::attr(d, "vendor"))
        .filter(|v| !v.starts_with("0x"));
    let model = device
        .as_deref()
        .and_then(|d| sysfs::attr(d, "model").or_else(|| sysfs::attr(d, "name")));

    // Everything stacked on the disk: (name, dev), breadth first.
    let mut stack: Vec<(String, DevNum)> = vec![(node.name.clone(), node.dev)];
    stack.extend(node.parts.iter().map(|p| (p.0.clone(), p.2)));
    let mut holders = Vec::new();
    let mut seen: BTreeSet<String> = stack.iter().map(|s| s.0.clone()).collect();
    let mut queue: VecDeque<(String, PathBuf)> = VecDeque::new();
    queue.push_back((node.name.clone(), node.dir.clone()));
    queue.extend(node.parts.iter().map(|p| (p.0.clone(), p.1.clone())));
    while let Some((of, dir)) = queue.pop_front() {
        for h in sysfs::dir_names(&dir.join("holders"))? {
            if !seen.insert(h.clone()) {
                continue;
            }
            if stack.len() >= STACK_CAP {
                return Err(SysError::TooManyEntries {
                    path: dir.join("holders"),
                    cap: STACK_CAP,
                });
            }
            let Some(hn) = nodes.iter().find(|n| n.name == h) else {
                continue;
            };
            holders.push(Holder {
                device: dev_path(&h),
                kind: holder_kind(hn),
                of: dev_path(&of),
            });
            stack.push((h.clone(), hn.dev));
            queue.push_back((h.clone(), hn.dir.clone()));
            for p in &hn.parts {
                if seen.insert(p.0.clone()) {
                    stack.push((p.0.clone(), p.2));
                    queue.push_back((p.0.clone(), p.1.clone()));
                }
            }
        }
    }

    let on_disk = |dev: Option<DevNum>, source: &str| -> Option<String> {
        if let Some(d) = dev
            && let Some(s) = stack.iter().find(|s| s.1 == d)
        {
            return Some(s.0.clone());
        }
        let name = source_name(source, nodes)?;
        stack.iter().any(|s| s.0 == name).then_some(name)
    };
    let mut disk_mounts = Vec::new();
    let mut mounted_devs = BTreeSet::new();
    for m in mounts {
        if let Some(name) = on_disk(Some(m.dev), &m.source) {
            mounted_devs.insert(m.dev);
            disk_mounts.push(Mount {
                device: dev_path(&name),
                mount_point: m.mount_point.clone(),
            });
        }
    }
    let disk_swaps = swaps
        .iter()
        .filter_map(|s| on_disk(None, &s.filename).map(|n| dev_path(&n)))
        .collect();

    Ok(Disk {
        path: dev_path(&node.name),
        name: node.name.clone(),
        dev: node.dev,
        size: read_sectors(&node.dir)?,
        serial: serial(root, &node.dir, device.as_deref()),
        vendor,
        model,
        transport,
        removable: sysfs::attr_flag(&node.dir, "removable"),
        read_only: sysfs::attr_flag(&node.dir, "ro"),
        partitions: node
            .parts
            .iter()
            .map(|p| Partition {
                path: dev_path(&p.0),
                dev: p.2,
                size: p.3,
            })
            .collect(),
        mounts: disk_mounts,
        swaps: disk_swaps,
        holders,
        stack: stack.iter().map(|s| s.1).collect(),
        mounted_devs,
    })
}

/// Why a named DEVICE is not one of the scanned disks.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("{}: no such device", path.display())]
    NotFound { path: PathBuf },
    #[error("{}: not a block device", path.display())]
    NotBlock { path: PathBuf },
    #[error("{}: cannot read it: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{}: a partition of {}; name the whole disk", path.display(), disk.display())]
    Partition { path: PathBuf, disk: PathBuf },
    #[error("{}: not a whole disk (device {dev}, built on {})", path.display(), disk.display())]
    Stacked {
        path: PathBuf,
        dev: DevNum,
        disk: PathBuf,
    },
    #[error("{}: block device {dev} is not listed in sys/block", path.display())]
    Unknown { path: PathBuf, dev: DevNum },
}

/// Finds the disk a user named. On the real root the path is `stat`ed
/// (symlinks such as `/dev/disk/by-id/…` followed) and matched by device
/// number; in a fake test tree there are no device nodes, so `/dev/NAME`
/// is matched by name.
pub fn find<'a>(disks: &'a [Disk], root: &Path, path: &Path) -> Result<&'a Disk, LookupError> {
    let dev = if root == Path::new("/") {
        let meta = std::fs::metadata(path).map_err(|cause| match cause.kind() {
            std::io::ErrorKind::NotFound => LookupError::NotFound {
                path: path.to_path_buf(),
            },
            _ => LookupError::Io {
                path: path.to_path_buf(),
                cause,
            },
        })?;
        if !meta.file_type().is_block_device() {
            return Err(LookupError::NotBlock {
                path: path.to_path_buf(),
            });
        }
        DevNum::from_raw(meta.rdev())
    } else {
        let name = path
            .strip_prefix("/dev")
            .unwrap_or(path)
            .to_string_lossy()
            .replace('/', "!");
        let by_name = disks.iter().find_map(|d| {
            if d.name == name {
                return Some(d.dev);
            }
            d.partitions
                .iter()
                .find(|p| p.path == dev_path(&name))
                .map(|p| p.dev)
        });
        by_name.ok_or_else(|| LookupError::NotFound {
            path: path.to_path_buf(),
        })?
    };
    disk_by_dev(disks, path, dev)
}

/// The disk whose device number is `dev`, or why `dev` is not a disk.
pub fn disk_by_dev<'a>(
    disks: &'a [Disk],
    path: &Path,
    dev: DevNum,
) -> Result<&'a Disk, LookupError> {
    if let Some(d) = disks.iter().find(|d| d.dev == dev) {
        return Ok(d);
    }
    if let Some(d) = disks
        .iter()
        .find(|d| d.partitions.iter().any(|p| p.dev == dev))
    {
        return Err(LookupError::Partition {
            path: path.to_path_buf(),
            disk: d.path.clone(),
        });
    }
    if let Some(d) = disks.iter().find(|d| d.stack.contains(&dev)) {
        return Err(LookupError::Stacked {
            path: path.to_path_buf(),
            dev,
            disk: d.path.clone(),
        });
    }
    Err(LookupError::Unknown {
        path: path.to_path_buf(),
        dev,
    })
}

/// The fake sysfs tree the integration tests use, shared with the unit
/// tests here.
#[cfg(test)]
#[path = "../../tests/integration/flash_fake_sys.rs"]
pub(crate) mod fake_sys;

#[cfg(test)]
#[path = "devices_tests.rs"]
mod tests;
