//! Where the cache keeps k3s downloads, and the record that finds them
//! again without the network:
//!
//! ```text
//! blobs/<sha256>.k3s                        a verified k3s binary
//! blobs/<sha256>.tar.zst                    a verified air-gap images tarball
//! k3s/<version>_<arch>_<asset>.json         (release, architecture, asset) → blob
//! ```
//!
//! The blob appears by rename once its hash matched the release's checksum
//! file, the record after it, so a record always names a verified blob. The
//! record keeps the blob's size and fingerprint (as image metadata does):
//! a use checks those cheaply and re-hashes only when the time stamp moved.
//! Records are 0600, like the rest of the cache's metadata.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::K3sAsset;
use crate::digest::Sha256;
use crate::k3s::{K3sArch, K3sVersion};
use crate::progress::Progress;
use crate::source::cache::{self, Cache, CacheError, PruneReport, Verdict};
use crate::source::fingerprint::{self, Fingerprint, Quick};

/// What a record says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct K3sRecord {
    pub version: String,
    /// k3s's name (`arm64`, `arm`, …).
    pub arch: String,
    /// `binary` or `airgap-images`.
    pub asset: String,
    /// The release asset's name (`k3s-arm64`).
    pub file_name: String,
    /// Where it came from (a password masked).
    pub url: String,
    pub sha256: Sha256,
    pub size: u64,
    /// Seconds since the epoch.
    pub created: u64,
    pub fingerprint: Fingerprint,
}

/// A record in the cache and the state of its blob, whatever it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K3sEntry {
    pub record_path: PathBuf,
    /// The record, or why it cannot be read.
    pub record: Result<K3sRecord, String>,
    /// The blob the record names (none when the record is unreadable).
    pub blob: Option<PathBuf>,
    /// The cheap check's verdict (damaged when the record is).
    pub health: Quick,
}

pub(super) fn record_path(
    cache: &Cache,
    version: &K3sVersion,
    arch: K3sArch,
    asset: K3sAsset,
) -> PathBuf {
    // The version is an exact release (letters, digits, `.-+`): a safe
    // file name as it is.
    cache
        .root()
        .join("k3s")
        .join(format!("{version}_{arch}_{}.json", asset.key()))
}

pub(super) fn blob_path(cache: &Cache, sha: &Sha256, asset: K3sAsset) -> PathBuf {
    cache
        .root()
        .join("blobs")
        .join(format!("{sha}.{}", asset.blob_extension()))
}

fn read(path: &Path) -> Result<K3sRecord, String> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) => return Err(format!("cannot read its record {}: {e}", path.display())),
    };
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("its record {} is not valid: {e}", path.display()))
}

/// The entry whose record is at `record_path`, by the cheap check.
fn entry(cache: &Cache, record_path: PathBuf) -> K3sEntry {
    let record = read(&record_path);
    let blob = record.as_ref().ok().and_then(|r| {
        let asset = K3sAsset::from_key(&r.asset)?;
        Some(blob_path(cache, &r.sha256, asset))
    });
    let health = match (&record, &blob) {
        (Err(why), _) => Quick::Damaged(why.clone()),
        (Ok(r), None) => Quick::Damaged(format!(
            "its record {} names an unknown asset {:?}",
            record_path.display(),
            r.asset
        )),
        (Ok(r), Some(b)) if !b.exists() => {
            Quick::Damaged(format!("its file {} is missing", b.display()))
        }
        (Ok(r), Some(b)) => r.fingerprint.check(b, r.size),
    };
    K3sEntry {
        record_path,
        record,
        blob,
        health,
    }
}

/// The entry of (version, arch, asset), if it has a record.
pub(super) fn find(
    cache: &Cache,
    version: &K3sVersion,
    arch: K3sArch,
    asset: K3sAsset,
) -> Option<K3sEntry> {
    let path = record_path(cache, version, arch, asset);
    path.is_file().then(|| entry(cache, path))
}

/// Every k3s record in the cache, damaged ones included, newest first.
pub fn entries(cache: &Cache) -> Vec<K3sEntry> {
    let dir = cache.root().join("k3s");
    let mut out: Vec<K3sEntry> = cache::read_dir_names(&dir)
        .into_iter()
        .filter(|n| n.ends_with(".json"))
        .map(|n| entry(cache, dir.join(n)))
        .collect();
    let created = |e: &K3sEntry| e.record.as_ref().map_or(0, |r| r.created);
    out.sort_by(|a, b| {
        created(b)
            .cmp(&created(a))
            .then(a.record_path.cmp(&b.record_path))
    });
    out
}

/// Writes the record of a blob just published: after the blob, by rename.
pub(super) fn write(path: &Path, record: &K3sRecord) -> Result<(), CacheError> {
    // Serialising plain data to a Vec cannot fail.
    let json = serde_json::to_vec_pretty(record).unwrap_or_default();
    cache::write_atomic(path, &json)
}

/// Re-hashes the entry's whole blob and compares it with the record; a good
/// blob whose time stamp moved gets a fresh fingerprint.
pub fn verify(entry: &K3sEntry, progress: &Progress) -> Verdict {
    let (record, blob) = match (&entry.record, &entry.blob, &entry.health) {
        (Err(why), _, _) | (_, _, Quick::Damaged(why)) => return Verdict::Bad(why.clone()),
        (Ok(r), Some(b), _) => (r, b),
        (Ok(_), None, _) => return Verdict::Bad("it names no file".into()),
    };
    match fingerprint::full_hash(blob, record.size, progress) {
        Ok(got) if got == record.sha256 => {}
        Ok(got) => {
            return Verdict::Bad(format!(
                "{} hashes to sha256 {got}, not the {} it was cached as",
                blob.display(),
                record.sha256
            ));
        }
        Err(e) => return Verdict::Bad(format!("cannot read {}: {e}", blob.display())),
    }
    if entry.health != Quick::Intact
        && let Ok(fp) = Fingerprint::take(blob, record.size)
    {
        let mut fresh = record.clone();
        fresh.fingerprint = fp;
        let _ = write(&entry.record_path, &fresh);
    }
    Verdict::Good
}

/// Deletes the entry's record and blob (the record first: a record never
/// names a missing blob on purpose).
pub fn remove(entry: &K3sEntry) -> Result<PruneReport, CacheError> {
    let mut report = PruneReport::default();
    report.remove(&entry.record_path)?;
    if let Some(blob) = &entry.blob {
        report.remove(blob)?;
    }
    Ok(report)
}

/// `cache prune`'s part for k3s downloads: `all` removes every record and
/// blob; otherwise only records whose blob is gone or damaged (with the
/// damaged blob) and records that cannot be read. Downloads a running
/// `pull` or `build` holds (its lock, keyed by the expected hash) stay.
pub(crate) fn prune(cache: &Cache, all: bool, report: &mut PruneReport) -> Result<(), CacheError> {
    for e in entries(cache) {
        if let Ok(r) = &e.record
            && cache.is_busy(&r.sha256.to_string())
        {
            continue;
        }
        let damaged = matches!(e.health, Quick::Damaged(_));
        if all || damaged {
            report.remove(&e.record_path)?;
            if let Some(blob) = &e.blob {
                report.remove(blob)?;
            }
        }
    }
    Ok(())
}
