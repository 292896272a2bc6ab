//! Which bytes of an ext4 volume the filesystem uses, for a bmap: every
//! block its block bitmaps mark in use. A group still flagged
//! `BLOCK_UNINIT` has no bitmap on disk; its bitmap is computed the way the
//! kernel's `ext4_init_block_bitmap` does (superblock and GDT backup with
//! the reserved GDT blocks, and the bitmaps and inode tables placed in the
//! group), so those metadata blocks are used too. The bitmaps are loaded
//! and checked exactly as the writer loads them (checksums, free counts
//! against the descriptors), so a volume the writer would refuse or finds
//! inconsistent is an error here too, and the caller maps it whole.

use super::error::Result;
use super::writer::Writer;
use crate::io::PartitionWindow;

/// The byte spans `[start, end)` of the volume in `dev` that its blocks in
/// use cover, in order, adjacent blocks merged. Block 0 of a 1 KiB-block
/// volume (the boot block before the superblock, which no bitmap covers) is
/// included.
pub fn used_spans(dev: &PartitionWindow) -> Result<Vec<(u64, u64)>> {
    // Nothing is written: the writer is only used to load the bitmaps and
    // is dropped without a commit.
    let mut w = Writer::open(dev, 0)?;
    let geo = w.geo().clone();
    let bs = u64::from(geo.block_size);
    let mut spans: Vec<(u64, u64)> = Vec::new();
    let mut push = |first: u64, count: u64| {
        let (start, end) = (first * bs, (first + count) * bs);
        match spans.last_mut() {
            Some(last) if last.1 == start => last.1 = end,
            _ => spans.push((start, end)),
        }
    };
    if geo.first_data_block > 0 {
        push(0, u64::from(geo.first_data_block));
    }
    for g in 0..geo.group_count {
        let first = geo.group_first_block(g);
        let n = geo.blocks_in_group(g);
        let bm = w.block_bitmap(g)?;
        // Bits past `n` are padding, set by convention: not blocks.
        let mut bit = 0;
        while bit < n {
            let byte = bm.bytes[(bit / 8) as usize];
            if bit.is_multiple_of(8) && bit + 8 <= n && (byte == 0 || byte == 0xFF) {
                if byte == 0xFF {
                    push(first + u64::from(bit), 8);
                }
                bit += 8;
                continue;
            }
            if bm.get(bit) {
                push(first + u64::from(bit), 1);
            }
            bit += 1;
        }
    }
    Ok(spans)
}
