//! The checksums of ext4 metadata: the kernel's raw crc32c chaining
//! (`ext4_chksum`: seed in, no final inversion) for `metadata_csum`, and the
//! crc16 of `gdt_csum`/`uninit_bg` group descriptors (e2fsprogs `crc16.c`).

/// The kernel's `ext4_chksum(sbi, crc, data)`: crc32c continued from the raw
/// state `crc`, without the final inversion.
pub fn crc32c_raw(crc: u32, data: &[u8]) -> u32 {
    // crc32c_append takes and returns the inverted (finalised) form.
    !crc32c::crc32c_append(!crc, data)
}

/// The filesystem-wide checksum seed: `s_checksum_seed` when
/// `metadata_csum_seed` is set, else crc32c(~0, s_uuid).
pub fn fs_seed(uuid: &[u8; 16], csum_seed: Option<u32>) -> u32 {
    csum_seed.unwrap_or_else(|| crc32c_raw(!0, uuid))
}

/// The per-inode seed used by inode, extent-block and directory-block
/// checksums: crc32c(fs seed, le32 ino, le32 generation).
pub fn inode_seed(fs_seed: u32, ino: u32, generation: u32) -> u32 {
    let c = crc32c_raw(fs_seed, &ino.to_le_bytes());
    crc32c_raw(c, &generation.to_le_bytes())
}

/// CRC-16/ARC (poly 0x8005 reflected), as e2fsprogs `ext2fs_crc16`.
pub fn crc16(mut crc: u16, data: &[u8]) -> u16 {
    for &b in data {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_raw_chains_like_one_call() {
        let a = crc32c_raw(!0, b"hello ");
        let b = crc32c_raw(a, b"world");
        assert_eq!(b, crc32c_raw(!0, b"hello world"));
        // Standard CRC-32C check value of "123456789" is 0xE3069283.
        assert_eq!(!crc32c_raw(!0, b"123456789"), 0xE306_9283);
    }

    #[test]
    fn crc16_check_value() {
        // CRC-16/ARC of "123456789" is 0xBB3D (init 0).
        assert_eq!(crc16(0, b"123456789"), 0xBB3D);
    }
}
