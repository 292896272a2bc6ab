//! Decompresses a base image into a sparse file: xz (liblzma, threaded over
//! the blocks of multi-block files), gzip, zstd, or raw, told apart by their
//! magic bytes. Every format is read member by member (xz streams, gzip
//! members, zstd frames) so that what follows the last one is checked:
//! stream padding is fine, another member is decoded, anything else is
//! trailing data and an error, as are truncation and corruption.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek};
use std::os::unix::fs::FileExt;

use thiserror::Error;

use super::qcow2::{self, Qcow2Error};
use super::sparse::{CopyError, SparseWriter};
use super::xz_index;
use crate::digest::{Hasher, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Xz,
    Gzip,
    Zstd,
    /// A qcow2 disk image (QEMU's format), read cluster by cluster.
    Qcow2,
    Raw,
}

const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0];
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

impl Format {
    /// The format of a file starting with `head` (at least 6 bytes unless
    /// the file is shorter).
    pub fn detect(head: &[u8]) -> Self {
        if head.starts_with(XZ_MAGIC) {
            Self::Xz
        } else if head.starts_with(GZIP_MAGIC) {
            Self::Gzip
        } else if head.starts_with(ZSTD_MAGIC) {
            Self::Zstd
        } else if head.starts_with(qcow2::MAGIC) {
            Self::Qcow2
        } else {
            Self::Raw
        }
    }

    fn magic(self) -> &'static [u8] {
        match self {
            Self::Xz => XZ_MAGIC,
            Self::Gzip => GZIP_MAGIC,
            Self::Zstd => ZSTD_MAGIC,
            Self::Qcow2 => qcow2::MAGIC,
            Self::Raw => &[],
        }
    }

    /// A file-name extension for a blob of this format.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Xz => "xz",
            Self::Gzip => "gz",
            Self::Zstd => "zst",
            Self::Qcow2 => "qcow2",
            Self::Raw => "img",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Xz => "xz",
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
            Self::Qcow2 => "qcow2",
            Self::Raw => "raw",
        })
    }
}

#[derive(Debug, Error)]
pub enum DecompressError {
    #[error(
        "the {format} data ends early, after {output_bytes} bytes of output \
         (truncated file?)"
    )]
    Truncated { format: Format, output_bytes: u64 },
    #[error("the {format} data is corrupt, after {output_bytes} bytes of output: {detail}")]
    Corrupt {
        format: Format,
        output_bytes: u64,
        detail: String,
    },
    #[error("unexpected data after the end of the {format} data, at byte {offset} of the file")]
    TrailingData { format: Format, offset: u64 },
    #[error("the image is empty")]
    Empty,
    #[error("reading the compressed file")]
    Read(#[source] io::Error),
    #[error("writing the image")]
    Write(#[source] io::Error),
    #[error("starting the xz decoder: {0}")]
    Decoder(String),
    #[error(transparent)]
    Qcow2(#[from] Qcow2Error),
}

/// How the input was decoded, for the user and the cache metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    pub format: Format,
    /// xz only: blocks in the file, per its index.
    pub xz_blocks: Option<u64>,
    pub threads: u32,
    /// SHA-256 of the compressed input, when asked for.
    pub input_sha256: Option<Sha256>,
    pub input_size: u64,
}

/// What decompression may use.
#[derive(Debug, Clone, Copy)]
pub struct DecodeOptions {
    /// Decoder threads for multi-block xz files.
    pub threads: u32,
    /// Hash the compressed bytes as they are read.
    pub hash_input: bool,
}

/// What the caller learns before decoding starts (for its progress bar).
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub format: Format,
    pub output_size: Option<u64>,
    pub xz_blocks: Option<u64>,
    pub threads: u32,
    /// qcow2 only: its checked header.
    pub qcow2: Option<qcow2::Header>,
}

/// Looks at the head and (for xz) the index of `input`.
pub fn plan(input: &mut File, opts: &DecodeOptions) -> Result<Plan, DecompressError> {
    let mut head = [0u8; 6];
    let n = read_head_at(input, &mut head, 0).map_err(DecompressError::Read)?;
    let format = Format::detect(&head[..n]);
    let size = input.metadata().map_err(DecompressError::Read)?.len();
    let mut p = Plan {
        format,
        output_size: (format == Format::Raw).then_some(size),
        xz_blocks: None,
        threads: 1,
        qcow2: None,
    };
    if format == Format::Qcow2 {
        let header = qcow2::Header::read(input)?;
        p.output_size = Some(header.size);
        p.threads = opts.threads.max(1);
        p.qcow2 = Some(header);
    }
    if format == Format::Xz
        && let Some(layout) = xz_index::read_layout(input)
    {
        p.output_size = Some(layout.uncompressed_size);
        p.xz_blocks = Some(layout.blocks);
        // A single block cannot be split between threads.
        if layout.blocks > 1 {
            let blocks = u32::try_from(layout.blocks).unwrap_or(u32::MAX);
            p.threads = opts.threads.clamp(1, blocks);
        }
    }
    if format == Format::Xz && p.xz_blocks.is_none() {
        // No readable index (unusual writer, or damage): let the threaded
        // decoder decide; it decodes single-threaded what it cannot split.
        p.threads = opts.threads.max(1);
    }
    Ok(p)
}

/// Decodes `input` from its start into `out`, as `plan` said.
pub fn decompress(
    mut input: File,
    plan: &Plan,
    opts: &DecodeOptions,
    out: &mut SparseWriter,
    on_progress: impl FnMut(u64),
) -> Result<Decoded, DecompressError> {
    if let Some(header) = &plan.qcow2 {
        return decode_qcow2(&input, header, plan, opts, out, on_progress);
    }
    // `plan` read the index at the end of the file.
    input
        .seek(io::SeekFrom::Start(0))
        .map_err(DecompressError::Read)?;
    let counting = Counting {
        inner: input,
        pos: 0,
        hasher: opts.hash_input.then(Hasher::default),
        failed: false,
    };
    let mut reader = BufReader::with_capacity(1 << 20, counting);
    let mut on_progress = on_progress;
    let format = plan.format;
    loop {
        let result = match format {
            Format::Raw => out.copy_from(&mut reader, &mut on_progress),
            Format::Xz => {
                let stream = xz_stream(plan.threads)?;
                let mut dec = liblzma::bufread::XzDecoder::new_stream(&mut reader, stream);
                out.copy_from(&mut dec, &mut on_progress)
            }
            Format::Gzip => {
                let mut dec = flate2::bufread::GzDecoder::new(&mut reader);
                out.copy_from(&mut dec, &mut on_progress)
            }
            // `plan` sets `qcow2` for every qcow2 file: handled above.
            Format::Qcow2 => unreachable!("qcow2 is decoded by decode_qcow2"),
            Format::Zstd => {
                let dec = zstd::stream::read::Decoder::with_buffer(&mut reader)
                    .map_err(|e| DecompressError::Decoder(e.to_string()))?;
                let mut dec = dec.single_frame();
                out.copy_from(&mut dec, &mut on_progress)
            }
        };
        match result {
            Ok(()) => {}
            Err(CopyError::Write(e)) => return Err(DecompressError::Write(e)),
            Err(CopyError::Read(e)) => {
                return Err(if reader.get_ref().failed {
                    DecompressError::Read(e)
                } else {
                    classify(format, out.position(), &e)
                });
            }
        }
        if format == Format::Raw || !more_members(&mut reader, format)? {
            break;
        }
    }
    let counting = reader.into_inner();
    if out.position() == 0 {
        return Err(DecompressError::Empty);
    }
    Ok(Decoded {
        format,
        xz_blocks: plan.xz_blocks,
        threads: plan.threads,
        input_sha256: counting.hasher.map(Hasher::finish),
        input_size: counting.pos,
    })
}

/// Decodes a qcow2 image, hashing the file on another thread when asked
/// (the decoder reads it out of order).
fn decode_qcow2(
    input: &File,
    header: &qcow2::Header,
    plan: &Plan,
    opts: &DecodeOptions,
    out: &mut SparseWriter,
    mut on_progress: impl FnMut(u64),
) -> Result<Decoded, DecompressError> {
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (decoded, hashed) = std::thread::scope(|s| {
        let hasher = opts
            .hash_input
            .then(|| s.spawn(|| qcow2::hash_file(input, header.file_len, &stop)));
        let decoded = qcow2::decode(input, header, plan.threads, out, &mut on_progress);
        if decoded.is_err() {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        // The hasher only reads and hashes; a panic there is a bug, passed on.
        let hashed = hasher.map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        (decoded, hashed)
    });
    decoded.map_err(|e| match e {
        qcow2::DecodeError::Qcow2(e) => DecompressError::Qcow2(e),
        qcow2::DecodeError::Write(e) => DecompressError::Write(e),
    })?;
    let input_sha256 = hashed.transpose()?.flatten();
    if out.position() == 0 {
        return Err(DecompressError::Empty);
    }
    Ok(Decoded {
        format: Format::Qcow2,
        xz_blocks: None,
        threads: plan.threads,
        input_sha256,
        input_size: header.file_len,
    })
}

/// After one member: skips xz stream padding, then tells whether another
/// member follows (true), the input ended (false), or something else
/// follows (error).
fn more_members(reader: &mut BufReader<Counting>, format: Format) -> Result<bool, DecompressError> {
    let mut zeros: u64 = 0;
    if format == Format::Xz {
        loop {
            let buf = reader.fill_buf().map_err(DecompressError::Read)?;
            let n = buf.iter().take_while(|&&b| b == 0).count();
            if n == 0 {
                break;
            }
            reader.consume(n);
            zeros += super::len64(n);
        }
    }
    let offset = reader.get_ref().pos - super::len64(reader.buffer().len());
    // Stream padding comes in groups of four bytes (xz §2.2).
    if !zeros.is_multiple_of(4) {
        return Err(DecompressError::TrailingData {
            format,
            offset: offset - zeros,
        });
    }
    // Peek at the file itself: the buffer may end inside the next magic.
    let magic = format.magic();
    let mut head = vec![0u8; magic.len()];
    let n =
        read_head_at(&reader.get_ref().inner, &mut head, offset).map_err(DecompressError::Read)?;
    match n {
        0 => Ok(false),
        _ if head[..n] == *magic => Ok(true),
        _ => Err(DecompressError::TrailingData { format, offset }),
    }
}

fn xz_stream(threads: u32) -> Result<liblzma::stream::Stream, DecompressError> {
    let stream = if threads > 1 {
        // memlimit_threading must be set: left at 0, liblzma treats every
        // block as over the limit and decodes on one thread (crates.md §4).
        liblzma::stream::MtStreamBuilder::new()
            .threads(threads)
            .memlimit_threading(threading_memlimit())
            .memlimit_stop(u64::MAX)
            .decoder()
    } else {
        liblzma::stream::Stream::new_stream_decoder(u64::MAX, 0)
    };
    stream.map_err(|e| DecompressError::Decoder(e.to_string()))
}

/// A quarter of physical memory, as xz(1) uses by default for threading,
/// but at least 256 MiB so small machines still get two threads on
/// ordinary (up to 64 MiB) blocks.
fn threading_memlimit() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            kib.checked_mul(1024)
        })
        .unwrap_or(4 << 30);
    (total / 4).max(256 << 20)
}

fn classify(format: Format, output_bytes: u64, e: &io::Error) -> DecompressError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        return DecompressError::Truncated {
            format,
            output_bytes,
        };
    }
    let detail = match (format, e.to_string().as_str()) {
        (Format::Xz, "lzma data error") => "a block fails to decode or its check fails".to_owned(),
        (Format::Xz, "stream/file format not recognized") => "not a valid xz stream".to_owned(),
        (_, s) => s.to_owned(),
    };
    DecompressError::Corrupt {
        format,
        output_bytes,
        detail,
    }
}

fn read_head_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + super::len64(n))? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The compressed input: counts and optionally hashes what is read, and
/// remembers whether the file itself failed (to tell I/O errors from
/// corrupt data).
struct Counting {
    inner: File,
    pos: u64,
    hasher: Option<Hasher>,
    failed: bool,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                if let Some(h) = &mut self.hasher {
                    h.update(&buf[..n]);
                }
                self.pos += super::len64(n);
                Ok(n)
            }
            Err(e) => {
                self.failed = e.kind() != io::ErrorKind::Interrupted;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn data() -> Vec<u8> {
        let mut v: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        v.resize(v.len() + 100_000, 0);
        v
    }

    fn xz(d: &[u8], threads: u32) -> Vec<u8> {
        let stream = liblzma::stream::MtStreamBuilder::new()
            .threads(threads)
            .block_size(100_000)
            .preset(0)
            .encoder()
            .unwrap();
        let mut enc = liblzma::write::XzEncoder::new_stream(Vec::new(), stream);
        enc.write_all(d).unwrap();
        enc.finish().unwrap()
    }

    fn gz(d: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(d).unwrap();
        enc.finish().unwrap()
    }

    fn zst(d: &[u8]) -> Vec<u8> {
        zstd::encode_all(d, 1).unwrap()
    }

    /// Decodes `input` through a file, as `ensure_base` does.
    fn run(input: &[u8]) -> Result<(Vec<u8>, Decoded), DecompressError> {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("in");
        std::fs::write(&src, input).unwrap();
        let opts = DecodeOptions {
            threads: 2,
            hash_input: true,
        };
        let mut f = File::open(&src).unwrap();
        let plan = plan(&mut f, &opts)?;
        let out = dir.path().join("out");
        let mut w = SparseWriter::new(File::create(&out).unwrap());
        let decoded = decompress(f, &plan, &opts, &mut w, |_| {})?;
        w.finish().unwrap();
        Ok((std::fs::read(out).unwrap(), decoded))
    }

    #[test]
    fn every_format_round_trips_and_hashes_its_input() {
        let d = data();
        for (input, format) in [
            (xz(&d, 2), Format::Xz),
            (gz(&d), Format::Gzip),
            (zst(&d), Format::Zstd),
            (d.clone(), Format::Raw),
        ] {
            let (out, decoded) = run(&input).unwrap();
            assert!(out == d, "{format}");
            assert_eq!(decoded.format, format);
            assert_eq!(decoded.input_sha256, Some(Sha256::of(&input)));
            assert_eq!(decoded.input_size, input.len() as u64);
        }
    }

    #[test]
    fn multi_block_xz_uses_threads_and_single_block_does_not() {
        let d = data();
        let (_, multi) = run(&xz(&d, 2)).unwrap();
        assert_eq!(multi.xz_blocks, Some(9));
        assert_eq!(multi.threads, 2);
        let single = {
            let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 0);
            enc.write_all(&d).unwrap();
            enc.finish().unwrap()
        };
        let (out, one) = run(&single).unwrap();
        assert!(out == d);
        assert_eq!((one.xz_blocks, one.threads), (Some(1), 1));
    }

    #[test]
    fn members_padding_and_trailing_data() {
        let d = data();
        // Concatenated xz streams with stream padding between and after.
        let mut cat = xz(&d[..1000], 1);
        cat.extend_from_slice(&[0; 8]);
        cat.extend_from_slice(&xz(&d[1000..], 2));
        cat.extend_from_slice(&[0; 4]);
        assert!(run(&cat).unwrap().0 == d);
        // Gzip members and zstd frames.
        let two_gz = [gz(&d[..5]), gz(&d[5..])].concat();
        assert!(run(&two_gz).unwrap().0 == d);
        let two_zst = [zst(&d[..5]), zst(&d[5..])].concat();
        assert!(run(&two_zst).unwrap().0 == d);
        // Padding that is not a multiple of four, and garbage.
        let x = xz(&d, 2);
        for (tail, at) in [(&[0u8; 3][..], x.len()), (b"junk", x.len())] {
            let e = run(&[&x[..], tail].concat()).unwrap_err();
            assert!(
                matches!(e, DecompressError::TrailingData { format: Format::Xz, offset } if offset as usize == at),
                "{e}"
            );
        }
        let g = gz(&d);
        let e = run(&[&g[..], b"\0\0\0\0"].concat()).unwrap_err();
        assert!(
            matches!(
                e,
                DecompressError::TrailingData {
                    format: Format::Gzip,
                    ..
                }
            ),
            "{e}"
        );
        let z = zst(&d);
        let e = run(&[&z[..], b"zz"].concat()).unwrap_err();
        assert!(
            matches!(
                e,
                DecompressError::TrailingData {
                    format: Format::Zstd,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn truncation_and_corruption_are_told_apart() {
        let d = data();
        for input in [xz(&d, 2), gz(&d), zst(&d)] {
            let cut = &input[..input.len() - 9];
            let e = run(cut).unwrap_err();
            assert!(matches!(e, DecompressError::Truncated { .. }), "{e}");
        }
        let mut bad = xz(&d, 2);
        let mid = bad.len() / 2;
        bad[mid] ^= 0xff;
        let e = run(&bad).unwrap_err();
        assert!(
            matches!(
                e,
                DecompressError::Corrupt {
                    format: Format::Xz,
                    ..
                }
            ),
            "{e}"
        );
        let mut bad = gz(&d);
        let n = bad.len();
        bad[n - 6] ^= 1; // the CRC32 in the trailer
        let e = run(&bad).unwrap_err();
        assert!(
            matches!(
                e,
                DecompressError::Corrupt {
                    format: Format::Gzip,
                    ..
                }
            ),
            "{e}"
        );
        assert!(matches!(run(b""), Err(DecompressError::Empty)));
    }
}
