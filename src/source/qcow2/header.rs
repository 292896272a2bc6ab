//! The qcow2 header (QEMU's docs/interop/qcow2.txt): the fixed 72-byte
//! version 2 part, the version 3 additions (feature bits, header length,
//! compression type), and every reason this reader refuses an image —
//! each naming the header field or the file offset at fault.

use std::fs::File;
use std::os::unix::fs::FileExt;

use thiserror::Error;

pub const MAGIC: &[u8] = b"QFI\xfb";

/// Header bytes of a version 2 image; version 3 has at least 104.
const V2_LEN: usize = 72;
const V3_MIN_LEN: usize = 104;
/// QEMU's own limits: an L1 table of at most 32 MiB, a backing file name
/// of at most 1023 bytes.
const MAX_L1_BYTES: u64 = 32 << 20;
const MAX_BACKING_NAME: u32 = 1023;
/// The largest virtual disk decoded: the whole size is hashed and written
/// (sparse) into the cache, so a header claiming exabytes must not start.
pub const MAX_VIRTUAL_SIZE: u64 = 16 << 40;

/// Incompatible feature bits (header byte 72), by bit number.
const INCOMPATIBLE: [(u32, &str); 5] = [
    (
        0,
        "dirty (the image was not closed cleanly: its refcounts may be wrong; \
         `qemu-img check -r all` repairs it)",
    ),
    (
        1,
        "corrupt (QEMU found its metadata inconsistent; `qemu-img check -r all` may repair it)",
    ),
    (2, "external data file (the data is not in this file)"),
    (3, "compression type"),
    (
        4,
        "extended L2 entries (subclusters; `qemu-img convert -O qcow2 -o extended_l2=off` \
         makes an image without them)",
    ),
];
const COMPRESSION_TYPE_BIT: u64 = 1 << 3;

#[derive(Debug, Error)]
pub enum Qcow2Error {
    #[error("not a qcow2 image (no QFI\\xfb magic at byte 0)")]
    BadMagic,
    #[error(
        "the file ends at byte {len}, inside the {what} (bytes {start}..{end}): truncated file?"
    )]
    Truncated {
        what: String,
        start: u64,
        end: u64,
        len: u64,
    },
    #[error(
        "qcow2 version {0} (header field version, byte 4) is not supported; only versions 2 and 3 are"
    )]
    Version(u32),
    #[error(
        "qcow2 header field cluster_bits (byte 20) is {0}; qcow2 clusters are 2^9 to 2^21 bytes"
    )]
    ClusterBits(u32),
    #[error(
        "qcow2 header field header_length (byte 100) is {0}; a version 3 header is at least \
         104 bytes, a multiple of 8, and fits in the first cluster"
    )]
    HeaderLength(u32),
    #[error(
        "qcow2 with a backing file ({0}) cannot be read on its own; \
         `qemu-img convert -O qcow2 IMAGE FLAT.qcow2` writes one without it"
    )]
    Backing(String),
    #[error(
        "the qcow2 image is encrypted (header field crypt_method, byte 32, is {method}: {name}); \
         homelab-image reads only unencrypted images"
    )]
    Encrypted { method: u32, name: &'static str },
    #[error(
        "the qcow2 image sets incompatible feature bits this reader does not handle \
         (header field incompatible_features, byte 72): {0}"
    )]
    Incompatible(String),
    #[error(
        "qcow2 header field compression_type (byte 104) is {0} with the compression type \
         feature bit {1}; only 0 (zlib) and 1 (zstd) are known, and 1 needs the bit set"
    )]
    CompressionType(u8, &'static str),
    #[error("qcow2 header field size (byte 24) is {size} bytes: {why}")]
    VirtualSize { size: u64, why: &'static str },
    #[error(
        "qcow2 header field l1_size (byte 36) is {l1_size} entries: {why} \
         (the virtual size {size} needs {needed})"
    )]
    L1Size {
        l1_size: u32,
        size: u64,
        needed: u64,
        why: &'static str,
    },
    #[error(
        "the {what} at byte {offset} of the file is not aligned to a {cluster_size}-byte cluster"
    )]
    Misaligned {
        what: String,
        offset: u64,
        cluster_size: u64,
    },
    #[error(
        "the {what} at byte {offset} of the file lies past its end (the file has {len} bytes): \
         truncated or corrupt file"
    )]
    PastEnd { what: String, offset: u64, len: u64 },
    #[error(
        "the compressed cluster at byte {host_offset} of the file (disk byte {disk_offset}) \
         does not decode: {detail}"
    )]
    Compressed {
        host_offset: u64,
        disk_offset: u64,
        detail: String,
    },
    #[error("reading the qcow2 file at byte {offset}")]
    Read {
        offset: u64,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Zlib,
    Zstd,
}

/// What the decoder needs from the header, every field checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub cluster_bits: u32,
    /// The virtual disk's size in bytes.
    pub size: u64,
    pub l1_offset: u64,
    pub l1_size: u32,
    pub compression: Compression,
    pub snapshots: u32,
    /// Length of the file the header was read from.
    pub file_len: u64,
}

impl Header {
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Entries in one L2 table (8 bytes each, one cluster).
    pub fn l2_entries(&self) -> u64 {
        1 << (self.cluster_bits - 3)
    }

    /// Reads and checks the header of `file`.
    pub fn read(file: &File) -> Result<Header, Qcow2Error> {
        let file_len = file
            .metadata()
            .map_err(|source| Qcow2Error::Read { offset: 0, source })?
            .len();
        let mut h = [0u8; V3_MIN_LEN + 1];
        let got = read_up_to(file, &mut h, 0)?;
        let h = &h[..got];
        if !h.starts_with(MAGIC) {
            return Err(Qcow2Error::BadMagic);
        }
        let need = |end: usize| -> Result<(), Qcow2Error> {
            if h.len() < end {
                return Err(Qcow2Error::Truncated {
                    what: "qcow2 header".to_owned(),
                    start: 0,
                    end: crate::source::len64(end),
                    len: file_len,
                });
            }
            Ok(())
        };
        need(8)?;
        let version = be32(h, 4);
        if version != 2 && version != 3 {
            return Err(Qcow2Error::Version(version));
        }
        need(V2_LEN)?;
        let cluster_bits = be32(h, 20);
        if !(9..=21).contains(&cluster_bits) {
            return Err(Qcow2Error::ClusterBits(cluster_bits));
        }
        let cluster_size = 1u64 << cluster_bits;
        let (incompatible, compression_byte) = if version == 3 {
            need(V3_MIN_LEN)?;
            let header_length = be32(h, 100);
            if u64::from(header_length) < crate::source::len64(V3_MIN_LEN)
                || !header_length.is_multiple_of(8)
                || u64::from(header_length) > cluster_size
            {
                return Err(Qcow2Error::HeaderLength(header_length));
            }
            let has_compression_type = u64::from(header_length) > crate::source::len64(V3_MIN_LEN);
            if has_compression_type {
                need(V3_MIN_LEN + 1)?;
            }
            let compression = has_compression_type.then(|| h[V3_MIN_LEN]);
            (be64(h, 72), compression.unwrap_or(0))
        } else {
            (0, 0)
        };
        // Encryption and backing files first: their messages say more than
        // the feature bits that may come with them.
        let crypt_method = be32(h, 32);
        if crypt_method != 0 {
            let name = match crypt_method {
                1 => "AES-CBC",
                2 => "LUKS",
                _ => "an unknown method",
            };
            return Err(Qcow2Error::Encrypted {
                method: crypt_method,
                name,
            });
        }
        let backing_offset = be64(h, 8);
        if backing_offset != 0 {
            return Err(Qcow2Error::Backing(backing_name(
                file,
                file_len,
                backing_offset,
                be32(h, 16),
            )));
        }
        // Extended L2 entries (bit 4) are refused here too, by name.
        let unknown = incompatible & !COMPRESSION_TYPE_BIT;
        if unknown != 0 {
            return Err(Qcow2Error::Incompatible(feature_names(unknown)));
        }
        let compression = match (compression_byte, incompatible & COMPRESSION_TYPE_BIT != 0) {
            (0, false) => Compression::Zlib,
            (1, true) => Compression::Zstd,
            (b, bit) => {
                return Err(Qcow2Error::CompressionType(
                    b,
                    if bit { "set" } else { "clear" },
                ));
            }
        };
        let size = be64(h, 24);
        if size > MAX_VIRTUAL_SIZE {
            return Err(Qcow2Error::VirtualSize {
                size,
                why: "more than the 16 TiB this reader decodes",
            });
        }
        let l1_size = be32(h, 36);
        // Every virtual cluster needs an L1 entry to find its L2 table.
        let per_l2 = cluster_size * (cluster_size / 8);
        let needed = size.div_ceil(per_l2);
        if u64::from(l1_size) < needed {
            return Err(Qcow2Error::L1Size {
                l1_size,
                size,
                needed,
                why: "too few",
            });
        }
        if u64::from(l1_size) * 8 > MAX_L1_BYTES {
            return Err(Qcow2Error::L1Size {
                l1_size,
                size,
                needed,
                why: "more than QEMU's 32 MiB L1 limit",
            });
        }
        let l1_offset = be64(h, 40);
        if needed > 0 {
            check_table(
                "L1 table",
                l1_offset,
                u64::from(l1_size) * 8,
                cluster_size,
                file_len,
            )?;
        }
        Ok(Header {
            version,
            cluster_bits,
            size,
            l1_offset,
            l1_size,
            compression,
            snapshots: be32(h, 60),
            file_len,
        })
    }
}

/// Checks that a table of `len` bytes at `offset` is cluster-aligned and
/// inside the file.
pub fn check_table(
    what: &str,
    offset: u64,
    len: u64,
    cluster_size: u64,
    file_len: u64,
) -> Result<(), Qcow2Error> {
    if !offset.is_multiple_of(cluster_size) {
        return Err(Qcow2Error::Misaligned {
            what: what.to_owned(),
            offset,
            cluster_size,
        });
    }
    if offset >= file_len {
        return Err(Qcow2Error::PastEnd {
            what: what.to_owned(),
            offset,
            len: file_len,
        });
    }
    match offset.checked_add(len) {
        Some(end) if end <= file_len => Ok(()),
        end => Err(Qcow2Error::Truncated {
            what: what.to_owned(),
            start: offset,
            end: end.unwrap_or(u64::MAX),
            len: file_len,
        }),
    }
}

/// The backing file's name for the refusal: read when it lies in the file
/// and is of a sane length, shown with control characters escaped.
fn backing_name(file: &File, file_len: u64, offset: u64, len: u32) -> String {
    let fallback = || format!("its name at byte {offset}, {len} bytes, is unreadable");
    if len == 0 || len > MAX_BACKING_NAME || offset.saturating_add(u64::from(len)) > file_len {
        return fallback();
    }
    let Ok(len) = usize::try_from(len) else {
        return fallback();
    };
    // At most MAX_BACKING_NAME bytes, checked above.
    let mut buf = vec![0u8; len];
    match read_up_to(file, &mut buf, offset) {
        Ok(n) if n == buf.len() => String::from_utf8_lossy(&buf).escape_debug().to_string(),
        _ => fallback(),
    }
}

fn feature_names(bits: u64) -> String {
    (0..64)
        .filter(|b| bits & (1 << b) != 0)
        .map(|b| match INCOMPATIBLE.iter().find(|(n, _)| *n == b) {
            Some((_, name)) => format!("bit {b}, {name}"),
            None => format!("bit {b}, unknown"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Reads at `offset` until `buf` is full or the file ends; returns the
/// bytes read.
pub fn read_up_to(file: &File, buf: &mut [u8], offset: u64) -> Result<usize, Qcow2Error> {
    let mut n = 0;
    while n < buf.len() {
        let at = offset + crate::source::len64(n);
        match file.read_at(&mut buf[n..], at) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => return Err(Qcow2Error::Read { offset: at, source }),
        }
    }
    Ok(n)
}

pub fn be32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

pub fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}
