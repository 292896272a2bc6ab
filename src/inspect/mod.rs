//! `inspect`: everything we can tell about an image without booting it —
//! table, partitions, filesystems, layout, OS, boot configuration,
//! cloud-init, the NTP client and the NoCloud seed — as a serialisable
//! report (the JSON shape is documented in docs/INSPECT.md) and a human
//! rendering. `base` reads the same facts for `build` and `check`.

pub mod base;
mod human;
mod ntp;
pub mod os;

use anyhow::{Context, Result};
use serde::Serialize;

pub use human::render_human;
use os::{CloudInit, OsInfo};

use crate::disk::{Layout, TableKind};
use crate::fs::{Filesystem, FsInfo};
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
    pub injected: Option<Injected>,
}

/// The build manifest found at `/var/lib/homelab-image/manifest.json`.
#[derive(Debug, Serialize)]
pub struct Injected {
    pub tool: String,
    pub node: String,
    pub files: Vec<InjectedFile>,
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub struct InjectedFile {
    pub target: String,
    pub path: String,
    pub kind: String,
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
/// NoCloud seed files (cloud-init's DataSourceNoCloud).
const SEED_FILES: [&str; 4] = ["user-data", "meta-data", "network-config", "vendor-data"];

pub fn inspect(image: &Image) -> Result<Report> {
    image.check_filesystems()?;
    let shown = image.path().display();
    let table = image.table();
    let partitions = table
        .partitions
        .iter()
        .map(|p| PartitionReport {
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
            filesystem: image.fs_info(p.number).ok().flatten().cloned(),
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
    };
    let Some(layout) = layout else {
        return Ok(report);
    };

    let root_spec = layout.root.to_string();
    let (_, root) = image.filesystem(&root_spec)?;
    let in_root = |what: &str| format!("{shown}: partition {}: reading {what}", layout.root);
    report.os = os::read_os(&root).with_context(|| in_root("the OS release"))?;
    report.cloud_init = Some(os::read_cloud_init(&root).with_context(|| in_root("cloud-init"))?);
    report.ntp_client = ntp::detect(&root).with_context(|| in_root("the NTP client"))?;
    report.injected =
        injected(&root).with_context(|| in_root(crate::build::plan::MANIFEST_PATH))?;
    report.boot_config.extend(
        boot_files(&root, layout.root, &EXT4_BOOT_FILES).with_context(|| in_root("/boot"))?,
    );

    if let Some(boot) = layout.boot {
        let (_, fat) = image.filesystem(&boot.to_string())?;
        let in_boot = |what: &str| format!("{shown}: partition {boot}: reading {what}");
        let mut files =
            boot_files(&fat, boot, &FAT_BOOT_FILES).with_context(|| in_boot("boot files"))?;
        files.append(&mut report.boot_config);
        report.boot_config = files;
        report.seed = Some(seed(&fat, boot).with_context(|| in_boot("the cloud-init seed"))?);
    }
    Ok(report)
}

fn injected(root: &Filesystem) -> Result<Option<Injected>> {
    #[derive(serde::Deserialize)]
    struct Raw {
        tool: String,
        node: String,
        files: Vec<InjectedFile>,
    }
    let Some(bytes) = root.read_if_exists(crate::build::plan::MANIFEST_PATH)? else {
        return Ok(None);
    };
    let raw: Raw =
        serde_json::from_slice(&bytes).context("the build manifest is not valid JSON")?;
    Ok(Some(Injected {
        tool: raw.tool,
        node: raw.node,
        files: raw.files,
    }))
}

fn boot_files(fs: &Filesystem, partition: u32, names: &[&str]) -> Result<Vec<BootFile>> {
    let mut out = Vec::new();
    for name in names {
        let Some(bytes) = fs.read_if_exists(name)? else {
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
            path: format!("/{}", crate::fs::normalize(name)),
            size_bytes: bytes.len() as u64, // as: usize fits in u64
            content,
        });
    }
    Ok(out)
}

fn seed(fat: &Filesystem, partition: u32) -> Result<Seed> {
    let mut files = Vec::new();
    let mut instance_id = None;
    for name in SEED_FILES {
        let Some(bytes) = fat.read_if_exists(name)? else {
            continue;
        };
        if name == "meta-data" {
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
            size_bytes: bytes.len() as u64, // as: usize fits in u64
        });
    }
    Ok(Seed {
        partition,
        files,
        instance_id,
    })
}
