//! The on-disk map of a node's delta (`<node>.map`): which 4 KiB blocks
//! the data file holds, one bit each (bit `b % 8` of byte `b / 8`), between
//! a header naming the block and disk size and a CRC32 trailer over both,
//! so a torn or foreign file is refused rather than trusted. The file is
//! only ever replaced whole (`Delta::flush`).

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use super::{BLOCK, BLOCK_U32};

const MAP_MAGIC: &[u8; 8] = b"HLDELTA\x01";
/// Magic, block size (u32 LE), disk size (u64 LE).
pub(super) const MAP_HEADER: usize = 8 + 4 + 8;

pub(super) fn bit_of(block: u64) -> (usize, u8) {
    // A block index below size / 4096 fits usize on a 64-bit host, and an
    // index that does not is past the bitmap, which `get` treats as unset.
    let byte = usize::try_from(block / 8).unwrap_or(usize::MAX);
    (byte, 1u8 << (block % 8))
}

pub(super) fn blocks_of(size: u64) -> u64 {
    size.div_ceil(BLOCK)
}

pub(super) fn bitmap_len(size: u64) -> Result<usize, io::Error> {
    usize::try_from(blocks_of(size).div_ceil(8))
        .map_err(|_| io::Error::other("the disk is too large for this host's memory"))
}

pub(super) fn encode_map(size: u64, bits: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAP_HEADER + bits.len() + 4);
    out.extend_from_slice(MAP_MAGIC);
    out.extend_from_slice(&BLOCK_U32.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(bits);
    out.extend_from_slice(&crc32fast::hash(&out).to_le_bytes());
    out
}

/// Reads and checks a map for a disk of `size`; the file is read only
/// when its length is the one expected, so a damaged file cannot make us
/// allocate more than the bitmap.
pub(crate) fn read_map(path: &Path, size: u64) -> Result<Vec<u8>, String> {
    let want = bitmap_len(size).map_err(|e| e.to_string())?;
    let total = MAP_HEADER + want + 4;
    let mut f = File::open(path).map_err(|e| format!("cannot open the map: {e}"))?;
    let len = f
        .metadata()
        .map_err(|e| format!("cannot stat the map: {e}"))?
        .len();
    if usize::try_from(len).ok() != Some(total) {
        return Err(format!(
            "the map has {len} bytes where a {size}-byte disk needs {total}"
        ));
    }
    let mut buf = vec![0u8; total];
    f.read_exact(&mut buf)
        .map_err(|e| format!("cannot read the map: {e}"))?;
    let (body, crc) = buf.split_at(total - 4);
    if crc != crc32fast::hash(body).to_le_bytes() {
        return Err("the map's checksum does not match its contents".into());
    }
    if &body[..8] != MAP_MAGIC {
        return Err("the map does not start with its magic".into());
    }
    if body[8..12] != BLOCK_U32.to_le_bytes() || body[12..20] != size.to_le_bytes() {
        return Err("the map was made for another block or disk size".into());
    }
    Ok(body[MAP_HEADER..].to_vec())
}
