//! Where a sparse file holds data: its data segments by SEEK_DATA and
//! SEEK_HOLE, so copies and hashes can skip the holes.

use std::fs::File;
use std::io;

use rustix::fs::SeekFrom;

/// The data segments of `f` (offset, length), holes skipped. Moves the
/// file's cursor; callers use positional I/O.
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn segments_skip_holes() {
        let dir = tempfile::tempdir().unwrap();
        let f = File::create(dir.path().join("f")).unwrap();
        f.set_len(64 << 20).unwrap();
        f.write_all_at(b"head", 0).unwrap();
        f.write_all_at(&[7u8; 8192], 40 << 20).unwrap();
        let segs = data_segments(&f, 64 << 20).unwrap();
        assert_eq!(segs.first().map(|s| s.0), Some(0));
        assert!(
            segs.iter()
                .any(|&(s, n)| s <= 40 << 20 && s + n >= (40 << 20) + 8192)
        );
        let mapped: u64 = segs.iter().map(|s| s.1).sum();
        assert!(mapped < 1 << 20, "holes reported as data: {segs:?}");
    }
}
