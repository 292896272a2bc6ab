//! Copying an image file fast and without filling its holes: a reflink
//! (FICLONE) where the filesystem shares blocks, otherwise only the data
//! segments (SEEK_DATA/SEEK_HOLE) through `copy_file_range`, with the
//! length set so trailing holes stay holes. A stop flag is checked between
//! chunks so an interrupt ends the copy promptly.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::SeekFrom;

/// How the bytes were copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyMethod {
    Reflink,
    Sparse { data_bytes: u64 },
}

const CHUNK: usize = 64 << 20;

const FALLBACK: [rustix::io::Errno; 4] = [
    rustix::io::Errno::XDEV,
    rustix::io::Errno::INVAL,
    rustix::io::Errno::NOSYS,
    rustix::io::Errno::OPNOTSUPP,
];

/// The data segments of `f` (offset, length), holes skipped.
pub fn data_segments(f: &File, len: u64) -> io::Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < len {
        let start = match rustix::fs::seek(f, SeekFrom::Data(pos)) {
            Ok(s) => s,
            // ENXIO: no data after pos.
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => return Err(e.into()),
        };
        let end = match rustix::fs::seek(f, SeekFrom::Hole(start)) {
            Ok(e) => e.min(len),
            Err(e) => return Err(e.into()),
        };
        if end > start {
            out.push((start, end - start));
        }
        pos = end;
    }
    Ok(out)
}

/// Copies `src` (of `len` bytes) into the empty file `dst`.
pub fn copy(src: &File, dst: &File, len: u64, stop: &AtomicBool) -> io::Result<CopyMethod> {
    if rustix::fs::ioctl_ficlone(dst, src).is_ok() {
        return Ok(CopyMethod::Reflink);
    }
    dst.set_len(len)?;
    let mut data_bytes = 0;
    for (start, seg_len) in data_segments(src, len)? {
        let mut off_in = start;
        let mut off_out = start;
        let end = start + seg_len;
        while off_in < end {
            if stop.load(Ordering::Relaxed) {
                return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
            }
            // Bounded by CHUNK.
            let want = (end - off_in).min(CHUNK as u64) as usize;
            let n = match rustix::fs::copy_file_range(
                src,
                Some(&mut off_in),
                dst,
                Some(&mut off_out),
                want,
            ) {
                Ok(n) => n,
                // Across filesystems (EXDEV) or where the call is missing:
                // copy through a buffer instead.
                Err(e) if FALLBACK.contains(&e) => {
                    let n = copy_buffered(src, dst, off_in, want)?;
                    off_in += n as u64;
                    off_out += n as u64;
                    n
                }
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the source image shrank while copying",
                ));
            }
            data_bytes += n as u64;
        }
    }
    Ok(CopyMethod::Sparse { data_bytes })
}

/// Copies up to `len` bytes at `off` with pread/pwrite.
fn copy_buffered(src: &File, dst: &File, off: u64, len: usize) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len.min(8 << 20)];
    let n = src.read_at(&mut buf, off)?;
    dst.write_all_at(&buf[..n], off)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn holes_stay_holes_and_data_arrives() {
        let dir = tempfile::tempdir().unwrap();
        let src = File::create(dir.path().join("src")).unwrap();
        src.set_len(64 << 20).unwrap();
        src.write_all_at(b"head", 0).unwrap();
        src.write_all_at(&[7u8; 8192], 40 << 20).unwrap();
        let src = File::open(dir.path().join("src")).unwrap();
        let dst = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("dst"))
            .unwrap();
        let stop = AtomicBool::new(false);
        copy(&src, &dst, 64 << 20, &stop).unwrap();
        assert_eq!(dst.metadata().unwrap().len(), 64 << 20);
        let mut buf = [0u8; 4];
        dst.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"head");
        let mut big = vec![0u8; 8192];
        dst.read_exact_at(&mut big, 40 << 20).unwrap();
        assert!(big.iter().all(|&b| b == 7));
        let segs = data_segments(&dst, 64 << 20).unwrap();
        let mapped: u64 = segs.iter().map(|s| s.1).sum();
        assert!(mapped < 1 << 20, "holes were filled: {segs:?}");
    }
}
