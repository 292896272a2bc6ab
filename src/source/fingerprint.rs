//! How the cache notices that an image changed after it was cached without
//! re-hashing gigabytes on every use.
//!
//! At insert we record the file's modification time and a SHA-256 over
//! sampled blocks (the first and last 64 KiB, where the partition table
//! and backup GPT live, and 64 blocks of 4 KiB spread evenly between);
//! the size is in the metadata already. On use:
//!
//! - a different size is damage (truncation, growth);
//! - different samples are damage (an edit in a sampled block, even one
//!   whose time stamp was put back);
//! - a different modification time with equal samples is a *maybe*: any
//!   write through the file system moves the time, but so does copying the
//!   cache without `-p`. Only a full re-hash can tell, so that is what we
//!   do then, and record the new time when the content is intact.
//!
//! The cost on a hit is one `stat` and ~380 KiB of reads. What this cannot
//! see is an edit outside the samples whose time stamp was reset by hand;
//! `cache verify` re-hashes everything for that.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::digest::{Hasher, Sha256};
use crate::progress::Progress;

/// Bytes sampled at each end of the image.
const EDGE: u64 = 64 << 10;
/// Blocks sampled between the ends.
const SPREAD: u64 = 64;
const BLOCK: u64 = 4096;

/// Recorded with each image when it is cached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Modification time: seconds since the epoch and nanoseconds.
    pub mtime: i64,
    pub mtime_nsec: i64,
    /// SHA-256 over each sampled block's offset (little-endian u64) and
    /// bytes, in offset order.
    pub samples: Sha256,
}

/// The outcome of the cheap check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Quick {
    /// Size, time and samples as recorded.
    Intact,
    /// The content may have changed (why): re-hash to know.
    Unsure(String),
    /// It changed (how).
    Damaged(String),
}

impl Fingerprint {
    /// The fingerprint of the image at `path`, `size` bytes long.
    pub fn take(path: &Path, size: u64) -> io::Result<Self> {
        let file = File::open(path)?;
        let m = file.metadata()?;
        Ok(Self {
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
            samples: samples(&file, size)?,
        })
    }

    /// The cheap check of the image at `path` against this fingerprint and
    /// the `size` recorded beside it.
    pub fn check(&self, path: &Path, size: u64) -> Quick {
        let (file, m) = match File::open(path).and_then(|f| {
            let m = f.metadata()?;
            Ok((f, m))
        }) {
            Ok(x) => x,
            Err(e) => return Quick::Damaged(format!("cannot read it: {e}")),
        };
        if let Some(why) = size_differs(m.len(), size) {
            return Quick::Damaged(why);
        }
        match samples(&file, size) {
            Ok(s) if s != self.samples => {
                Quick::Damaged("its sampled blocks differ from when it was cached".to_owned())
            }
            Ok(_) if (m.mtime(), m.mtime_nsec()) != (self.mtime, self.mtime_nsec) => {
                Quick::Unsure("it was modified (or copied) after it was cached".to_owned())
            }
            Ok(_) => Quick::Intact,
            Err(e) => Quick::Damaged(format!("cannot read it: {e}")),
        }
    }
}

/// The check of an image recorded without a fingerprint (by an older
/// version): only the size can be checked cheaply.
pub fn check_unfingerprinted(path: &Path, size: u64) -> Quick {
    match std::fs::metadata(path) {
        Ok(m) => match size_differs(m.len(), size) {
            Some(why) => Quick::Damaged(why),
            None => Quick::Unsure("it was cached without a fingerprint".to_owned()),
        },
        Err(e) => Quick::Damaged(format!("cannot read it: {e}")),
    }
}

fn size_differs(found: u64, recorded: u64) -> Option<String> {
    (found != recorded).then(|| format!("it is {found} bytes long, not the {recorded} cached"))
}

/// The offsets and lengths of the sampled blocks of a `size`-byte image.
fn sample_ranges(size: u64) -> Vec<(u64, u64)> {
    let mut ranges = vec![(0, EDGE.min(size))];
    if size > 2 * EDGE {
        let inner = size - 2 * EDGE;
        for i in 1..=SPREAD {
            // `inner * i / (SPREAD + 1)` < inner: the block starts inside
            // the middle part (u128: no overflow for any u64 size).
            let at = u64::try_from(u128::from(inner) * u128::from(i) / u128::from(SPREAD + 1))
                .unwrap_or(0);
            let at = EDGE + at / BLOCK * BLOCK;
            ranges.push((at, BLOCK.min(size - at)));
        }
    }
    if size > EDGE {
        let start = (size - EDGE).max(EDGE);
        ranges.push((start, size - start));
    }
    ranges
}

fn samples(file: &File, size: u64) -> io::Result<Sha256> {
    let mut hasher = Hasher::default();
    let mut buf = vec![0u8; usize::try_from(EDGE).unwrap_or(65536)];
    for (at, len) in sample_ranges(size) {
        // `len` ≤ EDGE, the buffer's length.
        let chunk = &mut buf[..usize::try_from(len).unwrap_or(0)];
        file.read_exact_at(chunk, at)?;
        hasher.update(&at.to_le_bytes());
        hasher.update(chunk);
    }
    Ok(hasher.finish())
}

/// The SHA-256 of the whole file at `path` (at most `size` bytes are
/// read), with progress.
pub fn full_hash(path: &Path, size: u64, progress: &Progress) -> io::Result<Sha256> {
    let file = File::open(path)?;
    let task = progress.task("verifying", 0, Some(size));
    let mut hasher = Hasher::default();
    let mut reader = file.take(size);
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                task.abandon();
                return Err(e);
            }
        };
        hasher.update(&buf[..n]);
        done += super::len64(n);
        task.set_position(done);
    }
    task.done();
    Ok(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_cover_both_ends_and_stay_inside() {
        for size in [
            0,
            1,
            4095,
            EDGE,
            EDGE + 1,
            2 * EDGE + 1,
            3 << 30,
            u64::MAX / 2,
        ] {
            let r = sample_ranges(size);
            assert_eq!(r[0].0, 0);
            for (at, len) in &r {
                assert!(at + len <= size, "{size}: {at}+{len}");
            }
            if size > EDGE {
                let (at, len) = r[r.len() - 1];
                assert_eq!(at + len, size);
            }
        }
        assert_eq!(sample_ranges(3 << 30).len(), 2 + SPREAD as usize);
    }

    #[test]
    fn an_edit_in_a_sampled_block_is_damage_and_a_touch_is_unsure() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i.img");
        let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let fp = Fingerprint::take(&p, data.len() as u64).unwrap();
        assert_eq!(fp.check(&p, data.len() as u64), Quick::Intact);
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        let when = f.metadata().unwrap().modified().unwrap();
        f.write_at(b"X", 10).unwrap();
        f.set_modified(when).unwrap();
        assert!(matches!(fp.check(&p, data.len() as u64), Quick::Damaged(_)));
        f.write_at(&data[10..11], 10).unwrap();
        assert!(matches!(fp.check(&p, data.len() as u64), Quick::Unsure(_)));
        f.set_len(5).unwrap();
        assert!(
            matches!(fp.check(&p, data.len() as u64), Quick::Damaged(w) if w.contains("5 bytes"))
        );
    }
}
