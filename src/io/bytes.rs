//! Little-endian field access on fixed-size on-disk structures.
//!
//! Callers pass buffers whose length they read from the device themselves
//! and offsets that are spec constants, so an out-of-range offset is a bug in
//! our code, not bad input: these helpers panic on it (like slice indexing)
//! and every caller's buffer is sized for the structure it decodes.

pub fn le_u16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

pub fn le_u32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

pub fn le_u64(b: &[u8], off: usize) -> u64 {
    u64::from(le_u32(b, off)) | (u64::from(le_u32(b, off + 4)) << 32)
}

/// `N` bytes starting at `off`, copied out.
pub fn array<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[off..off + N]);
    out
}

/// A fixed-width, NUL- or space-padded label field as text.
pub fn padded_str(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn little_endian_fields() {
        let b = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(le_u16(&b, 1), 0x0302);
        assert_eq!(le_u32(&b, 0), 0x04030201);
        assert_eq!(le_u64(&b, 1), 0x0908070605040302);
        assert_eq!(array::<2>(&b, 7), [8, 9]);
        assert_eq!(padded_str(b"NO NAME    "), "NO NAME");
        assert_eq!(padded_str(b"root\0\0\0"), "root");
    }
}
