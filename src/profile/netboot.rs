//! A netbooted Raspberry Pi's identity: `PiSerial`, the 8-hex-digit board
//! serial its EEPROM bootloader puts in DHCP option 97 and uses as the TFTP
//! prefix directory (targets.md §4.1-4.2). The 16-digit form printed by
//! `/proc/cpuinfo` on some boards starts with `10000000`, which the
//! bootloader drops, so it is dropped here too and both name one board.

use std::fmt;

use thiserror::Error;

/// Why a serial was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "{0:?} is not a Raspberry Pi serial: 8 hexadecimal digits like abcd1234 \
     (or 16 starting with 10000000, as /proc/cpuinfo shows it)"
)]
pub struct SerialError(String);

/// A Raspberry Pi serial: 8 lower-case hexadecimal digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PiSerial([u8; 8]);

/// The prefix of the 16-digit form that the bootloader drops.
const LONG_PREFIX: &str = "10000000";

impl PiSerial {
    pub fn parse(s: &str) -> Result<Self, SerialError> {
        let bad = || SerialError(s.to_owned());
        let short = match s.len() {
            8 => s,
            16 => s
                .get(..LONG_PREFIX.len())
                .filter(|p| *p == LONG_PREFIX)
                .and_then(|_| s.get(LONG_PREFIX.len()..))
                .ok_or_else(bad)?,
            _ => return Err(bad()),
        };
        let mut out = [0u8; 8];
        for (o, b) in out.iter_mut().zip(short.bytes()) {
            if !b.is_ascii_hexdigit() {
                return Err(bad());
            }
            *o = b.to_ascii_lowercase();
        }
        Ok(Self(out))
    }

    /// The serial as the TFTP prefix directory names it (`abcd1234`).
    pub fn as_str(&self) -> &str {
        // Every byte is an ASCII hex digit (checked in `parse`).
        std::str::from_utf8(&self.0).unwrap_or_else(|_| unreachable!("ASCII hex digits"))
    }
}

impl fmt::Display for PiSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

crate::profile::newtype::string_serde!(PiSerial, PiSerial::parse);

/// The size a netbooted node's disk is served at (`netboot.disk_size`):
/// the image, then zeros the node's first boot grows its root into.
/// Written `16GiB`, `16G`, `512MiB` or a number of bytes; binary units
/// either way; rounded up to a whole MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DiskSize(u64);

/// Why a disk size was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "{0:?} is not a disk size: a number with an optional unit (KiB, MiB, GiB, TiB \
     or K, M, G, T, all powers of 1024), from 1GiB to 16TiB, like 16GiB"
)]
pub struct DiskSizeError(String);

impl DiskSize {
    /// What `nobodd-prep` grows an image to, and enough for MicroCloud's snaps.
    pub const DEFAULT: DiskSize = DiskSize(16 << 30);
    const MIN: u64 = 1 << 30;
    const MAX: u64 = 16 << 40;

    pub fn parse(s: &str) -> Result<Self, DiskSizeError> {
        let bad = || DiskSizeError(s.to_owned());
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| bad())?;
        let shift = match unit.trim() {
            "" | "B" => 0,
            "K" | "KiB" | "k" => 10,
            "M" | "MiB" => 20,
            "G" | "GiB" => 30,
            "T" | "TiB" => 40,
            _ => return Err(bad()),
        };
        let bytes = n
            .checked_shl(shift)
            .filter(|b| b >> shift == n)
            .ok_or_else(bad)?;
        let bytes = bytes.div_ceil(1 << 20) * (1 << 20);
        if !(Self::MIN..=Self::MAX).contains(&bytes) {
            return Err(bad());
        }
        Ok(Self(bytes))
    }

    pub fn bytes(self) -> u64 {
        self.0
    }

    /// `n` GiB, for defaults written in code (within the bounds: 1 to
    /// 16384).
    pub(crate) const fn gib(n: u64) -> DiskSize {
        DiskSize(n << 30)
    }
}

impl fmt::Display for DiskSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(1 << 30) {
            write!(f, "{}GiB", self.0 >> 30)
        } else {
            write!(f, "{}MiB", self.0 >> 20)
        }
    }
}

crate::profile::newtype::string_serde!(DiskSize, DiskSize::parse);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_normalises_case_and_drops_the_long_prefix() {
        assert_eq!(PiSerial::parse("ABCD1234").unwrap().as_str(), "abcd1234");
        assert_eq!(
            PiSerial::parse("10000000AbCd1234").unwrap(),
            PiSerial::parse("abcd1234").unwrap()
        );
    }

    #[test]
    fn disk_sizes_parse_in_binary_units_and_bounds() {
        assert_eq!(DiskSize::parse("16GiB").unwrap(), DiskSize::DEFAULT);
        assert_eq!(DiskSize::parse("16G").unwrap(), DiskSize::DEFAULT);
        assert_eq!(DiskSize::parse("1536M").unwrap().bytes(), 1536 << 20);
        assert_eq!(
            DiskSize::parse("1073741825").unwrap().bytes(),
            (1 << 30) + (1 << 20)
        );
        assert_eq!(DiskSize::parse("32GiB").unwrap().to_string(), "32GiB");
        for bad in [
            "",
            "G",
            "512MiB",
            "17TiB",
            "1.5G",
            "-1G",
            "16 gb",
            "99999999999999999999T",
        ] {
            assert!(DiskSize::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn serial_refuses_garbage() {
        for bad in [
            "",
            "abcd123",
            "abcd12345",
            "abcd123g",
            "20000000abcd1234",
            "10000000abcd123x",
            "0x abcd1",
            "ab\u{e9}d123",
        ] {
            assert!(PiSerial::parse(bad).is_err(), "{bad}");
        }
    }
}
