//! The image cache, `$XDG_CACHE_HOME/homelab-image` or `--cache-dir`:
//!
//! ```text
//! downloads/<sha256>.part    a download in progress (named by the expected hash)
//! blobs/<sha256>.<ext>       a verified compressed image
//! images/<sha256>.img        a decompressed image, sparse (named by its own hash)
//! images/<sha256>.json       what it is and where it came from (ImageMeta)
//! images/<sha256>.ranges     SHA-256 of its bmap ranges (build::range_sums)
//! index/<key>.json           compressed hash (or local file identity) → image hash
//! locks/<key>.lock           flock(2)ed while an entry is being made
//! blobs/<sha256>.k3s         a verified k3s binary (`.tar.zst`: air-gap images)
//! k3s/<v>_<arch>_<asset>.json  which k3s release asset that blob is (`source::k3s`)
//! ```
//!
//! Entries appear only by rename once complete, the index last, so a
//! half-written entry is never found. An entry's lock serialises the runs
//! that want it: the second waits, then finds the first's result.
//!
//! The cache does not trust itself: every use checks the image against the
//! size and fingerprint recorded when it was cached (see `fingerprint`),
//! and `cache verify` re-hashes whole images. An entry that fails is
//! reported and made again (or listed as damaged). The directories are
//! 0700 and the metadata 0600: it names where images came from.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::decompress::Format;
use super::fingerprint::{self, Fingerprint, Quick};
use super::redact;
use crate::digest::Sha256;
use crate::progress::Progress;

#[derive(Debug, Error)]
pub enum CacheError {
    #[error(transparent)]
    Io(#[from] crate::io::path_error::PathIoError),
    #[error(
        "no cache directory: set --cache-dir, HOMELAB_CACHE_DIR, XDG_CACHE_HOME \
         or HOME"
    )]
    NoDefault,
}

fn at<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CacheError + 'a {
    let at = crate::io::path_error::at(action, path);
    move |source| CacheError::Io(at(source))
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
    /// The build serial of a cloud image (`20250201.1`): its file name is
    /// the same in every build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Seconds since the epoch.
    pub created: u64,
    /// What each use checks cheaply; absent in entries cached by versions
    /// before it existed (those are re-hashed once, then given one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Fingerprint>,
}

impl ImageMeta {
    /// The published file and, for a cloud image, its build serial:
    /// `ubuntu-24.04-server-cloudimg-amd64.img, serial 20250201.1`.
    pub fn release_name(&self) -> String {
        match &self.serial {
            Some(serial) => format!("{}, serial {serial}", self.file_name),
            None => self.file_name.clone(),
        }
    }
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

/// An image file or metadata file in `images/`, whatever its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The hash the files are named by.
    pub sha256: Sha256,
    pub raw_path: PathBuf,
    /// The metadata, or why it cannot be read.
    pub meta: Result<ImageMeta, String>,
    /// The cheap check's verdict (damaged when the metadata is).
    pub health: Quick,
}

impl Entry {
    /// The entry as a usable image, unless damaged.
    pub fn image(&self) -> Option<CachedImage> {
        match (&self.meta, &self.health) {
            (Ok(meta), Quick::Intact | Quick::Unsure(_)) => Some(CachedImage {
                raw_path: self.raw_path.clone(),
                meta: meta.clone(),
            }),
            _ => None,
        }
    }

    pub fn meta_path(&self) -> PathBuf {
        self.raw_path.with_extension("json")
    }

    /// The file `build` keeps the image's bmap range sums in.
    pub fn range_sums_path(&self) -> PathBuf {
        self.raw_path.with_extension("ranges")
    }
}

/// The outcome of `Cache::verify` for one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Good,
    /// Why the entry is bad.
    Bad(String),
}

pub struct Cache {
    root: PathBuf,
}

/// Held while an entry is made; dropping it releases the lock.
pub struct EntryLock {
    _file: File,
}

const DIRS: [&str; 6] = ["downloads", "blobs", "images", "index", "locks", "k3s"];

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

    /// Opens (creating if needed) the cache at `root`. What it creates is
    /// private (0700); directories and metadata of a cache made by an
    /// older version are made private too.
    pub fn open(root: &Path) -> Result<Self, CacheError> {
        let tag = root.join("CACHEDIR.TAG");
        let ours = tag.exists();
        if !root.exists() {
            if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent).map_err(at("creating", parent))?;
            }
            match fs::DirBuilder::new().mode(0o700).create(root) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(at("creating", root)(e)),
            }
        } else if ours {
            private(root, 0o700)?;
        }
        for d in DIRS {
            let p = root.join(d);
            match fs::DirBuilder::new().mode(0o700).create(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => private(&p, 0o700)?,
                Err(e) => return Err(at("creating", &p)(e)),
            }
        }
        let cache = Self {
            root: root.to_owned(),
        };
        if ours {
            cache.tighten_old_metadata();
        }
        if !tag.exists() {
            // Backup tools skip directories carrying this tag
            // (https://bford.info/cachedir/).
            let _ = fs::write(
                &tag,
                "Signature: 8a477f597d28d172789f06886806bc55\n\
                 # homelab-image's download cache; `homelab-image cache prune` empties it.\n",
            );
        }
        Ok(cache)
    }

    /// Metadata written by versions that stored it world-readable and with
    /// URL passwords: made 0600 and, where it holds a password, rewritten
    /// with it masked. Best effort: an entry that cannot be fixed is still
    /// checked (and listed as damaged if unreadable) on use.
    fn tighten_old_metadata(&self) {
        use std::os::unix::fs::MetadataExt;
        for dir in ["images", "index"] {
            let dir = self.root.join(dir);
            for name in read_dir_names(&dir) {
                if !name.ends_with(".json") {
                    continue;
                }
                let path = dir.join(&name);
                let Ok(m) = fs::symlink_metadata(&path) else {
                    continue;
                };
                if !m.is_file() || m.mode() & 0o077 == 0 {
                    continue;
                }
                let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o600));
                let Some(mut meta) = fs::read(&path)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<ImageMeta>(&b).ok())
                else {
                    continue;
                };
                let source = redact::text(&meta.source);
                let url = meta.url.as_deref().map(redact::text);
                if source != meta.source || url != meta.url {
                    meta.source = source;
                    meta.url = url;
                    let _ = write_meta(&path, &meta);
                }
            }
        }
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
            .mode(0o600)
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
    pub(crate) fn is_busy(&self, key: &str) -> bool {
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
        [
            Format::Xz,
            Format::Gzip,
            Format::Zstd,
            Format::Qcow2,
            Format::Raw,
        ]
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

    /// The image hash index key `key` points to.
    fn indexed(&self, key: &str) -> Option<Sha256> {
        let idx = self.root.join("index").join(format!("{key}.json"));
        let entry: IndexEntry = serde_json::from_slice(&fs::read(idx).ok()?).ok()?;
        Some(entry.sha256)
    }

    /// The finished image an index key points to, if it is complete and
    /// intact. An image that changed since it was cached is reported
    /// (a warning) and not returned, so the caller makes it again.
    pub fn lookup(&self, key: &str, progress: &Progress) -> Option<CachedImage> {
        self.usable(&self.indexed(key)?, progress)
    }

    /// The image index key `key` points to if the cheap check finds it
    /// intact; no warning, no re-hash (for a look before taking the lock).
    pub fn peek(&self, key: &str) -> Option<CachedImage> {
        let entry = self.entry(&self.indexed(key)?);
        (entry.health == Quick::Intact)
            .then(|| entry.image())
            .flatten()
    }

    /// Whether index key `key` leads to an image that is there and not
    /// known to be damaged (by the cheap check).
    fn has(&self, key: &str) -> bool {
        self.indexed(key)
            .is_some_and(|sha| self.entry(&sha).image().is_some())
    }

    /// Image `sha` if it passes the check on use: the cheap one, then a
    /// full re-hash when the cheap one cannot tell.
    fn usable(&self, sha: &Sha256, progress: &Progress) -> Option<CachedImage> {
        let entry = self.entry(sha);
        if !entry.raw_path.exists() && !entry.meta_path().exists() {
            return None;
        }
        let why = match (&entry.meta, &entry.health) {
            (Ok(meta), Quick::Intact) => {
                return Some(CachedImage {
                    raw_path: entry.raw_path,
                    meta: meta.clone(),
                });
            }
            (Ok(_), Quick::Unsure(why)) => {
                progress.note(format!(
                    "re-checking the cached image {} ({why})",
                    entry.raw_path.display()
                ));
                match self.verify(&entry, progress) {
                    Verdict::Good => return entry.image(),
                    Verdict::Bad(why) => why,
                }
            }
            (_, Quick::Damaged(why)) | (Err(why), _) => why.clone(),
        };
        tracing::warn!(
            "the cached image {} is damaged ({why}); making it again",
            entry.raw_path.display()
        );
        None
    }

    /// Where the bmap range sums of image `sha` are kept.
    pub fn range_sums_path(&self, sha: &Sha256) -> PathBuf {
        self.root.join("images").join(format!("{sha}.ranges"))
    }

    /// When `raw` is the image of an entry of some cache
    /// (`ROOT/images/<sha256>.img`) and the cheap check finds it intact:
    /// that cache, the image's hash and its size. Creates nothing.
    pub fn intact_image(raw: &Path) -> Option<(Cache, Sha256, u64)> {
        let sha: Sha256 = raw
            .file_name()?
            .to_str()?
            .strip_suffix(".img")?
            .parse()
            .ok()?;
        let images = raw.parent()?;
        if images.file_name()? != "images" {
            return None;
        }
        let cache = Cache {
            root: images.parent()?.to_owned(),
        };
        let entry = cache.entry(&sha);
        match (&entry.meta, &entry.health) {
            (Ok(meta), Quick::Intact) => {
                let size = meta.size;
                Some((cache, sha, size))
            }
            _ => None,
        }
    }

    /// The state of image `sha`'s files, by the cheap check.
    pub fn entry(&self, sha: &Sha256) -> Entry {
        let raw_path = self.root.join("images").join(format!("{sha}.img"));
        let meta_path = raw_path.with_extension("json");
        let meta = read_meta(&meta_path).and_then(|m| {
            if m.sha256 == *sha {
                Ok(m)
            } else {
                Err(format!(
                    "its metadata {} describes another image ({})",
                    meta_path.display(),
                    m.sha256
                ))
            }
        });
        let health = match &meta {
            Err(why) => Quick::Damaged(why.clone()),
            Ok(m) => match &m.fingerprint {
                Some(fp) => fp.check(&raw_path, m.size),
                None => fingerprint::check_unfingerprinted(&raw_path, m.size),
            },
        };
        Entry {
            sha256: *sha,
            raw_path,
            meta,
            health,
        }
    }

    /// Every entry in `images/`, damaged ones included: newest first, then
    /// the damaged.
    pub fn entries(&self) -> Vec<Entry> {
        let mut shas: Vec<Sha256> = read_dir_names(&self.root.join("images"))
            .into_iter()
            .filter_map(|n| {
                n.strip_suffix(".img")
                    .or_else(|| n.strip_suffix(".json"))?
                    .parse::<Sha256>()
                    .ok()
            })
            .collect();
        shas.sort();
        shas.dedup();
        let mut out: Vec<Entry> = shas.iter().map(|sha| self.entry(sha)).collect();
        let created = |e: &Entry| e.meta.as_ref().map_or(0, |m| m.created);
        let source = |e: &Entry| e.meta.as_ref().map_or(String::new(), |m| m.source.clone());
        out.sort_by(|a, b| {
            let damaged = |e: &Entry| matches!(e.health, Quick::Damaged(_));
            damaged(a)
                .cmp(&damaged(b))
                .then(created(b).cmp(&created(a)))
                .then(source(a).cmp(&source(b)))
        });
        out
    }

    /// Re-hashes entry `entry`'s whole image and compares it with its
    /// name; a good image gets a fresh fingerprint (when its time stamp
    /// moved, or it had none).
    pub fn verify(&self, entry: &Entry, progress: &Progress) -> Verdict {
        let meta = match (&entry.meta, &entry.health) {
            (Err(why), _) => return Verdict::Bad(why.clone()),
            (Ok(_), Quick::Damaged(why)) => return Verdict::Bad(why.clone()),
            (Ok(m), _) => m,
        };
        match fingerprint::full_hash(&entry.raw_path, meta.size, progress) {
            Ok(got) if got == entry.sha256 => {}
            Ok(got) => {
                return Verdict::Bad(format!(
                    "its content hashes to sha256 {got}, not the {} it was cached as",
                    entry.sha256
                ));
            }
            Err(e) => return Verdict::Bad(format!("cannot read it: {e}")),
        }
        if entry.health != Quick::Intact {
            // Fingerprinted after the hash: a write in between would leave
            // a fingerprint of changed content, so check the time stamp
            // did not move while we read.
            let before = fs::metadata(&entry.raw_path)
                .ok()
                .map(|m| m.modified().ok());
            if let Ok(fp) = Fingerprint::take(&entry.raw_path, meta.size) {
                let after = fs::metadata(&entry.raw_path)
                    .ok()
                    .map(|m| m.modified().ok());
                if before == after {
                    let mut meta = meta.clone();
                    meta.fingerprint = Some(fp);
                    let _ = write_meta(&entry.meta_path(), &meta);
                }
            }
        }
        Verdict::Good
    }

    /// Deletes entry `entry`'s image and metadata and the index entries
    /// that lead to it.
    pub fn remove(&self, entry: &Entry) -> Result<PruneReport, CacheError> {
        let mut report = PruneReport::default();
        report.remove(&entry.raw_path)?;
        report.remove(&entry.meta_path())?;
        report.remove(&entry.range_sums_path())?;
        let index = self.root.join("index");
        for name in read_dir_names(&index) {
            let Some(key) = name.strip_suffix(".json") else {
                continue;
            };
            if self.indexed(key) == Some(entry.sha256) {
                report.remove(&index.join(&name))?;
            }
        }
        Ok(report)
    }

    /// Renames a finished image into place, then writes its metadata and
    /// the index entries that lead to it (in that order).
    pub fn publish_image(
        &self,
        tmp: &Path,
        mut meta: ImageMeta,
        keys: &[String],
    ) -> Result<CachedImage, CacheError> {
        let images = self.root.join("images");
        let raw_path = images.join(format!("{}.img", meta.sha256));
        // Taken before the rename, which keeps the time stamp.
        meta.fingerprint =
            Some(Fingerprint::take(tmp, meta.size).map_err(at("fingerprinting", tmp))?);
        fs::rename(tmp, &raw_path).map_err(at("renaming into place", &raw_path))?;
        write_meta(&images.join(format!("{}.json", meta.sha256)), &meta)?;
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

    /// Every image not known to be damaged, newest first.
    pub fn images(&self) -> Vec<CachedImage> {
        self.entries().iter().filter_map(Entry::image).collect()
    }

    /// The newest usable image made from catalog entry `name`.
    pub fn newest_from_catalog(&self, name: &str, progress: &Progress) -> Option<CachedImage> {
        self.images()
            .into_iter()
            .filter(|i| i.meta.catalog.as_deref() == Some(name))
            .find_map(|i| self.usable(&i.meta.sha256, progress))
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
            report.remove(&img.raw_path.with_extension("ranges"))?;
        }
        if all {
            // Damaged entries too (`images` leaves them out).
            for e in self.entries() {
                if e.image().is_none() {
                    report.remove(&e.raw_path)?;
                    report.remove(&e.meta_path())?;
                    report.remove(&e.range_sums_path())?;
                }
            }
        }
        // k3s downloads: kept (unless `all`) while their record and blob
        // are sound.
        super::k3s::prune(self, all, &mut report)?;
        // Index entries whose image is gone.
        let index = self.root.join("index");
        for name in read_dir_names(&index) {
            let Some(key) = name.strip_suffix(".json") else {
                continue;
            };
            if !self.has(key) {
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
            if all || self.has(&sha) {
                report.remove(&blobs.join(&name))?;
            }
        }
        // Range sums files a killed build was writing.
        let images_dir = self.root.join("images");
        for name in read_dir_names(&images_dir) {
            if name.starts_with('.') && name.contains(".ranges.") && name.ends_with(".tmp") {
                report.remove(&images_dir.join(&name))?;
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
    pub(crate) fn remove(&mut self, path: &Path) -> Result<(), CacheError> {
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
pub(crate) fn read_dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

/// Reads an image's metadata; why not, in words.
fn read_meta(path: &Path) -> Result<ImageMeta, String> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(format!("its metadata {} is missing", path.display()));
        }
        Err(e) => return Err(format!("cannot read its metadata {}: {e}", path.display())),
    };
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("its metadata {} is not valid: {e}", path.display()))
}

fn write_meta(path: &Path, meta: &ImageMeta) -> Result<(), CacheError> {
    // Serialising plain data to a Vec cannot fail.
    let json = serde_json::to_vec_pretty(meta).unwrap_or_default();
    write_atomic(path, &json)
}

/// Writes `path` by rename from a temporary file of this process (two runs
/// refreshing the same entry do not write into one file), mode 0600.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(at("creating", &tmp))?;
    f.write_all(bytes).map_err(at("writing", &tmp))?;
    f.sync_all().map_err(at("syncing", &tmp))?;
    fs::rename(&tmp, path).map_err(at("renaming into place", path))
}

/// Makes directory `path` (one of ours) no more open than `mode`.
fn private(path: &Path, mode: u32) -> Result<(), CacheError> {
    let m = fs::metadata(path).map_err(at("reading", path))?;
    if m.permissions().mode() & 0o777 & !mode != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(at("making private", path))?;
    }
    Ok(())
}

/// Makes renames in `dir` durable; best effort (not every filesystem
/// supports syncing a directory).
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

pub fn now() -> u64 {
    u64::try_from(crate::time::now()).unwrap_or(0)
}
