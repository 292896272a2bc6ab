//! Typed units for disk geometry: sector sizes, LBAs, byte offsets and
//! lengths. Every conversion between them is checked here, in one place, so
//! code elsewhere never multiplies bare `u64`s that came from an image.

use std::fmt;

/// An arithmetic overflow while converting disk units. It names the operands
/// so the caller can say which partition or header produced them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("sector size {0} is not one of 512, 1024, 2048 or 4096 bytes")]
    BadSectorSize(u64),
    #[error("LBA {lba} × {sector_size} bytes overflows a 64-bit byte offset")]
    LbaOverflow { lba: u64, sector_size: u32 },
    #[error("byte range starting at {start} with length {len} overflows")]
    RangeOverflow { start: u64, len: u64 },
}

/// Logical sector size of a disk image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SectorSize(u32);

impl SectorSize {
    pub const S512: SectorSize = SectorSize(512);
    pub const S4096: SectorSize = SectorSize(4096);

    pub fn new(bytes: u64) -> Result<Self, UnitError> {
        match bytes {
            512 | 1024 | 2048 | 4096 => Ok(SectorSize(bytes as u32)), // as: matched values fit in u32
            other => Err(UnitError::BadSectorSize(other)),
        }
    }

    pub fn bytes(self) -> u32 {
        self.0
    }

    pub fn as_len(self) -> ByteLen {
        ByteLen(u64::from(self.0))
    }
}

impl fmt::Display for SectorSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0)
    }
}

/// A logical block address: a sector index counted from the start of the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Lba(pub u64);

impl Lba {
    /// Byte offset of the start of this sector.
    pub fn to_offset(self, ss: SectorSize) -> Result<ByteOffset, UnitError> {
        self.0
            .checked_mul(u64::from(ss.0))
            .map(ByteOffset)
            .ok_or(UnitError::LbaOverflow {
                lba: self.0,
                sector_size: ss.0,
            })
    }

    pub fn checked_add(self, sectors: u64) -> Option<Lba> {
        self.0.checked_add(sectors).map(Lba)
    }
}

impl fmt::Display for Lba {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LBA {}", self.0)
    }
}

/// A count of sectors (a partition's size in the table's own unit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct SectorCount(pub u64);

impl SectorCount {
    pub fn to_len(self, ss: SectorSize) -> Result<ByteLen, UnitError> {
        self.0
            .checked_mul(u64::from(ss.0))
            .map(ByteLen)
            .ok_or(UnitError::LbaOverflow {
                lba: self.0,
                sector_size: ss.0,
            })
    }
}

/// An absolute byte position in an image file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct ByteOffset(pub u64);

/// A length in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct ByteLen(pub u64);

impl fmt::Display for ByteLen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&human_size(self.0))
    }
}

/// A half-open byte range `[start, start + len)` whose end is known to fit in
/// a `u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ByteRange {
    start: ByteOffset,
    len: ByteLen,
}

impl ByteRange {
    pub fn new(start: ByteOffset, len: ByteLen) -> Result<Self, UnitError> {
        match start.0.checked_add(len.0) {
            Some(_) => Ok(ByteRange { start, len }),
            None => Err(UnitError::RangeOverflow {
                start: start.0,
                len: len.0,
            }),
        }
    }

    /// The byte range covered by `count` sectors starting at `lba`.
    pub fn from_sectors(lba: Lba, count: SectorCount, ss: SectorSize) -> Result<Self, UnitError> {
        ByteRange::new(lba.to_offset(ss)?, count.to_len(ss)?)
    }

    pub fn start(&self) -> ByteOffset {
        self.start
    }

    pub fn len(&self) -> ByteLen {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len.0 == 0
    }

    /// One past the last byte. Cannot overflow: checked at construction.
    pub fn end(&self) -> ByteOffset {
        ByteOffset(self.start.0 + self.len.0)
    }

    pub fn overlaps(&self, other: &ByteRange) -> bool {
        self.start.0 < other.end().0 && other.start.0 < self.end().0
    }
}

/// `1.5 GiB`, `512 MiB`, `300 B`: binary units, one decimal where it helps.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut unit = 0;
    let mut whole = bytes;
    while whole >= 1024 && unit + 1 < UNITS.len() {
        whole /= 1024;
        unit += 1;
    }
    if unit == 0 {
        return format!("{bytes} B");
    }
    let scaled = bytes as f64 / (1u64 << (10 * unit)) as f64; // as: display only
    if (scaled - scaled.round()).abs() < 0.05 {
        format!("{:.0} {}", scaled, UNITS[unit])
    } else {
        format!("{:.1} {}", scaled, UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sector_sizes_outside_the_known_set_are_refused() {
        assert!(SectorSize::new(512).is_ok());
        assert!(SectorSize::new(4096).is_ok());
        assert_eq!(SectorSize::new(513), Err(UnitError::BadSectorSize(513)));
        assert_eq!(SectorSize::new(0), Err(UnitError::BadSectorSize(0)));
    }

    #[test]
    fn lba_conversion_is_checked() {
        assert_eq!(
            Lba(2048).to_offset(SectorSize::S512),
            Ok(ByteOffset(1 << 20))
        );
        assert!(Lba(u64::MAX / 2).to_offset(SectorSize::S4096).is_err());
    }

    #[test]
    fn ranges_that_wrap_are_refused_and_overlap_is_half_open() {
        assert!(ByteRange::new(ByteOffset(u64::MAX), ByteLen(1)).is_err());
        let a = ByteRange::new(ByteOffset(0), ByteLen(10)).unwrap();
        let b = ByteRange::new(ByteOffset(10), ByteLen(10)).unwrap();
        let c = ByteRange::new(ByteOffset(9), ByteLen(2)).unwrap();
        assert!(!a.overlaps(&b));
        assert!(a.overlaps(&c) && b.overlaps(&c));
    }

    #[test]
    fn sizes_read_like_humans_write_them() {
        assert_eq!(human_size(300), "300 B");
        assert_eq!(human_size(512 << 20), "512 MiB");
        assert_eq!(human_size(3 << 29), "1.5 GiB");
    }
}
