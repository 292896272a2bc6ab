//! Which blocks of a finished image a `.bmap` maps: every 4 KiB block that
//! the image's structures or filesystems use, whether or not it is zero.
//! Only free space is left out.
//!
//! The rule, partition by partition (read through the build's overlay, so
//! it describes the image after patching):
//!
//! - every byte outside the data partitions: the MBR or protective MBR, the
//!   primary and backup GPT, extended boot records, gaps, and the raw area
//!   where Armbian boards keep their bootloader;
//! - a FAT partition: its reserved area (boot sector, FSInfo, backup boot
//!   sector), every FAT, the FAT12/16 root directory, and every cluster
//!   whose entry is non-zero in any FAT (`fat::used_spans`);
//! - an ext2/3/4 partition: every block its block bitmaps mark in use, with
//!   the bitmaps of `BLOCK_UNINIT` groups computed as the kernel does
//!   (`fs::ext4::used_spans`);
//! - any other partition, or one whose filesystem cannot be read or is one
//!   our reader refuses: the whole partition.
//!
//! Why not the image file's data segments: the cache stores every zero
//! block of a base as a hole, and zero blocks that a filesystem uses (free
//! entries of a FAT, inode tables, the journal, zero pages inside files)
//! would be skipped by `bmaptool copy`, leaving a re-used card's old bytes
//! in them. docs/BMAP.md says the same for users.

pub mod fat;

use std::fmt;

use super::bmap::BLOCK;
use crate::fs::FsType;
use crate::image::Image;

/// Runs of 4 KiB blocks of an image: `(first, last)`, inclusive, in order,
/// neither overlapping nor touching.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockRuns(Vec<(u64, u64)>);

impl BlockRuns {
    /// The blocks that the byte spans `[start, end)` touch, a block counted
    /// when any byte of it is in a span. Empty spans are ignored.
    pub fn from_spans(spans: impl IntoIterator<Item = (u64, u64)>) -> BlockRuns {
        let mut runs: Vec<(u64, u64)> = spans
            .into_iter()
            .filter(|&(start, end)| end > start)
            .map(|(start, end)| (start / BLOCK, (end - 1) / BLOCK))
            .collect();
        runs.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(runs.len());
        for (first, last) in runs {
            match merged.last_mut() {
                Some(r) if r.1.saturating_add(1) >= first => r.1 = r.1.max(last),
                _ => merged.push((first, last)),
            }
        }
        BlockRuns(merged)
    }

    pub fn runs(&self) -> &[(u64, u64)] {
        &self.0
    }

    /// Number of blocks in all runs.
    pub fn blocks(&self) -> u64 {
        self.0.iter().map(|&(a, b)| b - a + 1).sum()
    }
}

/// How one partition was mapped, for the build's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionUse {
    /// Its filesystem's used blocks.
    Used { fs: &'static str, bytes: u64 },
    /// The whole partition: it holds no filesystem we read.
    Unknown,
    /// The whole partition: its filesystem could not be read, and why.
    Unreadable { why: String },
}

impl fmt::Display for PartitionUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartitionUse::Used { fs, bytes } => write!(
                f,
                "{} used by its {fs}",
                crate::io::units::human_size(*bytes)
            ),
            PartitionUse::Unknown => f.write_str("mapped whole (no filesystem we read)"),
            PartitionUse::Unreadable { why } => write!(f, "mapped whole: {why}"),
        }
    }
}

/// The map of an image, and how each partition was treated.
#[derive(Debug, Clone)]
pub struct Usage {
    pub runs: BlockRuns,
    pub partitions: Vec<(u32, PartitionUse)>,
}

/// The blocks of `image` its structures and filesystems use (the module's
/// rule). Never fails: a partition that cannot be read is mapped whole.
pub fn used_blocks(image: &Image) -> Usage {
    let len = image.len();
    let mut spans: Vec<(u64, u64)> = Vec::new();
    let mut partitions = Vec::new();
    let mut parts: Vec<_> = image.table().data_partitions().collect();
    parts.sort_by_key(|p| p.range.start().0);
    // Everything outside the data partitions.
    let mut pos = 0;
    for p in &parts {
        spans.push((pos, p.range.start().0));
        pos = pos.max(p.range.end().0);
    }
    spans.push((pos, len));
    for p in parts {
        let (start, plen) = (p.range.start().0, p.range.len().0);
        let window = image.window(p);
        let used = match image.fs_info(p.number) {
            Ok(Some(info)) => match info.fs_type {
                FsType::Fat(_) => fat::used_spans(&window)
                    .map(|s| ("FAT", s))
                    .map_err(|e| Some(e.to_string())),
                FsType::Ext(_) => crate::fs::ext4::used_spans(&window)
                    .map(|s| ("ext4", s))
                    .map_err(|e| Some(e.to_string())),
            },
            Ok(None) => Err(None),
            Err(e) => Err(Some(e.to_string())),
        };
        let how = match used {
            Ok((fs, used)) => {
                let bytes = used.iter().map(|&(a, b)| b - a).sum();
                // The readers stay inside their partition; clamp anyway.
                spans.extend(
                    used.into_iter()
                        .map(|(a, b)| (start + a.min(plen), start + b.min(plen))),
                );
                PartitionUse::Used { fs, bytes }
            }
            Err(why) => {
                spans.push((start, p.range.end().0));
                match why {
                    None => PartitionUse::Unknown,
                    Some(why) => PartitionUse::Unreadable { why },
                }
            }
        };
        partitions.push((p.number, how));
    }
    Usage {
        runs: BlockRuns::from_spans(spans),
        partitions,
    }
}
