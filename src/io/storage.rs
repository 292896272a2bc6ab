//! What a partition window reads and writes through: an image file, or an
//! [`Overlay`](super::overlay::Overlay) that keeps every write in memory over
//! a read-only base so a build can patch an image before copying it.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Positional I/O on an image's bytes, shared between windows.
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// Reads up to `buf.len()` bytes at `offset`; 0 at the end.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// Writes up to `buf.len()` bytes at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize>;

    /// Makes earlier writes durable.
    fn sync_all(&self) -> io::Result<()>;

    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "failed to fill whole buffer",
                    ));
                }
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64; // as: n <= buf.len(), a usize
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn write_all_at(&self, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write_at(buf, offset) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "failed to write whole buffer",
                    ));
                }
                Ok(n) => {
                    buf = &buf[n..];
                    offset += n as u64; // as: n <= buf.len(), a usize
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Storage for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        FileExt::write_at(self, buf, offset)
    }

    fn sync_all(&self) -> io::Result<()> {
        File::sync_all(self)
    }
}

/// An image held in memory (tests and fuzzing): reads and writes stay
/// inside its length, like a file that cannot grow.
#[derive(Debug)]
pub struct MemStorage(std::sync::Mutex<Vec<u8>>);

impl MemStorage {
    pub fn new(bytes: Vec<u8>) -> MemStorage {
        MemStorage(std::sync::Mutex::new(bytes))
    }

    /// A copy of the bytes as they are now.
    pub fn bytes(&self) -> Vec<u8> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        // A panic mid-copy leaves bytes that a fuzz run or test discards.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The span of `n` bytes at `offset` that lies inside `len`.
    fn span(len: usize, offset: u64, n: usize) -> std::ops::Range<usize> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(len);
        start..start.saturating_add(n).min(len)
    }
}

impl Storage for MemStorage {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let data = self.lock();
        let r = MemStorage::span(data.len(), offset, buf.len());
        let n = r.len();
        buf[..n].copy_from_slice(&data[r]);
        Ok(n)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        let mut data = self.lock();
        let r = MemStorage::span(data.len(), offset, buf.len());
        let n = r.len();
        data[r].copy_from_slice(&buf[..n]);
        Ok(n)
    }

    fn sync_all(&self) -> io::Result<()> {
        Ok(())
    }
}

impl super::ReadAt for dyn Storage {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        Storage::read_exact_at(self, buf, offset)
    }
}
