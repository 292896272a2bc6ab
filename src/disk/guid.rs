//! GUIDs as stored on disk (mixed-endian) and as people write them.

use std::fmt;

/// A GPT GUID in its on-disk byte order.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    pub const ZERO: Guid = Guid([0; 16]);

    /// Parses the textual form `XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX`.
    pub const fn from_str_const(s: &str) -> Guid {
        let b = s.as_bytes();
        // Positions of the 16 hex pairs in the textual form, and where each
        // lands on disk: the first three fields are little-endian.
        const TEXT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
        const DISK: [usize; 16] = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];
        let mut out = [0u8; 16];
        let mut i = 0;
        while i < 16 {
            out[DISK[i]] = (hex(b[TEXT[i]]) << 4) | hex(b[TEXT[i] + 1]);
            i += 1;
        }
        Guid(out)
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }
}

const fn hex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => panic!("invalid hex digit in GUID literal"),
    }
}

impl fmt::Display for Guid {
    /// Upper case, as sfdisk and sgdisk print GUIDs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-",
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9]
        )?;
        for x in &b[10..] {
            write!(f, "{x:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips_through_disk_order() {
        let s = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
        let g = Guid::from_str_const(s);
        assert_eq!(g.0[..4], [0xAF, 0x3D, 0xC6, 0x0F]);
        assert_eq!(g.to_string(), s);
    }
}
