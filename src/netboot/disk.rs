//! What an NBD export serves: a `Disk` of fixed size with positional reads
//! and writes. `serve` gives each node a disk made of three layers — the
//! shared cached base image, the node's patched pages (what `build` would
//! write into its image) with zeros up to the profile's virtual size, and
//! the node's own writes in a per-node delta file (`delta`) — so several
//! nodes cost one base plus small deltas.

use std::io;

/// A block device as the NBD server sees it. Offsets and lengths are
/// checked against `size` by the server before a call; implementations
/// may still refuse with an error, which the client gets as `EIO`
/// (`ENOSPC` for a full or over-quota store, `EINVAL` for `InvalidInput`).
pub trait Disk: Send + Sync {
    /// The size in bytes the export announces.
    fn size(&self) -> u64;
    /// Fills `buf` from `offset` (inside the disk).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes `buf` at `offset` (inside the disk).
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes every write made so far durable (NBD `FLUSH`).
    fn flush(&self) -> io::Result<()>;
    /// The range's contents are no longer needed; reads may return zeros
    /// or the old bytes (NBD `TRIM` is advisory).
    fn trim(&self, offset: u64, len: u64) -> io::Result<()>;
}
