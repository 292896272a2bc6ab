//! The image cache, `$XDG_CACHE_HOME/homelab-image` or `--cache-dir`:
//!
//! ```text
//! downloads/<sha256>.part    a download in progress (named by the expected hash)
//! blobs/<sha256>.<ext>       a verified compressed image
//! images/<sha256>.img        a decompressed image, sparse (named by its own hash)
//! images/<sha256>.json       what it is and where it came from (ImageMeta)
//! index/<key>.json           compressed hash (or local file identity) → image hash
//! locks/<key>.lock           flock(2)ed while an entry is being made
//! ```
//!
//! Entries appear only by rename once complete, the index last, so a
//! half-written entry is never found. An entry's lock serialises the runs
//! that want it: the second waits, then finds the first's result.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::decompress::Format;
use super::digest::Sha256;
use super::progress::Progress;

#[derive(Debug, Error)]
pub enum CacheError {
    #[error("{action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "no cache directory: set --cache-dir, HOMELAB_CACHE_DIR, XDG_CACHE_HOME \
         or HOME"
    )]
    NoDefault,
}

fn at<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CacheError + 'a {
    move |source| CacheError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// The metadata stored beside each image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageMeta {
    pub sha256: Sha256,
    pub size: u64,
    /// Bytes actually allocated for data (the rest are holes).
    pub data_bytes: u64,
    pub compressed_sha256: Sha256,
    pub format: Format,
    /// The catalog name, URL or path the user asked for.
    pub source: String,
    /// The catalog entry, when it came from one.
    pub catalog: Option<String>,
    /// The published file name (`ubuntu-24.04.3-…img.xz`).
    pub file_name: String,
    pub url: Option<String>,
    /// Who signed it ("… (8439 38DF …)"), "skipped", or absent when the
    /// source carries no signature (a checksum the user gave, a local file).
    pub signature: Option<String>,
    /// Seconds since the epoch.
    pub created: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct IndexEntry {
    sha256: Sha256,
}

/// A finished image in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedImage {
    pub raw_path: PathBuf,
    pub meta: ImageMeta,
}

pub struct Cache {
    root: PathBuf,
}

/// Held while an entry is made; dropping it releases the lock.
pub struct EntryLock {
    _file: File,
}

const DIRS: [&str; 5] = ["downloads", "blobs", "images", "index", "locks"];

impl Cache {
    /// `$XDG_CACHE_HOME/homelab-image`, else `~/.cache/homelab-image`.
    pub fn default_root() -> Result<PathBuf, CacheError> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .ok_or(CacheError::NoDefault)?;
        Ok(base.join("homelab-image"))
    }

    /// Opens (creating if needed) the cache at `root`.
    pub fn open(root: &Path) -> Result<Self, CacheError> {
        for d in DIRS {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(at("creating", &p))?;
        }
        let tag = root.join("CACHEDIR.TAG");
        if !tag.exists() {
            // Backup tools skip directories carrying this tag
            // (https://bford.info/cachedir/).
            let _ = fs::write(
                &tag,
                "Signature: 8a477f597d28d172789f06886806bc55\n\
                 # homelab-image's download cache; `homelab-image cache prune` empties it.\n",
            );
        }
        Ok(Self {
            root: root.to_owned(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the lock of entry `key`, waiting (and saying so) if another
    /// run holds it.
    pub fn lock(&self, key: &str, progress: &Progress) -> Result<EntryLock, CacheError> {
        let path = self.root.join("locks").join(format!("{key}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(at("opening", &path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                progress.note(format!(
                    "waiting for another homelab-image run to finish this image (lock {})",
                    path.display()
                ));
                file.lock().map_err(at("locking", &path))?;
            }
            Err(fs::TryLockError::Error(e)) => return Err(at("locking", &path)(e)),
        }
        Ok(EntryLock { _file: file })
    }

    /// Whether entry `key` is locked by a running pull.
    fn is_busy(&self, key: &str) -> bool {
        let path = self.root.join("locks").join(format!("{key}.lock"));
        match OpenOptions::new().write(true).open(&path) {
            Ok(f) => matches!(f.try_lock(), Err(fs::TryLockError::WouldBlock)),
            Err(_) => false,
        }
    }

    pub fn part_path(&self, sha: &Sha256) -> PathBuf {
        self.root.join("downloads").join(format!("{sha}.part"))
    }

    fn blob_path(&self, sha: &Sha256, format: Format) -> PathBuf {
        self.root
            .join("blobs")
            .join(format!("{sha}.{}", format.extension()))
    }

    /// A verified compressed file with this hash, if kept.
    pub fn find_blob(&self, sha: &Sha256) -> Option<(PathBuf, Format)> {
        [Format::Xz, Format::Gzip, Format::Zstd, Format::Raw]
            .into_iter()
            .map(|f| (self.blob_path(sha, f), f))
            .find(|(p, _)| p.is_file())
    }

    /// Moves a verified download into `blobs/`.
    pub fn publish_blob(
        &self,
        part: &Path,
        sha: &Sha256,
        format: Format,
    ) -> Result<PathBuf, CacheError> {
        let dst = self.blob_path(sha, format);
        fs::rename(part, &dst).map_err(at("renaming into place", &dst))?;
        Ok(dst)
    }

    /// The temporary file an image of entry `key` is decompressed into.
    pub fn image_tmp(&self, key: &str) -> Result<(File, PathBuf), CacheError> {
        let path = self.root.join("images").join(format!(".tmp-{key}.img"));
        let file = File::create(&path).map_err(at("creating", &path))?;
        Ok((file, path))
    }

    /// The finished image an index key points to, if it is complete.
    pub fn lookup(&self, key: &str) -> Option<CachedImage> {
        let idx = self.root.join("index").join(format!("{key}.json"));
        let entry: IndexEntry = serde_json::from_slice(&fs::read(idx).ok()?).ok()?;
        self.image(&entry.sha256)
    }

    fn image(&self, sha: &Sha256) -> Option<CachedImage> {
        let raw_path = self.root.join("images").join(format!("{sha}.img"));
        let meta_path = self.root.join("images").join(format!("{sha}.json"));
        let meta: ImageMeta = serde_json::from_slice(&fs::read(meta_path).ok()?).ok()?;
        let len = fs::metadata(&raw_path).ok()?.len();
        (meta.sha256 == *sha && len == meta.size).then_some(CachedImage { raw_path, meta })
    }

    /// Renames a finished image into place, then writes its metadata and
    /// the index entries that lead to it (in that order).
    pub fn publish_image(
        &self,
        tmp: &Path,
        meta: ImageMeta,
        keys: &[String],
    ) -> Result<CachedImage, CacheError> {
        let images = self.root.join("images");
        let raw_path = images.join(format!("{}.img", meta.sha256));
        fs::rename(tmp, &raw_path).map_err(at("renaming into place", &raw_path))?;
        let json = serde_json::to_vec_pretty(&meta).unwrap_or_default();
        write_atomic(&images.join(format!("{}.json", meta.sha256)), &json)?;
        let entry = serde_json::to_vec(&IndexEntry {
            sha256: meta.sha256,
        })
        .unwrap_or_default();
        for key in keys {
            write_atomic(&self.root.join("index").join(format!("{key}.json")), &entry)?;
        }
        sync_dir(&images);
        sync_dir(&self.root.join("index"));
        Ok(CachedImage { raw_path, meta })
    }

    /// Every complete image, newest first.
    pub fn images(&self) -> Vec<CachedImage> {
        let mut out: Vec<CachedImage> = read_dir_names(&self.root.join("images"))
            .into_iter()
            .filter_map(|n| n.strip_suffix(".img")?.parse::<Sha256>().ok())
            .filter_map(|sha| self.image(&sha))
            .collect();
        out.sort_by(|a, b| {
            b.meta
                .created
                .cmp(&a.meta.created)
                .then(a.meta.source.cmp(&b.meta.source))
        });
        out
    }

    /// The newest complete image made from catalog entry `name`.
    pub fn newest_from_catalog(&self, name: &str) -> Option<CachedImage> {
        self.images()
            .into_iter()
            .find(|i| i.meta.catalog.as_deref() == Some(name))
    }

    /// Partial downloads: (path, bytes so far).
    pub fn partial_downloads(&self) -> Vec<(PathBuf, u64)> {
        let dir = self.root.join("downloads");
        read_dir_names(&dir)
            .into_iter()
            .filter(|n| n.ends_with(".part"))
            .map(|n| {
                let p = dir.join(n);
                let len = fs::metadata(&p).map_or(0, |m| m.len());
                (p, len)
            })
            .collect()
    }

    /// Removes what is not needed to build: partial downloads, leftovers of
    /// interrupted runs, compressed files already decompressed, and images
    /// superseded by a newer release of the same catalog entry. `all`
    /// removes every entry. Entries a running pull holds are kept.
    pub fn prune(&self, all: bool) -> Result<PruneReport, CacheError> {
        let mut report = PruneReport::default();
        let images = self.images();
        let mut keep: Vec<&CachedImage> = Vec::new();
        let mut drop: Vec<&CachedImage> = Vec::new();
        for img in &images {
            let superseded = img
                .meta
                .catalog
                .as_ref()
                .is_some_and(|c| keep.iter().any(|k| k.meta.catalog.as_ref() == Some(c)));
            if all || superseded {
                drop.push(img);
            } else {
                keep.push(img);
            }
        }
        for img in &drop {
            if self.is_busy(&img.meta.compressed_sha256.to_string()) {
                continue;
            }
            report.remove(&img.raw_path)?;
            report.remove(&img.raw_path.with_extension("json"))?;
        }
        // Index entries whose image is gone.
        let index = self.root.join("index");
        for name in read_dir_names(&index) {
            let Some(key) = name.strip_suffix(".json") else {
                continue;
            };
            if self.lookup(key).is_none() {
                report.remove(&index.join(&name))?;
            }
        }
        // Compressed files: kept only while no image was made from them.
        let blobs = self.root.join("blobs");
        for name in read_dir_names(&blobs) {
            let sha = name.split('.').next().unwrap_or_default().to_owned();
            if self.is_busy(&sha) {
                continue;
            }
            if all || self.lookup(&sha).is_some() {
                report.remove(&blobs.join(&name))?;
            }
        }
        // Partial downloads and interrupted decompressions.
        for (dir, prefix, suffix) in [("downloads", "", ".part"), ("images", ".tmp-", ".img")] {
            let dir = self.root.join(dir);
            for name in read_dir_names(&dir) {
                let Some(key) = name
                    .strip_prefix(prefix)
                    .and_then(|n| n.strip_suffix(suffix))
                else {
                    continue;
                };
                if !self.is_busy(key) {
                    report.remove(&dir.join(&name))?;
                }
            }
        }
        Ok(report)
    }
}

/// What `prune` removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PruneReport {
    pub files: u64,
    /// Bytes of disk space freed (allocated blocks, so holes do not count).
    pub freed: u64,
}

impl PruneReport {
    fn remove(&mut self, path: &Path) -> Result<(), CacheError> {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = fs::symlink_metadata(path) else {
            return Ok(());
        };
        match fs::remove_file(path) {
            Ok(()) => {
                self.files += 1;
                self.freed += meta.blocks() * 512;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(at("removing", path)(e)),
        }
    }
}

/// Names of the entries of `dir` (none if it cannot be read).
fn read_dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    let tmp = path.with_extension("json.tmp");
    let mut f = File::create(&tmp).map_err(at("creating", &tmp))?;
    f.write_all(bytes).map_err(at("writing", &tmp))?;
    f.sync_all().map_err(at("syncing", &tmp))?;
    fs::rename(&tmp, path).map_err(at("renaming into place", path))
}

/// Makes renames in `dir` durable; best effort (not every filesystem
/// supports syncing a directory).
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
