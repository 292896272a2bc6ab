//! Copy-on-write over a read-only image: reads see the base file with every
//! write made so far laid on top; writes land in whole 4 KiB pages held in
//! memory and never reach the base. A build patches a node's files into an
//! overlay of the shared base, then streams base + pages into the output
//! once, hashing as it goes (see `build::emit`).

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
    len: u64,
    pages: Mutex<Pages>,
}

impl Overlay {
    /// An overlay of `base`, which is `len` bytes long.
    pub fn new(base: File, len: u64) -> Overlay {
        Overlay {
            base,
            len,
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
        let avail = self.len.saturating_sub(offset);
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
