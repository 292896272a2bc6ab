//! `build --format qcow2`: the finished raw image as a qcow2 (version 3)
//! file, for hypervisors that prefer it (Proxmox's `import-from`, libvirt).
//!
//! One pass over the raw image: data clusters are written in order right
//! after the header, skipping clusters that are holes or all zeros (an
//! unallocated cluster reads as zeros in an image without a backing file);
//! the tables follow the data, once their sizes are known:
//!
//! ```text
//! cluster 0            header (104 bytes, no extensions)
//! 1 ..= D              data clusters, in guest order
//! then                 L2 tables (one per 512 MiB of guest space with data)
//! then                 L1 table
//! then                 refcount blocks, then the refcount table
//! ```
//!
//! Every cluster the file uses has refcount 1 and every table entry has the
//! COPIED flag, which is what `qemu-img check` expects of an image without
//! snapshots. No compression: the output is for running, not shipping
//! (`--compress xz` is for shipping).

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::progress::Task;

/// 64 KiB clusters, qemu-img's default.
pub const CLUSTER_BITS: u32 = 16;
const CLUSTER: u64 = 1 << CLUSTER_BITS;
/// Entries of one L2 table (8 bytes each).
const L2_ENTRIES: u64 = CLUSTER / 8;
/// 16-bit refcounts (refcount_order 4): entries of one refcount block.
const REFCOUNT_ENTRIES: u64 = CLUSTER / 2;
const HEADER_LEN: u32 = 104;
const MAGIC: u32 = 0x5146_49fb;
/// Table entry flag: the cluster's refcount is exactly one.
const COPIED: u64 = 1 << 63;

/// What was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qcow2Summary {
    /// The guest (virtual) size in bytes.
    pub virtual_size: u64,
    /// Data clusters stored.
    pub data_clusters: u64,
    /// The qcow2 file's length in bytes.
    pub file_len: u64,
}

/// Writes `src` (`len` bytes of a raw image) as qcow2 into `dst`, reporting
/// the guest bytes looked at to `task`.
pub fn qcow2(
    src: &File,
    len: u64,
    dst: File,
    task: &Task,
    stop: &AtomicBool,
) -> io::Result<Qcow2Summary> {
    let guest_clusters = len.div_ceil(CLUSTER);
    let l1_entries = guest_clusters.div_ceil(L2_ENTRIES);
    if l1_entries > (32 << 20) / 8 {
        // qemu refuses L1 tables over 32 MiB (a 2 PiB disk at 64 KiB clusters).
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a {len}-byte image is too large for a qcow2 with 64 KiB clusters"),
        ));
    }
    let mut out = BufWriter::with_capacity(1 << 20, dst);
    out.write_all(&vec![0u8; CLUSTER as usize])?;

    // Guest cluster index → host cluster index, for the clusters stored.
    let mut stored: Vec<(u64, u64)> = Vec::new();
    let mut next_host = 1u64;
    let mut buf = vec![0u8; CLUSTER as usize];
    for (start, seg_len) in crate::io::segments::data_segments(src, len)? {
        let first = start / CLUSTER;
        let last = (start + seg_len).div_ceil(CLUSTER);
        for guest in first..last {
            if stop.load(Ordering::Relaxed) {
                return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
            }
            // Two segments can share a cluster: it is stored once.
            if stored.last().is_some_and(|&(g, _)| g == guest) {
                continue;
            }
            let off = guest * CLUSTER;
            let want = CLUSTER.min(len - off) as usize; // ≤ CLUSTER: fits
            buf.fill(0);
            read_full(src, &mut buf[..want], off)?;
            task.set_position(off + want as u64);
            if buf.iter().all(|&b| b == 0) {
                continue;
            }
            out.write_all(&buf)?;
            stored.push((guest, next_host));
            next_host += 1;
        }
    }
    let data_clusters = stored.len() as u64;

    // L2 tables for each L1 slot with data, in slot order.
    let mut l2_slots: Vec<u64> = stored.iter().map(|&(g, _)| g / L2_ENTRIES).collect();
    l2_slots.dedup();
    let l2_first = next_host;
    let l1_first = l2_first + l2_slots.len() as u64;
    let l1_clusters = (l1_entries * 8).div_ceil(CLUSTER).max(1);
    let rb_first = l1_first + l1_clusters;
    let (rb_count, rt_clusters) = refcount_layout(rb_first);
    let rt_first = rb_first + rb_count;
    let total = rt_first + rt_clusters;

    let mut table = vec![0u8; CLUSTER as usize];
    let mut i = 0;
    for &slot in &l2_slots {
        table.fill(0);
        while i < stored.len() && stored[i].0 / L2_ENTRIES == slot {
            let (guest, host) = stored[i];
            let at = ((guest % L2_ENTRIES) * 8) as usize; // < CLUSTER
            table[at..at + 8].copy_from_slice(&((host * CLUSTER) | COPIED).to_be_bytes());
            i += 1;
        }
        out.write_all(&table)?;
    }

    let mut l1 = vec![0u8; (l1_clusters * CLUSTER) as usize];
    for (n, &slot) in l2_slots.iter().enumerate() {
        let host = l2_first + n as u64;
        let at = (slot * 8) as usize; // slot < l1_entries
        l1[at..at + 8].copy_from_slice(&((host * CLUSTER) | COPIED).to_be_bytes());
    }
    out.write_all(&l1)?;

    // Every cluster 0..total is in use, with refcount 1.
    for b in 0..rb_count {
        table.fill(0);
        let from = b * REFCOUNT_ENTRIES;
        let to = total.min(from + REFCOUNT_ENTRIES);
        for c in from..to {
            let at = ((c - from) * 2) as usize;
            table[at..at + 2].copy_from_slice(&1u16.to_be_bytes());
        }
        out.write_all(&table)?;
    }
    let mut rt = vec![0u8; (rt_clusters * CLUSTER) as usize];
    for b in 0..rb_count {
        let at = (b * 8) as usize;
        rt[at..at + 8].copy_from_slice(&((rb_first + b) * CLUSTER).to_be_bytes());
    }
    out.write_all(&rt)?;

    let header = header(
        len,
        l1_entries,
        l1_first * CLUSTER,
        rt_first * CLUSTER,
        rt_clusters,
    );
    out.seek(SeekFrom::Start(0))?;
    out.write_all(&header)?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(Qcow2Summary {
        virtual_size: len,
        data_clusters,
        file_len: total * CLUSTER,
    })
}

/// How many refcount blocks and refcount table clusters an image of
/// `used` clusters needs when they come after those clusters (they count
/// themselves): the smallest fixed point.
fn refcount_layout(used: u64) -> (u64, u64) {
    let (mut rb, mut rt) = (1u64, 1u64);
    loop {
        let total = used + rb + rt;
        let need_rb = total.div_ceil(REFCOUNT_ENTRIES);
        let need_rt = (need_rb * 8).div_ceil(CLUSTER);
        if need_rb <= rb && need_rt <= rt {
            return (rb, rt);
        }
        rb = rb.max(need_rb);
        rt = rt.max(need_rt);
    }
}

fn header(size: u64, l1_entries: u64, l1_off: u64, rt_off: u64, rt_clusters: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN as usize);
    h.extend_from_slice(&MAGIC.to_be_bytes());
    h.extend_from_slice(&3u32.to_be_bytes()); // version
    h.extend_from_slice(&0u64.to_be_bytes()); // backing_file_offset
    h.extend_from_slice(&0u32.to_be_bytes()); // backing_file_size
    h.extend_from_slice(&CLUSTER_BITS.to_be_bytes());
    h.extend_from_slice(&size.to_be_bytes());
    h.extend_from_slice(&0u32.to_be_bytes()); // crypt_method
    // l1_entries ≤ 4 Mi (checked by the caller): fits in u32.
    h.extend_from_slice(&(l1_entries as u32).to_be_bytes());
    h.extend_from_slice(&l1_off.to_be_bytes());
    h.extend_from_slice(&rt_off.to_be_bytes());
    // A refcount table of a few clusters; at most l1-sized.
    h.extend_from_slice(&(rt_clusters as u32).to_be_bytes());
    h.extend_from_slice(&0u32.to_be_bytes()); // nb_snapshots
    h.extend_from_slice(&0u64.to_be_bytes()); // snapshots_offset
    h.extend_from_slice(&0u64.to_be_bytes()); // incompatible_features
    h.extend_from_slice(&0u64.to_be_bytes()); // compatible_features
    h.extend_from_slice(&0u64.to_be_bytes()); // autoclear_features
    h.extend_from_slice(&4u32.to_be_bytes()); // refcount_order: 16 bits
    h.extend_from_slice(&HEADER_LEN.to_be_bytes());
    debug_assert_eq!(h.len(), HEADER_LEN as usize);
    h
}

fn read_full(f: &File, mut buf: &mut [u8], mut off: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match f.read_at(buf, off) {
            // A file shorter than its length: the rest reads as zeros.
            Ok(0) => return Ok(()),
            Ok(n) => {
                off += n as u64;
                buf = &mut buf[n..];
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refcount_layout_counts_its_own_clusters() {
        assert_eq!(refcount_layout(10), (1, 1));
        // 32768 entries per block: 32766 used + 1 block + 1 table fits…
        assert_eq!(refcount_layout(REFCOUNT_ENTRIES - 2), (1, 1));
        // …one more does not.
        assert_eq!(refcount_layout(REFCOUNT_ENTRIES - 1), (2, 1));
        let (rb, rt) = refcount_layout(10_000_000);
        assert!((10_000_000 + rb + rt).div_ceil(REFCOUNT_ENTRIES) <= rb);
        assert!((rb * 8).div_ceil(CLUSTER) <= rt);
    }

    #[test]
    fn header_fields_sit_at_the_spec_offsets() {
        let h = header(1 << 30, 2, 5 << 16, 9 << 16, 1);
        assert_eq!(&h[0..4], b"QFI\xfb");
        assert_eq!(u32::from_be_bytes(h[4..8].try_into().unwrap()), 3);
        assert_eq!(u32::from_be_bytes(h[20..24].try_into().unwrap()), 16);
        assert_eq!(u64::from_be_bytes(h[24..32].try_into().unwrap()), 1 << 30);
        assert_eq!(u32::from_be_bytes(h[36..40].try_into().unwrap()), 2);
        assert_eq!(u64::from_be_bytes(h[40..48].try_into().unwrap()), 5 << 16);
        assert_eq!(u64::from_be_bytes(h[48..56].try_into().unwrap()), 9 << 16);
        assert_eq!(u32::from_be_bytes(h[96..100].try_into().unwrap()), 4);
        assert_eq!(u32::from_be_bytes(h[100..104].try_into().unwrap()), 104);
    }
}
