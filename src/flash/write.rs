//! Writing an image onto a disk (or a file) by its block map, so that a
//! failure cannot leave a disk that half-boots.
//!
//! The order: refuse a target smaller than the image before touching it;
//! zero the first MiB (so the old partition table no longer points into
//! blocks about to change) and the disk's last MiB past the image (a stale
//! GPT backup header of the card's previous life); write every mapped range
//! except the image's first and last MiB — the partition table, the GPT
//! backup header — in offset order; flush; then write the held-back last
//! MiB, then the first, and flush again. On any error or a stop request
//! (Ctrl-C) the first MiB, the image's last MiB and the disk's last MiB are
//! zeroed, so neither the kernel nor a bootloader finds a partition table,
//! and the error says so. Finally `BLKRRPART` so the kernel sees the new
//! partitions.
//!
//! The source is any [`Storage`] — an image file, or (for "build straight
//! to the card") a build's overlay of base + patched pages — read at the
//! map's ranges. A reader thread reads and hashes the ranges (checking
//! each against the map's SHA-256 while copying, as bmaptool does) and
//! hands 4 MiB chunks to the writer. Writes go through `O_DIRECT` with
//! aligned buffers when the target allows it, so a chunk counts as done
//! when the disk has it and progress is honest; otherwise (a file on tmpfs)
//! buffered, flushed every 32 MiB so dirty memory stays bounded.

use std::fs::File;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use rustix::fs::{Mode, OFlags};
use sha2::{Digest, Sha256};

use super::blkdev;
use super::bmap_read::Bmap;
use crate::io::Storage;
use crate::io::units::human_size;

/// The head of the disk written last: the MBR or protective MBR, the
/// primary GPT, and whatever a layout keeps before its first partition.
pub const HEAD: u64 = 1 << 20;
/// The image's tail written last and wiped on failure: the GPT backup
/// header and entries live in its last sectors.
pub const TAIL: u64 = 1 << 20;
/// Bytes per write.
pub const CHUNK: u64 = 4 << 20;
/// Buffer alignment for `O_DIRECT` (covers 512 and 4096-byte sectors).
const ALIGN: usize = 4096;
/// Without `O_DIRECT`, flush after this many bytes (bounded dirty memory).
const WRITE_BEHIND: u64 = 32 << 20;
/// Chunks in flight between the reader and the writer.
const QUEUE: usize = 2;

/// What to write: `len` bytes readable from `bytes`; `name` says what it
/// is in messages (the image path, or "node pi1").
pub struct Source<'a> {
    pub name: String,
    pub bytes: &'a dyn Storage,
    pub len: u64,
}

/// An opened disk or file to write to.
#[derive(Debug)]
pub struct Target {
    path: PathBuf,
    file: File,
    len: u64,
    block: bool,
    /// `O_DIRECT` is set on `file`.
    direct: bool,
    /// The logical sector size `O_DIRECT` transfers must be aligned to.
    sector: u64,
}

impl Target {
    /// Opens `path` for writing: a block device exclusively (`O_EXCL`: the
    /// kernel refuses one that is mounted or otherwise in use), a regular
    /// file created when missing.
    pub fn open(path: &Path) -> Result<Target> {
        let shown = path.display();
        let meta = std::fs::metadata(path);
        // A mistyped disk name must not become a file in /dev (a tmpfs in
        // RAM) holding the whole image.
        if meta.is_err() && path.starts_with("/dev") {
            bail!("{shown}: no such disk");
        }
        let block = meta
            .map(|m| m.file_type().is_block_device())
            .unwrap_or(false);
        let mut flags = OFlags::RDWR | OFlags::CLOEXEC;
        flags |= if block { OFlags::EXCL } else { OFlags::CREATE };
        let fd = rustix::fs::open(path, flags, Mode::from_raw_mode(0o644)).map_err(|e| {
            let e = std::io::Error::from(e);
            match e.raw_os_error() {
                Some(16) => anyhow!("{shown}: in use (mounted, or held by another program): {e}"),
                Some(13) | Some(1) => anyhow!(
                    "{shown}: cannot open for writing: {e}; writing a disk needs root or \
                     membership of the `disk` group"
                ),
                _ => anyhow!("{shown}: cannot open for writing: {e}"),
            }
        })?;
        Target::from_file(File::from(fd), path)
    }

    /// Wraps a disk or file already opened read-write (by the safety
    /// rules, which open with `O_EXCL` and re-check after opening).
    pub fn from_file(file: File, path: &Path) -> Result<Target> {
        let shown = path.display();
        let meta = file
            .metadata()
            .with_context(|| format!("{shown}: reading its type"))?;
        let block = meta.file_type().is_block_device();
        let len = if block {
            use std::io::{Seek, SeekFrom};
            let mut f = &file;
            f.seek(SeekFrom::End(0))
                .with_context(|| format!("{shown}: reading its size"))?
        } else {
            meta.len()
        };
        let sector = if block {
            u64::from(rustix::fs::ioctl_blksszget(&file).unwrap_or(512))
        } else {
            512
        };
        let mut t = Target {
            path: path.to_path_buf(),
            file,
            len,
            block,
            direct: false,
            sector,
        };
        t.direct = t.set_direct(true).is_ok();
        Ok(t)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `other` is the target itself (the image named as its own
    /// target would be zeroed before it is read).
    pub fn is_same_file(&self, other: &File) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (self.file.metadata(), other.metadata()) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }

    /// Size in bytes (a file's current length).
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_block_device(&self) -> bool {
        self.block
    }

    /// Whether reads and writes bypass the page cache.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    pub(super) fn file(&self) -> &File {
        &self.file
    }

    fn set_direct(&self, on: bool) -> std::io::Result<()> {
        let flags = rustix::fs::fcntl_getfl(&self.file)?;
        let flags = if on {
            flags | OFlags::DIRECT
        } else {
            flags - OFlags::DIRECT
        };
        rustix::fs::fcntl_setfl(&self.file, flags).map_err(Into::into)
    }

    /// Whether an `O_DIRECT` transfer of `buf` at `offset` is aligned.
    fn aligned(&self, buf: &[u8], offset: u64) -> bool {
        let n = buf.len() as u64; // as: a usize fits in u64
        self.direct
            && offset.is_multiple_of(self.sector)
            && n.is_multiple_of(self.sector)
            && buf.as_ptr().align_offset(ALIGN) == 0
    }

    /// Writes all of `buf` at `offset`, directly when aligned, else through
    /// the page cache (then flushed, so the data is on the medium before
    /// the next direct write).
    pub(super) fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        if self.aligned(buf, offset) || !self.direct {
            return FileExt::write_all_at(&self.file, buf, offset);
        }
        self.set_direct(false)?;
        let r = FileExt::write_all_at(&self.file, buf, offset).and_then(|()| self.file.sync_data());
        self.set_direct(true)?;
        r
    }

    /// Reads all of `buf` at `offset`, directly when aligned.
    pub(super) fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        if self.aligned(buf, offset) || !self.direct {
            return FileExt::read_exact_at(&self.file, buf, offset);
        }
        self.set_direct(false)?;
        let r = FileExt::read_exact_at(&self.file, buf, offset);
        self.set_direct(true)?;
        r
    }

    fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .with_context(|| format!("{}: flushing", self.path.display()))
    }

    /// `BLKRRPART`, so the kernel reads the new partition table.
    fn reread(&self) -> Reread {
        if !self.block {
            return Reread::NotADisk;
        }
        match blkdev::reread_partitions(&self.file) {
            Ok(()) => Reread::Done,
            // A loop device attached without partition scanning.
            Err(e) if e.raw_os_error() == Some(22) => Reread::NotSupported,
            Err(e) if e.raw_os_error() == Some(25) => Reread::NotADisk,
            Err(e) => Reread::Failed(e.to_string()),
        }
    }
}

/// A buffer whose bytes start on an `ALIGN` boundary, for `O_DIRECT`.
pub(super) struct Buf {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl Buf {
    pub(super) fn new(cap: usize) -> Buf {
        let raw = vec![0u8; cap + ALIGN];
        // For u8 at run time align_offset is exact and below ALIGN; if it
        // ever were not, 0 keeps the buffer usable and `aligned` falls
        // back to buffered I/O.
        let start = match raw.as_ptr().align_offset(ALIGN) {
            s if s < ALIGN => s,
            _ => 0,
        };
        Buf { raw, start, len: 0 }
    }

    pub(super) fn cap(&self) -> usize {
        self.raw.len() - ALIGN
    }

    /// The first `len` bytes (at most the capacity), for filling.
    pub(super) fn fill(&mut self, len: usize) -> &mut [u8] {
        self.len = len.min(self.cap());
        &mut self.raw[self.start..self.start + self.len]
    }

    pub(super) fn bytes(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }
}

/// Whether the kernel re-read the partition table after the write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reread {
    Done,
    /// A regular file: nothing to re-read.
    NotADisk,
    /// A loop device without partition scanning (`losetup -P` enables it).
    NotSupported,
    /// It refused (e.g. EBUSY: a partition is in use); replug the disk.
    Failed(String),
}

/// What a successful write did.
#[derive(Debug, Clone)]
pub struct Written {
    /// Bytes of the image written (its mapped ranges).
    pub mapped_bytes: u64,
    /// SHA-256 of each range of the map as read from the source (equal to
    /// the map's own checksums where it has them), for the read-back.
    pub sums: Vec<[u8; 32]>,
    pub seconds: f64,
    pub reread: Reread,
}

/// One chunk of the source on its way to the target.
struct Chunk {
    offset: u64,
    buf: Buf,
}

/// Writes `src` onto `target` by `map` (see the module comment for the
/// order and what a failure leaves). `progress(done, total)` is called
/// with bytes of mapped data on the medium; `stop` ends the write (as an
/// error, with the partition table wiped).
pub fn flash(
    src: &Source,
    map: &Bmap,
    target: &mut Target,
    progress: &dyn Fn(u64, u64),
    stop: &AtomicBool,
) -> Result<Written> {
    let t0 = Instant::now();
    let shown = target.path.display().to_string();
    if map.image_size != src.len {
        bail!(
            "{}: the block map is for an image of {} bytes, but it is {} bytes",
            src.name,
            map.image_size,
            src.len
        );
    }
    if target.block && target.len < src.len {
        bail!(
            "{shown}: the disk holds {} ({} bytes), less than the image {} ({} bytes); \
             nothing was written",
            human_size(target.len),
            target.len,
            src.name,
            src.len
        );
    }
    if !target.block && target.len < src.len {
        target
            .file
            .set_len(src.len)
            .with_context(|| format!("{shown}: growing the file to {} bytes", src.len))?;
        target.len = src.len;
    }
    let result = write_all(src, map, target, progress, stop);
    match result {
        Ok(sums) => {
            let reread = target.reread();
            Ok(Written {
                mapped_bytes: map.mapped_bytes(),
                sums,
                seconds: t0.elapsed().as_secs_f64(),
                reread,
            })
        }
        Err(e) => {
            let wiped = wipe(target, src.len);
            let _ = target.reread();
            Err(match wiped {
                Ok(()) => e.context(format!(
                    "writing {} to {shown} failed; its partition table was wiped, so the \
                     half-written disk will not boot",
                    src.name
                )),
                Err(w) => e.context(format!(
                    "writing {} to {shown} failed, and wiping its partition table failed \
                     too ({w:#}): do not boot from this disk",
                    src.name
                )),
            })
        }
    }
}

/// The byte spans the write holds back: the head, and the image's tail.
fn held(offset: u64, len: u64) -> bool {
    offset < HEAD || offset >= len.saturating_sub(TAIL)
}

/// Zeroes the first MiB, the image's last MiB and the disk's last MiB,
/// then flushes.
pub fn wipe(target: &Target, image_len: u64) -> Result<()> {
    let len = target.len;
    let head = (0, HEAD.min(len));
    let image_tail = (image_len.min(len).saturating_sub(TAIL), image_len.min(len));
    let disk_tail = (len.saturating_sub(TAIL), len);
    // Each span on its own: a tail that cannot be written (the card died
    // there) must not keep the head from being zeroed and flushed.
    let mut first_error = None;
    for span in [head, image_tail, disk_tail] {
        if let Err(e) = zero(target, &[span]) {
            first_error.get_or_insert(e);
        }
    }
    let synced = target.sync();
    match first_error {
        Some(e) => Err(e),
        None => synced,
    }
}

/// Writes zeros over each span `[start, end)`.
fn zero(target: &Target, spans: &[(u64, u64)]) -> Result<()> {
    let mut buf = Buf::new(HEAD as usize); // as: 1 MiB fits in usize
    let zeros = buf.fill(HEAD as usize).len();
    for &(start, end) in spans {
        let mut pos = start;
        while pos < end {
            let n = (end - pos).min(zeros as u64); // as: usize fits in u64
            // n <= zeros, a usize.
            buf.fill(n as usize);
            target
                .write_at(buf.bytes(), pos)
                .with_context(|| format!("{}: zeroing byte {pos}", target.path.display()))?;
            pos += n;
        }
    }
    Ok(())
}

/// Everything between the checks and the re-read: wipe the old table,
/// write the ranges, then the held-back head and tail.
fn write_all(
    src: &Source,
    map: &Bmap,
    target: &Target,
    progress: &dyn Fn(u64, u64),
    stop: &AtomicBool,
) -> Result<Vec<[u8; 32]>> {
    let shown = target.path.display().to_string();
    let total = map.mapped_bytes();
    // The old table goes first, and a stale GPT backup past the image.
    let past_image = (src.len.max(target.len.saturating_sub(TAIL)), target.len);
    zero(target, &[(0, HEAD.min(target.len)), past_image])?;
    target.sync()?;
    progress(0, total);

    let (tx, rx) = sync_channel::<Chunk>(QUEUE);
    let (back_tx, back_rx) = sync_channel::<Buf>(QUEUE + 2);
    let (written, read) = std::thread::scope(|s| {
        let reader = s.spawn(|| read_ranges(src, map, tx, back_rx, stop));
        let written = write_chunks(target, src.len, rx, back_tx, total, progress, stop);
        let read = reader
            .join()
            .unwrap_or_else(|_| Err(anyhow!("the thread reading the image panicked")));
        (written, read)
    });
    // A failed write ends the reader too (its queue is gone): the write's
    // error is the one to report.
    let (mut done, mut hold) = written?;
    let sums = read?.ok_or_else(|| anyhow!("{shown}: the writer stopped early"))?;
    target.sync()?;
    // Tail first, the partition table last.
    hold.sort_by_key(|c| (c.offset < HEAD, c.offset));
    for c in &hold {
        check_stop(stop)?;
        target
            .write_at(c.buf.bytes(), c.offset)
            .with_context(|| format!("{shown}: writing at byte {}", c.offset))?;
        done += c.buf.bytes().len() as u64; // as: usize fits in u64
    }
    target.sync()?;
    progress(done, total);
    Ok(sums)
}

fn check_stop(stop: &AtomicBool) -> Result<()> {
    if stop.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

/// The writer's side: writes each chunk not held back, returns its buffer,
/// keeps copies of the held-back ones. Returns the bytes written and the
/// chunks held back.
fn write_chunks(
    target: &Target,
    image_len: u64,
    rx: Receiver<Chunk>,
    back: SyncSender<Buf>,
    total: u64,
    progress: &dyn Fn(u64, u64),
    stop: &AtomicBool,
) -> Result<(u64, Vec<Chunk>)> {
    let mut hold = Vec::new();
    let mut done = 0u64;
    let mut unsynced = 0u64;
    for chunk in rx {
        check_stop(stop)?;
        let bytes = chunk.buf.bytes();
        let n = bytes.len() as u64; // as: usize fits in u64
        if held(chunk.offset, image_len) {
            hold.push(keep(&chunk));
            let _ = back.try_send(chunk.buf);
            continue;
        }
        target.write_at(bytes, chunk.offset).with_context(|| {
            format!(
                "{}: writing {} at byte {}",
                target.path.display(),
                human_size(n),
                chunk.offset
            )
        })?;
        done += n;
        unsynced += n;
        if !target.direct && unsynced >= WRITE_BEHIND {
            target.sync()?;
            unsynced = 0;
        }
        progress(done, total);
        let _ = back.try_send(chunk.buf);
    }
    Ok((done, hold))
}

/// A copy of `chunk`, kept to be written at the end.
fn keep(chunk: &Chunk) -> Chunk {
    let bytes = chunk.buf.bytes();
    let mut copy = Buf::new(bytes.len());
    copy.fill(bytes.len()).copy_from_slice(bytes);
    Chunk {
        offset: chunk.offset,
        buf: copy,
    }
}

/// The reader's side: reads each range in chunks cut on the `CHUNK` grid
/// and at the held-back boundaries, hashes it, checks the hash against the
/// map's, and sends the chunks on. Returns the ranges' hashes, or `None`
/// when the writer hung up (it reports why).
fn read_ranges(
    src: &Source,
    map: &Bmap,
    tx: SyncSender<Chunk>,
    back: Receiver<Buf>,
    stop: &AtomicBool,
) -> Result<Option<Vec<[u8; 32]>>> {
    let len = src.len;
    let cuts = [HEAD, len.saturating_sub(TAIL)];
    let mut sums = Vec::with_capacity(map.ranges.len());
    for r in &map.ranges {
        let (start, end) = map.span(r);
        let mut hasher = Sha256::new();
        let mut pos = start;
        while pos < end {
            check_stop(stop)?;
            let mut next = end.min((pos / CHUNK + 1) * CHUNK);
            for c in cuts {
                if pos < c && c < next {
                    next = c;
                }
            }
            let mut buf = back.try_recv().unwrap_or_else(|_| Buf::new(CHUNK as usize)); // as: 4 MiB fits
            // next - pos <= CHUNK, which fits in usize.
            let bytes = buf.fill((next - pos) as usize);
            src.bytes.read_exact_at(bytes, pos).with_context(|| {
                format!("{}: reading {} bytes at byte {pos}", src.name, next - pos)
            })?;
            hasher.update(&*bytes);
            if tx.send(Chunk { offset: pos, buf }).is_err() {
                return Ok(None);
            }
            pos = next;
        }
        let sum: [u8; 32] = hasher.finalize().into();
        if let Some(want) = r.sha256
            && want != sum
        {
            bail!(
                "{}: blocks {}-{} do not match the block map's checksum: the image or its \
                 .bmap changed since the map was made",
                src.name,
                r.first,
                r.last
            );
        }
        sums.push(sum);
    }
    Ok(Some(sums))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flash::bmap_read::MapRange;
    use crate::io::MemStorage;

    const LEN: u64 = 12 << 20;

    /// An image of `LEN` bytes, each byte its offset's low bits plus one
    /// (never 0xA5 at a block start, never zero throughout).
    fn image() -> MemStorage {
        MemStorage::new((0..LEN).map(|i| (i % 251) as u8 + 1).collect())
    }

    fn map(ranges: &[(u64, u64)]) -> Bmap {
        Bmap {
            image_size: LEN,
            block_size: 4096,
            ranges: ranges
                .iter()
                .map(|&(first, last)| MapRange {
                    first,
                    last,
                    sha256: None,
                })
                .collect(),
        }
    }

    fn dirty_target(dir: &Path) -> (PathBuf, Target) {
        let path = dir.join("card");
        std::fs::write(&path, vec![0xA5u8; LEN as usize]).unwrap();
        let t = Target::open(&path).unwrap();
        (path, t)
    }

    #[test]
    fn only_mapped_ranges_are_written_and_the_rest_keeps_its_old_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut target) = dirty_target(dir.path());
        let img = image();
        let src = Source {
            name: "img".into(),
            bytes: &img,
            len: LEN,
        };
        // The head, a run crossing a 4 MiB chunk boundary, the tail.
        let m = map(&[(0, 3), (1000, 1100), (3070, 3071)]);
        let seen = std::sync::Mutex::new(Vec::new());
        let w = flash(
            &src,
            &m,
            &mut target,
            &|done, total| seen.lock().unwrap().push((done, total)),
            &AtomicBool::new(false),
        )
        .unwrap();
        assert_eq!(w.mapped_bytes, (4 + 101 + 2) * 4096);
        assert_eq!(w.sums.len(), 3);
        assert_eq!(w.reread, Reread::NotADisk);
        let got = std::fs::read(&path).unwrap();
        let want = img.bytes();
        for r in &m.ranges {
            let (a, b) = m.span(r);
            assert!(got[a as usize..b as usize] == want[a as usize..b as usize]);
        }
        // The old partition table's MiB was zeroed first; past it, unmapped
        // blocks keep the card's old bytes.
        assert!(got[4 * 4096..HEAD as usize].iter().all(|&b| b == 0));
        assert!(got[HEAD as usize..1000 * 4096].iter().all(|&b| b == 0xA5));
        assert!(got[1101 * 4096..3070 * 4096].iter().all(|&b| b == 0xA5));
        let seen = seen.into_inner().unwrap();
        assert_eq!(seen.last(), Some(&(w.mapped_bytes, w.mapped_bytes)));
        // Progress never goes back.
        assert!(seen.windows(2).all(|p| p[0].0 <= p[1].0));
    }

    /// A source that fails at one offset, as a dying USB reader would.
    #[derive(Debug)]
    struct FailsAt(MemStorage, u64);

    impl Storage for FailsAt {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
            if offset >= self.1 {
                return Err(std::io::Error::other("unreadable sector"));
            }
            self.0.read_at(buf, offset)
        }
        fn write_at(&self, _: &[u8], _: u64) -> std::io::Result<usize> {
            unreachable!()
        }
        fn sync_all(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_missing_disk_under_dev_is_not_created_as_a_file() {
        let e = Target::open(Path::new("/dev/homelab-image-no-such-disk")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/dev/homelab-image-no-such-disk: no such disk"
        );
        assert!(!Path::new("/dev/homelab-image-no-such-disk").exists());
    }

    #[test]
    fn a_failed_read_wipes_the_head_and_the_tail_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut target) = dirty_target(dir.path());
        let img = FailsAt(image(), 8 << 20);
        let src = Source {
            name: "img".into(),
            bytes: &img,
            len: LEN,
        };
        let m = map(&[(0, 3071)]);
        let e = flash(&src, &m, &mut target, &|_, _| {}, &AtomicBool::new(false)).unwrap_err();
        let text = format!("{e:#}");
        assert!(text.contains("partition table was wiped"), "{text}");
        assert!(text.contains("img: reading"), "{text}");
        assert!(text.contains("at byte 8388608"), "{text}");
        let got = std::fs::read(&path).unwrap();
        assert!(got[..HEAD as usize].iter().all(|&b| b == 0));
        assert!(got[(LEN - TAIL) as usize..].iter().all(|&b| b == 0));
        // What was written before the failure is still there.
        assert_eq!(got[(4 << 20) + 5], image().bytes()[(4 << 20) + 5]);
    }

    #[test]
    fn a_range_that_differs_from_its_checksum_fails_the_write() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut target) = dirty_target(dir.path());
        let img = image();
        let src = Source {
            name: "img".into(),
            bytes: &img,
            len: LEN,
        };
        let mut m = map(&[(0, 3), (1000, 1001)]);
        m.ranges[1].sha256 = Some([0; 32]);
        let e = flash(&src, &m, &mut target, &|_, _| {}, &AtomicBool::new(false)).unwrap_err();
        let text = format!("{e:#}");
        assert!(text.contains("blocks 1000-1001 do not match"), "{text}");
        let got = std::fs::read(&path).unwrap();
        assert!(got[..HEAD as usize].iter().all(|&b| b == 0));
    }
}
