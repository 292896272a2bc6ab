//! Copy-on-write over a read-only image: reads see the base file with every
//! write made so far laid on top; writes land in whole 4 KiB pages held in
//! memory and never reach the base. A build patches a node's files into an
//! overlay of the shared base, then streams base + pages into the output
//! once, hashing as it goes (see `build::emit`). `cp` and `rm` edit an
//! image the same way and, once the edit has been checked, `commit` the
//! pages into the image file itself.
//!
//! What a commit guarantees: an edit that fails or is refused before the
//! commit leaves the file byte-identical (nothing was written). The
//! commit first reserves the blocks every page needs (`fallocate`, so a
//! sparse image on a full disk fails before the first byte is written),
//! then writes the pages in offset order; if a write still fails, the
//! pages already written are put back from a copy of their old bytes, and
//! then the file is flushed. What it cannot guarantee: a crash or power
//! loss in the middle of writing the pages leaves some written and some
//! not, the same window any in-place write of several blocks has.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::sync::Mutex;

use super::storage::Storage;

/// Bytes per overlay page, aligned to file offsets (the bmap block size).
pub const PAGE: u64 = 4096;

/// The pages written, by page index (offset / PAGE). The last page of an
/// image whose length is not a multiple of PAGE is held whole; bytes past
/// the end are zeros and are never emitted.
pub type Pages = BTreeMap<u64, Box<[u8]>>;

#[derive(Debug)]
pub struct Overlay {
    base: File,
    /// The base's length; reads past it see zeros.
    base_len: u64,
    /// The image's length: the base's, or more for a grown image.
    len: u64,
    pages: Mutex<Pages>,
}

impl Overlay {
    /// An overlay of `base`, which is `len` bytes long.
    pub fn new(base: File, len: u64) -> Overlay {
        Overlay::grown(base, len, len)
    }

    /// An overlay of `base` (`base_len` bytes) as an image of `len` bytes
    /// (at least `base_len`): past the base it reads zeros, and writes
    /// there are pages like any other.
    pub fn grown(base: File, base_len: u64, len: u64) -> Overlay {
        Overlay {
            base,
            base_len,
            len: len.max(base_len),
            pages: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// The read-only file under the overlay.
    pub fn base(&self) -> &File {
        &self.base
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes every page into `dst` — the file under the overlay, opened
    /// for writing — and flushes it; the overlay is left empty. Returns
    /// the number of pages written. See the module comment for what is
    /// guaranteed when this fails.
    pub fn commit(&self, dst: &File) -> Result<usize, CommitError> {
        let pages = self.take_pages();
        reserve(dst, pages.keys().map(|&i| self.span(i)))?;
        self.write_pages(&pages, dst)?;
        Ok(pages.len())
    }

    /// The bytes of the image in page `idx`: (offset, length).
    fn span(&self, idx: u64) -> (u64, u64) {
        let start = idx * PAGE;
        // Pages hold bytes of the image only: start < len.
        (start, PAGE.min(self.len - start))
    }

    /// Writes `pages` into `dst` in offset order and flushes it; when a
    /// write fails, puts back the old bytes of every page written so far.
    fn write_pages(&self, pages: &Pages, dst: &dyn Storage) -> Result<(), CommitError> {
        let mut old = Vec::with_capacity(pages.len());
        for &idx in pages.keys() {
            let (start, n) = self.span(idx);
            let mut buf = vec![0u8; n as usize]; // as: n <= PAGE
            dst.read_exact_at(&mut buf, start)
                .map_err(|e| CommitError::Read {
                    offset: start,
                    cause: e,
                })?;
            old.push(buf);
        }
        for (i, (&idx, page)) in pages.iter().enumerate() {
            let (start, n) = self.span(idx);
            if let Err(e) = dst.write_all_at(&page[..n as usize], start) {
                // Every page up to this one, even if one of them fails.
                let restored = pages
                    .keys()
                    .zip(&old)
                    .take(i + 1)
                    .map(|(&j, bytes)| dst.write_all_at(bytes, self.span(j).0).is_ok())
                    .fold(true, |all, ok| all & ok);
                let undone = restored && dst.sync_all().is_ok();
                return Err(CommitError::Write {
                    offset: start,
                    cause: e,
                    undone,
                });
            }
        }
        dst.sync_all().map_err(CommitError::Sync)
    }

    /// Whether any page of blocks `first..=last` (4 KiB pages, numbered
    /// as blocks) was written.
    pub fn touched(&self, first: u64, last: u64) -> bool {
        self.lock().range(first..=last).next().is_some()
    }

    /// The pages written so far, leaving the overlay empty.
    pub fn take_pages(&self) -> Pages {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pages> {
        // A panic while holding the lock cannot leave a page half-made that
        // matters: the build that panicked is abandoned with its overlay.
        self.pages
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads `buf.len()` bytes of the base at `offset`, zeros past its end.
    fn read_base(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let avail = self.base_len.saturating_sub(offset);
        let n = buf.len().min(usize::try_from(avail).unwrap_or(usize::MAX));
        Storage::read_exact_at(&self.base, &mut buf[..n], offset)?;
        buf[n..].fill(0);
        Ok(())
    }
}

impl Storage for Overlay {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let avail = self.len.saturating_sub(offset);
        let n = buf.len().min(usize::try_from(avail).unwrap_or(usize::MAX));
        if n == 0 {
            return Ok(0);
        }
        let buf = &mut buf[..n];
        let end = offset + n as u64; // as: n is a usize
        // Base bytes first, in one read, then the pages on top.
        self.read_base(buf, offset)?;
        let pages = self.lock();
        for (&idx, page) in pages.range(offset / PAGE..=(end - 1) / PAGE) {
            let p_start = idx * PAGE;
            let from = offset.max(p_start);
            let to = end.min(p_start + PAGE);
            // Both spans are below PAGE or n, so they fit in usize.
            let src = &page[(from - p_start) as usize..(to - p_start) as usize];
            buf[(from - offset) as usize..(to - offset) as usize].copy_from_slice(src);
        }
        Ok(n)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        let end = offset
            .checked_add(buf.len() as u64) // as: usize fits in u64
            .filter(|&e| e <= self.len)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!(
                        "write of {} bytes at offset {offset} runs past the end of the image ({} bytes)",
                        buf.len(),
                        self.len
                    ),
                )
            })?;
        if buf.is_empty() {
            return Ok(0);
        }
        let mut pages = self.lock();
        for idx in offset / PAGE..=(end - 1) / PAGE {
            let p_start = idx * PAGE;
            let page = match pages.entry(idx) {
                std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::btree_map::Entry::Vacant(v) => {
                    let mut fresh = vec![0u8; PAGE as usize].into_boxed_slice();
                    self.read_base(&mut fresh, p_start)?;
                    v.insert(fresh)
                }
            };
            let from = offset.max(p_start);
            let to = end.min(p_start + PAGE);
            page[(from - p_start) as usize..(to - p_start) as usize]
                .copy_from_slice(&buf[(from - offset) as usize..(to - offset) as usize]);
        }
        Ok(buf.len())
    }

    /// Nothing to flush: the overlay lives in memory until it is emitted.
    fn sync_all(&self) -> io::Result<()> {
        Ok(())
    }
}

/// Why a commit failed, and whether the file was left as it was.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("reserving space for the changed blocks: {0}; nothing was written")]
    Reserve(io::Error),
    #[error("reading the old bytes at offset {offset}: {cause}; nothing was written")]
    Read { offset: u64, cause: io::Error },
    #[error(
        "writing at offset {offset}: {cause}; {}",
        if *undone { "the blocks already written were put back" }
        else { "the blocks already written could not all be put back: the image may be damaged" }
    )]
    Write {
        offset: u64,
        cause: io::Error,
        undone: bool,
    },
    #[error("flushing the written blocks to disk: {0}")]
    Sync(io::Error),
}

/// Allocates the blocks of every span (holes of a sparse file included),
/// so running out of space shows before anything is written. Files and
/// filesystems that cannot preallocate (block devices, some network
/// filesystems) are written without it.
fn reserve(dst: &File, spans: impl Iterator<Item = (u64, u64)>) -> Result<(), CommitError> {
    use rustix::fs::{FallocateFlags, fallocate};
    use rustix::io::Errno;
    // Adjacent pages are reserved as one run.
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for (start, n) in spans {
        match runs.last_mut() {
            Some((s, len)) if *s + *len == start => *len += n,
            _ => runs.push((start, n)),
        }
    }
    for (start, len) in runs {
        match fallocate(dst, FallocateFlags::KEEP_SIZE, start, len) {
            Ok(()) => {}
            Err(Errno::OPNOTSUPP | Errno::NOSYS | Errno::NODEV | Errno::INVAL) => return Ok(()),
            Err(e) => return Err(CommitError::Reserve(e.into())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn overlay(data: &[u8]) -> (tempfile::NamedTempFile, Overlay) {
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        tmp.write_all(data).unwrap();
        let f = File::open(tmp.path()).unwrap();
        (tmp, Overlay::new(f, data.len() as u64))
    }

    #[test]
    fn writes_stay_in_memory_and_read_back_over_the_base() {
        let base: Vec<u8> = (0..3 * PAGE + 100).map(|i| (i % 251) as u8).collect();
        let (tmp, o) = overlay(&base);
        // Across a page boundary, and into the short last page.
        o.write_all_at(b"hello", PAGE - 2).unwrap();
        o.write_all_at(b"tail", 3 * PAGE + 96).unwrap();
        let mut want = base.clone();
        want[PAGE as usize - 2..PAGE as usize + 3].copy_from_slice(b"hello");
        want[3 * PAGE as usize + 96..].copy_from_slice(b"tail");
        let mut got = vec![0u8; base.len()];
        o.read_exact_at(&mut got, 0).unwrap();
        assert_eq!(got, want);
        // An unaligned read inside a page.
        let mut mid = [0u8; 7];
        o.read_exact_at(&mut mid, PAGE - 3).unwrap();
        assert_eq!(&mid, &want[PAGE as usize - 3..PAGE as usize + 4]);
        assert_eq!(std::fs::read(tmp.path()).unwrap(), base, "the base changed");
        let pages = o.take_pages();
        assert_eq!(pages.keys().copied().collect::<Vec<_>>(), vec![0, 1, 3]);
        assert!(pages[&3][100..].iter().all(|&b| b == 0));
    }

    /// Storage that fails its `fail_at`-th write (counting from 0).
    #[derive(Debug)]
    struct Flaky {
        inner: crate::io::MemStorage,
        writes: std::sync::atomic::AtomicUsize,
        fail_at: usize,
    }

    impl Storage for Flaky {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            self.inner.read_at(buf, offset)
        }
        fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
            let n = self
                .writes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if n == self.fail_at {
                return Err(io::Error::other("injected"));
            }
            self.inner.write_at(buf, offset)
        }
        fn sync_all(&self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_commit_writes_every_page_and_leaves_the_overlay_empty() {
        let base: Vec<u8> = (0..3 * PAGE + 100).map(|i| (i % 251) as u8).collect();
        let (tmp, o) = overlay(&base);
        o.write_all_at(b"one", 10).unwrap();
        o.write_all_at(b"tail", 3 * PAGE + 90).unwrap();
        let rw = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(tmp.path())
            .unwrap();
        assert_eq!(o.commit(&rw).unwrap(), 2);
        let mut want = base.clone();
        want[10..13].copy_from_slice(b"one");
        want[3 * PAGE as usize + 90..3 * PAGE as usize + 94].copy_from_slice(b"tail");
        assert_eq!(
            std::fs::read(tmp.path()).unwrap(),
            want,
            "length kept, pages laid on"
        );
        assert!(o.take_pages().is_empty());
    }

    #[test]
    fn a_write_failing_mid_commit_puts_back_the_pages_already_written() {
        let base: Vec<u8> = (0..4 * PAGE).map(|i| (i % 13) as u8).collect();
        let (_tmp, o) = overlay(&base);
        for p in 0..4 {
            o.write_all_at(&[0xEE; 8], p * PAGE + 1).unwrap();
        }
        let pages = o.take_pages();
        let dst = Flaky {
            inner: crate::io::MemStorage::new(base.clone()),
            writes: Default::default(),
            fail_at: 2,
        };
        let err = o.write_pages(&pages, &dst).unwrap_err();
        assert!(
            matches!(err, CommitError::Write { undone: true, offset, .. } if offset == 2 * PAGE),
            "{err}"
        );
        assert_eq!(
            dst.inner.bytes(),
            base,
            "the pages written before the failure stayed"
        );
    }

    #[test]
    fn reads_end_at_the_image_end_and_writes_past_it_fail() {
        let (_t, o) = overlay(&[1u8; 10]);
        let mut buf = [0u8; 8];
        assert_eq!(o.read_at(&mut buf, 6).unwrap(), 4);
        assert_eq!(o.read_at(&mut buf, 10).unwrap(), 0);
        let err = o.write_at(b"abc", 8).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WriteZero);
        assert!(o.take_pages().is_empty());
    }
}
