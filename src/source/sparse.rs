//! `SparseWriter`: writes a decompressed image into a regular file, leaving
//! every all-zero 4 KiB block as a hole, and hashes every byte (holes
//! included) so the image's SHA-256 is known when the last byte lands.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use super::len64;
use crate::digest::{Hasher, Sha256};

/// Holes are made at this granularity (the page and ext4 block size).
const BLOCK: usize = 4096;
/// Bytes gathered before they are scanned, hashed and written.
const CHUNK: usize = 1 << 20;

pub struct SparseWriter {
    file: File,
    buf: Vec<u8>,
    /// Bytes held in `buf`.
    filled: usize,
    /// File offset of `buf[0]`; always a multiple of `CHUNK`.
    offset: u64,
    hasher: Hasher,
    /// Bytes actually written (not holes), for reporting.
    data_bytes: u64,
}

/// Which side of a copy failed.
#[derive(Debug)]
pub enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// What was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SparseSummary {
    pub sha256: Sha256,
    pub size: u64,
    pub data_bytes: u64,
}

impl SparseWriter {
    /// Writes from offset 0 of `file`, which should be empty.
    pub fn new(file: File) -> Self {
        Self {
            file,
            buf: vec![0; CHUNK],
            filled: 0,
            offset: 0,
            hasher: Hasher::default(),
            data_bytes: 0,
        }
    }

    /// Bytes accepted so far.
    pub fn position(&self) -> u64 {
        self.offset + len64(self.filled)
    }

    /// Reads `src` to its end, straight into the chunk buffer.
    /// `on_progress` sees the running total after each read.
    pub fn copy_from(
        &mut self,
        src: &mut impl Read,
        on_progress: &mut impl FnMut(u64),
    ) -> Result<(), CopyError> {
        loop {
            let n = match src.read(&mut self.buf[self.filled..]) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CopyError::Read(e)),
            };
            self.filled += n;
            if self.filled == CHUNK {
                self.flush_chunk().map_err(CopyError::Write)?;
            }
            on_progress(self.position());
        }
    }

    /// Writes the last partial chunk, sets the file length (a trailing hole
    /// still counts), syncs the data, and returns the digest.
    pub fn finish(mut self) -> io::Result<(File, SparseSummary)> {
        self.flush_chunk()?;
        let size = self.offset;
        self.file.set_len(size)?;
        self.file.sync_all()?;
        let summary = SparseSummary {
            sha256: self.hasher.finish(),
            size,
            data_bytes: self.data_bytes,
        };
        Ok((self.file, summary))
    }

    fn flush_chunk(&mut self) -> io::Result<()> {
        let data = &self.buf[..self.filled];
        self.hasher.update(data);
        // Write each run of non-zero blocks with one call.
        let mut run_start: Option<usize> = None;
        for (i, block) in data.chunks(BLOCK).enumerate() {
            let at = i * BLOCK;
            match (is_zero(block), run_start) {
                (false, None) => run_start = Some(at),
                (true, Some(start)) => {
                    self.data_bytes += write_run(&self.file, data, start, at, self.offset)?;
                    run_start = None;
                }
                _ => {}
            }
        }
        if let Some(start) = run_start {
            self.data_bytes += write_run(&self.file, data, start, data.len(), self.offset)?;
        }
        self.offset += len64(self.filled);
        self.filled = 0;
        Ok(())
    }
}

/// Writes `data[start..end]` at its place in the file; returns its length.
fn write_run(file: &File, data: &[u8], start: usize, end: usize, offset: u64) -> io::Result<u64> {
    file.write_all_at(&data[start..end], offset + len64(start))?;
    Ok(len64(end - start))
}

/// Whether every byte of `block` is zero. Real images are mostly data or
/// mostly zeros, so test a few bytes first, then whole 64-byte lanes that
/// the compiler can vectorise.
fn is_zero(block: &[u8]) -> bool {
    if block.iter().take(16).any(|&b| b != 0) {
        return false;
    }
    block
        .chunks(64)
        .all(|lane| lane.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn zero_blocks_become_holes_and_the_hash_covers_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.img");
        let mut data = vec![0u8; 3 * CHUNK + 5000];
        data[10] = 1; // first block has data
        data[CHUNK + 8192..CHUNK + 8192 + 100].fill(7);
        let n = data.len();
        data[n - 1] = 9; // the partial tail block has data
        let mut w = SparseWriter::new(File::create(&path).unwrap());
        // Odd read sizes: the writer must still align holes to the file.
        let mut src = Chunky(&data[..], 777_777);
        w.copy_from(&mut src, &mut |_| {}).unwrap();
        let (_, s) = w.finish().unwrap();
        assert_eq!(s.size, len64(n));
        assert_eq!(s.sha256, Sha256::of(&data));
        assert_eq!(s.data_bytes, 2 * len64(BLOCK) + 904);
        assert_eq!(std::fs::read(&path).unwrap(), data);
        let allocated = std::fs::metadata(&path).unwrap().blocks() * 512;
        assert!(allocated < 64 * 1024, "allocated {allocated}");
    }

    #[test]
    fn trailing_zeros_keep_the_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("z.img");
        let data = vec![0u8; 10_000];
        let mut w = SparseWriter::new(File::create(&path).unwrap());
        w.copy_from(&mut &data[..], &mut |_| {}).unwrap();
        let (_, s) = w.finish().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 10_000);
        assert_eq!(s.data_bytes, 0);
    }

    struct Chunky<'a>(&'a [u8], usize);
    impl Read for Chunky<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.1).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
}
