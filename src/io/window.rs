//! A bounded window onto a byte range of an image file: the only way the
//! filesystem layers see a partition. Reads stop at the window's end (like a
//! file's EOF); writes and seeks past it fail instead of touching the bytes of
//! the next partition. All I/O is positional (`pread`/`pwrite`), so several
//! windows can share one file without sharing a cursor.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

use super::storage::Storage;
use super::units::{ByteLen, ByteOffset, ByteRange};

/// Read + Write + Seek over `range` of `file`.
#[derive(Debug, Clone)]
pub struct PartitionWindow {
    file: Arc<dyn Storage>,
    range: ByteRange,
    /// Cursor relative to the window's start; may sit at `len` (EOF).
    pos: u64,
}

impl PartitionWindow {
    pub fn new(file: Arc<dyn Storage>, range: ByteRange) -> Self {
        PartitionWindow {
            file,
            range,
            pos: 0,
        }
    }

    pub fn len(&self) -> ByteLen {
        self.range.len()
    }

    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }

    pub fn start(&self) -> ByteOffset {
        self.range.start()
    }

    /// Reads exactly `dst.len()` bytes at `offset` within the window.
    pub fn read_exact_at(&self, offset: u64, dst: &mut [u8]) -> io::Result<()> {
        let abs = self.absolute(offset, dst.len())?;
        self.file.read_exact_at(dst, abs)
    }

    /// Writes all of `src` at `offset` within the window.
    pub fn write_all_at(&self, offset: u64, src: &[u8]) -> io::Result<()> {
        let abs = self.absolute(offset, src.len())?;
        self.file.write_all_at(src, abs)
    }

    /// Absolute file offset of `[offset, offset + n)`, or an error when that
    /// span leaves the window.
    fn absolute(&self, offset: u64, n: usize) -> io::Result<u64> {
        let n = n as u64; // as: usize always fits in u64 on supported targets
        match offset.checked_add(n) {
            Some(end) if end <= self.range.len().0 => Ok(self.range.start().0 + offset),
            _ => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "access of {n} bytes at offset {offset} runs past the end of the \
                     partition ({} bytes)",
                    self.range.len().0
                ),
            )),
        }
    }

    /// Bytes left between the cursor and the end of the window.
    fn remaining(&self) -> u64 {
        self.range.len().0.saturating_sub(self.pos)
    }
}

impl Read for PartitionWindow {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf
            .len()
            .min(usize::try_from(self.remaining()).unwrap_or(usize::MAX));
        if n == 0 {
            return Ok(0);
        }
        let got = self
            .file
            .read_at(&mut buf[..n], self.range.start().0 + self.pos)?;
        self.pos += got as u64; // as: got <= n, a usize
        Ok(got)
    }
}

impl Write for PartitionWindow {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.remaining() < buf.len() as u64 {
            // as: usize fits in u64
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!(
                    "write of {} bytes at offset {} would run past the end of the \
                     partition ({} bytes)",
                    buf.len(),
                    self.pos,
                    self.range.len().0
                ),
            ));
        }
        let put = self.file.write_at(buf, self.range.start().0 + self.pos)?;
        self.pos += put as u64; // as: put <= buf.len()
        Ok(put)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for PartitionWindow {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let len = self.range.len().0;
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match target {
            Some(t) if t <= len => {
                self.pos = t;
                Ok(t)
            }
            _ => {
                let whence = match to {
                    SeekFrom::Start(n) => format!("byte {n}"),
                    SeekFrom::End(d) => format!("{d} bytes from its end"),
                    SeekFrom::Current(d) => format!("{d} bytes from byte {}", self.pos),
                };
                Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("seek to {whence} leaves the partition ({len} bytes)"),
                ))
            }
        }
    }
}

/// Positional reads for ext4-view, which addresses the filesystem by byte.
impl ext4_view::Ext4Read for PartitionWindow {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        self.read_exact_at(start_byte, dst).map_err(Box::new)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(data: &[u8], start: u64, len: u64) -> (tempfile::NamedTempFile, PartitionWindow) {
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        tmp.write_all(data).unwrap();
        let file: Arc<dyn Storage> = Arc::new(tmp.reopen().unwrap());
        let range = ByteRange::new(ByteOffset(start), ByteLen(len)).unwrap();
        (tmp, PartitionWindow::new(file, range))
    }

    #[test]
    fn reads_stop_at_the_window_end() {
        let (_t, mut w) = window(b"0123456789", 2, 5);
        let mut s = String::new();
        w.read_to_string(&mut s).unwrap();
        assert_eq!(s, "23456");
    }

    #[test]
    fn writes_past_the_end_fail_and_change_nothing() {
        let (t, mut w) = window(b"0123456789", 2, 5);
        w.seek(SeekFrom::Start(3)).unwrap();
        let err = w.write(b"abc").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WriteZero);
        assert!(w.write_all_at(4, b"xy").is_err());
        w.write_all(b"ab").unwrap();
        assert_eq!(std::fs::read(t.path()).unwrap(), b"01234ab789");
    }

    #[test]
    fn seeks_outside_the_window_fail() {
        let (_t, mut w) = window(b"0123456789", 2, 5);
        let e = w.seek(SeekFrom::Start(6)).unwrap_err().to_string();
        assert_eq!(e, "seek to byte 6 leaves the partition (5 bytes)");
        assert!(w.seek(SeekFrom::Current(-1)).is_err());
        assert_eq!(w.seek(SeekFrom::End(-1)).unwrap(), 4);
        let mut b = [0u8; 1];
        w.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"6");
    }

    #[test]
    fn positional_reads_are_bounded() {
        let (_t, w) = window(b"0123456789", 2, 5);
        let mut b = [0u8; 3];
        w.read_exact_at(2, &mut b).unwrap();
        assert_eq!(&b, b"456");
        assert!(w.read_exact_at(3, &mut b).is_err());
        assert!(w.read_exact_at(u64::MAX, &mut b).is_err());
    }
}
