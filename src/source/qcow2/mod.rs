//! Decodes a qcow2 image (versions 2 and 3) into a raw sparse file: walks
//! the active L1 table and its L2 tables in disk order, copies standard
//! clusters, inflates compressed ones (raw deflate or zstd), and writes
//! zeros — holes in the output — for unallocated and zero clusters.
//! Snapshots, refcounts and header extensions are not needed for that and
//! are not read. Batches of clusters are decoded on several threads and
//! written in order.
//!
//! Every table and cluster is checked against the file's length before it
//! is read, and every allocation is bounded by the cluster size (at most
//! 2 MiB) or by the file's length.

mod header;

use std::fs::File;
use std::io::{self, Read};

pub use header::{Compression, Header, MAGIC, MAX_VIRTUAL_SIZE, Qcow2Error};
use header::{be64, check_table, read_up_to};

use super::len64;
use super::sparse::{CopyError, SparseWriter};
use crate::digest::{Hasher, Sha256};

/// L1 entry bits 9..=55: the L2 table's offset.
const L1_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// L2 entry bits 9..=55: a standard cluster's offset.
const L2_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const L2_COMPRESSED: u64 = 1 << 62;
/// Version 3: the cluster reads as zeros (whatever its offset says).
const L2_ZERO: u64 = 1;
/// Disk bytes one thread decodes per batch.
const PART_BYTES: u64 = 4 << 20;
/// 4 MiB: twice the largest cluster.
const ZSTD_WINDOW_LOG_MAX: u32 = 22;
/// More threads than this gain nothing on the disk I/O they share.
const MAX_THREADS: u32 = 16;

/// Why decoding stopped.
#[derive(Debug)]
pub enum DecodeError {
    Qcow2(Qcow2Error),
    Write(io::Error),
}

impl From<Qcow2Error> for DecodeError {
    fn from(e: Qcow2Error) -> Self {
        Self::Qcow2(e)
    }
}

/// Decodes the whole virtual disk of `file` (whose header is `header`)
/// into `out`, with up to `threads` threads; `on_progress` sees the bytes
/// written so far.
pub fn decode(
    file: &File,
    header: &Header,
    threads: u32,
    out: &mut SparseWriter,
    on_progress: &mut impl FnMut(u64),
) -> Result<(), DecodeError> {
    let cs = header.cluster_size();
    let clusters = header.size.div_ceil(cs);
    let per_l2 = header.l2_entries();
    let l1 = read_l1(file, header, clusters.div_ceil(per_l2))?;
    let threads = threads.clamp(1, MAX_THREADS);
    let part_clusters = (PART_BYTES >> header.cluster_bits).max(1);
    // Bounded: threads ≤ 16, a part ≤ max(4 MiB, one 2 MiB cluster).
    let part_len = to_usize(part_clusters * cs);
    let mut workers: Vec<Worker> = (0..threads).map(|_| Worker::new(part_len, cs)).collect();
    let mut table = vec![0u8; to_usize(cs)];
    let mut l2 = Vec::with_capacity(to_usize(per_l2));
    for (i, &entry) in (0u64..).zip(&l1) {
        let first = i * per_l2;
        let count = per_l2.min(clusters - first);
        let l2_offset = entry & L1_OFFSET_MASK;
        if l2_offset == 0 {
            let len = (count * cs).min(header.size - first * cs);
            write(out, &mut io::repeat(0).take(len), on_progress)?;
            continue;
        }
        let what = format!("L2 table of L1 entry {i}");
        check_table(&what, l2_offset, cs, cs, header.file_len)?;
        read_exact(file, &mut table, l2_offset, &what, header.file_len)?;
        l2.clear();
        l2.extend(
            table
                .chunks_exact(8)
                .take(to_usize(count))
                .map(|e| be64(e, 0)),
        );
        // Batches of `threads` parts, decoded at once, written in order.
        let batch_len = part_clusters * u64::from(threads);
        for (b, batch) in (0u64..).zip(l2.chunks(to_usize(batch_len))) {
            let batch_first = first + b * batch_len;
            decode_batch(
                file,
                header,
                batch,
                batch_first,
                part_clusters,
                &mut workers,
            )?;
            for (k, (w, part)) in
                (0u64..).zip(workers.iter().zip(batch.chunks(to_usize(part_clusters))))
            {
                let part_first = batch_first + k * part_clusters;
                let len = (len64(part.len()) * cs).min(header.size - part_first * cs);
                write(out, &mut &w.out[..to_usize(len)], on_progress)?;
            }
        }
    }
    Ok(())
}

fn decode_batch(
    file: &File,
    header: &Header,
    batch: &[u64],
    batch_first: u64,
    part_clusters: u64,
    workers: &mut [Worker],
) -> Result<(), Qcow2Error> {
    let parts: Vec<&[u64]> = batch.chunks(to_usize(part_clusters)).collect();
    let (Some(first), Some((worker, rest))) = (parts.first(), workers.split_first_mut()) else {
        // `decode` makes at least one worker and never an empty batch.
        return Ok(());
    };
    if parts.len() == 1 {
        return worker.decode(file, header, first, batch_first);
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = rest
            .iter_mut()
            .zip(&parts[1..])
            .zip(1u64..)
            .map(|((w, part), k)| {
                s.spawn(move || w.decode(file, header, part, batch_first + k * part_clusters))
            })
            .collect();
        let mut result = worker.decode(file, header, first, batch_first);
        for h in handles {
            // A worker only returns errors; a panic would be a bug in the
            // decoders, passed on as it is.
            let r = h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            if result.is_ok() {
                result = r;
            }
        }
        result
    })
}

/// One thread's buffers: its output, the compressed bytes it reads, and
/// its decompressors (kept across clusters).
struct Worker {
    out: Vec<u8>,
    input: Vec<u8>,
    zlib: flate2::Decompress,
    zstd: Option<zstd::stream::raw::Decoder<'static>>,
}

impl Worker {
    fn new(part_len: usize, cluster_size: u64) -> Self {
        Self {
            out: vec![0; part_len],
            // A compressed cluster's entry names at most two clusters of
            // sectors (its sector count field has cluster_bits - 8 bits).
            input: Vec::with_capacity(to_usize(2 * cluster_size)),
            zlib: flate2::Decompress::new(false),
            zstd: None,
        }
    }

    /// Decodes the clusters of `entries` (L2 entries of disk clusters
    /// `first`..) into `self.out`, one cluster each.
    fn decode(
        &mut self,
        file: &File,
        h: &Header,
        entries: &[u64],
        first: u64,
    ) -> Result<(), Qcow2Error> {
        let cs = h.cluster_size();
        for ((k, &entry), slot) in (0u64..).zip(entries).zip(self.out.chunks_mut(to_usize(cs))) {
            let disk_offset = (first + k) * cs;
            if entry & L2_COMPRESSED != 0 {
                let (host, end) = compressed_range(entry, h)?;
                if host >= h.file_len {
                    return Err(Qcow2Error::PastEnd {
                        what: format!("compressed cluster of disk byte {disk_offset}"),
                        offset: host,
                        len: h.file_len,
                    });
                }
                // QEMU reads the last sector short when the file ends
                // inside it; the decoder then needs no more bytes.
                let end = end.min(h.file_len);
                self.input.resize(to_usize(end - host), 0);
                let what = format!("compressed cluster of disk byte {disk_offset}");
                read_exact(file, &mut self.input, host, &what, h.file_len)?;
                let decoded = match h.compression {
                    Compression::Zlib => inflate(&mut self.zlib, &self.input, slot),
                    Compression::Zstd => unzstd(&mut self.zstd, &self.input, slot),
                };
                decoded.map_err(|detail| Qcow2Error::Compressed {
                    host_offset: host,
                    disk_offset,
                    detail,
                })?;
                continue;
            }
            let host = entry & L2_OFFSET_MASK;
            if host == 0 || (h.version >= 3 && entry & L2_ZERO != 0) {
                slot.fill(0);
                continue;
            }
            let what = format!("data cluster of disk byte {disk_offset}");
            check_table(&what, host, cs, cs, h.file_len)?;
            read_exact(file, slot, host, &what, h.file_len)?;
        }
        Ok(())
    }
}

/// The file bytes a compressed cluster's entry names: its first byte, and
/// the end of its last 512-byte sector.
fn compressed_range(entry: u64, h: &Header) -> Result<(u64, u64), Qcow2Error> {
    // The offset takes bits 0..x, the extra-sector count bits x..62.
    let x = 62 - (h.cluster_bits - 8);
    let host = entry & ((1u64 << x) - 1);
    let sectors = (entry & !L2_COMPRESSED & !(1 << 63)) >> x;
    // At most 2^(cluster_bits-8) sectors: cannot overflow with host < 2^56,
    // but an offset with bits above 55 set could, so check.
    let end = (host & !511)
        .checked_add((sectors + 1) * 512)
        .ok_or(Qcow2Error::PastEnd {
            what: "compressed cluster".to_owned(),
            offset: host,
            len: h.file_len,
        })?;
    Ok((host, end))
}

/// Raw deflate (no zlib header), as QEMU writes it; must fill `out`.
fn inflate(dec: &mut flate2::Decompress, input: &[u8], out: &mut [u8]) -> Result<(), String> {
    dec.reset(false);
    dec.decompress(input, out, flate2::FlushDecompress::Finish)
        .map_err(|e| format!("deflate: {e}"))?;
    let got = dec.total_out();
    if got != len64(out.len()) {
        return Err(format!(
            "deflate data ends after {got} of the cluster's {} bytes",
            out.len()
        ));
    }
    Ok(())
}

/// One zstd frame, decoded as QEMU does: until `out` is full, failing if
/// the input stops giving output or the frame does not end with it.
fn unzstd(
    dec: &mut Option<zstd::stream::raw::Decoder<'static>>,
    input: &[u8],
    out: &mut [u8],
) -> Result<(), String> {
    use zstd::stream::raw::{InBuffer, Operation, OutBuffer};
    let dec = match dec {
        Some(d) => {
            d.reinit().map_err(|e| format!("zstd: {e}"))?;
            d
        }
        None => {
            let mut d = zstd::stream::raw::Decoder::new().map_err(|e| format!("zstd: {e}"))?;
            // A cluster is at most 2 MiB: a frame asking for a bigger
            // window is damage, and must not make each thread allocate
            // zstd's default 128 MiB limit.
            d.set_parameter(zstd::stream::raw::DParameter::WindowLogMax(
                ZSTD_WINDOW_LOG_MAX,
            ))
            .map_err(|e| format!("zstd: {e}"))?;
            dec.insert(d)
        }
    };
    let mut src = InBuffer::around(input);
    let mut dst = OutBuffer::around(out);
    let mut hint = 1;
    // Each round consumes input or produces output, or the loop stops:
    // at most input + output rounds.
    for _ in 0..=(input.len() + dst.capacity()) {
        if dst.pos() == dst.capacity() {
            break;
        }
        let (in_before, out_before) = (src.pos(), dst.pos());
        hint = dec
            .run(&mut src, &mut dst)
            .map_err(|e| format!("zstd: {e}"))?;
        if src.pos() == in_before && dst.pos() == out_before {
            break;
        }
    }
    let got = dst.pos();
    if got != dst.capacity() {
        return Err(format!(
            "zstd data ends after {got} of the cluster's {} bytes",
            dst.capacity()
        ));
    }
    if hint != 0 {
        return Err("the zstd frame goes on past the cluster's end".to_owned());
    }
    Ok(())
}

/// The L1 entries that cover the disk (the table may be longer).
fn read_l1(file: &File, h: &Header, entries: u64) -> Result<Vec<u64>, Qcow2Error> {
    // `Header::read` checked that the table lies in the file, so this is
    // bounded by the file's length (and QEMU's 32 MiB limit).
    let mut raw = vec![0u8; to_usize(entries * 8)];
    read_exact(file, &mut raw, h.l1_offset, "L1 table", h.file_len)?;
    Ok(raw.chunks_exact(8).map(|e| be64(e, 0)).collect())
}

fn read_exact(
    file: &File,
    buf: &mut [u8],
    offset: u64,
    what: &str,
    file_len: u64,
) -> Result<(), Qcow2Error> {
    let n = read_up_to(file, buf, offset)?;
    if n < buf.len() {
        // The file shrank since its length was taken.
        return Err(Qcow2Error::Truncated {
            what: what.to_owned(),
            start: offset,
            end: offset + len64(buf.len()),
            len: file_len.min(offset + len64(n)),
        });
    }
    Ok(())
}

fn write(
    out: &mut SparseWriter,
    src: &mut impl Read,
    on_progress: &mut impl FnMut(u64),
) -> Result<(), DecodeError> {
    match out.copy_from(src, on_progress) {
        Ok(()) => Ok(()),
        Err(CopyError::Write(e)) => Err(DecodeError::Write(e)),
        // Only in-memory readers (a buffer, zeros) are copied from here.
        Err(CopyError::Read(e)) => Err(DecodeError::Write(e)),
    }
}

/// The SHA-256 of the first `len` bytes of `file` (its length when the
/// header was read), read on their own: the decoder reads the file out of
/// order. Stops early, with `None`, once `stop` is set.
pub fn hash_file(
    file: &File,
    len: u64,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<Option<Sha256>, Qcow2Error> {
    let mut hasher = Hasher::default();
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    while pos < len {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(None);
        }
        let want = to_usize((len - pos).min(len64(buf.len())));
        read_exact(file, &mut buf[..want], pos, "qcow2 file", len)?;
        hasher.update(&buf[..want]);
        pos += len64(want);
    }
    Ok(Some(hasher.finish()))
}

/// A length bounded by the cluster size, a part or the file's length: it
/// fits the address space of every target this builds for (64-bit).
fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}
