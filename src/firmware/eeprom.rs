//! The Raspberry Pi 4/5 bootloader EEPROM image (`pieeprom-*.bin`): a walk
//! of its sections, the `bootconf.txt` it carries, and a copy with that
//! file replaced and every other byte kept.
//!
//! The format, as Raspberry Pi's `rpi-eeprom-config` reads and writes it
//! (shared/reference/targets.md §4.5): the image is 512 KiB (BCM2711,
//! Pi 4) or 2 MiB (BCM2712, Pi 5); its last 4 KiB belong to the
//! bootloader. Sections follow one another from offset 0, each an 8-byte
//! big-endian header (magic, length of what follows) and its data, the
//! next one at the following 8-byte boundary, until a magic of all zeros
//! or all ones. Every magic matches `0x55aaf00f` under the mask
//! `0xfffff00f`. A file section (`0x55aaf11f`) holds a 12-byte NUL-padded
//! name and 4 reserved bytes before its data, so its data is `length − 16`
//! bytes at `offset + 24`; `0x55aafeef` is padding.
//!
//! Newer Pi 5 images are split: a read-only area (64 KiB), partition A
//! (988 KiB, starting with a `bootsys` file), then an empty partition B.
//! There `bootconf.txt` is the one in partition A, and its padding stops
//! at A's end, so partition B is never touched; an A/B image whose B is
//! not empty is refused, because which half is live cannot be told from
//! the file.
//!
//! The walk is bounded (each step moves at least 8 bytes) and every
//! offset and length is checked against the image size before it is used;
//! a refusal names the offset.

use std::fmt::Write as _;

/// Sizes of a BCM2711 (Pi 4) and a BCM2712 (Pi 5) image.
pub const SIZE_2711: usize = 512 * 1024;
pub const SIZE_2712: usize = 2 * 1024 * 1024;
/// The bootloader's own last sector: no section may reach into it.
const RESERVED: usize = 4096;

const MAGIC: u32 = 0x55aa_f00f;
const MAGIC_MASK: u32 = 0xffff_f00f;
const FILE_MAGIC: u32 = 0x55aa_f11f;
const PAD_MAGIC: u32 = 0x55aa_feef;
/// Magic and length.
const HEADER: usize = 8;
/// Magic, length, 12-byte name, 4 reserved bytes: where a file's data
/// starts.
const FILE_HEADER: usize = 24;
/// A file section's length counts its name and reserved bytes too.
const FILE_META: u32 = 16;
const NAME_LEN: usize = 12;
/// A modifiable file lives in one 4 KiB erase sector with its 20-byte
/// header (rpi-eeprom-config's `MAX_FILE_SIZE`).
pub const MAX_BOOTCONF: usize = 4096 - 20;

/// A/B images: the read-only area, then partition A.
const READ_ONLY_SIZE: usize = 64 * 1024;
const PARTITION_SIZE: usize = 988 * 1024;

pub const BOOTCONF: &str = "bootconf.txt";

/// Why an EEPROM image is refused. Offsets are bytes from the start of
/// the image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EepromError {
    #[error(
        "the image ends at offset {len:#x} ({len} bytes): an EEPROM image is {SIZE_2711} \
         bytes (Pi 4) or {SIZE_2712} bytes (Pi 5); truncated or not an EEPROM image"
    )]
    Size { len: usize },
    #[error(
        "offset {offset:#x}: unknown section magic {magic:#010x} (not 0x55aaf00f under the \
         mask 0xfffff00f): not an EEPROM image, or a damaged one"
    )]
    Magic { offset: usize, magic: u32 },
    #[error(
        "offset {offset:#x}: a section of {length} bytes runs to {end:#x}, past {limit:#x} \
         where the image's reserved last 4 KiB begin: truncated or damaged"
    )]
    Truncated {
        offset: usize,
        length: u32,
        end: u64,
        limit: usize,
    },
    #[error("offset {offset:#x}: a file section of {length} bytes cannot hold its 12-byte name")]
    ShortFile { offset: usize, length: u32 },
    #[error("offset {offset:#x}: a file section's name is not printable ASCII")]
    BadName { offset: usize },
    #[error("no bootconf.txt section in the image")]
    NoBootconf,
    #[error("offset {offset:#x}: a second bootconf.txt (the first is at {first:#x})")]
    TwoBootconfs { offset: usize, first: usize },
    #[error(
        "offset {offset:#x}: the new bootconf.txt is {len} bytes; at most {MAX_BOOTCONF} fit \
         in its 4 KiB sector"
    )]
    TooLarge { offset: usize, len: usize },
    #[error(
        "offset {offset:#x}: a bootconf.txt of {len} bytes would run to {end:#x}, past the \
         next section at {next:#x}"
    )]
    NoRoom {
        offset: usize,
        len: usize,
        end: usize,
        next: usize,
    },
    /// A layout we do not understand well enough to edit.
    #[error("offset {offset:#x}: {why}")]
    Layout { offset: usize, why: String },
}

/// One section of the image, as the walk found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub offset: usize,
    pub magic: u32,
    /// The header's length field: bytes after the 8-byte header.
    pub length: u32,
    /// A file section's name.
    pub name: Option<String>,
}

impl Section {
    /// Offset just past the section's data (before alignment).
    pub fn end(&self) -> usize {
        // as: length is a u32 checked against the image size by the walk.
        self.offset + HEADER + self.length as usize
    }

    pub fn is_padding(&self) -> bool {
        self.magic == PAD_MAGIC
    }
}

/// Plain, or split into a read-only area and two partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Plain,
    /// Partition A is `[start, end)`.
    Ab {
        start: usize,
        end: usize,
    },
}

/// A parsed EEPROM image.
#[derive(Clone)]
pub struct Eeprom {
    bytes: Vec<u8>,
    sections: Vec<Section>,
    layout: Layout,
    /// Index in `sections` of the `bootconf.txt` we read and replace.
    bootconf: usize,
}

/// The sections, not the megabytes of bytes.
impl std::fmt::Debug for Eeprom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Eeprom")
            .field("len", &self.bytes.len())
            .field("layout", &self.layout)
            .field("sections", &self.sections)
            .field("bootconf", &self.bootconf)
            .finish()
    }
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(w)
}

/// Rounds up to the next multiple of 8.
fn align8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

impl Eeprom {
    /// Walks the sections of `bytes` and finds its `bootconf.txt`.
    pub fn parse(bytes: Vec<u8>) -> Result<Eeprom, EepromError> {
        let len = bytes.len();
        if len != SIZE_2711 && len != SIZE_2712 {
            return Err(EepromError::Size { len });
        }
        let sections = walk(&bytes)?;
        let layout = layout(len, &sections)?;
        let bootconf = find_bootconf(&sections, layout)?;
        Ok(Eeprom {
            bytes,
            sections,
            layout,
            bootconf,
        })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The chip the image is for, by its size: `2711` or `2712`.
    pub fn soc(&self) -> u32 {
        if self.bytes.len() == SIZE_2712 {
            2712
        } else {
            2711
        }
    }

    /// Offset of the `bootconf.txt` section's header.
    pub fn bootconf_offset(&self) -> usize {
        self.sections[self.bootconf].offset
    }

    /// The bytes of `bootconf.txt`.
    pub fn bootconf(&self) -> &[u8] {
        let s = &self.sections[self.bootconf];
        &self.bytes[s.offset + FILE_HEADER..s.end()]
    }

    /// Where the bootconf.txt section and the padding after it end: the
    /// next section that is not padding, else the end of the region the
    /// file may use (partition A, or the image before its reserved 4 KiB).
    /// Everything from here on is kept as it is.
    pub fn bootconf_region(&self) -> (usize, usize) {
        let limit = match self.layout {
            Layout::Plain => self.bytes.len() - RESERVED,
            Layout::Ab { end, .. } => end.min(self.bytes.len() - RESERVED),
        };
        let next = self.sections[self.bootconf + 1..]
            .iter()
            .find(|s| !s.is_padding())
            .map_or(limit, |s| s.offset.min(limit));
        (self.bootconf_offset(), next)
    }

    /// A copy with `conf` as its `bootconf.txt`: only that section and
    /// the padding after it change (new length and data, the rest up to
    /// the next section a padding section of 0xff, or plain 0xff when
    /// `bootconf.txt` is the last section, as rpi-eeprom-config leaves
    /// it). The result is walked again before it is returned.
    pub fn with_bootconf(&self, conf: &[u8]) -> Result<Eeprom, EepromError> {
        let (offset, next) = self.bootconf_region();
        if conf.len() > MAX_BOOTCONF {
            return Err(EepromError::TooLarge {
                offset,
                len: conf.len(),
            });
        }
        let data_end = offset + FILE_HEADER + conf.len();
        if data_end > next {
            return Err(EepromError::NoRoom {
                offset,
                len: conf.len(),
                end: data_end,
                next,
            });
        }
        let is_last = self.bootconf + 1 == self.sections.len();
        let mut bytes = self.bytes.clone();
        // as: conf.len() <= MAX_BOOTCONF, far below u32::MAX.
        let length = conf.len() as u32 + FILE_META;
        bytes[offset + 4..offset + 8].copy_from_slice(&length.to_be_bytes());
        bytes[offset + FILE_HEADER..data_end].copy_from_slice(conf);
        let mut pad = align8(data_end);
        bytes[data_end..pad].fill(0xff);
        if !is_last && next - pad >= HEADER {
            // as: the gap is inside a 2 MiB image.
            let pad_len = (next - pad - HEADER) as u32;
            bytes[pad..pad + 4].copy_from_slice(&PAD_MAGIC.to_be_bytes());
            bytes[pad + 4..pad + 8].copy_from_slice(&pad_len.to_be_bytes());
            pad += HEADER;
        }
        bytes[pad..next].fill(0xff);
        let out = Eeprom::parse(bytes)?;
        if out.bootconf() != conf || out.bootconf_offset() != offset {
            return Err(EepromError::Layout {
                offset,
                why: "the replaced bootconf.txt does not read back (a layout we do not \
                      understand)"
                    .into(),
            });
        }
        Ok(out)
    }

    /// One line per section, for `-v` output and messages.
    pub fn describe_sections(&self) -> String {
        let mut s = String::new();
        for sec in &self.sections {
            let _ = writeln!(
                s,
                "{:#08x} {:#010x} {:>7} {}",
                sec.offset,
                sec.magic,
                sec.length,
                sec.name.as_deref().unwrap_or("")
            );
        }
        s
    }
}

/// The sections from offset 0 to the first all-zeros or all-ones magic.
fn walk(bytes: &[u8]) -> Result<Vec<Section>, EepromError> {
    let limit = bytes.len() - RESERVED;
    let mut sections = Vec::new();
    let mut offset = 0usize;
    // Each step moves at least HEADER bytes: at most limit / 8 steps.
    while offset + HEADER <= limit {
        let magic = be_u32(bytes, offset);
        if magic == 0 || magic == u32::MAX {
            break;
        }
        if magic & MAGIC_MASK != MAGIC {
            return Err(EepromError::Magic { offset, magic });
        }
        let length = be_u32(bytes, offset + 4);
        // as: usize -> u64 widening.
        let end = offset as u64 + HEADER as u64 + u64::from(length);
        if end > limit as u64 {
            return Err(EepromError::Truncated {
                offset,
                length,
                end,
                limit,
            });
        }
        let name = if magic == FILE_MAGIC {
            if length < FILE_META {
                return Err(EepromError::ShortFile { offset, length });
            }
            let raw = &bytes[offset + HEADER..offset + HEADER + NAME_LEN];
            let name: Vec<u8> = raw.iter().copied().take_while(|&b| b != 0).collect();
            if name.is_empty() || !name.iter().all(|b| b.is_ascii_graphic()) {
                return Err(EepromError::BadName { offset });
            }
            // The bytes were just checked to be ASCII.
            Some(String::from_utf8_lossy(&name).into_owned())
        } else {
            None
        };
        let section = Section {
            offset,
            magic,
            length,
            name,
        };
        offset = align8(section.end());
        sections.push(section);
    }
    Ok(sections)
}

/// Plain, or A/B (a `bootsys` file section) checked to be the shape we
/// know: 2 MiB, `bootsys` opening partition A, nothing but padding after
/// partition A.
fn layout(len: usize, sections: &[Section]) -> Result<Layout, EepromError> {
    let Some(bootsys) = sections
        .iter()
        .find(|s| s.name.as_deref() == Some("bootsys"))
    else {
        return Ok(Layout::Plain);
    };
    let start = READ_ONLY_SIZE;
    let end = READ_ONLY_SIZE + PARTITION_SIZE;
    let refuse = |offset: usize, why: &str| {
        Err(EepromError::Layout {
            offset,
            why: format!("{why} (an A/B partitioned image we do not understand)"),
        })
    };
    if len != SIZE_2712 {
        return refuse(bootsys.offset, "a bootsys section in a 512 KiB image");
    }
    if bootsys.offset != start {
        return refuse(
            bootsys.offset,
            "bootsys is not at the start of partition A (0x10000)",
        );
    }
    if let Some(s) = sections.iter().find(|s| s.end() > end && !s.is_padding()) {
        return refuse(
            s.offset,
            "partition B holds sections, so which half the bootloader runs is unknown",
        );
    }
    if let Some(s) = sections
        .iter()
        .find(|s| s.is_padding() && s.offset < end && s.end() > end)
    {
        return refuse(
            s.offset,
            "a padding section straddles the end of partition A",
        );
    }
    Ok(Layout::Ab { start, end })
}

/// The index of the one `bootconf.txt` the bootloader reads: the only one
/// in a plain image, the one in partition A of an A/B image.
fn find_bootconf(sections: &[Section], layout: Layout) -> Result<usize, EepromError> {
    let mut found: Option<usize> = None;
    for (i, s) in sections.iter().enumerate() {
        if s.magic != FILE_MAGIC || s.name.as_deref() != Some(BOOTCONF) {
            continue;
        }
        if let Layout::Ab { start, end } = layout
            && !(start..end).contains(&s.offset)
        {
            return Err(EepromError::Layout {
                offset: s.offset,
                why: "bootconf.txt outside partition A of an A/B image".into(),
            });
        }
        if let Some(first) = found {
            return Err(EepromError::TwoBootconfs {
                offset: s.offset,
                first: sections[first].offset,
            });
        }
        found = Some(i);
    }
    found.ok_or(EepromError::NoBootconf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small image in the real layout, built here by hand: a bootcode
    /// section, a file, padding, `bootconf.txt` last (Pi 4 style).
    fn plain() -> Vec<u8> {
        let mut b = vec![0xffu8; SIZE_2711];
        let mut at = 0;
        let mut section = |b: &mut Vec<u8>, magic: u32, name: Option<&str>, data: &[u8]| {
            let meta = if name.is_some() {
                FILE_META as usize
            } else {
                0
            };
            b[at..at + 4].copy_from_slice(&magic.to_be_bytes());
            b[at + 4..at + 8].copy_from_slice(&((data.len() + meta) as u32).to_be_bytes());
            let mut p = at + 8;
            if let Some(n) = name {
                let mut raw = [0u8; 16];
                raw[..n.len()].copy_from_slice(n.as_bytes());
                b[p..p + 16].copy_from_slice(&raw);
                p += 16;
            }
            b[p..p + data.len()].copy_from_slice(data);
            at = align8(p + data.len());
        };
        section(&mut b, MAGIC, None, &[7u8; 1000]);
        section(&mut b, FILE_MAGIC, Some("pubkey.bin"), &[9u8; 264]);
        section(&mut b, PAD_MAGIC, None, &[0xffu8; 100]);
        section(
            &mut b,
            FILE_MAGIC,
            Some(BOOTCONF),
            b"[all]\nBOOT_ORDER=0xf41\n",
        );
        b
    }

    #[test]
    fn a_plain_image_walks_and_its_bootconf_reads_back() {
        let e = Eeprom::parse(plain()).unwrap();
        assert_eq!(e.sections().len(), 4);
        assert_eq!(e.bootconf(), b"[all]\nBOOT_ORDER=0xf41\n");
        assert_eq!(e.layout(), Layout::Plain);
        assert_eq!(e.soc(), 2711);
    }

    #[test]
    fn replacing_the_last_bootconf_fills_to_the_reserved_area_with_ones() {
        let e = Eeprom::parse(plain()).unwrap();
        let off = e.bootconf_offset();
        let new = e
            .with_bootconf(b"[all]\nBOOT_ORDER=0xf14\nBOOT_UART=1\n")
            .unwrap();
        assert_eq!(new.bootconf(), b"[all]\nBOOT_ORDER=0xf14\nBOOT_UART=1\n");
        assert_eq!(&new.bytes()[..off], &e.bytes()[..off]);
        let data_end = off + FILE_HEADER + 35;
        assert!(
            new.bytes()[data_end..SIZE_2711 - RESERVED]
                .iter()
                .all(|&b| b == 0xff)
        );
        assert_eq!(new.sections().len(), 4);
    }

    #[test]
    fn the_largest_config_fits_and_one_byte_more_is_refused() {
        let e = Eeprom::parse(plain()).unwrap();
        assert!(e.with_bootconf(&[b'#'; MAX_BOOTCONF]).is_ok());
        assert_eq!(
            e.with_bootconf(&[b'#'; MAX_BOOTCONF + 1]).unwrap_err(),
            EepromError::TooLarge {
                offset: e.bootconf_offset(),
                len: MAX_BOOTCONF + 1
            }
        );
    }

    #[test]
    fn refusals_name_the_offset() {
        let mut b = plain();
        b[1008..1012].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        let e = Eeprom::parse(b).unwrap_err();
        assert_eq!(
            e,
            EepromError::Magic {
                offset: 1008,
                magic: 0x1234_5678
            }
        );
        assert!(e.to_string().contains("offset 0x3f0"), "{e}");

        let mut b = plain();
        b[4..8].copy_from_slice(&(SIZE_2711 as u32).to_be_bytes());
        let e = Eeprom::parse(b).unwrap_err();
        assert!(matches!(e, EepromError::Truncated { offset: 0, .. }), "{e}");

        let e = Eeprom::parse(plain()[..SIZE_2711 - 512].to_vec()).unwrap_err();
        assert!(e.to_string().contains("offset 0x7fe00"), "{e}");

        let mut b = plain();
        b[1008 + 8] = 0x01;
        assert!(matches!(
            Eeprom::parse(b).unwrap_err(),
            EepromError::BadName { offset: 1008 }
        ));
    }

    #[test]
    fn a_second_bootconf_or_none_is_refused() {
        let mut b = plain();
        // Rename pubkey.bin to bootconf.txt.
        b[1008 + 8..1008 + 20].copy_from_slice(b"bootconf.txt");
        assert!(matches!(
            Eeprom::parse(b).unwrap_err(),
            EepromError::TwoBootconfs { first: 1008, .. }
        ));
        let mut b = plain();
        let off = Eeprom::parse(plain()).unwrap().bootconf_offset();
        b[off + 8] = b'B';
        assert_eq!(Eeprom::parse(b).unwrap_err(), EepromError::NoBootconf);
    }

    #[test]
    fn an_ab_image_with_a_populated_partition_b_is_refused() {
        let mut b = vec![0xffu8; SIZE_2712];
        let put = |b: &mut Vec<u8>, at: usize, magic: u32, name: Option<&str>, len: u32| {
            b[at..at + 4].copy_from_slice(&magic.to_be_bytes());
            b[at + 4..at + 8].copy_from_slice(&len.to_be_bytes());
            if let Some(n) = name {
                let mut raw = [0u8; 16];
                raw[..n.len()].copy_from_slice(n.as_bytes());
                b[at + 8..at + 24].copy_from_slice(&raw);
            }
        };
        let a_end = READ_ONLY_SIZE + PARTITION_SIZE;
        put(&mut b, 0, MAGIC, None, (READ_ONLY_SIZE - 8) as u32);
        put(
            &mut b,
            READ_ONLY_SIZE,
            FILE_MAGIC,
            Some("bootsys"),
            1000 - 8,
        );
        put(
            &mut b,
            READ_ONLY_SIZE + 1000,
            FILE_MAGIC,
            Some(BOOTCONF),
            16 + 8,
        );
        let pad = READ_ONLY_SIZE + 1000 + 32;
        put(&mut b, pad, PAD_MAGIC, None, (a_end - pad - 8) as u32);
        put(&mut b, a_end, MAGIC, None, 64);
        let e = Eeprom::parse(b.clone()).unwrap_err();
        assert!(
            matches!(e, EepromError::Layout { offset, .. } if offset == a_end),
            "{e}"
        );
        // With partition B empty it is understood, and B is kept.
        put(&mut b, a_end, PAD_MAGIC, None, 64);
        let e = Eeprom::parse(b).unwrap();
        assert_eq!(
            e.layout(),
            Layout::Ab {
                start: READ_ONLY_SIZE,
                end: a_end
            }
        );
        let new = e.with_bootconf(&[b'x'; 3000]).unwrap();
        assert_eq!(&new.bytes()[a_end..], &e.bytes()[a_end..]);
        assert_eq!(new.bootconf(), &[b'x'; 3000][..]);
    }
}
