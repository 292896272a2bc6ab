//! Extent trees (`ifork.rst`; kernel `ext4_extents.h`): reading an inode's
//! whole mapping with every node checked, and laying out a fresh tree for a
//! list of extents (depth 0 in the inode, index levels in blocks as needed,
//! each block with its checksum tail).

use super::checksum::crc32c_raw;
use super::error::{Result, Structure, WriteError};
use crate::io::bytes::{le_u16, le_u32};

pub const EXT4_EXT_MAGIC: u16 = 0xF30A;
/// Longest initialised extent.
pub const EXT_INIT_MAX_LEN: u32 = 32768;
const HEADER: usize = 12;
const ENTRY: usize = 12;
/// Entries that fit in `i_block` (60 bytes).
pub const ROOT_MAX: usize = 4;
const MAX_DEPTH: u16 = 5;

/// One mapped run: logical block `lblk` → physical `pblk`, `len` blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub lblk: u32,
    pub len: u32,
    pub pblk: u64,
    /// An unwritten (preallocated) extent: reads as zeros.
    pub unwritten: bool,
}

/// An inode's mapping and the blocks its tree occupies.
#[derive(Debug, Default, Clone)]
pub struct Mapping {
    pub extents: Vec<Extent>,
    pub tree_blocks: Vec<u64>,
}

impl Mapping {
    /// The physical block of logical block `lblk`, if mapped.
    pub fn lookup(&self, lblk: u32) -> Option<u64> {
        let i = self.extents.partition_point(|e| e.lblk <= lblk);
        let e = self.extents.get(i.checked_sub(1)?)?;
        (u64::from(lblk) < u64::from(e.lblk) + u64::from(e.len))
            .then(|| e.pblk + u64::from(lblk - e.lblk))
    }

    /// Logical blocks covered (one past the last mapped block); read_tree
    /// guarantees this fits.
    pub fn end(&self) -> u32 {
        self.extents
            .last()
            .map_or(0, |e| e.lblk.saturating_add(e.len))
    }

    pub fn data_blocks(&self) -> u64 {
        self.extents.iter().map(|e| u64::from(e.len)).sum()
    }
}

/// Entries that fit in a tree block, leaving room for the 4-byte tail.
pub fn block_max(block_size: u32) -> usize {
    (block_size as usize - HEADER) / ENTRY
}

/// Reads and checks the whole tree rooted in `i_block`. `read` fetches a
/// filesystem block; `csum_seed` is the inode's seed under metadata_csum.
pub fn read_tree(
    ino: u32,
    i_block: &[u8],
    block_size: u32,
    blocks_count: u64,
    csum_seed: Option<u32>,
    read: &mut dyn FnMut(u64) -> Result<Vec<u8>>,
) -> Result<Mapping> {
    let mut m = Mapping::default();
    let root_depth = check_header(ino, None, i_block, ROOT_MAX, None)?;
    walk(
        ino,
        i_block,
        None,
        root_depth,
        block_size,
        blocks_count,
        csum_seed,
        read,
        &mut m,
    )?;
    for e in &m.extents {
        if u64::from(e.lblk) + u64::from(e.len) > u64::from(u32::MAX) {
            return Err(WriteError::corrupt(
                Structure::ExtentHeader { ino, block: None },
                format!(
                    "an extent at logical block {} runs past 2^32 blocks",
                    e.lblk
                ),
            ));
        }
    }
    for w in m.extents.windows(2) {
        if w[1].lblk < w[0].lblk + w[0].len {
            return Err(WriteError::corrupt(
                Structure::ExtentHeader { ino, block: None },
                format!("extents overlap at logical block {}", w[1].lblk),
            ));
        }
    }
    Ok(m)
}

fn check_header(
    ino: u32,
    block: Option<u64>,
    node: &[u8],
    max_allowed: usize,
    want_depth: Option<u16>,
) -> Result<u16> {
    let bad = |why: String| WriteError::corrupt(Structure::ExtentHeader { ino, block }, why);
    let magic = le_u16(node, 0);
    if magic != EXT4_EXT_MAGIC {
        return Err(bad(format!("eh_magic is {magic:#06x}, expected 0xf30a")));
    }
    let entries = usize::from(le_u16(node, 2));
    let max = usize::from(le_u16(node, 4));
    let depth = le_u16(node, 6);
    if max == 0 || max > max_allowed {
        return Err(bad(format!("eh_max is {max}, at most {max_allowed} fit")));
    }
    if entries > max {
        return Err(bad(format!(
            "eh_entries is {entries}, more than eh_max {max}"
        )));
    }
    if depth > MAX_DEPTH {
        return Err(bad(format!("eh_depth is {depth}")));
    }
    if let Some(want) = want_depth
        && depth != want
    {
        return Err(bad(format!("eh_depth is {depth}, its parent says {want}")));
    }
    Ok(depth)
}

#[allow(clippy::too_many_arguments)]
fn walk(
    ino: u32,
    node: &[u8],
    block: Option<u64>,
    depth: u16,
    block_size: u32,
    blocks_count: u64,
    csum_seed: Option<u32>,
    read: &mut dyn FnMut(u64) -> Result<Vec<u8>>,
    m: &mut Mapping,
) -> Result<()> {
    let bad = |why: String| WriteError::corrupt(Structure::ExtentHeader { ino, block }, why);
    let entries = usize::from(le_u16(node, 2));
    for i in 0..entries {
        let e = &node[HEADER + i * ENTRY..HEADER + (i + 1) * ENTRY];
        if depth == 0 {
            let lblk = le_u32(e, 0);
            let raw_len = u32::from(le_u16(e, 4));
            let pblk = u64::from(le_u16(e, 6)) << 32 | u64::from(le_u32(e, 8));
            let (len, unwritten) = if raw_len > EXT_INIT_MAX_LEN {
                (raw_len - EXT_INIT_MAX_LEN, true)
            } else {
                (raw_len, false)
            };
            if len == 0 || pblk == 0 || pblk + u64::from(len) > blocks_count {
                return Err(bad(format!(
                    "extent {i} maps {len} blocks at {pblk}, outside the filesystem"
                )));
            }
            m.extents.push(Extent {
                lblk,
                len,
                pblk,
                unwritten,
            });
        } else {
            let child = u64::from(le_u16(e, 8)) << 32 | u64::from(le_u32(e, 4));
            if child == 0 || child >= blocks_count {
                return Err(bad(format!(
                    "index {i} points at block {child}, outside the filesystem"
                )));
            }
            let data = read(child)?;
            let cdepth = check_header(
                ino,
                Some(child),
                &data,
                block_max(block_size),
                Some(depth - 1),
            )?;
            if let Some(seed) = csum_seed {
                let max = usize::from(le_u16(&data, 4));
                let tail = HEADER + max * ENTRY;
                let stored = le_u32(&data, tail);
                let computed = crc32c_raw(seed, &data[..tail]);
                if stored != computed {
                    return Err(WriteError::corrupt(
                        Structure::ExtentHeader {
                            ino,
                            block: Some(child),
                        },
                        format!(
                            "extent block checksum is {stored:#010x}, computed {computed:#010x}"
                        ),
                    ));
                }
            }
            if m.tree_blocks.contains(&child) || m.tree_blocks.len() as u64 >= blocks_count {
                return Err(bad(format!(
                    "index {i} points at block {child} a second time"
                )));
            }
            m.tree_blocks.push(child);
            walk(
                ino,
                &data,
                Some(child),
                cdepth,
                block_size,
                blocks_count,
                csum_seed,
                read,
                m,
            )?;
        }
    }
    Ok(())
}

/// A laid-out tree: the 60 bytes for `i_block` and the tree blocks to write
/// (their numbers came from the allocator the caller passed).
pub struct BuiltTree {
    pub i_block: [u8; 60],
    pub blocks: Vec<(u64, Vec<u8>)>,
}

fn header(buf: &mut [u8], entries: usize, max: usize, depth: u16) {
    buf[0..2].copy_from_slice(&EXT4_EXT_MAGIC.to_le_bytes());
    // entries ≤ max ≤ 340: both fit u16.
    buf[2..4].copy_from_slice(&(entries as u16).to_le_bytes());
    buf[4..6].copy_from_slice(&(max as u16).to_le_bytes());
    buf[6..8].copy_from_slice(&depth.to_le_bytes());
    buf[8..12].fill(0);
}

fn put_leaf(buf: &mut [u8], e: &Extent) {
    buf[0..4].copy_from_slice(&e.lblk.to_le_bytes());
    let raw_len = if e.unwritten {
        e.len + EXT_INIT_MAX_LEN
    } else {
        e.len
    };
    // raw_len ≤ 65535 by construction (len ≤ 32768, or ≤ 32767 unwritten).
    buf[4..6].copy_from_slice(&(raw_len as u16).to_le_bytes());
    buf[6..8].copy_from_slice(&((e.pblk >> 32) as u16).to_le_bytes());
    buf[8..12].copy_from_slice(&(e.pblk as u32).to_le_bytes());
}

fn put_index(buf: &mut [u8], lblk: u32, child: u64) {
    buf[0..4].copy_from_slice(&lblk.to_le_bytes());
    buf[4..8].copy_from_slice(&(child as u32).to_le_bytes());
    buf[8..10].copy_from_slice(&((child >> 32) as u16).to_le_bytes());
    buf[10..12].fill(0);
}

/// Tree blocks needed for `n` extents (so callers can reserve them).
pub fn tree_blocks_needed(n: usize, block_size: u32) -> usize {
    if n <= ROOT_MAX {
        return 0;
    }
    let per = block_max(block_size);
    let mut total = 0;
    let mut level = n;
    while level > ROOT_MAX {
        level = level.div_ceil(per);
        total += level;
    }
    total
}

/// Lays out `extents` (sorted, each ≤ 32768 blocks). Tree blocks are taken
/// from `alloc`, called once per block in order.
pub fn build_tree(
    extents: &[Extent],
    block_size: u32,
    csum_seed: Option<u32>,
    alloc: &mut dyn FnMut() -> Result<u64>,
) -> Result<BuiltTree> {
    let mut i_block = [0u8; 60];
    if extents.len() <= ROOT_MAX {
        header(&mut i_block, extents.len(), ROOT_MAX, 0);
        for (i, e) in extents.iter().enumerate() {
            put_leaf(&mut i_block[HEADER + i * ENTRY..], e);
        }
        return Ok(BuiltTree {
            i_block,
            blocks: Vec::new(),
        });
    }
    let per = block_max(block_size);
    let bs = block_size as usize;
    let mut blocks = Vec::new();
    // Each level: (first logical block covered, physical block) per node.
    let mut level: Vec<(u32, u64)> = Vec::new();
    for chunk in extents.chunks(per) {
        let pblk = alloc()?;
        let mut buf = vec![0u8; bs];
        header(&mut buf, chunk.len(), per, 0);
        for (i, e) in chunk.iter().enumerate() {
            put_leaf(&mut buf[HEADER + i * ENTRY..], e);
        }
        tail(&mut buf, per, csum_seed);
        level.push((chunk[0].lblk, pblk));
        blocks.push((pblk, buf));
    }
    let mut depth: u16 = 1;
    while level.len() > ROOT_MAX {
        let mut next = Vec::new();
        for chunk in level.chunks(per) {
            let pblk = alloc()?;
            let mut buf = vec![0u8; bs];
            header(&mut buf, chunk.len(), per, depth);
            for (i, (lblk, child)) in chunk.iter().enumerate() {
                put_index(&mut buf[HEADER + i * ENTRY..], *lblk, *child);
            }
            tail(&mut buf, per, csum_seed);
            next.push((chunk[0].0, pblk));
            blocks.push((pblk, buf));
        }
        level = next;
        depth += 1;
    }
    header(&mut i_block, level.len(), ROOT_MAX, depth);
    for (i, (lblk, child)) in level.iter().enumerate() {
        put_index(&mut i_block[HEADER + i * ENTRY..], *lblk, *child);
    }
    Ok(BuiltTree { i_block, blocks })
}

fn tail(buf: &mut [u8], max: usize, csum_seed: Option<u32>) {
    if let Some(seed) = csum_seed {
        let at = HEADER + max * ENTRY;
        let c = crc32c_raw(seed, &buf[..at]);
        buf[at..at + 4].copy_from_slice(&c.to_le_bytes());
    }
}

/// Splits a physical run into extents of at most 32768 blocks.
pub fn push_run(out: &mut Vec<Extent>, lblk: u32, pblk: u64, len: u32) {
    let mut done = 0;
    while done < len {
        let n = (len - done).min(EXT_INIT_MAX_LEN);
        if let Some(last) = out.last_mut()
            && !last.unwritten
            && last.lblk + last.len == lblk + done
            && last.pblk + u64::from(last.len) == pblk + u64::from(done)
            && last.len + n <= EXT_INIT_MAX_LEN
        {
            last.len += n;
            done += n;
            continue;
        }
        out.push(Extent {
            lblk: lblk + done,
            len: n,
            pblk: pblk + u64::from(done),
            unwritten: false,
        });
        done += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exts(n: usize) -> Vec<Extent> {
        (0..n)
            .map(|i| Extent {
                lblk: i as u32 * 2,
                len: 1,
                pblk: 1000 + i as u64 * 3,
                unwritten: false,
            })
            .collect()
    }

    fn roundtrip(n: usize, bs: u32) {
        let e = exts(n);
        let mut next = 50_000u64;
        let built = build_tree(&e, bs, Some(7), &mut || {
            next += 1;
            Ok(next)
        })
        .unwrap();
        assert_eq!(built.blocks.len(), tree_blocks_needed(n, bs));
        let blocks = built.blocks.clone();
        let m = read_tree(1, &built.i_block, bs, 1 << 20, Some(7), &mut |b| {
            Ok(blocks.iter().find(|(p, _)| *p == b).unwrap().1.clone())
        })
        .unwrap();
        assert_eq!(m.extents, e);
        assert_eq!(m.tree_blocks.len(), blocks.len());
    }

    #[test]
    fn trees_of_every_depth_read_back() {
        for n in [0, 1, 4, 5, 84, 85, 340, 341, 4 * 84 + 1, 4 * 84 * 84 + 1] {
            roundtrip(n, 1024);
        }
        roundtrip(4 * 340 + 1, 4096);
    }

    #[test]
    fn runs_split_at_32768_and_merge_when_contiguous() {
        let mut v = Vec::new();
        push_run(&mut v, 0, 100, 70_000);
        push_run(&mut v, 70_000, 100 + 70_000, 10);
        assert_eq!(
            v.iter().map(|e| e.len).collect::<Vec<_>>(),
            [32768, 32768, 4474]
        );
        assert_eq!(v[2].lblk, 65536);
        let m = Mapping {
            extents: v,
            tree_blocks: vec![],
        };
        assert_eq!(m.lookup(65536), Some(100 + 65536));
        assert_eq!(m.lookup(70_010), None);
    }
}
