//! Reads the index at the end of an `.xz` file (stream footer → index
//! records) to learn how many blocks it has and how large it decompresses,
//! before decoding. One block means liblzma's threaded decoder has nothing
//! to split, so we use the single-threaded one; the total size drives the
//! progress bar. Format: the .xz file format 1.2.1, §2.1.2 (stream footer)
//! and §4 (index).

use std::io::{Read, Seek, SeekFrom};

/// What the index says about a whole (possibly multi-stream) `.xz` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XzLayout {
    pub streams: u64,
    pub blocks: u64,
    pub uncompressed_size: u64,
}

const FOOTER_MAGIC: &[u8; 2] = b"YZ";
const HEADER_LEN: u64 = 12;
const FOOTER_LEN: u64 = 12;
/// Indexes larger than this are not worth reading up front (a 4 GiB image in
/// 1 MiB blocks has an index of about 30 KiB).
const MAX_INDEX: u64 = 64 << 20;

/// Walks the streams of `file` from its end. `None` when anything does not
/// parse: the decoder then reports the real problem with a better message.
pub fn read_layout<F: Read + Seek>(file: &mut F) -> Option<XzLayout> {
    let mut end = file.seek(SeekFrom::End(0)).ok()?;
    let mut layout = XzLayout {
        streams: 0,
        blocks: 0,
        uncompressed_size: 0,
    };
    while end > 0 {
        end = skip_padding(file, end)?;
        if end == 0 {
            break;
        }
        let stream_start = read_stream(file, end, &mut layout)?;
        end = stream_start;
    }
    (layout.streams > 0).then_some(layout)
}

/// Moves `end` back over stream padding (zero bytes in groups of four).
fn skip_padding<F: Read + Seek>(file: &mut F, mut end: u64) -> Option<u64> {
    let mut word = [0u8; 4];
    while end >= 4 {
        read_at(file, end - 4, &mut word)?;
        if word != [0; 4] {
            break;
        }
        end -= 4;
    }
    Some(end)
}

/// Reads the stream that ends at `end`, adds it to `layout`, and returns
/// where it starts.
fn read_stream<F: Read + Seek>(file: &mut F, end: u64, layout: &mut XzLayout) -> Option<u64> {
    let footer_at = end.checked_sub(FOOTER_LEN)?;
    let mut footer = [0u8; 12];
    read_at(file, footer_at, &mut footer)?;
    if &footer[10..12] != FOOTER_MAGIC || crc32(&footer[4..10]) != le32(&footer[0..4]) {
        return None;
    }
    let index_size = (u64::from(le32(&footer[4..8])) + 1) * 4;
    if index_size > MAX_INDEX {
        return None;
    }
    let index_at = footer_at.checked_sub(index_size)?;
    // Bounded by MAX_INDEX above, so it fits in memory and in usize.
    let mut index = vec![0u8; usize::try_from(index_size).ok()?];
    read_at(file, index_at, &mut index)?;
    let (body, crc) = index.split_at(index.len() - 4);
    if body.first() != Some(&0) || crc32(body) != le32(crc) {
        return None;
    }
    let mut pos = 1;
    let records = vli(body, &mut pos)?;
    let mut blocks_size: u64 = 0;
    for _ in 0..records {
        let unpadded = vli(body, &mut pos)?;
        let uncompressed = vli(body, &mut pos)?;
        blocks_size = blocks_size.checked_add(unpadded.checked_add(3)? & !3)?;
        layout.uncompressed_size = layout.uncompressed_size.checked_add(uncompressed)?;
    }
    layout.blocks = layout.blocks.checked_add(records)?;
    layout.streams += 1;
    index_at.checked_sub(blocks_size)?.checked_sub(HEADER_LEN)
}

/// A variable-length integer (§1.2): seven bits a byte, at most nine bytes.
fn vli(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value: u64 = 0;
    for i in 0..9 {
        let b = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            // A multi-byte VLI may not end in a zero byte.
            return (i == 0 || b != 0).then_some(value);
        }
    }
    None
}

fn read_at<F: Read + Seek>(file: &mut F, at: u64, buf: &mut [u8]) -> Option<()> {
    file.seek(SeekFrom::Start(at)).ok()?;
    file.read_exact(buf).ok()
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn crc32(b: &[u8]) -> u32 {
    crc32fast::hash(b)
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Write};

    use super::*;

    fn xz(data: &[u8], threads: u32, block: u64) -> Vec<u8> {
        let stream = liblzma::stream::MtStreamBuilder::new()
            .threads(threads)
            .block_size(block)
            .preset(0)
            .encoder()
            .unwrap();
        let mut enc = liblzma::write::XzEncoder::new_stream(Vec::new(), stream);
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn counts_blocks_and_size_across_streams() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let one = xz(&data, 2, 100_000);
        let l = read_layout(&mut Cursor::new(&one)).unwrap();
        assert_eq!((l.streams, l.blocks, l.uncompressed_size), (1, 3, 300_000));

        let mut two = one.clone();
        two.extend_from_slice(&[0; 8]); // stream padding
        two.extend_from_slice(&xz(&data[..1000], 1, 0));
        two.extend_from_slice(&[0; 4]);
        let l = read_layout(&mut Cursor::new(&two)).unwrap();
        assert_eq!((l.streams, l.blocks, l.uncompressed_size), (2, 4, 301_000));
    }

    #[test]
    fn rejects_what_is_not_xz() {
        assert_eq!(read_layout(&mut Cursor::new(b"hello world, not xz")), None);
        assert_eq!(read_layout(&mut Cursor::new(Vec::new())), None);
        let mut bad = xz(b"abc", 1, 0);
        let n = bad.len();
        bad[n - 8] ^= 1; // backward size: footer CRC no longer matches
        assert_eq!(read_layout(&mut Cursor::new(&bad)), None);
        let mut garbage = xz(b"abc", 1, 0);
        garbage.extend_from_slice(b"junk");
        assert_eq!(read_layout(&mut Cursor::new(&garbage)), None);
    }
}
