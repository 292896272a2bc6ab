//! A node's own writes over its read-only disk: `Delta` is the `Disk` an
//! NBD export serves, made of a lower layer (the shared base with the
//! node's patched pages, supplied by `serve`) and the blocks the node wrote,
//! kept in a per-node directory so they survive a restart of `serve`:
//!
//! - `<node>.delta`: a sparse data file of the disk's size; a written 4 KiB
//!   block sits at its own offset.
//! - `<node>.map`: which blocks `<node>.delta` holds (one bit per block, a
//!   header naming the block and disk size, a CRC32 trailer).
//! - `<node>.id`: the identity of the lower layer the writes were made on
//!   (a fingerprint of the base and the node's patches); another identity is
//!   refused, since old writes over new patches is a disk nobody built.
//!
//! Durability: `flush` (NBD `FLUSH`, and `close`/`Drop`) first fsyncs the
//! data file and only then replaces the map (temp file, fsync, rename, fsync
//! of the directory), so a crash never leaves a map listing a block whose
//! data was not on disk; blocks written after the last flush fall back to
//! the lower layer, as unflushed writes on any disk may.
//!
//! TRIM punches the fully covered blocks out of the data file and marks them
//! written, so they read as zeros and cost no space; partly covered blocks
//! are left as they are (TRIM is advisory). A filesystem that cannot punch
//! holes makes TRIM a no-op.
//!
//! All three files are created 0600: a disk may hold secrets.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

mod map;

use map::{bit_of, bitmap_len, blocks_of, encode_map, read_map};

use crate::io::ReadAt;
use crate::io::lock::{self, LockError, Mode};
use crate::netboot::disk::Disk;

/// The unit the map tracks and sub-block writes read-modify-write.
pub const BLOCK: u64 = 4096;
const BLOCK_USIZE: usize = 4096;
/// `BLOCK` as the map header stores it.
const BLOCK_U32: u32 = 4096;

/// The longest identity stored; a fingerprint is far shorter.
pub const MAX_IDENTITY: usize = 4096;

/// Why a node's delta cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    #[error(
        "node {node:?}: a delta file needs a plain name (letters, digits, '-', '_', '.'; not starting with '.')"
    )]
    BadNodeName { node: String },
    #[error("node {node}: the disk identity is empty or longer than {MAX_IDENTITY} bytes")]
    BadIdentity { node: String },
    #[error(
        "{}: node {node}'s writes were made on another build of its disk (the profile or the base changed); serving them over the new one would mix an old disk with new patches. Run `homelab-image serve --reset {node}` to discard them and start from the new image",
        path.display()
    )]
    IdentityMismatch { node: String, path: PathBuf },
    #[error(
        "{}: node {node}'s delta is damaged ({why}). Run `homelab-image serve --reset {node}` to discard its writes and start from its image",
        path.display()
    )]
    Corrupt {
        node: String,
        path: PathBuf,
        why: String,
    },
    #[error(transparent)]
    Locked(#[from] LockError),
    #[error("{}: {cause}", path.display())]
    Io { path: PathBuf, cause: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> DeltaError + '_ {
    move |cause| DeltaError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// Where one node's delta lives.
#[derive(Debug, Clone)]
pub struct DeltaPaths {
    pub dir: PathBuf,
    pub data: PathBuf,
    pub map: PathBuf,
    pub id: PathBuf,
}

impl DeltaPaths {
    /// The files of `node` in `dir`; refuses a name that is not one plain
    /// file-name component.
    pub fn new(dir: &Path, node: &str) -> Result<Self, DeltaError> {
        let plain = !node.is_empty()
            && !node.starts_with('.')
            && node
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if !plain {
            return Err(DeltaError::BadNodeName { node: node.into() });
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            data: dir.join(format!("{node}.delta")),
            map: dir.join(format!("{node}.map")),
            id: dir.join(format!("{node}.id")),
        })
    }

    fn map_tmp(&self) -> PathBuf {
        self.map.with_extension("map.tmp")
    }
}

/// What `Delta::open` needs.
pub struct DeltaSpec<'a> {
    /// The directory holding every node's delta (created 0700 if missing).
    pub dir: &'a Path,
    pub node: &'a str,
    /// The disk below the node's writes; reads of `[0, size)` must succeed.
    pub lower: Arc<dyn ReadAt + Send + Sync>,
    pub size: u64,
    /// A fingerprint of the lower layer (base checksum, patches, size).
    pub identity: &'a str,
    /// Discard an existing delta (`serve --reset NODE`).
    pub reset: bool,
}

/// The blocks the data file holds, and whether that changed since the
/// map on disk was written.
struct State {
    bits: Vec<u8>,
    dirty: bool,
}

impl State {
    fn get(&self, block: u64) -> bool {
        let (byte, bit) = bit_of(block);
        self.bits.get(byte).is_some_and(|b| b & bit != 0)
    }

    fn set(&mut self, block: u64) {
        let (byte, bit) = bit_of(block);
        if let Some(b) = self.bits.get_mut(byte)
            && *b & bit == 0
        {
            *b |= bit;
            self.dirty = true;
        }
    }
}

/// A node's disk: its writes over the lower layer. See the module doc.
pub struct Delta {
    node: String,
    paths: DeltaPaths,
    size: u64,
    lower: Arc<dyn ReadAt + Send + Sync>,
    /// Also holds the exclusive lock that keeps a second `serve` out.
    data: File,
    state: Mutex<State>,
    /// One flush at a time, so an older map never replaces a newer one.
    flushing: Mutex<()>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic under the lock leaves at worst a bit set for a block whose
    // write failed, which reads back that block's (partly written) data:
    // no worse than a disk that lost power mid-write.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A buffer's length as a disk length (usize is at most 64 bits on every
/// target we build for, so this cannot truncate).
fn len_u64(buf: &[u8]) -> u64 {
    buf.len() as u64
}

fn create_opts() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true).mode(0o600);
    o
}

fn fsync_dir(dir: &Path) -> Result<(), DeltaError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

fn remove_if_present(path: &Path) -> Result<(), DeltaError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(path)(e)),
        _ => Ok(()),
    }
}

/// Writes `bytes` to `path` through a temp file, fsynced and renamed, then
/// fsyncs the directory: the file is either the old one or the new one.
fn replace_file(path: &Path, tmp: &Path, dir: &Path, bytes: &[u8]) -> Result<(), DeltaError> {
    let mut f = create_opts()
        .truncate(true)
        .open(tmp)
        .map_err(io_err(tmp))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(io_err(tmp))?;
    drop(f);
    std::fs::rename(tmp, path).map_err(io_err(path))?;
    fsync_dir(dir)
}

fn read_identity(path: &Path) -> Result<Option<Vec<u8>>, DeltaError> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mut buf = Vec::new();
    // +2: the newline, and one byte more to see an overlong file.
    // A small constant: the cast cannot truncate.
    f.take(MAX_IDENTITY as u64 + 2)
        .read_to_end(&mut buf)
        .map_err(io_err(path))?;
    Ok(Some(buf))
}

impl Delta {
    /// Opens `node`'s delta in `spec.dir`, creating it (or, with `reset`,
    /// recreating it) when there is none. Refuses another identity, a
    /// damaged map, and a delta another process has open.
    pub fn open(spec: DeltaSpec<'_>) -> Result<Delta, DeltaError> {
        let node = spec.node;
        let paths = DeltaPaths::new(spec.dir, node)?;
        if spec.identity.is_empty() || spec.identity.len() > MAX_IDENTITY {
            return Err(DeltaError::BadIdentity { node: node.into() });
        }
        let mut want_id = spec.identity.as_bytes().to_vec();
        want_id.push(b'\n');
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&paths.dir)
            .map_err(io_err(&paths.dir))?;
        let data = create_opts()
            .open(&paths.data)
            .map_err(io_err(&paths.data))?;
        // Locked before anything is read or removed: another `serve` may be
        // writing this very delta.
        lock::lock(&data, &paths.data, Mode::Exclusive)?;
        data.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io_err(&paths.data))?;
        let bits_len = bitmap_len(spec.size).map_err(io_err(&paths.data))?;
        let corrupt = |path: &Path, why: String| DeltaError::Corrupt {
            node: node.into(),
            path: path.to_path_buf(),
            why,
        };

        let existing = read_identity(&paths.id)?;
        let bits = match existing {
            Some(id) if id == want_id && !spec.reset => {
                let len = data.metadata().map_err(io_err(&paths.data))?.len();
                if len != spec.size {
                    return Err(corrupt(
                        &paths.data,
                        format!("it has {len} bytes, the disk {}", spec.size),
                    ));
                }
                read_map(&paths.map, spec.size).map_err(|why| corrupt(&paths.map, why))?
            }
            Some(_) if !spec.reset => {
                return Err(DeltaError::IdentityMismatch {
                    node: node.into(),
                    path: paths.id.clone(),
                });
            }
            _ => {
                // A fresh delta. The identity goes first and comes back
                // last: a crash in between leaves no identity, which the
                // next open treats as no delta at all.
                remove_if_present(&paths.id)?;
                fsync_dir(&paths.dir)?;
                remove_if_present(&paths.map)?;
                data.set_len(0)
                    .and_then(|()| data.set_len(spec.size))
                    .and_then(|()| data.sync_all())
                    .map_err(io_err(&paths.data))?;
                let bits = vec![0u8; bits_len];
                replace_file(
                    &paths.map,
                    &paths.map_tmp(),
                    &paths.dir,
                    &encode_map(spec.size, &bits),
                )?;
                replace_file(
                    &paths.id,
                    &paths.id.with_extension("id.tmp"),
                    &paths.dir,
                    &want_id,
                )?;
                if existing.is_some() {
                    tracing::info!(node, "delta reset: the node's earlier writes are gone");
                }
                bits
            }
        };
        Ok(Delta {
            node: node.into(),
            paths,
            size: spec.size,
            lower: spec.lower,
            data,
            state: Mutex::new(State { bits, dirty: false }),
            flushing: Mutex::new(()),
        })
    }

    pub fn paths(&self) -> &DeltaPaths {
        &self.paths
    }

    /// Flushes and closes, reporting what `Drop` could only log.
    pub fn close(self) -> io::Result<()> {
        self.flush_now()
    }

    /// The length of block `b` (the last one may be short).
    fn block_len(&self, b: u64) -> usize {
        // At most BLOCK, so it fits usize.
        (self.size - b * BLOCK).min(BLOCK) as usize
    }

    /// Reads whole-or-part block `b` from wherever it lives.
    fn read_block(&self, st: &State, b: u64, buf: &mut [u8]) -> io::Result<()> {
        if st.get(b) {
            FileExt::read_exact_at(&self.data, buf, b * BLOCK)
        } else {
            self.lower.read_exact_at(buf, b * BLOCK)
        }
    }

    fn check_range(&self, offset: u64, len: u64) -> io::Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "bytes {offset}+{len} lie past the end of {}'s {}-byte disk",
                    self.node, self.size
                ),
            )),
        }
    }

    fn flush_now(&self) -> io::Result<()> {
        let _one = locked(&self.flushing);
        let bits = {
            let mut st = locked(&self.state);
            if !st.dirty {
                // Writes over already-listed blocks still need their data
                // on disk.
                drop(st);
                return self.data.sync_data();
            }
            st.dirty = false;
            st.bits.clone()
        };
        // Every block in `bits` had its data written before the snapshot
        // (writes set the bit after writing, under the state lock), so this
        // fsync covers them all before the map names them.
        let result = self.data.sync_data().and_then(|()| {
            replace_file(
                &self.paths.map,
                &self.paths.map_tmp(),
                &self.paths.dir,
                &encode_map(self.size, &bits),
            )
            .map_err(|e| io::Error::other(e.to_string()))
        });
        if result.is_err() {
            locked(&self.state).dirty = true;
        }
        result
    }
}

impl Disk for Delta {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.check_range(offset, len_u64(buf))?;
        if buf.is_empty() {
            return Ok(());
        }
        // Which layer each block comes from, decided under the lock in one
        // pass; the reads then go in runs of blocks from the same layer.
        let first = offset / BLOCK;
        let last = (offset + len_u64(buf) - 1) / BLOCK;
        let runs: Vec<(u64, u64, bool)> = {
            let st = locked(&self.state);
            let mut runs: Vec<(u64, u64, bool)> = Vec::new();
            for b in first..=last {
                let upper = st.get(b);
                match runs.last_mut() {
                    Some((_, end, u)) if *u == upper => *end = b + 1,
                    _ => runs.push((b, b + 1, upper)),
                }
            }
            runs
        };
        let end = offset + len_u64(buf);
        for (start, stop, upper) in runs {
            let from = (start * BLOCK).max(offset);
            let to = (stop * BLOCK).min(end);
            // Both lie inside `buf`'s range, whose length is a usize.
            let part = &mut buf[(from - offset) as usize..(to - offset) as usize];
            if upper {
                FileExt::read_exact_at(&self.data, part, from)?;
            } else {
                self.lower.read_exact_at(part, from)?;
            }
        }
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.check_range(offset, len_u64(buf))?;
        if buf.is_empty() {
            return Ok(());
        }
        let end = offset + len_u64(buf);
        // The blocks wholly covered by a write that ends at `end`.
        let whole_stop = if end == self.size {
            blocks_of(self.size)
        } else {
            end / BLOCK
        };
        // Writes hold the lock throughout: two sub-block writes to one block
        // must not both read the old block, and a flush must see a write
        // whole or not at all.
        let mut st = locked(&self.state);
        let mut scratch = [0u8; BLOCK_USIZE];
        let mut pos = offset;
        while pos < end {
            let b = pos / BLOCK;
            let b_start = b * BLOCK;
            // Offsets below are inside `buf` (`pos - offset < buf.len()`) or
            // a block (`< BLOCK`), so the casts to usize cannot truncate.
            if pos == b_start && b < whole_stop {
                // A run of whole blocks, in one write straight from `buf`.
                let to = (whole_stop * BLOCK).min(self.size);
                self.data
                    .write_all_at(&buf[(pos - offset) as usize..(to - offset) as usize], pos)?;
                for w in b..whole_stop {
                    st.set(w);
                }
                pos = to;
            } else {
                // A partial block: its old contents, our bytes over them.
                let b_len = self.block_len(b);
                let to = end.min(b_start + len_u64(&scratch[..b_len]));
                let block = &mut scratch[..b_len];
                self.read_block(&st, b, block)?;
                block[(pos - b_start) as usize..(to - b_start) as usize]
                    .copy_from_slice(&buf[(pos - offset) as usize..(to - offset) as usize]);
                self.data.write_all_at(block, b_start)?;
                st.set(b);
                pos = to;
            }
        }
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        self.flush_now()
    }

    fn trim(&self, offset: u64, len: u64) -> io::Result<()> {
        self.check_range(offset, len)?;
        let end = offset + len;
        let first = offset.div_ceil(BLOCK);
        // A trim reaching the disk's end covers its short last block too.
        let stop = if end == self.size {
            blocks_of(self.size)
        } else {
            end / BLOCK
        };
        if first >= stop {
            return Ok(());
        }
        let mut st = locked(&self.state);
        let from = first * BLOCK;
        let to = (stop * BLOCK).min(self.size);
        match rustix::fs::fallocate(
            &self.data,
            rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
            from,
            to - from,
        ) {
            Ok(()) => {
                for b in first..stop {
                    st.set(b);
                }
                Ok(())
            }
            // Advisory: where holes cannot be punched, nothing changes.
            Err(rustix::io::Errno::OPNOTSUPP) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for Delta {
    fn drop(&mut self) {
        if let Err(e) = self.flush_now() {
            tracing::warn!(
                node = self.node,
                "{}: the last writes could not be made durable: {e}",
                self.paths.data.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::map::MAP_HEADER;
    use super::*;

    /// A lower layer of `len` patterned bytes, in memory.
    fn lower(len: usize) -> Arc<Vec<u8>> {
        Arc::new((0..len).map(|i| (i % 251) as u8 ^ 0x3c).collect())
    }

    struct Mem(Arc<Vec<u8>>);
    impl ReadAt for Mem {
        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            self.0.as_slice().read_exact_at(buf, offset)
        }
    }

    fn open(
        dir: &Path,
        low: &Arc<Vec<u8>>,
        identity: &str,
        reset: bool,
    ) -> Result<Delta, DeltaError> {
        Delta::open(DeltaSpec {
            dir,
            node: "pi1",
            lower: Arc::new(Mem(Arc::clone(low))),
            size: low.len() as u64,
            identity,
            reset,
        })
    }

    fn contents(d: &Delta) -> Vec<u8> {
        let mut all = vec![0u8; d.size() as usize];
        d.read_at(&mut all, 0).unwrap();
        all
    }

    #[test]
    fn reads_see_each_write_over_the_lower_layer_and_survive_a_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        // Not a multiple of 4096: the last block is short.
        let low = lower(64 * 1024 + 1536);
        let mut model = low.to_vec();
        let d = open(tmp.path(), &low, "id-1", false).unwrap();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let size = model.len() as u64;
        for round in 0..300u64 {
            let offset = next(size);
            let len = next((size - offset).min(20_000)) + 1;
            if round % 10 == 9 {
                d.trim(offset, len).unwrap();
                // Our TRIM zeroes the blocks it covers whole.
                let first = offset.div_ceil(BLOCK);
                let stop = if offset + len == size {
                    blocks_of(size)
                } else {
                    (offset + len) / BLOCK
                };
                for b in first..stop {
                    let from = (b * BLOCK) as usize;
                    let to = ((b + 1) * BLOCK).min(size) as usize;
                    model[from..to].fill(0);
                }
            } else {
                let data: Vec<u8> = (0..len).map(|i| (round as u8) ^ (i as u8)).collect();
                d.write_at(&data, offset).unwrap();
                model[offset as usize..(offset + len) as usize].copy_from_slice(&data);
            }
            let probe = next(size);
            let plen = next((size - probe).min(9000)) + 1;
            let mut got = vec![0u8; plen as usize];
            d.read_at(&mut got, probe).unwrap();
            assert_eq!(
                got,
                model[probe as usize..(probe + plen) as usize],
                "round {round}"
            );
        }
        assert_eq!(contents(&d), model);
        d.close().unwrap();
        let again = open(tmp.path(), &low, "id-1", false).unwrap();
        assert_eq!(contents(&again), model);
    }

    #[test]
    fn out_of_range_calls_are_refused_not_clamped() {
        let tmp = tempfile::tempdir().unwrap();
        let low = lower(8192);
        let d = open(tmp.path(), &low, "id", false).unwrap();
        let e = d.write_at(&[1; 2], 8191).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(d.read_at(&mut [0; 1], 8192).is_err());
        assert!(d.trim(u64::MAX, 2).is_err());
        assert_eq!(contents(&d), *low);
    }

    #[test]
    fn the_map_on_disk_names_a_block_only_after_a_flush() {
        let tmp = tempfile::tempdir().unwrap();
        let low = lower(16 * 4096);
        let d = open(tmp.path(), &low, "id", false).unwrap();
        d.write_at(&[0xee; 100], 3 * 4096 + 10).unwrap();
        let map_bit3 = |path: &Path| read_map(path, low.len() as u64).unwrap()[0] & (1 << 3) != 0;
        assert!(
            !map_bit3(&d.paths().map),
            "the map listed an unflushed block"
        );
        d.flush().unwrap();
        assert!(map_bit3(&d.paths().map));
        // And the data it names is in the data file.
        let mut block = vec![0u8; 4096];
        FileExt::read_exact_at(&File::open(&d.paths().data).unwrap(), &mut block, 3 * 4096)
            .unwrap();
        assert_eq!(&block[10..110], &[0xee; 100]);
        assert_eq!(&block[..10], &low[3 * 4096..3 * 4096 + 10]);
    }

    #[test]
    fn another_identity_is_refused_until_reset_discards_the_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let low = lower(8 * 4096);
        let d = open(tmp.path(), &low, "base-a", false).unwrap();
        d.write_at(&[7; 4096], 0).unwrap();
        d.close().unwrap();
        let e = open(tmp.path(), &low, "base-b", false).err().unwrap();
        let msg = e.to_string();
        assert!(matches!(e, DeltaError::IdentityMismatch { .. }), "{msg}");
        assert!(
            msg.contains("pi1.id") && msg.contains("node pi1") && msg.contains("serve --reset pi1"),
            "{msg}"
        );
        // The refusal changed nothing: the old identity still opens, data kept.
        let d = open(tmp.path(), &low, "base-a", false).unwrap();
        assert_eq!(&contents(&d)[..4096], &[7; 4096]);
        drop(d);
        let d = open(tmp.path(), &low, "base-b", true).unwrap();
        assert_eq!(contents(&d), *low);
        drop(d);
        // The new identity is now the stored one.
        assert!(open(tmp.path(), &low, "base-b", false).is_ok());
    }

    #[test]
    fn a_damaged_map_is_refused_naming_the_file_and_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let low = lower(8 * 4096);
        let d = open(tmp.path(), &low, "id", false).unwrap();
        d.write_at(&[1; 10], 0).unwrap();
        let map = d.paths().map.clone();
        d.close().unwrap();
        let mut bytes = std::fs::read(&map).unwrap();
        bytes[MAP_HEADER] ^= 0x80;
        std::fs::write(&map, &bytes).unwrap();
        let msg = open(tmp.path(), &low, "id", false)
            .err()
            .unwrap()
            .to_string();
        assert!(
            msg.contains("pi1.map") && msg.contains("checksum") && msg.contains("--reset pi1"),
            "{msg}"
        );
        std::fs::write(&map, &bytes[..5]).unwrap();
        let msg = open(tmp.path(), &low, "id", false)
            .err()
            .unwrap()
            .to_string();
        assert!(msg.contains("the map has 5 bytes"), "{msg}");
    }

    #[test]
    fn delta_files_are_private_and_a_second_opener_is_turned_away() {
        let tmp = tempfile::tempdir().unwrap();
        let low = lower(4096);
        let d = open(tmp.path(), &low, "id", false).unwrap();
        d.flush().unwrap();
        for p in [&d.paths().data, &d.paths().map, &d.paths().id] {
            let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
        let msg = open(tmp.path(), &low, "id", false)
            .err()
            .unwrap()
            .to_string();
        assert!(msg.contains("pi1.delta") && msg.contains("in use"), "{msg}");
    }

    #[test]
    fn node_names_that_are_not_one_plain_file_name_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        for bad in ["", "../pi1", ".hidden", "a/b", "pi 1"] {
            let e = DeltaPaths::new(tmp.path(), bad).unwrap_err();
            assert!(matches!(e, DeltaError::BadNodeName { .. }), "{bad}");
        }
        assert!(DeltaPaths::new(tmp.path(), "pi-1.lab_2").is_ok());
    }
}
