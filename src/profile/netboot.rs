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
