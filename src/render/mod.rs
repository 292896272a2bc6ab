//! Renderers: pure functions from a resolved node (plus the cluster and
//! the state directory's secrets) to the list of `FileSpec`s the build step
//! writes into that node's image. No clock, no randomness, no disk: the
//! same inputs give the same bytes.
//!
//! What is rendered depends on the base image (`quirks`):
//! - Ubuntu (cloud-init): `user-data`, `network-config`, `meta-data` and a
//!   `cmdline.txt` edit on the boot FAT (for a netbooted node also its
//!   network root, `netboot`); first-boot unit, script, preseed
//!   and SSH host key in the root file system.
//! - An Ubuntu cloud image (`board: vm`): the same seed, in the root file
//!   system's `/var/lib/cloud/seed/nocloud/`, and no command line edit.
//! - Armbian (no cloud-init): everything in the root file system
//!   (`direct`), including account entries merged at build time.

pub mod accounts;
pub mod bootloader;
pub mod cloud_init;
pub mod cmdline;
pub mod direct;
pub mod file_spec;
pub mod firstboot;
pub mod k3s;
pub mod microcloud;
pub mod netboot;
pub mod netplan;
pub mod quirks;
pub mod redact;
pub mod reserved;
pub mod seed;
pub mod ssh_host;
pub mod tree;
pub mod yaml;

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::profile::resolved::{Cluster, ResolvedNode};
use crate::profile::state::State;
pub use file_spec::{AccountDb, CachedBlob, CachedFile, FileKind, FileSpec, Target};
use quirks::Quirks;

#[derive(Debug, Error)]
pub enum RenderError {
    #[error("the state directory has no {0}; it is created by `render` and `build`")]
    MissingState(String),
    #[error(transparent)]
    Yaml(#[from] yaml::YamlError),
    #[error(transparent)]
    Password(#[from] crate::profile::password::PasswordError),
}

/// What the build found in the node's base image (and, for a k3s node,
/// in the download cache) that changes what is rendered for it (the
/// default: nothing is known).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BaseInfo {
    pub ntp: quirks::NtpFound,
    /// The k3s files the cache holds for the node.
    pub k3s: k3s::K3sFiles,
}

/// Everything the build step writes for `node`, in a stable order, when
/// its base image has not been looked at.
pub fn node(
    node: &ResolvedNode,
    cluster: &Cluster,
    state: &State,
) -> Result<Vec<FileSpec>, RenderError> {
    node_on(node, cluster, state, &BaseInfo::default())
}

/// Everything the build step writes for `node` on a base image of which
/// `base` is known, in a stable order.
pub fn node_on(
    node: &ResolvedNode,
    cluster: &Cluster,
    state: &State,
    base: &BaseInfo,
) -> Result<Vec<FileSpec>, RenderError> {
    let quirks = Quirks::new(node.image.os, &node.board).with_ntp(base.ntp);
    let host_key = state
        .host_key(node.hostname.as_str())
        .ok_or_else(|| RenderError::MissingState(format!("SSH host key for {}", node.hostname)))?;
    let mut root = Vec::new();
    let password_auth = (!quirks.uses_cloud_init()).then_some(node.ssh_password_auth);
    root.extend(ssh_host::files(host_key, password_auth));
    root.push(FileSpec::root_dir(firstboot::STATE_DIR, 0o700));
    if let Some(mc) = &cluster.microcloud {
        let preseed = microcloud::preseed(cluster, mc, state)?;
        root.push(FileSpec::root_file(
            firstboot::PRESEED_PATH,
            0o600,
            yaml::to_yaml("preseed", &preseed)?,
        ));
    }
    if let Some(url) = &node.status_url {
        let token = state.status_token(node.hostname.as_str()).ok_or_else(|| {
            RenderError::MissingState(format!("status token for {}", node.hostname))
        })?;
        root.push(FileSpec::root_file(
            firstboot::STATUS_ENV_PATH,
            0o600,
            firstboot::status_env(url, token),
        ));
    }
    if let Some(fw) = &node.firmware {
        root.push(bootloader::conf_file(fw));
    }
    let k3s_role = cluster.k3s.as_ref().and_then(|k| k.role(&node.hostname));
    if let Some(k3s) = &cluster.k3s {
        let arch = crate::profile::k3s::node_arch(node);
        root.extend(k3s::files(node, cluster, k3s, state, arch, &base.k3s)?);
    }
    root.push(FileSpec::root_file(
        firstboot::SCRIPT_PATH,
        0o755,
        firstboot::script(node, cluster.microcloud.as_ref(), k3s_role, &quirks),
    ));
    root.push(FileSpec::root_file(
        firstboot::UNIT_PATH,
        0o644,
        firstboot::unit(),
    ));
    root.push(FileSpec::root_symlink(
        firstboot::WANTS_LINK,
        firstboot::UNIT_PATH,
    ));
    if !quirks.uses_cloud_init() {
        root.extend(direct::files(node, state, &quirks)?);
        // Armbian on a Pi: its cmdline.txt is on the boot FAT.
        if let (Some(_), Some(path)) = (k3s_role, quirks.k3s_cmdline_path()) {
            root.push(cmdline_edit(path, quirks.k3s_cmdline_ops()));
        }
        return Ok(root);
    }
    // The NoCloud seed: on the boot FAT of a Pi image (cloud-init finds it
    // by `ds=nocloud` on the command line), in the root file system of a
    // cloud image (its ds-identify finds the seed directory).
    let seed_file = |name: &str, bytes: String| match quirks.seed_dir() {
        Some(dir) => FileSpec::root_file(&format!("{dir}/{name}"), 0o600, bytes),
        None => FileSpec::boot_file(name, bytes),
    };
    let mut boot = Vec::new();
    let user_data = format!(
        "#cloud-config\n{}",
        yaml::to_yaml("user-data", &cloud_init::user_data(node, state, &quirks)?)?
    );
    boot.push(seed_file("user-data", user_data));
    let network = yaml::to_yaml("network-config", &netplan::document(node, &quirks))?;
    boot.push(seed_file("network-config", network));
    if let Some(path) = quirks.cmdline_path() {
        let mut ops = cmdline_ops(node, &quirks);
        if k3s_role.is_some() {
            ops.extend(quirks.k3s_cmdline_ops());
        }
        boot.push(cmdline_edit(path, ops));
    }
    let digest = digest(boot.iter().chain(&root));
    let meta = yaml::to_yaml("meta-data", &cloud_init::meta_data(node, &digest))?;
    boot.insert(0, seed_file("meta-data", meta));
    boot.extend(root);
    Ok(boot)
}

/// An edit of the kernel command line at `path` on the boot FAT.
fn cmdline_edit(path: &str, ops: Vec<cmdline::CmdlineOp>) -> FileSpec {
    FileSpec {
        target: Target::Boot,
        path: path.to_owned(),
        kind: FileKind::CmdlineEdit { ops },
        mode: 0o644,
        uid: 0,
        gid: 0,
    }
}

/// The kernel command line edits for `node`: the seed's, then a netbooted
/// node's network root with the server the profile names (if any).
fn cmdline_ops(node: &ResolvedNode, quirks: &Quirks) -> Vec<cmdline::CmdlineOp> {
    let mut ops = quirks.cmdline_ops();
    let server = node.netboot.as_ref().and_then(|nb| nb.server);
    ops.extend(netboot::cmdline_ops(node, server));
    ops
}

/// The first 16 hex digits of a SHA-256 over every spec (target, path,
/// kind, mode, owner, content), used as cloud-init's instance id.
fn digest<'a>(specs: impl Iterator<Item = &'a FileSpec>) -> String {
    let mut h = Sha256::new();
    for s in specs {
        h.update(format!(
            "{}\0{}\0{}\0{:o}\0{}\0{}\0",
            s.target,
            s.path,
            s.kind.name(),
            s.mode,
            s.uid,
            s.gid
        ));
        match &s.kind {
            FileKind::File { bytes } => h.update(bytes),
            FileKind::Symlink { target } => h.update(target.as_bytes()),
            FileKind::CmdlineEdit { ops } => ops.iter().for_each(|op| h.update(op.to_string())),
            FileKind::AccountEntries { entries, .. } => h.update(format!("{entries:?}")),
            FileKind::Cached { file } => h.update(cached_identity(file)),
            FileKind::Dir | FileKind::Absent => {}
        }
        h.update(b"\n");
    }
    crate::digest::hex(&h.finalize()[..8])
}

/// What identifies a cached file's content: its checksum and length when
/// it is at hand, else what it is.
fn cached_identity(file: &CachedFile) -> String {
    match &file.found {
        Some(b) => format!("{} {}", b.sha256, b.len),
        None => file.what.clone(),
    }
}

/// One `known_hosts` line per node, for `out/known_hosts`.
pub fn known_hosts(cluster: &Cluster, state: &State) -> Result<String, RenderError> {
    let mut out = String::new();
    for n in &cluster.nodes {
        let key = state
            .host_key(n.hostname.as_str())
            .ok_or_else(|| RenderError::MissingState(format!("SSH host key for {}", n.hostname)))?;
        out.push_str(&ssh_host::known_hosts_line(n, key));
        out.push('\n');
    }
    Ok(out)
}
