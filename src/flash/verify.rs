//! Proving the disk holds the image: read every mapped range back from the
//! medium — not the page cache — and compare its SHA-256 with the map's;
//! then open the disk as an image with our own readers and compare every
//! file the build injected (its manifest), the way Raspberry Pi Imager
//! checks its customisation.
//!
//! The read-back uses the target's `O_DIRECT` descriptor when it has one;
//! otherwise (a file on tmpfs) it flushes and drops the target's cached
//! pages first. A range that reads back wrong is compared with the source
//! to name the first bad byte: a card that loses writes past its real size
//! (fake capacity) or a dying card is caught here.
//!
//! Test hook: `HOMELAB_IMAGE_TEST_CORRUPT_AT=<byte offset>` makes
//! `readback` invert the 4 KiB block at that offset of the target before
//! reading it back, so the tests can see a mismatch reported. It is read
//! in `test_corruption` only and is not for users.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use anyhow::{Context, Result, anyhow, bail};
use sha2::{Digest, Sha256};

use super::bmap_read::{Bmap, MapRange};
use super::write::{Buf, CHUNK, Source, Target};
use crate::build::manifest::{MANIFEST_PATH, Manifest};
use crate::build::patch::{self, Expect, Expectation};
use crate::fs::EntryKind;
use crate::image::Image;
use crate::render::Target as FsTarget;

/// The test hook's variable (see the module comment).
pub const CORRUPT_ENV: &str = "HOMELAB_IMAGE_TEST_CORRUPT_AT";

/// A range of the disk that reads back different from the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub target: String,
    /// The first byte that differs.
    pub offset: u64,
    /// The map's range it is in (blocks, inclusive).
    pub first_block: u64,
    pub last_block: u64,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} reads back wrong at byte {} (in blocks {}-{}): the disk did not keep what \
             was written — a failing card, or one smaller than it claims (fake capacity); \
             do not use it",
            self.target, self.offset, self.first_block, self.last_block
        )
    }
}

impl std::error::Error for Mismatch {}

/// Reads every range of `map` back from `target` and compares it with
/// `sums` (one per range: `Written::sums`, which equal the map's own
/// checksums where it has them). On a difference, finds the first bad
/// byte by comparing with `src`, and fails with a [`Mismatch`].
pub fn readback(
    src: &Source,
    map: &Bmap,
    sums: &[[u8; 32]],
    target: &Target,
    progress: &dyn Fn(u64, u64),
    stop: &AtomicBool,
) -> Result<()> {
    let shown = target.path().display().to_string();
    if sums.len() != map.ranges.len() {
        bail!(
            "{shown}: {} checksums for {} ranges",
            sums.len(),
            map.ranges.len()
        );
    }
    test_corruption(target)?;
    drop_cache(target)?;
    let total = map.mapped_bytes();
    // A reader thread reads the disk while this one hashes: the two costs
    // overlap instead of adding up.
    let (tx, rx) = sync_channel::<Read>(2);
    let (back_tx, back_rx) = sync_channel::<Buf>(4);
    let (hashed, read) = std::thread::scope(|s| {
        let reader = s.spawn(|| read_back(map, target, tx, back_rx, stop));
        let hashed = hash_back(rx, back_tx, sums, total, progress);
        let read = reader
            .join()
            .unwrap_or_else(|_| Err(anyhow!("the thread reading the disk back panicked")));
        (hashed, read)
    });
    // A mismatch ends the reader early (its queue is gone): it comes first.
    if let Some(i) = hashed {
        return Err(first_difference(src, map, &map.ranges[i], target)?.into());
    }
    read
}

/// What the read-back thread hands over: a chunk, or the end of range `i`.
enum Read {
    Chunk(Buf),
    End(usize),
}

/// Reads every range of `map` from `target` in `CHUNK`s.
fn read_back(
    map: &Bmap,
    target: &Target,
    tx: SyncSender<Read>,
    back: Receiver<Buf>,
    stop: &AtomicBool,
) -> Result<()> {
    let shown = target.path().display();
    for (i, r) in map.ranges.iter().enumerate() {
        let (start, end) = map.span(r);
        let mut pos = start;
        while pos < end {
            if stop.load(Ordering::Relaxed) {
                bail!("{shown}: verification interrupted");
            }
            let next = end.min((pos / CHUNK + 1) * CHUNK);
            let mut buf = back.try_recv().unwrap_or_else(|_| Buf::new(CHUNK as usize)); // as: 4 MiB fits
            // next - pos <= CHUNK, which fits in usize.
            let bytes = buf.fill((next - pos) as usize);
            target
                .read_at(bytes, pos)
                .with_context(|| format!("{shown}: reading back byte {pos}"))?;
            if tx.send(Read::Chunk(buf)).is_err() {
                return Ok(());
            }
            pos = next;
        }
        if tx.send(Read::End(i)).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// Hashes what `read_back` sends, range by range, against `sums`; returns
/// the first range that differs.
fn hash_back(
    rx: Receiver<Read>,
    back: SyncSender<Buf>,
    sums: &[[u8; 32]],
    total: u64,
    progress: &dyn Fn(u64, u64),
) -> Option<usize> {
    let mut hasher = Sha256::new();
    let mut done = 0;
    for msg in rx {
        match msg {
            Read::Chunk(buf) => {
                hasher.update(buf.bytes());
                done += buf.bytes().len() as u64; // as: usize fits in u64
                progress(done, total);
                let _ = back.try_send(buf);
            }
            Read::End(i) => {
                let got: [u8; 32] = std::mem::take(&mut hasher).finalize().into();
                if sums.get(i) != Some(&got) {
                    return Some(i);
                }
            }
        }
    }
    None
}

/// Compares range `r` of the target with the source, chunk by chunk.
fn first_difference(src: &Source, map: &Bmap, r: &MapRange, target: &Target) -> Result<Mismatch> {
    let (start, end) = map.span(r);
    let mut disk = Buf::new(CHUNK as usize); // as: 4 MiB fits in usize
    let mut image = vec![0u8; CHUNK as usize]; // as: 4 MiB fits in usize
    let mut pos = start;
    let mismatch = |offset| Mismatch {
        target: target.path().display().to_string(),
        offset,
        first_block: r.first,
        last_block: r.last,
    };
    while pos < end {
        let next = end.min((pos / CHUNK + 1) * CHUNK);
        // next - pos <= CHUNK, which fits in usize.
        let n = (next - pos) as usize;
        let d = disk.fill(n);
        target
            .read_at(d, pos)
            .with_context(|| format!("{}: reading back byte {pos}", target.path().display()))?;
        src.bytes
            .read_exact_at(&mut image[..n], pos)
            .with_context(|| format!("{}: reading byte {pos}", src.name))?;
        if let Some(i) = d.iter().zip(&image[..n]).position(|(a, b)| a != b) {
            return Ok(mismatch(pos + i as u64)); // as: usize fits in u64
        }
        pos = next;
    }
    // The bytes agree with the source now, but not with the checksum:
    // the source itself differs from what was written (or the card
    // changed between the reads). Name the range's start.
    Ok(mismatch(start))
}

/// Flushes the target and drops its cached pages, so buffered reads (the
/// file-level check, or a target without `O_DIRECT`) come from the medium.
fn drop_cache(target: &Target) -> Result<()> {
    let f = target.file();
    f.sync_data()
        .with_context(|| format!("{}: flushing", target.path().display()))?;
    if target.is_block_device() {
        // Needs CAP_SYS_ADMIN; fadvise below covers the rest.
        let _ = super::blkdev::flush_buffers(f);
    }
    rustix::fs::fadvise(f, 0, None, rustix::fs::Advice::DontNeed)
        .map_err(std::io::Error::from)
        .with_context(|| format!("{}: dropping its cached pages", target.path().display()))
}

/// The test hook: inverts the 4 KiB block at `$HOMELAB_IMAGE_TEST_CORRUPT_AT`.
fn test_corruption(target: &Target) -> Result<()> {
    let Some(at) = std::env::var_os(CORRUPT_ENV) else {
        return Ok(());
    };
    let at: u64 = at
        .to_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("{CORRUPT_ENV}: not a byte offset"))?;
    let block = at / 4096 * 4096;
    let mut buf = Buf::new(4096);
    let b = buf.fill(4096);
    target.read_at(b, block)?;
    b.iter_mut().for_each(|x| *x = !*x);
    target.write_at(buf.bytes(), block)?;
    tracing::warn!("test hook {CORRUPT_ENV}: inverted the block at byte {block}");
    Ok(())
}

/// Opens the written disk with our readers and checks every expectation
/// (`build::patch::verify`'s rules). Returns how many were checked.
pub fn files(target: &Target, expect: &[Expectation]) -> Result<usize> {
    drop_cache(target)?;
    let shown = target.path().display();
    let disk = Image::open(target.path())?;
    patch::verify_image(&disk, expect)
        .with_context(|| format!("{shown}: the files on the disk differ from the image's"))?;
    Ok(expect.len())
}

/// What the files `build` injected into `image` must hold on the disk: read
/// from the image's manifest and the image itself (each file's bytes
/// checked against the manifest's SHA-256 first). `None` when the image
/// has no manifest (not built by us): there is nothing to compare.
pub fn manifest_expectations(image: &Image) -> Result<Option<Vec<Expectation>>> {
    let shown = image.path().display().to_string();
    // The manifest lives in an ext4 root: an image with none (a firmware
    // recovery card, any other raw image `flash IMAGE DEVICE` takes) has
    // no manifest to compare. A damaged image still fails in `parts`.
    if image.check_filesystems().is_ok()
        && matches!(
            image.layout(),
            Err(crate::disk::layout::LayoutError::NoExt4)
        )
    {
        return Ok(None);
    }
    let parts = patch::parts(image)?;
    let (_, root) = image.filesystem(&parts.root.to_string())?;
    let boot = match parts.boot {
        Some(n) => Some(image.filesystem(&n.to_string())?.1),
        None => None,
    };
    let Some(manifest) = Manifest::read_from(&root, &shown)? else {
        return Ok(None);
    };
    let limit = crate::fs::limits::PARSED_FILE;
    let mut out = Vec::with_capacity(manifest.files.len() + 1);
    let meta_of = |fs: &crate::fs::Filesystem, path: &str| -> Result<Option<(u16, u32, u32)>> {
        let st = fs.stat(path).with_context(|| format!("{shown}: {path}"))?;
        Ok(match st.mode {
            Some(mode) => Some((mode & 0o7777, st.uid.unwrap_or(0), st.gid.unwrap_or(0))),
            None => None,
        })
    };
    let rows = manifest.files.iter().map(|r| {
        (
            r.target.as_str(),
            r.path.as_str(),
            r.kind.as_str(),
            r.sha256.as_deref(),
        )
    });
    for (target, path, kind, sha) in rows.chain([("root", MANIFEST_PATH, "file", None)]) {
        let (t, fs) = match target {
            "root" => (FsTarget::Root, &root),
            "boot" => (
                FsTarget::Boot,
                boot.as_ref().ok_or_else(|| {
                    anyhow!(
                        "{shown}: the manifest names {path} on a boot partition the image lacks"
                    )
                })?,
            ),
            other => bail!("{shown}: {MANIFEST_PATH}: {path}: unknown target {other:?}"),
        };
        let expect = match kind {
            "absent" => Expect::Absent,
            "dir" => {
                let (mode, uid, gid) = meta_of(fs, path)?.unwrap_or((0o755, 0, 0));
                Expect::Dir { mode, uid, gid }
            }
            "symlink" => {
                let st = fs.stat(path).with_context(|| format!("{shown}: {path}"))?;
                if st.kind != EntryKind::Symlink {
                    bail!("{shown}: {path} is not the symlink its manifest names");
                }
                Expect::Symlink {
                    target: st.link_target.unwrap_or_default(),
                }
            }
            // Files, merged account files and edited cmdlines: the image's
            // bytes are what the disk must hold.
            _ => {
                let bytes = fs
                    .read_bounded(path, limit.max(16 << 20))
                    .with_context(|| format!("{shown}: {path}"))?;
                if let Some(sha) = sha
                    && crate::digest::hex(&Sha256::digest(&bytes)) != sha
                {
                    bail!("{shown}: {path} differs from the SHA-256 its manifest records");
                }
                let meta = match t {
                    FsTarget::Root => meta_of(fs, path)?,
                    FsTarget::Boot => None,
                };
                Expect::File { bytes, meta }
            }
        };
        out.push(Expectation {
            target: t,
            path: path.to_string(),
            expect,
        });
    }
    Ok(Some(out))
}

/// Where a `Source` reads `path`: convenience for callers that flash an
/// image file.
pub fn image_source<'a>(path: &Path, file: &'a std::fs::File, len: u64) -> Source<'a> {
    Source {
        name: path.display().to_string(),
        bytes: file,
        len,
    }
}
