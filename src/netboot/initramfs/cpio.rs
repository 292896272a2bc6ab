//! The cpio archives a Linux kernel unpacks as its initramfs ("newc",
//! magic `070701`, and "crc", `070702`; init/initramfs.c): 110-byte ASCII
//! headers, NUL-terminated names and file data, each padded to four bytes,
//! up to the `TRAILER!!!` entry. Reads one part of an initrd (the
//! decompressed output of one compressed member, or one uncompressed
//! archive) into a `Tree`, counting every entry and name byte against the
//! caller's `Budget`.

use std::io::{self, BufRead};

use super::tree::{Node, Tree};
use super::{Budget, InitramfsError, Part, len64};

const HEADER_LEN: usize = 110;
/// The kernel refuses longer names and symlink targets (PATH_MAX).
const PATH_MAX: u64 = 4096;
/// Files whose contents the checks read (`modules.builtin`, tens of KiB on
/// real kernels) are kept up to this size; larger ones are skipped.
const KEPT_FILE_MAX: u64 = 4 << 20;

const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;

/// A part's output with the count of bytes consumed, for error offsets and
/// the four-byte padding (which the kernel counts from the part's start).
pub(super) struct Stream<R> {
    inner: R,
    pos: u64,
}

impl<R: BufRead> Stream<R> {
    pub(super) fn new(inner: R) -> Self {
        Self { inner, pos: 0 }
    }

    pub(super) fn pos(&self) -> u64 {
        self.pos
    }

    fn fill(&mut self) -> io::Result<&[u8]> {
        while let Err(e) = self.inner.fill_buf() {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        // Filled: this returns the buffered bytes without reading.
        self.inner.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        self.inner.consume(n);
        self.pos += len64(n);
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let avail = self.fill()?;
            if avail.is_empty() {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let k = avail.len().min(buf.len() - done);
            buf[done..done + k].copy_from_slice(&avail[..k]);
            self.consume(k);
            done += k;
        }
        Ok(())
    }

    /// Reads past `n` bytes, adding each to `sum` if given (the "crc"
    /// format's checksum is the 32-bit sum of a file's bytes; newc has
    /// none, and summing costs a pass over every byte).
    fn skip(&mut self, mut n: u64, mut sum: Option<&mut u32>) -> io::Result<()> {
        while n > 0 {
            let avail = self.fill()?;
            if avail.is_empty() {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            // min() with a u64 that fits the buffer's usize length.
            let k = usize::try_from(n).map_or(avail.len(), |n| n.min(avail.len()));
            if let Some(sum) = sum.as_deref_mut() {
                *sum = avail[..k]
                    .iter()
                    .fold(*sum, |s, &b| s.wrapping_add(u32::from(b)));
            }
            self.consume(k);
            n -= len64(k);
        }
        Ok(())
    }

    /// Skips zero bytes; returns the next byte (not consumed), or None at
    /// the end of the part.
    pub(super) fn skip_zeros(&mut self) -> io::Result<Option<u8>> {
        loop {
            let avail = self.fill()?;
            let Some(&first) = avail.first() else {
                return Ok(None);
            };
            if first != 0 {
                return Ok(Some(first));
            }
            let zeros = avail.iter().take_while(|&&b| b == 0).count();
            self.consume(zeros);
        }
    }

    fn pad_to_4(&mut self) -> io::Result<()> {
        let pad = (4 - self.pos % 4) % 4;
        self.skip(pad, None)
    }
}

/// What the reader was in the middle of, for an error message.
#[derive(Clone, Copy)]
enum Inside<'a> {
    Header,
    Name,
    Data(&'a str),
}

impl Inside<'_> {
    fn describe(self) -> String {
        match self {
            Self::Header => "the header of an entry".to_owned(),
            Self::Name => "the name of an entry".to_owned(),
            Self::Data(name) => format!("the data of {name}"),
        }
    }
}

/// A decoded newc/crc header (the fields the kernel uses).
struct Header {
    crc: bool,
    mode: u32,
    filesize: u64,
    namesize: u64,
    check: u32,
}

impl Header {
    fn parse(h: &[u8; HEADER_LEN]) -> Result<Self, String> {
        let crc = match &h[..6] {
            b"070701" => false,
            b"070702" => true,
            b"070707" => {
                return Err(
                    "old portable cpio format (070707); kernels read only newc (cpio -H newc)"
                        .to_owned(),
                );
            }
            m => {
                return Err(format!(
                    "magic {:?}, not 070701 (newc) or 070702 (crc)",
                    String::from_utf8_lossy(m)
                ));
            }
        };
        const NAMES: [&str; 13] = [
            "c_ino",
            "c_mode",
            "c_uid",
            "c_gid",
            "c_nlink",
            "c_mtime",
            "c_filesize",
            "c_devmajor",
            "c_devminor",
            "c_rdevmajor",
            "c_rdevminor",
            "c_namesize",
            "c_check",
        ];
        let mut f = [0u32; 13];
        for (i, (v, name)) in f.iter_mut().zip(NAMES).enumerate() {
            let raw = &h[6 + 8 * i..14 + 8 * i];
            *v = std::str::from_utf8(raw)
                .ok()
                .filter(|s| s.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|s| u32::from_str_radix(s, 16).ok())
                .ok_or_else(|| {
                    format!(
                        "field {name} is {:?}, not 8 hex digits",
                        String::from_utf8_lossy(raw)
                    )
                })?;
        }
        let namesize = u64::from(f[11]);
        if namesize == 0 || namesize > PATH_MAX {
            return Err(format!(
                "c_namesize is {namesize}; names are 1 to {PATH_MAX} bytes with their NUL"
            ));
        }
        Ok(Self {
            crc,
            mode: f[1],
            filesize: u64::from(f[6]),
            namesize,
            check: f[12],
        })
    }
}

/// Reads a part's archives into `tree`. An uncompressed part (`one`) is a
/// single archive, up to its `TRAILER!!!`; a compressed part's output is
/// one or more archives separated by zero padding up to its end, which
/// must fall between archives, as the kernel requires.
pub(super) fn read_part<R: BufRead>(
    s: &mut Stream<R>,
    part: Part,
    one: bool,
    tree: &mut Tree,
    budget: &mut Budget,
) -> Result<(), InitramfsError> {
    let mut archives = 0u64;
    loop {
        if !one {
            let at = s.pos;
            match s.skip_zeros() {
                // A member that decodes to nothing is a cut one: some
                // decoders (flate2) end quietly inside a truncated header.
                Ok(None) if archives == 0 => {
                    return Err(InitramfsError::Truncated {
                        part,
                        at: s.pos,
                        inside: "its first cpio archive".to_owned(),
                    });
                }
                Ok(None) => return Ok(()),
                Ok(Some(b'0')) => {}
                Ok(Some(byte)) => {
                    return Err(InitramfsError::Junk {
                        part,
                        at: s.pos,
                        byte,
                    });
                }
                Err(e) => return Err(budget.io_error(part, at, e, "zero padding")),
            }
        }
        read_archive(s, part, tree, budget)?;
        archives += 1;
        if one {
            return Ok(());
        }
    }
}

/// Reads entries up to and including `TRAILER!!!`.
fn read_archive<R: BufRead>(
    s: &mut Stream<R>,
    part: Part,
    tree: &mut Tree,
    budget: &mut Budget,
) -> Result<(), InitramfsError> {
    loop {
        let at = s.pos;
        if !at.is_multiple_of(4) {
            return Err(InitramfsError::BadHeader {
                part,
                at,
                detail: "it does not start at a multiple of four bytes (broken padding)".to_owned(),
            });
        }
        let io = |budget: &Budget, s: &Stream<R>, e: io::Error, inside: Inside| {
            budget.io_error(part, s.pos, e, &inside.describe())
        };
        let mut raw = [0u8; HEADER_LEN];
        if let Err(e) = s.read_exact(&mut raw) {
            return Err(io(budget, s, e, Inside::Header));
        }
        let h =
            Header::parse(&raw).map_err(|detail| InitramfsError::BadHeader { part, at, detail })?;
        budget.entry(h.namesize)?;
        // namesize <= PATH_MAX, checked by parse.
        let mut name = vec![0u8; usize::try_from(h.namesize).unwrap_or(0)];
        if let Err(e) = s.read_exact(&mut name).and_then(|()| s.pad_to_4()) {
            return Err(io(budget, s, e, Inside::Name));
        }
        if name.pop() != Some(0) || name.contains(&0) {
            return Err(InitramfsError::BadHeader {
                part,
                at,
                detail: "the entry's name is not one NUL-terminated string".to_owned(),
            });
        }
        let name = String::from_utf8_lossy(&name).into_owned();
        let trailer = name == "TRAILER!!!";
        let ty = h.mode & S_IFMT;
        let data_at = s.pos;
        let mut sum = 0u32;
        let node = if ty == S_IFLNK && !trailer {
            if h.filesize > PATH_MAX {
                return Err(InitramfsError::BadHeader {
                    part,
                    at,
                    detail: format!(
                        "symlink {name} has a {}-byte target, more than {PATH_MAX}",
                        h.filesize
                    ),
                });
            }
            let mut target = vec![0u8; usize::try_from(h.filesize).unwrap_or(0)];
            if let Err(e) = s.read_exact(&mut target) {
                return Err(io(budget, s, e, Inside::Data(&name)));
            }
            Node::Symlink(String::from_utf8_lossy(&target).into_owned())
        } else if ty == S_IFREG
            && !trailer
            && Tree::keeps_data(&name)
            && h.filesize <= KEPT_FILE_MAX
        {
            let mut data = vec![0u8; usize::try_from(h.filesize).unwrap_or(0)];
            if let Err(e) = s.read_exact(&mut data) {
                return Err(io(budget, s, e, Inside::Data(&name)));
            }
            sum = data.iter().fold(0u32, |s, &b| s.wrapping_add(u32::from(b)));
            Node::File {
                executable: h.mode & 0o111 != 0,
                data: Some(data),
            }
        } else {
            let summed = (h.crc && ty == S_IFREG).then_some(&mut sum);
            if let Err(e) = s.skip(h.filesize, summed) {
                return Err(io(budget, s, e, Inside::Data(&name)));
            }
            match ty {
                S_IFREG => Node::File {
                    executable: h.mode & 0o111 != 0,
                    data: None,
                },
                S_IFDIR => Node::Dir,
                _ => Node::Other,
            }
        };
        // The kernel checks the sum of regular files only.
        if h.crc && ty == S_IFREG && !trailer && sum != h.check {
            return Err(InitramfsError::BadChecksum {
                part,
                at: data_at,
                name,
            });
        }
        if let Err(e) = s.pad_to_4() {
            return Err(io(budget, s, e, Inside::Data(&name)));
        }
        if trailer {
            return Ok(());
        }
        tree.insert(&name, node);
    }
}
