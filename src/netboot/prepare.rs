//! Turning the build plan of the netbooted nodes into what `serve` serves:
//! per node, its patched pages over the shared cached base (no `.img` is
//! written), the lower disk at the profile's `disk_size`, and a check that
//! the image can boot this way at all — its boot FAT readable and its
//! `cmdline.txt` present.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};

use super::lower::Lower;
use crate::build::plan::NodePlan;
use crate::profile::resolved::ResolvedNode;

/// One node, ready to serve.
pub struct NodeDisk {
    pub name: String,
    /// The base, the node's pages and zeros up to `disk_size`.
    pub lower: Arc<Lower>,
    /// What the node's delta was made over (`Lower::fingerprint`).
    pub fingerprint: String,
}

/// Patches `plan`'s files into an overlay of its base and keeps the pages.
pub fn node_disk(node: &ResolvedNode, plan: &NodePlan, epoch: i64) -> Result<NodeDisk> {
    let name = plan.name.clone();
    let netboot = node
        .netboot
        .as_ref()
        .ok_or_else(|| anyhow!("node {name} has no `netboot:` in the profile"))?;
    let base = plan
        .base_path
        .as_deref()
        .ok_or_else(|| anyhow!("node {name}: its base image was not fetched"))?;
    let patched = crate::build::patch_node(&name, base, &plan.files, epoch, None)?;
    let len = patched.overlay.len();
    let pages = patched.overlay.take_pages();
    // The clone shares the open file and so the shared lock `patch_node`
    // took: no `cp` or `rm` edits the base while it is served.
    let file = patched
        .overlay
        .base()
        .try_clone()
        .with_context(|| format!("node {name}: opening {}", base.display()))?;
    let size = netboot.disk_size.bytes();
    if size < len {
        bail!(
            "node {name}: netboot.disk_size is {} but the image is {len} bytes; \
             raise disk_size to at least {}",
            netboot.disk_size,
            crate::io::units::human_size(len)
        );
    }
    let lower = Lower::new(file, len, pages, size).with_context(|| format!("node {name}"))?;
    let fingerprint = lower.fingerprint(&base_identity(base));
    Ok(NodeDisk {
        name,
        lower: Arc::new(lower),
        fingerprint,
    })
}

/// What names a base's content for the fingerprint: its path (a cached
/// base is named after its checksum), size and modification time.
fn base_identity(base: &Path) -> String {
    let meta = std::fs::metadata(base).ok();
    let mtime = meta
        .as_ref()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!(
        "{}\0{}\0{mtime}",
        base.display(),
        meta.map_or(0, |m| m.len())
    )
}

/// The kernel command line edits `cmdline.txt` is served with: the
/// profile's static `ip=`, `root=/dev/nbd0p2` and `nbdroot=` naming
/// `server` (this machine) and the node's export.
pub fn cmdline_ops(
    node: &ResolvedNode,
    server: Ipv4Addr,
    nbd_port: u16,
) -> Vec<crate::render::cmdline::CmdlineOp> {
    let mut ops = crate::render::netboot::cmdline_ops(node, Some(server));
    if nbd_port != super::ports::NBD {
        // initramfs-tools' nbd script (nbd-client's local-top/nbd) reads
        // `HOST:PORT/EXPORT` as well as `HOST/EXPORT`.
        for op in &mut ops {
            if let crate::render::cmdline::CmdlineOp::Set { key, value } = op
                && key == "nbdroot"
            {
                *value = format!("{server}:{nbd_port}/{}", node.hostname);
            }
        }
    }
    ops
}

/// Refuses a node whose initramfs cannot mount a root over NBD: reads its
/// `initrd.img` (`current/initrd.img` on the A/B layout) from the boot
/// partition as the bootloader would fetch it, unpacks it as the kernel
/// does and looks for `nbd-client`, the initramfs-tools NBD script and the
/// nbd driver.
pub fn check_initrd(boot: &super::boot_files::BootNode) -> Result<()> {
    let name = &boot.name;
    let mut found = None;
    for rel in ["initrd.img", "current/initrd.img"] {
        if let Some(o) = boot
            .file(rel)
            .with_context(|| format!("node {name}: reading {rel}"))?
        {
            found = Some((rel, o));
            break;
        }
    }
    let Some((rel, opened)) = found else {
        bail!(
            "node {name}: its boot partition has no initrd.img (nor current/initrd.img), so \
             its kernel cannot mount a root over NBD"
        );
    };
    let mut reader = ReadAtReader {
        inner: opened.data,
        pos: 0,
        len: opened.len,
    };
    let support = super::initramfs::nbd_support(&mut reader)
        .with_context(|| format!("node {name}: reading {rel} from its boot partition"))?;
    if let Some(why) = support.describe_missing() {
        bail!("node {name}: {rel}: {why}");
    }
    tracing::info!("{name}: {rel} has nbd-client and the NBD boot script");
    Ok(())
}

/// A positional reader read from the start to `len`.
struct ReadAtReader {
    inner: Box<dyn crate::io::ReadAt + Send + Sync>,
    pos: u64,
    len: u64,
}

impl std::io::Read for ReadAtReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.len - self.pos;
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if n == 0 {
            return Ok(0);
        }
        self.inner.read_exact_at(&mut buf[..n], self.pos)?;
        self.pos += n as u64; // as: usize fits u64
        Ok(n)
    }
}
