//! Writing a node's image in one pass. The node's files were patched into
//! an in-memory overlay of the base (`io::overlay`), so the finished bytes
//! are known before anything is written: each mapped piece of the base is
//! read once, the overlay's pages are laid on it, and the result is
//! written to the output and hashed for the bmap's per-range SHA-256,
//! while a second thread takes the image's SHA-256 (holes hashed as the
//! zeros they read as) from the same buffers. Where the filesystem shares
//! blocks (FICLONE) only the patched pages are written.
//!
//! Pieces are mapped runs cut on a 4 MiB grid. A piece the overlay does not
//! touch holds the base's bytes, so its hash is computed once per base and
//! shared by every node of the run (`PieceHashes`).

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use sha2::{Digest, Sha256};

use super::bmap::{self, BLOCK, Range};
use crate::io::overlay::{PAGE, Pages};
use crate::io::segments::data_segments;
use crate::profile::state::hex;
use crate::source::progress::Task;

// An overlay page is one bmap block, so page indexes are block numbers.
const _: () = assert!(PAGE == BLOCK);

/// Blocks per grid cell: pieces never cross a 4 MiB boundary.
const PIECE_BLOCKS: u64 = 1024;
/// Bytes per read/write/hash step: small enough that a buffer is likely
/// still in the CPU's cache when the image hasher takes it. (Against 4 MiB
/// steps no difference showed within this VM's noise.)
const CHUNK: u64 = 128 << 10;
/// Chunk buffers in flight between the writer and the image hasher.
const POOL: usize = 8;
/// Bytes written between two requests to start writeback.
const KICK: u64 = 8 << 20;

/// How the base's bytes reached the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyMethod {
    /// Shared blocks (FICLONE); only the patched pages were written.
    Reflink,
    /// Every mapped byte written, holes left as holes.
    Sparse { data_bytes: u64 },
}

pub struct Emitted {
    pub bmap: String,
    pub sha256: String,
    pub mapped_blocks: u64,
    pub method: CopyMethod,
}

/// SHA-256 of pieces of one base image that no overlay touched, by block
/// range: shared by the nodes of one run built from that base.
#[derive(Debug, Default)]
pub struct PieceHashes(Mutex<HashMap<(u64, u64), [u8; 32]>>);

impl PieceHashes {
    fn get(&self, key: (u64, u64)) -> Option<[u8; 32]> {
        self.lock().get(&key).copied()
    }

    fn put(&self, key: (u64, u64), sum: [u8; 32]) {
        self.lock().insert(key, sum);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(u64, u64), [u8; 32]>> {
        // Entries are inserted whole; a poisoned map is still consistent.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A mapped piece: blocks `first..=last`, and whether overlay pages lie in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Piece {
    first: u64,
    last: u64,
    patched: bool,
}

/// The output's mapped pieces: the base's data segments and the overlay's
/// pages, in whole blocks, merged and cut on the grid.
fn pieces(segments: &[(u64, u64)], pages: &Pages) -> Vec<Piece> {
    let mut runs: Vec<(u64, u64)> = segments
        .iter()
        .map(|&(start, n)| (start / BLOCK, (start + n).div_ceil(BLOCK) - 1))
        .chain(pages.keys().map(|&i| (i, i)))
        .collect();
    runs.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (first, last) in runs {
        match merged.last_mut() {
            Some(r) if r.1 + 1 >= first => r.1 = r.1.max(last),
            _ => merged.push((first, last)),
        }
    }
    let mut out = Vec::new();
    for (first, last) in merged {
        let mut cur = first;
        while cur <= last {
            let end = last.min((cur / PIECE_BLOCKS + 1) * PIECE_BLOCKS - 1);
            out.push(Piece {
                first: cur,
                last: end,
                patched: pages.range(cur..=end).next().is_some(),
            });
            cur = end + 1;
        }
    }
    out
}

enum Feed {
    Data(Vec<u8>),
    Zeros(u64),
}

fn stopped() -> io::Error {
    io::Error::other("the image hasher stopped")
}

/// Writes `base` (`len` bytes) with `pages` laid on it into the empty file
/// `dst`, and returns the bmap and SHA-256 of the result. `task` is told
/// the mapped bytes to go and those done.
pub fn emit(
    base: &File,
    len: u64,
    pages: &Pages,
    dst: &File,
    known: &PieceHashes,
    task: &Task,
    stop: &AtomicBool,
) -> io::Result<Emitted> {
    let pieces = pieces(&data_segments(base, len)?, pages);
    task.set_total(
        pieces
            .iter()
            .map(|p| ((p.last + 1) * BLOCK).min(len) - p.first * BLOCK)
            .sum(),
    );
    let reflink = rustix::fs::ioctl_ficlone(dst, base).is_ok();
    if !reflink {
        dst.set_len(len)?;
    }
    let (to_image, image_rx) = sync_channel::<Feed>(POOL);
    let (back, pool) = sync_channel::<Vec<u8>>(POOL);
    std::thread::scope(|s| {
        let image = s.spawn(move || hash_image(image_rx, back));
        let mut out = Writer {
            base,
            len,
            pages,
            dst,
            reflink,
            known,
            task,
            stop,
            to_image,
            pool,
            made: 0,
            done: 0,
            pos: 0,
            settled: 0,
            kicked: 0,
        };
        let ranges = pieces
            .iter()
            .map(|&p| out.piece(p))
            .collect::<io::Result<Vec<Range>>>()
            .and_then(|ranges| out.finish().map(|()| ranges));
        let emitted = out.done;
        drop(out);
        let image = image.join().map_err(|_| stopped())?;
        let ranges = ranges?;
        Ok(Emitted {
            bmap: bmap::render(len, &ranges),
            sha256: image,
            mapped_blocks: ranges.iter().map(|r| r.last - r.first + 1).sum(),
            method: if reflink {
                CopyMethod::Reflink
            } else {
                CopyMethod::Sparse {
                    data_bytes: emitted,
                }
            },
        })
    })
}

/// The reading, patching, writing and range-hashing side of `emit`.
struct Writer<'a> {
    base: &'a File,
    len: u64,
    pages: &'a Pages,
    dst: &'a File,
    reflink: bool,
    known: &'a PieceHashes,
    task: &'a Task,
    stop: &'a AtomicBool,
    to_image: SyncSender<Feed>,
    pool: Receiver<Vec<u8>>,
    /// Buffers made so far (at most POOL).
    made: usize,
    /// Mapped bytes emitted (all written to `dst` unless reflinked).
    done: u64,
    /// Bytes fed to the image hasher.
    pos: u64,
    /// `[settled, kicked)`: writeback asked for one round ago.
    settled: u64,
    kicked: u64,
}

impl Writer<'_> {
    /// Emits one piece and returns its range for the bmap.
    fn piece(&mut self, piece: Piece) -> io::Result<Range> {
        let p_start = piece.first * BLOCK;
        let p_end = ((piece.last + 1) * BLOCK).min(self.len);
        if self.pos < p_start {
            self.feed(Feed::Zeros(p_start - self.pos))?;
        }
        let key = (piece.first, piece.last);
        let known = if piece.patched {
            None
        } else {
            self.known.get(key)
        };
        let mut range = Sha256::new();
        let mut start = p_start;
        while start < p_end {
            if self.stop.load(Ordering::Relaxed) {
                return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
            }
            let end = p_end.min(start + CHUNK);
            let mut buf = self.buffer()?;
            // At most CHUNK bytes. Reused buffers keep their length, so
            // this zero-fills only when a size changes.
            buf.resize((end - start) as usize, 0);
            self.base.read_exact_at(&mut buf, start)?;
            if piece.patched {
                let dst = self.reflink.then_some(self.dst);
                lay_pages(self.pages, &mut buf, start, end, dst)?;
            }
            if !self.reflink {
                self.dst.write_all_at(&buf, start)?;
                if end - self.kicked >= KICK {
                    write_back(self.dst, self.settled, end);
                    self.settled = self.kicked;
                    self.kicked = end;
                }
            }
            if known.is_none() {
                range.update(&buf);
            }
            self.feed(Feed::Data(buf))?;
            self.done += end - start;
            self.task.set_position(self.done);
            start = end;
        }
        self.pos = p_end;
        let sha256 = match known {
            Some(sum) => sum,
            None => {
                let sum: [u8; 32] = range.finalize().into();
                if !piece.patched {
                    self.known.put(key, sum);
                }
                sum
            }
        };
        Ok(Range {
            first: piece.first,
            last: piece.last,
            sha256,
        })
    }

    /// Feeds the holes after the last piece.
    fn finish(&mut self) -> io::Result<()> {
        if self.pos < self.len {
            self.feed(Feed::Zeros(self.len - self.pos))?;
            self.pos = self.len;
        }
        Ok(())
    }

    /// A free buffer: a returned one, a new one while fewer than POOL
    /// exist, else the next one the hasher gives back.
    fn buffer(&mut self) -> io::Result<Vec<u8>> {
        if let Ok(b) = self.pool.try_recv() {
            return Ok(b);
        }
        if self.made < POOL {
            self.made += 1;
            return Ok(Vec::new());
        }
        self.pool.recv().map_err(|_| stopped())
    }

    fn feed(&self, f: Feed) -> io::Result<()> {
        self.to_image.send(f).map_err(|_| stopped())
    }
}

/// `POSIX_FADV_DONTNEED` on `[from, to)` of `dst`: the kernel starts
/// writing its dirty pages to the disk without waiting, and drops the
/// clean ones. Called a round behind the writes, the output streams to the
/// disk as it is made: the flush before the rename finds little left to
/// do, the disk works while the CPU hashes, and a build of many nodes does
/// not fill the page cache with images nobody reads back (taking fresh
/// page-cache memory was the slowest part of writing on our test VM; see
/// docs/BENCHMARKS.md). Advice is a hint: an error changes nothing the
/// build relies on.
fn write_back(dst: &File, from: u64, to: u64) {
    let _ = rustix::fs::fadvise(
        dst,
        from,
        std::num::NonZeroU64::new(to - from),
        rustix::fs::Advice::DontNeed,
    );
}

/// Lays the overlay's pages that fall in `[start, end)` on `buf` (which
/// holds those bytes); with `dst` (a reflinked output) writes them there too.
fn lay_pages(
    pages: &Pages,
    buf: &mut [u8],
    start: u64,
    end: u64,
    dst: Option<&File>,
) -> io::Result<()> {
    for (&i, page) in pages.range(start / PAGE..=(end - 1) / PAGE) {
        let from = start.max(i * PAGE);
        let to = end.min((i + 1) * PAGE);
        // Offsets within one page and one chunk: they fit in usize.
        let bytes = &page[(from - i * PAGE) as usize..(to - i * PAGE) as usize];
        buf[(from - start) as usize..(to - start) as usize].copy_from_slice(bytes);
        if let Some(dst) = dst {
            dst.write_all_at(bytes, from)?;
        }
    }
    Ok(())
}

/// The image's SHA-256 over every byte in order; gives the buffers back.
fn hash_image(rx: Receiver<Feed>, back: SyncSender<Vec<u8>>) -> String {
    let zeros = vec![0u8; CHUNK as usize];
    let mut image = Sha256::new();
    for feed in rx {
        match feed {
            Feed::Data(buf) => {
                image.update(&buf);
                // The writer may be gone (an error); the buffer is dropped.
                let _ = back.send(buf);
            }
            Feed::Zeros(mut n) => {
                while n > 0 {
                    let k = n.min(zeros.len() as u64);
                    // k <= zeros.len(), a usize.
                    image.update(&zeros[..k as usize]);
                    n -= k;
                }
            }
        }
    }
    hex(&image.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::progress::Progress;
    use std::collections::BTreeMap;

    fn page(byte: u8) -> Box<[u8]> {
        vec![byte; PAGE as usize].into_boxed_slice()
    }

    #[test]
    fn pieces_merge_pages_into_runs_and_cut_on_the_grid() {
        let mut pages: Pages = BTreeMap::new();
        pages.insert(10, page(1)); // touches the first segment's end
        pages.insert(5000, page(2)); // alone, in a hole
        let segs = [(0, 10 * BLOCK), (1000 * BLOCK, 100 * BLOCK)];
        let got = pieces(&segs, &pages);
        let want = [
            (0, 10, true),
            (1000, 1023, false),
            (1024, 1099, false),
            (5000, 5000, true),
        ];
        let got: Vec<_> = got.iter().map(|p| (p.first, p.last, p.patched)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn the_output_is_the_base_with_the_pages_on_it_and_keeps_its_holes() {
        let dir = tempfile::tempdir().unwrap();
        let len = 40 * BLOCK * PIECE_BLOCKS + 1000; // a short last block
        let base_path = dir.path().join("base");
        let base = File::create(&base_path).unwrap();
        base.set_len(len).unwrap();
        let data: Vec<u8> = (0..6 << 20).map(|i: u32| (i % 253) as u8).collect();
        base.write_all_at(&data, 3 << 20).unwrap();
        base.write_all_at(b"end", len - 3).unwrap();
        let base = File::open(&base_path).unwrap();
        let mut pages: Pages = BTreeMap::new();
        pages.insert(1024, page(0xaa)); // inside the data
        pages.insert(9000, page(0xbb)); // in a hole
        let mut want = vec![0u8; len as usize];
        want[3 << 20..(3 << 20) + data.len()].copy_from_slice(&data);
        want[len as usize - 3..].copy_from_slice(b"end");
        for (&i, p) in &pages {
            let at = (i * PAGE) as usize;
            want[at..at + PAGE as usize].copy_from_slice(p);
        }
        let known = PieceHashes::default();
        let stop = AtomicBool::new(false);
        for round in 0..2 {
            let out = dir.path().join(format!("out{round}"));
            let dst = File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&out)
                .unwrap();
            let task = Progress::quiet().task("test", 0, None);
            let e = emit(&base, len, &pages, &dst, &known, &task, &stop).unwrap();
            assert_eq!(std::fs::read(&out).unwrap(), want);
            assert_eq!(e.sha256, hex(&Sha256::digest(&want)));
            let mapped: u64 = data_segments(&dst, len).unwrap().iter().map(|s| s.1).sum();
            assert!(mapped < 8 << 20, "holes were filled: {mapped} bytes mapped");
            // Every range's checksum matches the bytes it names.
            let mut blocks = 0;
            for line in e.bmap.lines().filter(|l| l.contains("<Range")) {
                let sum = &line[line.find('"').unwrap() + 1..][..64];
                let span = line.split('>').nth(1).unwrap().split('<').next().unwrap();
                let (a, b) = match span.trim().split_once('-') {
                    Some((a, b)) => (a.parse::<u64>().unwrap(), b.parse::<u64>().unwrap()),
                    None => {
                        let a = span.trim().parse::<u64>().unwrap();
                        (a, a)
                    }
                };
                let bytes = &want[(a * BLOCK) as usize..(((b + 1) * BLOCK).min(len)) as usize];
                assert_eq!(sum, hex(&Sha256::digest(bytes)), "range {a}-{b}");
                blocks += b - a + 1;
            }
            assert_eq!(blocks, e.mapped_blocks);
            assert!(e.bmap.contains(&format!("<MappedBlocksCount> {blocks} ")));
        }
        // The second round took the untouched pieces' hashes from the first.
        assert!(!known.lock().is_empty());
    }

    #[test]
    fn a_stop_ends_the_pass_with_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let base = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.path().join("base"))
            .unwrap();
        base.write_all_at(&[1u8; 1 << 20], 0).unwrap();
        let dst = File::create(dir.path().join("out")).unwrap();
        let stop = AtomicBool::new(true);
        let err = emit(
            &base,
            1 << 20,
            &BTreeMap::new(),
            &dst,
            &PieceHashes::default(),
            &Progress::quiet().task("test", 0, None),
            &stop,
        )
        .err()
        .unwrap();
        assert_eq!(err.kind(), io::ErrorKind::Interrupted);
    }
}
