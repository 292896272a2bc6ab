//! Which bytes of a FAT volume the filesystem uses, for a bmap: the
//! reserved area (boot sector, FSInfo, backup boot sector), every FAT, the
//! FAT12/16 root directory, and every cluster whose entry is non-zero in any
//! of the FATs (allocated, end of chain or bad: all are kept). Only clusters
//! every FAT calls free are left out. The FAT tables are read here, not
//! through the fatfs crate, which offers no way to list free clusters.

use std::io;

use crate::fs::fat::{Bpb, FatType};
use crate::io::PartitionWindow;

/// Bytes of one FAT read per step (a multiple of every entry size).
const STEP: u64 = 1 << 20;

/// Why a FAT volume's usage could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FatUsageError {
    #[error(transparent)]
    BootSector(#[from] crate::fs::fat::BpbError),
    #[error("reading FAT {copy} at byte {offset} of the partition: {source}")]
    Read {
        copy: u8,
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("reading the boot sector: {0}")]
    Boot(#[source] io::Error),
    #[error(
        "the boot sector gives {0} clusters, more than FAT32 can address ({max})",
        max = MAX_CLUSTERS
    )]
    TooManyClusters(u64),
}

/// Clusters a FAT32 can address (0x0FFFFFF5 entries less the 2 reserved):
/// also what bounds the cluster set's memory (32 MiB).
const MAX_CLUSTERS: u64 = 0x0FFF_FFF5 - 2;

/// The byte spans `[start, end)` of the FAT volume in `dev` that it uses,
/// in order, adjacent spans merged.
pub fn used_spans(dev: &PartitionWindow) -> Result<Vec<(u64, u64)>, FatUsageError> {
    let mut sector = [0u8; 512];
    dev.read_exact_at(0, &mut sector)
        .map_err(FatUsageError::Boot)?;
    let bpb = Bpb::parse(&sector, dev.len().0)?;
    let bps = u64::from(bpb.bytes_per_sector);
    let clusters = u64::from(bpb.cluster_count);
    if clusters > MAX_CLUSTERS {
        return Err(FatUsageError::TooManyClusters(clusters));
    }
    let used = used_clusters(dev, &bpb)?;
    let cluster_bytes = u64::from(bpb.sectors_per_cluster) * bps;
    let data_start = u64::from(bpb.first_data_sector) * bps;
    let mut spans = vec![(0, data_start)];
    let mut c = 0;
    while c < clusters {
        if !used.get(c) {
            c += 1;
            continue;
        }
        let run_start = c;
        while c < clusters && used.get(c) {
            c += 1;
        }
        let start = data_start + run_start * cluster_bytes;
        let end = data_start + c * cluster_bytes;
        match spans.last_mut() {
            Some(last) if last.1 == start => last.1 = end,
            _ => spans.push((start, end)),
        }
    }
    Ok(spans)
}

/// One bit per data cluster (index 0 is cluster 2).
struct ClusterSet(Vec<u64>);

impl ClusterSet {
    fn new(n: u64) -> ClusterSet {
        // n ≤ MAX_CLUSTERS (checked by the caller): the Vec fits.
        ClusterSet(vec![0; n.div_ceil(64) as usize])
    }
    // i < n, so i / 64 indexes the Vec made by `new`.
    fn set(&mut self, i: u64) {
        self.0[(i / 64) as usize] |= 1 << (i % 64);
    }
    fn get(&self, i: u64) -> bool {
        self.0[(i / 64) as usize] & (1 << (i % 64)) != 0
    }
}

/// The clusters whose entry is non-zero in any FAT. Entries a FAT is too
/// small to hold count as used: nothing says they are free.
fn used_clusters(dev: &PartitionWindow, bpb: &Bpb) -> Result<ClusterSet, FatUsageError> {
    let bps = u64::from(bpb.bytes_per_sector);
    let clusters = u64::from(bpb.cluster_count);
    let mut used = ClusterSet::new(clusters);
    let fat_bytes = u64::from(bpb.fat_size) * bps;
    // Entries 0 and 1 are reserved; cluster c's entry is entry c.
    let entries = clusters + 2;
    let (held, need) = match bpb.fat_type {
        // 12-bit entries, two per three bytes.
        FatType::Fat12 => (fat_bytes * 2 / 3, (entries * 3).div_ceil(2)),
        FatType::Fat16 => (fat_bytes / 2, entries * 2),
        FatType::Fat32 => (fat_bytes / 4, entries * 4),
    };
    for c in held.saturating_sub(2)..clusters {
        used.set(c);
    }
    let need = need.min(fat_bytes);
    for copy in 0..bpb.fats {
        let fat_start =
            (u64::from(bpb.reserved_sectors) + u64::from(copy) * u64::from(bpb.fat_size)) * bps;
        let read = |offset: u64, len: u64| -> Result<Vec<u8>, FatUsageError> {
            // len ≤ STEP, or a FAT12 table of at most 6 KiB.
            let mut buf = vec![0u8; len as usize];
            dev.read_exact_at(fat_start + offset, &mut buf)
                .map_err(|source| FatUsageError::Read {
                    copy,
                    offset: fat_start + offset,
                    source,
                })?;
            Ok(buf)
        };
        if bpb.fat_type == FatType::Fat12 {
            // At most 4084 clusters: the table is small, read it whole.
            let t = read(0, need)?;
            for c in 0..clusters.min(held.saturating_sub(2)) {
                let e = c + 2;
                // Inside the table just read (e < held), a small Vec.
                let at = (e * 3 / 2) as usize;
                let pair = u16::from_le_bytes([t[at], t[at + 1]]);
                let v = if e % 2 == 0 { pair & 0x0FFF } else { pair >> 4 };
                if v != 0 {
                    used.set(c);
                }
            }
            continue;
        }
        let size = if bpb.fat_type == FatType::Fat16 { 2 } else { 4 };
        let mut offset = 0;
        while offset < need {
            let len = STEP.min(need - offset);
            let buf = read(offset, len)?;
            for (i, e) in buf.chunks_exact(size).enumerate() {
                // i < STEP / 2: fits u64.
                let entry = offset / size as u64 + i as u64;
                // Any bit set, reserved FAT32 high bits too: be safe.
                if entry >= 2 && e.iter().any(|&b| b != 0) {
                    used.set(entry - 2);
                }
            }
            offset += len;
        }
    }
    Ok(used)
}
