//! The SHA-256 of bmap ranges that no node's overlay touches: they hold
//! the base's bytes, so their sums depend on the base alone. A run shares
//! them between its nodes (`PieceHashes`), and for a base from the image
//! cache they are kept on disk beside its entry (`Kept`), so later runs
//! hash only the ranges a node changes.
//!
//! Why a kept sum cannot go stale: a cached image is named by the SHA-256
//! of its content and never written after it is published; the sums file
//! names that hash and size in its header, and is used only while the
//! cache's own check on use (size, time stamp, sampled blocks: see
//! `source::fingerprint`) finds the image intact, the same trust the cache
//! gives the image itself. Each sum is keyed by its exact block range, so a
//! node whose map differs from an earlier one (other used blocks, another
//! grid) misses exactly where it differs and hashes those ranges afresh.
//! A local raw `image.path` used in place gets no sums file: anything may
//! rewrite it in place, and file identity (device, inode, size, time
//! stamps) cannot prove its bytes unchanged where time stamps are coarse.
//!
//! The file is text: a header, one `FIRST LAST SHA256` line per range, and
//! a last line with the SHA-256 of everything above it, so a truncated or
//! hand-edited file is noticed, ignored (with a warning) and written again.
//! It is read with a size limit, written by rename from a temporary file,
//! and is 0644: it holds the base's sums and nothing of any node. A file
//! forged with a matching closing sum would be believed; no check is added
//! for that, because whoever can write the cache can as well rewrite the
//! image and its metadata, and a wrong sum cannot pass silently: bmaptool
//! and our `flash` hash every range they write against the bmap and stop
//! at the first mismatch.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::source::Sha256;
use crate::source::cache::Cache;

/// The first line of a sums file.
const MAGIC: &str = "homelab-image bmap range sums 1";
/// Larger files are not read (about 300,000 lines: far more ranges than
/// any map of a multi-GiB image has).
const MAX_BYTES: u64 = 32 << 20;
/// Entries kept at most; past it only those a run used are written.
const MAX_ENTRIES: usize = 250_000;

/// A block range `(first, last)`, inclusive.
pub type Key = (u64, u64);

#[derive(Debug, Default)]
struct Table {
    sums: HashMap<Key, [u8; 32]>,
    /// Keys this run looked up with success or added.
    used: HashSet<Key>,
    /// Whether this run added a sum.
    added: bool,
}

/// SHA-256 of ranges of one base image that no overlay touched, by block
/// range: shared by the nodes of one run built from that base, and
/// loaded from and stored to its `Kept` file when it has one.
#[derive(Debug, Default)]
pub struct PieceHashes(Mutex<Table>);

impl PieceHashes {
    /// A table holding `sums` (read from a `Kept` file).
    pub fn with(sums: HashMap<Key, [u8; 32]>) -> Self {
        Self(Mutex::new(Table {
            sums,
            ..Table::default()
        }))
    }

    pub fn get(&self, key: Key) -> Option<[u8; 32]> {
        let mut t = self.lock();
        let sum = t.sums.get(&key).copied();
        if sum.is_some() {
            t.used.insert(key);
        }
        sum
    }

    pub fn put(&self, key: Key, sum: [u8; 32]) {
        let mut t = self.lock();
        t.sums.insert(key, sum);
        t.used.insert(key);
        t.added = true;
    }

    /// Number of sums held.
    pub fn len(&self) -> usize {
        self.lock().sums.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What to write back: every sum, in order (only the used ones when
    /// there are too many), or `None` when this run added nothing.
    fn to_store(&self) -> Option<Vec<(Key, [u8; 32])>> {
        let t = self.lock();
        if !t.added {
            return None;
        }
        let keep_all = t.sums.len() <= MAX_ENTRIES;
        let mut out: Vec<(Key, [u8; 32])> = t
            .sums
            .iter()
            .filter(|(k, _)| keep_all || t.used.contains(k))
            .map(|(&k, &s)| (k, s))
            .collect();
        out.sort_unstable_by_key(|&(k, _)| k);
        out.truncate(MAX_ENTRIES);
        Some(out)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // Entries are inserted whole; a poisoned table is still consistent.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The sums file of one cached base image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub path: PathBuf,
    /// The image's SHA-256 (its cache name) and length.
    image: Sha256,
    len: u64,
    /// The grid ranges are cut on, in blocks, and the block size.
    grid: u64,
    block: u64,
}

impl Kept {
    /// The sums file for `base` when it is an intact image of the cache
    /// (`<cache>/images/<sha256>.img`), else `None`.
    pub fn for_base(base: &Path, grid: u64, block: u64) -> Option<Kept> {
        let (cache, image, len) = Cache::intact_image(base)?;
        Some(Kept {
            path: cache.range_sums_path(&image),
            image,
            len,
            grid,
            block,
        })
    }

    /// The sums the file holds. A missing file holds none; an unreadable,
    /// oversized or damaged one is ignored with a warning (the run takes
    /// the sums again and writes a good file).
    pub fn load(&self) -> PieceHashes {
        match self.read() {
            Ok(sums) => PieceHashes::with(sums),
            Err(None) => PieceHashes::default(),
            Err(Some(why)) => {
                tracing::warn!(
                    "ignoring the range sums {}: {why}; they are taken again",
                    self.path.display()
                );
                PieceHashes::default()
            }
        }
    }

    /// Writes what `table` holds when this run added to it: atomically, by
    /// rename; a failure is a warning (the sums are only a shortcut).
    pub fn store(&self, table: &PieceHashes) {
        let Some(entries) = table.to_store() else {
            return;
        };
        if let Err(e) = self.write(&entries) {
            tracing::warn!("cannot keep the range sums in {}: {e}", self.path.display());
        }
    }

    fn header(&self) -> String {
        format!(
            "{MAGIC}\nimage {} {} block {} grid {}\n",
            self.image, self.len, self.block, self.grid
        )
    }

    /// The file's sums; `Err(None)` when there is no file, else why it is
    /// not used.
    fn read(&self) -> Result<HashMap<Key, [u8; 32]>, Option<String>> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(None),
            Err(e) => return Err(Some(format!("cannot read it: {e}"))),
        };
        let mut bytes = Vec::new();
        file.take(MAX_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Some(format!("cannot read it: {e}")))?;
        if crate::source::len64(bytes.len()) > MAX_BYTES {
            return Err(Some(format!("it is larger than {MAX_BYTES} bytes")));
        }
        let text = String::from_utf8(bytes).map_err(|_| Some("it is not text".to_owned()))?;
        self.parse(&text).map_err(Some)
    }

    fn parse(&self, text: &str) -> Result<HashMap<Key, [u8; 32]>, String> {
        let body_end = text
            .trim_end_matches('\n')
            .rfind('\n')
            .map(|i| i + 1)
            .ok_or("it is truncated")?;
        let (body, last) = text.split_at(body_end);
        let sum = last
            .strip_prefix("sum ")
            .and_then(|s| s.strip_suffix('\n'))
            .ok_or("it is truncated (no closing sum line)")?;
        if sum != Sha256::of(body.as_bytes()).to_string() {
            return Err("its closing sum does not match its content".to_owned());
        }
        let rest = body
            .strip_prefix(self.header().as_str())
            .ok_or("it was made for another image, size or grid")?;
        let blocks = self.len.div_ceil(self.block);
        let mut sums = HashMap::new();
        for (i, line) in rest.lines().enumerate() {
            // The header's two lines come first.
            let at = i + 3;
            let bad = || format!("line {at} is not `FIRST LAST SHA256` of a range");
            let mut f = line.split(' ');
            let (Some(a), Some(b), Some(s), None) = (f.next(), f.next(), f.next(), f.next()) else {
                return Err(bad());
            };
            let (first, last): (u64, u64) = match (a.parse(), b.parse()) {
                (Ok(a), Ok(b)) => (a, b),
                _ => return Err(bad()),
            };
            let sha: Sha256 = s.parse().map_err(|_| bad())?;
            // A range lies in the image and in one grid cell.
            if first > last || last >= blocks || first / self.grid != last / self.grid {
                return Err(format!(
                    "line {at}: blocks {first}-{last} are not a range of this image"
                ));
            }
            if sums.insert((first, last), sha.to_bytes()).is_some() {
                return Err(format!("line {at}: blocks {first}-{last} appear twice"));
            }
        }
        Ok(sums)
    }

    fn write(&self, entries: &[(Key, [u8; 32])]) -> io::Result<()> {
        let mut text = self.header();
        for &((first, last), sum) in entries {
            text.push_str(&format!("{first} {last} {}\n", Sha256::from_bytes(sum)));
        }
        let sum = Sha256::of(text.as_bytes());
        text.push_str(&format!("sum {sum}\n"));
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = self
            .path
            .with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o644)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &self.path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(dir: &Path) -> Kept {
        Kept {
            path: dir.join("x.ranges"),
            image: Sha256::of(b"image"),
            len: 10 * 4096 * 1024,
            grid: 1024,
            block: 4096,
        }
    }

    fn table() -> PieceHashes {
        let t = PieceHashes::default();
        t.put((0, 1023), [1; 32]);
        t.put((1024, 1030), [2; 32]);
        t.put((5000, 5000), [3; 32]);
        t
    }

    #[test]
    fn stored_sums_load_back_and_an_unchanged_table_is_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let k = kept(dir.path());
        k.store(&table());
        let loaded = k.load();
        assert_eq!(loaded.len(), 3);
        assert_eq!(loaded.get((1024, 1030)), Some([2; 32]));
        assert_eq!(loaded.get((1024, 1031)), None);
        assert!(
            loaded.to_store().is_none(),
            "nothing added, nothing to write"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&k.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o644, 0, "mode {mode:o}");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "a temporary file was left: {names:?}");
    }

    #[test]
    fn damaged_or_foreign_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let k = kept(dir.path());
        k.store(&table());
        let good = fs::read_to_string(&k.path).unwrap();
        let cases: Vec<(&str, String)> = vec![
            ("truncated", good[..good.len() - 30].to_owned()),
            (
                "cut at a line",
                good[..good.rfind("sum ").unwrap()].to_owned(),
            ),
            ("an edited sum", good.replacen(" 0101", " 0102", 1)),
            ("empty", String::new()),
        ];
        for (what, text) in cases {
            fs::write(&k.path, &text).unwrap();
            assert!(k.load().is_empty(), "{what} was trusted");
        }
        // Valid files made for another image, size or grid.
        for other in [
            Kept {
                image: Sha256::of(b"other"),
                ..k.clone()
            },
            Kept {
                len: k.len + 4096,
                ..k.clone()
            },
            Kept {
                grid: 512,
                ..k.clone()
            },
        ] {
            fs::write(&k.path, &good).unwrap();
            assert!(other.load().is_empty(), "{other:?} took another's sums");
        }
        // Over the size limit: not read at all.
        let f = File::create(&k.path).unwrap();
        f.set_len(MAX_BYTES + 1).unwrap();
        assert!(k.load().is_empty());
    }

    #[test]
    fn a_line_naming_blocks_outside_the_image_or_across_the_grid_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let k = kept(dir.path());
        let blocks = k.len / 4096;
        for (a, b) in [(5, 4), (blocks, blocks), (1000, 1030)] {
            let t = PieceHashes::default();
            t.put((a, b), [9; 32]);
            k.store(&t);
            assert!(k.load().is_empty(), "{a}-{b} was taken");
        }
    }
}
