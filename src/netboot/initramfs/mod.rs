//! Whether a node image's initramfs can mount its root over NBD, decided
//! before `serve` offers the node (issue 14 §3; targets.md §4.4: Ubuntu
//! 22.04 images lack `nbd-client`). The initrd is unpacked as the kernel
//! does (init/initramfs.c `unpack_to_rootfs`): a sequence of parts, each
//! an uncompressed cpio archive (an early-microcode archive comes first
//! this way) or one compressed member (gzip, zstd or xz here) whose output
//! is one or more archives, with zero padding between parts. The file tree
//! they build is then searched for what the NBD boot of initramfs-tools
//! needs: the `nbd-client` program, the `scripts/local-top/nbd` script
//! that runs it for `nbdroot=`/`root=/dev/nbd*` (both from Debian's and
//! Ubuntu's nbd-client package, whose initramfs hook adds them), and the
//! nbd driver (a module in the initramfs, or built into the kernel per
//! its `modules.builtin`).
//!
//! Hostile input is bounded: the compressed input, the unpacked bytes,
//! the entries and the bytes of names all have caps (`Limits`), and only
//! small files the checks read are held in memory.

mod cpio;
mod tree;

#[cfg(test)]
mod tests;

use std::fmt;
use std::io::{self, BufReader, Read};

use thiserror::Error;

use self::cpio::Stream;
use self::tree::{Node, Tree};

/// What the checks may consume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of the initrd file itself (read into memory).
    pub max_input: u64,
    /// Bytes of cpio data after decompression, all parts together.
    pub max_output: u64,
    /// cpio entries, all archives together.
    pub max_entries: u64,
    /// Bytes of entry names, all archives together.
    pub max_name_bytes: u64,
}

impl Limits {
    /// Far above real initrds (Ubuntu's raspi initrd is tens of MiB
    /// unpacked, a few thousand entries) and far below what would hurt.
    pub const DEFAULT: Self = Self {
        max_input: 512 << 20,
        max_output: 1 << 30,
        max_entries: 1 << 20,
        max_name_bytes: 64 << 20,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The compressions homelab-image reads inside an initrd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
    Xz,
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
            Self::Xz => "xz",
        })
    }
}

/// One part of an initrd: where it starts in the file and how it is
/// stored. Offsets inside a part count its (decompressed) contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub offset: u64,
    pub compression: Option<Compression>,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.compression {
            None => write!(
                f,
                "the uncompressed cpio archive at byte {} of the initrd",
                self.offset
            ),
            Some(c) => write!(f, "the {c} data at byte {} of the initrd", self.offset),
        }
    }
}

#[derive(Debug, Error)]
pub enum InitramfsError {
    #[error("reading the initrd")]
    Read(#[source] io::Error),
    #[error("the initrd is empty")]
    Empty,
    #[error("the initrd is larger than {limit} bytes; no Raspberry Pi initrd is that large")]
    InputTooLarge { limit: u64 },
    #[error(
        "the initrd unpacks to more than {limit} bytes, more than any real initramfs \
         (a decompression bomb?)"
    )]
    OutputTooLarge { limit: u64 },
    #[error("the initrd holds more than {entries} cpio entries or {name_bytes} bytes of names")]
    TooManyEntries { entries: u64, name_bytes: u64 },
    #[error(
        "the part of the initrd at byte {offset} is compressed with {format}, which \
         homelab-image cannot read (it reads gzip, zstd, xz and uncompressed cpio); \
         rebuild the image's initramfs with COMPRESS=zstd in /etc/initramfs-tools/initramfs.conf"
    )]
    Unsupported { offset: u64, format: &'static str },
    #[error(
        "byte {offset} of the initrd ({byte:#04x}) starts neither a cpio archive at a multiple of \
         four bytes nor compressed data a kernel unpacks"
    )]
    UnknownData { offset: u64, byte: u8 },
    #[error("{part} ends early, at byte {at} of its contents, in {inside} (truncated file?)")]
    Truncated { part: Part, at: u64, inside: String },
    #[error("{part} is corrupt at byte {at} of its contents: {detail}")]
    Corrupt { part: Part, at: u64, detail: String },
    #[error("{part}: the cpio header at byte {at} of its contents is invalid: {detail}")]
    BadHeader { part: Part, at: u64, detail: String },
    #[error("{part}: the data of {name}, at byte {at} of its contents, fails its cpio checksum")]
    BadChecksum { part: Part, at: u64, name: String },
    #[error(
        "{part}: byte {at} of its contents ({byte:#04x}) follows a cpio archive but starts \
         no other"
    )]
    Junk { part: Part, at: u64, byte: u8 },
}

/// What an initramfs has of what an NBD root needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct NbdSupport {
    /// An executable `nbd-client` in sbin or bin (usr-merged or not).
    pub nbd_client: bool,
    /// initramfs-tools' `scripts/local-top/nbd`, which connects the root.
    pub boot_script: bool,
    /// The nbd driver: `nbd.ko*` under lib/modules, or built in.
    pub nbd_module: bool,
}

impl NbdSupport {
    /// Everything an NBD root needs is there.
    pub fn complete(&self) -> bool {
        self.missing().is_empty()
    }

    /// What is missing, one phrase each.
    pub fn missing(&self) -> Vec<&'static str> {
        let mut m = Vec::new();
        if !self.nbd_client {
            m.push("the nbd-client program (sbin/nbd-client)");
        }
        if !self.boot_script {
            m.push("the initramfs-tools NBD boot script (scripts/local-top/nbd)");
        }
        if !self.nbd_module {
            m.push("the nbd kernel module (lib/modules/*/kernel/drivers/block/nbd.ko)");
        }
        m
    }

    /// A sentence for the user when something is missing: what, and the
    /// cure (nbd-client's initramfs hook adds all three).
    pub fn describe_missing(&self) -> Option<String> {
        let m = self.missing();
        let list = match m.as_slice() {
            [] => return None,
            [one] => (*one).to_owned(),
            [init @ .., last] => format!("{} and {last}", init.join(", ")),
        };
        Some(format!(
            "its initramfs cannot mount a root over NBD: it lacks {list}; install the \
             nbd-client package in the image (its initramfs hook adds them; Ubuntu 22.04 \
             images also need linux-modules-extra-raspi for the nbd module) and rebuild \
             the initramfs"
        ))
    }
}

/// Reads `initrd` (at most `Limits::DEFAULT.max_input` bytes) and tells
/// what it has of what an NBD root needs.
pub fn nbd_support(initrd: &mut dyn Read) -> Result<NbdSupport, InitramfsError> {
    nbd_support_with(initrd, &Limits::DEFAULT)
}

/// `nbd_support` with other caps.
pub fn nbd_support_with(
    initrd: &mut dyn Read,
    limits: &Limits,
) -> Result<NbdSupport, InitramfsError> {
    let mut data = Vec::new();
    initrd
        .take(limits.max_input.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(InitramfsError::Read)?;
    if len64(data.len()) > limits.max_input {
        return Err(InitramfsError::InputTooLarge {
            limit: limits.max_input,
        });
    }
    let tree = unpack(&data, limits)?;
    Ok(check(&tree))
}

/// Unpacks every part of `data` into one tree.
fn unpack(data: &[u8], limits: &Limits) -> Result<Tree, InitramfsError> {
    if data.is_empty() {
        return Err(InitramfsError::Empty);
    }
    let mut budget = Budget::new(limits);
    let mut tree = Tree::default();
    let mut rest = data;
    while let Some(&first) = rest.first() {
        let offset = len64(data.len() - rest.len());
        if first == 0 {
            let zeros = rest.iter().take_while(|&&b| b == 0).count();
            rest = &rest[zeros..];
            continue;
        }
        if first == b'0' && offset.is_multiple_of(4) {
            let part = Part {
                offset,
                compression: None,
            };
            let before = rest.len();
            let mut s = Stream::new(&mut rest);
            cpio::read_part(&mut s, part, true, &mut tree, &mut budget)?;
            budget.take_output(len64(before - rest.len()))?;
            continue;
        }
        let compression = detect(rest, offset)?;
        let part = Part {
            offset,
            compression: Some(compression),
        };
        let decoder: Box<dyn Read + '_> = match compression {
            Compression::Gzip => Box::new(flate2::bufread::GzDecoder::new(&mut rest)),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::with_buffer(&mut rest)
                    .map_err(|e| InitramfsError::Corrupt {
                        part,
                        at: 0,
                        detail: format!("starting the zstd decoder: {e}"),
                    })?
                    .single_frame(),
            ),
            Compression::Xz => Box::new(liblzma::bufread::XzDecoder::new(&mut rest)),
        };
        let capped = Capped {
            inner: decoder,
            left: budget.output_left,
        };
        let mut s = Stream::new(BufReader::with_capacity(64 << 10, capped));
        let result = cpio::read_part(&mut s, part, false, &mut tree, &mut budget);
        budget.output_left -= s.pos().min(budget.output_left);
        drop(s);
        result?;
    }
    Ok(tree)
}

/// The compression of a part starting with `head`, by the magic numbers
/// the kernel knows (lib/decompress.c).
fn detect(head: &[u8], offset: u64) -> Result<Compression, InitramfsError> {
    const KNOWN: [(&[u8], Option<Compression>, &str); 8] = [
        (&[0x1f, 0x8b], Some(Compression::Gzip), "gzip"),
        (&[0x1f, 0x9e], Some(Compression::Gzip), "gzip"),
        (&[0x28, 0xb5, 0x2f, 0xfd], Some(Compression::Zstd), "zstd"),
        (
            &[0xfd, b'7', b'z', b'X', b'Z', 0],
            Some(Compression::Xz),
            "xz",
        ),
        (b"BZh", None, "bzip2"),
        (&[0x5d, 0, 0], None, "lzma"),
        (&[0x89, b'L', b'Z', b'O'], None, "lzo"),
        (&[0x02, 0x21, 0x4c, 0x18], None, "lz4 (legacy format)"),
    ];
    for (magic, c, format) in KNOWN {
        if head.starts_with(magic) {
            // The old gzip magic 1f 9e is packed data, which flate2 cannot
            // read either.
            return match c {
                Some(c) if magic != [0x1f, 0x9e] => Ok(c),
                _ => Err(InitramfsError::Unsupported { offset, format }),
            };
        }
    }
    Err(InitramfsError::UnknownData {
        offset,
        byte: head.first().copied().unwrap_or(0),
    })
}

/// What the tree has of what an NBD root needs.
fn check(tree: &Tree) -> NbdSupport {
    let executable = |p: &str| {
        matches!(
            tree.get(p),
            Some(Node::File {
                executable: true,
                ..
            })
        )
    };
    let nbd_client = [
        "sbin/nbd-client",
        "usr/sbin/nbd-client",
        "bin/nbd-client",
        "usr/bin/nbd-client",
    ]
    .iter()
    .any(|p| executable(p));
    let boot_script = executable("scripts/local-top/nbd");
    let nbd_module = tree.files().any(|(path, data)| {
        let Some(rel) = path
            .strip_prefix("usr/lib/modules/")
            .or_else(|| path.strip_prefix("lib/modules/"))
        else {
            return false;
        };
        let Some((_version, rel)) = rel.split_once('/') else {
            return false;
        };
        const MODULE: &str = "kernel/drivers/block/nbd.ko";
        match rel.strip_prefix(MODULE) {
            Some("" | ".gz" | ".xz" | ".zst") => true,
            _ => {
                rel == "modules.builtin"
                    && data
                        .is_some_and(|d| d.split(|&b| b == b'\n').any(|l| l == MODULE.as_bytes()))
            }
        }
    });
    NbdSupport {
        nbd_client,
        boot_script,
        nbd_module,
    }
}

/// The caps left while unpacking.
struct Budget {
    limits: Limits,
    output_left: u64,
    entries_left: u64,
    names_left: u64,
}

impl Budget {
    fn new(limits: &Limits) -> Self {
        Self {
            limits: *limits,
            output_left: limits.max_output,
            entries_left: limits.max_entries,
            names_left: limits.max_name_bytes,
        }
    }

    /// Counts one entry with a name of `name_bytes`.
    fn entry(&mut self, name_bytes: u64) -> Result<(), InitramfsError> {
        if self.entries_left == 0 || self.names_left < name_bytes {
            return Err(InitramfsError::TooManyEntries {
                entries: self.limits.max_entries,
                name_bytes: self.limits.max_name_bytes,
            });
        }
        self.entries_left -= 1;
        self.names_left -= name_bytes;
        Ok(())
    }

    /// Counts the bytes of an uncompressed part.
    fn take_output(&mut self, n: u64) -> Result<(), InitramfsError> {
        self.output_left =
            self.output_left
                .checked_sub(n)
                .ok_or(InitramfsError::OutputTooLarge {
                    limit: self.limits.max_output,
                })?;
        Ok(())
    }

    /// The error for a failed read of a part's contents at `at`, while in
    /// `inside`: the cap, a truncated part, or a decoder's complaint.
    fn io_error(&self, part: Part, at: u64, e: io::Error, inside: &str) -> InitramfsError {
        if e.get_ref().is_some_and(|inner| inner.is::<CapReached>()) {
            return InitramfsError::OutputTooLarge {
                limit: self.limits.max_output,
            };
        }
        if e.kind() == io::ErrorKind::UnexpectedEof {
            return InitramfsError::Truncated {
                part,
                at,
                inside: inside.to_owned(),
            };
        }
        InitramfsError::Corrupt {
            part,
            at,
            detail: format!("{e} (in {inside})"),
        }
    }
}

/// The marker inside the io::Error a `Capped` reader returns.
#[derive(Debug, Error)]
#[error("the unpacked initramfs reached its size cap")]
struct CapReached;

/// A decoder's output, failing once more than `left` bytes come out.
struct Capped<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // One byte past the cap tells a bomb from output that ends there.
        let want =
            usize::try_from(self.left.saturating_add(1)).map_or(buf.len(), |l| l.min(buf.len()));
        let n = self.inner.read(&mut buf[..want])?;
        if len64(n) > self.left {
            return Err(io::Error::other(CapReached));
        }
        self.left -= len64(n);
        Ok(n)
    }
}

/// A buffer length as a count: `usize` is at most 64 bits on every target
/// this builds for.
fn len64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}
