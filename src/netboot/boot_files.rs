//! The TFTP server's files: each node's FAT boot partition read in place
//! from the node's disk (base + patched pages + the node's own writes), no
//! extraction. A Pi asks for `<serial>/<path>` (or `<mac>/<path>` with
//! `TFTP_PREFIX=2`, the MAC as `dc-a6-32-01-36-c2`); the prefix picks the
//! node, the rest is looked up in the FAT, ignoring case as the FAT does.
//! `cmdline.txt` (and `current/cmdline.txt`) are served rewritten for a
//! network root: `nbdroot=` naming this server and the node's export,
//! `root=/dev/nbd0p2` and the profile's static `ip=`.
//!
//! The FAT's file map (`FatVolume::map_files`, after a full check of every
//! chain) is built once and rebuilt only after the node wrote into its
//! boot partition over NBD (`Watched` counts those writes).

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow};

use super::disk::Disk;
use super::registry::{Protocol, Registry};
use super::tftp::files::{Files, Opened, Refusal, confined};
use crate::fs::fat::{FatVolume, FileMap};
use crate::io::{ByteRange, PartitionWindow, ReadAt, Storage};
use crate::profile::net::MacAddr;
use crate::profile::netboot::PiSerial;
use crate::render::cmdline::{CmdlineOp, edit_cmdline};

/// The largest `cmdline.txt` served rewritten (the kernel takes a few KiB).
const MAX_CMDLINE: u64 = 64 * 1024;

/// A disk as read-only `Storage`, so the image and FAT readers can open it.
pub struct DiskStorage(pub Arc<dyn Disk>);

impl fmt::Debug for DiskStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DiskStorage({} bytes)", self.0.size())
    }
}

impl Storage for DiskStorage {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let avail = self.0.size().saturating_sub(offset);
        let n = buf.len().min(usize::try_from(avail).unwrap_or(usize::MAX));
        if n > 0 {
            self.0.read_at(&mut buf[..n], offset)?;
        }
        Ok(n)
    }

    fn write_at(&self, _buf: &[u8], _offset: u64) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the boot files are served read-only",
        ))
    }

    fn sync_all(&self) -> io::Result<()> {
        Ok(())
    }
}

/// A disk that counts writes landing in one byte range (the boot
/// partition), so the file map built from it knows when it is stale.
pub struct Watched {
    inner: Arc<dyn Disk>,
    range: (u64, u64),
    generation: Arc<AtomicU64>,
}

impl Watched {
    pub fn new(inner: Arc<dyn Disk>, range: ByteRange) -> Watched {
        Watched {
            inner,
            range: (range.start().0, range.end().0),
            generation: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self, offset: u64, len: u64) {
        let end = offset.saturating_add(len);
        if offset < self.range.1 && end > self.range.0 {
            self.generation.fetch_add(1, Ordering::Release);
        }
    }
}

impl Disk for Watched {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let r = self.inner.write_at(buf, offset);
        self.touch(offset, buf.len() as u64); // as: usize fits u64
        r
    }
    fn flush(&self) -> io::Result<()> {
        self.inner.flush()
    }
    fn trim(&self, offset: u64, len: u64) -> io::Result<()> {
        let r = self.inner.trim(offset, len);
        self.touch(offset, len);
        r
    }
}

/// One node's boot files.
pub struct BootNode {
    /// The node's name, as the registry knows it (with its serial and MAC).
    pub name: String,
    disk: Arc<dyn Disk>,
    boot: ByteRange,
    generation: Arc<AtomicU64>,
    /// The edits `cmdline.txt` is served with.
    cmdline: Vec<CmdlineOp>,
    index: Mutex<Option<(u64, Arc<Index>)>>,
}

/// The FAT's files by upper-cased path without the leading `/`.
struct Index {
    files: HashMap<String, FileMap>,
}

impl BootNode {
    /// The boot files of `disk` (a `Watched` disk, the one the node's NBD
    /// export writes through), whose boot FAT is partition `boot`; checks
    /// that the FAT can be read and maps it now, so a damaged one stops
    /// `serve` before it starts.
    pub fn new(
        name: &str,
        disk: &Arc<Watched>,
        boot: ByteRange,
        cmdline: Vec<CmdlineOp>,
    ) -> Result<BootNode> {
        let node = BootNode {
            name: name.to_owned(),
            disk: Arc::clone(disk) as Arc<dyn Disk>,
            boot,
            generation: Arc::clone(&disk.generation),
            cmdline,
            index: Mutex::new(None),
        };
        node.index()
            .with_context(|| format!("node {name}: reading its boot partition"))?;
        Ok(node)
    }

    fn window(&self) -> PartitionWindow {
        PartitionWindow::new(Arc::new(DiskStorage(Arc::clone(&self.disk))), self.boot)
    }

    fn index(&self) -> Result<Arc<Index>> {
        let generation = self.generation.load(Ordering::Acquire);
        let mut slot = self
            .index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((g, index)) = slot.as_ref()
            && *g == generation
        {
            return Ok(Arc::clone(index));
        }
        let files = FatVolume::map_files(&self.window()).map_err(|e| anyhow!("{e}"))?;
        let index = Arc::new(Index {
            files: files
                .into_iter()
                .map(|f| (f.path.trim_start_matches('/').to_uppercase(), f))
                .collect(),
        });
        *slot = Some((generation, Arc::clone(&index)));
        Ok(index)
    }

    /// The file at `rel` in the boot partition as the node fetches it,
    /// `None` when there is none.
    pub fn file(&self, rel: &str) -> Result<Option<Opened>> {
        match self.open(rel) {
            Ok(o) => Ok(Some(o)),
            Err(Refusal::NotFound) => Ok(None),
            Err(Refusal::Denied(why)) => Err(anyhow!("{why}")),
        }
    }

    /// Opens `rel` (below the prefix) for `client`.
    fn open(&self, rel: &str) -> Result<Opened, Refusal> {
        let index = self.index().map_err(|e| {
            tracing::warn!("tftp: node {}: {e:#}", self.name);
            Refusal::Denied(format!(
                "node {}: its boot partition cannot be read",
                self.name
            ))
        })?;
        let key = rel.to_uppercase();
        let Some(file) = index.files.get(&key) else {
            return Err(Refusal::NotFound);
        };
        let data = Extents {
            disk: Arc::clone(&self.disk),
            base: self.boot.start().0,
            runs: file.runs.clone(),
        };
        let basename = key.rsplit('/').next().unwrap_or(&key);
        if basename == "CMDLINE.TXT" && !self.cmdline.is_empty() {
            if file.size > MAX_CMDLINE {
                return Err(Refusal::Denied(format!(
                    "{rel} is {} bytes, more than a kernel command line",
                    file.size
                )));
            }
            let mut text = vec![0u8; file.size as usize]; // as: <= 64 KiB
            data.read_exact_at(&mut text, 0).map_err(|e| {
                tracing::warn!("tftp: node {}: reading {rel}: {e}", self.name);
                Refusal::NotFound
            })?;
            let edited = edit_cmdline(&String::from_utf8_lossy(&text), &self.cmdline);
            let bytes = edited.into_bytes();
            return Ok(Opened {
                len: bytes.len() as u64, // as: usize fits u64
                data: Box::new(Memory(bytes)),
            });
        }
        Ok(Opened {
            len: file.size,
            data: Box::new(data),
        })
    }
}

/// A file's bytes as runs on the disk.
struct Extents {
    disk: Arc<dyn Disk>,
    /// The partition's offset on the disk.
    base: u64,
    /// (offset in the partition, length), in file order.
    runs: Vec<(u64, u64)>,
}

impl ReadAt for Extents {
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        let mut run_start = 0u64;
        for &(at, len) in &self.runs {
            if buf.is_empty() {
                break;
            }
            if offset < run_start + len {
                let skip = offset - run_start;
                let n = (len - skip).min(buf.len() as u64); // as: usize fits u64
                let (now, rest) = buf.split_at_mut(n as usize); // as: <= buf.len()
                self.disk.read_at(now, self.base + at + skip)?;
                buf = rest;
                offset += n;
            }
            run_start += len;
        }
        if buf.is_empty() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the file's clusters",
            ))
        }
    }
}

struct Memory(Vec<u8>);

impl ReadAt for Memory {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.as_slice().read_exact_at(buf, offset)
    }
}

/// Bytes read of one opened file, added to the node's TFTP counters when
/// the transfer ends (a lock per block would serialise 100 transfers).
struct Counted {
    inner: Box<dyn ReadAt + Send + Sync>,
    bytes: AtomicU64,
    registry: Arc<Registry>,
    node: String,
}

impl ReadAt for Counted {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, offset)?;
        self.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed); // as: usize fits u64
        Ok(())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let n = self.bytes.load(Ordering::Relaxed);
        self.registry.add_bytes(&self.node, Protocol::Tftp, n, 0);
    }
}

/// Every served node's boot files, keyed by the request's prefix.
pub struct BootFiles {
    pub nodes: Vec<BootNode>,
    pub registry: Arc<Registry>,
}

impl BootFiles {
    /// The node a prefix directory names: its serial, or its MAC with
    /// dashes, looked up in the registry.
    fn node_for(&self, prefix: &str) -> Option<&BootNode> {
        let id = match PiSerial::parse(prefix) {
            Ok(serial) if prefix.len() == 8 => self.registry.by_serial(&serial)?,
            _ => self
                .registry
                .by_mac(&MacAddr::parse(&prefix.replace('-', ":")).ok()?)?,
        };
        self.nodes.iter().find(|n| n.name == id.name)
    }
}

impl Files for BootFiles {
    fn open(&self, client: SocketAddr, path: &str) -> Result<Opened, Refusal> {
        let rel = confined(path)?;
        let parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let [prefix, rest @ ..] = parts.as_slice() else {
            return Err(Refusal::NotFound);
        };
        if rest.is_empty() {
            return Err(Refusal::Denied(format!(
                "{path:?} has no serial or MAC prefix directory (the Pi's EEPROM needs \
                 TFTP_PREFIX=0, the default, or 2)"
            )));
        }
        let Some(node) = self.node_for(prefix) else {
            return Err(Refusal::Denied(format!(
                "{prefix:?} is no served node's serial or MAC"
            )));
        };
        let rel = rest.join("/");
        let opened = node.open(&rel)?;
        self.registry
            .record(&node.name, Protocol::Tftp, Some(client.ip()), &rel, 0, 0);
        tracing::info!(%client, "tftp: node {}: {rel} ({} bytes)", node.name, opened.len);
        Ok(Opened {
            len: opened.len,
            data: Box::new(Counted {
                inner: opened.data,
                bytes: AtomicU64::new(0),
                registry: Arc::clone(&self.registry),
                node: node.name.clone(),
            }),
        })
    }
}

/// The boot partition of a node's disk: the image's layout names it.
pub fn boot_partition(name: &str, disk: &Arc<dyn Disk>) -> Result<ByteRange> {
    let storage: Arc<dyn Storage> = Arc::new(DiskStorage(Arc::clone(disk)));
    let image = crate::image::Image::over(Path::new(name), storage, disk.size())?;
    let layout = image
        .layout()
        .with_context(|| format!("node {name}: not an image layout that netboots"))?;
    let n = layout
        .boot
        .ok_or_else(|| anyhow!("node {name}: the image has no boot FAT partition to serve"))?;
    let part = image
        .table()
        .get(n)
        .ok_or_else(|| anyhow!("node {name}: no partition {n}"))?;
    Ok(part.range)
}
