//! `inspect`: everything we can tell about an image without booting it —
//! table, partitions, filesystems, layout, OS, boot configuration,
//! cloud-init, the NTP client and the NoCloud seed — as a serialisable
//! report (the JSON shape is documented in docs/INSPECT.md) and a human
//! rendering. `base` reads the same facts for `build` and `check`. Once
//! the partition table is read, nothing is all-or-nothing: a damaged
//! filesystem or an unreadable file becomes a `Problem` in the report and
//! everything else is still reported.

pub mod base;
mod human;
mod ntp;
pub mod os;

use std::fmt::Display;

use anyhow::{Context, Result};
use serde::Serialize;

pub use human::render_human;
use os::{CloudInit, OsInfo};

use crate::disk::{Layout, TableKind};
use crate::fs::{Filesystem, FsError, FsInfo};
use crate::image::Image;

#[derive(Debug, Serialize)]
pub struct Report {
    pub image: String,
    pub size_bytes: u64,
    pub table: TableReport,
    pub partitions: Vec<PartitionReport>,
    pub layout: Option<Layout>,
    /// Why no layout matched, when none did.
    pub layout_problem: Option<String>,
    pub os: Option<OsInfo>,
    pub boot_config: Vec<BootFile>,
    pub cloud_init: Option<CloudInit>,
    /// The NTP client the root file system ships (`systemd-timesyncd`,
    /// `chrony`, `ntp`); null without one or without a layout.
    pub ntp_client: Option<crate::render::quirks::NtpClient>,
    pub seed: Option<Seed>,
    /// What `homelab-image build` put into the image (its manifest).
    pub injected: Option<crate::build::manifest::Manifest>,
    /// What could not be read; the fields it would have filled are null
    /// or incomplete.
    pub problems: Vec<Problem>,
}

/// Something inspect could not read, and why.
#[derive(Debug, Serialize)]
pub struct Problem {
    /// The partition it lives in, when it is in one.
    pub partition: Option<u32>,
    /// What was being read: "the filesystem", "the OS release", a path…
    pub reading: String,
    pub error: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(n) = self.partition {
            write!(f, "partition {n}: ")?;
        }
        write!(f, "reading {}: {}", self.reading, self.error)
    }
}

#[derive(Debug, Serialize)]
pub struct TableReport {
    pub kind: TableKind,
    pub disk_id: String,
    pub sector_size: u32,
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct PartitionReport {
    pub number: u32,
    /// sfdisk's spelling: `c`, `83`, or a GPT type GUID.
    pub type_id: String,
    pub type_name: &'static str,
    pub start_lba: u64,
    pub size_sectors: u64,
    pub start_bytes: u64,
    pub size_bytes: u64,
    pub bootable: bool,
    pub name: Option<String>,
    pub partuuid: String,
    pub filesystem: Option<FsInfo>,
    /// Why the filesystem that the partition seems to hold cannot be read.
    pub filesystem_error: Option<String>,
}

/// A boot configuration file found on the boot FAT or in the root's /boot.
#[derive(Debug, Serialize)]
pub struct BootFile {
    pub partition: u32,
    pub path: String,
    pub size_bytes: u64,
    /// The kernel command line (first line) of cmdline.txt, or the whole of
    /// armbianEnv.txt; config.txt is only listed.
    pub content: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Seed {
    pub partition: u32,
    pub files: Vec<SeedFile>,
    /// `instance-id` from meta-data; Ubuntu's stock file writes
    /// `instance_id`, which cloud-init ignores, so this is then absent.
    pub instance_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SeedFile {
    pub name: String,
    pub size_bytes: u64,
}

/// Files on the boot FAT that configure booting.
const FAT_BOOT_FILES: [&str; 5] = [
    "cmdline.txt",
    "current/cmdline.txt",
    "config.txt",
    "current/config.txt",
    "armbianEnv.txt",
];
/// The same files inside an ext4 root's /boot (Armbian single root).
const EXT4_BOOT_FILES: [&str; 2] = ["/boot/armbianEnv.txt", "/boot/boot.cmd"];
/// What a problem reading `/etc/os-release` (or its fallbacks) is called.
const OS_RELEASE: &str = "the OS release";
/// NoCloud seed files (cloud-init's DataSourceNoCloud).
const SEED_FILES: [&str; 4] = ["user-data", "meta-data", "network-config", "vendor-data"];

/// Inspects `image` (its table already read): reports everything that can
/// be read and a `Problem` for everything that cannot.
pub fn inspect(image: &Image) -> Report {
    let table = image.table();
    let mut problems = Vec::new();
    let partitions = table
        .partitions
        .iter()
        .map(|p| {
            let (filesystem, filesystem_error) = match image.fs_info(p.number) {
                Ok(info) => (info.cloned(), None),
                Err(e) => {
                    problems.push(Problem {
                        partition: Some(p.number),
                        reading: "the filesystem".into(),
                        error: e.to_string(),
                    });
                    (None, Some(e.to_string()))
                }
            };
            PartitionReport {
                number: p.number,
                type_id: p.ptype.sfdisk_id(),
                type_name: p.ptype.description(),
                start_lba: p.start.0,
                size_sectors: p.sectors.0,
                start_bytes: p.range.start().0,
                size_bytes: p.range.len().0,
                bootable: p.bootable,
                name: p.name.clone(),
                partuuid: p.partuuid.clone(),
                filesystem,
                filesystem_error,
            }
        })
        .collect();
    let (layout, layout_problem) = match image.layout() {
        Ok(l) => (Some(l), None),
        Err(e) => (None, Some(e.to_string())),
    };

    let mut report = Report {
        image: image.path().display().to_string(),
        size_bytes: image.len(),
        table: TableReport {
            kind: table.kind,
            disk_id: table.disk_id.clone(),
            sector_size: table.sector_size.bytes(),
            warnings: table.warnings.clone(),
        },
        partitions,
        layout: layout.clone(),
        layout_problem,
        os: None,
        boot_config: Vec::new(),
        cloud_init: None,
        ntp_client: None,
        seed: None,
        injected: None,
        problems,
    };
    let Some(layout) = layout else {
        return report;
    };
    let mut sections = Sections {
        problems: Vec::new(),
    };

    let root_n = layout.root;
    if let Some(root) = sections.open(image, root_n) {
        report.os = sections
            .read(root_n, OS_RELEASE, os::read_os(&root))
            .flatten();
        report.cloud_init = sections.read(root_n, "cloud-init", os::read_cloud_init(&root));
        report.ntp_client = sections
            .read(root_n, "the NTP client", ntp::detect(&root))
            .flatten();
        report.injected = sections
            .read(
                root_n,
                crate::build::manifest::MANIFEST_PATH,
                injected(&root),
            )
            .flatten();
        report
            .boot_config
            .extend(boot_files(&root, root_n, &EXT4_BOOT_FILES, &mut sections));
    }
    if let Some(boot) = layout.boot
        && let Some(fat) = sections.open(image, boot)
    {
        let mut files = boot_files(&fat, boot, &FAT_BOOT_FILES, &mut sections);
        files.append(&mut report.boot_config);
        report.boot_config = files;
        report.seed = Some(seed(&fat, boot, &mut sections));
    }
    report.problems.append(&mut sections.problems);
    report
}

/// The problems met while reading the parts of a report, each recorded
/// where it happened so that the rest can still be read.
struct Sections {
    problems: Vec<Problem>,
}

impl Sections {
    /// `Some(value)`, or `None` with the error recorded as a problem.
    fn read<T, E: Display>(&mut self, partition: u32, reading: &str, r: Result<T, E>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.fail(partition, reading, e);
                None
            }
        }
    }

    fn fail(&mut self, partition: u32, reading: &str, e: impl Display) {
        self.problems.push(Problem {
            partition: Some(partition),
            reading: reading.to_string(),
            error: format!("{e:#}"),
        });
    }

    /// The filesystem of partition `n`, or `None` with the reason recorded.
    fn open(&mut self, image: &Image, n: u32) -> Option<Filesystem> {
        let part = image.table().get(n)?;
        let fs_type = image.fs_info(n).ok().flatten().map(|i| i.fs_type);
        self.read(
            n,
            "the filesystem",
            Filesystem::open(image.window(part), fs_type),
        )
    }
}

fn injected(root: &Filesystem) -> Result<Option<crate::build::manifest::Manifest>> {
    let Some(bytes) = root.read_if_exists(crate::build::manifest::MANIFEST_PATH)? else {
        return Ok(None);
    };
    crate::build::manifest::Manifest::from_json(&bytes)
        .map(Some)
        .context("the build manifest is not valid JSON")
}

fn boot_files(
    fs: &Filesystem,
    partition: u32,
    names: &[&str],
    sections: &mut Sections,
) -> Vec<BootFile> {
    let mut out = Vec::new();
    for name in names {
        let shown = format!("/{}", crate::fs::normalize(name));
        let Some(Some(bytes)) = sections.read(partition, &shown, fs.read_if_exists(name)) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        let content = if name.ends_with("cmdline.txt") {
            Some(text.lines().next().unwrap_or("").trim().to_string())
        } else if name.ends_with("armbianEnv.txt") {
            Some(text.trim_end().to_string())
        } else {
            None
        };
        out.push(BootFile {
            partition,
            path: shown,
            size_bytes: bytes.len() as u64, // as: usize fits in u64
            content,
        });
    }
    out
}

fn seed(fat: &Filesystem, partition: u32, sections: &mut Sections) -> Seed {
    let mut files = Vec::new();
    let mut instance_id = None;
    for name in SEED_FILES {
        // Only meta-data is parsed; the others are listed with their size.
        let size = match fat.stat(name) {
            Ok(entry) => entry.size,
            Err(FsError::NotFound(_)) => continue,
            Err(e) => {
                sections.fail(partition, &format!("/{name}"), e);
                continue;
            }
        };
        if name == "meta-data"
            && let Some(Some(bytes)) =
                sections.read(partition, "/meta-data", fat.read_if_exists(name))
        {
            let text = String::from_utf8_lossy(&bytes);
            instance_id = serde_saphyr::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| {
                    v.get("instance-id")
                        .and_then(|i| i.as_str())
                        .map(str::to_string)
                });
        }
        files.push(SeedFile {
            name: name.to_string(),
            size_bytes: size,
        });
    }
    Seed {
        partition,
        files,
        instance_id,
    }
}
