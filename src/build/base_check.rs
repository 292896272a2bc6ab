//! The profile meets the image, before anything is rendered or written:
//! the base image a node names must be what its `image.os` says (layout,
//! OS release, cloud-init), users without a pinned `uid` get the next free
//! one of the image, and the image's NTP client decides how the profile's
//! NTP servers are configured. `build`, `build --dry-run`, `check` and
//! `render` all go through `examine`; `available` finds the base image
//! without fetching anything (for the commands that must not download).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::disk::LayoutKind;
use crate::image::Image;
use crate::inspect::base::BaseFacts;
use crate::profile::platform::OsRelease;
use crate::profile::resolved::{ImageSource, ResolvedNode};
use crate::render::BaseInfo;
use crate::render::accounts::{UidChoice, UidReason, UidRequest, allocate_uids};
use crate::render::quirks::{NtpClient, NtpFound, Quirks};
use crate::source::SourceSpec;

/// A node as it will be built on its base image.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The node with every user's uid decided against the image.
    pub node: ResolvedNode,
    /// What rendering needs to know about the image.
    pub base: BaseInfo,
    /// The image and what it is, in one line.
    pub image: String,
    pub uids: Vec<UidChoice>,
    /// Things the user should know (one line each, no prefix).
    pub warnings: Vec<String>,
}

impl Checked {
    /// The node as the profile says, for when its image is not at hand.
    pub fn unexamined(node: &ResolvedNode) -> Checked {
        Checked {
            node: node.clone(),
            base: BaseInfo::default(),
            image: String::new(),
            uids: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Notes on uids that differ from the profile's default (`1000` +
    /// position), for `render` and `build` to print.
    pub fn uid_notes(&self) -> Vec<String> {
        self.uids
            .iter()
            .zip(&self.node.users)
            .enumerate()
            .filter_map(|(i, (c, _))| {
                let default = 1000u32.saturating_add(u32::try_from(i).unwrap_or(u32::MAX));
                (c.reason != UidReason::Pinned && c.uid != default).then(|| describe_uid(c))
            })
            .collect()
    }
}

/// "user alice gets uid 1001 (the next free one: 1000 is armbian's in
/// the image)".
pub fn describe_uid(c: &UidChoice) -> String {
    let why = match &c.reason {
        UidReason::Pinned => "set in the profile".to_owned(),
        UidReason::InImage => "the image already has this user".to_owned(),
        UidReason::NextFree { above: None } => "the first free one".to_owned(),
        UidReason::NextFree {
            above: Some((uid, owner)),
        } => format!("the next free one: {uid} is {owner}'s in the image"),
    };
    format!("user {} gets uid {} ({why})", c.name, c.uid)
}

/// Checks `node` against the facts of its base image and decides what the
/// image changes about it.
pub fn examine(node: &ResolvedNode, facts: &BaseFacts) -> Result<Checked> {
    let name = &node.hostname;
    if let Some(why) = os_mismatch(node, facts) {
        anyhow::bail!("node {name}: {why}");
    }
    let requests: Vec<UidRequest> = node
        .users
        .iter()
        .map(|u| UidRequest {
            name: u.name.to_string(),
            pinned: u.uid_given.then_some(u.uid),
        })
        .collect();
    let a = &facts.accounts;
    let uids = allocate_uids(&requests, &a.passwd, &a.group, a.login_defs.as_deref())
        .with_context(|| {
            format!(
                "node {name}: the users of the profile against the accounts of {}",
                facts.image.display()
            )
        })?;
    let mut adjusted = node.clone();
    for (u, c) in adjusted.users.iter_mut().zip(&uids) {
        u.uid = c.uid;
    }
    let ntp = facts.ntp.map_or(NtpFound::Nothing, NtpFound::Client);
    let quirks = Quirks::new(node.image.os, &node.board).with_ntp(ntp);
    let mut warnings = Vec::new();
    warnings.extend(ntp_warning(node, facts, &quirks));
    Ok(Checked {
        node: adjusted,
        base: BaseInfo {
            ntp,
            ..BaseInfo::default()
        },
        image: format!("{}: {}", facts.image.display(), facts.describe()),
        uids,
        warnings,
    })
}

/// Reads the facts of the image at `path` and examines `node` against it.
pub fn examine_at(node: &ResolvedNode, path: &Path) -> Result<Checked> {
    let image = Image::open(path)
        .with_context(|| format!("node {}: opening its base image", node.hostname))?;
    let facts = BaseFacts::read(&image)
        .with_context(|| format!("node {}: reading its base image", node.hostname))?;
    examine(node, &facts)
}

/// The release an `ubuntu-*` profile `os` names (`24.04`).
fn ubuntu_version(os: OsRelease) -> Option<&'static str> {
    match os {
        OsRelease::Ubuntu2204 => Some("22.04"),
        OsRelease::Ubuntu2404 => Some("24.04"),
        OsRelease::Ubuntu2604 => Some("26.04"),
        OsRelease::Armbian => None,
    }
}

/// The profile `os` for an Ubuntu image of `version`, if we support it.
fn os_for_ubuntu(version: &str) -> Option<OsRelease> {
    [
        OsRelease::Ubuntu2204,
        OsRelease::Ubuntu2404,
        OsRelease::Ubuntu2604,
    ]
    .into_iter()
    .find(|os| ubuntu_version(*os) == Some(version))
}

/// Why the image is not what `image.os` says, naming both sides and the
/// way out; `None` when they agree.
fn os_mismatch(node: &ResolvedNode, facts: &BaseFacts) -> Option<String> {
    let os = node.image.os;
    let it = format!(
        "image.os is {os}, but {} is {}",
        facts.image.display(),
        facts.describe()
    );
    let release = facts.os.as_ref();
    let id = release.and_then(|o| o.id.as_deref());
    let version = release.and_then(|o| o.version_id.as_deref());
    let Some(want) = ubuntu_version(os) else {
        // os: armbian
        if !facts.is_armbian() {
            let fix = match (id, version.and_then(os_for_ubuntu)) {
                (Some("ubuntu"), Some(u)) => format!("set `os: {u}` for this node"),
                _ => "use an Armbian image".to_owned(),
            };
            return Some(format!(
                "{it}; an Armbian image has /etc/armbian-release: {fix}"
            ));
        }
        if facts.cloud_init.installed {
            return Some(format!(
                "{it}; homelab-image configures Armbian nodes by writing their files \
                 itself, and this image's cloud-init would configure the network a \
                 second time: use an Armbian image without cloud-init"
            ));
        }
        return None;
    };
    if facts.is_armbian() {
        return Some(format!(
            "{it}: set `os: armbian` for this node, or use an Ubuntu image"
        ));
    }
    if id != Some("ubuntu") {
        return Some(format!("{it}, not Ubuntu: use an Ubuntu {want} image"));
    }
    if version != Some(want) {
        let fix = version.and_then(os_for_ubuntu).map_or_else(
            || format!("use an Ubuntu {want} image"),
            |u| format!("set `os: {u}` for this node"),
        );
        return Some(format!("{it}: {fix}"));
    }
    if node.board.is_vm() {
        if facts.layout.kind != LayoutKind::UbuntuCloud {
            return Some(format!(
                "{it}: a vm node needs an Ubuntu cloud image (an ext4 root labelled \
                 cloudimg-rootfs, where its seed goes), like the catalog's \
                 ubuntu-{want}-cloud-{}",
                node.arch
            ));
        }
        if !facts.cloud_init.installed {
            return Some(format!(
                "{it}: a vm node is configured by cloud-init, which this image lacks"
            ));
        }
        return None;
    }
    if facts.layout.kind == LayoutKind::UbuntuCloud {
        return Some(format!(
            "{it}: this is a cloud image, for virtual machines; a {} node needs \
             Ubuntu's preinstalled Raspberry Pi image (its seed goes on the FAT \
             partition system-boot)",
            node.board
        ));
    }
    if facts.layout.kind != LayoutKind::UbuntuRaspi {
        return Some(format!(
            "{it}: Ubuntu nodes are configured through the FAT partition system-boot, \
             which this image does not have"
        ));
    }
    if !facts.cloud_init.installed {
        return Some(format!(
            "{it}: Ubuntu nodes are configured by cloud-init, which this image lacks"
        ));
    }
    let quirks = Quirks::new(os, &node.board);
    if let Some(path) = quirks.cmdline_path()
        && facts.cmdline != Some(path)
    {
        return Some(format!(
            "{it}: Ubuntu {want} keeps the kernel command line in {path}, which this \
             image does not have"
        ));
    }
    None
}

/// What the user should know about the image's NTP client: none at all
/// (nothing synchronises the clock; the first-boot unit waits for it and
/// retries), or one that cannot take the profile's servers.
fn ntp_warning(node: &ResolvedNode, facts: &BaseFacts, quirks: &Quirks) -> Option<String> {
    let image = facts.image.display();
    let servers = if node.ntp.is_empty() {
        String::new()
    } else {
        "; the profile's ntp servers are not configured".to_owned()
    };
    match quirks.ntp() {
        NtpFound::Nothing => Some(format!(
            "node {}: {image} has no NTP client (systemd-timesyncd, chrony or ntp), \
             so nothing will set the clock{servers}; the first-boot unit waits for a \
             synchronised clock before it installs the snaps",
            node.hostname
        )),
        NtpFound::Client(NtpClient::Ntp) if !quirks.uses_cloud_init() && !node.ntp.is_empty() => {
            Some(format!(
                "node {}: {image} uses ntpd, whose configuration homelab-image does not \
                 write on Armbian{servers}",
                node.hostname
            ))
        }
        _ => None,
    }
}

/// Where a node's base image can be read without fetching anything: a
/// local raw image, or one the cache already holds. `Err` says why not
/// (for "not checked" notes); a local file that is missing was already
/// refused when the profile was resolved.
pub fn available(node: &ResolvedNode, cache_dir: &Path) -> Result<PathBuf, String> {
    if let Some(p) = local_raw(node).map_err(|e| e.to_string())? {
        return Ok(p);
    }
    let spec = SourceSpec::for_node(&node.image);
    match crate::source::cached_base(&spec, cache_dir) {
        Some(img) => Ok(img.raw_path),
        None => Err(match &spec {
            SourceSpec::Path { path, .. } => format!(
                "{} is compressed and not yet decompressed into the cache \
                 (`homelab-image pull` or the build does that)",
                path.display()
            ),
            other => format!(
                "{} is not in the cache (`homelab-image pull` fetches it)",
                other.describe()
            ),
        }),
    }
}

/// The node's base when it is a local raw image (`image.path`, not
/// compressed), which is used where it is; `None` for any other source.
pub fn local_raw(node: &ResolvedNode) -> std::io::Result<Option<PathBuf>> {
    match &node.image.source {
        ImageSource::Path(p) if !is_compressed(p)? => Ok(Some(p.clone())),
        _ => Ok(None),
    }
}

/// Whether the file starts with xz, gzip or zstd magic (the detection
/// `pull` uses). Only a regular file is read: a FIFO or device named as
/// `image.path` is refused rather than waited on.
fn is_compressed(p: &Path) -> std::io::Result<bool> {
    use crate::source::decompress::Format;
    use std::io::Read;
    let mut head = [0u8; 6];
    let mut f = crate::profile::named_file::open_regular(p).map_err(std::io::Error::other)?;
    let n = f.read(&mut head)?;
    Ok(Format::detect(&head[..n]) != Format::Raw)
}
