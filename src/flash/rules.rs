//! The safety rules a disk must pass before anything is written to it.
//! Each refusal is a named variant whose message names the device, the rule
//! (its id, as docs/FLASH.md lists them) and the flag that overrides it, or
//! says that none does. A disk above [`CONFIRM_ABOVE`] is not refused but
//! needs confirmation. The rules run in a fixed order and the first that
//! fails is reported: the most specific reason first (the system disk is
//! also a disk with mounted partitions).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::devices::{Disk, HolderKind, Transport};
use super::sysfs::DevNum;
use crate::io::units::human_size;

/// Disks larger than this are rarely a card or a node's SSD, and often
/// the backup disk: ask first.
pub const CONFIRM_ABOVE: u64 = 512 << 30;

/// The flags that relax a rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--allow-internal`: accept SATA, NVMe, SCSI, virtio and other
    /// non-removable disks.
    pub allow_internal: bool,
    /// `--yes`: the size confirmation is given.
    pub yes: bool,
}

/// What a protected path is to the flash run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Image,
    Output,
    Cache,
}

impl Role {
    fn what(self) -> &'static str {
        match self {
            Role::Image => "the image being written",
            Role::Output => "the output directory",
            Role::Cache => "the image cache",
        }
    }
}

#[derive(Debug, Clone)]
struct Protected {
    role: Role,
    path: PathBuf,
    dev: DevNum,
}

/// What the rules know beyond the disk: the image to be written and the
/// directories that must not be on the target.
#[derive(Debug, Clone, Default)]
pub struct Context {
    protected: Vec<Protected>,
    image_size: Option<u64>,
}

impl Context {
    pub fn new() -> Self {
        Context::default()
    }

    /// The image to be written: its size (a smaller disk is refused) and
    /// the device it is stored on (that disk is refused).
    pub fn with_image(mut self, path: &Path) -> std::io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        self.image_size = Some(meta.len());
        self.protected.push(Protected {
            role: Role::Image,
            path: path.to_path_buf(),
            dev: DevNum::from_raw(meta.dev()),
        });
        Ok(self)
    }

    /// A directory the run writes to (or reads from): the disk it is on is
    /// refused. One that does not exist yet would be created in its
    /// nearest existing ancestor, so that ancestor's device counts.
    pub fn protect(mut self, role: Role, path: &Path) -> Self {
        let mut at = Some(path);
        while let Some(p) = at {
            let probe = if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            };
            if let Ok(meta) = std::fs::metadata(probe) {
                self.protected.push(Protected {
                    role,
                    path: path.to_path_buf(),
                    dev: DevNum::from_raw(meta.dev()),
                });
                break;
            }
            at = p.parent();
        }
        self
    }
}

/// A disk that may be written, possibly after confirmation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    /// Larger than [`CONFIRM_ABOVE`] and no `--yes`: ask (typed) first.
    NeedsConfirmation {
        device: PathBuf,
        size: u64,
    },
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Accepted => f.write_str("accepted"),
            Verdict::NeedsConfirmation { device, size } => write!(
                f,
                "{}: needs confirmation (rule large-disk): {} is more than {}, \
                 which is rarely a card or a node's disk; confirm when asked, or pass --yes",
                device.display(),
                human_size(*size),
                human_size(CONFIRM_ABOVE)
            ),
        }
    }
}

const NO_OVERRIDE: &str = "no flag overrides this rule";

/// Why a disk may not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "{}: refused (rule system-disk): it holds the running system ({} is mounted from {}); {NO_OVERRIDE}",
        device.display(), mount_point.display(), from.display()
    )]
    SystemDisk {
        device: PathBuf,
        mount_point: PathBuf,
        from: PathBuf,
    },
    #[error(
        "{}: refused (rule {}): it holds {} ({}); {NO_OVERRIDE}",
        device.display(), rule_of(*role), role.what(), path.display()
    )]
    HoldsPath {
        device: PathBuf,
        role: Role,
        path: PathBuf,
    },
    #[error(
        "{}: refused (rule mounted): {} is mounted at {}; unmount it first ({NO_OVERRIDE})",
        device.display(), from.display(), mount_point.display()
    )]
    Mounted {
        device: PathBuf,
        from: PathBuf,
        mount_point: PathBuf,
    },
    #[error(
        "{}: refused (rule swap): {} is in use as swap; swapoff it first ({NO_OVERRIDE})",
        device.display(), from.display()
    )]
    Swap { device: PathBuf, from: PathBuf },
    #[error(
        "{}: refused (rule holder): {} is held by {} ({}); {} first ({NO_OVERRIDE})",
        device.display(), of.display(), holder.display(), kind.as_str(), release_hint(*kind)
    )]
    Held {
        device: PathBuf,
        of: PathBuf,
        holder: PathBuf,
        kind: HolderKind,
    },
    #[error(
        "{}: refused (rule no-medium): it has no medium (size 0: an empty card reader?); {NO_OVERRIDE}",
        device.display()
    )]
    NoMedium { device: PathBuf },
    #[error(
        "{}: refused (rule read-only): the kernel reports it read-only (a card's write-protect switch?); {NO_OVERRIDE}",
        device.display()
    )]
    ReadOnly { device: PathBuf },
    #[error(
        "{}: refused (rule internal): an internal {transport} disk, not USB, SD/MMC or removable; \
         pass --allow-internal if it really is the target",
        device.display()
    )]
    Internal {
        device: PathBuf,
        transport: Transport,
    },
    #[error(
        "{}: refused (rule too-small): {} is smaller than the image ({}); {NO_OVERRIDE}",
        device.display(), human_size(*size), human_size(*image_size)
    )]
    TooSmall {
        device: PathBuf,
        size: u64,
        image_size: u64,
    },
}

fn rule_of(role: Role) -> &'static str {
    match role {
        Role::Image => "image-disk",
        Role::Output | Role::Cache => "output-disk",
    }
}

fn release_hint(kind: HolderKind) -> &'static str {
    match kind {
        HolderKind::DmCrypt => "close it (cryptsetup close)",
        HolderKind::Lvm => "deactivate it (vgchange -an)",
        HolderKind::Md => "stop it (mdadm --stop)",
        HolderKind::Multipath => "flush it (multipath -f)",
        HolderKind::Dm => "remove it (dmsetup remove)",
        HolderKind::Other => "release it",
    }
}

impl Refusal {
    /// The rule's id, as docs/FLASH.md lists it.
    pub fn rule(&self) -> &'static str {
        match self {
            Refusal::SystemDisk { .. } => "system-disk",
            Refusal::HoldsPath { role, .. } => rule_of(*role),
            Refusal::Mounted { .. } => "mounted",
            Refusal::Swap { .. } => "swap",
            Refusal::Held { .. } => "holder",
            Refusal::NoMedium { .. } => "no-medium",
            Refusal::ReadOnly { .. } => "read-only",
            Refusal::Internal { .. } => "internal",
            Refusal::TooSmall { .. } => "too-small",
        }
    }

    /// The flag that overrides the rule, if one does.
    pub fn override_flag(&self) -> Option<&'static str> {
        match self {
            Refusal::Internal { .. } => Some("--allow-internal"),
            _ => None,
        }
    }
}

/// Mount points that make a disk the running system's.
fn is_system_mount(p: &Path) -> bool {
    p == Path::new("/") || p.starts_with("/boot")
}

/// Whether the transport alone makes a disk a candidate: USB and SD/MMC,
/// and loop devices (files posing as disks, only ever used when named).
pub fn is_external(disk: &Disk) -> bool {
    matches!(
        disk.transport,
        Transport::Usb | Transport::Mmc | Transport::Loop
    ) || disk.removable
}

/// Judges one disk. `Ok(NeedsConfirmation)` means ask before writing.
pub fn check(disk: &Disk, ctx: &Context, ov: &Overrides) -> Result<Verdict, Refusal> {
    let device = || disk.path.clone();
    if let Some(m) = disk.mounts.iter().find(|m| is_system_mount(&m.mount_point)) {
        return Err(Refusal::SystemDisk {
            device: device(),
            mount_point: m.mount_point.clone(),
            from: m.device.clone(),
        });
    }
    if let Some(p) = ctx.protected.iter().find(|p| disk.holds_dev(p.dev)) {
        return Err(Refusal::HoldsPath {
            device: device(),
            role: p.role,
            path: p.path.clone(),
        });
    }
    if let Some(m) = disk.mounts.first() {
        return Err(Refusal::Mounted {
            device: device(),
            from: m.device.clone(),
            mount_point: m.mount_point.clone(),
        });
    }
    if let Some(s) = disk.swaps.first() {
        return Err(Refusal::Swap {
            device: device(),
            from: s.clone(),
        });
    }
    if let Some(h) = disk.holders.first() {
        return Err(Refusal::Held {
            device: device(),
            of: h.of.clone(),
            holder: h.device.clone(),
            kind: h.kind,
        });
    }
    if disk.size == 0 {
        return Err(Refusal::NoMedium { device: device() });
    }
    if disk.read_only {
        return Err(Refusal::ReadOnly { device: device() });
    }
    if !is_external(disk) && !ov.allow_internal {
        return Err(Refusal::Internal {
            device: device(),
            transport: disk.transport,
        });
    }
    if let Some(image_size) = ctx.image_size
        && disk.size < image_size
    {
        return Err(Refusal::TooSmall {
            device: device(),
            size: disk.size,
            image_size,
        });
    }
    if disk.size > CONFIRM_ABOVE && !ov.yes {
        return Ok(Verdict::NeedsConfirmation {
            device: device(),
            size: disk.size,
        });
    }
    Ok(Verdict::Accepted)
}

/// The disks a picker may offer: those listed by default (never a loop
/// device: those only when named) that the rules accept, each with its
/// verdict (a large disk still needs confirmation).
pub fn candidates<'a>(
    disks: &'a [Disk],
    ctx: &Context,
    ov: &Overrides,
) -> Vec<(&'a Disk, Verdict)> {
    disks
        .iter()
        .filter(|d| d.listed_by_default())
        .filter_map(|d| check(d, ctx, ov).ok().map(|v| (d, v)))
        .collect()
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
