//! Writing a node's image in one pass. The node's files were patched into
//! an in-memory overlay of the base (`io::overlay`), so the finished bytes
//! are known before anything is written: each data segment of the base is
//! read once, the overlay's pages are laid on it, and the result is
//! written to the output (holes stay holes). When asked (`build --sha256`),
//! a second thread takes the image's SHA-256 (holes hashed as the zeros
//! they read as) from the same buffers: a pass over every byte of the
//! image, zeros included, which nothing can shorten, so it is not done by
//! default. Where the filesystem shares blocks (FICLONE) only the patched
//! pages are written.
//!
//! What the file holds and what its bmap maps are two different sets: the
//! file is the whole image, data and holes; the bmap's ranges are the
//! blocks the image's structures and filesystems use (`build::mapped`),
//! zero or not, and each range's SHA-256 is taken over the image's bytes
//! there, holes as zeros. So the pass walks the union of both: data it
//! copies, mapped holes it only hashes.
//!
//! Bytes no one needs to see — an untouched chunk whose range sum is
//! known, or that no range maps, with no image hasher — are copied by the
//! kernel (`copy_file_range`: one copy in the page cache instead of a read
//! into our buffer and a write out of it), falling back to read and write
//! where the kernel or filesystem cannot.
//!
//! Ranges are the mapped runs cut on a 4 MiB grid. A range the overlay does
//! not touch holds the base's bytes, whatever the node, so its hash is
//! computed once per base and shared by every node of the run, and kept
//! on disk for a cached base (`range_sums`, keyed by the range's exact
//! blocks: nodes whose maps differ there simply miss).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use sha2::{Digest, Sha256};

use super::bmap::{self, BLOCK, Range};
use super::mapped::BlockRuns;
use super::pieces::{Piece, Span, copied, pieces, ranges};
use super::range_sums::PieceHashes;
use crate::digest::hex;
use crate::io::overlay::{PAGE, Pages};
use crate::io::segments::data_segments;
use crate::progress::Task;

// An overlay page is one bmap block, so page indexes are block numbers.
const _: () = assert!(PAGE == BLOCK);

/// Blocks per grid cell: ranges never cross a 4 MiB boundary.
pub const PIECE_BLOCKS: u64 = 1024;
/// Bytes per read/write/hash step: small enough that a buffer is likely
/// still in the CPU's cache when the image hasher takes it. (Against 4 MiB
/// steps no difference showed within this VM's noise.)
const CHUNK: u64 = 128 << 10;
/// Chunk buffers in flight between the writer and the image hasher.
const POOL: usize = 8;
/// Bytes written between two requests to start writeback.
const KICK: u64 = 8 << 20;

/// What a mapped hole hashes as.
static ZEROS: [u8; CHUNK as usize] = [0; CHUNK as usize];

/// How the base's bytes reached the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyMethod {
    /// Shared blocks (FICLONE); only the patched pages were written.
    Reflink,
    /// Every data byte written, holes left as holes.
    Sparse { data_bytes: u64 },
}

pub struct Emitted {
    pub bmap: String,
    /// The image's SHA-256, when it was asked for.
    pub sha256: Option<String>,
    pub mapped_blocks: u64,
    /// Bmap ranges, and how many of their sums were known (not hashed).
    pub ranges: usize,
    pub known_ranges: usize,
    pub method: CopyMethod,
}

/// What the output is made of.
pub struct Source<'a> {
    /// The read-only base image.
    pub base: &'a File,
    /// The image's length in bytes.
    pub len: u64,
    /// The overlay's pages, laid on the base.
    pub pages: &'a Pages,
    /// The blocks the bmap maps (`mapped::used_blocks` of the patched image).
    pub mapped: &'a BlockRuns,
    /// Whether to take the SHA-256 of the whole image.
    pub image_sha256: bool,
}

enum Feed {
    Data(Vec<u8>),
    Zeros(u64),
}

fn stopped() -> io::Error {
    io::Error::other("the image hasher stopped")
}

/// Writes `src` (the base with the pages laid on it) into the empty file
/// `dst`, and returns the bmap of `src.mapped` and, when asked, the
/// SHA-256 of the result. `task` is told the bytes to go and those done.
pub fn emit(
    src: &Source<'_>,
    dst: &File,
    known: &PieceHashes,
    task: &Task,
    stop: &AtomicBool,
) -> io::Result<Emitted> {
    let Source {
        base,
        len,
        pages,
        mapped,
        image_sha256,
    } = *src;
    let ranges = ranges(mapped, pages);
    let pieces = pieces(&copied(&data_segments(base, len)?, pages), &ranges, pages);
    task.set_total(
        pieces
            .iter()
            .map(|p| ((p.last + 1) * BLOCK).min(len) - p.first * BLOCK)
            .sum(),
    );
    // A grown image (a VM's disk_size) is longer than its base: past the
    // base it is zeros and the pages laid there.
    let base_len = base.metadata()?.len().min(len);
    let reflink = rustix::fs::ioctl_ficlone(dst, base).is_ok();
    // A clone is the base's length; a grown image is longer.
    if !reflink || dst.metadata()?.len() != len {
        dst.set_len(len)?;
    }
    let (to_image, image_rx) = sync_channel::<Feed>(POOL);
    let (back, pool) = sync_channel::<Vec<u8>>(POOL);
    std::thread::scope(|s| {
        let image = image_sha256.then(|| s.spawn(move || hash_image(image_rx, back)));
        let mut out = Writer {
            base,
            base_len,
            len,
            pages,
            dst,
            reflink,
            known,
            task,
            stop,
            to_image: image_sha256.then_some(to_image),
            pool,
            spare: None,
            in_kernel: true,
            known_ranges: 0,
            made: 0,
            done: 0,
            data: 0,
            pos: 0,
            settled: 0,
            kicked: 0,
            ranges: &ranges,
            open: None,
            sums: Vec::with_capacity(ranges.len()),
        };
        let run = pieces
            .iter()
            .try_for_each(|&p| out.piece(p))
            .and_then(|()| out.finish());
        let data = out.data;
        let known_ranges = out.known_ranges;
        let sums = std::mem::take(&mut out.sums);
        drop(out);
        let image = image.map(|h| h.join().map_err(|_| stopped())).transpose()?;
        run?;
        if sums.len() != ranges.len() {
            return Err(io::Error::other(format!(
                "internal error: {} of {} bmap ranges hashed",
                sums.len(),
                ranges.len()
            )));
        }
        Ok(Emitted {
            bmap: bmap::render(len, &sums),
            sha256: image,
            mapped_blocks: mapped.blocks(),
            ranges: ranges.len(),
            known_ranges,
            method: if reflink {
                CopyMethod::Reflink
            } else {
                CopyMethod::Sparse { data_bytes: data }
            },
        })
    })
}

/// The range being hashed, by index.
struct Open {
    index: usize,
    sum: RangeSum,
}

enum RangeSum {
    /// The sum another node of the run already took (an untouched range).
    Known([u8; 32]),
    /// The SHA-256 of the bytes so far.
    Hashing(Sha256),
}

/// The reading, patching, writing and range-hashing side of `emit`.
struct Writer<'a> {
    base: &'a File,
    /// Where the base ends (at most `len`).
    base_len: u64,
    len: u64,
    pages: &'a Pages,
    dst: &'a File,
    reflink: bool,
    known: &'a PieceHashes,
    task: &'a Task,
    stop: &'a AtomicBool,
    /// To the image hasher, when there is one.
    to_image: Option<SyncSender<Feed>>,
    pool: Receiver<Vec<u8>>,
    /// The one buffer, when there is no image hasher to pass it to.
    spare: Option<Vec<u8>>,
    /// Ranges whose sum was known.
    known_ranges: usize,
    /// Whether `copy_file_range` is still worth trying.
    in_kernel: bool,
    /// Buffers made so far (at most POOL).
    made: usize,
    /// Bytes of pieces done (for the progress bar).
    done: u64,
    /// Data bytes emitted (all written to `dst` unless reflinked).
    data: u64,
    /// Bytes fed to the image hasher.
    pos: u64,
    /// `[settled, kicked)`: writeback asked for one round ago.
    settled: u64,
    kicked: u64,
    ranges: &'a [Span],
    open: Option<Open>,
    /// The finished ranges, in order.
    sums: Vec<Range>,
}

impl Writer<'_> {
    /// Emits one piece, hashing it into its range.
    fn piece(&mut self, piece: Piece) -> io::Result<()> {
        let p_start = piece.first * BLOCK;
        let p_end = ((piece.last + 1) * BLOCK).min(self.len);
        if self.pos < p_start {
            self.feed(Feed::Zeros(p_start - self.pos))?;
        }
        if let Some(i) = piece.range {
            self.open_range(i);
        }
        let mut start = p_start;
        while start < p_end {
            if self.stop.load(Ordering::Relaxed) {
                return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
            }
            let end = p_end.min(start + CHUNK);
            if piece.data {
                self.data_chunk(piece, start, end)?;
            } else {
                // Pieces are data or mapped: a mapped hole, zeros for the
                // range and the image. end - start <= CHUNK, ZEROS's length.
                self.hash_range(&ZEROS[..(end - start) as usize]);
                self.feed(Feed::Zeros(end - start))?;
            }
            self.done += end - start;
            self.task.set_position(self.done);
            start = end;
        }
        self.pos = p_end;
        if let Some(i) = piece.range
            && self.ranges[i].last == piece.last
        {
            self.close_range();
        }
        Ok(())
    }

    /// Reads `[start, end)` of `piece` from the base, lays the pages on
    /// it, writes it out and hashes it.
    fn data_chunk(&mut self, piece: Piece, start: u64, end: u64) -> io::Result<()> {
        let unseen = !self.reflink
            && !piece.patched
            && self.to_image.is_none()
            && (piece.range.is_none() || self.range_known());
        if unseen && self.in_kernel {
            if copy_in_kernel(self.base, self.dst, start, end)? {
                self.wrote(end);
                self.data += end - start;
                return Ok(());
            }
            // Not supported here: read and write from now on.
            self.in_kernel = false;
        }
        let mut buf = self.buffer()?;
        // At most CHUNK bytes. Reused buffers keep their length, so this
        // zero-fills only when a size changes.
        buf.resize((end - start) as usize, 0);
        // Within the chunk, so it fits in usize.
        let in_base = (end.min(self.base_len).saturating_sub(start)) as usize;
        self.base.read_exact_at(&mut buf[..in_base], start)?;
        buf[in_base..].fill(0);
        if piece.patched {
            let dst = self.reflink.then_some(self.dst);
            lay_pages(self.pages, &mut buf, start, end, dst)?;
        }
        if !self.reflink {
            self.dst.write_all_at(&buf, start)?;
            self.wrote(end);
        }
        if piece.range.is_some() {
            self.hash_range(&buf);
        }
        self.data += end - start;
        self.feed(Feed::Data(buf))
    }

    /// Asks for writeback every KICK bytes, a round behind.
    fn wrote(&mut self, end: u64) {
        if end - self.kicked >= KICK {
            write_back(self.dst, self.settled, end);
            self.settled = self.kicked;
            self.kicked = end;
        }
    }

    /// Whether the open range's sum is known (its bytes need no hashing).
    fn range_known(&self) -> bool {
        matches!(
            self.open,
            Some(Open {
                sum: RangeSum::Known(_),
                ..
            })
        )
    }

    /// Starts hashing range `i` unless it is the one open.
    fn open_range(&mut self, i: usize) {
        if self.open.as_ref().is_some_and(|o| o.index == i) {
            return;
        }
        let r = self.ranges[i];
        let known = if r.patched {
            None
        } else {
            self.known.get((r.first, r.last))
        };
        self.open = Some(Open {
            index: i,
            sum: known.map_or_else(|| RangeSum::Hashing(Sha256::new()), RangeSum::Known),
        });
    }

    fn hash_range(&mut self, bytes: &[u8]) {
        if let Some(Open {
            sum: RangeSum::Hashing(h),
            ..
        }) = &mut self.open
        {
            h.update(bytes);
        }
    }

    /// Finishes the open range: its sum goes to the bmap, and to the
    /// shared table when no page lies in it.
    fn close_range(&mut self) {
        let Some(open) = self.open.take() else {
            return;
        };
        let r = self.ranges[open.index];
        let sha256 = match open.sum {
            RangeSum::Known(sum) => {
                self.known_ranges += 1;
                sum
            }
            RangeSum::Hashing(h) => {
                let sum: [u8; 32] = h.finalize().into();
                if !r.patched {
                    self.known.put((r.first, r.last), sum);
                }
                sum
            }
        };
        self.sums.push(Range {
            first: r.first,
            last: r.last,
            sha256,
        });
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
        if self.to_image.is_none() {
            return Ok(self.spare.take().unwrap_or_default());
        }
        if let Ok(b) = self.pool.try_recv() {
            return Ok(b);
        }
        if self.made < POOL {
            self.made += 1;
            return Ok(Vec::new());
        }
        self.pool.recv().map_err(|_| stopped())
    }

    fn feed(&mut self, f: Feed) -> io::Result<()> {
        match &self.to_image {
            Some(to) => to.send(f).map_err(|_| stopped()),
            None => {
                if let Feed::Data(buf) = f {
                    self.spare = Some(buf);
                }
                Ok(())
            }
        }
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

/// Copies `[start, end)` of `base` to the same offsets of `dst` inside the
/// kernel. `Ok(false)` when this kernel or filesystem pair cannot (nothing
/// was copied then: the first call fails before any byte moves, and a
/// later short count is retried), so the caller reads and writes instead.
fn copy_in_kernel(base: &File, dst: &File, start: u64, end: u64) -> io::Result<bool> {
    use rustix::io::Errno;
    let (mut from, mut to) = (start, start);
    while from < end {
        // At most CHUNK bytes: fits in usize.
        let want = (end - from) as usize;
        match rustix::fs::copy_file_range(base, Some(&mut from), dst, Some(&mut to), want) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the base ends at byte {from}, inside its data"),
                ));
            }
            Ok(_) => {}
            Err(Errno::INTR) => {}
            Err(Errno::XDEV | Errno::NOSYS | Errno::OPNOTSUPP | Errno::INVAL) if from == start => {
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
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
    use crate::progress::Progress;
    use std::collections::BTreeMap;

    fn page(byte: u8) -> Box<[u8]> {
        vec![byte; PAGE as usize].into_boxed_slice()
    }

    /// (first, last, sha256 hex) of every range in a bmap.
    fn bmap_ranges(bmap: &str) -> Vec<(u64, u64, String)> {
        bmap.lines()
            .filter(|l| l.contains("<Range"))
            .map(|line| {
                let sum = line[line.find('"').unwrap() + 1..][..64].to_string();
                let span = line.split('>').nth(1).unwrap().split('<').next().unwrap();
                let (a, b) = match span.trim().split_once('-') {
                    Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
                    None => {
                        let a = span.trim().parse().unwrap();
                        (a, a)
                    }
                };
                (a, b, sum)
            })
            .collect()
    }

    #[test]
    fn the_output_is_the_base_with_the_pages_on_it_and_the_bmap_maps_the_used_blocks() {
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
        pages.insert(9000, page(0xbb)); // in a hole, mapped
        pages.insert(9500, page(0xcc)); // in a hole, not mapped
        let mut want = vec![0u8; len as usize];
        want[3 << 20..(3 << 20) + data.len()].copy_from_slice(&data);
        want[len as usize - 3..].copy_from_slice(b"end");
        for (&i, p) in &pages {
            let at = (i * PAGE) as usize;
            want[at..at + PAGE as usize].copy_from_slice(p);
        }
        // Mapped: a hole before the data, half the data, a hole around
        // page 9000, and the short last block; data past 6 MiB and page
        // 9500 are free space.
        let mapped = BlockRuns::from_spans([
            (1 << 20, 6 << 20),
            (8990 * BLOCK, 9010 * BLOCK),
            (len - 1, len),
        ]);
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
            let src = Source {
                base: &base,
                len,
                pages: &pages,
                mapped: &mapped,
                // Asked for once: the pass without the image hasher must
                // give the same bytes and bmap.
                image_sha256: round == 0,
            };
            let e = emit(&src, &dst, &known, &task, &stop).unwrap();
            assert_eq!(std::fs::read(&out).unwrap(), want);
            let sum = (round == 0).then(|| hex(&Sha256::digest(&want)));
            assert_eq!(e.sha256, sum);
            let written: u64 = data_segments(&dst, len).unwrap().iter().map(|s| s.1).sum();
            assert!(written < 8 << 20, "holes were filled: {written} bytes");
            // The ranges are the mapped blocks, and each checksum matches
            // the bytes it names, holes read as zeros.
            let ranges = bmap_ranges(&e.bmap);
            let spans = ranges.iter().map(|&(a, b, _)| (a * BLOCK, (b + 1) * BLOCK));
            assert_eq!(BlockRuns::from_spans(spans), mapped);
            for (a, b, sum) in &ranges {
                let bytes = &want[(a * BLOCK) as usize..(((b + 1) * BLOCK).min(len)) as usize];
                assert_eq!(*sum, hex(&Sha256::digest(bytes)), "range {a}-{b}");
            }
            assert_eq!(e.mapped_blocks, mapped.blocks());
            let blocks = mapped.blocks();
            assert!(e.bmap.contains(&format!("<MappedBlocksCount> {blocks} ")));
        }
        // The second round took the untouched ranges' hashes from the first.
        assert!(!known.is_empty());
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
        let src = Source {
            base: &base,
            len: 1 << 20,
            pages: &BTreeMap::new(),
            mapped: &BlockRuns::from_spans([(0, 1 << 20)]),
            image_sha256: true,
        };
        let err = emit(
            &src,
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
